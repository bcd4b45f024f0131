"""Safe image decoding: what is kept exactly, what is normalised, what is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import fa_grey, fundus_rgb
from PIL import Image

from pipeline.io import ImageLimits, ImageRejected, as_fa_frame, as_fundus, read_image


def test_16_bit_frames_keep_every_value(tmp_path: Path) -> None:
    frame = fa_grey((96, 128), 1, bits=16)
    Image.fromarray(frame).save(tmp_path / "f.png")
    decoded = read_image(tmp_path / "f.png")
    assert decoded.dtype == np.uint16
    np.testing.assert_array_equal(decoded, frame)
    Image.fromarray(frame).save(tmp_path / "f.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif"), frame)


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
    with pytest.raises(ValueError, match="image limits must be positive"):
        ImageLimits(**limits)


def _real(pattern: str) -> list[Path]:
    from conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} absent: real fundus/FA images are needed for this test")
    files = sorted(SHARED_DATA.glob(pattern))
    assert files, f"no files match {pattern} under {SHARED_DATA}"
    return files


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
