"""``spineseg-correct`` as a person meets it outside Slicer: options given twice, result folders a person edited or
damaged, output folders that would replace what a step starts from.

The result folder is a real ``spineseg segment`` run on the TPTBox crop (three vertebrae, about 10 s on a CPU).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from SpineSegmentationLib.correction_cli import _labels_list, build_parser, main


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def tptbox_result(tptbox_ct, tmp_path_factory) -> Path:
    """Output folder of ``spineseg segment`` on the TPTBox crop (T12, L1, L2 as labelled by the shipped model)."""
    from SpineSegmentationLib.cli import main as spineseg

    out = tmp_path_factory.mktemp("segment") / "tp"
    assert spineseg(["segment", str(tptbox_ct), "-o", str(out), "--device", "cpu", "--progress", "none"]) == 0
    return out


def _copy(result: Path, folder: Path, labels=None) -> Path:
    """A copy of ``result``; ``labels(array) -> array`` changes its labels.nii.gz (as a person editing it would)."""
    shutil.copytree(result, folder)
    if labels is not None:
        image = sitk.ReadImage(str(folder / "labels.nii.gz"))
        edited = sitk.GetImageFromArray(labels(sitk.GetArrayFromImage(image)))
        edited.CopyInformation(image)
        sitk.WriteImage(edited, str(folder / "labels.nii.gz"))
    return folder


def test_a_list_option_given_twice_keeps_every_value():
    """``--stated T12 --stated L2`` states both levels (argparse kept the last one: T12 was dropped without a word,
    and so were the first --redo, --edited, --complete and --incomplete)."""
    click = build_parser().parse_args(["click", "ct.nii.gz", "--point", "0", "0", "0", "--existing", "l.nii.gz",
                                       "--stated", "T12", "--stated", "L2", "--edited", "19", "--edited", "L2",
                                       "--complete", "T12", "--complete", "L2", "--incomplete", "L1",
                                       "--incomplete", "20"])
    assert _labels_list(click.stated) == [19, 21]
    assert _labels_list(click.edited) == [19, 21]
    assert _labels_list(click.complete) == [19, 21]
    assert _labels_list(click.incomplete) == [20, 20]
    rerun = build_parser().parse_args(["rerun", "ct.nii.gz", "--labels", "l.nii.gz", "--redo", "T12", "--redo", "L2",
                                       "--stated", "L1"])
    assert _labels_list(rerun.redo) == [19, 21]
    assert _labels_list(rerun.stated) == [20]
    assert _labels_list(rerun.edited) == []


def _swap_t12_l2(array):
    return np.select([array == 19, array == 21], [21, 19], array).astype(array.dtype)


@pytest.mark.parametrize("case, labels, fragment", [
    ("a vertebra erased", lambda a: np.where(a == 21, 0, a).astype(a.dtype),
     "vertebrae.json lists L2, which labels.nii.gz does not hold"),
    ("labels swapped", _swap_t12_l2, "the voxels of T12, L2 in labels.nii.gz lie where vertebrae.json records another"),
    ("a label renamed", lambda a: np.where(a == 21, 22, a).astype(a.dtype),
     "labels.nii.gz holds labels [22], which vertebrae.json does not list"),
])
@pytest.mark.parametrize("command", [["renumber", "--vertebra", "L1", "--level", "L2"],
                                     ["complete", "--vertebra", "L1"], ["alternatives", "--apply", "1"]])
def test_a_result_folder_whose_label_map_does_not_match_its_vertebrae_json_is_refused(
        tptbox_ct, tptbox_result, tmp_path, capsys, case, labels, fragment, command):
    """A labels.nii.gz a person edited after the run no longer matches vertebrae.json: renumbering, a completeness
    flag or an alternative wrote, with exit status 0, a vertebrae.json that does not describe the label map it wrote
    (an erased L2 still listed as a vertebra; swapped labels named from the other vertebra's entry), or refused with a
    message about merging segments or result.vertebrae that named neither the problem nor the fix."""
    folder = _copy(tptbox_result, tmp_path / "edited", labels)
    before = _digest(folder)
    out = tmp_path / "out"
    code = main([command[0], str(tptbox_ct), "--result", str(folder), "-o", str(out), *command[1:]])
    err = capsys.readouterr().err
    assert code == 2, case
    assert f"{folder / 'labels.nii.gz'} does not match {folder / 'vertebrae.json'}" in err
    assert fragment in err
    assert "spineseg-correct rerun INPUT --labels" in err  # the way on from an edited label map
    assert "Traceback" not in err and not out.exists()
    assert _digest(folder) == before


def test_a_label_map_saved_as_floating_point_is_read_as_its_whole_numbers(tptbox_ct, tptbox_result, tmp_path, capsys):
    """A labels.nii.gz another program saved as float32 (same whole numbers) ended renumbering in an internal error
    (IndexError, exit status 1); it is read as the label map it is."""
    folder = _copy(tptbox_result, tmp_path / "float", lambda a: a.astype(np.float32))
    out = tmp_path / "out"
    assert main(["renumber", str(tptbox_ct), "--result", str(folder), "--vertebra", "L1", "--level", "L2",
                 "-o", str(out)]) == 0
    written = sitk.ReadImage(str(out / "labels.nii.gz"))
    original = sitk.GetArrayFromImage(sitk.ReadImage(str(tptbox_result / "labels.nii.gz")))
    assert np.array_equal(sitk.GetArrayFromImage(written), np.select([original == v for v in (19, 20, 21)],
                                                                     [20, 21, 22], original))
    folder = _copy(tptbox_result, tmp_path / "fraction", lambda a: a.astype(np.float32) + 0.5 * (a == 19))
    assert main(["complete", str(tptbox_ct), "--result", str(folder), "--vertebra", "L1", "-o",
                 str(tmp_path / "out2")]) == 2
    assert "holds values that are not whole numbers" in capsys.readouterr().err


@pytest.mark.parametrize("case, damage, fragment", [
    ("truncated", lambda text: text[:200], "cannot read {path} ("),
    ("not UTF-8", lambda text: "\udcff", "cannot read {path} ('utf-8' codec can't decode"),
    ("alternative without likelihood",
     lambda text: json.dumps({**json.loads(text), "alternatives": [{"labels": [19, 20, 21]}]}),
     "{path} is damaged (KeyError: 'likelihood'"),
])
def test_a_damaged_vertebrae_json_is_named_with_the_fix(tptbox_ct, tptbox_result, tmp_path, capsys, case, damage,
                                                        fragment):
    """A damaged vertebrae.json was reported as "Expecting value: line 2 column 1 (char 16)" (no file, no fix) or as
    an internal error (KeyError, exit status 1); the error names the file and says to restore it."""
    folder = _copy(tptbox_result, tmp_path / "damaged")
    path = folder / "vertebrae.json"
    path.write_bytes(damage(path.read_text(encoding="utf-8")).encode("utf-8", "surrogateescape"))
    for command in (["renumber", "--vertebra", "L1", "--level", "L2"], ["alternatives"]):
        code = main([command[0], str(tptbox_ct), "--result", str(folder), "-o", str(tmp_path / "out"), *command[1:]])
        err = capsys.readouterr().err
        assert code == 2, case
        assert fragment.format(path=path) in err and err.count("restore it from the run that wrote it") == 1
        assert "Traceback" not in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("command, option", [(["click", "--point", "-25.07", "-175.23", "-66.05"], "--existing"),
                                             (["rerun", "--redo", "L1"], "--labels")])
def test_click_and_rerun_never_replace_the_label_map_they_start_from(tptbox_ct, tptbox_result, tmp_path, capsys,
                                                                     command, option):
    """Given the output folder they start from as -o (or as the default output folder, <CT>_spineseg, where
    ``spineseg segment`` writes), a click or re-run with --overwrite replaced the result and the label map it started
    from, as the steps without network refuse to: the step could not be undone or compared. Refused before any
    work, as a label map file inside that folder is; another -o writes."""
    ct = tmp_path / "ct.nii.gz"
    shutil.copy(tptbox_ct, ct)
    start = _copy(tptbox_result, tmp_path / "ct_spineseg", lambda a: np.where(a == 20, 0, a).astype(a.dtype))
    before = _digest(start)
    for labels, output in ((start, ["-o", str(start)]), (start / "labels.nii.gz", ["-o", str(start)]),
                           (start, [])):
        code = main([command[0], str(ct), option, str(labels), *output, "--overwrite", "--progress", "none",
                     "--device", "cpu", *command[1:]])
        err = capsys.readouterr().err
        assert code == 2
        assert f"holds {start / 'labels.nii.gz'}, the label map this command starts from ({option})" in err
        assert f"-o {tmp_path / 'ct_spineseg_corrected'}" in err
        assert _digest(start) == before


def test_alternatives_of_a_result_without_vertebrae_say_so(tptbox_ct, tptbox_result, tmp_path, capsys):
    """Listing the alternatives of a result that holds no vertebra printed nothing at all (exit status 0)."""
    folder = _copy(tptbox_result, tmp_path / "empty", lambda a: np.zeros_like(a))
    document = json.loads((folder / "vertebrae.json").read_text(encoding="utf-8"))
    (folder / "vertebrae.json").write_text(json.dumps({**document, "vertebrae": [], "alternatives": []}),
                                           encoding="utf-8")
    assert main(["alternatives", str(tptbox_ct), "--result", str(folder)]) == 0
    assert "has no labelling alternatives (it holds no vertebra)" in capsys.readouterr().out


@pytest.mark.parametrize("level", ["sacrum", "26", "0", "27", "99"])
def test_renumber_to_a_level_outside_the_column_names_the_levels_to_give(tptbox_ct, tptbox_result, tmp_path, capsys,
                                                                         level):
    """``--level sacrum`` (which the list of names in the error for an unknown name offers) or a number that is no
    level ended in "VerSe label 26 (S) has no position on the C1..L5 scale", which names no fix."""
    out = tmp_path / "out"
    assert main(["renumber", str(tptbox_ct), "--result", str(tptbox_result), "--vertebra", "L1", "--level", level,
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--level {level} is not a level of the column; give one of C1-C7, T1-T13, L1-L6" in err
    assert not out.exists()


def test_overwrite_says_that_it_deleted_an_earlier_dicom_seg(tptbox_ct, tptbox_result, tmp_path, capsys):
    """``renumber -o FOLDER --overwrite`` into a folder holding an earlier result's segmentation.dcm, from a result
    without one: the SEG would not match the new outputs and is deleted, and the command says so (it said nothing);
    the person's other files stay."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "segmentation.dcm").write_bytes(b"an earlier DICOM SEG")
    (out / "notes.txt").write_text("the person's notes")
    argv = ["renumber", str(tptbox_ct), "--result", str(tptbox_result), "--vertebra", "L1", "--level", "L3",
            "-o", str(out), "--overwrite"]
    assert main(argv) == 0
    assert (f"spineseg-correct: removed {out / 'segmentation.dcm'}: the DICOM SEG of an earlier result, which this "
            "run replaces by none (--dicom-seg writes one)") in capsys.readouterr().err
    assert not (out / "segmentation.dcm").exists()
    assert (out / "notes.txt").read_text() == "the person's notes"
