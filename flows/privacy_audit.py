"""``angioflow audit``: the privacy scan of everything angioflow wrote, as a result object.

The store, the catalog's output datasets and any further paths are searched for the raw
cases' patient ids, names and birth dates and for image metadata; findings name the file and
place, never the identifier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from angioflow.flows.catalog import Catalog
from angioflow.pipeline.audit import Finding, audit_paths, identifiers_from_raw
from angioflow.pipeline.errors import AngioflowError, read_text

__all__ = ["AuditInputError", "AuditResult", "audit_outputs", "catalog_outputs"]

# datasets angioflow writes that can carry what it read: scanned whenever a catalog names them
OUTPUT_DATASETS = ("training_set", "synthetic_set", "reports")


class AuditInputError(AngioflowError, ValueError):
    """A folder or identifier file to audit with that cannot be read; the message names it."""


@dataclass(frozen=True)
class AuditResult:
    """What was scanned and found.

    Attributes
    ----------
    scanned : list of Path
        Files and folders searched.
    not_found : list of Path
        Given paths that do not exist (skipped).
    identifiers : int
        Number of identifiers searched for.
    files : int
        Number of files read.
    findings : list of Finding
    metadata_only : bool
        No raw folder and no identifier file: only image metadata was checked.
    """

    scanned: list[Path]
    not_found: list[Path]
    identifiers: int
    files: int
    findings: list[Finding] = field(default_factory=list)
    metadata_only: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The ``audit --json`` document."""
        return {
            "scanned": [str(r) for r in self.scanned],
            "not_found": [str(r) for r in self.not_found],
            "identifiers": self.identifiers,
            "findings": [f.__dict__ for f in self.findings],
        }


def catalog_outputs(catalog: Catalog) -> list[Path]:
    """The folders of the catalog's output datasets (a per-run file: its folder)."""
    roots = []
    for name in OUTPUT_DATASETS:
        if name in catalog.datasets:
            filepath = Path(catalog.entry(name).filepath)
            roots.append(catalog.root / (filepath.parent if "{" in filepath.name else filepath))
    return roots


def audit_outputs(
    paths: list[Path], *, raw: Path | None = None, identifiers: Path | None = None
) -> AuditResult:
    """Search every file under ``paths`` (the ``raw`` folder itself excepted) for the
    identifiers of the cases in ``raw`` and those listed in the ``identifiers`` file, and for
    image metadata.

    Raises
    ------
    AuditInputError
        ``raw`` is not a folder or the ``identifiers`` file cannot be read.
    """
    if raw is not None and not raw.is_dir():
        raise AuditInputError(
            f"raw folder {raw} does not exist; pass the folder of the raw case folders"
        )
    extra: list[str] = []
    if identifiers is not None:
        extra = read_text(
            identifiers,
            "utf-8",
            lambda error: AuditInputError(
                f"identifier file {identifiers} cannot be read ({error.__class__.__name__}); "
                "pass a UTF-8 text file, one identifier per line"
            ),
        ).splitlines()
    missing = [r for r in paths if not r.exists()]
    roots = [r for r in paths if r.exists()]
    searched = identifiers_from_raw(raw, extra) if raw is not None else []
    skipped = raw.resolve() if raw is not None else None
    findings = audit_paths(roots, searched, exclude=[raw] if raw is not None else [])
    files = sum(
        1
        for r in roots
        for p in ([r] if r.is_file() else r.rglob("*"))
        if p.is_file() and not (skipped and p.resolve().is_relative_to(skipped))
    )
    return AuditResult(
        scanned=roots,
        not_found=missing,
        identifiers=len(searched),
        files=files,
        findings=findings,
        metadata_only=raw is None and not extra,
    )
