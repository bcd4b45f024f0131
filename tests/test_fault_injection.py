"""Crash safety of curation: `angioflow curate` killed (SIGKILL) after each of its store commits
in turn, then run again, finishes every case with no review edit lost (issue 30, H1).

The commits are counted from outside the code under test: the subprocess is the real CLI with a
Python audit hook that sees each ``os.rename`` into ``<store>/cases`` (the last step of a
commit). At the entry of the rename after the allowed number of commits the hook tells this
test through a pipe and waits; the test then kills the process with SIGKILL, so the kill lands
after one commit and before the next one's rename, deterministically.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from angioflow.pipeline.casestore import CaseStore, MaskKind, Stage

ROOT = Path(__file__).resolve().parents[1]

_CLI_WITH_COMMIT_GATE = textwrap.dedent(
    """
    import os, sys, time

    gate = int(os.environ["COMMIT_GATE_FD"])
    allowed = int(os.environ["COMMIT_GATE_ALLOWED"])
    cases = os.environ["COMMIT_GATE_CASES"] + os.sep
    seen = 0

    def hook(event, args):
        global seen
        if event == "os.rename" and os.fsdecode(args[1]).startswith(cases):
            if seen == allowed:
                os.write(gate, b"k")
                time.sleep(3600)  # until the test kills this process
            seen += 1

    sys.addaudithook(hook)
    from angioflow.flows.cli import app

    app(prog_name="angioflow")
    """
)


def _curate(store: Path, allowed: int, env: dict[str, str]) -> tuple[str, int, str]:
    """Run `angioflow curate`, killing it with SIGKILL before its commit number allowed + 1.

    Returns ("killed" or "finished", exit code, stderr tail).
    """
    read_end, write_end = os.pipe()
    process = subprocess.Popen(
        [sys.executable, "-c", _CLI_WITH_COMMIT_GATE, "curate", "--store", str(store)],
        cwd=ROOT,
        env={
            **env,
            "COMMIT_GATE_FD": str(write_end),
            "COMMIT_GATE_ALLOWED": str(allowed),
            "COMMIT_GATE_CASES": str((store / "cases").resolve()),
        },
        pass_fds=(write_end,),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    os.close(write_end)
    try:
        signalled = os.read(read_end, 1)  # b"" when the process ended by itself
        if signalled:
            process.send_signal(signal.SIGKILL)
        _, stderr = process.communicate(timeout=300)
    finally:
        os.close(read_end)
        if process.poll() is None:
            process.kill()
            process.wait()
    return ("killed" if signalled else "finished"), process.returncode, stderr.decode()[-2000:]


@pytest.fixture
def three_cases(tmp_path: Path, secret: bytes, prefect_server: None) -> tuple[Path, dict]:
    """A store of three tiny phantom exams: A just ingested (stages 2-7 to run); B and C curated
    and their vessel masks approved (A/V labelling to run), B's after a reviewer's edit."""
    from angioflow.flows.curate import curate_flow
    from angioflow.flows.ingest import ingest_flow
    from angioflow.pipeline.phantom import PhantomConfig, write_phantom_set

    config = PhantomConfig(size=(256, 384), n_frames=3)
    folders = write_phantom_set(tmp_path / "raw", n=3, seed=7, config=config)
    later = tmp_path / "raw_later"
    shutil.move(folders[0], later / folders[0].name)
    root = tmp_path / "store"
    b_id, c_id = [c["case_id"] for c in ingest_flow(str(tmp_path / "raw"), str(root))["ingested"]]
    assert len(curate_flow(str(root))["curated"]) == 2
    store = CaseStore(root, create=False)
    edited = store.read_version(b_id, MaskKind.VESSEL)
    edited[40:44, 60:120] = 1  # the reviewer's edit: a vessel the baseline missed
    store.save_version(b_id, MaskKind.VESSEL, edited, editor="dr_a", parent=1)
    store.approve(b_id, MaskKind.VESSEL, version=2, editor="dr_a")
    store.approve(c_id, MaskKind.VESSEL, version=1, editor="dr_c")
    (a_id,) = [c["case_id"] for c in ingest_flow(str(later), str(root))["ingested"]]
    reviewed = {
        case_id: [(v.version, v.editor, v.sha256) for v in store.versions(case_id, "vessel")]
        for case_id in (b_id, c_id)
    }
    return root, {"a": a_id, "b": b_id, "c": c_id, "reviewed": reviewed}


@pytest.mark.slow
@pytest.mark.long
def test_curate_killed_after_each_commit_in_turn_finishes_every_case_on_rerun(
    three_cases: tuple[Path, dict],
) -> None:
    from prefect.settings import PREFECT_API_URL

    root, ids = three_cases
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),  # the session's test server
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    started = time.monotonic()
    kills = 0
    # Each run may commit once and is killed at its next commit: run k dies right after the
    # k-th commit of the whole curation. A run that no longer reaches a second commit ends.
    while True:
        outcome, code, stderr = _curate(root, 1, env)
        if outcome == "finished":
            break
        kills += 1
        assert kills < 30, "curate never finished: a case is recomputed on every run"
        # The killed run's temp file is left behind and removed by the next store user.
        assert code == -signal.SIGKILL
    assert code == 0, stderr
    final, code, stderr = _curate(root, 10_000, env)  # nothing left: no commit, exit 0
    assert (final, code) == ("finished", 0), stderr
    seconds = time.monotonic() - started

    store = CaseStore(root, create=False)
    assert kills >= 6, f"only {kills} kills: too few commits were exercised"
    assert not list(store.cases_dir.glob(".*.tmp"))
    a = store.summary(ids["a"])
    assert a.stage is Stage.VESSEL_REVIEW, a.stage  # review gate 1
    (baseline,) = store.versions(ids["a"], MaskKind.VESSEL)
    assert baseline.editor == "angioflow" and baseline.parent == 0
    for case_id in (ids["b"], ids["c"]):
        summary = store.summary(case_id)
        assert summary.stage is Stage.AV_REVIEW, (case_id, summary.stage)  # review gate 2
        approved = summary.approved_versions[MaskKind.VESSEL]
        (av,) = store.versions(case_id, MaskKind.AV)
        vessel = store.read_version(case_id, MaskKind.VESSEL, approved) > 0
        labels = store.read_version(case_id, MaskKind.AV, av.version)
        assert np.array_equal(labels > 0, vessel)  # labels the approved vessel mask
        reviewed = [(v.version, v.editor, v.sha256) for v in store.versions(case_id, "vessel")]
        assert reviewed == ids["reviewed"][case_id]  # no review edit lost or changed
    for case_id in (ids["a"], ids["b"], ids["c"]):
        store.verify(case_id)
    print(f"{kills} kills, {seconds:.0f} s of curate runs")
