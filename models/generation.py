"""Synthetic fundus datasets: mask cascade -> pix2pixHD -> EDSR x4, masks as ground truth.

The mask cascade (:mod:`models.ddpm.cascade`) draws soft 256 px artery/vein maps; they are
enlarged to the output size with each vessel's calibre (the set's label masks); pix2pixHD draws a
photo from them shrunk to its size as its training pairs were, and EDSR enlarges the photo to the
output size.

A set is written batch by batch: each finished batch is an immutable part file (written under a
temporary name and renamed) in ``<out>.parts/``, so a killed run continues with the next missing
batch; when every batch exists the parts are gathered into ``<out>`` (again through a temporary
name) and the parts folder is removed. Memory holds one batch at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch
from angioflow.models.ddpm import (
    DEFAULT_MASK_WEIGHTS,
    MaskCascade,
    Sampler,
    sample_cascade,
)
from angioflow.models.edsr import DEFAULT_EDSR_WEIGHTS, EDSR, upscale
from angioflow.models.pix2pixhd import (
    DEFAULT_PIX2PIX_WEIGHTS,
    GlobalGenerator,
    generator_input,
    label_masks,
    photo_uint8,
)
from angioflow.pipeline.av_encoding import av_legend, av_to_rgb, folder_legend
from angioflow.pipeline.errors import AngioflowError
from angioflow.pipeline.h5_formats import SYNTHETIC_SET
from angioflow.pipeline.mask_structure import labels_from_soft_av
from angioflow.pipeline.tree_stats import fov_disc
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "MAX_SET_SIZE",
    "DiskSpaceError",
    "Generators",
    "SetRequest",
    "check_disk_space",
    "draw_photos",
    "field_of_view",
    "generate_set",
    "synthesise",
    "write_phantom_photo_set",
]


MAX_SET_SIZE = 1024
"""Side of the largest sets (px), the seed paper's resolution: a generator whose photos EDSR
enlarges beyond it (pix2pixHD at 512 px) has them shrunk to it."""


def _sha256(folder: Path) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


@dataclass(frozen=True)
class Generators:
    """The trained models of a generation run and their weights' sha256."""

    ddpm: MaskCascade
    pix2pix: GlobalGenerator
    edsr: EDSR
    sha256: dict[str, str]

    @classmethod
    def load(
        cls,
        ddpm: Path = DEFAULT_MASK_WEIGHTS,
        pix2pix: Path = DEFAULT_PIX2PIX_WEIGHTS,
        edsr: Path = DEFAULT_EDSR_WEIGHTS,
    ) -> Generators:
        """``ddpm`` is a mask cascade's folder (``layout/`` and ``upsampler/``)."""
        return cls(
            MaskCascade.load(ddpm),
            GlobalGenerator.load(pix2pix),
            EDSR.load(edsr),
            {
                "ddpm": MaskCascade.sha256(ddpm),
                "pix2pixhd": _sha256(pix2pix),
                "edsr": _sha256(edsr),
            },
        )

    @property
    def output_size(self) -> int:
        """The set's side (px): pix2pixHD's enlarged by EDSR, at most ``MAX_SET_SIZE``."""
        return min(self.pix2pix.config.image_size * self.edsr.config.scale, MAX_SET_SIZE)


class SetRequest(BaseModel):
    """What to generate; recorded as the set's provenance (with the weights' sha256). The
    default sampler is the one the mask statistics were measured with (docs/models/ddpm.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n: int = Field(ge=1)
    seed: int = 0
    sampler: Sampler = "dpm"
    steps: int = Field(20, ge=1)
    batch_size: int = Field(8, ge=1)


def field_of_view(size: int) -> np.ndarray:
    """The centred disc the photos of the training pairs fill (cropped to their FOV), float32."""
    return fov_disc(size).astype(np.float32)


@torch.no_grad()
def draw_photos(
    generators: Generators, labels: np.ndarray, *, seed: int = 0
) -> dict[str, np.ndarray]:
    """Fundus photos for A/V label masks at the output size.

    pix2pixHD draws each photo from the masks shrunk to its size as its training pairs were
    (:func:`models.pix2pixhd.label_masks`), a style-conditioned one in the colours of a
    training photo drawn with ``seed`` from its ``style_bank``; EDSR enlarges it, to the output
    size or beyond (then it is shrunk to it by area averaging).

    Parameters
    ----------
    generators : Generators
    labels : (B, R, R) uint8
        0 background, 1 artery, 2 vein, 3 crossing, R = ``generators.output_size``; the
        vessels inside a centred field-of-view disc, as in the training pairs.

    Returns
    -------
    dict with ``images`` (B, R, R, 3) uint8, ``av`` (B, R, R) uint8 (``labels``) and
    ``vessel`` (B, R, R) uint8 0/1: every vessel of the masks is where the photo was asked to
    draw one.
    """
    if labels.shape[-1] != generators.output_size:
        raise ValueError(
            f"label masks of {labels.shape[-1]} px for a {generators.output_size} px set"
        )
    config = generators.pix2pix.config
    masks = label_masks(labels, config.image_size, coverage=config.mask_coverage)
    style = None
    if config.style:
        bank = np.asarray(config.style_bank, np.float32)
        if len(bank) == 0:
            raise ValueError("a style-conditioned generator saved without its style_bank")
        picked = np.random.default_rng(seed).integers(0, len(bank), len(masks))
        style = torch.from_numpy(bank[picked])
    photos = photo_uint8(
        generators.pix2pix(generator_input(masks, anatomy=config.anatomy), style)
    )
    images = np.stack([_at_size(upscale(generators.edsr, p), labels.shape[-1]) for p in photos])
    return {"images": images, "av": labels, "vessel": (labels > 0).astype(np.uint8)}


def _at_size(photo: np.ndarray, size: int) -> np.ndarray:
    if photo.shape[0] == size:
        return photo
    return cv2.resize(photo, (size, size), interpolation=cv2.INTER_AREA)


@torch.no_grad()
def synthesise(
    generators: Generators,
    count: int,
    *,
    seed: int,
    sampler: Sampler,
    steps: int,
    conditions: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """One batch: soft maps from the mask cascade, enlarged to the output size with calibre
    (:func:`pipeline.mask_structure.labels_from_soft_av`), drawn by :func:`draw_photos` (same
    returned arrays). ``conditions``: the batch's calibre levels for a calibre-conditioned
    layout model (drawn for the batch when None)."""
    maps = sample_cascade(
        generators.ddpm,
        count,
        sampler=sampler,
        steps=steps,
        seed=seed,
        batch_size=count,
        conditions=conditions,
    )
    return draw_photos(generators, labels_from_soft_av(maps, generators.output_size), seed=seed)


class DiskSpaceError(AngioflowError, OSError):
    """A synthetic set that would not fit on its disk; the message gives both sizes."""


def _sample_bytes(size: int) -> int:
    """Upper bound of one sample's bytes at ``size`` px: RGB photo + A/V labels + vessel mask
    (uint8, uncompressed as in the part files; the gathered HDF5 and PNGs are smaller)."""
    return size * size * 5


def _existing_folder(path: Path) -> Path:
    path = path.resolve()
    while not path.exists():
        path = path.parent
    return path


def check_disk_space(
    request: SetRequest, out: Path, size: int, *, export_folders: Path | None = None
) -> None:
    """Refuse a run that cannot fit: the batches still to write (part files), the gathered
    HDF5 beside them and, with ``export_folders``, the PNG copy, at most
    :func:`_sample_bytes` per sample each.

    Raises
    ------
    DiskSpaceError
        If a disk has less free space than its share.
    """
    per_sample = _sample_bytes(size)
    parts = out.with_name(out.name + ".parts")
    written = sum(p.stat().st_size for p in parts.glob("*.npz")) if parts.is_dir() else 0
    needs: dict[Path, int] = {}
    folder = _existing_folder(out.parent)
    needs[folder] = max(request.n * per_sample - written, 0) + request.n * per_sample
    if export_folders is not None:
        target = _existing_folder(export_folders)
        same = os.stat(target).st_dev == os.stat(folder).st_dev
        needs[folder if same else target] = needs.get(folder if same else target, 0) + (
            request.n * per_sample
        )
    for where, need in needs.items():
        free = shutil.disk_usage(where).free
        if need > free:
            raise DiskSpaceError(
                f"{request.n} samples of {size} px need up to {need / 1e9:.1f} GB in {where}, "
                f"{free / 1e9:.1f} GB are free; lower --n or free space"
            )


def generate_set(
    generators: Generators,
    request: SetRequest,
    out: Path,
    *,
    export_folders: Path | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> dict:
    """Write ``request.n`` synthetic samples to ``out`` (HDF5), resuming a killed run.

    Layout: ``images`` (N, S, S, 3) uint8, ``av`` (N, S, S) uint8 class indices
    (:mod:`pipeline.av_encoding`: 0 background, 1 artery, 2 vein, 3 crossing), ``vessel``
    (N, S, S) uint8 0/1, each chunked per sample and gzip-compressed; attributes ``format``
    ('angioflow-synthetic') and ``format_version`` (:data:`pipeline.h5_formats.SYNTHETIC_SET`),
    ``provenance`` (JSON: weights sha256s, seed, sampler, steps, n, batch size).
    With ``export_folders`` a DRIVE-like copy is written too: ``images/NNNNN.png``,
    ``av/NNNNN.png`` (class indices 0-3, 8-bit grey), ``av_preview/NNNNN.png`` (RGB for people:
    red artery, blue vein, white crossing), ``vessel/NNNNN.png`` (0/255), ``legend.json`` and
    a MONAI-style ``datalist.json`` (every sample under "training"; docs/formats.md).

    Returns the provenance.

    Raises
    ------
    FileExistsError
        If ``out`` exists, or its parts folder holds a run with other provenance.
    DiskSpaceError
        If the set cannot fit on its disk (:func:`check_disk_space`).
    """
    if out.exists():
        raise FileExistsError(f"{out} exists; synthetic sets are never overwritten")
    check_disk_space(request, out, generators.output_size, export_folders=export_folders)
    provenance = {
        "weights_sha256": generators.sha256,
        "n": request.n,
        "seed": request.seed,
        "sampler": request.sampler,
        "steps": (
            generators.ddpm.layout.config.timesteps if request.sampler == "ddpm" else request.steps
        ),
        "batch_size": request.batch_size,
        "size": generators.output_size,
    }
    parts = out.with_name(out.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    manifest = parts / "provenance.json"
    if manifest.is_file() and json.loads(manifest.read_text()) != provenance:
        raise FileExistsError(
            f"{parts} holds an unfinished run with other settings; finish it with the same "
            "options or delete that folder"
        )
    manifest.write_text(json.dumps(provenance, sort_keys=True))
    batches = range(0, request.n, request.batch_size)
    levels = generators.ddpm.set_levels(request.n, request.seed)
    for index, start in enumerate(batches):
        part = parts / f"{index:05d}.npz"
        count = min(request.batch_size, request.n - start)
        if not part.is_file():
            batch = synthesise(
                generators,
                count,
                seed=request.seed * 1_000_003 + index,
                sampler=request.sampler,
                steps=request.steps,
                conditions=None if levels is None else levels[start : start + count],
            )
            temp = part.with_suffix(".tmp")
            with open(temp, "wb") as handle:
                np.savez(handle, **batch)
            temp.replace(part)
        if on_batch is not None:
            on_batch(count)
    size = generators.output_size
    _write_set(out, request.n, size, _read_parts(parts, len(batches)), provenance)
    if export_folders is not None:
        _export_folders(out, export_folders)
    shutil.rmtree(parts)
    return provenance


def _read_parts(parts: Path, batches: int) -> Iterator[dict[str, np.ndarray]]:
    for index in range(batches):
        with np.load(parts / f"{index:05d}.npz") as part:
            yield {name: part[name] for name in ("images", "av", "vessel")}


def _write_set(
    out: Path, n: int, size: int, batches: Iterable[dict[str, np.ndarray]], provenance: dict
) -> None:
    """Write a set file (the layout of :func:`generate_set`) from batches of ``images``, ``av``
    and ``vessel`` arrays, under a temporary name renamed when complete."""
    temp = out.with_name(f".{out.name}.tmp")
    options = {"compression": "gzip", "compression_opts": 4}
    with h5py.File(temp, "w") as handle:
        images = handle.create_dataset(
            "images", (n, size, size, 3), np.uint8, chunks=(1, size, size, 3), **options
        )
        av = handle.create_dataset(
            "av", (n, size, size), np.uint8, chunks=(1, size, size), **options
        )
        vessel = handle.create_dataset(
            "vessel", (n, size, size), np.uint8, chunks=(1, size, size), **options
        )
        start = 0
        for batch in batches:
            count = len(batch["images"])
            images[start : start + count] = batch["images"]
            av[start : start + count] = batch["av"]
            vessel[start : start + count] = batch["vessel"]
            start += count
        SYNTHETIC_SET.stamp(handle)
        handle.attrs["provenance"] = json.dumps(provenance, sort_keys=True)
        handle.attrs["av_classes"] = json.dumps(av_legend())
    temp.replace(out)


def write_phantom_photo_set(out: Path, n: int, *, size: int, seed: int = 0) -> dict:
    """Write ``n`` phantom colour photos with their A/V truth as a set in the layout of
    :func:`generate_set`: the rule-based baseline a learned generator must beat.

    Each photo is rendered (:func:`pipeline.phantom.generate_case`: vessel trees grown from the
    optic disc, macula, illumination fall-off, colours calibrated to DRIVE) so that its field
    of view spans ``size`` px, then cut to the field of view and padded square, the geometry of
    generated samples; its labels are the phantom's A/V truth at the same pixels, shrunk as
    real training pairs are (:func:`models.pix2pixhd.make_pair`). Photo i is the phantom case
    of seed ``case_seed(seed, i)``.

    Returns the provenance written to the file.

    Raises
    ------
    FileExistsError
        If ``out`` exists.
    """
    from angioflow.models.pix2pixhd import make_pair
    from angioflow.pipeline.mask_structure import labels_from_channels
    from angioflow.pipeline.phantom import PhantomConfig, case_seed, generate_case

    if out.exists():
        raise FileExistsError(f"{out} exists; synthetic sets are never overwritten")
    # the phantom's FOV circle spans min(1.02 h, 0.92 w): these sides make it ``span`` wide;
    # a small set is rendered at 256 px and shrunk, as photos are, so its thin vessels stay thin
    span = max(size, 256)
    shape = (int(np.ceil(span / 1.02)), int(np.ceil(span / 0.92)) + 1)
    config = PhantomConfig(size=shape, n_frames=1, fa_size=(64, 64), bad_frame_probability=0.0)

    def render() -> Iterator[dict[str, np.ndarray]]:
        for index in range(n):
            case = generate_case(case_seed(seed, index), config)
            masks, photo = make_pair(case.fundus, case.av_labels, case.fov, size)
            labels = labels_from_channels(masks[:2] > 0.5)  # the truth inside the FOV
            yield {
                "images": photo[None],
                "av": labels[None].astype(np.uint8),
                "vessel": (labels[None] > 0).astype(np.uint8),
            }

    provenance = {"generator": "phantom", "n": n, "seed": seed, "size": size}
    _write_set(out, n, size, render(), provenance)
    return provenance


def _export_folders(path: Path, folder: Path) -> None:
    for name in ("images", "av", "av_preview", "vessel"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    items = []
    with h5py.File(path, "r") as handle:
        SYNTHETIC_SET.check(handle, path)
        for index in range(len(handle["images"])):
            stem = f"{index:05d}.png"
            av = handle["av"][index]
            Image.fromarray(handle["images"][index]).save(folder / "images" / stem)
            Image.fromarray(av).save(folder / "av" / stem)
            Image.fromarray(av_to_rgb(av)).save(folder / "av_preview" / stem)
            Image.fromarray(handle["vessel"][index] * 255).save(folder / "vessel" / stem)
            items.append(
                {"image": f"images/{stem}", "label": f"av/{stem}", "vessel": f"vessel/{stem}"}
            )
        provenance = json.loads(handle.attrs["provenance"])
    (folder / "legend.json").write_text(json.dumps(folder_legend(fov=False), indent=1) + "\n")
    datalist = {
        "format": "angioflow-synthetic-folder",
        "format_version": SYNTHETIC_SET.version,
        "description": "angioflow synthetic set; image = generated fundus photo, label = A/V "
        "class indices (legend.json), vessel = 0/255 mask; av_preview/ holds RGB pictures",
        "labels": {str(c["index"]): c["name"] for c in av_legend()},
        "provenance": provenance,
        "numTraining": len(items),
        "training": items,
    }
    (folder / "datalist.json").write_text(json.dumps(datalist, indent=1) + "\n")
