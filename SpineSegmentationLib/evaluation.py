"""Evaluation of a vertebra segmentation against a reference: the measures of Lessmann et al. 2019 and VerSe.

Measures (per vertebra = per VerSe label; all distances in millimetres, physical units of the grid):

- **Dice** ``2|P & R| / (|P| + |R|)`` of the prediction's and the reference's voxels with the same label.
- **Surface distances.** The surface of a mask is the set of its voxels with at least one 6-connected
  neighbour outside the mask (voxels outside the image count as outside, so a mask cut by the field of
  view has a surface on the border). For each surface voxel of one mask, the distance is the Euclidean
  distance (voxel centres, with the grid's spacing, via ``scipy.ndimage.distance_transform_edt``) to the
  nearest surface voxel of the other mask.
  **ASSD** = mean over both directed sets together; **HD95** = ``max(p95(d_PR), p95(d_RP))``, the larger of
  the two directed 95th percentiles (numpy's linear interpolation), as in MONAI; not the Hausdorff distance of
  the VerSe 2019 paper (the maximum).
- **Identification** (VerSe challenge, Sekuboyina et al. 2021, as its ``eval_utilities.get_hits``): a reference
  vertebra is identified when the prediction has a centroid with its label, the nearest reference centroid to that
  point (among the labels both have) is its own, and the two lie within :data:`ID_DISTANCE_MM` (20 mm).
  Identification rate = identified / reference vertebrae (a missed vertebra counts as not identified).
  Localization distance = the distance between same-label centroids (mean over reference vertebrae that have a
  same-label prediction). Against masks both centroids are the labels' whole-vertebra centroids; against a VerSe
  centroid file (:func:`evaluate_points`) the prediction's are its vertebral-body centres, the point VerSe marks.
- **Label agreement**: linearly weighted Cohen's kappa between reference and predicted labels of the
  vertebrae matched by overlap (each reference vertebra is matched to the predicted label that covers most
  of its voxels); the weight of a disagreement is the distance in anatomical levels
  (C1 ... T12, T13, L1 ... L5, L6, sacrum).
- **Completeness accuracy**: fraction of matched vertebrae whose predicted completeness flag equals the
  reference's. The predicted flag comes from an explicit dict, a spineseg output folder's vertebrae.json or the
  ``SpineSegmentation.Complete`` tags of a 3D Slicer segmentation (``.seg.nrrd``). The reference flag comes from
  an explicit dict, or else a vertebra is *incomplete* when it touches the border of the reference image (cut by the
  field of view).
- **Instance purity** (does each instance hold one whole vertebra?): for every reference vertebra, the share of
  its voxels covered by its best-matching predicted instance (``purity``) and the Dice with that instance
  whatever its label (``overlap_dice``); a predicted instance *spans* two or more reference vertebrae when it
  covers at least :data:`COVER_FRACTION` of each (``spanning_instances``: the instances that cross a disc).
- **Point references** (CTs without masks): :func:`evaluate_points` scores identification per level against
  VerSe centroid files (``*_ctd.json``, e.g. vertebral body centres marked by a reader).
- **False positives**: predicted labels with no voxel overlapping any reference vertebra;
  **false negatives**: reference labels with no voxel overlapping any predicted vertebra.
- **Sacrum** (26): not a vertebra in these measures (VerSe labels C1-L6 and T13, no sacrum; spineseg labels 26 only a
  lowest segment it takes for the top of the sacrum) unless ``include_sacrum``; where either map holds it,
  its Dice and the share of the predicted sacrum inside the reference's are reported apart (:func:`sacrum_score`,
  the summary's ``sacrum``).

Both label maps are in VerSe numbers (the reference is converted from ``reference_convention``; a 3D Slicer
segmentation, ``.seg.nrrd``, whose segments are named as levels, "L1", "L1 vertebra" or "vertebrae_L1", or carry a
level's terminology code as spineseg writes it, is read by its segments, whatever its voxel values: Slicer numbers
segments in the order they were made; 3D Slicer's own terminology lists have no code per level, only "Vertebra").
When the grids differ, the prediction is resampled with nearest-neighbour interpolation onto the reference's grid
(the report's ``notes`` say so), so that every reference voxel counts, also where the prediction's field of view
ends (VerSe evaluates on the reference's grid too); the centroids and volumes of both are then taken on the
reference's grid (where that grid cuts a vertebra, both sides' centroids are of the part inside).
Grids that do not overlap in physical space (no voxel of the prediction's grid lands on the reference's: another
scan, or a wrong origin or direction in a header) are refused, not scored as all false negatives.

Usage::

    report = evaluate("ct_spineseg/", "ct_seg-vert_msk.nii.gz")
    print(format_table(report))
    write_report(report, "ct_evaluation/")
"""

from __future__ import annotations

import csv
import filecmp
import json
import math
import os
import re
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .anatomy import (ANATOMICAL_ORDER, CONVENTIONS, MAX_LABEL_VALUES, SACRUM, VERSE_NAMES, distinct_values,
                      foreign_verse_labels, negative_label_value, to_verse, verse_label, whole_labels)
from .errors import InputImageError, OutputExistsError, SpineSegmentationError
from .geometry import label_measurements, labels_at_border, same_grid
from .io import check_image_file
from .outputs import OUTPUT_FILES
from .outputs.centroids import body_centres_lps, label_centroids_lps, label_volumes_mm3, read_ctd
from .outputs.vertebrae_json import read_vertebrae_json
from .segment_tags import COMPLETE_TAG
from .terminology import GENERIC_VERTEBRA, SCHEME, TERMINOLOGY_CONTEXT_NAME, vertebra_terminology

#: VerSe identification threshold, mm (Sekuboyina et al. 2021, after Glocker et al. 2013).
ID_DISTANCE_MM = 20.0
#: Share of a reference vertebra that a predicted instance must cover to count as covering it when instances
#: that span two vertebrae are counted (a quarter: an instance from mid-body to mid-body covers about half of
#: each of two vertebral bodies but less of their posterior elements).
COVER_FRACTION = 0.25
_RANK = {label: rank for rank, label in enumerate(ANATOMICAL_ORDER)}
#: Files written by :func:`write_report`.
REPORT_FILES = ("evaluation.json", "evaluation.csv", "evaluation.png")
#: File written by :func:`write_points_report`.
POINTS_REPORT_FILE = "evaluation_points.json"

_CODE_BASE = 1 << 16  # pair code = reference * base + prediction (labels are < 2^15)
_SIX_CONNECTED = ndimage.generate_binary_structure(3, 1)

ImageLike = Union[str, os.PathLike, sitk.Image]


# ---------------------------------------------------------------------------------------------------------
# Overlap and surface distances
# ---------------------------------------------------------------------------------------------------------


def dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Dice coefficient of two boolean masks of the same shape; NaN when both are empty.

    Raises:
        ValueError: if the shapes differ.
    """
    p, r = np.asarray(prediction, bool), np.asarray(reference, bool)
    if p.shape != r.shape:
        raise ValueError(f"masks differ in shape: {p.shape} vs {r.shape}")
    total = int(p.sum()) + int(r.sum())
    return float("nan") if total == 0 else 2.0 * int(np.logical_and(p, r).sum()) / total


def surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxels of a boolean mask: mask voxels with a 6-connected neighbour outside it (outside the array
    counts as outside)."""
    mask = np.asarray(mask, bool)
    return mask & ~ndimage.binary_erosion(mask, structure=_SIX_CONNECTED, border_value=0)


def surface_distances(
    prediction: np.ndarray, reference: np.ndarray, spacing_zyx: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances between two masks, mm.

    Args:
        prediction, reference: boolean masks, same shape, numpy order [z, y, x] (``sitk.GetArrayFromImage``).
        spacing_zyx: voxel spacing in mm in the same axis order (``image.GetSpacing()[::-1]``).

    Returns:
        ``(d_pr, d_rp)``: for every surface voxel of ``prediction``, its distance to the nearest surface
        voxel of ``reference``, and vice versa. Empty arrays when either mask is empty.

    Raises:
        ValueError: if the shapes differ or the spacing is not 3 positive numbers.
    """
    p, r = np.asarray(prediction, bool), np.asarray(reference, bool)
    if p.shape != r.shape or p.ndim != 3:
        raise ValueError(f"masks must be 3D with equal shapes, got {p.shape} and {r.shape}")
    spacing = np.asarray(spacing_zyx, dtype=float)
    if spacing.shape != (3,) or np.any(spacing <= 0):
        raise ValueError(f"spacing must be 3 positive numbers (mm), got {spacing_zyx}")
    if not p.any() or not r.any():
        return np.empty(0), np.empty(0)
    # Crop to the union's bounding box plus one empty voxel all round (the outside counts as background).
    box = ndimage.find_objects((p | r).astype(np.uint8))[0]
    p = np.pad(p[box], 1)
    r = np.pad(r[box], 1)
    sp, sr = surface(p), surface(r)
    to_r = ndimage.distance_transform_edt(~sr, sampling=spacing)
    to_p = ndimage.distance_transform_edt(~sp, sampling=spacing)
    return to_r[sp], to_p[sr]


def assd(d_pr: np.ndarray, d_rp: np.ndarray) -> float:
    """Average symmetric surface distance (mm) from :func:`surface_distances`; NaN when undefined."""
    n = d_pr.size + d_rp.size
    return float("nan") if d_pr.size == 0 or d_rp.size == 0 else float((d_pr.sum() + d_rp.sum()) / n)


def hd95(d_pr: np.ndarray, d_rp: np.ndarray) -> float:
    """95th-percentile Hausdorff distance (mm): the larger directed 95th percentile; NaN when undefined."""
    if d_pr.size == 0 or d_rp.size == 0:
        return float("nan")
    return float(max(np.percentile(d_pr, 95), np.percentile(d_rp, 95)))


# ---------------------------------------------------------------------------------------------------------
# Identification, label agreement, completeness
# ---------------------------------------------------------------------------------------------------------


def identification(
    predicted_centroids: Mapping[int, Sequence[float]],
    reference_centroids: Mapping[int, Sequence[float]],
    max_distance_mm: float = ID_DISTANCE_MM,
) -> dict[int, tuple[bool, float]]:
    """VerSe identification of every reference vertebra (module docstring).

    Args:
        predicted_centroids, reference_centroids: ``{label: [x, y, z]}`` in the same physical frame (mm;
            LPS or RAS, as long as both agree).
        max_distance_mm: identification threshold (VerSe: 20 mm).

    Returns:
        ``{reference label: (identified, distance_mm)}``; distance to the same-label predicted centroid, NaN
        when the prediction has no such label.
    """
    common = [k for k in reference_centroids if k in predicted_centroids]  # VerSe compares these labels only
    references = np.array([reference_centroids[k] for k in common], dtype=float).reshape(-1, 3)
    out = {}
    for label in reference_centroids:
        if label not in predicted_centroids:
            out[int(label)] = (False, float("nan"))
            continue
        distances = np.linalg.norm(references - np.asarray(predicted_centroids[label], dtype=float), axis=1)
        own = float(distances[common.index(label)])
        identified = own <= max_distance_mm and own <= distances.min()  # its own reference is the nearest
        out[int(label)] = (bool(identified), own)
    return out


def weighted_kappa(reference_labels: Sequence[int], predicted_labels: Sequence[int]) -> float:
    """Linearly weighted Cohen's kappa of paired labels.

    Weights: ``w_ij = |rank_i - rank_j|`` with the rank in :data:`~SpineSegmentationLib.anatomy.ANATOMICAL_ORDER` (one level = 1; the scale
    cancels out). ``kappa = 1 - sum(w * O) / sum(w * E)`` with O the observed and E the chance-expected
    (product of marginals) contingency tables over the labels that occur.

    Returns:
        kappa in [-1, 1]; NaN when it is undefined (no pairs, or a single category so that E has no
        weighted disagreement).

    Raises:
        ValueError: if the sequences differ in length or hold a label outside the VerSe numbers.
    """
    ref = [int(v) for v in reference_labels]
    pred = [int(v) for v in predicted_labels]
    if len(ref) != len(pred):
        raise ValueError(f"need paired labels, got {len(ref)} reference and {len(pred)} predicted")
    unknown = sorted(set(ref + pred) - set(_RANK))
    if unknown:
        raise ValueError(f"labels {unknown} are not VerSe vertebra numbers")
    if not ref:
        return float("nan")
    categories = sorted(set(ref + pred), key=_RANK.__getitem__)
    index = {c: i for i, c in enumerate(categories)}
    observed = np.zeros((len(categories),) * 2)
    for r, p in zip(ref, pred):
        observed[index[r], index[p]] += 1
    observed /= observed.sum()
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    ranks = np.array([_RANK[c] for c in categories], dtype=float)
    weights = np.abs(ranks[:, None] - ranks[None, :])
    denominator = float((weights * expected).sum())
    if denominator == 0.0:
        return float("nan")
    return 1.0 - float((weights * observed).sum()) / denominator


def border_completeness(labels: np.ndarray) -> dict[int, bool]:
    """Reference completeness from the field of view: ``{label: complete}``, False when the label touches any
    face of the array (the vertebra is cut by the image border)."""
    labels = np.asarray(labels)
    present = set(int(v) for v in np.unique(labels)) - {0}
    touching = labels_at_border(labels)
    return {label: label not in touching for label in sorted(present)}


def overlap_counts(prediction: np.ndarray, reference: np.ndarray) -> dict[tuple[int, int], int]:
    """Voxel counts of every (reference label, predicted label) pair with both non-zero."""
    both = (prediction > 0) & (reference > 0)
    codes = reference[both].astype(np.int64) * _CODE_BASE + prediction[both].astype(np.int64)
    unique, counts = np.unique(codes, return_counts=True)
    return {(int(c // _CODE_BASE), int(c % _CODE_BASE)): int(n) for c, n in zip(unique, counts)}


def match_by_overlap(overlaps: Mapping[tuple[int, int], int]) -> dict[int, int]:
    """Match each reference label to the predicted label covering most of its voxels: ``{ref: pred}``
    (ties go to the predicted label equal to the reference, then the smaller label)."""
    best: dict[int, tuple[int, int, int]] = {}
    for (r, p), count in overlaps.items():
        key = (count, p == r, -p)
        if r not in best or key > best[r][:3]:
            best[r] = (*key, p)
    return {r: value[3] for r, value in best.items()}


def sacrum_score(prediction: np.ndarray, reference: np.ndarray, spacing_zyx: Sequence[float]) -> Optional[dict]:
    """The sacrum (VerSe 26) of two label maps in VerSe numbers, scored apart from the vertebrae.

    Args:
        prediction, reference: label maps on one grid, numpy order [z, y, x].
        spacing_zyx: voxel spacing in mm in the same axis order.

    Returns:
        None when neither map holds the sacrum; else ``{"in_reference", "in_prediction", "dice",
        "predicted_in_reference", "reference_volume_mm3", "predicted_volume_mm3"}`` (volumes in mm^3):
        ``predicted_in_reference`` is the share of the predicted sacrum's voxels that the reference labels sacrum
        (NaN without a predicted sacrum); it tells a segment rightly taken for the top of the sacrum (near 1, while
        its Dice with a whole sacrum is low) from a vertebra taken for the sacrum (near 0).

    Raises:
        ValueError: if the shapes differ.
    """
    p, r = np.asarray(prediction) == SACRUM, np.asarray(reference) == SACRUM
    if p.shape != r.shape:
        raise ValueError(f"label maps differ in shape: {p.shape} vs {r.shape}")
    predicted, referenced = int(p.sum()), int(r.sum())
    if predicted == 0 and referenced == 0:
        return None
    voxel_mm3 = float(np.prod(spacing_zyx))
    return {
        "in_reference": referenced > 0,
        "in_prediction": predicted > 0,
        "dice": dice(p, r),
        "predicted_in_reference": int(np.logical_and(p, r).sum()) / predicted if predicted else float("nan"),
        "reference_volume_mm3": referenced * voxel_mm3,
        "predicted_volume_mm3": predicted * voxel_mm3,
    }


# ---------------------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------------------


@dataclass
class VertebraScore:
    """One row of the per-vertebra table (a VerSe label present in the reference and/or the prediction).

    Distances in mm; NaN where undefined (label missing on one side). ``identified``,
    ``matched_prediction`` and ``completeness_correct`` are None for labels only in the prediction.
    """

    label: int
    name: str
    in_reference: bool
    in_prediction: bool
    dice: float
    assd_mm: float
    hd95_mm: float
    centroid_distance_mm: float
    identified: Optional[bool]
    matched_prediction: Optional[int]
    reference_complete: Optional[bool]
    predicted_complete: Optional[bool]
    completeness_correct: Optional[bool]
    reference_volume_mm3: float
    predicted_volume_mm3: float
    purity: float = float("nan")
    overlap_dice: float = float("nan")


@dataclass
class EvaluationReport:
    """Result of :func:`evaluate`: per-vertebra table, scan-level summary, notes on what was done."""

    vertebrae: list[VertebraScore]
    summary: dict
    notes: list[str] = field(default_factory=list)
    prediction: str = ""
    reference: str = ""

    def to_dict(self) -> dict:
        """Plain-JSON dictionary (NaN -> None)."""
        return _json_safe(
            {
                "prediction": self.prediction,
                "reference": self.reference,
                "summary": self.summary,
                "vertebrae": [asdict(v) for v in self.vertebrae],
                "notes": list(self.notes),
            }
        )


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else round(float(value), 4)
    return value


def _read_label_image(source: ImageLike, what: str) -> tuple[sitk.Image, str]:
    return _read_image(source, what, "a label map")


def _read_image(source: ImageLike, what: str, expected: str) -> tuple[sitk.Image, str]:
    """(image, description) of a path or ``sitk.Image``; the messages ask for ``expected`` ("a label map").

    A file ITK would misread without an error (a truncated or corrupt .nii.gz, corrupt compressed .nrrd/.mha data)
    is refused (:func:`~SpineSegmentationLib.io.check_image_file`: InputImageError), not scored."""
    if isinstance(source, sitk.Image):
        return source, f"<{what} image>"
    path = Path(source)
    if not path.is_file():
        raise InputImageError(f"{what} {path} does not exist or is not a file; give {expected} (.nii.gz, .nrrd, ...)")
    check_image_file(path)
    try:
        return sitk.ReadImage(str(path)), str(path)
    except RuntimeError as error:  # SimpleITK's message: its last line names the reader's complaint
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise InputImageError(f"{what} {path} cannot be read as an image ({reason}); give {expected} "
                              "(.nii.gz, .nrrd, ...)") from error


def _label_array(image: sitk.Image, what: str) -> np.ndarray:
    """The values of the ``what`` ("prediction", "reference") label map as whole numbers (``anatomy.whole_labels``).

    Raises:
        InputImageError: the map holds a negative value (in a floating-point map: one below -0.001,
            :data:`~SpineSegmentationLib.anatomy.LABEL_TOLERANCE`; one that close to 0, as resampling leaves, is read
            as 0, the background): a label map holds none; it is an intensity image (a CT in HU: air is -1000), whose
            soft tissue (27-50 HU) read as labels would be scored as TotalSegmentator's vertebrae, or a map with a
            negative 'ignore' label. The map holds more than :data:`MAX_LABEL_VALUES`
            distinct values: an image with no negative value (a CT stored unsigned, HU + 1024; an MR), not a map of
            the conventions read here (at most about 120 labels). A floating-point map holds values that are no
            whole numbers: an intensity image (e.g. a CT scaled to [0, 1]), a map resampled with linear
            interpolation, or, where the two cannot be told apart, both named; each with its fix (told by the value
            range and the share of voxels that are no whole number, :func:`~SpineSegmentationLib.anatomy.whole_labels`).
            The map holds more than one value per voxel (a vector image: a 3D Slicer .seg.nrrd whose segments
            overlap, stored in layers).
    """
    layers = image.GetNumberOfComponentsPerPixel()
    if layers > 1:
        raise InputImageError(
            f"the {what} holds {layers} values per voxel, not one label: a 3D Slicer segmentation (.seg.nrrd) whose "
            f"segments overlap is stored in {layers} layers (or a vector image); a label map holds one label per "
            "voxel: in 3D Slicer's Segmentations module open 'Binary labelmap layers', tick 'Force collapse to "
            "single layer' and click 'Collapse labelmap layers' (where segments overlap, the voxel goes to the "
            "segment lowest in the segment list), then save the .seg.nrrd again and give it")
    array = sitk.GetArrayFromImage(image)
    examples = "a spineseg output folder or its labels.nii.gz" if what == "prediction" else (
        "e.g. a VerSe *_seg-vert_msk file or a TotalSegmentator map")
    lowest = negative_label_value(array)  # -1e-6 in a float map is 0, as whole_labels rounds it
    if lowest is not None:
        raise InputImageError(
            f"the {what} holds negative values (lowest {lowest:g}): a label map holds no negative value; it is an "
            f"image, e.g. the CT in HU, not a label map: give the {what}'s label map in its place ({examples}); "
            "a label map with a negative 'ignore' label: set that label to 0, the background (e.g. SimpleITK's "
            "ChangeLabel), and give it again")
    # counted on whole numbers: a float image (an MR) is an image; a float map resampled linearly (a few hundred
    # values, about 120 when rounded) and a float image scaled to [0, 1] (0 and 1 when rounded) are then told apart by
    # whole_labels (the share of voxels that are no whole number)
    distinct = distinct_values(np.rint(array) if np.issubdtype(array.dtype, np.floating) else array)
    if distinct > MAX_LABEL_VALUES:
        raise InputImageError(
            f"the {what} holds {distinct} distinct values, more than {MAX_LABEL_VALUES}: it is an image, e.g. a CT "
            f"stored unsigned (HU + 1024) or an MR, not a label map (a map of the VerSe or TotalSegmentator "
            f"numbering holds at most about 120 labels: TotalSegmentator v2 117); give the {what}'s label map in its "
            f"place ({examples})")
    return whole_labels(array, f"the {what} label map")


#: A segment name that tells a vertebra level, any case: the level alone ("L1", "T13", "S" or "sacrum": spineseg's
#: names), with " vertebra" after it ("L1 vertebra": the code meaning that 3D Slicer names a segment by when its
#: terminology is picked), or "vertebrae_" / "vertebrae " before it ("vertebrae_L1": TotalSegmentator's names; its
#: "vertebrae_S1" is the sacrum, as in :func:`anatomy.to_verse`).
_LEVEL_NAME = re.compile(r"(?:vertebrae?[ _]+)?(?P<level>[a-z]+\d*)(?:[ _]+vertebra)?", re.IGNORECASE)
#: A name that looks like a vertebra's although it tells no level ("L2 (edited)", "Vertebra in Lumbar spine").
_VERTEBRA_LIKE = re.compile(r"vertebra|sacrum|(?<![a-z0-9])[ctls]\d{1,2}(?!\d)", re.IGNORECASE)
#: The advice given where a segment is not read as a level.
_NAME_THEM = ("name each vertebra's segment as its level (L1, 'L1 vertebra' or vertebrae_L1) or pick its level from "
              "spineseg's terminology in 3D Slicer, and save it again")
#: Said of a segment whose terminology is the generic "Vertebra" from a list other than spineseg's.
_GENERIC_VERTEBRA = ("coded as the generic 'Vertebra' of a terminology list other than spineseg's (3D Slicer's own "
                     "lists have no code per level), which tells no level")


def _listed(items: Sequence[str], most: int = 8) -> str:
    """The first ``most`` of ``items`` joined for a message ("1, 2, 3, ..." where there are more)."""
    return ", ".join(items[:most]) + (", ..." if len(items) > most else "")


def _name_level(name: str) -> Optional[int]:
    """VerSe label that a segment's name tells (:data:`_LEVEL_NAME`: "L1", "L1 vertebra", "vertebrae_L1"; the level
    read by :func:`anatomy.verse_label`, "vertebrae_S1" as the sacrum); None for a name that tells no level."""
    match = _LEVEL_NAME.fullmatch(name.strip())
    if match is None:
        return None
    level = match.group("level")
    if level.upper() == "S1":
        return SACRUM
    try:
        return verse_label(level)
    except ValueError:  # a name of that shape that is no level ("Liver"): not a vertebra's
        return None


def _tag(tags: str, key: str) -> Optional[str]:
    """The value of the tag ``key`` in a segment's tags (``Segment<i>_Tags`` of a .seg.nrrd: ``key:value`` pairs
    separated by "|"); None where it has none."""
    for tag in tags.split("|"):
        name, separator, value = tag.partition(":")
        if separator and name == key:
            return value
    return None


def _terminology_codes(tags: str) -> Optional[list[list[str]]]:
    """The parts of a segment's ``TerminologyEntry`` tag, from its tags (``Segment<i>_Tags`` of a .seg.nrrd:
    ``key:value`` pairs separated by "|"): ``context~category~type~typeModifier~anatomicContext~region~
    regionModifier``, each split at "^" (a code: ``scheme^value^meaning``;
    :func:`~SpineSegmentationLib.terminology.slicer_terminology_entry`). None where there is no such entry of 7
    parts."""
    entry = _tag(tags, "TerminologyEntry")
    if entry is None:
        return None
    codes = [part.split("^") for part in entry.split("~")]
    return codes if len(codes) == 7 else None


def _terminology_level(tags: str) -> Optional[int]:
    """VerSe label that a segment's terminology tells, from its tags (:func:`_terminology_codes`): the SNOMED CT
    (scheme "SCT") type code of a level (C1..L5, sacrum), or, in spineseg's own terminology context
    (:data:`~SpineSegmentationLib.terminology.TERMINOLOGY_CONTEXT_NAME`), the generic "Vertebra" with the region
    "Lumbar spine" (L6) or "Thoracic spine" (T13), the reverse of
    :func:`~SpineSegmentationLib.terminology.vertebra_terminology`. 3D Slicer's own terminology lists (5.6-5.10) have
    no code per level, only the generic "Vertebra" (with a region such as "Lumbar spine"): a vertebra coded there
    tells no level, not L6 (:func:`_generic_vertebra`). None for any other entry or none."""
    codes = _terminology_codes(tags)
    if codes is None or len(codes[2]) != 3 or codes[2][0] != SCHEME:
        return None
    type_code, region = codes[2][1], codes[5]
    for label in VERSE_NAMES:
        term = vertebra_terminology(label)
        if term.type[1] != type_code:
            continue
        if not term.fallback:
            return label
        if (codes[0][0] == TERMINOLOGY_CONTEXT_NAME and len(region) == 3 and region[0] == SCHEME
                and region[1] == term.region[1]):
            return label
    return None


def _generic_vertebra(tags: str) -> bool:
    """Whether a segment's terminology (from its tags) is the generic "Vertebra" (SNOMED CT 51282000) telling no level
    (:func:`_terminology_level` None): as 3D Slicer's own lists code every vertebra."""
    codes = _terminology_codes(tags)
    return (codes is not None and len(codes[2]) == 3 and tuple(codes[2][:2]) == GENERIC_VERTEBRA[:2]
            and _terminology_level(tags) is None)


@dataclass(frozen=True)
class _Segment:
    """A segment of a 3D Slicer segmentation as read: its name, its label value (None where none is recorded or it is
    no whole number above 0, the background), the VerSe label its name or else its terminology tells (None: neither
    tells a level), ``by_terminology``: told by the terminology, the name telling none; ``other_level``: the level
    its terminology tells where that differs from its name's (the name is read); ``generic``: its terminology is the
    generic "Vertebra" that tells no level (:func:`_generic_vertebra`); ``complete``: its completeness flag from
    the ``SpineSegmentation.Complete`` tag that spineseg and the Slicer module write, read as the module reads it:
    False only where it is exactly "false", True for any other value (None: no such tag)."""

    name: str
    value: Optional[int]
    level: Optional[int] = None
    by_terminology: bool = False
    other_level: Optional[int] = None
    generic: bool = False
    complete: Optional[bool] = None

    def listed(self) -> str:
        """'name' = value, for a message."""
        return f"'{self.name}' = {self.value}" if self.value is not None else f"'{self.name}' (no label value)"


def _slicer_segments(image: sitk.Image) -> list[_Segment]:
    """The segments of a 3D Slicer segmentation (a ``.seg.nrrd`` as read: its ``Segment<i>_Name``,
    ``Segment<i>_LabelValue`` and ``Segment<i>_Tags`` fields), each with the level its name (:func:`_name_level`) or
    else its terminology (:func:`_terminology_level`) tells; [] for an image that is no such segmentation. Slicer
    numbers a segment's voxels in the order the segments were made (1, 2, ...), not as its name says.

    Where the name and the terminology tell different levels (a person renamed the segment or picked another
    terminology: 3D Slicer changes neither with the other where the name was given, as spineseg gives it), the name
    is read: it is what the segment list shows, and the Slicer module reads a segment's level from its name too (after
    its own ``SpineSegmentation.Label`` tag, which plain 3D Slicer edits leave as spineseg wrote it and which is
    therefore not read here); ``other_level`` records the terminology's."""
    segments: list[_Segment] = []
    index = 0
    while image.HasMetaDataKey(f"Segment{index}_Name"):
        key = f"Segment{index}_"
        index += 1
        name = image.GetMetaData(key + "Name")
        value = image.GetMetaData(key + "LabelValue").strip() if image.HasMetaDataKey(key + "LabelValue") else ""
        tags = image.GetMetaData(key + "Tags") if image.HasMetaDataKey(key + "Tags") else ""
        named, coded = _name_level(name), _terminology_level(tags)
        level = named if named is not None else coded
        flag = _tag(tags, COMPLETE_TAG)
        segments.append(_Segment(name, int(value) if value.isdecimal() and int(value) > 0 else None, level,
                                 by_terminology=named is None and coded is not None,
                                 other_level=coded if named is not None and coded not in (None, named) else None,
                                 generic=level is None and _generic_vertebra(tags),
                                 complete=None if flag is None else flag != "false"))
    return segments


def _segment_completeness(segments: Sequence[_Segment]
                          ) -> Optional[tuple[dict[int, bool], list[int], list[int]]]:
    """``({VerSe label: complete}, untagged levels, conflicting levels)`` from the ``SpineSegmentation.Complete`` tags
    of a 3D Slicer segmentation's segments (:func:`_slicer_segments`) read as a level (:func:`_read_by_segments`), as
    spineseg writes them in segmentation.seg.nrrd and the Slicer module keeps them (a person's toggle included); None
    where no such segment carries the tag (another program's segmentation, or a map that is none). Where some carry it,
    a segment without it is complete, as the Slicer module reads it (its correction, table and display: the tag is
    "false" or the vertebra is complete); those levels are the second item (VerSe labels, ascending; one merged with a
    "false" segment is the third's). A level read from several segments (merged) is flagged only where all of them read
    the same (complete or not); the others are the third item (VerSe labels, ascending), unflagged: their completeness
    is not scored."""
    read = _read_by_segments(segments)
    if not any(s.complete is not None for s in read):
        return None
    flags: dict[int, set[bool]] = {}
    for s in read:
        flags.setdefault(s.level, set()).add(s.complete is not False)
    conflicting = sorted(level for level, found in flags.items() if len(found) > 1)
    untagged = sorted({s.level for s in read if s.complete is None} - set(conflicting))  # scored as complete
    return {level: found.pop() for level, found in flags.items() if len(found) == 1}, untagged, conflicting


def _read_by_segments(segments: Sequence[_Segment]) -> list[_Segment]:
    """The segments of a 3D Slicer segmentation (:func:`_slicer_segments`) read as a level: with a level and a label
    value."""
    return [s for s in segments if s.level is not None and s.value is not None]


def _segment_messages(what: str, segments: Sequence[_Segment]) -> list[tuple[str, bool]]:
    """(message, also warned) for the ``what`` ("prediction", "reference") 3D Slicer segmentation read by its
    ``segments`` (:func:`_slicer_segments`, some read as a level): a segment whose name and terminology tell different
    levels (warned), segments read as the same level, merged into one vertebra (warned; not the sacrum: spineseg's "S"
    and TotalSegmentator's "vertebrae_S1" are both its parts), segments left out (warned where one looks like a
    vertebra: its name, a level without a label value, or the generic "Vertebra" terminology)."""
    messages: list[tuple[str, bool]] = []
    read = _read_by_segments(segments)
    for s in read:
        if s.other_level is not None:
            messages.append((f"segment {s.listed()} of the {what} (a 3D Slicer segmentation): its name says "
                             f"{VERSE_NAMES[s.level]}, its terminology {VERSE_NAMES[s.other_level]}; read as "
                             f"{VERSE_NAMES[s.level]}, by its name; if it is {VERSE_NAMES[s.other_level]}, rename it "
                             f"{VERSE_NAMES[s.other_level]} in 3D Slicer and save it again", True))
    by_level: dict[int, list[_Segment]] = {}
    for s in read:
        by_level.setdefault(s.level, []).append(s)
    merged = {level: group for level, group in by_level.items() if len(group) > 1 and level != SACRUM}
    if merged:
        messages.append((f"segments of the {what} (a 3D Slicer segmentation) read as the same level, merged into one "
                         "vertebra: " + "; ".join(f"{VERSE_NAMES[level]}: " + ", ".join(s.listed() for s in group)
                                                  for level, group in sorted(merged.items()))
                         + "; if they are different vertebrae, name each as its own level and save it again", True))
    left_out = [s for s in segments if s.level is None or s.value is None]
    if left_out:
        generic = [s for s in left_out if s.generic]
        messages.append((f"segments of the {what} (a 3D Slicer segmentation) read as no vertebra level, left out "
                         "(their voxels scored as background): " + _listed([s.listed() for s in left_out])
                         + (f" ({len(generic)} of them {_GENERIC_VERTEBRA})" if generic else "")
                         + f"; if one is a vertebra, {_NAME_THEM}",
                         any(_VERTEBRA_LIKE.search(s.name) or s.level is not None or s.generic for s in left_out)))
    return messages


def _verse_array(image: sitk.Image, what: str, numbering: str, notes: Optional[list[str]] = None,
                 warn: bool = True, stacklevel: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The values of the ``what`` ("prediction", "reference") map as read (:func:`_label_array`) and the map in VerSe
    numbers, numpy order [z, y, x]. A 3D Slicer segmentation with a segment read as a level (:func:`_slicer_segments`)
    is read by its segments (``numbering`` plays no part): each such segment's voxels get its level, those of the
    other segments 0 (background). Any other map is read by its values in ``numbering`` (:func:`anatomy.to_verse`).

    Notes (appended to ``notes`` where given): a segmentation read by its segments where a label value differs from
    its level, a level is told by the terminology, or ``numbering`` is not "verse" (it plays no part); a segment whose
    name and terminology tell different levels (read by its name); segments read as the same level (merged); the
    segments left out, with their label values.

    Warns (where ``warn``; ``stacklevel`` as :func:`warnings.warn`'s, counted from here):
        UserWarning: a segment whose name and terminology tell different levels; segments read as the same level
            (the sacrum aside); a segment left out whose name looks like a vertebra's ("L2 (edited)") or whose
            terminology is the generic "Vertebra" (3D Slicer's own lists); a segmentation none of whose segments is
            read as a level (scored by its values as ``numbering`` numbers, which Slicer gives in the order the
            segments were made; also a note).

    Raises:
        InputImageError: as :func:`_label_array`; a map read as VerSe numbers holds labels of another convention.
    """
    array = _label_array(image, what)
    segments = _slicer_segments(image)
    read = _read_by_segments(segments)
    if not read:
        if segments:
            generic = [s for s in segments if s.generic]
            message = (f"the {what} is a 3D Slicer segmentation none of whose segments is read as a vertebra level ("
                       + _listed([s.listed() for s in segments])
                       + (f"; {len(generic)} of them {_GENERIC_VERTEBRA}" if generic else "")
                       + f"): it is scored by its voxel values as {numbering} numbers, but 3D Slicer numbers segments "
                       f"in the order they were made (1, 2, ...), not by level; {_NAME_THEM}")
            if notes is not None:
                notes.append(message)
            if warn:
                warnings.warn(message, UserWarning, stacklevel=stacklevel)
        if numbering == "verse":
            _check_verse_labels(array, what)
        return array, to_verse(array, numbering)
    # one pass over the voxels: a lookup table from label value (1 and up) to level; 0 (the background) and values no
    # segment read has get 0. Where every value fits a table of 2^16 entries it is indexed straight away; otherwise
    # the values beyond it and below 0 are clipped to its ends, which hold 0 (slower)
    low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
    top = max(s.value for s in read)
    direct = low >= 0 and high < 1 << 16
    table = np.zeros(max(top, high) + 1 if direct else top + 2, dtype=np.int16)
    for s in sorted(read, key=lambda s: s.value, reverse=True):  # a value's first segment in the list wins
        table[s.value] = s.level
    verse = table[array] if direct else np.take(table, array, mode="clip")
    if notes is not None and (numbering != "verse" or any(s.value != s.level or s.by_terminology for s in read)):
        notes.append(f"the {what} is a 3D Slicer segmentation read by its segment names, not its voxel values ("
                     + ", ".join(f"{VERSE_NAMES[s.level]} = {s.value}"
                                 + (f" by the terminology of '{s.name}'" if s.by_terminology else "")
                                 for s in sorted(read, key=lambda s: s.value))
                     + (f"; --{what}-convention plays no part" if numbering != "verse" else "") + ")")
    for message, warned in _segment_messages(what, segments):
        if notes is not None:
            notes.append(message)
        if warn and warned:
            warnings.warn(message, UserWarning, stacklevel=stacklevel)
    return array, verse


def _check_verse_labels(labels: np.ndarray, what: str) -> None:
    """Raise InputImageError when the ``what`` ("reference", "prediction") map read as VerSe numbers holds labels of
    another convention."""
    foreign = foreign_verse_labels(labels)
    if foreign:
        raise InputImageError(f"the {what} holds labels that are no VerSe vertebra number ({foreign}): it is "
                              f"probably another convention; pass --{what}-convention totalseg for a "
                              "TotalSegmentator 'total' map, or totalseg_vertebrae; a VerSe sub-region mask "
                              "(*_seg-subreg_msk, labels 41-50 and 81-92) is no vertebra mask: give the "
                              "*_seg-vert_msk file")


def _with_array(array: np.ndarray, like: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.int16))
    image.CopyInformation(like)
    return image


def _load_prediction(prediction) -> tuple[sitk.Image, str, Optional[dict[int, bool]]]:
    """Label image, description, and completeness from vertebrae.json when ``prediction`` is an output folder."""
    if isinstance(prediction, (str, os.PathLike)) and Path(prediction).is_dir():
        folder = Path(prediction)
        labels_path = folder / OUTPUT_FILES["labels"]
        if not labels_path.is_file():
            raise InputImageError(
                f"{folder} is a folder but holds no {OUTPUT_FILES['labels']}; give a spineseg output folder or a "
                "label map file"
            )
        completeness = None
        json_path = folder / OUTPUT_FILES["vertebrae"]
        if json_path.is_file():
            document = read_vertebrae_json(json_path)
            try:
                completeness = {int(v["label"]): bool(v["complete"]) for v in document["vertebrae"]}
            except (KeyError, TypeError, ValueError) as exc:  # an entry edited by hand or damaged
                raise InputImageError(
                    f"{json_path}: a vertebra entry has no whole-number 'label' or no 'complete' flag "
                    f"({type(exc).__name__}: {exc}); restore the file from the run that wrote it, or run the "
                    "segmentation again") from exc
        return _read_label_image(labels_path, "prediction")[0], str(folder), completeness
    image, description = _read_label_image(prediction, "prediction")
    return image, description, None


def _spineseg_folder(source, roles: Sequence[str] = ("labels", "segmentation")) -> Optional[Path]:
    """The spineseg output folder that ``source`` is (a folder) or holds as one of its ``roles`` files
    (``OUTPUT_FILES[role]``; by default its label map, labels.nii.gz or segmentation.seg.nrrd), recognised by the
    file's name and the folder's vertebrae.json; None for anything else (an ``sitk.Image``, another file)."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    path = Path(source)
    names = {OUTPUT_FILES[role] for role in roles}
    folder = path if path.is_dir() else path.parent if path.name in names else None
    return folder if folder is not None and (folder / OUTPUT_FILES["vertebrae"]).is_file() else None


#: Largest difference, mm^3, between a vertebra's ``volume_mm3`` in vertebrae.json and its voxels in labels.nii.gz
#: (count x voxel volume) that still counts as the map spineseg wrote: the recorded value is rounded to 0.1 mm^3
#: (0.05), and the NIfTI header keeps the spacing as 32-bit floats (a relative 1e-6 covers it).
VOLUME_ROUNDING_MM3 = 0.05


def _labels_changed(image: sitk.Image, document: dict) -> bool:
    """Whether ``image``, the ``labels.nii.gz`` or ``segmentation.seg.nrrd`` of a spineseg output folder as read, is
    no longer the map the folder's vertebrae.json (``document``) describes: saved over (edited in Slicer or ITK-SNAP,
    replaced). It is when its grid size differs from ``input.size``, its pixel type holds fractions (spineseg writes
    integers), its labels differ from the listed ones, or a vertebra's voxel count x voxel volume differs from its
    ``volume_mm3`` by more than the rounding (:data:`VOLUME_ROUNDING_MM3`). A 3D Slicer segmentation read by its
    segments (:func:`_slicer_segments`) is compared as so read, in VerSe numbers, not by its voxel values (which
    Slicer renumbers 1, 2, ... when it saves a segmentation again): a segment renamed to another level changes it, a
    segmentation saved again unchanged does not; so does a segment whose name and terminology tell different levels.
    A record that lacks what a comparison needs (an older or damaged file) tells nothing: False.
    """
    recorded_input = document.get("input")
    size = recorded_input.get("size") if isinstance(recorded_input, dict) else None
    if isinstance(size, list) and size != list(image.GetSize()):
        return True
    if sitk.GetArrayViewFromImage(image).dtype.kind not in "iu":
        return True
    segments = _slicer_segments(image)
    if any(s.other_level is not None for s in segments):
        return True  # a level a person picked in 3D Slicer
    if _read_by_segments(segments):
        image = _with_array(_verse_array(image, "reference", "verse", warn=False)[1], image)
    try:
        recorded = {int(v["label"]): float(v["volume_mm3"]) for v in document["vertebrae"]}
    except (KeyError, TypeError, ValueError):  # an entry without a number: nothing to compare with
        return False
    measured = label_measurements(image)
    if set(measured) != set(recorded):
        return True
    voxel_mm3 = float(np.prod(image.GetSpacing()))
    return any(abs(count * voxel_mm3 - recorded[label]) > VOLUME_ROUNDING_MM3 + 1e-6 * recorded[label]
               for label, (count, _) in measured.items())


def _made_or_stated_by_a_person(folder: Path, labels: sitk.Image) -> bool:
    """Whether spineseg output ``folder`` holds anything a person made or stated: a vertebra its vertebrae.json
    records as made or kept by a person (``edited``, the correction workflow), whose level a person stated
    (``level_stated``: renumbering, an applied alternative) or whose completeness a person set
    (``complete_stated``), or a label map saved over since (:func:`_labels_changed`; ``labels``: the folder's
    labels.nii.gz or segmentation.seg.nrrd as already read, not read again). A vertebrae.json that cannot be read
    records none."""
    try:
        document = read_vertebrae_json(folder / OUTPUT_FILES["vertebrae"])
    except SpineSegmentationError:  # damaged: nothing it records can be relied on; the caller warns as for none
        return False
    if any(isinstance(v, dict) and any(v.get(key) is True for key in ("edited", "level_stated", "complete_stated"))
           for v in document["vertebrae"]):
        return True
    return _labels_changed(labels, document)


def _labels_file(source) -> Optional[Path]:
    """The label map file that ``source`` names: itself, or a folder's labels.nii.gz; None for an ``sitk.Image`` or
    a path that does not exist."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    path = Path(source)
    path = path / OUTPUT_FILES["labels"] if path.is_dir() else path
    return path if path.is_file() else None


def _check_not_itself(prediction, reference) -> None:
    """Refuse a reference that is the prediction: the same file (also through a link, or a spineseg folder given as
    the prediction and its labels.nii.gz as the reference), or a copy of the same spineseg result (both folders'
    vertebrae.json the same document and their labels.nii.gz the same bytes). Scored against itself every
    vertebra gets Dice 1."""
    pred_file, ref_file = _labels_file(prediction), _labels_file(reference)
    if pred_file is None or ref_file is None:
        return
    if os.path.samefile(pred_file, ref_file):
        same = (f"the label map of the prediction {prediction}" if Path(prediction).is_dir() else
                "the prediction itself")
        raise InputImageError(
            f"the reference {reference} is {same}: scored against itself every vertebra gets Dice 1; give the "
            "reference label map, e.g. the VerSe *_seg-vert_msk file of the scan or a result a person corrected")
    pred_folder, ref_folder = _spineseg_folder(pred_file), _spineseg_folder(ref_file)
    if pred_folder is None or ref_folder is None:
        return
    try:
        same_record = (read_vertebrae_json(pred_folder / OUTPUT_FILES["vertebrae"])
                       == read_vertebrae_json(ref_folder / OUTPUT_FILES["vertebrae"]))
    except SpineSegmentationError:  # a damaged record: no copy can be told; the scores are given as they are
        return
    if same_record and filecmp.cmp(pred_file, ref_file, shallow=False):
        raise InputImageError(
            f"the reference {reference} is a copy of the prediction {prediction} (the same {OUTPUT_FILES['labels']} "
            f"and {OUTPUT_FILES['vertebrae']}, the same run): scored against itself every vertebra gets Dice 1; "
            "give the reference label map, e.g. the VerSe *_seg-vert_msk file of the scan or a result a person "
            "corrected")


def _check_not_own_segmentation(prediction, reference, pred_image: sitk.Image, ref_image: sitk.Image,
                                prediction_convention: str, reference_convention: str) -> None:
    """Refuse a reference that is the prediction in its folder's other file: the prediction a spineseg output folder
    (or its labels.nii.gz) and the reference that folder's segmentation.seg.nrrd, or the other way round
    (``pred_image``, ``ref_image``: the two as read), holding the same vertebrae on the same grid (in VerSe numbers,
    read as :func:`_verse_array` does in the conventions given): scored against itself every vertebra gets Dice 1. A
    segmentation.seg.nrrd saved over since (corrected in 3D Slicer) holds other vertebrae and is scored; so is one
    with a segment whose name and terminology tell different levels (a person picked another level in 3D Slicer,
    which kept the name: :func:`_slicer_segments`), whichever is read.

    Raises:
        InputImageError: as said; as :func:`_verse_array` for a map that cannot be read.
    """
    pred_folder, ref_folder = _spineseg_folder(prediction), _spineseg_folder(reference)
    if pred_folder is None or ref_folder is None or not os.path.samefile(pred_folder, ref_folder):
        return
    if not same_grid(pred_image, ref_image):
        return
    if any(s.other_level is not None for image in (pred_image, ref_image) for s in _slicer_segments(image)):
        return  # a level a person picked that the voxels do not show: changed, scored (with a warning)
    pred = _verse_array(pred_image, "prediction", prediction_convention, warn=False)[1]
    if np.array_equal(pred, _verse_array(ref_image, "reference", reference_convention, warn=False)[1]):
        raise InputImageError(
            f"the reference {reference} holds the same vertebrae as the prediction {prediction} (the "
            f"{OUTPUT_FILES['labels']} and {OUTPUT_FILES['segmentation']} of one spineseg result, {pred_folder}): "
            "scored against itself every vertebra gets Dice 1; give the reference label map, e.g. the VerSe "
            "*_seg-vert_msk file of the scan or a result a person corrected")


def _refuse_folder_reference(reference) -> None:
    """Refuse a spineseg output folder given as the reference (the two given in swapped order)."""
    if _spineseg_folder(reference) is not None and Path(reference).is_dir():
        raise InputImageError(
            f"the reference {reference} is a spineseg output folder, a prediction: the prediction comes first and "
            "the reference, a label map file, second (spineseg evaluate PREDICTION REFERENCE); to compare two "
            f"spineseg results give the second one's {OUTPUT_FILES['labels']}")


def _check_order(prediction, reference, reference_image: sitk.Image, notes: list[str]) -> None:
    """Warn (and note) when the reference (a file, read as ``reference_image``) is a spineseg result with nothing in
    it recorded as made or stated by a person (:func:`_made_or_stated_by_a_person`) while the prediction is a file
    that is none: the two are probably in swapped order (identification, purity, false positives and completeness
    are not symmetric). A spineseg output folder as the reference is refused before
    (:func:`_refuse_folder_reference`)."""
    reference_folder = _spineseg_folder(reference)
    if reference_folder is None or reference_image.GetNumberOfComponentsPerPixel() > 1:
        return  # no spineseg result; a .seg.nrrd in layers, refused when read (_label_array)
    if _spineseg_folder(prediction) is not None or isinstance(prediction, sitk.Image):
        return  # two spineseg results compared, or a prediction in memory (whose origin is unknown)
    if _made_or_stated_by_a_person(reference_folder, reference_image):
        return  # a result a person corrected, renumbered or saved over: a reference
    message = (f"the reference {reference} is a spineseg result (a {OUTPUT_FILES['vertebrae']} beside it, nothing "
               f"in it recorded as made or stated by a person) and the prediction {prediction} is not: are the two "
               "in swapped order? The command is spineseg evaluate PREDICTION REFERENCE; the scores (identification, "
               "purity, false positives, completeness) differ when they are swapped")
    notes.append(message)
    warnings.warn(message, UserWarning, stacklevel=3)


def evaluate(
    prediction,
    reference: ImageLike,
    reference_convention: str = "verse",
    prediction_completeness: Optional[Mapping[int, bool]] = None,
    reference_completeness: Optional[Mapping[int, bool]] = None,
    include_sacrum: bool = False,
    prediction_convention: str = "verse",
) -> EvaluationReport:
    """Compare a predicted vertebra label map with a reference (see the module docstring for the measures).

    Args:
        prediction: a label map (path or ``sitk.Image``; values that are not vertebrae are ignored), or a
            spineseg output folder (``labels.nii.gz``, and ``vertebrae.json`` for completeness). A floating-point
            map is rounded to integers. A 3D Slicer segmentation (``.seg.nrrd``) whose segments are named as levels
            ("L1", "T13", "sacrum"; "L1 vertebra" as Slicer names a level picked from the terminology;
            "vertebrae_L1" as TotalSegmentator names it; any case) or, named otherwise, carry a level's terminology
            (SNOMED CT code as spineseg writes it; the generic "Vertebra" of 3D Slicer's own lists, which have no code
            per level, tells none) is read by its segments, whatever its label values and convention; its other
            segments are left out (a note names them). Where a segment's name and terminology tell different
            levels, the name is read (what the segment list shows, and what the Slicer module reads); segments read
            as the same level are merged into one vertebra (a warning says so for both; not for the sacrum).
        reference: reference label map (path or ``sitk.Image``; a ``.seg.nrrd`` as ``prediction``).
        reference_convention: label numbering of the reference: "verse", "totalseg" or "totalseg_vertebrae"
            (:func:`anatomy.to_verse`).
        prediction_completeness: ``{VerSe label: complete}`` of the prediction; overrides vertebrae.json and the
            ``SpineSegmentation.Complete`` tags of a 3D Slicer segmentation's segments read as levels (as spineseg's
            segmentation.seg.nrrd and the Slicer module write them), read by the Slicer module's rule: incomplete
            only where the tag is exactly "false"; where some segments carry the tag, one without it is complete (a
            note names those levels); a level merged from segments with different flags is left unflagged (a note
            names it). Without any of them, completeness accuracy is not computed.
        reference_completeness: ``{VerSe label: complete}`` of the reference; default: from the image border.
        include_sacrum: also score the sacrum (26) as a vertebra, in every measure and mean; off by default: the
            method segments vertebrae (only a lowest segment it takes for the top of the sacrum is labelled 26), and
            the sacrum is reported apart (the summary's ``sacrum``, :func:`sacrum_score`; None where neither map
            holds it).
        prediction_convention: label numbering of the prediction, as ``reference_convention``.

    Returns:
        :class:`EvaluationReport`. Rows are in anatomical order (C1 first).

    Raises:
        InputImageError: a file is missing or a folder is not a spineseg output folder; a file is truncated or
            corrupt (:func:`~SpineSegmentationLib.io.check_image_file`); a map read as VerSe numbers holds labels
            of another convention (29-99); the reference holds no vertebra in its convention; a floating-point map
            holds values that are not integers (an image scaled to [0, 1], or a map resampled with linear
            interpolation: told apart, each with its fix); a map holds negative values (an image such as the CT, not
            a label map); the two grids do not overlap in physical space (no voxel of the prediction's grid lands on the
            reference's); the reference is a spineseg output folder (the two given in swapped order); the
            reference is the prediction (the same file, also as a folder's labels.nii.gz, or a copy of the same
            spineseg result, or the folder's segmentation.seg.nrrd holding the same vertebrae as its labels.nii.gz:
            Dice 1 everywhere); a map holds more than :data:`MAX_LABEL_VALUES` distinct values
            (an image such as a CT stored unsigned or an MR); a map holds more than one value per voxel (a 3D Slicer
            segmentation whose segments overlap, stored in layers).
        ValueError: unknown convention; label maps that are not 3D.

    Warns:
        UserWarning: the reference is a spineseg result (``labels.nii.gz`` beside a ``vertebrae.json``) with
            nothing in it recorded as made or stated by a person (no vertebra ``edited``, ``level_stated`` or
            ``complete_stated``, the map as vertebrae.json describes it: the same labels and volumes) and the
            prediction is a file that is none: probably the two in swapped order (also a note in the report). The
            prediction holds labels but no vertebra read in ``prediction_convention`` (probably another convention;
            also a note). A 3D Slicer segmentation none of whose segments is read as a level (scored by its values,
            which Slicer gives in the order the segments were made), one leaving out a segment named like a
            vertebra ("L2 (edited)") or coded as the generic "Vertebra", one whose segment's name and terminology
            tell different levels, or one with segments read as the same level (not the sacrum): also a note.
    """
    notes: list[str] = []
    _check_not_itself(prediction, reference)
    _refuse_folder_reference(reference)
    pred_image, pred_description, folder_completeness = _load_prediction(prediction)
    ref_image, ref_description = _read_label_image(reference, "reference")  # read once, also for the order check
    _check_not_own_segmentation(prediction, reference, pred_image, ref_image, prediction_convention,
                                reference_convention)
    _check_order(prediction, reference, ref_image, notes)
    if prediction_completeness is None:
        prediction_completeness = folder_completeness
    segments = _slicer_segments(pred_image)
    if prediction_completeness is None:  # a corrected 3D Slicer segmentation carries its flags in its segments' tags
        tagged = _segment_completeness(segments)
        if tagged is not None:
            prediction_completeness, untagged, conflicting = tagged
            notes.append(f"prediction completeness: from the {COMPLETE_TAG} tags of the prediction's segments (a 3D "
                         "Slicer segmentation)" + (
                             f"; the segments of {', '.join(VERSE_NAMES[level] for level in untagged)} carry none "
                             "and are read as complete, as the Slicer module reads them" if untagged else "") + (
                             f"; the segments merged into {', '.join(VERSE_NAMES[level] for level in conflicting)} "
                             "read some complete, some not: not scored for completeness (give them one flag, or "
                             "name each as its own level, and save it again)" if conflicting else ""))
    maps = _LabelMaps.build(pred_image, ref_image, reference_convention, include_sacrum, notes, prediction_convention)
    from_border = reference_completeness is None
    if from_border:
        reference_completeness = border_completeness(maps.ref)
    else:
        reference_completeness = {int(k): bool(v) for k, v in reference_completeness.items()}
    ids = identification(maps.pred_centroids, maps.ref_centroids)
    rows = [_score_row(label, maps, ids, prediction_completeness, reference_completeness) for label in maps.labels()]
    summary = _summary(rows, maps)
    if prediction_completeness is None:
        notes.append(_no_completeness_note(prediction, segments))
    elif not summary["n_completeness_evaluated"]:
        notes.append(_unscored_completeness_note(rows, prediction_completeness))
    else:  # how the reference side of the completeness accuracy was told, only where that accuracy is computed
        notes.append("reference completeness: incomplete = touches the border of the reference image" if from_border
                     else "reference completeness: given explicitly")
    notes.append("mean_dice counts missed reference vertebrae as 0; ASSD/HD95 are averaged over vertebrae in both")
    return EvaluationReport(rows, summary, notes, pred_description, ref_description)


def _no_completeness_note(prediction, segments: Sequence[_Segment]) -> str:
    """The report's note when the prediction (its 3D Slicer ``segments``, :func:`_slicer_segments`, where it is such
    a segmentation) has no completeness flags, saying why and how to get them scored."""
    why = "completeness accuracy not computed: "
    if any(s.complete is not None for s in segments):  # tagged, but no tagged segment is read as a level
        return why + (f"none of the prediction's segments that carry a {COMPLETE_TAG} tag is read as a level: "
                      f"{_NAME_THEM}; the other measures do not need it")
    if not isinstance(prediction, (str, os.PathLike)):
        return why + "no prediction completeness given (prediction_completeness: {VerSe label: complete})"
    path = Path(prediction)
    if path.is_dir():
        return why + (f"the folder {path} holds no {OUTPUT_FILES['vertebrae']}, where spineseg records whether each "
                      "vertebra is whole in the image")
    folder = _spineseg_folder(path, ("labels",))
    if folder is not None:
        return why + (f"the prediction is the {path.name} of a spineseg output folder; give the folder "
                      f"{folder} itself: its {OUTPUT_FILES['vertebrae']} holds the completeness flags")
    folder = _spineseg_folder(path, ("segmentation",))
    if folder is not None:  # the folder would score its labels.nii.gz, not this segmentation, perhaps corrected since
        return why + (f"the prediction is the {path.name} of a spineseg output folder, perhaps corrected in 3D Slicer "
                      f"since, whose segments carry no {COMPLETE_TAG} tag; the folder's {OUTPUT_FILES['vertebrae']} "
                      f"flags the vertebrae of its {OUTPUT_FILES['labels']} (from Python, pass "
                      "prediction_completeness); the other measures do not need it")
    return why + ("the prediction is a label map, which does not say whether each vertebra is whole in the image (a "
                  f"spineseg output folder does, in its {OUTPUT_FILES['vertebrae']}, and a 3D Slicer segmentation "
                  f"spineseg wrote, in its segments' {COMPLETE_TAG} tags; from Python, pass "
                  "prediction_completeness); the other measures do not need it")


def _unscored_completeness_note(rows: list[VertebraScore], prediction_completeness: Mapping[int, bool]) -> str:
    """The report's note when the prediction has completeness flags but no reference vertebra was scored
    (``completeness_correct`` None in every row): none was matched by a predicted vertebra, the flags name none of
    the matched predicted vertebrae, or the reference completeness (given explicitly) names none of the matched
    reference vertebrae."""
    def names(labels) -> str:
        ordered = sorted({int(label) for label in labels}, key=lambda label: (_RANK.get(label, len(_RANK)), label))
        return ", ".join(VERSE_NAMES.get(label, str(label)) for label in ordered) or "none"

    why = "completeness accuracy not computed: "
    matched = [r for r in rows if r.in_reference and r.matched_prediction is not None]
    if not matched:
        return why + "no reference vertebra was matched by a predicted one"
    if not any(r.matched_prediction in prediction_completeness for r in matched):
        return why + (f"the prediction's completeness flags (for {names(prediction_completeness)}) name none of the "
                      f"matched predicted vertebrae ({names(r.matched_prediction for r in matched)})")
    return why + ("the reference completeness given names none of the matched reference vertebrae "
                  f"({names(r.label for r in matched)})")


def _note_prediction_without_vertebra(array: np.ndarray, numbering: str, notes: list[str]) -> None:
    """Warn (and note) that the prediction holds labels (``array``, its values as read) but no vertebra (the sacrum
    aside) read as ``numbering`` numbers: every reference vertebra is then a false negative, probably because the
    prediction is in another convention (e.g. a spineseg result given with ``--prediction-convention totalseg``)."""
    found = np.unique(array[array != 0])
    message = (f"the prediction holds no vertebra read as {numbering} numbers (its labels: "
               f"{_listed([str(int(v)) for v in found])}): every reference "
               "vertebra is scored as missed; if the prediction is in another convention, give it with "
               "--prediction-convention (verse for a spineseg result)")
    notes.append(message)
    warnings.warn(message, UserWarning, stacklevel=4)


def _physical_extent(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """(lowest, highest) LPS mm of the corners of ``image``'s grid (voxel edges, half a voxel beyond the centres)."""
    size = np.array(image.GetSize(), dtype=float)
    corners = [image.TransformContinuousIndexToPhysicalPoint([float(c) for c in np.where(bits, size - 0.5, -0.5)])
               for bits in np.ndindex(2, 2, 2)]
    return np.min(corners, axis=0), np.max(corners, axis=0)


def _check_grids_overlap(pred_image: sitk.Image, ref_image: sitk.Image) -> None:
    """Raise InputImageError when no voxel of the prediction's grid lands on the reference's grid (nearest
    neighbour, as the prediction is resampled): their physical extents are disjoint, or the prediction's grid lies
    between the reference's voxel centres. What the maps hold plays no part (an empty prediction passes)."""
    ones = sitk.Image(pred_image.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(pred_image)
    landed = sitk.Resample(ones, ref_image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    if sitk.GetArrayViewFromImage(landed).any():
        return

    def extent(image):
        low, high = _physical_extent(image)
        return "(" + ", ".join(f"{a:.0f}..{b:.0f}" for a, b in zip(low, high)) + ") mm"
    raise InputImageError(
        f"the prediction and the reference do not overlap in physical space (prediction grid {extent(pred_image)}, "
        f"reference grid {extent(ref_image)}, LPS x, y, z): they are of different scans, or one header has a wrong "
        "origin or direction; compare the two headers' origin, spacing and direction (e.g. in 3D Slicer, or "
        "SimpleITK's ReadImage) and give the prediction made on the reference's scan"
    )


@dataclass
class _LabelMaps:
    """Prediction and reference in VerSe numbers on the reference's grid, and what every row needs of them."""

    pred: np.ndarray  # the prediction on the reference's grid
    ref: np.ndarray
    spacing_zyx: tuple[float, float, float]
    pred_centroids: dict[int, np.ndarray]
    ref_centroids: dict[int, np.ndarray]
    pred_volumes: dict[int, float]
    ref_volumes: dict[int, float]
    overlaps: dict[tuple[int, int], int]
    matches: dict[int, int]
    pred_counts: dict[int, int]
    ref_counts: dict[int, int]
    sacrum: Optional[dict] = None  # :func:`sacrum_score`, before the sacrum is left out

    @classmethod
    def build(cls, pred_image: sitk.Image, ref_image: sitk.Image, convention: str, include_sacrum: bool,
              notes: list[str], prediction_convention: str = "verse") -> "_LabelMaps":
        for image, what in ((pred_image, "prediction"), (ref_image, "reference")):
            if image.GetDimension() != 3:
                raise InputImageError(f"the {what} label map must be 3D, got {image.GetDimension()}D")
        for numbering in (prediction_convention, convention):
            if numbering not in CONVENTIONS:
                raise ValueError(f"unknown label convention {numbering!r}; use one of {CONVENTIONS}")
        converted = []
        for image, what, numbering in ((pred_image, "prediction", prediction_convention),
                                       (ref_image, "reference", convention)):
            array, verse = _verse_array(image, what, numbering, notes)
            if (what == "prediction" and array.any() and not _read_by_segments(_slicer_segments(image))
                    and not np.any((verse != 0) & (verse != SACRUM))):  # no convention plays a part where read so
                _note_prediction_without_vertebra(array, numbering, notes)
            if what == "reference" and not verse.any():
                found = np.unique(array[array != 0])
                raise InputImageError(
                    "the reference holds no vertebra" + (
                        f" read as {numbering} numbers (its labels: {_listed([str(int(v)) for v in found])}); "
                        "give the convention it is in with "
                        "--reference-convention" if found.size else ": it is empty") + "; nothing to score against")
            converted.append(verse)
        pred, ref = converted
        pred_native_image = _with_array(pred, pred_image)
        predicted = {int(v) for v in np.unique(pred[pred > 0])}  # on the prediction's own grid
        if not same_grid(pred_native_image, ref_image):
            _check_grids_overlap(pred_image, ref_image)
            pred = sitk.GetArrayFromImage(sitk.Resample(
                pred_native_image, ref_image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkInt16
            ))
            notes.append("grids differ: the prediction was resampled (nearest neighbour) onto the reference's grid, "
                         "which holds the whole reference; the reference says nothing outside it")
        sacrum = sacrum_score(pred, ref, ref_image.GetSpacing()[::-1])
        if not include_sacrum:
            pred[pred == SACRUM] = 0
            ref[ref == SACRUM] = 0
            predicted.discard(SACRUM)
            if sacrum is not None:
                notes.append("the sacrum (26) is not one of the vertebrae scored (VerSe labels C1-L6 and T13, no "
                             "sacrum; spineseg labels 26 only a lowest segment it takes for the top of the sacrum): "
                             "its overlap is reported apart (summary 'sacrum'), not in the vertebra measures")
        ref_image = _with_array(ref, ref_image)
        overlaps = overlap_counts(pred, ref)
        pred_counts = {int(k): int(v) for k, v in zip(*np.unique(pred[pred > 0], return_counts=True))}
        outside = sorted(predicted - set(pred_counts), key=_RANK.get)
        if outside:  # wholly outside the reference's grid: neither right nor wrong there
            notes.append("predicted vertebrae outside the reference's grid, not scored: "
                         + ", ".join(VERSE_NAMES.get(k, str(k)) for k in outside))
        # centroids and volumes of the prediction as the reference's grid holds it, as the reference's own: where
        # that grid cuts a vertebra, both sides' centroids are of the part inside
        pred_on_reference = _with_array(pred, ref_image)
        return cls(
            pred=pred, ref=ref, spacing_zyx=ref_image.GetSpacing()[::-1],
            pred_centroids=label_centroids_lps(pred_on_reference),
            ref_centroids=label_centroids_lps(ref_image),
            pred_volumes=label_volumes_mm3(pred_on_reference),
            ref_volumes=label_volumes_mm3(ref_image), overlaps=overlaps, matches=match_by_overlap(overlaps),
            pred_counts=pred_counts,
            ref_counts={int(k): int(v) for k, v in zip(*np.unique(ref[ref > 0], return_counts=True))},
            sacrum=sacrum,
        )

    def labels(self) -> list[int]:
        """Every label in the reference or the prediction, in anatomical order."""
        return sorted(set(self.ref_centroids) | set(self.pred_centroids), key=_RANK.get)


def _score_row(label: int, maps: _LabelMaps, ids: Mapping[int, tuple[bool, float]], prediction_completeness: Optional[Mapping[int, bool]],
               reference_completeness: Mapping[int, bool]) -> VertebraScore:
    """The per-vertebra measures of one VerSe label."""
    in_ref, in_pred = label in maps.ref_centroids, label in maps.pred_centroids
    p_mask, r_mask = maps.pred == label, maps.ref == label
    d_pr, d_rp = surface_distances(p_mask, r_mask, maps.spacing_zyx)
    matched = maps.matches.get(label) if in_ref else None
    pred_complete = None if prediction_completeness is None else prediction_completeness.get(label)
    correct = None
    if in_ref and matched is not None and prediction_completeness is not None:
        matched_complete = prediction_completeness.get(matched)
        if matched_complete is not None and label in reference_completeness:
            correct = bool(matched_complete) == reference_completeness[label]
    return VertebraScore(
        label=int(label),
        name=VERSE_NAMES.get(int(label), str(label)),
        in_reference=in_ref,
        in_prediction=in_pred,
        dice=dice(p_mask, r_mask) if (p_mask.any() or r_mask.any()) else 0.0,
        assd_mm=assd(d_pr, d_rp),
        hd95_mm=hd95(d_pr, d_rp),
        centroid_distance_mm=(
            float(np.linalg.norm(maps.pred_centroids[label] - maps.ref_centroids[label]))
            if in_ref and in_pred
            else float("nan")
        ),
        identified=ids[label][0] if in_ref else None,
        matched_prediction=matched,
        reference_complete=reference_completeness.get(label) if in_ref else None,
        predicted_complete=None if pred_complete is None else bool(pred_complete),
        completeness_correct=correct,
        reference_volume_mm3=maps.ref_volumes.get(label, 0.0),
        predicted_volume_mm3=maps.pred_volumes.get(label, 0.0),
        purity=_purity(label, matched, maps.overlaps, maps.ref_counts),
        overlap_dice=_overlap_dice(label, matched, maps.overlaps, maps.ref_counts, maps.pred_counts),
    )


def _summary(rows: list[VertebraScore], maps: _LabelMaps) -> dict:
    """The scan-level measures of the per-vertebra rows."""
    ref_labels = sorted(maps.ref_centroids, key=_RANK.get)
    pred_labels = sorted(maps.pred_centroids, key=_RANK.get)
    overlapping_pred = {p for (_, p) in maps.overlaps}
    ref_rows = [r for r in rows if r.in_reference]
    both_rows = [r for r in rows if r.in_reference and r.in_prediction]
    judged = [r.completeness_correct for r in ref_rows if r.completeness_correct is not None]
    summary = {
        "n_reference": len(ref_labels),
        "n_predicted": len(pred_labels),
        "mean_dice": _mean([r.dice for r in ref_rows]),
        "mean_assd_mm": _mean([r.assd_mm for r in both_rows]),
        "mean_hd95_mm": _mean([r.hd95_mm for r in both_rows]),
        "identification_rate": _mean([float(r.identified) for r in ref_rows]),
        "n_identified": sum(bool(r.identified) for r in ref_rows),
        "mean_localization_distance_mm": _mean([r.centroid_distance_mm for r in both_rows]),
        "kappa_linear": weighted_kappa(list(maps.matches), list(maps.matches.values())),
        "n_matched": len(maps.matches),
        "completeness_accuracy": _mean([float(c) for c in judged]),
        "n_completeness_evaluated": len(judged),
        "mean_purity": _mean([r.purity for r in ref_rows]),
        "mean_overlap_dice": _mean([r.overlap_dice if r.matched_prediction is not None else 0.0 for r in ref_rows]),
        "spanning_instances": spanning_instances(maps.overlaps, maps.ref_counts),
        "identification_by_level": {r.name: bool(r.identified) for r in ref_rows},
        "false_positives": [VERSE_NAMES.get(p, str(p)) for p in pred_labels if p not in overlapping_pred],
        "false_negatives": [VERSE_NAMES.get(r, str(r)) for r in ref_labels if r not in maps.matches],
        "sacrum": maps.sacrum,
    }
    for key in ("spanning_instances", "false_positives", "false_negatives"):
        summary[f"n_{key}"] = len(summary[key])
    return summary

def _purity(label: int, matched: Optional[int], overlaps: Mapping[tuple[int, int], int],
            ref_counts: Mapping[int, int]) -> float:
    if label not in ref_counts:
        return float("nan")
    return 0.0 if matched is None else overlaps[(label, matched)] / ref_counts[label]


def _overlap_dice(label: int, matched: Optional[int], overlaps: Mapping[tuple[int, int], int],
                  ref_counts: Mapping[int, int], pred_counts: Mapping[int, int]) -> float:
    if label not in ref_counts:
        return float("nan")
    if matched is None:
        return 0.0
    return 2.0 * overlaps[(label, matched)] / (ref_counts[label] + pred_counts[matched])


def spanning_instances(overlaps: Mapping[tuple[int, int], int], reference_counts: Mapping[int, int],
                       cover_fraction: float = COVER_FRACTION) -> list[dict]:
    """Predicted instances that cover two or more reference vertebrae (they cross a disc).

    Args:
        overlaps: :func:`overlap_counts` of the prediction and the reference.
        reference_counts: ``{reference label: voxel count}``.
        cover_fraction: share of a reference vertebra an instance must hold to cover it.

    Returns:
        ``[{"prediction": name, "covers": [reference names, cranial first]}, ...]`` in anatomical order.
    """
    covered: dict[int, list[int]] = {}
    for (r, p), count in overlaps.items():
        if count >= cover_fraction * reference_counts[r]:
            covered.setdefault(p, []).append(r)
    return [
        {"prediction": VERSE_NAMES.get(p, str(p)), "covers": [VERSE_NAMES.get(r, str(r)) for r in sorted(rs, key=_RANK.get)]}
        for p, rs in sorted(covered.items(), key=lambda item: _RANK.get(item[0], 99))
        if len(rs) >= 2
    ]


def evaluate_points(prediction, centroids: Union[str, os.PathLike],
                    max_distance_mm: float = ID_DISTANCE_MM, prediction_convention: str = "verse",
                    centroids_grid: Optional[ImageLike] = None) -> dict:
    """Identification against point references: a VerSe centroid file of the scan (no masks needed).

    Args:
        prediction: a spineseg output folder or a label map (VerSe numbers) on the scan's grid; a 3D Slicer
            segmentation (.seg.nrrd) is read by its segments as in :func:`evaluate`.
        centroids: VerSe centroid JSON (``[{"direction": [...]}, {"label": n, "X": .., "Y": .., "Z": ..}, ...]``)
            in voxel units of ``centroids_grid``, axes as its ``direction`` codes say.
        max_distance_mm: identification threshold (VerSe: 20 mm).
        prediction_convention: label numbering of the prediction (:func:`evaluate`).
        centroids_grid: the image (path or ``sitk.Image``; only its grid is used) the points were marked on, e.g.
            the CT as VerSe ships it when the prediction was made on a resampled copy; default: the prediction's
            grid (spineseg writes its labels on the input CT's grid).

    Returns:
        ``{"n_reference", "n_predicted", "n_identified", "identification_rate", "mean_localization_distance_mm",
        "identification_by_level": {name: bool}, "distance_mm_by_level": {name: mm or None},
        "missing_levels", "extra_levels", "ignored_reference_labels"}``; extra levels are predicted labels without
        a reference point; ignored are the file's labels that are not scored: the sacrum (26; spineseg's own
        centroid files hold it) and those that are no vertebra of :data:`VERSE_NAMES` (27, the coccyx in VerSe files).

    Raises:
        InputImageError: a file is missing or a folder is not a spineseg output folder; a file is truncated or
            corrupt (:func:`~SpineSegmentationLib.io.check_image_file`); the prediction holds negative values or
            more than :data:`MAX_LABEL_VALUES` distinct values (an image such as the CT, not a label map); a point
            lies outside ``centroids_grid`` (the file refers to another grid); the centroid file is the prediction
            folder's own ``centroids_ctd.json`` (the prediction the folder or its labels.nii.gz; its
            segmentation.seg.nrrd, perhaps corrected in 3D Slicer since, is scored).
        SpineSegmentationError: the file is not a VerSe centroid list
            (:func:`~SpineSegmentationLib.outputs.centroids.read_ctd`).
    """
    pred_image, pred_description, _ = _load_prediction(prediction)
    path = Path(centroids)
    if not path.is_file():
        raise InputImageError(f"centroid file {path} does not exist; give a VerSe *_ctd.json")
    own = _spineseg_folder(prediction, ("labels",))  # its segmentation.seg.nrrd may be corrected since: scored
    if (own is not None and _spineseg_folder(path, ("centroids",)) is not None
            and path.parent.resolve() == own.resolve()):
        raise InputImageError(
            f"the centroid file {path} is the prediction's own ({OUTPUT_FILES['centroids']} of {own}, written with "
            "it): scored against itself every level is identified; give the reference's centroid file, e.g. the "
            "VerSe *_ctd.json of the scan")
    pred = _verse_array(pred_image, "prediction", prediction_convention, stacklevel=3)[1]
    pred[pred == SACRUM] = 0
    pred_centroids = body_centres_lps(_with_array(pred, pred_image))  # the point VerSe marks
    grid, grid_description = (pred_image, "the prediction's grid") if centroids_grid is None else (
        _read_image(centroids_grid, "centroid grid image", "the image the points were marked on")[0],
        "the grid of --centroids-grid")
    points = read_ctd(path, grid)
    size = np.array(grid.GetSize(), dtype=float)
    outside = sorted(label for label, point in points.items()
                     if np.any(np.abs(np.array(grid.TransformPhysicalPointToContinuousIndex(
                         [float(c) for c in point])) - (size - 1) / 2) > size / 2))
    if outside:
        raise InputImageError(
            f"points of {path} lie outside {grid_description} (labels {', '.join(map(str, outside))}): the file "
            "refers to another grid, e.g. the CT before it was resampled or cropped; give the image the points were "
            "marked on with --centroids-grid (spineseg writes its labels on the input CT's grid)")
    # e.g. 27, the coccyx (VerSe), and the sacrum (a spineseg centroid file's): not vertebrae scored here
    ignored = sorted(k for k in points if k not in _RANK or k == SACRUM)
    ref_centroids = {k: v for k, v in points.items() if k in _RANK and k != SACRUM}
    ids = identification(pred_centroids, ref_centroids, max_distance_mm)
    order = sorted(ref_centroids, key=_RANK.get)
    distances = [ids[k][1] for k in order]
    return _json_safe({
        "prediction": pred_description,
        "reference": str(path),
        "n_reference": len(order),
        "n_predicted": len(pred_centroids),
        "n_identified": sum(ids[k][0] for k in order),
        "identification_rate": _mean([float(ids[k][0]) for k in order]),
        "mean_localization_distance_mm": _mean(distances),
        "identification_by_level": {VERSE_NAMES[k]: ids[k][0] for k in order},
        "distance_mm_by_level": {VERSE_NAMES[k]: ids[k][1] for k in order},
        "missing_levels": [VERSE_NAMES[k] for k in order if k not in pred_centroids],
        "extra_levels": [VERSE_NAMES.get(k, str(k)) for k in sorted(pred_centroids, key=_RANK.get) if k not in ref_centroids],
        "ignored_reference_labels": ignored,
    })


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


# ---------------------------------------------------------------------------------------------------------
# Printing and writing
# ---------------------------------------------------------------------------------------------------------


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "-" if not math.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


def format_table(report: EvaluationReport) -> str:
    """The per-vertebra table and the summary as fixed-width text for a terminal. The "ref compl" column shows the
    reference's completeness flag only in the rows whose completeness was scored (``completeness_correct`` not None),
    "-" elsewhere."""
    header = ("level", "ref", "pred", "Dice", "ASSD mm", "HD95 mm", "ctr mm", "ID", "match", "purity", "ref compl",
              "pred compl")
    lines = []
    for r in report.vertebrae:
        lines.append(
            (
                r.name,
                _fmt(r.in_reference),
                _fmt(r.in_prediction),
                _fmt(r.dice),
                _fmt(r.assd_mm, 2),
                _fmt(r.hd95_mm, 2),
                _fmt(r.centroid_distance_mm, 1),
                _fmt(r.identified),
                VERSE_NAMES.get(r.matched_prediction, "-") if r.matched_prediction is not None else "-",
                _fmt(r.purity, 2),
                _fmt(r.reference_complete if r.completeness_correct is not None else None),  # only where scored
                _fmt(r.predicted_complete),
            )
        )
    widths = [max(len(h), *(len(row[i]) for row in lines)) if lines else len(h) for i, h in enumerate(header)]
    out = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in lines]
    s = report.summary
    out.append("")
    out.append(f"prediction: {report.prediction}")
    out.append(f"reference:  {report.reference}")
    out.append(
        f"vertebrae: {s['n_reference']} reference, {s['n_predicted']} predicted, {s['n_identified']} identified "
        f"(rate {_fmt(s['identification_rate'])}), "
        f"mean localization distance {_fmt(s['mean_localization_distance_mm'], 1)} mm"
    )
    out.append(
        f"mean Dice {_fmt(s['mean_dice'])}, mean ASSD {_fmt(s['mean_assd_mm'], 2)} mm, "
        f"mean HD95 {_fmt(s['mean_hd95_mm'], 2)} mm, label kappa (linear) {_fmt(s['kappa_linear'])} "
        f"over {s['n_matched']} matched"
    )
    spans = "; ".join(f"{x['prediction']} covers {'+'.join(x['covers'])}" for x in s["spanning_instances"])
    out.append(
        f"instances: mean purity {_fmt(s['mean_purity'])}, mean overlap Dice (any label) "
        f"{_fmt(s['mean_overlap_dice'])}, spanning two vertebrae: {s['n_spanning_instances']}"
        + (f" ({spans})" if spans else "")
    )
    explained = any(n.startswith("completeness accuracy not computed") for n in report.notes)
    out.append(
        (f"completeness accuracy {_fmt(s['completeness_accuracy'])} over {s['n_completeness_evaluated']}; "
         if s["n_completeness_evaluated"] else
         f"completeness accuracy not computed (no matched vertebra with completeness flags"
         f"{'; see the notes' if explained else ''}); ")
        + f"false positives: {', '.join(s['false_positives']) or 'none'}; "
        f"false negatives: {', '.join(s['false_negatives']) or 'none'}"
    )
    sacrum = s.get("sacrum")
    if sacrum is not None:
        both = sacrum["in_reference"] and sacrum["in_prediction"]
        out.append(
            f"sacrum (apart from the vertebrae): in reference {_fmt(sacrum['in_reference'])}, in prediction "
            f"{_fmt(sacrum['in_prediction'])}" + (f", Dice {_fmt(sacrum['dice'])}, share of the predicted sacrum "
                                                  f"inside the reference's {_fmt(sacrum['predicted_in_reference'], 2)}"
                                                  if both else "")
        )
    out += [f"note: {n}" for n in report.notes]
    return "\n".join(out)


def check_report_free(out_dir: Union[str, os.PathLike], names: Sequence[str] = REPORT_FILES,
                      overwrite: bool = False) -> None:
    """Refuse, before any work, an output folder that :func:`write_report` (``names``: :data:`REPORT_FILES`) or
    :func:`write_points_report` (``[POINTS_REPORT_FILE]``) would refuse after it.

    Raises:
        OutputExistsError: ``out_dir`` is a file, or a file of ``names`` exists there and ``overwrite`` is False.
    """
    from .outputs.staging import OutputStaging

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputExistsError(f"output folder {out_dir} is a file; choose another output folder with -o")
    OutputStaging(out_dir).check_free(names, overwrite)


def _write_together(out_dir: Union[str, os.PathLike], names: Sequence[str], overwrite: bool, write) -> dict[str, Path]:
    """Write the report files ``names`` into ``out_dir`` all together or not at all (``outputs.staging``, as
    ``spineseg segment`` writes its outputs): ``write(folder)`` writes them into a staging folder, and only when it
    returns are they moved into ``out_dir`` (created if needed); a failure or an interrupt while writing (the plot
    takes the longest) leaves ``out_dir`` as it was, an earlier report whole, not half replaced.

    Raises:
        OutputExistsError: ``out_dir`` is a file, or a file of ``names`` exists there and ``overwrite`` is False
            (checked before anything is written).
        OutputWriteError: another spineseg run is writing into ``out_dir``; it is not writable; the disk is full.
    """
    from .outputs.staging import OutputStaging

    with OutputStaging(out_dir) as staging:
        staging.check_free(names, overwrite)
        write(staging.path)
        staging.commit(list(names), overwrite)
    return {name: Path(out_dir) / name for name in names}


def write_points_report(result: dict, out_dir: Union[str, os.PathLike], overwrite: bool = False) -> Path:
    """Write the result of :func:`evaluate_points` as ``evaluation_points.json`` into ``out_dir``.

    Raises:
        OutputExistsError, OutputWriteError: as :func:`write_report`.
    """
    def write(folder: Path) -> None:
        (folder / POINTS_REPORT_FILE).write_text(json.dumps(result, indent=2, allow_nan=False) + "\n",
                                                 encoding="utf-8")

    return _write_together(out_dir, [POINTS_REPORT_FILE], overwrite, write)[POINTS_REPORT_FILE]


def write_report(
    report: EvaluationReport, out_dir: Union[str, os.PathLike], overwrite: bool = False
) -> dict[str, Path]:
    """Write ``evaluation.json`` (summary, table, notes), ``evaluation.csv`` (the table) and ``evaluation.png``
    (bar plots of Dice and ASSD per vertebra) into ``out_dir`` (created if needed), all three together or none (a
    failure or an interrupt leaves an earlier report there whole).

    Returns:
        ``{"json", "csv", "png"}`` -> path.

    Raises:
        OutputExistsError: a report file exists and ``overwrite`` is False (checked before writing anything),
            or ``out_dir`` is a file.
        OutputWriteError: another spineseg run is writing into ``out_dir``; it is not writable; the disk is full.
    """
    def write(folder: Path) -> None:
        (folder / "evaluation.json").write_text(json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n",
                                                encoding="utf-8")
        columns = [f.name for f in fields(VertebraScore)]
        with (folder / "evaluation.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            for row in report.vertebrae:
                writer.writerow({k: ("" if v is None else v) for k, v in _json_safe(asdict(row)).items()})
        _write_bar_plot(report, folder / "evaluation.png")

    written = _write_together(out_dir, REPORT_FILES, overwrite, write)
    return {name.split(".")[-1]: path for name, path in written.items()}


def _plot_tags(report: EvaluationReport) -> list[str]:
    """The words ``evaluation.png`` writes on each row's bars (``""``: none), as the summary counts them: "missed" for
    a false negative and "false +" for a false positive (a level with no voxel overlapping a vertebra of the other
    map; a level can be both); for a level on one side only whose voxels the other map holds under another label,
    "as T12" (a reference level, found as the prediction's T12: its best-matching predicted vertebra) or
    "mislabelled" (a predicted level)."""
    negatives, positives = set(report.summary["false_negatives"]), set(report.summary["false_positives"])
    tags = []
    for r in report.vertebrae:
        words = [word for word, counted in (("missed", r.name in negatives), ("false +", r.name in positives))
                 if counted]
        if not words and not (r.in_reference and r.in_prediction):
            found_as = VERSE_NAMES.get(r.matched_prediction) if r.in_reference else None
            words = [f"as {found_as}" if found_as else "mislabelled"]
        tags.append(", ".join(words))
    return tags


def _write_bar_plot(report: EvaluationReport, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = report.vertebrae
    names = [r.name for r in rows]
    x = np.arange(len(rows))
    fig = Figure(figsize=(max(5.0, 0.45 * len(rows) + 2.0), 5.0))
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.bar(x, [r.dice for r in rows], color="tab:blue")
    top.set_ylim(0, 1.05)
    top.set_ylabel("Dice")
    summary = report.summary
    top.set_title(
        f"mean Dice {_fmt(summary['mean_dice'])}, identification rate {_fmt(summary['identification_rate'])}\n"
        f"mean ASSD {_fmt(summary['mean_assd_mm'], 2)} mm, mean HD95 {_fmt(summary['mean_hd95_mm'], 2)} mm",
        fontsize=9,
    )
    assd_values = [0.0 if not math.isfinite(r.assd_mm) else r.assd_mm for r in rows]
    bottom.bar(x, assd_values, color="tab:orange")
    bottom.set_ylabel("ASSD (mm)")
    for axis in (top, bottom):
        for i, tag in enumerate(_plot_tags(report)):
            if tag:
                axis.text(i, 0.02, tag, transform=axis.get_xaxis_transform(), rotation=90, ha="center",
                          va="bottom", color="tab:red", fontsize=8)
    bottom.set_xticks(x)
    bottom.set_xticklabels(names)
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)
