"""Write phantom cases as raw case folders (DESIGN.md contract) plus a ``truth/`` folder."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..av_encoding import av_to_rgb
from ..mask_structure import labels_from_channels
from ._case import PhantomCase, PhantomConfig, _check_seed, generate_case
from ._transforms import FrameTransform

CAMERA = "angioflow-phantom"
TRANSFORM_CONVENTION = (
    "Pixel coordinates are (x, y) = (column, row), origin at the centre of the top-left pixel; "
    "matrices are 3x3 and act on column vectors [x, y, 1]. frames[k].frame_to_reference maps a "
    "pixel p of FA frame k to the reference frame (frame 0): matrix @ [p + d(p), 1], where "
    "d(p) = sum_j amplitudes_xy[j] * exp(-|p - centers_xy[j]|^2 / (2 sigma_px^2)) is evaluated in "
    "frame-k pixels (null deformation = rigid). fa_to_fundus maps FA reference pixels to fundus "
    "pixels. A registration that resamples frame k onto frame 0 estimates the inverse, "
    "reference -> frame (the SimpleITK fixed -> moving direction)."
)


def write_case(
    case: PhantomCase, out_dir: Path, *, patient_id: str, overwrite: bool = False
) -> Path:
    """Write one case folder: the raw exam plus its ground truth.

    Layout::

        case.json            patient_id, eye, fundus, fa_frames [{file, time_s}], camera
        fundus.png           (H, W) RGB
        fa/000.png ...       (h, w) greyscale, 8- or 16-bit
        truth/av.png         A/V class indices (pipeline.av_encoding: 0 background, 1 artery,
                             2 vein, 3 crossing)
        truth/av_preview.png the same in colour, for people (red artery, blue vein, white crossing)
        truth/vessel.png     0/255 vessel mask, fundus pixels
        truth/fov.png        0/255 fundus field of view
        truth/calibre.npy    (H, W) float32 vessel diameter in fundus pixels
        truth/fa_vessel.png  0/255 vessel mask in FA reference (frame 0) pixels
        truth/fa_fov.png     0/255 FA aperture
        truth/transforms.json  per-frame frame->reference transforms, fa_to_fundus, convention
        truth/landmarks.json   disc, fovea, bifurcations, crossings in every coordinate system
        truth/phantom.json     seed, config, phases, defects, dye timing, disc and fovea

    Files are byte-identical for identical cases (no PNG timestamps, sorted JSON keys).

    Parameters
    ----------
    case : PhantomCase
    out_dir : Path
        Folder to create; it must be absent or empty unless ``overwrite``.
    patient_id : str, keyword-only
        Written to case.json.
    overwrite : bool, keyword-only
        Replace the files of an existing case folder.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    ValueError
        If ``patient_id`` is empty.
    FileExistsError
        If ``out_dir`` holds files and ``overwrite`` is False.
    """
    if not isinstance(patient_id, str) or not patient_id.strip():
        raise ValueError(f"patient_id must be a non-empty string, got {patient_id!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{out_dir} already holds files; choose an empty folder or pass overwrite=True"
        )
    (out_dir / "fa").mkdir(parents=True, exist_ok=True)
    (out_dir / "truth").mkdir(exist_ok=True)
    if overwrite:
        for stale in (out_dir / "fa").glob("*.png"):
            stale.unlink()

    _write_png(out_dir / "fundus.png", case.fundus)
    frame_files = []
    for k, frame in enumerate(case.fa_frames):
        name = f"fa/{k:03d}.png"
        _write_png(out_dir / name, frame)
        frame_files.append({"file": name, "time_s": case.frame_times[k]})
    _write_json(
        out_dir / "case.json",
        {
            "patient_id": patient_id,
            "eye": case.eye,
            "fundus": "fundus.png",
            "fa_frames": frame_files,
            "camera": CAMERA,
        },
    )

    truth = out_dir / "truth"
    av = labels_from_channels(np.moveaxis(case.av, -1, 0))
    _write_png(truth / "av.png", av)
    _write_png(truth / "av_preview.png", av_to_rgb(av))
    for name, mask in (
        ("vessel", case.vessel),
        ("fov", case.fov),
        ("fa_vessel", case.fa_vessel),
        ("fa_fov", case.fa_fov),
    ):
        _write_png(truth / f"{name}.png", mask.astype(np.uint8) * 255)
    buffer = io.BytesIO()
    np.save(buffer, case.calibre.astype(np.float32), allow_pickle=False)
    (truth / "calibre.npy").write_bytes(buffer.getvalue())
    _write_json(
        truth / "transforms.json",
        {
            "convention": TRANSFORM_CONVENTION,
            "fa_to_fundus": case.fa_to_fundus.tolist(),
            "frames": [
                {"file": frame_files[k]["file"], "frame_to_reference": t.to_dict()}
                for k, t in enumerate(case.frame_transforms)
            ],
        },
    )
    marks = case.landmarks
    _write_json(
        truth / "landmarks.json",
        {
            "convention": "pixel (x, y) = (column, row); frame_xy[k] is in FA frame k",
            "landmarks": [
                {
                    "kind": marks.kinds[i],
                    "label": marks.labels[i],
                    "fundus_xy": marks.fundus_xy[i].tolist(),
                    "fa_xy": marks.fa_xy[i].tolist(),
                    "frame_xy": marks.frame_xy[:, i].tolist(),
                }
                for i in range(len(marks.kinds))
            ],
        },
    )
    _write_json(
        truth / "phantom.json",
        {
            "seed": case.seed,
            "eye": case.eye,
            "config": case.config_dict(),
            "disc_xy": list(case.disc_xy),
            "disc_radius_px": case.disc_radius,
            "fovea_xy": list(case.fovea_xy),
            "dye_timing_s": {
                "arrival": case.timing.arrival_s,
                "arteriovenous": case.timing.arteriovenous_s,
            },
            "frames": [
                {
                    "file": frame_files[k]["file"],
                    "time_s": case.frame_times[k],
                    "phase": case.frame_phases[k],
                    "defect": case.frame_defects[k],
                }
                for k in range(len(case.fa_frames))
            ],
        },
    )
    return out_dir


def write_phantom_set(
    out: Path,
    *,
    n: int,
    seed: int,
    config: PhantomConfig = PhantomConfig(),  # noqa: B008
    overwrite: bool = False,
) -> list[Path]:
    """Write ``n`` cases ``out/phantom_000``, ``out/phantom_001``, ...

    Case ``i`` uses a seed derived from ``(seed, i)`` with numpy's SeedSequence and the patient
    id ``PHANTOM-<seed>-<i:03d>``, so any one case can be regenerated alone. ``overwrite`` is
    passed to :func:`write_case`.

    Returns
    -------
    list of Path
        The case folders, in order.

    Raises
    ------
    ValueError
        If ``n`` is not a positive int or ``seed`` not a non-negative int.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (number of cases), got {n!r}")
    seed = _check_seed(seed)
    paths = []
    for i in range(n):
        case = generate_case(case_seed(seed, i), config)
        paths.append(
            write_case(
                case,
                Path(out) / f"phantom_{i:03d}",
                patient_id=f"PHANTOM-{seed}-{i:03d}",
                overwrite=overwrite,
            )
        )
    return paths


def case_seed(seed: int, index: int) -> int:
    """Seed of case ``index`` in a set generated with ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def read_transforms(case_dir: Path) -> tuple[tuple[FrameTransform, ...], np.ndarray]:
    """Read ``truth/transforms.json``: per-frame frame->reference transforms and fa_to_fundus."""
    data = json.loads((Path(case_dir) / "truth" / "transforms.json").read_text())
    frames = tuple(FrameTransform.from_dict(f["frame_to_reference"]) for f in data["frames"])
    return frames, np.asarray(data["fa_to_fundus"], dtype=np.float64)


def _write_png(path: Path, array: np.ndarray) -> None:
    # Pillow writes no tIME chunk unless asked, so identical arrays give identical bytes
    Image.fromarray(array).save(path, format="PNG", compress_level=6)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
