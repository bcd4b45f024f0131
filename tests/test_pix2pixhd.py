"""pix2pixHD: a tiny generator learns a few phantom (mask, photo) pairs; training resumes
exactly; the VGG loss reads only local weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from angioflow.models.pix2pixhd import (
    GlobalGenerator,
    MultiscaleDiscriminator,
    Pix2PixHDConfig,
    Pix2PixHDTrainingConfig,
    VGGPerceptualLoss,
    generator_input,
    label_masks,
    make_pair,
    photo_style,
    photo_uint8,
    reconstruction_loss,
    train_pix2pixhd,
)
from angioflow.models.training import TrainingRunError
from angioflow.pipeline.datasets import load_dataset
from angioflow.pipeline.phantom import PhantomConfig, generate_case
from support import SHARED_DATA, TrainingInterrupted, interrupt_at, short_run

TINY = Pix2PixHDConfig(
    image_size=32,
    generator_features=8,
    downsamplings=2,
    residual_blocks=2,
    discriminator_features=8,
    discriminator_layers=2,
    discriminator_scales=2,
    input_skip=False,
)


@pytest.fixture(scope="module")
def pairs() -> tuple[np.ndarray, np.ndarray]:
    masks, photos = [], []
    for seed in range(3):
        case = generate_case(6300 + seed, PhantomConfig(size=(128, 192), n_frames=1))
        labels = case.av_labels
        m, p = make_pair(case.fundus, labels, case.fov, 32)
        masks.append(m)
        photos.append(p)
    return np.stack(masks), np.stack(photos)


def _config(**changes: object) -> Pix2PixHDTrainingConfig:
    own = {"batch_size": 3, "ema_decay": 0.9, "l1_weight": 0.0, "l1_vessel_weight": 0.0}
    return short_run(Pix2PixHDTrainingConfig, TINY, {**own, **changes})


def _psnr(model: GlobalGenerator, masks: np.ndarray, photos: np.ndarray) -> float:
    with torch.no_grad():
        fake = photo_uint8(model(generator_input(masks)))
    error = fake.astype(float) - photos.astype(float)
    return float(10 * np.log10(255.0**2 / np.mean(error**2)))


def test_generated_labels_are_shrunk_with_the_coverage_saved_with_the_weights(
    tmp_path: Path,
) -> None:
    """A quarter-pixel vessel at the generator's size is drawn under a low ``mask_coverage``
    and not under a high one; the coverage is saved and read back with the weights."""
    labels = np.zeros((1, 128, 128), np.uint8)
    labels[0, 64, 20:108] = 1  # one pixel at 128 px, a quarter of one at 32 px
    low, high = (label_masks(labels, 32, coverage=c)[0, 0] for c in (0.2, 0.5))
    assert low[15:17, 8:24].any() and not high.any()
    config = TINY.model_copy(update={"mask_coverage": 0.2})
    GlobalGenerator(config).save(tmp_path / "weights")
    assert GlobalGenerator.load(tmp_path / "weights").config.mask_coverage == 0.2


def test_an_anatomy_conditioned_generator_sees_disc_and_fovea_where_the_vessels_put_them(
    pairs: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    masks, _ = pairs
    x = generator_input(masks, anatomy=True)
    assert x.shape == (3, 5, 32, 32) and torch.equal(x[:, :3], generator_input(masks))
    maps, outside = (x[:, 3:] + 1) / 2, torch.from_numpy(masks[:, 2:3] == 0)
    assert (maps.amax(dim=(2, 3)) > 0.9).all()  # a disc and a fovea in every field of view
    assert not (maps * outside).any()
    config = TINY.model_copy(update={"anatomy": True, "input_channels": 5})
    GlobalGenerator(config).save(tmp_path / "weights")
    loaded = GlobalGenerator.load(tmp_path / "weights")
    assert loaded.config.anatomy and loaded(x).shape == (3, 3, 32, 32)
    with pytest.raises(ValueError, match="input_channels must be 5"):
        Pix2PixHDConfig(anatomy=True, input_channels=3)


@pytest.mark.slow
def test_pairs_put_masks_and_photo_in_register(pairs: tuple[np.ndarray, np.ndarray]) -> None:
    masks, photos = pairs
    assert masks.shape == (3, 3, 32, 32) and photos.shape == (3, 32, 32, 3)
    fov, retina = masks[:, 2] > 0, photos.max(axis=-1) > 15
    assert (fov == retina).mean() > 0.9  # the FOV channel covers the photo's retina
    assert set(np.unique(masks)) <= {0.0, 1.0} and masks[:, :2].any()


@pytest.mark.slow
def test_a_tiny_pix2pixhd_learns_its_pairs(
    pairs: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    masks, photos = pairs
    torch.manual_seed(0)
    before = _psnr(GlobalGenerator(TINY).eval(), masks, photos)
    model = train_pix2pixhd(
        _config(steps=150, checkpoint_every=150, sample_every=150), masks, photos, tmp_path / "run"
    )
    after = _psnr(model, masks, photos)
    assert after > before + 5, (before, after)
    log = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert len(log) == 1 and (tmp_path / "run" / "samples" / "step_000150.png").is_file()
    assert (
        abs(_psnr(GlobalGenerator.load(tmp_path / "run" / "weights"), masks, photos) - after) < 0.2
    )


@pytest.mark.slow
def test_the_l1_term_brings_generated_photos_closer_to_the_real_ones(
    pairs: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    masks, photos = pairs
    psnr = {}
    for weight in (0.0, 100.0):
        torch.manual_seed(0)
        model = train_pix2pixhd(
            _config(steps=60, checkpoint_every=60, sample_every=1000, l1_weight=weight),
            masks,
            photos,
            tmp_path / f"l1_{weight}",
        )
        psnr[weight] = _psnr(model, masks, photos)
    assert psnr[100.0] > psnr[0.0] + 1.0, psnr


@pytest.mark.slow
def test_a_style_conditioned_generator_paints_in_the_colours_it_is_given(
    pairs: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    masks, photos = pairs
    dim = (photos * 0.45).astype(np.uint8)  # the same fundi photographed darker
    both_masks, both_photos = np.concatenate([masks, masks]), np.concatenate([photos, dim])
    model = train_pix2pixhd(
        _config(model=TINY.model_copy(update={"style": True}), steps=80, l1_weight=100.0),
        both_masks,
        both_photos,
        tmp_path / "run",
    )
    fov = both_masks[:, 2] > 0.5
    styles = photo_style(both_photos, fov)
    assert np.allclose(model.config.style_bank, styles, atol=1e-6)  # kept to draw from
    loaded = GlobalGenerator.load(tmp_path / "run" / "weights")
    assert loaded.config.style_bank == model.config.style_bank
    with torch.no_grad():
        bright, dark = (
            photo_uint8(loaded(generator_input(masks), torch.from_numpy(styles[rows])))
            for rows in (slice(0, 3), slice(3, 6))
        )
    brightness = [p[f].mean() for p, f in zip(np.concatenate([bright, dark]), fov, strict=True)]
    assert min(brightness[:3]) > max(brightness[3:]) + 20, brightness
    with pytest.raises(ValueError, match="give a style exactly when"):
        loaded(generator_input(masks))


def test_reconstruction_loss_counts_pixels_near_vessels_more() -> None:
    masks = -torch.ones(1, 3, 8, 8)
    masks[0, 0, 4, 2] = 1.0  # one artery pixel: it and its 8 neighbours are "near a vessel"
    real = torch.zeros(1, 3, 8, 8)
    on_vessel, off_vessel = real.clone(), real.clone()
    on_vessel[0, :, 3, 3] = 0.5  # a neighbour of the vessel pixel
    off_vessel[0, :, 0, 7] = 0.5
    plain = reconstruction_loss(off_vessel, real, masks)
    assert plain == pytest.approx(1.5 / 192)
    assert reconstruction_loss(off_vessel, real, masks, 9.0) == pytest.approx(float(plain))
    assert reconstruction_loss(on_vessel, real, masks, 9.0) == pytest.approx(10 * float(plain))


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "RITE").is_dir(), reason=f"RITE not found at {SHARED_DATA}")
def test_the_input_skip_lets_the_generator_draw_the_vessels(tmp_path: Path) -> None:
    pairs = [
        make_pair(r.image, r.av, r.fov, 64)
        for r in load_dataset(SHARED_DATA, "rite", "training", limit=4)
    ]
    masks, photos = np.stack([m for m, _ in pairs]), np.stack([p for _, p in pairs])
    vessel, retina = masks[:, :2].max(axis=1) > 0, masks[:, 2] > 0

    def darkening(images: np.ndarray) -> float:  # green level: background minus vessels
        green = images[..., 1].astype(float)
        return float(green[retina & ~vessel].mean() - green[vessel].mean())

    drawn = {}
    for skip in (False, True):
        torch.manual_seed(0)
        model = train_pix2pixhd(
            _config(
                model=TINY.model_copy(update={"image_size": 64, "input_skip": skip}),
                steps=200,
                checkpoint_every=200,
                l1_weight=100.0,
                l1_vessel_weight=20.0,
            ),
            masks,
            photos,
            tmp_path / str(skip),
        )
        with torch.no_grad():
            drawn[skip] = darkening(photo_uint8(model(generator_input(masks))))
    assert darkening(photos) > 4  # RITE vessels are darker than their surroundings
    assert drawn[True] > 1.5 and drawn[False] < 0, drawn


@pytest.mark.slow
def test_training_resumes_exactly(pairs: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    masks, photos = pairs
    straight = train_pix2pixhd(_config(), masks, photos, tmp_path / "straight")

    with pytest.raises(TrainingInterrupted):
        train_pix2pixhd(_config(), masks, photos, tmp_path / "resumed", on_step=interrupt_at(3))
    resumed = train_pix2pixhd(_config(), masks, photos, tmp_path / "resumed")
    for (name, a), (_, b) in zip(
        straight.state_dict().items(), resumed.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_a_generator_continues_at_twice_its_size_from_its_saved_weights(
    pairs: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    masks, photos = pairs
    small = train_pix2pixhd(_config(), masks, photos, tmp_path / "small")
    larger = TINY.model_copy(update={"image_size": 64})
    # another seed: a fresh initialisation would differ from the small run's weights
    config = _config(steps=1, seed=1, init_weights=str(tmp_path / "small" / "weights"))
    start = {}  # the weights the larger run starts from: the small run's, seen at step 0

    def record(step: int, loss: float) -> None:
        start["loss"] = loss

    continued = train_pix2pixhd(
        config.model_copy(update={"model": larger}),
        np.stack([np.kron(m, np.ones((2, 2), np.float32)) for m in masks]),
        np.stack([np.kron(p, np.ones((2, 2, 1), np.uint8)) for p in photos]),
        tmp_path / "larger",
        on_step=record,
    )
    assert continued.config.image_size == 64 and np.isfinite(start["loss"])
    moved = [
        (a - b).abs().max().item()
        for a, b in zip(small.state_dict().values(), continued.state_dict().values(), strict=True)
    ]
    assert max(moved) < 0.05  # one step from the small weights, not a fresh initialisation
    other = TINY.model_copy(update={"image_size": 64, "generator_features": 4})
    with pytest.raises(TrainingRunError, match="init_weights .* has model config"):
        train_pix2pixhd(
            config.model_copy(update={"model": other}), masks, photos, tmp_path / "other"
        )


def test_discriminators_score_patches_at_every_scale() -> None:
    scores = MultiscaleDiscriminator(TINY)(torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, 32, 32))
    assert len(scores) == 2 and scores[0][-1].shape[1] == 1
    assert scores[0][-1].shape[-1] > scores[1][-1].shape[-1]  # the second sees half resolution


@pytest.mark.slow
def test_vgg_loss_needs_a_local_features_file(tmp_path: Path) -> None:
    torch.save({"0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="not a VGG-19 features state dict"):
        VGGPerceptualLoss(tmp_path / "partial.pt")
    torch.manual_seed(0)
    full = {}
    channels = 3
    index = 0
    for item in (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512):
        if item == "M":
            index += 1
            continue
        full[f"{index}.weight"] = torch.randn(int(item), channels, 3, 3) * 0.05
        full[f"{index}.bias"] = torch.zeros(int(item))
        channels, index = int(item), index + 2
    torch.save(full, tmp_path / "vgg19_features.pt")
    loss = VGGPerceptualLoss(tmp_path / "vgg19_features.pt")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert loss(x, x).item() == 0.0 and loss(x, -x).item() > 0.0
