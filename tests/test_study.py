"""Reading study: the study folder leaks no category, the reader page (headless Chromium)
saves every click and resumes after a crash, the key is unreachable, the report's numbers."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import h5py
import numpy as np
import pytest
from angioflow.flows.cli import app
from angioflow.flows.study import key_folder, study_report
from angioflow.pipeline.h5_formats import SYNTHETIC_SET
from angioflow.pipeline.phantom import PhantomConfig, generate_case
from angioflow.pipeline.study_stats import wilson_interval
from PIL import Image, PngImagePlugin
from support import free_port, headless_chromium, needs_chromium, wait_until
from typer.testing import CliRunner

pytestmark = pytest.mark.slow  # every test builds a study from phantom photos
runner = CliRunner()


def _sources(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """Real photos of two sizes with EXIF/text metadata, and two synthetic sets of other sizes."""
    real = tmp_path / "real"
    real.mkdir(parents=True)
    for seed in range(4):
        size = (256, 384) if seed % 2 else (192, 256)
        photo = generate_case(seed, PhantomConfig(size=size, n_frames=2)).fundus
        info = PngImagePlugin.PngInfo()
        info.add_text("PatientName", "DOE^JANE")
        Image.fromarray(photo).save(real / f"patient_{seed}_real.png", pnginfo=info)
    sets = {}
    for name, side in (("diffusion", 128), ("stylegan", 96)):
        photos = [
            generate_case(s, PhantomConfig(size=(side, side), n_frames=2)).fundus
            for s in range(10, 14)
        ]
        sets[name] = tmp_path / f"{name}.h5"
        with h5py.File(sets[name], "w") as handle:
            SYNTHETIC_SET.stamp(handle)
            handle["images"] = np.stack(photos)
    return real, sets


def _create(tmp_path: Path, seed: int = 7) -> Path:
    real, sets = _sources(tmp_path)
    study = tmp_path / f"study{seed}"
    result = runner.invoke(
        app,
        [
            "study",
            "create",
            "--real",
            str(real),
            "--out",
            str(study),
            "--per-category",
            "3",
            "--seed",
            str(seed),
            "--size",
            "64",
            *[a for name, path in sets.items() for a in ("--synthetic", f"{name}={path}")],
        ],
    )
    assert result.exit_code == 0, result.output
    return study


def test_the_study_folder_leaks_no_category(tmp_path: Path) -> None:
    study = _create(tmp_path)
    images = sorted((study / "images").iterdir())
    assert [p.name for p in images] == [f"{i:04d}.png" for i in range(1, 10)]
    for path in images:
        with Image.open(path) as image:
            assert image.size == (64, 64) and image.mode == "RGB" and image.format == "PNG"
            assert not set(image.info) - {"dpi", "gamma"} and not image.getexif()
    listing = " ".join(str(p.relative_to(study)) for p in study.rglob("*"))
    text = (study / "study.json").read_text() + listing
    for leak in ("real", "diffusion", "stylegan", "patient", "DOE"):
        assert leak not in text
    key = json.loads((key_folder(study) / "key.json").read_text())
    order = [key["images"][f"{i:04d}"]["category"] for i in range(1, 10)]
    assert sorted(order) == ["diffusion"] * 3 + ["real"] * 3 + ["stylegan"] * 3
    assert order != sorted(order)  # shuffled, not grouped by category
    again = _create(tmp_path / "again", seed=7)  # the recorded seed reproduces the study
    assert (again / "study.json").read_text() == (study / "study.json").read_text()


def _serve(study: Path, port: int) -> tuple[subprocess.Popen, str]:
    """Start ``angioflow study read`` and return it with the address it prints (with token)."""
    command = [
        str(Path(sys.executable).parent / "angioflow"),
        "study",
        "read",
        str(study),
        "--reader",
        "alice",
        "--port",
        str(port),
        "--no-browser",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    line = process.stdout.readline()  # "reader page for alice: http://127.0.0.1:PORT/?token=..."
    if "http://" not in line:
        process.kill()
        raise RuntimeError(f"the reader server did not start: {line!r}")
    url = line.split(": ", 1)[1].strip()
    try:
        wait_until(lambda: _answers(url), 10, "the reader page", interval=0.1, ignore=(OSError,))
    except AssertionError:
        process.kill()
        raise
    return process, url


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1):
        return True


def _status(url: str) -> int:
    try:
        return urllib.request.urlopen(url, timeout=2).status
    except urllib.error.HTTPError as error:
        return error.code


@needs_chromium
def test_reader_page_saves_every_click_and_resumes_after_a_crash(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    study = _create(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    driver = headless_chromium()
    server, url = _serve(study, port)
    try:
        driver.get(url)
        progress = lambda: driver.find_element(By.ID, "progress").text  # noqa: E731
        _page(lambda: progress().startswith("Image 1 of 9"), "Image 1 of 9")
        assert (
            driver.execute_script(
                "const i = document.getElementById('photo'); return i.complete && i.naturalWidth"
            )
            == 64
        )
        driver.find_element(By.ID, "real").click()
        _page(lambda: progress().startswith("Image 2 of 9"), "Image 2 of 9")
        body = driver.find_element(By.TAG_NAME, "body")
        body.send_keys("4")
        body.send_keys("s")
        _page(lambda: progress().startswith("Image 3 of 9"), "Image 3 of 9")
        driver.find_element(By.ID, "synthetic").click()
        _page(lambda: progress().startswith("Image 4 of 9"), "Image 4 of 9")
        lines = (study / "answers" / "alice.jsonl").read_text().splitlines()
        answers = [json.loads(line) for line in lines]
        assert [(a["image"], a["answer"], a["confidence"]) for a in answers] == [
            ("0001", "real", None),
            ("0002", "synthetic", 4),
            ("0003", "synthetic", None),
        ]

        server.send_signal(signal.SIGKILL)  # a crash mid-session
        server.wait()
        server, url = _serve(study, port)  # a new session: a new token
        driver.get(url)
        # resumes with all answers kept
        _page(lambda: progress().startswith("Image 4 of 9"), "Image 4 of 9")
        token = url.split("?token=")[1]
        for path in (
            "/key.json",
            "/study.json",
            "/answers/alice.jsonl",
            "/images/../study.json",
            f"/../{key_folder(study).name}/key.json",
            "/images/0001.png/../../key",
        ):
            assert _status(f"{base}{path}?token={token}") == 404, path
        driver.save_screenshot(str(tmp_path / "reader.png"))
        for shown in range(4, 10):  # one key per image, each once the image is on screen
            where = f"Image {shown} of 9"
            _page(lambda where=where: progress().startswith(where), where)
            driver.find_element(By.TAG_NAME, "body").send_keys("r")
        _page(lambda: driver.find_element(By.ID, "done").is_displayed(), "done")
    finally:
        driver.quit()
        server.send_signal(signal.SIGKILL)
        server.wait()
    report = study_report(study)
    assert report["table"]["real"]["alice"]["n"] == 3
    assert sum(row["alice"]["n"] for row in report["table"].values()) == 9


def _page(condition, what: str) -> None:  # noqa: ANN001 - a no-argument callable
    """Wait for the reader page to show ``what``; errors while it is between states mean "not
    yet"."""
    wait_until(condition, 30, f"the reader page showing {what!r}", ignore=(Exception,))


def test_report_matches_a_hand_computed_example(tmp_path: Path) -> None:
    study = _create(tmp_path)
    key = json.loads((key_folder(study) / "key.json").read_text())["images"]
    real = [i for i, e in key.items() if e["category"] == "real"]
    diffusion = [i for i, e in key.items() if e["category"] == "diffusion"]
    stylegan = [i for i, e in key.items() if e["category"] == "stylegan"]
    # alice: calls every image real. bob: right on all real and stylegan, wrong on one diffusion.
    said = {
        "alice": dict.fromkeys(key, "real"),
        "bob": {
            **dict.fromkeys(real, "real"),
            **dict.fromkeys(stylegan, "synthetic"),
            **dict.fromkeys(diffusion, "synthetic"),
            diffusion[0]: "real",
        },
    }
    for reader, answers in said.items():
        with open(study / "answers" / f"{reader}.jsonl", "w") as handle:
            for image, answer in answers.items():
                handle.write(json.dumps({"image": image, "answer": answer}) + "\n")
            handle.write('{"image": "0001", "ans')  # a line cut by a crash is ignored
    report = study_report(study)
    table = report["table"]
    assert (
        table["real"]["alice"]["accuracy"] == 1.0 and table["diffusion"]["alice"]["accuracy"] == 0
    )
    assert table["diffusion"]["bob"]["accuracy"] == pytest.approx(2 / 3)
    assert table["diffusion"]["all readers"]["accuracy"] == pytest.approx(2 / 6)
    assert table["diffusion"]["all readers"]["called_real"] == pytest.approx(4 / 6)
    low, high = wilson_interval(2, 6)
    assert (
        table["diffusion"]["all readers"]["ci_low"],
        table["diffusion"]["all readers"]["ci_high"],
    ) == (low, high)
    # kappa by hand: 4 items agree (3 real, diffusion[0]) and 5 split -> P = 4/9; 13 of 18
    # answers say real -> Pe = (13/18)^2 + (5/18)^2 = 194/324; kappa = (144 - 194) / (324 - 194)
    assert report["fleiss_kappa"] == pytest.approx(-50 / 130)
    changed = key_folder(study) / "key.json"
    changed.write_text(changed.read_text().replace("stylegan", "stylegan2"))
    with pytest.raises(ValueError, match="does not match the study's key_sha256"):
        study_report(study)


def _raw(port: int, request: bytes, *, timeout: float = 5.0) -> tuple[int, bytes]:
    """Send raw bytes to the reader server; (status, body) of its answer, (0, b"") when the
    server closed the connection without one."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        try:
            connection.sendall(request)
        except OSError:  # the server answered and closed before taking the whole body
            pass
        answer = b""
        try:
            while chunk := connection.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    if not answer:
        return 0, b""
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def _post(port: int, body: bytes, *, token: str | None, headers: dict[str, str]) -> bytes:
    lines = ["POST /answer HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    if token is not None:
        lines.append(f"X-Reader-Token: {token}")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.fixture
def reader_server(tmp_path: Path):  # noqa: ANN201 - (server, port, token, answers file)
    from urllib.parse import parse_qs, urlsplit

    from angioflow.flows.study_reader import ReaderServer

    study = _create(tmp_path)
    server = ReaderServer(study, "alice", timeout_s=0.5, max_connections=8)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    token = parse_qs(urlsplit(server.url).query).get("token", [None])[0]
    try:
        yield server, server.httpd.server_address[1], token, study / "answers" / "alice.jsonl"
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def test_reader_server_refuses_cross_site_unauthenticated_and_unbounded_requests(
    reader_server,  # noqa: ANN001
) -> None:
    server, port, token, answers = reader_server
    good = json.dumps({"image": "0001", "answer": "real", "confidence": 3}).encode()
    own = {"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{port}"}

    def post(body: bytes = good, *, token: str | None = token, **headers: str) -> int:
        merged = {"Content-Length": str(len(body)), **own, **headers}
        merged = {k: v for k, v in merged.items() if v}
        return _raw(port, _post(port, body, token=token, headers=merged))[0]

    # a page on another site posting text/plain (a "simple" request needing no preflight)
    assert post(token=None, Origin="http://evil.example", **{"Content-Type": "text/plain"}) == 403
    assert post(Origin="http://evil.example") == 403
    assert post(token=None) == 403
    assert post(token="not-the-token") == 403
    assert post(**{"Content-Type": "text/plain"}) == 415
    rebound = f"GET /state HTTP/1.1\r\nHost: evil.example:{port}\r\nX-Reader-Token: {token}\r\n\r\n"
    assert _raw(port, rebound.encode())[0] == 403  # DNS rebinding: a foreign Host
    assert _status(f"http://127.0.0.1:{port}/state") == 403
    assert _status(f"http://127.0.0.1:{port}/") == 403
    assert _status(f"http://127.0.0.1:{port}/images/0001.png") == 403
    assert not answers.exists() or answers.read_text() == ""

    # answers of the wrong type are refused, not coerced
    for payload in (
        {"image": "0001", "answer": "real", "confidence": True},
        {"image": "0001", "answer": "real", "confidence": 3.0},
        {"image": "0001", "answer": "real", "confidence": 9},
        {"image": 1, "answer": "real"},
        {"image": "0001", "answer": ["real"]},
        {"image": "0001", "answer": "real", "extra": 1},
        ["0001", "real"],
    ):
        assert post(json.dumps(payload).encode()) == 400, payload
    assert post(b'{"image": "0001", "answer": "real", "confidence": NaN}') == 400
    assert not answers.exists() or answers.read_text() == ""

    # the body cap holds whatever Content-Length says
    started = time.monotonic()
    assert post(b"x" * 2_000_000, **{"Content-Length": "-1"}) == 400
    assert post(b"x" * 2_000_000, **{"Content-Length": "1000000000"}) == 413
    assert post(b"{}", **{"Content-Length": ""}) == 411
    assert post(b"{}", **{"Content-Length": "+2"}) == 400
    assert time.monotonic() - started < 5  # refused at once, not after reading the body

    assert post() == 200
    recorded = [json.loads(line) for line in answers.read_text().splitlines()]
    assert [(r["image"], r["answer"], r["confidence"]) for r in recorded] == [("0001", "real", 3)]
    assert urllib.request.urlopen(server.url, timeout=2).status == 200  # the printed address


def test_reader_server_bounds_threads_and_drops_idle_connections(
    reader_server,  # noqa: ANN001
) -> None:
    server, port, token, _ = reader_server
    before = threading.active_count()
    peak, stop = [0], threading.Event()

    def watch_threads() -> None:  # the most handler threads at once, this one not counted
        while not stop.is_set():
            peak[0] = max(peak[0], threading.active_count() - before - 1)
            stop.wait(0.01)

    watcher = threading.Thread(target=watch_threads, daemon=True)
    watcher.start()
    idle = []
    try:
        for _ in range(150):
            probe = socket.socket()
            probe.setblocking(False)
            probe.connect_ex(("127.0.0.1", port))
            idle.append(probe)
        # refused SYNs are retried after 1 s and 3 s: the server works through the queue, and
        # each idle connection is dropped after the 0.5 s socket timeout
        wait_until(
            lambda: any(_closed_by_server(p) for p in idle), 30, "an idle connection dropped"
        )
        started = time.monotonic()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/state", headers={"X-Reader-Token": token or ""}
        )
        assert urllib.request.urlopen(request, timeout=60).status == 200
        assert time.monotonic() - started < 150 / 8 * 0.5 + 5  # a reader behind them is served
        # the server works through the rest of the queue (a connection whose handshake the
        # full queue dropped never hears from it: the client never sent a byte)
        wait_until(lambda: threading.active_count() - 1 <= before, 60, "the server idle again")
    finally:
        stop.set()
        watcher.join()
        for probe in idle:
            probe.close()
    assert peak[0] <= 8  # max_connections


def _closed_by_server(probe: socket.socket) -> bool:
    """Whether the server closed this non-blocking connection (end of stream, or a reset)."""
    try:
        return probe.recv(1) == b""
    except ConnectionResetError:
        return True
    except OSError:  # still open, or not yet accepted
        return False


def _one_line_error(result) -> str:  # noqa: ANN001 - a click Result
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_study_commands_fail_with_one_line_reasons(tmp_path: Path) -> None:
    real, sets = _sources(tmp_path)
    study = tmp_path / "study"

    def create(*extra: str, real_source: Path = real, out: Path = study) -> object:
        args = ["study", "create", "--real", str(real_source), "--out", str(out)]
        return runner.invoke(app, [*args, "--per-category", "3", "--size", "64", *extra])

    assert "lower --per-category" in _one_line_error(
        create("--synthetic", f"diffusion={sets['diffusion']}", "--per-category", "9")
    )
    assert "neither an export" in _one_line_error(
        create("--synthetic", f"d={sets['diffusion']}", real_source=tmp_path / "absent")
    )
    (tmp_path / "not.h5").write_bytes(b"not an HDF5 file at all")
    assert "not.h5" in _one_line_error(create("--synthetic", f"d={tmp_path / 'not.h5'}"))
    (real / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    assert "broken.png" in _one_line_error(create("--synthetic", f"d={sets['diffusion']}"))
    (real / "broken.png").unlink()
    assert "real category" in _one_line_error(create("--synthetic", f"real={sets['diffusion']}"))
    assert not study.exists()
    assert create("--synthetic", f"d={sets['diffusion']}").exit_code == 0
    assert "never overwritten" in _one_line_error(create("--synthetic", f"d={sets['diffusion']}"))

    read = ["study", "read", "--no-browser", "--reader"]
    assert "not a study folder" in _one_line_error(runner.invoke(app, [*read, "a", str(real)]))
    assert "reader name" in _one_line_error(runner.invoke(app, [*read, "../x", str(study)]))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert "--port" in _one_line_error(
            runner.invoke(app, [*read, "a", str(study), "--port", port])
        )

    (study / "answers" / "alice.jsonl").write_text('[1, 2]\n{"image": 7}\n')  # damaged lines
    key = key_folder(study) / "key.json"
    key.write_text(key.read_text().replace('"d"', '"e"'))
    assert "key_sha256" in _one_line_error(runner.invoke(app, ["study", "report", str(study)]))
    key.unlink()
    assert "key.json" in _one_line_error(runner.invoke(app, ["study", "report", str(study)]))


def test_study_report_json_is_valid_with_no_answers_and_one_reader(tmp_path: Path) -> None:
    study = _create(tmp_path)
    with open(study / "answers" / "alice.jsonl", "w") as handle:  # one reader, real images only
        key = json.loads((key_folder(study) / "key.json").read_text())["images"]
        for image in [i for i, e in key.items() if e["category"] == "real"]:
            handle.write(json.dumps({"image": image, "answer": "real"}) + "\n")
    result = runner.invoke(app, ["study", "report", str(study), "--json"])
    assert result.exit_code == 0, result.output

    def strict(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    for text in (result.stdout, (tmp_path / "study7.report" / "report.json").read_text()):
        report = json.loads(text, parse_constant=strict)
        assert report["table"]["real"]["alice"]["accuracy"] == 1.0
        unanswered = report["table"]["diffusion"]["alice"]
        assert unanswered["n"] == 0 and unanswered["accuracy"] is None
        assert unanswered["called_real"] is None and "no answers" in unanswered["note"]
        assert report["fleiss_kappa"] is None and "2 readers" in report["fleiss_kappa_note"]
    table = runner.invoke(app, ["study", "report", str(study)])
    assert table.exit_code == 0, table.output
    assert "nan" not in table.stdout.lower()
