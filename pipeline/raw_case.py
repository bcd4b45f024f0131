"""The raw case contract: what one exam folder holds, its limits, and how a case is named.

A raw case folder (docs/design.md, "Raw case contract")::

    <case>/case.json   {"patient_id": str, "eye": "OD"|"OS", "fundus": "fundus.png",
                        "fa_frames": [{"file": "fa/000.png", "time_s": 14.2}, ...],
                        optional: "acquired" (ISO date), "camera", "notes"}
    <case>/fundus.*    colour fundus photo (png/jpg/tif)
    <case>/fa/*        FA frames (8- or 16-bit greyscale), any count >= 1

Every failure is a :class:`CaseRejected` whose message names the case and the file and says
how to fix it, in one line, and never contains the patient id. A case folder's name is shown only
once its case.json has been read and the name is known not to hold the patient id (in any letter
case or spelling); otherwise the folder is shown by its position, ``folder #7 (name withheld)``.

:mod:`pipeline.case_json` validates case.json against this contract and
:mod:`pipeline.case_reader` checks the image headers and decodes the pixels.
"""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path
from typing import Any

from angioflow.pipeline.display import printable
from angioflow.pipeline.io import ImageLimits
from angioflow.pipeline.privacy import contains_id
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import AngioflowError

__all__ = [
    "CASE_FILE",
    "MAX_CASE_JSON_BYTES",
    "CaseLimits",
    "CaseRejected",
    "case_label",
    "find_case_folders",
    "peek_exam",
]

CASE_FILE = "case.json"
MAX_CASE_JSON_BYTES = 1_000_000
"""Largest accepted case.json, bytes: anything larger is not a case description."""

# The settings file (the catalog's raw_exams.load_args) gives the image limits beside the case
# limits, and sizes in MiB.
_SETTINGS_IMAGE_NAMES = ("max_pixels", "min_side_px", "max_aspect")
_SETTINGS_MIB_NAMES = {"max_case_mb": "max_case_bytes", "max_worker_mb": "max_worker_bytes"}


class CaseLimits(BaseModel):
    """Limits for one raw case, and for the decoding of raw cases in one process.

    Also read from the settings file's names (the catalog's ``raw_exams.load_args``):
    ``max_pixels``, ``min_side_px`` and ``max_aspect`` at the top level fill :attr:`image`;
    ``max_case_mb`` and ``max_worker_mb`` give the byte sizes in MiB.

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
    max_worker_bytes : int
        Decoded image bytes one ingest process holds at once, all its cases together.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    image: ImageLimits = ImageLimits()
    max_frames: int = Field(500, ge=1)
    max_time_s: float = Field(3600.0, gt=0)
    max_case_bytes: int = Field(1 << 30, ge=1)
    max_worker_bytes: int = Field(2 << 30, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _settings_names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        values = dict(data)
        image = {name: values.pop(name) for name in _SETTINGS_IMAGE_NAMES if name in values}
        if image:
            if "image" in values:
                raise ValueError(f"give {', '.join(image)} either under 'image' or beside it")
            values["image"] = image
        for mib_name, bytes_name in _SETTINGS_MIB_NAMES.items():
            if mib_name in values:
                mib = values.pop(mib_name)
                if isinstance(mib, bool) or not isinstance(mib, int) or mib < 1:
                    raise ValueError(f"{mib_name} must be a whole number of MiB >= 1, got {mib!r}")
                values[bytes_name] = mib << 20
        return values


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
        if not stat.S_ISREG(status.st_mode) or status.st_size > MAX_CASE_JSON_BYTES:
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
