"""EDSR x4 against bicubic up-sampling on held-out real fundus photos.

Usage: .venv/bin/python benchmarks/bench_edsr.py [--weights models/weights/edsr]

Held-out photos: DRIVE test (20) and LES-AV test, never trained on. Each photo is cropped to its
field of view, down-sampled x4 (bicubic, antialiased: the training degradation) and brought
back to full size by EDSR (tiled) and by bicubic interpolation; PSNR is measured inside the
field of view (eroded by 8 px, the photo's rim), per photo and mean. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from angioflow.flows.catalog import find_catalog, public_data_folder
from PIL import Image
from results import publish
from scipy import ndimage

DATA = public_data_folder(find_catalog())  # the catalog's public_datasets


def psnr(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    """Peak signal-to-noise ratio (dB, peak 255) over the pixels of ``region``."""
    error = (a.astype(np.float64) - b.astype(np.float64))[region]
    return float(10 * np.log10(255.0**2 / np.mean(error**2)))


def against_bicubic(model, records) -> tuple[list[dict], list[float]]:  # noqa: ANN001
    """Per photo: PSNR of EDSR and of bicubic up-sampling of its x4 down-sample, inside the
    FOV eroded by 8 px; and EDSR's seconds per photo."""
    from angioflow.models.edsr import downsample, upscale

    scale = model.config.scale
    rows, seconds = [], []
    for record in records:
        r, c = np.nonzero(record.fov)
        top, left = r.min(), c.min()
        height = (r.max() + 1 - top) // scale * scale
        width = (c.max() + 1 - left) // scale * scale
        high = record.image[top : top + height, left : left + width]
        region = ndimage.binary_erosion(
            record.fov[top : top + height, left : left + width], iterations=8
        )
        low = downsample(high, scale)
        began = time.perf_counter()
        sharp = upscale(model, low)
        seconds.append(time.perf_counter() - began)
        bicubic = np.asarray(Image.fromarray(low).resize((width, height), Image.Resampling.BICUBIC))
        rows.append(
            {
                "image": record.name,
                "edsr_db": round(psnr(sharp, high, region), 2),
                "bicubic_db": round(psnr(bicubic, high, region), 2),
            }
        )
    return rows, seconds


def per_dataset(rows: list[dict]) -> dict[str, dict]:
    """Mean EDSR and bicubic PSNR and the gain, per dataset (the part of the name before '/')."""
    summary = {}
    for name in dict.fromkeys(row["image"].split("/")[0] for row in rows):
        subset = [row for row in rows if row["image"].startswith(name + "/")]
        edsr = float(np.mean([row["edsr_db"] for row in subset]))
        bicubic = float(np.mean([row["bicubic_db"] for row in subset]))
        summary[name] = {
            "images": len(subset),
            "edsr_psnr_db": round(edsr, 2),
            "bicubic_psnr_db": round(bicubic, 2),
            "gain_db": round(edsr - bicubic, 2),
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} is absent: the benchmark needs DRIVE and LES-AV test photos")

    from angioflow.models.edsr import DEFAULT_EDSR_WEIGHTS, EDSR
    from angioflow.pipeline.datasets import load_dataset

    torch.set_num_threads(args.threads)
    model = EDSR.load(args.weights or DEFAULT_EDSR_WEIGHTS)
    records = [r for name in ("drive", "les-av") for r in load_dataset(DATA, name, "test")]
    rows, seconds = against_bicubic(model, records)
    result = {
        "weights": str(args.weights or DEFAULT_EDSR_WEIGHTS),
        "model": model.config.model_dump(),
    }
    result.update(per_dataset(rows))
    result["seconds_per_photo"] = round(float(np.mean(seconds)), 2)
    result["per_image"] = rows
    publish("edsr", result)


if __name__ == "__main__":
    main()
