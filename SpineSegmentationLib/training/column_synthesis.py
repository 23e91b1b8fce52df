"""Whole columns from partial vertebra masks: an upper column stacked on a lower one, the thoracic levels between
them filled with shapes of their thoracic neighbours.

The VerSe masks shipped for synthesis (``shared/data/verse_masks``) cover C1-T5 and C1-T4 (two subjects) and T9-L5
and L1-L5 (two more): no mask holds T6-T8, and no thoracic vertebra of them has another thoracic vertebra on both
sides. A model trained on them alone never sees a mid-thoracic vertebra whose arch slopes down beside the body of
the vertebra below, which is where such a model fails on real thoracic CT (issue 10: the network draws a thoracic
body with the arch of the vertebra above). :func:`composite_column` stacks an upper mask on a lower one and fills
the missing levels with copies of the nearer end vertebra, scaled so that their size (cube root of the volume)
goes linearly from the lower end's to the upper end's, each placed one inter-vertebral step above the one below
(the steps interpolated likewise between the two masks' own steps between their two end vertebrae, so that the
column's curvature carries on). The gap is bridged only between thoracic vertebrae and only when it spans at most
:data:`MAX_GAP_LEVELS` levels: a copied shape stands in for a close neighbour, not for a different region.

All arrays are int VerSe labels on an isotropic canonical grid, axes [z, y, x] = [S, P, L] (z grows superior), as
:func:`~.readers.load_case` returns them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: The largest number of missing levels bridged by copies (T5-T8 between a C1-T4 and a T9-L5 mask: 4).
MAX_GAP_LEVELS = 4
#: VerSe labels of T1 and T12: gap vertebrae and the end vertebrae they are copied from are thoracic.
T1, T12 = 8, 19


def _centroids(labels: np.ndarray) -> dict[int, np.ndarray]:
    present = [int(v) for v in np.unique(labels) if v]
    return dict(zip(present, (np.array(c) for c in ndimage.center_of_mass(labels > 0, labels, present))))


def gap_levels(upper: np.ndarray, lower: np.ndarray) -> list[int] | None:
    """The VerSe labels missing between ``upper`` (its lowest vertebra) and ``lower`` (its highest), bottom first;
    ``None`` when the two cannot be stacked: they share a level, a mask holds fewer than two vertebrae, the gap
    spans more than :data:`MAX_GAP_LEVELS` levels, or a vertebra to copy or to fill is not thoracic."""
    up = [int(v) for v in np.unique(upper) if 0 < v <= 24]
    low = [int(v) for v in np.unique(lower) if 0 < v <= 24]
    if len(up) < 2 or len(low) < 2 or max(up) >= min(low):
        return None
    gap = list(range(min(low) - 1, max(up), -1))
    if len(gap) > MAX_GAP_LEVELS:
        return None
    if gap and not (T1 <= max(up) and min(low) <= T12):
        return None
    return gap


def _placed(shape_mask: np.ndarray, factor: float) -> np.ndarray:
    """A vertebra's bounding-box mask scaled by ``factor`` (nearest neighbour)."""
    return ndimage.zoom(shape_mask.astype(np.uint8), factor, order=0).astype(bool)


def composite_column(upper: np.ndarray, lower: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``upper`` stacked above ``lower`` with the missing thoracic levels filled in.

    Args:
        upper, lower: int [z, y, x] = [S, P, L] VerSe label maps on the same isotropic grid spacing (other labels
            than 1-24 are dropped); ``upper``'s lowest vertebra lies above ``lower``'s highest in the column.
        rng: random generator: each filled vertebra's size is jittered by up to 3 %.

    Returns:
        int16 [z, y, x] label map holding both masks' vertebrae and the filled levels (each painted only where no
        vertebra is yet), on a grid just large enough.

    Raises:
        ValueError: the two cannot be stacked (see :func:`gap_levels`).
    """
    upper = np.where((upper > 0) & (upper <= 24), upper, 0)
    lower = np.where((lower > 0) & (lower <= 24), lower, 0)
    gap = gap_levels(upper, lower)
    if gap is None:
        raise ValueError("these masks cannot be stacked: they need two vertebrae each, the upper above the lower, "
                         f"and at most {MAX_GAP_LEVELS} missing thoracic levels between them")
    cu, cl = _centroids(upper), _centroids(lower)
    top_of_lower, bottom_of_upper = min(cl), max(cu)
    step_lower = cl[top_of_lower] - cl[top_of_lower + 1]  # upwards, from the vertebra below it
    step_upper = cu[bottom_of_upper - 1] - cu[bottom_of_upper]
    templates = {}
    for name, labels, k in (("lower", lower, top_of_lower), ("upper", upper, bottom_of_upper)):
        box = ndimage.find_objects((labels == k).astype(np.int32))[0]
        mask = labels[box] == k
        templates[name] = (mask, np.cbrt(mask.sum()))
    # pieces: (mask, label, where its own centroid goes, in the lower mask's voxel frame)
    pieces: list[tuple[np.ndarray, int, np.ndarray]] = []
    centre = cl[top_of_lower]
    n = len(gap)
    for i, level in enumerate(gap, start=1):
        t = i / (n + 1)
        centre = centre + (1 - t) * step_lower + t * step_upper
        mask, size = templates["lower" if t < 0.5 else "upper"]
        wanted = (1 - t) * templates["lower"][1] + t * templates["upper"][1]
        scaled = _placed(mask, wanted / size * rng.uniform(0.97, 1.03))
        pieces.append((scaled, level, centre - np.array(ndimage.center_of_mass(scaled))))
    centre = centre + step_upper if n else centre + 0.5 * (step_lower + step_upper)
    offset_upper = centre - cu[bottom_of_upper]
    corners = [np.zeros(3), np.array(lower.shape, float), offset_upper, offset_upper + upper.shape]
    for mask, _, corner in pieces:
        corners += [corner, corner + mask.shape]
    lo = np.floor(np.min(corners, axis=0)).astype(int)
    hi = np.ceil(np.max(corners, axis=0)).astype(int)
    out = np.zeros(tuple(hi - lo + 1), dtype=np.int16)

    def paint(values: np.ndarray, corner: np.ndarray) -> None:
        start = np.round(corner - lo).astype(int)
        region = out[tuple(slice(s, s + d) for s, d in zip(start, values.shape))]
        free = (region == 0) & (values > 0)
        region[free] = values[free]

    paint(lower.astype(np.int16), np.zeros(3))
    for mask, level, corner in pieces:
        paint(mask.astype(np.int16) * level, corner)
    paint(upper.astype(np.int16), offset_upper)
    return out


def stackable_pairs(masks: list[tuple[str, np.ndarray]]) -> list[tuple[int, int]]:
    """Index pairs ``(upper, lower)`` of ``masks`` (name, labels) that :func:`composite_column` can stack."""
    return [(i, j) for i, (_, a) in enumerate(masks) for j, (_, b) in enumerate(masks)
            if i != j and gap_levels(a, b) is not None]
