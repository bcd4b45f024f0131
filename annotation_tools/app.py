"""The napari review app: a magicgui dock widget for review gates 1 (vessel mask) and 2 (A/V).

The widget shows a case through :mod:`annotation_tools.layers` and binds its keys through
:mod:`annotation_tools.shortcuts`; every action goes through
:class:`annotation_tools.session.ReviewSession`. Open it with
``angioflow review CASE --store S --editor NAME``, from napari's menu (Plugins > angioflow >
Review case), or by dropping a store folder / case file on napari.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from angioflow.annotation_tools.layers import (
    CONFLICT_LAYER,
    MASK_LAYER,
    PREVIOUS_LAYER,
    forget_undo_history,
    show_case,
)
from angioflow.annotation_tools.session import ReviewSession
from angioflow.annotation_tools.shortcuts import (
    LABEL_KEYS,
    REDO_KEY,
    UNDO_KEY,
    DockWatcher,
    bind_review_actions,
    review_action_unbinder,
    shortcut_text,
)
from angioflow.pipeline.casestore import CaseStore, CaseStoreError, StaleVersionError
from angioflow.pipeline.review import MergeResult, review_queue
from magicgui.widgets import ComboBox, Container, FileEdit, Label, LineEdit, PushButton, Table
from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import QTimer

if TYPE_CHECKING:
    import napari

__all__ = ["ReviewWidget", "open_review", "read_store"]

AUTOSAVE_DELAY_MS = 2000  # after the last stroke; a crash loses at most this much painting
HISTORY_COLUMNS = ("version", "parent", "editor", "time", "note", "approved by", "rejected")


def _button_row(*texts: str) -> Container:
    """Buttons side by side, hidden until the widget offers them."""
    return Container(
        widgets=[PushButton(text=text) for text in texts],
        layout="horizontal",
        visible=False,
        labels=False,
    )


class ReviewWidget(Container):
    """Dock widget: open a case, save versions, approve/reject, recover autosaved edits.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    store : Path, optional
        Case store folder (can be chosen in the widget).
    editor : str
        Reviewer name recorded with every save and approval.
    """

    def __init__(
        self, napari_viewer: napari.Viewer, store: Path | None = None, editor: str = ""
    ) -> None:
        self.viewer = napari_viewer
        self.session: ReviewSession | None = None
        self.dirty = False
        self.store_path = FileEdit(label="store", mode="d", value=store or "")
        self.editor = LineEdit(label="editor", value=editor)
        # a callable: napari re-evaluates choices whenever it resets a docked widget's choices
        self.case = ComboBox(label="case", choices=self._case_choices)
        self.open_button = PushButton(text="Open case")
        self.status = Label(value="no case open")
        self.note = LineEdit(label="note")
        self.save_button = PushButton(text="Save draft version (Shift-S)")
        self.approve_button = PushButton(text="Approve")
        self.reason = LineEdit(label="reason")
        self.reject_button = PushButton(text="Reject with reason")
        self.reset_button = PushButton(text="Reset to baseline")
        self.next_button = PushButton(text="Next case (Shift-N)")
        self.message = Label(value="")
        self.recovery = _button_row("Restore unsaved edits", "Discard them")
        self.conflict = _button_row("Merge my edits onto the latest", "Reload latest (drop mine)")
        self.history = Table(value={"data": [], "index": [], "columns": list(HISTORY_COLUMNS)})
        self.shortcuts = Label(value="")
        super().__init__(
            widgets=[
                self.store_path,
                self.editor,
                self.case,
                self.open_button,
                self.status,
                self.note,
                self.save_button,
                self.approve_button,
                self.reason,
                self.reject_button,
                self.reset_button,
                self.next_button,
                self.message,
                self.recovery,
                self.conflict,
                self.history,
                self.shortcuts,
            ]
        )
        self._autosave_timer = QTimer(self.native)  # dies with the widget
        self._autosave_timer.setSingleShot(True)
        self._autosave_timer.setInterval(AUTOSAVE_DELAY_MS)
        self._autosave_timer.timeout.connect(self.autosave_now)
        self.viewer.layers.events.removing.connect(self._before_layer_removed)
        self.store_path.changed.connect(self.case.reset_choices)
        self.open_button.changed.connect(lambda: self.open_case(self.case.value))
        self.save_button.changed.connect(self.save)
        self.approve_button.changed.connect(self.approve)
        self.reject_button.changed.connect(self.reject)
        self.reset_button.changed.connect(self.reset_to_baseline)
        self.next_button.changed.connect(self.next_case)
        self.recovery[0].changed.connect(self.restore_autosave)
        self.recovery[1].changed.connect(self.discard_autosave)
        self.conflict[0].changed.connect(self.merge_onto_latest)
        self.conflict[1].changed.connect(self.reload_latest)
        self._bind_review_actions()
        # Docked (by open_review or napari's plugin menu) the shortcuts work; removed from the
        # window or destroyed with it, they are unbound so they never shadow napari's keys.
        self._dock_watcher = DockWatcher(self.native, self._bind_review_actions, self._unbind)
        self.native.destroyed.connect(review_action_unbinder(self.viewer))

    def _bind_review_actions(self) -> None:
        bind_review_actions(self.viewer, self)

    def _unbind(self) -> None:
        review_action_unbinder(self.viewer)()

    # ---- state ---------------------------------------------------------------------------

    @property
    def store(self) -> CaseStore:
        return CaseStore(Path(self.store_path.value), create=False)

    @property
    def mask_layer(self) -> Any:
        return self.viewer.layers[MASK_LAYER]

    def _say(self, text: str, *, warn: bool = False) -> None:
        self.message.value = text
        (show_warning if warn else show_info)(text)

    def _case_choices(self, _widget: Any = None) -> list[str]:
        """Cases waiting for review first, then the others."""
        try:
            store = self.store
        except CaseStoreError:
            return []
        waiting = [e.case_id for e in review_queue(store)]
        return waiting + [c for c in store.case_ids() if c not in waiting]

    def _mark_edited(self, *_: Any) -> None:
        self.dirty = True
        self._autosave_timer.start()

    def _before_layer_removed(self, event: Any) -> None:
        """The viewer is closing or the reviewer deletes the mask layer: keep unsaved edits."""
        if self.viewer.layers[event.index].name == MASK_LAYER:
            self.autosave_now()
            self._autosave_timer.stop()

    def _undo(self, layer: Any) -> None:
        self._step_history(layer, layer.undo)

    def _redo(self, layer: Any) -> None:
        self._step_history(layer, layer.redo)

    def _step_history(self, layer: Any, step: Any) -> None:
        before = layer.data.copy()
        step()
        if not np.array_equal(before, layer.data):
            self._mark_edited()

    # ---- opening -------------------------------------------------------------------------

    def open_case(self, case_id: str) -> None:
        """Show a case's images and the mask under review; offer autosaved edits back."""
        if self.session is not None and self.dirty:
            self.autosave_now()
        try:
            session = ReviewSession(self.store, case_id, self.editor.value)
            images = session.images()
            mask = session.mask().copy()
        except CaseStoreError as error:
            self._say(str(error), warn=True)
            return
        self.session, self.dirty = session, False
        show_case(
            self.viewer,
            images,
            mask,
            session.previous(),
            session.kind,
            on_mask_created=self._wire_mask_layer,
        )
        self.shortcuts.value = shortcut_text(session.kind)
        self.conflict.visible = False
        self._update_panel()
        pending = session.pending_autosave()
        self.recovery.visible = pending is not None
        if pending is not None:
            self._say(
                f"unsaved edits from {pending.time[:19]} (made on version {pending.parent}) were "
                "found: restore or discard them"
            )

    def _wire_mask_layer(self, layer: Any) -> None:
        """Track edits of the mask layer and bind the gate's label keys to it."""
        layer.events.paint.connect(self._mark_edited)
        for key in {k for keys in LABEL_KEYS.values() for k in keys}:
            layer.bind_key(key, self._label_setter(key), overwrite=True)
        # napari's own undo/redo keys, plus marking the case edited so they are autosaved
        layer.bind_key(UNDO_KEY, self._undo, overwrite=True)
        layer.bind_key(REDO_KEY, self._redo, overwrite=True)

    def _label_setter(self, key: str) -> Any:
        def select(layer: Any) -> None:
            if self.session is not None and key in LABEL_KEYS[self.session.kind]:
                layer.selected_label = LABEL_KEYS[self.session.kind][key][0]
                layer.mode = "paint"

        return select

    def _update_panel(self) -> None:
        session = self.session
        assert session is not None
        self.status.value = (
            f"{session.case_id}\n{session.kind.value} mask, editing from version "
            f"{session.parent} of {session.latest_version}; stage {session.stage.value}"
        )
        rows = session.history()
        self.history.value = {
            "data": [
                [
                    r.saved.version,
                    r.saved.parent or "",
                    r.saved.editor,
                    r.saved.time[:19],
                    r.saved.note,
                    ", ".join(r.approved_by),
                    "; ".join(r.rejected),
                ]
                for r in rows
            ],
            "index": [r.saved.version for r in rows],
            "columns": list(HISTORY_COLUMNS),
        }

    def _replace_mask(self, mask: np.ndarray) -> None:
        """Load another version of this case's mask: a new start, with no undo history."""
        self.mask_layer.data = np.asarray(mask, np.uint8).copy()
        forget_undo_history(self.mask_layer)

    def _edit_mask(self, mask: np.ndarray) -> None:
        """Change the mask to ``mask`` as one undoable edit (marks the case edited)."""
        layer = self.mask_layer
        changed = np.nonzero(layer.data != mask)
        if changed[0].size:
            layer.data_setitem(changed, np.asarray(mask, np.uint8)[changed])

    # ---- actions -------------------------------------------------------------------------

    def save(self) -> int | None:
        """Save the painted mask as a new version; refused (with merge/reload) when stale."""
        if self.session is None:
            return None
        try:
            version = self.session.save(self.mask_layer.data, self.note.value)
        except StaleVersionError as error:
            self.conflict.visible = True
            self._say(f"not saved: {error}", warn=True)
            return None
        except CaseStoreError as error:
            self._say(str(error), warn=True)
            return None
        self.dirty = False
        self._autosave_timer.stop()
        self.note.value = ""
        self.viewer.layers[PREVIOUS_LAYER].data = self.session.previous()
        self._update_panel()
        self._say(f"saved version {version}")
        return version

    def approve(self) -> None:
        """Approve what is on screen (saved first when edited)."""
        if self.session is None:
            return
        try:
            mask = self.mask_layer.data if self.dirty else None
            version = self.session.approve(mask, self.note.value)
        except StaleVersionError as error:
            self.conflict.visible = True
            self._say(f"not approved: {error}", warn=True)
            return
        except CaseStoreError as error:
            self._say(str(error), warn=True)
            return
        self.dirty = False
        self._autosave_timer.stop()
        self._update_panel()
        self._say(
            f"approved {self.session.kind.value} version {version}; case is now at stage "
            f"{self.session.stage.value}"
        )

    def reject(self) -> None:
        if self.session is None:
            return
        try:
            self.session.reject(self.reason.value)
        except CaseStoreError as error:
            self._say(str(error), warn=True)
            return
        self.reason.value = ""
        self._update_panel()
        self._say(f"rejected version {self.session.parent}; the case left the review queue")

    def reset_to_baseline(self) -> None:
        if self.session is None:
            return
        self._edit_mask(self.session.baseline())
        self._say("mask reset to the pipeline's baseline (version 1); save to keep it")

    def next_case(self) -> None:
        if self.session is None:
            return
        following = self.session.next_case()
        if following is None:
            self._say("no other case is waiting for review")
            return
        self.open_case(following)

    def toggle_previous(self) -> None:
        if self.session is not None:
            layer = self.viewer.layers[PREVIOUS_LAYER]
            layer.visible = not layer.visible

    def autosave_now(self) -> None:
        """Write the unsaved edits to the store's autosave (not a version)."""
        if self.session is not None and self.dirty and MASK_LAYER in self.viewer.layers:
            try:
                self.session.autosave(self.mask_layer.data)
            except (CaseStoreError, OSError) as error:
                self._say(f"autosave failed: {error}", warn=True)

    def restore_autosave(self) -> None:
        if self.session is None or (pending := self.session.pending_autosave()) is None:
            return
        mask, merged = self.session.recover(pending)
        # merged onto a newer version, the edit starts from that version: no undo across it
        (self._edit_mask if merged is None else self._replace_mask)(mask)
        self._mark_edited()
        self.recovery.visible = False
        self._show_conflicts(merged)
        self._update_panel()
        self._say(
            "unsaved edits restored"
            + ("" if merged is None else f" and merged onto version {self.session.parent}")
        )

    def discard_autosave(self) -> None:
        if self.session is not None:
            self.session.discard_autosave()
            self.recovery.visible = False
            self._say("unsaved edits discarded")

    def merge_onto_latest(self) -> None:
        if self.session is None:
            return
        merged = self.session.merge_onto_latest(self.mask_layer.data)
        # the merge moves the edit onto another version: undo must not step back across it
        self._replace_mask(merged.mask)
        self._mark_edited()
        self.conflict.visible = False
        self._show_conflicts(merged)
        self._update_panel()
        self._say(
            f"your {merged.changed} changed pixels were merged onto version "
            f"{self.session.parent}; {int(merged.conflicts.sum())} pixels both of you changed "
            "keep yours (layer 'merge conflicts'); save to keep the result"
        )

    def reload_latest(self) -> None:
        if self.session is None:
            return
        self._replace_mask(self.session.reload())
        self.dirty = False
        self.conflict.visible = False
        self.viewer.layers[PREVIOUS_LAYER].data = (
            self.session.previous()
            if (self.session.parent > 1)
            else np.zeros_like(self.mask_layer.data)
        )
        self._update_panel()
        self._say(f"reloaded version {self.session.parent}; your edits were dropped")

    def _show_conflicts(self, merged: MergeResult | None) -> None:
        layer = self.viewer.layers[CONFLICT_LAYER]
        conflicts = None if merged is None else merged.conflicts
        layer.data = (
            np.zeros_like(self.mask_layer.data) if conflicts is None else conflicts.astype(np.uint8)
        )
        layer.visible = conflicts is not None and bool(conflicts.any())
        self.viewer.layers.selection.active = self.mask_layer


def open_review(
    store: Path, case_id: str | None, editor: str, viewer: napari.Viewer | None = None
) -> ReviewWidget:
    """Open the review app on a case (the first in the review queue when ``case_id`` is None).

    Returns the dock widget; its ``viewer`` is the napari viewer (created when not given).
    """
    import napari

    viewer = viewer or napari.Viewer(title="angioflow review")
    widget = ReviewWidget(viewer, store=Path(store), editor=editor)
    viewer.window.add_dock_widget(widget, name="angioflow review", area="right")
    chosen = case_id or (widget.case.choices[0] if widget.case.choices else None)
    if chosen is None:
        widget._say(f"store {store} holds no cases")
    else:
        widget.case.value = chosen
        widget.open_case(chosen)
    return widget


def read_store(path: str | list[str]) -> Any:
    """npe2 reader: a case store folder, or a case file inside one, opens the review widget."""
    if isinstance(path, list):
        return None
    candidate = Path(path)
    if candidate.suffix == ".h5" and candidate.parent.name == "cases":
        store, case_id = candidate.parent.parent, candidate.stem
    elif (candidate / "cases").is_dir():
        store, case_id = candidate, None
    else:
        return None

    def read(_: Any) -> list[tuple[None]]:
        import napari

        viewer = napari.current_viewer()
        editor = os.environ.get("ANGIOFLOW_EDITOR", "")
        open_review(store, case_id, editor, viewer)
        return [(None,)]

    return read
