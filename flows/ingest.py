"""Prefect flow for stage 1: ingest every case folder of a source, one task run per case."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from angioflow.flows.progress import CaseProgress
from angioflow.pipeline.casestore import CaseStore
from angioflow.pipeline.ingest import IngestOutcome, exam_case_id, ingest_case, worker_budget
from angioflow.pipeline.privacy import load_or_create_key
from angioflow.pipeline.raw_case import CaseLimits, case_label, find_case_folders
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.futures import as_completed

__all__ = [
    "ingest_case_task",
    "ingest_flow",
    "retry_on_io_error",
]


def retry_on_io_error(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry a task run only when it failed with an OSError."""
    try:
        state.result()
    except OSError:
        return True
    except Exception:  # noqa: BLE001 - any other failure is not transient
        return False
    return False


@task(
    name="ingest-case",
    retries=2,
    retry_delay_seconds=1,
    retry_condition_fn=retry_on_io_error,
    cache_policy=NONE,
)
def ingest_case_task(
    case_dir: str,
    store: str,
    source_root: str,
    limits: CaseLimits,
    replace: bool,
    earlier: list[dict[str, str]] | None = None,
) -> dict[str, str]:
    """Ingest one case folder; returns the outcome as a dict (no arrays, no patient id).

    ``earlier`` holds the outcomes of the folders of this run that name the same exam and come
    before this one: whichever of them was stored keeps the exam.
    """
    store_root = Path(store)
    claimed = {o["case_id"]: o["case"] for o in earlier or [] if o["status"] != "quarantined"}
    outcome = ingest_case(
        Path(case_dir),
        CaseStore(store_root),
        source_root=Path(source_root),
        key=load_or_create_key(store_root),
        limits=limits,
        replace=replace,
        budget=worker_budget(limits.max_worker_bytes),
        claimed=claimed,
    )
    logger = get_run_logger()
    if outcome.status == "quarantined":
        logger.warning("quarantined: %s", outcome.reason)
    else:
        logger.info("%s case '%s' as %s", outcome.status, outcome.case, outcome.case_id)
    return outcome.as_dict()


@flow(name="ingest")
def ingest_flow(
    source: str, store: str, limits: CaseLimits | None = None, replace: bool = False
) -> dict[str, list[dict[str, str]]]:
    """Validate and store every case folder of ``source``; bad cases are quarantined.

    Parameters
    ----------
    source : str
        Folder of raw case folders (DESIGN.md's contract), or one case folder.
    store : str
        Case store root (created when missing).
    limits : CaseLimits, optional
        Size and count limits of raw exams (a dict of the catalog's ``raw_exams.load_args`` is
        read into it when the flow is called); the built-in ones by default.
    replace : bool
        Store changed cases over stored ones (the old files are kept).

    Returns
    -------
    summary : dict
        ``{"ingested": [...], "skipped": [...], "quarantined": [...]}``; ``ingested`` holds
        replaced cases too. Each item has ``case`` and ``case_id``; quarantined items add
        ``file`` and ``reason``.
    """
    store_root = Path(store)
    CaseStore(store_root)
    key = load_or_create_key(store_root)  # create the key once, before tasks run in parallel
    limits = limits or CaseLimits()
    folders = find_case_folders(Path(source))
    progress = CaseProgress("ingest-progress", len(folders), "ingested")
    # Folders naming one exam run one after another, in name order, so the first valid one
    # is stored and the others are quarantined: no race decides which folder is kept.
    same_exam: dict[str, list[Any]] = {}
    futures = {}
    for folder in folders:
        exam = exam_case_id(folder, key=key)
        earlier = same_exam.setdefault(exam, []) if exam else []
        future = ingest_case_task.with_options(task_run_name=f"ingest {case_label(folder)}").submit(
            str(folder), store, source, limits, replace, list(earlier)
        )
        earlier.append(future)
        futures[future] = folder
    finished = {}
    for future in as_completed(list(futures)):
        finished[futures[future]] = future
        progress.advance()
    outcomes = []
    for folder in folders:
        future = finished[folder]
        future.wait()  # as_completed returns when the work is done, maybe before its final state
        if future.state.is_completed():
            outcomes.append(IngestOutcome(**future.result()))
        else:
            label = case_label(folder)
            outcomes.append(
                IngestOutcome(
                    "quarantined",
                    label,
                    reason=f"case '{label}': internal error while ingesting; see the Prefect logs "
                    f"of task 'ingest {label}' and report it",
                )
            )
    summary = _summarise(outcomes)
    create_markdown_artifact(key="ingest-summary", markdown=_markdown(summary))
    return summary


def _summarise(outcomes: list[IngestOutcome]) -> dict[str, list[dict[str, str]]]:
    summary: dict[str, list[dict[str, str]]] = {"ingested": [], "skipped": [], "quarantined": []}
    for outcome in outcomes:
        item = asdict(outcome)
        if outcome.status == "quarantined":
            summary["quarantined"].append(
                {k: item[k] for k in ("case", "case_id", "file", "reason")}
            )
        else:
            group = "skipped" if outcome.status == "skipped" else "ingested"
            summary[group].append({k: item[k] for k in ("case", "case_id", "status")})
    return summary


def _markdown(summary: dict[str, list[dict[str, str]]]) -> str:
    lines = [
        "# Ingestion",
        f"{len(summary['ingested'])} ingested, {len(summary['skipped'])} unchanged, "
        f"{len(summary['quarantined'])} quarantined",
    ]
    if summary["quarantined"]:
        lines += ["", "| case | reason |", "|---|---|"]
        lines += [
            f"| {q['case']} | {q['reason'].replace('|', '/')} |" for q in summary["quarantined"]
        ]
    return "\n".join(lines)
