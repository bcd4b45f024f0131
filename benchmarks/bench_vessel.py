"""Vessel segmentation benchmark: DRIVE test accuracy, phantom FA F1, and speed on 2 CPU cores.

Usage: .venv/bin/python benchmarks/bench_vessel.py [--weights DIR] [--data ../shared/data]

Prints one JSON object:
- drive_test: mean AUC, accuracy, sensitivity, specificity, F1, clDice over the 20 DRIVE test
  images (1st_manual, FOV masks), threshold 0.5, shipped weights. Targets AUC >= 0.975,
  accuracy >= 0.955. DRIVE test is never used for training or tuning.
- les_av_test: the same scores over the 11 LES-AV test images (reported, no target).
- phantom_fa: mean F1 / clDice on venous-phase FA frames of phantom exams whose seeds training
  never saw (target F1 >= 0.85), scored inside the FA aperture.
- phantom_fundus: mean F1 on phantom fundus photos (584x876, unseen seeds). The phantom's
  fine-vessel contrast is calibrated so that this matches the DRIVE test F1 (README, curation).
- seconds: median wall time of one 565x584 DRIVE image (target < 1 s) and one 3504x2336 HRF
  image (target < 20 s), including pre-processing; peak RSS of the process.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from angioflow.flows.catalog import find_catalog, public_data_folder
from angioflow.models.vessel import DEFAULT_WEIGHTS, VesselSegmenter, phantom_fa_frames
from angioflow.pipeline.datasets import LabelledImage, load_dataset
from angioflow.pipeline.metrics import vessel_scores
from angioflow.pipeline.phantom import PhantomConfig, case_seed, generate_case
from angioflow.pipeline.preprocess import fov_mask
from results import publish

# Seeds for phantom evaluation: far from the training seed (0), so no case is shared.
PHANTOM_EVAL_SEED = 1000
PHANTOM_FUNDUS_SEED = 9100


def _fundus_scores(
    segmenter: VesselSegmenter, images: list[LabelledImage], seconds: list[float]
) -> list[dict[str, float]]:
    """Each photo's scores at threshold 0.5 inside its FOV mask; its wall time appended to
    ``seconds``."""
    rows = []
    for image in images:
        start = time.perf_counter()
        probability = segmenter.segment(image.image, modality="fundus")
        seconds.append(time.perf_counter() - start)
        rows.append(vessel_scores(probability, image.vessel, fov=image.fov).as_dict())
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--data", type=Path, default=public_data_folder(find_catalog()))
    parser.add_argument("--phantom-cases", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(2)
    segmenter = VesselSegmenter.load(args.weights)

    drive_seconds: list[float] = []
    drive = _fundus_scores(segmenter, load_dataset(args.data, "drive", "test"), drive_seconds)
    les_av = _fundus_scores(segmenter, load_dataset(args.data, "les-av", "test"), [])

    phantom = []
    for _, frame, truth, aperture in phantom_fa_frames(args.phantom_cases, seed=PHANTOM_EVAL_SEED):
        probability = segmenter.segment(frame, modality="fa", fov=aperture)
        phantom.append(vessel_scores(probability, truth, fov=aperture).as_dict())

    phantom_fundus = []
    for index in range(4):
        case = generate_case(
            case_seed(PHANTOM_FUNDUS_SEED, index), PhantomConfig(size=(584, 876), n_frames=2)
        )
        fov = fov_mask(case.fundus, modality="fundus")
        probability = segmenter.segment(case.fundus, modality="fundus", fov=fov)
        phantom_fundus.append(vessel_scores(probability, case.vessel, fov=fov).as_dict())

    hrf = load_dataset(args.data, "hrf-av", "training", limit=1)[0]
    hrf_seconds = []
    for _ in range(2):
        start = time.perf_counter()
        segmenter.segment(hrf.image, modality="fundus")
        hrf_seconds.append(time.perf_counter() - start)

    def mean(rows: list[dict[str, float]]) -> dict[str, float]:
        return {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]}

    publish(
        "vessel",
        {
            "weights_sha256": segmenter.weights_sha256,
            "drive_test": {"n": len(drive), **mean(drive)},
            "les_av_test": {"n": len(les_av), **mean(les_av)},
            "phantom_fa": {"n": len(phantom), **mean(phantom)},
            "phantom_fundus": {"n": len(phantom_fundus), **mean(phantom_fundus)},
            "seconds": {
                "drive_565x584_median": round(statistics.median(drive_seconds), 3),
                "hrf_3504x2336_median": round(statistics.median(hrf_seconds), 3),
            },
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "threads": torch.get_num_threads(),
        },
    )


if __name__ == "__main__":
    main()
