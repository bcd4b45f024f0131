"""Training data of EDSR: real fundus photos cropped to their field of view, random crops and
their x4 down-samples (bicubic, antialiased)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from angioflow.pipeline.datasets import load_dataset
from PIL import Image

__all__ = ["PhotoCrops", "crop_to_fov", "downsample", "load_training_photos"]


def downsample(image: np.ndarray, scale: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (H // scale, W // scale, 3) uint8, bicubic with antialiasing (the
    degradation EDSR is trained and evaluated on)."""
    height, width = image.shape[0] // scale, image.shape[1] // scale
    cropped = Image.fromarray(image[: height * scale, : width * scale])
    return np.asarray(cropped.resize((width, height), Image.Resampling.BICUBIC))


def crop_to_fov(image: np.ndarray, fov: np.ndarray) -> np.ndarray:
    """(H, W, 3) photo -> its (h, w, 3) part inside the bounding box of the (H, W) FOV mask."""
    rows, cols = np.nonzero(fov)
    return image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def load_training_photos(data_root: Path, datasets: Sequence[str]) -> list[np.ndarray]:
    """Training-split photos (never a test split), each cropped to its FOV's bounding box."""
    return [
        crop_to_fov(record.image, record.fov)
        for name in datasets
        for record in load_dataset(data_root, name, "training")
    ]


class PhotoCrops:
    """Random high-resolution crops (flips, quarter turns) and their x``scale`` down-samples."""

    def __init__(
        self, photos: list[np.ndarray], low_patch: int, scale: int, rng: np.random.Generator
    ) -> None:
        self.photos, self.scale, self.rng = photos, scale, rng
        self.high = low_patch * scale
        usable = [p for p in photos if min(p.shape[:2]) >= self.high]
        if not usable:
            raise ValueError(f"no training photo is at least {self.high} px on its short side")
        self.photos = usable

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(low (B, 3, p, p), high (B, 3, p*scale, p*scale)) float32 in [0, 1]."""
        lows, highs = [], []
        while len(highs) < size:
            photo = self.photos[self.rng.integers(len(self.photos))]
            top = self.rng.integers(0, photo.shape[0] - self.high + 1)
            left = self.rng.integers(0, photo.shape[1] - self.high + 1)
            crop = photo[top : top + self.high, left : left + self.high]
            if (crop.max(axis=2) > 20).mean() < 0.5:  # mostly outside the retina
                continue
            crop = np.rot90(crop, self.rng.integers(4))
            if self.rng.random() < 0.5:
                crop = crop[:, ::-1]
            crop = np.ascontiguousarray(crop)
            highs.append(crop)
            lows.append(downsample(crop, self.scale))
        return _tensor(lows), _tensor(highs)


def _tensor(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
