"""Read a CT stored as one multi-frame DICOM file (Enhanced CT, Legacy Converted Enhanced CT) as a ``sitk.Image``.

Scanners and PACS increasingly store a CT as one file holding every slice as a frame (PS3.3 A.38 Enhanced CT Image,
A.70 Legacy Converted Enhanced CT Image). ITK's reader takes the frames in file order with one rescale for all and
one spacing, and gives a silently wrong grid where the frames are stored in another order (unit spacing, identity
direction), each frame has its own rescale (every other slice off by 1000 HU), or the stack is tilted or mixed. So
the frames' geometry is read here from their functional groups (pydicom), checked as one even stack
(:func:`~SpineSegmentationLib.dicom_stack.check_even_stack`), the frames sorted along the normal, and each frame's
pixels decoded and rescaled to HU with its own Pixel Value Transformation by highdicom.

highdicom and pydicom are dependencies of the package on Python >= 3.10; where they are missing (Slicer 5.6 and 5.8
run Python 3.9) a multi-frame CT is refused with the conversion that reads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .dicom_stack import Plane, check_even_stack, sorted_along_normal
from .errors import InputImageError
from .validation import ImageHeader

#: The multi-frame SOP classes read as CT (PS3.4 B.5): Enhanced CT Image Storage and Legacy Converted Enhanced CT.
CT_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image",
}

#: The voxels are decoded into one float32 volume before it becomes int16 where every value is a whole number that
#: fits (the int16 copy and ITK's copy of it follow): the bytes per voxel the memory estimate counts for a multi-frame
#: input (:func:`~SpineSegmentationLib.validation.check_memory` adds ``validation.BYTES_PER_INPUT_VOXEL`` per voxel
#: for the pipeline; the read peaks at about 4 + 2 + 2, the frames decoded one at a time).
READ_BYTES_PER_VOXEL = 4

_CONVERT = ("Convert it with dcm2niix (to NIfTI), or load it in 3D Slicer and save the volume as .nrrd, and segment "
            "that file.")

__all__ = ["CT_SOP_CLASSES", "READ_BYTES_PER_VOXEL", "frame_planes", "read_multiframe", "read_multiframe_header"]


def _libraries():
    """highdicom and pydicom, imported on first use.

    Raises:
        InputImageError: they are not installed (Python 3.9, e.g. in Slicer 5.6/5.8), with the conversion instead.
    """
    try:
        import highdicom
        import pydicom
    except ImportError as exc:
        raise InputImageError(
            f"Reading a multi-frame (Enhanced) CT needs highdicom and pydicom ({exc}); install them with "
            f"'pip install \"highdicom>=0.28\"' (Python 3.10 or newer). Or: {_CONVERT}"
        ) from exc
    return highdicom, pydicom


def _group_item(ds, frame: int, keyword: str):
    """The first item of functional group ``keyword`` for frame index ``frame``: per-frame, else shared; or None."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared = ds.get("SharedFunctionalGroupsSequence") or []
    for item in ([per_frame[frame]] if frame < len(per_frame) else []) + list(shared[:1]):
        if keyword in item and len(item[keyword].value):
            return item[keyword].value[0]
    return None


def frame_planes(ds, path: str | Path = "") -> list[Plane]:
    """Each frame's geometry in file order (``Plane.name`` ``"frame N"``, N from 1), from the functional groups.

    Args:
        ds: the multi-frame ``pydicom.Dataset`` (pixel data not needed).
        path: its file, for the message.

    Raises:
        InputImageError: a frame lacks its plane position, orientation or pixel spacing.
    """
    planes = []
    for frame in range(int(ds.NumberOfFrames)):
        position = _group_item(ds, frame, "PlanePositionSequence")
        orientation = _group_item(ds, frame, "PlaneOrientationSequence")
        measures = _group_item(ds, frame, "PixelMeasuresSequence")
        missing = [name for name, item, keyword in (
            ("Image Position (Patient)", position, "ImagePositionPatient"),
            ("Image Orientation (Patient)", orientation, "ImageOrientationPatient"),
            ("Pixel Spacing", measures, "PixelSpacing")) if item is None or not item.get(keyword)]
        if missing:
            raise InputImageError(
                f"Frame {frame + 1} of the multi-frame DICOM file '{path}' has no {' and no '.join(missing)} in its "
                f"functional groups, so its place in the volume is unknown. {_CONVERT}"
            )
        cosines = np.array(orientation.ImageOrientationPatient, dtype=float)
        row, column = cosines[:3], cosines[3:]
        spacing = [float(v) for v in measures.PixelSpacing]  # (between rows, between columns)
        planes.append(Plane(
            name=f"frame {frame + 1}",
            direction=np.column_stack([row, column, np.cross(row, column)]),
            pixel_spacing=(spacing[1], spacing[0]),
            matrix=(int(ds.Columns), int(ds.Rows)),
            position=np.array(position.ImagePositionPatient, dtype=float),
        ))
    return planes


def _checked_stack(path: Path) -> tuple[list[int], list[Plane], float]:
    """(frame indices sorted along the normal, the planes in that order, their distance in mm), from the header."""
    _, pydicom = _libraries()
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise InputImageError(f"Cannot read the DICOM header of '{path}': {exc}. {_CONVERT}") from exc
    sop_class = str(ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID", ""))
    if sop_class not in CT_SOP_CLASSES:
        raise InputImageError(
            f"'{path}' is a multi-frame DICOM file of SOP class {sop_class or 'none'} "
            f"(modality {ds.get('Modality', 'none')}), not one of the CT classes read here "
            f"({', '.join(CT_SOP_CLASSES.values())}). Give a CT. {_CONVERT}"
        )
    source = f"The multi-frame DICOM file '{path}'"
    parts = ds.get("InConcatenationTotalNumber")
    if ds.get("ConcatenationUID") or (parts is not None and int(parts) > 1):
        raise InputImageError(
            f"{source} is part {ds.get('InConcatenationNumber', '?')} of {parts or 'several'} of one CT split over "
            f"several files (a Concatenation), which this version does not read: reading one part would give part "
            f"of the volume. {_CONVERT}"
        )
    planes = frame_planes(ds, path)
    stacks = sorted({str(item.StackID) for item in (_group_item(ds, frame, "FrameContentSequence")
                                                   for frame in range(len(planes)))
                     if item is not None and item.get("StackID") not in (None, "")})
    if len(stacks) > 1:  # their frames may interleave into one even stack of half the distance: not one volume
        raise InputImageError(
            f"{source} holds {len(stacks)} stacks of frames (Stack ID {', '.join(stacks[:4])}"
            f"{', ...' if len(stacks) > 4 else ''}): several reconstructions or ranges in one file, which this "
            f"version does not read as one CT. {_CONVERT}"
        )
    if len(planes) < 2:
        raise InputImageError(f"{source} holds {len(planes)} frame: one slice is not a CT volume. Give the whole CT.")
    no_rescale = [frame + 1 for frame in range(len(planes))
                  if _group_item(ds, frame, "PixelValueTransformationSequence") is None]
    if no_rescale:
        raise InputImageError(
            f"{source} has no Pixel Value Transformation (rescale slope and intercept) for frame {no_rescale[0]}"
            f"{f' and {len(no_rescale) - 1} more' if len(no_rescale) > 1 else ''}, which an Enhanced CT must have: "
            f"its stored values are not HU. {_CONVERT}"
        )
    order = sorted_along_normal(planes)
    stack = [planes[i] for i in order]
    return order, stack, check_even_stack(stack, source, kind="multiframe")


def read_multiframe_header(path: str | Path) -> ImageHeader:
    """Size, spacing and direction of the CT in a multi-frame file, from its header (no pixel data read).

    Returns:
        :class:`~SpineSegmentationLib.validation.ImageHeader` of the volume :func:`read_multiframe` returns; its
        bytes per value are :data:`READ_BYTES_PER_VOXEL`.

    Raises:
        InputImageError: as :func:`read_multiframe`, but for what only the pixel data shows.
    """
    _, stack, gap = _checked_stack(Path(path))
    first = stack[0]
    return ImageHeader((*first.matrix, len(stack)), (*first.pixel_spacing, gap),
                       tuple(first.direction.ravel()), 3, 1, READ_BYTES_PER_VOXEL)


def read_multiframe(path: str | Path) -> sitk.Image:
    """The CT of a multi-frame DICOM file, frames sorted along the normal, values rescaled to HU per frame.

    Returns:
        ``sitk.Image`` (I, J, K) = (columns, rows, frames); spacing (Pixel Spacing's column and row spacing, the
        frames' distance) in mm; origin the first frame's Image Position (LPS mm); direction columns the row and
        column cosines and their cross product. int16 where every HU is a whole number within int16 (the usual
        Rescale Slope 1), else float32.

    Raises:
        InputImageError: highdicom/pydicom missing; the file is not an Enhanced or Legacy Converted Enhanced CT; a
            frame lacks its geometry; the frames are not one even, upright stack
            (:func:`~SpineSegmentationLib.dicom_stack.check_even_stack`); the pixel data cannot be decoded.
    """
    path = Path(path)
    order, stack, gap = _checked_stack(path)
    hd, pydicom = _libraries()
    first = stack[0]
    volume = np.empty((len(order), first.matrix[1], first.matrix[0]), dtype=np.float32)  # [k, j, i]
    whole = True  # every value a whole number within int16 (the usual CT): stored as int16
    try:
        image = hd.imread(path, lazy_frame_retrieval=True)  # frames decoded one at a time, the file not held
        for k, index in enumerate(order):
            frame = image.get_frame(index, as_index=True, dtype=np.float32, apply_real_world_transform=False)
            volume[k] = frame
            whole = whole and bool(np.all(np.isfinite(frame)) and np.array_equal(frame, np.round(frame))
                                   and frame.min() >= np.iinfo(np.int16).min and frame.max() <= np.iinfo(np.int16).max)
    except (OSError, ValueError, RuntimeError, NotImplementedError, pydicom.errors.InvalidDicomError) as exc:
        raise InputImageError(
            f"Cannot decode the pixel data of the multi-frame DICOM file '{path}': {exc}. Its encoding may need a "
            f"decoder that is not installed (pylibjpeg, python-gdcm). {_CONVERT}"
        ) from exc
    ct = sitk.GetImageFromArray(volume.astype(np.int16) if whole else volume)
    del volume
    ct.SetSpacing((*first.pixel_spacing, gap))
    ct.SetOrigin(tuple(float(v) for v in first.position))
    ct.SetDirection(tuple(float(v) for v in first.direction.ravel()))
    return ct
