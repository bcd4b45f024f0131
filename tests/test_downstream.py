"""`angioflow evaluate downstream`: every setting of the experiment trains, scores and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest
from angioflow.flows.cli import app
from angioflow.models.generation import write_phantom_photo_set
from support import SHARED_DATA
from typer.testing import CliRunner

DATA = SHARED_DATA
needs_data = pytest.mark.skipif(
    not (DATA / "DRIVE").is_dir(), reason=f"public datasets not found at {DATA} (../shared/data)"
)
runner = CliRunner()


@pytest.mark.slow
@pytest.mark.long
@needs_data
def test_downstream_experiment_runs_every_setting_and_resumes(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "synthetic_counts: [2, 3]\nseeds: [0]\ntest_limit: 1\n"
        "training: {steps: 2, batch_size: 2, phantom_fa_cases: 0, checkpoint_every: 1}\n"
        "av: {steps: 1, batch_size: 1, crop: 64, phantom_cases: 0, checkpoint_every: 1}\n"
    )
    synthetic = tmp_path / "synthetic.h5"
    write_phantom_photo_set(synthetic, 3, size=128)
    arguments = [
        "evaluate",
        "downstream",
        "--work",
        str(tmp_path / "work"),
        "--config",
        str(config),
        "--synthetic",
        str(synthetic),
        "--data",
        str(DATA),
    ]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "work" / "results.json").read_text())
    sizes = {r["name"]: r["training_images"] for r in results["settings"]}
    assert sizes == {
        "real": 20,
        "real+2syn": 22,
        "real+3syn": 23,
        "3syn": 3,
        "real+2phantom": 22,  # the rule-based arm: phantom photos at the set's size
        "real+3phantom": 23,
        "3phantom": 3,
    }
    assert list(results["summary"]) == list(sizes)
    with h5py.File(tmp_path / "work" / "phantom.h5", "r") as handle:
        assert handle["images"].shape == (3, 128, 128, 3)
        assert json.loads(handle.attrs["provenance"])["generator"] == "phantom"
    assert all(0.0 <= r["auc"] <= 1.0 and r["test_images"] == 1 for r in results["settings"])
    assert all(0.0 <= r["av_accuracy"] <= 1.0 for r in results["settings"])  # HVGN arm ran
    finished = {p: p.stat().st_mtime_ns for p in (tmp_path / "work").glob("*/result.json")}
    again = runner.invoke(app, arguments)
    assert again.exit_code == 0, again.output
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # nothing retrained
    assert (tmp_path / "work" / "report.html").is_file()
    assert (tmp_path / "work" / "downstream.png").is_file()
