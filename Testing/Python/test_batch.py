"""Tests of ``spineseg batch`` (``SpineSegmentationLib/cohort/``) on a small real cohort.

The cohort: two copies of the shipped 3 mm CT (``a``, ``b``, about 7 s each) and a truncated copy (``corrupt``).
The local engine runs it as a user does (``python -m SpineSegmentationLib.cli batch``, a separate process), is
interrupted with Ctrl-C (SIGINT) once the first case is in place, and is run again: nothing finished is redone,
the corrupt case fails with its message, and the exit status counts the failure. The Ray engine (a local Ray
instance with one worker) runs the same cohort into another folder and must give the same summary. The shipped
model is replaced at merge time, so nothing here depends on which vertebrae it finds: per-case values are compared
with the case's own ``vertebrae.json`` and between the engines.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time

import pydicom
import pytest
import torch
from pydicom.uid import generate_uid
from enhanced_ct import write_enhanced_ct

from SpineSegmentationLib.cohort import CaseOptions, run_batch
from SpineSegmentationLib.cohort.batch import COHORT_RECORD
from SpineSegmentationLib.cli import build_parser
from SpineSegmentationLib.cli import main as cli_main
from SpineSegmentationLib.cohort.case_run import CASE_RECORD, finished_record, run_case, temporary_path
from SpineSegmentationLib.cohort.cases import MIN_SERIES_SLICES, Case, find_cases, read_manifest
from SpineSegmentationLib.cohort.engines import local_ray_resources, ray_gpus_per_task, ray_task_options, run_ray
from SpineSegmentationLib.cohort.lock import LOCK_FILE, OWNER_RECORD, BatchLock
from SpineSegmentationLib.cohort.report import (FLAGS, SUMMARY_COLUMNS, WARNING_SEPARATOR, case_flags, summary_rows,
                                                write_qc_sheet, write_summary)
from SpineSegmentationLib.errors import OutputExistsError, OutputWriteError, SpineSegmentationError
from SpineSegmentationLib.models import DEFAULT_MODEL_DIR
from SpineSegmentationLib.outputs import OUTPUT_FILES
from SpineSegmentationLib.outputs.dicom_seg import DICOM_SEG_FILE, dicom_source_files

CASES = ("a", "b", "corrupt")
#: Columns that legitimately differ between two runs of the same cohort.
RUN_COLUMNS = ("seconds", "resumed")
OPTIONS = CaseOptions(device="cpu", threads=1, dicom_seg=True)


def batch_command(*args) -> list[str]:
    return [sys.executable, "-m", "SpineSegmentationLib.cli", "batch", *map(str, args), "--device", "cpu",
            "--threads", "1", "--dicom-seg", "--progress", "none"]


def read_summary(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def without_run_columns(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in RUN_COLUMNS} for row in rows]


def case_records(root) -> dict[str, dict]:
    return {case: json.loads((root / case / CASE_RECORD).read_text()) for case in ("a", "b")}


@pytest.fixture(scope="module")
def cohort(real_ct, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cohort")
    for name in ("a", "b"):
        shutil.copyfile(real_ct, folder / f"{name}.nii.gz")
    (folder / "corrupt.nii.gz").write_bytes(real_ct.read_bytes()[:30000])  # cut short: gzip stream ends early
    return folder


@pytest.fixture(scope="module")
def local_run(cohort, tmp_path_factory):
    """The local engine, interrupted by Ctrl-C once case ``a`` is in place, then run again to the end."""
    out = tmp_path_factory.mktemp("local") / "out"
    first = subprocess.Popen(batch_command(cohort, "-o", out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    while not (out / "a" / CASE_RECORD).exists() and first.poll() is None:
        time.sleep(0.1)
    first.send_signal(signal.SIGINT)
    _, first_err = first.communicate(timeout=600)
    finished_first = {case: (out / case / CASE_RECORD).stat().st_mtime_ns
                      for case in CASES if (out / case / CASE_RECORD).exists()}
    leftovers_first = sorted(p.name for p in out.iterdir() if p.name.startswith("."))
    second = subprocess.run(batch_command(cohort, "-o", out), capture_output=True, text=True, timeout=1800)
    return {"out": out, "first_rc": first.returncode, "first_err": first_err, "finished_first": finished_first,
            "leftovers_first": leftovers_first, "second": second}


def test_interrupted_batch_leaves_only_finished_cases_and_resumes_without_redoing_them(local_run):
    out = local_run["out"]
    assert local_run["first_rc"] == 130, local_run["first_err"][-2000:]
    assert re.search(r"interrupted \(Ctrl-C\) after \d of 3 cases: .* not updated \(still the previous run's, if "
                     r"any\)\. The same command resumes", local_run["first_err"]), local_run["first_err"][-2000:]
    assert "a" in local_run["finished_first"]
    assert local_run["leftovers_first"] == []  # the interrupted case's temporary folder was removed
    rows = read_summary(out / "summary.csv")
    resumed = {row["case_id"] for row in rows if row["resumed"] == "true"}
    assert resumed == set(local_run["finished_first"])  # every case finished before the interrupt, and no other
    for case, mtime in local_run["finished_first"].items():
        assert (out / case / CASE_RECORD).stat().st_mtime_ns == mtime  # not written again


def test_batch_records_two_done_and_one_failed_with_its_message(local_run, cohort):
    out, second = local_run["out"], local_run["second"]
    assert second.returncode == 1, second.stderr[-3000:]  # exit status = number of failed cases
    assert "case corrupt failed: InputImageError" in second.stdout
    assert sorted(p.name for p in out.iterdir()) == [COHORT_RECORD, "a", "b", "cohort_qc.html", "summary.csv"]
    rows = read_summary(out / "summary.csv")
    by_case = {case: [row for row in rows if row["case_id"] == case] for case in CASES}
    (failed,) = by_case["corrupt"]
    assert failed["status"] == "failed" and "corrupt or truncated" in failed["error"] and failed["level"] == ""
    model = json.loads((DEFAULT_MODEL_DIR / "model.json").read_text())
    assert {row["model"] for case in ("a", "b") for row in by_case[case]} == {f"{model['name']} {model['version']}"}
    for case in ("a", "b"):
        folder = out / case
        assert all((folder / name).is_file() for name in OUTPUT_FILES.values())
        assert (folder / DICOM_SEG_FILE).is_file()  # --dicom-seg
        report = json.loads((folder / "vertebrae.json").read_text())
        assert report["vertebrae"], "the shipped model finds the example CT's spine"
        assert [row["level"] for row in by_case[case]] == [v["name"] for v in report["vertebrae"]]
        for row, v in zip(by_case[case], report["vertebrae"]):
            assert row["status"] == "done" and row["error"] == ""
            assert float(row["p_label"]) == pytest.approx(v["p_label"], abs=1e-4)
            assert row["complete"] == str(v["complete"]).lower()
            assert float(row["volume_mm3"]) == pytest.approx(v["volume_mm3"], abs=0.1)
        record = json.loads((folder / CASE_RECORD).read_text())
        assert record["warnings"] == report["warnings"]  # the run's warnings, in the record and the summary
        assert {row["warnings"] for row in by_case[case]} == {WARNING_SEPARATOR.join(report["warnings"])}
        assert record["fingerprint"]["input_sha256"] == hashlib.sha256(
            (case + ".nii.gz").encode() + (cohort / f"{case}.nii.gz").read_bytes()).hexdigest()
        model_json = (DEFAULT_MODEL_DIR / "model.json").read_bytes()
        assert record["fingerprint"]["model"]["sha256"] == hashlib.sha256(model_json).hexdigest()
        assert record["fingerprint"]["library_version"] == __import__("SpineSegmentationLib").__version__
    # QC sheet: the failed case first, then the others with their thumbnails
    page = (out / "cohort_qc.html").read_text()
    assert page.index("<h3>corrupt</h3>") < page.index("<h3>a</h3>") and 'src="a/qc.png"' in page


def test_cases_whose_run_warned_are_flagged_and_their_warnings_listed(tmp_path):
    """The report with known records: a case whose run warned is flagged "warning" (after a failure, before low
    confidence), its warnings are in the summary's ``warnings`` column and on its tile (escaped); a record written
    before the warnings were recorded (no ``warnings``) is read as none."""
    vertebra = {"name": "L1", "label": 20, "complete": True, "p_label": 0.9, "p_complete": 0.95, "volume_mm3": 1.0,
                "centroid_ras_mm": [0.0, 0.0, 0.0]}
    records = [
        {"case_id": "calm", "status": "done", "vertebrae": [vertebra], "warnings": []},
        {"case_id": "old", "status": "done", "vertebrae": [dict(vertebra, p_label=0.3)]},
        {"case_id": "warned", "status": "done", "vertebrae": [dict(vertebra, p_label=0.3)],
         "warnings": ["no landmark fixes the levels: <L1>", "second"]},
        {"case_id": "broken", "status": "failed", "error": "InputImageError: x", "vertebrae": []},
    ]
    assert [case_flags(r) for r in records] == [[], ["low confidence"], ["warning", "low confidence"], ["failed"]]
    rows = {row["case_id"]: row for row in summary_rows(records)}
    assert rows["warned"]["warnings"] == "no landmark fixes the levels: <L1>" + WARNING_SEPARATOR + "second"
    assert rows["old"]["warnings"] == rows["calm"]["warnings"] == rows["broken"]["warnings"] == ""
    page = write_qc_sheet(records, tmp_path).read_text()
    assert [page.index(f"<h3>{case}</h3>") for case in ("broken", "warned", "old", "calm")] == sorted(
        page.index(f"<h3>{case}</h3>") for case in ("broken", "warned", "old", "calm"))
    assert "warning: no landmark fixes the levels: &lt;L1&gt;" in page and "<L1>" not in page


def test_changed_model_and_force_redo_a_finished_case(local_run, cohort, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(local_run["out"] / "a", out / "a")
    manifest = tmp_path / "cases.csv"
    manifest.write_text(f"case_id,image\na,{cohort / 'a.nii.gz'}\n")
    # as if written by another model: the recorded model checksum differs
    record = json.loads((out / "a" / CASE_RECORD).read_text())
    record["fingerprint"]["model"]["sha256"] = "0" * 64
    (out / "a" / CASE_RECORD).write_text(json.dumps(record))
    threads = torch.get_num_threads()
    (redone,) = run_batch([], out, OPTIONS, manifest=manifest, progress=False, report=lambda line: None).records
    assert redone["status"] == "done" and not redone["resumed"]
    assert torch.get_num_threads() == threads  # the case ran on 1 thread; this process keeps its own count
    (resumed,) = run_batch([], out, OPTIONS, manifest=manifest, progress=False, report=lambda line: None).records
    assert resumed["resumed"]
    # the DICOM SEG that --dicom-seg asks for is missing (deleted): the case is run again and writes it; an earlier
    # run's skipped.csv goes, since this run skipped nothing
    (out / "a" / DICOM_SEG_FILE).unlink()
    (out / "skipped.csv").write_text("path,series_uid,reason\n/old/mr,1.2.3,modality MR, not CT\n")
    (segged,) = run_batch([], out, OPTIONS, manifest=manifest, progress=False, report=lambda line: None).records
    assert not segged["resumed"] and (out / "a" / DICOM_SEG_FILE).is_file()
    assert not (out / "skipped.csv").exists()
    # as if written before the run's warnings were recorded: it would read "no warnings", so it is run again
    record = json.loads((out / "a" / CASE_RECORD).read_text())
    del record["warnings"]
    (out / "a" / CASE_RECORD).write_text(json.dumps(record))
    (rerun,) = run_batch([], out, OPTIONS, manifest=manifest, progress=False, report=lambda line: None).records
    assert not rerun["resumed"] and "warnings" in json.loads((out / "a" / CASE_RECORD).read_text())
    written = (out / "a" / "labels.nii.gz").stat().st_mtime_ns
    forced = run_batch([], out, CaseOptions(device="cpu", threads=1, dicom_seg=True, force=True), manifest=manifest,
                       progress=False, report=lambda line: None).records
    # segmented again: a new label map replaced the one the resumed run left alone
    assert not forced[0]["resumed"] and (out / "a" / "labels.nii.gz").stat().st_mtime_ns != written
    # a person's own file in the case folder, hidden or not: the case is not redone over it (it was deleted with the
    # old folder); the files a file browser leaves there do not count
    (out / "a" / ".DS_Store").write_bytes(b"Finder")
    for mine in ("labels_corrected.nii.gz", ".notes.txt"):
        (out / "a" / mine).write_bytes(b"a person's correction")
        (kept,) = run_batch([], out, CaseOptions(device="cpu", threads=1, force=True), manifest=manifest,
                            progress=False, report=lambda line: None).records
        assert kept["status"] == "failed" and f"did not write ({mine})" in kept["error"]
        assert (out / "a" / mine).read_bytes() == b"a person's correction"
        (out / "a" / mine).unlink()
    # a person's own summary.csv in the output folder is refused before any case runs (it was replaced)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "summary.csv").write_text("my,own,table\n")
    with pytest.raises(OutputExistsError, match="summary.csv was not written by spineseg batch"):
        run_batch([], mine, OPTIONS, manifest=manifest, progress=False, report=lambda line: None)
    assert (mine / "summary.csv").read_text() == "my,own,table\n" and sorted(p.name for p in mine.iterdir()) == [
        "summary.csv"]


def test_ray_engine_gives_the_same_summary_as_the_local_engine(local_run, cohort, tmp_path):
    result = run_batch([cohort], tmp_path / "out", OPTIONS, engine="ray", workers=1, num_cpus=1, progress=False,
                       report=lambda line: None)
    assert result.failed == 1
    local = read_summary(local_run["out"] / "summary.csv")
    assert without_run_columns(read_summary(result.summary)) == without_run_columns(local)
    assert all(row["resumed"] == "false" for row in read_summary(result.summary))
    for case in ("a", "b"):
        assert (tmp_path / "out" / case / "labels.nii.gz").read_bytes() != b""
        assert case_records(tmp_path / "out")[case]["vertebrae"] == case_records(local_run["out"])[case]["vertebrae"]


def test_ray_engine_without_ray_says_how_to_install_it(monkeypatch, cohort, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail as when it is not installed
    with pytest.raises(SpineSegmentationError, match=r"needs Ray.*pip install \"\.\[cohort\]\""):
        next(run_ray([], tmp_path, OPTIONS))


def copy_series(source_files, folder, count, **changes):
    """The first ``count`` slices of a series into ``folder`` as a new series, with attributes changed."""
    folder.mkdir(parents=True)
    series = generate_uid()
    for path in source_files[:count]:
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = series
        for keyword, value in changes.items():
            setattr(ds, keyword, value)
        ds.save_as(folder / path.name, enforce_file_format=True)


def test_dicom_tree_gives_one_case_per_ct_series_and_skips_the_rest_with_reasons(dicom_dir, real_ct, tmp_path):
    tree = tmp_path / "tree"
    files = dicom_source_files(dicom_dir)
    shutil.copytree(dicom_dir, tree / "patient1" / "ct")
    copy_series(files, tree / "patient1" / "mr", 12, Modality="MR")
    copy_series(files, tree / "patient1" / "scout", 12, ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    copy_series(files, tree / "patient2" / "few", MIN_SERIES_SLICES - 1)
    shutil.copyfile(real_ct, tree / "patient2" / "ct.nii.gz")
    write_enhanced_ct(dicom_dir, tree / "patient3" / "enhanced")  # one file of 20 frames: 20 slices
    (tree / "patient2" / "old_run").mkdir()
    (tree / "patient2" / "old_run" / "vertebrae.json").write_text("{}")  # an earlier output: not an input
    shutil.copyfile(real_ct, tree / "patient2" / "old_run" / "labels.nii.gz")

    cases, skipped = find_cases([tree])
    assert [(c.case_id, c.image, c.series_uid) for c in cases] == [
        ("patient1_ct", tree / "patient1" / "ct", ""),  # the shipped series has no Series Instance UID
        ("patient2_ct", tree / "patient2" / "ct.nii.gz", None),
        ("patient3_enhanced", tree / "patient3" / "enhanced",
         str(pydicom.dcmread(tree / "patient3" / "enhanced" / "enhanced_ct.dcm").SeriesInstanceUID)),
    ]
    reasons = {s.path.name: s.reason for s in skipped}
    assert reasons == {
        "mr": "modality MR, not CT",
        "scout": "localizer (ImageType ORIGINAL\\PRIMARY\\LOCALIZER)",
        "few": f"{MIN_SERIES_SLICES - 1} slices, fewer than {MIN_SERIES_SLICES}: not a CT volume",
        "old_run": "a spineseg output folder (holds vertebrae.json)",
    }
    # a cohort gathered by symlinks: a linked folder is searched (once, also when a link leads back up the tree)
    (tmp_path / "elsewhere").mkdir()
    shutil.copyfile(real_ct, tmp_path / "elsewhere" / "scan.nii.gz")
    (tree / "patient4").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tree / "patient2" / "up").symlink_to(tree, target_is_directory=True)
    linked, _ = find_cases([tree])
    assert [c.case_id for c in linked] == ["patient1_ct", "patient2_ct", "patient3_enhanced", "patient4_scan"]
    # the output folder as an input: named as such (it was "no case found", the output root not being searched)
    for output in (tree, tmp_path):
        with pytest.raises(SpineSegmentationError, match="is (the|inside the) output folder .* is not an input and "
                                                         "holds none"):
            find_cases([tree], exclude=output)


def test_a_manifest_picks_one_series_of_a_folder_by_its_uid(tmp_path):
    """A manifest row could not name one series of a folder holding several (audit 2026-12-06: the case failed
    with "Pick one with --series-uid", which batch does not have): the series_uid column picks it, and two rows
    of one folder with different series are two cases."""
    manifest = tmp_path / "cases.csv"
    manifest.write_text("case_id,image,series_uid\nart,study,1.2.3.1\nven,study,1.2.3.2\nwhole,study,\n")
    cases, skipped = find_cases([], manifest)
    assert [(c.case_id, c.image, c.series_uid) for c in cases] == [
        ("art", tmp_path / "study", "1.2.3.1"), ("ven", tmp_path / "study", "1.2.3.2"),
        ("whole", tmp_path / "study", None)]
    assert skipped == []


def test_a_series_split_over_two_folders_is_skipped_naming_both(dicom_dir, tmp_path):
    """The slab's 20 slices split 12/8 over two folders (audit 2026-12-06): the 12 were segmented as a case and the
    8 skipped as "not a CT volume", with nothing saying the case was part of a scan."""
    files = dicom_source_files(dicom_dir)
    series = generate_uid()
    for folder, part in (("s1", files[:12]), ("s2", files[12:])):
        (tmp_path / "p" / folder).mkdir(parents=True)
        for path in part:
            ds = pydicom.dcmread(path)
            ds.SeriesInstanceUID = series
            ds.save_as(tmp_path / "p" / folder / path.name, enforce_file_format=True)
    shutil.copytree(dicom_dir, tmp_path / "p" / "whole")  # another series beside it is still a case
    cases, skipped = find_cases([tmp_path / "p"])
    assert [c.case_id for c in cases] == ["whole"]
    assert sorted(s.path.name for s in skipped) == ["s1", "s2"]
    assert all(s.series_uid == series and s.reason.startswith("the series is in 2 folders") for s in skipped)
    # one whole series reached directly and through a symlink is one folder: one case, the link's a repeat
    copy_series(files, tmp_path / "store" / "p1", len(files))
    (tmp_path / "cohort").mkdir()
    (tmp_path / "cohort" / "p1").symlink_to(tmp_path / "store" / "p1", target_is_directory=True)
    cases, skipped = find_cases([tmp_path / "store", tmp_path / "cohort"])
    assert [c.image for c in cases] == [tmp_path / "store" / "p1"]
    assert [s.reason for s in skipped] == [f"same file as {cases[0].case_id}"]


def test_bad_manifests_and_duplicate_ids_are_refused_with_the_fix(cohort, tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,path\nx,a.nii.gz\n")
    with pytest.raises(SpineSegmentationError, match="needs a header line with case_id,image"):
        read_manifest(manifest)
    manifest.write_text(f"case_id,image\na,{tmp_path / 'other' / 'a.nii.gz'}\n")  # not the folder's a.nii.gz
    with pytest.raises(SpineSegmentationError, match="two inputs give the case id 'a'"):
        find_cases([cohort], manifest)
    with pytest.raises(SpineSegmentationError, match="is missing"):
        find_cases([tmp_path / "nowhere"])
    assert sorted(os.listdir(cohort)) == ["a.nii.gz", "b.nii.gz", "corrupt.nii.gz"]


# --- fixes of the batch audit ------------------------------------------------------------------------------------


def file_size_limit(limit: int):
    """``preexec_fn`` for a process whose writes fail beyond ``limit`` bytes (EFBIG), as on a full disk."""
    def limit_writes():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limit_writes


def listing(folder) -> dict:
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resumed_case_reports_its_image_and_reference_as_given_now(local_run, cohort, tmp_path):
    """...and a case folder of an earlier run that this run does not list is named, as missing from the summary."""
    out = tmp_path / "out"
    shutil.copytree(local_run["out"] / "a", out / "a")
    shutil.copytree(local_run["out"] / "b", out / "b")  # an earlier run's case, not an input now
    (tmp_path / "moved").mkdir()
    shutil.copyfile(cohort / "a.nii.gz", tmp_path / "moved" / "a.nii.gz")  # same bytes and name: up to date
    manifest = tmp_path / "cases.csv"
    manifest.write_text("case_id,image,reference\na,moved/a.nii.gz,ref.nii.gz\n")
    lines = []
    result = run_batch([], out, OPTIONS, manifest=manifest, progress=False, report=lines.append)
    (record,) = result.records
    assert record["resumed"]
    assert any("list this run's 1 case(s); 1 other case folder(s)" in line and "(b)" in line for line in lines)
    assert record["image"] == str(tmp_path / "moved" / "a.nii.gz")
    assert record["reference"] == str(tmp_path / "ref.nii.gz")
    assert {(row["image"], row["reference"]) for row in read_summary(result.summary)} == {
        (record["image"], record["reference"])}


def test_summary_and_qc_sheet_are_replaced_whole_or_not_at_all(tmp_path):
    """Writes that fail midway (a file-size limit, as a full disk) leave the previous summary and QC sheet."""
    vertebra = {"name": "L1", "label": 20, "complete": True, "p_label": 0.9, "p_complete": 0.95, "volume_mm3": 1.0,
                "centroid_ras_mm": [0.0, 0.0, 0.0]}
    records = [{"case_id": f"case{i}", "status": "done", "vertebrae": [vertebra] * 5, "warnings": []}
               for i in range(20)]
    write_summary(records[:1], tmp_path / "summary.csv")
    write_qc_sheet(records[:1], tmp_path)
    (tmp_path / "records.json").write_text(json.dumps(records))
    before = listing(tmp_path)
    script = """
import json, sys
from pathlib import Path
from SpineSegmentationLib.cohort.report import write_qc_sheet, write_summary
out = Path(sys.argv[1])
records = json.loads((out / "records.json").read_text())
for write in (lambda: write_summary(records, out / "summary.csv"), lambda: write_qc_sheet(records, out)):
    try:
        write()
    except OSError as exc:
        print("errno", exc.errno)
"""
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                          timeout=600, preexec_fn=file_size_limit(2000))
    assert proc.stdout.split("\n") == [f"errno {errno.EFBIG}"] * 2 + [""], proc.stdout + proc.stderr
    assert listing(tmp_path) == before  # the old files whole, no temporary file left


def test_leftovers_of_a_killed_batch_are_removed_and_a_persons_dot_folders_kept(local_run, cohort, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(local_run["out"] / "a", out / "a")  # up to date: nothing to write
    # killed (SIGXFSZ, no clean-up) while writing case b: the file-size limit is exceeded by b's first output
    kill_on_write = ("import runpy, signal; signal.signal(signal.SIGXFSZ, signal.SIG_DFL); "
                     "runpy.run_module('SpineSegmentationLib.cli', run_name='__main__')")
    killed = subprocess.run([sys.executable, "-c", kill_on_write, *batch_command(cohort, "-o", out)[3:]],
                            capture_output=True, text=True, timeout=600, preexec_fn=file_size_limit(2000))
    assert killed.returncode == -signal.SIGXFSZ, killed.stderr[-3000:]
    assert [p.name for p in out.iterdir() if p.name.startswith(".")], "the kill left the case's temporary folder"
    for folder in (temporary_path(out, "old", "a"), out / "..tmp-a-4bce5321.spineseg-partial",  # the last two: the
                   out / ".old-a-0123abcd"):  # names an earlier version left after a kill
        (folder / ".spineseg-partial").mkdir(parents=True)
    temporary_path(out, "new", "summary.csv").write_text("case_id")
    mine = [out / ".tmp-notes", out / ".old-a-0123", out / ".tmp-scans.spineseg-batch"]
    for folder in mine:
        folder.mkdir()
        (folder / "notes.txt").write_text("mine")
    manifest = tmp_path / "cases.csv"
    manifest.write_text(f"case_id,image\na,{cohort / 'a.nii.gz'}\n")
    run_batch([], out, OPTIONS, manifest=manifest, progress=False, report=lambda line: None)
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".") and p.name != COHORT_RECORD) == sorted(
        p.name for p in mine)
    assert all((folder / "notes.txt").read_text() == "mine" for folder in mine)


def test_hidden_files_and_repeats_of_a_case_are_not_cases(cohort, tmp_path):
    tree = tmp_path / "tree"
    (tree / ".git").mkdir(parents=True)
    for path in (tree / "a.nii.gz", tree / "._a.nii.gz", tree / ".hidden.nii.gz", tree / ".git" / "b.nii.gz"):
        shutil.copyfile(cohort / "a.nii.gz", path)
    (tree / "link.nii.gz").symlink_to(tree / "a.nii.gz")
    (tree / "other").mkdir()
    (tree / "other" / "again.nii.gz").symlink_to(cohort / "b.nii.gz")
    manifest = tmp_path / "cases.csv"
    manifest.write_text(f"case_id,image\nb,{cohort / 'b.nii.gz'}\nb_twice,{cohort / 'b.nii.gz'}\n")
    cases, skipped = find_cases([tree], manifest)
    assert [(c.case_id, c.image) for c in cases] == [("a", tree / "a.nii.gz"),
                                                     ("other_again", tree / "other" / "again.nii.gz")]
    assert [(s.path, s.reason) for s in skipped] == [
        (tree / "link.nii.gz", "same file as a"),
        (cohort / "b.nii.gz", "same file as other_again"), (cohort / "b.nii.gz", "same file as other_again")]
    cases, skipped = find_cases([], manifest)  # a manifest listing one image twice runs it once
    assert [c.case_id for c in cases] == ["b"] and [s.reason for s in skipped] == ["same file as b"]


def test_a_folder_that_cannot_be_listed_is_skipped_with_the_os_error(tmp_path, permissions_apply):
    tree = tmp_path / "tree"
    (tree / "locked").mkdir(parents=True)
    (tree / "locked" / "x.nii.gz").write_bytes(b"")
    (tree / "open.nii.gz").write_bytes(b"")
    script = """
import sys
from SpineSegmentationLib.cohort.cases import find_cases
cases, skipped = find_cases([sys.argv[1]])
print([c.case_id for c in cases], [(s.path.name, s.reason) for s in skipped])
"""
    (tree / "locked").chmod(0)
    try:
        proc = subprocess.run([sys.executable, "-c", script, str(tree)], capture_output=True, text=True, timeout=600,
                              preexec_fn=permissions_apply)
    finally:
        (tree / "locked").chmod(0o755)
    assert proc.stdout.strip() == "['open'] [('locked', 'folder cannot be listed (Permission denied)')]", proc.stderr


def test_a_manifest_not_in_utf8_is_a_usage_error_naming_the_line_and_the_fix(tmp_path, capsys):
    manifest = tmp_path / "cases.csv"
    manifest.write_bytes("case_id,image\nJosé,a.nii.gz\n".encode("cp1252"))  # as Excel saves "CSV"
    assert cli_main(["batch", "--manifest", str(manifest), "-o", str(tmp_path / "out")]) == 2
    assert f"manifest {manifest} is not UTF-8 text (line 2: byte 0xe9" in capsys.readouterr().err
    with pytest.raises(SpineSegmentationError, match=r"save it as UTF-8 CSV \(Excel: Save As 'CSV UTF-8"):
        read_manifest(manifest)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", [["--model", "no_such_model"], ["--device", "gpu"]]
                         + ([["--device", "cuda"]] if not torch.cuda.is_available() else []))
def test_a_wrong_model_or_device_stops_before_any_case_and_leaves_the_output_folder(option, cohort, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    write_summary([{"case_id": "earlier", "status": "failed", "error": "x", "vertebrae": []}], out / "summary.csv")
    before = listing(out)
    args = ["batch", str(cohort), "-o", str(out), "--progress", "none", *option]
    assert cli_main(args if "--device" in option else [*args, "--device", "cpu"]) == 2
    assert option[1] in capsys.readouterr().err
    assert listing(out) == before
    assert cli_main([*args, "-o", str(tmp_path / "new")]) == 2 and not (tmp_path / "new").exists()


def test_an_output_folder_that_cannot_be_written_stops_before_any_case(cohort, tmp_path, permissions_apply):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        proc = subprocess.run(batch_command(cohort, "-o", out), capture_output=True, text=True, timeout=600,
                              preexec_fn=permissions_apply)
    finally:
        out.chmod(0o755)
    assert proc.returncode == 2 and f"cannot write into {out}: Permission denied" in proc.stderr, proc.stderr
    assert "failed" not in proc.stdout and list(out.iterdir()) == []


def test_a_full_disk_stops_the_batch_and_keeps_the_finished_cases(local_run, cohort, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(local_run["out"] / "a", out / "a")  # up to date: nothing to write
    before = listing(out)
    proc = subprocess.run(batch_command(cohort, "-o", out), capture_output=True, text=True, timeout=600,
                          preexec_fn=file_size_limit(2000))  # a probe file fits, the outputs of case b do not
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "the disk is full (or a size/quota limit was reached) while writing case b" in proc.stderr
    assert "stopped after 1 of 3 cases" in proc.stderr and "resume" in proc.stderr
    assert "case corrupt" not in proc.stdout  # not run: it would fail only because of the disk
    assert listing(out) == before


def test_local_ray_instance_has_a_whole_gpu_for_a_fractional_request():
    assert local_ray_resources(1, 1, 0.5) == (1, 1)  # was 0 GPUs: the task waited forever
    assert local_ray_resources(2, 0.5, 0.25) == (1, 1)
    assert local_ray_resources(3, 1.5, 0) == (5, 0)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["batch", "x", "-o", "y", "--num-cpus", "0"])
    with pytest.raises(SpineSegmentationError, match="--num-cpus must be above 0"):
        run_batch(["x"], "y", OPTIONS, engine="ray", num_cpus=0)


def test_batch_help_names_every_summary_column_and_qc_flag(capsys):
    with pytest.raises(SystemExit):
        cli_main(["batch", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # the epilog's lines joined
    assert ", ".join(SUMMARY_COLUMNS) in text  # warnings and model too, in summary.csv's order
    assert ", ".join(FLAGS) in text  # warning too, in the QC sheet's order


def test_batch_help_says_what_the_exit_status_and_the_manifest_reference_mean(capsys):
    """``--help`` said the exit status was the failed cases' count and "2 also means a usage error"; a batch stopped
    by an internal error or out of memory exits 1, as one failed case, and Ctrl-C 130 (review 2026-12-07). It said
    nothing of what the manifest's reference does (it is listed, not scored) nor of --progress's default."""
    with pytest.raises(SystemExit):
        cli_main(["batch", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert ("exits 2 for what the user can fix (bad inputs or options, a folder in use, a full disk), 1 for an "
            "internal error or out of memory; 130 after Ctrl-C, 143 after SIGTERM") in text
    assert "reference, a reference label map, is listed in summary.csv, not scored" in text
    assert "or nothing (default: bar)" in text


def test_a_ray_address_with_the_local_engine_is_refused_before_anything_runs(cohort, tmp_path, capsys):
    """``--address`` without ``--engine ray`` ran every case here, the cluster's address silently unused (review
    2026-12-07): a usage error naming the fix, the output folder not made."""
    assert cli_main(["batch", str(cohort), "-o", str(tmp_path / "out"), "--address", "auto", "--device", "cpu",
                     "--progress", "none"]) == 2
    assert ("--address auto is a Ray cluster's, and the local engine runs the cases here; to run them on that "
            "cluster add --engine ray") in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("given", [["--num-cpus", "4"], ["--num-gpus", "1"], ["--num-cpus", "2", "--num-gpus", "0"]])
def test_ray_resources_with_the_local_engine_are_refused_before_anything_runs(given, cohort, tmp_path, capsys):
    """``--num-cpus`` / ``--num-gpus`` without ``--engine ray`` were taken and not used (audit 2026-12-07): the cases
    ran on PyTorch's threads and on --device, whatever was asked. A usage error naming the local engine's own options,
    the output folder not made."""
    out = tmp_path / "out"
    assert cli_main(["batch", str(cohort / "corrupt.nii.gz"), "-o", str(out), *given, "--device", "cpu",
                     "--progress", "none"]) == 2
    err = capsys.readouterr().err
    named = " and ".join(f"{name} {value}" for name, value in zip(given[::2], given[1::2]))
    assert (f"{named} {'are' if len(given) > 2 else 'is'} the resources of each Ray task, and the local engine runs "
            "the cases here, one after the other: give --threads N (CPU threads per case) and --device (cpu, cuda) "
            "for that, or add --engine ray") in err
    assert not out.exists()


def test_gpus_a_local_ray_instance_would_be_told_of_and_not_have_are_refused(cohort, tmp_path):
    """A local Ray instance takes the GPU count it is given: ``--engine ray --num-gpus 1`` on a machine without a GPU
    (or ``--workers 2 --num-gpus 1`` with one) ran the cases on the CPU, unsaid (audit 2026-12-07); and ``--device
    cpu`` held GPUs it did not use. Both are refused before anything runs."""
    out = tmp_path / "out"
    more = torch.cuda.device_count() + 1  # one more GPU than PyTorch finds here (1 on a machine without)
    for workers, num_gpus in ((1, more), (more, 1), (2 * more, 0.5)):
        with pytest.raises(SpineSegmentationError, match=re.escape(
                f"--num-gpus {num_gpus:g} with --workers {workers} asks the local Ray instance for {more} GPU")):
            run_batch([cohort / "corrupt.nii.gz"], out, CaseOptions(device="auto", threads=1), engine="ray",
                      workers=workers, num_gpus=num_gpus, progress=False)
    with pytest.raises(SpineSegmentationError, match="--device cpu runs every case on the CPU, and --num-gpus 1 "):
        run_batch([cohort / "corrupt.nii.gz"], out, OPTIONS, engine="ray", address="auto", num_gpus=1, progress=False)
    assert not out.exists()


def test_a_symlinked_file_names_its_case_by_the_link_given_directly_or_found_in_a_folder(local_run, cohort,
                                                                                           tmp_path):
    """One rule: the link's name (what the user named it). Both ways find the earlier run's case up to date."""
    (tmp_path / "store").mkdir()
    shutil.copyfile(cohort / "a.nii.gz", tmp_path / "store" / "ct_0001.nii.gz")
    links = tmp_path / "links"
    links.mkdir()
    (links / "a.nii.gz").symlink_to(tmp_path / "store" / "ct_0001.nii.gz")
    direct, _ = find_cases([links / "a.nii.gz"])
    found, _ = find_cases([links])
    assert [(c.case_id, c.image) for c in direct] == [(c.case_id, c.image) for c in found] == [
        ("a", links / "a.nii.gz")]
    out = tmp_path / "out"
    shutil.copytree(local_run["out"] / "a", out / "a")  # made from cohort/a.nii.gz: the same name and bytes
    for inputs in ([links / "a.nii.gz"], [links]):
        result = run_batch(inputs, out, OPTIONS, progress=False, report=lambda line: None)
        assert [(r["case_id"], r["resumed"]) for r in result.records] == [("a", True)]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["a"]


def test_the_last_line_counts_what_was_skipped_by_kind(cohort, tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copyfile(cohort / "corrupt.nii.gz", tree / "corrupt.nii.gz")  # fails at once: no network run
    (tree / "again.nii.gz").symlink_to(tree / "corrupt.nii.gz")
    (tree / "old_run").mkdir()
    (tree / "old_run" / "vertebrae.json").write_text("{}")
    lines = []
    run_batch([tree], tmp_path / "out", OPTIONS, progress=False, report=lines.append)
    assert lines[-1].startswith("1 case: 0 done, "), lines
    assert "; skipped: 1 spineseg output folder and 1 repeated file (skipped.csv). Summary:" in lines[-1], lines
    run_batch([tree / "corrupt.nii.gz"], tmp_path / "out", OPTIONS, progress=False, report=lines.append)
    assert "; nothing skipped. Summary:" in lines[-1], lines
    with pytest.raises(SpineSegmentationError, match=r"no case found in the inputs \(1 spineseg output folder "
                                                     r"skipped: a spineseg output folder"):
        find_cases([tree / "old_run"])


# --- fixes of the cohort audit of 2026-12-06, evening ------------------------------------------------------------


def test_a_dicom_folder_given_through_a_symlink_names_its_case_by_the_link(dicom_dir, tmp_path):
    """Given directly, a symlinked DICOM folder's case took its target's name (``example_ct_dicom``), found in a
    folder the link's (``p1``): one series, two case folders, and no resume from one way to the other."""
    links = tmp_path / "links"
    links.mkdir()
    (links / "p1").symlink_to(dicom_dir, target_is_directory=True)
    direct, _ = find_cases([links / "p1"])
    found, _ = find_cases([links])
    assert [(c.case_id, c.image) for c in direct] == [(c.case_id, c.image) for c in found] == [("p1", links / "p1")]


def test_case_ids_differing_only_in_upper_and_lower_case_are_refused(cohort, tmp_path):
    """``A`` and ``a`` are one folder on macOS and Windows: the second case replaced the first one's results."""
    manifest = tmp_path / "cases.csv"
    manifest.write_text(f"case_id,image\nA,{cohort / 'a.nii.gz'}\na,{cohort / 'b.nii.gz'}\n")
    with pytest.raises(SpineSegmentationError, match="two inputs give the case ids 'A' and 'a', one output folder "
                                                     r"where file names ignore upper/lower case \(macOS, Windows\)"):
        find_cases([], manifest)


def test_a_missing_image_fails_its_case_naming_the_fix(tmp_path):
    """A manifest's image that is not there failed with a bare ``FileNotFoundError: [Errno 2] ...``."""
    (tmp_path / "cts").mkdir()
    (tmp_path / "cts" / "gone.nii.gz").symlink_to(tmp_path / "deleted.nii.gz")  # a broken link in a folder input
    manifest = tmp_path / "cases.csv"
    manifest.write_text("case_id,image\nmissing,nowhere/ct.nii.gz\n")
    result = run_batch([tmp_path / "cts"], tmp_path / "out", OPTIONS, manifest=manifest, progress=False,
                       report=lambda line: None)
    errors = {r["case_id"]: r["error"] for r in result.records}
    assert errors == {
        "gone": f"InputImageError: the image {tmp_path / 'cts' / 'gone.nii.gz'} is a symlink to "
                f"{tmp_path / 'deleted.nii.gz'}, which does not exist; correct the path (a manifest's relative paths "
                "are taken from the CSV's folder) or the link, and run the batch again",
        "missing": f"InputImageError: the image {tmp_path / 'nowhere' / 'ct.nii.gz'} does not exist; correct the "
                   "path (a manifest's relative paths are taken from the CSV's folder) or the link, and run the "
                   "batch again"}
    assert {row["error"] for row in read_summary(result.summary)} == set(errors.values())


def test_an_output_edited_in_place_is_not_replaced_when_the_case_runs_again(local_run, cohort, tmp_path):
    """A segmentation corrected and saved over (Slicer saves to the file it loaded) was deleted with the old case
    folder when the case ran again (--force, or a new model or library version)."""
    out = tmp_path / "out"
    shutil.copytree(local_run["out"] / "a", out / "a")
    corrected = (out / "a" / "segmentation.seg.nrrd").read_bytes() + b"\n# corrected by a person\n"
    (out / "a" / "segmentation.seg.nrrd").write_bytes(corrected)
    manifest = tmp_path / "cases.csv"
    manifest.write_text(f"case_id,image\na,{cohort / 'a.nii.gz'}\n")
    forced = CaseOptions(device="cpu", threads=1, dicom_seg=True, force=True)
    (record,) = run_batch([], out, forced, manifest=manifest, progress=False, report=lambda line: None).records
    assert record["status"] == "failed" and "outputs changed since spineseg batch wrote them (segmentation.seg." \
                                            "nrrd; edited" in record["error"] and "move them out" in record["error"]
    assert (out / "a" / "segmentation.seg.nrrd").read_bytes() == corrected
    (resumed,) = run_batch([], out, OPTIONS, manifest=manifest, progress=False, report=lambda line: None).records
    assert resumed["resumed"] and (out / "a" / "segmentation.seg.nrrd").read_bytes() == corrected  # left alone


def test_a_failed_case_line_does_not_run_into_the_progress_bar(cohort, tmp_path, monkeypatch):
    """On a terminal (stdout and stderr on one screen) "case corrupt failed: ..." was written right after the bar,
    on its line: ``...running corrupt]case corrupt failed: ...``."""
    terminal = io.StringIO()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr(sys, "stderr", terminal)
    run_batch([cohort / "corrupt.nii.gz"], tmp_path / "out", OPTIONS, progress=True)
    text = terminal.getvalue()
    assert "cohort:" in text and "case corrupt failed: InputImageError" in text
    assert re.search(r"[^\r\n]case corrupt failed", text) is None, text


def test_two_series_of_a_folder_whose_uids_end_alike_are_two_cases(dicom_dir, tmp_path):
    """Series UIDs that end in the same 8 characters gave one case id twice: the whole batch was refused."""
    folder = tmp_path / "study"
    folder.mkdir()
    for prefix, uid in (("a", "1.2.826.0.1.3680043.100.12345678"), ("b", "1.2.826.0.1.3680043.200.12345678")):
        for path in dicom_source_files(dicom_dir)[:MIN_SERIES_SLICES]:
            ds = pydicom.dcmread(path)
            ds.SeriesInstanceUID = uid
            ds.save_as(folder / f"{prefix}_{path.name}", enforce_file_format=True)
    cases, skipped = find_cases([folder])
    assert [(c.case_id, c.series_uid) for c in cases] == [("study_100.12345678", "1.2.826.0.1.3680043.100.12345678"),
                                                          ("study_200.12345678", "1.2.826.0.1.3680043.200.12345678")]
    assert skipped == []


#: A second process that holds the batch lock on the folder argv[1] until its standard input closes (or it is killed).
HOLD_LOCK = ("import sys\nfrom SpineSegmentationLib.cohort.lock import BatchLock\n"
             "with BatchLock(sys.argv[1]):\n    print('locked', flush=True)\n    sys.stdin.read()\n")


def lock_holder(folder) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "locked\n"
    return holder


def lock_files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name in (LOCK_FILE, OWNER_RECORD))


def test_a_second_batch_into_a_folder_in_use_is_refused_at_once_naming_the_other_run(cohort, tmp_path):
    """Two batches into one folder both ran the same cases and wrote over each other's files (and case.json)."""
    out = tmp_path / "out"
    out.mkdir()
    holder = lock_holder(out)
    try:
        before = listing(out)
        proc = subprocess.run(batch_command(cohort, "-o", out), capture_output=True, text=True, timeout=600)
        with pytest.raises(OutputWriteError) as early:  # before the inputs are searched: this one does not exist
            run_batch([tmp_path / "no_such_ct.nii.gz"], out, OPTIONS, progress=False)
        with pytest.raises(OutputWriteError) as late:  # the file lock itself (a batch that started in between)
            BatchLock(out).acquire()
        after = listing(out)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert proc.returncode == 2 and "case " not in proc.stdout, proc.stderr[-3000:]
    for message in (proc.stderr, str(early.value), str(late.value)):
        assert (f"the output folder {out} is in use by another spineseg batch (pid {holder.pid} on host "
                f"{socket.gethostname()}, started 20") in message, message
        assert "Wait for that batch to finish (or stop it), or choose another output folder with -o" in message
    assert after == before  # nothing written, no case run
    assert holder.returncode == 0 and list(out.iterdir()) == []  # the holder's lock files went with it


def test_the_lock_of_a_killed_batch_is_taken_over_with_a_note(cohort, tmp_path, capfd):
    out = tmp_path / "out"
    out.mkdir()
    holder = lock_holder(out)
    holder.kill()  # SIGKILL: no clean-up, its owner record stays
    holder.wait(timeout=60)
    assert lock_files(out) == [LOCK_FILE, OWNER_RECORD]
    result = run_batch([cohort / "corrupt.nii.gz"], out, OPTIONS, progress=False, report=lambda line: None)
    assert [r["status"] for r in result.records] == ["failed"]
    err = capfd.readouterr().err
    assert (f"took over the lock on {out} left by a batch that is no longer running (pid {holder.pid} on host "
            f"{socket.gethostname()}, started 20") in err, err
    assert lock_files(out) == []


def test_a_lock_of_another_host_is_refused_saying_how_to_remove_it(cohort, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    record = {"pid": os.getpid(), "create_time": 0.0, "host": "node7.cluster.invalid",
              "started": "2026-12-06 08:00:00 UTC", "command": "spineseg batch /shared/cts -o /shared/out"}
    (out / OWNER_RECORD).write_text(json.dumps(record))
    for attempt in (lambda: run_batch([cohort / "corrupt.nii.gz"], out, OPTIONS, progress=False),
                    lambda: BatchLock(out).acquire()):
        with pytest.raises(OutputWriteError) as refused:
            attempt()
        assert str(refused.value) == (
            f"the output folder {out} is locked by a spineseg batch on another host (pid {os.getpid()} on host "
            "node7.cluster.invalid, started 2026-12-06 08:00:00 UTC: spineseg batch /shared/cts -o /shared/out); "
            f"whether it still runs cannot be checked from {socket.gethostname()}. Wait for it to finish, or choose "
            "another output folder with -o; if that batch is over (finished, killed, or its machine went down), "
            f"delete {out / OWNER_RECORD} and run the command again")
        assert sorted(p.name for p in out.iterdir()) == [OWNER_RECORD]  # kept; no case run
    (out / OWNER_RECORD).unlink()  # the fix the message names
    assert run_batch([cohort / "corrupt.nii.gz"], out, OPTIONS, progress=False, report=lambda line: None).failed == 1


def stop_at_the_failed_case(out, seen: list):
    """A ``report`` callback that notes the lock files and raises when the corrupt case's failure is reported."""
    def report(line):
        if "case corrupt failed" in line:
            seen.append(lock_files(out))
            raise RuntimeError("stopped by the report callback")
    return report


def test_the_lock_is_released_after_a_failing_case_and_after_an_exception(cohort, tmp_path):
    out = tmp_path / "out"
    seen = []
    with pytest.raises(RuntimeError, match="stopped by the report callback"):
        run_batch([cohort / "corrupt.nii.gz"], out, OPTIONS, progress=False, report=stop_at_the_failed_case(out, seen))
    assert seen == [[LOCK_FILE, OWNER_RECORD]] and lock_files(out) == []  # held while the case ran, then released
    assert run_batch([cohort / "corrupt.nii.gz"], out, OPTIONS, progress=False, report=lambda line: None).failed == 1
    assert lock_files(out) == []


def test_a_ray_batch_holds_the_lock_in_its_driver_and_releases_it_after_an_exception(cohort, tmp_path):
    out = tmp_path / "out"
    seen, second = [], []

    def report(line):
        if "case corrupt failed" in line:
            second.append(subprocess.run(batch_command(cohort, "-o", out), capture_output=True, text=True,
                                         timeout=600))
        stop(line)

    stop = stop_at_the_failed_case(out, seen)
    with pytest.raises(RuntimeError, match="stopped by the report callback"):
        run_batch([cohort / "corrupt.nii.gz"], out, OPTIONS, engine="ray", workers=1, progress=False, report=report)
    (proc,) = second
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"is in use by another spineseg batch (pid {os.getpid()} on host {socket.gethostname()}" in proc.stderr
    assert seen == [[LOCK_FILE, OWNER_RECORD]] and lock_files(out) == []


def test_a_lock_takeover_whose_note_raises_leaves_no_record_naming_this_live_process(tmp_path):
    """A takeover whose note raises (or Ctrl-C after the record was replaced) left a record naming this process: a
    later batch of this (still running, e.g. Slicer) process into the folder was refused as "in use"."""
    holder = lock_holder(tmp_path)
    holder.kill()  # its owner record stays, naming a process that is gone
    holder.wait(timeout=60)

    def note(line):
        raise RuntimeError("stopped by the note callback")

    with pytest.raises(RuntimeError, match="stopped by the note callback"):
        BatchLock(tmp_path, note=note).acquire()
    assert lock_files(tmp_path) == []
    with BatchLock(tmp_path):
        assert lock_files(tmp_path) == [LOCK_FILE, OWNER_RECORD]
    assert lock_files(tmp_path) == []


def test_ctrl_c_while_the_lock_record_is_written_leaves_no_empty_record(tmp_path, monkeypatch):
    """Ctrl-C between creating the owner record and writing it left an empty record: the next batch was refused,
    "cannot be read". The interrupt cannot be timed to fall there for real; json.dump raises it instead."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(json, "dump", interrupted)
        with pytest.raises(KeyboardInterrupt):
            BatchLock(tmp_path).acquire()
    assert lock_files(tmp_path) == []
    with BatchLock(tmp_path):
        assert json.loads((tmp_path / OWNER_RECORD).read_text())["pid"] == os.getpid()


def test_the_file_lock_is_released_when_the_record_cannot_be_removed(tmp_path, monkeypatch):
    """release() raised on removing the record before it released the file lock. A real failure needs a folder
    that cannot be written, which root can still write into (the user these tests may run as): the removal is made
    to fail here instead."""
    from filelock import FileLock

    lock = BatchLock(tmp_path)
    lock.acquire()
    unlink = type(lock.record_path).unlink

    def failing_unlink(path, *args, **kwargs):
        if path == lock.record_path:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return unlink(path, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(type(lock.record_path), "unlink", failing_unlink)
        with pytest.raises(PermissionError) as failed:
            lock.release()
    assert failed.value.filename == str(tmp_path / OWNER_RECORD)  # the record's error, not another one
    assert lock_files(tmp_path) == [OWNER_RECORD]  # the record stays (taken over once this process has ended)
    probe = FileLock(str(tmp_path / LOCK_FILE), timeout=0)
    probe.acquire()  # raises filelock.Timeout while the file lock is still held
    probe.release()
    lock.release()  # a second call does nothing


# --- the batch audit of 2026-12-07 ----------------------------------------------------------------------------------


def test_a_summary_a_person_changed_is_refused_not_replaced(local_run, cohort, tmp_path):
    """A column of notes added to summary.csv in a spreadsheet was replaced by the next run's (its first line still
    started with the command's header): lost. The command's own unchanged files are still replaced."""
    out = tmp_path / "out"
    shutil.copytree(local_run["out"], out)
    again = run_batch([cohort], out, OPTIONS, progress=False, report=lambda line: None)  # its own files: replaced
    assert [r["resumed"] for r in again.records if r["status"] != "failed"] == [True, True]
    rows = read_summary(out / "summary.csv")
    with open(out / "summary.csv", "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=[*SUMMARY_COLUMNS, "my_notes"])
        writer.writeheader()
        writer.writerows({**row, "my_notes": "L6? ask JS"} for row in rows)
    edited = listing(out)
    for attempt in (lambda: run_batch([cohort], out, OPTIONS, progress=False, report=lambda line: None),
                    lambda: run_batch([cohort], out, CaseOptions(device="cpu", threads=1, dicom_seg=True, force=True),
                                      progress=False, report=lambda line: None)):
        with pytest.raises(OutputExistsError) as refused:
            attempt()
        assert str(refused.value) == (
            f"{out / 'summary.csv'} was changed since spineseg batch wrote it (e.g. notes added or a cell edited in a "
            "spreadsheet) and would be replaced by this run's; move it away (or save your copy under another name) "
            "and run again")
        assert listing(out) == edited  # nothing run, nothing written
    (out / "summary.csv").rename(tmp_path / "summary_with_notes.csv")  # the fix the message names
    run_batch([cohort], out, OPTIONS, progress=False, report=lambda line: None)
    assert without_run_columns(read_summary(out / "summary.csv")) == without_run_columns(rows)


@pytest.mark.parametrize("case_id", [".", "..", ".scan", "summary.csv", "Cohort_QC.html", "skipped.csv",
                                     "PATIENT_" + "x" * 219])
def test_a_case_id_that_cannot_name_its_case_folder_is_refused_before_any_case(case_id, cohort, tmp_path):
    """Case id '.' failed its case telling the user to move the output folder itself away; 'summary.csv' ran every
    case and then stopped without a summary ('Is a directory', 'choose another output folder'); an id of 227 bytes
    (a series deep in a DICOM tree) failed every such case with 'OSError: File name too long' after the search."""
    manifest = tmp_path / "cases.csv"
    manifest.write_text(f"case_id,image\nok,{cohort / 'corrupt.nii.gz'}\n{case_id},{cohort / 'a.nii.gz'}\n")
    out = tmp_path / "out"
    with pytest.raises(SpineSegmentationError) as refused:
        run_batch([], out, OPTIONS, manifest=manifest, progress=False, report=lambda line: None)
    assert str(refused.value).startswith(f"the case id '{case_id}' (of {cohort / 'a.nii.gz'}) ")
    fix = "a shorter case_id" if len(case_id) > 200 else ("a case_id that starts with a letter or digit and is not "
                                                          "one of those names")
    assert str(refused.value).endswith(f"give the case {fix} (in a --manifest, or by renaming the file)")
    assert not out.exists()


def test_a_manifest_row_of_a_dicom_folder_also_given_as_input_is_one_case(dicom_dir, tmp_path):
    """A manifest row naming a DICOM folder (no series_uid) that an input folder also holds was a second case of the
    same scan: segmented twice, listed twice in summary.csv (a repeated NIfTI file was one case)."""
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "series").symlink_to(dicom_dir, target_is_directory=True)
    manifest = tmp_path / "cases.csv"
    manifest.write_text(f"case_id,image\npatient7,{dicom_dir}\n")
    cases, skipped = find_cases([tmp_path / "tree"], manifest)
    assert [c.case_id for c in cases] == ["series"]
    assert [(s.path, s.reason, s.kind) for s in skipped] == [
        (dicom_dir, "same file as series", "repeated DICOM series")]


def test_a_manifest_is_read_as_meant_or_refused_naming_the_problem(cohort, tmp_path):
    """'case_id, image' (a space after the comma) was refused with "has columns ['case_id', ' image']"; semicolons
    (a European spreadsheet) were not named; an unquoted comma in a path cut the path short silently (the extra
    field was dropped) and the case failed as a missing file; a blank line shifted the line numbers of errors."""
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"Case_ID, Image\na, {cohort / 'a.nii.gz'}\n")
    assert [(c.case_id, c.image) for c in read_manifest(manifest)] == [("a", cohort / "a.nii.gz")]
    # empty fields past the header's columns (a spreadsheet's trailing commas) are no extra field (review 2026-12-07)
    manifest.write_text(f"case_id,image\na,{cohort / 'a.nii.gz'},,\n")
    assert [(c.case_id, c.image) for c in read_manifest(manifest)] == [("a", cohort / "a.nii.gz")]
    manifest.write_text(f"case_id;image\na;{cohort / 'a.nii.gz'}\n")
    with pytest.raises(SpineSegmentationError, match="its columns are separated by semicolons, not commas; save it "
                                                     "as CSV with commas"):
        read_manifest(manifest)
    manifest.write_text("case_id,image\n\na,a.nii.gz\nsmith,scans/smith, john.nii.gz\n")
    with pytest.raises(SpineSegmentationError) as refused:
        read_manifest(manifest)
    assert str(refused.value) == (
        f"manifest {manifest}, line 4: more fields than the header's 2 columns (extra: ' john.nii.gz'); put a name "
        'or path that holds a comma in double quotes ("...") or name the extra column in the header')
    manifest.write_text('case_id,image\n\na,a.nii.gz\nsmith,"scans/smith, john.nii.gz"\n,b.nii.gz\n')
    with pytest.raises(SpineSegmentationError, match=f"manifest {re.escape(str(manifest))}, line 5: case_id and "
                                                     "image must not be empty"):
        read_manifest(manifest)


def test_a_case_whose_dicom_seg_cannot_be_made_fails_saying_why_and_that_its_outputs_are_not_kept(
        dicom_dir, tmp_path, monkeypatch):
    """``write_outputs`` keeps the five outputs when the DICOM SEG cannot be made and says they are complete in the
    folder it wrote; in a batch that folder is the case's temporary one, removed with the failed case (a batch's
    folders hold finished cases only). The case's error said the outputs were complete in a folder that no longer
    existed; it says they are not kept, and why the SEG was not made."""
    monkeypatch.setitem(sys.modules, "highdicom", None)  # as on Python 3.9: import highdicom fails
    (tmp_path / "out").mkdir()
    record = run_case(Case("slab", dicom_dir, None), tmp_path / "out", OPTIONS)
    assert record["status"] == "failed"
    assert "segmentation.dcm was not written: writing a DICOM SEG needs highdicom" in record["error"]
    assert "other outputs are not kept" in record["error"] and "complete in" not in record["error"]
    assert os.listdir(tmp_path / "out") == []  # neither the case folder nor its temporary one


def test_a_batch_whose_cases_need_a_dicom_seg_that_cannot_be_written_stops_before_any_case(
        dicom_dir, cohort, tmp_path, monkeypatch):
    """Without highdicom (Python 3.9: Slicer 5.6/5.8's) every DICOM series case ran to the end and then failed, its
    outputs not kept (review 2026-12-07): the batch is refused before any case runs, and the output folder is not
    made. NIfTI cases without --dicom-seg need no SEG and run."""
    finished = run_batch([dicom_dir], tmp_path / "done", CaseOptions(device="cpu", threads=1), progress=False)
    assert finished.failed == 0
    monkeypatch.setitem(sys.modules, "highdicom", None)  # as on Python 3.9: import highdicom fails
    with pytest.raises(SpineSegmentationError, match=r"1 of the 1 cases to run needs a DICOM SEG \(a DICOM series "
                                                     r"case always gets one, .*needs highdicom.*; run the batch with a "
                                                     r"Python where highdicom can be installed"):
        run_batch([dicom_dir], tmp_path / "out", CaseOptions(device="cpu", threads=1), progress=False)
    with pytest.raises(SpineSegmentationError, match=r"3 of the 3 cases to run need a DICOM SEG \(--dicom-seg asks"
                                                     r".*run the batch without --dicom-seg, or with"):
        run_batch([cohort], tmp_path / "out", OPTIONS, progress=False)
    assert not (tmp_path / "out").exists()
    # a batch whose DICOM case is finished, with its SEG, resumed here: nothing to write a SEG for (review)
    resumed = run_batch([dicom_dir], tmp_path / "done", CaseOptions(device="cpu", threads=1), progress=False)
    assert [r["resumed"] for r in resumed.records] == [True]


def test_finished_record_is_public_and_tells_a_finished_case_folder_from_others(tmp_path):
    """``finished_record`` (public: ``batch`` uses it to tell which DICOM cases still need a SEG) returns the record
    of a folder whose case.json says done/no_spine with warnings and whose outputs are all there, else None."""
    folder = tmp_path / "case"
    assert finished_record(folder, False) is None  # no folder
    folder.mkdir()
    record = {"case_id": "case", "status": "done", "warnings": [], "fingerprint": None}
    (folder / CASE_RECORD).write_text(json.dumps(record), encoding="utf-8")
    assert finished_record(folder, False) is None  # no outputs yet
    for name in OUTPUT_FILES.values():
        (folder / name).write_bytes(b"")
    assert finished_record(folder, False) == record
    assert finished_record(folder, True) is None  # done, a SEG asked for and none there
    (folder / DICOM_SEG_FILE).write_bytes(b"")
    assert finished_record(folder, True) == record
    for changed in ({**record, "status": "failed"}, {k: v for k, v in record.items() if k != "warnings"}, [record]):
        (folder / CASE_RECORD).write_text(json.dumps(changed), encoding="utf-8")
        assert finished_record(folder, False) is None
    (folder / CASE_RECORD).write_text('{"status": "done", ', encoding="utf-8")  # damaged: run again, not an error
    assert finished_record(folder, False) is None


@pytest.mark.parametrize("given, named", [
    ({"num_cpus": 4}, "--num-cpus 4 is the resources of each Ray task"),
    ({"num_gpus": 1}, "--num-gpus 1 is the resources of each Ray task"),
    ({"num_cpus": 2, "num_gpus": 0}, "--num-cpus 2 and --num-gpus 0 are the resources of each Ray task"),
    ({"workers": 2}, "the local engine runs one case at a time; for several at once use --engine ray --workers 2"),
    ({"address": "auto"}, "--address auto is a Ray cluster's, and the local engine runs the cases here")])
def test_ray_settings_given_to_run_batch_with_the_local_engine_are_refused_as_by_the_command(given, named, cohort,
                                                                                             tmp_path):
    """``run_batch(engine="local", num_cpus=4)`` (or num_gpus, workers, address) ran the cases here as if they had not
    been given, while ``spineseg batch`` refused them (audit 2026-12-07): one check serves both now."""
    out = tmp_path / "out"
    with pytest.raises(SpineSegmentationError, match=re.escape(named)):
        run_batch([cohort / "corrupt.nii.gz"], out, OPTIONS, engine="local", progress=False, **given)
    assert not out.exists()


def test_a_ray_task_given_no_gpu_runs_its_case_on_the_cpu_and_a_gpu_device_without_gpus_is_refused(cohort,
                                                                                                   tmp_path):
    """Ray (2.60 here; since ray-project/ray#62492) sets CUDA_VISIBLE_DEVICES only for a task it gives GPUs: a task
    of ``--num-gpus 0`` sees every GPU of its node, and with ``--device auto`` ran its case on the first one, which Ray
    did not count as used (several cases at once on it; audit 2026-12-07). Such a task runs its case on the CPU;
    ``--device cuda`` with no GPU per task is refused before anything runs."""
    auto = CaseOptions(device="auto", threads=1)
    assert ray_task_options(auto, 0) == CaseOptions(device="cpu", threads=1)
    assert ray_task_options(auto, 0.5) == auto  # given a GPU: auto is that GPU (Ray makes only it visible)
    assert ray_task_options(CaseOptions(device="cuda"), 1) == CaseOptions(device="cuda")
    out = tmp_path / "out"
    for device in ("cuda", " CUDA:0"):
        for address in (None, "auto"):  # a local Ray instance, and a cluster (whose devices are not checked here)
            with pytest.raises(SpineSegmentationError, match=re.escape(
                    f"--device {device} runs every case on a GPU, and each Ray task is given none (--num-gpus 0): Ray "
                    "would not count the GPU as used and run several cases on it at once. Leave --num-gpus out")):
                run_batch([cohort / "corrupt.nii.gz"], out, CaseOptions(device=device, threads=1), engine="ray",
                          address=address, num_gpus=0, progress=False)
    assert not out.exists()


def test_cuda_n_in_a_ray_task_is_a_gpu_of_the_task_and_refused_beyond_them():
    """``--device cuda:0 --num-gpus 1`` was refused as "names a GPU of this machine" (review 2026-12-07), though in a
    task cuda:0 is the task's own GPU (Ray numbers a task's GPUs from 0). Accepted for N below the task's GPUs."""
    for device, num_gpus in (("cuda:0", 1), ("cuda:0", 0.5), ("cuda:1", 2), ("CUDA:1", 1.5)):
        assert ray_task_options(CaseOptions(device=device), num_gpus) == CaseOptions(device=device)
    for device, num_gpus, sees in (
            ("cuda:1", 1, "sees 1 GPU, its own, numbered from 0 in the task (cuda:0)"),
            ("cuda:2", 2, "sees 2 GPUs, its own, numbered from 0 in the task (cuda:0 to cuda:1)"),
            ("cuda:x", 1, "sees 1 GPU")):
        with pytest.raises(SpineSegmentationError, match=re.escape(
                f"--device {device}: a Ray task of --num-gpus {num_gpus:g} {sees}")) as caught:
            ray_task_options(CaseOptions(device=device), num_gpus)
        assert "give --device cuda (the task's GPU) or auto" in str(caught.value)


def test_ray_tasks_get_a_share_of_the_gpus_there_are_unless_num_gpus_is_given():
    """With ``--engine ray`` and no --num-gpus, every case ran on the CPU, GPUs or not (review 2026-12-07: the
    default command got much slower on GPU machines). Without --num-gpus each task gets a share of the GPUs found
    (a local instance) or 1 (a cluster with GPUs), said in a line; 0 and the CPU where there are none."""
    for gpus, workers, share in ((1, 1, 1), (1, 2, 0.5), (1, 3, 0.3333), (2, 3, 0.5), (2, 5, 0.3333), (4, 2, 1),
                                 (8, 8, 1), (3, 7, 0.3333)):
        got, note = ray_gpus_per_task(None, "auto", gpus, workers=workers)
        assert got == share, (gpus, workers)
        assert local_ray_resources(workers, 1, got)[1] <= gpus  # the local instance is told of no more than are here
        assert note == (f"each Ray task is given {share:g} GPU (PyTorch finds {gpus} GPU{'s' if gpus > 1 else ''} "
                        f"here for --workers {workers}; --num-gpus not given): give --num-gpus to choose another "
                        "share, or --num-gpus 0 to run the cases on the CPU")
    assert ray_gpus_per_task(None, "cuda", 1, workers=2)[0] == 0.5
    assert ray_gpus_per_task(None, "auto", 0, workers=2) == (
        0, "PyTorch finds no GPU here, so each Ray task is given none and its case runs on the CPU")
    assert ray_gpus_per_task(None, "auto", 8, cluster=True) == (
        1, "each Ray task is given 1 GPU (the Ray cluster has 8 GPUs; --num-gpus not given): give --num-gpus to "
           "choose another share, or --num-gpus 0 to run the cases on the CPU")
    assert ray_gpus_per_task(None, "auto", 0, cluster=True) == (
        0, "the Ray cluster has no GPU, so each Ray task is given none and its case runs on the CPU")
    assert ray_gpus_per_task(0, "auto", 8, cluster=True) == (0, "")  # --num-gpus 0 given: the CPU, unsaid
    assert ray_gpus_per_task(0.25, "auto", 0) == (0.25, "")  # given: kept (checked by check_local_ray_gpus)
    assert ray_gpus_per_task(None, " CPU", 4) == (0, "")
    for cluster, where in ((False, "PyTorch finds no GPU here"), (True, "the Ray cluster has no GPU")):
        with pytest.raises(SpineSegmentationError, match=re.escape(
                f"--device cuda runs every case on a GPU, and {where}: give --device cpu or auto")):
            ray_gpus_per_task(None, "cuda", 0, cluster=cluster)


def test_the_ray_engine_without_num_gpus_runs_on_the_gpus_found_here_and_says_so(cohort, tmp_path):
    """The default share, end to end on a local Ray instance: the line says the GPUs found by PyTorch here (none on a
    machine without: the CPU), and the case runs."""
    lines = []
    result = run_batch([cohort / "corrupt.nii.gz"], tmp_path / "out", CaseOptions(device="auto", threads=1),
                       engine="ray", progress=False, report=lines.append)
    assert result.failed == 1  # the cut-short file: the case ran, and failed as it does here
    found = torch.cuda.device_count()
    expected = ray_gpus_per_task(None, "auto", found)[1]
    assert expected and expected in lines, lines


def test_ray_is_ended_when_the_batch_fails_after_it_started(cohort, tmp_path):
    """Ray is started before the output folder is made (an unreachable cluster leaves no folder behind); an output
    folder that cannot then be made (a file in its place) must not leave the local Ray instance running in this
    process (a later batch here would be refused as "Ray is already started")."""
    import ray

    out = tmp_path / "out"
    out.write_text("a file of the user's where the output folder would be\n", encoding="utf-8")
    try:
        with pytest.raises(OutputWriteError, match=re.escape(str(out))):
            run_batch([cohort / "corrupt.nii.gz"], out, OPTIONS, engine="ray", progress=False)
        assert not ray.is_initialized()
    finally:
        ray.shutdown()  # nothing where the batch ended it; else the next tests would find Ray started
    assert out.read_text(encoding="utf-8") == "a file of the user's where the output folder would be\n"


def test_a_local_ray_device_error_comes_before_the_inputs_are_searched(tmp_path):
    """On a local Ray instance without --num-gpus the GPUs of each task are known from the GPUs PyTorch finds here:
    a device that does not go with them (``--device cuda`` without a GPU here, ``cuda:N`` beyond the task's GPU) was
    refused only after the inputs were searched (minutes on a large DICOM tree; review 2026-12-07). Refused first
    now (the missing input below is not reached), the message saying the share was decided, not given."""
    found = torch.cuda.device_count()
    device = "cuda" if found == 0 else f"cuda:{found}"
    expected = ("--device cuda runs every case on a GPU, and PyTorch finds no GPU here" if found == 0 else
                f"--device {device}: a Ray task given 1 GPU (the default share, --num-gpus not given) sees 1 GPU")
    with pytest.raises(SpineSegmentationError, match=re.escape(expected)):
        run_batch([tmp_path / "no such scan.nii.gz"], tmp_path / "out", CaseOptions(device=device, threads=1),
                  engine="ray", workers=1, progress=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(SpineSegmentationError, match=re.escape(
            "--device cuda:1: a Ray task given 1 GPU (the default share, --num-gpus not given) sees 1 GPU, its own")):
        ray_task_options(CaseOptions(device="cuda:1"), 1, default_share=True)
    with pytest.raises(SpineSegmentationError, match=re.escape(
            "--device cuda:2: a Ray task given 0.5 GPUs (the default share, --num-gpus not given) sees 1 GPU")):
        ray_task_options(CaseOptions(device="cuda:2"), 0.5, default_share=True)


def test_an_unreachable_ray_cluster_leaves_no_output_folder(cohort, tmp_path, capsys):
    """``spineseg batch ... --engine ray --address auto`` with no cluster exited 2 "cannot connect" and left the
    output folder it had made, empty (review 2026-12-07): Ray connects before the folder is made."""
    out = tmp_path / "out"
    with pytest.raises(SpineSegmentationError, match="cannot connect to the Ray cluster at 'auto'"):  # none here
        run_batch([cohort / "corrupt.nii.gz"], out, CaseOptions(device="auto", threads=1), engine="ray",
                  address="auto", progress=False)
    assert not out.exists()
    assert cli_main(["batch", str(cohort / "corrupt.nii.gz"), "-o", str(out), "--engine", "ray", "--address", "auto",
                     "--progress", "none"]) == 2
    assert "cannot connect to the Ray cluster at 'auto'" in capsys.readouterr().err
    assert not out.exists()


def test_workers_with_the_address_of_a_ray_cluster_are_refused_before_anything_runs(cohort, tmp_path, capsys):
    """``--workers`` sizes a local Ray instance; with ``--address`` it was ignored (audit 2026-12-07): the cluster ran
    as many cases at once as its resources allowed, whatever was asked. Refused, naming the options that apply."""
    out = tmp_path / "out"
    message = ("--workers 4 is the size of a local Ray instance, and with --address auto the cases run on that "
               "cluster, as many at once as its free resources allow: leave --workers out, and set what each case "
               "takes with --num-cpus and --num-gpus")
    with pytest.raises(SpineSegmentationError, match=re.escape(message)):
        run_batch([cohort / "corrupt.nii.gz"], out, OPTIONS, engine="ray", address="auto", workers=4, progress=False)
    assert cli_main(["batch", str(cohort / "corrupt.nii.gz"), "-o", str(out), "--engine", "ray", "--address", "auto",
                     "--workers", "4", "--device", "cpu", "--progress", "none"]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_ray_missing_or_already_started_is_refused_before_the_output_folder_is_touched(monkeypatch, cohort, tmp_path):
    """Ray missing was said only once the output folder was made and locked; Ray started before in the process (a
    notebook's ray.init) gave Ray's RuntimeError "Maybe you called ray.init twice by accident? ... passing in
    'ignore_reinit_error=True'", an option the caller cannot pass (audit 2026-12-07)."""
    import ray

    out = tmp_path / "out"
    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR")
    try:
        with pytest.raises(SpineSegmentationError, match=re.escape(
                "Ray is already started in this process (ray.init was called), and the Ray engine starts (or connects "
                "to) its own Ray and ends it when the batch is over: call ray.shutdown() first")):
            run_batch([cohort / "corrupt.nii.gz"], out, OPTIONS, engine="ray", progress=False)
        assert ray.is_initialized()  # the caller's Ray is left as it was
    finally:
        ray.shutdown()
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail as when it is not installed
    with pytest.raises(SpineSegmentationError, match=r"needs Ray.*pip install \"\.\[cohort\]\""):
        run_batch([cohort / "corrupt.nii.gz"], out, OPTIONS, engine="ray", progress=False)
    assert not out.exists()
