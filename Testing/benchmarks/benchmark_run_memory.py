"""Benchmark (not a test): the most memory numpy's arrays hold at once in a run on a CT in a wide field of view.

A scan reconstructed in a wide field of view has large canonical (2.5 mm) and evidence (2 mm) grids; the example CT
(Testing/Data/example_ct.nii.gz) padded with air (-1024 HU) stands for it. Prints tracemalloc's peak (numpy's arrays;
not ITK's nor PyTorch's) per voxel of the grid for:

- ``anatomy_evidence.gather_evidence`` (the CT padded by 90 mm, its reference vertebrae as the segmentation), per
  voxel of its 2 mm grid: 2026-12-07 28-29 bytes before the evidence was made to free its HU volume and build no
  whole-grid float64 temporaries, about 16 after;
- a whole ``pipeline.segment_spine`` run (the CT padded by 60 mm, the shipped model, CPU), per voxel of its 2.5 mm
  canonical grid: 85 before, about 55 after.

Peak resident memory of whole runs (what ``validation.estimated_memory_bytes`` bounds) comes from
``benchmark_pipeline.py`` or GNU time.

Usage:
    python Testing/benchmarks/benchmark_run_memory.py [--pad-evidence-mm 90] [--pad-run-mm 60]
"""

from __future__ import annotations

import argparse
import tracemalloc
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from SpineSegmentationLib.anatomy import to_verse
from SpineSegmentationLib.anatomy_evidence import EVIDENCE_SPACING_MM, gather_evidence
from SpineSegmentationLib.geometry import canonical_reference
from SpineSegmentationLib.pipeline import segment_spine

REPO = Path(__file__).resolve().parents[2]
CT = REPO / "Testing" / "Data" / "example_ct.nii.gz"
REFERENCE = REPO.parent / "shared" / "data" / "ct" / "totalsegmentator_example" / "example_ct_totalseg_vertebrae.nii.gz"


def numpy_peak(function, *args, **kwargs):
    """``function(*args, **kwargs)`` and the most memory numpy's arrays held at once above the start (bytes)."""
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        result = function(*args, **kwargs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak - start


def padded(image: sitk.Image, pad_mm: float, value: float) -> sitk.Image:
    """``image`` padded with ``value`` by ``pad_mm`` on every side."""
    pad = [int(np.ceil(pad_mm / s)) for s in image.GetSpacing()]
    return sitk.ConstantPad(image, pad, pad, value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pad-evidence-mm", type=float, default=90.0)
    parser.add_argument("--pad-run-mm", type=float, default=60.0)
    args = parser.parse_args()
    ct = sitk.ReadImage(str(CT))
    labels = sitk.Resample(sitk.ReadImage(str(REFERENCE)), ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    wide_ct, wide_labels = padded(ct, args.pad_evidence_mm, -1024), padded(labels, args.pad_evidence_mm, 0)
    ids = to_verse(sitk.GetArrayFromImage(wide_labels), "totalseg").astype(np.int32)
    ids[ids == 26] = 0  # the sacrum is bone outside the column, as in a segmentation result
    order = [int(v) for v in np.unique(ids) if v > 0]
    voxels = int(np.prod(canonical_reference(wide_ct, EVIDENCE_SPACING_MM).GetSize(), dtype=np.int64))
    _, peak = numpy_peak(gather_evidence, wide_ct, ids, order)
    print(f"gather_evidence, CT padded by {args.pad_evidence_mm:g} mm: {voxels / 1e6:.1f} M voxels of its "
          f"{EVIDENCE_SPACING_MM:g} mm grid, numpy peak {peak / 1e6:.0f} MB = {peak / voxels:.1f} bytes a voxel")
    wide_ct = padded(ct, args.pad_run_mm, -1024)
    voxels = int(np.prod(canonical_reference(wide_ct, 2.5).GetSize(), dtype=np.int64))
    result, peak = numpy_peak(segment_spine, wide_ct, device="cpu")
    print(f"segment_spine, CT padded by {args.pad_run_mm:g} mm: {voxels / 1e6:.1f} M voxels of its 2.5 mm grid, "
          f"{len(result.vertebrae)} vertebrae, numpy peak {peak / 1e6:.0f} MB = {peak / voxels:.1f} bytes a voxel")


if __name__ == "__main__":
    main()
