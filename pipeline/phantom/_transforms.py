"""Known frame motion: similarity transforms plus a smooth analytic deformation.

Every transform here maps **pixel coordinates (x, y)** -- x = column, y = row, origin at the
centre of the top-left pixel -- never numpy (row, col) indices.  Matrices are 3x3 homogeneous and
act on column vectors ``[x, y, 1]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from angioflow.pipeline.registration import similarity_matrix

__all__ = ["Deformation", "FrameTransform", "sample_motion", "warp_to_reference"]


@dataclass(frozen=True, eq=False)
class Deformation:
    """Smooth displacement field, a sum of Gaussian bumps, in frame pixels.

    ``d(p) = sum_j amplitudes[j] * exp(-|p - centers[j]|^2 / (2 sigma^2))``

    Attributes
    ----------
    centers : (K, 2) float64 ndarray
        Bump centres, pixel coordinates (x, y) of the frame.
    amplitudes : (K, 2) float64 ndarray
        Displacement (dx, dy) in pixels at each centre.
    sigma : float
        Bump width in pixels.
    """

    centers: np.ndarray
    amplitudes: np.ndarray
    sigma: float

    def displacement(self, points_xy: np.ndarray) -> np.ndarray:
        """Displacement (dx, dy) in pixels at ``points_xy`` ((N, 2) float, x then y)."""
        points = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
        out = np.zeros_like(points)
        for center, amplitude in zip(self.centers, self.amplitudes, strict=True):
            weight = np.exp(-np.sum((points - center) ** 2, axis=1) / (2.0 * self.sigma**2))
            out += weight[:, None] * amplitude
        return out

    def displacement_grid(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Displacement on every pixel of a (H, W) grid, as two (H, W) float64 arrays (dx, dy).

        The Gaussian bump is separable, so this costs O(K (H + W) + K H W) multiply-adds
        instead of K H W exponentials.
        """
        height, width = shape
        xs = np.arange(width, dtype=np.float64)
        ys = np.arange(height, dtype=np.float64)
        dx = np.zeros(shape, dtype=np.float64)
        dy = np.zeros(shape, dtype=np.float64)
        for (cx, cy), (ax, ay) in zip(self.centers, self.amplitudes, strict=True):
            gx = np.exp(-((xs - cx) ** 2) / (2.0 * self.sigma**2))
            gy = np.exp(-((ys - cy) ** 2) / (2.0 * self.sigma**2))
            bump = np.outer(gy, gx)
            dx += ax * bump
            dy += ay * bump
        return dx, dy

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (plain lists and floats)."""
        return {
            "model": "gaussian_bumps",
            "centers_xy": self.centers.tolist(),
            "amplitudes_xy": self.amplitudes.tolist(),
            "sigma_px": float(self.sigma),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Deformation:
        """Inverse of :meth:`to_dict`."""
        return cls(
            centers=np.asarray(data["centers_xy"], dtype=np.float64).reshape(-1, 2),
            amplitudes=np.asarray(data["amplitudes_xy"], dtype=np.float64).reshape(-1, 2),
            sigma=float(data["sigma_px"]),
        )


@dataclass(frozen=True, eq=False)
class FrameTransform:
    """The true mapping from one frame's pixels to the reference frame's pixels.

    ``frame_to_reference(p) = matrix @ [p + d(p), 1]`` where ``d`` is the optional smooth
    :class:`Deformation` (evaluated in frame pixels) and ``p`` is a pixel coordinate (x, y).

    A frame is rendered from the reference image by sampling, for each frame pixel ``p``, the
    reference at ``frame_to_reference(p)``.  Registration that resamples the frame onto the
    reference grid needs the opposite direction, :meth:`reference_to_frame` -- the direction of a
    SimpleITK transform with the reference as fixed image.

    Attributes
    ----------
    matrix : (3, 3) float64 ndarray
        Similarity part, acting on homogeneous (x, y, 1) column vectors.
    deformation : Deformation or None
        Non-rigid part applied before ``matrix``; None means purely rigid.
    """

    matrix: np.ndarray
    deformation: Deformation | None = None

    @classmethod
    def identity(cls) -> FrameTransform:
        """The reference frame's own transform."""
        return cls(matrix=np.eye(3))

    def frame_to_reference(self, points_xy: np.ndarray) -> np.ndarray:
        """Map (N, 2) frame pixel coordinates (x, y) to reference pixel coordinates (x, y)."""
        points = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
        if self.deformation is not None:
            points = points + self.deformation.displacement(points)
        return points @ self.matrix[:2, :2].T + self.matrix[:2, 2]

    def reference_to_frame(self, points_xy: np.ndarray, *, iterations: int = 30) -> np.ndarray:
        """Map (N, 2) reference pixel coordinates (x, y) to frame pixel coordinates (x, y).

        The affine part is inverted exactly; the deformation by fixed-point iteration
        ``p <- u - d(p)``, which converges because the field's gradient is far below one (errors
        below 1e-6 px for the phantom's fields).
        """
        points = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
        inverse = np.linalg.inv(self.matrix)
        undeformed = points @ inverse[:2, :2].T + inverse[:2, 2]
        if self.deformation is None:
            return undeformed
        estimate = undeformed.copy()
        for _ in range(iterations):
            estimate = undeformed - self.deformation.displacement(estimate)
        return estimate

    def sampling_maps(
        self, shape: tuple[int, int], *, offset_xy: tuple[float, float] = (0.0, 0.0)
    ) -> tuple[np.ndarray, np.ndarray]:
        """``cv2.remap`` maps that render a (H, W) frame from a reference image.

        Returns two (H, W) float32 arrays: the reference x and y for every frame pixel, plus
        ``offset_xy`` (the position of reference pixel (0, 0) inside a padded reference canvas).
        """
        height, width = shape
        xs, ys = np.meshgrid(
            np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64)
        )
        if self.deformation is not None:
            dx, dy = self.deformation.displacement_grid(shape)
            xs = xs + dx
            ys = ys + dy
        m = self.matrix
        map_x = m[0, 0] * xs + m[0, 1] * ys + (m[0, 2] + offset_xy[0])
        map_y = m[1, 0] * xs + m[1, 1] * ys + (m[1, 2] + offset_xy[1])
        return map_x.astype(np.float32), map_y.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description; ``deformation`` is null for rigid frames."""
        return {
            "matrix": self.matrix.tolist(),
            "deformation": None if self.deformation is None else self.deformation.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FrameTransform:
        """Inverse of :meth:`to_dict`."""
        deformation = data.get("deformation")
        return cls(
            matrix=np.asarray(data["matrix"], dtype=np.float64).reshape(3, 3),
            deformation=None if deformation is None else Deformation.from_dict(deformation),
        )


def sample_motion(
    rng: np.random.Generator,
    shape: tuple[int, int],
    *,
    max_translation: float,
    max_rotation_deg: float,
    scale_range: tuple[float, float],
    deformation_px: float,
) -> FrameTransform:
    """Draw one frame's eye motion: a similarity about the image centre plus soft warping.

    Parameters
    ----------
    rng : numpy Generator
    shape : (H, W) of the frame in pixels.
    max_translation : float
        Largest shift along each axis, as a fraction of the frame width.
    max_rotation_deg : float
        Largest rotation in degrees.
    scale_range : (low, high)
        Zoom factor range.
    deformation_px : float
        Largest bump amplitude of the non-rigid field in pixels; 0 gives a rigid transform.
    """
    height, width = shape
    shift = rng.uniform(-max_translation, max_translation, size=2) * width
    matrix = similarity_matrix(
        scale=float(rng.uniform(*scale_range)),
        rotation_deg=float(rng.uniform(-max_rotation_deg, max_rotation_deg)),
        translation_xy=(float(shift[0]), float(shift[1])),
        center_xy=((width - 1) / 2.0, (height - 1) / 2.0),
    )
    deformation = None
    if deformation_px > 0:
        n_bumps = 6
        centers = rng.uniform((0.0, 0.0), (width - 1.0, height - 1.0), size=(n_bumps, 2))
        directions = rng.uniform(0.0, 2.0 * math.pi, size=n_bumps)
        lengths = rng.uniform(0.4, 1.0, size=n_bumps) * deformation_px
        amplitudes = np.stack([np.cos(directions), np.sin(directions)], axis=1) * lengths[:, None]
        deformation = Deformation(centers, amplitudes, sigma=0.18 * max(height, width))
    return FrameTransform(matrix=matrix, deformation=deformation)


def warp_to_reference(
    frame: np.ndarray,
    transform: FrameTransform,
    output_shape: tuple[int, int],
    *,
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """Resample a frame onto the reference grid with its true transform.

    Parameters
    ----------
    frame : (h, w) or (h, w, C) ndarray
        A frame rendered with ``transform`` (any dtype cv2.remap accepts).
    transform : FrameTransform
        The frame's true frame -> reference mapping.
    output_shape : (H, W)
        Shape of the reference grid.
    interpolation : cv2 flag, keyword-only
        ``cv2.INTER_LINEAR`` (default) or ``cv2.INTER_NEAREST`` for label images.

    Returns
    -------
    (H, W) or (H, W, C) ndarray, same dtype as ``frame``; zero outside the frame.
    """
    if frame.ndim not in (2, 3) or frame.size == 0:
        raise ValueError(
            f"frame must be a non-empty (h, w) or (h, w, C) array, got shape {frame.shape}"
        )
    height, width = output_shape
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    frame_xy = transform.reference_to_frame(np.stack([xs.ravel(), ys.ravel()], axis=1))
    map_x = frame_xy[:, 0].reshape(height, width).astype(np.float32)
    map_y = frame_xy[:, 1].reshape(height, width).astype(np.float32)
    source = frame.astype(np.uint8) if frame.dtype == bool else frame
    warped = cv2.remap(source, map_x, map_y, interpolation, borderMode=cv2.BORDER_CONSTANT)
    return warped.astype(bool) if frame.dtype == bool else warped
