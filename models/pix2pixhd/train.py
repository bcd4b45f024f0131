"""Training pix2pixHD on (A/V mask, fundus photo) pairs: LSGAN + feature matching (+ VGG when
local weights are given, + pix2pix's L1 when asked), an EMA of the generator, checkpoints that
resume, sample grids."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from angioflow.models.pix2pixhd.data import generator_input, photo_style, photo_uint8
from angioflow.models.pix2pixhd.net import (
    GlobalGenerator,
    MultiscaleDiscriminator,
    Pix2PixHDConfig,
    VGGPerceptualLoss,
    feature_matching_loss,
    lsgan_loss,
    reconstruction_loss,
)
from angioflow.models.training import RunFolder, TrainingConfig, TrainingRunError, ema_model
from PIL import Image
from pydantic import Field

__all__ = ["Pix2PixHDTrainingConfig", "train_pix2pixhd"]


class Pix2PixHDTrainingConfig(TrainingConfig):
    """Everything that defines a pix2pixHD training run; the defaults are
    ``configs/pix2pixhd256.yaml``, the recipe of the shipped weights."""

    model: Pix2PixHDConfig = Pix2PixHDConfig(anatomy=True)
    datasets: tuple[str, ...] = ("rite", "les-av", "hrf-av")
    exports: tuple[str, ...] = ()
    steps: int = Field(3000, ge=1)
    batch_size: int = Field(4, ge=1)
    learning_rate: float = Field(2e-4, gt=0)
    feature_matching_weight: float = Field(10.0, ge=0)
    vgg_weight: float = Field(10.0, ge=0)
    vgg_weights: str | None = None  # a local VGG-19 `features` state dict; none: no VGG loss
    # pix2pix's L1 to the real photo: the reconstruction term that ties vessels to the mask
    # when no VGG weights are at hand (pix2pixHD's own recipe: 0)
    l1_weight: float = Field(100.0, ge=0)
    # extra L1 weight of pixels within one pixel of a vessel (models.pix2pixhd.reconstruction_loss)
    l1_vessel_weight: float = Field(20.0, ge=0)
    ema_decay: float = Field(0.995, gt=0, lt=1)
    sample_every: int = Field(500, ge=1)
    # a generator saved at another size, or without style, to start from
    # (configs/pix2pixhd512.yaml: the 256 px one)
    init_weights: str | None = None


def train_pix2pixhd(
    config: Pix2PixHDTrainingConfig,
    masks: np.ndarray,
    photos: np.ndarray,
    out_dir: Path,
    *,
    resume: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> GlobalGenerator:
    """Train (or continue) pix2pixHD; returns the EMA generator, also saved in
    ``out_dir/weights``. ``on_step`` receives the generator loss."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    fov = masks[:, 2] > 0.5
    styles = torch.from_numpy(photo_style(photos, fov))
    model = config.model
    if model.style:  # generated photos draw their colours from the training photos'
        model = model.model_copy(update={"style_bank": tuple(map(tuple, styles.tolist()))})
    generator = GlobalGenerator(model)
    if config.init_weights is not None:
        _start_from(generator, Path(config.init_weights))
    generator = generator.to(device)
    discriminator = MultiscaleDiscriminator(model).to(device)
    ema = ema_model(generator, config.ema_decay)
    g_optimiser = torch.optim.Adam(generator.parameters(), config.learning_rate, betas=(0.5, 0.999))
    d_optimiser = torch.optim.Adam(
        discriminator.parameters(), config.learning_rate, betas=(0.5, 0.999)
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(g_optimiser, lambda step: 1.0)
    vgg = (
        VGGPerceptualLoss(Path(config.vgg_weights)).to(device)
        if config.vgg_weights is not None
        else None
    )
    extras = {"discriminator": discriminator, "d_optimiser": d_optimiser, "ema": ema}
    run = RunFolder(out_dir, config, device)
    start = run.resume(generator, g_optimiser, schedule, rng, enabled=resume, extras=extras)
    targets = torch.from_numpy(photos).permute(0, 3, 1, 2).float() / 127.5 - 1
    inputs = generator_input(masks, anatomy=config.model.anatomy)
    for step in range(start, config.steps):
        picked = rng.integers(0, len(inputs), config.batch_size)
        x, y = inputs[picked], targets[picked]
        style = styles[picked].to(device) if model.style else None
        flips = rng.random(2) < 0.5
        for axis, flip in zip((3, 2), flips, strict=True):
            if flip:
                x, y = x.flip(axis), y.flip(axis)
        x, y = x.to(device), y.to(device)
        fake = generator(x, style)
        d_loss = 0.5 * (
            lsgan_loss(discriminator(x, y), True)
            + lsgan_loss(discriminator(x, fake.detach()), False)
        )
        d_optimiser.zero_grad(set_to_none=True)
        d_loss.backward()
        d_optimiser.step()
        on_fake, on_real = discriminator(x, fake), discriminator(x, y)
        g_loss = lsgan_loss(on_fake, True) + config.feature_matching_weight * feature_matching_loss(
            on_fake, on_real
        )
        if vgg is not None:
            g_loss = g_loss + config.vgg_weight * vgg(fake, y)
        if config.l1_weight:
            g_loss = g_loss + config.l1_weight * reconstruction_loss(
                fake, y, x, config.l1_vessel_weight
            )
        g_optimiser.zero_grad(set_to_none=True)
        g_loss.backward()
        g_optimiser.step()
        schedule.step()
        ema.update_parameters(generator)
        value = run.record(g_loss)
        done = step + 1
        if run.due(done, config.checkpoint_every):
            run.checkpoint(done, generator, g_optimiser, schedule, rng, extras=extras)
        if run.due(done, config.sample_every):
            _sample_grid(
                ema.module,
                inputs[:4],
                targets[:4],
                styles[:4] if model.style else None,
                out_dir / "samples" / f"step_{done:06d}.png",
            )
        if on_step is not None:
            on_step(done, value)
    final = ema.module.eval()
    final.save(out_dir / "weights")
    return final


def _start_from(generator: GlobalGenerator, folder: Path) -> None:
    """Copy a saved generator's weights into ``generator``, which may differ from it in
    image size and in having style layers (they start at zero: no change to the photos).

    Raises
    ------
    TrainingRunError
        If any other part of the architecture differs.
    """
    saved = GlobalGenerator.load(folder)
    free = {"image_size": 0, "style": False, "style_bank": ()}
    if saved.config.model_copy(update=free) != generator.config.model_copy(update=free):
        raise TrainingRunError(
            f"init_weights {folder} has model config {saved.config}, not one of the run's "
            f"architecture {generator.config.model_copy(update=free)}"
        )
    missing, unexpected = generator.load_state_dict(saved.state_dict(), strict=False)
    if unexpected or any(not key.startswith(("modulation.", "colour.")) for key in missing):
        raise TrainingRunError(f"init_weights {folder} does not fit the run's generator")


@torch.no_grad()
def _sample_grid(
    model: GlobalGenerator,
    x: torch.Tensor,
    y: torch.Tensor,
    style: torch.Tensor | None,
    path: Path,
) -> None:
    """Rows: input masks (artery red, vein blue; disc and fovea maps green), generated photos
    (in the real photos' styles), real photos."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    fake = model(x.to(device), None if style is None else style.to(device)).cpu()
    model.train(was_training)
    masks = ((x + 1) / 2).numpy()
    green = masks[:, 3:].max(axis=1) * 0.6 if masks.shape[1] > 3 else np.zeros_like(masks[:, 0])
    coloured = np.stack([masks[:, 0], green, masks[:, 1]], axis=-1) * 255
    rows = [
        np.concatenate(list(r), axis=1)
        for r in (coloured.astype(np.uint8), photo_uint8(fake), photo_uint8(y))
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
