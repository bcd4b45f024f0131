"""Commands that need no data of the user's: phantom exams, and the whole job on them (demo)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from angioflow.flows.cli._app import app, user_errors
from angioflow.flows.cli._render import console, say
from angioflow.flows.cli.store import print_ingest_summary, print_status


@app.command()
@user_errors
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
    from angioflow.flows.demo import write_phantom_exams  # Prefect: loaded for this command

    written = write_phantom_exams(
        out, n=n, seed=seed, size=size, frames=frames, overwrite=overwrite
    )
    for folder in written:
        console.print(str(folder), highlight=False)


@app.command()
@user_errors
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's raw cases and store")] = Path(
        "angioflow-demo"
    ),
    n: Annotated[int, typer.Option(min=1, max=20, help="Number of phantom exams")] = 3,
    seed: Annotated[int, typer.Option(help="Phantom seed")] = 0,
    samples: Annotated[
        int, typer.Option(min=2, max=1000, help="Synthetic samples generated and evaluated")
    ] = 8,
) -> None:
    """Run the whole job end to end on built-in phantom exams: ingest, curate, automatic
    approvals clearly marked as a demo, A/V labelling, generation with the shipped small
    weights, evaluation, and one HTML report."""
    from angioflow.flows.demo import run_demo  # Prefect and torch: loaded for this command

    result = run_demo(out, n=n, seed=seed, samples=samples)
    print_ingest_summary(result.ingested)
    print_status(result.status)
    console.print(f"seconds per step: {result.seconds}")
    say(f"report: {result.report}")
    if result.ingested["quarantined"] or result.failed:
        raise typer.Exit(1)
