"""Review gate commands: review (the napari app) and approve."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from angioflow.flows.cli._options import CaseArgument, EditorOption, StoreChoice, store_command
from angioflow.flows.cli._render import say, shown
from angioflow.flows.review import approve_case, open_review_app
from angioflow.pipeline.casestore import MaskKind


@store_command
def review(
    case: Annotated[
        str | None, typer.Argument(help="Case id [default: the first case waiting for review]")
    ] = None,
    editor: EditorOption = "",
    *,
    where: StoreChoice,
) -> None:
    """Open napari on a case: correct the vessel mask (gate 1) or the A/V mask (gate 2)."""
    open_review_app(where.root, case, editor)


@store_command
def approve(
    case: CaseArgument,
    stage: Annotated[MaskKind, typer.Option(help="Which mask: vessel (gate 1) or av (gate 2)")],
    editor: EditorOption = "",
    mask: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Mask edited in another tool (PNG, TIFF, ...): checked, saved as a new "
            "version and approved",
        ),
    ] = None,
    parent: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Version the --mask was edited from [default: the one `inspect` stamped in "
            "the PNG]; refused when a later version exists",
        ),
    ] = None,
    force_reason: Annotated[
        str,
        typer.Option(
            help="Import a --mask that fails the plausibility checks (empty, full, far from "
            "the baseline); the reason is kept in its history"
        ),
    ] = "",
    version: Annotated[
        int | None, typer.Option(min=1, help="Version to approve [default: the latest]")
    ] = None,
    note: Annotated[str, typer.Option(help="Comment stored with an imported mask")] = "",
    *,
    where: StoreChoice,
) -> None:
    """Approve a mask version (or import an edited mask, then approve it); the case moves on."""
    done = approve_case(
        where.root,
        case,
        stage,
        editor=editor,
        mask=mask,
        parent=parent,
        force_reason=force_reason,
        version=version,
        note=note,
    )
    if done.imported is not None:
        forced = f", forced past: {done.imported.forced}" if done.imported.forced else ""
        say(
            f"saved the imported mask as {stage.value} version {done.version} (parent "
            f"{done.imported.parent}){forced}"
        )
    redo = (
        "; its A/V labels are redone by the next `angioflow curate` and reviewed again"
        if done.av_redone
        else ""
    )
    say(
        f"{shown(done.editor)} approved {stage.value} version {done.version} of {case}; stage "
        f"now {done.stage}{redo}"
    )
