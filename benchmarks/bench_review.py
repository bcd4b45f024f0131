"""Review app speed: opening a 1024x1536 case in napari, and painting on it.

Usage: .venv/bin/python benchmarks/bench_review.py [--size 1024 1536] [--frames 10]
       [--screenshot docs/review/app.png]

Builds two phantom exams, ingests and curates them (stages 2-7), then, under a virtual X server
when there is no display:

- cold open: a fresh process's first napari window, then ``open_review``, to all layers drawn
  (napari already imported: it is running when a clinician opens a case);
- next case: the following case in the same window (``Next case``);
- reference: napari alone showing the same arrays (fundus, FA stack, aggregates, two label
  layers) without the app, in a drawn window, and the same stroke on it — the floor any review
  app on napari pays;
- painting: a brush stroke dragged across the vessel mask with real Qt mouse events on the
  canvas (press, 200 moves, release), each move processed and drawn before the next; reported as
  milliseconds per mouse-move event (60 Hz screens deliver one every ~16 ms);
- saving: a version (copy-on-write of the case file) and an autosave of unsaved edits.

Prints one JSON object. With --screenshot the A/V gate of the first case is drawn to a PNG.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from results import publish

os.environ.setdefault("ANGIOFLOW_SECRET", "benchmark-secret-0123456789")


def _drawn(viewer) -> None:  # noqa: ANN001
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()
    viewer.window._qt_viewer.canvas.native.update()  # schedule a GL draw ...
    QApplication.processEvents()  # ... and run it


def _stroke(
    viewer, start: tuple[float, float], end: tuple[float, float], moves: int
) -> list[float]:  # noqa: ANN001
    """Drag the left mouse button across the canvas from data (row, col) ``start`` to ``end``;
    seconds per processed-and-drawn mouse move."""
    from qtpy.QtCore import QEvent, QPointF, Qt
    from qtpy.QtGui import QMouseEvent
    from qtpy.QtWidgets import QApplication

    canvas = viewer.window._qt_viewer.canvas.native
    centre_row, centre_col = viewer.scene.camera.center[-2:]
    zoom = viewer.scene.camera.zoom

    def position(row: float, col: float) -> QPointF:
        return QPointF(
            (col - centre_col) * zoom + canvas.width() / 2,
            (row - centre_row) * zoom + canvas.height() / 2,
        )

    def send(kind: QEvent.Type, point: QPointF, buttons: Qt.MouseButton) -> None:
        event = QMouseEvent(
            kind, point, Qt.MouseButton.LeftButton, buttons, Qt.KeyboardModifier.NoModifier
        )
        QApplication.sendEvent(canvas, event)

    left = Qt.MouseButton.LeftButton
    send(QEvent.Type.MouseButtonPress, position(*start), left)
    seconds = []
    for step in range(1, moves + 1):
        t = step / moves
        point = position(start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1]))
        began = time.perf_counter()
        send(QEvent.Type.MouseMove, point, left)
        _drawn(viewer)
        seconds.append(time.perf_counter() - began)
    send(QEvent.Type.MouseButtonRelease, position(*end), Qt.MouseButton.NoButton)
    _drawn(viewer)
    return seconds


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(1000 * statistics.median(ordered), 1),
        "p95_ms": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 1),
        "max_ms": round(1000 * ordered[-1], 1),
    }


def _curated_store(scratch: Path, size: tuple[int, int], frames: int) -> Path:
    from angioflow.flows.curate import curate_flow
    from angioflow.flows.ingest import ingest_flow
    from angioflow.pipeline.phantom import PhantomConfig, write_phantom_set
    from prefect.testing.utilities import prefect_test_harness

    config = PhantomConfig(size=tuple(size), n_frames=frames)
    write_phantom_set(scratch / "raw", n=2, seed=5100, config=config)
    with prefect_test_harness(server_startup_timeout=120):
        ingest_flow(str(scratch / "raw"), str(scratch / "store"))
        summary = curate_flow(str(scratch / "store"))
    if len(summary["curated"]) != 2:
        raise SystemExit(f"curation failed: {summary['failed']}")
    return scratch / "store"


def _reference(store_root: Path, case_id: str) -> dict:
    """napari alone with the same arrays (no app): open time into a drawn viewer, one stroke."""
    import napari
    import numpy as np
    from angioflow.annotation_tools.session import ReviewSession
    from angioflow.pipeline.casestore import CaseStore

    viewer = napari.Viewer(title="reference")
    viewer.window.resize(1600, 1000)
    _drawn(viewer)
    began = time.perf_counter()
    session = ReviewSession(CaseStore(store_root, create=False), case_id, "bench")
    images = session.images()
    viewer.add_image(images.fundus, rgb=True)
    viewer.add_image(images.fa_frames, visible=False)
    viewer.add_image(images.fa_max, visible=False)
    viewer.add_image(images.fa_mean, visible=False)
    mask = session.mask()
    viewer.add_labels(np.zeros_like(mask), visible=False)
    layer = viewer.add_labels(mask)
    layer.brush_size, layer.mode = 3, "paint"
    _drawn(viewer)
    opened = time.perf_counter() - began
    height, width = mask.shape
    stroke = _stroke(viewer, (0.3 * height, 0.2 * width), (0.7 * height, 0.8 * width), 200)
    viewer.close()
    return {"open_s": round(opened, 2), "paint_brush_3px": _ms(stroke)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, nargs=2, default=(1024, 1536))
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--screenshot", type=Path, default=None)
    parser.add_argument(
        "--work", type=Path, default=None, help="Keep the curated store here and reuse it"
    )
    args = parser.parse_args()

    display = None
    if not os.environ.get("DISPLAY"):
        from pyvirtualdisplay import Display

        display = Display(visible=False, size=(1600, 1000))
        display.start()
    try:
        with tempfile.TemporaryDirectory() as scratch:
            work = args.work or Path(scratch)
            store_root = work / "store"
            if not (store_root / "cases").is_dir():
                _curated_store(work, args.size, args.frames)
            copy = Path(scratch) / "measured"
            shutil.copytree(store_root, copy)  # the measurement saves versions: keep work clean
            publish("review", _measure(copy, args.screenshot))
    finally:
        if display is not None:
            display.stop()


def _measure(store_root: Path, screenshot: Path | None) -> dict:
    import napari  # imported before timing: a clinician's napari is already running
    from angioflow.annotation_tools.app import open_review
    from angioflow.pipeline.casestore import CaseStore, MaskKind

    store = CaseStore(store_root, create=False)
    first, second = store.case_ids()
    began = time.perf_counter()
    viewer = napari.Viewer(title="angioflow review")
    viewer.window.resize(1600, 1000)
    _drawn(viewer)
    window = time.perf_counter() - began
    began = time.perf_counter()
    widget = open_review(store_root, first, "bench", viewer)
    _drawn(viewer)
    opened = time.perf_counter() - began
    began = time.perf_counter()
    widget.next_case()
    _drawn(viewer)
    warm = time.perf_counter() - began

    layer = widget.mask_layer
    height, width = layer.data.shape
    strokes = {}
    for brush in (3, 15):
        layer.brush_size = brush
        strokes[f"brush_{brush}px"] = _ms(
            _stroke(viewer, (0.3 * height, 0.2 * width), (0.7 * height, 0.8 * width), 200)
        )
    painted = int((layer.data != store.read_version(second, MaskKind.VESSEL)).sum())

    began = time.perf_counter()
    widget.autosave_now()
    autosave = time.perf_counter() - began
    began = time.perf_counter()
    version = widget.save()
    save = time.perf_counter() - began
    case_mb = store.path(second).stat().st_size / 1e6
    viewer.close()
    reference = _reference(store_root, first)

    result = {
        "image": f"{width}x{height}",
        "fa_frames": int(len(store.read_raw(first).fa_frames)),
        "cold_open_s": round(window + opened, 2),
        "of_which_new_napari_window_s": round(window, 2),
        "open_in_drawn_window_s": round(opened, 2),
        "next_case_s": round(warm, 2),
        "paint_per_mouse_move": strokes,
        "reference_napari_alone": reference,
        "pixels_painted": painted,
        "autosave_s": round(autosave, 3),
        "save_version_s": round(save, 3),
        "saved_version": version,
        "case_file_mb": round(case_mb, 1),
    }
    if screenshot is not None:
        _screenshot(store_root, first, screenshot)
    return result


def _screenshot(store_root: Path, case_id: str, path: Path) -> None:
    """The A/V gate of a case: approve its vessel mask, label it (stage 9), open it, paint."""
    import napari
    import numpy as np
    from angioflow.annotation_tools.app import open_review
    from angioflow.models.hvgn import AVLabeller
    from angioflow.pipeline.casestore import CaseStore, MaskKind
    from angioflow.pipeline.curation_stages import run_av_labelling
    from PIL import Image

    store = CaseStore(store_root, create=False)
    store.approve(case_id, MaskKind.VESSEL, version=1, editor="dr_demo")
    labeller = AVLabeller.load()
    run_av_labelling(
        store,
        case_id,
        labeller.artery_probability,
        labeller.weights_sha256,
        labeller.model.config.fa_channels,
    )
    viewer = napari.Viewer(title="angioflow review")
    viewer.window.resize(1600, 1000)
    open_review(store_root, case_id, "dr_demo", viewer)
    viewer.scene.camera.zoom *= 1.6
    viewer.layers["FA max"].visible = True
    viewer.layers["FA max"].opacity = 0.5
    _drawn(viewer)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(viewer.screenshot(canvas_only=False))).save(path)
    viewer.close()


if __name__ == "__main__":
    main()
