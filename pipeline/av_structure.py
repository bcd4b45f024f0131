"""Structural statistics of artery/vein label masks and distances between real and synthetic
distributions of them.

Label masks hold 0 background, 1 artery, 2 vein, 3 crossing/uncertain (as the case store).
Lengths are in pixels of the mask given: compare real and synthetic masks at the same size.

References
----------
.. [1] Grisan, Foracchia, Ruggeri, "A novel method for the automatic grading of retinal vessel
       tortuosity", IEEE TMI 27(3), 2008 (arc-over-chord tortuosity of vessel segments).
.. [2] Liebovitch, Toth, "A fast algorithm to determine fractal dimensions by box counting",
       Physics Letters A 141, 1989.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from angioflow.pipeline.mask_structure import av_channels
from angioflow.pipeline.metrics import Scores
from angioflow.pipeline.tree_stats import count_components
from scipy import ndimage
from scipy.stats import wasserstein_distance
from skimage.morphology import skeletonize

__all__ = [
    "StructureStats",
    "box_counting_dimension",
    "compare_structure",
    "segment_tortuosity",
    "structure_stats",
    "vessel_calibres",
]

_EIGHT = np.ones((3, 3), bool)
_SQRT2 = float(np.sqrt(2.0))


@dataclass(frozen=True)
class StructureStats(Scores):
    """Structural statistics of one A/V label mask.

    Attributes
    ----------
    density, artery_vein_ratio : float
        Vessel pixels (any class) / all pixels of the mask, and artery pixels / vein pixels
        (crossings count in both; nan without veins).
    artery_components, vein_components, artery_largest_share, vein_largest_share
        Count (int) of 8-connected components of the artery and of the vein mask, of any size,
        and the largest one's pixels / the class's pixels (float, nan when the class is
        absent): near 1 for one connected tree, low for scattered fragments.
    branch_points : int
        Junctions of the vessel skeleton (clusters of skeleton pixels with >= 3 neighbours).
    crossings : int
        Places where the artery and vein skeletons meet (clusters where both, each grown by one
        pixel, overlap). Vessels running side by side within two pixels count once per contact.
    calibre_mean_px, calibre_sd_px : float
        Mean and standard deviation of the vessel width along the skeleton, in pixels
        (nan without vessels).
    tortuosity : float
        Mean arc/chord ratio of skeleton segments between junctions and ends with a chord of at
        least 10 px (1 for straight vessels; nan when no segment is that long).
    fractal_dimension : float
        Box-counting dimension of the vessel mask (nan without vessels).
    """

    density: float
    artery_vein_ratio: float
    artery_components: int
    vein_components: int
    artery_largest_share: float
    vein_largest_share: float
    branch_points: int
    crossings: int
    calibre_mean_px: float
    calibre_sd_px: float
    tortuosity: float
    fractal_dimension: float


STATISTICS: tuple[str, ...] = tuple(f.name for f in fields(StructureStats))


def _neighbour_count(mask: np.ndarray) -> np.ndarray:
    """8-neighbours of each pixel that are set in ``mask`` (the pixel itself not counted)."""
    return ndimage.convolve(mask.astype(np.uint8), _EIGHT.astype(np.uint8), mode="constant") - mask


def vessel_calibres(labels: np.ndarray) -> np.ndarray:
    """Vessel width at every skeleton pixel, in pixels.

    The width is ``2 d - 1`` where ``d`` is the pixel's Euclidean distance to the nearest
    background pixel centre: 1 for a one-pixel line, 3 for a three-pixel band. The image border
    is not background, so a vessel leaving the image keeps its width there.

    Parameters
    ----------
    labels : (H, W) int ndarray, 0 background, 1-3 vessel

    Returns
    -------
    widths : (K,) float64, one per skeleton pixel (empty without vessels)

    Example
    -------
    >>> band = np.zeros((7, 20), np.uint8); band[2:5, :] = 1
    >>> float(np.median(vessel_calibres(band)))
    3.0
    """
    vessel = labels > 0
    if not vessel.any():
        return np.zeros(0)
    distance = ndimage.distance_transform_edt(vessel)
    return 2 * distance[skeletonize(vessel)] - 1


def segment_tortuosity(skeleton: np.ndarray, *, min_chord_px: float = 10.0) -> np.ndarray:
    """Arc/chord ratio of each skeleton segment between junctions and ends.

    The mask is thinned first (a no-op on :func:`skimage.morphology.skeletonize` output), then
    junction pixels (>= 3 neighbours) split it into segments. A segment's arc length
    counts 1 per horizontal or vertical step and sqrt(2) per diagonal step not already bridged
    by two such steps; its chord is the distance between its two ends. Closed loops and
    segments whose chord is under ``min_chord_px`` are left out.

    Parameters
    ----------
    skeleton : (H, W) bool ndarray, a vessel skeleton (or any thin mask)
    min_chord_px : float

    Returns
    -------
    ratios : (S,) float64, each >= 1

    Example
    -------
    >>> line = np.zeros((5, 30), bool); line[2, 3:28] = True
    >>> segment_tortuosity(line)
    array([1.])
    """
    skeleton = skeletonize(skeleton.astype(bool))
    segments = skeleton & (_neighbour_count(skeleton) < 3)
    labelled, count = ndimage.label(segments, structure=_EIGHT)
    if count == 0:
        return np.zeros(0)
    padded = np.pad(labelled, 1)
    core = padded[1:-1, 1:-1]
    arc = np.zeros(count + 1)

    def shifted(dr: int, dc: int) -> np.ndarray:
        return padded[1 + dr : padded.shape[0] - 1 + dr, 1 + dc : padded.shape[1] - 1 + dc]

    for dr, dc in ((0, 1), (1, 0)):
        pair = (core > 0) & (shifted(dr, dc) > 0)
        arc += np.bincount(core[pair], minlength=count + 1)
    for dc in (1, -1):
        bridged = (shifted(0, dc) > 0) | (shifted(1, 0) > 0)
        pair = (core > 0) & (shifted(1, dc) > 0) & ~bridged
        arc += _SQRT2 * np.bincount(core[pair], minlength=count + 1)
    ends = segments & (_neighbour_count(segments) == 1)
    rows, cols = np.nonzero(ends)
    owner = labelled[rows, cols]
    order = np.argsort(owner, kind="stable")
    rows, cols, owner = rows[order], cols[order], owner[order]
    two_ends = np.bincount(owner, minlength=count + 1) == 2
    first = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    keep = two_ends[owner[first]]
    first = first[keep]
    chord = np.hypot(rows[first + 1] - rows[first], cols[first + 1] - cols[first])
    long_enough = chord >= min_chord_px
    ratios = arc[owner[first]][long_enough] / chord[long_enough]
    return np.maximum(ratios, 1.0)


def box_counting_dimension(mask: np.ndarray, *, min_box_px: int = 2) -> float:
    """Box-counting (Minkowski-Bouligand) dimension of a binary mask.

    Boxes of side ``min_box_px, 2 min_box_px, ...`` up to a quarter of the shorter image side
    tile the mask (padded); the dimension is minus the slope of log(boxes touching the mask)
    against log(box side).

    Parameters
    ----------
    mask : (H, W) bool ndarray
    min_box_px : int

    Returns
    -------
    dimension : float, nan for an empty mask or an image too small for two box sizes

    Examples
    --------
    >>> line = np.zeros((256, 256), bool); line[100, :] = True
    >>> round(box_counting_dimension(line), 6)
    1.0
    >>> round(box_counting_dimension(np.ones((256, 256), bool)), 6)
    2.0
    """
    mask = mask.astype(bool)
    sizes = []
    side = min_box_px
    while side <= min(mask.shape) // 4:
        sizes.append(side)
        side *= 2
    if not mask.any() or len(sizes) < 2:
        return float("nan")
    counts = []
    for side in sizes:
        pad_r, pad_c = -mask.shape[0] % side, -mask.shape[1] % side
        tiled = np.pad(mask, ((0, pad_r), (0, pad_c)))
        boxes = tiled.reshape(tiled.shape[0] // side, side, tiled.shape[1] // side, side)
        counts.append(int(boxes.any(axis=(1, 3)).sum()))
    slope = np.polyfit(np.log(sizes), np.log(counts), 1)[0]
    return float(-slope)


def structure_stats(labels: np.ndarray) -> StructureStats:
    """:class:`StructureStats` of an (H, W) label mask.

    Examples
    --------
    >>> labels = np.zeros((9, 9), np.uint8)
    >>> labels[4, :] = 1; labels[:4, 4] = 2
    >>> s = structure_stats(labels)
    >>> (round(s.density, 3), s.artery_vein_ratio, s.artery_components, s.vein_components)
    (0.16, 2.25, 1, 1)
    >>> (s.branch_points, s.crossings, s.calibre_mean_px)
    (1, 1, 1.0)
    """
    channels = av_channels(labels)
    vessel = channels.any(axis=0)
    artery_px, vein_px = int(channels[0].sum()), int(channels[1].sum())
    artery_components, artery_share = count_components(channels[0])
    vein_components, vein_share = count_components(channels[1])
    skeleton = skeletonize(vessel)
    junctions = skeleton & (_neighbour_count(skeleton) >= 3)
    artery_reach = ndimage.binary_dilation(skeletonize(channels[0]), _EIGHT)
    vein_reach = ndimage.binary_dilation(skeletonize(channels[1]), _EIGHT)
    calibres = vessel_calibres(labels)
    tortuosity = segment_tortuosity(skeleton)
    return StructureStats(
        density=float(vessel.mean()),
        artery_vein_ratio=artery_px / vein_px if vein_px else float("nan"),
        artery_components=artery_components,
        vein_components=vein_components,
        artery_largest_share=artery_share,
        vein_largest_share=vein_share,
        branch_points=int(ndimage.label(junctions, structure=_EIGHT)[1]),
        crossings=int(ndimage.label(artery_reach & vein_reach, structure=_EIGHT)[1]),
        calibre_mean_px=float(calibres.mean()) if calibres.size else float("nan"),
        calibre_sd_px=float(calibres.std()) if calibres.size else float("nan"),
        tortuosity=float(tortuosity.mean()) if tortuosity.size else float("nan"),
        fractal_dimension=box_counting_dimension(vessel),
    )


def compare_structure(
    real: list[StructureStats], generated: list[StructureStats]
) -> dict[str, dict[str, float]]:
    """How far generated masks' statistics lie from real ones'.

    Per statistic: real and generated means, the relative difference of the means, and the 1-D
    Wasserstein distance of the two distributions in units of the real standard deviation
    (nan values, e.g. the A/V ratio of a mask without veins, are left out). ``combined`` holds
    ``structure_distance``, the mean of those Wasserstein distances over the statistics (0 for
    identical distributions). ``near_empty`` holds the rate of generated masks whose density is
    under a third of the real median.

    Raises
    ------
    ValueError
        If either list is empty.
    """
    if not real or not generated:
        raise ValueError("compare_structure needs at least one real and one generated mask")
    result: dict[str, dict[str, float]] = {}
    distances = []
    for name in STATISTICS:
        r = np.array([getattr(s, name) for s in real], float)
        g = np.array([getattr(s, name) for s in generated], float)
        r, g = r[np.isfinite(r)], g[np.isfinite(g)]
        if not len(r) or not len(g):
            result[name] = dict.fromkeys(
                ("real_mean", "generated_mean", "relative_difference", "wasserstein_in_real_sd"),
                float("nan"),
            )
            continue
        spread = float(r.std()) or 1.0
        distance = float(wasserstein_distance(r, g) / spread)
        distances.append(distance)
        result[name] = {
            "real_mean": float(r.mean()),
            "generated_mean": float(g.mean()),
            "relative_difference": float(abs(g.mean() - r.mean()) / abs(r.mean()))
            if r.mean()
            else float("nan"),
            "wasserstein_in_real_sd": distance,
        }
    result["combined"] = {
        "structure_distance": float(np.mean(distances)) if distances else float("nan")
    }
    median = float(np.median([s.density for s in real]))
    result["near_empty"] = {
        "real_median_density": median,
        "rate": float(np.mean([s.density < median / 3 for s in generated])),
    }
    return result
