"""Downstream usefulness of a synthetic set (the paper's Table II experiment as one command).

The vessel CNN is trained from scratch on real images only, on real + k synthetic images for
each k, and on synthetic images only, for each seed, and every model is scored on a held-out
real set (DRIVE test by default). Each setting's run folder and result file are kept in the
work folder, so a re-run continues where it stopped and never retrains a finished setting.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
from angioflow.flows.catalog import find_catalog, public_data_folder
from angioflow.flows.resources import packaged_file
from angioflow.flows.settings_file import load_settings
from angioflow.models.hvgn import HVGNConfig, HVGNTrainingConfig
from angioflow.models.vessel import (
    TrainingImage,
    VesselTrainingConfig,
    VesselUNetConfig,
    load_training_images,
    prepare_training_image,
)
from angioflow.pipeline.errors import AngioflowError
from angioflow.pipeline.h5_formats import SYNTHETIC_SET
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DownstreamConfig",
    "DownstreamError",
    "DownstreamRun",
    "Setting",
    "downstream_experiment",
    "downstream_settings",
    "run_downstream",
]

METRICS = ("auc", "accuracy", "sensitivity", "specificity", "f1")
DEFAULT_CONFIG = "configs/downstream.yaml"  # shipped with angioflow
AV_METRICS = ("av_accuracy", "artery_sensitivity", "vein_sensitivity")


class DownstreamError(AngioflowError, ValueError):
    """The experiment cannot run with the given set or work folder; the message says why."""


class DownstreamConfig(BaseModel):
    """What the experiment trains and where it tests.

    Attributes
    ----------
    real_datasets : tuple of str
        Public sets whose training splits are the real training images.
    synthetic_counts : tuple of int
        The k of the "real + k synthetic" settings; the largest is also used alone.
    seeds : tuple of int
        One model per setting and seed.
    training : VesselTrainingConfig
        Training of every model (its ``datasets`` and ``phantom_fa_cases`` are ignored: the
        experiment chooses the images).
    test_dataset : str
        Held-out real set, scored on its test split.
    test_limit : int or None
        Score only the first images of the test split (None: all).
    phantom_arm : bool
        Also train with the phantom's rendered photos in place of the synthetic ones (real + k
        phantom photos for each k, and the largest k alone): the rule-based baseline a
        learned generator must beat. The photos (``work/phantom.h5``, the synthetic set's
        size) are rendered once and kept.
    av : HVGNTrainingConfig or None
        Also train the A/V network (HVGN) per setting, on ``av_real_datasets`` + the synthetic
        A/V masks, and score its A/V accuracy on ``av_test_dataset`` test with the truth
        vessel masks (None: vessel CNN only; HVGN costs about 1.3 s a step on 2 cores).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    real_datasets: tuple[str, ...] = ("drive",)
    synthetic_counts: tuple[int, ...] = Field((20, 40), min_length=1)
    seeds: tuple[int, ...] = Field((0,), min_length=1)
    training: VesselTrainingConfig = VesselTrainingConfig(steps=400, phantom_fa_cases=0)
    test_dataset: str = "drive"
    test_limit: int | None = Field(None, ge=1)
    phantom_arm: bool = True
    av: HVGNTrainingConfig | None = None
    av_real_datasets: tuple[str, ...] = ("rite",)
    av_test_dataset: str = "rite"


class Setting(BaseModel):
    """One training set of the experiment: real images or none, plus ``synthetic`` images of
    the ``source`` set (the synthetic set, or the phantom's photos)."""

    model_config = ConfigDict(frozen=True)

    name: str
    real: bool
    synthetic: int
    seed: int
    source: Literal["synthetic", "phantom"] = "synthetic"


def downstream_settings(config: DownstreamConfig) -> list[Setting]:
    """real only, real + k synthetic for each k, synthetic only (largest k), and the same with
    phantom photos when ``phantom_arm``; for every seed."""
    largest = max(config.synthetic_counts)
    kinds = [("real", True, 0, "synthetic")]
    sources = [("synthetic", "syn")] + ([("phantom", "phantom")] if config.phantom_arm else [])
    for source, tag in sources:
        kinds += [(f"real+{k}{tag}", True, k, source) for k in sorted(config.synthetic_counts)]
        kinds += [(f"{largest}{tag}", False, largest, source)]
    return [
        Setting(name=name, real=real, synthetic=k, seed=seed, source=source)
        for seed in config.seeds
        for name, real, k, source in kinds
    ]


def phantom_photo_set(work: Path, count: int, size: int) -> Path:
    """``work/phantom.h5``: ``count`` phantom photos at ``size`` px, rendered on first use.

    Raises
    ------
    DownstreamError
        If the file holds photos of another count or size.
    """
    from angioflow.models.generation import write_phantom_photo_set

    path = work / "phantom.h5"
    if not path.exists():
        write_phantom_photo_set(path, count, size=size)
    with h5py.File(path, "r") as handle:
        SYNTHETIC_SET.check(handle, path)
        held = handle["images"].shape
    if held[:2] != (count, size):
        raise DownstreamError(
            f"{path} holds {held[0]} phantom photos of {held[1]} px, {count} of {size} px "
            "needed: pass a new --work folder for a changed configuration"
        )
    return path


def synthetic_training_images(
    path: Path, count: int, *, model: VesselUNetConfig
) -> list[TrainingImage]:
    """The first ``count`` photos of a synthetic set with their vessel masks as truth.

    Raises
    ------
    DownstreamError
        If the set holds fewer than ``count`` samples.
    """
    from angioflow.models.generation import field_of_view

    with h5py.File(path, "r") as handle:
        SYNTHETIC_SET.check(handle, path)
        available = len(handle["images"])
        if available < count:
            raise DownstreamError(
                f"{path.name} holds {available} synthetic samples, {count} needed: generate a "
                "larger set (angioflow generate --n) or lower synthetic_counts"
            )
        images, vessels = handle["images"][:count], handle["vessel"][:count] > 0
    fov = field_of_view(images.shape[1]) > 0
    return [
        prepare_training_image(
            f"synthetic/{index}",
            image,
            vessel,
            fov,
            modality="fundus",
            model=model,
        )
        for index, (image, vessel) in enumerate(zip(images, vessels, strict=True))
    ]


def synthetic_av_images(path: Path, count: int, *, model: HVGNConfig) -> list[Any]:
    """The first ``count`` samples of a synthetic set as HVGN training images."""
    from angioflow.models.generation import field_of_view
    from angioflow.models.hvgn import prepare_av_image

    with h5py.File(path, "r") as handle:
        SYNTHETIC_SET.check(handle, path)
        images, av = handle["images"][:count], handle["av"][:count]
    fov = field_of_view(images.shape[1]) > 0
    return [
        prepare_av_image(f"synthetic/{i}", image, labels > 0, labels, fov, model=model)
        for i, (image, labels) in enumerate(zip(images, av, strict=True))
    ]


def _score_av(weights: Path, records: list[Any]) -> dict[str, float]:
    from angioflow.models.hvgn import AVLabeller
    from angioflow.pipeline.metrics import av_scores
    from angioflow.pipeline.vessel_graph import av_labels

    labeller = AVLabeller.load(weights)
    scores = []
    for record in records:
        probability = labeller.artery_probability(record.image, record.vessel, fov=record.fov)
        scores.append(av_scores(av_labels(probability, record.vessel), record.av))
    return {
        "av_accuracy": float(np.mean([s.accuracy for s in scores])),
        "artery_sensitivity": float(np.mean([s.artery_sensitivity for s in scores])),
        "vein_sensitivity": float(np.mean([s.vein_sensitivity for s in scores])),
    }


def _score(weights: Path, records: list[Any]) -> dict[str, float]:
    from angioflow.models.vessel import VesselSegmenter
    from angioflow.pipeline.metrics import vessel_scores

    segmenter = VesselSegmenter.load(weights)
    scores = [
        vessel_scores(segmenter.segment(r.image, modality="fundus"), r.vessel, fov=r.fov).as_dict()
        for r in records
    ]
    return {name: float(np.mean([s[name] for s in scores])) for name in METRICS} | {
        "test_images": len(scores)
    }


def run_downstream(
    config: DownstreamConfig,
    synthetic_set: Path,
    data: Path,
    work: Path,
    *,
    on_setting: Callable[[Setting, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train and score every setting; returns (and writes ``work/results.json``) the table.

    Returns
    -------
    results : dict
        ``settings``: one row per setting and seed (name, seed, real, synthetic, training
        images, metrics on the test set); ``summary``: per setting name, the mean and standard
        deviation over seeds of each metric.
    """
    from angioflow.models.vessel import train_vessel
    from angioflow.pipeline.datasets import load_dataset

    work.mkdir(parents=True, exist_ok=True)
    test = load_dataset(data, config.test_dataset, "test", limit=config.test_limit)
    model = config.training.model
    real = load_training_images(data, config.real_datasets, model=model)
    largest = max(config.synthetic_counts)
    sets = {"synthetic": synthetic_set}
    if config.phantom_arm:
        with h5py.File(synthetic_set, "r") as handle:
            size = handle["images"].shape[1]
        sets["phantom"] = phantom_photo_set(work, largest, size)
    added = {
        source: synthetic_training_images(path, largest, model=model)
        for source, path in sets.items()
    }
    if config.av is not None:
        from angioflow.models.hvgn import load_av_training_images, train_hvgn

        av_model = config.av.model
        real_av = load_av_training_images(data, config.av_real_datasets, model=av_model)
        added_av = {
            source: synthetic_av_images(path, largest, model=av_model)
            for source, path in sets.items()
        }
        av_test = load_dataset(data, config.av_test_dataset, "test", limit=config.test_limit)
    rows = []
    for setting in downstream_settings(config):
        folder = work / f"{setting.name}_seed{setting.seed}"
        result_file = folder / "result.json"
        training = config.training.model_copy(update={"seed": setting.seed})
        if result_file.exists():
            row = json.loads(result_file.read_text())
            if row.get("training") != training.model_dump(mode="json"):
                raise DownstreamError(
                    f"{folder} holds a run with other training settings; pass a new --work "
                    "folder for a changed configuration"
                )
        else:
            images = (real if setting.real else []) + added[setting.source][: setting.synthetic]
            train_vessel(training, images, folder)
            row = setting.model_dump() | {
                "training": training.model_dump(mode="json"),
                "training_images": len(images),
                **_score(folder / "weights", test),
            }
            if config.av is not None:
                extra = added_av[setting.source][: setting.synthetic]
                av_images = (real_av if setting.real else []) + extra
                av_training = config.av.model_copy(update={"seed": setting.seed})
                train_hvgn(av_training, av_images, folder / "hvgn")
                row |= _score_av(folder / "hvgn" / "weights", av_test)
            result_file.write_text(json.dumps(row, indent=2) + "\n")
        rows.append(row)
        if on_setting is not None:
            on_setting(setting, row)
    summary: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(r["name"] for r in rows):
        group = [r for r in rows if r["name"] == name]
        summary[name] = {"seeds": len(group), "synthetic": group[0]["synthetic"]}
        for metric in (*METRICS, *AV_METRICS) if config.av is not None else METRICS:
            values = [r[metric] for r in group]
            summary[name][f"{metric}_mean"] = float(np.mean(values))
            summary[name][f"{metric}_std"] = float(np.std(values))
    results = {
        "config": config.model_dump(mode="json"),
        "synthetic_set": synthetic_set.name,
        "settings": rows,
        "summary": summary,
    }
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


@dataclass(frozen=True)
class DownstreamRun:
    """A finished experiment: its settings, results (see :func:`run_downstream`) and report."""

    config: DownstreamConfig
    results: dict[str, Any]
    report: Path

    @property
    def metrics(self) -> list[str]:
        """The metrics of the summary table, A/V accuracy when the A/V network was trained."""
        return [*METRICS, *(["av_accuracy"] if self.config.av is not None else [])]


def downstream_experiment(
    work: Path,
    *,
    config: Path | None = None,
    synthetic: Path | None = None,
    data: Path | None = None,
    catalog: Path | None = None,
    on_setting: Callable[[Setting, dict[str, Any]], None] | None = None,
    on_message: Callable[[str], None] | None = None,
) -> DownstreamRun:
    """Run the experiment of ``config`` (default: the shipped ``configs/downstream.yaml``) in
    ``work`` and write its report.

    Parameters
    ----------
    synthetic : Path, optional
        The synthetic set; by default ``work/synthetic.h5``, generated with the shipped weights
        when missing.
    data : Path, optional
        Public datasets folder; default: the catalog's ``public_datasets``.
    on_message : callable, optional
        Receives a line before a long step (generating the set).

    Raises
    ------
    SettingsFileError, DownstreamError, CatalogError
    """
    import torch
    from angioflow.flows.reports import downstream_report

    settings = load_settings(DownstreamConfig, config or packaged_file(DEFAULT_CONFIG))
    data = public_data_folder(find_catalog(catalog), data)
    torch.set_num_threads(settings.training.threads)
    if synthetic is None:
        from angioflow.models.generation import Generators, SetRequest, generate_set

        synthetic = work / "synthetic.h5"
        if not synthetic.exists():
            count = max(settings.synthetic_counts)
            if on_message is not None:
                on_message(f"generating {count} synthetic samples")
            generate_set(Generators.load(), SetRequest(n=count), synthetic)
    results = run_downstream(settings, synthetic, data, work, on_setting=on_setting)
    return DownstreamRun(settings, results, downstream_report(results, work))
