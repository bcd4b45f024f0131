"""Review without the GUI: rejections, autosaves, merges, imported masks, the approve/history/
inspect/status commands, concurrent reviewers and the curate flow continuing from a gate."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from angioflow.flows.cli import app
from angioflow.pipeline.casestore import CaseStore, MaskKind, Stage
from angioflow.pipeline.qc import av_to_rgb
from angioflow.pipeline.review import MaskImportError, merge_edits, read_mask_file, review_queue
from PIL import Image
from typer.testing import CliRunner, Result

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_merge_keeps_both_reviewers_edits_and_reports_conflicts() -> None:
    base = np.zeros((4, 6), np.uint8)
    mine, theirs = base.copy(), base.copy()
    mine[0, :3] = 1  # I painted a vessel
    theirs[3, 3:] = 1  # they painted another
    mine[2, 2], theirs[2, 2] = 1, 2  # both labelled one pixel, differently
    merged = merge_edits(base, mine, theirs)
    assert merged.mask[0, :3].tolist() == [1, 1, 1] and merged.mask[3, 3:].tolist() == [1, 1, 1]
    assert merged.changed == 4 and np.argwhere(merged.conflicts).tolist() == [[2, 2]]
    assert merged.mask[2, 2] == 1  # the merging reviewer's label, flagged as a conflict


@pytest.mark.slow
def test_rejection_leaves_the_queue_until_a_new_version(store: CaseStore) -> None:
    first, second = store.case_ids()
    assert [e.case_id for e in review_queue(store)] == [first, second]
    with pytest.raises(Exception, match="give a reason"):
        store.reject(first, "vessel", version=1, editor="dr_a", reason=" ")
    store.reject(first, "vessel", version=1, editor="dr_a", reason="frames out of focus")
    summary = store.summary(first)
    assert summary.stage == Stage.REJECTED and summary.rejection.reason == "frames out of focus"
    assert [e.case_id for e in review_queue(store)] == [second]
    edited = store.read_version(first, "vessel")
    edited[:4, :4] = 1
    store.save_version(first, "vessel", edited, editor="dr_b", parent=1)
    assert store.summary(first).stage == Stage.VESSEL_REVIEW  # a fixed version is reviewed again


@pytest.mark.slow
def test_autosave_round_trip_is_per_editor_and_cleared_by_saving(store: CaseStore) -> None:
    case_id = store.case_ids()[0]
    mask = store.read_version(case_id, "vessel")
    mask[10:20, 10:20] = 1
    store.save_autosave(case_id, "vessel", mask, editor="Dr Ann Lee", parent=1)
    kept = store.read_autosave(case_id, "vessel", "Dr Ann Lee")
    assert kept.parent == 1 and np.array_equal(kept.mask, mask)
    assert store.read_autosave(case_id, "vessel", "dr_other") is None
    assert [(e.case_id, e.editing) for e in review_queue(store)][0] == (case_id, ("Dr Ann Lee",))
    assert "Ann" not in "".join(p.name for p in store.autosave_dir.rglob("*"))  # digest names
    store.save_version(case_id, "vessel", mask, editor="Dr Ann Lee", parent=1)
    assert store.read_autosave(case_id, "vessel", "Dr Ann Lee") is None
    with pytest.raises(Exception, match="labels"):
        store.save_autosave(case_id, "vessel", mask * 7, editor="x", parent=2)


def test_masks_from_other_tools_are_read_or_refused_with_the_fix(tmp_path: Path) -> None:
    shape = (40, 60)
    vessel = np.zeros(shape, np.uint8)
    vessel[10:12, 5:50] = 255
    Image.fromarray(vessel).save(tmp_path / "grey.png")
    Image.fromarray(vessel > 0).save(tmp_path / "one_bit.png")  # mode "1"
    for name in ("grey.png", "one_bit.png"):
        assert np.array_equal(read_mask_file(tmp_path / name, MaskKind.VESSEL, shape), vessel > 0)
    av = np.zeros(shape, np.uint8)
    av[10:12, 5:50], av[20:22, 5:50], av[20:22, 20] = 1, 2, 3
    Image.fromarray(av_to_rgb(av)).save(tmp_path / "av_rgb.png")
    Image.fromarray(av).save(tmp_path / "av_labels.png")
    for name in ("av_rgb.png", "av_labels.png"):
        assert np.array_equal(read_mask_file(tmp_path / name, MaskKind.AV, shape), av)

    with pytest.raises(MaskImportError, match=r"grey.png: is 60x40 but .* 70x40"):
        read_mask_file(tmp_path / "grey.png", MaskKind.VESSEL, (40, 70))
    soft = vessel.copy()
    soft[30, 30] = 128
    Image.fromarray(soft).save(tmp_path / "soft.png")
    with pytest.raises(MaskImportError, match="soft.png: a vessel mask needs two values"):
        read_mask_file(tmp_path / "soft.png", MaskKind.VESSEL, shape)
    green = av_to_rgb(av)
    green[0, 0] = (0, 255, 0)  # RITE's crossing colour
    Image.fromarray(green).save(tmp_path / "green.png")
    assert read_mask_file(tmp_path / "green.png", MaskKind.AV, shape)[0, 0] == 3
    Image.fromarray(vessel).save(tmp_path / "photo.jpg")
    with pytest.raises(MaskImportError, match="photo.jpg: is JPEG, whose lossy compression"):
        read_mask_file(tmp_path / "photo.jpg", MaskKind.VESSEL, shape)
    Image.fromarray(av_to_rgb(av)).save(tmp_path / "av_as_vessel.png")
    with pytest.raises(MaskImportError, match="av_as_vessel.png: is a colour image"):
        read_mask_file(tmp_path / "av_as_vessel.png", MaskKind.VESSEL, shape)


@pytest.mark.slow
def test_approve_history_inspect_and_status_commands(store: CaseStore, tmp_path: Path) -> None:
    first, second = store.case_ids()
    root = str(store.root)
    shape = store.summary(first).fundus_shape
    edited = store.read_version(first, "vessel").astype(np.uint8) * 255
    edited[5:9, 5:9] = 255
    Image.fromarray(edited).save(tmp_path / "edited.png")

    def approve_vessel(case: str, mask: str) -> Result:
        arguments = ["approve", case, "--store", root, "--stage", "vessel", "--editor", "dr_a"]
        return runner.invoke(app, [*arguments, "--mask", str(tmp_path / mask), "--parent", "1"])

    result = approve_vessel(first, "edited.png")
    assert result.exit_code == 0, result.output + result.stderr
    assert "approved vessel version 2" in result.output and "vessel_approved" in result.output
    assert store.read_version(first, "vessel")[5:9, 5:9].all()

    Image.fromarray(np.zeros((shape[0], shape[1] + 1), np.uint8)).save(tmp_path / "wide.png")
    refused = approve_vessel(second, "wide.png")
    assert refused.exit_code == 2 and "wide.png: is" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert len(store.versions(second, "vessel")) == 1  # nothing stored
    no_editor = runner.invoke(app, ["approve", second, "--store", root, "--stage", "vessel"])
    assert no_editor.exit_code == 2 and "--editor NAME" in no_editor.stderr
    store.reject(second, "vessel", version=1, editor="dr_b", reason="wrong eye")

    history = runner.invoke(app, ["history", first, "--store", root, "--json"])
    record = json.loads(history.output)
    assert [(v["version"], v["parent"], v["editor"]) for v in record["versions"]] == [
        (1, 0, "angioflow"),
        (2, 1, "dr_a"),
    ]
    assert record["approvals"][0]["version"] == 2 and record["approvals"][0]["editor"] == "dr_a"
    assert "sha256" in record["versions"][1]["note"]

    out = tmp_path / "baseline"
    inspected = runner.invoke(
        app,
        [
            "inspect",
            first,
            "--store",
            root,
            "--version",
            "1",
            "--stage",
            "vessel",
            "--out",
            str(out),
        ],
    )
    assert inspected.exit_code == 0, inspected.stderr
    baseline = np.asarray(Image.open(out / "vessel.png")) > 0
    assert np.array_equal(baseline, store.read_version(first, "vessel", 1) > 0)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["exported_versions"]["vessel"]["version"] == 1
    assert not metrics["exported_versions"]["vessel"]["approved"]
    missing = runner.invoke(
        app, ["inspect", first, "--store", root, "--version", "9", "--out", str(out)]
    )
    assert missing.exit_code == 2 and "versions 1..2 exist" in missing.stderr

    status = json.loads(runner.invoke(app, ["status", "--store", root, "--json"]).output)
    stages = {c["case_id"]: c for c in status["cases"]}
    assert stages[first]["stage"] == "vessel_approved" and status["review_queue"] == []
    assert (
        stages[second]["stage"] == "rejected"
        and stages[second]["rejected"]["reason"] == "wrong eye"
    )


_REVIEWER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from angioflow.annotation_tools.session import ReviewSession
    from angioflow.pipeline.casestore import CaseStore, StaleVersionError

    store = CaseStore(Path(sys.argv[1]), create=False)
    session = ReviewSession(store, sys.argv[2], sys.argv[3])
    column, count = int(sys.argv[4]), int(sys.argv[5])
    for edit in range(count):
        mask = session.mask()
        mask[10 + 3 * edit, column] = 1  # this reviewer's edit number `edit`
        while True:
            try:
                print(session.save(mask, f"edit {edit}"), flush=True)
                break
            except StaleVersionError:
                mask = session.merge_onto_latest(mask).mask
    """
)


@pytest.mark.slow
def test_two_reviewers_saving_concurrently_lose_no_version_and_no_edit(store: CaseStore) -> None:
    case_id = store.case_ids()[0]
    mask = store.read_version(case_id, "vessel")
    columns = [c for c in range(mask.shape[1]) if not mask[10:40, c].any()][:2]
    reviewers = [
        subprocess.Popen(
            [sys.executable, "-c", _REVIEWER, str(store.root), case_id, editor, str(col), "8"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for editor, col in zip(("dr_a", "dr_b"), columns, strict=True)
    ]
    printed = [int(v) for r in reviewers for v in r.communicate(timeout=300)[0].split()]
    assert all(r.returncode == 0 for r in reviewers)
    versions = store.versions(case_id, "vessel")
    assert len(versions) == 17 and sorted(printed) == list(range(2, 18))
    assert [v.parent for v in versions] == list(range(0, 17))
    final = store.read_version(case_id, "vessel")
    for column in columns:  # every edit of both reviewers is in the latest version
        assert final[10:34:3, column].tolist() == [1] * 8


@pytest.mark.slow
def test_curate_continues_from_the_gate_without_recomputing(
    store: CaseStore, prefect_server: None
) -> None:
    from angioflow.flows.curate import curate_flow

    first, second = store.case_ids()
    finished = {
        s: store.read_stage(first, s, arrays=()).finished for s in store.summary(first).stages_done
    }
    result = curate_flow(str(store.root))  # nothing approved yet: stage 9 never runs
    assert result["av_labelled"] == [] and result["curated"] == []
    assert {w["case_id"] for w in result["waiting"]} == {first, second}
    store.reject(second, "vessel", version=1, editor="dr_b", reason="poor dye filling")
    store.approve(first, "vessel", version=1, editor="dr_a")
    result = curate_flow(str(store.root))
    assert [c["case_id"] for c in result["av_labelled"]] == [first]
    assert result["waiting"] == []  # the rejected case is neither waiting nor labelled
    assert store.summary(first).stage == Stage.AV_REVIEW and not store.versions(second, "av")
    for stage, when in finished.items():  # stages 2-7 were not recomputed
        assert store.read_stage(first, stage, arrays=()).finished == when
    store.approve(first, "av", version=1, editor="dr_a")
    assert store.summary(first).stage == Stage.DONE
    assert curate_flow(str(store.root))["av_labelled"] == []


@pytest.mark.slow
def test_review_command_refuses_before_opening_napari(store: CaseStore) -> None:
    root = str(store.root)
    no_editor = runner.invoke(app, ["review", "--store", root], env={"ANGIOFLOW_EDITOR": ""})
    assert no_editor.exit_code == 2 and "--editor NAME" in no_editor.stderr
    unknown = runner.invoke(app, ["review", "pnope_OD_000000", "--store", root, "--editor", "x"])
    assert unknown.exit_code == 2 and "no case 'pnope_OD_000000'" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
