"""The command line turns user errors, and only those, into one line and exit code 2."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from angioflow.flows.cli import app
from typer.testing import CliRunner

CLI = Path(__file__).resolve().parents[1] / "flows" / "cli"


def test_a_defect_is_not_swallowed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An exception that is not an AngioflowError propagates with its traceback."""
    from angioflow.flows.cli import store

    def broken(root: Path, *, verify: bool = False) -> None:
        raise KeyError("a defect, not a user error")

    monkeypatch.setattr(store, "store_status", broken)
    result = CliRunner().invoke(app, ["status", "--store", str(tmp_path)])
    assert result.exit_code == 1
    assert isinstance(result.exception, KeyError)
    assert "error:" not in result.stderr


def test_a_user_error_is_one_line_with_exit_code_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["status", "--store", str(tmp_path / "absent")])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "no case store at" in result.stderr


def _handled(handler: ast.ExceptHandler) -> list[str]:
    if handler.type is None:
        return ["<bare except>"]
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return [ast.unparse(t) for t in types]


def test_the_cli_catches_only_angioflow_errors() -> None:
    """Expected failures are translated into AngioflowError subclasses where they happen, in
    the library; the command modules catch nothing else."""
    caught = {
        f"{path.name}:{handler.lineno}": name
        for path in sorted(CLI.glob("*.py"))
        for handler in ast.walk(ast.parse(path.read_text()))
        if isinstance(handler, ast.ExceptHandler)
        for name in _handled(handler)
    }
    assert caught and set(caught.values()) == {"AngioflowError"}, caught
