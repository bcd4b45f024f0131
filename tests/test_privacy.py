"""Pseudonymisation keys and pseudonyms."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

import pytest

from pipeline.privacy import (
    KEY_FILE_NAME,
    case_pseudonym,
    load_or_create_key,
    patient_pseudonym,
    redact,
)


def test_key_file_is_created_private_once_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANGIOFLOW_SECRET", raising=False)
    key = load_or_create_key(tmp_path)
    assert stat.S_IMODE((tmp_path / KEY_FILE_NAME).stat().st_mode) == 0o600
    assert load_or_create_key(tmp_path) == key and len(key) == 64


def _first_use(folder: str, queue: multiprocessing.Queue) -> None:
    queue.put(load_or_create_key(Path(folder)))


def test_concurrent_first_uses_agree_on_one_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANGIOFLOW_SECRET", raising=False)
    queue: multiprocessing.Queue = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=_first_use, args=(str(tmp_path), queue)) for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    keys = {queue.get(timeout=30) for _ in workers}
    for worker in workers:
        worker.join()
    assert len(keys) == 1


def test_environment_secret_wins_and_must_be_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANGIOFLOW_SECRET", "x" * 20)
    assert load_or_create_key(tmp_path) == b"x" * 20
    assert not (tmp_path / KEY_FILE_NAME).exists()
    monkeypatch.setenv("ANGIOFLOW_SECRET", "short")
    with pytest.raises(ValueError, match="shorter than 16 characters"):
        load_or_create_key(tmp_path)


def test_key_file_readable_by_others_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANGIOFLOW_SECRET", raising=False)
    load_or_create_key(tmp_path)
    (tmp_path / KEY_FILE_NAME).chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_or_create_key(tmp_path)


def test_pseudonyms_depend_on_key_patient_eye_and_date() -> None:
    key, other = b"k" * 32, b"j" * 32
    assert patient_pseudonym("123", key=key) == patient_pseudonym("123", key=key)
    assert patient_pseudonym("123", key=key) != patient_pseudonym("123", key=other)
    assert patient_pseudonym("123", key=key) != patient_pseudonym("124", key=key)
    cases = {
        case_pseudonym("123", eye, date, key=key)
        for eye in ("OD", "OS")
        for date in ("", "2024-01-01")
    }
    assert len(cases) == 4
    assert all(c.startswith(patient_pseudonym("123", key=key) + "_") for c in cases)


def test_redact_removes_every_occurrence() -> None:
    assert redact("a/ID42/ID42.png", "ID42", "") == "a/<redacted>/<redacted>.png"
