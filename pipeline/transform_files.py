"""Registration transforms and images as files that SimpleITK, ITK-SNAP and 3D Slicer read.

Every transform the pipeline records maps *fixed* pixels to *moving* pixels, (x, y) =
(column, row) -- the direction SimpleITK's resampling needs (see :mod:`pipeline.registration`).
The files written here keep that meaning in ITK's physical space: every image is written with
origin (0, 0), spacing (1, 1) and the identity direction, so a physical point *is* a pixel
coordinate (x, y), and a transform read from a file applies to those images as it is.

A registration with a non-rigid part is split the way ITK composes it: an affine transform
(the pipeline's similarity or affine step) in an ITK transform file (``.tfm``), and the
non-rigid step as a displacement field image on the fixed grid (``.mha``; MetaImage stores
vectors as they are, while NIfTI readers differ on whether a vector field is flipped between
ITK's LPS and NIfTI's RAS axes). The full mapping is ``affine(p + d(p))``, which is what
``sitk.CompositeTransform([affine, field])`` computes (SimpleITK applies the transform added
last first).

References
----------
.. [1] ITK Software Guide, Book 2, "Transforms" and "Resampling" (the fixed -> moving convention).
   https://itk.org/ItkSoftwareGuide.pdf
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk  # noqa: N813 - the library's own convention

__all__ = [
    "RegistrationFiles",
    "affine_from_matrix",
    "displacement_field",
    "read_registration_files",
    "resample",
    "split_deformation",
    "write_image",
    "write_registration_files",
]


@dataclass(frozen=True)
class RegistrationFiles:
    """The files of one registration.

    Attributes
    ----------
    affine : Path
        ITK transform file (``.tfm``): a 2-D ``AffineTransform``, fixed (x, y) -> moving (x, y).
    nonrigid : Path or None
        Displacement field (``.mha``, 2-component float32 vectors (dx, dy) in pixels) on the
        fixed grid, applied before ``affine``; None when the registration is affine only.
    """

    affine: Path
    nonrigid: Path | None


def _check_matrix(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (3, 3) or not np.isfinite(matrix).all():
        raise ValueError(
            f"matrix must be a finite (3, 3) homogeneous pixel transform, got shape "
            f"{matrix.shape}{'' if np.isfinite(matrix).all() else ' with non-finite values'}"
        )
    if not np.allclose(matrix[2], (0.0, 0.0, 1.0)):
        raise ValueError(f"matrix's last row must be (0, 0, 1), got {matrix[2].tolist()}")
    return matrix


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be a 2-D grid (H, W) of at least one pixel, got {shape}")
    return int(shape[0]), int(shape[1])


def affine_from_matrix(matrix: np.ndarray, *, centre_xy: tuple[float, float]) -> sitk.Transform:
    """A 2-D ITK ``AffineTransform`` equal to a (3, 3) pixel matrix.

    Parameters
    ----------
    matrix : (3, 3) float ndarray
        Fixed pixel (x, y, 1) -> moving pixel (x, y, 1), acting on column vectors.
    centre_xy : (float, float)
        Centre of rotation stored in the file (any centre gives the same mapping; the fixed
        grid's centre keeps the parameters readable).

    Returns
    -------
    SimpleITK.AffineTransform

    Raises
    ------
    ValueError
        If ``matrix`` is not a finite homogeneous (3, 3) matrix.

    Example
    -------
    >>> m = np.array([[1.0, 0.0, 5.0], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]])
    >>> affine_from_matrix(m, centre_xy=(10.0, 10.0)).TransformPoint((0.0, 0.0))
    (5.0, -2.0)
    """
    matrix = _check_matrix(matrix)
    linear = matrix[:2, :2]
    centre = np.asarray(centre_xy, dtype=np.float64)
    affine = sitk.AffineTransform(2)
    affine.SetCenter(tuple(centre))
    affine.SetMatrix(tuple(linear.ravel()))
    # ITK: T(p) = A (p - c) + c + t, so t = A c + b - c for T(p) = A p + b
    affine.SetTranslation(tuple(linear @ centre + matrix[:2, 2] - centre))
    return affine


def _as_affine(transform: sitk.Transform) -> sitk.Transform:
    """A similarity/affine ITK transform as an ``AffineTransform`` with the same mapping."""
    affine = sitk.AffineTransform(2)
    affine.SetCenter(transform.GetCenter())
    affine.SetMatrix(transform.GetMatrix())
    affine.SetTranslation(transform.GetTranslation())
    return affine


def split_deformation(transform: sitk.Transform) -> tuple[sitk.Transform, sitk.Transform]:
    """Split a recorded non-rigid registration into its affine head and non-rigid rest.

    Parameters
    ----------
    transform : SimpleITK.Transform
        A composite as :mod:`pipeline.deformable` builds it: a similarity or affine transform
        added first, then the non-rigid transform(s) (B-spline or displacement field).

    Returns
    -------
    affine : SimpleITK.AffineTransform
        The head, as an affine transform with the same mapping.
    nonrigid : SimpleITK.Transform
        The rest (applied before ``affine``).

    Raises
    ------
    ValueError
        If ``transform`` is not such a composite.
    """
    composite = sitk.CompositeTransform(transform)
    count = composite.GetNumberOfTransforms()
    if count < 2 or composite.GetDimension() != 2:
        raise ValueError(
            f"expected a 2-D composite of an affine and a non-rigid transform, got "
            f"{composite.GetDimension()}-D with {count} transform(s)"
        )
    head = composite.GetNthTransform(0)
    if not hasattr(head, "GetMatrix"):
        raise ValueError(
            f"the first transform of the composite must be a similarity or affine, got "
            f"{head.GetName()}"
        )
    parts = [composite.GetNthTransform(i) for i in range(1, count)]
    rest = parts[0] if len(parts) == 1 else sitk.CompositeTransform(parts)
    return _as_affine(head), rest


def displacement_field(transform: sitk.Transform, shape: tuple[int, int]) -> sitk.Image:
    """The displacement ``T(p) - p`` of every pixel of a (H, W) grid, as an ITK vector image.

    Parameters
    ----------
    transform : SimpleITK.Transform
        2-D transform of pixel coordinates (x, y).
    shape : (H, W)
        The fixed grid.

    Returns
    -------
    SimpleITK.Image
        (W, H) in ITK's (x, y) order, ``sitkVectorFloat32`` (dx, dy) in pixels, origin (0, 0),
        spacing (1, 1), identity direction. ``sitk.DisplacementFieldTransform`` takes it after
        ``sitk.Cast(field, sitk.sitkVectorFloat64)``.
    """
    height, width = _check_shape(shape)
    field = sitk.TransformToDisplacementField(
        transform,
        sitk.sitkVectorFloat64,
        size=(width, height),
        outputOrigin=(0.0, 0.0),
        outputSpacing=(1.0, 1.0),
        outputDirection=(1.0, 0.0, 0.0, 1.0),
    )
    return sitk.Cast(field, sitk.sitkVectorFloat32)


def write_registration_files(
    stem: Path,
    *,
    shape: tuple[int, int],
    matrix: np.ndarray,
    deformation: sitk.Transform | None = None,
) -> RegistrationFiles:
    """Write one fixed -> moving registration as ``<stem>_affine.tfm`` (+ ``_nonrigid.mha``).

    Parameters
    ----------
    stem : Path
        Path prefix of the files (its folder must exist).
    shape : (H, W)
        The fixed grid; the displacement field covers it.
    matrix : (3, 3) float ndarray
        The affine part, fixed pixel -> moving pixel; used when ``deformation`` is None.
    deformation : SimpleITK.Transform or None
        The recorded non-rigid registration (a composite whose head is the affine part, see
        :func:`split_deformation`); its head is written instead of ``matrix``, so the files
        reproduce exactly the mapping the pipeline applied.

    Returns
    -------
    RegistrationFiles

    Raises
    ------
    ValueError
        If ``matrix``, ``shape`` or ``deformation`` is malformed.
    """
    height, width = _check_shape(shape)
    centre = ((width - 1) / 2.0, (height - 1) / 2.0)
    affine_path = stem.with_name(f"{stem.name}_affine.tfm")
    if deformation is None:
        sitk.WriteTransform(affine_from_matrix(matrix, centre_xy=centre), str(affine_path))
        return RegistrationFiles(affine_path, None)
    head, rest = split_deformation(deformation)
    sitk.WriteTransform(head, str(affine_path))
    field_path = stem.with_name(f"{stem.name}_nonrigid.mha")
    sitk.WriteImage(displacement_field(rest, (height, width)), str(field_path), True)
    return RegistrationFiles(affine_path, field_path)


def read_registration_files(files: RegistrationFiles) -> sitk.Transform:
    """The fixed -> moving transform written by :func:`write_registration_files`.

    Returns
    -------
    SimpleITK.Transform
        The affine transform alone, or ``CompositeTransform([affine, field])``: the field is
        applied first, as the pipeline applied its non-rigid step.
    """
    affine = sitk.ReadTransform(str(files.affine))
    if files.nonrigid is None:
        return affine
    field = sitk.Cast(sitk.ReadImage(str(files.nonrigid)), sitk.sitkVectorFloat64)
    return sitk.CompositeTransform([affine, sitk.DisplacementFieldTransform(field)])


def resample(image: np.ndarray, transform: sitk.Transform, shape: tuple[int, int]) -> np.ndarray:
    """Resample a moving image onto a fixed grid of ``shape`` through a fixed -> moving transform.

    Parameters
    ----------
    image : (h, w) ndarray
        The moving image, numpy (row, col) order.
    transform : SimpleITK.Transform
        Fixed pixel (x, y) -> moving pixel (x, y).
    shape : (H, W)

    Returns
    -------
    (H, W) float32 ndarray
        Linear interpolation, 0 outside ``image``.
    """
    height, width = _check_shape(shape)
    if np.ndim(image) != 2:
        raise ValueError(f"image must be 2-D (h, w), got shape {np.shape(image)}")
    grid = sitk.Image(width, height, sitk.sitkFloat32)
    moving = sitk.GetImageFromArray(np.asarray(image, dtype=np.float32))
    resampled = sitk.Resample(moving, grid, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(resampled)


def write_image(path: Path, array: np.ndarray, *, rgb: bool = False) -> Path:
    """Write an image so that its physical coordinates are its pixel coordinates.

    Parameters
    ----------
    path : Path
        ``.nii.gz``, ``.mha`` or any other extension SimpleITK writes.
    array : (H, W), (K, H, W) or, with ``rgb``, (H, W, 3) ndarray
        A greyscale image, a stack of K greyscale images on one grid (a 3-D volume, slice
        k = ``array[k]``), or an RGB image (written as a 3-component vector image).
    rgb : bool, keyword-only
        ``array`` is (H, W, 3) colour.

    Returns
    -------
    Path
        ``path``, written compressed with origin 0, spacing 1 and the identity direction.

    Raises
    ------
    ValueError
        If ``array``'s shape is none of the above.
    """
    array = np.ascontiguousarray(array)
    if rgb and (array.ndim != 3 or array.shape[2] != 3):
        raise ValueError(f"an RGB image must be (H, W, 3), got shape {array.shape}")
    if not rgb and array.ndim not in (2, 3):
        raise ValueError(
            f"a greyscale image or stack must be (H, W) or (K, H, W), not {array.shape}"
        )
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=rgb), str(path), True)
    return path
