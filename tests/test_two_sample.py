"""The classifier two-sample test: it tells photos that differ apart and finds nothing between
two draws of the same source (phantom colour photos, rendered for each test)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from angioflow.flows.cli import app
from angioflow.models.generation import write_phantom_photo_set
from angioflow.models.pix2pixhd import make_pair
from angioflow.models.two_sample import TwoSampleConfig, classifier_two_sample_test
from angioflow.pipeline.phantom import PhantomConfig, case_seed, generate_case
from support import SHARED_DATA
from typer.testing import CliRunner

runner = CliRunner()

# small enough for a test: 128 px photos, 48 px crops, 120 steps a fold
CONFIG = TwoSampleConfig(image_size=128, crop=48, steps=120, batch_size=16, crops_per_image=8)


def _phantom_photos(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    config = PhantomConfig(size=(260, 300), n_frames=1, fa_size=(64, 64), bad_frame_probability=0)
    photos, fovs = [], []
    for index in range(n):
        case = generate_case(case_seed(seed, index), config)
        masks, photo = make_pair(case.fundus, case.av_labels, case.fov, 128)
        photos.append(photo)
        fovs.append(masks[2] > 0.5)
    return np.stack(photos), np.stack(fovs)


@pytest.fixture(scope="module")
def photos() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {"a": _phantom_photos(31, 15), "b": _phantom_photos(977, 15)}


def test_blurred_photos_are_told_apart(photos: dict) -> None:
    real, fov = photos["a"]
    blurred = np.stack([cv2.GaussianBlur(p, (0, 0), 1.5) for p in photos["b"][0]])
    result = classifier_two_sample_test(real, fov, blurred, photos["b"][1], CONFIG)
    assert result.auc >= 0.9, result
    assert len(result.fold_aucs) == 5 and (result.real, result.synthetic) == (15, 15)


def test_two_draws_of_one_source_are_not(photos: dict) -> None:
    result = classifier_two_sample_test(*photos["a"], *photos["b"], CONFIG)
    assert 0.2 <= result.auc <= 0.8, result
    again = classifier_two_sample_test(*photos["a"], *photos["b"], CONFIG)
    assert again == result  # seeded: the same photos give the same AUC


def test_too_few_photos_for_the_folds_are_refused(photos: dict) -> None:
    real, fov = photos["a"]
    with pytest.raises(ValueError, match="needs at least 5 photos of each set; got 15 real and 4"):
        classifier_two_sample_test(real, fov, real[:4], fov[:4], CONFIG)
    with pytest.raises(ValueError, match="use a smaller crop"):
        classifier_two_sample_test(real, fov, real, fov, CONFIG.model_copy(update={"crop": 120}))


@pytest.mark.skipif(
    not all((SHARED_DATA / name / "test").is_dir() for name in ("RITE", "LES-AV")),
    reason=f"RITE and LES-AV test splits not found at {SHARED_DATA}",
)
def test_evaluate_realism_runs_it_against_the_held_out_test_photos(tmp_path: Path) -> None:
    synthetic = tmp_path / "phantom.h5"
    write_phantom_photo_set(synthetic, 6, size=128, seed=4)
    shown = runner.invoke(app, ["evaluate", "realism", str(synthetic), "--json"])
    assert shown.exit_code == 0, shown.output
    test = json.loads(shown.stdout)["two_sample"]
    # DRIVE's 20 test photos (RITE test) and LES-AV's 11, none of them ever trained on
    assert (test["real_samples"], test["synthetic_samples"], test["folds"]) == (31, 6, 5)
    assert test["real_sources"] == ["rite", "les-av"]
    assert 0 <= test["fold_auc_min"] <= test["fold_auc_max"] <= 1 and 0 <= test["auc"] <= 1
