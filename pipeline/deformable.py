"""Non-rigid refinement of vessel-map registration: coarse-to-fine B-spline FFD or demons.

Both start from a similarity/affine matrix (fixed pixel -> moving pixel, see
:mod:`pipeline.registration`) and return a :class:`Deformation`: the composite SimpleITK
transform, serialisable to text so a stage output can record it exactly.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import SimpleITK as sitk  # noqa: N813 - the library's own convention
from angioflow.pipeline.registration import masked_correlation, matrix_to_similarity, sitk_image

__all__ = [
    "BSplineSettings",
    "DemonsSettings",
    "Deformation",
    "register_bspline",
    "register_demons",
]


@dataclass(frozen=True)
class BSplineSettings:
    """Parameters of :func:`register_bspline`.

    Attributes
    ----------
    mesh : (nx, ny)
        Control-point mesh of the coarsest level; each later level doubles it.
    levels : int
        Number of coarse-to-fine levels (mesh refinements and pyramid levels).
    shrink_factors, smoothing_sigmas : tuple
        Pyramid, one entry per level, coarse to fine; sigmas in pixels.
    optimizer : {'lbfgs2', 'lbfgsb'}
        LBFGS2 is required for coarse-to-fine meshes; L-BFGS-B serves the single-level
        reference configuration.
    iterations : int
        Optimizer iterations per level.
    sampling_fraction : float or None
        Share of masked pixels sampled (random, seeded); None samples every pixel.
    seed, threads : int
    """

    # Validated by pydantic where the settings come from forms and files (Prefect parameters):
    # a misspelt name is refused, never ignored. A plain dict: pipeline/ does not import pydantic.
    __pydantic_config__ = {"extra": "forbid"}

    mesh: tuple[int, int] = (4, 3)
    levels: int = 2
    shrink_factors: tuple[int, ...] = (4, 2)
    smoothing_sigmas: tuple[float, ...] = (4.0, 2.0)
    optimizer: Literal["lbfgs2", "lbfgsb"] = "lbfgs2"
    iterations: int = 40
    sampling_fraction: float | None = 0.2
    seed: int = 1
    threads: int = 2


# The reference configuration of the original lab's code: one level, 8x8 grid, correlation,
# L-BFGS-B with 30 iterations over every pixel. Benchmarks compare against it.
REFERENCE_BSPLINE = BSplineSettings(
    mesh=(8, 8),
    levels=1,
    shrink_factors=(1,),
    smoothing_sigmas=(0.0,),
    optimizer="lbfgsb",
    iterations=30,
    sampling_fraction=None,
)


@dataclass(frozen=True)
class DemonsSettings:
    """Parameters of :func:`register_demons` (fast symmetric forces, multi-resolution).

    Attributes
    ----------
    iterations : tuple of int
        Iterations per pyramid level, coarse to fine.
    shrink_factors : tuple of int
    smoothing_sigma : float
        Gaussian regularisation of the displacement field, pixels of each level.
    threads : int
    """

    iterations: tuple[int, ...] = (40, 20)
    shrink_factors: tuple[int, ...] = (4, 2)
    smoothing_sigma: float = 3.0
    threads: int = 2


@dataclass(frozen=True)
class Deformation:
    """A fixed -> moving mapping with a non-rigid part.

    Attributes
    ----------
    transform : SimpleITK.Transform
        Composite transform, fixed pixel (x, y) -> moving pixel (x, y) (unit spacing, origin 0).
    correlation : float
        Correlation of the fixed map and the warped moving map inside the fixed mask.
    method : str
    """

    transform: sitk.Transform
    correlation: float
    method: str

    def map_points(self, points_xy: np.ndarray) -> np.ndarray:
        """Fixed pixel coordinates (N, 2) -> moving pixel coordinates (N, 2)."""
        points = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
        return np.array([self.transform.TransformPoint(tuple(p)) for p in points])

    def sampling_maps(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """``cv2.remap`` maps (two (H, W) float32 arrays) resampling the moving image on the
        fixed grid of ``shape``."""
        return sampling_maps(self.transform, shape)

    def warp(self, image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """The moving ``image`` resampled on the fixed grid (linear, 0 outside)."""
        map_x, map_y = self.sampling_maps(shape)
        return cv2.remap(
            np.asarray(image, np.float32),
            map_x,
            map_y,
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0.0,
        )

    def to_text(self) -> str:
        """The transform as ITK's text format (what :meth:`from_text` reads)."""
        handle, path = tempfile.mkstemp(suffix=".tfm")
        os.close(handle)
        try:
            sitk.WriteTransform(self.transform, path)
            with open(path, encoding="utf-8") as file:
                return file.read()
        finally:
            os.unlink(path)

    @classmethod
    def from_text(
        cls, text: str, *, correlation: float = float("nan"), method: str = ""
    ) -> Deformation:
        """Inverse of :meth:`to_text`."""
        handle, path = tempfile.mkstemp(suffix=".tfm")
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        try:
            return cls(sitk.ReadTransform(path), correlation, method)
        finally:
            os.unlink(path)


def sampling_maps(
    transform: sitk.Transform, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Moving-image coordinates of every fixed pixel, as ``cv2.remap`` maps."""
    field = sitk.TransformToDisplacementField(
        transform,
        sitk.sitkVectorFloat64,
        size=(int(shape[1]), int(shape[0])),
        outputOrigin=(0.0, 0.0),
        outputSpacing=(1.0, 1.0),
    )
    displacement = sitk.GetArrayFromImage(field)  # (H, W, 2): dx, dy
    xs, ys = np.meshgrid(np.arange(shape[1]), np.arange(shape[0]))
    return (
        (xs + displacement[..., 0]).astype(np.float32),
        (ys + displacement[..., 1]).astype(np.float32),
    )


def register_bspline(
    fixed: np.ndarray,
    moving: np.ndarray,
    fixed_mask: np.ndarray,
    initial: np.ndarray,
    settings: BSplineSettings = BSplineSettings(),  # noqa: B008 - frozen
) -> Deformation:
    """B-spline free-form deformation on top of a similarity/affine start, coarse to fine.

    Parameters
    ----------
    fixed, moving : (H, W) / (h, w) float ndarrays, vessel probability maps
    fixed_mask : (H, W) bool ndarray
    initial : (3, 3) ndarray, fixed pixel -> moving pixel
    settings : BSplineSettings

    Returns
    -------
    Deformation
        ``transform`` = initial(bspline(p)).
    """
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(settings.threads)
    fixed_image, moving_image = sitk_image(fixed), sitk_image(moving)
    centre = ((fixed.shape[1] - 1) / 2.0, (fixed.shape[0] - 1) / 2.0)
    start = matrix_to_similarity(initial, centre)
    bspline = sitk.BSplineTransformInitializer(fixed_image, list(settings.mesh), 3)
    method = sitk.ImageRegistrationMethod()
    method.SetNumberOfThreads(settings.threads)
    method.SetMetricAsCorrelation()
    method.SetMetricFixedMask(sitk.GetImageFromArray(fixed_mask.astype(np.uint8)))
    if settings.sampling_fraction is None:
        method.SetMetricSamplingStrategy(method.NONE)
    else:
        method.SetMetricSamplingStrategy(method.RANDOM)
        method.SetMetricSamplingPercentage(settings.sampling_fraction, settings.seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetMovingInitialTransform(start)
    if settings.optimizer == "lbfgs2":
        method.SetOptimizerAsLBFGS2(
            solutionAccuracy=1e-5,
            numberOfIterations=settings.iterations,
            deltaConvergenceTolerance=1e-4,
        )
        scale_factors = [2**level for level in range(settings.levels)]
        method.SetInitialTransformAsBSpline(bspline, inPlace=True, scaleFactors=scale_factors)
    else:
        method.SetOptimizerAsLBFGSB(
            gradientConvergenceTolerance=1e-5,
            numberOfIterations=settings.iterations,
            maximumNumberOfCorrections=5,
            maximumNumberOfFunctionEvaluations=4 * settings.iterations,
            costFunctionConvergenceFactor=1e7,
        )
        method.SetInitialTransform(bspline, inPlace=True)
    method.SetShrinkFactorsPerLevel(list(settings.shrink_factors))
    method.SetSmoothingSigmasPerLevel(list(settings.smoothing_sigmas))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.Execute(fixed_image, moving_image)
    composite = sitk.CompositeTransform([start, bspline])
    return _finish(composite, fixed, moving, fixed_mask, "bspline")


def register_demons(
    fixed: np.ndarray,
    moving: np.ndarray,
    fixed_mask: np.ndarray,
    initial: np.ndarray,
    settings: DemonsSettings = DemonsSettings(),  # noqa: B008 - frozen
) -> Deformation:
    """Fast symmetric-forces demons on the similarity-resampled moving map, multi-resolution.

    Returns
    -------
    Deformation
        ``transform`` = initial(p + d(p)) with d the demons displacement field.
    """
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(settings.threads)
    centre = ((fixed.shape[1] - 1) / 2.0, (fixed.shape[0] - 1) / 2.0)
    start = matrix_to_similarity(initial, centre)
    fixed_image = sitk_image(np.where(fixed_mask, fixed, 0.0))
    resampled = sitk.Resample(sitk_image(moving), fixed_image, start, sitk.sitkLinear, 0.0)
    resampled = sitk.Mask(resampled, sitk.GetImageFromArray(fixed_mask.astype(np.uint8)))
    field = None
    for iterations, shrink in zip(settings.iterations, settings.shrink_factors, strict=True):
        small_fixed = sitk.Shrink(
            sitk.SmoothingRecursiveGaussian(fixed_image, shrink / 2), [shrink] * 2
        )
        small_moving = sitk.Shrink(
            sitk.SmoothingRecursiveGaussian(resampled, shrink / 2), [shrink] * 2
        )
        demons = sitk.FastSymmetricForcesDemonsRegistrationFilter()
        demons.SetNumberOfIterations(iterations)
        demons.SetStandardDeviations(settings.smoothing_sigma)
        demons.SetNumberOfThreads(settings.threads)
        if field is None:
            field = demons.Execute(small_fixed, small_moving)
        else:
            initial_field = sitk.Resample(
                field, small_fixed, sitk.Transform(), sitk.sitkLinear, 0.0, field.GetPixelID()
            )
            field = demons.Execute(small_fixed, small_moving, initial_field)
    full = sitk.Resample(
        field, fixed_image, sitk.Transform(), sitk.sitkLinear, 0.0, field.GetPixelID()
    )
    displacement = sitk.DisplacementFieldTransform(sitk.Cast(full, sitk.sitkVectorFloat64))
    composite = sitk.CompositeTransform([start, displacement])
    return _finish(composite, fixed, moving, fixed_mask, "demons")


def _finish(
    composite: sitk.Transform, fixed: np.ndarray, moving: np.ndarray, mask: np.ndarray, method: str
) -> Deformation:
    map_x, map_y = sampling_maps(composite, fixed.shape)
    warped = cv2.remap(np.asarray(moving, np.float32), map_x, map_y, cv2.INTER_LINEAR)
    return Deformation(composite, masked_correlation(fixed, warped, mask), method)
