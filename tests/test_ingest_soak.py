"""Soak: 200 small phantom exams ingested by two concurrent `angioflow ingest` processes, one of
them killed with SIGKILL at a random moment in every 50 stored cases and started again; then a
rerun. No case lost, none stored twice, nothing quarantined, audit clean; a random sample of the
stored cases then curates to review gate 1 (curating all 200 takes too long for `make test`;
`ANGIOFLOW_SOAK_CURATE=200 pytest tests/test_ingest_soak.py` curates every case)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from angioflow.flows.curate import curate_flow
from angioflow.pipeline.casestore import CaseStore
from angioflow.pipeline.ingest import exam_case_id, read_quarantine
from angioflow.pipeline.phantom import PhantomConfig, write_phantom_set

ANGIOFLOW = str(Path(sys.executable).parent / "angioflow")
N_CASES, KILL_EVERY = 200, 50
SAMPLE = int(os.environ.get("ANGIOFLOW_SOAK_CURATE", "3"))
SECRET = "soak-secret-0123456789abcdef"


def _phantom_exams(source: Path, n: int, *, seed: int) -> None:
    """``n`` exams: a few phantom exams (1-2 frames, small) cloned under new patient ids, so
    each clone is a distinct exam with valid images."""
    templates = write_phantom_set(
        source.parent / "templates",
        n=8,
        seed=seed,
        config=PhantomConfig(size=(160, 240), n_frames=2),
    )
    for index in range(n):
        folder = source / f"exam_{index:03d}"
        shutil.copytree(templates[index % len(templates)], folder)
        document = json.loads((folder / "case.json").read_text())
        document["patient_id"] = f"SOAK-{seed}-{index:04d}"
        if index % 3 == 0:  # some FA-sequence-of-one exams
            document["fa_frames"] = document["fa_frames"][:1]
        (folder / "case.json").write_text(json.dumps(document))


def _start(source: Path, store: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [ANGIOFLOW, "ingest", str(source), "--store", str(store), "--json"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.mark.slow
@pytest.mark.long
def test_two_ingest_processes_with_random_kills_lose_and_duplicate_nothing(
    tmp_path: Path, prefect_server: None
) -> None:
    from prefect.settings import PREFECT_API_URL

    seed = 30
    rng = random.Random(seed)
    source, store = tmp_path / "raw", tmp_path / "store"
    _phantom_exams(source, N_CASES, seed=seed)
    env = os.environ | {"PREFECT_API_URL": str(PREFECT_API_URL.value()), "ANGIOFLOW_SECRET": SECRET}
    key = SECRET.encode()
    expected = {exam_case_id(folder, key=key) for folder in sorted(source.iterdir())}
    assert len(expected) == N_CASES

    kill_at = [k * KILL_EVERY + rng.randrange(1, KILL_EVERY) for k in range(N_CASES // KILL_EVERY)]
    processes = [_start(source, store, env, tmp_path / f"ingest_{i}.log") for i in range(2)]
    killed, deadline = [], time.monotonic() + 600
    while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
        stored = len(list((store / "cases").glob("*.h5"))) if (store / "cases").is_dir() else 0
        if kill_at and stored >= kill_at[0]:
            running = [i for i, p in enumerate(processes) if p.poll() is None]
            if running:
                victim = rng.choice(running)
                processes[victim].send_signal(signal.SIGKILL)
                processes[victim].wait()
                killed.append((kill_at[0], stored))
                processes[victim] = _start(source, store, env, tmp_path / f"ingest_{victim}.log")
            kill_at.pop(0)
        time.sleep(0.05)
    for process in processes:
        process.wait(timeout=max(1.0, deadline - time.monotonic()))
        assert process.returncode == 0, (tmp_path / "ingest_0.log").read_text()[-3000:]
    print(f"killed at (target, stored cases): {killed}")
    assert len(killed) >= 3  # the last window may finish before its kill point

    rerun = subprocess.run(
        [ANGIOFLOW, "ingest", str(source), "--store", str(store), "--json"],
        env=env,
        capture_output=True,
        timeout=600,
    )
    summary = json.loads(rerun.stdout)
    assert rerun.returncode == 0 and len(summary["skipped"]) == N_CASES, rerun.stderr[-2000:]

    cases = CaseStore(store)  # also removes temp files of killed writers
    assert set(cases.case_ids()) == expected  # none lost, none extra
    assert sorted(p.name for p in (store / "cases").iterdir()) == sorted(
        f"{case_id}.h5" for case_id in expected
    )  # no duplicate, no leftover temp file
    assert not (store / "replaced").exists() or not any((store / "replaced").iterdir())
    assert read_quarantine(store) == []
    assert {cases.summary(case_id).stage.value for case_id in expected} == {"ingested"}
    audit = subprocess.run(
        [ANGIOFLOW, "audit", "--store", str(store), "--raw", str(source), "--json"],
        env=env,
        capture_output=True,
        timeout=300,
    )
    report = json.loads(audit.stdout)
    assert audit.returncode == 0 and report["findings"] == [], report
    assert report["identifiers"] >= N_CASES

    sample = tmp_path / "sample"
    (sample / "cases").mkdir(parents=True)
    for case_id in rng.sample(sorted(expected), SAMPLE):
        shutil.copy(store / "cases" / f"{case_id}.h5", sample / "cases")
    (sample / "key.check").write_bytes((store / "key.check").read_bytes())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ANGIOFLOW_SECRET", SECRET)
        curated = curate_flow(str(sample))
    assert len(curated["curated"]) == SAMPLE, curated
    sampled = CaseStore(sample)
    assert {sampled.summary(c).stage.value for c in sampled.case_ids()} == {"vessel_review"}
