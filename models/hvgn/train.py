"""Training loop of the A/V graph network: crops, checkpoints, resume, seeds and a JSON log."""

from __future__ import annotations

import numpy as np
import torch
from angioflow.models.hvgn.data import AVTrainingImage, CropSampler
from angioflow.models.hvgn.net import HVGN, HVGNConfig, graph_batch
from angioflow.models.training import SupervisedTrainer, SupervisedTrainingConfig
from pydantic import Field
from torch.nn import functional as F  # noqa: N812

__all__ = ["HVGNTrainingConfig", "av_loss", "train_hvgn"]


class HVGNTrainingConfig(SupervisedTrainingConfig):
    """Everything that defines an HVGN training run; the defaults are ``configs/hvgn.yaml``,
    the first of the shipped weights' two stages (``configs/hvgn_continue.yaml`` the second)."""

    model: HVGNConfig = HVGNConfig()
    phantom_cases: int = Field(8, ge=0)  # A/V phantoms beside the real training images
    crop: int = Field(256, ge=32)
    datasets: tuple[str, ...] = ("rite", "les-av", "hrf-av")
    steps: int = Field(3000, ge=1)
    batch_size: int = Field(4, ge=1)
    pixel_loss_weight: float = Field(0.5, ge=0)
    checkpoint_every: int = Field(100, ge=1)


def av_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over artery (label 1) and vein (label 2) nodes; other labels are ignored.

    Shapes:
        logits: (N, 2); labels: (N,) int64 with values 0-3
    """
    target = labels - 1
    known = (target == 0) | (target == 1)
    if not known.any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[known], target[known])


def _crop_sampler(config: HVGNTrainingConfig, images: list[AVTrainingImage]) -> CropSampler:
    return CropSampler(images, crop=config.crop, seed=config.seed)


def _batch_loss(
    config: HVGNTrainingConfig, model: HVGN, sampler: CropSampler, device: torch.device
) -> torch.Tensor:
    """The graph U-Net's node loss plus ``pixel_loss_weight`` times the CNN's own."""
    x, vessels, labels = sampler.batch(config.batch_size)
    graph = graph_batch(vessels, config.model)
    coords, image_index = graph.coords.numpy(), graph.image_index.numpy()
    node_labels = np.stack(labels)[image_index, coords[:, 0], coords[:, 1]]
    target = torch.from_numpy(node_labels.astype(np.int64)).to(device)
    logits, pixel_logits = model(torch.from_numpy(x).to(device), graph.to(device))
    return av_loss(logits, target) + config.pixel_loss_weight * av_loss(pixel_logits, target)


train_hvgn = SupervisedTrainer(HVGN, _crop_sampler, _batch_loss)
"""Train the HVGN end to end (CNN and graph U-Net) on random crops of training photos at the
working scale (:mod:`models.hvgn.data`): ``train_hvgn(config, images, out_dir, *, resume,
on_step)``, as :class:`models.training.SupervisedTrainer` describes."""
