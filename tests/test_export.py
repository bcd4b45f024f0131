"""Exports another ML user loads without a loader: HDF5 and folder exports of approved cases,
patient-level splits, the legend and datalist, format stamps, and the torch Dataset over
exports and synthetic sets."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from angioflow.flows.cli import app
from angioflow.flows.export import export_approved
from angioflow.models.export_dataset import ExportDataset
from angioflow.pipeline.av_encoding import AV_CLASSES, av_to_rgb
from angioflow.pipeline.casestore import CaseStore
from angioflow.pipeline.h5_formats import EXPORT, SYNTHETIC_SET, UnsupportedFileFormat
from angioflow.pipeline.ingest import ingest_case
from angioflow.pipeline.splits import SPLITS, patient_splits, split_of_patient
from PIL import Image
from support import PATIENT_ID, write_case
from test_generation import _generators, tiny_weights  # noqa: F401 - a shared fixture
from typer.testing import CliRunner

runner = CliRunner()
SHAPE = (96, 128)
# Six patients, three of them with both eyes: 9 cases.
PATIENTS = [(f"{PATIENT_ID}-{k}", eyes) for k, eyes in enumerate(["OD OS", "OD", "OD OS", "OS"])]
PATIENTS += [(f"{PATIENT_ID}-{k}", "OD OS") for k in (4,)] + [(f"{PATIENT_ID}-5", "OD")]


def _labels(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A vessel mask and an A/V mask using every class."""
    rng = np.random.default_rng(seed)
    av = np.zeros(SHAPE, np.uint8)
    for row, label in zip(
        rng.choice(np.arange(8, 88), 6, replace=False), [1, 1, 2, 2, 3, 1], strict=True
    ):
        av[row : row + 2, 10:120] = label
    return (av > 0).astype(np.uint8), av


@pytest.fixture
def done_store(tmp_path: Path, secret: bytes) -> CaseStore:
    """Ingested phantom-free cases (real PNG folders through real ingestion) with approved
    masks and a field of view, plus one case still waiting for review."""
    source, store = tmp_path / "raw", CaseStore(tmp_path / "store")
    seed = 0
    for patient, eyes in PATIENTS:
        for eye in eyes.split():
            seed += 1
            folder = write_case(
                source / f"{patient}_{eye}", patient_id=patient, eye=eye, seed=seed, shape=SHAPE
            )
            outcome = ingest_case(folder, store, source_root=source, key=secret)
            assert outcome.status == "ingested", outcome
            case_id = outcome.case_id
            vessel, av = _labels(seed)
            fov = np.zeros(SHAPE, np.uint8)
            fov[4:-4, 4:-4] = 1
            store.write_stage(case_id, "vessel_maps", {"fundus_fov": fov}, params={}, seconds=0)
            store.save_version(case_id, "vessel", vessel, editor="angioflow", parent=0)
            store.approve(case_id, "vessel", version=1, editor="dr_a")
            store.save_version(case_id, "av", av, editor="angioflow", parent=0)
            store.save_version(case_id, "av", av, editor="dr_b", parent=1, note="checked")
            store.approve(case_id, "av", version=2, editor="dr_b")
    waiting = write_case(source / "waiting", patient_id=f"{PATIENT_ID}-w", seed=99, shape=SHAPE)
    assert ingest_case(waiting, store, source_root=source, key=secret).status == "ingested"
    return store


def _patients(store: CaseStore) -> dict[str, str]:
    return {c: store.summary(c).patient_pseudonym for c in store.case_ids()}


def test_patient_splits_keep_patients_together_and_are_seeded() -> None:
    cases = {f"c{i}": f"p{i // 2}" for i in range(400)}  # 200 patients, two cases each
    splits = patient_splits(cases, fractions=(0.6, 0.2, 0.2), seed=1)
    for i in range(0, 400, 2):
        assert splits[f"c{i}"] == splits[f"c{i + 1}"]
    shares = [sum(s == name for s in splits.values()) / 400 for name in SPLITS]
    assert shares == pytest.approx([0.6, 0.2, 0.2], abs=0.08)
    assert patient_splits(cases, fractions=(0.6, 0.2, 0.2), seed=1) == splits
    assert patient_splits(cases, fractions=(0.6, 0.2, 0.2), seed=2) != splits
    grown = cases | {f"new{i}": f"q{i}" for i in range(50)}  # new patients move nobody
    again = patient_splits(grown, fractions=(0.6, 0.2, 0.2), seed=1)
    assert {c: again[c] for c in cases} == splits
    assert set(patient_splits(cases, fractions=(0.0, 0.0, 1.0)).values()) == {"test"}


@pytest.mark.parametrize(
    ("fractions", "match"),
    [((0.5, 0.2, 0.2), "sum to 1"), ((1.2, -0.1, -0.1), r"in \[0, 1\]"), ((1.0,), "three")],
)
def test_split_fractions_are_validated(fractions: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        split_of_patient("p", fractions=fractions)


@pytest.mark.slow
def test_folder_export_writes_pngs_legend_and_a_patient_split_datalist(
    done_store: CaseStore, tmp_path: Path
) -> None:
    out = tmp_path / "approved"
    summary = export_approved(done_store, out, fractions=(0.5, 0.25, 0.25), seed=3)
    assert len(summary["exported"]) == 9 and len(summary["skipped"]) == 1
    assert not list(tmp_path.glob(".approved*"))  # the temporary folder is gone
    datalist = json.loads((out / "datalist.json").read_text())
    assert datalist["format"] == "angioflow-export-folder" and datalist["format_version"] == 1
    assert datalist["labels"] == {str(i): name for i, name in enumerate(AV_CLASSES)}
    assert datalist["split"] == {
        "unit": "patient",
        "seed": 3,
        "fractions": {"training": 0.5, "validation": 0.25, "test": 0.25},
    }
    items = {name: datalist.get(name, []) for name in SPLITS}
    assert all(datalist.get(name) != [] for name in SPLITS)  # empty splits are left out
    assert datalist["numTraining"] == len(items["training"])
    assert sum(map(len, items.values())) == 9
    patients = _patients(done_store)
    split_of = {e["case_id"]: name for name, entries in items.items() for e in entries}
    assert split_of == patient_splits(
        {c: patients[c] for c in split_of}, fractions=(0.5, 0.25, 0.25), seed=3
    )
    by_patient: dict[str, set[str]] = {}
    for case_id, split in split_of.items():
        by_patient.setdefault(patients[case_id], set()).add(split)
    assert all(len(splits) == 1 for splits in by_patient.values())  # nobody straddles
    assert len(by_patient) == 6
    for entry in (e for entries in items.values() for e in entries):
        case_id = entry["case_id"]
        assert entry["patient_pseudonym"] == patients[case_id]
        assert entry["vessel_version"] == 1 and entry["av_version"] == 2
        assert entry["av_sha256"] == done_store.versions(case_id, "av")[1].sha256
        assert entry["software_version"]
        for key in ("image", "label", "vessel", "fov"):
            path = out / entry[key]
            assert not Path(entry[key]).is_absolute() and path.is_file()
            assert entry["file_sha256"][key] == hashlib.sha256(path.read_bytes()).hexdigest()
        av = np.asarray(Image.open(out / entry["label"]))
        np.testing.assert_array_equal(av, done_store.read_version(case_id, "av", 2))
        vessel = np.asarray(Image.open(out / entry["vessel"]))
        assert vessel.dtype == np.uint8 and set(np.unique(vessel)) == {0, 255}
        assert np.asarray(Image.open(out / entry["image"])).shape == (*SHAPE, 3)
        assert set(np.unique(np.asarray(Image.open(out / entry["fov"])))) == {0, 255}
    legend = json.loads((out / "legend.json").read_text())
    assert [c["name"] for c in legend["av"]["classes"]] == list(AV_CLASSES)
    assert [c["color"] for c in legend["av"]["classes"]] == av_to_rgb(np.arange(4)).tolist()
    assert legend["vessel"]["values"] == {"0": "background", "255": "vessel"}
    written = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert PATIENT_ID.encode() not in written  # pseudonyms only
    with pytest.raises(FileExistsError, match="never overwritten"):
        export_approved(done_store, out)


@pytest.mark.slow
def test_hdf5_export_is_stamped_and_carries_the_same_splits(
    done_store: CaseStore, tmp_path: Path
) -> None:
    export_approved(done_store, tmp_path / "folder", seed=5)
    summary = export_approved(done_store, tmp_path / "approved.h5", seed=5)
    assert len(summary["exported"]) == 9
    datalist = json.loads((tmp_path / "folder" / "datalist.json").read_text())
    folder_split = {e["case_id"]: name for name in SPLITS for e in datalist.get(name, [])}
    with h5py.File(tmp_path / "approved.h5") as handle:
        assert handle.attrs["format"] == EXPORT.name and handle.attrs["format_version"] == 1
        assert json.loads(handle.attrs["av_classes"])[2]["name"] == "vein"
        h5_split = {str(g.attrs["case_id"]): str(g.attrs["split"]) for g in handle.values()}
        group = next(iter(handle.values()))
        assert group.attrs["patient_pseudonym"] == _patients(done_store)[group.attrs["case_id"]]
    assert h5_split == folder_split


@pytest.mark.slow
def test_dataset_reads_folder_and_hdf5_exports_alike(done_store: CaseStore, tmp_path: Path) -> None:
    export_approved(done_store, tmp_path / "folder", fractions=(0.5, 0.25, 0.25))
    export_approved(done_store, tmp_path / "approved.h5", fractions=(0.5, 0.25, 0.25))
    folder = ExportDataset(tmp_path / "folder")
    h5 = ExportDataset(tmp_path / "approved.h5")
    assert len(folder) == len(h5) == 9
    by_id = {h5[i]["id"]: h5[i] for i in range(len(h5))}
    for index in range(len(folder)):
        sample = folder[index]
        twin = by_id[sample["id"]]
        assert sample["image"].shape == (3, *SHAPE) and sample["image"].dtype == torch.float32
        assert 0.0 <= sample["image"].min() and sample["image"].max() <= 1.0
        assert sample["vessel"].shape == (1, *SHAPE) and sample["av"].dtype == torch.int64
        assert sample["fov"].dtype == torch.bool
        for key in ("image", "vessel", "av", "fov"):
            assert torch.equal(sample[key], twin[key]), key
        truth = done_store.read_version(sample["id"], "av", 2)
        np.testing.assert_array_equal(sample["av"].numpy(), truth)
        assert torch.equal(sample["vessel"][0] > 0, sample["av"] > 0)
    datalist = json.loads((tmp_path / "folder" / "datalist.json").read_text())
    for split in SPLITS:
        part = ExportDataset(tmp_path / "folder", split=split)
        ids = sorted(part[i]["id"] for i in range(len(part)))
        assert ids == sorted(e["case_id"] for e in datalist.get(split, []))
        h5_part = ExportDataset(tmp_path / "approved.h5", split=split)
        assert sorted(h5_part[i]["id"] for i in range(len(h5_part))) == ids
    loader = torch.utils.data.DataLoader(h5, batch_size=3, num_workers=2)
    batch = next(iter(loader))
    assert batch["image"].shape == (3, 3, *SHAPE) and len(batch["id"]) == 3
    flipped = ExportDataset(
        tmp_path / "approved.h5",
        transform=lambda s: {**s, "image": s["image"].flip(-1), "av": s["av"].flip(-1)},
    )
    assert torch.equal(flipped[0]["image"], h5[0]["image"].flip(-1))


@pytest.mark.slow
def test_cli_export_writes_a_folder_or_a_file_by_its_name(
    done_store: CaseStore, tmp_path: Path
) -> None:
    root = str(done_store.root)
    folder = runner.invoke(
        app,
        ["export", "--store", root, "--out", str(tmp_path / "ds"), "--test-fraction", "0.3"],
    )
    assert folder.exit_code == 0, folder.stderr
    assert "9 approved cases written" in folder.output
    datalist = json.loads((tmp_path / "ds" / "datalist.json").read_text())
    assert datalist["split"]["fractions"]["test"] == 0.3
    h5 = runner.invoke(app, ["export", "--store", root, "--out", str(tmp_path / "a.h5")])
    assert h5.exit_code == 0 and h5py.is_hdf5(tmp_path / "a.h5")
    bad = runner.invoke(
        app,
        ["export", "--store", root, "--out", str(tmp_path / "x"), "--val-fraction", "0.6",
         "--test-fraction", "0.5"],
    )  # fmt: skip
    assert bad.exit_code == 2 and "exceed 1" in bad.stderr and not (tmp_path / "x").exists()
    again = runner.invoke(app, ["export", "--store", root, "--out", str(tmp_path / "ds")])
    assert again.exit_code == 2 and "never overwritten" in again.stderr


def test_readers_refuse_unstamped_foreign_and_newer_files(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "old.h5", "w") as handle:  # an export made before stamps
        handle.create_group("00000").attrs["case_id"] = "x"
    with pytest.raises(UnsupportedFileFormat, match=r"old.h5: format None is not an angioflow"):
        ExportDataset(tmp_path / "old.h5")
    with h5py.File(tmp_path / "old.h5") as handle:
        with pytest.raises(UnsupportedFileFormat, match="has no 'format' attribute"):
            EXPORT.check(handle, tmp_path / "old.h5")
    with h5py.File(tmp_path / "newer.h5", "w") as handle:
        EXPORT.stamp(handle)
        handle.attrs["format_version"] = EXPORT.version + 1
    with pytest.raises(UnsupportedFileFormat, match="newer.h5: has angioflow-export format ver"):
        ExportDataset(tmp_path / "newer.h5")
    with h5py.File(tmp_path / "synthetic.h5", "w") as handle:
        SYNTHETIC_SET.stamp(handle)
    with h5py.File(tmp_path / "synthetic.h5") as handle:
        with pytest.raises(UnsupportedFileFormat, match="'angioflow-synthetic' file, not an app"):
            EXPORT.check(handle, tmp_path / "synthetic.h5")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "datalist.json").write_text(json.dumps({"training": []}))
    with pytest.raises(UnsupportedFileFormat, match="format None is not an angioflow export"):
        ExportDataset(tmp_path / "plain")
    with pytest.raises(ValueError, match="split must be one of"):
        ExportDataset(tmp_path / "plain", split="train")  # type: ignore[arg-type]


@pytest.mark.slow
def test_dataset_reads_a_synthetic_set_and_its_folder_copy(
    tiny_weights: dict[str, Path],  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    from angioflow.models.generation import SetRequest, generate_set

    out, folder = tmp_path / "synthetic.h5", tmp_path / "drive_like"
    request = SetRequest(n=3, seed=2, steps=2, batch_size=2)
    generate_set(_generators(tiny_weights), request, out, export_folders=folder)
    with h5py.File(out) as handle:
        assert handle.attrs["format"] == SYNTHETIC_SET.name
        assert handle.attrs["format_version"] == SYNTHETIC_SET.version
        av_truth = handle["av"][()]
    for index in range(3):  # av/ holds class indices, av_preview/ the picture
        stem = f"{index:05d}.png"
        np.testing.assert_array_equal(np.asarray(Image.open(folder / "av" / stem)), av_truth[index])
        preview = np.asarray(Image.open(folder / "av_preview" / stem))
        np.testing.assert_array_equal(preview, av_to_rgb(av_truth[index]))
    assert json.loads((folder / "legend.json").read_text())["av"]["classes"][1]["name"] == "artery"
    from_h5, from_folder = ExportDataset(out), ExportDataset(folder / "datalist.json")
    assert len(from_h5) == len(from_folder) == 3
    for index in range(3):
        a, b = from_h5[index], from_folder[index]
        assert a["image"].shape == (3, 128, 128) and a["id"] == f"synthetic.h5:{index}"
        for key in ("image", "vessel", "av", "fov"):
            assert torch.equal(a[key], b[key]), key
        np.testing.assert_array_equal(a["av"].numpy(), av_truth[index])
        assert a["fov"][64, 64] and not a["fov"][0, 0]
    assert len(ExportDataset(out, split="training")) == 3
    with pytest.raises(ValueError, match="holds training samples only"):
        ExportDataset(out, split="test")


def test_mask_sets_are_stamped(tmp_path: Path) -> None:
    from angioflow.models.ddpm import write_mask_set
    from angioflow.pipeline.h5_formats import MASK_SET

    maps = np.zeros((2, 2, 16, 16), np.float32)
    maps[:, 0, 4, 2:14] = 0.9
    labels = np.zeros((2, 64, 64), np.uint8)
    labels[:, 16:19, 8:56] = 1
    write_mask_set(tmp_path / "masks.h5", maps, labels, {"seed": 1})
    with h5py.File(tmp_path / "masks.h5") as handle:
        MASK_SET.check(handle, tmp_path / "masks.h5")
        assert json.loads(handle.attrs["av_classes"])[1]["name"] == "artery"
        with pytest.raises(UnsupportedFileFormat, match="'angioflow-mask-set' file, not a synth"):
            SYNTHETIC_SET.check(handle, tmp_path / "masks.h5")
