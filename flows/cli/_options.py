"""Options shared by several commands, and the case store and catalog they name."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer
from angioflow.flows.catalog import find_catalog
from angioflow.flows.cli._app import app, user_errors

__all__ = [
    "PUBLIC_DATA",
    "CaseArgument",
    "CatalogOption",
    "DaskAddressOption",
    "DataOption",
    "EditorOption",
    "JsonOption",
    "RunnerOption",
    "StoreOption",
    "WorkersOption",
    "StoreChoice",
    "option_group",
    "store_command",
]

CatalogOption = Annotated[
    Path | None,
    typer.Option(
        "--catalog",
        help="Data catalog YAML [default: ./data_catalog.yaml, else the one shipped]",
        dir_okay=False,
    ),
]
CaseArgument = Annotated[str, typer.Argument(help="Case id as shown by `angioflow status`")]
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


@dataclass(frozen=True)
class StoreChoice:
    """The case store a command works on: ``--store`` and ``--catalog`` as given."""

    store: Path | None
    catalog: Path | None

    @property
    def root(self) -> Path:
        """``--store``, else the catalog's ``case_store``."""
        return (
            self.store if self.store is not None else find_catalog(self.catalog).path("case_store")
        )


def option_group(
    name: str, options: list[tuple[str, Any, Any]], build: Callable[..., Any] = dict
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator giving a command the ``options`` (parameter name, ``Annotated`` option type,
    default) after its own, handed to it as one value, the keyword-only parameter ``name``:
    ``build`` called with the options' values as keywords (a dict by default). The options
    several commands take, declared once (Typer has no option groups of its own)."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        own = inspect.signature(command, eval_str=True)
        parameters = [p for p in own.parameters.values() if p.name != name] + [
            inspect.Parameter(
                option, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind
            )
            for option, kind, default in options
        ]

        @wraps(command)
        def with_group(**values: Any) -> Any:
            group = {option: values.pop(option) for option, _, _ in options}
            return command(**values, **{name: build(**group)})

        with_group.__signature__ = own.replace(parameters=parameters)  # type: ignore[attr-defined]
        with_group.__annotations__ = {p.name: p.annotation for p in parameters}
        return with_group

    return decorate


_in_case_store = option_group(
    "where", [("store", StoreOption, None), ("catalog", CatalogOption, None)], build=StoreChoice
)


def store_command(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` registered on ``angioflow`` as a command on the case store: ``--store`` and
    ``--catalog`` handed to it as ``where`` (a :class:`StoreChoice`), its user errors printed
    as one line (:func:`user_errors`)."""
    return app.command()(user_errors(_in_case_store(command)))


# the public datasets folder and the catalog naming it, as every command reading the datasets
# takes them (--data, --catalog)
PUBLIC_DATA = [("data", DataOption, None), ("catalog", CatalogOption, None)]
