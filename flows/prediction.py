"""The shipped networks on the user's own images: vessel probabilities of fundus photos or FA
frames (``angioflow segment``) and artery/vein labels of a vessel mask (``angioflow label-av``),
written as PNG files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from angioflow.pipeline.errors import AngioflowError
from angioflow.pipeline.io import ImageRejected, as_fa_frame, as_fundus, read_image
from PIL import Image

__all__ = [
    "AVLabelling",
    "PredictionInputError",
    "Segmentation",
    "label_av_file",
    "segment_files",
]


class PredictionInputError(AngioflowError, ValueError):
    """An image or weights folder the networks cannot use; the message names the file."""


@dataclass(frozen=True)
class Segmentation:
    """The vessel maps written and the images skipped (with the reason)."""

    written: list[Path]
    skipped: list[tuple[Path, str]]
    weights_sha256: str


def segment_files(
    images: list[Path],
    out: Path,
    *,
    modality: str = "fundus",
    weights: Path | None = None,
    scale: float = 1.0,
) -> Segmentation:
    """Write each image's vessel probability as ``out/<stem>_vessel.png`` (0-255, same size).

    An unreadable image, or one of the wrong modality, is skipped with its reason; the others
    are still written.

    Parameters
    ----------
    images : list of Path
    out : Path
        Folder, created when missing.
    modality : {'fundus', 'fa'}
    weights : Path, optional
        Weights folder; the shipped weights by default.
    scale : float
        Network scale factor.
    """
    from angioflow.models.vessel import DEFAULT_WEIGHTS, VesselSegmenter

    segmenter = _load(VesselSegmenter.load, weights or DEFAULT_WEIGHTS)
    normalise = as_fundus if modality == "fundus" else as_fa_frame
    out.mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    for path in images:
        try:
            if not path.is_file():
                raise ImageRejected("no such file")
            pixels = normalise(read_image(path))
            probability = segmenter.segment(pixels, modality=modality, scale=scale)
        except (ImageRejected, ValueError) as error:  # this image only; the others go on
            skipped.append((path, str(error)))
            continue
        target = out / f"{path.stem}_vessel.png"
        Image.fromarray(np.round(probability * 255).astype(np.uint8)).save(target)
        written.append(target)
    return Segmentation(written, skipped, segmenter.weights_sha256)


@dataclass(frozen=True)
class AVLabelling:
    """The A/V label file written and the sha256 of the weights that labelled it."""

    out: Path
    weights_sha256: str


def label_av_file(
    image: Path,
    vessel: Path,
    out: Path,
    *,
    weights: Path | None = None,
    consistency: bool = True,
    class_indices: bool = False,
) -> AVLabelling:
    """Label every pixel of the vessel mask ``vessel`` of photo ``image`` artery or vein.

    Parameters
    ----------
    out : Path
        PNG to write: red artery, blue vein (or class indices 0-3 as 8-bit grey with
        ``class_indices``).
    consistency : bool
        Vote labels along vessel segments between junctions.

    Raises
    ------
    PredictionInputError
        An image is unreadable or the two do not fit together; the message names it.
    """
    from angioflow.models.hvgn import DEFAULT_AV_WEIGHTS, AVLabeller
    from angioflow.pipeline.av_encoding import av_to_rgb
    from angioflow.pipeline.vessel_graph import av_labels

    labeller = _load(AVLabeller.load, weights or DEFAULT_AV_WEIGHTS)
    try:
        photo = as_fundus(read_image(image))
    except ImageRejected as error:
        raise PredictionInputError(f"{image}: {error}") from None
    try:
        mask = read_image(vessel)
    except ImageRejected as error:
        raise PredictionInputError(f"{vessel}: {error}") from None
    mask = (mask.max(axis=2) if mask.ndim == 3 else mask) > 0
    try:
        probability = labeller.artery_probability(photo, mask, consistency=consistency)
    except ValueError as error:  # shapes or sizes that do not fit together
        raise PredictionInputError(f"{image}: {error}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    labels = av_labels(probability, mask).astype(np.uint8)
    Image.fromarray(labels if class_indices else av_to_rgb(labels)).save(out)
    return AVLabelling(out, labeller.weights_sha256)


def _load(load: object, folder: Path) -> object:
    """A network from its weights folder; a missing file is the user's to fix."""
    try:
        return load(folder)  # type: ignore[operator]
    except FileNotFoundError as error:
        raise PredictionInputError(str(error)) from None
