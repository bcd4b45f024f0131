"""EDSR x4 super-resolution of generated fundus photos (stage 11).

``net`` (the network and its config), ``data`` (real photos, crops and their down-samples),
``train`` (the training loop and its recipe, ``configs/edsr.yaml``), ``infer`` (tiled
up-scaling of whole photos).
"""

from angioflow.models.edsr.data import PhotoCrops, crop_to_fov, downsample, load_training_photos
from angioflow.models.edsr.infer import upscale
from angioflow.models.edsr.net import DEFAULT_EDSR_WEIGHTS, EDSR, EDSRConfig, ResidualBlock
from angioflow.models.edsr.train import EDSRTrainingConfig, train_edsr

__all__ = [
    "DEFAULT_EDSR_WEIGHTS",
    "EDSR",
    "EDSRConfig",
    "EDSRTrainingConfig",
    "PhotoCrops",
    "ResidualBlock",
    "crop_to_fov",
    "downsample",
    "load_training_photos",
    "train_edsr",
    "upscale",
]
