"""Patient-level train/validation/test splits that stay put as a dataset grows.

Each patient pseudonym is placed by a seeded hash of the pseudonym alone, so (a) every case of
one patient lands in the same split (no patient straddles training and test), (b) the same seed
always gives the same assignment, and (c) exporting again after new cases arrive never moves an
already exported patient to another split. The price of (c) is that the split sizes follow the
fractions only approximately for small numbers of patients.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

__all__ = ["SPLITS", "patient_splits", "split_of_patient"]

SPLITS = ("training", "validation", "test")  # the keys of a MONAI-style datalist
_HASH_RANGE = float(2**64)


def _check_fractions(fractions: tuple[float, float, float]) -> None:
    if len(fractions) != len(SPLITS) or any(not 0.0 <= f <= 1.0 for f in fractions):
        raise ValueError(
            f"split fractions must be three numbers in [0, 1] for {', '.join(SPLITS)}, "
            f"got {fractions}"
        )
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {fractions} (sum {sum(fractions)})")


def split_of_patient(
    patient: str, *, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0
) -> str:
    """The split of one patient.

    Parameters
    ----------
    patient : str
        Patient pseudonym (never a raw patient id).
    fractions : (3,) tuple of float
        Expected shares of training, validation and test; sum to 1.
    seed : int
        Another seed gives another, independent assignment.

    Returns
    -------
    split : {'training', 'validation', 'test'}

    Raises
    ------
    ValueError
        If ``fractions`` are not three shares summing to 1, or ``patient`` is empty.

    Example
    -------
    >>> split_of_patient("p1", fractions=(1.0, 0.0, 0.0))
    'training'
    """
    _check_fractions(fractions)
    if not patient:
        raise ValueError("a patient pseudonym is required to assign a split")
    digest = hashlib.sha256(f"{seed}:{patient}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / _HASH_RANGE  # uniform in [0, 1)
    bound = 0.0
    for name, fraction in zip(SPLITS, fractions, strict=True):
        bound += fraction
        if position < bound:
            return name
    # Rounding of the cumulative sum can leave the top sliver: it belongs to the last
    # split with a share.
    return next(name for name, f in zip(SPLITS[::-1], fractions[::-1], strict=True) if f > 0)


def patient_splits(
    patients: Mapping[str, str],
    *,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> dict[str, str]:
    """Assign cases to splits by their patient.

    Parameters
    ----------
    patients : mapping of case id -> patient pseudonym
    fractions : (3,) tuple of float
        Expected shares of training, validation and test (of patients); sum to 1.
    seed : int

    Returns
    -------
    splits : dict of case id -> {'training', 'validation', 'test'}

    Example
    -------
    >>> patient_splits({"a_OD": "p1", "a_OS": "p1"}, seed=3)["a_OD"] == (
    ...     patient_splits({"a_OD": "p1", "a_OS": "p1"}, seed=3)["a_OS"])
    True
    """
    _check_fractions(fractions)
    return {
        case: split_of_patient(patient, fractions=fractions, seed=seed)
        for case, patient in patients.items()
    }
