"""HU-based surface refinement of vertebra masks in CT (seed 002, section 3.1).

"The segmentation masks are additionally refined in CT scans by removing voxels below 200 HU from the surface
of each vertebra." Voxels below the threshold are peeled off from the surface inwards: a voxel goes when it is
below the threshold, at most ``max_depth_mm`` from the outside of the vertebra's mask (Euclidean distance in mm,
so the depth is the same along every axis of an anisotropic grid), and connected to the outside through voxels
that go too. Soft tissue and disc voxels at the border go, while the cortical shell (well above 200 HU) stops the
peeling and trabecular bone inside is never touched. The depth is measured between voxel centres, so the outermost
layer is one voxel deep: on slices thicker than ``max_depth_mm`` (:data:`MAX_DEPTH_MM`, 3 mm) a mask's top and
bottom faces are peeled only within ``max_depth_mm`` of its sides.
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
        max_depth_mm: maximal peeling depth below the surface, in mm along any direction, between voxel centres
            (the outermost layer is one voxel deep).

    Returns:
        A new label map (same dtype); ``labels`` is not modified. A vertebra is never removed entirely: if
        peeling would empty it, it is kept as it was.

    Raises:
        ValueError: if the shapes differ.
    """
    if labels.shape != hu.shape:
        raise ValueError(f"labels {labels.shape} and HU image {hu.shape} must have the same shape")
    out = labels.copy()
    cross = ndimage.generate_binary_structure(3, 1)
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        region, values = out[box], hu[box]
        mask = region == label
        # depth of every voxel below the vertebra's surface, in mm (the outermost layer is one voxel deep)
        depth = ndimage.distance_transform_edt(np.pad(mask, 1), sampling=spacing_mm)[1:-1, 1:-1, 1:-1]
        peelable = mask & (values < threshold_hu) & (depth <= max_depth_mm * (1 + 1e-9))
        surface = mask & ~ndimage.binary_erosion(mask, cross, border_value=0)
        peel = ndimage.binary_propagation(peelable & surface, structure=cross, mask=peelable)
        if peel.any() and not np.array_equal(peel, mask):  # a vertebra is never removed entirely
            region[peel] = 0
    return out
