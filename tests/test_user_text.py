"""Text that users control (editor names, notes) never reaches the terminal raw (issue 30 L3)."""

from __future__ import annotations

from pathlib import Path

import pytest
from angioflow.flows.cli import app
from angioflow.pipeline.casestore import CaseStore
from support import copy_store
from typer.testing import CliRunner

pytestmark = pytest.mark.slow  # starts from the curated store (a Prefect server)

runner = CliRunner()


def test_escape_codes_in_an_editor_name_are_printed_escaped(
    curated_store_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from angioflow.flows import cli

    monkeypatch.setattr(cli.console, "_width", 250)  # the history table must not wrap the name
    store = copy_store(curated_store_template, tmp_path / "store")
    case = CaseStore(store, create=False).case_ids()[0]
    editor = "dr\x1b[2Jx\nlee"  # clears a terminal screen and forges a second line
    approved = runner.invoke(
        app, ["approve", case, "--store", str(store), "--stage", "vessel", "--editor", editor]
    )
    assert approved.exit_code == 0, approved.output
    assert "\x1b[2J" not in approved.output and "dr\\x1b[2Jx\\nlee approved" in approved.output
    history = runner.invoke(app, ["history", case, "--store", str(store), "--json"])
    assert history.exit_code == 0, history.output
    assert "\x1b[2J" not in history.output  # JSON escapes it; the table below must too
    table = runner.invoke(app, ["history", case, "--store", str(store)])
    assert "\x1b[2J" not in table.output and "dr\\x1b[2Jx\\nlee" in table.output
