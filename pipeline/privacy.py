"""Pseudonymisation of patient identifiers with a keyed HMAC.

A patient id read from a raw case never leaves ingestion: the case store, logs, errors and
every later output only ever see keyed-HMAC pseudonyms. The key comes from the environment
variable ``ANGIOFLOW_SECRET`` or, when that is unset, from a key file created with mode 0600
inside the store on first use. Without the key, pseudonyms cannot be linked back to patients.

The store keeps a key check value (``key.check``: an HMAC of a fixed text under the key, which
reveals nothing of the key) so that a lost key file or a different secret is refused instead of
silently giving every patient a second, unlinkable pseudonym.

References
----------
.. [1] RFC 2104, "HMAC: Keyed-Hashing for Message Authentication".
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import stat
from pathlib import Path

from angioflow.pipeline.casestore import CaseStoreError
from angioflow.pipeline.errors import read_text

__all__ = [
    "KEY_CHECK_NAME",
    "KEY_ENV",
    "KEY_FILE_NAME",
    "StoreKeyError",
    "case_pseudonym",
    "contains_id",
    "id_spellings",
    "load_or_create_key",
    "patient_pseudonym",
    "redact",
]

KEY_ENV = "ANGIOFLOW_SECRET"
KEY_FILE_NAME = "secret.key"
KEY_CHECK_NAME = "key.check"
_MIN_SECRET_CHARS = 16
_MAX_KEY_FILE_BYTES = 4096
_KEY_CHECK_MESSAGE = b"angioflow key check value, version 1"
REDACTED = "<redacted>"


class StoreKeyError(CaseStoreError):
    """The pseudonymisation key is missing, damaged or not the one the store was made with."""


def load_or_create_key(store_root: Path) -> bytes:
    """Return the store's pseudonymisation key, creating a key file on a new store's first use.

    Parameters
    ----------
    store_root : Path
        Root folder of the case store. The key file ``secret.key`` (mode 0600) and the key
        check value ``key.check`` live there.

    Returns
    -------
    key : bytes
        ``$ANGIOFLOW_SECRET`` encoded as UTF-8 when set, else the key file's text.

    Raises
    ------
    StoreKeyError
        If ``$ANGIOFLOW_SECRET`` is shorter than 16 characters; the key file is damaged (short,
        binary, oversized); the key file is missing from a store that already holds cases or a
        key check value; or the key does not match the store's key check value. The message is
        one line and says how to restore the key.
    PermissionError
        If the key file is readable or writable by anyone but its owner.

    Example
    -------
    >>> key = load_or_create_key(Path("store"))  # doctest: +SKIP
    """
    from_env = os.environ.get(KEY_ENV)
    if from_env is not None:
        if len(from_env) < _MIN_SECRET_CHARS:
            raise StoreKeyError(
                f"${KEY_ENV} is set but shorter than {_MIN_SECRET_CHARS} characters; use a long "
                "random secret, e.g. python -c 'import secrets; print(secrets.token_hex(32))'"
            )
        key, origin = from_env.encode("utf-8"), f"${KEY_ENV}"
    else:
        key, origin = _key_from_file(store_root), f"{store_root / KEY_FILE_NAME}"
    _check_key(store_root, key, origin)
    return key


def _key_from_file(store_root: Path) -> bytes:
    store_root.mkdir(parents=True, exist_ok=True)
    key_path = store_root / KEY_FILE_NAME
    if not key_path.exists():
        if (store_root / KEY_CHECK_NAME).exists() or _holds_cases(store_root):
            raise StoreKeyError(
                f"{key_path} is missing, but the cases in {store_root} were pseudonymised with a "
                f"key; restore secret.key from your backup (chmod 600) or set ${KEY_ENV} to the "
                "secret the store was made with; a new key would give every patient a second, "
                "unlinkable pseudonym"
            )
        _create_key_file(key_path)
    mode = stat.S_IMODE(key_path.stat().st_mode)
    if mode & 0o077:
        raise PermissionError(
            f"{key_path} has mode {mode:o}, readable by other users; run: chmod 600 {key_path}"
        )
    if not key_path.is_file() or key_path.stat().st_size > _MAX_KEY_FILE_BYTES:
        raise StoreKeyError(_damaged(key_path, "is not a small text file"))
    key = key_path.read_bytes().strip()
    if len(key) < _MIN_SECRET_CHARS:
        raise StoreKeyError(_damaged(key_path, f"holds fewer than {_MIN_SECRET_CHARS} characters"))
    if not all(0x21 <= byte < 0x7F for byte in key):
        raise StoreKeyError(_damaged(key_path, "holds characters other than printable ASCII"))
    return key


def _damaged(key_path: Path, what: str) -> str:
    return (
        f"{key_path} {what}: the key file is damaged; restore it from your backup (chmod 600), "
        "since without the original key re-ingested cases get new pseudonyms"
    )


def _holds_cases(store_root: Path) -> bool:
    cases = store_root / "cases"
    return cases.is_dir() and any(cases.glob("*.h5"))


def _key_check_value(key: bytes) -> str:
    return hmac.new(key, _KEY_CHECK_MESSAGE, hashlib.sha256).hexdigest()[:32]


def _check_key(store_root: Path, key: bytes, origin: str) -> None:
    """Compare ``key`` with the store's key check value, writing it on a store's first use."""
    check_path = store_root / KEY_CHECK_NAME
    expected = _key_check_value(key)
    if not check_path.exists():
        # A store made before key check values existed gets one from the key in use now.
        store_root.mkdir(parents=True, exist_ok=True)
        _write_once(check_path, expected.encode("ascii"), mode=0o644)
    stored = read_text(
        check_path,
        "ascii",
        lambda error: StoreKeyError(
            f"{check_path} cannot be read ({getattr(error, 'strerror', None) or 'not text'}); "
            "restore it from your backup of the store"
        ),
    ).strip()
    if not hmac.compare_digest(stored, expected):
        restore = (
            f"set ${KEY_ENV} to the secret this store was made with, or unset it to use "
            f"{store_root / KEY_FILE_NAME}"
            if origin.startswith("$")
            else f"restore {KEY_FILE_NAME} from your backup (chmod 600) or set ${KEY_ENV} to the "
            "secret the store was made with"
        )
        raise StoreKeyError(
            f"the pseudonymisation key from {origin} is not the key the store {store_root} was "
            f"made with ({KEY_CHECK_NAME} differs); {restore}; another key would give every "
            "patient a second, unlinkable pseudonym"
        )


def _create_key_file(key_path: Path) -> None:
    _write_once(key_path, secrets.token_hex(32).encode("ascii"), mode=0o600)


def _write_once(path: Path, content: bytes, *, mode: int) -> None:
    # Write a temp file, then hard-link it into place: link() fails if another process
    # created the file first, so concurrent first uses agree on one content.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def _digest(key: bytes, *parts: str) -> str:
    message = "\x1f".join(parts).encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def patient_pseudonym(patient_id: str, *, key: bytes) -> str:
    """Keyed pseudonym of a patient: ``'p'`` + 12 hex characters.

    Every exam of one patient gets the same pseudonym, so datasets can be split by patient.

    Example
    -------
    >>> patient_pseudonym("12345", key=b"k" * 32)
    'pafb434f50f27'
    """
    return "p" + _digest(key, "patient", patient_id)[:12]


def case_pseudonym(patient_id: str, eye: str, acquired: str, *, key: bytes) -> str:
    """Keyed, file-name-safe id of one exam: ``<patient pseudonym>_<eye>_<6 hex>``.

    Parameters
    ----------
    patient_id : str
        Raw patient id from ``case.json``.
    eye : {'OD', 'OS'}
        Right or left eye.
    acquired : str
        Acquisition date as written in ``case.json`` (``''`` when absent), so two exams of one
        eye on different days are different cases.

    Example
    -------
    >>> case_pseudonym("12345", "OD", "2024-01-31", key=b"k" * 32)
    'pafb434f50f27_OD_2d5309'
    """
    exam = _digest(key, "exam", patient_id, eye, acquired)[:6]
    return f"{patient_pseudonym(patient_id, key=key)}_{eye}_{exam}"


def id_spellings(patient_id: str) -> list[str]:
    """The ways a patient id is commonly written: as given and, for a number with leading
    zeros, without them (``'0012345'`` -> ``['0012345', '12345']``). Letter case is matched
    separately (:func:`contains_id`, :func:`redact`)."""
    value = patient_id.strip()
    if not value:
        return []
    spellings = [value]
    if value.isdigit() and value.lstrip("0") and value.lstrip("0") != value:
        spellings.append(value.lstrip("0"))
    return spellings


def _pattern(secrets_to_hide: tuple[str, ...]) -> re.Pattern[str] | None:
    spellings = sorted(
        {s for secret in secrets_to_hide for s in id_spellings(secret)}, key=len, reverse=True
    )
    if not spellings:
        return None
    return re.compile("|".join(re.escape(s) for s in spellings), re.IGNORECASE)


def contains_id(text: str, *secrets_to_find: str) -> bool:
    """Whether ``text`` holds any of the secrets in any letter case or spelling
    (:func:`id_spellings`)."""
    pattern = _pattern(secrets_to_find)
    return bool(pattern and pattern.search(text))


def redact(text: str, *secrets_to_hide: str) -> str:
    """Return ``text`` with every occurrence of each non-empty secret replaced by ``<redacted>``.

    Occurrences in any letter case and any spelling of :func:`id_spellings` are replaced. A last
    line of defence for messages built from user-supplied names (folder or file names, camera
    fields that happen to contain a patient id).

    Example
    -------
    >>> redact("Doe^Jane/fa/DOE^JANE_1.png", "DOE^JANE")
    '<redacted>/fa/<redacted>_1.png'
    """
    pattern = _pattern(secrets_to_hide)
    return pattern.sub(REDACTED, text) if pattern else text
