"""``angioflow train``: train angioflow's own models."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from angioflow.flows.cli._app import user_errors
from angioflow.flows.cli._options import PUBLIC_DATA, option_group
from angioflow.flows.cli._render import console
from angioflow.flows.training import prepare_training

train_app = typer.Typer(help="Train angioflow's own models.", no_args_is_help=True)

TrainConfigOption = Annotated[
    Path | None, typer.Option(help="YAML/JSON training config [default: built-in]")
]
RunOption = Annotated[
    Path | None,
    typer.Option(
        help="Run folder: checkpoints, log, samples, weights [default: the catalog's "
        "model_weights for this model]"
    ),
]
ResumeOption = Annotated[bool, typer.Option(help="Continue from the run folder's checkpoint")]
ExportOption = Annotated[
    list[Path] | None, typer.Option(help="`angioflow export` files to train on as well")
]


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


def _train(model: str, **options: object) -> None:
    """Prepare the run, report what was loaded, train under a progress bar."""
    job = prepare_training(model, **options)  # type: ignore[arg-type]
    if job.lead:
        for note in job.notes:
            console.print(note)
    with _progress(job.steps, enabled=job.lead) as on_step:
        weights = job.run(on_step)
    if job.lead:
        console.print(f"weights written to {weights}")


# what every model's training takes
training_options = option_group(
    "options",
    [
        ("config", TrainConfigOption, None),
        ("out", RunOption, None),
        ("resume", ResumeOption, True),
        *PUBLIC_DATA,
    ],
)


def _add_command(model: str, summary: str) -> None:
    """``angioflow train <model>`` with the options every model takes, and nothing else."""

    def command(*, options: dict[str, Any]) -> None:
        _train(model, **options)

    command.__doc__ = summary
    command.__name__ = command.__qualname__ = f"train_{model}"
    train_app.command(model)(user_errors(training_options(command)))


# --help lists the models in the order they are registered here.
_add_command("vessel", "Train the vessel U-Net on the public training splits (never DRIVE test).")
_add_command(
    "hvgn",
    "Train the artery/vein graph network on RITE, LES-AV, HRF-AV training and phantom cases.",
)


@train_app.command("ddpm")
@user_errors
@training_options
def train_ddpm(
    export: ExportOption = None,
    loss: Annotated[
        str | None, typer.Option(help="weighted (exp(c*x0)) or simple (L_simple, the ablation)")
    ] = None,
    *,
    options: dict[str, Any],
) -> None:
    """Train the A/V mask diffusion model (several processes: launch with torchrun)."""
    _train("ddpm", exports=export, loss=loss, **options)


_add_command("edsr", "Train EDSR x4 super-resolution on real fundus photos (training splits).")


@train_app.command("pix2pixhd")
@user_errors
@training_options
def train_pix2pixhd(export: ExportOption = None, *, options: dict[str, Any]) -> None:
    """Train pix2pixHD (A/V mask -> fundus photo) on RITE, LES-AV, HRF-AV and exports."""
    _train("pix2pixhd", exports=export, **options)
