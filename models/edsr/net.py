"""EDSR x4 super-resolution of generated fundus photos (stage 11), after Lim et al. (2017).

Residual blocks without batch norm, residual scaling, a pixel-shuffle up-sampler and a global
skip from the head; trained with L1 on photos down-sampled x4 (:mod:`models.edsr.train`).
With ``bicubic_skip`` the network adds its output to the bicubic up-sampling of its input, so
it learns only the detail bicubic interpolation misses (global residual learning, Kim et al.'s
VDSR); that converges in far fewer steps, which is what a CPU budget allows.
"""

from __future__ import annotations

import torch
from angioflow.models.checkpoints import SHIPPED_WEIGHTS, SavedWeights
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

__all__ = ["DEFAULT_EDSR_WEIGHTS", "EDSR", "EDSRConfig", "ResidualBlock"]

DEFAULT_EDSR_WEIGHTS = SHIPPED_WEIGHTS / "edsr"
# Mean RGB of fundus photos inside the FOV (DRIVE training), subtracted at the input.
_FUNDUS_MEAN = (0.50, 0.27, 0.16)


class EDSRConfig(BaseModel):
    """EDSR architecture; the defaults are the shipped CPU model's (``configs/edsr.yaml``). The
    paper's baseline is 16 blocks of 64 features, residual scale 1; its large model 32 blocks
    of 256 features, residual scale 0.1. ``bicubic_skip``: add the output to the bicubic
    up-sampling of the input instead of to the mean colour."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scale: int = Field(4, ge=2)
    features: int = Field(32, ge=8)
    blocks: int = Field(8, ge=1)
    residual_scale: float = Field(1.0, gt=0, le=1)
    bicubic_skip: bool = True


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
