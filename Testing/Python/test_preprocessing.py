"""What the networks see: the field of view extended with soft tissue where it cuts through the body."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from SpineSegmentationLib.preprocessing import CUT_BODY_PAD_HU, CUT_BODY_PAD_MM, extend_cut_body

SPACING, PATCH_MM = 4.0, 120.0


def _grid(hu: np.ndarray) -> sitk.Image:
    grid = sitk.Image([int(n) for n in hu.shape[::-1]], sitk.sitkUInt8)
    grid.SetSpacing([SPACING] * 3)
    grid.SetOrigin([-100.0, 20.0, 300.0])
    return grid


def test_only_the_sides_of_the_field_of_view_that_cut_through_the_body_are_extended():
    hu = np.full((10, 40, 50), -1000.0, dtype=np.float32)  # 160 mm front-back, 200 mm left-right
    hu[:, 5:35, 5:45] = 40.0  # a body surrounded by air: a whole cross-section
    grid = _grid(hu)
    same, same_grid = extend_cut_body(hu, grid, PATCH_MM)
    assert same is hu and same_grid is grid

    hu[:, 0:35, 5:45] = 40.0  # the front (y = 0) cuts through the body along 40 of its 50 columns...
    hu[:, 0, 30:45] = 700.0  # ... through bone along 15 of them...
    hu[:, 0:35, 20:30] = -850.0  # ... and through lung along 10 (not the body)
    hu[:, 20:, 49] = 40.0  # the left side (x = 49) along 20 of its 40 rows: half, also cut
    extended, extended_grid = extend_cut_body(hu, grid, PATCH_MM)
    width = int(round(CUT_BODY_PAD_MM / SPACING))
    assert extended.shape == (10, 40 + width, 50 + width)  # in front and on the left; not behind, not on the right
    np.testing.assert_array_equal(extended[:, width:, :50], hu)
    # the body goes on as soft tissue beyond the sides it cuts (over its bone too), lung and air as they are
    front = extended[:, :width, :50]
    assert (front[:, :, 5:20] == CUT_BODY_PAD_HU).all() and (front[:, :, 30:45] == CUT_BODY_PAD_HU).all()
    assert (front[:, :, 20:30] == -850.0).all() and (front[:, :, :5] == -1000.0).all()
    left = extended[:, width:, 50:]
    assert (left[:, 20:] == CUT_BODY_PAD_HU).all() and (left[:, :20] == -1000.0).all()
    # the same physical points: the input's first voxel is the extended grid's voxel (x 0, y width)
    assert extended_grid.GetSize() == extended.shape[::-1]
    assert extended_grid.TransformIndexToPhysicalPoint((0, width, 0)) == grid.GetOrigin()
    assert extended_grid.GetSpacing() == grid.GetSpacing() and extended_grid.GetDirection() == grid.GetDirection()

    hu[:, 20, 49] = -1000.0  # 19 of 40 rows: less than half of the left side, which is then left as it is
    assert extend_cut_body(hu, grid, PATCH_MM)[0].shape == (10, 40 + width, 50)


def test_a_field_of_view_that_one_patch_spans_is_left_as_it_is():
    hu = np.full((10, 30, 30), 40.0, dtype=np.float32)  # 120 x 120 mm, every side in the body
    grid = _grid(hu)
    assert extend_cut_body(hu, grid, PATCH_MM)[0] is hu
    width = int(round(CUT_BODY_PAD_MM / SPACING))
    assert extend_cut_body(hu, grid, PATCH_MM - SPACING)[0].shape == (10, 30 + 2 * width, 30 + 2 * width)
