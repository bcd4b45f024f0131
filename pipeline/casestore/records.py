"""What the case store holds and returns: its errors, the mask kinds, the case stages and the
records of a case (new case, raw images, versions, rejections, autosaves, stage outputs)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from importlib import metadata
from typing import Any

import numpy as np

from ..errors import AngioflowError

__all__ = [
    "PIPELINE_EDITOR",
    "Autosave",
    "Baseline",
    "CaseStoreError",
    "CaseSummary",
    "MaskKind",
    "NewCase",
    "RawImages",
    "Rejection",
    "Stage",
    "StageOutput",
    "StaleVersionError",
    "VersionInfo",
    "software_version",
]

PIPELINE_EDITOR = "angioflow"  # editor of the versions the pipeline saves (baselines)


class CaseStoreError(AngioflowError, RuntimeError):
    """A case file is missing, corrupt, incomplete, or a request on it is invalid."""


class StaleVersionError(CaseStoreError):
    """A mask was saved against a parent version that is no longer the latest."""


class MaskKind(StrEnum):
    """The two reviewed masks and the labels each may hold."""

    VESSEL = "vessel"  # 0 background, 1 vessel
    AV = "av"  # 0 background, 1 artery, 2 vein, 3 crossing or uncertain

    @property
    def labels(self) -> frozenset[int]:
        return frozenset({0, 1}) if self is MaskKind.VESSEL else frozenset({0, 1, 2, 3})


class Stage(StrEnum):
    """Where a case stands, derived from what its file holds (never stored separately)."""

    INGESTED = "ingested"
    VESSEL_REVIEW = "vessel_review"
    VESSEL_APPROVED = "vessel_approved"
    AV_REVIEW = "av_review"
    DONE = "done"
    REJECTED = "rejected"  # a reviewer rejected the mask under review, with a reason

    @property
    def waiting_for_review(self) -> bool:
        return self in (Stage.VESSEL_REVIEW, Stage.AV_REVIEW)


@dataclass(frozen=True)
class NewCase:
    """Everything ingestion stores for a new case. Holds no patient id.

    Attributes
    ----------
    case_id : str
        Pseudonymous case id (file name stem).
    patient_pseudonym : str
    eye : {'OD', 'OS'}
    camera : str
    acquired_year : int or None
    source_sha256 : str
        Digest of the raw folder's contract content (see :class:`pipeline.case_reader.RawCase`).
    fundus : (H, W, 3) uint8 ndarray
    fa_frames : tuple of (h, w) uint8 or uint16 ndarray
    fa_times_s : tuple of float, seconds
    fa_files : tuple of str
    """

    case_id: str
    patient_pseudonym: str
    eye: str
    camera: str
    acquired_year: int | None
    source_sha256: str
    fundus: np.ndarray
    fa_frames: tuple[np.ndarray, ...]
    fa_times_s: tuple[float, ...]
    fa_files: tuple[str, ...]


@dataclass(frozen=True)
class RawImages:
    """Raw pixels of a stored case: fundus (H, W, 3) uint8, FA frames (h, w), times in s."""

    fundus: np.ndarray
    fa_frames: tuple[np.ndarray, ...]
    fa_times_s: tuple[float, ...]


@dataclass(frozen=True)
class VersionInfo:
    """One saved mask version (version 1 is the pipeline's baseline; parent 0 = none)."""

    kind: MaskKind
    version: int
    parent: int
    editor: str
    time: str
    note: str
    sha256: str


@dataclass(frozen=True)
class Rejection:
    """A reviewer's refusal of a mask version, with the reason (e.g. 'FA frames too blurred')."""

    kind: MaskKind
    version: int
    editor: str
    time: str
    reason: str


@dataclass(frozen=True)
class Autosave:
    """A reviewer's unsaved edits of a mask, kept so they survive a crash.

    ``mask`` is None when only the metadata was read (:meth:`CaseStore.autosaves`).
    """

    kind: MaskKind
    editor: str
    parent: int
    time: str
    mask: np.ndarray | None = None


@dataclass(frozen=True)
class Baseline:
    """The pipeline's own mask, offered for review in the same commit as its stage output.

    Attributes
    ----------
    kind : MaskKind
    mask : (H, W) integer ndarray
        Labels as in :class:`MaskKind`, in fundus coordinates.
    note : str
    """

    kind: MaskKind
    mask: np.ndarray
    note: str


@dataclass(frozen=True)
class StageOutput:
    """A stage's stored arrays and the provenance they were made with."""

    arrays: dict[str, np.ndarray]
    params: dict[str, Any]
    software_version: str
    finished: str
    seconds: float


@dataclass(frozen=True)
class CaseSummary:
    """What ``angioflow status`` shows of a case; read from attributes only (no pixels)."""

    case_id: str
    patient_pseudonym: str
    eye: str
    n_frames: int
    fundus_shape: tuple[int, int]
    stage: Stage
    stages_done: tuple[str, ...]
    latest_versions: dict[str, int]
    approved_versions: dict[str, int]
    last_error: str
    last_editors: dict[str, str]
    rejection: Rejection | None


def software_version() -> str:
    """Installed angioflow version, recorded with every stored output."""
    try:
        return metadata.version("angioflow")
    except metadata.PackageNotFoundError:
        return "0+unknown"
