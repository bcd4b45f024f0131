"""`angioflow demo` end to end: its wall time and peak memory (targets < 10 min, < 3 GB).

Usage: .venv/bin/python benchmarks/bench_demo.py [--n 3]

Runs ``angioflow demo`` (phantom exams of 384x576 with 5 FA frames through every stage to the
HTML report) in a child process writing to a temporary folder, and reports the child's wall
seconds and peak RSS. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import os
import tempfile

from bench_load import run_angioflow
from results import publish


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        seconds, peak_gb = run_angioflow(
            ["demo", "--out", f"{scratch}/demo", "--n", str(args.n)], dict(os.environ)
        )
    publish(
        "demo",
        {"exams": args.n, "seconds": round(seconds, 1), "peak_rss_gb": round(peak_gb, 2)},
    )


if __name__ == "__main__":
    main()
