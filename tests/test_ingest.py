"""Ingestion: every malformed raw case is quarantined with its reason; good cases are stored."""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from angioflow.flows.ingest import ingest_flow
from angioflow.pipeline.casestore import CaseStore
from angioflow.pipeline.ingest import ingest_case, read_quarantine
from angioflow.pipeline.io import ImageLimits
from angioflow.pipeline.raw_case import CaseLimits
from PIL import Image
from support import PATIENT_ID, edit_case_json, fa_grey, fundus_rgb, write_case


def _png_with_header_size(path: Path, width: int, height: int) -> None:
    """A small real PNG whose IHDR claims width x height (a decompression bomb's header)."""
    Image.fromarray(fa_grey((80, 80), 0)).save(path)
    data = bytearray(path.read_bytes())
    ihdr_start = 8 + 8  # signature, then chunk length + type
    data[ihdr_start : ihdr_start + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12 : ihdr_start + 13]))
    data[ihdr_start + 13 : ihdr_start + 17] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))


def _set_frames(folder: Path, frames: list[dict]) -> None:
    edit_case_json(folder, fa_frames=frames)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# Each malformed case: how to break a valid case folder, and what the reason must say.
MALFORMED: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "no_case_json": (lambda c: (c / "case.json").unlink(), "case.json", "missing"),
    "invalid_json": (
        lambda c: (c / "case.json").write_text("{'patient_id': 1,"),
        "case.json",
        "invalid JSON",
    ),
    "json_not_object": (
        lambda c: (c / "case.json").write_text("[1, 2]"),
        "case.json",
        "JSON object",
    ),
    "not_utf8": (
        lambda c: (c / "case.json").write_bytes(b'{"eye": "\xff\xfe"}'),
        "case.json",
        "UTF-8",
    ),
    "missing_key": (
        lambda c: _drop_key(c, "fa_frames"),
        "case.json",
        "missing required key(s) fa_frames",
    ),
    "bad_eye": (lambda c: edit_case_json(c, eye="left"), "case.json", "eye must be 'OD' or 'OS'"),
    "empty_patient": (
        lambda c: edit_case_json(c, patient_id="  "),
        "case.json",
        "patient_id must be a non-empty string",
    ),
    "bad_date": (lambda c: edit_case_json(c, acquired="17/05/2024"), "case.json", "ISO date"),
    "no_frames": (lambda c: _set_frames(c, []), "case.json", "non-empty list"),
    "time_backwards": (
        lambda c: _set_frames(
            c, [{"file": "fa/000.png", "time_s": 20}, {"file": "fa/001.png", "time_s": 12}]
        ),
        "case.json",
        "not strictly increasing",
    ),
    "time_not_number": (
        lambda c: _set_frames(c, [{"file": "fa/000.png", "time_s": "10s"}]),
        "case.json",
        "finite number",
    ),
    "time_nan": (
        lambda c: (c / "case.json").write_text(
            (c / "case.json").read_text().replace('"time_s": 10.0', '"time_s": NaN')
        ),
        "case.json",
        "finite number",
    ),
    "duplicate_frame": (
        lambda c: _set_frames(
            c, [{"file": "fa/000.png", "time_s": 1}, {"file": "fa/000.png", "time_s": 2}]
        ),
        "case.json",
        "listed twice",
    ),
    "path_traversal": (
        lambda c: _set_frames(c, [{"file": "../other/000.png", "time_s": 1}]),
        "case.json",
        "leaves the case folder",
    ),
    "absolute_path": (
        lambda c: edit_case_json(c, fundus="/etc/fundus.png"),
        "case.json",
        "leaves the case folder",
    ),
    "wrong_extension": (
        lambda c: edit_case_json(c, fundus="fundus.bmp"),
        "case.json",
        "not a .png, .jpg or .tif",
    ),
    "missing_fundus": (lambda c: (c / "fundus.png").unlink(), "fundus.png", "missing"),
    "symlink_out": (
        lambda c: _link_frame_outside(c),
        "fa/001.png",
        "link that leaves the case folder",
    ),
    "case_json_link_out": (
        lambda c: _link_case_json_outside(c),
        "case.json",
        "link that leaves the case folder",
    ),
    "empty_file": (lambda c: (c / "fa" / "001.png").write_bytes(b""), "fa/001.png", "empty file"),
    "text_as_png": (
        lambda c: (c / "fa" / "002.png").write_text("not an image"),
        "fa/002.png",
        "not a readable PNG",
    ),
    "truncated_png": (
        lambda c: _truncate(c / "fa" / "001.png"),
        "fa/001.png",
        "truncated or corrupt",
    ),
    "truncated_jpeg": (lambda c: _truncated_jpeg_fundus(c), "fundus.jpg", "truncated or corrupt"),
    "decompression_bomb": (
        lambda c: _png_with_header_size(c / "fa" / "000.png", 60000, 60000),
        "fa/000.png",
        "decompression bomb",
    ),
    "above_pixel_limit": (
        lambda c: _png_with_header_size(c / "fa" / "000.png", 9000, 7000),
        "fa/000.png",
        "exceeds the limit",
    ),
    "too_small": (
        lambda c: Image.fromarray(fa_grey((32, 40), 0)).save(c / "fa" / "000.png"),
        "fa/000.png",
        "smaller than 64 px",
    ),
    "absurd_aspect": (
        lambda c: Image.fromarray(fa_grey((64, 900), 0)).save(c / "fa" / "000.png"),
        "fa/000.png",
        "aspect ratio",
    ),
    "sizes_differ": (
        lambda c: Image.fromarray(fa_grey((100, 128), 0)).save(c / "fa" / "002.png"),
        "fa/002.png",
        "differs from the first frame",
    ),
    "grey_fundus": (
        lambda c: Image.fromarray(fa_grey((96, 128), 0)).save(c / "fundus.png"),
        "fundus.png",
        "not a colour fundus photo",
    ),
    "colour_fa_frame": (
        lambda c: Image.fromarray(fundus_rgb((96, 128), 0)).save(c / "fa" / "001.png"),
        "fa/001.png",
        "not an FA frame",
    ),
    "transparent_rgba": (lambda c: _transparent_fundus(c), "fundus.png", "transparent pixels"),
    "multipage_tiff": (lambda c: _multipage_frame(c), "fa/001.tif", "pages"),
    "blank_frame": (
        lambda c: Image.fromarray(np.full((96, 128), 7, np.uint8)).save(c / "fa" / "002.png"),
        "fa/002.png",
        "blank image",
    ),
    "one_bit": (
        lambda c: Image.fromarray(fa_grey((96, 128), 0) > 128).save(c / "fa" / "000.png"),
        "fa/000.png",
        "1-bit",
    ),
}


def _drop_key(folder: Path, key: str) -> None:
    document = json.loads((folder / "case.json").read_text())
    del document[key]
    (folder / "case.json").write_text(json.dumps(document))


def _link_frame_outside(folder: Path) -> None:
    outside = folder.parent.parent / "outside.png"
    Image.fromarray(fa_grey((96, 128), 9)).save(outside)
    (folder / "fa" / "001.png").unlink()
    (folder / "fa" / "001.png").symlink_to(outside)


def _link_case_json_outside(folder: Path) -> None:
    outside = folder.parent.parent / "case_outside.json"
    outside.write_text((folder / "case.json").read_text())
    (folder / "case.json").unlink()
    (folder / "case.json").symlink_to(outside)


def _truncated_jpeg_fundus(folder: Path) -> None:
    Image.fromarray(fundus_rgb((96, 128), 0)).save(folder / "fundus.jpg", quality=90)
    _truncate(folder / "fundus.jpg")
    edit_case_json(folder, fundus="fundus.jpg")


def _transparent_fundus(folder: Path) -> None:
    rgba = np.dstack([fundus_rgb((96, 128), 0), np.full((96, 128), 255, np.uint8)])
    rgba[:10, :10, 3] = 0
    Image.fromarray(rgba).save(folder / "fundus.png")


def _multipage_frame(folder: Path) -> None:
    pages = [Image.fromarray(fa_grey((96, 128), s)) for s in (1, 2)]
    pages[0].save(folder / "fa" / "001.tif", save_all=True, append_images=pages[1:])
    document = json.loads((folder / "case.json").read_text())
    document["fa_frames"][1]["file"] = "fa/001.tif"
    (folder / "case.json").write_text(json.dumps(document))


# Cases whose case.json gives no patient id: their folder name could hold it, so it is withheld.
WITHHELD = {
    "no_case_json",
    "invalid_json",
    "json_not_object",
    "not_utf8",
    "empty_patient",
    "case_json_link_out",
}


def _label(source: Path, name: str) -> str:
    """How a case folder is shown: its name, or its position when its patient id is unknown."""
    if name not in WITHHELD:
        return name
    position = sorted(p.name for p in source.iterdir() if p.is_dir()).index(name) + 1
    return f"folder #{position} (name withheld)"


def _limits() -> CaseLimits:
    return CaseLimits(image=ImageLimits(max_pixels=50_000_000))


def test_case_limits_read_the_settings_files_names() -> None:
    """The catalog's raw_exams.load_args: image limits beside the case limits, sizes in MiB."""
    limits = CaseLimits.model_validate(
        {
            "max_pixels": 5_000,
            "max_aspect": 2.0,
            "max_frames": 4,
            "max_case_mb": 2,
            "max_worker_mb": 3,
        }
    )
    assert limits == CaseLimits(
        image=ImageLimits(max_pixels=5_000, max_aspect=2.0),
        max_frames=4,
        max_case_bytes=2 << 20,
        max_worker_bytes=3 << 20,
    )
    assert CaseLimits.model_validate(limits.model_dump()) == limits
    with pytest.raises(ValueError, match=r"max_pixel\n  Extra inputs are not permitted"):
        CaseLimits.model_validate({"max_pixel": 5_000})
    with pytest.raises(ValueError, match=r"image.min_side_px\n  Input should be greater than"):
        CaseLimits.model_validate({"min_side_px": 0})
    with pytest.raises(ValueError, match="max_case_mb must be a whole number of MiB >= 1, got 0"):
        CaseLimits.model_validate({"max_case_mb": 0})


def _malformed_case(source: Path, name: str) -> Path:
    folder = write_case(source / name, patient_id=f"{PATIENT_ID}-{name}", seed=3)
    MALFORMED[name][0](folder)
    return folder


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_case_is_quarantined_with_case_file_and_reason(
    tmp_path: Path, secret: bytes, name: str
) -> None:
    source, store = tmp_path / "src", CaseStore(tmp_path / "store")
    folder = _malformed_case(source, name)
    outcome = ingest_case(folder, store, source_root=source, key=secret, limits=_limits())
    _, file, expected = MALFORMED[name]
    assert outcome.status == "quarantined"
    assert outcome.file == file
    assert outcome.reason.startswith(f"case '{_label(source, name)}': {file}: ")
    assert expected in outcome.reason
    assert "\n" not in outcome.reason
    assert PATIENT_ID not in outcome.reason
    assert store.case_ids() == []
    assert [q.reason for q in read_quarantine(store.root)] == [outcome.reason]


def test_case_folder_linked_from_outside_source_is_refused(tmp_path: Path, secret: bytes) -> None:
    source, store = tmp_path / "src", CaseStore(tmp_path / "store")
    real = write_case(tmp_path / "elsewhere" / "case", seed=1)
    source.mkdir()
    (source / "linked").symlink_to(real, target_is_directory=True)
    outcome = ingest_case(source / "linked", store, source_root=source, key=secret)
    assert outcome.status == "quarantined"
    assert "leaves the source folder" in outcome.reason


def test_normalised_oddities_are_stored(tmp_path: Path, secret: bytes) -> None:
    """16-bit frames keep their depth, opaque RGBA and palette fundus photos become RGB."""
    source, store = tmp_path / "src", CaseStore(tmp_path / "store")
    folder = write_case(source / "odd", bits=16, seed=4)
    opaque = np.dstack([fundus_rgb((96, 128), 4), np.full((96, 128), 255, np.uint8)])
    Image.fromarray(opaque).save(folder / "fundus.png")
    Image.fromarray(np.dstack([fa_grey((96, 128), 5)] * 3)).save(folder / "fa" / "001.png")
    outcome = ingest_case(folder, store, source_root=source, key=secret)
    assert outcome.status == "ingested", outcome.reason
    raw = store.read_raw(outcome.case_id)
    assert raw.fundus.shape == (96, 128, 3) and raw.fundus.dtype == np.uint8
    assert raw.fa_frames[0].dtype == np.uint16
    assert raw.fa_frames[1].dtype == np.uint8 and raw.fa_frames[1].ndim == 2
    np.testing.assert_array_equal(raw.fundus, opaque[..., :3])
    assert raw.fa_times_s == (10.0, 17.5, 25.0)


def _digests(folder: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(folder)): (
            hashlib.sha256(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_batch_quarantines_bad_cases_stores_good_ones_and_touches_nothing_stored(
    tmp_path: Path, secret: bytes, prefect_server: None
) -> None:
    source, store_root = tmp_path / "src", tmp_path / "store"
    for index in range(3):
        write_case(source / f"good_{index}", patient_id=f"{PATIENT_ID}-{index}", seed=index)
    first = ingest_flow(str(source), str(store_root))
    assert [i["case"] for i in first["ingested"]] == ["good_0", "good_1", "good_2"]
    assert first["quarantined"] == []
    stored_before = _digests(store_root / "cases")

    for name in MALFORMED:
        _malformed_case(source, name)
    write_case(source / "good_3", patient_id=f"{PATIENT_ID}-3", seed=7)
    second = ingest_flow(str(source), str(store_root), {"max_pixels": 50_000_000})

    assert [i["case"] for i in second["skipped"]] == ["good_0", "good_1", "good_2"]
    assert [i["case"] for i in second["ingested"]] == ["good_3"]
    quarantined = {q["case"]: q for q in second["quarantined"]}
    assert set(quarantined) == {_label(source, name) for name in MALFORMED}
    for name, (_, file, expected) in MALFORMED.items():
        item = quarantined[_label(source, name)]
        assert item["file"] == file and expected in item["reason"]
    after = _digests(store_root / "cases")
    assert {k: after[k] for k in stored_before} == stored_before
    assert len(CaseStore(store_root).case_ids()) == 4
    assert len(read_quarantine(store_root)) == len(MALFORMED)


def test_changed_case_is_refused_unless_replace_and_old_file_is_kept(
    tmp_path: Path, secret: bytes
) -> None:
    source, store = tmp_path / "src", CaseStore(tmp_path / "store")
    folder = write_case(source / "c", seed=1)
    first = ingest_case(folder, store, source_root=source, key=secret)
    assert first.status == "ingested"
    assert ingest_case(folder, store, source_root=source, key=secret).status == "skipped"

    Image.fromarray(fa_grey((96, 128), 42)).save(folder / "fa" / "001.png")
    before = store.path(first.case_id).read_bytes()
    refused = ingest_case(folder, store, source_root=source, key=secret)
    assert refused.status == "quarantined" and "--replace" in refused.reason
    assert store.path(first.case_id).read_bytes() == before

    replaced = ingest_case(folder, store, source_root=source, key=secret, replace=True)
    assert replaced.status == "replaced" and replaced.case_id == first.case_id
    kept = list((store.root / "replaced").glob(f"{first.case_id}.*.h5"))
    assert len(kept) == 1 and kept[0].read_bytes() == before
    np.testing.assert_array_equal(
        store.read_raw(first.case_id).fa_frames[1], fa_grey((96, 128), 42)
    )
    assert read_quarantine(store.root) == []


def test_only_whitelisted_metadata_is_stored(tmp_path: Path, secret: bytes) -> None:
    source, store = tmp_path / "src", CaseStore(tmp_path / "store")
    outcome = ingest_case(write_case(source / "c"), store, source_root=source, key=secret)
    import h5py

    with h5py.File(store.path(outcome.case_id)) as handle:
        attrs = dict(handle.attrs)
    assert (
        attrs["eye"] == "OD" and attrs["camera"] == "TestCam 2" and attrs["acquired_year"] == 2024
    )
    assert "notes" not in attrs and "acquired" not in attrs and "patient_id" not in attrs
    assert PATIENT_ID.encode() not in store.path(outcome.case_id).read_bytes()
    assert b"2024-05-17" not in store.path(outcome.case_id).read_bytes()
