"""Artery/vein labelling benchmark: accuracy on RITE test, LES-AV test and phantom cases; speed.

Usage: .venv/bin/python benchmarks/bench_hvgn.py [--weights DIR] [--data ../shared/data]

Every image is labelled from its ground-truth vessel mask (the approved mask in the pipeline),
then scored on the truth's artery and vein pixels (crossings and uncertain pixels excluded).
Prints one JSON object:
- rite_test / les_av_test / phantom: mean accuracy, artery and vein sensitivity, for the graph
  network with segment voting and mirror averaging (shipped setting), without the mirror,
  without voting, and the CNN head alone.
  Targets: RITE test accuracy >= 0.92 (goal 0.95), phantom >= 0.95.
- seconds: labelling one 565x584 DRIVE image and one 3504x2336 HRF image (< 2 s, < 60 s).
- hrf_native_graph: the 5x5 pixel graph of a full-resolution HRF mask, its size, build time and
  memory (must fit in 8 GB), and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

import torch
from angioflow.flows.catalog import find_catalog, public_data_folder
from angioflow.models.hvgn import DEFAULT_AV_WEIGHTS, AVLabeller
from angioflow.pipeline.datasets import LabelledImage, load_dataset
from angioflow.pipeline.metrics import av_scores
from angioflow.pipeline.phantom import PhantomConfig, case_seed, generate_case
from angioflow.pipeline.vessel_graph import av_labels, coarsen, pixel_graph
from results import publish

# No test or training run uses these seeds; 8300+ (--phantom-seed 8300) is the validation set
# that chose between training stages, 8200+ the reported one.
PHANTOM_SEED = 8200
VARIANTS = {
    "graph_with_segment_voting": {"head": "graph", "consistency": True},
    "graph_with_segment_voting_no_mirror": {"head": "graph", "consistency": True, "flips": False},
    "graph": {"head": "graph", "consistency": False},
    "cnn_head_only": {"head": "cnn", "consistency": False},
}


def _score(labeller: AVLabeller, records: list[LabelledImage]) -> dict:
    results = {}
    for variant, options in VARIANTS.items():
        rows = []
        for record in records:
            probability = labeller.artery_probability(
                record.image, record.vessel, fov=record.fov, **options
            )
            rows.append(av_scores(av_labels(probability, record.vessel), record.av).as_dict())
        results[variant] = {
            name: round(statistics.mean(r[name] for r in rows), 4)
            for name in ("accuracy", "artery_sensitivity", "vein_sensitivity")
        }
        results[variant]["accuracy_per_image"] = [round(r["accuracy"], 4) for r in rows]
    return {"images": len(records), **results}


def _phantom_records(n: int, seed: int) -> list[LabelledImage]:
    records = []
    for index in range(n):
        case = generate_case(case_seed(seed, index), PhantomConfig(size=(584, 876)))
        av = case.av_labels
        records.append(LabelledImage(f"phantom/{index}", case.fundus, case.vessel, case.fov, av))
    return records


def _hrf_native_graph(record: LabelledImage) -> dict:
    started = time.perf_counter()
    graph = pixel_graph(record.vessel, window=5)
    level = coarsen(graph.coords, graph.edge_index, cell=2)
    seconds = time.perf_counter() - started
    return {
        "image": record.name,
        "size": list(record.vessel.shape[::-1]),
        "nodes": graph.num_nodes,
        "edges": int(graph.edge_index.shape[1]),
        "first_coarse_level_nodes": level.num_nodes,
        "seconds": round(seconds, 2),
        "graph_mb": round((graph.coords.nbytes + graph.edge_index.nbytes) / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=Path, default=DEFAULT_AV_WEIGHTS)
    parser.add_argument("--data", type=Path, default=public_data_folder(find_catalog()))
    parser.add_argument("--phantom-cases", type=int, default=5)
    parser.add_argument("--phantom-seed", type=int, default=PHANTOM_SEED)
    parser.add_argument(
        "--phantom-only", action="store_true", help="score only the phantom photos (validation)"
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    labeller = AVLabeller.load(args.weights)
    result: dict = {"weights_sha256": labeller.weights_sha256}
    result["phantom"] = _score(labeller, _phantom_records(args.phantom_cases, args.phantom_seed))
    if args.phantom_only:  # validation: printed, not a published result
        print(json.dumps(result, indent=2))
        return
    rite = load_dataset(args.data, "rite", "test") if (args.data / "RITE").is_dir() else []
    if rite:
        result["rite_test"] = _score(labeller, rite)
    if (args.data / "LES-AV").is_dir():
        result["les_av_test"] = _score(labeller, load_dataset(args.data, "les-av", "test"))
    seconds = {}
    if rite:
        labeller.artery_probability(rite[0].image, rite[0].vessel)  # warm-up
        started = time.perf_counter()
        labeller.artery_probability(rite[0].image, rite[0].vessel)
        seconds["drive_565x584"] = round(time.perf_counter() - started, 2)
    if (args.data / "HRF-AV").is_dir():
        hrf = load_dataset(args.data, "hrf-av", "training", limit=1)[0]
        started = time.perf_counter()
        labeller.artery_probability(hrf.image, hrf.vessel)
        seconds["hrf_3504x2336"] = round(time.perf_counter() - started, 2)
        result["hrf_native_graph"] = _hrf_native_graph(hrf)
    result["seconds"] = seconds
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    publish("hvgn", result)


if __name__ == "__main__":
    main()
