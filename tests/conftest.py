"""Shared fixtures: real raw case folders on disk, and one Prefect test server per session."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Prefect binds its console log handler to whatever sys.stderr is when it first logs; under
# CliRunner that is a buffer closed afterwards. Only warnings matter in tests.
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# The test servers must not try to reach Prefect's telemetry endpoint (no network here).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# Distinctive, so a byte search for it cannot match by chance.
PATIENT_ID = "MRN-7f3a91-DOE^JANE"


def retina_like(shape: tuple[int, int], seed: int) -> np.ndarray:
    """A (H, W) float image in [0, 1] with a bright disc, a dark macula and curved vessels."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    height, width = shape
    disc_r, disc_c = height * 0.5, width * 0.3
    image = 0.45 + 0.05 * rng.standard_normal(shape).astype(np.float32)
    image += 0.4 * np.exp(
        -((rows - disc_r) ** 2 + (cols - disc_c) ** 2) / (2 * (0.06 * width) ** 2)
    )
    image -= 0.15 * np.exp(
        -((rows - disc_r) ** 2 + (cols - 0.65 * width) ** 2) / (2 * (0.1 * width) ** 2)
    )
    for angle in rng.uniform(0, 2 * np.pi, 6):
        bend = rng.uniform(-0.004, 0.004)
        distance = np.hypot(rows - disc_r, cols - disc_c)
        theta = np.arctan2(rows - disc_r, cols - disc_c) - angle - bend * distance
        on_vessel = (np.abs(np.sin(theta)) * distance < 1.5) & (np.cos(theta) > 0)
        image[on_vessel] -= 0.25
    return np.clip(image, 0, 1)


def fundus_rgb(shape: tuple[int, int], seed: int) -> np.ndarray:
    base = retina_like(shape, seed)
    rgb = np.stack([0.9 * base + 0.1, 0.55 * base, 0.25 * base], axis=-1)
    return (255 * np.clip(rgb, 0, 1)).astype(np.uint8)


def fa_grey(shape: tuple[int, int], seed: int, *, bits: int = 8) -> np.ndarray:
    inverted = 1.0 - retina_like(shape, seed)
    scale = 255 if bits == 8 else 65535
    return (scale * inverted).astype(np.uint8 if bits == 8 else np.uint16)


def write_case(
    folder: Path,
    *,
    patient_id: str = PATIENT_ID,
    eye: str = "OD",
    n_frames: int = 3,
    shape: tuple[int, int] = (96, 128),
    seed: int = 0,
    acquired: str = "2024-05-17",
    bits: int = 8,
) -> Path:
    """Write a valid raw case folder (DESIGN.md contract) with real PNG files."""
    (folder / "fa").mkdir(parents=True, exist_ok=True)
    Image.fromarray(fundus_rgb(shape, seed)).save(folder / "fundus.png")
    frames = []
    for index in range(n_frames):
        name = f"fa/{index:03d}.png"
        Image.fromarray(fa_grey(shape, seed + index, bits=bits)).save(folder / name)
        frames.append({"file": name, "time_s": 10.0 + 7.5 * index})
    document = {
        "patient_id": patient_id,
        "eye": eye,
        "fundus": "fundus.png",
        "fa_frames": frames,
        "acquired": acquired,
        "camera": "TestCam 2",
        "notes": f"seen by Dr X for {patient_id}",
    }
    (folder / "case.json").write_text(json.dumps(document, indent=1))
    return folder


def edit_case_json(folder: Path, **changes: object) -> None:
    document = json.loads((folder / "case.json").read_text())
    document.update(changes)
    (folder / "case.json").write_text(json.dumps(document))


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One temporary Prefect API for every flow test of the session (it takes ~10 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> bytes:
    """A fixed pseudonymisation key through $ANGIOFLOW_SECRET."""
    value = "test-secret-0123456789abcdef"
    monkeypatch.setenv("ANGIOFLOW_SECRET", value)
    return value.encode()


@pytest.fixture(scope="session")
def curated_store_template(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Path:
    """A store with two small phantom exams ingested and curated to review gate 1 (built once;
    tests copy it with :func:`copy_store`)."""
    from angioflow.flows.curate import curate_flow
    from angioflow.flows.ingest import ingest_flow
    from angioflow.pipeline.phantom import PhantomConfig, write_phantom_set

    root = tmp_path_factory.mktemp("curated")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ANGIOFLOW_SECRET", "test-secret-0123456789abcdef")
        write_phantom_set(
            root / "raw", n=2, seed=11, config=PhantomConfig(size=(384, 576), n_frames=4)
        )
        ingest_flow(str(root / "raw"), str(root / "store"))
        summary = curate_flow(str(root / "store"))
    assert len(summary["curated"]) == 2, summary
    return root / "store"


def copy_store(template: Path, destination: Path) -> Path:
    shutil.copytree(template, destination)
    return destination


class TrainingInterrupted(Exception):
    """Raised by :func:`interrupt_at` to stop a training loop as a crash would."""


def interrupt_at(stop: int):  # noqa: ANN201 - an on_step callback
    """An ``on_step(step, loss)`` callback that interrupts training after step ``stop`` (the
    loops checkpoint before calling it)."""

    def on_step(step: int, loss: float) -> None:
        if step == stop:
            raise TrainingInterrupted

    return on_step


needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None or shutil.which("chromedriver") is None,
    reason="Debian's chromium and chromium-driver are not installed (make system-packages)",
)


def headless_chromium(width: int = 1280, height: int = 900):  # noqa: ANN201 - a WebDriver
    """Debian's Chromium under selenium, headless, through the system chromedriver (selenium
    never downloads a driver when given one)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
