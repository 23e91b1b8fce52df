"""HU-based surface refinement of vertebra masks in CT (seed 002, section 3.1).

"The segmentation masks are additionally refined in CT scans by removing voxels below 200 HU from the surface
of each vertebra." Surface voxels (6-connected boundary of a vertebra's mask) below the threshold are peeled
off, repeatedly, up to ``max_depth_mm`` deep, so that soft tissue and disc voxels at the border go while the
cortical shell (well above 200 HU) stops the peeling and trabecular bone inside is never touched.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Paper's threshold (seed 002, section 3.1).
SURFACE_THRESHOLD_HU = 200.0
#: How deep the peeling may go (ours: about the partial-volume blur of a CT at 1-3 mm).
MAX_DEPTH_MM = 3.0


def refine_surfaces(
    labels: np.ndarray,
    hu: np.ndarray,
    spacing_mm: tuple[float, float, float],
    threshold_hu: float = SURFACE_THRESHOLD_HU,
    max_depth_mm: float = MAX_DEPTH_MM,
) -> np.ndarray:
    """Remove surface voxels below ``threshold_hu`` from every labelled vertebra.

    Args:
        labels: integer label map, any axis order, 0 = background.
        hu: CT intensities in HU on the same grid as ``labels``.
        spacing_mm: voxel spacing along the array's axes (same order), mm.
        threshold_hu: surface voxels below this are removed (paper: 200 HU).
        max_depth_mm: maximal peeling depth; the number of peeling passes is
            ``ceil(max_depth_mm / min(spacing_mm))``.

    Returns:
        A new label map (same dtype); ``labels`` is not modified. A vertebra is never removed entirely: if
        peeling would empty it, it is kept as it was.

    Raises:
        ValueError: if the shapes differ.
    """
    if labels.shape != hu.shape:
        raise ValueError(f"labels {labels.shape} and HU image {hu.shape} must have the same shape")
    out = labels.copy()
    passes = max(1, int(np.ceil(max_depth_mm / min(spacing_mm))))
    structure = ndimage.generate_binary_structure(3, 1)
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        region, values = out[box], hu[box]
        mask = region == label
        original = mask.copy()
        low = values < threshold_hu
        for _ in range(passes):
            surface = mask & ~ndimage.binary_erosion(mask, structure, border_value=0)
            peel = surface & low
            if not peel.any():
                break
            mask &= ~peel
        if not mask.any():
            continue
        region[original & ~mask] = 0
    return out
