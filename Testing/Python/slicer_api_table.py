"""Every Slicer, MRML, VTK, Qt and CTK name the Slicer module calls, with where it was checked to exist in the oldest
Slicer the extension supports: **Slicer 5.6** (tag v5.6.2; also checked at v5.8.1, v5.10.0 and v5.12.3).

``Testing/check_slicer_api_table.py --slicer-git DIR`` checks each Slicer entry against Slicer's source at those tags
(the file must declare the name); ``test_slicer_api_conformance.py`` fails on any call of the module that is not in
this table, and checks the entries against the classes ``slicer-core`` and ``vtk`` provide.

``METHODS``: method or class-attribute name -> (class, source). Source is a path in Slicer's repository ("A|B":
moved from A to B), or
``"VTK"`` (VTK >= 9.2, the VTK of Slicer 5.6, checked against the installed ``vtk`` package), ``"Qt5"`` (Qt 5.15,
Slicer 5.6's Qt; not available here, checked in Qt's documentation), ``"Python"`` (standard library) or
``"SlicerPyTorch"`` (the PyTorch extension's ``PyTorchUtils/PyTorchUtils.py``).

``SLICER_NAMESPACE``: the ``slicer.*`` and ``SampleData.*`` names used (application attributes, ``slicer.util`` and
SampleData functions).
"""

MRML = "Libs/MRML/Core/"
SEG = "Libs/vtkSegmentationCore/"
#: vtkMRMLMarkupsNode moved from the Markups module to MRML Core in Slicer 5.10.
MARKUPS_NODE = "Modules/Loadable/Markups/MRML/vtkMRMLMarkupsNode.h|Libs/MRML/Core/vtkMRMLMarkupsNode.h"

METHODS: dict[str, tuple[str, str]] = {
    # vtkMRMLScene
    "AddNewNodeByClass": ("vtkMRMLScene", MRML + "vtkMRMLScene.h"),
    "Clear": ("vtkMRMLScene", MRML + "vtkMRMLScene.h"),
    "GetNthNodeByClass": ("vtkMRMLScene", MRML + "vtkMRMLScene.h"),
    "GetNumberOfNodesByClass": ("vtkMRMLScene", MRML + "vtkMRMLScene.h"),
    "GetFirstNodeByName": ("vtkMRMLScene", MRML + "vtkMRMLScene.h"),
    "GetNthNode": ("vtkMRMLScene", MRML + "vtkMRMLScene.h"),
    "GetNumberOfNodes": ("vtkMRMLScene", MRML + "vtkMRMLScene.h"),
    "RemoveNode": ("vtkMRMLScene", MRML + "vtkMRMLScene.h"),
    "StartCloseEvent": ("vtkMRMLScene", MRML + "vtkMRMLScene.h"),
    "EndCloseEvent": ("vtkMRMLScene", MRML + "vtkMRMLScene.h"),
    "NodeAddedEvent": ("vtkMRMLScene", MRML + "vtkMRMLScene.h"),
    "NodeRemovedEvent": ("vtkMRMLScene", MRML + "vtkMRMLScene.h"),
    "EndBatchProcessEvent": ("vtkMRMLScene", MRML + "vtkMRMLScene.h"),
    # a scene imported: the widget reads its parameter node anew at the batch's end (references copied unmodified)
    "EndImportEvent": ("vtkMRMLScene", MRML + "vtkMRMLScene.h"),
    "IsBatchProcessing": ("vtkMRMLScene", MRML + "vtkMRMLScene.h"),
    # vtkMRMLNode and subclasses
    "GetID": ("vtkMRMLNode", MRML + "vtkMRMLNode.h"),
    "GetName": ("vtkMRMLNode", MRML + "vtkMRMLNode.h"),
    "SetName": ("vtkMRMLNode", MRML + "vtkMRMLNode.h"),
    "GetScene": ("vtkMRMLNode", MRML + "vtkMRMLNode.h"),
    # the CT selector does not list a node hidden from editors (qMRMLSortFilterProxyModel.cxx): not a default CT
    "GetHideFromEditors": ("vtkMRMLNode", MRML + "vtkMRMLNode.h"),
    "GetNodeReference": ("vtkMRMLNode", MRML + "vtkMRMLNode.h"),
    "SetNodeReferenceID": ("vtkMRMLNode", MRML + "vtkMRMLNode.h"),
    "GetDisplayNode": ("vtkMRMLDisplayableNode", MRML + "vtkMRMLDisplayableNode.h"),
    "GetNumberOfDisplayNodes": ("vtkMRMLDisplayableNode", MRML + "vtkMRMLDisplayableNode.h"),
    "GetNthDisplayNode": ("vtkMRMLDisplayableNode", MRML + "vtkMRMLDisplayableNode.h"),
    "GetNumberOfStorageNodes": ("vtkMRMLStorableNode", MRML + "vtkMRMLStorableNode.h"),
    "GetNthStorageNode": ("vtkMRMLStorableNode", MRML + "vtkMRMLStorableNode.h"),
    "CreateDefaultDisplayNodes": ("vtkMRMLDisplayableNode", MRML + "vtkMRMLDisplayableNode.h"),
    "GetParentTransformNode": ("vtkMRMLTransformableNode", MRML + "vtkMRMLTransformableNode.h"),
    "IsTransformToWorldLinear": ("vtkMRMLTransformNode", MRML + "vtkMRMLTransformNode.h"),
    # a transform that is itself non-linear, told apart from a linear one under a warp (mrml_import.transform_text)
    "IsLinear": ("vtkMRMLTransformNode", MRML + "vtkMRMLTransformNode.h"),
    # whether the transform between two nodes, through their first common parent, is linear (mrml_import.same_frame)
    "IsTransformToNodeLinear": ("vtkMRMLTransformNode", MRML + "vtkMRMLTransformNode.h"),
    # the transform between a segmentation and the CT (mrml_import.same_frame)
    "GetMatrixTransformBetweenNodes": ("vtkMRMLTransformNode", MRML + "vtkMRMLTransformNode.h"),
    # a transformable node's parent transform set, removed, hardened or changed (the widget's controls follow)
    "TransformModifiedEvent": ("vtkMRMLTransformableNode", MRML + "vtkMRMLTransformableNode.h"),
    "SetAndObserveTransformNodeID": ("vtkMRMLTransformableNode", MRML + "vtkMRMLTransformableNode.h"),
    "TransformPointToWorld": ("vtkMRMLTransformableNode", MRML + "vtkMRMLTransformableNode.h"),
    "TransformPointFromWorld": ("vtkMRMLTransformableNode", MRML + "vtkMRMLTransformableNode.h"),
    "GetIJKToRASMatrix": ("vtkMRMLVolumeNode", MRML + "vtkMRMLVolumeNode.h"),
    "GetImageData": ("vtkMRMLVolumeNode", MRML + "vtkMRMLVolumeNode.h"),
    "CopyOrientation": ("vtkMRMLVolumeNode", MRML + "vtkMRMLVolumeNode.h"),
    "SetFileName": ("vtkMRMLStorageNode", MRML + "vtkMRMLStorageNode.h"),
    "ReadData": ("vtkMRMLStorageNode", MRML + "vtkMRMLStorageNode.h"),
    "WriteData": ("vtkMRMLStorageNode", MRML + "vtkMRMLStorageNode.h"),
    "SetUseCompression": ("vtkMRMLStorageNode", MRML + "vtkMRMLStorageNode.h"),
    "SetSingleFile": ("vtkMRMLVolumeArchetypeStorageNode", MRML + "vtkMRMLVolumeArchetypeStorageNode.h"),
    "AddColumn": ("vtkMRMLTableNode", MRML + "vtkMRMLTableNode.h"),
    "RemoveAllColumns": ("vtkMRMLTableNode", MRML + "vtkMRMLTableNode.h"),
    "SetColumnDescription": ("vtkMRMLTableNode", MRML + "vtkMRMLTableNode.h"),
    "SetColumnUnitLabel": ("vtkMRMLTableNode", MRML + "vtkMRMLTableNode.h"),
    "SetUseColumnTitleAsColumnHeader": ("vtkMRMLTableNode", MRML + "vtkMRMLTableNode.h"),
    "GetNumberOfRows": ("vtkMRMLTableNode", MRML + "vtkMRMLTableNode.h"),
    "GetLocked": ("vtkMRMLTableNode", MRML + "vtkMRMLTableNode.h"),
    "SetLocked": ("vtkMRMLTableNode", MRML + "vtkMRMLTableNode.h"),
    "GetSegmentation": ("vtkMRMLSegmentationNode", MRML + "vtkMRMLSegmentationNode.h"),
    "SetReferenceImageGeometryParameterFromVolumeNode": ("vtkMRMLSegmentationNode",
                                                         MRML + "vtkMRMLSegmentationNode.h"),
    "CreateClosedSurfaceRepresentation": ("vtkMRMLSegmentationNode", MRML + "vtkMRMLSegmentationNode.h"),
    # invoked by SetAndObserveSegmentation when the node is given another vtkSegmentation object
    "SegmentationChangedEvent": ("vtkMRMLSegmentationNode", MRML + "vtkMRMLSegmentationNode.h"),
    "CreateBinaryLabelmapRepresentation": ("vtkMRMLSegmentationNode", MRML + "vtkMRMLSegmentationNode.h"),
    "GetReferenceImageGeometryReferenceRole": ("vtkMRMLSegmentationNode", MRML + "vtkMRMLSegmentationNode.h"),
    "SetSegmentOpacity2DFill": ("vtkMRMLSegmentationDisplayNode", MRML + "vtkMRMLSegmentationDisplayNode.h"),
    "SetSegmentOpacity3D": ("vtkMRMLSegmentationDisplayNode", MRML + "vtkMRMLSegmentationDisplayNode.h"),
    "GetSegmentVisibility": ("vtkMRMLSegmentationDisplayNode", MRML + "vtkMRMLSegmentationDisplayNode.h"),
    "SetSegmentVisibility": ("vtkMRMLSegmentationDisplayNode", MRML + "vtkMRMLSegmentationDisplayNode.h"),
    # markups
    "AddControlPoint": ("vtkMRMLMarkupsNode", MARKUPS_NODE),
    "GetNthControlPointPositionWorld": ("vtkMRMLMarkupsNode", MARKUPS_NODE),
    "GetNumberOfControlPoints": ("vtkMRMLMarkupsNode", MARKUPS_NODE),
    "GetNthControlPointPositionStatus": ("vtkMRMLMarkupsNode", MARKUPS_NODE),
    "PositionDefined": ("vtkMRMLMarkupsNode", MARKUPS_NODE),
    # the point list's events "Segment from point" follows (invoked by vtkMRMLMarkupsNode.cxx at v5.6.2-v5.10.0)
    "PointAddedEvent": ("vtkMRMLMarkupsNode", MARKUPS_NODE),
    "PointRemovedEvent": ("vtkMRMLMarkupsNode", MARKUPS_NODE),
    "PointModifiedEvent": ("vtkMRMLMarkupsNode", MARKUPS_NODE),
    "RemoveAllControlPoints": ("vtkMRMLMarkupsNode", MARKUPS_NODE),
    "SetNthControlPointDescription": ("vtkMRMLMarkupsNode", MARKUPS_NODE),
    "JumpSlicesToLocation": ("vtkSlicerMarkupsLogic", "Modules/Loadable/Markups/Logic/vtkSlicerMarkupsLogic.h"),
    "SetActiveList": ("vtkSlicerMarkupsLogic", "Modules/Loadable/Markups/Logic/vtkSlicerMarkupsLogic.h"),
    "StartPlaceMode": ("vtkSlicerMarkupsLogic", "Modules/Loadable/Markups/Logic/vtkSlicerMarkupsLogic.h"),
    # segmentation core
    "AddSegment": ("vtkSegmentation", SEG + "vtkSegmentation.h"),
    "GetNthSegment": ("vtkSegmentation", SEG + "vtkSegmentation.h"),
    "GetNthSegmentID": ("vtkSegmentation", SEG + "vtkSegmentation.h"),
    "GetNumberOfSegments": ("vtkSegmentation", SEG + "vtkSegmentation.h"),
    "GetSegment": ("vtkSegmentation", SEG + "vtkSegmentation.h"),
    "GetSegmentIdBySegmentName": ("vtkSegmentation", SEG + "vtkSegmentation.h"),
    "RemoveSegment": ("vtkSegmentation", SEG + "vtkSegmentation.h"),
    "GenerateUniqueSegmentID": ("vtkSegmentation", SEG + "vtkSegmentation.h"),
    "CopySegmentFromSegmentation": ("vtkSegmentation", SEG + "vtkSegmentation.h"),
    "SetSegmentIndex": ("vtkSegmentation", SEG + "vtkSegmentation.h"),
    "SetSourceRepresentationName": ("vtkSegmentation", SEG + "vtkSegmentation.h"),
    "DeepCopy": ("vtkSegmentation", SEG + "vtkSegmentation.h"),
    "SourceRepresentationModified": ("vtkSegmentation", SEG + "vtkSegmentation.h"),
    "SegmentModified": ("vtkSegmentation", SEG + "vtkSegmentation.h"),
    "SegmentAdded": ("vtkSegmentation", SEG + "vtkSegmentation.h"),
    "SegmentRemoved": ("vtkSegmentation", SEG + "vtkSegmentation.h"),
    "GetSourceRepresentationName": ("vtkSegmentation", SEG + "vtkSegmentation.h"),
    "CreateRepresentation": ("vtkSegmentation", SEG + "vtkSegmentation.h"),
    "AddRepresentation": ("vtkSegment", SEG + "vtkSegment.h"),
    "GetRepresentation": ("vtkSegment", SEG + "vtkSegment.h"),
    "GetBounds": ("vtkSegment", SEG + "vtkSegment.h"),
    "GetLabelValue": ("vtkSegment", SEG + "vtkSegment.h"),
    "SetLabelValue": ("vtkSegment", SEG + "vtkSegment.h"),
    "GetTag": ("vtkSegment", SEG + "vtkSegment.h"),
    "SetTag": ("vtkSegment", SEG + "vtkSegment.h"),
    "RemoveTag": ("vtkSegment", SEG + "vtkSegment.h"),
    "SetColor": ("vtkSegment", SEG + "vtkSegment.h"),
    "SetNameAutoGenerated": ("vtkSegment", SEG + "vtkSegment.h"),
    "GetNameAutoGenerated": ("vtkSegment", SEG + "vtkSegment.h"),
    "SetColorAutoGenerated": ("vtkSegment", SEG + "vtkSegment.h"),
    "GetColorAutoGenerated": ("vtkSegment", SEG + "vtkSegment.h"),
    "GetTerminologyEntryTagName": ("vtkSegment", SEG + "vtkSegment.h"),
    "GetBinaryLabelmapRepresentationName": ("vtkSegmentationConverter", SEG + "vtkSegmentationConverter.h"),
    # the grid a segmentation's segments are edited and saved on (mrml_import.reference_geometry)
    "GetConversionParameter": ("vtkSegmentation", SEG + "vtkSegmentation.h"),
    "GetReferenceImageGeometryParameterName": ("vtkSegmentationConverter", SEG + "vtkSegmentationConverter.h"),
    "DeserializeImageGeometry": ("vtkSegmentationConverter", SEG + "vtkSegmentationConverter.h"),
    # the grid of segments without a reference geometry (mrml_import._segments_grid): the finest segment's; only
    # the (int, vtkStringArray*) overload is wrapped for Python
    "DetermineCommonLabelmapGeometry": ("vtkSegmentation", SEG + "vtkSegmentation.h"),
    "EXTENT_UNION_OF_SEGMENTS": ("vtkSegmentation", SEG + "vtkSegmentation.h"),
    "GetImageToWorldMatrix": ("vtkOrientedImageData", SEG + "vtkOrientedImageData.h"),
    # Slicer's own rule for one geometry (1e-4 per element: voxels copied index for index; mrml_import.grid_difference)
    "IsEqual": ("vtkOrientedImageDataResample", SEG + "vtkOrientedImageDataResample.h"),
    "CreateOrientedImageDataFromVolumeNode": ("vtkSlicerSegmentationsModuleLogic",
                                              "Modules/Loadable/Segmentations/Logic/vtkSlicerSegmentationsModuleLogic.h"),
    "ExportSegmentsToLabelmapNode": ("vtkSlicerSegmentationsModuleLogic",
                                     "Modules/Loadable/Segmentations/Logic/vtkSlicerSegmentationsModuleLogic.h"),
    # terminologies
    "GetLoadedTerminologyNames": ("vtkSlicerTerminologiesModuleLogic",
                                  "Modules/Loadable/Terminologies/Logic/vtkSlicerTerminologiesModuleLogic.h"),
    "LoadTerminologyFromFile": ("vtkSlicerTerminologiesModuleLogic",
                                "Modules/Loadable/Terminologies/Logic/vtkSlicerTerminologiesModuleLogic.h"),
    # VTK
    "AddObserver": ("vtkObject", "VTK"),
    "RemoveObserver": ("vtkObject", "VTK"),
    "Modified": ("vtkObject", "VTK"),
    "GetMTime": ("vtkObject", "VTK"),
    "IsA": ("vtkObjectBase", "VTK"),
    "GetClassName": ("vtkObjectBase", "VTK"),
    "GetAddressAsString": ("vtkObjectBase", "VTK"),
    "UnRegister": ("vtkObjectBase", "VTK"),
    "GetDimensions": ("vtkImageData", "VTK"),
    "GetExtent": ("vtkImageData", "VTK"),
    "GetNumberOfScalarComponents": ("vtkImageData", "VTK"),
    "GetPointData": ("vtkImageData", "VTK"),
    "GetScalars": ("vtkPointData", "VTK"),
    "GetElement": ("vtkMatrix4x4", "VTK"),
    "SetElement": ("vtkMatrix4x4", "VTK"),
    "GetValue": ("vtkStringArray", "VTK"),
    "GetNumberOfValues": ("vtkStringArray", "VTK"),
    "InsertNextValue": ("vtkStringArray", "VTK"),
    # Qt 5.15 / CTK widgets made in code
    "QComboBox": ("qt", "Qt5"),
    "QFormLayout": ("qt", "Qt5"),
    "QHBoxLayout": ("qt", "Qt5"),
    "QListWidget": ("qt", "Qt5"),
    "QListWidgetItem": ("qt", "Qt5"),
    # Qt::ItemFlag: an "Alternatives" line that is not an alternative (why there are none) cannot be selected
    "NoItemFlags": ("Qt", "Qt5"),
    "QPushButton": ("qt", "Qt5"),
    "QTableWidgetItem": ("qt", "Qt5"),
    "QTimer": ("qt", "Qt5"),
    # Python standard library and the PyTorch extension
    "Popen": ("subprocess", "Python"),
    "Thread": ("threading", "Python"),
    "Queue": ("queue", "Python"),
    "PyTorchUtilsLogic": ("PyTorchUtils", "SlicerPyTorch"),
}

#: ``slicer.*`` names the module uses -> source in Slicer's repository.
SLICER_NAMESPACE: dict[str, str] = {
    "slicer.app": "Base/QTGUI/qSlicerApplication.h",
    "slicer.app.processEvents": "Qt5",
    "slicer.app.connect": "Qt5",
    # the signal the module connects to (a string of the connect call: the module loads its terminology and sample
    # data then); declared in this header at v5.6.2, v5.8.1 and v5.10.0
    "slicer.app.startupCompleted": "Base/QTGUI/qSlicerApplication.h",
    "SampleData.SampleDataLogic": "Modules/Scripted/SampleData/SampleData.py",
    "SampleData.SampleDataLogic.registerCustomSampleDataSource": "Modules/Scripted/SampleData/SampleData.py",
    "SampleData.downloadSample": "Modules/Scripted/SampleData/SampleData.py",
    "slicer.mrmlScene": "Base/Python/slicer/__init__.py",
    "slicer.modules": "Base/Python/slicer/__init__.py",
    "slicer.modules.markups": "Modules/Loadable/Markups/qSlicerMarkupsModule.h",
    "slicer.modules.markups.logic": "Modules/Loadable/Markups/qSlicerMarkupsModule.h",
    "slicer.modules.terminologies": "Modules/Loadable/Terminologies/qSlicerTerminologiesModule.h",
    "slicer.modules.terminologies.logic": "Modules/Loadable/Terminologies/qSlicerTerminologiesModule.h",
    "slicer.util": "Base/Python/slicer/util.py",
    "slicer.util.childWidgetVariables": "Base/Python/slicer/util.py",
    "slicer.util.confirmOkCancelDisplay": "Base/Python/slicer/util.py",
    "slicer.util.errorDisplay": "Base/Python/slicer/util.py",
    "slicer.util.loadUI": "Base/Python/slicer/util.py",
    "slicer.util.loadVolume": "Base/Python/slicer/util.py",
    "slicer.util.pip_install": "Base/Python/slicer/util.py",
    "slicer.util.tryWithErrorDisplay": "Base/Python/slicer/util.py",
    "slicer.util.getModuleLogic": "Base/Python/slicer/util.py",
    "slicer.vtkMRMLLabelMapVolumeNode": MRML + "vtkMRMLLabelMapVolumeNode.h",
    "slicer.vtkMRMLMarkupsNode": MARKUPS_NODE,
    "slicer.vtkMRMLVolumeArchetypeStorageNode": MRML + "vtkMRMLVolumeArchetypeStorageNode.h",
    "slicer.vtkMRMLSegmentationNode": MRML + "vtkMRMLSegmentationNode.h",
    "slicer.vtkMRMLTransformableNode": MRML + "vtkMRMLTransformableNode.h",
    "slicer.vtkSegment": SEG + "vtkSegment.h",
    "slicer.vtkSegmentation": SEG + "vtkSegmentation.h",
    "slicer.vtkSegmentationConverter": SEG + "vtkSegmentationConverter.h",
    "slicer.vtkOrientedImageData": SEG + "vtkOrientedImageData.h",
    "slicer.vtkOrientedImageDataResample": SEG + "vtkOrientedImageDataResample.h",
    "slicer.vtkMRMLTransformNode": MRML + "vtkMRMLTransformNode.h",
    "slicer.vtkSlicerSegmentationsModuleLogic":
        "Modules/Loadable/Segmentations/Logic/vtkSlicerSegmentationsModuleLogic.h",
}

#: Qt 5.15 / CTK methods the widget calls on its widgets (checked in Qt's and CTK's documentation; Qt and CTK are
#: not available outside the application). Method -> the classes it is called on.
QT_METHODS: dict[str, str] = {
    "addItem": "QComboBox, QListWidget",
    "addRow": "QFormLayout",
    "addWidget": "QHBoxLayout, QVBoxLayout (with a stretch factor: QBoxLayout::addWidget(widget, stretch))",
    "clear": "QListWidget",
    "connect": "QObject (PythonQt signal connection)",
    "ctkCollapsibleButton": "CTK Libs/Widgets/ctkCollapsibleButton.h (class)",
    "currentRow": "QTableWidget",
    "currentPathChanged": "ctkPathLineEdit (signal, CTK Libs/Widgets/ctkPathLineEdit.h; what Slicer's own connector "
                          "connects)",
    "currentCellChanged": "QTableWidget (signal, connected by its signature string)",
    "font": "QTableWidgetItem",
    "hide": "QWidget",
    "item": "QTableWidget",
    "resizeColumnsToContents": "QTableView",
    "row": "QListWidget",
    "setFont": "QTableWidgetItem",
    "setFormat": "QProgressBar",
    "setInterval": "QTimer",
    "setItalic": "QFont",
    "setCurrentCell": "QTableWidget (row -1: no current cell)",
    "setFlags": "QListWidgetItem",
    "setItem": "QTableWidget",
    "setMRMLScene": "qMRMLWidget",
    "setMaximum": "QProgressBar",
    "setMaximumHeight": "QWidget",
    "setRowCount": "QTableWidget",
    "setToolTip": "QTableWidgetItem, QListWidgetItem",
    "setValue": "QProgressBar",
    "setVisible": "QWidget",
    "singleShot": "QTimer (static)",
    "start": "QTimer",
    "stop": "QTimer",
    "text": "QTableWidgetItem",
}

#: ``from slicer... import name`` / ``from MRMLCorePython import name`` -> source in Slicer's repository.
IMPORTS: dict[str, str] = {
    "slicer.i18n.tr": "Base/Python/slicer/i18n.py",
    "slicer.i18n.translate": "Base/Python/slicer/i18n.py",
    "slicer.parameterNodeWrapper.parameterNodeWrapper": "Base/Python/slicer/parameterNodeWrapper/wrapper.py",
    "slicer.parameterNodeWrapper.Choice": "Base/Python/slicer/parameterNodeWrapper/validators.py",
    "slicer.parameterNodeWrapper.Default": "Base/Python/slicer/parameterNodeWrapper/default.py",
    # the base of the widget's model-folder connector (exported by guiConnectors.py's __all__ at all three tags)
    "slicer.parameterNodeWrapper.GuiConnector": "Base/Python/slicer/parameterNodeWrapper/guiConnectors.py",
    # methods of a parameterNodeWrapper class (set on it in wrapper.py), not imports: the widget binds its .ui with
    # connectParametersToGui, which returns the tag disconnectGui needs at v5.6.2-v5.10.0 (connectGui returns None
    # at v5.6.2 and v5.8.1)
    "slicer.parameterNodeWrapper.connectParametersToGui": "Base/Python/slicer/parameterNodeWrapper/wrapper.py",
    "slicer.parameterNodeWrapper.disconnectGui": "Base/Python/slicer/parameterNodeWrapper/wrapper.py",
    "slicer.ScriptedLoadableModule.ScriptedLoadableModule": "Base/Python/slicer/ScriptedLoadableModule.py",
    "slicer.ScriptedLoadableModule.ScriptedLoadableModuleLogic": "Base/Python/slicer/ScriptedLoadableModule.py",
    "slicer.ScriptedLoadableModule.ScriptedLoadableModuleTest": "Base/Python/slicer/ScriptedLoadableModule.py",
    "slicer.ScriptedLoadableModule.ScriptedLoadableModuleWidget": "Base/Python/slicer/ScriptedLoadableModule.py",
    "slicer.util.VTKObservationMixin": "Base/Python/slicer/util.py",
    "MRMLCorePython.vtkMRMLScalarVolumeNode": MRML + "vtkMRMLScalarVolumeNode.h",
    "MRMLCorePython.vtkMRMLSegmentationNode": MRML + "vtkMRMLSegmentationNode.h",
}
