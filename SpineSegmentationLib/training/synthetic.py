"""Synthetic CT volumes built around real vertebra reference masks (for training without CT images).

The real VerSe masks (``shared/data/verse_masks``: C1-L5 of four subjects, without their CTs) give realistic
vertebra shapes. :func:`synthesize_ct` turns such a mask, on the model's canonical grid ([z, y, x] = [S, P, L]),
into a CT-like volume in HU:

- every vertebra: a cortical shell (1 voxel; 700-1400 HU cortical bone, partial-volume mixed with the
  trabecular value by ~1 mm / spacing) around trabecular bone (60-300 HU, textured; real CTs at 2.5 mm have interior medians of 75-165 HU);
- intervertebral discs (60-110 HU) between consecutive vertebrae, the spinal canal (0-30 HU);
- a body outline (soft tissue 20-60 HU) with a subcutaneous fat layer (-120..-60 HU), air (-1000) outside,
  sized per level (neck, thorax, abdomen, pelvis, head);
- confounders that are bone-like but **not** targets (label 0): ribs with their heads at the thoracic vertebral
  bodies and their necks in front of the transverse processes,
  a sacrum below L5 (S1 shaped like a vertebra) and iliac wings, the skull base above C1; lungs (-900..-700)
  beside the thoracic spine; the aorta and the heart (with or without contrast: 150-500 HU) and organ blobs;
- a random global deformation (scaling, small rotation, elastic), Gaussian blur (partial volume), scanner noise
  (sigma 10-60 HU) and a partial field of view (random crop along z and in-plane, which cuts vertebrae).

Everything is vectorized numpy/scipy; one volume at 2.5 mm takes about a second.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..anatomy import L5, column_position
from .costovertebral import head_point

AIR = -1000.0


def _rotation(rng: np.random.Generator, max_degrees: float) -> np.ndarray:
    angles = np.deg2rad(rng.uniform(-max_degrees, max_degrees, size=3))
    cz, cy, cx = np.cos(angles)
    sz, sy, sx = np.sin(angles)
    rz = np.array([[1, 0, 0], [0, cz, -sz], [0, sz, cz]])
    ry = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])
    rx = np.array([[cx, -sx, 0], [sx, cx, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _deform_and_pad(labels: np.ndarray, rng: np.random.Generator, spacing: float) -> np.ndarray:
    """Resample the label map with a random scaling/rotation/elastic warp into a body-sized field of view."""
    bone = labels > 0
    coords = np.argwhere(bone)
    centre_in = coords.mean(axis=0)
    present = set(np.unique(labels).tolist())
    scale = rng.uniform(0.9, 1.12) * rng.uniform(0.95, 1.05, size=3)
    z_extent = (coords[:, 0].max() - coords[:, 0].min() + 1) * scale[0]
    pad_lo = (110.0 if L5 in present else rng.uniform(0, 20)) / spacing
    pad_hi = (70.0 if 1 in present else rng.uniform(0, 20)) / spacing
    shape = (int(z_extent + pad_lo + pad_hi), int(rng.uniform(260, 320) / spacing), int(rng.uniform(330, 420) / spacing))
    centre_out = np.array([pad_lo + z_extent / 2, shape[1] * rng.uniform(0.58, 0.66), shape[2] / 2])
    matrix = _rotation(rng, 8.0) / scale[:, None]
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1) - centre_out[:, None]
    src = (matrix @ grid).reshape((3,) + shape) + centre_in[:, None, None, None]
    coarse = rng.uniform(-1.5, 1.5, size=(3, 5, 5, 5))
    for axis in range(3):
        src[axis] += ndimage.zoom(coarse[axis], [s / 5 for s in shape], order=1)[: shape[0], : shape[1], : shape[2]]
    return ndimage.map_coordinates(labels, src, order=0, mode="constant", cval=0).astype(np.int16)


def _level_profile(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per z slice: column position (extrapolated beyond the labelled vertebrae), spine centre y and x."""
    objects = ndimage.find_objects(labels.astype(np.int32))
    zs, pos, ys, xs = [], [], [], []
    for index, sl in enumerate(objects, start=1):
        if sl is None:
            continue
        try:
            p = column_position(index)
        except ValueError:
            continue
        c = np.array(ndimage.center_of_mass(labels[sl] == index)) + [s.start for s in sl]
        zs.append(c[0]), pos.append(p), ys.append(c[1]), xs.append(c[2])
    order = np.argsort(zs)
    zs, pos, ys, xs = (np.asarray(v)[order] for v in (zs, pos, ys, xs))
    z = np.arange(labels.shape[0])
    if len(zs) > 1:
        slope, intercept = np.polyfit(zs, pos, 1)
    else:
        slope, intercept = -0.12, pos[0] + 0.12 * zs[0]
    level = np.interp(z, zs, pos)
    level = np.where(z < zs[0], slope * z + intercept - (slope * zs[0] + intercept - pos[0]), level)
    level = np.where(z > zs[-1], slope * z + intercept - (slope * zs[-1] + intercept - pos[-1]), level)
    return level, np.interp(z, zs, ys), np.interp(z, zs, xs)


def _texture(shape, rng, sigma) -> np.ndarray:
    t = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return t / (t.std() + 1e-6)


def _shell(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask)


def _label_boundary(lab: np.ndarray) -> np.ndarray:
    """Voxels with a 6-neighbour of another label (the outer voxel layer of every vertebra)."""
    boundary = np.zeros(lab.shape, dtype=bool)
    for axis in range(3):
        n = lab.shape[axis]
        a = np.take(lab, range(1, n), axis=axis) != np.take(lab, range(n - 1), axis=axis)
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(0, n - 1), slice(1, n)
        boundary[tuple(lo)] |= a
        boundary[tuple(hi)] |= a
    return boundary


def synthesize_ct(labels: np.ndarray, rng: np.random.Generator, spacing_mm: float = 2.5,
                  crop: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic CT around a vertebra label map.

    Args:
        labels: int [z, y, x] = [S, P, L] VerSe labels on an isotropic canonical grid of ``spacing_mm``
            (e.g. a mask-only case from :func:`~.readers.load_case`). The sacrum, if labelled, is dropped
            and replaced by the synthetic one.
        rng: random generator (all randomness comes from it).
        spacing_mm: voxel size in mm.
        crop: apply the random partial field of view.

    Returns:
        ``(hu, labels)``: float32 HU and int16 VerSe labels on a new grid of the same spacing and axis order.
        Only vertebrae are labelled; ribs, sacrum, pelvis and skull are bone with label 0.

    Raises:
        ValueError: ``labels`` contains no vertebra.
    """
    s = float(spacing_mm)
    labels = np.where((labels > 0) & (labels != 26) & (labels != 27), labels, 0).astype(np.int16)
    if not labels.any():
        raise ValueError("the label map holds no vertebra; a synthetic CT needs at least one")
    c = _Canvas.around(_deform_and_pad(labels, rng, s), s)
    _body(c, rng)
    _lungs(c, rng)
    _aorta_and_organs(c, rng)
    _spinal_canal(c, rng)
    _discs(c, rng)
    distractor = (_ribs(c, rng) | _pelvis(c, rng) | _skull_base(c, rng)) & ~(c.lab > 0)
    _paint_bone(c, distractor, rng)
    hu = _acquisition(c.hu, rng)
    lab = c.lab
    if crop:
        hu, lab = _field_of_view(hu, lab, rng)
    return np.ascontiguousarray(hu, dtype=np.float32), np.ascontiguousarray(lab, dtype=np.int16)


class _Canvas:
    """The synthetic volume being painted: labels, HU, the spine's course and the body's outline per slice."""

    @classmethod
    def around(cls, lab: np.ndarray, spacing_mm: float) -> "_Canvas":
        c = cls()
        c.lab, c.s, c.shape = lab, spacing_mm, lab.shape
        c.level, c.sy, c.sx = _level_profile(lab)
        c.present = set(np.unique(lab).tolist()) - {0}
        c.z = np.arange(c.shape[0])[:, None, None]
        c.y = np.arange(c.shape[1])[None, :, None]
        c.x = np.arange(c.shape[2])[None, None, :]
        c.objects = ndimage.find_objects(lab.astype(np.int32))
        c.hu = np.full(c.shape, AIR, dtype=np.float32)
        return c

    def ellipse(self, shrink_mm: float) -> np.ndarray:
        """The body outline per slice, shrunk by ``shrink_mm`` (bool [z, y, x])."""
        ay = np.maximum(self.ay - shrink_mm / self.s, 1)[:, None, None]
        ax = np.maximum(self.ax - shrink_mm / self.s, 1)[:, None, None]
        return ((self.y - self.cy[:, None, None]) / ay) ** 2 + ((self.x - self.cx[:, None, None]) / ax) ** 2 <= 1.0


def _body(c: _Canvas, rng: np.random.Generator) -> None:
    """Body outline sized per level (0 = head, 1-7 neck, 8-19 thorax, 20-24 abdomen, 26 pelvis), a
    subcutaneous fat layer and soft tissue inside."""
    s, level = c.s, c.level
    anchors = np.array([-2.0, 0.5, 4.0, 7.5, 9.0, 14.0, 19.0, 22.0, 25.0, 28.0])
    body_scale = rng.uniform(0.85, 1.2)
    ax_mm = np.interp(level, anchors, [75, 75, 60, 65, 140, 160, 160, 165, 175, 175]) * body_scale
    ay_mm = np.interp(level, anchors, [95, 95, 60, 60, 95, 115, 115, 115, 110, 110]) * body_scale
    back_mm = np.interp(level, anchors, [80, 80, 55, 55, 65, 70, 70, 75, 80, 80]) * rng.uniform(0.9, 1.25)
    c.ax, c.ay, back = ax_mm / s, ay_mm / s, back_mm / s
    c.cy, c.cx = c.sy + back - c.ay, c.sx
    c.body = c.ellipse(0.0)
    c.fat_mm = rng.uniform(5, 30)
    c.inner = c.ellipse(c.fat_mm)
    c.hu[c.body] = rng.uniform(-120, -60) + 10 * _texture(c.shape, rng, 1.5)[c.body]
    soft = rng.uniform(20, 60)
    c.hu[c.inner] = soft + 12 * _texture(c.shape, rng, 2.0)[c.inner]


def _lungs(c: _Canvas, rng: np.random.Generator) -> None:
    """Lungs beside the thoracic spine, inside the chest wall, outside the mediastinum."""
    level, y, x = c.level, c.y, c.x
    if not (level.min() < 19 and level.max() > 8):
        return
    lung_z = np.clip(np.sin(np.pi * np.clip((level - 7.0) / 12.5, 0, 1)) * 1.3, 0, 1)[:, None, None]
    lung = np.zeros(c.shape, dtype=bool)
    for side in (-1, 1):
        lcx = c.cx[:, None, None] + side * 0.48 * c.ax[:, None, None]
        lcy = c.cy[:, None, None] + 0.15 * c.ay[:, None, None]
        rr = ((y - lcy) / (0.72 * c.ay[:, None, None] * lung_z + 1e-3)) ** 2 + \
             ((x - lcx) / (0.42 * c.ax[:, None, None] * lung_z + 1e-3)) ** 2
        lung |= rr <= 1.0
    mediastinum = np.abs(x - c.sx[:, None, None]) < 28.0 / c.s
    lung &= c.ellipse(c.fat_mm + 20) & ~mediastinum & (lung_z > 0.05)
    c.hu[lung] = rng.uniform(-900, -750) + 40 * _texture(c.shape, rng, 0.8)[lung]


def _aorta_and_organs(c: _Canvas, rng: np.random.Generator) -> None:
    """The aorta and the heart, with or without contrast agent, and abdominal organ blobs.

    Arterial-phase contrast makes the blood 150-500 HU: as dense as trabecular bone, right beside the thoracic
    vertebrae. A model that had seen only 150-350 HU aortas and no heart segmented the contrast-filled aorta and heart
    (median 330-430 HU) of a real chest CT as vertebrae, which the traversal then rejected as denser than bone
    (issue 10).
    """
    s, level, z, y, x = c.s, c.level, c.z, c.y, c.x
    blood_hu = rng.uniform(150, 500) if rng.random() < 0.5 else rng.uniform(30, 60)
    in_range = ((level > 10) & (level < 23.5))[:, None, None]
    front, left = rng.uniform(38, 50) / s, rng.uniform(12, 25) / s  # in front of and left of the column's centre
    aorta = in_range & (((y - (c.sy[:, None, None] - front)) ** 2 + (x - (c.sx[:, None, None] + left)) ** 2)
                        <= (rng.uniform(9, 15) / s) ** 2)
    c.hu[aorta] = blood_hu + 15 * _texture(c.shape, rng, 1.0)[aorta]
    heart_levels = np.flatnonzero((level > 12) & (level < 17))  # in front of T5-T10 (column positions 12-17)
    if heart_levels.size:
        zc = heart_levels.mean() + rng.uniform(-3, 3) / s
        k = int(np.clip(round(zc), 0, c.shape[0] - 1))
        radii = rng.uniform([40, 40, 45], [55, 55, 65]) / s
        centre = np.array([zc, c.sy[k] - rng.uniform(70, 100) / s, c.sx[k] + rng.uniform(5, 25) / s])
        rr = ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + ((x - centre[2]) / radii[2]) ** 2
        heart = (rr <= 1.0) & c.inner
        c.hu[heart] = rng.uniform(30, 60) + 8 * rng.standard_normal(int(heart.sum()))  # myocardium
        chambers = heart & (rr <= rng.uniform(0.35, 0.6))
        c.hu[chambers] = blood_hu + 15 * rng.standard_normal(int(chambers.sum()))
    for _ in range(int(rng.integers(2, 6))):
        zc = rng.uniform(0, c.shape[0])
        if np.interp(zc, np.arange(c.shape[0]), level) < 16:
            continue
        yc = np.interp(zc, np.arange(c.shape[0]), c.sy) - rng.uniform(40, 110) / s
        xc = np.interp(zc, np.arange(c.shape[0]), c.sx) + rng.uniform(-90, 90) / s
        rad = rng.uniform(25, 60, size=3) / s
        blob = (((z - zc) / rad[0]) ** 2 + ((y - yc) / rad[1]) ** 2 + ((x - xc) / rad[2]) ** 2) <= 1.0
        blob &= c.inner
        c.hu[blob] = rng.uniform(30, 80) + 8 * rng.standard_normal(int(blob.sum()))


def _spinal_canal(c: _Canvas, rng: np.random.Generator) -> None:
    """The holes of the vertebral rings (axial slices), closed along z."""
    bone = c.lab > 0
    axial = np.zeros((3, 3, 3), dtype=bool)
    axial[1] = ndimage.generate_binary_structure(2, 1)
    canal = ndimage.binary_fill_holes(bone, structure=axial) & ~bone
    canal = ndimage.binary_closing(canal, structure=np.ones((5, 1, 1), dtype=bool)) & ~bone
    c.hu[canal] = rng.uniform(0, 30)


def _discs(c: _Canvas, rng: np.random.Generator) -> None:
    """Intervertebral discs between consecutive vertebrae (T12 -> T13 -> L1 where a T13 is present)."""
    disc_hu = rng.uniform(60, 110)
    for k in sorted(c.present):
        nxt = k + 1 if k != 19 else (28 if 28 in c.present else 20)
        if nxt not in c.present or k > 24:
            continue
        a, b = c.objects[k - 1], c.objects[nxt - 1]
        sl = tuple(slice(max(min(p.start, q.start) - 3, 0), max(p.stop, q.stop) + 3) for p, q in zip(a, b))
        sub = c.lab[sl]
        disc = ndimage.binary_dilation(sub == k, iterations=2) & ndimage.binary_dilation(sub == nxt, iterations=2)
        disc &= sub == 0
        c.hu[sl][disc] = disc_hu + 10 * rng.standard_normal(int(disc.sum()))


def _ribs(c: _Canvas, rng: np.random.Generator) -> np.ndarray:
    """Ribs (bone, label 0) of T1-T12: the head at the body's posterolateral corner (:mod:`.costovertebral`), the
    neck to the tip of the transverse process, then outwards-backwards and along the body wall to the front."""
    s, shape = c.s, c.shape
    centre_line = np.zeros(shape, dtype=bool)
    for k in sorted(p for p in c.present if 8 <= p <= 19):
        sl = c.objects[k - 1]
        zc = int(round(ndimage.center_of_mass(c.lab[sl] == k)[0] + sl[0].start))
        yk, xk = c.sy[zc], c.sx[zc]
        half_width = (sl[2].stop - sl[2].start) / 2
        for side in (-1, 1):
            t = np.linspace(0, 1, 200)
            x0, y0 = xk + side * half_width * 0.9, yk + 5 / s
            theta0 = np.arctan2((y0 - c.cy[zc]) / c.ay[zc], side * max(abs(x0 - c.cx[zc]), 1) / c.ax[zc])
            sweep = side * rng.uniform(1.6, 2.4)
            theta = theta0 - sweep * t
            inset = (c.fat_mm + rng.uniform(8, 15)) / s
            ry = c.cy[zc] + (c.ay[zc] - inset) * np.sin(theta)
            rx = c.cx[zc] + (c.ax[zc] - inset) * np.cos(theta)
            lead = np.clip(t * 6, 0, 1)
            pts_y = (1 - lead) * y0 + lead * ry
            pts_x = (1 - lead) * x0 + lead * rx
            pts_z = zc - t * rng.uniform(10, 45) / s
            head = head_point(c.lab, k, side, s)
            if head is not None:  # the head and neck: from the costovertebral joint to the rib's start
                u = np.linspace(0, 1, 40, endpoint=False)
                pts_z, pts_y, pts_x = (np.concatenate([h + u * (p[0] - h), p])
                                       for h, p in zip(head, (pts_z, pts_y, pts_x)))
            idx = np.round(np.stack([pts_z, pts_y, pts_x])).astype(int)
            ok = np.all((idx >= 0) & (idx < np.array(shape)[:, None]), axis=0)
            centre_line[tuple(idx[:, ok])] = True
    if not centre_line.any():
        return centre_line
    return ndimage.binary_dilation(centre_line, iterations=1)


def _first_sacral_segment(c: _Canvas, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """S1 (bone, label 0): the L5 shape moved down the column by one vertebra (the L4 -> L5 step), with a disc
    painted between L5 and it.

    The real S1 is a vertebral body with an arch, fused with the alae; a model that never saw one below L5 takes it
    for one more lumbar vertebra (the model trained without the example CT, issue 10). Returns the S1 mask and the
    z index of its centroid (canonical z grows superiorly).
    """
    l5 = c.lab == L5
    centre_l5 = np.array(ndimage.center_of_mass(l5))
    if L5 - 1 in c.present:
        step = centre_l5 - np.array(ndimage.center_of_mass(c.lab == L5 - 1))
    else:
        sl = c.objects[L5 - 1]
        step = np.array([-(sl[0].stop - sl[0].start) * 0.8, 0.0, 0.0])
    step *= rng.uniform(0.95, 1.1)
    s1 = ndimage.shift(l5, np.rint(step), order=0, mode="constant", cval=False) & (c.lab == 0)
    disc = ndimage.binary_dilation(l5, iterations=3) & ndimage.binary_dilation(s1, iterations=3) & (c.lab == 0) & ~s1
    c.hu[disc] = rng.uniform(60, 110) + 10 * rng.standard_normal(int(disc.sum()))
    return s1, int(round(centre_l5[0] + step[0]))


def _pelvis(c: _Canvas, rng: np.random.Generator) -> np.ndarray:
    """The sacrum below L5 (S1 shaped like a vertebra, fused with the alae and the tapering sacrum below) and the
    iliac wings beside it (bone, label 0); empty without an L5."""
    out = np.zeros(c.shape, dtype=bool)
    if L5 not in c.present:
        return out
    s, z, y, x = c.s, c.z, c.y, c.x
    sl = c.objects[L5 - 1]
    s1, s1_centre = _first_sacral_segment(c, rng)
    out |= s1
    z_top = s1_centre + int(round(rng.uniform(0, 8) / s))  # the alae flank the upper half of the S1 body
    yl5, xl5 = c.sy[sl[0].start], c.sx[sl[0].start]
    length = rng.uniform(80, 110) / s
    frac = np.clip((z_top - z) / length, 0, None)
    sac = (z <= z_top) & (frac <= 1)
    sac_y = yl5 - 8 / s + frac * 35 / s
    sac_r = ((y - sac_y) / ((18 - 10 * frac) / s + 1)) ** 2 + ((x - xl5) / ((50 - 35 * frac) / s + 1)) ** 2
    out |= sac & (sac_r <= 1.0)
    for side in (-1, 1):  # iliac wings: lateral shells of two ellipsoids beside the sacrum
        centre = np.array([z_top - 35 / s, yl5 - 5 / s, xl5 + side * 75 / s])
        r = np.array([55, 70, 55]) / s * rng.uniform(0.85, 1.15)
        rr = np.sqrt(((z - centre[0]) / r[0]) ** 2 + ((y - centre[1]) / r[1]) ** 2 + ((x - centre[2]) / r[2]) ** 2)
        wing = ((rr <= 1.0) & (rr >= 1.0 - 3.5 / r.min()) & (side * (x - centre[2]) > -10 / s)
                & (z > centre[0] - 0.6 * r[0]))
        out |= wing & c.body
    return out


def _skull_base(c: _Canvas, rng: np.random.Generator) -> np.ndarray:
    """The skull base above C1 with a foramen magnum (bone, label 0); empty without a C1."""
    if 1 not in c.present:
        return np.zeros(c.shape, dtype=bool)
    s, z, y, x = c.s, c.z, c.y, c.x
    sl = c.objects[0]
    z_c1 = sl[0].stop
    yc1, xc1 = c.sy[sl[0].stop - 1], c.sx[sl[0].stop - 1]
    r = np.array([65, 90, 70]) / s * rng.uniform(0.9, 1.1)
    centre = np.array([z_c1 + rng.uniform(4, 9) / s + r[0], yc1 - 10 / s, xc1])
    rr = np.sqrt(((z - centre[0]) / r[0]) ** 2 + ((y - centre[1]) / r[1]) ** 2 + ((x - centre[2]) / r[2]) ** 2)
    skull = (rr <= 1.0) & (rr >= 1.0 - 7 / r.min()) & (z < centre[0])
    foramen = ((y - yc1) ** 2 + (x - xc1) ** 2) <= (16 / s) ** 2
    return skull & ~foramen


def _paint_bone(c: _Canvas, distractor: np.ndarray, rng: np.random.Generator) -> None:
    """Vertebrae and confounding bone: the cortical shell (~1 mm of 700-1400 HU) is thinner than a voxel at the
    model spacing, so a shell voxel holds a partial-volume mix of cortical and trabecular bone (cortical
    fraction ~ 1 mm / spacing)."""
    bone, lab, shape = c.lab > 0, c.lab, c.shape
    cortical = rng.uniform(700, 1400)
    cortical_fraction = float(np.clip(rng.uniform(0.6, 1.4) / c.s, 0.15, 1.0))
    trabecular = rng.uniform(60, 300, size=64).astype(np.float32)  # real CTs at 2.5 mm: interior medians 75-165 HU
    marrow_texture = 45 * _texture(shape, rng, 0.7)
    hu = c.hu
    if distractor.any():
        hu[distractor] = trabecular[0] + marrow_texture[distractor]
        rim = _shell(distractor)
        hu[rim] = cortical_fraction * cortical + (1 - cortical_fraction) * hu[rim]
    hu[bone] = trabecular[lab[bone]] + marrow_texture[bone]
    edge = bone & _label_boundary(lab)
    hu[edge] = cortical_fraction * cortical + (1 - cortical_fraction) * hu[edge] + 40 * rng.standard_normal(int(edge.sum()))


def _acquisition(hu: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur (partial volume) and scanner noise; nothing below -1024 HU."""
    hu = ndimage.gaussian_filter(hu, rng.uniform(0.4, 1.0))
    hu += rng.uniform(10, 60) * rng.standard_normal(hu.shape).astype(np.float32)
    return np.maximum(hu, -1024.0)


def _field_of_view(hu: np.ndarray, lab: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random partial field of view: a z-crop (70 %) and an in-plane crop (40 %), kept only if a vertebra
    stays in view."""
    shape = lab.shape
    lo, hi = np.zeros(3, dtype=int), np.array(shape)
    if rng.random() < 0.7:
        keep = int(rng.uniform(0.45, 1.0) * shape[0])
        lo[0] = int(rng.integers(0, shape[0] - keep + 1))
        hi[0] = lo[0] + keep
    if rng.random() < 0.4:
        for axis in (1, 2):
            keep = int(rng.uniform(0.55, 1.0) * shape[axis])
            lo[axis] = int(rng.integers(0, shape[axis] - keep + 1))
            hi[axis] = lo[axis] + keep
    if not lab[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].any():
        return hu, lab
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    return hu[sl], lab[sl]
