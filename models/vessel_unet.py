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

from collections.abc import Sequence
from typing import Literal

import torch
from angioflow.models.checkpoints import SavedWeights
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn
from torch.nn import functional as F  # noqa: N812

__all__ = ["VesselUNet", "VesselUNetConfig"]


class VesselUNetConfig(BaseModel):
    """Architecture of :class:`VesselUNet`.

    Attributes
    ----------
    in_channels : int
        Input channels (one per contrast window for vessel probability; other counts when the
        U-Net extracts features from another input, as in HVGN).
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
    contrast_windows : tuple of (float or None)
        Windows of :func:`pipeline.preprocess.vessel_channels` that make the input of a vessel
        probability model (fractions of the FOV diameter; None: the whole FOV).
    label_styles : tuple of str
        Training sources whose annotation style the model is told about (``drive``,
        ``les-av``, ``hrf-av``, ``phantom``); empty: none. Sources draw vessel rims
        differently, so a model that knows the source can learn each convention instead of
        their average. A learned per-style offset is added to the
        full-resolution features at the start and end of the network.
    fundus_style, fa_style : str
        The style inference asks for on colour photos and on FA frames (when ``label_styles``
        is set): DRIVE's manual annotations, the benchmark convention, and the phantom's
        truth, the only FA truth there is.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    in_channels: int = Field(1, ge=1)
    base_channels: int = Field(16, ge=2)
    depth: int = Field(4, ge=1, le=6)
    norm: Literal["batch", "group"] = "batch"
    fov_diameter_px: float = Field(540.0, gt=0)
    out_channels: int = Field(1, ge=1)
    contrast_windows: tuple[float | None, ...] = (1 / 40,)
    label_styles: tuple[str, ...] = ()
    fundus_style: str = "drive"
    fa_style: str = "phantom"

    @model_validator(mode="after")
    def _inference_styles_are_known(self) -> VesselUNetConfig:
        for style in (self.fundus_style, self.fa_style):
            if self.label_styles and style not in self.label_styles:
                raise ValueError(
                    f"inference style {style!r} is not one of label_styles {self.label_styles}"
                )
        return self


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
        input: (N, in_channels, H, W) float, H and W multiples of ``2**depth``; with
            ``label_styles``, also ``style`` (N,) indices from :meth:`style_index`
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
        if config.label_styles:
            # one offset for the stem's output and one for the last decoder features, per style
            self.style_offsets = nn.Embedding(len(config.label_styles), 2 * widths[0])
            nn.init.zeros_(self.style_offsets.weight)

    @property
    def multiple(self) -> int:
        return 2**self.config.depth

    def style_index(self, styles: Sequence[str]) -> torch.Tensor:
        """Indices into ``config.label_styles`` of one style per image, shape (N,).

        Raises
        ------
        ValueError
            If a style is not one the model was built for.
        """
        known = self.config.label_styles
        unknown = sorted(set(styles) - set(known))
        if unknown:
            raise ValueError(
                f"label style(s) {unknown} unknown to this model (it knows {list(known)}); "
                "add them to label_styles in the model config"
            )
        return torch.tensor([known.index(style) for style in styles], dtype=torch.long)

    def modality_style(self, modality: Literal["fundus", "fa"]) -> torch.Tensor | None:
        """Style index (1,) that inference uses for ``modality``; None without styles."""
        if not self.config.label_styles:
            return None
        config = self.config
        return self.style_index([config.fundus_style if modality == "fundus" else config.fa_style])

    def _style_offsets(self, style: torch.Tensor | None, n: int) -> tuple[torch.Tensor, ...] | None:
        if not self.config.label_styles:
            return None
        if style is None or style.shape != (n,):
            raise ValueError(f"this model needs one label style per image, shape ({n},)")
        offsets = self.style_offsets(style.to(self.style_offsets.weight.device))
        return offsets[:, :, None, None].chunk(2, dim=1)

    def encode(self, x: torch.Tensor, style: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Encoder features of every level, full resolution first.

        Shapes: input (N, in_channels, H, W), ``style`` (N,) indices (see :meth:`style_index`,
        needed when ``config.label_styles`` is set); level ``i`` is
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
        offsets = self._style_offsets(style, len(x))
        if offsets is not None:
            levels[0] = levels[0] + offsets[0]
        for block in self.down:
            levels.append(block(F.max_pool2d(levels[-1], 2)))
        return levels

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        skips = self.encode(x, style)
        # decoder: upsample, concatenate the skip, fuse
        features = skips.pop()
        for block in self.up:
            skip = skips.pop()
            features = F.interpolate(
                features, size=skip.shape[-2:], mode="bilinear", align_corners=False
            )
            features = block(torch.cat([features, skip], dim=1))
        offsets = self._style_offsets(style, len(x))
        if offsets is not None:
            features = features + offsets[1]
        # one logit per pixel
        return self.head(features)
