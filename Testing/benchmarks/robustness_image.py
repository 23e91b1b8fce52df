"""Image-quality robustness of a model (not a test): the same scan with more noise, a smoother or sharper
reconstruction, thicker slices or less dense bone should get the same levels and the same vertebrae.

Variants of each CT, made with SimpleITK on the scan's own grid unless stated:
  noise-40, noise-80   Gaussian noise of 40 / 80 HU standard deviation added (a lower dose; fixed seed)
  blur-1, blur-1.5     Gaussian smoothing, sigma 1 / 1.5 mm along every axis (a smoother kernel)
  slices-5             5 mm slices along the image axis closest to S-I: smoothed there with a Gaussian of 5 mm
                       full width at half maximum, resampled to 5 mm (linear); its result is taken back to the
                       original grid with label-linear interpolation
  bone-0.7, bone-0.5   every HU above 100 brought towards 100 by the factor (0.7: 600 HU -> 450): thinner, less
                       dense bone, as in osteopenia; the ribs' 400-600 HU fall to 250-350 at 0.5
  sharp-1, sharp-2     a sharper (bone) reconstruction kernel: in each slice (the image plane across the axis
                       closest to S-I) the detail finer than a Gaussian of sigma 1 mm added once / twice more
                       (``reconstruction_helpers.sharper_kernel``: about x1.9 / x2.8 at 0.35 line pairs per mm)

Each variant's result is compared with the unperturbed one: the set of levels, and per level the Dice of the same
level (as ``robustness_pose.py``). With ``--reference`` (a label map of the CT and its ``--convention``), every
result is also scored against it: mean overlap Dice (each reference vertebra against its best-matching instance)
and the identification rate (``spineseg evaluate``'s measures).

Usage:
    python Testing/benchmarks/robustness_image.py CT [--reference REF --convention totalseg] [--model PATH]
        [--variants noise-40,bone-0.5] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO / "Testing" / "Python"))

from robustness_pose import compare, level_masks  # noqa: E402
from SpineSegmentationLib.anatomy import VERSE_NAMES  # noqa: E402
from SpineSegmentationLib.evaluation import evaluate  # noqa: E402
from SpineSegmentationLib.io import read_image  # noqa: E402
from SpineSegmentationLib.models import load_model  # noqa: E402
from SpineSegmentationLib.pipeline import segment_spine  # noqa: E402
from reconstruction_helpers import sharper_kernel, thick_slices  # noqa: E402

#: HU below which a voxel is left alone by the bone-density variants (soft tissue, fat, air, marrow fat).
BONE_SCALING_FLOOR_HU = 100.0


def noisy(image: sitk.Image, sigma_hu: float) -> sitk.Image:
    return sitk.AdditiveGaussianNoise(image, standardDeviation=sigma_hu, mean=0.0, seed=1)


def blurred(image: sitk.Image, sigma_mm: float) -> sitk.Image:
    return sitk.SmoothingRecursiveGaussian(image, sigma_mm)


def less_dense_bone(image: sitk.Image, factor: float) -> sitk.Image:
    """Every HU above :data:`BONE_SCALING_FLOOR_HU` brought towards it by ``factor``."""
    hu = sitk.GetArrayFromImage(image)
    out = sitk.GetImageFromArray(np.where(hu > BONE_SCALING_FLOOR_HU,
                                          BONE_SCALING_FLOOR_HU + (hu - BONE_SCALING_FLOOR_HU) * factor, hu))
    out.CopyInformation(image)
    return out


VARIANTS: dict[str, Callable[[sitk.Image], sitk.Image]] = {
    "noise-40": lambda image: noisy(image, 40.0),
    "noise-80": lambda image: noisy(image, 80.0),
    "blur-1": lambda image: blurred(image, 1.0),
    "blur-1.5": lambda image: blurred(image, 1.5),
    "slices-5": lambda image: thick_slices(image, 5.0),
    "bone-0.7": lambda image: less_dense_bone(image, 0.7),
    "bone-0.5": lambda image: less_dense_bone(image, 0.5),
    "sharp-1": lambda image: sharper_kernel(image, 1.0),
    "sharp-2": lambda image: sharper_kernel(image, 2.0),
}


def scored(labels: sitk.Image, reference: Optional[Path], convention: str) -> dict:
    if reference is None:
        return {}
    summary = evaluate(labels, str(reference), convention).summary
    return {"overlap_dice": round(float(summary["mean_overlap_dice"]), 3),
            "identified": f"{summary['n_identified']}/{summary['n_reference']}"}


def run_case(path: Path, model, variants: list[str], reference: Optional[Path], convention: str) -> dict:
    image = sitk.Cast(read_image(path), sitk.sitkFloat32)
    base = segment_spine(image, model=model, device="cpu").labels
    out = {"ct": str(path), "unperturbed_levels": [VERSE_NAMES.get(k, str(k)) for k in sorted(level_masks(base))],
           "unperturbed": scored(base, reference, convention)}
    for name in variants:
        labels = segment_spine(VARIANTS[name](image), model=model, device="cpu").labels
        if labels.GetSize() != base.GetSize():
            labels = sitk.Resample(labels, base, sitk.Transform(), sitk.sitkLabelLinear, 0)
        out[name] = {**compare(base, labels), **scored(labels, reference, convention)}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cts", nargs="+", type=Path)
    parser.add_argument("--reference", type=Path, help="reference label map (only with a single CT)")
    parser.add_argument("--convention", default="verse", help="the reference's numbering (spineseg evaluate)")
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {list(VARIANTS)}")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    if args.reference is not None and len(args.cts) != 1:
        parser.error("--reference scores a single CT; run once per CT")
    model = load_model(args.model)
    results = []
    for path in args.cts:
        result = run_case(path, model, variants, args.reference, args.convention)
        results.append(result)
        print(f"{path.name}: unperturbed {', '.join(result['unperturbed_levels'])} {result['unperturbed'] or ''}")
        for name in variants:
            r = result[name]
            print(f"  {name:9s} same levels: {'yes' if r['same_levels'] else 'no '}  min/mean Dice same level: "
                  f"{r['min_dice']} / {r['mean_dice']}  only unperturbed: {r['only_unrotated'] or '-'}  "
                  f"only {name}: {r['only_variant'] or '-'}"
                  + (f"  against the reference: overlap Dice {r['overlap_dice']}, ID {r['identified']}"
                     if "overlap_dice" in r else ""), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
