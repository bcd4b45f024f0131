"""Training EDSR: random crops of real fundus photos, down-sampled x4 (bicubic, antialiased),
L1 loss, checkpoints that resume, a JSON log."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from angioflow.models.checkpoints import RunFolder, adamw_one_cycle
from angioflow.models.edsr import EDSR, EDSRConfig
from angioflow.pipeline.datasets import load_dataset
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "EDSRTrainingConfig",
    "PhotoCrops",
    "crop_to_fov",
    "downsample",
    "load_training_photos",
    "train_edsr",
]


class EDSRTrainingConfig(BaseModel):
    """Everything that defines an EDSR training run (saved next to its checkpoints)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: EDSRConfig = EDSRConfig()
    datasets: tuple[str, ...] = ("drive", "les-av", "hrf-av")  # training splits only
    low_patch: int = Field(32, ge=8)  # low-resolution crop side, px
    batch_size: int = Field(16, ge=1)
    steps: int = Field(3000, ge=1)
    learning_rate: float = Field(2e-4, gt=0)
    checkpoint_every: int = Field(250, ge=1)
    seed: int = 0
    threads: int = Field(2, ge=1)


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


def train_edsr(
    config: EDSRTrainingConfig,
    photos: list[np.ndarray],
    out_dir: Path,
    *,
    resume: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> EDSR:
    """Train (or continue) EDSR on ``photos``; weights land in ``out_dir/weights``."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = EDSR(config.model).to(device)
    optimiser, schedule = adamw_one_cycle(model, config.learning_rate, 0.0, config.steps)
    run = RunFolder(out_dir, config, device)
    start = run.resume(model, optimiser, schedule, rng, enabled=resume)
    crops = PhotoCrops(photos, config.low_patch, config.model.scale, rng)
    smoothed = None
    model.train()
    for step in range(start, config.steps):
        low, high = (t.to(device) for t in crops.batch(config.batch_size))
        loss = torch.nn.functional.l1_loss(model(low), high)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        value = float(loss.detach())
        smoothed = value if smoothed is None else 0.98 * smoothed + 0.02 * value
        done = step + 1
        if done % config.checkpoint_every == 0 or done == config.steps:
            run.checkpoint(done, smoothed, model, optimiser, schedule, rng)
        if on_step is not None:
            on_step(done, value)
    model.eval()
    model.save(out_dir / "weights")
    return model
