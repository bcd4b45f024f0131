"""HVGN artery/vein labelling: training, resume, checkpoints, shipped weights, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from angioflow.flows.cli import app
from angioflow.models.hvgn import (
    HVGN,
    AVLabeller,
    CropSampler,
    HVGNConfig,
    HVGNTrainingConfig,
    graph_batch,
    phantom_av_training_images,
    train_hvgn,
)
from angioflow.pipeline.datasets import load_dataset
from angioflow.pipeline.metrics import av_scores
from angioflow.pipeline.phantom import PhantomConfig, generate_case
from angioflow.pipeline.qc import av_to_rgb
from angioflow.pipeline.vessel_graph import av_labels
from PIL import Image
from support import SHARED_DATA
from typer.testing import CliRunner

DATA = SHARED_DATA
TINY = HVGNConfig(base_channels=4, depth=2, features=8, hidden=8, cells=(2, 2), fov_diameter_px=180)


@pytest.fixture(scope="module")
def phantom_images() -> list:
    return phantom_av_training_images(2, seed=5, model=TINY, size=(200, 300))


def _config(**update: object) -> HVGNTrainingConfig:
    base = HVGNTrainingConfig(
        model=TINY,
        datasets=(),
        phantom_cases=2,
        steps=6,
        batch_size=2,
        crop=64,
        learning_rate=5e-3,
        checkpoint_every=3,
    )
    return base.model_copy(update=update)


class _Interrupt(Exception):
    pass


@pytest.mark.slow
def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path: Path, phantom_images) -> None:
    config = _config()
    whole = train_hvgn(config, phantom_images, tmp_path / "whole")

    def stop_after_checkpoint(step: int, loss: float) -> None:
        if step == 4:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train_hvgn(config, phantom_images, tmp_path / "cut", on_step=stop_after_checkpoint)
    steps: list[int] = []
    resumed = train_hvgn(
        config, phantom_images, tmp_path / "cut", on_step=lambda s, loss: steps.append(s)
    )
    assert steps == [4, 5, 6]  # continued after the step-3 checkpoint
    for name, tensor in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], tensor, msg=name)
    log = [json.loads(line) for line in (tmp_path / "whole" / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [3, 6]
    with pytest.raises(ValueError, match="different training config"):
        train_hvgn(_config(steps=9), phantom_images, tmp_path / "whole")


@pytest.mark.slow
def test_training_lowers_the_loss(tmp_path: Path, phantom_images) -> None:
    losses: list[float] = []
    config = _config(steps=60, checkpoint_every=60, batch_size=2, crop=96)
    train_hvgn(
        config, phantom_images, tmp_path / "run", on_step=lambda s, loss: losses.append(loss)
    )
    assert np.mean(losses[-10:]) < 0.9 * losses[0]


@pytest.mark.slow
def test_saved_weights_round_trip_in_half_precision(tmp_path: Path, phantom_images) -> None:
    torch.manual_seed(0)
    model = HVGN(TINY).eval()
    model.save(tmp_path / "w")
    loaded = HVGN.load(tmp_path / "w")
    assert loaded.config == TINY
    x, vessels, _ = CropSampler(phantom_images, crop=64, seed=0).batch(2)
    graph = graph_batch(vessels, TINY)
    with torch.no_grad():
        expected, _ = model(torch.from_numpy(x), graph)
        got, _ = loaded(torch.from_numpy(x), graph)
    assert torch.allclose(expected, got, atol=2e-2)
    with pytest.raises(FileNotFoundError, match="HVGN.save"):
        HVGN.load(tmp_path / "missing")


def test_crops_keep_labels_on_the_vessel_mask(phantom_images) -> None:
    x, vessels, labels = CropSampler(phantom_images, crop=64, seed=3).batch(4)
    assert x.shape == (4, 3, 64, 64)
    for vessel, label in zip(vessels, labels, strict=True):
        assert vessel.any()
        assert ((label > 0) <= vessel).all()  # every labelled pixel is a vessel pixel


# ---- shipped weights and CLI -------------------------------------------------------------------


@pytest.fixture(scope="module")
def labeller() -> AVLabeller:
    return AVLabeller.load()


@pytest.mark.slow
def test_shipped_weights_label_an_unseen_phantom_case(labeller: AVLabeller) -> None:
    case = generate_case(8899, PhantomConfig(size=(584, 876), n_frames=2))
    truth = case.av_labels
    probability = labeller.artery_probability(case.fundus, case.vessel)
    labels = av_labels(probability, case.vessel)
    assert set(np.unique(labels[case.vessel])) <= {1, 2}
    assert (labels[~case.vessel] == 0).all()
    assert av_scores(labels, truth).accuracy >= 0.8  # an untrained model scores ~0.5


@pytest.mark.slow
def test_a_mirrored_photo_gets_the_mirrored_labels(labeller: AVLabeller) -> None:
    case = generate_case(8897, PhantomConfig(size=(584, 876), n_frames=2))

    def mirror(array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(array[:, ::-1])

    labels = av_labels(labeller.artery_probability(case.fundus, case.vessel), case.vessel)
    probability = labeller.artery_probability(mirror(case.fundus), mirror(case.vessel))
    mirrored = mirror(av_labels(probability, mirror(case.vessel)))
    agreement = (labels == mirrored)[case.vessel].mean()
    assert agreement >= 0.97  # 0.95 without the mirror averaging (flips=False)


@pytest.mark.slow
def test_labels_do_not_depend_on_the_callers_thread_count(labeller: AVLabeller) -> None:
    case = generate_case(8898, PhantomConfig(size=(584, 876), n_frames=2))
    before = torch.get_num_threads()
    try:
        probabilities = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            probabilities.append(labeller.artery_probability(case.fundus, case.vessel))
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(probabilities[0], probabilities[1])


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "RITE").is_dir(), reason="RITE is absent from ../shared/data")
def test_shipped_weights_on_a_rite_test_image(labeller: AVLabeller) -> None:
    record = load_dataset(DATA, "rite", "test", limit=1)[0]
    probability = labeller.artery_probability(record.image, record.vessel, fov=record.fov)
    assert av_scores(av_labels(probability, record.vessel), record.av).accuracy >= 0.8


@pytest.mark.slow
def test_label_av_and_evaluate_av_commands(tmp_path: Path) -> None:
    case = generate_case(8898, PhantomConfig(size=(400, 600), n_frames=2))
    truth = case.av_labels
    Image.fromarray(case.fundus).save(tmp_path / "07_photo.png")
    Image.fromarray(case.vessel.astype(np.uint8) * 255).save(tmp_path / "07_vessel.png")
    (tmp_path / "gt").mkdir()
    Image.fromarray(av_to_rgb(truth)).save(tmp_path / "gt" / "07_av.png")
    runner = CliRunner()
    out = tmp_path / "pred" / "07_av.png"
    result = runner.invoke(
        app,
        [
            "label-av",
            str(tmp_path / "07_photo.png"),
            "--vessel",
            str(tmp_path / "07_vessel.png"),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    rgb = np.asarray(Image.open(out).convert("RGB"))
    assert rgb.shape == case.fundus.shape
    colours = {tuple(c) for c in rgb[case.vessel].reshape(-1, 3)}
    assert colours <= {(255, 0, 0), (0, 0, 255)} and (rgb[~case.vessel] == 0).all()

    result = runner.invoke(
        app,
        [
            "evaluate",
            "av",
            "--pred",
            str(tmp_path / "pred"),
            "--gt",
            str(tmp_path / "gt"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    expected = av_scores(av_labels_from_png(out), truth)
    assert report["images"]["07"]["accuracy"] == pytest.approx(expected.accuracy)
    assert report["n"] == 1

    wrong = tmp_path / "small.png"
    wrong_size = np.zeros((100, 120), np.uint8)
    wrong_size[50, 10:110] = 255
    Image.fromarray(wrong_size).save(wrong)
    result = runner.invoke(
        app,
        [
            "label-av",
            str(tmp_path / "07_photo.png"),
            "--vessel",
            str(wrong),
            "--out",
            str(tmp_path / "x.png"),
        ],
    )
    assert result.exit_code != 0
    assert "pass the mask made for this photo" in " ".join(result.stderr.split())
    assert not (tmp_path / "x.png").exists()


def av_labels_from_png(path: Path) -> np.ndarray:
    from angioflow.pipeline.datasets import av_labels_from_rgb

    return av_labels_from_rgb(np.asarray(Image.open(path).convert("RGB")))


@pytest.mark.slow
def test_train_hvgn_command_writes_weights_that_label_av_uses(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "steps: 2\nbatch_size: 1\ncrop: 64\ncheckpoint_every: 1\ndatasets: []\nphantom_cases: 1\n"
        "model: {base_channels: 4, depth: 2, features: 8, hidden: 8, cells: [2, 2]}\n"
    )
    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "hvgn", "--config", str(config), "--out", str(run)])
    assert result.exit_code == 0, result.output
    trained = HVGN.load(run / "weights").config
    assert trained.features == 8 and trained.in_channels == 3
    assert len((run / "log.jsonl").read_text().splitlines()) == 2

    case = generate_case(8897, PhantomConfig(size=(300, 450), n_frames=2))
    Image.fromarray(case.fundus).save(tmp_path / "photo.png")
    Image.fromarray(case.vessel.astype(np.uint8) * 255).save(tmp_path / "vessel.png")
    out = tmp_path / "av.png"
    args = ["label-av", str(tmp_path / "photo.png"), "--vessel", str(tmp_path / "vessel.png")]
    result = runner.invoke(app, [*args, "--out", str(out), "--weights", str(run / "weights")])
    assert result.exit_code == 0, result.output
    assert np.asarray(Image.open(out)).shape == case.fundus.shape

    config.write_text("steps: 2\ndatasets: []\nmodel: {fa_channels: 2}\n")
    result = runner.invoke(app, ["train", "hvgn", "--config", str(config), "--out", str(run)])
    assert result.exit_code != 0 and "have no FA" in " ".join(result.stderr.split())


@pytest.mark.slow
def test_training_continues_from_saved_weights(tmp_path: Path, phantom_images) -> None:
    first = train_hvgn(_config(), phantom_images, tmp_path / "first")
    weights = tmp_path / "first" / "weights"
    second = _config(init_weights=str(weights), steps=1, learning_rate=1e-9)
    train_hvgn(second, phantom_images, tmp_path / "second")
    continued = HVGN.load(tmp_path / "second" / "weights")
    for name, tensor in first.state_dict().items():
        if tensor.is_floating_point() and "running" not in name:
            torch.testing.assert_close(continued.state_dict()[name], tensor, atol=2e-3, rtol=1e-2)
    other = _config(init_weights=str(weights), model=TINY.model_copy(update={"hidden": 12}))
    with pytest.raises(ValueError, match="has model config"):
        train_hvgn(other, phantom_images, tmp_path / "third")
