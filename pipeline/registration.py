"""Similarity registration of vessel maps: reference choice, coarse global search, SimpleITK refine.

Frames are registered on vessel probability maps, not raw intensities: the dye's phase changes
the brightness of arteries, veins and background from frame to frame, while a vessel stays a
vessel. Every transform here is a (3, 3) matrix acting on homogeneous pixel coordinates
(x, y, 1) and maps *fixed* (reference) pixels to *moving* pixels -- the direction SimpleITK
optimises and the one resampling needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import SimpleITK as sitk  # noqa: N813 - the library's own convention
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveInt,
    model_validator,
)
from scipy import ndimage as ndi

__all__ = [
    "RigidSettings",
    "SimilarityResult",
    "choose_reference",
    "coarse_search",
    "frame_quality",
    "masked_correlation",
    "matrix_to_similarity",
    "register_similarity",
    "similarity_matrix",
    "sitk_image",
    "warp_image",
]


class RigidSettings(BaseModel):
    """Parameters of :func:`register_similarity` (recorded with every stage output).

    The defaults are the shipped recipe (``rigid`` in ``configs/curation.yaml``).

    Attributes
    ----------
    shrink_factors, smoothing_sigmas : tuple
        Pyramid levels, coarse to fine; sigmas in pixels of the full-resolution grid. Thin
        vessels need wide smoothing at the coarse levels to overlap at all.
    sampling_fraction : float
        Share of the masked pixels the metric samples at each level (random, seeded).
    iterations : int
        Gradient-descent iterations per level.
    seed, threads : int
        Sampling seed and SimpleITK thread count: fixed so a re-run gives the same numbers.
    """

    # A misspelt name in a settings file is refused, never ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)

    shrink_factors: tuple[PositiveInt, ...] = (8, 4, 2)
    smoothing_sigmas: tuple[NonNegativeFloat, ...] = (8.0, 4.0, 2.0)
    sampling_fraction: float = Field(0.2, gt=0, le=1)
    iterations: PositiveInt = 200
    seed: int = 1
    threads: PositiveInt = 2

    @model_validator(mode="after")
    def _one_sigma_per_level(self) -> RigidSettings:
        if len(self.shrink_factors) != len(self.smoothing_sigmas):
            raise ValueError("rigid: shrink_factors and smoothing_sigmas need one entry per level")
        return self


@dataclass(frozen=True)
class SimilarityResult:
    """Outcome of one similarity registration.

    Attributes
    ----------
    matrix : (3, 3) float64 ndarray
        Fixed pixel (x, y) -> moving pixel (x, y).
    correlation : float
        Normalised cross-correlation of the fixed map and the resampled moving map inside the
        fixed mask, in [-1, 1] (1 = identical).
    metric : float
        SimpleITK's final metric value (negative correlation).
    """

    matrix: np.ndarray
    correlation: float
    metric: float


def similarity_matrix(
    *,
    scale: float,
    rotation_deg: float,
    translation_xy: tuple[float, float],
    center_xy: tuple[float, float],
) -> np.ndarray:
    """3x3 matrix rotating by ``rotation_deg`` and scaling about ``center_xy``, then translating.

    Acts on homogeneous pixel coordinates (x, y, 1). Positive angles turn counter-clockwise on
    the screen (y axis points down).
    """
    theta = np.deg2rad(rotation_deg)
    cos, sin = scale * np.cos(theta), scale * np.sin(theta)
    linear = np.array([[cos, sin], [-sin, cos]])
    center = np.asarray(center_xy, dtype=np.float64)
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = center - linear @ center + np.asarray(translation_xy, dtype=np.float64)
    return matrix


def matrix_to_similarity(matrix: np.ndarray, centre_xy: tuple[float, float]) -> sitk.Transform:
    """A SimpleITK transform equal to a (3, 3) similarity or affine pixel matrix.

    A pure similarity (equal singular values, no reflection) becomes a ``Similarity2DTransform``
    with the given centre; anything else an ``AffineTransform``.
    """
    linear = np.asarray(matrix[:2, :2], dtype=np.float64)
    centre = np.asarray(centre_xy, dtype=np.float64)
    translation = linear @ centre + matrix[:2, 2] - centre
    scale = float(np.sqrt(abs(np.linalg.det(linear))))
    rotation = linear / scale
    if np.allclose(rotation @ rotation.T, np.eye(2), atol=1e-6) and np.linalg.det(rotation) > 0:
        transform = sitk.Similarity2DTransform()
        transform.SetCenter(tuple(centre))
        transform.SetScale(scale)
        transform.SetAngle(float(np.arctan2(rotation[1, 0], rotation[0, 0])))
        transform.SetTranslation(tuple(translation))
        return transform
    affine = sitk.AffineTransform(2)
    affine.SetCenter(tuple(centre))
    affine.SetMatrix(tuple(linear.ravel()))
    affine.SetTranslation(tuple(translation))
    return affine


def _transform_to_matrix(transform: sitk.Transform) -> np.ndarray:
    """(3, 3) pixel matrix of a SimpleITK similarity/affine transform (unit spacing, origin 0)."""
    linear = np.array(transform.GetMatrix(), dtype=np.float64).reshape(2, 2)
    centre = np.array(transform.GetCenter(), dtype=np.float64)
    translation = np.array(transform.GetTranslation(), dtype=np.float64)
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = translation + centre - linear @ centre
    return matrix


def warp_image(
    image: np.ndarray, matrix: np.ndarray, shape: tuple[int, int], *, order: int = 1
) -> np.ndarray:
    """Resample ``image`` onto a grid of ``shape`` through ``matrix`` (grid pixel -> image pixel).

    Parameters
    ----------
    image : (h, w) ndarray
    matrix : (3, 3) float ndarray, output pixel (x, y) -> input pixel (x, y)
    shape : (H, W) of the output
    order : 0 (nearest) or 1 (linear)

    Returns
    -------
    (H, W) float32 ndarray, 0 where the grid falls outside ``image``.
    """
    flags = (cv2.INTER_NEAREST if order == 0 else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(
        np.asarray(image, dtype=np.float32),
        np.asarray(matrix[:2], dtype=np.float64),
        (shape[1], shape[0]),
        flags=flags,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )


def frame_quality(vessel_map: np.ndarray, aperture: np.ndarray) -> dict[str, float]:
    """How well a frame shows its vessels: fill and sharpness of its vessel map.

    Parameters
    ----------
    vessel_map : (H, W) float ndarray in [0, 1]
    aperture : (H, W) bool ndarray, the FA camera aperture

    Returns
    -------
    dict with ``fill`` (share of the aperture with probability >= 0.5), ``sharpness`` (mean
    probability of those pixels: confident, crisp vessels score near 1; blurred or noisy frames
    give soft maps) and ``score`` (their product, used to pick the reference).
    """
    inside = vessel_map[aperture]
    if inside.size == 0:
        return {"fill": 0.0, "sharpness": 0.0, "score": 0.0}
    vessels = inside[inside >= 0.5]
    fill = float(vessels.size / inside.size)
    sharpness = float(vessels.mean()) if vessels.size else 0.0
    return {"fill": fill, "sharpness": sharpness, "score": fill * sharpness}


def choose_reference(qualities: list[dict[str, float]]) -> int:
    """Index of the sharpest, best-filled frame: the highest :func:`frame_quality` score."""
    return int(np.argmax([quality["score"] for quality in qualities]))


def _band_pass(image: np.ndarray, sigma: float) -> np.ndarray:
    """Vessel map with its slowly varying part removed, so correlation follows vessels only."""
    smooth = ndi.gaussian_filter(image, sigma)
    return smooth - ndi.gaussian_filter(image, 6 * sigma)


def _correlation_peak(fixed: np.ndarray, moving: np.ndarray) -> tuple[float, np.ndarray]:
    """Circular cross-correlation peak of equally shaped, zero-padded maps.

    Returns the normalised peak value and the shift (dx, dy) such that moving(p + shift) best
    matches fixed(p).
    """
    spectrum = np.fft.rfft2(moving) * np.conj(np.fft.rfft2(fixed))
    correlation = np.fft.irfft2(spectrum, s=fixed.shape)
    index = np.unravel_index(int(np.argmax(correlation)), correlation.shape)
    norm = float(np.linalg.norm(fixed) * np.linalg.norm(moving)) or 1.0
    shift = np.array(index, dtype=np.float64)
    size = np.array(correlation.shape)
    shift = np.where(shift > size / 2, shift - size, shift)
    return float(correlation[index]) / norm, shift[::-1]


def coarse_search(
    fixed: np.ndarray,
    moving: np.ndarray,
    *,
    angles_deg: np.ndarray,
    scales: np.ndarray = np.array([1.0]),  # noqa: B008 - read-only default
    working_width: int = 384,
) -> tuple[np.ndarray, float]:
    """Global search over rotation and scale, translation by FFT cross-correlation.

    Both maps are shrunk so the fixed map is ``working_width`` pixels wide and band-passed;
    every (angle, scale) pair turns the moving map about its centre and the correlation
    peak gives the translation. Large motion (tens of pixels, several degrees) is found here;
    :func:`register_similarity` refines it.

    Parameters
    ----------
    fixed : (H, W) float ndarray, vessel map of the reference
    moving : (h, w) float ndarray, vessel map to align (any size)
    angles_deg, scales : 1-D ndarrays, the grid searched

    Returns
    -------
    matrix : (3, 3) float64 ndarray, fixed pixel -> moving pixel
    correlation : float, normalised correlation at the best grid point
    """
    factor = working_width / fixed.shape[1]
    small_fixed = cv2.resize(
        fixed.astype(np.float32), None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA
    )
    small_moving = cv2.resize(
        moving.astype(np.float32), None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA
    )
    sigma = 1.0
    canvas = (
        int(max(small_fixed.shape[0], small_moving.shape[0]) * 1.5),
        int(max(small_fixed.shape[1], small_moving.shape[1]) * 1.5),
    )
    padded_fixed = np.zeros(canvas, np.float32)
    padded_fixed[: small_fixed.shape[0], : small_fixed.shape[1]] = _band_pass(small_fixed, sigma)
    fixed_centre = ((small_fixed.shape[1] - 1) / 2, (small_fixed.shape[0] - 1) / 2)
    moving_centre = ((small_moving.shape[1] - 1) / 2, (small_moving.shape[0] - 1) / 2)
    best = (-np.inf, np.eye(3))
    for scale in scales:
        for angle in angles_deg:
            # fixed grid -> moving: rotate/scale about the centres, then align the centres
            rotation = similarity_matrix(
                scale=scale, rotation_deg=angle, translation_xy=(0.0, 0.0), center_xy=fixed_centre
            )
            rotation[:2, 2] += np.subtract(moving_centre, fixed_centre)
            resampled = warp_image(small_moving, rotation, small_fixed.shape)
            padded_moving = np.zeros(canvas, np.float32)
            padded_moving[: small_fixed.shape[0], : small_fixed.shape[1]] = _band_pass(
                resampled, sigma
            )
            value, shift = _correlation_peak(padded_fixed, padded_moving)
            if value > best[0]:
                shifted = rotation @ np.array([[1, 0, shift[0]], [0, 1, shift[1]], [0, 0, 1.0]])
                best = (value, shifted)
    value, small_matrix = best
    to_small = np.diag([factor, factor, 1.0])
    return np.linalg.inv(to_small) @ small_matrix @ to_small, float(value)


def sitk_image(image: np.ndarray) -> sitk.Image:
    """A float32 SimpleITK image of a 2-D array (unit spacing, origin 0: physical = pixel)."""
    return sitk.GetImageFromArray(np.ascontiguousarray(image, dtype=np.float32))


def masked_correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Pearson correlation of two images over ``mask`` (0 when either is constant there)."""
    x, y = a[mask].astype(np.float64), b[mask].astype(np.float64)
    if x.size < 2:
        return 0.0
    x, y = x - x.mean(), y - y.mean()
    denominator = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / denominator) if denominator > 0 else 0.0


def register_similarity(
    fixed: np.ndarray,
    moving: np.ndarray,
    fixed_mask: np.ndarray,
    initial: np.ndarray,
    settings: RigidSettings = RigidSettings(),  # noqa: B008 - frozen
    *,
    affine: bool = False,
) -> SimilarityResult:
    """Refine a fixed->moving similarity (or affine) transform with SimpleITK.

    Correlation metric on vessel maps, multi-resolution pyramid with wide smoothing,
    regular-step gradient descent with parameter scales estimated from physical shifts,
    random sampling with a fixed seed inside ``fixed_mask``, a fixed thread count.

    Parameters
    ----------
    fixed, moving : (H, W) / (h, w) float ndarrays, vessel probability maps
    fixed_mask : (H, W) bool ndarray, where the metric is evaluated
    initial : (3, 3) ndarray, fixed pixel -> moving pixel (from :func:`coarse_search`)
    settings : RigidSettings
    affine : bool
        Optimise a full affine transform instead of a similarity (FA-to-fundus alignment).

    Returns
    -------
    SimilarityResult
    """
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(settings.threads)
    centre = ((fixed.shape[1] - 1) / 2.0, (fixed.shape[0] - 1) / 2.0)
    start = matrix_to_similarity(initial, centre)
    if affine and not isinstance(start, sitk.AffineTransform):
        as_affine = sitk.AffineTransform(2)
        as_affine.SetCenter(start.GetCenter())
        as_affine.SetMatrix(start.GetMatrix())
        as_affine.SetTranslation(start.GetTranslation())
        start = as_affine
    method = sitk.ImageRegistrationMethod()
    method.SetNumberOfThreads(settings.threads)
    method.SetMetricAsCorrelation()
    method.SetMetricFixedMask(sitk.GetImageFromArray(fixed_mask.astype(np.uint8)))
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(settings.sampling_fraction, settings.seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0,
        minStep=1e-4,
        numberOfIterations=settings.iterations,
        relaxationFactor=0.6,
        gradientMagnitudeTolerance=1e-8,
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(settings.shrink_factors))
    method.SetSmoothingSigmasPerLevel(list(settings.smoothing_sigmas))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(start, inPlace=True)
    method.Execute(sitk_image(fixed), sitk_image(moving))
    matrix = _transform_to_matrix(start)
    resampled = warp_image(moving, matrix, fixed.shape)
    correlation = masked_correlation(fixed, resampled, fixed_mask)
    return SimilarityResult(matrix, correlation, float(method.GetMetricValue()))
