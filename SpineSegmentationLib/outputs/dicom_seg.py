"""DICOM Segmentation (``segmentation.dcm``) of a spine segmentation, written with highdicom.

For hospitals' PACS and viewers. One DICOM SEG instance (BINARY, one frame per slice and segment, empty frames
left out) with one segment per vertebra, in ``result.vertebrae`` order (segment number 1 = the most cranial):

- ``SegmentLabel``: the level ("L1", "T13", "S");
- ``SegmentedPropertyCategoryCodeSequence`` / ``SegmentedPropertyTypeCodeSequence``: the SNOMED CT codes of
  :func:`~SpineSegmentationLib.terminology.vertebra_terminology` (the same codes as ``segmentation.seg.nrrd``);
  L6 and T13 carry the generic "Vertebra" type with their anatomic region;
- ``SegmentDescription``: completeness and confidences, e.g. ``"complete; p_complete 0.97; p_label 0.88"``;
- ``SegmentAlgorithmType`` AUTOMATIC with ``SegmentationAlgorithmIdentificationSequence``: algorithm name
  ``SpineSegmentation <model name>``, version = the model's version, family "Artificial Intelligence";
- ``RecommendedDisplayCIELabValue``: the segment's colour in the ``.seg.nrrd``.

Geometry: the frames lie on the label map's grid (``result.labels``, the input grid): frame positions,
orientation and pixel spacing are those of the label map in DICOM patient coordinates (LPS mm, as ITK).

References: when the input is a DICOM series whose slices carry Study, Series and SOP Instance UIDs, the SEG
belongs to the same study, shares its Frame of Reference UID, references every source slice (Source Image
Sequence, Referenced Series Sequence) and each frame its source slice. The series must be the grid of the label
map (checked: one slice per k, same rows and columns, same position and orientation within what the reader accepts
as an even grid, with its tolerances: direction cosines within 0.001, positions within 10 % of the slice spacing in
any direction, plus up to half a pixel at the last slice for a gantry tilt; see ``_check_source_grid``); the frames lie
on that grid, and where a slice lies off it along its normal by more than 0.001 mm, no frame names its own source
slice (highdicom matches them at 0.001 mm; the series and its slices are referenced all the same); a slice moved
only sideways is named, with Spatial Locations Preserved NO. A series that is one multi-frame
Enhanced CT file is referenced the same way, each SEG frame naming its source frame (the frames sorted along their
normal are the label map's slices). The SEG's patient and study attributes are the source's; a type 2 one the source
lacks (Patient Name, ID, Birth Date, Sex, Accession Number, Study ID, Date, Time, Referring Physician's Name, which
exports often drop) is present and empty in the SEG, and so is one whose value highdicom refuses as not valid DICOM
(a Patient's Sex other than M, F, O, such as "U"; a birth date, study date or time not in DICOM DA/TM form, such as
"2022-12-08" or "12.30"; a multi-valued name), with a warning naming the attribute and its value; a Patient's
Sex in lower case or with spaces ("m") is copied in DICOM's spelling ("M"), with a warning; the source files
are unchanged. The SEG's Specific Character Set is the source's where highdicom takes it, else ISO_IR 192 (UTF-8:
a source without one, a Japanese ``\\ISO 2022 IR 87``), so the patient's name keeps its characters; a SEG made
from a non-DICOM input is UTF-8 too. Its frames' Slice Thickness is the source's, or the slice spacing where the
source's slices have none. Otherwise (a NIfTI/NRRD/MHA input, or an anonymised series whose UIDs were removed) the SEG
**references no series**: it gets a new study and, unless the anonymised series keeps one, a new Frame of Reference
UID, and says so in its ``ContentDescription``. So does a series with its UIDs but without one Frame of Reference
UID (0020,0052) shared by every slice, e.g. slices written by SimpleITK: its SEG keeps the series' study, gets a new
Frame of Reference UID, and a warning says that it references no series.

A DICOM Segmentation must hold at least one segment, so a result without vertebrae is not written
(:func:`write_dicom_seg` raises :class:`EmptySegmentationError`; :func:`write_dicom_seg_output` logs why and
writes nothing).
"""

from __future__ import annotations

import copy
import logging
import os
import uuid
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import OutputExistsError, SpineSegmentationError
from ..dicom_multiframe import frame_planes
from ..dicom_stack import SLICE_GAP_TOLERANCE, sorted_along_normal
from ..io import dicom_series_in_folder, multiframe_file
from ..result import SpineSegmentationResult
from ..terminology import vertebra_terminology
from ..validation import DIRECTION_TOLERANCE

#: File name of the DICOM SEG in an output folder.
DICOM_SEG_FILE = "segmentation.dcm"

#: Manufacturer / model name written into the SEG's equipment module.
MANUFACTURER = "SpineSegmentation project"
MANUFACTURER_MODEL_NAME = "SpineSegmentationLib"
#: Series number of the SEG series (the source CT's series number is not reused).
SERIES_NUMBER = 300
#: Smallest geometry tolerance in mm between the label map grid and the source slices' positions (the reader's,
#: :func:`_check_source_grid`, where larger).
_POSITION_TOLERANCE_MM = 1e-3
#: DICOM LO (long string) length limit, for SegmentDescription and ContentDescription.
_LO_MAX = 64
#: Type 2 Patient and General Study attributes (present, may be empty) that highdicom's Segmentation reads from the
#: first source image (highdicom 0.28, ``seg/sop.py``: all but the last by attribute access, which fails where one
#: is absent). Anonymisers and PACS exports drop them; the SEG gets them empty then.
_PATIENT_STUDY_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                        "StudyDate", "StudyTime", "ReferringPhysicianName")

#: How :func:`dicom_source_files` words a folder of several series when none is named (a ``problem``).
_SEVERAL = "holds several DICOM series and none was named:"

_log = logging.getLogger(__name__)

__all__ = ["DICOM_SEG_FILE", "EmptySegmentationError", "SourceSeriesError", "dicom_libraries", "dicom_source_files",
           "write_dicom_seg", "write_dicom_seg_output"]


class EmptySegmentationError(SpineSegmentationError):
    """The result has no vertebra, and a DICOM Segmentation needs at least one segment."""


class SourceSeriesError(SpineSegmentationError):
    """The source DICOM series of the SEG cannot be found or read (a slice file is missing or unreadable), or it is
    not the grid of the label map. From :func:`write_dicom_seg_output` (a run's SEG), its message says that the
    source folder changed during the run, and to restore it, where only a change can have caused it
    (:attr:`changed`); else what is wrong and what to pass instead.

    Attributes:
        problem: what is wrong with the series, without the fix (e.g. ``"could not be read: <file>: No such file
            or directory"``).
        changed: True where only a change of the folder after the series was read can have caused it: the series
            gone, a slice file missing or unreadable, another number of slices than the label map.
    """

    def __init__(self, message: str, problem: str = "", changed: bool = False) -> None:
        super().__init__(message)
        self.problem = problem or message
        self.changed = changed


def dicom_libraries():
    """highdicom and pydicom, imported on first use (dependencies of the package on Python >= 3.10 only).

    Raises:
        SpineSegmentationError: they are not installed, with the command that installs them.
    """
    try:
        import highdicom
        import pydicom
    except ImportError as exc:
        raise SpineSegmentationError(
            f"writing a DICOM SEG needs highdicom and pydicom ({exc}); install them with "
            "'pip install \"highdicom>=0.28\"' (Python 3.10 or newer)"
        ) from exc
    return highdicom, pydicom


def dicom_source_files(input_path: str | os.PathLike, series_uid: Optional[str] = None) -> list[Path]:
    """Slice files of the DICOM series at ``input_path`` in the order :func:`io.read_image` stacks them (GDCM's).

    Args:
        input_path: folder holding the series (as given to :func:`io.read_image`).
        series_uid: the series to take when the folder holds several (as in :func:`io.read_image`).

    Raises:
        SourceSeriesError: no series in the folder, several series and no ``series_uid``, or an unknown
            ``series_uid``.
    """
    series = dicom_series_in_folder(input_path)
    if series_uid is None and len(series) == 1:
        series_uid = next(iter(series))
    if series_uid not in series:
        if series_uid is not None:
            problem = f"is gone (the folder holds series {sorted(series) or 'none'}, not {series_uid!r})"
        else:
            problem = f"{_SEVERAL} {sorted(series)}" if series else "holds no DICOM series"
        raise SourceSeriesError(
            f"cannot pick the DICOM series of '{input_path}' for the DICOM SEG: series found "
            f"{sorted(series) or 'none'}; pass the Series Instance UID of the segmented series", problem,
            changed=series_uid is not None
        )
    return [Path(f) for f in series[series_uid]]


def _segment_descriptions(result: SpineSegmentationResult) -> list:
    hd, _ = dicom_libraries()
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    def code(triple):  # (scheme, value, meaning) of terminology.py -> pydicom Code
        return Code(triple[1], triple[0], triple[2])

    model = result.run_info.get("model", {})
    algorithm = hd.AlgorithmIdentificationSequence(
        name=f"SpineSegmentation {model.get('name', 'unknown model')}"[:_LO_MAX],
        family=codes.DCM.ArtificialIntelligence,
        version=str(model.get("version", "unknown"))[:_LO_MAX],
        source=MANUFACTURER,
    )
    descriptions = []
    for number, vertebra in enumerate(result.vertebrae, start=1):
        term = vertebra_terminology(vertebra.label)
        description = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=term.name,
            segmented_property_category=code(term.category),
            segmented_property_type=code(term.type),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            anatomic_regions=None if term.region is None else [code(term.region)],
            display_color=hd.color.CIELabColor.from_rgb(*(int(round(255 * c)) for c in term.color_rgb)),
        )
        description.SegmentDescription = (
            f"{'complete' if vertebra.complete else 'INCOMPLETE'}; p_complete {vertebra.p_complete:.2f}; "
            f"p_label {vertebra.p_label:.2f}"
        )[:_LO_MAX]
        descriptions.append(description)
    return descriptions


def _segment_numbers(result: SpineSegmentationResult) -> np.ndarray:
    """Label map as segment numbers [k, j, i] (uint16): VerSe label of ``result.vertebrae[n - 1]`` -> n."""
    labels = sitk.GetArrayFromImage(result.labels)
    present = {int(v) for v in np.unique(labels)} - {0}
    listed = [int(v.label) for v in result.vertebrae]
    if present - set(listed):
        raise ValueError(
            f"label map holds labels {sorted(present - set(listed))} that are not in result.vertebrae; every "
            "labelled vertebra needs a Vertebra entry"
        )
    lookup = np.zeros(int(max(listed + [labels.max(initial=0)])) + 1, dtype=np.uint16)
    lookup[listed] = np.arange(1, len(listed) + 1, dtype=np.uint16)
    return lookup[np.clip(labels, 0, None)]


def _label_volume(result: SpineSegmentationResult, frame_of_reference_uid: str):
    """The segment-number array as a highdicom Volume with the label map's geometry, axes (k, j, i)."""
    hd, _ = dicom_libraries()
    labels = result.labels
    direction = np.array(labels.GetDirection(), dtype=float).reshape(3, 3)
    return hd.Volume.from_components(
        _segment_numbers(result),
        spacing=list(labels.GetSpacing())[::-1],
        direction=direction[:, ::-1],  # array axes k, j, i -> ITK direction columns 2, 1, 0
        position=list(labels.GetOrigin()),
        coordinate_system="PATIENT",
        frame_of_reference_uid=frame_of_reference_uid,
    )


def _read_sources(files: Sequence[Path]) -> list:
    """The headers (pydicom datasets without pixel data) of ``files``.

    Raises:
        SourceSeriesError: a file cannot be opened or read (removed, moved, no permission, I/O error); it is named.
    """
    _, pydicom = dicom_libraries()
    sources = []
    for f in files:
        try:
            # forced: GDCM, which listed these files as the series and read it for the segmentation, also reads
            # slice files without the preamble, "DICM" and file meta (PS3.10 7.1; older exports), which pydicom
            # refuses unless forced ("internal error (InvalidDicomError ...)" before)
            ds = pydicom.dcmread(f, stop_before_pixels=True, force=True)
        except OSError as exc:  # the source's, not the output folder's: the SEG is not made, the others are
            problem = f"could not be read: {f}: {exc.strerror or exc}"
            raise SourceSeriesError(f"the source DICOM series {problem}; pass readable slice files of the segmented "
                                    "series", problem, changed=True) from exc
        # (0002,0002)/(0002,0003) equal SOP Class/Instance UID by definition (PS3.10 7.1); some anonymisers
        # blank the dataset's copy only
        for keyword, meta in (("SOPClassUID", "MediaStorageSOPClassUID"),
                              ("SOPInstanceUID", "MediaStorageSOPInstanceUID")):
            if not ds.get(keyword) and getattr(ds, "file_meta", None) is not None and ds.file_meta.get(meta):
                setattr(ds, keyword, ds.file_meta.get(meta))
        sources.append(ds)
    return sources


def _source_planes(sources: Sequence, multiframe: bool) -> list[tuple[str, tuple[int, int], np.ndarray, np.ndarray]]:
    """(name, (columns, rows), direction, Image Position (Patient)) of each source image in stack order: the slice
    files as given, or, where ``multiframe``, the frames of the one file sorted along their normal. The direction
    is 3x3, columns the row and column cosines of Image Orientation (Patient) and their cross product (as the
    reader's :class:`~SpineSegmentationLib.dicom_stack.Plane`)."""
    if multiframe:
        planes = frame_planes(sources[0])
        return [(planes[i].name, planes[i].matrix, planes[i].direction, planes[i].position)
                for i in sorted_along_normal(planes)]
    stack = []
    for k, ds in enumerate(sources):
        row, column = np.reshape(np.array(ds.ImageOrientationPatient, dtype=float), (2, 3))
        cosines = np.column_stack([row, column, np.cross(row, column)])
        stack.append((f"slice {k}", (int(ds.Columns), int(ds.Rows)), cosines,
                      np.array(ds.ImagePositionPatient, dtype=float)))
    return stack


def _mm(values) -> list[float]:
    """A position for a message: plain floats, rounded to 0.001 mm."""
    return [round(float(v), 3) for v in values]


def _cosines(direction: np.ndarray) -> str:
    """Row and column cosines of a 3x3 direction for a message, as Image Orientation (Patient) lists them, with six
    decimals (a difference of 1e-4, a tenth of the reader's tolerance, shows)."""
    return "[" + ", ".join(f"{float(v):.6f}" for v in np.concatenate([direction[:, 0], direction[:, 1]])) + "]"


def _check_source_grid(sources: Sequence, labels: sitk.Image, multiframe: bool) -> None:
    """Raise :class:`SourceSeriesError` unless image k of ``sources`` (slice file k, or, where ``multiframe``, the
    k-th frame along the normal of the one file) is slice k of the label map's grid, within what the reader accepts
    as an even grid (:func:`~SpineSegmentationLib.dicom_stack.check_even_stack`, whose tolerances are used):

    * the same number of images and matrix (columns x rows);
    * direction (row and column cosines and their cross product) within
      :data:`~SpineSegmentationLib.validation.DIRECTION_TOLERANCE` of the label map's, element by element (the
      reader: of the first image's, which is the label map's);
    * position within :data:`~SpineSegmentationLib.dicom_stack.SLICE_GAP_TOLERANCE` of the slice spacing of the label
      map's slice k, in any direction (the reader: of the even grid from the first to the last image), plus, for
      image k of n, k / (n - 1) of half a pixel (the reader accepts a stack whose last image is shifted sideways by
      up to half a pixel, a gantry tilt, and the label map's grid is upright); at least 0.001 mm.

    A series stored with such small deviations is read as the even grid, and its SEG's frames lie on that grid.

    Raises:
        SourceSeriesError: naming the first image off the grid and how far off it is; :attr:`~SourceSeriesError.changed`
            for another number of images only.
    """
    size = labels.GetSize()
    spacing = labels.GetSpacing()
    direction = np.array(labels.GetDirection(), dtype=float).reshape(3, 3)
    planes = _source_planes(sources, multiframe)
    problem = None
    changed = len(planes) != size[2]
    if changed:
        problem = f"{len(planes)} slices for {size[2]} label map slices"
    for k, (name, matrix, cosines, position) in enumerate(planes):
        if problem:
            break
        expected = np.array(labels.TransformIndexToPhysicalPoint((0, 0, k)), dtype=float)
        off = float(np.linalg.norm(np.asarray(position, dtype=float) - expected))
        tolerance = max(_POSITION_TOLERANCE_MM, SLICE_GAP_TOLERANCE * spacing[2]
                        + 0.5 * min(spacing[:2]) * k / max(len(planes) - 1, 1))
        if matrix != size[:2]:
            problem = f"{name} has {matrix[0]}x{matrix[1]} pixels, the label map {size[0]}x{size[1]}"
        elif not np.allclose(cosines, direction, atol=DIRECTION_TOLERANCE):
            problem = (f"{name} has Image Orientation (Patient) {_cosines(cosines)}, the label map "
                       f"{_cosines(direction)}; up to {DIRECTION_TOLERANCE:g} apart is the same grid")
        elif off > tolerance:
            problem = (f"{name} lies at {_mm(position)}, {off:.3f} mm from the label map's slice k={k} at "
                       f"{_mm(expected)}; up to {tolerance:.3f} mm is the same grid")
    if problem:
        raise SourceSeriesError(
            f"the DICOM series is not the grid of the label map ({problem}); pass the series that was segmented",
            f"is not the grid of the segmented image ({problem})", changed=changed
        )


def _refused_by_highdicom(keyword: str, value) -> Optional[str]:
    """highdicom's reason for refusing ``value`` of the patient/study attribute ``keyword``, else None.

    highdicom 0.28 (``base.py``, ``SOPClass.__init__``) converts the birth date and study date to DICOM DA and the
    study time to TM (pydicom's ``DA``/``TM``: ValueError for "2022-12-08", "12.30"), checks Patient's Sex against
    M/F/O (``PatientSexValues``: ValueError for "U") and Patient's Name with ``check_person_name`` (TypeError for a
    multi-valued name); it copies the other attributes of :data:`_PATIENT_STUDY_TYPE2` as they are. The same
    functions decide here. An empty value is always taken."""
    hd, pydicom = dicom_libraries()
    checks = {
        "PatientBirthDate": pydicom.valuerep.DA,
        "StudyDate": pydicom.valuerep.DA,
        "StudyTime": pydicom.valuerep.TM,
        "PatientSex": hd.PatientSexValues,
        "PatientName": hd.valuerep.check_person_name,
    }
    if keyword not in checks or value is None or (isinstance(value, str) and not value):
        return None
    try:
        with warnings.catch_warnings():
            # a one-component name passes with a UserWarning, and highdicom gives it again when it takes the name
            warnings.simplefilter("ignore", UserWarning)
            checks[keyword](value)
    except (TypeError, ValueError) as exc:
        return str(exc) or type(exc).__name__
    return None


def _recoded(keyword: str, value) -> Optional[str]:
    """The valid DICOM value that ``value`` of ``keyword`` spells in another case or with spaces, else None: a
    Patient's Sex "m", "f", "o" or " M" is "M", "F", "O" (DICOM's code string is upper case, PS3.5 6.2; highdicom
    refuses the others)."""
    if keyword == "PatientSex" and isinstance(value, str) and value.strip().upper() in ("M", "F", "O"):
        return value.strip().upper()
    return None


def _for_highdicom(source) -> tuple:
    """(dataset, changed) for highdicom: ``dataset`` is ``source`` where highdicom takes every attribute of
    :data:`_PATIENT_STUDY_TYPE2` as it is, else a copy of it in which each one ``source`` lacks is present and
    empty (as DICOM allows for type 2), and each one whose value highdicom refuses (:func:`_refused_by_highdicom`)
    holds the same value in DICOM's spelling (:func:`_recoded`: Patient's Sex "m" -> "M") or, where there is none,
    is empty; ``changed`` is ``{(keyword, value as text): (value in the SEG, highdicom's reason)}`` of the values
    replaced. ``source`` itself is not changed; the values highdicom takes are copied as they are."""
    missing = [keyword for keyword in _PATIENT_STUDY_TYPE2 if keyword not in source]
    changed = {}
    for keyword in _PATIENT_STUDY_TYPE2:
        if keyword in source:
            value = source[keyword].value
            reason = _refused_by_highdicom(keyword, value)
            if reason:
                changed[(keyword, str(value))] = (_recoded(keyword, value) or "", reason)
    if not missing and not changed:
        return source, {}
    completed = copy.deepcopy(source)  # a header only (read without pixel data)
    for keyword in missing:
        setattr(completed, keyword, "")
    for (keyword, _), (value, _) in changed.items():
        setattr(completed, keyword, value)
    return completed, changed


def _warn_refused(changed: dict) -> None:
    """One warning per replaced (attribute, value) of :func:`_for_highdicom`."""
    for (keyword, value), (replacement, reason) in changed.items():
        held = f"'{replacement}', DICOM's spelling of it" if replacement else "empty"
        _log.warning("%s of the source DICOM series is '%s', which is not valid DICOM (%s); %s has %s %s (the "
                     "series' files are unchanged)", keyword, value, reason, DICOM_SEG_FILE, keyword, held)


def _highdicom_sources(sources: Sequence, slice_spacing: float, multiframe: bool) -> list:
    """The source instances as highdicom gets them (:func:`_for_highdicom`), each value replaced warned once.

    A slice without a Slice Thickness (0018,0050) value (type 2 in the CT Image module: empty, or dropped by an
    export) is given as a copy with ``slice_spacing`` (mm, the distance between the label map's slices) as its
    thickness: highdicom 0.28 reads the attribute of every single-frame source (``image.py``,
    ``_get_pixel_measures_sequence``: the run ended with "internal error (AttributeError)" where it was missing) and
    leaves the SEG's frames without a thickness where it is empty. The SEG made without a source series does the
    same (:func:`_standalone_source`). A multi-frame source has its thickness in its functional groups.

    A slice whose Image Orientation (Patient) differs from the first slice's (within the reader's tolerance, checked
    by :func:`_check_source_grid`) is given as a copy with the first slice's: the reader read the series as one grid
    in that orientation, the SEG's frames lie on it, and highdicom 0.28 refuses single-frame sources whose values are
    not all equal (``image.py``: "Source images must have a shared orientation", an internal error before)."""
    prepared = [_for_highdicom(ds) for ds in sources]
    changed = {}
    for _, each in prepared:
        changed.update(each)
    _warn_refused(changed)
    given = [ds for ds, _ in prepared]
    if not multiframe:
        orientation = given[0].ImageOrientationPatient
        for k, ds in enumerate(given):
            thickness = ds.get("SliceThickness") in (None, "")
            turned = ds.ImageOrientationPatient != orientation
            if (thickness or turned) and ds is sources[k]:  # not yet a copy: the source as read stays unchanged
                ds = given[k] = copy.deepcopy(ds)
            if thickness:
                ds.SliceThickness = float(slice_spacing)
            if turned:
                ds.ImageOrientationPatient = copy.deepcopy(orientation)
    return given


def _character_set(source) -> str:
    """The SEG's Specific Character Set (0008,0005): the source's where it is one character set that highdicom takes
    (``ISO_IR 100``, ``ISO_IR 192``, ``GB18030``, ...), else ``ISO_IR 192`` (UTF-8).

    pydicom has decoded the source's text (patient's name, series description) with the source's character set, and
    UTF-8 encodes any text, so the SEG holds the same characters whatever the source declared: none, code extensions
    with an empty first value as Japanese series have (``\\ISO 2022 IR 87``), which highdicom 0.28 refuses
    (``valuerep._check_specific_character_set``: the run ended with an internal error), or a misspelt one. Without a
    declared set, pydicom would write a name outside ASCII as Latin-1 bytes that no reader is told about, and one
    outside Latin-1 as "?"."""
    hd, _ = dicom_libraries()
    value = source.get("SpecificCharacterSet") if source is not None else None
    single = {v.value for v in hd.SpecificCharacterSetValues if not v.value.startswith("ISO 2022")}
    return value if isinstance(value, str) and value in single else "ISO_IR 192"


def _has_references(sources: Sequence) -> bool:
    keys = ("StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID")
    return all(ds.get(key) for ds in sources for key in keys)


def _standalone_source(image: sitk.Image, sources: Sequence, frame_uid: Optional[str]):
    """A description of the input's grid as one CT slice header, for highdicom's patient/study modules only.

    Patient and study attributes come from an (anonymised) DICOM source where there is one, else they are empty;
    the Frame of Reference UID is ``frame_uid`` (the one every source slice shares) or new, as is every other UID
    the source lacks. The SEG built from it has its references removed afterwards."""
    hd, pydicom = dicom_libraries()
    from pydicom.uid import CTImageStorage

    template, changed = _for_highdicom(sources[0]) if sources else (pydicom.Dataset(), {})
    _warn_refused(changed)
    ds = pydicom.Dataset()
    for keyword in _PATIENT_STUDY_TYPE2:
        setattr(ds, keyword, template.get(keyword, ""))
    ds.StudyInstanceUID = template.get("StudyInstanceUID") or hd.UID()
    ds.SeriesInstanceUID = hd.UID()
    ds.SOPInstanceUID = hd.UID()
    ds.SOPClassUID = CTImageStorage
    ds.FrameOfReferenceUID = frame_uid or hd.UID()
    ds.Modality = "CT"
    ds.Rows, ds.Columns = image.GetSize()[1], image.GetSize()[0]
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    ds.ImageOrientationPatient = [float(v) for v in np.concatenate([direction[:, 0], direction[:, 1]])]
    ds.ImagePositionPatient = [float(v) for v in image.GetOrigin()]
    ds.PixelSpacing = [float(image.GetSpacing()[1]), float(image.GetSpacing()[0])]
    ds.SliceThickness = float(template.get("SliceThickness") or image.GetSpacing()[2])  # the CT's, where it says
    return ds


def _remove_references(seg) -> None:
    for keyword in ("SourceImageSequence", "ReferencedSeriesSequence"):
        if keyword in seg:
            delattr(seg, keyword)
    for item in seg.PerFrameFunctionalGroupsSequence:
        if "DerivationImageSequence" in item:
            item.DerivationImageSequence = []  # type 2: present and empty


def build_dicom_seg(
    result: SpineSegmentationResult,
    source_files: Optional[Sequence[str | os.PathLike]] = None,
    input_name: str = "",
):
    """The DICOM SEG dataset of ``result`` (see the module docstring); nothing is written.

    Args:
        result: segmentation result; ``result.labels`` is the VerSe label map on the input grid (LPS geometry).
        source_files: the slice files of the segmented DICOM series, in the label map's slice order, or its one
            multi-frame file (:func:`dicom_source_files`); None for a non-DICOM input.
        input_name: name of a non-DICOM input, quoted in the ``ContentDescription``.

    Returns:
        A ``highdicom.seg.Segmentation`` (a ``pydicom.Dataset``).

    Raises:
        EmptySegmentationError: ``result`` has no vertebra.
        SourceSeriesError: a file of ``source_files`` cannot be read (it is named), or they are not the label
            map's grid (a ``ValueError`` too, as every error of the library).
        ValueError: the label map holds a label without a Vertebra entry.
        InputImageError: ``source_files`` is one file whose header SimpleITK cannot read.
    """
    if not result.vertebrae:
        raise EmptySegmentationError(
            "no DICOM SEG written: no vertebra was found, and a DICOM Segmentation must hold at least one segment "
            f"({result.message or 'empty result'}); the other outputs record the empty result"
        )
    hd, _ = dicom_libraries()
    sources = _read_sources([Path(f) for f in source_files]) if source_files else []
    # one multi-frame file where the reader took it as one (the same reading of Number of Frames)
    multiframe = bool(sources) and multiframe_file([str(f) for f in source_files]) is not None
    if sources:
        _check_source_grid(sources, result.labels, multiframe)
    has_uids = bool(sources) and _has_references(sources)
    # highdicom places a referencing SEG in its sources' Frame of Reference: a series without one shared by every
    # slice (slices written by SimpleITK, some exports) cannot be referenced
    frames = {ds.get("FrameOfReferenceUID") or None for ds in sources}
    frame_uid = next(iter(frames)) if len(frames) == 1 else None
    referenced = has_uids and frame_uid is not None
    if referenced:
        series = sources[0].get("SeriesDescription", "")  # several values where it holds a backslash
        series = series if isinstance(series, str) else " ".join(str(v) for v in series)
        note = f"SpineSegmentation vertebrae of series {series}".strip()
        # the real source instances, each type 2 patient/study attribute the export dropped or highdicom refuses
        # present and empty (or in DICOM's spelling), each slice thickness missing the slice spacing
        highdicom_sources = _highdicom_sources(sources, result.labels.GetSpacing()[2], multiframe)
    else:
        if not sources:
            why = f"made from {input_name or 'a non-DICOM image'}"
        elif not has_uids:
            why = "source series has no UIDs"
        else:
            why = "no single Frame of Reference UID"  # ContentDescription: 64 characters at most
            lacking = sum(not ds.get("FrameOfReferenceUID") for ds in sources)
            _log.warning("the source DICOM series has no single Frame of Reference UID (0020,0052) (%d of %d slices "
                         "lack one, %d different ones), which a DICOM SEG that references it needs; %s references no "
                         "series and has a new Frame of Reference UID, so a viewer does not place it on the CT by "
                         "itself (load the two together, or give the series' slices one Frame of Reference UID and "
                         "segment it again; the series' files are unchanged)",
                         lacking, len(sources), len(frames - {None}), DICOM_SEG_FILE)
        note = f"references no DICOM series: {why}"
        highdicom_sources = [_standalone_source(result.labels, sources, frame_uid)]
    seg = hd.seg.Segmentation(
        source_images=highdicom_sources,
        pixel_array=_label_volume(result, highdicom_sources[0].FrameOfReferenceUID),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=_segment_descriptions(result),
        series_instance_uid=hd.UID(),
        series_number=SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MANUFACTURER_MODEL_NAME,
        software_versions=str(result.run_info.get("library_version", __import__("SpineSegmentationLib").__version__)),
        device_serial_number="none",
        content_description=note[:_LO_MAX],
        content_label="VERTEBRAE",
        series_description="SpineSegmentation vertebrae",
        specific_character_set=_character_set(sources[0] if sources else None),
    )
    if not referenced:
        _remove_references(seg)
    return seg


def write_dicom_seg(
    result: SpineSegmentationResult,
    path: str | os.PathLike,
    source_files: Optional[Sequence[str | os.PathLike]] = None,
    input_name: str = "",
    overwrite: bool = False,
) -> Path:
    """Write :func:`build_dicom_seg` to ``path`` (a temporary name in the same folder, renamed when complete).

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is False (checked before any work).
        EmptySegmentationError, SourceSeriesError, ValueError: as :func:`build_dicom_seg`.
        OSError: writing ``path`` failed (the only ``OSError``: one reading the source is a SourceSeriesError).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"{path} already exists and would be overwritten; pass --overwrite (overwrite=True) to replace it or "
            "choose another output folder with -o"
        )
    seg = build_dicom_seg(result, source_files, input_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        seg.save_as(temporary, enforce_file_format=True)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path


def write_dicom_seg_output(
    result: SpineSegmentationResult,
    output_dir: str | os.PathLike,
    input_path: str | os.PathLike | None,
    requested: bool = False,
    overwrite: bool = False,
    series_uid: Optional[str] = None,
) -> dict[str, Path]:
    """The DICOM SEG of a run, as :func:`~SpineSegmentationLib.outputs.write_outputs` writes it.

    Written as ``output_dir/segmentation.dcm`` when ``input_path`` is a DICOM series folder, or when
    ``requested`` (``--dicom-seg``) for any other input (then it references no series). When the folder holds
    several series, ``result.run_info["dicom_series_uid"]`` names the one segmented (``spineseg batch`` sets it),
    else ``series_uid``: the Series Instance UID the input image was read with (``io.SERIES_UID_KEY`` of the
    image; ``write_outputs`` passes it), so that a series copied into the folder during the run changes nothing.
    A result without vertebrae writes nothing and logs why (warning).

    Returns:
        ``{"dicom_seg": path}`` when written, else ``{}``.

    Raises:
        SourceSeriesError: the series in ``input_path`` is gone, a slice file of it cannot be read (named), or it
            has another number of slices than the label map: the folder changed after it was read, and the message
            says so and how to get the SEG (restore the folder, run again). Also, without that claim: the folder holds
            several series and none is named (the message names ``result.run_info["dicom_series_uid"]``), or the
            series is not the label map's grid (named: which slice, how far off).
        OutputExistsError, ValueError, OSError: as :func:`write_dicom_seg`.
    """
    is_dicom = input_path is not None and Path(input_path).is_dir()
    if not (is_dicom or requested):
        return {}
    if not result.vertebrae:
        _log.warning("no %s written: no vertebra was found, and a DICOM Segmentation must hold at least one "
                     "segment", DICOM_SEG_FILE)
        return {}
    name = Path(input_path).name if input_path is not None else ""
    uid = result.run_info.get("dicom_series_uid", series_uid)
    try:
        source_files = dicom_source_files(input_path, uid) if is_dicom else None
    except SourceSeriesError as exc:
        if exc.changed:
            raise _changed_during_run(exc, input_path) from exc
        # no series named: the image was not read by io.read_image (which records it), so nothing says it changed
        fix = ("pass the Series Instance UID of the segmented series as result.run_info[\"dicom_series_uid\"] "
               "(io.read_image records it in the image it reads, and write_outputs takes it from there)"
               if exc.problem.startswith(_SEVERAL) else "pass as input_path the folder of the segmented series")
        raise SourceSeriesError(f"cannot pick the DICOM series of '{input_path}' for {DICOM_SEG_FILE}: the folder "
                                f"{exc.problem}; {fix}", exc.problem) from exc
    try:
        path = write_dicom_seg(result, Path(output_dir) / DICOM_SEG_FILE, source_files, name, overwrite)
    except SourceSeriesError as exc:
        if exc.changed:
            raise _changed_during_run(exc, input_path) from exc
        raise SourceSeriesError(
            f"the source DICOM series in '{input_path}' {exc.problem}, so the SEG's frames cannot be matched to its "
            "slices; pass as input_path the folder of the series the segmented image was read from, as "
            "io.read_image reads it", exc.problem
        ) from exc
    return {"dicom_seg": path}


def _changed_during_run(exc: SourceSeriesError, input_path) -> SourceSeriesError:
    """The error of a run's SEG for what only a change of the source folder after the series was read can cause."""
    return SourceSeriesError(
        f"the source DICOM series in '{input_path}' {exc.problem}; the source DICOM folder changed during the run "
        "(files were removed, added, replaced or made unreadable after the series was read); restore it and run "
        f"again to get {DICOM_SEG_FILE}", exc.problem, changed=True
    )
