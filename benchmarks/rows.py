"""What docs/benchmarks.md shows: one :class:`Row` per measured quantity, its values read from
a benchmark's result file by dotted path (:class:`Fields`) and formatted for the table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

_MISSING = object()


def _find(value: object, path: str) -> object:
    """``value`` at ``path``, its keys joined by dots, the longest key first; or _MISSING."""
    if not isinstance(value, dict):
        return _MISSING
    if path in value:
        return value[path]
    dots = [i for i, character in enumerate(path) if character == "."]
    for dot in reversed(dots):
        if path[:dot] in value:
            found = _find(value[path[:dot]], path[dot + 1 :])
            if found is not _MISSING:
                return found
    return _MISSING


class RenderError(Exception):
    """A result file the page cannot be built from; the message is one line."""


class Fields:
    """A result's values by dotted path (``"drive_test.auc"``; a key may hold dots itself, as
    ``"weighted_terminal_mean_undone_0.15"``); a missing one is a :class:`RenderError` naming
    the file and the path."""

    def __init__(self, source: str, values: dict) -> None:
        self.source, self.values = source, values

    def __getitem__(self, path: str):  # noqa: ANN204 - a JSON value of any type
        found = _find(self.values, path)
        if found is _MISSING:
            raise RenderError(f"{self.source}: no field {path!r}")
        return found

    def points(self, better: str, worse: str) -> str:
        """The difference of two fractions in percentage points, signed (``+14.6``)."""
        return f"{100 * (self[better] - self[worse]):+.1f}"


@dataclass(frozen=True)
class Row:
    bench: str  # the result file's name, docs/benchmarks/results/<bench>.json
    what: str
    measured: Callable[[Fields], str]
    target: str


def _gb(megabytes: float) -> str:
    return f"{megabytes / 1024:.1f} GB"


def _fine_recall(f: Fields, key: str) -> str:
    return (
        f"Dice **{f[key + '.dice']:.3f}**; recall of vessels of calibre <= "
        f"{f[key + '.fine_calibre_px']:g} px **{f[key + '.fine_recall']:.3f}** vs "
        f"{f[key + '.fine_recall_best_single_frame']:.3f} best single FA frame "
        f"(**{f.points(key + '.fine_recall', key + '.fine_recall_best_single_frame')}** points) "
        f"and {f[key + '.fine_recall_fundus_own']:.3f} fundus photo's own "
        f"(**{f.points(key + '.fine_recall', key + '.fine_recall_fundus_own')}**)"
    )


def _av(f: Fields, key: str) -> str:
    shipped = f"{key}.graph_with_segment_voting"
    return (
        f"accuracy **{f[shipped + '.accuracy']:.3f}** (artery sensitivity "
        f"{f[shipped + '.artery_sensitivity']:.3f}, vein {f[shipped + '.vein_sensitivity']:.3f}); "
        + _av_variants(f, key)
    )


def _av_variants(f: Fields, key: str) -> str:
    return (
        f"without mirror averaging {f[key + '.graph_with_segment_voting_no_mirror.accuracy']:.3f}"
        f"; without segment voting {f[key + '.graph.accuracy']:.3f}; CNN head alone "
        f"{f[key + '.cnn_head_only.accuracy']:.3f}"
    )


def _ddpm_ablation(f: Fields) -> str:
    def arm(key: str) -> str:
        return (
            f"{100 * f[key + '.near_empty.rate']:.1f} % / "
            f"{f[key + '.density.generated_mean']:.3f} / "
            f"{f[key + '.combined.structure_distance']:.2f}"
        )

    # Undoing u of the tilt gives the samples of a model trained with c - u.
    partial = [f"weighted_terminal_mean_undone_{u}" for u in ("0.15", "0.25", "0.35")]
    c = f["c"]
    return (
        f"L_simple {arm('simple_terminal_mean')}; weighted (c = {c:g}) "
        f"{arm('weighted_terminal_mean')} (real density "
        f"{f['simple.density.real_mean']:.3f}); as if trained with c = "
        f"{c - 0.15:g} / {c - 0.25:g} / {c - 0.35:g} (tilt partly undone): "
        + " / ".join(f"{100 * f[k + '.near_empty.rate']:.1f}" for k in partial)
        + " % near-empty, distance "
        + " / ".join(f"{f[k + '.combined.structure_distance']:.2f}" for k in partial)
        + f"; without the terminal mean: near-empty {100 * f['simple.near_empty.rate']:.1f} / "
        f"{100 * f['weighted.near_empty.rate']:.1f} %, densities "
        f"{f['simple.density.generated_mean']:.3f} / {f['weighted.density.generated_mean']:.3f}"
    )


def _trees(f: Fields, key: str) -> str:
    """Issue 32's ratios of one mask set to the real training masks."""
    ratios = {
        name: f[f"{key}.{name}_ratio"]
        for name in ("density", "artery_components", "vein_components", "calibre", "thin_share")
    }
    return (
        "density {density:.2f}, components {artery_components:.2f} / {vein_components:.2f}, "
        "calibre {calibre:.2f}, thin share {thin_share:.2f}, ".format(**ratios)
        + f"trees {100 * f[key + '.tree_rate']:.0f} % (real {100 * f[key + '.real_tree_rate']:.0f}"
        f" %), loops {f[key + '.generated_loops']:.1f} (real {f[key + '.real_loops']:.1f}), "
        f"near-empty {100 * f[key + '.near_empty']:.1f} %"
    )


def _masks(f: Fields) -> str:
    return (
        f"**{f['image_size']} px cascade**, {f['samples']} masks: "
        + _trees(f, "generated")
        + f"; best overlap with a training mask median {f['best_overlap.median']:.2f} (max "
        f"{f['best_overlap.max']:.2f}); {f['seconds_per_mask.sampling']:.2f} s sampling + "
        f"{f['seconds_per_mask.enlargement_to_1024']:.2f} s to 1024 px. Natural spread "
        "(RITE test): "
        + _trees(f, "natural_spread")
        + "; ceiling (training masks as soft 256 px, enlarged): "
        + _trees(f, "ceiling_soft_256")
    )


def _samplers(f: Fields) -> str:
    plain, anchored = "samplers", "samplers_terminal_mean"
    return (
        f"DDIM **{f[plain + '.speedup_vs_ddpm.ddim']:.1f}x**, SDE-DPM-Solver++ "
        f"**{f[plain + '.speedup_vs_ddpm.dpm']:.1f}x** faster; DPM-Solver statistics within "
        f"**{100 * f[plain + '.largest_difference_vs_ddpm_1000.dpm']:.0f} %** of DDPM's (with "
        f"the terminal mean, the default: {f[anchored + '.speedup_vs_ddpm.dpm']:.1f}x, within "
        f"{100 * f[anchored + '.largest_difference_vs_ddpm_1000.dpm']:.0f} %); DDIM: density "
        f"{100 * f[plain + '.vs_ddpm_1000.ddim.density']:.1f} % off, artery components "
        f"{100 * f[plain + '.vs_ddpm_1000.ddim.artery_components']:.0f} % off"
    )


def _downstream(f: Fields) -> str:
    arms = ("real_only", "real_plus_20", "real_plus_40", "synthetic_40")
    return (
        "AUC "
        + " / ".join(f"{f[arm + '.auc']:.4f}" for arm in arms)
        + "; accuracy "
        + " / ".join(f"{f[arm + '.accuracy']:.4f}" for arm in arms)
        + "; F1 "
        + " / ".join(f"{f[arm + '.f1']:.3f}" for arm in arms)
        + f" (± over seeds <= {f['largest_seed_spread']:.2f}); "
        f"**{f['minutes']:.1f} min** wall, peak RSS {f['peak_rss_gb']:.1f} GB"
    )


def _photos(f: Fields) -> str:
    arms = []
    for name in f["arms"]:
        arm = f"arms.{name}"
        label = name if name == "phantom" else f"{name} ({f[arm + '.pix2pixhd_size']} px)"
        arms.append(
            f"{label}: Dice **{f[arm + '.recovery.dice_mean']:.3f}**, Fréchet "
            f"{f[arm + '.realism.frechet_distance']:.1f}, precision / recall "
            f"{f[arm + '.realism.precision']:.2f} / {f[arm + '.realism.recall']:.2f}, two-sample "
            f"AUC **{f[arm + '.two_sample.auc']:.2f}**, {f[arm + '.seconds_per_pair']:.1f} s a pair"
        )
    return (
        "; ".join(arms)
        + f". Real held-out photos: Fréchet {f['real.held_out_as_a_set.frechet_distance']:.1f} "
        f"(real halves {f['real.held_out_as_a_set.real_halves_frechet_distance']:.1f}), "
        f"precision / recall {f['real.held_out_as_a_set.precision']:.2f} / "
        f"{f['real.held_out_as_a_set.recall']:.2f}; real vs real two-sample AUC "
        f"{f['real.training_vs_held_out_two_sample.auc']:.2f}"
    )


ROWS: tuple[Row, ...] = (
    Row(
        "vessel",
        "DRIVE test (20 images, 1st_manual, FOV), shipped weights",
        lambda f: (
            f"AUC **{f['drive_test.auc']:.4f}**, accuracy **{f['drive_test.accuracy']:.4f}**, "
            f"sensitivity {f['drive_test.sensitivity']:.3f}, specificity "
            f"{f['drive_test.specificity']:.3f}, F1 {f['drive_test.f1']:.3f}, clDice "
            f"{f['drive_test.cl_dice']:.3f}"
        ),
        "AUC >= 0.975, accuracy >= 0.955",
    ),
    Row(
        "vessel",
        "LES-AV test (11 images), same weights",
        lambda f: (
            f"AUC {f['les_av_test.auc']:.4f}, accuracy {f['les_av_test.accuracy']:.4f}, "
            f"F1 {f['les_av_test.f1']:.3f}"
        ),
        "reported",
    ),
    Row(
        "vessel",
        "phantom FA venous frames (unseen seeds 1000+)",
        lambda f: (
            f"F1 **{f['phantom_fa.f1']:.3f}**, clDice {f['phantom_fa.cl_dice']:.3f}, "
            f"AUC {f['phantom_fa.auc']:.3f} ({f['phantom_fa.n']} frames)"
        ),
        "F1 >= 0.85",
    ),
    Row(
        "vessel",
        "phantom fundus photos 584x876 (unseen seeds 9100+)",
        lambda f: (
            f"F1 {f['phantom_fundus.f1']:.3f}, sensitivity {f['phantom_fundus.sensitivity']:.3f}, "
            f"AUC {f['phantom_fundus.auc']:.3f} ({f['phantom_fundus.n']} photos; calibrated to "
            f"match DRIVE's F1, {f['drive_test.f1']:.3f})"
        ),
        "reported",
    ),
    Row(
        "vessel",
        "segment one 565x584 photo / one 3504x2336 HRF photo",
        lambda f: (
            f"**{f['seconds.drive_565x584_median']:.2f} s / "
            f"{f['seconds.hrf_3504x2336_median']:.2f} s**, peak RSS {_gb(f['peak_rss_mb'])}"
        ),
        "< 1 s / < 20 s, < 4 GB",
    ),
    Row(
        "second_observer",
        "DRIVE test 2nd observer vs 1st manual (20 images, FOV)",
        lambda f: (
            f"accuracy **{f['accuracy']:.4f}** (sensitivity {f['sensitivity']:.3f}, "
            f"specificity {f['specificity']:.3f})"
        ),
        "published 0.9473",
    ),
    Row(
        "phantom",
        "phantom exam 1024x1536, 10 frames, one core",
        lambda f: f"{f['median_s']:.1f} s (median of {f['repeats']} exams)",
        "< 10 s",
    ),
    Row(
        "ingest",
        "ingest 8 phantom exams 1024x1536 x 10 frames",
        lambda f: (
            f"{f['per_case_s']:.2f} s per exam (+{f['prefect_server_start_s']:.0f} s Prefect "
            f"server start), re-run of unchanged exams {f['rerun_s']:.1f} s; store "
            f"{f['store_mb_per_case']:.1f} MB per exam vs {f['raw_png_mb_per_case']:.1f} MB of PNGs"
        ),
        "",
    ),
    Row(
        "curation",
        "FA frame registration, 3 phantom exams 1024x1536 x 10 frames, motion up to 30 px / "
        "8 degrees (unseen seeds 7000+)",
        lambda f: (
            f"median TRE **{f['tre_px.rigid']:.2f} px** rigid, **{f['tre_px.nonrigid_bspline']:.2f}"
            f" px** non-rigid (B-spline); {len(f['frames.dropped_reasons'])} of "
            f"{f['cases'] * f['frames_per_case']} frames dropped"
        ),
        "<= 1.0 / <= 0.5 px",
    ),
    Row(
        "curation",
        "FA-to-fundus alignment, same exams",
        lambda f: f"median TRE **{f['tre_px.fa_to_fundus']:.2f} px**",
        "<= 2 px",
    ),
    Row(
        "curation",
        "non-rigid step vs the reference configuration (1 level, 8x8 B-spline, correlation, "
        "L-BFGS-B 30 iterations, every pixel), same frames and rigid start",
        lambda f: (
            f"TRE {f['reference_configuration.ours_median_tre_px_same_frames']:.2f} px vs "
            f"{f['reference_configuration.median_tre_px']:.2f} px; "
            f"{f['reference_configuration.ours_seconds']:.1f} s vs "
            f"{f['reference_configuration.seconds']:.1f} s: "
            f"**{f['reference_configuration.speedup']:.1f}x faster**"
        ),
        ">= 5x faster at equal or better TRE",
    ),
    Row(
        "curation",
        "baseline vessel mask vs phantom truth, same exams (1024x1536)",
        lambda f: _fine_recall(f, "mask"),
        "Dice >= 0.85",
    ),
    Row(
        "curation",
        "baseline vessel mask vs phantom truth, 3 exams at DRIVE-like 584x876 (seeds 7100+)",
        lambda f: _fine_recall(f, "mask_drive_like"),
        "Dice >= 0.85; +10 points over both",
    ),
    Row(
        "curation",
        "semi-synthetic sequences from 4 real FFA frames (6 frames each)",
        lambda f: (
            f"median TRE {f['semi_synthetic_ffa.median_tre_px.rigid']:.2f} px rigid, "
            f"**{f['semi_synthetic_ffa.median_tre_px.nonrigid']:.2f} px** non-rigid"
        ),
        "<= 1.5 px",
    ),
    Row(
        "curation",
        "one 10-frame 1024x1536 exam through stages 2-7",
        lambda f: (
            f"**{f['seconds.stages_2_7_median']:.1f} s** "
            f"({f['seconds.of_which_segmentation_median']:.1f} s of it vessel maps), peak RSS "
            f"{_gb(f['peak_rss_mb'])} (whole benchmark process)"
        ),
        "< 60 s, < 3 GB",
    ),
    Row(
        "demo",
        "`angioflow demo`: 3 phantom exams 384x576 x 5 frames, every stage to the HTML report",
        lambda f: f"**{f['seconds']:.0f} s**, peak RSS {f['peak_rss_gb']:.1f} GB",
        "< 10 min",
    ),
    Row(
        "ddpm",
        "mask DDPM ablation at 64x64, 8000 CPU steps each, 128 DDIM samples; terminal mean "
        "unless said: near-empty rate / mean density / structure distance",
        _ddpm_ablation,
        "weighted: fewer near-empty, closer statistics",
    ),
    Row(
        "ddpm",
        "50-step samplers vs 1000-step DDPM, 64 masks, 8000-step weighted model",
        _samplers,
        ">= 15x, within 10 %",
    ),
    Row(
        "edsr",
        "EDSR x4 (shipped CPU weights) vs bicubic, held-out DRIVE test (20) / LES-AV test (11) "
        "photos, PSNR inside the FOV",
        lambda f: (
            f"{f['drive.edsr_psnr_db']:.2f} vs {f['drive.bicubic_psnr_db']:.2f} dB "
            f"(**{f['drive.gain_db']:+.2f}**) / {f['les-av.edsr_psnr_db']:.2f} vs "
            f"{f['les-av.bicubic_psnr_db']:.2f} dB ({f['les-av.gain_db']:+.2f}); "
            f"{f['seconds_per_photo']:.2f} s per photo (2 threads)"
        ),
        ">= +1.5 dB",
    ),
    Row(
        "edsr_selection",
        "EDSR global skip, chosen on validation photos held out of training (last 4 DRIVE, "
        "last 2 LES-AV training photos), same seed, 3000 steps each",
        lambda f: (
            f"DRIVE {f['bicubic_skip.drive.gain_db']:+.2f} dB with the bicubic skip vs "
            f"{f['mean_skip.drive.gain_db']:+.2f} with the paper's (mean colour); LES-AV "
            f"{f['bicubic_skip.les-av.gain_db']:+.2f} vs {f['mean_skip.les-av.gain_db']:+.2f}"
        ),
        "-",
    ),
    Row(
        "generation",
        "synthetic samples from the shipped generators (1024x1024; pix2pixHD 256 px): Dice of "
        "the vessel CNN on each generated photo vs its generated vessel mask",
        lambda f: (
            f"**{f['vessel_recovery_dice_mean']:.3f}** over {f['samples']} samples (median "
            f"{f['vessel_recovery_dice_median']:.3f}, AUC {f['vessel_recovery_auc_mean']:.3f}); "
            f"{f['seconds_per_sample']:.2f} s per sample. Photos drawn from the 20 RITE test "
            f"masks: **{f['rite_test_masks.generated_photos.dice_mean']:.3f}**; real RITE test "
            f"photos shrunk to 256 / 512 px and enlarged by EDSR: "
            f"{f['rite_test_masks.real_photos_at_256px.dice_mean']:.3f} / "
            f"{f['rite_test_masks.real_photos_at_512px.dice_mean']:.3f}"
        ),
        "goal >= 0.7",
    ),
    Row(
        "photos",
        "synthetic photos for the same cascade masks (1024 px, EDSR x4) per pix2pixHD, and the "
        "phantom's rule-based photos, vs real photos: vessel-CNN Fréchet distance and "
        "precision/recall against RITE + LES-AV training photos; classifier "
        "two-sample test (5-fold CNN) against held-out DRIVE + LES-AV test photos (issue 33)",
        _photos,
        "Dice >= 0.80, Fréchet <= 3x real halves, precision and recall >= 0.3, two-sample AUC "
        "<= 0.70, <= 10 s a pair",
    ),
    Row(
        "synthetic_report",
        "64 synthetic samples (1024x1024) of the shipped generators vs 31 real RITE + LES-AV "
        "training photos",
        lambda f: (
            f"vessel recovery Dice **{f['recovery_dice']:.3f}** (AUC {f['recovery_auc']:.3f}); "
            f"structure distance {f['structure_distance']:.2f} (density "
            f"{f['density.generated']:.3f} vs {f['density.real']:.3f}, "
            f"{f['artery_components.generated']:.1f} vs {f['artery_components.real']:.1f} artery "
            f"components, calibre {f['calibre_px.generated']:.1f} vs {f['calibre_px.real']:.1f}"
            f" px); vessel-CNN Fréchet distance {f['frechet']:.1f} (real half vs half: "
            f"{f['frechet_real_halves']:.1f}), KID {f['kid']:.3f}, precision "
            f"{f['precision']:g}, recall {f['recall']:g}; generate {f['generate_seconds']:.0f} s, "
            f"report {f['report_seconds']:.0f} s"
        ),
        "reported",
    ),
    Row(
        "masks",
        "A/V masks of the shipped cascade (64 px layout, 256 px up-sampler, DPM-Solver++ 20 "
        "steps each, enlarged to 1024 px with calibre) as whole trees against the 55 real "
        "training masks (RITE, LES-AV, HRF-AV): ratios of medians (issue 32)",
        _masks,
        "density 0.85-1.20, components <= 2, calibre 0.80-1.25, thin 0.75-1.25, trees >= 0.8x "
        "real, near-empty <= 1 %, overlap median < 0.5, <= 3 s a mask",
    ),
    Row(
        "mask_loss",
        "the paper's loss ablation at 256 px: the cascade's up-sampler trained with the "
        "vessel-weighted loss (c = 0.5) and with L_simple, same recipe, seed and budget, "
        "sampled from the same layouts",
        lambda f: (
            f"{f['samples']} masks each; weighted: "
            + _trees(f, "weighted")
            + f", overlap {f['weighted.best_overlap.median']:.2f}; L_simple: "
            + _trees(f, "simple")
            + f", overlap {f['simple.best_overlap.median']:.2f}"
        ),
        "reported whatever the outcome",
    ),
    Row(
        "downstream",
        "downstream: vessel CNN (300 steps, 2 seeds) trained on DRIVE training only / + 20 / "
        "+ 40 synthetic photos from the shipped generators / 40 synthetic only, scored on DRIVE "
        "test (20)",
        _downstream,
        "runs in < 30 min; outcome reported as it is",
    ),
    Row(
        "review",
        "open a 1024x1536 case (10 FA frames) in the review app, napari already imported",
        lambda f: (
            f"**{f['cold_open_s']:.1f} s** cold ({f['of_which_new_napari_window_s']:.1f} s new "
            f"napari window + {f['open_in_drawn_window_s']:.1f} s case: read, register frames "
            f"onto the photo, 8 layers, widget, drawn); next case {f['next_case_s']:.2f} s; "
            f"napari alone with the same arrays {f['reference_napari_alone.open_s']:.2f} s"
        ),
        "< 5 s",
    ),
    Row(
        "review",
        "painting on it: a stroke of 200 real Qt mouse-move events on the canvas, each "
        "processed and drawn before the next (software OpenGL, Xvfb)",
        lambda f: (
            f"**{f['paint_per_mouse_move.brush_3px.median_ms']:.0f} ms** per move median, p95 "
            f"{f['paint_per_mouse_move.brush_3px.p95_ms']:.0f} ms (brush 3 px; 15 px: "
            f"{f['paint_per_mouse_move.brush_15px.median_ms']:.0f} / "
            f"{f['paint_per_mouse_move.brush_15px.p95_ms']:.0f} ms); napari alone "
            f"{f['reference_napari_alone.paint_brush_3px.median_ms']:.0f} / "
            f"{f['reference_napari_alone.paint_brush_3px.p95_ms']:.0f} ms; autosave "
            f"{f['autosave_s']:.3f} s, save a version {f['save_version_s']:.2f} s "
            f"({f['case_file_mb']:.0f} MB case file)"
        ),
        "responsive",
    ),
    Row(
        "report",
        "curation report of a 300-exam batch (6 curated phantom exams cloned under new ids, "
        "some damaged)",
        lambda f: (
            f"**{f['report.size_mb']:.1f} MB**, loads in **{f['report.load_seconds']:.2f} s** in "
            f"headless Chromium ({sum(f['damaged'].values())} damaged)"
            + (
                f"; the report code of {f['baseline_report.revision']} on the same store: "
                f"{f['baseline_report.size_mb']:.1f} MB, {f['baseline_report.load_seconds']:.2f} s"
                if "baseline_report" in f.values
                else ""
            )
        ),
        "< 30 MB, < 5 s",
    ),
    Row(
        "load",
        "a batch of 50 phantom exams 256x384 x 4 frames, ingest + curate to review gate 1: "
        "thread runner / Dask, 1 worker (2 threads) / Dask, 2 workers (1 thread each)",
        lambda f: (
            f"**{f['thread.cases_per_hour']:.0f}** / {f['dask_1_workers.cases_per_hour']:.0f} / "
            f"{f['dask_2_workers.cases_per_hour']:.0f} cases per hour; peak RSS "
            f"{f['thread.peak_rss_gb']:.2f} GB / {f['dask_1_workers.peak_rss_per_worker_gb']:.2f}"
            f" / {f['dask_2_workers.peak_rss_per_worker_gb']:.2f} GB per worker (+"
            f"{f['dask_2_workers.flow_process_peak_rss_gb']:.2f} GB flow process); see "
            "[scaling.md](scaling.md)"
        ),
        "reported",
    ),
    Row(
        "hvgn",
        "A/V labelling, RITE test (20 images, truth vessel mask), shipped weights",
        lambda f: _av(f, "rite_test"),
        ">= 0.92 (goal 0.95)",
    ),
    Row(
        "hvgn",
        "A/V labelling, LES-AV test (11 images), same weights",
        lambda f: _av(f, "les_av_test"),
        "reported",
    ),
    Row(
        "hvgn",
        "A/V labelling, 5 phantom photos 584x876 (unseen seeds 8200+)",
        lambda f: (
            f"accuracy {f['phantom.graph_with_segment_voting.accuracy']:.3f} with voting, "
            f"**{f['phantom.graph.accuracy']:.3f}** without; " + _av_variants(f, "phantom")
        ),
        ">= 0.95",
    ),
    Row(
        "hvgn",
        "label one 565x584 photo / one 3504x2336 HRF photo (mirror averaging); full-resolution "
        "HRF pixel graph",
        lambda f: (
            f"{f['seconds.drive_565x584']:.2f} s / {f['seconds.hrf_3504x2336']:.1f} s; graph of "
            f"{f['hrf_native_graph.nodes'] / 1e3:.0f}k nodes, "
            f"{f['hrf_native_graph.edges'] / 1e6:.1f}M edges built in "
            f"{f['hrf_native_graph.seconds']:.1f} s, {f['hrf_native_graph.graph_mb']:.0f} MB; "
            f"peak RSS {_gb(f['peak_rss_mb'])}"
        ),
        "< 2 s / < 60 s; graph < 8 GB",
    ),
)
