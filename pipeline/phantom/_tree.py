"""Anatomical artery and vein trees grown from the optic disc.

Geometry lives in *retina units*: the fundus field of view is the unit disc, origin at its centre,
x to the right and y downwards (image orientation).  Rendering maps these to pixels, so one seed
gives the same tree at every image size.

The model follows the classic description of the retinal vasculature: per class, two temporal
arcades and two nasal vessels leave the disc (the arcades bend around the macula like the parabolic
arcade model of Foracchia et al., IEEE TMI 2004, doi:10.1109/TMI.2004.833194, here
``v = b u^0.4``), branch asymmetrically by Murray's law (``r0^3 = r1^3 + r2^3``), taper,
avoid the foveal avascular zone, and -- as in a real retina --
never cross a vessel of their own class.  Arteries and veins cross each other freely.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

ARTERY = 0
VEIN = 1
LABEL_NAMES = ("artery", "vein")

_STEP = 0.008  # growth step, retina units (~2 px at the default size)
_CELL = 1.0 / 400.0  # occupancy grid cell, retina units
_EXTENT = 1.3  # trees are grown out to this radius so that moved frames stay filled
_MIN_RADIUS = 0.0026  # thinnest vessel, ~1.4 px diameter at DRIVE resolution
_ARCADE_POWER = 0.4


@dataclass(frozen=True, eq=False)
class Anatomy:
    """Where the landmarks of one eye are, in retina units (x, y).

    Attributes
    ----------
    eye : "OD" or "OS"
        Right eye (disc on the image's right) or left eye (disc on the left).
    disc_xy : (2,) float64 ndarray
        Optic disc centre.
    disc_radius : float
        Optic disc radius.
    fovea_xy : (2,) float64 ndarray
        Fovea centre.
    faz_radius : float
        Radius of the foveal avascular zone.
    """

    eye: Literal["OD", "OS"]
    disc_xy: np.ndarray
    disc_radius: float
    fovea_xy: np.ndarray
    faz_radius: float


@dataclass(frozen=True, eq=False)
class VesselSegment:
    """One vessel from its origin to its end, in retina units.

    Attributes
    ----------
    points : (N, 2) float64 ndarray
        Centre line, (x, y).
    radii : (N,) float64 ndarray
        Lumen radius at each point.
    label : int
        0 artery, 1 vein.
    parent : int
        Index of the vessel it branches from, -1 for vessels leaving the disc.
    arc_start : float
        Path length from the disc to ``points[0]`` along the tree.
    """

    points: np.ndarray
    radii: np.ndarray
    label: int
    parent: int
    arc_start: float

    @property
    def arc_length(self) -> np.ndarray:
        """(N,) path length from the disc to every point."""
        steps = np.linalg.norm(np.diff(self.points, axis=0), axis=1)
        return self.arc_start + np.concatenate([[0.0], np.cumsum(steps)])


@dataclass(frozen=True, eq=False)
class VesselTree:
    """Both vascular trees of one eye.

    Attributes
    ----------
    anatomy : Anatomy
    segments : tuple of VesselSegment
        Parents always come before their children.
    """

    anatomy: Anatomy
    segments: tuple[VesselSegment, ...]

    def bifurcations(self) -> tuple[np.ndarray, np.ndarray]:
        """Branch points outside the disc: (N, 2) (x, y) retina units and (N,) labels."""
        points, labels = [], []
        for segment in self.segments:
            if segment.parent < 0:
                continue
            start = segment.points[0]
            if np.linalg.norm(start - self.anatomy.disc_xy) > self.anatomy.disc_radius:
                points.append(start)
                labels.append(segment.label)
        return np.reshape(points, (-1, 2)), np.asarray(labels, dtype=np.int64)

    def crossings(self) -> np.ndarray:
        """Artery/vein centre-line crossings outside the disc, (M, 2) (x, y) retina units."""
        starts, ends = [], []
        for label in (ARTERY, VEIN):
            pieces = [(s.points[:-1], s.points[1:]) for s in self.segments if s.label == label]
            starts.append(np.concatenate([p[0] for p in pieces]))
            ends.append(np.concatenate([p[1] for p in pieces]))
        found = _segment_intersections(starts[ARTERY], ends[ARTERY], starts[VEIN], ends[VEIN])
        outside = np.linalg.norm(found - self.anatomy.disc_xy, axis=1) > self.anatomy.disc_radius
        return found[outside]


def sample_anatomy(rng: np.random.Generator, eye: Literal["OD", "OS"]) -> Anatomy:
    """Draw disc and fovea positions for a macula-centred 45-degree photograph.

    The disc sits ~2.5 disc diameters nasal to the fovea and slightly above it; for the right eye
    (OD) nasal is the image's right.
    """
    side = 1.0 if eye == "OD" else -1.0
    fovea = np.array([-side * rng.uniform(0.0, 0.12), rng.uniform(-0.05, 0.05)])
    distance = rng.uniform(0.66, 0.76)
    elevation = math.radians(rng.uniform(3.0, 10.0))
    disc = fovea + distance * np.array([side * math.cos(elevation), -math.sin(elevation)])
    return Anatomy(
        eye=eye,
        disc_xy=disc,
        disc_radius=float(rng.uniform(0.13, 0.155)),
        fovea_xy=fovea,
        faz_radius=float(rng.uniform(0.045, 0.06)),
    )


@dataclass(frozen=True)
class _Sprout:
    """A vessel waiting to grow; the defaults are those of a vessel leaving the disc."""

    start: tuple[float, float]
    direction: tuple[float, float]
    radius: float
    label: int
    kind: Literal["arcade", "trunk", "branch"]
    parent: int = -1  # segment index it branches from
    arc_start: float = 0.0
    side: float = 0.0  # +1 superior arcade, -1 inferior (arcades only)
    arcade_b: float = 0.0  # arcade curve height at unit distance (arcades only)
    parent_radius: float = 0.0


class _Grower:
    """Grows sprouts one at a time, widest first, on a per-class occupancy grid."""

    def __init__(self, rng: np.random.Generator, anatomy: Anatomy) -> None:
        self.rng = rng
        self.anatomy = anatomy
        self.n_cells = int(math.ceil(2 * _EXTENT / _CELL)) + 1
        # occupancy[label][row, col] = segment index + 1 of the vessel covering that cell, else 0
        self.occupancy = [np.zeros((self.n_cells, self.n_cells), np.int32) for _ in range(2)]
        coarse = 48
        self.coarse = coarse
        self.density = [np.zeros((coarse, coarse), np.float32) for _ in range(2)]
        self.segments: list[VesselSegment] = []
        self.queue: list[tuple[float, int, _Sprout]] = []
        self.counter = 0
        temporal = anatomy.fovea_xy - anatomy.disc_xy
        self.disc_fovea = float(np.linalg.norm(temporal))
        self.temporal = temporal / self.disc_fovea
        superior = np.array([-self.temporal[1], self.temporal[0]])
        self.superior = superior if superior[1] < 0 else -superior

    # -- grid helpers -------------------------------------------------------------------------
    def _cell(self, point: np.ndarray) -> tuple[float, float]:
        return ((point[0] + _EXTENT) / _CELL, (point[1] + _EXTENT) / _CELL)

    def _blocked(self, label: int, point: np.ndarray, radius: float, allowed: int) -> bool:
        """True when a disc of ``radius`` at ``point`` touches another vessel of ``label``."""
        cx, cy = self._cell(point)
        reach = radius / _CELL
        x0, x1 = int(math.floor(cx - reach)), int(math.ceil(cx + reach)) + 1
        y0, y1 = int(math.floor(cy - reach)), int(math.ceil(cy + reach)) + 1
        if x0 < 0 or y0 < 0 or x1 > self.n_cells or y1 > self.n_cells:
            return False
        window = self.occupancy[label][y0:y1, x0:x1]
        if not window.any():
            return False
        ys, xs = np.ogrid[y0:y1, x0:x1]
        inside = (xs - cx) ** 2 + (ys - cy) ** 2 <= reach**2
        hits = window[inside]
        return bool(np.any((hits != 0) & (hits != allowed)))

    def _stamp(self, label: int, points: np.ndarray, radii: np.ndarray, index: int) -> None:
        grid = self.occupancy[label]
        scale = 16.0 / _CELL
        for point, radius in zip(points, radii, strict=True):
            center = (
                int(round((point[0] + _EXTENT) * scale)),
                int(round((point[1] + _EXTENT) * scale)),
            )
            cv2.circle(
                grid, center, max(int(round(radius * scale)), 8), index + 1, -1, cv2.LINE_8, 4
            )

    def _refresh_density(self, label: int) -> None:
        occupied = (self.occupancy[label] > 0).astype(np.float32)
        small = cv2.resize(occupied, (self.coarse, self.coarse), interpolation=cv2.INTER_AREA)
        self.density[label] = cv2.GaussianBlur(small, (0, 0), 2.0)

    def _free_space(self, label: int, point: np.ndarray) -> np.ndarray:
        """Unit-free vector pointing down the density gradient of the class's vessels."""
        density = self.density[label]
        scale = (self.coarse - 1) / (2 * _EXTENT)
        col = int(np.clip(round((point[0] + _EXTENT) * scale), 1, self.coarse - 2))
        row = int(np.clip(round((point[1] + _EXTENT) * scale), 1, self.coarse - 2))
        gx = density[row, col + 1] - density[row, col - 1]
        gy = density[row + 1, col] - density[row - 1, col]
        return -np.array([gx, gy], dtype=np.float64)

    # -- growth -------------------------------------------------------------------------------
    def push(self, sprout: _Sprout) -> None:
        heapq.heappush(self.queue, (-sprout.radius, self.counter, sprout))
        self.counter += 1

    def run(self) -> tuple[VesselSegment, ...]:
        grown = 0
        while self.queue:
            _, _, sprout = heapq.heappop(self.queue)
            self._grow(sprout)
            grown += 1
            if grown % 12 == 0:
                for label in (ARTERY, VEIN):
                    self._refresh_density(label)
        return tuple(self.segments)

    def _desired(
        self, sprout: _Sprout, point: np.ndarray, direction: np.ndarray, radius: float
    ) -> np.ndarray:
        """Where the vessel would like to head next (not normalised)."""
        anatomy = self.anatomy
        rng = self.rng
        from_disc = point - anatomy.disc_xy
        distance_disc = float(np.linalg.norm(from_disc)) + 1e-9
        if sprout.kind == "arcade":
            # the arcade hugs v = b u^p (u: temporal distance from the disc, v: distance from
            # the disc-fovea line), which leaves the disc vertically and flattens temporally
            u = float(from_disc @ self.temporal)
            v = float(from_disc @ self.superior) * sprout.side
            side_axis = self.superior * sprout.side
            if u <= 0.02:
                desired = side_axis + 0.3 * self.temporal
            else:
                slope = _ARCADE_POWER * sprout.arcade_b * u ** (_ARCADE_POWER - 1.0)
                tangent = self.temporal + slope * side_axis
                tangent /= np.linalg.norm(tangent)
                error = v - sprout.arcade_b * u**_ARCADE_POWER
                desired = tangent - 4.0 * error * side_axis
            noise = 0.05
        else:
            desired = direction + 0.12 * from_disc / distance_disc
            desired = desired + 6.0 * self._free_space(sprout.label, point)
            noise = 0.14 if sprout.kind == "branch" else 0.07
            to_fovea = anatomy.fovea_xy - point
            distance_fovea = float(np.linalg.norm(to_fovea)) + 1e-9
            # wide vessels keep out of the macula; capillary-sized ones may run to the FAZ rim
            macula = 0.25 * min(1.0, radius / 0.006)
            if distance_fovea < macula:
                push = 1.5 * (1.0 - distance_fovea / macula) / distance_fovea
                desired = desired - push * to_fovea
        turn = rng.normal(0.0, noise)
        normal = np.array([-direction[1], direction[0]])
        return 0.75 * direction + 0.25 * desired / (np.linalg.norm(desired) + 1e-9) + turn * normal

    def _grow(self, sprout: _Sprout) -> None:
        rng = self.rng
        anatomy = self.anatomy
        index = len(self.segments)
        label = sprout.label
        point = np.asarray(sprout.start, dtype=np.float64)
        direction = np.asarray(sprout.direction, dtype=np.float64)
        direction /= np.linalg.norm(direction)
        radius = sprout.radius
        is_trunk = sprout.kind in ("arcade", "trunk")
        taper = 3.0 if is_trunk else 1.4
        points, radii = [point.copy()], [radius]
        pending_children: list[tuple[int, np.ndarray, float]] = []
        arc = 0.0
        next_branch = self._branch_spacing(radius, is_trunk) * rng.uniform(0.3, 1.0)
        if is_trunk:  # no side branches inside the disc
            next_branch += 1.1 * anatomy.disc_radius
        start_zone = sprout.parent_radius + radius + 4 * _STEP
        gap = 0.006 + 0.25 * radius
        if sprout.parent >= 0 and self._blocked(label, point, radius + gap, sprout.parent + 1):
            return  # the branch point is too close to another vessel of this class
        branch_side = rng.choice((-1.0, 1.0))
        for _ in range(4000):
            desired = self._desired(sprout, point, direction, radius)
            desired /= np.linalg.norm(desired)
            gap = 0.006 + 0.25 * radius
            allowed = sprout.parent + 1 if arc < start_zone else -1
            for angle in (0.0, 0.35, -0.35, 0.7, -0.7):
                candidate = _rotate(desired, angle * rng.choice((-1.0, 1.0)))
                proposal = point + _STEP * candidate
                in_disc = np.linalg.norm(proposal - anatomy.disc_xy) < anatomy.disc_radius * 0.9
                if in_disc and sprout.parent >= 0 and arc > start_zone:
                    continue
                if in_disc or not self._blocked(label, proposal, radius + gap, allowed):
                    break
            else:
                break
            point, direction = proposal, candidate
            arc += _STEP
            radius *= math.exp(-_STEP / taper)
            if (
                radius < _MIN_RADIUS
                or np.linalg.norm(point) > _EXTENT
                or np.linalg.norm(point - anatomy.fovea_xy) < anatomy.faz_radius
            ):
                break
            points.append(point.copy())
            radii.append(radius)
            if arc >= next_branch and radius > 1.6 * _MIN_RADIUS:
                low, high = (0.3, 0.55) if is_trunk else (0.5, 0.92)
                child_radius = radius * rng.uniform(low, high)
                if child_radius >= _MIN_RADIUS:
                    branch_side = -branch_side if rng.random() < 0.8 else branch_side
                    share = child_radius / radius
                    angle = math.radians(rng.uniform(45.0, 80.0) - 25.0 * share)
                    child_direction = _rotate(direction, branch_side * angle)
                    pending_children.append((len(points) - 1, child_direction, child_radius))
                    parent_before = radius
                    radius = (radius**3 - child_radius**3) ** (1.0 / 3.0)
                    radii[-1] = parent_before
                    direction = _rotate(direction, -branch_side * angle * share**2 * 0.6)
                next_branch = arc + self._branch_spacing(radius, is_trunk)
        if len(points) < 3:
            return
        segment = VesselSegment(
            points=np.asarray(points),
            radii=np.asarray(radii),
            label=label,
            parent=sprout.parent,
            arc_start=sprout.arc_start,
        )
        self.segments.append(segment)
        self._stamp(label, segment.points, segment.radii, index)
        arcs = segment.arc_length
        for point_index, child_direction, child_radius in pending_children:
            if point_index >= len(points):
                continue
            self.push(
                _Sprout(
                    start=tuple(segment.points[point_index]),
                    direction=tuple(child_direction),
                    radius=child_radius,
                    label=label,
                    kind="branch",
                    parent=index,
                    arc_start=float(arcs[point_index]),
                    parent_radius=float(segment.radii[point_index]),
                )
            )

    def _branch_spacing(self, radius: float, is_trunk: bool) -> float:
        mean = 0.05 if is_trunk else 0.012 + 4.0 * radius
        return 0.015 + self.rng.exponential(mean)


def grow_tree(rng: np.random.Generator, anatomy: Anatomy) -> VesselTree:
    """Grow the artery and vein trees of one eye.

    Parameters
    ----------
    rng : numpy Generator
        The only source of randomness.
    anatomy : Anatomy
        Disc and fovea placement, retina units.

    Returns
    -------
    VesselTree
        Segments in growth order (parents first).
    """
    grower = _Grower(rng, anatomy)
    nasal = -grower.temporal
    for label in (ARTERY, VEIN):
        base_radius = (0.0135 if label == ARTERY else 0.0170) * rng.uniform(0.92, 1.08)
        origin = anatomy.disc_xy + rng.normal(0.0, 0.12 * anatomy.disc_radius, size=2)
        for side in (1.0, -1.0):
            side_axis = grower.superior * side
            # temporal arcade: leaves the disc vertically, bends around the macula
            grower.push(
                _Sprout(
                    start=tuple(origin),
                    direction=tuple(side_axis + 0.25 * grower.temporal),
                    radius=base_radius * rng.uniform(0.9, 1.0),
                    label=label,
                    kind="arcade",
                    side=side,
                    arcade_b=rng.uniform(0.5, 0.62) / grower.disc_fovea**_ARCADE_POWER,
                )
            )
            # nasal vessel: runs out radially towards the nasal periphery
            angle = math.radians(rng.uniform(25.0, 60.0))
            grower.push(
                _Sprout(
                    start=tuple(origin),
                    direction=tuple(math.cos(angle) * nasal + math.sin(angle) * side_axis),
                    radius=base_radius * rng.uniform(0.6, 0.75),
                    label=label,
                    kind="trunk",
                    side=side,
                )
            )
        # small papillomacular vessel heading for the fovea
        angle = math.radians(rng.uniform(-12.0, 12.0))
        grower.push(
            _Sprout(
                start=tuple(origin),
                direction=tuple(_rotate(grower.temporal, angle)),
                radius=base_radius * rng.uniform(0.3, 0.4),
                label=label,
                kind="trunk",
            )
        )
    return VesselTree(anatomy=anatomy, segments=grower.run())


def _rotate(vector: np.ndarray, angle: float) -> np.ndarray:
    cos, sin = math.cos(angle), math.sin(angle)
    return np.array([cos * vector[0] - sin * vector[1], sin * vector[0] + cos * vector[1]])


def _segment_intersections(
    a0: np.ndarray, a1: np.ndarray, b0: np.ndarray, b1: np.ndarray
) -> np.ndarray:
    """Intersection points of every piece a0->a1 with every piece b0->b1, (M, 2)."""
    from scipy.spatial import cKDTree

    reach = float(max(np.linalg.norm(a1 - a0, axis=1).max(), np.linalg.norm(b1 - b0, axis=1).max()))
    pairs = cKDTree((b0 + b1) / 2).query_ball_point((a0 + a1) / 2, r=reach)
    ia = np.repeat(np.arange(len(a0)), [len(p) for p in pairs])
    ib = np.fromiter((j for p in pairs for j in p), dtype=np.int64, count=len(ia))
    if len(ia) == 0:
        return np.zeros((0, 2))
    p, r = a0[ia], a1[ia] - a0[ia]
    q, s = b0[ib], b1[ib] - b0[ib]
    denominator = r[:, 0] * s[:, 1] - r[:, 1] * s[:, 0]
    valid = np.abs(denominator) > 1e-12
    qp = q - p
    safe = np.where(valid, denominator, 1.0)
    t = (qp[:, 0] * s[:, 1] - qp[:, 1] * s[:, 0]) / safe
    u = (qp[:, 0] * r[:, 1] - qp[:, 1] * r[:, 0]) / safe
    hit = valid & (t >= 0) & (t < 1) & (u >= 0) & (u < 1)
    return p[hit] + t[hit, None] * r[hit]
