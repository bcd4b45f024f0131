"""Batch runs over a case store from the command line: ingest a folder of raw exams, curate
every case waiting. Each checks what it can before Prefect starts (the store, its key, the
settings file, the task runner), so a mistake is one line, not a failed flow run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from angioflow.flows.settings_file import load_settings
from angioflow.pipeline.casestore import CaseStore
from angioflow.pipeline.errors import AngioflowError
from angioflow.pipeline.privacy import load_or_create_key

__all__ = ["BatchInputError", "curate_store", "ingest_folder", "task_runner"]


class BatchInputError(AngioflowError, ValueError):
    """A batch run asked for with inputs it cannot use; the message names them and the fix."""


def task_runner(kind: str, address: str | None, workers: int, *, max_threads: int) -> Any:
    """The Prefect task runner of ``--runner``, ``--dask-address`` and ``--workers``."""
    from angioflow.flows.runners import make_task_runner

    if kind not in ("thread", "dask"):
        raise BatchInputError(f"--runner must be thread or dask, not {kind!r}")
    if address is not None and kind != "dask":
        raise BatchInputError("--dask-address needs --runner dask")
    return make_task_runner(kind, address=address, workers=workers, max_threads=max_threads)


def ingest_folder(
    source: Path, root: Path, limits: dict[str, Any], *, replace: bool, runner: Any
) -> dict[str, list[dict[str, str]]]:
    """Run the ingest flow on ``source`` into the store at ``root`` (created when missing).

    Returns
    -------
    summary : dict
        ``{"ingested": [...], "skipped": [...], "quarantined": [...]}`` (see ``ingest_flow``).

    Raises
    ------
    BatchInputError
        ``source`` is not a folder, or the store's key file is readable by other users.
    CaseStoreError
        The store or its key cannot be used.
    """
    from angioflow.flows.ingest import ingest_flow

    if not source.is_dir():
        raise BatchInputError(
            f"source folder {source} does not exist; pass the folder holding the case folders"
        )
    CaseStore(root)
    try:
        load_or_create_key(root)
    except PermissionError as error:  # the key's mode: the message names the chmod to run
        raise BatchInputError(str(error)) from None
    return ingest_flow.with_options(task_runner=runner)(
        str(source.resolve()), str(root.resolve()), limits, replace
    )


def curate_store(
    root: Path, config: Path | None, *, runner: Any, report: Path | None
) -> dict[str, Any]:
    """Run the curate flow on every case of the store at ``root`` waiting for a stage.

    Returns
    -------
    summary : dict
        ``{"curated", "av_labelled", "failed", "waiting"}`` (see ``curate_flow``), with
        ``"report"`` (the HTML report's path) when ``report`` is given.

    Raises
    ------
    SettingsFileError
        ``config`` is missing or holds a setting that is misspelt or out of range.
    CaseStoreError
        The store does not exist or cannot be written.
    """
    from angioflow.flows.curate import curate_flow
    from angioflow.pipeline.curation import CurationSettings

    CaseStore(root, create=False).check_writable()
    settings = load_settings(CurationSettings, config)
    summary = curate_flow.with_options(task_runner=runner)(
        str(root.resolve()), settings, report=str(report.resolve()) if report else None
    )
    if report is not None:
        summary = {**summary, "report": str(report / "report.html")}
    return summary
