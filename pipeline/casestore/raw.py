"""The raw images of a case: written once at ingestion, never changed afterwards."""

from __future__ import annotations

import h5py
import numpy as np

from ..h5_formats import CASE
from ._file import now, read_checked, write_array
from .events import append_event
from .records import CaseStoreError, NewCase, RawImages, software_version

__all__ = ["read_raw", "validate_new_case", "write_new_case"]


def validate_new_case(case: NewCase) -> None:
    """Raise :class:`CaseStoreError` when a new case's arrays have the wrong layout."""
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


def write_new_case(handle: h5py.File, case: NewCase) -> None:
    """Fill an empty case file: root attributes, raw images, the ``ingested`` event."""
    handle.attrs.update(
        format=CASE.name,
        format_version=CASE.version,
        case_id=case.case_id,
        patient_pseudonym=case.patient_pseudonym,
        eye=case.eye,
        camera=case.camera,
        acquired_year=case.acquired_year or 0,
        source_sha256=case.source_sha256,
        created=now(),
        software_version=software_version(),
        complete=False,
    )
    raw = handle.create_group("raw")
    write_array(raw, "fundus", case.fundus)
    fa = raw.create_group("fa")
    for index, (frame, time_s, name) in enumerate(
        zip(case.fa_frames, case.fa_times_s, case.fa_files, strict=True)
    ):
        dataset = write_array(fa, f"{index:03d}", frame)
        dataset.attrs.update(time_s=float(time_s), file=name)
    append_event(handle, "ingested", {"n_frames": len(case.fa_frames)})
    handle.attrs["complete"] = True


def read_raw(handle: h5py.File) -> RawImages:
    """The raw fundus photo and FA frames of an open case file, checksums verified."""
    fa_group = handle["raw/fa"]
    names = sorted(fa_group)
    return RawImages(
        fundus=read_checked(handle, "raw/fundus", handle.filename),
        fa_frames=tuple(read_checked(handle, f"raw/fa/{n}", handle.filename) for n in names),
        fa_times_s=tuple(float(fa_group[n].attrs["time_s"]) for n in names),
    )
