"""Stages 2-7 of one stored case, each reading its inputs from and writing its output to the store.

Each stage function returns the stage's cache key: a sha256 over the stage's name, its upstream
key, its parameters and the code that computed it (see :func:`code_version`). A stage whose
stored output carries the same key is not recomputed, so a re-run of the curate flow skips
finished work and recomputes exactly the stages whose inputs, parameters or code changed, and
every stage downstream of them (their upstream key changed).

The two stages that end at a review gate (binarisation, A/V labelling) store their output and
the baseline version for review in one commit, and offer the stored baseline again when their
output is cached: a run killed at any point leaves a case that the next run finishes.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from angioflow.pipeline.casestore import (
    PIPELINE_EDITOR,
    Baseline,
    CaseStore,
    CaseStoreError,
    MaskKind,
)
from angioflow.pipeline.curation import (
    CurationSettings,
    FrameRegistration,
    SequenceRegistration,
    aggregate_maps,
    align_to_fundus,
    baseline_mask,
    register_sequence,
)
from angioflow.pipeline.deformable import Deformation
from angioflow.pipeline.preprocess import fov_mask
from angioflow.pipeline.vessel_graph import av_labels

__all__ = [
    "STAGES",
    "AVLabel",
    "Segmenter",
    "code_version",
    "run_aggregate",
    "run_av_labelling",
    "run_binarisation",
    "run_fundus_alignment",
    "run_registration",
    "run_vessel_maps",
]

STAGES = ("vessel_maps", "registration", "aggregate", "fundus_alignment", "binarisation")
BASELINE_EDITOR = PIPELINE_EDITOR

# (image, *, modality, fov, flips) -> probability: VesselSegmenter.segment fits.
Segmenter = Callable[..., np.ndarray]
# (photo, vessel, *, fov, fa) -> artery probability: AVLabeller.artery_probability fits.
AVLabel = Callable[..., np.ndarray]


def _module_file_digest(module: ModuleType) -> str:
    path = getattr(module, "__file__", None)
    data = Path(path).read_bytes() if path else module.__name__.encode()
    return hashlib.sha256(data).hexdigest()


def _angioflow_imports(module: ModuleType) -> set[str]:
    """Names of the angioflow modules ``module`` uses: imported as modules or by name."""
    names = set()
    for value in vars(module).values():
        name = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", "")
        if isinstance(name, str) and name.startswith("angioflow.") and name in sys.modules:
            names.add(name)
    return names


@cache
def _module_closure_digest(name: str) -> str:
    """sha256 over the source files of module ``name`` and of every angioflow module it uses,
    transitively (read once per process)."""
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo += sorted(_angioflow_imports(sys.modules[current]) - seen)
    digests = {n: _module_file_digest(sys.modules[n]) for n in sorted(seen)}
    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()


def code_version(runner: Callable[..., Any], *implementations: Callable[..., Any]) -> str:
    """The version of the code that computes a stage, as a sha256.

    Parameters
    ----------
    runner : callable
        The stage function of this module: its own source is hashed (a change to how the stage
        reads or stores its arrays invalidates that stage only, not every stage).
    *implementations : callable
        The functions that compute the stage's output (the pipeline functions it calls, the
        segmenter or labeller passed in). The source file of each one's module is hashed, with
        the source files of every angioflow module those use, transitively (through the names
        they import), so a change to, say, :mod:`pipeline.deformable` changes the version of
        every stage that registers with it.

    Returns
    -------
    str
        Hex sha256.
    """
    parts = [_source_digest(runner)]
    for function in implementations:
        module = function.__module__
        parts.append(
            _module_closure_digest(module) if module in sys.modules else _source_digest(function)
        )
    return hashlib.sha256("".join(parts).encode()).hexdigest()


def _source_digest(function: Callable[..., Any]) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()


def _key(stage: str, upstream: str, params: dict[str, Any], code: str) -> str:
    text = json.dumps(
        {"stage": stage, "upstream": upstream, "params": params, "code": code}, sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _cached(store: CaseStore, case_id: str, stage: str, key: str) -> bool:
    try:
        return store.read_stage(case_id, stage, arrays=()).params.get("cache_key") == key
    except CaseStoreError:
        return False


def _to_unit8(probability: np.ndarray) -> np.ndarray:
    return np.round(np.clip(probability, 0, 1) * 255).astype(np.uint8)


def _from_uint8(stored: np.ndarray) -> np.ndarray:
    return stored.astype(np.float32) / 255.0


def run_vessel_maps(store: CaseStore, case_id: str, segment: Segmenter, weights_sha256: str) -> str:
    """Stage 3: vessel probability of every FA frame and of the fundus photo.

    Stored as 0-255 maps with each frame's estimated aperture and the fundus FOV.
    """
    # Frames are averaged over the sequence, which steadies them more than mirror averaging
    # would; the fundus photo stands alone and keeps it.
    params = {"weights_sha256": weights_sha256, "frame_mirror_averaging": False}
    code = code_version(run_vessel_maps, segment, fov_mask)
    key = _key("vessel_maps", store.source_sha256(case_id), params, code)
    if _cached(store, case_id, "vessel_maps", key):
        return key
    started = time.perf_counter()
    raw = store.read_raw(case_id)
    apertures = [fov_mask(frame, modality="fa") for frame in raw.fa_frames]
    frames = [
        segment(frame, modality="fa", fov=aperture, flips=False)
        for frame, aperture in zip(raw.fa_frames, apertures, strict=True)
    ]
    fundus_fov = fov_mask(raw.fundus, modality="fundus")
    fundus = segment(raw.fundus, modality="fundus", fov=fundus_fov)
    store.write_stage(
        case_id,
        "vessel_maps",
        {
            "frames": np.stack([_to_unit8(f) for f in frames]),
            "apertures": np.stack(apertures).astype(np.uint8),
            "fundus": _to_unit8(fundus),
            "fundus_fov": fundus_fov.astype(np.uint8),
        },
        params={**params, "cache_key": key},
        seconds=time.perf_counter() - started,
    )
    return key


def _vessel_maps(store: CaseStore, case_id: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    stored = store.read_stage(case_id, "vessel_maps").arrays
    return [_from_uint8(f) for f in stored["frames"]], [a > 0 for a in stored["apertures"]]


def run_registration(
    store: CaseStore, case_id: str, upstream: str, settings: CurationSettings
) -> str:
    """Stages 2 and 4: rigid then non-rigid registration of every frame's vessel map."""
    params = {"settings": settings.model_dump(mode="json")}
    key = _key("registration", upstream, params, code_version(run_registration, register_sequence))
    if _cached(store, case_id, "registration", key):
        return key
    started = time.perf_counter()
    maps, apertures = _vessel_maps(store, case_id)
    result = register_sequence(maps, apertures, settings)
    frames = result.frames
    store.write_stage(
        case_id,
        "registration",
        {
            "rigid": np.stack(
                [f.rigid if f.rigid is not None else np.full((3, 3), np.nan) for f in frames]
            ),
            "correlation": np.array([f.correlation for f in frames], np.float64),
            "kept": np.array([f.kept for f in frames], np.uint8),
            "aggregated": np.array([f.aggregated for f in frames], np.uint8),
        },
        params={
            **params,
            "cache_key": key,
            "reference": result.reference,
            "frames": [
                {
                    "index": f.index,
                    "kept": f.kept,
                    "aggregated": f.aggregated,
                    "reason": f.reason,
                    "quality": {k: round(v, 4) for k, v in f.quality.items()},
                    "correlation": None if np.isnan(f.correlation) else round(f.correlation, 4),
                    "nonrigid_correlation": (
                        None if f.deformation is None else round(f.deformation.correlation, 4)
                    ),
                    "deformation": None if f.deformation is None else f.deformation.to_text(),
                }
                for f in frames
            ],
        },
        seconds=time.perf_counter() - started,
    )
    return key


def read_registration(store: CaseStore, case_id: str) -> SequenceRegistration:
    """The stored registration of a case, transforms included."""
    stage = store.read_stage(case_id, "registration", arrays=("rigid",))
    frames = []
    for record, rigid in zip(stage.params["frames"], stage.arrays["rigid"], strict=True):
        deformation = record["deformation"]
        frames.append(
            FrameRegistration(
                index=record["index"],
                kept=record["kept"],
                reason=record["reason"],
                quality=record["quality"],
                rigid=None if np.isnan(rigid).any() else rigid,
                correlation=float("nan")
                if record["correlation"] is None
                else record["correlation"],
                aggregated=record["aggregated"],
                deformation=None if deformation is None else Deformation.from_text(deformation),
            )
        )
    return SequenceRegistration(stage.params["reference"], tuple(frames))


def run_aggregate(store: CaseStore, case_id: str, upstream: str, settings: CurationSettings) -> str:
    """Stage 5: per-pixel mean and maximum of the registered vessel maps (reference grid)."""
    params = {"aperture_margin_px": settings.aperture_margin_px}
    key = _key("aggregate", upstream, params, code_version(run_aggregate, aggregate_maps))
    if _cached(store, case_id, "aggregate", key):
        return key
    started = time.perf_counter()
    maps, apertures = _vessel_maps(store, case_id)
    aggregate = aggregate_maps(
        maps,
        apertures,
        read_registration(store, case_id),
        settings,
    )
    store.write_stage(
        case_id,
        "aggregate",
        {
            "mean": _to_unit8(aggregate["mean"]),
            "max": _to_unit8(aggregate["max"]),
            "count": aggregate["count"],
        },
        params={**params, "cache_key": key},
        seconds=time.perf_counter() - started,
    )
    return key


def _overlap(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    """Dice of two thresholded (0.5) vessel maps inside ``region``."""
    x, y = (a >= 0.5) & region, (b >= 0.5) & region
    total = int(x.sum() + y.sum())
    return 2.0 * float((x & y).sum()) / total if total else 0.0


def run_fundus_alignment(
    store: CaseStore, case_id: str, upstream: str, settings: CurationSettings
) -> str:
    """Stage 6: align the FA aggregate to the fundus vessel map; resample it to fundus pixels."""
    params = {"settings": settings.model_dump(mode="json")}
    code = code_version(run_fundus_alignment, align_to_fundus)
    key = _key("fundus_alignment", upstream, params, code)
    if _cached(store, case_id, "fundus_alignment", key):
        return key
    started = time.perf_counter()
    maps = store.read_stage(case_id, "vessel_maps", arrays=("fundus", "fundus_fov")).arrays
    fundus_map, fundus_fov = _from_uint8(maps["fundus"]), maps["fundus_fov"] > 0
    aggregate = store.read_stage(case_id, "aggregate").arrays
    alignment = align_to_fundus(fundus_map, fundus_fov, _from_uint8(aggregate["mean"]), settings)
    shape = fundus_map.shape
    coverage = alignment.coverage(aggregate["count"], fundus_fov)
    fa_mean = alignment.warp(_from_uint8(aggregate["mean"]), shape) * coverage
    fa_max = alignment.warp(_from_uint8(aggregate["max"]), shape) * coverage
    store.write_stage(
        case_id,
        "fundus_alignment",
        {
            "fa_mean": _to_unit8(fa_mean),
            "fa_max": _to_unit8(fa_max),
            "coverage": coverage.astype(np.uint8),
            "affine": alignment.affine,
        },
        params={
            **params,
            "cache_key": key,
            "correlation": round(alignment.correlation, 4),
            "vessel_overlap_dice": round(_overlap(fa_mean, fundus_map, coverage), 4),
            "coverage_of_fov": round(float(coverage.sum() / max(1, fundus_fov.sum())), 4),
            "deformation": None
            if alignment.deformation is None
            else alignment.deformation.to_text(),
        },
        seconds=time.perf_counter() - started,
    )
    return key


def run_binarisation(
    store: CaseStore, case_id: str, upstream: str, settings: CurationSettings
) -> str:
    """Stage 7: baseline vessel mask; saved as the first vessel version (review gate 1).

    A baseline is saved only while the case has no vessel version: clinicians' versions are
    never superseded by a re-run.
    """
    params = {
        "hysteresis_low": settings.hysteresis_low,
        "hysteresis_high": settings.hysteresis_high,
        "min_component_px": settings.min_component_px,
        "aperture_margin_px": settings.aperture_margin_px,
    }
    key = _key("binarisation", upstream, params, code_version(run_binarisation, baseline_mask))
    note = f"baseline from curate (binarisation {key[:12]})"
    if _cached(store, case_id, "binarisation", key):
        # Curate runs this stage only for cases without a vessel version, so a cached output
        # means its baseline is missing (a file written when the two were separate commits).
        stored = store.read_stage(case_id, "binarisation", arrays=("vessel",)).arrays["vessel"]
        store.offer_baseline(case_id, Baseline(MaskKind.VESSEL, stored, note))
        return key
    started = time.perf_counter()
    maps = store.read_stage(case_id, "vessel_maps", arrays=("fundus", "fundus_fov")).arrays
    aligned = store.read_stage(case_id, "fundus_alignment", arrays=("fa_mean", "coverage")).arrays
    fov = maps["fundus_fov"] > 0
    mask = baseline_mask(
        _from_uint8(aligned["fa_mean"]),
        aligned["coverage"] > 0,
        _from_uint8(maps["fundus"]),
        fov,
        settings,
    )
    store.write_stage(
        case_id,
        "binarisation",
        {"vessel": mask.astype(np.uint8)},
        params={
            **params,
            "cache_key": key,
            "vessel_fraction_of_fov": round(float(mask[fov].mean()), 4),
        },
        seconds=time.perf_counter() - started,
        baseline=Baseline(MaskKind.VESSEL, mask.astype(np.uint8), note),
    )
    return key


def run_av_labelling(
    store: CaseStore, case_id: str, label: AVLabel, weights_sha256: str, fa_channels: int
) -> str:
    """Stage 9: artery/vein labels of the approved vessel mask; saved as the first A/V version.

    Runs on the vessel version the clinician approved at review gate 1. When the model takes FA
    channels, the FA aggregate (mean and max) in fundus pixels from stage 6 is passed with the
    photo. A baseline is saved only while the latest A/V version (if any) labels another vessel
    version, so a re-run never supersedes a clinician's edits (review gate 2). When the vessel
    mask was approved again after A/V review, the new baseline keeps every label of the latest
    A/V version on pixels that are still vessel; the model labels the rest.
    """
    approved = store.summary(case_id).approved_versions.get(MaskKind.VESSEL.value, 0)
    if not approved:
        raise CaseStoreError(f"case {case_id} has no approved vessel mask; approve one first")
    vessel = store.read_version(case_id, MaskKind.VESSEL, approved) > 0
    params = {
        "weights_sha256": weights_sha256,
        "vessel_version": approved,
        "fa_channels": fa_channels,
    }
    upstream = hashlib.sha256(np.packbits(vessel).tobytes()).hexdigest()
    code = code_version(run_av_labelling, label, av_labels)
    key = _key("av_labelling", store.source_sha256(case_id) + upstream, params, code)
    if _cached(store, case_id, "av_labelling", key):
        # Curate runs this stage only for cases without A/V labels of the approved vessel
        # version: offer the cached output's baseline (a no-op when it is there).
        stored = store.read_stage(case_id, "av_labelling", arrays=("av",)).arrays["av"]
        store.offer_baseline(case_id, _av_baseline(store, case_id, stored, vessel, approved, key))
        return key
    started = time.perf_counter()
    fundus = store.read_raw(case_id).fundus
    fov = store.read_stage(case_id, "vessel_maps", arrays=("fundus_fov",)).arrays["fundus_fov"] > 0
    fa = None
    if fa_channels:
        aligned = store.read_stage(case_id, "fundus_alignment", arrays=("fa_mean", "fa_max"))
        fa = np.stack(
            [_from_uint8(aligned.arrays["fa_mean"]), _from_uint8(aligned.arrays["fa_max"])], axis=2
        )
    probability = label(fundus, vessel, fov=fov, fa=fa)
    labels = av_labels(probability, vessel)
    store.write_stage(
        case_id,
        "av_labelling",
        {"artery_probability": _to_unit8(probability), "av": labels},
        params={
            **params,
            "cache_key": key,
            "artery_fraction": round(float((labels == 1).sum() / max(1, vessel.sum())), 4),
        },
        seconds=time.perf_counter() - started,
        baseline=_av_baseline(store, case_id, labels, vessel, approved, key),
    )
    return key


def _av_baseline(
    store: CaseStore, case_id: str, labels: np.ndarray, vessel: np.ndarray, approved: int, key: str
) -> Baseline:
    """The model's A/V labels, with the latest A/V version's labels kept where they still lie
    on the approved vessel mask (reviewers' labels survive a new vessel approval)."""
    note = f"baseline from curate (av_labelling {key[:12]}, vessel v{approved})"
    latest = store.summary(case_id).latest_versions[MaskKind.AV]
    if not latest:
        return Baseline(MaskKind.AV, labels, note)
    previous = store.read_version(case_id, MaskKind.AV, latest)
    kept = vessel & (previous > 0)
    merged = np.where(kept, previous, labels).astype(np.uint8)
    note += f"; {int(kept.sum())} vessel pixels keep their labels from A/V version {latest}"
    return Baseline(MaskKind.AV, merged, note)
