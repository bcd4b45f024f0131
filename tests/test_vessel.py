"""Vessel segmentation: metrics, preprocessing, the U-Net, tiled inference, training, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from angioflow.flows.cli import app
from angioflow.models.vessel import (
    DEFAULT_WEIGHTS,
    PatchSampler,
    VesselSegmenter,
    VesselTrainingConfig,
    VesselUNet,
    VesselUNetConfig,
    prepare_training_image,
    train_vessel,
)
from angioflow.pipeline.datasets import av_labels_from_rgb, load_dataset
from angioflow.pipeline.metrics import cl_dice, roc_auc, vessel_scores
from angioflow.pipeline.preprocess import (
    fov_mask,
    vessel_contrast,
)
from PIL import Image
from support import SHARED_DATA
from typer.testing import CliRunner

TINY = VesselUNetConfig(base_channels=4, depth=2, fov_diameter_px=60)


def _tiny_recipe(**values: object) -> VesselTrainingConfig:
    """A training recipe of the tiny model on 32 px patches (the default clDice weight, 0.2)."""
    return VesselTrainingConfig(model=TINY, patch=32, **values)


def drive(split: str, limit: int) -> list:
    if not (SHARED_DATA / "DRIVE").is_dir():
        pytest.skip(f"{SHARED_DATA / 'DRIVE'} absent: DRIVE images are needed for this test")
    return load_dataset(SHARED_DATA, "drive", split, limit=limit)  # type: ignore[arg-type]


def synthetic_vessels(
    shape: tuple[int, int] = (80, 80), seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A float image with bright random lines and their exact mask."""
    import cv2

    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, np.uint8)
    for _ in range(6):
        p, q = rng.integers(0, shape[0], 2), rng.integers(0, shape[1], 2)
        cv2.line(mask, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), 1, int(rng.integers(1, 4)))
    image = 0.3 + 0.5 * mask + 0.05 * rng.standard_normal(shape)
    return np.clip(image, 0, 1).astype(np.float32), mask.astype(bool)


# ---- metrics ---------------------------------------------------------------------------------


def test_auc_matches_the_pairwise_definition() -> None:
    rng = np.random.default_rng(1)
    scores, labels = rng.random(300).round(2), rng.random(300) < 0.3
    pairs = [(s > t) + 0.5 * (s == t) for s in scores[labels] for t in scores[~labels]]
    assert roc_auc(scores, labels) == pytest.approx(np.mean(pairs))
    with pytest.raises(ValueError, match="both vessel and background"):
        roc_auc(scores, np.zeros(300, bool))


def test_perfect_and_inverted_predictions() -> None:
    _, truth = synthetic_vessels()
    perfect = vessel_scores(truth.astype(float), truth)
    assert perfect.as_dict() == {k: 1.0 for k in perfect.as_dict()}
    inverted = vessel_scores(1.0 - truth, truth)
    assert inverted.auc == 0.0 and inverted.sensitivity == 0.0 and inverted.f1 == 0.0


def test_cl_dice_punishes_a_broken_vessel_more_than_dice() -> None:
    truth = np.zeros((40, 100), bool)
    truth[18:22, 5:95] = True
    broken = truth.copy()
    broken[:, 48:52] = False
    thinner = truth.copy()
    thinner[18, :] = False
    assert cl_dice(thinner, truth) == 1.0  # same topology
    assert cl_dice(broken, truth) < 1.0
    with pytest.raises(ValueError, match="differ"):
        cl_dice(truth, truth[:, :50])


def test_scores_only_count_the_fov() -> None:
    _, truth = synthetic_vessels()
    probability = truth.astype(float)
    fov = np.zeros_like(truth)
    fov[:, :40] = True
    probability[:, 40:] = 1.0 - probability[:, 40:]  # wrong outside the FOV only
    assert vessel_scores(probability, truth, fov=fov).accuracy == 1.0
    with pytest.raises(ValueError, match="same"):
        vessel_scores(probability, truth, fov=fov[:10])


# ---- datasets and preprocessing ------------------------------------------------------------------


def test_av_colours_decode_to_store_labels() -> None:
    rgb = np.array(
        [[[0, 0, 0], [255, 0, 0], [0, 0, 255], [0, 255, 0], [255, 255, 255], [250, 5, 3]]], np.uint8
    )
    np.testing.assert_array_equal(av_labels_from_rgb(rgb), [[0, 1, 2, 3, 3, 1]])


def test_estimated_fov_matches_drive_masks_and_vessels_come_out_bright() -> None:
    for record in drive("training", 4):
        estimated = fov_mask(record.image, modality="fundus")
        iou = (estimated & record.fov).sum() / (estimated | record.fov).sum()
        assert iou > 0.95, record.name
        contrast = vessel_contrast(record.image, modality="fundus", fov=record.fov)
        inside = record.fov
        background = contrast[~record.vessel & inside]
        assert abs(contrast[inside].mean()) < 0.1 and 0.7 < contrast[inside].std() < 1.2
        assert contrast[record.vessel & inside].mean() > background.mean() + 1.5 * background.std()
        assert (contrast[~inside] == 0).all()


def test_fa_frames_keep_vessels_bright() -> None:
    image, truth = synthetic_vessels((120, 120))
    frame = np.round(image * 4095).astype(np.uint16)
    contrast = vessel_contrast(frame, modality="fa", fov=np.ones_like(truth))
    assert contrast[truth].mean() > contrast[~truth].mean() + 1.0
    with pytest.raises(ValueError, match="FA frame must be"):
        vessel_contrast(np.dstack([frame] * 3), modality="fa")
    with pytest.raises(ValueError, match="modality must be"):
        fov_mask(frame, modality="oct")  # type: ignore[arg-type]


# ---- the model ---------------------------------------------------------------------------------


def test_unet_shapes_and_input_checks() -> None:
    model = VesselUNet(TINY).eval()
    assert model(torch.zeros(2, 1, 32, 48)).shape == (2, 1, 32, 48)
    with pytest.raises(ValueError, match="multiples of 4"):
        model(torch.zeros(1, 1, 30, 32))
    with pytest.raises(ValueError, match=r"expected \(N, 1, H, W\)"):
        model(torch.zeros(1, 3, 32, 32))


def test_save_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = VesselUNet(TINY).eval()
    x = torch.randn(1, 1, 32, 32)
    model.save(tmp_path / "full", half=False)
    restored = VesselUNet.load(tmp_path / "full")
    assert restored.config == TINY
    torch.testing.assert_close(restored(x), model(x))
    model.save(tmp_path / "half")
    torch.testing.assert_close(
        VesselUNet.load(tmp_path / "half")(x), model(x), atol=2e-2, rtol=1e-2
    )
    with pytest.raises(FileNotFoundError, match="config.json is missing; pass a folder written by"):
        VesselUNet.load(tmp_path)


def _tiny_images() -> list:
    images = []
    for seed in range(3):
        image, truth = synthetic_vessels((72, 72), seed)
        images.append(
            prepare_training_image(
                f"synthetic/{seed}",
                image,
                truth,
                np.ones_like(truth),
                modality="fa",
                model=TINY.model_copy(update={"fov_diameter_px": 72}),
            )
        )
    return images


@pytest.mark.slow
def test_seeded_training_learns_and_resumes(tmp_path: Path) -> None:
    config = _tiny_recipe(steps=80, batch_size=4, learning_rate=5e-3, checkpoint_every=40)
    images = _tiny_images()
    losses: list[float] = []
    model = train_vessel(
        config, images, tmp_path / "run", on_step=lambda s, loss: losses.append(loss)
    )
    assert losses[-1] < losses[0]
    unseen, truth = synthetic_vessels((72, 72), seed=99)
    probability = VesselSegmenter(model, "").segment(unseen, modality="fa", fov=np.ones_like(truth))
    assert roc_auc(probability, truth) > 0.85  # an untrained model scores ~0.5
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [40, 80]

    longer = config.model_copy(update={"steps": 120})
    with pytest.raises(ValueError, match="different training config"):
        train_vessel(longer, images, tmp_path / "run")
    steps: list[int] = []
    train_vessel(config, images, tmp_path / "run", on_step=lambda s, loss: steps.append(s))
    assert steps == []  # already finished: resume does no work
    # a run saved before an option existed is the same run when the option is at its default
    saved_config = tmp_path / "run" / "training_config.json"
    older = json.loads(saved_config.read_text())
    del older["model"]["norm"], older["scale_range"]
    saved_config.write_text(json.dumps(older))
    train_vessel(config, images, tmp_path / "run", on_step=lambda s, loss: steps.append(s))
    assert steps == []

    again = train_vessel(config, images, tmp_path / "again", on_step=lambda s, loss: None)
    x = torch.from_numpy(images[0].channels[None, :, :72, :72].copy())
    torch.testing.assert_close(again(x), model(x))  # same seed, same weights
    sampler = PatchSampler(images, patch=32, seed=1)
    x, y, w = sampler.batch(5)
    assert x.shape == y.shape == w.shape == (5, 1, 32, 32) and set(np.unique(y)) <= {0.0, 1.0}


def test_tiled_inference_equals_whole_image_inference() -> None:
    torch.manual_seed(0)
    segmenter = VesselSegmenter(VesselUNet(TINY).eval(), "0" * 64)
    image, _ = synthetic_vessels((150, 170))
    frame = np.round(image * 255).astype(np.uint8)
    fov = np.ones(frame.shape, bool)
    fov[:, :5] = False
    whole = segmenter.segment(frame, modality="fa", fov=fov, tile=256, overlap=0)
    tiled = segmenter.segment(frame, modality="fa", fov=fov, tile=64, overlap=12)
    assert whole.shape == frame.shape and whole.dtype == np.float32
    assert (whole[:, :5] == 0).all()
    assert np.abs(whole - tiled)[20:-20, 20:-20].mean() < 0.05


# ---- shipped weights and CLI -------------------------------------------------------------------


@pytest.mark.slow
def test_shipped_weights_segment_a_drive_test_image(tmp_path: Path) -> None:
    record = drive("test", 1)[0]
    if not DEFAULT_WEIGHTS.is_dir():
        pytest.fail(f"shipped weights missing at {DEFAULT_WEIGHTS}")
    Image.fromarray(record.image).save(tmp_path / "01_test.png")
    result = CliRunner().invoke(
        app, ["segment", str(tmp_path / "01_test.png"), "--out", str(tmp_path / "pred")]
    )
    assert result.exit_code == 0, result.output
    written = tmp_path / "pred" / "01_test_vessel.png"
    probability = np.asarray(Image.open(written), np.float32) / 255
    assert probability.shape == record.image.shape[:2]
    scores = vessel_scores(probability, record.vessel, fov=record.fov)
    assert scores.auc > 0.96 and scores.accuracy > 0.94

    (tmp_path / "gt").mkdir()
    Image.fromarray(record.vessel.astype(np.uint8) * 255).save(tmp_path / "gt" / "01_manual1.png")
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "vessel",
            "--pred",
            str(tmp_path / "pred"),
            "--gt",
            str(tmp_path / "gt"),
            "--json",
        ],
    )
    report = json.loads(result.stdout)
    assert report["n"] == 1 and report["images"]["01"]["auc"] == pytest.approx(
        vessel_scores(probability, record.vessel).auc, abs=1e-6
    )


@pytest.mark.slow
def test_fine_tuning_starts_from_the_given_weights(tmp_path: Path) -> None:
    torch.manual_seed(3)
    VesselUNet(TINY).save(tmp_path / "start", half=False)
    start = VesselUNet.load(tmp_path / "start")
    config = _tiny_recipe(
        steps=1,
        batch_size=2,
        learning_rate=1e-12,
        weight_decay=0.0,
        cl_dice_weight=0.0,
        init_weights=str(tmp_path / "start"),
    )
    tuned = train_vessel(config, _tiny_images(), tmp_path / "run")
    for name, weight in start.state_dict().items():
        if name.endswith("weight") and weight.ndim == 4:
            torch.testing.assert_close(tuned.state_dict()[name], weight)
    other = config.model_copy(update={"model": TINY.model_copy(update={"base_channels": 8})})
    with pytest.raises(ValueError, match="has model config"):
        train_vessel(other, _tiny_images(), tmp_path / "other")


@pytest.mark.slow
def test_segment_skips_bad_inputs_but_writes_the_rest(tmp_path: Path) -> None:
    image, _ = synthetic_vessels((96, 128))
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(tmp_path / "frame.png")
    (tmp_path / "broken.png").write_text("not an image")
    args = [
        "segment",
        str(tmp_path / "frame.png"),
        str(tmp_path / "broken.png"),
        str(tmp_path / "absent.png"),
        "--out",
        str(tmp_path / "out"),
        "--modality",
        "fa",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert (
        "broken.png: not a readable PNG" in result.stderr
        and "absent.png: no such file" in result.stderr
    )
    written = np.asarray(Image.open(tmp_path / "out" / "frame_vessel.png"))
    assert written.shape == (96, 128) and written.dtype == np.uint8
    result = CliRunner().invoke(
        app, [*args[:2], "--out", str(tmp_path / "o2"), "--modality", "oct"]
    )
    assert result.exit_code == 2 and "oct" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("steps", [3, 20, 39])
def test_short_runs_train_to_their_last_step(tmp_path: Path, steps: int) -> None:
    config = _tiny_recipe(steps=steps, batch_size=2, cl_dice_weight=0.0, checkpoint_every=50)
    train_vessel(config, _tiny_images(), tmp_path / "run")
    log = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert json.loads(log[-1])["step"] == steps
