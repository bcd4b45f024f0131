"""Case-store integrity and review imports (issue 30): flipped bytes anywhere in a case file,
stale and implausible imported masks, refused commands that change nothing, a new vessel
approval sending a case back to A/V labelling, exports that never silently lack cases, and a
read-only store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from angioflow.flows.cli import app
from angioflow.pipeline.casestore import CaseStore, MaskKind, Stage
from angioflow.pipeline.qc import av_to_rgb
from angioflow.pipeline.review import review_queue
from PIL import Image
from typer.testing import CliRunner

pytestmark = pytest.mark.slow  # every test starts from the curated store (a Prefect server)

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _cli(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def _one_line_error(code: int, stderr: str, *phrases: str) -> None:
    assert code == 2, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    for phrase in phrases:
        assert phrase in stderr, stderr


def _approve(store: CaseStore, case_id: str, kind: str, *extra: str | Path) -> tuple:
    return _cli(
        "approve", case_id, "--store", store.root, "--stage", kind, "--editor", "dr_a", *extra
    )


def _save_png(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels).save(path)
    return path


def _av_labels(vessel: np.ndarray) -> np.ndarray:
    av = np.where(vessel > 0, 1, 0).astype(np.uint8)
    av[: av.shape[0] // 2] *= 2  # upper half veins, lower half arteries
    return av


# ---- M1: a refused command changes nothing -------------------------------------------------


def test_refused_av_import_before_gate_1_changes_nothing(store: CaseStore, tmp_path: Path) -> None:
    first = store.case_ids()[0]
    before = store.path(first).read_bytes()
    av = _save_png(tmp_path / "av.png", av_to_rgb(_av_labels(store.read_version(first, "vessel"))))
    code, _, stderr = _approve(store, first, "av", "--mask", av)
    _one_line_error(code, stderr, "approve the vessel mask before")
    assert store.path(first).read_bytes() == before  # no A/V version 1 saved
    assert store.summary(first).stage is Stage.VESSEL_REVIEW
    assert [e.gate for e in review_queue(store) if e.case_id == first] == [MaskKind.VESSEL]


# ---- H3: an imported mask declares the version it was made from ------------------------------


def test_stale_import_is_refused_and_history_records_the_true_parent(
    store: CaseStore, tmp_path: Path
) -> None:
    first = store.case_ids()[0]
    code, _, stderr = _cli("inspect", first, "--store", store.root, "--out", tmp_path / "mine")
    assert code == 0, stderr
    exported = tmp_path / "mine" / "vessel.png"
    with Image.open(exported) as image:  # edited in a tool that keeps PNG text chunks
        mine, info = np.asarray(image).copy(), dict(image.info)
    mine[20:24, 30:90] = 255
    stamp = Image.fromarray(mine)
    from PIL import PngImagePlugin

    chunks = PngImagePlugin.PngInfo()
    for key, value in info.items():
        chunks.add_text(key, str(value))
    stamp.save(tmp_path / "mine_stamped.png", pnginfo=chunks)
    unstamped = _save_png(tmp_path / "mine_plain.png", mine)

    theirs = store.read_version(first, "vessel")  # a colleague saves version 2 meanwhile
    theirs[200:204, 300:360] = 1
    store.save_version(first, "vessel", theirs, editor="dr_b", parent=1)
    before = store.path(first).read_bytes()

    code, _, stderr = _approve(store, first, "vessel", "--mask", tmp_path / "mine_stamped.png")
    _one_line_error(code, stderr, "edited from vessel version 1", "version 2 (by dr_b)")
    code, _, stderr = _approve(store, first, "vessel", "--mask", unstamped, "--parent", "1")
    _one_line_error(code, stderr, "edited from vessel version 1")
    code, _, stderr = _approve(store, first, "vessel", "--mask", unstamped)
    _one_line_error(code, stderr, "--parent N")
    code, _, stderr = _approve(
        store, first, "vessel", "--mask", tmp_path / "mine_stamped.png", "--parent", "2"
    )
    _one_line_error(code, stderr, "exported from version 1")
    second = store.case_ids()[1]
    code, _, stderr = _approve(store, second, "vessel", "--mask", tmp_path / "mine_stamped.png")
    _one_line_error(code, stderr, f"mask of case {first}")
    assert store.path(first).read_bytes() == before

    merged = np.maximum(mine > 0, theirs).astype(np.uint8) * 255  # redone on version 2
    merged_file = _save_png(tmp_path / "merged.png", merged)
    code, stdout, stderr = _approve(store, first, "vessel", "--mask", merged_file, "--parent", "2")
    assert code == 0, stderr
    assert "version 3 (parent 2)" in stdout and "vessel_approved" in stdout
    history = json.loads(_cli("history", first, "--store", store.root, "--json")[1])
    assert [(v["version"], v["parent"], v["editor"]) for v in history["versions"]] == [
        (1, 0, "angioflow"),
        (2, 1, "dr_b"),
        (3, 2, "dr_a"),
    ]
    assert [(a["version"], a["editor"]) for a in history["approvals"]] == [(3, "dr_a")]
    assert store.read_version(first, "vessel")[200:204, 300:360].all()  # dr_b's edit kept


# ---- H4: implausible imports; a new vessel approval re-opens A/V labelling --------------------


def test_implausible_masks_are_refused_unless_forced_with_a_reason(
    store: CaseStore, tmp_path: Path
) -> None:
    first, second = store.case_ids()
    shape = store.summary(first).fundus_shape
    baseline = store.read_version(first, "vessel")
    before = store.path(first).read_bytes()
    empty = _save_png(tmp_path / "empty.png", np.zeros(shape, np.uint8))
    full = _save_png(tmp_path / "full.png", np.full(shape, 255, np.uint8))
    thick = np.zeros(shape, np.uint8)
    thick[: shape[0] // 3] = 255  # a third of the photo: far above the baseline's density
    thick = _save_png(tmp_path / "thick.png", thick)
    for path, reason in (
        (empty, "holds no vessel pixel"),
        (full, "marks 100% of the image as vessel"),
        (thick, "of the case's baseline"),
    ):
        code, _, stderr = _approve(store, first, "vessel", "--mask", path, "--parent", "1")
        _one_line_error(code, stderr, reason, "--force-reason")
    assert store.path(first).read_bytes() == before

    code, stdout, stderr = _approve(
        store, second, "vessel", "--mask", empty, "--parent", "1",
        "--force-reason", "no perfusion: vessels truly absent",
    )  # fmt: skip
    assert code == 0, stderr
    assert "forced past: holds no vessel pixel" in stdout
    (forced,) = [v for v in store.versions(second, "vessel") if v.version == 2]
    assert "no perfusion: vessels truly absent" in forced.note
    assert "holds no vessel pixel" in forced.note

    store.approve(first, "vessel", version=1, editor="dr_a")
    store.save_version(first, "av", _av_labels(baseline), editor="angioflow", parent=0)
    av_before = store.path(first).read_bytes()
    blank_av = _save_png(tmp_path / "blank_av.png", np.zeros(shape, np.uint8))
    code, _, stderr = _approve(store, first, "av", "--mask", blank_av, "--parent", "1")
    _one_line_error(code, stderr, "labels no pixel")
    arteries = _av_labels(baseline)
    arteries[arteries == 2] = 1
    only_arteries = _save_png(tmp_path / "only_arteries.png", av_to_rgb(arteries))
    code, _, stderr = _approve(store, first, "av", "--mask", only_arteries, "--parent", "1")
    _one_line_error(code, stderr, "holds no vein label")
    assert store.path(first).read_bytes() == av_before


def test_new_vessel_approval_sends_a_done_case_back_to_av_labelling(
    store: CaseStore, tmp_path: Path, prefect_server: None
) -> None:
    from angioflow.flows.curate import curate_flow

    first = store.case_ids()[0]
    baseline = store.read_version(first, "vessel")
    store.approve(first, "vessel", version=1, editor="dr_a")
    store.save_version(first, "av", _av_labels(baseline), editor="angioflow", parent=0)
    reviewed = _av_labels(baseline)
    rows, cols = np.nonzero(baseline)
    reviewed[rows[:50], cols[:50]] = 3  # dr_b marks 50 vessel pixels as crossings
    av_file = _save_png(tmp_path / "av_reviewed.png", av_to_rgb(reviewed))
    code, _, stderr = _approve(store, first, "av", "--mask", av_file, "--parent", "1")
    assert code == 0, stderr
    assert store.summary(first).stage is Stage.DONE

    widened = baseline.astype(np.uint8) * 255
    widened[100:104, 100:300] = 255  # a vessel segment the baseline missed
    vessel_file = _save_png(tmp_path / "vessel_v2.png", widened)
    code, stdout, stderr = _approve(store, first, "vessel", "--mask", vessel_file, "--parent", "1")
    assert code == 0, stderr
    assert "stage now vessel_approved" in stdout and "redone by the next" in stdout
    summary = store.summary(first)
    assert summary.stage is Stage.VESSEL_APPROVED and summary.approved_versions["av"] == 0
    code, _, stderr = _cli("export", "--store", store.root, "--out", tmp_path / "x.h5")
    _one_line_error(code, stderr, "nothing exported")  # never old A/V labels on a new mask
    assert not (tmp_path / "x.h5").exists()
    stale = _save_png(tmp_path / "stale_av.png", av_to_rgb(reviewed))
    code, _, stderr = _approve(store, first, "av", "--mask", stale, "--parent", "2")
    _one_line_error(code, stderr, "vessel version 2 was approved after A/V version 2")

    result = curate_flow(str(store.root))
    assert [c["case_id"] for c in result["av_labelled"]] == [first]
    summary = store.summary(first)
    assert summary.stage is Stage.AV_REVIEW
    new_av = store.versions(first, "av")[-1]
    assert (new_av.version, new_av.parent, new_av.editor) == (3, 2, "angioflow")
    labels = store.read_version(first, "av")
    vessel = store.read_version(first, "vessel") > 0
    assert np.array_equal(labels > 0, vessel)  # every pixel of the new vessel mask labelled
    assert (labels[rows[:50], cols[:50]] == 3).all()  # dr_b's labels carried over

    store.approve(first, "av", version=3, editor="dr_b")
    assert store.summary(first).stage is Stage.DONE
    code, _, stderr = _cli("export", "--store", store.root, "--out", tmp_path / "done.h5")
    assert code == 0, stderr
    with h5py.File(tmp_path / "done.h5") as handle:
        (group,) = handle.values()
        assert (group.attrs["vessel_version"], group.attrs["av_version"]) == (2, 3)
        assert np.array_equal(group["av"][()] > 0, group["vessel"][()] > 0)


def test_imports_read_the_new_formats_and_refuse_bombs_in_one_line(
    store: CaseStore, tmp_path: Path
) -> None:
    first = store.case_ids()[0]
    shape = store.summary(first).fundus_shape
    mask = store.read_version(first, "vessel").astype(np.uint8) * 255
    mask[20:24, 30:90] = 255
    Image.fromarray(mask).convert("1").save(tmp_path / "edited.pbm")
    bomb = tmp_path / "bomb.png"  # a header claiming 100000 x 100000 pixels
    import struct
    import zlib

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    bomb.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + b"IHDR"
        + header
        + struct.pack(">I", zlib.crc32(b"IHDR" + header))
    )
    code, _, stderr = _approve(store, first, "vessel", "--mask", bomb, "--parent", "1")
    _one_line_error(code, stderr, "bomb.png")
    Image.fromarray(mask).save(tmp_path / "edited.jpg")
    code, _, stderr = _approve(store, first, "vessel", "--mask", tmp_path / "edited.jpg")
    _one_line_error(code, stderr, "edited.jpg: is JPEG")
    code, stdout, stderr = _approve(
        store, first, "vessel", "--mask", tmp_path / "edited.pbm", "--parent", "1"
    )
    assert code == 0, stderr
    assert np.array_equal(store.read_version(first, "vessel", 2), mask > 0)
    assert store.read_version(first, "vessel", 2).shape == shape


# ---- M6: damage anywhere in a case file --------------------------------------------------------


def _byte_ranges(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Offsets of the file's array bytes (compressed chunks) and of its other non-zero bytes
    (object headers, heaps, B-trees, attributes, the event log)."""
    data = np.frombuffer(path.read_bytes(), np.uint8)
    in_arrays = np.zeros(data.size, bool)

    def visit(_: str, obj: h5py.Group | h5py.Dataset) -> None:
        if not isinstance(obj, h5py.Dataset) or obj.id.get_offset() is None and obj.chunks is None:
            return
        if obj.chunks is None:
            start = obj.id.get_offset()
            in_arrays[start : start + obj.id.get_storage_size()] = True
            return
        for index in range(obj.id.get_num_chunks()):
            chunk = obj.id.get_chunk_info(index)
            in_arrays[chunk.byte_offset : chunk.byte_offset + chunk.size] = True

    with h5py.File(path, "r") as handle:
        handle.visititems(visit)
    return np.flatnonzero(in_arrays), np.flatnonzero(~in_arrays & (data != 0))


def _outputs(root: Path, case_id: str, out: Path) -> dict[str, object]:
    """What status --verify, inspect, history and approve say of a case (CLI, exit codes)."""
    results: dict[str, object] = {}
    code, stdout, stderr = _cli("status", "--store", root, "--verify", "--json")
    results["status"] = (code, stderr)
    results["damaged"] = bool(json.loads(stdout)["unreadable"]) if stdout.strip() else None
    code, _, stderr = _cli("inspect", case_id, "--store", root, "--out", out)
    written = {
        p.name: p.read_bytes() for p in sorted(out.glob("*")) if p.suffix in (".png", ".json")
    }
    results["inspect"] = (code, stderr, written if code == 0 else None)
    code, stdout, stderr = _cli("history", case_id, "--store", root, "--json")
    results["history"] = (code, stderr, json.loads(stdout) if code == 0 else None)
    code, _, stderr = _cli(
        "approve", case_id, "--store", root, "--stage", "vessel", "--version", "2",
        "--editor", "dr_z",
    )  # fmt: skip
    results["approve"] = (code, stderr)
    return results


def test_flipped_bytes_anywhere_give_the_damaged_error_or_change_nothing(
    store: CaseStore, tmp_path: Path
) -> None:
    first = store.case_ids()[0]
    edited = store.read_version(first, "vessel")
    edited[5:9, 5:9] = 1
    store.save_version(first, "vessel", edited, editor="dr_a", parent=1)
    source = store.path(first)
    clean_root = tmp_path / "clean"
    (clean_root / "cases").mkdir(parents=True)
    shutil.copy(source, clean_root / "cases" / source.name)
    clean = _outputs(clean_root, first, tmp_path / "clean_out")
    assert clean["damaged"] is False and clean["approve"][0] == 0

    arrays, metadata = _byte_ranges(source)
    rng = np.random.default_rng(30)
    offsets = [*rng.choice(metadata, 16, replace=False), *rng.choice(arrays, 8, replace=False)]
    original, in_arrays = source.read_bytes(), set(arrays.tolist())
    harmless = 0
    for number, offset in enumerate(offsets):
        root = tmp_path / f"flip{number}"
        (root / "cases").mkdir(parents=True)
        damaged = bytearray(original)
        damaged[offset] ^= 0x5A
        (root / "cases" / source.name).write_bytes(bytes(damaged))
        seen = _outputs(root, first, tmp_path / f"flip{number}_out")
        where = f"byte {offset} ({'array' if offset in in_arrays else 'metadata'})"
        for command in ("inspect", "history", "approve"):
            code, stderr = seen[command][0], seen[command][1]
            if code != 0:
                _one_line_error(code, stderr, "damaged", "restore it from a backup")
        if seen["damaged"]:
            assert seen["status"][0] == 1, where
            # whatever did not read the damaged part gave the clean answer
            for command in ("inspect", "history"):
                if seen[command][0] == 0:
                    assert seen[command][2] == clean[command][2], (where, command)
            continue
        # --verify found nothing: the byte was unused, and every command behaves as on the clean
        # file (same files, same history, the approval recorded)
        harmless += 1
        assert seen["status"] == clean["status"], where
        for command in ("inspect", "history"):
            assert seen[command] == clean[command], (where, command)
        assert seen["approve"][0] == 0, where
    assert harmless < len(offsets), "no flip was detected: the test exercised nothing"


# ---- L5: export never silently lacks cases; a read-only store fails at once ----------------


def test_export_refuses_an_unreadable_case_or_an_empty_result(
    store: CaseStore, tmp_path: Path
) -> None:
    first, second = store.case_ids()
    out = tmp_path / "approved.h5"
    code, _, stderr = _cli("export", "--store", store.root, "--out", out)
    _one_line_error(code, stderr, "nothing exported", "2 still in curation or review")
    code, _, stderr = _cli("export", "--store", store.root, "--out", tmp_path / "folder")
    _one_line_error(code, stderr, "nothing exported")
    assert not out.exists() and not (tmp_path / "folder").exists()

    baseline = store.read_version(first, "vessel")
    store.approve(first, "vessel", version=1, editor="dr_a")
    store.save_version(first, "av", _av_labels(baseline), editor="angioflow", parent=0)
    store.approve(first, "av", version=1, editor="dr_a")
    broken = store.path(second)
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    code, _, stderr = _cli("export", "--store", store.root, "--out", out)
    _one_line_error(code, stderr, f"case {second} is unreadable", "--skip-unreadable")
    assert not out.exists() and not list(tmp_path.glob(".approved*"))
    code, stdout, stderr = _cli("export", "--store", store.root, "--out", out, "--skip-unreadable")
    assert code == 0, stderr
    assert "1 approved cases written" in stdout and f"unreadable {second}" in stderr
    with h5py.File(out) as handle:
        assert [g.attrs["case_id"] for g in handle.values()] == [first]


def _read_only_command(store: Path, command: list[str]) -> list[str]:
    """``command`` run with ``store`` read-only: by permissions for a normal user, by a
    read-only bind mount in a private mount namespace for root (root ignores permissions)."""
    if os.geteuid() != 0:
        for path in [store, *store.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        return command
    if shutil.which("unshare") is None:
        pytest.skip("running as root without unshare: cannot make the store read-only")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"running as root and unshare -m is refused: {probe.stderr.decode()[:80]}")
    script = f'mount --bind "{store}" "{store}" && mount -o remount,bind,ro "{store}" && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, "sh", *command]


def test_curate_on_a_read_only_store_fails_at_once_without_retries(
    store: CaseStore, prefect_server: None
) -> None:
    from prefect.settings import PREFECT_API_URL

    first = store.case_ids()[0]
    store.approve(first, "vessel", version=1, editor="dr_a")  # stage 9 would write
    command = _read_only_command(
        store.root,
        [sys.executable, "-c", "from angioflow.flows.cli import app; app()", "curate", "--store",
         str(store.root)],
    )  # fmt: skip
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "cannot be written" in output and "Traceback" not in output, output
    assert "etry" not in output, output  # no "Retrying" / "Retries are exhausted"
    assert store.summary(first).stage is Stage.VESSEL_APPROVED and not store.versions(first, "av")
