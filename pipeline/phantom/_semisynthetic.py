"""Semi-synthetic sequences: a real image moved, warped and re-exposed by known amounts."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ._case import _check_seed
from ._transforms import FrameTransform, sample_motion


@dataclass(frozen=True, eq=False)
class SyntheticSequence:
    """Frames made from one image, with the truth that registration must recover.

    Attributes
    ----------
    frames : tuple of ndarray
        Same shape and dtype as the input image; ``frames[0]`` is the image itself.
    transforms : tuple of FrameTransform
        ``transforms[k]`` maps pixel (x, y) of frame k to pixel (x, y) of the input image
        (frame 0, identity).
    valid : tuple of (H, W) bool ndarray
        Frame pixels that see the image (the rest are zero fill).
    """

    frames: tuple[np.ndarray, ...]
    transforms: tuple[FrameTransform, ...]
    valid: tuple[np.ndarray, ...]


def semi_synthetic_sequence(
    image: np.ndarray,
    seed: int,
    *,
    n_frames: int = 8,
    max_translation: float = 0.04,
    max_rotation_deg: float = 4.0,
    scale_range: tuple[float, float] = (0.97, 1.03),
    deformation_px: float = 1.0,
    gain_range: tuple[float, float] = (0.75, 1.25),
    illumination: float = 0.15,
    noise_sigma: float = 0.01,
) -> SyntheticSequence:
    """Turn one real FA frame or fundus photo into a sequence with known motion.

    Frame 0 is the image unchanged.  Every later frame samples the image through a random
    similarity (shift, torsion, zoom) and a smooth non-rigid warp, then changes exposure: a gain,
    a linear illumination gradient and Gaussian noise.

    Parameters
    ----------
    image : (H, W) or (H, W, C) ndarray, C <= 4
        uint8, uint16 or float; the output keeps its dtype (integers are clipped to their range).
    seed : int
        Non-negative; fixes every random draw.
    n_frames : int, keyword-only
        Frames including the unchanged first one, >= 1.
    max_translation : float, keyword-only
        Largest shift per axis as a fraction of the image width.
    max_rotation_deg : float, keyword-only
        Largest rotation, degrees.
    scale_range : (low, high), keyword-only
        Zoom range.
    deformation_px : float, keyword-only
        Largest amplitude of the smooth warp, pixels; 0 keeps frames rigid.
    gain_range : (low, high), keyword-only
        Exposure gain range.
    illumination : float, keyword-only
        Strength of the illumination gradient (0 = flat; 0.15 = +-15 % across the image).
    noise_sigma : float, keyword-only
        Noise standard deviation as a fraction of the dtype's full scale (of 1 for floats).

    Returns
    -------
    SyntheticSequence

    Raises
    ------
    ValueError
        On an empty, non-finite or wrongly shaped image or an out-of-range option.

    Examples
    --------
    >>> image = np.zeros((64, 64), np.uint8); image[20:40, 30] = 255
    >>> sequence = semi_synthetic_sequence(image, 0, n_frames=3)
    >>> len(sequence.frames), sequence.frames[1].dtype
    (3, dtype('uint8'))
    """
    image = np.asarray(image)
    seed = _check_seed(seed)
    if image.ndim not in (2, 3) or (image.ndim == 3 and not 1 <= image.shape[2] <= 4):
        raise ValueError(f"image must be (H, W) or (H, W, C) with C <= 4, got shape {image.shape}")
    if min(image.shape[:2]) < 16:
        raise ValueError(f"image must be at least 16x16 pixels, got shape {image.shape}")
    if image.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        raise ValueError(
            f"image dtype must be uint8, uint16, float32 or float64, got {image.dtype}; "
            "convert it first"
        )
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise ValueError("image contains NaN or infinite values; replace them first")
    if isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames < 1:
        raise ValueError(f"n_frames must be a positive int, got {n_frames!r}")
    if not 0.0 <= max_translation <= 0.25:
        raise ValueError(f"max_translation must lie in [0, 0.25], got {max_translation!r}")
    if not 0.0 < gain_range[0] <= gain_range[1]:
        raise ValueError(f"gain_range must be (low, high) with 0 < low <= high, got {gain_range!r}")
    if not 0.5 <= scale_range[0] <= scale_range[1] <= 2.0:
        raise ValueError(f"scale_range must satisfy 0.5 <= low <= high <= 2, got {scale_range!r}")

    rng = np.random.default_rng(seed)
    shape = image.shape[:2]
    full_scale = 1.0 if image.dtype.kind == "f" else float(np.iinfo(image.dtype).max)
    source = image.astype(np.float32)
    ones = np.ones(shape, np.float32)
    ys, xs = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    frames, transforms, valid = [image.copy()], [FrameTransform.identity()], [ones > 0]
    for _ in range(1, n_frames):
        transform = sample_motion(
            rng,
            shape,
            max_translation=max_translation,
            max_rotation_deg=max_rotation_deg,
            scale_range=scale_range,
            deformation_px=deformation_px,
        )
        map_x, map_y = transform.sampling_maps(shape)
        moved = cv2.remap(source, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        moved = moved.reshape(image.shape)
        seen = cv2.remap(ones, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        angle = rng.uniform(0.0, 2.0 * np.pi)
        ramp = np.cos(angle) * (xs / shape[1] - 0.5) + np.sin(angle) * (ys / shape[0] - 0.5)
        exposure = rng.uniform(*gain_range) * (1.0 + 2.0 * illumination * ramp)
        if moved.ndim == 3:
            exposure = exposure[..., None]
        noise = rng.normal(0.0, noise_sigma * full_scale, size=moved.shape).astype(np.float32)
        result = moved * exposure + noise
        if image.dtype.kind != "f":
            result = np.clip(np.round(result), 0, full_scale)
        frames.append(result.astype(image.dtype))
        transforms.append(transform)
        valid.append(seen > 0.999)
    return SyntheticSequence(frames=tuple(frames), transforms=tuple(transforms), valid=tuple(valid))
