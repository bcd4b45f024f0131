"""Case store commands: ingest, curate, status, history, inspect, export, audit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from angioflow.flows.batch import curate_store, ingest_folder, task_runner
from angioflow.flows.catalog import find_catalog
from angioflow.flows.cli._options import (
    CaseArgument,
    DaskAddressOption,
    JsonOption,
    RunnerOption,
    StoreChoice,
    WorkersOption,
    store_command,
)
from angioflow.flows.cli._render import console, errors, print_json, say, shown, warn
from angioflow.flows.export import export_store
from angioflow.flows.privacy_audit import audit_outputs, catalog_outputs
from angioflow.flows.progress import terminal_progress
from angioflow.flows.store_views import CaseHistory, StoreStatus, case_history, store_status
from angioflow.pipeline.casestore import CaseStore, MaskKind, Stage
from rich.table import Table

__all__ = ["print_ingest_summary", "print_status"]


@store_command
def ingest(
    source: Annotated[Path, typer.Argument(help="Folder of raw case folders (or one case folder)")],
    replace: Annotated[
        bool, typer.Option(help="Store changed cases over stored ones (old files are kept)")
    ] = False,
    max_pixels: Annotated[
        int | None, typer.Option(min=1, help="Largest accepted width*height of an image")
    ] = None,
    max_case_mb: Annotated[
        int | None,
        typer.Option(min=1, help="Largest size of one exam's images once decoded, MiB [1024]"),
    ] = None,
    runner: RunnerOption = "thread",
    dask_address: DaskAddressOption = None,
    workers: WorkersOption = 2,
    as_json: JsonOption = False,
    *,
    where: StoreChoice,
) -> None:
    """Validate and store raw cases; bad ones are quarantined with a reason. Exit 1 if any was."""
    loaded = find_catalog(where.catalog)
    limits = dict(loaded.entry("raw_exams").load_args) if "raw_exams" in loaded.datasets else {}
    if max_pixels is not None:
        limits["max_pixels"] = max_pixels
    if max_case_mb is not None:
        limits["max_case_mb"] = max_case_mb
    tasks = task_runner(runner, dask_address, workers, max_threads=4)
    with terminal_progress(errors, "ingest"):
        summary = ingest_folder(source, where.root, limits, replace=replace, runner=tasks)
    if as_json:
        print_json(summary)
    else:
        print_ingest_summary(summary)
    if summary["quarantined"]:
        raise typer.Exit(1)


def print_ingest_summary(summary: dict[str, list[dict[str, str]]]) -> None:
    console.print(
        f"{len(summary['ingested'])} ingested, {len(summary['skipped'])} unchanged, "
        f"{len(summary['quarantined'])} quarantined"
    )
    for item in summary["quarantined"]:
        say(f"[yellow]quarantined[/] {shown(item['reason'])}")


@store_command
def curate(
    config: Annotated[
        Path | None, typer.Option(help="YAML of curation settings [default: built-in]")
    ] = None,
    runner: RunnerOption = "thread",
    dask_address: DaskAddressOption = None,
    workers: WorkersOption = 2,
    report: Annotated[
        Path | None, typer.Option(help="Also write the HTML curation report into this folder")
    ] = None,
    as_json: JsonOption = False,
    *,
    where: StoreChoice,
) -> None:
    """Run stages 2-7 (registration ... binarisation) on every ingested case, up to review
    gate 1, and A/V labelling (stage 9) on every case whose vessel mask is approved, up to
    review gate 2. Finished stages are skipped on re-runs. Exit 1 if any case failed."""
    tasks = task_runner(runner, dask_address, workers, max_threads=1)
    with terminal_progress(errors, "curate"):
        summary = curate_store(where.root, config, runner=tasks, report=report)
    if as_json:
        print_json(summary)
    else:
        console.print(
            f"{len(summary['curated'])} curated to vessel review, "
            f"{len(summary['av_labelled'])} A/V-labelled to A/V review, "
            f"{len(summary['failed'])} failed, {len(summary['waiting'])} waiting for review"
        )
        for item in summary["failed"]:
            say(f"[red]failed[/] case {item['case_id']} at {item['stage']}: {item['reason']}")
        if report is not None:
            say(f"report: {summary['report']}")
    if summary["failed"]:
        raise typer.Exit(1)


@store_command
def status(
    as_json: JsonOption = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Also read every stored array and check its sha256 (reads all pixels); "
            "exit 1 when a case is damaged",
        ),
    ] = False,
    *,
    where: StoreChoice,
) -> None:
    """Cases, their stage, who is waiting for review, and the last error; quarantined cases."""
    result = store_status(where.root, verify=verify)
    if as_json:
        print_json(result.as_dict())
    else:
        print_status(result)
    if verify and result.unreadable:
        raise typer.Exit(1)


def print_status(result: StoreStatus) -> None:
    table = Table(title=f"Case store {result.root}")
    for column in ("case", "eye", "frames", "fundus (WxH)", "stage", "review"):
        table.add_column(column, no_wrap=True)
    table.add_column("last error")
    for r in result.cases:
        table.add_row(
            r.case_id,
            r.eye,
            str(r.n_frames),
            f"{r.fundus_shape[1]}x{r.fundus_shape[0]}",
            r.stage.value,
            f"waiting ({'vessel' if r.stage is Stage.VESSEL_REVIEW else 'A/V'})"
            if r.stage.waiting_for_review
            else "",
            r.last_error,
        )
    for b in result.unreadable:
        table.add_row(b["case_id"], "", "", "", "[red]unreadable[/]", "", b["error"])
    console.print(table)
    if result.queue:
        waiting = Table(title="Review queue")
        for column in ("case", "gate", "waiting version", "last saved by", "unsaved edits by"):
            waiting.add_column(column, no_wrap=True)
        for e in result.queue:
            gate = "1 vessel mask" if e.gate is MaskKind.VESSEL else "2 A/V mask"
            waiting.add_row(e.case_id, gate, str(e.version), e.last_editor, ", ".join(e.editing))
        console.print(waiting)
    for r in result.cases:
        if r.rejection is not None:
            say(
                f"[yellow]rejected[/] {r.case_id} ({r.rejection.kind.value} v"
                f"{r.rejection.version}) by {r.rejection.editor}: {r.rejection.reason}"
            )
    if result.quarantined:
        refused = Table(title="Quarantined (not stored)")
        for column in ("case", "file", "reason"):
            refused.add_column(column)
        for q in result.quarantined:
            refused.add_row(q.case, q.file, q.reason)
        console.print(refused)
    if result.verified:
        console.print(
            f"checked every stored array: {len(result.cases)} cases intact, "
            f"{len(result.unreadable)} unreadable or damaged",
            highlight=False,
        )


@store_command
def history(
    case: CaseArgument,
    as_json: JsonOption = False,
    *,
    where: StoreChoice,
) -> None:
    """Every saved mask version and approval of a case: who, when, from which parent."""
    result = case_history(where.root, case)
    if as_json:
        print_json(result.as_dict())
    else:
        _print_history(result)


def _print_history(result: CaseHistory) -> None:
    case = result.case_id
    table = Table(title=f"History of {case}")
    for column in ("mask", "version", "parent", "editor", "time", "note", "sha256", "approved by"):
        table.add_column(column)
    table.add_column("rejected")
    for v in result.versions:
        rejected = "; ".join(
            f"{shown(r.editor)}: {shown(r.reason)}" for r in result.rejections_of(v)
        )
        table.add_row(
            v.kind.value,
            str(v.version),
            str(v.parent or ""),
            shown(v.editor),
            v.time,
            shown(v.note),
            v.sha256[:12],
            ", ".join(shown(editor) for editor in result.approvers(v)),
            rejected,
        )
    console.print(table if result.versions else f"case {case} has no saved mask versions yet")
    for a in result.autosaves:
        say(
            f"unsaved edits of the {a.kind.value} mask by {shown(a.editor)} (from version "
            f"{a.parent}, {a.time}): `angioflow review {case}` offers them back"
        )


@store_command
def inspect(
    case: CaseArgument,
    out: Annotated[Path, typer.Option(help="Folder for the PNG and JSON files")],
    version: Annotated[
        int | None,
        typer.Option(min=1, help="Version of the --stage mask (1 = baseline) [default: latest]"),
    ] = None,
    stage: Annotated[MaskKind, typer.Option(help="Which mask --version refers to")] = (
        MaskKind.VESSEL
    ),
    *,
    where: StoreChoice,
) -> None:
    """Write a case's masks (any saved version), QC images and stage metrics as PNG + JSON."""
    from angioflow.flows.inspect import inspect_case  # SimpleITK: loaded for this command only

    case_store = CaseStore(where.root, create=False)
    for path in inspect_case(case_store, case, out, version=version, kind=stage):
        say(str(path))


@store_command
def export(
    out: Annotated[
        Path,
        typer.Option(help="FILE.h5 (one HDF5 file) or a new folder of PNGs + datalist.json"),
    ],
    val_fraction: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of patients in the validation split")
    ] = 0.15,
    test_fraction: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of patients in the test split")
    ] = 0.15,
    split_seed: Annotated[int, typer.Option(help="Seed of the patient-level split")] = 0,
    skip_unreadable: Annotated[
        bool,
        typer.Option(help="Export the readable cases when some are unreadable [default: refuse]"),
    ] = False,
    *,
    where: StoreChoice,
) -> None:
    """Approved vessel and A/V masks with their photos, split by patient, for training.

    An --out ending in .h5/.hdf5 writes one HDF5 file; any other --out writes a folder of
    PNGs (images/, vessel/, av/ class indices, fov/), legend.json and a MONAI-style
    datalist.json (docs/formats.md). Neither is ever overwritten. Nothing is written when no
    case is done, or when a case is unreadable (unless --skip-unreadable).
    """
    summary = export_store(
        where.root,
        out,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=split_seed,
        skip_unreadable=skip_unreadable,
    )
    say(
        f"{len(summary['exported'])} approved cases written to {out}; "
        f"{len(summary['skipped'])} not done yet, {len(summary['unreadable'])} unreadable"
    )
    for line in summary["unreadable"]:
        warn("unreadable", line)


@store_command
def audit(
    raw: Annotated[
        Path | None, typer.Option(help="Raw case folders: their patient ids, names, birth dates")
    ] = None,
    identifiers: Annotated[
        Path | None, typer.Option(help="Text file of further identifiers, one per line")
    ] = None,
    path: Annotated[
        list[Path] | None,
        typer.Option(help="Further files or folders to scan: exports, sets, reports, logs"),
    ] = None,
    as_json: JsonOption = False,
    *,
    where: StoreChoice,
) -> None:
    """Privacy scan: every file of the store and of the given paths (the --raw folder itself
    excepted) is searched for the raw cases' patient ids, names and birth dates and for image
    metadata (EXIF, PNG text). Exit 1 when anything is found; findings name the file and
    place, never the identifier."""
    roots = [where.root, *(path or []), *catalog_outputs(find_catalog(where.catalog))]
    result = audit_outputs(roots, raw=raw, identifiers=identifiers)
    if result.metadata_only:
        errors.print(
            "[yellow]no --raw folder or --identifiers file: only image metadata is checked[/]"
        )
    if as_json:
        print_json(result.as_dict())
    else:
        console.print(
            f"scanned {result.files} files under {len(result.scanned)} paths for "
            f"{result.identifiers} identifiers"
        )
        for finding in result.findings:
            say(f"[red]LEAK[/] {finding}")
        if not result.findings:
            console.print("[green]no identifier or image metadata found[/]")
    if result.findings:
        raise typer.Exit(1)
