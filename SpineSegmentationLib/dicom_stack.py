"""Is a stack of DICOM images (the slice files of a series, or the frames of one multi-frame file) one even grid?

A reader builds one grid from the first image's orientation and pixel spacing and the distance of the first two
positions, and raises no error where the stack is not that grid: a missing image (ITK warns "Non uniform sampling"
and stretches the stack over the whole range), a spacing that changes along the stack, a gantry tilt (images
shifted in-plane along the stack), or images of another orientation, pixel spacing or matrix (a localizer, another
reconstruction under the same series UID, a second stack in a multi-frame file). :func:`check_even_stack` compares
the headers first and names what is wrong, with the fix.

Geometry is DICOM's patient coordinate system (LPS mm): Image Orientation (Patient) (0020,0037), Image Position
(Patient) (0020,0032), Pixel Spacing (0028,0030), Rows and Columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import InputImageError
from .validation import DIRECTION_TOLERANCE

#: Largest relative deviation of one image distance from the stack's median before the stack is refused as having
#: a missing or duplicated image (scanners store positions to 0.001 mm; a missing image doubles one distance).
SLICE_GAP_TOLERANCE = 0.1

#: Two images closer than this along the normal (mm) lie at the same position (scanners store positions to 0.001 mm).
SAME_POSITION_MM = 0.01

__all__ = ["Plane", "SAME_POSITION_MM", "SLICE_GAP_TOLERANCE", "check_even_stack", "sorted_along_normal"]


@dataclass(frozen=True)
class Plane:
    """One image of a stack, as its header places it.

    Attributes:
        name: how a message names it, e.g. ``"CT0001.dcm (slice 0)"`` or ``"frame 7"``.
        direction: 3x3 direction cosines, columns: along a row (i), along a column (j), the normal (i x j).
        pixel_spacing: (along i, along j) in mm.
        matrix: (columns, rows).
        position: the centre of its first pixel, LPS mm.
    """

    name: str
    direction: np.ndarray
    pixel_spacing: tuple[float, float]
    matrix: tuple[int, int]
    position: np.ndarray


#: What a mixed, uneven stack usually is, and the fix, for a series of files and for one multi-frame file.
_CAUSES = {
    "series": {
        "unit": "slice",
        "mixed": "e.g. a localizer or another reconstruction stored under the same series UID. Export the axial CT "
                 "series alone (or move the other files out of the folder).",
        "uneven": "A slice is missing or duplicated, or two reconstructions share one series UID (an anonymised "
                  "export), and reading it would stretch the anatomy. Export the complete series again, or convert "
                  "it with dcm2niix, which resamples to even slices and says so.",
    },
    "multiframe": {
        "unit": "frame",
        "mixed": "e.g. several reconstructions (an axial and a coronal stack) in one file. Convert it with dcm2niix, "
                 "which writes each stack to its own file, and segment the axial one.",
        "uneven": "A frame is missing, or the file holds several phases or stacks at the same positions (e.g. a "
                  "cardiac or perfusion series), and reading it as one volume would stretch the anatomy. Convert it "
                  "with dcm2niix, which writes each phase and stack to its own file.",
    },
}


def sorted_along_normal(planes: Sequence[Plane]) -> list[int]:
    """Indices of ``planes`` in the order of their positions along the first one's normal (lowest first)."""
    normal = planes[0].direction[:, 2]
    return sorted(range(len(planes)), key=lambda i: float(planes[i].position @ normal))


def check_even_stack(planes: Sequence[Plane], source: str, kind: str = "series") -> float:
    """The distance (mm) between neighbouring images of a stack sorted along its normal; refuse any other stack.

    Checked, in this order:

    * orientation (within :data:`~SpineSegmentationLib.validation.DIRECTION_TOLERANCE`), pixel spacing (1e-4
      relative) and matrix size equal to the first image's;
    * no two images at the same position (:data:`SAME_POSITION_MM`: a duplicate, or several phases or stacks);
    * neighbouring distances along the normal within :data:`SLICE_GAP_TOLERANCE` of their median;
    * every position within :data:`SLICE_GAP_TOLERANCE` of a distance from the even grid between the first and
      the last image (a slowly changing spacing adds up along the stack);
    * the stack's in-plane shift from its first to its last image at most half a pixel (a gantry tilt: a reader
      would misplace the far end by that much).

    Args:
        planes: the images in stack order (at least two), sorted along the first one's normal.
        source: the stack as a message names it, e.g. ``"The DICOM series in 'ct/'"``.
        kind: ``"series"`` (slice files) or ``"multiframe"`` (frames of one file): the words and fixes used.

    Raises:
        InputImageError: the stack is not one even, upright grid, naming the first offending image and the fix.
    """
    causes = _CAUSES[kind]
    unit = causes["unit"]
    first = planes[0]
    for plane in planes[1:]:
        differs = [what for what, same in (
            ("orientation", np.allclose(plane.direction, first.direction, atol=DIRECTION_TOLERANCE)),
            ("pixel spacing", np.allclose(plane.pixel_spacing, first.pixel_spacing, rtol=1e-4)),
            ("matrix size", tuple(plane.matrix) == tuple(first.matrix))) if not same]
        if differs:
            raise InputImageError(
                f"{source} mixes {unit}s: {plane.name} has another {' and '.join(differs)} than {first.name}, "
                f"{causes['mixed']}"
            )
    normal = first.direction[:, 2]
    positions = np.array([plane.position for plane in planes], dtype=float)
    depth = positions @ normal
    gaps = np.abs(np.diff(depth))
    same = np.flatnonzero(gaps < SAME_POSITION_MM)
    if same.size:
        raise InputImageError(
            f"{source} has {same.size + 1 if same.size == 1 else f'{same.size} pairs of'} {unit}s at the same "
            f"position, e.g. {planes[same[0]].name} and {planes[same[0] + 1].name}. {causes['uneven']}"
        )
    typical = float(np.median(gaps))
    uneven = np.flatnonzero(np.abs(gaps - typical) > SLICE_GAP_TOLERANCE * typical)
    if uneven.size:
        where = ", ".join(f"{gaps[i]:.2f} mm between {planes[i].name} and {planes[i + 1].name}" for i in uneven[:3])
        raise InputImageError(
            f"{source} has uneven {unit} positions: {where} (the others {typical:.2f} mm apart). {causes['uneven']}"
        )
    stack = positions[-1] - positions[0]
    along = float(abs(stack @ normal))
    shift = float(np.linalg.norm(stack - (stack @ normal) * normal))
    if shift > 0.5 * min(first.pixel_spacing):
        raise InputImageError(
            f"{source} is tilted: its {unit}s shift {shift:.1f} mm sideways over the {along:.0f} mm of the stack (a "
            f"gantry tilt of {np.degrees(np.arctan2(shift, along)):.1f} degrees), which the reader would ignore and "
            "so misplace the anatomy by up to that much. Convert it with dcm2niix, which corrects gantry tilt, or load "
            "it in 3D Slicer with the DICOM module's acquisition geometry regularization and save the volume."
        )
    even = positions[0] + np.outer(np.arange(len(planes)) / (len(planes) - 1), stack)
    off = np.linalg.norm(positions - even, axis=1)
    worst = int(np.argmax(off))
    if off[worst] > SLICE_GAP_TOLERANCE * typical:
        raise InputImageError(
            f"{source} has a {unit} spacing that changes along the stack: {planes[worst].name} lies "
            f"{off[worst]:.2f} mm from where even {unit}s ({along / (len(planes) - 1):.3f} mm apart) would put it, so "
            f"reading it as one grid would misplace the anatomy. Convert it with dcm2niix, which resamples to even "
            f"{unit}s and says so, or export a reconstruction with one {unit} spacing."
        )
    return typical
