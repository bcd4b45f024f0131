"""Evaluation: structural statistics and feature distances against hand-computed values and
published numbers, the downstream experiment, and the HTML reports in headless Chromium."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import pytest
from angioflow.flows.cli import app
from angioflow.models.generation import write_phantom_photo_set
from angioflow.pipeline.av_structure import (
    box_counting_dimension,
    compare_structure,
    segment_tortuosity,
    structure_stats,
    vessel_calibres,
)
from angioflow.pipeline.datasets import load_dataset
from angioflow.pipeline.feature_distance import frechet_distance, kernel_distance, precision_recall
from angioflow.pipeline.h5_formats import EXPORT
from angioflow.pipeline.metrics import vessel_scores
from angioflow.pipeline.phantom import PhantomConfig, case_seed, generate_case
from PIL import Image
from support import (
    SHARED_DATA,
    copy_store,
    headless_chromium,
    needs_chromium,
    one_line_error,
)
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
DATA = SHARED_DATA
needs_data = pytest.mark.skipif(
    not (DATA / "DRIVE").is_dir(), reason=f"public datasets not found at {DATA} (../shared/data)"
)
runner = CliRunner()


def test_tortuosity_by_hand() -> None:
    corner = np.zeros((30, 30), bool)
    corner[2, 2:23] = True  # 20 steps right, then 20 down; thinning cuts the corner pixel:
    corner[2:23, 22] = True  # arc 19 + sqrt(2) + 19, chord from (2, 2) to (22, 22)
    assert segment_tortuosity(corner) == pytest.approx([(38 + np.sqrt(2)) / (20 * np.sqrt(2))])
    diagonal = np.eye(15, dtype=bool)  # 14 diagonal steps, straight
    assert segment_tortuosity(diagonal) == pytest.approx([1.0])
    short = np.zeros((12, 12), bool)
    short[5, 1:10] = True  # chord 8 px < 10 px: left out unless asked for
    assert segment_tortuosity(short).size == 0
    assert segment_tortuosity(short, min_chord_px=5) == pytest.approx([1.0])


def test_components_crossings_and_calibre_by_hand() -> None:
    labels = np.zeros((40, 40), np.uint8)
    labels[10, 2:32] = 1  # artery, 30 px
    labels[30, 2:12] = 1  # a loose artery piece, 10 px
    labels[2:38, 20] = 2  # vein crossing the artery at (10, 20) ...
    labels[2:38, 26] = 2  # ... and a second vein crossing it at (10, 26)
    labels[10, 20] = labels[10, 26] = 3  # crossings are in both classes
    s = structure_stats(labels)
    assert (s.artery_components, s.vein_components) == (2, 2)
    assert s.artery_largest_share == pytest.approx(30 / 40)
    assert s.vein_largest_share == pytest.approx(0.5)
    assert s.crossings == 2
    assert s.artery_vein_ratio == pytest.approx(40 / 72)
    band = np.zeros((20, 60), np.uint8)
    band[8:13, :] = 2  # 5 px wide
    assert np.median(vessel_calibres(band)) == 5.0


def test_calibre_matches_the_phantoms_true_vessel_diameter() -> None:
    case = generate_case(3, PhantomConfig(size=(384, 576), n_frames=2))
    labels = case.av_labels
    from skimage.morphology import skeletonize

    skeleton = skeletonize(labels > 0)
    measured = vessel_calibres(labels)
    truth = case.calibre[skeleton]
    assert np.median(measured) == pytest.approx(np.median(truth[truth > 0]), abs=1.0)


def test_fractal_dimension_of_a_sierpinski_carpet() -> None:
    carpet = np.ones((1, 1), bool)
    for _ in range(5):  # 243 x 243, dimension log 8 / log 3 = 1.893
        empty = np.zeros_like(carpet)
        carpet = np.block([[carpet, carpet, carpet], [carpet, empty, carpet], [carpet] * 3])
    assert box_counting_dimension(carpet) == pytest.approx(np.log(8) / np.log(3), abs=0.06)


def test_compare_structure_distances() -> None:
    masks = []
    for row in range(5, 25, 4):  # straight arteries of growing length
        m = np.zeros((32, 32), np.uint8)
        m[row, 2 : row + 5] = 1
        m[row + 1, 2 : row + 5] = 2
        masks.append(m)
    real = [structure_stats(m) for m in masks]
    same = compare_structure(real, real)
    assert same["combined"]["structure_distance"] == 0.0
    assert same["near_empty"]["rate"] == 0.0
    empty = [structure_stats(np.zeros((32, 32), np.uint8))] * 2
    far = compare_structure(real, empty)
    assert far["near_empty"]["rate"] == 1.0
    densities = np.array([s.density for s in real])
    # all generated densities 0: Wasserstein = mean |real - 0|, in real standard deviations
    assert far["density"]["wasserstein_in_real_sd"] == pytest.approx(
        densities.mean() / densities.std()
    )


def test_feature_distances_by_hand() -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 3))
    real -= real.mean(axis=0)
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(real, real + [2.0, 0.0, 0.0]) == pytest.approx(4.0)
    assert frechet_distance(real, real * 3) == pytest.approx(
        4 * np.trace(np.cov(real, rowvar=False)), rel=1e-6
    )  # tr(S + 9S - 2 * 3S) = 4 tr(S)
    other = rng.normal(size=(200, 3))
    same, shifted = kernel_distance(real, other)[0], kernel_distance(real, other + 1.0)[0]
    assert abs(same) < 0.1 and shifted > 50 * abs(same)
    assert precision_recall(real, real) == (1.0, 1.0)
    precision, recall = precision_recall(real, rng.normal(size=(200, 3)) * 0.1)
    assert precision == 1.0 and recall < 0.2  # collapsed samples: faithful but not diverse


@needs_data
def test_drive_second_observer_matches_the_published_accuracy() -> None:
    """Staal et al. 2004 report the second observer's accuracy on DRIVE test as 0.9473."""
    accuracies = []
    for record in load_dataset(DATA, "drive", "test"):
        key = record.name.rsplit("/", 1)[-1].split("_")[0]
        second = next((DATA / "DRIVE" / "test" / "2nd_manual").glob(f"{key}_*"))
        observer = np.asarray(Image.open(second).convert("L")) > 127
        accuracies.append(
            vessel_scores(observer.astype(float), record.vessel, fov=record.fov).accuracy
        )
    assert len(accuracies) == 20
    assert np.mean(accuracies) == pytest.approx(0.9473, abs=0.0005)


@pytest.mark.slow
def test_vessel_cnn_features_separate_blurred_photos() -> None:
    import cv2
    from angioflow.models.vessel import VesselFeatureExtractor

    extractor = VesselFeatureExtractor.load()
    cases = [generate_case(seed, PhantomConfig(size=(256, 384), n_frames=2)) for seed in range(8)]
    photos = np.stack([c.fundus for c in cases])
    fovs = np.stack([c.fov for c in cases])
    blurred = np.stack([cv2.GaussianBlur(p, (0, 0), 3) for p in photos])
    sharp_features = extractor(photos, fovs)
    assert sharp_features.shape == (8, extractor.dimension)
    blurred_features = extractor(blurred, fovs)
    between_halves = frechet_distance(sharp_features[0::2], sharp_features[1::2])
    to_blurred = frechet_distance(sharp_features[0::2], blurred_features[1::2])
    assert to_blurred > 2 * between_halves


def _phantom_export(path: Path, seeds: Sequence[int]) -> None:
    """Phantom photos and A/V truth in `angioflow export`'s format (approved cases)."""
    from angioflow.pipeline.mask_structure import labels_from_channels

    with h5py.File(path, "w") as handle:
        EXPORT.stamp(handle)
        for index, seed in enumerate(seeds):
            case = generate_case(seed, PhantomConfig(size=(256, 384), n_frames=2))
            group = handle.create_group(f"{index:05d}")
            group["fundus"] = case.fundus
            group["av"] = labels_from_channels(np.moveaxis(case.av, -1, 0))
            group["vessel"] = case.vessel.astype(np.uint8)
            group["fov"] = case.fov.astype(np.uint8)


def _same(a: object, b: object) -> bool:
    """Equal as JSON (NaN equals NaN)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _broken_images(report: Path) -> tuple[int, int]:
    """(images, images that failed to load) of a page opened in headless Chromium."""
    driver = headless_chromium()
    try:
        driver.get(report.resolve().as_uri())
        total = driver.execute_script("return document.images.length")
        broken = driver.execute_script(
            "return Array.from(document.images)"
            ".filter(i => !(i.complete && i.naturalWidth > 0)).length"
        )
        assert driver.find_elements("css selector", "table"), "the report has no table"
        return total, broken
    finally:
        driver.quit()


@pytest.mark.slow
@needs_chromium
def test_reports_render_in_headless_chromium_without_broken_images(
    curated_store_template: Path, tmp_path: Path
) -> None:
    store = copy_store(curated_store_template, tmp_path / "store")
    result = runner.invoke(
        app, ["evaluate", "report", "--store", str(store), "--out", str(tmp_path / "curation")]
    )
    assert result.exit_code == 0, result.output
    report = tmp_path / "curation" / "report.html"
    total, broken = _broken_images(report)
    assert total >= 2 * 3 and broken == 0  # each case: vessel overlay + two QC pictures at least
    page = report.read_text()
    for case_id in (p.stem for p in (store / "cases").glob("*.h5")):
        assert case_id in page

    synthetic, real_export = tmp_path / "synthetic.h5", tmp_path / "real.h5"
    write_phantom_photo_set(synthetic, 6, size=128, seed=100)
    _phantom_export(real_export, [case_seed(200, i) for i in range(6)])  # as the set draws
    reference = ["--data", str(tmp_path / "no-public-data"), "--export", str(real_export)]
    result = runner.invoke(
        app,
        [
            "evaluate",
            "report",
            "--synthetic",
            str(synthetic),
            "--out",
            str(tmp_path / "synthetic"),
            *reference,
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "synthetic" / "metrics.json").read_text())
    # phantom "synthetic" photos drawn from the same generator as the reference: close structure
    # (1.36 for these 6 + 6 draws, sample noise; the shipped generators' broken masks: 3.19)
    assert metrics["structure"]["combined"]["structure_distance"] < 2.0
    assert metrics["recovery"]["dice_mean"] > 0.3  # drawn vessels found (thin at 128 px)
    assert set(metrics["realism"]) == {"vessel_cnn"}
    total, broken = _broken_images(tmp_path / "synthetic" / "report.html")
    assert total >= 1 + 2 * 6 + 2 * 6 and broken == 0  # histograms, synthetic and real grids
    structure = runner.invoke(app, ["evaluate", "structure", str(synthetic), *reference, "--json"])
    assert structure.exit_code == 0, structure.output
    assert _same(json.loads(structure.stdout), metrics["structure"])
    realism = runner.invoke(app, ["evaluate", "realism", str(synthetic), *reference, "--json"])
    assert realism.exit_code == 0, realism.output
    shown = json.loads(realism.stdout)
    assert _same(shown["feature_distances"], metrics["realism"])
    assert "two_sample" not in shown and "two_sample" not in metrics  # no held-out photos here


@pytest.mark.slow
def test_realism_against_one_real_image_is_not_measured_and_refused_when_asked_for(
    tmp_path: Path,
) -> None:
    from angioflow.flows.evaluation import evaluate_synthetic, load_real_reference, read_synthetic

    synthetic, real_export = tmp_path / "synthetic.h5", tmp_path / "real.h5"
    write_phantom_photo_set(synthetic, 4, size=128, seed=100)
    _phantom_export(real_export, range(200, 201))
    sample = read_synthetic(synthetic)
    reference = load_real_reference(128, exports=(real_export,))
    result = evaluate_synthetic(sample, reference, name=synthetic.name)
    assert "realism" not in result and "structure" in result
    assert result["not_measured"] == {
        "realism": "image realism needs at least 2 real and 2 synthetic images; the reference "
        "has 1, the set 4"
    }
    asked = runner.invoke(
        app,
        ["evaluate", "realism", str(synthetic), "--data", str(tmp_path / "none"), "--export",
         str(real_export)],
    )  # fmt: skip
    assert one_line_error(asked).endswith(
        "the reference has 1, the set 4: pass --data with the public datasets folder or "
        "--export with more approved cases"
    )


@pytest.mark.slow
def test_inception_features_from_a_user_supplied_weights_file(tmp_path: Path) -> None:
    import torch
    from angioflow.models.inception import FIDInceptionV3, InceptionFeatureExtractor

    model = FIDInceptionV3()
    # torchvision's Inception-v3 has 23,834,568 parameters without its auxiliary head; less
    # the 1000-class classifier (2048 * 1000 + 1000) that leaves the feature network.
    assert sum(p.numel() for p in model.parameters()) == 23_834_568 - 2_049_000
    state = model.state_dict() | {
        "fc.weight": torch.zeros(1008, 2048),
        "fc.bias": torch.zeros(1008),
    }
    weights = tmp_path / "pt_inception.pth"
    torch.save(state, weights)
    extractor = InceptionFeatureExtractor.load(weights)
    photos = np.stack(
        [generate_case(s, PhantomConfig(size=(128, 192), n_frames=2)).fundus for s in range(2)]
    )
    features = extractor(photos)
    assert features.shape == (2, 2048) and np.isfinite(features).all()
    wrong = tmp_path / "vessel.pth"
    torch.save({"stem.body.0.weight": torch.zeros(1)}, wrong)
    with pytest.raises(ValueError, match="lacks .* Inception-v3 tensors"):
        InceptionFeatureExtractor.load(wrong)


def _vessel_folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Truth and FOV for cases 01-03; 8-bit predictions for 01 and 03, and for 04 (no truth)."""
    rng = np.random.default_rng(3)
    folders = [tmp_path / name for name in ("pred", "gt", "fov")]
    for folder in folders:
        folder.mkdir()
    for case in ("01", "02", "03", "04"):
        truth = np.zeros((64, 80), np.uint8)
        truth[10 + int(case) : 18 + int(case)] = 255
        if case != "04":
            Image.fromarray(truth).save(folders[1] / f"{case}_manual1.gif")
            Image.fromarray(np.full_like(truth, 255)).save(folders[2] / f"{case}_mask.gif")
        if case != "02":
            noisy = np.clip(truth * 0.8 + rng.uniform(0, 60, truth.shape), 0, 255)
            Image.fromarray(noisy.astype(np.uint8)).save(folders[0] / f"{case}_vessel.png")
    (folders[0] / ".DS_Store").write_bytes(b"\0")  # hidden files are no cases
    return folders[0], folders[1], folders[2]


def test_evaluate_vessel_says_what_it_scored_and_refuses_ambiguous_input(tmp_path: Path) -> None:
    pred, gt, fov = _vessel_folders(tmp_path)
    args = ["evaluate", "vessel", "--pred", str(pred), "--gt", str(gt), "--fov", str(fov)]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n"] == 2 and sorted(report["images"]) == ["01", "03"]
    assert report["unpaired"] == {"predictions": ["04"], "truths": ["02"]}
    warnings = result.stderr.strip().splitlines()
    assert len(warnings) == 2
    assert "02_manual1.gif" in result.stderr and "04_vessel.png" in result.stderr
    table = runner.invoke(app, args)
    assert table.exit_code == 0 and "n=2 of 3" in table.stdout

    # two predictions for one case: which one was meant cannot be guessed
    Image.open(pred / "01_vessel.png").save(pred / "01_other.png")
    message = one_line_error(runner.invoke(app, args))
    assert "01_vessel.png" in message and "01_other.png" in message
    (pred / "01_other.png").unlink()

    # a prediction of another size
    Image.fromarray(np.zeros((64, 100), np.uint8)).save(pred / "03_vessel.png")
    message = one_line_error(runner.invoke(app, args))
    assert "03_vessel.png" in message and "100x64" in message and "80x64" in message

    # an FOV folder that lacks a scored case's mask would mix FOV and whole-image scores
    Image.open(pred / "01_vessel.png").save(pred / "03_vessel.png")
    (fov / "03_mask.gif").unlink()
    assert "03" in one_line_error(runner.invoke(app, args))
