"""Generated A/V masks judged as trees against the real training masks (issue-32 statistics).

The real reference is the training split of the public A/V datasets (the generator's own
training masks) at ``size`` px, cropped to the FOV and made square; RITE's test masks, which no
generator sees, give the natural spread a real set shows against it. Memorisation is the best
vessel Dice of each generated mask with any training mask (in any flip) at 256 px.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from angioflow.pipeline.datasets import load_dataset
from angioflow.pipeline.mask_structure import resize_av_labels
from angioflow.pipeline.tree_stats import (
    TreeStats,
    best_overlap,
    compare_trees,
    fov_disc,
    tree_stats,
)

__all__ = ["MEMORY_SIZE", "TreeReference", "judge_masks", "load_tree_reference", "vessels_at"]

MEMORY_SIZE = 256
"""Side (px) at which generated and training vessel masks are compared for copying."""


@dataclass(frozen=True)
class TreeReference:
    """Real A/V masks to judge generated ones against.

    Attributes
    ----------
    size : int
        Side (px) of the square FOV crops the statistics were measured at.
    training : list of TreeStats
        The training masks' statistics.
    unseen : list of TreeStats
        RITE test masks' statistics (empty without RITE).
    training_vessels : (M, 256, 256) bool ndarray
        The training masks' vessels for the memorisation guard.
    """

    size: int
    training: list[TreeStats]
    unseen: list[TreeStats]
    training_vessels: np.ndarray

    def natural_spread(self) -> dict[str, float]:
        """RITE test masks against the training masks: the ratios an unseen real set gets."""
        return compare_trees(self.training, self.unseen) if self.unseen else {}


def vessels_at(channels: np.ndarray, size: int = MEMORY_SIZE) -> np.ndarray:
    """(2, S, S) bool A/V channels -> (size, size) bool vessels (area share >= 0.5)."""
    vessel = channels.any(axis=0).astype(np.float32)
    return cv2.resize(vessel, (size, size), interpolation=cv2.INTER_AREA) >= 0.5


def load_tree_reference(
    data: Path, datasets: Sequence[str] = ("rite", "les-av", "hrf-av"), *, size: int = 1024
) -> TreeReference:
    """Statistics of the datasets' training masks and of RITE's test masks at ``size`` px."""
    fov = fov_disc(size)
    training, vessels = [], []
    for name in datasets:
        for record in load_dataset(data, name, "training"):
            channels = resize_av_labels(record.av, record.fov, size, coverage=0.5) > 0
            training.append(tree_stats(channels, fov))
            vessels.append(vessels_at(channels))
    unseen = []
    if "rite" in datasets:
        for record in load_dataset(data, "rite", "test"):
            channels = resize_av_labels(record.av, record.fov, size, coverage=0.5) > 0
            unseen.append(tree_stats(channels, fov))
    return TreeReference(size, training, unseen, np.stack(vessels))


def judge_masks(masks: Sequence[np.ndarray], reference: TreeReference) -> dict[str, object]:
    """Tree ratios and memorisation of generated (2, S, S) bool masks (S = reference.size).

    Returns
    -------
    dict with ``trees`` (:func:`pipeline.tree_stats.compare_trees` against the training
    masks), ``natural_spread`` (RITE test against them), ``best_overlap`` (median, max and
    the count above 0.5 of each mask's best Dice with a training mask) and ``per_mask`` (each
    mask's statistics and best overlap).
    """
    fov = fov_disc(reference.size)
    stats = [tree_stats(m, fov) for m in masks]
    overlap = best_overlap(np.stack([vessels_at(m) for m in masks]), reference.training_vessels)
    return {
        "trees": compare_trees(reference.training, stats),
        "natural_spread": reference.natural_spread(),
        "best_overlap": {
            "median": float(np.median(overlap)),
            "max": float(overlap.max()),
            "above_half": int((overlap > 0.5).sum()),
        },
        "per_mask": [
            {**s.as_dict(), "best_overlap": float(o)} for s, o in zip(stats, overlap, strict=True)
        ],
    }
