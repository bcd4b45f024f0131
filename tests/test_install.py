"""Install: every imported distribution is declared, and a headless install (no napari, no Qt, no
POSIX-only fcntl) runs the CLI."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("pipeline", "models", "flows", "annotation_tools")
# Every project module is imported as angioflow.<folder>...
OWN = {"angioflow"}
# What a headless install lacks: the review app's GUI stack everywhere, and fcntl as on Windows.
# fcntl is refused to angioflow's own modules (and `python -c`) only: libraries that import it on
# POSIX (filelock, dask's locket) take another path on Windows, which Linux cannot imitate.
GUI = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "vispy")
POSIX_ONLY = ("fcntl",)
BLOCKER = """
import importlib.abc, sys

GUI, POSIX_ONLY, OWN = {gui!r}, {posix_only!r}, {own!r}


def _importer():
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not name.startswith(("importlib", "_frozen_importlib")):
            return name.split(".")[0]
        frame = frame.f_back
    return ""


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in GUI or (top in POSIX_ONLY and _importer() in OWN):
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None


sys.meta_path.insert(0, _Blocker())
"""


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> dict[str, set[str]]:
    """Normalised distribution names per group: 'core' and each extra (self-references
    expanded)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    name = _normal(project["name"])

    def names(requirements: list[str]) -> tuple[set[str], set[str]]:
        found, extras = set(), set()
        for requirement in requirements:
            match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", requirement)
            assert match, requirement
            if _normal(match[1]) == name:
                extras |= {e.strip() for e in (match[2] or "").split(",") if e.strip()}
            else:
                found.add(_normal(match[1]))
        return found, extras

    groups = {"core": names(project["dependencies"])[0]}
    optional = project.get("optional-dependencies", {})
    for extra, requirements in optional.items():
        found, included = names(requirements)
        for other in included:
            found |= names(optional[other])[0]
        groups[extra] = found
    return groups


def _imports(path: Path) -> list[tuple[str, bool, int]]:
    """(top-level module, imported at module level, line) of every absolute import."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            in_function |= {id(child) for child in ast.walk(node) if child is not node}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        for module in modules:
            found.append((module.split(".")[0], id(node) not in in_function, node.lineno))
    return found


@pytest.mark.slow
def test_every_imported_distribution_is_declared() -> None:
    declared = _declared()
    distributions = packages_distributions()
    core, review = declared["core"], declared["core"] | declared["review"]
    everything = set().union(*declared.values())
    problems = []
    checked = 0
    for folder in (*FOLDERS, "tests", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            local = {p.stem for p in path.parent.glob("*.py")}
            if folder == "benchmarks":  # benchmarks reuse the tests' helpers (tests/ on sys.path)
                local |= {p.stem for p in (ROOT / "tests").glob("*.py")}
            for module, top_level, line in _imports(path):
                if module in sys.stdlib_module_names or module in OWN or module in local:
                    continue
                if module == "__future__":
                    continue
                checked += 1
                # The library imports headless: pipeline/models/flows at import time need only
                # the core dependencies; the review app (and flows' calls into it) may use the
                # [review] extra; tests and benchmarks anything `make test` installs.
                if folder in ("tests", "benchmarks"):
                    allowed, group = everything, "any extra"
                elif folder == "annotation_tools" or not top_level:
                    allowed, group = review, "dependencies or [review]"
                else:
                    allowed, group = core, "dependencies"
                owners = {_normal(d) for d in distributions.get(module, [])}
                where = f"{path.relative_to(ROOT)}:{line} imports {module}"
                if not owners:
                    problems.append(f"{where}, which no installed distribution provides")
                elif not owners & allowed:
                    problems.append(f"{where} ({', '.join(sorted(owners))}): not in {group}")
    assert checked > 50
    assert not problems, "\n".join(problems)


def test_no_module_imports_a_posix_only_module_at_import_time() -> None:
    posix_only = {"fcntl", "termios", "tty", "pty", "pwd", "grp", "resource", "posix"}
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for folder in FOLDERS
        for path in sorted((ROOT / folder).rglob("*.py"))
        for module, top_level, line in _imports(path)
        if top_level and module in posix_only
    ]
    assert not found, "\n".join(found)


@pytest.fixture
def headless_env(tmp_path: Path) -> dict[str, str]:
    """Environment of a subprocess in which importing napari, Qt, magicgui or fcntl fails."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    own = {*OWN, "__main__"}
    (blocker / "sitecustomize.py").write_text(
        BLOCKER.format(gui=set(GUI), posix_only=set(POSIX_ONLY), own=own)
    )
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(blocker), str(ROOT)]),
        ANGIOFLOW_SECRET="test-secret-0123456789abcdef",
        PREFECT_HOME=str(tmp_path / "prefect"),
        PREFECT_LOGGING_LEVEL="WARNING",
        COLUMNS="200",
    )
    env.pop("DISPLAY", None)
    return env


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """The CLI in a subprocess (the console script's entry point) under ``env``."""
    return subprocess.run(
        [sys.executable, "-c", "from angioflow.flows.cli import app; app()", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(env["PREFECT_HOME"]).parent,
    )


@pytest.mark.slow
def test_the_blocker_blocks(headless_env: dict[str, str]) -> None:
    for module in (*GUI, *POSIX_ONLY):
        result = subprocess.run(
            [sys.executable, "-c", f"import {module}"], env=headless_env, capture_output=True
        )
        assert result.returncode == 1 and b"(blocked)" in result.stderr, module
    check = (
        "import sys, flows.cli, flows.inspect, pipeline.casestore, annotation_tools.session; "
        f"print(sorted(m for m in {GUI!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", check], env=headless_env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_headless_cli_runs_without_napari_qt_or_fcntl(
    headless_env: dict[str, str], tmp_path: Path
) -> None:
    result = _run(headless_env, "--help")
    assert result.returncode == 0, result.stderr
    assert "review" in result.stdout and "ingest" in result.stdout
    raw, store = tmp_path / "raw", tmp_path / "store"
    result = _run(headless_env, "phantom", str(raw), "--n", "1", "--size", "128", "192")
    assert result.returncode == 0, result.stderr
    result = _run(headless_env, "ingest", str(raw), "--store", str(store), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert len(summary["ingested"]) == 1, summary
    result = _run(headless_env, "status", "--store", str(store), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)


def test_review_without_napari_names_the_extra(
    headless_env: dict[str, str], tmp_path: Path
) -> None:
    result = _run(headless_env, "review", "--store", str(tmp_path), "--editor", "dr_a")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "angioflow[review]" in lines[0] and "Traceback" not in result.stderr
