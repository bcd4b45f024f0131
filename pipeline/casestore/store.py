"""The case store: a folder of case files, and the one object every caller reads and writes
them through."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections.abc import Collection
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from . import autosaves, reviews, stages
from ._file import CASE_ID, CaseFiles, fsync_folder, read_checked
from .events import append_to_log, file_events, log_events, merge_events
from .raw import read_raw, validate_new_case, write_new_case
from .records import (
    Autosave,
    Baseline,
    CaseStoreError,
    CaseSummary,
    MaskKind,
    NewCase,
    RawImages,
    Rejection,
    StageOutput,
    VersionInfo,
)

__all__ = ["CaseStore"]


class CaseStore:
    """A folder of case files.

    Parameters
    ----------
    root : Path
        Store folder; ``cases/``, ``locks/``, ``replaced/`` and ``autosave/`` live inside.
    create : bool
        Create the folder when absent (ingestion); otherwise a missing store is an error.

    Example
    -------
    >>> store = CaseStore(Path("store"))  # doctest: +SKIP
    >>> store.case_ids()  # doctest: +SKIP
    ['p0ea7e5aff8bd_OD_5a7f73']
    """

    def __init__(self, root: Path, *, create: bool = True) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise CaseStoreError(f"store {self.root} is a file, not a folder; pass a folder")
        if not create and not (self.root / "cases").is_dir():
            raise CaseStoreError(
                f"no case store at {self.root}; "
                f"run `angioflow ingest SRC --store {self.root}` first"
            )
        self._files = CaseFiles(self.root)
        self.cases_dir = self._files.cases_dir
        self.locks_dir = self._files.locks_dir
        self.replaced_dir = self.root / "replaced"
        self.autosave_dir = self.root / "autosave"

    # ---- paths -----------------------------------------------------------------------------

    def path(self, case_id: str) -> Path:
        """Path of a case's file; ``case_id`` may not name anything outside ``cases/``."""
        return self._files.path(case_id)

    def log_path(self, case_id: str) -> Path:
        """Path of a case's event log file (failure messages), beside its case file."""
        return self.path(case_id).with_suffix(".log")

    def case_ids(self) -> list[str]:
        """Ids of every stored case, sorted."""
        return sorted(p.stem for p in self.cases_dir.glob("*.h5") if CASE_ID.match(p.stem))

    def exists(self, case_id: str) -> bool:
        return self.path(case_id).is_file()

    def check_writable(self) -> None:
        """Raise :class:`CaseStoreError` at once when the store cannot be written (read-only
        mount, no permission), before any work that would end in a write.
        """
        self._files.check_writable()

    # ---- reading -------------------------------------------------------------------------

    def verify(self, case_id: str) -> int:
        """Read every dataset of a case and check its sha256, and check its event log
        (``status --verify``).

        Returns
        -------
        n_datasets : int
            How many datasets were checked.

        Raises
        ------
        CaseStoreError
            Naming the first damaged dataset (or the damaged log line), with how to recover.
        """
        checked = self._files.verify(case_id)
        log_events(self.log_path(case_id), case_id)
        return checked

    def source_sha256(self, case_id: str) -> str:
        """Digest of the raw folder content the case was ingested from."""
        with self._files.open(case_id) as handle:
            return str(handle.attrs["source_sha256"])

    def read_raw(self, case_id: str) -> RawImages:
        """Raw fundus photo and FA frames of a case, checksums verified."""
        with self._files.open(case_id) as handle:
            return read_raw(handle)

    def summary(self, case_id: str) -> CaseSummary:
        """Attributes, stage and review state of a case, without reading pixels."""
        with self._files.open(case_id) as handle:
            events = merge_events(file_events(handle), log_events(self.log_path(case_id), case_id))
            return reviews.summarise(handle, case_id, events)

    def events(self, case_id: str) -> list[dict[str, Any]]:
        """The case's event log, oldest first (ingest, stage outputs, saves, approvals,
        rejections, errors)."""
        with self._files.open(case_id) as handle:
            in_file = file_events(handle)
        return merge_events(in_file, log_events(self.log_path(case_id), case_id))

    # ---- writing -------------------------------------------------------------------------

    def create(self, case: NewCase, *, replace: bool = False) -> Path:
        """Store a new case atomically.

        With ``replace=True`` an existing file of the same id (and its event log) is moved to
        ``replaced/`` (kept, never deleted) and the new one takes its place; without it an
        existing case is an error.

        Raises
        ------
        CaseStoreError
            If the case exists and ``replace`` is false, or the arrays have the wrong layout.
        """
        validate_new_case(case)
        target, log = self.path(case.case_id), self.log_path(case.case_id)
        with self._files.locked(case.case_id):
            if target.exists():
                if not replace:
                    raise CaseStoreError(
                        f"case {case.case_id} is already stored; pass --replace to store the new "
                        "content (the old file is kept in replaced/)"
                    )
                self.replaced_dir.mkdir(exist_ok=True)
                stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
                kept = self.replaced_dir / f"{case.case_id}.{stamp}.h5"
                shutil.copyfile(target, kept)
                if log.exists():  # the old content's failures are not the new one's
                    os.replace(log, kept.with_suffix(".log"))
                fsync_folder(self.replaced_dir)
            self._files.commit(
                case.case_id, lambda handle: write_new_case(handle, case), copy_current=False
            )
        return target

    def write_stage(
        self,
        case_id: str,
        stage: str,
        arrays: dict[str, np.ndarray],
        *,
        params: dict[str, Any],
        seconds: float,
        baseline: Baseline | None = None,
    ) -> int:
        """Store (or recompute) a stage's output arrays with their parameters and timing.

        Stage outputs are derived data: writing a stage again replaces its previous output.
        Raw images and saved versions are never touched by this.

        Parameters
        ----------
        baseline : Baseline, optional
            The stage's mask for review, saved as a new version in the same commit when the
            case needs one (see :meth:`offer_baseline`): a crash can never leave a stage output
            whose baseline is missing.

        Returns
        -------
        version : int
            The baseline's new version number, 0 when none was saved.
        """
        stages.check_stage_name(stage)
        params_json = json.dumps(params, sort_keys=True)

        def change(handle: h5py.File) -> int:
            stages.write_stage(handle, stage, arrays, params_json=params_json, seconds=seconds)
            return 0 if baseline is None else reviews.save_baseline(handle, case_id, baseline)

        return self._files.mutate(case_id, change)

    def offer_baseline(self, case_id: str, baseline: Baseline) -> int:
        """Save the pipeline's mask as a new version when the case needs one for review.

        A vessel baseline is saved only while the case has no vessel version; an A/V baseline
        only while the vessel mask is approved and the latest A/V version (if any) was made for
        another vessel version. Clinicians' versions are never superseded otherwise.

        Returns
        -------
        version : int
            The new version number, 0 when none was needed.
        """
        return self._files.mutate(
            case_id, lambda handle: reviews.save_baseline(handle, case_id, baseline)
        )

    def read_stage(
        self, case_id: str, stage: str, *, arrays: Collection[str] | None = None
    ) -> StageOutput:
        """A stage's arrays and provenance, checksums verified.

        ``arrays`` names the arrays to read (all when None, none for ``()``: provenance only).
        """
        with self._files.open(case_id) as handle:
            return stages.read_stage(handle, case_id, stage, arrays)

    def record_error(self, case_id: str, stage: str, message: str) -> None:
        """Append a failed-stage message to the case's event log (shown by ``status``).

        Only the small log file beside the case file is written; the case file is not.
        """
        with self._files.locked(case_id):
            self._files.check_readable(case_id)
            append_to_log(
                self.log_path(case_id),
                case_id,
                "error",
                {"stage": stage, "message": message},
                self.root,
            )

    # ---- review versions -------------------------------------------------------------------

    def save_version(
        self,
        case_id: str,
        kind: MaskKind | str,
        mask: np.ndarray,
        *,
        editor: str,
        parent: int,
        note: str = "",
        approve: bool = False,
    ) -> int:
        """Save a mask as a new immutable version (and approve it, in the same commit).

        Parameters
        ----------
        case_id : str
        kind : MaskKind or {'vessel', 'av'}
        mask : (H, W) integer ndarray
            Label mask in fundus coordinates, labels as in :class:`MaskKind`.
        editor : str
            Who made it (``'angioflow'`` for pipeline baselines).
        parent : int
            The version the edit started from, ``0`` for the first version. It must be the
            latest version, so an edit made on an outdated mask is never saved over a newer one.
        note : str
            Free-text comment.
        approve : bool
            Also record ``editor``'s approval of the new version; when the approval is refused
            nothing is saved.

        Returns
        -------
        version : int
            Number of the new version (1, 2, ...).

        Raises
        ------
        StaleVersionError
            If ``parent`` is not the latest version (someone saved meanwhile).
        CaseStoreError
            If the mask's shape or labels are wrong, or an A/V mask is saved before the vessel
            mask is approved or for a vessel version no longer approved.
        """
        kind = MaskKind(kind)
        editor = _editor(editor, "save a mask version")
        mask = np.asarray(mask)
        with self._files.open(case_id) as handle:
            expected = tuple(handle["raw/fundus"].shape[:2])
        reviews.validate_mask(mask, kind, expected, case_id)
        mask = mask.astype(np.uint8)
        version = self._files.mutate(
            case_id,
            lambda handle: reviews.save_version(
                handle,
                case_id,
                kind,
                mask,
                editor=editor,
                parent=parent,
                note=note,
                approve=approve,
            ),  # fmt: skip
        )
        self.discard_autosave(case_id, kind, editor)
        return version

    def versions(self, case_id: str, kind: MaskKind | str) -> list[VersionInfo]:
        """Every saved version of a mask, oldest first."""
        with self._files.open(case_id) as handle:
            return reviews.versions(handle, MaskKind(kind))

    def read_version(
        self, case_id: str, kind: MaskKind | str, version: int | None = None
    ) -> np.ndarray:
        """A saved mask version (the latest when ``version`` is None), checksum verified."""
        kind = MaskKind(kind)
        with self._files.open(case_id) as handle:
            latest = reviews.latest_version(handle, kind)
            number = latest if version is None else version
            if not 1 <= number <= latest:
                raise CaseStoreError(
                    f"case {case_id} has no {kind.value} mask version {number}"
                    + (f" (versions 1..{latest} exist)" if latest else " (none saved yet)")
                )
            return read_checked(handle, f"reviews/{kind.value}/v{number:04d}", handle.filename)

    def approve(self, case_id: str, kind: MaskKind | str, *, version: int, editor: str) -> None:
        """Record that ``editor`` approved a mask version; only approvals advance a case.

        Raises
        ------
        CaseStoreError
            If the version does not exist or is unreadable, or an A/V mask is approved before
            the vessel mask or labels a vessel version no longer approved.
        """
        kind = MaskKind(kind)
        editor = _editor(editor, "approve a mask")
        self._files.mutate(
            case_id, lambda handle: reviews.approve(handle, case_id, kind, version, editor)
        )

    def reject(
        self, case_id: str, kind: MaskKind | str, *, version: int, editor: str, reason: str
    ) -> None:
        """Record that ``editor`` rejected a mask version and why; the case leaves the review
        queue (stage ``rejected``) until a new version is saved or a version is approved."""
        kind = MaskKind(kind)
        editor = _editor(editor, "reject a mask")
        if not reason or not reason.strip():
            raise CaseStoreError(f"case {case_id}: give a reason for rejecting the {kind} mask")
        self._files.mutate(
            case_id,
            lambda handle: reviews.reject(handle, case_id, kind, version, editor, reason.strip()),
        )

    def rejections(self, case_id: str, kind: MaskKind | str) -> list[Rejection]:
        """Every rejection of a mask, oldest first."""
        with self._files.open(case_id) as handle:
            return reviews.rejections(handle, MaskKind(kind))

    # ---- autosaved edits -------------------------------------------------------------------

    def save_autosave(
        self, case_id: str, kind: MaskKind | str, mask: np.ndarray, *, editor: str, parent: int
    ) -> None:
        """Keep a reviewer's unsaved edits (replacing their previous autosave of that mask).

        Written to a temp file, fsynced and renamed, so a crash mid-write keeps the previous one.
        """
        kind = MaskKind(kind)
        editor = _editor(editor, "autosave a mask")
        mask = np.asarray(mask)
        reviews.validate_mask(mask, kind, self.summary(case_id).fundus_shape, case_id)
        path = autosaves.autosave_path(self.autosave_dir, case_id, kind, editor)
        autosaves.write_autosave(path, mask, editor=editor, parent=parent, store_root=self.root)

    def read_autosave(self, case_id: str, kind: MaskKind | str, editor: str) -> Autosave | None:
        """The reviewer's autosaved edits of a mask, or None when there are none."""
        kind = MaskKind(kind)
        self.path(case_id)  # validates the id
        path = autosaves.autosave_path(self.autosave_dir, case_id, kind, editor)
        return autosaves.read_autosave(path, kind, with_mask=True) if path.is_file() else None

    def discard_autosave(self, case_id: str, kind: MaskKind | str, editor: str) -> None:
        """Remove the reviewer's autosave of a mask (after a save, or on their request)."""
        self.path(case_id)
        autosaves.autosave_path(self.autosave_dir, case_id, MaskKind(kind), editor).unlink(
            missing_ok=True
        )

    def autosaves(self, case_id: str) -> list[Autosave]:
        """Every reviewer's unsaved edits of a case (metadata only), oldest first."""
        self.path(case_id)
        return autosaves.list_autosaves(self.autosave_dir / case_id)


def _editor(editor: str, action: str) -> str:
    if not editor or not editor.strip():
        raise CaseStoreError(f"an editor name is required to {action}")
    return editor.strip()
