"""Multi-frame CT files built from the real DICOM slab (``example_ct_dicom``, 20 slices), for the tests.

highdicom's ``LegacyConvertedEnhancedCTImage`` turns the slab's slice files into one Legacy Converted Enhanced CT
file, the form a PACS converts a classic series to (PS3.3 A.70; an Enhanced CT stores its geometry and rescale in
the same functional groups). The variants store the frames in another order, give each frame its own rescale, or
break the stack as real multi-frame files can be broken.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable, Optional

import highdicom as hd
import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian


def _slab_with_uids(dicom_dir: Path) -> list[pydicom.Dataset]:
    """The slab's slices with the UIDs the anonymiser blanked (from each file's meta, a new study and series)."""
    study, series = hd.UID(), hd.UID()
    slices = []
    for path in sorted(p for p in Path(dicom_dir).iterdir() if p.is_file()):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        slices.append(ds)
    return slices


def _frames(ds: pydicom.Dataset) -> np.ndarray:
    return ds.pixel_array.reshape(int(ds.NumberOfFrames), ds.Rows, ds.Columns)


def _reordered(ds: pydicom.Dataset, order: list[int]) -> pydicom.Dataset:
    """``ds`` with frame i holding the pixels and per-frame groups of old frame ``order[i]``."""
    new = copy.deepcopy(ds)
    new.PerFrameFunctionalGroupsSequence = pydicom.Sequence(
        [copy.deepcopy(ds.PerFrameFunctionalGroupsSequence[i]) for i in order])
    new.NumberOfFrames = len(order)
    new.PixelData = np.ascontiguousarray(_frames(ds)[order]).tobytes()
    return new


def _rescale_per_frame(ds: pydicom.Dataset) -> pydicom.Dataset:
    """``ds`` with the rescale in each frame's own group, every other frame stored 1000 higher with an intercept
    1000 lower (the same HU): a reader applying one rescale to all frames is off by 1000 HU on half of them."""
    new = copy.deepcopy(ds)
    shared = new.SharedFunctionalGroupsSequence[0]
    transformation = shared.PixelValueTransformationSequence
    del shared.PixelValueTransformationSequence
    frames = _frames(new).astype(np.int32)
    for index, item in enumerate(new.PerFrameFunctionalGroupsSequence):
        own = copy.deepcopy(transformation)
        if index % 2:
            frames[index] += 1000
            own[0].RescaleIntercept = float(own[0].RescaleIntercept) - 1000
        item.PixelValueTransformationSequence = own
    new.PixelData = frames.astype(np.int16).tobytes()
    return new


def write_enhanced_ct(dicom_dir: Path, folder: Path, reverse: bool = True, per_frame_rescale: bool = True,
                      edit: Optional[Callable[[pydicom.Dataset], pydicom.Dataset]] = None) -> Path:
    """Write the slab as one multi-frame CT file into ``folder`` (created) and return the folder.

    Args:
        reverse: store the frames from the last slice to the first (the reader must sort them).
        per_frame_rescale: see :func:`_rescale_per_frame`.
        edit: a last change to the dataset (e.g. drop a frame), returning the dataset to write.
    """
    converted = hd.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=_slab_with_uids(dicom_dir), series_instance_uid=hd.UID(), series_number=99,
        sop_instance_uid=hd.UID(), instance_number=1, transfer_syntax_uid=ExplicitVRLittleEndian)
    ds = pydicom.Dataset(converted)
    ds.file_meta = pydicom.dataset.FileMetaDataset(converted.file_meta)
    if reverse:
        ds = _reordered(ds, list(range(int(ds.NumberOfFrames)))[::-1])
    if per_frame_rescale:
        ds = _rescale_per_frame(ds)
    if edit is not None:
        ds = edit(ds)
    folder.mkdir(parents=True, exist_ok=True)
    ds.save_as(folder / "enhanced_ct.dcm", enforce_file_format=True)
    return folder


def drop_frame(index: int) -> Callable[[pydicom.Dataset], pydicom.Dataset]:
    """An ``edit`` that removes frame ``index`` (a missing slice)."""
    return lambda ds: _reordered(ds, [i for i in range(int(ds.NumberOfFrames)) if i != index])


def turn_frames(first: int, orientation: list[float]) -> Callable[[pydicom.Dataset], pydicom.Dataset]:
    """An ``edit`` giving frames ``first``.. their own Image Orientation (a second stack in the same file)."""
    def edit(ds: pydicom.Dataset) -> pydicom.Dataset:
        shared = ds.SharedFunctionalGroupsSequence[0]
        plane = shared.PlaneOrientationSequence
        del shared.PlaneOrientationSequence
        for index, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
            own = copy.deepcopy(plane)
            if index >= first:
                own[0].ImageOrientationPatient = orientation
            item.PlaneOrientationSequence = own
        return ds
    return edit


def in_two_stacks(ds: pydicom.Dataset) -> pydicom.Dataset:
    """An ``edit`` putting every other frame in a second stack (Stack ID "2"): two reconstructions interleaved half
    their slice distance apart, which together look like one even stack."""
    for index, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        content = item.FrameContentSequence[0] if "FrameContentSequence" in item else pydicom.Dataset()
        content.StackID = str(1 + index % 2)
        content.InStackPositionNumber = 1 + index // 2
        item.FrameContentSequence = pydicom.Sequence([content])
    return ds


def as_concatenation_part(ds: pydicom.Dataset) -> pydicom.Dataset:
    """An ``edit`` making the file part 1 of 2 of a Concatenation (one CT split over two files)."""
    ds.ConcatenationUID = hd.UID()
    ds.InConcatenationNumber = 1
    ds.InConcatenationTotalNumber = 2
    ds.ConcatenationFrameOffsetNumber = 0
    return ds


def with_phases(ds: pydicom.Dataset) -> pydicom.Dataset:
    """An ``edit`` giving the file a second copy of every frame at the same positions (two phases in one file)."""
    return _reordered(ds, list(range(int(ds.NumberOfFrames))) * 2)


def without_rescale(ds: pydicom.Dataset) -> pydicom.Dataset:
    """An ``edit`` removing the Pixel Value Transformation (rescale) of every frame."""
    for item in list(ds.SharedFunctionalGroupsSequence) + list(ds.PerFrameFunctionalGroupsSequence):
        if "PixelValueTransformationSequence" in item:
            del item.PixelValueTransformationSequence
    return ds
