"""Whole-tree statistics of A/V masks, soft masks enlarged with their calibre, and the
memorisation guard: on phantom A/V truth and, where present, the real RITE masks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from angioflow.pipeline.datasets import load_dataset
from angioflow.pipeline.mask_structure import bridge_gaps, enlarge_soft_av, resize_av_labels
from angioflow.pipeline.phantom import PhantomConfig, generate_case
from angioflow.pipeline.tree_stats import best_overlap, compare_trees, fov_disc, tree_stats
from support import SHARED_DATA

SIZE = 512


@pytest.fixture(scope="module")
def phantom_trees() -> list[np.ndarray]:
    """Six phantom A/V truths cropped to their FOV, at 512 px: (2, 512, 512) bool each."""
    masks = []
    for seed in range(6):
        case = generate_case(5100 + seed, PhantomConfig(size=(576, 768), n_frames=1))
        masks.append(resize_av_labels(case.av_labels, case.fov, SIZE, coverage=0.5) > 0)
    return masks


def test_phantom_truths_are_whole_trees_without_loops(phantom_trees: list[np.ndarray]) -> None:
    fov = fov_disc(SIZE)
    stats = [tree_stats(m, fov) for m in phantom_trees]
    assert all(s.is_tree for s in stats), [(s.artery_share, s.vein_share) for s in stats]
    assert np.median([s.loops for s in stats]) <= 2
    assert all(0.02 < s.density < 0.25 for s in stats)


def test_a_broken_tree_counts_its_pieces_and_a_mesh_its_loops(
    phantom_trees: list[np.ndarray],
) -> None:
    fov = fov_disc(SIZE)
    tree = phantom_trees[0]
    broken = tree.copy()
    broken[:, ::24, :] = False  # cut every vessel along 21 rows
    broken[:, :, ::24] = False
    mesh = np.zeros_like(tree)
    mesh[0, ::32, :] = mesh[0, :, ::32] = True  # an artery grid
    mesh[1, 16::32, :] = True
    whole, pieces, grid = (tree_stats(m, fov) for m in (tree, broken, mesh))
    assert pieces.artery_components >= 5 * whole.artery_components
    assert not pieces.is_tree
    assert grid.loops > 100 and whole.loops < 10
    ratios = compare_trees([whole], [pieces])
    assert ratios["artery_components_ratio"] >= 5 and ratios["tree_rate"] == 0


def test_gaps_within_reach_are_bridged_and_no_loop_is_closed(
    phantom_trees: list[np.ndarray],
) -> None:
    """Phantom trees cut into 20-30 pieces a class by two-pixel gaps every 24 rows: bridging
    gaps up to 4 px (from each piece's skeleton ends, so a thick vessel's gap counts from its
    centre line) leaves at most a third of the pieces, up to 8 px at most one more than the
    uncut tree; no bridge closes a loop (cutting opened them all); bridging only adds a few
    pixels."""
    fov = fov_disc(SIZE)
    for tree in phantom_trees[:3]:
        cut = tree.copy()
        for row in range(12, SIZE, 24):
            cut[:, row : row + 2] = False
        whole, broken = tree_stats(tree, fov), tree_stats(cut, fov)
        near = tree_stats(np.stack([bridge_gaps(c, 4.0) for c in cut]), fov)
        far = tree_stats(np.stack([bridge_gaps(c, 8.0) for c in cut]), fov)
        assert broken.artery_components >= 10 * whole.artery_components and broken.loops == 0
        assert 3 * near.artery_components <= broken.artery_components
        assert 3 * near.vein_components <= broken.vein_components
        assert far.artery_components <= whole.artery_components + 1
        assert far.vein_components <= whole.vein_components + 1
        assert near.loops == far.loops == 0
        bridged = bridge_gaps(cut[0], 4.0)
        assert not (cut[0] & ~bridged).any() and (bridged & ~cut[0]).sum() < 0.05 * cut[0].sum()


def test_soft_masks_enlarged_with_calibre_keep_thin_vessels(
    phantom_trees: list[np.ndarray],
) -> None:
    """A 1024-px truth shrunk to soft 256-px shares and enlarged back keeps density, calibre,
    the thin vessels and whole trees; bilinear enlargement of the same shares kept at 0.5
    loses a fifth of the vessel area (the vessels under half a pixel wide)."""
    fov = fov_disc(1024)
    originals, from_mass, from_bilinear = [], [], []
    for seed in range(3):
        case = generate_case(5200 + seed, PhantomConfig(size=(1152, 1536), n_frames=1))
        big = resize_av_labels(case.av_labels, case.fov, 1024, coverage=0.5) > 0
        soft = resize_av_labels(case.av_labels, case.fov, 256, coverage=None)
        assert 0 < soft.max() <= 1 and ((soft > 0) & (soft < 1)).mean() > 0.01
        originals.append(tree_stats(big, fov))
        from_mass.append(tree_stats(enlarge_soft_av(soft, 1024), fov))
        bilinear = np.stack([cv2.resize(c, (1024, 1024)) >= 0.5 for c in soft])
        from_bilinear.append(tree_stats(bilinear, fov))
    mass = compare_trees(originals, from_mass)
    naive = compare_trees(originals, from_bilinear)
    assert 0.85 <= mass["density_ratio"] <= 1.2, mass
    assert 0.8 <= mass["calibre_ratio"] <= 1.25, mass
    assert 0.75 <= mass["thin_share_ratio"] <= 1.25, mass
    assert mass["artery_components_ratio"] <= 1.5 and mass["tree_rate_ratio"] >= 0.8, mass
    assert naive["density_ratio"] < 0.85, naive


def test_the_memorisation_guard_finds_copies_in_any_flip(
    phantom_trees: list[np.ndarray],
) -> None:
    vessels = np.stack([m.any(axis=0) for m in phantom_trees])
    training, unseen = vessels[:4], vessels[4:]
    copies = np.stack([training[0][::-1], training[1][:, ::-1], training[2][::-1, ::-1]])
    assert best_overlap(copies, training) == pytest.approx(1.0)
    assert best_overlap(unseen, training).max() < 0.5
    with pytest.raises(ValueError, match="one size"):
        best_overlap(unseen[:, :256, :256], training)


@pytest.mark.skipif(
    not (SHARED_DATA / "RITE").is_dir(), reason=f"RITE is not in {SHARED_DATA} (shared data)"
)
def test_rite_test_masks_against_training_masks_show_the_natural_spread() -> None:
    """The RITE test masks, which no generator sees, lie within the acceptance ratios of the
    training masks: the statistics measure trees, not one dataset's quirks."""
    fov = fov_disc(SIZE)

    def stats(split: str) -> list:
        records = load_dataset(SHARED_DATA, "rite", split)
        return [
            tree_stats(resize_av_labels(r.av, r.fov, SIZE, coverage=0.5) > 0, fov) for r in records
        ]

    ratios = compare_trees(stats("training"), stats("test"))
    assert 0.85 <= ratios["density_ratio"] <= 1.3, ratios
    assert ratios["artery_components_ratio"] <= 2 and ratios["vein_components_ratio"] <= 2
    assert 0.8 <= ratios["calibre_ratio"] <= 1.25, ratios
    assert 0.75 <= ratios["thin_share_ratio"] <= 1.25, ratios
    assert ratios["near_empty"] == 0
    assert ratios["real_tree_rate"] > 0.2
