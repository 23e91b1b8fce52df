"""Do the predicted levels agree with the ribs? (not a test; for CTs with a whole-anatomy reference map)

Rib k articulates with thoracic vertebra k (T1 carries the first rib, T12 the twelfth). For every predicted
vertebra, this script finds the reference ribs (TotalSegmentator v2 ids 92-103 left, 104-115 right) that touch it
(voxels within ``--reach-mm`` of the vertebra), and reports the level the ribs imply next to the predicted one.
A vertebra touched by two rib numbers (rib heads also meet the disc and the vertebra above) takes the rib
that touches it with more voxels.

Usage:
    python Testing/benchmarks/rib_levels.py OUTPUT_FOLDER_OR_LABELS ANATOMY_MAP [--reach-mm 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from SpineSegmentationLib.anatomy import VERSE_NAMES  # noqa: E402

T1 = 8
RIBS_LEFT = range(92, 104)
RIBS_RIGHT = range(104, 116)


def rib_numbers(anatomy: np.ndarray) -> np.ndarray:
    """Rib number 1..12 per voxel of a TotalSegmentator v2 map (left 92-103, right 104-115), 0 elsewhere."""
    left = (anatomy >= RIBS_LEFT.start) & (anatomy < RIBS_LEFT.stop)
    right = (anatomy >= RIBS_RIGHT.start) & (anatomy < RIBS_RIGHT.stop)
    return np.where(left, anatomy - (RIBS_LEFT.start - 1), np.where(right, anatomy - (RIBS_RIGHT.start - 1), 0))


def rib_levels(prediction: sitk.Image, anatomy: sitk.Image, reach_mm: float = 5.0) -> list[dict]:
    anatomy = sitk.Resample(anatomy, prediction, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    pred = sitk.GetArrayFromImage(prediction)
    ana = sitk.GetArrayFromImage(anatomy)
    ribs = rib_numbers(ana)
    spacing = np.array(prediction.GetSpacing()[::-1])
    margin = np.ceil(reach_mm / spacing).astype(int) + 1
    rows = []
    for label, box in enumerate(ndimage.find_objects(pred.astype(np.int32)), start=1):
        if box is None:
            continue
        # the vertebra's bounding box grown by the reach: the distance transform needs nothing beyond it
        box = tuple(slice(max(b.start - m, 0), b.stop + m) for b, m in zip(box, margin))
        near = ndimage.distance_transform_edt(pred[box] != label, sampling=spacing) <= reach_mm
        touching = ribs[box][near & (ribs[box] > 0)]
        numbers, counts = np.unique(touching, return_counts=True)
        implied = T1 + int(numbers[np.argmax(counts)]) - 1 if numbers.size else None
        rows.append({
            "predicted": VERSE_NAMES.get(label, str(label)),
            "ribs_touching": {int(n): int(c) for n, c in zip(numbers, counts)},
            "level_from_ribs": VERSE_NAMES.get(implied) if implied else None,
            "agrees": None if implied is None else implied == label,
        })
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prediction", type=Path, help="spineseg output folder or label map (VerSe numbers)")
    parser.add_argument("anatomy", type=Path, help="whole-anatomy map, TotalSegmentator v2 numbering")
    parser.add_argument("--reach-mm", type=float, default=5.0)
    args = parser.parse_args(argv)
    path = args.prediction / "labels.nii.gz" if args.prediction.is_dir() else args.prediction
    rows = rib_levels(sitk.ReadImage(str(path)), sitk.ReadImage(str(args.anatomy)), args.reach_mm)
    for r in rows:
        print(f"{r['predicted']:>4}: ribs touching {r['ribs_touching'] or '-'} -> {r['level_from_ribs'] or '-'}"
              + ("" if r["agrees"] is None else ("  agrees" if r["agrees"] else "  DISAGREES")))
    judged = [r for r in rows if r["agrees"] is not None]
    print(f"{sum(r['agrees'] for r in judged)}/{len(judged)} rib-bearing vertebrae carry the level their ribs imply")
    return 0


if __name__ == "__main__":
    sys.exit(main())
