"""One reviewer's session on one case: what the napari app shows and every action it offers.

No Qt here: the dock widget (:mod:`annotation_tools.app`) only forwards button presses to a
:class:`ReviewSession`, and all reads and writes go through :class:`pipeline.casestore.CaseStore`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from angioflow.pipeline.casestore import (
    Autosave,
    CaseStore,
    CaseStoreError,
    MaskKind,
    Stage,
    VersionInfo,
)
from angioflow.pipeline.registration import warp_image
from angioflow.pipeline.review import MergeResult, gate_of, merge_edits, review_queue

__all__ = ["HistoryRow", "ReviewImages", "ReviewSession"]


@dataclass(frozen=True)
class ReviewImages:
    """Everything shown under the mask, in fundus pixel coordinates.

    Attributes
    ----------
    fundus : (H, W, 3) uint8
    fa_max, fa_mean : (H, W) uint8 or None
        Aggregated FA vessel probability (stage 6), None before curation reached it.
    fa_frames : (N, H, W) uint8 or None
        Registered FA frames (each scaled to its own 99.5th percentile), time order.
    frame_times_s : tuple of float
    vessel_reference : (H, W) uint8 or None
        At gate 2 the approved vessel mask the A/V labels were made from.
    """

    fundus: np.ndarray
    fa_max: np.ndarray | None
    fa_mean: np.ndarray | None
    fa_frames: np.ndarray | None
    frame_times_s: tuple[float, ...]
    vessel_reference: np.ndarray | None


@dataclass(frozen=True)
class HistoryRow:
    """One saved version of the mask under review with its approvals and rejections."""

    saved: VersionInfo
    approved_by: tuple[str, ...]
    rejected: tuple[str, ...]  # "editor: reason"


class ReviewSession:
    """A reviewer working on the current gate's mask of one case.

    Parameters
    ----------
    store : CaseStore
    case_id : str
    editor : str
        The reviewer's name, recorded with every version, approval and rejection.
    kind : MaskKind, optional
        The mask to review; by default the case's current gate (vessel at gate 1, A/V at gate 2).

    Attributes
    ----------
    parent : int
        The version the reviewer's edits start from; a save is refused when another version was
        saved after it.
    """

    def __init__(
        self, store: CaseStore, case_id: str, editor: str, kind: MaskKind | None = None
    ) -> None:
        if not editor or not editor.strip():
            raise CaseStoreError("give your name as editor (--editor NAME) to review a case")
        summary = store.summary(case_id)
        gate = kind or gate_of(
            summary.stage,
            summary.latest_versions,
            summary.rejection.kind if summary.rejection else None,
        )
        if gate is None or not summary.latest_versions.get(gate):
            raise CaseStoreError(
                f"case {case_id} has no {(gate or MaskKind.VESSEL).value} mask to review yet "
                f"(stage {summary.stage.value}); run `angioflow curate --store {store.root}` first"
            )
        self.store, self.case_id, self.editor, self.kind = store, case_id, editor.strip(), gate
        self.parent = summary.latest_versions[gate]

    @property
    def stage(self) -> Stage:
        return self.store.summary(self.case_id).stage

    def images(self) -> ReviewImages:
        """Fundus photo, FA aggregates and registered FA frames, in fundus coordinates."""
        raw = self.store.read_raw(self.case_id)
        fa_max = fa_mean = frames = None
        times: tuple[float, ...] = ()
        done = self.store.summary(self.case_id).stages_done
        if "fundus_alignment" in done:
            aligned = self.store.read_stage(self.case_id, "fundus_alignment")
            fa_max, fa_mean = aligned.arrays["fa_max"], aligned.arrays["fa_mean"]
            if "registration" in done:
                frames, times = _frames_on_fundus(
                    self.store,
                    self.case_id,
                    raw.fa_frames,
                    raw.fa_times_s,
                    aligned.arrays["affine"],
                    raw.fundus.shape[:2],
                )
        reference = None
        if self.kind is MaskKind.AV:
            approved = self.store.summary(self.case_id).approved_versions[MaskKind.VESSEL]
            if approved:
                reference = self.store.read_version(self.case_id, MaskKind.VESSEL, approved)
        return ReviewImages(raw.fundus, fa_max, fa_mean, frames, times, reference)

    # ---- masks -----------------------------------------------------------------------------

    def mask(self, version: int | None = None) -> np.ndarray:
        """A saved version of the mask (the session's parent version by default)."""
        return self.store.read_version(self.case_id, self.kind, version or self.parent)

    def baseline(self) -> np.ndarray:
        """Version 1, the pipeline's own mask."""
        return self.store.read_version(self.case_id, self.kind, 1)

    def previous(self) -> np.ndarray | None:
        """The version before the parent, to compare against (None for the baseline)."""
        return self.mask(self.parent - 1) if self.parent > 1 else None

    @property
    def latest_version(self) -> int:
        return self.store.summary(self.case_id).latest_versions[self.kind]

    # ---- actions -----------------------------------------------------------------------------

    def save(self, mask: np.ndarray, note: str = "") -> int:
        """Save the edited mask as a new version whose parent is :attr:`parent`.

        Raises
        ------
        pipeline.casestore.StaleVersionError
            Someone saved a version since; :meth:`merge_onto_latest` or :meth:`reload` first.
        """
        self.parent = self.store.save_version(
            self.case_id, self.kind, mask, editor=self.editor, parent=self.parent, note=note
        )
        return self.parent

    def merge_onto_latest(self, mask: np.ndarray, *, base: int | None = None) -> MergeResult:
        """Replay the edits (made from version ``base``, default :attr:`parent`) onto the
        latest version; afterwards :attr:`parent` is the latest version and a save succeeds."""
        latest = self.latest_version
        result = merge_edits(self.mask(base or self.parent), mask, self.mask(latest))
        self.parent = latest
        return result

    def reload(self) -> np.ndarray:
        """Drop the edits: the latest version becomes the parent (and the autosave is removed)."""
        self.parent = self.latest_version
        self.store.discard_autosave(self.case_id, self.kind, self.editor)
        return self.mask()

    def approve(self, mask: np.ndarray | None = None, note: str = "") -> int:
        """Approve the parent version, or first save ``mask`` when it differs from it.

        Returns the approved version number.
        """
        if mask is not None and not np.array_equal(mask, self.mask()):
            self.save(mask, note or "saved on approval")
        self.store.approve(self.case_id, self.kind, version=self.parent, editor=self.editor)
        self.store.discard_autosave(self.case_id, self.kind, self.editor)
        return self.parent

    def reject(self, reason: str) -> None:
        """Reject the parent version with a reason; the case leaves the review queue."""
        self.store.reject(
            self.case_id, self.kind, version=self.parent, editor=self.editor, reason=reason
        )

    def autosave(self, mask: np.ndarray) -> None:
        """Keep unsaved edits so they survive a crash (not a version)."""
        self.store.save_autosave(
            self.case_id, self.kind, mask, editor=self.editor, parent=self.parent
        )

    def pending_autosave(self) -> Autosave | None:
        """Unsaved edits this reviewer left in an earlier session (crash, closed window)."""
        return self.store.read_autosave(self.case_id, self.kind, self.editor)

    def recover(self, autosave: Autosave) -> tuple[np.ndarray, MergeResult | None]:
        """The autosaved mask to continue from; merged onto the latest version when another
        version was saved after the one the edits started from."""
        if autosave.parent == self.latest_version:
            self.parent = autosave.parent
            return autosave.mask, None
        merged = self.merge_onto_latest(autosave.mask, base=autosave.parent)
        return merged.mask, merged

    def discard_autosave(self) -> None:
        self.store.discard_autosave(self.case_id, self.kind, self.editor)

    def history(self) -> list[HistoryRow]:
        """Every version of the mask under review, oldest first."""
        approvals = [
            e
            for e in self.store.events(self.case_id)
            if e["event"] == "approved" and e["kind"] == self.kind.value
        ]
        rejections = self.store.rejections(self.case_id, self.kind)
        return [
            HistoryRow(
                saved=v,
                approved_by=tuple(a["editor"] for a in approvals if a["version"] == v.version),
                rejected=tuple(
                    f"{r.editor}: {r.reason}" for r in rejections if r.version == v.version
                ),
            )
            for v in self.store.versions(self.case_id, self.kind)
        ]

    def next_case(self) -> str | None:
        """The next case waiting for review after this one (wrapping round), None if none."""
        waiting = [e.case_id for e in review_queue(self.store) if e.case_id != self.case_id]
        later = [c for c in waiting if c > self.case_id]
        return (later or waiting or [None])[0]


def _frames_on_fundus(
    store: CaseStore,
    case_id: str,
    frames: tuple[np.ndarray, ...],
    times_s: tuple[float, ...],
    fundus_to_reference: np.ndarray,
    shape: tuple[int, int],
) -> tuple[np.ndarray | None, tuple[float, ...]]:
    """Registered FA frames resampled on the fundus grid (rigid + affine part of the alignment;
    the aggregates carry the non-rigid refinement)."""
    registration = store.read_stage(case_id, "registration", arrays=("rigid",))
    resampled, kept_times = [], []
    for frame, time_s, reference_to_frame in zip(
        frames, times_s, registration.arrays["rigid"], strict=True
    ):
        if np.isnan(reference_to_frame).any():
            continue  # dropped by registration
        warped = warp_image(frame, reference_to_frame @ fundus_to_reference, shape)
        top = float(np.percentile(warped[warped > 0], 99.5)) if (warped > 0).any() else 1.0
        resampled.append(np.clip(warped * (255.0 / max(top, 1e-6)), 0, 255).astype(np.uint8))
        kept_times.append(time_s)
    if not resampled:
        return None, ()
    return np.stack(resampled), tuple(kept_times)
