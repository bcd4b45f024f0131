"""Prefect generation flow: export approved cases -> (re)train the mask cascade or load weights ->
generate a synthetic set -> evaluate it. ``angioflow serve`` runs it on the catalog's cron.

Tasks pass file paths, never arrays or models.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from angioflow.flows.catalog import find_catalog, public_data_folder
from angioflow.flows.resources import packaged_file
from angioflow.pipeline.errors import AngioflowError
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE
from pydantic import Field

__all__ = [
    "MAX_SAMPLES",
    "GenerationInputError",
    "MaskSet",
    "SyntheticSet",
    "generate_synthetic_set",
    "generation_flow",
    "sample_mask_set",
]

# One scheduled run's bound (about 5 MB of output per 256 px sample): a typo cannot fill a disk.
MAX_SAMPLES = 10_000


@task(cache_policy=NONE)
def export_task(store: str | None, out: str) -> str | None:
    """Export the store's done cases (None when there is no store or no done case)."""
    from angioflow.flows.export import export_approved
    from angioflow.pipeline.casestore import CaseStore, CaseStoreError

    if store is None:
        return None
    try:
        summary = export_approved(CaseStore(Path(store), create=False), Path(out))
    except CaseStoreError as error:
        get_run_logger().warning("no export: %s", error)
        return None
    if not summary["exported"]:
        Path(out).unlink(missing_ok=True)
        return None
    return out


@task(cache_policy=NONE)
def mask_model_task(
    export: str | None,
    retrain: bool,
    weights: str | None,
    configs: dict[str, str],
    run: str,
    data: str,
) -> str:
    """The mask cascade's weights folder: both stages retrained on the export (+ public sets
    when present), each from its config in ``configs`` (``layout``, ``upsampler``), into
    ``run/layout`` and ``run/upsampler``; or the given (default: shipped) weights."""
    from angioflow.models.ddpm import DEFAULT_MASK_WEIGHTS

    if not retrain:
        return weights or str(DEFAULT_MASK_WEIGHTS)
    from angioflow.flows.settings_file import load_settings
    from angioflow.models.ddpm import (
        DDPMTrainingConfig,
        load_exported_masks,
        load_public_masks,
        train_ddpm,
    )

    for stage in ("layout", "upsampler"):
        settings = load_settings(DDPMTrainingConfig, Path(configs[stage]))
        size = settings.model.image_size
        parts = (
            [load_exported_masks(Path(export), size, coverage=settings.coverage)] if export else []
        )
        if Path(data).is_dir():
            parts.append(
                load_public_masks(Path(data), settings.datasets, size, coverage=settings.coverage)
            )
        if not parts:
            raise ValueError("nothing to retrain on: no approved cases exported and no public data")
        train_ddpm(settings, np.concatenate(parts), Path(run) / stage)
    return str(_cascade_folder(Path(run)))


def _cascade_folder(run: Path) -> Path:
    """``run/weights`` as a cascade folder: copies of the two stages' weights folders."""
    import shutil

    folder = run / "weights"
    for stage in ("layout", "upsampler"):
        if not (folder / stage).is_dir():
            shutil.copytree(run / stage / "weights", folder / stage)
    return folder


@task(cache_policy=NONE)
def generate_task(
    weights: dict[str, str], n: int, seed: int, sampler: str, steps: int, out: str
) -> str:
    from angioflow.models.generation import Generators, SetRequest, generate_set

    generators = Generators.load(**{name: Path(folder) for name, folder in weights.items()})
    generate_set(generators, SetRequest(n=n, seed=seed, sampler=sampler, steps=steps), Path(out))
    return out


@task(cache_policy=NONE)
def evaluate_task(out: str, data: str, export: str | None) -> dict[str, Any]:
    """Evaluate the set against the public A/V sets in ``data`` and the export (whichever
    exist); write ``<set>.metrics.json`` and the HTML report ``<set>_report/report.html``."""
    from angioflow.flows.evaluation import evaluate_synthetic, load_real_reference, read_synthetic
    from angioflow.flows.reports import synthetic_report

    path = Path(out)
    sample = read_synthetic(path, limit=64)
    try:
        reference = load_real_reference(
            sample["images"].shape[1],
            data=Path(data),
            exports=(Path(export),) if export else (),
        )
    except FileNotFoundError as error:
        get_run_logger().warning("%s: structure and realism not measured", error)
        reference = None
    result = evaluate_synthetic(sample, reference, name=path.name)
    path.with_suffix(".metrics.json").write_text(json.dumps(result, indent=2))
    result["report"] = str(
        synthetic_report(result, sample, reference, path.with_name(f"{path.stem}_report"))
    )
    return result


@flow(name="generate")
def generation_flow(
    out_dir: str,
    n: Annotated[int, Field(ge=1, le=MAX_SAMPLES, description="samples to generate")] = 200,
    seed: Annotated[int, Field(ge=0)] = 0,
    sampler: Literal["ddpm", "ddim", "dpm"] = "dpm",
    steps: Annotated[int, Field(ge=1, le=1000, description="sampler steps")] = 20,
    store: str | None = None,
    retrain: bool = False,
    layout_config: str | None = None,
    upsampler_config: str | None = None,
    data: str | None = None,
    ddpm_weights: str | None = None,
    pix2pixhd_weights: str | None = None,
    edsr_weights: str | None = None,
) -> dict[str, Any]:
    """Export -> (re)train or load -> generate -> evaluate; returns the set's path and metrics.

    Each run writes ``synthetic_<UTC time>.h5``, its ``.metrics.json`` and its HTML report
    (``synthetic_<UTC time>_report/report.html``, also published as Prefect artifacts) in
    ``out_dir``.
    Weights default to the shipped ones; ``retrain`` retrains both stages of the mask cascade
    with ``layout_config`` and ``upsampler_config`` (default: the shipped
    ``configs/ddpm64_layout.yaml`` and ``configs/ddpm256_upsampler.yaml``) on the exported
    approved cases and the public A/V sets in ``data`` (default: the catalog's
    ``public_datasets``).
    """
    from angioflow.models.edsr import DEFAULT_EDSR_WEIGHTS
    from angioflow.models.pix2pixhd import DEFAULT_PIX2PIX_WEIGHTS

    configs = {
        "layout": layout_config or str(packaged_file("configs/ddpm64_layout.yaml")),
        "upsampler": upsampler_config or str(packaged_file("configs/ddpm256_upsampler.yaml")),
    }
    data = data or str(public_data_folder(find_catalog()))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    export = export_task(store, str(folder / f"approved_{stamp}.h5"))
    ddpm = mask_model_task(
        export, retrain, ddpm_weights, configs, str(folder / f"ddpm_{stamp}"), data
    )
    weights = {
        "ddpm": ddpm,
        "pix2pix": pix2pixhd_weights or str(DEFAULT_PIX2PIX_WEIGHTS),
        "edsr": edsr_weights or str(DEFAULT_EDSR_WEIGHTS),
    }
    generated = generate_task(
        weights, n, seed, sampler, steps, str(folder / f"synthetic_{stamp}.h5")
    )
    evaluation = evaluate_task(generated, data, export)
    return {
        "set": generated,
        "export": export,
        "weights": weights,
        "report": evaluation["report"],
        "metrics": {k: v for k, v in evaluation.items() if k not in ("stats", "report")},
    }


class GenerationInputError(AngioflowError, ValueError):
    """A generation run asked for with options or files it cannot use; the message says which."""


SAMPLERS = ("ddpm", "ddim", "dpm")


def _check_request(n: int, sampler: str | None, what: str) -> None:
    """Refuse an unknown sampler (None: the default one) or too many samples."""
    if sampler is not None and sampler not in SAMPLERS:
        raise GenerationInputError(f"--sampler must be ddpm, ddim or dpm, not {sampler!r}")
    if n > MAX_SAMPLES:
        raise GenerationInputError(
            f"--n {n}: at most {MAX_SAMPLES} {what} per run; run several with other --seed"
        )


@dataclass(frozen=True)
class MaskSet:
    """A set of sampled A/V masks written to ``out``; ``near_empty`` of them have under 1 %
    vessel pixels."""

    out: Path
    n: int
    near_empty: int


def sample_mask_set(
    n: int,
    out: Path,
    *,
    weights: Path | None = None,
    size: int = 1024,
    sampler: str = "dpm",
    steps: int = 20,
    seed: int = 0,
    batch_size: int = 8,
    previews: Path | None = None,
    on_batch: Callable[[int], None] | None = None,
    threads: int = 2,
) -> MaskSet:
    """Sample ``n`` A/V masks from the mask cascade into the HDF5 file ``out`` (never
    overwritten): label masks at ``size`` px with each vessel's calibre, the sampled maps, the
    weights' sha256 and the sampling settings as provenance.

    Raises
    ------
    GenerationInputError
        Unknown sampler, too many masks, a ``size`` smaller than the cascade's, ``out``
        exists, or the weights folder is missing.
    """
    import torch
    from angioflow.models.ddpm import (
        DEFAULT_MASK_WEIGHTS,
        MaskCascade,
        sample_cascade,
        write_mask_set,
    )
    from angioflow.pipeline.mask_structure import labels_from_soft_av

    _check_request(n, sampler, "masks")
    if out.exists():
        raise GenerationInputError(
            f"{out} exists; generated sets are never overwritten, name a new file"
        )
    folder = weights or DEFAULT_MASK_WEIGHTS
    try:
        cascade = MaskCascade.load(folder)
    except FileNotFoundError as error:
        raise GenerationInputError(str(error)) from None
    if size < cascade.image_size:
        raise GenerationInputError(
            f"--size {size}: the masks are drawn at {cascade.image_size} px; give at least that"
        )
    torch.set_num_threads(threads)
    maps = sample_cascade(
        cascade,
        n,
        sampler=sampler,
        steps=steps,
        seed=seed,
        batch_size=batch_size,
        on_batch=on_batch,
    )
    labels = labels_from_soft_av(maps, size)
    provenance = {
        "weights_sha256": MaskCascade.sha256(folder),
        "layout_model": cascade.layout.config.model_dump(),
        "upsampler_model": cascade.upsampler.config.model_dump(),
        "sampler": sampler,
        "steps": cascade.layout.config.timesteps if sampler == "ddpm" else steps,
        "seed": seed,
        "n": n,
        "size": size,
    }
    write_mask_set(out, maps, labels, provenance, previews=previews)
    density = (labels.reshape(len(labels), -1) > 0).mean(axis=1)
    return MaskSet(out, n, int((density < 0.01).sum()))


@dataclass(frozen=True)
class SyntheticSet:
    """A synthetic set of ``n`` photos of ``size`` x ``size`` pixels written to ``out``."""

    out: Path
    n: int
    size: int


def generate_synthetic_set(
    n: int,
    out: Path,
    *,
    export_folders: Path | None = None,
    weights: dict[str, Path | None] | None = None,
    on_batch: Callable[[int], None] | None = None,
    threads: int = 2,
    **sampling: Any,
) -> SyntheticSet:
    """Synthetic fundus photos with their A/V and vessel masks (mask cascade -> pix2pixHD ->
    EDSR x4)
    in ``out``; a killed run continues where it stopped when started again the same way.

    Parameters
    ----------
    weights : dict, optional
        ``{"ddpm", "pix2pix", "edsr"}`` weights folders (``ddpm``: a mask cascade's); a
        missing or None one: the shipped.
    **sampling
        ``sampler``, ``steps``, ``seed`` and ``batch_size`` of the
        :class:`models.generation.SetRequest` (its defaults for those not given).

    Raises
    ------
    GenerationInputError
        Unknown sampler, too many samples, ``out`` exists or its unfinished run had other
        settings, or a weights folder is missing.
    DiskSpaceError
        The set cannot fit on its disk.
    """
    import torch
    from angioflow.models.generation import Generators, SetRequest, generate_set

    _check_request(n, sampling.get("sampler"), "samples")
    torch.set_num_threads(threads)
    chosen = {name: folder for name, folder in (weights or {}).items() if folder is not None}
    try:
        generators = Generators.load(**chosen)
    except FileNotFoundError as error:
        raise GenerationInputError(str(error)) from None
    request = SetRequest(n=n, **sampling)
    try:
        generate_set(generators, request, out, export_folders=export_folders, on_batch=on_batch)
    except FileExistsError as error:  # the set, or an unfinished run with other settings
        raise GenerationInputError(str(error)) from None
    return SyntheticSet(out, n, generators.output_size)
