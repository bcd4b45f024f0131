"""Training data for the A/V graph network: labelled photos at the working scale, random crops."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from angioflow.models.hvgn.net import HVGNConfig
from angioflow.models.vessel.data import rescale_to_fov
from angioflow.pipeline.datasets import training_records

__all__ = [
    "AV_DATASETS",
    "AVTrainingImage",
    "CropSampler",
    "fundus_input",
    "load_av_training_images",
    "phantom_av_training_images",
    "prepare_av_image",
    "resample_av",
]

AV_DATASETS = ("rite", "les-av", "hrf-av")


@dataclass(frozen=True)
class AVTrainingImage:
    """One labelled photo at the model's working scale.

    Attributes
    ----------
    name : str
    image : (H, W, C) float32 ndarray, :func:`fundus_input` (plus FA channels when present)
    vessel : (H, W) bool ndarray, the vessel mask the graph is built on
    av : (H, W) uint8 ndarray, 0 background, 1 artery, 2 vein, 3 crossing or uncertain
    """

    name: str
    image: np.ndarray
    vessel: np.ndarray
    av: np.ndarray


def fundus_input(image: np.ndarray, fov: np.ndarray) -> np.ndarray:
    """Standardise each colour channel inside the field of view; zero outside.

    Arteries and veins differ in colour and brightness, so the channels are kept (not reduced to
    green) and only their per-image offset and spread are removed.

    Parameters
    ----------
    image : (H, W, 3) uint8 or float ndarray, RGB
    fov : (H, W) bool ndarray

    Returns
    -------
    (H, W, 3) float32 ndarray
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB photo, got shape {image.shape}")
    if not fov.any():
        raise ValueError("the field of view is empty")
    pixels = image.astype(np.float32)
    inside = pixels[fov]
    standardised = (pixels - inside.mean(axis=0)) / (inside.std(axis=0) + 1e-3)
    return np.where(fov[..., None], standardised, 0.0).astype(np.float32)


def resample_av(
    vessel: np.ndarray, av: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Resize a vessel mask and its A/V labels to ``size`` (width, height).

    Area averaging keeps thin vessels when shrinking (a pixel is vessel when a quarter of it is);
    each vessel pixel takes the label class covering most of it.

    Returns
    -------
    vessel : (h, w) bool ndarray
    av : (h, w) uint8 ndarray
    """
    if vessel.shape[::-1] == tuple(size):
        return vessel.astype(bool), av.astype(np.uint8)
    fraction = cv2.resize(vessel.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    shares = np.stack(
        [
            cv2.resize((av == label).astype(np.float32), size, interpolation=cv2.INTER_AREA)
            for label in (1, 2, 3)
        ]
    )
    resized_vessel = fraction >= 0.25
    labels = np.where(shares.max(axis=0) > 0, shares.argmax(axis=0) + 1, 0).astype(np.uint8)
    return resized_vessel, np.where(resized_vessel, labels, 0).astype(np.uint8)


def prepare_av_image(
    name: str,
    image: np.ndarray,
    vessel: np.ndarray,
    av: np.ndarray,
    fov: np.ndarray,
    *,
    model: HVGNConfig,
) -> AVTrainingImage:
    """Bring a labelled photo to ``model``'s working scale and compute its input channels."""
    resized, resized_fov, _ = rescale_to_fov(image, fov, fov_diameter_px=model.fov_diameter_px)
    small_vessel, small_av = resample_av(vessel, av, resized_fov.shape[::-1])
    small_vessel &= resized_fov
    return AVTrainingImage(
        name,
        fundus_input(resized, resized_fov),
        small_vessel,
        np.where(small_vessel, small_av, 0).astype(np.uint8),
    )


def load_av_training_images(
    data_root: Path, datasets: Sequence[str], *, model: HVGNConfig
) -> list[AVTrainingImage]:
    """Training splits of RITE, LES-AV and HRF-AV at the working scale (never a test split)."""
    records = training_records(
        data_root, datasets, allowed=AV_DATASETS, purpose="A/V", listing=str(AV_DATASETS)
    )
    return [prepare_av_image(r.name, r.image, r.vessel, r.av, r.fov, model=model) for r in records]


def phantom_av_training_images(
    n_cases: int, *, seed: int, model: HVGNConfig, size: tuple[int, int] = (584, 876)
) -> list[AVTrainingImage]:
    """Phantom fundus photos with their A/V truth (crossings labelled 3)."""
    from angioflow.pipeline.phantom import PhantomConfig, case_seed, generate_case

    config = PhantomConfig(size=size, n_frames=2)
    images = []
    for index in range(n_cases):
        case = generate_case(case_seed(seed, index), config)
        av = case.av_labels
        images.append(
            prepare_av_image(
                f"phantom/{seed}/{index}",
                case.fundus,
                case.vessel,
                av,
                case.fov,
                model=model,
            )
        )
    return images


class CropSampler:
    """Random augmented crops: flips, quarter turns, brightness, contrast and colour balance.

    Geometry is changed only by exact pixel permutations, so the vessel mask and labels stay
    exact; intensity changes are small because colour is what tells arteries from veins.
    Brightness shifts touch only the three standardised colour channels; the others (local
    colour contrast, FA) are only scaled.

    Parameters
    ----------
    images : list of AVTrainingImage
    crop : int
        Crop side in pixels (images smaller than this are zero-padded).
    seed : int
    """

    def __init__(self, images: list[AVTrainingImage], *, crop: int = 256, seed: int = 0) -> None:
        if not images:
            raise ValueError("the sampler needs at least one training image")
        self.images, self.crop = images, crop
        self.rng = np.random.default_rng(seed)
        self._vessels = [np.argwhere(im.vessel) for im in images]
        # every source (name prefix) gets an equal share of crops
        sources = [im.name.split("/")[0] for im in images]
        weights = np.ones(len(images))
        for source in set(sources):
            members = [i for i, s in enumerate(sources) if s == source]
            weights[members] /= len(members)
        self._weights = weights / weights.sum()

    def batch(self, size: int) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """Sample ``size`` crops.

        Returns
        -------
        x : (size, C, crop, crop) float32 ndarray
        vessels : list of (crop, crop) bool ndarrays
        labels : list of (crop, crop) uint8 ndarrays (0-3)
        """
        channels = self.images[0].image.shape[2]
        x = np.zeros((size, channels, self.crop, self.crop), np.float32)
        vessels, labels = [], []
        for i, index in enumerate(self.rng.choice(len(self.images), size, p=self._weights)):
            image, vessel, av = self._crop(self.images[index], self._vessels[index])
            x[i] = self._intensity(image).transpose(2, 0, 1)
            vessels.append(vessel)
            labels.append(av)
        return x, vessels, labels

    def _crop(
        self, record: AVTrainingImage, vessel_pixels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng, crop = self.rng, self.crop
        height, width = record.vessel.shape
        row, col = vessel_pixels[rng.integers(len(vessel_pixels))]
        top = int(np.clip(row - crop // 2, 0, max(0, height - crop)))
        left = int(np.clip(col - crop // 2, 0, max(0, width - crop)))
        window = (slice(top, top + crop), slice(left, left + crop))
        parts = [record.image[window], record.vessel[window], record.av[window]]
        turns = int(rng.integers(4))
        flip = rng.random() < 0.5
        out = []
        for part in parts:
            padded = np.zeros((crop, crop, *part.shape[2:]), part.dtype)
            padded[: part.shape[0], : part.shape[1]] = part
            padded = np.rot90(padded, turns)
            out.append(np.ascontiguousarray(padded[:, ::-1] if flip else padded))
        return out[0], out[1], out[2]

    def _intensity(self, image: np.ndarray) -> np.ndarray:
        rng = self.rng
        scale = rng.uniform(0.85, 1.15) * rng.uniform(0.95, 1.05, image.shape[2])
        shift = rng.uniform(-0.2, 0.2) + rng.uniform(-0.05, 0.05, image.shape[2])
        shift[3:] = 0.0  # colour channels only: FA channels keep their dye brightness
        inside = np.any(image != 0, axis=2, keepdims=True)
        return np.where(inside, image * scale + shift, 0.0).astype(np.float32)
