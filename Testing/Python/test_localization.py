"""Spine localization (seed 001) and its left-right column cut, on constructed masks and on the real CT."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch

from SpineSegmentationLib.geometry import to_canonical
from SpineSegmentationLib.localization import localize_spine, spine_column
from SpineSegmentationLib.models import load_model

SPACING = 2.5


def _column_with_pelvis() -> tuple[np.ndarray, np.ndarray]:
    """[z, y, x] mask: a 20-voxel-wide column (x 40..59) over z 30..99, a 100-voxel-wide pelvis-like slab
    (x 0..99) over z 10..29 and a small stray blob far to the side at z 0..4 (x 85..94)."""
    mask = np.zeros((100, 20, 100), dtype=bool)
    mask[30:, :, 40:60] = True
    mask[10:30, :, 0:100] = True
    mask[0:5, :, 85:95] = True
    return mask, mask.astype(np.float32)


def test_column_cut_removes_the_wide_parts_beside_the_spine():
    mask, prob = _column_with_pelvis()
    cut = spine_column(mask, prob, SPACING, half_width_mm=25.0, max_width_mm=160.0)
    xs = np.flatnonzero(cut.any(axis=(0, 1)))
    assert (xs.min(), xs.max()) == (40, 59)  # the column's centre is 49.5, +-10 voxels (25 mm) kept
    assert cut[30:].sum() == mask[30:].sum()  # the spine itself is untouched
    assert cut[10:30].sum() == 20 * 20 * 20  # the wide slab is cut to the column
    assert not cut[0:5].any()  # the stray blob (a 12.5 mm run) does not pull the centre line towards it


def test_column_cut_leaves_a_mask_without_narrow_slices_alone():
    mask = np.zeros((30, 10, 100), dtype=bool)
    mask[:, :, 0:100] = True  # 250 mm wide everywhere: no slice says where the spine is
    assert np.array_equal(spine_column(mask, mask.astype(np.float32), SPACING, 50.0, 160.0), mask)


def test_real_ct_mask_is_a_column_that_contains_every_vertebra(real_ct_twice_as_long, real_ct_reference):
    """The real CT with soft tissue added below: the attention network also responds to the iliac wings there
    (without the cut the mask spans the whole pelvis); the column keeps every reference vertebra's centroid and nothing
    more than 50 mm to either side of the spine."""
    model = load_model(None, device="cpu")
    ct = real_ct_twice_as_long
    _, reference = to_canonical(ct, model.preprocessing.spacing_mm)
    loc = localize_spine(ct, reference, model, torch.device("cpu"))
    spacing = model.preprocessing.spacing_mm
    widths = [np.ptp(np.flatnonzero(row)) + 1 for row in loc.mask.any(axis=1) if row.any()]
    assert max(widths) * spacing <= 2 * model.localization.column_half_width_mm + spacing

    labels = sitk.ReadImage(str(real_ct_reference))
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(labels)
    vertebrae = [lab for lab in stats.GetLabels() if 27 <= lab <= 33]  # TotalSegmentator L5..T11
    assert len(vertebrae) == 7
    for lab in vertebrae:
        z, y, x = np.rint(reference.TransformPhysicalPointToContinuousIndex(stats.GetCentroid(lab))[::-1]).astype(int)
        assert loc.mask[z, y, x], f"TotalSegmentator label {lab} lies outside the spine mask"
