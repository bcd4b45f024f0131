"""Prefect flow for stage 1: ingest every case folder of a source, one task run per case."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from angioflow.flows.progress import CaseProgress
from angioflow.pipeline.casestore import CaseStore
from angioflow.pipeline.ingest import (
    DEFAULT_WORKER_BYTES,
    IngestOutcome,
    exam_case_id,
    ingest_case,
    worker_budget,
)
from angioflow.pipeline.io import ImageLimits
from angioflow.pipeline.privacy import load_or_create_key
from angioflow.pipeline.raw_case import CaseLimits, case_label, find_case_folders
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.futures import as_completed
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "RawExamLimits",
    "case_limits",
    "ingest_case_task",
    "ingest_flow",
    "retry_on_io_error",
]


class RawExamLimits(BaseModel):
    """Sanity limits of raw exams (the catalog's ``raw_exams.load_args``); unset -> default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_pixels: int | None = Field(None, ge=1, description="largest width*height of an image")
    min_side_px: int | None = Field(None, ge=1, description="smallest image side, pixels")
    max_aspect: float | None = Field(None, ge=1.0, description="largest long/short side ratio")
    max_frames: int | None = Field(None, ge=1, description="most FA frames in one exam")
    max_time_s: float | None = Field(None, gt=0, description="latest FA frame time, seconds")
    max_case_mb: int | None = Field(
        None, ge=1, description="largest size of one exam's images once decoded, MiB"
    )
    max_worker_mb: int | None = Field(
        None, ge=1, description="decoded image MiB one ingest process holds at once"
    )


def case_limits(limits: RawExamLimits | dict[str, Any]) -> CaseLimits:
    """Build :class:`CaseLimits` from the catalog's ``raw_exams.load_args``.

    Raises
    ------
    ValueError
        An unknown option or a value out of range (pydantic's message, naming the option).
    """
    given = RawExamLimits.model_validate(limits).model_dump(exclude_none=True)
    given.pop("max_worker_mb", None)
    if "max_case_mb" in given:
        given["max_case_bytes"] = given.pop("max_case_mb") << 20
    image_fields = {"max_pixels", "min_side_px", "max_aspect"}
    image = ImageLimits(**{k: v for k, v in given.items() if k in image_fields})
    return CaseLimits(image=image, **{k: v for k, v in given.items() if k not in image_fields})


def _worker_bytes(limits: dict[str, Any]) -> int:
    megabytes = RawExamLimits.model_validate(limits).max_worker_mb
    return DEFAULT_WORKER_BYTES if megabytes is None else megabytes << 20


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
    limits: dict[str, Any],
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
        limits=case_limits(limits),
        replace=replace,
        budget=worker_budget(_worker_bytes(limits)),
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
    source: str, store: str, limits: RawExamLimits | None = None, replace: bool = False
) -> dict[str, list[dict[str, str]]]:
    """Validate and store every case folder of ``source``; bad cases are quarantined.

    Parameters
    ----------
    source : str
        Folder of raw case folders (DESIGN.md's contract), or one case folder.
    store : str
        Case store root (created when missing).
    limits : RawExamLimits, optional
        Size and count limits of raw exams; the built-in ones by default.
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
    limit_values = RawExamLimits.model_validate(limits or {}).model_dump(exclude_none=True)
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
            str(folder), store, source, limit_values, replace, list(earlier)
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
