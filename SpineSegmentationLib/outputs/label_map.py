"""``labels.nii.gz``: the label map on the input grid, VerSe numbers, int16."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import SimpleITK as sitk

from ..io import scan_nifti


def write_label_map(labels: sitk.Image, path: Path) -> None:
    """Write ``labels`` as an int16 NIfTI (compressed) with its own geometry (the input grid), and check it.

    ITK's NIfTI writer reports neither a full disk nor a failed write of the voxels (it prints "NWAD: wrote only
    0 of N bytes" and returns), so the written file is read back once in chunks (:func:`io.scan_nifti`) and
    must hold every byte its header declares.

    Args:
        labels: integer label map, VerSe numbers (0 = background).
        path: output file (``.nii.gz``).

    Raises:
        OSError: the file cannot be written or came out short (``errno.ENOSPC``: the disk is probably full).
    """
    if labels.GetPixelID() != sitk.sitkInt16:
        labels = sitk.Cast(labels, sitk.sitkInt16)
    try:
        sitk.WriteImage(labels, str(path), useCompression=True)
    except RuntimeError as exc:  # ITK says why in its text only: give the OS's reason where there is one
        raise OSError(errno.EIO, f"ITK could not write the label map ({str(exc).strip().splitlines()[-1]})",
                      str(path)) from exc
    try:
        scan = scan_nifti(path)
    except (EOFError, OSError) as exc:
        raise OSError(errno.ENOSPC, f"the written file is cut short ({exc}); the disk is probably full",
                      str(path)) from exc
    if scan is None or scan.total_bytes < scan.needed_bytes:
        written = 0 if scan is None else scan.total_bytes
        raise OSError(errno.ENOSPC, f"only {written} of {scan.needed_bytes if scan else '?'} bytes were written; "
                      "the disk is probably full", os.fspath(path))
