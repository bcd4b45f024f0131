"""`angioflow inspect`: a case's masks, QC images and stage metrics as PNG and JSON files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipeline.casestore import CaseStore, CaseStoreError, MaskKind
from pipeline.qc import AV_RGB, VESSEL_RGB, av_to_rgb, checkerboard, label_overlay, overlay

__all__ = ["case_overview", "inspect_case"]

# Provenance not worth a reader's eye in metrics.json (long transform texts, hashes).
_HIDDEN = {"cache_key", "deformation"}


def _public(params: dict[str, Any]) -> dict[str, Any]:
    cleaned = {k: v for k, v in params.items() if k not in _HIDDEN}
    if "frames" in cleaned:
        cleaned["frames"] = [
            {k: v for k, v in f.items() if k not in _HIDDEN} for f in cleaned["frames"]
        ]
    return cleaned


def case_overview(
    store: CaseStore,
    case_id: str,
    *,
    version: int | None = None,
    kind: MaskKind = MaskKind.VESSEL,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The pictures and figures a reviewer or data engineer looks at first.

    Pictures (uint8 arrays, keyed by their file name in :func:`inspect_case`): ``vessel.png``
    (0/255) and ``av.png`` (RGB: red artery, blue vein, white crossing) when those masks exist —
    the latest versions, or ``version`` of the ``kind`` mask (version 1 is the pipeline's
    baseline) —, ``fundus_vessel.png`` and ``fundus_av.png`` (those masks over the photo),
    ``qc_registration.png`` (checkerboard of the reference frame's vessel map and the
    aggregate), ``qc_fundus.png`` (fundus vessel map green, aligned FA aggregate magenta),
    ``aggregate_mean.png`` and ``aggregate_max.png``. Metrics: stage, review state, shown
    versions, every stage's parameters, quality figures, dropped frames and timings.
    """
    summary = store.summary(case_id)
    if version is not None and not 1 <= version <= summary.latest_versions[kind]:
        latest = summary.latest_versions[kind]
        raise CaseStoreError(
            f"case {case_id} has no {kind.value} mask version {version}"
            + (f" (versions 1..{latest} exist)" if latest else " (none saved yet)")
        )
    pictures: dict[str, np.ndarray] = {}
    fundus = store.read_raw(case_id).fundus
    exported = {}
    for mask_kind, name, render, colours in (
        (MaskKind.VESSEL, "vessel", lambda m: (m > 0).astype(np.uint8) * 255, VESSEL_RGB),
        (MaskKind.AV, "av", av_to_rgb, AV_RGB),
    ):
        versions = store.versions(case_id, mask_kind)
        if not versions:
            continue
        chosen = versions[(version if mask_kind is kind and version else len(versions)) - 1]
        mask = store.read_version(case_id, mask_kind, chosen.version)
        pictures[f"{name}.png"] = render(mask)
        pictures[f"fundus_{name}.png"] = label_overlay(fundus, mask, colours=colours)
        exported[mask_kind.value] = {
            "version": chosen.version,
            "editor": chosen.editor,
            "time": chosen.time,
            "sha256": chosen.sha256,
            "approved": chosen.version == summary.approved_versions[mask_kind],
        }
    metrics: dict[str, Any] = {
        "case_id": case_id,
        "stage": str(summary.stage),
        "vessel_versions": len(store.versions(case_id, MaskKind.VESSEL)),
        "av_versions": len(store.versions(case_id, MaskKind.AV)),
        "exported_versions": exported,
        "stages": {},
    }
    stages: dict[str, Any] = {}
    for name in ("vessel_maps", "registration", "aggregate", "fundus_alignment", "binarisation"):
        try:
            stages[name] = store.read_stage(case_id, name)
        except CaseStoreError:
            continue
        metrics["stages"][name] = {
            "params": _public(stages[name].params),
            "seconds": round(stages[name].seconds, 2),
            "finished": stages[name].finished,
            "software_version": stages[name].software_version,
        }
    if "registration" in stages and "aggregate" in stages:
        reference = stages["registration"].params["reference"]
        frames = stages["vessel_maps"].arrays["frames"]
        pictures["qc_registration.png"] = checkerboard(
            frames[reference], stages["aggregate"].arrays["mean"]
        )
        pictures["aggregate_mean.png"] = stages["aggregate"].arrays["mean"]
        pictures["aggregate_max.png"] = stages["aggregate"].arrays["max"]
        metrics["frames_dropped"] = [
            {"index": f["index"], "reason": f["reason"]}
            for f in stages["registration"].params["frames"]
            if not f["kept"]
        ]
    if "fundus_alignment" in stages:
        pictures["qc_fundus.png"] = overlay(
            stages["vessel_maps"].arrays["fundus"], stages["fundus_alignment"].arrays["fa_mean"]
        )
    return pictures, metrics


def inspect_case(
    store: CaseStore,
    case_id: str,
    out: Path,
    *,
    version: int | None = None,
    kind: MaskKind = MaskKind.VESSEL,
) -> list[Path]:
    """Write :func:`case_overview`'s pictures as PNG files and its figures as ``metrics.json``
    in ``out``; returns the files written."""
    pictures, metrics = case_overview(store, case_id, version=version, kind=kind)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, picture in pictures.items():
        Image.fromarray(picture).save(out / name)
        written.append(out / name)
    path = out / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    written.append(path)
    return written
