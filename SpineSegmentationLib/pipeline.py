"""The whole job: CT in; every vertebra segmented, labelled and flagged complete or incomplete.

read -> validate -> canonical geometry -> localize -> traverse -> refine labels -> back to the input grid ->
refine surfaces -> summary. Each arrow is one module; this file only wires them and reports progress.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from .anatomy import vertebra_name
from .errors import CancelledError, DeviceError, ModelFileError
from .geometry import label_measurements, labels_on_input_grid, lps_to_ras, to_canonical
from .labeling import refine_labels
from .localization import localize_spine
from .models import SpineModel, load_model
from .preprocessing import normalize_hu
from .refinement import SURFACE_THRESHOLD_HU, refine_surfaces
from .result import SpineSegmentationResult, Vertebra
from .device_fallback import traverse_with_fallback
from .sanity import add_warnings, anatomy_warnings, check_vertebra_count
from .traversal import DetectedVertebra, TraversalResult, traverse

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
        stage: one of "read", "validate", "resample", "localization", "traversal", "labeling",
            "input grid", "surface refinement", "summary", "done".
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
    "labeling": 0.9, "input grid": 0.92, "surface refinement": 0.95, "summary": 0.98, "done": 1.0,
}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> CUDA when available, else CPU.

    Raises:
        DeviceError: "cuda" requested on a machine without a usable CUDA device, or an unknown name.
    """
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise DeviceError(f"unknown device {name!r}; use --device auto, cpu or cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"--device {name} was requested but PyTorch finds no CUDA GPU here (torch "
                          f"{torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError as exc:  # e.g. "cuda:x"
        raise DeviceError(f"invalid device {name!r} ({exc}); use --device auto, cpu, cuda or cuda:N") from exc


class Reporter:
    """Emits progress events, measures time per stage, and turns a False from the callback into a cancel."""

    def __init__(self, callback: Optional[ProgressCallback]) -> None:
        self.callback = callback
        self.times: dict[str, float] = {}
        self._stage: Optional[str] = None
        self._t0 = 0.0

    def stage(self, name: str, message: str = "") -> None:
        self._close()
        self._stage, self._t0 = name, time.perf_counter()
        self.emit(name, _STAGE_START[name], None, message or name)

    def emit(self, stage: str, fraction: float, vertebra: Optional[int], message: str) -> None:
        if self.callback is not None and self.callback(ProgressEvent(stage, float(fraction), vertebra, message)) is False:
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
) -> SpineSegmentationResult:
    """Segment, label and flag the completeness of every vertebra in a CT.

    Args:
        image: CT in HU: a path (NIfTI, NRRD, MHA, or a DICOM series folder) or a 3D ``sitk.Image`` (any
            orientation; geometry in LPS as in ITK).
        model: model folder, a loaded :class:`SpineModel`, or None for the shipped default model.
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

    Returns:
        :class:`SpineSegmentationResult`; its label map is on the input grid (int16, VerSe numbers).
        When no spine is found, the result has no vertebrae, an empty label map and says so in ``message``.
        When the localization network finds no spine (small crops give it too little context), the whole
        volume is searched instead (``run_info["spine_localized"]`` is False).

    Raises:
        InputImageError: the input is missing, unreadable or not a 3D CT in HU (see ``validation.py``).
        ModelFileError: the model is missing, corrupt, not for CT, or not trained for ``direction``.
        CancelledError: the progress callback returned False.

    Example:
        >>> result = segment_spine("example_ct.nii.gz", device="cpu")  # doctest: +SKIP
        >>> [(v.name, v.complete) for v in result.vertebrae]  # doctest: +SKIP
    """
    reporter = Reporter(progress)
    t_start = time.perf_counter()
    scan = prepare_scan(image, model, device, direction, reporter, use_localization, max_memory_bytes)
    localized = scan.spine_mask is None or bool(scan.spine_mask.any())
    if not localized:
        # small crops give the low-resolution attention network too little context: search everywhere
        scan.spine_mask = None
    trav, fallback = traverse_with_fallback(scan, GPU_SLIDING_BATCH if scan.device.type == "cuda" else 1,
                                            lambda s, batch: run_traversal(s, reporter, sliding_batch=batch))
    if trav.vertebrae:
        result = assemble_result(scan, trav.instances, trav.vertebrae, reporter, t_start, trav.evaluations,
                                 refine_surface)
    else:
        where = "" if localized else " (the localization network saw no spine either; the whole volume was searched)"
        result = empty_result(scan, reporter, t_start, "no spine found: traversal detected no vertebral bone" + where,
                              trav.evaluations)
    result.run_info["spine_localized"] = localized
    if fallback:
        result.run_info["device_fallback"] = fallback
    add_warnings(result, fallback + anatomy_warnings(result.vertebrae))
    return result


@dataclass
class Scan:
    """A CT prepared for the networks (the state shared by segmentation and the correction workflow).

    Attributes:
        image: the input CT (HU, input grid, LPS geometry).
        model: the loaded model, on ``device``.
        device: torch device.
        direction: traversal direction used ("up" or "down").
        reference: canonical grid (identity direction, ``model.preprocessing.spacing_mm``).
        volume: normalized CT on the canonical grid, float32 [z, y, x] = [S, P, L].
        spine_mask: bool [z, y, x] from the localization network, or None when not used.
        localization_slices: sagittal slices evaluated by the attention network.
    """

    image: sitk.Image
    model: SpineModel
    device: torch.device
    direction: str
    reference: sitk.Image
    volume: np.ndarray
    spine_mask: Optional[np.ndarray]
    localization_slices: int = 0

    @property
    def flip(self) -> bool:
        """A network trained for 'both' runs bottom-up on the volume flipped along S-I for 'down'."""
        return self.model.traversal.direction == "both" and self.direction == "down"


def prepare_scan(
    image: Union[str, Path, sitk.Image],
    model: Union[None, str, Path, SpineModel],
    device: str | torch.device,
    direction: Optional[str],
    reporter: Reporter,
    use_localization: bool = True,
    max_memory_bytes: Optional[int] = None,
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
    hu_canonical, reference = to_canonical(image, spacing)
    volume = normalize_hu(hu_canonical, model.preprocessing)
    scan = Scan(image, model, torch_device, direction, reference, volume, None)
    if use_localization:
        reporter.stage("localization", "finding the spine")
        loc = localize_spine(image, reference, model, torch_device)
        scan.spine_mask, scan.localization_slices = loc.mask, loc.evaluations
    return scan


def surface_refinement(scan: Scan, choice: Optional[bool]) -> bool:
    """Whether to apply the surface refinement: ``choice``, or the model's setting when it is None."""
    return scan.model.postprocessing.surface_refinement if choice is None else bool(choice)


def run_traversal(
    scan: Scan,
    reporter: Reporter,
    memory: Optional[np.ndarray] = None,
    start_zyx: Optional[np.ndarray] = None,
    sliding_batch: Optional[int] = None,
) -> TraversalResult:
    """Iterative instance segmentation of ``scan`` (stage 3), with progress per vertebra.

    Args:
        memory: optional bool [z, y, x] canonical instance memory (vertebrae already segmented).
        start_zyx: optional first patch centre, canonical [z, y, x] voxel indices.
        sliding_batch: sliding-window positions per network call; default :data:`GPU_SLIDING_BATCH` on a GPU,
            else 1.

    Raises:
        InputImageError: more vertebrae than a spine has (:func:`sanity.check_vertebra_count`), at once.

    Returns:
        :class:`~SpineSegmentationLib.traversal.TraversalResult` on the canonical grid (unflipped).
    """
    reporter.stage("traversal", "segmenting vertebrae")
    spacing = scan.model.preprocessing.spacing_mm
    mask = scan.spine_mask
    extent = mask.any(axis=(1, 2)).sum() if mask is not None else scan.volume.shape[0]
    expected = max(1.0, extent * spacing / _TYPICAL_VERTEBRA_MM)
    span = _STAGE_START["labeling"] - _STAGE_START["traversal"]

    def on_eval(found: int, evaluations: int) -> None:
        check_vertebra_count(found)
        frac = _STAGE_START["traversal"] + span * min(1.0, found / expected)
        reporter.emit("traversal", frac, found + 1, f"vertebra {found + 1} ({evaluations} network evaluations)")

    def flipped(a):
        return None if a is None else (np.ascontiguousarray(a[::-1]) if scan.flip else a)

    start = None
    if start_zyx is not None:
        start = np.asarray(start_zyx, dtype=int).copy()
        if scan.flip:
            start[0] = scan.volume.shape[0] - 1 - start[0]
    trav = traverse(flipped(scan.volume), scan.model, scan.device, spine_mask=flipped(mask), memory=flipped(memory),
                    direction="up" if scan.flip else scan.direction, start_zyx=start, progress=on_eval,
                    sliding_batch=sliding_batch or (GPU_SLIDING_BATCH if scan.device.type == "cuda" else 1),
                    bone_threshold=float(normalize_hu(np.array([SURFACE_THRESHOLD_HU]), scan.model.preprocessing)[0]))
    if scan.flip:
        trav.instances = np.ascontiguousarray(trav.instances[::-1])
    return trav


def assemble_result(
    scan: Scan,
    instances: np.ndarray,
    detected: list[DetectedVertebra],
    reporter: Reporter,
    t_start: float,
    evaluations: int,
    refine_surface: Optional[bool] = None,
    constraints: Optional[dict[int, int]] = None,
) -> SpineSegmentationResult:
    """Stages 4-6: label refinement, back to the input grid, surface refinement, per-vertebra summary.

    Args:
        instances: int16 [z, y, x] canonical instance map; ``detected[i].instance`` are its ids.
        detected: the vertebrae (any order; sorted cranio-caudally here).
        constraints: optional {instance id: VerSe label} stated by a person (renumbering).
    """
    reporter.stage("labeling", "maximum-likelihood labelling")
    ids = [v.instance for v in detected]
    centers = ndimage.center_of_mass(np.ones_like(instances, dtype=np.uint8), instances, ids)
    order = sorted(range(len(ids)), key=lambda i: -centers[i][0])  # cranio-caudal: largest z (superior) first
    detected = [detected[i] for i in order]
    index_of = {v.instance: i for i, v in enumerate(detected)}
    labeling = refine_labels([v.label_regressed for v in detected],
                             constraints={index_of[k]: lab for k, lab in (constraints or {}).items()})
    lut = np.zeros(int(instances.max()) + 1, dtype=np.int16)
    for v, lab in zip(detected, labeling.labels):
        lut[v.instance] = lab
    labels_canonical = lut[instances]

    reporter.stage("input grid", "resampling labels to the input grid")
    image = scan.image
    labels, box = labels_on_input_grid(labels_canonical, scan.reference, image)
    if surface_refinement(scan, refine_surface) and box is not None:
        reporter.stage("surface refinement", "removing surface voxels below 200 HU")
        hu = sitk.GetArrayViewFromImage(image)
        labels[box] = refine_surfaces(labels[box], hu[box], tuple(reversed(image.GetSpacing())))
    labels_image = sitk.GetImageFromArray(labels)
    labels_image.CopyInformation(image)

    reporter.stage("summary", "measuring the vertebrae")
    vertebrae = _summaries(labels_image, detected, labeling)
    times = reporter.finish()
    message = f"{len(vertebrae)} vertebrae: " + ", ".join(
        v.name + ("" if v.complete else " (incomplete)") for v in vertebrae
    )
    return SpineSegmentationResult(
        labels=labels_image,
        vertebrae=vertebrae,
        alternatives=labeling.alternatives,
        run_info=run_information(scan, times, t_start, evaluations),
        message=message,
    )


def _summaries(labels_image: sitk.Image, detected, labeling) -> list[Vertebra]:
    """Per-vertebra volume and centroid on the input grid."""
    measured = label_measurements(labels_image)
    voxel_mm3 = float(np.prod(labels_image.GetSpacing()))
    out = []
    for v, lab, p_lab in zip(detected, labeling.labels, labeling.probabilities):
        if lab not in measured:
            continue  # vanished on a coarser input grid
        out.append(
            Vertebra(
                label=int(lab),
                name=vertebra_name(lab),
                complete=bool(v.p_complete >= COMPLETE_THRESHOLD),
                p_complete=round(float(v.p_complete), 4),
                p_label=round(float(p_lab), 4),
                label_regressed=round(float(v.label_regressed), 3),
                centroid_ras_mm=[round(float(c), 2) for c in lps_to_ras(measured[lab][1])],
                volume_mm3=round(measured[lab][0] * voxel_mm3, 1),
                iterations=int(v.iterations),
            )
        )
    return out


def run_information(scan: Scan, times: dict, t_start: float, evaluations: int) -> dict:
    """Run information for ``SpineSegmentationResult.run_info``: model, device, seconds per stage, evaluations."""
    model, device = scan.model, scan.device
    return {
        "model": {"name": model.name, "version": model.version, "path": str(model.path) if model.path else None,
                  "description": model.description},
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        "cpu_threads": torch.get_num_threads(),
        "direction": scan.direction,
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
