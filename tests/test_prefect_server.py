"""The temporary Prefect server of a command: it dies with the command (even on SIGKILL), a
slow start is one line of error, and a first run on a fresh PREFECT_HOME succeeds on a busy
machine. Real `angioflow` processes, real servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import TEST_SECRET, wait_until, write_case

ANGIOFLOW = str(Path(sys.executable).parent / "angioflow")

pytestmark = [
    pytest.mark.slow,  # real commands starting real servers
    pytest.mark.skipif(sys.platform != "linux", reason="reads /proc for processes"),
]


def _environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    environment = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect_home"),  # fresh: the server migrates its db
        "ANGIOFLOW_SECRET": TEST_SECRET,
        **extra,
    }
    environment.pop("PREFECT_API_URL", None)
    return environment


def _raw_cases(tmp_path: Path, n: int) -> Path:
    for index in range(n):
        write_case(tmp_path / "raw" / f"case{index}", seed=index, patient_id=f"P-{index}")
    return tmp_path / "raw"


def _children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.name.isdigit() and int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_killed_command_leaves_no_prefect_server(tmp_path: Path) -> None:
    command = [ANGIOFLOW, "ingest", str(_raw_cases(tmp_path, 1)), "--store", str(tmp_path / "s")]
    process = subprocess.Popen(
        command,
        env=_environment(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    servers: list[int] = []

    def running_children() -> list[int]:
        assert process.poll() is None, "the command ended before it started a Prefect server"
        return _children(process.pid)

    try:
        servers = wait_until(running_children, 120, "a Prefect server started by the command")
        # killed while the server migrates its fresh database and the command waits for it
        database = tmp_path / "prefect_home" / "prefect.db"
        wait_until(database.exists, 120, "the temporary server's database")
        assert process.poll() is None, "the command finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait()
        wait_until(
            lambda: not any(_alive(pid) for pid in servers),
            20,
            "the Prefect server gone after its command was killed",
            interval=0.1,
        )
    finally:
        for pid in [process.pid, *servers]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        process.wait()


def test_a_server_that_does_not_start_in_time_is_one_line_of_error(tmp_path: Path) -> None:
    command = [ANGIOFLOW, "ingest", str(_raw_cases(tmp_path, 1)), "--store", str(tmp_path / "s")]
    environment = _environment(tmp_path, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="1")
    result = subprocess.run(
        [*command, "--json"], env=environment, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the temporary Prefect API server did not start within 1 s")
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in last


def test_first_ingest_on_a_fresh_prefect_home_succeeds_with_both_cores_busy(
    tmp_path: Path,
) -> None:
    burn = "import time\nend = time.monotonic() + 240\nwhile time.monotonic() < end: pass\n"
    burners = [subprocess.Popen([sys.executable, "-c", burn]) for _ in range(2)]
    try:
        result = subprocess.run(
            [ANGIOFLOW, "ingest", str(_raw_cases(tmp_path, 2)), "--store", str(tmp_path / "s")]
            + ["--json"],
            env=_environment(tmp_path),
            capture_output=True,
            text=True,
            timeout=230,
        )
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(json.loads(result.stdout)["ingested"]) == 2
