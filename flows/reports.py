"""HTML reports of a curation run, a synthetic set and the downstream experiment; each is also
published as Prefect artifacts when written inside a flow run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from flows.html import Page, figure_uri, png_uri, write_page

__all__ = [
    "add_curation_sections",
    "add_synthetic_sections",
    "curation_report",
    "downstream_figure",
    "downstream_report",
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
    _publish("downstream", results["summary"], report)
    return report


def _publish(key: str, summary: dict[str, dict[str, Any]], report: Path) -> None:
    """Prefect artifacts (a table and the report's path) when running inside a flow or task."""
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return
    from prefect.artifacts import create_link_artifact, create_table_artifact

    rows = [
        {"name": name}
        | {
            k: (round(v, 4) if isinstance(v, float) and np.isfinite(v) else v)
            for k, v in row.items()
        }
        for name, row in summary.items()
    ]
    create_table_artifact(key=f"{key}-metrics", table=rows)
    create_link_artifact(key=f"{key}-report", link=report.resolve().as_uri())


_CASE_PICTURES = (
    ("fundus_vessel.png", "vessel mask on the photo"),
    ("fundus_av.png", "A/V mask on the photo"),
    ("qc_registration.png", "registration checkerboard"),
    ("qc_fundus.png", "FA (magenta) on photo (green)"),
    ("aggregate_max.png", "FA aggregate (max)"),
)


def curation_report(store: Any, out: Path, *, thumbnail_px: int = 320) -> Path:
    """``out/report.html``: every case's stage, review state, timings, QC thumbnails and
    overlays, and the structure of its latest A/V mask.

    Parameters
    ----------
    store : pipeline.casestore.CaseStore
    out : Path
        Folder of the report (created).
    """
    page = Page(f"Curation report: {store.root.name}")
    rows = add_curation_sections(page, store, thumbnail_px=thumbnail_px)
    report = write_page(page, out / "report.html")
    _publish(
        "curation", {r["case"]: {k: v for k, v in r.items() if k != "case"} for r in rows}, report
    )
    return report


def add_curation_sections(
    page: Page, store: Any, *, thumbnail_px: int = 320
) -> list[dict[str, Any]]:
    """Append the curation report's sections to ``page``; returns its per-case rows."""
    from flows.inspect import case_overview
    from pipeline.av_structure import structure_stats
    from pipeline.casestore import CaseStoreError

    rows, structure_rows, galleries, unreadable = [], [], [], []
    for case_id in store.case_ids():
        try:
            pictures, metrics = case_overview(store, case_id)
            summary = store.summary(case_id)
        except CaseStoreError as error:
            unreadable.append(f"{case_id}: {error}")
            continue
        rows.append(
            {
                "case": case_id,
                "stage": metrics["stage"],
                "frames": summary.n_frames,
                "dropped frames": len(metrics.get("frames_dropped", [])),
                "vessel versions": metrics["vessel_versions"],
                "A/V versions": metrics["av_versions"],
                "approved": ", ".join(
                    f"{kind} v{v}" for kind, v in summary.approved_versions.items() if v
                )
                or "-",
                "stage seconds": round(sum(s["seconds"] for s in metrics["stages"].values()), 1),
                "last error": summary.last_error or "",
            }
        )
        av_versions = store.versions(case_id, "av")
        if av_versions:
            stats = structure_stats(store.read_version(case_id, "av", av_versions[-1].version))
            structure_rows.append(
                {"case": case_id, "A/V version": len(av_versions)} | stats.as_dict()
            )
        galleries.append(
            (
                case_id,
                [
                    (caption, png_uri(pictures[name], max_side=thumbnail_px))
                    for name, caption in _CASE_PICTURES
                    if name in pictures
                ],
            )
        )
    stages: dict[str, int] = {}
    for row in rows:
        stages[row["stage"]] = stages.get(row["stage"], 0) + 1
    page.paragraph(
        f"{len(rows)} cases: " + ", ".join(f"{n} {stage}" for stage, n in sorted(stages.items()))
    )
    if unreadable:
        page.paragraph("Unreadable: " + "; ".join(unreadable), css="warn")
    page.section("Cases")
    page.table(rows)
    page.section("A/V mask structure (latest versions)")
    page.table(structure_rows)
    page.section("Quality control")
    for case_id, items in galleries:
        page.paragraph(case_id)
        page.images(items, width=thumbnail_px)
    return rows


def structure_figure(stats: dict[str, list[dict[str, float]]]) -> Any:
    """One histogram per structural statistic, real and synthetic overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline.av_structure import STATISTICS

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
    from pipeline.qc import label_overlay

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
    _publish("synthetic", summary, report)
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
