"""Scores of the user's prediction files against truth files, folder by folder: vessel
segmentation (``angioflow evaluate vessel``) and artery/vein labelling (``evaluate av``).
Files are matched by the part of their name before the first '_' or '.'."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from angioflow.flows.evaluation import (
    EvaluationInputError,
    case_files,
    pair_vessel_files,
    score_vessel_pairs,
)
from angioflow.pipeline.io import ImageRejected, read_av_mask

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


def _means(rows: dict[str, dict[str, Any]], names: list[str]) -> dict[str, float]:
    return {name: float(np.mean([row[name] for row in rows.values()])) for name in names}


def score_vessel_folders(
    pred: Path, gt: Path, fov: Path | None = None, *, threshold: float = 0.5
) -> FolderScores:
    """AUC, accuracy, sensitivity, specificity, F1 and clDice inside the FOV of each paired
    prediction ('01_test_vessel.png') and truth ('01_manual1.gif') file.

    Raises
    ------
    EvaluationInputError
        A folder is missing, no file pairs up, or a file is unreadable or of another size.
    """
    pairs = pair_vessel_files(pred, gt, fov)
    rows = score_vessel_pairs(pairs, threshold=threshold)
    return FolderScores(
        images=rows,
        mean=_means(rows, list(next(iter(rows.values())))),
        unpaired_predictions=pairs.unpaired_predictions,
        unpaired_truths=pairs.unpaired_truths,
    )


def score_av_folders(pred: Path, gt: Path) -> FolderScores:
    """A/V accuracy, artery and vein sensitivity on the truth's artery and vein pixels of each
    paired file (class indices, or red artery / blue vein pictures, in either folder).

    Raises
    ------
    EvaluationInputError
        A folder is missing, no file pairs up, or a file is unreadable or of another size.
    """
    from angioflow.pipeline.metrics import av_scores

    predictions, truths = case_files(pred, "prediction"), case_files(gt, "truth")
    keys = sorted(set(predictions) & set(truths))
    if not keys:
        raise EvaluationInputError(
            f"no file names in {pred} match those in {gt} (matched by the part before '_')"
        )
    rows = {}
    for key in keys:
        predicted, truth = (_read_av(path) for path in (predictions[key], truths[key]))
        if predicted.shape != truth.shape:
            raise EvaluationInputError(
                f"{predictions[key].name} is {predicted.shape[1]}x{predicted.shape[0]} but "
                f"{truths[key].name} is {truth.shape[1]}x{truth.shape[0]}; labels must match"
            )
        rows[key] = av_scores(predicted, truth).as_dict()
    names = [name for name in next(iter(rows.values())) if name != "pixels"]
    return FolderScores(
        images=rows,
        mean=_means(rows, names),
        unpaired_predictions={k: p for k, p in predictions.items() if k not in truths},
        unpaired_truths={k: p for k, p in truths.items() if k not in predictions},
    )


def _read_av(path: Path) -> np.ndarray:
    try:
        return read_av_mask(path)
    except ImageRejected as error:
        raise EvaluationInputError(f"{path}: {error}") from None
