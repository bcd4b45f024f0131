"""EDSR super-resolution of whole photos, tile by tile, so memory stays bounded."""

from __future__ import annotations

import numpy as np
import torch
from angioflow.models.edsr.net import EDSR

__all__ = ["upscale"]


@torch.no_grad()
def upscale(model: EDSR, image: np.ndarray, *, tile: int = 96, overlap: int = 8) -> np.ndarray:
    """Super-resolve an RGB photo tile by tile.

    Parameters
    ----------
    model : EDSR
    image : (h, w, 3) uint8
    tile : int
        Tile side in input pixels; each tile is processed with ``overlap`` pixels of context on
        every side, which are cut away after up-sampling, so tiles join without seams.

    Returns
    -------
    (scale*h, scale*w, 3) uint8
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (h, w, 3) uint8 photo, got {image.shape} {image.dtype}")
    scale = model.config.scale
    device = next(model.parameters()).device
    height, width = image.shape[:2]
    source = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255).unsqueeze(0)
    out = np.zeros((height * scale, width * scale, 3), np.uint8)
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            r0, c0 = max(0, top - overlap), max(0, left - overlap)
            r1, c1 = min(height, top + tile + overlap), min(width, left + tile + overlap)
            result = model(source[:, :, r0:r1, c0:c1].to(device))[0].clamp(0, 1)
            inner = result[
                :,
                (top - r0) * scale : (min(top + tile, height) - r0) * scale,
                (left - c0) * scale : (min(left + tile, width) - c0) * scale,
            ]
            out[
                top * scale : min(top + tile, height) * scale,
                left * scale : min(left + tile, width) * scale,
            ] = (inner.permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    return out
