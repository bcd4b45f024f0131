"""How the command line writes: one console for results, one for errors and warnings."""

from __future__ import annotations

import json
from typing import Any, NoReturn

import typer
from angioflow.pipeline.display import printable
from rich.console import Console
from rich.markup import escape

__all__ = ["console", "errors", "fail", "print_json", "say", "shown", "warn"]

console = Console()
errors = Console(stderr=True)


def fail(message: str) -> NoReturn:
    """Print ``error: message`` (one line, on stderr) and exit with code 2."""
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def shown(text: str) -> str:
    """User-controlled text (names, notes, folder names) safe to print: control characters
    escaped, no rich markup."""
    return escape(printable(text))


def say(text: str) -> None:
    """A result line on stdout, never wrapped or highlighted."""
    console.print(text, highlight=False, soft_wrap=True)


def warn(label: str, text: str) -> None:
    """``label text`` on stderr, the label in yellow."""
    errors.print(f"[yellow]{label}[/] {text}", highlight=False, soft_wrap=True)


def print_json(document: Any) -> None:
    """A ``--json`` summary on stdout."""
    typer.echo(json.dumps(document, indent=2))
