"""Rank vessel training recipes on held-out DRIVE *training* images (never DRIVE test).

Usage: .venv/bin/python benchmarks/bench_vessel_heldout.py CONFIG.yaml --out RUN_DIR
       [--data ../shared/data] [--threads N]

Trains the recipe in CONFIG (a `angioflow train vessel` config) without DRIVE training images
36-40, then prints one JSON object with the mean AUC, accuracy, sensitivity, specificity, F1 and
clDice (threshold 0.5, inside the FOV masks) on those five images, and the mean accuracy at
thresholds 0.30-0.70 (`accuracy_by_threshold`, `best_threshold`). A run resumes from RUN_DIR;
a finished run is only evaluated.
The held-out numbers of docs/models/vessel.md (configs/vessel.yaml 0.9545) and of the options
tried and removed (docs/experiments.md) come from this script, CPU, 6000 steps.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from angioflow.flows.catalog import find_catalog, public_data_folder
from angioflow.flows.settings_file import read_settings
from angioflow.models.vessel import (
    VesselSegmenter,
    VesselTrainingConfig,
    load_training_images,
    phantom_fa_training_images,
    train_vessel,
)
from angioflow.pipeline.datasets import load_dataset
from angioflow.pipeline.metrics import vessel_scores

HELD_OUT = {f"drive/training/{number}" for number in range(36, 41)}
# Is the model's 0.5 where accuracy peaks? (a miscalibrated model would gain from another cut)
THRESHOLDS = np.round(np.arange(0.30, 0.71, 0.02), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=public_data_folder(find_catalog()))
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    raw = read_settings(args.config)
    if args.threads is not None:
        raw["threads"] = args.threads
    settings = VesselTrainingConfig.model_validate(raw)
    images = [
        image
        for image in load_training_images(args.data, settings.datasets, model=settings.model)
        if image.name not in HELD_OUT
    ]
    images += phantom_fa_training_images(
        settings.phantom_fa_cases, seed=settings.seed, model=settings.model
    )
    model = train_vessel(settings, images, args.out)
    segmenter = VesselSegmenter(model, "", threads=settings.threads)
    rows, sweep = [], {threshold: [] for threshold in THRESHOLDS}
    for record in load_dataset(args.data, "drive", "training"):
        if record.name in HELD_OUT:
            probability = segmenter.segment(record.image, modality="fundus", fov=record.fov)
            rows.append(vessel_scores(probability, record.vessel, fov=record.fov).as_dict())
            # accuracy alone: vessel_scores per threshold would redo AUC and clDice each time
            inside, truth = probability[record.fov], record.vessel[record.fov]
            for threshold in THRESHOLDS:
                sweep[threshold].append(float(((inside >= threshold) == truth).mean()))
    mean = {key: round(float(np.mean([row[key] for row in rows])), 4) for key in rows[0]}
    by_threshold = {f"{t:.2f}": round(float(np.mean(accs)), 4) for t, accs in sweep.items()}
    report = {"config": str(args.config), "held_out": sorted(HELD_OUT), **mean}
    report["accuracy_by_threshold"] = by_threshold
    report["best_threshold"] = max(by_threshold, key=by_threshold.__getitem__)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
