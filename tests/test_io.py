"""Safe image decoding: what is kept exactly, what is normalised, what is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from angioflow.pipeline.io import (
    ImageLimits,
    ImageRejected,
    as_fa_frame,
    as_fundus,
    read_av_mask,
    read_image,
    read_mask,
)
from PIL import Image
from support import fa_grey, fundus_rgb


@pytest.mark.parametrize("suffix", [".png", ".tif", ".pgm"])
def test_16_bit_frames_keep_every_value(tmp_path: Path, suffix: str) -> None:
    frame = fa_grey((96, 128), 1, bits=16)
    Image.fromarray(frame).save(tmp_path / f"f{suffix}")
    decoded = read_image(tmp_path / f"f{suffix}")
    assert decoded.dtype == np.uint16
    np.testing.assert_array_equal(decoded, frame)


def test_palette_and_cmyk_images_become_rgb(tmp_path: Path) -> None:
    rgb = fundus_rgb((96, 128), 2)
    Image.fromarray(rgb).quantize(64).save(tmp_path / "p.png")
    palette = read_image(tmp_path / "p.png")
    assert palette.shape == (96, 128, 3) and palette.dtype == np.uint8
    assert np.abs(palette.astype(int) - rgb).mean() < 8
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    assert read_image(tmp_path / "c.jpg").shape == (96, 128, 3)


def test_modalities_are_told_apart() -> None:
    grey = fa_grey((96, 128), 3)
    assert as_fa_frame(np.dstack([grey] * 3)).shape == (96, 128)
    np.testing.assert_array_equal(as_fa_frame(grey), grey)
    with pytest.raises(ImageRejected, match="not a colour fundus photo"):
        as_fundus(np.dstack([grey] * 3))
    with pytest.raises(ImageRejected, match="not an FA frame"):
        as_fa_frame(fundus_rgb((96, 128), 3))


def test_pixel_limit_is_checked_before_decoding(tmp_path: Path) -> None:
    Image.fromarray(fa_grey((200, 300), 4)).save(tmp_path / "f.png")
    with pytest.raises(ImageRejected, match="60000 pixels exceeds the limit of 59999"):
        read_image(tmp_path / "f.png", limits=ImageLimits(max_pixels=59_999))
    assert read_image(tmp_path / "f.png", limits=ImageLimits(max_pixels=60_000)).shape == (200, 300)


def test_float_images_are_refused(tmp_path: Path) -> None:
    Image.fromarray(fa_grey((96, 128), 5).astype(np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(ImageRejected, match="floating-point"):
        read_image(tmp_path / "f.tif")


@pytest.mark.parametrize("limits", [{"max_pixels": 0}, {"min_side_px": 0}, {"max_aspect": 0.5}])
def test_invalid_limits_are_refused(limits: dict) -> None:
    (name,) = limits
    with pytest.raises(ValueError, match=rf"{name}\n  Input should be greater than or equal to 1"):
        ImageLimits(**limits)


def _real(pattern: str) -> list[Path]:
    from support import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} absent: real fundus/FA images are needed for this test")
    files = sorted(SHARED_DATA.glob(pattern))
    assert files, f"no files match {pattern} under {SHARED_DATA}"
    return files


@pytest.mark.slow
def test_real_fundus_photos_and_fa_frames_are_accepted_and_told_apart() -> None:
    fundus_files = _real("DRIVE/training/images/*.tif") + _real("LES-AV/training/images/*")
    fa_files = _real("FFA/origin_data/01.phase_identification/*_phase/*.jpg")
    for path in fundus_files:
        assert as_fundus(read_image(path)).ndim == 3, path.name
        with pytest.raises(ImageRejected, match="not an FA frame"):
            as_fa_frame(read_image(path))
    for path in fa_files:
        assert as_fa_frame(read_image(path)).ndim == 2, path.name
        with pytest.raises(ImageRejected, match="not a colour fundus photo"):
            as_fundus(read_image(path))


# ---- every raster format of the public fundus datasets ------------------------------------


@pytest.mark.parametrize("suffix", [".ppm", ".bmp", ".png", ".tif", ".jpg"])
def test_colour_photos_in_every_format_are_read(tmp_path: Path, suffix: str) -> None:
    rgb = fundus_rgb((96, 128), 6)
    Image.fromarray(rgb).save(tmp_path / f"photo{suffix}")
    decoded = as_fundus(read_image(tmp_path / f"photo{suffix}"))
    assert decoded.shape == (96, 128, 3) and decoded.dtype == np.uint8
    if suffix != ".jpg":  # lossless formats keep every value
        np.testing.assert_array_equal(decoded, rgb)


@pytest.mark.parametrize("suffix", [".pgm", ".bmp", ".gif", ".png", ".tif"])
def test_8_bit_grey_frames_in_every_format_keep_every_value(tmp_path: Path, suffix: str) -> None:
    frame = fa_grey((96, 128), 7)
    Image.fromarray(frame).save(tmp_path / f"frame{suffix}")
    decoded = read_image(tmp_path / f"frame{suffix}")
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(as_fa_frame(decoded), frame)


@pytest.mark.parametrize("suffix", [".pbm", ".png", ".tif", ".bmp"])
def test_1_bit_masks_become_0_and_255(tmp_path: Path, suffix: str) -> None:
    mask = fa_grey((96, 128), 9) > 128
    Image.fromarray(mask).save(tmp_path / f"m{suffix}")
    assert Image.open(tmp_path / f"m{suffix}").mode == "1"  # really a 1-bit file
    for decoded in (read_image(tmp_path / f"m{suffix}"), read_mask(tmp_path / f"m{suffix}")):
        assert decoded.dtype == np.uint8 and set(np.unique(decoded)) == {0, 255}
        np.testing.assert_array_equal(decoded > 0, mask)
    with pytest.raises(ImageRejected, match="only two values .* not an FA frame"):
        as_fa_frame(read_image(tmp_path / f"m{suffix}"))


def test_grey_palette_gif_masks_give_their_grey_levels(tmp_path: Path) -> None:
    mask = (fa_grey((96, 128), 10) > 128).astype(np.uint8)
    palette_image = Image.fromarray(mask, mode="P")
    palette_image.putpalette([0, 0, 0, 255, 255, 255])
    palette_image.save(tmp_path / "m.gif")
    assert Image.open(tmp_path / "m.gif").mode == "P"
    decoded = read_mask(tmp_path / "m.gif")
    assert decoded.ndim == 2
    np.testing.assert_array_equal(decoded, mask * 255)


def test_animated_gif_is_refused(tmp_path: Path) -> None:
    frames = [Image.fromarray(fa_grey((96, 128), seed)) for seed in (11, 12)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageRejected, match="holds 2 frames"):
        read_image(tmp_path / "a.gif")


@pytest.mark.parametrize("suffix", [".ppm", ".bmp", ".gif", ".png", ".tif"])
def test_truncated_files_are_refused(tmp_path: Path, suffix: str) -> None:
    Image.fromarray(fundus_rgb((96, 128), 13)).save(tmp_path / f"full{suffix}")
    data = (tmp_path / f"full{suffix}").read_bytes()
    (tmp_path / f"cut{suffix}").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageRejected, match="truncated or corrupt|unreadable image header"):
        read_image(tmp_path / f"cut{suffix}")


@pytest.mark.parametrize("suffix", [".ppm", ".bmp", ".gif"])
def test_new_formats_have_the_pixel_limit_checked_before_decoding(
    tmp_path: Path, suffix: str
) -> None:
    Image.fromarray(fundus_rgb((200, 300), 14)).save(tmp_path / f"f{suffix}")
    with pytest.raises(ImageRejected, match="60000 pixels exceeds the limit of 59999"):
        read_image(tmp_path / f"f{suffix}", limits=ImageLimits(max_pixels=59_999))


def test_a_netpbm_bomb_header_is_refused_without_decoding(tmp_path: Path) -> None:
    # A 20-byte header claiming 100000 x 100000 pixels and no data at all.
    (tmp_path / "bomb.pgm").write_bytes(b"P5\n100000 100000\n255\n")
    with pytest.raises(ImageRejected, match="decompression bomb|exceeds the limit"):
        read_image(tmp_path / "bomb.pgm")


def test_other_formats_are_refused_naming_the_accepted_ones(tmp_path: Path) -> None:
    Image.fromarray(fundus_rgb((96, 128), 15)).save(tmp_path / "photo.webp")
    with pytest.raises(ImageRejected, match="PNG, JPEG, TIFF, PPM/PGM/PBM, BMP or GIF") as error:
        read_image(tmp_path / "photo.webp")
    assert "\n" not in str(error.value)


def test_masks_may_be_blank_but_not_colour(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((96, 128), np.uint8)).save(tmp_path / "empty.png")
    assert read_mask(tmp_path / "empty.png").max() == 0
    with pytest.raises(ImageRejected, match="blank image"):
        read_image(tmp_path / "empty.png")
    grey = fa_grey((96, 128), 16)
    Image.fromarray(np.dstack([grey] * 3)).save(tmp_path / "grey_rgb.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "grey_rgb.png"), grey)
    Image.fromarray(fundus_rgb((96, 128), 16)).save(tmp_path / "colour.png")
    with pytest.raises(ImageRejected, match="not a single-channel mask"):
        read_mask(tmp_path / "colour.png")


def test_av_masks_are_read_from_class_indices_or_colours(tmp_path: Path) -> None:
    from angioflow.pipeline.av_encoding import av_to_rgb

    labels = np.zeros((96, 128), np.uint8)
    labels[10:20], labels[30:40], labels[50:60] = 1, 2, 3
    Image.fromarray(labels).save(tmp_path / "classes.png")
    Image.fromarray(av_to_rgb(labels)).save(tmp_path / "colours.png")
    Image.fromarray(av_to_rgb(labels)).save(tmp_path / "colours.bmp")
    for name in ("classes.png", "colours.png", "colours.bmp"):
        np.testing.assert_array_equal(read_av_mask(tmp_path / name), labels)
    Image.fromarray(labels * 60).save(tmp_path / "scaled.png")
    with pytest.raises(ImageRejected, match="holds value 180, but a single-channel A/V mask"):
        read_av_mask(tmp_path / "scaled.png")


def test_real_drive_gif_masks_and_tif_photos_are_read() -> None:
    manual = _real("DRIVE/training/1st_manual/*_manual1.gif")
    fov = _real("DRIVE/*/mask/*_mask.gif")
    second = _real("DRIVE/test/2nd_manual/*_manual2.gif")  # palette GIFs holding indices 0/1
    photos = _real("DRIVE/*/images/*.tif")
    for path in manual + fov:
        mask = read_mask(path)
        assert mask.shape == (584, 565) and set(np.unique(mask)) == {0, 255}, path.name
    for path in second:  # a near-grey palette: (4, 2, 4) and (252, 254, 252)
        mask = read_mask(path)
        assert mask.shape == (584, 565) and len(np.unique(mask)) == 2, path.name
        with Image.open(path) as image:  # the same pixels as Pillow's own grey conversion
            np.testing.assert_array_equal(mask, np.asarray(image.convert("L")))
    for path in photos:
        assert as_fundus(read_image(path)).shape == (584, 565, 3), path.name


def test_real_public_dataset_masks_in_every_stored_format_are_read() -> None:
    les_av_fov = _real("LES-AV/*/mask/*_mask.gif")  # palette GIFs
    hrf_fov = _real("HRF-AV/training/mask/*_mask.tif")  # grey stored as RGB TIFF
    rite_av = _real("RITE/training/1st_manual/*.png")  # A/V colours
    for path in les_av_fov[:3] + hrf_fov[:2]:
        mask = read_mask(path)
        assert mask.min() < 128 < mask.max() and len(np.unique(mask)) == 2, path.name
    for path in rite_av[:3]:
        labels = read_av_mask(path)
        assert set(np.unique(labels)) >= {0, 1, 2}, path.name
