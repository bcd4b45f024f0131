"""Sampling A/V maps from a trained mask DDPM: ancestral DDPM (T steps), DDIM or DPM-Solver++
(K steps); mask sets written as HDF5 with PNG previews."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
from angioflow.models.ddpm.net import (
    CONDITION_LEVELS,
    MaskDDPM,
    Sampler,
    draw_conditions,
    layout_condition,
    make_scheduler,
)
from angioflow.pipeline.av_encoding import av_legend, av_to_rgb
from angioflow.pipeline.h5_formats import MASK_SET
from PIL import Image

__all__ = [
    "TERMINAL_ALPHA_BAR",
    "mask_grid",
    "sample_masks",
    "unweighted_epsilon",
    "write_mask_set",
]

TERMINAL_ALPHA_BAR = 1e-3  # below this signal share x_t tells nothing usable about x0


@torch.no_grad()
def sample_masks(
    model: MaskDDPM,
    n: int,
    *,
    sampler: Sampler = "ddim",
    steps: int = 50,
    seed: int = 0,
    eta: float = 1.0,
    batch_size: int = 32,
    terminal_mean: bool = True,
    undo_weighting: float = 0.0,
    layout: np.ndarray | None = None,
    layout_noise: int = 0,
    conditions: Sequence[int] | np.ndarray | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Generate ``n`` artery/vein maps.

    An up-sampler (a model with a ``layout_size``) draws one map for each ``layout``
    ((n, C, L, L) in [0, 1], L its layout size), seen through ``layout_noise`` steps of
    conditioning augmentation (:func:`models.ddpm.net.layout_condition`).

    A calibre-conditioned model (``calibre_condition``) draws map i with calibre level
    ``conditions[i]`` (a level 0..999; trained models know four bin levels,
    :func:`models.ddpm.net.calibre_levels`); by default the levels
    are drawn from its training masks' (:func:`models.ddpm.net.draw_conditions`, from
    ``seed``), so a set follows the training mix of fine and coarse vessels.

    ``sampler='ddpm'`` always runs the model's T training steps (``steps`` is ignored); DDIM
    and DPM-Solver++ run ``steps``. DDIM's ``eta`` scales the noise added back at each step:
    1 (default) keeps masks binary like ancestral sampling, 0 is deterministic DDIM, which
    averages ambiguous pixels to grey (measured: 0.23 vessel density against 0.08 real for a
    model trained 800 steps). Each batch's initial noise comes from its own
    generator seeded with (seed, batch index), so a set is reproducible and batches can be
    resumed independently.

    ``terminal_mean`` (default) takes the training masks' mean (``model.config.data_mean``)
    as the x0 estimate at the steps where alpha_bar_t < ``TERMINAL_ALPHA_BAR``, and the
    network everywhere else. There x_t is practically pure noise, so the posterior mean of x0
    is the data mean; the network's epsilon-based estimate divides its error by
    sqrt(alpha_bar_t) and, clipped to [-1, 1], lands near 0 on average: half vessel, which for
    sparse masks pushes every sample towards over-filling. Weights without a recorded
    ``data_mean`` (trained before it was recorded) are sampled as with ``terminal_mean=False``.

    ``undo_weighting`` (the c of a model trained with the vessel-weighted loss; 0: off) undoes
    that loss's bias. Per pixel, the exp(c * x0)-weighted squared error is minimised by the
    weighted posterior mean, q = p e^c / (p e^c + 1 - p) for a true vessel probability p, so
    each network x0 estimate (as a probability q) is mapped back to p = q / (q + (1 - q) e^c).
    Exact for an optimal network; an analysis tool for the loss ablation.

    Returns
    -------
    maps : (n, 2, S, S) float32 in [0, 1], channel 0 artery, channel 1 vein
    """
    device = next(model.parameters()).device
    size, channels = model.config.image_size, model.config.channels
    out = np.zeros((n, channels, size, size), np.float32)
    prior = None
    if terminal_mean and model.config.data_mean is not None:
        mean = torch.tensor(model.config.data_mean, dtype=torch.float32).view(1, -1, 1, 1)
        prior = (2 * mean - 1).to(device)
    if model.config.layout_size and (layout is None or len(layout) != n):
        raise ValueError(f"an up-sampler draws one mask per layout: give {n} layouts")
    levels = _sample_levels(model, n, seed, conditions)
    if not 0 <= layout_noise < model.config.timesteps:
        raise ValueError(f"layout_noise must be a step from 0 to {model.config.timesteps - 1}")
    for batch_index, start in enumerate(range(0, n, batch_size)):
        count = min(batch_size, n - start)
        scheduler = make_scheduler(model.config, sampler)
        scheduler.set_timesteps(model.config.timesteps if sampler == "ddpm" else steps)
        generator = torch.Generator().manual_seed(seed * 100_003 + batch_index)
        x = torch.randn((count, channels, size, size), generator=generator).to(device)
        x = x * scheduler.init_noise_sigma
        condition = level = None
        if model.config.layout_size:
            level = torch.full((count,), layout_noise, dtype=torch.long)
            small = torch.from_numpy(layout[start : start + count]).float()
            forward = make_scheduler(model.config, "ddpm")
            condition = layout_condition(small, size, level, forward, generator).to(device)
            level = level.to(device)
        calibre = None
        if levels is not None:
            calibre = torch.from_numpy(levels[start : start + count]).to(device)
        for t in scheduler.timesteps:
            alpha_bar = scheduler.alphas_cumprod[t]
            if prior is not None and alpha_bar < TERMINAL_ALPHA_BAR:
                predicted = (x - alpha_bar.sqrt() * prior) / (1 - alpha_bar).sqrt()
            else:
                predicted = model(
                    scheduler.scale_model_input(x, t),
                    t.expand(count).to(device),
                    layout=condition,
                    layout_noise=level,
                    condition=calibre,
                )
                if undo_weighting:
                    predicted = unweighted_epsilon(predicted, x, alpha_bar, undo_weighting)
            options = {"eta": eta} if sampler == "ddim" else {}
            step = scheduler.step(predicted, t, x, generator=generator, **options)
            x = step.prev_sample
        out[start : start + count] = ((x.clamp(-1, 1) + 1) / 2).float().cpu().numpy()
        if on_batch is not None:
            on_batch(count)
    return out


def _sample_levels(
    model: MaskDDPM, n: int, seed: int, conditions: Sequence[int] | np.ndarray | None
) -> np.ndarray | None:
    """The (n,) int64 calibre levels of a conditioned model's maps: the ones given, checked,
    or drawn from its training masks'; None for a model without the condition."""
    if not model.config.calibre_condition:
        if conditions is not None:
            raise ValueError("conditions are for a calibre-conditioned model (calibre_condition)")
        return None
    if conditions is None:
        return draw_conditions(model.config, n, seed)
    levels = np.asarray(conditions, np.int64).reshape(-1)
    if len(levels) != n or not ((0 <= levels) & (levels < CONDITION_LEVELS)).all():
        raise ValueError(f"give {n} conditions, each a level 0..{CONDITION_LEVELS - 1}")
    return levels


def unweighted_epsilon(
    predicted: torch.Tensor, x: torch.Tensor, alpha_bar: torch.Tensor, c: float
) -> torch.Tensor:
    """The epsilon a model trained with ``exp(c * x0)`` weights would predict without them.

    Parameters
    ----------
    predicted, x : (B, C, S, S) tensors
        The weighted-loss model's epsilon and the noisy sample x_t.
    alpha_bar : 0-d tensor
        alpha_bar_t of the step (in (0, 1)).
    c : float
        The loss's c.
    """
    x0 = (x - (1 - alpha_bar).sqrt() * predicted) / alpha_bar.sqrt()
    q = ((x0 + 1) / 2).clamp(1e-4, 1 - 1e-4)
    x0 = 2 * q / (q + (1 - q) * math.exp(c)) - 1
    return (x - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()


def mask_grid(labels: np.ndarray, columns: int = 8) -> np.ndarray:
    """(N, S, S) label masks as one RGB picture (red artery, blue vein, white crossing)."""
    n, size = len(labels), labels.shape[-1]
    rows = -(-n // columns)
    grid = np.full((rows * (size + 2) + 2, columns * (size + 2) + 2, 3), 64, np.uint8)
    for index, mask in enumerate(labels):
        r, c = divmod(index, columns)
        grid[
            2 + r * (size + 2) : 2 + r * (size + 2) + size,
            2 + c * (size + 2) : 2 + c * (size + 2) + size,
        ] = av_to_rgb(mask)
    return grid


def write_mask_set(
    path: Path,
    maps: np.ndarray,
    labels: np.ndarray,
    provenance: dict,
    *,
    previews: Path | None = None,
) -> None:
    """Write generated masks: ``labels`` (N, R, R) uint8 A/V class indices
    (:mod:`pipeline.av_encoding`) and the sampled ``probabilities`` (N, 2, S, S) uint8 (0-255;
    channel 0 artery, 1 vein) they were drawn from, chunked per mask and gzip-compressed, with
    attributes ``format`` ('angioflow-mask-set') and ``format_version``
    (:data:`pipeline.h5_formats.MASK_SET`), the provenance (weights sha256, sampler, steps,
    seed, ...) as JSON and ``av_classes`` (the legend as JSON). PNG ``previews`` are RGB grids
    of the labels at S px for people.

    The file is written to a temporary name and renamed, so a reader never sees half a set.
    """
    temp = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(temp, "w") as handle:
        handle.create_dataset(
            "labels",
            data=labels,
            chunks=(1, *labels.shape[1:]),
            compression="gzip",
            compression_opts=4,
        )
        handle.create_dataset(
            "probabilities",
            data=np.round(maps * 255).astype(np.uint8),
            chunks=(1, *maps.shape[1:]),
            compression="gzip",
            compression_opts=4,
        )
        MASK_SET.stamp(handle)
        handle.attrs["provenance"] = json.dumps(provenance, sort_keys=True)
        handle.attrs["av_classes"] = json.dumps(av_legend())
    temp.replace(path)
    if previews is not None:
        previews.mkdir(parents=True, exist_ok=True)
        step = max(1, labels.shape[-1] // maps.shape[-1])
        for start in range(0, len(labels), 64):
            shown = labels[start : start + 64, ::step, ::step]
            Image.fromarray(mask_grid(shown)).save(previews / f"masks_{start:05d}.png")
