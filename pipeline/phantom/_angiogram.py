"""Fluorescein angiogram appearance: dye kinetics per vessel class and per pixel.

Dye concentration follows a gamma-variate bolus plus recirculation (Thompson et al., Circ. Res.
1964), arriving at each artery pixel after the arm-to-retina time plus its path length from the
disc, and at each vein pixel after the arteriovenous transit, distal veins first and with laminar
flow along the walls in the early venous phase.  Late frames show washout of the vessels and
staining of the disc and background.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ._fundus import FundusScene, _aperture, radial_distance, smooth_noise
from ._render import VesselLayers

PHASES = ("pre-injection", "choroidal", "arterial", "arteriovenous", "venous", "late")


@dataclass(frozen=True)
class DyeTiming:
    """Circulation times of one patient, seconds.

    Attributes
    ----------
    arrival_s : float
        Arm-to-retina time: dye reaches the disc arteries.
    arteriovenous_s : float
        Capillary transit: delay from arterial to venous filling.
    artery_speed : float
        Dye front speed along arteries, retina units per second.
    vein_speed : float
        Dye front speed along veins, retina units per second.
    """

    arrival_s: float
    arteriovenous_s: float
    artery_speed: float
    vein_speed: float

    def phase(self, time_s: float) -> str:
        """Angiographic phase name at ``time_s`` after injection."""
        tau = time_s - self.arrival_s
        if tau < -1.5:
            return "pre-injection"
        if tau < 0.0:
            return "choroidal"
        if tau < self.arteriovenous_s:
            return "arterial"
        if tau < self.arteriovenous_s + 4.0:
            return "arteriovenous"
        if tau < 60.0:
            return "venous"
        return "late"


def sample_timing(rng: np.random.Generator) -> DyeTiming:
    """Draw normal circulation times (arm-retina 9-13 s, AV transit 2-3.5 s)."""
    return DyeTiming(
        arrival_s=float(rng.uniform(9.0, 13.0)),
        arteriovenous_s=float(rng.uniform(2.0, 3.5)),
        artery_speed=float(rng.uniform(0.8, 1.3)),
        vein_speed=float(rng.uniform(0.5, 0.9)),
    )


def sample_frame_times(rng: np.random.Generator, n_frames: int, timing: DyeTiming) -> np.ndarray:
    """Strictly increasing acquisition times (s): a dense early run and a few late frames."""
    if n_frames == 1:
        return np.array([timing.arrival_s + timing.arteriovenous_s + rng.uniform(5.0, 15.0)])
    n_early = max(2, int(round(0.65 * n_frames)))
    n_late = n_frames - n_early
    early = (
        timing.arrival_s
        + rng.uniform(-1.0, 0.5)
        + np.concatenate([[0.0], np.cumsum(rng.uniform(1.2, 3.5, size=n_early - 1))])
    )
    late = np.sort(np.exp(rng.uniform(np.log(45.0), np.log(600.0), size=n_late)))
    late = np.maximum(late, early[-1] + 5.0) + np.arange(n_late)  # keep strictly increasing
    return np.round(np.concatenate([early, late]), 2)


def _bolus(tau: np.ndarray) -> np.ndarray:
    """Relative dye concentration ``tau`` seconds after local arrival (peak ~1)."""
    tau = np.maximum(tau, 0.0)
    first_pass = (tau / 3.0) ** 2.5 * np.exp(2.5 * (1.0 - tau / 3.0))
    recirculation = 0.5 * (1.0 - np.exp(-tau / 5.0)) * np.exp(-tau / 400.0)
    return (0.65 * first_pass + recirculation).astype(np.float32)


def _tissue(tau: np.ndarray) -> np.ndarray:
    """Choroid / extravascular fluorescence: slower rise, slower washout than the vessels."""
    tau = np.maximum(tau, 0.0)
    flush = (tau / 4.0) ** 2 * np.exp(2.0 * (1.0 - tau / 4.0))
    return (0.35 * flush + 0.45 * (1.0 - np.exp(-tau / 8.0)) * np.exp(-tau / 900.0)).astype(
        np.float32
    )


@dataclass(frozen=True, eq=False)
class AngiogramScene:
    """Static maps of the FA reference canvas, rendered once per case.

    Attributes
    ----------
    layers : VesselLayers on the canvas.
    choroid : (H, W) float32, choroidal fluorescence texture around 1.
    lobule_delay_s : (H, W) float32, patchy choroidal filling delay.
    macula : (H, W) float32 in [0, 1], 1 at the fovea (dark in FA).
    disc : (H, W) float32 in [0, 1], optic disc weight.
    vessel_strength : (2, H, W) float32, fluorescence of a fully filled vessel per pixel.
    wall : (2, H, W) float32, laminar-flow weight (bright next to the wall).
    transit_max : float, longest path in the tree, retina units.
    """

    layers: VesselLayers
    choroid: np.ndarray
    lobule_delay_s: np.ndarray
    macula: np.ndarray
    disc: np.ndarray
    vessel_strength: np.ndarray
    wall: np.ndarray
    transit_max: float


def build_scene(
    rng: np.random.Generator, scene: FundusScene, layers: VesselLayers
) -> AngiogramScene:
    """Precompute the time-independent maps on the FA canvas."""
    unit = scene.unit
    choroid = 1.0 + 0.05 * smooth_noise(rng, scene.shape, 0.08 * unit)
    choroid += 0.07 * smooth_noise(rng, scene.shape, 0.01 * unit)
    lobules = smooth_noise(rng, scene.shape, 0.05 * unit)
    lobule_delay = np.clip(0.8 + 0.4 * lobules, 0.0, 2.0).astype(np.float32)
    to_fovea = radial_distance(scene, scene.fovea_xy) / unit
    macula = np.exp(-(to_fovea**2) / (2 * 0.14**2)).astype(np.float32)
    to_disc = radial_distance(scene, scene.disc_xy) / scene.disc_radius
    disc = np.clip(1.15 - to_disc, 0.0, 1.0).astype(np.float32) ** 0.7
    diameter = layers.calibre / unit
    strength = (0.45 + 0.55 * layers.profile) * (1.0 - np.exp(-diameter / 0.006)) * layers.mask
    wall = np.exp(-(((1.0 - layers.offset) / 0.35) ** 2)) * layers.mask
    return AngiogramScene(
        layers=layers,
        choroid=choroid.astype(np.float32),
        lobule_delay_s=lobule_delay,
        macula=macula,
        disc=disc,
        vessel_strength=strength.astype(np.float32),
        wall=wall.astype(np.float32),
        transit_max=float(layers.transit.max()) if layers.mask.any() else 1.0,
    )


def render_fluorescence(scene: AngiogramScene, timing: DyeTiming, time_s: float) -> np.ndarray:
    """Fluorescence of the retina at ``time_s`` on the reference canvas, (H, W) float32 ~[0, 1]."""
    tau = time_s - timing.arrival_s
    layers = scene.layers
    # choroid fills in lobules about a second before the retinal arteries
    background = _tissue(tau + 1.5 - scene.lobule_delay_s) * scene.choroid
    background *= 1.0 - 0.65 * scene.macula
    staining = 0.5 * (1.0 - np.exp(-max(tau, 0.0) / 90.0))
    background += scene.disc * (0.25 * _bolus(np.asarray(tau)) + staining)
    artery = _bolus(tau - layers.transit[0] / timing.artery_speed)
    # veins fill from their distal ends back to the disc
    vein_tau = (
        tau
        - timing.arteriovenous_s
        - (scene.transit_max - layers.transit[1]) / timing.vein_speed * 0.25
    )
    vein = _bolus(vein_tau)
    mixing = np.clip(vein_tau / 3.5, 0.0, 1.0)
    vein_shape = mixing * scene.vessel_strength[1] + (1 - mixing) * scene.wall[1]
    signal = artery * scene.vessel_strength[0] + vein * vein_shape
    # vessels hide the choroid beneath them; empty vessels are dark against the flush
    cover = np.maximum(layers.profile[0], layers.profile[1]) * 0.7
    image = 0.8 * background * (1.0 - cover) + 1.4 * signal
    return image.astype(np.float32)


def apply_camera(
    rng: np.random.Generator,
    fluorescence: np.ndarray,
    scene: FundusScene,
    *,
    gain: float,
    noise_sigma: float,
    defect: str | None,
) -> np.ndarray:
    """Camera model in frame pixels: vignetting, blur, defects, noise, circular aperture.

    Returns (H, W) float32 in [0, 1] (clipped: saturation is part of the model).
    """
    unit = scene.unit
    to_centre = radial_distance(scene, scene.fov_center_xy) / scene.fov_radius
    image = fluorescence * (1.0 - 0.3 * np.clip(to_centre, 0, 1) ** 2) * gain
    image = cv2.GaussianBlur(image, (0, 0), max(0.6, 0.0025 * unit))
    if defect == "blur":
        length = max(3, int(round(0.03 * unit)) | 1)
        kernel = np.zeros((length, length), np.float32)
        cv2.line(kernel, (0, length // 2), (length - 1, length // 2), 1.0, 1)
        rotation = cv2.getRotationMatrix2D(
            (length / 2 - 0.5, length / 2 - 0.5), float(rng.uniform(0, 180)), 1.0
        )
        kernel = cv2.warpAffine(kernel, rotation, (length, length))
        image = cv2.filter2D(image, -1, kernel / kernel.sum())
    elif defect == "blink":
        height = scene.shape[0]
        rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
        lid = float(rng.uniform(0.35, 0.7))
        image = image * (0.08 + 0.92 * np.clip((rows - lid) / 0.1, 0.0, 1.0)) * 0.6
    elif defect == "saturated":
        image = image * rng.uniform(2.5, 4.0)
    elif defect == "noise":
        noise_sigma *= 6.0
    # shot noise grows with signal, read noise does not
    sigma = np.sqrt(noise_sigma**2 + 0.02 * noise_sigma * np.clip(image, 0, None))
    image = image + sigma * rng.standard_normal(image.shape).astype(np.float32)
    aperture = _aperture(scene)
    return np.clip(image * aperture + 0.01, 0.0, 1.0).astype(np.float32)
