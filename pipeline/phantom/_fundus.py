"""Colour fundus photograph appearance: reflectance, disc, macula, vessels, camera."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ._render import VesselLayers

# Vessel absorbance per channel (R, G, B) at saturation.  Oxygenated arterial blood absorbs
# less red than venous blood, so arteries look lighter and redder than veins.
_ABSORBANCE = np.array([[0.16, 0.70, 0.60], [0.70, 1.55, 1.20]], dtype=np.float32)
# Strength of the central light reflex, stronger on arteries.
_REFLEX = np.array([0.30, 0.14], dtype=np.float32)
# Retina units over which vessel absorbance saturates with calibre.  Calibrated so that the
# shipped vessel CNN scores the same F1 on phantom photos (0.80 at 584x876) as on DRIVE test (0.81):
# fine vessels are faint in colour photos, which is why the FA sequence is worth registering.
_SATURATION = 0.06
_SENSOR_NOISE = 0.01


@dataclass(frozen=True)
class FundusScene:
    """Pixel-space placement of the anatomy on one image.

    Attributes
    ----------
    shape : (H, W)
    fov_center_xy : (x, y) centre of the circular field of view, pixels.
    fov_radius : float, pixels.
    disc_xy : (x, y) optic disc centre, pixels.
    disc_radius : float, pixels.
    fovea_xy : (x, y) fovea, pixels.
    unit : float, pixels per retina unit (the fundus field-of-view radius).
    """

    shape: tuple[int, int]
    fov_center_xy: tuple[float, float]
    fov_radius: float
    disc_xy: tuple[float, float]
    disc_radius: float
    fovea_xy: tuple[float, float]
    unit: float


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Zero-mean, unit-variance random field with features of about ``scale_px`` pixels.

    Drawn on a coarse grid and upsampled bicubically, so it costs O(H W) whatever the scale.
    Returns (H, W) float32.
    """
    height, width = shape
    small = (max(2, int(round(height / scale_px)) + 2), max(2, int(round(width / scale_px)) + 2))
    coarse = rng.standard_normal(small).astype(np.float32)
    field = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    field -= field.mean()
    return field / (field.std() + 1e-6)


def radial_distance(scene: FundusScene, center_xy: tuple[float, float]) -> np.ndarray:
    """(H, W) float32 distance in pixels from ``center_xy`` (x, y)."""
    height, width = scene.shape
    ys, xs = np.ogrid[:height, :width]
    return np.sqrt((xs - center_xy[0]) ** 2 + (ys - center_xy[1]) ** 2).astype(np.float32)


def fov_mask(scene: FundusScene) -> np.ndarray:
    """(H, W) bool: pixels whose centre lies inside the circular field of view."""
    return radial_distance(scene, scene.fov_center_xy) <= scene.fov_radius


def _aperture(scene: FundusScene) -> np.ndarray:
    """(H, W) float32 camera aperture: 1 inside, a one-pixel soft rim, 0 outside ``fov_mask``."""
    distance = radial_distance(scene, scene.fov_center_xy)
    return np.clip(scene.fov_radius + 1.0 - distance, 0.0, 1.0) * fov_mask(scene)


def render_fundus(rng: np.random.Generator, scene: FundusScene, layers: VesselLayers) -> np.ndarray:
    """Render an 8-bit colour fundus photograph.

    Parameters
    ----------
    rng : numpy Generator
    scene : FundusScene
        Anatomy in pixels.
    layers : VesselLayers
        Vessel rasters on the same (H, W) grid.

    Returns
    -------
    (H, W, 3) uint8 ndarray, RGB, black outside the field of view.
    """
    height, width = scene.shape
    unit = scene.unit
    # 1. fundus reflectance: orange-red, pigment varies from case to case and across the retina
    pigment = rng.uniform(-0.08, 0.08)
    base = np.array([0.95 + pigment * 0.5, 0.52 + pigment, 0.31 + pigment * 0.6], np.float32)
    broad = smooth_noise(rng, scene.shape, 0.35 * unit)
    choroid = smooth_noise(rng, scene.shape, 0.035 * unit)
    grain = smooth_noise(rng, scene.shape, 0.008 * unit)
    reflectance = base * (1.0 + 0.035 * broad[..., None])
    reflectance *= 1.0 + np.array([0.03, 0.018, 0.018], np.float32) * choroid[..., None]
    reflectance *= 1.0 + np.array([0.018, 0.027, 0.03], np.float32) * grain[..., None]
    # 2. macula: darker, browner, with a small foveal reflex
    to_fovea = radial_distance(scene, scene.fovea_xy) / unit
    macula = np.exp(-(to_fovea**2) / (2 * 0.17**2))[..., None]
    pit = np.exp(-(to_fovea**2) / (2 * 0.045**2))[..., None]
    reflectance *= 1.0 - macula * np.array([0.16, 0.32, 0.30], np.float32) * rng.uniform(0.8, 1.2)
    reflectance *= 1.0 - pit * np.array([0.06, 0.12, 0.12], np.float32)
    reflectance += 0.10 * np.exp(-(to_fovea**2) / (2 * 0.007**2))[..., None]
    # 3. optic disc: bright yellow rim, near-white cup, soft edge, brighter peripapillary halo
    dx, dy = scene.disc_xy
    ys, xs = np.ogrid[:height, :width]
    ellipse = np.sqrt(
        ((xs - dx) / (0.9 * scene.disc_radius)) ** 2 + ((ys - dy) / scene.disc_radius) ** 2
    ).astype(np.float32)
    disc = 0.9 * _smoothstep(1.15, 0.85, ellipse)[..., None]
    cup = 0.8 * _smoothstep(0.6, 0.2, ellipse)[..., None]
    halo = np.exp(-((ellipse - 1.0) ** 2) / 0.08)[..., None]
    reflectance *= 1.0 + 0.10 * halo
    rim_colour = np.array([1.3, 1.0, 0.62], np.float32) * rng.uniform(0.95, 1.05)
    cup_colour = np.array([1.45, 1.3, 0.95], np.float32)
    reflectance = reflectance * (1 - disc) + rim_colour * disc
    reflectance = reflectance * (1 - cup) + cup_colour * cup
    # 4. vessels: Beer-Lambert absorbance that saturates with calibre, plus the axial reflex
    diameter = layers.calibre / unit  # retina units, resolution independent
    strength = (1.0 - np.exp(-diameter / _SATURATION)) * layers.profile
    absorbance = np.einsum("chw,ck->hwk", strength, _ABSORBANCE)
    reflectance *= np.exp(-absorbance)
    reflex_width = _smoothstep(0.010, 0.024, diameter) * np.exp(-((layers.offset / 0.3) ** 2))
    reflex = np.einsum("chw,c->hw", reflex_width * layers.mask, _REFLEX)
    reflectance += reflex[..., None] * np.array([0.9, 0.75, 0.6], np.float32)
    # 5. optics and illumination: slight blur, vignetting, off-centre illumination
    sigma = max(0.5, 0.0022 * unit)
    reflectance = cv2.GaussianBlur(reflectance, (0, 0), sigma)
    to_centre = radial_distance(scene, scene.fov_center_xy) / scene.fov_radius
    vignette = 1.0 - rng.uniform(0.35, 0.5) * np.clip(to_centre, 0, 1) ** 2.5
    angle = rng.uniform(0, 2 * np.pi)
    cx, cy = scene.fov_center_xy
    tilt = (
        1.0
        + rng.uniform(0.04, 0.12)
        * (np.cos(angle) * (xs - cx) + np.sin(angle) * (ys - cy))
        / scene.fov_radius
    )
    image = reflectance * (vignette * tilt)[..., None] * rng.uniform(0.95, 1.05)
    # 6. sensor: noise, quantisation, black outside the aperture with a one-pixel soft edge
    image += rng.normal(0.0, _SENSOR_NOISE, size=image.shape).astype(np.float32)
    aperture = _aperture(scene)[..., None]
    image = image * aperture
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)
