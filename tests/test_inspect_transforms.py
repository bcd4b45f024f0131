"""`angioflow inspect` writes the registration in ITK's forms; read back with SimpleITK, the files
reproduce the pipeline's own resampling and recover the phantom's known motion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813
from angioflow.flows.cli import app
from angioflow.flows.inspect import write_registration
from angioflow.pipeline.casestore import CaseStore
from angioflow.pipeline.curation import CurationSettings, metric_mask
from angioflow.pipeline.curation_stages import run_aggregate, run_registration
from angioflow.pipeline.transform_files import RegistrationFiles, read_registration_files, resample
from PIL import Image
from typer.testing import CliRunner

pytestmark = pytest.mark.slow  # every test starts from the curated store (a Prefect server)


def _read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _transform(folder: Path, entry: dict) -> sitk.Transform:
    nonrigid = entry["nonrigid"]
    return read_registration_files(
        RegistrationFiles(folder / entry["affine"], None if nonrigid is None else folder / nonrigid)
    )


def _inside(moving_shape: tuple[int, ...], transform: sitk.Transform, shape: tuple) -> np.ndarray:
    """Fixed pixels sampled more than a pixel inside the moving image (cv2 and ITK differ at its
    edge)."""
    ones = np.pad(np.ones((moving_shape[0] - 2, moving_shape[1] - 2), np.float32), 1)
    return resample(ones, transform, shape) > 0.999


def _landmarks(store: CaseStore, case_id: str, raw_root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The phantom's landmarks in every FA frame (K, N, 2) and in the fundus (N, 2), (x, y)."""
    frame = store.read_raw(case_id).fa_frames[1]
    for folder in sorted(raw_root.iterdir()):
        if np.array_equal(np.asarray(Image.open(folder / "fa" / "001.png")), frame):
            marks = json.loads((folder / "truth" / "landmarks.json").read_text())["landmarks"]
            frame_xy = np.array([m["frame_xy"] for m in marks]).transpose(1, 0, 2)
            return frame_xy, np.array([m["fundus_xy"] for m in marks])
    raise AssertionError(f"no phantom folder under {raw_root} holds case {case_id}'s frames")


def _visible(points: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    x, y = points[..., 0], points[..., 1]
    return (x > 2) & (x < shape[1] - 3) & (y > 2) & (y < shape[0] - 3)


def _check_registered_frames(folder: Path, manifest: dict) -> int:
    """Every kept frame, resampled through its files, equals the registered stack's slice."""
    shape = tuple(manifest["reference_shape"])
    stack = _read(folder / manifest["registered_frames"])
    nonrigid = 0
    for entry in manifest["frames"]:
        if not entry["kept"]:
            assert "affine" not in entry and entry["reason"]
            continue
        transform = _transform(folder, entry)
        moving = _read(folder / entry["image"])
        inside = _inside(moving.shape, transform, shape)
        assert inside.mean() > 0.5
        again = resample(moving, transform, shape)
        np.testing.assert_allclose(
            again[inside], stack[entry["registered_slice"]][inside], atol=0.05
        )
        nonrigid += entry["nonrigid"] is not None
    return nonrigid


def test_inspect_writes_transforms_that_reproduce_the_fundus_alignment(
    store: CaseStore, curated_store_template: Path, tmp_path: Path
) -> None:
    case_id = store.case_ids()[0]
    out = tmp_path / "inspect"
    result = CliRunner().invoke(
        app, ["inspect", case_id, "--store", str(store.root), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    folder = out / "registration"
    manifest = json.loads((folder / "transforms.json").read_text())
    printed = set(result.stdout.split())
    for entry in manifest["frames"]:
        for key in ("image", "affine", "nonrigid"):
            if entry.get(key):
                assert str(folder / entry[key]) in printed
    reference = manifest["frames"][manifest["reference_frame"]]
    identity = _transform(folder, reference)
    assert identity.TransformPoint((12.0, 34.0)) == pytest.approx((12.0, 34.0), abs=1e-12)
    _check_registered_frames(folder, manifest)

    # stage 6: the aggregate resampled through the files is the stage's own output
    alignment = manifest["fundus_alignment"]
    assert alignment["nonrigid"] is not None, "the phantom's alignment keeps its B-spline step"
    transform = _transform(folder, alignment)
    fundus = sitk.ReadImage(str(folder / alignment["fixed"]))
    assert fundus.GetNumberOfComponentsPerPixel() == 3
    shape = fundus.GetSize()[::-1]
    moving = _read(folder / alignment["moving"]).astype(np.float32)
    stored = _read(folder / alignment["registered"]).astype(np.float32)
    coverage = store.read_stage(case_id, "fundus_alignment", arrays=("coverage",)).arrays
    covered = coverage["coverage"] > 0
    again = resample(moving, transform, shape)
    # the stage stores 0-255 integers: rounding is all that may differ
    assert np.abs(again - stored)[covered].max() <= 0.51
    frame_xy, fundus_xy = _landmarks(store, case_id, curated_store_template.parent / "raw")
    reference_xy = frame_xy[manifest["reference_frame"]]
    seen = _visible(reference_xy, manifest["reference_shape"])
    mapped = np.array([transform.TransformPoint(tuple(p)) for p in fundus_xy[seen]])
    assert np.median(np.linalg.norm(mapped - reference_xy[seen], axis=1)) < 1.0


def test_nonrigid_frame_files_reproduce_the_aggregate_and_the_phantom_motion(
    store: CaseStore, curated_store_template: Path, tmp_path: Path
) -> None:
    # The small phantom's frames correlate 0.58-0.77 with the reference after the rigid step:
    # under the shipped 0.8 threshold none gets the non-rigid step, so lower it here.
    settings = CurationSettings(good_correlation=0.5)
    total_nonrigid = 0
    for case_id in store.case_ids():
        run_aggregate(store, case_id, run_registration(store, case_id, "test", settings), settings)
        folder = tmp_path / case_id
        write_registration(store, case_id, folder)
        manifest = json.loads((folder / "transforms.json").read_text())
        total_nonrigid += _check_registered_frames(folder, manifest)

        # the aggregate rebuilt from the vessel maps through the files is the stored one
        shape = tuple(manifest["reference_shape"])
        maps = store.read_stage(case_id, "vessel_maps", arrays=("frames", "apertures")).arrays
        total, count = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
        aggregated = [e for e in manifest["frames"] if e["aggregated"]]
        for entry in aggregated:
            transform = _transform(folder, entry)
            aperture = metric_mask(maps["apertures"][entry["index"]] > 0, settings)
            seen = resample(aperture.astype(np.float32), transform, shape) > 0.99
            vessel = maps["frames"][entry["index"]].astype(np.float32) / 255
            total += resample(vessel, transform, shape) * seen
            count += seen
        rebuilt = np.where(count > 0, total / np.maximum(count, 1), 0.0)
        stored = store.read_stage(case_id, "aggregate", arrays=("mean",)).arrays["mean"] / 255
        assert np.abs(rebuilt - stored).max() < 1.5 / 255

        # the phantom's known motion: reference pixel -> frame pixel, landmark by landmark
        frame_xy, _ = _landmarks(store, case_id, curated_store_template.parent / "raw")
        reference_xy = frame_xy[manifest["reference_frame"]]
        for entry in aggregated:
            truth = frame_xy[entry["index"]]
            ok = _visible(reference_xy, shape) & _visible(truth, shape)
            transform = _transform(folder, entry)
            mapped = np.array([transform.TransformPoint(tuple(p)) for p in reference_xy[ok]])
            assert np.median(np.linalg.norm(mapped - truth[ok], axis=1)) < 1.0, entry
    assert total_nonrigid >= 2
