"""Rasterise a vessel tree into per-class masks, calibre, cross-section and transit layers."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ._tree import VesselTree

_SHIFT = 4  # cv2 fixed-point bits: 1/16 px vertex precision
_ONE = 1 << _SHIFT


@dataclass(frozen=True, eq=False)
class VesselLayers:
    """Per-class rasters of a vessel tree; axis 0 is the class (0 artery, 1 vein).

    Attributes
    ----------
    mask : (2, H, W) bool ndarray
        Lumen pixels.
    calibre : (2, H, W) float32 ndarray
        Vessel diameter in pixels at each lumen pixel, 0 elsewhere.
    profile : (2, H, W) float32 ndarray
        Chord length through the (cylindrical) lumen relative to the diameter: 1 on the axis,
        falling to 0 at the wall.
    offset : (2, H, W) float32 ndarray
        Distance from the vessel axis relative to the radius, 0 on the axis and 1 at the wall.
    transit : (2, H, W) float32 ndarray
        Path length from the optic disc along the tree, retina units.
    """

    mask: np.ndarray
    calibre: np.ndarray
    profile: np.ndarray
    offset: np.ndarray
    transit: np.ndarray


def render_layers(
    tree: VesselTree, retina_to_pixels: np.ndarray, shape: tuple[int, int]
) -> VesselLayers:
    """Rasterise both classes of ``tree`` on a (H, W) pixel grid.

    Each centre-line step is drawn as a convex quadrilateral whose half-widths are the radii at
    its two ends, with a disc at every joint; widths are shrunk by the half pixel that cv2 adds
    on polygon borders, so a vessel of diameter ``d`` covers ``d`` pixels across (at least one).

    Parameters
    ----------
    tree : VesselTree
        Geometry in retina units.
    retina_to_pixels : (3, 3) float64 ndarray
        Similarity mapping retina (x, y) to pixel (x, y) coordinates.
    shape : (H, W)
        Output grid.

    Returns
    -------
    VesselLayers
    """
    scale = float(np.sqrt(abs(np.linalg.det(retina_to_pixels[:2, :2]))))
    masks, calibres, profiles, offsets, transits = [], [], [], [], []
    for label in (0, 1):
        segments = [s for s in tree.segments if s.label == label]
        starts = np.concatenate([_apply(retina_to_pixels, s.points[:-1]) for s in segments])
        ends = np.concatenate([_apply(retina_to_pixels, s.points[1:]) for s in segments])
        radius_start = np.concatenate([s.radii[:-1] for s in segments]) * scale
        radius_end = np.concatenate([s.radii[1:] for s in segments]) * scale
        arc = np.concatenate([s.arc_length[:-1] for s in segments])
        index = _draw_pieces(starts, ends, radius_start, radius_end, shape)
        inside = index >= 0
        safe = np.where(inside, index, 0)
        diameter = np.maximum(radius_start + radius_end, 1.0).astype(np.float32)
        calibre = np.where(inside, diameter[safe], 0.0).astype(np.float32)
        transit = np.where(inside, arc.astype(np.float32)[safe], 0.0).astype(np.float32)
        # distance to the nearest background pixel centre; on the axis it is radius + 1/2
        to_wall = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        radius = np.maximum(calibre / 2.0, 0.5)
        offset = np.clip((radius + 0.5 - to_wall) / radius, 0.0, 1.0)
        offset = np.where(inside, offset, 1.0).astype(np.float32)
        profile = np.where(inside, np.sqrt(1.0 - offset**2), 0.0).astype(np.float32)
        masks.append(inside)
        calibres.append(calibre)
        profiles.append(profile)
        offsets.append(offset)
        transits.append(transit)
    return VesselLayers(
        mask=np.stack(masks),
        calibre=np.stack(calibres),
        profile=np.stack(profiles),
        offset=np.stack(offsets),
        transit=np.stack(transits),
    )


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def _draw_pieces(
    starts: np.ndarray,
    ends: np.ndarray,
    radius_start: np.ndarray,
    radius_end: np.ndarray,
    shape: tuple[int, int],
) -> np.ndarray:
    """Label image (int32, -1 = background) of tapered pieces, thin ones first."""
    index = np.full(shape, -1, dtype=np.int32)
    height, width = shape
    direction = ends - starts
    length = np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-9)
    normal = np.stack([-direction[:, 1], direction[:, 0]], axis=1) / length
    draw_start = np.maximum(radius_start - 0.5, 0.0)[:, None]
    draw_end = np.maximum(radius_end - 0.5, 0.0)[:, None]
    quads = np.stack(
        [
            starts + draw_start * normal,
            ends + draw_end * normal,
            ends - draw_end * normal,
            starts - draw_start * normal,
        ],
        axis=1,
    )
    quads_fixed = np.round(quads * _ONE).astype(np.int32)
    joints_fixed = np.round(ends * _ONE).astype(np.int32)
    joint_radius = np.round(draw_end[:, 0] * _ONE).astype(np.int32)
    reach = np.maximum(radius_start, radius_end) + 2.0
    visible = (
        (np.minimum(starts[:, 0], ends[:, 0]) - reach < width)
        & (np.maximum(starts[:, 0], ends[:, 0]) + reach >= 0)
        & (np.minimum(starts[:, 1], ends[:, 1]) - reach < height)
        & (np.maximum(starts[:, 1], ends[:, 1]) + reach >= 0)
    )
    order = np.argsort(radius_start + radius_end, kind="stable")
    for i in order[visible[order]]:
        piece = int(i)
        cv2.fillConvexPoly(index, quads_fixed[i], piece, cv2.LINE_8, _SHIFT)
        cv2.circle(
            index, tuple(joints_fixed[i]), int(joint_radius[i]), piece, -1, cv2.LINE_8, _SHIFT
        )
    return index
