"""Prefect flow for stages 2-7 and 9: one named task per stage per case, ending at a review gate.

Cases just ingested run stages 2-7 and stop at review gate 1 (vessel mask); cases whose vessel
mask a clinician approved run stage 9 (A/V labelling) and stop at review gate 2.

Tasks pass case ids and stage cache keys (content hashes), never arrays. Each stage skips its
work when the store already holds an output with the same key (see
:mod:`pipeline.curation_stages`), so re-running the flow only computes what changed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from angioflow.flows.ingest import retry_on_io_error
from angioflow.flows.progress import CaseProgress
from angioflow.pipeline import curation_stages as stages
from angioflow.pipeline.casestore import CaseStore, CaseStoreError, Stage
from angioflow.pipeline.curation import CurationSettings
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner

__all__ = ["curate_flow"]


@cache
def _segmenter(weights: str) -> Any:
    from angioflow.models.vessel import VesselSegmenter

    return VesselSegmenter.load(Path(weights))


@cache
def _av_labeller(weights: str) -> Any:
    from angioflow.models.hvgn import AVLabeller

    return AVLabeller.load(Path(weights))


@contextmanager
def _recorded(store: str, case_id: str, stage: str) -> Iterator[CaseStore]:
    """The case store; an error escaping the block is recorded in the case's event log."""
    case_store = CaseStore(Path(store), create=False)
    try:
        yield case_store
    except Exception as error:
        try:
            case_store.record_error(case_id, stage, f"{type(error).__name__}: {error}")
        except (CaseStoreError, OSError) as unrecorded:  # an unreadable file cannot log
            get_run_logger().warning("case %s: error not recorded: %s", case_id, unrecorded)
        raise


# Transient I/O errors are retried; every stage skips work its stored output already covers.
_STAGE_TASK = {
    "retries": 2,
    "retry_delay_seconds": 1,
    "retry_condition_fn": retry_on_io_error,
    "cache_policy": NONE,
}


@task(name="vessel_maps", **_STAGE_TASK)
def vessel_maps_task(store: str, case_id: str, weights: str) -> str:
    """Stage 3: vessel maps of every FA frame and the fundus photo."""
    with _recorded(store, case_id, "vessel_maps") as case_store:
        segmenter = _segmenter(weights)
        return stages.run_vessel_maps(
            case_store, case_id, segmenter.segment, segmenter.weights_sha256
        )


# Stages 2 and 4 (registration), 5 (mean and maximum of the registered vessel maps), 6 (the FA
# aggregate aligned to the fundus photo) and 7 (the baseline vessel mask, offered at review
# gate 1), in order: each starts from the cache key of the one before and the settings.
_SETTINGS_STAGES = {
    "registration": stages.run_registration,
    "aggregate": stages.run_aggregate,
    "fundus_alignment": stages.run_fundus_alignment,
    "binarisation": stages.run_binarisation,
}


@task(**_STAGE_TASK)
def settings_stage_task(
    store: str, case_id: str, stage: str, upstream: str, settings: CurationSettings
) -> str:
    """The stage named ``stage`` of :data:`_SETTINGS_STAGES` on one case."""
    with _recorded(store, case_id, stage) as case_store:
        return _SETTINGS_STAGES[stage](case_store, case_id, upstream, settings)


@task(name="av_labelling", **_STAGE_TASK)
def av_labelling_task(store: str, case_id: str, weights: str) -> str:
    """Stage 9: artery/vein labels of the approved vessel mask, offered at review gate 2."""
    with _recorded(store, case_id, "av_labelling") as case_store:
        labeller = _av_labeller(weights)
        return stages.run_av_labelling(
            case_store,
            case_id,
            labeller.artery_probability,
            labeller.weights_sha256,
            labeller.model.config.fa_channels,
        )


def _named(stage: Any, case_id: str, name: str | None = None) -> Any:
    """The task named ``name`` (by default its own name), its run named after the case too."""
    name = name or stage.name
    return stage.with_options(name=name, task_run_name=f"{name} {case_id}")


def _submit_curation(
    store: str, case_id: str, settings: CurationSettings, weights: str
) -> list[tuple[str, PrefectFuture]]:
    """Stages 3 and 2-7 of one case, each waiting for the one before (its cache key)."""
    key = _named(vessel_maps_task, case_id).submit(store, case_id, weights)
    futures = [("vessel_maps", key)]
    for name in _SETTINGS_STAGES:
        key = _named(settings_stage_task, case_id, name).submit(store, case_id, name, key, settings)
        futures.append((name, key))
    return futures


def _submit_av_labelling(
    store: str, case_id: str, settings: CurationSettings, weights: str
) -> list[tuple[str, PrefectFuture]]:
    """Stage 9 of one case."""
    return [("av_labelling", _named(av_labelling_task, case_id).submit(store, case_id, weights))]


@flow(name="curate", task_runner=ThreadPoolTaskRunner(max_workers=1))
def curate_flow(
    store: str,
    settings: CurationSettings | None = None,
    weights: str | None = None,
    av_weights: str | None = None,
    report: str | None = None,
) -> dict[str, list[dict[str, str]]]:
    """Run stages 2-7 (ingested cases) and 9 (vessel mask approved) for every case waiting.

    A failing case does not stop the others.

    Parameters
    ----------
    store : str
        Case store root.
    settings : CurationSettings, optional
        Parameters of stages 2-7 (a mapping of their values is accepted and validated); the
        shipped recipe (``configs/curation.yaml``) by default.
    weights : str, optional
        Vessel CNN weights folder; the shipped weights by default.
    av_weights : str, optional
        HVGN weights folder; the shipped weights by default.
    report : str, optional
        Folder for the HTML curation report of the whole store, written at the end (also
        published as Prefect artifacts).

    Returns
    -------
    summary : dict
        ``{"curated": [...], "av_labelled": [...], "failed": [...], "waiting": [...]}`` with
        case ids (``waiting``: at a review gate); failures carry the stage and a one-line
        reason. Done and rejected cases are left alone.
    """
    from angioflow.models.hvgn import DEFAULT_AV_WEIGHTS
    from angioflow.models.vessel import DEFAULT_WEIGHTS

    settings = settings or CurationSettings()
    weights = str(weights or DEFAULT_WEIGHTS)
    av_weights = str(av_weights or DEFAULT_AV_WEIGHTS)
    case_store = CaseStore(Path(store), create=False)
    plans = {
        Stage.INGESTED: (_submit_curation, weights),
        Stage.VESSEL_APPROVED: (_submit_av_labelling, av_weights),
    }
    todo, waiting, unreadable = [], [], []
    for case_id in case_store.case_ids():
        try:
            stage = case_store.summary(case_id).stage
        except CaseStoreError as error:
            unreadable.append({"case_id": case_id, "stage": "read", "reason": str(error)})
            continue
        if stage in plans:
            todo.append((case_id, stage))
        elif stage.waiting_for_review:
            waiting.append(case_id)
    if todo:
        try:
            case_store.check_writable()
        except CaseStoreError as error:
            # Every stage ends in a write: fail each case now, not after computing and retrying.
            unreadable += [
                {"case_id": case_id, "stage": "write", "reason": str(error)} for case_id, _ in todo
            ]
            todo = []
    chains = {}
    for case_id, stage in todo:
        submit, stage_weights = plans[stage]
        chains[case_id] = submit(store, case_id, settings, stage_weights)
    summary: dict[str, list[dict[str, str]]] = {
        "curated": [],
        "av_labelled": [],
        "failed": unreadable,
        "waiting": [{"case_id": c} for c in waiting],
    }
    logger = get_run_logger()
    progress = CaseProgress("curate-progress", len(chains), "curated")
    for case_id, futures in chains.items():
        failed = None
        for name, future in futures:
            future.wait()
            if not future.state.is_completed():
                failed = name
                break
        progress.advance()
        if failed is None:
            done = "av_labelled" if futures[-1][0] == "av_labelling" else "curated"
            summary[done].append({"case_id": case_id})
            continue
        reason = _last_error(case_store, case_id, future)
        logger.warning("case %s failed at stage %s: %s", case_id, failed, reason)
        summary["failed"].append({"case_id": case_id, "stage": failed, "reason": reason})
    create_markdown_artifact(key="curate-summary", markdown=_markdown(summary))
    if report is not None:
        curation_report_task(store, report)
    return summary


@task(cache_policy=NONE)
def curation_report_task(store: str, out: str) -> str:
    from angioflow.flows.reports import curation_report

    return str(curation_report(CaseStore(Path(store), create=False), Path(out)))


def _last_error(store: CaseStore, case_id: str, future: Any) -> str:
    """The error the case's file recorded, else the task's own exception, on one line."""
    try:
        events = store.events(case_id)
    except (CaseStoreError, OSError):
        events = []
    for event in reversed(events):
        if event["event"] == "error":
            return str(event["message"])
    try:
        future.result()
    except Exception as error:  # noqa: BLE001 - reported, not handled
        return f"{type(error).__name__}: {error}".splitlines()[0]
    return "see the Prefect logs"


def _markdown(summary: dict[str, list[dict[str, str]]]) -> str:
    lines = [
        "# Curation (stages 2-7 and 9)",
        f"{len(summary['curated'])} curated to review gate 1, "
        f"{len(summary['av_labelled'])} A/V-labelled to review gate 2, "
        f"{len(summary['failed'])} failed, {len(summary['waiting'])} waiting for review",
    ]
    if summary["failed"]:
        lines += ["", "| case | stage | reason |", "|---|---|---|"]
        lines += [
            f"| {f['case_id']} | {f['stage']} | {f['reason'].replace('|', '/')} |"
            for f in summary["failed"]
        ]
    return "\n".join(lines)
