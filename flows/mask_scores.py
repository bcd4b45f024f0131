"""Scores of the user's prediction files against truth files, folder by folder: vessel
segmentation (``angioflow evaluate vessel``) and artery/vein labelling (``evaluate av``).
Files are matched by the part of their name before the first '_' or '.'."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from angioflow.flows.evaluation import EvaluationInputError
from angioflow.pipeline.io import ImageRejected, read_av_mask, read_mask

__all__ = ["FolderScores", "score_av_folders", "score_vessel_folders"]


@dataclass(frozen=True)
class FolderScores:
    """Per-image scores, their means, and the files left without a partner.

    Attributes
    ----------
    images : dict
        Case id -> {metric: value}.
    mean : dict
        Metric -> mean over the images.
    unpaired_predictions, unpaired_truths : dict
        Case id -> the file that was not scored.
    """

    images: dict[str, dict[str, float]]
    mean: dict[str, float]
    unpaired_predictions: dict[str, Path]
    unpaired_truths: dict[str, Path]

    @property
    def n(self) -> int:
        return len(self.images)


@dataclass(frozen=True)
class _FilePairs:
    cases: dict[str, tuple[Path, Path, Path | None]]  # case id -> prediction, truth, FOV
    unpaired_predictions: dict[str, Path]
    unpaired_truths: dict[str, Path]

    def scores(self, rows: dict[str, dict[str, Any]], names: list[str]) -> FolderScores:
        """``rows`` (case id -> {metric: value}) with the means of the metrics ``names``."""
        return FolderScores(
            images=rows,
            mean={name: float(np.mean([row[name] for row in rows.values()])) for name in names},
            unpaired_predictions=self.unpaired_predictions,
            unpaired_truths=self.unpaired_truths,
        )


def score_vessel_folders(
    pred: Path, gt: Path, fov: Path | None = None, *, threshold: float = 0.5
) -> FolderScores:
    """AUC, accuracy, sensitivity, specificity, F1 and clDice inside the FOV of each paired
    prediction ('01_test_vessel.png'), truth ('01_manual1.gif') and FOV ('01_test_mask.gif')
    file.

    Raises
    ------
    EvaluationInputError
        A folder is missing, two files of one folder are one case, no file pairs up, ``fov``
        lacks the mask of a paired case, or a file is unreadable or of another size.
    """
    from angioflow.pipeline.metrics import vessel_scores

    pairs = _pair_files(pred, gt, fov)
    rows = {}
    for key, (prediction, truth, mask) in pairs.cases.items():
        probability = _unit_interval(prediction)
        labels = _unit_interval(truth) > 0.5
        field = _unit_interval(mask) > 0.5 if mask is not None else None
        shapes = [(prediction, probability.shape), (truth, labels.shape)]
        if field is not None:
            shapes.append((mask, field.shape))
        if len({shape for _, shape in shapes}) > 1:
            sizes = ", ".join(f"{path.name} is {s[1]}x{s[0]}" for path, s in shapes)
            raise EvaluationInputError(
                f"case {key}: {sizes} (width x height); resize the prediction to its truth"
            )
        rows[key] = vessel_scores(probability, labels, fov=field, threshold=threshold).as_dict()
    return pairs.scores(rows, list(next(iter(rows.values()))))


def score_av_folders(pred: Path, gt: Path) -> FolderScores:
    """A/V accuracy, artery and vein sensitivity on the truth's artery and vein pixels of each
    paired file (class indices, or red artery / blue vein pictures, in either folder).

    Raises
    ------
    EvaluationInputError
        A folder is missing, two files of one folder are one case, no file pairs up, or a file
        is unreadable or of another size.
    """
    from angioflow.pipeline.metrics import av_scores

    pairs = _pair_files(pred, gt)
    rows = {}
    for key, (prediction, truth, _) in pairs.cases.items():
        predicted, labels = (_read_av(path) for path in (prediction, truth))
        if predicted.shape != labels.shape:
            raise EvaluationInputError(
                f"{prediction.name} is {predicted.shape[1]}x{predicted.shape[0]} but "
                f"{truth.name} is {labels.shape[1]}x{labels.shape[0]}; labels must match"
            )
        rows[key] = av_scores(predicted, labels).as_dict()
    return pairs.scores(rows, [name for name in next(iter(rows.values())) if name != "pixels"])


def _case_files(folder: Path, role: str) -> dict[str, Path]:
    """Files of ``folder`` keyed by the part of their name before the first '_' or '.'
    (hidden files left out); EvaluationInputError when two files give one key."""
    if not folder.is_dir():
        raise EvaluationInputError(f"{role} folder {folder} does not exist")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        key = path.name.split("_")[0].split(".")[0]
        if key in files:
            raise EvaluationInputError(
                f"{role} folder {folder}: {files[key].name} and {path.name} are both case "
                f"'{key}' (the name before the first '_'); keep one of them there"
            )
        files[key] = path
    return files


def _pair_files(pred: Path, gt: Path, fov: Path | None = None) -> _FilePairs:
    """Match prediction, truth and, with ``fov``, FOV files by case; EvaluationInputError when
    no case has both a prediction and a truth or ``fov`` lacks a paired case's mask."""
    predictions, truths = _case_files(pred, "prediction"), _case_files(gt, "truth")
    masks = _case_files(fov, "FOV") if fov is not None else {}
    keys = sorted(set(predictions) & set(truths))
    if not keys:
        raise EvaluationInputError(
            f"no file names in {pred} match those in {gt} (matched by the part before '_')"
        )
    if fov is not None and (missing := [k for k in keys if k not in masks]):
        raise EvaluationInputError(
            f"FOV folder {fov} has no mask for case(s) {', '.join(missing)}; add them or leave "
            "--fov out (scores inside and outside an FOV do not average)"
        )
    return _FilePairs(
        cases={k: (predictions[k], truths[k], masks.get(k)) for k in keys},
        unpaired_predictions={k: p for k, p in predictions.items() if k not in truths},
        unpaired_truths={k: p for k, p in truths.items() if k not in predictions},
    )


def _unit_interval(path: Path) -> np.ndarray:
    """A mask or probability file (any accepted format, 8 or 16 bit) scaled to [0, 1]."""
    try:
        values = read_mask(path)
    except ImageRejected as error:
        raise EvaluationInputError(f"{path}: {error}") from error
    return values.astype(np.float32) / np.iinfo(values.dtype).max


def _read_av(path: Path) -> np.ndarray:
    try:
        return read_av_mask(path)
    except ImageRejected as error:
        raise EvaluationInputError(f"{path}: {error}") from None
