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
    assert "holds label values that are no whole numbers (19.5)" in capsys.readouterr().err


def test_a_result_label_map_is_read_by_the_whole_number_rule_of_every_label_map(tptbox_ct, tptbox_result, tmp_path,
                                                                                 capsys):
    """``--result``'s labels.nii.gz had its own whole-number rule (exactly whole, int16), unlike ``--labels`` and
    evaluate (anatomy.whole_labels: within 0.001, rounded): a map saved as floats a hair off its labels (18.9999 for
    T12, as a float resampling leaves them) was refused as "not whole numbers" (before 2026-12-07). Read as its labels
    now; a map with fractions is refused naming the values, the likely cause and the fix, and that it is not the map
    spineseg wrote."""
    original = sitk.GetArrayFromImage(sitk.ReadImage(str(tptbox_result / "labels.nii.gz")))
    folder = _copy(tptbox_result, tmp_path / "hair", lambda a: np.where(a > 0, a - 1e-4, 0).astype(np.float32))
    out = tmp_path / "out"
    assert main(["complete", str(tptbox_ct), "--result", str(folder), "--vertebra", "L1", "--incomplete",
                 "-o", str(out)]) == 0, capsys.readouterr().err
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labels.nii.gz"))), original)
    assert {v["label"]: v["complete"] for v in json.loads((out / "vertebrae.json").read_text())["vertebrae"]}[20] \
        is False
    folder = _copy(tptbox_result, tmp_path / "linear", lambda a: a.astype(np.float32) + 0.5 * (a == 19))
    assert main(["complete", str(tptbox_ct), "--result", str(folder), "--vertebra", "L1", "-o",
                 str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err
    assert (f"{folder / 'labels.nii.gz'} holds label values that are no whole numbers (19.5) in " in err
            and "it was probably resampled with linear interpolation; it is not the label map spineseg wrote; "
                "restore it from the run that wrote it" in err)
    # the diagnosis and the one fix that applies to spineseg's own output: not also "resample the original again"
    assert "nearest-neighbour" not in err and "resample the original" not in err
    assert not (tmp_path / "out2").exists()


def test_a_result_label_map_beyond_int16_is_refused_and_nothing_is_written(tptbox_ct, tptbox_result, tmp_path,
                                                                           capsys):
    """``--result``'s labels.nii.gz is stored as int16, as spineseg writes it: a floating-point map holding a whole
    number beyond int16's range (40000.0 in one voxel) would wrap to another label (-25536) in the cast; it is
    refused (exit status 2) naming the value, the range and that the map is not spineseg's, and no output folder is
    written. The TPTBox crop's real result."""
    folder = _copy(tptbox_result, tmp_path / "wide", lambda a: np.where(np.arange(a.size).reshape(a.shape) == 0,
                                                                        40000.0, a).astype(np.float32))
    out = tmp_path / "out"
    assert main(["complete", str(tptbox_ct), "--result", str(folder), "--vertebra", "L1", "--incomplete",
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert (f"{folder / 'labels.nii.gz'} holds the value 40000, beyond int16's range (-32768..32767) and every VerSe "
            "label (1-28); it is not the label map spineseg wrote; restore it from the run that wrote it") in err
    assert not out.exists()


def test_a_float_label_map_is_read_as_whole_numbers_before_its_labels_are_named(tptbox_ct, tptbox_labels,
                                                                                tmp_path, capsys):
    """``--complete`` / ``--incomplete`` name vertebrae of the ``--labels`` map, whose labels were taken with
    ``int()`` before the map was checked: a map saved as floats (22.9999 for L4) held "22", so ``--complete L4`` was
    refused as not in it; a map with 21.5 held "21", so ``--complete 21`` passed and the map was refused later
    without its file, values or a fix. Now it is read as its whole numbers first, or refused naming all three."""
    from argparse import Namespace

    from SpineSegmentationLib.correction_cli import _statements

    reference = sitk.ReadImage(str(tptbox_labels))
    array = sitk.GetArrayFromImage(reference)  # L2, L3, L4 = 21, 22, 23

    def saved(name: str, values: np.ndarray) -> Path:
        image = sitk.GetImageFromArray(values.astype(np.float32))
        image.CopyInformation(reference)
        sitk.WriteImage(image, str(tmp_path / name))
        return tmp_path / name

    near = saved("near.nii.gz", np.where(array > 0, array - 1e-4, 0))
    flags = Namespace(complete="L4", incomplete="L2", stated="", edited="")
    label_map, flagged, _, _ = _statements(flags, str(near), "--labels")
    assert flagged == {23: True, 21: False}
    assert np.array_equal(sitk.GetArrayFromImage(label_map), array)
    half = saved("half.nii.gz", array + 0.5 * (array == 21))
    out = tmp_path / "out"
    assert main(["rerun", str(tptbox_ct), "--labels", str(half), "--complete", "21", "-o", str(out), "--device", "cpu",
                 "--progress", "none"]) == 2
    err = capsys.readouterr().err
    assert f"the label map {half} (--labels) holds label values that are no whole numbers (21.5) in " in err
    assert "resample the original map again with nearest-neighbour interpolation" in err
    assert "Traceback" not in err and not out.exists()


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
    for command in (["renumber", "--vertebra", "L1", "--level", "L2", "-o", str(tmp_path / "out")],
                    ["alternatives"]):
        code = main([command[0], str(tptbox_ct), "--result", str(folder), *command[1:]])
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


def _another_scan(ct: Path, path: Path) -> Path:
    """The CT ``ct`` moved by 10 slices along its third axis, on the same grid (as another scan of the same size,
    spacing and position would be), written to ``path``."""
    image = sitk.ReadImage(str(ct))
    moved = sitk.GetImageFromArray(np.roll(sitk.GetArrayFromImage(image), 10, axis=0))
    moved.CopyInformation(image)
    sitk.WriteImage(moved, str(path))
    return path


#: Every command that starts from a result folder, with its options (the network commands refuse before the run).
FROM_A_FOLDER = {
    "renumber": ["renumber", "--result", "{folder}", "--vertebra", "L1", "--level", "L2"],
    "complete": ["complete", "--result", "{folder}", "--vertebra", "L1", "--incomplete"],
    "alternatives": ["alternatives", "--result", "{folder}", "--apply", "1"],
    "rerun": ["rerun", "--labels", "{folder}", "--redo", "L1", "--device", "cpu", "--progress", "none"],
    "click": ["click", "--existing", "{folder}", "--point", "0", "0", "0", "--device", "cpu", "--progress", "none"],
}


def _from_folder(command: str, ct: Path, folder: Path, out: Path) -> list[str]:
    name, *options = FROM_A_FOLDER[command]
    return [name, str(ct), *[o.format(folder=folder) for o in options], "-o", str(out)]


@pytest.mark.parametrize("command", list(FROM_A_FOLDER))
@pytest.mark.parametrize("given", ["another scan on the same grid", "the result's own label map"])
def test_a_ct_that_is_not_the_results_is_refused(tptbox_ct, tptbox_result, tmp_path, capsys, command, given):
    """The CT was checked against a result folder by its grid only: another scan of the same size, spacing and
    position, or the result's own labels.nii.gz given as the CT, was accepted: the steps without network wrote a
    result (its QC picture, DICOM SEG and vertebrae.json) for the wrong image, and rerun / click ran the network on
    the other scan with the folder's vertebrae as memory (a silent wrong result). vertebrae.json now records a
    digest of its CT's voxels; both are refused before any work, naming the CT, the folder's vertebrae.json and the
    CT to give."""
    folder = _copy(tptbox_result, tmp_path / "result")
    ct = (_another_scan(tptbox_ct, tmp_path / "other.nii.gz") if given == "another scan on the same grid"
          else folder / "labels.nii.gz")
    before = _digest(folder)
    out = tmp_path / "out"
    code = main(_from_folder(command, ct, folder, out))
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{ct} is not the CT the result in {folder}" in err
    assert f"give the CT it was made from ({tptbox_ct.resolve()})" in err
    if given == "another scan on the same grid":
        assert "its voxel values differ from those its vertebrae.json records (input.voxel_sha256)" in err
        assert "or segment this CT anew (spineseg segment)" in err
        assert err.count(str(ct)) == 1, err  # before: three times in about 600 characters
        without_check = (f"give {FROM_A_FOLDER[command][1]} {folder / 'labels.nii.gz'} (the file, not the folder) "
                         "to start from its label map without this check")
        assert (without_check in err) == (command in ("rerun", "click")), err
    else:
        assert "The image looks like a label map, not a CT" in err
    assert "Traceback" not in err and (not out.exists() or not any(out.iterdir()))
    assert _digest(folder) == before


def test_a_result_written_before_the_ct_digest_is_accepted_with_a_note(tptbox_ct, tptbox_result, tmp_path, capsys):
    """A vertebrae.json written by an older spineseg records no digest of its CT: its result is still corrected (a
    note says that the CT was checked by its grid and the kind of its values only), and its label map given as the
    CT is still refused."""
    folder = _copy(tptbox_result, tmp_path / "older")
    document = json.loads((folder / "vertebrae.json").read_text(encoding="utf-8"))
    del document["input"]["voxel_sha256"]
    (folder / "vertebrae.json").write_text(json.dumps(document), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["renumber", str(tptbox_ct), "--result", str(folder), "--vertebra", "L1", "--level", "L2",
                 "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert (f"note: {folder / 'vertebrae.json'} records no digest of its CT's voxels (written by an older spineseg), "
            f"so {tptbox_ct} is checked against it by its grid and the kind of its values only") in err
    written = json.loads((out / "vertebrae.json").read_text(encoding="utf-8"))
    assert written["input"]["voxel_sha256"] == document_digest(tptbox_result)  # the new folder records it
    code = main(["renumber", str(folder / "labels.nii.gz"), "--result", str(folder), "--vertebra", "L1", "--level",
                 "L2", "-o", str(tmp_path / "out2")])
    assert code == 2 and "The image looks like a label map, not a CT" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()


def document_digest(folder: Path) -> str:
    return json.loads((folder / "vertebrae.json").read_text(encoding="utf-8"))["input"]["voxel_sha256"]


@pytest.mark.parametrize("options", [["-o", "{out}"], ["--overwrite"], ["--dicom-seg"],
                                     ["-o", "{out}", "--overwrite"]])
def test_alternatives_without_apply_refuse_the_options_of_a_written_result(tptbox_ct, tptbox_result, tmp_path, capsys,
                                                                           options):
    """``alternatives -o OUT`` without ``--apply`` listed the alternatives, wrote nothing and said nothing of -o (nor
    of --overwrite or --dicom-seg): a person expecting a folder found none. Listing writes nothing (README: only the
    applied alternative is written to -o): refused, naming the options and how to write one."""
    out = tmp_path / "out"
    given = [o.format(out=out) for o in options]
    assert main(["alternatives", str(tptbox_ct), "--result", str(tptbox_result), *given]) == 2
    printed = capsys.readouterr()
    named = ", ".join(o for o in given if o.startswith("-"))
    assert f"{named} without --apply: listing the alternatives writes nothing" in printed.err
    where = out if "-o" in given else "OUTDIR"
    assert f"then write one with --apply N (its index in the list) -o {where}" in printed.err
    assert printed.out == "" and not out.exists()


@pytest.mark.parametrize("vertebra, level", [("L 1", "L 2"), ("l1 ", " l 2"), ("20", " 2 1"), ("L\t1", "21")])
def test_vertebra_and_level_take_white_space_as_label_lists_do(tptbox_ct, tptbox_result, tmp_path, vertebra, level):
    """``--vertebra "L 1"`` / ``--level "L 2"`` were refused ("unknown vertebra level 'L 1'") where a label list
    (``--stated "T12, L 2"``) takes the same text: white space anywhere in a name or number is ignored in both."""
    out = tmp_path / "out"
    assert main(["renumber", str(tptbox_ct), "--result", str(tptbox_result), "--vertebra", vertebra, "--level", level,
                 "-o", str(out)]) == 0
    names = [v["name"] for v in json.loads((out / "vertebrae.json").read_text(encoding="utf-8"))["vertebrae"]]
    assert names == ["L1", "L2", "L3"]  # T12, L1, L2 of the run, L1 stated as L2
    assert main(["complete", str(tptbox_ct), "--result", str(out), "--vertebra", level, "--incomplete",
                 "-o", str(tmp_path / "flagged")]) == 0
    assert _labels_list(f"T12,{vertebra}") == [19, 20]


def test_an_unknown_vertebra_or_level_names_its_option(tptbox_ct, tptbox_result, tmp_path, capsys):
    for option, value in (("--vertebra", "Q1"), ("--level", "L 9")):
        argv = {"--vertebra": "L1", "--level": "L2", option: value}
        assert main(["renumber", str(tptbox_ct), "--result", str(tptbox_result), "-o", str(tmp_path / "out"),
                     *[x for item in argv.items() for x in item]]) == 2
        assert (f"{option} {value!r} is neither a level (C1-C7, T1-T13, L1-L6) nor a VerSe number"
                in capsys.readouterr().err)


def _with_input(folder: Path, **fields) -> Path:
    """``folder`` with its vertebrae.json's ``input`` block changed (``None``: the field removed)."""
    document = json.loads((folder / "vertebrae.json").read_text(encoding="utf-8"))
    for name, value in fields.items():
        document["input"][name] = value
    (folder / "vertebrae.json").write_text(json.dumps(document), encoding="utf-8")
    return folder


def test_a_recorded_ct_that_is_no_longer_there_is_said_so(tptbox_ct, tptbox_result, tmp_path, capsys):
    """A Slicer result records its temporary input (/tmp/SpineSegmentation-*/input.nrrd), deleted after the run:
    the refusal said "give the CT it was made from (/tmp/...)" as if that file could be given."""
    gone = tmp_path / "SpineSegmentation-x1" / "input.nrrd"
    folder = _with_input(_copy(tptbox_result, tmp_path / "from_slicer"), path=str(gone))
    other = _another_scan(tptbox_ct, tmp_path / "other.nii.gz")
    assert main(_from_folder("renumber", other, folder, tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert (f"give the CT it was made from where it is now (its vertebrae.json records {gone}, which is no longer "
            "there)") in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("recorded", ["", "0" * 63, "G" * 64, 5, ["a"]])
def test_a_recorded_digest_that_is_not_one_is_a_damaged_vertebrae_json(tptbox_ct, tptbox_result, tmp_path, capsys,
                                                                       recorded):
    """Before: a string that is no digest ("") was compared with the CT's and refused as "its voxel values
    differ" (the CT blamed for a damaged file)."""
    folder = _with_input(_copy(tptbox_result, tmp_path / "damaged"), voxel_sha256=recorded)
    assert main(_from_folder("renumber", tptbox_ct, folder, tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert (f"{folder / 'vertebrae.json'} is damaged (its input.voxel_sha256 is {recorded!r}, not a SHA-256 digest "
            "of 64 hexadecimal digits); restore it from the run that wrote it") in err, err
    assert "voxel values differ" not in err and not (tmp_path / "out").exists()


def test_the_folders_label_map_given_as_a_file_goes_on_from_a_changed_ct(tptbox_ct, tptbox_result, tmp_path, capsys):
    """The way forward the refusal names for a CT whose voxels changed on purpose (here: a corner blanked, as
    defacing does) is real: rerun --labels FOLDER/labels.nii.gz runs and writes a result."""
    image = sitk.ReadImage(str(tptbox_ct))
    values = sitk.GetArrayFromImage(image)
    values[:5, :5, :5] = -1000
    changed = sitk.GetImageFromArray(values)
    changed.CopyInformation(image)
    defaced = tmp_path / "defaced.nii.gz"
    sitk.WriteImage(changed, str(defaced))
    out = tmp_path / "out"
    assert main(_from_folder("rerun", defaced, tptbox_result, out)) == 2
    assert f"give --labels {tptbox_result / 'labels.nii.gz'} (the file, not the folder)" in capsys.readouterr().err
    assert main(["rerun", str(defaced), "--labels", str(tptbox_result / "labels.nii.gz"), "--redo", "L1",
                 "--device", "cpu", "--progress", "none", "-o", str(out)]) == 0
    assert (out / "labels.nii.gz").is_file()


def test_a_result_folder_that_is_not_there_or_is_a_file_is_named_with_the_folder_to_give(tptbox_ct, tptbox_result,
                                                                                         tmp_path, capsys):
    """``--result`` a folder that is not there ended in ".../labels.nii.gz is missing", and the result's
    vertebrae.json given for its folder in "vertebrae.json/labels.nii.gz is missing" (review 2026-12-07)."""
    for command in (["renumber", "--vertebra", "L1", "--level", "L2"], ["complete", "--vertebra", "L1"],
                    ["alternatives"]):
        document = tptbox_result / "vertebrae.json"
        for given, said in ((tmp_path / "nowhere", f"--result {tmp_path / 'nowhere'} does not exist; give the "
                                                   "output folder of spineseg"),
                            (document, f"--result {document} is a file; give the output folder that holds the result "
                                       f"(labels.nii.gz and vertebrae.json), e.g. --result {tptbox_result}")):
            out = ["-o", str(tmp_path / "out")] if command[0] != "alternatives" else []
            assert main([command[0], str(tptbox_ct), "--result", str(given), *command[1:], *out]) == 2
            err = capsys.readouterr().err
            assert said in err and "labels.nii.gz is missing" not in err, err
            assert not (tmp_path / "out").exists()


def test_renumber_of_a_number_that_is_no_vertebra_of_the_result_lists_those_present(tptbox_ct, tptbox_result,
                                                                                    tmp_path, capsys):
    """``--vertebra 99`` was refused as "not a vertebra of the column: the sacrum takes no part in renumbering", a
    reason about the sacrum for a number that is no level at all (review 2026-12-07); now as ``--vertebra C3``:
    the vertebrae the result holds. The sacrum (26) keeps its own reason."""
    for vertebra, said in (("99", "no vertebra with label 99 in this result; present: T12 (19), L1 (20), L2 (21)"),
                           ("C3", "no vertebra with label 3 in this result; present: T12 (19), L1 (20), L2 (21)"),
                           ("26", "the sacrum takes no part in renumbering; state the level of a vertebra instead")):
        assert main(["renumber", str(tptbox_ct), "--result", str(tptbox_result), "--vertebra", vertebra, "--level",
                     "L2", "-o", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert said in err, err
        assert vertebra == "26" or "sacrum" not in err
    assert not (tmp_path / "out").exists()


def test_a_label_map_that_is_not_there_is_named_by_its_option(tptbox_ct, tmp_path, capsys):
    """``click --existing`` / ``rerun --labels`` a path that is not there was refused after the CT was read, as
    "Input image '...' does not exist": the CT seemed missing (review 2026-12-07). Now before any work, naming the
    option."""
    missing = tmp_path / "nowhere.nii.gz"
    for option, command in (("--existing", ["click", "--point", "0", "0", "0", "--existing", str(missing)]),
                            ("--labels", ["rerun", "--labels", str(missing), "--redo", "L1"])):
        assert main([command[0], str(tptbox_ct), *command[1:], "--device", "cpu", "--progress", "none",
                     "-o", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert f"{option} {missing} does not exist; give a label map on the CT's grid" in err, err
        assert "Input image" not in err and not (tmp_path / "out").exists()


def test_a_ct_on_another_grid_than_the_results_is_refused_naming_the_drift(tptbox_ct, tptbox_result, tmp_path,
                                                                           capsys):
    """The CT with its origin moved by 1 mm along each axis (more than a quarter voxel): refused as not the CT the
    result was made from, as before; the message said only "its size, spacing, origin or direction differ". It names
    both grids and how far the CT's voxel centres lie from the result's, in voxels (review 2026-12-07)."""
    folder = _copy(tptbox_result, tmp_path / "result")
    image = sitk.ReadImage(str(tptbox_ct))
    image.SetOrigin([v + 1.0 for v in image.GetOrigin()])
    ct = tmp_path / "moved.nii.gz"
    sitk.WriteImage(image, str(ct))
    code = main(_from_folder("renumber", ct, folder, tmp_path / "out"))
    err = capsys.readouterr().err
    assert code == 2, err
    drift = 1.0 / min(image.GetSpacing())
    assert f"{ct} is not the CT the result in {folder} (--result) was made from: not on the grid of its label " in err
    assert (f"; its voxel centres lie up to {drift:.3g} voxel from the result's of the same index (at most 0.25 voxel "
            "is taken)); give that CT") in err, err
    assert f"origin ({', '.join(f'{v:.6g}' for v in image.GetOrigin())}) mm LPS" in err, err
