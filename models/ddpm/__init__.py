"""The mask DDPM: unconditional diffusion over two-channel artery/vein masks (stage 11).

``net`` (diffusers' U-Net built from a config, the noise schedules, the vessel-weighted loss),
``data`` (training masks), ``train`` (the training loop and its recipes,
``configs/ddpm64_layout.yaml`` and ``configs/ddpm256_upsampler.yaml``), ``sample`` (DDPM, DDIM
and DPM-Solver++ sampling; mask sets), ``cascade`` (the shipped generator: a layout model and
its up-sampler).
"""

from angioflow.models.ddpm.cascade import (
    DEFAULT_MASK_WEIGHTS,
    MaskCascade,
    sample_cascade,
)
from angioflow.models.ddpm.data import (
    AV_MASK_DATASETS,
    MaskBatches,
    load_exported_masks,
    load_public_masks,
    random_patches,
)
from angioflow.models.ddpm.net import (
    CONDITION_LEVELS,
    MaskDDPM,
    MaskDDPMConfig,
    Sampler,
    build_unet,
    calibre_levels,
    draw_conditions,
    layout_condition,
    make_scheduler,
    mask_positions,
    vessel_weighted_loss,
)
from angioflow.models.ddpm.sample import (
    TERMINAL_ALPHA_BAR,
    mask_grid,
    sample_masks,
    unweighted_epsilon,
    write_mask_set,
)
from angioflow.models.ddpm.train import DDPMTrainingConfig, train_ddpm

__all__ = [
    "AV_MASK_DATASETS",
    "CONDITION_LEVELS",
    "DEFAULT_MASK_WEIGHTS",
    "TERMINAL_ALPHA_BAR",
    "DDPMTrainingConfig",
    "MaskBatches",
    "MaskCascade",
    "MaskDDPM",
    "MaskDDPMConfig",
    "Sampler",
    "build_unet",
    "calibre_levels",
    "draw_conditions",
    "load_exported_masks",
    "load_public_masks",
    "layout_condition",
    "make_scheduler",
    "mask_grid",
    "mask_positions",
    "random_patches",
    "sample_cascade",
    "sample_masks",
    "train_ddpm",
    "unweighted_epsilon",
    "vessel_weighted_loss",
    "write_mask_set",
]
