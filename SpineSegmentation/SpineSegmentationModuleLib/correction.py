"""The correction workflow in the scene: edit tracking, click-through and re-run, renumbering, alternatives,
completeness, one-step undo.

Needs only the MRML classes (3D Slicer or the PyPI ``slicer-core`` package); the network runs in a child process
(``python -m SpineSegmentationLib.correction_cli click|rerun``) through the same runner as the segmentation, and
the results come back through :func:`~.mrml_import.import_output_folder`. Renumbering, alternatives and
completeness need no network: they run here, with ``SpineSegmentationLib.renumbering`` (numpy only).

* **Edits.** :class:`EditTracker` observes ``vtkSegmentation::SourceRepresentationModified`` of the segmentation
  (invoked with the segment ID whenever a segment's voxels change, e.g. in the Segment Editor; tag and name
  changes invoke ``SegmentModified`` instead and are not edits) and sets the segment tag
  ``SpineSegmentation.Edited`` = ``true``. The module's own changes run inside :meth:`EditTracker.suspended`.
  Each vertebra also carries a digest of the voxels the module gave it (``SpineSegmentation.Voxels``, saved with
  the scene); one that no longer matches is tagged edited when the tracker starts observing and before every
  network step (:func:`tag_unseen_edits`), so that edits made where no tracker saw them are kept too.
* **Re-run keeping my edits.** Segments tagged edited are kept voxel for voxel and are the instance memory; every
  other vertebra is segmented again around them (``rerun_with_edits(redo_labels=...)``).
* **Undo.** Before each correction the segmentation is copied (:class:`UndoState`, one step); Undo puts the copy
  back.
* **Levels.** A segment's level is its ``SpineSegmentation.Label`` tag (VerSe number); the network's regressed
  value is kept in ``SpineSegmentation.LabelRegressed`` (from ``vertebrae.json``). A segment a person drew
  (no tags) gets its level from its name ("L3") or, failing that, a free level for the run; it then counts as
  certain of its level in renumbering (regressed value = its level's position). Segments that are not vertebrae
  (:func:`~.mrml_import.is_vertebra`: "Spinal canal", a structure chosen from a terminology) are left as they are
  by every step. Renumbering tags the named
  segment ``SpineSegmentation.LevelStated`` = ``true`` (an applied alternative tags every vertebra; a new
  statement clears the earlier ones), and the network steps pass those levels on (``--stated``), so that a click
  or a re-run keeps them. A vertebra renamed to another level in the segments table states its level the same way
  (:meth:`CorrectionLogic.applyRename`).
* **Completeness.** Toggling a vertebra's flag sets its ``SpineSegmentation.Complete`` tag and tags it
  ``SpineSegmentation.CompleteStated`` = ``true``; the network steps pass those flags on (``--complete`` /
  ``--incomplete``), so that a click or a re-run keeps them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import numbers
import shutil
import tempfile
from collections.abc import Iterable as IterableABC
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import slicer
import vtk

from .command import cli_command, process_environment
from .logic import INPUT_FILE, SegmentationRun, SpineSegmentationProcessLogic, check_ct_in_scene, export_volume
from .mrml_import import (
    CENTROIDS_REFERENCE_ROLE,
    INCOMPLETE_OPACITY_2D_FILL,
    INCOMPLETE_OPACITY_3D,
    LABEL_TAG,
    TABLE_REFERENCE_ROLE,
    TAG_PREFIX,
    VOXELS_TAG,
    ImportedResults,
    TableRow,
    _is_a,
    _kind,
    check_output_segmentation,
    fill_table,
    frame_advice,
    grid_difference,
    import_output_folder,
    is_vertebra,
    same_frame,
    same_voxel_grid,
    segment_tag,
    transform_text,
    voxel_to_world,
)
from .voxel_digests import segment_digests, segment_layers

EDITED_TAG = TAG_PREFIX + "Edited"
REGRESSED_TAG = TAG_PREFIX + "LabelRegressed"
COMPLETE_TAG = TAG_PREFIX + "Complete"
PLABEL_TAG = TAG_PREFIX + "PLabel"
PCOMPLETE_TAG = TAG_PREFIX + "PComplete"
LEVEL_STATED_TAG = TAG_PREFIX + "LevelStated"
COMPLETE_STATED_TAG = TAG_PREFIX + "CompleteStated"
RIB_SIDES_TAG = TAG_PREFIX + "RibSides"
SACRUM_BELOW_TAG = TAG_PREFIX + "SacrumBelow"
#: File names written for the correction process.
LABELS_FILE = "labels.nrrd"
#: Opacities of a completely visible vertebra (Slicer's defaults).
COMPLETE_OPACITY_2D_FILL = 1.0
COMPLETE_OPACITY_3D = 1.0


def column_levels() -> tuple[int, ...]:
    """The levels a vertebra of the column can have, cranio-caudal (C1..T12, T13, L1..L6; VerSe numbers; not the
    sacrum), from the library's anatomy (``anatomy.column_position``, the one source of the column order)."""
    from SpineSegmentationLib.anatomy import SACRUM, VERSE_NAMES, column_position

    return tuple(sorted((label for label in VERSE_NAMES if label != SACRUM), key=column_position))


def _segment_ids(segmentation_node) -> list[str]:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]


def vertebra_ids(segmentation_node) -> list[str]:
    """IDs of the segments that are vertebrae (:func:`~.mrml_import.is_vertebra`), in segment order; the module
    leaves every other segment as it is."""
    segmentation = segmentation_node.GetSegmentation()
    return [i for i in _segment_ids(segmentation_node) if is_vertebra(segmentation.GetSegment(i))]


def segment_level(segment) -> Optional[int]:
    """VerSe level of a segment: its ``SpineSegmentation.Label`` tag, else its name ("L3"), else None."""
    from SpineSegmentationLib.anatomy import verse_label

    tag = segment_tag(segment, LABEL_TAG)
    if tag is not None and tag.strip().lstrip("-").isdigit():
        return int(tag)
    try:
        return verse_label(segment.GetName())
    except ValueError:
        return None


def renamed_levels(segmentation_node) -> dict[str, int]:
    """Vertebrae a person renamed to another level (in the segments table): segment ID -> the level of the new
    name. Only segments with the module's ``Label`` tag count; a name that is not a level ("my L3") is not a
    statement."""
    from SpineSegmentationLib.anatomy import verse_label

    segmentation = segmentation_node.GetSegmentation()
    renamed = {}
    for segment_id in vertebra_ids(segmentation_node):
        segment = segmentation.GetSegment(segment_id)
        tag = segment_tag(segment, LABEL_TAG)
        if tag is None or not tag.strip().lstrip("-").isdigit():
            continue
        try:
            named = verse_label(segment.GetName() or "")
        except ValueError:
            continue
        if named != int(tag):
            renamed[segment_id] = named
    return renamed


def holds_vertebrae(segmentation_node) -> bool:
    """Whether ``segmentation_node`` holds vertebrae this module made (a segment with the ``Label`` tag): the ones
    whose table, alternatives and edits the module shows and tracks."""
    if segmentation_node is None:
        return False
    segmentation = segmentation_node.GetSegmentation()
    return any(segment_tag(segmentation.GetSegment(i), LABEL_TAG) is not None for i in _segment_ids(segmentation_node))


def is_edited(segment) -> bool:
    return segment_tag(segment, EDITED_TAG) == "true"


def is_level_stated(segment) -> bool:
    return segment_tag(segment, LEVEL_STATED_TAG) == "true"


def is_stated_complete(segment) -> bool:
    """A person flagged the segment completely visible (tags ``CompleteStated`` and ``Complete``)."""
    return segment_tag(segment, COMPLETE_STATED_TAG) == "true" and segment_tag(segment, COMPLETE_TAG) != "false"


def is_stated_incomplete(segment) -> bool:
    """A person flagged the segment incompletely visible (tags ``CompleteStated`` and ``Complete``)."""
    return segment_tag(segment, COMPLETE_STATED_TAG) == "true" and segment_tag(segment, COMPLETE_TAG) == "false"


def tag_unseen_edits(segmentation_node) -> list[str]:
    """Tag as edited the vertebrae whose voxels no longer match the digest the module recorded when it gave them
    (:data:`~.mrml_import.VOXELS_TAG`): edits no :class:`EditTracker` saw (made before the module was opened, in an
    earlier session of a saved scene, by a script). Returns the IDs tagged now.

    Only while the source is a binary labelmap, as the module wrote it: labelmaps made from another source (a closed
    surface made the source) never match the digest, and nobody edited them for that."""
    segmentation = segmentation_node.GetSegmentation()
    binary = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    if segmentation.GetSourceRepresentationName() != binary:
        return []
    from SpineSegmentationLib.segment_tags import digest_text  # as the module and the command line write it

    digests = segment_digests(segmentation)
    tagged = []
    for segment_id in vertebra_ids(segmentation_node):
        segment = segmentation.GetSegment(segment_id)
        recorded = segment_tag(segment, VOXELS_TAG)
        if recorded is not None and not is_edited(segment) and recorded != digest_text(digests[segment_id]):
            segment.SetTag(EDITED_TAG, "true")
            tagged.append(segment_id)
    return tagged


# --------------------------------------------------------------------------------------------------------------
# edit tracking and undo


class EditTracker:
    """Tags a segment ``SpineSegmentation.Edited`` = ``true`` when its voxels change.

    It observes ``vtkSegmentation::SourceRepresentationModified``. Slicer invokes that event with the segment ID
    (Segment Editor), with no call data (a labelmap layer modified in place) or with an object pointer
    (``vtkSegmentation.cxx``: source representation changed, segment moved to its own layer), so the call data is
    not used: the voxels of every segment are compared with a digest taken when tracking started and after each
    change (:func:`segment_digests`), and the segments whose voxels differ are tagged.

    Segments added, removed or modified (``SegmentAdded``, ``SegmentRemoved``, ``SegmentModified``: names, tags)
    only renew the digests: the Segment Editor's own Undo/Redo restores voxels together with names and tags
    (``vtkSegmentationHistory::RestoreState`` copies whole segments at v5.6.2) and invokes no
    ``SourceRepresentationModified``; without this, the next paint stroke tagged every segment that Undo restored.
    A paint stroke changes the voxels (``SourceRepresentationModified``) before the effect sets the segment's
    status tag (``qSlicerSegmentEditorAbstractEffect::modifySegmentByLabelmap``), so the order keeps edits.

    Every segmentation it was asked to observe stays tracked until :meth:`stop` (the scene closes), so that a
    segment painted while the module shows another segmentation is still tagged. A node that is given another
    ``vtkSegmentation`` object (``vtkMRMLSegmentationNode::SetAndObserveSegmentation``, which invokes
    ``SegmentationChangedEvent`` at v5.6.2-v5.10.0: the proxy node of a sequence browser that saves changes gets
    the object of each item it browses to, by a shallow ``CopyContent``) is tracked on its new object from then on.

    Example::

        tracker = EditTracker()
        tracker.observe(segmentationNode)       # from now on, painting in L3 tags L3 as edited
        with tracker.suspended():
            ...                                 # the module's own changes are not edits
        tracker.stop()                          # every observer is removed
    """

    def __init__(self) -> None:
        # id(vtkSegmentation) -> [segmentation, observer tags, digests, node, tag of the node's observer]
        self._tracked: dict[int, list] = {}
        self._suspended = 0
        self._tagging = False

    def observe(self, segmentation_node) -> None:
        """Track ``segmentation_node`` too (no-op when tracked already; None: stop tracking all). Segmentations
        whose node has left the scene are let go here and after each :meth:`suspended` block."""
        if segmentation_node is None:
            self.stop()
            return
        self._let_go_of_removed()
        segmentation = segmentation_node.GetSegmentation()
        if segmentation is None or id(segmentation) in self._tracked:
            return  # no vtkSegmentation (SetAndObserveSegmentation(None)): nothing to track; or tracked already
        tag_unseen_edits(segmentation_node)  # edits made before it was observed
        tags = [segmentation.AddObserver(slicer.vtkSegmentation.SourceRepresentationModified, self._on_modified)]
        for event in (slicer.vtkSegmentation.SegmentAdded, slicer.vtkSegmentation.SegmentRemoved,
                      slicer.vtkSegmentation.SegmentModified):
            tags.append(segmentation.AddObserver(event, self._on_segments_changed))
        node_tag = segmentation_node.AddObserver(slicer.vtkMRMLSegmentationNode.SegmentationChangedEvent,
                                                 self._on_segmentation_replaced)
        self._tracked[id(segmentation)] = [segmentation, tags, segment_digests(segmentation), segmentation_node,
                                           node_tag]

    def _let_go(self, key: int) -> None:
        segmentation, tags, _, node, node_tag = self._tracked.pop(key)
        for tag in tags:
            segmentation.RemoveObserver(tag)
        node.RemoveObserver(node_tag)

    def _let_go_of_removed(self) -> None:
        """Stop tracking segmentations whose node has left the scene."""
        for key, entry in list(self._tracked.items()):
            if entry[3].GetScene() is None:
                self._let_go(key)

    def _on_segmentation_replaced(self, caller, event) -> None:
        """The node ``caller`` holds another ``vtkSegmentation`` object (or None): track that one instead (edits made
        in it before are found by their voxel digests, :func:`tag_unseen_edits`). The widget's own observer of this
        event may have called :meth:`observe` on the new object first: that entry is kept, not digested again."""
        current = caller.GetSegmentation()
        for key, entry in list(self._tracked.items()):
            if entry[3] is caller and entry[0] is not current:
                self._let_go(key)
        if current is not None and caller.GetScene() is not None:
            self.observe(caller)  # no-op when tracked already

    def tracks(self, segmentation_node) -> bool:
        return segmentation_node is not None and id(segmentation_node.GetSegmentation()) in self._tracked

    def digests_after_suspended(self, segmentation_node) -> Optional[dict]:
        """Right after a :meth:`suspended` block: the digests it recomputed at its end when ``segmentation_node`` is
        tracked, else None (nothing computed here)."""
        entry = self._tracked.get(id(segmentation_node.GetSegmentation()))
        return dict(entry[2]) if entry is not None else None

    @property
    def suspending(self) -> bool:
        """True inside :meth:`suspended`: the module itself is changing the segments."""
        return self._suspended > 0

    def stop(self) -> None:
        """Remove every observer (no-op when not tracking)."""
        for key in list(self._tracked):
            self._let_go(key)

    @contextlib.contextmanager
    def suspended(self):
        """Changes made inside this block are not tagged as edits."""
        self._suspended += 1
        try:
            yield
        finally:
            self._suspended -= 1
            if not self._suspended:
                self._let_go_of_removed()
                for entry in self._tracked.values():  # unchanged layers cost no reading (voxel_digests)
                    entry[2] = segment_digests(entry[0])

    def _on_segments_changed(self, caller, event) -> None:
        entry = self._tracked.get(id(caller))
        if self._suspended or self._tagging or entry is None:
            return
        entry[2] = segment_digests(caller)

    def _on_modified(self, caller, event) -> None:
        entry = self._tracked.get(id(caller))
        if self._suspended or entry is None:
            return
        digests = segment_digests(caller)
        self._tagging = True  # SetTag invokes SegmentModified: the digests are renewed below
        try:
            for segment_id, digest in digests.items():
                before = entry[2].get(segment_id)
                if digest == before or (before is None and digest[0] == 0):
                    continue  # unchanged, or a new segment that is still empty
                segment = caller.GetSegment(segment_id)
                if segment is not None and is_vertebra(segment) and not is_edited(segment):
                    segment.SetTag(EDITED_TAG, "true")
        finally:
            self._tagging = False
        entry[2] = digests


class UndoState:
    """One-step undo: a deep copy of a segmentation (segments, voxels, tags) kept outside the scene.

    It belongs to the node object it was taken from (a node of a later scene may get the same ID), and it is not
    put back over voxels edited after the correction: the digests of the segments as the correction left them
    (:meth:`settle`) must still hold, else the edits would be lost without a trace.
    """

    def __init__(self) -> None:
        self._copy = None
        self._node = None
        self._after: Optional[dict] = None
        self._names: dict[str, str] = {}  # segment ID -> name, as the correction left them
        self._auto: dict[str, tuple[bool, bool]] = {}  # segment ID -> name, colour auto-generated, in the copy
        self._vertebrae: set[str] = set()  # the IDs of the vertebrae the correction left

    @property
    def available(self) -> bool:
        """A step is saved (for :attr:`node`; :meth:`available_for` tells whether it can go back into a node)."""
        return self._copy is not None

    @property
    def node(self):
        """The segmentation node the saved step belongs to (the one the last correction changed), or None."""
        return self._node if self._copy is not None else None

    def available_for(self, segmentation_node) -> bool:
        """:meth:`restore` can put a step back into ``segmentation_node`` (the node object the last correction
        changed; another node, even one with the same ID in a later scene, has nothing to undo)."""
        return self._copy is not None and segmentation_node is not None and segmentation_node is self._node

    def save(self, segmentation_node) -> tuple:
        """Keep a copy of ``segmentation_node``'s segments; returns the step it replaces (for :meth:`put_back`)."""
        replaced = (self._copy, self._node, self._after, self._auto)
        segmentation = segmentation_node.GetSegmentation()
        copy = slicer.vtkSegmentation()
        copy.DeepCopy(segmentation)
        # vtkSegment::DeepCopyMetadata copies name, colour, label value and tags, not whether the name and colour
        # were typed or generated (v5.6.2-v5.10.0): kept here, or a typed "Spinal canal" came back as generated
        self._auto = {i: (segmentation.GetSegment(i).GetNameAutoGenerated(),
                          segmentation.GetSegment(i).GetColorAutoGenerated()) for i in _segment_ids(segmentation_node)}
        self._copy, self._node, self._after = copy, segmentation_node, None
        return replaced

    def put_back(self, replaced: tuple) -> None:
        """Return to the step :meth:`save` replaced (the correction was not applied)."""
        self._copy, self._node, self._after, self._auto = replaced

    def settle(self, segmentation_node, digests: Optional[dict] = None) -> None:
        """Record the segments as the correction just applied left them (``digests``: their
        :func:`segment_digests` when already computed)."""
        if segmentation_node is self._node:
            segmentation = segmentation_node.GetSegmentation()
            self._after = digests if digests is not None else segment_digests(segmentation)
            self._names = {i: segmentation.GetSegment(i).GetName() for i in self._after}
            self._vertebrae = set(vertebra_ids(segmentation_node))

    def clear(self) -> None:
        """Forget the saved state (the scene is closing)."""
        self._copy, self._node, self._after = None, None, None

    def restore(self, segmentation_node, tracker: Optional[EditTracker] = None) -> bool:
        """Put the saved vertebrae back into ``segmentation_node``; False when nothing was saved for this node.

        Only vertebrae are undone: every other segment (one added after the correction, a canal drawn in the
        Segment Editor, a segment renamed or recoloured since) is kept as it is now, in its place.

        Raises:
            ValueError: voxels of a vertebra were edited, or a vertebra was removed, after the correction; nothing
                is changed (the step is kept).
        """
        if not self.available_for(segmentation_node):
            return False
        segmentation = segmentation_node.GetSegmentation()
        ids = _segment_ids(segmentation_node)
        vertebrae = self._vertebrae if self._after is not None else set(vertebra_ids(segmentation_node))
        if self._after is not None:
            now = segment_digests(segmentation)
            changed = [self._names[i] for i in self._after if i in vertebrae and i in now and now[i] != self._after[i]]
            removed = [self._names[i] for i in self._after if i in vertebrae and i not in now]
            if changed or removed:
                what = "; ".join(part for part in (
                    f"voxels of {', '.join(map(repr, changed))} edited" if changed else "",
                    f"{', '.join(map(repr, removed))} removed" if removed else "") if part)
                raise ValueError(f"the vertebrae were changed after the last correction ({what}: Segment Editor); "
                                 "undoing it would discard those changes, so nothing was undone. Undo them in the "
                                 "Segment Editor first.")
        others = [(index, i) for index, i in enumerate(ids) if i not in vertebrae]
        display = segmentation_node.GetDisplayNode()
        shown = {i: display.GetSegmentVisibility(i) for i in ids} if display else {}
        with tracker.suspended() if tracker is not None else contextlib.nullcontext():
            kept = slicer.vtkSegmentation()
            for _, segment_id in others:  # moved out and back: DeepCopy replaces every segment
                kept.CopySegmentFromSegmentation(segmentation, segment_id, True)
            segmentation.DeepCopy(self._copy)
            for segment_id, (name_generated, color_generated) in self._auto.items():
                segment = segmentation.GetSegment(segment_id)
                if segment is not None:
                    segment.SetNameAutoGenerated(name_generated)
                    segment.SetColorAutoGenerated(color_generated)
            for segment_id in _segment_ids(segmentation_node):  # one removed since the correction stays removed
                if segment_id not in ids and not is_vertebra(segmentation.GetSegment(segment_id)):
                    segmentation.RemoveSegment(segment_id)
            for index, segment_id in others:
                if segmentation.GetSegment(segment_id) is not None:
                    segmentation.RemoveSegment(segment_id)  # the copy's older state of this segment
                segmentation.CopySegmentFromSegmentation(kept, segment_id, True)
                segmentation.SetSegmentIndex(segment_id, min(index, segmentation.GetNumberOfSegments() - 1))
        for segment_id, visible in shown.items():  # the copy's segments come back shown (a new display entry)
            if segmentation.GetSegment(segment_id) is not None:
                display.SetSegmentVisibility(segment_id, visible)
        _update_display(segmentation_node)
        self.clear()
        return True


# --------------------------------------------------------------------------------------------------------------
# segments <-> label maps and vertebrae


def segment_levels(segmentation_node) -> dict[str, int]:
    """Segment ID -> VerSe level for every vertebra segment (:func:`vertebra_ids`); vertebrae without a level
    (drawn by a person, not named) get free column levels.

    Raises:
        ValueError: if two segments have the same level (the label map would merge them).
    """
    segmentation = segmentation_node.GetSegmentation()
    levels: dict[str, int] = {}
    unknown = []
    for segment_id in vertebra_ids(segmentation_node):
        level = segment_level(segmentation.GetSegment(segment_id))
        if level is None:
            unknown.append(segment_id)
        elif level in levels.values():
            other = next(k for k, v in levels.items() if v == level)
            raise ValueError(f"segments {other!r} and {segment_id!r} both have level {level}; rename one of them")
        else:
            levels[segment_id] = level
    free = [v for v in column_levels() if v not in levels.values()]
    if len(unknown) > len(free):
        raise ValueError(f"too many segments without a vertebra level: {unknown}")
    levels.update(zip(unknown, free))
    return levels


def export_label_map(segmentation_node, reference_volume, path: Path) -> dict[str, int]:
    """Write the vertebra segments as one label map on ``reference_volume``'s grid (NRRD), voxel value = level.

    Returns:
        Segment ID -> level written (see :func:`segment_levels`).

    Raises:
        ValueError: two segments with one level, or the export or the write fails.
    """
    from vtk.util.numpy_support import vtk_to_numpy

    levels = segment_levels(segmentation_node)
    ids = vtk.vtkStringArray()
    order = list(levels)
    for segment_id in order:
        ids.InsertNextValue(segment_id)
    scene = segmentation_node.GetScene()
    before = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    label_node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "SpineSegmentation export")
    try:
        if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                segmentation_node, ids, label_node, reference_volume):
            raise ValueError(f"the segments of {segmentation_node.GetName()!r} could not be exported")
        # the export numbers the segments 1..N in the order given; turn that into their levels
        values = vtk_to_numpy(label_node.GetImageData().GetPointData().GetScalars())
        lut = np.zeros(len(order) + 1, dtype=np.int16)
        lut[1:] = [levels[s] for s in order]
        values[:] = lut[values]
        label_node.GetImageData().Modified()
        storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
        storage.SetFileName(str(path))
        storage.SetUseCompression(False)
        if not storage.WriteData(label_node):
            raise ValueError(f"cannot write {path}; check free disk space in the temporary folder")
    finally:
        for i in reversed(range(scene.GetNumberOfNodes())):
            node = scene.GetNthNode(i)
            if node is not None and node.GetID() not in before:
                scene.RemoveNode(node)
    return levels


def _centroid_z(segment) -> float:
    bounds = [0.0] * 6
    segment.GetBounds(bounds)
    return 0.5 * (bounds[4] + bounds[5])


def _regressed(tag: Optional[str], level: int) -> float:
    """The ``LabelRegressed`` tag's value, or the level's column position where the tag is missing or not a finite
    number (a segment a person drew; "nan", which earlier versions wrote into the .seg.nrrd)."""
    from SpineSegmentationLib.anatomy import column_position

    value = float(tag) if tag else math.nan
    return value if math.isfinite(value) else float(column_position(level))


def vertebrae_from_segments(segmentation_node) -> list:
    """The segments with a column level as ``SpineSegmentationLib.result.Vertebra`` objects (for renumbering).

    ``label_regressed`` is the ``LabelRegressed`` tag, or the level's position for a segment a person drew;
    ``rib_sides`` and ``sacrum_below`` come from the ``RibSides`` and ``SacrumBelow`` tags (None without them);
    ``centroid_ras_mm`` holds only the superior coordinate that orders the column (centre of the segment's
    bounds); volumes are not computed (0).

    Raises:
        ValueError: a ``RibSides`` tag other than 0, 1 or 2, a ``SacrumBelow`` tag other than true or false, or a
            ``PLabel`` tag that is not a probability in [0, 1] (names the segment; remove or fix the tag in the
            Segmentations module).
    """
    from SpineSegmentationLib.anatomy import vertebra_name
    from SpineSegmentationLib.result import Vertebra

    segmentation = segmentation_node.GetSegmentation()
    out = []
    column = column_levels()
    for segment_id in vertebra_ids(segmentation_node):
        segment = segmentation.GetSegment(segment_id)
        level = segment_level(segment)
        if level not in column:
            continue
        regressed = segment_tag(segment, REGRESSED_TAG)
        out.append(Vertebra(
            label=level, name=vertebra_name(level), complete=segment_tag(segment, COMPLETE_TAG) != "false",
            p_complete=float("nan"), p_label=_probability_tag(segment, PLABEL_TAG, 1.0),
            label_regressed=_regressed(regressed, level),
            centroid_ras_mm=[0.0, 0.0, _centroid_z(segment)], volume_mm3=0.0, edited=is_edited(segment),
            rib_sides=_evidence_tag(segment, RIB_SIDES_TAG, {"0": 0, "1": 1, "2": 2}),
            sacrum_below=_evidence_tag(segment, SACRUM_BELOW_TAG, {"true": True, "false": False}),
            level_stated=is_level_stated(segment),
            complete_stated=segment_tag(segment, COMPLETE_STATED_TAG) == "true",
        ))
    return out


def _probability_tag(segment, tag: str, default: float) -> float:
    """The value of a probability tag (``PLabel``, ``PComplete``), ``default`` when the segment has none.

    Raises:
        ValueError: the tag is not a number in [0, 1] (names the segment, the tag and the fix)."""
    text = segment_tag(segment, tag)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan  # refused below, as a number outside [0, 1]
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"segment {segment.GetName()!r}: tag {tag} is {text!r}, expected a probability between 0 "
                         "and 1; fix or remove the tag (Segmentations module)")
    return value


def _evidence_tag(segment, tag: str, values: dict):
    """The value of an anatomy-evidence tag, None when the segment has none."""
    text = segment_tag(segment, tag)
    if text is None:
        return None
    if text not in values:
        raise ValueError(f"segment {segment.GetName()!r}: tag {tag} is {text!r}, expected one of "
                         f"{', '.join(values)}; fix or remove the tag (Segmentations module)")
    return values[text]


def _update_display(segmentation_node) -> None:
    display = segmentation_node.GetDisplayNode()
    if display is None:
        return
    segmentation = segmentation_node.GetSegmentation()
    for segment_id in vertebra_ids(segmentation_node):
        complete = segment_tag(segmentation.GetSegment(segment_id), COMPLETE_TAG) != "false"
        display.SetSegmentOpacity2DFill(segment_id, COMPLETE_OPACITY_2D_FILL if complete else INCOMPLETE_OPACITY_2D_FILL)
        display.SetSegmentOpacity3D(segment_id, COMPLETE_OPACITY_3D if complete else INCOMPLETE_OPACITY_3D)


@dataclass(frozen=True)
class SegmentStatistics:
    """Voxel count, volume and centroid of one segment (segmentation coordinates)."""

    voxels: int
    volume_cm3: float
    centroid_ras: Optional[np.ndarray]  # [R, A, S] in mm; None for an empty segment


def segment_statistics(segmentation_node, segment_ids: Sequence[str]) -> dict[str, SegmentStatistics]:
    """Voxel count, volume (cm^3) and centroid [R, A, S] (mm, segmentation coordinates) of each segment in
    ``segment_ids``, from its binary labelmap. Each labelmap layer is read once, whatever the number of segments
    sharing it (its non-zero voxels are counted by label value)."""
    from vtk.util.numpy_support import vtk_to_numpy

    from SpineSegmentationLib.segment_tags import flat_to_ijk

    out = {}
    for image, members in segment_layers(segmentation_node.GetSegmentation(), segment_ids):
        if image is None or image.GetPointData().GetScalars() is None:
            out.update({segment_id: SegmentStatistics(0, 0.0, None) for segment_id, _ in members})
            continue
        ijk_to_ras = voxel_to_world(image)
        voxel_cm3 = abs(float(np.linalg.det(ijk_to_ras[:3, :3]))) / 1000.0
        dims, extent = image.GetDimensions(), image.GetExtent()
        values = vtk_to_numpy(image.GetPointData().GetScalars()).ravel()
        flat = np.flatnonzero(values > 0)
        labels = values[flat].astype(np.int64)
        size = max(label for _, label in members) + 1
        labels[labels >= size] = 0  # labels of no segment asked for
        counts = np.bincount(labels, minlength=size)
        sums = [np.bincount(labels, weights=index, minlength=size) for index in flat_to_ijk(flat, dims, extent)]
        for segment_id, label in members:
            count = int(counts[label]) if label > 0 else 0
            centroid = None
            if count:
                centroid = (ijk_to_ras @ np.array([sums[0][label] / count, sums[1][label] / count,
                                                   sums[2][label] / count, 1.0]))[:3]
            out[segment_id] = SegmentStatistics(count, count * voxel_cm3, centroid)
    return out


def segment_centroid_ras(segmentation_node, segment_id: str) -> Optional[np.ndarray]:
    """Centroid [R, A, S] in mm of a segment's voxels (segmentation coordinates), or None when it is empty."""
    return segment_statistics(segmentation_node, [segment_id])[segment_id].centroid_ras


def _shown_probability(segmentation_node, segment, tag: str = PLABEL_TAG) -> float:
    """The probability tag ``tag`` (``PLabel``, ``PComplete``) of ``segment`` as the results tables show it: NaN
    (shown as missing) where the segment has none, and where the tag is not a probability in [0, 1], which is then
    logged as a warning naming the segmentation, the segment, the tag and the fix (renumbering and alternatives refuse
    such a ``PLabel`` tag; a table refresh shows the row)."""
    try:
        return _probability_tag(segment, tag, math.nan)
    except ValueError as error:
        shown = "confidence" if tag == PLABEL_TAG else "value"
        logging.warning(f"{segmentation_node.GetName()}: {error}; its {shown} is shown empty")
        return math.nan


def segment_rows(segmentation_node) -> list[tuple[str, str, bool, float, float]]:
    """One row per vertebra segment for the results table, in segment order: (segment ID, name, complete, p_label,
    volume in cm^3).

    ``p_label`` is the ``PLabel`` tag, a probability in [0, 1]; NaN for a segment without one (drawn by hand) and for
    one whose tag is not a probability in [0, 1] (a warning naming the segment and the fix is logged; no error, so
    that one bad tag does not stop the table from being shown)."""
    segmentation = segmentation_node.GetSegmentation()
    ids = vertebra_ids(segmentation_node)
    statistics = segment_statistics(segmentation_node, ids)
    rows = []
    for segment_id in ids:
        segment = segmentation.GetSegment(segment_id)
        rows.append((segment_id, segment.GetName(), segment_tag(segment, COMPLETE_TAG) != "false",
                     _shown_probability(segmentation_node, segment), statistics[segment_id].volume_cm3))
    return rows


def update_centroid_points(segmentation_node) -> None:
    """Make the centroid point list of the segmentation (if any) match its vertebrae: one point per vertebra at
    its centroid, labelled by its name, "incomplete" in the description where flagged so."""
    from .mrml_import import INCOMPLETE_DESCRIPTION

    points = segmentation_node.GetNodeReference(CENTROIDS_REFERENCE_ROLE)
    if points is None:
        return
    segmentation = segmentation_node.GetSegmentation()
    locked = points.GetLocked()
    points.SetLocked(False)
    points.RemoveAllControlPoints()
    ids = vertebra_ids(segmentation_node)
    statistics = segment_statistics(segmentation_node, ids)
    for segment_id in ids:
        center = statistics[segment_id].centroid_ras
        if center is None:
            continue
        segment = segmentation.GetSegment(segment_id)
        index = points.AddControlPoint([float(c) for c in center], segment.GetName())
        if segment_tag(segment, COMPLETE_TAG) == "false":
            points.SetNthControlPointDescription(index, INCOMPLETE_DESCRIPTION)
    points.SetLocked(locked)


def update_results_table(segmentation_node) -> None:
    """Make the results table of the segmentation (if any) match its vertebrae, one row per vertebra in segment
    order: level, label, completeness and confidences from the segment tags, volume from the voxels. A ``PLabel`` or
    ``PComplete`` tag that is not a probability in [0, 1] is shown as NaN (missing) with a warning naming the segment,
    the tag and the fix."""
    table = segmentation_node.GetNodeReference(TABLE_REFERENCE_ROLE)
    if table is None:
        return
    segmentation = segmentation_node.GetSegmentation()
    rows = []
    for segment_id, name, complete, p_label, volume_cm3 in segment_rows(segmentation_node):
        segment = segmentation.GetSegment(segment_id)
        rows.append(TableRow(name, segment_level(segment) or 0, complete, p_label,
                             _shown_probability(segmentation_node, segment, PCOMPLETE_TAG), volume_cm3))
    fill_table(table, rows)


def segment_centroid_world(segmentation_node, segment_id: str) -> Optional[np.ndarray]:
    """Centroid [R, A, S] in mm of a segment in world coordinates (through the segmentation's parent transforms,
    linear or not), or None when the segment is empty: where the slice views must jump to."""
    local = segment_centroid_ras(segmentation_node, segment_id)
    if local is None:
        return None
    world = [0.0, 0.0, 0.0]
    segmentation_node.TransformPointToWorld([float(c) for c in local], world)
    return np.array(world)


def volume_point_from_world(volume_node, point_world: Sequence[float]) -> list[float]:
    """A world point [R, A, S] (what a markups point returns with ``GetNthControlPointPositionWorld``) in the
    volume's own RAS frame, i.e. before its parent transforms: the frame of the volume exported to the CLI."""
    local = [0.0, 0.0, 0.0]
    volume_node.TransformPointFromWorld([float(c) for c in point_world], local)
    return local


def _update_result_nodes(segmentation_node) -> None:
    """Centroid points and results table after the segments changed (renumbering, completeness, undo)."""
    update_centroid_points(segmentation_node)
    update_results_table(segmentation_node)


def apply_levels(segmentation_node, vertebrae: Sequence, mapping: dict[int, int]) -> None:
    """Give each segment its new level: name, ``Label``, ``PLabel`` and ``LevelStated`` tags, terminology and colour.

    The voxels are not touched (the segments keep their IDs and label values in the shared layer).

    Args:
        vertebrae: the relabelled vertebrae (``Relabeling.vertebrae``), for ``p_label`` and ``level_stated``.
        mapping: old level -> new level.
    """
    from SpineSegmentationLib.terminology import slicer_terminology_entry, vertebra_terminology

    segmentation = segmentation_node.GetSegmentation()
    p_label = {int(v.label): float(v.p_label) for v in vertebrae}
    stated = {int(v.label) for v in vertebrae if v.level_stated}
    # compute every change first: levels swap between segments
    changes = []
    for segment_id in vertebra_ids(segmentation_node):
        segment = segmentation.GetSegment(segment_id)
        old = segment_level(segment)
        if old in mapping:
            changes.append((segment, mapping[old]))
    for segment, new in changes:
        term = vertebra_terminology(new)
        segment.SetName(term.name)
        segment.SetColor(*term.color_rgb)
        segment.SetNameAutoGenerated(False)
        segment.SetColorAutoGenerated(False)
        segment.SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), slicer_terminology_entry(new))
        segment.SetTag(LABEL_TAG, str(int(new)))
        if new in p_label:
            segment.SetTag(PLABEL_TAG, f"{p_label[new]:.4f}")
        if new in stated:
            segment.SetTag(LEVEL_STATED_TAG, "true")
        else:
            segment.RemoveTag(LEVEL_STATED_TAG)


# --------------------------------------------------------------------------------------------------------------
# the logic


def _segments_state(segmentation_node) -> tuple:
    """What a correction's result is made from: each segment's voxels (digest), name and module tags."""
    segmentation = segmentation_node.GetSegmentation()
    tags = (LABEL_TAG, COMPLETE_TAG, LEVEL_STATED_TAG, COMPLETE_STATED_TAG, EDITED_TAG)
    described = {segment_id: (segmentation.GetSegment(segment_id).GetName(),
                              tuple(segment_tag(segmentation.GetSegment(segment_id), tag) for tag in tags))
                 for segment_id in _segment_ids(segmentation_node)}
    return segment_digests(segmentation), described


def check_segmentation_in_scene(segmentation_node, scene=None) -> None:
    """Raise ValueError unless ``segmentation_node`` is a segmentation node that is in a scene and holds a
    ``vtkSegmentation``: the node a correction changes. None, another node class, a node's name, or a node removed
    from the scene (a correction would change, or undo into, a node nobody sees any more) are refused.

    Args:
        scene: the scene a run's result is imported into (``processLogic.scene``, ``slicer.mrmlScene`` in the
            application); given, a node of another scene is refused too (its result could not be applied,
            :func:`~.mrml_import.import_output_folder`). None: any scene.
    """
    if not _is_a(segmentation_node, "vtkMRMLSegmentationNode"):
        raise ValueError(f"the segmentation must be a segmentation node, not {_kind(segmentation_node)}; pass the "
                         "vtkMRMLSegmentationNode that holds the vertebrae (e.g. getNode('CT vertebrae'))")
    if segmentation_node.GetScene() is None:
        raise ValueError(f"the segmentation {segmentation_node.GetName()!r} is no longer in the scene (it was "
                         "removed), so nothing was changed; pass a segmentation node that is in the scene")
    if scene is not None and segmentation_node.GetScene() is not scene:
        raise ValueError(f"the segmentation {segmentation_node.GetName()!r} is in another scene than the module's, "
                         "so a correction's result could not be applied to it and nothing was changed; pass a "
                         "segmentation node of the module's scene (slicer.mrmlScene)")
    if segmentation_node.GetSegmentation() is None:
        raise ValueError(f"the segmentation node {segmentation_node.GetName()!r} holds no segmentation "
                         "(SetAndObserveSegmentation(None)); pass a segmentation node with vertebrae")


def _check_segment_id(segment_id) -> None:
    """Raise ValueError unless ``segment_id`` is a segment ID (a string; GetSegment raises TypeError otherwise)."""
    if not isinstance(segment_id, str):
        raise ValueError(f"the segment ID must be a string, got {segment_id!r}; pass the ID of a vertebra's segment "
                         "(e.g. segmentationNode.GetSegmentation().GetSegmentIdBySegmentName('L4'))")


def _sequence_items(value) -> Optional[list]:
    """The items of a list, tuple, numpy array or other sequence, also of one iterable only through indexing
    (``vtkVector3d``, which ``GetNthControlPointPositionWorld`` returns); None for str and bytes (characters, not
    numbers), a 0-d array or a value that is no sequence."""
    if isinstance(value, (str, bytes, bytearray)) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return None
    if isinstance(value, IterableABC):
        return list(value)
    if hasattr(value, "__len__") and hasattr(value, "__getitem__"):
        return [value[i] for i in range(len(value))]
    return None


def _is_integer(value) -> bool:
    """A whole number given as an integer (int, numpy integer), not a bool, a float or a string."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def column_level(level) -> int:
    """The VerSe number of ``level``, a level name ("L5", "t13") or a VerSe number (24).

    Raises:
        ValueError: another type (None, 24.5, True), an unknown name, or a level outside the column C1-L6 (the
            sacrum, 26, cannot be stated: it is not numbered in the column).
    """
    from SpineSegmentationLib.anatomy import verse_label

    refused = (f"{level!r} is not a level of the column; use C1-C7, T1-T13 or L1-L6 (VerSe numbers 1-25, T13 = 28); "
               "the sacrum is not renumbered")
    if isinstance(level, str):
        try:
            label = verse_label(level)
        except ValueError:  # its message offers the sacrum, which the column does not take
            raise ValueError(refused) from None
    elif _is_integer(level):
        label = int(level)
    else:
        raise ValueError(f"the level must be a level name such as 'L5' or its VerSe number (24), got {level!r}")
    if label not in column_levels():
        raise ValueError(refused)
    return label


def check_made_on(segmentation_node, input_volume) -> None:
    """Raise ValueError when ``segmentation_node`` was made on another CT than ``input_volume``: its reference geometry
    node is another scalar volume on another grid (a correction would put its vertebrae onto the input's grid and
    reset the node to it). A reference that is no volume (an ROI or model picked in Specify geometry) is left to
    :func:`_check_edits_on_grid_of`. The grid rule is the one of loading results (:func:`.same_voxel_grid`: the
    library's ``geometry.same_grid``, every voxel centre within a quarter voxel of the input's of the same index). The
    widget disables the network corrections with its message."""
    if segmentation_node is None:
        return
    reference = segmentation_node.GetNodeReference(segmentation_node.GetReferenceImageGeometryReferenceRole())
    if reference is None or reference.GetID() == input_volume.GetID() or not reference.IsA("vtkMRMLScalarVolumeNode"):
        return
    if same_voxel_grid(reference, input_volume):
        return  # another volume on the same grid (a copy, a filtered CT): the vertebrae fit it
    raise ValueError(f"the segmentation {segmentation_node.GetName()!r} was made on {reference.GetName()!r}, not on "
                     f"{input_volume.GetName()!r}; choose {reference.GetName()!r} as the input volume, or another "
                     "output segmentation")


def edits_off_grid(segmentation_node, volume, convert: bool = True) -> str:
    """Why a network correction of ``segmentation_node`` on the CT ``volume`` is refused for the grid of its edits
    (:func:`_check_edits_on_grid_of`), as the message (the problem and the fix); "" when it is not.

    The vertebrae tagged edited must lie on ``volume``'s voxel grid (:func:`.grid_difference`: Slicer's own rule for one
    geometry, or the CT's voxels in any axis order and sign with the voxel centres within 0.25 voxel of the CT's across
    the edited layer's extent; not another spacing or axes, nor origins part of a voxel apart, nor a drift of the
    spacing or directions that adds up to more; e.g. after "Specify geometry" in the Segment Editor): a correction works
    on the CT's grid, and resampling an edit onto it would lose what a finer grid holds or move its voxels. The export
    onto the CT's grid (``ExportSegmentsToLabelmapNode``, nearest neighbour) takes each voxel of a grid on the CT's as
    it is. The segmentation must also lie in the CT's frame (:func:`.same_frame`: under the same parent transform, or
    linear ones between which the transform is the identity within 1e-6); another transform would move the edits by it
    on the export; the message says which fix keeps the edits where they are shown (hardening, then Specify geometry
    where that moves a grid). Reads the layers' geometry only, not their voxels.

    Args:
        segmentation_node: a segmentation node, or None ("").
        volume: the CT volume node.
        convert: make the binary labelmaps of a segmentation whose source is another representation (a closed
            surface) to read their grid, as the correction does; False: such a segmentation gives "" (the widget's
            blockers, which must not convert; the correction checks again).
    """
    if segmentation_node is None or segmentation_node.GetSegmentation() is None:
        return ""
    segmentation = segmentation_node.GetSegmentation()
    edited = [i for i in vertebra_ids(segmentation_node) if is_edited(segmentation.GetSegment(i))]
    if not edited:
        return ""
    fix = ("Set the segmentation's geometry to the CT (Specify geometry: the CT, oversampling 1) first, or keep a copy "
           "of the edited segments")
    if not same_frame(segmentation_node, volume):
        names = ", ".join(segmentation.GetSegment(segment_id).GetName() for segment_id in edited)
        return (f"the segmentation {segmentation_node.GetName()!r} with the edited vertebrae {names} is under "
                f"{transform_text(segmentation_node)} but the CT {volume.GetName()!r} under "
                f"{transform_text(volume)}; a correction works on the CT's grid and would move your edits by the "
                f"transform between them. {frame_advice(segmentation_node, volume, 'the edits')}")
    if not convert and (segmentation.GetSourceRepresentationName()
                        != slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()):
        return ""
    for image, members in segment_layers(segmentation, edited):
        if image is None:
            continue
        difference = grid_difference(voxel_to_world(image), image.GetExtent(), volume)
        if not difference:
            continue
        names = ", ".join(segmentation.GetSegment(segment_id).GetName() for segment_id, _ in members)
        return (f"the edited vertebrae {names} lie on another grid than the CT {volume.GetName()!r}: {difference}, "
                "e.g. after Specify geometry in the Segment Editor; a correction works on the CT's grid and would "
                f"resample your edits. {fix}")
    return ""


def _check_edits_on_grid_of(segmentation_node, volume) -> None:
    """Raise ValueError when a vertebra tagged edited lies on another voxel grid or under another transform than
    ``volume``, with the message of :func:`edits_off_grid`."""
    refusal = edits_off_grid(segmentation_node, volume)
    if refusal:
        raise ValueError(refusal)


class CorrectionLogic:
    """Corrections of a vertebra segmentation node (no GUI): runs in a child process for the network steps,
    here for the others, with one-step undo and edit tracking.

    Args:
        processLogic: the module's :class:`~.logic.SpineSegmentationProcessLogic` (interpreter, runner factory,
            library folder, scene).
    """

    def __init__(self, processLogic: SpineSegmentationProcessLogic) -> None:
        self.processLogic = processLogic
        self.tracker = EditTracker()
        self.undo = UndoState()
        #: What the last renumbering, rename or applied alternative (:meth:`renumber`, :meth:`applyRename`,
        #: :meth:`applyAlternative`) warns of: ``Relabeling.warnings``, levels that contradict the ribs or the sacrum
        #: the run saw beside the vertebrae (``RibSides`` / ``SacrumBelow`` tags) more than the levels chosen without
        #: any statement (``renumbering.contradiction_warnings``).
        #: Empty when it warned of nothing, changed nothing or failed. Each is logged too; the widget shows them.
        self.relabelWarnings: list[str] = []
        self._sent = None  # (segmentation node, its _segments_state) when the running correction started

    # network steps, in a child process

    def _start(self, build, segmentationNode) -> SegmentationRun:
        if segmentationNode is not None:
            tag_unseen_edits(segmentationNode)  # kept as edits, also where no tracker saw them made
        workDir = Path(tempfile.mkdtemp(prefix="SpineSegmentation-correction-"))
        try:
            args = build(workDir)
            sent = (segmentationNode, _segments_state(segmentationNode) if segmentationNode is not None else None)
            env = process_environment(self.processLogic.libraryDir)
            run = SegmentationRun(self.processLogic.runnerFactory(), args, env, str(self.processLogic.libraryDir),
                                  workDir, workDir / "output")
            self._sent = sent  # only for a run that started
            return run
        except BaseException:
            shutil.rmtree(workDir, ignore_errors=True)
            raise

    def _checkNodes(self, inputVolume, segmentationNode) -> None:
        """Before a network correction starts: the classes of the nodes, both in the scene the result is imported
        into, the segmentation on the CT, and its result applicable (it replaces the vertebrae, :meth:`applyRun`)."""
        check_ct_in_scene(inputVolume, self.processLogic.scene)
        check_output_segmentation(inputVolume, segmentationNode, overwrite=False)  # the node's class
        if segmentationNode is not None:  # None: a click into a CT without segmentation (applyRun needs one)
            # removed or in another scene: its result could not be applied
            check_segmentation_in_scene(segmentationNode, self.processLogic.scene)
        check_made_on(segmentationNode, inputVolume)  # made on another CT: says so, before the grid check would
        check_output_segmentation(inputVolume, segmentationNode, overwrite=True)  # kept segments: transform, grid

    def startClick(self, inputVolume, segmentationNode, pointWorld: Sequence[float],
                   directions: Iterable[str] = ("up", "down"), device: str = "auto",
                   model: Optional[Path] = None) -> SegmentationRun:
        """Segment the vertebra at ``pointWorld`` and continue up/down; the existing segments are kept (they are
        the instance memory). Returns the run to poll; apply it with :meth:`applyRun`.

        Args:
            pointWorld: [R, A, S] in mm in world coordinates: a sequence of three finite numbers (list, tuple,
                numpy array, or the ``vtkVector3d`` a markups point gives, ``GetNthControlPointPositionWorld``; not
                a str or bytes); converted to the volume's own frame for the CLI.
            directions: "up" and/or "down" (a list or tuple, not a str; empty: the clicked vertebra only).

        Raises:
            ValueError: bad volume (also: removed from the scene, or in another scene than ``processLogic.scene``),
                point, directions, device, or segments with duplicate levels; ``segmentationNode`` is not a
                segmentation node, was removed from the scene or is in another one, or keeps other segments
                under another transform than the CT or on another grid (:func:`~.mrml_import.check_output_segmentation`:
                its result could not be applied), or holds vertebrae tagged edited on another grid or under another
                transform than the CT (:func:`edits_off_grid`, the message it gives).
        """
        self._checkNodes(inputVolume, segmentationNode)
        values = _sequence_items(pointWorld) or []
        if len(values) != 3 or not all(isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))
                                       and math.isfinite(v) for v in values):
            raise ValueError(f"the point must be three finite RAS coordinates in mm, got {pointWorld!r}")
        point = [float(v) for v in values]
        chosen = _sequence_items(directions)
        if chosen is None or any(d not in ("up", "down") for d in chosen):
            raise ValueError(f"directions must be a list of 'up' and/or 'down' (e.g. ['up', 'down']; [] for the "
                             f"clicked vertebra only), got {directions!r}")
        point = volume_point_from_world(inputVolume, point)  # the exported CT is in the volume's own frame

        def build(workDir: Path):
            inputPath = export_volume(inputVolume, workDir / INPUT_FILE)
            args = cli_command(self.processLogic.python, "correction_cli", "click", inputPath, workDir / "output",
                               device, model)
            args += ["--point", *[repr(v) for v in point], "--directions", ",".join(chosen)]
            if segmentationNode is not None and vertebra_ids(segmentationNode):
                _check_edits_on_grid_of(segmentationNode, inputVolume)
                levels = export_label_map(segmentationNode, inputVolume, workDir / LABELS_FILE)
                args += ["--existing", str(workDir / LABELS_FILE)]
                args += self._levelArguments(segmentationNode, levels)
            return args

        return self._start(build, segmentationNode)

    def startRerun(self, inputVolume, segmentationNode, device: str = "auto",
                   model: Optional[Path] = None) -> SegmentationRun:
        """Segment again keeping the segments tagged edited exactly; every other vertebra is redone around them.

        Raises:
            ValueError: no segment is tagged edited, or as :meth:`startClick`.
        """
        self._checkNodes(inputVolume, segmentationNode)
        if segmentationNode is None or not vertebra_ids(segmentationNode):
            raise ValueError("the segmentation has no vertebrae; segment the CT first")

        def build(workDir: Path):
            _check_edits_on_grid_of(segmentationNode, inputVolume)
            inputPath = export_volume(inputVolume, workDir / INPUT_FILE)
            levels = export_label_map(segmentationNode, inputVolume, workDir / LABELS_FILE)
            edited = self._levels(segmentationNode, levels, is_edited)
            if not edited:
                raise ValueError("no segment is marked as edited; edit a vertebra (Segment Editor) first")
            redo = sorted(v for v in levels.values() if v not in edited and v in column_levels())
            args = cli_command(self.processLogic.python, "correction_cli", "rerun", inputPath, workDir / "output",
                               device, model)
            args += ["--labels", str(workDir / LABELS_FILE)] + self._levelArguments(segmentationNode, levels)
            if redo:
                args += ["--redo", ",".join(str(v) for v in redo)]
            return args

        return self._start(build, segmentationNode)

    @staticmethod
    def _levels(segmentationNode, levels: dict[str, int], predicate) -> list[int]:
        """The exported levels (segment ID -> level) of the segments for which ``predicate(segment)`` holds."""
        segmentation = segmentationNode.GetSegmentation()
        return sorted(level for segment_id, level in levels.items() if predicate(segmentation.GetSegment(segment_id)))

    def _levelArguments(self, segmentationNode, levels: dict[str, int]) -> list[str]:
        """``--edited`` (segments tagged edited), ``--stated`` (segments whose level a person stated) and
        ``--complete`` / ``--incomplete`` (segments whose completeness flag a person set)."""
        args = []
        for option, predicate in (("--edited", is_edited), ("--stated", is_level_stated),
                                  ("--complete", is_stated_complete), ("--incomplete", is_stated_incomplete)):
            chosen = self._levels(segmentationNode, levels, predicate)
            if chosen:
                args += [option, ",".join(str(v) for v in chosen)]
        return args

    def applyRun(self, outputDir, inputVolume, segmentationNode) -> ImportedResults:
        """Replace the segments of ``segmentationNode`` by a correction run's output (undo keeps the old ones).

        Raises:
            ValueError: damaged output folder or not on ``inputVolume``'s grid, or the segments were edited or
                renamed (voxels, names, levels, flags) while the correction ran (its result was made from them as
                they were and would replace the change); ``segmentationNode`` is not a segmentation node, was removed
                from the scene (while the correction ran) or is in another scene than ``processLogic.scene``; nothing
                is changed then, and the run is forgotten (apply a new one).
        """
        sent, self._sent = self._sent, None  # also when refused: the state (and node) of a run that is over
        ran_on = sent is not None and segmentationNode is not None and sent[0] is segmentationNode
        if ran_on and segmentationNode.GetScene() is None:
            raise ValueError(f"the segmentation {segmentationNode.GetName()!r} was removed from the scene while the "
                             "correction ran, so its result was not imported; run the correction again on a "
                             "segmentation in the scene")
        check_segmentation_in_scene(segmentationNode, self.processLogic.scene)
        if ran_on and sent[1] != _segments_state(segmentationNode):
            raise ValueError("the segments were edited or renamed while the correction ran; its result would "
                             "replace those changes, so it was not applied. Run the correction again.")
        replaced = self.undo.save(segmentationNode)
        try:
            with self.tracker.suspended():
                results = import_output_folder(self.processLogic.scene, outputDir, inputVolume, segmentationNode,
                                               overwrite=True)
        except BaseException:
            self.undo.put_back(replaced)  # nothing was applied: the earlier step stays undoable
            raise
        self.undo.settle(segmentationNode, self.tracker.digests_after_suspended(segmentationNode))
        return results  # the import replaced the centroids and table of the previous state (result_nodes)

    # steps without network

    def renumber(self, segmentationNode, segmentId: str, level) -> dict[int, int]:
        """State "segment ``segmentId`` is ``level``" ("L5" or 24); the whole column is relabelled consistently
        by maximum likelihood (seed 002 section 3.4). Returns the mapping old -> new level.

        A level that contradicts the ribs or the sacrum seen beside its vertebra is applied as stated, with a warning
        (:attr:`relabelWarnings`).

        Raises:
            ValueError: ``segmentationNode`` is not a segmentation node in the scene
                (:func:`check_segmentation_in_scene`), unknown segment or level (:func:`column_level`), or no
                contiguous labelling fits.
        """
        from SpineSegmentationLib.renumbering import renumber_vertebrae

        self.relabelWarnings = []
        check_segmentation_in_scene(segmentationNode)
        _check_segment_id(segmentId)
        column_level(level)
        segment = segmentationNode.GetSegmentation().GetSegment(segmentId)
        if segment is None or segment_level(segment) is None:
            raise ValueError(f"segment {segmentId!r} is not a vertebra of {segmentationNode.GetName()!r}")
        relabeling = renumber_vertebrae(vertebrae_from_segments(segmentationNode), segment_level(segment), level)
        self._relabel(segmentationNode, relabeling)
        return relabeling.mapping

    def applyRename(self, segmentationNode, segmentId: str) -> dict[int, int]:
        """Take vertebra ``segmentId``, renamed to another level (segments table), as a statement of its level: the
        column is relabelled as by :meth:`renumber` (one undo step; the vertebra is tagged ``LevelStated``). Returns
        old -> new level, empty when that segment's name is not another level (:func:`renamed_levels`). A new name
        that contradicts the ribs or the sacrum the run saw is applied, with a warning (:attr:`relabelWarnings`).

        Raises:
            ValueError: no contiguous labelling fits the new name; the name is put back from the ``Label`` tag
                (the column is unchanged). ``segmentationNode`` is not a segmentation node in the scene, or it has
                no segment ``segmentId``.
        """
        from SpineSegmentationLib.anatomy import vertebra_name

        self.relabelWarnings = []
        check_segmentation_in_scene(segmentationNode)
        _check_segment_id(segmentId)
        if segmentationNode.GetSegmentation().GetSegment(segmentId) is None:
            raise ValueError(f"segment {segmentId!r} is not in {segmentationNode.GetName()!r}; pass the ID of the "
                             "renamed vertebra's segment")
        level = renamed_levels(segmentationNode).get(segmentId)
        if level is None:
            return {}
        segment = segmentationNode.GetSegmentation().GetSegment(segmentId)
        old = vertebra_name(segment_level(segment))
        with self.tracker.suspended():  # the name the module gave: undo returns to it, never to the renamed state
            segment.SetName(old)
        try:
            return self.renumber(segmentationNode, segmentId, level)
        except ValueError as error:
            raise ValueError(f"{old} cannot be {vertebra_name(level)} ({error}); its name was put back") from error

    def alternatives(self, segmentationNode) -> list:
        """Candidate labellings of the column, most likely first (``LabelingAlternative``: labels, likelihood,
        description); apply one with :meth:`applyAlternative`.

        Raises:
            ValueError: ``segmentationNode`` is not a segmentation node in the scene; two vertebrae with one level.
        """
        from SpineSegmentationLib.renumbering import labeling_alternatives

        check_segmentation_in_scene(segmentationNode)
        return labeling_alternatives(vertebrae_from_segments(segmentationNode))

    def applyAlternative(self, segmentationNode, alternative) -> dict[int, int]:
        """Label the column with ``alternative`` (one of :meth:`alternatives`, or its ``labels``: a list of VerSe
        numbers, one per vertebra of the column, head first); returns old -> new level. Levels that contradict the
        ribs or the sacrum the run saw are applied, with a warning (:attr:`relabelWarnings`).

        Raises:
            ValueError: ``segmentationNode`` is not a segmentation node in the scene; ``alternative`` is not a list of
                column levels (VerSe numbers), or not one per vertebra, or repeats a level.
        """
        from SpineSegmentationLib.renumbering import relabel_vertebrae

        self.relabelWarnings = []
        check_segmentation_in_scene(segmentationNode)
        labels = getattr(alternative, "labels", alternative)
        labels = _sequence_items(labels)
        if labels is None or not all(_is_integer(v) and int(v) in column_levels() for v in labels):
            raise ValueError(f"the alternative must be one of alternatives(segmentationNode), or a list of VerSe "
                             f"numbers of the column (C1-L6: 1-25, T13 = 28), one per vertebra head first; got "
                             f"{alternative!r}")
        labels = [int(v) for v in labels]
        relabeling = relabel_vertebrae(vertebrae_from_segments(segmentationNode), labels)
        self._relabel(segmentationNode, relabeling)
        return relabeling.mapping

    def _relabel(self, segmentationNode, relabeling) -> None:
        self.undo.save(segmentationNode)
        with self.tracker.suspended():
            apply_levels(segmentationNode, relabeling.vertebrae, relabeling.mapping)
        self.undo.settle(segmentationNode, self.tracker.digests_after_suspended(segmentationNode))
        _update_result_nodes(segmentationNode)
        self.relabelWarnings = list(relabeling.warnings)
        for warning in self.relabelWarnings:
            logging.warning(f"{segmentationNode.GetName()}: {warning}")

    def setCompleteness(self, segmentationNode, segmentId: str, complete: bool) -> None:
        """Flag a vertebra completely visible or not (tag ``SpineSegmentation.Complete`` and its display), and tag
        it ``SpineSegmentation.CompleteStated``, so that a click or re-run keeps the flag.

        Raises:
            ValueError: ``complete`` is not True or False (a "no" would read as true), or no such segment;
                ``segmentationNode`` is not a segmentation node in the scene.
        """
        if not isinstance(complete, (bool, np.bool_)):
            raise ValueError(f"complete must be True or False, got {complete!r}")
        check_segmentation_in_scene(segmentationNode)
        _check_segment_id(segmentId)
        segment = segmentationNode.GetSegmentation().GetSegment(segmentId)
        if segment is None:
            raise ValueError(f"segment {segmentId!r} is not in {segmentationNode.GetName()!r}")
        self.undo.save(segmentationNode)
        with self.tracker.suspended():
            segment.SetTag(COMPLETE_TAG, "true" if complete else "false")
            segment.SetTag(COMPLETE_STATED_TAG, "true")
        self.undo.settle(segmentationNode, self.tracker.digests_after_suspended(segmentationNode))
        _update_display(segmentationNode)
        _update_result_nodes(segmentationNode)

    def undoLast(self, segmentationNode) -> bool:
        """Undo the last correction of ``segmentationNode``; False when there is nothing to undo.

        Raises:
            ValueError: voxels were edited after that correction (:class:`UndoState`); ``segmentationNode`` is not a
                segmentation node in the scene (:func:`check_segmentation_in_scene`); nothing is changed.
        """
        check_segmentation_in_scene(segmentationNode)
        if not self.undo.restore(segmentationNode, self.tracker):
            return False
        _update_result_nodes(segmentationNode)
        return True
