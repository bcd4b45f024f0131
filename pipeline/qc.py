"""Quality-control pictures of registration and alignment: checkerboards, overlays, A/V colours.

The A/V colours (:data:`AV_RGB`, :func:`av_to_rgb`) are defined with the label encoding in
:mod:`pipeline.av_encoding` and offered here beside the other picture helpers.
"""

from __future__ import annotations

import numpy as np
from angioflow.pipeline.av_encoding import AV_RGB, av_to_rgb

__all__ = ["AV_RGB", "VESSEL_RGB", "av_to_rgb", "checkerboard", "label_overlay", "overlay"]


def _unit(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    high = float(image.max()) if image.size else 0.0
    return image / high if high > 1 else image


def checkerboard(a: np.ndarray, b: np.ndarray, *, tiles: int = 8) -> np.ndarray:
    """Alternate square tiles of two aligned greyscale images; misregistration shows as breaks
    in vessels at tile borders.

    Parameters
    ----------
    a, b : (H, W) ndarrays, values in [0, 1] (or any range; each is scaled by its maximum)
    tiles : int
        Tiles along the longer side.

    Returns
    -------
    (H, W) uint8 ndarray

    Example
    -------
    >>> checkerboard(np.zeros((4, 4)), np.ones((4, 4)), tiles=2)[:, 0].tolist()
    [0, 0, 255, 255]
    """
    if a.shape != b.shape:
        raise ValueError(f"checkerboard needs equal shapes, got {a.shape} and {b.shape}")
    side = max(1, int(np.ceil(max(a.shape) / tiles)))
    rows, cols = np.indices(a.shape)
    take_b = ((rows // side + cols // side) % 2).astype(bool)
    return np.round(np.where(take_b, _unit(b), _unit(a)) * 255).astype(np.uint8)


def overlay(fixed: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """RGB overlay of two aligned vessel maps: ``fixed`` green, ``moving`` magenta, both white.

    Returns
    -------
    (H, W, 3) uint8 ndarray
    """
    if fixed.shape != moving.shape:
        raise ValueError(f"overlay needs equal shapes, got {fixed.shape} and {moving.shape}")
    g, m = _unit(fixed), _unit(moving)
    return np.round(np.stack([m, g, m], axis=-1) * 255).astype(np.uint8)


# RGB of vessel masks 0/1: black background, green vessel.
VESSEL_RGB = np.array([[0, 0, 0], [0, 255, 0]], np.uint8)


def label_overlay(
    photo: np.ndarray, labels: np.ndarray, *, colours: np.ndarray = AV_RGB, alpha: float = 0.6
) -> np.ndarray:
    """A label mask painted over a photo: labelled pixels blend ``alpha`` of their colour.

    Parameters
    ----------
    photo : (H, W, 3) uint8 RGB or (H, W) uint8 greyscale
    labels : (H, W) int ndarray, 0 left as the photo, k painted ``colours[k]``
    colours : (K, 3) uint8 ndarray
        :data:`AV_RGB` for A/V labels, :data:`VESSEL_RGB` for 0/1 vessel masks.
    alpha : float in [0, 1]

    Returns
    -------
    (H, W, 3) uint8 ndarray

    Example
    -------
    >>> label_overlay(np.full((1, 2, 3), 100, np.uint8), np.array([[0, 1]]), alpha=0.5)[0].tolist()
    [[100, 100, 100], [178, 50, 50]]
    """
    if photo.shape[:2] != labels.shape:
        raise ValueError(f"photo {photo.shape[:2]} and labels {labels.shape} differ in shape")
    rgb = np.repeat(photo[..., None], 3, axis=-1) if photo.ndim == 2 else photo
    painted = colours[np.clip(labels, 0, len(colours) - 1)].astype(np.float32)
    blended = (1 - alpha) * rgb.astype(np.float32) + alpha * painted
    return np.where((labels > 0)[..., None], np.round(blended), rgb).astype(np.uint8)
