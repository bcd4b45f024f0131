"""Generated A/V masks as whole trees: issue 32's statistics against the real training masks.

Usage: .venv/bin/python benchmarks/bench_masks.py [--weights DIR] [--layout DIR] [--n 64]
       [--sampler dpm] [--steps 20] [--layout-noise 50] [--seed S] [--figure PNG]
       [--name masks]

Real reference: the training masks of RITE, LES-AV and HRF-AV at 1024 px (FOV crop, square);
the RITE test masks give the natural spread of an unseen real set. Then, side by side:

- ``ceiling``: the training masks themselves shrunk to soft 256-px shares and enlarged back with
  their calibre (:func:`pipeline.mask_structure.enlarge_soft_av`): what a perfect 256-px soft
  generator would score;
- ``generated``: --n masks sampled from the mask DDPM in --weights (default: the shipped one) at
  its size (a cascade when --weights is an up-sampler: its layouts from the model in --layout,
  seen through --layout-noise steps of noise), enlarged to 1024 px: soft models (trained with
  ``coverage: null``) through ``enlarge_soft_av``, binary ones through the shipped path
  (bilinear to 256 px, binarised, vessels redrawn 3 px wide, bilinear to 1024). Seconds per
  mask (sampling, enlargement) on 2 threads, and the memorisation guard (best vessel Dice at
  256 px with any training mask in any flip).

The seed is drawn afresh unless given, and recorded. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import secrets
import time
from pathlib import Path

import numpy as np
import torch
from angioflow.flows.catalog import find_catalog, public_data_folder
from results import publish

DATA = public_data_folder(find_catalog())  # the catalog's public_datasets
DATASETS = ("rite", "les-av", "hrf-av")
SIZE = 1024


def _round(value: object) -> object:
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items() if k != "per_mask"}
    return round(value, 4) if isinstance(value, float) else value


def _enlarge(maps: np.ndarray, soft: bool) -> list[np.ndarray]:
    from angioflow.models.generation import enlarge_labels
    from angioflow.pipeline.mask_structure import (
        av_channels,
        binarise_av,
        enlarge_soft_av,
        thin_av_labels,
    )
    from torch.nn import functional as F  # noqa: N812

    if soft:
        return [enlarge_soft_av(m, SIZE) for m in maps]
    middle = F.interpolate(torch.from_numpy(maps), size=(256, 256), mode="bilinear").numpy()
    labels = np.stack([thin_av_labels(binarise_av(m)) for m in middle])
    return [av_channels(m) for m in enlarge_labels(labels, SIZE)]


def sample_trees(
    model,  # noqa: ANN001
    base,  # noqa: ANN001
    n: int,
    *,
    seed: int,
    sampler: str,
    steps: int,
    layout_noise: int,
) -> tuple[list[np.ndarray], float, float]:
    """``n`` masks at 1024 px (mask i drawn with seed ``seed * 1000 + i``, so two models get the
    same layouts and noise), and the seconds per mask of sampling and of enlargement."""
    from angioflow.models.ddpm import sample_cascade, sample_masks

    soft = model.config.image_size >= 128  # the binary 64 px model predates soft masks
    sampling = enlarging = 0.0
    masks = []
    for index in range(n):
        began = time.perf_counter()
        options = {"sampler": sampler, "steps": steps, "seed": seed * 1000 + index}
        if base is None:
            maps = sample_masks(model, 1, **options)
        else:
            maps = sample_cascade(base, model, 1, layout_noise=layout_noise, **options)
        sampling += time.perf_counter() - began
        began = time.perf_counter()
        masks += _enlarge(maps, soft)
        enlarging += time.perf_counter() - began
    return masks, sampling / n, enlarging / n


def save_figure(masks: list[np.ndarray], path: Path) -> None:
    """The first 16 masks (1024 px channels) as an 8-column grid of 256 px A/V labels."""
    from angioflow.models.ddpm import mask_grid
    from angioflow.pipeline.mask_structure import labels_from_channels
    from PIL import Image

    shown = [labels_from_channels(m[:, ::4, ::4]) for m in masks[:16]]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask_grid(np.stack(shown), columns=8)).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--layout", type=Path, default=None, help="a cascade's base model")
    parser.add_argument("--layout-noise", type=int, default=50)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--sampler", default="dpm", choices=("ddpm", "ddim", "dpm"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--figure", type=Path, default=None)
    parser.add_argument("--name", default="masks", help="result file name")
    args = parser.parse_args()
    seed = secrets.randbelow(10**6) if args.seed is None else args.seed

    from angioflow.flows.mask_trees import judge_masks, load_tree_reference
    from angioflow.models.ddpm import (
        DEFAULT_DDPM_WEIGHTS,
        MaskDDPM,
        load_public_masks,
    )
    from angioflow.pipeline.mask_structure import enlarge_soft_av

    torch.set_num_threads(2)
    reference = load_tree_reference(DATA, DATASETS, size=SIZE)
    soft_training = load_public_masks(DATA, DATASETS, 256, coverage=None)
    ceiling = judge_masks([enlarge_soft_av(m, SIZE) for m in soft_training], reference)
    weights = args.weights or DEFAULT_DDPM_WEIGHTS
    model = MaskDDPM.load(weights).eval()
    base = MaskDDPM.load(args.layout).eval() if args.layout else None
    soft = model.config.image_size >= 128  # the binary 64 px model predates soft masks
    masks, sampling, enlarging = sample_trees(
        model,
        base,
        args.n,
        seed=seed,
        sampler=args.sampler,
        steps=args.steps,
        layout_noise=args.layout_noise,
    )
    generated = judge_masks(masks, reference)
    if args.figure is not None:
        save_figure(masks, args.figure)
    publish(
        args.name,
        {
            "weights": str(weights),
            "layout_weights": str(args.layout) if args.layout else None,
            "layout_noise": args.layout_noise if args.layout else None,
            "image_size": model.config.image_size,
            "representation": "soft" if soft else "binary + 3-px redraw",
            "samples": args.n,
            "sampler": args.sampler,
            "steps": args.steps,
            "seed": seed,
            "seconds_per_mask": {
                "sampling": round(sampling, 2),
                "enlargement_to_1024": round(enlarging, 2),
            },
            "real_training_masks": len(reference.training),
            "natural_spread": _round(reference.natural_spread()),
            "ceiling_soft_256": _round(ceiling["trees"]),
            "generated": _round(generated["trees"]),
            "best_overlap": _round(generated["best_overlap"]),
        },
    )
    if args.figure is not None:
        print(json.dumps({"figure": str(args.figure)}))


if __name__ == "__main__":
    main()
