"""Detections off the spinal column are dropped (``column.py``, ``pipeline.drop_off_column``): single bones beside
it, and branches that the spine localization does not support."""

import numpy as np
import pytest

from SpineSegmentationLib.column import column_branches, off_column, parallel_branches, weak_branches
from SpineSegmentationLib.pipeline import drop_off_column
from SpineSegmentationLib.traversal import DetectedVertebra, TraversalResult


def _column(n=10, pitch=28.0, sideways=0.0):
    """[z, y, x] mm centres of n vertebrae, each ``sideways`` mm further left than the one below (a curve)."""
    return np.array([[k * pitch, 0.0, sideways * k] for k in range(n)])


def test_a_shoulder_bone_beside_the_column_is_off_it_and_the_column_is_not():
    centres = np.vstack([_column(), [[5 * 28.0 + 10, 20.0, 130.0], [5 * 28.0 - 5, 25.0, -140.0]]])
    assert off_column(centres).tolist() == [False] * 10 + [True, True]


def test_a_severe_scoliosis_stays_on_the_column():
    # 15 mm sideways per level over ten levels: a 135 mm lateral shift from end to end
    assert not off_column(_column(sideways=15.0)).any()


def test_too_few_neighbours_decide_nothing_and_bad_shapes_raise():
    assert off_column(np.array([[0.0, 0, 0], [30.0, 0, 200.0]])).tolist() == [False, False]
    with pytest.raises(ValueError, match=r"\[n, 3\]"):
        off_column(np.zeros((4, 2)))


def _ilium_branch() -> np.ndarray:
    """[z, y, x] mm centres: a lumbar column tilted 20 degrees in the coronal plane (6 levels, 34 mm apart), and
    below its last vertebra a chain of 5 detections climbing the medial rim of an ilium, as the traversal found
    them on the tilted example CT: the first one 65 mm beside the column's continuation, the chain 25 mm apart."""
    tilt = np.deg2rad(20.0)
    step = 34.0 * np.array([-np.cos(tilt), 0.0, np.sin(tilt)])
    column = np.array([[300.0, 0.0, 0.0] + k * step for k in range(6)])
    start = column[-1] + step + np.array([0.0, 0.0, -65.0])
    branch = np.array([start + k * np.array([-25.0, -5.0, -2.0]) for k in range(5)])
    return np.vstack([column, branch])


def test_a_branch_that_meets_the_column_at_a_kink_is_a_run_of_its_own():
    runs = column_branches(_ilium_branch())
    assert [r.tolist() for r in runs] == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]
    assert not off_column(_ilium_branch()).any()  # five detections outvote the column's neighbourhood median


def test_a_curved_column_with_a_missed_vertebra_is_one_run():
    centres = _column(sideways=15.0)  # severe scoliosis
    assert len(column_branches(np.delete(centres, 4, axis=0))) == 1


def test_a_branch_the_localization_barely_sees_is_dropped_and_one_it_sees_is_kept():
    centres = _ilium_branch()
    weak = np.r_[[0.11, 0.16, 0.23, 0.24, 0.25, 0.20], [0.05, 0.05, 0.06, 0.07, 0.08]]  # measured, tilted example CT
    assert weak_branches(centres, weak).tolist() == [False] * 6 + [True] * 5
    assert not weak_branches(centres, np.full(11, 0.2)).any()  # as spine-like as the column: not for us to drop
    assert not weak_branches(_column(), np.linspace(0.03, 0.3, 10)).any()  # one run (e.g. a weak cervical spine)
    # the localization saw no spine (a small crop: 0.012-0.016 on the TPTBox crop): its noise decides nothing
    assert not weak_branches(centres, weak / 10, min_support=0.05).any()
    assert weak_branches(centres, weak, min_support=0.05).tolist() == [False] * 6 + [True] * 5
    with pytest.raises(ValueError, match="one value per detection"):
        weak_branches(centres, weak[:5])


def _shoulder_chain() -> tuple[np.ndarray, np.ndarray]:
    """[z, y, x] mm centres and localization support of the twelve detections on the top 110 mm of the itkelastix
    chest CT (shipped model 0.3.0): six on the shoulder girdle about 100 mm to one side, then the column's six."""
    centres = np.array([[39, 317, 151], [61, 307, 145], [85, 274, 135], [96, 263, 130], [101, 248, 150],
                        [102, 244, 124], [9, 294, 248], [31, 297, 243], [60, 283, 243], [78, 272, 242],
                        [94, 259, 240], [104, 247, 230]], dtype=float)
    support = np.array([0.134, 0.142, 0.18, 0.146, 0.062, 0.112, 0.346, 0.291, 0.243, 0.176, 0.123, 0.067])
    return centres, support


def test_a_chain_beside_the_column_level_with_it_is_dropped_whatever_its_support():
    centres, support = _shoulder_chain()
    assert off_column(centres).sum() == 11  # the median of two chains lies between them: both look off
    assert not weak_branches(centres, support, min_support=0.05).any()  # two thirds of the column's support
    assert parallel_branches(centres, support, min_support=0.05).tolist() == [True] * 6 + [False] * 6
    # equally spine-like, it is still a second column beside the first: the better supported one stays
    assert parallel_branches(centres, np.full(12, 0.2) + np.r_[[0.0] * 6, [0.01] * 6]).tolist() == [True] * 6 + [False] * 6
    # a branch below the column's end (the ilium rim) or one run alone is not level with another column
    assert not parallel_branches(_ilium_branch(), np.full(11, 0.2)).any()
    assert not parallel_branches(_column(), np.linspace(0.03, 0.3, 10)).any()
    assert not parallel_branches(centres, support / 10, min_support=0.05).any()  # no spine seen: nothing decided
    with pytest.raises(ValueError, match="one value per detection"):
        parallel_branches(centres, support[:5])


def test_two_pieces_at_one_height_do_not_draw_a_line_across_to_the_column():
    """The eleven detections on the top 80 mm of the itkelastix chest CT (shipped model 0.3.0): a shoulder chain with
    two pieces at one height (z 68 and 70 mm, 22 mm apart), and the column 100 mm beside it. The line through those
    two pieces lay flat and passed through the column's T2, so one run zigzagged between both chains."""
    centres = np.array([[5, 315, 146], [24, 312, 139], [40, 298, 133], [62, 270, 132], [70, 254, 128],
                        [68, 254, 150], [9, 291, 246], [30, 283, 242], [49, 271, 242], [65, 259, 239],
                        [75, 247, 228]], dtype=float)
    assert sorted(sorted(r.tolist()) for r in column_branches(centres)) == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]
    support = np.array([0.118, 0.138, 0.168, 0.138, 0.094, 0.061, 0.28, 0.258, 0.194, 0.142, 0.072])
    assert parallel_branches(centres, support, min_support=0.05).tolist() == [True] * 6 + [False] * 5


def test_a_piece_of_a_vertebra_beside_it_does_not_turn_its_run_away_from_the_column():
    """The seven detections on the example CT tilted 20 degrees in the sagittal plane (shipped model 0.3.0): T12
    (46 cm3) with a 1.4 cm3 piece of its arch at its height 33 mm behind it, then L1-L5. The line through T12 and
    that piece lies flat; measured from the z axis through their mean, L1 (36 mm) joined them and the line through
    the three then missed L2 (46 mm), so T12 and L1 became a run of their own, too weakly supported to be kept."""
    centres = np.array([[141, 178, 187], [174, 183, 188], [207, 197, 189], [237, 216, 190], [265, 238, 191],
                        [291, 257, 189], [291, 290, 186]], dtype=float)
    assert sorted(sorted(r.tolist()) for r in column_branches(centres)) == [[0, 1, 2, 3, 4, 5, 6]]
    support = np.array([0.259, 0.259, 0.245, 0.278, 0.239, 0.128, 0.017])
    assert not weak_branches(centres, support, min_support=0.05).any()
    assert off_column(centres).tolist() == [False] * 6 + [True]  # the piece alone goes


def test_drop_off_column_removes_the_instance_from_the_map_and_the_list():
    instances = np.zeros((60, 20, 80), dtype=np.int16)
    for k in range(5):  # five 'vertebrae' stacked along z at x 8..12, one 'scapula' far to the side
        instances[2 + 12 * k : 10 + 12 * k, 8:12, 8:12] = k + 1
    instances[26:34, 8:12, 70:76] = 6
    trav = TraversalResult(instances, [DetectedVertebra(i, 20.0, 0.9, (0, 0, 0), 3, True, 128) for i in range(1, 7)])
    assert drop_off_column(trav, spacing_mm=2.5) == 1
    assert [v.instance for v in trav.vertebrae] == [1, 2, 3, 4, 5]
    assert not (trav.instances == 6).any() and (trav.instances == 5).sum() == 8 * 4 * 4


def test_drop_off_column_removes_a_weak_branch_given_the_localization():
    instances = np.zeros((100, 20, 50), dtype=np.int16)
    for k in range(5):  # a column of five along z (centres z 90..42) at x 8..11
        instances[86 - 12 * k : 94 - 12 * k, 8:12, 8:12] = k + 1
    for k in range(4):  # below it a chain of four, 45 mm to the side (centres z 30..6)
        instances[28 - 8 * k : 32 - 8 * k, 8:12, 26 + k : 30 + k] = k + 6
    probability = np.where(instances > 5, 0.05, 0.25).astype(np.float32)
    trav = TraversalResult(instances.copy(), [DetectedVertebra(i, 20.0, 0.9, (0, 0, 0), 3, True, 128)
                                              for i in range(1, 10)])
    assert drop_off_column(trav, spacing_mm=2.5) == 0  # without the localization the chain stays
    assert drop_off_column(trav, spacing_mm=2.5, spine_probability=probability) == 4
    assert [v.instance for v in trav.vertebrae] == [1, 2, 3, 4, 5] and trav.instances.max() == 5


def test_a_weak_branch_beside_the_column_does_not_outvote_the_column():
    """As on the example CT cropped through the laminae: a chain of seven detections on an ilium rim climbs from
    the bottom of the scan to beside the column's two lowest vertebrae (70 mm to the side). The lowest has more of
    the chain than of the column within reach in height, so the off-column rule alone calls it off the column; the
    branch check, which follows each run by continuity and asks the localization, goes first and leaves the column
    whole."""
    instances = np.zeros((140, 20, 50), dtype=np.int16)
    for k in range(6):  # the column: centres z 126 .. 56 (voxels of 2.5 mm), x 9.5
        instances[122 - 14 * k : 130 - 14 * k, 8:12, 8:12] = k + 1
    for k in range(7):  # the branch: centres z 62 .. 2, x 37.5, as high as the column's lowest two
        instances[60 - 10 * k : 64 - 10 * k, 8:12, 36:40] = k + 7
    probability = np.where(instances > 6, 0.02, 0.2).astype(np.float32)
    ids = range(1, 14)
    trav = TraversalResult(instances.copy(), [DetectedVertebra(i, 20.0, 0.9, (0, 0, 0), 3, True, 128) for i in ids])
    assert drop_off_column(trav, spacing_mm=2.5, spine_probability=probability) == 7
    assert [v.instance for v in trav.vertebrae] == [1, 2, 3, 4, 5, 6]
    column = np.array([[126.0 - 14 * k, 10.0, 9.5] for k in range(6)]) * 2.5
    branch = np.array([[62.0 - 10 * k, 10.0, 37.5] for k in range(7)]) * 2.5
    assert off_column(np.vstack([column, branch])).tolist() == [False] * 5 + [True] + [False] * 7  # the rule alone
