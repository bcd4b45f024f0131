"""Graphs over vessel pixels: local-window edges, grid coarsening, and vessel segments.

A vessel mask becomes a graph whose nodes are its pixels and whose edges join pixels that lie
within a small square window of each other (no wrap-around at the image border). Coarser
levels group nodes by a square grid of cells, which is how the artery/vein graph network pools
and unpools (see :mod:`models.hvgn`). Everything is vectorised over pixels: a 3504x2336 HRF
mask with ~500k vessel pixels becomes a graph in seconds and a few hundred MB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import skeletonize

__all__ = [
    "GraphLevel",
    "av_labels",
    "PixelGraph",
    "coarsen",
    "pixel_graph",
    "segment_labels",
    "vote_along_segments",
]


@dataclass(frozen=True)
class PixelGraph:
    """Vessel pixels and the edges between them.

    Attributes
    ----------
    coords : (N, 2) int32 ndarray
        (row, column) of every node, in raster order.
    edge_index : (2, E) int64 ndarray
        Directed edges (source, target), both directions present, no self-loops.
    shape : (H, W)
        The mask's shape.
    """

    coords: np.ndarray
    edge_index: np.ndarray
    shape: tuple[int, int]

    @property
    def num_nodes(self) -> int:
        return int(self.coords.shape[0])


@dataclass(frozen=True)
class GraphLevel:
    """One coarser level of a graph hierarchy.

    Attributes
    ----------
    cluster : (N_fine,) int64 ndarray
        The coarse node each fine node belongs to.
    edge_index : (2, E_coarse) int64 ndarray
        Edges between coarse nodes whose members touch, both directions, no self-loops.
    num_nodes : int
        Number of coarse nodes.
    """

    cluster: np.ndarray
    edge_index: np.ndarray
    num_nodes: int


def _window_offsets(window: int) -> list[tuple[int, int]]:
    """Half of the offsets of a ``window`` x ``window`` square: one per undirected pair."""
    reach = window // 2
    return [
        (dy, dx)
        for dy in range(0, reach + 1)
        for dx in range(-reach, reach + 1)
        if dy > 0 or dx > 0
    ]


def pixel_graph(mask: np.ndarray, *, window: int = 5) -> PixelGraph:
    """Graph of a vessel mask: one node per pixel, edges within a square window.

    Parameters
    ----------
    mask : (H, W) bool ndarray
        Vessel pixels.
    window : int
        Odd side of the neighbourhood in pixels (5 joins pixels up to 2 px apart per axis).

    Returns
    -------
    PixelGraph

    Example
    -------
    >>> g = pixel_graph(np.eye(4, dtype=bool), window=3)
    >>> g.num_nodes, g.edge_index.shape[1]
    (4, 6)
    """
    if mask.ndim != 2:
        raise ValueError(f"vessel mask must be 2-D, got shape {mask.shape}")
    if window < 3 or window % 2 == 0:
        raise ValueError(f"window must be an odd number >= 3, got {window}")
    mask = mask.astype(bool, copy=False)
    height, width = mask.shape
    index = np.full(mask.shape, -1, dtype=np.int64)
    rows, cols = np.nonzero(mask)
    index[rows, cols] = np.arange(rows.size)
    sources, targets = [], []
    for dy, dx in _window_offsets(window):
        # pair pixel (y, x) with (y + dy, x + dx) by slicing, never rolling: no wrap-around
        src = index[: height - dy, max(0, -dx) : width - max(0, dx)]
        dst = index[dy:, max(0, dx) : width - max(0, -dx)]
        both = (src >= 0) & (dst >= 0)
        sources.append(src[both])
        targets.append(dst[both])
    source = np.concatenate(sources) if sources else np.empty(0, np.int64)
    target = np.concatenate(targets) if targets else np.empty(0, np.int64)
    edge_index = np.stack([np.concatenate([source, target]), np.concatenate([target, source])])
    return PixelGraph(
        coords=np.stack([rows, cols], axis=1).astype(np.int32),
        edge_index=edge_index,
        shape=(height, width),
    )


def coarsen(coords: np.ndarray, edge_index: np.ndarray, cell: int) -> GraphLevel:
    """Group nodes by a square grid of ``cell`` x ``cell`` pixels.

    Parameters
    ----------
    coords : (N, 2) int ndarray
        (row, column) of the fine nodes.
    edge_index : (2, E) int ndarray
        Fine edges.
    cell : int
        Grid cell side, in the pixels of ``coords``.

    Returns
    -------
    GraphLevel
        ``cluster`` maps fine nodes to coarse nodes (ordered by cell); coarse nodes sit at the
        cells' positions, so a second call with ``coords // cell`` continues the hierarchy.
    """
    if cell < 1:
        raise ValueError(f"cell must be >= 1, got {cell}")
    cells = coords.astype(np.int64) // cell
    key = cells[:, 0] * (int(cells[:, 1].max(initial=0)) + 1) + cells[:, 1]
    _, cluster = np.unique(key, return_inverse=True)
    num_nodes = int(cluster.max(initial=-1)) + 1
    coarse = cluster[edge_index]
    coarse = coarse[:, coarse[0] != coarse[1]]
    if coarse.size:
        pair = np.unique(coarse[0] * num_nodes + coarse[1])
        coarse = np.stack([pair // num_nodes, pair % num_nodes])
    return GraphLevel(
        cluster=cluster.astype(np.int64), edge_index=coarse.astype(np.int64), num_nodes=num_nodes
    )


def segment_labels(mask: np.ndarray) -> np.ndarray:
    """Split a vessel mask into segments between junctions and end points.

    The mask is skeletonised; skeleton pixels with three or more skeleton neighbours are
    junctions and are removed, which cuts the skeleton into branches. Every mask pixel then
    takes the branch of its nearest skeleton pixel (junction neighbourhoods included).

    Parameters
    ----------
    mask : (H, W) bool ndarray

    Returns
    -------
    (H, W) int32 ndarray
        0 off the mask, 1..K the segment of each vessel pixel.
    """
    mask = mask.astype(bool, copy=False)
    skeleton = skeletonize(mask)
    neighbours = ndi.convolve(skeleton.astype(np.uint8), np.ones((3, 3), np.uint8), mode="constant")
    branches = skeleton & (neighbours - 1 < 3)
    labels, count = ndi.label(branches, structure=np.ones((3, 3), bool))
    if count == 0:
        return np.zeros(mask.shape, np.int32)
    _, (nearest_row, nearest_col) = ndi.distance_transform_edt(labels == 0, return_indices=True)
    segments = labels[nearest_row, nearest_col]
    return np.where(mask, segments, 0).astype(np.int32)


def vote_along_segments(
    artery_probability: np.ndarray, segments: np.ndarray, *, weight_by_confidence: bool = True
) -> np.ndarray:
    """Give every pixel of a vessel segment the segment's mean artery probability.

    Parameters
    ----------
    artery_probability : (H, W) float ndarray
        Per-pixel probability of artery (vein = 1 - p) on vessel pixels.
    segments : (H, W) int ndarray
        :func:`segment_labels` output.
    weight_by_confidence : bool
        Weight each pixel's vote by its confidence ``|2p - 1|``, so that pixels the network
        is sure of outvote ambiguous ones (e.g. near crossings).

    Returns
    -------
    (H, W) float32 ndarray
        Segment-consistent artery probability; pixels off segments keep their own value.
    """
    labels = segments.ravel()
    p = artery_probability.ravel().astype(np.float64)
    weight = np.abs(2 * p - 1) + 1e-3 if weight_by_confidence else np.ones_like(p)
    count = int(labels.max(initial=0)) + 1
    votes = np.bincount(labels, weights=weight * p, minlength=count)
    totals = np.bincount(labels, weights=weight, minlength=count)
    mean = votes / np.maximum(totals, 1e-12)
    voted = np.where(labels > 0, mean[labels], p)
    return voted.reshape(artery_probability.shape).astype(np.float32)


def av_labels(artery_probability: np.ndarray, vessel: np.ndarray) -> np.ndarray:
    """Label mask from an artery probability: 1 artery (p >= 0.5), 2 vein, 0 off the vessels.

    Returns (H, W) uint8 with the case store's A/V labels.
    """
    labels = np.where(artery_probability >= 0.5, 1, 2).astype(np.uint8)
    return np.where(vessel, labels, 0).astype(np.uint8)
