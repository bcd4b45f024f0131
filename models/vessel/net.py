"""A compact residual U-Net for retinal vessel probability, shared by fundus photos and FA frames.

Why this architecture: vessel segmentation is a thin-structure, low-level task; a U-Net with
residual blocks and few channels reaches the published DRIVE accuracy range while staying small
enough (~1-2 M parameters) to train and run on a 2-core CPU. The input is one channel in which
vessels are bright (:func:`pipeline.preprocess.vessel_contrast`), which is what lets one network
serve both modalities.

References
----------
.. [1] Ronneberger, Fischer, Brox, "U-Net", MICCAI 2015. arXiv:1505.04597
.. [2] Zhang, Liu, Wang, "Road extraction by deep residual U-Net", IEEE GRSL 2018.
"""

from __future__ import annotations

from typing import Literal

import torch
from angioflow.models.checkpoints import SavedWeights
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn import functional as F  # noqa: N812

__all__ = ["VesselUNet", "VesselUNetConfig"]


class VesselUNetConfig(BaseModel):
    """Architecture of :class:`VesselUNet`.

    Attributes
    ----------
    in_channels : int
        Input channels: 1, the vessel contrast, for vessel probability; other counts when the
        U-Net extracts features from another input, as in HVGN.
    base_channels : int
        Channels at full resolution; doubled at every level down.
    depth : int
        Number of down-sampling steps; inputs are padded to a multiple of ``2**depth``.
    norm : {'batch', 'group'}
        Normalisation layer inside each residual block.
    fov_diameter_px : float
        Working scale: images are resized so their field of view is this wide before they
        reach the network (DRIVE's FOV is ~540 px), and probabilities are resized back.
    out_channels : int
        Output channels (1: the vessel logit; more when the U-Net extracts features).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    in_channels: int = Field(1, ge=1)
    base_channels: int = Field(16, ge=2)
    depth: int = Field(4, ge=1, le=6)
    norm: Literal["batch", "group"] = "batch"
    fov_diameter_px: float = Field(540.0, gt=0)
    out_channels: int = Field(1, ge=1)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    elif kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    else:
        raise ValueError(f"unknown norm {kind!r}")


class _ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, norm: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            _norm(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            _norm(norm, out_channels),
        )
        self.skip = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


class VesselUNet(SavedWeights, nn.Module):
    """Residual U-Net mapping a vessel-contrast image to vessel logits.

    Shapes:
        input: (N, in_channels, H, W) float, H and W multiples of ``2**depth``
        output: (N, out_channels, H, W); with one channel, logits whose ``sigmoid`` is the
            vessel probability
    """

    config_class = VesselUNetConfig

    def __init__(self, config: VesselUNetConfig) -> None:
        super().__init__()
        self.config = config
        widths = [config.base_channels * 2**level for level in range(config.depth + 1)]
        self.stem = _ResidualBlock(config.in_channels, widths[0], config.norm)
        self.down = nn.ModuleList(
            _ResidualBlock(widths[i], widths[i + 1], config.norm) for i in range(config.depth)
        )
        self.up = nn.ModuleList(
            _ResidualBlock(widths[i + 1] + widths[i], widths[i], config.norm)
            for i in reversed(range(config.depth))
        )
        self.head = nn.Conv2d(widths[0], config.out_channels, 1)

    @property
    def multiple(self) -> int:
        return 2**self.config.depth

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder features of every level, full resolution first.

        Shapes: input (N, in_channels, H, W); level ``i`` is
        (N, base_channels * 2**i, H / 2**i, W / 2**i).
        """
        if (
            x.ndim != 4
            or x.shape[1] != self.config.in_channels
            or x.shape[-1] % self.multiple
            or x.shape[-2] % self.multiple
        ):
            raise ValueError(
                f"expected (N, {self.config.in_channels}, H, W) with H, W multiples of "
                f"{self.multiple}, got {tuple(x.shape)}"
            )
        levels = [self.stem(x)]
        for block in self.down:
            levels.append(block(F.max_pool2d(levels[-1], 2)))
        return levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = self.encode(x)
        # decoder: upsample, concatenate the skip, fuse
        features = skips.pop()
        for block in self.up:
            skip = skips.pop()
            features = F.interpolate(
                features, size=skip.shape[-2:], mode="bilinear", align_corners=False
            )
            features = block(torch.cat([features, skip], dim=1))
        # one logit per pixel
        return self.head(features)
