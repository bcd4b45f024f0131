"""The commands that read and write masks at the edges: public-dataset formats in, class-index
A/V masks out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from angioflow.flows.cli import app
from angioflow.pipeline.av_encoding import av_labels_from_rgb
from angioflow.pipeline.metrics import vessel_scores
from PIL import Image
from support import SHARED_DATA
from typer.testing import CliRunner

runner = CliRunner()


def test_evaluate_vessel_reads_gif_pbm_and_16_bit_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    truth = np.zeros((96, 128), bool)
    truth[20:30], truth[:, 60:66] = True, True
    fov = np.zeros_like(truth)
    fov[5:-5, 5:-5] = True
    probability = np.clip(truth * 0.7 + rng.uniform(0, 0.4, truth.shape), 0, 1)
    for folder in ("pred", "gt", "fov"):
        (tmp_path / folder).mkdir()
    Image.fromarray(np.round(probability * 65535).astype(np.uint16)).save(
        tmp_path / "pred" / "01_test_vessel.png"
    )
    Image.fromarray(truth.astype(np.uint8) * 255).save(tmp_path / "gt" / "01_manual1.gif")
    Image.fromarray(fov).save(tmp_path / "fov" / "01_test_mask.pbm")
    args = ["evaluate", "vessel", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]
    result = runner.invoke(app, [*args, "--fov", str(tmp_path / "fov"), "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)["images"]["01"]
    expected = vessel_scores(np.round(probability * 65535) / 65535, truth, fov=fov).as_dict()
    assert scores == pytest.approx(expected, abs=1e-6)

    (tmp_path / "gt" / "01_manual1.gif").write_bytes(b"GIF89a truncated")
    broken = runner.invoke(app, args)
    assert broken.exit_code == 2 and "01_manual1.gif" in broken.stderr
    assert len(broken.stderr.strip().splitlines()) == 1


def test_evaluate_vessel_reads_drive_gif_truth() -> None:
    truth = SHARED_DATA / "DRIVE" / "test" / "1st_manual"
    if not truth.is_dir():
        pytest.skip(f"{truth} absent: DRIVE's manual GIF masks are needed for this test")
    # The second observer's palette GIFs scored against the first's: DRIVE's published
    # human agreement (accuracy about 0.947 in the FOV).
    args = ["evaluate", "vessel", "--pred", str(truth.parent / "2nd_manual"), "--gt", str(truth)]
    result = runner.invoke(app, [*args, "--fov", str(truth.parent / "mask"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n"] == 20
    assert report["mean"]["accuracy"] == pytest.approx(0.947, abs=0.01)


@pytest.mark.slow
def test_label_av_writes_class_indices_on_request(tmp_path: Path) -> None:
    from angioflow.pipeline.phantom import PhantomConfig, generate_case

    case = generate_case(8898, PhantomConfig(size=(400, 600), n_frames=2))
    Image.fromarray(case.fundus).save(tmp_path / "photo.png")
    Image.fromarray(case.vessel).save(tmp_path / "vessel.pbm")  # a 1-bit mask
    args = ["label-av", str(tmp_path / "photo.png"), "--vessel", str(tmp_path / "vessel.pbm")]
    picture = runner.invoke(app, [*args, "--out", str(tmp_path / "rgb.png")])
    classes = runner.invoke(app, [*args, "--out", str(tmp_path / "av.png"), "--class-indices"])
    assert picture.exit_code == 0 and classes.exit_code == 0, picture.output + classes.output
    with Image.open(tmp_path / "av.png") as image:
        assert image.mode == "L"
        labels = np.asarray(image)
    assert set(np.unique(labels)) <= {0, 1, 2, 3} and (labels[~case.vessel] == 0).all()
    rgb = np.asarray(Image.open(tmp_path / "rgb.png").convert("RGB"))
    np.testing.assert_array_equal(av_labels_from_rgb(rgb), labels)
