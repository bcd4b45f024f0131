"""The hierarchical vessel graph network (HVGN): artery/vein labels of vessel pixels.

``net`` (CNN features on vessel pixels and the graph U-Net), ``data`` (labelled photos and the
crop sampler), ``train`` (the training loop and its recipe, ``configs/hvgn.yaml`` then
``configs/hvgn_continue.yaml``), ``infer`` (labels for a whole photo with the shipped weights).
"""

from angioflow.models.hvgn.data import (
    AV_DATASETS,
    AVTrainingImage,
    CropSampler,
    fundus_input,
    load_av_training_images,
    phantom_av_training_images,
    prepare_av_image,
    resample_av,
)
from angioflow.models.hvgn.infer import DEFAULT_AV_WEIGHTS, AVLabeller
from angioflow.models.hvgn.net import HVGN, HVGNConfig, VesselGraphBatch, graph_batch
from angioflow.models.hvgn.train import HVGNTrainingConfig, av_loss, train_hvgn

__all__ = [
    "AV_DATASETS",
    "DEFAULT_AV_WEIGHTS",
    "HVGN",
    "AVLabeller",
    "AVTrainingImage",
    "CropSampler",
    "HVGNConfig",
    "HVGNTrainingConfig",
    "VesselGraphBatch",
    "av_loss",
    "fundus_input",
    "graph_batch",
    "load_av_training_images",
    "phantom_av_training_images",
    "prepare_av_image",
    "resample_av",
    "train_hvgn",
]
