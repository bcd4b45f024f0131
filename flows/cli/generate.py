"""Commands that run the shipped networks: generate-masks, generate, segment, label-av."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from angioflow.flows.cli._app import app, user_errors
from angioflow.flows.cli._options import option_group
from angioflow.flows.cli._render import console, say, warn
from angioflow.flows.prediction import label_av_file, segment_files
from rich.progress import Progress

OutSetOption = Annotated[Path, typer.Option(help="HDF5 file to write (never overwritten)")]
WeightsOption = Annotated[Path | None, typer.Option(help="Weights folder [default: shipped]")]
MaskWeightsOption = Annotated[
    Path | None, typer.Option(help="Mask cascade weights folder [default: shipped]")
]


def _sampling(
    batch_size: int, per_batch: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The mask cascade's sampling options, as taken by ``generate-masks`` and ``generate``."""
    return option_group(
        "sampling",
        [
            (
                "sampler",
                Annotated[str, typer.Option(help="Mask sampler: ddpm (T steps), ddim or dpm")],
                "dpm",
            ),
            ("steps", Annotated[int, typer.Option(min=1, help="Steps for ddim / dpm")], 20),
            ("seed", Annotated[int, typer.Option(help="Same seed and weights, same output")], 0),
            ("batch_size", Annotated[int, typer.Option(min=1, help=per_batch)], batch_size),
        ],
    )


@contextmanager
def _progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar of ``total`` items; yields the ``on_batch(count)`` callback."""
    with Progress(console=console) as progress:
        bar = progress.add_task(label, total=total)
        yield lambda count: progress.advance(bar, count)


class ImageModality(StrEnum):
    FUNDUS = "fundus"
    FA = "fa"


@app.command("generate-masks")
@user_errors
@_sampling(8, "Masks per batch")
def generate_masks(
    n: Annotated[int, typer.Option(min=1, help="Number of masks")],
    out: OutSetOption,
    weights: MaskWeightsOption = None,
    size: Annotated[
        int, typer.Option(min=64, help="Side (px) of the label masks, with vessel calibre")
    ] = 1024,
    previews: Annotated[Path | None, typer.Option(help="Folder for PNG grids of the masks")] = None,
    *,
    sampling: dict[str, Any],
) -> None:
    """Sample A/V masks from the mask cascade: labels (N, size, size) + sampled maps in HDF5."""
    from angioflow.flows.generation import sample_mask_set  # Prefect and torch: this command

    with _progress("sampling", n) as on_batch:
        written = sample_mask_set(
            n, out, weights=weights, size=size, previews=previews, on_batch=on_batch, **sampling
        )
    console.print(
        f"{written.n} masks written to {written.out} ({written.near_empty} with under 1% "
        "vessel pixels)"
    )


@app.command()
@user_errors
@_sampling(8, "Samples per batch (memory)")
def generate(
    n: Annotated[int, typer.Option(min=1, help="Number of synthetic samples")],
    out: OutSetOption,
    export_folders: Annotated[
        Path | None, typer.Option(help="Also write images/, av/, vessel/ PNG folders here")
    ] = None,
    ddpm: MaskWeightsOption = None,
    pix2pixhd: Annotated[
        Path | None, typer.Option(help="pix2pixHD weights [default: shipped]")
    ] = None,
    edsr: Annotated[Path | None, typer.Option(help="EDSR weights [default: shipped]")] = None,
    *,
    sampling: dict[str, Any],
) -> None:
    """Synthetic fundus photos with their A/V and vessel masks: mask cascade -> pix2pixHD ->
    EDSR x4.

    A killed run continues where it stopped when started again with the same options.
    """
    from angioflow.flows.generation import generate_synthetic_set  # Prefect and torch

    weights = {"ddpm": ddpm, "pix2pix": pix2pixhd, "edsr": edsr}
    with _progress("generating", n) as on_batch:
        written = generate_synthetic_set(
            n, out, export_folders=export_folders, weights=weights, on_batch=on_batch, **sampling
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
    weights: WeightsOption = None,
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
    weights: WeightsOption = None,
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
