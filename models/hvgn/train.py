"""Training loop of the A/V graph network: crops, checkpoints, resume, seeds and a JSON log."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from angioflow.models.hvgn.data import AVTrainingImage, CropSampler
from angioflow.models.hvgn.net import HVGN, HVGNConfig, graph_batch
from angioflow.models.training import TrainingConfig, train_supervised
from pydantic import Field
from torch.nn import functional as F  # noqa: N812

__all__ = ["HVGNTrainingConfig", "av_loss", "train_hvgn"]


class HVGNTrainingConfig(TrainingConfig):
    """Everything that defines an HVGN training run; the defaults are ``configs/hvgn.yaml``,
    the first of the shipped weights' two stages (``configs/hvgn_continue.yaml`` the second)."""

    model: HVGNConfig = HVGNConfig()
    datasets: tuple[str, ...] = ("rite", "les-av", "hrf-av")
    phantom_cases: int = Field(8, ge=0)
    steps: int = Field(3000, ge=1)
    batch_size: int = Field(4, ge=1)
    crop: int = Field(256, ge=32)
    learning_rate: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    pixel_loss_weight: float = Field(0.5, ge=0)
    checkpoint_every: int = Field(100, ge=1)
    init_weights: str | None = None  # a weights folder to continue training from (HVGN.save)
    seed: int = 0
    threads: int = Field(2, ge=1)


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


def train_hvgn(
    config: HVGNTrainingConfig,
    images: list[AVTrainingImage],
    out_dir: Path,
    *,
    resume: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> HVGN:
    """Train the HVGN end to end (CNN and graph U-Net) on random crops.

    Parameters
    ----------
    config : HVGNTrainingConfig
    images : list of AVTrainingImage
        Training photos at the working scale (see :mod:`models.hvgn.data`).
    out_dir : Path
        Receives ``training_config.json``, ``checkpoint.pt`` (every ``checkpoint_every``
        steps), ``log.jsonl`` and, at the end, the fp16 weights in ``weights/``.
    resume : bool
        Continue from ``checkpoint.pt`` when present (its config must match).
    on_step : callable, optional
        Called with (step, smoothed loss) after every step.

    Returns
    -------
    HVGN in eval mode.
    """

    def batch_loss(model: HVGN, sampler: CropSampler, device: torch.device) -> torch.Tensor:
        x, vessels, labels = sampler.batch(config.batch_size)
        graph = graph_batch(vessels, config.model)
        coords, image_index = graph.coords.numpy(), graph.image_index.numpy()
        node_labels = np.stack(labels)[image_index, coords[:, 0], coords[:, 1]]
        target = torch.from_numpy(node_labels.astype(np.int64)).to(device)
        logits, pixel_logits = model(torch.from_numpy(x).to(device), graph.to(device))
        return av_loss(logits, target) + config.pixel_loss_weight * av_loss(pixel_logits, target)

    def new_sampler() -> CropSampler:
        return CropSampler(images, crop=config.crop, seed=config.seed)

    return train_supervised(  # type: ignore[return-value]
        HVGN, config, new_sampler, batch_loss, out_dir, resume=resume, on_step=on_step
    )
