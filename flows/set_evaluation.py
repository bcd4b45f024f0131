"""A synthetic set judged against real data from the command line (``angioflow evaluate
structure``, ``realism`` and ``report``): the set and the real reference loaded, the Inception
weights found, and the metrics and report written."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from angioflow.flows.catalog import find_catalog, public_data_folder
from angioflow.flows.evaluation import EvaluationInputError
from pydantic import BaseModel, ConfigDict, field_validator

__all__ = [
    "SetEvaluation",
    "SetEvaluationRequest",
    "evaluate_set",
    "inception_weights_file",
    "report_on_set",
]


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


class SetEvaluationRequest(BaseModel):
    """A synthetic set and the real data to judge it against.

    Attributes
    ----------
    synthetic : Path
        The set (HDF5) written by ``angioflow generate``; its first ``limit`` samples are judged.
    data : Path or None
        The public datasets folder [default: the catalog's ``public_datasets``].
    datasets : tuple of str
        Public A/V sets whose training splits are real reference.
    held_out : tuple of str
        Public A/V sets whose test splits (held out of every generator's training) are the real
        photos of the two-sample test (RITE test: DRIVE's test photos).
    exports : tuple of Path
        Exports of approved cases, also real reference (None: none).
    limit : int
    inception_weights : Path or None
        Inception-v3 FID weights file [default: the catalog's, when that file exists].
    catalog : Path or None
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    synthetic: Path
    data: Path | None = None
    datasets: tuple[str, ...] = ("rite", "les-av")
    held_out: tuple[str, ...] = ("rite", "les-av")
    exports: tuple[Path, ...] = ()
    limit: int = 64
    inception_weights: Path | None = None
    catalog: Path | None = None

    @field_validator("exports", mode="before")
    @classmethod
    def _none_is_no_export(cls, value: Any) -> Any:
        return () if value is None else value


def _evaluate(
    request: SetEvaluationRequest, measures: tuple[str, ...]
) -> tuple[SetEvaluation, dict[str, Any], Any]:
    """The measures of the request's set; also the sample and the reference they were taken on.

    Realism asked for here is what the user asked for: where it cannot be measured that is their
    error, with the way to more real images.
    """
    import torch
    from angioflow.flows.evaluation import evaluate_synthetic, load_real_reference, read_synthetic

    torch.set_num_threads(2)
    if not request.synthetic.is_file():
        raise EvaluationInputError(
            f"synthetic set {request.synthetic} does not exist; write one with `angioflow generate`"
        )
    data = public_data_folder(find_catalog(request.catalog), request.data)
    sample = read_synthetic(request.synthetic, request.limit)
    reference = load_real_reference(
        sample["images"].shape[1], data=data, datasets=request.datasets, exports=request.exports
    )
    notes = []
    weights = None
    if "realism" in measures:
        weights, note = inception_weights_file(request.inception_weights, request.catalog)
        notes += [note] if note else []
    held_out = None
    if "two_sample" in measures:
        held_out, note = _held_out(sample["images"].shape[1], data, request.held_out)
        notes += [note] if note else []
    result = evaluate_synthetic(
        sample,
        reference,
        name=request.synthetic.name,
        inception_weights=weights,
        measures=measures,
        held_out=held_out,
    )
    not_measured = result.get("not_measured", {})
    if "realism" in not_measured:
        raise EvaluationInputError(
            f"{not_measured['realism']}: pass --data with the public datasets folder or "
            "--export with more approved cases"
        )
    if "two_sample" in not_measured:
        notes.append(f"two-sample test not measured: {not_measured['two_sample']}")
    return SetEvaluation(result, notes), sample, reference


def _held_out(size: int, data: Path | None, datasets: tuple[str, ...]) -> tuple[Any, str]:
    """The held-out real photos of the two-sample test, or None and why not."""
    from angioflow.flows.evaluation import load_real_reference

    if data is None or not data.is_dir() or not datasets:
        return None, f"no held-out real photos (public data folder {data}): two-sample test skipped"
    try:
        return load_real_reference(size, data=data, datasets=datasets, split="test"), ""
    except FileNotFoundError as missing:
        return None, f"no held-out real photos ({missing}): two-sample test skipped"


def evaluate_set(request: SetEvaluationRequest, measures: tuple[str, ...]) -> SetEvaluation:
    """``measures`` ('structure', 'realism') of the request's set against its real reference.

    Raises
    ------
    EvaluationInputError, ReferenceDataMissing, UnsupportedFileFormat
        The set is missing or not a synthetic set, or there is no real data to compare with
        (for realism: fewer than 2 real or 2 synthetic images).
    """
    return _evaluate(request, measures)[0]


def report_on_set(request: SetEvaluationRequest, out: Path) -> SetEvaluation:
    """The full evaluation of the request's set written as ``out/metrics.json`` and the HTML
    report ``out/report.html`` (vessel recovery, structural and image realism, distributions,
    sample grids); raises as :func:`evaluate_set`."""
    import json

    from angioflow.flows.reports import synthetic_report

    done, sample, reference = _evaluate(request, ("recovery", "structure", "realism", "two_sample"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(done.result, indent=2) + "\n")
    report = synthetic_report(done.result, sample, reference, out)
    return replace(done, report=report)
