"""Pseudonymisation of patient identifiers with a keyed HMAC.

A patient id read from a raw case never leaves ingestion: the case store, logs, errors and
every later output only ever see keyed-HMAC pseudonyms. The key comes from the environment
variable ``ANGIOFLOW_SECRET`` or, when that is unset, from a key file created with mode 0600
inside the store on first use. Without the key, pseudonyms cannot be linked back to patients.

References
----------
.. [1] RFC 2104, "HMAC: Keyed-Hashing for Message Authentication".
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

__all__ = [
    "KEY_ENV",
    "KEY_FILE_NAME",
    "case_pseudonym",
    "load_or_create_key",
    "patient_pseudonym",
    "redact",
]

KEY_ENV = "ANGIOFLOW_SECRET"
KEY_FILE_NAME = "secret.key"
_MIN_SECRET_CHARS = 16
REDACTED = "<redacted>"


def load_or_create_key(store_root: Path) -> bytes:
    """Return the pseudonymisation key, creating a key file in the store on first use.

    Parameters
    ----------
    store_root : Path
        Root folder of the case store. The key file ``secret.key`` lives there, mode 0600.

    Returns
    -------
    key : bytes
        ``$ANGIOFLOW_SECRET`` encoded as UTF-8 when set, else the 64 hex characters of the
        key file.

    Raises
    ------
    ValueError
        If ``$ANGIOFLOW_SECRET`` is set but shorter than 16 characters.
    PermissionError
        If the key file is readable or writable by anyone but its owner.

    Example
    -------
    >>> key = load_or_create_key(Path("store"))  # doctest: +SKIP
    """
    from_env = os.environ.get(KEY_ENV)
    if from_env is not None:
        if len(from_env) < _MIN_SECRET_CHARS:
            raise ValueError(
                f"${KEY_ENV} is set but shorter than {_MIN_SECRET_CHARS} characters; use a long "
                "random secret, e.g. python -c 'import secrets; print(secrets.token_hex(32))'"
            )
        return from_env.encode("utf-8")

    store_root.mkdir(parents=True, exist_ok=True)
    key_path = store_root / KEY_FILE_NAME
    if not key_path.exists():
        _create_key_file(key_path)
    mode = stat.S_IMODE(key_path.stat().st_mode)
    if mode & 0o077:
        raise PermissionError(
            f"{key_path} has mode {mode:o}, readable by other users; run: chmod 600 {key_path}"
        )
    key = key_path.read_bytes().strip()
    if len(key) < _MIN_SECRET_CHARS:
        raise ValueError(
            f"{key_path} holds a key shorter than {_MIN_SECRET_CHARS} bytes; it is damaged. "
            "Restore it from backup: without the original key, re-ingested cases get new pseudonyms"
        )
    return key


def _create_key_file(key_path: Path) -> None:
    # Write a private temp file, then hard-link it into place: link() fails if another
    # process created the key first, so concurrent first uses agree on one key.
    tmp = key_path.with_name(f".{key_path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secrets.token_hex(32).encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, key_path)
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


def redact(text: str, *secrets_to_hide: str) -> str:
    """Return ``text`` with every occurrence of each non-empty secret replaced by ``<redacted>``.

    A last line of defence for messages built from user-supplied names (folder or file names
    that happen to contain a patient id).
    """
    for secret in secrets_to_hide:
        if secret:
            text = text.replace(secret, REDACTED)
    return text
