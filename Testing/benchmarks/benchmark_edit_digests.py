"""What the module's edit tracking adds to a paint stroke and to an Undo in the Segment Editor, and how long a
refresh of its vertebra table takes (slicer-core MRML classes; no widgets, no rendering).

Not a test: it prints wall-clock seconds. A segmentation of ``--size`` voxels (I J K) holds ``--vertebrae``
box-shaped segments in one shared labelmap layer, as the module imports its results. A stroke is what the Segment
Editor does for one Paint stroke with its default settings (the calls of Slicer's
``qSlicerSegmentEditorAbstractEffect::modifySegmentByLabelmap``; the default overwrite mode is that of slicer-core's
``vtkMRMLSegmentEditorNode``): the state is saved for Undo
(``vtkSegmentationHistory::SaveState``), an 11 x 11 x 5 voxel brush is merged into the selected vertebra next to
its box with the other segments overwritten ("Overwrite other segments: All segments", the default, which keeps
the segment in the shared layer), and the segment's status is set to in progress. Undo is
``vtkSegmentationHistory::RestorePreviousState`` (Ctrl+Z).

Both phases, "not tracked" and "tracked" (the module's ``EditTracker`` observing), run in the same conditions:
after one untimed warm-up round of each, every round runs each phase once, the order alternating from round to
round, and each phase starts from the same voxels and tags (its strokes are undone). In a phase, two strokes
are made into two vertebrae and undone; the second stroke (which follows a stroke, so Undo's state copies the
changed layer, as between consecutive strokes in Slicer) and the Undo of it are timed. Printed: median and range
(min-max) over the rounds for each phase, and the median and range of the tracked-minus-not-tracked difference
within a round (what tracking adds); the time to start tracking with no digest kept (every chunk counted, as when
the module first observes a segmentation) and one table refresh (``segment_rows``, after a stroke). With
``--drop-chunk-results`` a third phase drops the kept chunk results before its timed stroke (every chunk of the
layer counted again). The machine's load average is printed at the start and end: other work on the machine adds to
every figure.

Usage: python Testing/benchmarks/benchmark_edit_digests.py [--size 512 512 600] [--rounds 9] [--drop-chunk-results]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "SpineSegmentation"), str(REPO / "Testing" / "Python")]

import slicer  # noqa: E402  (slicer-core)
import vtk  # noqa: E402
from vtk.util.numpy_support import vtk_to_numpy  # noqa: E402

from mrml_helpers import register_segmentation_conversion_rules  # noqa: E402
from SpineSegmentationModuleLib import voxel_digests  # noqa: E402
from SpineSegmentationModuleLib.correction import EDITED_TAG, EditTracker, segment_rows  # noqa: E402
from SpineSegmentationModuleLib.mrml_import import segment_tag  # noqa: E402

LOGIC = slicer.vtkSlicerSegmentationsModuleLogic
BRUSH = (5, 5, 2)  # half-widths in I, J, K: an 11 x 11 x 5 voxel brush


def _box_slices(size, vertebrae: int) -> list[tuple[int, int]]:
    """First and last K slice of each vertebra's box, bottom up."""
    height = size[2] // (vertebrae + 1)
    starts = [(level + 1) * height // 2 + level * height // 2 for level in range(vertebrae)]
    return [(k0, k0 + height - 3) for k0 in starts]


def _segmentation(scene, size, vertebrae: int):
    """A labelmap volume node and a segmentation node imported from it: boxes along K (vertebrae along the column)
    and a marker segment in two opposite corners, so that the shared layer spans the volume."""
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    image = vtk.vtkImageData()
    image.SetDimensions(*size)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    values = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(size[2], size[1], size[0])
    values[:] = 0
    for level, (k0, k1) in enumerate(_box_slices(size, vertebrae)):
        values[k0 : k1 + 1, size[1] // 3 : size[1] // 2, size[0] // 2 - 30 : size[0] // 2 + 30] = level + 1
    values[0, 0, 0] = values[-1, -1, -1] = vertebrae + 1
    image.Modified()
    labelmap.SetAndObserveImageData(image)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "vertebrae")
    if not LOGIC.ImportLabelmapToSegmentationNode(labelmap, segmentation):
        raise RuntimeError("the label map could not be imported")
    return labelmap, segmentation


class _Editor:
    """The Segment Editor's calls for Paint strokes and Undo on one segmentation node (default settings)."""

    def __init__(self, labelmap, segmentation_node):
        self.node = segmentation_node
        self.segmentation = segmentation_node.GetSegmentation()
        self.history = slicer.vtkSegmentationHistory()
        self.history.SetSegmentation(self.segmentation)
        template = LOGIC.CreateOrientedImageDataFromVolumeNode(labelmap)
        self.spacing, self.origin = template.GetSpacing(), template.GetOrigin()
        self.directions = vtk.vtkMatrix4x4()
        template.GetDirectionMatrix(self.directions)
        template.UnRegister(None)  # the caller owns the image CreateOrientedImageDataFromVolumeNode returns

    def ids(self) -> list[str]:
        return [self.segmentation.GetNthSegmentID(n) for n in range(self.segmentation.GetNumberOfSegments())]

    def stroke(self, segment_id: str, center) -> tuple[float, float]:
        """One Paint stroke into ``segment_id`` around IJK ``center``; returns (seconds in all, of them the state
        saved for Undo)."""
        brush = slicer.vtkOrientedImageData()
        brush.SetSpacing(self.spacing)
        brush.SetOrigin(self.origin)
        brush.SetDirectionMatrix(self.directions)
        brush.SetExtent(*(bound for c, half in zip(center, BRUSH) for bound in (c - half, c + half)))
        brush.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
        vtk_to_numpy(brush.GetPointData().GetScalars())[:] = 1
        others = [i for i in self.ids() if i != segment_id]
        start = time.perf_counter()
        self.history.SaveState()
        saved = time.perf_counter()
        if not LOGIC.SetBinaryLabelmapToSegment(brush, self.node, segment_id, LOGIC.MODE_MERGE_MASK, None, False,
                                                others):
            raise RuntimeError(f"the stroke into {segment_id} failed")
        segment = self.segmentation.GetSegment(segment_id)
        if LOGIC.GetSegmentStatus(segment) == LOGIC.NotStarted:
            LOGIC.SetSegmentStatus(segment, LOGIC.InProgress)
        end = time.perf_counter()
        return end - start, saved - start

    def undo(self) -> float:
        start = time.perf_counter()
        if not self.history.RestorePreviousState():
            raise RuntimeError("Undo found no saved state")
        return time.perf_counter() - start

    def layers(self) -> int:
        binary = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
        return len({self.segmentation.GetSegment(i).GetRepresentation(binary).GetAddressAsString("vtkObject")
                    for i in self.ids()})

    def edited(self) -> list[str]:
        return [i for i in self.ids() if segment_tag(self.segmentation.GetSegment(i), EDITED_TAG) == "true"]


def _clear_digests() -> None:
    voxel_digests._chunk_cache.clear()
    voxel_digests._layer_cache.clear()


def _run_phase(phase: str, editor: _Editor, strokes, record: dict) -> None:
    """Two strokes and their Undo in one phase; the second stroke and its Undo are timed into ``record``."""
    tracker = None
    if phase != "not tracked":
        _clear_digests()
        tracker = EditTracker()
        start = time.perf_counter()
        tracker.observe(editor.node)
        record["start tracking"].append(time.perf_counter() - start)
    try:
        (first_id, first_center), (second_id, second_center) = strokes
        editor.stroke(first_id, first_center)
        if phase == "tracked, chunk results dropped":
            voxel_digests._chunk_cache.clear()
        seconds, saving = editor.stroke(second_id, second_center)
        record["stroke"].append(seconds)
        record["of it, state saved for Undo"].append(saving)
        if editor.layers() != 1:
            raise RuntimeError("a stroke moved the segment out of the shared layer: not what is measured here")
        edited = editor.edited()
        if (tracker is None) == (second_id in edited):
            raise RuntimeError(f"{phase}: segments tagged edited after a stroke into {second_id}: {edited}")
        if tracker is None:
            start = time.perf_counter()
            segment_rows(editor.node)
            record["table refresh"].append(time.perf_counter() - start)
        record["Undo"].append(editor.undo())
        editor.undo()
        if editor.edited():
            raise RuntimeError(f"{phase}: segments still tagged edited after Undo: {editor.edited()}")
    finally:
        if tracker is not None:
            tracker.stop()


def _spread(values) -> str:
    return f"median {statistics.median(values):.3f} s (min {min(values):.3f}, max {max(values):.3f}, n={len(values)})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, nargs=3, default=[512, 512, 600], metavar=("I", "J", "K"))
    ap.add_argument("--vertebrae", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=9, help="timed rounds, each phase once per round (default 9)")
    ap.add_argument("--drop-chunk-results", action="store_true",
                    help="also time a tracked phase that drops the kept chunk results before the timed stroke")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if min(args.size[:2]) < 100 or args.vertebrae < 2 or args.size[2] // (args.vertebrae + 1) < 8:
        ap.error(f"--size {' '.join(map(str, args.size))} with --vertebrae {args.vertebrae}: I and J must be at "
                 "least 100, K at least 8 * (vertebrae + 1) and vertebrae at least 2; give a larger --size or fewer "
                 "--vertebrae")
    if args.rounds < 1:
        ap.error(f"--rounds {args.rounds}: give at least 1")

    register_segmentation_conversion_rules()  # as Slicer's Segmentations module does at startup
    scene = slicer.vtkMRMLScene()
    labelmap, segmentation = _segmentation(scene, args.size, args.vertebrae)
    editor = _Editor(labelmap, segmentation)
    vertebrae = editor.ids()[: args.vertebrae]
    boxes = _box_slices(args.size, args.vertebrae)
    rng = np.random.default_rng(args.seed)

    def strokes():
        """Two strokes into two different vertebrae, next to each one's box, at new places each time."""
        chosen = rng.choice(args.vertebrae, size=2, replace=False)
        return [(vertebrae[level], (args.size[0] // 2 + int(rng.integers(-40, 40)),
                                    args.size[1] // 2 + int(rng.integers(-5, 5)),
                                    int(rng.integers(boxes[level][0] + BRUSH[2], boxes[level][1] - BRUSH[2] + 1))))
                for level in chosen]

    phases = ["not tracked", "tracked"] + (["tracked, chunk results dropped"] if args.drop_chunk_results else [])
    print(f"shared layer {'x'.join(map(str, args.size))} voxels, {args.vertebrae} vertebra segments, brush "
          f"{'x'.join(str(2 * h + 1) for h in BRUSH)} voxels; {args.rounds} rounds after a warm-up; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the start")
    warm_up = {key: [] for key in ("start tracking", "stroke", "of it, state saved for Undo", "Undo", "table refresh")}
    for phase in phases:
        _run_phase(phase, editor, strokes(), warm_up)
    records = {phase: {key: [] for key in warm_up} for phase in phases}
    for round_ in range(args.rounds):
        shift = round_ % len(phases)
        for phase in phases[shift:] + phases[:shift]:
            _run_phase(phase, editor, strokes(), records[phase])

    for phase in phases:
        for key, values in records[phase].items():
            if values:
                print(f"{phase}: {key}: {_spread(values)}")
    for phase in phases[1:]:
        for key in ("stroke", "Undo"):
            added = [t - p for t, p in zip(records[phase][key], records["not tracked"][key])]
            print(f"{phase} minus not tracked, same round: {key}: {_spread(added)}")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
