"""Training patches for the iterative FCN (seed 002, section 3.6).

Each sample: a random scan; with probability ``1 - random_patch_fraction`` a random vertebra visible in it
and a patch centre drawn uniformly inside that vertebra's bounding box, otherwise a centre anywhere in the
scan. For a vertebra patch:

- **instance memory** = the reference masks of the vertebrae that come *before* the target in traversal
  order (``"up"``: all more caudal vertebrae, i.e. larger :func:`~SpineSegmentationLib.anatomy.column_position`;
  ``"down"``: all more cranial ones),
- **target mask** = the target vertebra only,
- **label target** = its position on the 1..24 scale (T13 = 19.5, L6 = 24.5),
- **completeness target** = 1 iff at most ``completeness_tolerance`` (2 %) of the vertebra's reference volume
  lies outside the patch and the vertebra is not cut by the scan's field of view (it touches no face of the
  volume, after any random z-crop).

With probability ``fov_crop_probability`` the scan is first cut to an in-plane field of view around the target
(:func:`~.augmentation.random_fov_crop`) and its sides that cut through the body extended as the pipeline extends
them (``preprocessing.extend_cut_sides``); vertebrae the cut crosses are incomplete.

For a random patch, all visible vertebral bone goes into the memory and the targets are empty (mask 0,
label 0, completeness 0). The sacrum (26) is never a target and never in the memory. Patch voxels outside
the volume (or outside a random z-crop) are the normalized air value (:func:`~SpineSegmentationLib.
preprocessing.pad_value`) in the image and 0 in the masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..anatomy import SACRUM, column_position
from ..models import Preprocessing
from ..preprocessing import cut_body_values, extend_cut_sides
from . import augmentation
from .losses import surface_distance_weights


@dataclass
class VertebraInfo:
    label: int
    position: float
    count: int
    bbox_min: np.ndarray  # [z, y, x]
    bbox_max: np.ndarray  # inclusive
    z_profile: np.ndarray  # voxel count per z slice
    touches_yx_border: bool


@dataclass
class TrainingVolume:
    """A canonical volume ready for sampling.

    Attributes:
        image: float32 [z, y, x] normalized intensities.
        labels: int16 [z, y, x] VerSe numbers.
        ignore_band_voxels: the loss ignores this band around every target's surface (a pseudo-label's, see
            :func:`~.losses.surface_distance_weights`); 0 for a reference.
    """

    name: str
    image: np.ndarray
    labels: np.ndarray
    vertebrae: dict[int, VertebraInfo] = field(default_factory=dict)
    ignore_band_voxels: float = 0.0

    @classmethod
    def build(cls, name: str, image: np.ndarray, labels: np.ndarray,
              ignore_band_voxels: float = 0.0) -> "TrainingVolume":
        """Wrap arrays and index their vertebrae (all labels except 0 and the sacrum).

        Raises:
            ValueError: image and labels differ in shape.
        """
        if image.shape != labels.shape:
            raise ValueError(f"{name}: image shape {image.shape} differs from label shape {labels.shape}")
        vol = cls(name=name, image=image.astype(np.float32, copy=False), labels=labels.astype(np.int16, copy=False),
                  ignore_band_voxels=float(ignore_band_voxels))
        objects = ndimage.find_objects(vol.labels.astype(np.int32))
        for index, slices in enumerate(objects, start=1):
            if slices is None or index == SACRUM:
                continue
            try:
                position = column_position(index)
            except ValueError:
                continue
            sub = vol.labels[slices] == index
            lo = np.array([s.start for s in slices])
            hi = np.array([s.stop - 1 for s in slices])
            profile = np.zeros(labels.shape[0], dtype=np.int64)
            profile[slices[0]] = sub.sum(axis=(1, 2))
            touches = bool(lo[1] == 0 or lo[2] == 0 or hi[1] == labels.shape[1] - 1 or hi[2] == labels.shape[2] - 1)
            vol.vertebrae[index] = VertebraInfo(index, position, int(sub.sum()), lo, hi, profile, touches)
        return vol


@dataclass
class Patch:
    """One training example (arrays of shape (P, P, P), [z, y, x])."""

    image: np.ndarray  # float32
    memory: np.ndarray  # float32 0/1
    target: np.ndarray  # float32 0/1
    weights: np.ndarray  # float32
    label: float
    complete: float
    source: str = ""


def extract(array: np.ndarray, start: np.ndarray, size: int, fill: float) -> np.ndarray:
    """``array[start : start + size]`` on every axis, filled with ``fill`` where it reaches outside."""
    out = np.full((size,) * 3, fill, dtype=array.dtype)
    src, dst = [], []
    for s, n in zip(start, array.shape):
        a, b = max(s, 0), min(s + size, n)
        if b <= a:
            return out
        src.append(slice(a, b))
        dst.append(slice(a - s, b - s))
    out[tuple(dst)] = array[tuple(src)]
    return out


def crop_field_of_view(volume: TrainingVolume, y: slice, x: slice, spacing_mm: float, patch_mm: float,
                       body_value: float, fill_value: float) -> TrainingVolume:
    """``volume`` cut to the in-plane field of view ``[:, y, x]``, its sides that cut through the body extended as the
    pipeline extends them (``preprocessing.extend_cut_sides``; labels 0 there). A vertebra the cut crosses touches the
    new field of view's border (:attr:`VertebraInfo.touches_yx_border`: incomplete), also beyond an extension.

    Args:
        spacing_mm: the volume's isotropic spacing; patch_mm: the FCN's patch edge in mm.
        body_value, fill_value: ``preprocessing.BODY_HU`` and ``CUT_BODY_PAD_HU`` normalized as ``volume.image``.
    """
    image, labels = volume.image[:, y, x], volume.labels[:, y, x]
    cut = TrainingVolume.build(volume.name, image, labels, volume.ignore_band_voxels)
    extended, pads = extend_cut_sides(image, spacing_mm, patch_mm, body_value, fill_value)
    if extended is not image:
        shift = np.array([before for before, _ in pads])
        cut.image, cut.labels = extended, np.pad(labels, pads)
        for info in cut.vertebrae.values():
            info.bbox_min, info.bbox_max = info.bbox_min + shift, info.bbox_max + shift
    return cut


def _visible(volume: TrainingVolume, z0: int, z1: int) -> dict[int, VertebraInfo]:
    """The vertebrae of ``volume`` with voxels in the slices ``[z0, z1)``."""
    return {k: v for k, v in volume.vertebrae.items() if v.z_profile[z0:z1].sum() > 0}


class PatchSampler:
    """Draws :class:`Patch` es from training volumes (see module docstring).

    Args:
        patch_size: edge length P of the cubic patch (voxels).
        pad: normalized air value.
        direction: traversal direction "up" (bottom-up) or "down".
        sigma_voxels, gamma: surface-weight parameters (:func:`~.losses.surface_distance_weights`).
        random_patch_fraction: share of patches anywhere in the scan (paper: 25 %).
        completeness_tolerance: fraction of the vertebra allowed outside the patch (paper: 2 %).
        augment: apply z-crop, pose (rotation, scale, left-right mirror), elastic and intensity augmentation.
        hu_scale: normalization scale (to express augmentation in HU).
        pose_probability, max_rotation_degrees, max_scale: share of patches sampled in a random pose
            (:func:`~.augmentation.random_pose`) and its ranges; the completeness target is computed from the
            vertebra voxels inside the posed patch.
        memory_error_probability: share of vertebra patches whose memory simulates a traversal error
            (:func:`~.augmentation.perturb_memory`).
        fov_crop_probability: share of patches drawn from the scan cut to an in-plane field of view around the
            target (:func:`crop_field_of_view`); 0 in every configuration before 2026-12-05.
        spacing_mm, body_values: the volumes' spacing, and ``(BODY_HU, CUT_BODY_PAD_HU)`` normalized, for the cut
            (``preprocessing.cut_body_values``; None: with ``hu_scale`` and the default window).
    """

    def __init__(self, patch_size: int, pad: float, direction: str = "up", sigma_voxels: float = 2.4,
                 gamma: float = 8.0, random_patch_fraction: float = 0.25, completeness_tolerance: float = 0.02,
                 augment: bool = True, hu_scale: float = 1000.0, pose_probability: float = 0.7,
                 max_rotation_degrees: float = 20.0, max_scale: float = 0.1,
                 memory_error_probability: float = 0.0, fov_crop_probability: float = 0.0,
                 spacing_mm: float = 2.5, body_values: tuple[float, float] | None = None) -> None:
        if direction not in ("up", "down"):
            raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
        self.patch_size = int(patch_size)
        self.pad = float(pad)
        self.direction = direction
        self.sigma_voxels = sigma_voxels
        self.gamma = gamma
        self.random_patch_fraction = random_patch_fraction
        self.completeness_tolerance = completeness_tolerance
        self.augment = augment
        self.hu_scale = hu_scale
        self.pose_probability = pose_probability
        self.max_rotation_degrees = max_rotation_degrees
        self.max_scale = max_scale
        self.memory_error_probability = memory_error_probability
        self.fov_crop_probability = fov_crop_probability
        self.spacing_mm = spacing_mm
        self.body_values = cut_body_values(Preprocessing(hu_scale=hu_scale)) if body_values is None else body_values
        self._augmentation = augmentation.patch_augmentation(hu_scale)

    def _patch_arrays(self, volume: TrainingVolume, centre: np.ndarray, pose: np.ndarray | None, z0: int, z1: int):
        """Image and label patch around ``centre`` (axis-aligned, or in ``pose``) and the mask of patch voxels
        that sample the volume outside the slices ``[z0, z1)``."""
        P = self.patch_size
        if pose is None:
            start = centre - P // 2
            zz = np.arange(start[0], start[0] + P)
            outside = np.broadcast_to(((zz < z0) | (zz >= z1))[:, None, None], (P, P, P))
            return extract(volume.image, start, P, self.pad), extract(volume.labels, start, P, 0), outside
        image = augmentation.resample_patch(volume.image, centre, pose, P, 1, self.pad)
        labels = augmentation.resample_patch(volume.labels, centre, pose, P, 0, 0)
        zs = np.rint(augmentation.source_z(centre, pose, P))
        return image, labels, (zs < z0) | (zs >= z1)

    def _count_inside(self, volume: TrainingVolume, info: VertebraInfo, centre: np.ndarray, pose: np.ndarray, z0: int,
                      z1: int) -> int:
        """Voxels of vertebra ``info`` (inside the slices ``[z0, z1)``) that the posed patch contains."""
        lo, hi = info.bbox_min.copy(), info.bbox_max + 1
        lo[0], hi[0] = max(lo[0], z0), min(hi[0], z1)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        points = np.argwhere(volume.labels[box] == info.label) + lo
        return augmentation.count_inside_patch(points, centre, pose, self.patch_size)

    def _cut_field_of_view(self, volume: TrainingVolume, around: VertebraInfo, rng: np.random.Generator
                           ) -> TrainingVolume:
        """``volume`` cut to a random field of view around vertebra ``around`` (:func:`crop_field_of_view`)."""
        y, x = augmentation.random_fov_crop(volume.labels.shape, (around.bbox_min + around.bbox_max) // 2,
                                            self.spacing_mm, rng)
        return crop_field_of_view(volume, y, x, self.spacing_mm, self.patch_size * self.spacing_mm, *self.body_values)

    def _before(self, target_position: float, position: float) -> bool:
        return position > target_position if self.direction == "up" else position < target_position

    def sample(self, volume: TrainingVolume, rng: np.random.Generator, target: int | None = None,
               centre: np.ndarray | None = None, z_crop: tuple[int, int] | None = None,
               pose: np.ndarray | None = None) -> Patch:
        """One patch from ``volume``.

        Args:
            target: force this vertebra as target (None: random; 0: a random patch without target).
            centre: force the patch centre [z, y, x] (voxels).
            z_crop: force the truncated field of view ``(z0, z1)`` (None: random if ``augment``).
            pose: force the patch pose (3x3, :func:`~.augmentation.random_pose`; None: axis-aligned, or random
                with probability ``pose_probability`` if ``augment``).
        """
        P = self.patch_size
        depth = volume.labels.shape[0]
        if z_crop is None:
            z_crop = augmentation.random_z_crop(depth, rng, min_keep=max(P // 2, 8)) if self.augment else (0, depth)
        z0, z1 = z_crop
        visible = _visible(volume, z0, z1)
        if target is None:
            if visible and rng.random() >= self.random_patch_fraction:
                target = int(rng.choice(sorted(visible)))
            else:
                target = 0
        if target and target not in visible:
            raise ValueError(f"vertebra {target} is not visible in {volume.name} (z-crop {z_crop})")
        if self.fov_crop_probability > 0 and centre is None and self.augment and visible \
                and rng.random() < self.fov_crop_probability:
            cut = self._cut_field_of_view(volume, visible[target or int(rng.choice(sorted(visible)))], rng)
            cut_visible = _visible(cut, z0, z1)
            if not target or target in cut_visible:  # else the cut left nothing of the target: the scan as it is
                volume, visible = cut, cut_visible
        if centre is None:
            if target:
                info = visible[target]
                zs = np.nonzero(info.z_profile[z0:z1])[0] + z0
                lo = np.array([zs.min(), info.bbox_min[1], info.bbox_min[2]])
                hi = np.array([zs.max(), info.bbox_max[1], info.bbox_max[2]])
            else:
                lo = np.array([z0, 0, 0])
                hi = np.array([z1 - 1, volume.labels.shape[1] - 1, volume.labels.shape[2] - 1])
            centre = rng.integers(lo, hi + 1)
        centre = np.asarray(centre, dtype=int)
        if pose is None and self.augment and rng.random() < self.pose_probability:
            pose = augmentation.random_pose(rng, self.max_rotation_degrees, self.max_scale)
        image, labels, outside = self._patch_arrays(volume, centre, pose, z0, z1)
        # truncated field of view: outside [z0, z1) is air and unlabelled
        image[outside] = self.pad
        labels[outside] = 0
        memory = np.zeros(labels.shape, dtype=bool)
        if target:
            info = visible[target]
            tmask = labels == target
            before = [v for k, v in visible.items() if k != target and self._before(info.position, v.position)]
            for v in before:
                memory |= labels == v.label
            cut = info.touches_yx_border or info.z_profile[z0] > 0 or info.z_profile[z1 - 1] > 0
            inside = int(tmask.sum()) if pose is None else self._count_inside(volume, info, centre, pose, z0, z1)
            complete = float(not cut and inside >= (1.0 - self.completeness_tolerance) * info.count)
            label = info.position
            if self.augment and before and rng.random() < self.memory_error_probability:
                previous = min(before, key=lambda v: abs(v.position - info.position))
                memory, tmask = augmentation.perturb_memory(memory, tmask, labels == previous.label, rng,
                                                            self.direction)
        else:
            tmask = np.zeros(labels.shape, dtype=bool)
            for k in visible:
                memory |= labels == k
            complete, label = 0.0, 0.0
        if self.augment:
            image, memory, tmask = augmentation.augment_patch(image, memory, tmask, rng, self._augmentation,
                                                              self.hu_scale)
        weights = surface_distance_weights(tmask, self.gamma, self.sigma_voxels, volume.ignore_band_voxels)
        return Patch(image.astype(np.float32), memory.astype(np.float32), tmask.astype(np.float32), weights,
                     float(label), complete, volume.name)
