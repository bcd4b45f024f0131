"""A case's event log: what happened to it, oldest first.

Events that come with a change of the case file (ingested, stage outputs, saves, approvals,
rejections) are written into the file's ``/events`` in the same commit, so the change and its
event land together or not at all. Events that change nothing else (failed stages) go to the
case's log file beside it, ``cases/<case_id>.log``: JSON lines, each chained to the one before
by a digest, the whole file replaced atomically on every append. Recording a failure thus
writes a few hundred bytes instead of copying the case file with its raw frames.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from pathlib import Path
from typing import Any

import h5py

from ..errors import read_text
from ._file import now, write_atomically
from .records import CaseStoreError

__all__ = ["append_event", "append_to_log", "file_events", "log_events", "merge_events"]


def append_event(handle: h5py.File, event: str, detail: dict[str, Any]) -> None:
    """Append an event to the case file's ``/events`` (part of the commit being built)."""
    line = json.dumps({"event": event, "time": now(), **detail}, sort_keys=True)
    if "events" not in handle:
        handle.create_dataset("events", shape=(0,), maxshape=(None,), dtype=h5py.string_dtype())
    events = handle["events"]
    events.resize((events.shape[0] + 1,))
    events[-1] = line


def file_events(handle: h5py.File) -> list[dict[str, Any]]:
    """The events stored in the case file, oldest first."""
    if "events" not in handle:
        return []
    return [json.loads(line) for line in handle["events"].asstr()[()]]


def _chain(previous: str, text: str) -> str:
    return hashlib.sha256((previous + text).encode()).hexdigest()[:20]


def _seed(case_id: str) -> str:
    # Binds the log to its case: a log copied beside another case fails its first link.
    return _chain("angioflow-case-log", case_id)


def _damaged_log(path: Path, what: str) -> str:
    return (
        f"event log {path} is damaged ({what}); restore it from a backup, or delete it to go on "
        "(it holds only the case's failure messages)"
    )


def _read_log(path: Path, case_id: str) -> tuple[list[dict[str, Any]], list[str], str]:
    """The log's events, its lines and the digest of the last one (checked link by link)."""
    text = ""
    if path.is_file():
        text = read_text(
            path, "utf-8", lambda error: CaseStoreError(_damaged_log(path, type(error).__name__))
        )
    lines = text.splitlines()
    events, chain = [], _seed(case_id)
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
            link = record.pop("chain")
        except (ValueError, KeyError, AttributeError, TypeError):
            raise CaseStoreError(_damaged_log(path, f"line {number} is not an event")) from None
        chain = _chain(chain, json.dumps(record, sort_keys=True))
        if link != chain:
            raise CaseStoreError(_damaged_log(path, f"line {number} fails its digest"))
        events.append(record)
    return events, lines, chain


def log_events(path: Path, case_id: str) -> list[dict[str, Any]]:
    """The events of a case's log file (none when it has none), oldest first.

    Raises
    ------
    CaseStoreError
        When a line was changed, removed from the middle or reordered.
    """
    return _read_log(path, case_id)[0]


def append_to_log(
    path: Path, case_id: str, event: str, detail: dict[str, Any], store_root: Path
) -> None:
    """Append an event to a case's log file; the caller holds the case's lock.

    The log is small, so it is written whole to a temp file and renamed over the old one: an
    interrupted append leaves the previous log, never a torn line.
    """
    _, lines, chain = _read_log(path, case_id)
    record = {"event": event, "time": now(), **detail}
    link = _chain(chain, json.dumps(record, sort_keys=True))
    text = "".join(f"{line}\n" for line in lines)
    text += json.dumps({**record, "chain": link}, sort_keys=True) + "\n"
    write_atomically(path, lambda out: out.write(text.encode("utf-8")), store_root)


def merge_events(*logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events of several logs in one list by time; each log keeps its own order (ties go to
    the earlier log)."""
    return list(heapq.merge(*logs, key=lambda e: str(e.get("time", ""))))
