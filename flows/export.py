"""`angioflow export`: approved masks and their images, one HDF5 file for training generators.

Layout::

    /<nnnnn>/fundus   (H, W, 3) uint8      the case's fundus photo
    /<nnnnn>/vessel   (H, W) uint8 0/1     the approved vessel mask version
    /<nnnnn>/av       (H, W) uint8 0-3     the approved A/V mask version
    /<nnnnn>/fov      (H, W) uint8 0/1     the photo's field of view (stage 3)
    group attrs: case_id (pseudonymous), vessel_version, av_version, vessel_sha256, av_sha256
    file attrs: created, software_version, cases

Only cases whose A/V mask is approved (stage ``done``) are exported. The file is written under
a temporary name and renamed; an existing file is never overwritten.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import h5py

from pipeline.casestore import CaseStore, CaseStoreError, MaskKind, Stage, software_version

__all__ = ["export_approved"]


def export_approved(store: CaseStore, out: Path) -> dict[str, list[str]]:
    """Write every done case's approved masks and photo to ``out``.

    Returns
    -------
    summary : dict
        ``{"exported": [case ids], "skipped": [case ids not done], "unreadable": [...]}``.

    Raises
    ------
    FileExistsError
        If ``out`` exists (exports are versioned: name a new file).
    """
    if out.exists():
        raise FileExistsError(f"{out} exists; exports are never overwritten, name a new file")
    summary: dict[str, list[str]] = {"exported": [], "skipped": [], "unreadable": []}
    temp = out.with_name(f".{out.name}.tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with h5py.File(temp, "w") as handle:
            for case_id in store.case_ids():
                try:
                    summary_of_case = store.summary(case_id)
                    if summary_of_case.stage is not Stage.DONE:
                        summary["skipped"].append(case_id)
                        continue
                    _write_case(handle, store, case_id, len(summary["exported"]))
                except CaseStoreError as error:
                    summary["unreadable"].append(f"{case_id}: {error}")
                    continue
                summary["exported"].append(case_id)
            handle.attrs.update(
                created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                software_version=software_version(),
                cases=len(summary["exported"]),
            )
        temp.replace(out)
    finally:
        temp.unlink(missing_ok=True)
    return summary


def _write_case(handle: h5py.File, store: CaseStore, case_id: str, index: int) -> None:
    approved = store.summary(case_id).approved_versions
    group = handle.create_group(f"{index:05d}")
    options = {"compression": "gzip", "compression_opts": 4}
    group.create_dataset("fundus", data=store.read_raw(case_id).fundus, **options)
    for kind in (MaskKind.VESSEL, MaskKind.AV):
        version = approved[kind]
        mask = store.read_version(case_id, kind, version)
        group.create_dataset(kind.value, data=mask, **options)
        info = store.versions(case_id, kind)[version - 1]
        group.attrs[f"{kind.value}_version"] = version
        group.attrs[f"{kind.value}_sha256"] = info.sha256
    fov = store.read_stage(case_id, "vessel_maps", arrays=("fundus_fov",)).arrays["fundus_fov"]
    group.create_dataset("fov", data=fov, **options)
    group.attrs["case_id"] = case_id
