"""HTML reports of a curation run, a synthetic set and the downstream experiment; each is also
published as Prefect artifacts when written inside a flow run."""

from __future__ import annotations

import socket
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from angioflow.flows.html import Page, figure_uri, jpeg_uri, png_uri, write_page

__all__ = [
    "MAX_DROPPED_SHARE",
    "MIN_FOV_COVERAGE",
    "MIN_FRAME_CORRELATION",
    "MIN_VESSEL_OVERLAP",
    "CaseQC",
    "add_curation_sections",
    "case_qc",
    "add_synthetic_sections",
    "curation_report",
    "downstream_figure",
    "downstream_report",
    "qc_figure",
    "study_figure",
    "structure_figure",
    "synthetic_report",
]


def downstream_figure(results: dict[str, Any]) -> Any:
    """AUC, accuracy and F1 per training set (mean over seeds, bars: standard deviation)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = results["summary"]
    names = list(summary)
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for axis, metric in zip(axes, ("auc", "accuracy", "f1"), strict=True):
        means = [summary[n][f"{metric}_mean"] for n in names]
        spreads = [summary[n][f"{metric}_std"] for n in names]
        colours = [
            "#4a7" if n == "real" else "#c64" if not n.startswith("real") else "#48c" for n in names
        ]
        axis.bar(range(len(names)), means, yerr=spreads, color=colours, capsize=4)
        axis.set_xticks(range(len(names)), names, rotation=30, ha="right")
        low = min(m - s for m, s in zip(means, spreads, strict=True))
        axis.set_ylim(max(0.0, low - 0.05), min(1.0, max(means) + 0.03))
        axis.set_title(metric)
    test = results["config"]["test_dataset"]
    figure.suptitle(f"Vessel CNN trained on each set, scored on {test} test")
    figure.tight_layout()
    return figure


def downstream_report(results: dict[str, Any], work: Path) -> Path:
    """``work/report.html`` (and ``work/downstream.png``) for :func:`run_downstream` results."""
    config = results["config"]
    page = Page("Downstream usefulness of synthetic data")
    page.paragraph(
        f"Vessel CNN trained from scratch ({config['training']['steps']} steps, batch "
        f"{config['training']['batch_size']}, seeds {config['seeds']}) on the training splits "
        f"of {', '.join(config['real_datasets'])} (real), with k synthetic images of "
        f"{results['synthetic_set']} added, or on synthetic images only; scored on "
        f"{config['test_dataset']} test (threshold 0.5, inside the FOV)."
    )
    figure = downstream_figure(results)
    figure.savefig(work / "downstream.png", dpi=100, bbox_inches="tight")
    page.section("Mean over seeds")
    metrics = ["auc", "accuracy", "sensitivity", "specificity", "f1"]
    if results["config"].get("av") is not None:
        metrics += ["av_accuracy", "artery_sensitivity", "vein_sensitivity"]
        page.paragraph(
            f"A/V columns: HVGN trained on {', '.join(config['av_real_datasets'])} (+ synthetic) "
            f"for {config['av']['steps']} steps, scored on {config['av_test_dataset']} test."
        )
    page.table(
        [
            {"training set": name, "seeds": row["seeds"]}
            | {m: f"{row[f'{m}_mean']:.4f} ± {row[f'{m}_std']:.4f}" for m in metrics}
            for name, row in results["summary"].items()
        ]
    )
    page.images([("AUC, accuracy, F1 per training set", figure_uri(figure))], width=900)
    page.section("Every run")
    page.table(
        results["settings"],
        ["name", "seed", "training_images", "auc", "accuracy", "sensitivity", "specificity", "f1"]
        + (["av_accuracy"] if results["config"].get("av") is not None else []),
    )
    report = write_page(page, work / "report.html")
    _publish(
        "downstream",
        results["summary"],
        report,
        f"# Downstream usefulness\n{len(results['settings'])} runs of "
        f"{len(results['summary'])} training sets, scored on {config['test_dataset']} test",
    )
    return report


def _publish(key: str, summary: dict[str, dict[str, Any]], report: Path, headline: str) -> None:
    """Prefect artifacts when running inside a flow or task: a table of the numbers and a
    markdown note with ``headline`` and where the report was written.

    The report's location is plain text, never a ``file://`` link: a link to the worker's disk
    opens nothing in a remote Prefect UI, while the path and host tell a reader where to copy
    the single self-contained file from.
    """
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    def value(v: Any) -> Any:  # JSON has no NaN: a figure that does not exist is null
        if isinstance(v, float):
            return round(v, 4) if np.isfinite(v) else None
        return v

    rows = [{"name": name} | {k: value(v) for k, v in row.items()} for name, row in summary.items()]
    create_table_artifact(key=f"{key}-metrics", table=rows)
    create_markdown_artifact(
        key=f"{key}-report",
        markdown=f"{headline}\n\nHTML report (one self-contained file): `{report.resolve()}` "
        f"on host `{socket.gethostname()}`",
    )


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

_SEVERITY = ("failed", "rejected", "dropped frames", "low registration quality")


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
    severity: int = len(_SEVERITY)

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
        severity=min((severity for severity, _ in flags), default=len(_SEVERITY)),
    )


# (attribute, axis label, threshold or None) of every per-case figure in the summary plot
_QC_METRICS = (
    ("frames", "FA frames", None),
    ("dropped", "frames dropped", None),
    ("aggregated", "frames aggregated", None),
    ("frame_correlation", "median frame correlation (rigid)", MIN_FRAME_CORRELATION),
    ("fundus_correlation", "FA-photo vessel-map correlation", None),
    ("vessel_overlap", "FA-photo vessel Dice", MIN_VESSEL_OVERLAP),
    ("fov_coverage", "FOV share seen by FA", MIN_FOV_COVERAGE),
    ("vessel_fraction", "vessel share of FOV (baseline)", None),
    ("stage_seconds", "stage seconds", None),
)


def qc_figure(cases: list[CaseQC]) -> Any:
    """Strip plots of every per-case QC figure across cases (one panel each): flagged cases
    red, others blue, flag thresholds dashed; cases lacking a figure are left out of its panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    columns = 3
    rows = -(-len(_QC_METRICS) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.0 * columns, 1.5 * rows + 0.4))
    jitter = np.random.default_rng(0).uniform(-0.3, 0.3, len(cases))
    flagged = np.array([qc.flagged for qc in cases], bool)
    for axis, (name, label, threshold) in zip(axes.ravel(), _QC_METRICS, strict=False):
        values = np.array([getattr(qc, name) for qc in cases], float)
        finite = np.isfinite(values)
        for chosen, colour, legend in (
            (~flagged, "#48c", "not flagged"),
            (flagged, "#c53", "flagged"),
        ):
            keep = chosen & finite
            axis.scatter(values[keep], jitter[keep], s=9, alpha=0.6, color=colour, label=legend)
        if threshold is not None:
            axis.axvline(threshold, color="#555", linestyle="--", linewidth=1)
        if name in ("frames", "dropped", "aggregated"):
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylim(-0.6, 0.6)
        axis.set_yticks([])
        axis.set_title(f"{label} ({int(finite.sum())} cases)", fontsize=9)
        axis.tick_params(labelsize=7)
    for axis in axes.ravel()[len(_QC_METRICS) :]:
        axis.axis("off")
    axes.ravel()[0].legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    return figure


_CASE_PICTURES = (
    ("fundus_vessel.png", "vessel mask on the photo"),
    ("fundus_av.png", "A/V mask on the photo"),
    ("qc_registration.png", "registration checkerboard"),
    ("qc_fundus.png", "FA (magenta) on photo (green)"),
    ("aggregate_max.png", "FA aggregate (max)"),
)


def curation_report(
    store: Any,
    out: Path,
    *,
    thumbnail_px: int = 240,
    max_flagged_pictures: int = 60,
    sample_pictures: int = 12,
) -> Path:
    """``out/report.html``: a batch's flagged cases first, strip plots of every QC figure
    across cases, every case's stage, review state and timings, the structure of the latest
    A/V masks, and QC thumbnails of the flagged cases and a sample of the others.

    A case is flagged when it failed (an error is recorded or its file is unreadable), a
    reviewer rejected it, a frame failed registration or more than :data:`MAX_DROPPED_SHARE`
    of its frames were dropped, or its median frame correlation, FA-photo vessel Dice or FOV
    coverage is below :data:`MIN_FRAME_CORRELATION`, :data:`MIN_VESSEL_OVERLAP` or
    :data:`MIN_FOV_COVERAGE`.

    Parameters
    ----------
    store : pipeline.casestore.CaseStore
    out : Path
        Folder of the report (created).
    thumbnail_px : int
        Longer side of each QC thumbnail (JPEG), pixels.
    max_flagged_pictures : int
        Thumbnails are shown for at most this many flagged cases (the most severe first) ...
    sample_pictures : int
        ... and for this many unflagged cases spread evenly over the sorted case ids, so the
        page stays small for any batch size (``angioflow inspect`` writes any case's pictures).
    """
    page = Page(f"Curation report: {store.root.name}")
    rows = add_curation_sections(
        page,
        store,
        thumbnail_px=thumbnail_px,
        max_flagged_pictures=max_flagged_pictures,
        sample_pictures=sample_pictures,
    )
    report = write_page(page, out / "report.html")
    flagged = [r for r in rows if r["flags"]]
    _publish(
        "curation",
        {r["case"]: {k: v for k, v in r.items() if k != "case"} for r in rows},
        report,
        f"# Curation report\n{len(rows)} cases, {len(flagged)} flagged"
        + "".join(f"\n- {r['case']}: {r['flags']}" for r in flagged[:20])
        + (f"\n- ... and {len(flagged) - 20} more" if len(flagged) > 20 else ""),
    )
    return report


def _picture_cases(
    cases: list[CaseQC], max_flagged: int, sample: int
) -> tuple[list[CaseQC], list[CaseQC]]:
    """The flagged cases whose pictures are shown, and an even sample of the others."""
    flagged = [qc for qc in cases if qc.flagged][:max_flagged]
    others = [qc for qc in cases if not qc.flagged]
    count = min(sample, len(others))
    return flagged, [others[int(i * len(others) / count)] for i in range(count)]


def _gallery(store: Any, qc: CaseQC, thumbnail_px: int) -> list[tuple[str, str]]:
    from angioflow.flows.inspect import case_overview

    pictures, _ = case_overview(store, qc.case_id)
    return [
        (caption, jpeg_uri(pictures[name], max_side=thumbnail_px))
        for name, caption in _CASE_PICTURES
        if name in pictures
    ]


def add_curation_sections(
    page: Page,
    store: Any,
    *,
    thumbnail_px: int = 240,
    max_flagged_pictures: int = 60,
    sample_pictures: int = 12,
) -> list[dict[str, Any]]:
    """Append the curation report's sections to ``page`` (see :func:`curation_report`);
    returns its per-case rows, flagged cases first."""
    from angioflow.pipeline.av_structure import structure_stats
    from angioflow.pipeline.casestore import CaseStoreError

    cases = sorted(
        (case_qc(store, case_id) for case_id in store.case_ids()),
        key=lambda qc: (qc.severity, qc.case_id),
    )
    flagged = [qc for qc in cases if qc.flagged]
    stages: dict[str, int] = {}
    for qc in cases:
        stages[qc.stage] = stages.get(qc.stage, 0) + 1
    page.paragraph(
        f"{len(cases)} cases: "
        + ", ".join(f"{n} {stage}" for stage, n in sorted(stages.items()))
        + f". {len(flagged)} flagged: "
        + (
            ", ".join(
                f"{sum(qc.severity == s for qc in cases)} {kind}"
                for s, kind in enumerate(_SEVERITY)
                if any(qc.severity == s for qc in cases)
            )
            or "none"
        )
        + "."
    )
    page.paragraph(
        "A case is flagged when it failed (an error is recorded, or its file is unreadable), a "
        "reviewer rejected it, a frame failed registration or more than "
        f"{MAX_DROPPED_SHARE:.0%} of its FA frames were dropped, or its median frame "
        f"correlation is below {MIN_FRAME_CORRELATION}, its FA-photo vessel Dice below "
        f"{MIN_VESSEL_OVERLAP} or the FA sees less than {MIN_FOV_COVERAGE:.0%} of the photo's "
        "field of view. Flagged cases come first, the most severe first.",
        css="note",
    )
    rows = [qc.row() for qc in cases]
    if flagged:
        page.section(f"Flagged cases ({len(flagged)})")
        page.table(
            rows[: len(flagged)],
            ["case", "flags", "stage", "last error"],
            text_columns=("flags", "stage", "last error"),
        )
    page.section("QC figures across cases")
    page.images([("every case's QC figures", figure_uri(qc_figure(cases)))], width=1150)
    page.section("Cases")
    page.table(
        rows,
        text_columns=("flags", "stage", "approved", "last error"),
        row_classes=["flagged" if qc.flagged else None for qc in cases],
    )
    structure_rows = []
    for qc in cases:
        if not qc.av_versions:
            continue
        try:
            mask = store.read_version(qc.case_id, "av", qc.av_versions)
        except CaseStoreError:
            continue
        structure_rows.append(
            {"case": qc.case_id, "A/V version": qc.av_versions} | structure_stats(mask).as_dict()
        )
    page.section("A/V mask structure (latest versions)")
    page.table(structure_rows)
    shown_flagged, sample = _picture_cases(cases, max_flagged_pictures, sample_pictures)
    page.section("Quality control pictures")
    page.paragraph(
        f"Flagged cases ({len(shown_flagged)} of {len(flagged)} shown) and a sample of "
        f"{len(sample)} of the {len(cases) - len(flagged)} others; `angioflow inspect CASE` "
        "writes any case's pictures at full size.",
        css="note",
    )
    for qc in shown_flagged + sample:
        try:
            items = _gallery(store, qc, thumbnail_px)
        except CaseStoreError as error:
            page.paragraph(f"{qc.case_id}: pictures unreadable ({error})", css="warn")
            continue
        page.paragraph(f"{qc.case_id}: {'; '.join(qc.flags) or 'not flagged'}")
        page.images(items, width=thumbnail_px)
    return rows


def structure_figure(stats: dict[str, list[dict[str, float]]]) -> Any:
    """One histogram per structural statistic, real and synthetic overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from angioflow.pipeline.av_structure import STATISTICS

    columns = 4
    rows = -(-len(STATISTICS) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.4 * rows))
    for axis, name in zip(axes.ravel(), STATISTICS, strict=False):
        values = {
            kind: np.array([s[name] for s in stats[kind]], float) for kind in ("real", "synthetic")
        }
        finite = {k: v[np.isfinite(v)] for k, v in values.items()}
        pooled = np.concatenate(list(finite.values()))
        if pooled.size:
            bins = np.histogram_bin_edges(pooled, bins=15)
            for kind, colour in (("real", "#3a7"), ("synthetic", "#c53")):
                axis.hist(
                    finite[kind], bins=bins, alpha=0.55, color=colour, label=kind, density=True
                )
        axis.set_title(name, fontsize=9)
        axis.tick_params(labelsize=7)
    for axis in axes.ravel()[len(STATISTICS) :]:
        axis.axis("off")
    axes.ravel()[0].legend(fontsize=7)
    figure.tight_layout()
    return figure


def _sample_grid(
    images: np.ndarray, labels: np.ndarray, count: int, *, thumbnail_px: int
) -> list[tuple[str, str]]:
    from angioflow.pipeline.qc import label_overlay

    items = []
    for index in range(min(count, len(images))):
        items.append((f"#{index} photo", png_uri(images[index], max_side=thumbnail_px)))
        items.append(
            (
                f"#{index} A/V mask",
                png_uri(label_overlay(images[index], labels[index]), max_side=thumbnail_px),
            )
        )
    return items


def synthetic_report(
    result: dict[str, Any],
    synthetic: dict[str, np.ndarray],
    reference: Any,
    out: Path,
    *,
    grid: int = 8,
    thumbnail_px: int = 192,
) -> Path:
    """``out/report.html`` of :func:`flows.evaluation.evaluate_synthetic`'s result.

    Parameters
    ----------
    result : dict
    synthetic : dict
        :func:`flows.evaluation.read_synthetic` output (for the sample grid).
    reference : flows.evaluation.RealReference or None
        Real pairs (a grid of them beside the synthetic one).
    """
    page = Page(f"Synthetic set {result['set']}")
    summary = add_synthetic_sections(
        page, result, synthetic, reference, grid=grid, thumbnail_px=thumbnail_px
    )
    report = write_page(page, out / "report.html")
    _publish(
        "synthetic",
        summary,
        report,
        f"# Synthetic set {result['set']}\n{result['samples']} samples evaluated",
    )
    return report


def add_synthetic_sections(
    page: Page,
    result: dict[str, Any],
    synthetic: dict[str, np.ndarray],
    reference: Any,
    *,
    grid: int = 8,
    thumbnail_px: int = 192,
) -> dict[str, dict[str, Any]]:
    """Append the synthetic-set report's sections to ``page``; returns its summary tables."""
    page.paragraph(f"{result['samples']} synthetic samples evaluated.")
    page.section("Vessel recovery")
    page.paragraph(
        "The shipped vessel CNN segments each generated photo; its output is scored against "
        "the vessel mask the photo was generated from (1 = every drawn vessel is visible)."
    )
    page.table([result["recovery"]])
    summary: dict[str, dict[str, Any]] = {"recovery": result["recovery"]}
    if "structure" in result:
        structure = result["structure"]
        page.section("Structural realism of the A/V masks")
        page.paragraph(
            f"Reference: {result['reference']['samples']} real masks from "
            f"{', '.join(result['reference']['sources'])}. Wasserstein distances are in units "
            "of the real standard deviation; structure_distance is their mean."
        )
        page.table(
            [
                {"statistic": name} | values
                for name, values in structure.items()
                if name not in ("combined", "near_empty")
            ]
        )
        page.table([structure["combined"] | structure["near_empty"]])
        page.images(
            [("real vs synthetic", figure_uri(structure_figure(result["stats"])))], width=1100
        )
        page.section("Image realism")
        page.paragraph(
            "Fréchet distance, KID and k-NN precision/recall (k = 3) per feature space; "
            "real_halves_frechet_distance is the distance between two halves of the real set, "
            "the floor a synthetic set of this size can reach."
        )
        page.table([{"features": space} | values for space, values in result["realism"].items()])
        summary |= {"structure": structure["combined"] | structure["near_empty"]}
        summary |= {f"realism ({k})": v for k, v in result["realism"].items()}
    page.section("Synthetic samples")
    page.images(
        _sample_grid(synthetic["images"], synthetic["av"], grid, thumbnail_px=thumbnail_px),
        width=thumbnail_px,
    )
    if reference is not None:
        page.section("Real samples (reference)")
        page.images(
            _sample_grid(reference.photos, reference.labels, grid, thumbnail_px=thumbnail_px),
            width=thumbnail_px,
        )
    return summary


def study_figure(report: dict[str, Any]) -> Any:
    """Accuracy per category, every reader pooled, with 95 % Wilson intervals; 0.5 is chance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    categories = report["categories"]
    rows = [report["table"][c]["all readers"] for c in categories]
    accuracy = np.array([r["accuracy"] for r in rows], float)
    low = accuracy - np.array([r["ci_low"] for r in rows])
    high = np.array([r["ci_high"] for r in rows]) - accuracy
    figure, axis = plt.subplots(figsize=(1.6 * len(categories) + 2, 3.4))
    axis.bar(
        range(len(categories)),
        accuracy,
        yerr=[low, high],
        capsize=5,
        color=["#3a7" if c == "real" else "#c53" for c in categories],
    )
    axis.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="chance")
    axis.set_xticks(range(len(categories)), categories)
    axis.set_ylim(0, 1)
    axis.set_ylabel("readers' accuracy")
    axis.set_title(f"Real or synthetic? {len(report['readers'])} readers, 95 % Wilson CI")
    axis.legend()
    figure.tight_layout()
    return figure
