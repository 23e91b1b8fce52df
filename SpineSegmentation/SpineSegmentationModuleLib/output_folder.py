"""Read and check a pipeline output folder (the CLI's contract), without Slicer.

Files used here: ``labels.nii.gz`` (int16 VerSe label map on the input grid) and ``vertebrae.json``
(``{"vertebrae": [{label, name, complete, p_complete, p_label, centroid_ras_mm [x, y, z], volume_mm3,
label_regressed, iterations, edited, rib_sides, sacrum_below, level_stated}], "run": {...}, "alternatives": [...],
"message": str}``), read with the library's ``read_vertebrae_json`` and named by its ``OUTPUT_FILES``; here every
field is checked, so that a damaged folder is refused with a message naming the field before the scene is touched.
The folder's other files (``segmentation.seg.nrrd``, ``centroids_ctd.json``, ``qc.png``) are not needed to
build the Slicer nodes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

#: Keys of the two files the module reads, in ``SpineSegmentationLib.outputs.OUTPUT_FILES``.
LABELS_KEY, VERTEBRAE_KEY = "labels", "vertebrae"


def _number(entry: dict, key: str, where: str, default=None) -> float:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: '{key}' must be a finite number, got {value!r}")
    return float(value)


def _probability(entry: dict, key: str, where: str) -> float:
    value = _number(entry, key, where)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{where}: '{key}' must be a probability between 0 and 1, got {value!r}; the file was edited "
                         "by hand or written by another program: fix the value, or run the segmentation again")
    return value


def _vertebra(entry, index: int, path: Path):
    """One ``vertebrae.json`` entry, checked field by field, as ``SpineSegmentationLib.result.Vertebra``."""
    from SpineSegmentationLib.anatomy import verse_label
    from SpineSegmentationLib.result import Vertebra

    where = f"{path} vertebrae[{index}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be an object")
    label = entry.get("label")
    if isinstance(label, bool) or not isinstance(label, int) or label <= 0:
        raise ValueError(f"{where}: 'label' must be a positive integer (VerSe number), got {label!r}")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: 'name' must be a non-empty string")
    try:
        named = verse_label(name)
    except ValueError:
        named = None
    if named != label:  # the pipeline writes vertebra_name(label); an edit of one without the other
        raise ValueError(f"{where}: 'name' {name!r} is not the level of 'label' {label} ({_level(label)}); the file "
                         "was edited by hand: give both the same level, or run the segmentation again")
    complete = entry.get("complete")
    if not isinstance(complete, bool):
        raise ValueError(f"{where}: 'complete' must be true or false, got {complete!r}")
    centroid = entry.get("centroid_ras_mm")
    if not isinstance(centroid, list) or len(centroid) != 3:
        raise ValueError(f"{where}: 'centroid_ras_mm' must be [x, y, z] in RAS mm")
    regressed = entry.get("label_regressed")
    return Vertebra(
        label=label,
        name=name,
        complete=complete,
        p_complete=_probability(entry, "p_complete", where),
        p_label=_probability(entry, "p_label", where),
        # absent or null for a segment a person drew: NaN (renumbering then places it by its neighbours)
        label_regressed=float("nan") if regressed is None else _number(entry, "label_regressed", where),
        centroid_ras_mm=[_number({"c": c}, "c", f"{where} centroid_ras_mm") for c in centroid],
        volume_mm3=_number(entry, "volume_mm3", where),
        iterations=int(_number(entry, "iterations", where, 0)),
        edited=bool(entry.get("edited", False)),
        rib_sides=_rib_sides(entry, where),
        sacrum_below=_optional_bool(entry, "sacrum_below", where),
        level_stated=bool(_optional_bool(entry, "level_stated", where)),  # absent in older files: not stated
        complete_stated=bool(_optional_bool(entry, "complete_stated", where)),  # absent in older files: not stated
    )


def _level(label: int) -> str:
    """The level name of a VerSe label, or "no vertebra level" for a number that is none."""
    from SpineSegmentationLib.anatomy import vertebra_name

    try:
        return vertebra_name(label)
    except ValueError:
        return "no vertebra level"


def _rib_sides(entry: dict, where: str):
    """``rib_sides`` of an entry (0, 1, 2, or None when absent or null: older files, no evidence)."""
    value = entry.get("rib_sides")
    if value is not None and (isinstance(value, bool) or value not in (0, 1, 2)):
        raise ValueError(f"{where}: 'rib_sides' must be 0, 1, 2 or null, got {value!r}")
    return value


def _optional_bool(entry: dict, key: str, where: str):
    value = entry.get(key)
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"{where}: '{key}' must be true, false or null, got {value!r}")
    return value


@dataclass
class OutputFolder:
    """The parts of an output folder that the module loads.

    Attributes:
        vertebrae: ``SpineSegmentationLib.result.Vertebra`` objects in file order (cranio-caudal).
    """

    path: Path
    labels_path: Path
    vertebrae: list
    message: str = ""
    run: dict = field(default_factory=dict)
    alternatives: list = field(default_factory=list)


def read_output_folder(path) -> OutputFolder:
    """Read ``vertebrae.json`` of an output folder (the library's reader and file names) and check that
    ``labels.nii.gz`` is there.

    Args:
        path: the output folder of ``spineseg segment`` or ``spineseg-correct``.

    Returns:
        The vertebrae in file order (cranio-caudal), the run message, run info and alternatives.

    Raises:
        ValueError: ``path`` is not a path, the folder or a file is missing, ``vertebrae.json`` is not valid JSON or
            misses a field, a probability (``p_label``, ``p_complete``) is outside [0, 1], or a label is listed twice.
            The message names the file and the field.
    """
    from SpineSegmentationLib.outputs import output_paths
    from SpineSegmentationLib.outputs.vertebrae_json import read_vertebrae_json

    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"the output folder must be a path (str or pathlib.Path), got {path!r}; pass the folder the "
                         "run wrote (SegmentationRun.outputDir)")
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"output folder {folder} does not exist; run the segmentation first")
    paths = output_paths(folder)
    labels_path, vertebrae_path = paths[LABELS_KEY], paths[VERTEBRAE_KEY]
    for required in (labels_path, vertebrae_path):
        if not required.is_file():
            raise ValueError(f"{required} is missing; {folder} is not a complete spineseg output folder")
    data = read_vertebrae_json(vertebrae_path)  # a damaged file: a ValueError naming it and the fix
    records = [_vertebra(entry, i, vertebrae_path) for i, entry in enumerate(data["vertebrae"])]
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
