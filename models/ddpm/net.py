"""Unconditional DDPM over two-channel artery/vein masks (stage 11), after Go et al.

The network is diffusers' ``UNet2DModel`` built from :class:`MaskDDPMConfig` (never downloaded):
residual blocks whose group norm takes a scale and shift from the time embedding (adaptive group
norm, ``resnet_time_scale_shift="scale_shift"``), self-attention with several heads at the low
resolutions (or none: then the network is fully convolutional and takes any size), and noise
(epsilon) prediction. Two options make large masks affordable on a CPU: coordinate channels
(each pixel's position in the whole mask, so a network trained on patches knows where a patch
lies and samples the whole mask in one pass; Wang et al., "Patch Diffusion", NeurIPS 2023) and a
space-to-depth stem (the U-Net runs at half the resolution on four times the channels, a
lossless rearrangement that keeps one-pixel vessels). A model with a ``layout_size`` is the
second stage of a cascade (Ho et al., "Cascaded Diffusion Models", JMLR 2022): it is given a
low-resolution mask, noised to a level that joins the time embedding (conditioning
augmentation), and draws the full-resolution mask that agrees with it. A model with
``calibre_condition`` is given each mask's calibre level (:func:`calibre_levels`) the same way,
so it learns the fine-vessel and coarse-vessel styles of the training masks apart instead of
blending them; its samples draw their levels from the training masks' (:func:`draw_conditions`).

Mask convention: channel 0 is artery, channel 1 is vein; ``x0`` is 1 on a class's pixels and 0
elsewhere (a crossing is 1 in both). The network sees ``2 * x0 - 1`` in [-1, 1]; the
vessel-weighted loss weights each pixel and channel by ``exp(c * x0)`` with ``x0`` in {0, 1}.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from angioflow.models.checkpoints import SavedWeights
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DModel
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn
from torch.nn import functional as F  # noqa: N812

__all__ = [
    "CONDITION_LEVELS",
    "build_unet",
    "CALIBRE_BINS",
    "calibre_levels",
    "draw_conditions",
    "layout_condition",
    "mask_positions",
    "MaskDDPM",
    "MaskDDPMConfig",
    "Sampler",
    "make_scheduler",
    "vessel_weighted_loss",
]

Sampler = Literal["ddpm", "ddim", "dpm"]
_BETA_SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}

CONDITION_LEVELS = 1000  # integer levels 0..999, the range the timestep embedding is made for
# calibre_levels: a pixel is a vessel core when one class's share of it exceeds CORE_SHARE;
# the log10 of a mask's core share, over CORE_LOG10_RANGE, falls into one of CALIBRE_BINS
# equal bins, each given the level at its centre. At 64 px the real training masks' core
# shares are 0.0015-0.014 (HRF-AV, fine vessels; the second and third bins) and 0.021-0.080
# (RITE, LES-AV; the fourth). Bins, not one level a mask: with 55 masks a continuous level
# names its mask, and the model learnt to redraw it (best overlap median 0.40 against 0.23).
CORE_SHARE = 0.5
CORE_LOG10_RANGE = (-4.0, -1.0)
CALIBRE_BINS = 4


class MaskDDPMConfig(BaseModel):
    """Architecture and noise schedule of a mask DDPM (saved beside its weights); the defaults
    are the shipped cascade's layout model's (``models/weights/mask_cascade/layout/config.json``).

    ``attention_resolutions`` are the feature-map sizes (px) whose blocks get self-attention;
    ``attention_head_dim`` channels per head, so a 128-channel level has 4 heads at 32. None
    (empty) leaves the middle block without attention too. ``coordinates`` adds two input
    channels, each pixel's column and row in the whole mask in [-1, 1]; ``space_to_depth`` f
    folds f x f pixel blocks into channels before the U-Net and back after it. ``layout_size``
    (px) makes the model a cascade's up-sampler conditioned on a mask of that size.
    ``data_mean`` is the per-channel mean of the training masks in [0, 1], set by training and
    used by the samplers at the pure-noise steps (:func:`models.ddpm.sample_masks`);
    None in weights trained before it was recorded. ``calibre_condition`` gives the model each
    mask's calibre level (:func:`calibre_levels`) through the U-Net's class embedding (an
    up-sampler's is taken by its layout's noise level, so not both); ``condition_values`` are
    the training masks' levels, one per mask, set by training, from which the samplers draw
    each sample's level (:func:`draw_conditions`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_size: int = Field(64, ge=16)
    channels: int = Field(2, ge=1)
    block_out_channels: tuple[int, ...] = (16, 32, 64, 128)
    layers_per_block: int = Field(1, ge=1)
    attention_resolutions: tuple[int, ...] = (16, 8)
    attention_head_dim: int = Field(16, ge=8)
    norm_num_groups: int = Field(8, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    schedule: Literal["linear", "cosine"] = "cosine"
    timesteps: int = Field(1000, ge=10)
    data_mean: tuple[float, ...] | None = None
    coordinates: bool = False
    space_to_depth: int = Field(1, ge=1, le=4)
    layout_size: int | None = Field(None, ge=8)
    calibre_condition: bool = False
    condition_values: tuple[int, ...] | None = None

    @model_validator(mode="after")
    def _one_mean_per_channel(self) -> MaskDDPMConfig:
        if self.data_mean is not None and len(self.data_mean) != self.channels:
            raise ValueError(
                f"data_mean has {len(self.data_mean)} values for {self.channels} channels"
            )
        return self

    @model_validator(mode="after")
    def _layout_smaller(self) -> MaskDDPMConfig:
        if self.layout_size is not None and (
            self.layout_size >= self.image_size or self.image_size % self.layout_size
        ):
            raise ValueError(
                f"layout_size {self.layout_size} must divide image_size {self.image_size} "
                "and be smaller"
            )
        return self

    @model_validator(mode="after")
    def _one_condition(self) -> MaskDDPMConfig:
        if self.calibre_condition and self.layout_size:
            raise ValueError(
                "calibre_condition is for a layout model: an up-sampler's class embedding "
                "carries its layout's noise level"
            )
        if self.condition_values is not None:
            if not self.calibre_condition:
                raise ValueError("condition_values need calibre_condition: true")
            if not self.condition_values or not all(
                0 <= v < CONDITION_LEVELS for v in self.condition_values
            ):
                raise ValueError(f"condition_values must be levels 0..{CONDITION_LEVELS - 1}")
        return self

    @property
    def conditioned(self) -> bool:
        """Whether the U-Net has a class embedding (an up-sampler's or a calibre level's)."""
        return bool(self.layout_size) or self.calibre_condition


def calibre_levels(masks: np.ndarray) -> np.ndarray:
    """Each mask's calibre level: the bin of the log10 of its vessel-core share.

    The real masks' calibre is bimodal (HRF-AV's fine vessels against RITE's and LES-AV's
    coarse ones), and a soft mask's share of core pixels (one class's share above
    :data:`CORE_SHARE`) at the layout size separates the two modes: a fine vessel spreads its
    mass over pixels it only partly covers. The log spreads the fine mode as wide as the
    coarse one; it falls into one of :data:`CALIBRE_BINS` equal bins of
    :data:`CORE_LOG10_RANGE` (shares outside take the end bins), whose centre is the level.

    Parameters
    ----------
    masks : (N, 2, S, S) float array in [0, 1]
        Artery and vein shares (soft) or labels (binary: the level then follows the density).

    Returns
    -------
    levels : (N,) int64 in 0..CONDITION_LEVELS - 1
        One of ``CALIBRE_BINS`` levels.

    Example
    -------
    >>> masks = np.zeros((3, 2, 10, 10)); masks[1, 0, 0, 0] = 1; masks[2, 1, :2] = 0.8
    >>> calibre_levels(masks).tolist()  # empty, 1 % and 20 % cores
    [125, 624, 874]
    """
    # one class's share, not the sum: where a fine artery and vein pass side by side, their
    # partial pixels would add up to a core (measured: the modes' gap narrows to 16 levels)
    share = (masks.max(axis=1) > CORE_SHARE).mean(axis=(1, 2))
    low, high = CORE_LOG10_RANGE
    position = (np.log10(np.maximum(share, 10**low)) - low) / (high - low)
    bins = np.minimum(np.floor(np.clip(position, 0, 1) * CALIBRE_BINS), CALIBRE_BINS - 1)
    return np.round((bins + 0.5) / CALIBRE_BINS * (CONDITION_LEVELS - 1)).astype(np.int64)


def draw_conditions(config: MaskDDPMConfig, n: int, seed: int) -> np.ndarray:
    """``n`` calibre levels in the training masks' proportions (the config's
    ``condition_values``), in a random order; the same for the same seed.

    The draw is stratified (one level at each of ``n`` evenly spaced quantiles of the
    training levels, from a random start), so a set's mix of fine and coarse masks is the
    training set's within one mask instead of varying from set to set: a set's calibre
    median would otherwise swing between the two modes.

    Raises
    ------
    ValueError
        If the config records no condition values (a model without ``calibre_condition``, or
        weights that were not trained).
    """
    if not config.condition_values:
        raise ValueError("the model records no condition values: pass conditions explicitly")
    # a stream of its own, apart from the samplers' noise generators seeded with `seed`
    draws = np.random.default_rng([seed, _CONDITION_STREAM])
    values = np.sort(np.asarray(config.condition_values, np.int64))
    quantiles = (np.arange(n) + draws.random()) / n
    picked = np.minimum((quantiles * len(values)).astype(int), len(values) - 1)
    return draws.permutation(values[picked])


_CONDITION_STREAM = 0xC411B4E


def build_unet(config: MaskDDPMConfig) -> UNet2DModel:
    """The U-Net of a config: attention blocks where the feature map is in
    ``attention_resolutions``, adaptive group norm everywhere."""
    divisor = config.space_to_depth * 2 ** (len(config.block_out_channels) - 1)
    if config.image_size % divisor:
        raise ValueError(
            f"image_size {config.image_size} must be divisible by space_to_depth * "
            f"2**(levels-1) ({divisor})"
        )
    inner = config.image_size // config.space_to_depth
    sizes = [inner // 2**level for level in range(len(config.block_out_channels))]
    attends = [size * config.space_to_depth in config.attention_resolutions for size in sizes]
    folded = config.channels * config.space_to_depth**2
    layout_channels = config.channels if config.layout_size else 0
    return UNet2DModel(
        sample_size=inner,
        in_channels=folded + 2 * config.coordinates + layout_channels,
        out_channels=folded,
        block_out_channels=config.block_out_channels,
        layers_per_block=config.layers_per_block,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attends),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attends)),
        attention_head_dim=config.attention_head_dim,
        norm_num_groups=config.norm_num_groups,
        dropout=config.dropout,
        resnet_time_scale_shift="scale_shift",
        add_attention=bool(config.attention_resolutions),  # the middle block too
        # the layout's noise level, or the calibre level, is embedded as the time is and added
        # to it
        class_embed_type="timestep" if config.conditioned else None,
    )


def mask_positions(
    size: int, top: int = 0, left: int = 0, patch: int | None = None
) -> torch.Tensor:
    """(2, patch, patch) column and row of each pixel of a patch in a ``size`` px mask, in
    [-1, 1] over the whole mask (the coordinate channels); the whole mask by default."""
    patch = patch or size
    axis = torch.linspace(-1.0, 1.0, size)
    rows = axis[top : top + patch].view(-1, 1).expand(patch, patch)
    cols = axis[left : left + patch].view(1, -1).expand(patch, patch)
    return torch.stack([cols, rows])


class MaskDDPM(SavedWeights, nn.Module):
    """Noise predictor ε_θ(x_t, t) for (B, channels, S, S) masks scaled to [-1, 1]."""

    config_class = MaskDDPMConfig

    def __init__(self, config: MaskDDPMConfig) -> None:
        super().__init__()
        self.config = config
        self.unet = build_unet(config)

    def forward(
        self,
        noisy: torch.Tensor,
        timesteps: torch.Tensor,
        positions: torch.Tensor | None = None,
        layout: torch.Tensor | None = None,
        layout_noise: torch.Tensor | None = None,
        condition: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predicted noise (B, C, H, W) of ``noisy`` (B, C, H, W) at ``timesteps`` (B,) int64.

        ``positions`` (B, 2, H, W): the coordinate channels of the pixels given (a patch's
        place in the whole mask, :func:`mask_positions`); by default ``noisy`` is the whole
        mask. Ignored by a model without coordinates. ``layout`` (B, C, H, W) in [-1, 1] and
        ``layout_noise`` (B,) int64: an up-sampler's low-resolution mask, noised to that level
        and enlarged to the pixels given (:func:`layout_condition`); required by a model with
        a ``layout_size``, ignored by others. ``condition`` (B,) int64: the calibre levels
        (:func:`calibre_levels`) of a model with ``calibre_condition``, required by it and
        ignored by others.
        """
        fold = self.config.space_to_depth
        parts = [F.pixel_unshuffle(noisy, fold) if fold > 1 else noisy]
        if self.config.coordinates:
            if positions is None:
                whole = mask_positions(noisy.shape[-1]).to(noisy)
                positions = whole.expand(len(noisy), -1, -1, -1)
            parts.append(F.avg_pool2d(positions, fold) if fold > 1 else positions)
        if self.config.layout_size:
            if layout is None or layout_noise is None:
                raise ValueError("this model is an up-sampler: give it a layout and its noise")
            parts.append(F.avg_pool2d(layout, fold) if fold > 1 else layout)
        labels = layout_noise
        if self.config.calibre_condition:
            if condition is None:
                raise ValueError("this model is calibre-conditioned: give it a condition")
            labels = condition
        predicted = self.unet(torch.cat(parts, dim=1), timesteps, class_labels=labels)
        return F.pixel_shuffle(predicted.sample, fold) if fold > 1 else predicted.sample


def layout_condition(
    layout: torch.Tensor,
    size: int,
    level: torch.Tensor,
    scheduler: DDPMScheduler,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The condition an up-sampler sees: a low-resolution ``layout`` (B, C, L, L) in [0, 1]
    scaled to [-1, 1], noised to ``level`` (B,) of the forward process (0: no noise) and
    enlarged bilinearly to ``size``. The noise (conditioning augmentation) keeps the up-sampler
    from trusting fine detail of its layout, which a first stage's samples do not share with
    the training masks' shrunk copies."""
    scaled = layout * 2 - 1
    noise = torch.randn(scaled.shape, generator=generator).to(scaled)
    noised = torch.where(
        (level > 0).view(-1, 1, 1, 1), scheduler.add_noise(scaled, noise, level), scaled
    )
    return F.interpolate(noised, size=(size, size), mode="bilinear", align_corners=False)


def make_scheduler(
    config: MaskDDPMConfig, sampler: Sampler = "ddpm"
) -> DDPMScheduler | DDIMScheduler | DPMSolverMultistepScheduler:
    """The noise schedule of ``config`` as a diffusers scheduler, every default set explicitly.

    diffusers' defaults differ from the DDPM paper's implementation in places; here: betas
    linear 1e-4..0.02 (Ho et al.) or the cosine schedule (Nichol & Dhariwal), epsilon
    prediction, predicted x0 clipped to [-1, 1] while sampling, the fixed small posterior
    variance (σ² = β̃, no learned variance), DDIM with alpha = 1 after the last step (η is
    chosen at sampling), the stochastic SDE-DPM-Solver++ of order 2 (the deterministic one
    averages ambiguous pixels to grey, as DDIM with η = 0) with x0 predictions kept in [-1, 1]
    and lambda clipped for the cosine schedule; fast samplers space steps from T ("trailing").
    """
    common = {
        "num_train_timesteps": config.timesteps,
        "beta_start": 1e-4,
        "beta_end": 0.02,
        "beta_schedule": _BETA_SCHEDULES[config.schedule],
        "prediction_type": "epsilon",
    }
    if sampler == "ddpm":
        return DDPMScheduler(
            **common,
            variance_type="fixed_small",
            clip_sample=True,
            clip_sample_range=1.0,
            timestep_spacing="leading",
        )
    if sampler == "ddim":
        return DDIMScheduler(
            **common,
            clip_sample=True,
            clip_sample_range=1.0,
            set_alpha_to_one=True,
            timestep_spacing="trailing",
        )
    if sampler == "dpm":
        return DPMSolverMultistepScheduler(
            **common,
            algorithm_type="sde-dpmsolver++",
            solver_order=2,
            thresholding=True,  # x0 predictions kept in [-1, 1], as the other samplers clip
            dynamic_thresholding_ratio=0.995,
            sample_max_value=1.0,
            lower_order_final=True,
            lambda_min_clipped=-5.1,  # the cosine schedule's alpha_T ~ 0 breaks the solver
            timestep_spacing="trailing",
        )
    raise ValueError(f"sampler must be ddpm, ddim or dpm, got {sampler!r}")


def vessel_weighted_loss(
    predicted: torch.Tensor, noise: torch.Tensor, x0: torch.Tensor, c: float
) -> torch.Tensor:
    """Go et al.'s loss: mean over pixels and channels of ``exp(c * x0) * (ε - ε_θ)²``.

    Parameters
    ----------
    predicted, noise : (B, C, S, S) tensors
    x0 : (B, C, S, S) tensor
        The clean mask with values in {0, 1} (1 = vessel of that channel's class).
    c : float
        0 gives plain L_simple.
    """
    return (torch.exp(c * x0) * (predicted - noise).square()).mean()
