"""README figures of the evaluation report and the reading study's reader page, taken in
headless Chromium.

Usage: .venv/bin/python benchmarks/figure_reports.py --report REPORT.html --synthetic SET.h5
       [--out docs]

Writes docs/evaluation/report.png (the top of REPORT.html) and docs/study/reader.png (the reader
page of a small study of phantom photos as "real" and SET.h5 as "synthetic"; no patient data).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from pathlib import Path

from PIL import Image


def _driver(width: int, height: int):  # noqa: ANN202 - a selenium WebDriver
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from support import headless_chromium

    return headless_chromium(width, height, "--hide-scrollbars")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--synthetic", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()

    from angioflow.flows.study import create_study
    from angioflow.flows.study_reader import ReaderServer
    from angioflow.pipeline.phantom import PhantomConfig, generate_case

    (args.out / "evaluation").mkdir(parents=True, exist_ok=True)
    (args.out / "study").mkdir(parents=True, exist_ok=True)
    driver = _driver(1200, 1500)
    try:
        driver.get(args.report.resolve().as_uri())
        driver.save_screenshot(str(args.out / "evaluation" / "report.png"))
    finally:
        driver.quit()

    with tempfile.TemporaryDirectory() as scratch:
        real = Path(scratch) / "real"
        real.mkdir()
        for seed in range(4):
            photo = generate_case(seed, PhantomConfig(size=(584, 876), n_frames=2)).fundus
            Image.fromarray(photo).save(real / f"{seed}.png")
        study = Path(scratch) / "study"
        create_study(real, {"diffusion": args.synthetic}, study, per_category=4, seed=1)
        server = ReaderServer(study, "reader_1")
        threading.Thread(target=server.serve_forever, daemon=True).start()
        driver = _driver(1100, 800)
        try:
            driver.get(server.url)
            driver.implicitly_wait(2)
            driver.find_element("css selector", "button[data-c='4']").click()
            driver.save_screenshot(str(args.out / "study" / "reader.png"))
        finally:
            driver.quit()
            server.httpd.shutdown()


if __name__ == "__main__":
    main()
