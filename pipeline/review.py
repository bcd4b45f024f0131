"""Review helpers over the case store: the queue, three-way merges of edits, imported masks.

Pure functions; the napari app (``annotation_tools``) and the CLI (``approve``, ``status``) share
them, so a mask edited in another tool and one painted in napari go through the same checks.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from angioflow.pipeline.casestore import (
    PIPELINE_EDITOR,
    CaseStore,
    CaseStoreError,
    MaskKind,
    Stage,
    StaleVersionError,
)
from angioflow.pipeline.io import (
    ACCEPTED_FORMATS,
    ImageLimits,
    ImageRejected,
    read_av_mask,
    read_mask,
)
from PIL import Image

from .errors import AngioflowError

__all__ = [
    "ORIGIN_KEYS",
    "ImportedMask",
    "MaskImport",
    "MaskImportError",
    "MaskOrigin",
    "MergeResult",
    "QueueEntry",
    "gate_of",
    "implausibility",
    "import_mask",
    "mask_origin",
    "merge_edits",
    "read_mask_file",
    "review_queue",
]

# PNG text keys ``angioflow inspect`` stamps on the masks it writes: case id, mask, version.
ORIGIN_KEYS = ("angioflow_case", "angioflow_mask", "angioflow_version")
# Plausibility of an imported mask: retinal vessels cover ~5-20 % of a photo, and a corrected
# mask stays within a small factor of the pipeline's baseline.
_MAX_SHARE = 0.5
_MAX_RATIO = 3.0
_MIN_COVERAGE = 0.5


class MaskImportError(AngioflowError, ValueError):
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
class MaskOrigin:
    """Where an exported mask came from (PNG text chunks written by ``angioflow inspect``)."""

    case_id: str
    kind: MaskKind
    version: int


@dataclass(frozen=True)
class ImportedMask:
    """An imported mask saved and approved: its version, its parent, and the plausibility
    problem it was forced past ("" when none)."""

    version: int
    parent: int
    forced: str


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


def gate_of(
    stage: Stage, latest_versions: dict[str, int], rejected: MaskKind | None = None
) -> MaskKind | None:
    """The mask a reviewer works on for a case at ``stage`` (None before curation).

    ``rejected`` is the kind of the rejected mask when ``stage`` is rejected. A case whose
    vessel mask is approved (again) is reviewed on its vessel mask until curate made its A/V
    labels.
    """
    if stage in (Stage.AV_REVIEW, Stage.DONE):
        return MaskKind.AV
    if stage is Stage.REJECTED:
        return rejected or (MaskKind.AV if latest_versions.get(MaskKind.AV) else MaskKind.VESSEL)
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
            gate = gate_of(
                summary.stage,
                summary.latest_versions,
                summary.rejection.kind if summary.rejection else None,
            )
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

    Accepted: any lossless format :mod:`pipeline.io` reads (PNG, TIFF, PPM/PGM/PBM, BMP, GIF) at
    the fundus photo's size; JPEG is refused (its edges hold stray values). Vessel masks:
    greyscale with two values (background 0 and one vessel value, e.g. 1 or 255), 1-bit
    allowed. A/V masks: class indices 0-3 (0 background, 1 artery, 2 vein, 3 crossing or
    uncertain), or RGB red artery / blue vein (:func:`pipeline.io.read_av_mask`).

    Parameters
    ----------
    path : Path
    kind : MaskKind
    shape : (2,) tuple of int
        The fundus photo's (H, W); the header is checked against it before any decoding.

    Returns
    -------
    labels : (H, W) uint8 ndarray

    Raises
    ------
    MaskImportError
        With a one-line reason naming the file and the fix.
    """
    name = path.name
    if not path.is_file():
        raise MaskImportError(f"{name}: is not a regular file; give the mask image file")
    image_format, size = _header(path)
    if image_format == "JPEG":
        raise MaskImportError(
            f"{name}: is JPEG, whose lossy compression leaves stray values on every edge; "
            "save the mask as PNG"
        )
    if size is not None and (size[1], size[0]) != tuple(shape):
        raise MaskImportError(
            f"{name}: is {size[0]}x{size[1]} but the case's fundus photo is "
            f"{shape[1]}x{shape[0]}; export the mask at the photo's size"
        )
    limits = ImageLimits(max_pixels=shape[0] * shape[1], min_side_px=1, max_aspect=float("inf"))
    try:
        if kind is MaskKind.AV:
            return read_av_mask(path, limits=limits)
        pixels = read_mask(path, limits=limits)
    except ImageRejected as error:
        raise MaskImportError(f"{name}: {error}") from None
    except OSError as error:
        raise MaskImportError(f"{name}: cannot be read ({error.strerror or error})") from None
    values = np.unique(pixels)
    if len(values) > 2 or (len(values) == 2 and values[0] != 0):
        raise MaskImportError(
            f"{name}: a vessel mask needs two values (0 and one vessel value), found "
            f"{len(values)} ({', '.join(map(str, values[:6].tolist()))}...); binarise it"
        )
    return (pixels > 0).astype(np.uint8)


def _header(path: Path) -> tuple[str | None, tuple[int, int] | None]:
    """(format, (width, height)) from the header alone; (None, None) when unreadable (the
    decoder then says why)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path, formats=ACCEPTED_FORMATS) as image:
                return image.format, image.size
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            return None, None


def mask_origin(path: Path) -> MaskOrigin | None:
    """The case, mask and version a PNG exported by ``angioflow inspect`` was made from, when
    the editing tool kept the file's text chunks; None otherwise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path, formats=("PNG",)) as image:
                info = dict(image.info)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            return None
    try:
        return MaskOrigin(
            case_id=str(info[ORIGIN_KEYS[0]]),
            kind=MaskKind(info[ORIGIN_KEYS[1]]),
            version=int(info[ORIGIN_KEYS[2]]),
        )
    except (KeyError, ValueError):
        return None


def implausibility(
    labels: np.ndarray,
    kind: MaskKind,
    *,
    baseline: np.ndarray | None = None,
    vessel: np.ndarray | None = None,
) -> str:
    """Why a mask is implausible as ground truth, or "" when it is plausible.

    Vessel masks: empty, more than half the image, or a vessel pixel count outside
    1/3-3x the pipeline's baseline (version 1). A/V masks: no label, more than half the image,
    no artery or no vein, labels on under half of the approved vessel mask's pixels, or over
    half of the labels off it.

    Parameters
    ----------
    labels : (H, W) uint8 ndarray
        Labels of ``kind``.
    kind : MaskKind
    baseline : (H, W) ndarray, optional
        The case's vessel baseline (vessel masks).
    vessel : (H, W) ndarray, optional
        The approved vessel mask (A/V masks).

    Returns
    -------
    reason : str
    """
    marked = labels > 0
    count, share = int(marked.sum()), float(marked.mean())
    if kind is MaskKind.VESSEL:
        if not count:
            return "holds no vessel pixel"
        if share > _MAX_SHARE:
            return f"marks {share:.0%} of the image as vessel"
        expected = 0 if baseline is None else int((baseline > 0).sum())
        if expected and not 1 / _MAX_RATIO <= count / expected <= _MAX_RATIO:
            return (
                f"holds {count} vessel pixels, {count / expected:.2f}x the {expected} of the "
                f"case's baseline (expected {1 / _MAX_RATIO:.2f}-{_MAX_RATIO:.0f}x)"
            )
        return ""
    if not count:
        return "labels no pixel"
    if share > _MAX_SHARE:
        return f"labels {share:.0%} of the image"
    missing = [name for value, name in ((1, "artery"), (2, "vein")) if not (labels == value).any()]
    if missing:
        return f"holds no {' and no '.join(missing)} label"
    if vessel is not None and (vessel > 0).any():
        on_vessel = vessel > 0
        covered = float((marked & on_vessel).sum() / on_vessel.sum())
        if covered < _MIN_COVERAGE:
            return f"labels only {covered:.0%} of the approved vessel mask's pixels"
        off = float((marked & ~on_vessel).sum() / count)
        if off > 1 - _MIN_COVERAGE:
            return f"puts {off:.0%} of its labels off the approved vessel mask"
    return ""


@dataclass(frozen=True)
class MaskImport:
    """A mask edited in another tool, to check, save as a new version and approve.

    Attributes
    ----------
    path : Path
        The edited mask (see :func:`read_mask_file`).
    parent : int, optional
        The version the mask was edited from; by default the one :func:`mask_origin` finds in
        the file. The import is refused when another version was saved after it.
    note : str
        Comment stored with the version (default: the file's sha256).
    force_reason : str
        Import a mask :func:`implausibility` refuses; the reason and the problem are stored
        in the version's note.
    """

    path: Path
    parent: int | None = None
    note: str = ""
    force_reason: str = ""


def import_mask(
    store: CaseStore, case_id: str, kind: MaskKind, request: MaskImport, *, editor: str
) -> ImportedMask:
    """Check a mask edited in another tool, save it as a new version and approve it, in one
    commit: a refused import changes nothing.

    Parameters
    ----------
    store : CaseStore
    case_id : str
    kind : MaskKind
    request : MaskImport
        The file and how to import it.
    editor : str

    Returns
    -------
    ImportedMask

    Raises
    ------
    MaskImportError
        The file is unreadable, of another case or mask, implausible, or its parent unknown.
    pipeline.casestore.StaleVersionError
        A version was saved after ``parent``.
    pipeline.casestore.CaseStoreError
        The case refuses the version (an A/V mask before the vessel mask is approved, ...).
    """
    path, parent, force_reason = request.path, request.parent, request.force_reason
    name = path.name
    summary = store.summary(case_id)
    latest = summary.latest_versions[kind]
    if kind is MaskKind.AV and not summary.approved_versions[MaskKind.VESSEL]:
        raise CaseStoreError(
            f"case {case_id}: approve the vessel mask before importing an A/V mask "
            f"(stage {summary.stage.value})"
        )
    labels = read_mask_file(path, kind, summary.fundus_shape)
    origin = mask_origin(path)
    if origin is not None and (origin.case_id, origin.kind) != (case_id, kind):
        raise MaskImportError(
            f"{name}: was exported from the {origin.kind.value} mask of case {origin.case_id}, "
            f"not the {kind.value} mask of case {case_id}; import it into that case"
        )
    if parent is None:
        if origin is None:
            raise MaskImportError(
                f"{name}: say which {kind.value} version it was edited from with --parent N "
                f"(`angioflow history {case_id}` lists them; latest is {latest})"
            )
        parent = origin.version
    elif origin is not None and origin.version != parent:
        raise MaskImportError(
            f"{name}: --parent {parent}, but the file was exported from version "
            f"{origin.version}; give the version it was edited from"
        )
    if parent != latest:
        by = summary.last_editors.get(kind.value, "")
        raise StaleVersionError(
            f"case {case_id}: {name} was edited from {kind.value} version {parent}, but version "
            f"{latest}{f' (by {by})' if by else ''} is the latest; export it with `angioflow "
            f"inspect {case_id} --out DIR`, redo your edits on it and import with --parent {latest}"
        )
    reference = None
    if kind is MaskKind.VESSEL and latest:
        first = store.versions(case_id, kind)[0]
        if first.editor == PIPELINE_EDITOR:
            reference = store.read_version(case_id, kind, 1)
    elif kind is MaskKind.AV:
        reference = store.read_version(
            case_id, MaskKind.VESSEL, summary.approved_versions[MaskKind.VESSEL]
        )
    problem = implausibility(
        labels,
        kind,
        baseline=reference if kind is MaskKind.VESSEL else None,
        vessel=reference if kind is MaskKind.AV else None,
    )
    if problem and not force_reason.strip():
        raise MaskImportError(
            f"{name}: {problem}; correct the mask, or import it anyway with --force-reason TEXT"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    note = request.note or f"imported from a file with sha256 {digest[:16]}"
    if problem:
        note += f"; forced past the check '{problem}': {force_reason.strip()}"
    version = store.save_version(
        case_id, kind, labels, editor=editor, parent=parent, note=note, approve=True
    )
    return ImportedMask(version=version, parent=parent, forced=problem)
