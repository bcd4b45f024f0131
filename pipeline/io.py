"""Reading raw exam images safely, and normalising them to one layout per modality.

Images come from cameras and export tools of every vintage, so nothing is trusted: the format
is sniffed from the bytes, the pixel count is checked from the header *before* decoding
(decompression bombs), truncated data is an error rather than a grey band, and colour modes
are normalised explicitly (RGBA without transparency -> RGB, grey RGB -> L, palette -> RGB) or
refused with a reason. Metadata (EXIF, text chunks, ICC) is never carried over: only pixels.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "ImageLimits",
    "ImageRejected",
    "as_fa_frame",
    "as_fundus",
    "read_image",
]

_FORMATS = ("PNG", "JPEG", "TIFF")
# Channels of a grey image saved as RGB differ only by rounding; a real colour photo's differ a lot.
_GREY_CHANNEL_TOLERANCE = 4


class ImageRejected(ValueError):
    """An image file cannot be used; the message says why and how to fix it (no path)."""


@dataclass(frozen=True)
class ImageLimits:
    """Sanity limits for one image.

    Attributes
    ----------
    max_pixels : int
        Largest accepted width * height. The header is checked before any decoding.
    min_side_px : int
        Smallest accepted width or height, in pixels.
    max_aspect : float
        Largest accepted ratio of the long side to the short side.
    """

    max_pixels: int = 40_000_000
    min_side_px: int = 64
    max_aspect: float = 4.0

    def __post_init__(self) -> None:
        if self.max_pixels < 1 or self.min_side_px < 1 or self.max_aspect < 1.0:
            raise ValueError(f"image limits must be positive with max_aspect >= 1, got {self!r}")


def read_image(path: Path, *, limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """Decode a PNG, JPEG or single-page TIFF into a validated array.

    Parameters
    ----------
    path : Path
        Image file.
    limits : ImageLimits
        Size limits, checked from the header before pixels are decoded.

    Returns
    -------
    pixels : (H, W) or (H, W, 3) ndarray of uint8 or uint16
        Greyscale or RGB pixels. 16-bit greyscale stays uint16; palette, CMYK and YCbCr images
        become RGB; an alpha channel is dropped only when every pixel is opaque.

    Raises
    ------
    ImageRejected
        Empty, unreadable, wrong format, truncated, multi-page, too large or too small, with
        transparency, floating point or 1-bit, or blank (a single value everywhere).

    Example
    -------
    >>> read_image(Path("fa/000.png")).shape  # doctest: +SKIP
    (1024, 1536)
    """
    if path.stat().st_size == 0:
        raise ImageRejected("empty file (0 bytes); re-export the image")
    with warnings.catch_warnings():
        # Our own pixel limit (checked next, from the header) governs; Pillow still raises
        # DecompressionBombError beyond twice its built-in limit.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(path, formats=_FORMATS)
        except Image.DecompressionBombError as error:
            raise ImageRejected(f"refused as a decompression bomb ({error})") from None
        except Image.UnidentifiedImageError:
            raise ImageRejected(
                "not a readable PNG, JPEG or TIFF image; re-export it in one of those formats"
            ) from None
        except (OSError, SyntaxError, ValueError) as error:
            raise ImageRejected(f"unreadable image header ({error}); re-export it") from None
    with image:
        _check_header(image, limits)
        try:
            image.load()
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise ImageRejected(
                f"truncated or corrupt image data ({error}); copy the file again from the source"
            ) from None
        pixels = _to_array(image)
    if pixels.min() == pixels.max():
        raise ImageRejected(f"blank image: every pixel is {pixels.flat[0]}; check the export")
    return pixels


def _check_header(image: Image.Image, limits: ImageLimits) -> None:
    width, height = image.size
    if getattr(image, "n_frames", 1) > 1:
        raise ImageRejected(f"holds {image.n_frames} pages; export one image per file")
    if width * height > limits.max_pixels:
        raise ImageRejected(
            f"{width}x{height} = {width * height} pixels exceeds the limit of {limits.max_pixels}; "
            "if this is a genuine image, raise the limit (ingest --max-pixels)"
        )
    if min(width, height) < limits.min_side_px:
        raise ImageRejected(
            f"{width}x{height} is smaller than {limits.min_side_px} px on a side; "
            "export the full-resolution image"
        )
    if max(width, height) > limits.max_aspect * min(width, height):
        raise ImageRejected(
            f"{width}x{height} has an aspect ratio above {limits.max_aspect:g}; "
            "this is not a retinal image (crop or re-export it)"
        )


def _to_array(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode == "L":
        return np.asarray(image, dtype=np.uint8)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(image)
        if values.min() < 0 or values.max() > np.iinfo(np.uint16).max:
            raise ImageRejected(
                f"{mode} pixel values outside 0..65535; export as 8- or 16-bit greyscale"
            )
        return values.astype(np.uint16)
    if mode == "LA":
        _require_opaque(np.asarray(image.getchannel("A")))
        return np.asarray(image.getchannel("L"), dtype=np.uint8)
    if mode in ("RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        _require_opaque(np.asarray(rgba.getchannel("A")))
        return np.asarray(rgba.convert("RGB"), dtype=np.uint8)
    if mode in ("RGB", "P", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    if mode == "1":
        raise ImageRejected("is a 1-bit (black and white) image; export 8- or 16-bit")
    if mode == "F":
        raise ImageRejected("holds floating-point pixels; export 8- or 16-bit integer pixels")
    raise ImageRejected(f"has unsupported pixel mode {mode!r}; export 8-bit RGB or 8/16-bit grey")


def _require_opaque(alpha: np.ndarray) -> None:
    if alpha.min() < 255:
        raise ImageRejected(
            "has transparent pixels (alpha channel); export it without transparency"
        )


def _is_grey_rgb(rgb: np.ndarray) -> bool:
    channels = rgb.astype(np.int16)
    spread = np.maximum(
        np.abs(channels[..., 0] - channels[..., 1]), np.abs(channels[..., 1] - channels[..., 2])
    )
    return bool(np.percentile(spread, 99) <= _GREY_CHANNEL_TOLERANCE)


def as_fundus(pixels: np.ndarray) -> np.ndarray:
    """Normalise decoded pixels to a colour fundus photo.

    Parameters
    ----------
    pixels : (H, W) or (H, W, 3) ndarray
        Output of :func:`read_image`.

    Returns
    -------
    fundus : (H, W, 3) uint8 ndarray
        RGB photo.

    Raises
    ------
    ImageRejected
        If the image is greyscale (an FA or red-free frame in the fundus slot).
    """
    if pixels.ndim == 2 or _is_grey_rgb(pixels):
        raise ImageRejected(
            "is a greyscale image, not a colour fundus photo (an FA or red-free frame?); "
            "put the colour photo in 'fundus' and FA frames in 'fa_frames'"
        )
    return pixels


def as_fa_frame(pixels: np.ndarray) -> np.ndarray:
    """Normalise decoded pixels to one FA frame.

    Parameters
    ----------
    pixels : (H, W) or (H, W, 3) ndarray
        Output of :func:`read_image`.

    Returns
    -------
    frame : (H, W) uint8 or uint16 ndarray
        Greyscale frame, bit depth preserved; an RGB file whose channels are equal becomes grey.

    Raises
    ------
    ImageRejected
        If the image is in colour (the fundus photo in an FA slot).
    """
    if pixels.ndim == 2:
        return pixels
    if not _is_grey_rgb(pixels):
        raise ImageRejected(
            "is a colour image, not an FA frame (the fundus photo?); FA frames are greyscale"
        )
    return np.ascontiguousarray(pixels[..., 1])
