"""Figure: one phantom exam through stages 2-7, as `angioflow curate` and `inspect` see it.

Usage: .venv/bin/python benchmarks/figure_curation.py [--out PNG] [--seed 7000]

Panels: the reference FA frame; a checkerboard of the reference vessel map and the aggregate
(vessels run straight across tile borders when frames are registered); the FA aggregate (mean)
in magenta over the fundus photo's own vessel map in green; the baseline mask against the
phantom truth (white: both, red: mask only, blue: truth only).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from angioflow.models.vessel import VesselSegmenter
from angioflow.pipeline.curation import (
    CurationSettings,
    aggregate_maps,
    align_to_fundus,
    baseline_mask,
    register_sequence,
)
from angioflow.pipeline.phantom import PhantomConfig, generate_case
from angioflow.pipeline.preprocess import fov_mask
from angioflow.pipeline.qc import checkerboard, overlay
from figures import plt, save_figure, show_panels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/curation/stages.png"))
    parser.add_argument("--seed", type=int, default=7000)
    args = parser.parse_args()
    config = PhantomConfig(size=(512, 768), n_frames=8, max_translation=0.02, max_rotation_deg=8.0)
    case = generate_case(args.seed, config)
    segmenter = VesselSegmenter.load()
    settings = CurationSettings()
    apertures = [fov_mask(f, modality="fa") for f in case.fa_frames]
    maps = [
        segmenter.segment(f, modality="fa", fov=a, flips=False)
        for f, a in zip(case.fa_frames, apertures, strict=True)
    ]
    registration = register_sequence(maps, apertures, settings)
    aggregate = aggregate_maps(maps, apertures, registration)
    fov = fov_mask(case.fundus, modality="fundus")
    fundus_map = segmenter.segment(case.fundus, modality="fundus", fov=fov)
    alignment = align_to_fundus(fundus_map, fov, aggregate["mean"], settings)
    coverage = alignment.coverage(aggregate["count"], fov)
    fa_on_fundus = alignment.warp(aggregate["mean"], fov.shape) * coverage
    mask = baseline_mask(fa_on_fundus, coverage, fundus_map, fov, settings)
    truth = case.vessel & fov
    comparison = np.stack([mask, mask & truth, truth], axis=-1).astype(np.uint8) * 255
    reference = registration.reference
    dropped = sum(not f.kept for f in registration.frames)
    panels = [
        (
            case.fa_frames[reference],
            f"reference FA frame {reference} ({case.frame_phases[reference]})",
        ),
        (checkerboard(maps[reference], aggregate["mean"]), "checkerboard: reference / aggregate"),
        (overlay(fundus_map, fa_on_fundus), "fundus map (green), aligned FA aggregate (magenta)"),
        (comparison, f"baseline mask vs truth ({dropped} frame(s) dropped)"),
    ]
    figure, axes = plt.subplots(2, 2, figsize=(12, 8.4))
    show_panels(axes, panels, fontsize=10)
    save_figure(figure, args.out, dpi=80)


if __name__ == "__main__":
    main()
