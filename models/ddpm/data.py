"""Training masks of the A/V diffusion model: public A/V labels and exported approved cases,
resized to the model's size as (2, S, S) artery/vein channels (in {0, 1}, or soft area
fractions in [0, 1]), drawn in flipped batches of whole masks or of patches."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
from angioflow.pipeline.datasets import load_dataset
from angioflow.pipeline.h5_formats import EXPORT
from angioflow.pipeline.mask_structure import resize_av_labels

__all__ = [
    "AV_MASK_DATASETS",
    "MaskBatches",
    "load_exported_masks",
    "load_public_masks",
    "random_patches",
]

AV_MASK_DATASETS = ("rite", "les-av", "hrf-av")


def load_public_masks(
    data_root: Path, datasets: Sequence[str], size: int, *, coverage: float | None = 0.3
) -> np.ndarray:
    """Training splits of RITE (DRIVE training photos), LES-AV and HRF-AV (never a test split).

    Returns
    -------
    masks : (N, 2, size, size) float32 in {0, 1}; area fractions in [0, 1] when ``coverage``
        is None (:func:`pipeline.mask_structure.resize_av_labels`)
    """
    masks = []
    for name in datasets:
        if name not in AV_MASK_DATASETS:
            raise ValueError(f"A/V mask datasets are {AV_MASK_DATASETS}; got {name!r}")
        for record in load_dataset(data_root, name, "training"):
            masks.append(resize_av_labels(record.av, record.fov, size, coverage=coverage))
    return np.stack(masks) if masks else np.zeros((0, 2, size, size), np.float32)


def load_exported_masks(path: Path, size: int, *, coverage: float | None = 0.3) -> np.ndarray:
    """Approved A/V masks from an ``angioflow export`` file, resized like the public ones."""
    with h5py.File(path, "r") as handle:
        EXPORT.check(handle, path)
        groups = [handle[name] for name in sorted(handle)]
        masks = [
            resize_av_labels(g["av"][()], g["fov"][()] > 0, size, coverage=coverage) for g in groups
        ]
    return np.stack(masks) if masks else np.zeros((0, 2, size, size), np.float32)


class MaskBatches:
    """Random batches of masks with flips (left-right: the other eye; up-down: the other
    hemifield), drawn from a seeded numpy generator whose state a checkpoint saves."""

    def __init__(self, masks: np.ndarray, batch_size: int, rng: np.random.Generator) -> None:
        if not len(masks):
            raise ValueError("no training masks: name datasets or an export file")
        self.masks, self.batch_size, self.rng = masks, batch_size, rng

    def next(self) -> torch.Tensor:
        """(batch, 2, S, S) float32 x0."""
        return self.draw()[0]

    def draw(self) -> tuple[torch.Tensor, np.ndarray]:
        """(batch, 2, S, S) float32 x0 and the index of each one's mask (its flips aside)."""
        indices = self.rng.integers(0, len(self.masks), self.batch_size)
        picked = self.masks[indices].copy()
        flips = self.rng.random((self.batch_size, 2)) < 0.5
        for index, (left_right, up_down) in enumerate(flips):
            if left_right:
                picked[index] = picked[index, :, :, ::-1]
            if up_down:
                picked[index] = picked[index, :, ::-1, :]
        return torch.from_numpy(np.ascontiguousarray(picked)), indices


def random_patches(
    masks: torch.Tensor, size: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``size`` px patch of each mask, its corner uniform, with its coordinate channels.

    Parameters
    ----------
    masks : (B, C, S, S) tensor
    size : int, <= S
    rng : numpy Generator

    Returns
    -------
    patches : (B, C, size, size) tensor
    positions : (B, 2, size, size) float32, each pixel's column and row in the whole mask in
        [-1, 1] (:func:`models.ddpm.net.mask_positions`)
    """
    from angioflow.models.ddpm.net import mask_positions

    whole = masks.shape[-1]
    corners = rng.integers(0, whole - size + 1, (len(masks), 2))
    patches = torch.stack(
        [
            mask[:, top : top + size, left : left + size]
            for mask, (top, left) in zip(masks, corners, strict=True)
        ]
    )
    positions = torch.stack([mask_positions(whole, top, left, size) for top, left in corners])
    return patches, positions
