"""Vessel-pixel graphs: edges, coarsening, segments and voting, on phantom vessel truth."""

from __future__ import annotations

import numpy as np
import pytest
from angioflow.pipeline.metrics import av_scores
from angioflow.pipeline.phantom import PhantomConfig, generate_case
from angioflow.pipeline.vessel_graph import (
    coarsen,
    pixel_graph,
    segment_labels,
    vote_along_segments,
)
from scipy.spatial import cKDTree


@pytest.fixture(scope="module")
def phantom_vessels() -> np.ndarray:
    return generate_case(41, PhantomConfig(size=(256, 384), n_frames=2)).vessel


@pytest.mark.slow
def test_edges_are_exactly_the_pixel_pairs_within_the_window(phantom_vessels: np.ndarray) -> None:
    graph = pixel_graph(phantom_vessels, window=5)
    tree = cKDTree(graph.coords)
    # Chebyshev distance <= 2 is the 5x5 window
    expected = tree.query_pairs(r=2, p=np.inf, output_type="ndarray")
    got = graph.edge_index[:, graph.edge_index[0] < graph.edge_index[1]].T
    assert graph.num_nodes == int(phantom_vessels.sum())
    assert {tuple(p) for p in got} == {tuple(sorted(p)) for p in expected}
    # both directions, no self-loops
    assert graph.edge_index.shape[1] == 2 * len(expected)
    assert not (graph.edge_index[0] == graph.edge_index[1]).any()


def test_no_edge_wraps_around_the_image_border() -> None:
    mask = np.zeros((6, 10), bool)
    mask[2, 0] = mask[2, 9] = True  # same row, opposite borders
    mask[0, 4] = mask[5, 4] = True  # same column, opposite borders
    assert pixel_graph(mask, window=5).edge_index.shape[1] == 0


def test_coarse_levels_join_cells_whose_pixels_touch(phantom_vessels: np.ndarray) -> None:
    graph = pixel_graph(phantom_vessels, window=3)
    level = coarsen(graph.coords, graph.edge_index, cell=4)
    cells = graph.coords // 4
    # every node of a coarse node lies in one cell, and distinct coarse nodes are distinct cells
    member_cells = {}
    for node, cluster in enumerate(level.cluster):
        member_cells.setdefault(int(cluster), set()).add(tuple(cells[node]))
    assert all(len(c) == 1 for c in member_cells.values())
    assert len(member_cells) == level.num_nodes
    # a coarse edge exists exactly where a pixel edge crosses two cells
    crossing = level.cluster[graph.edge_index]
    crossing = {tuple(e) for e in crossing.T if e[0] != e[1]}
    assert {tuple(e) for e in level.edge_index.T} == crossing


def test_junctions_split_a_vessel_tree_into_segments() -> None:
    mask = np.zeros((40, 41), bool)
    mask[20, 2:39] = True  # horizontal vessel ...
    mask[21:38, 20] = True  # ... with a branch going down from its middle
    segments = segment_labels(mask)
    assert set(np.unique(segments[mask])) == {1, 2, 3}
    assert (segments[~mask] == 0).all()
    assert segments[20, 5] != segments[20, 35] != segments[35, 20]


def test_voting_makes_each_segment_consistent() -> None:
    mask = np.zeros((30, 30), bool)
    mask[10, 2:28] = True
    probability = np.where(mask, 0.9, 0.0).astype(np.float32)
    probability[10, 5] = 0.2  # one flipped pixel in an artery
    voted = vote_along_segments(probability, segment_labels(mask))
    assert (voted[mask] >= 0.5).all()
    assert np.ptp(voted[mask]) < 1e-6


def test_av_scores_count_only_truth_artery_and_vein_pixels() -> None:
    truth = np.array([[1, 1, 1, 2, 2, 3, 0, 0]])
    predicted = np.array([[1, 1, 2, 2, 0, 1, 2, 1]])
    scores = av_scores(predicted, truth)
    assert scores.pixels == 5
    assert scores.accuracy == pytest.approx(3 / 5)
    assert scores.artery_sensitivity == pytest.approx(2 / 3)
    assert scores.vein_sensitivity == pytest.approx(1 / 2)
    assert scores.unlabelled == pytest.approx(1 / 5)
