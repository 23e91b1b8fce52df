"""Tests of the DICOM SEG output (``SpineSegmentationLib/outputs/dicom_seg.py``) on the shipped real DICOM series.

The shipped model finds no vertebra in the 20-slice DICOM slab, so the segmentation written here is the slab's
reference (TotalSegmentator, T11 and T12, resampled by nearest neighbour onto the series' grid) turned into a
result whose vertebrae are measured with numpy (``result_from_labels`` of ``test_outputs.py``). Every file is read
back with pydicom (frame by frame, independently of highdicom) and with highdicom.

The shipped series is anonymised: its slices have no Study, Series or SOP Instance UID in the dataset. The
referencing path is tested on a copy whose slices get those UIDs (the SOP Instance UID from the file meta, where
the anonymiser left it), the "references no series" path on the series as shipped.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import SegmentationStorage, generate_uid
from enhanced_ct import write_enhanced_ct
from test_outputs import result_from_labels

from SpineSegmentationLib import anatomy
from SpineSegmentationLib.errors import InputImageError, OutputExistsError
from SpineSegmentationLib.io import dicom_series_in_folder, read_image, read_image_header
from SpineSegmentationLib.outputs import OUTPUT_FILES, DicomSegNotWrittenError, check_outputs_free, write_outputs
from SpineSegmentationLib.outputs.dicom_seg import (
    DICOM_SEG_FILE,
    EmptySegmentationError,
    SourceSeriesError,
    build_dicom_seg,
    dicom_source_files,
    write_dicom_seg,
)
from SpineSegmentationLib.result import SpineSegmentationResult
from SpineSegmentationLib.terminology import vertebra_terminology

T11, T12 = 18, 19
#: Audit hooks this module added to the process (at most one: they cannot be removed).
_AUDIT_HOOKS: list = []


def labels_on_grid(reference_path, image: sitk.Image) -> sitk.Image:
    """The TotalSegmentator reference in VerSe numbers, on ``image``'s grid (nearest neighbour)."""
    reference = sitk.ReadImage(str(reference_path))
    reference = sitk.Resample(reference, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, reference.GetPixelID())
    labels = sitk.GetImageFromArray(anatomy.to_verse(sitk.GetArrayFromImage(reference), "totalseg"))
    labels.CopyInformation(image)
    return labels


@pytest.fixture(scope="module")
def slab_result(dicom_ct_image, dicom_reference) -> SpineSegmentationResult:
    result = result_from_labels(labels_on_grid(dicom_reference, dicom_ct_image), incomplete={T11})
    result.run_info["model"] = {"name": "spineseg-test", "version": "0.0.1"}
    assert [v.label for v in result.vertebrae] == [T11, T12]  # the slab's two vertebrae, cranial first
    return result


@pytest.fixture(scope="module")
def series_with_uids(dicom_dir, tmp_path_factory):
    """Copy of the shipped series with Study/Series/SOP UIDs in every slice (pixel data unchanged)."""
    folder = tmp_path_factory.mktemp("series_with_uids")
    study, series = generate_uid(), generate_uid()
    for path in dicom_source_files(dicom_dir):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.save_as(folder / path.name, enforce_file_format=True)
    return folder, study, series


def frames_by_segment_and_slice(seg: pydicom.Dataset, labels: sitk.Image) -> dict[tuple[int, int], int]:
    """(segment number, label map slice k) -> frame index, from each frame's plane position (pydicom only)."""
    frames = {}
    for f, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        index = labels.TransformPhysicalPointToIndex(position)
        assert np.allclose(labels.TransformIndexToPhysicalPoint(index), position, atol=1e-3)  # on the grid
        assert index[:2] == (0, 0)
        segment = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        frames[(segment, index[2])] = f
    return frames


def assert_segments_match_label_map(seg: pydicom.Dataset, result: SpineSegmentationResult):
    """Every segment's voxels equal the label map's voxels of its vertebra, slice by slice; codes as terminology."""
    labels = sitk.GetArrayFromImage(result.labels)  # [k, j, i]
    shared = seg.SharedFunctionalGroupsSequence[0]
    assert [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing] == pytest.approx(
        [result.labels.GetSpacing()[1], result.labels.GetSpacing()[0]])
    direction = np.array(result.labels.GetDirection()).reshape(3, 3)
    assert [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient] == pytest.approx(
        list(direction[:, 0]) + list(direction[:, 1]))
    assert (seg.Rows, seg.Columns) == labels.shape[1:]
    pixels = seg.pixel_array
    frames = frames_by_segment_and_slice(seg, result.labels)
    assert len(seg.SegmentSequence) == len(result.vertebrae)
    for item, vertebra in zip(seg.SegmentSequence, result.vertebrae):
        term = vertebra_terminology(vertebra.label)
        assert item.SegmentLabel == vertebra.name
        code = item.SegmentedPropertyTypeCodeSequence[0]
        assert (code.CodingSchemeDesignator, code.CodeValue, code.CodeMeaning) == term.type
        category = item.SegmentedPropertyCategoryCodeSequence[0]
        assert (category.CodingSchemeDesignator, category.CodeValue, category.CodeMeaning) == term.category
        assert item.SegmentDescription.startswith("complete" if vertebra.complete else "INCOMPLETE")
        algorithm = item.SegmentationAlgorithmIdentificationSequence[0]
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("SpineSegmentation spineseg-test", "0.0.1")
        mask = labels == vertebra.label
        slices = [k for k in range(labels.shape[0]) if mask[k].any()]
        assert sorted(k for (s, k) in frames if s == item.SegmentNumber) == slices  # no empty or missing frame
        for k in slices:
            np.testing.assert_array_equal(pixels[frames[(item.SegmentNumber, k)]] == 1, mask[k])


def test_dicom_input_writes_a_seg_that_references_the_series(slab_result, dicom_ct_image, series_with_uids,
                                                              tmp_path):
    folder, study, series = series_with_uids
    image = read_image(folder)
    paths = write_outputs(slab_result, image, tmp_path, input_path=folder)
    assert paths["dicom_seg"] == tmp_path / DICOM_SEG_FILE
    assert set(paths) == set(OUTPUT_FILES) | {"dicom_seg"}
    assert json.loads(paths["vertebrae"].read_text())["input"]["dicom_series_uid"] == series  # the series read

    seg = pydicom.dcmread(paths["dicom_seg"])
    assert seg.SOPClassUID == SegmentationStorage
    assert seg.SegmentationType == "BINARY"
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in dicom_source_files(folder)]
    assert seg.StudyInstanceUID == study
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert [s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence] == [series]
    referenced = {r.ReferencedSOPInstanceUID for r in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {s.SOPInstanceUID for s in sources}
    assert_segments_match_label_map(seg, slab_result)
    assert float(seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SliceThickness) == float(
        sources[0].SliceThickness)
    # each frame names the source slice it lies on
    for (segment, k), f in frames_by_segment_and_slice(seg, slab_result.labels).items():
        derivation = seg.PerFrameFunctionalGroupsSequence[f].DerivationImageSequence[0]
        assert derivation.SourceImageSequence[0].ReferencedSOPInstanceUID == sources[k].SOPInstanceUID

    # highdicom reads it back: per source slice, the segments' pixels are the label map's
    hd_seg = hd.seg.segread(paths["dicom_seg"])
    assert hd_seg.get_segment_numbers(segment_label="T12") == [2]
    slab = hd_seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[s.SOPInstanceUID for s in sources], combine_segments=True)
    labels = sitk.GetArrayFromImage(slab_result.labels)
    expected = np.select([labels == T11, labels == T12], [1, 2], 0)
    np.testing.assert_array_equal(slab, expected)


#: Type 2 patient/study attributes (present, may be empty) that anonymisers and PACS exports drop.
PATIENT_STUDY_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                       "StudyDate", "StudyTime", "ReferringPhysicianName")


@pytest.mark.parametrize("dropped", [("PatientBirthDate",), PATIENT_STUDY_TYPE2], ids=["birth_date", "all"])
def test_a_series_without_type2_patient_or_study_attributes_gets_a_seg_with_them_empty(
        slab_result, series_with_uids, dropped, tmp_path):
    """A series with its UIDs whose export dropped type 2 patient/study attributes: the SEG is written, references
    the real source slices, holds the dropped attributes empty and the others as the source; the series' files are
    left as they were."""
    source_folder, study, series = series_with_uids
    folder = tmp_path / "series"
    folder.mkdir()
    for path in dicom_source_files(source_folder):
        ds = pydicom.dcmread(path)
        for keyword in dropped:
            delattr(ds, keyword)
        ds.save_as(folder / path.name, enforce_file_format=True)
    files = {p.name: p.read_bytes() for p in folder.iterdir()}

    paths = write_outputs(slab_result, read_image(folder), tmp_path / "out", input_path=folder)
    assert set(paths) == set(OUTPUT_FILES) | {"dicom_seg"}
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files  # the user's series is not changed
    seg = pydicom.dcmread(paths["dicom_seg"])
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in dicom_source_files(folder)]
    assert all(keyword not in ds for ds in sources for keyword in dropped)
    _assert_patient_study_copied(seg, sources[0], emptied=dropped)
    assert (seg.StudyInstanceUID, seg.FrameOfReferenceUID) == (study, sources[0].FrameOfReferenceUID)
    assert [s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence] == [series]
    referenced = {r.ReferencedSOPInstanceUID for r in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {s.SOPInstanceUID for s in sources}
    assert_segments_match_label_map(seg, slab_result)
    hd_seg = hd.seg.segread(paths["dicom_seg"])
    slab = hd_seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[s.SOPInstanceUID for s in sources], combine_segments=True)
    labels = sitk.GetArrayFromImage(slab_result.labels)
    np.testing.assert_array_equal(slab, np.select([labels == T11, labels == T12], [1, 2], 0))


def _assert_patient_study_copied(seg, source, emptied) -> None:
    """Every type 2 patient/study attribute is present in ``seg``: empty for the keywords in ``emptied``, the
    source's value for the others."""
    for keyword in PATIENT_STUDY_TYPE2:
        assert keyword in seg, keyword  # type 2: present
        if keyword in emptied:
            assert seg[keyword].is_empty, keyword
        else:
            assert seg[keyword].value == source[keyword].value, keyword


#: Values found in real exports that are not valid DICOM and that highdicom refuses (Patient's Sex is M, F or O;
#: DA is YYYYMMDD; TM is HHMMSS.FFFFFF).
INVALID_VALUES = {"PatientSex": "U", "StudyDate": "2022-12-08", "StudyTime": "12.30"}


@pytest.mark.parametrize("invalid", [{k: v} for k, v in INVALID_VALUES.items()] + [INVALID_VALUES],
                         ids=[*INVALID_VALUES, "all"])
def test_a_series_with_invalid_patient_or_study_values_gets_a_seg_with_them_empty_and_says_so(
        slab_result, series_with_uids, invalid, tmp_path, caplog):
    """A series with its UIDs whose patient/study attributes hold values that are not valid DICOM: every output is
    written, the SEG references the real source slices and holds those attributes empty (a warning names each
    attribute and value), the other attributes as the source; the series' files are left as they were."""
    source_folder, study, series = series_with_uids
    folder = tmp_path / "series"
    folder.mkdir()
    for path in dicom_source_files(source_folder):
        ds = pydicom.dcmread(path)
        ds.PatientSex, ds.PatientBirthDate = "M", "19700101"  # valid values, to be copied exactly
        for keyword, value in invalid.items():
            setattr(ds, keyword, value)
        ds.save_as(folder / path.name, enforce_file_format=True)
    files = {p.name: p.read_bytes() for p in folder.iterdir()}

    with caplog.at_level(logging.WARNING, logger="SpineSegmentationLib.outputs.dicom_seg"):
        paths = write_outputs(slab_result, read_image(folder), tmp_path / "out", input_path=folder)
    assert set(paths) == set(OUTPUT_FILES) | {"dicom_seg"}
    assert all(p.is_file() for p in paths.values())
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files  # the user's series is not changed
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in dicom_source_files(folder)]
    assert all(ds[keyword].value == value for ds in sources for keyword, value in invalid.items())
    seg = pydicom.dcmread(paths["dicom_seg"])
    _assert_patient_study_copied(seg, sources[0], emptied=invalid)
    warned = [r.getMessage() for r in caplog.records if r.name == "SpineSegmentationLib.outputs.dicom_seg"]
    assert len(warned) == len(invalid), warned  # one warning per attribute, not one per slice
    for keyword, value in invalid.items():
        assert any(f"{keyword} of the source DICOM series is '{value}', which is not valid DICOM" in m
                   and f"segmentation.dcm has {keyword} empty" in m for m in warned), warned
    assert (seg.StudyInstanceUID, seg.FrameOfReferenceUID) == (study, sources[0].FrameOfReferenceUID)
    assert [s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence] == [series]
    referenced = {r.ReferencedSOPInstanceUID for r in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {s.SOPInstanceUID for s in sources}
    assert_segments_match_label_map(seg, slab_result)


def test_an_anonymised_series_with_an_invalid_patient_sex_gets_a_seg_with_it_empty(slab_result, dicom_dir, tmp_path):
    """The series as shipped (no UIDs: the SEG references no series, its patient/study attributes are the first
    slice's) with Patient's Sex "U": the SEG is written with Patient's Sex empty, the Study Date as the source."""
    folder = tmp_path / "series"
    folder.mkdir()
    for path in dicom_source_files(dicom_dir):
        ds = pydicom.dcmread(path)
        ds.PatientSex = "U"
        ds.save_as(folder / path.name, enforce_file_format=True)
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    seg = pydicom.dcmread(write_dicom_seg(slab_result, tmp_path / DICOM_SEG_FILE, dicom_source_files(folder)))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files
    assert seg.ContentDescription == "references no DICOM series: source series has no UIDs"
    assert "PatientSex" in seg and seg["PatientSex"].is_empty
    assert seg.StudyDate == pydicom.dcmread(path, stop_before_pixels=True).StudyDate == "20221208"
    assert_segments_match_label_map(seg, slab_result)


@pytest.mark.parametrize("references", [True, False], ids=["series_with_uids", "anonymised"])
@pytest.mark.parametrize("sex", ["m", "o"])
def test_a_patient_sex_in_lower_case_or_with_spaces_is_copied_in_dicom_spelling(
        slab_result, series_with_uids, dicom_dir, references, sex, tmp_path, caplog):
    """Patient's Sex "m" (audit 2026-12-07: PACS exports write it so; the SEG had it empty, the patient's sex lost):
    the SEG holds "M", DICOM's code for the same, with a warning naming the value, on both paths (a SEG that
    references the series, and one of an anonymised series that references none)."""
    folder = tmp_path / "series"
    folder.mkdir()
    for path in dicom_source_files(series_with_uids[0] if references else dicom_dir):
        ds = pydicom.dcmread(path)
        ds.PatientSex = sex
        ds.save_as(folder / path.name, enforce_file_format=True)
    with caplog.at_level(logging.WARNING, logger="SpineSegmentationLib.outputs.dicom_seg"):
        seg = pydicom.dcmread(write_dicom_seg(slab_result, tmp_path / DICOM_SEG_FILE, dicom_source_files(folder)))
    assert seg.PatientSex == sex.upper()
    assert ("ReferencedSeriesSequence" in seg) == references
    warned = [r.getMessage() for r in caplog.records if r.name == "SpineSegmentationLib.outputs.dicom_seg"]
    assert any(f"PatientSex of the source DICOM series is '{sex}'" in m
               and f"segmentation.dcm has PatientSex '{sex.upper()}'" in m for m in warned), warned
    assert hd.seg.segread(tmp_path / DICOM_SEG_FILE).PatientSex == sex.upper()


#: Patient's names and the character sets real series declare for them: Latin-1, Cyrillic in UTF-8, and a Japanese
#: name in ISO 2022 code extensions with an empty first value (the example of DICOM PS3.5 annex H), a valid value
#: that highdicom 0.28 refuses.
NAMES = {"latin1": ("ISO_IR 100", "Müller^Jürgen"), "utf8": ("ISO_IR 192", "Иванов^Иван"),
         "japanese": (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう")}


@pytest.mark.parametrize("with_frame_of_reference", [True, False], ids=["references", "no_frame_of_reference"])
@pytest.mark.parametrize("charset, name", NAMES.values(), ids=NAMES)
def test_a_patients_name_outside_ascii_is_copied_with_a_character_set_that_holds_it(
        slab_result, series_with_uids, charset, name, with_frame_of_reference, tmp_path):
    """A name outside ASCII reaches the SEG unchanged, in a declared character set (audit 2026-12-07: a Japanese
    series ended the run with "internal error (ValueError: '' is not a valid SpecificCharacterSetValues)" and lost
    every output; a SEG that references no series had no Specific Character Set, so a Cyrillic name came out as
    "??????^????" and a Latin-1 one as bytes no reader was told the encoding of). The SEG keeps the source's
    character set where it is one highdicom takes, else UTF-8; read back, its name is the source's."""
    folder = tmp_path / "series"
    folder.mkdir()
    for path in dicom_source_files(series_with_uids[0]):
        ds = pydicom.dcmread(path)
        ds.SpecificCharacterSet, ds.PatientName = charset, name
        if not with_frame_of_reference:
            del ds.FrameOfReferenceUID
        ds.save_as(folder / path.name, enforce_file_format=True)
    paths = write_outputs(slab_result, read_image(folder), tmp_path / "out", input_path=folder)
    assert set(paths) == set(OUTPUT_FILES) | {"dicom_seg"}
    seg = pydicom.dcmread(paths["dicom_seg"])
    assert str(seg.PatientName) == name
    assert seg.SpecificCharacterSet == (charset if isinstance(charset, str) else "ISO_IR 192")
    assert ("ReferencedSeriesSequence" in seg) == with_frame_of_reference
    assert str(hd.seg.segread(paths["dicom_seg"]).PatientName) == name
    assert_segments_match_label_map(seg, slab_result)


def test_a_seg_made_from_a_file_whose_name_is_outside_ascii_says_so_in_utf8(slab_result, tmp_path):
    """The ``ContentDescription`` of a SEG made from a NIfTI quotes its file name: in UTF-8, declared."""
    seg = pydicom.dcmread(write_dicom_seg(slab_result, tmp_path / DICOM_SEG_FILE, None, "Позвоночник_Müller.nii.gz"))
    assert seg.SpecificCharacterSet == "ISO_IR 192"
    assert seg.ContentDescription == "references no DICOM series: made from Позвоночник_Müller.nii.gz"
    assert "Позвоночник".encode("utf-8") in (tmp_path / DICOM_SEG_FILE).read_bytes()


@pytest.mark.parametrize("thickness", ["absent", "empty"])
def test_a_series_without_a_slice_thickness_gets_a_seg_with_the_slice_spacing_as_thickness(
        slab_result, series_with_uids, thickness, tmp_path):
    """Slices without a Slice Thickness value (type 2 in the CT Image module; some exports drop it) (audit
    2026-12-07: dropped, the run ended with "internal error (AttributeError: ... 'SliceThickness')" and lost every
    output; empty, the SEG's frames had no thickness): every output is written, the SEG references the series, its
    frames are as thick as the slices are apart (2 mm here), the series' files unchanged; a series description
    holding a backslash (two values) is quoted as words."""
    folder = tmp_path / "series"
    folder.mkdir()
    for path in dicom_source_files(series_with_uids[0]):
        ds = pydicom.dcmread(path)
        if thickness == "absent":
            del ds.SliceThickness
        else:
            ds.SliceThickness = None
        ds.SeriesDescription = "CT\\Body 3.0"
        ds.save_as(folder / path.name, enforce_file_format=True)
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    paths = write_outputs(slab_result, read_image(folder), tmp_path / "out", input_path=folder)
    assert set(paths) == set(OUTPUT_FILES) | {"dicom_seg"}
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files
    seg = pydicom.dcmread(paths["dicom_seg"])
    assert float(seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SliceThickness) == pytest.approx(
        slab_result.labels.GetSpacing()[2]) == 2.0
    assert [s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence] == [series_with_uids[2]]
    assert seg.ContentDescription == "SpineSegmentation vertebrae of series CT Body 3.0"
    assert_segments_match_label_map(seg, slab_result)


def test_enhanced_ct_input_writes_a_seg_whose_frames_reference_their_source_frames(slab_result, dicom_ct_image,
                                                                                   dicom_dir, real_ct,
                                                                                   real_ct_reference, tmp_path):
    """The slab as one multi-frame file, its frames stored last slice first: the SEG references that file, and each
    SEG frame the source frame at its own position (the label map's slice k is the k-th frame along the normal, not
    frame k of the file). A label map on another grid is refused as for a series."""
    folder = write_enhanced_ct(dicom_dir, tmp_path / "enhanced")
    paths = write_outputs(slab_result, read_image(folder), tmp_path / "out", input_path=folder)
    seg = pydicom.dcmread(paths["dicom_seg"])
    source = pydicom.dcmread(folder / "enhanced_ct.dcm", stop_before_pixels=True)
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert [s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence] == [source.SeriesInstanceUID]
    assert [r.ReferencedSOPInstanceUID for r in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence] == [
        source.SOPInstanceUID]
    assert json.loads(paths["vertebrae"].read_text())["input"]["dicom_series_uid"] == source.SeriesInstanceUID
    assert_segments_match_label_map(seg, slab_result)
    source_positions = [[float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
                        for item in source.PerFrameFunctionalGroupsSequence]
    frames = frames_by_segment_and_slice(seg, slab_result.labels)
    assert len(frames) == int(seg.NumberOfFrames) > 0
    for (_, k), f in frames.items():
        referenced = seg.PerFrameFunctionalGroupsSequence[f].DerivationImageSequence[0].SourceImageSequence[0]
        assert referenced.ReferencedSOPInstanceUID == source.SOPInstanceUID
        np.testing.assert_allclose(source_positions[int(referenced.ReferencedFrameNumber) - 1],
                                   slab_result.labels.TransformIndexToPhysicalPoint((0, 0, k)), atol=1e-3)

    other = result_from_labels(labels_on_grid(real_ct_reference, sitk.ReadImage(str(real_ct))))
    with pytest.raises(ValueError, match="not the grid of the label map.*20 slices for 112"):
        build_dicom_seg(other, dicom_source_files(folder))


def test_anonymised_series_gives_a_seg_that_references_no_series(slab_result, dicom_dir, tmp_path):
    path = write_dicom_seg(slab_result, tmp_path / DICOM_SEG_FILE, dicom_source_files(dicom_dir))
    seg = pydicom.dcmread(path)
    assert seg.ContentDescription == "references no DICOM series: source series has no UIDs"
    assert "ReferencedSeriesSequence" not in seg and "SourceImageSequence" not in seg
    # the frame of reference the anonymiser kept still places the SEG on the CT
    source = pydicom.dcmread(dicom_source_files(dicom_dir)[0])
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert_segments_match_label_map(seg, slab_result)
    # the slices are 3 mm thick, 2 mm apart: the SEG's frames are the CT's slices, so is their thickness
    assert float(seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SliceThickness) == float(
        source.SliceThickness) == 3.0


@pytest.mark.parametrize("lacking", ["every slice", "the first half", "the second half"])
def test_a_series_without_a_frame_of_reference_uid_gets_a_seg_that_references_no_series(
        slab_result, series_with_uids, tmp_path, caplog, lacking):
    """A series with its Study/Series/SOP UIDs but no Frame of Reference UID (0020,0052) shared by every slice, as
    SimpleITK writes slices (audit 2026-12-07: the whole segmentation ran, then "internal error (AttributeError)" and
    no output was kept; with some slices lacking it, the SEG took the first slice's UID or a new one by slice order):
    every output is written, the SEG references no series, keeps the series' study, has a new Frame of Reference
    UID, and a warning says so; the series' files are unchanged."""
    source_folder, study, series = series_with_uids
    folder = tmp_path / "series"
    folder.mkdir()
    slices = dicom_source_files(source_folder)
    half = len(slices) // 2
    lacks = {"every slice": slices, "the first half": slices[:half], "the second half": slices[half:]}[lacking]
    for path in slices:
        ds = pydicom.dcmread(path)
        if path in lacks:
            del ds.FrameOfReferenceUID
        ds.save_as(folder / path.name, enforce_file_format=True)
    files = {p.name: p.read_bytes() for p in folder.iterdir()}

    with caplog.at_level(logging.WARNING, logger="SpineSegmentationLib.outputs.dicom_seg"):
        paths = write_outputs(slab_result, read_image(folder), tmp_path / "out", input_path=folder)
    assert set(paths) == set(OUTPUT_FILES) | {"dicom_seg"}
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files
    seg = pydicom.dcmread(paths["dicom_seg"])
    assert seg.ContentDescription == "references no DICOM series: no single Frame of Reference UID"
    assert "ReferencedSeriesSequence" not in seg and "SourceImageSequence" not in seg
    assert seg.StudyInstanceUID == study and seg.SeriesInstanceUID != series
    assert seg.FrameOfReferenceUID and pydicom.uid.UID(seg.FrameOfReferenceUID).is_valid
    assert seg.FrameOfReferenceUID != pydicom.dcmread(dicom_source_files(source_folder)[0]).FrameOfReferenceUID
    warned = [r.getMessage() for r in caplog.records if r.name == "SpineSegmentationLib.outputs.dicom_seg"]
    assert len(warned) == 1 and f"has no single Frame of Reference UID (0020,0052) ({len(lacks)} of {len(slices)} " \
        "slices lack one" in warned[0] and \
        "segmentation.dcm references no series and has a new Frame of Reference UID" in warned[0], warned
    assert_segments_match_label_map(seg, slab_result)
    hd.seg.segread(paths["dicom_seg"])  # highdicom reads it back


SEG_INPUT = (r"The DICOM series in '.*' is a DICOM Segmentation \(SEG, '{name}'\), not a CT: .* not HU\. Give the "
             r"folder of the CT")


@pytest.mark.parametrize("frames", ["every frame", "one frame"])
def test_a_dicom_seg_given_as_the_ct_is_refused_as_a_segmentation(slab_result, series_with_uids, tmp_path, frames):
    """spineseg's own segmentation.dcm given as the input: a multi-frame SEG was refused as "a multi-frame DICOM file
    of SOP class ... not one of the CT classes ... Convert it with dcm2niix" (no CT comes of converting a SEG, and
    without highdicom as "needs highdicom"), and a SEG of one frame was read as a CT of one slice of segment numbers.
    Refused by both readers naming it a segmentation; beside its CT series, the CT is read as before."""
    source, _, _ = series_with_uids
    folder = tmp_path / "series_and_seg"
    folder.mkdir()
    for path in dicom_source_files(source):
        (folder / path.name).write_bytes(path.read_bytes())
    seg_path = write_dicom_seg(slab_result, tmp_path / "seg" / DICOM_SEG_FILE, dicom_source_files(source))
    seg = pydicom.dcmread(seg_path)
    assert int(seg.NumberOfFrames) > 1
    if frames == "one frame":
        seg.PixelData = pydicom.pixels.pack_bits(seg.pixel_array[:1])
        seg.NumberOfFrames = 1
        seg.PerFrameFunctionalGroupsSequence = seg.PerFrameFunctionalGroupsSequence[:1]
        seg.save_as(seg_path, enforce_file_format=True)
    (folder / DICOM_SEG_FILE).write_bytes(seg_path.read_bytes())
    alone = seg_path.parent
    for read in (read_image, read_image_header):
        with pytest.raises(InputImageError, match=SEG_INPUT.format(name=DICOM_SEG_FILE)):
            read(alone)
        with pytest.raises(InputImageError, match=SEG_INPUT.format(name=DICOM_SEG_FILE)):
            read(folder, series_uid=seg.SeriesInstanceUID)
    ct_uid = pydicom.dcmread(dicom_source_files(source)[0]).SeriesInstanceUID
    assert read_image(folder, series_uid=ct_uid).GetSize() == (512, 512, 20)


@pytest.mark.parametrize("uids", ["anonymised", "with UIDs"])
def test_a_folder_of_a_ct_series_and_its_seg_gives_the_ct_without_a_series_uid(slab_result, dicom_dir,
                                                                               series_with_uids, tmp_path, uids):
    """A folder of CT slices with the segmentation.dcm spineseg wrote beside them, read with no --series-uid, was
    refused as "holds 2 DICOM series ... Pick one with --series-uid" (review 2026-12-07), the anonymised CT's UID
    being '' and hard to give. A SEG is no candidate: the CT is read; the SEG named by its UID is still refused."""
    source = dicom_dir if uids == "anonymised" else series_with_uids[0]
    folder = tmp_path / "series_and_seg"
    folder.mkdir()
    for path in dicom_source_files(source):
        (folder / path.name).write_bytes(path.read_bytes())
    seg_path = write_dicom_seg(slab_result, folder / DICOM_SEG_FILE, dicom_source_files(source))
    assert len(dicom_series_in_folder(folder)) == 2  # the CT and the SEG, each a series of its own
    expected = read_image(source)
    image = read_image(folder)
    assert image.GetSize() == (512, 512, 20)
    assert np.array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(expected))
    assert image.GetOrigin() == expected.GetOrigin() and image.GetSpacing() == expected.GetSpacing()
    assert tuple(read_image_header(folder).size) == (512, 512, 20)
    with pytest.raises(InputImageError, match=SEG_INPUT.format(name=DICOM_SEG_FILE)):
        read_image(folder, series_uid=pydicom.dcmread(seg_path).SeriesInstanceUID)


def test_a_folder_of_only_dicom_seg_series_is_refused_as_segmentations_not_asked_to_pick_one(
        slab_result, series_with_uids, tmp_path):
    """A folder of two SEGs (no CT) read with no --series-uid was told "holds 2 DICOM series ... Pick one with
    --series-uid", and any pick was then refused as a SEG (review 2026-12-07): refused at once, asking for the CT's
    folder."""
    source, _, _ = series_with_uids
    folder = tmp_path / "segs"
    folder.mkdir()
    for name in ("first.dcm", "second.dcm"):
        written = write_dicom_seg(slab_result, tmp_path / name / DICOM_SEG_FILE, dicom_source_files(source))
        (folder / name).write_bytes(written.read_bytes())
    assert len(dicom_series_in_folder(folder)) == 2  # two SEG series, no CT
    for read in (read_image, read_image_header):
        with pytest.raises(InputImageError, match=(
                r"holds 2 DICOM series, and every series here is a DICOM Segmentation \(SEG: '(first|second)\.dcm', "
                r"'(first|second)\.dcm'\), not a CT: .* Give the CT's folder")) as caught:
            read(folder)
        assert "--series-uid" not in str(caught.value)


def test_nifti_input_writes_a_seg_on_request_only(real_ct, real_ct_reference, tmp_path):
    image = sitk.ReadImage(str(real_ct))
    result = result_from_labels(labels_on_grid(real_ct_reference, image), incomplete={T11})
    result.run_info["model"] = {"name": "spineseg-test", "version": "0.0.1"}
    assert "dicom_seg" not in write_outputs(result, image, tmp_path / "plain", input_path=real_ct)
    assert not (tmp_path / "plain" / DICOM_SEG_FILE).exists()
    assert json.loads((tmp_path / "plain" / "vertebrae.json").read_text())["files"] == OUTPUT_FILES

    paths = write_outputs(result, image, tmp_path / "seg", input_path=real_ct, dicom_seg=True)
    listed = json.loads((tmp_path / "seg" / "vertebrae.json").read_text())["files"]  # the run's files, the SEG too
    assert listed == {**OUTPUT_FILES, "dicom_seg": DICOM_SEG_FILE} == {key: p.name for key, p in paths.items()}
    seg = pydicom.dcmread(paths["dicom_seg"])
    assert seg.ContentDescription == "references no DICOM series: made from example_ct.nii.gz"
    assert "ReferencedSeriesSequence" not in seg
    assert [item.SegmentLabel for item in seg.SegmentSequence] == ["T11", "T12", "L1", "L2", "L3", "L4", "L5", "S"]
    assert_segments_match_label_map(seg, result)  # the NIfTI's RAS-stored grid, frame by frame in LPS
    with pytest.raises(OutputExistsError, match="segmentation.dcm already exists"):
        write_dicom_seg(result, paths["dicom_seg"])


def test_empty_result_writes_no_seg_and_says_why(dicom_ct_image, dicom_dir, tmp_path, caplog):
    empty = sitk.Image(dicom_ct_image.GetSize(), sitk.sitkInt16)
    empty.CopyInformation(dicom_ct_image)
    result = SpineSegmentationResult(labels=empty, vertebrae=[], message="no spine found")
    with pytest.raises(EmptySegmentationError, match="no vertebra was found.*at least one segment"):
        build_dicom_seg(result, dicom_source_files(dicom_dir))
    with caplog.at_level(logging.WARNING):
        paths = write_outputs(result, dicom_ct_image, tmp_path, input_path=dicom_dir)
    assert set(paths) == set(OUTPUT_FILES)  # the five outputs record the empty result
    assert not (tmp_path / DICOM_SEG_FILE).exists()
    assert "no segmentation.dcm written: no vertebra was found" in caplog.text


def test_an_earlier_seg_is_never_left_beside_a_new_result_nor_written_into_the_series(slab_result, dicom_ct_image,
                                                                                      dicom_dir, tmp_path):
    write_outputs(slab_result, dicom_ct_image, tmp_path, input_path=dicom_dir)
    assert (tmp_path / DICOM_SEG_FILE).is_file()
    empty = sitk.Image(dicom_ct_image.GetSize(), sitk.sitkInt16)
    empty.CopyInformation(dicom_ct_image)
    nothing = SpineSegmentationResult(labels=empty, vertebrae=[], message="no spine found")
    own = tmp_path / "own"
    own.mkdir()
    (own / DICOM_SEG_FILE).write_bytes((tmp_path / DICOM_SEG_FILE).read_bytes())  # a folder with a SEG only
    with pytest.raises(OutputExistsError, match="segmentation.dcm already exists"):
        check_outputs_free(own, input_path=dicom_dir)  # refused before a run, not after it
    write_outputs(nothing, dicom_ct_image, tmp_path, overwrite=True, input_path=dicom_dir)
    assert not (tmp_path / DICOM_SEG_FILE).exists()  # it showed the vertebrae of the earlier result
    with pytest.raises(OutputExistsError, match="is the DICOM input folder"):
        check_outputs_free(dicom_dir, input_path=dicom_dir)


def test_a_seg_that_cannot_be_made_keeps_the_other_outputs_and_says_so(slab_result, dicom_ct_image, dicom_dir,
                                                                      tmp_path, monkeypatch):
    """Without highdicom (Python 3.9: Slicer 5.6/5.8's PythonSlicer cannot install it) a DICOM series ran the whole
    segmentation, then lost every output (audit 2026-12-07; earlier SEG-only failures did the same: ee02954,
    e820e47, 14c44a0). Now the five outputs are written and kept, complete; no SEG is there (an earlier one of
    another result is removed), none half-written; the error says why and where the outputs are."""
    earlier = write_outputs(slab_result, dicom_ct_image, tmp_path, input_path=dicom_dir)["dicom_seg"]
    labels_before = earlier.with_name("labels.nii.gz").read_bytes()
    (tmp_path / "labels.nii.gz").unlink()  # so that the new label map is seen to be written
    monkeypatch.setitem(sys.modules, "highdicom", None)  # as on Python 3.9: import highdicom fails
    with pytest.raises(DicomSegNotWrittenError, match=r"segmentation.dcm was not written: writing a DICOM SEG "
                       r"needs highdicom.*The other outputs are complete in") as caught:
        write_outputs(slab_result, dicom_ct_image, tmp_path, overwrite=True, input_path=dicom_dir)
    assert set(caught.value.paths) == set(OUTPUT_FILES)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(OUTPUT_FILES.values())  # no SEG, no staging folder
    assert (tmp_path / "labels.nii.gz").read_bytes() == labels_before
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "labels.nii.gz"))),
                                  sitk.GetArrayFromImage(slab_result.labels))
    assert json.loads((tmp_path / "vertebrae.json").read_text())["files"] == OUTPUT_FILES  # the SEG not listed


#: The file that :func:`_remove_when_opened` deletes when Python code opens it (None: nothing to do).
_REMOVE_ON_OPEN: list = [None]


def _remove_when_opened(event: str, args: tuple) -> None:
    """Audit hook (``sys.addaudithook``): delete the armed file at the moment Python code (pydicom) opens it, so that
    the real open fails as it does when a slice vanishes after the series was listed (GDCM, C++, raises no audit
    event). Hooks cannot be removed: disarmed, it only compares the event name."""
    if event == "open" and _REMOVE_ON_OPEN[0] is not None and str(args[0]) == str(_REMOVE_ON_OPEN[0]):
        victim, _REMOVE_ON_OPEN[0] = _REMOVE_ON_OPEN[0], None
        victim.unlink()


@pytest.fixture
def slab_copy(dicom_dir, dicom_reference, tmp_path):
    """(folder, image, result): a copy of the shipped series, read by the library, and its segmentation result."""
    folder = tmp_path / "series"
    folder.mkdir()
    for path in dicom_source_files(dicom_dir):
        (folder / path.name).write_bytes(path.read_bytes())
    image = read_image(folder)
    result = result_from_labels(labels_on_grid(dicom_reference, image))
    result.run_info["model"] = {"name": "spineseg-test", "version": "0.0.1"}
    return folder, image, result


def assert_only_the_five_outputs(result, folder, caught):
    assert set(caught.value.paths) == set(OUTPUT_FILES)
    assert sorted(p.name for p in folder.iterdir()) == sorted(OUTPUT_FILES.values())  # no SEG, no staging folder
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "labels.nii.gz"))),
                                  sitk.GetArrayFromImage(result.labels))


def test_a_source_slice_that_cannot_be_read_at_the_seg_write_keeps_the_outputs_and_says_so(slab_copy, tmp_path):
    """A slice file that vanished between the listing of the series and its reading for the SEG (the source folder
    changed during the run) was reported as a failure to write the output folder ("cannot write into
    .../segmentation.dcm: No such file or directory. Choose an output folder with -o ..."), and the five outputs
    of the run were lost (audit 2026-12-07). Now the SEG alone is missing; the error names the file, says that the
    source folder changed, and how to get the SEG."""
    folder, image, result = slab_copy
    victim = dicom_source_files(folder)[7]
    if _remove_when_opened not in _AUDIT_HOOKS:
        sys.addaudithook(_remove_when_opened)
        _AUDIT_HOOKS.append(_remove_when_opened)
    _REMOVE_ON_OPEN[0] = victim
    try:
        with pytest.raises(DicomSegNotWrittenError) as caught:
            write_outputs(result, image, tmp_path / "out", input_path=folder)
    finally:
        armed, _REMOVE_ON_OPEN[0] = _REMOVE_ON_OPEN[0], None
    assert armed is None and not victim.exists()  # removed while the SEG was made, after the listing
    message = str(caught.value)
    assert message.startswith(f"segmentation.dcm was not written: the source DICOM series in '{folder}' could not "
                              f"be read: {victim}: No such file or directory; the source DICOM folder changed during "
                              "the run"), message
    assert "restore it and run again to get segmentation.dcm. The other outputs are complete in" in message
    assert "cannot write" not in message and "output folder with -o" not in message
    assert_only_the_five_outputs(result, tmp_path / "out", caught)
    # called directly with the listed files, the library names the file too (no bare OSError)
    with pytest.raises(SourceSeriesError, match=f"the source DICOM series could not be read: {victim}: No such"):
        build_dicom_seg(result, [*dicom_source_files(folder)[:7], victim, *dicom_source_files(folder)[7:]])


def test_a_source_slice_removed_before_the_seg_write_keeps_the_outputs_and_says_so(slab_copy, tmp_path):
    """A slice removed after the segmentation, before the SEG was written, was an "internal error (ValueError: the
    DICOM series is not the grid of the label map ...; pass the series that was segmented); this is a bug, please
    report it" (audit 2026-12-07): the folder changed, which the user can fix."""
    folder, image, result = slab_copy
    dicom_source_files(folder)[7].unlink()  # segmented with 20 slices; 19 are left
    with pytest.raises(DicomSegNotWrittenError) as caught:
        write_outputs(result, image, tmp_path / "out", input_path=folder)
    message = str(caught.value)
    assert message.startswith(f"segmentation.dcm was not written: the source DICOM series in '{folder}' is not the "
                              "grid of the segmented image (19 slices for 20 label map slices); the source DICOM "
                              "folder changed during the run"), message
    assert "bug" not in message and "internal error" not in message
    assert_only_the_five_outputs(result, tmp_path / "out", caught)


def test_a_series_copied_into_the_folder_during_the_run_does_not_stop_the_seg(slab_copy, series_with_uids, tmp_path):
    """A PACS export still writing into the folder: a second series arrived between the reading and the SEG. The
    SEG failed ("cannot pick the DICOM series ... pass the Series Instance UID", which `spineseg segment` had not
    needed; audit 2026-12-07); it now takes the series the image was read from."""
    folder, image, result = slab_copy
    other, _, _ = series_with_uids
    for path in other.iterdir():
        (folder / f"other-{path.name}").write_bytes(path.read_bytes())
    assert len(dicom_series_in_folder(folder)) == 2
    seg = pydicom.dcmread(write_outputs(result, image, tmp_path / "out", input_path=folder)["dicom_seg"])
    assert seg.ContentDescription == "references no DICOM series: source series has no UIDs"  # the anonymised one
    assert_segments_match_label_map(seg, result)


@pytest.mark.parametrize("off", ["along", "sideways"])
def test_a_series_the_reader_takes_as_an_even_grid_gets_a_seg_that_references_it(series_with_uids, dicom_reference,
                                                                                  tmp_path, off):
    """Slice positions off the even grid as far as the reader accepts (``dicom_stack.check_even_stack``): every other
    slice 0.12 mm along the normal (6 % of the 2 mm spacing; 10 % accepted), or the slices shifted sideways by up to
    0.4 mm from the first to the last (a gantry tilt under half a pixel), were segmented; the SEG refused them as "not
    the grid of the label map" (0.001 mm; an internal error, audit 2026-12-07). Now the SEG is written on the grid
    that was segmented and references the series and each of its slices; highdicom names a frame's own source slice
    only where all positions agree to 0.001 mm, so the frames name none here (Derivation Image Sequence: type 2,
    empty)."""
    source, study, series = series_with_uids
    folder = tmp_path / "series"
    folder.mkdir()
    files = dicom_source_files(source)
    for k, path in enumerate(files):
        ds = pydicom.dcmread(path)
        row, column = np.reshape([float(v) for v in ds.ImageOrientationPatient], (2, 3))
        if off == "sideways":  # along the rows, 0.4 mm at the last slice
            shift = 0.4 * k / (len(files) - 1) * row
        else:  # every other slice; the first and last define the grid
            shift = 0.12 * np.cross(row, column) if k % 2 and k < len(files) - 1 else 0 * row
        ds.ImagePositionPatient = [float(v) for v in np.array(ds.ImagePositionPatient, dtype=float) + shift]
        ds.save_as(folder / path.name, enforce_file_format=True)
    image = read_image(folder)
    result = result_from_labels(labels_on_grid(dicom_reference, image))
    result.run_info["model"] = {"name": "spineseg-test", "version": "0.0.1"}
    seg = pydicom.dcmread(write_outputs(result, image, tmp_path / "out", input_path=folder)["dicom_seg"])
    assert [s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence] == [series]
    assert_segments_match_label_map(seg, result)
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in dicom_source_files(folder)]
    assert [item.ReferencedSOPInstanceUID for item in seg.SourceImageSequence] == [s.SOPInstanceUID for s in sources]
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert all(len(item.DerivationImageSequence) == 0 for item in seg.PerFrameFunctionalGroupsSequence)


def _series_variant(source, folder, change) -> None:
    """Write the slices of ``source`` into ``folder``, ``change(k, ds)`` applied to each header (pixels unchanged)."""
    folder.mkdir()
    for k, path in enumerate(dicom_source_files(source)):
        ds = pydicom.dcmread(path)
        change(k, ds)
        ds.save_as(folder / path.name, enforce_file_format=True)


def _turned(ds, angle: float) -> None:
    """Turn a slice's Image Orientation (Patient) in its plane by ``angle`` radians (six decimals, as scanners)."""
    row, column = np.reshape([float(v) for v in ds.ImageOrientationPatient], (2, 3))
    turned = np.concatenate([np.cos(angle) * row + np.sin(angle) * column,
                             np.cos(angle) * column - np.sin(angle) * row])
    ds.ImageOrientationPatient = [f"{v:.6f}" for v in turned]


@pytest.mark.parametrize("off", ["turned", "moved sideways"])
def test_a_slice_off_the_grid_as_far_as_the_reader_accepts_gets_a_seg(series_with_uids, dicom_reference, tmp_path,
                                                                       off):
    """The reader (``dicom_stack.check_even_stack``) accepts a slice turned by up to 0.001 in each direction cosine
    (``validation.DIRECTION_TOLERANCE``) and one up to 10 % of the slice spacing off the even grid in any direction.
    The SEG refused more: slice 10 turned by 5e-4 (its cosines 1e-4 apart at most), or, with 0.5 mm pixels and 5 mm
    slices, slice 10 moved 0.45 mm sideways (half a pixel was the limit), and said "the source DICOM folder changed
    during the run ... restore it and run again", which could not help: nothing had changed (review 2026-12-07).
    Now the SEG is written with the reader's tolerances, on the grid that was segmented, referencing every slice."""
    source, study, series = series_with_uids

    def change(k, ds):
        if off == "turned":
            if k == 10:
                _turned(ds, 5e-4)
            return
        ds.PixelSpacing = [0.5, 0.5]
        position = np.array([float(v) for v in ds.ImagePositionPatient])
        position[2] *= 2.5  # 2 mm slices become 5 mm
        if k == 10:
            position[0] += 0.45  # 9 % of the slice spacing, 0.9 pixel, along the rows
        ds.ImagePositionPatient = [float(v) for v in position]

    folder = tmp_path / "series"
    _series_variant(source, folder, change)
    image = read_image(folder)  # the reader takes it as one even grid
    assert image.GetSpacing() == pytest.approx((0.5, 0.5, 5.0) if off != "turned" else (0.977, 0.977, 2.0), abs=1e-3)
    labels = labels_on_grid(dicom_reference, read_image(source))
    labels.CopyInformation(image)  # the slab's segmentation, on the grid read (the same voxels)
    result = result_from_labels(labels)
    result.run_info["model"] = {"name": "spineseg-test", "version": "0.0.1"}
    for attempt in ("first", "again"):  # the same on every run
        seg = pydicom.dcmread(write_outputs(result, image, tmp_path / attempt, input_path=folder)["dicom_seg"])
        assert [s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence] == [series]
        assert_segments_match_label_map(seg, result)
        sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in dicom_source_files(folder)]
        assert [item.ReferencedSOPInstanceUID for item in seg.SourceImageSequence] == [
            s.SOPInstanceUID for s in sources]
        orientation = seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
        np.testing.assert_allclose([float(v) for v in orientation], np.array(image.GetDirection()).reshape(3, 3)[
            :, :2].T.ravel(), atol=1e-6)  # the grid read: the first slice's orientation
    if off == "turned":  # the slice file is unchanged: its own orientation is still turned
        assert sources[10].ImageOrientationPatient != sources[0].ImageOrientationPatient


def test_a_series_off_the_label_maps_grid_is_named_without_saying_the_folder_changed(slab_copy, tmp_path):
    """A series that is not the grid of the label map, though it has its number of slices, may come from a caller's
    image read otherwise, not from a change of the folder; its SEG error said "the source DICOM folder changed
    during the run ... restore it and run again" (review 2026-12-07). Now it names the slice and how far off it is,
    orientations with six decimals (a difference of 2e-4 shows; they were rounded to 0.001), and what to pass."""
    folder, image, result = slab_copy
    victim = dicom_source_files(folder)[10]
    ds = pydicom.dcmread(victim)
    _turned(ds, 2e-3)  # twice the reader's tolerance
    ds.save_as(victim, enforce_file_format=True)
    with pytest.raises(DicomSegNotWrittenError) as caught:
        write_outputs(result, image, tmp_path / "out", input_path=folder)
    message = str(caught.value)
    assert message.startswith(f"segmentation.dcm was not written: the source DICOM series in '{folder}' is not the "
                              "grid of the segmented image (slice 10 has Image Orientation (Patient) [0.999998, "
                              "0.002000, 0.000000, -0.002000, 0.999998, 0.000000], the label map [1.000000, 0.000000, "
                              "0.000000, 0.000000, 1.000000, 0.000000]; up to 0.001 apart is the same grid)"), message
    assert "pass as input_path the folder of the series the segmented image was read from" in message
    assert "changed during the run" not in message and "run again" not in message
    assert_only_the_five_outputs(result, tmp_path / "out", caught)
    # the library call names it the same way
    with pytest.raises(SourceSeriesError, match=r"slice 10 has Image Orientation \(Patient\) \[0\.999998, 0\.002000"):
        build_dicom_seg(result, dicom_source_files(folder))


def test_a_caller_image_from_a_folder_of_two_series_is_told_to_name_the_series(series_with_uids, dicom_reference,
                                                                               tmp_path):
    """A library caller who read the CT of a folder of two series itself (no ``io.SERIES_UID_KEY`` in the image) was
    told "... is not the only one in the folder ...; the source DICOM folder changed during the run ...; restore it
    and run again" (review 2026-12-07), which is false and no fix. Now the message says to name the series in
    ``result.run_info["dicom_series_uid"]``, and doing so gives the SEG."""
    source, _, _ = series_with_uids
    folder = tmp_path / "series"
    folder.mkdir()
    study, uids = generate_uid(), []
    for copy in ("a", "b"):
        uids.append(generate_uid())
        for path in dicom_source_files(source):
            ds = pydicom.dcmread(path)
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, uids[-1]
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.save_as(folder / f"{copy}-{path.name}", enforce_file_format=True)
    reader = sitk.ImageSeriesReader()
    image = sitk.ReadImage(reader.GetGDCMSeriesFileNames(str(folder), uids[0]))
    assert not image.HasMetaDataKey("0020|000e")
    result = result_from_labels(labels_on_grid(dicom_reference, image))
    result.run_info["model"] = {"name": "spineseg-test", "version": "0.0.1"}
    with pytest.raises(DicomSegNotWrittenError) as caught:
        write_outputs(result, image, tmp_path / "out", input_path=folder)
    message = str(caught.value)
    assert message.startswith(f"segmentation.dcm was not written: cannot pick the DICOM series of '{folder}' for "
                              "segmentation.dcm: the folder holds several DICOM series and none was named: "
                              f"{sorted(uids)}; pass the Series Instance UID of the segmented series as "
                              'result.run_info["dicom_series_uid"]'), message
    assert "changed during the run" not in message and "run again" not in message
    assert_only_the_five_outputs(result, tmp_path / "out", caught)
    result.run_info["dicom_series_uid"] = uids[0]
    seg = pydicom.dcmread(write_outputs(result, image, tmp_path / "named", input_path=folder)["dicom_seg"])
    assert [s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence] == [uids[0]]
    assert_segments_match_label_map(seg, result)


def test_a_series_of_files_without_the_dicom_file_header_gets_a_seg_that_references_it(dicom_dir, dicom_reference,
                                                                                       tmp_path):
    """Slice files without the 128-byte preamble, "DICM" and file meta (older exports, PS3.10 7.1's header left
    out) are read by GDCM, so the series was segmented; pydicom refuses them unless forced, and the SEG ended with
    "internal error (InvalidDicomError: File is missing DICOM File Meta Information header ...); this is a bug"
    (audit 2026-12-07). Now they are read as the series they are."""
    folder = tmp_path / "series"
    folder.mkdir()
    study, series = generate_uid(), generate_uid()
    for path in dicom_source_files(dicom_dir):
        ds = pydicom.dcmread(path)
        ds.decompress()  # without file meta, the transfer syntax is implicit VR little endian
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        del ds.file_meta
        ds.preamble = None
        pydicom.dcmwrite(folder / path.name, ds, enforce_file_format=False, implicit_vr=True, little_endian=True)
        assert (folder / path.name).read_bytes()[128:132] != b"DICM"
    image = read_image(folder)
    result = result_from_labels(labels_on_grid(dicom_reference, image))
    result.run_info["model"] = {"name": "spineseg-test", "version": "0.0.1"}
    seg = pydicom.dcmread(write_outputs(result, image, tmp_path / "out", input_path=folder)["dicom_seg"])
    assert (seg.StudyInstanceUID, seg.ReferencedSeriesSequence[0].SeriesInstanceUID) == (study, series)
    assert {item.ReferencedSOPInstanceUID for item in seg.SourceImageSequence} == {
        pydicom.dcmread(path, force=True).SOPInstanceUID for path in folder.iterdir()}
    assert_segments_match_label_map(seg, result)


def test_a_series_that_is_not_the_label_maps_grid_is_refused(slab_result, dicom_dir, real_ct, real_ct_reference):
    image = sitk.ReadImage(str(real_ct))
    other = result_from_labels(labels_on_grid(real_ct_reference, image))
    with pytest.raises(ValueError, match="not the grid of the label map.*20 slices for 112"):
        build_dicom_seg(other, dicom_source_files(dicom_dir))


def run_segment(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "SpineSegmentationLib.cli", "segment", *map(str, args),
                           "--device", "cpu", "--progress", "none"], capture_output=True, text=True, timeout=1800)


def assert_seg_lists_the_vertebrae(out):
    """segmentation.dcm of a CLI run holds one segment per vertebra of its vertebrae.json, in the same order."""
    report = json.loads((out / "vertebrae.json").read_text())
    seg = pydicom.dcmread(out / DICOM_SEG_FILE)
    assert [item.SegmentLabel for item in seg.SegmentSequence] == [v["name"] for v in report["vertebrae"]]
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labels.nii.gz")))
    for item, vertebra in zip(seg.SegmentSequence, report["vertebrae"]):
        frames = [f for f, g in enumerate(seg.PerFrameFunctionalGroupsSequence)
                  if g.SegmentIdentificationSequence[0].ReferencedSegmentNumber == item.SegmentNumber]
        assert int(seg.pixel_array[frames].sum()) == int((labels == vertebra["label"]).sum())


def test_cli_on_the_dicom_series_writes_a_seg_or_says_why_not(dicom_dir, tmp_path):
    proc = run_segment(dicom_dir, "-o", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if json.loads((tmp_path / "vertebrae.json").read_text())["vertebrae"]:  # a later model may find T11/T12
        assert_seg_lists_the_vertebrae(tmp_path)
    else:  # the shipped model finds no vertebra in this 40 mm slab
        assert not (tmp_path / DICOM_SEG_FILE).exists()
        assert "no segmentation.dcm written: no vertebra was found" in proc.stderr


def test_the_cli_shows_the_librarys_logged_warnings_as_warning_lines(shared_data, tmp_path, capsys):
    """The DICOM SEG's warnings are log records (``logging``); with no handler Python printed them bare on stderr,
    onto the progress bar's line (audit 2026-12-07), and a caller's root handler (``logging.basicConfig``) would
    print them a second time (review). The cardiac crop holds no vertebra: with --dicom-seg the run says once, as a
    ``spineseg: warning:`` line of its own below the bar, that no SEG was written."""
    import logging

    from SpineSegmentationLib import cli

    root = logging.getLogger()
    caller = logging.StreamHandler(sys.stderr)  # a script that set up logging before calling the command
    root.addHandler(caller)
    try:
        assert cli.main(["segment", str(shared_data["chest_ct"]), "-o", str(tmp_path / "out"), "--dicom-seg",
                         "--device", "cpu", "--progress", "bar"]) == 0
    finally:
        root.removeHandler(caller)
    err = capsys.readouterr().err.replace("\r", "\n").splitlines()  # the bar redraws itself after a carriage return
    said = [line for line in err if "no segmentation.dcm written: no vertebra was found" in line]
    assert said == ["spineseg: warning: no segmentation.dcm written: no vertebra was found, and a DICOM "
                    "Segmentation must hold at least one segment"], said
