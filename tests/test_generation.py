"""Synthetic sets: the documented HDF5 schema and folder layout, resuming a killed run, the
Prefect generation flow and its cron deployment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from angioflow.flows.cli import app
from angioflow.models.ddpm import MaskCascade, MaskDDPM
from angioflow.models.edsr import EDSR, EDSRConfig
from angioflow.models.generation import Generators, SetRequest, generate_set
from angioflow.models.pix2pixhd import GlobalGenerator, Pix2PixHDConfig
from PIL import Image
from support import SHARED_DATA, short_run, tiny_mask_ddpm
from typer.testing import CliRunner

pytestmark = pytest.mark.slow  # DDPM sampling and a killed generate process

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small untrained models saved as weight folders (the pipeline, not the quality, is tested)."""
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    upsampler = tiny_mask_ddpm(
        32, timesteps=100, attention_resolutions=(), coordinates=True, layout_size=16
    )
    # calibre-conditioned, as the shipped layout model: a set's levels are drawn together
    layout = tiny_mask_ddpm(16, timesteps=20, calibre_condition=True, condition_values=(125, 874))
    models = {
        "ddpm": MaskCascade(MaskDDPM(layout), MaskDDPM(upsampler)),
        "pix2pixhd": GlobalGenerator(
            Pix2PixHDConfig(image_size=32, generator_features=4, downsamplings=2, residual_blocks=1)
        ),
        "edsr": EDSR(EDSRConfig(features=8, blocks=1)),
    }
    for name, model in models.items():
        model.save(folder / name)
    return {name: folder / name for name in models}


def _generators(weights: dict[str, Path]) -> Generators:
    return Generators.load(weights["ddpm"], weights["pix2pixhd"], weights["edsr"])


def test_generate_writes_the_documented_schema_and_folders(
    tiny_weights: dict[str, Path], tmp_path: Path
) -> None:
    out, folders = tmp_path / "synthetic.h5", tmp_path / "drive_like"
    args = [
        "generate",
        "--n",
        "5",
        "--out",
        str(out),
        "--batch-size",
        "2",
        "--steps",
        "5",
        "--export-folders",
        str(folders),
    ]
    for name, path in tiny_weights.items():
        args += [f"--{name}", str(path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert "5 synthetic samples of 128x128" in result.output
    with h5py.File(out) as handle:
        assert handle["images"].shape == (5, 128, 128, 3) and handle["images"].dtype == np.uint8
        assert handle["av"].shape == handle["vessel"].shape == (5, 128, 128)
        assert handle["av"].chunks == (1, 128, 128) and handle["av"].compression == "gzip"
        assert np.array_equal(handle["vessel"][()], (handle["av"][()] > 0).astype(np.uint8))
        assert set(np.unique(handle["av"][()])) <= {0, 1, 2, 3}
        provenance = json.loads(handle.attrs["provenance"])
    assert set(provenance["weights_sha256"]) == {"ddpm", "pix2pixhd", "edsr"}
    assert provenance["sampler"] == "dpm" and provenance["steps"] == 5 and provenance["n"] == 5
    for name in ("images", "av", "vessel"):
        assert sorted(p.name for p in (folders / name).iterdir()) == [
            f"{i:05d}.png" for i in range(5)
        ]
    assert np.asarray(Image.open(folders / "vessel" / "00000.png")).max() in (0, 255)
    assert not (tmp_path / "synthetic.h5.parts").exists()
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "never overwritten" in again.stderr


_KILLED = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from angioflow.models.generation import Generators, SetRequest, generate_set
    folders = [Path(p) for p in sys.argv[1:4]]
    generators = Generators.load(*folders)
    done = []
    def kill_after_two_batches(count):
        done.append(count)
        if len(done) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    generate_set(generators, SetRequest(n=7, seed=4, steps=5, batch_size=2), Path(sys.argv[4]),
                 on_batch=kill_after_two_batches)
    """
)


def test_a_killed_generate_run_resumes_to_the_same_set(
    tiny_weights: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "resumed.h5"
    weights = [str(tiny_weights[k]) for k in ("ddpm", "pix2pixhd", "edsr")]
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED, *weights, str(out)],
        cwd=ROOT,
        capture_output=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    parts = sorted(p.name for p in (tmp_path / "resumed.h5.parts").glob("*.npz"))
    assert parts == ["00000.npz", "00001.npz"] and not out.exists()

    request = SetRequest(n=7, seed=4, steps=5, batch_size=2)
    computed = []
    generate_set(_generators(tiny_weights), request, out, on_batch=computed.append)
    straight = tmp_path / "straight.h5"
    generate_set(_generators(tiny_weights), request, straight)
    with h5py.File(out) as a, h5py.File(straight) as b:
        for name in ("images", "av", "vessel"):
            assert np.array_equal(a[name][()], b[name][()]), name
    with pytest.raises(FileExistsError, match="other settings"):
        (tmp_path / "other.h5.parts").mkdir()
        (tmp_path / "other.h5.parts" / "provenance.json").write_text("{}")
        generate_set(_generators(tiny_weights), request, tmp_path / "other.h5")


def test_generation_flow_and_its_cron_deployment(
    tiny_weights: dict[str, Path], tmp_path: Path, prefect_server: None
) -> None:
    from angioflow.flows.generation import generation_flow
    from prefect.client.orchestration import get_client

    result = generation_flow(
        str(tmp_path / "sets"),
        n=3,
        steps=5,
        ddpm_weights=str(tiny_weights["ddpm"]),
        pix2pixhd_weights=str(tiny_weights["pix2pixhd"]),
        edsr_weights=str(tiny_weights["edsr"]),
    )
    with h5py.File(result["set"]) as handle:
        assert handle["images"].shape[0] == 3
    metrics = json.loads(Path(result["set"]).with_suffix(".metrics.json").read_text())
    assert metrics["samples"] == 3 and 0.0 <= metrics["recovery"]["dice_mean"] <= 1.0
    assert Path(result["report"]).is_file()
    assert result["export"] is None  # no store given: nothing exported

    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        (ROOT / "data_catalog.yaml").read_text().replace('cron: "0 3 * * 1"', 'cron: "15 2 * * *"')
    )
    registered = runner.invoke(
        app, ["serve", "--catalog", str(catalog), "--work-pool", "generation-pool"]
    )
    assert registered.exit_code == 0, registered.stderr
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("generate/angioflow")
    assert deployment.work_pool_name == "generation-pool"
    assert deployment.schedules[0].schedule.cron == "15 2 * * *"
    assert deployment.parameters["n"] == 200 and deployment.parameters["out_dir"].startswith(
        str(tmp_path)
    )


@pytest.mark.skipif(not (SHARED_DATA / "RITE").is_dir(), reason="../shared/data/RITE is absent")
def test_the_generation_flow_retrains_both_stages_of_the_cascade(
    tiny_weights: dict[str, Path], tmp_path: Path, prefect_server: None
) -> None:
    """retrain: the layout model and the up-sampler are trained from their configs on the
    public masks, and the set is drawn by the cascade they make."""
    from angioflow.flows.generation import generation_flow
    from angioflow.models.ddpm import DDPMTrainingConfig

    layout = tiny_mask_ddpm(16, timesteps=100)
    upsampler = tiny_mask_ddpm(
        32, timesteps=100, attention_resolutions=(), coordinates=True, layout_size=16
    )
    configs = {}
    for stage, model in (("layout", layout), ("upsampler", upsampler)):
        settings = short_run(
            DDPMTrainingConfig,
            model,
            {
                "steps": 2,
                "batch_size": 2,
                "sample_count": 2,
                "datasets": ("rite",),
                "layout_noise_levels": 50,
            },
        )
        configs[stage] = tmp_path / f"{stage}.json"
        configs[stage].write_text(settings.model_dump_json())
    result = generation_flow(
        str(tmp_path / "sets"),
        n=2,
        steps=3,
        retrain=True,
        layout_config=str(configs["layout"]),
        upsampler_config=str(configs["upsampler"]),
        data=str(SHARED_DATA),
        pix2pixhd_weights=str(tiny_weights["pix2pixhd"]),
        edsr_weights=str(tiny_weights["edsr"]),
    )
    cascade = Path(result["weights"]["ddpm"])
    trained = MaskCascade.load(cascade)
    assert trained.layout.config.model_dump(exclude={"data_mean"}) == layout.model_dump(
        exclude={"data_mean"}
    )
    assert trained.upsampler.config.layout_size == 16
    with h5py.File(result["set"]) as handle:
        provenance = json.loads(handle.attrs["provenance"])
        assert handle["images"].shape[0] == 2
    assert provenance["weights_sha256"]["ddpm"] == MaskCascade.sha256(cascade)
