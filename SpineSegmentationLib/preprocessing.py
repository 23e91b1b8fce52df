"""What the networks see: intensity normalization shared by inference and training (one definition, so they cannot
drift), and the field of view extended where it cuts through the body."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .models import Preprocessing

#: Voxels above this (HU) are the body (soft tissue and bone; lung and air below)...
BODY_HU = -500.0
#: ... and a side of the field of view (left, right, front or back) cuts through the body where at least this share of
#: its border voxels lies in the body (ours; the sides of the real CTs here cut to 140 x 120 mm around the spine:
#: 0.39-1.0, where lung meets the side the least; their whole cross-sections: 0.0-0.32, where arms or the table touch
#: the border).
CUT_BODY_SHARE = 0.5
#: The networks learnt from whole cross-sections (the attention network) and from in-plane crops keeping at least 55 %
#: of the body with air beyond (the FCN's synthetic CTs): where the field of view cuts through the body closer to the
#: spine they lose it (the example CT cut to 140 x 120 mm around the spine: the attention network's highest
#: probability 0.06 against 0.34 at 200 x 160 mm, threshold 0.05; cut to 80 mm left-right, the FCN's regressions
#: named the column T6-T11 instead of T12-L5). Such a side is extended by this much (mm; ours: 60 and 120 gave the
#: attention network the same), the body going on as soft tissue (0 HU: water, between fat and muscle).
CUT_BODY_PAD_MM = 64.0
CUT_BODY_PAD_HU = 0.0


def normalize_hu(hu: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """HU -> network input: ``(clip(hu, *prep.hu_window) - prep.hu_offset) / prep.hu_scale``, float32.

    Works on any array shape; the default window (-1000, 3000) HU and scale 1000 map air to -1, water to 0
    and dense cortical bone to about 1-2.
    """
    lo, hi = prep.hu_window
    return ((np.clip(hu, lo, hi) - prep.hu_offset) / prep.hu_scale).astype(np.float32)


def pad_value(prep: Preprocessing) -> float:
    """Normalized value of air (-1024 HU clipped to the window): what patches outside the image contain."""
    return float(normalize_hu(np.array([-1024.0]), prep)[0])


def cut_body_values(prep: Preprocessing) -> tuple[float, float]:
    """``(BODY_HU, CUT_BODY_PAD_HU)`` normalized (:func:`normalize_hu`): :func:`extend_cut_sides` on network input."""
    body, fill = normalize_hu(np.array([BODY_HU, CUT_BODY_PAD_HU]), prep)
    return float(body), float(fill)


def extend_cut_sides(values: np.ndarray, spacing_mm: float, patch_mm: float, body_value: float, fill_value: float
                     ) -> tuple[np.ndarray, list[list[int]]]:
    """The rule of :func:`extend_cut_body` on an array of any intensity scale (HU, or the networks' normalized
    values in training: ``training/sampler.py``).

    Args:
        values: [z, y, x] = [S, P, L] on an isotropic grid of ``spacing_mm``.
        patch_mm: the FCN's patch edge in mm.
        body_value: :data:`BODY_HU` on the scale of ``values``.
        fill_value: :data:`CUT_BODY_PAD_HU` on the scale of ``values``.

    Returns:
        ``(array, pads)``: the extended array and the voxels added before and after each axis
        (``[[0, 0], [front, back], [right, left]]``, as ``np.pad`` takes them), or ``values`` itself and zeros.
    """
    pads = [[0, 0], [0, 0], [0, 0]]
    if max(values.shape[1:]) * spacing_mm <= patch_mm:
        return values, pads
    width = int(round(CUT_BODY_PAD_MM / spacing_mm))
    body = values > body_value
    faces = ((1, 0, body[:, 0, :]), (1, 1, body[:, -1, :]), (2, 0, body[:, :, 0]), (2, 1, body[:, :, -1]))
    for axis, end, face in faces:
        if face.mean() >= CUT_BODY_SHARE:
            pads[axis][end] = width
    if not any(any(p) for p in pads):
        return values, pads
    extended = np.pad(values, pads, mode="edge")
    added = np.pad(np.zeros(values.shape, dtype=bool), pads, constant_values=True)
    extended[added & (extended > body_value)] = fill_value
    return extended, pads


def extend_cut_body(hu: np.ndarray, reference: sitk.Image, patch_mm: float) -> tuple[np.ndarray, sitk.Image]:
    """Extend the sides of the field of view that cut through the body, for the networks.

    A side (front, back, right or left) cuts through the body where at least :data:`CUT_BODY_SHARE` of its border
    voxels are above :data:`BODY_HU`. Each such side is extended by :data:`CUT_BODY_PAD_MM`, each added voxel going
    on from the border voxel it extends: :data:`CUT_BODY_PAD_HU` (soft tissue) where that lies in the body, bone
    included (a rib crossing the edge is not drawn on), the border's own value where not (lung and air go on as they
    are). A whole cross-section (body surrounded by air) is returned as it is. The superior and inferior ends are
    never extended: every CT cuts the body there, as did the scans the networks were trained on. Nor is a field of
    view that one patch of the FCN spans in both directions (the TPTBox crop, 110 x 110 mm across, 70 mm long): the
    attention network has too little to go on there, and where it sees no spine the whole volume is searched, a window
    or two per level (``pipeline.segment_spine``). The rule itself: :func:`extend_cut_sides`.

    Args:
        hu: HU array [z, y, x] = [S, P, L] on the canonical grid ``reference`` (``geometry.to_canonical``).
        reference: that grid (identity direction, isotropic spacing).
        patch_mm: the FCN's patch edge in mm.

    Returns:
        ``(array, grid)``: the extended array and its canonical grid (the same physical points, more of them), or
        ``hu`` and ``reference`` themselves when no side is extended.
    """
    spacing = reference.GetSpacing()[0]
    extended, pads = extend_cut_sides(hu, spacing, patch_mm, BODY_HU, CUT_BODY_PAD_HU)
    if extended is hu:
        return hu, reference
    grid = sitk.Image([int(n) for n in extended.shape[::-1]], sitk.sitkUInt8)
    grid.SetSpacing(reference.GetSpacing())
    grid.SetDirection(reference.GetDirection())
    grid.SetOrigin((np.array(reference.GetOrigin()) - np.array([pads[2][0], pads[1][0], 0]) * spacing).tolist())
    return extended, grid
