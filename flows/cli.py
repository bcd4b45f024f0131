"""The ``angioflow`` command line: validates options and calls flows; nothing more."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, NoReturn

import numpy as np
import typer
from angioflow.flows.catalog import DEFAULT_CATALOG, Catalog, CatalogError, load_catalog
from angioflow.flows.progress import terminal_progress
from angioflow.pipeline.casestore import CaseStore, CaseStoreError, MaskKind, Stage
from angioflow.pipeline.display import printable
from angioflow.pipeline.h5_formats import UnsupportedFileFormat
from angioflow.pipeline.ingest import read_quarantine
from angioflow.pipeline.review import MaskImportError, import_mask, review_queue
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(
    name="angioflow",
    help="Curate FA-based retinal vessel and A/V ground truth; generate synthetic fundus sets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)

CatalogOption = Annotated[
    Path | None,
    typer.Option(
        "--catalog", help="Data catalog YAML [default: ./data_catalog.yaml]", dir_okay=False
    ),
]
StoreOption = Annotated[
    Path | None,
    typer.Option("--store", help="Case store folder [default: the catalog's case_store]"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON summary instead of tables")]
RunnerOption = Annotated[
    str, typer.Option(help="Task runner: thread (this process) or dask (worker processes)")
]
DaskAddressOption = Annotated[
    str | None,
    typer.Option(help="dask.distributed scheduler (tcp://host:8786) [default: a LocalCluster]"),
]
WorkersOption = Annotated[int, typer.Option(min=1, help="LocalCluster worker processes (dask)")]


def _task_runner(runner: str, address: str | None, workers: int, *, max_threads: int) -> Any:
    from angioflow.flows.runners import make_task_runner

    if runner not in ("thread", "dask"):
        _fail(f"--runner must be thread or dask, not {runner!r}")
    if address is not None and runner != "dask":
        _fail("--dask-address needs --runner dask")
    return make_task_runner(runner, address=address, workers=workers, max_threads=max_threads)


class ImageModality(StrEnum):
    FUNDUS = "fundus"
    FA = "fa"


def _fail(message: str) -> NoReturn:
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn expected failures into a one-line message and exit code 2, never a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (
            CatalogError,
            CaseStoreError,
            FileNotFoundError,
            FileExistsError,
            PermissionError,
            MaskImportError,
            UnsupportedFileFormat,
            *_loaded_user_errors(),
        ) as error:
            _fail(str(error))

    return wrapper


def _loaded_user_errors() -> tuple[type[Exception], ...]:
    """User-error classes of modules too heavy to import for every command; an error of one
    can only be raised once its module is loaded, so only loaded ones are looked up."""
    import sys

    where = {
        "angioflow.flows.prefect_server": "PrefectServerError",
        "angioflow.flows.evaluation": "EvaluationInputError",
        "angioflow.flows.study": "StudyError",
        "angioflow.models.checkpoints": "WeightsError",
        "angioflow.models.generation": "DiskSpaceError",
    }
    return tuple(getattr(sys.modules[m], name) for m, name in where.items() if m in sys.modules)


# commands that run Prefect flows (and may start Prefect's temporary API server)
_FLOW_COMMANDS = frozenset({"ingest", "curate", "demo", "serve"})


@app.callback()
def _every_command(context: typer.Context) -> None:
    # A temporary Prefect server must die with its command, even one killed with SIGKILL.
    if context.invoked_subcommand in _FLOW_COMMANDS:
        from angioflow.flows.prefect_server import use_watched_temporary_server

        use_watched_temporary_server()


def _catalog(path: Path | None) -> Catalog | None:
    """The catalog named by --catalog, or ./data_catalog.yaml when present, else None."""
    if path is None:
        return load_catalog(DEFAULT_CATALOG) if DEFAULT_CATALOG.is_file() else None
    return load_catalog(path)


def _store_root(store: Path | None, catalog: Catalog | None) -> Path:
    if store is not None:
        return store
    if catalog is None:
        _fail(f"no --store given and no {DEFAULT_CATALOG} here to name the case store")
    return catalog.path("case_store")


@app.command()
@_user_errors
def ingest(
    source: Annotated[Path, typer.Argument(help="Folder of raw case folders (or one case folder)")],
    store: StoreOption = None,
    catalog: CatalogOption = None,
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
) -> None:
    """Validate and store raw cases; bad ones are quarantined with a reason. Exit 1 if any was."""
    from angioflow.flows.ingest import ingest_flow
    from angioflow.pipeline.privacy import load_or_create_key

    if not source.is_dir():
        _fail(f"source folder {source} does not exist; pass the folder holding the case folders")
    loaded = _catalog(catalog)
    root = _store_root(store, loaded)
    load_args = dict(loaded.entry("raw_exams").load_args) if loaded else {}
    if max_pixels is not None:
        load_args["max_pixels"] = max_pixels
    if max_case_mb is not None:
        load_args["max_case_mb"] = max_case_mb
    CaseStore(root)
    load_or_create_key(root)  # a missing or wrong key: one line here, not a failed flow run
    task_runner = _task_runner(runner, dask_address, workers, max_threads=4)
    with terminal_progress(errors, "ingest"):
        summary = ingest_flow.with_options(task_runner=task_runner)(
            str(source.resolve()), str(root.resolve()), load_args, replace
        )
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        _print_ingest_summary(summary)
    if summary["quarantined"]:
        raise typer.Exit(1)


def _shown(text: str) -> str:
    """User-controlled text (names, notes, folder names) safe to print: control characters
    escaped, no rich markup."""
    return escape(printable(text))


def _print_ingest_summary(summary: dict[str, list[dict[str, str]]]) -> None:
    console.print(
        f"{len(summary['ingested'])} ingested, {len(summary['skipped'])} unchanged, "
        f"{len(summary['quarantined'])} quarantined"
    )
    for item in summary["quarantined"]:
        console.print(
            f"[yellow]quarantined[/] {_shown(item['reason'])}", highlight=False, soft_wrap=True
        )


@app.command()
@_user_errors
def status(
    store: StoreOption = None,
    catalog: CatalogOption = None,
    as_json: JsonOption = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Also read every stored array and check its sha256 (reads all pixels); "
            "exit 1 when a case is damaged",
        ),
    ] = False,
) -> None:
    """Cases, their stage, who is waiting for review, and the last error; quarantined cases."""
    root = _store_root(store, _catalog(catalog))
    case_store = CaseStore(root, create=False)
    rows, broken = [], []
    for case_id in case_store.case_ids():
        try:
            if verify:
                case_store.verify(case_id)
            rows.append(case_store.summary(case_id))
        except CaseStoreError as error:
            broken.append({"case_id": case_id, "error": str(error)})
    quarantined = read_quarantine(root)
    queue = review_queue(case_store)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "cases": [
                        {
                            "case_id": r.case_id,
                            "eye": r.eye,
                            "frames": r.n_frames,
                            "stage": r.stage.value,
                            "waiting_for_review": r.stage.waiting_for_review,
                            "rejected": None
                            if r.rejection is None
                            else {"by": r.rejection.editor, "reason": r.rejection.reason},
                            "last_error": r.last_error,
                        }
                        for r in rows
                    ],
                    "review_queue": [
                        {
                            "case_id": e.case_id,
                            "gate": e.gate.value,
                            "version": e.version,
                            "last_saved_by": e.last_editor,
                            "editing": list(e.editing),
                        }
                        for e in queue
                    ],
                    "unreadable": broken,
                    "verified": verify,
                    "quarantined": [q.__dict__ for q in quarantined],
                },
                indent=2,
            )
        )
        if verify and broken:
            raise typer.Exit(1)
        return
    table = Table(title=f"Case store {root}")
    for column in ("case", "eye", "frames", "fundus (WxH)", "stage", "review"):
        table.add_column(column, no_wrap=True)
    table.add_column("last error")
    for r in rows:
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
    for b in broken:
        table.add_row(b["case_id"], "", "", "", "[red]unreadable[/]", "", b["error"])
    console.print(table)
    if queue:
        waiting = Table(title="Review queue")
        for column in ("case", "gate", "waiting version", "last saved by", "unsaved edits by"):
            waiting.add_column(column, no_wrap=True)
        for e in queue:
            gate = "1 vessel mask" if e.gate is MaskKind.VESSEL else "2 A/V mask"
            waiting.add_row(e.case_id, gate, str(e.version), e.last_editor, ", ".join(e.editing))
        console.print(waiting)
    for r in rows:
        if r.rejection is not None:
            console.print(
                f"[yellow]rejected[/] {r.case_id} ({r.rejection.kind.value} v"
                f"{r.rejection.version}) by {r.rejection.editor}: {r.rejection.reason}",
                highlight=False,
                soft_wrap=True,
            )
    if quarantined:
        refused = Table(title="Quarantined (not stored)")
        for column in ("case", "file", "reason"):
            refused.add_column(column)
        for q in quarantined:
            refused.add_row(q.case, q.file, q.reason)
        console.print(refused)
    if verify:
        console.print(
            f"checked every stored array: {len(rows)} cases intact, {len(broken)} unreadable "
            "or damaged",
            highlight=False,
        )
        if broken:
            raise typer.Exit(1)


@app.command()
@_user_errors
def history(
    case: Annotated[str, typer.Argument(help="Case id as shown by `angioflow status`")],
    store: StoreOption = None,
    catalog: CatalogOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every saved mask version and approval of a case: who, when, from which parent."""
    case_store = CaseStore(_store_root(store, _catalog(catalog)), create=False)
    versions = [v for kind in MaskKind for v in case_store.versions(case, kind)]
    approvals = [e for e in case_store.events(case) if e["event"] == "approved"]
    rejections = [r for kind in MaskKind for r in case_store.rejections(case, kind)]
    autosaves = case_store.autosaves(case)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "versions": [{**v.__dict__, "kind": v.kind.value} for v in versions],
                    "approvals": approvals,
                    "rejections": [{**r.__dict__, "kind": r.kind.value} for r in rejections],
                    "unsaved_edits": [
                        {
                            "kind": a.kind.value,
                            "editor": a.editor,
                            "parent": a.parent,
                            "time": a.time,
                        }
                        for a in autosaves
                    ],
                },
                indent=2,
            )
        )
        return
    table = Table(title=f"History of {case}")
    for column in ("mask", "version", "parent", "editor", "time", "note", "sha256", "approved by"):
        table.add_column(column)
    table.add_column("rejected")
    for v in versions:
        approvers = ", ".join(
            _shown(a["editor"])
            for a in approvals
            if a["kind"] == v.kind.value and a["version"] == v.version
        )
        rejected = "; ".join(
            f"{_shown(r.editor)}: {_shown(r.reason)}"
            for r in rejections
            if r.kind is v.kind and r.version == v.version
        )
        table.add_row(
            v.kind.value,
            str(v.version),
            str(v.parent or ""),
            _shown(v.editor),
            v.time,
            _shown(v.note),
            v.sha256[:12],
            approvers,
            rejected,
        )
    console.print(table if versions else f"case {case} has no saved mask versions yet")
    for a in autosaves:
        console.print(
            f"unsaved edits of the {a.kind.value} mask by {_shown(a.editor)} (from version "
            f"{a.parent}, "
            f"{a.time}): `angioflow review {case}` offers them back",
            highlight=False,
            soft_wrap=True,
        )


@app.command()
@_user_errors
def export(
    out: Annotated[
        Path,
        typer.Option(help="FILE.h5 (one HDF5 file) or a new folder of PNGs + datalist.json"),
    ],
    store: StoreOption = None,
    catalog: CatalogOption = None,
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
) -> None:
    """Approved vessel and A/V masks with their photos, split by patient, for training.

    An --out ending in .h5/.hdf5 writes one HDF5 file; any other --out writes a folder of
    PNGs (images/, vessel/, av/ class indices, fov/), legend.json and a MONAI-style
    datalist.json (docs/formats.md). Neither is ever overwritten. Nothing is written when no
    case is done, or when a case is unreadable (unless --skip-unreadable).
    """
    from angioflow.flows.export import export_approved, export_folder

    if val_fraction + test_fraction > 1.0:
        _fail(
            f"--val-fraction {val_fraction} + --test-fraction {test_fraction} exceed 1; "
            "lower one of them"
        )
    fractions = (1.0 - val_fraction - test_fraction, val_fraction, test_fraction)
    case_store = CaseStore(_store_root(store, _catalog(catalog)), create=False)
    write = export_approved if out.suffix.lower() in (".h5", ".hdf5") else export_folder
    summary = write(
        case_store, out, fractions=fractions, seed=split_seed, skip_unreadable=skip_unreadable
    )
    console.print(
        f"{len(summary['exported'])} approved cases written to {out}; "
        f"{len(summary['skipped'])} not done yet, {len(summary['unreadable'])} unreadable",
        highlight=False,
        soft_wrap=True,
    )
    for line in summary["unreadable"]:
        errors.print(f"[yellow]unreadable[/] {line}", highlight=False, soft_wrap=True)


EditorOption = Annotated[
    str,
    typer.Option(
        envvar="ANGIOFLOW_EDITOR", help="Your name, recorded with every save and approval"
    ),
]


@app.command()
@_user_errors
def review(
    case: Annotated[
        str | None, typer.Argument(help="Case id [default: the first case waiting for review]")
    ] = None,
    store: StoreOption = None,
    catalog: CatalogOption = None,
    editor: EditorOption = "",
) -> None:
    """Open napari on a case: correct the vessel mask (gate 1) or the A/V mask (gate 2)."""
    try:
        import napari
        from angioflow.annotation_tools.app import open_review
    except ImportError as error:
        _fail(
            f"the review app needs napari and Qt ({error.name} is not installed): "
            "pip install 'angioflow\\[review]'"
        )

    if not editor.strip():
        _fail("give your name with --editor NAME (or set $ANGIOFLOW_EDITOR)")
    case_store = CaseStore(_store_root(store, _catalog(catalog)), create=False)
    if case is not None:
        case_store.summary(case)  # a clear error for an unknown or damaged case, before Qt
    open_review(case_store.root, case, editor)
    napari.run()


@app.command()
@_user_errors
def approve(
    case: Annotated[str, typer.Argument(help="Case id as shown by `angioflow status`")],
    stage: Annotated[MaskKind, typer.Option(help="Which mask: vessel (gate 1) or av (gate 2)")],
    store: StoreOption = None,
    catalog: CatalogOption = None,
    editor: EditorOption = "",
    mask: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Mask edited in another tool (PNG, TIFF, ...): checked, saved as a new "
            "version and approved",
        ),
    ] = None,
    parent: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Version the --mask was edited from [default: the one `inspect` stamped in "
            "the PNG]; refused when a later version exists",
        ),
    ] = None,
    force_reason: Annotated[
        str,
        typer.Option(
            help="Import a --mask that fails the plausibility checks (empty, full, far from "
            "the baseline); the reason is kept in its history"
        ),
    ] = "",
    version: Annotated[
        int | None, typer.Option(min=1, help="Version to approve [default: the latest]")
    ] = None,
    note: Annotated[str, typer.Option(help="Comment stored with an imported mask")] = "",
) -> None:
    """Approve a mask version (or import an edited mask, then approve it); the case moves on."""
    if not editor.strip():
        _fail("give your name with --editor NAME (or set $ANGIOFLOW_EDITOR)")
    case_store = CaseStore(_store_root(store, _catalog(catalog)), create=False)
    summary = case_store.summary(case)
    if mask is not None:
        if version is not None:
            _fail("give either --mask (a new version) or --version (an existing one), not both")
        imported = import_mask(
            case_store,
            case,
            stage,
            mask,
            editor=editor,
            parent=parent,
            note=note,
            force_reason=force_reason,
        )
        version = imported.version
        forced = f", forced past: {imported.forced}" if imported.forced else ""
        console.print(
            f"saved the imported mask as {stage.value} version {version} (parent "
            f"{imported.parent}){forced}",
            highlight=False,
            soft_wrap=True,
        )
    else:
        if parent is not None or force_reason:
            _fail("--parent and --force-reason describe an imported --mask; give one")
        version = version or summary.latest_versions[stage]
        if not version:
            _fail(f"case {case} has no {stage.value} mask yet; run `angioflow curate` first")
        case_store.approve(case, stage, version=version, editor=editor)
    after = case_store.summary(case)
    redo = (
        "; its A/V labels are redone by the next `angioflow curate` and reviewed again"
        if stage is MaskKind.VESSEL and after.latest_versions[MaskKind.AV]
        else ""
    )
    console.print(
        f"{_shown(editor.strip())} approved {stage.value} version {version} of {case}; stage now "
        f"{after.stage.value}{redo}",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
@_user_errors
def phantom(
    out: Annotated[Path, typer.Argument(help="Folder for the phantom case folders")],
    n: Annotated[int, typer.Option(min=1, help="Number of exams")] = 4,
    seed: Annotated[int, typer.Option(min=0, help="Seed; the same seed gives identical files")] = 0,
    size: Annotated[
        tuple[int, int], typer.Option(help="Fundus photo height and width in pixels")
    ] = (512, 768),
    frames: Annotated[int, typer.Option(min=1, help="FA frames per exam")] = 8,
    overwrite: Annotated[bool, typer.Option(help="Rewrite case folders that hold files")] = False,
) -> None:
    """Write synthetic exams (raw case contract + truth/) with full ground truth."""
    from angioflow.pipeline.phantom import PhantomConfig, write_phantom_set

    try:
        config = PhantomConfig(size=size, n_frames=frames)
    except ValueError as error:
        _fail(str(error))
    for folder in write_phantom_set(out, n=n, seed=seed, config=config, overwrite=overwrite):
        console.print(str(folder), highlight=False)


@app.command()
@_user_errors
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's raw cases and store")] = Path(
        "angioflow-demo"
    ),
    n: Annotated[int, typer.Option(min=1, max=20, help="Number of phantom exams")] = 3,
    seed: Annotated[int, typer.Option(help="Phantom seed")] = 0,
) -> None:
    """Run the whole job end to end on built-in phantom exams: ingest, curate, automatic
    approvals clearly marked as a demo, A/V labelling, generation with the shipped small
    weights, evaluation, and one HTML report."""
    import torch
    from angioflow.flows.demo import demo_flow

    torch.set_num_threads(2)
    result = demo_flow(str(out), n=n, seed=seed)
    _print_ingest_summary(result["ingested"])
    status(store=out / "store", catalog=None, as_json=False)
    console.print(f"seconds per step: {result['seconds']}")
    console.print(f"report: {result['report']}", soft_wrap=True, highlight=False)
    if result["ingested"]["quarantined"] or result["failed"]:
        raise typer.Exit(1)


@app.command()
@_user_errors
def curate(
    store: StoreOption = None,
    catalog: CatalogOption = None,
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
) -> None:
    """Run stages 2-7 (registration ... binarisation) on every ingested case, up to review
    gate 1, and A/V labelling (stage 9) on every case whose vessel mask is approved, up to
    review gate 2. Finished stages are skipped on re-runs. Exit 1 if any case failed."""
    from angioflow.flows.curate import curate_flow
    from angioflow.pipeline.curation import CurationSettings

    task_runner = _task_runner(runner, dask_address, workers, max_threads=1)
    root = _store_root(store, _catalog(catalog))
    CaseStore(root, create=False).check_writable()  # a read-only store: one line, before Prefect
    try:
        settings = CurationSettings.from_dict(_read_config(config)).as_dict()
    except (TypeError, ValueError) as error:
        _fail(f"config file {config}: {error}")
    with terminal_progress(errors, "curate"):
        summary = curate_flow.with_options(task_runner=task_runner)(
            str(root.resolve()), settings, report=str(report.resolve()) if report else None
        )
    if as_json:
        if report is not None:
            summary = {**summary, "report": str(report / "report.html")}
        typer.echo(json.dumps(summary, indent=2))
    else:
        console.print(
            f"{len(summary['curated'])} curated to vessel review, "
            f"{len(summary['av_labelled'])} A/V-labelled to A/V review, "
            f"{len(summary['failed'])} failed, {len(summary['waiting'])} waiting for review"
        )
        for item in summary["failed"]:
            console.print(
                f"[red]failed[/] case {item['case_id']} at {item['stage']}: {item['reason']}",
                highlight=False,
                soft_wrap=True,
            )
        if report is not None:
            console.print(f"report: {report / 'report.html'}", soft_wrap=True, highlight=False)
    if summary["failed"]:
        raise typer.Exit(1)


@app.command()
@_user_errors
def inspect(
    case_id: Annotated[str, typer.Argument(help="Case id (as `status` lists it)")],
    out: Annotated[Path, typer.Option(help="Folder for the PNG and JSON files")],
    store: StoreOption = None,
    catalog: CatalogOption = None,
    version: Annotated[
        int | None,
        typer.Option(min=1, help="Version of the --stage mask (1 = baseline) [default: latest]"),
    ] = None,
    stage: Annotated[MaskKind, typer.Option(help="Which mask --version refers to")] = (
        MaskKind.VESSEL
    ),
) -> None:
    """Write a case's masks (any saved version), QC images and stage metrics as PNG + JSON."""
    from angioflow.flows.inspect import inspect_case

    root = _store_root(store, _catalog(catalog))
    written = inspect_case(CaseStore(root, create=False), case_id, out, version=version, kind=stage)
    for path in written:
        console.print(str(path), highlight=False, soft_wrap=True)


train_app = typer.Typer(help="Train angioflow's own models.", no_args_is_help=True)
app.add_typer(train_app, name="train")


def _read_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    from angioflow.flows.settings_file import SettingsFileError, read_settings

    try:
        return read_settings(path)
    except SettingsFileError as error:
        _fail(str(error))


@contextmanager
def _progress(total: int, *, enabled: bool = True) -> Iterator[Callable[[int, float], None]]:
    """A progress bar for a training run; yields the ``on_step(step, loss)`` callback."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    if not enabled:  # the other processes of a distributed run
        yield lambda step, loss: None
        return

    columns = (
        TextColumn("step {task.completed}/{task.total}"),
        BarColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("train", total=total, loss=float("nan"))
        yield lambda step, loss: progress.update(bar, completed=step, loss=loss)


SHARED_DATA = Path("../shared/data")
RunOption = Annotated[
    Path | None,
    typer.Option(
        help="Run folder: checkpoints, log, samples, weights [default: the catalog's "
        "model_weights for this model, else runs/<model>]"
    ),
]


def _training_run(
    kind: type[Any],
    values: dict[str, Any],
    config: Path | None,
    data: Path,
    out: Path | None,
    catalog: Path | None,
    model: str,
) -> tuple[Any, Path]:
    """Validated training settings and the run folder of a `train` command."""
    from pydantic import ValidationError

    try:
        settings = kind(**values)
    except ValidationError as error:
        _fail(f"{config or 'config'}: {error.errors(include_url=False, include_input=False)}")
    if settings.datasets and not data.is_dir():
        _fail(f"data folder {data} does not exist; pass --data (the shared datasets folder)")
    if out is None:
        loaded = _catalog(catalog)
        out = loaded.path("model_weights", model=model) if loaded else Path(f"runs/{model}")
    return settings, out


TrainConfigOption = Annotated[
    Path | None, typer.Option(help="YAML/JSON training config [default: built-in]")
]
DataOption = Annotated[
    Path, typer.Option(help="The shared datasets folder (DRIVE/, RITE/, LES-AV/, HRF-AV/)")
]
ResumeOption = Annotated[bool, typer.Option(help="Continue from the run folder's checkpoint")]


@train_app.command("vessel")
@_user_errors
def train_vessel_command(
    config: TrainConfigOption = None,
    out: RunOption = None,
    data: DataOption = SHARED_DATA,
    resume: ResumeOption = True,
    catalog: CatalogOption = None,
) -> None:
    """Train the vessel U-Net on the public training splits (never DRIVE test)."""
    from angioflow.models.training import VesselTrainingConfig, train_vessel
    from angioflow.models.vessel_data import load_training_images, phantom_fa_training_images

    settings, out = _training_run(
        VesselTrainingConfig, _read_config(config), config, data, out, catalog, "vessel"
    )
    console.print(f"loading {', '.join(settings.datasets)} training images from {data}")
    images = load_training_images(data, settings.datasets, model=settings.model)
    images += phantom_fa_training_images(
        settings.phantom_fa_cases, seed=settings.seed, model=settings.model
    )
    console.print(f"{len(images)} training images")
    with _progress(settings.steps) as on_step:
        train_vessel(settings, images, out, resume=resume, on_step=on_step)
    console.print(f"weights written to {out / 'weights'}")


@train_app.command("hvgn")
@_user_errors
def train_hvgn_command(
    config: TrainConfigOption = None,
    out: RunOption = None,
    data: DataOption = SHARED_DATA,
    resume: ResumeOption = True,
    catalog: CatalogOption = None,
) -> None:
    """Train the artery/vein graph network on RITE, LES-AV, HRF-AV training and phantom cases."""
    from angioflow.models.hvgn_data import load_av_training_images, phantom_av_training_images
    from angioflow.models.hvgn_training import HVGNTrainingConfig, train_hvgn

    settings, out = _training_run(
        HVGNTrainingConfig, _read_config(config), config, data, out, catalog, "hvgn"
    )
    if settings.model.fa_channels:
        _fail(
            f"{config}: the public A/V datasets have no FA; train fa_channels > 0 models on "
            "exported curated cases"
        )
    images = load_av_training_images(data, settings.datasets, model=settings.model)
    images += phantom_av_training_images(
        settings.phantom_cases, seed=settings.seed, model=settings.model
    )
    console.print(f"{len(images)} training images")
    with _progress(settings.steps) as on_step:
        train_hvgn(settings, images, out, resume=resume, on_step=on_step)
    console.print(f"weights written to {out / 'weights'}")


@train_app.command("ddpm")
@_user_errors
def train_ddpm_command(
    config: TrainConfigOption = None,
    out: RunOption = None,
    data: DataOption = SHARED_DATA,
    export: Annotated[
        list[Path] | None, typer.Option(help="`angioflow export` files to train on as well")
    ] = None,
    loss: Annotated[
        str | None, typer.Option(help="weighted (exp(c*x0)) or simple (L_simple, the ablation)")
    ] = None,
    resume: ResumeOption = True,
    catalog: CatalogOption = None,
) -> None:
    """Train the A/V mask diffusion model (several processes: launch with torchrun)."""
    import os

    from angioflow.models.ddpm_data import load_exported_masks, load_public_masks
    from angioflow.models.ddpm_training import DDPMTrainingConfig, train_ddpm

    values = _read_config(config)
    if loss is not None:
        values["loss"] = loss
    if export:
        values["exports"] = [str(p) for p in export]
    settings, out = _training_run(DDPMTrainingConfig, values, config, data, out, catalog, "ddpm")
    size, coverage = settings.model.image_size, settings.coverage
    parts = [load_public_masks(data, settings.datasets, size, coverage=coverage)]
    parts += [load_exported_masks(Path(p), size, coverage=coverage) for p in settings.exports]
    masks = np.concatenate(parts)
    if not len(masks):
        _fail("no training masks: name datasets in the config or pass --export FILE")
    lead = os.environ.get("RANK", "0") == "0"
    if lead:
        console.print(f"{len(masks)} training masks at {size}x{size}, loss {settings.loss}")
    with _progress(settings.steps, enabled=lead) as on_step:
        train_ddpm(settings, masks, out, resume=resume, on_step=on_step)
    if lead:
        console.print(f"weights written to {out / 'weights'}")


@train_app.command("edsr")
@_user_errors
def train_edsr_command(
    config: TrainConfigOption = None,
    out: RunOption = None,
    data: DataOption = SHARED_DATA,
    resume: ResumeOption = True,
    catalog: CatalogOption = None,
) -> None:
    """Train EDSR x4 super-resolution on real fundus photos (training splits)."""
    from angioflow.models.edsr_training import EDSRTrainingConfig, load_training_photos, train_edsr

    settings, out = _training_run(
        EDSRTrainingConfig, _read_config(config), config, data, out, catalog, "edsr"
    )
    photos = load_training_photos(data, settings.datasets)
    console.print(f"{len(photos)} training photos")
    with _progress(settings.steps) as on_step:
        train_edsr(settings, photos, out, resume=resume, on_step=on_step)
    console.print(f"weights written to {out / 'weights'}")


@train_app.command("pix2pixhd")
@_user_errors
def train_pix2pixhd_command(
    config: TrainConfigOption = None,
    out: RunOption = None,
    data: DataOption = SHARED_DATA,
    export: Annotated[
        list[Path] | None, typer.Option(help="`angioflow export` files to train on as well")
    ] = None,
    resume: ResumeOption = True,
    catalog: CatalogOption = None,
) -> None:
    """Train pix2pixHD (A/V mask -> fundus photo) on RITE, LES-AV, HRF-AV and exports."""
    from angioflow.models.pix2pixhd_training import (
        Pix2PixHDTrainingConfig,
        load_pairs,
        train_pix2pixhd,
    )

    values = _read_config(config)
    if export:
        values["exports"] = [str(p) for p in export]
    settings, out = _training_run(
        Pix2PixHDTrainingConfig, values, config, data, out, catalog, "pix2pixhd"
    )
    if settings.vgg_weights is not None and not Path(settings.vgg_weights).is_file():
        _fail(f"vgg_weights {settings.vgg_weights} does not exist (nothing is downloaded)")
    masks, photos = load_pairs(
        data,
        settings.datasets,
        settings.exports,
        settings.model.image_size,
        coverage=settings.coverage,
    )
    console.print(f"{len(masks)} training pairs at {settings.model.image_size} px")
    with _progress(settings.steps) as on_step:
        train_pix2pixhd(settings, masks, photos, out, resume=resume, on_step=on_step)
    console.print(f"weights written to {out / 'weights'}")


@app.command("generate-masks")
@_user_errors
def generate_masks(
    n: Annotated[int, typer.Option(min=1, help="Number of masks")],
    out: Annotated[Path, typer.Option(help="HDF5 file to write (never overwritten)")],
    weights: Annotated[Path | None, typer.Option(help="Weights folder [default: shipped]")] = None,
    sampler: Annotated[str, typer.Option(help="ddpm (T steps), ddim or dpm (--steps)")] = "ddim",
    steps: Annotated[int, typer.Option(min=1, help="Steps for ddim / dpm")] = 50,
    seed: Annotated[int, typer.Option(help="Same seed, same masks")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Masks per batch")] = 32,
    previews: Annotated[Path | None, typer.Option(help="Folder for PNG grids of the masks")] = None,
) -> None:
    """Sample A/V masks from the mask DDPM: labels (N, S, S) + probabilities in HDF5."""
    import hashlib

    import torch
    from angioflow.flows.generation import MAX_SAMPLES
    from angioflow.models.ddpm import DEFAULT_DDPM_WEIGHTS, MaskDDPM
    from angioflow.models.ddpm_sampling import sample_masks, write_mask_set
    from rich.progress import Progress

    if sampler not in ("ddpm", "ddim", "dpm"):
        _fail(f"--sampler must be ddpm, ddim or dpm, not {sampler!r}")
    if n > MAX_SAMPLES:
        _fail(f"--n {n}: at most {MAX_SAMPLES} masks per run; run several with other --seed")
    if out.exists():
        _fail(f"{out} exists; generated sets are never overwritten, name a new file")
    folder = weights or DEFAULT_DDPM_WEIGHTS
    model = MaskDDPM.load(folder)
    torch.set_num_threads(2)
    with Progress(console=console) as progress:
        bar = progress.add_task("sampling", total=n)
        maps = sample_masks(
            model,
            n,
            sampler=sampler,
            steps=steps,
            seed=seed,
            batch_size=batch_size,
            on_batch=lambda count: progress.advance(bar, count),
        )
    provenance = {
        "weights_sha256": hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest(),
        "model": model.config.model_dump(),
        "sampler": sampler,
        "steps": model.config.timesteps if sampler == "ddpm" else steps,
        "seed": seed,
        "n": n,
    }
    labels = write_mask_set(out, maps, provenance, previews=previews)
    density = (labels.reshape(len(labels), -1) > 0).mean(axis=1)
    empty = int((density < 0.01).sum())
    console.print(f"{n} masks written to {out} ({empty} with under 1% vessel pixels)")


@app.command()
@_user_errors
def generate(
    n: Annotated[int, typer.Option(min=1, help="Number of synthetic samples")],
    out: Annotated[Path, typer.Option(help="HDF5 file to write (never overwritten)")],
    sampler: Annotated[str, typer.Option(help="Mask sampler: ddpm, ddim or dpm")] = "ddim",
    steps: Annotated[int, typer.Option(min=1, help="Steps for ddim / dpm")] = 50,
    seed: Annotated[int, typer.Option(help="Same seed and weights, same set")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Samples per batch (memory)")] = 8,
    export_folders: Annotated[
        Path | None, typer.Option(help="Also write images/, av/, vessel/ PNG folders here")
    ] = None,
    ddpm: Annotated[Path | None, typer.Option(help="Mask DDPM weights [default: shipped]")] = None,
    pix2pixhd: Annotated[
        Path | None, typer.Option(help="pix2pixHD weights [default: shipped]")
    ] = None,
    edsr: Annotated[Path | None, typer.Option(help="EDSR weights [default: shipped]")] = None,
) -> None:
    """Synthetic fundus photos with their A/V and vessel masks: DDPM -> pix2pixHD -> EDSR x4.

    A killed run continues where it stopped when started again with the same options.
    """
    import torch
    from angioflow.flows.generation import MAX_SAMPLES
    from angioflow.models.ddpm import DEFAULT_DDPM_WEIGHTS
    from angioflow.models.edsr import DEFAULT_EDSR_WEIGHTS
    from angioflow.models.generation import Generators, SetRequest, generate_set
    from angioflow.models.pix2pixhd import DEFAULT_PIX2PIX_WEIGHTS
    from rich.progress import Progress

    if sampler not in ("ddpm", "ddim", "dpm"):
        _fail(f"--sampler must be ddpm, ddim or dpm, not {sampler!r}")
    if n > MAX_SAMPLES:
        _fail(f"--n {n}: at most {MAX_SAMPLES} samples per run; run several with other --seed")
    torch.set_num_threads(2)
    generators = Generators.load(
        ddpm or DEFAULT_DDPM_WEIGHTS,
        pix2pixhd or DEFAULT_PIX2PIX_WEIGHTS,
        edsr or DEFAULT_EDSR_WEIGHTS,
    )
    request = SetRequest(n=n, seed=seed, sampler=sampler, steps=steps, batch_size=batch_size)
    with Progress(console=console) as progress:
        bar = progress.add_task("generating", total=n)
        generate_set(
            generators,
            request,
            out,
            export_folders=export_folders,
            on_batch=lambda count: progress.advance(bar, count),
        )
    size = generators.output_size
    console.print(f"{n} synthetic samples of {size}x{size} written to {out}")


@app.command()
@_user_errors
def serve(
    catalog: CatalogOption = None,
    work_pool: Annotated[
        str | None,
        typer.Option(
            help="Register the deployments for this work pool's workers and exit (a process "
            "pool is created when none has that name); start workers with "
            "`prefect worker start --pool NAME`"
        ),
    ] = None,
) -> None:
    """Deploy the ingest, curate and generate flows with the catalog's datasets as parameters
    and its `schedules` (cron): served from this process, or registered for a work pool."""
    from angioflow.flows.deployments import build_deployments, register_deployments
    from prefect import serve as prefect_serve

    loaded = _catalog(catalog) or _fail(
        f"no catalog: pass --catalog FILE or run where {DEFAULT_CATALOG} is"
    )
    if work_pool is not None:
        registered = register_deployments(loaded, work_pool)
        for name, deployment_id in registered.items():
            console.print(f"registered {name} for work pool {work_pool} ({deployment_id})")
        return
    deployments = build_deployments(loaded)
    for deployment in deployments:
        schedule = loaded.schedules.get(deployment.flow_name)
        when = f"on cron '{schedule.cron}' ({schedule.timezone})" if schedule else "on demand"
        console.print(f"serving {deployment.flow_name}/{deployment.name} {when}")
    prefect_serve(*deployments)


@app.command("label-av")
@_user_errors
def label_av(
    image: Annotated[Path, typer.Argument(help="Colour fundus photo")],
    vessel: Annotated[Path, typer.Option(help="Vessel mask PNG (non-zero = vessel), same size")],
    out: Annotated[Path, typer.Option(help="Output PNG: red artery, blue vein, black background")],
    weights: Annotated[Path | None, typer.Option(help="Weights folder [default: shipped]")] = None,
    consistency: Annotated[
        bool, typer.Option(help="Vote labels along vessel segments between junctions")
    ] = True,
    class_indices: Annotated[
        bool,
        typer.Option(
            help="Write class indices (0 background, 1 artery, 2 vein, 3 crossing) as an 8-bit "
            "grey PNG for other tools, instead of the RGB picture"
        ),
    ] = False,
) -> None:
    """Label every pixel of a vessel mask artery or vein (HVGN)."""
    from angioflow.models.hvgn_inference import DEFAULT_AV_WEIGHTS, AVLabeller
    from angioflow.pipeline.av_encoding import av_to_rgb
    from angioflow.pipeline.io import ImageRejected, as_fundus, read_image
    from angioflow.pipeline.vessel_graph import av_labels
    from PIL import Image

    labeller = AVLabeller.load(weights or DEFAULT_AV_WEIGHTS)
    try:
        photo = as_fundus(read_image(image))
    except ImageRejected as error:
        _fail(f"{image}: {error}")
    try:
        mask = read_image(vessel)
    except ImageRejected as error:
        _fail(f"{vessel}: {error}")
    mask = (mask.max(axis=2) if mask.ndim == 3 else mask) > 0
    try:
        probability = labeller.artery_probability(photo, mask, consistency=consistency)
    except ValueError as error:
        _fail(f"{image}: {error}")
    out.parent.mkdir(parents=True, exist_ok=True)
    labels = av_labels(probability, mask).astype(np.uint8)
    Image.fromarray(labels if class_indices else av_to_rgb(labels)).save(out)
    console.print(f"{out}", highlight=False)
    console.print(f"weights sha256 {labeller.weights_sha256}")


@app.command()
@_user_errors
def segment(
    images: Annotated[list[Path], typer.Argument(help="Fundus photos or FA frames")],
    out: Annotated[Path, typer.Option(help="Folder for <stem>_vessel.png")],
    modality: Annotated[ImageModality, typer.Option(help="Kind of every input image")] = (
        ImageModality.FUNDUS
    ),
    weights: Annotated[Path | None, typer.Option(help="Weights folder [default: shipped]")] = None,
    scale: Annotated[float, typer.Option(min=0.25, max=4.0, help="Network scale factor")] = 1.0,
) -> None:
    """Write each image's vessel probability as <stem>_vessel.png (0-255, same size).

    An unreadable image or one of the wrong modality is reported and skipped; the others are
    still written, and the exit code is 1.
    """
    from angioflow.models.vessel_inference import DEFAULT_WEIGHTS, VesselSegmenter
    from angioflow.pipeline.io import ImageRejected, as_fa_frame, as_fundus, read_image
    from PIL import Image

    segmenter = VesselSegmenter.load(weights or DEFAULT_WEIGHTS)
    normalise = as_fundus if modality is ImageModality.FUNDUS else as_fa_frame
    out.mkdir(parents=True, exist_ok=True)
    skipped = 0
    for path in images:
        try:
            if not path.is_file():
                raise ImageRejected("no such file")
            pixels = normalise(read_image(path))
            probability = segmenter.segment(pixels, modality=modality.value, scale=scale)
        except (ImageRejected, ValueError) as error:
            errors.print(f"[yellow]skipped[/] {path}: {error}", highlight=False, soft_wrap=True)
            skipped += 1
            continue
        target = out / f"{path.stem}_vessel.png"
        Image.fromarray(np.round(probability * 255).astype(np.uint8)).save(target)
        console.print(f"{target}", highlight=False)
    console.print(f"weights sha256 {segmenter.weights_sha256}")
    if skipped:
        raise typer.Exit(1)


evaluate_app = typer.Typer(help="Metrics and reports.", no_args_is_help=True)
app.add_typer(evaluate_app, name="evaluate")


def _by_key(folder: Path) -> dict[str, Path]:
    """Files of a folder keyed by the part of their name before the first '_' or '.'."""
    if not folder.is_dir():
        _fail(f"folder {folder} does not exist")
    return {p.name.split("_")[0].split(".")[0]: p for p in sorted(folder.iterdir()) if p.is_file()}


@evaluate_app.command("vessel")
@_user_errors
def evaluate_vessel(
    pred: Annotated[Path, typer.Option(help="Folder of <id>_..._vessel.png probabilities")],
    gt: Annotated[Path, typer.Option(help="Folder of binary truth masks")],
    fov: Annotated[Path | None, typer.Option(help="Folder of FOV masks")] = None,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.5,
    as_json: JsonOption = False,
) -> None:
    """AUC, accuracy, sensitivity, specificity, F1 and clDice inside the FOV, per image and mean.

    Files are matched by the part of their name before the first '_' ('01_test_vessel.png',
    '01_manual1.gif', '01_test_mask.gif'); each file left without a partner is named in a
    warning and the number of scored images is printed with the scores.
    """
    from angioflow.flows.evaluation import pair_vessel_files, score_vessel_pairs

    pairs = pair_vessel_files(pred, gt, fov)
    rows = score_vessel_pairs(pairs, threshold=threshold)
    for role, unpaired in (
        ("prediction", pairs.unpaired_predictions),
        ("truth", pairs.unpaired_truths),
    ):
        for path in unpaired.values():
            errors.print(
                f"[yellow]warning:[/] {role} {path.name} has no partner: not scored",
                highlight=False,
                soft_wrap=True,
            )
    mean = {
        name: float(np.mean([r[name] for r in rows.values()])) for name in next(iter(rows.values()))
    }
    unpaired = {
        "predictions": sorted(pairs.unpaired_predictions),
        "truths": sorted(pairs.unpaired_truths),
    }
    if as_json:
        report = {"images": rows, "mean": mean, "n": len(rows), "unpaired": unpaired}
        typer.echo(json.dumps(report, indent=2))
        return
    truths = len(rows) + len(pairs.unpaired_truths)
    table = Table(
        title=f"Vessel segmentation, n={len(rows)} of {truths} truth images, threshold {threshold}"
    )
    table.add_column("image")
    for name in mean:
        table.add_column(name, justify="right")
    for key, row in [*rows.items(), ("mean", mean)]:
        table.add_row(key, *(f"{v:.4f}" for v in row.values()))
    console.print(table)


@evaluate_app.command("av")
@_user_errors
def evaluate_av(
    pred: Annotated[
        Path, typer.Option(help="Folder of predicted A/V masks (class indices, or red A, blue V)")
    ],
    gt: Annotated[Path, typer.Option(help="Folder of ground-truth A/V masks (either encoding)")],
    as_json: JsonOption = False,
) -> None:
    """A/V accuracy, artery and vein sensitivity on the truth's artery and vein pixels.

    Crossings (green) and uncertain pixels (white) of the truth are not scored. Files are matched
    by the part of their name before the first '_' or '.'.
    """
    from angioflow.pipeline.metrics import av_scores

    predictions, truths = _by_key(pred), _by_key(gt)
    keys = sorted(set(predictions) & set(truths))
    if not keys:
        _fail(f"no file names in {pred} match those in {gt} (matched by the part before '_')")
    rows = {}
    for key in keys:
        predicted, truth = (_read_av_file(path) for path in (predictions[key], truths[key]))
        if predicted.shape != truth.shape:
            _fail(
                f"{predictions[key].name} is {predicted.shape[1]}x{predicted.shape[0]} but "
                f"{truths[key].name} is {truth.shape[1]}x{truth.shape[0]}; labels must match"
            )
        rows[key] = av_scores(predicted, truth).as_dict()
    names = [n for n in next(iter(rows.values())) if n != "pixels"]
    mean = {name: float(np.mean([r[name] for r in rows.values()])) for name in names}
    if as_json:
        typer.echo(json.dumps({"images": rows, "mean": mean, "n": len(rows)}, indent=2))
        return
    table = Table(title=f"Artery/vein labelling, {len(rows)} images")
    table.add_column("image")
    for name in names:
        table.add_column(name, justify="right")
    for key, row in [*rows.items(), ("mean", mean)]:
        table.add_row(key, *(f"{row[n]:.4f}" for n in names))
    console.print(table)


def _read_av_file(path: Path) -> np.ndarray:
    from angioflow.pipeline.io import ImageRejected, read_av_mask

    try:
        return read_av_mask(path)
    except ImageRejected as error:
        _fail(f"{path}: {error}")


@evaluate_app.command("downstream")
@_user_errors
def evaluate_downstream(
    work: Annotated[Path, typer.Option(help="Run folders, results.json, figure and report")],
    config: Annotated[
        Path, typer.Option(help="Experiment YAML (settings, seeds, training)")
    ] = Path("configs/downstream.yaml"),
    synthetic: Annotated[
        Path | None,
        typer.Option(help="Synthetic set (HDF5) [default: generate one with the shipped weights]"),
    ] = None,
    data: DataOption = Path("../shared/data"),
) -> None:
    """Train the vessel CNN on real only, real + k synthetic and synthetic only; score each
    on the held-out real test set (DRIVE test by default). A re-run skips finished settings."""
    import torch
    from angioflow.flows.downstream import DownstreamConfig, run_downstream
    from angioflow.flows.reports import downstream_report

    settings = DownstreamConfig(**_read_config(config))
    torch.set_num_threads(settings.training.threads)
    if synthetic is None:
        from angioflow.models.generation import Generators, SetRequest, generate_set

        synthetic = work / "synthetic.h5"
        if not synthetic.exists():
            console.print(f"generating {max(settings.synthetic_counts)} synthetic samples")
            generate_set(Generators.load(), SetRequest(n=max(settings.synthetic_counts)), synthetic)

    def show(setting: Any, row: dict[str, Any]) -> None:
        console.print(
            f"{setting.name} seed {setting.seed}: AUC {row['auc']:.4f} "
            f"accuracy {row['accuracy']:.4f} F1 {row['f1']:.4f}"
        )

    results = run_downstream(settings, synthetic, data, work, on_setting=show)
    report = downstream_report(results, work)
    table = Table(title=f"Vessel CNN on {settings.test_dataset} test, mean over seeds")
    table.add_column("training set")
    metrics = ["auc", "accuracy", "sensitivity", "specificity", "f1"]
    metrics += ["av_accuracy"] if settings.av is not None else []
    for name in metrics:
        table.add_column(name, justify="right")
    for name, row in results["summary"].items():
        table.add_row(name, *(f"{row[f'{m}_mean']:.4f}" for m in metrics))
    console.print(table)
    console.print(f"report: {report}", soft_wrap=True, highlight=False)


SyntheticArgument = Annotated[
    Path, typer.Argument(help="Synthetic set (HDF5) from `angioflow generate`")
]
ReferenceDatasetsOption = Annotated[
    list[str], typer.Option("--dataset", help="Public A/V sets (training splits) as real reference")
]
ReferenceExportOption = Annotated[
    list[Path] | None, typer.Option(help="Exports of approved cases, also real reference")
]
LimitOption = Annotated[int, typer.Option(min=4, help="Synthetic samples to evaluate")]
InceptionOption = Annotated[
    Path | None,
    typer.Option(help="Inception-v3 FID weights file for true FID/KID [default: catalog]"),
]


def _synthetic_inputs(
    synthetic: Path, data: Path, datasets: list[str], export: list[Path] | None, limit: int
) -> tuple[dict[str, Any], Any]:
    import torch
    from angioflow.flows.evaluation import load_real_reference, read_synthetic

    torch.set_num_threads(2)
    if not synthetic.is_file():
        _fail(f"synthetic set {synthetic} does not exist; write one with `angioflow generate`")
    sample = read_synthetic(synthetic, limit)
    reference = load_real_reference(
        sample["images"].shape[1], data=data, datasets=tuple(datasets), exports=tuple(export or ())
    )
    return sample, reference


def _inception_weights(given: Path | None, catalog: Path | None) -> Path | None:
    loaded = _catalog(catalog)
    if given is not None or loaded is None or "inception_weights" not in loaded.datasets:
        return given
    path = loaded.path("inception_weights")
    if path.is_file():
        return path
    typer.echo(f"no Inception weights at {path}: vessel CNN features only", err=True)
    return None


@evaluate_app.command("structure")
@_user_errors
def evaluate_structure(
    synthetic: SyntheticArgument,
    data: DataOption = Path("../shared/data"),
    datasets: ReferenceDatasetsOption = ["rite", "les-av"],  # noqa: B006 - read, never mutated
    export: ReferenceExportOption = None,
    limit: LimitOption = 64,
    as_json: JsonOption = False,
) -> None:
    """Structural statistics of the set's A/V masks against real ones: per statistic the means
    and the Wasserstein distance in real standard deviations, their mean, near-empty rate."""
    from angioflow.flows.evaluation import evaluate_synthetic

    sample, reference = _synthetic_inputs(synthetic, data, datasets, export, limit)
    result = evaluate_synthetic(sample, reference, name=synthetic.name, measures=("structure",))
    if as_json:
        typer.echo(json.dumps(result["structure"], indent=2))
        return
    table = Table(
        title=f"{synthetic.name}: {result['samples']} masks vs "
        f"{result['reference']['samples']} real"
    )
    for column in ("statistic", "real mean", "synthetic mean", "Wasserstein / real sd"):
        table.add_column(column, justify="left" if column == "statistic" else "right")
    for name, values in result["structure"].items():
        if name in ("combined", "near_empty"):
            continue
        table.add_row(
            name,
            *(
                f"{values[k]:.4g}"
                for k in ("real_mean", "generated_mean", "wasserstein_in_real_sd")
            ),
        )
    console.print(table)
    console.print(
        f"structure distance {result['structure']['combined']['structure_distance']:.3f}, "
        f"near-empty rate {result['structure']['near_empty']['rate']:.3f}"
    )


@evaluate_app.command("realism")
@_user_errors
def evaluate_realism(
    synthetic: SyntheticArgument,
    data: DataOption = Path("../shared/data"),
    datasets: ReferenceDatasetsOption = ["rite", "les-av"],  # noqa: B006 - read, never mutated
    export: ReferenceExportOption = None,
    limit: LimitOption = 64,
    inception_weights: InceptionOption = None,
    catalog: CatalogOption = None,
    as_json: JsonOption = False,
) -> None:
    """Fréchet distance, KID and precision/recall of the set's photos against real photos in
    the vessel CNN's feature space (and Inception-v3's, given its weights file)."""
    from angioflow.flows.evaluation import evaluate_synthetic

    sample, reference = _synthetic_inputs(synthetic, data, datasets, export, limit)
    result = evaluate_synthetic(
        sample,
        reference,
        name=synthetic.name,
        inception_weights=_inception_weights(inception_weights, catalog),
        measures=("realism",),
    )
    if as_json:
        typer.echo(json.dumps(result["realism"], indent=2))
        return
    names = ("frechet_distance", "real_halves_frechet_distance", "kid_mean", "precision", "recall")
    table = Table(
        title=f"{synthetic.name}: {result['samples']} photos vs "
        f"{result['reference']['samples']} real"
    )
    table.add_column("features")
    for name in names:
        table.add_column(name, justify="right")
    for space, values in result["realism"].items():
        table.add_row(space, *(f"{values[n]:.4g}" for n in names))
    console.print(table)


@evaluate_app.command("report")
@_user_errors
def evaluate_report(
    out: Annotated[Path, typer.Option(help="Folder for report.html (and metrics.json)")],
    synthetic: Annotated[
        Path | None, typer.Option(help="Report on this synthetic set (full evaluation)")
    ] = None,
    store: Annotated[Path | None, typer.Option(help="Report on this case store (curation)")] = None,
    data: DataOption = Path("../shared/data"),
    datasets: ReferenceDatasetsOption = ["rite", "les-av"],  # noqa: B006 - read, never mutated
    export: ReferenceExportOption = None,
    limit: LimitOption = 64,
    inception_weights: InceptionOption = None,
    catalog: CatalogOption = None,
) -> None:
    """Self-contained HTML report. With --store: every case's stage, review state, timings, QC
    thumbnails and overlays, A/V structure. With --synthetic: vessel recovery, structural and
    image realism against real data, distributions, sample grids (metrics.json beside it)."""
    from angioflow.flows.evaluation import evaluate_synthetic
    from angioflow.flows.reports import curation_report, synthetic_report

    if (synthetic is None) == (store is None):
        _fail("give exactly one of --synthetic SET.h5 or --store STORE")
    if store is not None:
        report = curation_report(CaseStore(_store_root(store, None), create=False), out)
        console.print(f"report: {report}", soft_wrap=True, highlight=False)
        return
    sample, reference = _synthetic_inputs(synthetic, data, datasets, export, limit)
    result = evaluate_synthetic(
        sample,
        reference,
        name=synthetic.name,
        inception_weights=_inception_weights(inception_weights, catalog),
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    report = synthetic_report(result, sample, reference, out)
    console.print(
        f"vessel recovery Dice {result['recovery']['dice_mean']:.4f}, structure distance "
        f"{result['structure']['combined']['structure_distance']:.3f}, Fréchet distance "
        f"(vessel CNN) {result['realism']['vessel_cnn']['frechet_distance']:.4g}"
    )
    console.print(f"report: {report}", soft_wrap=True, highlight=False)


@app.command()
@_user_errors
def audit(
    store: StoreOption = None,
    catalog: CatalogOption = None,
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
) -> None:
    """Privacy scan: every file of the store and of the given paths (the --raw folder itself
    excepted) is searched for the raw cases' patient ids, names and birth dates and for image
    metadata (EXIF, PNG text). Exit 1 when anything is found; findings name the file and
    place, never the identifier."""
    from angioflow.pipeline.audit import audit_paths, identifiers_from_raw

    loaded = _catalog(catalog)
    roots = [_store_root(store, loaded)] + list(path or [])
    if loaded is not None:
        for name in ("training_set", "synthetic_set", "reports"):
            filepath = Path(loaded.entry(name).filepath)
            roots.append(loaded.root / (filepath.parent if "{" in filepath.name else filepath))
    missing = [str(r) for r in roots if not r.exists()]
    roots = [r for r in roots if r.exists()]
    extra = identifiers.read_text(encoding="utf-8").splitlines() if identifiers else []
    if raw is not None and not raw.is_dir():
        _fail(f"raw folder {raw} does not exist; pass the folder of the raw case folders")
    searched = identifiers_from_raw(raw, extra) if raw is not None else []
    if raw is None and not extra:
        errors.print(
            "[yellow]no --raw folder or --identifiers file: only image metadata is checked[/]"
        )
    findings = audit_paths(roots, searched, exclude=[raw] if raw is not None else [])
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "scanned": [str(r) for r in roots],
                    "not_found": missing,
                    "identifiers": len(searched),
                    "findings": [f.__dict__ for f in findings],
                },
                indent=2,
            )
        )
    else:
        skipped = raw.resolve() if raw is not None else None
        files = sum(
            1
            for r in roots
            for p in ([r] if r.is_file() else r.rglob("*"))
            if p.is_file() and not (skipped and p.resolve().is_relative_to(skipped))
        )
        console.print(
            f"scanned {files} files under {len(roots)} paths for {len(searched)} identifiers"
        )
        for finding in findings:
            console.print(f"[red]LEAK[/] {finding}", highlight=False, soft_wrap=True)
        if not findings:
            console.print("[green]no identifier or image metadata found[/]")
    if findings:
        raise typer.Exit(1)


study_app = typer.Typer(help="Blinded real-vs-synthetic reading study.", no_args_is_help=True)
app.add_typer(study_app, name="study")


@study_app.command("create")
@_user_errors
def study_create(
    real: Annotated[Path, typer.Option(help="Folder of real photos, or an export (.h5)")],
    synthetic: Annotated[
        list[str], typer.Option(help="NAME=FILE.h5 per synthetic category (repeat)")
    ],
    out: Annotated[Path, typer.Option(help="Study folder to create (the key goes beside it)")],
    per_category: Annotated[int, typer.Option(min=1, help="Images per category")] = 20,
    seed: Annotated[int, typer.Option(help="Sampling and shuffling seed (recorded)")] = 0,
    size: Annotated[int, typer.Option(min=64, help="Side of every study image in pixels")] = 512,
) -> None:
    """Sample N images per category, strip every identifying trace, shuffle, and write the
    study folder; the answer key goes to <out>.key, apart from what readers see."""
    from angioflow.flows.study import create_study, key_folder

    sets: dict[str, Path] = {}
    for item in synthetic:
        name, _, file = item.partition("=")
        if not name or not file:
            _fail(f"--synthetic {item!r}: write NAME=FILE.h5")
        if name in sets:
            _fail(f"--synthetic: category {name!r} is given twice")
        sets[name] = Path(file)
    study = create_study(real, sets, out, per_category=per_category, seed=seed, size=size)
    console.print(
        f"{study['images']} images in {out}; answer key in {key_folder(out)} (keep it from "
        "readers); start a reader with: angioflow study read "
        f"{out} --reader NAME",
        soft_wrap=True,
        highlight=False,
    )


@study_app.command("read")
@_user_errors
def study_read(
    study: Annotated[Path, typer.Argument(help="Study folder")],
    reader: Annotated[str, typer.Option(help="Reader name (letters, digits, '_', '-', '.')")],
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port on 127.0.0.1 (0: any)")] = 0,
    browser: Annotated[bool, typer.Option(help="Open the page in the default browser")] = True,
) -> None:
    """Serve the reader page on 127.0.0.1 for one reader; answers are saved after every click
    and a restarted session resumes at the first unanswered image. Ctrl-C stops it."""
    import webbrowser

    from angioflow.annotation_tools.reader import ReaderServer

    server = ReaderServer(study, reader, port)
    console.print(f"reader page for {reader}: {server.url}", soft_wrap=True, highlight=False)
    if browser:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped; every answer given is saved")


@study_app.command("report")
@_user_errors
def study_report_command(
    study: Annotated[Path, typer.Argument(help="Study folder")],
    key: Annotated[
        Path | None, typer.Option(help="Answer key folder [default: <study>.key]")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for report.json and report.png [default: <study>.report]"),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Accuracy per category and reader with 95 % Wilson intervals, share called real, and
    Fleiss' kappa between readers, laid out as the paper's Table I; JSON and a figure."""
    from angioflow.flows.reports import study_figure
    from angioflow.flows.study import study_report

    report = study_report(study, key)
    folder = out or study.with_name(study.name + ".report")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    study_figure(report).savefig(folder / "report.png", dpi=100, bbox_inches="tight")
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table(title=f"Real or synthetic? {len(report['readers'])} readers (accuracy, 95 % CI)")
    table.add_column("category")
    for reader in [*report["readers"], "all readers"]:
        table.add_column(reader, justify="right")
    table.add_column("called real", justify="right")
    for category, row in report["table"].items():
        cells = [
            f"{row[r]['accuracy']:.2f} [{row[r]['ci_low']:.2f}, {row[r]['ci_high']:.2f}]"
            if row[r]["n"]
            else "-"
            for r in [*report["readers"], "all readers"]
        ]
        called_real = row["all readers"]["called_real"]
        table.add_row(category, *cells, "-" if called_real is None else f"{called_real:.2f}")
    console.print(table)
    kappa = report["fleiss_kappa"]
    console.print(
        f"Fleiss' kappa {report['fleiss_kappa_note'] if kappa is None else f'{kappa:.3f}'} over "
        f"{report['images_rated_by_all']} images rated by every reader; report in {folder}",
        soft_wrap=True,
        highlight=False,
    )
