"""docs/benchmarks.md is exactly what benchmarks/render.py makes of the committed result files
(so nobody edits it by hand), and the renderer refuses a result file it cannot read from."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "benchmarks" / "results"


def _render(tmp_path: Path, results: Path = RESULTS) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "render.py"), "--results", str(results)]
        + ["--out", str(tmp_path / "benchmarks.md")],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_committed_page_is_the_rendering_of_the_committed_results(tmp_path: Path) -> None:
    rendered = _render(tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    assert page == (tmp_path / "benchmarks.md").read_text(), (
        "docs/benchmarks.md differs from its rendering: run `make bench-report` (never edit it)"
    )
    assert "do not edit" in page.splitlines()[2]


@pytest.mark.parametrize(
    ("drop", "field"),
    [(("result", "drive_test", "auc"), "drive_test.auc"), (("commit",), "commit")],
)
def test_a_result_file_missing_a_field_is_refused_in_one_line(
    tmp_path: Path, drop: tuple[str, ...], field: str
) -> None:
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results)
    document = json.loads((results / "vessel.json").read_text())
    holder = document
    for key in drop[:-1]:
        holder = holder[key]
    del holder[drop[-1]]
    (results / "vessel.json").write_text(json.dumps(document))
    rendered = _render(tmp_path, results)
    assert rendered.returncode == 1
    assert rendered.stderr.splitlines() == [
        f"render: {results / 'vessel.json'}: no field {field!r}"
    ]
    assert not (tmp_path / "benchmarks.md").exists()
