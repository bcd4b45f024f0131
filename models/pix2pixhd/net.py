"""pix2pixHD mask-to-fundus translation (stage 11), after Wang et al. (2018).

Input: the artery and vein channels of an A/V mask and the field of view, in {0, 1}, scaled to
[-1, 1]; output: an RGB fundus photo in [-1, 1]. The global generator (down-sampling, residual
blocks, up-sampling, instance norm) is trained against multi-scale PatchGAN discriminators with
the least-squares GAN loss and discriminator feature matching; a VGG perceptual loss is added
only when the user supplies VGG-19 weights on disk (nothing is downloaded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from angioflow.models.checkpoints import SHIPPED_WEIGHTS, SavedWeights
from angioflow.models.pix2pixhd.data import PAIR_COVERAGE
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn
from torch.nn import functional as F  # noqa: N812

__all__ = [
    "DEFAULT_PIX2PIX_WEIGHTS",
    "STYLE_SIZE",
    "GlobalGenerator",
    "MultiscaleDiscriminator",
    "Pix2PixHDConfig",
    "VGGPerceptualLoss",
    "feature_matching_loss",
    "lsgan_loss",
    "reconstruction_loss",
]

DEFAULT_PIX2PIX_WEIGHTS = SHIPPED_WEIGHTS / "pix2pixhd"
STYLE_SIZE = 6
"""Numbers in a photo's style: mean and standard deviation of R, G, B inside the FOV, in [0, 1]."""


class Pix2PixHDConfig(BaseModel):
    """Generator and discriminator sizes; the defaults are the shipped CPU model's
    (``configs/pix2pixhd256.yaml``). pix2pixHD's own: ngf 64, 4 down-samplings, 9 residual
    blocks, ndf 64, 3 layers, 2 scales.

    ``input_skip`` feeds the input masks to the generator's output convolution beside its
    up-sampled features (the outermost skip of pix2pix's U-Net). Without it every vessel
    has to pass the down-sampled bottleneck, and CPU-length runs drew none
    (docs/models/pix2pixhd.md; ``tests/test_pix2pixhd.py`` checks the difference on RITE pairs).

    ``anatomy`` adds two input channels, the optic disc and the fovea where the input's
    vessels place them (:func:`pipeline.anatomy.anatomy_maps`, by :func:`generator_input`).

    ``style`` conditions the generator on a photo's colour statistics (:func:`photo_style`:
    mean and standard deviation of R, G and B inside the field of view): they scale and shift
    the bottleneck features and shift the output colour, so the L1 term no longer pulls every
    photo to the training set's mean colour. ``style_bank`` holds the training photos' styles,
    filled by the training loop; generated photos draw their style from it.

    ``mask_coverage`` is the share of a pixel a class must cover to be drawn in the masks at
    ``image_size``: the training pairs' masks and the generated labels it is given are shrunk
    with the same, so the one saved with the weights serves both.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_size: int = Field(256, ge=16)
    input_channels: int = Field(3, ge=1)  # artery, vein, field of view (+ disc, fovea)
    anatomy: bool = False
    generator_features: int = Field(16, ge=4)
    downsamplings: int = Field(4, ge=1)
    residual_blocks: int = Field(6, ge=1)
    discriminator_features: int = Field(32, ge=4)
    discriminator_layers: int = Field(3, ge=1)
    discriminator_scales: int = Field(2, ge=1)
    input_skip: bool = True
    mask_coverage: float = Field(PAIR_COVERAGE, gt=0, le=1)
    style: bool = False
    style_bank: tuple[tuple[float, ...], ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _anatomy_channels(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("anatomy") and "input_channels" not in data:
            return data | {"input_channels": 5}
        return data

    @model_validator(mode="after")
    def _styles_are_colour_statistics(self) -> Pix2PixHDConfig:
        if any(len(style) != STYLE_SIZE for style in self.style_bank):
            raise ValueError(f"every style_bank entry must hold {STYLE_SIZE} numbers")
        return self

    @model_validator(mode="after")
    def _channels_match(self) -> Pix2PixHDConfig:
        expected = 5 if self.anatomy else 3
        if self.input_channels != expected:
            raise ValueError(
                f"input_channels must be {expected} with anatomy: {str(self.anatomy).lower()}"
            )
        return self


class _ResidualBlock(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(features, features, 3),
            nn.InstanceNorm2d(features),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(features, features, 3),
            nn.InstanceNorm2d(features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class GlobalGenerator(SavedWeights, nn.Module):
    """(B, input_channels, S, S) in [-1, 1] (and with ``config.style`` (B, STYLE_SIZE)
    styles) -> (B, 3, S, S) in [-1, 1]."""

    config_class = Pix2PixHDConfig

    def __init__(self, config: Pix2PixHDConfig) -> None:
        super().__init__()
        self.config = config
        features = config.generator_features
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(config.input_channels, features, 7),
            nn.InstanceNorm2d(features),
            nn.ReLU(inplace=True),
        ]
        for _ in range(config.downsamplings):
            layers += [
                nn.Conv2d(features, 2 * features, 3, stride=2, padding=1),
                nn.InstanceNorm2d(2 * features),
                nn.ReLU(inplace=True),
            ]
            features *= 2
        layers += [_ResidualBlock(features) for _ in range(config.residual_blocks)]
        self._bottleneck = len(layers)
        if config.style:  # zero: a style-free generator continued with styles starts unchanged
            # styles are standardised by the bank's spread: a unit input per colour statistic
            bank = torch.tensor(config.style_bank or [[0.0] * STYLE_SIZE] * 2)
            self.register_buffer("style_mean", bank.mean(dim=0), persistent=False)
            self.register_buffer("style_scale", bank.std(dim=0) + 1e-3, persistent=False)
            self.modulation = nn.Linear(STYLE_SIZE, 2 * features)
            self.colour = nn.Linear(STYLE_SIZE, 3)
            for layer in (self.modulation, self.colour):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        for _ in range(config.downsamplings):
            layers += [
                nn.ConvTranspose2d(features, features // 2, 3, 2, padding=1, output_padding=1),
                nn.InstanceNorm2d(features // 2),
                nn.ReLU(inplace=True),
            ]
            features //= 2
        self.net = nn.Sequential(*layers)
        head_inputs = features + (config.input_channels if config.input_skip else 0)
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(head_inputs, 3, 7), nn.Tanh())

    def forward(self, masks: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        if (style is None) == self.config.style:
            raise ValueError("give a style exactly when the generator has config.style")
        if style is None:
            features = self.net(masks)
        else:
            style = (style - self.style_mean) / self.style_scale
            scale, shift = self.modulation(style)[..., None, None].chunk(2, dim=1)
            bottleneck = self.net[: self._bottleneck](masks) * (1 + scale) + shift
            features = self.net[self._bottleneck :](bottleneck)
        if self.config.input_skip:
            features = torch.cat([features, masks], dim=1)
        if style is None:
            return self.head(features)
        colour = self.head[:-1](features) + self.colour(style)[..., None, None]
        return torch.tanh(colour)


class PatchDiscriminator(nn.Module):
    """PatchGAN on (mask, photo) pairs; returns every layer's output (the last is the score
    map), for feature matching."""

    def __init__(self, in_channels: int, features: int, layers: int) -> None:
        super().__init__()
        blocks = [nn.Sequential(nn.Conv2d(in_channels, features, 4, 2, 2), nn.LeakyReLU(0.2, True))]
        width = features
        for index in range(1, layers + 1):
            previous, width = width, min(width * 2, 512)
            stride = 2 if index < layers else 1
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(previous, width, 4, stride, 2),
                    nn.InstanceNorm2d(width),
                    nn.LeakyReLU(0.2, True),
                )
            )
        blocks.append(nn.Sequential(nn.Conv2d(width, 1, 4, 1, 2)))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        return outputs


class MultiscaleDiscriminator(nn.Module):
    """PatchGANs on the pair at full, half, quarter ... resolution."""

    def __init__(self, config: Pix2PixHDConfig) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            PatchDiscriminator(
                config.input_channels + 3,
                config.discriminator_features,
                config.discriminator_layers,
            )
            for _ in range(config.discriminator_scales)
        )

    def forward(self, masks: torch.Tensor, photos: torch.Tensor) -> list[list[torch.Tensor]]:
        x = torch.cat([masks, photos], dim=1)
        results = []
        for index, discriminator in enumerate(self.discriminators):
            if index:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            results.append(discriminator(x))
        return results


def lsgan_loss(results: list[list[torch.Tensor]], real: bool) -> torch.Tensor:
    """Least-squares GAN loss over every scale's score map (target 1 real, 0 fake)."""
    target = 1.0 if real else 0.0
    return sum(F.mse_loss(r[-1], torch.full_like(r[-1], target)) for r in results) / len(results)


def feature_matching_loss(
    fake: list[list[torch.Tensor]], real: list[list[torch.Tensor]]
) -> torch.Tensor:
    """L1 between the discriminators' intermediate features of real and generated pairs,
    weighted as in pix2pixHD (4 / (layers + 1) per layer, 1 / scales per scale)."""
    total = fake[0][0].new_zeros(())
    for fake_scale, real_scale in zip(fake, real, strict=True):
        weight = 4.0 / (len(fake_scale) - 1) / len(fake)
        for f, r in zip(fake_scale[:-1], real_scale[:-1], strict=True):
            total = total + weight * F.l1_loss(f, r.detach())
    return total


def reconstruction_loss(
    fake: torch.Tensor, real: torch.Tensor, masks: torch.Tensor, vessel_weight: float = 0.0
) -> torch.Tensor:
    """pix2pix's L1 between generated and real photos, vessel pixels counted more.

    Parameters
    ----------
    fake, real : (B, 3, S, S) photos in [-1, 1]
    masks : (B, C, S, S) generator input in [-1, 1]; channels 0 and 1 artery and vein
    vessel_weight : float
        Extra weight of pixels within one pixel of a vessel: each counts ``1 + vessel_weight``
        times (0: plain L1). Thin vessels are a few percent of a photo's pixels and darken
        it only slightly, so plain L1 barely rewards drawing them.
    """
    error = (fake - real).abs()
    if not vessel_weight:
        return error.mean()
    vessels = (masks[:, :2] > 0).any(dim=1, keepdim=True).float()
    near = F.max_pool2d(vessels, 3, stride=1, padding=1)
    return ((1 + vessel_weight * near) * error).mean()


# VGG-19 convolution widths up to relu5_1; "M" is max pooling.
_VGG19 = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512)


class VGGPerceptualLoss(nn.Module):
    """pix2pixHD's VGG loss (relu1_1 ... relu5_1, weights 1/32 ... 1) from a local VGG-19
    ``features`` state dict (keys ``0.weight``, ``0.bias``, ``2.weight`` ..., as saved from a
    VGG-19's ``features`` module), read with ``weights_only=True``."""

    _TAPS = (1, 6, 11, 20, 29)  # indices of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
    _WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)

    def __init__(self, weights_file: Path) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in _VGG19:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU(inplace=False)]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        state = torch.load(weights_file, map_location="cpu", weights_only=True)
        own = {k: v for k, v in state.items() if k.split(".")[0].isdigit()}
        missing = set(self.features.state_dict()) - set(own)
        if missing:
            raise ValueError(
                f"{weights_file} is not a VGG-19 features state dict "
                f"(missing {sorted(missing)[:3]}); save a VGG-19's `features` state dict"
            )
        self.features.load_state_dict({k: own[k] for k in self.features.state_dict()})
        self.requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Photos in [-1, 1]."""
        x = ((fake + 1) / 2 - self.mean) / self.std
        y = ((real + 1) / 2 - self.mean) / self.std
        total = torch.zeros((), device=fake.device)
        taps = dict(zip(self._TAPS, self._WEIGHTS, strict=True))
        for index, layer in enumerate(self.features):
            x, y = layer(x), layer(y)
            if index in taps:
                total = total + taps[index] * F.l1_loss(x, y.detach())
            if index >= self._TAPS[-1]:
                break
        return total
