"""``angioflow study``: the blinded real-vs-synthetic reading study."""

from __future__ import annotations

import webbrowser
from pathlib import Path
from typing import Annotated

import typer
from angioflow.flows.cli._app import user_errors
from angioflow.flows.cli._options import JsonOption
from angioflow.flows.cli._render import console, print_json, say
from angioflow.flows.study import create_study, key_folder
from angioflow.flows.study_outputs import serve_reader, synthetic_categories, write_study_report
from rich.table import Table

study_app = typer.Typer(help="Blinded real-vs-synthetic reading study.", no_args_is_help=True)

StudyArgument = Annotated[Path, typer.Argument(help="Study folder")]


@study_app.command("create")
@user_errors
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
    sets = synthetic_categories(synthetic)
    study = create_study(real, sets, out, per_category=per_category, seed=seed, size=size)
    say(
        f"{study['images']} images in {out}; answer key in {key_folder(out)} (keep it from "
        f"readers); start a reader with: angioflow study read {out} --reader NAME"
    )


@study_app.command("read")
@user_errors
def study_read(
    study: StudyArgument,
    reader: Annotated[str, typer.Option(help="Reader name (letters, digits, '_', '-', '.')")],
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port on 127.0.0.1 (0: any)")] = 0,
    browser: Annotated[bool, typer.Option(help="Open the page in the default browser")] = True,
) -> None:
    """Serve the reader page on 127.0.0.1 for one reader; answers are saved after every click
    and a restarted session resumes at the first unanswered image. Ctrl-C stops it."""

    def ready(url: str) -> None:
        say(f"reader page for {reader}: {url}")
        if browser:
            webbrowser.open(url)

    serve_reader(study, reader, port=port, on_ready=ready)
    console.print("stopped; every answer given is saved")


@study_app.command("report")
@user_errors
def study_report(
    study: StudyArgument,
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
    written = write_study_report(study, key, out)
    report = written.report
    if as_json:
        print_json(report)
        return
    table = Table(title=f"Real or synthetic? {len(report['readers'])} readers (accuracy, 95 % CI)")
    table.add_column("category")
    for name in [*report["readers"], "all readers"]:
        table.add_column(name, justify="right")
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
    say(
        f"Fleiss' kappa {report['fleiss_kappa_note'] if kappa is None else f'{kappa:.3f}'} over "
        f"{report['images_rated_by_all']} images rated by every reader; report in "
        f"{written.folder}"
    )
