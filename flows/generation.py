"""Prefect generation flow: export approved cases -> (re)train the mask DDPM or load weights ->
generate a synthetic set -> evaluate it. ``angioflow serve`` runs it on the catalog's cron.

Tasks pass file paths, never arrays or models.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE
from pydantic import Field

__all__ = ["MAX_SAMPLES", "generation_flow"]

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
    export: str | None, retrain: bool, weights: str | None, config: str, run: str, data: str
) -> str:
    """The mask DDPM weights folder: retrained on the export (+ public sets when present), or
    the given (default: shipped) weights."""
    from angioflow.models.ddpm import DEFAULT_DDPM_WEIGHTS

    if not retrain:
        return weights or str(DEFAULT_DDPM_WEIGHTS)
    from angioflow.flows.settings_file import read_settings
    from angioflow.models.ddpm_data import load_exported_masks, load_public_masks
    from angioflow.models.ddpm_training import DDPMTrainingConfig, train_ddpm

    settings = DDPMTrainingConfig(**read_settings(Path(config)))
    size = settings.model.image_size
    parts = [load_exported_masks(Path(export), size)] if export else []
    if Path(data).is_dir():
        parts.append(load_public_masks(Path(data), settings.datasets, size))
    if not parts:
        raise ValueError("nothing to retrain on: no approved cases exported and no public data")
    train_ddpm(settings, np.concatenate(parts), Path(run))
    return str(Path(run) / "weights")


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
    sampler: Literal["ddpm", "ddim", "dpm"] = "ddim",
    steps: Annotated[int, Field(ge=1, le=1000, description="sampler steps")] = 50,
    store: str | None = None,
    retrain: bool = False,
    ddpm_config: str = "configs/ddpm64.yaml",
    data: str = "../shared/data",
    ddpm_weights: str | None = None,
    pix2pixhd_weights: str | None = None,
    edsr_weights: str | None = None,
) -> dict[str, Any]:
    """Export -> (re)train or load -> generate -> evaluate; returns the set's path and metrics.

    Each run writes ``synthetic_<UTC time>.h5``, its ``.metrics.json`` and its HTML report
    (``synthetic_<UTC time>_report/report.html``, also published as Prefect artifacts) in
    ``out_dir``.
    Weights default to the shipped ones; ``retrain`` retrains the mask DDPM with
    ``ddpm_config`` on the exported approved cases and the public A/V sets in ``data``.
    """
    from angioflow.models.edsr import DEFAULT_EDSR_WEIGHTS
    from angioflow.models.pix2pixhd import DEFAULT_PIX2PIX_WEIGHTS

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    export = export_task(store, str(folder / f"approved_{stamp}.h5"))
    ddpm = mask_model_task(
        export, retrain, ddpm_weights, ddpm_config, str(folder / f"ddpm_{stamp}"), data
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
