"""Data augmentation of training patches (seed 002, section 3.6: random elastic deformations, Gaussian noise,
Gaussian smoothing and random cropping along the z-axis; plus in-plane fields of view around the spine, thick
slices, a random intensity scaling, random poses and simulated traversal errors in the instance memory). The
elastic deformation, thick slices, smoothing and noise are TorchIO's transforms (:func:`patch_augmentation`).

All functions take a ``numpy.random.Generator`` and work on canonical [z, y, x] arrays in the normalized
intensity units of :func:`~SpineSegmentationLib.preprocessing.normalize_hu` (HU / ``hu_scale``).
"""

from __future__ import annotations

import numpy as np
import torch
import torchio as tio
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


#: In-plane fields of view around the spine (ours; not in the paper, whose CTs were whole cross-sections): widths
#: and depths (mm) of CTs reconstructed around the spine, as the robustness benchmark cuts them
#: (``robustness_levels.py --fields-of-view``: 200 x 160 down to 60 mm slabs). The crop's centre lies within this
#: distance (mm) of the target's.
FOV_CROP_MM = (60.0, 160.0)
FOV_CROP_OFFSET_MM = 20.0


def random_fov_crop(shape: tuple[int, int, int], centre: np.ndarray, spacing_mm: float, rng: np.random.Generator
                    ) -> tuple[slice, slice]:
    """A random field of view cut around the spine in the axial plane.

    One of three, alike likely: left-right only, front-back only, or both; each cut axis keeps a width drawn
    uniformly from :data:`FOV_CROP_MM`, centred within :data:`FOV_CROP_OFFSET_MM` of ``centre``.

    Args:
        shape: the volume's [z, y, x] shape.
        centre: [z, y, x] voxel the field of view is cut around (a vertebra's centre).
        spacing_mm: the volume's isotropic spacing.

    Returns:
        ``(y, x)``: the slices that stay (within the volume; the whole axis where it is not cut). The sides of the
        field of view that cut through the body are then extended as in inference (:class:`~.sampler.PatchSampler`,
        ``preprocessing.extend_cut_sides``).
    """
    axes = ((1,), (2,), (1, 2))[int(rng.integers(0, 3))]
    out = [slice(0, shape[1]), slice(0, shape[2])]
    for axis in axes:
        width = int(round(rng.uniform(*FOV_CROP_MM) / spacing_mm))
        middle = centre[axis] + rng.uniform(-FOV_CROP_OFFSET_MM, FOV_CROP_OFFSET_MM) / spacing_mm
        start = int(np.clip(round(middle - width / 2), 0, max(shape[axis] - width, 0)))
        out[axis - 1] = slice(start, min(start + width, shape[axis]))
    return out[0], out[1]


#: Elastic deformation (seed 002, section 3.6): B-spline control points per axis, largest displacement (voxels),
#: share of patches deformed.
ELASTIC_CONTROL_POINTS = 5
ELASTIC_MAX_DISPLACEMENT_VOXELS = 3.0
ELASTIC_PROBABILITY = 0.3
#: Thick slices (not in seed 002): in this share of patches the image is smoothed along z as a slice of this many
#: voxels integrates (a Gaussian slice profile whose full width at half maximum is the slice thickness), then
#: sampled at that spacing and interpolated back (TorchIO's RandomAnisotropy). At the 2.5 mm training grid 1.5-2.5
#: gives 3.75-6.25 mm slices: clinical chest CTs are often reconstructed at 5 mm (the pyradiomics CT), where
#: thoracic discs (3-6 mm) and the ribs of single vertebrae fall out of view (Docs/model-development.md, image quality).
THICK_SLICE_FACTOR = (1.5, 2.5)
THICK_SLICE_PROBABILITY = 0.25
#: Full width at half maximum of a Gaussian per standard deviation, 2 sqrt(2 ln 2).
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
#: Gaussian smoothing (seed 002, section 3.6): sigma range (voxels) per axis, and share of patches smoothed (a softer
#: reconstruction kernel).
BLUR_SIGMA_VOXELS = (0.3, 1.0)
BLUR_PROBABILITY = 0.5
#: Gaussian noise (seed 002, section 3.6): the noise's standard deviation is drawn up to this (HU).
MAX_NOISE_HU = 40.0


def patch_augmentation(hu_scale: float) -> tio.Compose:
    """The elastic, thick-slice, smoothing and noise augmentation of a training patch, as TorchIO transforms.

    Applied by :func:`augment_patch`. The elastic deformation moves the image and the instance memory and target
    masks together (the masks by nearest neighbour); the others change the image only. Parameters: the module
    constants above (seed 002, section 3.6 names the elastic deformation, the smoothing and the noise, not their
    ranges: those are ours).

    Args:
        hu_scale: the normalization scale (HU per normalized unit), to express the noise in HU.
    """
    return tio.Compose([
        tio.RandomElasticDeformation(num_control_points=ELASTIC_CONTROL_POINTS,
                                     max_displacement=ELASTIC_MAX_DISPLACEMENT_VOXELS, locked_borders=2,
                                     p=ELASTIC_PROBABILITY),
        tio.Compose([
            tio.RandomBlur(std=tuple(f / FWHM_PER_SIGMA for f in THICK_SLICE_FACTOR) + (0, 0, 0, 0)),
            tio.RandomAnisotropy(axes=(0,), downsampling=THICK_SLICE_FACTOR),
        ], p=THICK_SLICE_PROBABILITY),
        tio.RandomBlur(std=BLUR_SIGMA_VOXELS, p=BLUR_PROBABILITY),
        tio.RandomNoise(std=(0.0, MAX_NOISE_HU / hu_scale)),
    ])


def augment_patch(image: np.ndarray, memory: np.ndarray, target: np.ndarray, rng: np.random.Generator,
                  transform: tio.Compose, hu_scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Augment one training patch: ``transform`` (:func:`patch_augmentation`), then a random intensity scaling
    (x0.9-1.1) and shift (+-30 HU).

    Args:
        image: float [z, y, x] patch in normalized units (HU / ``hu_scale``); its voxels are 1 unit apart (the
            training grid), so the transforms' millimetres are voxels.
        memory, target: bool [z, y, x] masks of the same shape (instance memory, target vertebra).
        rng: draws the seed of the transforms' random parameters (TorchIO draws them from torch's generator, which
            is forked and seeded here, so a patch depends on ``rng`` alone and torch's global state is untouched).
        transform: from :func:`patch_augmentation`.
        hu_scale: HU per normalized unit.

    Returns:
        ``(image, memory, target)``: new float32 image and bool masks.
    """
    subject = tio.Subject(
        image=tio.ScalarImage(tensor=torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]),
        memory=tio.LabelMap(tensor=torch.from_numpy(memory.astype(np.uint8))[None]),
        target=tio.LabelMap(tensor=torch.from_numpy(target.astype(np.uint8))[None]),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(2 ** 31)))
        out = transform(subject)
    augmented = out["image"].data[0].numpy() * rng.uniform(0.9, 1.1) + rng.uniform(-30, 30) / hu_scale
    return (augmented.astype(np.float32), out["memory"].data[0].numpy() > 0, out["target"].data[0].numpy() > 0)


def random_pose(rng: np.random.Generator, max_degrees: float = 20.0, max_scale: float = 0.1,
                flip_probability: float = 0.5) -> np.ndarray:
    """A random patch pose: rotation about each axis, isotropic scaling and a left-right mirror.

    Real scans are tilted (patient positioning, scoliosis, kyphosis) and mirrored exports exist; the
    vertebral level does not change under either, so the network must not depend on them. Not in seed 002
    (its augmentation is elastic, noise, smoothing and z-crops); added because on the shipped model a 20 degree
    tilt shifted every level by one (issue 10).

    Args:
        max_degrees: rotation angles uniform in [-max_degrees, max_degrees] about the z, y and x axes.
        max_scale: isotropic scale uniform in [1 - max_scale, 1 + max_scale] (patient size, spacing errors).
        flip_probability: chance of mirroring the x (left-right) axis.

    Returns:
        3x3 matrix M acting on [z, y, x] voxel offsets: a patch voxel at offset ``o`` from the patch centre
        samples the volume at ``centre + M @ o``.
    """
    angles = np.deg2rad(rng.uniform(-max_degrees, max_degrees, size=3))
    matrix = np.eye(3)
    for axis, angle in enumerate(angles):  # rotation in the plane of the two other axes
        a, b = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[a, a] = r[b, b] = np.cos(angle)
        r[a, b], r[b, a] = -np.sin(angle), np.sin(angle)
        matrix = matrix @ r
    matrix = matrix * rng.uniform(1.0 - max_scale, 1.0 + max_scale)
    if rng.random() < flip_probability:
        matrix = matrix @ np.diag([1.0, 1.0, -1.0])
    return matrix


def resample_patch(array: np.ndarray, centre: np.ndarray, matrix: np.ndarray, size: int, order: int,
                   fill: float) -> np.ndarray:
    """The cubic patch of edge ``size`` around ``centre`` ([z, y, x] voxels) in the pose ``matrix``
    (:func:`random_pose`), by ``scipy.ndimage.affine_transform``.

    Patch voxel ``o`` (0..size-1 per axis) samples ``array`` at ``centre + matrix @ (o - size // 2)``, so the
    identity matrix gives exactly ``array[centre - size // 2 : centre - size // 2 + size]``.

    Args:
        order: interpolation order (1 for images, 0 for label maps).
        fill: value outside ``array``.
    """
    half = np.full(3, size // 2, dtype=float)
    offset = np.asarray(centre, dtype=float) - matrix @ half
    return ndimage.affine_transform(array, matrix, offset=offset, output_shape=(size,) * 3, order=order,
                                    mode="constant", cval=fill, prefilter=False)


def source_z(centre: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The volume z coordinate (voxels) that each patch voxel samples, shape (size, size, size)."""
    o = np.arange(size, dtype=float) - size // 2
    row = matrix[0]
    return (centre[0] + row[0] * o[:, None, None] + row[1] * o[None, :, None] + row[2] * o[None, None, :])


def count_inside_patch(points: np.ndarray, centre: np.ndarray, matrix: np.ndarray, size: int) -> int:
    """How many volume voxels ``points`` (N x 3, [z, y, x]) fall inside the posed patch (nearest-voxel rule)."""
    o = np.linalg.solve(matrix, (np.asarray(points, dtype=float) - np.asarray(centre, dtype=float)).T).T
    o = np.rint(o) + size // 2
    return int(np.all((o >= 0) & (o < size), axis=1).sum())


def perturb_memory(memory: np.ndarray, target: np.ndarray, previous: np.ndarray, rng: np.random.Generator,
                   direction: str = "up", max_fraction: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Simulate the traversal's own errors in the instance memory, so that one wrong instance does not shift
    every instance after it (not in seed 002; added because on real thoracic CT a truncated first vertebra that
    took half of the next one misaligned the whole column, issue 10).

    One of two errors, with equal probability:

    - **overgrowth**: the previous instance took the near part of the target vertebra (the caudal
      ``f`` of its height for ``"up"``, the cranial ``f`` for ``"down"``): those voxels move into the memory and
      out of the target; the network must segment the rest of the same vertebra, not jump to the next;
    - **undergrowth**: the previous instance missed the far part of its vertebra (its cranial ``f`` for
      ``"up"``): those voxels leave the memory and stay background; the network must not add them to the target.

    Args:
        memory, target, previous: bool [z, y, x] patch masks (the vertebrae before the target, the target, and the
            vertebra just before the target in traversal order, which is part of ``memory``).
        direction: traversal direction, "up" (bottom-up) or "down".
        max_fraction: ``f`` is uniform in [0.1, max_fraction] of the vertebra's extent along z.

    Returns:
        The perturbed ``(memory, target)``; the inputs are not modified.
    """
    memory, target = memory.copy(), target.copy()
    fraction = rng.uniform(0.1, max_fraction)
    overgrowth = rng.random() < 0.5
    mask = target if overgrowth else previous
    zs = np.nonzero(mask.any(axis=(1, 2)))[0]
    if zs.size == 0:
        return memory, target
    height = zs[-1] - zs[0] + 1
    near_is_low = (direction == "up") == overgrowth  # up: the target's caudal part, the previous one's cranial part
    cut = int(round(fraction * height))
    part = np.zeros(mask.shape, dtype=bool)
    if near_is_low:
        part[: zs[0] + cut] = True
    else:
        part[zs[-1] + 1 - cut:] = True
    part &= mask
    if overgrowth:
        memory |= part
        target &= ~part
    else:
        memory &= ~part
    return memory, target
