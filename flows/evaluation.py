"""Evaluation of a synthetic set against real data: structural realism of its A/V masks, image
realism of its photos in a feature space, and whether the vessel CNN finds the vessels the
photos were asked to draw; and vessel segmentation scores of prediction files against truth.

Real reference pairs come from the training splits of the public A/V sets and/or exports of
approved cases, brought to the synthetic set's geometry (FOV cropped, padded square, resized).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from angioflow.pipeline.errors import AngioflowError
from angioflow.pipeline.h5_formats import SYNTHETIC_SET

__all__ = [
    "EvaluationInputError",
    "RealReference",
    "ReferenceDataMissing",
    "case_files",
    "VesselPairs",
    "evaluate_synthetic",
    "load_real_reference",
    "pair_vessel_files",
    "read_synthetic",
    "score_vessel_pairs",
]


class EvaluationInputError(AngioflowError, ValueError):
    """Files to evaluate that cannot be scored as given; the message names them and the fix."""


class ReferenceDataMissing(AngioflowError, FileNotFoundError):
    """No real data to compare a synthetic set with: neither public datasets nor an export."""


@dataclass(frozen=True)
class VesselPairs:
    """Prediction, truth and optional FOV file of each case, and the files left unscored.

    Attributes
    ----------
    cases : dict
        Case id -> (prediction, truth, FOV or None).
    unpaired_predictions, unpaired_truths : dict
        Case id -> the file that has no partner.
    """

    cases: dict[str, tuple[Path, Path, Path | None]]
    unpaired_predictions: dict[str, Path]
    unpaired_truths: dict[str, Path]


def case_files(folder: Path, role: str) -> dict[str, Path]:
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


def pair_vessel_files(pred: Path, gt: Path, fov: Path | None = None) -> VesselPairs:
    """Match prediction, truth and FOV files by the part of their name before the first '_'
    ('01_test_vessel.png', '01_manual1.gif', '01_test_mask.gif').

    Raises
    ------
    EvaluationInputError
        If a folder is missing, two files of one folder are one case, no case has both a
        prediction and a truth, or ``fov`` lacks the mask of a paired case.
    """
    predictions, truths = case_files(pred, "prediction"), case_files(gt, "truth")
    masks = case_files(fov, "FOV") if fov is not None else {}
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
    return VesselPairs(
        cases={k: (predictions[k], truths[k], masks.get(k)) for k in keys},
        unpaired_predictions={k: p for k, p in predictions.items() if k not in truths},
        unpaired_truths={k: p for k, p in truths.items() if k not in predictions},
    )


def _unit_interval(path: Path) -> np.ndarray:
    """A mask or probability file (any accepted format, 8 or 16 bit) scaled to [0, 1]."""
    from angioflow.pipeline.io import ImageRejected, read_mask

    try:
        values = read_mask(path)
    except ImageRejected as error:
        raise EvaluationInputError(f"{path}: {error}") from error
    return values.astype(np.float32) / np.iinfo(values.dtype).max


def score_vessel_pairs(pairs: VesselPairs, *, threshold: float = 0.5) -> dict[str, dict]:
    """:func:`pipeline.metrics.vessel_scores` of every paired case, keyed by case id.

    Raises
    ------
    EvaluationInputError
        If a file cannot be read, or a case's prediction, truth and FOV differ in size.
    """
    from angioflow.pipeline.metrics import vessel_scores

    rows = {}
    for key, (prediction, truth, fov) in pairs.cases.items():
        probability = _unit_interval(prediction)
        labels = _unit_interval(truth) > 0.5
        field = _unit_interval(fov) > 0.5 if fov is not None else None
        shapes = [(prediction, probability.shape), (truth, labels.shape)]
        if field is not None:
            shapes.append((fov, field.shape))
        if len({shape for _, shape in shapes}) > 1:
            sizes = ", ".join(f"{path.name} is {s[1]}x{s[0]}" for path, s in shapes)
            raise EvaluationInputError(
                f"case {key}: {sizes} (width x height); resize the prediction to its truth"
            )
        rows[key] = vessel_scores(probability, labels, fov=field, threshold=threshold).as_dict()
    return rows


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
) -> RealReference:
    """Real pairs from ``datasets``' training splits under ``data`` and from export files.

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
    masks, photos = load_pairs(data, datasets, [str(p) for p in exports], size)
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
    measures : tuple of {'recovery', 'structure', 'realism'}
        What to measure (structure and realism need the reference).

    Returns
    -------
    dict with ``samples``, ``recovery`` (vessel CNN Dice/AUC against the drawn masks) and, with
    a reference, ``structure`` (:func:`pipeline.av_structure.compare_structure`), ``realism``
    (feature distances per feature space, plus the Fréchet distance between two halves of the
    real set as the floor to read it against) and ``stats`` (per-mask statistics of both sets,
    for plots).
    """
    from angioflow.models.vessel import VesselFeatureExtractor, VesselSegmenter
    from angioflow.pipeline.av_structure import compare_structure, structure_stats

    # one load serves vessel recovery and the feature space
    segmenter = VesselSegmenter.load() if {"recovery", "realism"} & set(measures) else None
    result: dict[str, Any] = {"set": name, "samples": len(synthetic["images"])}
    if "recovery" in measures:
        result["recovery"] = _recovery(segmenter, synthetic)
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
    if min(len(reference.photos), len(synthetic["images"])) < 2:
        raise EvaluationInputError(
            "image realism needs at least 2 real and 2 synthetic images; the reference has "
            f"{len(reference.photos)}, the set {len(synthetic['images'])}: pass --data with the "
            "public datasets folder or --export with more approved cases"
        )
    features = VesselFeatureExtractor(segmenter.model, segmenter.weights_sha256)
    result["realism"] = {
        "vessel_cnn": _realism(
            features(reference.photos, reference.fov),
            features(synthetic["images"], synthetic["fov"]),
        )
    }
    if inception_weights is not None:
        from angioflow.models.inception import InceptionFeatureExtractor

        extractor = InceptionFeatureExtractor.load(inception_weights)
        result["realism"]["inception"] = _realism(
            extractor(reference.photos), extractor(synthetic["images"])
        )
    return result


def _realism(real: np.ndarray, generated: np.ndarray) -> dict[str, float]:
    from angioflow.pipeline.feature_distance import feature_distances, frechet_distance

    distances = feature_distances(real, generated).as_dict()
    distances["real_halves_frechet_distance"] = (  # interleaved, so both halves mix sources
        frechet_distance(real[0::2], real[1::2]) if len(real) >= 4 else float("nan")
    )
    return distances
