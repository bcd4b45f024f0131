"""Training data for the vessel U-Net: scale-normalised images and an augmenting patch sampler."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from angioflow.models.vessel.net import VesselUNetConfig
from angioflow.pipeline.datasets import training_records
from angioflow.pipeline.preprocess import fov_diameter, vessel_contrast

__all__ = [
    "PatchSampler",
    "TrainingImage",
    "load_training_images",
    "phantom_fa_frames",
    "phantom_fa_training_images",
    "prepare_training_image",
    "rescale_to_fov",
]


@dataclass(frozen=True)
class TrainingImage:
    """One image at the model's working scale.

    Attributes
    ----------
    name : str
    channels : (1, H, W) float32 ndarray
        :func:`pipeline.preprocess.vessel_contrast` of the image (vessels bright).
    vessel : (H, W) float32 ndarray in {0, 1}
    fov : (H, W) bool ndarray
    modality : {'fundus', 'fa'}
    """

    name: str
    channels: np.ndarray
    vessel: np.ndarray
    fov: np.ndarray
    modality: Literal["fundus", "fa"]

    @property
    def source(self) -> str:
        """The dataset the image comes from (its name's prefix: drive, les-av, hrf-av, phantom)."""
        return self.name.split("/")[0]


def rescale_to_fov(
    image: np.ndarray, fov: np.ndarray, *, fov_diameter_px: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Resize an image so its field of view is ``fov_diameter_px`` wide.

    Returns
    -------
    image : ndarray
        Resized (area interpolation when shrinking, linear when enlarging).
    fov : (h, w) bool ndarray
    factor : float
        New size / old size.
    """
    factor = fov_diameter_px / fov_diameter(fov)
    size = (max(16, round(image.shape[1] * factor)), max(16, round(image.shape[0] * factor)))
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, size, interpolation=interpolation)
    resized_fov = cv2.resize(fov.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    return resized, resized_fov, factor


def prepare_training_image(
    name: str,
    image: np.ndarray,
    vessel: np.ndarray,
    fov: np.ndarray,
    *,
    modality: Literal["fundus", "fa"],
    model: VesselUNetConfig,
) -> TrainingImage:
    """Bring a labelled image to ``model``'s working scale and compute its vessel contrast."""
    resized, resized_fov, _ = rescale_to_fov(image, fov, fov_diameter_px=model.fov_diameter_px)
    size = resized_fov.shape[::-1]
    truth = cv2.resize(vessel.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5
    channels = vessel_contrast(resized, modality=modality, fov=resized_fov)[None]
    return TrainingImage(name, channels, truth.astype(np.float32), resized_fov, modality)


class PatchSampler:
    """Random augmented patches: rotation, flips, scale, contrast, gamma, blur and noise.

    Parameters
    ----------
    images : list of TrainingImage
    patch : int
        Patch side in pixels.
    scale_range : (float, float)
        Range of the random zoom (log-uniform), applied on top of the working scale.
    seed : int
    """

    def __init__(
        self,
        images: list[TrainingImage],
        *,
        patch: int = 96,
        scale_range: tuple[float, float] = (0.7, 1.4),
        seed: int = 0,
    ) -> None:
        if not images:
            raise ValueError("the sampler needs at least one training image")
        self.images, self.patch, self.scale_range = images, patch, scale_range
        self.rng = np.random.default_rng(seed)
        self._centres = [np.argwhere(im.fov) for im in images]
        # Every source gets an equal share of patches, so neither many small images nor a few
        # large ones dominate.
        sources = [im.source for im in images]
        weights = np.array([np.sqrt(len(c)) for c in self._centres], dtype=np.float64)
        for source in set(sources):
            members = [i for i, s in enumerate(sources) if s == source]
            weights[members] /= weights[members].sum()
        self._weights = weights / weights.sum()

    def batch(self, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sample ``size`` patches.

        Returns
        -------
        x : (size, 1, P, P) float32 ndarray, the vessel contrast
        y : (size, 1, P, P) float32 ndarray in {0, 1}, vessel truth
        weight : (size, 1, P, P) float32 ndarray, 1 inside the FOV, 0 outside
        """
        shape = (size, 1, self.patch, self.patch)
        x = np.zeros((size, len(self.images[0].channels), self.patch, self.patch), np.float32)
        y, w = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
        chosen = self.rng.choice(len(self.images), size, p=self._weights)
        for i, index in enumerate(chosen):
            x[i], y[i, 0], w[i, 0] = self._patch(self.images[index], self._centres[index])
        return x, y, w

    def _patch(self, image: TrainingImage, centres: np.ndarray) -> tuple[np.ndarray, ...]:
        rng, half = self.rng, self.patch / 2
        row, col = centres[rng.integers(len(centres))]
        low, high = np.log(self.scale_range[0]), np.log(self.scale_range[1])
        zoom = float(np.exp(rng.uniform(low, high)))
        angle = float(rng.uniform(0, 360))
        # Affine from patch (x, y) to image (x, y): rotate and zoom about the patch centre.
        rotation = cv2.getRotationMatrix2D((half, half), angle, 1.0 / zoom)
        rotation[:, 2] += (col - half, row - half)
        if rng.random() < 0.5:
            rotation[:, 0] *= -1
            rotation[:, 2] += rotation[:, 0] * -self.patch  # keep the flipped patch centred
        flags = cv2.WARP_INVERSE_MAP
        size = (self.patch, self.patch)
        linear = flags | cv2.INTER_LINEAR
        x = np.stack([cv2.warpAffine(c, rotation, size, flags=linear) for c in image.channels])
        y = cv2.warpAffine(image.vessel, rotation, size, flags=linear) >= 0.5
        w = cv2.warpAffine(
            image.fov.astype(np.float32), rotation, size, flags=flags | cv2.INTER_NEAREST
        )
        return self._intensity(x), y.astype(np.float32), w

    def _intensity(self, x: np.ndarray) -> np.ndarray:
        rng = self.rng
        gamma = float(np.exp(rng.uniform(-0.4, 0.4)))
        squashed = 1.0 / (1.0 + np.exp(-x))
        x = np.log(squashed**gamma + 1e-6) - np.log1p(-(squashed**gamma) + 1e-6)
        x = x * rng.uniform(0.75, 1.3) + rng.uniform(-0.3, 0.3)
        if rng.random() < 0.25:
            sigma = float(rng.uniform(0.4, 1.0))
            x = np.stack([cv2.GaussianBlur(c, (0, 0), sigma) for c in x])
        if rng.random() < 0.5:
            x = x + rng.normal(0.0, rng.uniform(0.02, 0.2), x.shape).astype(np.float32)
        return x.astype(np.float32)


def load_training_images(
    data_root: Path,
    datasets: Sequence[str],
    *,
    model: VesselUNetConfig,
) -> list[TrainingImage]:
    """Training splits of the named public datasets at the working scale (never a test split).

    Parameters
    ----------
    data_root : Path
        Folder holding DRIVE/, LES-AV/, HRF-AV/ (``../shared/data``).
    datasets : sequence of {'drive', 'les-av', 'hrf-av'}
    model : VesselUNetConfig
        The model to train: its working scale.
    """
    allowed = ("drive", "les-av", "hrf-av")
    records = training_records(
        data_root, datasets, allowed=allowed, purpose="vessel", listing=", ".join(allowed)
    )
    return [
        prepare_training_image(r.name, r.image, r.vessel, r.fov, modality="fundus", model=model)
        for r in records
    ]


def phantom_fa_frames(
    n_cases: int, *, seed: int, size: tuple[int, int] = (512, 768)
) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """Venous FA frames of phantom exams with their per-frame vessel truth, native resolution.

    Only venous-phase frames without a simulated defect are used: in earlier frames the veins
    are not yet visible, so their truth would teach the model to hallucinate. A frame's truth is
    the FA reference vessel mask pulled through that frame's true motion.

    Returns
    -------
    frames : list of (name, frame (h, w) uint8/uint16, truth (h, w) bool, aperture (h, w) bool)
    """
    from angioflow.pipeline.phantom import PhantomConfig, case_seed, generate_case

    frames = []
    config = PhantomConfig(size=size, n_frames=8)
    for index in range(n_cases):
        case = generate_case(case_seed(seed, index), config)
        for k, frame in enumerate(case.fa_frames):
            if case.frame_phases[k] != "venous" or case.frame_defects[k]:
                continue
            map_x, map_y = case.frame_transforms[k].sampling_maps(frame.shape)
            truth = cv2.remap(case.fa_vessel.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR)
            frames.append((f"phantom/{seed}/{index}/{k}", frame, truth >= 0.5, case.fa_fov))
    return frames


def phantom_fa_training_images(
    n_cases: int,
    *,
    seed: int,
    model: VesselUNetConfig,
    size: tuple[int, int] = (512, 768),
) -> list[TrainingImage]:
    """:func:`phantom_fa_frames` at the working scale, ready for the patch sampler."""
    return [
        prepare_training_image(name, frame, truth, aperture, modality="fa", model=model)
        for name, frame, truth, aperture in phantom_fa_frames(n_cases, seed=seed, size=size)
    ]
