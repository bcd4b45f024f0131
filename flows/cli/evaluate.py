"""``angioflow evaluate``: metrics and reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from angioflow.flows.cli._app import user_errors
from angioflow.flows.cli._options import PUBLIC_DATA, JsonOption, option_group
from angioflow.flows.cli._render import console, fail, print_json, say, warn
from angioflow.flows.mask_scores import score_av_folders, score_vessel_folders
from angioflow.pipeline.casestore import CaseStore
from rich.table import Table

evaluate_app = typer.Typer(help="Metrics and reports.", no_args_is_help=True)

SyntheticArgument = Annotated[
    Path, typer.Argument(help="Synthetic set (HDF5) from `angioflow generate`")
]
ReferenceDatasetsOption = Annotated[
    list[str], typer.Option("--dataset", help="Public A/V sets (training splits) as real reference")
]
ReferenceExportOption = Annotated[
    list[Path] | None,
    typer.Option("--export", help="Exports of approved cases, also real reference"),
]
LimitOption = Annotated[int, typer.Option(min=4, help="Synthetic samples to evaluate")]
InceptionOption = Annotated[
    Path | None,
    typer.Option(help="Inception-v3 FID weights file for true FID/KID [default: catalog]"),
]
# the real data a synthetic set is judged against, and how many of its samples:
# SetEvaluationRequest's fields of these names
against_reference = option_group(
    "reference",
    [
        *PUBLIC_DATA,
        ("datasets", ReferenceDatasetsOption, ["rite", "les-av"]),
        ("exports", ReferenceExportOption, None),
        ("limit", LimitOption, 64),
    ],
)


def _notes(notes: list[str]) -> None:
    for note in notes:
        typer.echo(note, err=True)


@evaluate_app.command("vessel")
@user_errors
def evaluate_vessel(
    pred: Annotated[Path, typer.Option(help="Folder of <id>_..._vessel.png probabilities")],
    gt: Annotated[Path, typer.Option(help="Folder of binary truth masks")],
    fov: Annotated[Path | None, typer.Option(help="Folder of FOV masks")] = None,
    threshold: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.5,
    as_json: JsonOption = False,
) -> None:
    """AUC, accuracy, sensitivity, specificity, F1 and clDice inside the FOV, per image and mean.

    Files are matched by the part of their name before the first '_' ('01_test_vessel.png',
    '01_manual1.gif', '01_test_mask.gif'); each file left without a partner is named in a
    warning and the number of scored images is printed with the scores.
    """
    scores = score_vessel_folders(pred, gt, fov, threshold=threshold)
    for role, unpaired in (
        ("prediction", scores.unpaired_predictions),
        ("truth", scores.unpaired_truths),
    ):
        for path in unpaired.values():
            warn("warning:", f"{role} {path.name} has no partner: not scored")
    if as_json:
        unpaired_ids = {
            "predictions": sorted(scores.unpaired_predictions),
            "truths": sorted(scores.unpaired_truths),
        }
        print_json(
            {"images": scores.images, "mean": scores.mean, "n": scores.n, "unpaired": unpaired_ids}
        )
        return
    truths = scores.n + len(scores.unpaired_truths)
    title = f"Vessel segmentation, n={scores.n} of {truths} truth images, threshold {threshold}"
    _print_scores(title, scores.images, scores.mean)


def _print_scores(title: str, images: dict[str, dict[str, Any]], mean: dict[str, float]) -> None:
    table = Table(title=title)
    table.add_column("image")
    for name in mean:
        table.add_column(name, justify="right")
    for key, row in [*images.items(), ("mean", mean)]:
        table.add_row(key, *(f"{row[name]:.4f}" for name in mean))
    console.print(table)


@evaluate_app.command("av")
@user_errors
def evaluate_av(
    pred: Annotated[
        Path, typer.Option(help="Folder of predicted A/V masks (class indices, or red A, blue V)")
    ],
    gt: Annotated[Path, typer.Option(help="Folder of ground-truth A/V masks (either encoding)")],
    as_json: JsonOption = False,
) -> None:
    """A/V accuracy, artery and vein sensitivity on the truth's artery and vein pixels.

    Crossings (green) and uncertain pixels (white) of the truth are not scored. Files are matched
    by the part of their name before the first '_' or '.'.
    """
    scores = score_av_folders(pred, gt)
    if as_json:
        print_json({"images": scores.images, "mean": scores.mean, "n": scores.n})
        return
    _print_scores(f"Artery/vein labelling, {scores.n} images", scores.images, scores.mean)


@evaluate_app.command("downstream")
@user_errors
@option_group("public", PUBLIC_DATA)
def evaluate_downstream(
    work: Annotated[Path, typer.Option(help="Run folders, results.json, figure and report")],
    config: Annotated[
        Path | None,
        typer.Option(
            help="Experiment YAML (settings, seeds, training) [default: the shipped "
            "configs/downstream.yaml]"
        ),
    ] = None,
    synthetic: Annotated[
        Path | None,
        typer.Option(help="Synthetic set (HDF5) [default: generate one with the shipped weights]"),
    ] = None,
    *,
    public: dict[str, Any],
) -> None:
    """Train the vessel CNN on real only, real + k synthetic and synthetic only; score each
    on the held-out real test set (DRIVE test by default). A re-run skips finished settings."""
    from angioflow.flows.downstream import downstream_experiment  # torch: this command only

    def show(setting: Any, row: dict[str, Any]) -> None:
        console.print(
            f"{setting.name} seed {setting.seed}: AUC {row['auc']:.4f} "
            f"accuracy {row['accuracy']:.4f} F1 {row['f1']:.4f}"
        )

    run = downstream_experiment(
        work,
        config=config,
        synthetic=synthetic,
        on_setting=show,
        on_message=console.print,
        **public,
    )
    table = Table(title=f"Vessel CNN on {run.config.test_dataset} test, mean over seeds")
    table.add_column("training set")
    for name in run.metrics:
        table.add_column(name, justify="right")
    for name, row in run.results["summary"].items():
        table.add_row(name, *(f"{row[f'{m}_mean']:.4f}" for m in run.metrics))
    console.print(table)
    say(f"report: {run.report}")


def _evaluate_set(measures: tuple[str, ...], **request: Any) -> dict[str, Any]:
    """Measures of the set against the real reference; their notes go to stderr."""
    from angioflow.flows.set_evaluation import SetEvaluationRequest, evaluate_set  # torch

    done = evaluate_set(SetEvaluationRequest(**request), measures)
    _notes(done.notes)
    return done.result


def _versus(synthetic: Path, result: dict[str, Any], what: str) -> str:
    return f"{synthetic.name}: {result['samples']} {what} vs {result['reference']['samples']} real"


@evaluate_app.command("structure")
@user_errors
@against_reference
def evaluate_structure(
    synthetic: SyntheticArgument, as_json: JsonOption = False, *, reference: dict[str, Any]
) -> None:
    """Structural statistics of the set's A/V masks against real ones: per statistic the means
    and the Wasserstein distance in real standard deviations, their mean, near-empty rate."""
    result = _evaluate_set(("structure",), synthetic=synthetic, **reference)
    if as_json:
        print_json(result["structure"])
        return
    table = Table(title=_versus(synthetic, result, "masks"))
    for column in ("statistic", "real mean", "synthetic mean", "Wasserstein / real sd"):
        table.add_column(column, justify="left" if column == "statistic" else "right")
    for name, values in result["structure"].items():
        if name in ("combined", "near_empty"):
            continue
        table.add_row(
            name,
            *(
                f"{values[k]:.4g}"
                for k in ("real_mean", "generated_mean", "wasserstein_in_real_sd")
            ),
        )
    console.print(table)
    console.print(
        f"structure distance {result['structure']['combined']['structure_distance']:.3f}, "
        f"near-empty rate {result['structure']['near_empty']['rate']:.3f}"
    )


@evaluate_app.command("realism")
@user_errors
@against_reference
def evaluate_realism(
    synthetic: SyntheticArgument,
    inception_weights: InceptionOption = None,
    as_json: JsonOption = False,
    *,
    reference: dict[str, Any],
) -> None:
    """Fréchet distance, KID and precision/recall of the set's photos against real photos in
    the vessel CNN's feature space (and Inception-v3's, given its weights file); and the
    classifier two-sample test against held-out real photos (RITE and LES-AV test splits): the
    cross-validated AUC of a small CNN telling the two apart (0.5: it cannot)."""
    result = _evaluate_set(
        ("realism", "two_sample"),
        synthetic=synthetic,
        inception_weights=inception_weights,
        **reference,
    )
    if as_json:
        print_json({"feature_distances": result["realism"]} | _two_sample(result))
        return
    names = ("frechet_distance", "real_halves_frechet_distance", "kid_mean", "precision", "recall")
    table = Table(title=_versus(synthetic, result, "photos"))
    table.add_column("features")
    for name in names:
        table.add_column(name, justify="right")
    for space, values in result["realism"].items():
        table.add_row(space, *(f"{values[n]:.4g}" for n in names))
    console.print(table)
    if "two_sample" in result:
        test = result["two_sample"]
        console.print(
            f"two-sample test: held-out AUC {test['auc']:.3f} (folds {test['fold_auc_min']:.3f}"
            f"-{test['fold_auc_max']:.3f}), {test['synthetic_samples']} synthetic vs "
            f"{test['real_samples']} held-out real photos ({', '.join(test['real_sources'])})"
        )


def _two_sample(result: dict[str, Any]) -> dict[str, Any]:
    return {"two_sample": result["two_sample"]} if "two_sample" in result else {}


@evaluate_app.command("report")
@user_errors
@against_reference
def evaluate_report(
    out: Annotated[Path, typer.Option(help="Folder for report.html (and metrics.json)")],
    synthetic: Annotated[
        Path | None, typer.Option(help="Report on this synthetic set (full evaluation)")
    ] = None,
    store: Annotated[Path | None, typer.Option(help="Report on this case store (curation)")] = None,
    inception_weights: InceptionOption = None,
    *,
    reference: dict[str, Any],
) -> None:
    """Self-contained HTML report. With --store: every case's stage, review state, timings, QC
    thumbnails and overlays, A/V structure. With --synthetic: vessel recovery, structural and
    image realism against real data, distributions, sample grids (metrics.json beside it)."""
    if (synthetic is None) == (store is None):
        fail("give exactly one of --synthetic SET.h5 or --store STORE")
    if store is not None:
        from angioflow.flows.reports import curation_report  # matplotlib: this command only

        say(f"report: {curation_report(CaseStore(store, create=False), out)}")
        return
    from angioflow.flows.set_evaluation import SetEvaluationRequest, report_on_set  # torch

    request = SetEvaluationRequest(
        synthetic=synthetic, inception_weights=inception_weights, **reference
    )
    done = report_on_set(request, out)
    _notes(done.notes)
    result = done.result
    console.print(
        f"vessel recovery Dice {result['recovery']['dice_mean']:.4f}, structure distance "
        f"{result['structure']['combined']['structure_distance']:.3f}, Fréchet distance "
        f"(vessel CNN) {result['realism']['vessel_cnn']['frechet_distance']:.4g}"
    )
    say(f"report: {done.report}")
