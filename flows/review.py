"""The review gates from the command line: approving a mask version (or importing a mask edited
in another tool and approving it), and opening the napari review app on a case."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from angioflow.pipeline.casestore import CaseStore, MaskKind
from angioflow.pipeline.errors import AngioflowError
from angioflow.pipeline.review import ImportedMask, MaskImport, import_mask

__all__ = ["Approval", "ReviewRequestError", "approve_case", "open_review_app", "require_editor"]


class ReviewRequestError(AngioflowError, ValueError):
    """A review or approval asked for in a way that cannot be carried out; the message says
    which option to give."""


class ReviewAppMissing(AngioflowError, ImportError):
    """The napari review app's optional dependencies are not installed."""


def require_editor(editor: str) -> str:
    """``editor`` without surrounding blanks; every save and approval records a name."""
    if not editor.strip():
        raise ReviewRequestError("give your name with --editor NAME (or set $ANGIOFLOW_EDITOR)")
    return editor.strip()


@dataclass(frozen=True)
class Approval:
    """An approval done: the mask, its version, the case's stage after it.

    Attributes
    ----------
    imported : ImportedMask or None
        The new version saved from ``--mask``, when the approval imported one.
    av_redone : bool
        A vessel approval of a case that already had an A/V mask: the A/V labels are redone by
        the next curate run and reviewed again.
    """

    case_id: str
    kind: MaskKind
    version: int
    editor: str
    stage: str
    imported: ImportedMask | None
    av_redone: bool


def approve_case(
    root: Path,
    case_id: str,
    kind: MaskKind,
    *,
    editor: str,
    mask: Path | None = None,
    parent: int | None = None,
    force_reason: str = "",
    version: int | None = None,
    note: str = "",
) -> Approval:
    """Approve ``version`` (default: the latest) of a case's ``kind`` mask, or check and save
    the edited ``mask`` file as a new version and approve that.

    Raises
    ------
    ReviewRequestError
        No editor name, options of both ways given, or no mask to approve yet.
    MaskImportError, CaseStoreError
        The mask file or the case is refused; the message says why.
    """
    editor = require_editor(editor)
    store = CaseStore(root, create=False)
    summary = store.summary(case_id)
    imported = None
    if mask is not None:
        if version is not None:
            raise ReviewRequestError(
                "give either --mask (a new version) or --version (an existing one), not both"
            )
        request = MaskImport(mask, parent=parent, note=note, force_reason=force_reason)
        imported = import_mask(store, case_id, kind, request, editor=editor)
        version = imported.version
    else:
        if parent is not None or force_reason:
            raise ReviewRequestError(
                "--parent and --force-reason describe an imported --mask; give one"
            )
        version = version or summary.latest_versions[kind]
        if not version:
            raise ReviewRequestError(
                f"case {case_id} has no {kind.value} mask yet; run `angioflow curate` first"
            )
        store.approve(case_id, kind, version=version, editor=editor)
    after = store.summary(case_id)
    return Approval(
        case_id=case_id,
        kind=kind,
        version=version,
        editor=editor,
        stage=after.stage.value,
        imported=imported,
        av_redone=kind is MaskKind.VESSEL and bool(after.latest_versions[MaskKind.AV]),
    )


def open_review_app(root: Path, case_id: str | None, editor: str) -> None:
    """Open napari on ``case_id`` (default: the first waiting for review) and run it until the
    window closes.

    Raises
    ------
    ReviewAppMissing
        napari or Qt is not installed (the ``review`` extra).
    """
    try:
        import napari
        from angioflow.annotation_tools.app import open_review
    except ImportError as error:
        raise ReviewAppMissing(
            f"the review app needs napari and Qt ({error.name} is not installed): "
            "pip install 'angioflow[review]'"
        ) from None
    editor = require_editor(editor)
    store = CaseStore(root, create=False)
    if case_id is not None:
        store.summary(case_id)  # a clear error for an unknown or damaged case, before Qt
    open_review(store.root, case_id, editor)
    napari.run()
