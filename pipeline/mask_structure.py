"""A/V masks as generator data: two-channel conversion, resizing, clean-up of samples, and the
structural statistics that tell a plausible vessel tree from noise.

Label masks hold 0 background, 1 artery, 2 vein, 3 crossing/uncertain (as the case store);
channel masks are (2, H, W) with channel 0 artery and channel 1 vein, a crossing set in both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
from scipy import ndimage
from scipy.stats import wasserstein_distance
from skimage.morphology import remove_small_objects, skeletonize

__all__ = [
    "StructureStats",
    "av_channels",
    "binarise_av",
    "compare_structure",
    "labels_from_channels",
    "resize_av_labels",
    "structure_stats",
]

_EIGHT = np.ones((3, 3), bool)


@dataclass(frozen=True)
class StructureStats:
    """Structural statistics of one A/V label mask.

    Attributes
    ----------
    density : float
        Vessel pixels (any class) / all pixels.
    artery_vein_ratio : float
        Artery pixels / vein pixels (crossings count in both; nan without veins).
    components : int
        8-connected components of the artery mask plus those of the vein mask.
    branch_points : int
        Junctions of the vessel skeleton (clusters of skeleton pixels with >= 3 neighbours).
    """

    density: float
    artery_vein_ratio: float
    components: int
    branch_points: int


def av_channels(labels: np.ndarray) -> np.ndarray:
    """(H, W) labels 0-3 -> (2, H, W) bool: artery (1 or 3), vein (2 or 3)."""
    return np.stack([(labels == 1) | (labels == 3), (labels == 2) | (labels == 3)])


def labels_from_channels(channels: np.ndarray) -> np.ndarray:
    """(2, H, W) bool -> (H, W) uint8 labels; pixels set in both channels become 3."""
    artery, vein = channels[0].astype(bool), channels[1].astype(bool)
    labels = np.zeros(artery.shape, np.uint8)
    labels[artery] = 1
    labels[vein] = 2
    labels[artery & vein] = 3
    return labels


def resize_av_labels(
    labels: np.ndarray, fov: np.ndarray, size: int, *, coverage: float = 0.3
) -> np.ndarray:
    """A label mask cropped to its field of view, padded square and resized to ``size``.

    Each channel is area-averaged; a pixel is kept where its class covers at least
    ``coverage`` of it, so vessels thinner than the new pixel still show.

    Returns
    -------
    channels : (2, size, size) float32 in {0, 1}
    """
    rows, cols = np.nonzero(fov)
    if not len(rows):
        raise ValueError("the field of view is empty")
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    side = max(bottom - top, right - left)
    square = np.zeros((2, side, side), np.float32)
    crop = av_channels(labels[top:bottom, left:right]) & fov[top:bottom, left:right]
    off_r, off_c = (side - crop.shape[1]) // 2, (side - crop.shape[2]) // 2
    square[:, off_r : off_r + crop.shape[1], off_c : off_c + crop.shape[2]] = crop
    resized = [cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in square]
    return (np.stack(resized) >= coverage).astype(np.float32)


def binarise_av(
    probabilities: np.ndarray,
    *,
    threshold: float = 0.5,
    min_component_px: int = 4,
    crossing_margin: float = 0.1,
) -> np.ndarray:
    """Clean label mask from a generated (2, H, W) artery/vein map in [0, 1].

    A pixel is a vessel where a channel reaches ``threshold``; where both do, it takes the
    stronger class unless they are within ``crossing_margin`` (a crossing, label 3). Components
    smaller than ``min_component_px`` pixels are removed per class.

    Returns
    -------
    labels : (H, W) uint8, 0 background, 1 artery, 2 vein, 3 crossing
    """
    artery, vein = probabilities[0], probabilities[1]
    on_a, on_v = artery >= threshold, vein >= threshold
    both = on_a & on_v
    crossing = both & (np.abs(artery - vein) < crossing_margin)
    keep_a = on_a & ~(both & ~crossing & (vein > artery))
    keep_v = on_v & ~(both & ~crossing & (artery > vein))
    cleaned = [
        remove_small_objects(mask, max_size=min_component_px - 1, connectivity=2)
        if min_component_px > 1
        else mask
        for mask in (keep_a, keep_v)
    ]
    return labels_from_channels(np.stack(cleaned))


def structure_stats(labels: np.ndarray) -> StructureStats:
    """:class:`StructureStats` of an (H, W) label mask.

    Examples
    --------
    >>> labels = np.zeros((9, 9), np.uint8)
    >>> labels[4, :] = 1; labels[:4, 4] = 2
    >>> s = structure_stats(labels)
    >>> (round(s.density, 3), s.artery_vein_ratio, s.components, s.branch_points)
    (0.16, 2.25, 2, 1)
    """
    channels = av_channels(labels)
    vessel = channels.any(axis=0)
    artery_px, vein_px = int(channels[0].sum()), int(channels[1].sum())
    components = sum(int(ndimage.label(c, structure=_EIGHT)[1]) for c in channels)
    skeleton = skeletonize(vessel)
    neighbours = ndimage.convolve(
        skeleton.astype(np.uint8), _EIGHT.astype(np.uint8), mode="constant"
    )
    junctions = skeleton & (neighbours - 1 >= 3)
    return StructureStats(
        density=float(vessel.mean()),
        artery_vein_ratio=artery_px / vein_px if vein_px else float("nan"),
        components=components,
        branch_points=int(ndimage.label(junctions, structure=_EIGHT)[1]),
    )


def compare_structure(
    real: list[StructureStats], generated: list[StructureStats]
) -> dict[str, dict[str, float]]:
    """Per statistic: real and generated means, the relative difference of the means, and the
    1-D Wasserstein distance of the two distributions in units of the real standard deviation.
    Also the near-empty rate: generated masks whose density is below a third of the real
    median."""
    result: dict[str, dict[str, float]] = {}
    for name in ("density", "artery_vein_ratio", "components", "branch_points"):
        r = np.array([asdict(s)[name] for s in real], float)
        g = np.array([asdict(s)[name] for s in generated], float)
        r, g = r[np.isfinite(r)], g[np.isfinite(g)]
        spread = float(r.std()) or 1.0
        result[name] = {
            "real_mean": float(r.mean()),
            "generated_mean": float(g.mean()) if len(g) else float("nan"),
            "relative_difference": float(abs(g.mean() - r.mean()) / abs(r.mean()))
            if len(g) and r.mean()
            else float("nan"),
            "wasserstein_in_real_sd": float(wasserstein_distance(r, g) / spread)
            if len(g)
            else float("nan"),
        }
    median = float(np.median([s.density for s in real]))
    result["near_empty"] = {
        "real_median_density": median,
        "rate": float(np.mean([s.density < median / 3 for s in generated])),
    }
    return result
