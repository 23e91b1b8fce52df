"""A scan's content rotated inside its own grid, as a patient lying obliquely (shared by the pose tests)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk


def tilt_about_ap(image: sitk.Image, degrees: float) -> sitk.Euler3DTransform:
    """Rotation by ``degrees`` about the LPS anterior-posterior (y) axis through the centre of ``image``: resampling
    ``image`` with it tilts its content in the coronal plane; its inverse maps a result back."""
    size = np.array(image.GetSize())
    tilt = sitk.Euler3DTransform()
    tilt.SetCenter(image.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2.0).tolist()))
    tilt.SetRotation(0.0, np.deg2rad(degrees), 0.0)
    return tilt


def tilted(image: sitk.Image, tilt: sitk.Transform, labels: bool = False) -> sitk.Image:
    """``image`` resampled with ``tilt`` on its own grid: linear with the scan's minimum outside, or nearest
    neighbour with 0 outside for a label map."""
    if labels:
        return sitk.Resample(image, image, tilt, sitk.sitkNearestNeighbor, 0)
    return sitk.Resample(image, image, tilt, sitk.sitkLinear, float(sitk.GetArrayViewFromImage(image).min()))
