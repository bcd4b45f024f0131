"""Stage 1: ingest one raw case folder into the case store, or quarantine it with a reason.

The patient id is read here and nowhere else: it becomes a keyed-HMAC pseudonym, and only
whitelisted metadata (eye, camera, acquisition year, frame times) is stored. A rejected case
leaves a one-line quarantine record in ``<store>/quarantine/`` and touches no stored file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from pipeline.casestore import CaseStore, CaseStoreError, NewCase
from pipeline.privacy import case_pseudonym, patient_pseudonym, redact
from pipeline.raw_case import CaseLimits, CaseRejected, RawCase, case_label, read_raw_case

__all__ = [
    "IngestOutcome",
    "QuarantineRecord",
    "ingest_case",
    "read_quarantine",
]

QUARANTINE_DIR = "quarantine"


@dataclass(frozen=True)
class IngestOutcome:
    """What happened to one case folder.

    Attributes
    ----------
    status : {'ingested', 'replaced', 'skipped', 'quarantined'}
        ``skipped``: already stored with identical content (a no-op).
    case : str
        Display label of the folder (never the patient id).
    case_id : str
        Pseudonymous id in the store (``''`` when quarantined before one was known).
    file : str
        File at fault, relative to the case folder (quarantined only).
    reason : str
        One-line reason naming the case and file (quarantined only).
    """

    status: Literal["ingested", "replaced", "skipped", "quarantined"]
    case: str
    case_id: str = ""
    file: str = ""
    reason: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class QuarantineRecord:
    """A refused case as shown by ``angioflow status``."""

    case: str
    file: str
    reason: str
    time: str


def ingest_case(
    case_dir: Path,
    store: CaseStore,
    *,
    source_root: Path,
    key: bytes,
    limits: CaseLimits = CaseLimits(),
    replace: bool = False,
) -> IngestOutcome:
    """Validate one raw case folder and store it under its pseudonym.

    Parameters
    ----------
    case_dir : Path
        Raw case folder (DESIGN.md contract).
    store : CaseStore
        Destination store.
    source_root : Path
        The ingestion source folder; the case (after resolving links) must lie inside it.
    key : bytes
        Pseudonymisation key (:func:`pipeline.privacy.load_or_create_key`).
    limits : CaseLimits
        Image and frame limits.
    replace : bool
        Store a changed case over the stored one (which is kept in ``replaced/``).

    Returns
    -------
    outcome : IngestOutcome
        Re-ingesting an unchanged case is ``skipped``; a changed one without ``replace`` is
        ``quarantined``. Never raises for a bad case.
    """
    try:
        raw = read_raw_case(case_dir, root=source_root, limits=limits)
    except CaseRejected as rejection:
        return _quarantine(store, case_dir, rejection.case, rejection.file, str(rejection))
    except OSError as error:
        label = case_label(case_dir)
        reason = (
            f"case '{label}': cannot read the case folder ({error.strerror}); check permissions"
        )
        return _quarantine(store, case_dir, label, "", reason)

    label = raw.label
    case_id = case_pseudonym(raw.patient_id, raw.eye, raw.acquired, key=key)
    status: Literal["ingested", "replaced"] = "ingested"
    if store.exists(case_id):
        try:
            unchanged = store.source_sha256(case_id) == raw.source_sha256
        except CaseStoreError:
            unchanged = False
        if unchanged:
            _clear_quarantine(store, case_dir)
            return IngestOutcome("skipped", label, case_id)
        if not replace:
            reason = (
                f"case '{label}': already stored as {case_id} with different content (or a "
                "damaged file); pass --replace to store this version (the old file is kept)"
            )
            return _quarantine(store, case_dir, label, "", reason, case_id=case_id)
        status = "replaced"
    try:
        store.create(_new_case(raw, case_id, key), replace=replace)
    except OSError as error:
        reason = (
            f"case '{label}': could not be written to the store ({error.strerror or error}); "
            "free disk space or make the store writable, then run ingest again"
        )
        return _quarantine(store, case_dir, label, "", reason, case_id=case_id)
    _clear_quarantine(store, case_dir)
    return IngestOutcome(status, label, case_id)


def _new_case(raw: RawCase, case_id: str, key: bytes) -> NewCase:
    return NewCase(
        case_id=case_id,
        patient_pseudonym=patient_pseudonym(raw.patient_id, key=key),
        eye=raw.eye,
        camera=redact(raw.camera, raw.patient_id),
        acquired_year=int(raw.acquired[:4]) if raw.acquired else None,
        source_sha256=raw.source_sha256,
        fundus=raw.fundus,
        fa_frames=raw.fa_frames,
        fa_times_s=raw.fa_times_s,
        fa_files=tuple(redact(name, raw.patient_id) for name in raw.fa_files),
    )


def _record_path(store: CaseStore, case_dir: Path) -> Path:
    digest = hashlib.sha256(str(case_dir.absolute()).encode("utf-8")).hexdigest()[:16]
    return store.root / QUARANTINE_DIR / f"{digest}.json"


def _quarantine(
    store: CaseStore, case_dir: Path, label: str, file: str, reason: str, *, case_id: str = ""
) -> IngestOutcome:
    record = QuarantineRecord(
        case=label,
        file=file,
        reason=reason,
        time=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    path = _record_path(store, case_dir)
    temp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp.write_text(json.dumps(asdict(record), sort_keys=True), encoding="utf-8")
        os.replace(temp, path)
    except OSError:  # a full or read-only store: the outcome still carries the reason
        temp.unlink(missing_ok=True)
    return IngestOutcome("quarantined", label, case_id, file, reason)


def _clear_quarantine(store: CaseStore, case_dir: Path) -> None:
    _record_path(store, case_dir).unlink(missing_ok=True)


def read_quarantine(store_root: Path) -> list[QuarantineRecord]:
    """Current quarantine records of a store, oldest first."""
    folder = store_root / QUARANTINE_DIR
    records = (
        [
            QuarantineRecord(**json.loads(p.read_text(encoding="utf-8")))
            for p in folder.glob("*.json")
        ]
        if folder.is_dir()
        else []
    )
    return sorted(records, key=lambda r: (r.time, r.case))
