"""Curation report of a 300-exam batch: its size and its load time in headless Chromium, beside
the report code of a baseline revision (the code before the batch report, by default).

Usage: .venv/bin/python benchmarks/bench_report.py [--cases 300] [--work DIR]
       [--baseline-rev c5909f3~1] [--no-baseline]

Curating 300 exams takes hours on 2 cores, so the batch is built in two steps, both printed:

1. Six phantom exams (seeds 9500+, used by no test) are drawn with different sizes, frame
   counts and difficulties (:data:`BASES`), ingested and curated for real (stages 2-7); the
   first three get their vessel mask approved by the benchmark (editor "bench, automatic") and
   are A/V-labelled for real (stage 9), and the first of those gets its A/V mask approved.
2. The store is filled up to ``--cases`` by copying those case files under new pseudonymous ids
   (file copy, then the file's ``case_id`` and ``patient_pseudonym`` attributes rewritten and
   the file resealed; the store reads nothing else of the name). Clones of one base have
   identical pictures and QC figures. Then, through the store's own API or the file system, a
   seeded 4 % of the cases get a recorded stage error (failed), 2 % of those at vessel review
   are rejected by a reviewer, and 1 % have their file truncated (unreadable).

The report is written by :func:`flows.reports.curation_report`; the baseline report by the same
function of ``--baseline-rev``, where the report was one module, flows/reports.py (``git show``
into a temporary module). Load time: Chromium's Performance API, navigation start to the end of
the load event, median of 3 loads. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from angioflow.pipeline.casestore import CaseStore, MaskKind, Stage
from angioflow.pipeline.casestore._file import seal
from angioflow.pipeline.phantom import PhantomConfig, case_seed, generate_case, write_case
from results import publish

ROOT = Path(__file__).resolve().parents[1]
SEED = 9500
BASES = (
    PhantomConfig(size=(512, 768), n_frames=8),
    PhantomConfig(size=(384, 576), n_frames=5),
    PhantomConfig(size=(640, 960), n_frames=10),
    PhantomConfig(size=(512, 768), n_frames=6, bad_frame_probability=0.5),
    PhantomConfig(size=(512, 768), n_frames=8, max_rotation_deg=14.0),
    PhantomConfig(size=(384, 576), n_frames=4, noise_sigma=0.05),
)
EDITOR = "bench, automatic"
FAILED_SHARE, REJECTED_SHARE, UNREADABLE_SHARE = 0.04, 0.02, 0.01


def _curate_bases(work: Path) -> CaseStore:
    from angioflow.flows.curate import curate_flow
    from angioflow.flows.ingest import ingest_flow

    for index, config in enumerate(BASES):
        case = generate_case(case_seed(SEED, index), config)
        write_case(case, work / "raw" / f"base_{index:02d}", patient_id=f"BENCH-{SEED}-{index:03d}")
    ingest_flow(str(work / "raw"), str(work / "store"))
    curate_flow(str(work / "store"))
    store = CaseStore(work / "store", create=False)
    for case_id in store.case_ids()[:3]:
        if store.summary(case_id).stage is Stage.VESSEL_REVIEW:
            store.approve(case_id, MaskKind.VESSEL, version=1, editor=EDITOR)
    curate_flow(str(work / "store"))
    first = store.case_ids()[0]
    if store.summary(first).stage is Stage.AV_REVIEW:
        store.approve(first, MaskKind.AV, version=1, editor=EDITOR)
    return store


def _clone(store: CaseStore, count: int) -> None:
    """Copies of the curated cases under new pseudonymous ids, up to ``count`` cases."""
    bases = store.case_ids()
    for index in range(count - len(bases)):
        digest = hashlib.sha256(f"bench-report-{index}".encode()).hexdigest()
        base = bases[index % len(bases)]
        eye = store.summary(base).eye
        case_id = f"p{digest[:12]}_{eye}_{digest[12:18]}"
        shutil.copyfile(store.path(base), store.path(case_id))
        with h5py.File(store.path(case_id), "r+") as handle:
            handle.attrs.update(case_id=case_id, patient_pseudonym=f"p{digest[:12]}")
            seal(handle)  # a renamed copy is a new case: its manifest names the new attributes


def _damage(store: CaseStore) -> dict[str, int]:
    rng = np.random.default_rng(SEED)
    ids = store.case_ids()
    chosen = rng.permutation(len(ids))
    n_failed, n_unreadable = round(FAILED_SHARE * len(ids)), round(UNREADABLE_SHARE * len(ids))
    failed = [ids[i] for i in chosen[:n_failed]]
    unreadable = [ids[i] for i in chosen[n_failed : n_failed + n_unreadable]]
    reviewable = [
        ids[i]
        for i in chosen[n_failed + n_unreadable :]
        if store.summary(ids[i]).stage is Stage.VESSEL_REVIEW
    ]
    rejected = reviewable[: round(REJECTED_SHARE * len(ids))]
    for case_id in failed:
        store.record_error(case_id, "registration", "registration: worker lost (MemoryError)")
    for case_id in rejected:
        store.reject(
            case_id, MaskKind.VESSEL, version=1, editor=EDITOR, reason="FA frames too blurred"
        )
    for case_id in unreadable:
        path = store.path(case_id)
        path.write_bytes(path.read_bytes()[:4096])
    return {"failed": len(failed), "rejected": len(rejected), "unreadable": len(unreadable)}


def _load_seconds(report: Path, loads: int = 3) -> list[float]:
    sys.path.insert(0, str(ROOT / "tests"))
    from support import headless_chromium

    driver = headless_chromium()
    driver.set_page_load_timeout(300)
    try:
        seconds = []
        for _ in range(loads):
            driver.get("about:blank")
            driver.get(report.resolve().as_uri())
            timing = driver.execute_script(
                "const n = performance.getEntriesByType('navigation')[0];"
                "return [n.startTime, n.loadEventEnd];"
            )
            seconds.append(round((timing[1] - timing[0]) / 1000, 2))
        return seconds
    finally:
        driver.quit()


def _baseline_module(revision: str, folder: Path):  # noqa: ANN202 - a module
    """The report code of ``revision`` as importable modules ``baseline_html`` and
    ``baseline_reports`` in ``folder``."""

    def show(path: str) -> str:
        return subprocess.run(
            ["git", "show", f"{revision}:{path}"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def current_names(source: str) -> str:
        # Revisions before the angioflow package imported its top-level folders directly.
        return re.sub(r"\bfrom (flows|models|pipeline)\.", r"from angioflow.\1.", source)

    (folder / "baseline_html.py").write_text(current_names(show("flows/html.py")))
    (folder / "baseline_reports.py").write_text(
        current_names(
            show("flows/reports.py").replace("from flows.html import", "from baseline_html import")
        )
    )
    sys.path.insert(0, str(folder))
    return importlib.import_module("baseline_reports")


def _measure(curation_report, store: CaseStore, out: Path) -> dict[str, float]:  # noqa: ANN001
    started = time.perf_counter()
    report = curation_report(store, out)
    seconds = time.perf_counter() - started
    size = report.stat().st_size
    loads = _load_seconds(report)
    return {
        "size_mb": round(size / 1e6, 2),
        "kb_per_case": round(size / 1e3 / len(store.case_ids()), 1),
        "write_seconds": round(seconds, 1),
        "load_seconds": statistics.median(loads),
        "load_seconds_each": loads,
        "path": str(report),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--work", type=Path, default=None, help="kept when given")
    parser.add_argument("--baseline-rev", default="c5909f3~1")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("ANGIOFLOW_SECRET", "bench-report-secret-0123456789")

    from angioflow.flows.curation_qc import FLAG_KINDS, case_qc
    from angioflow.flows.reports import curation_report

    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        started = time.perf_counter()
        store = _curate_bases(work)
        curated = {case_id: str(store.summary(case_id).stage) for case_id in store.case_ids()}
        build_seconds = time.perf_counter() - started
        _clone(store, args.cases)
        damage = _damage(store)
        cases = [case_qc(store, case_id) for case_id in store.case_ids()]
        result = {
            "cases": len(cases),
            "base_exams": {
                "curated_for_real": len(curated),
                "stages": sorted(curated.values()),
                "seconds": round(build_seconds, 1),
                "configs": [
                    {"size": c.size, "n_frames": c.n_frames}
                    | {
                        k: getattr(c, k)
                        for k in ("bad_frame_probability", "max_rotation_deg", "noise_sigma")
                        if getattr(c, k) != getattr(PhantomConfig(), k)
                    }
                    for c in BASES
                ],
            },
            "damaged": damage,
            "flagged": sum(qc.flagged for qc in cases),
            "flagged_by_severity": {
                kind: sum(qc.severity == s for qc in cases) for s, kind in enumerate(FLAG_KINDS)
            },
            "report": _measure(curation_report, store, work / "report"),
        }
        if not args.no_baseline:
            baseline = _baseline_module(args.baseline_rev, Path(scratch))
            result["baseline_report"] = {"revision": args.baseline_rev} | _measure(
                baseline.curation_report, store, work / "baseline_report"
            )
        publish("report", result)


if __name__ == "__main__":
    main()
