"""Figure: shipped vessel model on real FFA frames, a phantom FA frame and a DRIVE test photo.

Usage: .venv/bin/python benchmarks/figure_vessel.py [--data DIR] [--out PNG]
"""

from __future__ import annotations

from pathlib import Path

from angioflow.models.vessel import VesselSegmenter, phantom_fa_frames
from angioflow.pipeline.datasets import load_dataset
from angioflow.pipeline.io import as_fa_frame, read_image
from figures import figure_parser, plt, save_figure


def main() -> None:
    args = figure_parser(__doc__, Path("docs/vessel/examples.png")).parse_args()
    segmenter = VesselSegmenter.load()
    phases = args.data / "FFA" / "origin_data" / "01.phase_identification"
    ffa = [
        sorted((phases / phase).glob("*.jpg"))[i]
        for phase, i in (
            ("arterial_phase", 0),
            ("arterial_phase", 5),
            ("venous_phase", 0),
            ("venous_phase", 7),
        )
    ]
    panels = []
    for path in ffa:
        frame = as_fa_frame(read_image(path))
        panels.append(
            (
                f"real FFA {path.parent.name.split('_')[0]} {path.stem}",
                frame,
                segmenter.segment(frame, modality="fa"),
            )
        )
    name, frame, truth, aperture = phantom_fa_frames(1, seed=1000)[0]
    panels.append(
        ("phantom FA (venous)", frame, segmenter.segment(frame, modality="fa", fov=aperture))
    )
    record = load_dataset(args.data, "drive", "test", limit=1)[0]
    panels.append(
        ("DRIVE test 01", record.image, segmenter.segment(record.image, modality="fundus"))
    )

    figure, axes = plt.subplots(2, len(panels), figsize=(3.2 * len(panels), 6.6))
    for column, (title, image, probability) in enumerate(panels):
        axes[0, column].imshow(image, cmap="gray")
        axes[0, column].set_title(title, fontsize=9)
        axes[1, column].imshow(probability, cmap="gray", vmin=0, vmax=1)
        axes[1, column].set_title("vessel probability", fontsize=9)
    for axis in axes.ravel():
        axis.axis("off")
    figure.suptitle(
        "angioflow vessel U-Net (one model, both modalities). Real FFA/DRIVE images: research "
        "use, not redistributed",
        fontsize=10,
    )
    save_figure(figure, args.out, dpi=90)


if __name__ == "__main__":
    main()
