"""The ``angioflow`` command line: validates options and calls flows; nothing more."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from flows.catalog import DEFAULT_CATALOG, Catalog, CatalogError, load_catalog
from pipeline.casestore import CaseStore, CaseStoreError, MaskKind
from pipeline.ingest import read_quarantine

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


def _fail(message: str) -> NoReturn:
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn expected failures into a one-line message and exit code 2, never a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (CatalogError, CaseStoreError, FileNotFoundError, PermissionError) as error:
            _fail(str(error))

    return wrapper


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
    as_json: JsonOption = False,
) -> None:
    """Validate and store raw cases; bad ones are quarantined with a reason. Exit 1 if any was."""
    from flows.ingest import ingest_flow

    if not source.is_dir():
        _fail(f"source folder {source} does not exist; pass the folder holding the case folders")
    loaded = _catalog(catalog)
    root = _store_root(store, loaded)
    load_args = dict(loaded.entry("raw_exams").load_args) if loaded else {}
    if max_pixels is not None:
        load_args["max_pixels"] = max_pixels
    summary = ingest_flow(str(source.resolve()), str(root.resolve()), load_args, replace)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        _print_ingest_summary(summary)
    if summary["quarantined"]:
        raise typer.Exit(1)


def _print_ingest_summary(summary: dict[str, list[dict[str, str]]]) -> None:
    console.print(
        f"{len(summary['ingested'])} ingested, {len(summary['skipped'])} unchanged, "
        f"{len(summary['quarantined'])} quarantined"
    )
    for item in summary["quarantined"]:
        console.print(f"[yellow]quarantined[/] {item['reason']}", highlight=False, soft_wrap=True)


@app.command()
@_user_errors
def status(
    store: StoreOption = None, catalog: CatalogOption = None, as_json: JsonOption = False
) -> None:
    """Cases, their stage, who is waiting for review, and the last error; quarantined cases."""
    root = _store_root(store, _catalog(catalog))
    if not root.is_dir():
        _fail(f"no case store at {root}; run `angioflow ingest SRC --store {root}` first")
    case_store = CaseStore(root)
    rows, broken = [], []
    for case_id in case_store.case_ids():
        try:
            rows.append(case_store.summary(case_id))
        except CaseStoreError as error:
            broken.append({"case_id": case_id, "error": str(error)})
    quarantined = read_quarantine(root)
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
                            "last_error": r.last_error,
                        }
                        for r in rows
                    ],
                    "unreadable": broken,
                    "quarantined": [q.__dict__ for q in quarantined],
                },
                indent=2,
            )
        )
        return
    table = Table(title=f"Case store {root}")
    table.add_column("case", no_wrap=True)
    for column in ("eye", "frames", "fundus (WxH)", "stage", "review", "last error"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            r.case_id,
            r.eye,
            str(r.n_frames),
            f"{r.fundus_shape[1]}x{r.fundus_shape[0]}",
            r.stage.value,
            "waiting" if r.stage.waiting_for_review else "",
            r.last_error,
        )
    for b in broken:
        table.add_row(b["case_id"], "", "", "", "[red]unreadable[/]", "", b["error"])
    console.print(table)
    if quarantined:
        refused = Table(title="Quarantined (not stored)")
        for column in ("case", "file", "reason"):
            refused.add_column(column)
        for q in quarantined:
            refused.add_row(q.case, q.file, q.reason)
        console.print(refused)


@app.command()
@_user_errors
def history(
    case: Annotated[str, typer.Argument(help="Case id as shown by `angioflow status`")],
    store: StoreOption = None,
    catalog: CatalogOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every saved mask version and approval of a case: who, when, from which parent."""
    case_store = CaseStore(_store_root(store, _catalog(catalog)))
    versions = [v for kind in MaskKind for v in case_store.versions(case, kind)]
    approvals = [e for e in case_store.events(case) if e["event"] == "approved"]
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "versions": [{**v.__dict__, "kind": v.kind.value} for v in versions],
                    "approvals": approvals,
                },
                indent=2,
            )
        )
        return
    table = Table(title=f"History of {case}")
    for column in ("mask", "version", "parent", "editor", "time", "note", "approved by"):
        table.add_column(column)
    for v in versions:
        approvers = ", ".join(
            a["editor"]
            for a in approvals
            if a["kind"] == v.kind.value and a["version"] == v.version
        )
        table.add_row(
            v.kind.value, str(v.version), str(v.parent or ""), v.editor, v.time, v.note, approvers
        )
    console.print(table if versions else f"case {case} has no saved mask versions yet")


@app.command()
@_user_errors
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's raw cases and store")] = Path(
        "angioflow-demo"
    ),
    n: Annotated[int, typer.Option(min=1, max=20, help="Number of phantom exams")] = 3,
    seed: Annotated[int, typer.Option(help="Phantom seed")] = 0,
) -> None:
    """Run the whole job end to end on built-in phantom exams."""
    from flows.ingest import ingest_flow
    from pipeline.phantom import PhantomConfig, write_phantom_set

    raw, store = out / "raw", out / "store"
    console.print(f"writing {n} phantom exams to {raw}")
    write_phantom_set(raw, n=n, seed=seed, config=PhantomConfig(size=(384, 576), n_frames=5))
    summary = ingest_flow(str(raw.resolve()), str(store.resolve()))
    _print_ingest_summary(summary)
    status(store=store, catalog=None, as_json=False)
    if summary["quarantined"]:
        raise typer.Exit(1)
