"""Readers for the public labelled retinal datasets in ``../shared/data`` (never copied here).

Each reader returns :class:`LabelledImage` records: the colour photo, its binary vessel truth,
its field-of-view mask and, where the dataset has one, an artery/vein label mask in angioflow's
class indices (:mod:`pipeline.av_encoding`: 0 background, 1 artery, 2 vein, 3 crossing or
uncertain), decoded from the datasets' RGB annotations by :func:`av_labels_from_rgb`.

References
----------
.. [1] DRIVE: Staal et al., IEEE TMI 23(4), 2004.
.. [2] RITE: Hu, Abramoff, Garvin, MICCAI 2013.
.. [3] LES-AV: Orlando et al., MICCAI 2018.
.. [4] HRF: Budai et al., Int. J. Biomed. Imaging 2013; HRF-AV labels: Hemelings et al., CMIG 2019.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from angioflow.pipeline.av_encoding import av_labels_from_rgb
from PIL import Image

__all__ = ["LabelledImage", "av_labels_from_rgb", "load_dataset", "training_records", "DATASETS"]

DATASETS = ("drive", "rite", "les-av", "hrf-av")
Split = Literal["training", "test"]


@dataclass(frozen=True)
class LabelledImage:
    """One labelled photo.

    Attributes
    ----------
    name : str
        ``<dataset>/<split>/<image stem>``.
    image : (H, W, 3) uint8 ndarray
    vessel : (H, W) bool ndarray
    fov : (H, W) bool ndarray
    av : (H, W) uint8 ndarray or None
        0 background, 1 artery, 2 vein, 3 crossing or uncertain.
    """

    name: str
    image: np.ndarray
    vessel: np.ndarray
    fov: np.ndarray
    av: np.ndarray | None = None


def _read(path: Path, mode: str | None = None) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; see the dataset's SOURCE.txt")
    with Image.open(path) as image:
        return np.asarray(image.convert(mode) if mode else image)


def _first(folder: Path, stem: str) -> Path:
    matches = sorted(p for p in folder.glob(f"{stem}*") if p.is_file())
    if not matches:
        raise FileNotFoundError(f"no file for {stem!r} in {folder}")
    return matches[0]


def load_dataset(
    root: Path, name: str, split: Split, *, limit: int | None = None
) -> list[LabelledImage]:
    """Load one split of a dataset from its folder in ``../shared/data``.

    Parameters
    ----------
    root : Path
        The data folder holding ``DRIVE/``, ``RITE/``, ``LES-AV/``, ``HRF-AV/``.
    name : {'drive', 'rite', 'les-av', 'hrf-av'}
    split : {'training', 'test'}
        HRF-AV holds only its training split here.
    limit : int, optional
        Load only the first ``limit`` images (sorted by name).

    Returns
    -------
    images : list of LabelledImage
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    if split not in ("training", "test"):
        raise ValueError(f"split must be 'training' or 'test', got {split!r}")
    loader = {"drive": _drive, "rite": _rite, "les-av": _les_av, "hrf-av": _hrf_av}[name]
    return loader(root, split, limit)


def training_records(
    root: Path, names: Sequence[str], *, allowed: Sequence[str], purpose: str, listing: str
) -> Iterator[LabelledImage]:
    """The training splits of ``names``, dataset by dataset (never a test split).

    Parameters
    ----------
    root : Path
        As :func:`load_dataset`.
    names : sequence of str
        The datasets asked for.
    allowed : sequence of str
        The datasets this training may use.
    purpose, listing : str
        What the training is and how ``allowed`` reads, for the error message.

    Raises
    ------
    ValueError
        When a name is not in ``allowed`` (raised as that dataset's turn comes).
    """
    for name in names:
        if name not in allowed:
            raise ValueError(f"{purpose} training datasets are {listing}; got {name!r}")
        yield from load_dataset(root, name, "training")


def _drive(root: Path, split: Split, limit: int | None) -> list[LabelledImage]:
    folder = root / "DRIVE" / split
    stems = sorted(p.name.split("_")[0] for p in (folder / "images").glob("*.tif"))[:limit]
    return [
        LabelledImage(
            name=f"drive/{split}/{stem}",
            image=_read(_first(folder / "images", f"{stem}_"), "RGB"),
            vessel=_read(_first(folder / "1st_manual", f"{stem}_manual1"), "L") > 127,
            fov=_read(_first(folder / "mask", f"{stem}_"), "L") > 127,
        )
        for stem in stems
    ]


def _rite(root: Path, split: Split, limit: int | None) -> list[LabelledImage]:
    manual = root / "RITE" / split / "1st_manual"
    records = []
    for record in _drive(root, split, limit):
        stem = record.name.rsplit("/", 1)[1]
        av_file = _first(manual, f"{stem}_")
        records.append(_with_av(f"rite/{split}/{stem}", record.image, av_file, fov=record.fov))
    return records


def _les_av(root: Path, split: Split, limit: int | None) -> list[LabelledImage]:
    folder = root / "LES-AV" / split
    vessel_folder = next(p for p in (folder / "2st_manual", folder / "2nd_manual") if p.is_dir())
    stems = sorted(p.stem for p in (folder / "images").glob("*.png"))[:limit]
    return [
        _with_av(
            f"les-av/{split}/{stem}",
            _read(folder / "images" / f"{stem}.png", "RGB"),
            folder / "1st_manual" / f"{stem}.png",
            fov=_read(_first(folder / "mask", f"{stem}_mask"), "L") > 0,
            vessel=_read(vessel_folder / f"{stem}.png", "L") > 127,
        )
        for stem in stems
    ]


def _hrf_av(root: Path, split: Split, limit: int | None) -> list[LabelledImage]:
    folder = root / "HRF-AV" / split
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is absent (only HRF-AV's training split is stored)")
    stems = sorted(p.stem for p in (folder / "images").iterdir() if p.is_file())[:limit]
    # HRF's binary vessel truth is not stored: its vessels are the A/V-labelled pixels.
    return [
        _with_av(
            f"hrf-av/{split}/{stem}",
            _read(_first(folder / "images", f"{stem}."), "RGB"),
            folder / "1st_manual" / f"{stem}_AVmanual.png",
            fov=_read(folder / "mask" / f"{stem}_mask.tif", "L") > 127,
        )
        for stem in stems
    ]


def _with_av(
    name: str,
    image: np.ndarray,
    av_file: Path,
    *,
    fov: np.ndarray,
    vessel: np.ndarray | None = None,
) -> LabelledImage:
    """A record whose A/V truth is the RGB annotation ``av_file``; without a binary vessel truth
    (RITE, HRF-AV), the vessels are the A/V-labelled pixels."""
    av = av_labels_from_rgb(_read(av_file, "RGB"))
    return LabelledImage(name, image, av > 0 if vessel is None else vessel, fov, av)
