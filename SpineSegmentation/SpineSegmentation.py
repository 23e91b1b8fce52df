"""3D Slicer module "Spine Segmentation": segment, label and check completeness of every vertebra in a CT.

An adapter (STYLE.md): the CT volume node is written to a file, the ``SpineSegmentationLib`` command line
runs in a separate process (``PythonSlicer -m SpineSegmentationLib.cli segment ...``), and its output
folder becomes a segmentation (one coded segment per vertebra), a centroid point list and a results
table. The helpers live in ``SpineSegmentationModuleLib/`` (one concern per file); the method is in
``SpineSegmentationLib`` (Lessmann et al. 2019, Sekuboyina et al. 2017).
"""

import importlib.util
import logging
import math
import sys
import traceback
import unittest
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Optional

import ctk
import qt
import slicer
import vtk
from MRMLCorePython import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, Default, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from SpineSegmentationModuleLib import dependencies
from SpineSegmentationModuleLib.command import (
    DEVICES,
    ProgressEvent,
    default_model_dir,
    library_root,
    progress_bar_format,
)
from SpineSegmentationModuleLib.correction import (
    CorrectionLogic,
    UndoState,
    check_made_on,
    column_levels,
    edits_off_grid,
    holds_vertebrae,
    is_edited,
    renamed_levels,
    segment_centroid_world,
    segment_rows,
    vertebra_ids,
)
from SpineSegmentationModuleLib.logic import (
    SegmentationCancelledError,
    SegmentationProcessError,
    SegmentationRun,
    SpineSegmentationProcessLogic,
    check_linear_to_world,
)
from SpineSegmentationModuleLib.mrml_import import ImportedResults, check_output_segmentation, segment_tag
from SpineSegmentationModuleLib.run_control import RunControl
from SpineSegmentationModuleLib.runner import ProcessRunner

#: The module's terminology context (category/type codes of every vertebra), loaded into Slicer's
#: Terminologies module so that the segments' codes are listed in the terminology selector.
TERMINOLOGY_FILE = "Terminology/SegmentationCategoryTypeModifier-SpineSegmentation.term.json"
#: The example CT (TotalSegmentator's example_ct.nii.gz, Apache-2.0; ``Testing/Data/example_ct.nii.gz`` holds the
#: same bytes) as a SampleData source: pinned URL and SHA-256, downloaded once into Slicer's cache.
EXAMPLE_CT_SAMPLE = "SpineSegmentationExampleCT"
EXAMPLE_CT_URL = ("https://github.com/wasserth/TotalSegmentator/raw/0effae9d718aab0c118ce1f8982dcd16b9e32a50/"
                  "tests/reference_files/example_ct.nii.gz")
EXAMPLE_CT_SHA256 = "dbd3ae6d614d1d7ef3a46925c30c70038ed52da6b37fdd6afdc7b9b71387e3e1"
#: Name of the point list the "Place point" button fills (made when first needed, never on module entry).
POINT_LIST_NAME = "SpineSegmentation point"
#: The .ui widgets bound to the parameter node: parameter -> widget name (each widget's ``SlicerParameterName``
#: names the same parameter). Bound with ``connectParametersToGui``, whose tag ``disconnectGui`` needs: Slicer 5.6
#: and 5.8's ``connectGui`` returns None (fixed in 5.10, Slicer commit b5a65a49), so the GUI was never disconnected
#: and every module entry and scene close added another binding of the same widgets.
PARAMETER_WIDGETS = {"inputVolume": "inputSelector", "outputSegmentation": "outputSegmentationSelector",
                     "device": "deviceComboBox", "modelFolder": "modelPathLineEdit"}


def ensureLibraryImportable() -> Path:
    """Make ``import SpineSegmentationLib`` work in this Slicer process and return the folder that holds it.

    In the installed extension the package lies beside this file, which Slicer already puts on ``sys.path``;
    in a source checkout it lies one folder up, which is appended to ``sys.path`` once.
    """
    root = library_root(Path(__file__).resolve().parent)
    if importlib.util.find_spec("SpineSegmentationLib") is None:
        sys.path.append(str(root))
    return root


#
# SpineSegmentation
#


class SpineSegmentation(ScriptedLoadableModule):
    """Module description shown in Slicer (ScriptedLoadableModule, see Slicer's scripted module template)."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Spine Segmentation")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = ["Segmentations", "Markups", "Terminologies"]
        self.parent.contributors = ["SpineSegmentation contributors"]
        self.parent.helpText = _(
            "Segments every vertebra of a CT, names it by level (C1-L5, T13, L6, sacrum) and flags vertebrae "
            "that are cut by the image border (incomplete). Results: a segmentation with one SNOMED CT coded "
            "segment per vertebra, a point list of vertebra centroids and a results table. "
            "Click a row of the table to centre the slice views on that vertebra. "
            "Undo: the Segment Editor's Undo covers only the segments of the segmentation selected in it (its own "
            "history; Slicer's scene undo is off). Results this module puts into that segmentation are no undo step "
            "of their own: the next Undo there goes back to the state saved before the Segment Editor's last edit, "
            "removing the results together with that edit (Redo brings both back), and leaves the centroid point "
            "list and the results table as the module made them. Take back a correction with \"Undo last "
            "correction\"; take back a run by deleting the nodes it made."
        )
        self.parent.acknowledgementText = _(
            "Method: N. Lessmann et al., Iterative fully convolutional neural networks for automatic vertebra "
            "segmentation and identification, Medical Image Analysis 53 (2019); spine localization after "
            "A. Sekuboyina et al. (2017)."
        )
        slicer.app.connect("startupCompleted()", registerSampleData)  # as in Slicer's scripted module template
        # The terminology too, before any scene is loaded (see loadTerminology), not when the module is first opened.
        slicer.app.connect("startupCompleted()", loadTerminology)


def loadTerminology() -> None:
    """Load the module's terminology context (:data:`TERMINOLOGY_FILE`) into Slicer's Terminologies module, unless a
    context of that name is loaded already: calling it again loads nothing twice.

    Called when Slicer has started (``startupCompleted``, connected in the module's constructor as Slicer's own
    scripted modules defer work, e.g. DICOM and SampleData at v5.6.2-v5.10.0) and by the module logic. Slicer emits
    ``startupCompleted`` when the main window is first shown (without a main window: from the event loop's first
    turn), before the files given on the command line are loaded (``qSlicerApplicationHelper``: both queued, the
    command line after), so a scene loaded before the module is opened finds the context: Slicer 5.6 shows the
    vertebrae's names only for codes of a loaded context (5.8 and later also read them from the segment's
    ``TerminologyEntry`` tag). A file that cannot be loaded logs a warning (segments keep their codes).
    """
    ensureLibraryImportable()
    from SpineSegmentationLib.terminology import TERMINOLOGY_CONTEXT_NAME

    terminologiesLogic = slicer.modules.terminologies.logic()
    loaded = vtk.vtkStringArray()
    terminologiesLogic.GetLoadedTerminologyNames(loaded)  # Slicer 5.6-5.10 (IsTerminologyContextLoaded: 5.10+)
    if TERMINOLOGY_CONTEXT_NAME in {loaded.GetValue(i) for i in range(loaded.GetNumberOfValues())}:
        return
    path = Path(__file__).resolve().parent / "Resources" / TERMINOLOGY_FILE
    if terminologiesLogic.LoadTerminologyFromFile(str(path)) != TERMINOLOGY_CONTEXT_NAME:
        logging.warning(f"SpineSegmentation: the terminology file {path} could not be loaded; segments keep "
                        "their codes but Slicer's terminology selector will not list them")


def modelFolderText(folder) -> str:
    """The model-folder field's text for the ``modelFolder`` parameter: empty for the shipped model (an empty path,
    which ``pathlib`` and Slicer's own ``ctkPathLineEdit`` connector write as "."), else the folder."""
    return "" if str(folder) in ("", ".") else str(folder)


def vertebraRowCells(name: str, complete: bool, pLabel: float, volumeCm3: float) -> list[str]:
    """The texts of one row of the vertebra table (Level, Complete, Confidence, Volume (cm3)) for one
    ``segment_rows`` row: the confidence is the labelling's probability of the level (0-1), "-" for a vertebra
    without one (drawn by hand; it showed "nan")."""
    confidence = "-" if math.isnan(pLabel) else f"{pLabel:.2f}"
    return [name, _("yes") if complete else _("INCOMPLETE"), confidence, f"{volumeCm3:.1f}"]


def defaultInputVolume(scene):
    """The CT volume selected when the module is opened with none selected: the first node of ``scene`` that the CT
    selector lists, or None. The selector (``.ui``: node type ``vtkMRMLScalarVolumeNode``, ``showChildNodeTypes``
    false) lists the nodes of exactly that class that are not hidden from editors (``qMRMLSortFilterProxyModel.cxx``,
    v5.6.2-v5.10.0); labelmaps, RGB images (``vtkMRMLVectorVolumeNode``) and diffusion volumes are subclasses of it.
    One of those, or a hidden volume, was selected before: the selector showed no CT while Apply ran on that node."""
    volumes = (scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
               for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")))
    return next((node for node in volumes
                 if node.GetClassName() == "vtkMRMLScalarVolumeNode" and not node.GetHideFromEditors()), None)


def placedPoint(pointList) -> Optional[list[float]]:
    """The point "Segment from point" starts from: the last control point of ``pointList`` whose position is placed
    (``PositionDefined``; not one being placed, skipped or cleared), as [R, A, S] in mm in world coordinates; None
    when there is none (``pointList`` None or not a markups node, or no point placed)."""
    if pointList is None or not pointList.IsA("vtkMRMLMarkupsNode"):
        return None
    defined = [i for i in range(pointList.GetNumberOfControlPoints())
               if pointList.GetNthControlPointPositionStatus(i) == slicer.vtkMRMLMarkupsNode.PositionDefined]
    if not defined:
        return None
    position = [0.0, 0.0, 0.0]
    pointList.GetNthControlPointPositionWorld(defined[-1], position)
    return position


def selectedVertebra(segmentationNode, rowSegmentIds: Sequence[str], currentRow: int) -> Optional[str]:
    """The segment ID of the vertebra table's current row; None when no row is current, or when that row's segment
    is not in ``segmentationNode`` any more (deleted in the Segment Editor: Renumber and "Toggle complete" cannot
    work on it; the widget refills the table right after, ``SpineSegmentationWidget._onSegmentAddedOrRemoved``).

    Args:
        segmentationNode: the segmentation node the table shows, or None.
        rowSegmentIds: the segment ID of each row of the table, top to bottom.
        currentRow: the table's current row (-1: none).
    """
    if segmentationNode is None or not 0 <= currentRow < len(rowSegmentIds):
        return None
    segmentId = rowSegmentIds[currentRow]
    return segmentId if segmentationNode.GetSegmentation().GetSegment(segmentId) is not None else None


def alternativesEntries(correctionLogic, segmentationNode) -> tuple[list, list[tuple[str, bool]]]:
    """The labelling alternatives of the column in ``segmentationNode`` and the lines of the "Alternatives" list.

    Returns:
        (alternatives, lines): ``correctionLogic.alternatives(segmentationNode)`` (most likely first), and one
        (text, True) line per alternative, to click; when they cannot be computed (``ValueError``, e.g. two
        vertebrae with one level), no alternative and one (message, False) line that says why: shown greyed out,
        not selectable, so that it is not taken for an alternative.
    """
    try:
        alternatives = correctionLogic.alternatives(segmentationNode)
    except ValueError as error:  # shown, not raised: the list is refreshed after every change of the segments
        return [], [(_("No alternatives can be offered: {error}.").format(error=error), False)]
    return alternatives, [(f"{a.description}   ({a.likelihood:.2f})", True) for a in alternatives]


def relabelStatus(message: str, warnings: Sequence[str]) -> str:
    """The status line after a renumbering, an applied alternative or a rename in the segments table: ``message``,
    then one "WARNING: ..." line for each warning of that step (``CorrectionLogic.relabelWarnings``: levels that
    now contradict the ribs or the sacrum the run saw), as a run's warnings are shown."""
    from SpineSegmentationLib.sanity import warning_lines  # importable once a relabelling has run

    return message + warning_lines(list(warnings))


def correctionBlockers(inputVolume, segmentationNode, vertebraSelected: bool, undo: UndoState,
                       pointList, installing: bool = False) -> dict[str, str]:
    """Why each control of the "Corrections" section cannot run now, as the message its disabled control shows
    (the problem and what to do); an empty message: the control can run.

    Args:
        inputVolume: the selected CT volume node, or None.
        segmentationNode: the selected output segmentation node, or None.
        vertebraSelected: the current row of the vertebra table is a vertebra that is in the segmentation
            (:func:`selectedVertebra`).
        undo: the one-step undo of the corrections (``CorrectionLogic.undo``): Undo works on the selected
            segmentation only, and only when the last correction changed that node.
        pointList: the point list of "Place point" (``POINT_LIST_NAME``), or None; "Segment from point" needs a
            placed point in it (:func:`placedPoint`).
        installing: the required Python packages are being installed (after Apply, "Segment from point" or
            "Re-run"): no control can run until that has ended (the widget checks again then).

    Returns:
        control -> message, for "placePoint", "segmentFromPoint", "rerun", "renumber", "complete" and "undo".
    """
    # pip_install lets the application process clicks while it runs: none of them can run then
    installation = _("The required Python packages are being installed: wait until the installation has "
                     "finished.") if installing else ""
    noVolume = _("Select the CT volume first (Inputs).")
    noVertebrae = _("The output segmentation holds no vertebrae: press Apply first, or select the segmentation "
                    "of an earlier run (Outputs).")
    shown = holds_vertebrae(segmentationNode)  # the vertebrae the table lists
    selection = noVertebrae if not shown else (
        "" if vertebraSelected else _("Select a vertebra in the Vertebrae table first."))
    vertebrae = vertebra_ids(segmentationNode) if segmentationNode is not None else []
    segmentation = segmentationNode.GetSegmentation() if vertebrae else None
    otherCt = ""  # a CT under a warp, made on another CT, kept segments or edits off its grid or frame: both network
    # corrections refuse it
    if inputVolume is not None:
        try:
            # a CT under a warp (a shared one passes the frame checks): the run would refuse to export it
            check_linear_to_world(inputVolume)
            check_made_on(segmentationNode, inputVolume)
            # kept segments (not vertebrae) under another transform or on another grid: the result could not be applied
            check_output_segmentation(inputVolume, segmentationNode, overwrite=True)
            # or edited vertebrae on another grid (the layers' geometry only; a surface source is checked on click)
            offGrid = edits_off_grid(segmentationNode, inputVolume, convert=False)
            otherCt = offGrid[:1].upper() + offGrid[1:] + "." if offGrid else ""
        except ValueError as error:
            otherCt = str(error)[:1].upper() + str(error)[1:] + "."
    rerun = noVolume if inputVolume is None else noVertebrae if not vertebrae else otherCt or (
        "" if any(is_edited(segmentation.GetSegment(i)) for i in vertebrae) else
        _("No vertebra is marked as edited: correct or draw one in the Segment Editor first (Re-run keeps the "
          "edited vertebrae and segments the others again around them)."))
    fromPoint = noVolume if inputVolume is None else otherCt or ("" if placedPoint(pointList) is not None else _(
        "No point is placed: press Place point and click inside the vertebra in a view first."))
    return {
        "placePoint": installation or (noVolume if inputVolume is None else ""),
        "segmentFromPoint": installation or fromPoint,
        "rerun": installation or rerun,
        "renumber": installation or selection,
        "complete": installation or selection,
        "undo": installation or _undoBlocker(segmentationNode, undo),
    }


def _undoBlocker(segmentationNode, undo: UndoState) -> str:
    """The "undo" message of :func:`correctionBlockers`: empty when ``undo`` can put a step back into the selected
    ``segmentationNode``."""
    if undo.available_for(segmentationNode):
        return ""
    changed = undo.node
    if changed is None:
        return _("Nothing to undo: no correction was made since the scene was opened, or the last one was undone "
                 "already.")
    if changed.GetScene() is None:
        return _("Nothing to undo: the segmentation the last correction changed (\"{name}\") was removed from the "
                 "scene.").format(name=changed.GetName())
    if segmentationNode is None:
        return _("Nothing to undo here: no output segmentation is selected. The last correction changed "
                 "\"{name}\": select it as the output segmentation (Outputs) to undo it.").format(
                     name=changed.GetName())
    return _("Nothing to undo in \"{selected}\": the last correction changed \"{name}\". Select \"{name}\" as the "
             "output segmentation (Outputs) to undo it.").format(selected=segmentationNode.GetName(),
                                                                 name=changed.GetName())


def registerSampleData() -> None:
    """Add the example CT to the Sample Data module (category "SpineSegmentation")."""
    import SampleData

    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="SpineSegmentation",
        sampleName=EXAMPLE_CT_SAMPLE,
        thumbnailFileName=str(Path(__file__).resolve().parent / "Resources" / "Icons" / "SpineSegmentation.png"),
        uris=EXAMPLE_CT_URL,
        fileNames="SpineSegmentationExampleCT.nii.gz",
        checksums=f"SHA256:{EXAMPLE_CT_SHA256}",
        nodeNames=EXAMPLE_CT_SAMPLE,
    )


#
# SpineSegmentationParameterNode
#


@parameterNodeWrapper
class SpineSegmentationParameterNode:
    """The parameters of the module (bound to the .ui widgets through their SlicerParameterName).

    inputVolume - CT volume (HU) to segment.
    outputSegmentation - segmentation to fill; None = create a new one (a non-empty one is never changed).
    device - "auto" (GPU when available), "GPU" or "CPU".
    modelFolder - model folder (model.json + weights); empty = the shipped model (so that no absolute path of
        this installation is saved into scenes).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    outputSegmentation: vtkMRMLSegmentationNode
    device: Annotated[str, Choice(list(DEVICES)), Default("auto")]
    modelFolder: Path


#
# SpineSegmentationWidget
#


class SpineSegmentationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """GUI: inputs, Apply/Cancel, progress, and the vertebra table (click a row to jump to that vertebra)."""

    #: Milliseconds between two reads of the process output.
    POLL_INTERVAL_MS = 100
    #: Progress bar range (fraction 0..1 is shown with 0.1 % steps).
    PROGRESS_STEPS = 1000

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # needed for parameter node observation
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._runControl = RunControl()  # the run in progress and its import step (SpineSegmentationModuleLib)
        self._results: Optional[ImportedResults] = None
        self._rowSegmentIds: list[str] = []  # the segment ID of each row of the vertebra table (names may change)
        self._shownSegmentation = None  # the segmentation whose vertebrae the table shows
        self._renameObserved = None  # the vtkSegmentation whose segment events are observed (_follow)
        self._followedNode = None  # the segmentation node that holds it (observed for another one, _follow)
        self._segmentNames: dict[str, str] = {}  # segment ID -> its name at the last event: tells a rename apart
        self._pendingRenames: list[str] = []  # renamed segments, applied once the event reporting them has returned
        self._refreshPending = False  # segments were added or removed: the table is refilled (_onSegmentAddedOrRemoved)
        self._controlsPending = False  # voxels, their grid or frame changed: controls follow (_onGridOrFrameModified)
        self._cleanedUp = False  # cleanup() ran (Reload, closing): the callbacks deferred until then do nothing
        self._volumeObserved = None  # the input volume whose transform the controls follow (_followInputVolume)
        self._installing = False  # packages are being installed (pip_install processes GUI events meanwhile)
        self._sceneImported = False  # a scene was imported in the batch that is ending (_onSceneBatchEnded)
        self._pointListObserved = None  # the point list whose points "Segment from point" follows (_followPointList)
        # The observers of the followed segmentation (node and vtkSegmentation) and of the point list, each set in an
        # observation table of its own that is emptied to stop: VTKObservationMixin.removeObserver keeps the object
        # as a key of its table (Base/Python/slicer/util.py, v5.6.2-v5.10.0), so every segmentation and point list
        # the widget had followed stayed in memory until the widget was destroyed; removeObservers() lets go of them.
        self._segmentationObservations = VTKObservationMixin()
        self._pointListObservations = VTKObservationMixin()
        self._volumeObservations = VTKObservationMixin()
        self._pollTimer = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SpineSegmentation.ui"))
        # the .ui widget takes the panel's extra height (stretch 1; the Corrections section added below it keeps its
        # size hint, QBoxLayout): its vertebra table grows and Corrections sits right below it. A spacer at the end of
        # the .ui put Corrections at the panel's bottom, apart from the table; a stretch after Corrections left the
        # table at its size hint (about 5 rows of 24); with no stretch an open Corrections section (its list of
        # alternatives is expanding) grew into an empty box
        self.layout.addWidget(uiWidget, 1)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = SpineSegmentationLogic()

        self.ui.modelPathLineEdit.filters = ctk.ctkPathLineEdit.Dirs
        self.ui.modelPathLineEdit.toolTip = _("Model folder (model.json and weights); leave empty for the shipped "
                                              "model: {path}").format(path=self.logic.defaultModelDir)
        self.ui.progressBar.setMaximum(self.PROGRESS_STEPS)
        self.ui.progressBar.hide()
        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(self.POLL_INTERVAL_MS)
        self._pollTimer.connect("timeout()", self._onPollTimer)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.vertebraTable.connect("cellClicked(int,int)", self.onVertebraClicked)
        self._setupCorrections()

        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self._cleanedUp = True  # callbacks queued with qt.QTimer.singleShot still run and would touch deleted widgets
        self._cancelRun()
        if self.logic is not None:
            self.logic.correctionLogic.tracker.stop()  # removes its observer of the segmentation
            # the deep copy of a segmentation Undo held: the widget made on Reload has a logic of its own, and this
            # one stays alive (its hidden widgets keep their connections), so no control could use it any more
            self.logic.correctionLogic.undo.clear()
        if self._parameterNode:  # the node outlives this widget (Reload makes a new one): unbind these widgets
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
        self.removeObservers()
        self._segmentationObservations.removeObservers()
        self._pointListObservations.removeObservers()
        self._volumeObservations.removeObservers()
        self._volumeObserved = None

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        wasRunning = self._runControl.running
        self.ui.statusLabel.text = ""  # the last run's message is about the scene that closes
        self._cancelRun()  # the input volume is about to disappear
        if wasRunning:
            self.ui.statusLabel.text = "\n".join([_("Stopped: the scene was closed while the segmentation ran; "
                                                    "nothing was added."), self.ui.statusLabel.text]).strip()
        self.logic.correctionLogic.tracker.observe(None)
        self.logic.correctionLogic.undo.clear()  # a node of the next scene may get the same ID
        self.setParameterNode(None)
        self._results = None
        self._showVertebraeOf(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()
        else:
            self._updateCorrectionControls()  # the point list is gone with the scene: stop observing it

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = defaultInputVolume(slicer.mrmlScene)
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode: Optional[SpineSegmentationParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            gui = {parameter: getattr(self.ui, widget) for parameter, widget in PARAMETER_WIDGETS.items()}
            gui["modelFolder"] = self._modelFolderConnector()  # the shipped model as an empty field, not "."
            self._parameterNodeGuiTag = self._parameterNode.connectParametersToGui(gui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._checkCanApply()

    def _modelFolderConnector(self):
        """Binds the model-folder field to ``modelFolder`` as Slicer's ``ctkPathLineEdit`` connector does, except
        that the shipped model (an empty path) is an empty field, as the field's tooltip says (that connector shows
        ".", and puts it back when the field is cleared), and that the text is not rewritten while it already
        names the parameter's folder (a trailing "/" being typed)."""
        from slicer.parameterNodeWrapper import GuiConnector

        class ModelFolderConnector(GuiConnector):
            @staticmethod
            def canRepresent(widget, datatype) -> bool:
                return False  # never chosen by Slicer for other widgets: given explicitly below

            @staticmethod
            def create(widget, datatype):
                return None

            def __init__(self, widget) -> None:
                super().__init__()
                self._widget = widget

            def _connect(self) -> None:
                self._widget.currentPathChanged.connect(self.changed)

            def _disconnect(self) -> None:
                self._widget.currentPathChanged.disconnect(self.changed)

            def widget(self):
                return self._widget

            def read(self) -> Path:
                return Path(self._widget.currentPath)

            def write(self, value) -> None:
                if self.read() != Path(value):
                    self._widget.currentPath = modelFolderText(value)

        return ModelFolderConnector(self.ui.modelPathLineEdit)

    def _checkCanApply(self, caller=None, event=None) -> None:
        self._showVertebraeOf(self._parameterNode.outputSegmentation if self._parameterNode else None)
        if self._runControl.running:
            self.ui.applyButton.text = _("Cancel")
            self.ui.applyButton.toolTip = _("Stop the segmentation; nothing is added to the scene")
            self.ui.applyButton.enabled = True
        elif self._installing:
            self.ui.applyButton.text = _("Apply")
            self.ui.applyButton.toolTip = _("Installing the required Python packages...")
            self.ui.applyButton.enabled = False
        elif self._parameterNode and self._parameterNode.inputVolume:
            self.ui.applyButton.text = _("Apply")
            self.ui.applyButton.toolTip = _("Segment, label and check completeness of every vertebra")
            self.ui.applyButton.enabled = True
        else:
            self.ui.applyButton.text = _("Apply")
            self.ui.applyButton.toolTip = _("Select a CT volume first (Inputs).")
            self.ui.applyButton.enabled = False
        self._followInputVolume(self._parameterNode.inputVolume if self._parameterNode else None)
        self._updateCorrectionControls()

    def _updateCorrectionControls(self) -> None:
        """Each correction control is enabled only when it can run; a disabled one says why (its tooltip)."""
        parameters = self._parameterNode
        segmentationNode = parameters.outputSegmentation if parameters else None
        selected = selectedVertebra(segmentationNode, self._rowSegmentIds, self.ui.vertebraTable.currentRow())
        blockers = correctionBlockers(
            parameters.inputVolume if parameters else None, segmentationNode, selected is not None,
            self.logic.correctionLogic.undo, self._followPointList(), installing=self._installing)
        for name, (button, toolTip) in self._correctionControls.items():
            button.enabled = not blockers[name]
            button.toolTip = blockers[name] or toolTip
        self.alternativesList.enabled = not self._installing  # a click applies one: not while installing either

    # Run control

    def onApplyButton(self) -> None:
        """Apply starts the run; while it runs the same button cancels it."""
        if self._runControl.running:
            self._cancelRun()
            self.ui.statusLabel.text = _("Cancelled; nothing was added to the scene.")
            return
        if self._installing:
            # a click while pip runs (slicer.util.logProcessOutput processes GUI events; from v5.12.0 the modal
            # progress dialog of slicer/packaging.py keeps them from the panel): one install only
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to start the segmentation."), waitCursor=True):
            if not self._setupPythonRequirements():
                self.ui.statusLabel.text = _("The required Python packages are not installed; nothing was run.")
                return
            volume, output = self._parameterNode.inputVolume, self._parameterNode.outputSegmentation
            device, model = self._parameterNode.device, self._modelFolder()
            self._runControl.start(lambda: self.logic.startSegmentation(volume, device, model),
                                   lambda outputDir: self.logic.loadResults(outputDir, volume, output))
            self._setRunning(True)
            self._pollTimer.start()

    def _setupPythonRequirements(self) -> bool:
        """Install missing packages after the user agrees; Apply and every correction control are disabled
        meanwhile (``correctionBlockers``), and enabled again as they can run afterwards."""
        self._installing = True
        self._checkCanApply()
        try:
            return self.logic.setupPythonRequirements()
        finally:
            self._installing = False
            self._checkCanApply()

    def _modelFolder(self) -> Optional[Path]:
        folder = modelFolderText(self._parameterNode.modelFolder)
        return Path(folder) if folder else None

    def _setRunning(self, running: bool) -> None:
        self.ui.progressBar.setVisible(running)
        self.ui.progressBar.setValue(0)
        self.ui.progressBar.setFormat(_("starting...") if running else "%p%")
        for widget in (self.ui.inputsCollapsibleButton, self.ui.outputsCollapsibleButton,
                       self.ui.advancedCollapsibleButton, self._correctionsSection):
            widget.enabled = not running
        if running:
            self.ui.statusLabel.text = ""
        self._checkCanApply()

    def _onProgress(self, event: ProgressEvent) -> None:
        self.ui.progressBar.setValue(int(round(event.fraction * self.PROGRESS_STEPS)))
        self.ui.progressBar.setFormat(progress_bar_format(event))

    def _onPollTimer(self) -> None:
        """Poll the run; once it has ended, stop the timer, enable the controls and say how it ended.

        The timer is stopped before any error dialog: it kept firing while the modal dialog was open (its event loop
        runs the timer), and this slot, entered again inside the dialog, showed the run's cleanup warnings twice.
        An unexpected error is shown and logged with its traceback (``logging.error``: the application log and the
        Python console, ``qSlicerApplication::logToPythonConsole``, warnings and above, v5.6.2-v5.10.0), not raised
        on: raised from this Qt slot, PythonQt prints it with ``PyErr_Print``, which keeps it in
        ``sys.last_traceback`` with the frames it went through (e.g. a half-imported label map)."""
        control = self._runControl
        failure = None  # (status line, error dialog text, its other arguments) to show once polling has stopped
        try:
            results = control.poll(self._onProgress)
        except SegmentationCancelledError:
            results = None
            self.ui.statusLabel.text = _("Cancelled; nothing was added to the scene.")
        except (SegmentationProcessError, ValueError) as error:
            results = None
            failure = (_("Segmentation failed; see the error message."), _("Segmentation failed:") + f"\n{error}", {})
        except Exception as error:
            # anything else (memory running out in the import, a defect): said, not only written to the console
            results = None
            logging.error("SpineSegmentation: the run failed unexpectedly", exc_info=True)
            failure = (_("Segmentation failed unexpectedly; see the error message."),
                       _("Segmentation failed unexpectedly:") + f"\n{type(error).__name__}: {error}",
                       {"detailedText": traceback.format_exc()})
        if results is not None:
            try:
                self._showResults(results)
            except Exception as error:
                # the result is in the scene (imported): only the table, status or alternatives may be missing
                logging.error("SpineSegmentation: the result could not be shown", exc_info=True)
                failure = (_("The result is in the scene (segmentation {name}), but it could not be shown "
                             "completely; see the error message.").format(name=results.segmentation_node.GetName()),
                           _("The result is in the scene, but showing it failed:")
                           + f"\n{type(error).__name__}: {error}", {"detailedText": traceback.format_exc()})
        if failure is not None:
            control.cancel()  # a run still going is stopped (e.g. a progress line that cannot be shown: every tick)
        if control.running:
            return
        self._pollTimer.stop()
        self._setRunning(False)
        if failure is not None:
            self.ui.statusLabel.text = failure[0]
        self._showCleanupWarnings()
        if failure is not None:
            slicer.util.errorDisplay(failure[1], **failure[2])

    def _cancelRun(self) -> None:
        if self._runControl.running:
            self._runControl.cancel()
            if self._pollTimer is not None:
                self._pollTimer.stop()
            self._setRunning(False)
            self._showCleanupWarnings()

    def _showCleanupWarnings(self) -> None:
        if self._runControl.warnings:
            self.ui.statusLabel.text = "\n".join([self.ui.statusLabel.text, *self._runControl.warnings]).strip()

    # Results

    def _showResults(self, results: ImportedResults) -> None:
        self._results = results
        if results.segmentation_node is not self._shownSegmentation:
            self._rowSegmentIds = []  # the rows of another segmentation: none stays current
        self._shownSegmentation = results.segmentation_node  # filled below, not again by the parameter observer
        results.segmentation_node.CreateClosedSurfaceRepresentation()  # one SegmentModified per segment: before
        self._follow(results.segmentation_node)
        self._parameterNode.outputSegmentation = results.segmentation_node
        self._fillVertebraTable(results.segmentation_node)
        lines = [results.message] if results.message else []
        lines.append(_("{count} vertebrae.").format(count=len(results.vertebrae)))
        if results.incomplete:
            lines.append(_("Incomplete (cut by the image border): {names}.").format(
                names=", ".join(results.incomplete)))
        lines += results.warnings
        self.ui.statusLabel.text = "\n".join(lines)
        self._refreshAlternatives(results.segmentation_node)

    def onVertebraClicked(self, row: int, column: int) -> None:
        """Centre the slice views on the centroid of the vertebra in ``row`` (computed from its voxels, so it is
        right after renumbering, re-runs and undo too)."""
        item = self.ui.vertebraTable.item(row, 0)
        node = self._parameterNode.outputSegmentation if self._parameterNode else None
        if item is None or node is None:
            return
        segmentId = self._rowSegmentIds[row] if row < len(self._rowSegmentIds) else None
        known = segmentId is not None and node.GetSegmentation().GetSegment(segmentId) is not None
        position = segment_centroid_world(node, segmentId) if known else None  # through parent transforms
        if position is None:
            return
        slicer.modules.markups.logic().JumpSlicesToLocation(float(position[0]), float(position[1]),
                                                            float(position[2]), True)

    # Corrections: click-through, re-run keeping edits, renumbering, alternatives, completeness, undo

    def _setupCorrections(self) -> None:
        """The "Corrections" section (built in code; the logic is in SpineSegmentationModuleLib/correction.py)."""
        section = ctk.ctkCollapsibleButton()
        section.text = _("Corrections")
        section.collapsed = True
        self.layout.addWidget(section)
        form = qt.QFormLayout(section)

        self.placePointButton = qt.QPushButton(_("Place point"))
        self.placePointButton.toolTip = _("Place a point inside a vertebra that is missing or should be segmented")
        self.directionComboBox = qt.QComboBox()
        for text, value in ((_("up and down"), "up,down"), (_("up"), "up"), (_("down"), "down"),
                            (_("this vertebra only"), "")):
            self.directionComboBox.addItem(text, value)
        self.segmentFromPointButton = qt.QPushButton(_("Segment from point"))
        self.segmentFromPointButton.toolTip = _(
            "Segment the vertebra under the point, then continue in the chosen direction; existing segments are kept")
        row = qt.QHBoxLayout()
        for widget in (self.placePointButton, self.directionComboBox, self.segmentFromPointButton):
            row.addWidget(widget)
        form.addRow(_("Point:"), row)

        self.rerunButton = qt.QPushButton(_("Re-run keeping my edits"))
        self.rerunButton.toolTip = _("Segments you edited are kept exactly; every other vertebra is segmented again "
                                     "around them and the column is labelled again")
        form.addRow(self.rerunButton)

        self.levelComboBox = qt.QComboBox()
        from SpineSegmentationLib.anatomy import vertebra_name

        for label in column_levels():  # C1 ... T12, T13, L1 ... L6
            self.levelComboBox.addItem(vertebra_name(label))
        self.renumberButton = qt.QPushButton(_("Renumber"))
        self.renumberButton.toolTip = _("The vertebra selected in the table is this level; all others follow")
        row = qt.QHBoxLayout()
        row.addWidget(self.levelComboBox)
        row.addWidget(self.renumberButton)
        form.addRow(_("Selected vertebra is:"), row)

        self.alternativesList = qt.QListWidget()
        self.alternativesList.toolTip = _("Other labellings of the column that keep the levels you stated, most likely "
                                          "first; click one to apply it")
        self.alternativesList.setMaximumHeight(110)
        form.addRow(_("Alternatives:"), self.alternativesList)
        self._alternatives = []

        self.completeButton = qt.QPushButton(_("Toggle complete / incomplete"))
        self.completeButton.toolTip = _("Flag the vertebra selected in the table as completely visible or not")
        self.undoButton = qt.QPushButton(_("Undo last correction"))
        self.undoButton.toolTip = _("Put the vertebrae back as they were before the last correction (one step)")
        row = qt.QHBoxLayout()
        row.addWidget(self.completeButton)
        row.addWidget(self.undoButton)
        form.addRow(row)

        self.placePointButton.connect("clicked(bool)", self.onPlacePoint)
        self.segmentFromPointButton.connect("clicked(bool)", self.onSegmentFromPoint)
        self.rerunButton.connect("clicked(bool)", self.onRerunKeepingEdits)
        self.renumberButton.connect("clicked(bool)", self.onRenumber)
        self.alternativesList.connect("itemClicked(QListWidgetItem*)", self.onAlternativeClicked)
        self.completeButton.connect("clicked(bool)", self.onToggleComplete)
        self.undoButton.connect("clicked(bool)", self.onUndo)
        self._correctionsSection = section
        #: control name (see correctionBlockers) -> (button, its tooltip while it can run)
        self._correctionControls = {name: (button, button.toolTip) for name, button in (
            ("placePoint", self.placePointButton), ("segmentFromPoint", self.segmentFromPointButton),
            ("rerun", self.rerunButton), ("renumber", self.renumberButton), ("complete", self.completeButton),
            ("undo", self.undoButton))}
        self.ui.vertebraTable.connect("currentCellChanged(int,int,int,int)",
                                      lambda *cells: self._updateCorrectionControls())
        # "Segment from point" follows the point list: made, loaded or deleted (scene), points placed or removed
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeAddedEvent, self._onNodeAddedOrRemoved)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.NodeRemovedEvent, self._onNodeAddedOrRemoved)
        # a scene loaded, imported or batch-processed: once at its end (EndImportEvent comes before it: right before
        # when the import was not inside another batch; EndCloseEvent is onSceneEndClose's)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, self._onSceneImported)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndBatchProcessEvent, self._onSceneBatchEnded)

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def _onNodeAddedOrRemoved(self, caller, event, node) -> None:
        if caller.IsBatchProcessing():
            return  # loading, importing or closing a scene (each state includes BatchProcessState, vtkMRMLScene.h
            # v5.6.2-v5.10.0): one update at its end (_onSceneBatchEnded, onSceneEndClose), not one per node
        if node is not None and (node.IsA("vtkMRMLMarkupsNode") or node.IsA("vtkMRMLSegmentationNode")):
            self._updateCorrectionControls()  # the point list made or deleted, or the segmentation Undo belongs to

    def _onSceneImported(self, caller, event) -> None:
        self._sceneImported = True  # the parameter node is read anew at the end of the batch (_onSceneBatchEnded)

    def _onSceneBatchEnded(self, caller, event) -> None:
        self._updateCorrectionControls()  # the nodes added or removed meanwhile (_onNodeAddedOrRemoved skipped them)
        imported, self._sceneImported = self._sceneImported, False
        if imported:
            # An import (a scene loaded) copies the saved parameter node into the module's; its node references
            # change without ModifiedEvent (vtkMRMLNode::CopyReferences, vtkMRMLNode.cxx v5.6.2-v5.10.0), and Slicer's
            # wrapper keeps the node parameters it read before (_CachedParameterWrapper, parameterNodeWrapper/
            # wrapper.py): a new wrapper reads them, once the node selectors have taken the new nodes (their scene
            # model is rebuilt at this event, qMRMLSceneModel::onMRMLSceneEndBatchProcess).
            qt.QTimer.singleShot(0, self._readParameterNodeAgain)

    def _readParameterNodeAgain(self) -> None:
        if self._cleanedUp:
            return
        if self._parameterNode is not None and self.parent.isEntered:  # not shown: enter() reads it
            self.initializeParameterNode()  # the selectors, the vertebra table and the controls follow (_checkCanApply)

    def _onPointListModified(self, caller, event) -> None:
        self._updateCorrectionControls()

    def _followPointList(self):
        """The point list of "Segment from point" (or None), observed from now on in place of an earlier one."""
        node = self._pointListNode()
        if node is not None and not node.IsA("vtkMRMLMarkupsNode"):
            node = None  # another kind of node with that name: no point
        if node is not self._pointListObserved:
            # after these "Segment from point" may have become possible or impossible: a point added or removed, or
            # its position placed, cleared or skipped (vtkMRMLMarkupsNode.cxx, Slicer 5.6-5.10; none of them invokes
            # ModifiedEvent)
            events = (slicer.vtkMRMLMarkupsNode.PointAddedEvent, slicer.vtkMRMLMarkupsNode.PointRemovedEvent,
                      slicer.vtkMRMLMarkupsNode.PointModifiedEvent)
            self._pointListObservations.removeObservers()  # and lets go of the earlier list (deleted, or scene closed)
            for event in events:
                if node is not None:
                    self._pointListObservations.addObserver(node, event, self._onPointListModified)
            self._pointListObserved = node
        return node

    def _pointListNode(self, create: bool = False):
        """The point list of "Segment from point" (found by name); made only when ``create`` (never on entry)."""
        node = slicer.mrmlScene.GetFirstNodeByName(POINT_LIST_NAME)
        if node is None and create:
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", POINT_LIST_NAME)
            node.CreateDefaultDisplayNodes()
        return node

    def onPlacePoint(self) -> None:
        """Place one point: the list is made on first use and emptied, then Slicer's place mode starts."""
        node = self._pointListNode(create=True)
        node.RemoveAllControlPoints()
        markupsLogic = slicer.modules.markups.logic()
        markupsLogic.SetActiveList(node)
        markupsLogic.StartPlaceMode(False)

    def _correctionSegmentation(self, create: bool = False):
        node = self._parameterNode.outputSegmentation if self._parameterNode else None
        if node is None and create:
            volume = self._parameterNode.inputVolume
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{volume.GetName()} vertebrae")
            self._parameterNode.outputSegmentation = node
        return node

    def _selectedSegmentId(self):
        """(segmentation node, segment ID) of the table's current row; raises ValueError when none."""
        node = self._correctionSegmentation()
        row = self.ui.vertebraTable.currentRow()
        item = self.ui.vertebraTable.item(row, 0) if row >= 0 else None
        if node is None or item is None:
            raise ValueError(_("Select a vertebra in the table first."))
        segmentId = selectedVertebra(node, self._rowSegmentIds, row)
        if segmentId is None:
            raise ValueError(_("Segment {name} is not in the segmentation.").format(name=item.text()))
        return node, segmentId

    def _startCorrection(self, start) -> None:
        if self._runControl.running or self._installing:
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to start the correction."), waitCursor=True):
            if not self._setupPythonRequirements():
                self.ui.statusLabel.text = _("The required Python packages are not installed; nothing was run.")
                return
            volume = self._parameterNode.inputVolume
            if volume is None:
                raise ValueError(_("Select the CT volume first."))
            existing = self._correctionSegmentation()
            segmentation = existing if existing is not None else self._correctionSegmentation(create=True)
            correction = self.logic.correctionLogic
            try:
                self._runControl.start(lambda: start(volume, segmentation),
                                       lambda outputDir: correction.applyRun(outputDir, volume, segmentation),
                                       discardOnFailure=[] if existing is not None else [segmentation])
            finally:
                if not self._runControl.running and existing is None:
                    self._parameterNode.outputSegmentation = None  # the new node was removed again
            self._setRunning(True)
            self._pollTimer.start()

    def onSegmentFromPoint(self) -> None:
        position = placedPoint(self._pointListNode())  # the button is disabled without one (correctionBlockers)
        if position is None:
            self.ui.statusLabel.text = _("Place a point inside the vertebra first (Place point), then click again.")
            return
        directions = [d for d in str(self.directionComboBox.currentData).split(",") if d]
        device, model = self._parameterNode.device, self._modelFolder()
        self._startCorrection(lambda volume, segmentation: self.logic.correctionLogic.startClick(
            volume, segmentation, position, directions, device, model))

    def onRerunKeepingEdits(self) -> None:
        device, model = self._parameterNode.device, self._modelFolder()
        self._startCorrection(lambda volume, segmentation: self.logic.correctionLogic.startRerun(
            volume, segmentation, device, model))

    def onRenumber(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Renumbering failed."), waitCursor=True):
            node, segmentId = self._selectedSegmentId()
            correction = self.logic.correctionLogic
            correction.renumber(node, segmentId, self.levelComboBox.currentText)
            self._refreshFromSegments(node, relabelStatus(_(
                "Renumbered: the selected vertebra is {level}; clicks and re-runs keep this level.").format(
                    level=self.levelComboBox.currentText), correction.relabelWarnings))

    def onAlternativeClicked(self, item) -> None:
        index = self.alternativesList.row(item)
        node = self._correctionSegmentation()
        if node is None or not 0 <= index < len(self._alternatives):
            return
        with slicer.util.tryWithErrorDisplay(_("Applying the labelling failed."), waitCursor=True):
            alternative = self._alternatives[index]
            correction = self.logic.correctionLogic
            correction.applyAlternative(node, alternative)
            self._refreshFromSegments(node, relabelStatus(_(
                "Applied: {description}; clicks and re-runs keep these levels.").format(
                    description=alternative.description), correction.relabelWarnings))

    def onToggleComplete(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Changing the completeness failed.")):
            node, segmentId = self._selectedSegmentId()
            segment = node.GetSegmentation().GetSegment(segmentId)
            complete = segment_tag(segment, "SpineSegmentation.Complete") != "false"
            self.logic.correctionLogic.setCompleteness(node, segmentId, not complete)
            self._refreshFromSegments(node)

    def onUndo(self) -> None:
        node = self._correctionSegmentation()
        with slicer.util.tryWithErrorDisplay(_("Undo failed."), waitCursor=True):
            if node is not None and self.logic.correctionLogic.undoLast(node):
                self._refreshFromSegments(node, _("The last correction was undone."))
            else:
                self.ui.statusLabel.text = _("Nothing to undo.")

    def _showVertebraeOf(self, segmentationNode) -> None:
        """Table, alternatives and edit tracking follow the output segmentation that is selected (one reloaded with a
        scene, or another picked in the selector), not only the last run's; cleared for one without our vertebrae."""
        if segmentationNode is self._shownSegmentation:
            return
        self._shownSegmentation = segmentationNode
        if holds_vertebrae(segmentationNode):
            self._follow(segmentationNode)
            self._rowSegmentIds = []  # the rows of another segmentation: none stays current
            self._refreshFromSegments(segmentationNode)
            return
        self._follow(None)
        self._rowSegmentIds = []
        self.ui.vertebraTable.setRowCount(0)
        self._alternatives = []
        self.alternativesList.clear()

    def _follow(self, segmentationNode) -> None:
        """Track voxel edits (``EditTracker``), and the renames, additions and removals of ``segmentationNode``'s
        segments (None: stop watching these). A vertebra renamed to another level in the segments table states its
        level (``CorrectionLogic.applyRename``); one added or removed refills the table. When the node is given
        another vtkSegmentation object (``SegmentationChangedEvent``: a sequence browser that saves changes into
        the node as its proxy, at each item), the observers follow to that one (``_onSegmentationReplaced``)."""
        if segmentationNode is not None:  # earlier ones stay tracked until the scene closes
            self.logic.correctionLogic.tracker.observe(segmentationNode)
        replaced = slicer.vtkMRMLSegmentationNode.SegmentationChangedEvent
        observations = self._segmentationObservations
        observations.removeObservers()  # of the node and vtkSegmentation followed so far, and lets go of both
        self._followedNode = segmentationNode
        if segmentationNode is not None:
            observations.addObserver(segmentationNode, replaced, self._onSegmentationReplaced)
            # its transform set, removed, hardened or changed: a refusal of edits or kept segments in another frame
            # than the CT's may no longer hold (vtkMRMLTransformableNode.cxx invokes only this, v5.6.2-v5.10.0)
            observations.addObserver(segmentationNode, slicer.vtkMRMLTransformableNode.TransformModifiedEvent,
                                     self._onGridOrFrameModified)
        # a vertebra deleted or added (Segment Editor, or its Undo): the table, alternatives and controls follow;
        # vtkSegmentation.cxx invokes both with the segment ID at v5.6.2-v5.10.0 (the node forwards them, but only
        # once, without the ID, at the end of a StartModify/EndModify block)
        # and the voxels or the grid of a segment changed (a paint stroke, Specify geometry: a refusal of edits on
        # another grid may no longer hold, and the tag it changes stays unchanged, so no SegmentModified follows);
        # the event is named so at v5.6.2-v5.10.0 (MasterRepresentationModified before Slicer 5.4)
        segmentEvents = ((slicer.vtkSegmentation.SegmentModified, self._onSegmentModified),
                         (slicer.vtkSegmentation.SegmentAdded, self._onSegmentAddedOrRemoved),
                         (slicer.vtkSegmentation.SegmentRemoved, self._onSegmentAddedOrRemoved),
                         (slicer.vtkSegmentation.SourceRepresentationModified, self._onGridOrFrameModified))
        self._renameObserved = segmentationNode.GetSegmentation() if segmentationNode is not None else None
        self._pendingRenames = []
        self._rememberNames()
        if self._renameObserved is not None:
            for event, method in segmentEvents:
                observations.addObserver(self._renameObserved, event, method)

    def _onSegmentationReplaced(self, caller, event) -> None:
        """The followed node holds another vtkSegmentation object (the old one is no longer shown or edited):
        renames, additions, removals and voxel edits are observed on the new one, and the table shows its segments."""
        if caller is not self._followedNode or caller.GetSegmentation() is None:
            return  # None: nothing to observe or show (the edit tracker lets the old object go)
        self._follow(caller)  # the tracker digests the new object once (EditTracker._on_segmentation_replaced)
        if caller is self._shownSegmentation:
            self._onSegmentAddedOrRemoved(caller, event)  # the table once the change has ended (each sequence item)

    def _rememberNames(self) -> None:
        """The names a later SegmentModified is compared with (also after the module's own changes: its Undo
        brings segments back without SegmentModified)."""
        segmentation = self._renameObserved
        self._segmentNames = {} if segmentation is None else {
            segmentation.GetNthSegmentID(i): segmentation.GetNthSegment(i).GetName()
            for i in range(segmentation.GetNumberOfSegments())}

    @vtk.calldata_type(vtk.VTK_STRING)
    def _onSegmentModified(self, caller, event, segmentId) -> None:
        """A segment's name or tags changed (vtkSegmentation.cxx invokes SegmentModified with its ID)."""
        segment = caller.GetSegment(segmentId) if segmentId else None
        if segment is None:
            return
        self._updateCorrectionControls()  # e.g. the edit tracker tagged a vertebra edited: Re-run can run now
        before, name = self._segmentNames.get(segmentId), segment.GetName()
        self._segmentNames[segmentId] = name
        if before is None or name == before or self.logic.correctionLogic.tracker.suspending:
            return  # a new segment, not a rename, or the module's own relabelling
        if segmentId not in self._pendingRenames and segmentId in renamed_levels(self._shownSegmentation):
            self._pendingRenames.append(segmentId)  # relabelling now would modify segments inside this event
            qt.QTimer.singleShot(0, self._applyRenames)

    def _onSegmentAddedOrRemoved(self, caller, event) -> None:
        """A segment was added or removed: the table is refilled once the change has ended (an Undo in the Segment
        Editor adds and removes every segment, one event each)."""
        if not self._refreshPending:
            self._refreshPending = True
            qt.QTimer.singleShot(0, self._refreshShownSegmentation)

    def _followInputVolume(self, volume) -> None:
        """Observe the transform of the input volume ``volume`` (None: none) in place of an earlier volume's: the
        CT's frame decides whether edits or kept segments under a transform are refused (``correctionBlockers``)."""
        if volume is self._volumeObserved:
            return
        self._volumeObservations.removeObservers()  # and lets go of the earlier volume
        if volume is not None:
            self._volumeObservations.addObserver(volume, slicer.vtkMRMLTransformableNode.TransformModifiedEvent,
                                                 self._onGridOrFrameModified)
        self._volumeObserved = volume

    def _onGridOrFrameModified(self, caller, event) -> None:
        """The voxels or the grid of a segment changed (each paint stroke, Specify geometry), or the transform of the
        followed segmentation or of the input volume (set, removed, hardened, changed): the correction controls read
        them again once the change has ended, once for all the events until then."""
        if not self._controlsPending:
            self._controlsPending = True
            qt.QTimer.singleShot(0, self._updateControlsLater)

    def _updateControlsLater(self) -> None:
        """Update the correction controls once the changes queued by :meth:`_onGridOrFrameModified` have ended (run by
        ``qt.QTimer.singleShot``); nothing after :meth:`cleanup`, whose widgets may be deleted by then."""
        self._controlsPending = False
        if self._cleanedUp:
            return
        self._updateCorrectionControls()

    def _refreshShownSegmentation(self) -> None:
        self._refreshPending = False
        if self._cleanedUp:
            return
        node = self._shownSegmentation
        if node is not None and node.GetScene() is not None:
            self._refreshFromSegments(node)  # a deleted vertebra's row goes; no row is current then

    def _applyRenames(self) -> None:
        pending, self._pendingRenames = self._pendingRenames, []
        node = self._shownSegmentation
        if node is None or self._cleanedUp:
            return
        applied = False
        for segmentId in pending:
            if segmentId not in renamed_levels(node):
                continue  # no rename (any more): e.g. the Segment Editor's Undo sets a name before its tags
            applied = True
            with slicer.util.tryWithErrorDisplay(_("The renamed vertebra could not be taken as its level."),
                                                 waitCursor=True):
                correction = self.logic.correctionLogic
                if correction.applyRename(node, segmentId):
                    self.ui.statusLabel.text = relabelStatus(_(
                        "Renamed: the column was relabelled around the vertebra you renamed; clicks and re-runs keep "
                        "its level."), correction.relabelWarnings)
        if applied:
            self._refreshFromSegments(node)  # the names as they are now: relabelled, or put back

    def _fillVertebraTable(self, segmentationNode) -> None:
        """One row per segment as the segments are now, incomplete ones in italics; rows keep their segment's ID,
        so a click still finds a segment that was renamed in the Segment Editor."""
        rows = segment_rows(segmentationNode)
        table = self.ui.vertebraTable
        current = selectedVertebra(segmentationNode, self._rowSegmentIds, table.currentRow())
        table.setRowCount(len(rows))
        self._rowSegmentIds = [segmentId for segmentId, *_cells in rows]
        for row, (_segmentId, name, complete, pLabel, volumeCm3) in enumerate(rows):
            for column, text in enumerate(vertebraRowCells(name, complete, pLabel, volumeCm3)):
                item = qt.QTableWidgetItem(text)
                if not complete:
                    font = item.font()
                    font.setItalic(True)
                    item.setFont(font)
                    item.setToolTip(_("Incompletely visible: cut by the border of the image"))
                table.setItem(row, column, item)
        table.resizeColumnsToContents()
        # the current row follows its vertebra (renumbering renames rows); none is current once it is gone
        if current in self._rowSegmentIds:
            table.setCurrentCell(self._rowSegmentIds.index(current), 0)
        else:
            table.setCurrentCell(-1, -1)

    def _refreshFromSegments(self, segmentationNode, message: str = "") -> None:
        """Table rows and alternatives from the segments as they are now (after renumbering, undo, ...)."""
        if segmentationNode.GetSegmentation() is self._renameObserved:
            self._rememberNames()
        self._fillVertebraTable(segmentationNode)
        self._refreshAlternatives(segmentationNode)
        self._updateCorrectionControls()  # a row may be gone; Undo may have become possible or been used
        if message:
            self.ui.statusLabel.text = message

    def _refreshAlternatives(self, segmentationNode) -> None:
        self.alternativesList.clear()
        self._alternatives, lines = alternativesEntries(self.logic.correctionLogic, segmentationNode)
        for text, isAlternative in lines:
            item = qt.QListWidgetItem(text)
            if not isAlternative:  # why there are none: greyed out, cannot be selected or clicked
                item.setFlags(qt.Qt.NoItemFlags)
                item.setToolTip(text)
            self.alternativesList.addItem(item)


#
# SpineSegmentationLogic
#


class SpineSegmentationLogic(ScriptedLoadableModuleLogic):
    """Batch API of the module; no GUI, no dialogs (except the optional package installation prompt).

    Example (Slicer Python console)::

        logic = slicer.util.getModuleLogic("SpineSegmentation")   # or SpineSegmentation.SpineSegmentationLogic()
        results = logic.process(getNode("CT"))
        print(results.segmentation_node.GetName(), results.incomplete)

    ``process`` runs the pipeline in a separate process and blocks; ``startSegmentation`` returns a
    :class:`~SpineSegmentationModuleLib.logic.SegmentationRun` to poll (what the widget does);
    ``loadResults`` imports an existing output folder.

    Args:
        runnerFactory: makes the process runner (default: ``ProcessRunner``); inject another to test or to
            run the command elsewhere.
    """

    def __init__(self, runnerFactory=ProcessRunner) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        libraryDir = ensureLibraryImportable()
        self.processLogic = SpineSegmentationProcessLogic(runnerFactory=runnerFactory, libraryDir=libraryDir)
        self.correctionLogic = CorrectionLogic(self.processLogic)  # click, re-run, renumber, undo
        self.defaultModelDir = default_model_dir(libraryDir)
        loadTerminology()  # loaded at startup already (the module's constructor); loads nothing then

    def getParameterNode(self):
        return SpineSegmentationParameterNode(super().getParameterNode())

    @staticmethod
    def setupPythonRequirements(confirm=None) -> bool:
        """Install missing Python packages after the user agrees; False when declined (see dependencies.py).

        Raises:
            ValueError: the PyTorch extension is missing, or installing torch or the other packages failed (the
                message says what to do).
        """
        return dependencies.install_missing(confirm)

    def startSegmentation(self, inputVolume, device: str = "auto", model: Optional[Path] = None,
                          outputDir: Optional[Path] = None) -> SegmentationRun:
        """Start the pipeline on ``inputVolume`` in a separate process; returns at once (see processLogic).

        Raises:
            ValueError: ``inputVolume`` is not a scalar volume node in the scene (slicer.mrmlScene), or an unknown
                ``device``.
        """
        return self.processLogic.startSegmentation(inputVolume, device, model, outputDir)

    def loadResults(self, outputDir, inputVolume, outputSegmentation=None, overwrite: bool = False) -> ImportedResults:
        """Build segmentation, centroid and table nodes from an output folder.

        Raises:
            ValueError: ``outputDir`` not a path, damaged folder (a probability outside [0, 1] too) or results not on
                ``inputVolume``'s grid; ``inputVolume`` not a scalar volume node, ``outputSegmentation`` not a
                segmentation node, ``overwrite`` not True or False, or (with ``overwrite``) keeping other segments
                under another transform than the CT or on another grid (reference geometry, e.g. made on a resampled
                volume); the scene is unchanged.
        """
        return self.processLogic.loadResults(outputDir, inputVolume, outputSegmentation, overwrite)

    def process(self, inputVolume, outputSegmentation=None, device: str = "auto", model: Optional[Path] = None,
                overwrite: bool = False, outputDir: Optional[Path] = None, progress=None) -> ImportedResults:
        """Segment, label and classify the vertebrae of ``inputVolume``; blocks until done.

        Args:
            inputVolume: CT volume node (HU).
            outputSegmentation: segmentation to fill (None = new; a non-empty one only with ``overwrite``).
            device: "auto", "GPU" or "CPU".
            model: model folder (None = the shipped model).
            overwrite: replace the segments of a non-empty ``outputSegmentation``.
            outputDir: keep the output files there (None = temporary folder, deleted afterwards).
            progress: called with each ProgressEvent; returning False cancels.

        Raises:
            ValueError: bad input (also: removed from the scene or in another scene), device, output folder,
                ``progress`` (not callable) or ``outputSegmentation`` / ``overwrite`` (as :meth:`loadResults`; also:
                ``outputSegmentation`` in no scene or another one than slicer.mrmlScene); checked before the run
                starts.
            SegmentationProcessError: the pipeline failed (the message quotes its error).
            OSError: the temporary work folder could not be made, or the segmentation process could not be started
                (its Python interpreter not found).
            SegmentationCancelledError: cancelled through ``progress``; nothing was added to the scene.
        """
        return self.processLogic.process(inputVolume, outputSegmentation, device, model, overwrite, outputDir,
                                         progress)


#
# SpineSegmentationTest
#


def loadExampleCt():
    """The example CT as a volume node: from the source tree's ``Testing/Data`` when the module runs from a checkout,
    else through SampleData (downloaded once, checked against :data:`EXAMPLE_CT_SHA256`; what the in-Slicer test
    does in a build tree)."""
    local = Path(__file__).resolve().parent.parent / "Testing" / "Data" / "example_ct.nii.gz"
    if local.is_file():
        return slicer.util.loadVolume(str(local))
    import SampleData

    registerSampleData()
    return SampleData.downloadSample(EXAMPLE_CT_SAMPLE)


class SpineSegmentationTest(ScriptedLoadableModuleTest):
    """In-Slicer tests: the whole pipeline on the real example CT with the shipped model, and Cancel.

    Nothing is installed here: the Python packages must be there already (the extension's first use installs them
    after the user agrees); without them the pipeline test is skipped and names the missing ones (a build machine,
    e.g. the Extensions Index's, has no torch).
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        # Reload and Test, the SelfTests module and slicer.selfTests call runTest with no unittest runner around it
        # (ScriptedLoadableModule.runTest, v5.6.2-v5.10.0): a skip is reported here and the next test still runs.
        for test in (self.test_ProcessExampleCT, self.test_CancelLeavesSceneUnchanged):
            self.setUp()
            try:
                test()
            except unittest.SkipTest as skipped:
                self.delayDisplay(f"{test.__name__} skipped: {skipped}")

    def test_ProcessExampleCT(self):
        from SpineSegmentationLib.anatomy import verse_label
        from SpineSegmentationLib.terminology import slicer_terminology_entry

        missing = dependencies.missing_packages()
        if missing:
            self.skipTest(f"Python packages missing: {', '.join(missing)}; install them first (open the module, "
                          "press Apply)")
        self.delayDisplay("Segmenting the example CT")
        volume = loadExampleCt()
        logic = SpineSegmentationLogic()
        results = logic.process(volume, device="auto")

        segmentation = results.segmentation_node.GetSegmentation()
        names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
        self.assertEqual(names, [v.name for v in results.vertebrae])
        self.assertTrue({"L1", "L2", "L3", "L4", "L5"} <= set(names), f"lumbar levels missing in {names}")
        tagName = slicer.vtkSegment.GetTerminologyEntryTagName()
        for i, name in enumerate(names):
            segment = segmentation.GetNthSegment(i)
            label = verse_label(name)
            self.assertEqual(segment.GetLabelValue(), label)
            self.assertEqual(segment_tag(segment, tagName), slicer_terminology_entry(label))
            complete = segment_tag(segment, "SpineSegmentation.Complete")
            self.assertIn(complete, ("true", "false"))
        if "T11" in names:  # only a sliver of T11 is in the image
            self.assertIn("T11", results.incomplete)
        self.assertEqual(results.centroids_node.GetNumberOfControlPoints(), len(names))
        self.assertEqual(results.table_node.GetNumberOfRows(), len(names))
        self.delayDisplay("Test passed")

    def test_CancelLeavesSceneUnchanged(self):
        volume = loadExampleCt()
        nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
        logic = SpineSegmentationLogic()
        run = logic.startSegmentation(volume)
        run.cancel()
        with self.assertRaises(SegmentationCancelledError):
            while run.poll() is None:
                slicer.app.processEvents()
        workDir = run.workDir
        run.cleanup()
        self.assertFalse(workDir.exists())
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore)
        self.delayDisplay("Test passed")
