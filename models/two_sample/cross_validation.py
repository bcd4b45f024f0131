"""Cross-validated classifier two-sample test: a :class:`CropClassifier` trained on crops of
most photos of both sets scores the photos it has not seen; the AUC of those scores says how
well real and synthetic photos can be told apart."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from angioflow.models.two_sample.net import CropClassifier, TwoSampleConfig
from angioflow.pipeline.metrics import roc_auc

__all__ = ["TwoSampleResult", "classifier_two_sample_test"]


@dataclass(frozen=True)
class TwoSampleResult:
    """Held-out AUC of the crop classifier (synthetic the positive class).

    Attributes
    ----------
    auc : float
        Over every photo, each scored by the fold that did not train on it.
    fold_aucs : tuple of float
        The same per fold (their spread).
    real, synthetic : int
        Photos of each set.
    """

    auc: float
    fold_aucs: tuple[float, ...]
    real: int
    synthetic: int

    def as_dict(self) -> dict[str, object]:
        return {
            "auc": self.auc,
            "fold_auc_min": min(self.fold_aucs),
            "fold_auc_max": max(self.fold_aucs),
            "folds": len(self.fold_aucs),
            "real_samples": self.real,
            "synthetic_samples": self.synthetic,
        }


def classifier_two_sample_test(
    real: np.ndarray,
    real_fov: np.ndarray,
    synthetic: np.ndarray,
    synthetic_fov: np.ndarray,
    config: TwoSampleConfig | None = None,
) -> TwoSampleResult:
    """How well a small CNN tells synthetic photos from real ones, by cross-validation.

    Both sets are resized to ``config.image_size`` (or to the smaller set's size when that is
    less, the crop shrunk in proportion). Photos are split into ``config.folds`` folds, each
    set evenly; for each fold a fresh
    classifier learns on crops of the other folds' photos (balanced batches, random flips and
    quarter turns so that eye side and orientation tell nothing) and scores every photo of
    the fold by the mean logit of ``crops_per_image`` crops.

    Parameters
    ----------
    real, synthetic : (N, S, S, 3) and (M, T, T, 3) uint8
    real_fov, synthetic_fov : (N, S, S) and (M, T, T) bool
        Each photo's field of view; crops are taken inside it.
    config : TwoSampleConfig, optional
        Default: ``TwoSampleConfig()``.

    Returns
    -------
    TwoSampleResult

    Raises
    ------
    ValueError
        If a set has fewer photos than folds, or a field of view holds no crop.
    """
    config = TwoSampleConfig() if config is None else config
    folds = config.folds
    if min(len(real), len(synthetic)) < folds:
        raise ValueError(
            f"a {folds}-fold two-sample test needs at least {folds} photos of each set; got "
            f"{len(real)} real and {len(synthetic)} synthetic"
        )
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    # sets smaller than image_size are compared at their size, crops the same share of it
    size = min(config.image_size, real.shape[1], synthetic.shape[1])
    if size < config.image_size:
        crop = max(8, round(config.crop * size / config.image_size))
        config = config.model_copy(update={"image_size": size, "crop": crop})
    photos, centres = [], []
    for images, fovs in ((real, real_fov), (synthetic, synthetic_fov)):
        for image, fov in zip(images, fovs, strict=True):
            photo, valid = _prepared(image, fov, config)
            photos.append(photo)
            centres.append(valid)
    labels = np.r_[np.zeros(len(real), bool), np.ones(len(synthetic), bool)]
    fold_of = np.empty(len(labels), int)
    for value in (False, True):  # each set spread evenly over the folds
        members = rng.permutation(np.flatnonzero(labels == value))
        fold_of[members] = np.arange(len(members)) % folds
    scores = np.empty(len(labels))
    fold_aucs = []
    for fold in range(folds):
        held_out = fold_of == fold
        model = _train(photos, centres, labels, np.flatnonzero(~held_out), config, rng)
        for index in np.flatnonzero(held_out):
            scores[index] = _score(model, photos[index], centres[index], config, rng)
        fold_aucs.append(roc_auc(scores[held_out], labels[held_out]))
    return TwoSampleResult(
        auc=roc_auc(scores, labels),
        fold_aucs=tuple(fold_aucs),
        real=len(real),
        synthetic=len(synthetic),
    )


def _prepared(
    image: np.ndarray, fov: np.ndarray, config: TwoSampleConfig
) -> tuple[torch.Tensor, np.ndarray]:
    """The photo at ``image_size`` as a (3, S, S) float tensor in [0, 1], and the (K, 2)
    top-left corners of the crops that lie ``min_fov_share`` inside its field of view."""
    size, crop = config.image_size, config.crop
    photo = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    inside = cv2.resize(fov.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    share = cv2.boxFilter(inside, -1, (crop, crop), anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
    corners = np.argwhere(share[: size - crop + 1, : size - crop + 1] >= config.min_fov_share)
    if len(corners) == 0:
        raise ValueError(
            f"no {crop} px crop lies {config.min_fov_share:.0%} inside a field of view at "
            f"{size} px: use a smaller crop"
        )
    return torch.from_numpy(photo).permute(2, 0, 1).float() / 255, corners


def _crops(
    photo: torch.Tensor, corners: np.ndarray, count: int, crop: int, rng: np.random.Generator
) -> torch.Tensor:
    picked = corners[rng.integers(0, len(corners), count)]
    return torch.stack([photo[:, y : y + crop, x : x + crop] for y, x in picked])


def _train(
    photos: list[torch.Tensor],
    centres: list[np.ndarray],
    labels: np.ndarray,
    training: np.ndarray,
    config: TwoSampleConfig,
    rng: np.random.Generator,
) -> CropClassifier:
    torch.manual_seed(int(rng.integers(2**31)))
    model = CropClassifier(config)
    optimiser = torch.optim.Adam(model.parameters(), config.learning_rate)
    by_set = [training[~labels[training]], training[labels[training]]]
    half = config.batch_size // 2
    target = torch.cat([torch.zeros(half), torch.ones(half)])
    model.train()
    for _ in range(config.steps):
        batch = torch.cat(
            [
                torch.cat(
                    [
                        _crops(photos[i], centres[i], 1, config.crop, rng)
                        for i in rng.choice(members, half)
                    ]
                )
                for members in by_set
            ]
        )
        if rng.random() < 0.5:
            batch = batch.flip(3)
        batch = torch.rot90(batch, int(rng.integers(4)), dims=(2, 3))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch), target)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return model.eval()


@torch.no_grad()
def _score(
    model: CropClassifier,
    photo: torch.Tensor,
    corners: np.ndarray,
    config: TwoSampleConfig,
    rng: np.random.Generator,
) -> float:
    return float(model(_crops(photo, corners, config.crops_per_image, config.crop, rng)).mean())
