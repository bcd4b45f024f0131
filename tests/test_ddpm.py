"""The A/V mask diffusion model: its loss, training (overfit, exact resume, two processes),
sampling, binarisation and structure statistics, export and the generate-masks command."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from angioflow.flows.cli import app
from angioflow.models.ddpm import (
    CONDITION_LEVELS,
    DEFAULT_MASK_WEIGHTS,
    DDPMTrainingConfig,
    MaskCascade,
    MaskDDPM,
    MaskDDPMConfig,
    calibre_levels,
    draw_conditions,
    layout_condition,
    make_scheduler,
    mask_positions,
    random_patches,
    sample_cascade,
    sample_masks,
    train_ddpm,
    unweighted_epsilon,
    vessel_weighted_loss,
    write_mask_set,
)
from angioflow.models.ddpm.train import _training_batch
from angioflow.pipeline.av_structure import structure_stats
from angioflow.pipeline.casestore import CaseStore
from angioflow.pipeline.mask_structure import binarise_av, labels_from_soft_av, resize_av_labels
from angioflow.pipeline.phantom import PhantomConfig, generate_case
from PIL import Image
from support import TrainingInterrupted, copy_store, interrupt_at, short_run, tiny_mask_ddpm
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
TINY = tiny_mask_ddpm(32, schedule="linear", timesteps=50)
runner = CliRunner()


@pytest.fixture(scope="module")
def phantom_masks() -> np.ndarray:
    """Four phantom A/V truths at 32x32 (real masks a generator could learn)."""
    masks = []
    for seed in range(4):
        case = generate_case(4200 + seed, PhantomConfig(size=(192, 288), n_frames=1))
        labels = case.av_labels
        masks.append(resize_av_labels(labels, case.fov, 32))
    return np.stack(masks)


def _config(**changes: object) -> DDPMTrainingConfig:
    own = {"batch_size": 4, "sample_count": 4, "warmup_steps": 1, "loss": "weighted", "c": 2.0}
    return short_run(DDPMTrainingConfig, TINY, {**own, **changes})


def _patch_run(
    model: MaskDDPMConfig,
    sizes: tuple[int, ...] = (16, 32),
    probabilities: tuple[float, ...] = (0.5, 0.5),
    **changes: object,
) -> DDPMTrainingConfig:
    """A one-thread L_simple run of ``model`` on patches of ``sizes`` (px), two a step."""
    own = {"patch_sizes": sizes, "patch_probabilities": probabilities, "batch_size": 2}
    return _config(model=model, loss="simple", threads=1, **{**own, **changes})


def test_vessel_weighted_loss_is_exactly_exp_c_x0() -> None:
    generator = torch.Generator().manual_seed(0)
    predicted, noise = torch.randn(2, 3, 2, 8, 8, generator=generator, dtype=torch.float64)
    x0 = (torch.rand(3, 2, 8, 8, generator=generator) < 0.2).double()
    c = 1.7
    flat_p, flat_n, flat_x = predicted.flatten(), noise.flatten(), x0.flatten()
    expected = (
        sum(
            np.exp(c * flat_x[i].item()) * (flat_p[i].item() - flat_n[i].item()) ** 2
            for i in range(flat_p.numel())
        )
        / flat_p.numel()
    )
    assert vessel_weighted_loss(predicted, noise, x0, c).item() == pytest.approx(
        expected, rel=1e-12
    )
    plain = torch.nn.functional.mse_loss(predicted, noise).item()
    assert vessel_weighted_loss(predicted, noise, x0, 0.0).item() == pytest.approx(plain, rel=1e-12)
    # per pixel, a vessel residual pulls e^c times harder than the same background residual
    predicted.requires_grad_(True)
    vessel_weighted_loss(predicted, noise, x0, c).backward()
    ratio = predicted.grad / (predicted - noise).detach()
    assert torch.allclose(ratio[x0 == 1] / ratio[x0 == 0].mean(), torch.tensor(np.exp(c)).double())


@pytest.mark.slow
def test_a_tiny_model_overfits_four_masks(phantom_masks: np.ndarray, tmp_path: Path) -> None:
    from angioflow.models.ddpm import make_scheduler

    config = _config(steps=200, checkpoint_every=200, ema_decay=0.9)
    scheduler = make_scheduler(TINY)
    x0 = torch.from_numpy(phantom_masks)
    generator = torch.Generator().manual_seed(5)
    noise = torch.randn((8, *x0.shape), generator=generator)
    t = torch.linspace(2, TINY.timesteps - 3, 8).long()

    def denoising_loss(model: MaskDDPM) -> float:
        with torch.no_grad():
            losses = [
                vessel_weighted_loss(
                    model(scheduler.add_noise(2 * x0 - 1, n, t[i].expand(4)), t[i].expand(4)),
                    n,
                    x0,
                    2.0,
                )
                for i, n in enumerate(noise)
            ]
        return float(torch.stack(losses).mean())

    torch.manual_seed(config.seed)
    before = denoising_loss(MaskDDPM(TINY).eval())
    trained = train_ddpm(config, phantom_masks, tmp_path / "run")
    after = denoising_loss(trained)
    assert after < 0.35 * before, (before, after)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 200
    grid = Image.open(tmp_path / "run" / "samples" / "step_000200.png")
    assert grid.height == 256 + 4  # soft maps drawn as labels enlarged to 256 px, one row
    reloaded = MaskDDPM.load(tmp_path / "run" / "weights")
    assert denoising_loss(reloaded) == pytest.approx(after, rel=0.02)  # fp16 round trip
    assert reloaded.config.data_mean == pytest.approx(phantom_masks.mean(axis=(0, 2, 3)))


def _assert_resumes_bit_for_bit(
    config: DDPMTrainingConfig, masks: np.ndarray, folder: Path
) -> Path:
    """Train once straight and once stopped at step 3 and resumed; the weights are equal.
    Returns the resumed run's folder."""
    straight = train_ddpm(config, masks, folder / "straight")
    with pytest.raises(TrainingInterrupted):
        train_ddpm(config, masks, folder / "resumed", on_step=interrupt_at(3))
    resumed = train_ddpm(config, masks, folder / "resumed")
    for (name, a), (_, b) in zip(
        straight.state_dict().items(), resumed.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    return folder / "resumed"


@pytest.mark.slow
def test_resume_continues_bit_for_bit(phantom_masks: np.ndarray, tmp_path: Path) -> None:
    _assert_resumes_bit_for_bit(_config(), phantom_masks, tmp_path)
    with pytest.raises(ValueError, match="different training config"):
        train_ddpm(_config(c=0.5), phantom_masks, tmp_path / "resumed")
    with pytest.raises(ValueError, match="needs a GPU"):
        train_ddpm(_config(precision="bf16"), phantom_masks, tmp_path / "bf16")


_DISTRIBUTED = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    import numpy as np, torch
    from angioflow.models.ddpm import DDPMTrainingConfig, train_ddpm
    config = DDPMTrainingConfig.model_validate_json(Path(sys.argv[1]).read_text())
    masks = np.load(sys.argv[2])
    model = train_ddpm(config, masks, Path(sys.argv[3]), resume=False)
    torch.save(model.state_dict(), Path(sys.argv[3]) / f"rank{os.environ['RANK']}.pt")
    """
)


@pytest.mark.slow
def test_two_processes_train_in_step_with_gloo(phantom_masks: np.ndarray, tmp_path: Path) -> None:
    config = _config(steps=4, checkpoint_every=2, threads=1)
    (tmp_path / "config.json").write_text(config.model_dump_json())
    np.save(tmp_path / "masks.npy", phantom_masks)
    (tmp_path / "train.py").write_text(_DISTRIBUTED)
    run = tmp_path / "run"
    with socket.socket() as probe:  # a free port for the two processes to meet on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            f"--master_port={port}",
            str(tmp_path / "train.py"),
            str(tmp_path / "config.json"),
            str(tmp_path / "masks.npy"),
            str(run),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    ranks = [torch.load(run / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for name in ranks[0]:  # replicas stay identical: gradients were averaged across processes
        assert torch.equal(ranks[0][name], ranks[1][name]), name
    single = train_ddpm(config, phantom_masks, tmp_path / "single")
    assert any(  # and differ from one process seeing half the batches
        not torch.equal(single.state_dict()[n], ranks[0][n]) for n in ranks[0]
    )
    assert [json.loads(x)["step"] for x in (run / "log.jsonl").read_text().splitlines()] == [2, 4]


PATCHED = tiny_mask_ddpm(
    32,
    schedule="linear",
    timesteps=50,
    attention_resolutions=(),
    coordinates=True,
    space_to_depth=2,
)


def test_patches_carry_their_place_in_the_whole_mask(phantom_masks: np.ndarray) -> None:
    masks = torch.from_numpy(phantom_masks)
    patches, positions = random_patches(masks, 8, np.random.default_rng(3))
    whole = mask_positions(32)
    assert patches.shape == (4, 2, 8, 8) and positions.shape == (4, 2, 8, 8)
    for mask, patch, place in zip(masks, patches, positions, strict=True):
        left, top = (round((float(v) + 1) / 2 * 31) for v in place[:, 0, 0])
        assert torch.equal(patch, mask[:, top : top + 8, left : left + 8])
        assert torch.equal(place, whole[:, top : top + 8, left : left + 8])
    with pytest.raises(ValueError, match="coordinates: true"):
        _config(patch_sizes=(8, 32), patch_probabilities=(0.5, 0.5))
    with pytest.raises(ValueError, match="divisible by 4"):
        _config(model=PATCHED, patch_sizes=(6, 32), patch_probabilities=(0.5, 0.5))


@pytest.mark.slow
def test_a_patch_trained_model_resumes_bit_for_bit_and_samples_whole_masks(
    phantom_masks: np.ndarray, tmp_path: Path
) -> None:
    """Patch Diffusion's schedule (8, 16 and 32 px patches of soft masks, a coordinate model
    behind a space-to-depth stem): a resumed run equals an uninterrupted one, and the weights
    sample masks of the whole size in one pass."""
    soft = np.clip(phantom_masks * 0.7 + 0.1 * phantom_masks.mean(), 0, 1).astype(np.float32)
    config = _patch_run(PATCHED, (8, 16, 32), (0.5, 0.3, 0.2), batch_size=1, coverage=None)
    run = _assert_resumes_bit_for_bit(config, soft, tmp_path)
    maps = sample_masks(MaskDDPM.load(run / "weights"), 2, steps=4)
    assert maps.shape == (2, 2, 32, 32) and 0 <= maps.min() and maps.max() <= 1


UPSAMPLER = PATCHED.model_copy(update={"layout_size": 16})


def test_an_upsampler_sees_its_layout_through_the_forward_process() -> None:
    """Level 0 gives the layout itself, enlarged; level k the forward process's noise at k;
    the up-sampler's prediction changes with its layout."""
    scheduler = make_scheduler(UPSAMPLER, "ddpm")
    layout = torch.rand(64, 2, 16, 16)
    clean = layout_condition(layout, 32, torch.zeros(64, dtype=torch.long), scheduler)
    enlarged = torch.nn.functional.interpolate(layout * 2 - 1, size=(32, 32), mode="bilinear")
    assert torch.allclose(clean, enlarged)
    level = torch.full((64,), 30)
    noised = layout_condition(layout, 16, level, scheduler, torch.Generator().manual_seed(0))
    alpha_bar = scheduler.alphas_cumprod[30]
    residual = noised - alpha_bar.sqrt() * (layout * 2 - 1)
    assert float(residual.std()) == pytest.approx(float((1 - alpha_bar).sqrt()), rel=0.05)
    torch.manual_seed(0)
    model = MaskDDPM(UPSAMPLER).eval()
    noisy, t = torch.randn(2, 2, 32, 32), torch.tensor([10, 40])
    with torch.no_grad():
        first = model(noisy, t, layout=clean[:2], layout_noise=t)
        other = model(noisy, t, layout=clean[2:4], layout_noise=t)
    assert not torch.allclose(first, other)
    with pytest.raises(ValueError, match="give it a layout"):
        model(noisy, t)


@pytest.mark.slow
def test_a_cascade_upsampler_resumes_bit_for_bit_and_samples_with_its_base(
    phantom_masks: np.ndarray, tmp_path: Path
) -> None:
    """A 32 px up-sampler on patches with conditioning augmentation resumes bit for bit; a
    cascade with a base model of its layout's size samples whole masks, one per layout."""
    config = _patch_run(UPSAMPLER, layout_noise_levels=20)
    upsampler = MaskDDPM.load(
        _assert_resumes_bit_for_bit(config, phantom_masks, tmp_path) / "weights"
    )
    layouts = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(phantom_masks[:2]), 16)
    maps = sample_masks(upsampler, 2, steps=4, layout=layouts.numpy(), layout_noise=5)
    assert maps.shape == (2, 2, 32, 32)
    with pytest.raises(ValueError, match="one mask per layout"):
        sample_masks(upsampler, 2, steps=2)
    base = MaskDDPM(tiny_mask_ddpm(16, schedule="linear", timesteps=50, attention_resolutions=()))
    cascade = MaskCascade(base.eval(), upsampler)
    whole = sample_cascade(cascade, 3, steps=3, layout_noise=5)
    assert whole.shape == (3, 2, 32, 32) and 0 <= whole.min() and whole.max() <= 1
    cascade.save(tmp_path / "cascade")
    again = MaskCascade.load(tmp_path / "cascade")  # fp16 weights: the same masks within 1 %
    assert np.abs(sample_cascade(again, 3, steps=3, layout_noise=5) - whole).max() < 0.01
    with pytest.raises(ValueError, match="16 px"):
        MaskCascade(upsampler, upsampler)


CALIBRE = PATCHED.model_copy(update={"calibre_condition": True})


def test_calibre_levels_order_masks_by_their_vessel_cores() -> None:
    """A thick vessel's mask has more core pixels than the same length of a fine vessel's
    (whose share is spread over pixels it half covers), so a higher level; levels are drawn
    reproducibly from the recorded ones, in their proportions within one mask; an up-sampler
    cannot also take a calibre."""
    fine, coarse = np.zeros((2, 2, 32, 32), np.float32), np.zeros((2, 2, 32, 32), np.float32)
    fine[0, 0, 10:12, 4:28] = 0.45  # a one-pixel artery astride two rows
    fine[1, 1, 4:28, 20:22] = 0.45
    coarse[0, 0, 10:13, 4:28] = 1.0
    coarse[1, 1, 4:28, 19:22] = 0.9
    fine_levels, coarse_levels = calibre_levels(fine), calibre_levels(coarse)
    assert fine_levels.dtype == np.int64 and fine_levels.shape == (2,)
    assert fine_levels.max() < coarse_levels.min() and coarse_levels.max() < CONDITION_LEVELS
    assert calibre_levels(np.zeros((1, 2, 8, 8))).tolist() == [125]
    config = CALIBRE.model_copy(update={"condition_values": (100, 900, 900, 900)})
    for seed in range(20):  # a quarter of 50 is 12.5: 12 or 13 draws of 100, whatever the seed
        assert np.sum(draw_conditions(config, 50, seed=seed) == 100) in (12, 13)
    drawn = draw_conditions(config, 50, seed=3)
    assert set(drawn.tolist()) == {100, 900}
    assert np.array_equal(drawn, draw_conditions(config, 50, seed=3))
    assert not np.array_equal(drawn, draw_conditions(config, 50, seed=4))
    with pytest.raises(ValueError, match="no condition values"):
        draw_conditions(CALIBRE, 2, seed=0)
    with pytest.raises(ValueError, match="layout model"):
        MaskDDPMConfig(**{**UPSAMPLER.model_dump(), "calibre_condition": True})
    with pytest.raises(ValueError, match="need calibre_condition"):
        MaskDDPMConfig(**{**PATCHED.model_dump(), "condition_values": (5,)})
    with pytest.raises(ValueError, match="levels 0..999"):
        MaskDDPMConfig(**{**CALIBRE.model_dump(), "condition_values": (1000,)})


def test_each_patch_carries_its_whole_mask_calibre_level() -> None:
    """Masks 30 % covered (no cores: the lowest level) and 70 % covered (all cores: the
    highest) everywhere: every patch of a step, whatever its size, comes with its own mask's
    level."""
    masks = np.stack([np.full((2, 32, 32), v, np.float32) for v in (0.3, 0.7, 0.3, 0.7)])
    levels = calibre_levels(masks)
    assert levels.tolist() == [125, 874, 125, 874]
    config = _patch_run(CALIBRE, (8, 16, 32), (0.4, 0.3, 0.3), coverage=None)
    scheduler = make_scheduler(CALIBRE, "ddpm")
    sizes = set()
    for step in range(12):
        x0, _, _, _, condition = _training_batch(
            config, masks, np.random.default_rng([0, 0, step]), scheduler, levels
        )
        sizes.add(x0.shape[-1])
        assert condition.dtype == torch.int64 and len(condition) == len(x0)
        expected = torch.where(x0.mean(dim=(1, 2, 3)) > 0.5, 874, 125)
        assert torch.equal(condition, expected)
    assert sizes == {8, 16, 32}


@pytest.mark.slow
def test_a_calibre_conditioned_model_resumes_records_and_samples_by_its_condition(
    phantom_masks: np.ndarray, tmp_path: Path
) -> None:
    """A calibre-conditioned model on patches resumes bit for bit and records its training
    masks' levels; its samples are reproducible, drawn from those levels by default, and
    change with the level given."""
    faint = 0.45 * phantom_masks  # vessels that half cover their pixels: no cores
    masks = np.concatenate([phantom_masks, faint]).astype(np.float32)
    config = _patch_run(CALIBRE)
    run = _assert_resumes_bit_for_bit(config, masks, tmp_path)
    model = MaskDDPM.load(run / "weights")
    recorded = model.config.condition_values
    assert recorded == tuple(calibre_levels(masks).tolist()) and len(set(recorded)) > 1
    assert json.loads((run / "weights" / "config.json").read_text())["condition_values"]
    maps = sample_masks(model, 3, steps=4, seed=2)
    assert maps.shape == (3, 2, 32, 32) and 0 <= maps.min() and maps.max() <= 1
    assert np.array_equal(maps, sample_masks(model, 3, steps=4, seed=2))
    drawn = draw_conditions(model.config, 3, seed=2)
    assert np.array_equal(maps, sample_masks(model, 3, steps=4, seed=2, conditions=drawn))
    low = sample_masks(model, 2, steps=4, seed=2, conditions=[50, 50])
    high = sample_masks(model, 2, steps=4, seed=2, conditions=[950, 950])
    assert np.abs(low - high).mean() > 1e-3
    with pytest.raises(ValueError, match="give 2 conditions"):
        sample_masks(model, 2, steps=2, conditions=[50])
    with pytest.raises(ValueError, match="give it a condition"):
        model(torch.zeros(1, 2, 32, 32), torch.tensor([3]))
    with pytest.raises(ValueError, match="calibre-conditioned model"):
        sample_masks(MaskDDPM(TINY).eval(), 1, steps=2, conditions=[5])
    torch.manual_seed(0)
    layout = tiny_mask_ddpm(
        16, schedule="linear", timesteps=50, calibre_condition=True, condition_values=(80, 900)
    )
    cascade = MaskCascade(MaskDDPM(layout).eval(), MaskDDPM(UPSAMPLER).eval())
    whole = sample_cascade(cascade, 2, steps=3, layout_noise=5)  # levels drawn from (80, 900)
    assert np.array_equal(whole, sample_cascade(cascade, 2, steps=3, layout_noise=5))
    given = sample_cascade(cascade, 2, steps=3, layout_noise=5, conditions=[999, 999])
    assert not np.array_equal(whole, given)


@pytest.mark.slow
def test_samplers_give_reproducible_masks_in_range(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = MaskDDPM(TINY).eval()
    for sampler, steps in (("ddpm", 0), ("ddim", 5), ("dpm", 5)):
        maps = sample_masks(model, 3, sampler=sampler, steps=steps, seed=7, batch_size=2)
        assert maps.shape == (3, 2, 32, 32) and maps.dtype == np.float32
        assert 0.0 <= maps.min() and maps.max() <= 1.0
        again = sample_masks(model, 3, sampler=sampler, steps=steps, seed=7, batch_size=2)
        assert np.array_equal(maps, again)
        assert not np.array_equal(
            maps, sample_masks(model, 3, sampler=sampler, steps=steps, seed=8)
        )
    labels = labels_from_soft_av(maps, 128)
    write_mask_set(tmp_path / "set.h5", maps, labels, {"seed": 7}, previews=tmp_path / "png")
    with h5py.File(tmp_path / "set.h5") as handle:
        assert np.array_equal(handle["labels"][()], labels) and labels.shape == (3, 128, 128)
        assert set(np.unique(labels)) <= {0, 1, 2, 3}
        assert np.array_equal(handle["probabilities"][()], np.round(maps * 255).astype(np.uint8))
        assert json.loads(handle.attrs["provenance"]) == {"seed": 7}
    assert (tmp_path / "png" / "masks_00000.png").is_file()


@pytest.mark.slow
def test_terminal_mean_stops_the_shipped_model_over_filling() -> None:
    model = MaskDDPM.load(DEFAULT_MASK_WEIGHTS / "layout").eval()
    assert model.config.data_mean is not None  # recorded by training, used by default
    plain = sample_masks(model, 8, sampler="ddim", steps=20, seed=0, terminal_mean=False)
    anchored = sample_masks(model, 8, sampler="ddim", steps=20, seed=0)

    def grey(maps: np.ndarray) -> float:
        return float(np.mean((maps > 0.1) & (maps < 0.9)))

    # the layout model draws vessel shares: their mean is the vessel density
    assert anchored.mean() < 0.5 * plain.mean()
    assert 0.02 < anchored.mean() < 0.1  # real training masks: 0.04 a channel
    assert grey(anchored) < 0.5 * grey(plain)
    with pytest.raises(ValueError, match="data_mean has 1 values for 2 channels"):
        MaskDDPMConfig(data_mean=(0.1,))


def test_undoing_the_weighting_recovers_the_unweighted_posterior() -> None:
    # For x0 in {0, 1} with P(x0 = 1 | x_t) = p, the exp(c * x0)-weighted optimum predicts
    # q = p e^c / (p e^c + 1 - p); undoing must give back the epsilon that encodes p.
    c, alpha_bar = 0.5, torch.tensor(0.3)
    p = torch.tensor([0.01, 0.2, 0.5, 0.9]).view(1, 1, 2, 2)
    q = p * math.exp(c) / (p * math.exp(c) + 1 - p)
    x = torch.randn(1, 1, 2, 2, generator=torch.Generator().manual_seed(0))

    def epsilon(probability: torch.Tensor) -> torch.Tensor:
        return (x - alpha_bar.sqrt() * (2 * probability - 1)) / (1 - alpha_bar).sqrt()

    torch.testing.assert_close(unweighted_epsilon(epsilon(q), x, alpha_bar, c), epsilon(p))
    torch.testing.assert_close(unweighted_epsilon(epsilon(q), x, alpha_bar, 0.0), epsilon(q))


def test_binarisation_keeps_classes_apart_except_at_crossings() -> None:
    maps = np.zeros((2, 12, 12), np.float32)
    maps[0, 2, 1:11] = 0.9  # an artery
    maps[1, 8, 1:11] = 0.8  # a vein
    maps[1, 2, 5] = 0.6  # faint vein on the artery: artery wins
    maps[1, 1:11, 9] = 0.85  # a vein crossing the artery at (2, 9) with equal strength
    maps[0, 10, 1] = 0.95  # a one-pixel speck: removed
    labels = binarise_av(maps, min_component_px=3)
    assert labels[2, 5] == 1 and labels[8, 4] == 2 and labels[2, 9] == 3 and labels[10, 1] == 0
    stats = structure_stats(labels)
    assert stats.artery_components == stats.vein_components == 1 and stats.branch_points >= 1


@pytest.mark.slow
def test_export_then_train_masks_and_generate_command(
    curated_store_template: Path, tmp_path: Path
) -> None:
    from angioflow.models.ddpm import load_exported_masks

    store = CaseStore(copy_store(curated_store_template, tmp_path / "store"), create=False)
    done, waiting = store.case_ids()
    vessel = store.read_version(done, "vessel")
    store.approve(done, "vessel", version=1, editor="dr_a")
    av = np.where(vessel > 0, 1, 0).astype(np.uint8)
    av[: av.shape[0] // 2] *= 2  # upper half veins
    store.save_version(done, "av", av, editor="angioflow", parent=0)
    store.approve(done, "av", version=1, editor="dr_a")
    out = tmp_path / "approved.h5"
    result = runner.invoke(app, ["export", "--store", str(store.root), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert "1 approved cases written" in result.output and "1 not done yet" in result.output
    with h5py.File(out) as handle:
        (group,) = handle.values()
        assert group.attrs["case_id"] == done and np.array_equal(group["av"][()], av)
    masks = load_exported_masks(out, 64)
    assert masks.shape == (1, 2, 64, 64) and masks[0, 0].any() and masks[0, 1].any()
    again = runner.invoke(app, ["export", "--store", str(store.root), "--out", str(out)])
    assert again.exit_code == 2 and "never overwritten" in again.stderr

    config = tmp_path / "tiny.json"
    config.write_text(_config(steps=2, checkpoint_every=1).model_dump_json())
    trained = runner.invoke(
        app,
        [
            "train",
            "ddpm",
            "--config",
            str(config),
            "--export",
            str(out),
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert trained.exit_code == 0, trained.stderr
    assert "1 training masks at 32x32, loss weighted" in trained.output
    assert (tmp_path / "run" / "weights" / "model.safetensors").is_file()

    generated = tmp_path / "masks.h5"
    result = runner.invoke(
        app,
        [
            "generate-masks",
            "--n",
            "4",
            "--out",
            str(generated),
            "--steps",
            "10",
            "--seed",
            "3",
            "--size",
            "512",
            "--previews",
            str(tmp_path / "previews"),
        ],
    )
    assert result.exit_code == 0, result.stderr
    with h5py.File(generated) as handle:
        provenance = json.loads(handle.attrs["provenance"])
        assert handle["labels"].shape == (4, 512, 512)
        assert handle["probabilities"].shape == (4, 2, 256, 256)
    assert provenance["weights_sha256"] == MaskCascade.sha256(DEFAULT_MASK_WEIGHTS)
    assert provenance["sampler"] == "dpm" and provenance["steps"] == 10 and provenance["seed"] == 3
    assert waiting not in generated.read_bytes().decode("latin-1")  # no case identifier
