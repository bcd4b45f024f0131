"""HTML reports of a curation run, a synthetic set and the downstream experiment, each one
self-contained file (:mod:`flows.html`); each is also published as Prefect artifacts when written
inside a flow run. The curation and synthetic-set sections are drawn by
:mod:`flows.report_sections` from :mod:`flows.curation_qc`'s per-case figures."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import numpy as np
from angioflow.flows.html import Page, figure_uri, write_page
from angioflow.flows.report_sections import (
    CurationPictures,
    add_curation_sections,
    add_synthetic_sections,
)

__all__ = [
    "curation_report",
    "downstream_figure",
    "downstream_report",
    "study_figure",
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
        colours = [_setting_colour(name) for name in names]
        axis.bar(range(len(names)), means, yerr=spreads, color=colours, capsize=4)
        axis.set_xticks(range(len(names)), names, rotation=30, ha="right")
        low = min(m - s for m, s in zip(means, spreads, strict=True))
        axis.set_ylim(max(0.0, low - 0.05), min(1.0, max(means) + 0.03))
        axis.set_title(metric)
    test = results["config"]["test_dataset"]
    figure.suptitle(f"Vessel CNN trained on each set, scored on {test} test")
    figure.tight_layout()
    return figure


def _setting_colour(name: str) -> str:
    """Bar colour of a training set: real only, with synthetic / phantom photos added, or
    generated photos only (lighter)."""
    if name == "real":
        return "#4a7"
    phantom = name.endswith("phantom")
    if name.startswith("real+"):
        return "#87a" if phantom else "#48c"
    return "#bab" if phantom else "#c64"


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
        + (
            " The phantom rows are the rule-based baseline: the same settings with the "
            "phantom's rendered photos and their vessel truth in place of the synthetic set."
            if config.get("phantom_arm")
            else ""
        )
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


def curation_report(store: Any, out: Path, pictures: CurationPictures | None = None) -> Path:
    """``out/report.html``: a batch's flagged cases first, strip plots of every QC figure
    across cases, every case's stage, review state and timings, the structure of the latest
    A/V masks, and QC thumbnails of the flagged cases and a sample of the others.

    A case is flagged when it failed (an error is recorded or its file is unreadable), a
    reviewer rejected it, a frame failed registration or too many of its frames were dropped,
    or its median frame correlation, FA-photo vessel Dice or FOV coverage is below the
    thresholds of :mod:`flows.curation_qc` (stated in the report itself).

    Parameters
    ----------
    store : pipeline.casestore.CaseStore
    out : Path
        Folder of the report (created).
    pictures : CurationPictures, optional
        The QC thumbnails' size and how many cases show them.
    """
    page = Page(f"Curation report: {store.root.name}")
    rows = add_curation_sections(page, store, pictures)
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
