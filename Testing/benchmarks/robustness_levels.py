"""Level robustness of a model (not a test): over many variants of one CT, how often is every vertebra named as in
the unperturbed scan?

Variants: the nine of ``robustness_image.py`` (noise, blur, 5 mm slices, less dense bone, sharper kernels), the
left-right mirror and rotations by +-``--degrees`` about each axis (``robustness_pose.py``), and crops to fractions
of the scan's superior-inferior extent (``--crops``), and, with ``--fields-of-view``, the scan cut in the axial
plane to a width (left-right) by a depth (front-back) around the unperturbed vertebrae's centre, every slice kept (a
CT reconstructed around the spine; depth 0: the whole front-back extent, a sagittal slab). Each variant's vertebrae
are matched to the unperturbed scan's by centroid (mapped back into the unperturbed scan's space; mutual nearest,
within :data:`MATCH_MM`), and the truth is the unperturbed levels, shifted by ``--truth-shift`` where those are
known to be off (the TPTBox crop: +1; check the unperturbed levels against a reference or the ribs first). Per
variant it prints:

  right      every vertebra named as the truth (levels continued from the matched ones to the unmatched)
  off N      the whole run named N levels too high (+) or low (-)
  mismatch   the matched vertebrae do not take one contiguous run of the truth: an instance merged or split, a
             segmentation rather than a labelling failure

with whether a landmark fixed the levels (the run did not warn ``sanity.UNANCHORED_LEVELS_WARNING``: an end of the
rib cage or the sacrum in view), the lowest ``p_label`` and the median offset of the regressions (regressed - true position, levels). The
``--json`` output also holds every vertebra found (label, regression, ``p_label``, centroid in the unperturbed scan's
LPS mm); ``--truth`` judges against the unperturbed vertebrae of such an earlier output instead (two versions
against the same truth: a change that moves one boundary of the unperturbed result otherwise moves every verdict).

Usage:
    python Testing/benchmarks/robustness_levels.py CT [--truth-shift N] [--degrees 20] [--crops 0-0.5,0.5-1]
        [--fields-of-view 200x160,140x120,80x0] [--select fov,rot] [--model PATH] [--json OUT.json]
        [--truth EARLIER.json]
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

from pose_helpers import ANTERIOR_POSTERIOR, LEFT_RIGHT, SUPERIOR_INFERIOR, rotation, tilted  # noqa: E402
from reconstruction_helpers import cut_around, left_right_axis, superior_inferior_axis  # noqa: E402
from robustness_image import VARIANTS  # noqa: E402
from robustness_pose import mirrored  # noqa: E402
from SpineSegmentationLib.anatomy import column_position, vertebra_name  # noqa: E402
from SpineSegmentationLib.io import read_image  # noqa: E402
from SpineSegmentationLib.models import load_model  # noqa: E402
from SpineSegmentationLib.pipeline import segment_spine  # noqa: E402
from SpineSegmentationLib.sanity import UNANCHORED_LEVELS_WARNING  # noqa: E402

#: A variant's vertebra is the unperturbed one whose centroid lies within this distance (mm) of its own.
MATCH_MM = 12.0

#: A variant: (its image, a function taking one of its points (LPS mm) back into the unperturbed scan's space).
Variant = tuple[sitk.Image, Callable[[list[float]], list[float]]]


def cropped(image: sitk.Image, lo: float, hi: float) -> sitk.Image:
    """The fraction [lo, hi] of the scan's extent along its image axis closest to superior-inferior."""
    axis = superior_inferior_axis(image)
    index, size = [0, 0, 0], list(image.GetSize())
    index[axis] = int(round(lo * size[axis]))
    size[axis] = int(round(hi * size[axis])) - index[axis]
    return sitk.RegionOfInterest(image, size, index)


def variants(image: sitk.Image, degrees: float, crops: list[tuple[float, float]],
             fields_of_view: Optional[list[tuple[float, float]]] = None,
             centre_lps: Optional[list[float]] = None) -> dict[str, Callable[[], Variant]]:
    same = lambda point: point  # noqa: E731 - the variant lies on the scan's own physical space
    out: dict[str, Callable[[], Variant]] = {name: (lambda f=f: (f(image), same)) for name, f in VARIANTS.items()}

    def mirror() -> Variant:
        axis = left_right_axis(image)

        def back(point):
            index = list(image.TransformPhysicalPointToContinuousIndex(point))
            index[axis] = image.GetSize()[axis] - 1 - index[axis]
            return list(image.TransformContinuousIndexToPhysicalPoint(index))
        return mirrored(image, axis), back

    out["mirror-LR"] = mirror
    for name, lps_axis in (("LR", LEFT_RIGHT), ("AP", ANTERIOR_POSTERIOR), ("SI", SUPERIOR_INFERIOR)):
        for sign in (1, -1):
            def rotate(lps_axis=lps_axis, angle=sign * degrees) -> Variant:
                transform = rotation(image, lps_axis, angle)
                return tilted(image, transform), lambda point: list(transform.TransformPoint(point))
            out[f"rot-{name}{sign * degrees:+g}"] = rotate
    for lo, hi in crops:
        out[f"crop-{lo:g}-{hi:g}"] = lambda lo=lo, hi=hi: (cropped(image, lo, hi), same)
    for width, depth in fields_of_view or []:
        out[f"fov-{width:g}x{depth:g}"] = lambda w=width, d=depth: (
            cut_around(image, centre_lps, w or None, d or None), same)
    return out


def vertebrae(image: sitk.Image, model, back: Callable[[list[float]], list[float]]) -> tuple[list[dict], bool]:
    """Label, regression, p_label and centroid (LPS mm, in the unperturbed scan's space) of each vertebra found, and
    whether a landmark fixed the levels (the run did not warn that none did)."""
    result = segment_spine(image, model=model, device="cpu")
    landmark = not any(w.startswith(UNANCHORED_LEVELS_WARNING) for w in result.run_info.get("warnings", []))
    return [{"label": v.label, "regressed": v.label_regressed, "p_label": v.p_label,
             "centre": back([-v.centroid_ras_mm[0], -v.centroid_ras_mm[1], v.centroid_ras_mm[2]])}
            for v in result.vertebrae], landmark


def judged(found: list[dict], truth: list[dict], shift: int) -> dict:
    """Compare a variant's vertebrae with the unperturbed ones (see the module docstring)."""
    if not found:
        return {"verdict": "none found"}
    # mutual nearest centroids within MATCH_MM: a vertebra cut by a rotated or cropped field of view moves its
    # centroid towards its neighbour, which keeps its own match
    distance = np.linalg.norm(np.array([v["centre"] for v in found])[:, None]
                              - np.array([t["centre"] for t in truth])[None], axis=2)
    matched = {k: truth[j]["label"] + shift for k, j in enumerate(distance.argmin(axis=1))
               if distance[k, j] < MATCH_MM and distance[:, j].argmin() == k}
    out = {"levels": [vertebra_name(v["label"]) for v in found],
           "min_p_label": round(min(v["p_label"] for v in found), 2)}
    if not matched:
        return {**out, "verdict": "no vertebra matched"}
    first = min(matched)
    levels = [matched[first] + (k - first) for k in range(len(found))]  # the truth continued along the run
    if any(matched[k] != levels[k] for k in matched):
        return {**out, "verdict": "mismatch"}
    offsets = [v["regressed"] - column_position(t) for v, t in zip(found, levels) if np.isfinite(v["regressed"])]
    out["regression_offset"] = round(float(np.median(offsets)), 1)
    off = found[0]["label"] - levels[0]
    right = [v["label"] for v in found] == levels
    return {**out, "verdict": "right" if right else f"off {off:+d}" if off else "wrong"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ct", type=Path)
    parser.add_argument("--truth-shift", type=int, default=0, help="levels to add to the unperturbed result's")
    parser.add_argument("--degrees", type=float, default=20.0)
    parser.add_argument("--crops", default="0-0.5,0.5-1,0.25-0.75",
                        help="comma-separated fractions lo-hi of the S-I extent ('' for none)")
    parser.add_argument("--fields-of-view", default="",
                        help="comma-separated axial fields of view WIDTHxDEPTH (mm) around the spine, DEPTH 0 for the "
                        "whole front-back extent (default: none)")
    parser.add_argument("--select", default="", help="comma-separated prefixes of the variants to run (default: all)")
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--truth", type=Path, help="judge against the unperturbed vertebrae of an earlier run's --json "
                        "(e.g. one checked by eye) instead of this run's")
    args = parser.parse_args(argv)
    crops = [tuple(float(x) for x in c.split("-")) for c in args.crops.split(",") if c]
    model = load_model(args.model)
    image = sitk.Cast(read_image(args.ct), sitk.sitkFloat32)
    unperturbed, _ = vertebrae(image, model, lambda point: point)
    truth = json.loads(args.truth.read_text())["unperturbed"] if args.truth else unperturbed
    print(f"{args.ct.name}: unperturbed {', '.join(vertebra_name(v['label']) for v in unperturbed)}; truth = "
          + (f"{args.truth}'s unperturbed {', '.join(vertebra_name(v['label']) for v in truth)}" if args.truth
             else "those") + f" {args.truth_shift:+d}")
    fields = [tuple(float(x) for x in f.split("x")) for f in args.fields_of_view.split(",") if f]
    centre = np.mean([t["centre"] for t in truth], axis=0).tolist() if truth else None
    if fields and centre is None:
        parser.error("--fields-of-view needs vertebrae in the unperturbed scan (or --truth) to centre on")
    prefixes = tuple(p for p in args.select.split(",") if p)
    out: dict[str, Optional[dict]] = {}
    for name, make in variants(image, args.degrees, crops, fields, centre).items():
        if prefixes and not name.startswith(prefixes):
            continue
        variant, back = make()
        found, landmark_in_view = vertebrae(variant, model, back)
        out[name] = {**judged(found, truth, args.truth_shift), "found": found,
                     "landmark_in_view": landmark_in_view if found else None}
        r = out[name]
        landmark = {True: "landmark", False: "no landmark"}.get(r["landmark_in_view"], "-")
        print(f"  {name:12s} {r['verdict']:10s} {landmark:11s} min p_label {r.get('min_p_label', '-')}  regression "
              f"offset {r.get('regression_offset', '-')}  {' '.join(r.get('levels', []))}", flush=True)
    verdicts = [r["verdict"] for r in out.values()]
    print(f"  right {verdicts.count('right')} of {len(verdicts)} ({verdicts.count('mismatch')} mismatch)")
    for seen, what in ((True, "with a landmark in view"), (False, "without one")):
        kept = [r["verdict"] for r in out.values() if r["landmark_in_view"] is seen and r["verdict"] != "mismatch"]
        print(f"  {what}: right {kept.count('right')} of {len(kept)} (mismatches left out)")
    if args.json:
        args.json.write_text(json.dumps({"ct": str(args.ct), "truth_shift": args.truth_shift,
                                         "unperturbed": unperturbed, "variants": out}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
