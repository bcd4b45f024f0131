"""The sections of the curation and synthetic-set reports: tables, strip plots, histograms
and thumbnail galleries appended to a :class:`flows.html.Page`. :mod:`flows.reports` writes
them as pages; ``angioflow demo`` puts both on one page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from angioflow.flows.curation_qc import (
    FLAG_KINDS,
    MAX_DROPPED_SHARE,
    MIN_FOV_COVERAGE,
    MIN_FRAME_CORRELATION,
    MIN_VESSEL_OVERLAP,
    CaseQC,
    case_qc,
)
from angioflow.flows.html import Page, figure_uri, jpeg_uri, png_uri

__all__ = [
    "CurationPictures",
    "add_curation_sections",
    "add_synthetic_sections",
    "qc_figure",
    "structure_figure",
]


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


@dataclass(frozen=True)
class CurationPictures:
    """The curation report's QC thumbnails: their size, and how many cases show them.

    Attributes
    ----------
    thumbnail_px : int
        Longer side of each QC thumbnail (JPEG), pixels.
    max_flagged : int
        Thumbnails are shown for at most this many flagged cases (the most severe first) ...
    sample : int
        ... and for this many unflagged cases spread evenly over the sorted case ids, so the
        page stays small for any batch size (``angioflow inspect`` writes any case's pictures).
    """

    thumbnail_px: int = 240
    max_flagged: int = 60
    sample: int = 12


def add_curation_sections(
    page: Page, store: Any, pictures: CurationPictures | None = None
) -> list[dict[str, Any]]:
    """Append the curation report's sections to ``page`` (see :func:`curation_report`), with
    ``pictures`` (default: :class:`CurationPictures`'s); returns its per-case rows, flagged
    cases first."""
    from angioflow.pipeline.av_structure import structure_stats
    from angioflow.pipeline.casestore import CaseStoreError

    pictures = pictures or CurationPictures()
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
                for s, kind in enumerate(FLAG_KINDS)
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
    shown_flagged, sample = _picture_cases(cases, pictures.max_flagged, pictures.sample)
    page.section("Quality control pictures")
    page.paragraph(
        f"Flagged cases ({len(shown_flagged)} of {len(flagged)} shown) and a sample of "
        f"{len(sample)} of the {len(cases) - len(flagged)} others; `angioflow inspect CASE` "
        "writes any case's pictures at full size.",
        css="note",
    )
    for qc in shown_flagged + sample:
        try:
            items = _gallery(store, qc, pictures.thumbnail_px)
        except CaseStoreError as error:
            page.paragraph(f"{qc.case_id}: pictures unreadable ({error})", css="warn")
            continue
        page.paragraph(f"{qc.case_id}: {'; '.join(qc.flags) or 'not flagged'}")
        page.images(items, width=pictures.thumbnail_px)
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
        summary |= {"structure": structure["combined"] | structure["near_empty"]}
        page.section("Image realism")
        if "realism" not in result:
            page.paragraph(f"Not measured: {result['not_measured']['realism']}.")
        else:
            page.paragraph(
                "Fréchet distance, KID and k-NN precision/recall (k = 3) per feature space; "
                "real_halves_frechet_distance is the distance between two halves of the real "
                "set, the floor a synthetic set of this size can reach."
            )
            page.table(
                [{"features": space} | values for space, values in result["realism"].items()]
            )
            summary |= {f"realism ({k})": v for k, v in result["realism"].items()}
    if "two_sample" in result:
        test = result["two_sample"]
        page.section("Classifier two-sample test")
        page.paragraph(
            "A small CNN learns, by cross-validation, to tell 128 px crops of the synthetic "
            f"photos from crops of {test['real_samples']} real photos held out of every "
            f"generator's training ({', '.join(test['real_sources'])}); auc is over the photos "
            "each fold did not train on. 0.5: nothing tells the sets apart; 1: every photo's "
            "source is told."
        )
        values = {k: v for k, v in test.items() if k != "real_sources"}
        page.table([values])
        summary |= {"two-sample test": values}
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
