"""Ingestion under hostile input, concurrency and crashes: odd files, huge decoded sizes, two
folders or two processes for one exam, replacing reviewed cases, a lost or wrong key, and
control characters in names. Real files, real processes, a real Prefect server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from angioflow.flows.cli import app
from angioflow.flows.ingest import ingest_flow
from angioflow.pipeline.casestore import CaseStore, MaskKind
from angioflow.pipeline.ingest import DecodeBudget, ingest_case, read_quarantine
from PIL import Image
from support import PATIENT_ID, edit_case_json, fa_grey, write_case
from typer.testing import CliRunner

runner = CliRunner()
ANGIOFLOW = str(Path(sys.executable).parent / "angioflow")


def _prefect_env() -> dict[str, str]:
    """The environment for a subprocess that reports to the session's Prefect test server."""
    from prefect.settings import PREFECT_API_URL

    return os.environ | {"PREFECT_API_URL": str(PREFECT_API_URL.value())}


# ---- L5: what is not a regular file is named for what it is ---------------------------------


def _ingest_in_thread(folder: Path, store: CaseStore, secret: bytes) -> dict:
    """Ingest in a thread so that a blocking read (a FIFO) fails the test instead of hanging."""
    result: dict = {}
    worker = threading.Thread(
        target=lambda: result.update(
            outcome=ingest_case(folder, store, source_root=folder.parent, key=secret)
        ),
        daemon=True,
    )
    worker.start()
    worker.join(timeout=60)
    if worker.is_alive():
        for fifo in folder.rglob("*"):
            if fifo.is_fifo():  # unblock the reader so the thread can end
                with open(fifo, "wb"):
                    pass
        pytest.fail("ingest blocked reading a FIFO")
    return result


@pytest.mark.parametrize(
    ("replace", "file", "expected"),
    [
        ("fifo", "fundus.png", "is a FIFO (named pipe), not a regular file"),
        ("folder", "fundus.png", "is a folder, not a file"),
        ("fifo", "fa/001.png", "is a FIFO (named pipe), not a regular file"),
        ("folder", "fa/001.png", "is a folder, not a file"),
        ("fifo", "case.json", "is a FIFO (named pipe), not a regular file"),
        ("folder", "case.json", "is a folder, not a file"),
    ],
)
def test_a_fifo_or_folder_in_place_of_a_file_is_named_not_missing(
    tmp_path: Path, secret: bytes, replace: str, file: str, expected: str
) -> None:
    folder = write_case(tmp_path / "src" / "odd", seed=1)
    (folder / file).unlink()
    if replace == "fifo":
        os.mkfifo(folder / file)
    else:
        (folder / file).mkdir()
    store = CaseStore(tmp_path / "store")
    outcome = _ingest_in_thread(folder, store, secret)["outcome"]
    assert outcome.status == "quarantined" and outcome.file == file
    assert expected in outcome.reason and "missing" not in outcome.reason
    assert store.case_ids() == []


# ---- H2: the decoded size of a case, and of a process, is bounded -----------------------------


def _compressible_case(folder: Path, *, n_frames: int, side: int, patient_id: str) -> None:
    """A valid case whose FA frames are side x side 8-bit gradients: a few tens of KB on disk,
    side**2 bytes each once decoded."""
    (folder / "fa").mkdir(parents=True)
    row = (np.arange(side) * 251 // side).astype(np.uint8)
    Image.fromarray(np.broadcast_to(row, (side, side))).save(folder / "fa" / "000.png")
    data = (folder / "fa" / "000.png").read_bytes()
    for index in range(1, n_frames):
        (folder / "fa" / f"{index:03d}.png").write_bytes(data)
    fundus = np.zeros((512, 512, 3), np.uint8)
    fundus[..., 0] = np.arange(512)[None, :] // 2
    fundus[..., 1] = np.arange(512)[:, None] // 4
    Image.fromarray(fundus).save(folder / "fundus.png")
    frames = [{"file": f"fa/{i:03d}.png", "time_s": 10.0 + i} for i in range(n_frames)]
    document = {"patient_id": patient_id, "eye": "OD", "fundus": "fundus.png", "fa_frames": frames}
    (folder / "case.json").write_text(json.dumps(document))


def _peak_rss_mb(command: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Run ``command`` as the only child of a fresh Python process; its peak RSS in MB (the
    largest of the process and anything it waited for), exit code and stdout."""
    probe = textwrap.dedent(
        """
        import json, resource, subprocess, sys
        done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(json.dumps([peak_kb / 1024, done.returncode, done.stdout, done.stderr]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    peak, code, stdout, stderr = json.loads(done.stdout)
    assert "Traceback" not in stderr, stderr
    return peak, code, stdout


linux_rss = pytest.mark.skipif(
    sys.platform != "linux", reason="peak RSS is read as Linux's ru_maxrss (kilobytes)"
)


@linux_rss
@pytest.mark.slow
def test_a_case_whose_frames_decode_past_the_case_limit_is_refused_from_its_headers(
    tmp_path: Path, secret: bytes, prefect_server: None
) -> None:
    """28 FA frames of 6300x6300 (about 40 KB each on disk, 1.1 GB decoded): refused before any
    frame is decoded, so the ingest process stays far below the decoded size."""
    source = tmp_path / "src"
    _compressible_case(source / "huge", n_frames=28, side=6300, patient_id=PATIENT_ID)
    assert sum(p.stat().st_size for p in source.rglob("*.png")) < 5_000_000
    command = [ANGIOFLOW, "ingest", str(source), "--store", str(tmp_path / "store"), "--json"]
    peak_mb, code, stdout = _peak_rss_mb(command, _prefect_env())
    [refused] = json.loads(stdout)["quarantined"]
    assert code == 1 and refused["case"] == "huge" and refused["file"] == ""
    assert "once decoded, above the limit of 1,024 MiB per case" in refused["reason"]
    assert "--max-case-mb" in refused["reason"]
    decoded_mb = 28 * 6300 * 6300 / 1e6
    print(f"peak RSS of angioflow ingest: {peak_mb:.0f} MB ({decoded_mb:.0f} MB decoded)")
    assert peak_mb < 0.5 * decoded_mb


@linux_rss
@pytest.mark.slow
def test_cases_ingested_in_parallel_share_one_decode_budget_per_process(
    tmp_path: Path, secret: bytes, prefect_server: None
) -> None:
    """Four cases of ~200 MB decoded each, ingested by one process with several task threads:
    with a 210 MiB worker budget one case at a time is decoded and held, and peak RSS shows it
    (freed frames go back to the system rather than staying in the threads' heaps)."""
    source, store = tmp_path / "src", tmp_path / "store"
    for index in range(4):
        _compressible_case(
            source / f"big_{index}", n_frames=12, side=4096, patient_id=f"{PATIENT_ID}-{index}"
        )
    script = textwrap.dedent(
        """
        import json, sys
        from angioflow.flows.ingest import ingest_flow
        summary = ingest_flow(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
        print(json.dumps(summary))
        """
    )
    peaks = {}
    for budget_mb in (4096, 210):
        command = [sys.executable, "-c", script, str(source), str(store / str(budget_mb))]
        command.append(json.dumps({"max_worker_mb": budget_mb}))
        peak_mb, code, stdout = _peak_rss_mb(command, _prefect_env())
        assert code == 0 and len(json.loads(stdout)["ingested"]) == 4
        peaks[budget_mb] = peak_mb
    case_mb = 12 * 4096 * 4096 / 1e6
    print(f"peak RSS by worker budget (MiB -> MB): {peaks}; one case decodes to {case_mb:.0f} MB")
    assert peaks[4096] - peaks[210] > 1.5 * case_mb  # about three cases fewer at once


def test_a_case_larger_than_the_process_budget_is_refused_not_left_waiting(
    tmp_path: Path, secret: bytes
) -> None:
    source = tmp_path / "src"
    _compressible_case(source / "big", n_frames=3, side=1024, patient_id=PATIENT_ID)
    outcome = ingest_case(
        source / "big",
        CaseStore(tmp_path / "store"),
        source_root=source,
        key=secret,
        budget=DecodeBudget(2 << 20),
    )
    assert outcome.status == "quarantined"
    assert "more than the 2 MiB one ingest process may hold" in outcome.reason


def test_decode_budget_makes_a_case_wait_until_the_bytes_are_free() -> None:
    budget = DecodeBudget(100)
    order: list[str] = []
    first_holds = threading.Event()
    second_asks = threading.Event()
    second_in = threading.Event()
    release_first = threading.Event()

    def first() -> None:
        with budget.reserve(70):
            order.append("first in")
            first_holds.set()
            release_first.wait(10)
            order.append("first out")

    def second() -> None:
        first_holds.wait(10)
        second_asks.set()
        with budget.reserve(50):
            order.append("second in")
            second_in.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    assert second_asks.wait(10)
    # that it waits can only be seen as not getting in: give it the time it would need
    assert not second_in.wait(0.3)
    assert order == ["first in"] and budget.available == 30
    release_first.set()
    for thread in threads:
        thread.join(10)
    assert order == ["first in", "first out", "second in"] and budget.available == 100
    with pytest.raises(ValueError, match="exceed the budget's capacity"):
        with budget.reserve(101):
            pass


# ---- M2: one exam from two folders, or from two processes ------------------------------------


@pytest.mark.slow
def test_two_folders_of_one_exam_in_one_run_keep_the_first_and_quarantine_the_second(
    tmp_path: Path, secret: bytes, prefect_server: None
) -> None:
    source, store = tmp_path / "src", tmp_path / "store"
    for name, seed in (("a_first", 1), ("b_copy", 2), ("c_other", 3)):
        write_case(source / name, seed=seed, patient_id=PATIENT_ID)  # one patient, eye and date
    edit_case_json(source / "c_other", eye="OS")  # a different exam of the same patient
    for attempt in range(2):
        summary = ingest_flow(str(source), str(store), replace=attempt == 1)
        stored = summary["ingested"] + summary["skipped"]
        assert sorted(i["case"] for i in stored) == ["a_first", "c_other"], summary
        [duplicate] = summary["quarantined"]
        assert duplicate["case"] == "b_copy"
        assert (
            "same exam (patient_id, eye and acquired date) as case folder 'a_first'"
            in (duplicate["reason"])
        )
        assert "internal error" not in duplicate["reason"]
    # The stored exam is still a_first's content after the --replace run.
    a_id = next(i["case_id"] for i in stored if i["case"] == "a_first")
    alone = ingest_case(
        source / "a_first", CaseStore(tmp_path / "alone"), source_root=source, key=secret
    )
    assert CaseStore(store).source_sha256(a_id) == CaseStore(tmp_path / "alone").source_sha256(
        alone.case_id
    )


_RACE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from angioflow.pipeline.casestore import CaseStore
    from angioflow.pipeline.ingest import ingest_case
    source, store = Path(sys.argv[1]), Path(sys.argv[2])
    print("ready", flush=True)
    sys.stdin.readline()  # "go", sent to both processes at once
    outcomes = []
    for folder in sorted(source.iterdir()):
        outcome = ingest_case(folder, CaseStore(store), source_root=source, key=b"k" * 32)
        outcomes.append(outcome.as_dict())
    print(json.dumps(outcomes))
    """
)


def _race(sources: list[Path], store: Path) -> list[list[dict[str, str]]]:
    """Two real processes ingest at the same moment into one store; their outcomes."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _RACE, str(source), str(store)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for source in sources
    ]
    for process in processes:  # both have imported everything
        assert process.stdout.readline() == "ready\n", process.communicate()[1][-2000:]
    for process in processes:
        process.stdin.write("go\n")
        process.stdin.flush()
    results = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-2000:]
        results.append(json.loads(out))
    return results


def _noisy_cases(source: Path, n: int, *, seed: int) -> None:
    """Cases that take a while to compress, so two writers overlap."""
    rng = np.random.default_rng(seed)
    for index in range(n):
        folder = write_case(source / f"exam_{index:02d}", patient_id=f"{PATIENT_ID}-{index}")
        for frame in range(3):
            noise = rng.integers(0, 255, (600, 800), dtype=np.uint8)
            Image.fromarray(noise).save(folder / "fa" / f"{frame:03d}.png")
        rgb = rng.integers(0, 255, (600, 800, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(folder / "fundus.png")


@pytest.mark.slow
def test_two_processes_storing_one_exam_from_two_sources_store_it_once(tmp_path: Path) -> None:
    """Each exam arrives from two sources (different content) in two processes at once: one
    is stored, the other quarantined with the reason; no process fails."""
    _noisy_cases(tmp_path / "src_a", 6, seed=1)
    _noisy_cases(tmp_path / "src_b", 6, seed=2)
    from_a, from_b = _race([tmp_path / "src_a", tmp_path / "src_b"], tmp_path / "store")
    store = CaseStore(tmp_path / "store")
    assert len(store.case_ids()) == 6
    for one, other in zip(from_a, from_b, strict=True):
        statuses = sorted([one["status"], other["status"]])
        assert statuses == ["ingested", "quarantined"], (one, other)
        kept, refused = (one, other) if one["status"] == "ingested" else (other, one)
        assert kept["case_id"] == refused["case_id"]
        assert "is already stored as" in refused["reason"] and "--replace" in refused["reason"]
    assert len(read_quarantine(store.root)) == 6


@pytest.mark.slow
def test_two_processes_ingesting_one_source_at_once_store_each_case_once(tmp_path: Path) -> None:
    _noisy_cases(tmp_path / "src", 6, seed=1)
    first, second = _race([tmp_path / "src", tmp_path / "src"], tmp_path / "store")
    for one, other in zip(first, second, strict=True):
        assert sorted([one["status"], other["status"]]) == ["ingested", "skipped"], (one, other)
    assert len(CaseStore(tmp_path / "store").case_ids()) == 6
    assert read_quarantine(tmp_path / "store") == []


# ---- M5: replacing a reviewed case -----------------------------------------------------------


def test_replace_refuses_a_case_with_review_history_and_changes_nothing(
    tmp_path: Path, secret: bytes
) -> None:
    source, store = tmp_path / "src", CaseStore(tmp_path / "store")
    folder = write_case(source / "c", seed=1)
    case_id = ingest_case(folder, store, source_root=source, key=secret).case_id
    mask = np.zeros((96, 128), np.uint8)
    store.save_version(case_id, MaskKind.VESSEL, mask, editor="angioflow", parent=0)
    Image.fromarray(fa_grey((96, 128), 42)).save(folder / "fa" / "001.png")
    # A pipeline baseline is not review: the changed images may replace it.
    replaced = ingest_case(folder, store, source_root=source, key=secret, replace=True)
    assert replaced.status == "replaced"

    store.save_version(case_id, MaskKind.VESSEL, mask, editor="angioflow", parent=0)
    mask[10:20, 10:20] = 1
    version = store.save_version(case_id, MaskKind.VESSEL, mask, editor="dr_a", parent=1)
    store.approve(case_id, MaskKind.VESSEL, version=version, editor="dr_a")
    stage, before = store.summary(case_id).stage, store.path(case_id).read_bytes()
    Image.fromarray(fa_grey((96, 128), 43)).save(folder / "fa" / "001.png")
    refused = ingest_case(folder, store, source_root=source, key=secret, replace=True)
    assert refused.status == "quarantined"
    assert "has review history (1 vessel version(s) saved by a reviewer, vessel approved)" in (
        refused.reason
    )
    assert store.path(case_id).read_bytes() == before and store.summary(case_id).stage == stage
    assert [v.editor for v in store.versions(case_id, MaskKind.VESSEL)] == ["angioflow", "dr_a"]


# ---- M3: a lost or different key through the CLI ---------------------------------------------


@pytest.mark.slow
def test_ingest_with_a_lost_or_different_key_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_server: None
) -> None:
    monkeypatch.delenv("ANGIOFLOW_SECRET", raising=False)
    source, store = tmp_path / "src", tmp_path / "store"
    for index in range(2):
        write_case(source / f"c{index}", seed=index, patient_id=f"{PATIENT_ID}-{index}")
    first = runner.invoke(app, ["ingest", str(source), "--store", str(store)])
    assert first.exit_code == 0, first.output
    ids = CaseStore(store).case_ids()
    key = (store / "secret.key").read_bytes()

    (store / "secret.key").unlink()
    lost = runner.invoke(app, ["ingest", str(source), "--store", str(store)])
    monkeypatch.setenv("ANGIOFLOW_SECRET", "a-different-secret-0123456789")
    (store / "secret.key").write_bytes(key)
    (store / "secret.key").chmod(0o600)
    other = runner.invoke(app, ["ingest", str(source), "--store", str(store)])
    monkeypatch.delenv("ANGIOFLOW_SECRET")
    (store / "secret.key").write_bytes(b"short")
    short = runner.invoke(app, ["ingest", str(source), "--store", str(store)])

    for result, expected in (
        (lost, "secret.key is missing"),
        (other, "from $ANGIOFLOW_SECRET is not the key the store"),
        (short, "the key file is damaged; restore it from your backup"),
    ):
        assert result.exit_code == 2, result.output
        assert expected in " ".join(result.stderr.split())
        assert len(result.stderr.strip().splitlines()) <= 3 and "Traceback" not in result.output
    assert CaseStore(store).case_ids() == ids  # no second, unlinkable pseudonym


# ---- L3: control characters in folder names ----------------------------------------------------


@pytest.mark.slow
def test_control_characters_in_folder_names_are_never_printed_raw(
    tmp_path: Path, secret: bytes, prefect_server: None
) -> None:
    source, store = tmp_path / "src", tmp_path / "store"
    name = "exam\x1b[2J\x1b[31mOK\nall 3 ingested [red]"
    edit_case_json(write_case(source / name, seed=1), eye="both")
    result = runner.invoke(app, ["ingest", str(source), "--store", str(store), "--json"])
    assert result.exit_code == 1, result.output
    assert "\x1b" not in result.output
    [item] = json.loads(result.stdout)["quarantined"]
    assert item["case"] == "exam\\x1b[2J\\x1b[31mOK\\nall 3 ingested [red]"
    plain = runner.invoke(app, ["ingest", str(source), "--store", str(store)])
    [line] = [line for line in plain.stdout.splitlines() if line.startswith("quarantined")]
    assert "all 3 ingested [red]'" in line and "eye must be" in line  # one line, markup inert
    [record] = read_quarantine(store)
    assert "\n" not in record.reason and "\x1b" not in record.reason


# ---- M4: the patient id in folder names, numbers and other letter cases ------------------------

NUMERIC_ID = 738291046


def _raw_cases_that_tempt_a_leak(source: Path) -> None:
    """A folder named after its patient whose case.json does not parse; a numeric patient id
    that names its folder; a folder and a camera field holding the id in lower case."""
    unparsable = write_case(source / f"{PATIENT_ID}_2024", seed=1)
    text = (unparsable / "case.json").read_text()
    (unparsable / "case.json").write_text(text.replace('"eye"', "'eye'"))  # invalid JSON
    numeric = write_case(source / str(NUMERIC_ID), seed=2)
    edit_case_json(numeric, patient_id=NUMERIC_ID)
    lower = write_case(source / f"exam_{PATIENT_ID.lower()}", seed=3, eye="OS")
    edit_case_json(lower, camera=f"TestCam 2 ({PATIENT_ID.lower()})")


def _leaks(data: str | bytes) -> list[str]:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return [n for n in (PATIENT_ID.lower(), str(NUMERIC_ID)) if n in text.lower()]


@pytest.mark.slow
def test_patient_ids_in_folder_names_never_reach_stdout_store_or_prefect(
    tmp_path: Path, secret: bytes, prefect_server: None
) -> None:
    import h5py
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.logging.handlers import APILogWorker

    source, store = tmp_path / "src", tmp_path / "store"
    _raw_cases_that_tempt_a_leak(source)
    result = runner.invoke(app, ["ingest", str(source), "--store", str(store), "--json"])
    plain = runner.invoke(app, ["ingest", str(source), "--store", str(store)])
    summary = json.loads(result.stdout)
    assert result.exit_code == plain.exit_code == 1
    assert len(summary["ingested"]) == 1 and len(summary["quarantined"]) == 2
    assert {q["case"] for q in summary["quarantined"]} == {
        "folder #1 (name withheld)",
        "folder #2 (name withheld)",
    }

    found = {"stdout": _leaks(result.output + plain.output)}
    for path in store.rglob("*"):
        if path.is_file() and path.suffix != ".h5":
            found[str(path)] = _leaks(path.read_bytes())
    [case_id] = CaseStore(store).case_ids()
    attributes: list[str] = []
    with h5py.File(store / "cases" / f"{case_id}.h5") as handle:
        attributes += [str(v) for v in handle.attrs.values()]
        handle.visititems(lambda _, item: attributes.extend(str(v) for v in item.attrs.values()))
    found["case file attributes (camera, frame files)"] = _leaks(" ".join(attributes))
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=2)
        run_ids = [run.id for run in runs]
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": run_ids}))
        assert len(task_runs) == 6
        found["task run names"] = _leaks(" ".join(t.name for t in task_runs))
        found["flow run parameters"] = _leaks(json.dumps([r.parameters for r in runs]))
        _, unsent = APILogWorker.drain_all(timeout=60)  # logs go out in batches: send them now
        assert not unsent, "run logs not sent to the Prefect server within 60 s"
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=run_ids)))
        assert any("quarantined" in log.message for log in logs)
        found["run logs"] = _leaks(" ".join(log.message for log in logs))
        artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id={"any_": run_ids}))
        assert any(a.key == "ingest-summary" for a in artifacts)
        found["artifacts"] = _leaks(json.dumps([a.data for a in artifacts], default=str))
    assert {where: what for where, what in found.items() if what} == {}
