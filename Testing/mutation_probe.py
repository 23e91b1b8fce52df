"""Mutation probe: deliberate bugs that the tests must catch.

Each mutation below breaks one rule of the method (seed 002) or one claim of the README in a temporary copy of the
repository, and runs only the tests that guard that rule. A mutation is *caught* when those tests fail, *missed*
when they pass. The working tree is never changed.

Usage (from the repository root; the shared data must sit next to the checkout, as for the tests)::

    python Testing/mutation_probe.py            # every mutation, then a table of caught / missed
    python Testing/mutation_probe.py --list     # the mutations and their tests, nothing run
    python Testing/mutation_probe.py --only convergence-boundary no-bone-label
    python Testing/mutation_probe.py --baseline # first check that the selected tests pass unmutated
    python Testing/mutation_probe.py --jobs 4   # four mutations at a time, each in its own copy

Exit status: 0 when every selected mutation is caught, 1 otherwise, 2 for bad arguments or a mutation whose text is
no longer found (the code changed: update the mutation).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
T = "Testing/Python/"


@dataclass(frozen=True)
class Mutation:
    """One deliberate bug: replace ``old`` (must occur exactly once in ``path``) by ``new``."""

    name: str
    rule: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS: tuple[Mutation, ...] = (
    Mutation("click-refound-vertebra-kept", "a click keeps no vertebra behind it below v_min",
             "SpineSegmentationLib/correction.py", " or n_free < v_min:", ":",
             (T + "test_correction.py::test_vertebrae_found_behind_the_clicked_one_that_are_found_already_or_"
                  "below_v_min_are_left_out",)),
    Mutation("rerun-edited-level-ignored", "a re-run labels every vertebra with the edited levels as constraints",
             "SpineSegmentationLib/correction.py", "stated_level=label if label in kept.edited | kept.stated else None",
             "stated_level=label if label in kept.stated else None",
             (T + "test_correction.py::test_an_edited_level_is_a_constraint_that_the_whole_column_follows",)),
    Mutation("rerun-kept-voxels-overwritten", "new voxels never replace kept ones, also when the input grid differs",
             "SpineSegmentationLib/pipeline.py", "taken |= kept_ids > 0", "taken |= (kept_ids > 0) & (ids == 0)",
             (T + "test_correction.py::test_kept_voxels_are_never_overwritten_when_the_input_grid_is_finer_than_the_"
                  "canonical_one",)),
    Mutation("rerun-kept-regressed-without-memory", "a kept vertebra is evaluated with the vertebrae before it in memory",
             "SpineSegmentationLib/correction.py", "before = [i for i in z if i != vid and _behind(scan, z[i], z[vid])]",
             "before = []",
             (T + "test_correction.py::test_rerun_keeps_edits_exactly_redoes_and_completes_and_relabels_the_column",)),
    Mutation("click-without-placeholders", "fragments behind the clicked point are set aside in the memory",
             "SpineSegmentationLib/correction.py", "            region[placeholder.mask] = 1.0\n",
             "            pass\n",
             (T + "test_correction.py::test_click_segments_the_clicked_vertebra_then_continues_up_and_down_exactly",)),
    Mutation("convergence-boundary", "converged when the patch moves by at most delta_max voxels (<=, not <)",
             "SpineSegmentationLib/traversal.py", "<= delta_max))", "< delta_max))",
             (T + "test_traversal.py::test_convergence_is_a_move_of_at_most_delta_max_voxels",)),
    Mutation("midpoint-rule", "after max_iterations the patch moves to the midpoint of the last two positions",
             "SpineSegmentationLib/traversal.py",
             "mid = np.rint((current + (previous if previous is not None else found.bbox_center)) / 2.0).astype(int)",
             "mid = current", (T + "test_traversal.py::test_iteration_limit_applies_the_midpoint_rule",)),
    Mutation("no-bone-label", "a regressed label below 0.5 is 'no vertebral bone': memory only",
             "SpineSegmentationLib/traversal.py", "return label >= NO_BONE_LABEL and (", "return (",
             (T + "test_traversal.py::test_a_no_bone_label_goes_into_the_memory_only_and_traversal_moves_on",)),
    Mutation("bone-fraction", "a fragment with under 5 % of its voxels at 200 HU is rejected",
             "SpineSegmentationLib/traversal.py",
             "(bone_fraction is None or bone_fraction >= MIN_BONE_FRACTION)", "True",
             (T + "test_traversal.py::test_a_fragment_with_too_little_bone_intensity_is_rejected",)),
    Mutation("dense-fragment", "a fragment denser than bone (contrast agent, metal) is rejected",
             "SpineSegmentationLib/traversal.py", "bone_fraction >= MIN_BONE_FRACTION) and not too_dense",
             "bone_fraction >= MIN_BONE_FRACTION)",
             (T + "test_traversal.py::test_a_fragment_denser_than_bone_is_rejected",)),
    Mutation("transitional-prior-unsourced", "a T13/L6 column needs the prevalence prior to win",
             "SpineSegmentationLib/labeling.py", "log_p = np.log(COLUMN_PRIORS[column_name])",
             "log_p = 0.0 if column_name == 'standard' else np.log(0.9)",
             (T + "test_labeling.py::test_transitional_vertebrae_are_chosen_or_listed_as_the_evidence_says",)),
    Mutation("ribs-ignored", "the ribs beside the vertebrae weigh in the labelling",
             "SpineSegmentationLib/labeling.py", "    if evidence.rib_sides is not None:", "    if False:",
             (T + "test_labeling.py::test_ribs_correct_a_column_whose_regressions_are_all_one_and_a_half_levels_high",)),
    Mutation("ribs-along-scanner-z", "ribs are searched along the column's own axis, not the scanner's z axis",
             "SpineSegmentationLib/anatomy_evidence.py", "        axes[i] = axis * np.sign(axis[0]) if",
             "        axes[i] = np.array([1.0, 0.0, 0.0]) if True else axis * np.sign(axis[0]) if",
             (T + "test_anatomy_evidence.py::test_ribs_are_seen_beside_the_thoracic_vertebrae_of_a_real_chest_ct",
              T + "test_pipeline.py::"
              "test_a_real_chest_ct_gets_one_instance_per_vertebra_with_the_levels_its_ribs_give")),
    Mutation("shoulder-chain-kept", "a chain of detections beside the column, level with it, is not spine",
             "SpineSegmentationLib/column.py", "out[run] = beside > len(run) / 2", "out[run] = False",
             (T + "test_column.py::test_a_chain_beside_the_column_level_with_it_is_dropped_whatever_its_support",
              T + "test_pipeline.py::"
              "test_a_neck_to_t3_crop_of_an_unseen_chest_ct_keeps_its_column_and_its_first_rib")),
    Mutation("flat-column-line", "a column line leans at most 60 degrees from the superior-inferior axis",
             "SpineSegmentationLib/column.py",
             "if abs(direction[0]) >= np.cos(np.radians(MAX_LINE_TILT_DEGREES)):", "if True:",
             (T + "test_column.py::test_two_pieces_at_one_height_do_not_draw_a_line_across_to_the_column",)),
    Mutation("flat-run-from-its-mean", "a flat run is measured from the z axes through its points, not their mean",
             "SpineSegmentationLib/column.py", "return float(np.min(np.linalg.norm((point - points)[:, 1:], axis=1)))",
             "return float(np.linalg.norm((point - points.mean(axis=0))[1:]))",
             (T + "test_column.py::test_a_piece_of_a_vertebra_beside_it_does_not_turn_its_run_away_from_the_column",
              T + "test_pipeline.py::test_a_ct_tilted_in_the_sagittal_plane_keeps_its_levels")),
    Mutation("ribs-in-the-scanners-frame", "ribs are searched in each vertebra's mid-sagittal frame",
             "SpineSegmentationLib/anatomy_evidence.py",
             "posterior = _mid_sagittal_posterior(mask, offsets, centre, axis)",
             "posterior = np.array([0.0, 1.0, 0.0]) - axis[1] * axis; posterior /= np.linalg.norm(posterior)",
             (T + "test_anatomy_evidence.py::"
                  "test_ribs_are_measured_in_each_vertebras_own_frame_when_the_patient_lies_turned",
              T + "test_pipeline.py::test_an_unseen_chest_ct_turned_about_its_long_axis_keeps_its_levels")),
    Mutation("offset-prior-as-before", "the regressions' shared offset may reach the 3-4 levels measured on unseen CT",
             "SpineSegmentationLib/labeling.py", "SIGMA_OFFSET = 2.0", "SIGMA_OFFSET = 1.5",
             (T + "test_labeling.py::test_a_shared_offset_of_three_and_a_half_levels_does_not_outweigh_a_first_rib_"
                  "seen_beside_c7",)),
    Mutation("rib-reach-ignores-the-field-of-view", "a rib that leaves a narrow field of view >= 50 mm out counts",
             "SpineSegmentationLib/anatomy_evidence.py",
             "reach = dict.fromkeys(room, min(RIB_REACH_MM / s, *room.values()))",
             "reach = dict.fromkeys(room, RIB_REACH_MM / s)",
             (T + "test_pipeline.py::test_a_chest_ct_reconstructed_around_the_spine_still_shows_its_ribs",)),
    Mutation("no-rib-near-an-edge-unknown", "bone that ends short of a near edge of the field of view is no rib",
             "SpineSegmentationLib/anatomy_evidence.py",
             "elif min(room.values()) > COLUMN_HALF_WIDTH_MM / s:", "elif False:",
             (T + "test_anatomy_evidence.py::"
                  "test_a_field_of_view_near_the_column_still_shows_which_vertebrae_bear_no_rib",
              T + "test_pipeline.py::test_a_chest_ct_reconstructed_around_the_spine_keeps_the_lower_end_of_its_ribs")),
    Mutation("bone-past-a-near-edge-ignored", "bone that runs on beyond a near edge may be a rib: no evidence",
             "SpineSegmentationLib/anatomy_evidence.py",
             "at_edge = near and bool((piece & outward & side_edges[z_lo:z_hi, :, x_lo:x_hi]).any())",
             "at_edge = False",
             (T + "test_anatomy_evidence.py::"
                  "test_a_field_of_view_near_the_column_still_shows_which_vertebrae_bear_no_rib",)),
    Mutation("no-rib-near-an-edge-at-200-hu-only", "near an edge, no rib must hold above 150 HU too",
             "SpineSegmentationLib/anatomy_evidence.py", "    if near and faint_bone is not None and \\\n",
             "    if False and \\\n",
             (T + "test_pipeline.py::test_a_faint_rib_near_the_edge_of_the_field_of_view_is_not_read_as_no_rib",)),
    Mutation("faint-ribs-searched-once", "a gap between rib-bearing vertebrae sends the rib search again at 150 HU",
             "SpineSegmentationLib/anatomy_evidence.py", "if _rib_gap([ribs[i] for i in column]):", "if False:",
             (T + "test_anatomy_evidence.py::test_faint_ribs_are_searched_again_where_a_rib_bearing_run_has_a_gap",)),
    Mutation("floating-ribs-searched-once", "the vertebrae below the rib-bearing run are searched again at 150 HU",
             "SpineSegmentationLib/anatomy_evidence.py",
             "return [column[k] for k in range(both[0] - 1, -1, -1)] if both else []", "return []",
             (T + "test_anatomy_evidence.py::"
              "test_the_floating_ribs_of_a_thick_slice_ct_are_searched_again_below_the_rib_bearing_run",
              T + "test_pipeline.py::test_a_real_chest_ct_at_5_mm_slices_keeps_the_levels_its_ribs_give")),
    Mutation("sacrum-cut-by-the-field-of-view-as-absent", "a bone cut by a side of the image is no measured width",
             "SpineSegmentationLib/anatomy_evidence.py",
             "return None  # the bone runs on beyond a side of the field of view: its width is unknown",
             "return False",
             (T + "test_pipeline.py::test_a_lumbar_ct_reconstructed_around_the_spine_keeps_its_levels",
              T + "test_pipeline.py::test_a_sacrum_that_runs_beyond_both_sides_of_the_field_of_view_is_no_evidence")),
    Mutation("regressions-independent", "neighbouring vertebrae's regressions err together (labelling, K = 3)",
             "SpineSegmentationLib/labeling.py", "REGRESSION_CORRELATION = 3.0", "REGRESSION_CORRELATION = 1.0",
             (T + "test_labeling.py::test_correlated_regressions_do_not_outvote_the_first_rib",
              T + "test_pipeline.py::"
              "test_a_neck_to_t3_crop_of_an_unseen_chest_ct_keeps_its_column_and_its_first_rib")),
    Mutation("ilium-branch-kept", "a branch the spine localization barely responds to is not spine (column.py)",
             "SpineSegmentationLib/column.py", "out[run] = support[run].mean() < BRANCH_SUPPORT_RATIO",
             "out[run] = support[run].mean() < 0.0 * BRANCH_SUPPORT_RATIO",
             (T + "test_pipeline.py::"
              "test_a_ct_tilted_in_the_coronal_plane_keeps_its_levels_and_nothing_on_the_ilium",)),
    Mutation("border-cut-complete", "a vertebra the image border cuts is not complete, whatever the network says",
             "SpineSegmentationLib/pipeline.py", "COMPLETE_THRESHOLD and c.id not in cut),",
             "COMPLETE_THRESHOLD),",
             (T + "test_pipeline.py::test_a_vertebra_the_image_border_cuts_is_flagged_incomplete",)),
    Mutation("ribs-beside-along-scanner-x", "beside a vertebra is measured perpendicular to the column's axis",
             "SpineSegmentationLib/anatomy_evidence.py", "    lateral = np.cross(axis, posterior)  #",
             "    lateral = np.array([0.0, 0.0, 1.0])  #",
             (T + "test_anatomy_evidence.py::test_ribs_are_measured_beside_a_column_tilted_in_the_coronal_plane",)),
    Mutation("completeness-flag", "T12 of the example CT is flagged incomplete (README)",
             "SpineSegmentationLib/pipeline.py",
             "            complete=bool(c.p_complete >= COMPLETE_THRESHOLD and c.id not in cut),",
             "            complete=True,",
             (T + "test_pipeline.py::test_accuracy_against_the_reference_and_completeness_flags",)),
    Mutation("sampler-two-percent", "a training vertebra is complete iff at most 2 % of it lies outside the patch",
             "SpineSegmentationLib/training/sampler.py", "completeness_tolerance: float = 0.02,",
             "completeness_tolerance: float = 0.03,", (T + "test_sampler_completeness.py",)),
    Mutation("elastic-image-only", "the elastic deformation moves the image and the instance masks together",
             "SpineSegmentationLib/training/augmentation.py", "locked_borders=2,",
             "locked_borders=2, include=['image'],",
             (T + "test_training.py::test_the_elastic_deformation_moves_the_image_and_both_masks_together",)),
    Mutation("thick-slices-across-x", "thick slices are simulated along z, the scan's slice axis",
             "SpineSegmentationLib/training/augmentation.py", "tio.RandomAnisotropy(axes=(0,),",
             "tio.RandomAnisotropy(axes=(2,),", (T + "test_training.py::test_thick_slices_smear_along_z_only_and_leave_the_masks",)),
    Mutation("hd95-min-for-max", "HD95 is the larger of the two directed 95th percentiles",
             "SpineSegmentationLib/evaluation.py", "float(max(np.percentile(d_pr, 95), np.percentile(d_rp, 95)))",
             "float(min(np.percentile(d_pr, 95), np.percentile(d_rp, 95)))",
             (T + "test_evaluation.py::test_surface_distances_of_an_asymmetric_pair_count_both_directions",)),
    Mutation("assd-one-directional", "ASSD averages both directed distance sets",
             "SpineSegmentationLib/evaluation.py", "float((d_pr.sum() + d_rp.sum()) / n)", "float(d_pr.mean())",
             (T + "test_evaluation.py::test_surface_distances_of_an_asymmetric_pair_count_both_directions",)),
    Mutation("id-distance-only", "VerSe identification: the predicted centroid's own reference is the nearest",
             "SpineSegmentationLib/evaluation.py",
             "identified = own <= max_distance_mm and own <= distances.min()", "identified = own <= max_distance_mm",
             (T + "test_evaluation.py::test_identification_cases",)),
    Mutation("ctd-whole-centroid", "centroids_ctd.json holds the vertebral-body centres VerSe marks",
             "SpineSegmentationLib/outputs/centroids.py", "for lab, lps in body_centres_lps(labels).items():",
             "for lab, lps in label_centroids_lps(labels).items():",
             (T + "test_outputs.py::test_ctd_round_trip_on_example",)),
    Mutation("seg-nrrd-own-extent", "every segment of the .seg.nrrd carries its layer's extent (Slicer 5.6 reader)",
             "SpineSegmentationLib/outputs/segmentation_nrrd.py", "segment_metadata(v, layer) for v in",
             "segment_metadata(v, extents.get(int(v.label), full)) for v in",
             (T + "test_outputs.py::test_seg_nrrd_read_back_with_slicerio",)),
    Mutation("relabel-clash", "relabelling never merges a vertebra into an untouched structure",
             "SpineSegmentationLib/renumbering.py", "clash = sorted(untouched & set(mapping.values()))", "clash = []",
             (T + "test_correction.py::test_relabelling_never_merges_a_vertebra_into_another_structure",)),
    Mutation("non-verse-values", "label maps with values that are not VerSe labels are refused",
             "SpineSegmentationLib/correction.py",
             "unknown = sorted(set(int(v) for v in np.unique(array)) - set(VERSE_NAMES) - {0})", "unknown = []",
             (T + "test_correction.py::test_rerun_refuses_unknown_or_conflicting_labels",)),
    Mutation("redo-only-column", "only column vertebrae can be redone (not the sacrum)",
             "SpineSegmentationLib/correction.py", "if any(not is_column_vertebra(v) for v in redo_labels):",
             "if False:", (T + "test_correction.py::test_rerun_refuses_unknown_or_conflicting_labels",)),
    Mutation("orientation-half-voxel", "the canonical grid of a re-oriented input is the same (exact agreement)",
             "SpineSegmentationLib/geometry.py",
             "lo = lo - 0.5 * np.abs(np.array(image.GetDirection()).reshape(3, 3)) @",
             "lo = lo - 0.5 * np.array(image.GetDirection()).reshape(3, 3) @",
             (T + "test_pipeline.py::test_the_same_anatomy_whatever_the_input_orientation",)),
    Mutation("split-along-scanner-z", "neighbours at the same height are measured along the column's local axis",
             "SpineSegmentationLib/sanity.py", "axis = principal_axis(centres[near], volumes[near])", "axis = np.eye(3)[2]",
             (T + "test_bad_input.py::test_two_vertebrae_at_the_same_height_in_the_column_give_a_warning",)),
    Mutation("column-end-unmeasured-as-missing", "no sacrum below the column's end warns only where the CT goes on",
             "SpineSegmentationLib/sanity.py", "if v is not None and v.sacrum_below is False",
             "if v is not None and not v.sacrum_below",
             (T + "test_anatomy_evidence.py::test_a_crop_around_the_spine_finds_no_rib_beside_lumbar_vertebrae",)),
    Mutation("column-end-on-any-vertebra", "only the lowest vertebra of the column warns that no sacrum is below it",
             "SpineSegmentationLib/sanity.py", "for v in [lowest] if v is not None", "for v in column if v is not None",
             (T + "test_anatomy_evidence.py::test_a_column_that_ends_above_the_bottom_of_the_ct_without_the_sacrum_"
                  "gives_a_warning",)),
    Mutation("no-sacral-segment", "the lowest segment may be labelled the top of the sacrum",
             "SpineSegmentationLib/labeling.py", "if sacral_instance and 2 <= n", "if False and 2 <= n",
             (T + "test_anatomy_evidence.py::test_the_top_of_the_sacrum_segmented_as_a_vertebra_is_labelled_the_"
                  "sacrum", T + "test_labeling.py::test_the_sacrum_as_the_lowest_segment_needs_the_sacrum_below_the_"
                  "vertebra_above_it")),
    Mutation("sacrum-below-lowest-only", "the sacrum is measured below the lowest two segments",
             "SpineSegmentationLib/anatomy_evidence.py", "lowest_two = column[:2]", "lowest_two = column[:1]",
             (T + "test_anatomy_evidence.py::test_the_top_of_the_sacrum_segmented_as_a_vertebra_is_labelled_the_"
                  "sacrum",)),
    Mutation("column-from-a-stray-blob", "a run of narrow slices shorter than 40 mm does not define the spine's "
             "centre line (the path does)", "SpineSegmentationLib/localization.py",
             "    if long_runs:\n        sure = np.concatenate(long_runs)\n",
             "    if runs:\n        sure = np.concatenate(long_runs) if long_runs else max(runs, key=len)\n",
             (T + "test_localization.py::test_the_column_of_an_obliquely_stored_ct_is_not_drawn_through_a_stray_"
                  "blob",)),
    Mutation("cut-only-at-the-grid-faces", "a body the scan's edge cuts inside the canonical grid gives no rib "
             "evidence",
             "SpineSegmentationLib/anatomy_evidence.py", "    cut = bool(edge[tuple(body_voxels.T)].any())",
             "    cut = bool(body_voxels[:, 0].min() == 0 or body_voxels[:, 0].max() == nz - 1)",
             (T + "test_anatomy_evidence.py::test_a_body_cut_by_an_oblique_scans_edge_inside_the_grid_gives_no_rib_"
                  "evidence",)),
    Mutation("filled-corners-as-data", "values at or below -1024 HU are no data for the field of view",
             "SpineSegmentationLib/anatomy_evidence.py",
             "    return ndimage.binary_fill_holes(within.astype(bool) & (hu > AIR_HU), in_plane)",
             "    return within.astype(bool)",
             (T + "test_anatomy_evidence.py::test_a_body_at_an_oblique_reformats_air_filled_edge_gives_no_rib_"
                  "evidence",)),
    Mutation("air-enclosed-in-3d-only", "values at or below -1024 HU enclosed by the body in their "
             "axial slice are in view (enclosed in 3D misses lungs that run on beyond the scan)",
             "SpineSegmentationLib/anatomy_evidence.py",
             "    return ndimage.binary_fill_holes(within.astype(bool) & (hu > AIR_HU), in_plane)",
             "    return ndimage.binary_fill_holes(within.astype(bool) & (hu > AIR_HU))",
             (T + "test_anatomy_evidence.py::test_lungs_at_the_lowest_value_a_scanner_stores_are_not_the_edge_of_the_"
                  "field_of_view",)),
    Mutation("room-to-the-grid-faces", "the room beside a vertebra is measured to the end of the field of view",
             "SpineSegmentationLib/anatomy_evidence.py",
             "    rooms = {i: _side_room(centres[i], in_view) for i in column}",
             "    rooms = {i: _side_room(centres[i], np.ones_like(in_view)) for i in column}",
             (T + "test_anatomy_evidence.py::test_ribs_that_leave_an_obliquely_stored_field_of_view_are_ribs",)),
    Mutation("bone-leaving-beside-the-column-ends-there", "bone that leaves the field of view 25-50 mm out is no "
             "evidence", "SpineSegmentationLib/anatomy_evidence.py",
             "                if COLUMN_HALF_WIDTH_MM / s <= exit_reach < MIN_RIB_REACH_MM / s:\n"
             "                    return None\n", "",
             (T + "test_anatomy_evidence.py::test_a_rib_that_leaves_the_field_of_view_beside_the_column_gives_no_"
                  "evidence",)),
    Mutation("bone-leaving-the-scan-ignored", "bone that leaves the field of view 50 mm out is a rib",
             "SpineSegmentationLib/anatomy_evidence.py",
             "                leaving = u[piece & outward & rim[z_lo:z_hi, :, x_lo:x_hi]]",
             "                leaving = u[piece & outward & ~np.ones_like(piece)]",
             (T + "test_anatomy_evidence.py::test_ribs_that_leave_an_obliquely_stored_field_of_view_are_ribs",)),
    Mutation("sacrum-below-along-z", "the sacrum is searched below a vertebra along the column's axis",
             "SpineSegmentationLib/anatomy_evidence.py",
             "_sacrum_below(sacral_bone, grid_ids == i, centres[i], axes[i], frames[i], in_view)",
             "_sacrum_below(sacral_bone, grid_ids == i, centres[i], np.array([1.0, 0.0, 0.0]), frames[i], in_view)",
             (T + "test_anatomy_evidence.py::test_the_sacrum_is_measured_below_a_column_tilted_in_the_coronal_"
                  "plane",)),
    Mutation("sacrum-beside-segments", "the sacrum is sought away from the cortex shell segments leave outside them",
             "SpineSegmentationLib/anatomy_evidence.py",
             "sacral_bone = free_bone & ~ndimage.binary_dilation(grid_ids > 0)", "sacral_bone = free_bone",
             (T + "test_pipeline.py::test_a_ct_of_larger_vertebrae_keeps_its_levels",)),
    Mutation("no-resegmentation-after-a-dropped-branch", "a vertebra segmented beside a dropped branch is "
             "evaluated again without it", "SpineSegmentationLib/pipeline.py",
             "        if not ((dropped[window] > 0) & (dropped[window] < v.instance)).any():\n", "        if True:\n",
             (T + "test_pipeline.py::test_a_ct_tilted_in_the_coronal_plane_keeps_its_levels_and_nothing_on_the_ilium",)),
    Mutation("resegmentation-takes-another-vertebra", "a vertebra segmented again beside a dropped detection keeps "
             "its mask where the network draws another vertebra there", "SpineSegmentationLib/pipeline.py",
             "        if (mask & own).sum() < SAME_VERTEBRA_SHARE * own.sum():\n            continue\n", "",
             (T + "test_pipeline.py::test_a_vertebra_segmented_again_beside_a_dropped_detection_stays_that_vertebra",)),
    Mutation("sliding-window-in-raster-order", "where the spine mask is wider than one patch, the sliding window "
             "starts with the window holding most of it", "SpineSegmentationLib/traversal.py",
             "for y, x in sorted(held, key=lambda yx: -held[yx])]", "for y, x in held]",
             (T + "test_traversal.py::test_the_sliding_window_starts_on_the_column_where_the_mask_is_wide",
              T + "test_pipeline.py::test_a_ct_turned_about_its_long_axis_starts_its_traversal_on_the_column",
              T + "test_pipeline.py::test_a_short_upper_chest_scan_is_segmented_on_its_column_not_on_the_shoulder")),
    Mutation("test-time-mirror-not-mapped-back", "the mirrored patch's mask is flipped back before it is averaged",
             "SpineSegmentationLib/traversal.py", "prob = 0.5 * (prob[:n] + torch.flip(prob[n:], dims=(-1,)))",
             "prob = 0.5 * (prob[:n] + prob[n:])",
             (T + "test_traversal.py::test_the_test_time_mirror_gives_a_mirrored_scan_the_mirrored_prediction",)),
    Mutation("fragment-across-a-disc-kept-whole", "a fragment whose body is two pieces along the column is cut at the "
             "disc between them", "SpineSegmentationLib/traversal.py", "kept = split_at_disc(fragment.mask)",
             "kept = None",
             (T + "test_traversal.py::test_a_fragment_that_crosses_a_disc_is_cut_there_and_the_next_vertebra_gets_the_"
                  "rest",
              T + "test_pipeline.py::test_an_unseen_chest_ct_cut_mid_column_keeps_its_last_two_vertebrae_apart")),
    Mutation("held-out-scan-trained-on", "a run that would see a held-out scan (in its data or its starting model's "
             "lineage) does not start", "SpineSegmentationLib/training/lineage.py", "    if not held_out:\n        return",
             "    if held_out:\n        return",
             (T + "test_lineage.py::test_a_run_that_would_train_on_a_held_out_scan_does_not_start",
              T + "test_lineage.py::test_a_held_out_scan_seen_by_the_starting_model_stops_the_run")),
    Mutation("labels-back-by-nearest-neighbour", "labels go back to the input grid by linear label interpolation",
             "SpineSegmentationLib/geometry.py", "grid, sitk.Transform(), sitk.sitkLinear, 0.0))",
             "grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0))",
             (T + "test_geometry.py::test_label_round_trip_through_a_coarser_grid_keeps_each_vertebra_better_than_"
                  "nearest_neighbour",)),
    Mutation("surfaces-by-indicators", "labelled or not on the input grid follows the network's mask probability",
             "SpineSegmentationLib/geometry.py", "soft = _soft_indicator(labels[sub] > 0, probability[sub], threshold)",
             "soft = (labels[sub] > 0).astype(np.float32)",
             (T + "test_geometry.py::test_surfaces_on_the_input_grid_follow_the_mask_probability",
              T + "test_pipeline.py::test_the_surfaces_on_the_input_grid_follow_the_networks_probability")),
    Mutation("segmentation-without-mask-probability", "segment_spine passes the traversal's mask probability on",
             "SpineSegmentationLib/pipeline.py", "new_probability=trav.mask_probability)", "new_probability=None)",
             (T + "test_pipeline.py::test_the_surfaces_on_the_input_grid_follow_the_networks_probability",)),
    Mutation("background-probability-above-threshold", "background voxels keep a mask probability below the threshold",
             "SpineSegmentationLib/traversal.py", "np.minimum(probability[background], below)",
             "probability[background]",
             (T + "test_traversal.py::test_the_mask_probability_is_above_the_threshold_exactly_on_the_vertebrae",
              T + "test_traversal.py::test_recording_a_mask_probability_keeps_background_below_the_threshold_and_"
                  "other_vertebrae_as_they_are")),
    Mutation("spine-mask-gates-the-column", "the vertebra that follows on from a committed one passes the spine mask",
             "SpineSegmentationLib/traversal.py", "is not None and not self.following and", "is not None and",
             (T + "test_traversal.py::test_the_column_leads_on_where_the_spine_mask_ends",)),
    Mutation("centre-line-over-the-whole-slice", "the spine's centre line is the weighted mean over the spine's "
             "own peak in each slice, not over everything the mask holds there (localization.spine_column)",
             "SpineSegmentationLib/localization.py", "weights = inside.sum(axis=1)[sure] * spine",
             "weights = inside.sum(axis=1)[sure]",
             (T + "test_localization.py::test_a_shoulder_in_the_narrow_slices_does_not_pull_the_centre_line",
              T + "test_pipeline.py::test_a_short_upper_chest_scan_is_segmented_on_its_column_not_on_the_shoulder")),
    Mutation("no-path-without-narrow-slices", "a mask wide in every slice is cut around the spine's most probable "
             "path", "SpineSegmentationLib/localization.py",
             "    elif on_path[zs].mean() < PATH_MIN_CONTRAST * profile[present].mean():",
             "    elif True:",
             (T + "test_localization.py::test_without_narrow_slices_the_line_follows_the_spines_most_probable_path",
              T + "test_pipeline.py::test_the_upper_half_of_an_unseen_chest_ct_finds_its_column_between_the_"
                  "shoulders")),
    Mutation("one-rib-side-on-a-cut-body-counts", "fewer than two rib sides seen on a body the field of view cuts "
             "are no evidence", "SpineSegmentationLib/anatomy_evidence.py",
             "if (near and sides) or ((cut or processes_cut) and sides < 2):",
             "if (near and sides) or ((cut or processes_cut) and sides == 0):",
             (T + "test_anatomy_evidence.py::test_a_rib_on_one_side_of_a_body_the_field_of_view_cuts_is_no_evidence",
              T + "test_pipeline.py::test_an_unseen_chest_ct_turned_about_its_long_axis_keeps_its_levels")),
    Mutation("no-rib-beside-cut-off-transverse-processes", "a vertebra whose transverse processes the field of view "
             "cuts off gives no rib evidence short of two sides", "SpineSegmentationLib/anatomy_evidence.py",
             "if (near and sides) or ((cut or processes_cut) and sides < 2):",
             "if (near and sides) or (cut and sides < 2):",
             (T + "test_pipeline.py::test_a_cardiac_ct_whose_field_of_view_cuts_the_arches_gets_one_instance_per_"
                  "vertebra",)),
    Mutation("false-start-goes-on-from-its-fragment", "a search from the sliding window that has found no vertebra "
             "goes on with its next window when its fragment is no vertebral bone", "SpineSegmentationLib/traversal.py",
             "elif false_start and self.result.rejected > rejected:", "elif False:",
             (T + "test_pipeline.py::test_a_cardiac_ct_whose_field_of_view_cuts_the_arches_gets_one_instance_per_"
                  "vertebra",)),
    Mutation("synthetic-sacrum-without-s1", "the synthetic CTs have an S1 shaped like L5 below it",
             "SpineSegmentationLib/training/synthetic.py", "    out |= s1\n", "",
             (T + "test_synthetic_ct.py::test_s1_is_l5_shaped_background_bone_one_vertebra_below_l5_behind_a_disc",)),
    Mutation("alternatives-ignore-statements", "the labelling alternatives keep the levels a person stated",
             "SpineSegmentationLib/renumbering.py",
             "constraints=stated if len(stated) < len(ordered) else None,", "constraints=None,",
             (T + "test_correction.py::test_alternatives_keep_the_levels_a_person_stated",
              T + "test_correction_mrml.py::test_the_alternatives_list_keeps_a_stated_level")),
    Mutation("ribs-disagreeing-not-warned", "two vertebrae that contradict their ribs are warned about",
             "SpineSegmentationLib/sanity.py", "MIN_RIB_DISAGREEMENTS = 2", "MIN_RIB_DISAGREEMENTS = 4",
             (T + "test_bad_input.py::test_levels_that_disagree_with_the_ribs_in_two_places_give_a_warning",)),
    Mutation("process-slope-sign-lost", "spinous processes pointing towards the head warn of voxel data upside down",
             "SpineSegmentationLib/anatomy_evidence.py",
             "line_sign = -np.sign(j12 * (half_trace + spread - j11))", "line_sign = np.abs(np.sign(j12))",
             (T + "test_anatomy_evidence.py::test_the_spinous_processes_slope_towards_the_feet_and_turn_with_voxel_"
                  "data_upside_down",)),
    Mutation("synthetic-heart-without-contrast", "the synthetic heart's chambers hold contrast-filled blood",
             "SpineSegmentationLib/training/synthetic.py",
             "c.hu[chambers] = blood_hu + 15", "c.hu[chambers] = 45.0 + 15",
             (T + "test_synthetic_ct.py::test_contrast_filled_aorta_and_heart_lie_in_front_of_the_thoracic_spine",)),
    Mutation("disc-cut-on-point-samples", "the cut at a disc measures the CT averaged over each voxel",
             "SpineSegmentationLib/pipeline.py",
             "disc_volume = normalize_hu(anti_aliased_on_grid(image, reference), model.preprocessing)",
             "disc_volume = None",
             (T + "test_pipeline.py::test_an_unseen_chest_ct_reconstructed_with_a_sharper_kernel_keeps_its_vertebrae",)),
    Mutation("non-vertebra-replaced", "a correction leaves segments that are not vertebrae as they are",
             "SpineSegmentation/SpineSegmentationModuleLib/mrml_import.py",
             "    if not segment.GetNameAutoGenerated():\n        return False",
             "    if not segment.GetNameAutoGenerated():\n        return True",
             (T + "test_correction_mrml.py::test_a_segment_that_is_not_a_vertebra_is_left_as_it_is_by_every_correction",)),
    Mutation("rename-during-run-ignored", "a correction's result is refused when segments were renamed while it ran",
             "SpineSegmentation/SpineSegmentationModuleLib/correction.py",
             "    return segment_digests(segmentation), described",
             "    return segment_digests(segmentation), {}",
             (T + "test_correction_mrml.py::test_a_rename_made_while_a_correction_runs_is_not_replaced_by_its_result",)),
    Mutation("segment-editor-undo-taken-for-edit", "the Segment Editor's Undo is not an edit",
             "SpineSegmentation/SpineSegmentationModuleLib/correction.py",
             "        entry[2] = segment_digests(caller)\n",
             "        pass\n",
             (T + "test_correction_mrml.py::test_the_segment_editor_s_undo_is_not_taken_for_an_edit",)),
    Mutation("stale-dicom-seg-kept", "--overwrite never leaves an earlier result's DICOM SEG beside a new result",
             "SpineSegmentationLib/outputs/__init__.py",
             "    stale = [] if DICOM_SEG_FILE in extra.values() else [DICOM_SEG_FILE]",
             "    stale = []",
             (T + "test_dicom_seg.py::test_an_earlier_seg_is_never_left_beside_a_new_result_nor_written_into_the_series",)),
    Mutation("correction-overwrites-its-result", "renumbering never changes the result folder it starts from",
             "SpineSegmentationLib/correction_cli.py",
             "    if output_dir.resolve() == source:",
             "    if False:",
             (T + "test_correction.py::test_cli_steps_without_network_write_a_new_folder_and_keep_the_old",)),
    Mutation("kept-vertebrae-ahead-in-memory", "a re-run holds a kept vertebra out of the memory until the traversal "
             "reaches it (the network never saw one ahead of its patch)",
             "SpineSegmentationLib/correction.py",
             "    trav = run_traversal(scan, reporter, kept_ids=kept.canonical)",
             "    trav = run_traversal(scan, reporter, memory=kept.canonical > 0, kept_ids=kept.canonical)",
             (T + "test_correction.py::test_real_rerun_finds_the_vertebrae_redone_below_kept_ones_on_a_ct_the_model_"
              "never_saw",)),
    Mutation("click-canal-refused", "a click no fragment voxel is near takes the fragment that surrounds it in its "
             "axial slice (a click in the spinal canal)",
             "SpineSegmentationLib/correction.py", "            if enclosure and _encloses(found, point_zyx):\n",
             "            if False:\n",
             (T + "test_correction.py::test_a_click_in_the_spinal_canal_segments_the_vertebra_around_it",)),
    Mutation("click-nothing-below", "with no vertebra kept below a clicked point, the vertebrae below it enter the "
             "memory first (the network's training situation, seed 002 section 3.2)",
             "SpineSegmentationLib/correction.py",
             "    evaluations_behind, left_z, below_point = _traverse_to_point(scan, engine, point_net,\n"
             "                                                                 scan.network_frame(kept.canonical), "
             "reporter, backward)\n",
             "    evaluations_behind, left_z, below_point = 0, [], None\n",
             (T + "test_correction.py::test_a_click_with_no_vertebra_kept_below_it_segments_the_clicked_one",)),
    Mutation("click-unsearched-ahead", "a click that does not continue up warns of room for vertebrae between it and a "
             "kept vertebra above (nothing searched there)",
             "SpineSegmentationLib/correction.py",
             "        unsegmented += _unsearched_ahead(scan, kept, clicked_mask)\n",
             "        pass\n",
             (T + "test_correction.py::test_real_click_continuing_down_below_a_kept_vertebra_says_how_many_could_be_"
              "between",)),
    Mutation("click-down-reuses-below", "a click continued down with nothing kept below takes the vertebrae the "
             "traversal below the point segmented, not segmenting them twice",
             "SpineSegmentationLib/correction.py", "        if below_point is not None and not behind:\n",
             "        if False:\n",
             (T + "test_correction.py::test_real_click_with_nothing_kept_segments_the_vertebrae_below_it_once",)),
    Mutation("sacrum-below-unsearched", "no sacrum is measured below a lowest vertebra whose scan below was not "
             "searched (an unsegmented vertebra with its ribs is as wide)",
             "SpineSegmentationLib/correction.py",
             "    searched_below = \"down\" in directions or any(c[0] < clicked_z for c in kept.centroids.values())\n",
             "    searched_below = True\n",
             (T + "test_correction.py::test_a_click_with_no_vertebra_kept_below_it_segments_the_clicked_one",)),
)


def _copy_repository(target: Path) -> Path:
    """A copy of the working tree at ``target/repo`` with ``target/shared`` pointing at the real shared data (the
    tests find it next to the checkout)."""
    target.mkdir(parents=True)
    repo = target / "repo"
    ignore = shutil.ignore_patterns(".git", "__pycache__", "*.pyc", ".pytest_cache", ".venv", "build", "dist")
    shutil.copytree(REPO, repo, ignore=ignore)
    shared = REPO.parent / "shared"
    if shared.exists():
        os.symlink(shared, target / "shared")
    return repo


def _run_tests(repo: Path, tests: tuple[str, ...], timeout_s: float) -> tuple[int, float, str]:
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return -1, time.perf_counter() - start, "timed out"
    last = (proc.stdout.strip().splitlines() or [""])[-1]
    return proc.returncode, time.perf_counter() - start, last


def _probe(mutation: Mutation, folder: Path, timeout_s: float) -> tuple[Mutation, str, float, str]:
    """Apply ``mutation`` to a fresh copy in ``folder`` and run its tests: (mutation, verdict, seconds, last line)."""
    repo = _copy_repository(folder)
    path = repo / mutation.path
    path.write_text(path.read_text().replace(mutation.old, mutation.new))
    code, seconds, last = _run_tests(repo, mutation.tests, timeout_s)
    verdict = "caught" if code == 1 else ("missed" if code == 0 else f"error (exit {code})")
    print(f"{verdict:8s} {mutation.name} ({seconds:.0f} s): {last}", flush=True)
    return mutation, verdict, seconds, last


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutations")
    parser.add_argument("--list", action="store_true", help="list the mutations and their tests")
    parser.add_argument("--baseline", action="store_true", help="first run the selected tests without mutation")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per mutation (default 1800)")
    parser.add_argument("--jobs", type=int, default=1, help="mutations run at the same time (default 1)")
    args = parser.parse_args(argv)
    selected = list(MUTATIONS)
    if args.only:
        unknown = sorted(set(args.only) - {m.name for m in MUTATIONS})
        if unknown:
            print(f"unknown mutations {unknown}; --list shows them", file=sys.stderr)
            return 2
        selected = [m for m in MUTATIONS if m.name in args.only]
    if args.list:
        for m in selected:
            print(f"{m.name}: {m.rule}\n    {m.path}: {m.old!r} -> {m.new!r}\n    tests: {' '.join(m.tests)}")
        return 0

    for m in selected:  # every mutation text must still be found before anything runs
        if (REPO / m.path).read_text().count(m.old) != 1:
            print(f"{m.name}: expected the text once in {m.path}; the code changed, update the mutation",
                  file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="mutation-probe-") as tmp:
        if args.baseline:
            repo = _copy_repository(Path(tmp) / "baseline")
            tests = tuple(dict.fromkeys(t for m in selected for t in m.tests))
            code, seconds, last = _run_tests(repo, tests, args.timeout)
            print(f"baseline ({len(tests)} test selections): exit {code} in {seconds:.0f} s: {last}", flush=True)
            if code != 0:
                print("the tests fail without any mutation; fix them first", file=sys.stderr)
                return 1
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            results = list(pool.map(lambda m: _probe(m, Path(tmp) / m.name, args.timeout), selected))

    caught = [m.name for m, v, _, _ in results if v == "caught"]
    print(f"\n{len(caught)} of {len(results)} mutations caught")
    for m, verdict, _, _ in results:
        print(f"  {verdict:8s} {m.name}: {m.rule}")
    return 0 if len(caught) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
