"""A scan's content rotated inside its own grid, as a patient lying obliquely (shared by the pose tests and
``Testing/benchmarks/robustness_pose.py``)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

#: LPS axis indices for :func:`rotation`.
LEFT_RIGHT, ANTERIOR_POSTERIOR, SUPERIOR_INFERIOR = 0, 1, 2


def rotation(image: sitk.Image, lps_axis: int, degrees: float) -> sitk.Euler3DTransform:
    """Rotation by ``degrees`` about LPS axis ``lps_axis`` (0 x, 1 y, 2 z) through the centre of ``image``:
    resampling ``image`` with it rotates its content; its inverse maps a result back."""
    size = np.array(image.GetSize())
    angles = [0.0, 0.0, 0.0]
    angles[lps_axis] = np.deg2rad(degrees)
    transform = sitk.Euler3DTransform()
    transform.SetCenter(image.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2.0).tolist()))
    transform.SetRotation(*angles)
    return transform


def tilted(image: sitk.Image, tilt: sitk.Transform, labels: bool = False) -> sitk.Image:
    """``image`` resampled with ``tilt`` on its own grid: linear with the scan's minimum outside, or nearest
    neighbour with 0 outside for a label map."""
    if labels:
        return sitk.Resample(image, image, tilt, sitk.sitkNearestNeighbor, 0)
    return sitk.Resample(image, image, tilt, sitk.sitkLinear, float(sitk.GetArrayViewFromImage(image).min()))


def obliquely_stored(image: sitk.Image, lps_axis: int, degrees: float, labels: bool = False) -> sitk.Image:
    """The same anatomy on a grid turned by ``degrees`` about LPS axis ``lps_axis`` through the scan's centre (an
    oblique reformat): the spacing kept, the grid large enough for the whole scan, its corners outside the scan
    filled with air (-1024 HU; 0 for a label map, resampled by nearest neighbour)."""
    size, spacing = np.array(image.GetSize()), np.array(image.GetSpacing())
    turn = np.array(rotation(image, lps_axis, degrees).GetMatrix()).reshape(3, 3)
    direction = turn @ np.array(image.GetDirection()).reshape(3, 3)
    new_size = np.ceil(np.abs(turn) @ (size * spacing) / spacing).astype(int)
    centre = np.array(image.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2.0).tolist()))
    grid = sitk.Image([int(n) for n in new_size], image.GetPixelID())
    grid.SetSpacing(spacing.tolist())
    grid.SetDirection(direction.ravel().tolist())
    grid.SetOrigin((centre - direction @ ((new_size - 1) / 2.0 * spacing)).tolist())
    if labels:
        return sitk.Resample(image, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear, -1024.0)
