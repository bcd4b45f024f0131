"""The data catalog: every dataset the flows read or write, named in ``data_catalog.yaml``.

Like Kedro's catalog, flows ask for datasets by name (``catalog.path("case_store")``) and the
YAML file decides where they live. Paths are relative to the catalog file's folder and may hold
``{placeholders}`` (``catalog.path("case_file", case_id="...")``); a resolved path never leaves
the catalog's folder, except the one fixed ``public_datasets`` folder the user supplies.
Top-level keys starting with ``_`` hold YAML anchors and are ignored.
"""

from __future__ import annotations

import re
import string
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml
from angioflow.flows.resources import packaged_file
from angioflow.pipeline.errors import AngioflowError
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

__all__ = [
    "LOCAL_CATALOG",
    "Catalog",
    "CatalogError",
    "DatasetEntry",
    "find_catalog",
    "load_catalog",
    "public_data_folder",
]

# A project folder's own catalog; without one, the catalog shipped with angioflow is used.
LOCAL_CATALOG = Path("data_catalog.yaml")
_PLACEHOLDER_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

DatasetType = Literal[
    "raw_case_folders",
    "case_store",
    "case_file",
    "model_weights",
    "hdf5_dataset",
    "report_folder",
    "public_datasets",
]


class CatalogError(AngioflowError, ValueError):
    """The catalog file is missing or invalid, or a dataset request is wrong."""


class DatasetEntry(BaseModel):
    """One named dataset: ``{type, filepath, load_args, save_args, versioned}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: DatasetType
    filepath: str
    load_args: dict[str, Any] = {}
    save_args: dict[str, Any] = {}
    versioned: bool = False

    @field_validator("filepath")
    @classmethod
    def _relative_inside(cls, value: str, info: ValidationInfo) -> str:
        path = PurePosixPath(value)
        if info.data.get("type") == "public_datasets":
            # read-only data supplied by the user, usually kept beside the project: it may lie
            # outside the catalog's folder, but a fixed folder takes no placeholders
            if not value or "{" in value or "}" in value:
                raise ValueError(f"must be one fixed folder without placeholders, got {value!r}")
            return value
        if not value or path.is_absolute() or ".." in path.parts:
            raise ValueError(
                f"must be a relative path inside the catalog's folder without '..', got {value!r}"
            )
        for _, field, _, _ in string.Formatter().parse(value):
            if field is not None and not field.isidentifier():
                raise ValueError(f"placeholder {{{field}}} in {value!r} is not a plain name")
        return value

    @property
    def placeholders(self) -> frozenset[str]:
        return frozenset(
            field for _, field, _, _ in string.Formatter().parse(self.filepath) if field
        )


class ScheduleEntry(BaseModel):
    """A flow's cron schedule for ``angioflow serve``: ``{cron, timezone, parameters}``, keyed
    by the flow's name (``ingest``, ``curate``, ``generate``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cron: str
    timezone: str = "UTC"
    parameters: dict[str, Any] = {}

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(f"cron {value!r} needs five fields: minute hour day month weekday")
        return value


class Catalog(BaseModel):
    """Validated catalog; ``root`` is the folder relative paths are resolved against."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1]
    datasets: dict[str, DatasetEntry]
    schedules: dict[str, ScheduleEntry] = {}
    root: Path

    def entry(self, name: str) -> DatasetEntry:
        """The entry of a named dataset; an unknown name is an error listing the known ones."""
        try:
            return self.datasets[name]
        except KeyError:
            known = ", ".join(sorted(self.datasets))
            raise CatalogError(f"unknown dataset {name!r}; the catalog defines: {known}") from None

    def path(self, name: str, **placeholders: str) -> Path:
        """Absolute path of a dataset, placeholders filled in.

        Raises
        ------
        CatalogError
            Unknown dataset, missing or extra placeholder, or a value that would leave the
            catalog's folder (values are single path components: no '/', no '..').
        """
        entry = self.entry(name)
        given, needed = set(placeholders), entry.placeholders
        if given != needed:
            raise CatalogError(
                f"dataset {name!r} ({entry.filepath}) needs placeholders {sorted(needed)}, "
                f"got {sorted(given)}"
            )
        for key, value in placeholders.items():
            if not _PLACEHOLDER_VALUE.match(str(value)) or ".." in str(value):
                raise CatalogError(
                    f"dataset {name!r}: placeholder {key}={value!r} must be one plain path "
                    "component (letters, digits, '_', '-', '.')"
                )
        root = self.root.resolve()
        resolved = (root / entry.filepath.format(**placeholders)).resolve()
        if entry.type != "public_datasets" and not resolved.is_relative_to(root):
            raise CatalogError(f"dataset {name!r} resolves to {resolved}, outside {root}")
        return resolved


def find_catalog(path: Path | None = None) -> Catalog:
    """The catalog a command uses: ``path`` (``--catalog FILE``) when given, else
    ``./data_catalog.yaml`` when the working folder has one, else the catalog shipped with
    angioflow, whose relative paths resolve against the working folder (so outputs never land
    inside the installed package).

    Raises
    ------
    CatalogError
        If the chosen file is missing or invalid.
    """
    if path is not None:
        return load_catalog(path)
    if LOCAL_CATALOG.is_file():
        return load_catalog(LOCAL_CATALOG)
    return load_catalog(packaged_file("data_catalog.yaml"), root=Path.cwd())


def public_data_folder(catalog: Catalog, given: Path | None = None) -> Path:
    """The folder of the public labelled datasets (DRIVE/, RITE/, LES-AV/, HRF-AV/): ``given``
    (``--data``) when set, else the catalog's ``public_datasets`` entry.

    Raises
    ------
    CatalogError
        If nothing is given and the catalog names no ``public_datasets``.
    """
    if given is not None:
        return given
    if "public_datasets" not in catalog.datasets:
        raise CatalogError(
            f"the catalog in {catalog.root} names no 'public_datasets' folder; add one "
            "(type: public_datasets) or pass --data FOLDER"
        )
    return catalog.path("public_datasets")


def load_catalog(path: Path, *, root: Path | None = None) -> Catalog:
    """Read and validate a catalog file.

    Parameters
    ----------
    path : Path
        The YAML file (``yaml.safe_load``).
    root : Path, optional
        The folder relative dataset paths resolve against; default: the file's folder.

    Returns
    -------
    catalog : Catalog

    Raises
    ------
    CatalogError
        If the file is missing, is not YAML, or any entry is invalid; the message names the
        file, the dataset and the field.

    Example
    -------
    >>> load_catalog(Path("data_catalog.yaml")).path("case_store")  # doctest: +SKIP
    PosixPath('/home/me/angioflow/data/02_cases')
    """
    if not path.is_file():
        raise CatalogError(
            f"no catalog file at {path}; pass --catalog FILE (the project's data_catalog.yaml)"
        )
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise CatalogError(f"{path}: not valid YAML ({error.problem}{where})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise CatalogError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from None
    if not isinstance(document, dict):
        raise CatalogError(f"{path}: must be a mapping with 'version' and 'datasets'")
    document = {k: v for k, v in document.items() if not str(k).startswith("_")}
    try:
        catalog = Catalog(**document, root=(root or path.parent).resolve())
    except ValidationError as error:
        raise CatalogError(f"{path}: {_describe(error)}") from None
    except TypeError as error:
        raise CatalogError(f"{path}: {error}") from None
    _check_schedules(catalog, path)
    return catalog


def _check_schedules(catalog: Catalog, path: Path) -> None:
    """Each schedule names a deployable flow and gives values its signature accepts: a typo is
    refused here, not when the deployment is registered or run."""
    if not catalog.schedules:
        return
    from angioflow.flows.deployments import FLOWS, check_parameters

    for name, schedule in catalog.schedules.items():
        if name not in FLOWS:
            raise CatalogError(
                f"{path}: schedules.{name}: no flow of that name; schedules are keyed by the flow "
                f"they run: {', '.join(FLOWS)}"
            )
        try:
            check_parameters(name, schedule.parameters)
        except ValueError as error:
            raise CatalogError(f"{path}: schedules.{name}.parameters: {error}") from None


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors(include_input=False, include_url=False):
        location = [str(part) for part in item["loc"]]
        if len(location) >= 2 and location[0] == "datasets":
            where = f"dataset {location[1]!r}" + (
                f" field {'.'.join(location[2:])!r}" if location[2:] else ""
            )
        else:
            where = f"field {'.'.join(location)!r}"
        problems.append(f"{where}: {item['msg']}")
    return "; ".join(problems)
