"""Stages 2-7 on phantom truth: registration, aggregation, fundus alignment, binarisation, flow."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from angioflow.models.vessel_inference import VesselSegmenter
from angioflow.pipeline.casestore import CaseStore, MaskKind, Stage
from angioflow.pipeline.curation import (
    CurationSettings,
    aggregate_maps,
    align_to_fundus,
    binarise,
    register_sequence,
)
from angioflow.pipeline.deformable import Deformation, register_bspline
from angioflow.pipeline.metrics import av_scores
from angioflow.pipeline.phantom import PhantomCase, PhantomConfig, generate_case, write_case
from angioflow.pipeline.preprocess import fov_mask
from angioflow.pipeline.registration import coarse_search, register_similarity, similarity_matrix
from PIL import Image
from scipy import ndimage as ndi

CONFIG = PhantomConfig(size=(384, 576), n_frames=5, max_translation=0.02, max_rotation_deg=8.0)


@pytest.fixture(scope="module")
def segmenter() -> VesselSegmenter:
    return VesselSegmenter.load()


@pytest.fixture(scope="module")
def exam(segmenter: VesselSegmenter) -> tuple[PhantomCase, list[np.ndarray], list[np.ndarray]]:
    case = generate_case(21, CONFIG)
    apertures = [fov_mask(f, modality="fa") for f in case.fa_frames]
    maps = [
        segmenter.segment(f, modality="fa", fov=a)
        for f, a in zip(case.fa_frames, apertures, strict=True)
    ]
    return case, maps, apertures


def _inside(points: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return (
        (points[:, 0] > 2)
        & (points[:, 0] < shape[1] - 3)
        & (points[:, 1] > 2)
        & (points[:, 1] < shape[0] - 3)
    )


def test_sequence_registration_recovers_phantom_motion(exam: tuple) -> None:
    case, maps, apertures = exam
    result = register_sequence(maps, apertures)
    ref, points = result.reference, case.landmarks.frame_xy
    assert case.frame_phases[ref] in ("arteriovenous", "venous", "late")
    rigid, final = [], []
    for frame in result.kept:
        if frame.index == ref:
            continue
        ok = _inside(points[ref], maps[0].shape) & _inside(points[frame.index], maps[0].shape)
        truth = points[frame.index][ok]
        moved = points[ref][ok] @ frame.rigid[:2, :2].T + frame.rigid[:2, 2]
        rigid += list(np.linalg.norm(moved - truth, axis=1))
        final += list(np.linalg.norm(frame.map_points(points[ref][ok]) - truth, axis=1))
    assert len(rigid) > 50
    assert np.median(rigid) < 1.0
    assert np.median(final) < 1.0
    for frame in result.frames:
        assert frame.kept == (frame.reason == "")


def test_a_frame_without_vessels_is_dropped_with_a_reason(exam: tuple) -> None:
    _, maps, apertures = exam
    blank = [*maps[:-1], np.zeros_like(maps[-1])]
    result = register_sequence(blank, apertures, nonrigid=False)
    last = result.frames[-1]
    assert not last.kept and "too few vessels visible" in last.reason
    assert any(f.kept for f in result.frames[:-1])
    aggregate = aggregate_maps(blank, apertures, result)
    assert aggregate["count"].max() == len(result.aggregated)


def test_coarse_search_and_refinement_find_large_motion(exam: tuple) -> None:
    case, _, _ = exam
    fixed = ndi.gaussian_filter(case.fa_vessel.astype(np.float32), 1.0)
    height, width = fixed.shape
    truth = similarity_matrix(
        scale=1.03,
        rotation_deg=8.0,
        translation_xy=(20.0, -15.0),
        center_xy=((width - 1) / 2, (height - 1) / 2),
    )
    # moving(truth @ p) = fixed(p): build moving by resampling fixed through the inverse
    from angioflow.pipeline.registration import warp_image

    moving = warp_image(fixed, np.linalg.inv(truth), fixed.shape)
    start, _ = coarse_search(fixed, moving, angles_deg=np.arange(-10, 10.1, 1.0))
    mask = ndi.binary_erosion(case.fa_fov, iterations=40)
    found = register_similarity(fixed, moving, mask, start).matrix
    grid = np.argwhere(mask)[::97, ::-1].astype(np.float64)
    moved = grid @ found[:2, :2].T + found[:2, 2]
    expected = grid @ truth[:2, :2].T + truth[:2, 2]
    assert np.median(np.linalg.norm(moved - expected, axis=1)) < 0.3


def test_nonrigid_transform_round_trips_through_text(exam: tuple) -> None:
    case, maps, apertures = exam
    mask = ndi.binary_erosion(apertures[0], iterations=10)
    deformation = register_bspline(maps[-1], maps[-2], mask, np.eye(3))
    again = Deformation.from_text(deformation.to_text())
    points = np.array([[100.0, 120.0], [300.0, 200.0], [450.0, 90.0]])
    np.testing.assert_allclose(again.map_points(points), deformation.map_points(points), atol=1e-6)
    np.testing.assert_allclose(
        again.warp(maps[-2], maps[-2].shape), deformation.warp(maps[-2], maps[-2].shape), atol=1e-4
    )


def test_fa_aggregate_aligns_to_the_fundus(exam: tuple, segmenter: VesselSegmenter) -> None:
    case, maps, apertures = exam
    registration = register_sequence(maps, apertures)
    aggregate = aggregate_maps(maps, apertures, registration)
    fov = fov_mask(case.fundus, modality="fundus")
    fundus_map = segmenter.segment(case.fundus, modality="fundus", fov=fov)
    alignment = align_to_fundus(fundus_map, fov, aggregate["mean"])
    ref_points = case.landmarks.frame_xy[registration.reference]
    ok = _inside(ref_points, maps[0].shape)
    error = np.linalg.norm(
        alignment.map_points(case.landmarks.fundus_xy[ok]) - ref_points[ok], axis=1
    )
    assert np.median(error) < 2.0
    warped = alignment.warp(aggregate["mean"], fundus_map.shape)
    mask = binarise(warped, fov & (alignment.warp(aggregate["count"], fov.shape) >= 1))
    truth = case.vessel & mask.any()
    covered = alignment.warp(aggregate["count"], fov.shape) >= 1
    dice = 2 * (mask & truth & covered).sum() / (mask.sum() + (truth & covered).sum())
    assert dice > 0.75


def test_binarise_hysteresis_components_and_fov() -> None:
    probability = np.zeros((40, 40), np.float32)
    probability[10, 5:35] = 0.9  # strong vessel
    probability[11, 5:35] = 0.4  # weak pixels touching it: kept
    probability[30, 5:35] = 0.4  # weak vessel alone: dropped
    probability[20, 20:23] = 0.95  # strong speck below the size limit: dropped
    fov = np.ones((40, 40), bool)
    fov[:, 30:] = False
    mask = binarise(probability, fov, low=0.3, high=0.6, min_component_px=10)
    assert mask[10, 5:30].all() and mask[11, 5:30].all()
    assert not mask[30].any() and not mask[20].any() and not mask[:, 30:].any()
    with pytest.raises(ValueError, match="low <= high"):
        binarise(probability, fov, low=0.7, high=0.6)


def test_settings_round_trip_and_reject_unknown_keys() -> None:
    settings = CurationSettings()
    assert CurationSettings.from_dict(json.loads(json.dumps(settings.as_dict()))) == settings
    shipped = Path(__file__).parents[1] / "configs" / "curation.yaml"
    assert CurationSettings.from_dict(yaml.safe_load(shipped.read_text())) == settings
    changed = CurationSettings.from_dict({"hysteresis_high": 0.7, "rigid": {"iterations": 50}})
    assert changed.hysteresis_high == 0.7 and changed.rigid.iterations == 50
    with pytest.raises(ValueError, match="unknown curation settings: hysteresis"):
        CurationSettings.from_dict({"hysteresis": 0.5})


def test_curate_flow_reaches_review_gate_caches_and_isolates_failures(
    tmp_path: Path, secret: bytes, prefect_server: None
) -> None:
    from angioflow.flows.curate import curate_flow
    from angioflow.flows.ingest import ingest_flow
    from angioflow.flows.inspect import inspect_case
    from angioflow.pipeline import curation_stages as stages

    source, root = tmp_path / "raw", tmp_path / "store"
    cases = {}
    for index, seed in enumerate((31, 32, 33)):
        cases[index] = generate_case(seed, CONFIG)
        write_case(cases[index], source / f"exam_{index}", patient_id=f"P-{index:04d}")
    speck = write_case(generate_case(34, CONFIG), source / "exam_dark", patient_id="P-0009")
    for frame_file in sorted((speck / "fa").glob("*.png")):
        # an exposure with no retina in it: two hot pixels (a frame of two values alone is
        # refused at ingest as a mask, not a photograph)
        dark = np.zeros(CONFIG.size, np.uint8)
        dark[100, 200], dark[101, 200] = 255, 128
        Image.fromarray(dark).save(frame_file)
    summary = ingest_flow(str(source), str(root))
    assert len(summary["ingested"]) == 4
    store = CaseStore(root, create=False)
    ids = {i["case"].split("_")[-1]: i["case_id"] for i in summary["ingested"]}
    ids = {int(k) if k.isdigit() else k: v for k, v in ids.items()}
    broken = store.path(ids[2])
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])  # a damaged disk

    result = curate_flow(str(root))
    assert sorted(c["case_id"] for c in result["curated"]) == sorted([ids[0], ids[1]])
    failures = {f["case_id"]: f for f in result["failed"]}
    assert set(failures) == {ids[2], ids["dark"]}
    damaged, dark = failures[ids[2]], failures[ids["dark"]]
    assert damaged["stage"] == "read" and "corrupt or incomplete" in damaged["reason"]
    assert "re-ingest the case with --replace" in damaged["reason"]
    assert dark["stage"] == "vessel_maps" and "field of view is only" in dark["reason"]
    assert all("\n" not in f["reason"] for f in failures.values())
    assert store.summary(ids["dark"]).stage == Stage.INGESTED  # nothing half-written
    assert "field of view is only" in store.summary(ids["dark"]).last_error

    for index in (0, 1):
        case_id = ids[index]
        assert store.summary(case_id).stage == Stage.VESSEL_REVIEW
        (baseline,) = store.versions(case_id, MaskKind.VESSEL)
        assert baseline.editor == "angioflow"
        mask = store.read_version(case_id, MaskKind.VESSEL) > 0
        truth, fov = cases[index].vessel, cases[index].fov
        dice = 2 * (mask & truth & fov).sum() / ((mask & fov).sum() + (truth & fov).sum())
        assert dice > 0.75, dice

    # a re-run of the stages with unchanged inputs and parameters recomputes nothing
    case_id = ids[0]
    before = {s: store.read_stage(case_id, s).finished for s in stages.STAGES}
    key = stages.run_vessel_maps(
        store, case_id, VesselSegmenter.load().segment, VesselSegmenter.load().weights_sha256
    )
    settings = CurationSettings()
    for name in ("registration", "aggregate", "fundus_alignment"):
        runner = getattr(stages, f"run_{name}")
        key = runner(store, case_id, key, settings)
    stricter = dataclasses.replace(settings, hysteresis_high=0.8)
    stages.run_binarisation(store, case_id, key, stricter)
    after = {s: store.read_stage(case_id, s).finished for s in stages.STAGES}
    assert {s: after[s] == before[s] for s in stages.STAGES} == {
        "vessel_maps": True,
        "registration": True,
        "aggregate": True,
        "fundus_alignment": True,
        "binarisation": False,
    }
    assert store.read_stage(case_id, "binarisation").params["hysteresis_high"] == 0.8
    assert len(store.versions(case_id, MaskKind.VESSEL)) == 1  # the baseline is never superseded

    written = inspect_case(store, case_id, tmp_path / "inspect")
    names = {p.name for p in written}
    assert {"vessel.png", "qc_registration.png", "qc_fundus.png", "metrics.json"} <= names
    vessel_png = np.asarray(Image.open(tmp_path / "inspect" / "vessel.png"))
    assert set(np.unique(vessel_png)) <= {0, 255} and vessel_png.shape == cases[0].vessel.shape
    metrics = json.loads((tmp_path / "inspect" / "metrics.json").read_text())
    assert metrics["stage"] == "vessel_review"
    assert metrics["stages"]["fundus_alignment"]["params"]["vessel_overlap_dice"] > 0.5
    assert all(f["reason"] for f in metrics["frames_dropped"])
    text = "".join(p.read_text() for p in written if p.suffix == ".json")
    assert "P-000" not in text

    # review gate 1 passed: a clinician corrects case 1's mask and approves it; the next run
    # labels arteries and veins (stage 9) and stops at review gate 2
    case_id, case = ids[1], cases[1]
    store.save_version(
        case_id,
        MaskKind.VESSEL,
        case.vessel.astype(np.uint8),
        editor="dr-a",
        parent=1,
        note="fixed",
    )
    store.approve(case_id, MaskKind.VESSEL, version=2, editor="dr-a")
    result = curate_flow(str(root))
    assert [c["case_id"] for c in result["av_labelled"]] == [case_id]
    assert result["curated"] == []
    assert store.summary(case_id).stage == Stage.AV_REVIEW
    (av_baseline,) = store.versions(case_id, MaskKind.AV)
    assert av_baseline.editor == "angioflow" and "vessel v2" in av_baseline.note
    labels = store.read_version(case_id, MaskKind.AV)
    assert ((labels > 0) == case.vessel).all()  # every approved vessel pixel, nothing else
    truth = case.av_labels
    assert av_scores(labels, truth).accuracy > 0.8  # an untrained model scores ~0.5
    params = store.read_stage(case_id, "av_labelling", arrays=()).params
    assert params["vessel_version"] == 2 and len(params["weights_sha256"]) == 64
    again = curate_flow(str(root))
    assert again["av_labelled"] == [] and case_id in {w["case_id"] for w in again["waiting"]}
    assert len(store.versions(case_id, MaskKind.AV)) == 1
    inspect_case(store, case_id, tmp_path / "inspect_av")
    av_png = np.asarray(Image.open(tmp_path / "inspect_av" / "av.png").convert("RGB"))
    assert {tuple(c) for c in av_png[case.vessel]} <= {(255, 0, 0), (0, 0, 255)}
