"""The shape of the code base: the layers import only downward, no module grows past what one
person reads in a sitting, and the package installs as ``angioflow`` alone."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("pipeline", "models", "annotation_tools", "flows")
MAX_LINES = 550

# What each layer may not import (a module, or any of its submodules).
FORBIDDEN = {
    "pipeline": (
        "torch",
        "torchvision",
        "prefect",
        "prefect_dask",
        "napari",
        "qtpy",
        "magicgui",
        "angioflow.models",
        "angioflow.flows",
        "angioflow.annotation_tools",
    ),
    "models": (
        "prefect",
        "prefect_dask",
        "napari",
        "qtpy",
        "magicgui",
        "angioflow.flows",
        "angioflow.annotation_tools",
    ),
    "annotation_tools": ("prefect", "prefect_dask", "angioflow.flows"),
    "flows": (),
}


def _modules(layer: str) -> list[Path]:
    return sorted(p for p in (ROOT / layer).rglob("*.py") if "__pycache__" not in p.parts)


def _imports(source: str, package: list[str]) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, lazy ones included, for a
    module of ``package`` (["angioflow", "pipeline"]); relative imports are resolved."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            # `from angioflow import flows` imports angioflow.flows
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def _package(path: Path) -> list[str]:
    return ["angioflow", *path.relative_to(ROOT).parent.parts]


def _violates(module: str, forbidden: tuple[str, ...]) -> str | None:
    for name in forbidden:
        if module == name or module.startswith(name + "."):
            return name
    return None


@pytest.mark.parametrize("layer", LAYERS)
def test_layers_import_only_downward(layer: str) -> None:
    violations = sorted(
        {
            f"{path.relative_to(ROOT)}:{line} imports {name}"
            for path in _modules(layer)
            for line, module in _imports(path.read_text(), _package(path))
            if (name := _violates(module, FORBIDDEN[layer]))
        }
    )
    assert not violations, (
        f"{layer}/ must not import {', '.join(FORBIDDEN[layer])} "
        "(pipeline < models, annotation_tools < flows):\n" + "\n".join(violations)
    )


def test_the_scan_sees_relative_lazy_and_from_imports() -> None:
    source = (
        "from ..flows import cli\n"
        "from . import io\n"
        "def f():\n"
        "    import torch.nn as nn\n"
        "from angioflow import models\n"
    )
    found = sorted(m for _, m in _imports(source, ["angioflow", "pipeline", "sub"]))
    assert found == [
        "angioflow.models",
        "angioflow.pipeline.flows.cli",
        "angioflow.pipeline.sub.io",
        "torch.nn",
    ]


def test_no_module_is_longer_than_a_sitting() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for layer in LAYERS
        for path in _modules(layer)
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split them by responsibility): {long}"


def test_the_layers_install_only_under_angioflow(tmp_path: Path) -> None:
    """Run from an empty folder (``python -m pytest`` puts the repository root on sys.path, where
    the folders are importable by their bare names)."""
    probe = (
        "import importlib.util, json\n"
        f"names = {LAYERS!r}\n"
        "print(json.dumps([[importlib.util.find_spec(n) is not None for n in names],\n"
        "    [importlib.util.find_spec('angioflow.' + n) is not None for n in names]]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", probe], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    found_bare, found_namespaced = json.loads(done.stdout)
    bare = dict(zip(LAYERS, found_bare, strict=True))
    namespaced = dict(zip(LAYERS, found_namespaced, strict=True))
    assert not any(bare.values()), f"installed as top-level modules: {bare}"
    assert all(namespaced.values()), f"not installed under angioflow: {namespaced}"
