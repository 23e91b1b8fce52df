"""Correction of a spineseg result: segment from a point (click), re-run keeping edits (rerun), renumber, list or
apply alternative labellings (alternatives), flag completeness (complete); also run as
python -m SpineSegmentationLib.correction_cli.

The 3D Slicer module runs these in a child process, as it runs ``cli segment`` (same ``--progress json`` lines,
same output folder: ``labels.nii.gz``, ``segmentation.seg.nrrd``, ``vertebrae.json``, ...)::

    click INPUT --point R A S [--existing LABELS] [--edited 22,23] [--stated 21] [--directions up,down] -o OUTDIR
    rerun INPUT --labels LABELS --edited 22 [--redo 23,24] [--stated 21] [--complete 20] [--incomplete 24] -o OUTDIR

``LABELS`` is a label map on the CT's grid (VerSe numbers), or an output folder (its ``labels.nii.gz``). An output
folder passes on what its ``vertebrae.json`` records a person did (``edited``, ``level_stated``, ``complete_stated``),
so a chain of steps needs no ``--edited`` / ``--stated`` again (``--redo`` wins over a recorded edit), and a folder
that holds ``segmentation.dcm`` gets one in the new folder too, as with ``--dicom-seg``.
Points are RAS millimetres (as Slicer shows them). A list option given more than once adds up (``--stated T12
--stated L2`` = ``--stated T12,L2``). ``-o`` (or the default output folder) is never the folder whose
``labels.nii.gz`` the step starts from, also with ``--overwrite``.
``--stated`` names the vertebrae whose level a person stated (renumbering, an applied alternative: ``level_stated``
in ``vertebrae.json``): the new result keeps those levels. ``--complete`` / ``--incomplete`` (both commands) name
the vertebrae whose completeness flag a person set (``complete`` below): the new result keeps those flags.
The steps without network work on an output folder ``RESULT`` of any of these commands (or ``cli segment``) and
write a new folder (``RESULT`` itself is never changed)::

    renumber INPUT --result RESULT --vertebra 23 --level L5 -o OUTDIR
    alternatives INPUT --result RESULT [--apply N -o OUTDIR]
    complete INPUT --result RESULT --vertebra 18 --incomplete -o OUTDIR

A ``RESULT`` whose ``labels.nii.gz`` no longer matches its ``vertebrae.json`` (a person edited one: other labels,
labels swapped) is refused; ``rerun --labels`` goes on from an edited label map. ``INPUT`` must be the CT an output
folder (``RESULT``, or ``LABELS`` as a folder) was made from: another grid, a label map, or voxel values other than
those its ``vertebrae.json`` records (``input.voxel_sha256``; a folder written before that field existed is checked
by its grid and the kind of its values, with a note) are refused. ``alternatives`` without ``--apply`` writes
nothing and refuses ``-o``, ``--overwrite`` and ``--dicom-seg``. In Python these are
:mod:`SpineSegmentationLib.renumbering` (no torch needed).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Optional

from .cli import (OVERWRITE_HELP, add_debug, add_exit_with_parent, earlier_dicom_seg, run_and_write, run_cli,
                  say_removed_dicom_seg)


def _labels_list(text: Optional[str]) -> list[int]:
    """ "22,L4" -> [22, 23]; "" or None -> []."""
    if not text:
        return []
    try:
        return [_level_or_label(v) for v in "".join(text.split()).split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated VerSe labels or levels such as 22,23 or L3,L4, got {text!r}") from None


class _JoinLists(argparse.Action):
    """A list option given more than once (``--stated T12 --stated L2``) means all of its values, joined with commas
    (argparse's default keeps the last one only: a statement would be lost without a word)."""

    def __call__(self, parser, namespace, values, option_string=None):
        before = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, f"{before},{values}" if before else values)


#: Default output folder of a command without network: the ``--result`` folder's name with this suffix, beside it.
CORRECTED_SUFFIX = "_corrected"


def _run(args: argparse.Namespace, compute) -> int:
    result, output_dir, _ = run_and_write(args, compute, prog="spineseg-correct")
    if args.progress != "json":
        print(result.message)
        print(f"outputs in {output_dir}")
    return 0


def _write(args: argparse.Namespace, result, image) -> int:
    """Write the corrected result of a command without network (``--result`` folder in, ``-o`` folder out).

    ``segmentation.dcm`` is written when ``--dicom-seg`` asks for it or the ``--result`` folder holds one (for a
    DICOM series input it always is).

    Raises:
        ValueError: ``-o`` is the ``--result`` folder (which these commands never change), the CT is not the
            result's (another grid, a label map, other voxels: :func:`_check_ct`), or as
            :func:`~SpineSegmentationLib.outputs.check_outputs_free`.
    """
    from .outputs import check_outputs_free, write_outputs
    from .outputs.dicom_seg import DICOM_SEG_FILE

    input_path = Path(args.input)
    source = Path(args.result).resolve()  # "." has no name to add the suffix to
    corrected = source.with_name(source.name + CORRECTED_SUFFIX)
    output_dir = Path(args.output) if args.output else corrected
    if output_dir.resolve() == source:
        raise ValueError(f"-o {output_dir} is the result folder this command starts from (--result), which it never "
                         f"changes; write the corrected result to another folder, e.g. -o {corrected}")
    _check_ct(image, input_path, result.labels, source, "--result")
    check_outputs_free(output_dir, overwrite=args.overwrite, input_path=input_path)
    earlier = earlier_dicom_seg(output_dir, args.overwrite)
    # a DICOM SEG of the result (written on request for a non-DICOM input) is written again with the new levels
    dicom_seg = args.dicom_seg or (source / DICOM_SEG_FILE).is_file()
    written = write_outputs(result, image, output_dir, overwrite=args.overwrite, input_path=input_path,
                            dicom_seg=dicom_seg)
    say_removed_dicom_seg(earlier, written, "spineseg-correct", dicom_seg)
    print(result.message)
    print(f"outputs in {output_dir}")
    return 0


def read_result(folder: Path):
    """A :class:`~SpineSegmentationLib.result.SpineSegmentationResult` from an output folder (labels.nii.gz and
    vertebrae.json).

    Raises:
        ValueError: ``folder`` does not exist or is a file (e.g. its ``vertebrae.json``: the message names the folder
            that holds it), the folder lacks either file, vertebrae.json is damaged or not this project's,
            labels.nii.gz holds values that are not whole numbers, or the two files do not match (one was edited or
            replaced: other labels, or a vertebra's voxels away from the centroid vertebrae.json records for it).
    """
    from .io import read_image
    from .outputs import output_paths
    from .result import LabelingAlternative, SpineSegmentationResult

    folder = Path(folder)
    if not folder.exists():
        raise ValueError(f"--result {folder} does not exist; give the output folder of spineseg (or spineseg-correct) "
                         "that holds the result's labels.nii.gz and vertebrae.json")
    if not folder.is_dir():
        raise ValueError(f"--result {folder} is a file; give the output folder that holds the result "
                         f"(labels.nii.gz and vertebrae.json), e.g. --result {folder.parent}")
    paths = output_paths(folder)
    for key in ("labels", "vertebrae"):
        if not paths[key].is_file():
            raise ValueError(f"{paths[key]} is missing; --result must be an output folder of spineseg")
    document, vertebrae = _read_vertebrae(paths["vertebrae"])
    try:
        alternatives = [LabelingAlternative(labels=[int(v) for v in a["labels"]], likelihood=float(a["likelihood"]),
                                            description=str(a.get("description", "")))
                        for a in document.get("alternatives", [])]
        run_info, message = dict(document.get("run", {})), str(document.get("message", ""))
    except (KeyError, TypeError, ValueError) as exc:  # a damaged or hand-edited file: named, not an internal error
        raise ValueError(f"{paths['vertebrae']} is damaged ({type(exc).__name__}: {exc} in its 'alternatives' or "
                         "'run'); restore it from the run that wrote it") from exc
    labels = _integer_labels(read_image(paths["labels"]), paths["labels"])
    _check_matches(paths, labels, vertebrae)
    return SpineSegmentationResult(labels=labels, vertebrae=vertebrae, alternatives=alternatives, run_info=run_info,
                                   message=message)


def _check_ct(image, input_path: Path, labels, folder: Path, option: str) -> None:
    """Refuse a CT ``image`` (read from ``input_path``) that is not the one the result in the output folder
    ``folder`` (given with ``option``; ``labels``: its label map) was made from: one on another grid than
    ``labels``, one that is no CT (a label map, e.g. the result's own ``labels.nii.gz``:
    :func:`~SpineSegmentationLib.validation.check_intensities`, which every segmented CT passed), or one whose voxel
    values differ from those the folder's ``vertebrae.json`` records (``input.voxel_sha256``: another scan on the
    same grid). A ``vertebrae.json`` written before that field existed records none: a note on stderr says that
    the CT is then checked by its grid and the kind of its values only.

    Raises:
        ValueError: naming the CT, the folder and the fix: the CT the folder records (or that the file it records
            is no longer there); for ``--labels`` / ``--existing`` (``rerun``, ``click``) also that the folder's
            ``labels.nii.gz`` given as a file starts from its label map without this check. A recorded
            ``voxel_sha256`` that is not a SHA-256 digest (64 hexadecimal digits): the ``vertebrae.json`` is damaged.
    """
    from .errors import InputImageError
    from .geometry import image_grid_mismatch, same_grid
    from .outputs import output_paths
    from .outputs.vertebrae_json import voxel_sha256
    from .validation import check_intensities

    if not same_grid(image, labels):  # the drift in the label map's voxels, as the message gives it
        differs = image_grid_mismatch(image, labels, "the result's")
        raise ValueError(f"{input_path} is not the CT the result in {folder} ({option}) was made from: not on the grid "
                         f"of its label map ({differs}); give that CT")
    paths = output_paths(folder)
    path = paths["vertebrae"]
    document, _ = _read_vertebrae(path)
    recorded_input = document.get("input")
    recorded_input = recorded_input if isinstance(recorded_input, dict) else {}
    made_from = recorded_input.get("path")
    if not isinstance(made_from, str):
        give = "give the CT it was made from"
    elif Path(made_from).exists():
        give = f"give the CT it was made from ({made_from})"
    else:  # e.g. the temporary input.nrrd of a result written by the Slicer module
        give = (f"give the CT it was made from where it is now (its vertebrae.json records {made_from}, which is no "
                "longer there)")
    try:
        check_intensities(image)
    except InputImageError as exc:
        raise ValueError(f"{input_path} is not the CT the result in {folder} ({option}) was made from: {exc} For "
                         f"this result, {give}") from exc
    recorded = recorded_input.get("voxel_sha256")
    if recorded is None:
        print(f"note: {path} records no digest of its CT's voxels (written by an older spineseg), so {input_path} "
              "is checked against it by its grid and the kind of its values only; make sure it is the CT that result "
              "was made from",
              file=sys.stderr)
        return
    if not isinstance(recorded, str) or not re.fullmatch(r"[0-9a-f]{64}", recorded):
        raise ValueError(f"{path} is damaged (its input.voxel_sha256 is {recorded!r}, not a SHA-256 digest of 64 "
                         "hexadecimal digits); restore it from the run that wrote it")
    if voxel_sha256(image) != recorded:
        without_check = ""
        if option in ("--labels", "--existing"):  # a label map file records no CT: rerun / click take it unchecked
            without_check = (
                f" If it is that CT with its voxels changed on purpose (anonymised, defaced, converted), give "
                f"{option} {paths['labels']} (the file, not the folder) to start from its label map without this "
                "check; what the folder records a person stated (edited vertebrae, levels, completeness) is then "
                "not passed on: give it again (--edited, --stated, --complete, --incomplete).")
        raise ValueError(f"{input_path} is not the CT the result in {folder} ({option}) was made from: its voxel "
                         "values differ from those its vertebrae.json records (input.voxel_sha256) on the same grid "
                         f"(another scan, or the CT changed since); {give}, or segment this CT anew (spineseg "
                         f"segment).{without_check}")


def _read_vertebrae(path: Path):
    """``(document, vertebrae)`` of a ``vertebrae.json``.

    Raises:
        ValueError: the file is not JSON (damaged, truncated, not UTF-8) or not this project's; the message names
            the file.
    """
    from .outputs.vertebrae_json import read_vertebrae_json
    from .renumbering import vertebrae_from_document

    document = read_vertebrae_json(path)  # a damaged file: its message names the file and the fix
    try:
        return document, vertebrae_from_document(document)
    except (ValueError, TypeError, AttributeError) as exc:  # entries not objects, fields missing
        raise ValueError(f"cannot read {path} ({exc}): the file is damaged or not a vertebrae.json of spineseg; "
                         "restore it from the run that wrote it") from exc


def _integer_labels(labels, path: Path):
    """``labels`` with an integer pixel type: a map saved as floating point (by another program) is read as its whole
    numbers by the rule every label map reader follows (:func:`~SpineSegmentationLib.anatomy.whole_labels`: values
    within 0.001 of them rounded, 20.9999 is 21) and stored as int16, as spineseg writes ``labels.nii.gz``.

    Raises:
        InputImageError (a ValueError): values that are no whole numbers (named with the likely cause,
            :func:`~SpineSegmentationLib.anatomy.whole_labels`) or whole numbers beyond int16's range; the message
            says the map is not the one spineseg wrote and to restore it (not how to repair it: it is spineseg's
            output, not a map the user made).
    """
    import numpy as np
    import SimpleITK as sitk

    from .anatomy import whole_labels
    from .errors import InputImageError

    array = sitk.GetArrayViewFromImage(labels)
    if np.issubdtype(array.dtype, np.integer):
        return labels
    restore = "it is not the label map spineseg wrote; restore it from the run that wrote it"
    whole = whole_labels(array, str(path), fix=restore)
    bounds = np.iinfo(np.int16)
    if whole.size and (whole.min() < bounds.min or whole.max() > bounds.max):
        value = whole.max() if whole.max() > bounds.max else whole.min()
        raise InputImageError(f"{path} holds the value {value}, beyond int16's range ({bounds.min}..{bounds.max}) "
                              f"and every VerSe label (1-28); {restore}")
    out = sitk.GetImageFromArray(whole.astype(np.int16))
    out.CopyInformation(labels)
    return out


def _check_matches(paths: dict, labels, vertebrae) -> None:
    """Refuse a ``labels.nii.gz`` that is not the label map its ``vertebrae.json`` describes (a person edited or
    replaced one of them): the same labels in both, each vertebra's voxels nearer its own recorded centroid than any
    other vertebra's (labels swapped). Without this check a correction would write a result whose list of
    vertebrae does not describe its label map.

    Raises:
        ValueError: naming the difference, with the fix.
    """
    import numpy as np

    from .geometry import label_measurements, ras_to_lps

    measured = label_measurements(labels)  # {label: (voxels, centroid LPS mm)}
    recorded = {int(v.label): ras_to_lps(np.asarray(v.centroid_ras_mm, dtype=float)) for v in vertebrae}
    names = {int(v.label): v.name for v in vertebrae}
    problems = []
    only_map = sorted(set(measured) - set(recorded))
    if only_map:
        problems.append(f"labels.nii.gz holds labels {only_map}, which vertebrae.json does not list")
    only_listed = sorted(set(recorded) - set(measured))
    if only_listed:
        problems.append(f"vertebrae.json lists {', '.join(names[v] for v in only_listed)}, which labels.nii.gz does "
                        "not hold")
    moved = [names[label] for label in sorted(set(measured) & set(recorded))
             if min(recorded, key=lambda other: float(np.linalg.norm(recorded[other] - measured[label][1]))) != label]
    if moved:
        problems.append(f"the voxels of {', '.join(moved)} in labels.nii.gz lie where vertebrae.json records another "
                        "vertebra (labels swapped or renamed)")
    if problems:
        raise ValueError(f"{paths['labels']} does not match {paths['vertebrae']}: {'; '.join(problems)}. One of them "
                         "was changed after spineseg wrote them: restore both from the run that wrote them, or go on "
                         "from the edited label map with spineseg-correct rerun INPUT --labels "
                         f"{paths['labels']} --edited LABELS -o OUTDIR, which labels it again")


def _level_or_label(text: str) -> int:
    """ "L4", "l 4", " 23 " -> 23: a level's name or a VerSe number, white space anywhere in it ignored (as in a
    label list, :func:`_labels_list`).

    Raises:
        ValueError: not a level's name or a number.
    """
    from .anatomy import verse_label

    text = "".join(text.split())
    return int(text) if text.isdigit() else verse_label(text)


def _option_label(text: str, option: str) -> int:
    """:func:`_level_or_label` of the value of ``option`` (``--vertebra``, ``--level``).

    Raises:
        ValueError: naming the option and the names and numbers it takes.
    """
    try:
        return _level_or_label(text)
    except ValueError:
        raise ValueError(f"{option} {text!r} is neither a level (C1-C7, T1-T13, L1-L6) nor a VerSe number, e.g. "
                         "L4 or 23") from None


def cmd_renumber(args: argparse.Namespace) -> int:
    from .anatomy import is_column_vertebra
    from .io import read_image
    from .renumbering import renumber

    level = _option_label(args.level, "--level")
    if not is_column_vertebra(level):  # the sacrum, 0, 27, 29...: the library's message names no fix
        raise ValueError(f"--level {args.level} is not a level of the column; give one of C1-C7, T1-T13, L1-L6 "
                         "(or its VerSe number, 1-25 or 28)")
    result = renumber(read_result(Path(args.result)), _option_label(args.vertebra, "--vertebra"), level)
    return _write(args, result, read_image(Path(args.input)))


def cmd_alternatives(args: argparse.Namespace) -> int:
    from .io import read_image
    from .renumbering import apply_alternative, labeling_alternatives

    if args.apply is None:  # listing writes nothing: an option for the output would be dropped without a word
        given = [option for option, value in (("-o", args.output), ("--overwrite", args.overwrite),
                                              ("--dicom-seg", args.dicom_seg)) if value]
        if given:
            raise ValueError(f"{', '.join(given)} without --apply: listing the alternatives writes nothing; list "
                             f"them without {', '.join(given)}, then write one with --apply N (its index in the "
                             f"list) -o {args.output or 'OUTDIR'}")
    result = read_result(Path(args.result))
    alternatives = labeling_alternatives(result)
    if args.apply is None:
        for i, a in enumerate(alternatives):
            print(f"{i:2d}  likelihood {a.likelihood:.3f}  {a.description}")
        if not alternatives:  # say so rather than print nothing
            print(_alternatives_range(0, args.result, result))
        return 0
    if not 0 <= args.apply < len(alternatives):
        raise ValueError(f"--apply {args.apply}: {_alternatives_range(len(alternatives), args.result, result)}")
    return _write(args, apply_alternative(result, alternatives[args.apply]), read_image(Path(args.input)))


def _alternatives_range(count: int, folder: str, result) -> str:
    """Which ``--apply`` indices there are, for the ``count`` alternatives of ``result``, read from ``folder``."""
    if count == 0:
        why = " (it holds no vertebra)" if not result.vertebrae else ""
        return f"the result in {folder} has no labelling alternatives{why}, so there is none to apply"
    if count == 1:
        return "there is 1 alternative, --apply 0 (list it without --apply)"
    return f"there are {count} alternatives, --apply 0 to {count - 1} (list them without --apply)"


def cmd_complete(args: argparse.Namespace) -> int:
    from .io import read_image
    from .renumbering import set_completeness

    vertebra = _option_label(args.vertebra, "--vertebra")
    result = set_completeness(read_result(Path(args.result)), vertebra, not args.incomplete)
    return _write(args, result, read_image(Path(args.input)))


def _read_labels(path: Optional[str], option: str = "--labels"):
    """The label map of ``--labels`` / ``--existing`` (``option``): a label map file, or an output folder of spineseg
    (its ``labels.nii.gz``); None without one. A map saved as floating point is read as its whole numbers (values
    within 0.001 of them rounded, :func:`~SpineSegmentationLib.anatomy.whole_labels`) or refused, before any label in
    it is looked at (``int()`` made 21.9999 21 and 21.5 a vertebra 21 that ``--complete 21`` could name).

    Raises:
        ValueError: a folder without ``labels.nii.gz``; the errors of :func:`~SpineSegmentationLib.io.read_image`.
        InputImageError (a ValueError): floating-point values that are no whole numbers, named with the file,
            ``option``, the values and the likely cause and fix.
    """
    if not path:
        return None
    import numpy as np
    import SimpleITK as sitk

    from .anatomy import whole_labels
    from .io import read_image
    from .outputs import output_paths

    file = Path(path)
    if file.is_dir():
        file = output_paths(Path(path))["labels"]
        if not file.is_file():
            raise ValueError(f"{path} is a folder without {file.name}: give a label map file, or an output "
                             "folder of spineseg (which holds labels.nii.gz)")
    image = read_image(file)
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.integer):
        return image
    whole = sitk.GetImageFromArray(whole_labels(array, f"the label map {file} ({option})"))
    whole.CopyInformation(image)
    return whole


def _statements(args: argparse.Namespace, labels: Optional[str], option: str):
    """What a person stated about the vertebrae of the label map given with ``option`` (``labels``), checked before
    any work: the completeness flags, {VerSe label: flag} (those an output folder records as set by a person,
    ``complete_stated`` in its ``vertebrae.json``, with ``--complete`` / ``--incomplete`` over them), the labels
    whose level was stated (``--stated`` and those the folder records, ``level_stated``), and the labels of the
    vertebrae a person edited (``--edited`` and those the folder records, ``edited``: kept exactly by the step that
    wrote it, so a chain of steps keeps them without ``--edited`` again). Statements the folder records for
    vertebrae its ``labels.nii.gz`` no longer holds are named on stderr and not passed on.

    Returns:
        ``(label map, flags, stated, edited)``: the label map is read here (once) when the flags or the folder need
        it, else None (the caller reads it); ``stated`` and ``edited`` are sorted lists of VerSe labels.

    Raises:
        argparse.ArgumentTypeError: a bad list.
        ValueError: a label in both flag lists, flags without a label map (``option``), or a flag's label not in it.
    """
    complete, incomplete = _labels_list(args.complete), _labels_list(args.incomplete)
    stated, edited = _labels_list(args.stated), _labels_list(args.edited)
    both = sorted(set(complete) & set(incomplete))
    if both:
        raise ValueError(f"--complete and --incomplete both name {both}; give each vertebra one flag")
    document = _recorded_document(labels)
    if not complete and not incomplete and document is None:
        return None, {}, stated, edited
    if not labels:
        raise ValueError(f"--complete / --incomplete name vertebrae of the label map given with {option}; "
                         f"give {option} (e.g. the labels.nii.gz of the result whose flags you set)")
    import numpy as np
    import SimpleITK as sitk

    label_map = _read_labels(labels, option)
    present = {int(v) for v in np.unique(sitk.GetArrayViewFromImage(label_map))} - {0}
    missing = sorted((set(complete) | set(incomplete)) - present)
    if missing:
        raise ValueError(f"--complete / --incomplete name {missing}, which are not in {labels} (labels present: "
                         f"{sorted(present)}); name vertebrae of that label map")
    flags: dict[int, bool] = {}
    if document is not None:
        vertebrae = [v for v in _read_vertebrae(document)[1] if v.complete_stated or v.level_stated or v.edited]
        gone = sorted({v.name for v in vertebrae if int(v.label) not in present})
        if gone:
            print(f"note: {document} records an edit, a level or a completeness a person stated for "
                  f"{', '.join(gone)}, which its labels.nii.gz no longer holds; not passed on", file=sys.stderr)
        kept = [v for v in vertebrae if int(v.label) in present]
        flags = {int(v.label): bool(v.complete) for v in kept if v.complete_stated}
        stated = sorted(set(stated) | {int(v.label) for v in kept if v.level_stated})
        redo = set(_labels_list(getattr(args, "redo", "")))  # to segment again: no longer the edited voxels
        edited = sorted(set(edited) | {int(v.label) for v in kept if v.edited and int(v.label) not in redo})
    return label_map, {**flags, **{v: True for v in complete}, **{v: False for v in incomplete}}, stated, edited


def _recorded_document(labels: Optional[str]) -> Optional[Path]:
    """The ``vertebrae.json`` of an output folder given as ``labels``; None for a label map file or a folder without
    one."""
    from .outputs import output_paths

    document = output_paths(Path(labels))["vertebrae"] if labels and Path(labels).is_dir() else None
    return document if document is not None and document.is_file() else None


def _check_folder_ct(image, args: argparse.Namespace, label_map, labels: Optional[str], option: str) -> None:
    """:func:`_check_ct` for an output folder given as the label map (``labels``, with ``option``), before the
    network runs on ``image``; nothing for a label map file (which records no CT).

    Raises:
        ValueError: as :func:`_check_ct`.
    """
    if _recorded_document(labels) is not None:
        _check_ct(image, Path(args.input), label_map, Path(labels), option)


def _with_flags(result, label_map, flags: dict[int, bool]):
    if not flags:
        return result
    from .correction import keep_completeness

    return keep_completeness(result, label_map, flags)


def _dicom_seg_of(args: argparse.Namespace, labels: Optional[str]) -> None:
    """Ask for ``segmentation.dcm`` (``args.dicom_seg``) when the output folder given as the label map holds one,
    as the steps without network do (:func:`_write`): a chain of corrections keeps the DICOM SEG of the run it
    started from."""
    from .outputs.dicom_seg import DICOM_SEG_FILE

    if labels and Path(labels).is_dir() and (Path(labels) / DICOM_SEG_FILE).is_file():
        args.dicom_seg = True


def _check_given(labels: Optional[str], option: str) -> None:
    """Refuse a label map given with ``option`` (``--existing``, ``--labels``) that is not there, before any work
    (read with the CT, it was refused as "Input image ... does not exist", as if the CT were missing).

    Raises:
        ValueError: naming the option, the path and what to give.
    """
    if labels and not Path(labels).exists():
        raise ValueError(f"{option} {labels} does not exist; give a label map on the CT's grid (VerSe numbers), or "
                         "an output folder of spineseg (which holds labels.nii.gz)")


def _keep_start(args: argparse.Namespace, labels: Optional[str], option: str) -> None:
    """Refuse an output folder (``-o``, or the default one) whose outputs would replace the label map the step
    starts from (``option``: a file there, or an output folder given as the label map), also with ``--overwrite``:
    as the steps without network never change their ``--result`` folder, a click or re-run keeps the result it
    started from, so that the step can be undone and compared.

    Raises:
        ValueError: naming the folder and another one to write to.
    """
    if not labels:
        return
    from .cli import default_output_dir
    from .outputs import output_paths

    given = Path(labels)
    output_dir = Path(args.output) if args.output else default_output_dir(Path(args.input))
    read = output_paths(given)["labels"] if given.is_dir() else given
    if read.resolve() not in {path.resolve() for path in output_paths(output_dir).values()}:
        return
    where = f"-o {output_dir}" if args.output else f"the default output folder {output_dir} (no -o)"
    start = given.resolve() if given.is_dir() else given.resolve().parent
    raise ValueError(f"{where} holds {read}, the label map this command starts from ({option}), which its outputs "
                     "would replace; write the new result to another folder, e.g. "
                     f"-o {start.with_name(start.name + CORRECTED_SUFFIX)}")


def cmd_click(args: argparse.Namespace) -> int:
    from .correction import segment_from_point

    _check_given(args.existing, "--existing")
    _keep_start(args, args.existing, "--existing")
    directions = [d for d in args.directions.split(",") if d]
    # bad lists fail before any work; an output folder passes on the vertebrae it records as edited
    existing, flags, stated, edited = _statements(args, args.existing, "--existing")
    _dicom_seg_of(args, args.existing)

    def compute(image, callback):
        labels = existing if existing is not None else _read_labels(args.existing, "--existing")
        _check_folder_ct(image, args, labels, args.existing, "--existing")
        result = segment_from_point(
            image, args.point, existing_labels=labels, model=args.model, device=args.device,
            directions=directions, progress=callback, edited=edited, use_localization=not args.no_localization,
            stated=stated,
        )
        return _with_flags(result, labels, flags)

    return _run(args, compute)


def cmd_rerun(args: argparse.Namespace) -> int:
    from .correction import rerun_with_edits

    _check_given(args.labels, "--labels")
    _keep_start(args, args.labels, "--labels")
    redo = _labels_list(args.redo)  # bad lists fail before any work
    # an output folder passes on the vertebrae it records as edited, except those named in --redo
    current, flags, stated, edited = _statements(args, args.labels, "--labels")
    _dicom_seg_of(args, args.labels)

    def compute(image, callback):
        labels = current if current is not None else _read_labels(args.labels, "--labels")
        _check_folder_ct(image, args, labels, args.labels, "--labels")
        result = rerun_with_edits(
            image, labels, edited_labels=edited, redo_labels=redo, model=args.model,
            device=args.device, progress=callback, use_localization=not args.no_localization,
            stated_labels=stated,
        )
        return _with_flags(result, labels, flags)

    return _run(args, compute)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="CT image (NIfTI, NRRD, MetaImage or a DICOM series folder)")
    p.add_argument("-o", "--output", metavar="OUTDIR",
                   help="output folder (default: <input stem>_spineseg/ next to the input)")
    p.add_argument("--device", default="auto",
                   help="auto (GPU when available), cpu, cuda or cuda:N (GPU N, from 0; default: auto)")
    p.add_argument("--model", help="model folder (default: the shipped model)")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument("--progress", choices=("bar", "json", "none"), default="bar", help="progress display")
    p.add_argument("--no-localization", action="store_true", help="do not use the spine localization network")
    p.add_argument("--dicom-seg", action="store_true",
                   help="also write segmentation.dcm (DICOM SEG) for a non-DICOM input; it then references no DICOM "
                        "series (default: when the output folder given as the label map holds one; for a DICOM "
                        "series input it is always written)")
    p.add_argument("--complete", default="", action=_JoinLists,
                   help="vertebrae of the label map a person flagged completely visible (spineseg-correct complete); "
                        "the vertebrae on their voxels keep the flag, e.g. L1 (an output folder given as the label "
                        "map passes on the flags its vertebrae.json records as set by a person, complete_stated)")
    p.add_argument("--incomplete", default="", action=_JoinLists,
                   help="vertebrae of the label map a person flagged incompletely visible; kept as --complete")
    add_debug(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spineseg-correct", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_debug(parser, default=False)
    add_exit_with_parent(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    click = sub.add_parser("click", help="segment the vertebra at a point, then continue up and/or down")
    _common(click)
    click.add_argument("--point", nargs=3, type=float, required=True, metavar=("R", "A", "S"),
                       help="the point in RAS millimetres")
    click.add_argument("--existing", help="label map of vertebrae already segmented (kept, instance memory), or an "
                                          "output folder (its labels.nii.gz)")
    click.add_argument("--edited", action=_JoinLists,
                       help="labels in --existing that a person edited, e.g. 22,23 (an output folder passes on those "
                            "its vertebrae.json records as edited)")
    click.add_argument("--stated", action=_JoinLists,
                       help="labels in --existing whose level a person stated (kept), e.g. 21 or L2")
    click.add_argument("--directions", default="up,down", help="up,down (default), up, down, or '' (clicked only)")
    click.set_defaults(func=cmd_click)
    rerun = sub.add_parser("rerun", help="segment again, keeping the edited vertebrae exactly")
    _common(rerun)
    rerun.add_argument("--labels", required=True, help="current label map on the CT's grid (VerSe numbers), or an "
                                                       "output folder (its labels.nii.gz)")
    rerun.add_argument("--edited", default="", action=_JoinLists,
                       help="labels a person edited (kept exactly), e.g. 22 or L3 (an output folder passes on those "
                            "its vertebrae.json records as edited, except those in --redo)")
    rerun.add_argument("--redo", default="", action=_JoinLists,
                       help="labels to remove and segment again, e.g. 23,24 or L4,L5")
    rerun.add_argument("--stated", default="", action=_JoinLists,
                       help="labels whose level a person stated (kept), e.g. 21 or L2")
    rerun.set_defaults(func=cmd_rerun)

    def no_network(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("input", help="the CT the result belongs to")
        p.add_argument("--result", required=True, help="output folder to start from (not changed)")
        p.add_argument("-o", "--output", metavar="OUTDIR",
                       help=f"output folder for the corrected result, not the --result folder "
                            f"(default: RESULT{CORRECTED_SUFFIX} beside it)")
        p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
        p.add_argument("--dicom-seg", action="store_true",
                       help="also write segmentation.dcm (DICOM SEG) for a non-DICOM input (default: when RESULT "
                            "holds one; for a DICOM series input it is always written)")
        add_debug(p)
        return p

    ren = no_network("renumber", "state the level of one vertebra; the whole column is relabelled")
    ren.add_argument("--vertebra", required=True, help="the vertebra's current label or name, e.g. 23 or L4")
    ren.add_argument("--level", required=True, help="its true level, e.g. L5 or 24")
    ren.set_defaults(func=cmd_renumber)
    alt = no_network("alternatives", "list the labellings of the column by likelihood, or apply one")
    alt.add_argument("--apply", type=int, help="index of the alternative to apply (as listed), written to -o; "
                                                 "without it the alternatives are listed and nothing is written")
    alt.set_defaults(func=cmd_alternatives)
    com = no_network("complete", "flag a vertebra completely visible (default) or not")
    com.add_argument("--vertebra", required=True, help="the vertebra's label or name")
    com.add_argument("--incomplete", action="store_true", help="flag it incompletely visible")
    com.set_defaults(func=cmd_complete)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    # SpineSegmentationError is a ValueError; so are bad points and unknown labels. Each message names the fix.
    return run_cli(build_parser(), argv, errors=(argparse.ArgumentTypeError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
