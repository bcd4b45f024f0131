"""Stages 2-7 on phantom truth: registration, aggregation, fundus alignment, binarisation, flow."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from angioflow.models.vessel import VesselSegmenter
from angioflow.pipeline import curation_stages as stages
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
from pydantic import ValidationError
from scipy import ndimage as ndi
from support import copy_store

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


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_frame_without_vessels_is_dropped_with_a_reason(exam: tuple) -> None:
    _, maps, apertures = exam
    blank = [*maps[:-1], np.zeros_like(maps[-1])]
    result = register_sequence(blank, apertures, nonrigid=False)
    last = result.frames[-1]
    assert not last.kept and "too few vessels visible" in last.reason
    assert any(f.kept for f in result.frames[:-1])
    aggregate = aggregate_maps(blank, apertures, result)
    assert aggregate["count"].max() == len(result.aggregated)


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
    mask = binarise(probability, fov, CurationSettings(min_component_px=10))
    assert mask[10, 5:30].all() and mask[11, 5:30].all()
    assert not mask[30].any() and not mask[20].any() and not mask[:, 30:].any()
    with pytest.raises(ValueError, match="hysteresis_low must not exceed hysteresis_high"):
        CurationSettings(hysteresis_low=0.7, hysteresis_high=0.6)


def test_settings_defaults_are_the_shipped_recipe() -> None:
    shipped = Path(__file__).parents[1] / "configs" / "curation.yaml"
    assert (
        CurationSettings.model_validate(yaml.safe_load(shipped.read_text())) == CurationSettings()
    )
    settings = CurationSettings()
    assert CurationSettings.model_validate(json.loads(settings.model_dump_json())) == settings


def test_settings_are_validated_and_refuse_unknown_keys() -> None:
    changed = CurationSettings.model_validate({"hysteresis_high": 0.7, "rigid": {"iterations": 50}})
    assert changed.hysteresis_high == 0.7 and changed.rigid.iterations == 50
    assert changed.rigid.shrink_factors == CurationSettings().rigid.shrink_factors
    with pytest.raises(ValidationError, match="hysteresis"):
        CurationSettings.model_validate({"hysteresis": 0.5})
    with pytest.raises(ValidationError, match="optimizer"):
        CurationSettings.model_validate({"nonrigid": {"optimizer": "lbfgsb"}})
    with pytest.raises(ValidationError, match="hysteresis_low must not exceed"):
        CurationSettings(hysteresis_low=0.7, hysteresis_high=0.6)
    with pytest.raises(ValidationError, match="one entry per level"):
        CurationSettings.model_validate({"nonrigid": {"levels": 3}})


def test_code_version_follows_the_modules_a_stage_runs() -> None:
    registration = stages.code_version(stages.run_registration, register_sequence)
    binarisation = stages.code_version(stages.run_binarisation, stages.baseline_mask)
    assert stages.code_version(stages.run_registration, register_sequence) == registration

    def edited_register_sequence(*args: object, **kwargs: object) -> object:
        return register_sequence(*args, **kwargs)

    assert stages.code_version(stages.run_registration, edited_register_sequence) != registration
    assert stages.code_version(stages.run_aggregate, register_sequence) != registration

    real = stages._module_file_digest
    stages._module_closure_digest.cache_clear()
    try:
        # an edit to pipeline.deformable, which pipeline.curation imports
        stages._module_file_digest = lambda module: (
            "edited" if module.__name__.endswith(".deformable") else real(module)
        )
        assert stages.code_version(stages.run_registration, register_sequence) != registration
    finally:
        stages._module_file_digest = real
        stages._module_closure_digest.cache_clear()
    assert stages.code_version(stages.run_binarisation, stages.baseline_mask) == binarisation


@dataclass(frozen=True)
class Curated:
    """The curate flow's first run over three phantom exams and a dark one, one damaged."""

    root: Path
    ids: dict[int | str, str]
    cases: dict[int, PhantomCase]
    result: dict


@pytest.fixture(scope="module")
def curated(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Curated:
    from angioflow.flows.curate import curate_flow
    from angioflow.flows.ingest import ingest_flow

    tmp = tmp_path_factory.mktemp("curate")
    source, root = tmp / "raw", tmp / "store"
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
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ANGIOFLOW_SECRET", "test-secret-0123456789abcdef")
        summary = ingest_flow(str(source), str(root))
        assert len(summary["ingested"]) == 4
        ids = {i["case"].split("_")[-1]: i["case_id"] for i in summary["ingested"]}
        ids = {int(k) if k.isdigit() else k: v for k, v in ids.items()}
        broken = CaseStore(root, create=False).path(ids[2])
        broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])  # a damaged disk
        result = curate_flow(str(root))
    return Curated(root, ids, cases, result)


def _private_store(curated: Curated, tmp_path: Path) -> CaseStore:
    return CaseStore(copy_store(curated.root, tmp_path / "store"), create=False)


def _rerun_stages(
    store: CaseStore, case_id: str, settings: CurationSettings, binarisation: CurationSettings
) -> dict[str, bool]:
    """Run stages 3 and 2-7 of a case again; which stages kept their stored output."""
    before = {s: store.read_stage(case_id, s).finished for s in stages.STAGES}
    segmenter = VesselSegmenter.load()
    key = stages.run_vessel_maps(store, case_id, segmenter.segment, segmenter.weights_sha256)
    for name in ("registration", "aggregate", "fundus_alignment"):
        key = getattr(stages, f"run_{name}")(store, case_id, key, settings)
    stages.run_binarisation(store, case_id, key, binarisation)
    after = {s: store.read_stage(case_id, s).finished for s in stages.STAGES}
    return {s: after[s] == before[s] for s in stages.STAGES}


@pytest.mark.slow
def test_curate_brings_good_cases_to_review_gate_1_with_a_baseline(curated: Curated) -> None:
    store = CaseStore(curated.root, create=False)
    ids = curated.ids
    assert sorted(c["case_id"] for c in curated.result["curated"]) == sorted([ids[0], ids[1]])
    for index in (0, 1):
        case_id = ids[index]
        assert store.summary(case_id).stage == Stage.VESSEL_REVIEW
        (baseline,) = store.versions(case_id, MaskKind.VESSEL)
        assert baseline.editor == "angioflow"
        mask = store.read_version(case_id, MaskKind.VESSEL) > 0
        truth, fov = curated.cases[index].vessel, curated.cases[index].fov
        dice = 2 * (mask & truth & fov).sum() / ((mask & fov).sum() + (truth & fov).sum())
        assert dice > 0.75, dice


@pytest.mark.slow
def test_a_damaged_case_file_is_reported_with_its_fix(curated: Curated) -> None:
    failures = {f["case_id"]: f for f in curated.result["failed"]}
    assert set(failures) == {curated.ids[2], curated.ids["dark"]}
    damaged = failures[curated.ids[2]]
    assert damaged["stage"] == "read" and "corrupt or incomplete" in damaged["reason"]
    assert "re-ingest the case with --replace" in damaged["reason"]
    assert "\n" not in damaged["reason"]


@pytest.mark.slow
def test_a_case_failing_a_stage_is_recorded_and_left_whole(curated: Curated) -> None:
    store = CaseStore(curated.root, create=False)
    case_id = curated.ids["dark"]
    (dark,) = [f for f in curated.result["failed"] if f["case_id"] == case_id]
    assert dark["stage"] == "vessel_maps" and "field of view is only" in dark["reason"]
    assert "\n" not in dark["reason"]
    assert store.summary(case_id).stage == Stage.INGESTED  # nothing half-written
    assert "field of view is only" in store.summary(case_id).last_error


@pytest.mark.slow
def test_an_unchanged_rerun_reuses_every_stored_stage(curated: Curated, tmp_path: Path) -> None:
    store = _private_store(curated, tmp_path)
    reused = _rerun_stages(store, curated.ids[0], CurationSettings(), CurationSettings())
    assert reused == dict.fromkeys(stages.STAGES, True)


@pytest.mark.slow
def test_a_changed_parameter_recomputes_its_stage_not_the_baseline(
    curated: Curated, tmp_path: Path
) -> None:
    store = _private_store(curated, tmp_path)
    case_id = curated.ids[0]
    stricter = CurationSettings(hysteresis_high=0.8)
    reused = _rerun_stages(store, case_id, CurationSettings(), stricter)
    assert reused == {**dict.fromkeys(stages.STAGES, True), "binarisation": False}
    assert store.read_stage(case_id, "binarisation").params["hysteresis_high"] == 0.8
    assert len(store.versions(case_id, MaskKind.VESSEL)) == 1  # never superseded


@pytest.mark.slow
def test_changed_stage_code_recomputes_that_stage_and_those_after_it(
    curated: Curated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _private_store(curated, tmp_path)
    case_id = curated.ids[0]

    def edited_aggregate_maps(*args: object, **kwargs: object) -> dict:
        return aggregate_maps(*args, **kwargs)  # a new version of the aggregation code

    monkeypatch.setattr(stages, "aggregate_maps", edited_aggregate_maps)
    reused = _rerun_stages(store, case_id, CurationSettings(), CurationSettings())
    assert reused == {
        "vessel_maps": True,
        "registration": True,
        "aggregate": False,
        "fundus_alignment": False,
        "binarisation": False,
    }
    again = _rerun_stages(store, case_id, CurationSettings(), CurationSettings())
    assert again == dict.fromkeys(stages.STAGES, True)


@pytest.mark.slow
def test_inspect_writes_masks_qc_and_metrics_without_patient_ids(
    curated: Curated, tmp_path: Path
) -> None:
    from angioflow.flows.inspect import inspect_case

    store = CaseStore(curated.root, create=False)
    written = inspect_case(store, curated.ids[0], tmp_path / "inspect")
    names = {p.name for p in written}
    assert {"vessel.png", "qc_registration.png", "qc_fundus.png", "metrics.json"} <= names
    vessel_png = np.asarray(Image.open(tmp_path / "inspect" / "vessel.png"))
    assert set(np.unique(vessel_png)) <= {0, 255}
    assert vessel_png.shape == curated.cases[0].vessel.shape
    metrics = json.loads((tmp_path / "inspect" / "metrics.json").read_text())
    assert metrics["stage"] == "vessel_review"
    assert metrics["stages"]["fundus_alignment"]["params"]["vessel_overlap_dice"] > 0.5
    assert all(f["reason"] for f in metrics["frames_dropped"])
    text = "".join(p.read_text() for p in written if p.suffix == ".json")
    assert "P-000" not in text


@dataclass(frozen=True)
class AVLabelled:
    """Case 1 after a clinician corrected and approved its vessel mask and curate ran again."""

    store: CaseStore
    case_id: str
    case: PhantomCase
    result: dict


@pytest.fixture(scope="module")
def av_labelled(curated: Curated, tmp_path_factory: pytest.TempPathFactory) -> AVLabelled:
    from angioflow.flows.curate import curate_flow

    store = _private_store(curated, tmp_path_factory.mktemp("av"))
    case_id, case = curated.ids[1], curated.cases[1]
    store.save_version(
        case_id,
        MaskKind.VESSEL,
        case.vessel.astype(np.uint8),
        editor="dr-a",
        parent=1,
        note="fixed",
    )
    store.approve(case_id, MaskKind.VESSEL, version=2, editor="dr-a")
    return AVLabelled(store, case_id, case, curate_flow(str(store.root)))


@pytest.mark.slow
def test_an_approved_vessel_mask_is_av_labelled_to_review_gate_2(av_labelled: AVLabelled) -> None:
    store, case_id, case = av_labelled.store, av_labelled.case_id, av_labelled.case
    assert [c["case_id"] for c in av_labelled.result["av_labelled"]] == [case_id]
    assert av_labelled.result["curated"] == []
    assert store.summary(case_id).stage == Stage.AV_REVIEW
    (av_baseline,) = store.versions(case_id, MaskKind.AV)
    assert av_baseline.editor == "angioflow" and "vessel v2" in av_baseline.note
    labels = store.read_version(case_id, MaskKind.AV)
    assert ((labels > 0) == case.vessel).all()  # every approved vessel pixel, nothing else
    assert av_scores(labels, case.av_labels).accuracy > 0.8  # an untrained model scores ~0.5
    params = store.read_stage(case_id, "av_labelling", arrays=()).params
    assert params["vessel_version"] == 2 and len(params["weights_sha256"]) == 64


@pytest.mark.slow
def test_a_case_at_review_gate_2_is_left_waiting(av_labelled: AVLabelled) -> None:
    from angioflow.flows.curate import curate_flow

    again = curate_flow(str(av_labelled.store.root))
    assert again["av_labelled"] == []
    assert av_labelled.case_id in {w["case_id"] for w in again["waiting"]}
    assert len(av_labelled.store.versions(av_labelled.case_id, MaskKind.AV)) == 1


@pytest.mark.slow
def test_inspect_draws_av_labels_in_red_and_blue(av_labelled: AVLabelled, tmp_path: Path) -> None:
    from angioflow.flows.inspect import inspect_case

    inspect_case(av_labelled.store, av_labelled.case_id, tmp_path / "inspect_av")
    av_png = np.asarray(Image.open(tmp_path / "inspect_av" / "av.png").convert("RGB"))
    assert {tuple(c) for c in av_png[av_labelled.case.vessel]} <= {(255, 0, 0), (0, 0, 255)}


@pytest.mark.slow
def test_the_flow_refuses_misspelt_settings_before_any_work(
    tmp_path: Path, prefect_server: None
) -> None:
    from angioflow.flows.curate import curate_flow
    from prefect.exceptions import ParameterTypeError

    CaseStore(tmp_path / "store")
    with pytest.raises(ParameterTypeError, match="hysteresis"):
        curate_flow(str(tmp_path / "store"), {"hysteresis": 0.5})
