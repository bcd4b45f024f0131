"""Reading study: the study folder leaks no category, the reader page (headless Chromium)
saves every click and resumes after a crash, the key is unreachable, the report's numbers."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import headless_chromium, needs_chromium
from PIL import Image, PngImagePlugin
from typer.testing import CliRunner

from flows.cli import app
from flows.study import key_folder, study_report
from pipeline.h5_formats import SYNTHETIC_SET
from pipeline.phantom import PhantomConfig, generate_case
from pipeline.study_stats import wilson_interval

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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve(study: Path, port: int) -> subprocess.Popen:
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
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/state", timeout=1)
            return process
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the reader server did not start")


def _status(url: str) -> int:
    try:
        return urllib.request.urlopen(url, timeout=2).status
    except urllib.error.HTTPError as error:
        return error.code


@needs_chromium
def test_reader_page_saves_every_click_and_resumes_after_a_crash(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    study = _create(tmp_path)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    driver = headless_chromium()
    server = _serve(study, port)
    try:
        driver.get(base + "/")
        progress = lambda: driver.find_element(By.ID, "progress").text  # noqa: E731
        _wait(lambda: progress().startswith("Image 1 of 9"))
        assert (
            driver.execute_script(
                "const i = document.getElementById('photo'); return i.complete && i.naturalWidth"
            )
            == 64
        )
        driver.find_element(By.ID, "real").click()
        _wait(lambda: progress().startswith("Image 2 of 9"))
        body = driver.find_element(By.TAG_NAME, "body")
        body.send_keys("4")
        body.send_keys("s")
        _wait(lambda: progress().startswith("Image 3 of 9"))
        driver.find_element(By.ID, "synthetic").click()
        _wait(lambda: progress().startswith("Image 4 of 9"))
        lines = (study / "answers" / "alice.jsonl").read_text().splitlines()
        answers = [json.loads(line) for line in lines]
        assert [(a["image"], a["answer"], a["confidence"]) for a in answers] == [
            ("0001", "real", None),
            ("0002", "synthetic", 4),
            ("0003", "synthetic", None),
        ]

        server.send_signal(signal.SIGKILL)  # a crash mid-session
        server.wait()
        server = _serve(study, port)
        driver.get(base + "/")
        _wait(lambda: progress().startswith("Image 4 of 9"))  # resumes with all answers kept
        for path in (
            "/key.json",
            "/study.json",
            "/answers/alice.jsonl",
            "/images/../study.json",
            f"/../{key_folder(study).name}/key.json",
            "/images/0001.png/../../key",
        ):
            assert _status(base + path) == 404, path
        driver.save_screenshot(str(tmp_path / "reader.png"))
        for _ in range(6):
            body = driver.find_element(By.TAG_NAME, "body")
            body.send_keys("r")
        _wait(lambda: driver.find_element(By.ID, "done").is_displayed())
    finally:
        driver.quit()
        server.send_signal(signal.SIGKILL)
        server.wait()
    report = study_report(study)
    assert report["table"]["real"]["alice"]["n"] == 3
    assert sum(row["alice"]["n"] for row in report["table"].values()) == 9


def _wait(condition, timeout: float = 10.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except Exception:  # noqa: BLE001 - the page may be between states
            pass
        time.sleep(0.05)
    raise AssertionError("the page did not reach the expected state")


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
