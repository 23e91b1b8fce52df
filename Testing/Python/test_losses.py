"""Tests of the iterative FCN loss (seed 002, section 3.6) on tiny cases with known values."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from SpineSegmentationLib.training.losses import iterative_fcn_loss, lambda_schedule, surface_distance_weights


def test_lambda_schedule_endpoints_and_midpoint():
    n_max = 1000
    assert lambda_schedule(0, n_max) == pytest.approx(0.1 + 0.9 / (1 + math.exp(5)), abs=1e-9)
    assert lambda_schedule(0, n_max) < 0.11
    assert lambda_schedule(n_max / 2, n_max) == pytest.approx(0.55)
    assert lambda_schedule(n_max, n_max) > 0.99
    values = [lambda_schedule(n, n_max) for n in range(0, n_max + 1, 50)]
    assert all(b > a for a, b in zip(values, values[1:]))


def test_lambda_schedule_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_max"):
        lambda_schedule(0, 0)
    with pytest.raises(ValueError, match="lambda_min"):
        lambda_schedule(0, 10, lambda_min=1.5)


def test_surface_weights_peak_at_the_surface():
    mask = np.zeros((9, 9, 9), dtype=bool)
    mask[3:6, 3:6, 3:6] = True
    w = surface_distance_weights(mask, gamma=8.0, sigma_voxels=2.0)
    # boundary voxels (inside, d = 1) and their outside neighbours (d = 1): 8 exp(-1/4) + 1
    assert w[3, 4, 4] == pytest.approx(8 * math.exp(-0.25) + 1, rel=1e-5)
    assert w[2, 4, 4] == pytest.approx(8 * math.exp(-0.25) + 1, rel=1e-5)
    # centre voxel is 2 voxels from the outside: d = 2
    assert w[4, 4, 4] == pytest.approx(8 * math.exp(-1.0) + 1, rel=1e-5)
    # far corner (8, 8, 0): nearest mask voxel (5, 5, 3), d^2 = 27 -> weight close to 1
    assert w[8, 8, 0] == pytest.approx(8 * math.exp(-27 / 4) + 1, rel=1e-5)
    assert w[8, 8, 0] < 1.01
    assert np.all(surface_distance_weights(np.zeros((4, 4, 4), bool)) == 1.0)


def test_the_ignore_band_zeroes_the_weights_on_both_sides_of_the_surface():
    mask = np.zeros((11, 11, 11), dtype=bool)
    mask[3:8, 3:8, 3:8] = True
    plain = surface_distance_weights(mask, gamma=8.0, sigma_voxels=2.0)
    one = surface_distance_weights(mask, gamma=8.0, sigma_voxels=2.0, ignore_band_voxels=1.0)
    two = surface_distance_weights(mask, gamma=8.0, sigma_voxels=2.0, ignore_band_voxels=2.0)
    # the outermost layer inside (3, 5, 5) and the first outside (2, 5, 5) go with a band of 1, the next ones stay
    assert one[3, 5, 5] == 0 and one[2, 5, 5] == 0
    assert one[4, 5, 5] == plain[4, 5, 5] > 1 and one[1, 5, 5] == plain[1, 5, 5] > 1
    assert two[4, 5, 5] == 0 and two[1, 5, 5] == 0 and two[5, 5, 5] == plain[5, 5, 5]
    assert np.array_equal(one > 0, ~(ndimage.binary_dilation(mask) & ~ndimage.binary_erosion(mask)))
    with pytest.raises(ValueError, match="ignore_band_voxels"):
        surface_distance_weights(mask, ignore_band_voxels=-1.0)


def _loss(p, t, w, lam, label=0.0, target_label=0.0, compl_logit=0.0, target_compl=0.0):
    logits = torch.logit(torch.tensor(p, dtype=torch.float64)).reshape(1, 1, *np.shape(p))
    return iterative_fcn_loss(
        logits, torch.tensor([label]), torch.tensor([compl_logit]), torch.tensor(t).reshape(1, 1, *np.shape(t)),
        torch.tensor(w).reshape(1, 1, *np.shape(w)), torch.tensor([target_label]), torch.tensor([target_compl]),
        lam, unit_voxels=1.0,
    )


def test_loss_terms_on_a_known_case():
    p = np.array([[[0.9, 0.2], [0.5, 0.1]]])
    t = np.array([[[1.0, 0.0], [1.0, 0.0]]])
    w = np.array([[[2.0, 1.0], [1.0, 3.0]]])
    terms = _loss(p, t, w, lam=0.5, label=20.5, target_label=22.0, compl_logit=0.0, target_compl=1.0)
    fp = 1.0 * 0.2 + 3.0 * 0.1
    fn = 2.0 * 0.1 + 1.0 * 0.5
    assert float(terms.fp) == pytest.approx(fp, rel=1e-5)
    assert float(terms.fn) == pytest.approx(fn, rel=1e-5)
    assert float(terms.label) == pytest.approx(1.5)
    assert float(terms.completeness) == pytest.approx(math.log(2), rel=1e-5)
    assert float(terms.total) == pytest.approx(0.5 * fp + fn + 1.5 + math.log(2), rel=1e-5)


def test_perfect_prediction_has_near_zero_segmentation_loss():
    t = np.zeros((4, 4, 4))
    t[1:3, 1:3, 1:3] = 1
    p = np.clip(t, 1e-6, 1 - 1e-6)
    terms = _loss(p, t, surface_distance_weights(t > 0).astype(np.float64), lam=1.0)
    assert float(terms.fp) < 1e-3 and float(terms.fn) < 1e-3


def test_unit_voxels_scales_segmentation_terms_only():
    p = np.full((1, 2, 2), 0.5)
    t = np.zeros((1, 2, 2))
    w = np.ones((1, 2, 2))
    logits = torch.logit(torch.tensor(p)).reshape(1, 1, 1, 2, 2)
    args = (torch.tensor([3.0]), torch.tensor([0.0]), torch.tensor(t).reshape(1, 1, 1, 2, 2),
            torch.tensor(w).reshape(1, 1, 1, 2, 2), torch.tensor([1.0]), torch.tensor([0.0]), 1.0)
    a = iterative_fcn_loss(logits, *args, unit_voxels=1.0)
    b = iterative_fcn_loss(logits, *args, unit_voxels=2.0)
    assert float(a.fp) == pytest.approx(2.0) and float(b.fp) == pytest.approx(1.0)
    assert float(a.label) == float(b.label) == pytest.approx(2.0)
