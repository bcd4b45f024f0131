"""Figure for the README: A/V labels of a RITE test image and a phantom photo.

Usage: .venv/bin/python benchmarks/figure_hvgn.py [--data ../shared/data] [--out docs/hvgn]

Rows: RITE test image 01 (when ../shared/data has RITE) and an unseen phantom photo. Columns:
the photo, the ground truth, the HVGN labels with segment voting, and the errors (white:
wrong, grey: right, on the truth's artery and vein pixels).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from angioflow.models.hvgn import AVLabeller
from angioflow.pipeline.datasets import LabelledImage, load_dataset
from angioflow.pipeline.metrics import av_scores
from angioflow.pipeline.phantom import PhantomConfig, case_seed, generate_case
from angioflow.pipeline.qc import av_to_rgb
from angioflow.pipeline.vessel_graph import av_labels
from figures import figure_parser, plt, save_figure, show_panels


def main() -> None:
    args = figure_parser(__doc__, Path("docs/hvgn")).parse_args()
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
        show_panels(row, panels)
    save_figure(figure, args.out / "av_labels.png", dpi=80)


if __name__ == "__main__":
    main()
