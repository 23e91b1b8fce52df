"""Where do a result's vertebra masks go wrong? (not a test; for CTs with a whole-anatomy reference map)

For every predicted vertebra that has a reference vertebra of the same level, the voxels of the prediction outside
that reference are sorted by what the reference map has there: a neighbouring vertebra, a rib, other labelled bone,
other labelled tissue, or nothing labelled (split at 200 HU, the surface threshold of seed 002 section 3.1: bone
the map leaves out, or soft tissue); the reference voxels it misses are split at 200 HU too. Counted on the CT's
own grid (the prediction resampled onto it, nearest neighbour), in voxels.

Usage:
    python Testing/benchmarks/mask_errors.py OUTPUT_FOLDER_OR_LABELS CT ANATOMY_MAP
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rib_levels import rib_numbers  # noqa: E402

from SpineSegmentationLib.anatomy import VERSE_NAMES, to_verse  # noqa: E402
from SpineSegmentationLib.refinement import SURFACE_THRESHOLD_HU  # noqa: E402
from SpineSegmentationLib.training.anatomy_synthesis import TISSUE_IDS  # noqa: E402

COLUMNS = ("neighbour vertebra", "rib", "other bone", "unlabelled >=200 HU", "unlabelled <200 HU", "other tissue",
           "missed >=200 HU", "missed <200 HU")


def mask_errors(prediction: sitk.Image, ct: sitk.Image, anatomy: sitk.Image) -> list[dict]:
    """Per predicted vertebra with a same-level reference: reference, predicted and shared voxels, Dice, and the
    voxel counts of :data:`COLUMNS`. ``anatomy`` is a TotalSegmentator v2 map on the CT's grid."""
    pred = sitk.GetArrayFromImage(sitk.Resample(prediction, ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    ana = sitk.GetArrayFromImage(anatomy)
    hu = sitk.GetArrayFromImage(ct)
    ref = to_verse(ana, "totalseg")
    rib = rib_numbers(ana) > 0
    other_bone = np.isin(ana, TISSUE_IDS["bone"]) & (ref == 0) & ~rib
    dense = hu >= SURFACE_THRESHOLD_HU
    rows = []
    for label in sorted(set(np.unique(pred).tolist()) - {0}):
        p, r = pred == label, ref == label
        if not r.any():
            continue
        extra, missed = p & ~r, r & ~p
        unlabelled = extra & (ana == 0)
        counts = ((extra & (ref > 0)).sum(), (extra & rib).sum(), (extra & other_bone).sum(),
                  (unlabelled & dense).sum(), (unlabelled & ~dense).sum(),
                  (extra & (ana > 0) & (ref == 0) & ~rib & ~other_bone).sum(),
                  (missed & dense).sum(), (missed & ~dense).sum())
        shared = int((p & r).sum())
        rows.append({"level": VERSE_NAMES.get(label, str(label)), "reference": int(r.sum()), "predicted": int(p.sum()),
                     "shared": shared, "dice": 2 * shared / (r.sum() + p.sum()),
                     **{c: int(n) for c, n in zip(COLUMNS, counts)}})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prediction", type=Path, help="spineseg output folder or label map (VerSe numbers)")
    parser.add_argument("ct", type=Path, help="the CT the map is drawn on")
    parser.add_argument("anatomy", type=Path, help="whole-anatomy map, TotalSegmentator v2 numbering")
    args = parser.parse_args(argv)
    path = args.prediction / "labels.nii.gz" if args.prediction.is_dir() else args.prediction
    rows = mask_errors(*(sitk.ReadImage(str(p)) for p in (path, args.ct, args.anatomy)))
    print("level reference predicted shared  Dice | " + " | ".join(COLUMNS))
    for r in rows:
        print(f"{r['level']:>5} {r['reference']:9d} {r['predicted']:9d} {r['shared']:6d} {r['dice']:.3f} | "
              + " ".join(f"{r[c]:7d}" for c in COLUMNS))
    print("total" + " " * 38 + "| " + " ".join(f"{sum(r[c] for r in rows):7d}" for c in COLUMNS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
