"""``vertebrae.json``: the per-vertebra report of a run, for people and programs.

Schema (``schema_version`` 1)::

    {
      "schema_version": 1,
      "vertebrae": [                      # cranio-caudal order (C1 first), one entry per vertebra
        {"label": 20,                     # VerSe number (1-7 C1-C7, 8-19 T1-T12, 20-24 L1-L5, 25 L6, 26 S, 28 T13)
         "name": "L1",
         "complete": true,                # completely visible: p_complete >= 0.5 and not cut by the image border
         "p_complete": 0.97,              # probability of complete visibility, [0, 1]
         "p_label": 0.88,                 # posterior probability of the final label (labeling.py), [0, 1]
         "label_regressed": 20.2,         # the network's raw regressed label (1..24 scale)
         "centroid_ras_mm": [x, y, z],    # whole-vertebra centroid, RAS millimetres (as 3D Slicer shows them);
                                          # centroids_ctd.json: the body centres (VerSe), 12-17 mm away (example CT)
         "volume_mm3": 41234.0,           # on the input grid
         "iterations": 4,                 # network evaluations spent on this vertebra
         "edited": false,                 # made/kept by a person (correction workflow); click / rerun given
                                          # this folder keep it exactly (absent in older files: false)
         "rib_sides": 0,                  # sides (0-2) with a rib touching it; null: not in view
         "sacrum_below": null,            # the lowest two segments only: sacrum right below (true/false); null
                                          # elsewhere or not in view (anatomy_evidence.py)
         "level_stated": false,           # a person stated its level (renumbering, an applied alternative);
                                          # later corrections keep it (absent in older files: false)
         "complete_stated": false},       # a person set "complete" (spineseg-correct complete); later
                                          # corrections keep it (absent in older files: false)
        ...
      ],
      "run": {...},                       # result.run_info as given: model name and version, device,
                                          # test-time mirror, seconds per stage, iteration count
      "alternatives": [                   # best label sequence first (seed 002 section 3.4)
        {"labels": [19, 20, ...], "names": ["T12", "L1", ...], "likelihood": 0.81,  # posterior probability
         "description": "..."},
        ...
      ],
      "message": "...",                   # result.message (says so when no spine was found)
      "warnings": ["..."],                # anatomy and device warnings (run_info["warnings"]): e.g. head-feet
                                          # inverted, GPU out of memory -> CPU; empty when none
      "input": {
        "path": "/abs/path/ct.nii.gz",    # only when known
        "dicom_series_uid": "1.2...",     # only for a DICOM input: the Series Instance UID read ("" when the
                                          # series has none, e.g. anonymised)
        "size": [I, J, K],                # voxels
        "spacing": [sx, sy, sz],          # mm
        "origin_lps_mm": [x, y, z],
        "direction": [9 floats],          # row-major direction cosines (ITK, LPS)
        "orientation": "LPS",             # axis codes, as in centroids_ctd.json
        "voxel_sha256": "9f2c..."         # the CT's identity: voxel_sha256(image), its voxel values; spineseg-correct
                                          # refuses another CT on the same grid (absent in older files: not checked)
      },
      "files": {"labels": "labels.nii.gz", ...}   # the other outputs of the run, relative names
    }

Values are plain JSON (floats rounded to 4 decimals, NaN written as null).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..anatomy import VERSE_NAMES
from ..errors import SpineSegmentationError
from ..io import SERIES_UID_KEY
from ..result import SpineSegmentationResult
from .centroids import orientation_codes

SCHEMA_VERSION = 1


def _plain(value):
    """JSON-safe copy: numpy scalars -> Python, floats rounded to 4 decimals, NaN/inf -> None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()  # numpy scalar
    if hasattr(value, "tolist"):
        return _plain(value.tolist())  # numpy array
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else None
    return str(value)


def voxel_sha256(image: sitk.Image) -> str:
    """SHA-256 (hex) of an image's voxel values, as float64 in the stored [k, j, i] order, after the array's shape.

    The same values give the same digest whatever the pixel type or file format they were read from (a CT saved
    as int16 or float32; -0.0 counts as 0.0); one voxel changed, another scan, or a label map give another. The
    geometry (spacing, origin, direction) is not part of it: compare that with
    :func:`~SpineSegmentationLib.geometry.same_grid`.
    Slice by slice, so that it takes no more memory than one slice as float64 (about 0.15 s for a 512x512x141 CT).
    """
    values = sitk.GetArrayViewFromImage(image)
    digest = hashlib.sha256(np.asarray(values.shape, dtype=np.int64).tobytes())
    for plane in values:
        digest.update((np.ascontiguousarray(plane, dtype=np.float64) + 0.0).tobytes())  # + 0.0: -0.0 as 0.0
    return digest.hexdigest()


def input_description(image: sitk.Image, input_path: Path | None = None) -> dict:
    """The ``input`` block: path, DICOM series UID, size, spacing, origin, direction, orientation codes and the
    digest of the voxel values (:func:`voxel_sha256`)."""
    info = {}
    if input_path is not None:
        info["path"] = str(Path(input_path).resolve())
    if image.HasMetaDataKey(SERIES_UID_KEY):
        info["dicom_series_uid"] = image.GetMetaData(SERIES_UID_KEY)
    info.update(
        size=list(image.GetSize()),
        spacing=list(image.GetSpacing()),
        origin_lps_mm=list(image.GetOrigin()),
        direction=list(image.GetDirection()),
        orientation="".join(orientation_codes(image)),
        voxel_sha256=voxel_sha256(image),
    )
    return info


def vertebrae_document(
    result: SpineSegmentationResult, image: sitk.Image, input_path: Path | None = None, files: dict | None = None
) -> dict:
    """The ``vertebrae.json`` document of ``result`` (schema in the module docstring)."""
    alternatives = [
        {
            "labels": [int(v) for v in alt.labels],
            "names": [VERSE_NAMES.get(int(v), str(v)) for v in alt.labels],
            "likelihood": alt.likelihood,
            "description": alt.description,
        }
        for alt in result.alternatives
    ]
    document = {
        "schema_version": SCHEMA_VERSION,
        "vertebrae": [v.to_dict() for v in result.vertebrae],
        "run": dict(result.run_info),
        "alternatives": alternatives,
        "message": result.message,
        "warnings": list(result.run_info.get("warnings", [])),
        "input": input_description(image, input_path),
    }
    if files:
        document["files"] = dict(files)
    return _plain(document)


def write_vertebrae_json(
    result: SpineSegmentationResult,
    image: sitk.Image,
    path: Path,
    input_path: Path | None = None,
    files: dict | None = None,
) -> None:
    """Write :func:`vertebrae_document` to ``path`` (UTF-8, indented)."""
    text = json.dumps(vertebrae_document(result, image, input_path, files), indent=2, allow_nan=False)
    Path(path).write_text(text + "\n", encoding="utf-8")


def read_vertebrae_json(path: Path) -> dict:
    """Read a ``vertebrae.json`` file.

    Raises:
        SpineSegmentationError: (a ValueError) the file is damaged (not UTF-8 text, not valid JSON: e.g. cut short)
            or is not a vertebrae.json of this project (no ``vertebrae`` list); the message names the file and the
            fix.
    """
    fix = "restore it from the run that wrote it, or run the segmentation again"
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise SpineSegmentationError(f"cannot read {path} ({exc}): the file is damaged (not UTF-8 text); "
                                     f"{fix}") from exc
    except json.JSONDecodeError as exc:
        raise SpineSegmentationError(f"cannot read {path} ({exc}): the file is damaged or truncated (not valid "
                                     f"JSON); {fix}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("vertebrae"), list):
        raise SpineSegmentationError(f"{path} is not a spineseg vertebrae.json (it has no 'vertebrae' list); {fix}")
    return data
