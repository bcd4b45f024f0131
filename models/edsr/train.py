"""Training EDSR: L1 between super-resolved down-samples and the real crops, checkpoints that
resume, a JSON log."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from angioflow.models.edsr.data import PhotoCrops
from angioflow.models.edsr.net import EDSR, EDSRConfig
from angioflow.models.training import RunFolder, TrainingConfig, adamw_one_cycle
from pydantic import Field

__all__ = ["EDSRTrainingConfig", "train_edsr"]


class EDSRTrainingConfig(TrainingConfig):
    """Everything that defines an EDSR training run; the defaults are ``configs/edsr.yaml``, the
    recipe of the shipped weights."""

    model: EDSRConfig = EDSRConfig()
    datasets: tuple[str, ...] = ("drive", "les-av", "hrf-av")  # training splits only
    low_patch: int = Field(32, ge=8)  # low-resolution crop side, px
    batch_size: int = Field(16, ge=1)
    steps: int = Field(24000, ge=1)
    learning_rate: float = Field(5e-4, gt=0)


def train_edsr(
    config: EDSRTrainingConfig,
    photos: list[np.ndarray],
    out_dir: Path,
    *,
    resume: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> EDSR:
    """Train (or continue) EDSR on ``photos``; weights land in ``out_dir/weights``."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = EDSR(config.model).to(device)
    optimiser, schedule = adamw_one_cycle(model, config.learning_rate, 0.0, config.steps)
    run = RunFolder(out_dir, config, device)
    start = run.resume(model, optimiser, schedule, rng, enabled=resume)
    crops = PhotoCrops(photos, config.low_patch, config.model.scale, rng)
    model.train()
    for step in range(start, config.steps):
        low, high = (t.to(device) for t in crops.batch(config.batch_size))
        loss = torch.nn.functional.l1_loss(model(low), high)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        value = run.record(loss)
        done = step + 1
        if run.due(done, config.checkpoint_every):
            run.checkpoint(done, model, optimiser, schedule, rng)
        if on_step is not None:
            on_step(done, value)
    model.eval()
    model.save(out_dir / "weights")
    return model
