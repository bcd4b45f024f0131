"""Evaluation of a synthetic set against real data: structural realism of its A/V masks, image
realism of its photos in a feature space, and whether the vessel CNN finds the vessels the
photos were asked to draw (scores of prediction files against truth: :mod:`flows.mask_scores`).

Real reference pairs come from the training splits of the public A/V sets and/or exports of
approved cases, brought to the synthetic set's geometry (FOV cropped, padded square, resized).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from angioflow.pipeline.datasets import Split
from angioflow.pipeline.errors import AngioflowError
from angioflow.pipeline.h5_formats import SYNTHETIC_SET

__all__ = [
    "EvaluationInputError",
    "RealReference",
    "ReferenceDataMissing",
    "evaluate_synthetic",
    "realism_distances",
    "load_real_reference",
    "read_synthetic",
]


class EvaluationInputError(AngioflowError, ValueError):
    """Files to evaluate that cannot be scored as given; the message names them and the fix."""


class ReferenceDataMissing(AngioflowError, FileNotFoundError):
    """No real data to compare a synthetic set with: neither public datasets nor an export."""


@dataclass(frozen=True)
class RealReference:
    """Real photos and A/V labels at one size.

    Attributes
    ----------
    photos : (N, S, S, 3) uint8
    labels : (N, S, S) uint8, 0 background, 1 artery, 2 vein, 3 crossing
    fov : (N, S, S) bool
    sources : tuple of str
        Where they came from (dataset names and export file names).
    """

    photos: np.ndarray
    labels: np.ndarray
    fov: np.ndarray
    sources: tuple[str, ...]


def load_real_reference(
    size: int,
    *,
    data: Path | None = None,
    datasets: tuple[str, ...] = ("rite", "les-av"),
    exports: tuple[Path, ...] = (),
    split: Split = "training",
) -> RealReference:
    """Real pairs from ``datasets``' ``split`` under ``data`` and from export files.

    Raises
    ------
    ReferenceDataMissing
        If neither gives a pair (no data folder and no export).
    """
    from angioflow.models.pix2pixhd import load_pairs
    from angioflow.pipeline.mask_structure import labels_from_channels

    given = data
    if data is None or not Path(data).is_dir():
        data, datasets = None, ()
    if not datasets and not exports:
        raise ReferenceDataMissing(
            f"no real reference: the public data folder {given} is missing and no export was "
            "given (pass --data with the public datasets folder, or --export approved.h5)"
        )
    masks, photos = load_pairs(data, datasets, [str(p) for p in exports], size, split=split)
    return RealReference(
        photos=photos,
        labels=np.stack([labels_from_channels(m[:2] > 0.5) for m in masks]),
        fov=masks[:, 2] > 0.5,
        sources=tuple(datasets) + tuple(Path(p).name for p in exports),
    )


def read_synthetic(path: Path, limit: int | None = None) -> dict[str, np.ndarray]:
    """``images``, ``av``, ``vessel`` and ``fov`` of the first ``limit`` samples of a set."""
    from angioflow.models.generation import field_of_view

    with h5py.File(path, "r") as handle:
        SYNTHETIC_SET.check(handle, path)
        count = len(handle["images"]) if limit is None else min(limit, len(handle["images"]))
        sample = {name: handle[name][:count] for name in ("images", "av", "vessel")}
    size = sample["images"].shape[1]
    sample["fov"] = np.repeat((field_of_view(size) > 0)[None], count, axis=0)
    return sample


def _recovery(segmenter: Any, synthetic: dict[str, np.ndarray]) -> dict[str, float]:
    """Vessel CNN scores of each generated photo against the vessel mask it was drawn from."""
    from angioflow.pipeline.metrics import vessel_scores

    scores = [
        vessel_scores(segmenter.segment(i, modality="fundus", fov=f), v > 0, fov=f)
        for i, v, f in zip(synthetic["images"], synthetic["vessel"], synthetic["fov"], strict=True)
    ]
    return {
        "dice_mean": float(np.mean([s.f1 for s in scores])),
        "dice_median": float(np.median([s.f1 for s in scores])),
        "auc_mean": float(np.mean([s.auc for s in scores])),
    }


def evaluate_synthetic(
    synthetic: dict[str, np.ndarray],
    reference: RealReference | None,
    *,
    name: str,
    inception_weights: Path | None = None,
    measures: tuple[str, ...] = ("recovery", "structure", "realism"),
    held_out: RealReference | None = None,
) -> dict[str, Any]:
    """Structure, realism and vessel recovery of a synthetic set.

    Parameters
    ----------
    synthetic : dict
        Samples read by :func:`read_synthetic` (``images``, ``av``, ``vessel``, ``fov``).
    reference : RealReference or None
        Real pairs at the set's size; without them only vessel recovery is measured.
    name : str
        The set's name in the result (its file name).
    inception_weights : Path, optional
        Inception-v3 FID weights file; adds true FID/KID/precision/recall.
    measures : tuple of {'recovery', 'structure', 'realism', 'two_sample'}
        What to measure (structure and realism need the reference, two_sample ``held_out``).
    held_out : RealReference, optional
        Real photos held out of every generator's training (test splits) for the classifier
        two-sample test.

    Returns
    -------
    dict with ``samples``, ``recovery`` (vessel CNN Dice/AUC against the drawn masks) and, with
    a reference, ``structure`` (:func:`pipeline.av_structure.compare_structure`), ``realism``
    (feature distances per feature space, plus the Fréchet distance between two halves of the
    real set as the floor to read it against) and ``stats`` (per-mask statistics of both sets,
    for plots); with ``held_out``, ``two_sample`` (:func:`models.two_sample.
    classifier_two_sample_test`: held-out AUC of a CNN telling the photos from the held-out
    real ones). Realism asked for with fewer than 2 real or 2 synthetic images, or a two-sample
    test with fewer photos than folds, is not measured: ``not_measured`` maps the measure to
    the reason instead.
    """
    from angioflow.models.vessel import VesselFeatureExtractor, VesselSegmenter
    from angioflow.pipeline.av_structure import compare_structure, structure_stats

    # one load serves vessel recovery and the feature space
    segmenter = VesselSegmenter.load() if {"recovery", "realism"} & set(measures) else None
    result: dict[str, Any] = {"set": name, "samples": len(synthetic["images"])}
    if "recovery" in measures:
        result["recovery"] = _recovery(segmenter, synthetic)
    if "two_sample" in measures and held_out is not None:
        _two_sample(result, synthetic, held_out)
    if reference is None or not {"structure", "realism"} & set(measures):
        return result
    if reference.photos.shape[1:3] != synthetic["images"].shape[1:3]:
        raise ValueError(
            f"the real reference is {reference.photos.shape[1]} px, the set "
            f"{synthetic['images'].shape[1]} px: load the reference at the set's size"
        )
    result["reference"] = {"sources": list(reference.sources), "samples": len(reference.labels)}
    if "structure" in measures:
        real_stats = [structure_stats(m) for m in reference.labels]
        synthetic_stats = [structure_stats(m) for m in synthetic["av"]]
        result["structure"] = compare_structure(real_stats, synthetic_stats)
        result["stats"] = {
            "real": [s.as_dict() for s in real_stats],
            "synthetic": [s.as_dict() for s in synthetic_stats],
        }
    if "realism" not in measures:
        return result
    if min(len(reference.photos), len(synthetic["images"])) < 2:  # no distribution to compare
        result.setdefault("not_measured", {})["realism"] = (
            "image realism needs at least 2 real and 2 synthetic images; the "
            f"reference has {len(reference.photos)}, the set {len(synthetic['images'])}"
        )
        return result
    features = VesselFeatureExtractor(segmenter.model, segmenter.weights_sha256)
    result["realism"] = {
        "vessel_cnn": realism_distances(
            features(reference.photos, reference.fov),
            features(synthetic["images"], synthetic["fov"]),
        )
    }
    if inception_weights is not None:
        from angioflow.models.inception import InceptionFeatureExtractor

        extractor = InceptionFeatureExtractor.load(inception_weights)
        result["realism"]["inception"] = realism_distances(
            extractor(reference.photos), extractor(synthetic["images"])
        )
    return result


def _two_sample(
    result: dict[str, Any], synthetic: dict[str, np.ndarray], held_out: RealReference
) -> None:
    from angioflow.models.two_sample import TwoSampleConfig, classifier_two_sample_test

    folds = TwoSampleConfig().folds
    if min(len(held_out.photos), len(synthetic["images"])) < folds:
        result.setdefault("not_measured", {})["two_sample"] = (
            f"the {folds}-fold two-sample test needs at least {folds} held-out real and "
            f"{folds} synthetic photos; there are {len(held_out.photos)} and "
            f"{len(synthetic['images'])}"
        )
        return
    measured = classifier_two_sample_test(
        held_out.photos, held_out.fov, synthetic["images"], synthetic["fov"] > 0
    )
    result["two_sample"] = measured.as_dict() | {"real_sources": list(held_out.sources)}


def realism_distances(real: np.ndarray, generated: np.ndarray) -> dict[str, float]:
    """Fréchet distance, KID and precision/recall of (N, D) and (M, D) feature sets, with the
    Fréchet distance between two interleaved halves of ``real`` (the floor to read it against;
    NaN below 4 real samples)."""
    from angioflow.pipeline.feature_distance import feature_distances, frechet_distance

    distances = feature_distances(real, generated).as_dict()
    distances["real_halves_frechet_distance"] = (  # interleaved, so both halves mix sources
        frechet_distance(real[0::2], real[1::2]) if len(real) >= 4 else float("nan")
    )
    return distances
