"""Vertebra centroids: measured from a label map, and written/read in the VerSe centroid format.

VerSe centroid file (``centroids_ctd.json``, VerSe 2020 layout)::

    [{"direction": ["L", "P", "S"]},
     {"label": 20, "X": 61.873, "Y": 33.146, "Z": 58.42},
     ...]

**Axis-code convention (checked on the real VerSe 2020 masks in shared/data/verse_masks).** ``X``, ``Y``,
``Z`` are continuous voxel indices (I, J, K; 0-based, voxel centre = integer) of the label map written
beside it (``labels.nii.gz``), and ``direction`` gives, for the I, J and K axes in turn, the anatomical
direction towards which that index *increases*: ``L``/``R`` (LPS +x / -x), ``P``/``A`` (+y / -y),
``S``/``I`` (+z / -z). These are the image's own orientation codes (the same as nibabel's
``aff2axcodes`` and SimpleITK's ``DICOMOrientImageFilter.GetOrientationFromDirectionCosines``): the
VerSe 2020 masks ``sub-verse004``/``sub-verse010`` (direction cosines of a PIR image) come with
``["P", "I", "R"]``, and ``sub-gl003``/``sub-gl017`` (identity direction) with ``["L", "P", "S"]``; the C1
centroid of ``sub-gl003`` in its ctd file equals the C1 voxel centroid of its mask to 0.1 voxel. So a
centroid is converted to a physical point with the label map's own affine
(``TransformContinuousIndexToPhysicalPoint``). :func:`read_ctd` also accepts files whose codes differ
from the image's (as in VerSe 2019): it then interprets the indices on the image reoriented to those codes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..anatomy import SACRUM
from ..discs import BODY_DEPTH_SHARE
from ..errors import SpineSegmentationError
from ..text_files import JSON_ADVICE, read_utf8_text

#: Axis codes -> LPS axis (0: L/R, 1: P/A, 2: S/I).
_AXIS_OF = {"L": 0, "R": 0, "P": 1, "A": 1, "S": 2, "I": 2}

#: VerSe label of C1 (the atlas has no body).
C1 = 1

#: Decimals written for the voxel coordinates (VerSe files use 1; 3 keeps the round trip below 0.001 voxel).
CTD_DECIMALS = 3

_AXIS_LETTERS = (("L", "R"), ("P", "A"), ("S", "I"))  # (+, -) direction of LPS x, y, z


def orientation_codes(image: sitk.Image) -> list[str]:
    """Axis codes of ``image``: for voxel axes I, J, K, the letter (L/R, P/A, S/I) they increase towards.

    The dominant LPS component of each direction-cosine column decides (oblique images get the nearest code).

    Raises:
        ValueError: if two axes point mostly along the same anatomical axis (degenerate direction matrix).
    """
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    codes = []
    used = set()
    for axis in range(3):
        column = direction[:, axis]
        dominant = int(np.argmax(np.abs(column)))
        if dominant in used:
            raise ValueError(
                f"direction matrix {direction.tolist()} has two axes along the same anatomical axis; "
                "fix the image header (direction cosines must be orthonormal)"
            )
        used.add(dominant)
        codes.append(_AXIS_LETTERS[dominant][0 if column[dominant] > 0 else 1])
    return codes


def label_centroids_lps(labels: sitk.Image) -> dict[int, np.ndarray]:
    """Centroid of every non-zero label, LPS millimetres.

    Args:
        labels: integer label map (any direction/spacing).

    Returns:
        ``{label: array([x, y, z])}`` in LPS mm (mean of the physical voxel-centre positions), labels sorted.
    """
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.ComputePerimeterOff()
    stats.Execute(_as_integer(labels))
    return {int(lab): np.array(stats.GetCentroid(lab), dtype=float) for lab in sorted(stats.GetLabels())}


def body_centres_lps(labels: sitk.Image) -> dict[int, np.ndarray]:
    """The point VerSe marks for every non-zero label: the centre of the vertebral body, LPS millimetres.

    VerSe's centroid annotations are vertebral-body centres (``*_seg-subreg_ctd.json``); the whole vertebra's
    centroid lies 7-15 mm behind them (its arch). The body is taken as the front :data:`~..discs.BODY_DEPTH_SHARE`
    of the label's extent along the patient's anterior-posterior axis (LPS y), as the traversal's disc cut takes
    it; its voxel centroid is the point. C1, which has no body, and the sacrum keep the whole label's centroid (the
    VerSe files' C1 is its whole centroid). On the four VerSe subjects in ``shared/data/verse_masks`` (35 vertebrae
    C2-L5) this lies 2.9 mm from their marked points on average, 8.0 mm at most; the whole centroid 11.4 mm on
    average (``test_outputs.py``).

    Args:
        labels: integer label map (any direction/spacing), VerSe numbers.

    Returns:
        ``{label: array([x, y, z])}`` in LPS mm, labels sorted.
    """
    array = sitk.GetArrayViewFromImage(labels)
    kji = np.nonzero(array)
    values = array[kji]
    direction = np.array(labels.GetDirection(), dtype=float).reshape(3, 3)
    to_lps = direction * np.array(labels.GetSpacing(), dtype=float)[None, :]
    points = np.stack(kji[::-1], axis=1).astype(float) @ to_lps.T + np.array(labels.GetOrigin(), dtype=float)
    centres = {}
    for label in np.unique(values):
        own = points[values == label]
        if int(label) in (C1, SACRUM):
            centres[int(label)] = own.mean(axis=0)
            continue
        depth = own[:, 1]  # LPS y grows towards posterior
        front = depth <= depth.min() + BODY_DEPTH_SHARE * (depth.max() - depth.min())
        centres[int(label)] = own[front].mean(axis=0)
    return centres


def label_volumes_mm3(labels: sitk.Image) -> dict[int, float]:
    """Volume of every non-zero label in mm^3 (voxel count x voxel volume)."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.ComputePerimeterOff()
    stats.Execute(_as_integer(labels))
    return {int(lab): float(stats.GetPhysicalSize(lab)) for lab in sorted(stats.GetLabels())}


def _as_integer(labels: sitk.Image) -> sitk.Image:
    if labels.GetPixelID() in (sitk.sitkUInt8, sitk.sitkUInt16, sitk.sitkUInt32, sitk.sitkUInt64):
        return labels
    return sitk.Cast(sitk.Clamp(labels, lowerBound=0), sitk.sitkUInt32)


def ctd_entries(labels: sitk.Image) -> list[dict]:
    """VerSe centroid entries of a label map: the vertebral-body centres (:func:`body_centres_lps`), in the
    convention of the module docstring.

    Returns:
        ``[{"direction": [c_I, c_J, c_K]}, {"label": n, "X": i, "Y": j, "Z": k}, ...]``, labels ascending,
        coordinates in continuous voxel indices of ``labels``.
    """
    entries: list[dict] = [{"direction": orientation_codes(labels)}]
    for lab, lps in body_centres_lps(labels).items():
        ijk = labels.TransformPhysicalPointToContinuousIndex([float(v) for v in lps])
        entries.append({"label": lab, **{k: round(float(v), CTD_DECIMALS) for k, v in zip("XYZ", ijk)}})
    return entries


def write_ctd(labels: sitk.Image, path: Path) -> None:
    """Write ``labels``'s centroids to ``path`` in the VerSe format (module docstring)."""
    lines = ",\n".join(" " + json.dumps(entry) for entry in ctd_entries(labels))  # one entry per line
    Path(path).write_text("[\n" + lines + "\n]\n", encoding="utf-8")


def read_ctd(path: Path, labels: sitk.Image) -> dict[int, np.ndarray]:
    """Read a VerSe centroid file and convert its centroids to LPS millimetres.

    Args:
        path: ``*_ctd.json`` file.
        labels: the label map (or image) whose voxel grid the file refers to.

    Returns:
        ``{label: array([x, y, z])}`` LPS mm; entries with a NaN coordinate are left out, as VerSe's reader does.

    Raises:
        SpineSegmentationError: if the file is not a VerSe centroid list (not UTF-8, not JSON, not one
            ``direction`` entry, which may stand anywhere in the list as VerSe's reader allows, or not three axis
            codes; missing keys).
    """
    try:
        data = json.loads(read_utf8_text(Path(path), "VerSe centroid file", JSON_ADVICE))
    except json.JSONDecodeError as error:
        raise SpineSegmentationError(f"{path} is not a VerSe centroid file: not valid JSON ({error})") from error
    directions = [e for e in data if isinstance(e, dict) and "direction" in e] if isinstance(data, list) else []
    if len(directions) != 1:
        raise SpineSegmentationError(
            f"{path} is not a VerSe centroid file: expected a list holding one {{'direction': [...]}} entry (the axis "
            f"codes of its voxel indices, e.g. ['L', 'P', 'S']), found {len(directions)}; add the codes of the image "
            "the points were marked on"
        )
    raw = directions[0]["direction"]
    codes = [str(c).upper() for c in raw] if isinstance(raw, (list, tuple, str)) else []
    if len(codes) != 3 or sorted(_AXIS_OF[c] for c in codes if c in _AXIS_OF) != [0, 1, 2]:
        raise SpineSegmentationError(
            f"{path}: direction {directions[0]['direction']} is not three axis codes, one of L/R, P/A, S/I each"
        )
    grid = labels
    if codes != orientation_codes(labels):
        # The indices refer to the image reoriented to these codes (VerSe 2019 style files).
        grid = sitk.DICOMOrient(labels, "".join(codes))
    centroids = {}
    for entry in (e for e in data if e is not directions[0]):
        missing = {"label", "X", "Y", "Z"} - set(entry) if isinstance(entry, dict) else {"label", "X", "Y", "Z"}
        if missing:
            raise SpineSegmentationError(f"{path}: centroid entry {entry} lacks {sorted(missing)}")
        ijk = [float(entry[k]) for k in "XYZ"]
        if not all(np.isfinite(ijk)):  # VerSe's own reader skips such entries (a level without a marked point)
            continue
        centroids[int(entry["label"])] = np.array(grid.TransformContinuousIndexToPhysicalPoint(ijk))
    return centroids
