"""Every benchmark's result, printed and kept with where, when and how it was measured.

``publish(name, result)`` prints the result as one JSON object (as the benchmarks always did) and
writes it to ``docs/benchmarks/results/<name>.json`` with its provenance: the UTC date, the git
commit checked out and the tracked files changed from it, the command line that reproduces it,
the machine's cores and its load average before and after the run. benchmarks/render.py builds
docs/benchmarks.md from those files.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "benchmarks" / "results"
# A trial run (a short budget, another revision) writes its result here instead.
RESULTS_ELSEWHERE = "BENCH_RESULTS"


def _git(*arguments: str) -> str:
    return subprocess.run(
        ["git", *arguments], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.rstrip("\n")


def _checkout() -> dict:
    """The commit checked out and the tracked files edited from it (result files aside)."""
    changed = _git("status", "--porcelain", "--untracked-files=no").splitlines()
    return {
        "commit": _git("rev-parse", "--short=7", "HEAD"),
        "uncommitted": sorted(
            line[3:] for line in changed if not line[3:].startswith("docs/benchmarks/")
        ),
    }


def provenance() -> dict:
    """Where, when and how this run measured: the fields every result file carries."""
    script = Path(sys.argv[0]).resolve().relative_to(ROOT)
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        **_CHECKOUT,
        "command": shlex.join(["python", str(script), *sys.argv[1:]]),
        "machine": {
            "cores": os.cpu_count(),
            "processor": platform.machine(),
            "load_average_1min": {
                "start": round(_LOAD_AT_START[0], 2),
                "end": round(os.getloadavg()[0], 2),
            },
        },
        "wall_seconds": round(time.time() - _STARTED),
    }


# The code measured and the load when it started: taken when the benchmark imports this module.
_CHECKOUT = _checkout()
_LOAD_AT_START = os.getloadavg()
_STARTED = time.time()


def publish(name: str, result: dict) -> None:
    """Print ``result`` as JSON and write it with :func:`provenance` to ``<name>.json`` in
    docs/benchmarks/results, or in the folder the environment variable BENCH_RESULTS names."""
    print(json.dumps(result, indent=2))
    folder = Path(os.environ.get(RESULTS_ELSEWHERE, RESULTS))
    folder.mkdir(parents=True, exist_ok=True)
    document = {"benchmark": name, **provenance(), "result": result}
    (folder / f"{name}.json").write_text(json.dumps(document, indent=2) + "\n")
