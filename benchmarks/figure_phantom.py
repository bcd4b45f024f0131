"""Draw docs/phantom/comparison.png: a phantom exam beside real DRIVE, RITE and FFA images.

Usage: .venv/bin/python benchmarks/figure_phantom.py [--seed S] [--out PATH]
The real images are read from ../shared/data and only the rendered figure is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from angioflow.flows.catalog import find_catalog, public_data_folder
from angioflow.pipeline.phantom import PhantomConfig, generate_case  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = public_data_folder(find_catalog())
DRIVE_IMAGE = DATA / "DRIVE" / "training" / "images" / "21_training.tif"
RITE_LABEL = DATA / "RITE" / "training" / "1st_manual" / "21_training.png"
FFA = DATA / "FFA" / "origin_data" / "01.phase_identification"
FFA_ARTERIAL = FFA / "arterial_phase" / "00001.jpg"
FFA_VENOUS = FFA / "venous_phase" / "Normal0628.jpg"
FFA_VENOUS_2 = FFA / "venous_phase" / "Normal0393.jpg"
DRIVE_MANUAL = DATA / "DRIVE" / "training" / "1st_manual" / "21_manual1.gif"


def _av_rgb(av: np.ndarray) -> np.ndarray:
    """RITE colours: red artery, blue vein, green where they cross."""
    rgb = np.zeros((*av.shape[:2], 3), np.uint8)
    rgb[av[..., 0]] = (255, 0, 0)
    rgb[av[..., 1]] = (0, 0, 255)
    rgb[av[..., 0] & av[..., 1]] = (0, 255, 0)
    return rgb


def _first_frame(case, phases: tuple[str, ...], *, last: bool = False) -> int:
    indices = [
        k for k, p in enumerate(case.frame_phases) if p in phases and case.frame_defects[k] is None
    ]
    return indices[-1] if last else indices[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "phantom" / "comparison.png")
    args = parser.parse_args()
    real = (DRIVE_IMAGE, RITE_LABEL, DRIVE_MANUAL, FFA_ARTERIAL, FFA_VENOUS, FFA_VENOUS_2)
    missing = [p for p in real if not p.exists()]
    if missing:
        raise SystemExit(
            f"real data absent ({missing[0]}); the figure needs the catalog's public_datasets"
        )

    case = generate_case(args.seed, PhantomConfig(n_frames=10, eye="OS"))
    arterial = _first_frame(case, ("arterial",), last=True)
    venous = _first_frame(case, ("venous",))
    late = _first_frame(case, ("late",), last=True)
    panels = [
        (case.fundus, "phantom fundus"),
        (_av_rgb(case.av), "phantom A/V truth"),
        (case.vessel.astype(np.uint8) * 255, "phantom vessel truth"),
        (case.fa_frames[arterial], f"phantom FA {case.frame_times[arterial]:.0f} s (arterial)"),
        (case.fa_frames[venous], f"phantom FA {case.frame_times[venous]:.0f} s (venous)"),
        (case.fa_frames[late], f"phantom FA {case.frame_times[late]:.0f} s (late)"),
        (np.asarray(Image.open(DRIVE_IMAGE).convert("RGB")), "DRIVE 21 fundus"),
        (np.asarray(Image.open(RITE_LABEL).convert("RGB")), "RITE 21 A/V label"),
        (np.asarray(Image.open(DRIVE_MANUAL).convert("L")), "DRIVE 21 manual vessels"),
        (np.asarray(Image.open(FFA_ARTERIAL).convert("L")), "real FFA, arterial phase"),
        (np.asarray(Image.open(FFA_VENOUS).convert("L")), "real FFA, venous phase"),
        (np.asarray(Image.open(FFA_VENOUS_2).convert("L")), "real FFA, venous phase"),
    ]
    figure, axes = plt.subplots(2, 6, figsize=(24, 7.6))
    for axis, (image, title) in zip(axes.ravel(), panels, strict=True):
        axis.imshow(
            image,
            cmap="gray" if image.ndim == 2 else None,
            vmin=0,
            vmax=255 if image.dtype == np.uint8 else None,
        )
        axis.set_title(title, fontsize=11)
        axis.axis("off")
    figure.suptitle(
        f"angioflow phantom (seed {args.seed}, {case.eye}) - top; real data - bottom "
        "(DRIVE/RITE/FFA, research use, not redistributed)",
        fontsize=13,
    )
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=80)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
