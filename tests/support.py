"""Helpers the tests share: real raw case folders, a patient id to search for, the shared data
folder, training interruptions, headless Chromium, and waiting on a condition with a deadline.

Fixtures live in ``conftest.py``; everything here is a plain function or constant, imported as
``from support import ...`` (pytest puts ``tests/`` on ``sys.path``; the benchmarks add it).
"""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
from angioflow.flows.catalog import load_catalog, public_data_folder
from PIL import Image

__all__ = [
    "PATIENT_ID",
    "SHARED_DATA",
    "TEST_SECRET",
    "TrainingInterrupted",
    "copy_store",
    "edit_case_json",
    "fa_grey",
    "free_port",
    "fundus_rgb",
    "headless_chromium",
    "interrupt_at",
    "needs_chromium",
    "one_line_error",
    "retina_like",
    "wait_until",
    "write_case",
]

T = TypeVar("T")

# The public datasets folder the project's catalog names (DRIVE/, RITE/, LES-AV/, HRF-AV/).
SHARED_DATA = public_data_folder(
    load_catalog(Path(__file__).resolve().parents[1] / "data_catalog.yaml")
)
# Distinctive, so a byte search for it cannot match by chance.
PATIENT_ID = "MRN-7f3a91-DOE^JANE"
# The pseudonymisation key of the tests' stores ($ANGIOFLOW_SECRET), the curated template's too.
TEST_SECRET = "test-secret-0123456789abcdef"


# ---- waiting ----------------------------------------------------------------------------------


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    *,
    interval: float = 0.05,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Fails with ``AssertionError("<what> not within <timeout> s")`` at the deadline. Exceptions of
    the ``ignore`` types count as "not yet" (a page between states, a file being replaced).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except ignore:
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not within {timeout:g} s")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---- raw case folders -------------------------------------------------------------------------


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
    """A (H, W, 3) uint8 colour fundus photo of :func:`retina_like`."""
    base = retina_like(shape, seed)
    rgb = np.stack([0.9 * base + 0.1, 0.55 * base, 0.25 * base], axis=-1)
    return (255 * np.clip(rgb, 0, 1)).astype(np.uint8)


def fa_grey(shape: tuple[int, int], seed: int, *, bits: int = 8) -> np.ndarray:
    """A (H, W) FA frame (vessels bright) of 8 or 16 bits."""
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
    """Overwrite top-level fields of a raw case folder's ``case.json``."""
    document = json.loads((folder / "case.json").read_text())
    document.update(changes)
    (folder / "case.json").write_text(json.dumps(document))


def copy_store(template: Path, destination: Path) -> Path:
    """A private copy of a store folder (the session's templates are shared)."""
    shutil.copytree(template, destination)
    return destination


# ---- training ---------------------------------------------------------------------------------


class TrainingInterrupted(Exception):
    """Raised by :func:`interrupt_at` to stop a training loop as a crash would."""


def interrupt_at(stop: int) -> Callable[[int, float], None]:
    """An ``on_step(step, loss)`` callback that interrupts training after step ``stop`` (the
    loops checkpoint before calling it)."""

    def on_step(step: int, loss: float) -> None:
        if step == stop:
            raise TrainingInterrupted

    return on_step


# ---- headless Chromium ------------------------------------------------------------------------

needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None or shutil.which("chromedriver") is None,
    reason="Debian's chromium and chromium-driver are not installed (make system-packages)",
)


def one_line_error(result) -> str:  # noqa: ANN001 - a click Result
    """The one stderr line of a command that failed with a user error (exit code 2)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def headless_chromium(  # noqa: ANN201 - a WebDriver
    width: int = 1280, height: int = 900, *arguments: str
):
    """Debian's Chromium under selenium, headless, through the system chromedriver (selenium
    never downloads a driver when given one); ``arguments`` are further Chromium switches."""
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
        *arguments,
    ):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def short_run(recipe: type[T], model: object, values: dict[str, object]) -> T:
    """A training recipe of the tests' short runs: ``model`` trained 6 steps at learning rate
    2e-3 on one thread and no public dataset, checkpointed at step 3 (where ``interrupt_at(3)``
    stops the run that is then resumed) and drawing sample grids only at its end, with
    ``values`` over those."""
    settings = dict(model=model, datasets=(), steps=6, checkpoint_every=3, learning_rate=2e-3)
    if "sample_every" in recipe.model_fields:  # type: ignore[attr-defined] - a pydantic recipe
        settings["sample_every"] = 1000
    # one thread: two OpenMP threads per test on cores the other test worker keeps busy spin
    # against each other (a tiny model's run took 119 s instead of 1 s)
    settings["threads"] = 1
    return recipe(**{**settings, **values})


def tiny_mask_ddpm(size: int, **changes: object):  # noqa: ANN201 - a MaskDDPMConfig
    """A mask-DDPM config small enough for tests at ``size`` px: two levels of ``size / 2`` and
    ``size`` channels, one block each, attention at the second level; ``changes`` over those."""
    from angioflow.models.ddpm import MaskDDPMConfig  # torch and diffusers: only where used

    tiny = {
        "image_size": size,
        "block_out_channels": (size // 2, size),
        "layers_per_block": 1,
        "attention_resolutions": (size // 2,),
        "attention_head_dim": 8,
        "norm_num_groups": size // 4,
    }
    return MaskDDPMConfig(**{**tiny, **changes})


