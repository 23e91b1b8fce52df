"""Training data readers: VerSe-layout folders and manifest CSV files -> canonical (HU, VerSe label) volumes.

Two sources are understood:

- A **VerSe-layout folder** (VerSe 2019/2020): ``rawdata/sub-*/**/*_ct.nii.gz`` with reference masks
  ``derivatives/sub-*/**/*_seg-vert_msk.nii.gz`` (VerSe numbers; ``*_ctd.json`` centroids are not needed); either
  file may also be decompressed (``.nii``, as after ``gunzip``: :data:`CT_SUFFIXES`, :data:`MASK_SUFFIXES`).
  A mask ``<prefix>_seg-vert_msk.nii[.gz]`` belongs to the CT ``<prefix>_ct.nii[.gz]`` found anywhere under the
  root. Masks without a CT (e.g. ``shared/data/verse_masks``) are **mask-only** cases: train-split
  ones feed the synthetic CT generator (:mod:`.synthetic`); validation ones are not used at all. Cases whose path
  below the root, or the root folder's own name (``dataset-verse20validation``, ``dataset-verse20test``), has a
  word starting "valid" or "test" (not "latest", "invalid") are validation cases (never trained on).
- A **manifest CSV** with columns ``image,labels,convention`` and the optional columns ``split``
  (``train``/``validation``) and ``teacher``. ``image`` is a NIfTI/NRRD file or a DICOM series folder;
  ``convention`` is one of :data:`~SpineSegmentationLib.anatomy.CONVENTIONS`. ``teacher`` names the model folder
  whose output the label map is (a pseudo-label): what that model saw in training is then part of what a model
  trained on the case learned from (:mod:`.lineage`). Relative paths are relative to the CSV file.

All labels are converted to VerSe numbers with :func:`~SpineSegmentationLib.anatomy.to_verse`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..anatomy import (CONVENTIONS, MAX_LABEL_VALUES, column_mask, distinct_values, foreign_verse_labels,
                       negative_label_value, to_verse, whole_labels)
from ..errors import InputImageError, SpineSegmentationError
from ..geometry import AIR_HU, canonical_reference, to_canonical
from ..io import describe_series, dicom_series_in_folder, split_segmentations
from ..io import read_image as read_input_image
from ..text_files import csv_rows, separator_hint
from ..validation import check_intensities

#: A folder of validation or test cases: "valid..." or "test..." not inside a word ("dataset-verse20validation",
#: "02_validation", "test"; not "latest", "contest", "invalid").
_HELD_OUT_FOLDER = re.compile(r"(?<![a-z])(valid|test)")
#: The folders inside one VerSe (BIDS) dataset: its two top folders, a subject's, a session's.
_INSIDE_DATASET = re.compile(r"(rawdata|derivatives|sub-.*|ses-.*)")
#: The names a case's CT may have, ``<prefix>`` followed by one of these (compressed or not).
CT_SUFFIXES = ("_ct.nii.gz", "_ct.nii")
#: The names a case's reference mask may have, ``<prefix>`` followed by one of these (compressed or not).
MASK_SUFFIXES = ("_seg-vert_msk.nii.gz", "_seg-vert_msk.nii")


@dataclass(frozen=True)
class Case:
    """One training case: an image (or None for a mask-only case) and its vertebra label map; ``teacher`` is the
    model folder that wrote the label map when it is a pseudo-label (None for a reference); ``synthesis_source``:
    a mask of ``data.synthetic_masks_root``, a synthesis source by configuration (not for want of a CT)."""

    name: str
    image: Path | None
    labels: Path
    convention: str = "verse"
    split: str = "train"
    teacher: Path | None = None
    synthesis_source: bool = False


@dataclass
class CaseVolume:
    """A case on the canonical grid.

    Attributes:
        hu: float32 [z, y, x] = [S, P, L] HU array (None for mask-only cases).
        labels: int16 array of the same shape, VerSe numbers.
        spacing_mm: isotropic spacing of the arrays.
    """

    name: str
    hu: np.ndarray | None
    labels: np.ndarray
    spacing_mm: float


def files_by_case(root: Path, suffixes: tuple[str, ...], kind: str) -> dict[str, Path]:
    """The files under ``root`` (any depth) whose name is ``<prefix>`` followed by one of ``suffixes``, by prefix:
    the one rule by which a VerSe folder's CTs (:data:`CT_SUFFIXES`) and masks (:data:`MASK_SUFFIXES`) are found.

    Raises:
        SpineSegmentationError: two files for one prefix (``<prefix>_ct.nii.gz`` and ``<prefix>_ct.nii``, or the same
            name in two folders), named with ``kind``: which one to use is not guessed.
    """
    found: dict[str, Path] = {}
    for suffix in suffixes:
        for path in sorted(root.rglob(f"*{suffix}")):
            prefix = path.name[: -len(suffix)]
            if prefix in found:
                raise SpineSegmentationError(
                    f"two {kind}s for the case {prefix} under {root}: {found[prefix]} and {path}; keep one of them")
            found[prefix] = path
    return found


def is_validation_path(root: Path, path: Path) -> bool:
    """Whether ``path`` (below ``root``) is a validation or test case: ``root``'s own name or a folder or file name
    below it has a word starting "valid" or "test" (``dataset-verse19validation``, ``02_test``; not ``latest``).
    A root inside one dataset (``rawdata``, ``derivatives``, a ``sub-*`` or ``ses-*`` folder) is read with the
    names above it up to the dataset's folder: ``dataset-verse19validation/derivatives`` is validation data."""
    names, folder = [root.name], Path(root).resolve()
    while _INSIDE_DATASET.fullmatch(folder.name.lower()) and folder.parent != folder:
        folder = folder.parent
        names.append(folder.name)
    parts = [part.lower() for part in (*names, *path.relative_to(root).parts)]
    return any(_HELD_OUT_FOLDER.search(part) for part in parts)


def find_verse_cases(root: str | Path) -> list[Case]:
    """All cases of a VerSe-layout folder (see module docstring), sorted by name.

    Raises:
        FileNotFoundError: ``root`` is not a folder or holds no ``*_seg-vert_msk.nii[.gz]`` mask.
        SpineSegmentationError: two CTs or two masks for one case (``<prefix>_ct.nii.gz`` and ``<prefix>_ct.nii``).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"VerSe folder {root} does not exist")
    masks = files_by_case(root, MASK_SUFFIXES, "mask")
    if not masks:
        raise FileNotFoundError(
            f"no reference masks (*{' or *'.join(MASK_SUFFIXES)}) under {root}; expected the VerSe layout "
            "rawdata/sub-*/*_ct.nii.gz + derivatives/sub-*/*_seg-vert_msk.nii.gz"
        )
    cts = files_by_case(root, CT_SUFFIXES, "CT")
    cases = []
    for prefix, mask in sorted(masks.items()):
        split = "validation" if is_validation_path(root, mask) else "train"
        cases.append(Case(name=prefix, image=cts.get(prefix), labels=mask, convention="verse", split=split))
    return cases


def read_manifest(path: str | Path) -> list[Case]:
    """Cases listed in a manifest CSV (columns ``image,labels,convention[,split][,teacher]``).

    A ``teacher`` (the model folder that wrote the row's label map, relative to the manifest) is not read here: a
    new run refuses one that is no model folder, a resumed run needs it only for a case its checkpoint did not train
    on (:func:`~.lineage.teacher_lineage`).

    Raises:
        FileNotFoundError: the manifest or an image or label map it names does not exist.
        SpineSegmentationError: not UTF-8 text, a missing column, an unknown convention or split, no row.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} not found; check data.manifest in the training configuration "
                                "(a relative path is relative to the configuration file)")
    cases = []
    reader = csv_rows(path, "manifest")
    missing = {"image", "labels", "convention"} - set(reader.fieldnames or [])
    if missing:
        raise SpineSegmentationError(
            f"manifest {path} lacks the column(s) {sorted(missing)}; required: image,labels,convention"
            + separator_hint(reader.fieldnames))
    for row_number, row in enumerate(reader, start=2):
        image = (path.parent / row["image"].strip()).resolve()
        labels = (path.parent / row["labels"].strip()).resolve()
        for p in (image, labels):
            if not p.exists():
                raise FileNotFoundError(f"{path} line {row_number}: {p} does not exist; check the row's "
                                        "image and labels (a relative path is relative to the manifest file)")
        convention = row["convention"].strip()
        if convention not in CONVENTIONS:
            raise SpineSegmentationError(
                f"{path} line {row_number}: unknown convention {convention!r}; use one of {CONVENTIONS}")
        split = (row.get("split") or "train").strip() or "train"
        if split not in ("train", "validation"):
            raise SpineSegmentationError(
                f"{path} line {row_number}: split must be 'train' or 'validation', got {split!r}")
        teacher = None
        if (row.get("teacher") or "").strip():  # checked when a run starts: lineage.teacher_lineage
            teacher = (path.parent / row["teacher"].strip()).resolve()
        name = image.name.replace(".nii.gz", "").replace(".nii", "").replace(".nrrd", "")
        cases.append(Case(name=name, image=image, labels=labels, convention=convention, split=split,
                          teacher=teacher))
    if not cases:
        raise SpineSegmentationError(
            f"manifest {path} lists no case (a header without rows): add one row per CT, image,labels,convention"
            "[,split] (see Resources/TrainingConfigs/real_ct_manifest.csv), or leave data.manifest out of the "
            "training configuration")
    return cases


def read_image(path: str | Path, role: str = "a case's CT") -> sitk.Image:
    """Read a 3D image file or a DICOM series folder as ``spineseg segment`` reads its input
    (:func:`~SpineSegmentationLib.io.read_image`, with its checks): a damaged file is refused, not trained on.

    Args:
        role: what ``path`` was given as, for the message (e.g. "a case's CT", "a case's label map").

    Returns:
        The ``sitk.Image`` as :func:`~SpineSegmentationLib.io.read_image` gives it (geometry unchanged, LPS mm).

    Raises:
        FileNotFoundError: nothing at ``path``.
        InputImageError: as :func:`~SpineSegmentationLib.io.read_image`, the message naming the file and the fix: an
            unsupported format; a file that is truncated or corrupt (:func:`~SpineSegmentationLib.io.check_image_file`;
            ITK would read the missing voxels as 0 without an error), holds NaN/Inf or has a contradictory NIfTI
            header; a folder without a DICOM series, a series that is not one even stack of slices. A folder with
            several CT series or with DICOM SEG series only is refused with advice for training
            (:func:`_training_dicom_advice`: training has no ``--series-uid`` to pick a series), naming ``role``,
            chained to the reader's own error.
    """
    return _read(Path(path), role, label_map=False)


def _read(path: Path, role: str, label_map: bool) -> sitk.Image:
    """:func:`read_image` of ``path`` given as ``role``, a label map where ``label_map`` (for the advice)."""
    if not path.exists():
        raise FileNotFoundError(f"image {path} not found")
    try:
        return read_input_image(path)
    except InputImageError as error:
        advice = _training_dicom_advice(path, role, label_map) if path.is_dir() else None
        if advice is None:
            raise
        raise InputImageError(advice) from error


#: How to make a label map file of a DICOM SEG, for the messages of :func:`_training_dicom_advice`.
_CONVERT_SEG = ("in 3D Slicer load it with the DICOM module, export the segmentation to a labelmap volume and save "
                "that as .nii.gz")


def _training_dicom_advice(folder: Path, role: str, label_map: bool) -> str | None:
    """The message for a DICOM ``folder``, given as ``role`` (a CT, or a label map where ``label_map``), that
    :func:`~SpineSegmentationLib.io.read_image` refused because it cannot choose a series without a Series Instance
    UID (several series that are no SEG) or holds DICOM SEG series only, with advice that applies to training (which
    reads one series per folder and has no ``--series-uid``); None where the refusal was another (the reader's own
    message then stands). The series are listed as the reader lists them
    (:func:`~SpineSegmentationLib.io.describe_series`: UID, number of files, description); SEG series by their first
    file's name, as the reader's own refusal of a folder of SEGs names them."""
    images, segmentations = split_segmentations(dicom_series_in_folder(folder))
    if len(images) > 1:
        listing = "; ".join(describe_series(uid, files) for uid, files in images.items())
        found = f"{folder} ({role}) holds {len(images)} DICOM series ({listing})"
    elif segmentations and not images:
        names = ", ".join(f"'{Path(files[0]).name}'" for files in segmentations.values())
        found = f"{folder} ({role}) holds DICOM Segmentation (SEG) series only ({names}), no CT"
    else:
        return None
    if label_map:
        return (f"{found}: training reads {role} from a label map file (NIfTI, NRRD) made on the CT, not from a "
                f"DICOM folder; give that file (to make one of a DICOM SEG holding the reference: {_CONVERT_SEG})")
    if len(images) > 1:
        return (f"{found}: training reads one series per folder and cannot pick one (it has no --series-uid); move "
                "each series into a folder of its own and give the folder of the series you mean, or convert that "
                "series to NIfTI (e.g. with dcm2niix or 3D Slicer) and give that file")
    return (f"{found}: training reads a CT from an image file or a folder of one DICOM CT series; give the folder of "
            "the CT series the SEG was made from, and where the SEG holds the case's reference, give it as a label "
            f"map file ({_CONVERT_SEG})")


def read_label_map(path: str | Path, fix: str, role: str = "a case's label map") -> sitk.Image:
    """Read a label map as integers (:func:`~SpineSegmentationLib.anatomy.whole_labels`: a floating-point map whose
    values all lie within 0.001 of whole numbers is rounded, 20.9999 is 21, not 20), refusing an image given in its
    place: a negative value (in a floating-point map: one below -0.001,
    :data:`~SpineSegmentationLib.anatomy.LABEL_TOLERANCE`; one that close to 0, as resampling leaves, is read as 0) or
    more than :data:`~SpineSegmentationLib.anatomy.MAX_LABEL_VALUES` distinct values (counted rounded) is an intensity
    image (a CT in HU: air is -1000; a CT stored unsigned, HU + 1024; an MR, also as floats), not a label map; read as
    labels, a CT's soft tissue (27-50 HU) or its air (HU + 1024) would train as TotalSegmentator's vertebrae.

    Args:
        fix: what to give instead, for the message (e.g. "give the case's label map as its labels ...").
        role: what ``path`` was given as, for the message of a DICOM folder (:func:`read_image`).

    Raises:
        FileNotFoundError: no image at ``path``.
        SpineSegmentationError: an image, not a map (above), named with ``path`` and ``fix``.
        InputImageError: a floating-point map with other values, named with the file and the values; a file that
            cannot be read whole (truncated, corrupt: :func:`read_image`).
    """
    image = _read(Path(path), role, label_map=True)
    array = sitk.GetArrayFromImage(image)
    floating = np.issubdtype(array.dtype, np.floating)
    lowest = negative_label_value(array)  # -1e-6 in a float map is 0, as whole_labels rounds it
    if lowest is not None:
        raise SpineSegmentationError(
            f"{path} holds negative values (lowest {lowest:g}): it is an image, e.g. a CT in HU, not a label map "
            f"(labels are 0 or more; read as TotalSegmentator labels, its soft tissue at 27-50 HU would train as "
            f"vertebrae): {fix}")
    distinct = distinct_values(np.rint(array) if floating else array)  # a float MR: an image, not "resampled"
    if distinct > MAX_LABEL_VALUES:
        raise SpineSegmentationError(
            f"{path} holds {distinct} distinct values, more than {MAX_LABEL_VALUES}: it is an image, e.g. a CT stored "
            "unsigned (HU + 1024) or an MR, not a label map (the VerSe and TotalSegmentator numberings hold at most "
            f"about 120 labels): {fix}")
    if not floating:
        return image
    out = sitk.GetImageFromArray(whole_labels(array, str(path)))
    out.CopyInformation(image)
    return out


def labels_on_grid(labels: sitk.Image, reference: sitk.Image) -> np.ndarray:
    """Nearest-neighbour resample of an integer label image (:func:`read_label_map`) onto ``reference`` -> int
    array [z, y, x]."""
    out = sitk.Resample(sitk.Cast(labels, sitk.sitkInt32), reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return sitk.GetArrayFromImage(out)


#: The largest share of a label map's vertebra voxels that may lie outside its CT: a label map made on the CT lies
#: within it (0 % for every case of the shipped manifests); a shifted header or another scan's map does not.
MAX_SHARE_OUTSIDE_CT = 0.02


def share_outside(label_image: sitk.Image, convention: str, ct: sitk.Image, most_points: int = 200_000) -> float:
    """The share of a label map's vertebra voxels (``convention``, :func:`~SpineSegmentationLib.anatomy.to_verse`)
    whose centres lie outside the CT's image extent (its voxels' centres +- half a CT voxel, plus half the label map's
    largest spacing: a coarser map's voxel may reach past the CT's edge), in physical space (LPS mm, each image's
    origin, spacing and direction); 0.0 for a map without vertebrae. At most ``most_points`` evenly strided voxels are
    mapped."""
    mask = column_mask(to_verse(sitk.GetArrayViewFromImage(label_image), convention))
    flat = np.flatnonzero(mask)
    if not flat.size:
        return 0.0
    kji = np.unravel_index(flat[:: max(1, flat.size // most_points)], mask.shape)
    ijk = np.stack(kji[::-1], axis=1).astype(np.float64)  # numpy [k, j, i] -> ITK (i, j, k)

    def frame(image: sitk.Image):
        return (np.asarray(image.GetOrigin()), np.asarray(image.GetSpacing()),
                np.asarray(image.GetDirection()).reshape(3, 3))

    origin, spacing, direction = frame(label_image)
    points = origin + (ijk * spacing) @ direction.T
    ct_origin, ct_spacing, ct_direction = frame(ct)
    index = np.linalg.solve(ct_direction, (points - ct_origin).T).T / ct_spacing
    margin = 0.5 + 0.5 * spacing.max() / ct_spacing  # in CT voxels, per axis
    inside = np.all((index >= -margin) & (index <= np.asarray(ct.GetSize()) - 1 + margin), axis=1)
    return float(1.0 - inside.mean())


def load_case(case: Case, spacing_mm: float) -> CaseVolume:
    """Read a case and bring it onto the canonical grid at ``spacing_mm`` (labels in VerSe numbers).

    The CT is resampled linearly (outside its field of view: air, -1024 HU); the labels with nearest
    neighbour onto the CT's canonical grid. A mask-only case is put on the canonical grid of its mask.

    Raises:
        SpineSegmentationError: the label map is an image such as the CT (:func:`read_label_map`), a
            label map declared as VerSe numbers (``verse``, ``totalseg_vertebrae``) holds labels of another
            convention (29-99),
            or more than :data:`MAX_SHARE_OUTSIDE_CT` of its vertebra voxels lie outside the CT, or none on the CT's
            canonical grid (another scan's map, a wrong header or convention), or
            a floating-point label map holds values that are no whole numbers (:func:`read_label_map`).
        InputImageError: the CT's values are not CT Hounsfield units (a label map given as the CT, a CT stored
            without its rescale intercept: :func:`~SpineSegmentationLib.validation.check_intensities`); the CT or
            the label map is truncated or corrupt, or otherwise refused as ``spineseg segment`` refuses an input
            (:func:`read_image`).
    """
    label_image = read_label_map(case.labels, "give the case's label map as its labels (a manifest row is "
                                 "image,labels,convention: the CT first, then its label map)",
                                 f"the label map of the case {case.name}")
    # both number the vertebrae 1-24 (28: T13): a map with labels 29-99 is another convention's, e.g. a
    # TotalSegmentator 'total' map, whose 1-24 are organs (spleen, kidneys, liver, ...) that would train as C1-L5
    numbered_as_verse = case.convention in ("verse", "totalseg_vertebrae")
    foreign = foreign_verse_labels(sitk.GetArrayViewFromImage(label_image)) if numbered_as_verse else ""
    if foreign:
        raise SpineSegmentationError(
            f"{case.labels} holds labels that are no VerSe number ({foreign}) but its convention is "
            f"{case.convention!r}, which numbers the vertebrae 1-24 as VerSe does: give the label map's convention in "
            "the manifest (totalseg for a TotalSegmentator 'total' map, whose 1-24 are organs; totalseg_vertebrae "
            "for its vertebrae task)")
    if case.image is None:
        reference = canonical_reference(label_image, spacing_mm)
        hu = None
    else:
        image = read_image(case.image, f"the CT of the case {case.name}")
        try:
            check_intensities(image)
        except InputImageError as error:
            raise InputImageError(f"the CT {case.image} of the case {case.name}: {error} In a manifest row the CT "
                                  "comes first, then its label map (image,labels,convention)") from None
        outside = share_outside(label_image, case.convention, image)
        if outside > MAX_SHARE_OUTSIDE_CT:
            raise SpineSegmentationError(
                f"{100 * outside:.0f} % of the vertebra voxels of {case.labels} lie outside its CT {case.image}: the "
                "label map is another scan's, or its header (origin, spacing, direction) differs from the CT's, so "
                "its labels would train on the wrong voxels. Give the label map made on this CT; a map of a larger "
                "scan that the CT is cut from: resample it onto the CT's grid (nearest neighbour) first")
        hu, reference = to_canonical(image, spacing_mm, AIR_HU)
    labels = to_verse(labels_on_grid(label_image, reference), case.convention)
    if not column_mask(labels).any():
        on = f"on the grid of {case.image}" if case.image is not None else "after conversion"
        raise SpineSegmentationError(
            f"{case.labels} holds no vertebra {on} (convention {case.convention!r}): check that the label map "
            "belongs to this CT (the origin and direction of both headers) and that the manifest's convention is "
            "the map's")
    return CaseVolume(name=case.name, hu=hu, labels=labels, spacing_mm=float(spacing_mm))


def load_anatomy_map(path: str | Path, spacing_mm: float) -> np.ndarray:
    """A whole-anatomy label map (TotalSegmentator v2 ``total`` ids, kept as they are) on the canonical grid of
    its own image at ``spacing_mm`` (nearest neighbour): int array [z, y, x] = [S, P, L].

    Raises:
        FileNotFoundError: no image at ``path``.
        SpineSegmentationError: an image such as a CT, not a label map (:func:`read_label_map`).
        InputImageError: a floating-point map whose values are no whole numbers, a truncated or corrupt file
            (:func:`read_label_map`).
    """
    image = read_label_map(path, "give data.anatomy_maps TotalSegmentator 'total' label maps",
                           "a whole-anatomy map of data.anatomy_maps")
    return labels_on_grid(image, canonical_reference(image, spacing_mm))
