"""Pose robustness of a model (not a test): the same scan mirrored left-right and rotated by 20 degrees about
each axis must get the same levels, and each vertebra must agree with the unrotated result mapped back.

Variants of each CT (issue 10):
  mirror-LR  voxel data flipped along the image axis closest to LPS x, header unchanged (a mirrored export)
  rot-LR     content rotated by ``--degrees`` about the left-right axis through the volume centre (same grid)
  rot-AP     ... about the anterior-posterior axis
  rot-SI     ... about the superior-inferior axis

Each variant's label map is mapped back onto the original grid (the flip undone, or the inverse rotation with
SimpleITK's label-linear interpolation: each label's indicator interpolated linearly, the largest wins) and
compared with the unrotated result: the set of levels, and per vertebra the Dice and the average symmetric surface
distance (ASSD, mm) of the same level. Rotating inside the same grid cuts the volume's corners, so vertebrae at the
border can legitimately differ; they are listed.

Mapping a label map costs agreement by itself: ``mapping_floor`` is the unrotated result rotated and mapped back
with the same interpolator, compared with itself (its minimum per-level Dice: the best a rotated result can
score). On the example CT it is 0.974-0.980 by nearest neighbour and 0.980-0.985 label-linear.

Usage:
    python Testing/benchmarks/robustness_pose.py CT [CT ...] [--model PATH] [--degrees 20] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "Testing" / "Python"))

from SpineSegmentationLib.anatomy import VERSE_NAMES  # noqa: E402
from SpineSegmentationLib.evaluation import assd, surface_distances  # noqa: E402
from SpineSegmentationLib.evaluation import dice as dice_coefficient  # noqa: E402
from SpineSegmentationLib.io import read_image  # noqa: E402
from SpineSegmentationLib.models import load_model  # noqa: E402
from SpineSegmentationLib.pipeline import segment_spine  # noqa: E402
from pose_helpers import ANTERIOR_POSTERIOR, LEFT_RIGHT, SUPERIOR_INFERIOR, rotation, tilted  # noqa: E402
from reconstruction_helpers import left_right_axis  # noqa: E402


def mirrored(image: sitk.Image, axis: int) -> sitk.Image:
    """Voxel data flipped along image axis ``axis``, header unchanged."""
    array = sitk.GetArrayFromImage(image)
    out = sitk.GetImageFromArray(np.flip(array, axis=2 - axis).copy())
    out.CopyInformation(image)
    return out


def mapped_back(labels: sitk.Image, base: sitk.Image, transform: sitk.Transform) -> sitk.Image:
    """A label map of the rotated scan on the original grid ``base`` (inverse rotation, label-linear)."""
    return sitk.Resample(labels, base, transform.GetInverse(), sitk.sitkLabelLinear, 0)


def level_masks(labels: sitk.Image) -> dict[int, np.ndarray]:
    array = sitk.GetArrayFromImage(labels)
    return {int(v): array == v for v in np.unique(array) if v != 0}


def compare(base: sitk.Image, other: sitk.Image) -> dict:
    a, b = level_masks(base), level_masks(other)
    spacing_zyx = base.GetSpacing()[::-1]
    dice, surface = {}, {}
    for label in sorted(set(a) & set(b)):
        name = VERSE_NAMES.get(label, str(label))
        dice[name] = round(dice_coefficient(b[label], a[label]), 3)
        surface[name] = round(assd(*surface_distances(b[label], a[label], spacing_zyx)), 2)
    return {
        "levels": [VERSE_NAMES.get(k, str(k)) for k in sorted(b)],
        "same_levels": sorted(a) == sorted(b),
        "only_unrotated": [VERSE_NAMES.get(k, str(k)) for k in sorted(set(a) - set(b))],
        "only_variant": [VERSE_NAMES.get(k, str(k)) for k in sorted(set(b) - set(a))],
        "dice_same_level": dice,
        "min_dice": min(dice.values()) if dice else None,
        "mean_dice": round(float(np.mean(list(dice.values()))), 3) if dice else None,
        "assd_mm_same_level": surface,
        "max_assd_mm": max(surface.values()) if surface else None,
    }


def run_case(path: Path, model, degrees: float) -> dict:
    image = read_image(path)
    base = segment_spine(image, model=model, device="cpu").labels
    out = {"ct": str(path), "unrotated_levels": [VERSE_NAMES.get(k, str(k)) for k in sorted(level_masks(base))]}
    axis = left_right_axis(image)
    flipped = segment_spine(mirrored(image, axis), model=model, device="cpu").labels
    out["mirror-LR"] = compare(base, mirrored(flipped, axis))
    for name, lps_axis in (("rot-LR", LEFT_RIGHT), ("rot-AP", ANTERIOR_POSTERIOR), ("rot-SI", SUPERIOR_INFERIOR)):
        transform = rotation(image, lps_axis, degrees)
        rotated = tilted(image, transform)
        labels = segment_spine(rotated, model=model, device="cpu").labels
        out[name] = compare(base, mapped_back(labels, base, transform))
        base_rotated = sitk.Resample(base, rotated, transform, sitk.sitkLabelLinear, 0)
        floor = compare(base, mapped_back(base_rotated, base, transform))
        out[name]["mapping_floor"] = floor["min_dice"]
        out[name]["mapping_floor_max_assd_mm"] = floor["max_assd_mm"]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cts", nargs="+", type=Path)
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--degrees", type=float, default=20.0)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    model = load_model(args.model)
    results = []
    for path in args.cts:
        result = run_case(path, model, args.degrees)
        results.append(result)
        print(f"{path.name}: unrotated {', '.join(result['unrotated_levels'])}")
        for name in ("mirror-LR", "rot-LR", "rot-AP", "rot-SI"):
            r = result[name]
            print(f"  {name:9s} same levels: {'yes' if r['same_levels'] else 'no '}  min/mean Dice same level: "
                  f"{r['min_dice']} / {r['mean_dice']}  max ASSD {r['max_assd_mm']} mm  "
                  f"only unrotated: {r['only_unrotated'] or '-'}  only {name}: {r['only_variant'] or '-'}"
                  + (f"  mapping floor: {r['mapping_floor']} (max ASSD {r['mapping_floor_max_assd_mm']} mm)"
                     if "mapping_floor" in r else ""))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
