"""Synthetic CT volumes from a real whole-anatomy label map, with randomized intensities per tissue.

:mod:`.synthetic` builds its context (ribs as lines, a body outline, blobs) procedurally around vertebra masks.
A real whole-anatomy label map (TotalSegmentator v2 ``total`` numbering: vertebrae, ribs 1-12, sternum,
costal cartilage, scapulae, clavicles, humeri, hips, lungs, heart, vessels, organs, muscles, spinal cord) holds
the real neighbours of every vertebra: ribs beside the transverse processes (their heads and necks, which the maps
leave out, are added: :func:`with_rib_necks`), the scapulae beside the upper
thoracic spine, the sternum in front. :func:`synthesize_from_anatomy` paints such a map into a CT in HU in the
manner of SynthSeg (Billot et al., Medical Image Analysis 2023): every structure gets a random intensity drawn
from its tissue's plausible range (so the network learns shape and context, not one scanner's grey values), bone
gets a cortical shell and a textured interior, the unlabelled body is a random mixture of fat and muscle, and the
result is blurred and noised. The vertebrae of the map are the targets (VerSe numbers); every other structure,
bone or not, has label 0.

HU ranges per tissue (typical CT values, with and without contrast agent): air -1000; lung -950..-750; fat
-130..-60; muscle and soft tissue 20..70; organs 20..160; heart and vessels 20..450 (non-contrast to arterial
phase); cartilage 60..220; bowel -500..40 (gas and content); cortical bone 500..1400; trabecular bone 80..350.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..anatomy import to_verse
from .costovertebral import head_point, segment_mask

AIR_HU = -1000.0

#: TotalSegmentator v2 ``total`` ids per tissue class (its ``structures.csv``; ids 25-50 are the sacrum and the
#: vertebrae, 92-115 the ribs, 116 the sternum, 118 the costal cartilages).
TISSUE_IDS: dict[str, tuple[int, ...]] = {
    "lung": (10, 11, 12, 13, 14),
    "airway": (16,),
    "bowel": (6, 18, 19, 20),
    "organ": (1, 2, 3, 4, 5, 7, 8, 9, 15, 17, 21, 22, 23, 24, 90),
    "vessel": tuple(range(51, 69)),
    "muscle": tuple(range(79, 90)),
    "cartilage": (118,),
    "bone": (*range(25, 51), *range(69, 79), 91, *range(92, 117), 117),
}
#: TotalSegmentator v2 ids of the left and right rib 1 (ribs 2-12 follow: 92-103 left, 104-115 right).
FIRST_RIB_IDS = (92, 104)
#: Radius (mm) of the rib head and neck painted from the body to the labelled rib (the neck is 8-10 mm thick).
RIB_NECK_RADIUS_MM = 4.0
#: HU range (low, high) from which each structure of a tissue class draws its mean.
TISSUE_HU: dict[str, tuple[float, float]] = {
    "lung": (-950.0, -750.0),
    "airway": (-1000.0, -900.0),
    "bowel": (-500.0, 40.0),
    "organ": (20.0, 160.0),
    "vessel": (20.0, 450.0),
    "muscle": (20.0, 70.0),
    "cartilage": (60.0, 220.0),
}
CORTICAL_HU = (500.0, 1400.0)
TRABECULAR_HU = (80.0, 350.0)
FAT_HU = (-130.0, -60.0)


def _tissue_of(ids: np.ndarray) -> dict[int, str]:
    lookup = {i: name for name, members in TISSUE_IDS.items() for i in members}
    return {int(i): lookup.get(int(i), "organ") for i in ids if i != 0}


def _body_mask(anatomy: np.ndarray, rng: np.random.Generator, spacing_mm: float) -> np.ndarray:
    """Every labelled structure, closed and filled slice by slice, plus a random subcutaneous layer."""
    body = anatomy > 0
    body = ndimage.binary_closing(body, iterations=max(1, int(round(10.0 / spacing_mm))))
    body = np.stack([ndimage.binary_fill_holes(s) for s in body])
    layer = int(round(rng.uniform(5.0, 25.0) / spacing_mm))
    return ndimage.binary_dilation(body, iterations=layer) if layer else body


def with_rib_necks(anatomy: np.ndarray, labels: np.ndarray, spacing_mm: float) -> np.ndarray:
    """The map with each rib's head and neck (:mod:`.costovertebral`) added to the rib's label.

    TotalSegmentator's ribs begin 28-39 mm from the midline; the head and neck between the costovertebral joint and
    the rib's nearest labelled voxel are painted as a tube of :data:`RIB_NECK_RADIUS_MM` over unlabelled and muscle
    voxels (other structures stay).

    Args:
        anatomy: int [z, y, x] = [S, P, L] TotalSegmentator v2 ``total`` ids on an isotropic grid.
        labels: its VerSe vertebra labels (:func:`~SpineSegmentationLib.anatomy.to_verse`), same shape.
        spacing_mm: the grid's spacing (mm).

    Returns:
        A new map of the same shape and dtype.
    """
    out = anatomy.copy()
    paintable = (out == 0) | np.isin(out, TISSUE_IDS["muscle"])
    for rib_number in range(1, 13):
        vertebra = 7 + rib_number  # rib k articulates with Tk (VerSe 8-19)
        voxels = np.argwhere(labels == vertebra)
        if len(voxels) == 0:
            continue
        centre = voxels.mean(axis=0)
        for first in FIRST_RIB_IDS:
            rib = np.argwhere(anatomy == first + rib_number - 1)
            if len(rib) == 0:
                continue
            head = head_point(labels, vertebra, 1 if rib[:, 2].mean() > centre[2] else -1, spacing_mm)
            if head is None:
                continue
            medial_end = rib[np.argmin(np.sum((rib - centre) ** 2, axis=1))]
            neck = segment_mask(out.shape, head, medial_end, RIB_NECK_RADIUS_MM / spacing_mm) & paintable
            out[neck] = first + rib_number - 1
    return out


def synthesize_from_anatomy(anatomy: np.ndarray, rng: np.random.Generator,
                            spacing_mm: float = 2.5) -> tuple[np.ndarray, np.ndarray]:
    """Paint a whole-anatomy label map into a synthetic CT (see the module docstring).

    Args:
        anatomy: int array [z, y, x] = [S, P, L] on an isotropic grid, TotalSegmentator v2 ``total`` ids.
        rng: random generator (all randomness comes from it).
        spacing_mm: the grid's isotropic spacing (mm); sets the blur, the texture scale and the fat layer.

    Returns:
        ``(hu, labels)``: float32 HU and int16 VerSe vertebra labels (:func:`~SpineSegmentationLib.anatomy.
        to_verse` of the map: vertebrae 1-24, sacrum 26, everything else 0), both of ``anatomy``'s shape.

    Raises:
        ValueError: the map is not 3D or holds no vertebra.
    """
    anatomy = np.asarray(anatomy)
    if anatomy.ndim != 3:
        raise ValueError(f"the anatomy label map must be 3D [z, y, x], got shape {anatomy.shape}")
    labels = to_verse(anatomy, "totalseg")
    if not labels.any():
        raise ValueError("the anatomy label map holds no vertebra (TotalSegmentator ids 26-50)")
    anatomy = with_rib_necks(anatomy, labels, spacing_mm)
    shape = anatomy.shape
    texture = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 1.5 / spacing_mm + 0.5)
    texture /= texture.std() + 1e-6

    # unlabelled body: fat and muscle mixed by a smooth random field; outside the body: air
    mix = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 12.0 / spacing_mm)
    muscle_share = rng.uniform(0.3, 0.7)
    soft = np.where(mix > np.quantile(mix, 1.0 - muscle_share), rng.uniform(*TISSUE_HU["muscle"]),
                    rng.uniform(*FAT_HU)).astype(np.float32)
    hu = np.where(_body_mask(anatomy, rng, spacing_mm), soft, AIR_HU).astype(np.float32)

    # every structure: its own random mean within its tissue's range, a little texture
    bone = np.zeros(shape, dtype=bool)
    for structure, tissue in _tissue_of(np.unique(anatomy)).items():
        mask = anatomy == structure
        if tissue == "bone":
            bone |= mask
            continue
        hu[mask] = rng.uniform(*TISSUE_HU[tissue]) + rng.uniform(5.0, 25.0) * texture[mask]

    # bone: a cortical shell (the voxels next to anything that is not the same structure) around trabecular bone
    interior = ndimage.binary_erosion(bone)
    same = np.ones(shape, dtype=bool)
    for axis in range(3):  # a voxel is interior only if its 6 neighbours belong to the same structure
        for shift in (1, -1):
            same &= np.roll(anatomy, shift, axis=axis) == anatomy
    interior &= same
    shell = bone & ~interior
    # partial volume: at coarse spacing the cortex (1-2 mm) fills only part of a shell voxel
    cortex_share = min(1.0, rng.uniform(1.2, 2.4) / spacing_mm)
    trabecular = rng.uniform(*TRABECULAR_HU)
    hu[interior] = trabecular + rng.uniform(20.0, 80.0) * texture[interior]
    hu[shell] = cortex_share * rng.uniform(*CORTICAL_HU) + (1 - cortex_share) * trabecular

    hu = ndimage.gaussian_filter(hu, rng.uniform(0.3, 1.0))
    hu += rng.normal(0.0, rng.uniform(5.0, 50.0), size=shape).astype(np.float32)
    return hu.astype(np.float32), labels
