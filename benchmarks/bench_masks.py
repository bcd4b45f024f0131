"""Generated A/V masks as whole trees: issue 32's statistics against the real training masks.

Usage: .venv/bin/python benchmarks/bench_masks.py [--weights DIR] [--n 64]
       [--sampler dpm] [--steps 20] [--layout-noise 50] [--reach 0.015625] [--seed S]
       [--figure PNG] [--name masks]

Real reference: the training masks of RITE, LES-AV and HRF-AV at 1024 px (FOV crop, square);
the RITE test masks give the natural spread of an unseen real set. Then, side by side:

- ``ceiling``: the training masks themselves shrunk to soft 256-px shares and enlarged back with
  their calibre (:func:`pipeline.mask_structure.enlarge_soft_av`): what a perfect 256-px soft
  generator would score;
- ``generated``: --n masks sampled from the mask cascade in --weights (default: the shipped
  one; its layouts seen through --layout-noise steps of noise) and enlarged to 1024 px with
  their calibre, as ``angioflow generate`` does (gaps up to --reach of the maps' side
  bridged; 0 for none). Seconds per mask (sampling, enlargement) on --threads torch threads
  (2, the default, for reported timings), and the
  memorisation guard (best vessel Dice at 256 px with any training mask in any flip).

The seed is drawn afresh unless given, and recorded. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import inspect
import json
import secrets
import time
from pathlib import Path

import numpy as np
import torch
from angioflow.flows.catalog import find_catalog, public_data_folder
from angioflow.pipeline.mask_structure import enlarge_soft_av
from results import publish

DATA = public_data_folder(find_catalog())  # the catalog's public_datasets
REACH = inspect.signature(enlarge_soft_av).parameters["reach"].default
DATASETS = ("rite", "les-av", "hrf-av")
SIZE = 1024


def _round(value: object) -> object:
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items() if k != "per_mask"}
    return round(value, 4) if isinstance(value, float) else value


def sample_trees(
    cascade,  # noqa: ANN001 - a MaskCascade
    n: int,
    *,
    seed: int,
    sampler: str,
    steps: int,
    layout_noise: int,
    reach: float,
) -> tuple[list[np.ndarray], float, float]:
    """``n`` masks at 1024 px (mask i drawn with seed ``seed * 1000 + i``, so two cascades get
    the same noise), and the seconds per mask of sampling and of enlargement."""
    from angioflow.models.ddpm import sample_cascade
    from angioflow.pipeline.tree_stats import fov_disc

    fov = fov_disc(SIZE)
    sampling = enlarging = 0.0
    masks = []
    levels = cascade.set_levels(n, seed)  # as for one call of generate-masks
    for index in range(n):
        began = time.perf_counter()
        options = {"sampler": sampler, "steps": steps, "seed": seed * 1000 + index}
        if levels is not None:
            options["conditions"] = levels[index : index + 1]
        (maps,) = sample_cascade(cascade, 1, layout_noise=layout_noise, **options)
        sampling += time.perf_counter() - began
        began = time.perf_counter()
        masks.append(enlarge_soft_av(maps, SIZE, reach=reach) & fov[None])
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
    parser.add_argument("--weights", type=Path, default=None, help="a mask cascade's folder")
    parser.add_argument("--layout-noise", type=int, default=50)
    parser.add_argument(
        "--reach", type=float, default=REACH, help="longest gap bridged, share of the maps' side"
    )
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--sampler", default="dpm", choices=("ddpm", "ddim", "dpm"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--figure", type=Path, default=None)
    parser.add_argument("--name", default="masks", help="result file name")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (timings: 2)")
    args = parser.parse_args()
    seed = secrets.randbelow(10**6) if args.seed is None else args.seed

    from angioflow.flows.mask_trees import judge_masks, load_tree_reference
    from angioflow.models.ddpm import DEFAULT_MASK_WEIGHTS, MaskCascade, load_public_masks

    torch.set_num_threads(args.threads)
    reference = load_tree_reference(DATA, DATASETS, size=SIZE)
    soft_training = load_public_masks(DATA, DATASETS, 256, coverage=None)
    ceiling = judge_masks(
        [enlarge_soft_av(m, SIZE, reach=args.reach) for m in soft_training], reference
    )
    weights = args.weights or DEFAULT_MASK_WEIGHTS
    cascade = MaskCascade.load(weights)
    masks, sampling, enlarging = sample_trees(
        cascade,
        args.n,
        seed=seed,
        sampler=args.sampler,
        steps=args.steps,
        layout_noise=args.layout_noise,
        reach=args.reach,
    )
    generated = judge_masks(masks, reference)
    if args.figure is not None:
        save_figure(masks, args.figure)
    publish(
        args.name,
        {
            "weights": str(weights),
            "weights_sha256": MaskCascade.sha256(weights),
            "layout_noise": args.layout_noise,
            "reach": args.reach,
            "image_size": cascade.image_size,
            "samples": args.n,
            "sampler": args.sampler,
            "steps": args.steps,
            "seed": seed,
            "threads": args.threads,
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
