"""The raw case contract: validate one exam folder and load it.

A raw case folder (DESIGN.md, "Raw case folder")::

    <case>/case.json   {"patient_id": str, "eye": "OD"|"OS", "fundus": "fundus.png",
                        "fa_frames": [{"file": "fa/000.png", "time_s": 14.2}, ...],
                        optional: "acquired" (ISO date), "camera", "notes"}
    <case>/fundus.*    colour fundus photo (png/jpg/tif)
    <case>/fa/*        FA frames (8- or 16-bit greyscale), any count >= 1

Every failure is a :class:`CaseRejected` whose message names the case and the file and says
how to fix it, in one line, and never contains the patient id. A case folder's name is shown only
once its case.json has been read and the name is known not to hold the patient id (in any letter
case or spelling); otherwise the folder is shown by its position, ``folder #7 (name withheld)``.

Reading is two steps so that memory can be reserved before pixels are decoded:
:func:`check_raw_case` validates case.json and every image header (nothing decoded) and says how
many bytes the decoded images take; :func:`load_raw_case` decodes them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from angioflow.pipeline.display import printable
from angioflow.pipeline.io import (
    ImageHeader,
    ImageLimits,
    ImageRejected,
    as_fa_frame,
    as_fundus,
    read_header,
    read_image,
)
from angioflow.pipeline.privacy import contains_id, redact

from .errors import AngioflowError

__all__ = [
    "CASE_FILE",
    "CaseLimits",
    "CasePlan",
    "CaseRejected",
    "RawCase",
    "case_label",
    "check_raw_case",
    "find_case_folders",
    "load_raw_case",
    "peek_exam",
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
    max_case_bytes : int
        Largest accepted size in memory of all of a case's images once decoded, in bytes
        (checked from the headers before any pixel is decoded). The default, 1 GiB, holds
        e.g. 80 ultra-widefield frames of 3900x3072 8-bit pixels.
    """

    image: ImageLimits = field(default_factory=ImageLimits)
    max_frames: int = 500
    max_time_s: float = 3600.0
    max_case_bytes: int = 1 << 30

    def __post_init__(self) -> None:
        if self.max_frames < 1 or self.max_time_s <= 0 or self.max_case_bytes < 1:
            raise ValueError(f"case limits must be positive, got {self!r}")


class CaseRejected(AngioflowError, ValueError):
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
        # Every part can hold text from the data (names, case.json values): one safe line.
        case, file, reason = printable(case), printable(file), printable(reason)
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

    The folder name is used (control characters escaped) only when the folder's case.json
    gives a patient id and the name does not hold it in any letter case or spelling
    (:func:`pipeline.privacy.contains_id`). Otherwise, as when case.json is missing or does not
    parse (the id is then unknown), the folder is named by its position among the visible
    folders of its parent, sorted by name: ``folder #7 (name withheld)``.
    """
    name = case_dir.name
    patient_id = peek_exam(case_dir)[0]
    if patient_id and not contains_id(name, patient_id):
        return printable(name)
    return _withheld_label(case_dir)


def _withheld_label(case_dir: Path) -> str:
    try:
        siblings = find_case_folders(case_dir.parent) if case_dir.parent != case_dir else []
    except OSError:
        siblings = []
    names = [p.name for p in siblings]
    if case_dir.name in names:
        return f"folder #{names.index(case_dir.name) + 1} (name withheld)"
    digest = hashlib.sha256(str(case_dir.absolute()).encode("utf-8")).hexdigest()[:10]
    return f"folder {digest} (name withheld)"


def peek_exam(case_dir: Path) -> tuple[str, str, str]:
    """``(patient_id, eye, acquired)`` as case.json gives them, ``''`` for whatever is absent
    or unreadable; never raises and never blocks (only a regular case.json inside the folder is
    read). A numeric patient id is returned as its digits, so it can be searched for."""
    path = case_dir / CASE_FILE
    try:
        if not path.resolve().is_relative_to(case_dir.resolve()):
            return "", "", ""
        status = path.stat()
        if not stat.S_ISREG(status.st_mode) or status.st_size > _MAX_CASE_JSON_BYTES:
            return "", "", ""
        document = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return "", "", ""
    if not isinstance(document, dict):
        return "", "", ""
    value = document.get("patient_id")
    if isinstance(value, str):
        patient_id = value.strip()
    elif isinstance(value, int) and not isinstance(value, bool):
        patient_id = str(value)
    elif isinstance(value, float) and value.is_integer():
        patient_id = str(int(value))
    else:
        patient_id = ""
    eye, acquired = document.get("eye"), document.get("acquired", "")
    return (
        patient_id,
        eye if isinstance(eye, str) else "",
        acquired if isinstance(acquired, str) else "",
    )


@dataclass(frozen=True)
class CasePlan:
    """A raw case whose case.json and image headers passed the contract; nothing decoded.

    Attributes
    ----------
    label : str
        Display label of the case folder (never the patient id).
    folder : Path
        The case folder, links resolved.
    patient_id, eye, acquired, camera : str
        As in :class:`RawCase`.
    fundus_file : str
        Fundus photo's name relative to the folder (POSIX).
    fa_files : tuple of str
        FA frame names relative to the folder (POSIX), in acquisition order.
    fa_times_s : tuple of float
        Strictly increasing frame times, seconds.
    decoded_bytes : int
        Memory the decoded images will take, bytes (from the headers).
    document_sha256 : str
        Digest of case.json's contract fields.
    """

    label: str
    folder: Path
    patient_id: str
    eye: str
    acquired: str
    camera: str
    fundus_file: str
    fa_files: tuple[str, ...]
    fa_times_s: tuple[float, ...]
    decoded_bytes: int
    document_bytes: bytes = field(repr=False)


def read_raw_case(case_dir: Path, *, root: Path, limits: CaseLimits = CaseLimits()) -> RawCase:
    """Validate a raw case folder against the contract and load its images.

    Equivalent to ``load_raw_case(check_raw_case(case_dir, root=root, limits=limits),
    limits=limits)``.

    Parameters
    ----------
    case_dir : Path
        The case folder.
    root : Path
        The ingestion source folder; ``case_dir`` (after resolving links) must lie inside it.
    limits : CaseLimits
        Image size, frame count, time and decoded-size limits.

    Returns
    -------
    case : RawCase

    Raises
    ------
    CaseRejected
        On any breach of the contract; the message names the case and file.
    """
    return load_raw_case(check_raw_case(case_dir, root=root, limits=limits), limits=limits)


def check_raw_case(case_dir: Path, *, root: Path, limits: CaseLimits = CaseLimits()) -> CasePlan:
    """Validate case.json and every image header of a raw case folder; decode no pixel.

    Parameters
    ----------
    case_dir : Path
        The case folder.
    root : Path
        The ingestion source folder; ``case_dir`` (after resolving links) must lie inside it.
    limits : CaseLimits
        Image size, frame count, time and decoded-size limits.

    Returns
    -------
    plan : CasePlan
        What :func:`load_raw_case` will decode, and how many bytes that takes.

    Raises
    ------
    CaseRejected
        On any breach of the contract found without decoding pixels, the total decoded size
        above ``limits.max_case_bytes`` included; the message names the case and file.
    """
    label = case_label(case_dir)
    with _redacted(peek_exam(case_dir)[0], label):
        return _check(case_dir, label, root, limits)


def load_raw_case(plan: CasePlan, *, limits: CaseLimits = CaseLimits()) -> RawCase:
    """Decode the images of a checked case (:func:`check_raw_case`).

    Returns
    -------
    case : RawCase

    Raises
    ------
    CaseRejected
        Truncated or corrupt pixels, the wrong modality, a blank image, frames whose decoded
        sizes differ, or files changed since the check.
    """
    with _redacted(plan.patient_id, plan.label):
        return _load_pixels(plan, limits)


@contextlib.contextmanager
def _redacted(patient_id: str, label: str) -> Iterator[None]:
    """Re-raise a :class:`CaseRejected` with the patient id removed from its text."""
    try:
        yield
    except CaseRejected as error:
        if patient_id and contains_id(f"{error.file} {error.reason}", patient_id):
            raise CaseRejected(
                label, redact(error.file, patient_id), redact(error.reason, patient_id)
            ) from None
        raise


def _check(case_dir: Path, label: str, root: Path, limits: CaseLimits) -> CasePlan:
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
    fundus_name = _relative_image_name(document["fundus"], "fundus", label)

    decoded = _header(folder, fundus_name, label, limits).decoded_bytes
    first = None
    for name, _ in frame_entries:
        header = _header(folder, name, label, limits)
        if first is not None and (header.width, header.height) != (first.width, first.height):
            raise CaseRejected(
                label,
                name,
                _size_differs(header.width, header.height, first.width, first.height),
            )
        first = first or header
        decoded += header.decoded_bytes
    if decoded > limits.max_case_bytes:
        raise CaseRejected(
            label,
            "",
            f"its {1 + len(frame_entries)} images take {_mib(decoded)} MiB once decoded, above "
            f"the limit of {_mib(limits.max_case_bytes)} MiB per case; if the exam is genuine, "
            "raise the limit (ingest --max-case-mb, or max_case_mb in the catalog's raw_exams)",
        )
    return CasePlan(
        label=label,
        folder=folder,
        patient_id=patient_id,
        eye=eye,
        acquired=acquired,
        camera=camera,
        fundus_file=fundus_name,
        fa_files=tuple(name for name, _ in frame_entries),
        fa_times_s=tuple(time for _, time in frame_entries),
        decoded_bytes=decoded,
        document_bytes=document_bytes,
    )


def _mib(size: int) -> str:
    return f"{size / (1 << 20):,.0f}"


def _size_differs(width: int, height: int, first_width: int, first_height: int) -> str:
    return (
        f"size {width}x{height} differs from the first frame's {first_width}x{first_height}; "
        "all FA frames of an exam come from one camera at one size"
    )


def _load_pixels(plan: CasePlan, limits: CaseLimits) -> RawCase:
    label, folder = plan.label, plan.folder
    digest = hashlib.sha256(plan.document_bytes)
    fundus_pixels = _load(folder, plan.fundus_file, label, limits, digest)
    try:
        fundus = as_fundus(fundus_pixels)
    except ImageRejected as error:
        raise CaseRejected(label, plan.fundus_file, str(error)) from None

    frames: list[np.ndarray] = []
    for name in plan.fa_files:
        try:
            frame = as_fa_frame(_load(folder, name, label, limits, digest))
        except ImageRejected as error:
            raise CaseRejected(label, name, str(error)) from None
        if frames and frame.shape != frames[0].shape:
            (height, width), (first_height, first_width) = frame.shape, frames[0].shape
            raise CaseRejected(label, name, _size_differs(width, height, first_width, first_height))
        frames.append(frame)
    return RawCase(
        label=label,
        patient_id=plan.patient_id,
        eye=plan.eye,
        acquired=plan.acquired,
        camera=plan.camera,
        fundus=fundus,
        fa_frames=tuple(frames),
        fa_times_s=plan.fa_times_s,
        fa_files=plan.fa_files,
        source_sha256=digest.hexdigest(),
    )


def _read_case_json(case_dir: Path, label: str) -> tuple[dict, bytes]:
    path = case_dir / CASE_FILE
    if not path.resolve().is_relative_to(case_dir.resolve()):
        raise CaseRejected(
            label, CASE_FILE, "is a link that leaves the case folder; copy the file in"
        )
    _require_regular_file(path, CASE_FILE, label, "every case folder needs a case.json")
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


def _inside(folder: Path, name: str, label: str) -> Path:
    path = folder / name
    if path.is_symlink() and not path.resolve().is_relative_to(folder):
        raise CaseRejected(label, name, "is a link that leaves the case folder; copy the file in")
    if not path.resolve().is_relative_to(folder):
        raise CaseRejected(
            label, name, "lies outside the case folder (through a linked folder); copy the file in"
        )
    _require_regular_file(path, name, label, "it is listed in case.json but not in the folder")
    return path


def _require_regular_file(path: Path, name: str, label: str, when_missing: str) -> None:
    """Refuse what is not a readable regular file, saying what it is (opening a FIFO would
    block the ingest for good; a folder is not 'missing')."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise CaseRejected(label, name, f"missing; {when_missing}") from None
    except OSError as error:
        raise CaseRejected(
            label, name, f"cannot be read ({error.strerror}); check the folder's permissions"
        ) from None
    if stat.S_ISDIR(mode):
        raise CaseRejected(
            label, name, "is a folder, not a file; case.json must name the file itself"
        )
    if not stat.S_ISREG(mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket or device file"
        raise CaseRejected(label, name, f"is {kind}, not a regular file; copy the file in")
    if not os.access(path, os.R_OK):
        raise CaseRejected(
            label, name, "cannot be read (permission denied); make it readable (chmod a+r)"
        )


def _header(folder: Path, name: str, label: str, limits: CaseLimits) -> ImageHeader:
    path = _inside(folder, name, label)
    try:
        return read_header(path, limits=limits.image)
    except ImageRejected as error:
        raise CaseRejected(label, name, str(error)) from None


def _load(
    folder: Path, name: str, label: str, limits: CaseLimits, digest: hashlib._Hash
) -> np.ndarray:
    path = _inside(folder, name, label)
    try:
        pixels = read_image(path, limits=limits.image)
    except ImageRejected as error:
        raise CaseRejected(label, name, str(error)) from None
    digest.update(name.encode("utf-8"))
    digest.update(path.read_bytes())
    return pixels
