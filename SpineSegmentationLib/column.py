"""The spinal column as a curve: detections far off it are not vertebrae.

Vertebrae stack into one continuous column; its centre line bends (scoliosis, kyphosis) but does not jump. A
"vertebra" whose centre lies far beside its neighbours in the column is another bone that looked like one
(a scapula, clavicle or humeral head in a chest CT). Neighbouring vertebral centres move sideways by at most
10-15 mm per level at the apex of a severe scoliosis; shoulder bones lie 80 mm and more beside the column.
"""

from __future__ import annotations

import numpy as np

#: A detection whose centre lies farther than this (mm, in the axial plane) from its neighbours' median centre
#: is off the column.
OFF_COLUMN_MM = 50.0
#: Neighbours: the other detections whose centres lie within this distance (mm) along the column's axis.
NEIGHBOUR_REACH_MM = 80.0
#: Fewer neighbours than this leave a detection undecided (kept).
MIN_NEIGHBOURS = 2


def off_column(centres_mm: np.ndarray) -> np.ndarray:
    """Which detections lie off the spinal column.

    Args:
        centres_mm: float [n, 3] centres in mm on the canonical grid, [z, y, x] = [S, P, L] (z along the column).

    Returns:
        bool [n]: True for a detection whose (y, x) centre lies more than :data:`OFF_COLUMN_MM` from the median
        (y, x) of at least :data:`MIN_NEIGHBOURS` other detections within :data:`NEIGHBOUR_REACH_MM` in z.

    Raises:
        ValueError: ``centres_mm`` is not an [n, 3] array.
    """
    centres = np.asarray(centres_mm, dtype=float)
    if centres.ndim != 2 or centres.shape[1] != 3:
        raise ValueError(f"centres must be an [n, 3] array of [z, y, x] mm, got shape {centres.shape}")
    out = np.zeros(len(centres), dtype=bool)
    for i, (z, y, x) in enumerate(centres):
        near = np.abs(centres[:, 0] - z) <= NEIGHBOUR_REACH_MM
        near[i] = False
        if near.sum() < MIN_NEIGHBOURS:
            continue
        median = np.median(centres[near, 1:], axis=0)
        out[i] = bool(np.hypot(y - median[0], x - median[1]) > OFF_COLUMN_MM)
    return out
