"""Mask DDPM: the vessel-weighted loss against plain L_simple, and fast samplers against DDPM.

Usage: .venv/bin/python benchmarks/bench_ddpm.py [--config configs/ddpm64.yaml]
       [--work runs/bench_ddpm] [--samples 128] [--ddpm-samples 64]
       [--figure docs/ddpm/ablation.png] [--partial-undo 0.15 0.25 0.35]

1. Ablation: two models from the same config, seed and budget, differing only in the loss
   (``weighted``: exp(c*x0), ``simple``: L_simple), trained on the training splits of RITE,
   LES-AV and HRF-AV at 64x64 (run folders in --work; an existing finished run is reused).
   ``--samples`` masks from each (DDIM, 50 steps, seed 0) are compared with the real training
   masks: near-empty rate (density < 1/3 of the real median) and structural statistics
   (pipeline.av_structure statistics: relative difference of means and
   Wasserstein distance in real standard deviations); then the same with the training masks'
   mean as the x0 estimate of the pure-noise steps (``sample_masks``' default; the mean is
   recorded with the weights as ``data_mean``); for the weighted model also with its loss's
   tilt undone (``sample_masks(undo_weighting=c)``: the samples an optimal weighted model
   would give without the weight's pull towards vessel), and with the tilt partly undone
   (``--partial-undo u``: the samples of an optimal model trained with c - u), which traces
   the trade-off between near-empty samples and structure over the loss's strength.
2. Samplers, weighted model: ``--ddpm-samples`` masks with ancestral DDPM (1000 steps), DDIM and
   DPM-Solver++ (50 steps each): seconds per mask, speed-up, and each fast sampler's structural
   statistics relative to DDPM's; without and with the terminal mean.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from angioflow.flows.catalog import find_catalog, public_data_folder
from angioflow.flows.settings_file import load_settings
from results import publish

DATA = public_data_folder(find_catalog())  # the catalog's public_datasets


def _train(config, masks: np.ndarray, folder: Path):  # noqa: ANN001, ANN202
    from angioflow.models.ddpm import MaskDDPM, train_ddpm

    if (folder / "weights" / "model.safetensors").is_file():
        return MaskDDPM.load(folder / "weights"), None
    began = time.perf_counter()
    model = train_ddpm(config, masks, folder)
    return model, time.perf_counter() - began


def _labels(maps: np.ndarray) -> np.ndarray:
    """(N, 2, S, S) artery/vein maps -> (N, S, S) binarised label masks."""
    from angioflow.pipeline.mask_structure import binarise_av

    return np.stack([binarise_av(m) for m in maps])


def _stats(labels: np.ndarray) -> list:
    from angioflow.pipeline.av_structure import structure_stats

    return [structure_stats(m) for m in labels]


def _rounded(value):  # noqa: ANN001, ANN202
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return round(value, 4) if isinstance(value, float) else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, default=Path("configs/ddpm64.yaml"))
    parser.add_argument("--work", type=Path, default=Path("runs/bench_ddpm"))
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--ddpm-samples", type=int, default=64)
    parser.add_argument("--figure", type=Path, default=None)
    parser.add_argument("--partial-undo", type=float, nargs="*", default=[0.15, 0.25, 0.35])
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} is absent: the ablation trains on RITE/LES-AV/HRF-AV")

    from angioflow.models.ddpm import DDPMTrainingConfig, load_public_masks, sample_masks
    from angioflow.pipeline.av_structure import compare_structure

    torch.set_num_threads(2)
    base = load_settings(DDPMTrainingConfig, args.config)
    masks = load_public_masks(DATA, base.datasets, base.model.image_size, coverage=base.coverage)
    real_labels = _labels(masks)
    real = _stats(real_labels)
    if any(not 0 < u < base.c for u in args.partial_undo):
        raise SystemExit(f"--partial-undo values must lie between 0 and c = {base.c}")
    result: dict = {"config": str(args.config), "c": base.c, "real_masks": len(masks)}
    models, grids = {}, {"real": real_labels[:16]}
    for loss in ("weighted", "simple"):
        config = base.model_copy(update={"loss": loss})
        model, seconds = _train(config, masks, args.work / loss)
        if model.config.data_mean is None:
            raise SystemExit(
                f"{args.work / loss}/weights predate the recorded data_mean, so the terminal "
                "mean cannot be applied; retrain that run or give another --work folder"
            )
        models[loss] = model
        variants = [(loss, False, 0.0), (f"{loss}_terminal_mean", True, 0.0)]
        if loss == "weighted":
            variants.append(("weighted_terminal_mean_undone", True, base.c))
            variants += [
                (f"weighted_terminal_mean_undone_{u:g}", True, u) for u in args.partial_undo
            ]
        for key, anchored, undo in variants:
            maps = sample_masks(
                model,
                args.samples,
                sampler="ddim",
                steps=50,
                seed=0,
                terminal_mean=anchored,
                undo_weighting=undo,
            )
            labels = _labels(maps)
            if key in _TITLES:
                grids[key] = labels[:16]
            result[key] = compare_structure(real, _stats(labels))
        result[loss]["training_minutes"] = None if seconds is None else round(seconds / 60, 1)

    result["data_mean"] = models["weighted"].config.data_mean  # the same masks train both
    for key, anchored in (("samplers", False), ("samplers_terminal_mean", True)):
        result[key] = _compare_samplers(models["weighted"], args.ddpm_samples, real, anchored)
    publish("ddpm", _rounded(result))
    if args.figure is not None:
        _figure(grids, args.figure)


def _compare_samplers(model, count: int, real: list, terminal_mean: bool) -> dict:  # noqa: ANN001
    """Ancestral DDPM (T steps) against DDIM and DPM-Solver++ (50 steps): speed and structure."""
    from angioflow.models.ddpm import sample_masks
    from angioflow.pipeline.av_structure import compare_structure

    timings, sampled = {}, {}
    for sampler, steps in (("ddpm", 1000), ("ddim", 50), ("dpm", 50)):
        began = time.perf_counter()
        maps = sample_masks(
            model, count, sampler=sampler, steps=steps, seed=1, terminal_mean=terminal_mean
        )
        timings[sampler] = (time.perf_counter() - began) / count
        sampled[sampler] = _stats(_labels(maps))
    vs_ddpm = {
        s: {
            name: v["relative_difference"]
            for name, v in compare_structure(sampled["ddpm"], sampled[s]).items()
            if "relative_difference" in v
        }
        for s in ("ddim", "dpm")
    }
    return {
        "seconds_per_mask": timings,
        "speedup_vs_ddpm": {s: timings["ddpm"] / timings[s] for s in ("ddim", "dpm")},
        "vs_ddpm_1000": vs_ddpm,
        # over the statistics DDPM's samples define (nan: e.g. no veins, no ratio)
        "largest_difference_vs_ddpm_1000": {
            s: max((d for d in differences.values() if np.isfinite(d)), default=float("nan"))
            for s, differences in vs_ddpm.items()
        },
        "vs_real": {s: compare_structure(real, sampled[s]) for s in sampled},
    }


_TITLES = {
    "real": "real training masks (64x64)",
    "simple": "L_simple",
    "weighted": "vessel-weighted loss",
    "simple_terminal_mean": "L_simple, terminal mean",
    "weighted_terminal_mean": "weighted, terminal mean",
    "weighted_terminal_mean_undone": "weighted, terminal mean, tilt undone",
}


def _figure(grids: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from angioflow.models.ddpm import mask_grid

    figure, axes = plt.subplots(2, 3, figsize=(14.4, 10.0))
    for axis, key in zip(axes.ravel(), _TITLES, strict=True):
        axis.imshow(mask_grid(grids[key], columns=4))
        axis.set_title(_TITLES[key])
        axis.axis("off")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
