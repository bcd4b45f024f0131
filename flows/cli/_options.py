"""Options shared by several commands, and the case store and catalog they name."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from angioflow.flows.catalog import find_catalog

__all__ = [
    "CatalogOption",
    "DaskAddressOption",
    "DataOption",
    "EditorOption",
    "JsonOption",
    "RunnerOption",
    "StoreOption",
    "WorkersOption",
    "store_root",
]

CatalogOption = Annotated[
    Path | None,
    typer.Option(
        "--catalog",
        help="Data catalog YAML [default: ./data_catalog.yaml, else the one shipped]",
        dir_okay=False,
    ),
]
StoreOption = Annotated[
    Path | None,
    typer.Option("--store", help="Case store folder [default: the catalog's case_store]"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON summary instead of tables")]
RunnerOption = Annotated[
    str, typer.Option(help="Task runner: thread (this process) or dask (worker processes)")
]
DaskAddressOption = Annotated[
    str | None,
    typer.Option(help="dask.distributed scheduler (tcp://host:8786) [default: a LocalCluster]"),
]
WorkersOption = Annotated[int, typer.Option(min=1, help="LocalCluster worker processes (dask)")]
DataOption = Annotated[
    Path | None,
    typer.Option(
        help="The public datasets folder (DRIVE/, RITE/, LES-AV/, HRF-AV/) [default: the "
        "catalog's public_datasets]"
    ),
]
EditorOption = Annotated[
    str,
    typer.Option(
        envvar="ANGIOFLOW_EDITOR", help="Your name, recorded with every save and approval"
    ),
]


def store_root(store: Path | None, catalog: Path | None) -> Path:
    """``--store``, else the catalog's ``case_store``."""
    return store if store is not None else find_catalog(catalog).path("case_store")
