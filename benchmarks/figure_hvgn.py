"""Figure for the README: A/V labels of a RITE test image and a phantom photo.

Usage: .venv/bin/python benchmarks/figure_hvgn.py [--data ../shared/data] [--out docs/hvgn]

Rows: RITE test image 01 (when ../shared/data has RITE) and an unseen phantom photo. Columns:
the photo, the ground truth, the HVGN labels with segment voting, and the errors (white:
wrong, grey: right, on the truth's artery and vein pixels).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from angioflow.flows.catalog import find_catalog, public_data_folder
from angioflow.models.hvgn import AVLabeller  # noqa: E402
from angioflow.pipeline.datasets import LabelledImage, load_dataset  # noqa: E402
from angioflow.pipeline.metrics import av_scores  # noqa: E402
from angioflow.pipeline.phantom import PhantomConfig, case_seed, generate_case  # noqa: E402
from angioflow.pipeline.qc import av_to_rgb  # noqa: E402
from angioflow.pipeline.vessel_graph import av_labels  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=public_data_folder(find_catalog()))
    parser.add_argument("--out", type=Path, default=Path("docs/hvgn"))
    args = parser.parse_args()
    labeller = AVLabeller.load()
    records = []
    if (args.data / "RITE").is_dir():
        records.append(load_dataset(args.data, "rite", "test", limit=1)[0])
    case = generate_case(case_seed(8200, 0), PhantomConfig(size=(584, 876)))
    truth = (case.av[..., 0] * 1 + case.av[..., 1] * 2).astype(np.uint8)
    records.append(LabelledImage("phantom (unseen)", case.fundus, case.vessel, case.fov, truth))
    figure, axes = plt.subplots(len(records), 4, figsize=(16, 4.2 * len(records)), squeeze=False)
    for row, record in zip(axes, records, strict=True):
        probability = labeller.artery_probability(record.image, record.vessel, fov=record.fov)
        labels = av_labels(probability, record.vessel)
        scored = (record.av == 1) | (record.av == 2)
        errors = np.zeros(labels.shape, np.uint8)
        errors[scored] = 90
        errors[scored & (labels != record.av)] = 255
        accuracy = av_scores(labels, record.av).accuracy
        panels = [
            (record.image, record.name),
            (av_to_rgb(record.av), "ground truth"),
            (av_to_rgb(labels), f"HVGN + segment voting (accuracy {accuracy:.3f})"),
            (errors, "errors (white)"),
        ]
        for axis, (picture, title) in zip(row, panels, strict=True):
            axis.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
            axis.set_title(title)
            axis.axis("off")
    figure.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / "av_labels.png"
    figure.savefig(target, dpi=80)
    print(target)


if __name__ == "__main__":
    main()
