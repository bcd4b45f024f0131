"""Do synthetic sets help a vessel CNN? ``angioflow evaluate downstream`` timed and published.

Usage: .venv/bin/python benchmarks/bench_downstream.py [--work runs/bench_downstream]
       [--config configs/downstream.yaml]

Runs the shipped experiment (configs/downstream.yaml: the vessel CNN trained on DRIVE training
alone, with 20 and 40 synthetic samples added, and on 40 synthetic alone, two seeds each, scored
on DRIVE test) in --work, which is emptied first so every setting is trained afresh. Reports
each setting's mean AUC, accuracy and F1 over the seeds, the largest spread between seeds, the
wall minutes and the peak RSS. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import time
from pathlib import Path

from results import publish


def _key(setting: str, synthetic: int) -> str:
    """The result file's name of a setting: real_only, real_plus_<k>, synthetic_<k>."""
    if not synthetic:
        return "real_only"
    return f"real_plus_{synthetic}" if setting.startswith("real") else f"synthetic_{synthetic}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path, default=Path("runs/bench_downstream"))
    parser.add_argument("--config", type=Path, default=None)
    args = parser.parse_args()

    from angioflow.flows.downstream import downstream_experiment

    shutil.rmtree(args.work, ignore_errors=True)
    began = time.perf_counter()
    run = downstream_experiment(args.work, config=args.config)
    minutes = (time.perf_counter() - began) / 60
    summary = run.results["summary"]
    result = {
        _key(name, row["synthetic"]): {
            metric: round(row[f"{metric}_mean"], 4) for metric in ("auc", "accuracy", "f1")
        }
        for name, row in summary.items()
    }
    spread = max(row[f"{m}_std"] for row in summary.values() for m in ("auc", "accuracy", "f1"))
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    publish(
        "downstream",
        {
            **result,
            "largest_seed_spread": round(spread, 3),  # the largest standard deviation
            "minutes": round(minutes, 2),
            "peak_rss_gb": round(peak_gb, 2),
        },
    )


if __name__ == "__main__":
    main()
