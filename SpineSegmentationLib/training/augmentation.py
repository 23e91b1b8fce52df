"""Data augmentation of training patches (seed 002, section 3.6: random elastic deformations, Gaussian noise,
Gaussian smoothing and random cropping along the z-axis; plus a random intensity scaling).

All functions take a ``numpy.random.Generator`` and work on canonical [z, y, x] arrays in the normalized
intensity units of :func:`~SpineSegmentationLib.preprocessing.normalize_hu` (HU / ``hu_scale``).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def random_z_crop(depth: int, rng: np.random.Generator, min_keep: int, probability: float = 0.3) -> tuple[int, int]:
    """A random truncated field of view along z (superior-inferior axis).

    Args:
        depth: number of slices of the volume (axis 0).
        min_keep: minimal number of slices kept.
        probability: chance of cropping at all.

    Returns:
        ``(z0, z1)``: slices ``z0 <= z < z1`` stay; ``(0, depth)`` when not cropped. Everything outside must be
        set to air / label 0 **and the completeness target recomputed** (vertebrae cut by the new border are
        incomplete): :class:`~.sampler.PatchSampler` does both.
    """
    if depth <= min_keep or rng.random() >= probability:
        return 0, depth
    keep = int(rng.integers(min_keep, depth + 1))
    z0 = int(rng.integers(0, depth - keep + 1))
    return z0, z0 + keep


def elastic_field(shape: tuple[int, ...], rng: np.random.Generator, max_displacement: float = 3.0,
                  control_points: int = 4) -> np.ndarray:
    """Smooth random displacement field (voxels), shape (3, *shape): random displacements on a coarse
    ``control_points^3`` grid, linearly up-sampled (cubic splines cost 10x more on 2 CPU cores)."""
    coarse = rng.uniform(-max_displacement, max_displacement, size=(3,) + (control_points,) * 3)
    zoom = [s / control_points for s in shape]
    return np.stack([ndimage.zoom(c, zoom, order=1, mode="nearest")[: shape[0], : shape[1], : shape[2]] for c in coarse])


def elastic_deform(arrays: list[np.ndarray], orders: list[int], fills: list[float], field: np.ndarray) -> list[np.ndarray]:
    """Warp several arrays of the same shape with one displacement ``field`` (from :func:`elastic_field`).

    Args:
        orders: interpolation order per array (1 for images, 0 for masks).
        fills: value outside the array per array (pad value for images, 0 for masks).
    """
    grid = np.indices(arrays[0].shape, dtype=np.float32) + field.astype(np.float32)
    return [
        ndimage.map_coordinates(a, grid, order=o, mode="constant", cval=c).astype(a.dtype)
        for a, o, c in zip(arrays, orders, fills)
    ]


def intensity_augment(image: np.ndarray, rng: np.random.Generator, hu_scale: float) -> np.ndarray:
    """Random intensity scaling (x0.9-1.1, shift +-30 HU), Gaussian smoothing (sigma 0-1 voxel, half of the
    time) and Gaussian noise (sigma 0-40 HU); returns a new float32 array."""
    out = image * rng.uniform(0.9, 1.1) + rng.uniform(-30, 30) / hu_scale
    if rng.random() < 0.5:
        out = ndimage.gaussian_filter(out, rng.uniform(0.3, 1.0))
    out = out + rng.normal(0.0, rng.uniform(0, 40) / hu_scale, size=out.shape)
    return out.astype(np.float32)
