"""Tests of the synthetic CT generator on the real VerSe masks (shared/data/verse_masks)."""

import numpy as np
import pytest
from scipy import ndimage

from SpineSegmentationLib.training.readers import find_verse_cases, load_case
from SpineSegmentationLib.training.synthetic import synthesize_ct

SPACING = 2.5


@pytest.fixture(scope="module")
def masks(verse_masks_dir):  # the conftest fixture fails (never skips) when the shared data is missing
    return {c.name: load_case(c, SPACING).labels for c in find_verse_cases(verse_masks_dir)}


@pytest.fixture(scope="module")
def thoracolumbar(masks):
    """sub-verse004 (T9-L5): ribs above, sacrum and pelvis below."""
    return synthesize_ct(masks["sub-verse004"], np.random.default_rng(3), SPACING, crop=False)


@pytest.fixture(scope="module")
def cervical(masks):
    """sub-gl017 (C1-T4): skull base above, lungs and ribs at the thoracic end."""
    return synthesize_ct(masks["sub-gl017"], np.random.default_rng(4), SPACING, crop=False)


def test_labels_preserved(masks, thoracolumbar, cervical):
    _, lab = thoracolumbar
    assert set(np.unique(lab)) == set(np.unique(masks["sub-verse004"]))
    _, lab = cervical
    assert set(np.unique(lab)) == set(np.unique(masks["sub-gl017"]))
    # every vertebra keeps roughly its volume (deformation scales by at most ~15 % per axis)
    for k in (16, 20, 24):
        ratio = (thoracolumbar[1] == k).sum() / (masks["sub-verse004"] == k).sum()
        assert 0.5 < ratio < 1.8


def test_hu_ranges_of_bone_and_soft_tissue(thoracolumbar):
    hu, lab = thoracolumbar
    bone = lab > 0
    interior = ndimage.binary_erosion(bone, iterations=1)
    # trabecular bone 60-300 HU (blurred, noisy); real CTs at 2.5 mm: interior medians 75-165 HU
    assert 50 < np.median(hu[interior]) < 400
    shell = bone & ~interior
    assert np.median(hu[shell]) > np.median(hu[interior]) + 50  # the (partial-volume) cortical shell is denser
    assert np.percentile(hu[shell], 90) > 300
    body_voxels = (hu > -200) & (hu < 150) & ~ndimage.binary_dilation(bone, iterations=3)
    assert body_voxels.sum() > 10 * bone.sum()  # a body of soft tissue around the spine
    assert np.median(hu[hu > -500][~bone[hu > -500]]) < 100
    # air outside the body
    assert np.median(hu[0, 0, :5]) < -800


def test_distractor_bone_is_present_and_background(thoracolumbar, cervical):
    for hu, lab in (thoracolumbar, cervical):
        far_from_vertebrae = ~ndimage.binary_dilation(lab > 0, iterations=3)
        dense = (hu > 400) & far_from_vertebrae
        assert dense.sum() > 200, "expected ribs / pelvis / skull bone away from the vertebrae"
        assert np.all(lab[dense] == 0)
    hu, lab = thoracolumbar
    z_l5 = np.nonzero((lab == 24).any(axis=(1, 2)))[0].min()
    assert ((hu[: z_l5 - 2] > 400).sum()) > 300, "expected sacrum / iliac wings below L5"
    assert np.all(lab[: z_l5 - 2] == 0)


def test_lungs_beside_thoracic_spine(cervical):
    hu, lab = cervical
    z_t3 = int(np.nonzero((lab == 10).any(axis=(1, 2)))[0].mean())
    sl = hu[z_t3]
    inside = ndimage.binary_fill_holes(sl > -500)
    assert ((sl < -650) & (sl > -950) & inside).sum() > 100


def test_random_crop_cuts_the_field_of_view(masks):
    rng = np.random.default_rng(11)
    sizes = {synthesize_ct(masks["sub-verse010"], rng, SPACING, crop=True)[0].shape for _ in range(4)}
    assert len(sizes) > 1


def test_rejects_empty_label_map():
    with pytest.raises(ValueError, match="no vertebra"):
        synthesize_ct(np.zeros((10, 10, 10), np.int16), np.random.default_rng(0))


def test_s1_is_l5_shaped_background_bone_one_vertebra_below_l5_behind_a_disc(masks):
    """Below L5 lies S1: bone of label 0 with L5's shape, one vertebra (the L4 -> L5 step) lower, and a disc (soft
    tissue, not bone) below L5 as below L4. A model that never saw such an S1 takes the sacrum for vertebrae."""
    rng = np.random.default_rng(5)
    shape_is_bone = []
    for _ in range(4):
        hu, lab = synthesize_ct(masks["sub-verse004"], rng, SPACING, crop=False)
        l5 = lab == 24
        step = np.argwhere(l5).mean(axis=0) - np.argwhere(lab == 23).mean(axis=0)
        moved = np.rint(np.argwhere(l5) + step).astype(int)
        moved = moved[np.all((moved >= 0) & (moved < lab.shape), axis=1)]
        assert len(moved) > 0.9 * l5.sum()
        background = lab[tuple(moved.T)] == 0  # L5's articular processes reach down beside S1's
        assert background.mean() > 0.9
        moved = moved[background]
        soft_tissue = np.median(hu[(lab == 0) & (hu > -200) & (hu < 100)])
        bone = soft_tissue + 0.5 * (np.median(hu[l5]) - soft_tissue)  # halfway between soft tissue and L5
        shape_is_bone.append(float((hu[tuple(moved.T)] > bone).mean()))
        # below L5's lower surface a disc like the one below L4 (2 voxels = 5 mm down)
        soft = {}
        for k in (23, 24):
            surface = np.argwhere((lab == k) & ~np.roll(lab == k, 1, axis=0)) - [2, 0, 0]
            soft[k] = float(((hu[tuple(surface.T)] < 150) & (lab[tuple(surface.T)] == 0)).mean())
        assert soft[24] > 0.2 and soft[24] > 0.6 * soft[23], soft
    # the tapering slab alone (the sacrum before S1 was added) covers less than half of that shape (0.46 here)
    assert np.mean(shape_is_bone) > 0.7, shape_is_bone


def test_contrast_filled_aorta_and_heart_lie_in_front_of_the_thoracic_spine(masks):
    """In about half of the synthetic CTs the blood is contrast-filled (150-500 HU, as dense as trabecular bone): the
    aorta in front of the thoracic and lumbar vertebrae and the heart's chambers in front of T5-T10 together (that
    they stay label 0 is test_labels_preserved)."""
    rng = np.random.default_rng(21)
    aorta, heart = [], []
    for _ in range(6):
        hu, lab = synthesize_ct(masks["sub-verse004"], rng, SPACING, crop=False)
        spine = ndimage.binary_dilation(lab > 0, iterations=int(round(10 / SPACING)))
        dense = (hu > 150) & (hu < 600) & ~spine
        t10, t9 = np.argwhere(lab == 17), np.argwhere(lab == 16)
        z_t10, front = int(t10[:, 0].mean()), t10[:, 1].min()  # canonical y grows posteriorly
        aorta.append(int(dense[z_t10, : max(front - 2, 0)].sum()))  # T10's slice, in front of its body
        z, y, x = np.rint(t9.mean(axis=0)).astype(int)  # above T9's centre, 65-110 mm in front, left of the midline
        heart.append(int(dense[z:, max(y - round(110 / SPACING), 0) : y - round(65 / SPACING),
                               x - round(30 / SPACING) : x + round(40 / SPACING)].sum()))
    contrast = [n > 40 for n in aorta]
    assert 1 <= sum(contrast) <= 5, aorta
    assert [n > 500 for n in heart] == contrast, (aorta, heart)
