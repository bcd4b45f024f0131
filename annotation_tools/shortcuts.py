"""The review app's keys: label keys on the mask layer, and napari actions (listed and
re-assignable in napari's Preferences > Shortcuts) bound while the review widget is docked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from angioflow.pipeline.casestore import MaskKind
from app_model.types import KeyCode, KeyMod
from napari.settings import get_settings
from napari.utils.action_manager import action_manager
from qtpy.QtCore import QEvent, QObject

__all__ = [
    "LABEL_KEYS",
    "REDO_KEY",
    "REVIEW_ACTIONS",
    "UNDO_KEY",
    "DockWatcher",
    "bind_review_actions",
    "review_action_unbinder",
    "shortcut_text",
]

LABEL_KEYS = {
    MaskKind.VESSEL: {"v": (1, "vessel")},
    MaskKind.AV: {"a": (1, "artery"), "v": (2, "vein"), "c": (3, "crossing / uncertain")},
}
# name -> (description, widget method, default shortcut). A shortcut the reviewer assigned in
# napari's preferences wins over the default.
REVIEW_ACTIONS = {
    "angioflow:save_draft": ("angioflow: save draft version", "save", "Shift-S"),
    "angioflow:next_case": ("angioflow: next case in the queue", "next_case", "Shift-N"),
    "angioflow:toggle_previous": (
        "angioflow: show / hide the previous version",
        "toggle_previous",
        "O",
    ),
}
UNDO_KEY = KeyMod.CtrlCmd | KeyCode.KeyZ
REDO_KEY = KeyMod.CtrlCmd | KeyMod.Shift | KeyCode.KeyZ


def shortcut_text(kind: MaskKind) -> str:
    """The keyboard shortcuts of a gate, one per line, as the widget lists them."""
    lines = [f"{k.upper()}: paint {name}" for k, (_, name) in LABEL_KEYS[kind].items()]
    lines += ["P / E / F: paint / erase / fill", "[ / ]: smaller / larger brush"]
    lines.append("Ctrl-Z / Ctrl-Shift-Z: undo / redo (within this case)")
    for name, (text, _, default) in REVIEW_ACTIONS.items():
        keys = action_manager._shortcuts.get(name) or [default]
        lines.append(f"{' or '.join(str(k) for k in keys)}: {text.removeprefix('angioflow: ')}")
    lines.append("Approve and reject have no shortcut, on purpose")
    return "\n".join(lines)


def bind_review_actions(viewer: Any, widget: Any) -> None:
    """Register :data:`REVIEW_ACTIONS` as napari actions calling ``widget``'s methods, and bind
    their shortcuts (the reviewer's own from napari's settings, else the defaults)."""
    user_shortcuts = get_settings().shortcuts.shortcuts
    for name, (description, method, default) in REVIEW_ACTIONS.items():
        action_manager.register_action(
            name, _calling(widget, method), description, keymapprovider=viewer
        )
        for shortcut in user_shortcuts.get(name, [default]):
            action_manager.bind_shortcut(name, shortcut)


def _calling(widget: Any, method: str) -> Callable[[Any], None]:
    def action(_viewer: Any) -> None:  # napari passes the keymap provider
        getattr(widget, method)()

    return action


def review_action_unbinder(viewer: Any) -> Callable[..., None]:
    """A callable unbinding the review actions' shortcuts from ``viewer`` (no widget reference:
    it may run while the widget is being destroyed)."""

    def unbind(*_: Any) -> None:
        for name, (_, _, default) in REVIEW_ACTIONS.items():
            action = action_manager._actions.get(name)
            if action is not None and action.keymapprovider is viewer:
                action_manager.unbind_shortcut(name)
            else:  # another viewer's review widget holds the action now
                for shortcut in {default, *action_manager._shortcuts.get(name, [])}:
                    viewer.bind_key(shortcut, None)

    return unbind


class DockWatcher(QObject):
    """Calls ``on_docked`` / ``on_undocked`` when a widget gains or loses its parent window."""

    def __init__(self, widget: Any, on_docked: Any, on_undocked: Any) -> None:
        super().__init__(widget)
        self._on_docked, self._on_undocked = on_docked, on_undocked
        widget.installEventFilter(self)

    def eventFilter(self, watched: Any, event: Any) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.ParentChange:
            (self._on_undocked if watched.parent() is None else self._on_docked)()
        return False
