"""Files shipped inside the ``angioflow`` package: the recipes in ``configs/`` and the default
``data_catalog.yaml``. They are found through the installed package, so every command works
from any folder."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["packaged_file"]


def packaged_file(relative: str) -> Path:
    """The path of a file shipped with angioflow, e.g. ``packaged_file("configs/vessel.yaml")``.

    The package is installed as plain files (a wheel or an editable checkout, never a zip), so
    the path can be opened and read like any other.
    """
    return Path(str(files("angioflow").joinpath(relative)))
