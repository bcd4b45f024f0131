"""Non-rigid refinement of vessel-map registration: coarse-to-fine B-spline free-form deformation.

It starts from a similarity/affine matrix (fixed pixel -> moving pixel, see
:mod:`pipeline.registration`) and returns a :class:`Deformation`: the composite SimpleITK
transform, serialisable to text so a stage output can record it exactly.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import cv2
import numpy as np
import SimpleITK as sitk  # noqa: N813 - the library's own convention
from angioflow.pipeline.registration import masked_correlation, matrix_to_similarity, sitk_image
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveInt, model_validator

__all__ = [
    "BSplineSettings",
    "Deformation",
    "execute_bspline",
    "register_bspline",
]


class BSplineSettings(BaseModel):
    """Parameters of :func:`register_bspline`.

    The defaults are the shipped recipe (``nonrigid`` in ``configs/curation.yaml``).

    Attributes
    ----------
    mesh : (nx, ny)
        Control-point mesh of the coarsest level; each later level doubles it.
    levels : int
        Number of coarse-to-fine levels (mesh refinements and pyramid levels).
    shrink_factors, smoothing_sigmas : tuple
        Pyramid, one entry per level, coarse to fine; sigmas in pixels.
    iterations : int
        LBFGS2 iterations per level.
    sampling_fraction : float or None
        Share of masked pixels sampled (random, seeded); None samples every pixel.
    seed, threads : int
    """

    # A misspelt name in a settings file is refused, never ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)

    mesh: tuple[PositiveInt, PositiveInt] = (4, 4)
    levels: PositiveInt = 2
    shrink_factors: tuple[PositiveInt, ...] = (4, 2)
    smoothing_sigmas: tuple[NonNegativeFloat, ...] = (2.0, 0.0)
    iterations: PositiveInt = 20
    sampling_fraction: float | None = Field(None, gt=0, le=1)
    seed: int = 1
    threads: PositiveInt = 2

    @model_validator(mode="after")
    def _one_entry_per_level(self) -> BSplineSettings:
        if not len(self.shrink_factors) == len(self.smoothing_sigmas) == self.levels:
            raise ValueError(
                "nonrigid: shrink_factors and smoothing_sigmas need one entry per level"
            )
        return self


@dataclass(frozen=True)
class Deformation:
    """A fixed -> moving mapping with a non-rigid part.

    Attributes
    ----------
    transform : SimpleITK.Transform
        Composite transform, fixed pixel (x, y) -> moving pixel (x, y) (unit spacing, origin 0).
    correlation : float
        Correlation of the fixed map and the warped moving map inside the fixed mask.
    """

    transform: sitk.Transform
    correlation: float

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
    def from_text(cls, text: str, *, correlation: float = float("nan")) -> Deformation:
        """Inverse of :meth:`to_text`."""
        handle, path = tempfile.mkstemp(suffix=".tfm")
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        try:
            return cls(sitk.ReadTransform(path), correlation)
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
    method.SetOptimizerAsLBFGS2(
        solutionAccuracy=1e-5,
        numberOfIterations=settings.iterations,
        deltaConvergenceTolerance=1e-4,
    )
    scale_factors = [2**level for level in range(settings.levels)]
    method.SetInitialTransformAsBSpline(bspline, inPlace=True, scaleFactors=scale_factors)
    method.SetShrinkFactorsPerLevel(list(settings.shrink_factors))
    method.SetSmoothingSigmasPerLevel(list(settings.smoothing_sigmas))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return execute_bspline(
        method, (fixed_image, moving_image), start, bspline, fixed, moving, fixed_mask
    )


def execute_bspline(
    method: sitk.ImageRegistrationMethod,
    images: tuple[sitk.Image, sitk.Image],
    start: sitk.Transform,
    bspline: sitk.BSplineTransform,
    fixed: np.ndarray,
    moving: np.ndarray,
    fixed_mask: np.ndarray,
) -> Deformation:
    """Run a configured B-spline registration and score the warped moving map.

    Parameters
    ----------
    method : sitk.ImageRegistrationMethod
        Set up with ``start`` as its moving initial transform and ``bspline`` optimised in place.
    images : (sitk.Image, sitk.Image)
        ``fixed`` and ``moving`` as SimpleITK images.
    start : sitk.Transform
        The rigid/affine start the B-spline refines.
    bspline : sitk.BSplineTransform
    fixed, moving : (H, W) / (h, w) float ndarrays, vessel probability maps
    fixed_mask : (H, W) bool ndarray

    Returns
    -------
    Deformation
        ``transform`` = start(bspline(p)), scored by masked correlation with ``fixed``.
    """
    method.Execute(*images)
    composite = sitk.CompositeTransform([start, bspline])
    map_x, map_y = sampling_maps(composite, fixed.shape)
    warped = cv2.remap(np.asarray(moving, np.float32), map_x, map_y, cv2.INTER_LINEAR)
    return Deformation(composite, masked_correlation(fixed, warped, fixed_mask))
