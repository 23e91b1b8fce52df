"""Iterative instance segmentation: the traversal of seed 002, section 3.3.

One patch of ``P^3`` voxels (canonical grid) is analysed at a time, together with the instance memory
(every voxel already assigned to a vertebra). The loop, per vertebra:

1. *Sliding window.* While the network finds no fragment of at least ``v_min`` voxels, the patch moves by
   ``delta_x = P / 2`` in the traversal direction (paper: "up" = bottom-up, the default). With a spine
   localization the windows follow the spine (one window per step along the superior-inferior axis, centred
   on the spine mask) instead of sweeping the whole volume, and fragments outside the mask are rejected.
2. *Move to the fragment.* Otherwise the next patch is centred on the centre of the fragment's bounding
   box, ``x_{t+1} = [b_t]``.
3. *Convergence.* When ``x_{t+1}`` and ``x_t`` differ by at most ``delta_max`` voxels on every axis, the
   mask at ``x_t`` is the vertebra. After ``max_iterations`` evaluations without convergence the patch moves
   to the midpoint ``[(x_t + x_{t-1}) / 2]`` and the mask there is taken.
4. *Memory update.* The vertebra goes into the output and the memory (incomplete ones too, flagged: the
   paper's "merely flagging them" option, section 3.5) and the same patch is analysed again, which yields a
   fragment of the following vertebra; without one, the sliding window resumes beyond the patch. A fragment
   whose regressed label is below 0.5 (the label output's 0 = "no vertebral bone", section 3.4) goes into the
   memory only.

Parameters (``model.traversal``, paper values): v_min = 1000 mm^3 (1000 voxels at 1 mm), delta_max = 2
voxels, 10 iterations per vertebra, step = half the patch size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
from scipy import ndimage

from .models import SpineModel
from .preprocessing import pad_value

#: Regressed label values below this mean "no vertebral bone" (the label output's 0, seed 002 section 3.4).
NO_BONE_LABEL = 0.5

#: A CT vertebra has at least this fraction of its voxels at or above ``bone_threshold`` (200 HU): measured on the
#: real CTs at 2.5 mm, 0.22-0.64 per vertebra; fragments below it are soft tissue the network mistook for bone.
MIN_BONE_FRACTION = 0.05

#: Upper bound on vertebrae per scan (C1..L5 with T13 and L6 = 26), with headroom for false positives.
MAX_VERTEBRAE = 30


@dataclass
class DetectedVertebra:
    """One vertebra found by traversal, on the canonical grid.

    Attributes:
        instance: 1-based instance id, in traversal order.
        label_regressed: regressed label value (1..24 scale) at the final patch position.
        p_complete: probability of complete visibility at the final patch position.
        center_zyx: final patch centre, canonical voxel indices [z, y, x].
        iterations: network evaluations spent on this vertebra (sliding excluded).
        converged: False when the midpoint rule ended the iterations.
        voxels: number of voxels written to the instance map.
    """

    instance: int
    label_regressed: float
    p_complete: float
    center_zyx: tuple[int, int, int]
    iterations: int
    converged: bool
    voxels: int


@dataclass
class TraversalResult:
    """Outcome of :func:`traverse`.

    Attributes:
        instances: int16 [z, y, x] on the canonical grid, 0 = background, k = ``vertebrae[k-1]``.
        vertebrae: detected vertebrae in traversal order.
        evaluations: total network evaluations (sliding + tracking).
        rejected: converged fragments that are no vertebral bone (regressed label below
            :data:`NO_BONE_LABEL`, or too few voxels at bone intensity); they went into the memory, not the output.
    """

    instances: np.ndarray
    vertebrae: list[DetectedVertebra] = field(default_factory=list)
    evaluations: int = 0
    rejected: int = 0


class PatchPredictor:
    """Runs the iterative FCN on one patch of a canonical volume.

    Args:
        volume: normalized image, float32 [z, y, x] (``preprocessing.normalize_hu`` of the canonical CT).
        model: loaded model; its FCN must be on ``device``.
        device: torch device.
        mixed_precision: run the network under bf16 autocast; None = on CUDA only (tensor cores; on the real CT
            it changes no vertebra's Dice by more than 0.002, see test_pipeline.py).
    """

    def __init__(self, volume: np.ndarray, model: SpineModel, device: torch.device,
                 mixed_precision: Optional[bool] = None) -> None:
        self.volume = volume
        self.model = model
        self.device = torch.device(device)
        self.mixed_precision = self.device.type == "cuda" if mixed_precision is None else bool(mixed_precision)
        self.size = model.fcn.config.patch_size
        self.pad = pad_value(model.preprocessing)
        self.evaluations = 0

    def _window(self, center: np.ndarray) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
        """Slices of the volume and of the patch that overlap, for a patch centred at ``center``."""
        lo = np.asarray(center) - self.size // 2
        src, dst = [], []
        for axis in range(3):
            a, b = lo[axis], lo[axis] + self.size
            ca, cb = max(a, 0), min(b, self.volume.shape[axis])
            src.append(slice(int(ca), int(max(cb, ca))))
            dst.append(slice(int(ca - a), int(max(cb, ca) - a)))
        return tuple(src), tuple(dst)

    def predict(self, centers: list[np.ndarray], memory: np.ndarray) -> list[tuple[np.ndarray, float, float, tuple]]:
        """Network outputs for patches centred at ``centers`` ([z, y, x] voxel indices), evaluated as one batch.

        Returns:
            One ``(mask_probability, label, p_complete, window)`` per centre: mask_probability float32
            (P, P, P) in patch coordinates, window the ``(volume_slices, patch_slices)`` pair of :meth:`_window`.
        """
        windows = [self._window(c) for c in centers]
        patches = np.zeros((len(centers), 2, self.size, self.size, self.size), dtype=np.float32)
        patches[:, 0] = self.pad
        for patch, (src, dst) in zip(patches, windows):
            patch[0][dst] = self.volume[src]
            patch[1][dst] = memory[src]
        x = torch.from_numpy(patches).to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with torch.inference_mode(), torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                                                    enabled=self.mixed_precision):
            out = self.model.fcn(x)
        self.evaluations += len(centers)
        prob = torch.sigmoid(out.segmentation_logits[:, 0].float()).cpu().numpy()
        label = out.label.float().cpu().numpy()
        p_complete = torch.sigmoid(out.completeness_logits.float()).cpu().numpy()
        return [(prob[i], float(label[i]), float(p_complete[i]), windows[i]) for i in range(len(centers))]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def sliding_windows(
    shape: tuple[int, int, int], patch: int, step: int, direction: str, spine_mask: Optional[np.ndarray]
) -> list[np.ndarray]:
    """Patch centres of the sliding-window search, in traversal order.

    Without a spine mask: a regular grid with spacing ``step`` over the whole volume. With one: along the
    superior-inferior axis in steps of ``step``, each centred (y, x) on the mask inside that slab, plus extra
    windows where the mask is wider than one patch; positions without mask are skipped. "up" visits inferior
    positions first (canonical z grows superiorly).
    """

    def axis_positions(lo: int, hi: int) -> list[int]:
        first = lo + step // 2
        return list(range(first, max(hi, first) + 1, step)) if hi - lo > step else [int((lo + hi) // 2)]

    windows: list[np.ndarray] = []
    if spine_mask is None:
        for z in axis_positions(0, shape[0] - 1):
            for y in axis_positions(0, shape[1] - 1):
                for x in axis_positions(0, shape[2] - 1):
                    windows.append(np.array([z, y, x]))
    else:
        zz = np.flatnonzero(spine_mask.any(axis=(1, 2)))
        if zz.size == 0:
            return []
        for z in range(int(zz[0]), int(zz[-1]) + step, step):
            z = min(z, shape[0] - 1)
            slab = spine_mask[max(0, z - step // 2) : z + step // 2 + 1]
            yy = np.flatnonzero(slab.any(axis=(0, 2)))
            xx = np.flatnonzero(slab.any(axis=(0, 1)))
            if yy.size == 0:
                continue
            usable = patch - step  # a window covers its slab with a margin of step/2 on each side
            ys = axis_positions(int(yy[0]), int(yy[-1])) if yy[-1] - yy[0] > usable else [int((yy[0] + yy[-1]) // 2)]
            xs = axis_positions(int(xx[0]), int(xx[-1])) if xx[-1] - xx[0] > usable else [int((xx[0] + xx[-1]) // 2)]
            windows += [np.array([z, y, x]) for y in ys for x in xs]
    windows.sort(key=lambda c: c[0] if direction == "up" else -c[0])  # stable: keeps y, x order per level
    return windows


def traverse(
    volume: np.ndarray,
    model: SpineModel,
    device: torch.device,
    spine_mask: Optional[np.ndarray] = None,
    memory: Optional[np.ndarray] = None,
    direction: str = "up",
    start_zyx: Optional[np.ndarray] = None,
    progress: Optional[Callable[[int, int], None]] = None,
    z_range: Optional[tuple[int, int]] = None,
    sliding_batch: int = 1,
    bone_threshold: Optional[float] = None,
    mixed_precision: Optional[bool] = None,
) -> TraversalResult:
    """Segment the vertebrae of a canonical volume one at a time (seed 002, section 3.3).

    Args:
        volume: normalized CT, float32 [z, y, x] = [S, P, L] on the canonical grid.
        model: loaded model (network, traversal parameters, spacing).
        device: torch device of the model.
        spine_mask: optional bool [z, y, x] from ``localization.localize_spine``: where to search, and
            where fragments are accepted.
        memory: optional bool [z, y, x] instance memory to start from (vertebrae that are already
            segmented; they are not segmented again).
        direction: "up" (bottom-up; the paper's default) or "down"; must be the direction the network was
            trained for (checked by the pipeline).
        start_zyx: optional first patch centre (e.g. a point clicked on a vertebra); traversal then
            continues from there.
        progress: optional callback ``progress(vertebrae_found, evaluations)`` after every evaluation.
        z_range: optional (low, high) canonical z indices: only fragments whose bounding-box centre lies in
            this range count, and the sliding window stays inside it (e.g. "below the clicked vertebra").
        sliding_batch: sliding-window positions evaluated together in one batch; the first detection in
            traversal order is taken, so the result is the same as one at a time (more evaluations, fewer
            launches: worth it on a GPU).
        bone_threshold: optional intensity (in ``volume``'s normalized units) of bone, e.g. 200 HU for CT:
            a converged vertebra with less than :data:`MIN_BONE_FRACTION` of its voxels at or above it is
            rejected like a "no bone" label.
        mixed_precision: bf16 autocast for the network (see :class:`PatchPredictor`); None = on CUDA only.

    Returns:
        :class:`TraversalResult` with the instance map on the canonical grid.

    Raises:
        ValueError: if shapes disagree or ``direction`` is not "up" or "down".
    """
    if direction not in ("up", "down"):
        raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
    for name, arr in (("spine_mask", spine_mask), ("memory", memory)):
        if arr is not None and arr.shape != volume.shape:
            raise ValueError(f"{name} has shape {arr.shape}, the volume {volume.shape}")
    params = model.traversal
    size = model.fcn.config.patch_size
    step = max(1, int(round(size * params.step_fraction)))
    v_min = max(1, int(round(params.v_min_mm3 / model.preprocessing.spacing_mm**3)))
    predictor = PatchPredictor(volume, model, device, mixed_precision)
    memory = np.zeros(volume.shape, dtype=np.float32) if memory is None else memory.astype(np.float32)
    instances = np.zeros(volume.shape, dtype=np.int16)
    result = TraversalResult(instances=instances)
    windows = sliding_windows(volume.shape, size, step, direction, spine_mask)
    if z_range is not None:
        windows = [w for w in windows if z_range[0] <= w[0] <= z_range[1]]
    max_evaluations = len(windows) + (params.max_iterations + 2) * MAX_VERTEBRAE
    ahead = (lambda a, b: a > b) if direction == "up" else (lambda a, b: a < b)

    def interpret(output):
        """The detected fragment of one network output (global bool mask in its window), or None."""
        prob, label, p_complete, (src, dst) = output
        mask = (prob[dst] >= params.mask_threshold) & (memory[src] < 0.5)
        mask = _largest_component(mask)
        count = int(mask.sum())
        if count < v_min:
            return None
        if spine_mask is not None and spine_mask[src][mask].mean() < 0.5:
            return None  # outside the localized spine: rib, pelvis or other bone
        idx = np.argwhere(mask)
        offset = np.array([s.start for s in src])
        bbox_center = np.rint((idx.min(axis=0) + idx.max(axis=0)) / 2.0).astype(int) + offset
        if z_range is not None and not z_range[0] <= bbox_center[0] <= z_range[1]:
            return None
        return mask, src, bbox_center, label, p_complete

    def evaluate(centers: list[np.ndarray]) -> list:
        outputs = predictor.predict(centers, memory)
        if progress is not None:
            progress(len(result.vertebrae), predictor.evaluations)
        return outputs

    def fragment(center: np.ndarray):
        """Evaluate at ``center``; the detected fragment or None."""
        return interpret(evaluate([center])[0])

    def skip_windows_behind(z: int) -> None:
        # resume the sliding window beyond the current patch, in the traversal direction
        nonlocal pending
        while pending < len(windows) and not ahead(windows[pending][0], z):
            pending += 1

    pending = 0
    position = None if start_zyx is None else np.asarray(start_zyx, dtype=int)
    while predictor.evaluations < max_evaluations and len(result.vertebrae) < MAX_VERTEBRAE:
        if position is None:
            # sliding window: evaluate the next windows (several at once on a GPU), take the first detection
            if pending >= len(windows):
                break
            batch = windows[pending : pending + max(1, sliding_batch)]
            hits = ((i, interpret(out)) for i, out in enumerate(evaluate(batch)))
            i, found = next(((i, f) for i, f in hits if f is not None), (len(batch) - 1, None))
            pending += i + 1
            if found is None:
                continue
            position = batch[i]
        else:  # the patch of a finished vertebra, or a given start point
            found = fragment(position)
            if found is None:
                skip_windows_behind(int(position[0]))
                position = None
                continue
        # track this vertebra until the patch position converges (or the midpoint rule applies)
        previous, current, iterations, converged = None, position, 1, False
        while True:
            mask, src, bbox_center, label, p_complete = found
            if np.all(np.abs(bbox_center - current) <= params.delta_max_voxels):
                converged = True
                break
            if iterations >= params.max_iterations:
                mid = np.rint((current + (previous if previous is not None else bbox_center)) / 2.0).astype(int)
                found = fragment(mid)
                iterations += 1
                current = mid
                break
            previous, current = current, bbox_center
            found = fragment(current)
            iterations += 1
            if found is None:
                break
        if found is None:  # the fragment was lost while moving towards it
            skip_windows_behind(int(current[0]))
            position = None
            continue
        mask, src, _, label, p_complete = found
        not_bone = bone_threshold is not None and (volume[src][mask] >= bone_threshold).mean() < MIN_BONE_FRACTION
        if label < NO_BONE_LABEL or not_bone:
            # the network's label output says "no vertebral bone" (trained with label 0 for such patches), or the
            # intensities say so: keep it out of the output, but in the memory so that traversal moves on
            memory[src][mask] = 1.0
            result.rejected += 1
            position = current
            continue
        instance = len(result.vertebrae) + 1
        region = instances[src]
        region[mask & (region == 0)] = instance
        memory[src][mask] = 1.0
        result.vertebrae.append(
            DetectedVertebra(
                instance=instance,
                label_regressed=label,
                p_complete=p_complete,
                center_zyx=tuple(int(v) for v in current),
                iterations=iterations,
                converged=converged,
                voxels=int(mask.sum()),
            )
        )
        position = current  # analyse the same patch again: the memory now points to the next vertebra
    result.evaluations = predictor.evaluations
    return result
