"""The module's correction workflow on real MRML classes (PyPI ``slicer-core``), without the application.

The segmentation is the real reference of the example CT, imported as the module imports pipeline results. The
Segment Editor's way of changing voxels (``vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment``) must
tag the segment as edited; exports, commands, renumbering, alternatives, completeness and undo are checked on
the nodes. The network steps run the real ``correction_cli`` in a child process (the module's ``ProcessRunner``)
with the shipped model, so that a command line the tool does not accept fails here; what the re-run labels is
tested in ``test_correction.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

import slicer  # slicer-core from PyPI: the MRML classes without the application
import vtk
from vtk.util.numpy_support import vtk_to_numpy

from SpineSegmentationLib import anatomy
from SpineSegmentationLib.geometry import same_grid
from SpineSegmentationLib.outputs import write_outputs
from SpineSegmentationLib.renumbering import STATED_LEVELS_CONTRADICT_WARNING, relabel_vertebrae, renumber_vertebrae
from SpineSegmentationLib.result import SpineSegmentationResult, Vertebra
from SpineSegmentationLib.terminology import slicer_terminology_entry
from SpineSegmentationModuleLib.correction import (
    COMPLETE_STATED_TAG,
    EDITED_TAG,
    LABEL_TAG,
    LEVEL_STATED_TAG,
    REGRESSED_TAG,
    RIB_SIDES_TAG,
    SACRUM_BELOW_TAG,
    CorrectionLogic,
    check_made_on,
    export_label_map,
    holds_vertebrae,
    is_vertebra,
    renamed_levels,
    segment_centroid_ras,
    segment_centroid_world,
    segment_rows,
    segment_statistics,
    tag_unseen_edits,
    vertebra_ids,
    vertebrae_from_segments,
)
from SpineSegmentationModuleLib.logic import SpineSegmentationProcessLogic
from SpineSegmentationModuleLib.mrml_import import check_same_grid, segment_tag

from mrml_helpers import (
    background_voxel_next_to,
    edited_on_grid,
    load_volume,
    paint,
    register_segmentation_conversion_rules,
    segment_by_name,
    segment_names,
    segment_voxels,
    shift_transform,
    specify_geometry,
    synthetic_ct,
    verse_reference,
    volume_on_grid,
    vtk_matrix,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Regressed values of the reference vertebrae in the prepared folder: off by 0.3 towards the next level.
OFFSET = 0.3


@pytest.fixture(scope="module")
def verse_labels(real_ct_reference) -> sitk.Image:
    return verse_reference(real_ct_reference)


def _folder(labels: sitk.Image, ct: sitk.Image, ct_path: Path, folder: Path, edited=()) -> Path:
    """A pipeline output folder of ``labels`` (as write_outputs writes it); the sacrum is listed as 'S'."""
    array = sitk.GetArrayFromImage(labels)
    vertebrae = []
    for label in [int(v) for v in np.unique(array) if v]:
        kji = np.argwhere(array == label).mean(axis=0)
        lps = np.array(labels.TransformContinuousIndexToPhysicalPoint([float(c) for c in kji[::-1]]))
        vertebrae.append(Vertebra(
            label=label, name=anatomy.vertebra_name(label), complete=True, p_complete=0.9, p_label=0.7,
            label_regressed=(label + OFFSET) if label != 26 else 0.0,
            centroid_ras_mm=[float(-lps[0]), float(-lps[1]), float(lps[2])],
            volume_mm3=float((array == label).sum()), iterations=2, edited=label in edited,
            # the anatomy evidence the example CT shows: ribs beside T12, none beside L1-L4, the sacrum below L5
            rib_sides={19: 2, 20: 0, 21: 0, 22: 0, 23: 0}.get(label), sacrum_below=True if label == 24 else None))
    vertebrae.sort(key=lambda v: -v.centroid_ras_mm[2])
    write_outputs(SpineSegmentationResult(labels=labels, vertebrae=vertebrae, message="prepared"), ct, folder,
                  input_path=ct_path)
    return folder


@pytest.fixture(scope="module")
def reference_folder(tmp_path_factory, real_ct, real_ct_image, verse_labels) -> Path:
    return _folder(verse_labels, real_ct_image, real_ct, tmp_path_factory.mktemp("corr") / "reference")


@pytest.fixture(scope="module", autouse=True)
def segmentation_conversion_rules():
    register_segmentation_conversion_rules()


@pytest.fixture()
def scene():
    return slicer.vtkMRMLScene()


@pytest.fixture()
def ct_node(scene, real_ct):
    return load_volume(scene, real_ct, "CT")


def _logic(scene) -> CorrectionLogic:
    """The correction logic with the module's real process runner and this interpreter."""
    return CorrectionLogic(SpineSegmentationProcessLogic(scene=scene, python=sys.executable, libraryDir=REPO_ROOT))


@pytest.fixture()
def loaded(scene, ct_node, reference_folder):
    """The reference segmentation in the scene, imported through the correction logic and edit-tracked."""
    logic = _logic(scene)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "vertebrae")
    logic.applyRun(reference_folder, ct_node, segmentation)
    logic.undo = type(logic.undo)()  # start without an undo step
    logic.tracker.observe(segmentation)
    return logic, segmentation


_names = segment_names
_segment = segment_by_name
_paint = paint


def _exported(segmentation_node, ct_node, path: Path) -> np.ndarray:
    export_label_map(segmentation_node, ct_node, path)
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


@pytest.fixture(scope="module")
def near(verse_labels):
    """level -> a background voxel (k, j, i index slice) next to that vertebra: where a person adds voxels."""
    array = sitk.GetArrayFromImage(verse_labels)
    return lambda level: background_voxel_next_to(array, level)


def test_import_tags_levels_and_regressed_values_and_export_round_trips(loaded, ct_node, verse_labels, tmp_path):
    _, segmentation = loaded
    assert _names(segmentation) == ["T11", "T12", "L1", "L2", "L3", "L4", "L5", "S"]
    assert segment_tag(_segment(segmentation, "L3"), REGRESSED_TAG) == f"{22 + OFFSET:.4f}"
    assert segment_tag(_segment(segmentation, "L3"), EDITED_TAG) == "false"
    exported = _exported(segmentation, ct_node, tmp_path / "labels.nrrd")
    np.testing.assert_array_equal(exported, sitk.GetArrayFromImage(verse_labels))  # exact, on the CT's grid


def test_voxel_edits_tag_the_segment_as_edited_and_nothing_else_does(loaded, ct_node, near, tmp_path):
    logic, segmentation = loaded
    _paint(segmentation, ct_node, "L3", near(22))
    assert segment_tag(_segment(segmentation, "L3"), EDITED_TAG) == "true"
    assert [n for n in _names(segmentation) if segment_tag(_segment(segmentation, n), EDITED_TAG) == "true"] == ["L3"]
    _segment(segmentation, "L4").SetTag("SomeTag", "x")  # metadata changes are not edits
    _segment(segmentation, "L4").SetName("L4")
    assert segment_tag(_segment(segmentation, "L4"), EDITED_TAG) == "false"
    with logic.tracker.suspended():  # the module's own changes are not edits
        _paint(segmentation, ct_node, "L2", near(21))
    assert segment_tag(_segment(segmentation, "L2"), EDITED_TAG) == "false"
    exported = _exported(segmentation, ct_node, tmp_path / "labels.nrrd")
    assert (exported[near(22)] == 22).all()  # the edit is in what a re-run gets


def _edited_names(segmentation_node) -> list[str]:
    return [n for n in _names(segmentation_node) if segment_tag(_segment(segmentation_node, n), EDITED_TAG) == "true"]


def _stated_names(segmentation_node) -> list[str]:
    return [n for n in _names(segmentation_node)
            if segment_tag(_segment(segmentation_node, n), LEVEL_STATED_TAG) == "true"]


def test_rerun_runs_the_real_tool_keeps_the_edit_and_undoes(loaded, ct_node, near, tmp_path):
    logic, segmentation = loaded
    _paint(segmentation, ct_node, "L3", near(22))
    edited_voxels = {tuple(v) for v in segment_voxels(_segment(segmentation, "L3"))[0]}
    run = logic.startRerun(ct_node, segmentation, device="CPU")
    args = run.args
    assert args[2:6] == ["SpineSegmentationLib.correction_cli", "--exit-when-stdin-closes", "rerun",
                         str(run.workDir / "input.nrrd")]
    assert args[args.index("--edited") + 1] == "22"
    assert args[args.index("--redo") + 1] == "18,19,20,21,23,24"  # every other vertebra; not the sacrum (26)
    assert args[args.index("--device") + 1] == "cpu"
    sent = sitk.GetArrayFromImage(sitk.ReadImage(args[args.index("--labels") + 1]))
    assert (sent[near(22)] == 22).all()
    output = run.wait()  # the real correction_cli: exit status 0, or SegmentationProcessError quoting its error
    before = _exported(segmentation, ct_node, tmp_path / "before.nrrd")
    names_before = _names(segmentation)
    results = logic.applyRun(output, ct_node, segmentation)
    run.cleanup()
    edited = _edited_names(segmentation)
    assert len(edited) == 1  # the edited vertebra, kept voxel for voxel (its level is the labelling's)
    assert {tuple(v) for v in segment_voxels(_segment(segmentation, edited[0]))[0]} == edited_voxels
    assert len(_names(segmentation)) >= 5 and results.table_node.GetNumberOfRows() == len(_names(segmentation))
    assert logic.undoLast(segmentation)
    assert _names(segmentation) == names_before
    np.testing.assert_array_equal(_exported(segmentation, ct_node, tmp_path / "after.nrrd"), before)
    assert _edited_names(segmentation) == ["L3"]
    assert not logic.undoLast(segmentation)  # one step


def test_the_widget_shows_a_segmentation_with_our_vertebrae_and_no_other(loaded, scene):
    """What the widget's table and edit tracking follow when a segmentation is selected (``holds_vertebrae``)."""
    _, segmentation = loaded
    assert holds_vertebrae(segmentation)
    other = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "a person's own")
    assert not holds_vertebrae(other) and not holds_vertebrae(None)
    other.GetSegmentation().AddEmptySegment("canal", "Spinal canal")
    assert not holds_vertebrae(other)


#: A structure chosen from Slicer's terminology (DICOM master list, v5.6.2): the spinal cord.
SPINAL_CORD_ENTRY = ("Segmentation category and type - DICOM master list~SCT^123037004^Anatomical Structure~"
                     "SCT^2748008^Spinal cord~^^~Anatomic codes - DICOM master list~^^~^^")


def test_a_vertebra_is_ours_named_as_a_level_or_added_and_left_unnamed():
    added = slicer.vtkSegment()  # as the Segment Editor adds one: name auto-generated, terminology "Tissue"
    added.SetName("Segment_1")
    assert is_vertebra(added)  # a vertebra the network missed, drawn by hand
    copied = slicer.vtkSegment()  # ... with the terminology of the segment before it, one of ours (onAddSegment)
    copied.SetName("Segment_2")
    copied.SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), slicer_terminology_entry(24))
    assert is_vertebra(copied)
    added.SetNameAutoGenerated(False)  # a name typed in the segments table (qMRMLSegmentsModel)
    assert not is_vertebra(added)
    added.SetName("T7")
    assert is_vertebra(added)
    chosen = slicer.vtkSegment()
    chosen.SetName("Spinal cord")  # picked from the terminology: the name stays "auto-generated"
    chosen.SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), SPINAL_CORD_ENTRY)
    assert not is_vertebra(chosen)
    chosen.SetTag(LABEL_TAG, "22")  # the module's own tag: a vertebra whatever its name
    assert is_vertebra(chosen)
    scripted = slicer.vtkSegmentation()  # a segment a script named: Slicer leaves its name "auto-generated"
    canal = scripted.GetSegment(scripted.AddEmptySegment("", "Spinal canal"))
    assert canal.GetNameAutoGenerated() and not is_vertebra(canal)  # (audit 2026-12-07: it was a vertebra)
    assert is_vertebra(scripted.GetSegment(scripted.AddEmptySegment()))  # "Segment_1": the Segment Editor's Add


def test_a_segment_that_is_not_a_vertebra_is_left_as_it_is_by_every_correction(loaded, ct_node, near,
                                                                               reference_folder, verse_labels,
                                                                               tmp_path):
    logic, segmentation = loaded
    nodes = segmentation.GetSegmentation()
    nodes.RemoveSegment("T11")  # a person deleted T11 and added the canal: it gets the free ID "T11"
    canal = nodes.AddEmptySegment("T11", "Spinal canal")
    nodes.GetSegment(canal).SetNameAutoGenerated(False)  # typed in the segments table
    _paint(segmentation, ct_node, "Spinal canal", near(22))
    canal_voxels = {tuple(v) for v in segment_voxels(nodes.GetSegment(canal))[0]}
    assert canal_voxels and segment_tag(nodes.GetSegment(canal), EDITED_TAG) is None  # not a vertebra's edit
    assert canal not in [row[0] for row in segment_rows(segmentation)]
    exported = _exported(segmentation, ct_node, tmp_path / "labels.nrrd")
    reference = sitk.GetArrayFromImage(verse_labels)
    np.testing.assert_array_equal(exported, np.where(reference == 18, 0, reference))  # the vertebrae, no canal
    logic.renumber(segmentation, nodes.GetSegmentIdBySegmentName("L4"), "L5")
    logic.applyRun(reference_folder, ct_node, segmentation)  # a correction's result replaces the vertebrae only
    assert nodes.GetSegment(canal).GetName() == "Spinal canal"
    assert {tuple(v) for v in segment_voxels(nodes.GetSegment(canal))[0]} == canal_voxels
    assert _names(segmentation) == ["Spinal canal", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "S"]
    ids = [nodes.GetNthSegmentID(i) for i in range(nodes.GetNumberOfSegments())]
    assert len(set(ids)) == len(ids)  # the new T11 got an ID of its own
    assert segment_tag(nodes.GetSegment(nodes.GetSegmentIdBySegmentName("T11")), LABEL_TAG) == "18"


def test_a_kept_segment_made_from_a_surface_keeps_its_shape(loaded, ct_node, reference_folder):
    logic, segmentation = loaded
    mine = segmentation.GetScene().AddNewNodeByClass("vtkMRMLSegmentationNode", "a person's, from a model")
    nodes = mine.GetSegmentation()
    nodes.SetSourceRepresentationName(slicer.vtkSegmentationConverter.GetClosedSurfaceRepresentationName())
    sphere = vtk.vtkSphereSource()
    sphere.SetCenter(*segment_centroid_ras(segmentation, segmentation.GetSegmentation().GetSegmentIdBySegmentName(
        "L3")))
    sphere.SetRadius(6.0)
    sphere.Update()
    canal = slicer.vtkSegment()
    canal.SetName("Spinal canal")
    canal.SetNameAutoGenerated(False)
    canal.AddRepresentation(slicer.vtkSegmentationConverter.GetClosedSurfaceRepresentationName(), sphere.GetOutput())
    nodes.AddSegment(canal, "canal")
    logic.applyRun(reference_folder, ct_node, mine)  # a correction's result imported into it
    voxels = segment_voxels(nodes.GetSegment("canal"))[0]
    assert 4 / 3 * np.pi * 6.0 ** 3 * 0.5 < len(voxels) * float(np.prod(ct_node.GetSpacing())) < 4 / 3 * np.pi * 7.0 ** 3
    assert "L3" in _names(mine)


def test_vertebrae_whose_source_is_made_a_closed_surface_keep_their_volumes_and_centroids(loaded):
    _, segmentation = loaded
    nodes = segmentation.GetSegmentation()
    ids = [nodes.GetNthSegmentID(i) for i in range(nodes.GetNumberOfSegments())]
    before = segment_statistics(segmentation, ids)
    surface = slicer.vtkSegmentationConverter.GetClosedSurfaceRepresentationName()
    segmentation.CreateClosedSurfaceRepresentation()
    nodes.SetSourceRepresentationName(surface)  # "Make source" in the Segmentations module: the labelmaps go
    after = segment_statistics(segmentation, ids)  # from labelmaps made of the surfaces, as Slicer makes them
    assert nodes.GetSourceRepresentationName() == surface
    for segment_id in ids:  # the surfaces are smoothed: T11's 2 cm^3 sliver shrinks to a quarter
        assert after[segment_id].volume_cm3 > 0.2 * before[segment_id].volume_cm3
        if before[segment_id].volume_cm3 > 10.0:
            assert after[segment_id].volume_cm3 == pytest.approx(before[segment_id].volume_cm3, rel=0.2)
            np.testing.assert_allclose(after[segment_id].centroid_ras, before[segment_id].centroid_ras, atol=2.0)
    assert [row[4] for row in segment_rows(segmentation)] == [after[i].volume_cm3 for i in ids]
    assert tag_unseen_edits(segmentation) == []  # labelmaps made from the surfaces are no edits


def test_renaming_a_vertebra_to_another_level_states_its_level_and_the_column_follows(loaded):
    logic, segmentation = loaded
    nodes = segmentation.GetSegmentation()
    before = _names(segmentation)
    l3 = nodes.GetSegmentIdBySegmentName("L3")
    nodes.GetSegment(l3).SetName("L4")  # typed in the segments table
    assert renamed_levels(segmentation) == {l3: 23}
    mapping = logic.applyRename(segmentation, l3)
    assert mapping[22] == 23 and nodes.GetSegment(l3).GetName() == "L4"
    assert segment_tag(nodes.GetSegment(l3), LABEL_TAG) == "23" and _stated_names(segmentation) == ["L4"]
    after = _names(segmentation)
    assert after[:-1] == [anatomy.vertebra_name(mapping[anatomy.verse_label(n)]) for n in before[:-1]]  # no two alike
    assert renamed_levels(segmentation) == {} and logic.applyRename(segmentation, l3) == {}
    assert logic.undoLast(segmentation) and _names(segmentation) == before  # the names the module gave


def test_a_rename_that_no_labelling_fits_is_put_back(loaded):
    logic, segmentation = loaded
    nodes = segmentation.GetSegmentation()
    before = _names(segmentation)
    l3 = nodes.GetSegmentIdBySegmentName("L3")
    nodes.GetSegment(l3).SetName("C1")  # C1 with four vertebrae below, then S
    with pytest.raises(ValueError, match="L3 cannot be C1"):
        logic.applyRename(segmentation, l3)
    assert _names(segmentation) == before and not logic.undo.available


def test_a_rename_made_while_a_correction_runs_is_not_replaced_by_its_result(loaded, ct_node, near,
                                                                             reference_folder):
    logic, segmentation = loaded
    nodes = segmentation.GetSegmentation()
    _paint(segmentation, ct_node, "L3", near(22))
    run = logic.startRerun(ct_node, segmentation, device="CPU")
    try:
        l1 = nodes.GetSegmentIdBySegmentName("L1")
        nodes.GetSegment(l1).SetName("L2")  # renamed while the correction runs
        logic.applyRename(segmentation, l1)
        renamed = _names(segmentation)
        with pytest.raises(ValueError, match="edited or renamed while the correction ran"):
            logic.applyRun(reference_folder, ct_node, segmentation)
        assert _names(segmentation) == renamed and _stated_names(segmentation) == ["L2"]
    finally:
        run.cancel()
        run.cleanup()


def test_undo_never_discards_a_later_edit_nor_restores_into_another_scenes_node(loaded, ct_node, near, scene,
                                                                                tmp_path):
    logic, segmentation = loaded
    l4 = segmentation.GetSegmentation().GetSegmentIdBySegmentName("L4")
    logic.renumber(segmentation, l4, "L5")
    _paint(segmentation, ct_node, "L3", near(21))  # painted after the renumbering
    painted = _exported(segmentation, ct_node, tmp_path / "painted.nrrd")
    with pytest.raises(ValueError, match="changed after the last correction \\(voxels of 'L3' edited"):
        logic.undoLast(segmentation)
    np.testing.assert_array_equal(_exported(segmentation, ct_node, tmp_path / "kept.nrrd"), painted)
    assert "L6" in _names(segmentation)  # nothing undone
    # the scene closes; a segmentation of the next scene gets the same node ID: the old step is not restored there
    old_id = segmentation.GetID()
    scene.Clear(0)
    fresh = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "next scene")
    assert fresh.GetID() == old_id
    assert not logic.undoLast(fresh)
    assert fresh.GetSegmentation().GetNumberOfSegments() == 0
    # what the widget's Undo button follows (correctionBlockers): the step is the old node's, not the fresh one's
    assert logic.undo.node is segmentation and not logic.undo.available_for(fresh)
    assert logic.undo.available_for(segmentation)


def test_undo_undoes_the_vertebrae_only_and_refuses_after_a_vertebra_is_removed(loaded, ct_node, near):
    """Segments that are not vertebrae are kept as they are now (before 2026-12-06: a segment added after the
    correction made Undo refuse, and a canal renamed after it got its old name back without a word)."""
    logic, segmentation = loaded
    nodes = segmentation.GetSegmentation()
    canal = nodes.AddEmptySegment("", "Spinal canal")
    nodes.GetSegment(canal).SetNameAutoGenerated(False)  # typed in the segments table
    nodes.SetSegmentIndex(canal, 0)
    logic.renumber(segmentation, nodes.GetSegmentIdBySegmentName("L4"), "L5")
    empty = nodes.AddEmptySegment("", "Segment_1")  # "Add" in the Segment Editor
    nodes.GetSegment(canal).SetName("Spinal cord")  # renamed after the renumbering
    _paint(segmentation, ct_node, "Spinal cord", near(22))
    canal_voxels = {tuple(v) for v in segment_voxels(nodes.GetSegment(canal))[0]}
    assert logic.undoLast(segmentation)  # the renumbering is undone, the person's segments stay as they are
    assert _names(segmentation) == ["Spinal cord", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "S", "Segment_1"]
    assert nodes.GetSegment(empty) is not None and not segment_voxels(nodes.GetSegment(empty))[0].size
    assert {tuple(v) for v in segment_voxels(nodes.GetSegment(canal))[0]} == canal_voxels
    assert segment_tag(nodes.GetSegment(canal), EDITED_TAG) is None
    logic.renumber(segmentation, nodes.GetSegmentIdBySegmentName("L4"), "L5")
    nodes.RemoveSegment(nodes.GetSegmentIdBySegmentName("T12"))  # the renumbered T11, removed after it
    with pytest.raises(ValueError, match="'T12' removed"):
        logic.undoLast(segmentation)
    assert "L6" in _names(segmentation) and "T12" not in _names(segmentation)  # nothing undone
    nodes.RemoveSegment(nodes.GetSegmentIdBySegmentName("L6"))  # the renumbering's L6, ...
    logic.renumber(segmentation, nodes.GetSegmentIdBySegmentName("L4"), "L3")
    nodes.RemoveSegment(canal)  # ... then the canal removed after the next correction: it stays removed
    assert logic.undoLast(segmentation) and "Spinal cord" not in _names(segmentation)
    # a copy loses the typed-or-generated flags (vtkSegment::DeepCopyMetadata); the undone vertebrae keep theirs
    made = [i for i in vertebra_ids(segmentation) if segment_tag(nodes.GetSegment(i), LABEL_TAG) is not None]
    assert made and not any(nodes.GetSegment(i).GetNameAutoGenerated() for i in made)


def test_edits_made_where_no_tracker_saw_them_are_kept_by_a_rerun(scene, ct_node, reference_folder, near, tmp_path):
    """Results saved with the scene, read back in a later session and L3 painted in the Segment Editor before the
    module was opened (audit 2026-12-06): the tracker, observing only from then on, took the painted L3 as the
    original, and Re-run replaced the edit. The voxel digest each vertebra carries (``SpineSegmentation.Voxels``)
    tags it edited."""
    made = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "vertebrae")
    _logic(scene).applyRun(reference_folder, ct_node, made)
    path = tmp_path / "vertebrae.seg.nrrd"
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(path))
    assert storage.WriteData(made) == 1
    later = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "vertebrae, a later session")
    assert storage.ReadData(later) == 1
    assert tag_unseen_edits(later) == []  # written and read back: no vertebra changed
    _paint(later, ct_node, "L3", near(22))  # the module not opened: no tracker
    logic = _logic(scene)
    logic.tracker.observe(later)
    assert [n for n in _names(later) if segment_tag(_segment(later, n), EDITED_TAG) == "true"] == ["L3"]
    run = logic.startRerun(ct_node, later, device="CPU")
    try:
        assert run.args[run.args.index("--edited") + 1] == "22" and "22" not in run.args[run.args.index("--redo") + 1]
    finally:
        run.cancel()
        run.cleanup()


def test_a_correction_of_a_segmentation_made_on_another_ct_is_refused(loaded, scene, tptbox_ct, ct_node, real_ct):
    """Two CTs loaded, the input switched to the second while the output still holds the first one's vertebrae
    (audit 2026-12-06): they were exported onto the second CT's grid as kept vertebrae, and the result reset the
    node to that CT."""
    logic, segmentation = loaded
    other = load_volume(scene, tptbox_ct, "follow-up")
    for start in (lambda: logic.startClick(other, segmentation, [0.0, 0.0, 0.0]),
                  lambda: logic.startRerun(other, segmentation)):
        with pytest.raises(ValueError, match="'vertebrae' was made on 'CT', not on 'follow-up'; choose 'CT'"):
            start()
    # a copy of the CT on its grid, and an ROI picked in Specify geometry as the reference, are no other CT
    copy = load_volume(scene, real_ct, "CT, filtered")
    role = segmentation.GetReferenceImageGeometryReferenceRole()
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "R")
    for volume, reference in ((copy, ct_node), (ct_node, roi)):
        segmentation.SetNodeReferenceID(role, reference.GetID())
        with pytest.raises(ValueError, match="no segment is marked as edited"):  # the next check: nothing edited
            logic.startRerun(volume, segmentation)


@pytest.mark.parametrize("scale, same", [(1.0005, True), (1.002, True), (1.004, False)])
def test_a_volume_is_on_the_ct_s_grid_for_corrections_as_for_loading_results_and_the_library(
        scene, ct_node, real_ct, scale, same):
    """One grid rule (``geometry.same_grid``: every voxel centre within a quarter voxel of the CT's of the same
    index): a volume whose slice spacing is 0.05 % off the 3 mm CT's (1.5 um, a float rounding of a resampled copy;
    the last of 112 slices 0.06 voxel away) or 0.2 % off (0.22 voxel) is on its grid, one 0.4 % off (0.44 voxel) is
    not, for the library, for loading results onto it and for a correction of a segmentation made on the CT. The
    correction's check compared the IJK-to-RAS matrices within 1e-3 mm, so it refused the first where loading
    accepted it."""
    image = sitk.ReadImage(str(real_ct))
    scaled = sitk.Image(image)
    scaled.SetSpacing([s * f for s, f in zip(image.GetSpacing(), (1.0, 1.0, scale))])
    assert same_grid(scaled, image) == same
    other = load_volume(scene, real_ct, "CT, resampled")
    other.SetSpacing(*[s * f for s, f in zip(ct_node.GetSpacing(), (1.0, 1.0, scale))])
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "vertebrae")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(ct_node)
    _accepted_or_refused(same, ((lambda: check_same_grid(other, ct_node, Path("labels.nii.gz")), "not on the grid"),
                                (lambda: check_made_on(segmentation, other), "was made on 'CT'")))


def _accepted_or_refused(same: bool, checks) -> None:
    """Each of ``checks`` (callable, refusal pattern) passes where ``same``, else raises ValueError matching it."""
    for check, refusal in checks:
        if same:
            check()
        else:
            with pytest.raises(ValueError, match=refusal):
                check()


@pytest.mark.parametrize("case, same", [("cosine 1e-3 off", False), ("origin rounded to 3 decimals", True),
                                        ("permuted", False)])
def test_made_on_checks_take_rounding_and_refuse_a_drift_across_the_grid(scene, case, same):
    """The "made on this CT" checks (loading results, which then copies the CT's geometry onto the labels, and a
    segmentation made on another volume) compared each element within 1e-3: on a CT of 600 slices of 1 mm with
    0.7 mm columns, a K axis turned by 1e-3 towards I (the last slice 0.6 mm = 0.86 voxel off) was accepted, an
    origin rounded to 3 decimals on a 0.3 mm grid (0.0005 mm) was refused, where the edits check
    (``grid_difference``) decides the other way both times (review 2026-12-07). Both follow the library's rule now:
    every voxel centre within a quarter voxel of the CT's of the same index; another axis order is another grid for
    them (the labels are taken index for index)."""
    from SpineSegmentationLib import geometry
    from SpineSegmentationModuleLib.mrml_import import GRID_DRIFT_TOLERANCE, grid_difference, same_voxel_grid

    assert GRID_DRIFT_TOLERANCE == geometry.GRID_DRIFT_TOLERANCE  # one rule for the module and the library
    spacing = 0.3 if case == "origin rounded to 3 decimals" else None
    columns = np.diag([spacing or 0.7, spacing or 0.7, spacing or 1.0, 1.0])
    columns[:3, 3] = [-120.0, -90.0, -300.0]
    other = columns.copy()
    if case == "cosine 1e-3 off":
        tilt = 1e-3
        other[:3, 2] = np.array([tilt, 0.0, np.sqrt(1.0 - tilt ** 2)]) * columns[2, 2]
    elif case == "origin rounded to 3 decimals":
        other[0, 3] += 5e-4
    else:  # the CT's I and J axes swapped: the same voxel centres, other indices
        other[:3, [0, 1]] = columns[:3, [1, 0]]
    ct = volume_on_grid(scene, "CT", columns, (8, 8, 600))
    labels = volume_on_grid(scene, "labels", other, (8, 8, 600))
    assert same_voxel_grid(labels, ct) == same and same_voxel_grid(ct, labels) == same
    if case != "permuted":  # the edits check (voxels resampled, any axis order) decides alike
        assert (grid_difference(other, labels.GetImageData().GetExtent(), ct) == "") == same
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "vertebrae")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(labels)
    _accepted_or_refused(same, ((lambda: check_same_grid(labels, ct, Path("labels.nii.gz")), "not on the grid"),
                                (lambda: check_made_on(segmentation, ct), "was made on 'labels'")))


def test_made_on_checks_refuse_a_drift_that_slicer_s_is_equal_takes(scene):
    """2000 slices of 0.3 mm whose K axis leans 9.9e-5 mm per slice towards I: the IJK-to-RAS matrices are equal within
    Slicer's 1e-4 per element (``vtkOrientedImageDataResample::IsEqual``), but the last slice lies 0.66 voxel off.
    ``same_voxel_grid`` took ``IsEqual`` first and accepted what the library's ``same_grid`` refuses; loading results
    then copies the CT's geometry onto the labels, moving them by 0.66 voxel (review 2026-12-07). Both refuse it."""
    from SpineSegmentationLib import geometry
    from SpineSegmentationModuleLib.mrml_import import _vtk_matrix, same_voxel_grid

    columns = np.diag([0.3, 0.3, 0.3, 1.0])
    columns[:3, 3] = [-120.0, -90.0, -300.0]
    other = columns.copy()
    other[0, 2] = 9.9e-5
    dimensions = (8, 8, 2000)
    assert slicer.vtkOrientedImageDataResample.IsEqual(_vtk_matrix(other), _vtk_matrix(columns))
    assert geometry.grid_drift(other, columns, dimensions) == pytest.approx(0.66, abs=0.01)
    ct = volume_on_grid(scene, "CT", columns, dimensions)
    labels = volume_on_grid(scene, "labels", other, dimensions)
    assert not same_voxel_grid(labels, ct) and not same_voxel_grid(ct, labels)
    # the refusal names both grids and the drift in voxels (it said "origin, spacing or axis directions differ" only:
    # review 2026-12-07)
    with pytest.raises(ValueError, match=r"not on the grid of the input volume 'CT' \(the input volume's grid: size "
                                         r"\(8, 8, 2000\), .*, axes \(1, 0, 0\), \(0, 1, 0\), \(0, 0, 1\); this one: .*"
                                         r"axes \(1, 0, 0\), \(0, 1, 0\), \(0\.00033, 0, 1\); its voxel centres "
                                         r"lie up to 0\.66 voxel from the input volume's of the same index \(at most "
                                         r"0\.25 voxel is taken\)\); load the results"):
        check_same_grid(labels, ct, Path("labels.nii.gz"))
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "vertebrae")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(labels)
    with pytest.raises(ValueError, match="was made on 'labels'"):
        check_made_on(segmentation, ct)


def _oversampled_reference_geometry(segmentation):
    """Oversample ``segmentation``'s reference geometry by 2 (Specify geometry, oversampling 2, in the Segment
    Editor) and return the new geometry (``vtkOrientedImageData``, no scalars)."""
    nodes = segmentation.GetSegmentation()
    geometry_name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    fine = slicer.vtkOrientedImageData()
    slicer.vtkSegmentationConverter.DeserializeImageGeometry(nodes.GetConversionParameter(geometry_name), fine, False)
    slicer.vtkCalculateOversamplingFactor.ApplyOversamplingOnImageGeometry(fine, 2.0)
    nodes.SetConversionParameter(geometry_name, slicer.vtkSegmentationConverter.SerializeImageGeometry(fine))
    return fine


def test_a_correction_that_would_coarsen_an_edit_on_a_finer_grid_is_refused(loaded, ct_node):
    """L3 edited on a 1.5 mm grid (Specify geometry, oversampling 2, in the Segment Editor) of the 3 mm CT: the
    correction exported it onto the CT's grid, the fine edit gone (audit 2026-12-06: 63.166 -> 63.045 cm^3)."""
    logic, segmentation = loaded
    nodes = segmentation.GetSegmentation()
    fine = _oversampled_reference_geometry(segmentation)
    fine.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    plate = vtk_to_numpy(fine.GetPointData().GetScalars()).reshape(fine.GetDimensions()[::-1])
    plate[:] = 0
    k, j, i = np.array(plate.shape) // 2
    plate[k, j - 3 : j + 3, i - 3 : i + 3] = 1  # a plate one 1.5 mm voxel thick
    fine.Modified()
    l3 = nodes.GetSegmentIdBySegmentName("L3")
    slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        fine, segmentation, l3, slicer.vtkSlicerSegmentationsModuleLogic.MODE_MERGE_MASK)
    assert segment_tag(nodes.GetSegment(l3), EDITED_TAG) == "true"
    for start in (lambda: logic.startRerun(ct_node, segmentation, device="CPU"),
                  lambda: logic.startClick(ct_node, segmentation, [0.0, 0.0, 0.0], device="CPU")):
        # the shared layer was resampled onto the fine grid: every vertebra in it counts as edited
        with pytest.raises(ValueError, match=r"the edited vertebrae T11, .*L3.* lie on another grid than the CT 'CT': "
                                             r"voxels of 1\.5 x 1\.5 x 1\.5 mm, the CT's 3 x 3 x 3 mm, e\.g\. after "
                                             r"Specify geometry"):
            start()


def test_an_edit_on_the_ct_s_voxels_in_another_axis_order_is_taken_as_it_is(loaded, ct_node, tmp_path):
    """L3 edited and stored on the CT's voxels with the axes permuted and one flipped (a label file written in
    another axis order): the grid rule compared the matrices column by column and refused the correction as "on
    another grid (3, 3, 3 mm voxels) than the CT (3, 3, 3 mm)" (review 2026-12-07). The export onto the CT's grid
    takes each of its voxels as it is, so it is accepted: the exported label map is the one before, voxel for voxel."""
    from SpineSegmentationModuleLib.correction import _check_edits_on_grid_of
    from SpineSegmentationModuleLib.mrml_import import voxel_to_world

    logic, segmentation = loaded
    before = _exported(segmentation, ct_node, tmp_path / "before.nrrd")
    ct = voxel_to_world(ct_node)
    n0, n1, n2 = ct_node.GetImageData().GetDimensions()
    turned = np.eye(4)  # voxel (i', j', k') of the turned grid is the CT's voxel (k', n1 - 1 - i', j')
    turned[:3, 0], turned[:3, 1], turned[:3, 2] = -ct[:3, 1], ct[:3, 2], ct[:3, 0]
    turned[:3, 3] = ct[:3, 3] + ct[:3, 1] * (n1 - 1)
    image = slicer.vtkOrientedImageData()
    image.SetGeometryFromImageToWorldMatrix(vtk_matrix(turned))
    image.SetDimensions(n1, n2, n0)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    l3_level = anatomy.verse_label("L3")
    values = np.transpose((before == l3_level)[:, ::-1, :], (2, 0, 1)).astype(np.uint8)  # [k', j', i']
    assert values.sum() > 1000  # L3's voxels
    vtk_to_numpy(image.GetPointData().GetScalars())[:] = values.ravel()
    image.Modified()
    l3 = _segment(segmentation, "L3")
    l3.SetLabelValue(1)
    l3.AddRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName(), image)
    l3.SetTag(EDITED_TAG, "true")
    assert np.allclose(segment_voxels(l3)[1], turned)  # L3 is on the turned grid
    assert segment_tag(l3, EDITED_TAG) == "true"
    _check_edits_on_grid_of(segmentation, ct_node)
    np.testing.assert_array_equal(_exported(segmentation, ct_node, tmp_path / "after.nrrd"), before)


def test_a_click_gets_the_made_on_refusal_and_advice_worded_for_the_widget(loaded, scene, tptbox_ct, ct_node):
    """A segmentation with a kept "Spinal canal" made on the CT, the input switched to another CT: the grid check of
    the kept segments came first and answered with script wording, "Pass another output segmentation (None: ...)"
    (review 2026-12-07); the made-on check now answers first. A kept segment on another grid of the same CT gets
    advice worded for the widget as for a script."""
    logic, segmentation = loaded
    segmentation.GetSegmentation().AddEmptySegment("", "Spinal canal")
    other = load_volume(scene, tptbox_ct, "follow-up")
    with pytest.raises(ValueError, match="'vertebrae' was made on 'CT', not on 'follow-up'; choose 'CT'"):
        logic.startClick(other, segmentation, [0.0, 0.0, 0.0])
    _oversampled_reference_geometry(segmentation)
    with pytest.raises(ValueError, match=r"keeps segments \(Spinal canal\) on another grid .* Choose another output "
                                         r"segmentation \(or none: a new one is made on the CT's grid") as refused:
        logic.startClick(ct_node, segmentation, [0.0, 0.0, 0.0])
    assert "Pass " not in str(refused.value) and "None:" not in str(refused.value)


def test_a_correction_result_that_cannot_be_applied_keeps_the_earlier_undo_step(loaded, ct_node, tmp_path):
    logic, segmentation = loaded
    logic.renumber(segmentation, segmentation.GetSegmentation().GetSegmentIdBySegmentName("L4"), "L5")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    with pytest.raises(ValueError):
        logic.applyRun(damaged, ct_node, segmentation)
    assert "L6" in _names(segmentation)  # nothing applied
    assert logic.undoLast(segmentation)  # the renumbering can still be undone
    assert _names(segmentation) == ["T11", "T12", "L1", "L2", "L3", "L4", "L5", "S"]


def test_an_edit_made_while_a_correction_runs_is_not_replaced_by_its_result(loaded, ct_node, near, reference_folder,
                                                                            tmp_path):
    logic, segmentation = loaded
    _paint(segmentation, ct_node, "L3", near(22))
    run = logic.startRerun(ct_node, segmentation, device="CPU")
    try:
        _paint(segmentation, ct_node, "L2", near(21))  # painted while the correction runs
        painted = _exported(segmentation, ct_node, tmp_path / "painted.nrrd")
        with pytest.raises(ValueError, match="edited or renamed while the correction ran"):
            logic.applyRun(reference_folder, ct_node, segmentation)  # any result made from the old segments
        np.testing.assert_array_equal(_exported(segmentation, ct_node, tmp_path / "kept.nrrd"), painted)
    finally:
        run.cancel()
        run.cleanup()


def test_click_runs_the_real_tool_with_the_point_existing_segments_and_edits(loaded, ct_node, near, verse_labels):
    logic, segmentation = loaded
    _paint(segmentation, ct_node, "L5", near(24))
    edited_voxels = {tuple(v) for v in segment_voxels(_segment(segmentation, "L5"))[0]}
    l2 = segmentation.GetSegmentation().GetSegmentIdBySegmentName("L2")
    segmentation.GetSegmentation().RemoveSegment(l2)  # a vertebra the run missed; the person clicks into it
    array = sitk.GetArrayFromImage(verse_labels)
    kji = np.argwhere(array == 21).mean(axis=0)
    lps = verse_labels.TransformContinuousIndexToPhysicalPoint([float(c) for c in kji[::-1]])
    point = [-lps[0], -lps[1], lps[2]]  # the reference L2's centroid, RAS
    run = logic.startClick(ct_node, segmentation, point, directions=("up",), device="CPU")
    args = run.args
    assert [float(v) for v in args[args.index("--point") + 1 : args.index("--point") + 4]] == pytest.approx(point)
    assert args[args.index("--directions") + 1] == "up"
    assert args[args.index("--edited") + 1] == "24"
    assert Path(args[args.index("--existing") + 1]).is_file()
    output = run.wait()  # the real correction_cli accepts the command line
    logic.applyRun(output, ct_node, segmentation)
    run.cleanup()
    edited = _edited_names(segmentation)  # the edited L5, kept voxel for voxel (its level is the labelling's)
    assert len(edited) == 1
    assert {tuple(v) for v in segment_voxels(_segment(segmentation, edited[0]))[0]} == edited_voxels
    assert len(_names(segmentation)) >= 7  # the clicked vertebra is back, the existing ones kept
    with pytest.raises(ValueError, match="three finite RAS coordinates"):
        logic.startClick(ct_node, segmentation, [1.0, float("nan"), 2.0])


def test_renumber_relabels_the_column_keeps_voxels_and_undoes(loaded, ct_node, verse_labels, tmp_path):
    logic, segmentation = loaded
    before = _exported(segmentation, ct_node, tmp_path / "before.nrrd")
    l4 = segmentation.GetSegmentation().GetSegmentIdBySegmentName("L4")
    _segment(segmentation, "L4").SetNameAutoGenerated(True)  # as a segment that Slicer named from its terminology
    _segment(segmentation, "L4").SetColorAutoGenerated(True)
    mapping = logic.renumber(segmentation, l4, "L5")  # "what you call L4 is L5"
    assert mapping == {18: 19, 19: 20, 20: 21, 21: 22, 22: 23, 23: 24, 24: 25}
    assert _names(segmentation) == ["T12", "L1", "L2", "L3", "L4", "L5", "L6", "S"]
    # names and colours set here: Slicer must not replace them from the terminology later (vtkSegment.h)
    assert not _segment(segmentation, "L5").GetNameAutoGenerated()
    assert not _segment(segmentation, "L5").GetColorAutoGenerated()
    assert segment_tag(_segment(segmentation, "L6"), LABEL_TAG) == "25"
    after = _exported(segmentation, ct_node, tmp_path / "after.nrrd")
    expected = np.where((before > 0) & (before < 26), before + 1, before)
    np.testing.assert_array_equal(after, expected)  # every vertebra shifted by one, voxels unchanged
    assert all(segment_tag(_segment(segmentation, n), EDITED_TAG) == "false" for n in _names(segmentation))
    assert _stated_names(segmentation) == ["L5"]  # the person's statement, passed on to the network steps
    points = segmentation.GetNodeReference("SpineSegmentationCentroids")
    assert [points.GetNthControlPointLabel(i) for i in range(points.GetNumberOfControlPoints())] == _names(segmentation)
    rows = segment_rows(segmentation)
    assert [r[1] for r in rows] == _names(segmentation)
    assert rows[-2][0] == "L5"  # the segment's ID stays what it was made with; its name follows the level
    assert rows[-2][4] == pytest.approx(float((before == 24).sum()) * 27.0 / 1000.0)  # L6 = the old L5, 3 mm voxels
    table = segmentation.GetNodeReference("SpineSegmentationTable")  # the results table follows the segments
    assert [table.GetCellText(r, 0) for r in range(table.GetNumberOfRows())] == _names(segmentation)
    assert [table.GetCellText(r, 1) for r in range(table.GetNumberOfRows())] == ["19", "20", "21", "22", "23", "24",
                                                                                  "25", "26"]
    assert float(table.GetCellText(6, 5)) == pytest.approx(rows[-2][4], abs=0.01)
    assert logic.undoLast(segmentation)
    np.testing.assert_array_equal(_exported(segmentation, ct_node, tmp_path / "undone.nrrd"), before)
    assert _names(segmentation) == ["T11", "T12", "L1", "L2", "L3", "L4", "L5", "S"]
    assert [table.GetCellText(r, 0) for r in range(table.GetNumberOfRows())] == _names(segmentation)
    assert _stated_names(segmentation) == []


def test_alternatives_are_ordered_and_apply_with_one_call(loaded):
    logic, segmentation = loaded
    alternatives = logic.alternatives(segmentation)
    likelihoods = [a.likelihood for a in alternatives]
    assert likelihoods == sorted(likelihoods, reverse=True)
    assert alternatives[0].labels == [18, 19, 20, 21, 22, 23, 24]  # 0.3 off: the current labels are best (0.7)
    shifted = next(a for a in alternatives if a.labels == [19, 20, 21, 22, 23, 24, 25])
    logic.applyAlternative(segmentation, shifted)
    assert _names(segmentation) == ["T12", "L1", "L2", "L3", "L4", "L5", "L6", "S"]
    assert _stated_names(segmentation) == _names(segmentation)[:-1]  # the person chose every level; not the sacrum
    l4 = segmentation.GetSegmentation().GetSegmentIdBySegmentName("L4")
    logic.renumber(segmentation, l4, "L4")  # a new statement replaces the earlier ones
    assert _stated_names(segmentation) == ["L4"]


def test_the_alternatives_list_keeps_a_stated_level(loaded):
    """The list the module shows is read from the segments' tags: after "what you call L4 is L5" each entry keeps L5
    on that vertebra; after a whole labelling was applied from it, it offers the others again."""
    logic, segmentation = loaded
    logic.renumber(segmentation, segmentation.GetSegmentation().GetSegmentIdBySegmentName("L4"), "L5")
    index = _names(segmentation).index("L5")  # the column is the segments without the sacrum, head first
    listed = logic.alternatives(segmentation)
    assert listed and all(a.labels[index] == 24 for a in listed)
    logic.applyAlternative(segmentation, listed[-1])
    assert any(a.labels[index] != listed[-1].labels[index] for a in logic.alternatives(segmentation))


def test_a_stated_level_goes_into_a_click_and_comes_back_with_its_vertebra(loaded, ct_node, verse_labels):
    """Renumbered, then a click into a vertebra the run missed: the real tool gets the stated level (``--stated``)
    and keeps it, so the person's levels hold for the kept vertebrae and the clicked one."""
    logic, segmentation = loaded
    logic.renumber(segmentation, segmentation.GetSegmentation().GetSegmentIdBySegmentName("L4"), "L5")
    stated_voxels = {tuple(v) for v in segment_voxels(_segment(segmentation, "L5"))[0]}
    segmentation.GetSegmentation().RemoveSegment(segmentation.GetSegmentation().GetSegmentIdBySegmentName("L3"))
    array = sitk.GetArrayFromImage(verse_labels)
    lps = verse_labels.TransformContinuousIndexToPhysicalPoint(
        [float(c) for c in np.argwhere(array == 21).mean(axis=0)[::-1]])  # the reference L2, now called L3
    run = logic.startClick(ct_node, segmentation, [-lps[0], -lps[1], lps[2]], directions=(), device="CPU")
    assert run.args[run.args.index("--stated") + 1] == "24"
    assert "--edited" not in run.args
    logic.applyRun(run.wait(), ct_node, segmentation)
    run.cleanup()
    # the top, the T11 sliver, may be T12 or T13 below the stated levels; the rest follows the statement
    assert _names(segmentation)[1:] == ["L1", "L2", "L3", "L4", "L5", "L6", "S"]
    assert _stated_names(segmentation) == ["L5"]
    assert {tuple(v) for v in segment_voxels(_segment(segmentation, "L5"))[0]} == stated_voxels


def test_renumbering_in_the_scene_weighs_the_ribs_and_sacrum_of_the_segments(loaded):
    """The evidence in vertebrae.json travels as segment tags into the vertebrae the module renumbers with: the
    ribs beside T12 and the sacrum below L5 make the current labelling more certain than the regressions alone."""
    logic, segmentation = loaded
    vertebrae = {v.name: v for v in vertebrae_from_segments(segmentation)}
    assert vertebrae["T12"].rib_sides == 2 and vertebrae["L1"].rib_sides == 0
    assert vertebrae["L5"].sacrum_below is True and vertebrae["T11"].rib_sides is None
    with_evidence = logic.alternatives(segmentation)[0]
    for name in _names(segmentation):
        _segment(segmentation, name).RemoveTag(RIB_SIDES_TAG)
        _segment(segmentation, name).RemoveTag(SACRUM_BELOW_TAG)
    regressions_only = logic.alternatives(segmentation)[0]
    assert with_evidence.labels == regressions_only.labels == [18, 19, 20, 21, 22, 23, 24]
    assert with_evidence.likelihood > regressions_only.likelihood + 0.1
    _segment(segmentation, "L1").SetTag(RIB_SIDES_TAG, "3")  # a tag a person mistyped
    with pytest.raises(ValueError, match="'L1'.*RibSides is '3'"):
        logic.alternatives(segmentation)


def test_levels_that_contradict_the_ribs_or_sacrum_of_the_segments_warn_and_are_applied(loaded, caplog):
    """The library warns when new levels contradict the ribs or the sacrum the run saw (``Relabeling.warnings``); the
    module dropped that warning, so a person who renamed a vertebra in Slicer heard nothing. Renumbering, a rename
    in the segments table and an applied alternative now leave the library's warnings in ``relabelWarnings`` (the
    widget's status line) and the log, and still apply the person's levels. The segments carry the example CT's
    evidence: ribs on both sides of T12, none beside L1-L4, the sacrum below L5."""
    logic, segmentation = loaded
    nodes = segmentation.GetSegmentation()

    def contradiction(warnings: list[str], *named: str) -> bool:
        return len(warnings) == 1 and warnings[0].startswith(STATED_LEVELS_CONTRADICT_WARNING) and all(
            f"{name} (" in warnings[0] for name in named)

    l4 = nodes.GetSegmentIdBySegmentName("L4")
    expected = renumber_vertebrae(vertebrae_from_segments(segmentation), 23, "L5").warnings  # T12 becomes L1
    logic.renumber(segmentation, l4, "L5")
    assert _names(segmentation) == ["T12", "L1", "L2", "L3", "L4", "L5", "L6", "S"]
    assert logic.relabelWarnings == expected  # what the library says, no more, no less
    assert logic.undoLast(segmentation)

    t11 = nodes.GetSegmentIdBySegmentName("T11")
    nodes.GetSegment(t11).SetName("C1")  # typed in the segments table: the column becomes C1-C7 above the sacrum
    assert logic.applyRename(segmentation, t11)
    assert _names(segmentation) == ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "S"]
    assert contradiction(logic.relabelWarnings, "C2")  # the ribbed T12 made a cervical vertebra
    assert f"vertebrae: {logic.relabelWarnings[0]}" in caplog.text  # logged: the node's name, then the warning
    assert logic.undoLast(segmentation)

    cervical = list(range(1, 8))  # a labelling a person may pick: C1-C7 (applyAlternative takes the labels too)
    expected = relabel_vertebrae(vertebrae_from_segments(segmentation), cervical).warnings
    logic.applyAlternative(segmentation, cervical)
    assert _names(segmentation) == ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "S"]
    assert logic.relabelWarnings == expected and contradiction(logic.relabelWarnings, "C2")
    with pytest.raises(ValueError, match="2 labels for 7 vertebrae"):
        logic.applyAlternative(segmentation, [18, 19])
    assert logic.relabelWarnings == []  # a failed step leaves no earlier warning behind
    assert logic.undoLast(segmentation)

    logic.renumber(segmentation, l4, "L4")  # the levels the run gave, now stated: nothing new to contradict
    assert _names(segmentation) == ["T11", "T12", "L1", "L2", "L3", "L4", "L5", "S"] and logic.relabelWarnings == []
    logic.applyAlternative(segmentation, logic.alternatives(segmentation)[0])
    assert logic.relabelWarnings == [] and _names(segmentation)[1] == "T12"


def test_a_regression_tag_that_is_not_a_number_counts_as_missing(loaded):
    """Earlier versions wrote "nan" into the .seg.nrrd where the node left the tag out: both now mean "use the
    level's position", as for a segment a person drew."""
    _, segmentation = loaded
    _segment(segmentation, "L2").SetTag(REGRESSED_TAG, "nan")
    _segment(segmentation, "L3").RemoveTag(REGRESSED_TAG)
    vertebrae = {v.name: v for v in vertebrae_from_segments(segmentation)}
    assert vertebrae["L2"].label_regressed == anatomy.column_position(21)
    assert vertebrae["L3"].label_regressed == anatomy.column_position(22)
    l1_tag = segment_tag(_segment(segmentation, "L1"), REGRESSED_TAG)
    assert vertebrae["L1"].label_regressed == pytest.approx(float(l1_tag))


def test_completeness_toggle_round_trips_with_its_display(loaded):
    logic, segmentation = loaded
    l2 = segmentation.GetSegmentation().GetSegmentIdBySegmentName("L2")
    display = segmentation.GetDisplayNode()
    logic.setCompleteness(segmentation, l2, False)
    assert segment_tag(_segment(segmentation, "L2"), "SpineSegmentation.Complete") == "false"
    assert display.GetSegmentOpacity2DFill(l2) == 0.0
    logic.setCompleteness(segmentation, l2, True)
    assert segment_tag(_segment(segmentation, "L2"), "SpineSegmentation.Complete") == "true"
    assert display.GetSegmentOpacity2DFill(l2) == 1.0
    assert segment_tag(_segment(segmentation, "L2"), EDITED_TAG) == "false"


def test_a_completeness_flag_that_is_not_a_bool_is_refused(loaded):
    """A script passing "no" (or "false") as ``complete`` flagged the vertebra complete: any non-empty string is
    true (audit 2026-12-07). Refused, the segment unchanged, no undo step."""
    logic, segmentation = loaded
    l2 = segmentation.GetSegmentation().GetSegmentIdBySegmentName("L2")
    before = segment_tag(_segment(segmentation, "L2"), "SpineSegmentation.Complete")
    for wrong in ("no", "false", 0, None):
        with pytest.raises(ValueError, match=r"complete must be True or False, got "):
            logic.setCompleteness(segmentation, l2, wrong)
    assert segment_tag(_segment(segmentation, "L2"), "SpineSegmentation.Complete") == before
    assert segment_tag(_segment(segmentation, "L2"), "SpineSegmentation.CompleteStated") is None
    assert not logic.undo.available
    logic.setCompleteness(segmentation, l2, np.bool_(False))  # what a numpy comparison gives
    assert segment_tag(_segment(segmentation, "L2"), "SpineSegmentation.Complete") == "false"


def test_a_correction_with_nodes_of_the_wrong_class_is_refused_before_it_starts(loaded, ct_node, scene):
    """A labelmap or nothing as the CT, a volume as the segmentation: an AttributeError from deep inside, or after
    the run (audit 2026-12-07); now a ValueError naming the class, before anything is started."""
    logic, segmentation = loaded
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    for volume in (None, labelmap, segmentation):
        with pytest.raises(ValueError, match=r"the input must be a scalar volume node .*select the CT volume"):
            logic.startClick(volume, segmentation, [0.0, 0.0, 0.0])
        with pytest.raises(ValueError, match=r"the input must be a scalar volume node"):
            logic.startRerun(volume, segmentation)
    with pytest.raises(ValueError, match=r"must be a segmentation node, not vtkMRMLScalarVolumeNode"):
        logic.startClick(ct_node, ct_node, [0.0, 0.0, 0.0])
    assert logic._sent is None  # nothing was started


def test_a_completeness_flag_a_person_set_goes_into_a_rerun(loaded, ct_node, near):
    """The toggle tags the segment ``CompleteStated``; Re-run passes the person's flags on (``--complete`` /
    ``--incomplete``, the levels of the label map sent), not the network's flags of the other segments."""
    logic, segmentation = loaded
    nodes = segmentation.GetSegmentation()
    logic.setCompleteness(segmentation, nodes.GetSegmentIdBySegmentName("L2"), False)
    logic.setCompleteness(segmentation, nodes.GetSegmentIdBySegmentName("L4"), True)
    assert [n for n in _names(segmentation)
            if segment_tag(_segment(segmentation, n), COMPLETE_STATED_TAG) == "true"] == ["L2", "L4"]
    _paint(segmentation, ct_node, "L3", near(22))
    run = logic.startRerun(ct_node, segmentation, device="CPU")
    try:
        assert run.args[run.args.index("--incomplete") + 1] == "21"
        assert run.args[run.args.index("--complete") + 1] == "23"
        sent = sitk.GetArrayFromImage(sitk.ReadImage(run.args[run.args.index("--labels") + 1]))
        assert (sent == 21).any() and (sent == 23).any()
    finally:
        run.cancel()
        run.cleanup()


def test_segment_centroids_and_volumes_match_the_reference(loaded, verse_labels):
    _, segmentation = loaded
    array = sitk.GetArrayFromImage(verse_labels)
    voxel_cm3 = float(np.prod(verse_labels.GetSpacing())) / 1000.0
    nodes = segmentation.GetSegmentation()
    ids = [nodes.GetNthSegmentID(i) for i in range(nodes.GetNumberOfSegments())]
    statistics = segment_statistics(segmentation, ids)  # every segment from one reading of the shared layer
    for segment_id in ids:
        level = anatomy.verse_label(nodes.GetSegment(segment_id).GetName())
        kji = np.argwhere(array == level)
        lps = np.array(verse_labels.TransformContinuousIndexToPhysicalPoint([float(c) for c in kji.mean(axis=0)[::-1]]))
        assert statistics[segment_id].voxels == len(kji)
        np.testing.assert_allclose(statistics[segment_id].volume_cm3, len(kji) * voxel_cm3, rtol=1e-9)
        np.testing.assert_allclose(statistics[segment_id].centroid_ras, lps * [-1, -1, 1], atol=1e-3)
    l3 = nodes.GetSegmentIdBySegmentName("L3")
    np.testing.assert_allclose(segment_centroid_ras(segmentation, l3), statistics[l3].centroid_ras)
    assert [row[4] for row in segment_rows(segmentation)] == [statistics[i].volume_cm3 for i in ids]


def test_a_segmentation_painted_while_another_is_shown_is_still_tracked(loaded, ct_node, near, scene):
    logic, segmentation = loaded
    other = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "another CT's vertebrae")
    logic.tracker.observe(other)  # the widget shows another output segmentation
    _paint(segmentation, ct_node, "L3", near(22))
    logic.tracker.observe(segmentation)  # and this one again
    assert _edited_names(segmentation) == ["L3"]
    scene.RemoveNode(other)
    logic.tracker.observe(segmentation)
    assert not logic.tracker.tracks(other) and logic.tracker.tracks(segmentation)  # a removed node is let go


def test_a_segmentation_shown_by_a_sequence_that_saves_changes_stays_tracked(loaded, ct_node, near, scene):
    """The proxy node of a sequence browser that saves changes (Sequences module) is given the vtkSegmentation object
    of each item it shows (``vtkSlicerSequencesLogic::UpdateProxyNodesFromSequences``: a shallow ``CopyContent``,
    i.e. ``vtkMRMLSegmentationNode::SetAndObserveSegmentation``, v5.6.2-v5.10.0). The tracker stayed on the old
    object, so a vertebra painted afterwards was not tagged edited (Re-run: "No vertebra is marked as edited"). It
    now follows ``SegmentationChangedEvent`` to the new object. Real Sequences classes of ``slicer-core``."""
    logic, segmentation = loaded
    sequences = slicer.vtkSlicerSequencesLogic()
    sequences.SetMRMLScene(scene)
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "vertebrae over time")
    for value in ("0", "1"):
        sequence.SetDataNodeAtValue(segmentation, value)  # two time points, each a copy of the vertebrae
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    browser.AddProxyNode(segmentation, sequence, False)  # the module's node shows the items
    browser.SetSaveChanges(sequence, True)  # a person's edits go into the item shown
    for item in (1, 0):
        before = segmentation.GetSegmentation()
        browser.SetSelectedItemNumber(item)
        sequences.UpdateProxyNodesFromSequences(browser)  # what the Sequences logic does on a new item number
        assert segmentation.GetSegmentation() is not before  # the node holds the item's own object now
        assert segmentation.GetSegmentation() is sequence.GetNthDataNode(item).GetSegmentation()
        assert logic.tracker.tracks(segmentation) and _edited_names(segmentation) == []
    _paint(segmentation, ct_node, "L3", near(22))  # the Segment Editor's way, in the object shown
    assert _edited_names(segmentation) == ["L3"]
    assert _edited_names(sequence.GetNthDataNode(0)) == ["L3"] and _edited_names(sequence.GetNthDataNode(1)) == []
    logic.tracker.stop()
    assert not segmentation.HasObserver(slicer.vtkMRMLSegmentationNode.SegmentationChangedEvent)


def test_a_replaced_segmentation_is_digested_once_and_none_is_let_go(loaded, scene, monkeypatch, capfd):
    """A node given another vtkSegmentation object (each item of a sequence playback) was digested twice, the edit
    tracker's own observer and the widget's (``_follow`` calls ``observe``) each letting go of what the other had
    just tracked; a node given no segmentation made ``observe`` call ``None.AddObserver`` (AttributeError, printed
    by VTK). The widget's observer is stood for by one that calls ``observe`` as ``_follow`` does, added after the
    tracker's as in the widget. Real Sequences classes of ``slicer-core``."""
    import SpineSegmentationModuleLib.correction as correction_module

    logic, segmentation = loaded
    sequences = slicer.vtkSlicerSequencesLogic()
    sequences.SetMRMLScene(scene)
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "vertebrae over time")
    for value in ("0", "1"):
        sequence.SetDataNodeAtValue(segmentation, value)
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    browser.AddProxyNode(segmentation, sequence, False)
    browser.SetSaveChanges(sequence, True)
    replaced = slicer.vtkMRMLSegmentationNode.SegmentationChangedEvent
    widget_tag = segmentation.AddObserver(replaced, lambda caller, event: logic.tracker.observe(caller))
    runs = []
    original = correction_module.tag_unseen_edits
    monkeypatch.setattr(correction_module, "tag_unseen_edits", lambda node: runs.append(node) or original(node))
    try:
        for item in (1, 0, 1):
            before = len(runs)
            browser.SetSelectedItemNumber(item)
            sequences.UpdateProxyNodesFromSequences(browser)
            assert segmentation.GetSegmentation() is sequence.GetNthDataNode(item).GetSegmentation()
            assert len(runs) - before == 1, f"item {item}: digested {len(runs) - before} times"
            assert logic.tracker.tracks(segmentation)
        shown = segmentation.GetSegmentation()
        capfd.readouterr()
        segmentation.SetAndObserveSegmentation(None)
        logic.tracker.observe(segmentation)  # what the widget's _follow would call
        errors = capfd.readouterr().err
        assert "Traceback" not in errors and "Error" not in errors, errors
        assert not logic.tracker.tracks(segmentation)
        assert not shown.HasObserver(slicer.vtkSegmentation.SourceRepresentationModified)  # the old object let go
    finally:
        segmentation.RemoveObserver(widget_tag)


def test_undo_keeps_the_segments_a_person_hid(loaded):
    logic, segmentation = loaded
    display = segmentation.GetDisplayNode()
    display.SetSegmentVisibility("S", False)  # hidden in the Segments table
    logic.renumber(segmentation, segmentation.GetSegmentation().GetSegmentIdBySegmentName("L4"), "L5")
    assert logic.undoLast(segmentation)
    assert not display.GetSegmentVisibility("S") and display.GetSegmentVisibility("L3")


def test_the_segment_editor_s_undo_is_not_taken_for_an_edit(loaded, ct_node, near):
    """Slicer's Segment Editor undoes a stroke with vtkSegmentationHistory, which copies whole segments back (voxels,
    names, tags) without SourceRepresentationModified; the next stroke must tag only its own segment."""
    _, segmentation = loaded
    history = slicer.vtkSegmentationHistory()
    history.SetSegmentation(segmentation.GetSegmentation())
    history.SaveState()  # the Segment Editor saves the state before each stroke
    _paint(segmentation, ct_node, "L3", near(22))
    assert _edited_names(segmentation) == ["L3"]
    history.RestorePreviousState()  # Ctrl+Z in the Segment Editor
    assert _edited_names(segmentation) == []
    _paint(segmentation, ct_node, "L1", near(20))
    assert _edited_names(segmentation) == ["L1"]


def test_a_layer_modified_in_place_tags_only_the_changed_segment_and_stop_removes_the_observer(loaded, near):
    """VTK invokes SourceRepresentationModified without a segment ID when a labelmap layer is modified in place
    (vtkSegmentation::OnSourceRepresentationModified passes the layer's ModifiedEvent call data, NULL)."""
    logic, segmentation = loaded
    l2 = _segment(segmentation, "L2")
    layer = l2.GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    dims, extent = layer.GetDimensions(), layer.GetExtent()
    values = vtk_to_numpy(layer.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0])
    k, j, i = np.argwhere(values == l2.GetLabelValue())[0]
    values[k, j, i] = 0  # one voxel of L2 erased in place, in the layer all vertebrae share
    layer.Modified()
    edited = [n for n in _names(segmentation) if segment_tag(_segment(segmentation, n), EDITED_TAG) == "true"]
    assert edited == ["L2"]
    logic.tracker.stop()
    values[k, j, i] = l2.GetLabelValue()
    layer.Modified()
    l4 = _segment(segmentation, "L4")
    k4, j4, i4 = np.argwhere(values == l4.GetLabelValue())[0]
    values[k4, j4, i4] = 0  # an in-place change once the tracker stopped: not tracked any more
    layer.Modified()
    assert segment_tag(l4, EDITED_TAG) == "false"
    assert extent == layer.GetExtent()


def test_click_point_and_row_centroid_go_through_the_parent_transforms(loaded, ct_node, scene):
    """A markups point is in world coordinates, the exported CT in the volume's own frame; the table's row click
    jumps to the segment's centroid in world coordinates."""
    logic, segmentation = loaded
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    matrix = vtk.vtkMatrix4x4()
    for row, offset in enumerate((10.0, -20.0, 30.0)):
        matrix.SetElement(row, 3, offset)
    transform.SetMatrixTransformToParent(matrix)
    for node in (ct_node, segmentation):
        node.SetAndObserveTransformNodeID(transform.GetID())
    l3 = segmentation.GetSegmentation().GetSegmentIdBySegmentName("L3")
    local = segment_centroid_ras(segmentation, l3)
    np.testing.assert_allclose(segment_centroid_world(segmentation, l3), local + [10.0, -20.0, 30.0], atol=1e-6)
    run = logic.startClick(ct_node, segmentation, [11.5, -22.0, 330.25], directions=("up",))
    args = run.args
    assert [float(v) for v in args[args.index("--point") + 1 : args.index("--point") + 4]] == \
        pytest.approx([1.5, -2.0, 300.25])
    run.cleanup()


def test_progress_text_has_no_doubled_percent_sign():
    from SpineSegmentationModuleLib.command import ProgressEvent, progress_bar_format

    text = progress_bar_format(ProgressEvent("traversal", 0.5, 3, "50% of the column, %p"))
    assert text == "traversal: vertebra 3 - 50% of the column, % p  (%p%)"


def _turned(degrees: float, scale: float = 1.0) -> np.ndarray:
    """Axes turned by ``degrees`` about the CT's K axis and ``scale`` times as long, in the CT's voxels."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return scale * np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def test_an_edit_on_a_grid_that_drifts_off_the_ct_s_across_its_extent_is_refused(scene, tmp_path):
    """The grid rule took axes within 1e-3 of the CT's voxels as the CT's, whatever the grid's size: on a 512 x 512
    slice an edit on axes 0.09 % longer and turned by 0.05 degrees (each element within 1e-3) passed, though its far
    voxels lie 0.9 voxel off the CT's (review 2026-12-07). Exported onto the CT's grid (nearest neighbour, as a
    correction does) the edit is not kept voxel for voxel: the real export gains voxels. Now refused, naming the voxel
    sizes, the turn and the drift; axes off by float noise (1e-9) still pass, the export then voxel for voxel."""
    from SpineSegmentationModuleLib.correction import _check_edits_on_grid_of, edits_off_grid

    ct = synthetic_ct(scene)
    block = np.s_[1, 100:480, 100:480]
    drifting, edited = edited_on_grid(scene, ct, _turned(0.05, 1.0009), [0, 0, 0], block)
    assert np.abs(_turned(0.05, 1.0009) - np.eye(3)).max() < 1e-3  # each element within the old tolerance
    exported = _exported(drifting, ct, tmp_path / "drifting.nrrd")
    assert int((exported != 0).sum()) != edited  # the export does not take the edit voxel for voxel
    with pytest.raises(ValueError, match=r"the edited vertebrae L3 lie on another grid than the CT 'CT': voxels of "
                                         r"0\.701 x 0\.701 x 2 mm, the CT's 0\.7 x 0\.7 x 2 mm and axes turned by "
                                         r"0\.05 degrees from the CT's: across its extent of 512 x 512 x 3 voxels "
                                         r"this adds up to 0\.91 voxel off the CT's voxel centres, e\.g\. after "
                                         r"Specify geometry"):
        _check_edits_on_grid_of(drifting, ct)
    assert edits_off_grid(drifting, ct).startswith("the edited vertebrae L3 lie on another grid")

    noise, edited = edited_on_grid(scene, ct, _turned(0.0, 1.0 + 1e-9), [0, 0, 0], block)
    _check_edits_on_grid_of(noise, ct)
    assert edits_off_grid(noise, ct) == ""
    assert int((_exported(noise, ct, tmp_path / "noise.nrrd") != 0).sum()) == edited


@pytest.mark.parametrize("axes, offset, said", [
    (np.eye(3), [0.4, 0.0, 0.0], r"the same voxel size, but its voxel centres shifted by part of a voxel \(0\.28, 0, "
                                 r"0 mm in R, A, S\) from the CT's"),
    (_turned(2.0), [0.0, 0.0, 0.0], r"the same voxel size, but its axes turned by 2 degrees from the CT's"),
    (np.eye(3) * 0.5, [0.0, 0.0, 0.0], r"voxels of 0\.35 x 0\.35 x 1 mm, the CT's 0\.7 x 0\.7 x 2 mm"),
    # the CT's spacings on other axes, not turned: was "the same voxel size, but its axes turned by 0 degrees"
    (np.diag([2.0 / 0.7, 1.0, 0.35]), [0.0, 0.0, 0.0], r"voxels of 2 x 0\.7 x 0\.7 mm, the CT's 0\.7 x 0\.7 x 2 mm"),
    # the grid's axes are the CT's K, J, I: the CT's spacings along them, not in its own order (the same numbers on
    # both sides: "voxels of 0.7 x 0.7 x 2 mm along the CT's axes, the CT's 0.7 x 0.7 x 2 mm", review 2 2026-12-07)
    (np.array([[0.0, 0.0, 2.0 / 0.7], [0.0, 1.0, 0.0], [0.35, 0.0, 0.0]]), [0.0, 0.0, 0.0],
     r"voxels of 0\.7 x 0\.7 x 2 mm, the CT's 2 x 0\.7 x 0\.7 mm along the same axes"),
])
def test_the_refusal_of_an_edit_on_another_grid_names_what_differs(scene, axes, offset, said):
    """An edit on the CT's voxel size but shifted by part of a voxel, or turned, was refused as "on another grid (3,
    3, 3 mm voxels) than the CT (3, 3, 3 mm)" (review 2026-12-07): nothing said what to fix. The refusal names the
    shift in mm, the turn in degrees, or both voxel sizes, in the one voxel-size format of the module (" x ")."""
    from SpineSegmentationModuleLib.correction import _check_edits_on_grid_of

    ct = synthetic_ct(scene, dims=(40, 40, 4))
    node, _ = edited_on_grid(scene, ct, axes, offset, np.s_[1, 10:20, 10:20])
    with pytest.raises(ValueError, match=rf"the edited vertebrae L3 lie on another grid than the CT 'CT': {said}, "
                                         r"e\.g\. after Specify geometry"):
        _check_edits_on_grid_of(node, ct)


def test_the_correction_buttons_show_the_refusal_of_edits_on_another_grid_before_a_click(scene):
    """"Segment from point" and "Re-run" were enabled with an edited vertebra on another grid than the CT, and only
    the click answered that (review 2026-12-07). Their blocker is now the refusal itself, read from the layers'
    geometry; on the CT's grid they can run."""
    import slicer_app
    from SpineSegmentationModuleLib.correction import UndoState

    slicer_app.install()
    import SpineSegmentation

    ct = synthetic_ct(scene, dims=(40, 40, 4))
    point = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", SpineSegmentation.POINT_LIST_NAME)
    point.AddControlPoint(vtk.vtkVector3d(1.0, 2.0, 3.0))
    shifted, _ = edited_on_grid(scene, ct, np.eye(3), [0.4, 0.0, 0.0], np.s_[1, 10:20, 10:20])
    with pytest.raises(ValueError) as refused:
        _logic(scene).startRerun(ct, shifted)
    said = str(refused.value)
    blockers = SpineSegmentation.correctionBlockers(ct, shifted, True, UndoState(), point)
    assert blockers["segmentFromPoint"] == blockers["rerun"] == said[:1].upper() + said[1:] + "."
    assert not blockers["placePoint"] and not blockers["renumber"]
    on_ct, _ = edited_on_grid(scene, ct, np.eye(3), [3.0, 0.0, 0.0], np.s_[1, 10:20, 10:20])
    blockers = SpineSegmentation.correctionBlockers(ct, on_ct, True, UndoState(), point)
    assert not blockers["segmentFromPoint"] and not blockers["rerun"]


def test_an_edit_whose_header_another_writer_rounded_is_on_the_ct_s_grid(scene):
    """An edited layer whose K direction cosine is 1e-6 off the CT's (a header another writer rounded to 6
    decimals) on a 512 x 512 x 600 CT was refused (1e-3 voxel at the far corner, it drifts 0.0017 voxel; review
    2026-12-07), and for good: Specify geometry with the CT, the fix the refusal names, leaves the layer as it is,
    since Slicer takes the two matrices for one geometry (``vtkOrientedImageDataResample::IsEqual``, 1e-4 per
    element) and copies its voxels index for index. Accepted, before and after Specify geometry."""
    from SpineSegmentationModuleLib.correction import _check_edits_on_grid_of, edits_off_grid
    from SpineSegmentationModuleLib.mrml_import import voxel_to_world

    ct = synthetic_ct(scene, dims=(512, 512, 600))
    axes = np.eye(3)
    axes[0, 2] = 1e-6 * 2.0 / 0.7  # the K axis' R cosine 1e-6 off (2e-6 mm per slice of 2 mm)
    node, _ = edited_on_grid(scene, ct, axes, [0, 0, 0], np.s_[300:320, 200:260, 200:260])
    assert edits_off_grid(node, ct) == ""
    _check_edits_on_grid_of(node, ct)
    specify_geometry(node, ct)
    layer = node.GetSegmentation().GetNthSegment(0).GetRepresentation(
        slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    assert np.abs(voxel_to_world(layer) - voxel_to_world(ct)).max() == pytest.approx(2e-6)  # left as it was
    assert edits_off_grid(node, ct) == ""


@pytest.mark.parametrize("axes, refused", [
    (np.diag([1.0, 1.0, 1.0 + 0.2 / 599]), ""),  # 0.2 voxel over the 600 slices
    (np.diag([1.003, 1.0, 1.0]), ""),  # 0.3 % larger, 0.19 voxel over the 64 voxels of I
    (np.diag([1.0, 1.0, 1.0 + 0.46 / 599]), "voxels of 0.7 x 0.7 x 2.002 mm, the CT's 0.7 x 0.7 x 2 mm: across its "
                                            "extent of 64 x 64 x 600 voxels this adds up to 0.46 voxel off the CT's "
                                            "voxel centres"),
])
def test_an_edit_that_drifts_less_than_a_quarter_voxel_is_exported_voxel_for_voxel(scene, tmp_path, axes, refused):
    """Slicer exports a layer onto the CT's grid with nearest neighbour, which keeps every voxel while the voxel
    centres stay within half a voxel of the CT's; the grid rule refused a drift of 1e-3 voxel across the extent, and
    axes more than 1e-3 off the CT's whatever the extent (review 2026-12-07). A K spacing that adds up to 0.2 voxel
    over 600 slices, or an I spacing 0.3 % larger over 64 voxels, is now accepted and the real export keeps the
    sparse edit voxel for voxel; 0.46 voxel is refused, saying the drift."""
    from SpineSegmentationModuleLib.correction import edits_off_grid

    ct = synthetic_ct(scene, dims=(64, 64, 600))
    block = np.s_[::7, 5:60:3, 5:60:2]  # a sparse pattern: a voxel moved shows
    node, edited = edited_on_grid(scene, ct, axes, [0, 0, 0], block)
    said = edits_off_grid(node, ct)
    if refused:
        assert said.startswith(f"the edited vertebrae L3 lie on another grid than the CT 'CT': {refused}")
        return
    assert said == ""
    expected = np.zeros((600, 64, 64), dtype=bool)
    expected[block] = True
    assert int(expected.sum()) == edited
    np.testing.assert_array_equal(_exported(node, ct, tmp_path / "drift.nrrd") != 0, expected)


def test_a_refusal_of_turned_edits_lists_voxel_sizes_only_where_they_differ(scene):
    """Voxel sizes that differ by float noise (2e-9) read the same even at 9 digits: the refusal of a turned edit
    said "voxels of 0.7 x 0.7 x 2 mm, the CT's 0.7 x 0.7 x 2 mm and axes turned by ..." (review 2026-12-07). Only
    the turn and the drift are said now."""
    from SpineSegmentationModuleLib.correction import edits_off_grid

    ct = synthetic_ct(scene)
    axes = _turned(0.05)
    axes[:, 2] *= 1.0 + 2e-9
    node, _ = edited_on_grid(scene, ct, axes, [0, 0, 0], np.s_[1, 100:480, 100:480])
    said = edits_off_grid(node, ct)
    assert said.startswith("the edited vertebrae L3 lie on another grid than the CT 'CT': axes turned by 0.05 "
                           "degrees from the CT's: across its extent of 512 x 512 x 3 voxels this adds up to 0.45 "
                           "voxel off the CT's voxel centres")
    assert "voxels of" not in said


def test_edits_under_another_transform_than_the_ct_are_refused(scene, tmp_path):
    """A segmentation of vertebrae only (no kept segment, so no transform check of the import) under a transform
    that moves it 1.05 mm (1.5 voxel) from the CT: the grid check compared its layers, in its own frame, with the
    CT's, and passed (review 2026-12-07); the export onto the CT's grid goes through the transform and does not keep
    the edit voxel for voxel. Refused, naming the transforms and the fix, in the buttons' blockers too; under the
    CT's own transform, or one that is the identity, it is accepted."""
    import slicer_app
    from SpineSegmentationModuleLib.correction import UndoState, edits_off_grid

    slicer_app.install()
    import SpineSegmentation

    ct = synthetic_ct(scene, dims=(40, 40, 4))
    block = np.s_[1:3, 10:20:3, 10:21:2]
    node, edited = edited_on_grid(scene, ct, np.eye(3), [0, 0, 0], block)
    moved = shift_transform(scene, "moved", 1.05)
    node.SetAndObserveTransformNodeID(moved.GetID())
    expected = np.zeros((4, 40, 40), dtype=bool)
    expected[block] = True
    assert not np.array_equal(_exported(node, ct, tmp_path / "moved.nrrd") != 0, expected)  # not voxel for voxel
    said = ("the segmentation 'vertebrae' with the edited vertebrae L3 is under transform 'moved' but the CT 'CT' "
            "under no transform; a correction works on the CT's grid and would move your edits by the transform "
            "between them. Harden the segmentation's transform 'moved' (Data module, Transform hierarchy tab: "
            "right-click 'vertebrae', Harden transform) to keep the edits where they are shown on the CT; then, unless "
            "that transform is a shift by whole voxels of the CT along its axes, set the segmentation's geometry to "
            "the CT (Segment Editor: Specify geometry, Source geometry: the CT, oversampling 1; this resamples the "
            "edits onto the CT's grid); removing the segmentation's transform or putting it under the CT's instead "
            "moves them relative to the CT")
    assert edits_off_grid(node, ct) == said
    with pytest.raises(ValueError) as refusal:
        _logic(scene).startRerun(ct, node)
    assert str(refusal.value) == said
    point = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", SpineSegmentation.POINT_LIST_NAME)
    point.AddControlPoint(vtk.vtkVector3d(1.0, 2.0, 3.0))
    blockers = SpineSegmentation.correctionBlockers(ct, node, True, UndoState(), point)
    assert blockers["segmentFromPoint"] == blockers["rerun"] == said[:1].upper() + said[1:] + "."

    ct.SetAndObserveTransformNodeID(moved.GetID())  # both under one transform
    assert edits_off_grid(node, ct) == ""
    np.testing.assert_array_equal(_exported(node, ct, tmp_path / "both.nrrd") != 0, expected)
    identity = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "identity")
    ct.SetAndObserveTransformNodeID(None)
    node.SetAndObserveTransformNodeID(identity.GetID())  # another transform that does not move it
    assert edits_off_grid(node, ct) == ""
    assert int((_exported(node, ct, tmp_path / "identity.nrrd") != 0).sum()) == edited


def test_the_correction_buttons_show_the_refusal_of_kept_segments_under_another_transform(scene):
    """A segmentation that keeps a segment which is no vertebra ("Spinal canal") under another transform than the
    CT: both network corrections refuse it (their result could not be applied without moving the canal,
    ``check_output_segmentation``), but "Segment from point" and "Re-run" were enabled and only the click said so
    (review 2026-12-07). Their blocker is that refusal now."""
    import slicer_app
    from SpineSegmentationModuleLib.correction import UndoState

    slicer_app.install()
    import SpineSegmentation

    ct = synthetic_ct(scene, dims=(40, 40, 4))
    node, _ = edited_on_grid(scene, ct, np.eye(3), [0, 0, 0], np.s_[1, 10:20, 10:20])
    node.GetSegmentation().GetNthSegment(0).SetTag(EDITED_TAG, "false")  # no edit: the grid check has nothing to say
    node.GetSegmentation().AddEmptySegment("", "Spinal canal")
    moved = shift_transform(scene, "moved", 3.0, axis=1)
    node.SetAndObserveTransformNodeID(moved.GetID())
    point = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", SpineSegmentation.POINT_LIST_NAME)
    point.AddControlPoint(vtk.vtkVector3d(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match=r"the segmentation 'vertebrae' is under transform 'moved' but the CT 'CT' "
                                         r"under no transform; .*\(Spinal canal\)") as refused:
        _logic(scene).startClick(ct, node, [1.0, 2.0, 3.0], device="CPU")
    said = str(refused.value)
    blockers = SpineSegmentation.correctionBlockers(ct, node, True, UndoState(), point)
    assert blockers["segmentFromPoint"] == blockers["rerun"] == said[:1].upper() + said[1:] + "."
    node.SetAndObserveTransformNodeID(None)  # the fix it names: one transform (here none) for both
    blockers = SpineSegmentation.correctionBlockers(ct, node, True, UndoState(), point)
    assert blockers["segmentFromPoint"] == ""


@pytest.mark.parametrize("under", ["segmentation", "CT"])
@pytest.mark.parametrize("mm", [1.4, 1.0])
def test_the_advice_for_kept_segments_under_another_transform_keeps_them_where_they_are_shown(scene, under, mm):
    """Kept segments ("Spinal canal") in another frame than the CT: the refusal said "Put the CT and the segmentation
    under one transform first (Transforms module; harden one if needed)", which moves the segments it protects
    (review 2026-12-07). It names the transform to harden and where to click, as the refusal of edits does; doing
    what it says keeps the segments where they are shown and lifts the refusal. Hardening a shift of 2 voxels
    (1.4 mm of 0.7 mm) leaves the segmentation on the CT's grid; one of 1.0 mm (1.43 voxels) puts it 0.3 mm off,
    refused again as another grid, so the advice names the second step, Specify geometry with the CT (the advice only
    named hardening: review 2026-12-07), which ends accepted."""
    from SpineSegmentationModuleLib.correction import segment_centroid_world
    from SpineSegmentationModuleLib.mrml_import import check_output_segmentation

    ct = synthetic_ct(scene, dims=(40, 40, 4))
    node, _ = edited_on_grid(scene, ct, np.eye(3), [0, 0, 0], np.s_[1, 10:20, 10:20])
    node.GetSegmentation().GetNthSegment(0).SetTag(EDITED_TAG, "false")
    node.GetSegmentation().AddEmptySegment("", "Spinal canal")
    moved = node if under == "segmentation" else ct
    moved.SetAndObserveTransformNodeID(shift_transform(scene, "T", mm, axis=1).GetID())
    l3 = node.GetSegmentation().GetNthSegmentID(0)
    with pytest.raises(ValueError) as refused:
        check_output_segmentation(ct, node, overwrite=True)
    said = str(refused.value)
    how = f"(Data module, Transform hierarchy tab: right-click {moved.GetName()!r}, Harden transform)"
    whose = "segmentation's" if under == "segmentation" else "CT's"
    assert f"Harden the {whose} transform 'T' {how} to keep those segments where they are shown on the CT; " in said
    specify = ("then, unless that transform is a shift by whole voxels of the CT along its axes, set the "
               "segmentation's geometry to the CT (Segment Editor: Specify geometry, Source geometry: the CT, "
               "oversampling 1; this resamples those segments onto the CT's grid)")
    assert specify in said
    assert "under one transform" not in said and said.endswith("or none: a new one)")
    where = segment_centroid_world(node, l3)
    ct_origin = np.array(ct.GetOrigin())
    ct_world = [0.0, 0.0, 0.0]
    ct.TransformPointToWorld(ct_origin.tolist(), ct_world)
    assert moved.HardenTransform()  # "Harden transform" (qSlicerDataModuleWidget::hardenTransformOnCurrentNode)
    np.testing.assert_allclose(segment_centroid_world(node, l3), where, atol=1e-9)  # not moved
    np.testing.assert_allclose(ct.GetOrigin(), ct_world, atol=1e-9)
    if mm == 1.4:  # 2 voxels: on the CT's grid
        check_output_segmentation(ct, node, overwrite=True)  # accepted
        return
    with pytest.raises(ValueError, match=r"shifted by part of a voxel \(0, [-0.]*3, 0 mm"):
        check_output_segmentation(ct, node, overwrite=True)
    specify_geometry(node, ct)  # the second step
    check_output_segmentation(ct, node, overwrite=True)  # accepted
    # resampled onto the CT's grid (nearest neighbour): within half a voxel of where it was shown
    assert np.all(np.abs(segment_centroid_world(node, l3) - where) <= 0.35 + 1e-9)


def test_kept_segments_under_a_transform_that_does_not_move_them_are_accepted(scene):
    """Kept segments under an identity transform node, or under another node with the CT's matrix: the kept-segment
    check compared transform node IDs and refused them, while the edits check accepted the same frames (two rules,
    review 2 2026-12-07). Both follow ``same_frame`` now: accepted there, refused under a transform that moves."""
    import slicer_app
    from SpineSegmentationModuleLib.correction import UndoState, edits_off_grid
    from SpineSegmentationModuleLib.mrml_import import check_output_segmentation, same_frame

    slicer_app.install()
    import SpineSegmentation

    ct = synthetic_ct(scene, dims=(40, 40, 4))
    node, _ = edited_on_grid(scene, ct, np.eye(3), [0, 0, 0], np.s_[1, 10:20, 10:20])
    node.GetSegmentation().AddEmptySegment("", "Spinal canal")
    for segmentation_transform, ct_transform in [(shift_transform(scene, "identity", 0.0), None),
                                                 (shift_transform(scene, "T2", 5.0), shift_transform(scene, "T", 5.0))]:
        node.SetAndObserveTransformNodeID(segmentation_transform.GetID())
        ct.SetAndObserveTransformNodeID(ct_transform.GetID() if ct_transform is not None else None)
        assert same_frame(node, ct) and same_frame(ct, node)
        check_output_segmentation(ct, node, overwrite=True)  # no refusal
        assert edits_off_grid(node, ct) == ""
        assert SpineSegmentation.correctionBlockers(ct, node, True, UndoState(), None)["rerun"] == ""
    ct.SetAndObserveTransformNodeID(None)  # T2 moves the segmentation by 5 mm from the CT
    assert not same_frame(node, ct)
    with pytest.raises(ValueError, match=r"the segmentation 'vertebrae' is under transform 'T2' but the CT 'CT' "
                                         r"under no transform; .*\(Spinal canal\)"):
        check_output_segmentation(ct, node, overwrite=True)


def test_edits_under_a_non_linear_transform_are_refused_without_an_error_in_the_log(scene, capfd):
    """A segmentation under a non-linear (grid) transform: the refusal asked Slicer for the matrix between the
    transforms, which logs "Failed to get transformation matrix because transform is not linear" as an error at each
    evaluation of the buttons' blockers (review 2 2026-12-07). ``same_frame`` checks ``IsTransformToWorldLinear``
    first: the refusal names the non-linear transform and nothing is logged."""
    import slicer_app
    from SpineSegmentationModuleLib.correction import UndoState, edits_off_grid

    slicer_app.install()
    import SpineSegmentation

    ct = synthetic_ct(scene, dims=(40, 40, 4))
    node, _ = edited_on_grid(scene, ct, np.eye(3), [0, 0, 0], np.s_[1, 10:20, 10:20])
    grid = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "warp")
    assert not grid.IsTransformToWorldLinear()
    node.SetAndObserveTransformNodeID(grid.GetID())
    capfd.readouterr()
    said = edits_off_grid(node, ct)
    blocker = SpineSegmentation.correctionBlockers(ct, node, True, UndoState(), None)["rerun"]
    logged = capfd.readouterr()
    assert said.startswith("the segmentation 'vertebrae' with the edited vertebrae L3 is under the non-linear "
                           "transform 'warp' but the CT 'CT' under no transform;")
    assert blocker == said[:1].upper() + said[1:] + "."
    assert "not linear" not in logged.err + logged.out and "ERR" not in logged.err + logged.out


def test_a_segmentation_and_the_ct_under_one_warp_lie_in_one_frame(scene, capfd):
    """Both nodes under one non-linear (grid) transform, each through a linear one: ``same_frame`` asked whether each
    was linear to world and refused them, though Slicer takes the transform between two nodes through their first
    common parent, where the warp cancels out (``GetTransformBetweenNodes``; review 2026-12-07). Accepted when the
    transform between them is the identity, refused when it moves (a 5 mm shift), and refused with a non-linear
    transform between either node and the warp; nothing in the log."""
    from SpineSegmentationModuleLib.correction import edits_off_grid
    from SpineSegmentationModuleLib.mrml_import import same_frame

    ct = synthetic_ct(scene, dims=(40, 40, 4))
    node, _ = edited_on_grid(scene, ct, np.eye(3), [0, 0, 0], np.s_[1, 10:20, 10:20])
    warp = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "warp")
    assert not warp.IsTransformToWorldLinear()
    for name, mm in (("T1", 0.0), ("T2", 0.0), ("moved", 5.0)):
        shift_transform(scene, name, mm).SetAndObserveTransformNodeID(warp.GetID())
    inner = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "inner warp")
    inner.SetAndObserveTransformNodeID(warp.GetID())
    capfd.readouterr()
    ct.SetAndObserveTransformNodeID(scene.GetFirstNodeByName("T1").GetID())
    for parent, same in (("T2", True), ("warp", True), ("moved", False), ("inner warp", False)):
        node.SetAndObserveTransformNodeID(scene.GetFirstNodeByName(parent).GetID())
        assert same_frame(node, ct) == same and same_frame(ct, node) == same, parent
        assert (edits_off_grid(node, ct) == "") == same, parent
        if not same:  # each named as it is: a linear transform under the warp is no non-linear one (review 2026-12-07)
            named = {"moved": "transform 'moved' (under a non-linear transform)",
                     "inner warp": "the non-linear transform 'inner warp'"}[parent]
            assert edits_off_grid(node, ct).startswith(
                f"the segmentation 'vertebrae' with the edited vertebrae L3 is under {named} but the CT 'CT' under "
                "transform 'T1' (under a non-linear transform);"), parent
    logged = capfd.readouterr()
    assert "not linear" not in logged.err + logged.out and "ERR" not in logged.err + logged.out


def test_the_advice_for_edits_apart_from_a_ct_under_a_transform_says_which_fix_keeps_them(scene):
    """A segmentation without a transform and the CT under one: the refusal said "harden or remove the
    segmentation's transform", which it has not (review 2 2026-12-07). It says that hardening the CT's transform keeps
    the edits where they are shown, then Specify geometry with the CT (the transform moves the CT's grid), and that
    putting the segmentation under the CT's transform moves them."""
    from SpineSegmentationModuleLib.correction import edits_off_grid

    ct = synthetic_ct(scene, dims=(40, 40, 4))
    node, _ = edited_on_grid(scene, ct, np.eye(3), [0, 0, 0], np.s_[1, 10:20, 10:20])
    ct.SetAndObserveTransformNodeID(shift_transform(scene, "T", 5.0).GetID())
    said = edits_off_grid(node, ct)
    assert said.endswith("Harden the CT's transform 'T' (Data module, Transform hierarchy tab: right-click 'CT', "
                         "Harden transform) to keep the edits where they are shown on the CT; then, unless that "
                         "transform is a shift by whole voxels of the CT along its axes, set the segmentation's "
                         "geometry to the CT (Segment Editor: Specify geometry, Source geometry: the CT, oversampling "
                         "1; this resamples the edits onto the CT's grid); putting the segmentation under the CT's "
                         "transform instead moves them relative to the CT")
    assert "segmentation's transform" not in said


def _warp(scene, name: str, mm: float):
    """A non-linear transform node ``name`` (a displacement grid, ``vtkMRMLGridTransformNode``) that moves everything
    within 140 mm of the origin along each axis (the grid's extent) by ``mm`` along A."""
    displacements = vtk.vtkImageData()
    displacements.SetDimensions(8, 8, 8)
    displacements.SetOrigin(-140.0, -140.0, -140.0)
    displacements.SetSpacing(40.0, 40.0, 40.0)
    displacements.AllocateScalars(vtk.VTK_DOUBLE, 3)
    vtk_to_numpy(displacements.GetPointData().GetScalars())[:] = [0.0, mm, 0.0]
    grid = slicer.vtkOrientedGridTransform()
    grid.SetDisplacementGridData(displacements)
    warp = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", name)
    warp.SetAndObserveTransformFromParent(grid)
    assert not warp.IsTransformToWorldLinear()
    return warp


@pytest.mark.parametrize("under", ["segmentation", "CT"])
def test_the_advice_for_a_warp_names_specify_geometry_where_hardening_moves_the_grid(scene, under):
    """Kept segments ("Spinal canal") and the CT apart by a non-linear transform (a warp moving 1.0 mm, 1.43 voxels,
    along A): the advice named "then, unless that transform is a shift by whole voxels ..., Specify geometry" also
    for a segmentation under the warp, whose layers keep their geometry when hardened
    (``vtkOrientedImageDataResample::TransformOrientedImage`` changes only their extent; review 2026-12-07). It names
    hardening only there, which ends accepted. A CT under the warp is resliced onto a grid whose origin is the corner
    of its warped bounds (``vtkMRMLVolumeNode::ApplyNonLinearTransform``), here 1.0 mm off: the segmentation is then
    0.3 mm off its grid, so the advice keeps the second step, which ends accepted."""
    from SpineSegmentationModuleLib.mrml_import import check_output_segmentation, voxel_to_world

    ct = synthetic_ct(scene, dims=(40, 40, 4))
    node, _ = edited_on_grid(scene, ct, np.eye(3), [0, 0, 0], np.s_[1, 10:20, 10:20])
    node.GetSegmentation().GetNthSegment(0).SetTag(EDITED_TAG, "false")
    node.GetSegmentation().AddEmptySegment("", "Spinal canal")
    moved = node if under == "segmentation" else ct
    moved.SetAndObserveTransformNodeID(_warp(scene, "warp", 1.0).GetID())
    with pytest.raises(ValueError) as refused:
        check_output_segmentation(ct, node, overwrite=True)
    said = str(refused.value)
    whose = "segmentation's" if under == "segmentation" else "CT's"
    assert (f"Harden the {whose} transform 'warp' (Data module, Transform hierarchy tab: right-click "
            f"{moved.GetName()!r}, Harden transform) to keep those segments where they are shown on the CT") in said
    ct_grid = voxel_to_world(ct)
    assert moved.HardenTransform()  # what the advice says first
    if under == "segmentation":
        assert "Specify geometry" not in said
        check_output_segmentation(ct, node, overwrite=True)  # accepted: the layers kept their grid
        return
    assert ("then, unless that transform is a shift by whole voxels of the CT along its axes, set the segmentation's "
            "geometry to the CT (Segment Editor: Specify geometry") in said
    np.testing.assert_allclose(voxel_to_world(ct)[:3, 3] - ct_grid[:3, 3], [0.0, -1.0, 0.0], atol=1e-6)
    with pytest.raises(ValueError, match=r"shifted by part of a voxel \(0, [-0.]*3, 0 mm"):
        check_output_segmentation(ct, node, overwrite=True)
    specify_geometry(node, ct)  # the second step
    check_output_segmentation(ct, node, overwrite=True)  # accepted
