"""Behaviour of the phantom that registration, segmentation and A/V scoring rely on."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from angioflow.pipeline.io import read_av_mask
from angioflow.pipeline.phantom import (
    PhantomCase,
    PhantomConfig,
    generate_case,
    read_transforms,
    semi_synthetic_sequence,
    warp_to_reference,
    write_case,
    write_phantom_set,
)
from PIL import Image
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from skimage.morphology import disk, white_tophat
from skimage.registration import phase_cross_correlation
from support import SHARED_DATA

DRIVE = SHARED_DATA / "DRIVE"
SMALL = PhantomConfig(size=(256, 384), n_frames=6, bad_frame_probability=0.0)


@pytest.fixture(scope="module")
def case() -> PhantomCase:
    return generate_case(11, SMALL)


def _shift(reference: np.ndarray, moving: np.ndarray) -> float:
    """Sub-pixel translation (px) that best aligns ``moving`` with ``reference``."""
    shift, _, _ = phase_cross_correlation(reference, moving, upsample_factor=20, normalization=None)
    return float(np.hypot(*shift))


def test_case_arrays_have_documented_shapes_and_types(case: PhantomCase) -> None:
    height, width = SMALL.size
    assert case.fundus.shape == (height, width, 3) and case.fundus.dtype == np.uint8
    assert case.av.shape == (height, width, 2) and case.av.dtype == bool
    assert case.calibre.dtype == np.float32
    assert np.array_equal(case.vessel, case.av.any(axis=-1))
    assert np.array_equal(case.calibre > 0, case.vessel)
    assert len(case.fa_frames) == SMALL.n_frames == len(case.frame_transforms)
    assert all(f.shape == SMALL.fa_shape and f.dtype == np.uint8 for f in case.fa_frames)
    assert np.all(np.diff(case.frame_times) > 0)
    assert np.array_equal(case.frame_transforms[0].matrix, np.eye(3))
    # the fundus is black outside its circular field of view and orange-red inside
    assert case.fundus[~case.fov].max() <= 10
    red, green, blue = case.fundus[case.fov].mean(axis=0)
    assert red > green > blue


@pytest.mark.slow
def test_true_transform_brings_every_frame_onto_the_reference_vessels(case: PhantomCase) -> None:
    inside = ndi.binary_erosion(case.fa_fov, iterations=8)
    truth = case.fa_vessel * inside
    checked = 0
    for k in range(1, len(case.fa_frames)):
        if case.frame_phases[k] not in ("venous", "late"):
            continue  # earlier, unfilled veins run beside bright arteries: ambiguous to match
        frame = case.fa_frames[k].astype(np.float32)
        registered = warp_to_reference(frame, case.frame_transforms[k], SMALL.fa_shape)
        ridges = white_tophat(registered, disk(4)) * inside
        assert _shift(truth.astype(np.float32), ridges) < 0.5
        # vessels really are bright where the truth says, after registration
        assert ridges[truth].mean() > 2 * ridges[inside & ~truth].mean()
        displacement = case.landmarks.frame_xy[k] - case.landmarks.fa_xy
        checked += np.abs(displacement).max() > 2.0  # the check above is not trivial
    assert checked >= 2


def test_landmarks_agree_across_coordinate_systems_and_sit_on_vessels(case: PhantomCase) -> None:
    marks = case.landmarks
    for k, transform in enumerate(case.frame_transforms):
        mapped = transform.frame_to_reference(marks.frame_xy[k])
        assert np.abs(mapped - marks.fa_xy).max() < 1e-3
    homogeneous = np.c_[marks.fa_xy, np.ones(len(marks.fa_xy))]
    assert np.abs((homogeneous @ case.fa_to_fundus.T)[:, :2] - marks.fundus_xy).max() < 1e-6
    cols, rows = np.round(marks.fundus_xy).astype(int).T
    kinds = np.asarray(marks.kinds)
    # thin vessels are one pixel wide at this size: allow the neighbouring pixel
    ring = np.ones((3, 3), bool)
    near_artery, near_vein = (ndi.binary_dilation(case.av[..., c], ring) for c in (0, 1))
    expected = {"bifurcation": near_artery | near_vein, "crossing": near_artery & near_vein}
    for kind, near in expected.items():
        on_vessel = near[rows[kinds == kind], cols[kinds == kind]]
        assert on_vessel.size > 5 and on_vessel.all()
    # wide crossings share pixels: those are labelled artery and vein at once
    assert (case.av.all(axis=-1) & (case.calibre > 3)).any()
    disc_col, disc_row = np.round(case.disc_xy).astype(int)
    assert disc_col == cols[0] and disc_row == rows[0] and marks.kinds[0] == "disc"


def test_fa_vessels_map_onto_fundus_vessels(case: PhantomCase) -> None:
    height, width = SMALL.size
    fa_in_fundus = (
        cv2.warpAffine(case.fa_vessel.astype(np.float32), case.fa_to_fundus[:2], (width, height))
        > 0.5
    )
    seen = (
        cv2.warpAffine(case.fa_fov.astype(np.float32), case.fa_to_fundus[:2], (width, height))
        > 0.99
    )
    region = seen & case.fov
    ring = np.ones((3, 3), bool)  # resampling a 1-px vessel may move it by one pixel
    mapped_hits = (fa_in_fundus & region & ndi.binary_dilation(case.vessel, ring)).sum()
    truth_hits = (case.vessel & region & ndi.binary_dilation(fa_in_fundus, ring)).sum()
    assert mapped_hits > 0.97 * (fa_in_fundus & region).sum()
    assert truth_hits > 0.9 * (case.vessel & region).sum()


@pytest.mark.parametrize("label", [0, 1], ids=["artery", "vein"])
def test_each_tree_is_connected_from_the_disc(case: PhantomCase, label: int) -> None:
    components, count = ndi.label(case.av[..., label], structure=np.ones((3, 3)))
    sizes = np.bincount(components.ravel())[1:]
    assert count >= 1 and sizes.max() > 0.9 * sizes.sum()
    disc_col, disc_row = np.round(case.disc_xy).astype(int)
    near_disc = components[disc_row - 3 : disc_row + 4, disc_col - 3 : disc_col + 4]
    assert np.argmax(sizes) + 1 in near_disc


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vessels_of_one_class_never_cross(seed: int) -> None:
    tree = generate_case(seed, PhantomConfig(size=(128, 192), n_frames=1)).tree
    disc, disc_radius = tree.anatomy.disc_xy, tree.anatomy.disc_radius
    for label in (0, 1):
        ids = [i for i, s in enumerate(tree.segments) if s.label == label]
        points = np.concatenate([tree.segments[i].points for i in ids])
        radii = np.concatenate([tree.segments[i].radii for i in ids])
        owner = np.concatenate([[i] * len(tree.segments[i].points) for i in ids])
        from_start = np.concatenate(
            [tree.segments[i].arc_length - tree.segments[i].arc_start for i in ids]
        )
        outside_disc = np.linalg.norm(points - disc, axis=1) > disc_radius
        kd = cKDTree(points)
        pairs = np.array(sorted(kd.query_pairs(r=2 * radii.max())))
        a, b = pairs[:, 0], pairs[:, 1]
        foreign = owner[a] != owner[b]
        parents = np.array([s.parent for s in tree.segments])
        related = (parents[owner[a]] == owner[b]) | (parents[owner[b]] == owner[a])
        # a branch overlaps its parent only where it leaves it
        near_origin = np.minimum(from_start[a], from_start[b]) < 3 * radii.max() + 0.04
        checked = foreign & ~(related & near_origin) & outside_disc[a] & outside_disc[b]
        gaps = np.linalg.norm(points[a] - points[b], axis=1) - radii[a] - radii[b]
        assert checked.sum() > 0
        assert gaps[checked].min() > 0, f"{['arteries', 'veins'][label]} touch"
    assert len(tree.crossings()) > 0, "arteries and veins should cross each other"


def _drive_density_range() -> tuple[float, float]:
    manual = DRIVE / "training" / "1st_manual"
    if not manual.is_dir():
        pytest.skip(f"../shared/data/DRIVE absent: {manual} not found, cannot measure density")
    densities = []
    for path in sorted(manual.glob("*_manual1.gif")):
        number = path.name.split("_")[0]
        vessel = np.asarray(Image.open(path)) > 0
        fov = np.asarray(Image.open(DRIVE / "training" / "mask" / f"{number}_training_mask.gif"))
        densities.append(vessel[fov > 0].mean())
    assert len(densities) == 20
    return min(densities), max(densities)


@pytest.mark.slow
def test_vessel_density_inside_fov_matches_drive_manual_masks() -> None:
    low, high = _drive_density_range()
    # the default size has about DRIVE's resolution (FOV diameter ~520 vs 540 px)
    config = PhantomConfig(n_frames=1)
    for seed in range(3):
        case = generate_case(seed, config)
        density = case.vessel[case.fov].mean()
        assert low <= density <= high, f"seed {seed}: {density:.3f} not in [{low:.3f}, {high:.3f}]"


@pytest.mark.slow
def test_phantom_set_is_byte_identical_for_a_seed_and_differs_across_seeds(
    tmp_path: Path,
) -> None:
    config = PhantomConfig(size=(128, 192), n_frames=2)
    first = write_phantom_set(tmp_path / "a", n=2, seed=5, config=config)
    write_phantom_set(tmp_path / "b", n=2, seed=5, config=config)
    other = write_phantom_set(tmp_path / "c", n=1, seed=6, config=config)
    assert [p.name for p in first] == ["phantom_000", "phantom_001"]
    root = tmp_path / "a"
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    assert len(files) > 10
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (first[0] / "fundus.png").read_bytes() != (first[1] / "fundus.png").read_bytes()
    assert (first[0] / "fundus.png").read_bytes() != (other[0] / "fundus.png").read_bytes()
    meta = json.loads((first[1] / "case.json").read_text())
    assert meta["patient_id"] == "PHANTOM-5-001"


def test_written_case_follows_the_raw_contract_and_truth_round_trips(
    case: PhantomCase, tmp_path: Path
) -> None:
    folder = write_case(case, tmp_path / "case", patient_id="P-1")
    meta = json.loads((folder / "case.json").read_text())
    assert meta["patient_id"] == "P-1" and meta["eye"] == case.eye
    assert meta["camera"] == "angioflow-phantom"
    assert [f["file"] for f in meta["fa_frames"]] == [f"fa/{k:03d}.png" for k in range(6)]
    assert [f["time_s"] for f in meta["fa_frames"]] == list(case.frame_times)
    assert np.array_equal(np.asarray(Image.open(folder / meta["fundus"])), case.fundus)
    for k, entry in enumerate(meta["fa_frames"]):
        assert np.array_equal(np.asarray(Image.open(folder / entry["file"])), case.fa_frames[k])
    av = read_av_mask(folder / "truth" / "av.png")  # class indices, angioflow's one encoding
    assert np.array_equal((av == 1) | (av == 3), case.av[..., 0])
    assert np.array_equal((av == 2) | (av == 3), case.av[..., 1])
    assert np.array_equal(read_av_mask(folder / "truth" / "av_preview.png"), av)
    assert np.array_equal(np.load(folder / "truth" / "calibre.npy"), case.calibre)
    transforms, fa_to_fundus = read_transforms(folder)
    assert np.array_equal(fa_to_fundus, case.fa_to_fundus)
    points = case.landmarks.frame_xy[3]
    assert np.array_equal(
        transforms[3].frame_to_reference(points),
        case.frame_transforms[3].frame_to_reference(points),
    )
    landmarks = json.loads((folder / "truth" / "landmarks.json").read_text())["landmarks"]
    assert len(landmarks) == len(case.landmarks.kinds)
    with pytest.raises(FileExistsError, match="already holds files"):
        write_case(case, folder, patient_id="P-1")


@pytest.mark.parametrize("eye", ["OD", "OS"])
def test_eye_sets_the_disc_side(eye: str) -> None:
    case = generate_case(3, PhantomConfig(size=(128, 192), n_frames=1, eye=eye))
    centre = (192 - 1) / 2
    assert case.eye == eye
    disc_right = case.disc_xy[0] > centre
    assert disc_right == (eye == "OD")
    assert (case.fovea_xy[0] < case.disc_xy[0]) == (eye == "OD")


@pytest.mark.slow
def test_seed_chooses_both_eyes_when_eye_is_none() -> None:
    eyes = {generate_case(s, PhantomConfig(size=(64, 96), n_frames=1)).eye for s in range(8)}
    assert eyes == {"OD", "OS"}


@pytest.mark.slow
def test_bad_frames_are_recorded_and_never_the_reference() -> None:
    config = PhantomConfig(size=(128, 192), n_frames=4, bad_frame_probability=1.0, fa_bit_depth=16)
    case = generate_case(4, config)
    assert case.frame_defects[0] is None
    assert all(d in ("blur", "blink", "saturated", "noise") for d in case.frame_defects[1:])
    assert all(f.dtype == np.uint16 for f in case.fa_frames)
    assert generate_case(4, SMALL).frame_defects == (None,) * SMALL.n_frames


def test_fa_frames_show_dye_filling_then_washout(case: PhantomCase) -> None:
    # arteries fill before veins; every vessel is bright against the background at its peak
    first_artery_bright = [
        case.fa_frames[k][case.fa_vessel & case.fa_fov].mean() for k in range(len(case.fa_frames))
    ]
    assert max(first_artery_bright) > 1.5 * case.fa_frames[0][case.fa_fov].mean()
    late = generate_case(11, PhantomConfig(size=(128, 192), n_frames=8))
    assert late.frame_phases[0] in ("choroidal", "arterial") and late.frame_phases[-1] == "late"


@pytest.mark.slow
def test_semi_synthetic_sequence_transforms_register_back(case: PhantomCase) -> None:
    image = case.fa_frames[-2]
    sequence = semi_synthetic_sequence(
        image, 3, n_frames=4, noise_sigma=0.0, illumination=0.0, gain_range=(1.0, 1.0)
    )
    assert np.array_equal(sequence.frames[0], image)
    assert all(f.dtype == image.dtype and f.shape == image.shape for f in sequence.frames)
    reference = white_tophat(image.astype(np.float32), disk(4))
    for frame, transform, valid in zip(
        sequence.frames[1:], sequence.transforms[1:], sequence.valid[1:], strict=True
    ):
        back = warp_to_reference(frame.astype(np.float32), transform, image.shape)
        seen = warp_to_reference(valid.astype(np.float32), transform, image.shape) > 0.99
        ridges = white_tophat(back, disk(4)) * seen
        assert _shift(reference * seen, ridges) < 0.5
        assert _shift(reference * seen, white_tophat(frame.astype(np.float32), disk(4))) > 1.0
    colour = semi_synthetic_sequence(case.fundus, 1, n_frames=2)
    assert colour.frames[1].shape == case.fundus.shape


@pytest.mark.slow
def test_semi_synthetic_sequence_from_a_real_ffa_frame_registers_back() -> None:
    phases = DRIVE.parent / "FFA" / "origin_data" / "01.phase_identification" / "venous_phase"
    if not phases.is_dir():
        pytest.skip(f"{phases} absent: a real FFA frame is needed for this test")
    image = np.asarray(Image.open(sorted(phases.glob("*.jpg"))[0]).convert("L"))
    sequence = semi_synthetic_sequence(
        image, 5, n_frames=3, noise_sigma=0.0, illumination=0.0, gain_range=(1.0, 1.0)
    )
    reference = white_tophat(image.astype(np.float32), disk(4))
    for frame, transform, valid in zip(
        sequence.frames[1:], sequence.transforms[1:], sequence.valid[1:], strict=True
    ):
        back = warp_to_reference(frame.astype(np.float32), transform, image.shape)
        seen = warp_to_reference(valid.astype(np.float32), transform, image.shape) > 0.99
        assert _shift(reference * seen, white_tophat(back, disk(4)) * seen) < 0.5
        assert _shift(reference * seen, white_tophat(frame.astype(np.float32), disk(4))) > 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": (10, 10)}, r"size\.0\n  Input should be greater than or equal to 64"),
        ({"fa_size": (64, 99999)}, r"fa_size\.1\n  Input should be less than or equal to 8192"),
        ({"size": (256.0, 384)}, r"size\.0\n  Input should be a valid integer"),
        ({"n_frames": 0}, r"n_frames\n  Input should be greater than or equal to 1"),
        ({"n_frames": True}, r"n_frames\n  Input should be a valid integer"),
        ({"eye": "left"}, r"eye\n  Input should be 'OD' or 'OS'"),
        (
            {"max_translation": 3.0},
            r"max_translation\n  Input should be less than or equal to 0\.25",
        ),
        ({"scale_range": (1.2, 0.9)}, "scale_range must be"),
        ({"bad_frame_probability": 1.5}, r"bad_frame_probability\n  Input should be less than"),
        ({"fa_bit_depth": 12}, r"fa_bit_depth\n  Input should be 8 or 16"),
        ({"n_frame": 3}, r"n_frame\n  Extra inputs are not permitted"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PhantomConfig(**kwargs)


def test_generation_and_writing_reject_bad_arguments(case: PhantomCase, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        generate_case(-1, SMALL)
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        generate_case(1.5, SMALL)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="PhantomConfig"):
        generate_case(1, {"size": (64, 64)})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="patient_id"):
        write_case(case, tmp_path / "x", patient_id=" ")
    with pytest.raises(ValueError, match="n must be a positive int"):
        write_phantom_set(tmp_path / "y", n=0, seed=1)
    with pytest.raises(ValueError, match=r"image must be \(H, W\)"):
        semi_synthetic_sequence(np.zeros((4, 32, 32, 1)), 0)
    with pytest.raises(ValueError, match="at least 16x16"):
        semi_synthetic_sequence(np.zeros((8, 8)), 0)
    with pytest.raises(ValueError, match="NaN"):
        semi_synthetic_sequence(np.full((32, 32), np.nan), 0)
    with pytest.raises(ValueError, match="dtype"):
        semi_synthetic_sequence(np.zeros((32, 32), np.int64), 0)
    with pytest.raises(ValueError, match="frame must be"):
        warp_to_reference(np.zeros((0, 5)), case.frame_transforms[1], (5, 5))
