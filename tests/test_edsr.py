"""EDSR x4: a tiny model learns phantom photos, training resumes exactly, tiles join seamlessly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from angioflow.flows.cli import app
from angioflow.models.edsr import (
    EDSR,
    EDSRConfig,
    EDSRTrainingConfig,
    PhotoCrops,
    downsample,
    train_edsr,
    upscale,
)
from angioflow.pipeline.phantom import PhantomConfig, generate_case
from PIL import Image
from support import SHARED_DATA, TrainingInterrupted, interrupt_at, short_run
from typer.testing import CliRunner

TINY = EDSRConfig(features=16, blocks=2, bicubic_skip=False)


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [
        generate_case(6100 + i, PhantomConfig(size=(256, 384), n_frames=1)).fundus for i in range(3)
    ]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(float) - b.astype(float)) ** 2)))


def _config(**changes: object) -> EDSRTrainingConfig:
    return short_run(EDSRTrainingConfig, TINY, {"low_patch": 16, "batch_size": 8, **changes})


@pytest.mark.slow
def test_a_tiny_edsr_learns_to_upsample_phantom_photos(
    photos: list[np.ndarray], tmp_path: Path
) -> None:
    high = photos[0][64:192, 128:256]
    low = downsample(high, 4)
    torch.manual_seed(0)
    before = _psnr(upscale(EDSR(TINY).eval(), low), high)
    model = train_edsr(_config(steps=300, checkpoint_every=300), photos, tmp_path / "run")
    after = _psnr(upscale(model, low), high)
    assert after > before + 6, (before, after)
    bicubic = _psnr(
        np.asarray(Image.fromarray(low).resize((128, 128), Image.Resampling.BICUBIC)), high
    )
    assert after > bicubic - 1.0  # close to bicubic after a few CPU seconds
    reloaded = EDSR.load(tmp_path / "run" / "weights")
    assert abs(_psnr(upscale(reloaded, low), high) - after) < 0.1  # fp16 round trip

    skip = EDSRConfig(features=16, blocks=2, bicubic_skip=True)
    residual = train_edsr(
        _config(model=skip, steps=300, checkpoint_every=300), photos, tmp_path / "skip"
    )
    assert _psnr(upscale(residual, low), high) > max(after, bicubic)  # same budget, past bicubic


@pytest.mark.slow
def test_training_resumes_exactly(photos: list[np.ndarray], tmp_path: Path) -> None:
    straight = train_edsr(_config(), photos, tmp_path / "straight")

    with pytest.raises(TrainingInterrupted):
        train_edsr(_config(), photos, tmp_path / "resumed", on_step=interrupt_at(3))
    resumed = train_edsr(_config(), photos, tmp_path / "resumed")
    for (name, a), (_, b) in zip(
        straight.state_dict().items(), resumed.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


@pytest.mark.slow
@pytest.mark.parametrize("bicubic_skip", [False, True])
def test_tiles_join_without_seams(photos: list[np.ndarray], bicubic_skip: bool) -> None:
    torch.manual_seed(1)
    # receptive field (and bicubic's 2 px support) < 8 px of overlap
    model = EDSR(EDSRConfig(features=8, blocks=2, bicubic_skip=bicubic_skip)).eval()
    low = downsample(photos[1], 4)
    whole = upscale(model, low, tile=1000)
    tiled = upscale(model, low, tile=24, overlap=8)
    assert tiled.shape == (low.shape[0] * 4, low.shape[1] * 4, 3)
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1


@pytest.mark.slow
def test_crops_stay_inside_the_retina_and_pair_up(photos: list[np.ndarray]) -> None:
    low, high = PhotoCrops(photos, 16, 4, np.random.default_rng(0)).batch(6)
    assert low.shape == (6, 3, 16, 16) and high.shape == (6, 3, 64, 64)
    assert (high.amax(dim=1) > 20 / 255).float().mean() > 0.5
    again = torch.nn.functional.avg_pool2d(high, 4)
    assert torch.abs(again - low).mean() < 0.02  # the low image is the high one, down-sampled


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "DRIVE").is_dir(), reason="../shared/data/DRIVE is absent")
def test_train_edsr_command_on_drive_training_photos(tmp_path: Path) -> None:
    config = tmp_path / "edsr.json"
    config.write_text(_config(datasets=("drive",), steps=2).model_dump_json())
    result = CliRunner().invoke(
        app,
        [
            "train",
            "edsr",
            "--config",
            str(config),
            "--out",
            str(tmp_path / "run"),
            "--data",
            str(SHARED_DATA),
        ],
    )
    assert result.exit_code == 0, result.stderr
    assert "20 training photos" in result.output
    assert (tmp_path / "run" / "weights" / "model.safetensors").is_file()
