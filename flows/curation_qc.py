"""Per-case quality figures of a curation batch and why a case is flagged, read from each
case file's attributes and stage provenance (no pixels); :mod:`flows.report_sections` draws them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

__all__ = [
    "FLAG_KINDS",
    "MAX_DROPPED_SHARE",
    "MIN_FOV_COVERAGE",
    "MIN_FRAME_CORRELATION",
    "MIN_VESSEL_OVERLAP",
    "CaseQC",
    "case_qc",
]


# Flag thresholds of the curation report (stated in the report itself). A case is flagged when
# any holds; flagged cases are listed first, the most severe first.
MAX_DROPPED_SHARE = 0.5
"""More than this share of a case's FA frames dropped (any reason: no dye yet, blink, failed
registration). Frames before the dye arrives are dropped routinely (1-3 of the phantom's 5-10);
with more than half gone, too few frames are left to aggregate."""
MIN_FRAME_CORRELATION = 0.5
"""Median rigid vessel-map correlation of the kept frames with the reference (reference itself
excluded). Frames below the pipeline's ``min_correlation`` (0.3) are dropped and only those above
``good_correlation`` (0.8) are aggregated; a median under the midpoint means most frames barely
registered."""
MIN_VESSEL_OVERLAP = 0.5
"""Dice of the aligned FA aggregate's vessels with the photo's own vessel map (stage 6): below
half, the FA-to-photo alignment or one of the two vessel maps is suspect."""
MIN_FOV_COVERAGE = 0.5
"""Share of the photo's field of view that the registered FA frames see: below half, most of the
mask comes from the photo alone."""

FLAG_KINDS = ("failed", "rejected", "dropped frames", "low registration quality")
"""Kinds of flag, most severe first: a case's ``severity`` indexes this."""


@dataclass(frozen=True)
class CaseQC:
    """One case's review state and quality figures, read from its file's attributes and stage
    provenance (no pixels). Figures of a stage not yet run are NaN.

    Attributes
    ----------
    case_id, stage : str
    frames, dropped, failed_registration, aggregated : int or None
        FA frames in the case, dropped (any reason), dropped because registration failed its
        check, and entering the aggregate (None: file unreadable or registration not run).
    frame_correlation : float
        Median rigid vessel-map correlation of the kept frames with the reference (reference
        excluded; NaN when the reference is the only kept frame).
    fundus_correlation, vessel_overlap, fov_coverage : float
        Stage 6: correlation of FA aggregate and photo vessel maps, Dice of their vessels, share
        of the photo's FOV the FA sees.
    vessel_fraction : float
        Stage 7: share of the FOV in the baseline vessel mask.
    stage_seconds : float
        Sum over every stored stage output (NaN: file unreadable).
    vessel_versions, av_versions : int
    approved, error : str
    flags : tuple of str
        Why the case is flagged, most severe first (empty: not flagged).
    severity : int
        Index of the most severe flag's kind in ("failed", "rejected", "dropped frames",
        "low registration quality"); 4 when not flagged.
    """

    case_id: str
    stage: str
    frames: int | None = None
    dropped: int | None = None
    failed_registration: int | None = None
    aggregated: int | None = None
    frame_correlation: float = float("nan")
    fundus_correlation: float = float("nan")
    vessel_overlap: float = float("nan")
    fov_coverage: float = float("nan")
    vessel_fraction: float = float("nan")
    stage_seconds: float = float("nan")
    vessel_versions: int = 0
    av_versions: int = 0
    approved: str = "-"
    error: str = ""
    flags: tuple[str, ...] = ()
    severity: int = len(FLAG_KINDS)

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    def row(self) -> dict[str, Any]:
        """The case's row in the report's case table ('-' where a figure does not exist)."""
        row = {
            "case": self.case_id,
            "flags": "; ".join(self.flags),
            "stage": self.stage,
            "frames": self.frames,
            "dropped": self.dropped,
            "aggregated": self.aggregated,
            "frame corr.": round(self.frame_correlation, 3),
            "FA-photo Dice": round(self.vessel_overlap, 3),
            "FOV coverage": round(self.fov_coverage, 3),
            "vessel versions": self.vessel_versions,
            "A/V versions": self.av_versions,
            "approved": self.approved,
            "stage seconds": round(self.stage_seconds, 1),
            "last error": self.error,
        }
        return {k: "-" if v is None else v for k, v in row.items()}


def _flags(qc: CaseQC) -> list[tuple[int, str]]:
    """(severity, text) of every flag a case's figures raise."""
    flags = []
    if qc.error:
        flags.append((0, "failed"))
    if qc.stage == "rejected":
        flags.append((1, "rejected by a reviewer"))
    if qc.failed_registration:
        flags.append((2, f"{qc.failed_registration} frame(s) failed registration"))
    if qc.dropped is not None and qc.dropped > MAX_DROPPED_SHARE * qc.frames:
        flags.append((2, f"{qc.dropped} of {qc.frames} frames dropped"))
    for value, limit, name in (
        (qc.frame_correlation, MIN_FRAME_CORRELATION, "frame correlation"),
        (qc.vessel_overlap, MIN_VESSEL_OVERLAP, "FA-photo vessel Dice"),
        (qc.fov_coverage, MIN_FOV_COVERAGE, "FOV coverage"),
    ):
        if value < limit:  # NaN (stage not run) is never below
            flags.append((3, f"{name} {value:.2f} < {limit}"))
    return flags


def case_qc(store: Any, case_id: str) -> CaseQC:
    """:class:`CaseQC` of one stored case; a case whose file cannot be read is flagged failed.

    Parameters
    ----------
    store : pipeline.casestore.CaseStore
    case_id : str
    """
    from angioflow.pipeline.casestore import CaseStoreError

    try:
        summary = store.summary(case_id)
        stages = {name: store.read_stage(case_id, name, arrays=()) for name in summary.stages_done}
    except CaseStoreError as error:
        qc = CaseQC(case_id, "unreadable", error=str(error))
        return replace(qc, flags=("unreadable",), severity=0)
    figures: dict[str, Any] = {}
    if "registration" in stages:
        params = stages["registration"].params
        frames = params["frames"]
        correlations = [
            f["correlation"] for f in frames if f["kept"] and f["index"] != params["reference"]
        ]
        figures |= {
            "dropped": sum(not f["kept"] for f in frames),
            "failed_registration": sum(
                not f["kept"] and f["correlation"] is not None for f in frames
            ),
            "aggregated": sum(f["aggregated"] for f in frames),
            "frame_correlation": float(np.median(correlations)) if correlations else float("nan"),
        }
    if "fundus_alignment" in stages:
        params = stages["fundus_alignment"].params
        figures |= {
            "fundus_correlation": params["correlation"],
            "vessel_overlap": params["vessel_overlap_dice"],
            "fov_coverage": params["coverage_of_fov"],
        }
    if "binarisation" in stages:
        figures["vessel_fraction"] = stages["binarisation"].params["vessel_fraction_of_fov"]
    qc = CaseQC(
        case_id,
        str(summary.stage),
        frames=summary.n_frames,
        stage_seconds=sum(stage.seconds for stage in stages.values()),
        vessel_versions=summary.latest_versions["vessel"],
        av_versions=summary.latest_versions["av"],
        approved=", ".join(f"{kind} v{v}" for kind, v in summary.approved_versions.items() if v)
        or "-",
        error=summary.last_error,
        **figures,
    )
    flags = _flags(qc)
    return replace(
        qc,
        flags=tuple(text for _, text in sorted(flags, key=lambda f: f[0])),
        severity=min((severity for severity, _ in flags), default=len(FLAG_KINDS)),
    )
