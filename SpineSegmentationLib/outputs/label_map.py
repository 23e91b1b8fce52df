"""``labels.nii.gz``: the label map on the input grid, VerSe numbers, int16."""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk


def write_label_map(labels: sitk.Image, path: Path) -> None:
    """Write ``labels`` as an int16 NIfTI (compressed) with its own geometry (the input grid).

    Args:
        labels: integer label map, VerSe numbers (0 = background).
        path: output file (``.nii.gz``).
    """
    if labels.GetPixelID() != sitk.sitkInt16:
        labels = sitk.Cast(labels, sitk.sitkInt16)
    sitk.WriteImage(labels, str(path), useCompression=True)
