"""Settings files: YAML (or JSON) mappings that may extend another file with ``base:``.

A variant of a recipe names the recipe it changes and only the keys it changes::

    # configs/vessel_longer.yaml
    base: vessel.yaml
    steps: 12000

Nested mappings (``model:``) merge key by key; any other value (lists included) replaces the
base's. ``base`` is a path relative to the file's own folder and must stay inside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from angioflow.pipeline.errors import AngioflowError
from pydantic import BaseModel, ValidationError

__all__ = ["SettingsFileError", "load_settings", "merge_settings", "read_settings"]

Settings = TypeVar("Settings", bound=BaseModel)

# Deeper chains are a mistake, not a design.
MAX_BASE_DEPTH = 8


class SettingsFileError(AngioflowError, ValueError):
    """A settings file that is missing, malformed, or extends a file it may not."""


def merge_settings(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` laid over ``base``: nested mappings merge, other values replace.

    Example
    -------
    >>> merge_settings({"steps": 10, "model": {"depth": 4, "width": 16}}, {"model": {"width": 24}})
    {'steps': 10, 'model': {'depth': 4, 'width': 24}}
    """
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_settings(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_settings(path: Path) -> dict[str, Any]:
    """The settings in ``path``, merged over the file its ``base`` key names (recursively).

    Parameters
    ----------
    path : Path
        A YAML or JSON file holding a mapping (read with ``yaml.safe_load``); an empty file
        is an empty mapping.

    Returns
    -------
    dict
        The merged settings, without the ``base`` key.

    Raises
    ------
    SettingsFileError
        If a file is missing or not a mapping, ``base`` is not a relative path inside the
        file's folder, or the ``base`` chain loops.
    """
    return _read(Path(path), chain=())


def _read(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    if not path.is_file():
        raise SettingsFileError(f"settings file {path} does not exist")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise SettingsFileError(f"settings file {path} is not valid YAML: {error}") from None
    if not isinstance(document, dict):
        raise SettingsFileError(f"settings file {path} must hold a mapping of options")
    base = document.pop("base", None)
    if base is None:
        return document
    resolved = path.resolve()
    if resolved in chain:
        raise SettingsFileError(f"settings file {path}: its base chain loops back to {base!r}")
    if len(chain) >= MAX_BASE_DEPTH:
        raise SettingsFileError(
            f"settings file {path}: more than {MAX_BASE_DEPTH} bases deep; flatten the chain"
        )
    folder = resolved.parent
    if (
        not isinstance(base, str)
        or Path(base).is_absolute()
        or folder not in (folder / base).resolve().parents
    ):
        raise SettingsFileError(
            f"settings file {path}: base {base!r} must be a relative path to a file in "
            f"{folder} (copy the base file there)"
        )
    return merge_settings(_read((folder / base).resolve(), (*chain, resolved)), document)


def load_settings(
    kind: type[Settings], path: Path | None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Settings of ``kind`` (a pydantic model) from ``path`` (None: the built-in defaults) with
    ``overrides`` (command-line options) laid over the file's values.

    Raises
    ------
    SettingsFileError
        If the file cannot be read or its values do not validate; the message names the file
        and every wrong field.
    """
    values = {**(read_settings(path) if path is not None else {}), **(overrides or {})}
    try:
        return kind.model_validate(values)
    except ValidationError as error:
        raise SettingsFileError(f"{path or 'settings'}: {_describe(error)}") from None


def _describe(error: ValidationError) -> str:
    """A pydantic error as one line: misspelt names together, then each wrong value."""
    problems = error.errors(include_url=False, include_input=False)
    unknown = [".".join(map(str, p["loc"])) for p in problems if p["type"] == "extra_forbidden"]
    parts = [f"unknown settings {', '.join(unknown)} (misspelt?)"] if unknown else []
    parts += [
        f"{'.'.join(map(str, p['loc'])) or 'settings'}: {p['msg']}"
        for p in problems
        if p["type"] != "extra_forbidden"
    ]
    return "; ".join(parts)
