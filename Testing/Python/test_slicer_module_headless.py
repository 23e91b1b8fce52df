"""The module's own classes (``SpineSegmentation.py``) run headless on the real MRML classes of ``slicer-core``,
with the minimal application namespace of ``slicer_app.py``: ``SpineSegmentationLogic`` (terminology loading,
parameter node, batch API) and the run control the widget drives (``RunControl``: Apply -> progress -> import,
Cancel, a failed start, a re-run keeping an edit), with the real command line tools in child processes and the
shipped model on the real example CT.
"""

from __future__ import annotations

import time
import types
import unittest

import numpy as np
import pytest
import SimpleITK as sitk
import vtk

import slicer_app
from mrml_helpers import (
    background_voxel_next_to,
    load_volume,
    paint,
    register_segmentation_conversion_rules,
    segment_names,
    segment_voxels,
    verse_reference,
)
from SpineSegmentationLib.terminology import TERMINOLOGY_CONTEXT_NAME

LUMBAR = {"L1", "L2", "L3", "L4", "L5"}


@pytest.fixture()
def module():
    """``import SpineSegmentation`` in the minimal application namespace, with a new ``slicer.mrmlScene``."""
    slicer_app.install()
    register_segmentation_conversion_rules()
    import SpineSegmentation

    return SpineSegmentation


def _wait(control, events=None):
    """Poll the run control as the widget's timer does until the run has ended; returns what it imported."""
    while control.running:
        results = control.poll(events.append if events is not None else None)
        if results is not None:
            return results
        time.sleep(0.05)
    return None


def _node_ids(scene) -> set[str]:
    return {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}


def test_logic_loads_the_terminology_once_with_the_slicer_5_6_api(module):
    import slicer

    module.SpineSegmentationLogic()
    module.SpineSegmentationLogic()  # a second logic finds the context loaded and does not load it again
    names = vtk.vtkStringArray()
    slicer.modules.terminologies.logic().GetLoadedTerminologyNames(names)
    assert slicer_app.vtk_string_values(names).count(TERMINOLOGY_CONTEXT_NAME) == 1


class _StartingApplication:
    """What of ``slicer.app`` the module's constructor uses (Qt's signal connection; Qt does not run here): records
    the slots connected to each signal, so that the test can emit ``startupCompleted()`` as Slicer does."""

    def __init__(self) -> None:
        self.slots: dict[str, list] = {}

    def connect(self, signal: str, slot) -> None:
        self.slots.setdefault(signal, []).append(slot)


def test_the_terminology_is_loaded_when_slicer_has_started_before_the_module_is_opened(module, monkeypatch):
    """Slicer constructs the module at startup and emits ``startupCompleted()`` before it loads a scene given on the
    command line; the module's slot loads the terminology context then, before any logic or widget exists (Slicer 5.6
    names a scene's vertebra codes only from a loaded context), and opening the module later loads it no second
    time."""
    import slicer

    application = _StartingApplication()
    monkeypatch.setattr(slicer, "app", application, raising=False)
    module.SpineSegmentation(types.SimpleNamespace())  # as Slicer's module factory does at startup
    ours = [slot for slot in application.slots["startupCompleted()"] if slot.__module__ == module.__name__]
    assert module.loadTerminology in ours
    terminologies = slicer.modules.terminologies.logic()

    def loaded() -> list[str]:
        names = vtk.vtkStringArray()
        terminologies.GetLoadedTerminologyNames(names)
        return slicer_app.vtk_string_values(names)

    assert TERMINOLOGY_CONTEXT_NAME not in loaded()
    for slot in ours:  # startupCompleted() emitted (registerSampleData, the other slot, needs the application)
        if slot is not module.registerSampleData:
            slot()
    assert loaded().count(TERMINOLOGY_CONTEXT_NAME) == 1
    module.loadTerminology()
    module.SpineSegmentationLogic()  # the module opened later
    assert loaded().count(TERMINOLOGY_CONTEXT_NAME) == 1


def test_parameter_node_keeps_no_absolute_model_path(module):
    import slicer

    logic = module.SpineSegmentationLogic()
    parameters = logic.getParameterNode()
    assert parameters.device == "auto"
    assert str(parameters.modelFolder) in ("", ".")  # empty = the shipped model; nothing of this machine is saved
    assert parameters.parameterNode.GetParameter("modelFolder") == ""
    assert logic.defaultModelDir.is_dir() and (logic.defaultModelDir / "model.json").is_file()
    assert slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLMarkupsFiducialNode") is None  # no node made on entry


def test_apply_progress_import_cancel_failed_start_and_rerun(module, real_ct, real_ct_reference, tmp_path):
    import slicer
    from SpineSegmentationModuleLib.correction import EDITED_TAG
    from SpineSegmentationModuleLib.logic import SegmentationCancelledError
    from SpineSegmentationModuleLib.mrml_import import segment_tag
    from SpineSegmentationModuleLib.run_control import RunControl

    scene = slicer.mrmlScene
    ct = load_volume(scene, real_ct, "CT")
    logic = module.SpineSegmentationLogic()
    control = RunControl()

    # Apply -> progress -> import
    events = []
    control.start(lambda: logic.startSegmentation(ct, "CPU"), lambda folder: logic.loadResults(folder, ct))
    workDir = control.run.workDir
    results = _wait(control, events)
    assert not control.running and not workDir.exists()
    fractions = [e.fraction for e in events]
    assert fractions and fractions == sorted(fractions) and any(e.vertebra for e in events)
    names = segment_names(results.segmentation_node)
    assert LUMBAR <= set(names), names
    assert results.table_node.GetNumberOfRows() == len(names)
    first = results.segmentation_node

    # Cancel: nothing is added to the scene, the process and its folder are gone
    before = _node_ids(scene)
    control.start(lambda: logic.startSegmentation(ct, "CPU"), lambda folder: logic.loadResults(folder, ct))
    run = control.run
    control.cancel()
    assert not control.running and not run.workDir.exists() and not run.running
    with pytest.raises(SegmentationCancelledError):
        run.poll()
    assert _node_ids(scene) == before

    # a correction that fails to start (no segment is marked as edited): the new node the widget made for it is
    # removed, and no import step is left behind
    made = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "for the correction")
    with pytest.raises(ValueError, match="no segment is marked as edited"):
        control.start(lambda: logic.correctionLogic.startRerun(ct, first, "CPU"),
                      lambda folder: logic.correctionLogic.applyRun(folder, ct, first), discardOnFailure=[made])
    assert not control.running and made.GetScene() is None
    assert _node_ids(scene) == before
    # ... so the next plain Apply into the same output never overwrites the user's segmentation
    user_voxels = {n: segment_voxels(first.GetSegmentation().GetSegment(first.GetSegmentation()
                                                                          .GetSegmentIdBySegmentName(n)))[0]
                   for n in names}
    control.start(lambda: logic.startSegmentation(ct, "CPU"), lambda folder: logic.loadResults(folder, ct, first))
    second = _wait(control)
    assert second.segmentation_node is not first and second.warnings
    assert segment_names(first) == names
    for n in names:
        segment = first.GetSegmentation().GetSegment(first.GetSegmentation().GetSegmentIdBySegmentName(n))
        assert np.array_equal(segment_voxels(segment)[0], user_voxels[n]), n

    # re-run keeping an edit: the person adds a voxel to L3; the re-run keeps the edited vertebra voxel for voxel
    tracker = logic.correctionLogic.tracker
    tracker.observe(first)
    reference = sitk.GetArrayFromImage(verse_reference(real_ct_reference))
    paint(first, ct, "L3", background_voxel_next_to(reference, 22))
    l3 = first.GetSegmentation().GetSegment(first.GetSegmentation().GetSegmentIdBySegmentName("L3"))
    assert segment_tag(l3, EDITED_TAG) == "true"
    edited_voxels = {tuple(v) for v in segment_voxels(l3)[0]}
    control.start(lambda: logic.correctionLogic.startRerun(ct, first, "CPU"),
                  lambda folder: logic.correctionLogic.applyRun(folder, ct, first))
    rerun = _wait(control)
    assert rerun.segmentation_node is first
    kept = [s for s in (first.GetSegmentation().GetNthSegment(i) for i in range(first.GetSegmentation()
                                                                                   .GetNumberOfSegments()))
            if segment_tag(s, EDITED_TAG) == "true"]
    assert len(kept) == 1 and {tuple(v) for v in segment_voxels(kept[0])[0]} == edited_voxels
    assert rerun.table_node.GetNumberOfRows() == len(segment_names(first))
    assert logic.correctionLogic.undoLast(first)
    assert segment_names(first) == names
    tracker.stop()


def test_a_temporary_folder_that_cannot_be_deleted_leaves_the_run_control_idle_with_a_warning(tmp_path):
    """The widget's state must go back to idle even when cleaning up fails (it stayed 'running' before)."""
    import sys

    from SpineSegmentationModuleLib.logic import SegmentationRun
    from SpineSegmentationModuleLib.run_control import RunControl
    from SpineSegmentationModuleLib.runner import ProcessRunner

    not_a_folder = tmp_path / "work"
    not_a_folder.write_text("a file where the run's folder should be: rmtree fails on it")
    control = RunControl()
    control.start(lambda: SegmentationRun(ProcessRunner(), [sys.executable, "-c", "print('done')"], None,
                                          str(tmp_path), not_a_folder, tmp_path / "out"),
                  lambda folder: folder)
    result = _wait(control)
    assert result == tmp_path / "out" and not control.running
    assert len(control.warnings) == 1 and str(not_a_folder) in control.warnings[0]


@pytest.mark.parametrize("outcome", ["imported", "failed", "import refused", "cancelled"])
def test_a_node_made_for_a_run_is_kept_only_when_the_run_s_output_is_imported(outcome, tmp_path):
    """The widget makes a new segmentation for a correction when none is selected; it used to stay behind, empty,
    after a cancelled or failed run."""
    import sys

    import slicer
    from SpineSegmentationModuleLib.logic import SegmentationProcessError, SegmentationRun
    from SpineSegmentationModuleLib.run_control import RunControl
    from SpineSegmentationModuleLib.runner import ProcessRunner

    scene = slicer.vtkMRMLScene()
    made = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "for the run")
    code = {"failed": "raise SystemExit(3)", "cancelled": "import time; time.sleep(60)"}.get(outcome, "print('done')")

    def importOutput(folder):
        if outcome == "import refused":
            raise ValueError("the output folder is damaged")
        return folder

    work = tmp_path / "work"
    work.mkdir()
    control = RunControl()
    control.start(lambda: SegmentationRun(ProcessRunner(), [sys.executable, "-c", code], None, str(tmp_path), work,
                                          tmp_path / "out"), importOutput, discardOnFailure=[made])
    if outcome == "cancelled":
        control.cancel()
    elif outcome == "imported":
        assert _wait(control) == tmp_path / "out"
    else:
        with pytest.raises((SegmentationProcessError, ValueError)):
            _wait(control)
    assert not control.running
    assert (made.GetScene() is scene) == (outcome == "imported")


def test_the_self_test_reports_a_skip_and_runs_the_next_test(module, monkeypatch):
    """Reload and Test / SelfTests call ``runTest`` with no unittest runner around it: on a Slicer without the
    Python packages the pipeline test's skip is shown, and the Cancel test still runs (before, the skip was an
    error and ended the self-test)."""
    monkeypatch.setattr(module.dependencies, "missing_packages", lambda: ["torch"])
    test = module.SpineSegmentationTest()
    ran = []
    monkeypatch.setattr(test, "test_CancelLeavesSceneUnchanged", lambda: ran.append("cancel"))
    try:
        test.runTest()
    except unittest.SkipTest as escaped:  # what Slicer's self-test counts as an error
        pytest.fail(f"runTest let the skip escape: {escaped}")
    assert ran == ["cancel"]
    assert test.displayed == ["test_ProcessExampleCT skipped: Python packages missing: torch; install them first "
                              "(open the module, press Apply)"]


def test_correction_controls_are_enabled_only_when_they_can_run_and_say_why_not(module):
    """A first-time user met every correction button enabled: Renumber with no result, Re-run with no CT, Undo with
    nothing done; each only answered with an error dialog after the click. ``correctionBlockers`` (what the widget
    enables and puts in the disabled buttons' tooltips) runs here on real MRML nodes."""
    import slicer
    from SpineSegmentationModuleLib.correction import EDITED_TAG
    from SpineSegmentationModuleLib.mrml_import import LABEL_TAG

    scene = slicer.mrmlScene
    ct = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT")
    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
    drawn = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "drawn by hand")  # a vertebra, not the module's
    # painted, so the edit tracker has tagged it edited
    drawn.GetSegmentation().GetSegment(drawn.GetSegmentation().AddEmptySegment("", "L3")).SetTag(EDITED_TAG, "true")
    result = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "result")
    result.GetSegmentation().GetSegment(result.GetSegmentation().AddEmptySegment("", "L3")).SetTag(LABEL_TAG, "22")
    blockers = module.correctionBlockers
    controls = {"placePoint", "segmentFromPoint", "rerun", "renumber", "complete", "undo"}

    nothing = blockers(None, None, False, False)
    assert set(nothing) == controls and all(nothing.values())  # nothing can run before a CT is selected
    assert nothing["placePoint"] == nothing["segmentFromPoint"] == nothing["rerun"] == (
        "Select the CT volume first (Inputs).")
    assert "press Apply first" in nothing["renumber"] and "press Apply first" in nothing["complete"]
    assert nothing["undo"].startswith("Nothing to undo")

    volumeOnly = blockers(ct, None, False, False)
    assert not volumeOnly["placePoint"] and not volumeOnly["segmentFromPoint"]
    assert "holds no vertebrae" in volumeOnly["rerun"] and "holds no vertebrae" in volumeOnly["renumber"]
    assert "holds no vertebrae" in blockers(ct, empty, True, False)["rerun"]
    byHand = blockers(ct, drawn, False, False)  # re-run takes a hand-drawn vertebra; the table lists only ours
    assert not byHand["rerun"] and "holds no vertebrae" in byHand["renumber"]

    noRow = blockers(ct, result, False, False)
    assert noRow["rerun"].startswith("No vertebra is marked as edited")  # startRerun would refuse it
    assert noRow["renumber"] == noRow["complete"] == "Select a vertebra in the Vertebrae table first."
    result.GetSegmentation().GetSegment(result.GetSegmentation().GetNthSegmentID(0)).SetTag(EDITED_TAG, "true")
    ready = blockers(ct, result, True, True)
    assert ready == dict.fromkeys(controls, "")


def test_the_shipped_model_shows_as_an_empty_model_folder_field(module):
    """Slicer keeps the shipped model's empty ``modelFolder`` as ``Path()``, written to the parameter node as ".",
    and its own ``ctkPathLineEdit`` connector showed "." in the field (and put it back when the field was cleared),
    while the field's tooltip says "leave empty for the shipped model". The widget's connector writes
    ``modelFolderText`` of the parameter; here on the parameter node as Slicer 5.6-5.10 stores it."""
    from pathlib import Path

    logic = module.SpineSegmentationLogic()
    parameters = logic.getParameterNode()
    parameters.parameterNode.SetParameter("modelFolder", str(Path()))  # what Slicer's PathSerializer writes: "."
    assert parameters.parameterNode.GetParameter("modelFolder") == "."
    assert module.modelFolderText(parameters.modelFolder) == ""
    assert module.modelFolderText(Path("")) == module.modelFolderText("") == ""
    parameters.modelFolder = logic.defaultModelDir
    assert module.modelFolderText(parameters.modelFolder) == str(logic.defaultModelDir)


def test_a_vertebra_drawn_by_hand_has_no_confidence_in_the_table_rather_than_nan(module, real_ct):
    """The table showed "nan" as the Confidence of a vertebra a person drew (no ``PLabel`` tag); the row's texts
    come from ``vertebraRowCells`` of ``segment_rows``, run here on a real segmentation painted on the real CT."""
    import slicer
    from SpineSegmentationModuleLib.correction import PLABEL_TAG, segment_rows

    ct = load_volume(slicer.mrmlScene, real_ct, "CT")
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "drawn")
    node.SetReferenceImageGeometryParameterFromVolumeNode(ct)
    segmentation = node.GetSegmentation()
    segmentation.AddEmptySegment("", "L3")
    paint(node, ct, "L3", (10, 10, 10))
    segmentation.GetSegment(segmentation.AddEmptySegment("", "L4")).SetTag(PLABEL_TAG, "0.875")
    paint(node, ct, "L4", (12, 10, 10))
    rows = {row[1]: module.vertebraRowCells(*row[1:]) for row in segment_rows(node)}
    assert rows["L3"][2] == "-" and rows["L4"][2] == "0.88"
    assert rows["L3"][0] == "L3" and rows["L3"][1] == "yes" and float(rows["L3"][3]) >= 0
