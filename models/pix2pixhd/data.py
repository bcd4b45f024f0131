"""Training pairs of pix2pixHD (A/V mask, fundus photo), and the conversions between arrays and
the generator's [-1, 1] tensors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch
from angioflow.pipeline.anatomy import anatomy_maps, disc_from_vessels, fovea_from_vessels
from angioflow.pipeline.datasets import Split, load_dataset
from angioflow.pipeline.h5_formats import EXPORT
from angioflow.pipeline.mask_structure import resize_av_labels
from angioflow.pipeline.preprocess import square_fov_crop
from angioflow.pipeline.tree_stats import fov_disc

__all__ = [
    "PAIR_COVERAGE",
    "generator_input",
    "label_masks",
    "load_pairs",
    "make_pair",
    "photo_style",
    "photo_uint8",
]

PAIR_COVERAGE = 0.3
"""Share of a pixel a class must cover to be drawn at the pairs' size: thin vessels show."""


def make_pair(
    photo: np.ndarray,
    labels: np.ndarray,
    fov: np.ndarray,
    size: int,
    *,
    coverage: float = PAIR_COVERAGE,
) -> tuple[np.ndarray, np.ndarray]:
    """A training pair at ``size``: the photo and its masks cropped to the FOV, padded square.

    Returns
    -------
    masks : (3, size, size) float32 in {0, 1}: artery, vein, field of view
    photo : (size, size, 3) uint8
    """
    square = square_fov_crop(photo, fov)
    disc = square_fov_crop(fov.astype(np.float32), fov)
    resized_photo = cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA)
    resized_fov = cv2.resize(disc, (size, size), interpolation=cv2.INTER_AREA) >= 0.5
    av = resize_av_labels(labels, fov, size, coverage=coverage)
    return np.concatenate([av, resized_fov[None].astype(np.float32)]), resized_photo


def label_masks(labels: np.ndarray, size: int, *, coverage: float = PAIR_COVERAGE) -> np.ndarray:
    """The generator's masks for square A/V label masks at any size, shrunk as in the pairs.

    Parameters
    ----------
    labels : (N, R, R) uint8, 0 background, 1 artery, 2 vein, 3 crossing; the vessels inside
        the centred field-of-view disc (as sampled masks and square FOV crops are)
    size : int, the generator's side (px)
    coverage : float
        Share of a pixel a class must cover to be drawn: the generator's ``mask_coverage``.

    Returns
    -------
    masks : (N, 3, size, size) float32 in {0, 1}: artery, vein, field of view
    """
    fov = fov_disc(labels.shape[-1])
    disc = cv2.resize(fov.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) >= 0.5
    return np.stack(
        [
            np.concatenate([resize_av_labels(m, fov, size, coverage=coverage), disc[None]]).astype(
                np.float32
            )
            for m in labels
        ]
    )


def generator_input(masks: np.ndarray, *, anatomy: bool = False) -> torch.Tensor:
    """(N, 3, S, S) {0, 1} artery/vein/FOV -> the generator's input in [-1, 1]: the masks, and
    with ``anatomy`` the disc and fovea maps their vessels imply (:mod:`pipeline.anatomy`),
    (N, 5, S, S)."""
    if anatomy:
        masks = np.stack([np.concatenate([m, _anatomy(m)]) for m in masks])
    return torch.from_numpy(np.ascontiguousarray(masks)).float() * 2 - 1


def _anatomy(masks: np.ndarray) -> np.ndarray:
    vessel, fov = (masks[0] > 0) | (masks[1] > 0), masks[2] > 0
    disc = disc_from_vessels(vessel, fov)
    return anatomy_maps(vessel.shape, fov, disc, fovea_from_vessels(vessel, fov, disc))


def load_pairs(
    data_root: Path | None,
    datasets: Sequence[str],
    exports: Sequence[str],
    size: int,
    *,
    coverage: float = PAIR_COVERAGE,
    split: Split = "training",
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs from the public A/V sets' ``split`` (training pairs: their training splits) and
    from export files.

    Returns masks (N, 3, S, S) float32 and photos (N, S, S, 3) uint8.
    """
    masks, photos = [], []
    for name in datasets:
        for record in load_dataset(data_root, name, split):
            m, p = make_pair(record.image, record.av, record.fov, size, coverage=coverage)
            masks.append(m)
            photos.append(p)
    for path in exports:
        with h5py.File(path, "r") as handle:
            EXPORT.check(handle, Path(path))
            for group in handle.values():
                m, p = make_pair(
                    group["fundus"][()],
                    group["av"][()],
                    group["fov"][()] > 0,
                    size,
                    coverage=coverage,
                )
                masks.append(m)
                photos.append(p)
    if not masks:
        raise ValueError("no training pairs: name datasets or export files")
    return np.stack(masks), np.stack(photos)


def photo_style(photos: np.ndarray, fov: np.ndarray) -> np.ndarray:
    """The colour statistics a style-conditioned generator is given (``Pix2PixHDConfig.style``).

    Parameters
    ----------
    photos : (N, S, S, 3) uint8
    fov : (N, S, S) bool

    Returns
    -------
    styles : (N, 6) float32, the mean and standard deviation of R, G and B inside the field of
        view, in [0, 1]
    """
    styles = []
    for photo, inside in zip(photos, fov, strict=True):
        pixels = photo[inside].astype(np.float64) / 255
        styles.append(np.concatenate([pixels.mean(axis=0), pixels.std(axis=0)]))
    return np.asarray(styles, np.float32).reshape(len(photos), 6)


def photo_uint8(photos: torch.Tensor) -> np.ndarray:
    """(N, 3, S, S) generator output in [-1, 1] -> (N, S, S, 3) uint8."""
    return (
        ((photos.permute(0, 2, 3, 1).cpu().numpy() + 1) * 127.5)
        .clip(0, 255)
        .round()
        .astype(np.uint8)
    )
