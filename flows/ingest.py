"""Prefect flow for stage 1: ingest every case folder of a source, one task run per case."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from pipeline.casestore import CaseStore
from pipeline.ingest import IngestOutcome, ingest_case
from pipeline.io import ImageLimits
from pipeline.privacy import load_or_create_key
from pipeline.raw_case import CaseLimits, case_label, find_case_folders

__all__ = ["case_limits", "ingest_case_task", "ingest_flow", "retry_on_io_error"]


def case_limits(load_args: dict[str, Any]) -> CaseLimits:
    """Build :class:`CaseLimits` from the catalog's ``raw_exams.load_args``."""
    image_fields = {"max_pixels", "min_side_px", "max_aspect"}
    case_fields = {"max_frames", "max_time_s"}
    unknown = set(load_args) - image_fields - case_fields
    if unknown:
        raise ValueError(
            f"raw_exams.load_args has unknown option(s) {sorted(unknown)}; "
            f"allowed: {sorted(image_fields | case_fields)}"
        )
    image = ImageLimits(**{k: v for k, v in load_args.items() if k in image_fields})
    return CaseLimits(image=image, **{k: v for k, v in load_args.items() if k in case_fields})


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
    case_dir: str, store: str, source_root: str, load_args: dict[str, Any], replace: bool
) -> dict[str, str]:
    """Ingest one case folder; returns the outcome as a dict (no arrays, no patient id)."""
    store_root = Path(store)
    outcome = ingest_case(
        Path(case_dir),
        CaseStore(store_root),
        source_root=Path(source_root),
        key=load_or_create_key(store_root),
        limits=case_limits(load_args),
        replace=replace,
    )
    logger = get_run_logger()
    if outcome.status == "quarantined":
        logger.warning("quarantined: %s", outcome.reason)
    else:
        logger.info("%s case '%s' as %s", outcome.status, outcome.case, outcome.case_id)
    return outcome.as_dict()


@flow(name="ingest")
def ingest_flow(
    source: str, store: str, load_args: dict[str, Any] | None = None, replace: bool = False
) -> dict[str, list[dict[str, str]]]:
    """Validate and store every case folder of ``source``; bad cases are quarantined.

    Returns
    -------
    summary : dict
        ``{"ingested": [...], "skipped": [...], "quarantined": [...]}``; ``ingested`` holds
        replaced cases too. Each item has ``case`` and ``case_id``; quarantined items add
        ``file`` and ``reason``.
    """
    store_root = Path(store)
    CaseStore(store_root)
    load_or_create_key(store_root)  # create the key once, before tasks run in parallel
    folders = find_case_folders(Path(source))
    futures = [
        ingest_case_task.with_options(task_run_name=f"ingest {case_label(folder)}").submit(
            str(folder), store, source, load_args or {}, replace
        )
        for folder in folders
    ]
    outcomes = []
    for folder, future in zip(folders, futures, strict=True):
        future.wait()
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
