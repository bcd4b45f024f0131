"""Damaged or altered weights are refused with one line naming the file; `generate` is bounded
in count and checks free disk space before it starts; the training defaults are the shipped
weights' recipes, and saved weights load back equal."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from angioflow.flows.cli import app
from angioflow.flows.settings_file import load_settings
from angioflow.models import checkpoints
from angioflow.models.checkpoints import WeightsError, verify_weights
from angioflow.models.ddpm import DEFAULT_MASK_WEIGHTS, DDPMTrainingConfig, MaskDDPM
from angioflow.models.edsr import DEFAULT_EDSR_WEIGHTS, EDSR, EDSRTrainingConfig
from angioflow.models.hvgn import HVGN, HVGNTrainingConfig
from angioflow.models.pix2pixhd import GlobalGenerator, Pix2PixHDTrainingConfig
from angioflow.models.training import CONFIGS, TrainingConfig
from angioflow.models.vessel import VesselTrainingConfig, VesselUNet
from support import one_line_error
from typer.testing import CliRunner

ANGIOFLOW = str(Path(sys.executable).parent / "angioflow")
runner = CliRunner()


def _copy(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / folder.name))


def _flip_tensor_byte(folder: Path) -> None:
    """Flip one byte of tensor data (past the safetensors header): the file still loads."""
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    header = int.from_bytes(data[:8], "little")
    data[8 + header + 1001] ^= 0x10
    path.write_bytes(bytes(data))


def test_every_shipped_weights_folder_matches_its_recorded_sha256() -> None:
    folders = sorted(p.parent for p in checkpoints.SHIPPED_WEIGHTS.rglob("config.json"))
    assert len(folders) == 6  # the mask cascade's two, vessel, HVGN, pix2pixHD, EDSR
    for folder in folders:
        verify_weights(folder)
        assert (folder / checkpoints.MANIFEST_FILE).is_file()


@pytest.mark.slow
def test_a_flipped_byte_in_the_tensors_is_refused(tmp_path: Path) -> None:
    folder = _copy(DEFAULT_EDSR_WEIGHTS, tmp_path)
    EDSR.load(folder)
    _flip_tensor_byte(folder)
    with pytest.raises(WeightsError, match=r"model.safetensors does not match the sha256"):
        EDSR.load(folder)
    result = runner.invoke(
        app,
        ["generate", "--n", "1", "--steps", "2", "--edsr", str(folder)]
        + ["--out", str(tmp_path / "set.h5")],
    )
    assert "model.safetensors does not match" in one_line_error(result)
    assert not (tmp_path / "set.h5").exists()


def test_a_shipped_folder_without_its_manifest_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _copy(DEFAULT_EDSR_WEIGHTS, tmp_path / "weights")
    (folder / "sha256.json").unlink()
    EDSR.load(folder)  # a folder of the user's own, written before manifests: no check
    monkeypatch.setattr(checkpoints, "SHIPPED_WEIGHTS", folder.parent.resolve())
    with pytest.raises(WeightsError, match="sha256.json is missing; restore the shipped"):
        EDSR.load(folder)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate", "model.safetensors is damaged"),
        ("config_text", "config.json is not valid JSON"),
        ("config_field", "config.json is not a MaskDDPM config"),
        ("nan", "holds NaN or infinite values"),
    ],
)
def test_damaged_weights_are_one_line_errors(tmp_path: Path, damage: str, message: str) -> None:
    from safetensors.torch import load_file, save_file

    folder = _copy(DEFAULT_MASK_WEIGHTS, tmp_path)  # a cascade: damage its layout model
    (folder / "layout" / "sha256.json").unlink()  # reach the parsing checks behind the digest
    weights, config = folder / "layout" / "model.safetensors", folder / "layout" / "config.json"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:5000])
    elif damage == "config_text":
        config.write_text('{"image_size": 64, "chann')
    elif damage == "config_field":
        config.write_text(json.dumps({**json.loads(config.read_text()), "image_size": "big"}))
    else:
        state = load_file(str(weights))
        name = next(k for k, v in state.items() if v.is_floating_point())
        state[name] = torch.full_like(state[name], float("nan"))
        save_file(state, str(weights))
    result = runner.invoke(
        app,
        ["generate-masks", "--n", "1", "--weights", str(folder), "--out", str(tmp_path / "m.h5")],
    )
    assert message in one_line_error(result)


@pytest.mark.parametrize(
    ("layout_size", "timesteps", "message"),
    [(16, 1000, "up-sampler takes 16 px"), (64, 40, "has 40 noise steps, too few")],
)
def test_generate_masks_refuses_a_cascade_whose_parts_do_not_fit(
    tmp_path: Path, layout_size: int, timesteps: int, message: str
) -> None:
    """An up-sampler made for other layouts, or one with fewer noise steps than the layouts
    are seen through: one line naming the fix, nothing written."""
    from support import tiny_mask_ddpm

    folder = _copy(DEFAULT_MASK_WEIGHTS, tmp_path)
    shutil.rmtree(folder / "upsampler")
    upsampler = tiny_mask_ddpm(128, timesteps=timesteps, layout_size=layout_size)
    MaskDDPM(upsampler).save(folder / "upsampler")
    out = tmp_path / "m.h5"
    result = runner.invoke(
        app, ["generate-masks", "--n", "1", "--weights", str(folder), "--out", str(out)]
    )
    assert message in one_line_error(result)
    assert not out.exists()


@pytest.mark.slow
def test_generate_refuses_an_unbounded_count_at_once(tmp_path: Path) -> None:
    for command in ("generate", "generate-masks"):
        result = subprocess.run(
            [ANGIOFLOW, command, "--n", "1000000000", "--out", str(tmp_path / "x.h5")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 2, result.stderr[-1000:]
        assert "at most 10000" in result.stderr and "Traceback" not in result.stderr
        assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_generate_checks_free_disk_space_first(tmp_path: Path) -> None:
    from angioflow.flows.generation import MAX_SAMPLES
    from angioflow.models.generation import DiskSpaceError, SetRequest, check_disk_space

    size = 1024  # the shipped generators' output
    need = 2 * MAX_SAMPLES * size * size * 5
    if shutil.disk_usage(tmp_path).free > need:
        pytest.skip(f"{tmp_path} has over {need / 1e9:.0f} GB free: cannot run out of space")
    with pytest.raises(DiskSpaceError, match="lower --n or free space"):
        check_disk_space(SetRequest(n=MAX_SAMPLES), tmp_path / "set.h5", size)
    check_disk_space(SetRequest(n=8), tmp_path / "set.h5", size)  # 42 MB fits
    result = subprocess.run(
        [ANGIOFLOW, "generate", "--n", str(MAX_SAMPLES), "--out", str(tmp_path / "set.h5")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-1000:]
    assert "GB are free; lower --n or free space" in result.stderr
    assert "Traceback" not in result.stderr and not list(tmp_path.iterdir())


# ---- the shipped recipes -------------------------------------------------------------------------

# (training config, its file in configs/, model, shipped weights folder); the first recipe of a
# training config is its defaults
SHIPPED_RECIPES = [
    (VesselTrainingConfig, "vessel.yaml", VesselUNet, "vessel"),
    (HVGNTrainingConfig, "hvgn.yaml", HVGN, "hvgn"),
    (DDPMTrainingConfig, "ddpm64_layout.yaml", MaskDDPM, "mask_cascade/layout"),
    (DDPMTrainingConfig, "ddpm256_upsampler.yaml", MaskDDPM, "mask_cascade/upsampler"),
    (Pix2PixHDTrainingConfig, "pix2pixhd256.yaml", GlobalGenerator, "pix2pixhd"),
    (EDSRTrainingConfig, "edsr.yaml", EDSR, "edsr"),
]
# the other model recipes in configs/; the rest of the folder configures flows
OTHER_RECIPES = {
    "hvgn_continue.yaml": HVGNTrainingConfig,
    "ddpm64.yaml": DDPMTrainingConfig,
    "ddpm64_long.yaml": DDPMTrainingConfig,
    "ddpm64_layout_gpu.yaml": DDPMTrainingConfig,
    "ddpm256_upsampler_gpu.yaml": DDPMTrainingConfig,
    "pix2pixhd512.yaml": Pix2PixHDTrainingConfig,
    "pix2pixhd512_style.yaml": Pix2PixHDTrainingConfig,
}
FLOW_CONFIGS = {"curation.yaml", "downstream.yaml", "downstream_paper.yaml"}


def _read(recipe: type[TrainingConfig], file: str) -> TrainingConfig:
    return load_settings(recipe, CONFIGS / file)


@pytest.mark.slow
@pytest.mark.parametrize(("recipe", "file", "model_class", "weights"), SHIPPED_RECIPES)
def test_each_training_default_is_the_recipe_of_the_shipped_weights(
    recipe: type[TrainingConfig], file: str, model_class: type, weights: str
) -> None:
    shipped = _read(recipe, file)
    if next(f for r, f, _, _ in SHIPPED_RECIPES if r is recipe) == file:
        # threads say how a run shares the machine, not what it trains (the DDPM runs were
        # one-thread runs side by side)
        assert recipe().model_copy(update={"threads": shipped.threads}) == shipped
    trained = model_class.load(checkpoints.SHIPPED_WEIGHTS / weights)
    # data_mean and condition_values are measured on the training masks by the run, not chosen
    measured = {"data_mean", "condition_values"}
    assert shipped.model.model_dump(exclude=measured) == trained.config.model_dump(exclude=measured)
    model_class(shipped.model).load_state_dict(trained.state_dict())  # strict: same architecture


def test_the_shipped_hvgn_is_its_recipe_continued_and_every_recipe_file_validates() -> None:
    assert _read(HVGNTrainingConfig, "hvgn_continue.yaml") == HVGNTrainingConfig(
        init_weights="runs/hvgn/weights", steps=1800, learning_rate=0.001, seed=1
    )
    for file, recipe in OTHER_RECIPES.items():
        _read(recipe, file)
    listed = {file for _, file, _, _ in SHIPPED_RECIPES} | set(OTHER_RECIPES) | FLOW_CONFIGS
    assert {p.name for p in CONFIGS.glob("*.yaml")} == listed


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model_class", "weights"), [(model, weights) for _, _, model, weights in SHIPPED_RECIPES]
)
def test_saved_weights_load_back_equal(tmp_path: Path, model_class: type, weights: str) -> None:
    shipped = model_class.load(checkpoints.SHIPPED_WEIGHTS / weights)
    shipped.save(tmp_path / weights)
    copy = model_class.load(tmp_path / weights)
    assert copy.config == shipped.config
    assert copy.state_dict().keys() == shipped.state_dict().keys()
    for name, tensor in shipped.state_dict().items():
        assert torch.equal(copy.state_dict()[name], tensor), name  # fp16 values survive exactly
