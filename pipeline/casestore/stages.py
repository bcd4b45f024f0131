"""Stage outputs: derived arrays with the parameters, software version and time that made them.

Writing a stage again replaces its previous output; raw images and saved versions are never
touched by it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection

import h5py
import numpy as np

from ._file import now, read_checked, write_array
from .events import append_event
from .records import CaseStoreError, StageOutput, software_version

__all__ = ["check_stage_name", "read_stage", "write_stage"]

_STAGE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


def check_stage_name(stage: str) -> None:
    """Raise :class:`CaseStoreError` unless ``stage`` is lower_snake_case."""
    if not isinstance(stage, str) or not _STAGE_NAME.match(stage):
        raise CaseStoreError(f"invalid stage name {stage!r}; use lower_snake_case")


def write_stage(
    handle: h5py.File,
    stage: str,
    arrays: dict[str, np.ndarray],
    *,
    params_json: str,
    seconds: float,
) -> None:
    """Replace a stage's output group in an open case file and log the ``stage_output`` event.

    ``params_json`` is the parameters as JSON text, made before the commit so that parameters
    JSON cannot hold fail as the caller's error, not as a damaged file.
    """
    stages = handle.require_group("stages")
    if stage in stages:
        del stages[stage]
    group = stages.create_group(stage)
    for name, array in arrays.items():
        write_array(group, name, np.asarray(array))
    group.attrs.update(
        params=params_json,
        software_version=software_version(),
        finished=now(),
        seconds=float(seconds),
    )
    append_event(handle, "stage_output", {"stage": stage, "seconds": float(seconds)})


def read_stage(
    handle: h5py.File, case_id: str, stage: str, arrays: Collection[str] | None
) -> StageOutput:
    """A stage's arrays (all when ``arrays`` is None) and provenance, checksums verified."""
    if f"stages/{stage}" not in handle:
        raise CaseStoreError(f"case {case_id} has no output of stage {stage!r} yet")
    group = handle[f"stages/{stage}"]
    names = list(group) if arrays is None else list(arrays)
    missing = [n for n in names if n not in group]
    if missing:
        raise CaseStoreError(f"case {case_id}: stage {stage!r} holds no array {', '.join(missing)}")
    return StageOutput(
        arrays={n: read_checked(handle, f"stages/{stage}/{n}", handle.filename) for n in names},
        params=json.loads(group.attrs["params"]),
        software_version=str(group.attrs["software_version"]),
        finished=str(group.attrs["finished"]),
        seconds=float(group.attrs["seconds"]),
    )
