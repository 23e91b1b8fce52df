"""Digests of the voxels of each segment of a segmentation: equal digests = the same voxels.

The edit tracker compares them after every change of the voxels (each paint stroke of the Segment Editor), the
one-step undo and the correction run before they put anything over the segments. A labelmap layer is read in
chunks of :data:`DIGEST_CHUNK` voxels, and only the voxels of segments (non-zero) are weighted; each chunk's
per-label result is kept, addressed by the chunk's content (SHA-256 of its bytes) and place, so that after a paint
stroke only the chunks whose bytes changed are counted again. Measured with
``Testing/benchmarks/benchmark_edit_digests.py`` on a 512 x 512 x 600 shared layer with 20 vertebrae: 0.13 s added
to a stroke and 0.21 s for the first digest, where weighting every voxel of the layer took 7.4-7.9 s each.

The digest of a chunk is :func:`SpineSegmentationLib.segment_tags.chunk_digests`, the function with which the
command line tags the segments of ``segmentation.seg.nrrd`` (``SpineSegmentation.Voxels``): here only the layers,
the chunking and the kept results. Needs only VTK and numpy (3D Slicer or the PyPI ``slicer-core`` package) and
``SpineSegmentationLib`` on ``sys.path`` (``ensureLibraryImportable`` of the module logic).
"""

from __future__ import annotations

from collections import OrderedDict
import hashlib

import numpy as np

#: Voxels counted at a time: a paint stroke of a few slices of a 512 x 512 image touches a few chunks.
DIGEST_CHUNK = 1 << 20
#: Chunk results kept (each a few hundred bytes): the chunks of several layers of a few hundred million voxels.
_CACHE_CHUNKS = 8192

#: Whole-layer results kept by (address, image MTime, scalars MTime): events that leave the voxels alone
#: (SegmentModified storms of the Segment Editor's Undo, a closed surface being made) cost no hashing.
_LAYERS_KEPT = 64

_chunk_cache: OrderedDict = OrderedDict()
_layer_cache: OrderedDict = OrderedDict()


def layer_digests(image, labels: set[int]) -> dict[int, tuple[int, int]]:
    """(voxel count, sum of voxel weights) per label value of one labelmap layer (``vtkImageData`` or None).

    A layer not modified since an earlier call (same object, same VTK modification time of the image and its
    scalars; a change without ``Modified()`` is not seen, as by VTK itself) is not read again, and chunks whose
    bytes, scalar type, dimensions, extent and position equal those of an earlier call are not counted again (the
    result of a chunk depends on nothing else).
    """
    scalars = image.GetPointData().GetScalars() if image is not None else None
    if scalars is None:
        return {label: (0, 0) for label in labels}
    key = (image.GetAddressAsString("vtkObject"), image.GetMTime(), scalars.GetMTime())
    found = _layer_cache.get(key)
    if found is None:
        found = _count_layer(image, scalars)
        _layer_cache[key] = found
        if len(_layer_cache) > _LAYERS_KEPT:
            _layer_cache.popitem(last=False)
    else:
        _layer_cache.move_to_end(key)
    return {label: found.get(label, (0, 0)) for label in labels}


def _count_layer(image, scalars) -> dict[int, tuple[int, int]]:
    """(voxel count, sum of voxel weights) of every label value present in a layer, chunk by chunk."""
    from vtk.util.numpy_support import vtk_to_numpy

    from SpineSegmentationLib import segment_tags  # the one digest function, also the command line's

    values = vtk_to_numpy(scalars).ravel()
    dims, extent = tuple(image.GetDimensions()), tuple(image.GetExtent())
    place = (values.dtype.str, dims, extent)
    totals: dict[int, list] = {}
    for start in range(0, values.size, DIGEST_CHUNK):
        chunk = np.ascontiguousarray(values[start : start + DIGEST_CHUNK])
        key = (place, start, hashlib.sha256(chunk).digest())
        found = _chunk_cache.get(key)
        if found is None:
            found = segment_tags.chunk_digests(chunk, start, dims, extent)
            _chunk_cache[key] = found
            if len(_chunk_cache) > _CACHE_CHUNKS:
                _chunk_cache.popitem(last=False)
        else:
            _chunk_cache.move_to_end(key)
        for label, (count, total) in found.items():
            entry = totals.setdefault(label, [0, 0])
            entry[0] += count
            entry[1] += total
    return {label: (count, total) for label, (count, total) in totals.items()}


def segment_layers(segmentation, segment_ids) -> list[tuple[object, list[tuple[str, int]]]]:
    """The binary labelmap layers of ``segment_ids`` in a ``vtkSegmentation``, each once however many segments
    share it: (layer ``vtkImageData`` or None, [(segment ID, label value), ...] of its segments).

    A segmentation whose source is another representation (a closed surface, made the source in the Segmentations
    module) gets its binary labelmap made from that source first, as Slicer's own tools do; the source stays.
    """
    import slicer

    binary = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    if segmentation.GetSourceRepresentationName() != binary:
        # converts when any segment lacks it (vtkSegmentation::CreateRepresentation checks each, not
        # ContainsRepresentation, which asks the first); no rule to a labelmap leaves the layers None
        segmentation.CreateRepresentation(binary)
    layers: dict[str, tuple] = {}
    for segment_id in segment_ids:
        segment = segmentation.GetSegment(segment_id)
        image = segment.GetRepresentation(binary)
        key = image.GetAddressAsString("vtkObject") if image is not None else ""
        layers.setdefault(key, (image, []))[1].append((segment_id, int(segment.GetLabelValue())))
    return list(layers.values())


def segment_digests(segmentation) -> dict[str, tuple[int, int]]:
    """Segment ID -> a digest of its voxels (binary labelmap) for every segment of a ``vtkSegmentation``.

    Each labelmap layer is read once (segments sharing a layer are told apart by their label value).
    """
    ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    digests = {}
    for image, members in segment_layers(segmentation, ids):
        of_layer = layer_digests(image, {label for _, label in members})
        digests.update({segment_id: of_layer[label] for segment_id, label in members})
    return {segment_id: digests[segment_id] for segment_id in ids}
