"""The completeness target of the patch sampler near its threshold (seed 002 section 3.5: a vertebra is complete
when at most 2 % of its volume lies outside the patch), on a volume whose answer is known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from SpineSegmentationLib.training.sampler import PatchSampler, TrainingVolume

P = 96


def _volume() -> TrainingVolume:
    """One 'vertebra' (L3, 22): a 4 x 80 x 10 box = 3200 voxels, 40 voxels (1.25 %) per y layer; image = air."""
    labels = np.zeros((40, 140, 40), dtype=np.int16)
    labels[18:22, 30:110, 15:25] = 22
    return TrainingVolume.build("box", np.zeros(labels.shape, dtype=np.float32), labels)


@pytest.mark.parametrize("layers_outside, complete", [(0, 1.0), (1, 1.0), (2, 0.0)])
def test_complete_iff_at_most_two_percent_lies_outside_the_patch(layers_outside, complete):
    volume = _volume()
    assert volume.vertebrae[22].count == 3200
    # the patch starts `layers_outside` y layers after the box's first one: 0, 1.25 % and 2.5 % of it outside
    centre = np.array([20, 30 + layers_outside + P // 2, 20])
    patch = PatchSampler(P, 0.0, augment=False).sample(volume, np.random.default_rng(0), target=22, centre=centre)
    assert int(patch.target.sum()) == 3200 - 40 * layers_outside
    assert patch.complete == complete
    assert patch.label == 22.0
