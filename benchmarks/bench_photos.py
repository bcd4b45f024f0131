"""Synthetic photos against real ones: every acceptance measure of the photos, per generator.

Usage: .venv/bin/python benchmarks/bench_photos.py [--n 64] [--seed S] [--pix2pix DIR ...]
       [--figure docs/generation/photos.png]

Each pix2pixHD weights folder (default: the shipped one) draws photos for the same --n masks of
the shipped mask cascade (seed --seed, drawn afresh when not given, and recorded), enlarged by
the shipped EDSR to 1024 px, and written with `generate_set`; the phantom's rule-based photos
(`write_phantom_photo_set`, their own masks) are the baseline arm. Every set is scored with
`angioflow evaluate`'s measures with its default reference: vessel recovery Dice, vessel-CNN
Fréchet distance, KID and precision/recall against the RITE and LES-AV training photos (the
sources of the held-out photos; HRF-AV's own photos are 31 away from them), and the classifier
two-sample test against held-out real photos (RITE test = DRIVE test, LES-AV test). Two real
rows read the numbers against their floors: the held-out test photos scored as if they were a
set (Fréchet distance, precision/recall), and the training photos of RITE and LES-AV in the two-
sample test (real vs real). Seconds per 1024 px pair (mask + photo + EDSR) on 2 threads. Prints
one JSON object.
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from angioflow.flows.catalog import find_catalog, public_data_folder
from results import publish

DATA = public_data_folder(find_catalog())  # the catalog's public_datasets
REFERENCE = ("rite", "les-av")  # training splits: `angioflow evaluate`'s default reference
HELD_OUT = ("rite", "les-av")  # test splits, never trained on


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--seed", type=int, default=None, help="mask seed (default: drawn)")
    parser.add_argument("--pix2pix", type=Path, action="append", help="weights folder(s)")
    parser.add_argument("--figure", type=Path, default=None)
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"bench_photos needs the public datasets at {DATA}")

    from angioflow.flows.evaluation import load_real_reference
    from angioflow.models.pix2pixhd import DEFAULT_PIX2PIX_WEIGHTS

    torch.set_num_threads(2)
    seed = secrets.randbelow(10**6) if args.seed is None else args.seed
    weights = args.pix2pix or [DEFAULT_PIX2PIX_WEIGHTS]
    arms: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        sets: dict[str, Path] = {}
        for folder in weights:
            shipped = folder.resolve() == DEFAULT_PIX2PIX_WEIGHTS.resolve()
            name = "shipped" if shipped else folder.resolve().parent.name
            sets[name], arms[name] = _learned_set(folder, args.n, seed, Path(scratch) / name)
        sets["phantom"], arms["phantom"] = _phantom_set(args.n, seed, Path(scratch) / "phantom")
        # read once: every arm is scored against the same real photos
        held_out = load_real_reference(1024, data=DATA, datasets=HELD_OUT, split="test")
        reference = load_real_reference(1024, data=DATA, datasets=REFERENCE)
        for name, path in sets.items():
            arms[name] |= _scores(path, reference, held_out)
        real = {
            "held_out_as_a_set": _realism_of_real(reference, held_out),
            "training_vs_held_out_two_sample": _two_sample_of_real(reference, held_out),
        }
        if args.figure is not None:
            _figure(sets, held_out.photos, args.figure)
    publish(
        "photos",
        {
            "samples": args.n,
            "mask_seed": seed,
            "reference": list(REFERENCE),
            "held_out": list(HELD_OUT),
            "arms": arms,
            "real": real,
        },
    )


def _learned_set(weights: Path, n: int, seed: int, out: Path) -> tuple[Path, dict]:
    from angioflow.models.generation import Generators, SetRequest, generate_set

    generators = Generators.load(pix2pix=weights)
    began = time.perf_counter()
    generate_set(generators, SetRequest(n=n, seed=seed), out.with_suffix(".h5"))
    seconds = (time.perf_counter() - began) / n
    return out.with_suffix(".h5"), {
        "pix2pixhd_size": generators.pix2pix.config.image_size,
        "seconds_per_pair": round(seconds, 2),
        "pix2pixhd_sha256": generators.sha256["pix2pixhd"],
    }


def _phantom_set(n: int, seed: int, out: Path) -> tuple[Path, dict]:
    from angioflow.models.generation import write_phantom_photo_set

    began = time.perf_counter()
    write_phantom_photo_set(out.with_suffix(".h5"), n, size=1024, seed=seed)
    return out.with_suffix(".h5"), {"seconds_per_pair": round((time.perf_counter() - began) / n, 2)}


def _scores(path: Path, reference, held_out) -> dict:  # noqa: ANN001 - RealReference
    """`angioflow evaluate realism`'s measures and vessel recovery of one set."""
    from angioflow.flows.evaluation import evaluate_synthetic, read_synthetic

    result = evaluate_synthetic(
        read_synthetic(path),
        reference,
        name=path.name,
        measures=("recovery", "realism", "two_sample"),
        held_out=held_out,
    )
    return {
        "recovery": result["recovery"],
        "realism": result["realism"]["vessel_cnn"],
        "two_sample": result["two_sample"],
    }


def _realism_of_real(reference, held_out) -> dict:  # noqa: ANN001 - RealReference
    """The held-out real photos' distances to the training reference: what real photos of
    the same sources, never trained on, score."""
    from angioflow.flows.evaluation import realism_distances
    from angioflow.models.vessel import VesselFeatureExtractor, VesselSegmenter

    segmenter = VesselSegmenter.load()
    features = VesselFeatureExtractor(segmenter.model, segmenter.weights_sha256)
    return realism_distances(
        features(reference.photos, reference.fov), features(held_out.photos, held_out.fov)
    )


def _two_sample_of_real(training, held_out) -> dict:  # noqa: ANN001
    from angioflow.models.two_sample import classifier_two_sample_test

    return classifier_two_sample_test(
        held_out.photos, held_out.fov, training.photos, training.fov
    ).as_dict()


def _figure(sets: dict[str, Path], real: np.ndarray, path: Path) -> None:
    import h5py
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {}
    for name, set_file in sets.items():
        with h5py.File(set_file, "r") as handle:
            rows[name] = handle["images"][:4]
    rows["real (held out: DRIVE / LES-AV test)"] = real[[0, 1, -2, -1]]
    figure, axes = plt.subplots(len(rows), 4, figsize=(12, 3 * len(rows)))
    for axes_row, (name, images) in zip(axes, rows.items(), strict=True):
        for axis, image in zip(axes_row, images, strict=True):
            axis.imshow(image)
            axis.axis("off")
        axes_row[0].set_title(name, loc="left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)


if __name__ == "__main__":
    main()
