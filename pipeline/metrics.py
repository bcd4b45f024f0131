"""Pixel and topology metrics for vessel segmentation, computed inside the field of view.

References
----------
.. [1] Staal et al., "Ridge-based vessel segmentation in color images of the retina",
       IEEE TMI 23(4), 2004 (DRIVE protocol: metrics inside the FOV mask).
.. [2] Shit et al., "clDice - a novel topology-preserving loss function for tubular structure
       segmentation", CVPR 2021. doi:10.1109/CVPR46437.2021.01629
.. [3] Hu, Abramoff, Garvin, "Automated separation of binary overlapping trees in low-contrast
       color retinal images", MICCAI 2013 (RITE; A/V accuracy on labelled vessel pixels).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import rankdata
from skimage.morphology import skeletonize

__all__ = [
    "AVScores",
    "Scores",
    "VesselScores",
    "av_scores",
    "cl_dice",
    "roc_auc",
    "vessel_scores",
]


@dataclass(frozen=True)
class Scores:
    """Base of the frozen records of named numbers: scores, statistics, distances."""

    def as_dict(self) -> dict[str, float]:
        """The fields by name, in their declared order (JSON-ready)."""
        return asdict(self)


@dataclass(frozen=True)
class VesselScores(Scores):
    """Vessel segmentation scores of one image (all in [0, 1])."""

    auc: float
    accuracy: float
    sensitivity: float
    specificity: float
    f1: float
    cl_dice: float


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties count one half).

    Parameters
    ----------
    scores : (N,) float ndarray
    labels : (N,) bool ndarray

    Raises
    ------
    ValueError
        If the shapes differ or one class is absent.

    Example
    -------
    >>> roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1], bool))
    0.75
    """
    scores, labels = np.ravel(scores), np.ravel(labels).astype(bool)
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} differ in size")
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("AUC needs both vessel and background pixels")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def cl_dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Centreline Dice: harmonic mean of topology precision and topology sensitivity.

    Parameters
    ----------
    prediction, truth : (H, W) bool ndarray

    Returns
    -------
    score : float
        1 when each mask's skeleton lies inside the other mask; 0 when either is empty.
    """
    prediction, truth = prediction.astype(bool), truth.astype(bool)
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction {prediction.shape} and truth {truth.shape} differ")
    skeleton_prediction, skeleton_truth = skeletonize(prediction), skeletonize(truth)
    if not skeleton_prediction.any() or not skeleton_truth.any():
        return 0.0
    precision = (skeleton_prediction & truth).sum() / skeleton_prediction.sum()
    sensitivity = (skeleton_truth & prediction).sum() / skeleton_truth.sum()
    if precision + sensitivity == 0:
        return 0.0
    return float(2 * precision * sensitivity / (precision + sensitivity))


def vessel_scores(
    probability: np.ndarray,
    truth: np.ndarray,
    *,
    fov: np.ndarray | None = None,
    threshold: float = 0.5,
) -> VesselScores:
    """Score a vessel probability map against a binary truth inside the FOV.

    Parameters
    ----------
    probability : (H, W) float ndarray in [0, 1]
    truth : (H, W) bool ndarray
    fov : (H, W) bool ndarray, optional
        Pixels to score (all when omitted). clDice is computed on the masks cut to the FOV.
    threshold : float
        Probability at or above which a pixel counts as vessel.

    Returns
    -------
    scores : VesselScores
    """
    probability = np.asarray(probability, dtype=np.float64)
    truth = np.asarray(truth).astype(bool)
    fov = np.ones(truth.shape, dtype=bool) if fov is None else np.asarray(fov).astype(bool)
    if not probability.shape == truth.shape == fov.shape or probability.ndim != 2:
        raise ValueError(
            f"probability {probability.shape}, truth {truth.shape} and fov {fov.shape} must be "
            "the same (H, W) shape"
        )
    if not np.isfinite(probability).all():
        raise ValueError("probability holds NaN or infinite values")
    predicted = probability >= threshold
    p, t = predicted[fov], truth[fov]
    tp, tn = int((p & t).sum()), int((~p & ~t).sum())
    fp, fn = int((p & ~t).sum()), int((~p & t).sum())
    return VesselScores(
        auc=roc_auc(probability[fov], t),
        accuracy=(tp + tn) / max(tp + tn + fp + fn, 1),
        sensitivity=tp / max(tp + fn, 1),
        specificity=tn / max(tn + fp, 1),
        f1=2 * tp / max(2 * tp + fp + fn, 1),
        cl_dice=cl_dice(predicted & fov, truth & fov),
    )


@dataclass(frozen=True)
class AVScores(Scores):
    """Artery/vein scores of one image on the ground truth's artery and vein pixels.

    ``accuracy`` is the share of those pixels given their own class; ``artery_sensitivity`` the
    share of artery pixels called artery; ``vein_sensitivity`` (the vein specificity when artery
    is the positive class) the share of vein pixels called vein. ``unlabelled`` is the share the
    prediction left as background or crossing (counted as wrong). ``pixels`` is how many
    ground-truth artery and vein pixels were scored.
    """

    accuracy: float
    artery_sensitivity: float
    vein_sensitivity: float
    unlabelled: float
    pixels: int


def av_scores(prediction: np.ndarray, truth: np.ndarray) -> AVScores:
    """Score an A/V label mask on the truth's artery and vein pixels.

    Crossings and uncertain pixels of the truth (label 3) and its background are not scored.

    Parameters
    ----------
    prediction, truth : (H, W) int ndarrays
        Labels 0 background, 1 artery, 2 vein, 3 crossing or uncertain.

    Returns
    -------
    AVScores

    Example
    -------
    >>> t = np.array([[1, 1, 2, 2, 3, 0]]); p = np.array([[1, 2, 2, 0, 1, 1]])
    >>> s = av_scores(p, t); s.accuracy, s.artery_sensitivity, s.vein_sensitivity
    (0.5, 0.5, 0.5)
    """
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction {prediction.shape} and truth {truth.shape} differ in shape")
    artery, vein = truth == 1, truth == 2
    scored = artery | vein
    n_scored, n_artery, n_vein = int(scored.sum()), int(artery.sum()), int(vein.sum())
    if n_scored == 0:
        raise ValueError("the truth has no artery or vein pixel to score")
    called_artery, called_vein = prediction == 1, prediction == 2
    correct = (artery & called_artery).sum() + (vein & called_vein).sum()
    return AVScores(
        accuracy=float(correct / n_scored),
        artery_sensitivity=float((artery & called_artery).sum() / max(1, n_artery)),
        vein_sensitivity=float((vein & called_vein).sum() / max(1, n_vein)),
        unlabelled=float((scored & ~called_artery & ~called_vein).sum() / n_scored),
        pixels=n_scored,
    )
