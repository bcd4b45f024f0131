"""Autosaves: a reviewer's unsaved edits of a mask, kept so they survive a crash.

They live beside the case files, one per case, mask and editor, in
``<store>/autosave/<case_id>/<kind>.<editor digest>.npz`` (written atomically); they are not
versions, and saving a version removes the editor's autosave of that mask.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ._file import now, write_atomically
from .records import Autosave, CaseStoreError, MaskKind

__all__ = ["autosave_path", "list_autosaves", "read_autosave", "write_autosave"]


def autosave_path(folder: Path, case_id: str, kind: MaskKind, editor: str) -> Path:
    """Where ``editor``'s autosave of a mask lives; the editor's name is only a digest."""
    digest = hashlib.sha256(editor.strip().encode()).hexdigest()[:16]
    return folder / case_id / f"{kind.value}.{digest}.npz"


def write_autosave(
    path: Path, mask: np.ndarray, *, editor: str, parent: int, store_root: Path
) -> None:
    """Replace the autosave at ``path``; a crash mid-write keeps the previous one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = json.dumps({"editor": editor.strip(), "parent": int(parent), "time": now()})
    write_atomically(
        path,
        lambda out: np.savez_compressed(
            out, mask=mask.astype(np.uint8), meta=np.frombuffer(meta.encode(), np.uint8)
        ),
        store_root,
    )


def read_autosave(path: Path, kind: MaskKind, *, with_mask: bool) -> Autosave:
    """An autosave's metadata, and its mask when ``with_mask``."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(archive["meta"].tobytes().decode())
            mask = archive["mask"] if with_mask else None
    except (OSError, ValueError, KeyError) as error:
        raise CaseStoreError(
            f"autosave {path} is unreadable ({error.__class__.__name__}); delete it to go on"
        ) from None
    return Autosave(kind, str(meta["editor"]), int(meta["parent"]), str(meta["time"]), mask)


def list_autosaves(folder: Path) -> list[Autosave]:
    """Every autosave in a case's autosave folder (metadata only), oldest first."""
    kinds = {k.value for k in MaskKind}
    found = [
        read_autosave(p, MaskKind(p.name.split(".")[0]), with_mask=False)
        for p in folder.glob("*.npz")
        if p.name.split(".")[0] in kinds
    ]
    return sorted(found, key=lambda a: a.time)
