"""Voxel digests of labelmap layers (the edit tracker's and undo's test for "the same voxels"), with the chunk
results they keep between calls."""

from __future__ import annotations

import numpy as np
import pytest
import vtk
from vtk.util.numpy_support import vtk_to_numpy

from SpineSegmentationLib import segment_tags
from SpineSegmentationLib.segment_tags import label_map_digests
from SpineSegmentationModuleLib import voxel_digests
from SpineSegmentationModuleLib.voxel_digests import DIGEST_CHUNK, layer_digests

LABELS = {1, 2, 3}


def _layer(values: np.ndarray, origin_ijk=(0, 0, 0)) -> vtk.vtkImageData:
    """A layer holding ``values`` ([k, j, i]) with its extent starting at ``origin_ijk``."""
    k, j, i = values.shape
    image = vtk.vtkImageData()
    image.SetExtent(origin_ijk[0], origin_ijk[0] + i - 1, origin_ijk[1], origin_ijk[1] + j - 1,
                    origin_ijk[2], origin_ijk[2] + k - 1)
    image.AllocateScalars(vtk.VTK_SHORT, 1)
    _array(image)[:] = values
    return image


def _array(image) -> np.ndarray:
    dims = image.GetDimensions()
    return vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0])


@pytest.fixture()
def values():
    """Three labels in a layer of five chunks; fresh caches."""
    voxel_digests._chunk_cache.clear()
    voxel_digests._layer_cache.clear()
    rng = np.random.default_rng(3)
    shape = (5 * DIGEST_CHUNK // (64 * 64), 64, 64)
    return rng.choice([0, 0, 0, 1, 2, 3], size=shape).astype(np.int16)


def test_counts_are_the_voxels_of_each_label_and_edits_in_place_are_seen(values):
    image = _layer(values)
    before = layer_digests(image, LABELS)
    assert {label: count for label, (count, _) in before.items()} == {v: int((values == v).sum()) for v in LABELS}
    array = _array(image)
    where = np.argwhere(array == 2)[-1]
    array[tuple(where)] = 3  # one voxel of 2 becomes 3, in place (as a layer modified in place)
    assert layer_digests(image, LABELS) == before  # not announced: VTK's modification time is what is watched
    image.Modified()
    after = layer_digests(image, LABELS)
    assert after[1] == before[1]
    assert after[2][0] == before[2][0] - 1 and after[3][0] == before[3][0] + 1
    voxel_digests._chunk_cache.clear()
    voxel_digests._layer_cache.clear()
    assert layer_digests(image, LABELS) == after  # what the kept chunk results give = counting every voxel again


def test_moving_voxels_or_the_layer_extent_changes_the_digest(values):
    image = _layer(values)
    before = layer_digests(image, LABELS)
    shifted = _layer(values, origin_ijk=(1, 0, 0))  # the same bytes one voxel further along I
    assert all(layer_digests(shifted, {v})[v][1] != before[v][1] for v in LABELS)
    array = _array(image)
    first, second = np.argwhere(array == 1)[:2]
    other = np.argwhere(array == 0)[0]
    array[tuple(first)], array[tuple(other)] = 0, 1  # one voxel of 1 moved: same count
    image.Modified()
    moved = layer_digests(image, LABELS)
    assert moved[1][0] == before[1][0] and moved[1] != before[1]
    assert moved[2] == before[2]


def test_only_the_chunks_whose_bytes_changed_are_counted_again(values, monkeypatch):
    image = _layer(values)
    layer_digests(image, LABELS)
    counted = []
    real = segment_tags.chunk_digests
    monkeypatch.setattr(segment_tags, "chunk_digests", lambda chunk, start, *a: counted.append(start) or real(
        chunk, start, *a))
    layer_digests(image, LABELS)
    assert counted == []
    _array(image)[-1, -1, -1] = values[-1, -1, -1] % 3 + 1  # another label in the last voxel: the last chunk
    image.Modified()
    layer_digests(image, LABELS)
    assert counted == [4 * DIGEST_CHUNK]


def test_an_empty_layer_and_labels_not_present_have_zero_digests():
    voxel_digests._chunk_cache.clear()
    voxel_digests._layer_cache.clear()
    assert layer_digests(None, {4}) == {4: (0, 0)}
    assert layer_digests(_layer(np.zeros((2, 3, 4), np.int16)), {4})[4] == (0, 0)
    assert layer_digests(_layer(np.full((2, 3, 4), -5, np.int16)), {1})[1] == (0, 0)  # negative: background


def test_the_library_s_label_map_digest_is_the_module_s_layer_digest_whatever_the_layer_s_extent(values):
    """The command line's digest of a label map (no VTK) equals the module's digest of a layer holding the same voxels
    at the same IJK indices, also when the layer is larger (Slicer pads or crops a layer to the extent it needs), so
    the ``SpineSegmentation.Voxels`` tag of ``segmentation.seg.nrrd`` is what the module computes after reading it."""
    padded = np.zeros((values.shape[0] + 3, values.shape[1] + 2, values.shape[2] + 1), np.int16)
    padded[3:, 2:, 1:] = values
    from_library = label_map_digests(values.astype(np.uint8))
    assert set(from_library) == LABELS
    assert layer_digests(_layer(values), LABELS) == from_library
    assert layer_digests(_layer(padded, origin_ijk=(-1, -2, -3)), LABELS) == from_library
    assert {label: count for label, (count, _) in from_library.items()} == {v: int((values == v).sum()) for v in LABELS}
    with pytest.raises(ValueError, match="3D integer array"):
        label_map_digests(values.astype(np.float32))


def test_the_module_and_the_command_line_write_the_same_tag_in_the_same_format():
    from SpineSegmentationModuleLib import mrml_import

    assert mrml_import.VOXELS_TAG == segment_tags.VOXELS_TAG == "SpineSegmentation.Voxels"
    assert segment_tags.digest_text((12, 3456)) == "12:3456"  # the one format: the module calls it too
    assert not hasattr(mrml_import, "digest_text")  # no copy of it in the module
