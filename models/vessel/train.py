"""Training loop of the vessel U-Net: augmented patches, checkpoints, resume, seeds, a JSON log."""

from __future__ import annotations

import torch
from angioflow.models.training import SupervisedTrainer, SupervisedTrainingConfig
from angioflow.models.vessel.data import PatchSampler, TrainingImage
from angioflow.models.vessel.net import VesselUNet, VesselUNetConfig
from pydantic import Field
from torch.nn import functional as F  # noqa: N812

__all__ = ["VesselTrainingConfig", "soft_cl_dice_loss", "train_vessel"]


class VesselTrainingConfig(SupervisedTrainingConfig):
    """Everything that defines a vessel training run; the defaults are ``configs/vessel.yaml``,
    the recipe of the shipped weights."""

    model: VesselUNetConfig = VesselUNetConfig()
    datasets: tuple[str, ...] = ("drive", "les-av")
    phantom_fa_cases: int = Field(24, ge=0)
    steps: int = Field(6000, ge=1)
    batch_size: int = Field(16, ge=1)
    patch: int = Field(96, ge=32)
    cl_dice_weight: float = Field(0.2, ge=0)
    scale_range: tuple[float, float] = (0.7, 1.4)


def _soft_skeleton(x: torch.Tensor, iterations: int) -> torch.Tensor:
    def erode(t: torch.Tensor) -> torch.Tensor:
        return torch.minimum(
            -F.max_pool2d(-t, (3, 1), 1, (1, 0)), -F.max_pool2d(-t, (1, 3), 1, (0, 1))
        )

    def dilate(t: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(t, 3, 1, 1)

    skeleton = F.relu(x - dilate(erode(x)))
    for _ in range(iterations):
        x = erode(x)
        delta = F.relu(x - dilate(erode(x)))
        skeleton = skeleton + F.relu(delta - skeleton * delta)
    return skeleton


def soft_cl_dice_loss(
    probability: torch.Tensor, truth: torch.Tensor, weight: torch.Tensor, *, iterations: int = 5
) -> torch.Tensor:
    """1 - soft clDice (Shit et al., CVPR 2021) between a probability map and a binary truth.

    Shapes:
        probability, truth, weight: (N, 1, H, W); ``weight`` masks pixels outside the FOV.
    """
    probability, truth = probability * weight, truth * weight
    skeleton_p, skeleton_t = (
        _soft_skeleton(probability, iterations),
        _soft_skeleton(truth, iterations),
    )
    eps = 1e-6
    precision = ((skeleton_p * truth).sum() + eps) / (skeleton_p.sum() + eps)
    sensitivity = ((skeleton_t * probability).sum() + eps) / (skeleton_t.sum() + eps)
    return 1.0 - 2.0 * precision * sensitivity / (precision + sensitivity)


def _loss(logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor, cl_weight: float) -> torch.Tensor:
    bce = (
        F.binary_cross_entropy_with_logits(logits, y, reduction="none") * w
    ).sum() / w.sum().clamp(min=1)
    if cl_weight == 0:
        return bce
    return bce + cl_weight * soft_cl_dice_loss(torch.sigmoid(logits), y, w)


def _patch_sampler(config: VesselTrainingConfig, images: list[TrainingImage]) -> PatchSampler:
    return PatchSampler(
        images, patch=config.patch, scale_range=config.scale_range, seed=config.seed
    )


def _batch_loss(
    config: VesselTrainingConfig, model: VesselUNet, sampler: PatchSampler, device: torch.device
) -> torch.Tensor:
    x, y, w = (torch.from_numpy(a).to(device) for a in sampler.batch(config.batch_size))
    return _loss(model(x), y, w, config.cl_dice_weight)


train_vessel = SupervisedTrainer(VesselUNet, _patch_sampler, _batch_loss)
"""Train the vessel U-Net on augmented patches of training images at the working scale
(:mod:`models.vessel.data`): ``train_vessel(config, images, out_dir, *, resume, on_step)``, as
:class:`models.training.SupervisedTrainer` describes."""
