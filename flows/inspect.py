"""`angioflow inspect`: a case's masks, QC images and stage metrics as PNG and JSON files, and its
registration transforms and registered images in ITK's formats (``registration/``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from angioflow.pipeline.casestore import CaseStore, CaseStoreError, MaskKind
from angioflow.pipeline.curation_stages import read_registration
from angioflow.pipeline.deformable import Deformation
from angioflow.pipeline.qc import (
    AV_RGB,
    VESSEL_RGB,
    av_to_rgb,
    checkerboard,
    label_overlay,
    overlay,
)
from angioflow.pipeline.review import ORIGIN_KEYS
from angioflow.pipeline.transform_files import write_image, write_registration_files
from PIL import Image, PngImagePlugin

__all__ = ["case_overview", "inspect_case", "write_registration"]

REGISTRATION_CONVENTION = (
    "Images are written with origin 0, spacing 1 and the identity direction, so ITK physical "
    "coordinates are pixel coordinates (x, y) = (column, row). Each transform maps a fixed-grid "
    "point to the moving image (ITK's resampling direction): frame_NNN_* map the reference "
    "frame's grid to FA frame NNN, fundus_alignment_* map the fundus grid to the reference "
    "frame's grid. *_affine.tfm is a 2-D ITK AffineTransform; *_nonrigid.mha, when present, is "
    "a displacement field (dx, dy) on the fixed grid applied before it: "
    "p -> affine(p + d(p)) = sitk.CompositeTransform([affine, DisplacementFieldTransform(d)])."
)

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
        if name not in summary.stages_done:
            continue
        stages[name] = store.read_stage(case_id, name)  # a damaged stage is an error, not a gap
        metrics["stages"][name] = {
            "params": _public(stages[name].params),
            "seconds": round(stages[name].seconds, 2),
            "finished": stages[name].finished,
            "software_version": stages[name].software_version,
        }
    if {"vessel_maps", "registration", "aggregate"} <= stages.keys():
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
    if {"vessel_maps", "fundus_alignment"} <= stages.keys():
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
    in ``out``, and the registration's transforms and images in ``out/registration``
    (:func:`write_registration`); returns the files written.

    ``vessel.png`` and ``av.png`` carry the case id, mask and version in PNG text chunks
    (:data:`pipeline.review.ORIGIN_KEYS`), so ``approve --mask`` knows which version an edit
    of them started from.
    """
    pictures, metrics = case_overview(store, case_id, version=version, kind=kind)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, picture in pictures.items():
        origin = None
        if name in ("vessel.png", "av.png"):
            mask_kind = MaskKind(name.removesuffix(".png"))
            origin = PngImagePlugin.PngInfo()
            shown = metrics["exported_versions"][mask_kind.value]["version"]
            stamp = (case_id, mask_kind.value, shown)
            for key, value in zip(ORIGIN_KEYS, stamp, strict=True):
                origin.add_text(key, str(value))
        Image.fromarray(picture).save(out / name, pnginfo=origin)
        written.append(out / name)
    path = out / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    written.append(path)
    written += write_registration(store, case_id, out / "registration")
    return written


def write_registration(store: CaseStore, case_id: str, out: Path) -> list[Path]:
    """Write a case's registration (stages 2, 4 and 6) in forms ITK tools open and re-apply.

    In ``out`` (created): for every kept FA frame, ``frame_NNN.nii.gz`` (the stored frame),
    ``frame_NNN_affine.tfm`` (stage 2, reference grid -> frame) and, for frames that got the
    non-rigid step (stage 4), ``frame_NNN_nonrigid.mha``; ``registered_frames.nii.gz`` (the
    kept frames resampled onto the reference grid, one slice each, float32);
    ``aggregate_mean.nii.gz`` (stage 5, 0-255); for stage 6, ``fundus.nii.gz`` (RGB),
    ``fundus_alignment_affine.tfm`` (fundus grid -> reference grid), its
    ``fundus_alignment_nonrigid.mha`` when the non-rigid step was kept, and
    ``aggregate_mean_on_fundus.nii.gz`` (the stage's own resampled aggregate, 0-255); and
    ``transforms.json``, which lists them per frame with the convention. Nothing is written
    for a case not yet registered. Returns the files written.
    """
    done = store.summary(case_id).stages_done
    if "registration" not in done or "aggregate" not in done:
        return []
    registration = read_registration(store, case_id)
    aggregate = store.read_stage(case_id, "aggregate", arrays=("mean",)).arrays["mean"]
    out.mkdir(parents=True, exist_ok=True)
    raw = store.read_raw(case_id)
    shape = raw.fa_frames[registration.reference].shape
    written: list[Path] = []
    frames: list[dict[str, Any]] = []
    registered: list[np.ndarray] = []
    for frame in registration.frames:
        entry: dict[str, Any] = {
            "index": frame.index,
            "kept": frame.kept,
            "aggregated": frame.aggregated,
            "reason": frame.reason,
        }
        frames.append(entry)
        if not frame.kept:
            continue
        stem = f"frame_{frame.index:03d}"
        files = write_registration_files(
            out / stem,
            shape=shape,
            matrix=frame.rigid,
            deformation=None if frame.deformation is None else frame.deformation.transform,
        )
        image = write_image(out / f"{stem}.nii.gz", raw.fa_frames[frame.index])
        registered.append(frame.warp(raw.fa_frames[frame.index], shape))
        entry.update(
            image=image.name,
            affine=files.affine.name,
            nonrigid=None if files.nonrigid is None else files.nonrigid.name,
            registered_slice=len(registered) - 1,
        )
        written += [p for p in (image, files.affine, files.nonrigid) if p is not None]
    written.append(write_image(out / "registered_frames.nii.gz", np.stack(registered)))
    written.append(write_image(out / "aggregate_mean.nii.gz", aggregate))
    manifest: dict[str, Any] = {
        "convention": REGISTRATION_CONVENTION,
        "reference_frame": registration.reference,
        "reference_shape": list(shape),
        "frames": frames,
        "registered_frames": "registered_frames.nii.gz",
        "aggregate_mean": "aggregate_mean.nii.gz",
    }
    if "fundus_alignment" in done:
        alignment = store.read_stage(case_id, "fundus_alignment", arrays=("affine", "fa_mean"))
        text = alignment.params["deformation"]
        files = write_registration_files(
            out / "fundus_alignment",
            shape=raw.fundus.shape[:2],
            matrix=alignment.arrays["affine"],
            deformation=None if text is None else Deformation.from_text(text).transform,
        )
        fundus = write_image(out / "fundus.nii.gz", raw.fundus, rgb=True)
        on_fundus = write_image(
            out / "aggregate_mean_on_fundus.nii.gz", alignment.arrays["fa_mean"]
        )
        written += [p for p in (fundus, files.affine, files.nonrigid, on_fundus) if p is not None]
        manifest["fundus_alignment"] = {
            "fixed": fundus.name,
            "moving": "aggregate_mean.nii.gz",
            "affine": files.affine.name,
            "nonrigid": None if files.nonrigid is None else files.nonrigid.name,
            "registered": on_fundus.name,
        }
    path = out / "transforms.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    written.append(path)
    return written
