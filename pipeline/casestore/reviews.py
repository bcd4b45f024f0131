"""Review versions of the two masks: immutable saved versions, approvals and rejections, and the
stage of a case derived from them.

Every function works on an open case file; the ones that change it run inside a commit
(:meth:`pipeline.casestore._file.CaseFiles.mutate`), so a version, its approval and their events
land together or not at all.
"""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np

from ._file import now, read_checked, write_array
from .events import append_event
from .records import (
    PIPELINE_EDITOR,
    Baseline,
    CaseStoreError,
    CaseSummary,
    MaskKind,
    Rejection,
    Stage,
    StaleVersionError,
    VersionInfo,
)

__all__ = [
    "active_rejection",
    "approve",
    "approved_version",
    "derive_stage",
    "latest_version",
    "reject",
    "rejections",
    "save_baseline",
    "save_version",
    "summarise",
    "validate_mask",
    "versions",
]


def save_version(
    handle: h5py.File,
    case_id: str,
    kind: MaskKind,
    mask: np.ndarray,
    *,
    editor: str,
    parent: int,
    note: str,
    approve: bool,
) -> int:
    """Add a validated uint8 mask as the next version of ``kind`` (and approve it)."""
    latest = latest_version(handle, kind)
    if parent != latest:
        by = f" (by {_editor_of(handle, kind, latest)})" if latest else ""
        raise StaleVersionError(
            f"case {case_id}: the {kind.value} mask was edited from version {parent}, but "
            f"version {latest} has been saved since{by}; reload version {latest} and "
            "merge your edits before saving"
        )
    vessel = approved_version(handle, MaskKind.VESSEL)
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
        handle, kind, mask, parent=parent, editor=editor, note=note, vessel=vessel
    )
    if approve:
        _record_approval(handle, case_id, kind, version, editor)
    return version


def approve(handle: h5py.File, case_id: str, kind: MaskKind, version: int, editor: str) -> None:
    """Record ``editor``'s approval of an existing version."""
    if not 1 <= version <= latest_version(handle, kind):
        raise CaseStoreError(
            f"case {case_id} has no {kind.value} mask version {version} to approve"
        )
    _record_approval(handle, case_id, kind, version, editor)


def reject(
    handle: h5py.File, case_id: str, kind: MaskKind, version: int, editor: str, reason: str
) -> None:
    """Record ``editor``'s rejection of an existing version, with the reason."""
    if not 1 <= version <= latest_version(handle, kind):
        raise CaseStoreError(f"case {case_id} has no {kind.value} mask version {version} to reject")
    group = handle.require_group(f"reviews/{kind.value}/rejections")
    record = group.create_group(f"r{len(group) + 1:04d}")
    record.attrs.update(version=version, editor=editor, time=now(), reason=reason)
    append_event(handle, "rejected", {"kind": kind.value, "version": version, "editor": editor})


def versions(handle: h5py.File, kind: MaskKind) -> list[VersionInfo]:
    """Every saved version of a mask, oldest first."""
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


def rejections(handle: h5py.File, kind: MaskKind) -> list[Rejection]:
    """Every rejection of a mask, oldest first."""
    group = handle.get(f"reviews/{kind.value}/rejections")
    return [] if group is None else [_rejection(kind, group[n]) for n in sorted(group)]


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
    version = latest_version(handle, kind) + 1
    group = handle.require_group(f"reviews/{kind.value}")
    dataset = write_array(group, f"v{version:04d}", mask.astype(np.uint8))
    dataset.attrs.update(version=version, parent=parent, editor=editor, time=now(), note=note)
    if kind is MaskKind.AV:
        dataset.attrs["vessel_version"] = vessel
    append_event(handle, "saved", {"kind": kind.value, "version": version, "editor": editor})
    return version


def _record_approval(
    handle: h5py.File, case_id: str, kind: MaskKind, version: int, editor: str
) -> None:
    if kind is MaskKind.AV:
        vessel = approved_version(handle, MaskKind.VESSEL)
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
    read_checked(handle, f"reviews/{kind.value}/v{version:04d}", f"of case {case_id}")
    group = handle.require_group(f"reviews/{kind.value}/approvals")
    record = group.create_group(f"a{len(group) + 1:04d}")
    record.attrs.update(version=version, editor=editor, time=now())
    append_event(handle, "approved", {"kind": kind.value, "version": version, "editor": editor})


def save_baseline(handle: h5py.File, case_id: str, baseline: Baseline) -> int:
    kind = MaskKind(baseline.kind)
    latest = latest_version(handle, kind)
    vessel = approved_version(handle, MaskKind.VESSEL)
    if kind is MaskKind.VESSEL:
        if latest:
            return 0
    elif not vessel:
        raise CaseStoreError(f"case {case_id} has no approved vessel mask; approve one first")
    elif latest and _av_basis(handle, latest) == vessel:
        return 0
    mask = np.asarray(baseline.mask)
    validate_mask(mask, kind, tuple(handle["raw/fundus"].shape[:2]), case_id)
    return _add_version(
        handle, kind, mask, parent=latest, editor=PIPELINE_EDITOR, note=baseline.note, vessel=vessel
    )


def latest_version(handle: h5py.File, kind: MaskKind) -> int:
    group = handle.get(f"reviews/{kind.value}")
    if group is None:
        return 0
    return sum(1 for name in group if name.startswith("v"))


def approved_version(handle: h5py.File, kind: MaskKind) -> int:
    """The latest approval's version; an A/V approval counts only while the version labels the
    approved vessel version and no A/V version for another vessel version followed it."""
    group = handle.get(f"reviews/{kind.value}/approvals")
    if group is None or not len(group):
        return 0
    version = int(group[sorted(group)[-1]].attrs["version"])
    if kind is MaskKind.AV:
        vessel = approved_version(handle, MaskKind.VESSEL)
        later = range(version, latest_version(handle, kind) + 1)
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


def active_rejection(handle: h5py.File, kind: MaskKind) -> Rejection | None:
    """The latest rejection, while it concerns the latest version and no approval followed."""
    group = handle.get(f"reviews/{kind.value}/rejections")
    if group is None or not len(group):
        return None
    rejection = _rejection(kind, group[sorted(group)[-1]])
    if rejection.version != latest_version(handle, kind):
        return None
    approvals = handle.get(f"reviews/{kind.value}/approvals")
    if approvals is not None and len(approvals):
        if str(approvals[sorted(approvals)[-1]].attrs["time"]) > rejection.time:
            return None
    return rejection


def derive_stage(handle: h5py.File, rejected: dict[str, Rejection | None]) -> Stage:
    vessel = approved_version(handle, MaskKind.VESSEL)
    if vessel:
        latest_av = latest_version(handle, MaskKind.AV)
        # A/V labels of another vessel version are stale: the case goes back to A/V labelling.
        if not latest_av or _av_basis(handle, latest_av) != vessel:
            return Stage.VESSEL_APPROVED
        if approved_version(handle, MaskKind.AV):
            return Stage.DONE
        return Stage.REJECTED if rejected[MaskKind.AV] else Stage.AV_REVIEW
    if latest_version(handle, MaskKind.VESSEL):
        return Stage.REJECTED if rejected[MaskKind.VESSEL] else Stage.VESSEL_REVIEW
    return Stage.INGESTED


def validate_mask(mask: np.ndarray, kind: MaskKind, shape: tuple[int, ...], case_id: str) -> None:
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


def summarise(handle: h5py.File, case_id: str, events: list[dict[str, Any]]) -> CaseSummary:
    """What ``status`` shows of an open case file, given its whole event log."""
    latest = {k.value: latest_version(handle, k) for k in MaskKind}
    approved = {k.value: approved_version(handle, k) for k in MaskKind}
    rejections = {k.value: active_rejection(handle, k) for k in MaskKind}
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
        stage=derive_stage(handle, rejections),
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
