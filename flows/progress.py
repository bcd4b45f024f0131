"""Progress of a flow over its cases: n/N, rate and ETA, for a person watching hundreds of exams.

A flow counts finished cases with :class:`CaseProgress`. Each count updates a Prefect progress
artifact (the flow run's *Artifacts* tab in a remote UI), is logged to the run's logs at every
tenth of the way, and is sent as a record of the ``angioflow.progress`` logger, from which the
CLI draws its terminal bar (:func:`terminal_progress`): the flow stays free of any terminal code
and works the same when a worker runs it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

__all__ = ["PROGRESS_LOGGER", "CaseProgress", "format_eta", "terminal_progress"]

PROGRESS_LOGGER = "angioflow.progress"
# Its records feed the terminal bar only; the run's own logger carries the readable lines.
logging.getLogger(PROGRESS_LOGGER).propagate = False


def format_eta(seconds: float) -> str:
    """``3725`` -> ``'1 h 02 min'``; ``75`` -> ``'1 min 15 s'``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


class CaseProgress:
    """Counts the finished cases of one flow run.

    Parameters
    ----------
    key : str
        Artifact key (lowercase letters, digits and dashes), e.g. ``"ingest-progress"``.
    total : int
        Cases the run will finish.
    verb : str
        What is done to a case, for the messages (``"ingested"``).
    """

    def __init__(self, key: str, total: int, verb: str) -> None:
        # Prefect is imported by the flows that count, not by the CLI that draws the bar
        from prefect.artifacts import create_progress_artifact

        self.key, self.total, self.verb = key, total, verb
        self.done = 0
        self._started = time.monotonic()
        self._logged_tenths = 0
        self._artifact = create_progress_artifact(
            progress=0.0 if total else 100.0,
            key=key,
            description=f"cases {verb}: 0/{total}",
        )
        self._emit()

    def advance(self, count: int = 1) -> None:
        """Record ``count`` more finished cases (failed or not)."""
        from prefect import get_run_logger
        from prefect.artifacts import update_progress_artifact

        self.done = min(self.total, self.done + count)
        update_progress_artifact(
            self._artifact,
            progress=100.0 * self.done / max(self.total, 1),
            description=f"cases {self.verb}: {self.message()}",
        )
        tenths = 10 * self.done // max(self.total, 1)
        if tenths > self._logged_tenths:
            self._logged_tenths = tenths
            get_run_logger().info("%s", self.message())
        self._emit()

    def message(self) -> str:
        """``'37/300 cases, 2.1 cases/min, ETA 2 h 05 min'``."""
        elapsed = time.monotonic() - self._started
        text = f"{self.done}/{self.total} cases {self.verb}"
        if self.done and elapsed > 0:
            rate = self.done / elapsed
            text += f", {60 * rate:.1f} cases/min"
            if self.done < self.total:
                text += f", ETA {format_eta((self.total - self.done) / rate)}"
        return text

    def _emit(self) -> None:
        logging.getLogger(PROGRESS_LOGGER).info(
            "%s", self.message(), extra={"case_progress": (self.key, self.done, self.total)}
        )


class _RateColumn(ProgressColumn):
    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{60 * speed:.1f} cases/min", style="dim")


class _BarHandler(logging.Handler):
    def __init__(self, progress: Any, label: str) -> None:
        super().__init__()
        self.progress, self.label = progress, label
        self.bars: dict[str, Any] = {}

    def emit(self, record: logging.LogRecord) -> None:
        key, done, total = getattr(record, "case_progress", (None, 0, 0))
        if key is None:
            return
        if key not in self.bars:
            self.bars[key] = self.progress.add_task(self.label, total=total)
        self.progress.update(self.bars[key], completed=done, total=total)


@contextlib.contextmanager
def terminal_progress(console: Any, label: str, *, enabled: bool = True) -> Iterator[None]:
    """Draw a bar (n/N, cases per minute, ETA) on ``console`` from the flows' progress records.

    Parameters
    ----------
    console : rich.console.Console
        Where to draw: the CLI passes its stderr console so ``--json`` stdout stays pure.
    label : str
        Shown left of the bar (``"ingest"``).
    enabled : bool
        False draws nothing (``--quiet`` runs, tests).
    """
    if not enabled:
        yield
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        _RateColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    logger = logging.getLogger(PROGRESS_LOGGER)
    with Progress(*columns, console=console, transient=False) as progress:
        handler = _BarHandler(progress, label)
        logger.addHandler(handler)
        previous_level = logger.level
        logger.setLevel(logging.INFO)
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(previous_level)
