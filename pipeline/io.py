"""Reading raw exam images and masks safely, and normalising them to one layout per modality.

Images come from cameras, export tools and public datasets of every vintage, so nothing is
trusted: the format is sniffed from the bytes (PNG, JPEG, TIFF, PPM/PGM/PBM, BMP, GIF; see
:data:`ACCEPTED_FORMATS`), the pixel count is checked from the header *before* decoding
(decompression bombs), truncated data is an error rather than a grey band, and colour modes
are normalised explicitly (RGBA without transparency -> RGB, palette of greys -> L,
other palettes -> RGB, 1-bit -> 0/255) or refused with a reason. Metadata (EXIF, text chunks,
ICC) is never carried over: only pixels.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from angioflow.pipeline.av_encoding import AV_CLASSES, av_labels_from_rgb
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from .errors import AngioflowError

__all__ = [
    "ACCEPTED_FORMATS",
    "ImageHeader",
    "ImageLimits",
    "ImageRejected",
    "as_fa_frame",
    "as_fundus",
    "read_av_mask",
    "read_header",
    "read_image",
    "read_mask",
]

# Pillow's format names; "PPM" is Netpbm's family (STARE's .ppm, .pgm, .pbm), "GIF" is read for
# DRIVE's single-frame masks.
ACCEPTED_FORMATS = ("PNG", "JPEG", "TIFF", "PPM", "BMP", "GIF")
_FORMAT_NAMES = "PNG, JPEG, TIFF, PPM/PGM/PBM, BMP or GIF"
# Channels of a grey image saved as RGB differ only by rounding; a real colour photo's differ a lot.
_GREY_CHANNEL_TOLERANCE = 4


class ImageRejected(AngioflowError, ValueError):
    """An image file cannot be used; the message says why and how to fix it (no path)."""


class ImageLimits(BaseModel):
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

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_pixels: int = Field(40_000_000, ge=1)
    min_side_px: int = Field(64, ge=1)
    max_aspect: float = Field(4.0, ge=1.0)


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says, read without decoding pixels.

    Attributes
    ----------
    width, height : int
        Size in pixels.
    mode : str
        Pillow's pixel mode (``'L'``, ``'I;16'``, ``'RGB'``, ``'P'``, ...).
    decoded_bytes : int
        Size in bytes of the array :func:`read_image` returns for this file (a palette image
        is counted as RGB, the larger of its two outcomes).
    """

    width: int
    height: int
    mode: str
    decoded_bytes: int


# Bytes per pixel of read_image's output, by Pillow mode (see _to_array).
_DECODED_BYTES_PER_PIXEL = {"L": 1, "1": 1, "LA": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}


def read_header(path: Path, *, limits: ImageLimits = ImageLimits()) -> ImageHeader:  # noqa: B008
    """Check an image file's header against the limits without decoding its pixels.

    Lets a caller add up what a set of files will take in memory before decoding any of them
    (a frame sequence of highly compressible images can be tiny on disk and huge decoded).

    Parameters
    ----------
    path : Path
        Image file.
    limits : ImageLimits
        Size limits.

    Returns
    -------
    header : ImageHeader

    Raises
    ------
    ImageRejected
        Empty, another format, an unreadable header, multi-page or animated, too large or too
        small (the header checks of :func:`read_image`).

    Example
    -------
    >>> read_header(Path("fa/000.png")).decoded_bytes  # doctest: +SKIP
    1572864
    """
    with _open_checked(path, limits) as image:
        width, height = image.size
        per_pixel = _DECODED_BYTES_PER_PIXEL.get(image.mode, 2 if image.mode == "I" else 3)
        return ImageHeader(width, height, image.mode, width * height * per_pixel)


def read_image(path: Path, *, limits: ImageLimits = ImageLimits()) -> np.ndarray:  # noqa: B008
    """Decode a photo or frame (PNG, JPEG, single-page TIFF, PPM/PGM/PBM, BMP, single-frame GIF)
    into a validated array.

    Parameters
    ----------
    path : Path
        Image file.
    limits : ImageLimits
        Size limits, checked from the header before pixels are decoded.

    Returns
    -------
    pixels : (H, W) or (H, W, 3) ndarray of uint8 or uint16
        Greyscale or RGB pixels. 16-bit greyscale (PNG, TIFF, PGM) stays uint16; 1-bit images
        become 0/255 uint8; palette images become greyscale when every palette entry is grey,
        else RGB; CMYK and YCbCr images become RGB; an alpha channel is dropped only when every
        pixel is opaque.

    Raises
    ------
    ImageRejected
        Empty, unreadable, another format, truncated, multi-page or animated, too large or too
        small, with transparency or floating point, or blank (a single value everywhere).

    Example
    -------
    >>> read_image(Path("fa/000.png")).shape  # doctest: +SKIP
    (1024, 1536)
    """
    pixels = _decode(path, limits)
    if pixels.min() == pixels.max():
        raise ImageRejected(f"blank image: every pixel is {pixels.flat[0]}; check the export")
    return pixels


def read_mask(path: Path, *, limits: ImageLimits = ImageLimits()) -> np.ndarray:  # noqa: B008
    """Decode a single-channel mask or probability map (vessel, field of view, prediction).

    Same formats and checks as :func:`read_image`, except that a blank mask (all background)
    is allowed, and an RGB file is accepted only when its channels are equal.

    Parameters
    ----------
    path : Path
        Mask file, e.g. DRIVE's ``21_manual1.gif`` or ``21_training_mask.gif``.
    limits : ImageLimits
        Size limits, checked from the header before pixels are decoded.

    Returns
    -------
    mask : (H, W) uint8 or uint16 ndarray
        The stored values (a 1-bit file gives 0/255; a palette file its grey levels).

    Raises
    ------
    ImageRejected
        As :func:`read_image`, or if the file holds colour.

    Example
    -------
    >>> read_mask(Path("DRIVE/training/mask/21_training_mask.gif")).max()  # doctest: +SKIP
    255
    """
    pixels = _decode(path, limits)
    if pixels.ndim == 2:
        return pixels
    if not _is_equal_rgb(pixels):
        raise ImageRejected(
            "is a colour image, not a single-channel mask; save the mask as greyscale "
            "(A/V labels: class indices 0-3, or red artery / blue vein on black)"
        )
    return np.ascontiguousarray(pixels[..., 0])


def read_av_mask(path: Path, *, limits: ImageLimits = ImageLimits()) -> np.ndarray:  # noqa: B008
    """Decode an artery/vein mask into class indices, from either encoding a user meets.

    A single-channel file must hold the class indices of :data:`pipeline.av_encoding.AV_CLASSES`
    (angioflow's own exports); an RGB file is decoded by colour
    (:func:`pipeline.av_encoding.av_labels_from_rgb`: RITE, LES-AV, HRF-AV, ``label-av``).

    Parameters
    ----------
    path : Path
        A/V mask file.
    limits : ImageLimits
        Size limits, checked from the header before pixels are decoded.

    Returns
    -------
    labels : (H, W) uint8 ndarray
        0 background, 1 artery, 2 vein, 3 crossing or uncertain.

    Raises
    ------
    ImageRejected
        As :func:`read_image` (a blank mask is allowed), or if a single-channel file holds
        values above the last class index.
    """
    pixels = _decode(path, limits)
    if pixels.ndim == 3 and not _is_equal_rgb(pixels):
        return av_labels_from_rgb(pixels)
    labels = pixels if pixels.ndim == 2 else pixels[..., 0]
    if int(labels.max()) >= len(AV_CLASSES):
        raise ImageRejected(
            f"holds value {int(labels.max())}, but a single-channel A/V mask holds class indices "
            f"0-{len(AV_CLASSES) - 1} ({', '.join(AV_CLASSES)}); save class indices, or RGB "
            "with red artery and blue vein"
        )
    return labels.astype(np.uint8)


@contextlib.contextmanager
def _open_checked(path: Path, limits: ImageLimits) -> Iterator[Image.Image]:
    """The opened image, its header checked against ``limits``; no pixel decoded yet."""
    if path.stat().st_size == 0:
        raise ImageRejected("empty file (0 bytes); re-export the image")
    with warnings.catch_warnings():
        # Our own pixel limit (checked next, from the header) governs; Pillow still raises
        # DecompressionBombError beyond twice its built-in limit.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(path, formats=ACCEPTED_FORMATS)
        except Image.DecompressionBombError as error:
            raise ImageRejected(f"refused as a decompression bomb ({error})") from None
        except Image.UnidentifiedImageError:
            raise ImageRejected(
                f"not a readable {_FORMAT_NAMES} image; re-export it in one of those formats"
            ) from None
        except (OSError, SyntaxError, ValueError) as error:
            raise ImageRejected(f"unreadable image header ({error}); re-export it") from None
    with image:
        try:
            _check_header(image, limits)
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            if isinstance(error, ImageRejected):
                raise
            raise ImageRejected(_corrupt(error)) from None
        yield image


def _corrupt(error: Exception) -> str:
    return f"truncated or corrupt image data ({error}); copy the file again from the source"


def _decode(path: Path, limits: ImageLimits) -> np.ndarray:
    with _open_checked(path, limits) as image:
        try:
            image.load()
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise ImageRejected(_corrupt(error)) from None
        return _to_array(image)


def _check_header(image: Image.Image, limits: ImageLimits) -> None:
    width, height = image.size
    if getattr(image, "n_frames", 1) > 1:
        unit = "frames (an animation)" if image.format == "GIF" else "pages"
        raise ImageRejected(f"holds {image.n_frames} {unit}; export one image per file")
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
    if mode == "P":
        # GIF and PNG masks are often palette images whose entries are grey, or nearly so
        # (DRIVE's 2nd_manual holds (4, 2, 4) and (252, 254, 252)): those become greyscale.
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
        if _channel_spread(rgb).max() <= _GREY_CHANNEL_TOLERANCE:
            return np.asarray(image.convert("L"), dtype=np.uint8)
        return rgb
    if mode in ("RGB", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    if mode == "1":
        return np.asarray(image, dtype=np.uint8) * np.uint8(255)
    if mode == "F":
        raise ImageRejected("holds floating-point pixels; export 8- or 16-bit integer pixels")
    raise ImageRejected(f"has unsupported pixel mode {mode!r}; export 8-bit RGB or 8/16-bit grey")


def _require_opaque(alpha: np.ndarray) -> None:
    if alpha.min() < 255:
        raise ImageRejected(
            "has transparent pixels (alpha channel); export it without transparency"
        )


def _is_equal_rgb(rgb: np.ndarray) -> bool:
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def _channel_spread(rgb: np.ndarray) -> np.ndarray:
    channels = rgb.astype(np.int16)
    return np.maximum(
        np.abs(channels[..., 0] - channels[..., 1]), np.abs(channels[..., 1] - channels[..., 2])
    )


def _is_grey_rgb(rgb: np.ndarray) -> bool:
    return bool(np.percentile(_channel_spread(rgb), 99) <= _GREY_CHANNEL_TOLERANCE)


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
    pixels : ndarray
        As :func:`as_fundus`.

    Returns
    -------
    frame : (H, W) uint8 or uint16 ndarray
        Greyscale frame, bit depth preserved; an RGB file whose channels are equal becomes grey.

    Raises
    ------
    ImageRejected
        If the image is in colour (the fundus photo in an FA slot), or holds only two values
        (a 1-bit image or a mask: an angiogram has grey levels).
    """
    if pixels.ndim == 3:
        if not _is_grey_rgb(pixels):
            raise ImageRejected(
                "is a colour image, not an FA frame (the fundus photo?); FA frames are greyscale"
            )
        pixels = np.ascontiguousarray(pixels[..., 1])
    low, high = pixels.min(), pixels.max()
    if np.all((pixels == low) | (pixels == high)):
        raise ImageRejected(
            "holds only two values (a 1-bit black-and-white image or a mask), not an FA frame; "
            "export the 8- or 16-bit greyscale frame"
        )
    return pixels
