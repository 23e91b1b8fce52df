"""Interactive correction workflow: click-through segmentation and re-running around a person's edits.

The iterative FCN's instance memory (seed 002, section 3.3) makes corrections cheap: whatever a person has
segmented or fixed goes into the memory, and the network only segments what is not there yet. This module holds
the corrections that run the network:

* :func:`segment_from_point` - the vertebra under a clicked point is segmented with a patch centred on the
  point, then traversal continues up and/or down from it;
* :func:`rerun_with_edits` - segments a person edited are kept voxel for voxel and become the memory, chosen
  vertebrae are segmented again, missing ones are found, and the whole column is labelled again.

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
from scipy import ndimage

from .anatomy import VERSE_NAMES, vertebra_name
from .geometry import label_measurements, labels_on_input_grid, lps_to_index, lps_to_ras, ras_to_lps
from .labeling import refine_labels
from .models import SpineModel
from .pipeline import (COMPLETE_THRESHOLD, GPU_SLIDING_BATCH, ProgressCallback, Reporter, Scan, prepare_scan,
                       run_information, surface_refinement)
from .refinement import refine_surfaces
from .renumbering import (  # re-exported (__all__): the correction workflow's public API is one module
    Relabeling,
    is_column_vertebra,
    apply_alternative,
    labeling_alternatives,
    relabel_label_map,
    relabel_vertebrae,
    renumber,
    renumber_vertebrae,
    set_completeness,
    vertebrae_from_document,
)
from .result import SpineSegmentationResult, Vertebra
from .traversal import DetectedVertebra, PatchPredictor, traverse

__all__ = [
    "segment_from_point", "rerun_with_edits",
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
#: Rough vertebra height, only for the progress estimate (mm), as in ``pipeline.py``.
_TYPICAL_VERTEBRA_MM = 30.0
_DIRECTIONS = ("up", "down")


# --------------------------------------------------------------------------------------------------------------
# input checks and grids


def _label_array(labels: Optional[LabelInput], image: sitk.Image, what: str) -> np.ndarray:
    """``labels`` as an int32 array [k, j, i] on ``image``'s grid; zeros when None."""
    shape = tuple(reversed(image.GetSize()))
    if labels is None:
        return np.zeros(shape, dtype=np.int32)
    if isinstance(labels, sitk.Image):
        same = (labels.GetSize() == image.GetSize()
                and np.allclose(labels.GetSpacing(), image.GetSpacing(), rtol=1e-4)
                and np.allclose(labels.GetOrigin(), image.GetOrigin(), atol=1e-3 * min(image.GetSpacing()))
                and np.allclose(labels.GetDirection(), image.GetDirection(), atol=1e-4))
        if not same:
            raise ValueError(
                f"{what} must be on the CT's grid (size {image.GetSize()}, spacing {image.GetSpacing()}, origin "
                f"{image.GetOrigin()}); got size {labels.GetSize()}, spacing {labels.GetSpacing()}, origin "
                f"{labels.GetOrigin()}. Resample the label map onto the CT (nearest neighbour) first."
            )
        array = sitk.GetArrayFromImage(labels)
    else:
        array = np.asarray(labels)
        if array.shape != shape:
            raise ValueError(f"{what} has shape {array.shape}; a label array on the CT's grid has shape {shape} "
                             "([k, j, i], as sitk.GetArrayFromImage returns it)")
    if not np.issubdtype(array.dtype, np.integer) and not np.all(np.equal(np.mod(array, 1), 0)):
        raise ValueError(f"{what} must hold integer VerSe labels, got non-integer values")
    array = array.astype(np.int32)
    unknown = sorted(set(int(v) for v in np.unique(array)) - set(VERSE_NAMES) - {0})
    if unknown:
        raise ValueError(f"{what} holds values {unknown[:10]} that are not VerSe vertebra labels (1-26, 28); convert "
                         "the map with SpineSegmentationLib.anatomy.to_verse (discs and endplates are dropped)")
    return array


_is_column = is_column_vertebra  # C1..L5, T13 and L6: the labels with a position on the regression scale


def _column_labels(array: np.ndarray) -> list[int]:
    return [int(v) for v in np.unique(array) if _is_column(int(v))]


def _other_labels(array: np.ndarray) -> list[int]:
    """VerSe structures outside the column (the sacrum, 26): kept as given, never in the memory."""
    return [int(v) for v in np.unique(array) if v > 0 and not _is_column(int(v))]


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
# the network around the clicked point


@dataclass
class _Fragment:
    mask: np.ndarray  # bool, window-sized
    src: tuple  # volume slices of the window
    bbox_center: np.ndarray  # global [z, y, x]
    label: float
    p_complete: float


class _Network:
    """The iterative FCN on one canonical volume, with the fragment rule of ``traversal.traverse``."""

    def __init__(self, scan: Scan) -> None:
        self.scan = scan
        self.predictor = PatchPredictor(scan.volume, scan.model, scan.device)
        params = scan.model.traversal
        self.threshold = params.mask_threshold
        self.v_min = max(1, int(round(params.v_min_mm3 / scan.model.preprocessing.spacing_mm**3)))
        self.up = scan.direction == "up"

    def fragment(self, center: np.ndarray, memory: np.ndarray) -> Optional[_Fragment]:
        """Largest connected fragment of at least v_min voxels outside ``memory`` (seed 002 section 3.3)."""
        prob, label, p_complete, (src, dst) = self.predictor.predict([center], memory)[0]
        mask = (prob[dst] >= self.threshold) & (memory[src] < 0.5)
        components, n = ndimage.label(mask)
        if n > 1:
            sizes = np.bincount(components.ravel())
            sizes[0] = 0
            mask = components == int(np.argmax(sizes))
        if int(mask.sum()) < self.v_min:
            return None
        idx = np.argwhere(mask)
        offset = np.array([s.start for s in src])
        bbox_center = np.rint((idx.min(axis=0) + idx.max(axis=0)) / 2.0).astype(int) + offset
        return _Fragment(mask, src, bbox_center, label, p_complete)

    def behind(self, z: float, reference_z: float) -> bool:
        """True when canonical z lies before ``reference_z`` in traversal order (below it for bottom-up)."""
        return z < reference_z if self.up else z > reference_z

    def region_behind(self, z: int) -> tuple[int, int]:
        top = self.scan.volume.shape[0] - 1
        return (0, z - 1) if self.up else (z + 1, top)

    def region_ahead(self, z: int) -> tuple[int, int]:
        top = self.scan.volume.shape[0] - 1
        return (z + 1, top) if self.up else (0, z - 1)


def _near(fragment: _Fragment, point_zyx: np.ndarray, radius_voxels: float) -> bool:
    """True when a voxel of ``fragment`` lies within ``radius_voxels`` of the canonical point."""
    offset = np.array([s.start for s in fragment.src])
    idx = np.argwhere(fragment.mask) + offset
    return bool(idx.size) and float(np.min(np.sum((idx - point_zyx) ** 2, axis=1))) <= radius_voxels**2


def _segment_clicked(net: _Network, memory: np.ndarray, point_zyx: np.ndarray) -> tuple[_Fragment, DetectedVertebra, np.ndarray]:
    """Track the vertebra under the clicked point (seed 002 section 3.3 tracking, started at the point).

    The network segments the *next* vertebra in traversal order that is not in memory (for bottom-up: the
    lowest free one in the patch), and was trained with every vertebra before its target in the memory
    (``training/sampler.py``). A patch centred on a clicked vertebra also shows the free vertebrae before it,
    so at every patch position a fragment that does not contain the point and lies behind it is set aside as a
    *placeholder* in the memory and the patch is evaluated again, until the fragment contains the point: the
    network then sees the situation it was trained for. The placeholders are network fragments, never written to
    the output; they stay in the memory for the continuation in the traversal direction.

    Returns:
        ``(fragment, detected, placeholders)``: the final fragment, its summary (instance 1) and the bool
        placeholder mask [z, y, x].

    Raises:
        ValueError: if the network finds no vertebra at the point.
    """
    params = net.scan.model.traversal
    spacing = net.scan.model.preprocessing.spacing_mm
    placeholders = np.zeros(memory.shape, dtype=bool)
    radius = CLICK_TOLERANCE_MM / spacing

    def evaluate(center: np.ndarray) -> Optional[_Fragment]:
        for _ in range(MAX_FRAGMENTS_BEHIND + 1):
            found = net.fragment(center, np.maximum(memory, placeholders).astype(np.float32))
            if found is None:
                return None
            if _near(found, point_zyx, radius):
                return found
            if not net.behind(found.bbox_center[0], point_zyx[0]):
                return None  # the next vertebra in traversal order lies beyond the point: nothing at the point
            placeholders[found.src][found.mask] = True
        return None

    current = np.rint(point_zyx).astype(int)
    found = evaluate(current)
    if found is None:
        raise ValueError(
            "the network found no vertebra at the clicked point; place the point inside a vertebral body "
            "(not in a disc, soft tissue or a vertebra that is already segmented)"
        )
    previous, iterations, converged = None, 1, False
    while True:
        if np.all(np.abs(found.bbox_center - current) <= params.delta_max_voxels):
            converged = True
            break
        if iterations >= params.max_iterations:
            mid = np.rint((current + (previous if previous is not None else found.bbox_center)) / 2.0).astype(int)
            at_mid = evaluate(mid)
            iterations += 1
            if at_mid is not None:
                found, current = at_mid, mid
            break
        target = found.bbox_center
        moved = evaluate(target)
        iterations += 1
        if moved is None:
            break  # lost while moving: keep the last fragment that contained the point
        previous, current, found = current, target, moved
    detected = DetectedVertebra(
        instance=1, label_regressed=found.label, p_complete=found.p_complete,
        center_zyx=tuple(int(v) for v in current), iterations=iterations, converged=converged,
        voxels=int(found.mask.sum()),
    )
    # the patch of the clicked vertebra, with it in memory: set aside what still lies behind it, so that the
    # continuation starts with the next vertebra in traversal order
    with_clicked = memory.copy()
    with_clicked[found.src][found.mask] = 1.0
    for _ in range(MAX_FRAGMENTS_BEHIND):
        nxt = net.fragment(current, np.maximum(with_clicked, placeholders).astype(np.float32))
        if nxt is None or not net.behind(nxt.bbox_center[0], current[0]):
            break
        placeholders[nxt.src][nxt.mask] = True
    return found, detected, placeholders


# --------------------------------------------------------------------------------------------------------------
# one network evaluation per vertebra, in the situation the network was trained on


def _regress(
    net: _Network, canonical_ids: np.ndarray, centers: dict[int, Optional[np.ndarray]], positions: dict[int, np.ndarray]
) -> dict[int, tuple[float, float]]:
    """Regressed label and p_complete of vertebrae from one evaluation centred on each.

    The memory holds exactly the vertebrae before it in traversal order (for bottom-up: all lower ones, by
    centroid), the situation the network was trained on (``training/sampler.py``). Used for the kept vertebrae
    and for new ones that traversal tracked with a kept vertebra *ahead* of them in the memory, which the network
    never saw in training: on the shipped model and the example CT, a re-run with an edited L3 made it regress L4
    as 17.5 during traversal and 21.1 here (21.1 in a plain run).

    Args:
        canonical_ids: int [z, y, x] canonical map of all vertebrae (kept and new).
        centers: id -> patch centre [z, y, x] (a new vertebra's converged traversal position), or None for the
            centre of its bounding box on the canonical grid (kept vertebrae; where traversal converges).
        positions: id -> canonical centroid [z, y, x] of every vertebra.
    """
    out = {}
    for vid, center in centers.items():
        if center is None:
            target = canonical_ids == vid
            if target.any():
                idx = np.argwhere(target)
                center = np.rint((idx.min(axis=0) + idx.max(axis=0)) / 2.0).astype(int)
            else:  # thinner than a canonical voxel: centre on its centroid
                center = np.rint(positions[vid]).astype(int)
        before = [i for i in positions if i != vid and net.behind(positions[i][0], positions[vid][0])]
        memory = np.isin(canonical_ids, before).astype(np.float32)
        _, label, p_complete, _ = net.predictor.predict([np.asarray(center, dtype=int)], memory)[0]
        out[vid] = (label, p_complete)
    return out


# --------------------------------------------------------------------------------------------------------------
# result assembly on the input grid


@dataclass
class _Candidate:
    """One vertebra of the result before labelling: kept (from the input) or new (from traversal)."""

    regressed: float
    p_complete: float
    iterations: int
    edited: bool


def _assemble(
    scan: Scan,
    reporter: Reporter,
    t_start: float,
    existing: np.ndarray,
    kept: list[int],
    edited: set[int],
    new_canonical: np.ndarray,
    new_detected: list[DetectedVertebra],
    evaluations: int,
    refine_surface: Optional[bool],
    correction: dict,
) -> SpineSegmentationResult:
    """Kept vertebrae (exact input-grid voxels) + new ones (canonical) -> labelled result on the input grid.

    Segment ids: kept vertebra ``kept[k - 1]`` is id k (k = 1..K), new vertebra ``new_detected[j]`` (canonical
    instance j + 1) is id K + j + 1. Kept vertebrae (and new ones tracked with a kept one ahead of them) get
    their regressed value and p_complete from :func:`_regress`;
    the maximum-likelihood refinement (seed 002 section 3.4) orders all vertebrae by their canonical centroid
    and labels them; the label map is written in one pass with new voxels never replacing existing ones.
    """
    image = scan.image
    net = _Network(scan)
    offset = len(kept)
    kept_ids = np.zeros(existing.shape, dtype=np.int32)
    for k, label in enumerate(kept, start=1):
        kept_ids[existing == label] = k

    reporter.stage("labeling", "maximum-likelihood labelling")
    canonical_ids = _to_canonical_labels(kept_ids, image, scan.reference)
    free = canonical_ids == 0
    canonical_ids[free & (new_canonical > 0)] = new_canonical[free & (new_canonical > 0)] + offset
    positions: dict[int, np.ndarray] = {}
    if kept:  # kept vertebrae: centroid on the input grid (they may be thinner than a canonical voxel)
        kept_image = sitk.GetImageFromArray(kept_ids)
        kept_image.CopyInformation(image)
        for k, (_, lps) in label_measurements(kept_image).items():
            positions[k] = lps_to_index(scan.reference, lps)
    new_ids = [d.instance + offset for d in new_detected]
    if new_ids:
        ones = np.ones_like(canonical_ids, dtype=np.uint8)
        counts = ndimage.sum_labels(ones, canonical_ids, new_ids)
        centers = ndimage.center_of_mass(ones, canonical_ids, new_ids)
        positions.update({i: np.array(c) for i, c, n in zip(new_ids, centers, counts) if n > 0})
    # kept vertebrae, and new ones that were tracked with a kept vertebra ahead of them in the memory
    centers: dict[int, Optional[np.ndarray]] = {k: None for k in range(1, offset + 1)}
    for d in new_detected:
        vid = d.instance + offset
        if vid in positions and any(net.behind(positions[vid][0], positions[k][0]) for k in range(1, offset + 1)):
            centers[vid] = np.array(d.center_zyx)
    regressed = _regress(net, canonical_ids, centers, positions)
    evaluations += len(centers)
    candidates: dict[int, _Candidate] = {}
    for k in range(1, offset + 1):
        candidates[k] = _Candidate(*regressed[k], iterations=1, edited=kept[k - 1] in edited)
    for d in new_detected:
        vid = d.instance + offset
        if vid in regressed:
            candidates[vid] = _Candidate(*regressed[vid], d.iterations + 1, False)
        elif vid in positions:
            candidates[vid] = _Candidate(d.label_regressed, d.p_complete, d.iterations, False)
    order = sorted(candidates, key=lambda i: -positions[i][0])  # cranio-caudal: canonical z grows superiorly
    # an edited vertebra's level is the person's statement: a constraint of the same labelling as a fresh run
    stated = {n: kept[i - 1] for n, i in enumerate(order) if i <= offset and candidates[i].edited}
    labeling = refine_labels([candidates[i].regressed for i in order], constraints=stated)
    lut = np.zeros(offset + len(new_detected) + 1, dtype=np.int16)
    for i, label in zip(order, labeling.labels):
        lut[i] = label

    ids = kept_ids
    if new_detected:
        reporter.stage("input grid", "resampling the new vertebrae to the input grid")
        new_input, box = labels_on_input_grid(new_canonical, scan.reference, image)
        if surface_refinement(scan, refine_surface) and box is not None:
            reporter.stage("surface refinement", "removing surface voxels below 200 HU")
            hu = sitk.GetArrayViewFromImage(image)
            new_input[box] = refine_surfaces(new_input[box], hu[box], tuple(reversed(image.GetSpacing())))
        place = (new_input > 0) & (existing == 0)  # never over a kept vertebra or another structure (sacrum)
        ids = kept_ids.copy()
        ids[place] = new_input[place] + offset
    final = np.where(ids > 0, lut[ids], existing).astype(np.int16)  # existing: kept others, e.g. the sacrum
    labels_image = sitk.GetImageFromArray(final)
    labels_image.CopyInformation(image)

    voxel_mm3 = float(np.prod(image.GetSpacing()))
    ids_image = sitk.GetImageFromArray(ids)  # int32, like kept_ids
    ids_image.CopyInformation(image)
    measured = label_measurements(ids_image)
    vertebrae = []
    for i, label, p_label in zip(order, labeling.labels, labeling.probabilities):
        if i not in measured:
            continue  # a new vertebra that vanished on a coarser input grid
        c = candidates[i]
        count, lps = measured[i]
        vertebrae.append(Vertebra(
            label=int(label), name=vertebra_name(label), complete=bool(c.p_complete >= COMPLETE_THRESHOLD),
            p_complete=round(float(c.p_complete), 4), p_label=round(float(p_label), 4),
            label_regressed=round(float(c.regressed), 3),
            centroid_ras_mm=[round(float(v), 2) for v in lps_to_ras(lps)],
            volume_mm3=round(float(count) * voxel_mm3, 1), iterations=int(c.iterations), edited=c.edited,
        ))
    vertebrae += _kept_others(existing, image, edited)
    vertebrae.sort(key=lambda v: -v.centroid_ras_mm[2])  # cranio-caudal
    times = reporter.finish()
    run_info = run_information(scan, times, t_start, evaluations)
    run_info["corrections"] = [correction]
    message = f"{len(vertebrae)} vertebrae: " + ", ".join(
        v.name + ("" if v.complete else " (incomplete)") + (" (edited)" if v.edited else "") for v in vertebrae
    )
    return SpineSegmentationResult(labels=labels_image, vertebrae=vertebrae, alternatives=labeling.alternatives,
                                   run_info=run_info, message=message)


def _kept_others(existing: np.ndarray, image: sitk.Image, edited: set[int]) -> list[Vertebra]:
    """Entries for the kept structures outside the column (the sacrum): reported as given, not evaluated by the
    network, so ``complete`` is True, ``p_complete`` and ``p_label`` are 1 and ``label_regressed`` is 0 (the
    network's "no vertebra" value)."""
    out = []
    voxel_mm3 = float(np.prod(image.GetSpacing()))
    for label in _other_labels(existing):
        mask = existing == label
        kji = np.argwhere(mask).mean(axis=0)
        lps = np.array(image.TransformContinuousIndexToPhysicalPoint([float(v) for v in kji[::-1]]))
        out.append(Vertebra(label=label, name=vertebra_name(label), complete=True, p_complete=1.0, p_label=1.0,
                            label_regressed=0.0, centroid_ras_mm=[round(float(v), 2) for v in lps_to_ras(lps)],
                            volume_mm3=round(float(mask.sum()) * voxel_mm3, 1), iterations=0,
                            edited=label in edited))
    return out


def _column_mask(array: np.ndarray) -> np.ndarray:
    return ((array >= 1) & (array <= 25)) | (array == 28)


def _merge(new: np.ndarray, detected: list[DetectedVertebra], found: np.ndarray, found_detected) -> None:
    """Add a traversal's instances to ``new`` (in place), renumbering them after the ones already there."""
    offset = len(detected)
    place = (found > 0) & (new == 0)
    new[place] = found[place] + offset
    detected += [replace(d, instance=d.instance + offset) for d in found_detected]


def _progress(reporter: Reporter, scan: Scan, already: int):
    mask = scan.spine_mask
    extent = mask.any(axis=(1, 2)).sum() if mask is not None else scan.volume.shape[0]
    expected = max(1.0, extent * scan.model.preprocessing.spacing_mm / _TYPICAL_VERTEBRA_MM)

    def on_eval(found: int, evaluations: int) -> None:
        total = already + found
        reporter.emit("traversal", 0.12 + 0.78 * min(1.0, total / expected), total + 1,
                      f"vertebra {total + 1} ({evaluations} network evaluations)")

    return on_eval


def _existing_behind(canonical_existing: np.ndarray, net: _Network, z: int) -> np.ndarray:
    """Bool [z, y, x]: the existing vertebrae whose canonical centroid lies before ``z`` in traversal order."""
    labels = [int(v) for v in np.unique(canonical_existing) if v]
    centers = ndimage.center_of_mass(np.ones_like(canonical_existing, dtype=np.uint8), canonical_existing, labels)
    behind = [lab for lab, c in zip(labels, centers) if net.behind(c[0], z)]
    return np.isin(canonical_existing, behind)


def _sliding_batch(scan: Scan) -> int:
    """Sliding-window positions per network batch: as the pipeline does (same result, fewer GPU launches)."""
    return GPU_SLIDING_BATCH if scan.device.type == "cuda" else 1


def _prepare(image, model, device, progress, use_localization) -> tuple[Scan, Reporter, float]:
    reporter = Reporter(progress)
    t_start = time.perf_counter()
    scan = prepare_scan(image, model, device, None, reporter, use_localization)
    if scan.spine_mask is not None and not scan.spine_mask.any():
        scan.spine_mask = None  # as segment_spine: no spine localized (small crop) -> search the whole volume
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
) -> SpineSegmentationResult:
    """Click-through segmentation: segment the vertebra under a point, then continue up and/or down from it.

    1. *The clicked vertebra.* The iterative FCN is evaluated on a patch centred on the point and tracked to
       convergence (seed 002 section 3.3: move to the fragment's bounding-box centre until it moves by at most
       ``delta_max`` voxels, midpoint rule after ``max_iterations``). The network segments the next vertebra in
       its traversal order; fragments of free vertebrae *before* the clicked one (below it, for the shipped
       bottom-up network) are set aside in the memory as placeholders until the fragment contains the point
       (see ``_segment_clicked``), which recreates the situation the network was trained on.
    2. *In the traversal direction* (``"up"`` for the shipped bottom-up network): traversal continues from the
       clicked vertebra's patch with it (and the placeholders) in memory, accepting only vertebrae beyond it.
    3. *Against the traversal direction* (``"down"`` for a bottom-up network): a network trained bottom-up
       cannot honestly be run top-down. Instead it runs bottom-up, as trained, on the region below the clicked
       vertebra only (``traverse(z_range=...)``: windows and accepted fragments below the clicked vertebra's
       centre); the placeholders are dropped, so the vertebrae below are segmented properly. The memory holds
       the existing vertebrae below the clicked one only - what the network was trained with (the vertebrae
       before its target) - not the clicked vertebra and those above it: on the shipped model and the example CT,
       having them in the memory made the network regress L4 as 17.5 instead of 21.1 and segment an extra
       81-voxel fragment between L4 and L3, shifting the labels below by one. The z range keeps the clicked
       vertebra and everything above it from being segmented again, and the merge keeps their voxels. For a
       network trained top-down, "up" and "down" swap roles.
    4. Existing vertebrae (``existing_labels``) are the instance memory from the start and are kept voxel for
       voxel; their regressed labels come from one evaluation each (as in :func:`rerun_with_edits`). The label
       refinement (seed 002 section 3.4) then runs over all vertebrae, existing ones included.

    Args:
        image: CT in HU (path or ``sitk.Image``, LPS geometry as in ITK).
        point_ras_mm: the clicked point [x, y, z], RAS millimetres (as 3D Slicer shows them).
        existing_labels: optional label map on the CT's grid (VerSe numbers): vertebrae segmented already.
        model, device, progress, use_localization, refine_surface: as :func:`~SpineSegmentationLib.pipeline.
            segment_spine` (surface refinement applies to new vertebrae only).
        directions: anatomical directions to continue in: ("up", "down") (default), ("up",), ("down",) or ()
            for the clicked vertebra alone.
        edited: labels of ``existing_labels`` that a person made or edited; they carry ``edited=True``.

    Returns:
        A new result on the input grid with the existing, the clicked and the newly found vertebrae;
        ``run_info["corrections"][0]`` records the point and the clicked vertebra's final label.

    Raises:
        ValueError: the point lies outside the CT or inside an existing vertebra, the network finds no vertebra
            at it, ``directions`` holds an unknown name, or ``existing_labels`` is not on the CT's grid; plus the
            errors of :func:`~SpineSegmentationLib.pipeline.segment_spine` (InputImageError, ModelFileError,
            CancelledError).
    """
    directions = tuple(directions)
    unknown = [d for d in directions if d not in _DIRECTIONS]
    if unknown:
        raise ValueError(f"directions must be 'up' and/or 'down', got {unknown}")
    point_ras = np.asarray(point_ras_mm, dtype=float)
    if point_ras.shape != (3,) or not np.all(np.isfinite(point_ras)):
        raise ValueError(f"point_ras_mm must be three finite numbers [R, A, S] in mm, got {point_ras_mm!r}")
    scan, reporter, t_start = _prepare(image, model, device, progress, use_localization)
    existing = _label_array(existing_labels, scan.image, "existing_labels")
    kept = _column_labels(existing)
    edited = _check_label_set("edited labels", edited, kept + _other_labels(existing))

    point_lps = ras_to_lps(point_ras)
    kji = np.rint(scan.image.TransformPhysicalPointToContinuousIndex([float(v) for v in point_lps])[::-1]).astype(int)
    if np.any(kji < 0) or np.any(kji >= existing.shape):
        raise ValueError(f"the point RAS {point_ras.tolist()} mm lies outside the CT; place it inside the image")
    under = int(existing[tuple(kji)])
    if _is_column(under):
        raise ValueError(f"the point lies inside the existing vertebra {vertebra_name(under)}; click an unsegmented "
                         f"vertebra, or re-segment this one with rerun_with_edits(redo_labels={{{under}}})")
    point_zyx = lps_to_index(scan.reference, point_lps)

    net = _Network(scan)
    canonical_existing = _to_canonical_labels(np.where(_column_mask(existing), existing, 0), scan.image, scan.reference)
    memory = (canonical_existing > 0).astype(np.float32)
    reporter.stage("traversal", "segmenting the clicked vertebra")
    clicked, first, placeholders = _segment_clicked(net, memory, point_zyx)
    new = np.zeros(memory.shape, dtype=np.int16)
    new[clicked.src][clicked.mask & (new[clicked.src] == 0)] = 1
    detected = [first]
    memory[clicked.src][clicked.mask] = 1.0
    evaluations = net.predictor.evaluations
    forward = scan.direction
    anatomical = {forward: "forward", ("down" if forward == "up" else "up"): "backward"}
    center_z = int(first.center_zyx[0])
    if any(anatomical[d] == "forward" for d in directions):
        trav = traverse(scan.volume, scan.model, scan.device, spine_mask=scan.spine_mask,
                        memory=np.maximum(memory, placeholders), direction=forward,
                        start_zyx=np.array(first.center_zyx), progress=_progress(reporter, scan, len(detected)),
                        z_range=net.region_ahead(center_z), sliding_batch=_sliding_batch(scan))
        _merge(new, detected, trav.instances, trav.vertebrae)
        evaluations += trav.evaluations
    if any(anatomical[d] == "backward" for d in directions):
        # only the existing vertebrae behind the clicked one go into the memory, as in training (memory = the
        # vertebrae before the target); the z range keeps the clicked vertebra and those beyond it from being
        # segmented again, and the merge keeps their voxels
        trav = traverse(scan.volume, scan.model, scan.device, spine_mask=scan.spine_mask,
                        memory=_existing_behind(canonical_existing, net, center_z),
                        direction=forward, progress=_progress(reporter, scan, len(detected)),
                        z_range=net.region_behind(center_z), sliding_batch=_sliding_batch(scan))
        _merge(new, detected, trav.instances, trav.vertebrae)
        evaluations += trav.evaluations
    correction = {"action": "segment_from_point", "point_ras_mm": [round(float(v), 3) for v in point_ras],
                  "directions": list(directions)}
    result = _assemble(scan, reporter, t_start, existing, kept, edited, new, detected, evaluations,
                       refine_surface, correction)
    # which vertebra was clicked: the one holding the point on the input grid (else the nearest centroid)
    at_point = int(sitk.GetArrayViewFromImage(result.labels)[tuple(kji)])
    if not _is_column(at_point) and result.vertebrae:
        at_point = min(result.vertebrae, key=lambda v: np.linalg.norm(np.array(v.centroid_ras_mm) - point_ras)).label
    correction["clicked_label"] = at_point
    result.message = f"clicked vertebra: {vertebra_name(at_point)}; {result.message}" if _is_column(at_point) \
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
) -> SpineSegmentationResult:
    """Segment again around a person's edits: edited vertebrae are kept exactly, the rest is filled in.

    * Vertebrae in ``edited_labels`` are kept voxel for voxel on the input grid and carry ``edited=True``.
    * Vertebrae in ``redo_labels`` are removed and segmented again.
    * All other vertebrae of ``labels`` are kept as they are (``edited=False``); pass them in ``redo_labels`` to
      have them re-segmented with the edits in memory.
    * Everything kept is the instance memory of one full traversal (seed 002 section 3.3), which segments what is
      missing; new voxels never replace kept ones.
    * Labels are refined again over all vertebrae (seed 002 section 3.4) by the labelling of a fresh run, with the
      level of every edited vertebra as a constraint: an edited vertebra keeps the level the person gave it, and
      the rest of the column is named consistently with it. A kept vertebra's regressed label and
      completeness come from one network evaluation on a patch centred on its bounding box with the vertebrae
      before it in traversal order in memory (all lower ones for bottom-up) - the situation the network was
      trained on. Its label value may therefore change; its voxels do not. New vertebrae that traversal tracked
      with a kept vertebra ahead of them in the memory (never seen in training) are evaluated the same way at
      their converged position.

    Args:
        image: CT in HU (path or ``sitk.Image``).
        labels: label map on the CT's grid (``sitk.Image`` or [k, j, i] array), VerSe numbers; non-vertebra
            labels (sacrum) are kept unchanged.
        edited_labels: VerSe labels (values in ``labels``) of the vertebrae a person edited.
        redo_labels: VerSe labels of vertebrae to segment again; must not overlap ``edited_labels``.
        model, device, progress, use_localization, refine_surface: as :func:`~SpineSegmentationLib.pipeline.
            segment_spine` (surface refinement applies to new vertebrae only).

    Returns:
        A new result on the input grid; ``run_info["corrections"][0]`` records the edited and redone labels.

    Raises:
        ValueError: a label in ``edited_labels`` / ``redo_labels`` is not a vertebra of ``labels``, the two
            sets overlap, or ``labels`` is not on the CT's grid; plus the errors of ``segment_spine``.
    """
    scan, reporter, t_start = _prepare(image, model, device, progress, use_localization)
    existing = _label_array(labels, scan.image, "labels")
    present = _column_labels(existing)
    edited = _check_label_set("edited labels", edited_labels, present + _other_labels(existing))
    if any(not _is_column(v) for v in redo_labels):
        raise ValueError("only vertebrae of the column (C1-L5, T13, L6) can be redone: the network does not segment "
                         "the sacrum")
    redo = _check_label_set("labels to redo", redo_labels, present)
    both = sorted(edited & redo)
    if both:
        raise ValueError(f"labels {both} are both edited (kept) and to be redone; choose one for each vertebra")
    existing = np.where(np.isin(existing, sorted(redo)), 0, existing)
    kept = [v for v in present if v not in redo]
    canonical_kept = _to_canonical_labels(np.where(_column_mask(existing), existing, 0), scan.image, scan.reference)
    reporter.stage("traversal", "segmenting what is missing")
    trav = traverse(scan.volume, scan.model, scan.device, spine_mask=scan.spine_mask,
                    memory=canonical_kept > 0, direction=scan.direction, progress=_progress(reporter, scan, 0),
                    sliding_batch=_sliding_batch(scan))
    correction = {"action": "rerun_with_edits", "edited_labels": sorted(edited), "redo_labels": sorted(redo)}
    return _assemble(scan, reporter, t_start, existing, kept, edited, trav.instances, trav.vertebrae,
                     trav.evaluations, refine_surface, correction)
