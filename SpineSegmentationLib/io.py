"""Read and write images with SimpleITK, keeping the geometry (origin, spacing, direction) with the voxels.

Supported inputs: NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``), MetaImage (``.mha``, ``.mhd``) and
a folder holding a DICOM series: slice files, or one multi-frame Enhanced CT file
(:mod:`SpineSegmentationLib.dicom_multiframe`). Physical coordinates are ITK's **LPS** millimetres; ``read_image``
keeps the input's grid exactly (no reorientation, no resampling: that is :mod:`SpineSegmentationLib.geometry`'s
job; the frames of a multi-frame file are stacked along their normal). DICOM pixel values are returned after the
Rescale Slope/Intercept (0028,1053/1052), i.e. in HU for CT.

Errors: every problem with an input file raises :class:`~SpineSegmentationLib.errors.InputImageError`, with the
problem and the fix in the message; writing onto an existing file raises
:class:`~SpineSegmentationLib.errors.OutputExistsError`.

Example::

    from SpineSegmentationLib.io import read_image, write_image
    ct = read_image("example_ct_dicom/")          # DICOM folder with one series
    write_image(ct, "example_ct.nrrd")            # refuses to overwrite an existing file
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Union

import numpy as np
import SimpleITK as sitk

from .dicom_multiframe import read_multiframe, read_multiframe_header
from .dicom_stack import Plane, check_even_stack, sorted_along_normal
from .errors import InputImageError, OutputExistsError, SpineSegmentationError
from .validation import MAX_SPACING_MM, MIN_SPACING_MM, ImageHeader, non_finite_error

PathLike = Union[str, Path]

#: File name endings read and written by :func:`read_image` / :func:`write_image` (lower case).
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")

#: Human-readable list of what :func:`read_image` accepts, used in error messages.
SUPPORTED_INPUTS = (
    "NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd), or a folder holding one DICOM series"
)

#: Data files written next to a detached header (``name.nhdr`` / ``name.mhd``) by SimpleITK, with and without
#: compression: ``{header suffix: (data file endings, ...)}``; :func:`write_image` refuses to overwrite them as well,
#: and ``spineseg batch`` counts them in a case's input checksum.
DETACHED_DATA_SUFFIXES = {".nhdr": (".raw", ".raw.gz"), ".mhd": (".raw", ".zraw")}

#: Metadata key of an image read from a DICOM folder that holds the Series Instance UID read (0020,000E; ``""``
#: for an anonymised series without one), so that the outputs can name the series.
SERIES_UID_KEY = "0020|000e"

#: DICOM tag of the Series Description, shown when a folder holds several series.
_SERIES_DESCRIPTION_TAG = "0008|103e"

_GZIP_CHUNK_BYTES = 16 * 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"


def image_suffix(path: PathLike) -> Optional[str]:
    """The supported suffix ``path`` ends with (lower case, e.g. ``".nii.gz"``), or ``None``."""
    name = Path(path).name.lower()
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return None


def read_image(path: PathLike, series_uid: Optional[str] = None) -> sitk.Image:
    """Read a 3D image file or a DICOM series folder with SimpleITK, geometry unchanged.

    Args:
        path: an image file (see :data:`IMAGE_SUFFIXES`) or a folder with the files of a DICOM series, or with
            one multi-frame Enhanced CT file (subfolders are not searched).
        series_uid: for a DICOM folder holding several series, the Series Instance UID (0020,000E) to read.
            Must be ``None`` for image files.

    Returns:
        The ``sitk.Image`` with the file's pixel type, size (I, J, K), spacing (mm), origin (LPS mm) and
        direction; ``sitk.GetArrayFromImage`` gives it in [K, J, I] order. DICOM values are rescaled with the
        series' Rescale Slope/Intercept (HU for CT), and the series' UID is the image's metadata
        :data:`SERIES_UID_KEY`.

    Raises:
        InputImageError: the path does not exist; the file's format is not supported; the file is unreadable,
            corrupt or truncated; an NRRD or MetaImage header or the data file it names cannot be read (no read
            permission) or is not there; a NIfTI file holds NaN or infinite values (ITK would turn them into 0),
            gives two voxel sizes (pixdim and sform; ITK reads pixdim, nibabel the sform), no orientation
            (qform_code and sform_code 0), a qform and an sform more than half a voxel apart of which ITK reads the
            qform (nibabel the sform; accepted where ITK reads the sform, as for sform_code 1), or a wrong length
            unit (xyzt_units metres or micrometres on a header in mm, which ITK scales to voxels no CT has and
            nibabel does not); the folder holds no DICOM series, several series and ``series_uid`` is not given or
            not among them, a series that is a DICOM Segmentation (SEG, e.g. spineseg's ``segmentation.dcm``: labels,
            not HU), or a series that is not one even stack of slices (as :func:`read_image_header`); a multi-frame
            file that is not an Enhanced CT or cannot be decoded, or highdicom is missing
            (:func:`dicom_multiframe.read_multiframe`).
    """
    path = Path(path)
    if _input_kind(path, series_uid) == "dicom":
        return _read_dicom_series(path, series_uid)
    suffix = image_suffix(path)
    check_image_file(path)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        reason = _itk_reason(exc)
        hint = (
            "Its header declares a zero or negative voxel spacing, which ITK refuses; fix the spacing in the header"
            if "spacing" in reason.lower()
            else "The file is corrupt, truncated, or not an image despite its name; re-export it from the original data"
        )
        raise InputImageError(
            f"Cannot read '{path}' as {suffix} image: {reason}. {hint}. Supported inputs: {SUPPORTED_INPUTS}."
        ) from exc


def _input_kind(path: Path, series_uid: Optional[str]) -> str:
    """"dicom" for a folder, "file" for a supported image file; InputImageError for anything else."""
    if not path.exists():
        raise InputImageError(
            f"Input image '{path}' does not exist. Check the path (relative paths are taken from the current "
            f"folder '{Path.cwd()}'); supported inputs: {SUPPORTED_INPUTS}."
        )
    if path.is_dir():
        return "dicom"
    if series_uid is not None:
        raise InputImageError(
            f"series_uid='{series_uid}' was given but '{path}' is a file, not a DICOM folder. Pass the folder "
            "that holds the DICOM series, or leave series_uid out for an image file."
        )
    if image_suffix(path) is None:
        raise InputImageError(
            f"Unsupported input file '{path.name}'. Supported inputs: {SUPPORTED_INPUTS}. For DICOM give the "
            "folder of the series, not one of its files; convert other formats (e.g. in 3D Slicer: Save as NRRD)."
        )
    return "file"


def read_image_header(path: PathLike, series_uid: Optional[str] = None) -> ImageHeader:
    """The size, spacing, direction and pixel type of an image file or DICOM series, without reading its voxels.

    Takes seconds even for a CT of several GB, so that a run that would not fit in memory is refused before
    the image is read (:func:`validation.check_memory`).

    Args:
        path, series_uid: as for :func:`read_image`.

    Returns:
        :class:`~SpineSegmentationLib.validation.ImageHeader`; for a DICOM series the size along K is the
        number of slices and the spacing along K the distance between slice positions.

    Raises:
        InputImageError: as :func:`read_image` for a missing, unsupported or unreadable input, a DICOM SEG, a NIfTI
            header that :func:`read_image` refuses (all but the NaN and truncation checks, which need the voxels), or an
            NRRD or MetaImage header whose data file is not there (:func:`_check_data_file`); a DICOM series
            that is not one even stack of slices (``_check_slice_spacing``: a slice without Image Position or
            Orientation (Patient), a missing or duplicated slice, a changing spacing, a gantry tilt, slices of
            another orientation, pixel spacing or size; the same for the frames of a multi-frame file).
    """
    path = Path(path)
    if _input_kind(path, series_uid) == "dicom":
        _, files = _series_files(path, series_uid)
        multiframe = multiframe_file(files)
        if multiframe is not None:
            return read_multiframe_header(multiframe)
        gap, files = _check_slice_spacing(path, files)
        first = _image_information(Path(files[0]))
        size = (first.GetSize()[0], first.GetSize()[1], len(files))
        spacing = (first.GetSpacing()[0], first.GetSpacing()[1], gap)
    else:
        if image_suffix(path) in (".nii", ".nii.gz"):
            _check_nifti_header(path)
        else:  # NRRD, MetaImage
            _check_data_file(path, image_suffix(path))
        first = _image_information(path)
        size, spacing = tuple(first.GetSize()), tuple(first.GetSpacing())
    probe = sitk.Image([1] * 2, first.GetPixelID())
    return ImageHeader(size, spacing, tuple(first.GetDirection()), first.GetDimension(),
                       first.GetNumberOfComponents(), probe.GetSizeOfPixelComponent())


def _image_information(path: Path) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputImageError(
            f"Cannot read the header of '{path}': {_itk_reason(exc)}. The file is corrupt, truncated, or not an "
            f"image despite its name; re-export it from the original data. Supported inputs: {SUPPORTED_INPUTS}."
        ) from exc
    return reader


def write_image(image: sitk.Image, path: PathLike, overwrite: bool = False) -> Path:
    """Write ``image`` (with its geometry) to a NIfTI, NRRD or MetaImage file, compressed.

    Args:
        image: any ``sitk.Image``.
        path: output file; its suffix (one of :data:`IMAGE_SUFFIXES`) picks the format. Missing parent folders
            are created.
        overwrite: replace an existing file. Off by default: the library never overwrites user files unasked.

    Returns:
        The path written.

    Raises:
        OutputExistsError: ``path`` (or the data file of a detached ``.nhdr``/``.mhd`` header) exists and
            ``overwrite`` is False.
        SpineSegmentationError: unsupported suffix, or SimpleITK cannot write the file.
    """
    path = Path(path)
    suffix = image_suffix(path)
    if suffix is None:
        raise SpineSegmentationError(
            f"Cannot write '{path.name}': unsupported file type. Use one of {', '.join(IMAGE_SUFFIXES)} "
            "(DICOM export is not supported here)."
        )
    if path.is_dir():
        raise OutputExistsError(f"Cannot write '{path}': it is an existing folder. Give a file name inside it.")
    stem = path.name[: -len(suffix)]
    targets = [path] + [path.with_name(stem + ending) for ending in DETACHED_DATA_SUFFIXES.get(suffix, ())]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not overwrite:
        raise OutputExistsError(
            f"Refusing to overwrite existing file(s) {', '.join(existing)}. Choose another output path, delete "
            "the file(s) first, or pass overwrite=True."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        sitk.WriteImage(image, str(path), useCompression=True)
    except RuntimeError as exc:
        raise SpineSegmentationError(
            f"Cannot write '{path}': {_itk_reason(exc)}. Check that the folder is writable and the disk not full."
        ) from exc
    return path


def dicom_series_in_folder(folder: PathLike) -> dict[str, list[str]]:
    """DICOM series found directly in ``folder`` (GDCM): Series Instance UID -> sorted slice file names.

    An anonymised series without a Series Instance UID appears under the UID ``""``.
    """
    folder = str(folder)
    return {
        uid: list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid))
        for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder)
    }


def _subfolders_with_series(folder: Path, most: int = 6, max_folders: int = 200) -> list[Path]:
    """Up to ``most`` subfolders of ``folder`` (searched to any depth, at most ``max_folders`` folders with files)
    that directly hold a DICOM series, for the message that points there."""
    found, searched = [], 0
    for below, subfolders, files in os.walk(folder):
        subfolders.sort()
        if Path(below) == folder or not files:
            continue
        searched += 1
        if searched > max_folders or len(found) == most:
            break
        if sitk.ImageSeriesReader.GetGDCMSeriesIDs(below):
            found.append(Path(below))
    return found


def _series_files(folder: Path, series_uid: Optional[str]) -> tuple[str, list[str]]:
    """The chosen series in ``folder``: its UID and its slice files (sorted by GDCM along the slice normal).

    With no ``series_uid``, DICOM SEG series are left out of the choice (a folder of CT slices with the
    ``segmentation.dcm`` spineseg wrote beside them gives the CT, whatever its UID, '' included); a folder of
    several series that are all SEGs is refused (InputImageError naming them), as a single SEG series is."""
    series = dicom_series_in_folder(folder)
    if not series:
        below = _subfolders_with_series(folder)
        hint = (f" Its subfolders {', '.join(repr(p.relative_to(folder).as_posix()) for p in below[:5])}"
                f"{' and more' if len(below) > 5 else ''} hold DICOM series (a PACS or CD export): point to one of "
                "them, or segment them all with `spineseg batch`." if below else "")
        raise InputImageError(
            f"No DICOM series found in folder '{folder}' (subfolders are not searched).{hint} Point to the folder "
            f"that directly holds the slice files of one series, or to an image file. Supported inputs: "
            f"{SUPPORTED_INPUTS}."
        )
    if series_uid is None and len(series) > 1:  # a SEG beside its CT (e.g. spineseg's segmentation.dcm) is no choice
        images, _ = split_segmentations(series)
        if not images:  # no pick can be read: say so, not "pick one"
            raise InputImageError(
                f"Folder '{folder}' holds {len(series)} DICOM series, and every series here is a DICOM Segmentation "
                f"(SEG: {', '.join(repr(Path(files[0]).name) for files in series.values())}), not a CT: they hold "
                "the segments of an image (e.g. segmentation.dcm files that spineseg or another program wrote), not "
                "HU. Give the CT's folder (the folder of the CT series they were made from)."
            )
        series = images
    if series_uid is None:
        if len(series) > 1:
            listing = "; ".join(f"series_uid={describe_series(uid, files)}" for uid, files in series.items())
            raise InputImageError(
                f"Folder '{folder}' holds {len(series)} DICOM series ({listing}). Pick one with --series-uid UID "
                "(series_uid= in Python, a series_uid column in a spineseg batch manifest), or move each series into "
                "its own folder."
            )
        series_uid = next(iter(series))
    if series_uid not in series:
        raise InputImageError(
            f"DICOM series '{series_uid}' is not in folder '{folder}'. Series found: "
            f"{', '.join(repr(uid) for uid in series)}. Pass one of these with --series-uid (series_uid= in "
            "Python, the series_uid column of a spineseg batch manifest)."
        )
    _refuse_segmentation(folder, series[series_uid])
    return series_uid, series[series_uid]


#: SOP Class UID of Segmentation Storage (PS3.4 B.5), a DICOM SEG.
_SEGMENTATION_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


def _refuse_segmentation(folder: Path, files: list[str]) -> None:
    """Raise InputImageError where the chosen series is a DICOM Segmentation (SEG: SOP Class UID (0008,0016)
    Segmentation Storage, or Modality (0008,0060) SEG), e.g. a ``segmentation.dcm`` that spineseg wrote: its values
    are segment numbers, not HU. Read from the first file's header by SimpleITK, so that a multi-frame SEG is not
    taken for an Enhanced CT (nor refused as one needing highdicom) and a one-frame SEG not for a single slice."""
    if is_segmentation(files):
        raise InputImageError(
            f"The DICOM series in '{folder}' is a DICOM Segmentation (SEG, '{Path(files[0]).name}'), not a CT: it "
            "holds the segments of an image (e.g. a segmentation.dcm that spineseg or another program wrote), not "
            "HU. Give the folder of the CT series it was made from (where a folder holds both, leave --series-uid "
            "out, or give the CT's Series Instance UID)."
        )


def is_segmentation(files: list[str]) -> bool:
    """Whether a series (its file names, as :func:`dicom_series_in_folder` lists them) is a DICOM Segmentation (SEG):
    SOP Class UID (0008,0016) Segmentation Storage, or Modality (0008,0060) SEG, in its first file's header (read by
    SimpleITK).

    Raises:
        InputImageError: the first file's header cannot be read.
    """
    info = _image_information(Path(files[0]))
    sop_class, modality = (info.GetMetaData(tag).strip() if info.HasMetaDataKey(tag) else ""
                           for tag in ("0008|0016", "0008|0060"))
    return sop_class == _SEGMENTATION_SOP_CLASS or modality.upper() == "SEG"


def split_segmentations(series: dict[str, list[str]]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The series of a folder (:func:`dicom_series_in_folder`: UID -> file names) as ``(images, segmentations)``:
    those that are no DICOM SEG and those that are (:func:`is_segmentation`), each in the given order; the choice
    :func:`read_image` makes without a Series Instance UID.

    Raises:
        InputImageError: a series' first file header cannot be read.
    """
    segmentations = {uid: files for uid, files in series.items() if is_segmentation(files)}
    return {uid: files for uid, files in series.items() if uid not in segmentations}, segmentations


#: The slice geometry every file of a series must carry, with its number of values (ITK reads a missing or empty
#: one as 0 or the identity, silently).
_SLICE_GEOMETRY_TAGS = {"0020|0032": ("Image Position (Patient) (0020,0032)", 3),
                        "0020|0037": ("Image Orientation (Patient) (0020,0037)", 6)}


def _has_geometry(info: sitk.ImageFileReader, tag: str, count: int) -> bool:
    """Whether the slice header ``info`` holds ``tag`` as ``count`` finite numbers (an anonymiser may blank it)."""
    if not info.HasMetaDataKey(tag):
        return False
    try:
        values = [float(v) for v in info.GetMetaData(tag).split("\\")]
    except ValueError:  # empty or not numbers: lacking, as the caller says
        return False
    return len(values) == count and all(np.isfinite(values))


def _check_slice_spacing(folder: Path, files: list[str]) -> tuple[float, list[str]]:
    """The distance (mm) between neighbouring slices of a series of single-frame files, from their headers, and the
    files in the order of their positions along the slice normal (GDCM's order, unless GDCM could not sort them by
    position and fell back to Instance Numbers or file names); InputImageError when a slice lacks its position or
    orientation, when they are not one even, upright stack (:func:`dicom_stack.check_even_stack`) or the series
    is several multi-frame files (a Concatenation or several stacks)."""
    infos = [_image_information(Path(f)) for f in files]
    if len(files) < 2:
        return float(infos[0].GetSpacing()[2]), files
    if any(frame_count(info) > 1 for info in infos):
        raise InputImageError(
            f"The DICOM series in '{folder}' is {len(files)} multi-frame files (a volume split over several files, "
            "or several stacks), which this version does not read. Convert it with dcm2niix (to NIfTI), or load it "
            "in 3D Slicer and save the volume as .nrrd, and segment that file."
        )
    for tag, (name, count) in _SLICE_GEOMETRY_TAGS.items():
        lacking = [Path(f).name for f, info in zip(files, infos) if not _has_geometry(info, tag, count)]
        if lacking:
            raise InputImageError(
                f"The DICOM series in '{folder}' has no, an empty or a malformed {name} in {len(lacking)} of its "
                f"{len(files)} slices, e.g. {lacking[0]}: where those slices lie is unknown, so the series cannot be "
                "stacked into a volume (a screen or secondary capture, or an export that dropped the slice geometry). "
                "Export the original CT series again from the scanner or PACS, or move those files out of the folder."
            )
    planes = [Plane(name=f"{Path(name).name} (slice {k})", direction=np.array(info.GetDirection()).reshape(3, 3),
                    pixel_spacing=tuple(info.GetSpacing()[:2]), matrix=tuple(info.GetSize()[:2]),
                    position=np.array(info.GetOrigin(), dtype=float))
              for k, (name, info) in enumerate(zip(files, infos))]
    order = sorted_along_normal(planes)
    if order != sorted(order) and order != sorted(order, reverse=True):  # GDCM did not sort them by position
        files = [files[i] for i in order]
        planes = [replace(planes[i], name=f"{Path(files[k]).name} (slice {k})") for k, i in enumerate(order)]
    return check_even_stack(planes, f"The DICOM series in '{folder}'", kind="series"), files


#: SimpleITK's metadata key of Number of Frames (0028,0008).
NUMBER_OF_FRAMES_TAG = "0028|0008"


def frame_count(header: sitk.ImageFileReader) -> int:
    """Number of Frames (0028,0008) of a DICOM file's header (a SimpleITK reader after ``ReadImageInformation``):
    the whole number it holds (spaces around it ignored); 1 when the tag is absent or holds no single whole number
    above 0 (empty, several values, a fraction, a non-conforming 0), i.e. the file is one image. The one reading
    of the tag: the reader (:func:`multiframe_file`), the DICOM SEG's sources and the cohort's series checks use
    it."""
    text = header.GetMetaData(NUMBER_OF_FRAMES_TAG).strip() if header.HasMetaDataKey(NUMBER_OF_FRAMES_TAG) else ""
    return int(text) if text.isdigit() and int(text) > 0 else 1


def multiframe_file(files: list[str]) -> Optional[Path]:
    """The file of a series (its file names) that is one multi-frame file (an Enhanced CT: :func:`frame_count`
    above 1), else None; read so by :func:`read_image`.

    Raises:
        InputImageError: the header of the one file cannot be read.
    """
    return Path(files[0]) if len(files) == 1 and frame_count(_image_information(Path(files[0]))) > 1 else None


def _read_dicom_series(folder: Path, series_uid: Optional[str]) -> sitk.Image:
    series_uid, files = _series_files(folder, series_uid)
    multiframe = multiframe_file(files)
    if multiframe is not None:
        image = read_multiframe(multiframe)
    else:
        files = _check_slice_spacing(folder, files)[1]
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files)
        try:
            image = reader.Execute()  # GDCM applies Rescale Slope/Intercept: CT values come out in HU
        except RuntimeError as exc:
            raise InputImageError(
                f"Cannot read the DICOM series in '{folder}': {_itk_reason(exc)}. The series may be "
                "incomplete or use an unsupported encoding; export it again from the PACS or convert it with dcm2niix."
            ) from exc
    image.SetMetaData(SERIES_UID_KEY, series_uid)
    return image


def series_description(files: list[str]) -> str:
    """The Series Description (0008,103E) of a series (its file names), from its first file's header, for a listing
    of series in a message: "" where it has none, "description unreadable: <ITK's reason>" where the header cannot
    be read (never raises)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(files[0])
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:  # only for the listing: show why the description is missing
        return f"description unreadable: {_itk_reason(exc)}"
    return reader.GetMetaData(_SERIES_DESCRIPTION_TAG).strip() if reader.HasMetaDataKey(_SERIES_DESCRIPTION_TAG) else ""


def describe_series(uid: str, files: list[str]) -> str:
    """One series of a DICOM folder for a listing in a message: ``'<uid>': <n> files, '<description>'`` (the Series
    Description, :func:`series_description`; left out where the series has none). The reader's refusal of several
    series puts ``series_uid=`` before each (the option that picks one); training, which has no such option, does
    not (``training.readers``). Never raises."""
    description = series_description(files)
    return f"{uid!r}: {len(files)} files" + (f", '{description}'" if description else "")


def _itk_reason(exc: RuntimeError) -> str:
    """The informative last line of a SimpleITK/ITK exception text."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


@dataclass
class NiftiScan:
    """What one streamed pass over a NIfTI file found (see :func:`scan_nifti`).

    Attributes:
        needed_bytes: header + voxel bytes the header declares (``vox_offset + voxels * bitpix / 8``).
        total_bytes: bytes the file (after gzip decompression) holds.
        n_nan, n_inf: NaN and infinite voxel values in the stored data (0 for integer data types).
    """

    needed_bytes: int
    total_bytes: int
    n_nan: int = 0
    n_inf: int = 0


def scan_nifti(path: PathLike) -> Optional[NiftiScan]:
    """Read a NIfTI file once, in chunks of :data:`_GZIP_CHUNK_BYTES` (bounded memory), and count its bytes and
    non-finite voxels. ``None`` when the file has no valid NIfTI-1/NIfTI-2 header.

    Both are checked on the raw bytes because ITK hides them: its NIfTI reader fills a truncated file's missing
    voxels with zeros and turns NaN and +-Inf voxels into 0, without any error (SimpleITK 2.5), and its NIfTI
    writer leaves a truncated file when the disk is full.

    Raises:
        OSError, EOFError, zlib.error: the file or its gzip stream cannot be read.
    """
    with _open_nifti(path) as stream:
        head = stream.read(540)
        layout = _nifti_layout(head)
        if layout is None:
            return None
        scan = NiftiScan(layout.vox_offset + layout.n_voxels * layout.bitpix // 8, len(head))
        dtype = _FLOAT_DATATYPES.get(layout.datatype)
        pending = head[layout.vox_offset :] if layout.vox_offset < len(head) else b""
        skip = max(0, layout.vox_offset - len(head))
        remaining = layout.n_voxels  # voxels still to inspect
        while True:
            chunk = stream.read(_GZIP_CHUNK_BYTES)
            if not chunk and not pending:
                return scan
            scan.total_bytes += len(chunk)
            if skip:
                dropped = min(skip, len(chunk))
                chunk, skip = chunk[dropped:], skip - dropped
            if dtype is None or remaining <= 0:
                pending = b""
                continue
            data = pending + chunk
            itemsize = np.dtype(dtype).itemsize
            usable = min(len(data) // itemsize, remaining)
            values = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder(layout.endian), count=usable)
            scan.n_nan += int(np.count_nonzero(np.isnan(values)))
            scan.n_inf += int(np.count_nonzero(np.isinf(values)))
            remaining -= usable
            pending = data[usable * itemsize :] if chunk else b""


def _check_nifti_file(path: Path) -> None:
    """Raise InputImageError if a NIfTI file is corrupt, shorter than its header declares, or holds NaN/Inf.

    See :func:`scan_nifti` for why ITK cannot be trusted with either.
    """
    try:
        scan = scan_nifti(path)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise _unreadable_nifti(path, exc) from exc
    if scan is None:
        raise _not_nifti(path)
    if scan.total_bytes < scan.needed_bytes:
        raise InputImageError(
            f"'{path}' is truncated: its header declares {scan.needed_bytes} bytes (header + voxels) but the file "
            f"holds only {scan.total_bytes}. Copy or export the image again from the original."
        )
    if scan.n_nan or scan.n_inf:
        raise non_finite_error(scan.n_nan, scan.n_inf)


def check_image_file(path: PathLike) -> None:
    """Raise InputImageError where ITK would misread an image file without an error, or refuse it for a misleading
    reason. NIfTI (``.nii``, ``.nii.gz``): not a NIfTI header, a gzip-compressed file named ``.nii``, a wrong length
    unit, a sheared or doubly scaled or doubly placed grid (:func:`_check_nifti_header`), a corrupt or truncated file,
    NaN/Inf voxels (:func:`_check_nifti_file`). NRRD (``.nrrd``, ``.nhdr``; gzip encoding) and MetaImage (``.mha``,
    ``.mhd``; compressed): a header, or a detached data file that the header names, that is not there or cannot be
    read (:func:`_check_data_file`); compressed voxel data, in the file or in one detached data file, that fail
    their checksum or end early (:func:`_check_compressed_data`). Reads the whole file (and its data file) once, in
    bounded memory; does nothing for other files or a path that is no file."""
    path = Path(path)
    suffix = image_suffix(path)
    if not path.is_file():
        return
    if suffix in (".nii", ".nii.gz"):
        _check_nifti_header(path)
        _check_nifti_file(path)
    elif suffix in (".nrrd", ".nhdr", ".mha", ".mhd"):
        _check_data_file(path, suffix)
        _check_compressed_data(path, suffix)


#: Longest header of an NRRD or MetaImage file searched for its end (ITK writes a few KB of metadata).
_MAX_HEADER_BYTES = 1 << 20


def _header_lines(head: bytes):
    r"""``(line, end)`` for each line of ``head`` that ends in ``\n``: the line without its line ending (``\n`` or
    ``\r\n``) and the offset just after its ``\n``."""
    start = 0
    while True:
        stop = head.find(b"\n", start)
        if stop < 0:
            return
        line = head[start:stop]
        yield (line[:-1] if line.endswith(b"\r") else line), stop + 1
        start = stop + 1


def _nrrd_fields(head: bytes) -> tuple[dict[bytes, bytes], Optional[int]]:
    r"""The fields of an NRRD header and the offset just after its first empty line (where attached data start;
    ``None`` when ``head`` holds no empty line).

    Fields are ``name: value`` lines up to the first empty line (``\n`` or ``\r\n`` endings), names in any
    case (returned lower case), ``#`` comments and ``key:=value`` pairs skipped."""
    fields, offset = {}, None
    for line, end in _header_lines(head):
        if not line:
            offset = end
            break
        name, colon, value = line.partition(b":")
        if not colon or line.startswith(b"#") or value.startswith(b"="):
            continue
        fields[name.strip().lower()] = value.strip()
    return fields, offset


def _nrrd_data_file(path: Path, fields: dict[bytes, bytes]) -> Optional[Path]:
    """The one detached data file an NRRD header names (``data file:`` / ``datafile:``), taken relative to the
    header's folder unless absolute; ``None`` when it names none or several (``LIST``, ``format min max step``)."""
    data_file = fields.get(b"data file", fields.get(b"datafile"))
    if data_file is None:
        return None
    words = data_file.split()
    if data_file.upper().startswith(b"LIST") or (len(words) in (4, 5) and all(
            word.lstrip(b"+-").isdigit() for word in words[1:])):  # several files: LIST or "format min max step"
        return None
    return path.parent / os.fsdecode(data_file)


def _nrrd_compressed_data(path: Path, head: bytes) -> Optional[tuple[Path, int]]:
    r"""Where the gzip-compressed voxel data of an NRRD header start, as ``(file, offset)``; ``None`` when the data
    are not gzip-compressed, or not where this can follow them (see :func:`_check_compressed_data`); fields as
    :func:`_nrrd_fields` reads them."""
    fields, offset = _nrrd_fields(head)
    if fields.get(b"encoding", b"").lower() not in (b"gzip", b"gz"):
        return None
    if any(fields.get(skip, b"0") != b"0" for skip in (b"line skip", b"lineskip", b"byte skip", b"byteskip")):
        return None
    if b"data file" not in fields and b"datafile" not in fields:
        return None if offset is None else (path, offset)
    data_file = _nrrd_data_file(path, fields)
    return None if data_file is None else (data_file, 0)


def _metaimage_fields(head: bytes) -> tuple[dict[bytes, bytes], Optional[int]]:
    r"""The fields of a MetaImage header up to its last, ``ElementDataFile``, and the offset just after that line
    (where ``LOCAL`` data start; ``None`` when ``head`` holds no ``ElementDataFile``).

    As MetaIO reads a header: ``Name = value`` or ``Name: value`` lines (any spacing, ``\n`` or ``\r\n``),
    names case-sensitive."""
    fields = {}
    for line, end in _header_lines(head):
        cut = min((i for i in (line.find(b"="), line.find(b":")) if i >= 0), default=-1)
        if cut < 0:
            continue
        name, value = line[:cut].strip(), line[cut + 1:].strip()
        fields[name] = value
        if name == b"ElementDataFile":
            return fields, end
    return fields, None


def _metaimage_data_file(path: Path, fields: dict[bytes, bytes]) -> Optional[Path]:
    """The one detached data file a MetaImage header names (``ElementDataFile = name``), taken relative to the
    header's folder unless absolute; ``None`` for ``LOCAL`` data, no ``ElementDataFile``, or several data files
    (``LIST``, a ``%d`` pattern)."""
    value = fields.get(b"ElementDataFile")
    if value is None or value.upper() == b"LOCAL":
        return None
    if value.upper().startswith(b"LIST") or b"%" in value or len(value.split()) > 1:  # several data files
        return None
    return path.parent / os.fsdecode(value)


def _metaimage_compressed_data(path: Path, head: bytes) -> Optional[tuple[Path, int]]:
    r"""Where the compressed voxel data of a MetaImage header start, as ``(file, offset)``; ``None`` when they are
    not compressed, or not where this can follow them (see :func:`_check_compressed_data`); fields as
    :func:`_metaimage_fields` reads them, ``CompressedData`` true when its value starts with T, t or 1, ``LOCAL``
    (any case) data just after the ``ElementDataFile`` line."""
    fields, end = _metaimage_fields(head)
    if end is None:
        return None
    if fields.get(b"CompressedData", b"")[:1] not in (b"T", b"t", b"1") or fields.get(b"HeaderSize", b"0") != b"0":
        return None
    if fields[b"ElementDataFile"].upper() == b"LOCAL":
        return path, end
    data_file = _metaimage_data_file(path, fields)
    return None if data_file is None else (data_file, 0)


def _check_data_file(path: Path, suffix: str) -> None:
    """Raise InputImageError when the header ``path`` (NRRD or MetaImage) cannot be read, or names one detached voxel
    data file that is not there or cannot be read. ITK refuses such a header with "No such file or directory"
    (MetaImage) or "couldn't open" (NRRD), which reads like a corrupt file. Several data files (a ``LIST`` or a
    pattern) are left to ITK.

    Raises:
        InputImageError: names the header, the data file it expects and where, and the fix; or the header or that
            data file cannot be read (no read permission, not a regular file).
    """
    head = _read_header_bytes(path)
    if suffix in (".nrrd", ".nhdr"):
        fields = _nrrd_fields(head)[0]
        # the spelling the header used (NRRD takes both; "data file" first, as _nrrd_data_file reads it)
        data_file, field = _nrrd_data_file(path, fields), "data file:" if b"data file" in fields else "datafile:"
    else:
        data_file, field = _metaimage_data_file(path, _metaimage_fields(head)[0]), "ElementDataFile ="
    if data_file is None:
        return
    if data_file.is_file():
        try:  # ITK would call an unreadable data file "corrupt, truncated"
            open(data_file, "rb").close()
        except OSError as exc:
            raise _unreadable_input(f"'{path}' (data file '{data_file}')", exc) from exc
        return
    what = "is a folder, not a file" if data_file.is_dir() else "does not exist"
    raise InputImageError(
        f"Cannot read '{path}': its header keeps the voxel data in another file, '{data_file}' (its '{field}' "
        f"line), which {what}. Put the data file there under that name (a header and its data file are copied "
        "together), or export the image again as one file (.nrrd, .mha or .nii.gz)."
    )


def _check_compressed_data(path: Path, suffix: str) -> None:
    r"""Raise InputImageError when the compressed voxel data of an NRRD file (``encoding: gzip``) or a MetaImage file
    (``CompressedData = True``) are corrupt or end early. Their ITK readers do not verify the stream's checksum and
    return wrong voxel values without an error (SimpleITK 2.5), and refuse a MetaImage whose compressed data were
    cut short with a misleading reason ("No such file or directory").

    Checked: data in the file itself (NRRD after the header's first empty line; MetaImage ``ElementDataFile =
    LOCAL``), or in one detached data file named by the header (NRRD ``data file:`` / ``datafile:``, MetaImage
    ``ElementDataFile = name``), taken relative to the header's folder unless absolute; either for ``.nrrd`` /
    ``.nhdr`` and ``.mha`` / ``.mhd``, headers with ``\n`` or ``\r\n`` line endings. The gzip or zlib stream is
    decompressed once, in chunks of :data:`_GZIP_CHUNK_BYTES` (bounded memory), to its end and checksum.

    Not checked, left to ITK: uncompressed data; data split over several files (NRRD ``data file: LIST`` or
    ``format min max step``, MetaImage ``ElementDataFile = LIST`` or a ``%d`` pattern); NRRD ``line skip`` /
    ``byte skip`` other than 0, MetaImage ``HeaderSize`` other than 0; a missing data file (that is
    :func:`_check_data_file`'s); a header that is not
    recognised or whose end is not within its first :data:`_MAX_HEADER_BYTES` bytes; the decompressed size.

    Raises:
        InputImageError: the compressed data are corrupt (fail to decompress or their checksum) or end early; the
            header or the data file cannot be read (no read permission, not a regular file).
    """
    head = _read_header_bytes(path)
    where = (_nrrd_compressed_data if suffix in (".nrrd", ".nhdr") else _metaimage_compressed_data)(path, head)
    if where is None or not where[0].is_file():
        return
    data_path, offset = where
    named = f"'{path}'" if data_path == path else f"'{path}' (data file '{data_path}')"
    try:
        data = open(data_path, "rb")
    except OSError as exc:
        raise _unreadable_input(named, exc) from exc
    with data as stream:
        stream.seek(offset)
        inflater = zlib.decompressobj(32 + zlib.MAX_WBITS)  # zlib or gzip stream, checksum verified at its end
        try:
            while not inflater.eof:
                chunk = stream.read(_GZIP_CHUNK_BYTES)
                if not chunk:
                    raise InputImageError(
                        f"Cannot read {named}: its compressed voxel data end early, so the file was cut short "
                        "(an interrupted copy, download or export, or a full disk). Copy or export it again from "
                        "the original."
                    )
                inflater.decompress(chunk, _GZIP_CHUNK_BYTES)
                while inflater.unconsumed_tail and not inflater.eof:  # bounded memory: drain what is left
                    inflater.decompress(inflater.unconsumed_tail, _GZIP_CHUNK_BYTES)
        except zlib.error as exc:
            raise InputImageError(
                f"Cannot read {named}: its compressed voxel data are corrupt ({exc}); ITK would read wrong voxel "
                "values from it without an error. The file was damaged (disk, copy or download): copy or export "
                "it again from the original."
            ) from exc


def _read_header_bytes(path: Path) -> bytes:
    """The first :data:`_MAX_HEADER_BYTES` bytes of an NRRD or MetaImage file.

    Raises:
        InputImageError: the file cannot be opened or read (no read permission, not a regular file), naming it as
            the input image that cannot be read and how to make it readable (a bare ``OSError`` would end a command
            as "cannot access <file>: <reason>" with a hint for a read or a write, the error not telling which).
    """
    try:
        with open(path, "rb") as stream:
            return stream.read(_MAX_HEADER_BYTES)
    except OSError as exc:
        raise _unreadable_input(f"'{path}'", exc) from exc


def _unreadable_input(named: str, exc: OSError) -> InputImageError:
    return InputImageError(
        f"Cannot read {named}: {exc.strerror or exc}. Give an image file that you may read: check its read "
        "permission (ls -l; a file of another user may need chmod, or a copy of your own) and that it is a regular "
        "file, or copy it again from the original."
    )


def _gzip_compressed(path: PathLike) -> bool:
    with open(path, "rb") as stream:
        return stream.read(2) == _GZIP_MAGIC


def _open_nifti(path: PathLike):
    """A binary stream of a NIfTI file's bytes, gunzipped when it is gzip-compressed (ITK also reads a misnamed,
    uncompressed .nii.gz, so the magic bytes decide, not the name)."""
    return gzip.open(path, "rb") if _gzip_compressed(path) else open(path, "rb")


def _check_nifti_header(path: Path) -> None:
    """Raise InputImageError unless the file starts with a NIfTI-1/NIfTI-2 header that gives an orientation (a qform
    or an sform: qform_code or sform_code above 0), whose length unit is not a wrong one (:func:`_check_nifti_unit`)
    and whose sform, if set, is a perpendicular grid (within half a voxel at its far corner), gives pixdim's voxel
    size and, where a qform is set too, the same grid as the qform (within half a voxel at every corner) unless ITK
    reads the sform (:func:`_itk_reads_sform`). Reads only the header."""
    try:
        with _open_nifti(path) as stream:
            head = stream.read(540)
    except (OSError, EOFError, zlib.error) as exc:
        raise _unreadable_nifti(path, exc) from exc
    layout = _nifti_layout(head)
    if layout is None:
        raise _not_nifti(path)
    if path.name.lower().endswith(".nii") and _gzip_compressed(path):  # ITK's NIfTI reader goes by the name here
        raise InputImageError(
            f"'{path}' is a gzip-compressed NIfTI file although its name ends in .nii (it lost its .gz, e.g. in a "
            f"download), which ITK cannot read. Rename it to '{path.name}.gz'."
        )
    if layout.codes[0] <= 0 and layout.codes[1] <= 0:
        raise InputImageError(
            f"The NIfTI header of '{path}' gives no orientation: its qform_code and sform_code are both 0 (an "
            "ANALYZE-style header, e.g. written from a bare array), so where the head, the front and the left of the "
            "image lie is unknown. ITK would take the voxel axes for left, posterior and superior (nibabel: left, "
            "anterior and superior), and the spine would be searched turned over and its vertebrae misnamed. Convert "
            "the original DICOM again (dcm2niix writes the orientation), or set the orientation the data have (e.g. "
            "nibabel: img.set_sform(affine, code=1), then save) and check the anatomy in a viewer."
        )
    _check_nifti_unit(path, layout)
    if layout.sform is None:
        return
    pixdim, lengths = layout.voxel_sizes
    shear = layout.sform_shear()
    if shear > 0.5 * float(lengths.min()):  # first: a tilt kept in the sform also lengthens its slice axis
        axes = layout.sform / lengths
        skew = max(abs(90.0 - np.degrees(np.arccos(np.clip(abs(axes[:, a] @ axes[:, b]), 0.0, 1.0))))
                   for a, b in ((0, 1), (0, 2), (1, 2)))
        raise InputImageError(
            f"The NIfTI header of '{path}' gives a sheared grid: its sform's axes are up to {skew:.1f} degrees from "
            f"perpendicular (e.g. a gantry tilt kept in the header), {shear * layout.mm_per_unit:.0f} mm at the grid's "
            "far corner. ITK reads only perpendicular axes: it takes the qform instead, misplacing the anatomy, or "
            "refuses the file. "
            "Resample it to a perpendicular grid first (dcm2niix corrects a gantry tilt by default; nibabel's "
            "processing.resample_to_output resamples a NIfTI file)."
        )
    if not np.allclose(pixdim, lengths, rtol=0.01):
        pixdim, sform = (", ".join(f"{v:g}" for v in values) for values in layout.voxel_sizes)
        raise InputImageError(
            f"The NIfTI header of '{path}' gives two voxel sizes: pixdim {pixdim}, its sform (the voxel-to-world "
            f"matrix, sform_code > 0) {sform}. ITK reads pixdim, nibabel and FSL the sform: the anatomy would come "
            "out scaled by their ratio in one of them. Save it again from the matrix you trust (e.g. nibabel's "
            "Nifti1Image(np.asanyarray(img.dataobj), img.affine) takes the sform and writes pixdim from it), and check "
            "the anatomy's size in a viewer."
        )
    half_voxel = 0.5 * float(lengths.min())
    apart = layout.qform_sform_distance()
    if apart > half_voxel and not _itk_reads_sform(path, layout, half_voxel):
        qform_code, sform_code = layout.codes
        raise InputImageError(
            f"The NIfTI header of '{path}' places the image twice: its qform (qform_code {qform_code}) and its sform "
            f"(sform_code {sform_code}) put the grid up to {apart * layout.mm_per_unit:.3g} mm apart. ITK (this "
            "program, 3D Slicer) reads the qform here (it prefers the sform only where sform_code is 1 and the "
            "sform's axes are perpendicular to 1e-4), nibabel, FSL and AFNI the sform: the labels would lie that far "
            "off the CT in some of them. Make the two agree, keeping the one you trust (e.g. nibabel: "
            "img.set_qform(img.get_sform()) or img.set_sform(img.get_qform()), then save), and check the anatomy in "
            "a viewer."
        )


def _itk_reads_sform(path: Path, layout: _NiftiLayout, tolerance: float) -> bool:
    """Whether ITK reads the NIfTI file's sform (whose axes must be set), as nibabel, FSL and AFNI do where
    sform_code > 0: whether ITK's origin and axis directions put every corner of the grid, at ITK's voxel size,
    within ``tolerance`` (header units) of where the sform's origin and axis directions do. ITK's voxel size is
    pixdim's, which may differ from the sform's axis lengths (by up to the 1 % the voxel-size check allows; enough
    on its own to move the far corner of a large grid by more than half a voxel), so the grids are compared at that
    size. ITK 5.2 and later (SimpleITK 2.1+, 3D Slicer 5) prefer the sform where sform_code is 1 and its axes are
    perpendicular to 1e-4, else the qform where qform_code > 0; ITK 5.1 and older always the qform. Asked of ITK
    itself (its header only), not re-derived; False for fewer than three dimensions."""
    reader = _image_information(path)
    dimension = reader.GetDimension()
    if dimension < 3:
        return False
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    direction = lps_to_ras @ np.array(reader.GetDirection()).reshape(dimension, dimension)[:3, :3]
    spacing = np.array(reader.GetSpacing()[:3]) / layout.mm_per_unit
    origin = lps_to_ras @ np.array(reader.GetOrigin()[:3]) / layout.mm_per_unit
    itk_affine = np.column_stack([direction * spacing, origin])
    sform_directions = layout.sform / np.linalg.norm(layout.sform, axis=0)
    sform_at_itk_spacing = np.column_stack([sform_directions * spacing, layout.sform_affine[:, 3]])
    return layout.grid_distance(itk_affine, sform_at_itk_spacing) <= tolerance


def _check_nifti_unit(path: Path, layout: _NiftiLayout) -> None:
    """Raise InputImageError where the NIfTI header's spatial unit (xyzt_units) is metres or micrometres, ITK's
    voxel size in mm (pixdim times 1000 or 0.001) is outside what :func:`validation.check_spacing` accepts, and
    pixdim's numbers taken as mm (as nibabel, which ignores the unit, takes them) are inside. Either the voxels
    really are that size (a micro-CT in micrometres: not for this program) or the header names the wrong unit (a
    CT written in mm); the message names both, with the image's extent in each reading, for the user to tell."""
    if layout.xyz_unit not in _NIFTI_UNITS or not layout.pixdim:
        return
    scale, name = _NIFTI_UNITS[layout.xyz_unit]
    pixdim = np.abs(np.array(layout.pixdim))
    mm = pixdim * scale

    def accepted(values: np.ndarray) -> bool:
        return bool(np.all((values >= MIN_SPACING_MM) & (values <= MAX_SPACING_MM)))

    if accepted(mm) or not accepted(pixdim):
        return
    extent = np.array(layout.grid[: len(pixdim)]) * pixdim  # in pixdim's numbers

    def listed(values: np.ndarray, separator: str = ", ") -> str:  # 4 significant digits, never an exponent
        return separator.join(np.format_float_positional(v, precision=4, fractional=False, trim="-") for v in values)

    really = "a micro-CT of a specimen" if scale < 1 else "no CT"
    raise InputImageError(
        f"The NIfTI header of '{path}' gives its lengths in {name} (xyzt_units): ITK (this program, 3D Slicer) "
        f"reads voxels of {listed(mm)} mm (pixdim {listed(pixdim)} {name}), an image {listed(extent * scale, ' x ')} "
        f"mm across; nibabel ignores the unit and reads {listed(pixdim)} mm voxels, {listed(extent, ' x ')} mm. If "
        f"the voxels really are {listed(mm)} mm ({really}), this program cannot take the image: it takes voxels of "
        f"{MIN_SPACING_MM:g} to {MAX_SPACING_MM:g} mm, a CT of the human spine. If the anatomy is human-sized at "
        f"{listed(pixdim)} mm voxels (vertebral bodies some 15-50 mm wide), the header names the wrong unit: set it to "
        "millimetres (e.g. nibabel: img.header.set_xyzt_units('mm'), then save), or convert the original DICOM "
        "again, and check the anatomy's size in a viewer."
    )


def _unreadable_nifti(path: Path, exc: Exception) -> InputImageError:
    """The error for a NIfTI file that :func:`_open_nifti` cannot read: a gzip stream that ends early or is damaged
    (``EOFError``, ``zlib.error``, ``gzip.BadGzipFile``) is named as such, the plain problem first and the library's
    words last; any other ``OSError`` (no read permission, an I/O error) as a file that cannot be read
    (:func:`_unreadable_input`)."""
    if not isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile)):
        return _unreadable_input(f"'{path}'", exc)
    if isinstance(exc, EOFError):
        problem = "is cut short: the gzip stream is corrupt or truncated (the file ends inside its compressed data)"
    elif isinstance(exc, gzip.BadGzipFile) and str(exc).startswith(("CRC check failed", "Incorrect length")):
        problem = "is damaged: the gzip stream is corrupt or truncated (its data do not match their checksum)"
    elif "Not a gzipped file" in str(exc):  # gzip reads bytes after the first stream as the start of another one
        problem = "is damaged: the gzip stream is corrupt or truncated (bytes after its end are no gzip data)"
    else:
        problem = "is damaged: the gzip stream is corrupt or truncated (its compressed data are not valid)"
    return InputImageError(
        f"'{path}' {problem}, so its voxels cannot be read. It is an interrupted copy or download, was written to a "
        "full disk, or is not a gzip-compressed NIfTI file despite its name; copy or export it again from the "
        f"original. (gzip: {exc})"
    )


def _not_nifti(path: Path) -> InputImageError:
    return InputImageError(
        f"'{path}' is not a NIfTI file (no valid NIfTI-1/NIfTI-2 header) despite its name. Give a real "
        f"image file; supported inputs: {SUPPORTED_INPUTS}."
    )


@dataclass
class _NiftiLayout:
    vox_offset: int
    n_voxels: int
    bitpix: int
    datatype: int
    endian: str  # "<" or ">"
    #: (pixdim[1:4], the lengths of the sform's first three columns), in the header's units, where sform_code is set
    #: and the sform is not empty; both should be the voxel size along i, j, k.
    voxel_sizes: Optional[tuple[np.ndarray, np.ndarray]] = None
    #: The grid's size along i, j, k.
    grid: tuple[int, int, int] = (1, 1, 1)
    #: (qform_code, sform_code) as stored.
    codes: tuple[int, int] = (0, 0)
    #: The qform's and the sform's voxel-to-world matrices (3x4, RAS, header units, columns i, j, k, offset), where
    #: qform_code is set, and where ``voxel_sizes`` is given.
    qform: Optional[np.ndarray] = None
    sform_affine: Optional[np.ndarray] = None
    #: pixdim[1..3] as stored, for the grid's spatial axes (fewer for a 2D image).
    pixdim: tuple[float, ...] = ()
    #: The spatial unit code of xyzt_units (its bits 0-2): 1 metre, 2 mm, 3 micrometre, 0 not given.
    xyz_unit: int = 0

    @property
    def mm_per_unit(self) -> float:
        """Millimetres per header length unit as ITK scales them (metre 1000, micrometre 0.001, any other 1)."""
        return _MM_PER_UNIT.get(self.xyz_unit, 1.0)

    @property
    def sform(self) -> Optional[np.ndarray]:
        """The sform's 3x3 voxel-to-world part (columns i, j, k), where ``voxel_sizes`` is given."""
        return None if self.sform_affine is None else self.sform_affine[:, :3]

    def _corners(self) -> np.ndarray:
        """The grid's eight corners as voxel indices (3 x 8, i, j, k)."""
        return np.array(np.meshgrid(*[[0, max(n - 1, 0)] for n in self.grid], indexing="ij")).reshape(3, -1)

    def qform_sform_distance(self) -> float:
        """How far apart (header units: mm, or metres or micrometres where xyzt_units says so) the qform and the
        sform put a corner of the grid; 0 unless both are set."""
        if self.qform is None or self.sform_affine is None:
            return 0.0
        return self.grid_distance(self.qform, self.sform_affine)

    def grid_distance(self, first: np.ndarray, second: np.ndarray) -> float:
        """How far apart (header units) two voxel-to-world matrices (3x4, RAS, header units) put a corner of the
        grid."""
        difference = first - second
        return float(np.linalg.norm(difference[:, :3] @ self._corners() + difference[:, 3:], axis=0).max())

    def sform_shear(self) -> float:
        """How far (header units) the sform puts a corner of the grid from where the orthogonal grid nearest to
        it would (0 without an sform): ITK reads only orthogonal grids (it takes the qform, or refuses the file)."""
        if self.sform is None:
            return 0.0
        lengths = np.linalg.norm(self.sform, axis=0)
        u, _, vt = np.linalg.svd(self.sform / lengths)
        difference = self.sform - (u @ vt) * lengths
        return float(np.linalg.norm(difference @ self._corners(), axis=0).max())


#: NIfTI datatype codes of the floating-point types that can hold NaN/Inf -> numpy type.
_FLOAT_DATATYPES = {16: np.float32, 64: np.float64}

#: NIfTI spatial unit codes (xyzt_units bits 0-2) that ITK converts to mm -> (mm per unit, name); other codes (mm, not
#: given) ITK takes as mm. nibabel ignores the unit (its affine is in the header's numbers).
_NIFTI_UNITS = {1: (1e3, "metres"), 3: (1e-3, "micrometres")}
_MM_PER_UNIT = {code: scale for code, (scale, _) in _NIFTI_UNITS.items()}


def _nifti_layout(header: bytes) -> Optional[_NiftiLayout]:
    """Voxel offset, count, bits per voxel, datatype code, byte order and voxel sizes of a NIfTI-1 or NIfTI-2
    header, or None if it is not one."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            datatype, bitpix = struct.unpack(endian + "2h", header[70:74])
            offset = struct.unpack(endian + "f", header[108:112])[0]
            if not np.isfinite(offset):
                return None
            vox_offset = int(offset)
            qfac, *pixdim = struct.unpack(endian + "4f", header[76:92])
            qform_code, sform_code = struct.unpack(endian + "2h", header[252:256])
            quaternion = struct.unpack(endian + "6f", header[256:280])  # quatern_b, c, d, qoffset_x, y, z
            rows = struct.unpack(endian + "12f", header[280:328])
            xyzt_units = header[123]
            break
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            datatype, bitpix = struct.unpack(endian + "2h", header[12:16])
            dims = struct.unpack(endian + "8q", header[16:80])
            vox_offset = struct.unpack(endian + "q", header[168:176])[0]
            qfac, *pixdim = struct.unpack(endian + "4d", header[104:136])
            qform_code, sform_code = struct.unpack(endian + "2i", header[344:352])
            quaternion = struct.unpack(endian + "6d", header[352:400])
            rows = struct.unpack(endian + "12d", header[400:496])
            xyzt_units = struct.unpack(endian + "i", header[500:504])[0]
            break
    else:
        return None
    n_dims = dims[0]
    if not 1 <= n_dims <= 7 or bitpix <= 0 or vox_offset < 0:
        return None
    n_voxels = int(np.prod([max(int(d), 1) for d in dims[1 : n_dims + 1]], dtype=np.int64))
    grid = tuple(max(int(d), 1) if n_dims >= axis else 1 for axis, d in enumerate(dims[1:4], start=1))
    qform = (_qform_affine(quaternion[:3], quaternion[3:], qfac, pixdim)
             if qform_code > 0 and np.all(np.isfinite(quaternion + tuple(pixdim))) else None)
    affine = np.array(rows, dtype=float).reshape(3, 4)
    sform = affine[:, :3]
    units = dict(pixdim=tuple(float(v) for v in pixdim[:min(n_dims, 3)]), xyz_unit=int(xyzt_units) & 0x07)
    if sform_code <= 0 or not sform.any():  # no sform, or an empty one (ITK refuses it)
        return _NiftiLayout(vox_offset, n_voxels, bitpix, datatype, endian, grid=grid, codes=(qform_code, sform_code),
                            qform=qform, **units)
    voxel_sizes = np.abs(np.array(pixdim, dtype=float)), np.linalg.norm(sform, axis=0)
    return _NiftiLayout(vox_offset, n_voxels, bitpix, datatype, endian, voxel_sizes, grid=grid,
                        codes=(qform_code, sform_code), qform=qform, sform_affine=affine, **units)


def _qform_affine(quatern: tuple, qoffset: tuple, qfac: float, pixdim: tuple) -> np.ndarray:
    """The qform's voxel-to-world matrix (3x4, RAS mm) as the NIfTI-1 standard builds it from the quaternion
    (b, c, d; a = sqrt(1 - b^2 - c^2 - d^2), 0 where that is below 1e-7, as nifti1_io (ITK) takes it), qfac
    (pixdim[0]: -1 flips the k axis, any other value is +1), the voxel sizes |pixdim[1..3]| and the offset (finite
    values)."""
    from scipy.spatial.transform import Rotation

    b, c, d = (float(v) for v in quatern)
    w2 = 1.0 - (b * b + c * c + d * d)
    a = 0.0 if w2 < 1e-7 else float(np.sqrt(w2))  # nifti1_io (ITK): a 180-degree turn below 1e-7
    rotation = Rotation.from_quat([b, c, d, a]).as_matrix()  # scalar last; normalised as nifti1_io does
    scale = np.abs(np.array(pixdim, dtype=float)) * np.array([1.0, 1.0, -1.0 if qfac < 0 else 1.0])
    return np.column_stack([rotation * scale, np.array(qoffset, dtype=float)])
