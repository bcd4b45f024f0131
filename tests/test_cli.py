"""The ``angioflow`` command line: exit codes, JSON summaries, status, and privacy end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from angioflow.flows import cli
from angioflow.flows.cli import app
from angioflow.pipeline.casestore import CaseStore
from support import PATIENT_ID, edit_case_json, write_case
from typer.testing import CliRunner

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich tables wrap cells at 80 columns; assertions read whole cells."""
    monkeypatch.setattr(cli.console, "width", 250)


def angioflow(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def source_and_store(tmp_path: Path, secret: bytes, prefect_server: None) -> tuple[Path, Path]:
    """A raw source folder and a store folder for `angioflow ingest` (neither made yet), with
    the test key set and the session's Prefect server up."""
    return tmp_path / "src", tmp_path / "store"


@pytest.mark.slow
def test_ingest_json_summary_exit_codes_and_status(source_and_store: tuple[Path, Path]) -> None:
    source, store = source_and_store
    write_case(source / "a", seed=1)
    write_case(source / "b", seed=2, eye="OS")
    edit_case_json(write_case(source / "c", seed=3, patient_id="other"), eye="both")

    code, out, _ = angioflow("ingest", str(source), "--store", str(store), "--json")
    summary = json.loads(out)
    assert code == 1
    assert [i["case"] for i in summary["ingested"]] == ["a", "b"]
    assert summary["quarantined"] == [
        {
            "case": "c",
            "case_id": "",
            "file": "case.json",
            "reason": "case 'c': case.json: eye must be 'OD' or 'OS', got 'both'",
        }
    ]

    edit_case_json(source / "c", eye="OD")
    code, out, _ = angioflow("ingest", str(source), "--store", str(store), "--json")
    summary = json.loads(out)
    assert code == 0
    assert [i["case"] for i in summary["skipped"]] == ["a", "b"]
    assert [i["case"] for i in summary["ingested"]] == ["c"]

    from prefect import get_client

    with get_client(sync_client=True) as client:
        task_runs = {t.name for t in client.read_task_runs()}
    assert {"ingest a", "ingest b", "ingest c"} <= task_runs  # one run per case in the UI

    code, out, _ = angioflow("status", "--store", str(store), "--json")
    status = json.loads(out)
    assert code == 0 and status["quarantined"] == []
    assert sorted(c["eye"] for c in status["cases"]) == ["OD", "OD", "OS"]
    assert {c["stage"] for c in status["cases"]} == {"ingested"}


@pytest.mark.slow
def test_status_table_shows_review_queue_errors_and_quarantine(
    source_and_store: tuple[Path, Path],
) -> None:
    source, store = source_and_store
    write_case(source / "good", seed=1)
    write_case(source / "broken", seed=2)
    (source / "broken" / "fundus.png").write_bytes(b"")
    angioflow("ingest", str(source), "--store", str(store))
    case_store = CaseStore(store)
    [case_id] = case_store.case_ids()
    case_store.save_version(
        case_id, "vessel", np.zeros((96, 128), np.uint8), editor="angioflow", parent=0
    )
    case_store.record_error(case_id, "registration", "frame 2 dropped: low overlap")

    code, out, _ = angioflow("status", "--store", str(store))
    assert code == 0
    assert case_id in out and "vessel_review" in out and "waiting" in out
    assert "frame 2 dropped" in out
    assert "Quarantined" in out and "broken" in out and "empty file" in out

    code, out, _ = angioflow("history", case_id, "--store", str(store), "--json")
    history = json.loads(out)
    assert code == 0 and [(v["kind"], v["version"], v["editor"]) for v in history["versions"]] == [
        ("vessel", 1, "angioflow")
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("ingest", "/nonexistent/src", "--store", "/tmp/s"),
            "source folder /nonexistent/src does not exist",
        ),
        (("status", "--store", "/nonexistent/store"), "no case store at /nonexistent/store"),
        (("history", "../evil", "--store", "{tmp}/store"), "invalid case id '../evil'"),
        (("history", "p1_OD_abc", "--store", "{tmp}/store"), "no case 'p1_OD_abc'"),
        (("history", "p1_OD_abc", "--store", "{tmp}/typo"), "no case store at"),
        (("status", "--catalog", "{tmp}/bad.yaml"), "dataset 'case_store' field 'filepath'"),
        (("status", "--catalog", "{tmp}/absent.yaml"), "no catalog file"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    CaseStore(tmp_path / "store")
    (tmp_path / "bad.yaml").write_text(
        "version: 1\ndatasets:\n  case_store: {type: case_store, filepath: /abs}\n"
    )
    code, out, err = angioflow(*(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert code == 2
    assert message in " ".join(err.split())
    assert "Traceback" not in err + out
    assert not (tmp_path / "typo").exists()  # a mistyped store is never created


@pytest.mark.slow
def test_raw_patient_id_appears_in_no_output_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end through the installed console script, its Prefect server and database."""
    source, store, prefect_home = tmp_path / "src", tmp_path / "store", tmp_path / "prefect"
    write_case(source / "plain", seed=1)
    write_case(source / f"exam_{PATIENT_ID}", seed=2, eye="OS")  # folder named after the patient
    named = write_case(source / "named_files", seed=3, acquired="2023-02-03")
    (named / "fa" / "001.png").rename(named / "fa" / f"{PATIENT_ID}_001.png")
    frames = json.loads((named / "case.json").read_text())["fa_frames"]
    frames[1]["file"] = f"fa/{PATIENT_ID}_001.png"
    edit_case_json(named, fa_frames=frames)
    missing = write_case(source / f"bad_{PATIENT_ID}", seed=4, acquired="2022-01-01")
    frames[1]["file"] = f"fa/{PATIENT_ID}_missing.png"
    edit_case_json(missing, fa_frames=frames)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ANGIOFLOW_"))}
    env["PREFECT_HOME"] = str(prefect_home)
    script = Path(sys.executable).parent / "angioflow"
    outputs = []
    for command in (
        ["ingest", str(source), "--store", str(store), "--json"],
        ["status", "--store", str(store)],
    ):
        done = subprocess.run(
            [str(script), *command], env=env, capture_output=True, timeout=300, cwd=tmp_path
        )
        outputs.append(done)
    ingest, status = outputs
    summary = json.loads(ingest.stdout)
    assert ingest.returncode == 1
    assert len(summary["ingested"]) == 3 and len(summary["quarantined"]) == 1
    assert "<redacted>_missing.png" in summary["quarantined"][0]["reason"]
    assert status.returncode == 0

    needle = PATIENT_ID.encode()
    leaks = [
        name
        for name, data in (
            ("ingest stdout", ingest.stdout),
            ("ingest stderr", ingest.stderr),
            ("status stdout", status.stdout),
            ("status stderr", status.stderr),
        )
        if needle in data
    ]
    scanned = 0
    for root in (store, prefect_home):
        for path in root.rglob("*"):
            if path.is_file():
                scanned += 1
                if needle in path.read_bytes():
                    leaks.append(str(path))
    assert scanned >= 5 and any(p.suffix == ".db" for p in prefect_home.rglob("*"))
    assert leaks == []
    assert (store / "secret.key").stat().st_mode & 0o077 == 0


@pytest.mark.slow
@pytest.mark.long
def test_phantom_then_demo_run_end_to_end(tmp_path: Path, prefect_server: None) -> None:
    code, out, _ = angioflow(
        "phantom", str(tmp_path / "ph"), "--n", "2", "--size", "128", "192", "--frames", "2"
    )
    assert code == 0 and (tmp_path / "ph" / "phantom_001" / "truth" / "av.png").is_file()
    code, _, err = angioflow("phantom", str(tmp_path / "ph"), "--n", "1")
    assert code == 2 and "already holds files" in err

    for run in range(2):  # one exam: the re-run finds it unchanged
        code, out, _ = angioflow(
            "demo", "--out", str(tmp_path / "demo"), "--n", "1", "--samples", "4"
        )
        assert code == 0, out
        assert ("1 ingested, 0 unchanged" if run == 0 else "0 ingested, 1 unchanged") in out
        assert f"report: {tmp_path / 'demo' / 'report.html'}" in out
    store = tmp_path / "demo" / "store"
    case_ids = CaseStore(store).case_ids()
    assert len(case_ids) == 1
    assert all(CaseStore(store).summary(c).stage == "done" for c in case_ids)
    with h5py.File(tmp_path / "demo" / "synthetic.h5", "r") as handle:
        assert len(handle["images"]) == 4  # --samples
    report = (tmp_path / "demo" / "report.html").read_text()
    for stage in (
        "Ingestion (stage 1)",
        "Curation (stages 2-7)",
        "A/V labelling (9)",
        "Generation (stage 11)",
        "Vessel recovery",
        "Structural realism",
        "Image realism",
        "DEMO: every approval",
    ):
        assert stage in report, stage
    code, out, _ = angioflow("history", case_ids[0], "--store", str(store))
    assert code == 0 and "DEMO automatic approval" in out
    code, out, _ = angioflow(
        "audit",
        "--store",
        str(store),
        "--raw",
        str(tmp_path / "demo" / "raw"),
        "--path",
        str(tmp_path / "demo"),
    )
    assert code == 0, out  # the demo's outputs hold no identifier and no image metadata

    code, out, _ = angioflow("curate", "--store", str(store), "--json")
    assert code == 0 and json.loads(out)["curated"] == json.loads(out)["waiting"] == []
    code, _, err = angioflow("curate", "--store", str(store), "--config", "configs/vessel.yaml")
    assert code == 2 and "unknown settings" in err and "\n" not in err.strip()
    code, out, _ = angioflow(
        "inspect", case_ids[0], "--store", str(store), "--out", str(tmp_path / "qc")
    )
    assert code == 0 and (tmp_path / "qc" / "vessel.png").is_file()
    assert json.loads((tmp_path / "qc" / "metrics.json").read_text())["stage"] == "done"
    code, _, err = angioflow(
        "inspect",
        case_ids[0],
        "--store",
        str(store),
        "--out",
        str(tmp_path / "qc"),
        "--version",
        "7",
    )
    assert code == 2 and "no vessel mask version 7" in err
