"""Read and write images with SimpleITK, keeping the geometry (origin, spacing, direction) with the voxels.

Supported inputs: NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``), MetaImage (``.mha``, ``.mhd``) and
a folder holding a DICOM series. Physical coordinates are ITK's **LPS** millimetres; ``read_image`` keeps the
input's grid exactly (no reorientation, no resampling: that is :mod:`SpineSegmentationLib.geometry`'s job).
DICOM pixel values are returned after the Rescale Slope/Intercept (0028,1053/1052), i.e. in HU for CT.

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
import struct
import zlib
from pathlib import Path
from typing import Optional, Union

import numpy as np
import SimpleITK as sitk

from .errors import InputImageError, OutputExistsError, SpineSegmentationError

PathLike = Union[str, Path]

#: File name endings read and written by :func:`read_image` / :func:`write_image` (lower case).
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")

#: Human-readable list of what :func:`read_image` accepts, used in error messages.
SUPPORTED_INPUTS = (
    "NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd), or a folder holding one DICOM series"
)

#: Data files written next to a detached header (``name.nhdr`` / ``name.mhd``) by SimpleITK, with and without
#: compression; :func:`write_image` refuses to overwrite them as well.
_DETACHED_DATA_SUFFIXES = {".nhdr": (".raw", ".raw.gz"), ".mhd": (".raw", ".zraw")}

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
        path: an image file (see :data:`IMAGE_SUFFIXES`) or a folder with the files of a DICOM series
            (subfolders are not searched).
        series_uid: for a DICOM folder holding several series, the Series Instance UID (0020,000E) to read.
            Must be ``None`` for image files.

    Returns:
        The ``sitk.Image`` with the file's pixel type, size (I, J, K), spacing (mm), origin (LPS mm) and
        direction; ``sitk.GetArrayFromImage`` gives it in [K, J, I] order. DICOM values are rescaled with the
        series' Rescale Slope/Intercept (HU for CT).

    Raises:
        InputImageError: the path does not exist; the file's format is not supported; the file is unreadable,
            corrupt or truncated; the folder holds no DICOM series; the folder holds several series and
            ``series_uid`` is not given or not among them.
    """
    path = Path(path)
    if not path.exists():
        raise InputImageError(
            f"Input image '{path}' does not exist. Check the path (relative paths are taken from the current "
            f"folder '{Path.cwd()}'); supported inputs: {SUPPORTED_INPUTS}."
        )
    if path.is_dir():
        return _read_dicom_series(path, series_uid)
    if series_uid is not None:
        raise InputImageError(
            f"series_uid='{series_uid}' was given but '{path}' is a file, not a DICOM folder. Pass the folder "
            "that holds the DICOM series, or leave series_uid out for an image file."
        )
    suffix = image_suffix(path)
    if suffix is None:
        raise InputImageError(
            f"Unsupported input file '{path.name}'. Supported inputs: {SUPPORTED_INPUTS}. For DICOM give the "
            "folder of the series, not one of its files; convert other formats (e.g. in 3D Slicer: Save as NRRD)."
        )
    if suffix in (".nii", ".nii.gz"):
        _check_nifti_complete(path)
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
    targets = [path] + [path.with_name(stem + ending) for ending in _DETACHED_DATA_SUFFIXES.get(suffix, ())]
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


def _read_dicom_series(folder: Path, series_uid: Optional[str]) -> sitk.Image:
    series = dicom_series_in_folder(folder)
    if not series:
        raise InputImageError(
            f"No DICOM series found in folder '{folder}' (subfolders are not searched). Point to the folder "
            f"that directly holds the slice files of one series, or to an image file. Supported inputs: "
            f"{SUPPORTED_INPUTS}."
        )
    if series_uid is None:
        if len(series) > 1:
            listing = "\n".join(f"  {_describe_series(uid, files)}" for uid, files in series.items())
            raise InputImageError(
                f"Folder '{folder}' holds {len(series)} DICOM series:\n{listing}\n"
                "Pick one by passing its UID as series_uid, or move each series into its own folder."
            )
        series_uid = next(iter(series))
    if series_uid not in series:
        raise InputImageError(
            f"DICOM series '{series_uid}' is not in folder '{folder}'. Series found: "
            f"{', '.join(repr(uid) for uid in series)}. Pass one of these as series_uid."
        )
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(series[series_uid])
    try:
        return reader.Execute()  # GDCM applies Rescale Slope/Intercept: CT values come out in HU
    except RuntimeError as exc:
        raise InputImageError(
            f"Cannot read DICOM series '{series_uid}' in '{folder}': {_itk_reason(exc)}. The series may be "
            "incomplete or use an unsupported encoding; export it again from the PACS or convert it with dcm2niix."
        ) from exc


def _describe_series(uid: str, files: list[str]) -> str:
    description = ""
    reader = sitk.ImageFileReader()
    reader.SetFileName(files[0])
    try:
        reader.ReadImageInformation()
        if reader.HasMetaDataKey(_SERIES_DESCRIPTION_TAG):
            description = reader.GetMetaData(_SERIES_DESCRIPTION_TAG).strip()
    except RuntimeError as exc:  # only for the listing: show why the description is missing
        description = f"description unreadable: {_itk_reason(exc)}"
    return f"series_uid={uid!r}: {len(files)} files" + (f", '{description}'" if description else "")


def _itk_reason(exc: RuntimeError) -> str:
    """The informative last line of a SimpleITK/ITK exception text."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _check_nifti_complete(path: Path) -> None:
    """Raise InputImageError if a NIfTI file holds fewer voxel bytes than its header declares.

    ITK's NIfTI reader fills a truncated file's missing voxels with zeros without any error (seen with
    SimpleITK 2.5 on a half-length ``.nii.gz``), so the length is checked here from the header fields
    ``dim``, ``bitpix`` and ``vox_offset`` (NIfTI-1 and NIfTI-2 layouts).
    """
    try:
        with open(path, "rb") as stream:
            compressed = stream.read(2) == _GZIP_MAGIC  # ITK also reads a misnamed, uncompressed .nii.gz
        if compressed:
            with gzip.open(path, "rb") as stream:
                header = stream.read(540)
                total = len(header) + _count_remaining_bytes(stream)
        else:
            with open(path, "rb") as stream:
                header = stream.read(540)
            total = path.stat().st_size
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise InputImageError(
            f"Cannot read '{path}' ({exc}): the gzip stream is corrupt or truncated, or the file is not readable. "
            "It was cut short (interrupted copy or download), is not a .nii.gz file, or lacks read permission; "
            "copy it again from the original."
        ) from exc
    fields = _nifti_layout(header)
    if fields is None:
        raise InputImageError(
            f"'{path}' is not a NIfTI file (no valid NIfTI-1/NIfTI-2 header) despite its name. Give a real "
            f"image file; supported inputs: {SUPPORTED_INPUTS}."
        )
    vox_offset, n_voxels, bitpix = fields
    needed = vox_offset + n_voxels * bitpix // 8
    if total < needed:
        raise InputImageError(
            f"'{path}' is truncated: its header declares {needed} bytes (header + voxels) but the file holds "
            f"only {total}. Copy or export the image again from the original."
        )


def _count_remaining_bytes(stream) -> int:
    count = 0
    while True:
        chunk = stream.read(_GZIP_CHUNK_BYTES)
        if not chunk:
            return count
        count += len(chunk)


def _nifti_layout(header: bytes) -> Optional[tuple[int, int, int]]:
    """(vox_offset, voxel count, bitpix) from a NIfTI-1 or NIfTI-2 header, or None if it is not one."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            offset = struct.unpack(endian + "f", header[108:112])[0]
            if not np.isfinite(offset):
                return None
            vox_offset = int(offset)
            break
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            bitpix = struct.unpack(endian + "h", header[14:16])[0]
            dims = struct.unpack(endian + "8q", header[16:80])
            vox_offset = struct.unpack(endian + "q", header[168:176])[0]
            break
    else:
        return None
    n_dims = dims[0]
    if not 1 <= n_dims <= 7 or bitpix <= 0:
        return None
    n_voxels = int(np.prod([max(int(d), 1) for d in dims[1 : n_dims + 1]], dtype=np.int64))
    return vox_offset, n_voxels, bitpix
