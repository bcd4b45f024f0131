"""The case store: round trips, immutable versions, approvals, corruption and crash safety."""

from __future__ import annotations

import gzip
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from angioflow.pipeline.casestore import (
    CaseStore,
    CaseStoreError,
    MaskKind,
    NewCase,
    Stage,
    StaleVersionError,
)
from angioflow.pipeline.h5_formats import CASE

DATA = Path(__file__).parent / "data"


def new_case(
    case_id: str = "pabc_OD_123456", shape: tuple[int, int] = (64, 96), seed: int = 0
) -> NewCase:
    rng = np.random.default_rng(seed)
    return NewCase(
        case_id=case_id,
        patient_pseudonym="pabc",
        eye="OD",
        camera="cam",
        acquired_year=2024,
        source_sha256="0" * 64,
        fundus=rng.integers(0, 256, (*shape, 3), dtype=np.uint8),
        fa_frames=tuple(rng.integers(0, 4096, shape, dtype=np.uint16) for _ in range(3)),
        fa_times_s=(5.0, 12.5, 30.0),
        fa_files=("fa/0.png", "fa/1.png", "fa/2.png"),
    )


@pytest.fixture
def store(tmp_path: Path) -> CaseStore:
    return CaseStore(tmp_path / "store")


def test_raw_images_round_trip_exactly(store: CaseStore) -> None:
    case = new_case()
    store.create(case)
    raw = store.read_raw(case.case_id)
    np.testing.assert_array_equal(raw.fundus, case.fundus)
    for stored, original in zip(raw.fa_frames, case.fa_frames, strict=True):
        assert stored.dtype == np.uint16
        np.testing.assert_array_equal(stored, original)
    assert raw.fa_times_s == case.fa_times_s
    summary = store.summary(case.case_id)
    assert (summary.stage, summary.n_frames, summary.fundus_shape) == (Stage.INGESTED, 3, (64, 96))


def test_existing_case_is_not_overwritten_without_replace(store: CaseStore) -> None:
    store.create(new_case(seed=0))
    before = store.path("pabc_OD_123456").read_bytes()
    with pytest.raises(CaseStoreError, match="already stored; pass --replace"):
        store.create(new_case(seed=1))
    assert store.path("pabc_OD_123456").read_bytes() == before


def test_case_ids_cannot_leave_the_store(store: CaseStore) -> None:
    for bad in ("../x", "a/b", "", ".hidden", "x" * 80):
        with pytest.raises(CaseStoreError, match="invalid case id"):
            store.path(bad)


def test_versions_are_immutable_and_chained(store: CaseStore) -> None:
    store.create(new_case())
    baseline = np.zeros((64, 96), np.uint8)
    baseline[10:20, :] = 1
    assert (
        store.save_version("pabc_OD_123456", "vessel", baseline, editor="angioflow", parent=0) == 1
    )
    edited = baseline.copy()
    edited[30:35, 5:50] = 1
    assert (
        store.save_version(
            "pabc_OD_123456", "vessel", edited, editor="dr_a", parent=1, note="added branch"
        )
        == 2
    )
    np.testing.assert_array_equal(store.read_version("pabc_OD_123456", "vessel", 1), baseline)
    np.testing.assert_array_equal(store.read_version("pabc_OD_123456", "vessel"), edited)
    versions = store.versions("pabc_OD_123456", MaskKind.VESSEL)
    assert [(v.version, v.parent, v.editor, v.note) for v in versions] == [
        (1, 0, "angioflow", ""),
        (2, 1, "dr_a", "added branch"),
    ]
    assert versions[0].sha256 != versions[1].sha256
    assert store.summary("pabc_OD_123456").stage is Stage.VESSEL_REVIEW


def test_saving_against_a_stale_parent_is_refused(store: CaseStore) -> None:
    store.create(new_case())
    mask = np.zeros((64, 96), np.uint8)
    store.save_version("pabc_OD_123456", "vessel", mask, editor="angioflow", parent=0)
    store.save_version("pabc_OD_123456", "vessel", mask, editor="dr_a", parent=1)
    with pytest.raises(StaleVersionError, match=r"version 2 has been saved since \(by dr_a\)"):
        store.save_version("pabc_OD_123456", "vessel", mask, editor="dr_b", parent=1)
    assert len(store.versions("pabc_OD_123456", "vessel")) == 2


@pytest.mark.parametrize(
    ("kind", "mask", "message"),
    [
        ("vessel", np.zeros((64, 95), np.uint8), "fundus coordinates"),
        ("vessel", np.full((64, 96), 2, np.uint8), r"labels \[2\] outside"),
        ("av", np.full((64, 96), 4, np.uint8), r"labels \[4\] outside"),
        ("vessel", np.zeros((64, 96), np.float32), "integer labels"),
    ],
)
def test_invalid_masks_are_refused(
    store: CaseStore, kind: str, mask: np.ndarray, message: str
) -> None:
    store.create(new_case())
    with pytest.raises(CaseStoreError, match=message):
        store.save_version("pabc_OD_123456", kind, mask, editor="dr_a", parent=0)


def test_approvals_advance_the_stage_in_order(store: CaseStore) -> None:
    store.create(new_case())
    case_id = "pabc_OD_123456"
    mask = np.zeros((64, 96), np.uint8)
    store.save_version(case_id, "vessel", mask, editor="angioflow", parent=0)
    with pytest.raises(CaseStoreError, match="approve the vessel mask before saving an A/V"):
        store.save_version(case_id, "av", mask, editor="angioflow", parent=0)
    with pytest.raises(CaseStoreError, match="no av mask version 1 to approve"):
        store.approve(case_id, "av", version=1, editor="dr_a")
    with pytest.raises(CaseStoreError, match="no vessel mask version 5"):
        store.approve(case_id, "vessel", version=5, editor="dr_a")
    store.approve(case_id, "vessel", version=1, editor="dr_a")
    assert store.summary(case_id).approved_versions == {"vessel": 1, "av": 0}
    store.save_version(case_id, "av", mask, editor="angioflow", parent=0)
    store.approve(case_id, "av", version=1, editor="dr_b")
    assert store.summary(case_id).stage is Stage.DONE
    approvals = [e for e in store.events(case_id) if e["event"] == "approved"]
    assert [(a["kind"], a["editor"]) for a in approvals] == [("vessel", "dr_a"), ("av", "dr_b")]


def test_stage_outputs_keep_parameters_and_timing(store: CaseStore) -> None:
    store.create(new_case())
    aggregate = np.linspace(0, 1, 64 * 96, dtype=np.float32).reshape(64, 96)
    store.write_stage(
        "pabc_OD_123456", "aggregation", {"max": aggregate}, params={"mode": "max"}, seconds=1.5
    )
    output = store.read_stage("pabc_OD_123456", "aggregation")
    np.testing.assert_array_equal(output.arrays["max"], aggregate)
    assert output.params == {"mode": "max"} and output.seconds == 1.5
    store.record_error("pabc_OD_123456", "registration", "frame 3 could not be registered")
    assert store.summary("pabc_OD_123456").last_error == "frame 3 could not be registered"
    with pytest.raises(CaseStoreError, match="no output of stage 'binarise'"):
        store.read_stage("pabc_OD_123456", "binarise")


def test_corrupt_or_incomplete_files_give_a_clear_error(store: CaseStore) -> None:
    store.create(new_case("pa_OD_1"))
    store.create(new_case("pb_OD_2"))
    store.create(new_case("pc_OD_3"))
    path = store.path("pa_OD_1")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CaseStoreError, match="corrupt or incomplete.*restore it from a backup"):
        store.read_raw("pa_OD_1")
    store.path("pb_OD_2").write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(5000))
    with pytest.raises(CaseStoreError, match="corrupt or incomplete"):
        store.summary("pb_OD_2")
    with h5py.File(store.path("pc_OD_3"), "r+") as handle:
        handle.attrs["complete"] = False
    with pytest.raises(CaseStoreError, match="not a complete angioflow case file"):
        store.read_raw("pc_OD_3")
    with pytest.raises(CaseStoreError, match="no case 'pd_OD_4'"):
        store.read_raw("pd_OD_4")


def test_silently_changed_pixels_fail_their_checksum(store: CaseStore) -> None:
    store.create(new_case())
    with h5py.File(store.path("pabc_OD_123456"), "r+") as handle:
        handle["raw/fundus"][0, 0, 0] ^= 1
    with pytest.raises(CaseStoreError, match="raw/fundus fails its checksum"):
        store.read_raw("pabc_OD_123456")


_WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from pathlib import Path
    from angioflow.pipeline.casestore import CaseStore, StaleVersionError
    store, case_id = CaseStore(Path(sys.argv[1])), sys.argv[2]
    editor, count = sys.argv[3], int(sys.argv[4])
    shape = store.summary(case_id).fundus_shape
    rng = np.random.default_rng(abs(hash(editor)) % 1000)
    saved = 0
    while saved < count:
        parent = len(store.versions(case_id, "vessel"))
        try:
            mask = rng.integers(0, 2, shape, dtype=np.uint8)
            version = store.save_version(case_id, "vessel", mask,
                                         editor=editor, parent=parent)
        except StaleVersionError:
            continue
        saved += 1
        print(version, flush=True)
    """
)


def _start_writer(store: CaseStore, editor: str, count: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(store.root), "pabc_OD_123456", editor, str(count)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[1],
    )


def _read_versions(
    writer: subprocess.Popen[bytes], count: int, timeout: float = 120.0
) -> list[int]:
    """The versions a writer prints, read until ``count`` arrived; fails at the deadline."""
    fd, buffer, printed = writer.stdout.fileno(), b"", []
    deadline = time.monotonic() + timeout
    while len(printed) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"the writer committed {len(printed)} of {count} versions in {timeout} s"
        if not select.select([fd], [], [], left)[0]:
            continue
        chunk = os.read(fd, 4096)
        assert chunk, f"the writer ended after {len(printed)} of {count} versions"
        *lines, buffer = (buffer + chunk).split(b"\n")
        printed += [int(line) for line in lines if line.strip()]
    return printed


@pytest.mark.slow
def test_kill_9_during_writes_leaves_a_readable_store(store: CaseStore) -> None:
    store.create(new_case(shape=(768, 1024)))  # noise pixels: each commit copies ~10 MB
    rng = np.random.default_rng(0)
    committed = 0
    for _ in range(4):
        writer = _start_writer(store, "killer", 10_000)
        started = time.monotonic()
        printed = _read_versions(writer, int(rng.integers(1, 3)))
        # Where in the next commit the kill lands: a random point within one commit's duration
        # (this delay places the kill, it does not wait for anything).
        time.sleep(rng.uniform(0, (time.monotonic() - started) / len(printed)))
        writer.send_signal(signal.SIGKILL)
        printed += [int(v) for v in writer.communicate()[0].split()]
        committed = printed[-1]
        reopened = CaseStore(store.root)  # removes the killed writer's temp file
        versions = reopened.versions("pabc_OD_123456", "vessel")
        # Every printed version was committed; at most one more may have landed before the kill.
        assert committed <= len(versions) <= committed + 1
        assert [v.version for v in versions] == list(range(1, len(versions) + 1))
        reopened.read_version("pabc_OD_123456", "vessel")
        reopened.read_raw("pabc_OD_123456")
        committed = len(versions)
    assert committed >= 4, "the writers committed too little: kills mid-write were not exercised"
    assert not list(store.cases_dir.glob(".*.tmp"))


def test_two_concurrent_writers_never_lose_a_version(store: CaseStore) -> None:
    store.create(new_case(shape=(128, 192)))
    writers = [_start_writer(store, editor, 6) for editor in ("dr_a", "dr_b")]
    outputs = [w.communicate(timeout=120)[0].split() for w in writers]
    assert all(w.returncode == 0 for w in writers)
    versions = store.versions("pabc_OD_123456", "vessel")
    assert len(versions) == 12
    assert sorted(int(v) for out in outputs for v in out) == list(range(1, 13))
    assert [v.parent for v in versions] == list(range(0, 12))
    assert sorted(v.editor for v in versions) == ["dr_a"] * 6 + ["dr_b"] * 6


def test_changed_names_attributes_or_events_are_damage_and_old_files_get_sealed(
    store: CaseStore,
) -> None:
    case_id = "pabc_OD_123456"
    store.create(new_case())
    store.save_version(case_id, "vessel", np.zeros((64, 96), np.uint8), editor="dr_a", parent=0)
    path, original = store.path(case_id), store.path(case_id).read_bytes()
    for change, where in (
        (lambda h: h["reviews/vessel/v0001"].attrs.__setitem__("editor", "dr_b"), "v0001"),
        (lambda h: h.move("raw/fa/001", "raw/fa/009"), "raw/fa/00"),
        (lambda h: h["events"].__setitem__(0, '{"event": "forged"}'), "events"),
        (lambda h: h.attrs.__delitem__("manifest"), "manifest is missing"),
    ):
        path.write_bytes(original)
        with h5py.File(path, "r+") as handle:
            change(handle)
        with pytest.raises(CaseStoreError, match=f"is damaged .*{where}.*restore it from a backup"):
            CaseStore(store.root).summary(case_id)
    path.write_bytes(original)
    with h5py.File(path, "r+") as handle:  # a case file written before manifests
        del handle.attrs["manifest"], handle.attrs["manifest_sha256"]
        handle.attrs["format_version"] = 1
    assert store.versions(case_id, "vessel")[0].editor == "dr_a"
    store.approve(case_id, "vessel", version=1, editor="dr_a")  # its next change seals it
    with h5py.File(path, "r") as handle:
        assert handle.attrs["format_version"] == CASE.version and "manifest" in handle.attrs
    assert store.verify(case_id) == 5  # fundus, 3 frames, the mask (events: in the manifest)


# ---- the event log: failures are appended beside the case file, never rewriting it -------------


def _bytes_written() -> int | None:
    """Bytes this process has passed to write() so far (Linux), None elsewhere."""
    io_file = Path("/proc/self/io")
    if not io_file.is_file():
        return None
    fields = dict(line.split(": ") for line in io_file.read_text().splitlines())
    return int(fields["wchar"])


def test_recording_an_error_never_rewrites_the_raw_frames(store: CaseStore) -> None:
    case_id = "pabc_OD_123456"
    store.create(new_case(shape=(1024, 1024)))  # noise pixels: an ~9 MB case file
    store.write_stage(case_id, "aggregation", {"max": np.ones((8, 8))}, params={}, seconds=1.0)
    path = store.path(case_id)
    before, content = os.stat(path), path.read_bytes()
    written = _bytes_written()
    store.record_error(case_id, "registration", "frame 3 could not be registered")
    written = None if written is None else _bytes_written() - written
    after = os.stat(path)
    # The case file was neither replaced nor written in place: same inode, time and bytes.
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert path.read_bytes() == content
    if written is not None:  # the log line, not a copy of the ~9 MB file
        assert written < 64_000, f"{written} bytes written to record one error"
    assert store.summary(case_id).last_error == "frame 3 could not be registered"
    store.record_error(case_id, "registration", "second try failed")
    assert [e["event"] for e in store.events(case_id)] == [
        "ingested", "stage_output", "error", "error",
    ]  # fmt: skip
    assert store.summary(case_id).last_error == "second try failed"
    store.write_stage(case_id, "aggregation", {"max": np.ones((8, 8))}, params={}, seconds=1.0)
    assert store.summary(case_id).last_error == ""  # a later stage output resolves it


_APPEND_KILLED_AT_RENAME = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from angioflow.pipeline.casestore import CaseStore

    def hook(event, args):
        if event == "os.rename" and os.fsdecode(args[1]).endswith(".log"):
            os.kill(os.getpid(), signal.SIGKILL)  # the new log is written, not yet in place

    store = CaseStore(Path(sys.argv[1]))
    sys.addaudithook(hook)
    store.record_error(sys.argv[2], "registration", "never recorded")
    """
)


def test_an_interrupted_error_append_leaves_the_log_readable(store: CaseStore) -> None:
    case_id = "pabc_OD_123456"
    store.create(new_case())
    store.record_error(case_id, "registration", "first failure")
    log = store.log_path(case_id)
    before = log.read_bytes()
    killed = subprocess.run(
        [sys.executable, "-c", _APPEND_KILLED_AT_RENAME, str(store.root), case_id],
        cwd=Path(__file__).resolve().parents[1],
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL
    assert log.read_bytes() == before and list(store.cases_dir.glob(".*.tmp"))
    reopened = CaseStore(store.root)  # removes the killed writer's temp file
    assert not list(store.cases_dir.glob(".*.tmp"))
    assert reopened.summary(case_id).last_error == "first failure"
    reopened.record_error(case_id, "registration", "second failure")
    assert [e["message"] for e in reopened.events(case_id) if e["event"] == "error"] == [
        "first failure",
        "second failure",
    ]
    assert reopened.verify(case_id) == 4


def test_a_changed_or_misplaced_event_log_is_reported_as_damage(store: CaseStore) -> None:
    store.create(new_case("pa_OD_1"))
    store.create(new_case("pb_OD_2"))
    store.record_error("pa_OD_1", "registration", "frame 3 could not be registered")
    log = store.log_path("pa_OD_1")
    original = log.read_text()
    log.write_text(original.replace("frame 3", "frame 4"))
    with pytest.raises(CaseStoreError, match=r"event log .*pa_OD_1.log is damaged \(line 1"):
        store.summary("pa_OD_1")
    with pytest.raises(CaseStoreError, match="delete it to go on"):
        store.verify("pa_OD_1")
    store.log_path("pb_OD_2").write_text(original)  # another case's log
    with pytest.raises(CaseStoreError, match="line 1 fails its digest"):
        store.events("pb_OD_2")


def test_replacing_a_case_keeps_its_old_log_with_the_old_file(store: CaseStore) -> None:
    store.create(new_case(seed=0))
    store.record_error("pabc_OD_123456", "registration", "old content failed")
    store.create(new_case(seed=1), replace=True)
    assert store.summary("pabc_OD_123456").last_error == ""
    (kept,) = store.replaced_dir.glob("*.log")
    assert "old content failed" in kept.read_text()
    assert kept.with_suffix(".h5").is_file()


def test_a_format_2_case_file_opens_and_moves_to_the_current_format(store: CaseStore) -> None:
    # Written by the format 2 case store (pipeline/casestore.py at commit 6a79d3f): synthetic
    # pixels, a stage output, vessel versions 1-2 (2 approved), A/V version 1 rejected, and two
    # failures inside /events.
    case_id = "pf2_OD_000001"
    path = store.path(case_id)
    path.write_bytes(gzip.decompress((DATA / "case_format2.h5.gz").read_bytes()))
    summary = store.summary(case_id)
    assert (summary.stage, summary.last_error) == (Stage.REJECTED, "label propagation failed")
    assert summary.latest_versions == {"vessel": 2, "av": 1}
    assert summary.approved_versions == {"vessel": 2, "av": 0}
    assert store.verify(case_id) == 7  # fundus, 2 frames, 1 stage array, 3 masks
    assert store.read_stage(case_id, "aggregation").params == {"mode": "max"}
    assert [v.editor for v in store.versions(case_id, "vessel")] == ["angioflow", "dr_a"]
    store.record_error(case_id, "av_labelling", "labelling failed again")
    with h5py.File(path, "r") as handle:
        assert handle.attrs["format_version"] == 2  # recording a failure left the file alone
    av = store.read_version(case_id, "av")
    store.save_version(case_id, "av", av, editor="dr_b", parent=1, approve=True)
    with h5py.File(path, "r") as handle:
        assert handle.attrs["format_version"] == CASE.version
    errors = [e["message"] for e in store.events(case_id) if e["event"] == "error"]
    assert errors == [
        "frame 1 could not be registered",
        "label propagation failed",
        "labelling failed again",
    ]
    assert store.summary(case_id).stage is Stage.DONE
