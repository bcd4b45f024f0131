"""Pseudonymisation keys and pseudonyms."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

import pytest
from angioflow.pipeline.privacy import (
    KEY_CHECK_NAME,
    KEY_FILE_NAME,
    StoreKeyError,
    case_pseudonym,
    contains_id,
    id_spellings,
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
    with pytest.raises(StoreKeyError, match="shorter than 16 characters"):
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


def test_redact_and_contains_id_match_any_letter_case_and_numbers_without_leading_zeros() -> None:
    assert redact("scan of doe^jane (DOE^Jane)", "DOE^JANE") == "scan of <redacted> (<redacted>)"
    assert redact("exam 4711, id 0004711", "0004711") == "exam <redacted>, id <redacted>"
    assert contains_id("Folder_mrn-7F3A", "MRN-7f3a") and not contains_id("other", "MRN-7f3a")
    assert id_spellings("0012") == ["0012", "12"] and id_spellings("  ") == []


def _store_with_a_case(root: Path) -> None:
    (root / "cases").mkdir(parents=True)
    (root / "cases" / "p0123456789ab_OD_abcdef.h5").write_bytes(b"stand-in case file")


def test_a_deleted_key_file_is_refused_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANGIOFLOW_SECRET", raising=False)
    load_or_create_key(tmp_path)
    (tmp_path / KEY_FILE_NAME).unlink()
    with pytest.raises(StoreKeyError, match="secret.key is missing.*restore secret.key"):
        load_or_create_key(tmp_path)
    assert not (tmp_path / KEY_FILE_NAME).exists()  # no new, unlinkable key was made


def test_a_store_with_cases_but_no_key_check_never_gets_a_new_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store from before key check values: its lost key is not silently replaced either."""
    monkeypatch.delenv("ANGIOFLOW_SECRET", raising=False)
    _store_with_a_case(tmp_path)
    with pytest.raises(StoreKeyError, match="missing"):
        load_or_create_key(tmp_path)


def test_a_different_secret_is_refused_by_the_key_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANGIOFLOW_SECRET", "first-secret-0123456789")
    first = load_or_create_key(tmp_path)
    check = (tmp_path / KEY_CHECK_NAME).read_bytes()
    assert first not in check and len(check) == 32
    monkeypatch.setenv("ANGIOFLOW_SECRET", "other-secret-0123456789")
    with pytest.raises(StoreKeyError, match=r"\$ANGIOFLOW_SECRET is not the key the store"):
        load_or_create_key(tmp_path)
    monkeypatch.delenv("ANGIOFLOW_SECRET")  # the store was made with the variable, not a file
    with pytest.raises(StoreKeyError, match="missing"):
        load_or_create_key(tmp_path)
    monkeypatch.setenv("ANGIOFLOW_SECRET", "first-secret-0123456789")
    assert load_or_create_key(tmp_path) == first


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"0123", "fewer than 16 characters"),
        (b"\x00\xff" * 20, "other than printable ASCII"),
        (b"x" * 10_000, "not a small text file"),
    ],
)
def test_a_damaged_key_file_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes, message: str
) -> None:
    monkeypatch.delenv("ANGIOFLOW_SECRET", raising=False)
    load_or_create_key(tmp_path)
    (tmp_path / KEY_FILE_NAME).write_bytes(content)
    with pytest.raises(StoreKeyError, match=f"{message}.*damaged; restore it") as error:
        load_or_create_key(tmp_path)
    assert "\n" not in str(error.value)
