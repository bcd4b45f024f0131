"""A/V masks as generator data: two-channel conversion, resizing and clean-up of samples
(their structural statistics are in :mod:`pipeline.av_structure`).

Label masks hold 0 background, 1 artery, 2 vein, 3 crossing/uncertain (as the case store);
channel masks are (2, H, W) with channel 0 artery and channel 1 vein, a crossing set in both.
"""

from __future__ import annotations

import cv2
import numpy as np
from angioflow.pipeline.preprocess import square_fov_crop
from angioflow.pipeline.tree_stats import fov_disc
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from skimage.draw import line
from skimage.filters import apply_hysteresis_threshold
from skimage.morphology import remove_small_objects, skeletonize

__all__ = [
    "av_channels",
    "binarise_av",
    "bridge_gaps",
    "enlarge_soft_av",
    "labels_from_channels",
    "labels_from_soft_av",
    "resize_av_labels",
]


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
    labels: np.ndarray, fov: np.ndarray, size: int, *, coverage: float | None = 0.3
) -> np.ndarray:
    """A label mask cropped to its field of view, padded square and resized to ``size``.

    Each channel is area-averaged: a pixel holds the share of it its class covers. With a
    ``coverage``, a pixel is kept where that share reaches it, so vessels thinner than the new
    pixel still show; without, the shares are returned (soft channels, whose sub-pixel mass
    :func:`enlarge_soft_av` reads back as calibre).

    Returns
    -------
    channels : (2, size, size) float32 in {0, 1}, or in [0, 1] when ``coverage`` is None
    """
    square = np.stack(
        [square_fov_crop((c & fov).astype(np.float32), fov) for c in av_channels(labels)]
    )
    # area-averaging when shrinking; when enlarging a pixel's share is the bilinear estimate
    method = cv2.INTER_AREA if size < square.shape[-1] else cv2.INTER_LINEAR
    resized = np.stack([cv2.resize(c, (size, size), interpolation=method) for c in square])
    if coverage is None:
        return np.clip(resized, 0.0, 1.0)
    return (resized >= coverage).astype(np.float32)


def enlarge_soft_av(
    maps: np.ndarray,
    size: int,
    *,
    floor: float = 0.8,
    anchor: float = 0.5,
    reach: float = 1 / 64,
) -> np.ndarray:
    """Enlarge soft (2, S, S) artery/vein channels to ``size`` px with calibre from their mass.

    A vessel thinner than one pixel of ``maps`` survives in them only as a pixel share (its
    area fraction). Per channel: the bilinear enlargement ``u``; the traced vessels, the pixels
    of ``u > floor / f`` (``f = size / S``) connected to a pixel of ``u > anchor``
    (hysteresis: a faint trace counts as a thin branch only where it joins the tree; a faint
    haze of its own, which sampled maps have, is not a vessel); their skeleton as centre lines;
    the width at a centre-line pixel, the cross-section mass (the sum of ``u`` in a
    ``(2f + 1)``-pixel window over the centre-line pixels in it); vessel is every pixel within
    half that width of its nearest centre-line pixel, and every traced pixel of ``u >= 0.5``
    (a vessel wider than the window, whose edges the enlargement already places). Thin
    branches stay thin and wide arcades wide at any output size. Before the centre lines are
    drawn, the gaps of at most ``reach`` between a traced vessel's end and another traced
    piece are bridged (:func:`bridge_gaps`): a sampled map's faintest vessels dip under the
    trace in places, and a bridge drawn there has the width of the little mass it holds.

    Parameters
    ----------
    maps : (2, S, S) float ndarray in [0, 1]
    size : int, output side in pixels (>= S)
    floor : float
        Share of one pixel of ``maps`` below which a faint trace is not a vessel.
    anchor : float
        Share of one pixel of ``maps`` a trace must reach somewhere to be a vessel.
    reach : float
        Longest gap bridged, as a share of the side of ``maps`` (0: none).

    Returns
    -------
    channels : (2, size, size) bool

    Example
    -------
    >>> maps = np.zeros((2, 32, 32), np.float32)
    >>> maps[0, 16, 4:28] = 0.25  # a quarter-pixel branch ...
    >>> maps[0, 4:28, 4] = 1.0  # ... joining a one-pixel vessel
    >>> wide = enlarge_soft_av(maps, 128)
    >>> int(np.median(wide[0].sum(axis=0)[40:100]))  # the branch, 4x: one pixel
    1
    >>> maps[0, 4:28, 4] = 0.0  # alone, the faint trace is not a vessel
    >>> int(enlarge_soft_av(maps, 128)[0].sum())
    0
    """
    factor = size / maps.shape[-1]
    window = int(2 * round(factor) + 1)
    enlarged = []
    for channel in maps:
        u = cv2.resize(channel.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
        traced = bridge_gaps(apply_hysteresis_threshold(u, floor / factor, anchor), reach * size)
        centre = skeletonize(traced)
        if not centre.any():
            enlarged.append(np.zeros((size, size), bool))
            continue
        mass = cv2.boxFilter(u * traced, -1, (window, window), normalize=False)
        count = cv2.boxFilter(centre.astype(np.float32), -1, (window, window), normalize=False)
        width = np.where(centre, mass / np.maximum(count, 1), 0)
        distance, (rows, cols) = ndi.distance_transform_edt(~centre, return_indices=True)
        drawn = distance <= np.maximum(width[rows, cols], 1.0) / 2
        enlarged.append(drawn | (traced & (u >= 0.5)))
    return np.stack(enlarged)


def bridge_gaps(mask: np.ndarray, reach: float) -> np.ndarray:
    """``mask`` with its pieces joined across gaps of at most ``reach`` px, never closing a loop.

    Each end of the mask's skeleton (a skeleton pixel with one neighbour) is a candidate to
    join the nearest pixel of each other 8-connected piece within ``reach``; candidates are
    taken shortest first and kept only when they join two pieces not joined yet (Kruskal's
    minimum spanning forest), and each kept one is drawn as a one-pixel line. So a broken
    vessel is whole again, a loose end is not joined to a vessel it merely passes, and the
    number of enclosed loops does not change.

    Parameters
    ----------
    mask : (H, W) bool
    reach : float, longest bridge (px)

    Returns
    -------
    bridged : (H, W) bool, a copy

    Example
    -------
    >>> mask = np.zeros((9, 30), bool)
    >>> mask[6, 2:12] = mask[6, 15:28] = True  # a vessel broken by a gap of 3 px
    >>> mask[0, 2:28] = True  # another vessel, 6 px away
    >>> joined = bridge_gaps(mask, 4.5)
    >>> bool(joined[6, 2:28].all()), int(joined[1:6].sum())
    (True, 0)
    """
    bridged = mask.copy()
    pieces, count = ndi.label(mask, _EIGHT)
    if count < 2 or reach <= 0:
        return bridged
    rows, cols = np.nonzero(mask)
    pixels = cKDTree(np.column_stack([rows, cols]))
    skeleton = skeletonize(mask)
    neighbours = ndi.convolve(skeleton.astype(np.uint8), _EIGHT.astype(np.uint8), mode="constant")
    candidates = []  # (length, piece, other piece, end row, end col, row, col)
    for r, c in zip(*np.nonzero(skeleton & (neighbours <= 2)), strict=True):
        near = np.asarray(pixels.query_ball_point((r, c), reach), dtype=np.int64)
        near = near[pieces[rows[near], cols[near]] != pieces[r, c]]
        if not len(near):
            continue
        length = np.hypot(rows[near] - r, cols[near] - c)
        other = pieces[rows[near], cols[near]]
        for piece in np.unique(other):
            k = np.flatnonzero(other == piece)[np.argmin(length[other == piece])]
            candidates.append((length[k], pieces[r, c], piece, r, c, rows[near[k]], cols[near[k]]))
    joined = np.arange(count + 1)  # union-find over pieces

    def root(piece: int) -> int:
        while joined[piece] != piece:
            joined[piece] = joined[joined[piece]]
            piece = joined[piece]
        return piece

    for _, a, b, r0, c0, r1, c1 in sorted(candidates, key=lambda candidate: candidate[0]):
        a, b = root(a), root(b)
        if a != b:
            joined[a] = b
            bridged[line(r0, c0, r1, c1)] = True
    return bridged


_EIGHT = np.ones((3, 3), bool)


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


def labels_from_soft_av(maps: np.ndarray, size: int) -> np.ndarray:
    """Label masks at ``size`` px from soft (N, 2, S, S) artery/vein maps, vessels confined to
    the centred field-of-view disc (the square FOV crop real masks are made into).

    Each map is enlarged with calibre from its mass (:func:`enlarge_soft_av`); a pixel in both
    channels is a crossing.

    Returns
    -------
    labels : (N, size, size) uint8, 0 background, 1 artery, 2 vein, 3 crossing
    """
    fov = fov_disc(size)
    labels = np.zeros((len(maps), size, size), np.uint8)
    for index, channels in enumerate(maps):
        labels[index] = labels_from_channels(enlarge_soft_av(channels, size) & fov[None])
    return labels
