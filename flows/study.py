"""Blinded real-vs-synthetic reading study (the paper's Table I): create the study folder,
keep the answer key apart, and report readers' accuracy per category.

Layout::

    STUDY/study.json          seed, image count, size, sha256 of the answer key (no categories
                              per image)
    STUDY/images/0001.png     the images in presentation order, all the same size and
                              encoding, no metadata
    STUDY/answers/<reader>.jsonl   one line per answer, appended and fsynced on every click
    STUDY.key/key.json        image -> category and source digest; never served to readers

Every trace that could tell categories apart is removed: names are presentation indices after
a seeded shuffle, every image is cropped to its field of view, padded square, resized to the same
size and written as an 8-bit RGB PNG with the same settings and no metadata.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import h5py
import numpy as np
from angioflow.pipeline.errors import AngioflowError
from angioflow.pipeline.h5_formats import EXPORT, SYNTHETIC_SET
from angioflow.pipeline.study_stats import fleiss_kappa, wilson_interval
from PIL import Image

__all__ = [
    "REAL",
    "StudyError",
    "create_study",
    "key_folder",
    "read_answers",
    "study_report",
    "valid_reader",
]

REAL = "real"
_READER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class StudyError(AngioflowError, ValueError):
    """A study that cannot be created, served or reported as asked; the message names the
    file or option and the fix."""


def key_folder(study: Path) -> Path:
    """The answer key's folder, beside (not inside) the study folder."""
    return study.with_name(study.name + ".key")


@dataclass(frozen=True)
class _Source:
    category: str
    photos: list[tuple[str, np.ndarray]]  # (source reference, RGB photo)


def _square_on_fov(photo: np.ndarray, size: int) -> np.ndarray:
    """Crop to the field of view, pad square with black, resize to ``size``."""
    from angioflow.pipeline.preprocess import fov_mask, square_fov_crop

    fov = fov_mask(photo, modality="fundus")
    if not fov.any():  # no illuminated disc found: keep the whole photo
        fov = np.ones(photo.shape[:2], bool)
    square = square_fov_crop(photo, fov)
    interpolation = cv2.INTER_AREA if len(square) > size else cv2.INTER_CUBIC
    return cv2.resize(square, (size, size), interpolation=interpolation)


def _real_photos(source: Path) -> list[tuple[str, np.ndarray]]:
    from angioflow.pipeline.io import ImageRejected, as_fundus, read_image

    if source.is_file() and source.suffix in (".h5", ".hdf5"):
        with _open_h5(source) as handle:
            EXPORT.check(handle, source)
            return [(f"{source.name}:{name}", handle[name]["fundus"][()]) for name in handle]
    if not source.is_dir():
        raise StudyError(f"real source {source} is neither an export (.h5) nor a folder of photos")
    photos = []
    for path in sorted(source.iterdir()):
        if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff"):
            try:
                photos.append((path.name, as_fundus(read_image(path))))
            except (ImageRejected, ValueError) as error:
                raise StudyError(
                    f"real photo {path}: {error}; replace it or move it out of {source}"
                ) from error
    return photos


def _synthetic_photos(path: Path) -> list[tuple[str, np.ndarray]]:
    with _open_h5(path) as handle:
        SYNTHETIC_SET.check(handle, path)
        images = handle["images"]
        return [(f"{path.name}:{index}", images[index]) for index in range(len(images))]


def _open_h5(path: Path) -> h5py.File:
    """Open an HDF5 file for reading; StudyError (not h5py's OSError) when it cannot be."""
    if not path.is_file():
        raise StudyError(f"{path} does not exist; pass a file written by angioflow")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise StudyError(
            f"{path} is not a readable HDF5 file ({error}); pass a file written "
            "by angioflow export or generate"
        ) from error


def _digest(photo: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(photo).tobytes()).hexdigest()


def create_study(
    real: Path,
    synthetic: dict[str, Path],
    out: Path,
    *,
    per_category: int,
    seed: int = 0,
    size: int = 512,
) -> dict[str, Any]:
    """Write a study folder and its separate answer key.

    Parameters
    ----------
    real : Path
        Folder of real photos, or an export of approved cases (.h5).
    synthetic : dict
        Category name -> synthetic set (.h5 from ``angioflow generate``).
    out : Path
        Study folder (must not exist); the key goes to ``<out>.key``.
    per_category : int
        Images drawn (without replacement, seeded) from each category.

    Raises
    ------
    StudyError
        If a category holds fewer images than asked, a name is reused, ``out`` exists or a
        source cannot be read.
    """
    if out.exists() or key_folder(out).exists():
        raise StudyError(f"{out} (or its key) exists; a study is never overwritten, name a new one")
    if REAL in synthetic:
        raise StudyError(f"'{REAL}' is the real category; name the synthetic sets otherwise")
    sources = [_Source(REAL, _real_photos(real))]
    sources += [_Source(name, _synthetic_photos(path)) for name, path in synthetic.items()]
    rng = np.random.default_rng(seed)
    drawn: list[tuple[str, str, np.ndarray]] = []
    for source in sources:
        if len(source.photos) < per_category:
            raise StudyError(
                f"category '{source.category}' holds {len(source.photos)} images, "
                f"{per_category} asked; lower --per-category"
            )
        for index in sorted(rng.choice(len(source.photos), per_category, replace=False)):
            reference, photo = source.photos[index]
            drawn.append((source.category, reference, photo))
    order = rng.permutation(len(drawn))
    (out / "images").mkdir(parents=True)
    (out / "answers").mkdir()
    key_folder(out).mkdir()
    key: dict[str, dict[str, str]] = {}
    for position, index in enumerate(order, start=1):
        category, reference, photo = drawn[index]
        image_id = f"{position:04d}"
        picture = _square_on_fov(np.asarray(photo, np.uint8), size)
        Image.fromarray(picture, "RGB").save(out / "images" / f"{image_id}.png", compress_level=6)
        key[image_id] = {
            "category": category,
            "source_sha256": _digest(photo),
            "source": hashlib.sha256(reference.encode()).hexdigest()[:16],
        }
    key_text = json.dumps(
        {"categories": [s.category for s in sources], "images": key}, indent=2, sort_keys=True
    )
    (key_folder(out) / "key.json").write_text(key_text + "\n")
    study = {
        "images": len(key),
        "size": size,
        "seed": seed,
        "per_category": per_category,
        "key_sha256": hashlib.sha256((key_text + "\n").encode()).hexdigest(),
    }
    (out / "study.json").write_text(json.dumps(study, indent=2) + "\n")
    return study


def valid_reader(name: str) -> str:
    """A reader name usable as a file name (letters, digits, '_', '-', '.'); else StudyError."""
    if not _READER.match(name or ""):
        raise StudyError(
            f"reader name {name!r}: use letters, digits, '_', '-' or '.' (up to 64 characters)"
        )
    return name


def read_answers(study: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """reader -> image id -> last answer (``{"answer": "real"|"synthetic", "confidence"}``).

    Lines that are not a complete answer (cut by a crash mid-write, or damaged) are skipped.
    """
    answers: dict[str, dict[str, dict[str, Any]]] = {}
    for path in sorted((study / "answers").glob("*.jsonl")):
        latest: dict[str, dict[str, Any]] = {}
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if (
                isinstance(record, dict)
                and isinstance(record.get("image"), str)
                and record.get("answer") in ("real", "synthetic")
            ):
                latest[record["image"]] = record
        answers[path.stem] = latest
    return answers


def _load_key(study: Path, key_dir: Path | None) -> dict[str, Any]:
    path = (key_dir or key_folder(study)) / "key.json"
    if not (study / "study.json").is_file():
        raise StudyError(f"{study} is not a study folder (no study.json)")
    if not path.is_file():
        raise StudyError(f"answer key {path} is missing; pass its folder with --key")
    text = path.read_text(encoding="utf-8")
    try:
        expected = json.loads((study / "study.json").read_text())["key_sha256"]
    except (ValueError, KeyError, TypeError) as error:
        raise StudyError(
            f"{study / 'study.json'} is damaged ({error}); restore it from a copy"
        ) from error
    if hashlib.sha256(text.encode()).hexdigest() != expected:
        raise StudyError(
            f"{path} does not match the study's key_sha256: it was changed or is "
            "another study's key"
        )
    return json.loads(text)


def _accuracy_row(correct: int, total: int, called_real: int) -> dict[str, Any]:
    """Accuracy and share called real; with no answer they are null (JSON has no NaN) and a
    note says why. The Wilson interval of no trials is the whole range [0, 1]."""
    low, high = wilson_interval(correct, total)
    row: dict[str, Any] = {
        "n": total,
        "accuracy": correct / total if total else None,
        "ci_low": low,
        "ci_high": high,
        "called_real": called_real / total if total else None,
    }
    if not total:
        row["note"] = "no answers for this category"
    return row


def study_report(study: Path, key_dir: Path | None = None) -> dict[str, Any]:
    """Accuracy per category and reader (an answer is correct when it names the image's
    kind: real for the real category, synthetic for the others), 95 % Wilson intervals, the
    share called real, and Fleiss' kappa over images every reader answered.

    The report is valid JSON: a figure that cannot be computed (no answers in a category,
    kappa of fewer than two readers) is null with a ``note`` / ``fleiss_kappa_note`` saying why.

    Raises
    ------
    StudyError
        If the study folder or its key is missing, damaged or do not belong together.
    """
    key = _load_key(study, key_dir)
    truth = {image: entry["category"] for image, entry in key["images"].items()}
    answers = read_answers(study)
    readers = sorted(answers)
    table: dict[str, dict[str, Any]] = {}
    for category in key["categories"]:
        row: dict[str, Any] = {}
        pooled = [0, 0, 0]
        for reader in readers:
            given = [
                a["answer"] for image, a in answers[reader].items() if truth.get(image) == category
            ]
            correct = sum((g == REAL) == (category == REAL) for g in given)
            row[reader] = _accuracy_row(correct, len(given), given.count(REAL))
            pooled = [pooled[0] + correct, pooled[1] + len(given), pooled[2] + given.count(REAL)]
        row["all readers"] = _accuracy_row(*pooled)
        table[category] = row
    shared = [i for i in truth if all(i in answers[r] for r in readers)]
    kappa, why = None, "needs at least 2 readers who rated the same images"
    if len(readers) >= 2 and shared:
        counts = [
            [
                sum(answers[r][i]["answer"] == REAL for r in readers),
                sum(answers[r][i]["answer"] != REAL for r in readers),
            ]
            for i in shared
        ]
        kappa = fleiss_kappa(counts)
        if math.isnan(kappa):
            kappa, why = None, "undefined: every answer names the same kind"
    report = {
        "readers": readers,
        "categories": key["categories"],
        "table": table,
        "fleiss_kappa": kappa,
        "images_rated_by_all": len(shared),
        "interval": "Wilson score, 95 %",
    }
    if kappa is None:
        report["fleiss_kappa_note"] = why
    return report
