"""The curation report of a batch: flagged cases first, tables that fit the page, QC plots and
capped thumbnails that render in headless Chromium, and Prefect artifacts a remote UI can use."""

from __future__ import annotations

from pathlib import Path

import pytest
from angioflow.flows.html import Page, write_page
from angioflow.flows.report_sections import CurationPictures
from angioflow.flows.reports import curation_report
from angioflow.pipeline.casestore import CaseStore
from support import copy_store, headless_chromium, needs_chromium

pytestmark = pytest.mark.slow  # the curated store and headless Chromium

# Counts what runs off the page at the window's width: the document's scroll width beyond its
# client width, and every table wider than the element holding it.
_OVERFLOW = """
const page = document.documentElement;
const tables = Array.from(document.querySelectorAll('table')).filter(
    t => t.getBoundingClientRect().width > t.parentElement.clientWidth + 0.5);
return [page.scrollWidth - page.clientWidth, tables.length];
"""

# First-column texts of the rows of the table that follows the <h2> whose text starts with
# arguments[0].
_FIRST_COLUMN = """
const heading = Array.from(document.querySelectorAll('h2'))
    .find(h => h.textContent.startsWith(arguments[0]));
if (!heading) return null;
let node = heading.nextElementSibling;
while (node && node.tagName !== 'TABLE') node = node.nextElementSibling;
return Array.from(node.tBodies[0].rows).map(r => r.cells[0].textContent);
"""


def _open(driver, page: Path, width: int) -> None:  # noqa: ANN001 - a selenium WebDriver
    driver.set_window_size(width, 900)
    driver.get(page.resolve().as_uri())


@needs_chromium
def test_a_failed_case_comes_first_and_the_report_fits_the_page(
    curated_store_template: Path, tmp_path: Path
) -> None:
    store = CaseStore(copy_store(curated_store_template, tmp_path / "store"), create=False)
    first, failed = store.case_ids()  # the failed case sorts last by id
    store.record_error(failed, "registration", "registration: worker lost (out of memory)")

    report = curation_report(store, tmp_path / "report")

    driver = headless_chromium()
    try:
        for width in (1280, 800):
            _open(driver, report, width)
            assert driver.execute_script(_OVERFLOW) == [0, 0], f"overflow at {width} px"
        assert driver.execute_script(_FIRST_COLUMN, "Flagged cases") == [failed]
        assert driver.execute_script(_FIRST_COLUMN, "Cases") == [failed, first]
        images = driver.execute_script(
            "return Array.from(document.images).map(i => "
            "[i.alt, i.complete && i.naturalWidth > 0, i.naturalWidth, i.naturalHeight, "
            "i.src.slice(0, 15)])"
        )
    finally:
        driver.quit()
    assert all(loaded for _, loaded, *_ in images), images
    plots = [i for i in images if i[0] == "every case's QC figures"]
    assert len(plots) == 1 and plots[0][2] > 800  # one figure, every QC figure a panel
    thumbnails = [i for i in images if i[0] != "every case's QC figures"]
    assert len(thumbnails) >= 2 * 3  # both cases (flagged + sample): overlay and two QC pictures
    assert all(max(w, h) <= 240 and src == "data:image/jpeg" for _, _, w, h, src in thumbnails)
    text = report.read_text()
    assert "registration: worker lost (out of memory)" in text
    assert text.index(f"{failed}: failed") < text.index(f"{first}: not flagged")


def test_registration_damage_raises_the_flags_the_report_documents(
    curated_store_template: Path, tmp_path: Path
) -> None:
    from angioflow.flows.curation_qc import case_qc

    store = CaseStore(copy_store(curated_store_template, tmp_path / "store"), create=False)
    case_id = store.case_ids()[0]
    assert case_qc(store, case_id).flags == ()  # the template's cases are sound
    registration = store.read_stage(case_id, "registration")
    frames = registration.params["frames"]
    reference = registration.params["reference"]
    for frame in frames:  # every frame but the reference fails its registration check
        if frame["index"] != reference:
            frame.update(kept=False, aggregated=False, correlation=0.21, reason="failed")
    store.write_stage(
        case_id, "registration", registration.arrays, params=registration.params, seconds=1.0
    )
    alignment = store.read_stage(case_id, "fundus_alignment")
    alignment.params["vessel_overlap_dice"] = 0.31
    store.write_stage(
        case_id, "fundus_alignment", alignment.arrays, params=alignment.params, seconds=1.0
    )

    qc = case_qc(store, case_id)

    n = len(frames)
    assert n >= 3 and qc.dropped == qc.failed_registration == n - 1
    assert qc.flags == (
        f"{n - 1} frame(s) failed registration",
        f"{n - 1} of {n} frames dropped",
        "FA-photo vessel Dice 0.31 < 0.5",
    )
    assert qc.severity == 2  # "dropped frames", after failed and rejected cases


def test_an_unreadable_case_is_flagged_failed_not_skipped(
    curated_store_template: Path, tmp_path: Path
) -> None:
    store = CaseStore(copy_store(curated_store_template, tmp_path / "store"), create=False)
    broken = store.case_ids()[1]
    path = store.path(broken)
    path.write_bytes(path.read_bytes()[:4096])  # truncated, as by a full disk

    report = curation_report(store, tmp_path / "report")

    from angioflow.flows.curation_qc import case_qc

    qc = case_qc(store, broken)
    assert qc.flags == ("unreadable",) and "corrupt or incomplete" in qc.error
    text = report.read_text()
    assert "1 flagged: 1 failed" in text
    assert f"{broken}: pictures unreadable" in text


@needs_chromium
def test_a_table_of_many_snake_case_columns_wraps_to_the_page(tmp_path: Path) -> None:
    columns = ["case", "A/V version"] + [
        f"{name}_{part}"
        for name in ("vessel_density", "artery_vein_ratio", "largest_component")
        for part in ("share", "mean_calibre_px", "tortuosity_index", "fractal_dimension")
    ]
    rows = [
        {c: f"p{i:012x}_OD_{i:06x}" if c == "case" else 12345.678 * i for c in columns}
        for i in range(5)
    ]
    page = Page("14 columns")
    page.table(rows, columns)
    path = write_page(page, tmp_path / "wide.html")
    driver = headless_chromium()
    try:
        for width in (1280, 900, 700):
            _open(driver, path, width)
            assert driver.execute_script(_OVERFLOW) == [0, 0], f"overflow at {width} px"
    finally:
        driver.quit()


def test_artifacts_hold_numbers_and_the_report_path_never_a_file_link(
    curated_store_template: Path, tmp_path: Path
) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.runtime import flow_run

    store = CaseStore(copy_store(curated_store_template, tmp_path / "store"), create=False)
    failed = store.case_ids()[0]
    store.record_error(failed, "fundus_alignment", "fundus_alignment: no overlap found")

    @flow
    def report_flow() -> str:
        curation_report(store, tmp_path / "report")
        return flow_run.id

    run_id = report_flow()
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    by_key = {a.key: a for a in artifacts}
    assert set(by_key) == {"curation-metrics", "curation-report"}
    assert all(a.type in ("table", "markdown") for a in artifacts)
    assert not any("file://" in str(a.data) for a in artifacts)
    note = str(by_key["curation-report"].data)
    assert str((tmp_path / "report" / "report.html").resolve()) in note
    assert "2 cases, 1 flagged" in note and f"{failed}: failed" in note
    assert failed in str(by_key["curation-metrics"].data)


@pytest.mark.parametrize("cap", [0, 1])
def test_thumbnails_are_shown_for_at_most_the_capped_cases(
    curated_store_template: Path, tmp_path: Path, cap: int
) -> None:
    store = CaseStore(copy_store(curated_store_template, tmp_path / "store"), create=False)
    for case_id in store.case_ids():
        store.record_error(case_id, "registration", "registration: worker lost")

    pictures = CurationPictures(max_flagged=cap, sample=5)
    report = curation_report(store, tmp_path / "report", pictures)

    text = report.read_text()
    assert f"Flagged cases ({cap} of 2 shown) and a sample of 0 of the 0 others" in text
    assert text.count("vessel mask on the photo</figcaption>") == cap
