"""One synthetic exam: fundus photo, FA sequence and every truth that later stages are scored on."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Literal

import cv2
import numpy as np
from angioflow.pipeline.mask_structure import labels_from_channels
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ._angiogram import (
    AngiogramScene,
    DyeTiming,
    apply_camera,
    build_scene,
    render_fluorescence,
    sample_frame_times,
    sample_timing,
)
from ._fundus import FundusScene, fov_mask, render_fundus
from ._render import render_layers
from ._transforms import FrameTransform, sample_motion
from ._tree import LABEL_NAMES, VesselTree, grow_tree, sample_anatomy

DEFECTS = ("blur", "blink", "saturated", "noise")
_MAX_SIDE = 8192
_Side = Annotated[int, Field(strict=True, ge=64, le=_MAX_SIDE)]


class PhantomConfig(BaseModel):
    """What kind of exam :func:`generate_case` synthesises.

    Attributes
    ----------
    size : (H, W)
        Fundus photograph size in pixels (numpy order: rows, columns).
    n_frames : int
        Number of FA frames, >= 1.
    eye : "OD", "OS" or None
        Right eye (disc on the image's right), left eye, or None to draw it from the seed.
    fa_size : (h, w) or None
        FA frame size; None uses ``size``.  The FA camera also sees a slightly different field
        (scale, rotation and centre drawn per case), given by ``PhantomCase.fa_to_fundus``.
    max_translation : float
        Largest eye shift between FA frames along each axis, as a fraction of the FA width.
    max_rotation_deg : float
        Largest torsion between FA frames, degrees.
    scale_range : (low, high)
        Zoom range between FA frames (focus / working-distance changes).
    deformation_px : float
        Largest amplitude of the smooth non-rigid warp of each FA frame, FA pixels; 0 disables.
    bad_frame_probability : float
        Chance that a frame after the first is degraded (motion blur, blink, saturation or
        heavy noise); which defect is recorded in ``PhantomCase.frame_defects``.
    noise_sigma : float
        FA read-noise standard deviation as a fraction of full scale.
    fa_bit_depth : 8 or 16
        FA frames as uint8 or uint16.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    size: tuple[_Side, _Side] = (512, 768)
    n_frames: int = Field(8, strict=True, ge=1, le=500)
    eye: Literal["OD", "OS"] | None = None
    fa_size: tuple[_Side, _Side] | None = None
    max_translation: float = Field(0.04, ge=0.0, le=0.25)
    max_rotation_deg: float = Field(4.0, ge=0.0, le=45.0)
    scale_range: tuple[float, float] = (0.97, 1.03)
    deformation_px: float = Field(1.0, ge=0.0, le=20.0)
    bad_frame_probability: float = Field(0.1, ge=0.0, le=1.0)
    noise_sigma: float = Field(0.012, ge=0.0, le=0.5)
    fa_bit_depth: Literal[8, 16] = 8

    @model_validator(mode="after")
    def _scale_range_is_ordered(self) -> PhantomConfig:
        low, high = self.scale_range
        if not 0.5 <= low <= high <= 2.0:
            raise ValueError(
                f"scale_range must be (low, high) with 0.5 <= low <= high <= 2, "
                f"got {self.scale_range!r}"
            )
        return self

    @property
    def fa_shape(self) -> tuple[int, int]:
        """(h, w) of the FA frames."""
        return self.fa_size if self.fa_size is not None else self.size


@dataclass(frozen=True, eq=False)
class Landmarks:
    """Point correspondences for target registration error.

    All coordinates are pixel (x, y) = (column, row), origin at the centre of the top-left pixel.

    Attributes
    ----------
    kinds : tuple of str
        "disc", "fovea", "bifurcation" or "crossing" per landmark.
    labels : tuple of str
        "artery", "vein", "artery+vein" (crossings) or "none" (disc, fovea).
    fundus_xy : (N, 2) float64 ndarray
        Positions in the fundus photograph.
    fa_xy : (N, 2) float64 ndarray
        Positions in the FA reference frame (frame 0).
    frame_xy : (F, N, 2) float64 ndarray
        Positions in every FA frame; ``frame_xy[0] == fa_xy``.  They may fall outside a frame.
    """

    kinds: tuple[str, ...]
    labels: tuple[str, ...]
    fundus_xy: np.ndarray
    fa_xy: np.ndarray
    frame_xy: np.ndarray


@dataclass(frozen=True, eq=False)
class PhantomCase:
    """A synthetic exam with complete ground truth.

    Transforms, stated once: ``frame_transforms[k]`` maps pixel (x, y) of FA frame k to pixel
    (x, y) of the FA reference frame, frame 0 (identity for k = 0); ``fa_to_fundus`` maps FA
    reference pixels (x, y) to fundus pixels (x, y) as ``fa_to_fundus @ [x, y, 1]``.  So a point
    of frame k lands in the fundus at ``fa_to_fundus @ frame_transforms[k](p)``.

    Attributes
    ----------
    seed : int
    eye : "OD" or "OS"
    fundus : (H, W, 3) uint8 ndarray, RGB.
    fov : (H, W) bool ndarray, the fundus camera's field of view.
    vessel : (H, W) bool ndarray, vessel truth in fundus pixels.
    av : (H, W, 2) bool ndarray, [..., 0] artery and [..., 1] vein; crossings are in both.
    calibre : (H, W) float32 ndarray, vessel diameter in fundus pixels, 0 off vessels
        (the wider vessel at crossings).
    fa_frames : tuple of (h, w) uint8 or uint16 ndarrays, greyscale, vessels bright.
    frame_times : tuple of float, seconds after dye injection, strictly increasing.
    frame_phases : tuple of str, angiographic phase of each frame.
    frame_defects : tuple of (str or None), the degradation of each frame, None when good.
    frame_transforms : tuple of FrameTransform, frame k -> reference (frame 0).
    fa_to_fundus : (3, 3) float64 ndarray, FA reference pixels -> fundus pixels.
    fa_vessel : (h, w) bool ndarray, vessel truth in FA reference pixels.
    fa_fov : (h, w) bool ndarray, the FA camera aperture (fixed in every frame).
    landmarks : Landmarks
    disc_xy, fovea_xy : (x, y) fundus pixels; disc_radius : fundus pixels.
    tree : VesselTree, the geometry everything was rendered from (retina units).
    timing : DyeTiming
    config : PhantomConfig
    """

    seed: int
    eye: Literal["OD", "OS"]
    fundus: np.ndarray
    fov: np.ndarray
    vessel: np.ndarray
    av: np.ndarray
    calibre: np.ndarray
    fa_frames: tuple[np.ndarray, ...]
    frame_times: tuple[float, ...]
    frame_phases: tuple[str, ...]
    frame_defects: tuple[str | None, ...]
    frame_transforms: tuple[FrameTransform, ...]
    fa_to_fundus: np.ndarray
    fa_vessel: np.ndarray
    fa_fov: np.ndarray
    landmarks: Landmarks
    disc_xy: tuple[float, float]
    disc_radius: float
    fovea_xy: tuple[float, float]
    tree: VesselTree
    timing: DyeTiming
    config: PhantomConfig = field(default_factory=PhantomConfig)

    @property
    def av_labels(self) -> np.ndarray:
        """(H, W) uint8 A/V labels: 0 background, 1 artery, 2 vein, 3 crossing."""
        return labels_from_channels(np.moveaxis(self.av, -1, 0))

    def config_dict(self) -> dict:
        """The config as plain JSON-ready values."""
        return self.config.model_dump(mode="json")


def generate_case(seed: int, config: PhantomConfig = PhantomConfig()) -> PhantomCase:  # noqa: B008
    """Synthesise one exam -- fundus photo, FA sequence with known motion, and all truths.

    Parameters
    ----------
    seed : int
        Non-negative; the same seed and config give identical arrays on every run.
    config : PhantomConfig
        Sizes, frame count, eye, motion and noise.

    Returns
    -------
    PhantomCase

    Raises
    ------
    ValueError
        If ``seed`` is not a non-negative integer.

    Examples
    --------
    >>> case = generate_case(0, PhantomConfig(size=(256, 384), n_frames=3))
    >>> case.fundus.shape, len(case.fa_frames), case.av.shape
    ((256, 384, 3), 3, (256, 384, 2))
    """
    seed = _check_seed(seed)
    if not isinstance(config, PhantomConfig):
        raise TypeError(f"config must be a PhantomConfig, got {type(config).__name__}")
    rng = np.random.default_rng(seed)
    eye: Literal["OD", "OS"] = config.eye or ("OD" if rng.random() < 0.5 else "OS")
    tree = grow_tree(rng, sample_anatomy(rng, eye))

    # fundus photograph and its truth
    retina_to_fundus = _retina_to_image(config.size)
    fundus_scene = _scene(config.size, retina_to_fundus, tree)
    fundus_layers = render_layers(tree, retina_to_fundus, config.size)
    fundus = render_fundus(rng, fundus_scene, fundus_layers)

    # FA camera: its own field, rotation and resolution, on a padded canvas so moved frames
    # stay filled with retina
    fa_shape = config.fa_shape
    retina_to_fa = _retina_to_fa(rng, fa_shape)
    pad = _canvas_pad(config, fa_shape)
    to_canvas = np.array([[1.0, 0.0, pad], [0.0, 1.0, pad], [0.0, 0.0, 1.0]])
    canvas_shape = (fa_shape[0] + 2 * pad, fa_shape[1] + 2 * pad)
    canvas_scene = _scene(canvas_shape, to_canvas @ retina_to_fa, tree)
    canvas_layers = render_layers(tree, to_canvas @ retina_to_fa, canvas_shape)
    angiogram = build_scene(rng, canvas_scene, canvas_layers)
    frame_scene = _scene(fa_shape, retina_to_fa, tree)
    timing = sample_timing(rng)
    times = sample_frame_times(rng, config.n_frames, timing)
    frames, transforms, defects = [], [], []
    for k, time_s in enumerate(times):
        transform, defect = FrameTransform.identity(), None
        if k > 0:
            transform = sample_motion(
                rng,
                fa_shape,
                max_translation=config.max_translation,
                max_rotation_deg=config.max_rotation_deg,
                scale_range=config.scale_range,
                deformation_px=config.deformation_px,
            )
            if rng.random() < config.bad_frame_probability:
                defect = DEFECTS[int(rng.integers(len(DEFECTS)))]
        frames.append(
            _render_frame(
                rng, angiogram, timing, float(time_s), transform, frame_scene, pad, config, defect
            )
        )
        transforms.append(transform)
        defects.append(defect)

    fa_to_fundus = retina_to_fundus @ np.linalg.inv(retina_to_fa)
    landmarks = _landmarks(tree, retina_to_fundus, retina_to_fa, transforms, config.size)
    av = np.moveaxis(fundus_layers.mask, 0, -1)
    return PhantomCase(
        seed=seed,
        eye=eye,
        fundus=fundus,
        fov=fov_mask(fundus_scene),
        vessel=av.any(axis=-1),
        av=av,
        calibre=fundus_layers.calibre.max(axis=0),
        fa_frames=tuple(frames),
        frame_times=tuple(float(t) for t in times),
        frame_phases=tuple(timing.phase(float(t)) for t in times),
        frame_defects=tuple(defects),
        frame_transforms=tuple(transforms),
        fa_to_fundus=fa_to_fundus,
        fa_vessel=canvas_layers.mask.any(axis=0)[pad : pad + fa_shape[0], pad : pad + fa_shape[1]],
        fa_fov=fov_mask(frame_scene),
        landmarks=landmarks,
        disc_xy=fundus_scene.disc_xy,
        disc_radius=fundus_scene.disc_radius,
        fovea_xy=fundus_scene.fovea_xy,
        tree=tree,
        timing=timing,
        config=config,
    )


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"seed must be a non-negative int, got {type(seed).__name__} {seed!r}")
    if not 0 <= int(seed) < 2**63:
        raise ValueError(f"seed must be a non-negative int below 2**63, got {seed!r}")
    return int(seed)


def _fov_geometry(shape: tuple[int, int]) -> tuple[tuple[float, float], float]:
    """Centre (x, y) and radius (px) of a camera's circular field of view.

    The circle fills the height with a little clipping top and bottom, as on 45-degree
    fundus cameras, and never exceeds 92 % of the width.
    """
    height, width = shape
    return ((width - 1) / 2.0, (height - 1) / 2.0), 0.5 * min(1.02 * height, 0.92 * width)


def _retina_to_image(shape: tuple[int, int]) -> np.ndarray:
    (cx, cy), radius = _fov_geometry(shape)
    return np.array([[radius, 0.0, cx], [0.0, radius, cy], [0.0, 0.0, 1.0]])


def _retina_to_fa(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """The FA camera sees a field of radius 0.85-1.0, shifted and turned a little."""
    (cx, cy), radius = _fov_geometry(shape)
    field_radius = rng.uniform(0.85, 1.0)
    center = rng.uniform(-0.06, 0.06, size=2)
    theta = math.radians(rng.uniform(-6.0, 6.0))
    scale = radius / field_radius
    cos, sin = scale * math.cos(theta), scale * math.sin(theta)
    linear = np.array([[cos, sin], [-sin, cos]])
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = np.array([cx, cy]) - linear @ center
    return matrix


def _scene(shape: tuple[int, int], retina_to_pixels: np.ndarray, tree: VesselTree) -> FundusScene:
    """Anatomy placed by ``retina_to_pixels``; the aperture is the camera's, centred on the grid.

    For the padded FA canvas the aperture is meaningless and unused.
    """
    anatomy = tree.anatomy
    scale = float(np.sqrt(abs(np.linalg.det(retina_to_pixels[:2, :2]))))
    disc = retina_to_pixels[:2, :2] @ anatomy.disc_xy + retina_to_pixels[:2, 2]
    fovea = retina_to_pixels[:2, :2] @ anatomy.fovea_xy + retina_to_pixels[:2, 2]
    (cx, cy), aperture = _fov_geometry(shape)
    return FundusScene(
        shape=shape,
        fov_center_xy=(cx, cy),
        fov_radius=aperture,
        disc_xy=(float(disc[0]), float(disc[1])),
        disc_radius=anatomy.disc_radius * scale,
        fovea_xy=(float(fovea[0]), float(fovea[1])),
        unit=scale,
    )


def _canvas_pad(config: PhantomConfig, shape: tuple[int, int]) -> int:
    """Margin (px) around the FA reference that any sampled motion can bring into view."""
    height, width = shape
    half_diagonal = 0.5 * math.hypot(height, width)
    turn = math.sin(math.radians(config.max_rotation_deg))
    zoom = max(abs(config.scale_range[0] - 1.0), abs(config.scale_range[1] - 1.0))
    shift = config.max_translation * width
    return int(math.ceil(shift + half_diagonal * (turn + zoom) + 3 * config.deformation_px + 4))


def _render_frame(
    rng: np.random.Generator,
    angiogram: AngiogramScene,
    timing: DyeTiming,
    time_s: float,
    transform: FrameTransform,
    frame_scene: FundusScene,
    pad: int,
    config: PhantomConfig,
    defect: str | None,
) -> np.ndarray:
    fluorescence = render_fluorescence(angiogram, timing, time_s)
    map_x, map_y = transform.sampling_maps(frame_scene.shape, offset_xy=(pad, pad))
    moved = cv2.remap(fluorescence, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    image = apply_camera(
        rng,
        moved,
        frame_scene,
        gain=float(rng.uniform(0.7, 0.9)),
        noise_sigma=config.noise_sigma,
        defect=defect,
    )
    full_scale = 255.0 if config.fa_bit_depth == 8 else 65535.0
    dtype = np.uint8 if config.fa_bit_depth == 8 else np.uint16
    return np.round(image * full_scale).astype(dtype)


def _landmarks(
    tree: VesselTree,
    retina_to_fundus: np.ndarray,
    retina_to_fa: np.ndarray,
    transforms: list[FrameTransform],
    shape: tuple[int, int],
) -> Landmarks:
    """Disc, fovea, bifurcations and crossings that lie inside the fundus image's FOV."""
    anatomy = tree.anatomy
    bifurcations, labels = tree.bifurcations()
    crossings = tree.crossings()
    points = np.concatenate(
        [anatomy.disc_xy[None], anatomy.fovea_xy[None], bifurcations, crossings]
    )
    kinds = ["disc", "fovea"] + ["bifurcation"] * len(bifurcations) + ["crossing"] * len(crossings)
    names = ["none", "none"] + [LABEL_NAMES[i] for i in labels] + ["artery+vein"] * len(crossings)
    fundus_xy = points @ retina_to_fundus[:2, :2].T + retina_to_fundus[:2, 2]
    height, width = shape
    keep = (
        (np.linalg.norm(points, axis=1) < 0.97)
        & (fundus_xy[:, 0] >= 1)
        & (fundus_xy[:, 0] <= width - 2)
        & (fundus_xy[:, 1] >= 1)
        & (fundus_xy[:, 1] <= height - 2)
    )
    points, fundus_xy = points[keep], fundus_xy[keep]
    fa_xy = points @ retina_to_fa[:2, :2].T + retina_to_fa[:2, 2]
    frame_xy = np.stack([t.reference_to_frame(fa_xy) for t in transforms])
    return Landmarks(
        kinds=tuple(k for k, kept in zip(kinds, keep, strict=True) if kept),
        labels=tuple(n for n, kept in zip(names, keep, strict=True) if kept),
        fundus_xy=fundus_xy,
        fa_xy=fa_xy,
        frame_xy=frame_xy,
    )
