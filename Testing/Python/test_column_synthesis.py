"""Tests of the composite columns (training/column_synthesis.py) on the real VerSe masks (shared/data/verse_masks):
C1-T5 (sub-gl003) and C1-T4 (sub-gl017) stacked on T9-L5 (sub-verse004), the mid-thoracic levels filled."""

import numpy as np
import pytest
from scipy import ndimage

from SpineSegmentationLib.models import Preprocessing
from SpineSegmentationLib.training.column_synthesis import composite_column, gap_levels, stackable_pairs
from SpineSegmentationLib.training.data import TrainingData, collect_cases
from SpineSegmentationLib.training.readers import find_verse_cases, load_case
from SpineSegmentationLib.training.synthetic import synthesize_ct

SPACING = 2.5
T1, T5, T6, T7, T8, T9 = 8, 12, 13, 14, 15, 16


@pytest.fixture(scope="module")
def masks(verse_masks_dir):  # the conftest fixture fails (never skips) when the shared data is missing
    return {c.name: load_case(c, SPACING).labels for c in find_verse_cases(verse_masks_dir)}


@pytest.fixture(scope="module")
def column(masks):
    return composite_column(masks["sub-gl003_dir-ax"], masks["sub-verse004"], np.random.default_rng(0))


def test_gap_levels(masks):
    assert gap_levels(masks["sub-gl003_dir-ax"], masks["sub-verse004"]) == [T8, T7, T6]
    assert gap_levels(masks["sub-gl017"], masks["sub-verse004"]) == [T8, T7, T6, T5]
    assert gap_levels(masks["sub-verse004"], masks["sub-gl003_dir-ax"]) is None  # upside down
    assert gap_levels(masks["sub-gl003_dir-ax"], masks["sub-verse010"]) is None  # T6-T12 missing: too many
    assert gap_levels(masks["sub-verse004"], masks["sub-verse010"]) is None  # L1-L5 in both
    pairs = {(a, b) for a, b in stackable_pairs(list(masks.items()))}
    names = list(masks)
    assert {(names[a], names[b]) for a, b in pairs} == {("sub-gl003_dir-ax", "sub-verse004"),
                                                        ("sub-gl017", "sub-verse004")}


def test_composite_is_one_column_c1_to_l5(masks, column):
    levels = [int(v) for v in np.unique(column) if v]
    assert levels == list(range(1, 25))
    centroids = np.array(ndimage.center_of_mass(column > 0, column, levels))
    assert np.all(np.diff(centroids[:, 0]) < 0)  # z grows superior: every level below the one before it
    steps = np.linalg.norm(np.diff(centroids, axis=0), axis=1)
    filled = steps[T5 - 1:T9 - 1]  # T5->T6, T6->T7, T7->T8, T8->T9
    real = np.concatenate([steps[T1 - 1:T5 - 1], steps[T9 - 1:T9 + 3]])  # T1->T2 .. T4->T5, T9->T10 .. T12->L1
    assert real.min() * 0.8 <= filled.min() and filled.max() <= real.max() * 1.2
    # the source masks are kept voxel for voxel where nothing else was painted first
    assert (column == 1).sum() == (masks["sub-gl003_dir-ax"] == 1).sum()
    assert (column == 24).sum() == (masks["sub-verse004"] == 24).sum()


def test_filled_levels_sized_between_their_neighbours(masks, column):
    t5 = (masks["sub-gl003_dir-ax"] == T5).sum()
    t9 = (masks["sub-verse004"] == T9).sum()
    for level in (T6, T7, T8):
        size = (column == level).sum()
        assert 0.7 * min(t5, t9) <= size <= 1.1 * max(t5, t9), level
        components = ndimage.label(column == level)[1]
        assert components <= 3, level  # a vertebra's shape, not scattered voxels


def test_rejects_masks_that_cannot_be_stacked(masks):
    with pytest.raises(ValueError, match="cannot be stacked"):
        composite_column(masks["sub-verse004"], masks["sub-gl003_dir-ax"], np.random.default_rng(0))


def test_composite_column_paints_into_a_synthetic_ct(column):
    hu, lab = synthesize_ct(column, np.random.default_rng(1), SPACING, crop=False)
    assert {T6, T7, T8} <= set(np.unique(lab).tolist())
    for level in (T6, T7, T8):
        assert np.median(hu[lab == level]) > 100  # bone


def test_training_data_builds_composites(verse_masks_dir):
    cases = collect_cases({"synthetic_masks_root": [str(verse_masks_dir)]})
    data = TrainingData(cases, Preprocessing(), pool_size=2, synthetic_fraction=1.0, rng=np.random.default_rng(0),
                        composite_column_share=1.0)
    assert all("+sub-verse004" in v.name for v in data.pool)
    assert data.summary()["synthetic_composite_columns"] == ["sub-gl003_dir-ax+sub-verse004",
                                                             "sub-gl017+sub-verse004"]
    plain = TrainingData(cases, Preprocessing(), pool_size=1, synthetic_fraction=1.0, rng=np.random.default_rng(0))
    assert not any("+" in v.name for v in plain.pool) and plain.summary()["synthetic_composite_columns"] == []
