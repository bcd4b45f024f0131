"""Statistics of a blinded real-vs-synthetic reading study: accuracy with Wilson intervals and
Fleiss' kappa between readers.

References
----------
.. [1] Wilson, "Probable inference, the law of succession, and statistical inference",
       JASA 22(158), 1927 (score interval for a binomial proportion).
.. [2] Fleiss, "Measuring nominal scale agreement among many raters", Psychological
       Bulletin 76(5), 1971.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["fleiss_kappa", "wilson_interval"]


def wilson_interval(successes: int, trials: int, *, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a proportion (95 % by default).

    Examples
    --------
    >>> [round(v, 4) for v in wilson_interval(15, 20)]
    [0.5313, 0.8881]
    >>> wilson_interval(0, 0)
    (0.0, 1.0)
    """
    if trials == 0:
        return 0.0, 1.0
    if not 0 <= successes <= trials:
        raise ValueError(f"successes {successes} must lie in 0..{trials}")
    p = successes / trials
    denominator = 1 + z**2 / trials
    centre = (p + z**2 / (2 * trials)) / denominator
    half = z * np.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / denominator
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def fleiss_kappa(counts: Sequence[Sequence[int]] | np.ndarray) -> float:
    """Fleiss' kappa of items each rated by the same number of raters.

    Parameters
    ----------
    counts : (items, categories) int array
        ``counts[i, j]``: raters who put item ``i`` in category ``j``; every row sums to the
        number of raters (at least 2).

    Returns
    -------
    kappa : float
        1 for perfect agreement, 0 for agreement at chance level (nan when every rating falls
        in one category, where chance agreement is already perfect).

    Example
    -------
    >>> fleiss_kappa([[2, 0], [0, 2], [1, 1], [2, 0]])  # 2 raters, 4 items
    0.4666666666666667
    """
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 2 or len(counts) == 0:
        raise ValueError("counts must be a non-empty (items, categories) table")
    raters = counts.sum(axis=1)
    if not np.all(raters == raters[0]) or raters[0] < 2:
        raise ValueError("every item needs the same number of raters, at least 2")
    n = raters[0]
    agreement = ((counts * (counts - 1)).sum(axis=1) / (n * (n - 1))).mean()
    shares = counts.sum(axis=0) / counts.sum()
    chance = float((shares**2).sum())
    if chance == 1.0:
        return float("nan")
    return float((agreement - chance) / (1 - chance))
