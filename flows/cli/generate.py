"""Commands that run the shipped networks: generate-masks, generate, segment, label-av."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from angioflow.flows.cli._app import app, user_errors
from angioflow.flows.cli._render import console, say, warn
from angioflow.flows.prediction import label_av_file, segment_files
from rich.progress import Progress

OutSetOption = Annotated[Path, typer.Option(help="HDF5 file to write (never overwritten)")]


class ImageModality(StrEnum):
    FUNDUS = "fundus"
    FA = "fa"


@app.command("generate-masks")
@user_errors
def generate_masks(
    n: Annotated[int, typer.Option(min=1, help="Number of masks")],
    out: OutSetOption,
    weights: Annotated[Path | None, typer.Option(help="Weights folder [default: shipped]")] = None,
    sampler: Annotated[str, typer.Option(help="ddpm (T steps), ddim or dpm (--steps)")] = "ddim",
    steps: Annotated[int, typer.Option(min=1, help="Steps for ddim / dpm")] = 50,
    seed: Annotated[int, typer.Option(help="Same seed, same masks")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Masks per batch")] = 32,
    previews: Annotated[Path | None, typer.Option(help="Folder for PNG grids of the masks")] = None,
) -> None:
    """Sample A/V masks from the mask DDPM: labels (N, S, S) + probabilities in HDF5."""
    from angioflow.flows.generation import sample_mask_set  # Prefect and torch: this command

    with Progress(console=console) as progress:
        bar = progress.add_task("sampling", total=n)
        written = sample_mask_set(
            n,
            out,
            weights=weights,
            sampler=sampler,
            steps=steps,
            seed=seed,
            batch_size=batch_size,
            previews=previews,
            on_batch=lambda count: progress.advance(bar, count),
        )
    console.print(
        f"{written.n} masks written to {written.out} ({written.near_empty} with under 1% "
        "vessel pixels)"
    )


@app.command()
@user_errors
def generate(
    n: Annotated[int, typer.Option(min=1, help="Number of synthetic samples")],
    out: OutSetOption,
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
    from angioflow.flows.generation import generate_synthetic_set  # Prefect and torch

    with Progress(console=console) as progress:
        bar = progress.add_task("generating", total=n)
        written = generate_synthetic_set(
            n,
            out,
            sampler=sampler,
            steps=steps,
            seed=seed,
            batch_size=batch_size,
            export_folders=export_folders,
            weights={"ddpm": ddpm, "pix2pix": pix2pixhd, "edsr": edsr},
            on_batch=lambda count: progress.advance(bar, count),
        )
    console.print(
        f"{written.n} synthetic samples of {written.size}x{written.size} written to {written.out}"
    )


@app.command("label-av")
@user_errors
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
    done = label_av_file(
        image, vessel, out, weights=weights, consistency=consistency, class_indices=class_indices
    )
    console.print(f"{done.out}", highlight=False)
    console.print(f"weights sha256 {done.weights_sha256}")


@app.command()
@user_errors
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
    done = segment_files(images, out, modality=modality.value, weights=weights, scale=scale)
    for path, reason in done.skipped:
        warn("skipped", f"{path}: {reason}")
    for target in done.written:
        say(f"{target}")
    console.print(f"weights sha256 {done.weights_sha256}")
    if done.skipped:
        raise typer.Exit(1)
