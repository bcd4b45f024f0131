"""One case's HDF5 file on disk: checksummed arrays, the sealed manifest, atomic replacement,
copy-on-write commits and the per-case lock."""

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
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import IO, Any

import h5py
import numpy as np
from filelock import FileLock

from ..h5_formats import CASE
from .records import CaseStoreError, software_version

CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
_SEAL_ATTRS = ("manifest", "manifest_sha256")
# What h5py raises on a file whose bytes were changed under it: a damaged object header, heap or
# B-tree surfaces as any of these, depending on which byte changed.
DAMAGE_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, UnicodeDecodeError)


def now() -> str:
    """The current UTC time, ISO 8601 with milliseconds (sorts as text)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def sha256(array: np.ndarray) -> str:
    """Hex sha256 of an array's bytes (C order)."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def damaged(path: Path | str, what: str) -> str:
    """The one-line message for a damaged case file, with how to recover."""
    return (
        f"case file {path} is damaged ({what}); restore it from a backup or re-ingest the case "
        "with --replace"
    )


def read_only(root: Path, error: OSError) -> str:
    """The one-line message for a store that cannot be written."""
    return (
        f"case store {root} cannot be written ({error.strerror or error}); make it writable "
        "(check the mount and the folder's permissions) and run the command again"
    )


# ---- arrays and the manifest ------------------------------------------------------------------


def write_array(group: h5py.Group, name: str, array: np.ndarray) -> h5py.Dataset:
    """Store an array (gzip when large) with the sha256 of its bytes."""
    options = _COMPRESSION if array.ndim >= 2 and array.size >= 4096 else {}
    dataset = group.create_dataset(name, data=array, **options)
    dataset.attrs["sha256"] = sha256(array)
    return dataset


def read_checked(handle: h5py.File, name: str, path: Path | str) -> np.ndarray:
    """Read a dataset and check it against its stored sha256."""
    dataset = handle[name]
    try:
        array = dataset[()]
    except OSError as error:
        raise CaseStoreError(damaged(path, f"dataset {name} is unreadable: {error}")) from None
    if sha256(array) != dataset.attrs["sha256"]:
        raise CaseStoreError(damaged(path, f"dataset {name} fails its checksum"))
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
    """A digest of every object's name, attributes, shape and dtype (and the text of string
    datasets: the in-file event log)."""
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


def seal(handle: h5py.File) -> None:
    """Stamp the current format version and write the manifest of the file as it now is."""
    for name in _SEAL_ATTRS:
        if name in handle.attrs:
            del handle.attrs[name]
    handle.attrs["format_version"] = CASE.version
    text = json.dumps(_describe(handle), sort_keys=True, separators=(",", ":"))
    handle.attrs["manifest"] = text
    handle.attrs["manifest_sha256"] = hashlib.sha256(text.encode()).hexdigest()


def check_manifest(handle: h5py.File, path: Path) -> None:
    """Raise :class:`CaseStoreError` when the file differs from its sealed manifest."""
    stored, digest = handle.attrs.get("manifest"), handle.attrs.get("manifest_sha256")
    if stored is None and digest is None and int(handle.attrs["format_version"]) < 2:
        return  # written before manifests; sealed at its next change
    if (
        not isinstance(stored, str)
        or not isinstance(digest, str)
        or hashlib.sha256(stored.encode()).hexdigest() != digest
    ):
        raise CaseStoreError(damaged(path, "its manifest is missing or altered"))
    expected, actual = json.loads(stored), _describe(handle)
    if actual != expected:
        differing = sorted(set(expected.items()) ^ set(actual.items()))[0][0]
        raise CaseStoreError(damaged(path, f"{differing} differs from its manifest"))


# ---- atomic files -------------------------------------------------------------------------


def write_atomically(target: Path, write: Callable[[IO[bytes]], Any], store_root: Path) -> None:
    """Write a file through a temp file in its folder: fsync, rename over ``target``, fsync the
    folder. A crash at any point leaves the old file or the new one, never a mix.

    Raises
    ------
    CaseStoreError
        When the store cannot be written (read-only mount, no permission).
    """
    temp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except OSError as error:
        if isinstance(error, PermissionError) or error.errno == errno.EROFS:
            raise CaseStoreError(read_only(store_root, error)) from None
        raise
    finally:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)
    fsync_folder(target.parent)


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable."""
    if os.name == "nt":  # Windows cannot open a folder as a file; NTFS renames are journaled
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_orphaned_temp_files(folder: Path) -> None:
    """Remove the temp files of writers killed mid-write (the files they replace are intact)."""
    for temp in folder.glob(".*.tmp"):
        pid = temp.name.split(".")[-3]
        if pid.isdigit() and not _process_alive(int(pid)):
            temp.unlink(missing_ok=True)


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


# ---- the case files of a store ------------------------------------------------------------


class CaseFiles:
    """The ``cases/`` and ``locks/`` folders of a store: naming, locking, checked opening and
    copy-on-write commits of case files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cases_dir = root / "cases"
        self.locks_dir = root / "locks"
        for folder in (self.cases_dir, self.locks_dir):
            folder.mkdir(parents=True, exist_ok=True)
        # Files found matching their manifest, by (inode, size, mtime): every commit renames a
        # new file into place, so a changed case is checked again.
        self._checked: dict[str, tuple[int, int, int]] = {}
        remove_orphaned_temp_files(self.cases_dir)

    def path(self, case_id: str) -> Path:
        """Path of a case's file; ``case_id`` may not name anything outside ``cases/``."""
        if not isinstance(case_id, str) or not CASE_ID.match(case_id):
            raise CaseStoreError(
                f"invalid case id {case_id!r}: use the id shown by `angioflow status` "
                "(letters, digits, '_' and '-')"
            )
        return self.cases_dir / f"{case_id}.h5"

    @contextlib.contextmanager
    def locked(self, case_id: str) -> Iterator[None]:
        """Hold the case's exclusive lock (across threads and processes)."""
        # A new lock object per call: each holds its own file handle, so two threads of one
        # process exclude each other as two processes do.
        with FileLock(self.locks_dir / f"{case_id}.lock", thread_local=False):
            yield

    @contextlib.contextmanager
    def open(self, case_id: str) -> Iterator[h5py.File]:
        """Open a case file for reading, its stamp and manifest checked."""
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
                damaged(path, f"corrupt or incomplete: {error.__class__.__name__}")
            ) from None
        with handle:
            try:
                if handle.attrs.get("format") != CASE.name or not handle.attrs.get("complete"):
                    raise CaseStoreError(
                        f"case file {path} is not a complete angioflow case file; restore it from "
                        "a backup or re-ingest the case with --replace"
                    )
                if int(handle.attrs["format_version"]) > CASE.version:
                    raise CaseStoreError(
                        f"case file {path} has format version {handle.attrs['format_version']}, "
                        f"newer than this angioflow ({software_version()}) reads; upgrade angioflow"
                    )
                # The file opened, not whatever the name points to now (on Windows the driver's
                # handle is no file descriptor: the name it is).
                stat = path.stat() if os.name == "nt" else os.fstat(handle.id.get_vfd_handle())
                identity = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
                if self._checked.get(case_id) != identity:
                    check_manifest(handle, path)
                    self._checked[case_id] = identity
                yield handle
            except CaseStoreError:
                raise
            except DAMAGE_ERRORS as error:
                # Past the manifest check a failing read means damage the manifest cannot see
                # (inside a B-tree or a compressed chunk).
                raise CaseStoreError(damaged(path, f"{type(error).__name__}: {error}")) from None

    def check_readable(self, case_id: str) -> None:
        """Raise :class:`CaseStoreError` unless the case file opens and matches its manifest."""
        with self.open(case_id):
            pass

    def check_writable(self) -> None:
        """Raise :class:`CaseStoreError` when the case folder or locks cannot be written."""
        probe = self.cases_dir / f".write-check.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            probe.write_bytes(b"")
            probe.unlink()
            with self.locked("write-check"):
                pass
        except OSError as error:
            raise CaseStoreError(read_only(self.root, error)) from None

    def verify(self, case_id: str) -> int:
        """Read every checksummed dataset of a case and check it; return how many."""
        with self.open(case_id) as handle:
            names: list[str] = []
            handle.visititems(
                lambda name, obj: (
                    names.append(name)
                    if isinstance(obj, h5py.Dataset) and "sha256" in obj.attrs
                    else None
                )
            )
            for name in names:
                read_checked(handle, name, handle.filename)
            return len(names)

    def commit(
        self, case_id: str, change: Callable[[h5py.File], Any], *, copy_current: bool
    ) -> Any:
        """Write a new version of a case file (lock held) and return ``change``'s result.

        The HDF5 file is built in memory and only then written with plain file I/O to a temp
        file, fsynced and renamed over the old one: a full disk or a read-only store raises a
        clean error and leaves no partial file (HDF5 failing to flush a file on disk crashes
        the process when the failed handle is freed).
        """
        target = self.path(case_id)
        image = io.BytesIO(target.read_bytes() if copy_current else b"")
        try:
            with h5py.File(image, "r+" if copy_current else "w") as handle:
                result = change(handle)
                seal(handle)
        except CaseStoreError:
            raise
        except DAMAGE_ERRORS as error:
            raise CaseStoreError(damaged(target, f"{type(error).__name__}: {error}")) from None
        write_atomically(target, lambda out: out.write(image.getbuffer()), self.root)
        return result

    def mutate(self, case_id: str, change: Callable[[h5py.File], Any]) -> Any:
        """Apply ``change`` to a copy of the case file and put the copy in place atomically."""
        with self.locked(case_id):
            self.check_readable(case_id)  # a damaged file is never copied forward

            def build(handle: h5py.File) -> Any:
                result = change(handle)
                handle.attrs["modified"] = now()
                return result

            return self.commit(case_id, build, copy_current=True)
