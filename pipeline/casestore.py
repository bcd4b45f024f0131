"""The case store: one HDF5 file per case, written atomically, with immutable review versions.

Layout of ``<store>/cases/<case_id>.h5``::

    /                       attrs: format, format_version, case_id, patient_pseudonym, eye,
                            camera, acquired_year, source_sha256, created, software_version,
                            complete
    /raw/fundus             (H, W, 3) uint8, gzip
    /raw/fa/000 ...         (h, w) uint8|uint16, gzip; attrs time_s, file
    /stages/<name>/<array>  stage outputs; group attrs params (JSON), software_version,
                            finished, seconds
    /reviews/<kind>/v0001   (H, W) uint8 label mask; attrs version, parent, editor, time,
                            note, sha256 (immutable once written); A/V versions also
                            vessel_version (the approved vessel version they label)
    /reviews/<kind>/approvals/a0001   attrs version, editor, time
    /reviews/<kind>/rejections/r0001  attrs version, editor, time, reason
    /events                 JSON lines: ingested, stage outputs, saves, approvals, rejections,
                            errors

Every array dataset carries the sha256 of its bytes, checked on read (``verify`` checks them
all). The root attribute ``manifest`` lists every group and dataset with a digest of its
attributes (and of the event log's text), and ``manifest_sha256`` its own digest; opening a
case checks the file against it, so a flipped byte in a name, an attribute or the event log
is reported as damage instead of surfacing as a missing stage, a wrong editor or a crash.

Every change is copy-on-write: the current file is copied to a temporary file in the same
folder, changed, flushed and fsynced, then renamed over the original (and the folder is
fsynced). A crash at any point leaves either the old or the new file, never a mix. Writers of
one case are serialised, across threads and processes, by an exclusive OS file lock (the
``filelock`` package: POSIX and Windows alike) on ``<store>/locks/<case_id>.lock``.

Unsaved edits of a reviewer live beside the case files, one per case, mask and editor, in
``<store>/autosave/<case_id>/<kind>.<editor digest>.npz`` (also written atomically); they are
not versions, and saving a version removes the editor's autosave of that mask.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import io
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from enum import StrEnum
from importlib import metadata
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from filelock import FileLock

from .errors import AngioflowError

__all__ = [
    "Autosave",
    "Baseline",
    "CaseStore",
    "CaseStoreError",
    "CaseSummary",
    "NewCase",
    "MaskKind",
    "RawImages",
    "Rejection",
    "Stage",
    "StaleVersionError",
    "StageOutput",
    "VersionInfo",
    "software_version",
]

FORMAT = "angioflow-case"
# 2: sealed by a manifest (a version 2 file without one is damaged); version 1 files are read
# as before and sealed at their next change.
FORMAT_VERSION = 2
PIPELINE_EDITOR = "angioflow"  # editor of the versions the pipeline saves (baselines)
_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
_SEAL_ATTRS = ("manifest", "manifest_sha256")
# What h5py raises on a file whose bytes were changed under it: a damaged object header, heap or
# B-tree surfaces as any of these, depending on which byte changed.
_DAMAGE_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, UnicodeDecodeError)


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
        Digest of the raw folder's contract content (see :class:`pipeline.raw_case.RawCase`).
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


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _damaged(path: Path | str, what: str) -> str:
    return (
        f"case file {path} is damaged ({what}); restore it from a backup or re-ingest the case "
        "with --replace"
    )


class CaseStore:
    """A folder of case files.

    Parameters
    ----------
    root : Path
        Store folder; ``cases/``, ``locks/``, ``replaced/`` and ``quarantine/`` live inside.
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
        self.cases_dir = self.root / "cases"
        self.locks_dir = self.root / "locks"
        self.replaced_dir = self.root / "replaced"
        self.autosave_dir = self.root / "autosave"
        for folder in (self.cases_dir, self.locks_dir):
            folder.mkdir(parents=True, exist_ok=True)
        # Files this instance found matching their manifest, by (inode, size, mtime): every
        # commit renames a new file into place, so a changed case is checked again.
        self._checked: dict[str, tuple[int, int, int]] = {}
        self._remove_orphaned_temp_files()

    def _remove_orphaned_temp_files(self) -> None:
        # A writer killed mid-commit leaves its temp file; the case file itself is intact.
        for temp in self.cases_dir.glob(".*.tmp"):
            pid = temp.name.split(".")[-3]
            if pid.isdigit() and not _process_alive(int(pid)):
                temp.unlink(missing_ok=True)

    # ---- paths and locking -------------------------------------------------------------

    def path(self, case_id: str) -> Path:
        """Path of a case's file; ``case_id`` may not name anything outside ``cases/``."""
        if not isinstance(case_id, str) or not _CASE_ID.match(case_id):
            raise CaseStoreError(
                f"invalid case id {case_id!r}: use the id shown by `angioflow status` "
                "(letters, digits, '_' and '-')"
            )
        return self.cases_dir / f"{case_id}.h5"

    def case_ids(self) -> list[str]:
        """Ids of every stored case, sorted."""
        return sorted(p.stem for p in self.cases_dir.glob("*.h5") if _CASE_ID.match(p.stem))

    def exists(self, case_id: str) -> bool:
        return self.path(case_id).is_file()

    @contextlib.contextmanager
    def _locked(self, case_id: str) -> Iterator[None]:
        # A new lock object per call: each holds its own file handle, so two threads of one
        # process exclude each other as two processes do.
        with FileLock(self.locks_dir / f"{case_id}.lock", thread_local=False):
            yield

    def _commit(
        self, case_id: str, change: Callable[[h5py.File], Any], *, copy_current: bool
    ) -> Any:
        """Write a new version of a case file (lock held) and return ``change``'s result.

        The HDF5 file is built in memory and only then written with plain file I/O to a temp
        file, fsynced and renamed over the old one: a full disk or a read-only store raises a
        clean OSError and leaves no partial file (HDF5 failing to flush a file on disk crashes
        the process when the failed handle is freed).
        """
        target = self.path(case_id)
        image = io.BytesIO(target.read_bytes() if copy_current else b"")
        try:
            with h5py.File(image, "r+" if copy_current else "w") as handle:
                result = change(handle)
                _seal(handle)
        except CaseStoreError:
            raise
        except _DAMAGE_ERRORS as error:
            raise CaseStoreError(_damaged(target, f"{type(error).__name__}: {error}")) from None
        temp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            with open(temp, "wb") as handle:
                handle.write(image.getbuffer())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        except OSError as error:
            if isinstance(error, PermissionError) or error.errno == errno.EROFS:
                raise CaseStoreError(_read_only(self.root, error)) from None
            raise
        finally:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
        _fsync_folder(target.parent)
        return result

    def check_writable(self) -> None:
        """Raise :class:`CaseStoreError` at once when the store cannot be written (read-only
        mount, no permission), before any work that would end in a write.
        """
        probe = self.cases_dir / f".write-check.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            probe.write_bytes(b"")
            probe.unlink()
            with self._locked("write-check"):
                pass
        except OSError as error:
            raise CaseStoreError(_read_only(self.root, error)) from None

    def _mutate(self, case_id: str, change: Callable[[h5py.File], Any]) -> Any:
        """Apply ``change`` to a case file atomically and return its result."""
        with self._locked(case_id):
            self._check_readable(case_id)  # a damaged file is never copied forward

            def build(handle: h5py.File) -> Any:
                result = change(handle)
                handle.attrs["modified"] = _now()
                return result

            return self._commit(case_id, build, copy_current=True)

    # ---- reading -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _open(self, case_id: str) -> Iterator[h5py.File]:
        path = self.path(case_id)
        if not path.is_file():
            raise CaseStoreError(
                f"no case {case_id!r} in store {self.root}; `angioflow status --store {self.root}` "
                "lists the stored cases"
            )
        try:
            handle = h5py.File(path, "r")
        except OSError as error:
            raise CaseStoreError(
                _damaged(path, f"corrupt or incomplete: {error.__class__.__name__}")
            ) from None
        with handle:
            try:
                if handle.attrs.get("format") != FORMAT or not handle.attrs.get("complete", False):
                    raise CaseStoreError(
                        f"case file {path} is not a complete angioflow case file; restore it from "
                        "a backup or re-ingest the case with --replace"
                    )
                if int(handle.attrs["format_version"]) > FORMAT_VERSION:
                    raise CaseStoreError(
                        f"case file {path} has format version {handle.attrs['format_version']}, "
                        f"newer than this angioflow ({software_version()}) reads; upgrade angioflow"
                    )
                # The file opened, not whatever the name points to now (on Windows the driver's
                # handle is no file descriptor: the name it is).
                stat = path.stat() if os.name == "nt" else os.fstat(handle.id.get_vfd_handle())
                identity = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
                if self._checked.get(case_id) != identity:
                    _check_manifest(handle, path)
                    self._checked[case_id] = identity
                yield handle
            except CaseStoreError:
                raise
            except _DAMAGE_ERRORS as error:
                # Past the manifest check a failing read means damage the manifest cannot see
                # (inside a B-tree or a compressed chunk).
                raise CaseStoreError(_damaged(path, f"{type(error).__name__}: {error}")) from None

    def _check_readable(self, case_id: str) -> None:
        with self._open(case_id):
            pass

    def _read_array(self, handle: h5py.File, name: str) -> np.ndarray:
        return _read_checked(handle, name, handle.filename)

    def verify(self, case_id: str) -> int:
        """Read every dataset of a case and check its sha256 (``status --verify``).

        Returns
        -------
        n_datasets : int
            How many datasets were checked.

        Raises
        ------
        CaseStoreError
            Naming the first damaged dataset, with how to recover.
        """
        with self._open(case_id) as handle:
            names: list[str] = []
            handle.visititems(
                lambda name, obj: (
                    names.append(name)
                    if isinstance(obj, h5py.Dataset) and "sha256" in obj.attrs
                    else None
                )
            )
            for name in names:
                _read_checked(handle, name, handle.filename)
            return len(names)

    def source_sha256(self, case_id: str) -> str:
        """Digest of the raw folder content the case was ingested from."""
        with self._open(case_id) as handle:
            return str(handle.attrs["source_sha256"])

    def read_raw(self, case_id: str) -> RawImages:
        """Raw fundus photo and FA frames of a case, checksums verified."""
        with self._open(case_id) as handle:
            fa_group = handle["raw/fa"]
            names = sorted(fa_group)
            return RawImages(
                fundus=self._read_array(handle, "raw/fundus"),
                fa_frames=tuple(self._read_array(handle, f"raw/fa/{n}") for n in names),
                fa_times_s=tuple(float(fa_group[n].attrs["time_s"]) for n in names),
            )

    def summary(self, case_id: str) -> CaseSummary:
        """Attributes, stage and review state of a case, without reading pixels."""
        with self._open(case_id) as handle:
            latest = {k.value: _latest_version(handle, k) for k in MaskKind}
            approved = {k.value: _approved_version(handle, k) for k in MaskKind}
            rejections = {k.value: _active_rejection(handle, k) for k in MaskKind}
            events = _events(handle)
            errors = [e for e in events if e["event"] == "error"]
            # An error stays "last" until a later stage output shows the case moved on.
            resolved_after = errors and any(
                e["event"] == "stage_output" and e["time"] > errors[-1]["time"] for e in events
            )
            return CaseSummary(
                case_id=case_id,
                patient_pseudonym=str(handle.attrs["patient_pseudonym"]),
                eye=str(handle.attrs["eye"]),
                n_frames=len(handle["raw/fa"]),
                fundus_shape=tuple(handle["raw/fundus"].shape[:2]),
                stage=_derive_stage(handle, rejections),
                stages_done=tuple(sorted(handle.get("stages", {}))),
                latest_versions=latest,
                approved_versions=approved,
                last_error="" if not errors or resolved_after else errors[-1]["message"],
                last_editors={
                    k.value: str(handle[f"reviews/{k}/v{latest[k]:04d}"].attrs["editor"])
                    for k in MaskKind
                    if latest[k]
                },
                rejection=rejections[MaskKind.AV] or rejections[MaskKind.VESSEL],
            )

    def events(self, case_id: str) -> list[dict[str, Any]]:
        """The case's event log, oldest first (ingest, stage outputs, saves, approvals, errors)."""
        with self._open(case_id) as handle:
            return _events(handle)

    # ---- writing -------------------------------------------------------------------------

    def create(self, case: NewCase, *, replace: bool = False) -> Path:
        """Store a new case atomically.

        With ``replace=True`` an existing file of the same id is moved to ``replaced/`` (kept,
        never deleted) and the new one takes its place; without it an existing case is an error.

        Raises
        ------
        CaseStoreError
            If the case exists and ``replace`` is false, or the arrays have the wrong layout.
        """
        _validate_new_case(case)
        target = self.path(case.case_id)
        with self._locked(case.case_id):
            if target.exists():
                if not replace:
                    raise CaseStoreError(
                        f"case {case.case_id} is already stored; pass --replace to store the new "
                        "content (the old file is kept in replaced/)"
                    )
                self.replaced_dir.mkdir(exist_ok=True)
                stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
                shutil.copyfile(target, self.replaced_dir / f"{case.case_id}.{stamp}.h5")
                _fsync_folder(self.replaced_dir)
            self._commit(
                case.case_id, lambda handle: _write_new_case(handle, case), copy_current=False
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
        if not _STAGE_NAME.match(stage):
            raise CaseStoreError(f"invalid stage name {stage!r}; use lower_snake_case")
        params_json = json.dumps(params, sort_keys=True)

        def change(handle: h5py.File) -> int:
            stages = handle.require_group("stages")
            if stage in stages:
                del stages[stage]
            group = stages.create_group(stage)
            for name, array in arrays.items():
                _write_array(group, name, np.asarray(array))
            group.attrs.update(
                params=params_json,
                software_version=software_version(),
                finished=_now(),
                seconds=float(seconds),
            )
            _append_event(handle, "stage_output", {"stage": stage, "seconds": float(seconds)})
            return 0 if baseline is None else _save_baseline(handle, case_id, baseline)

        return self._mutate(case_id, change)

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
        return self._mutate(case_id, lambda handle: _save_baseline(handle, case_id, baseline))

    def read_stage(
        self, case_id: str, stage: str, *, arrays: Collection[str] | None = None
    ) -> StageOutput:
        """A stage's arrays and provenance, checksums verified.

        ``arrays`` names the arrays to read (all when None, none for ``()``: provenance only).
        """
        with self._open(case_id) as handle:
            if f"stages/{stage}" not in handle:
                raise CaseStoreError(f"case {case_id} has no output of stage {stage!r} yet")
            group = handle[f"stages/{stage}"]
            names = list(group) if arrays is None else list(arrays)
            missing = [n for n in names if n not in group]
            if missing:
                raise CaseStoreError(
                    f"case {case_id}: stage {stage!r} holds no array {', '.join(missing)}"
                )
            return StageOutput(
                arrays={n: self._read_array(handle, f"stages/{stage}/{n}") for n in names},
                params=json.loads(group.attrs["params"]),
                software_version=str(group.attrs["software_version"]),
                finished=str(group.attrs["finished"]),
                seconds=float(group.attrs["seconds"]),
            )

    def record_error(self, case_id: str, stage: str, message: str) -> None:
        """Append a failed-stage message to the case's event log (shown by ``status``)."""
        self._mutate(
            case_id, lambda h: _append_event(h, "error", {"stage": stage, "message": message})
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
        if not editor or not editor.strip():
            raise CaseStoreError("an editor name is required to save a mask version")
        mask = np.asarray(mask)
        with self._open(case_id) as handle:
            expected = tuple(handle["raw/fundus"].shape[:2])
        _validate_mask(mask, kind, expected, case_id)
        mask = mask.astype(np.uint8)

        def change(handle: h5py.File) -> int:
            latest = _latest_version(handle, kind)
            if parent != latest:
                by = f" (by {_editor_of(handle, kind, latest)})" if latest else ""
                raise StaleVersionError(
                    f"case {case_id}: the {kind.value} mask was edited from version {parent}, but "
                    f"version {latest} has been saved since{by}; reload version {latest} and "
                    "merge your edits before saving"
                )
            vessel = _approved_version(handle, MaskKind.VESSEL)
            if kind is MaskKind.AV:
                if not vessel:
                    raise CaseStoreError(
                        f"case {case_id}: approve the vessel mask before saving an A/V mask"
                    )
                if latest and _av_basis(handle, latest) != vessel:
                    raise CaseStoreError(
                        f"case {case_id}: vessel version {vessel} was approved after A/V version "
                        f"{latest} was made; run `angioflow curate` to label the approved vessel "
                        "mask, then edit that A/V version"
                    )
            version = _add_version(
                handle, kind, mask, parent=parent, editor=editor.strip(), note=note, vessel=vessel
            )
            if approve:
                _record_approval(handle, case_id, kind, version, editor.strip())
            return version

        version = self._mutate(case_id, change)
        self.discard_autosave(case_id, kind, editor)
        return version

    def versions(self, case_id: str, kind: MaskKind | str) -> list[VersionInfo]:
        """Every saved version of a mask, oldest first."""
        kind = MaskKind(kind)
        with self._open(case_id) as handle:
            group = handle.get(f"reviews/{kind.value}")
            if group is None:
                return []
            return [
                VersionInfo(
                    kind=kind,
                    version=int(d.attrs["version"]),
                    parent=int(d.attrs["parent"]),
                    editor=str(d.attrs["editor"]),
                    time=str(d.attrs["time"]),
                    note=str(d.attrs["note"]),
                    sha256=str(d.attrs["sha256"]),
                )
                for name, d in sorted(group.items())
                if name.startswith("v")
            ]

    def read_version(
        self, case_id: str, kind: MaskKind | str, version: int | None = None
    ) -> np.ndarray:
        """A saved mask version (the latest when ``version`` is None), checksum verified."""
        kind = MaskKind(kind)
        with self._open(case_id) as handle:
            latest = _latest_version(handle, kind)
            number = latest if version is None else version
            if not 1 <= number <= latest:
                raise CaseStoreError(
                    f"case {case_id} has no {kind.value} mask version {number}"
                    + (f" (versions 1..{latest} exist)" if latest else " (none saved yet)")
                )
            return self._read_array(handle, f"reviews/{kind.value}/v{number:04d}")

    def approve(self, case_id: str, kind: MaskKind | str, *, version: int, editor: str) -> None:
        """Record that ``editor`` approved a mask version; only approvals advance a case.

        Raises
        ------
        CaseStoreError
            If the version does not exist or is unreadable, or an A/V mask is approved before
            the vessel mask or labels a vessel version no longer approved.
        """
        kind = MaskKind(kind)
        if not editor or not editor.strip():
            raise CaseStoreError("an editor name is required to approve a mask")

        def change(handle: h5py.File) -> None:
            latest = _latest_version(handle, kind)
            if not 1 <= version <= latest:
                raise CaseStoreError(
                    f"case {case_id} has no {kind.value} mask version {version} to approve"
                )
            _record_approval(handle, case_id, kind, version, editor.strip())

        self._mutate(case_id, change)

    def reject(
        self, case_id: str, kind: MaskKind | str, *, version: int, editor: str, reason: str
    ) -> None:
        """Record that ``editor`` rejected a mask version and why; the case leaves the review
        queue (stage ``rejected``) until a new version is saved or a version is approved."""
        kind = MaskKind(kind)
        if not editor or not editor.strip():
            raise CaseStoreError("an editor name is required to reject a mask")
        if not reason or not reason.strip():
            raise CaseStoreError(f"case {case_id}: give a reason for rejecting the {kind} mask")

        def change(handle: h5py.File) -> None:
            latest = _latest_version(handle, kind)
            if not 1 <= version <= latest:
                raise CaseStoreError(
                    f"case {case_id} has no {kind.value} mask version {version} to reject"
                )
            group = handle.require_group(f"reviews/{kind.value}/rejections")
            record = group.create_group(f"r{len(group) + 1:04d}")
            record.attrs.update(
                version=version, editor=editor.strip(), time=_now(), reason=reason.strip()
            )
            _append_event(
                handle,
                "rejected",
                {"kind": kind.value, "version": version, "editor": editor.strip()},
            )

        self._mutate(case_id, change)

    def rejections(self, case_id: str, kind: MaskKind | str) -> list[Rejection]:
        """Every rejection of a mask, oldest first."""
        kind = MaskKind(kind)
        with self._open(case_id) as handle:
            group = handle.get(f"reviews/{kind.value}/rejections")
            return [] if group is None else [_rejection(kind, group[n]) for n in sorted(group)]

    # ---- autosaved edits -------------------------------------------------------------------

    def _autosave_path(self, case_id: str, kind: MaskKind, editor: str) -> Path:
        self.path(case_id)  # validates the id
        digest = hashlib.sha256(editor.strip().encode()).hexdigest()[:16]
        return self.autosave_dir / case_id / f"{kind.value}.{digest}.npz"

    def save_autosave(
        self, case_id: str, kind: MaskKind | str, mask: np.ndarray, *, editor: str, parent: int
    ) -> None:
        """Keep a reviewer's unsaved edits (replacing their previous autosave of that mask).

        Written to a temp file, fsynced and renamed, so a crash mid-write keeps the previous one.
        """
        kind = MaskKind(kind)
        if not editor or not editor.strip():
            raise CaseStoreError("an editor name is required to autosave a mask")
        mask = np.asarray(mask)
        _validate_mask(mask, kind, self.summary(case_id).fundus_shape, case_id)
        target = self._autosave_path(case_id, kind, editor)
        target.parent.mkdir(parents=True, exist_ok=True)
        meta = json.dumps({"editor": editor.strip(), "parent": int(parent), "time": _now()})
        temp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            with open(temp, "wb") as handle:
                np.savez_compressed(
                    handle,
                    mask=mask.astype(np.uint8),
                    meta=np.frombuffer(meta.encode(), np.uint8),
                )
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)
        _fsync_folder(target.parent)

    def read_autosave(self, case_id: str, kind: MaskKind | str, editor: str) -> Autosave | None:
        """The reviewer's autosaved edits of a mask, or None when there are none."""
        kind = MaskKind(kind)
        path = self._autosave_path(case_id, kind, editor)
        return _read_autosave(path, kind, with_mask=True) if path.is_file() else None

    def discard_autosave(self, case_id: str, kind: MaskKind | str, editor: str) -> None:
        """Remove the reviewer's autosave of a mask (after a save, or on their request)."""
        self._autosave_path(case_id, MaskKind(kind), editor).unlink(missing_ok=True)

    def autosaves(self, case_id: str) -> list[Autosave]:
        """Every reviewer's unsaved edits of a case (metadata only), oldest first."""
        self.path(case_id)
        folder = self.autosave_dir / case_id
        found = [
            _read_autosave(p, MaskKind(p.name.split(".")[0]), with_mask=False)
            for p in folder.glob("*.npz")
            if p.name.split(".")[0] in {k.value for k in MaskKind}
        ]
        return sorted(found, key=lambda a: a.time)


# ---- helpers on open files ----------------------------------------------------------------


def _read_checked(handle: h5py.File, name: str, path: Path | str) -> np.ndarray:
    dataset = handle[name]
    try:
        array = dataset[()]
    except OSError as error:
        raise CaseStoreError(_damaged(path, f"dataset {name} is unreadable: {error}")) from None
    if _sha256(array) != dataset.attrs["sha256"]:
        raise CaseStoreError(_damaged(path, f"dataset {name} fails its checksum"))
    return array


def _attrs_text(attrs: h5py.AttributeManager, skip: Collection[str] = ()) -> str:
    values = {}
    for name in sorted(attrs):
        if name in skip:
            continue
        value = attrs[name]
        if isinstance(value, np.ndarray | np.generic):
            value = value.tolist()
        if isinstance(value, bytes):
            value = value.decode("utf-8", "backslashreplace")
        values[name] = value
    return json.dumps(values, sort_keys=True, default=repr)


def _describe(handle: h5py.File) -> dict[str, str]:
    """A digest of every object's name, attributes, shape and dtype (and the event log's text)."""
    entries = {"/": _attrs_text(handle.attrs, skip=_SEAL_ATTRS)}

    def visit(name: str, obj: h5py.Group | h5py.Dataset) -> None:
        text = _attrs_text(obj.attrs)
        if isinstance(obj, h5py.Dataset):
            text += f"|{obj.shape}|{obj.dtype.str}"
            if h5py.check_string_dtype(obj.dtype) is not None:
                text += "|" + "\n".join(obj.asstr()[()])
        entries[name] = text

    handle.visititems(visit)
    return {name: hashlib.sha256(text.encode()).hexdigest()[:20] for name, text in entries.items()}


def _seal(handle: h5py.File) -> None:
    for name in _SEAL_ATTRS:
        if name in handle.attrs:
            del handle.attrs[name]
    handle.attrs["format_version"] = FORMAT_VERSION
    text = json.dumps(_describe(handle), sort_keys=True, separators=(",", ":"))
    handle.attrs["manifest"] = text
    handle.attrs["manifest_sha256"] = hashlib.sha256(text.encode()).hexdigest()


def _check_manifest(handle: h5py.File, path: Path) -> None:
    stored, digest = handle.attrs.get("manifest"), handle.attrs.get("manifest_sha256")
    if stored is None and digest is None and int(handle.attrs["format_version"]) < 2:
        return  # written before manifests; sealed at its next change
    if (
        not isinstance(stored, str)
        or not isinstance(digest, str)
        or hashlib.sha256(stored.encode()).hexdigest() != digest
    ):
        raise CaseStoreError(_damaged(path, "its manifest is missing or altered"))
    expected, actual = json.loads(stored), _describe(handle)
    if actual != expected:
        differing = sorted(set(expected.items()) ^ set(actual.items()))[0][0]
        raise CaseStoreError(_damaged(path, f"{differing} differs from its manifest"))


def _read_only(root: Path, error: OSError) -> str:
    return (
        f"case store {root} cannot be written ({error.strerror or error}); make it writable "
        "(check the mount and the folder's permissions) and run the command again"
    )


def _editor_of(handle: h5py.File, kind: MaskKind, version: int) -> str:
    return str(handle[f"reviews/{kind.value}/v{version:04d}"].attrs["editor"])


def _add_version(
    handle: h5py.File,
    kind: MaskKind,
    mask: np.ndarray,
    *,
    parent: int,
    editor: str,
    note: str,
    vessel: int,
) -> int:
    version = _latest_version(handle, kind) + 1
    group = handle.require_group(f"reviews/{kind.value}")
    dataset = _write_array(group, f"v{version:04d}", mask.astype(np.uint8))
    dataset.attrs.update(version=version, parent=parent, editor=editor, time=_now(), note=note)
    if kind is MaskKind.AV:
        dataset.attrs["vessel_version"] = vessel
    _append_event(handle, "saved", {"kind": kind.value, "version": version, "editor": editor})
    return version


def _record_approval(
    handle: h5py.File, case_id: str, kind: MaskKind, version: int, editor: str
) -> None:
    if kind is MaskKind.AV:
        vessel = _approved_version(handle, MaskKind.VESSEL)
        if not vessel:
            raise CaseStoreError(f"case {case_id}: approve the vessel mask before the A/V mask")
        basis = _av_basis(handle, version)
        if basis != vessel:
            raise CaseStoreError(
                f"case {case_id}: A/V version {version} labels vessel version {basis}, but "
                f"vessel version {vessel} is approved now; run `angioflow curate` to label it "
                "and review that A/V version"
            )
    # Never approve a mask nobody can read back.
    _read_checked(handle, f"reviews/{kind.value}/v{version:04d}", f"of case {case_id}")
    group = handle.require_group(f"reviews/{kind.value}/approvals")
    record = group.create_group(f"a{len(group) + 1:04d}")
    record.attrs.update(version=version, editor=editor, time=_now())
    _append_event(handle, "approved", {"kind": kind.value, "version": version, "editor": editor})


def _save_baseline(handle: h5py.File, case_id: str, baseline: Baseline) -> int:
    kind = MaskKind(baseline.kind)
    latest = _latest_version(handle, kind)
    vessel = _approved_version(handle, MaskKind.VESSEL)
    if kind is MaskKind.VESSEL:
        if latest:
            return 0
    elif not vessel:
        raise CaseStoreError(f"case {case_id} has no approved vessel mask; approve one first")
    elif latest and _av_basis(handle, latest) == vessel:
        return 0
    mask = np.asarray(baseline.mask)
    _validate_mask(mask, kind, tuple(handle["raw/fundus"].shape[:2]), case_id)
    return _add_version(
        handle, kind, mask, parent=latest, editor=PIPELINE_EDITOR, note=baseline.note, vessel=vessel
    )


def _write_array(group: h5py.Group, name: str, array: np.ndarray) -> h5py.Dataset:
    options = _COMPRESSION if array.ndim >= 2 and array.size >= 4096 else {}
    dataset = group.create_dataset(name, data=array, **options)
    dataset.attrs["sha256"] = _sha256(array)
    return dataset


def _append_event(handle: h5py.File, event: str, detail: dict[str, Any]) -> None:
    line = json.dumps({"event": event, "time": _now(), **detail}, sort_keys=True)
    if "events" not in handle:
        handle.create_dataset("events", shape=(0,), maxshape=(None,), dtype=h5py.string_dtype())
    events = handle["events"]
    events.resize((events.shape[0] + 1,))
    events[-1] = line


def _events(handle: h5py.File) -> list[dict[str, Any]]:
    if "events" not in handle:
        return []
    return [json.loads(line) for line in handle["events"].asstr()[()]]


def _latest_version(handle: h5py.File, kind: MaskKind) -> int:
    group = handle.get(f"reviews/{kind.value}")
    if group is None:
        return 0
    return sum(1 for name in group if name.startswith("v"))


def _approved_version(handle: h5py.File, kind: MaskKind) -> int:
    """The latest approval's version; an A/V approval counts only while the version labels the
    approved vessel version and no A/V version for another vessel version followed it."""
    group = handle.get(f"reviews/{kind.value}/approvals")
    if group is None or not len(group):
        return 0
    version = int(group[sorted(group)[-1]].attrs["version"])
    if kind is MaskKind.AV:
        vessel = _approved_version(handle, MaskKind.VESSEL)
        later = range(version, _latest_version(handle, kind) + 1)
        if any(_av_basis(handle, v) != vessel for v in later):
            return 0
    return version


def _av_basis(handle: h5py.File, version: int) -> int:
    """The vessel version an A/V version labels (0: none was approved when it was saved)."""
    dataset = handle[f"reviews/av/v{version:04d}"]
    if "vessel_version" in dataset.attrs:
        return int(dataset.attrs["vessel_version"])
    # Versions saved before they recorded it: the vessel version approved at the time.
    saved, basis = str(dataset.attrs["time"]), 0
    approvals = handle.get("reviews/vessel/approvals")
    for name in sorted(approvals or ()):
        if str(approvals[name].attrs["time"]) <= saved:
            basis = int(approvals[name].attrs["version"])
    return basis


def _rejection(kind: MaskKind, record: h5py.Group) -> Rejection:
    return Rejection(
        kind=kind,
        version=int(record.attrs["version"]),
        editor=str(record.attrs["editor"]),
        time=str(record.attrs["time"]),
        reason=str(record.attrs["reason"]),
    )


def _active_rejection(handle: h5py.File, kind: MaskKind) -> Rejection | None:
    """The latest rejection, while it concerns the latest version and no approval followed."""
    group = handle.get(f"reviews/{kind.value}/rejections")
    if group is None or not len(group):
        return None
    rejection = _rejection(kind, group[sorted(group)[-1]])
    if rejection.version != _latest_version(handle, kind):
        return None
    approvals = handle.get(f"reviews/{kind.value}/approvals")
    if approvals is not None and len(approvals):
        if str(approvals[sorted(approvals)[-1]].attrs["time"]) > rejection.time:
            return None
    return rejection


def _derive_stage(handle: h5py.File, rejected: dict[str, Rejection | None]) -> Stage:
    vessel = _approved_version(handle, MaskKind.VESSEL)
    if vessel:
        latest_av = _latest_version(handle, MaskKind.AV)
        # A/V labels of another vessel version are stale: the case goes back to A/V labelling.
        if not latest_av or _av_basis(handle, latest_av) != vessel:
            return Stage.VESSEL_APPROVED
        if _approved_version(handle, MaskKind.AV):
            return Stage.DONE
        return Stage.REJECTED if rejected[MaskKind.AV] else Stage.AV_REVIEW
    if _latest_version(handle, MaskKind.VESSEL):
        return Stage.REJECTED if rejected[MaskKind.VESSEL] else Stage.VESSEL_REVIEW
    return Stage.INGESTED


def _read_autosave(path: Path, kind: MaskKind, *, with_mask: bool) -> Autosave:
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(archive["meta"].tobytes().decode())
            mask = archive["mask"] if with_mask else None
    except (OSError, ValueError, KeyError) as error:
        raise CaseStoreError(
            f"autosave {path} is unreadable ({error.__class__.__name__}); delete it to go on"
        ) from None
    return Autosave(kind, str(meta["editor"]), int(meta["parent"]), str(meta["time"]), mask)


def _validate_new_case(case: NewCase) -> None:
    if case.fundus.ndim != 3 or case.fundus.shape[2] != 3 or case.fundus.dtype != np.uint8:
        raise CaseStoreError(
            f"fundus must be (H, W, 3) uint8, got {case.fundus.shape} {case.fundus.dtype}"
        )
    if not case.fa_frames or not len(case.fa_frames) == len(case.fa_times_s) == len(case.fa_files):
        raise CaseStoreError("a case needs >= 1 FA frame, each with a time and a file name")
    for frame in case.fa_frames:
        if frame.ndim != 2 or frame.dtype not in (np.uint8, np.uint16):
            raise CaseStoreError(
                f"FA frames must be (h, w) uint8/uint16, got {frame.shape} {frame.dtype}"
            )


def _validate_mask(mask: np.ndarray, kind: MaskKind, shape: tuple[int, ...], case_id: str) -> None:
    if mask.shape != shape:
        raise CaseStoreError(
            f"case {case_id}: {kind.value} mask has shape {mask.shape} but the fundus photo is "
            f"{shape}; masks live in fundus coordinates (H, W)"
        )
    if not np.issubdtype(mask.dtype, np.integer) and mask.dtype != np.bool_:
        raise CaseStoreError(
            f"case {case_id}: {kind.value} mask must hold integer labels, got {mask.dtype}"
        )
    found = set(np.unique(mask).tolist())
    if not found <= kind.labels:
        raise CaseStoreError(
            f"case {case_id}: {kind.value} mask holds labels {sorted(found - kind.labels)} outside "
            f"the allowed {sorted(kind.labels)}"
        )


def _write_new_case(handle: h5py.File, case: NewCase) -> None:
    handle.attrs.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        case_id=case.case_id,
        patient_pseudonym=case.patient_pseudonym,
        eye=case.eye,
        camera=case.camera,
        acquired_year=case.acquired_year or 0,
        source_sha256=case.source_sha256,
        created=_now(),
        software_version=software_version(),
        complete=False,
    )
    raw = handle.create_group("raw")
    _write_array(raw, "fundus", case.fundus)
    fa = raw.create_group("fa")
    for index, (frame, time_s, name) in enumerate(
        zip(case.fa_frames, case.fa_times_s, case.fa_files, strict=True)
    ):
        dataset = _write_array(fa, f"{index:03d}", frame)
        dataset.attrs.update(time_s=float(time_s), file=name)
    _append_event(handle, "ingested", {"n_frames": len(case.fa_frames)})
    handle.attrs["complete"] = True


def _process_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) terminates the process on Windows: assume it is alive
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_folder(folder: Path) -> None:
    if os.name == "nt":  # Windows cannot open a folder as a file; NTFS renames are journaled
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
