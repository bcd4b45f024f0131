"""`angioflow audit`: clean outputs pass; identifiers planted in every kind of output file are
found, and the audit's own output never repeats them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from angioflow.flows.cli import app
from PIL import Image, PngImagePlugin
from support import copy_store
from typer.testing import CliRunner

runner = CliRunner()
NAME, BIRTH = "Jane Placeholder-Doe", "1961-04-23"


def _raw_with_names(template_raw: Path, destination: Path) -> tuple[Path, str]:
    """The template's raw cases, their case.json given a patient name and birth date."""
    shutil.copytree(template_raw, destination)
    first = sorted(p for p in destination.iterdir() if p.is_dir())[0]
    document = json.loads((first / "case.json").read_text())
    document |= {"patient_name": NAME, "birth_date": BIRTH}
    (first / "case.json").write_text(json.dumps(document))
    return destination, document["patient_id"]


@pytest.mark.slow
def test_audit_passes_clean_outputs_and_finds_every_planted_identifier(
    curated_store_template: Path, tmp_path: Path
) -> None:
    raw, patient_id = _raw_with_names(curated_store_template.parent / "raw", tmp_path / "raw")
    store = copy_store(curated_store_template, tmp_path / "store")
    outputs = tmp_path / "outputs"
    report = runner.invoke(
        app, ["evaluate", "report", "--store", str(store), "--out", str(outputs / "report")]
    )
    assert report.exit_code == 0, report.output
    case_id = sorted(p.stem for p in (store / "cases").glob("*.h5"))[0]
    inspected = runner.invoke(
        app, ["inspect", case_id, "--store", str(store), "--out", str(outputs / "inspect")]
    )
    assert inspected.exit_code == 0, inspected.output
    audit = ["audit", "--store", str(store), "--raw", str(raw), "--path", str(outputs), "--json"]
    clean = runner.invoke(app, audit)
    assert clean.exit_code == 0, clean.output
    assert json.loads(clean.stdout)["identifiers"] >= 2 + 1 + 1  # 2 ids, a name, a birth date

    with h5py.File(store / "cases" / f"{case_id}.h5", "a") as handle:  # a store case file
        handle["raw"].attrs["operator_note"] = f"seen {patient_id}"
    with h5py.File(outputs / "approved.h5", "w") as handle:  # an export, compressed strings
        handle.create_dataset("notes", data=[f"patient {NAME}".encode()] * 50, compression="gzip")
    with h5py.File(outputs / "synthetic.h5", "w") as handle:  # a synthetic set
        handle["images"] = np.zeros((1, 8, 8, 3), np.uint8)
        handle.attrs["provenance"] = json.dumps({"source_dob": "23.04.1961"})
    (outputs / "generate.log").write_text(f"12:00 INFO loading case of {patient_id.upper()}\n")
    page = outputs / "report" / "report.html"
    page.write_text(page.read_text().replace("</body>", f"<p>{NAME}</p></body>"))
    chunk = PngImagePlugin.PngInfo()
    chunk.add_text("Comment", "exported from the PACS")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(outputs / "thumb.png", pnginfo=chunk)
    exif = Image.Exif()
    exif[0x0132] = "2024:03:01 10:00:00"  # DateTime
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(outputs / "photo.jpg", exif=exif)

    found = runner.invoke(app, audit)
    assert found.exit_code == 1
    findings = json.loads(found.stdout)["findings"]
    by_file = {Path(f["path"]).name: f["what"] for f in findings}
    assert by_file[f"{case_id}.h5"].startswith("patient id")
    assert by_file["approved.h5"].startswith("name")
    assert by_file["synthetic.h5"].startswith("birth date")
    assert by_file["generate.log"].startswith("patient id")  # case-insensitive
    assert by_file["report.html"].startswith("name")
    assert by_file["thumb.png"] == by_file["photo.jpg"] == "image metadata"
    for secret in (patient_id, NAME, BIRTH, "23.04.1961"):
        assert secret not in found.output
    plain = runner.invoke(app, audit[:-1])
    assert plain.exit_code == 1 and "LEAK" in plain.output and patient_id not in plain.output


def test_audit_finds_ids_of_unparsable_cases_numeric_ids_and_other_letter_cases(
    tmp_path: Path,
) -> None:
    """What ingestion used to leak (issue 30, M4): a folder named after its patient whose
    case.json does not parse, a numeric id naming its folder, an id in another letter case."""
    from support import PATIENT_ID, edit_case_json, write_case

    raw, outputs, numeric = tmp_path / "raw", tmp_path / "outputs", 738291046
    unparsable = write_case(raw / f"{PATIENT_ID}_2024", seed=1)
    (unparsable / "case.json").write_text((unparsable / "case.json").read_text()[:-3])
    edit_case_json(write_case(raw / str(numeric), seed=2), patient_id=numeric)
    write_case(raw / "exam_7", seed=3, patient_id="0004711-B")
    store = tmp_path / "store"
    (store / "cases").mkdir(parents=True)
    audit = ["audit", "--store", str(store), "--raw", str(raw), "--path", str(outputs), "--json"]
    outputs.mkdir()
    (outputs / "clean.txt").write_text("case 'folder #1 (name withheld)': invalid JSON\n")
    assert runner.invoke(app, audit).exit_code == 0

    (outputs / "quarantine.json").write_text(f'{{"case": "{PATIENT_ID}_2024"}}')
    (outputs / "notes.txt").write_text(f"re-exported for {PATIENT_ID}")  # the id alone
    (outputs / "ingest.log").write_text(f"quarantined: case '{numeric}': patient_id\n")
    with h5py.File(outputs / "case.h5", "w") as handle:
        handle.attrs["camera"] = "TestCam (0004711-b)"
    found = runner.invoke(app, audit)
    assert found.exit_code == 1
    by_file = {Path(f["path"]).name: f["what"] for f in json.loads(found.stdout)["findings"]}
    assert "of raw case 'folder #" in by_file["quarantine.json"]  # its id or folder name
    assert by_file["notes.txt"].startswith("patient id of raw case 'folder #")
    assert by_file["ingest.log"].startswith("patient id of raw case 'folder #")
    assert by_file["case.h5"].startswith("patient id of raw case 'exam_7'")
    assert "clean.txt" not in by_file
    for secret in (PATIENT_ID, str(numeric), "0004711"):
        assert secret.lower() not in found.output.lower()
