"""Ingestion throughput: phantom exams of realistic size through the Prefect ingest flow.

Usage: .venv/bin/python benchmarks/bench_ingest.py [--cases 8] [--size 1024 1536] [--frames 10]

Prints one JSON object: wall seconds for the whole flow run (Prefect's temporary server start
included, measured separately), seconds per case, a re-run of the same source (every case
unchanged: the no-op path), and the store's size per case against the raw folders' size.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ANGIOFLOW_SECRET", "benchmark-secret-0123456789")


def _megabytes(folder: Path, pattern: str) -> float:
    return sum(p.stat().st_size for p in folder.rglob(pattern) if p.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--size", type=int, nargs=2, default=(1024, 1536))
    parser.add_argument("--frames", type=int, default=10)
    args = parser.parse_args()

    from angioflow.flows.ingest import ingest_flow
    from angioflow.pipeline.phantom import PhantomConfig, write_phantom_set
    from prefect.testing.utilities import prefect_test_harness
    from results import publish

    with tempfile.TemporaryDirectory() as scratch:
        source, store = Path(scratch) / "raw", Path(scratch) / "store"
        write_phantom_set(
            source,
            n=args.cases,
            seed=7,
            config=PhantomConfig(size=tuple(args.size), n_frames=args.frames),
        )
        raw_mb = _megabytes(source, "*.png")
        start = time.perf_counter()
        with prefect_test_harness(server_startup_timeout=120):
            server_s = time.perf_counter() - start
            start = time.perf_counter()
            first = ingest_flow(str(source), str(store))
            first_s = time.perf_counter() - start
            start = time.perf_counter()
            again = ingest_flow(str(source), str(store))
            again_s = time.perf_counter() - start
        publish(
            "ingest",
            {
                "cases": args.cases,
                "fundus_size": args.size,
                "frames": args.frames,
                "ingested": len(first["ingested"]),
                "unchanged_on_rerun": len(again["skipped"]),
                "prefect_server_start_s": round(server_s, 1),
                "ingest_s": round(first_s, 1),
                "per_case_s": round(first_s / args.cases, 2),
                "rerun_s": round(again_s, 1),
                "raw_png_mb_per_case": round(raw_mb / args.cases, 1),
                "store_mb_per_case": round(_megabytes(store / "cases", "*.h5") / args.cases, 1),
                "cpu_cores": os.cpu_count(),
            },
        )


if __name__ == "__main__":
    main()
