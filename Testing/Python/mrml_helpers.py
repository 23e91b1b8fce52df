"""Helpers shared by the tests that run the module on real MRML classes (PyPI ``slicer-core``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicer
import vtk
from vtk.util.numpy_support import vtk_to_numpy

from SpineSegmentationLib import anatomy
from SpineSegmentationModuleLib.correction import EDITED_TAG
from SpineSegmentationModuleLib.mrml_import import LABEL_TAG, voxel_to_world


def load_volume(scene, path: Path, name: str = ""):
    """Read a volume file into a scalar volume node with Slicer's storage node (as Slicer loads it)."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name or path.name.split(".")[0])
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    assert storage.ReadData(node) == 1, f"Slicer could not read {path}"
    return node


def verse_reference(path: Path) -> sitk.Image:
    """A TotalSegmentator reference label map in VerSe numbers, on its own grid."""
    reference = sitk.ReadImage(str(path))
    labels = sitk.GetImageFromArray(anatomy.to_verse(sitk.GetArrayFromImage(reference), "totalseg"))
    labels.CopyInformation(reference)
    return labels


def segment_names(segmentation_node) -> list[str]:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]


def segment_by_name(segmentation_node, name: str):
    segmentation = segmentation_node.GetSegmentation()
    return segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName(name))


def ijk_to_ras(matrix_node_or_image) -> np.ndarray:
    m = vtk.vtkMatrix4x4()
    if hasattr(matrix_node_or_image, "GetIJKToRASMatrix"):
        matrix_node_or_image.GetIJKToRASMatrix(m)
    else:
        matrix_node_or_image.GetImageToWorldMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def segment_voxels(segment) -> tuple[np.ndarray, np.ndarray]:
    """(I, J, K) indices (N, 3) of a segment's voxels in its labelmap layer, and the layer's IJK->RAS matrix."""
    image = segment.GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    dims = image.GetDimensions()
    extent = image.GetExtent()
    values = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0])
    kji = np.argwhere(values == segment.GetLabelValue())
    ijk = kji[:, ::-1] + np.array([extent[0], extent[2], extent[4]])
    return ijk, ijk_to_ras(image)


def paint(segmentation_node, volume_node, name: str, add_kji: tuple) -> None:
    """Add voxels (a numpy index of the volume's [k, j, i] array) to a segment the way the Segment Editor does
    (``SetBinaryLabelmapToSegment``, merge mode)."""
    segment_id = segmentation_node.GetSegmentation().GetSegmentIdBySegmentName(name)
    image = slicer.vtkSlicerSegmentationsModuleLogic.CreateOrientedImageDataFromVolumeNode(volume_node)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    dims = image.GetDimensions()
    values = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[2], dims[1], dims[0])
    values[:] = 0
    values[add_kji] = 1
    image.Modified()
    slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        image, segmentation_node, segment_id, slicer.vtkSlicerSegmentationsModuleLogic.MODE_MERGE_MASK)


def background_voxel_next_to(labels: np.ndarray, level: int) -> tuple:
    """A background voxel touching vertebra ``level`` of a [k, j, i] label array, as a numpy index: where a
    person adds voxels to that vertebra."""
    from scipy import ndimage

    ring = ndimage.binary_dilation(labels == level) & (labels == 0)
    k, j, i = np.argwhere(ring)[0]
    return np.s_[k : k + 1, j : j + 1, i : i + 1]


def register_segmentation_conversion_rules() -> None:
    """Register the binary labelmap <-> closed surface rules, as Slicer's Segmentations module does at startup
    (slicer-core alone has none; copying a segmentation, as undo does, needs them)."""
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    rules = factory.GetConverterRules() or []
    names = {(rules[i].GetSourceRepresentationName(), rules[i].GetTargetRepresentationName())
             for i in range(len(rules))}
    for rule in (slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule(),
                 slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule()):
        if (rule.GetSourceRepresentationName(), rule.GetTargetRepresentationName()) not in names:
            factory.RegisterConverterRule(rule)


def specify_geometry(segmentation_node, ct) -> None:
    """The Segment Editor's Specify geometry with the CT as source geometry, oversampling 1 (the fix a grid refusal
    names): ``vtkSlicerSegmentationGeometryLogic``, as the dialog's OK runs it (``qMRMLSegmentationGeometryDialog``:
    the reference geometry set first, then the segments resampled; the logic's
    ``SetReferenceImageGeometryInSegmentationNode`` since v5.8.1, v5.6.2's widget sets the same conversion parameter
    and reference node itself)."""
    geometry = slicer.vtkSlicerSegmentationGeometryLogic()
    geometry.SetInputSegmentationNode(segmentation_node)
    geometry.SetSourceGeometryNode(ct)
    geometry.SetOversamplingFactor(1.0)
    geometry.SetIsotropicSpacing(False)
    assert geometry.CalculateOutputGeometry() == ""
    assert geometry.SetReferenceImageGeometryInSegmentationNode()
    assert geometry.ResampleLabelmapsInSegmentationNode()


def vtk_matrix(array) -> vtk.vtkMatrix4x4:
    """A vtkMatrix4x4 with the values of the 4x4 array ``array`` (row-major)."""
    matrix = vtk.vtkMatrix4x4()
    matrix.DeepCopy(np.asarray(array, dtype=float).ravel().tolist())
    return matrix


def volume_on_grid(scene, name: str, ijk_to_ras_matrix: np.ndarray, dims,
                   node_class: str = "vtkMRMLScalarVolumeNode"):
    """A volume node (``node_class``) ``name`` of zeros on the grid given by its 4x4 IJK-to-RAS matrix and ``dims``
    (I, J, K voxels): a resampled CT, a label map, a grid that drifts from another."""
    image = vtk.vtkImageData()
    image.SetDimensions(*[int(d) for d in dims])
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    image.GetPointData().GetScalars().Fill(0)
    node = scene.AddNewNodeByClass(node_class, name)
    node.SetIJKToRASMatrix(vtk_matrix(ijk_to_ras_matrix))
    node.SetAndObserveImageData(image)
    return node


def synthetic_ct(scene, dims=(512, 512, 3), spacing=(0.7, 0.7, 2.0), origin=(-180.0, -170.0, 40.0)):
    """A CT volume node "CT" of ``dims`` (I, J, K) voxels of 0 HU, ``spacing`` (mm) and ``origin`` (RAS, mm), axes
    along R, A, S (a clinical slice size by default; the grid matters here, not the HU)."""
    image = vtk.vtkImageData()
    image.SetDimensions(*dims)
    image.AllocateScalars(vtk.VTK_SHORT, 1)
    vtk_to_numpy(image.GetPointData().GetScalars())[:] = 0
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT")
    node.SetAndObserveImageData(image)
    node.SetSpacing(*spacing)
    node.SetOrigin(*origin)
    return node


def edited_on_grid(scene, ct, axes: np.ndarray, offset, block) -> tuple:
    """A segmentation node "vertebrae" made on ``ct`` whose one vertebra L3, tagged edited, lies on a layer of another
    grid: its axes are ``axes`` (3x3, columns in the CT's voxels) and its origin the CT's voxel ``offset`` (a
    continuous (I, J, K) index); the layer has the CT's dimensions and holds L3 at the [k, j, i] index ``block``.
    Returns the node and L3's number of voxels."""
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "vertebrae")
    node.SetReferenceImageGeometryParameterFromVolumeNode(ct)
    l3 = node.GetSegmentation().GetSegment(node.GetSegmentation().AddEmptySegment("", "L3"))
    l3.SetTag(LABEL_TAG, str(anatomy.verse_label("L3")))
    ijk_to_ras = voxel_to_world(ct)
    grid = np.eye(4)
    grid[:3, :3] = ijk_to_ras[:3, :3] @ axes
    grid[:3, 3] = ijk_to_ras[:3, :3] @ np.asarray(offset, dtype=float) + ijk_to_ras[:3, 3]
    layer = slicer.vtkOrientedImageData()
    layer.SetGeometryFromImageToWorldMatrix(vtk_matrix(grid))
    layer.SetDimensions(*ct.GetImageData().GetDimensions())
    layer.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    values = vtk_to_numpy(layer.GetPointData().GetScalars()).reshape(layer.GetDimensions()[::-1])
    values[:] = 0
    values[block] = 1
    layer.Modified()
    l3.SetLabelValue(1)
    l3.AddRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName(), layer)
    l3.SetTag(EDITED_TAG, "true")
    return node, int(values.sum())


def shift_transform(scene, name: str, mm: float, axis: int = 0):
    """A linear transform node ``name`` that moves by ``mm`` along RAS axis ``axis`` (0: R, 1: A, 2: S; 0 mm: the
    identity)."""
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(axis, 3, mm)
    transform.SetMatrixTransformToParent(matrix)
    return transform
