"""The files of a reading study's report: ``report.json`` and the ``report.png`` figure beside
the study, and the categories of ``study create`` parsed from ``NAME=FILE.h5``."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from angioflow.flows.study import StudyError, study_report

__all__ = ["StudyReport", "serve_reader", "synthetic_categories", "write_study_report"]


def synthetic_categories(items: list[str]) -> dict[str, Path]:
    """``{name: file}`` of ``--synthetic NAME=FILE.h5`` options.

    Raises
    ------
    StudyError
        An item is not ``NAME=FILE`` or a name is given twice.
    """
    sets: dict[str, Path] = {}
    for item in items:
        name, _, file = item.partition("=")
        if not name or not file:
            raise StudyError(f"--synthetic {item!r}: write NAME=FILE.h5")
        if name in sets:
            raise StudyError(f"--synthetic: category {name!r} is given twice")
        sets[name] = Path(file)
    return sets


@dataclass(frozen=True)
class StudyReport:
    """A study's results (see :func:`angioflow.flows.study.study_report`) and their folder."""

    report: dict[str, Any]
    folder: Path


def write_study_report(
    study: Path, key: Path | None = None, out: Path | None = None
) -> StudyReport:
    """Score the study's answers against its key and write ``report.json`` and ``report.png``
    into ``out`` (default: ``<study>.report``).

    Raises
    ------
    StudyError
        Not a study folder, or its key is missing or of another study.
    """
    from angioflow.flows.reports import study_figure

    report = study_report(study, key)
    folder = out or study.with_name(study.name + ".report")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    study_figure(report).savefig(folder / "report.png", dpi=100, bbox_inches="tight")
    return StudyReport(report, folder)


def serve_reader(
    study: Path, reader: str, *, port: int = 0, on_ready: Callable[[str], None] | None = None
) -> None:
    """Serve ``reader``'s page of ``study`` on 127.0.0.1 until Ctrl-C; ``on_ready`` receives
    its address first. Every answer is saved as it is given, so stopping loses nothing.

    Raises
    ------
    StudyError
        Not a study folder, an unusable reader name, or the port is taken.
    """
    from angioflow.flows.study_reader import ReaderServer

    server = ReaderServer(study, reader, port)
    if on_ready is not None:
        on_ready(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # Ctrl-C is how a reading session ends
        return
