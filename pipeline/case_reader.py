"""Read a raw case in two steps, so that memory can be reserved before pixels are decoded:
:func:`check_raw_case` validates case.json (:mod:`pipeline.case_json`) and every image header
(nothing decoded) and says how many bytes the decoded images take; :func:`load_raw_case`
decodes them. Every failure is a :class:`pipeline.raw_case.CaseRejected` without the patient id.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from angioflow.pipeline.case_json import CaseDocument, read_case_json, require_regular_file
from angioflow.pipeline.io import (
    ImageHeader,
    ImageRejected,
    as_fa_frame,
    as_fundus,
    read_header,
    read_image,
)
from angioflow.pipeline.privacy import contains_id, redact
from angioflow.pipeline.raw_case import (
    CaseLimits,
    CaseRejected,
    case_label,
    peek_exam,
)

__all__ = ["CasePlan", "RawCase", "check_raw_case", "load_raw_case", "read_raw_case"]


@dataclass(frozen=True)
class CasePlan:
    """A raw case whose case.json and image headers passed the contract; nothing decoded.

    Attributes
    ----------
    label : str
        Display label of the case folder (never the patient id).
    folder : Path
        The case folder, links resolved.
    document : CaseDocument
        case.json's contract fields, checked.
    decoded_bytes : int
        Memory the decoded images will take, bytes (from the headers).
    """

    label: str
    folder: Path
    document: CaseDocument
    decoded_bytes: int


@dataclass(frozen=True)
class RawCase:
    """One validated exam, pixels loaded.

    Attributes
    ----------
    plan : CasePlan
        The checked case: its label, its folder and case.json's contract fields.
    fundus : (H, W, 3) uint8 ndarray
    fa_frames : tuple of (h, w) uint8 or uint16 ndarray
        In the order of ``plan.document.fa_files``; all frames share one shape.
    source_sha256 : str
        Digest of case.json's contract fields and every image file's bytes; equal digests mean
        an unchanged case.
    """

    plan: CasePlan
    fundus: np.ndarray
    fa_frames: tuple[np.ndarray, ...]
    source_sha256: str


def read_raw_case(case_dir: Path, *, root: Path, limits: CaseLimits = CaseLimits()) -> RawCase:
    """Validate a raw case folder against the contract and load its images.

    Equivalent to ``load_raw_case(check_raw_case(case_dir, root=root, limits=limits),
    limits=limits)``.

    Parameters
    ----------
    case_dir, root, limits
        As :func:`check_raw_case`.

    Returns
    -------
    case : RawCase
        The validated exam, its images decoded.

    Raises
    ------
    CaseRejected
        On any breach of the contract; the message names the case and file.
    """
    return load_raw_case(check_raw_case(case_dir, root=root, limits=limits), limits=limits)


def check_raw_case(case_dir: Path, *, root: Path, limits: CaseLimits = CaseLimits()) -> CasePlan:
    """Validate case.json and every image header of a raw case folder; decode no pixel.

    Parameters
    ----------
    case_dir : Path
        The case folder.
    root : Path
        The ingestion source folder; ``case_dir`` (after resolving links) must lie inside it.
    limits : CaseLimits
        Image size, frame count, time and decoded-size limits.

    Returns
    -------
    plan : CasePlan
        What :func:`load_raw_case` will decode, and how many bytes that takes.

    Raises
    ------
    CaseRejected
        On any breach of the contract found without decoding pixels, the total decoded size
        above ``limits.max_case_bytes`` included; the message names the case and file.
    """
    label = case_label(case_dir)
    with _redacted(peek_exam(case_dir)[0], label):
        return _check(case_dir, label, root, limits)


def load_raw_case(plan: CasePlan, *, limits: CaseLimits = CaseLimits()) -> RawCase:
    """Decode the images of a checked case (:func:`check_raw_case`).

    Returns
    -------
    case : RawCase

    Raises
    ------
    CaseRejected
        Truncated or corrupt pixels, the wrong modality, a blank image, frames whose decoded
        sizes differ, or files changed since the check.
    """
    with _redacted(plan.document.patient_id, plan.label):
        return _load_pixels(plan, limits)


@contextlib.contextmanager
def _redacted(patient_id: str, label: str) -> Iterator[None]:
    """Re-raise a :class:`CaseRejected` with the patient id removed from its text."""
    try:
        yield
    except CaseRejected as error:
        if patient_id and contains_id(f"{error.file} {error.reason}", patient_id):
            raise CaseRejected(
                label, redact(error.file, patient_id), redact(error.reason, patient_id)
            ) from None
        raise


def _check(case_dir: Path, label: str, root: Path, limits: CaseLimits) -> CasePlan:
    folder = case_dir.resolve()
    if not folder.is_relative_to(root.resolve()):
        raise CaseRejected(
            label, "", "the case folder is a link that leaves the source folder; copy the case in"
        )
    document = read_case_json(case_dir, label, limits)
    decoded = _header(folder, document.fundus_file, label, limits).decoded_bytes
    first = None
    for name in document.fa_files:
        header = _header(folder, name, label, limits)
        if first is not None and (header.width, header.height) != (first.width, first.height):
            raise CaseRejected(
                label,
                name,
                _size_differs(header.width, header.height, first.width, first.height),
            )
        first = first or header
        decoded += header.decoded_bytes
    if decoded > limits.max_case_bytes:
        raise CaseRejected(
            label,
            "",
            f"its {1 + len(document.fa_files)} images take {_mib(decoded)} MiB once decoded, "
            f"above the limit of {_mib(limits.max_case_bytes)} MiB per case; if the exam is "
            "genuine, raise the limit (ingest --max-case-mb, or max_case_mb in the catalog's "
            "raw_exams)",
        )
    return CasePlan(label=label, folder=folder, document=document, decoded_bytes=decoded)


def _mib(size: int) -> str:
    return f"{size / (1 << 20):,.0f}"


def _size_differs(width: int, height: int, first_width: int, first_height: int) -> str:
    return (
        f"size {width}x{height} differs from the first frame's {first_width}x{first_height}; "
        "all FA frames of an exam come from one camera at one size"
    )


def _load_pixels(plan: CasePlan, limits: CaseLimits) -> RawCase:
    label, folder, document = plan.label, plan.folder, plan.document
    digest = hashlib.sha256(document.canonical_bytes)
    fundus_pixels = _load(folder, document.fundus_file, label, limits, digest)
    try:
        fundus = as_fundus(fundus_pixels)
    except ImageRejected as error:
        raise CaseRejected(label, document.fundus_file, str(error)) from None

    frames: list[np.ndarray] = []
    for name in document.fa_files:
        try:
            frame = as_fa_frame(_load(folder, name, label, limits, digest))
        except ImageRejected as error:
            raise CaseRejected(label, name, str(error)) from None
        if frames and frame.shape != frames[0].shape:
            (height, width), (first_height, first_width) = frame.shape, frames[0].shape
            raise CaseRejected(label, name, _size_differs(width, height, first_width, first_height))
        frames.append(frame)
    return RawCase(plan, fundus, tuple(frames), digest.hexdigest())


def _inside(folder: Path, name: str, label: str) -> Path:
    path = folder / name
    if path.is_symlink() and not path.resolve().is_relative_to(folder):
        raise CaseRejected(label, name, "is a link that leaves the case folder; copy the file in")
    if not path.resolve().is_relative_to(folder):
        raise CaseRejected(
            label, name, "lies outside the case folder (through a linked folder); copy the file in"
        )
    require_regular_file(path, name, label, "it is listed in case.json but not in the folder")
    return path


def _header(folder: Path, name: str, label: str, limits: CaseLimits) -> ImageHeader:
    path = _inside(folder, name, label)
    try:
        return read_header(path, limits=limits.image)
    except ImageRejected as error:
        raise CaseRejected(label, name, str(error)) from None


def _load(
    folder: Path, name: str, label: str, limits: CaseLimits, digest: hashlib._Hash
) -> np.ndarray:
    path = _inside(folder, name, label)
    try:
        pixels = read_image(path, limits=limits.image)
    except ImageRejected as error:
        raise CaseRejected(label, name, str(error)) from None
    digest.update(name.encode("utf-8"))
    digest.update(path.read_bytes())
    return pixels
