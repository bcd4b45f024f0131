"""Scale-out and faults: curation on a real dask.distributed cluster, a worker killed mid-case,
the whole flow killed mid-run, and a full or read-only store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from angioflow.flows.cli import app
from angioflow.pipeline.casestore import CaseStore, MaskKind, Stage
from angioflow.pipeline.curation_stages import STAGES
from support import TEST_SECRET, copy_store, wait_until
from typer.testing import CliRunner

pytestmark = pytest.mark.slow  # dask clusters, Prefect flows, killed processes
runner = CliRunner()


def _baselines(store: Path) -> dict[str, str]:
    """sha256 of each case's baseline vessel mask (version 1)."""
    cases = CaseStore(store, create=False)
    return {c: cases.versions(c, MaskKind.VESSEL)[0].sha256 for c in cases.case_ids()}


def _stage_times(store: Path) -> dict[tuple[str, str], str]:
    cases = CaseStore(store, create=False)
    return {
        (c, s): cases.read_stage(c, s, arrays=()).finished
        for c in cases.case_ids()
        for s in cases.summary(c).stages_done
    }


def test_dask_ingest_then_curate_with_a_worker_killed_mid_case(
    curated_store_template: Path, tmp_path: Path, prefect_server: None, monkeypatch
) -> None:
    """Ingest on a LocalCluster the runner starts; curate on a running 2-worker cluster while
    one busy worker is killed: the batch finishes with the thread runner's exact masks."""
    from distributed import Client, LocalCluster

    monkeypatch.setenv("ANGIOFLOW_SECRET", TEST_SECRET)
    raw, store = curated_store_template.parent / "raw", tmp_path / "store"
    ingested = runner.invoke(
        app, ["ingest", str(raw), "--store", str(store), "--runner", "dask", "--workers", "2"]
    )
    assert ingested.exit_code == 0, ingested.output
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        killed: list[int] = []
        curated = threading.Event()

        def busy_mid_case() -> list[str] | bool:
            """The busy workers once a case has a stage stored (the batch is under way)."""
            if curated.is_set():
                return True
            cases = CaseStore(store, create=False)
            if not any(cases.summary(c).stages_done for c in cases.case_ids()):
                return []
            return [w for w, keys in client.processing().items() if keys]

        def kill_a_busy_worker() -> None:
            busy = wait_until(busy_mid_case, 120, "a busy worker mid-case", interval=0.2)
            if busy is True:
                return  # the run ended first; the assertion below says so
            pid = next(iter(client.run(os.getpid, workers=busy[:1]).values()))
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

        killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
        killer.start()
        result = runner.invoke(
            app,
            [
                "curate",
                "--store",
                str(store),
                "--runner",
                "dask",
                "--dask-address",
                cluster.scheduler_address,
                "--json",
            ],
        )
        curated.set()
        killer.join()
    assert killed, "no worker was busy to kill"
    assert result.exit_code == 0, result.output
    cases = CaseStore(store, create=False)
    assert all(cases.summary(c).stage is Stage.VESSEL_REVIEW for c in cases.case_ids())
    assert _baselines(store) == _baselines(curated_store_template)


def _drop_stages(case_file: Path) -> None:
    """Take a curated case back to 'ingested' (its raw images and events stay)."""
    import h5py

    with h5py.File(case_file, "a") as handle:
        for group in ("stages", "reviews"):
            if group in handle:
                del handle[group]
        # edited outside the store: drop the seal so the file reads as an unsealed format-1 file
        for name in ("manifest", "manifest_sha256"):
            if name in handle.attrs:
                del handle.attrs[name]
        handle.attrs["format_version"] = 1


def test_a_killed_curate_run_finishes_on_rerun_without_recomputing(
    curated_store_template: Path, tmp_path: Path, prefect_server: None
) -> None:
    store = copy_store(curated_store_template, tmp_path / "store")
    cases = CaseStore(store, create=False)
    first, second = cases.case_ids()
    _drop_stages(cases.path(second))  # case 1 done; case 2 waits for every stage
    edited = cases.read_version(first, MaskKind.VESSEL, 1).copy()
    edited[:8, :8] = 1  # a reviewer's edit on case 1, saved before the run
    cases.save_version(first, MaskKind.VESSEL, edited, editor="dr_a", parent=1)
    before = _stage_times(store)
    from prefect.settings import PREFECT_API_URL

    command = [str(Path(sys.executable).parent / "angioflow"), "curate", "--store", str(store)]
    environment = os.environ | {"PREFECT_API_URL": str(PREFECT_API_URL.value())}
    process = subprocess.Popen(
        command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_until(
        lambda: "vessel_maps" in CaseStore(store, create=False).summary(second).stages_done,
        180,
        "stage vessel_maps of the second case",
        interval=0.2,
    )
    process.send_signal(signal.SIGKILL)
    process.wait()
    stored = CaseStore(store, create=False).summary(second).stages_done
    assert "vessel_maps" in stored and "binarisation" not in stored, stored
    partial = _stage_times(store)
    rerun = runner.invoke(app, ["curate", "--store", str(store)])
    assert rerun.exit_code == 0, rerun.output
    after = _stage_times(store)
    assert set(after) == set(before) | {(second, s) for s in STAGES}
    assert {k: after[k] for k in partial} == partial  # nothing finished was recomputed
    kept = CaseStore(store, create=False)
    assert [v.editor for v in kept.versions(first, MaskKind.VESSEL)][-1] == "dr_a"
    assert np.array_equal(kept.read_version(first, MaskKind.VESSEL, 2), edited)  # edit kept
    assert _baselines(store) == _baselines(curated_store_template)


def _mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
    )
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path):
    folder = tmp_path / "disk"
    if not _mount_tmpfs(folder, "3m"):
        pytest.skip("cannot mount a small tmpfs here (needs root): disk-full test skipped")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_quarantines_with_a_clear_error_and_leaves_no_partial_file(
    small_disk: Path, tmp_path: Path, prefect_server: None, monkeypatch
) -> None:
    from angioflow.pipeline.phantom import PhantomConfig, write_phantom_set

    monkeypatch.setenv("ANGIOFLOW_SECRET", TEST_SECRET)
    raw = tmp_path / "raw"
    write_phantom_set(raw, n=3, seed=5, config=PhantomConfig(size=(512, 768), n_frames=6))
    store = small_disk / "store"
    result = runner.invoke(app, ["ingest", str(raw), "--store", str(store), "--json"])
    assert result.exit_code == 1  # some case did not fit
    assert "No space left on device" in result.output or "disk" in result.output.lower()
    leftovers = [p for p in store.rglob("*") if p.name.startswith(".") and p.suffix == ".tmp"]
    assert not leftovers
    for case_id in CaseStore(store, create=False).case_ids():  # what was stored is whole
        summary = CaseStore(store, create=False).summary(case_id)
        assert summary.stage is Stage.INGESTED and summary.n_frames == 6


def test_a_read_only_store_fails_each_case_clearly_and_changes_nothing(
    curated_store_template: Path, tmp_path: Path, prefect_server: None
) -> None:
    folder = tmp_path / "disk"
    if not _mount_tmpfs(folder, "64m"):
        pytest.skip("cannot mount a tmpfs here (needs root): read-only store test skipped")
    try:
        store = copy_store(curated_store_template, folder / "store")
        cases = CaseStore(store, create=False)
        for case_id in cases.case_ids():
            _drop_stages(cases.path(case_id))
        digests = {p: _sha256(p) for p in store.rglob("*") if p.is_file()}
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        result = runner.invoke(app, ["curate", "--store", str(store), "--json"])
        assert result.exit_code == 2  # refused at once, on one line, before any stage runs
        assert "Read-only file system" in result.output and "Traceback" not in result.output
        assert {p: _sha256(p) for p in store.rglob("*") if p.is_file()} == digests
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
