"""Review helpers over the case store: the queue, three-way merges of edits, imported masks.

Pure functions; the napari app (``annotation_tools``) and the CLI (``approve``, ``status``) share
them, so a mask edited in another tool and one painted in napari go through the same checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.casestore import CaseStore, CaseStoreError, MaskKind, Stage
from pipeline.qc import AV_RGB

__all__ = [
    "MaskImportError",
    "MergeResult",
    "QueueEntry",
    "gate_of",
    "merge_edits",
    "read_mask_file",
    "review_queue",
]

_MAX_MASK_PIXELS = 40_000_000


class MaskImportError(ValueError):
    """A mask file cannot be imported as a version (wrong format, size or labels)."""


@dataclass(frozen=True)
class MergeResult:
    """Edits of one reviewer replayed onto a version saved meanwhile by another.

    Attributes
    ----------
    mask : (H, W) uint8 ndarray
        The newer version with every pixel the reviewer changed set to the reviewer's label.
    changed : int
        Pixels the reviewer changed relative to the version they started from.
    conflicts : (H, W) bool ndarray
        Pixels both changed to different labels (the reviewer's label was kept there).
    """

    mask: np.ndarray
    changed: int
    conflicts: np.ndarray


@dataclass(frozen=True)
class QueueEntry:
    """A case waiting for a reviewer, as ``angioflow status`` lists it."""

    case_id: str
    gate: MaskKind
    version: int
    last_editor: str
    editing: tuple[str, ...]  # reviewers with unsaved (autosaved) edits of this gate's mask


def merge_edits(base: np.ndarray, mine: np.ndarray, theirs: np.ndarray) -> MergeResult:
    """Three-way merge of label masks.

    Parameters
    ----------
    base : (H, W) integer ndarray
        The version both edits started from.
    mine : (H, W) integer ndarray
        The reviewer's edited mask (not saved because ``theirs`` was saved first).
    theirs : (H, W) integer ndarray
        The latest saved version.

    Returns
    -------
    MergeResult

    Examples
    --------
    >>> base = np.array([[0, 0, 1]], np.uint8)
    >>> merged = merge_edits(base, np.array([[1, 0, 1]]), np.array([[0, 1, 0]]))
    >>> merged.mask.tolist(), int(merged.conflicts.sum())
    ([[1, 1, 0]], 0)
    """
    if not base.shape == mine.shape == theirs.shape:
        raise ValueError(
            f"masks to merge differ in shape: {base.shape}, {mine.shape}, {theirs.shape}"
        )
    mine_changed = mine != base
    merged = np.where(mine_changed, mine, theirs).astype(np.uint8)
    conflicts = mine_changed & (theirs != base) & (mine != theirs)
    return MergeResult(merged, int(mine_changed.sum()), conflicts)


def gate_of(stage: Stage, latest_versions: dict[str, int]) -> MaskKind | None:
    """The mask a reviewer works on for a case at ``stage`` (None before curation)."""
    if stage in (Stage.AV_REVIEW, Stage.DONE) or latest_versions.get(MaskKind.AV):
        return MaskKind.AV
    if stage is Stage.INGESTED:
        return None
    return MaskKind.VESSEL


def review_queue(store: CaseStore) -> list[QueueEntry]:
    """Cases waiting at review gate 1 or 2, oldest case id first; unreadable cases are skipped
    (``status`` reports them)."""
    entries = []
    for case_id in store.case_ids():
        try:
            summary = store.summary(case_id)
            if not summary.stage.waiting_for_review:
                continue
            gate = gate_of(summary.stage, summary.latest_versions)
            editing = tuple(sorted({a.editor for a in store.autosaves(case_id) if a.kind is gate}))
        except CaseStoreError:
            continue
        entries.append(
            QueueEntry(
                case_id=case_id,
                gate=gate,
                version=summary.latest_versions[gate],
                last_editor=summary.last_editors.get(gate, ""),
                editing=editing,
            )
        )
    return entries


def read_mask_file(path: Path, kind: MaskKind, shape: tuple[int, int]) -> np.ndarray:
    """Read a mask edited in another tool as labels of ``kind``.

    Accepted: PNG or TIFF, of the fundus photo's size. Vessel masks: greyscale or RGB with
    two values (background 0 and one vessel value, e.g. 1 or 255), 1-bit allowed. A/V masks:
    label images holding 0-3 (0 background, 1 artery, 2 vein, 3 crossing/uncertain), or RGB in
    the colours ``label-av`` writes (black, red artery, blue vein, white crossing).

    Returns
    -------
    labels : (H, W) uint8 ndarray

    Raises
    ------
    MaskImportError
        With a one-line reason naming the file and the fix.
    """
    name = path.name
    try:
        with Image.open(path) as image:
            if image.format not in ("PNG", "TIFF"):
                raise MaskImportError(f"{name}: is {image.format}, not PNG/TIFF; save it as PNG")
            if image.width * image.height > _MAX_MASK_PIXELS:
                raise MaskImportError(f"{name}: {image.width}x{image.height} is too large")
            if (image.height, image.width) != tuple(shape):
                raise MaskImportError(
                    f"{name}: is {image.width}x{image.height} but the case's fundus photo is "
                    f"{shape[1]}x{shape[0]}; export the mask at the photo's size"
                )
            if image.mode == "P":
                image = image.convert("RGB")
            pixels = np.asarray(image)
    except (UnidentifiedImageError, OSError) as error:
        raise MaskImportError(f"{name}: not a readable image ({error}); save it as PNG") from None
    if pixels.ndim == 3:
        pixels = pixels[..., :3]
        if (
            kind is MaskKind.VESSEL
            or (pixels[..., 0] == pixels[..., 1]).all()
            and (pixels[..., 1] == pixels[..., 2]).all()
        ):
            pixels = pixels.max(axis=2) if kind is MaskKind.VESSEL else pixels[..., 0]
        else:
            return _labels_from_colours(pixels, name)
    if pixels.dtype == np.bool_:
        pixels = pixels.astype(np.uint8)
    values = np.unique(pixels)
    if kind is MaskKind.VESSEL:
        if len(values) > 2 or (len(values) == 2 and values[0] != 0):
            raise MaskImportError(
                f"{name}: a vessel mask needs two values (0 and one vessel value), found "
                f"{len(values)} ({', '.join(map(str, values[:6].tolist()))}...); binarise it"
            )
        return (pixels > 0).astype(np.uint8)
    if not set(values.tolist()) <= {0, 1, 2, 3}:
        raise MaskImportError(
            f"{name}: A/V label values {sorted(set(values.tolist()) - {0, 1, 2, 3})[:6]} are not "
            "0 background, 1 artery, 2 vein or 3 crossing; or save RGB red/blue/white on black"
        )
    return pixels.astype(np.uint8)


def _labels_from_colours(rgb: np.ndarray, name: str) -> np.ndarray:
    codes = (
        (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    )
    labels = np.full(codes.shape, 255, np.uint8)
    for label, (r, g, b) in enumerate(AV_RGB.astype(np.uint32)):
        labels[codes == (r << 16 | g << 8 | b)] = label
    unknown = labels == 255
    if unknown.any():
        example = tuple(int(v) for v in rgb[unknown][0])
        raise MaskImportError(
            f"{name}: {int(unknown.sum())} pixels have colours other than black, red (artery), "
            f"blue (vein) and white (crossing), e.g. RGB {example}; repaint them or save labels 0-3"
        )
    return labels
