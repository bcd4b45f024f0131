"""The examples in angioflow.pipeline's docstrings run and print what they show."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import angioflow.pipeline
import pytest

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(angioflow.pipeline.__path__, "angioflow.pipeline.")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
