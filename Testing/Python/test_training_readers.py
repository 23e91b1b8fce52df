"""Tests of ``SpineSegmentationLib.training.readers`` reading a case's inputs: the advice given for a DICOM folder that
training cannot read, on the shipped real DICOM series (paths from the fixtures of ``conftest.py``)."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from SpineSegmentationLib import anatomy
from SpineSegmentationLib.errors import InputImageError, SpineSegmentationError
from SpineSegmentationLib.io import describe_series, dicom_series_in_folder
from SpineSegmentationLib.io import read_image as read_input_image
from SpineSegmentationLib.outputs.dicom_seg import DICOM_SEG_FILE, dicom_source_files, write_dicom_seg
from SpineSegmentationLib.training.readers import read_image, read_label_map
from test_outputs import result_from_labels


def test_a_folder_of_two_series_gets_advice_that_applies_to_training(dicom_dir, tmp_path):
    """Training reads images through ``io.read_image``, whose refusal of a folder of several series advised
    ``--series-uid`` or "a series_uid column in a spineseg batch manifest", neither of which training has (before
    2026-12-07). The training reader says what works there, naming what the folder was given as (the CT, a label map: no
    manifest assumed, cases also come from VerSe folders) and listing the series with their descriptions (io's),
    chained to the reader's error; the segment command's message is unchanged. The shipped series split into two
    (10 slices each)."""
    folder = tmp_path / "two_series"
    folder.mkdir()
    for index, path in enumerate(sorted(p for p in dicom_dir.iterdir() if p.is_file())):
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.8.498.{1 + index // 10}"
        ds.save_as(folder / path.name)
    with pytest.raises(InputImageError, match="Pick one with --series-uid UID") as segment_error:
        read_input_image(folder)
    listing = (r"2 DICOM series \('1\.2\.826\.0\.1\.3680043\.8\.498\.1': 10 files, 'CT Body 3\.0'; "
               r"'1\.2\.826\.0\.1\.3680043\.8\.498\.2': 10 files, 'CT Body 3\.0'\)")
    # each series described by the reader's own formatter (training had a copy of it: review 2026-12-07), which the
    # reader prefixes with series_uid=, the option training lacks
    series = dicom_series_in_folder(folder)
    described = [describe_series(uid, files) for uid, files in series.items()]
    assert len(described) == 2 and all(f"series_uid={text}" in str(segment_error.value) for text in described)
    with pytest.raises(InputImageError, match=(
            rf"^{folder} \(the CT of the case c1\) holds {listing}: training reads one series per folder and cannot "
            r"pick one \(it has no --series-uid\); move each series into a folder of its own and give the folder of "
            r"the series you mean, or convert that series to NIfTI")) as caught:
        read_image(folder, "the CT of the case c1")
    with pytest.raises(InputImageError, match=(
            rf"^{folder} \(a case's label map\) holds {listing}: training reads a case's label map from a label map "
            r"file \(NIfTI, NRRD\) made on the CT, not from a DICOM folder; give that file")) as labels_caught:
        read_label_map(folder, "give the case's label map")
    for error in (caught.value, labels_caught.value):
        assert "series_uid" not in str(error).replace("--series-uid", "")  # no column training lacks
        assert "manifest" not in str(error) and all(text in str(error) for text in described)
        assert type(error.__cause__) is InputImageError and str(error.__cause__) == str(segment_error.value)


def test_a_folder_of_a_dicom_seg_gets_advice_that_applies_to_training(dicom_dir, dicom_ct_image, dicom_reference,
                                                                      tmp_path):
    """A case whose image or labels is a folder holding spineseg's DICOM SEG of the shipped series: the reader's
    refusal advised leaving out --series-uid or giving the CT's Series Instance UID; the training reader asks for the
    CT series' folder as the image and a label map file converted from the SEG as the labels, by what the folder was
    given as. A folder of the CT series with the SEG beside it is still read as the CT."""
    reference = sitk.ReadImage(str(dicom_reference))
    reference = sitk.Resample(reference, dicom_ct_image, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    labels = sitk.GetImageFromArray(anatomy.to_verse(sitk.GetArrayFromImage(reference), "totalseg"))
    labels.CopyInformation(dicom_ct_image)
    seg = write_dicom_seg(result_from_labels(labels), tmp_path / "seg" / DICOM_SEG_FILE, dicom_source_files(dicom_dir))
    with pytest.raises(InputImageError, match="leave --series-uid out"):
        read_input_image(seg.parent)
    only_seg = rf"^{seg.parent} \(%s\) holds DICOM Segmentation \(SEG\) series only \('{DICOM_SEG_FILE}'\), no CT: "
    with pytest.raises(InputImageError, match=(
            only_seg % "the label map of the case c1" + r"training reads the label map of the case c1 from a label map "
            r"file \(NIfTI, NRRD\) made on the CT, not from a DICOM folder; give that file \(to make one of a DICOM "
            r"SEG holding the reference: in 3D Slicer load it with the DICOM module")) as caught:
        read_label_map(seg.parent, "give the case's label map", "the label map of the case c1")
    assert "--series-uid" not in str(caught.value) and isinstance(caught.value.__cause__, SpineSegmentationError)
    with pytest.raises(InputImageError, match=(
            only_seg % "a case's CT" + r"training reads a CT from an image file or a folder of one DICOM CT series; "
            r"give the folder of the CT series the SEG was made from, and where the SEG holds the case's reference, "
            r"give it as a label map file")):
        read_image(seg.parent)
    both = tmp_path / "ct_and_seg"
    shutil.copytree(dicom_dir, both)
    shutil.copy(seg, both / DICOM_SEG_FILE)
    assert read_image(both).GetSize() == dicom_ct_image.GetSize()


def test_a_float_label_map_with_tiny_negative_values_is_read_as_its_labels(tptbox_labels, tmp_path):
    """A float label map whose background holds -1e-6 (as smoothing or a float resampling leaves it) was refused as "an
    image, e.g. a CT in HU" (before 2026-12-07), although every value lies within 0.001 of a whole non-negative number
    (anatomy.whole_labels' rule): read as its labels. Below the tolerance it is still refused. The TPTBox crop's real
    vertebra mask."""
    image = sitk.ReadImage(str(tptbox_labels))
    array = sitk.GetArrayFromImage(image)
    for background, name in ((-1e-6, "noisy.nii.gz"), (-0.01, "negative.nii.gz")):
        noisy = sitk.GetImageFromArray(np.where(array > 0, array, background).astype(np.float32))
        noisy.CopyInformation(image)
        sitk.WriteImage(noisy, str(tmp_path / name))
    read = read_label_map(tmp_path / "noisy.nii.gz", "give the case's label map")
    assert np.array_equal(sitk.GetArrayFromImage(read), array)
    with pytest.raises(SpineSegmentationError, match=r"negative\.nii\.gz holds negative values \(lowest -0\.01\)"):
        read_label_map(tmp_path / "negative.nii.gz", "give the case's label map")
