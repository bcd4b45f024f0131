"""`angioflow demo`: the whole job on phantom exams, ending in one HTML report.

phantom exams -> ingest -> curate (stages 2-7) -> automatic approval of the baseline vessel
masks, clearly marked as a demo (no clinician looked at them) -> A/V labelling (stage 9) ->
automatic approval of the A/V masks -> export -> synthetic set from the shipped small
generators -> evaluation -> report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from angioflow.flows.catalog import find_catalog, public_data_folder
from angioflow.flows.html import Page, write_page
from angioflow.flows.settings_file import SettingsFileError, load_settings
from angioflow.flows.store_views import StoreStatus, store_status
from angioflow.pipeline.casestore import CaseStore, MaskKind, Stage
from angioflow.pipeline.errors import AngioflowError
from angioflow.pipeline.phantom import PhantomConfig, write_phantom_set
from prefect import flow, get_run_logger

__all__ = [
    "DEMO_EDITOR",
    "DemoResult",
    "PhantomRequestError",
    "demo_flow",
    "run_demo",
    "write_phantom_exams",
]

DEMO_EDITOR = "DEMO automatic approval (no clinician review)"


class PhantomRequestError(AngioflowError, ValueError):
    """Phantom exams asked for with settings that cannot be met, or over existing files."""


def write_phantom_exams(
    out: Path,
    *,
    n: int = 4,
    seed: int = 0,
    size: tuple[int, int] = (512, 768),
    frames: int = 8,
    overwrite: bool = False,
) -> list[Path]:
    """Write ``n`` synthetic exams (raw case contract + ``truth/``) into ``out``; returns their
    folders. The same seed gives identical files.

    Raises
    ------
    PhantomRequestError
        Settings out of range, or a case folder already holding files (without
        ``overwrite``).
    """
    try:
        config = load_settings(PhantomConfig, None, {"size": size, "n_frames": frames})
    except SettingsFileError as error:  # one line naming each wrong setting and its range
        raise PhantomRequestError(str(error)) from None
    try:
        return write_phantom_set(out, n=n, seed=seed, config=config, overwrite=overwrite)
    except FileExistsError as error:  # the message names the folder and --overwrite
        raise PhantomRequestError(str(error)) from None


def _auto_approve(store: CaseStore, kind: MaskKind, waiting: Stage) -> list[str]:
    approved = []
    for case_id in store.case_ids():
        summary = store.summary(case_id)
        if summary.stage is waiting:
            store.approve(case_id, kind, version=summary.latest_versions[kind], editor=DEMO_EDITOR)
            approved.append(case_id)
    return approved


@flow(name="demo")
def demo_flow(
    out: str,
    n: int = 3,
    seed: int = 0,
    samples: int = 8,
    data: str | None = None,
) -> dict[str, Any]:
    """Run every stage on ``n`` phantom exams in ``out``; returns the report path and timings.

    The real reference of the evaluation comes from the public datasets in ``data`` (default:
    the catalog's ``public_datasets``) when that folder exists, and from the demo's export.

    Files: ``out/raw`` (phantom exams), ``out/store``, ``out/approved.h5`` (export),
    ``out/synthetic.h5``, ``out/report.html``. A re-run rewrites the same phantom files, finds
    them unchanged, and regenerates the export, set and report.
    """
    from angioflow.flows.curate import curate_flow
    from angioflow.flows.evaluation import evaluate_synthetic, load_real_reference, read_synthetic
    from angioflow.flows.export import export_approved
    from angioflow.flows.ingest import ingest_flow
    from angioflow.flows.report_sections import add_curation_sections, add_synthetic_sections
    from angioflow.models.generation import Generators, SetRequest, generate_set

    say = get_run_logger().info
    folder = Path(out).resolve()
    raw, store_root = folder / "raw", folder / "store"
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        seconds[name] = round(time.perf_counter() - clock, 1)
        clock = time.perf_counter()

    say(f"1. writing {n} phantom exams to {raw}")
    write_phantom_set(
        raw, n=n, seed=seed, config=PhantomConfig(size=(384, 576), n_frames=5), overwrite=True
    )
    ingested = ingest_flow(str(raw), str(store_root))
    lap("phantom exams + ingest")
    say("2. curating: registration, vessel maps, aggregation, fundus alignment, binarisation")
    curated = curate_flow(str(store_root))
    lap("curate (stages 2-7)")
    store = CaseStore(store_root, create=False)
    vessel_approved = _auto_approve(store, MaskKind.VESSEL, Stage.VESSEL_REVIEW)
    say(f"3. DEMO: {len(vessel_approved)} vessel masks approved automatically, no clinician")
    labelled = curate_flow(str(store_root))
    lap("A/V labelling (stage 9)")
    av_approved = _auto_approve(store, MaskKind.AV, Stage.AV_REVIEW)
    say(f"4. DEMO: {len(av_approved)} A/V masks approved automatically, no clinician")
    export = folder / "approved.h5"
    export.unlink(missing_ok=True)
    exported = export_approved(store, export)
    say(f"5. generating {samples} synthetic samples with the shipped small generators")
    synthetic = folder / "synthetic.h5"
    synthetic.unlink(missing_ok=True)
    generate_set(Generators.load(), SetRequest(n=samples, seed=seed), synthetic)
    lap("export + generate")
    say("6. evaluating the synthetic set against the approved demo cases")
    sample = read_synthetic(synthetic)
    reference = load_real_reference(
        sample["images"].shape[1],
        data=Path(data) if data else public_data_folder(find_catalog()),
        exports=(export,) if exported["exported"] else (),
    )
    result = evaluate_synthetic(sample, reference, name=synthetic.name)
    for reason in result.get("not_measured", {}).values():
        say(f"   {reason}: not measured")
    lap("evaluate")

    page = Page("angioflow demo report")
    page.paragraph(
        "DEMO: every approval in this run was made automatically by the demo, not by a "
        "clinician. Data: phantom exams with full ground truth; no patient data.",
        css="warn",
    )
    page.section("Ingestion (stage 1)")
    page.table(
        [
            {
                "exams": n,
                "ingested": len(ingested["ingested"]),
                "unchanged": len(ingested["skipped"]),
                "quarantined": len(ingested["quarantined"]),
            }
        ]
    )
    page.section("Curation (stages 2-7), review gates (8, 10) and A/V labelling (9)")
    page.table(
        [
            {
                "curated to gate 1": len(curated["curated"]),
                "vessel masks auto-approved (DEMO)": len(vessel_approved),
                "A/V-labelled to gate 2": len(labelled["av_labelled"]),
                "A/V masks auto-approved (DEMO)": len(av_approved),
                "exported": len(exported["exported"]),
                "failed": len(curated["failed"]) + len(labelled["failed"]),
            }
        ]
    )
    add_curation_sections(page, store)
    page.section("Generation (stage 11) and evaluation")
    add_synthetic_sections(page, result, sample, reference)
    page.section("Timings (seconds)")
    page.table([seconds])
    report = write_page(page, folder / "report.html")
    failed = curated["failed"] + labelled["failed"]
    return {
        "report": str(report),
        "seconds": seconds,
        "failed": failed,
        "ingested": ingested,
    }


@dataclass(frozen=True)
class DemoResult:
    """A demo run: ingestion summary, the store's status, timings, failures, the report."""

    ingested: dict[str, list[dict[str, str]]]
    status: StoreStatus
    seconds: dict[str, float]
    failed: list[dict[str, str]]
    report: Path


def run_demo(
    out: Path, *, n: int = 3, seed: int = 0, samples: int = 8, threads: int = 2
) -> DemoResult:
    """Run :func:`demo_flow` in ``out`` with ``threads`` numerical threads."""
    import torch

    torch.set_num_threads(threads)
    result = demo_flow(str(out), n=n, seed=seed, samples=samples)
    return DemoResult(
        ingested=result["ingested"],
        status=store_status(out / "store"),
        seconds=result["seconds"],
        failed=result["failed"],
        report=Path(result["report"]),
    )
