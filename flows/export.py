"""`angioflow export`: approved masks and their photos, as one HDF5 file or as a folder another
ML tool loads without a custom loader. Both carry the same patient-level splits.

HDF5 layout (``--out FILE.h5``)::

    /<nnnnn>/fundus   (H, W, 3) uint8      the case's fundus photo
    /<nnnnn>/vessel   (H, W) uint8 0/1     the approved vessel mask version
    /<nnnnn>/av       (H, W) uint8 0-3     the approved A/V mask version (class indices,
                                           :mod:`pipeline.av_encoding`)
    /<nnnnn>/fov      (H, W) uint8 0/1     the photo's field of view (stage 3)
    group attrs: case_id (pseudonymous), patient_pseudonym, split, vessel_version, av_version,
                 vessel_sha256, av_sha256
    file attrs: format ('angioflow-export'), format_version, created, software_version, cases,
                split_seed, split_fractions, av_classes

Folder layout (``--out DIR``, see docs/formats.md)::

    images/<nnnnn>.png   RGB fundus photo
    vessel/<nnnnn>.png   8-bit grey, 0 background / 255 vessel
    av/<nnnnn>.png       8-bit grey, class indices 0-3 (not a picture: values 0-3 look black)
    fov/<nnnnn>.png      8-bit grey, 0 outside / 255 inside the field of view
    legend.json          class index -> name and display colour, and the masks' values
    datalist.json        MONAI-style {"training": [...], "validation": [...], "test": [...]}
                         (a split with no cases is left out), paths relative to the file,
                         provenance per item

Only cases whose A/V mask is approved (stage ``done``) are exported. Splits are by patient
(:mod:`pipeline.splits`): all cases of a patient pseudonym land in one split. The output is
written under a temporary name and renamed; an existing file or folder is never overwritten.
An unreadable case stops the export (nothing is written) unless ``skip_unreadable`` is given,
and a store with no done case writes nothing: a training set never silently lacks cases.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from angioflow.pipeline.av_encoding import av_legend, folder_legend
from angioflow.pipeline.casestore import (
    CaseStore,
    CaseStoreError,
    MaskKind,
    Stage,
    software_version,
)
from angioflow.pipeline.errors import AngioflowError
from angioflow.pipeline.h5_formats import EXPORT
from angioflow.pipeline.splits import SPLITS, patient_splits
from PIL import Image

__all__ = [
    "FOLDER_FORMAT",
    "FOLDER_FORMAT_VERSION",
    "ExportError",
    "ExportExists",
    "export_approved",
    "export_store",
]

FOLDER_FORMAT = "angioflow-export-folder"  # datalist.json's "format"
FOLDER_FORMAT_VERSION = 1
_DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)


class ExportError(AngioflowError, ValueError):
    """An export asked for with split shares that cannot be met."""


class ExportExists(AngioflowError, FileExistsError):
    """An export that would overwrite a file or folder."""


def export_store(
    root: Path,
    out: Path,
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    skip_unreadable: bool = False,
) -> dict[str, list[str]]:
    """Export the done cases of the store at ``root`` (:func:`export_approved`), the training
    share being what the validation and test shares leave.

    Raises
    ------
    ExportError
        The validation and test shares exceed 1.
    ExportExists
        ``out`` exists.
    CaseStoreError
        No case is done, or a case is unreadable (without ``skip_unreadable``).
    """
    if val_fraction + test_fraction > 1.0:
        raise ExportError(
            f"--val-fraction {val_fraction} + --test-fraction {test_fraction} exceed 1; "
            "lower one of them"
        )
    fractions = (1.0 - val_fraction - test_fraction, val_fraction, test_fraction)
    store = CaseStore(root, create=False)
    return export_approved(
        store, out, fractions=fractions, seed=seed, skip_unreadable=skip_unreadable
    )


@dataclass(frozen=True)
class _ApprovedCase:
    case_id: str
    patient_pseudonym: str
    split: str
    fundus: np.ndarray
    masks: dict[str, np.ndarray]  # vessel 0/1, av 0-3, fov 0/1
    versions: dict[str, int]
    sha256: dict[str, str]


@dataclass(frozen=True)
class _Plan:
    """What an export writes: the done cases' (patient pseudonym, split), and the summary that
    the writer fills in as it reads them."""

    store: CaseStore
    fractions: tuple[float, float, float]
    seed: int
    skip_unreadable: bool
    summary: dict[str, list[str]]
    cases: dict[str, tuple[str, str]]

    @property
    def split_fractions(self) -> dict[str, float]:
        return dict(zip(SPLITS, self.fractions, strict=True))


def export_approved(
    store: CaseStore,
    out: Path,
    *,
    fractions: tuple[float, float, float] = _DEFAULT_FRACTIONS,
    seed: int = 0,
    skip_unreadable: bool = False,
) -> dict[str, list[str]]:
    """Write every done case's approved masks and photo to ``out``: one HDF5 file when ``out``
    ends in ``.h5``/``.hdf5``, else a folder of PNG files with a legend and a MONAI-style
    datalist (the layouts in this module's docstring).

    Parameters
    ----------
    store : CaseStore
    out : Path
        The file or folder to create.
    fractions : (3,) tuple of float
        Expected shares of patients in training, validation and test; sum to 1.
    seed : int
        Seed of the patient-level split.
    skip_unreadable : bool
        Export the readable cases when some are unreadable (listed in the summary) instead of
        refusing.

    Returns
    -------
    summary : dict
        ``{"exported": [case ids], "skipped": [case ids not done], "unreadable": [...]}``.

    Raises
    ------
    ExportExists
        If ``out`` exists (exports are versioned: name a new one).
    ValueError
        If ``fractions`` are not three shares summing to 1.
    CaseStoreError
        If a case is unreadable (without ``skip_unreadable``) or no case is done; nothing is
        written then.
    """
    if out.exists():
        raise ExportExists(f"{out} exists; exports are never overwritten, name a new one")
    plan = _plan(store, fractions, seed, skip_unreadable)
    write = _write_hdf5 if out.suffix.lower() in (".h5", ".hdf5") else _write_folder
    write(plan, out)
    return plan.summary


def _write_hdf5(plan: _Plan, out: Path) -> None:
    summary = plan.summary
    temp = out.with_name(f".{out.name}.tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with h5py.File(temp, "w") as handle:
            EXPORT.stamp(handle)
            for case in _read_cases(plan):
                _write_group(handle, case, len(summary["exported"]))
                summary["exported"].append(case.case_id)
            _refuse_empty(plan.store, summary)
            handle.attrs.update(
                created=_now(),
                software_version=software_version(),
                cases=len(summary["exported"]),
                split_seed=plan.seed,
                split_fractions=json.dumps(plan.split_fractions),
                av_classes=json.dumps(av_legend()),
            )
        temp.replace(out)
    finally:
        temp.unlink(missing_ok=True)


def _write_folder(plan: _Plan, out: Path) -> None:
    summary = plan.summary
    temp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(temp, ignore_errors=True)  # left by a killed export; never a user's folder
    for name in ("images", "vessel", "av", "fov"):
        (temp / name).mkdir(parents=True)
    datalist: dict[str, list[dict]] = {name: [] for name in SPLITS}
    version = software_version()
    try:
        for case in _read_cases(plan):
            stem = f"{len(summary['exported']):05d}.png"
            files = {
                "image": _write_png(temp, f"images/{stem}", case.fundus),
                "label": _write_png(temp, f"av/{stem}", case.masks["av"]),
                "vessel": _write_png(temp, f"vessel/{stem}", case.masks["vessel"] * 255),
                "fov": _write_png(temp, f"fov/{stem}", case.masks["fov"] * 255),
            }
            datalist[case.split].append(
                {key: path for key, (path, _) in files.items()}
                | {
                    "case_id": case.case_id,
                    "patient_pseudonym": case.patient_pseudonym,
                    "vessel_version": case.versions["vessel"],
                    "av_version": case.versions["av"],
                    "vessel_sha256": case.sha256["vessel"],
                    "av_sha256": case.sha256["av"],
                    "file_sha256": {key: digest for key, (_, digest) in files.items()},
                    "software_version": version,
                }
            )
            summary["exported"].append(case.case_id)
        _refuse_empty(plan.store, summary)
        (temp / "legend.json").write_text(json.dumps(folder_legend(fov=True), indent=1) + "\n")
        document = {
            "format": FOLDER_FORMAT,
            "format_version": FOLDER_FORMAT_VERSION,
            "description": "angioflow export of approved cases; image = fundus photo, label = "
            "A/V class indices (legend.json), vessel and fov = 0/255 masks",
            "created": _now(),
            "software_version": version,
            "labels": {str(c["index"]): c["name"] for c in av_legend()},
            "split": {
                "unit": "patient",
                "seed": plan.seed,
                "fractions": plan.split_fractions,
            },
            "numTraining": len(datalist["training"]),
            # An empty split is left out: MONAI's load_decathlon_datalist fails on an empty
            # "test" list with an IndexError, and on a missing key with a clear message.
            **{name: entries for name, entries in datalist.items() if entries},
        }
        (temp / "datalist.json").write_text(json.dumps(document, indent=1) + "\n")
        temp.rename(out)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _refuse_empty(store: CaseStore, summary: dict[str, list[str]]) -> None:
    if not summary["exported"]:
        unreadable = f", {len(summary['unreadable'])} unreadable" if summary["unreadable"] else ""
        raise CaseStoreError(
            f"no case of store {store.root} is done (A/V mask approved): nothing exported "
            f"({len(summary['skipped'])} still in curation or review{unreadable}); "
            f"`angioflow status --store {store.root}` shows where they stand"
        )


def _unreadable(case_id: str, error: CaseStoreError) -> CaseStoreError:
    return CaseStoreError(
        f"case {case_id} is unreadable, nothing exported: {error} (or pass --skip-unreadable "
        "to export the other cases)"
    )


def _plan(
    store: CaseStore, fractions: tuple[float, float, float], seed: int, skip_unreadable: bool
) -> _Plan:
    """The summary so far and, for each done case, its (patient pseudonym, split)."""
    summary: dict[str, list[str]] = {"exported": [], "skipped": [], "unreadable": []}
    patients = {}
    for case_id in store.case_ids():
        try:
            case_summary = store.summary(case_id)
        except CaseStoreError as error:
            if not skip_unreadable:
                raise _unreadable(case_id, error) from None
            summary["unreadable"].append(f"{case_id}: {error}")
            continue
        if case_summary.stage is Stage.DONE:
            patients[case_id] = case_summary.patient_pseudonym
        else:
            summary["skipped"].append(case_id)
    if not patients:
        _refuse_empty(store, summary)
    splits = patient_splits(patients, fractions=fractions, seed=seed)
    cases = {case_id: (patients[case_id], splits[case_id]) for case_id in patients}
    return _Plan(store, fractions, seed, skip_unreadable, summary, cases)


def _read_cases(plan: _Plan) -> Iterator[_ApprovedCase]:
    """Each planned case's pixels, one at a time; an unreadable one stops the export, or is
    noted in the plan's summary with ``skip_unreadable``."""
    store = plan.store
    for case_id, (patient, split) in plan.cases.items():
        try:
            approved = store.summary(case_id).approved_versions
            masks, versions, sha256 = {}, {}, {}
            for kind in (MaskKind.VESSEL, MaskKind.AV):
                version = approved[kind]
                masks[kind.value] = store.read_version(case_id, kind, version)
                versions[kind.value] = version
                sha256[kind.value] = store.versions(case_id, kind)[version - 1].sha256
            fov = store.read_stage(case_id, "vessel_maps", arrays=("fundus_fov",))
            masks["fov"] = (fov.arrays["fundus_fov"] > 0).astype(np.uint8)
            fundus = store.read_raw(case_id).fundus
        except CaseStoreError as error:
            if not plan.skip_unreadable:
                raise _unreadable(case_id, error) from None
            plan.summary["unreadable"].append(f"{case_id}: {error}")
            continue
        yield _ApprovedCase(case_id, patient, split, fundus, masks, versions, sha256)


def _write_group(handle: h5py.File, case: _ApprovedCase, index: int) -> None:
    group = handle.create_group(f"{index:05d}")
    options = {"compression": "gzip", "compression_opts": 4}
    group.create_dataset("fundus", data=case.fundus, **options)
    for name, mask in case.masks.items():
        group.create_dataset(name, data=mask, **options)
    for kind in ("vessel", "av"):
        group.attrs[f"{kind}_version"] = case.versions[kind]
        group.attrs[f"{kind}_sha256"] = case.sha256[kind]
    group.attrs.update(
        case_id=case.case_id, patient_pseudonym=case.patient_pseudonym, split=case.split
    )


def _write_png(folder: Path, relative: str, pixels: np.ndarray) -> tuple[str, str]:
    """Write ``pixels`` as ``folder/relative``; returns (relative path, sha256 of the file)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(buffer, format="PNG")
    data = buffer.getvalue()
    (folder / relative).write_bytes(data)
    return relative, hashlib.sha256(data).hexdigest()
