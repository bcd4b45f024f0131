"""pipeline.transform_files: ITK transform files and images reproduce the pipeline's mappings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813
from angioflow.pipeline.deformable import Deformation
from angioflow.pipeline.registration import matrix_to_similarity, similarity_matrix
from angioflow.pipeline.transform_files import (
    RegistrationFiles,
    affine_from_matrix,
    read_registration_files,
    resample,
    split_deformation,
    write_image,
    write_registration_files,
)

SHAPE = (60, 80)  # (H, W)
CENTRE = ((SHAPE[1] - 1) / 2, (SHAPE[0] - 1) / 2)


def _matrix() -> np.ndarray:
    return similarity_matrix(
        scale=1.04, rotation_deg=3.0, translation_xy=(2.5, -1.5), center_xy=CENTRE
    )


def _smooth_image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]].astype(np.float32)
    image = np.zeros(SHAPE, np.float32)
    for _ in range(6):
        cx, cy, width = rng.uniform(10, 70), rng.uniform(10, 50), rng.uniform(4, 10)
        image += np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * width**2))
    return image


def _bspline_deformation(seed: int = 0) -> Deformation:
    """A similarity then a B-spline, composed as pipeline.deformable composes them."""
    grid = sitk.Image(SHAPE[1], SHAPE[0], sitk.sitkFloat32)
    bspline = sitk.BSplineTransformInitializer(grid, [4, 3], 3)
    rng = np.random.default_rng(seed)
    bspline.SetParameters(tuple(rng.uniform(-2.0, 2.0, len(bspline.GetParameters()))))
    composite = sitk.CompositeTransform([matrix_to_similarity(_matrix(), CENTRE), bspline])
    return Deformation(composite, float("nan"))


def _grid_points() -> np.ndarray:
    ys, xs = np.mgrid[0 : SHAPE[0] : 7, 0 : SHAPE[1] : 9]
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)


def test_affine_file_maps_points_as_the_matrix_does(tmp_path: Path) -> None:
    matrix = _matrix()
    files = write_registration_files(tmp_path / "frame", shape=SHAPE, matrix=matrix)
    assert files.nonrigid is None
    assert "AffineTransform_double_2_2" in files.affine.read_text()
    transform = read_registration_files(files)
    points = _grid_points()
    expected = points @ matrix[:2, :2].T + matrix[:2, 2]
    mapped = np.array([transform.TransformPoint(tuple(p)) for p in points])
    np.testing.assert_allclose(mapped, expected, atol=1e-9)


def test_identity_leaves_an_image_unchanged(tmp_path: Path) -> None:
    image = _smooth_image()
    files = write_registration_files(tmp_path / "ref", shape=SHAPE, matrix=np.eye(3))
    np.testing.assert_allclose(resample(image, read_registration_files(files), SHAPE), image)


def test_nonrigid_files_reproduce_the_recorded_deformation(tmp_path: Path) -> None:
    deformation = _bspline_deformation()
    files = write_registration_files(
        tmp_path / "frame", shape=SHAPE, matrix=np.eye(3), deformation=deformation.transform
    )
    assert files.nonrigid is not None and files.nonrigid.suffix == ".mha"
    written = sitk.ReadImage(str(files.nonrigid))
    assert written.GetSize() == (SHAPE[1], SHAPE[0])
    assert written.GetNumberOfComponentsPerPixel() == 2
    assert written.GetOrigin() == (0.0, 0.0) and written.GetSpacing() == (1.0, 1.0)
    transform = read_registration_files(files)
    points = _grid_points()
    mapped = np.array([transform.TransformPoint(tuple(p)) for p in points])
    np.testing.assert_allclose(mapped, deformation.map_points(points), atol=1e-4)
    image = _smooth_image(1)
    # cv2 and ITK interpolate differently within a pixel of the moving image's edge
    inside = resample(np.pad(np.ones((SHAPE[0] - 2, SHAPE[1] - 2)), 1), transform, SHAPE) > 0.999
    assert inside.mean() > 0.5
    np.testing.assert_allclose(
        resample(image, transform, SHAPE)[inside], deformation.warp(image, SHAPE)[inside], atol=2e-3
    )


def test_split_keeps_the_head_exactly() -> None:
    deformation = _bspline_deformation()
    head, _ = split_deformation(deformation.transform)
    assert head.GetName() == "AffineTransform"
    points = _grid_points()
    matrix = _matrix()
    mapped = np.array([head.TransformPoint(tuple(p)) for p in points])
    np.testing.assert_allclose(mapped, points @ matrix[:2, :2].T + matrix[:2, 2], atol=1e-9)


def test_images_are_written_with_pixel_geometry(tmp_path: Path) -> None:
    stack = np.stack([_smooth_image(0), _smooth_image(1)])
    rgb = np.zeros((*SHAPE, 3), np.uint8)
    rgb[..., 0] = 200
    read_stack = sitk.ReadImage(str(write_image(tmp_path / "stack.nii.gz", stack)))
    read_rgb = sitk.ReadImage(str(write_image(tmp_path / "rgb.nii.gz", rgb, rgb=True)))
    assert read_stack.GetSize() == (SHAPE[1], SHAPE[0], 2)
    assert read_stack.GetOrigin() == (0.0, 0.0, 0.0) and read_stack.GetSpacing() == (1, 1, 1)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_stack), stack)
    assert read_rgb.GetNumberOfComponentsPerPixel() == 3
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_rgb), rgb)


def test_malformed_inputs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"finite \(3, 3\)"):
        affine_from_matrix(np.eye(2), centre_xy=CENTRE)
    with pytest.raises(ValueError, match="non-finite"):
        affine_from_matrix(np.full((3, 3), np.nan), centre_xy=CENTRE)
    with pytest.raises(ValueError, match=r"last row must be \(0, 0, 1\)"):
        affine_from_matrix(np.ones((3, 3)), centre_xy=CENTRE)
    with pytest.raises(ValueError, match="composite of an affine and a non-rigid"):
        split_deformation(affine_from_matrix(np.eye(3), centre_xy=CENTRE))
    with pytest.raises(ValueError, match="must be a similarity or affine"):
        grid = sitk.Image(8, 8, sitk.sitkFloat32)
        bspline = sitk.BSplineTransformInitializer(grid, [2, 2], 3)
        split_deformation(sitk.CompositeTransform([bspline, bspline]))
    with pytest.raises(ValueError, match=r"2-D grid \(H, W\)"):
        write_registration_files(tmp_path / "x", shape=(0, 5), matrix=np.eye(3))
    with pytest.raises(ValueError, match="image must be 2-D"):
        resample(np.zeros((2, 2, 2)), sitk.Transform(2, sitk.sitkIdentity), SHAPE)
    with pytest.raises(ValueError, match=r"RGB image must be \(H, W, 3\)"):
        write_image(tmp_path / "x.nii.gz", np.zeros(SHAPE, np.uint8), rgb=True)
    with pytest.raises(ValueError, match=r"\(H, W\) or \(K, H, W\)"):
        write_image(tmp_path / "x.nii.gz", np.zeros((1, 2, 3, 4)))
    assert not any(tmp_path.iterdir())
    assert RegistrationFiles(tmp_path / "a.tfm", None).nonrigid is None
