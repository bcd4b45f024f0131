"""Load: ingest and curate a batch of phantom exams on the thread runner and on Dask with one
and two worker processes; cases per hour and peak memory.

Usage: .venv/bin/python benchmarks/bench_load.py [--cases 50] [--size 256 384] [--frames 4]
       [--work runs/bench_load]

Each configuration ingests the same exams into a fresh store and curates them to review gate 1
(stages 2-7), through the CLI. The thread runner runs in a child process (its peak RSS is that
process's); Dask runs on a LocalCluster of worker processes with a 2 GiB limit each, started
here, whose peak RSS is read from every worker after the run. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ANGIOFLOW = str(Path(sys.executable).parent / "angioflow")


def run_angioflow(arguments: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Seconds and peak RSS (GB) of one CLI run in a child process."""
    began = time.perf_counter()
    process = subprocess.Popen([ANGIOFLOW, *arguments], env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"angioflow {' '.join(arguments[:1])} failed")
    return time.perf_counter() - began, usage.ru_maxrss / 2**20


def _worker_peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--size", type=int, nargs=2, default=(256, 384))
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--work", type=Path, default=Path("runs/bench_load"))
    args = parser.parse_args()

    from angioflow.pipeline.phantom import PhantomConfig, write_phantom_set
    from distributed import Client, LocalCluster
    from results import publish

    shutil.rmtree(args.work, ignore_errors=True)
    raw = args.work / "raw"
    config = PhantomConfig(size=tuple(args.size), n_frames=args.frames)
    write_phantom_set(raw, n=args.cases, seed=4242, config=config)
    env = os.environ | {"ANGIOFLOW_SECRET": "bench-load-secret-0123456789"}
    results: dict[str, dict[str, float]] = {}

    store = args.work / "store_thread"
    ingest_s, ingest_gb = run_angioflow(["ingest", str(raw), "--store", str(store)], env)
    curate_s, curate_gb = run_angioflow(["curate", "--store", str(store)], env)
    results["thread"] = {
        "ingest_s": round(ingest_s, 1),
        "curate_s": round(curate_s, 1),
        "cases_per_hour": round(args.cases * 3600 / (ingest_s + curate_s), 1),
        "peak_rss_gb": round(max(ingest_gb, curate_gb), 2),
    }
    for workers in (1, 2):
        store = args.work / f"store_dask{workers}"
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        worker_env = {name: threads for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        # workers pseudonymise with the key of the store's users (docs/operations.md)
        worker_env["ANGIOFLOW_SECRET"] = env["ANGIOFLOW_SECRET"]
        with (
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                memory_limit="2GiB",
                dashboard_address=None,
                env=worker_env,
            ) as cluster,
            Client(cluster) as client,
        ):
            dask = ["--runner", "dask", "--dask-address", cluster.scheduler_address]
            ingest_s, _ = run_angioflow(["ingest", str(raw), "--store", str(store), *dask], env)
            curate_s, client_gb = run_angioflow(["curate", "--store", str(store), *dask], env)
            worker_gb = max(client.run(_worker_peak_rss_gb).values())
        results[f"dask_{workers}_workers"] = {
            "ingest_s": round(ingest_s, 1),
            "curate_s": round(curate_s, 1),
            "cases_per_hour": round(args.cases * 3600 / (ingest_s + curate_s), 1),
            "peak_rss_per_worker_gb": round(worker_gb, 2),
            "flow_process_peak_rss_gb": round(client_gb, 2),
        }
    publish(
        "load",
        {
            "cases": args.cases,
            "size": list(args.size),
            "frames": args.frames,
            "cpu_count": os.cpu_count(),
            **results,
        },
    )


if __name__ == "__main__":
    main()
