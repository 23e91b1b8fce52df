"""The project's own segment tags (one function, :func:`vertebra_tags`) that both ``segmentation.seg.nrrd``
(``outputs/segmentation_nrrd.py``) and the Slicer module's segmentation node (``SpineSegmentationModuleLib/
mrml_import.py``) carry, and the digest of a segment's voxels (:func:`chunk_digests`, the
``SpineSegmentation.Voxels`` tag) that the command line writes and the module checks. Standard library and numpy only:
the Slicer module imports it in Slicer's Python, where slicerio and torch may be missing; no slicer, no VTK.
"""

from __future__ import annotations

import math

import numpy as np

#: Prefix of the project's own segment tags.
TAG_PREFIX = "SpineSegmentation."
#: Tag of a segment's completeness flag: "true" (whole in the image) or "false" (cut by the field of view); the Slicer
#: module reads a segment without it as complete (``SpineSegmentationModuleLib/correction.py``, its ``COMPLETE_TAG``,
#: the same name: the module defines its own, as the library may not be on ``sys.path`` when it is imported).
COMPLETE_TAG = TAG_PREFIX + "Complete"
#: Tag of a segment whose level a person stated (``Vertebra.level_stated``).
LEVEL_STATED_TAG = TAG_PREFIX + "LevelStated"
#: Tag of a segment whose completeness flag (``Complete``) a person set (``Vertebra.complete_stated``).
COMPLETE_STATED_TAG = TAG_PREFIX + "CompleteStated"
#: Tag holding a digest of a vertebra's voxels as they were given (:func:`digest_text`): a segment whose voxels no
#: longer match it was edited, also where no edit tracker of the module saw it (a ``segmentation.seg.nrrd`` of the
#: command line or a saved scene edited before the module was opened).
VOXELS_TAG = TAG_PREFIX + "Voxels"

#: Per-voxel weights of the digests: a fixed pseudo-random integer in [0, 2^20) per voxel from its IJK index (so that
#: a labelmap layer that grows or shrinks keeps the digests of its unchanged segments), with the spatial-hash primes
#: of Teschner et al. 2003; moving voxels changes a digest as adding or removing them does. Integer weights below
#: 2^20 keep every sum exact in float64 up to 2^33 voxels, whatever the order of the chunks.
_HASH_PRIMES = (73856093, 19349663, 83492791)
_HASH_MODULUS = 2 ** 20
#: Above this label value a chunk's values are sorted out (np.unique) instead of counted by value.
_LARGEST_COUNTED_VALUE = 1 << 16
#: Voxels of a label map weighted at a time by :func:`label_map_digests` (bounds the memory, not the result).
LABEL_MAP_CHUNK = 1 << 20


def vertebra_tags(vertebra) -> dict[str, str]:
    """Every project tag of a :class:`~SpineSegmentationLib.result.Vertebra`'s segment: ``Label`` (VerSe number),
    ``Complete`` and ``Edited`` ("true"/"false"), ``PComplete`` and ``PLabel`` (4 decimals), ``LabelRegressed``
    (the network's raw label, 4 decimals; left out when it is not a finite number, so that renumbering falls back to
    the level's position as for a segment a person drew), ``LevelStated`` ("true", only where a person stated the
    level), ``CompleteStated`` ("true", only where a person set ``Complete``) and the anatomy evidence
    (:func:`evidence_tags`)."""
    tags = {
        TAG_PREFIX + "Label": str(int(vertebra.label)),
        COMPLETE_TAG: "true" if vertebra.complete else "false",
        TAG_PREFIX + "PComplete": f"{float(vertebra.p_complete):.4f}",
        TAG_PREFIX + "PLabel": f"{float(vertebra.p_label):.4f}",
        TAG_PREFIX + "Edited": "true" if vertebra.edited else "false",
    }
    if math.isfinite(vertebra.label_regressed):
        tags[TAG_PREFIX + "LabelRegressed"] = f"{float(vertebra.label_regressed):.4f}"
    if vertebra.level_stated:
        tags[LEVEL_STATED_TAG] = "true"
    if vertebra.complete_stated:
        tags[COMPLETE_STATED_TAG] = "true"
    return {**tags, **evidence_tags(vertebra)}


def evidence_tags(vertebra) -> dict[str, str]:
    """``RibSides`` ("0"-"2") and ``SacrumBelow`` ("true"/"false") tags of a
    :class:`~SpineSegmentationLib.result.Vertebra`'s anatomy evidence (``anatomy_evidence.py``); a tag is left out
    where the evidence was not measured (None)."""
    tags = {}
    if vertebra.rib_sides is not None:
        tags[TAG_PREFIX + "RibSides"] = str(int(vertebra.rib_sides))
    if vertebra.sacrum_below is not None:
        tags[TAG_PREFIX + "SacrumBelow"] = "true" if vertebra.sacrum_below else "false"
    return tags


def flat_to_ijk(flat: np.ndarray, dims, extent) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IJK indices (I, J, K integer arrays) of flat positions ``flat`` in a labelmap layer's scalars (I fastest, the C
    order of a [k, j, i] array) whose dimensions are ``dims`` (I, J, K) and whose first voxel has the IJK index
    (``extent[0]``, ``extent[2]``, ``extent[4]``) (VTK's extent: min_i, max_i, min_j, max_j, min_k, max_k)."""
    return (flat % dims[0] + extent[0], flat // dims[0] % dims[1] + extent[2],
            flat // (dims[0] * dims[1]) + extent[4])


def chunk_digests(chunk: np.ndarray, start: int, dims, extent) -> dict[int, tuple[int, int]]:
    """The digest of every label in one chunk of a labelmap layer: label value -> (voxel count, sum of the voxels'
    weights), two Python ints. The one digest function of the project: the module weighs Slicer's layers with it
    (``SpineSegmentationModuleLib/voxel_digests.py``), the command line the label map it writes
    (:func:`label_map_digests`), so that equal voxels give equal digests.

    Args:
        chunk: 1D integer array, the layer's scalars from flat position ``start`` on (I fastest); values <= 0 are
            background and belong to no label.
        start: flat position of ``chunk[0]`` in the layer.
        dims: the layer's dimensions (I, J, K) in voxels.
        extent: the layer's VTK extent (min_i, max_i, min_j, max_j, min_k, max_k); a voxel's weight depends on its
            IJK index, not on its flat position, so digests of the same voxels in layers of other extents agree.

    Digests of chunks add up (count + count, sum + sum) to the digest of the whole layer, exactly.
    """
    inside = np.flatnonzero(chunk > 0)  # segment voxels only: background (0, negative) is no segment's
    values = chunk[inside].astype(np.int64)
    if not values.size:
        return {}
    labels, inverse = np.arange(values.max() + 1), values  # label values of a layer are small: count by value
    if labels.size > _LARGEST_COUNTED_VALUE:
        labels, inverse = np.unique(values, return_inverse=True)
    hashed = np.zeros(values.size, dtype=np.uint64)
    for index, prime in zip(flat_to_ijk(inside + start, dims, extent), _HASH_PRIMES):
        hashed ^= index.astype(np.uint64) * np.uint64(prime)
    weights = (hashed % np.uint64(_HASH_MODULUS)).astype(np.float64)
    counts = np.bincount(inverse, minlength=labels.size)
    sums = np.bincount(inverse, weights=weights, minlength=labels.size)
    present = np.flatnonzero(counts)
    return {int(labels[n]): (int(counts[n]), int(sums[n])) for n in present}


def label_map_digests(labels: np.ndarray) -> dict[int, tuple[int, int]]:
    """:func:`chunk_digests` of a whole label map: label value -> (voxel count, sum of weights) of every value > 0.

    Args:
        labels: integer array [k, j, i] (numpy order of a SimpleITK image: I fastest), IJK index (0, 0, 0) first,
            as Slicer's storage node places the voxels of a ``.seg.nrrd`` without ``ReferenceImageExtentOffset``.
            Read :data:`LABEL_MAP_CHUNK` voxels at a time, without a copy of the whole array when it is contiguous.

    Raises:
        ValueError: ``labels`` is not a 3D integer array.
    """
    if labels.ndim != 3 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"a label map digest needs a 3D integer array [k, j, i], got {labels.ndim}D {labels.dtype}")
    dims = labels.shape[::-1]
    extent = tuple(b for n in dims for b in (0, n - 1))
    flat = labels.reshape(-1)
    totals: dict[int, tuple[int, int]] = {}
    for start in range(0, flat.size, LABEL_MAP_CHUNK):
        for label, (count, total) in chunk_digests(flat[start : start + LABEL_MAP_CHUNK], start, dims, extent).items():
            before = totals.get(label, (0, 0))
            totals[label] = (before[0] + count, before[1] + total)
    return totals


def digest_text(digest: tuple[int, int]) -> str:
    """The :data:`VOXELS_TAG` value of a digest (voxel count, sum of weights): ``"count:sum"``."""
    return f"{int(digest[0])}:{int(digest[1])}"
