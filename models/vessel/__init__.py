"""The vessel U-Net: vessel probability of fundus photos and FA frames.

``net`` (the residual U-Net and its config), ``data`` (training images and the patch sampler),
``train`` (the training loop and its recipe, ``configs/vessel.yaml``), ``infer`` (whole-image
vessel probability with the shipped weights), ``features`` (the encoder's features for realism
metrics).
"""

from angioflow.models.vessel.data import (
    PatchSampler,
    TrainingImage,
    load_training_images,
    phantom_fa_frames,
    phantom_fa_training_images,
    prepare_training_image,
    rescale_to_fov,
)
from angioflow.models.vessel.features import VesselFeatureExtractor
from angioflow.models.vessel.infer import DEFAULT_WEIGHTS, MIN_FOV_DIAMETER_PX, VesselSegmenter
from angioflow.models.vessel.net import VesselUNet, VesselUNetConfig
from angioflow.models.vessel.train import VesselTrainingConfig, soft_cl_dice_loss, train_vessel

__all__ = [
    "DEFAULT_WEIGHTS",
    "MIN_FOV_DIAMETER_PX",
    "PatchSampler",
    "TrainingImage",
    "VesselFeatureExtractor",
    "VesselSegmenter",
    "VesselTrainingConfig",
    "VesselUNet",
    "VesselUNetConfig",
    "load_training_images",
    "phantom_fa_frames",
    "phantom_fa_training_images",
    "prepare_training_image",
    "rescale_to_fov",
    "soft_cl_dice_loss",
    "train_vessel",
]
