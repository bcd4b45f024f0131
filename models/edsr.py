"""EDSR x4 super-resolution of generated fundus photos (stage 11), after Lim et al. (2017).

Residual blocks without batch norm, residual scaling, a pixel-shuffle up-sampler and a global
skip from the head; trained with L1 on photos down-sampled x4 (:mod:`models.edsr_training`).
With ``bicubic_skip`` the network adds its output to the bicubic up-sampling of its input, so
it learns only the detail bicubic interpolation misses (global residual learning, Kim et al.'s
VDSR); that converges in far fewer steps, which is what a CPU budget allows.
Large images are processed in overlapping tiles, so memory stays bounded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from angioflow.models.checkpoints import SavedWeights
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

__all__ = ["DEFAULT_EDSR_WEIGHTS", "EDSR", "EDSRConfig", "upscale"]

DEFAULT_EDSR_WEIGHTS = Path(__file__).resolve().parent / "weights" / "edsr"
# Mean RGB of fundus photos inside the FOV (DRIVE training), subtracted at the input.
_FUNDUS_MEAN = (0.50, 0.27, 0.16)


class EDSRConfig(BaseModel):
    """EDSR architecture. The paper's baseline is 16 blocks of 64 features, residual scale 1;
    its large model 32 blocks of 256 features, residual scale 0.1. ``bicubic_skip``: add the
    output to the bicubic up-sampling of the input instead of to the mean colour."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scale: int = Field(4, ge=2)
    features: int = Field(64, ge=8)
    blocks: int = Field(16, ge=1)
    residual_scale: float = Field(1.0, gt=0, le=1)
    bicubic_skip: bool = False


class ResidualBlock(nn.Module):
    """conv-ReLU-conv, scaled, added to the input (no batch norm)."""

    def __init__(self, features: int, residual_scale: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(features, features, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(features, features, 3, padding=1),
        )
        self.residual_scale = residual_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual_scale * self.body(x)


def _upsampler(features: int, scale: int) -> nn.Sequential:
    """Sub-pixel convolutions: x2 stages for powers of two, one x3 stage for 3."""
    layers: list[nn.Module] = []
    if scale & (scale - 1) == 0:
        for _ in range(scale.bit_length() - 1):
            layers += [nn.Conv2d(features, 4 * features, 3, padding=1), nn.PixelShuffle(2)]
    elif scale == 3:
        layers += [nn.Conv2d(features, 9 * features, 3, padding=1), nn.PixelShuffle(3)]
    else:
        raise ValueError(f"scale must be a power of two or 3, got {scale}")
    return nn.Sequential(*layers)


class EDSR(SavedWeights, nn.Module):
    """(B, 3, h, w) RGB in [0, 1] -> (B, 3, scale*h, scale*w) RGB (unclipped)."""

    config_class = EDSRConfig

    def __init__(self, config: EDSRConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.tensor(_FUNDUS_MEAN).view(1, 3, 1, 1))
        self.head = nn.Conv2d(3, config.features, 3, padding=1)
        self.body = nn.Sequential(
            *(ResidualBlock(config.features, config.residual_scale) for _ in range(config.blocks)),
            nn.Conv2d(config.features, config.features, 3, padding=1),
        )
        self.tail = nn.Sequential(
            _upsampler(config.features, config.scale),
            nn.Conv2d(config.features, 3, 3, padding=1),
        )

    def forward(self, low: torch.Tensor) -> torch.Tensor:
        features = self.head(low - self.mean)
        detail = self.tail(features + self.body(features))
        if self.config.bicubic_skip:
            return detail + nn.functional.interpolate(
                low, scale_factor=self.config.scale, mode="bicubic", align_corners=False
            )
        return detail + self.mean


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
