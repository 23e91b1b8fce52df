"""HU surface refinement (seed 002, section 3.1) on a known phantom and on the real CT."""

import numpy as np
import SimpleITK as sitk

from SpineSegmentationLib.anatomy import to_verse
from SpineSegmentationLib.refinement import refine_surfaces


def test_low_hu_surface_voxels_are_peeled_and_the_cortex_stops_the_peeling():
    hu = np.full((20, 20, 20), 40.0)  # soft tissue
    hu[6:14, 6:14, 6:14] = 1000.0  # bone cube
    labels = np.zeros(hu.shape, dtype=np.int16)
    labels[4:16, 4:16, 4:16] = 20  # over-segmented by 2 voxels into soft tissue
    out = refine_surfaces(labels, hu, (1.0, 1.0, 1.0), max_depth_mm=3.0)
    np.testing.assert_array_equal(out == 20, hu > 200)
    assert labels.sum() == 20 * 12**3  # input untouched


def test_trabecular_bone_inside_the_cortex_is_never_removed():
    hu = np.full((20, 20, 20), 40.0)
    hu[5:15, 5:15, 5:15] = 900.0  # cortex
    hu[7:13, 7:13, 7:13] = 120.0  # trabecular core below 200 HU (osteoporotic)
    labels = np.zeros(hu.shape, dtype=np.int16)
    labels[5:15, 5:15, 5:15] = 3
    out = refine_surfaces(labels, hu, (1.0, 1.0, 1.0))
    np.testing.assert_array_equal(out, labels)


def test_peeling_depth_is_limited():
    hu = np.full((30, 30, 30), 40.0)
    hu[14:16, 14:16, 14:16] = 1000.0
    labels = np.zeros(hu.shape, dtype=np.int16)
    labels[5:25, 5:25, 5:25] = 1
    out = refine_surfaces(labels, hu, (1.0, 1.0, 1.0), max_depth_mm=2.0)
    assert (out == 1).sum() == 16**3  # two passes of one voxel each


def test_peeling_depth_is_in_mm_on_an_anisotropic_grid():
    """2 mm slices, 0.5 mm in-plane, the mask 6 voxels too large on every side: 3 mm of peeling removes one slice
    (2 mm; the next is 4 mm deep) but six in-plane voxels (3 mm)."""
    hu = np.full((30, 40, 40), 40.0)
    hu[12:18, 12:28, 12:28] = 1000.0
    labels = np.zeros(hu.shape, dtype=np.int16)
    labels[6:24, 6:34, 6:34] = 5
    out = refine_surfaces(labels, hu, (2.0, 0.5, 0.5), max_depth_mm=3.0)
    expected = np.zeros_like(labels)
    expected[7:23, 12:28, 12:28] = 5
    np.testing.assert_array_equal(out, expected)


def test_real_ct_reference_labels_lose_only_low_hu_surface(real_ct, real_ct_reference):
    img = sitk.ReadImage(str(real_ct))
    hu = sitk.GetArrayFromImage(img).astype(np.float32)
    labels = to_verse(sitk.GetArrayFromImage(sitk.ReadImage(str(real_ct_reference))), "totalseg")
    out = refine_surfaces(labels, hu, tuple(reversed(img.GetSpacing())))
    removed = (labels > 0) & (out == 0)
    assert removed.any()
    assert (hu[removed] < 200).all()
    for lab in np.unique(labels)[1:]:
        kept = (out == lab).sum() / (labels == lab).sum()
        assert kept > 0.5, f"label {lab} lost {1 - kept:.0%}"
