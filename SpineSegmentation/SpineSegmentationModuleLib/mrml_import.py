"""Build Slicer nodes from a pipeline output folder: segmentation, centroid markups, results table.

Needs only the MRML classes (3D Slicer, or the PyPI ``slicer-core`` package) and VTK; no application, no
Qt. All coordinates are RAS millimetres, as Slicer shows them.

What :func:`import_output_folder` builds:

- a ``vtkMRMLSegmentationNode`` whose reference geometry is the input volume
  (``SetReferenceImageGeometryParameterFromVolumeNode``), one segment per vertebra in one shared labelmap
  layer (segment ID and name = level, label value = VerSe number, voxels from ``labels.nii.gz``), coloured
  and SNOMED CT coded through the ``TerminologyEntry`` tag (:func:`SpineSegmentationLib.terminology.
  slicer_terminology_entry`), with tags ``SpineSegmentation.Label``, ``.Complete``, ``.PComplete``,
  ``.PLabel``, ``.Edited``, ``.LabelRegressed``, ``.RibSides`` / ``.SacrumBelow`` where the anatomy evidence
  was measured, ``.LevelStated`` where a person stated the level and ``.CompleteStated`` where a person set
  ``.Complete`` (as in ``segmentation.seg.nrrd``), and
  ``.Voxels`` (a digest of the voxels given, :data:`VOXELS_TAG`); incomplete
  vertebrae are drawn as outlines in 2D and translucent in 3D;
- a ``vtkMRMLMarkupsFiducialNode`` with one control point per vertebra at its centroid, labelled by level
  (description "incomplete" for incomplete vertebrae);
- a ``vtkMRMLTableNode``: Level, Label, Complete, Confidence (p_label), P(complete), Volume (cm3), one row
  per vertebra in the order of the control points.

A segmentation that already has segments is never changed unless ``overwrite=True``: a new node is made
and a warning says so. With ``overwrite=True`` its vertebrae (:func:`is_vertebra`) are replaced and its other
segments ("Spinal canal", a tumour) are kept as they are (refused when they lie under another transform than the
CT or on another grid, :func:`check_output_segmentation`); the centroid and table nodes made earlier for that
segmentation (:func:`result_nodes`) are replaced by the new ones (:func:`remove_outdated_result_nodes`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import slicer
import vtk

if TYPE_CHECKING:  # the library is importable only once the module logic has put it on sys.path
    from SpineSegmentationLib.result import Vertebra

from .output_folder import OutputFolder, read_output_folder
from .voxel_digests import segment_digests

#: Prefix of the module's own segment tags (the same names as in ``segmentation.seg.nrrd``).
TAG_PREFIX = "SpineSegmentation."
#: The tag holding the level (VerSe number) of a vertebra segment.
LABEL_TAG = TAG_PREFIX + "Label"
#: The tag holding a digest of the voxels the module gave a vertebra (``count:sum``,
#: :func:`SpineSegmentationLib.segment_tags.digest_text`): a
#: segment whose voxels no longer match it was edited, also where no edit tracker saw it (a scene loaded and
#: edited before the module was opened, another Slicer session). ``segmentation.seg.nrrd`` of the command line carries
#: it too (``SpineSegmentationLib.segment_tags.VOXELS_TAG``, the same name; not imported here, where the library may
#: not be on ``sys.path`` yet).
VOXELS_TAG = TAG_PREFIX + "Voxels"
#: SNOMED CT "Tissue": the terminology type Slicer gives a new segment until a structure is chosen for it
#: (``vtkSegment.cxx``, ``qMRMLSegmentEditorWidget::onAddSegment`` at v5.6.2).
NEW_SEGMENT_TYPE_CODE = "85756007"
#: Name Slicer gives a segment added without a name: the Segment Editor's "Add" (vtkSegmentation::AddEmptySegment names
#: it by GenerateUniqueSegmentID("") at v5.6.2, by GenerateUniqueSegmentName("Segment") at v5.8.1 and v5.10.0).
GENERATED_SEGMENT_NAME = re.compile(r"Segment_[0-9]+")
#: Display of incompletely visible vertebrae: outline only in slice views, translucent in 3D.
INCOMPLETE_OPACITY_2D_FILL = 0.0
INCOMPLETE_OPACITY_3D = 0.3
#: Description of the control point of an incompletely visible vertebra.
INCOMPLETE_DESCRIPTION = "incomplete"
#: Node reference roles linking the segmentation to its centroids and table.
CENTROIDS_REFERENCE_ROLE = "SpineSegmentationCentroids"
TABLE_REFERENCE_ROLE = "SpineSegmentationTable"
#: Both roles: how the module finds the result nodes it made for a segmentation.
RESULT_REFERENCE_ROLES = (CENTROIDS_REFERENCE_ROLE, TABLE_REFERENCE_ROLE)
#: Table columns (name, unit).
TABLE_COLUMNS = (("Level", ""), ("Label", ""), ("Complete", ""), ("Confidence", ""), ("P(complete)", ""),
                 ("Volume", "cm3"))


@dataclass
class ImportedResults:
    """The nodes :func:`import_output_folder` made or filled, and what the user should be told."""

    segmentation_node: "slicer.vtkMRMLSegmentationNode"
    centroids_node: "slicer.vtkMRMLMarkupsFiducialNode"
    table_node: "slicer.vtkMRMLTableNode"
    vertebrae: list[Vertebra]
    message: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def incomplete(self) -> list[str]:
        """Names of the incompletely visible vertebrae."""
        return [v.name for v in self.vertebrae if not v.complete]


def segment_tag(segment, name: str) -> Optional[str]:
    """Value of a segment tag, or None when the segment has no such tag."""
    value = vtk.reference("")
    return str(value) if segment.GetTag(name, value) else None


def _unnamed_structure(entry: str, name: str) -> bool:
    """Whether a segment with terminology entry tag ``entry`` ("context~category~type~...", each code
    "scheme^value^meaning") and the auto-generated name ``name`` names no structure of its own: one of this module's
    vertebra entries (the Segment Editor gives a new segment the terminology of the segment before it:
    qMRMLSegmentEditorWidget.cxx ``onAddSegment`` at v5.6.2, vtkSlicerSegmentEditorLogic.cxx at v5.10.0), or no entry
    or Slicer's default "Tissue" with the name Slicer generates for a segment added without one ("Segment_1"). A
    name given by a script (``AddEmptySegment("", "Spinal canal")``, ``AddSegmentFromClosedSurfaceRepresentation``)
    stays "auto-generated" (vtkSegment.cxx sets it true; a person's edit clears it: any rename in the segments table
    at v5.6.2 and from v5.12.0, only one through its terminology selector at v5.8.1-v5.10.0, qMRMLSegmentsModel.cxx
    and qMRMLSegmentsTableView.cxx; a terminology chosen in the Data module), so the name is what tells such a
    segment from a vertebra drawn by hand."""
    from SpineSegmentationLib.terminology import TERMINOLOGY_CONTEXT_NAME

    fields = entry.split("~")
    if entry and fields[0] == TERMINOLOGY_CONTEXT_NAME:
        return True
    if not GENERATED_SEGMENT_NAME.fullmatch(name):
        return False
    parts = fields[2].split("^") if len(fields) > 2 else []
    return not entry or (len(parts) > 1 and parts[1] == NEW_SEGMENT_TYPE_CODE)


def is_vertebra(segment) -> bool:
    """Whether the module treats ``segment`` as a vertebra of the column (the sacrum included).

    A vertebra is a segment the module made (``SpineSegmentation.Label`` tag), one named as a level ("L3", "T13",
    "S"), or one a person added in the Segment Editor and neither named nor gave a structure (name still
    auto-generated; terminology a vertebra's of this module, which the Segment Editor copies from the segment before,
    or none or Slicer's default "Tissue" with Slicer's own name "Segment_<n>"): a vertebra the network missed, drawn
    by hand.
    Every other segment ("Spinal canal", a tumour, a structure chosen from a terminology) is not touched: not
    exported to a correction, not replaced by its result, not listed in the table or the centroids.
    """
    from SpineSegmentationLib.anatomy import verse_label

    if segment_tag(segment, LABEL_TAG) is not None:
        return True
    try:
        verse_label(segment.GetName() or "")
        return True
    except ValueError:
        pass
    if not segment.GetNameAutoGenerated():
        return False
    entry = segment_tag(segment, slicer.vtkSegment.GetTerminologyEntryTagName()) or ""
    return _unnamed_structure(entry, segment.GetName() or "")


def voxel_to_world(source) -> np.ndarray:
    """The 4x4 IJK-to-RAS matrix (mm) of a volume node (``GetIJKToRASMatrix``, the node's own frame) or of a
    segment's labelmap layer (``vtkOrientedImageData.GetImageToWorldMatrix``, the segmentation's frame)."""
    m = vtk.vtkMatrix4x4()
    if hasattr(source, "GetIJKToRASMatrix"):
        source.GetIJKToRASMatrix(m)
    else:
        source.GetImageToWorldMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def read_label_volume(path: Path) -> "slicer.vtkMRMLLabelMapVolumeNode":
    """Read a label map file into a labelmap volume node that is not added to any scene.

    Raises:
        ValueError: if the file cannot be read.
    """
    node = slicer.vtkMRMLLabelMapVolumeNode()
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.SetSingleFile(True)
    if not storage.ReadData(node) or node.GetImageData() is None:
        raise ValueError(f"cannot read the label map {path}; the output folder is damaged, run the segmentation again")
    return node


def same_voxel_grid(a, b) -> bool:
    """True when the volume nodes ``a`` and ``b`` lie on one voxel grid index for index, so that ``a``'s voxels can
    be taken as ``b``'s as they are (loading results copies the CT's geometry onto the label map): the same
    dimensions, and every voxel centre of ``a`` within :data:`GRID_DRIFT_TOLERANCE` (0.25) voxel of ``b``'s of the
    same index, at the origin and every corner (the library's rule, ``SpineSegmentationLib.geometry.same_grid``, which
    the command line applies to its labels and the CT). Slicer's ``vtkOrientedImageDataResample::IsEqual`` (1e-4 per
    matrix element, which :func:`grid_difference` accepts) is not taken here: on 2000 slices of 0.3 mm an axis 1e-4
    off drifts by 0.66 voxel. Unlike :func:`grid_difference`, another axis order or sign is another grid here. False
    when either has no image data or a matrix that is not finite or singular."""
    from SpineSegmentationLib.geometry import grid_drift

    if a.GetImageData() is None or b.GetImageData() is None:
        return False
    dimensions = a.GetImageData().GetDimensions()
    if dimensions != b.GetImageData().GetDimensions():
        return False
    ma, mb = voxel_to_world(a), voxel_to_world(b)
    if np.all(np.isfinite(ma)) and np.linalg.matrix_rank(ma[:3, :3]) < 3:
        return False  # no grid (a zero spacing): nothing to compare
    return grid_drift(ma, mb, dimensions) <= GRID_DRIFT_TOLERANCE  # inf where a matrix is not finite or b singular


def check_same_grid(label_node, volume_node, label_path: Path) -> None:
    """Raise ValueError unless the label map lies on the input volume's voxel grid (:func:`same_voxel_grid`); the
    message names both grids and how far the label map's voxel centres lie from the volume's, in voxels
    (``SpineSegmentationLib.geometry.grid_mismatch``)."""
    if volume_node is None or volume_node.GetImageData() is None:
        raise ValueError("the input volume has no image data; load a CT volume first")
    if label_node.GetImageData().GetDimensions() != volume_node.GetImageData().GetDimensions():
        raise ValueError(
            f"{label_path} has {label_node.GetImageData().GetDimensions()} voxels but the input volume "
            f"{volume_node.GetName()!r} has {volume_node.GetImageData().GetDimensions()}; load the results with the "
            "volume that was segmented"
        )
    if not same_voxel_grid(label_node, volume_node):
        from SpineSegmentationLib.geometry import grid_mismatch

        dimensions = label_node.GetImageData().GetDimensions()
        differs = grid_mismatch(voxel_to_world(label_node), dimensions, voxel_to_world(volume_node), dimensions,
                                "the input volume's", frame="RAS")
        raise ValueError(
            f"{label_path} is not on the grid of the input volume {volume_node.GetName()!r} ({differs}); load the "
            "results with the volume that was segmented"
        )


def check_ct_volume(volume_node) -> None:
    """Raise ValueError unless ``volume_node`` is a scalar volume node (a CT), not None, a labelmap or another class."""
    if not _is_a(volume_node, "vtkMRMLScalarVolumeNode") or _is_a(volume_node, "vtkMRMLLabelMapVolumeNode"):
        raise ValueError(f"the input must be a scalar volume node (a CT in HU), not a labelmap or another node type "
                         f"(got {_kind(volume_node)}); select the CT volume")


def _is_a(node, class_name: str) -> bool:
    """Whether ``node`` is a VTK object of ``class_name`` (False for None, a node's name or any other Python object)."""
    return hasattr(node, "IsA") and bool(node.IsA(class_name))


def _kind(node) -> str:
    if node is None:
        return "None"
    return node.GetClassName() if hasattr(node, "GetClassName") else f"{type(node).__name__} {node!r}"


def _transform_id(node) -> Optional[str]:
    transform = node.GetParentTransformNode()
    return transform.GetID() if transform is not None else None


def same_frame(a, b) -> bool:
    """Whether the transformable nodes ``a`` and ``b`` (e.g. a segmentation and the CT) lie in one frame: under the
    same parent transform (or none), or under transforms between which the transform is linear and the identity
    within 1e-6 per matrix element (``vtkMRMLTransformNode.GetMatrixTransformBetweenNodes``: e.g. an identity
    transform node, or another node with the same matrix), so that a node taken from one to the other stays where it
    is. Slicer takes the transform between two nodes through their first common parent transform
    (``GetTransformBetweenNodes``, ``GetMatrixTransformBetweenNodes``, v5.6.2-v5.10.0): a non-linear transform above
    both (both under one warp) cancels out and does not count, one between either node and that parent
    (``IsTransformToNodeLinear``) gives False without asking for the matrix, which Slicer refuses with an error in the
    log. A CT under a non-linear transform is refused where it is exported for a run (``logic.export_volume``)."""
    if _transform_id(a) == _transform_id(b):
        return True
    transforms = [a.GetParentTransformNode(), b.GetParentTransformNode()]
    first, other = transforms if transforms[0] is not None else transforms[::-1]  # not both None (the same ID)
    if not first.IsTransformToNodeLinear(other):  # to their first common parent, or to world when other is None
        return False
    between = vtk.vtkMatrix4x4()
    if not slicer.vtkMRMLTransformNode.GetMatrixTransformBetweenNodes(*transforms, between):
        return False
    matrix = np.array([[between.GetElement(r, c) for c in range(4)] for r in range(4)])
    return bool(np.allclose(matrix, np.eye(4), rtol=0.0, atol=1e-6))


def transform_text(node) -> str:
    """"no transform", "transform 'name'", "the non-linear transform 'name'" (the transform itself is not linear,
    ``vtkMRMLTransformNode::IsLinear``) or "transform 'name' (under a non-linear transform)" (linear, but another
    above it is not: ``IsTransformToWorldLinear``): the parent transform of ``node``, for messages."""
    transform = node.GetParentTransformNode()
    if transform is None:
        return "no transform"
    if not transform.IsLinear():
        return f"the non-linear transform {transform.GetName()!r}"
    under = "" if transform.IsTransformToWorldLinear() else " (under a non-linear transform)"
    return f"transform {transform.GetName()!r}{under}"


def harden_text(node) -> str:
    """How to harden the transform of ``node`` in Slicer: the Data module's "Harden transform" on a transformed node
    (the Transform hierarchy tab's menu, qSlicerDataModuleWidget, v5.6.2-v5.10.0; it calls
    ``vtkMRMLTransformableNode::HardenTransform``, which takes the node's transform to world, linear or not, and
    leaves it)."""
    return f"Data module, Transform hierarchy tab: right-click {node.GetName()!r}, Harden transform"


def frame_advice(segmentation_node, volume_node, what: str) -> str:
    """How to put a segmentation and the CT in one frame (:func:`same_frame`) keeping ``what`` (e.g. "the edits",
    "those segments") where they are shown on the CT, by which of the two has a transform: hardening
    (:func:`harden_text`) keeps them there; taking the segmentation from its transform, or putting it under the
    CT's, moves them relative to the CT by the transform between the two. Hardening moves the grid of the hardened
    node where it is the CT (a linear transform moves it by its matrix; a non-linear one reslices the CT onto a grid
    of the same spacing and axes whose origin is the corner of the warped volume's bounds, not one of its voxel
    centres: ``vtkMRMLVolumeNode::ApplyNonLinearTransform``) or a segmentation under a transform that is linear to
    world (``vtkMRMLTransformableNode::HardenTransform`` applies the matrix to its layers): unless the transform
    between the two moves by whole voxels of the CT along its axes, the segmentation then lies on another grid than
    the CT (refused by :func:`grid_difference`), so the advice names the second step, the module's fix for a
    segmentation off the CT's grid: Specify geometry with the CT (which resamples ``what``). A segmentation under a
    non-linear transform keeps its layers' geometry when hardened (only their extent changes,
    ``vtkOrientedImageDataResample::TransformOrientedImage``; v5.6.2-v5.10.0): with the CT under no transform, no
    second step is named."""
    ct_transform = volume_node.GetParentTransformNode()
    segmentation_transform = segmentation_node.GetParentTransformNode()
    moves_grid = ct_transform is not None or (segmentation_transform is not None
                                              and segmentation_transform.IsTransformToWorldLinear())
    on_grid = (f"; then, unless that transform is a shift by whole voxels of the CT along its axes, set the "
               f"segmentation's geometry to the CT (Segment Editor: Specify geometry, Source geometry: the CT, "
               f"oversampling 1; this resamples {what} onto the CT's grid)") if moves_grid else ""
    if segmentation_transform is None:  # only the CT is under a transform
        return (f"Harden the CT's transform {ct_transform.GetName()!r} ({harden_text(volume_node)}) to keep {what} "
                f"where they are shown on the CT{on_grid}; putting the segmentation under the CT's transform instead "
                f"moves them relative to the CT")
    ct_too = (f", and the CT's {ct_transform.GetName()!r} ({harden_text(volume_node)})" if ct_transform is not None
              else "")
    return (f"Harden the segmentation's transform {segmentation_transform.GetName()!r} "
            f"({harden_text(segmentation_node)}){ct_too} to keep {what} where they are shown on the CT{on_grid}; "
            f"removing the segmentation's transform or putting it under the CT's instead moves them relative to the "
            f"CT")


#: How far (in the CT's voxels) the voxel centres of another grid may lie from the CT's voxel centres they stand for,
#: at its origin and at every corner of its extent, for the grid to count as the CT's (:func:`grid_difference`).
#: Slicer resamples a labelmap onto the CT's grid with nearest neighbour at the voxel centres
#: (``vtkOrientedImageDataResample::ResampleOrientedImageToReferenceOrientedImage``, v5.6.2-v5.10.0), which keeps
#: each voxel as it is while the drift stays below half a voxel; a quarter voxel leaves a margin for rounding. The
#: "made on this CT" check (:func:`same_voxel_grid`) and the library's ``geometry.same_grid`` use the same value
#: (``geometry.GRID_DRIFT_TOLERANCE``), index for index.
GRID_DRIFT_TOLERANCE = 0.25


def _distinguishing_digits(a: np.ndarray, b: np.ndarray) -> Optional[int]:
    """The fewest significant digits (3 to 9) at which some value of ``a`` reads otherwise than its match in ``b``;
    None when they read the same at 9 digits (float noise: no voxel size to tell apart)."""
    return next((d for d in range(3, 10) if any(f"{x:.{d}g}" != f"{y:.{d}g}" for x, y in zip(a, b))), None)


def _sizes_text(sizes: np.ndarray, ct_sizes: np.ndarray, compare: Optional[tuple] = None) -> str:
    """"voxels of A x B x C mm, the CT's D x E x F mm": the grid's I, J, K spacings ``sizes`` and the CT's spacings
    ``ct_sizes`` in the order given (the CT's along the grid's axes: "along the same axes" is added where that is not
    the CT's own I, J, K order, :func:`grid_difference`), with the digits at which ``compare`` (two arrays of matched
    values; default the two shown) read otherwise; "" when they read the same at 9 digits."""
    digits = _distinguishing_digits(*(compare if compare is not None else (sizes, ct_sizes)))
    if digits is None:
        return ""
    return (f"voxels of {' x '.join(f'{v:.{digits}g}' for v in sizes)} mm, "
            f"the CT's {' x '.join(f'{v:.{digits}g}' for v in ct_sizes)} mm")


def _extent_corners(extent) -> np.ndarray:
    """The index (0, 0, 0) and, when ``extent`` (I min, I max, J min, ..., K max) holds voxels, its 8 corner indices."""
    corners = [(0, 0, 0)]
    if all(extent[2 * a] <= extent[2 * a + 1] for a in range(3)):
        corners += [(i, j, k) for i in extent[0:2] for j in extent[2:4] for k in extent[4:6]]
    return np.array(corners, dtype=float)


def _vtk_matrix(matrix: np.ndarray) -> "vtk.vtkMatrix4x4":
    """The 4x4 numpy ``matrix`` as a ``vtkMatrix4x4``."""
    result = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            result.SetElement(r, c, float(matrix[r, c]))
    return result


def grid_difference(to_world: np.ndarray, extent, volume_node) -> str:
    """What keeps the voxels of a grid off ``volume_node``'s grid, for a message; "" when Slicer takes each of them
    onto one of the CT's voxels as it is (a labelmap on this grid exported or edited on the CT's grid keeps its
    voxels).

    Args:
        to_world: the grid's 4x4 index-to-RAS matrix (mm), in the frame of the CT's own IJK-to-RAS matrix.
        extent: the grid's voxel indices (I min, I max, J min, J max, K min, K max), as ``vtkImageData.GetExtent``;
            an empty one (a max below its min) checks the origin only.
        volume_node: the CT, a volume node (its ``GetIJKToRASMatrix``).

    Returns:
        "" when

        - the matrix equals the CT's within 1e-4 per element, Slicer's own rule for one geometry
          (``vtkOrientedImageDataResample::IsEqual``, v5.6.2-v5.10.0: it then copies the voxels index for index), e.g.
          a header whose direction cosines another writer rounded to 6 decimals; or
        - each of the grid's axes stands for one of the CT's axes, in any order and sign (a label file stored in
          another axis order or flipped: expressed in the CT's voxels, the axes rounded to whole numbers form a
          signed permutation matrix), and its origin and every corner of its extent lie within
          :data:`GRID_DRIFT_TOLERANCE` (0.25) voxel of the CT's voxel centres they stand for, however far away:
          Slicer's nearest-neighbour resampling then keeps each voxel. A drift of the spacing or of the axis
          directions counts where it adds up across the extent: the far corner of 512 voxels 0.09 % larger lies
          0.46 voxel off.

        Otherwise what differs: the voxel sizes (in mm: the grid's I x J x K spacings, and the CT's along the CT's
        axes nearest to them, "along the same axes" where that is not the CT's own order) or the angle by which the axes
        are turned where an axis differs from the CT's by more than 0.1 % (``geometry.GRID_TOLERANCE``), else the shift
        of the voxel centres (mm, RAS) or the drift across the extent (voxels). A matrix that is not finite gives "its
        geometry is not finite".
    """
    from SpineSegmentationLib.geometry import GRID_TOLERANCE

    if not np.all(np.isfinite(to_world)):
        return "its geometry is not finite"
    ct = voxel_to_world(volume_node)
    if slicer.vtkOrientedImageDataResample.IsEqual(_vtk_matrix(to_world), _vtk_matrix(ct)):
        return ""  # Slicer takes the two for one geometry and copies the voxels index for index
    sizes, ct_sizes = np.linalg.norm(to_world[:3, :3], axis=0), np.linalg.norm(ct[:3, :3], axis=0)
    axes = np.linalg.solve(ct[:3, :3], to_world[:3, :3])  # the grid's axes in the CT's voxels
    permutation = np.rint(axes)
    directions = (to_world[:3, :3] / sizes).T @ (ct[:3, :3] / ct_sizes)  # cosines: grid axis (row), CT axis
    turned = float(np.degrees(np.arccos(np.clip(np.abs(directions).max(axis=1), 0.0, 1.0))).max())
    # the CT's spacing along the CT axis nearest to each of the grid's axes, said so where not in the CT's own order
    nearest = np.abs(directions).argmax(axis=1)
    matched = ct_sizes[nearest]
    along = "" if np.array_equal(nearest, [0, 1, 2]) else " along the same axes"
    # each axis of the grid stands for one of the CT's, in any order and sign (the nearest whole numbers of voxels)
    is_permutation = bool(np.all(np.abs(permutation).sum(axis=0) == 1) and np.all(np.abs(permutation).sum(axis=1) == 1))
    offset = np.linalg.solve(ct[:3, :3], to_world[:3, 3] - ct[:3, 3])  # its origin, in the CT's voxels
    corners = _extent_corners(extent)
    # where the corners lie in the CT's voxels, and the CT's voxels they stand for (not the nearest, past half a voxel)
    drift = (offset + corners @ axes.T) - (np.rint(offset) + corners @ permutation.T)
    worst = float(np.abs(drift).max())
    if is_permutation and worst <= GRID_DRIFT_TOLERANCE:
        return ""
    if not (is_permutation and np.allclose(axes, permutation, rtol=0, atol=GRID_TOLERANCE)):
        if not np.allclose(np.sort(sizes), np.sort(ct_sizes), rtol=GRID_TOLERANCE, atol=0.0):
            if len(set(nearest.tolist())) < 3:  # two axes nearest to one of the CT's: the CT's own I, J, K
                return _sizes_text(sizes, ct_sizes, (np.sort(sizes), np.sort(ct_sizes)))
            return _sizes_text(sizes, matched, (np.sort(sizes), np.sort(ct_sizes))) + along
        if not np.allclose(sizes, matched, rtol=GRID_TOLERANCE, atol=0.0):  # the CT's sizes on other axes
            if turned < 0.01:  # along the CT's axes: the CT's spacings in another order
                return _sizes_text(sizes, matched) + along
            return f"{_sizes_text(sizes, matched)}{along}, its axes turned by {turned:.2g} degrees from the CT's"
        return f"the same voxel size, but its axes turned by {turned:.2g} degrees from the CT's"
    shift = offset - np.rint(offset)
    if np.abs(shift).max() > GRID_DRIFT_TOLERANCE:
        mm = ", ".join(f"{v:.3g}" for v in np.round(ct[:3, :3] @ shift, 6) + 0.0)  # no -0 nor 1e-17
        return (f"the same voxel size, but its voxel centres shifted by part of a voxel ({mm} mm in R, A, S) from "
                "the CT's")
    permuted = np.abs(permutation).argmax(axis=0)  # the CT's axis each of the grid's axes stands for
    differs = [text + ("" if np.array_equal(permuted, [0, 1, 2]) else " along the same axes")
               for text in [_sizes_text(sizes, ct_sizes[permuted])] if text]
    if turned > 1e-9:
        differs.append(f"axes turned by {turned:.2g} degrees from the CT's")
    return (f"{' and '.join(differs) or 'a drift'}: across its extent of "
            f"{' x '.join(str(extent[2 * a + 1] - extent[2 * a] + 1) for a in range(3))} voxels this adds up to "
            f"{worst:.2g} voxel off the CT's voxel centres")


def _readable_grid(text: str) -> Optional[tuple[np.ndarray, tuple[int, ...]]]:
    """The 4x4 index-to-RAS matrix and the extent of a serialized image geometry (``vtkSegmentationConverter``), or
    None when it cannot be read: DeserializeImageGeometry fails, or gives a matrix that is not finite (it returns
    True with NaN for non-numbers between the right number of separators) or is singular (a zero spacing)."""
    output = slicer.vtkOrientedImageData()
    if not slicer.vtkSegmentationConverter.DeserializeImageGeometry(text, output, False):
        return None
    matrix = voxel_to_world(output)
    if not np.all(np.isfinite(matrix)) or np.linalg.matrix_rank(matrix[:3, :3]) < 3:
        return None
    return matrix, tuple(output.GetExtent())


def _readable_geometry(text: str) -> Optional[np.ndarray]:
    """The 4x4 index-to-RAS matrix of a serialized image geometry, or None when it cannot be read
    (:func:`_readable_grid`)."""
    grid = _readable_grid(text)
    return grid[0] if grid is not None else None


def reference_geometry(segmentation_node) -> Optional[np.ndarray]:
    """The 4x4 index-to-RAS matrix (mm, the segmentation's frame) of a segmentation node's reference image geometry:
    the grid the Segment Editor edits its segments on (a segment on another grid is resampled to it when an edit
    touches it, ``vtkSegmentationModifier::ModifyBinaryLabelmap``), and that Slicer saves the segmentation on,
    oversampled to its finest segment (``vtkSegmentation::DetermineCommonLabelmapGeometry``); v5.6.2-v5.10.0. None
    when the segmentation has none (a labelmap imported with ``ImportLabelmapToSegmentationNode``, e.g. the Data
    module's "Convert labelmap to segmentation"), or one that cannot be read (not finite, singular)."""
    name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    text = segmentation_node.GetSegmentation().GetConversionParameter(name)
    return _readable_geometry(text) if text else None


def _segments_grid(segmentation_node, segment_ids: list[str]) -> Optional[tuple[np.ndarray, tuple[int, ...]]]:
    """The 4x4 index-to-RAS matrix (mm, the segmentation's frame) and the extent (:func:`_readable_grid`) of the grid
    of the segments ``segment_ids`` of a segmentation node without a reference image geometry: that of the finest of
    their labelmaps (``vtkSegmentation::DetermineCommonLabelmapGeometry``, which the Segment Editor edits on when the
    parameter is empty; v5.6.2-v5.10.0). None when none of them holds a labelmap (all empty, or no labelmap made)."""
    ids = vtk.vtkStringArray()
    for segment_id in segment_ids:
        ids.InsertNextValue(segment_id)
    text = segmentation_node.GetSegmentation().DetermineCommonLabelmapGeometry(
        slicer.vtkSegmentation.EXTENT_UNION_OF_SEGMENTS, ids)
    return _readable_grid(text) if text else None


def _names_text(names: list[str], shown: int = 5) -> str:
    """The first ``shown`` of ``names`` joined with commas, and "and N more" for the others (a TotalSegmentator
    segmentation keeps about 100 segments)."""
    text = ", ".join(names[:shown])
    return text if len(names) <= shown else f"{text} and {len(names) - shown} more"


def check_output_segmentation(input_volume, output_segmentation, overwrite: bool) -> None:
    """Raise ValueError when ``output_segmentation`` cannot take the results of ``input_volume``: it is not a
    segmentation node or holds no ``vtkSegmentation``, or ``overwrite`` is not True or False (a "no" would read as true
    and replace the segments), or with ``overwrite`` it keeps segments that are not vertebrae (:func:`is_vertebra`)
    and

    - lies in another frame than the CT (:func:`same_frame`: another parent transform, unless the one between them
      is the identity; the results are placed under the CT's transform, which would move the kept segments), or
    - has a reference image geometry (:func:`reference_geometry`) that is not on the CT's voxel grid
      (:func:`grid_difference`), e.g. it was made on a resampled volume, or one that cannot be read, or has none and
      its kept segments' finest labelmap (:func:`_segments_grid`) is not on the CT's grid, e.g. a labelmap of another
      spacing converted to a segmentation: the import sets the CT's grid (the vertebrae at the CT's resolution), and
      Slicer would then resample the kept segments to it when editing them.

    A segmentation without kept segments (empty, or only vertebrae, which ``overwrite`` replaces) gets the CT's
    transform and grid. Call before the run starts and before the scene is changed."""
    if not isinstance(overwrite, (bool, np.bool_)):
        raise ValueError(f"overwrite must be True or False, got {overwrite!r}; pass overwrite=True only to replace "
                         "the vertebrae of a segmentation that has segments")
    if output_segmentation is None:
        return
    if not _is_a(output_segmentation, "vtkMRMLSegmentationNode"):
        raise ValueError(f"the output segmentation must be a segmentation node, not {_kind(output_segmentation)}; pass "
                         "a vtkMRMLSegmentationNode (e.g. getNode('Segmentation')), or None for a new one")
    if output_segmentation.GetSegmentation() is None:
        raise ValueError(f"the segmentation node {output_segmentation.GetName()!r} holds no segmentation "
                         "(SetAndObserveSegmentation(None)); pass a segmentation node with one, or None for a new one")
    if not overwrite or output_segmentation.GetScene() is None:  # removed: refused or replaced by import_output_folder
        return
    segmentation = output_segmentation.GetSegmentation()
    kept_ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())
                if not is_vertebra(segmentation.GetNthSegment(i))]
    if not kept_ids:
        return
    kept = _names_text([segmentation.GetSegment(segment_id).GetName() for segment_id in kept_ids])
    name, ct = output_segmentation.GetName(), input_volume.GetName()
    another = ("Choose another output segmentation (or none: a new one is made on the CT's grid; yours stays as it "
               "is)")
    if not same_frame(output_segmentation, input_volume):
        raise ValueError(
            f"the segmentation {name!r} is under {transform_text(output_segmentation)} but the CT {ct!r} under "
            f"{transform_text(input_volume)}; its results go under the CT's transform, which would move the segments "
            f"kept there ({kept}). {frame_advice(output_segmentation, input_volume, 'those segments')}; or "
            f"choose another output segmentation (or none: a new one)"
        )
    specify = ("set this one's geometry to the CT first (Segment Editor: Specify geometry, Source geometry: the CT, "
               "oversampling 1; this resamples your segments)")
    parameter = segmentation.GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
    if parameter:
        grid = _readable_grid(parameter)
        if grid is None:
            raise ValueError(
                f"the segmentation {name!r} keeps segments ({kept}) but its reference geometry cannot be read "
                f"({parameter[:80]!r}), so it is unknown whether they lie on the grid of the CT {ct!r}. {another}, or "
                f"{specify}"
            )
    else:  # e.g. a labelmap converted to a segmentation: the Segment Editor edits on its finest segment
        grid = _segments_grid(output_segmentation, kept_ids)
    difference = grid_difference(*grid, input_volume) if grid is not None else ""
    if difference:
        made_on = output_segmentation.GetNodeReference(output_segmentation.GetReferenceImageGeometryReferenceRole())
        if not parameter:
            source = " (its finest segment's: it has no reference geometry)"
        elif made_on is not None and made_on.GetID() != input_volume.GetID():
            source = f" (made on {made_on.GetName()!r})"
        else:
            source = ""
        raise ValueError(
            f"the segmentation {name!r} keeps segments ({kept}) on another grid{source} than the CT {ct!r}: "
            f"{difference}. A segmentation has one grid, "
            "to which Slicer resamples its segments when they are edited: the vertebrae would not stay at the CT's "
            f"resolution, or your segments would be resampled to the CT's grid. {another}, or {specify}"
        )


def _label_values(label_node) -> set[int]:
    from vtk.util.numpy_support import vtk_to_numpy

    values = np.unique(vtk_to_numpy(label_node.GetImageData().GetPointData().GetScalars()))
    return {int(v) for v in values} - {0}


def _terminology(label: int):
    from SpineSegmentationLib.terminology import slicer_terminology_entry, vertebra_terminology

    return vertebra_terminology(label), slicer_terminology_entry(label)


def _output_segmentation(scene, input_volume, output_segmentation, overwrite: bool, warnings: list[str]):
    name = f"{input_volume.GetName()} vertebrae"
    if output_segmentation is not None and output_segmentation.GetScene() is not scene:  # deleted during the run
        warnings.append(f"segmentation {output_segmentation.GetName()!r} was removed from the scene while the run went "
                        f"on; the results are in the new segmentation {name!r}")
        output_segmentation = None
    if output_segmentation is not None and output_segmentation.GetSegmentation().GetNumberOfSegments() > 0:
        if overwrite:
            segmentation = output_segmentation.GetSegmentation()
            segments = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
            for segment_id in segments:
                if is_vertebra(segmentation.GetSegment(segment_id)):
                    segmentation.RemoveSegment(segment_id)
            return output_segmentation
        warnings.append(
            f"segmentation {output_segmentation.GetName()!r} already has segments and was left unchanged; the results "
            f"are in the new segmentation {name!r} (pass overwrite=True to replace its segments)"
        )
        output_segmentation = None
    if output_segmentation is None:
        output_segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    return output_segmentation


def _record_voxels(segmentation_node, segment_ids: list[str]) -> None:
    """Tag each segment of ``segment_ids`` with the digest of its voxels as they are now (:data:`VOXELS_TAG`)."""
    from SpineSegmentationLib.segment_tags import digest_text  # as the command line writes it

    segmentation = segmentation_node.GetSegmentation()
    digests = segment_digests(segmentation)
    for segment_id in segment_ids:
        segmentation.GetSegment(segment_id).SetTag(VOXELS_TAG, digest_text(digests[segment_id]))


def _fill_segments(segmentation_node, label_node, vertebrae: list[Vertebra]) -> list[str]:
    """Add one segment per vertebra from ``label_node``'s shared layer; returns their segment IDs."""
    from SpineSegmentationLib.segment_tags import vertebra_tags

    segmentation = segmentation_node.GetSegmentation()
    binary = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    if segmentation.GetSourceRepresentationName() != binary and segmentation.GetNumberOfSegments():
        # kept segments of another source (a closed surface from a model): a new source erases the others
        # (vtkSegmentation::SetSourceRepresentationName invalidates non-source representations at v5.6.2)
        if not segmentation_node.CreateBinaryLabelmapRepresentation():
            raise ValueError(f"the segments of {segmentation_node.GetName()!r} cannot be converted to a binary "
                             "labelmap; convert them in the Segmentations module first")
    segmentation.SetSourceRepresentationName(binary)
    layer = slicer.vtkSlicerSegmentationsModuleLogic.CreateOrientedImageDataFromVolumeNode(label_node)
    layer.UnRegister(None)  # the caller owns the new image (vtkSlicerSegmentationsModuleLogic.h); Python keeps its own
    display = segmentation_node.GetDisplayNode()
    added = []
    for v in vertebrae:
        term, entry = _terminology(v.label)
        segment = slicer.vtkSegment()
        segment.SetName(v.name)
        segment.SetColor(*term.color_rgb)
        segment.SetNameAutoGenerated(False)  # as in segmentation.seg.nrrd: Slicer then keeps the name and colour
        segment.SetColorAutoGenerated(False)  # when a person edits the segment's terminology
        segment.AddRepresentation(binary, layer)  # one shared layer: the voxels of this segment = its label value
        segment.SetLabelValue(int(v.label))
        segment.SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), entry)
        for tag, value in vertebra_tags(v).items():  # the level, flags, raw regression and anatomy evidence
            segment.SetTag(tag, value)
        segment_id = segmentation.GenerateUniqueSegmentID(v.name)  # the name, unless a kept segment has that ID
        if not segmentation.AddSegment(segment, segment_id):
            raise ValueError(f"segment {v.name!r} could not be added to {segmentation_node.GetName()!r}")
        if not v.complete and display is not None:
            display.SetSegmentOpacity2DFill(segment_id, INCOMPLETE_OPACITY_2D_FILL)
            display.SetSegmentOpacity3D(segment_id, INCOMPLETE_OPACITY_3D)
        added.append(segment_id)
    return added


def _centroids(scene, name: str, vertebrae: list[Vertebra]):
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    node.CreateDefaultDisplayNodes()
    for v in vertebrae:
        index = node.AddControlPoint([float(c) for c in v.centroid_ras_mm], v.name)
        if not v.complete:
            node.SetNthControlPointDescription(index, INCOMPLETE_DESCRIPTION)
    node.SetLocked(True)  # centroids are results: keep them from being dragged by accident
    return node


@dataclass(frozen=True)
class TableRow:
    """One row of the results table (one vertebra)."""

    name: str
    label: int
    complete: bool
    p_label: float
    p_complete: float
    volume_cm3: float


def fill_table(node, rows: list[TableRow]) -> None:
    """Replace the columns and rows of the results table ``node`` by ``rows`` (columns :data:`TABLE_COLUMNS`)."""
    level, label, complete = vtk.vtkStringArray(), vtk.vtkIntArray(), vtk.vtkStringArray()
    confidence, p_complete, volume = vtk.vtkDoubleArray(), vtk.vtkDoubleArray(), vtk.vtkDoubleArray()
    columns = (level, label, complete, confidence, p_complete, volume)
    for array, (column, _) in zip(columns, TABLE_COLUMNS):
        array.SetName(column)
    for row in rows:
        level.InsertNextValue(row.name)
        label.InsertNextValue(int(row.label))
        complete.InsertNextValue("yes" if row.complete else "no")
        confidence.InsertNextValue(round(row.p_label, 4))
        p_complete.InsertNextValue(round(row.p_complete, 4))
        volume.InsertNextValue(round(row.volume_cm3, 2))
    locked = node.GetLocked()
    node.SetLocked(False)
    node.RemoveAllColumns()
    for array, (column, unit) in zip(columns, TABLE_COLUMNS):
        node.AddColumn(array)
        if unit:
            node.SetColumnUnitLabel(column, unit)
    node.SetColumnDescription("Confidence", "probability of the level label (Lessmann et al. 2019, section 3.4)")
    node.SetColumnDescription("P(complete)", "probability that the vertebra is completely visible (section 3.5)")
    node.SetUseColumnTitleAsColumnHeader(True)  # vtkMRMLTableNode.h since 5.6; the "ColumnName" form is deprecated
    node.SetLocked(locked)


def _table(scene, name: str, vertebrae: list[Vertebra]):
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    fill_table(node, [TableRow(v.name, v.label, v.complete, v.p_label, v.p_complete, v.volume_mm3 / 1000.0)
                      for v in vertebrae])
    node.SetLocked(True)
    return node


def result_nodes(segmentation_node) -> list:
    """The centroid markups and results table nodes the module made for ``segmentation_node``: the nodes it references
    under :data:`RESULT_REFERENCE_ROLES` (set by :func:`import_output_folder`), those it has (0 to 2 nodes). A node of
    the same name that it does not reference (one a user made, another segmentation's) is not among them."""
    found = (segmentation_node.GetNodeReference(role) for role in RESULT_REFERENCE_ROLES)
    return [node for node in found if node is not None]


def remove_outdated_result_nodes(nodes: list) -> list[str]:
    """Remove from their scene the earlier result nodes ``nodes`` (:func:`result_nodes` taken before the new results
    were referenced) that no node of the scene references under :data:`RESULT_REFERENCE_ROLES` any longer. A node still
    referenced so (by another segmentation node, e.g. one copied with its references) is kept, as is one no longer in a
    scene. A removed node's display and storage nodes are removed with it (``vtkMRMLScene::RemoveNode`` leaves them
    in the scene, one orphan display node per load). Returns the names of the removed nodes."""
    removed = []
    for node in nodes:
        scene = node.GetScene()
        if scene is not None and node.GetID() not in _result_node_ids(scene):
            removed.append(node.GetName())
            owned = _display_and_storage_nodes(node)
            scene.RemoveNode(node)
            for part in owned:
                if part.GetScene() is scene:
                    scene.RemoveNode(part)
    return removed


def _display_and_storage_nodes(node) -> list:
    """The display nodes (a markups node's) and storage nodes (after the scene was saved) of ``node``."""
    owned = []
    if _is_a(node, "vtkMRMLDisplayableNode"):
        owned += [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
    if _is_a(node, "vtkMRMLStorableNode"):
        owned += [node.GetNthStorageNode(i) for i in range(node.GetNumberOfStorageNodes())]
    return [part for part in owned if part is not None]


def _result_node_ids(scene) -> set[str]:
    """IDs of the nodes that some node of ``scene`` references under :data:`RESULT_REFERENCE_ROLES`."""
    referenced = (scene.GetNthNode(i).GetNodeReference(role)
                  for i in range(scene.GetNumberOfNodes()) for role in RESULT_REFERENCE_ROLES)
    return {node.GetID() for node in referenced if node is not None}


def import_output_folder(
    scene,
    output_dir,
    input_volume,
    output_segmentation=None,
    overwrite: bool = False,
) -> ImportedResults:
    """Build the segmentation, centroid and table nodes of an output folder in ``scene``.

    Args:
        scene: the MRML scene (``slicer.mrmlScene`` in the application).
        output_dir: folder written by ``spineseg segment`` (``labels.nii.gz`` + ``vertebrae.json``).
        input_volume: the ``vtkMRMLScalarVolumeNode`` that was segmented; the label map must lie on its grid.
            New nodes are placed under its parent transform, if any, and get its grid as reference geometry.
        output_segmentation: segmentation node to fill, or None for a new one. It is put under the CT's parent
            transform and gets the CT's grid as reference geometry (the segments kept with ``overwrite`` are already
            there, :func:`check_output_segmentation`); a warning names a transform it left. One that already has
            segments only has its vertebrae replaced with ``overwrite=True``; otherwise a new node is made and
            :attr:`ImportedResults.warnings` says so. When the results go into it, the centroid and table nodes
            made earlier for it (:func:`result_nodes`) are removed once the new ones are referenced (one of each,
            the newest); nodes of the same names that it does not reference (a user's, another segmentation's) stay.
        overwrite: replace the vertebrae of ``output_segmentation`` (:func:`is_vertebra`); its other segments
            are kept.

    Returns:
        The nodes, the vertebrae (cranio-caudal order), the run message and warnings.

    Raises:
        ValueError: the folder is incomplete or damaged, the label map is not on the input volume's grid, or
            label map and ``vertebrae.json`` disagree (a labelled vertebra without entry or the reverse); the input
            volume, or with ``overwrite`` the output segmentation, is no longer in ``scene`` (removed while the run
            went on; without ``overwrite`` a removed output segmentation is replaced by a new node, with a
            warning); ``input_volume`` is not a scalar volume node or ``output_segmentation`` not a segmentation
            node; with ``overwrite`` the output segmentation keeps other segments under another transform than the
            CT or with a reference geometry off the CT's grid (:func:`check_output_segmentation`). The scene is
            unchanged when this is raised.
    """
    check_ct_volume(input_volume)
    check_output_segmentation(input_volume, output_segmentation, overwrite)
    if input_volume.GetScene() is not scene:
        raise ValueError(f"the CT {input_volume.GetName()!r} is no longer in the scene (removed while the run went "
                         "on), so its results were not imported; load the CT again and run once more")
    if overwrite and output_segmentation is not None and output_segmentation.GetScene() is not scene:
        raise ValueError(f"the segmentation {output_segmentation.GetName()!r} is no longer in the scene (removed while "
                         "the correction ran), so its result was not imported")
    folder: OutputFolder = read_output_folder(output_dir)
    label_node = read_label_volume(folder.labels_path)
    check_same_grid(label_node, input_volume, folder.labels_path)
    # the CT's grid exactly: check_same_grid took voxel centres within a quarter voxel of the CT's (labels.nii.gz keeps
    # its affine in float32, up to 1.2e-4 mm off beyond 2048 mm from the scanner's origin; another writer may round
    # it); the labels are taken index for index, so this moves them by up to that quarter voxel onto the CT's voxels
    label_node.CopyOrientation(input_volume)
    listed = {v.label for v in folder.vertebrae}
    present = _label_values(label_node)
    if present != listed:
        raise ValueError(
            f"{folder.labels_path} and vertebrae.json disagree: labels only in the label map {sorted(present - listed)}, "
            f"only in vertebrae.json {sorted(listed - present)}; the output folder is damaged"
        )
    for v in folder.vertebrae:
        _terminology(v.label)  # raises ValueError for a non-vertebra label before the scene is touched

    warnings: list[str] = []
    segmentation_node = _output_segmentation(scene, input_volume, output_segmentation, overwrite, warnings)
    earlier = result_nodes(segmentation_node)  # of the results it held before: outdated once the new ones are in
    segmentation_node.CreateDefaultDisplayNodes()
    transform_id = _transform_id(input_volume)
    if segmentation_node is output_segmentation and _transform_id(segmentation_node) != transform_id:
        # its kept segments, if any, lie in the CT's frame (check_output_segmentation refused another frame): the node
        # moves under the CT's transform without moving them relative to the CT
        warnings.append(f"segmentation {segmentation_node.GetName()!r} was under {transform_text(segmentation_node)}; "
                        f"it is now under {transform_text(input_volume)}, as the CT {input_volume.GetName()!r} is, so "
                        "that the vertebrae lie on the CT")
    # under the CT's transform first: the reference geometry is the CT's grid taken into the segmentation's
    # frame (vtkMRMLSegmentationNode.cxx), so set before, it would carry the transform once more
    segmentation_node.SetAndObserveTransformNodeID(transform_id)
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(input_volume)
    _record_voxels(segmentation_node, _fill_segments(segmentation_node, label_node, folder.vertebrae))

    base = input_volume.GetName()
    centroids_node = _centroids(scene, f"{base} vertebra centroids", folder.vertebrae)
    table_node = _table(scene, f"{base} vertebrae table", folder.vertebrae)
    centroids_node.SetAndObserveTransformNodeID(transform_id)
    segmentation_node.SetNodeReferenceID(CENTROIDS_REFERENCE_ROLE, centroids_node.GetID())
    segmentation_node.SetNodeReferenceID(TABLE_REFERENCE_ROLE, table_node.GetID())
    remove_outdated_result_nodes(earlier)
    for warning in warnings:
        logging.warning(warning)
    return ImportedResults(segmentation_node, centroids_node, table_node, folder.vertebrae, folder.message, warnings)
