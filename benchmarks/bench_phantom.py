"""Time phantom generation on one core: a 1024x1536 case with 10 FA frames (target < 10 s).

Usage: .venv/bin/python benchmarks/bench_phantom.py [--repeats N]
Prints one JSON object: median and min wall seconds per whole case, and what was measured.
"""

from __future__ import annotations

import os

# pin every numerical library to one thread before they are imported
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
from angioflow.pipeline.phantom import PhantomConfig, generate_case  # noqa: E402
from results import publish  # noqa: E402

TARGET_S = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    config = PhantomConfig(size=(1024, 1536), n_frames=10)
    seconds = []
    for seed in range(args.repeats):
        start = time.perf_counter()
        case = generate_case(seed, config)
        seconds.append(time.perf_counter() - start)
    publish(
        "phantom",
        {
            "benchmark": "generate_case",
            "size": list(config.size),
            "n_frames": config.n_frames,
            "threads": 1,
            "repeats": args.repeats,
            "median_s": round(statistics.median(seconds), 3),
            "min_s": round(min(seconds), 3),
            "target_s": TARGET_S,
            "meets_target": max(seconds) < TARGET_S,
            "landmarks_last_case": len(case.landmarks.kinds),
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
    )


if __name__ == "__main__":
    main()
