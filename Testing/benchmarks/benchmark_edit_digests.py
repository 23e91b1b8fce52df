"""How long the module's edit tracking adds to one paint stroke in the Segment Editor, and how long a refresh of its
vertebra table takes (slicer-core MRML classes).

Not a test: it prints seconds per stroke. A segmentation of ``--size`` voxels (I J K) holds ``--vertebrae``
box-shaped segments in one shared labelmap layer, as the module imports its results; each stroke adds a small
box of voxels to one segment the way the Segment Editor does (``SetBinaryLabelmapToSegment`` with a
brush-sized modifier, merge mode), with the module's ``EditTracker`` observing. Printed: the stroke without
tracking, with tracking (chunk results reused, as in Slicer), and with every chunk counted again (what each
stroke cost before the chunk results were kept); then one table refresh (``segment_rows``: volume per segment).

Usage: python Testing/benchmarks/benchmark_edit_digests.py [--size 512 512 600] [--strokes 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "SpineSegmentation")]

import slicer  # noqa: E402  (slicer-core)
import vtk  # noqa: E402
from vtk.util.numpy_support import vtk_to_numpy  # noqa: E402

from SpineSegmentationModuleLib import voxel_digests  # noqa: E402
from SpineSegmentationModuleLib.correction import EDITED_TAG, EditTracker, segment_rows  # noqa: E402
from SpineSegmentationModuleLib.mrml_import import segment_tag  # noqa: E402


def _segmentation(size, vertebrae: int):
    scene = slicer.vtkMRMLScene()
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    image = vtk.vtkImageData()
    image.SetDimensions(*size)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    values = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(size[2], size[1], size[0])
    values[:] = 0
    height = size[2] // (vertebrae + 1)
    for level in range(vertebrae):  # boxes along K, as vertebrae along the column
        k0 = (level + 1) * height // 2 + level * height // 2
        values[k0 : k0 + height - 2, size[1] // 3 : size[1] // 2, size[0] // 2 - 30 : size[0] // 2 + 30] = level + 1
    values[0, 0, 0] = values[-1, -1, -1] = vertebrae + 1  # a "marker" segment: the shared layer spans the volume
    image.Modified()
    labelmap.SetAndObserveImageData(image)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "vertebrae")
    if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation):
        raise RuntimeError("the label map could not be imported")
    return labelmap, segmentation


def _stroke(labelmap, segmentation, segment_id: str, center) -> float:
    """One brush-sized merge into a segment; returns its seconds."""
    brush = slicer.vtkSlicerSegmentationsModuleLogic.CreateOrientedImageDataFromVolumeNode(labelmap)
    i, j, k = center
    brush.SetExtent(i - 5, i + 5, j - 5, j + 5, k - 2, k + 2)
    brush.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    vtk_to_numpy(brush.GetPointData().GetScalars())[:] = 1
    start = time.perf_counter()
    slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        brush, segmentation, segment_id, slicer.vtkSlicerSegmentationsModuleLogic.MODE_MERGE_MASK)
    seconds = time.perf_counter() - start
    brush.UnRegister(None)  # the caller owns the image CreateOrientedImageDataFromVolumeNode returns
    return seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, nargs=3, default=[512, 512, 600], metavar=("I", "J", "K"))
    ap.add_argument("--vertebrae", type=int, default=20)
    ap.add_argument("--strokes", type=int, default=5)
    args = ap.parse_args(argv)
    labelmap, segmentation = _segmentation(args.size, args.vertebrae)
    ids = [segmentation.GetSegmentation().GetNthSegmentID(n) for n in range(args.vertebrae)]
    rng = np.random.default_rng(0)

    def centers():  # next to the vertebrae, where a reviewer paints; new places each phase
        return [(args.size[0] // 2 + int(rng.integers(-40, 40)), args.size[1] // 2 + int(rng.integers(-5, 5)),
                 int(rng.integers(10, args.size[2] - 10))) for _ in range(args.strokes)]

    layer = segmentation.GetSegmentation().GetSegment(ids[0]).GetRepresentation(
        slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    print(f"shared layer {'x'.join(map(str, layer.GetDimensions()))} voxels, {args.vertebrae} vertebra segments, "
          f"{args.strokes} strokes of 11x11x5 voxels per line")

    plain = [_stroke(labelmap, segmentation, ids[n % len(ids)], c) for n, c in enumerate(centers())]
    tracker = EditTracker()
    start = time.perf_counter()
    tracker.observe(segmentation)
    print(f"start tracking (every chunk counted): {time.perf_counter() - start:.2f} s")
    tracked = [_stroke(labelmap, segmentation, ids[n % len(ids)], c) for n, c in enumerate(centers())]
    counted_again = []
    for n, c in enumerate(centers()):
        voxel_digests._chunk_cache.clear()
        counted_again.append(_stroke(labelmap, segmentation, ids[n % len(ids)], c))
    edited = sum(segment_tag(segmentation.GetSegmentation().GetSegment(i), EDITED_TAG) == "true" for i in ids)
    tracker.stop()
    for name, seconds in (("stroke, not tracked", plain), ("stroke, tracked", tracked),
                          ("stroke, tracked, every chunk counted again", counted_again)):
        print(f"{name}: median {statistics.median(seconds):.3f} s, max {max(seconds):.3f} s")
    print(f"segments tagged edited: {edited} (expected {min(args.strokes, args.vertebrae)})")
    start = time.perf_counter()
    rows = segment_rows(segmentation)
    print(f"table refresh ({len(rows)} rows): {time.perf_counter() - start:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
