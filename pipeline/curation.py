"""Stages 2 and 4-7 on vessel maps: frame registration, aggregation, fundus alignment, binarisation.

Pure functions over numpy arrays; :mod:`flows.curate` wires them to the case store. Every
transform maps *fixed* pixels to *moving* pixels (see :mod:`pipeline.registration`): frame
transforms map reference-frame pixels to frame pixels, the fundus alignment maps fundus pixels
to reference-frame pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from angioflow.pipeline.deformable import BSplineSettings, Deformation, register_bspline
from angioflow.pipeline.registration import (
    RigidSettings,
    choose_reference,
    coarse_search,
    frame_quality,
    register_similarity,
    warp_image,
)
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    model_validator,
)
from scipy import ndimage as ndi
from skimage.filters import apply_hysteresis_threshold
from skimage.morphology import remove_small_objects

__all__ = [
    "CurationSettings",
    "FrameRegistration",
    "FundusAlignment",
    "SequenceRegistration",
    "aggregate_maps",
    "align_to_fundus",
    "baseline_mask",
    "binarise",
    "metric_mask",
    "nonrigid_mask",
    "register_sequence",
]


class CurationSettings(BaseModel):
    """Every parameter of stages 2-7, recorded with each stage output.

    A frozen pydantic model: validated wherever it is made (the shipped file
    ``configs/curation.yaml``, ``angioflow curate --config``, Prefect parameters, a mapping
    passed to :meth:`model_validate`), so every function here receives checked values. The
    defaults are the shipped recipe, ``configs/curation.yaml``; a misspelt name is refused.

    Attributes
    ----------
    rigid : RigidSettings
        Frame-to-reference similarity registration.
    nonrigid : BSplineSettings
        Coarse-to-fine B-spline refinement of frames (and of the fundus alignment).
    search_angles_deg : float
        Coarse search covers +- this rotation in 1-degree steps.
    fundus_scales : (low, high)
        Coarse search range of the FA-to-fundus zoom.
    min_fill_ratio : float
        Frames whose vessel fill is below this share of the reference's are dropped (dye not
        arrived, blink, saturation).
    min_correlation : float
        Frames whose registered vessel map correlates less than this with the reference are
        dropped as failed registrations.
    good_correlation : float
        Only frames this well registered rigidly get the non-rigid step and enter the
        aggregate: in weaker frames (early arterial phase, blur, noise) the vessel content
        differs from the reference, a free-form warp would chase the difference instead of the
        motion, and their soft maps would dilute the fine vessels of the mean.
    nonrigid_vessel_margin_px : int
        The non-rigid metric samples every pixel within this distance of the reference's
        vessels (probability >= 0.3) and no others: all of the signal, a third of the pixels,
        no sampling noise.
    aperture_margin_px : int
        Erosion of the aperture/FOV before metrics are evaluated (its rim is not retina).
    hysteresis_low, hysteresis_high : float
        Binarisation thresholds on the fused vessel probability.
    min_component_px : int
        Connected vessel pieces smaller than this are removed.

    Example
    -------
    >>> CurationSettings.model_validate({"rigid": {"iterations": 50}}).rigid.iterations
    50
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rigid: RigidSettings = RigidSettings()
    nonrigid: BSplineSettings = BSplineSettings()
    nonrigid_vessel_margin_px: NonNegativeInt = 4
    search_angles_deg: NonNegativeFloat = 10.0
    fundus_scales: tuple[PositiveFloat, PositiveFloat] = (0.8, 1.25)
    min_fill_ratio: NonNegativeFloat = 0.25
    min_correlation: float = Field(0.3, ge=-1, le=1)
    good_correlation: float = Field(0.8, ge=-1, le=1)
    aperture_margin_px: NonNegativeInt = 10
    hysteresis_low: float = Field(0.3, ge=0, le=1)
    hysteresis_high: float = Field(0.6, ge=0, le=1)
    min_component_px: PositiveInt = 30

    @model_validator(mode="after")
    def _ordered(self) -> CurationSettings:
        if self.fundus_scales[0] > self.fundus_scales[1]:
            raise ValueError("fundus_scales must be (low, high) with low <= high")
        if self.hysteresis_low > self.hysteresis_high:
            raise ValueError("hysteresis_low must not exceed hysteresis_high")
        return self


def _warp(
    matrix: np.ndarray, deformation: Deformation | None, image: np.ndarray, shape: tuple[int, int]
) -> np.ndarray:
    if deformation is not None:
        return deformation.warp(image, shape)
    return warp_image(image, matrix, shape)


def _map_points(
    matrix: np.ndarray, deformation: Deformation | None, points_xy: np.ndarray
) -> np.ndarray:
    if deformation is not None:
        return deformation.map_points(points_xy)
    points = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    return points @ matrix[:2, :2].T + matrix[:2, 2]


@dataclass(frozen=True)
class FrameRegistration:
    """One frame's registration to the reference.

    Attributes
    ----------
    index : int
        Frame index in the case.
    kept : bool
    reason : str
        Why a dropped frame was dropped ('' when kept).
    quality : dict
        :func:`pipeline.registration.frame_quality` of its vessel map.
    rigid : (3, 3) ndarray or None
        Reference pixel -> frame pixel similarity.
    correlation : float
        Vessel-map correlation with the reference after the rigid step (nan if not run).
    aggregated : bool
        Whether the frame enters the aggregate (kept and correlation >= good_correlation).
    deformation : Deformation or None
        Non-rigid result, when the frame got one.
    """

    index: int
    kept: bool
    reason: str
    quality: dict
    rigid: np.ndarray | None
    correlation: float
    aggregated: bool = False
    deformation: Deformation | None = None

    def warp(self, image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """A frame-grid image resampled onto the reference grid (non-rigid when available)."""
        return _warp(self.rigid, self.deformation, image, shape)

    def map_points(self, points_xy: np.ndarray) -> np.ndarray:
        """Reference pixel (x, y) -> frame pixel (x, y), (N, 2)."""
        return _map_points(self.rigid, self.deformation, points_xy)


@dataclass(frozen=True)
class SequenceRegistration:
    """All frames of a case registered to the automatically chosen reference frame."""

    reference: int
    frames: tuple[FrameRegistration, ...]

    @property
    def kept(self) -> tuple[FrameRegistration, ...]:
        return tuple(f for f in self.frames if f.kept)

    @property
    def aggregated(self) -> tuple[FrameRegistration, ...]:
        return tuple(f for f in self.frames if f.aggregated)


def metric_mask(aperture: np.ndarray, settings: CurationSettings) -> np.ndarray:
    """Where registration metrics are evaluated: the aperture/FOV without its rim."""
    margin = settings.aperture_margin_px
    return ndi.binary_erosion(aperture, iterations=margin) if margin > 0 else aperture


def nonrigid_mask(
    reference_map: np.ndarray, aperture: np.ndarray, settings: CurationSettings
) -> np.ndarray:
    """Where the non-rigid metric is evaluated: every pixel near the reference's vessels."""
    near = ndi.binary_dilation(
        reference_map >= 0.3, iterations=max(1, settings.nonrigid_vessel_margin_px)
    )
    return metric_mask(aperture, settings) & near


def register_sequence(
    vessel_maps: list[np.ndarray],
    apertures: list[np.ndarray],
    settings: CurationSettings = CurationSettings(),  # noqa: B008 - frozen
    *,
    nonrigid: bool = True,
) -> SequenceRegistration:
    """Register every frame's vessel map to the sharpest, best-filled frame.

    Frames with too few visible vessels, or whose registration fails its correlation check, are
    dropped with a reason; the others get a coarse global search, a similarity refinement and,
    if well registered, a coarse-to-fine B-spline refinement.

    Parameters
    ----------
    vessel_maps : list of (H, W) float32 ndarrays in [0, 1], one per frame
    apertures : list of (H, W) bool ndarrays, each frame's camera aperture
    settings : CurationSettings
    nonrigid : bool
        Run the non-rigid step (stage 4) after the rigid one (stage 2).

    Returns
    -------
    SequenceRegistration
    """
    if not vessel_maps:
        raise ValueError("a sequence needs at least one frame")
    qualities = [frame_quality(m, a) for m, a in zip(vessel_maps, apertures, strict=True)]
    reference = choose_reference(qualities)
    fixed = vessel_maps[reference]
    mask = metric_mask(apertures[reference], settings)
    near_vessels = nonrigid_mask(fixed, apertures[reference], settings)
    reference_fill = qualities[reference]["fill"]
    angles = np.arange(-settings.search_angles_deg, settings.search_angles_deg + 1e-9, 1.0)
    frames = []
    for index, (moving, quality) in enumerate(zip(vessel_maps, qualities, strict=True)):
        if index == reference:
            frames.append(FrameRegistration(index, True, "", quality, np.eye(3), 1.0, True))
            continue
        if quality["fill"] < settings.min_fill_ratio * reference_fill:
            reason = (
                f"too few vessels visible: fill {quality['fill']:.3f} is below "
                f"{settings.min_fill_ratio} x the reference's {reference_fill:.3f}"
            )
            frames.append(FrameRegistration(index, False, reason, quality, None, float("nan")))
            continue
        start, _ = coarse_search(fixed, moving, angles_deg=angles)
        rigid = register_similarity(fixed, moving, mask, start, settings.rigid)
        if rigid.correlation < settings.min_correlation:
            reason = (
                f"registration failed its check: vessel-map correlation {rigid.correlation:.2f} "
                f"< {settings.min_correlation}"
            )
            frames.append(
                FrameRegistration(index, False, reason, quality, rigid.matrix, rigid.correlation)
            )
            continue
        good = rigid.correlation >= settings.good_correlation
        deformation = None
        if nonrigid and good:
            deformation = register_bspline(
                fixed, moving, near_vessels, rigid.matrix, settings.nonrigid
            )
        frames.append(
            FrameRegistration(
                index, True, "", quality, rigid.matrix, rigid.correlation, good, deformation
            )
        )
    return SequenceRegistration(reference, tuple(frames))


def aggregate_maps(
    vessel_maps: list[np.ndarray],
    apertures: list[np.ndarray],
    registration: SequenceRegistration,
    settings: CurationSettings = CurationSettings(),  # noqa: B008 - frozen
) -> dict[str, np.ndarray]:
    """Per-pixel mean and maximum of the aggregated frames' vessel maps on the reference grid.

    Parameters
    ----------
    vessel_maps, apertures : lists of (H, W) arrays, as for :func:`register_sequence`
    registration : SequenceRegistration
    settings : CurationSettings
        ``aperture_margin_px``: the rim of each aperture is left out.

    Returns
    -------
    dict with ``mean`` and ``max`` ((H, W) float32 in [0, 1]; the mean is over the frames that
    see each pixel) and ``count`` ((H, W) uint8, how many aggregated frames see each pixel).
    """
    shape = vessel_maps[registration.reference].shape
    total = np.zeros(shape, np.float32)
    maximum = np.zeros(shape, np.float32)
    count = np.zeros(shape, np.float32)
    for frame in registration.aggregated:
        # the network answers faintly along the aperture's rim: leave the rim out
        inner = metric_mask(apertures[frame.index], settings)
        seen = frame.warp(inner.astype(np.float32), shape) > 0.99
        warped = frame.warp(vessel_maps[frame.index], shape) * seen
        total += warped
        maximum = np.maximum(maximum, warped)
        count += seen
    mean = np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32)
    return {"mean": mean, "max": maximum, "count": count.astype(np.uint8)}


@dataclass(frozen=True)
class FundusAlignment:
    """FA reference frame aligned to the fundus photo.

    Attributes
    ----------
    affine : (3, 3) ndarray
        Fundus pixel -> FA reference pixel, after the global search and affine refinement.
    deformation : Deformation or None
        Non-rigid refinement on top of ``affine``.
    correlation : float
        Vessel-map correlation inside the fundus FOV after alignment.
    """

    affine: np.ndarray
    deformation: Deformation | None
    correlation: float

    def warp(self, image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """An FA-reference-grid image resampled onto the fundus grid of ``shape``."""
        return _warp(self.affine, self.deformation, image, shape)

    def map_points(self, points_xy: np.ndarray) -> np.ndarray:
        """Fundus pixel (x, y) -> FA reference pixel (x, y), (N, 2)."""
        return _map_points(self.affine, self.deformation, points_xy)

    def coverage(self, count: np.ndarray, fundus_fov: np.ndarray) -> np.ndarray:
        """Fundus-FOV pixels that at least one aggregated FA frame sees, from the aggregate's
        ``count`` map."""
        return (self.warp(count.astype(np.float32), fundus_fov.shape) >= 1.0) & fundus_fov


def align_to_fundus(
    fundus_map: np.ndarray,
    fundus_fov: np.ndarray,
    fa_map: np.ndarray,
    settings: CurationSettings = CurationSettings(),  # noqa: B008 - frozen
) -> FundusAlignment:
    """Align the FA aggregate vessel map to the fundus photo's own vessel map.

    A global search over rotation, scale and translation, a similarity then affine refinement,
    then the same coarse-to-fine B-spline step as the frames (kept only if it raises the
    correlation).

    Parameters
    ----------
    fundus_map : (H, W) float ndarray, vessel probability of the fundus photo
    fundus_fov : (H, W) bool ndarray
    fa_map : (h, w) float ndarray, FA aggregate on the reference grid
    settings : CurationSettings
    """
    mask = metric_mask(fundus_fov, settings)
    angles = np.arange(-settings.search_angles_deg, settings.search_angles_deg + 1e-9, 1.0)
    low, high = settings.fundus_scales
    scales = np.exp(np.linspace(np.log(low), np.log(high), 12))
    start, _ = coarse_search(fundus_map, fa_map, angles_deg=angles, scales=scales)
    similarity = register_similarity(fundus_map, fa_map, mask, start, settings.rigid)
    affine = register_similarity(
        fundus_map, fa_map, mask, similarity.matrix, settings.rigid, affine=True
    )
    best = affine if affine.correlation >= similarity.correlation else similarity
    deformation = register_bspline(fundus_map, fa_map, mask, best.matrix, settings.nonrigid)
    if deformation.correlation <= best.correlation:
        return FundusAlignment(best.matrix, None, best.correlation)
    return FundusAlignment(best.matrix, deformation, deformation.correlation)


def binarise(
    probability: np.ndarray,
    fov: np.ndarray,
    settings: CurationSettings = CurationSettings(),  # noqa: B008 - frozen
) -> np.ndarray:
    """Vessel mask from a probability map: hysteresis, small-piece removal, FOV.

    Parameters
    ----------
    probability : (H, W) float ndarray in [0, 1]
    fov : (H, W) bool ndarray
    settings : CurationSettings
        Pixels above ``hysteresis_high`` seed vessels, connected pixels above
        ``hysteresis_low`` extend them; pieces (8-connected) smaller than ``min_component_px``
        pixels are removed.

    Returns
    -------
    (H, W) bool ndarray

    Example
    -------
    >>> p = np.zeros((20, 20)); p[5, 2:18] = 0.9; p[6, 2:18] = 0.4; p[15, 15] = 0.9
    >>> int(binarise(p, np.ones((20, 20), bool), CurationSettings(min_component_px=5)).sum())
    32
    """
    mask = apply_hysteresis_threshold(
        np.where(fov, probability, 0.0), settings.hysteresis_low, settings.hysteresis_high
    )
    return remove_small_objects(mask, max_size=settings.min_component_px - 1, connectivity=2) & fov


def baseline_mask(
    fa_probability: np.ndarray,
    coverage: np.ndarray,
    fundus_probability: np.ndarray,
    fundus_fov: np.ndarray,
    settings: CurationSettings = CurationSettings(),  # noqa: B008 - frozen
) -> np.ndarray:
    """Stage 7: the baseline vessel mask in fundus pixels.

    The FA aggregate decides where the FA sees the retina (``coverage``), the fundus photo's own
    vessel map beyond it; the rim of the FOV (``aperture_margin_px``), where the network answers
    to the FOV edge itself, is left out.

    Parameters
    ----------
    fa_probability : (H, W) float ndarray, the FA aggregate resampled to fundus pixels
    coverage : (H, W) bool ndarray, fundus pixels the registered FA frames see
    fundus_probability : (H, W) float ndarray, the fundus photo's vessel map
    fundus_fov : (H, W) bool ndarray
    settings : CurationSettings

    Returns
    -------
    (H, W) bool ndarray
    """
    fused = np.where(coverage, fa_probability, fundus_probability)
    return binarise(fused, metric_mask(fundus_fov, settings), settings)
