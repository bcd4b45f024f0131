"""The paper's loss ablation at 256 px: the cascade's up-sampler trained with the
vessel-weighted loss against L_simple, same config, seed and budget.

Usage: .venv/bin/python benchmarks/bench_mask_loss.py [--config configs/ddpm256_upsampler.yaml]
       [--layout DIR] [--steps N] [--work runs/bench_mask_loss] [--n 32] [--seed S]
       [--figure PNG]

Trains the up-sampler of --config twice for --steps steps (default: the config's), once with
``loss: simple`` and once with ``loss: weighted`` (exp(c * x0) weights, c from the config), in
--work/simple and --work/weighted (a finished run is reused, an unfinished one resumes). Both
then draw --n masks from the same layouts of the layout model in --layout (default: the shipped
cascade's) with the same noise (bench_masks.sample_trees), enlarged to 1024 px; each set is judged
against the real training masks like bench_masks.py: near-empty rate, issue 32's ratios of
medians, tree share and the memorisation guard. The seed is drawn afresh unless given, and
recorded. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import secrets
from pathlib import Path

import torch
from bench_masks import DATA, DATASETS, SIZE, _round, sample_trees, save_figure
from results import publish

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, default=ROOT / "configs/ddpm256_upsampler.yaml")
    parser.add_argument("--layout", type=Path, default=None, help="the cascade's base model")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--work", type=Path, default=Path("runs/bench_mask_loss"))
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--layout-noise", type=int, default=50)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--figure", type=Path, default=None, help="weighted above simple")
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} is absent: the ablation trains on RITE/LES-AV/HRF-AV")
    seed = secrets.randbelow(10**6) if args.seed is None else args.seed

    from angioflow.flows.mask_trees import judge_masks, load_tree_reference
    from angioflow.flows.settings_file import load_settings
    from angioflow.models.ddpm import (
        DEFAULT_MASK_WEIGHTS,
        DDPMTrainingConfig,
        MaskCascade,
        MaskDDPM,
        load_public_masks,
        train_ddpm,
    )

    base_config = load_settings(DDPMTrainingConfig, args.config)
    if not base_config.model.layout_size:
        raise SystemExit(f"{args.config} is not an up-sampler (no model.layout_size)")
    masks = load_public_masks(
        DATA, base_config.datasets, base_config.model.image_size, coverage=base_config.coverage
    )
    if args.layout is None:
        args.layout = DEFAULT_MASK_WEIGHTS / "layout"
    layout = MaskDDPM.load(args.layout).eval()
    reference = load_tree_reference(DATA, DATASETS, size=SIZE)
    result: dict = {
        "config": str(args.config),
        "steps": args.steps or base_config.steps,
        "c": base_config.c,
        "samples": args.n,
        "seed": seed,
        "layout_noise": args.layout_noise,
    }
    figures = []
    steps = args.steps or base_config.steps
    for loss in ("weighted", "simple"):
        config = base_config.model_copy(update={"loss": loss, "steps": steps})
        folder = args.work / loss
        if (folder / "weights" / "model.safetensors").is_file():
            model = MaskDDPM.load(folder / "weights")
        else:
            model = train_ddpm(config, masks, folder)
        torch.set_num_threads(2)
        generated, sampling, _ = sample_trees(
            MaskCascade(layout, model.eval()),
            args.n,
            seed=seed,
            sampler="dpm",
            steps=20,
            layout_noise=args.layout_noise,
        )
        judged = judge_masks(generated, reference)
        result[loss] = {
            **_round(judged["trees"]),
            "best_overlap": _round(judged["best_overlap"]),
            "seconds_per_mask": round(sampling, 2),
        }
        figures.append(generated[:8])
    if args.figure is not None:
        save_figure([m for row in figures for m in row], args.figure)
    publish("mask_loss", result)


if __name__ == "__main__":
    main()
