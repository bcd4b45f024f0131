"""pix2pixHD mask-to-fundus translation (stage 11).

``net`` (the global generator, multi-scale discriminators and losses), ``data`` (training pairs
and the generator's input/output conversions), ``train`` (the training loop and its recipe,
``configs/pix2pixhd256.yaml``). The GAN losses only the training loop uses stay in ``net``.
"""

from angioflow.models.pix2pixhd.data import (
    PAIR_COVERAGE,
    generator_input,
    label_masks,
    load_pairs,
    make_pair,
    photo_style,
    photo_uint8,
)
from angioflow.models.pix2pixhd.net import (
    DEFAULT_PIX2PIX_WEIGHTS,
    STYLE_SIZE,
    GlobalGenerator,
    MultiscaleDiscriminator,
    Pix2PixHDConfig,
    VGGPerceptualLoss,
    reconstruction_loss,
)
from angioflow.models.pix2pixhd.train import Pix2PixHDTrainingConfig, train_pix2pixhd

__all__ = [
    "PAIR_COVERAGE",
    "label_masks",
    "DEFAULT_PIX2PIX_WEIGHTS",
    "STYLE_SIZE",
    "GlobalGenerator",
    "MultiscaleDiscriminator",
    "Pix2PixHDConfig",
    "Pix2PixHDTrainingConfig",
    "VGGPerceptualLoss",
    "generator_input",
    "load_pairs",
    "make_pair",
    "photo_style",
    "photo_uint8",
    "reconstruction_loss",
    "train_pix2pixhd",
]
