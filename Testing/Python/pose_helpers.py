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
