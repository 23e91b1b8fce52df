"""The Slicer module's logic on real MRML classes (PyPI ``slicer-core``), without the Slicer application.

The output folder is made the way the pipeline makes it (``SpineSegmentationLib.outputs.write_outputs``) from
the real reference labels of the example CT (TotalSegmentator numbering converted to VerSe), so the nodes the
logic builds are checked against values computed independently from that file: segment voxels, centroids,
SNOMED CT codes (DICOM CID 7603), completeness (T11 is a sliver at the top edge of the image).

The process side runs real child processes: the real CLI with the shipped model (and its error path), and a small
Python child that prints progress lines, starts a grandchild and sleeps (Cancel kills the whole process group).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio

import slicer  # slicer-core from PyPI: the MRML classes without the application

from SpineSegmentationLib import anatomy
from SpineSegmentationLib.outputs import write_outputs
from SpineSegmentationLib.result import SpineSegmentationResult, Vertebra
from SpineSegmentationLib.terminology import TERMINOLOGY_CONTEXT_NAME, vertebra_terminology
from SpineSegmentationModuleLib.command import ProgressEvent, parse_progress_line, progress_bar_format, segment_command
from SpineSegmentationModuleLib.correction import CorrectionLogic, segment_rows
from SpineSegmentationModuleLib.logic import (
    SegmentationCancelledError,
    SegmentationProcessError,
    SegmentationRun,
    SpineSegmentationProcessLogic,
    export_volume,
)
from SpineSegmentationModuleLib.mrml_import import (
    INCOMPLETE_OPACITY_2D_FILL,
    TAG_PREFIX,
    segment_tag,
)
from SpineSegmentationModuleLib.output_folder import read_output_folder
from SpineSegmentationModuleLib.runner import ProcessRunner

from mrml_helpers import (
    ijk_to_ras,
    load_volume,
    register_segmentation_conversion_rules,
    segment_names,
    segment_voxels,
    verse_reference,
    volume_on_grid,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO_ROOT / "SpineSegmentation"
TERM_JSON = MODULE_DIR / "Resources" / "Terminology" / "SegmentationCategoryTypeModifier-SpineSegmentation.term.json"
T11 = 18
#: Levels of the example CT's reference, cranio-caudal.
EXPECTED_NAMES = ["T11", "T12", "L1", "L2", "L3", "L4", "L5", "S"]
#: SNOMED CT codes written independently of terminology.py: DICOM PS3.16 CID 7603 "Vertebra" (C1..L5) and
#: SCT 54735007 "Sacrum".
EXPECTED_SCT = {"T11": "12989004", "T12": "23215003", "L1": "66794005", "L2": "14293000", "L3": "36470004",
                "L4": "11994002", "L5": "49668003", "S": "54735007"}


# ---------------------------------------------------------------------------------------------------------
# fixtures: the real CT, its reference as a pipeline output folder, a scene with the CT as a volume node


@pytest.fixture(scope="module")
def verse_labels(real_ct_reference) -> sitk.Image:
    """The reference labels of the example CT in VerSe numbers, on the CT's grid."""
    return verse_reference(real_ct_reference)


def centroids_ras(labels: sitk.Image) -> dict[int, np.ndarray]:
    """Label -> centroid in RAS mm, computed with numpy + SimpleITK (LPS) from the label image."""
    array = sitk.GetArrayFromImage(labels)
    out = {}
    for label in [int(v) for v in np.unique(array) if v]:
        kji = np.argwhere(array == label).mean(axis=0)
        lps = np.array(labels.TransformContinuousIndexToPhysicalPoint([float(c) for c in kji[::-1]]))
        out[label] = lps * np.array([-1.0, -1.0, 1.0])
    return out


@pytest.fixture(scope="module")
def output_folder(tmp_path_factory, real_ct, real_ct_image, verse_labels) -> Path:
    """A pipeline output folder written by write_outputs from the reference labels (T11 incomplete)."""
    array = sitk.GetArrayFromImage(verse_labels)
    voxel_mm3 = float(np.prod(verse_labels.GetSpacing()))
    centroids = centroids_ras(verse_labels)
    vertebrae = []
    for label in sorted(centroids):
        complete = label != T11
        vertebrae.append(Vertebra(
            label=label, name=anatomy.vertebra_name(label), complete=complete,
            p_complete=0.97 if complete else 0.08, p_label=0.9, label_regressed=float(label),
            centroid_ras_mm=[float(c) for c in centroids[label]],
            volume_mm3=float((array == label).sum()) * voxel_mm3, iterations=3,
        ))
    result = SpineSegmentationResult(labels=verse_labels, vertebrae=vertebrae, message="reference labels")
    folder = tmp_path_factory.mktemp("spineseg") / "out"
    write_outputs(result, real_ct_image, folder, input_path=real_ct)
    return folder


@pytest.fixture()
def scene():
    return slicer.vtkMRMLScene()


@pytest.fixture()
def ct_node(scene, real_ct):
    return load_volume(scene, real_ct)


@pytest.fixture()
def logic(scene):
    return SpineSegmentationProcessLogic(scene=scene, libraryDir=REPO_ROOT)


@pytest.fixture()
def loaded(logic, output_folder, ct_node):
    return logic.loadResults(output_folder, ct_node)


# ---------------------------------------------------------------------------------------------------------
# loadResults: segments, terminology, completeness, centroids, table


def test_one_segment_per_vertebra_named_and_coloured(loaded, ct_node):
    node = loaded.segmentation_node
    assert segment_names(node) == EXPECTED_NAMES
    segmentation = node.GetSegmentation()
    for name in EXPECTED_NAMES:
        segment = segmentation.GetSegment(name)
        label = anatomy.verse_label(name)
        assert segment.GetLabelValue() == label
        assert segment.GetColor() == pytest.approx(vertebra_terminology(label).color_rgb, abs=1e-6)
    # geometry reference = the input volume
    reference = node.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
    assert reference == slicer.vtkSegmentationConverter.SerializeImageGeometry(
        slicer.vtkSlicerSegmentationsModuleLogic.CreateOrientedImageDataFromVolumeNode(ct_node))


def test_segments_are_named_by_us_and_share_one_labelmap_that_nothing_else_holds(loaded):
    """The names and colours are not "auto-generated" (Slicer would replace them from the terminology when a person
    edits it, vtkSegment.h), and the shared label map layer is held by the segments alone: the image that
    CreateOrientedImageDataFromVolumeNode returns is the caller's to release (vtkSlicerSegmentationsModuleLogic.h)."""
    segmentation = loaded.segmentation_node.GetSegmentation()
    segments = [segmentation.GetNthSegment(i) for i in range(segmentation.GetNumberOfSegments())]
    assert [(s.GetNameAutoGenerated(), s.GetColorAutoGenerated()) for s in segments] == [(False, False)] * len(segments)
    layer = segments[0].GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    assert all(s.GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()) is layer
               for s in segments)
    del segments
    segmentation.RemoveAllSegments()
    assert layer.GetReferenceCount() == 1  # this test's reference alone: nothing leaked


def test_segments_hold_exactly_the_reference_voxels(loaded, ct_node, verse_labels):
    reference = sitk.GetArrayFromImage(verse_labels)  # [k, j, i]
    volume_ras = ijk_to_ras(ct_node)
    for name in EXPECTED_NAMES:
        segment = loaded.segmentation_node.GetSegmentation().GetSegment(name)
        ijk, layer_ras = segment_voxels(segment)
        np.testing.assert_allclose(layer_ras, volume_ras, atol=1e-4)
        expected = np.argwhere(reference == anatomy.verse_label(name))[:, ::-1]
        assert {tuple(v) for v in ijk} == {tuple(v) for v in expected}, name


def test_terminology_tags_carry_the_snomed_codes(loaded):
    terminologies = slicer.vtkSlicerTerminologiesModuleLogic()
    assert terminologies.LoadTerminologyFromFile(str(TERM_JSON)) == TERMINOLOGY_CONTEXT_NAME
    tag = slicer.vtkSegment.GetTerminologyEntryTagName()
    for name in EXPECTED_NAMES:
        segment = loaded.segmentation_node.GetSegmentation().GetSegment(name)
        entry = slicer.vtkSlicerTerminologyEntry()
        assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(segment_tag(segment, tag), entry)
        assert entry.GetTerminologyContextName() == TERMINOLOGY_CONTEXT_NAME
        category, type_ = entry.GetCategoryObject(), entry.GetTypeObject()
        assert (category.GetCodingSchemeDesignator(), category.GetCodeValue()) == ("SCT", "123037004")
        assert (type_.GetCodingSchemeDesignator(), type_.GetCodeValue()) == ("SCT", EXPECTED_SCT[name])
        # the shipped .term.json lists this type, so Slicer's terminology selector finds it
        assert terminologies.UpdateEntryFromLoadedTerminologies(entry, [TERMINOLOGY_CONTEXT_NAME], [])


def test_t11_is_incomplete_and_drawn_as_outline(loaded):
    assert loaded.incomplete == ["T11"]
    segmentation = loaded.segmentation_node.GetSegmentation()
    display = loaded.segmentation_node.GetDisplayNode()
    for name in EXPECTED_NAMES:
        segment = segmentation.GetSegment(name)
        assert segment_tag(segment, TAG_PREFIX + "Complete") == ("false" if name == "T11" else "true")
        assert segment_tag(segment, TAG_PREFIX + "Label") == str(anatomy.verse_label(name))
        assert float(segment_tag(segment, TAG_PREFIX + "PLabel")) == pytest.approx(0.9)
        fill = display.GetSegmentOpacity2DFill(name)
        assert (fill == INCOMPLETE_OPACITY_2D_FILL) == (name == "T11")
    markups = loaded.centroids_node
    descriptions = [markups.GetNthControlPointDescription(i) for i in range(markups.GetNumberOfControlPoints())]
    assert descriptions == ["incomplete"] + [""] * (len(EXPECTED_NAMES) - 1)


def test_centroid_markups_within_one_voxel_of_the_segment_centroids(loaded, ct_node):
    markups = loaded.centroids_node
    assert markups.GetNumberOfControlPoints() == len(EXPECTED_NAMES)
    voxel = max(ct_node.GetSpacing())
    for i, name in enumerate(EXPECTED_NAMES):
        assert markups.GetNthControlPointLabel(i) == name
        point = np.zeros(3)
        markups.GetNthControlPointPositionWorld(i, point)
        ijk, to_ras = segment_voxels(loaded.segmentation_node.GetSegmentation().GetSegment(name))
        centroid = (to_ras @ np.append(ijk.mean(axis=0), 1.0))[:3]
        assert np.linalg.norm(point - centroid) <= voxel, name


def test_results_table_rows(loaded, ct_node):
    table = loaded.table_node
    assert table.GetNumberOfRows() == len(EXPECTED_NAMES)
    column = {table.GetColumnName(c): c for c in range(table.GetNumberOfColumns())}
    assert list(column) == ["Level", "Label", "Complete", "Confidence", "P(complete)", "Volume"]
    voxel_cm3 = float(np.prod(ct_node.GetSpacing())) / 1000.0
    for row, name in enumerate(EXPECTED_NAMES):
        assert table.GetCellText(row, column["Level"]) == name
        assert table.GetCellText(row, column["Complete"]) == ("no" if name == "T11" else "yes")
        ijk, _ = segment_voxels(loaded.segmentation_node.GetSegmentation().GetSegment(name))
        assert float(table.GetCellText(row, column["Volume"])) == pytest.approx(len(ijk) * voxel_cm3, abs=0.01)
    assert table.GetColumnUnitLabel("Volume") == "cm3"


# ---------------------------------------------------------------------------------------------------------
# .seg.nrrd written by Slicer's storage node and read back (Slicer and slicerio)


def test_seg_nrrd_round_trip_keeps_voxels_codes_and_geometry(loaded, scene, ct_node, verse_labels, tmp_path):
    path = tmp_path / "vertebrae.seg.nrrd"
    writer = slicer.vtkMRMLSegmentationStorageNode()
    writer.SetFileName(str(path))
    assert writer.WriteData(loaded.segmentation_node) == 1

    back = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "read back")
    reader = slicer.vtkMRMLSegmentationStorageNode()
    reader.SetFileName(str(path))
    assert reader.ReadData(back) == 1
    assert segment_names(back) == EXPECTED_NAMES
    volume_ras = ijk_to_ras(ct_node)
    reference = sitk.GetArrayFromImage(verse_labels)
    tag = slicer.vtkSegment.GetTerminologyEntryTagName()
    for name in EXPECTED_NAMES:
        original, reread = (n.GetSegmentation().GetSegment(name) for n in (loaded.segmentation_node, back))
        assert segment_tag(reread, tag) == segment_tag(original, tag)
        assert segment_tag(reread, TAG_PREFIX + "Complete") == segment_tag(original, TAG_PREFIX + "Complete")
        ijk, to_ras = segment_voxels(reread)
        np.testing.assert_allclose(to_ras, volume_ras, atol=1e-4)  # same RAS geometry as the input volume
        expected = np.argwhere(reference == anatomy.verse_label(name))[:, ::-1]
        assert {tuple(v) for v in ijk} == {tuple(v) for v in expected}, name

    # slicerio reads the same file: voxels in LPS index order, geometry = the CT's (LPS)
    seg = slicerio.read_segmentation(str(path))
    assert [s["name"] for s in seg["segments"]] == EXPECTED_NAMES
    offset = np.array(seg.get("referenceImageExtentOffset", [0, 0, 0]), dtype=int)
    ijk_to_lps = np.asarray(seg["ijkToLPS"], dtype=float)
    ct = verse_labels
    expected_lps = np.eye(4)
    expected_lps[:3, :3] = np.array(ct.GetDirection()).reshape(3, 3) * np.array(ct.GetSpacing())
    expected_lps[:3, 3] = ct.GetOrigin()
    origin_index = np.append(offset, 1.0)
    np.testing.assert_allclose(ijk_to_lps @ origin_index, expected_lps @ origin_index, atol=1e-3)
    np.testing.assert_allclose(ijk_to_lps[:3, :3], expected_lps[:3, :3], atol=1e-4)
    voxels = np.asarray(seg["voxels"])  # [i, j, k] from the offset
    for s in seg["segments"]:
        mask = voxels == s["labelValue"]
        ijk = np.argwhere(mask) + offset
        expected = np.argwhere(reference == anatomy.verse_label(s["name"]))[:, ::-1]
        assert {tuple(v) for v in ijk} == {tuple(v) for v in expected}, s["name"]
        assert s["terminology"]["type"][:2] == ["SCT", EXPECTED_SCT[s["name"]]]


def test_the_command_line_s_seg_nrrd_carries_the_digest_the_module_checks(loaded, output_folder, scene):
    """segmentation.seg.nrrd of the command line, read by Slicer's storage node (as Slicer opens it), carries for
    every vertebra the voxel digest the module computes for the same voxels (``SpineSegmentation.Voxels``): the
    module's check (``tag_unseen_edits``) accepts the file untouched and tags exactly the vertebra whose voxels were
    changed before the module watched the segmentation, so that a Re-run keeps that edit."""
    from vtk.util.numpy_support import vtk_to_numpy

    from SpineSegmentationModuleLib.correction import EDITED_TAG, tag_unseen_edits
    from SpineSegmentationModuleLib.mrml_import import VOXELS_TAG

    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "opened from the command line's output")
    reader = slicer.vtkMRMLSegmentationStorageNode()
    reader.SetFileName(str(output_folder / "segmentation.seg.nrrd"))
    assert reader.ReadData(node) == 1
    segmentation = node.GetSegmentation()
    assert segment_names(node) == EXPECTED_NAMES
    module_given = loaded.segmentation_node.GetSegmentation()  # the module's import of labels.nii.gz
    for name in EXPECTED_NAMES:
        written = segment_tag(segmentation.GetSegment(name), VOXELS_TAG)
        assert written is not None and written == segment_tag(module_given.GetSegment(name), VOXELS_TAG), name
    assert tag_unseen_edits(node) == []
    assert {segment_tag(segmentation.GetSegment(n), EDITED_TAG) for n in EXPECTED_NAMES} == {"false"}

    # one voxel of L2 erased in the shared layer, as a paint stroke in the Segment Editor would
    l2 = segmentation.GetSegment("L2")
    layer = l2.GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    dims = layer.GetDimensions()
    voxels = vtk_to_numpy(layer.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0])
    voxels[tuple(np.argwhere(voxels == l2.GetLabelValue())[0])] = 0
    layer.Modified()
    assert tag_unseen_edits(node) == ["L2"]
    assert segment_tag(l2, EDITED_TAG) == "true"
    assert [n for n in EXPECTED_NAMES if segment_tag(segmentation.GetSegment(n), EDITED_TAG) == "true"] == ["L2"]


def test_results_on_a_ct_under_a_transform_keep_its_grid_in_the_segmentation_and_the_saved_file(
        logic, output_folder, ct_node, scene, verse_labels, tmp_path):
    """A CT under a linear transform (a registration): the segmentation goes under the same transform, and its
    reference geometry, the grid the Segment Editor paints on and a saved .seg.nrrd is written on, is the CT's own.
    Before 2026-12-06 the geometry was set before the transform and so carried it twice: a saved file was resampled
    (15 degrees: voxel counts changed; 50 mm: every vertebra moved by 1 mm)."""
    import vtk

    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
    motion = vtk.vtkTransform()
    motion.Translate(50.0, 0.0, -30.0)
    motion.RotateZ(15.0)
    transform.SetMatrixTransformToParent(motion.GetMatrix())
    ct_node.SetAndObserveTransformNodeID(transform.GetID())
    node = logic.loadResults(output_folder, ct_node).segmentation_node
    assert node.GetTransformNodeID() == transform.GetID()
    geometry = slicer.vtkOrientedImageData()
    slicer.vtkSegmentationConverter.DeserializeImageGeometry(node.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()), geometry, False)
    to_world = vtk.vtkMatrix4x4()
    geometry.GetImageToWorldMatrix(to_world)
    np.testing.assert_allclose([[to_world.GetElement(r, c) for c in range(4)] for r in range(4)], ijk_to_ras(ct_node),
                               atol=1e-4)
    path = tmp_path / "vertebrae.seg.nrrd"
    writer = slicer.vtkMRMLSegmentationStorageNode()
    writer.SetFileName(str(path))
    assert writer.WriteData(node) == 1
    back = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "read back")
    reader = slicer.vtkMRMLSegmentationStorageNode()
    reader.SetFileName(str(path))
    assert reader.ReadData(back) == 1
    reference = sitk.GetArrayFromImage(verse_labels)
    for name in EXPECTED_NAMES:
        ijk, to_ras = segment_voxels(back.GetSegmentation().GetSegment(name))
        np.testing.assert_allclose(to_ras, ijk_to_ras(ct_node), atol=1e-4)
        expected = np.argwhere(reference == anatomy.verse_label(name))[:, ::-1]
        assert {tuple(v) for v in ijk} == {tuple(v) for v in expected}, name


# ---------------------------------------------------------------------------------------------------------
def test_a_ct_far_from_the_scanner_origin_gets_segments_on_exactly_its_grid(logic, ct_node, verse_labels, real_ct_image,
                                                                           tmp_path):
    """``labels.nii.gz`` keeps the CT's origin in float32 (NIfTI), so beyond 2048 mm from the scanner's origin (a table
    position of a long scan) the segments' labelmap layer, made from that file, lay up to 1.2e-4 mm off the CT's grid:
    more than the 1e-4 mm within which Slicer takes two grids for one (vtkOrientedImageDataResample::IsEqual,
    v5.6.2-v5.10.0), so the Segment Editor resampled the shared layer as if it were on another grid (audit
    2026-12-07, h6). The layer now has the CT's own geometry, which the grid check found equal."""
    from SpineSegmentationModuleLib.logic import export_volume

    ct_node.SetOrigin(-180.3, 211.7, -2500.00012)  # float32 keeps -2500.0 or -2500.000244
    written = sitk.ReadImage(str(export_volume(ct_node, tmp_path / "input.nrrd")))  # the CT as the CLI reads it
    labels = sitk.Image(verse_labels)
    labels.CopyInformation(written)
    array, centroids = sitk.GetArrayFromImage(labels), centroids_ras(labels)
    vertebrae = [Vertebra(label=label, name=anatomy.vertebra_name(label), complete=True, p_complete=0.9, p_label=0.9,
                          label_regressed=float(label), centroid_ras_mm=[float(c) for c in centroids[label]],
                          volume_mm3=float((array == label).sum()) * 27.0, iterations=1) for label in sorted(centroids)]
    folder = tmp_path / "out"
    write_outputs(SpineSegmentationResult(labels=labels, vertebrae=vertebrae, message="far"), written, folder,
                  input_path=tmp_path / "input.nrrd")
    node = logic.loadResults(folder, ct_node).segmentation_node
    reference = slicer.vtkOrientedImageData()
    slicer.vtkSegmentationConverter.DeserializeImageGeometry(node.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()), reference, False)
    for name in EXPECTED_NAMES:
        layer = node.GetSegmentation().GetSegment(name).GetRepresentation("Binary labelmap")
        np.testing.assert_allclose(ijk_to_ras(layer), ijk_to_ras(ct_node), rtol=0, atol=1e-9)
        assert slicer.vtkOrientedImageDataResample.DoGeometriesMatch(layer, reference), name


# never overwrite a user's segmentation; damaged folders leave the scene unchanged


def test_non_empty_segmentation_is_not_overwritten_unless_asked(logic, output_folder, ct_node, scene):
    user = logic.loadResults(output_folder, ct_node).segmentation_node  # a segmentation the user then edits:
    user.SetName("my edits")
    user.GetSegmentation().RemoveSegment("L3")
    results = logic.loadResults(output_folder, ct_node, outputSegmentation=user)
    assert results.segmentation_node is not user
    assert segment_names(user) == [n for n in EXPECTED_NAMES if n != "L3"]
    assert segment_names(results.segmentation_node) == EXPECTED_NAMES
    assert results.warnings and "my edits" in results.warnings[0]

    replaced = logic.loadResults(output_folder, ct_node, outputSegmentation=user, overwrite=True)
    assert replaced.segmentation_node is user
    assert segment_names(user) == EXPECTED_NAMES
    assert replaced.warnings == []


def test_a_segment_a_script_named_is_kept_by_overwrite(logic, output_folder, ct_node, scene):
    """A segment added by a script keeps Slicer's "name auto-generated" flag (vtkSegment.cxx; only the segments table
    clears it), so "Spinal canal" made by ``AddEmptySegment("", "Spinal canal")`` counted as a hand-drawn vertebra
    and ``overwrite=True`` deleted it (audit 2026-12-07)."""
    from mrml_helpers import paint, register_segmentation_conversion_rules

    register_segmentation_conversion_rules()  # as Slicer's Segmentations module at startup: empty segments need them
    user = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "mine")
    user.SetReferenceImageGeometryParameterFromVolumeNode(ct_node)
    user.GetSegmentation().AddEmptySegment("", "Spinal canal")
    paint(user, ct_node, "Spinal canal", np.s_[50:52, 50:52, 60:62])
    results = logic.loadResults(output_folder, ct_node, outputSegmentation=user, overwrite=True)
    assert results.segmentation_node is user
    assert segment_names(user) == ["Spinal canal"] + EXPECTED_NAMES
    canal = user.GetSegmentation().GetSegment(user.GetSegmentation().GetSegmentIdBySegmentName("Spinal canal"))
    assert len(segment_voxels(canal)[0]) == 8


def _nodes_named(scene, class_name: str, name: str) -> list:
    nodes = (scene.GetNthNodeByClass(i, class_name) for i in range(scene.GetNumberOfNodesByClass(class_name)))
    return [node for node in nodes if node.GetName() == name]


def test_loading_twice_into_one_segmentation_keeps_one_centroid_and_one_table_node(logic, output_folder, ct_node,
                                                                                    scene):
    """Each load with ``overwrite=True`` into one segmentation added a new centroid markups and table node of the
    same names and left the earlier ones in the scene, outdated (audit 2026-12-07). Now they are replaced: one of
    each, the newest; a markups node the user named the same and another segmentation's nodes stay."""
    centroids, table = f"{ct_node.GetName()} vertebra centroids", f"{ct_node.GetName()} vertebrae table"
    other = logic.loadResults(output_folder, ct_node)  # another segmentation of the same CT, with its own nodes
    users = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", centroids)  # the user's own, by chance the name
    users.AddControlPoint([1.0, 2.0, 3.0], "mine")
    target = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "target")
    first = logic.loadResults(output_folder, ct_node, target, overwrite=True)
    first.table_node.AddDefaultStorageNode()  # as when the scene is saved
    owned = [first.centroids_node.GetDisplayNode(), first.table_node.GetStorageNode()]
    assert all(node is not None and node.GetScene() is scene for node in owned)
    second = logic.loadResults(output_folder, ct_node, target, overwrite=True)
    assert second.segmentation_node is target and segment_names(target) == EXPECTED_NAMES
    assert first.centroids_node.GetScene() is None and first.table_node.GetScene() is None
    assert all(node.GetScene() is None for node in owned)  # RemoveNode alone left them behind (review 2026-12-07)
    assert scene.GetNumberOfNodesByClass("vtkMRMLMarkupsDisplayNode") == 2  # other's, second's (the user's: none)
    markups = _nodes_named(scene, "vtkMRMLMarkupsFiducialNode", centroids)
    assert {node.GetID() for node in markups} == {other.centroids_node.GetID(), users.GetID(),
                                                 second.centroids_node.GetID()}
    assert ({node.GetID() for node in _nodes_named(scene, "vtkMRMLTableNode", table)}
            == {other.table_node.GetID(), second.table_node.GetID()})
    assert second.centroids_node.GetNumberOfControlPoints() == len(EXPECTED_NAMES)
    assert second.table_node.GetNumberOfRows() == len(EXPECTED_NAMES)
    assert users.GetNumberOfControlPoints() == 1 and users.GetNthControlPointLabel(0) == "mine"
    assert other.segmentation_node.GetNodeReference("SpineSegmentationCentroids") is other.centroids_node
    assert other.segmentation_node.GetNodeReference("SpineSegmentationTable") is other.table_node
    assert target.GetNodeReference("SpineSegmentationCentroids") is second.centroids_node


def test_result_nodes_another_segmentation_still_references_are_kept_by_overwrite(logic, output_folder, ct_node,
                                                                                   scene):
    """A segmentation copied with its node references (``vtkMRMLNode::Copy`` copies them) shares the centroid and
    table nodes of the first: loading into the first replaces them for it, but the copy still shows them."""
    first = logic.loadResults(output_folder, ct_node)
    copy = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "copy")
    for role in ("SpineSegmentationCentroids", "SpineSegmentationTable"):
        copy.SetNodeReferenceID(role, first.segmentation_node.GetNodeReference(role).GetID())
    second = logic.loadResults(output_folder, ct_node, first.segmentation_node, overwrite=True)
    assert second.centroids_node is not first.centroids_node
    assert first.centroids_node.GetScene() is scene and first.table_node.GetScene() is scene
    assert copy.GetNodeReference("SpineSegmentationCentroids") is first.centroids_node


def test_a_correction_applied_replaces_the_centroid_and_table_nodes_through_the_same_import(corrections, loaded,
                                                                                            output_folder, ct_node,
                                                                                            scene):
    """``CorrectionLogic.applyRun`` leaves the replacing of the earlier centroid and table nodes to the import (one
    place, ``mrml_import.remove_outdated_result_nodes``): after it, one of each, the newest."""
    correction, node = corrections
    results = correction.applyRun(output_folder, ct_node, node)
    assert loaded.centroids_node.GetScene() is None and loaded.table_node.GetScene() is None
    assert scene.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode") == 1
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 1
    assert node.GetNodeReference("SpineSegmentationCentroids") is results.centroids_node
    assert node.GetNodeReference("SpineSegmentationTable") is results.table_node


def test_overwrite_under_another_transform_is_refused_before_the_kept_segments_move(logic, output_folder, ct_node,
                                                                                   scene, tmp_path):
    """The results go under the CT's parent transform; with ``overwrite=True`` that moved the segments kept in a
    segmentation under another transform by that transform's difference (40 mm here), silently (audit 2026-12-07).
    Refused, before the run starts (``process``) and before the scene changes (``loadResults``); same transform:
    applied, the kept segment stays where it was."""
    import vtk

    from mrml_helpers import paint, register_segmentation_conversion_rules

    register_segmentation_conversion_rules()  # as Slicer's Segmentations module at startup: empty segments need them
    user = logic.loadResults(output_folder, ct_node).segmentation_node
    user.SetName("mine")
    user.GetSegmentation().AddEmptySegment("", "Spinal canal")
    paint(user, ct_node, "Spinal canal", np.s_[50:52, 50:52, 60:62])
    shift = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 40.0)
    shift.SetMatrixTransformToParent(matrix)
    user.SetAndObserveTransformNodeID(shift.GetID())
    names, nodes = segment_names(user), scene.GetNumberOfNodes()
    message = (r"the segmentation 'mine' is under transform 'shift' but the CT '.*' under no transform; .*would move "
               r"the segments kept there \(Spinal canal\)")
    with pytest.raises(ValueError, match=message):
        logic.loadResults(output_folder, ct_node, outputSegmentation=user, overwrite=True)
    assert segment_names(user) == names and scene.GetNumberOfNodes() == nodes
    assert user.GetParentTransformNode() is shift
    never = SpineSegmentationProcessLogic(scene=scene, python=str(tmp_path / "no-python"), libraryDir=REPO_ROOT)
    with pytest.raises(ValueError, match=message):  # a start would raise OSError (no interpreter there)
        never.process(ct_node, outputSegmentation=user, overwrite=True)
    ct_node.SetAndObserveTransformNodeID(shift.GetID())  # both under one transform: applied, nothing moves
    canal = user.GetSegmentation().GetSegment(user.GetSegmentation().GetSegmentIdBySegmentName("Spinal canal"))
    before = ijk_to_ras(canal.GetRepresentation("Binary labelmap"))
    assert logic.loadResults(output_folder, ct_node, outputSegmentation=user, overwrite=True).segmentation_node is user
    assert user.GetParentTransformNode() is shift and sorted(segment_names(user)) == sorted(names)
    np.testing.assert_allclose(ijk_to_ras(canal.GetRepresentation("Binary labelmap")), before)


def _reference_grid(node) -> np.ndarray:
    geometry = slicer.vtkOrientedImageData()
    slicer.vtkSegmentationConverter.DeserializeImageGeometry(node.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()), geometry, False)
    return ijk_to_ras(geometry)


def test_overwrite_of_segments_made_on_another_grid_is_refused_and_on_the_ct_s_lattice_applied(
        logic, output_folder, ct_node, scene, tmp_path):
    """A segmentation made on a resampled CT (1.5 mm voxels, the CT's 3 mm) keeps a "Spinal canal" drawn on that
    grid. ``overwrite=True`` set its reference geometry to the CT's, silently (audit 2026-12-07): the Segment Editor
    then edits every segment on the CT's grid (vtkSegmentationModifier::ModifyBinaryLabelmap, v5.6.2-v5.10.0), so the
    canal would be resampled to 3 mm on its next edit (Slicer saves on the CT's grid oversampled to the finest segment,
    vtkSegmentation::DetermineCommonLabelmapGeometry, which keeps this aligned canal). Refused before the run and
    before the scene changes, naming the grids and the fixes. A geometry on the CT's voxel lattice (the CT cropped:
    another origin, whole voxels away) is applied; so is a resampled geometry with only vertebrae, which overwrite
    replaces: the CT's grid then."""
    from mrml_helpers import paint, register_segmentation_conversion_rules

    register_segmentation_conversion_rules()  # as Slicer's Segmentations module at startup: empty segments need them
    ct = ijk_to_ras(ct_node)
    fine = ct.copy()
    fine[:3, :3] /= 2.0
    fine[:3, 3] -= 0.25 * ct[:3, :3].sum(axis=1)  # voxel centres of a 1.5 mm resampling of the same extent
    dims = [2 * d for d in ct_node.GetImageData().GetDimensions()]
    resampled = volume_on_grid(scene, "CT resampled", fine, dims)
    user = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "mine")
    user.SetReferenceImageGeometryParameterFromVolumeNode(resampled)
    user.GetSegmentation().AddEmptySegment("", "Spinal canal")
    paint(user, resampled, "Spinal canal", np.s_[100:103, 100:102, 120:122])
    before, nodes = user.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()), scene.GetNumberOfNodes()
    message = (r"the segmentation 'mine' keeps segments \(Spinal canal\) on another grid \(made on 'CT resampled'\) "
               r"than the CT '.*': voxels of 1\.5 x 1\.5 x 1\.5 mm, the CT's 3 x 3 x 3 mm\..*or none: a new one.*"
               r"Specify geometry")
    with pytest.raises(ValueError, match=message):
        logic.loadResults(output_folder, ct_node, outputSegmentation=user, overwrite=True)
    assert segment_names(user) == ["Spinal canal"] and scene.GetNumberOfNodes() == nodes
    assert user.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()) == before
    never = SpineSegmentationProcessLogic(scene=scene, python=str(tmp_path / "no-python"), libraryDir=REPO_ROOT)
    with pytest.raises(ValueError, match=message):  # a start would raise OSError (no interpreter there)
        never.process(ct_node, outputSegmentation=user, overwrite=True)
    assert logic.loadResults(output_folder, ct_node, user).segmentation_node is not user  # without overwrite: a new one

    cropped = ct.copy()
    cropped[:3, 3] += ct[:3, :3] @ np.array([5.0, 7.0, 3.0])  # the CT cropped: the same voxels, 5, 7, 3 voxels in
    crop = volume_on_grid(scene, "CT cropped", cropped, [60, 50, 50])
    user.SetReferenceImageGeometryParameterFromVolumeNode(crop)
    assert logic.loadResults(output_folder, ct_node, outputSegmentation=user, overwrite=True).segmentation_node is user
    assert segment_names(user) == ["Spinal canal"] + EXPECTED_NAMES
    np.testing.assert_allclose(_reference_grid(user), ct, atol=1e-6)

    vertebrae_only = logic.loadResults(output_folder, ct_node).segmentation_node
    vertebrae_only.SetReferenceImageGeometryParameterFromVolumeNode(resampled)
    assert logic.loadResults(output_folder, ct_node, vertebrae_only, overwrite=True).segmentation_node is vertebrae_only
    np.testing.assert_allclose(_reference_grid(vertebrae_only), ct, atol=1e-6)


def _fine_grid(ct: np.ndarray) -> np.ndarray:
    """The IJK-to-RAS matrix of a resampling of the CT's extent at half its spacing (voxel centres of the same box)."""
    fine = ct.copy()
    fine[:3, :3] /= 2.0
    fine[:3, 3] -= 0.25 * ct[:3, :3].sum(axis=1)
    return fine


def _converted_labelmap(scene, name: str, ijk_to_ras_matrix: np.ndarray, segment: str):
    """A segmentation made from a label map as the Data module's "Convert labelmap to segmentation" does
    (``ImportLabelmapToSegmentationNode``; no reference image geometry): one segment ``segment`` of two voxels."""
    label = volume_on_grid(scene, f"{segment} label map", ijk_to_ras_matrix, (40, 40, 40), "vtkMRMLLabelMapVolumeNode")
    label.GetImageData().SetScalarComponentFromDouble(20, 20, 20, 0, 1)
    label.GetImageData().SetScalarComponentFromDouble(21, 20, 20, 0, 1)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(label, node)
    node.GetSegmentation().GetNthSegment(0).SetName(segment)
    assert node.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()) == ""
    return node


def test_overwrite_of_a_labelmap_converted_on_another_grid_is_refused_and_on_the_ct_s_applied(logic, output_folder,
                                                                                             ct_node, scene):
    """A label map converted to a segmentation (Data module, ``ImportLabelmapToSegmentationNode``) has no reference
    image geometry: the grid check compared nothing and ``overwrite=True`` was applied (review 2026-12-07), though
    the Segment Editor edits such a segmentation on its finest segment's grid (a 1.5 mm "Tumour" here), and once the
    import set the CT's grid it would resample the tumour to 3 mm on its next edit. Refused, naming the grid; one
    converted from the CT's grid is applied, the tumour's voxels unchanged."""
    register_segmentation_conversion_rules()
    ct = ijk_to_ras(ct_node)
    tumour = _converted_labelmap(scene, "converted", _fine_grid(ct), "Tumour")
    with pytest.raises(ValueError, match=r"'converted' keeps segments \(Tumour\) on another grid \(its finest "
                                         r"segment's: it has no reference geometry\) than the CT '.*': voxels of 1\.5 "
                                         r"x 1\.5 x 1\.5 mm, the CT's 3 x 3 x 3 mm\."):
        logic.loadResults(output_folder, ct_node, outputSegmentation=tumour, overwrite=True)
    assert segment_names(tumour) == ["Tumour"]

    on_ct = _converted_labelmap(scene, "on the CT", ct, "Tumour")
    before = segment_voxels(on_ct.GetSegmentation().GetNthSegment(0))
    results = logic.loadResults(output_folder, ct_node, outputSegmentation=on_ct, overwrite=True)
    assert results.segmentation_node is on_ct
    assert segment_names(on_ct) == ["Tumour"] + EXPECTED_NAMES
    for got, expected in zip(segment_voxels(on_ct.GetSegmentation().GetNthSegment(0)), before):
        np.testing.assert_allclose(got, expected, atol=1e-6)


def _world_voxels(segment) -> set:
    """The RAS positions (mm, rounded to 1 um) of a segment's voxels."""
    ijk, to_ras = segment_voxels(segment)
    return {tuple(p) for p in np.round((ijk @ to_ras[:3, :3].T + to_ras[:3, 3]) * 1000).astype(int)}


def test_overwrite_of_segments_on_the_ct_s_voxels_in_another_axis_order_is_applied(logic, output_folder, ct_node,
                                                                                   scene):
    """A segmentation made on the CT's voxels stored in another axis order, one axis flipped (a label file written
    so): the grid check compared the IJK-to-RAS matrices column by column and refused it, with "another grid (3 x 3
    x 3 mm voxels) than the CT (3 x 3 x 3 mm)" (review 2026-12-07), though Slicer resamples it onto the CT's grid
    exactly. Applied; the kept canal keeps its voxels. An origin 800.4 voxels away is off the lattice (the tolerance
    is a quarter voxel, not relative to the distance) and refused, saying what differs."""
    from mrml_helpers import paint

    register_segmentation_conversion_rules()
    ct = ijk_to_ras(ct_node)
    dims = ct_node.GetImageData().GetDimensions()
    turned = np.eye(4)
    turned[:3, 0], turned[:3, 1], turned[:3, 2] = -ct[:3, 1], ct[:3, 2], ct[:3, 0]
    turned[:3, 3] = ct[:3, 3] + ct[:3, 1] * (dims[1] - 1)
    lattice = volume_on_grid(scene, "CT turned", turned, (dims[1], dims[2], dims[0]))
    user = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "mine")
    user.SetReferenceImageGeometryParameterFromVolumeNode(lattice)
    user.GetSegmentation().AddEmptySegment("", "Spinal canal")
    paint(user, lattice, "Spinal canal", np.s_[50:53, 40:42, 60:62])
    canal = user.GetSegmentation().GetNthSegment(0)
    before = _world_voxels(canal)
    assert len(before) == 12
    assert logic.loadResults(output_folder, ct_node, outputSegmentation=user, overwrite=True).segmentation_node is user
    assert segment_names(user) == ["Spinal canal"] + EXPECTED_NAMES
    assert _world_voxels(canal) == before

    far = ct.copy()
    far[:3, 3] += ct[:3, 0] * 800.4
    off = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "off")
    off.SetReferenceImageGeometryParameterFromVolumeNode(volume_on_grid(scene, "far", far, (4, 4, 4)))
    off.GetSegmentation().AddEmptySegment("", "Spinal canal")
    shift = ", ".join(f"{v:.3g}" for v in np.round(ct[:3, 0] * 0.4, 6) + 0.0)  # R, A, S
    with pytest.raises(ValueError, match=rf"another grid \(made on 'far'\) than the CT '.*': the same voxel size, but "
                                         rf"its voxel centres shifted by part of a voxel \({shift} mm in R, A, S\)"):
        logic.loadResults(output_folder, ct_node, outputSegmentation=off, overwrite=True)


def test_overwrite_of_segments_on_a_grid_that_drifts_off_the_ct_s_across_its_extent_is_refused(logic, output_folder,
                                                                                              ct_node, scene):
    """A segmentation made on a CT padded to 600 voxels along I with a 0.09 % larger spacing there keeps a "Spinal
    canal": each axis element within 1e-3 of the CT's, so the grid rule (1e-3 voxel, whatever the extent) took it for
    the CT's grid and ``overwrite=True`` was applied (review 2026-12-07), though its far voxels lie 0.54 voxel off the
    CT's, and Slicer would resample the canal onto the CT's grid on its next edit. Refused, naming the spacings (with
    the digits that differ) and the drift; the same geometry 1e-9 off (float noise) is applied."""
    register_segmentation_conversion_rules()
    ct = ijk_to_ras(ct_node)
    dims = (600,) + ct_node.GetImageData().GetDimensions()[1:]
    for scale, refused in ((1.0009, True), (1.0 + 1e-9, False)):
        padded = ct.copy()
        padded[:3, 0] *= scale
        user = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "mine")
        user.SetReferenceImageGeometryParameterFromVolumeNode(volume_on_grid(scene, "padded", padded, dims))
        user.GetSegmentation().AddEmptySegment("", "Spinal canal")
        if refused:
            message = (r"'mine' keeps segments \(Spinal canal\) on another grid \(made on 'padded'\) than the CT "
                       r"'.*': voxels of 3\.003 x 3 x 3 mm, the CT's 3 x 3 x 3 mm: across its extent of 600 x 101 x "
                       r"112 voxels this adds up to 0\.54 voxel off the CT's voxel centres\.")
            with pytest.raises(ValueError, match=message):
                logic.loadResults(output_folder, ct_node, outputSegmentation=user, overwrite=True)
            assert segment_names(user) == ["Spinal canal"]
        else:
            assert logic.loadResults(output_folder, ct_node, user, overwrite=True).segmentation_node is user
            assert segment_names(user) == ["Spinal canal"] + EXPECTED_NAMES


def test_overwrite_of_a_segmentation_with_an_unreadable_reference_geometry_is_refused_clearly(logic, output_folder,
                                                                                             ct_node, scene):
    """A reference geometry of 22 separators with non-numbers reads "successfully" as a NaN matrix
    (``DeserializeImageGeometry`` returns True), and was refused as "another grid (nan x nan x nan mm voxels)"
    (review 2026-12-07); a singular one (zero spacing) likewise. Refused as unreadable; it is kept as it was."""
    from SpineSegmentationModuleLib.mrml_import import reference_geometry

    register_segmentation_conversion_rules()
    name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    for text in ("a;b;c;d;e;f;g;h;i;j;k;l;m;n;o;p;q;r;s;t;u;v;", "0;0;0;0;0;0;0;0;0;0;0;0;0;0;0;1;0;9;0;9;0;9;"):
        user = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "mine")
        user.GetSegmentation().AddEmptySegment("", "Spinal canal")
        user.GetSegmentation().SetConversionParameter(name, text)
        assert reference_geometry(user) is None
        with pytest.raises(ValueError, match=r"'mine' keeps segments \(Spinal canal\) but its reference geometry "
                                             r"cannot be read .*Specify geometry"):
            logic.loadResults(output_folder, ct_node, outputSegmentation=user, overwrite=True)
        assert segment_names(user) == ["Spinal canal"]
        assert user.GetSegmentation().GetConversionParameter(name) == text


def test_a_refusal_names_the_first_five_kept_segments_and_counts_the_others(logic, output_folder, ct_node, scene):
    """A segmentation from TotalSegmentator keeps about 100 segments; the refusal listed every name (review
    2026-12-07). It names five and counts the others."""
    import vtk

    register_segmentation_conversion_rules()
    user = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "organs")
    for n in range(1, 9):
        user.GetSegmentation().AddEmptySegment("", f"organ {n}")
    shift = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 5.0)  # 5 mm to the right: an identity transform would move nothing
    shift.SetMatrixTransformToParent(matrix)
    user.SetAndObserveTransformNodeID(shift.GetID())
    with pytest.raises(ValueError, match=r"would move the segments kept there \(organ 1, organ 2, organ 3, organ 4, "
                                         r"organ 5 and 3 more\)\. "):
        logic.loadResults(output_folder, ct_node, outputSegmentation=user, overwrite=True)


def test_an_empty_segmentation_under_a_transform_gets_the_vertebrae_on_the_ct_and_a_warning(logic, output_folder,
                                                                                           ct_node, scene):
    """An empty output segmentation under a transform the CT is not under: the results went into it on the CT (the
    node was put under the CT's transform first), but the transform the user had put it under was dropped without a
    word (audit 2026-12-07). Now a warning names it; the vertebrae lie on the CT's voxels in the world."""
    import vtk

    shift = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 40.0)
    shift.SetMatrixTransformToParent(matrix)
    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
    empty.SetAndObserveTransformNodeID(shift.GetID())
    results = logic.loadResults(output_folder, ct_node, empty)
    assert results.segmentation_node is empty and empty.GetParentTransformNode() is None
    assert len(results.warnings) == 1
    assert re.search(r"'empty' was under transform 'shift'; it is now under no transform, as the CT .* is",
                     results.warnings[0])
    for name in EXPECTED_NAMES:
        _, to_ras = segment_voxels(empty.GetSegmentation().GetSegment(name))
        np.testing.assert_allclose(to_ras, ijk_to_ras(ct_node), atol=1e-6)
    np.testing.assert_allclose(_reference_grid(empty), ijk_to_ras(ct_node), atol=1e-6)
    same = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "same")  # already under the CT's (no) transform
    assert logic.loadResults(output_folder, ct_node, same).warnings == []


def _help_text() -> str:
    """The module's help text as written in SpineSegmentation.py (the string inside ``_(...)``)."""
    import ast

    tree = ast.parse((MODULE_DIR / "SpineSegmentation.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(ast.unparse(t) == "self.parent.helpText" for t in node.targets):
            return " ".join(ast.literal_eval(node.value.args[0]).split())
    raise AssertionError("no self.parent.helpText in SpineSegmentation.py")


def test_the_help_text_says_what_the_segment_editor_s_undo_does_after_results_came_in(logic, output_folder,
                                                                                      ct_node, scene):
    """The Segment Editor's Undo is its own history of the segments (vtkSegmentationHistory, the same logic at
    v5.6.2-v5.10.0; Slicer's scene undo is off, vtkMRMLScene UndoFlag false), which the import is no step of: one
    Undo after the results came in went back past the last edit too, and the centroid and table nodes stayed, which
    the module did not tell (audit 2026-12-07; no Slicer-supported way to make the results an undo step with the
    point list and table). The help text now says so; this checks it against the real history class."""
    from mrml_helpers import paint, register_segmentation_conversion_rules

    register_segmentation_conversion_rules()
    user = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "mine")
    user.SetReferenceImageGeometryParameterFromVolumeNode(ct_node)
    user.GetSegmentation().AddEmptySegment("", "Spinal canal")
    history = slicer.vtkSegmentationHistory()  # what the Segment Editor keeps for the segmentation selected in it
    history.SetSegmentation(user.GetSegmentation())
    history.SaveState()  # the Segment Editor saves the state before each edit
    paint(user, ct_node, "Spinal canal", np.s_[50:52, 50:52, 60:62])
    results = logic.loadResults(output_folder, ct_node, user, overwrite=True)
    assert history.RestorePreviousState()  # Undo
    canal = user.GetSegmentation().GetSegment(user.GetSegmentation().GetSegmentIdBySegmentName("Spinal canal"))
    assert segment_names(user) == ["Spinal canal"] and len(segment_voxels(canal)[0]) == 0  # results and edit gone
    assert results.centroids_node.GetScene() is scene and results.table_node.GetScene() is scene  # as made
    assert results.centroids_node.GetNumberOfControlPoints() == len(EXPECTED_NAMES)
    assert history.RestoreNextState()  # Redo: both back
    assert segment_names(user) == ["Spinal canal"] + EXPECTED_NAMES and len(segment_voxels(canal)[0]) == 8
    text = _help_text()
    for claim in ("the Segment Editor's Undo covers only the segments of the segmentation selected in it",
                  "Slicer's scene undo is off", "removing the results together with that edit (Redo brings both back)",
                  "leaves the centroid point list and the results table as the module made them"):
        assert claim in text, claim


def test_nodes_of_the_wrong_class_are_refused_naming_the_class(logic, output_folder, ct_node, scene, tmp_path):
    """None, a labelmap or a segmentation as the CT, a volume as the output segmentation: an AttributeError, for the
    output segmentation only after the whole run (audit 2026-12-07). Now a ValueError naming the class and the fix,
    the scene unchanged, ``process`` refusing before it starts."""
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "segmentation")
    nodes = scene.GetNumberOfNodes()
    for volume, kind in ((None, "None"), (labelmap, "vtkMRMLLabelMapVolumeNode"),
                         (segmentation, "vtkMRMLSegmentationNode"), ("CT", "str 'CT'")):
        with pytest.raises(ValueError, match=rf"must be a scalar volume node .*\(got {kind}\); select the CT"):
            logic.loadResults(output_folder, volume)
    for output in (ct_node, labelmap):
        with pytest.raises(ValueError, match=rf"must be a segmentation node, not {output.GetClassName()}; pass"):
            logic.loadResults(output_folder, ct_node, output)
    never = SpineSegmentationProcessLogic(scene=scene, python=str(tmp_path / "no-python"), libraryDir=REPO_ROOT)
    with pytest.raises(ValueError, match=r"must be a segmentation node, not vtkMRMLScalarVolumeNode"):
        never.process(ct_node, outputSegmentation=ct_node)  # a start would raise OSError (no interpreter there)
    assert scene.GetNumberOfNodes() == nodes


def test_nodes_removed_while_the_run_went_on_are_not_written_into(logic, output_folder, ct_node, scene):
    """The output segmentation or the CT deleted while the process ran (audit 2026-12-06): the segments went into
    the deleted node ("Scene is invalid") while the table and points were added to the scene, or the results of a
    deleted CT were imported pointing at a node ID that no longer exists."""
    chosen = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "my output")
    scene.RemoveNode(chosen)
    results = logic.loadResults(output_folder, ct_node, chosen)
    assert results.segmentation_node is not chosen and results.segmentation_node.GetScene() is scene
    assert segment_names(results.segmentation_node) == EXPECTED_NAMES
    assert any("'my output' was removed from the scene" in w for w in results.warnings)
    with pytest.raises(ValueError, match="'my output' is no longer in the scene"):  # a correction's vertebrae
        logic.loadResults(output_folder, ct_node, chosen, overwrite=True)
    scene.RemoveNode(ct_node)
    nodes = scene.GetNumberOfNodes()
    with pytest.raises(ValueError, match="the CT .* is no longer in the scene"):
        logic.loadResults(output_folder, ct_node)
    assert scene.GetNumberOfNodes() == nodes  # nothing added


def test_label_map_and_report_disagreeing_is_refused(logic, output_folder, ct_node, scene, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(output_folder, damaged)
    report = json.loads((damaged / "vertebrae.json").read_text())
    report["vertebrae"] = [v for v in report["vertebrae"] if v["name"] != "L3"]
    (damaged / "vertebrae.json").write_text(json.dumps(report))
    nodes = scene.GetNumberOfNodes()
    with pytest.raises(ValueError, match=r"only in the label map \[22\]"):
        logic.loadResults(damaged, ct_node)
    assert scene.GetNumberOfNodes() == nodes


def test_a_truncated_report_is_named_with_the_fix_and_the_scene_is_unchanged(logic, output_folder, ct_node, scene,
                                                                            tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(output_folder, damaged)
    text = (damaged / "vertebrae.json").read_text()
    (damaged / "vertebrae.json").write_text(text[: len(text) // 2])  # an interrupted copy
    nodes = scene.GetNumberOfNodes()
    with pytest.raises(ValueError, match=r"vertebrae.json \(.*\): the file is damaged or truncated \(not valid JSON\); "
                                         "restore it from the run that wrote it, or run the segmentation again$"):
        logic.loadResults(damaged, ct_node)
    assert scene.GetNumberOfNodes() == nodes


def test_a_name_edited_without_its_label_is_refused(logic, output_folder, ct_node, scene, tmp_path):
    """vertebrae.json edited by hand, L3's name changed to "L4" and its label left at 22: two segments "L4" (IDs L4
    and L4_1), the first tagged label 22, without a word (audit 2026-12-07). Refused, naming entry and fix."""
    edited = tmp_path / "edited"
    shutil.copytree(output_folder, edited)
    report = json.loads((edited / "vertebrae.json").read_text())
    next(v for v in report["vertebrae"] if v["label"] == 22)["name"] = "L4"
    (edited / "vertebrae.json").write_text(json.dumps(report))
    nodes = scene.GetNumberOfNodes()
    with pytest.raises(ValueError, match=r"vertebrae\[4\]: 'name' 'L4' is not the level of 'label' 22 \(L3\); the file "
                                         "was edited by hand"):
        logic.loadResults(edited, ct_node)
    assert scene.GetNumberOfNodes() == nodes


def test_the_anatomy_seen_is_read_back_and_checked(output_folder, tmp_path):
    """rib_sides and sacrum_below travel from vertebrae.json into the vertebrae the module renumbers with (the
    labelling weighs them); a damaged value is refused, naming the field."""
    folder = tmp_path / "evidence"
    shutil.copytree(output_folder, folder)
    report = json.loads((folder / "vertebrae.json").read_text())
    report["vertebrae"][0]["rib_sides"] = 2
    report["vertebrae"][-1]["sacrum_below"] = True
    (folder / "vertebrae.json").write_text(json.dumps(report))
    vertebrae = read_output_folder(folder).vertebrae
    assert vertebrae[0].rib_sides == 2 and vertebrae[-1].sacrum_below is True
    assert vertebrae[1].rib_sides is None and vertebrae[0].sacrum_below is None  # absent: no evidence
    report["vertebrae"][0]["rib_sides"] = 3
    (folder / "vertebrae.json").write_text(json.dumps(report))
    with pytest.raises(ValueError, match=r"'rib_sides' must be 0, 1, 2 or null"):
        read_output_folder(folder)


@pytest.mark.parametrize("field", ["level_stated", "complete_stated"])
def test_a_stated_level_is_read_back_and_checked(output_folder, tmp_path, field):
    """level_stated and complete_stated travel from vertebrae.json into the segment's LevelStated and CompleteStated
    tags (absent in older files: not stated); a damaged value is refused, naming the field. (complete_stated was
    not read: a completeness flag a person set survived one Re-run in Slicer, not a second.)"""
    folder = tmp_path / "stated"
    shutil.copytree(output_folder, folder)
    report = json.loads((folder / "vertebrae.json").read_text())
    for entry in report["vertebrae"]:
        entry.pop(field, None)
    report["vertebrae"][1][field] = True
    (folder / "vertebrae.json").write_text(json.dumps(report))
    assert [getattr(v, field) for v in read_output_folder(folder).vertebrae][:3] == [False, True, False]
    report["vertebrae"][1][field] = "yes"
    (folder / "vertebrae.json").write_text(json.dumps(report))
    with pytest.raises(ValueError, match=rf"'{field}' must be true, false or null"):
        read_output_folder(folder)


def test_results_of_another_image_are_refused(logic, output_folder, scene, tptbox_ct):
    other = load_volume(scene, tptbox_ct)
    nodes = scene.GetNumberOfNodes()
    with pytest.raises(ValueError, match="load the results with the volume that was segmented"):
        logic.loadResults(output_folder, other)
    assert scene.GetNumberOfNodes() == nodes


# ---------------------------------------------------------------------------------------------------------
# what a script can pass the logic: each bad argument refused with the problem and the fix, nothing changed


@pytest.fixture()
def corrections(logic, loaded):
    """The module's correction logic on the loaded reference vertebrae (T11..S), without an undo step."""
    register_segmentation_conversion_rules()  # the undo copy needs them, as in Slicer
    return CorrectionLogic(logic), loaded.segmentation_node


def _segment_id(node, name: str) -> str:
    return node.GetSegmentation().GetSegmentIdBySegmentName(name)


def _every_correction(correction, node, segment_id, ct_node, folder):
    """Each public correction of a segmentation node, as a script calls it with ``node``."""
    return {
        "renumber": lambda: correction.renumber(node, segment_id, "L5"),
        "applyRename": lambda: correction.applyRename(node, segment_id),
        "alternatives": lambda: correction.alternatives(node),
        "applyAlternative": lambda: correction.applyAlternative(node, [19, 20, 21, 22, 23, 24, 25]),
        "setCompleteness": lambda: correction.setCompleteness(node, segment_id, False),
        "undoLast": lambda: correction.undoLast(node),
        "applyRun": lambda: correction.applyRun(folder, ct_node, node),
    }


def test_corrections_refuse_what_is_not_a_segmentation_node_naming_it(corrections, ct_node, output_folder):
    """None, a volume or a node's name as the segmentation: AttributeError ('NoneType' object has no attribute
    'GetSegmentation'), or undoLast answering False as if there were nothing to undo (audit 2026-12-07). Now a
    ValueError naming what was passed and the fix; the vertebrae unchanged."""
    correction, node = corrections
    l4 = _segment_id(node, "L4")
    for wrong, kind in ((None, "None"), (ct_node, "vtkMRMLScalarVolumeNode"), ("CT vertebrae", "str 'CT vertebrae'")):
        for name, call in _every_correction(correction, wrong, l4, ct_node, output_folder).items():
            with pytest.raises(ValueError, match=rf"the segmentation must be a segmentation node, not {kind}; pass the "
                                                 r"vtkMRMLSegmentationNode that holds the vertebrae"):
                call()
    assert segment_names(node) == EXPECTED_NAMES and not correction.undo.available


def test_corrections_of_a_segmentation_removed_from_the_scene_are_refused(corrections, ct_node, output_folder, scene):
    """A segmentation removed from the scene was renumbered, flagged and undone into without a word, a click or
    re-run on it failed with AttributeError ('NoneType' object has no attribute 'GetNumberOfNodes', from the export
    of its vertebrae) (audit 2026-12-07). Now each is refused at once, naming the node and the fix; nothing changed,
    nothing started."""
    correction, node = corrections
    l4 = _segment_id(node, "L4")
    correction.renumber(node, l4, "L5")  # an undo step for undoLast to (not) put back
    renumbered = segment_names(node)
    scene.RemoveNode(node)
    for name, call in _every_correction(correction, node, l4, ct_node, output_folder).items():
        with pytest.raises(ValueError, match=r"the segmentation 'example_ct vertebrae' is no longer in the scene \(it "
                                             r"was removed\), so nothing was changed; pass a segmentation node that"):
            call()
    assert segment_names(node) == renumbered  # not renumbered again, not undone
    assert segment_tag(node.GetSegmentation().GetSegment(l4), TAG_PREFIX + "CompleteStated") is None
    for start in (lambda: correction.startClick(ct_node, node, [0.0, 0.0, 0.0]),
                  lambda: correction.startRerun(ct_node, node)):
        with pytest.raises(ValueError, match=r"'example_ct vertebrae' is no longer in the scene"):
            start()
    assert correction._sent is None  # nothing was started


def test_a_ct_removed_from_the_scene_is_refused_before_a_run_starts(logic, corrections, ct_node, scene, tmp_path):
    """A CT removed from the scene was exported and segmented for minutes, its result then refused by the import
    (audit 2026-12-07); now refused before anything starts (an interpreter that does not exist: a start would raise
    OSError)."""
    correction, node = corrections
    never = SpineSegmentationProcessLogic(scene=scene, python=str(tmp_path / "no-python"), libraryDir=REPO_ROOT)
    scene.RemoveNode(ct_node)
    message = r"the CT 'example_ct' is not in the scene \(it was removed\), so its results could not be imported"
    for start in (lambda: never.process(ct_node), lambda: never.startSegmentation(ct_node),
                  lambda: CorrectionLogic(never).startClick(ct_node, None, [0.0, 0.0, 0.0]),
                  lambda: CorrectionLogic(never).startRerun(ct_node, node)):
        with pytest.raises(ValueError, match=message):
            start()


def test_bad_segment_ids_levels_alternatives_points_and_directions_are_refused(corrections, ct_node, scene,
                                                                                tmp_path):
    """A segment ID that is no string (TypeError from GetSegment), a level None (TypeError), 24.5 (renumbered as 24
    without a word), True (C1) or the sacrum, an alternative "abc" or None (ValueError 'invalid literal for int()',
    TypeError), one with 18.5 (applied as 18) or an unknown level, a point None, directions "up" (sent to the tool as
    "u,p") or ["left"] (audit 2026-12-07). Now each is a ValueError saying what to pass; nothing changed or started
    (the clicks through a logic whose interpreter does not exist: a start would raise OSError)."""
    correction, node = corrections
    never = CorrectionLogic(SpineSegmentationProcessLogic(scene=scene, python=str(tmp_path / "no-python"),
                                                          libraryDir=REPO_ROOT))
    l4 = _segment_id(node, "L4")
    for segment_id in (None, 3):
        for call in (lambda: correction.renumber(node, segment_id, "L5"),
                     lambda: correction.applyRename(node, segment_id),
                     lambda: correction.setCompleteness(node, segment_id, False)):
            with pytest.raises(ValueError, match=rf"the segment ID must be a string, got {segment_id}; pass the ID"):
                call()
    with pytest.raises(ValueError, match=r"segment 'no such' is not in 'example_ct vertebrae'"):
        correction.applyRename(node, "no such")  # answered {} as if it were not renamed
    for level in (None, 24.5, True, [24]):
        with pytest.raises(ValueError, match=r"the level must be a level name such as 'L5' or its VerSe number \(24\)"):
            correction.renumber(node, l4, level)
    for level in (99, 26, "S", "Q9"):  # "Q9": the names the column takes, not verse_label's "... or sacrum"
        with pytest.raises(ValueError, match=rf"^{level!r} is not a level of the column; use C1-C7, T1-T13 or L1-L6 "
                                             r"\(VerSe numbers 1-25, T13 = 28\); the sacrum is not renumbered$"):
            correction.renumber(node, l4, level)
    for alternative in ("abc", None, [18.5, 19, 20, 21, 22, 23, 24], [18, 19, 20, 21, 22, 23, 99],
                        ["T11", "T12", "L1", "L2", "L3", "L4", "L5"]):
        with pytest.raises(ValueError, match=r"the alternative must be one of alternatives\(segmentationNode\), or a "
                                             r"list of VerSe numbers of the column"):
            correction.applyAlternative(node, alternative)
    assert segment_names(node) == EXPECTED_NAMES and not correction.undo.available
    for point in (None, "abc", [0.0, 0.0, float("nan")], ["1", "2", "3"]):
        with pytest.raises(ValueError, match=r"the point must be three finite RAS coordinates in mm"):
            never.startClick(ct_node, node, point)
    for directions in ("up", ["left"], None):
        with pytest.raises(ValueError, match=r"directions must be a list of 'up' and/or 'down'"):
            never.startClick(ct_node, node, [0.0, 0.0, 0.0], directions)
    assert correction._sent is None and never._sent is None
    assert correction.renumber(node, l4, np.int64(24)) == {18: 19, 19: 20, 20: 21, 21: 22, 22: 23, 23: 24, 24: 25}


def _sent_point(run) -> list[float]:
    args = run.args
    return [float(v) for v in args[args.index("--point") + 1 : args.index("--point") + 4]]


def test_a_markups_point_a_tuple_and_an_array_are_clicked_and_text_is_refused(corrections, ct_node, scene, tmp_path):
    """The point a markups node gives (GetNthControlPointPositionWorld: a vtkVector3d, iterable only through
    indexing), which the docstring tells scripts to pass, was refused as 'not three finite RAS coordinates', and
    b"abc" was clicked at (97, 98, 99) (review 2026-12-07). Now any sequence of three finite numbers is sent to the
    tool (the CT has no transform: world = its own frame); str and bytes are refused before anything starts."""
    correction, node = corrections
    markups = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "clicks")
    markups.AddControlPoint(1.5, -2.0, 3.25)
    vector = markups.GetNthControlPointPositionWorld(0)
    assert type(vector).__name__ == "vtkVector3d"  # what Slicer 5.6-5.10 return (vtkMRMLMarkupsNode.h)
    for point in (vector, (1.5, -2.0, 3.25), np.array([1.5, -2.0, 3.25], dtype=np.float32)):
        run = correction.startClick(ct_node, node, point, directions=("up",), device="CPU")
        try:
            assert _sent_point(run) == pytest.approx([1.5, -2.0, 3.25])
            assert run.args[run.args.index("--directions") + 1] == "up"
        finally:
            run.cancel()
            run.cleanup()
    never = CorrectionLogic(SpineSegmentationProcessLogic(scene=scene, python=str(tmp_path / "no-python"),
                                                          libraryDir=REPO_ROOT))  # a start would raise OSError
    for point in (b"abc", "abc", bytearray(b"abc"), np.array(5.0)):
        with pytest.raises(ValueError, match=r"the point must be three finite RAS coordinates in mm"):
            never.startClick(ct_node, node, point)
    for directions in (b"up", "up"):
        with pytest.raises(ValueError, match=r"directions must be a list of 'up' and/or 'down'"):
            never.startClick(ct_node, node, vector, directions)
    assert never._sent is None
    with pytest.raises(OSError):  # a start that fails keeps no state of a run (nor the node) for applyRun
        never.startClick(ct_node, node, vector)
    assert never._sent is None


def test_a_segmentation_removed_while_the_correction_ran_is_named_and_the_run_forgotten(corrections, ct_node,
                                                                                       output_folder, scene):
    """applyRun refused a segmentation removed while its correction ran with the message for a node removed before
    ('... so nothing was changed') and kept the run's state, holding the removed node (review 2026-12-07). Now its
    own message says the result was not imported and what to do; the run is forgotten, the node unchanged."""
    correction, node = corrections
    run = correction.startClick(ct_node, node, [0.0, 0.0, 0.0], device="CPU")
    try:
        scene.RemoveNode(node)
        with pytest.raises(ValueError, match=r"^the segmentation 'example_ct vertebrae' was removed from the scene "
                                             r"while the correction ran, so its result was not imported; run the "
                                             r"correction again on a segmentation in the scene$"):
            correction.applyRun(output_folder, ct_node, node)
        assert correction._sent is None  # neither its state nor the removed node are kept
        assert segment_names(node) == EXPECTED_NAMES and not correction.undo.available
    finally:
        run.cancel()
        run.cleanup()


def test_applying_a_click_started_without_a_segmentation_to_none_names_the_missing_node(corrections, ct_node,
                                                                                       output_folder):
    """A click may start without a segmentation; applying it to None gave AttributeError ('NoneType' object has no
    attribute 'GetScene') (review 2026-12-07): now the error names what applyRun needs."""
    correction, _ = corrections
    run = correction.startClick(ct_node, None, [0.0, 0.0, 0.0], device="CPU")
    try:
        with pytest.raises(ValueError, match=r"the segmentation must be a segmentation node, not None"):
            correction.applyRun(output_folder, ct_node, None)
        assert correction._sent is None
    finally:
        run.cancel()
        run.cleanup()


def test_a_segmentation_node_holding_no_segmentation_is_refused_before_a_run(corrections, logic, ct_node, scene,
                                                                             output_folder):
    """A segmentation node whose vtkSegmentation was taken away (SetAndObserveSegmentation(None)), under another
    transform than the CT: AttributeError ('NoneType' object has no attribute 'GetNumberOfSegments') from a re-run
    or loadResults(overwrite=True) (review 2026-12-07). Now a ValueError naming the node; nothing starts."""
    correction, node = corrections
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    node.SetAndObserveTransformNodeID(transform.GetID())
    node.SetAndObserveSegmentation(None)
    message = (r"the segmentation node 'example_ct vertebrae' holds no segmentation "
               r"\(SetAndObserveSegmentation\(None\)\)")
    for call in (lambda: correction.startRerun(ct_node, node),
                 lambda: logic.loadResults(output_folder, ct_node, node, overwrite=True)):
        with pytest.raises(ValueError, match=message):
            call()
    assert correction._sent is None


def test_nodes_of_another_scene_than_the_module_s_are_refused_before_a_run_starts(corrections, ct_node, scene,
                                                                                   output_folder, real_ct, tmp_path):
    """A CT or segmentation of another scene than the logic's passed the checks, was exported and run on for
    minutes, and its result was then refused by the import (as 'no longer in the scene (removed while the correction
    ran)') (review 2026-12-07). Now refused before anything starts (an interpreter that does not exist: a start would
    raise OSError), naming the node and the fix; neither scene changed."""
    correction, node = corrections
    other = slicer.vtkMRMLScene()
    other_ct = load_volume(other, real_ct)
    other_segmentation = other.AddNewNodeByClass("vtkMRMLSegmentationNode", "other vertebrae")
    nodes, other_nodes = scene.GetNumberOfNodes(), other.GetNumberOfNodes()
    never = SpineSegmentationProcessLogic(scene=scene, python=str(tmp_path / "no-python"), libraryDir=REPO_ROOT)
    ct_message = (r"the CT 'example_ct' is in another scene than the module's, so its results could not be imported; "
                  r"load the CT into the module's scene \(slicer.mrmlScene\) and pass that volume node")
    for start in (lambda: never.process(other_ct), lambda: never.startSegmentation(other_ct),
                  lambda: CorrectionLogic(never).startClick(other_ct, None, [0.0, 0.0, 0.0]),
                  lambda: CorrectionLogic(never).startRerun(other_ct, node)):
        with pytest.raises(ValueError, match=ct_message):
            start()
    segmentation_message = (r"the segmentation 'other vertebrae' is in another scene than the module's, so a "
                            r"correction's result could not be applied to it and nothing was changed; pass a "
                            r"segmentation node of the module's scene \(slicer.mrmlScene\)")
    for call in (lambda: CorrectionLogic(never).startClick(ct_node, other_segmentation, [0.0, 0.0, 0.0]),
                 lambda: correction.applyRun(output_folder, ct_node, other_segmentation)):
        with pytest.raises(ValueError, match=segmentation_message):
            call()
    assert (scene.GetNumberOfNodes(), other.GetNumberOfNodes()) == (nodes, other_nodes)
    assert other_segmentation.GetSegmentation().GetNumberOfSegments() == 0 and not correction.undo.available


def test_an_output_segmentation_outside_the_module_s_scene_is_refused_before_a_run_starts(ct_node, scene, tmp_path):
    """``process(ct, outputSegmentation=node)`` with a node never added to the scene, or of another scene, checked
    only the node's class: the run started (an interpreter that does not exist: OSError here), and after minutes its
    result was refused (``overwrite=True``: 'no longer in the scene (removed while the correction ran)') or put into a
    new node with a warning that the node 'was removed from the scene while the run went on' (audit 2026-12-07, h6).
    Now refused before anything starts, naming the node and the fix; neither scene changed."""
    other = slicer.vtkMRMLScene()
    elsewhere = other.AddNewNodeByClass("vtkMRMLSegmentationNode", "other vertebrae")
    detached = slicer.vtkMRMLSegmentationNode()
    detached.SetName("never added")
    nodes, other_nodes = scene.GetNumberOfNodes(), other.GetNumberOfNodes()
    never = SpineSegmentationProcessLogic(scene=scene, python=str(tmp_path / "no-python"), libraryDir=REPO_ROOT)
    for node, where in ((elsewhere, "in another scene than the module's"), (detached, "in no scene")):
        for overwrite in (False, True):
            with pytest.raises(ValueError, match=rf"the output segmentation '{node.GetName()}' is {where}, so the "
                                                 r"results could not be put into it; pass a segmentation node of the "
                                                 r"module's scene \(slicer.mrmlScene"):
                never.process(ct_node, outputSegmentation=node, overwrite=overwrite)
    assert (scene.GetNumberOfNodes(), other.GetNumberOfNodes()) == (nodes, other_nodes)


def test_a_probability_outside_0_1_is_refused_in_the_folder_and_the_tags(logic, output_folder, ct_node, scene,
                                                                          corrections, tmp_path):
    """A p_label of 1.5 or -0.1 (or p_complete 2) in vertebrae.json was imported and shown as a confidence; a PLabel
    tag of 1.5 went into renumbering, "abc" failed there with 'could not convert string to float' (audit
    2026-12-07). Now refused, naming the field or the segment and tag, the scene unchanged."""
    folder = tmp_path / "probabilities"
    shutil.copytree(output_folder, folder)
    report = json.loads((folder / "vertebrae.json").read_text())
    nodes = scene.GetNumberOfNodes()
    for field, value in (("p_label", 1.5), ("p_label", -0.1), ("p_complete", 2.0)):
        entry = dict(report["vertebrae"][2], **{field: value})
        (folder / "vertebrae.json").write_text(json.dumps(dict(report, vertebrae=report["vertebrae"][:2] + [entry]
                                                               + report["vertebrae"][3:])))
        with pytest.raises(ValueError, match=rf"vertebrae\[2\]: '{field}' must be a probability between 0 and 1, "
                                             rf"got {value}"):
            logic.loadResults(folder, ct_node)
    assert scene.GetNumberOfNodes() == nodes
    correction, node = corrections
    for tag in ("1.5", "abc"):
        node.GetSegmentation().GetSegment(_segment_id(node, "L2")).SetTag(TAG_PREFIX + "PLabel", tag)
        with pytest.raises(ValueError, match=rf"segment 'L2': tag SpineSegmentation.PLabel is '{tag}', expected a "
                                             r"probability between 0 and 1; fix or remove the tag"):
            correction.renumber(node, _segment_id(node, "L4"), "L5")
    assert segment_names(node) == EXPECTED_NAMES


def _table_cells(table, column_name: str) -> dict:
    """The results table's cells of one column, by the level in each row (in row order)."""
    column = {table.GetColumnName(c): c for c in range(table.GetNumberOfColumns())}
    return {table.GetCellText(row, column["Level"]): table.GetCellText(row, column[column_name])
            for row in range(table.GetNumberOfRows())}


#: The bad tag values of the two tests below: not a number, and a number outside [0, 1].
BAD_TAGS = (("L2", "abc"), ("L3", "1.5"))


def _set_bad_tags(node, tag: str) -> None:
    """Set the ``SpineSegmentation.<tag>`` of L2 and L3 to the values of :data:`BAD_TAGS`."""
    segmentation = node.GetSegmentation()
    for name, value in BAD_TAGS:
        segmentation.GetSegment(_segment_id(node, name)).SetTag(TAG_PREFIX + tag, value)


def _assert_bad_tags_warned(caplog, tag: str, shown: str) -> None:
    """Each tag of :data:`BAD_TAGS` was warned of, naming the segment, the tag, the value, the fix and ``shown``."""
    for name, value in BAD_TAGS:
        assert (f"example_ct vertebrae: segment '{name}': tag SpineSegmentation.{tag} is '{value}', expected a "
                f"probability between 0 and 1; fix or remove the tag (Segmentations module); {shown}") in caplog.text


def test_a_bad_plabel_tag_shows_its_row_without_a_confidence_and_warns(corrections, loaded, caplog):
    """The results tables read the PLabel tag with a bare float(): a tag "abc" made the refresh after any correction
    fail with ValueError ('could not convert string to float'), a tag 1.5 was shown as a confidence, while
    renumbering refuses both (audit 2026-12-07). Now the row is shown with its confidence missing (NaN, "-" in the
    module's table) and a warning names the segment and the fix; the other rows keep their confidence."""
    correction, node = corrections
    _set_bad_tags(node, "PLabel")
    with caplog.at_level(logging.WARNING):
        rows = {name: p_label for _id, name, _complete, p_label, _volume in segment_rows(node)}
        correction.setCompleteness(node, _segment_id(node, "L4"), False)  # refreshes the results table
    assert list(rows) == EXPECTED_NAMES
    assert math.isnan(rows["L2"]) and math.isnan(rows["L3"])
    assert all(rows[name] == pytest.approx(0.9) for name in EXPECTED_NAMES if name not in ("L2", "L3"))
    _assert_bad_tags_warned(caplog, "PLabel", "its confidence is shown empty")
    shown = _table_cells(loaded.table_node, "Confidence")
    assert list(shown) == EXPECTED_NAMES
    assert math.isnan(float(shown["L2"])) and math.isnan(float(shown["L3"]))
    assert all(float(shown[name]) == pytest.approx(0.9) for name in EXPECTED_NAMES if name not in ("L2", "L3"))
    assert _table_cells(loaded.table_node, "Complete")["L4"] == "no"  # the refresh went through


def test_a_bad_pcomplete_tag_shows_its_row_without_a_value_and_warns(corrections, loaded, caplog):
    """The results table read the PComplete tag with its own float(): a tag "abc" was shown as NaN without a word, a
    tag 1.5 was shown as a probability (audit 2026-12-07). Now both are shown missing (NaN, "-" in the module's table)
    with a warning naming the segment, the tag and the fix, as for PLabel; the other rows keep their value."""
    correction, node = corrections
    segmentation = node.GetSegmentation()
    _set_bad_tags(node, "PComplete")
    kept = {name: float(segment_tag(segmentation.GetSegment(_segment_id(node, name)), TAG_PREFIX + "PComplete"))
            for name in EXPECTED_NAMES if name not in ("L2", "L3")}
    assert kept and all(0.0 <= value <= 1.0 for value in kept.values())
    with caplog.at_level(logging.WARNING):
        correction.setCompleteness(node, _segment_id(node, "L4"), False)  # refreshes the results table
    _assert_bad_tags_warned(caplog, "PComplete", "its value is shown empty")
    shown = _table_cells(loaded.table_node, "P(complete)")
    assert list(shown) == EXPECTED_NAMES
    assert math.isnan(float(shown["L2"])) and math.isnan(float(shown["L3"]))
    assert all(float(shown[name]) == pytest.approx(value, abs=1e-4) for name, value in kept.items())
    assert all(float(text) == pytest.approx(0.9)
               for text in _table_cells(loaded.table_node, "Confidence").values())  # PLabel untouched
    assert _table_cells(loaded.table_node, "Complete")["L4"] == "no"  # the refresh went through


def test_overwrite_progress_and_output_folder_of_the_wrong_type_are_refused(logic, output_folder, ct_node, scene,
                                                                            tmp_path):
    """overwrite="no" replaced the vertebrae of the segmentation (any non-empty string is true), a progress that is
    not callable failed at the run's first progress line, an output folder None raised TypeError (audit
    2026-12-07). Now refused before anything changes or starts."""
    first = logic.loadResults(output_folder, ct_node).segmentation_node
    first.GetSegmentation().GetSegment(_segment_id(first, "L2")).SetName("my L2")
    nodes = scene.GetNumberOfNodes()
    for overwrite in ("no", 0, None):
        with pytest.raises(ValueError, match=rf"overwrite must be True or False, got {overwrite!r}; pass overwrite"):
            logic.loadResults(output_folder, ct_node, first, overwrite=overwrite)
    assert "my L2" in segment_names(first) and scene.GetNumberOfNodes() == nodes
    never = SpineSegmentationProcessLogic(scene=scene, python=str(tmp_path / "no-python"), libraryDir=REPO_ROOT)
    with pytest.raises(ValueError, match=r"overwrite must be True or False, got 'no'"):
        never.process(ct_node, first, overwrite="no")  # a start would raise OSError (no interpreter there)
    with pytest.raises(ValueError, match=r"progress must be a function taking a ProgressEvent \(or None\), got 5"):
        never.process(ct_node, progress=5)
    with pytest.raises(ValueError, match=r"the output folder must be a path \(str or pathlib.Path\), got None"):
        logic.loadResults(None, ct_node)
    assert scene.GetNumberOfNodes() == nodes


# ---------------------------------------------------------------------------------------------------------
# the process side: export, command line, progress lines, real child processes


def test_export_volume_writes_the_ct_unchanged(ct_node, real_ct_image, tmp_path):
    path = export_volume(ct_node, tmp_path / "input.nrrd")
    written = sitk.ReadImage(str(path))
    assert np.array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(real_ct_image))
    np.testing.assert_allclose(written.GetOrigin(), real_ct_image.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(written.GetDirection(), real_ct_image.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(written.GetSpacing(), real_ct_image.GetSpacing(), atol=1e-6)


def test_a_ct_under_a_non_linear_transform_is_refused(ct_node, scene, tmp_path):
    """Slicer puts a DICOM series with a gantry tilt or uneven slices under a non-linear grid transform
    (acquisition geometry regularization): the stored voxels are not the anatomy shown, and were segmented as
    stored (audit 2026-12-06). Refused, naming the remedy; a linear transform is fine."""
    import vtk

    warp = vtk.vtkThinPlateSplineTransform()
    source, target = vtk.vtkPoints(), vtk.vtkPoints()
    for x, y, z in ((0, 0, 0), (100, 0, 0), (0, 100, 0), (0, 0, 100), (50, 50, 50)):
        source.InsertNextPoint(x, y, z)
        target.InsertNextPoint(x, y + 0.1 * z, z)  # a 6-degree shear, as of a tilted gantry
    warp.SetSourceLandmarks(source)
    warp.SetTargetLandmarks(target)
    regularization = scene.AddNewNodeByClass("vtkMRMLTransformNode", "regularization")
    regularization.SetAndObserveTransformToParent(warp)
    ct_node.SetAndObserveTransformNodeID(regularization.GetID())
    with pytest.raises(ValueError, match=r"is under the non-linear transform 'regularization', not linear to "
                                         r"world.*Harden transform"):
        export_volume(ct_node, tmp_path / "input.nrrd")
    assert not (tmp_path / "input.nrrd").exists()
    shift = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
    ct_node.SetAndObserveTransformNodeID(shift.GetID())
    assert export_volume(ct_node, tmp_path / "input.nrrd").is_file()


def test_command_line_and_progress_lines(tmp_path):
    assert progress_bar_format(ProgressEvent("traversal", 0.5, 3, "50% done")) == "traversal: vertebra 3 - 50% done  (%p%)"
    args = segment_command("PythonSlicer", tmp_path / "in.nrrd", tmp_path / "out", "GPU", tmp_path / "model")
    assert args == ["PythonSlicer", "-m", "SpineSegmentationLib.cli", "--exit-when-stdin-closes", "segment",
                    str(tmp_path / "in.nrrd"), "-o",
                    str(tmp_path / "out"), "--device", "cuda", "--progress", "json", "--model", str(tmp_path / "model")]
    with pytest.raises(ValueError, match="unknown device"):
        segment_command("python", tmp_path, tmp_path, "TPU")
    event = parse_progress_line('{"stage": "traversal", "fraction": 0.5, "vertebra": 3, "message": "L2"}\n')
    assert event == ProgressEvent("traversal", 0.5, 3, "L2")
    assert event.text() == "traversal: vertebra 3 - L2"
    final = parse_progress_line('{"stage": "result", "output_dir": "/tmp/x", "message": "8 vertebrae"}')
    assert final.output_dir == "/tmp/x" and final.fraction == 1.0
    for not_progress in ("spineseg: error: no model", "{not json", '{"stage": 3}', '{"stage": "a", "fraction": "x"}'):
        assert parse_progress_line(not_progress) is None


SLOW_CHILD = """
import json, subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(json.dumps({"stage": "traversal", "fraction": 0.1, "vertebra": 1, "message": str(grandchild.pid)}), flush=True)
print(json.dumps({"stage": "traversal", "fraction": 0.2, "vertebra": 2, "message": ""}), flush=True)
print("a log line", flush=True)
time.sleep(60)
"""


def _ended(pid: int) -> bool:
    """True when process ``pid`` no longer runs (gone, or a zombie waiting for its parent)."""
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_cancel_kills_the_whole_process_group_promptly_and_reports_progress(tmp_path):
    """PythonSlicer is a launcher whose child runs the CLI: Cancel must end the child's children too."""
    work = tmp_path / "work"
    work.mkdir()
    runner = ProcessRunner()
    run = SegmentationRun(runner, [sys.executable, "-c", SLOW_CHILD], None, str(tmp_path), work, work / "out")
    events = []

    def on_progress(event):
        events.append(event)
        return len(events) < 2  # cancel at the second progress event

    with pytest.raises(SegmentationCancelledError):
        run.wait(on_progress)
    # the child sleeps 60 s after its progress lines: it was killed, not waited for
    assert runner.returncode == (1 if os.name == "nt" else -signal.SIGKILL)
    assert [e.vertebra for e in events] == [1, 2]
    assert not run.running
    grandchild = int(events[0].message)
    for _ in range(100):  # SIGKILL of the group is delivered at once; the grandchild's exit is asynchronous
        if _ended(grandchild):
            break
        time.sleep(0.05)
    assert _ended(grandchild), "the grandchild (the launcher's child) survived Cancel"
    run.cleanup()
    assert not work.exists()


def test_the_error_of_a_child_whose_console_is_not_utf8_is_read_as_it_wrote_it(tmp_path):
    """The runner reads the child's output as UTF-8, but the child wrote it in the console's encoding: on Windows
    (cp1252 and the like; simulated here with PYTHONIOENCODING=latin-1) an error naming a path such as
    'C:\\Users\\J\u00f6rg\\ct.nii.gz' came back as 'J\ufffdrg' in the message the user sees (audit 2026-12-07, h6). The
    child now writes UTF-8 (process_environment sets PYTHONIOENCODING)."""
    from SpineSegmentationModuleLib.command import process_environment

    script = tmp_path / "fails.py"
    script.write_text("import sys\n"
                      "sys.stderr.write('cannot read /data/J\\u00f6rg/\\u5f20/ct.nii.gz\\n')\n"
                      "sys.exit(2)\n", encoding="utf-8")
    env = process_environment(REPO_ROOT, base={**os.environ, "PYTHONIOENCODING": "latin-1"})
    run = SegmentationRun(ProcessRunner(), [sys.executable, str(script)], env, str(tmp_path), tmp_path, tmp_path)
    with pytest.raises(SegmentationProcessError) as failure:
        run.wait()
    assert "cannot read /data/J\u00f6rg/\u5f20/ct.nii.gz" in str(failure.value)


def test_cli_failure_is_reported_and_the_scene_is_unchanged(scene, ct_node, tmp_path):
    logic = SpineSegmentationProcessLogic(scene=scene, python=sys.executable, libraryDir=REPO_ROOT)
    nodes = scene.GetNumberOfNodes()
    missing_model = tmp_path / "no_such_model"
    with pytest.raises(SegmentationProcessError, match="exit status 2") as error:
        logic.process(ct_node, model=missing_model, device="CPU")
    assert "no_such_model" in str(error.value)
    assert scene.GetNumberOfNodes() == nodes


def segment_example_ct_in_scene(scene, ct_node, model=None, device="auto"):
    """End-to-end helper for the test the lead adds once the model is shipped: the real pipeline on the
    example CT through the module logic (separate process), returning the imported results."""
    logic = SpineSegmentationProcessLogic(scene=scene, python=sys.executable, libraryDir=REPO_ROOT)
    return logic.process(ct_node, device=device, model=model)


def test_process_runs_the_real_cli_and_imports_its_output(scene, tptbox_ct, tmp_path):
    """The success path end to end: volume node -> real CLI process (shipped model, a real CT crop it was not
    trained on, PIR orientation) -> progress events -> output folder -> nodes that match that folder voxel for
    voxel. Checks the plumbing, not accuracy; the crop's three vertebrae must be found, so the per-vertebra
    checks compare something."""
    ct = load_volume(scene, tptbox_ct)
    before = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    logic = SpineSegmentationProcessLogic(scene=scene, python=sys.executable, libraryDir=REPO_ROOT)
    events = []
    results = logic.process(ct, device="CPU", outputDir=tmp_path / "out", progress=events.append)

    assert events and events[-1].fraction == 1.0
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions)
    report = json.loads((tmp_path / "out" / "vertebrae.json").read_text())
    names = [v["name"] for v in report["vertebrae"]]
    assert len(names) >= 3, f"the shipped model found {names} in the lumbar crop (README: three vertebrae)"
    assert segment_names(results.segmentation_node) == names
    assert results.centroids_node.GetNumberOfControlPoints() == len(names)
    assert results.table_node.GetNumberOfRows() == len(names)
    added = sorted(scene.GetNthNode(i).GetClassName() for i in range(scene.GetNumberOfNodes())
                   if scene.GetNthNode(i).GetID() not in before)
    assert added == sorted(["vtkMRMLSegmentationNode", "vtkMRMLSegmentationDisplayNode", "vtkMRMLTableNode",
                            "vtkMRMLMarkupsFiducialNode", "vtkMRMLMarkupsFiducialDisplayNode"])
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / "labels.nii.gz")))
    for entry in report["vertebrae"]:
        ijk, _ = segment_voxels(results.segmentation_node.GetSegmentation().GetSegment(entry["name"]))
        expected = np.argwhere(labels == entry["label"])[:, ::-1]
        assert len(expected) > 0 and {tuple(v) for v in ijk} == {tuple(v) for v in expected}, entry["name"]
        segment = results.segmentation_node.GetSegmentation().GetSegment(entry["name"])
        assert float(segment_tag(segment, TAG_PREFIX + "LabelRegressed")) == pytest.approx(
            entry["label_regressed"], abs=1e-3)


def test_shipped_model_on_the_real_ct_through_the_module_logic(scene, real_ct, real_ct_reference):
    """The batch API end to end: real CT volume node -> module logic -> separate process with the shipped model
    -> one coded segment per vertebra whose voxels match the library's label map and the reference's lumbar
    levels, centroids and table rows for each."""
    import SimpleITK as sitk

    from SpineSegmentationLib.anatomy import to_verse

    ct = load_volume(scene, real_ct)
    results = segment_example_ct_in_scene(scene, ct, device="cpu")
    names = segment_names(results.segmentation_node)
    assert {"L1", "L2", "L3", "L4", "L5"} <= set(names), names
    assert results.centroids_node.GetNumberOfControlPoints() == len(names)
    assert results.table_node.GetNumberOfRows() == len(names)
    assert "T11" not in names or "T11" in results.incomplete
    segmentation = results.segmentation_node.GetSegmentation()
    for name in ("L1", "L3", "L5"):
        segment = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName(name))
        assert "SCT^" in segment_tag(segment, segment.GetTerminologyEntryTagName())
    # each named lumbar vertebra's centroid (RAS) lies inside the reference vertebra of the same level
    reference = to_verse(sitk.GetArrayFromImage(sitk.ReadImage(str(real_ct_reference))), "totalseg")
    image = sitk.ReadImage(str(real_ct))
    for v in results.vertebrae:
        if v.name in ("L2", "L3", "L4"):
            x, y, z = v.centroid_ras_mm
            i, j, k = image.TransformPhysicalPointToIndex((-x, -y, z))  # RAS -> LPS -> IJK
            assert reference[k, j, i] == {"L2": 21, "L3": 22, "L4": 23}[v.name], v.name
