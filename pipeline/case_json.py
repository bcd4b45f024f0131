"""Validate a raw case's case.json against the contract (:mod:`pipeline.raw_case`).

Only the description is read here, never an image: :func:`read_case_json` returns its contract
fields checked and normalised, or raises :class:`pipeline.raw_case.CaseRejected` naming the case,
case.json and the fix.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from angioflow.pipeline.raw_case import (
    CASE_FILE,
    MAX_CASE_JSON_BYTES,
    CaseLimits,
    CaseRejected,
)

__all__ = ["CaseDocument", "read_case_json", "require_regular_file"]

_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff"})
_REQUIRED_KEYS = ("patient_id", "eye", "fundus", "fa_frames")
_OPTIONAL_KEYS = ("acquired", "camera", "notes")
_MAX_PATIENT_ID_CHARS = 128
_MAX_CAMERA_CHARS = 100


@dataclass(frozen=True)
class CaseDocument:
    """The contract fields of a valid case.json.

    Attributes
    ----------
    patient_id : str
        Raw patient id. Only ingestion may read it; it is never stored.
    eye : {'OD', 'OS'}
    acquired : str
        ISO date as given, or ``''``. Only used for the pseudonym; only the year is stored.
    camera : str
        Camera model as given, or ``''``.
    fundus_file : str
        Fundus photo's name relative to the case folder (POSIX).
    fa_files : tuple of str
        FA frame names relative to the case folder (POSIX), in acquisition order.
    fa_times_s : tuple of float
        Strictly increasing frame times, seconds.
    canonical_bytes : bytes
        The contract fields as canonical JSON (sorted keys, no spaces): what the case's source
        digest covers, so reformatting case.json does not change the case.
    """

    patient_id: str
    eye: str
    acquired: str
    camera: str
    fundus_file: str
    fa_files: tuple[str, ...]
    fa_times_s: tuple[float, ...]
    canonical_bytes: bytes = field(repr=False)


def read_case_json(case_dir: Path, label: str, limits: CaseLimits) -> CaseDocument:
    """Read and validate ``case_dir/case.json``.

    Parameters
    ----------
    case_dir : Path
        The case folder.
    label : str
        Display label of the case (:func:`pipeline.raw_case.case_label`), for messages.
    limits : CaseLimits
        Frame count and frame time limits.

    Returns
    -------
    document : CaseDocument

    Raises
    ------
    CaseRejected
        When case.json is missing, not a regular readable file, too large, not UTF-8 JSON, or
        any contract field is missing or invalid.
    """
    document, canonical = _read_document(case_dir, label)
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
    return CaseDocument(
        patient_id=patient_id,
        eye=eye,
        acquired=acquired,
        camera=camera,
        fundus_file=_relative_image_name(document["fundus"], "fundus", label),
        fa_files=tuple(name for name, _ in frame_entries),
        fa_times_s=tuple(time for _, time in frame_entries),
        canonical_bytes=canonical,
    )


def _read_document(case_dir: Path, label: str) -> tuple[dict, bytes]:
    path = case_dir / CASE_FILE
    if not path.resolve().is_relative_to(case_dir.resolve()):
        raise CaseRejected(
            label, CASE_FILE, "is a link that leaves the case folder; copy the file in"
        )
    require_regular_file(path, CASE_FILE, label, "every case folder needs a case.json")
    if path.stat().st_size > MAX_CASE_JSON_BYTES:
        raise CaseRejected(
            label,
            CASE_FILE,
            f"larger than {MAX_CASE_JSON_BYTES} bytes; this is not a case description",
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


def require_regular_file(path: Path, name: str, label: str, when_missing: str) -> None:
    """Refuse what is not a readable regular file, saying what it is (opening a FIFO would
    block the ingest for good; a folder is not 'missing').

    Parameters
    ----------
    path : Path
        The file.
    name : str
        Its name inside the case folder, for messages.
    label : str
        Display label of the case.
    when_missing : str
        The fix the message gives when the file does not exist.

    Raises
    ------
    CaseRejected
        When ``path`` is missing, unreadable, a folder, a FIFO, a socket or a device file.
    """
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
