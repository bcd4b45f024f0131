"""Distances between sets of image feature vectors: Fréchet distance, kernel inception distance
and k-NN precision/recall. Pure numpy/scipy over (N, D) arrays; which network made the features
is the caller's choice (angioflow's vessel CNN encoder, or Inception-v3 for true FID/KID).

References
----------
.. [1] Heusel et al., "GANs trained by a two time-scale update rule converge to a local Nash
       equilibrium", NeurIPS 2017 (Fréchet distance of Gaussian fits, FID).
.. [2] Bińkowski et al., "Demystifying MMD GANs", ICLR 2018 (KID: unbiased MMD^2 with the
       kernel (x.y/d + 1)^3, averaged over subsets).
.. [3] Kynkäänniemi et al., "Improved precision and recall metric for assessing generative
       models", NeurIPS 2019 (k-NN manifold estimate, k = 3).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from angioflow.pipeline.metrics import Scores
from scipy import linalg
from scipy.spatial.distance import cdist

__all__ = [
    "FeatureDistances",
    "feature_distances",
    "frechet_distance",
    "kernel_distance",
    "precision_recall",
]


def _as_features(features: np.ndarray, name: str) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"{name} features must be (N, D) with N >= 2, got {features.shape}")
    if not np.isfinite(features).all():
        raise ValueError(f"{name} features hold NaN or infinite values")
    return features


def frechet_distance(real: np.ndarray, generated: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    ``|mu_r - mu_g|^2 + tr(S_r + S_g - 2 (S_r S_g)^(1/2))`` with sample covariances (N - 1).
    The estimate is biased upwards for small sets (more so when N <= D): compare sets of the
    same size, and read it against the distance between two halves of the real set.

    Parameters
    ----------
    real, generated : (N, D) and (M, D) float ndarrays

    Returns
    -------
    distance : float, >= 0

    Example
    -------
    >>> a = np.array([[0.0], [2.0]]); b = np.array([[3.0], [7.0]])  # means 1, 5; variances 2, 8
    >>> round(frechet_distance(a, b), 6)  # 4^2 + (2 + 8 - 2 * 4)
    18.0
    """
    real, generated = _as_features(real, "real"), _as_features(generated, "generated")
    if real.shape[1] != generated.shape[1]:
        raise ValueError(f"feature sizes differ: {real.shape[1]} and {generated.shape[1]}")
    mu_r, mu_g = real.mean(axis=0), generated.mean(axis=0)
    cov_r = np.atleast_2d(np.cov(real, rowvar=False))
    cov_g = np.atleast_2d(np.cov(generated, rowvar=False))
    with warnings.catch_warnings():  # singular whenever N <= D; handled just below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov_r @ cov_g)
    if not np.isfinite(root).all():  # singular product: regularise as in the FID reference code
        eps = 1e-6 * np.eye(len(cov_r))
        root = linalg.sqrtm((cov_r + eps) @ (cov_g + eps))
    root = np.real(root)
    return float(max(0.0, np.sum((mu_r - mu_g) ** 2) + np.trace(cov_r + cov_g - 2 * root)))


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def kernel_distance(
    real: np.ndarray,
    generated: np.ndarray,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel inception distance: unbiased MMD^2 with the kernel ``(x.y / D + 1)^3``.

    Averaged over ``subsets`` random subsets of ``min(subset_size, N, M)`` rows of each set
    (drawn with ``seed``); with sets no larger than ``subset_size`` every subset is the whole
    set and the value is exact.

    Returns
    -------
    mean, std : float
        Mean and standard deviation of the MMD^2 estimates over subsets (can be slightly
        negative for near-identical sets: the estimator is unbiased).

    Example
    -------
    >>> a = np.array([[0.0], [1.0]]); b = np.array([[1.0], [2.0]])
    >>> kernel_distance(a, b)[0]  # k(0,1) + k(1,2) - 2 * (k(0,1) + k(0,2) + k(1,1) + k(1,2)) / 4
    9.5
    """
    real, generated = _as_features(real, "real"), _as_features(generated, "generated")
    size = min(subset_size, len(real), len(generated))
    whole = size == len(real) == len(generated)
    rng = np.random.default_rng(seed)
    estimates = []
    for _ in range(1 if whole else subsets):
        x = real if whole else real[rng.choice(len(real), size, replace=False)]
        y = generated if whole else generated[rng.choice(len(generated), size, replace=False)]
        k_xx, k_yy = _polynomial_kernel(x, x), _polynomial_kernel(y, y)
        k_xy = _polynomial_kernel(x, y)
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (size * (size - 1))
        estimates.append(within - 2 * k_xy.mean())
    return float(np.mean(estimates)), float(np.std(estimates))


def _knn_radii(features: np.ndarray, k: int) -> np.ndarray:
    distances = cdist(features, features)
    return np.sort(distances, axis=1)[:, k]  # column 0 is the point itself


def _coverage(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> float:
    distances = cdist(points, centres)
    return float((distances <= radii[None, :]).any(axis=1).mean())


def precision_recall(real: np.ndarray, generated: np.ndarray, *, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall of generated samples.

    Each set's manifold is the union of balls around its points reaching the k-th nearest
    neighbour in the same set. Precision is the share of generated points inside the real
    manifold (fidelity); recall the share of real points inside the generated one (diversity).

    Example
    -------
    >>> real = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> generated = np.array([[0.5], [1.5], [20.0], [21.0]])
    >>> precision_recall(real, generated, k=1)  # real radius 1; generated radii 1, 1, 1, 1
    (0.5, 0.75)
    """
    real, generated = _as_features(real, "real"), _as_features(generated, "generated")
    if k >= min(len(real), len(generated)):
        raise ValueError(f"k = {k} needs more than {k} samples in each set")
    precision = _coverage(generated, real, _knn_radii(real, k))
    recall = _coverage(real, generated, _knn_radii(generated, k))
    return precision, recall


@dataclass(frozen=True)
class FeatureDistances(Scores):
    """Realism of a generated image set in one feature space (lower FD/KID is better)."""

    frechet_distance: float
    kid_mean: float
    kid_std: float
    precision: float
    recall: float
    real_samples: int
    generated_samples: int


def feature_distances(
    real: np.ndarray, generated: np.ndarray, *, k: int = 3, seed: int = 0
) -> FeatureDistances:
    """All of the above for two feature sets (KID over subsets of up to 1000, ``seed``);
    precision and recall are nan when a set has no more than ``k`` samples."""
    kid_mean, kid_std = kernel_distance(real, generated, seed=seed)
    precision = recall = float("nan")
    if min(len(real), len(generated)) > k:
        precision, recall = precision_recall(real, generated, k=k)
    return FeatureDistances(
        frechet_distance=frechet_distance(real, generated),
        kid_mean=kid_mean,
        kid_std=kid_std,
        precision=precision,
        recall=recall,
        real_samples=len(real),
        generated_samples=len(generated),
    )
