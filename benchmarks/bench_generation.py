"""Synthetic sets from the shipped generators: are the masks the images' ground truth?

Usage: .venv/bin/python benchmarks/bench_generation.py [--n 16]
       [--figure docs/generation/samples.png] [--ddpm DIR] [--pix2pix DIR] [--edsr DIR]

Generates --n samples (mask cascade, DPM-Solver 20 steps -> pix2pixHD -> EDSR x4, seed 0), then
segments every generated photo with the shipped vessel CNN and reports the Dice of its 0.5
threshold against the generated vessel mask (goal >= 0.7), with seconds per sample. The same
Dice is measured for photos drawn from the 20 RITE test A/V masks at the output size (held out
from every generator's training), which tells the mask-to-photo half apart from the mask
cascade, beside its ceiling: the real RITE test photos at pix2pixHD's size (and at twice it)
enlarged by the same EDSR, scored against the same masks. With
--figure: generated masks, their photos and real photos (DRIVE training) side by side.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch
from angioflow.flows.catalog import find_catalog, public_data_folder
from results import publish

DATA = public_data_folder(find_catalog())  # the catalog's public_datasets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--figure", type=Path, default=None)
    for model in ("ddpm", "pix2pix", "edsr"):
        parser.add_argument(f"--{model}", type=Path, help="weights folder (default: shipped)")
    args = parser.parse_args()

    from angioflow.flows.evaluation import evaluate_synthetic, read_synthetic
    from angioflow.models.generation import Generators, SetRequest, generate_set

    torch.set_num_threads(2)
    chosen = {m: getattr(args, m) for m in ("ddpm", "pix2pix", "edsr") if getattr(args, m)}
    generators = Generators.load(**chosen)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "synthetic.h5"
        began = time.perf_counter()
        generate_set(generators, SetRequest(n=args.n, seed=0), out)
        seconds = (time.perf_counter() - began) / args.n
        metrics = evaluate_synthetic(read_synthetic(out), None, name=out.name)["recovery"]
        result = {
            "samples": args.n,
            "size": generators.output_size,
            "seconds_per_sample": round(seconds, 2),
            **{f"vessel_recovery_{k}": round(v, 4) for k, v in metrics.items()},
            "weights_sha256": generators.sha256,
        }
        if DATA.is_dir():
            result["rite_test_masks"] = _held_out_recovery(generators)
        publish("generation", result)
        if args.figure is not None:
            _figure(out, args.figure)


def _held_out_recovery(generators) -> dict[str, dict[str, float]]:  # noqa: ANN001
    """Vessel recovery for photos drawn from the RITE test A/V masks at the output size, beside
    the ceiling of the chain: the real test photos shrunk to pix2pixHD's size (and to twice it)
    and enlarged by the same EDSR, scored against the same masks."""
    from angioflow.models.edsr import upscale
    from angioflow.models.generation import draw_photos
    from angioflow.models.pix2pixhd import make_pair
    from angioflow.pipeline.datasets import load_dataset
    from angioflow.pipeline.mask_structure import labels_from_channels, resize_av_labels

    records = load_dataset(DATA, "rite", "test")
    size, out = generators.pix2pix.config.image_size, generators.output_size
    labels = np.stack(
        [
            labels_from_channels(resize_av_labels(r.av, r.fov, out, coverage=0.5) > 0)
            for r in records
        ]
    )
    drawn = draw_photos(generators, labels)
    result = {"generated_photos": _recovery(drawn["images"], labels)}
    for side in (size, 2 * size):
        photos = [make_pair(r.image, r.av, r.fov, side)[1] for r in records]
        real = np.stack([upscale(generators.edsr, photo) for photo in photos])
        if real.shape[1] != out:  # twice pix2pixHD's size, enlarged: shrink to the masks
            real = np.stack([cv2.resize(p, (out, out), interpolation=cv2.INTER_AREA) for p in real])
        result[f"real_photos_at_{side}px"] = _recovery(real, labels)
    return result


def _recovery(images: np.ndarray, av: np.ndarray) -> dict[str, float]:
    """Vessel CNN Dice/AUC of each photo against its A/V mask's vessels, inside the disc."""
    from angioflow.flows.evaluation import evaluate_synthetic
    from angioflow.models.generation import field_of_view

    fov = np.repeat(field_of_view(images.shape[1])[None] > 0, len(images), axis=0)
    sample = {"images": images, "av": av, "vessel": (av > 0).astype(np.uint8), "fov": fov}
    metrics = evaluate_synthetic(sample, None, name="held-out", measures=("recovery",))
    return {"masks": len(images), **{k: round(v, 4) for k, v in metrics["recovery"].items()}}


def _figure(path: Path, figure_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from angioflow.pipeline.datasets import load_dataset
    from angioflow.pipeline.qc import av_to_rgb

    with h5py.File(path) as handle:
        images, av = handle["images"][:4], handle["av"][:4]
    real = load_dataset(DATA, "rite", "training", limit=4) if DATA.is_dir() else []
    rows = 3 if real else 2
    figure, axes = plt.subplots(rows, 4, figsize=(12, 3 * rows))
    for column in range(4):
        axes[0, column].imshow(av_to_rgb(av[column]))
        axes[1, column].imshow(images[column])
        if real:
            axes[2, column].imshow(real[column].image)
    for axis in axes.flat:
        axis.axis("off")
    axes[0, 0].set_title("generated A/V masks (ground truth)", loc="left")
    axes[1, 0].set_title("their generated photos (pix2pixHD + EDSR x4)", loc="left")
    if real:
        axes[2, 0].set_title("real photos (RITE training)", loc="left")
    figure.tight_layout()
    figure_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(figure_path, dpi=90)


if __name__ == "__main__":
    main()
