"""What ``angioflow status`` and ``angioflow history`` show: read-only views of a case store,
returned as result objects the command line prints as tables or JSON."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from angioflow.pipeline.casestore import CaseStore, CaseStoreError, MaskKind
from angioflow.pipeline.ingest import QuarantineRecord, read_quarantine
from angioflow.pipeline.review import QueueEntry, review_queue

__all__ = ["CaseHistory", "StoreStatus", "case_history", "store_status"]


@dataclass(frozen=True)
class StoreStatus:
    """Every case's summary, the review queue, unreadable cases and quarantined folders.

    Attributes
    ----------
    root : Path
    cases : list
        ``CaseStore.summary`` of every readable case.
    unreadable : list of dict
        ``{"case_id", "error"}`` of each case that could not be read (or failed ``verify``).
    queue : list of QueueEntry
    quarantined : list of QuarantineRecord
    verified : bool
        Whether every stored array was read and its sha256 checked.
    """

    root: Path
    cases: list[Any]
    unreadable: list[dict[str, str]]
    queue: list[QueueEntry]
    quarantined: list[QuarantineRecord]
    verified: bool

    def as_dict(self) -> dict[str, Any]:
        """The ``status --json`` document."""
        return {
            "cases": [
                {
                    "case_id": r.case_id,
                    "eye": r.eye,
                    "frames": r.n_frames,
                    "stage": r.stage.value,
                    "waiting_for_review": r.stage.waiting_for_review,
                    "rejected": None
                    if r.rejection is None
                    else {"by": r.rejection.editor, "reason": r.rejection.reason},
                    "last_error": r.last_error,
                }
                for r in self.cases
            ],
            "review_queue": [
                {
                    "case_id": e.case_id,
                    "gate": e.gate.value,
                    "version": e.version,
                    "last_saved_by": e.last_editor,
                    "editing": list(e.editing),
                }
                for e in self.queue
            ],
            "unreadable": self.unreadable,
            "verified": self.verified,
            "quarantined": [q.__dict__ for q in self.quarantined],
        }


def store_status(root: Path, *, verify: bool = False) -> StoreStatus:
    """Summaries of every case of the store at ``root``.

    Parameters
    ----------
    root : Path
        An existing case store (``CaseStoreError`` otherwise).
    verify : bool
        Also read every stored array and check its sha256; a damaged case is listed as
        unreadable.
    """
    store = CaseStore(root, create=False)
    cases, unreadable = [], []
    for case_id in store.case_ids():
        try:
            if verify:
                store.verify(case_id)
            cases.append(store.summary(case_id))
        except CaseStoreError as error:
            unreadable.append({"case_id": case_id, "error": str(error)})
    return StoreStatus(
        root=root,
        cases=cases,
        unreadable=unreadable,
        queue=review_queue(store),
        quarantined=read_quarantine(root),
        verified=verify,
    )


@dataclass(frozen=True)
class CaseHistory:
    """Every saved mask version, approval, rejection and unsaved edit of one case."""

    case_id: str
    versions: list[Any]
    approvals: list[dict[str, Any]]
    rejections: list[Any]
    autosaves: list[Any]

    def approvers(self, version: Any) -> list[str]:
        """Who approved ``version`` (a saved mask version)."""
        return [
            a["editor"]
            for a in self.approvals
            if a["kind"] == version.kind.value and a["version"] == version.version
        ]

    def rejections_of(self, version: Any) -> list[Any]:
        """The rejections of ``version``."""
        return [
            r for r in self.rejections if r.kind is version.kind and r.version == version.version
        ]

    def as_dict(self) -> dict[str, Any]:
        """The ``history --json`` document."""
        return {
            "versions": [{**v.__dict__, "kind": v.kind.value} for v in self.versions],
            "approvals": self.approvals,
            "rejections": [{**r.__dict__, "kind": r.kind.value} for r in self.rejections],
            "unsaved_edits": [
                {"kind": a.kind.value, "editor": a.editor, "parent": a.parent, "time": a.time}
                for a in self.autosaves
            ],
        }


def case_history(root: Path, case_id: str) -> CaseHistory:
    """The history of ``case_id`` in the store at ``root``."""
    store = CaseStore(root, create=False)
    return CaseHistory(
        case_id=case_id,
        versions=[v for kind in MaskKind for v in store.versions(case_id, kind)],
        approvals=[e for e in store.events(case_id) if e["event"] == "approved"],
        rejections=[r for kind in MaskKind for r in store.rejections(case_id, kind)],
        autosaves=store.autosaves(case_id),
    )
