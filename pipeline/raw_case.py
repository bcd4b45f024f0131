"""The raw case contract: validate one exam folder and load it.

A raw case folder (DESIGN.md, "Raw case folder")::

    <case>/case.json   {"patient_id": str, "eye": "OD"|"OS", "fundus": "fundus.png",
                        "fa_frames": [{"file": "fa/000.png", "time_s": 14.2}, ...],
                        optional: "acquired" (ISO date), "camera", "notes"}
    <case>/fundus.*    colour fundus photo (png/jpg/tif)
    <case>/fa/*        FA frames (8- or 16-bit greyscale), any count >= 1

Every failure is a :class:`CaseRejected` whose message names the case and the file and says
how to fix it, in one line, and never contains the patient id.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from pipeline.io import ImageLimits, ImageRejected, as_fa_frame, as_fundus, read_image
from pipeline.privacy import redact

__all__ = [
    "CASE_FILE",
    "CaseLimits",
    "CaseRejected",
    "RawCase",
    "case_label",
    "find_case_folders",
    "read_raw_case",
]

CASE_FILE = "case.json"
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff"})
_REQUIRED_KEYS = ("patient_id", "eye", "fundus", "fa_frames")
_OPTIONAL_KEYS = ("acquired", "camera", "notes")
_MAX_CASE_JSON_BYTES = 1_000_000
_MAX_PATIENT_ID_CHARS = 128
_MAX_CAMERA_CHARS = 100


@dataclass(frozen=True)
class CaseLimits:
    """Limits for one raw case.

    Attributes
    ----------
    image : ImageLimits
        Limits applied to every image file.
    max_frames : int
        Largest accepted number of FA frames.
    max_time_s : float
        Largest accepted frame time after injection, in seconds (late phase is ~10-15 min).
    """

    image: ImageLimits = field(default_factory=ImageLimits)
    max_frames: int = 500
    max_time_s: float = 3600.0


class CaseRejected(ValueError):
    """A raw case folder breaks the contract.

    Attributes
    ----------
    case : str
        Display label of the case (see :func:`case_label`).
    file : str
        File inside the case folder that is at fault (``''`` for the folder itself).
    reason : str
        What is wrong and how to fix it.
    """

    def __init__(self, case: str, file: str, reason: str) -> None:
        self.case, self.file, self.reason = case, file, reason
        where = f"{file}: " if file else ""
        super().__init__(f"case '{case}': {where}{reason}")


@dataclass(frozen=True)
class RawCase:
    """One validated exam, pixels loaded.

    Attributes
    ----------
    label : str
        Display label of the case folder (never the patient id).
    patient_id : str
        Raw patient id. Only ingestion may read it; it is never stored.
    eye : {'OD', 'OS'}
    acquired : str
        ISO date as given, or ``''``. Only used for the pseudonym; only the year is stored.
    camera : str
        Camera model as given, or ``''``.
    fundus : (H, W, 3) uint8 ndarray
    fa_frames : tuple of (h, w) uint8 or uint16 ndarray
        All frames share one shape.
    fa_times_s : tuple of float
        Strictly increasing frame times after dye injection, in seconds.
    fa_files : tuple of str
        Frame file names relative to the case folder (POSIX).
    source_sha256 : str
        Digest of case.json's contract fields and every image file's bytes; equal digests mean
        an unchanged case.
    """

    label: str
    patient_id: str
    eye: str
    acquired: str
    camera: str
    fundus: np.ndarray
    fa_frames: tuple[np.ndarray, ...]
    fa_times_s: tuple[float, ...]
    fa_files: tuple[str, ...]
    source_sha256: str


def find_case_folders(source: Path) -> list[Path]:
    """List the case folders under ``source``, sorted by name.

    ``source`` itself is one case when it holds a ``case.json``; otherwise every visible
    sub-folder is a candidate case (a sub-folder without ``case.json`` is later rejected).

    Raises
    ------
    FileNotFoundError
        If ``source`` is not a folder.
    """
    if not source.is_dir():
        raise FileNotFoundError(f"source folder {source} does not exist or is not a folder")
    if (source / CASE_FILE).is_file():
        return [source]
    return sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))


def case_label(case_dir: Path) -> str:
    """Name a case folder in messages without revealing its patient id.

    The folder name is used, unless the folder name contains the patient id from its
    ``case.json`` (some exports name folders after patients); then a digest of the folder
    path stands in.
    """
    name = case_dir.name
    patient_id = _peek_patient_id(case_dir)
    if patient_id and patient_id in name:
        return "folder-" + hashlib.sha256(str(case_dir.absolute()).encode()).hexdigest()[:10]
    return name


def _peek_patient_id(case_dir: Path) -> str:
    try:
        document = json.loads((case_dir / CASE_FILE).read_bytes()[:_MAX_CASE_JSON_BYTES])
    except (OSError, ValueError):
        return ""
    patient_id = document.get("patient_id") if isinstance(document, dict) else None
    return patient_id.strip() if isinstance(patient_id, str) else ""


def read_raw_case(case_dir: Path, *, root: Path, limits: CaseLimits = CaseLimits()) -> RawCase:
    """Validate a raw case folder against the contract and load its images.

    Parameters
    ----------
    case_dir : Path
        The case folder.
    root : Path
        The ingestion source folder; ``case_dir`` (after resolving links) must lie inside it.
    limits : CaseLimits
        Image size, frame count and time limits.

    Returns
    -------
    case : RawCase

    Raises
    ------
    CaseRejected
        On any breach of the contract; the message names the case and file.
    """
    label = case_label(case_dir)
    try:
        return _read(case_dir, label, root, limits)
    except CaseRejected as rejection:
        patient_id = _peek_patient_id(case_dir)
        if patient_id and patient_id in str(rejection):
            raise CaseRejected(
                label, redact(rejection.file, patient_id), redact(rejection.reason, patient_id)
            ) from None
        raise


def _read(case_dir: Path, label: str, root: Path, limits: CaseLimits) -> RawCase:
    folder = case_dir.resolve()
    if not folder.is_relative_to(root.resolve()):
        raise CaseRejected(
            label, "", "the case folder is a link that leaves the source folder; copy the case in"
        )
    document, document_bytes = _read_case_json(case_dir, label)
    patient_id = _patient_id(document, label)
    eye = document["eye"]
    if eye not in ("OD", "OS"):
        raise CaseRejected(label, CASE_FILE, f"eye must be 'OD' or 'OS', got {eye!r}")
    acquired = _acquired(document, label)
    camera = document.get("camera", "")
    if not isinstance(camera, str) or len(camera) > _MAX_CAMERA_CHARS:
        raise CaseRejected(
            label, CASE_FILE, f"camera must be a string of at most {_MAX_CAMERA_CHARS} characters"
        )
    frame_entries = _frame_entries(document, label, limits)

    digest = hashlib.sha256(document_bytes)
    fundus_name = _relative_image_name(document["fundus"], "fundus", label)
    fundus_pixels = _load(folder, fundus_name, label, limits, digest)
    try:
        fundus = as_fundus(fundus_pixels)
    except ImageRejected as error:
        raise CaseRejected(label, fundus_name, str(error)) from None

    frames: list[np.ndarray] = []
    for name, _ in frame_entries:
        try:
            frame = as_fa_frame(_load(folder, name, label, limits, digest))
        except ImageRejected as error:
            raise CaseRejected(label, name, str(error)) from None
        if frames and frame.shape != frames[0].shape:
            raise CaseRejected(
                label,
                name,
                f"size {frame.shape[1]}x{frame.shape[0]} differs from the first frame's "
                f"{frames[0].shape[1]}x{frames[0].shape[0]}; all FA frames of an exam come from "
                "one camera at one size",
            )
        frames.append(frame)
    return RawCase(
        label=label,
        patient_id=patient_id,
        eye=eye,
        acquired=acquired,
        camera=camera,
        fundus=fundus,
        fa_frames=tuple(frames),
        fa_times_s=tuple(time for _, time in frame_entries),
        fa_files=tuple(name for name, _ in frame_entries),
        source_sha256=digest.hexdigest(),
    )


def _read_case_json(case_dir: Path, label: str) -> tuple[dict, bytes]:
    path = case_dir / CASE_FILE
    if not path.is_file():
        raise CaseRejected(label, CASE_FILE, "missing; every case folder needs a case.json")
    if not path.resolve().is_relative_to(case_dir.resolve()):
        raise CaseRejected(
            label, CASE_FILE, "is a link that leaves the case folder; copy the file in"
        )
    if path.stat().st_size > _MAX_CASE_JSON_BYTES:
        raise CaseRejected(
            label,
            CASE_FILE,
            f"larger than {_MAX_CASE_JSON_BYTES} bytes; this is not a case description",
        )
    raw = path.read_bytes()
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise CaseRejected(label, CASE_FILE, "is not UTF-8 text; save it as UTF-8 JSON") from None
    except json.JSONDecodeError as error:
        # JSONDecodeError's message holds a position, never the document text.
        raise CaseRejected(
            label,
            CASE_FILE,
            f"invalid JSON ({error.msg} at line {error.lineno} column {error.colno})",
        ) from None
    if not isinstance(document, dict):
        raise CaseRejected(
            label, CASE_FILE, f"must hold a JSON object, got a JSON {type(document).__name__}"
        )
    missing = [key for key in _REQUIRED_KEYS if key not in document]
    if missing:
        raise CaseRejected(label, CASE_FILE, f"missing required key(s) {', '.join(missing)}")
    contract = {key: document[key] for key in (*_REQUIRED_KEYS, *_OPTIONAL_KEYS) if key in document}
    canonical = json.dumps(contract, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return document, canonical


def _patient_id(document: dict, label: str) -> str:
    value = document["patient_id"]
    if not isinstance(value, str) or not value.strip():
        raise CaseRejected(label, CASE_FILE, "patient_id must be a non-empty string")
    if len(value) > _MAX_PATIENT_ID_CHARS:
        raise CaseRejected(
            label, CASE_FILE, f"patient_id is longer than {_MAX_PATIENT_ID_CHARS} characters"
        )
    return value.strip()


def _acquired(document: dict, label: str) -> str:
    value = document.get("acquired", "")
    if value == "":
        return ""
    if not isinstance(value, str):
        raise CaseRejected(
            label, CASE_FILE, "acquired must be an ISO date string such as '2024-03-01'"
        )
    try:
        dt.date.fromisoformat(value[:10])
    except ValueError:
        raise CaseRejected(label, CASE_FILE, "acquired is not an ISO date (YYYY-MM-DD)") from None
    return value


def _frame_entries(document: dict, label: str, limits: CaseLimits) -> list[tuple[str, float]]:
    entries = document["fa_frames"]
    if not isinstance(entries, list) or not entries:
        raise CaseRejected(label, CASE_FILE, "fa_frames must be a non-empty list of {file, time_s}")
    if len(entries) > limits.max_frames:
        raise CaseRejected(
            label, CASE_FILE, f"{len(entries)} FA frames exceed the limit of {limits.max_frames}"
        )
    parsed: list[tuple[str, float]] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or "file" not in entry or "time_s" not in entry:
            raise CaseRejected(
                label, CASE_FILE, f"fa_frames[{index}] must be an object with 'file' and 'time_s'"
            )
        name = _relative_image_name(entry["file"], f"fa_frames[{index}].file", label)
        time = entry["time_s"]
        if isinstance(time, bool) or not isinstance(time, int | float) or not math.isfinite(time):
            raise CaseRejected(
                label, CASE_FILE, f"fa_frames[{index}].time_s must be a finite number of seconds"
            )
        if not 0.0 <= time <= limits.max_time_s:
            raise CaseRejected(
                label,
                CASE_FILE,
                f"fa_frames[{index}].time_s = {time} is outside 0..{limits.max_time_s:g} s",
            )
        if parsed and time <= parsed[-1][1]:
            raise CaseRejected(
                label,
                CASE_FILE,
                f"fa_frames times are not strictly increasing (frame {index} at {time} s after "
                f"{parsed[-1][1]} s); list frames in acquisition order with their true times",
            )
        if any(name == seen for seen, _ in parsed):
            raise CaseRejected(label, CASE_FILE, f"{name} is listed twice in fa_frames")
        parsed.append((name, float(time)))
    return parsed


def _relative_image_name(value: object, key: str, label: str) -> str:
    if not isinstance(value, str) or not value:
        raise CaseRejected(
            label, CASE_FILE, f"{key} must be a file name relative to the case folder"
        )
    path = PurePosixPath(value.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or ":" in path.parts[0]:
        raise CaseRejected(
            label, CASE_FILE, f"{key} = {value!r} leaves the case folder; use a path inside it"
        )
    if path.suffix.lower() not in _IMAGE_SUFFIXES:
        raise CaseRejected(label, CASE_FILE, f"{key} = {value!r} is not a .png, .jpg or .tif file")
    return str(path)


def _load(
    folder: Path, name: str, label: str, limits: CaseLimits, digest: hashlib._Hash
) -> np.ndarray:
    path = folder / name
    if path.is_symlink() and not path.resolve().is_relative_to(folder):
        raise CaseRejected(label, name, "is a link that leaves the case folder; copy the file in")
    if not path.resolve().is_relative_to(folder):
        raise CaseRejected(
            label, name, "lies outside the case folder (through a linked folder); copy the file in"
        )
    if not path.is_file():
        raise CaseRejected(label, name, "missing; it is listed in case.json but not in the folder")
    try:
        pixels = read_image(path, limits=limits.image)
    except ImageRejected as error:
        raise CaseRejected(label, name, str(error)) from None
    digest.update(name.encode("utf-8"))
    digest.update(path.read_bytes())
    return pixels
