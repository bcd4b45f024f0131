"""Stage 1: ingest one raw case folder into the case store, or quarantine it with a reason.

The patient id is read here and nowhere else: it becomes a keyed-HMAC pseudonym, and only
whitelisted metadata (eye, camera, acquisition year, frame times) is stored. A rejected case
leaves a one-line quarantine record in ``<store>/quarantine/`` and touches no stored file.

Several ingests may run at once (threads of one flow, or separate processes on one store):
a case id is stored once; a second folder holding the same exam is quarantined with a reason,
never stored over the first. A case's images are decoded only once their decoded size is
reserved from the process's :class:`DecodeBudget`, so parallel cases cannot together exhaust
memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import hashlib
import json
import os
import secrets
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from angioflow.pipeline.case_reader import RawCase, check_raw_case, load_raw_case
from angioflow.pipeline.casestore import CaseStore, CaseStoreError, MaskKind, NewCase
from angioflow.pipeline.privacy import case_pseudonym, patient_pseudonym, redact
from angioflow.pipeline.raw_case import CaseLimits, CaseRejected, case_label, peek_exam

__all__ = [
    "DecodeBudget",
    "IngestOutcome",
    "QuarantineRecord",
    "exam_case_id",
    "ingest_case",
    "read_quarantine",
    "worker_budget",
]

QUARANTINE_DIR = "quarantine"


class DecodeBudget:
    """Bytes of decoded images that the cases ingested at once in one process may hold.

    A case reserves its decoded size (:attr:`pipeline.case_reader.CasePlan.decoded_bytes`) before
    decoding and gives it back once stored; a case that does not fit waits for others to
    finish, so threads ingesting large cases in parallel cannot together exhaust memory.

    Parameters
    ----------
    capacity : int
        Bytes, >= 1.

    Example
    -------
    >>> budget = DecodeBudget(100)
    >>> with budget.reserve(60):
    ...     budget.available
    40
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1 byte, got {capacity}")
        self.capacity = capacity
        self._available = capacity
        self._changed = threading.Condition()

    @property
    def available(self) -> int:
        with self._changed:
            return self._available

    @contextlib.contextmanager
    def reserve(self, size: int) -> Iterator[None]:
        """Hold ``size`` bytes (waiting until they are free) for the ``with`` block.

        Raises
        ------
        ValueError
            If ``size`` exceeds the whole capacity (it could never be reserved).
        """
        if size > self.capacity:
            raise ValueError(f"{size} bytes exceed the budget's capacity of {self.capacity}")
        with self._changed:
            self._changed.wait_for(lambda: self._available >= size)
            self._available -= size
        try:
            yield
        finally:
            with self._changed:
                self._available += size
                self._changed.notify_all()


_budgets: dict[int, DecodeBudget] = {}
_budgets_lock = threading.Lock()


def worker_budget(capacity: int) -> DecodeBudget:
    """This process's decode budget of ``capacity`` bytes (one shared instance per capacity)."""
    with _budgets_lock:
        return _budgets.setdefault(capacity, DecodeBudget(capacity))


def _return_freed_memory_to_the_system() -> None:
    # glibc keeps a freed block in the arena of the thread that allocated it, and every large
    # free raises its mmap threshold (up to 32 MiB), so frames freed by one ingest thread stay
    # resident while the next thread decodes its own: measured, four 200 MB cases ingested one
    # at a time peaked as high as four at once. Trimming every arena once a case's frames are
    # freed gives them back. (A fixed low mmap threshold does the same but makes every later
    # large allocation of the process fault its pages in afresh: the demo ran 1.7x slower.)
    if not sys.platform.startswith("linux"):
        return
    try:
        malloc_trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # a libc without malloc_trim
        return
    malloc_trim(0)


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
    budget: DecodeBudget | None = None,
    claimed: Mapping[str, str] | None = None,
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
        Image, frame and decoded-size limits.
    replace : bool
        Store a changed case over the stored one (which is kept in ``replaced/``). A stored case
        with review history (a person's saved version, an approval, a rejection or an
        autosave) is never replaced: its review belongs to the stored images.
    budget : DecodeBudget, optional
        Where the decoded size is reserved; by default :func:`worker_budget` of
        ``limits.max_worker_bytes``.
    claimed : mapping of str to str, optional
        Case ids already taken by other folders of this run, mapped to those folders' labels:
        a folder holding one of those exams is quarantined, whatever ``replace`` says.

    Returns
    -------
    outcome : IngestOutcome
        Re-ingesting an unchanged case is ``skipped``; a changed one without ``replace`` is
        ``quarantined``, as is a folder whose exam another folder already stored. Never raises
        for a bad case.
    """
    budget = budget or worker_budget(limits.max_worker_bytes)
    try:
        plan = check_raw_case(case_dir, root=source_root, limits=limits)
        if plan.decoded_bytes > budget.capacity:
            raise CaseRejected(
                plan.label,
                "",
                f"its images take {plan.decoded_bytes >> 20} MiB once decoded, more than the "
                f"{budget.capacity >> 20} MiB one ingest process may hold; raise max_worker_mb "
                "in the catalog's raw_exams",
            )
        with budget.reserve(plan.decoded_bytes):
            try:
                return _store(
                    load_raw_case(plan, limits=limits), case_dir, store, key, replace, claimed or {}
                )
            finally:
                _return_freed_memory_to_the_system()
    except CaseRejected as rejection:
        return _quarantine(store, case_dir, rejection.case, rejection.file, str(rejection))
    except OSError as error:
        label = case_label(case_dir)
        reason = (
            f"case '{label}': cannot read the case folder ({error.strerror}); check permissions"
        )
        return _quarantine(store, case_dir, label, "", reason)


def _store(
    raw: RawCase,
    case_dir: Path,
    store: CaseStore,
    key: bytes,
    replace: bool,
    claimed: Mapping[str, str],
) -> IngestOutcome:
    label, document = raw.plan.label, raw.plan.document
    case_id = case_pseudonym(document.patient_id, document.eye, document.acquired, key=key)
    if case_id in claimed:
        reason = (
            f"case '{label}': holds the same exam (patient_id, eye and acquired date) as case "
            f"folder '{claimed[case_id]}' of this source, stored as {case_id}; remove one of the "
            "two folders, or correct case.json if they are different exams"
        )
        return _quarantine(store, case_dir, label, "", reason, case_id=case_id)
    status: Literal["ingested", "replaced"] = "ingested"
    if store.exists(case_id):
        refusal = _refuse_stored(store, case_id, raw, replace)
        if refusal == "unchanged":
            _clear_quarantine(store, case_dir)
            return IngestOutcome("skipped", label, case_id)
        if refusal:
            reason = f"case '{label}': {refusal}"
            return _quarantine(store, case_dir, label, "", reason, case_id=case_id)
        status = "replaced"
    try:
        store.create(_new_case(raw, case_id, key), replace=status == "replaced")
    except CaseStoreError:
        if status == "replaced" or not store.exists(case_id):
            raise
        # Another ingest (a thread of this run or another process) stored this exam between
        # the check above and the write: judge again against what it stored.
        refusal = _refuse_stored(store, case_id, raw, replace=False)
        if refusal == "unchanged":
            _clear_quarantine(store, case_dir)
            return IngestOutcome("skipped", label, case_id)
        reason = f"case '{label}': {refusal}"
        return _quarantine(store, case_dir, label, "", reason, case_id=case_id)
    except OSError as error:
        reason = (
            f"case '{label}': could not be written to the store ({error.strerror or error}); "
            "free disk space or make the store writable, then run ingest again"
        )
        return _quarantine(store, case_dir, label, "", reason, case_id=case_id)
    _clear_quarantine(store, case_dir)
    return IngestOutcome(status, label, case_id)


def _refuse_stored(store: CaseStore, case_id: str, raw: RawCase, replace: bool) -> str:
    """Why a stored case may not be replaced by ``raw``: ``'unchanged'`` when it holds the same
    content, ``''`` when replacing is allowed, else the reason."""
    try:
        unchanged = store.source_sha256(case_id) == raw.source_sha256
    except CaseStoreError:
        unchanged = False
    if unchanged:
        return "unchanged"
    if not replace:
        return (
            f"the same exam (patient_id, eye and acquired date) is already stored as {case_id} "
            "with different content (from another folder, an earlier version of this one, or "
            "a damaged file); pass --replace to store this version (the old file is kept), or "
            "correct case.json if this is a different exam"
        )
    history = _review_history(store, case_id)
    if history:
        return (
            f"{case_id} has review history ({history}); --replace would reset it to 'ingested' "
            "and detach that review from the images it was made on, so it is refused. Keep the "
            f"stored case; if its images are wrong, move cases/{case_id}.h5 into replaced/ "
            "(its history stays there) and ingest again"
        )
    return ""


def _review_history(store: CaseStore, case_id: str) -> str:
    """What a person did on a stored case, ``''`` for nothing (the pipeline's own baseline
    versions are not review). An unreadable file counts as having none: replacing it is the
    advertised repair."""
    from angioflow.pipeline.curation_stages import BASELINE_EDITOR

    try:
        summary = store.summary(case_id)
        parts = []
        for kind in MaskKind:
            edits = [v for v in store.versions(case_id, kind) if v.editor != BASELINE_EDITOR]
            if edits:
                parts.append(f"{len(edits)} {kind.value} version(s) saved by a reviewer")
            if summary.approved_versions.get(kind.value):
                parts.append(f"{kind.value} approved")
            if store.rejections(case_id, kind):
                parts.append(f"{kind.value} rejected")
        if store.autosaves(case_id):
            parts.append("unsaved review edits")
    except CaseStoreError:
        return ""
    return ", ".join(parts)


def exam_case_id(case_dir: Path, *, key: bytes) -> str:
    """The case id a folder's case.json names (patient, eye, acquisition date), or ``''`` when
    case.json does not give them; reads case.json only, never the images or the store."""
    patient_id, eye, acquired = peek_exam(case_dir)
    if not patient_id or eye not in ("OD", "OS"):
        return ""
    return case_pseudonym(patient_id, eye, acquired, key=key)


def _new_case(raw: RawCase, case_id: str, key: bytes) -> NewCase:
    document = raw.plan.document
    return NewCase(
        case_id=case_id,
        patient_pseudonym=patient_pseudonym(document.patient_id, key=key),
        eye=document.eye,
        camera=redact(document.camera, document.patient_id),
        acquired_year=int(document.acquired[:4]) if document.acquired else None,
        source_sha256=raw.source_sha256,
        fundus=raw.fundus,
        fa_frames=raw.fa_frames,
        fa_times_s=document.fa_times_s,
        fa_files=tuple(redact(name, document.patient_id) for name in document.fa_files),
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
    temp = path.with_suffix(f".{os.getpid()}.{secrets.token_hex(4)}.tmp")
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
