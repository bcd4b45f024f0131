"""Optic disc and fovea read from vessel masks: on phantom exams (whose anatomy is known) and on
real A/V masks, where the disc must lie where the thick vessels meet."""

from __future__ import annotations

import numpy as np
import pytest
from angioflow.pipeline.anatomy import (
    DISC_RADIUS,
    anatomy_maps,
    disc_from_vessels,
    fov_circle,
    fovea_from_vessels,
)
from angioflow.pipeline.phantom import PhantomConfig, generate_case

# fresh seeds, two sizes (the functions work in field-of-view radii)
CASES = [(seed, (256, 384) if seed % 2 else (768, 1152)) for seed in range(7100, 7112)]


@pytest.mark.parametrize(("seed", "size"), CASES)
def test_the_disc_is_found_where_the_phantom_grew_its_vessels_from(
    seed: int, size: tuple[int, int]
) -> None:
    case = generate_case(seed, PhantomConfig(size=size, n_frames=1, fa_size=(64, 64)))
    _, radius = fov_circle(case.fov)
    disc = disc_from_vessels(case.vessel, case.fov)
    # within one and a half disc radii of the disc's centre
    assert (
        np.hypot(disc[0] - case.disc_xy[0], disc[1] - case.disc_xy[1]) < 1.5 * DISC_RADIUS * radius
    )
    fovea = fovea_from_vessels(case.vessel, case.fov, disc)
    # the avascular fovea, within two disc radii of the truth
    assert (
        np.hypot(fovea[0] - case.fovea_xy[0], fovea[1] - case.fovea_xy[1])
        < 2 * DISC_RADIUS * radius
    )


def test_the_maps_mark_disc_and_fovea_inside_the_field_of_view_only() -> None:
    fov = np.zeros((200, 200), bool)
    fov[20:180, 20:180] = True
    maps = anatomy_maps(fov.shape, fov, (40.0, 100.0), (110.0, 100.0))
    assert maps.shape == (2, 200, 200) and maps.dtype == np.float32
    assert maps[0, 100, 40] == 1.0 and maps[0, 100, 110] == 0.0
    assert maps[1, 100, 110] == pytest.approx(1.0) and maps[1, 100, 40] < 0.05
    assert not maps[:, ~fov].any()
