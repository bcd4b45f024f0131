"""The ``angioflow`` Typer application and the one place user errors become exit code 2."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

import typer
from angioflow.flows.cli._render import fail
from angioflow.pipeline.errors import AngioflowError

__all__ = ["app", "user_errors"]

app = typer.Typer(
    name="angioflow",
    help="Curate FA-based retinal vessel and A/V ground truth; generate synthetic fundus sets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# commands that run Prefect flows (and may start Prefect's temporary API server)
_FLOW_COMMANDS = frozenset({"ingest", "curate", "demo", "serve"})


@app.callback()
def _every_command(context: typer.Context) -> None:
    # A temporary Prefect server must die with its command, even one killed with SIGKILL.
    if context.invoked_subcommand in _FLOW_COMMANDS:
        from angioflow.flows.prefect_server import use_watched_temporary_server

        use_watched_temporary_server()


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """An :class:`AngioflowError` becomes its one-line message and exit code 2, never a
    traceback. Any other exception is a defect and propagates."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except AngioflowError as error:
            fail(str(error))

    return wrapper
