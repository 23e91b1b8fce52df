"""Read and check a pipeline output folder (the CLI's contract), without Slicer.

Files used here: ``labels.nii.gz`` (int16 VerSe label map on the input grid) and ``vertebrae.json``
(``{"vertebrae": [{label, name, complete, p_complete, p_label, centroid_ras_mm [x, y, z], volume_mm3,
label_regressed, iterations, edited}], "run": {...}, "alternatives": [...], "message": str}``).
The folder's other files (``segmentation.seg.nrrd``, ``centroids_ctd.json``, ``qc.png``) are not needed to
build the Slicer nodes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

LABELS_FILE = "labels.nii.gz"
VERTEBRAE_FILE = "vertebrae.json"


@dataclass(frozen=True)
class VertebraRecord:
    """One entry of ``vertebrae.json``.

    Attributes:
        label: VerSe number (1-7 C1-C7, 8-19 T1-T12, 20-24 L1-L5, 25 L6, 26 sacrum, 28 T13).
        name: level name ("L1").
        complete: completely visible in the image (seed 002 section 3.5).
        p_complete: probability of complete visibility, [0, 1].
        p_label: probability of the label (seed 002 section 3.4), [0, 1]; shown as "confidence".
        centroid_ras_mm: centroid (x, y, z) in RAS millimetres.
        volume_mm3: volume on the input grid, mm^3.
        edited: made or kept by a person.
    """

    label: int
    name: str
    complete: bool
    p_complete: float
    p_label: float
    centroid_ras_mm: tuple[float, float, float]
    volume_mm3: float
    edited: bool = False


@dataclass
class OutputFolder:
    """The parts of an output folder that the module loads."""

    path: Path
    labels_path: Path
    vertebrae: list[VertebraRecord]
    message: str = ""
    run: dict = field(default_factory=dict)
    alternatives: list = field(default_factory=list)


def _number(entry: dict, key: str, where: str) -> float:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: '{key}' must be a finite number, got {value!r}")
    return float(value)


def _record(entry, index: int, path: Path) -> VertebraRecord:
    where = f"{path} vertebrae[{index}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be an object")
    label = entry.get("label")
    if isinstance(label, bool) or not isinstance(label, int) or label <= 0:
        raise ValueError(f"{where}: 'label' must be a positive integer (VerSe number), got {label!r}")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: 'name' must be a non-empty string")
    complete = entry.get("complete")
    if not isinstance(complete, bool):
        raise ValueError(f"{where}: 'complete' must be true or false, got {complete!r}")
    centroid = entry.get("centroid_ras_mm")
    if not isinstance(centroid, list) or len(centroid) != 3:
        raise ValueError(f"{where}: 'centroid_ras_mm' must be [x, y, z] in RAS mm")
    xyz = tuple(_number({"c": c}, "c", f"{where} centroid_ras_mm") for c in centroid)
    return VertebraRecord(
        label=label,
        name=name,
        complete=complete,
        p_complete=_number(entry, "p_complete", where),
        p_label=_number(entry, "p_label", where),
        centroid_ras_mm=xyz,
        volume_mm3=_number(entry, "volume_mm3", where),
        edited=bool(entry.get("edited", False)),
    )


def read_output_folder(path) -> OutputFolder:
    """Read ``vertebrae.json`` of an output folder and check that ``labels.nii.gz`` is there.

    Args:
        path: the output folder of ``spineseg segment``.

    Returns:
        The vertebrae in file order (cranio-caudal), the run message, run info and alternatives.

    Raises:
        ValueError: the folder or a file is missing, ``vertebrae.json`` is not valid JSON or misses a field,
            or a label is listed twice. The message names the file and the field.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"output folder {folder} does not exist; run the segmentation first")
    labels_path = folder / LABELS_FILE
    vertebrae_path = folder / VERTEBRAE_FILE
    for required in (labels_path, vertebrae_path):
        if not required.is_file():
            raise ValueError(f"{required} is missing; {folder} is not a complete spineseg output folder")
    try:
        data = json.loads(vertebrae_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{vertebrae_path} is not valid JSON: {error}") from error
    if not isinstance(data, dict) or not isinstance(data.get("vertebrae"), list):
        raise ValueError(f"{vertebrae_path} has no 'vertebrae' list; it is not a spineseg vertebrae.json")
    records = [_record(entry, i, vertebrae_path) for i, entry in enumerate(data["vertebrae"])]
    labels = [r.label for r in records]
    duplicates = sorted({lab for lab in labels if labels.count(lab) > 1})
    if duplicates:
        raise ValueError(f"{vertebrae_path} lists labels {duplicates} more than once")
    return OutputFolder(
        path=folder,
        labels_path=labels_path,
        vertebrae=records,
        message=str(data.get("message", "")),
        run=data.get("run", {}) if isinstance(data.get("run"), dict) else {},
        alternatives=data.get("alternatives", []) if isinstance(data.get("alternatives"), list) else [],
    )
