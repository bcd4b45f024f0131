"""Fixtures and hooks only: one Prefect test server per session, a curated store built once and
copied per test, a fixed pseudonymisation key. Plain helpers are in ``support.py``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from support import TEST_SECRET, copy_store

# Prefect binds its console log handler to whatever sys.stderr is when it first logs; under
# CliRunner that is a buffer closed afterwards. Only warnings matter in tests.
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# The test servers must not try to reach Prefect's telemetry endpoint (no network here).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

if TYPE_CHECKING:
    from angioflow.pipeline.casestore import CaseStore

# `make test` runs two pytest-xdist workers that take whole files in collection order (pyproject's
# addopts turn off xdist's own reordering by test count); the files holding a test marked `long`
# (over a minute alone) go first, so neither worker is left running one long file alone at the end.
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    long_files = {item.path for item in items if item.get_closest_marker("long")}
    items.sort(key=lambda item: item.path not in long_files)  # stable: file order kept


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One temporary Prefect API for every flow test of the session (it takes ~10 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> bytes:
    """A fixed pseudonymisation key through $ANGIOFLOW_SECRET."""
    monkeypatch.setenv("ANGIOFLOW_SECRET", TEST_SECRET)
    return TEST_SECRET.encode()


@pytest.fixture(scope="session")
def curated_store_template(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Path:
    """A store with two small phantom exams ingested and curated to review gate 1 (built once;
    tests copy it with :func:`support.copy_store`, or take the ``store`` fixture)."""
    from angioflow.flows.curate import curate_flow
    from angioflow.flows.ingest import ingest_flow
    from angioflow.pipeline.phantom import PhantomConfig, write_phantom_set

    root = tmp_path_factory.mktemp("curated")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ANGIOFLOW_SECRET", TEST_SECRET)
        write_phantom_set(
            root / "raw", n=2, seed=11, config=PhantomConfig(size=(384, 576), n_frames=4)
        )
        ingest_flow(str(root / "raw"), str(root / "store"))
        summary = curate_flow(str(root / "store"))
    assert len(summary["curated"]) == 2, summary
    return root / "store"


@pytest.fixture
def store(curated_store_template: Path, tmp_path: Path) -> CaseStore:
    """A private copy of the curated store template (two cases at review gate 1)."""
    from angioflow.pipeline.casestore import CaseStore

    return CaseStore(copy_store(curated_store_template, tmp_path / "store"), create=False)
