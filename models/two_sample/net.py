"""The crop classifier of the two-sample test: four strided convolutions, global average
pooling and one logit (positive: synthetic)."""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

__all__ = ["CropClassifier", "TwoSampleConfig"]


class TwoSampleConfig(BaseModel):
    """The classifier and its cross-validation.

    Attributes
    ----------
    image_size : int
        Both sets are resized to this side (px) first, so a crop covers the same share of the
        field of view in each.
    crop : int
        Side of the square crops (px); a crop lies at least ``min_fov_share`` inside the field
        of view.
    features : int
        Channels of the first convolution (doubled at each of the four).
    folds, steps, batch_size, learning_rate, seed, threads
        ``folds``-fold cross-validation by image; each fold trains ``steps`` batches of
        ``batch_size`` crops, half from each set.
    crops_per_image : int
        Crops whose mean logit scores one held-out image.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_size: int = Field(512, ge=64)
    crop: int = Field(128, ge=16)
    min_fov_share: float = Field(0.9, gt=0, le=1)
    features: int = Field(16, ge=4)
    folds: int = Field(5, ge=2)
    steps: int = Field(300, ge=1)
    batch_size: int = Field(32, ge=2)
    learning_rate: float = Field(1e-3, gt=0)
    crops_per_image: int = Field(16, ge=1)
    seed: int = 0
    threads: int = Field(2, ge=1)


class CropClassifier(nn.Module):
    """(N, 3, C, C) crops in [0, 1] -> (N,) logits."""

    def __init__(self, config: TwoSampleConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for level in range(4):
            width = config.features * 2**level
            layers += [
                nn.Conv2d(channels, width, 3, stride=2, padding=1),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            channels = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(channels, 1)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        features = self.body(crops - 0.5).mean(dim=(2, 3))
        return self.head(features).squeeze(1)
