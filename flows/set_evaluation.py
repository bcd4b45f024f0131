"""A synthetic set judged against real data from the command line (``angioflow evaluate
structure``, ``realism`` and ``report``): the set and the real reference loaded, the Inception
weights found, and the metrics and report written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from angioflow.flows.catalog import find_catalog, public_data_folder
from angioflow.flows.evaluation import EvaluationInputError

__all__ = ["SetEvaluation", "evaluate_set", "inception_weights_file", "report_on_set"]


@dataclass(frozen=True)
class SetEvaluation:
    """The metrics of a set (``evaluate_synthetic``'s result) and, when one was written, its
    report.

    Attributes
    ----------
    result : dict
    notes : list of str
        What the user should know about how it was measured (no Inception weights found).
    report : Path or None
    """

    result: dict[str, Any]
    notes: list[str]
    report: Path | None = None


def inception_weights_file(given: Path | None, catalog: Path | None) -> tuple[Path | None, str]:
    """The Inception-v3 FID weights file to use: ``given``, else the catalog's
    ``inception_weights`` when that file exists; and a note when it does not."""
    loaded = find_catalog(catalog)
    if given is not None or "inception_weights" not in loaded.datasets:
        return given, ""
    path = loaded.path("inception_weights")
    if path.is_file():
        return path, ""
    return None, f"no Inception weights at {path}: vessel CNN features only"


def _inputs(
    synthetic: Path,
    data: Path | None,
    datasets: list[str],
    exports: list[Path] | None,
    limit: int,
    catalog: Path | None,
) -> tuple[dict[str, Any], Any]:
    import torch
    from angioflow.flows.evaluation import load_real_reference, read_synthetic

    torch.set_num_threads(2)
    if not synthetic.is_file():
        raise EvaluationInputError(
            f"synthetic set {synthetic} does not exist; write one with `angioflow generate`"
        )
    data = public_data_folder(find_catalog(catalog), data)
    sample = read_synthetic(synthetic, limit)
    reference = load_real_reference(
        sample["images"].shape[1], data=data, datasets=tuple(datasets), exports=tuple(exports or ())
    )
    return sample, reference


def evaluate_set(
    synthetic: Path,
    *,
    measures: tuple[str, ...],
    data: Path | None = None,
    datasets: list[str] = ("rite", "les-av"),  # type: ignore[assignment]
    exports: list[Path] | None = None,
    limit: int = 64,
    inception_weights: Path | None = None,
    catalog: Path | None = None,
) -> SetEvaluation:
    """``measures`` ('structure', 'realism') of the first ``limit`` samples of ``synthetic``
    against the training splits of ``datasets`` under ``data`` and the ``exports``.

    Raises
    ------
    EvaluationInputError, ReferenceDataMissing, UnsupportedFileFormat
        The set is missing or not a synthetic set, or there is no real data to compare with.
    """
    from angioflow.flows.evaluation import evaluate_synthetic

    sample, reference = _inputs(synthetic, data, list(datasets), exports, limit, catalog)
    weights, note = (None, "")
    if "realism" in measures:
        weights, note = inception_weights_file(inception_weights, catalog)
    result = evaluate_synthetic(
        sample, reference, name=synthetic.name, inception_weights=weights, measures=measures
    )
    return SetEvaluation(result, [note] if note else [])


def report_on_set(
    synthetic: Path,
    out: Path,
    *,
    data: Path | None = None,
    datasets: list[str] = ("rite", "les-av"),  # type: ignore[assignment]
    exports: list[Path] | None = None,
    limit: int = 64,
    inception_weights: Path | None = None,
    catalog: Path | None = None,
) -> SetEvaluation:
    """The full evaluation of ``synthetic`` written as ``out/metrics.json`` and the HTML report
    ``out/report.html`` (vessel recovery, structural and image realism, distributions, sample
    grids)."""
    import json

    from angioflow.flows.evaluation import evaluate_synthetic
    from angioflow.flows.reports import synthetic_report

    sample, reference = _inputs(synthetic, data, list(datasets), exports, limit, catalog)
    weights, note = inception_weights_file(inception_weights, catalog)
    result = evaluate_synthetic(sample, reference, name=synthetic.name, inception_weights=weights)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    report = synthetic_report(result, sample, reference, out)
    return SetEvaluation(result, [note] if note else [], report)
