"""Training loop of the mask DDPM: EMA, checkpoints that resume bit for bit, sample grids,
gradient clipping, bf16/fp16 on a GPU, and data-parallel training under ``torchrun``.

Every random draw of step ``s`` on rank ``r`` (batch, flips, timesteps, noise) comes from
generators seeded with ``(seed, r, s)``, so a resumed run repeats exactly what an uninterrupted
one would have drawn, on any number of processes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from angioflow.models.ddpm.data import MaskBatches, random_patches
from angioflow.models.ddpm.net import (
    MaskDDPM,
    MaskDDPMConfig,
    calibre_levels,
    layout_condition,
    make_scheduler,
    vessel_weighted_loss,
)
from angioflow.models.ddpm.sample import mask_grid, sample_masks
from angioflow.models.training import RunFolder, TrainingConfig, ema_model
from angioflow.pipeline.mask_structure import binarise_av, labels_from_soft_av
from diffusers import DDPMScheduler
from PIL import Image
from pydantic import Field, model_validator
from torch import distributed
from torch.nn import functional as F  # noqa: N812
from torch.nn.parallel import DistributedDataParallel

__all__ = ["DDPMTrainingConfig", "train_ddpm"]


class DDPMTrainingConfig(TrainingConfig):
    """Everything that defines a mask-DDPM training run; the defaults are the recipe of the
    shipped cascade's layout model, ``configs/ddpm64_layout.yaml`` (its up-sampler's is
    ``configs/ddpm256_upsampler.yaml``)."""

    model: MaskDDPMConfig = MaskDDPMConfig(calibre_condition=True)
    datasets: tuple[str, ...] = ("rite", "les-av", "hrf-av")
    exports: tuple[str, ...] = ()  # `angioflow export` files with approved A/V masks
    # resizing: share of a pixel a vessel must cover; None keeps each pixel's share (soft masks)
    coverage: float | None = Field(None, gt=0, le=1)
    loss: Literal["weighted", "simple"] = "simple"
    c: float = Field(0.5, ge=0)  # weight exp(c * x0): vessel pixels count e^c times
    steps: int = Field(6500, ge=1)
    batch_size: int = Field(16, ge=1)  # whole masks per step and process, or their pixels
    # Patch Diffusion's schedule: each step draws one patch size (px) with its probability and
    # batch_size * (image_size / size)**2 patches; none: whole masks only
    patch_sizes: tuple[int, ...] = ()
    patch_probabilities: tuple[float, ...] = ()
    # an up-sampler's conditioning augmentation: its layout is noised to a level drawn
    # uniformly from 0 (clean) to this many steps of the forward process
    layout_noise_levels: int = Field(250, ge=0)
    learning_rate: float = Field(1e-3, gt=0)
    warmup_steps: int = Field(100, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    ema_decay: float = Field(0.999, gt=0, lt=1)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    sample_every: int = Field(2000, ge=1)
    sample_count: int = Field(16, ge=1)

    @model_validator(mode="after")
    def _patch_schedule(self) -> DDPMTrainingConfig:
        sizes, chances = self.patch_sizes, self.patch_probabilities
        if len(sizes) != len(chances) or (sizes and abs(sum(chances) - 1) > 1e-6):
            raise ValueError("patch_sizes need one probability each, summing to 1")
        divisor = self.model.space_to_depth * 2 ** (len(self.model.block_out_channels) - 1)
        for size in sizes:
            if size > self.model.image_size or self.model.image_size % size or size % divisor:
                raise ValueError(
                    f"patch size {size} must divide image_size {self.model.image_size} and be "
                    f"divisible by {divisor}"
                )
        if sizes and min(sizes) < self.model.image_size and not self.model.coordinates:
            raise ValueError("training on patches needs a model with coordinates: true")
        return self


def _distributed() -> tuple[int, int]:
    """(rank, world size), joining the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        distributed.init_process_group(backend=backend)
    return (distributed.get_rank(), world) if world > 1 else (0, 1)


def train_ddpm(
    config: DDPMTrainingConfig,
    masks: np.ndarray,
    out_dir: Path,
    *,
    resume: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> MaskDDPM:
    """Train (or continue training) a mask DDPM; returns the EMA model.

    Parameters
    ----------
    config : DDPMTrainingConfig
    masks : (N, 2, S, S) float32 in [0, 1]
        Training masks at the model's size (:mod:`models.ddpm.data`), binary or soft.
    out_dir : Path
        Run folder: ``checkpoint.pt`` (model, optimiser, schedule, EMA, step), ``log.jsonl``,
        ``samples/step_XXXXXX.png`` grids, and the EMA weights in ``weights/`` (fp16
        safetensors + config) at the end.
    resume : bool
        Continue from the folder's checkpoint when there is one.
    on_step : callable, optional
        ``on_step(step, loss)`` after every step (progress bars); rank 0 only.
    """
    if masks.shape[1:] != (config.model.channels, config.model.image_size, config.model.image_size):
        raise ValueError(
            f"masks are {masks.shape[1:]}, the model takes "
            f"({config.model.channels}, {config.model.image_size}, {config.model.image_size})"
        )
    rank, world = _distributed()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    if config.precision != "fp32" and device.type != "cuda":
        raise ValueError(f"precision {config.precision} needs a GPU; use fp32 on the CPU")
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    recorded: dict[str, object] = {"data_mean": tuple(float(v) for v in masks.mean(axis=(0, 2, 3)))}
    levels = None
    if config.model.calibre_condition:
        # from the masks given, so exported approved masks get their levels too
        levels = calibre_levels(masks)
        recorded["condition_values"] = tuple(int(v) for v in levels)
    model = MaskDDPM(config.model.model_copy(update=recorded)).to(device)
    ema = ema_model(model, config.ema_decay)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: min(1.0, (step + 1) / max(1, config.warmup_steps))
    )
    scheduler = make_scheduler(config.model, "ddpm")
    run = RunFolder(out_dir, config, device)
    state_rng = np.random.default_rng(config.seed)  # kept in checkpoints; draws use per-step seeds
    start = run.resume(
        model,
        optimiser,
        schedule,
        state_rng,
        enabled=resume,
        extras={"ema": ema},
        write_config=rank == 0,
    )
    trained = DistributedDataParallel(model) if world > 1 else model
    scaler = torch.amp.GradScaler("cuda", enabled=config.precision == "fp16")
    autocast = (
        torch.autocast(
            "cuda", dtype=torch.bfloat16 if config.precision == "bf16" else torch.float16
        )
        if config.precision != "fp32"
        else nullcontext()
    )
    c = config.c if config.loss == "weighted" else 0.0
    for step in range(start, config.steps):
        seeds = [config.seed, rank, step]
        x0, positions, layout, level, condition = (
            None if v is None else v.to(device)
            for v in _training_batch(config, masks, np.random.default_rng(seeds), scheduler, levels)
        )
        generator = torch.Generator().manual_seed(
            int(np.random.SeedSequence(seeds).generate_state(1, np.uint64)[0] % 2**63)
        )
        noise = torch.randn(x0.shape, generator=generator).to(device)
        t = torch.randint(0, config.model.timesteps, (len(x0),), generator=generator).to(device)
        noisy = scheduler.add_noise(2 * x0 - 1, noise, t)
        with autocast:
            predicted = trained(noisy, t, positions, layout, level, condition)
        loss = vessel_weighted_loss(predicted.float(), noise, x0, c)
        optimiser.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimiser)
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        scaler.step(optimiser)
        scaler.update()
        schedule.step()
        ema.update_parameters(model)
        value = run.record(loss)
        done = step + 1
        if rank != 0:
            continue
        if run.due(done, config.checkpoint_every):
            run.checkpoint(done, model, optimiser, schedule, state_rng, extras={"ema": ema})
        if run.due(done, config.sample_every):
            _sample_grid(ema.module, config, masks, out_dir / "samples" / f"step_{done:06d}.png")
        if on_step is not None:
            on_step(done, value)
    final = ema.module
    if rank == 0:
        final.save(out_dir / "weights")
    if world > 1:
        distributed.barrier()
        distributed.destroy_process_group()
    return final.eval()


def _training_batch(
    config: DDPMTrainingConfig,
    masks: np.ndarray,
    draws: np.random.Generator,
    scheduler: DDPMScheduler,
    levels: np.ndarray | None = None,
) -> tuple[
    torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None
]:
    """One step's x0 (whole masks or patches of the scheduled size), the patches' coordinate
    channels, for an up-sampler its augmented layout and the layout's noise level, and with
    ``levels`` (one per training mask) the calibre level of each x0's mask (a patch's is its
    whole mask's: the style belongs to the mask)."""
    whole = config.model.image_size
    size = (
        int(draws.choice(config.patch_sizes, p=config.patch_probabilities))
        if config.patch_sizes
        else whole
    )
    x0, picked = MaskBatches(masks, config.batch_size * (whole // size) ** 2, draws).draw()
    condition = None if levels is None else torch.from_numpy(levels[picked])
    layout = level = positions = None
    if config.model.layout_size:
        level = torch.from_numpy(draws.integers(0, config.layout_noise_levels + 1, len(x0)))
        small = F.adaptive_avg_pool2d(x0, config.model.layout_size)
        noise = torch.Generator().manual_seed(int(draws.integers(2**62)))
        layout = layout_condition(small, whole, level, scheduler, noise)
    if size < whole:
        stacked = x0 if layout is None else torch.cat([x0, layout], dim=1)
        stacked, positions = random_patches(stacked, size, draws)
        x0, layout = (stacked, None) if layout is None else stacked.split(x0.shape[1], dim=1)
    return x0, positions, layout, level, condition


SOFT_GRID_SIZE = 256


def _sample_grid(
    model: MaskDDPM, config: DDPMTrainingConfig, masks: np.ndarray, path: Path
) -> None:
    """A grid of EMA samples (DDIM, 50 steps, fixed seed) to watch training progress; an
    up-sampler draws from the first training masks' layouts. Soft maps are drawn as the
    generator's labels are made from them, enlarged with calibre to at least
    ``SOFT_GRID_SIZE`` px."""
    was_training = model.training
    model.eval()
    layout = None
    if config.model.layout_size:
        first = torch.from_numpy(masks[: config.sample_count])
        layout = F.adaptive_avg_pool2d(first, config.model.layout_size).numpy()
    maps = sample_masks(
        model,
        len(layout) if layout is not None else config.sample_count,
        sampler="ddim",
        steps=50,
        seed=config.seed,
        layout=layout,
    )
    model.train(was_training)
    path.parent.mkdir(parents=True, exist_ok=True)
    if config.coverage is None:  # soft maps: thin vessels are sub-pixel shares, not gaps
        labels = labels_from_soft_av(maps, max(SOFT_GRID_SIZE, config.model.image_size))
    else:
        labels = np.stack([binarise_av(m) for m in maps])
    Image.fromarray(mask_grid(labels)).save(path)
