"""Detections off the spinal column are dropped (``column.py``, ``pipeline.drop_off_column``)."""

import numpy as np
import pytest

from SpineSegmentationLib.column import off_column
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


def test_drop_off_column_removes_the_instance_from_the_map_and_the_list():
    instances = np.zeros((60, 20, 80), dtype=np.int16)
    for k in range(5):  # five 'vertebrae' stacked along z at x 8..12, one 'scapula' far to the side
        instances[2 + 12 * k : 10 + 12 * k, 8:12, 8:12] = k + 1
    instances[26:34, 8:12, 70:76] = 6
    trav = TraversalResult(instances, [DetectedVertebra(i, 20.0, 0.9, (0, 0, 0), 3, True, 128) for i in range(1, 7)])
    assert drop_off_column(trav, spacing_mm=2.5) == 1
    assert [v.instance for v in trav.vertebrae] == [1, 2, 3, 4, 5]
    assert not (trav.instances == 6).any() and (trav.instances == 5).sum() == 8 * 4 * 4
