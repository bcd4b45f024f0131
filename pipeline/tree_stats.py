"""Scale-free tree statistics of artery/vein masks inside their field of view, and how a set of
generated masks compares with real ones.

Every statistic is relative to the field of view (FOV), so masks of different sizes and
cameras compare: density is a share of the FOV, components and loops count only pieces of at
least ``min_share`` of the FOV, calibre is in FOV diameters. :mod:`pipeline.av_structure` holds
the descriptive statistics (tortuosity, fractal dimension) and their distribution distances;
this module holds the whole-tree rules a synthetic mask set must meet.

Channel masks are (2, H, W) bool with channel 0 artery and channel 1 vein (a crossing set in
both), as :func:`pipeline.mask_structure.av_channels` returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from angioflow.pipeline.metrics import Scores
from scipy import ndimage
from skimage.morphology import skeletonize

__all__ = [
    "TREE_SHARE",
    "TreeStats",
    "best_overlap",
    "compare_trees",
    "count_components",
    "fov_disc",
    "tree_stats",
]

_EIGHT = np.ones((3, 3), bool)
MIN_SHARE = 0.0005
"""Smallest component or loop counted, as a share of the FOV's pixels (0.05 %)."""
TREE_SHARE = 0.6
"""A mask draws whole trees when its largest artery and largest vein component each hold at
least this share of their class."""
THIN_DIAMETERS = 1 / 256
"""A centreline pixel is on a thin vessel when its local width is under this share of the FOV
diameter: thinner than one pixel of a 256-px mask."""


@dataclass(frozen=True)
class TreeStats(Scores):
    """Scale-free tree statistics of one A/V mask inside its FOV.

    Attributes
    ----------
    density : float
        Vessel pixels (either class) / FOV pixels.
    artery_components, vein_components : int
        8-connected components of the class holding at least 0.05 % of the FOV.
    artery_share, vein_share : float
        Largest component's pixels / the class's pixels (nan when the class is absent).
    loops : int
        Enclosed background regions of at least 0.05 % of the FOV inside the artery mask plus
        those inside the vein mask: a tree encloses few, a mesh of vessels many.
    calibre : float
        Vessel area / centreline length, in FOV diameters (nan without vessels).
    thin_share : float
        Share of centreline pixels whose width (twice the distance to the background, less one
        pixel) is under 1/256 of the FOV diameter (nan without vessels).
    """

    density: float
    artery_components: int
    vein_components: int
    artery_share: float
    vein_share: float
    loops: int
    calibre: float
    thin_share: float

    @property
    def is_tree(self) -> bool:
        """Largest artery and largest vein component each hold >= 60 % of their class."""
        return bool(self.artery_share >= TREE_SHARE and self.vein_share >= TREE_SHARE)


RATIO_STATISTICS = ("density", "artery_components", "vein_components", "calibre", "thin_share")


def fov_disc(size: int) -> np.ndarray:
    """(size, size) bool disc inscribed in the square: the FOV of a square-cropped mask."""
    rows, cols = np.mgrid[0:size, 0:size]
    centre = (size - 1) / 2
    return (rows - centre) ** 2 + (cols - centre) ** 2 <= (size / 2) ** 2


def count_components(mask: np.ndarray, min_px: float = 0) -> tuple[int, float]:
    """8-connected components of ``mask`` holding at least ``min_px`` pixels, and the largest
    component's share of the mask's pixels (nan for an empty mask).

    Example
    -------
    >>> mask = np.zeros((5, 9), bool); mask[2, :4] = True; mask[2, 6] = True
    >>> count_components(mask), count_components(mask, min_px=2)
    ((2, 0.8), (1, 0.8))
    """
    labelled, count = ndimage.label(mask, structure=_EIGHT)
    if count == 0:
        return 0, float("nan")
    sizes = np.bincount(labelled.ravel())[1:]
    return int((sizes >= min_px).sum()), float(sizes.max() / sizes.sum())


def _loops(mask: np.ndarray, fov: np.ndarray, min_px: float) -> int:
    # Outside the FOV counts as vessel-free background that touches the border, so the FOV's
    # edge closes no loop by itself; 4-connected background, the complement of 8-connected
    # vessels.
    labelled, count = ndimage.label(~mask)
    if count == 0:
        return 0
    sizes = np.bincount(labelled.ravel(), minlength=count + 1)
    open_regions = np.unique(
        np.r_[labelled[~fov], labelled[0], labelled[-1], labelled[:, 0], labelled[:, -1]]
    )
    enclosed = np.ones(count + 1, bool)
    enclosed[0] = False
    enclosed[open_regions] = False
    return int((enclosed & (sizes >= min_px)).sum())


def tree_stats(channels: np.ndarray, fov: np.ndarray) -> TreeStats:
    """:class:`TreeStats` of a (2, H, W) artery/vein mask inside ``fov``.

    Parameters
    ----------
    channels : (2, H, W) bool ndarray, artery and vein
    fov : (H, W) bool ndarray, not empty

    Example
    -------
    >>> fov = fov_disc(64)
    >>> mask = np.zeros((2, 64, 64), bool); mask[0, 32, 8:56] = True; mask[1, 8:56, 20] = True
    >>> s = tree_stats(mask, fov)
    >>> (s.artery_components, s.vein_components, s.loops, s.is_tree, s.thin_share)
    (1, 1, 0, True, 0.0)
    """
    channels = channels.astype(bool) & fov[None]
    vessel = channels[0] | channels[1]
    fov_px = float(fov.sum())
    if fov_px == 0:
        raise ValueError("the field of view is empty")
    diameter = 2 * np.sqrt(fov_px / np.pi)
    min_px = MIN_SHARE * fov_px
    artery_components, artery_share = count_components(channels[0], min_px)
    vein_components, vein_share = count_components(channels[1], min_px)
    skeleton = skeletonize(vessel)
    length = int(skeleton.sum())
    if length:
        width = 2 * ndimage.distance_transform_edt(vessel)[skeleton] - 1
        thin_share = float((width < diameter * THIN_DIAMETERS).mean())
        calibre = float(vessel.sum() / length / diameter)
    else:
        thin_share = calibre = float("nan")
    return TreeStats(
        density=float(vessel.sum() / fov_px),
        artery_components=artery_components,
        vein_components=vein_components,
        artery_share=artery_share,
        vein_share=vein_share,
        loops=_loops(channels[0], fov, min_px) + _loops(channels[1], fov, min_px),
        calibre=calibre,
        thin_share=thin_share,
    )


def compare_trees(real: list[TreeStats], generated: list[TreeStats]) -> dict[str, float]:
    """Ratios of the generated set's medians to the real set's, its tree and near-empty rates.

    Returns
    -------
    dict
        ``<statistic>_ratio`` for each of density, artery/vein components, calibre and thin
        share (generated median / real median; nan where the real median is 0) and for loops
        (generated mean / real mean: most real masks enclose none);
        ``tree_rate`` and ``real_tree_rate`` (share of masks that are trees) and
        ``tree_rate_ratio``; ``near_empty`` (share of generated masks whose density is under a
        third of the real median); ``real``/``generated`` medians; ``n_real``, ``n_generated``.

    Raises
    ------
    ValueError
        If either list is empty.

    Example
    -------
    >>> fov = fov_disc(64)
    >>> mask = np.zeros((2, 64, 64), bool); mask[0, 32, 8:56] = True; mask[1, 8:56, 20] = True
    >>> same = compare_trees([tree_stats(mask, fov)], [tree_stats(mask, fov)])
    >>> same["density_ratio"], same["tree_rate_ratio"], same["near_empty"]
    (1.0, 1.0, 0.0)
    """
    if not real or not generated:
        raise ValueError("compare_trees needs at least one real and one generated mask")
    result: dict[str, float] = {"n_real": len(real), "n_generated": len(generated)}
    for name in RATIO_STATISTICS:
        real_median = float(np.nanmedian([getattr(s, name) for s in real]))
        generated_median = float(np.nanmedian([getattr(s, name) for s in generated]))
        result[f"real_{name}"] = real_median
        result[f"generated_{name}"] = generated_median
        result[f"{name}_ratio"] = generated_median / real_median if real_median else float("nan")
    result["real_loops"] = float(np.mean([s.loops for s in real]))
    result["generated_loops"] = float(np.mean([s.loops for s in generated]))
    result["loops_ratio"] = (
        result["generated_loops"] / result["real_loops"] if result["real_loops"] else float("nan")
    )
    real_rate = float(np.mean([s.is_tree for s in real]))
    result["real_tree_rate"] = real_rate
    result["tree_rate"] = float(np.mean([s.is_tree for s in generated]))
    result["tree_rate_ratio"] = result["tree_rate"] / real_rate if real_rate else float("nan")
    result["near_empty"] = float(
        np.mean([s.density < result["real_density"] / 3 for s in generated])
    )
    return result


def best_overlap(generated: np.ndarray, training: np.ndarray) -> np.ndarray:
    """Each generated mask's best Dice with any training mask in any of its four flips.

    The memorisation guard: real masks of different eyes overlap by about 0.2; a copy of a
    training mask (flipped or not) scores near 1.

    Parameters
    ----------
    generated : (N, S, S) bool ndarray, vessel masks
    training : (M, S, S) bool ndarray, vessel masks at the same size

    Returns
    -------
    best : (N,) float64 in [0, 1]

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> training = rng.random((3, 16, 16)) > 0.7
    >>> best_overlap(training[:1, ::-1], training).round(6).tolist()
    [1.0]
    """
    if generated.shape[1:] != training.shape[1:]:
        raise ValueError(
            f"generated masks are {generated.shape[1:]}, training masks {training.shape[1:]}: "
            "compare them at one size"
        )
    flips = (training, training[:, :, ::-1], training[:, ::-1], training[:, ::-1, ::-1])
    bank = np.concatenate(flips).reshape(4 * len(training), -1).astype(np.float32)
    samples = generated.reshape(len(generated), -1).astype(np.float32)
    overlap = samples @ bank.T
    sizes = samples.sum(1)[:, None] + bank.sum(1)[None]
    return (2 * overlap / np.maximum(sizes, 1)).max(axis=1).astype(np.float64)
