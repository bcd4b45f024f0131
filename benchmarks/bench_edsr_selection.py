"""Choosing EDSR's global skip on validation photos, never on the test photos.

Usage: .venv/bin/python benchmarks/bench_edsr_selection.py [--steps 3000] [--work DIR]

Trains configs/edsr.yaml twice with the same seed and budget, once with the paper's skip (the
output added to the mean colour) and once with ``bicubic_skip`` (the output added to the bicubic
up-sampling of the input), on the training photos less a validation set: the last 4 DRIVE and
the last 2 LES-AV training photos. Both are then scored like bench_edsr.py (PSNR inside the FOV
against bicubic up-sampling) on that validation set. Prints one JSON object.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from angioflow.flows.settings_file import read_settings
from bench_edsr import DATA, against_bicubic, per_dataset
from results import publish

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "edsr.yaml"
HELD_OUT = {"drive": 4, "les-av": 2}  # the last photos of each training split, by name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--work", type=Path, default=Path("runs/edsr_selection"))
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} is absent: the benchmark needs the DRIVE and LES-AV photos")

    from angioflow.models.edsr import EDSRTrainingConfig, crop_to_fov, train_edsr
    from angioflow.pipeline.datasets import load_dataset

    base = read_settings(CONFIG)
    training, validation = [], []
    for name in base["datasets"]:
        records = load_dataset(DATA, name, "training")
        keep = len(records) - HELD_OUT.get(name, 0)
        training += records[:keep]
        validation += records[keep:]
    photos = [crop_to_fov(record.image, record.fov) for record in training]

    result: dict[str, object] = {
        "steps": args.steps,
        "training_photos": len(photos),
        "validation_photos": [record.name for record in validation],
    }
    for bicubic_skip in (False, True):
        values = {**base, "steps": args.steps}
        values["model"] = {**base["model"], "bicubic_skip": bicubic_skip}
        config = EDSRTrainingConfig(**values)
        out = args.work / ("bicubic_skip" if bicubic_skip else "mean_skip")
        model = train_edsr(config, photos, out)
        rows, _ = against_bicubic(model, validation)
        result[out.name] = per_dataset(rows)
    publish("edsr_selection", result)


if __name__ == "__main__":
    main()
