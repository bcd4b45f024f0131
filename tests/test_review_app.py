"""The napari review app, driven in a real viewer under Xvfb (pytest-xvfb starts the X server)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from angioflow.pipeline.casestore import CaseStore, MaskKind, Stage

pytestmark = pytest.mark.slow  # napari viewers under Xvfb on the curated store

pytest.importorskip("napari")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def viewer(make_napari_viewer):  # noqa: ANN001, ANN201 - napari's fixture
    return make_napari_viewer(show=True)


def _offered(buttons) -> bool:  # noqa: ANN001
    """Whether the widget shows these buttons (not hidden; the window itself may be off-screen)."""
    return not buttons.native.isHidden()


def _background_spot(mask: np.ndarray, fov_margin: int = 60) -> tuple[int, int]:
    """A pixel well inside the image whose 9x9 neighbourhood holds no vessel."""
    height, width = mask.shape
    for row in range(fov_margin, height - fov_margin, 7):
        for col in range(width // 2, width - fov_margin, 7):
            if not mask[row - 4 : row + 5, col - 4 : col + 5].any():
                return row, col
    raise AssertionError("no vessel-free spot found")


def _paint(widget, label: int = 1) -> tuple[int, int]:  # noqa: ANN001
    layer = widget.mask_layer
    spot = _background_spot(layer.data)
    layer.brush_size = 5
    layer.selected_label = label
    layer.paint(spot, label)
    return spot


def test_open_paint_save_reopen_shows_the_edit(
    store: CaseStore, viewer, make_napari_viewer
) -> None:  # noqa: ANN001
    from angioflow.annotation_tools.app import open_review
    from angioflow.annotation_tools.layers import MASK_LAYER

    case_id = store.case_ids()[0]
    widget = open_review(store.root, case_id, "dr_a", viewer)
    names = [layer.name for layer in viewer.layers]
    assert names == [
        "fundus photo",
        "FA frames",
        "FA max",
        "FA mean",
        "approved vessel mask",
        "previous version",
        MASK_LAYER,
        "merge conflicts",
    ]
    fundus = store.read_raw(case_id).fundus
    assert viewer.layers["FA frames"].data.shape[1:] == fundus.shape[:2]
    assert viewer.layers[MASK_LAYER].brush_size == 3 and viewer.layers[MASK_LAYER].mode == "paint"
    assert "Shift-S: save draft version" in widget.shortcuts.value
    row, col = _paint(widget)
    assert widget.dirty
    widget.note.value = "closed a gap"
    assert widget.save() == 2
    assert store.read_version(case_id, MaskKind.VESSEL)[row, col] == 1
    (_, mine) = store.versions(case_id, MaskKind.VESSEL)
    assert (mine.editor, mine.parent, mine.note) == ("dr_a", 1, "closed a gap")
    assert [r[0] for r in widget.history.value["data"]] == [1, 2]

    again = open_review(store.root, case_id, "dr_b", make_napari_viewer())
    assert again.mask_layer.data[row, col] == 1
    assert again.session.parent == 2
    assert again.viewer.layers["previous version"].data[row, col] == 0  # version 1 to compare


def test_stale_save_is_refused_then_merged_without_losing_either_edit(
    store: CaseStore,
    viewer,
    make_napari_viewer,  # noqa: ANN001
) -> None:
    from angioflow.annotation_tools.app import open_review

    case_id = store.case_ids()[0]
    first = open_review(store.root, case_id, "dr_a", viewer)
    second = open_review(store.root, case_id, "dr_b", make_napari_viewer(show=True))
    theirs = _paint(second, 1)
    assert second.save() == 2
    mine = (theirs[0] + 40, theirs[1])
    first.mask_layer.paint(mine, 1)
    assert first.save() is None  # refused: version 2 was saved after version 1
    assert "version 2 has been saved since" in first.message.value
    assert _offered(first.conflict) and len(store.versions(case_id, MaskKind.VESSEL)) == 2
    first.merge_onto_latest()
    assert first.save() == 3
    final = store.read_version(case_id, MaskKind.VESSEL)
    assert final[theirs] == 1 and final[mine] == 1
    assert [v.parent for v in store.versions(case_id, MaskKind.VESSEL)] == [0, 1, 2]


_CRASHING_REVIEWER = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    from qtpy.QtTest import QTest
    from angioflow.annotation_tools.app import open_review

    widget = open_review(Path(sys.argv[1]), sys.argv[2], "dr_crash")
    row, col = int(sys.argv[3]), int(sys.argv[4])
    widget.mask_layer.brush_size = 5
    widget.mask_layer.paint((row, col), 1)
    # the autosave timer fires inside Qt's event loop: run the loop until it has, or give up
    deadline = time.monotonic() + 20
    while widget.session.pending_autosave() is None and time.monotonic() < deadline:
        QTest.qWait(50)
    print("autosaved" if widget.session.pending_autosave() else "no autosave", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # the crash: no save, no clean-up
    """
)


def test_unsaved_edits_survive_a_crash_and_are_offered_back(store: CaseStore, viewer) -> None:  # noqa: ANN001
    from angioflow.annotation_tools.app import open_review

    case_id = store.case_ids()[1]
    row, col = _background_spot(store.read_version(case_id, MaskKind.VESSEL))
    crashed = subprocess.run(
        [sys.executable, "-c", _CRASHING_REVIEWER, str(store.root), case_id, str(row), str(col)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert crashed.returncode == -9 and "autosaved" in crashed.stdout, crashed.stderr[-2000:]
    assert len(store.versions(case_id, MaskKind.VESSEL)) == 1  # nothing was saved

    widget = open_review(store.root, case_id, "dr_crash", viewer)
    assert _offered(widget.recovery) and "unsaved edits" in widget.message.value
    assert widget.mask_layer.data[row, col] == 0  # the saved version is shown first
    widget.restore_autosave()
    assert widget.mask_layer.data[row, col] == 1 and widget.dirty
    assert widget.save() == 2
    assert store.read_autosave(case_id, MaskKind.VESSEL, "dr_crash") is None  # saved: gone
    other = open_review(store.root, case_id, "dr_other", viewer)
    assert not _offered(other.recovery)  # autosaves are per reviewer


def test_approve_moves_the_case_through_both_gates(store: CaseStore, viewer, qtbot) -> None:  # noqa: ANN001
    from angioflow.annotation_tools.app import open_review
    from qtpy.QtCore import Qt

    first, second = store.case_ids()
    widget = open_review(store.root, first, "dr_a", viewer)
    spot = _paint(widget)
    widget.approve()  # saves the edit as version 2, then approves it
    assert store.summary(first).stage == Stage.VESSEL_APPROVED
    assert store.summary(first).approved_versions[MaskKind.VESSEL] == 2
    assert store.read_version(first, MaskKind.VESSEL, 2)[spot] == 1
    assert "vessel_approved" in widget.message.value

    widget.next_case()
    assert widget.session.case_id == second
    widget.reason.value = ""
    widget.reject()
    assert (
        "give a reason" in widget.message.value
        and store.summary(second).stage == Stage.VESSEL_REVIEW
    )
    widget.reason.value = "FA frames too blurred to trust the baseline"
    widget.reject()
    assert store.summary(second).stage == Stage.REJECTED
    assert "blurred" in widget.history.value["data"][0][-1]

    # gate 2 on the first case: its A/V baseline (stage 9's output, here from the truth of
    # the approved vessel mask) is edited with the A/V shortcuts and approved
    vessel = store.read_version(first, MaskKind.VESSEL, 2)
    store.save_version(
        first, MaskKind.AV, (vessel > 0).astype(np.uint8) * 2, editor="angioflow", parent=0
    )
    widget.open_case(first)
    assert widget.session.kind is MaskKind.AV
    assert widget.viewer.layers["approved vessel mask"].data.sum() == vessel.sum()
    layer = widget.mask_layer
    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.keyClick(canvas, Qt.Key.Key_V)
    assert layer.selected_label == 2  # V: vein
    qtbot.keyClick(canvas, Qt.Key.Key_A)
    assert layer.selected_label == 1  # A: artery
    on_vessel = tuple(np.argwhere(vessel > 0)[len(np.argwhere(vessel > 0)) // 2])
    layer.paint(on_vessel, layer.selected_label)
    widget.approve()
    assert store.summary(first).stage == Stage.DONE
    assert store.read_version(first, MaskKind.AV)[on_vessel] == 1


def test_open_from_napari_menu_and_reader_on_a_store(
    store: CaseStore,
    viewer,
    make_napari_viewer,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    import npe2

    manifest = npe2.PluginManager.instance().get_manifest("angioflow")
    assert [w.display_name for w in manifest.contributions.widgets] == ["Review case"]
    _, widget = viewer.window.add_plugin_dock_widget("angioflow", "Review case")
    widget.store_path.value = store.root
    assert list(widget.case.choices) == store.case_ids()  # both wait at gate 1
    widget.editor.value = "dr_menu"
    widget.open_case(widget.case.value)
    assert widget.session is not None and "mask" in viewer.layers

    monkeypatch.setenv("ANGIOFLOW_EDITOR", "dr_reader")
    second_case = store.case_ids()[1]
    other = make_napari_viewer(show=True)
    other.open(str(store.path(second_case)), plugin="angioflow")
    fundus = store.read_raw(second_case).fundus
    assert np.array_equal(other.layers["fundus photo"].data, fundus)
    assert np.array_equal(other.layers["mask"].data, store.read_version(second_case, "vessel"))


def _spot_in_one_mask_only(inside: np.ndarray, outside: np.ndarray) -> tuple[int, int]:
    """A vessel pixel of ``inside`` whose 7x7 neighbourhood holds no vessel in ``outside``."""
    for row, col in np.argwhere(inside > 0)[::5]:
        away = not outside[row - 3 : row + 4, col - 3 : col + 4].any()
        if 40 < row < inside.shape[0] - 40 and away:
            return int(row), int(col)
    raise AssertionError("no vessel pixel of one mask lies away from the other's vessels")


def test_undo_after_moving_on_never_changes_the_next_case(store: CaseStore, viewer, qtbot) -> None:  # noqa: ANN001
    from qtpy.QtCore import Qt

    first, second = store.case_ids()
    mask_first = store.read_version(first, MaskKind.VESSEL)
    mask_second = store.read_version(second, MaskKind.VESSEL)
    from angioflow.annotation_tools.app import open_review

    widget = open_review(store.root, first, "dr_a", viewer)
    canvas = viewer.window._qt_viewer.canvas.native
    # a stroke on case A where case B has a vessel and A has none: undoing it on B would erase
    # B's vessel there
    spot = _spot_in_one_mask_only(mask_second, mask_first)
    widget.mask_layer.brush_size = 5
    widget.mask_layer.paint(spot, 1)
    assert widget.dirty
    qtbot.keyClick(canvas, Qt.Key.Key_N, Qt.KeyboardModifier.ShiftModifier)  # next case
    assert widget.session.case_id == second
    qtbot.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    changed = int((widget.mask_layer.data != mask_second).sum())
    assert changed == 0, f"undo on case B changed {changed} pixels of its mask"
    assert not widget.dirty
    qtbot.wait(2600)  # past the autosave delay: nothing may be autosaved for case B
    assert store.read_autosave(second, MaskKind.VESSEL, "dr_a") is None
    # case A's own unsaved stroke was autosaved when moving on, not lost
    assert store.read_autosave(first, MaskKind.VESSEL, "dr_a").mask[spot] == 1


def test_undo_and_redo_mark_the_case_edited_and_are_autosaved(
    store: CaseStore, viewer, qtbot
) -> None:  # noqa: ANN001
    from angioflow.annotation_tools.app import open_review
    from qtpy.QtCore import Qt

    case_id = store.case_ids()[0]
    widget = open_review(store.root, case_id, "dr_a", viewer)
    canvas = viewer.window._qt_viewer.canvas.native
    spot = _paint(widget)
    assert widget.save() == 2 and not widget.dirty
    qtbot.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert widget.mask_layer.data[spot] == 0 and widget.dirty
    qtbot.waitUntil(
        lambda: store.read_autosave(case_id, MaskKind.VESSEL, "dr_a") is not None, timeout=6000
    )
    assert store.read_autosave(case_id, MaskKind.VESSEL, "dr_a").mask[spot] == 0
    redo = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    qtbot.keyClick(canvas, Qt.Key.Key_Z, redo)
    assert widget.mask_layer.data[spot] == 1
    qtbot.waitUntil(
        lambda: store.read_autosave(case_id, MaskKind.VESSEL, "dr_a").mask[spot] == 1, timeout=6000
    )
    # a reset to the baseline is one undoable edit, not a silent replacement
    widget.reset_to_baseline()
    assert widget.mask_layer.data[spot] == 0
    qtbot.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert widget.mask_layer.data[spot] == 1


def test_review_shortcuts_are_napari_actions_unbound_when_the_widget_closes(
    store: CaseStore, viewer, qtbot
) -> None:  # noqa: ANN001
    from angioflow.annotation_tools.app import open_review
    from angioflow.annotation_tools.shortcuts import REVIEW_ACTIONS
    from napari._qt.widgets.qt_keyboard_settings import ShortcutEditor
    from napari.utils.action_manager import action_manager
    from qtpy.QtCore import Qt

    case_id = store.case_ids()[0]
    widget = open_review(store.root, case_id, "dr_a", viewer)
    listed = ShortcutEditor().key_bindings_strs[ShortcutEditor.VIEWER_KEYBINDINGS]
    for name in REVIEW_ACTIONS:
        assert name in listed and name in action_manager._shortcuts  # shown in preferences
    canvas = viewer.window._qt_viewer.canvas.native
    _paint(widget)
    qtbot.keyClick(canvas, Qt.Key.Key_S, Qt.KeyboardModifier.ShiftModifier)
    assert len(store.versions(case_id, MaskKind.VESSEL)) == 2  # Shift-S saved a version

    viewer.window.remove_dock_widget(widget.native)
    for name in REVIEW_ACTIONS:
        assert name not in action_manager._shortcuts
    _paint(widget)
    qtbot.keyClick(canvas, Qt.Key.Key_S, Qt.KeyboardModifier.ShiftModifier)
    assert len(store.versions(case_id, MaskKind.VESSEL)) == 2  # the key no longer saves
