"""Training runs of angioflow's own models from the command line: settings read and checked,
training data loaded, the run folder chosen; the command then runs the job under its progress
bar.

A distributed run (``torchrun``) starts one process per GPU; every process loads the data and
trains, and only the lead process (``RANK`` 0) reports.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from angioflow.flows.catalog import find_catalog, public_data_folder
from angioflow.flows.settings_file import load_settings
from angioflow.pipeline.errors import AngioflowError

__all__ = ["MODELS", "TrainingInputError", "TrainingJob", "is_lead_process", "prepare_training"]

MODELS = ("vessel", "hvgn", "ddpm", "edsr", "pix2pixhd")

StepCallback = Callable[[int, float], None]


class TrainingInputError(AngioflowError, ValueError):
    """Training asked for with data or settings it cannot use; the message says what to pass."""


def is_lead_process() -> bool:
    """Whether this is the process that reports: the only one, or ``RANK`` 0 under torchrun."""
    return os.environ.get("RANK", "0") == "0"


@dataclass(frozen=True)
class TrainingJob:
    """A training run ready to start.

    Attributes
    ----------
    model : str
    settings : pydantic model
        The validated training config.
    out : Path
        Run folder: checkpoints, log, samples, and ``weights/`` at the end.
    notes : list of str
        What was loaded, for the user (``"20 training photos"``).
    steps : int
    lead : bool
        Whether this process reports (see :func:`is_lead_process`).
    """

    model: str
    settings: Any
    out: Path
    notes: list[str]
    steps: int
    lead: bool
    train: Callable[[StepCallback], Any]

    def run(self, on_step: StepCallback) -> Path:
        """Train (continuing from the run folder's checkpoint when resuming); returns the
        weights folder."""
        self.train(on_step)
        return self.out / "weights"


def prepare_training(
    model: str,
    *,
    config: Path | None,
    data: Path | None,
    out: Path | None,
    catalog: Path | None,
    resume: bool = True,
    exports: list[Path] | None = None,
    loss: str | None = None,
) -> TrainingJob:
    """Settings, training data and run folder of a training run of ``model``.

    Parameters
    ----------
    model : {'vessel', 'hvgn', 'ddpm', 'edsr', 'pix2pixhd'}
    config : Path, optional
        Training config (YAML/JSON); the built-in defaults when None.
    data : Path, optional
        Public datasets folder; default: the catalog's ``public_datasets``.
    out : Path, optional
        Run folder; default: the catalog's ``model_weights`` of this model.
    catalog : Path, optional
        Catalog file (see :func:`angioflow.flows.catalog.find_catalog`).
    exports : list of Path, optional
        ``angioflow export`` files to train on as well (ddpm, pix2pixhd).
    loss : str, optional
        DDPM loss, over the config's.

    Raises
    ------
    SettingsFileError, TrainingInputError, CatalogError
        Wrong settings, a missing data folder, or nothing to train on.
    """
    overrides: dict[str, Any] = {}
    if loss is not None:
        overrides["loss"] = loss
    if exports:
        overrides["exports"] = [str(p) for p in exports]
    settings = load_settings(_CONFIGS[model](), config, overrides)
    loaded = find_catalog(catalog)
    data = public_data_folder(loaded, data)
    if settings.datasets and not data.is_dir():
        raise TrainingInputError(
            f"data folder {data} does not exist; pass --data (the shared datasets folder)"
        )
    out = out or loaded.path("model_weights", model=model)
    try:
        inputs, notes = _LOADERS[model](settings, data, config)
    except FileNotFoundError as error:  # a dataset file the loaders expected
        raise TrainingInputError(f"{error}; check --data {data}") from None
    trainer = _TRAINERS[model]()

    def train(on_step: StepCallback) -> Any:
        return trainer(settings, *inputs, out, resume=resume, on_step=on_step)

    return TrainingJob(model, settings, out, notes, settings.steps, is_lead_process(), train)


def _vessel_config() -> type:
    from angioflow.models.vessel import VesselTrainingConfig

    return VesselTrainingConfig


def _hvgn_config() -> type:
    from angioflow.models.hvgn import HVGNTrainingConfig

    return HVGNTrainingConfig


def _ddpm_config() -> type:
    from angioflow.models.ddpm import DDPMTrainingConfig

    return DDPMTrainingConfig


def _edsr_config() -> type:
    from angioflow.models.edsr import EDSRTrainingConfig

    return EDSRTrainingConfig


def _pix2pixhd_config() -> type:
    from angioflow.models.pix2pixhd import Pix2PixHDTrainingConfig

    return Pix2PixHDTrainingConfig


def _vessel_data(settings: Any, data: Path, config: Path | None) -> tuple[tuple, list[str]]:
    from angioflow.models.vessel import load_training_images, phantom_fa_training_images

    images = load_training_images(data, settings.datasets, model=settings.model)
    images += phantom_fa_training_images(
        settings.phantom_fa_cases, seed=settings.seed, model=settings.model
    )
    loading = f"loaded {', '.join(settings.datasets)} training images from {data}"
    return (images,), [loading, f"{len(images)} training images"]


def _hvgn_data(settings: Any, data: Path, config: Path | None) -> tuple[tuple, list[str]]:
    from angioflow.models.hvgn import load_av_training_images, phantom_av_training_images

    if settings.model.fa_channels:
        raise TrainingInputError(
            f"{config}: the public A/V datasets have no FA; train fa_channels > 0 models on "
            "exported curated cases"
        )
    images = load_av_training_images(data, settings.datasets, model=settings.model)
    images += phantom_av_training_images(
        settings.phantom_cases, seed=settings.seed, model=settings.model
    )
    return (images,), [f"{len(images)} training images"]


def _ddpm_data(settings: Any, data: Path, config: Path | None) -> tuple[tuple, list[str]]:
    import numpy as np
    from angioflow.models.ddpm import load_exported_masks, load_public_masks

    size, coverage = settings.model.image_size, settings.coverage
    parts = [load_public_masks(data, settings.datasets, size, coverage=coverage)]
    parts += [load_exported_masks(Path(p), size, coverage=coverage) for p in settings.exports]
    masks = np.concatenate(parts)
    if not len(masks):
        raise TrainingInputError(
            "no training masks: name datasets in the config or pass --export FILE"
        )
    return (masks,), [f"{len(masks)} training masks at {size}x{size}, loss {settings.loss}"]


def _edsr_data(settings: Any, data: Path, config: Path | None) -> tuple[tuple, list[str]]:
    from angioflow.models.edsr import load_training_photos

    photos = load_training_photos(data, settings.datasets)
    return (photos,), [f"{len(photos)} training photos"]


def _pix2pixhd_data(settings: Any, data: Path, config: Path | None) -> tuple[tuple, list[str]]:
    from angioflow.models.pix2pixhd import load_pairs

    if settings.vgg_weights is not None and not Path(settings.vgg_weights).is_file():
        raise TrainingInputError(
            f"vgg_weights {settings.vgg_weights} does not exist (nothing is downloaded)"
        )
    size = settings.model.image_size
    coverage = settings.model.mask_coverage
    masks, photos = load_pairs(data, settings.datasets, settings.exports, size, coverage=coverage)
    return (masks, photos), [f"{len(masks)} training pairs at {size} px"]


def _vessel_trainer() -> Callable[..., Any]:
    from angioflow.models.vessel import train_vessel

    return train_vessel


def _hvgn_trainer() -> Callable[..., Any]:
    from angioflow.models.hvgn import train_hvgn

    return train_hvgn


def _ddpm_trainer() -> Callable[..., Any]:
    from angioflow.models.ddpm import train_ddpm

    return train_ddpm


def _edsr_trainer() -> Callable[..., Any]:
    from angioflow.models.edsr import train_edsr

    return train_edsr


def _pix2pixhd_trainer() -> Callable[..., Any]:
    from angioflow.models.pix2pixhd import train_pix2pixhd

    return train_pix2pixhd


# torch and the models load only when a training run is prepared, not for every command
_CONFIGS = {
    "vessel": _vessel_config,
    "hvgn": _hvgn_config,
    "ddpm": _ddpm_config,
    "edsr": _edsr_config,
    "pix2pixhd": _pix2pixhd_config,
}
_LOADERS = {
    "vessel": _vessel_data,
    "hvgn": _hvgn_data,
    "ddpm": _ddpm_data,
    "edsr": _edsr_data,
    "pix2pixhd": _pix2pixhd_data,
}
_TRAINERS = {
    "vessel": _vessel_trainer,
    "hvgn": _hvgn_trainer,
    "ddpm": _ddpm_trainer,
    "edsr": _edsr_trainer,
    "pix2pixhd": _pix2pixhd_trainer,
}
