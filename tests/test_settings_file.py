"""Settings files: a recipe variant names its base file and only the keys it changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from angioflow.flows.cli import app
from angioflow.flows.settings_file import SettingsFileError, read_settings
from typer.testing import CliRunner


def test_a_chain_of_bases_merges_nested_mappings(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("steps: 10\nmodel: {depth: 4, width: 16}\ndatasets: [x, y]\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\nmodel: {width: 24}\n")
    (tmp_path / "c.yaml").write_text("base: ./b.yaml\ndatasets: [z]\n")
    assert read_settings(tmp_path / "c.yaml") == {
        "steps": 10,
        "model": {"depth": 4, "width": 24},
        "datasets": ["z"],  # lists replace, they do not concatenate
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("base: ../outside.yaml\n", "must be a relative path to a file in"),
        ("base: /etc/hostname\n", "must be a relative path to a file in"),
        ("base: missing.yaml\n", "missing.yaml does not exist"),
        ("base: loop.yaml\n", "base chain loops"),
        ("- a list\n", "must hold a mapping"),
        ("steps: [1\n", "is not valid YAML"),
    ],
)
def test_bad_settings_files_are_refused_with_the_reason(
    tmp_path: Path, text: str, message: str
) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    (tmp_path / "outside.yaml").write_text("steps: 1\n")
    (folder / "loop.yaml").write_text("base: variant.yaml\n")
    (folder / "variant.yaml").write_text(text)
    with pytest.raises(SettingsFileError, match=message):
        read_settings(folder / "variant.yaml")


def test_the_training_cli_reports_a_bad_base_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "variant.yaml").write_text("base: ../../configs/vessel.yaml\nsteps: 5\n")
    result = CliRunner().invoke(
        app,
        [
            "train",
            "vessel",
            "--config",
            str(tmp_path / "variant.yaml"),
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert result.exit_code == 2
    assert "must be a relative path to a file in" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "x").exists()
