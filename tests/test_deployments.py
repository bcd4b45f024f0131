"""Running angioflow the way data engineers do: deployments on a real Prefect server, picked up
by a real process worker; schedules checked when the catalog is read; progress a person can
follow; --json output that is JSON alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from angioflow.flows.catalog import CatalogError, load_catalog
from angioflow.flows.cli import app
from angioflow.flows.progress import format_eta
from support import TEST_SECRET, free_port, wait_until
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
runner = CliRunner()


def _catalog_with(tmp_path: Path, schedules: str) -> Path:
    text = (ROOT / "data_catalog.yaml").read_text()
    text = text[: text.index("schedules:")] + schedules
    path = tmp_path / "catalog.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("schedules", "expected"),
    [
        (
            'schedules:\n  generate:\n    cron: "0 3 * * 1"\n    parameters: {sampeler: ddim}\n',
            "schedules.generate.parameters: flow generate has no parameter 'sampeler'; it takes: "
            "out_dir, n, seed, sampler",
        ),
        (
            'schedules:\n  generate:\n    cron: "0 3 * * 1"\n    parameters: {n: many}\n',
            "parameter n='many': Input should be a valid integer",
        ),
        (
            'schedules:\n  generate:\n    cron: "0 3 * * 1"\n    parameters: {sampler: euler}\n',
            "parameter sampler='euler': Input should be 'ddpm', 'ddim' or 'dpm'",
        ),
        (
            'schedules:\n  generate:\n    cron: "0 3 * * 1"\n    parameters: {n: 0}\n',
            "parameter n=0: Input should be greater than or equal to 1",
        ),
        (
            'schedules:\n  ingest:\n    cron: "0 * * * *"\n    parameters:\n'
            "      limits: {max_pixel: 10}\n",
            "parameter limits.max_pixel={'max_pixel': 10}: Extra inputs are not permitted",
        ),
        (
            'schedules:\n  curate:\n    cron: "0 * * * *"\n    parameters:\n'
            "      settings: {min_corelation: 0.3}\n",
            "settings.min_corelation",
        ),
        (
            'schedules:\n  generation:\n    cron: "0 3 * * 1"\n',
            "schedules.generation: no flow of that name; schedules are keyed by the flow they "
            "run: ingest, curate, generate",
        ),
    ],
)
def test_a_schedule_typo_is_refused_when_the_catalog_is_read(
    tmp_path: Path, schedules: str, expected: str
) -> None:
    catalog = _catalog_with(tmp_path, schedules)
    with pytest.raises(CatalogError) as error:
        load_catalog(catalog)
    assert expected in str(error.value) and "\n" not in str(error.value)
    served = runner.invoke(app, ["serve", "--catalog", str(catalog), "--work-pool", "p"])
    assert served.exit_code == 2 and expected in " ".join(served.stderr.split())
    assert "Traceback" not in served.output + served.stderr


def test_valid_schedules_of_every_flow_are_accepted(tmp_path: Path) -> None:
    catalog = load_catalog(
        _catalog_with(
            tmp_path,
            'schedules:\n  ingest:\n    cron: "*/30 * * * *"\n    parameters:\n'
            "      limits: {max_frames: 40}\n"
            '  curate:\n    cron: "15 * * * *"\n    parameters:\n'
            "      settings: {min_correlation: 0.35, rigid: {sampling_fraction: 0.3}}\n"
            '  generate:\n    cron: "0 3 * * 1"\n    parameters: {n: 16, sampler: dpm}\n',
        )
    )
    assert set(catalog.schedules) == {"ingest", "curate", "generate"}


def test_eta_reads_as_a_person_would_say_it() -> None:
    assert format_eta(3725) == "1 h 02 min"
    assert format_eta(75) == "1 min 15 s"
    assert format_eta(9.4) == "9 s"


@pytest.mark.slow
def test_ingest_and_curate_show_progress_and_json_stays_pure(
    tmp_path: Path, prefect_server: None, secret: bytes
) -> None:
    from angioflow.pipeline.phantom import PhantomConfig, write_phantom_set

    write_phantom_set(
        tmp_path / "raw", n=2, seed=23, config=PhantomConfig(size=(256, 384), n_frames=3)
    )
    store = tmp_path / "store"
    ingested = runner.invoke(app, ["ingest", str(tmp_path / "raw"), "--store", str(store)])
    assert ingested.exit_code == 0, ingested.stderr
    assert "2/2" in ingested.stderr and "ingest" in ingested.stderr  # the bar, on stderr
    assert "cases/min" in ingested.stderr

    curated = runner.invoke(
        app,
        ["curate", "--store", str(store), "--json", "--report", str(tmp_path / "report")],
    )
    assert curated.exit_code == 0, curated.stderr
    summary = json.loads(curated.stdout)  # nothing but JSON on stdout
    assert len(summary["curated"]) == 2
    assert summary["report"] == str(tmp_path / "report" / "report.html")
    assert "2/2" in curated.stderr

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts(limit=200)
    progress = {a.key: a for a in artifact if a.key in ("ingest-progress", "curate-progress")}
    assert set(progress) == {"ingest-progress", "curate-progress"}
    assert all(a.type == "progress" and float(a.data) == 100.0 for a in progress.values())
    for item in artifact:  # nothing a remote UI cannot open
        assert "file://" not in json.dumps(item.data if item.data is not None else "")


# ---- a real server and a real process worker ------------------------------------------------


@pytest.fixture
def prefect_api(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A `prefect server start` of its own (its own home and database) on a free local port."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect_home"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [BIN / "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        try:
            wait_until(
                lambda: httpx.get(f"{api}/health", timeout=2).status_code == 200,
                120,
                "a healthy Prefect server",
                interval=0.5,
                ignore=(httpx.HTTPError,),
            )
        except AssertionError as error:
            raise AssertionError((tmp_path / "server.log").read_text()[-3000:]) from error
        yield api, env
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        log.close()


def _wait_for_state(api: str, run_id: str, states: set[str], timeout: float = 300) -> str:
    def state() -> str | None:
        now = httpx.get(f"{api}/flow_runs/{run_id}").json()["state"]["type"]
        return now if now in states else None

    return wait_until(state, timeout, f"flow run {run_id} in {sorted(states)}", interval=1)


@pytest.mark.slow
def test_deployments_run_and_retry_on_a_real_process_worker(
    tmp_path: Path, prefect_api: tuple[str, dict[str, str]]
) -> None:
    from angioflow.pipeline.casestore import CaseStore, Stage
    from angioflow.pipeline.phantom import PhantomConfig, write_phantom_set

    api, env = prefect_api
    env = {**env, "ANGIOFLOW_SECRET": TEST_SECRET}
    work = tmp_path / "project"
    work.mkdir()
    shutil.copy(ROOT / "data_catalog.yaml", work / "data_catalog.yaml")
    registered = subprocess.run(
        [BIN / "angioflow", "serve", "--work-pool", "exams"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert registered.returncode == 0, registered.stderr[-3000:]
    deployments = {d["id"]: d for d in httpx.post(f"{api}/deployments/filter", json={}).json()}
    assert len(deployments) == 3 and all(
        d["work_pool_name"] == "exams" for d in deployments.values()
    )
    flows = {f["id"]: f["name"] for f in httpx.post(f"{api}/flows/filter", json={}).json()}
    by_flow = {flows[d["flow_id"]]: d for d in deployments.values()}
    assert set(by_flow) == {"ingest", "curate", "generate"}
    assert by_flow["ingest"]["parameters"]["source"] == str(work / "data" / "01_raw")
    # the UI shows a form: typed parameters in the deployment's schema
    schema = by_flow["generate"]["parameter_openapi_schema"]["properties"]
    assert schema["sampler"]["enum"] == ["ddpm", "ddim", "dpm"]

    worker_log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115 - closed below
    worker = subprocess.Popen(
        [BIN / "prefect", "worker", "start", "--pool", "exams", "--type", "process"],
        cwd=tmp_path,
        env=env,
        stdout=worker_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # a run started from the API (as the UI's "Run" does) on a source not yet there fails
        run = httpx.post(
            f"{api}/deployments/{by_flow['ingest']['id']}/create_flow_run", json={}
        ).json()
        assert _wait_for_state(api, run["id"], {"COMPLETED", "FAILED", "CRASHED"}) == "FAILED"
        # the exams arrive; the same run is retried (the UI's "Retry") and finishes
        config = PhantomConfig(size=(256, 384), n_frames=3)
        write_phantom_set(work / "data" / "01_raw", n=1, seed=31, config=config)
        retried = httpx.post(
            f"{api}/flow_runs/{run['id']}/set_state",
            json={"state": {"type": "SCHEDULED", "name": "AwaitingRetry"}, "force": True},
        )
        assert retried.status_code in (200, 201), retried.text
        assert _wait_for_state(api, run["id"], {"COMPLETED", "FAILED", "CRASHED"}) == "COMPLETED"
        store = CaseStore(work / "data" / "02_cases", create=False)
        assert len(store.case_ids()) == 1

        curate = httpx.post(
            f"{api}/deployments/{by_flow['curate']['id']}/create_flow_run", json={}
        ).json()
        assert _wait_for_state(api, curate["id"], {"COMPLETED", "FAILED", "CRASHED"}) == (
            "COMPLETED"
        )
        assert store.summary(store.case_ids()[0]).stage is Stage.VESSEL_REVIEW
    finally:
        os.killpg(worker.pid, 15)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:  # Prefect's worker may outlast SIGTERM on busy cores
            os.killpg(worker.pid, 9)
            worker.wait(timeout=30)
        worker_log.close()
    # a typo in a run's parameters is refused by the server, with the reason
    refused = httpx.post(
        f"{api}/deployments/{by_flow['generate']['id']}/create_flow_run",
        json={"parameters": {"n": "many"}},
    )
    assert refused.status_code == 409 and "n" in refused.text
