"""The module's logic without GUI: run the pipeline on a volume node and import its results.

:class:`SpineSegmentationProcessLogic` is what ``SpineSegmentation.SpineSegmentationLogic`` (the Slicer
``ScriptedLoadableModuleLogic``) builds on; it needs only the MRML classes, so it also runs with the PyPI
``slicer-core`` package. Batch use inside Slicer::

    import SpineSegmentation
    logic = SpineSegmentation.SpineSegmentationLogic()
    results = logic.process(getNode("CT"), device="auto")        # blocks; progress is logged
    print([s for s in results.incomplete])                        # e.g. ['T11']

Asynchronous use (what the widget does): ``run = logic.startSegmentation(volume)``, then call
``run.poll(onProgress)`` from a timer until it returns the output folder, ``run.cancel()`` on Cancel, and
``logic.loadResults(run.outputDir, volume)`` at the end.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections import deque
from pathlib import Path
from typing import Callable, Optional

from .command import (
    ProgressEvent,
    RESULT_STAGE,
    find_python,
    library_root,
    parse_progress_line,
    process_environment,
    segment_command,
)
from .mrml_import import (ImportedResults, check_ct_volume, check_output_segmentation, harden_text,
                          import_output_folder, transform_text)
from .runner import ProcessRunner

#: File name of the input volume written for the process (NRRD keeps the geometry exactly, LPS).
INPUT_FILE = "input.nrrd"
#: Lines of the process output quoted in an error message.
ERROR_LINES = 12


class SegmentationProcessError(RuntimeError):
    """The segmentation process failed; the message quotes its last output lines."""


class SegmentationCancelledError(RuntimeError):
    """The segmentation was cancelled; nothing was added to the scene."""


def check_linear_to_world(volume_node) -> None:
    """Raise ValueError when the volume node ``volume_node`` is under a transform that is not linear to world
    (``IsTransformToWorldLinear``): its voxels are not where they are shown, and a run (:func:`export_volume`) would
    segment them as stored. The message names the fix (harden the transform, :func:`.mrml_import.harden_text`)."""
    transform = volume_node.GetParentTransformNode()
    if transform is not None and not transform.IsTransformToWorldLinear():
        # e.g. Slicer's acquisition geometry regularization of a DICOM series with a gantry tilt or uneven slices:
        # the stored voxels are not the anatomy as shown, and the network would segment them as stored
        raise ValueError(
            f"volume {volume_node.GetName()!r} is under {transform_text(volume_node)}, not linear to world (e.g. the "
            "regularization of a DICOM series with a gantry tilt or uneven slices), so its voxels are not where "
            f"they are shown; harden the transform first ({harden_text(volume_node)}) and run on the hardened volume"
        )


def export_volume(volume_node, path: Path) -> Path:
    """Write a scalar volume node to ``path`` (``.nrrd``) without touching the scene or the node's own storage.

    Raises:
        ValueError: the node is not a scalar (CT) volume with 3D single-component image data, is under a
            non-linear transform, or cannot be written.
    """
    check_ct_volume(volume_node)
    image = volume_node.GetImageData()
    if image is None or image.GetNumberOfScalarComponents() != 1 or min(image.GetDimensions()) < 2:
        raise ValueError(
            f"volume {volume_node.GetName()!r} is not a 3D single-component image; select a CT volume"
        )
    check_linear_to_world(volume_node)
    import slicer

    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    storage.SetUseCompression(False)
    if not storage.WriteData(volume_node):
        raise ValueError(f"cannot write the input volume to {path}; check free disk space in the temporary folder")
    return Path(path)


def check_ct_in_scene(volume_node, scene=None) -> None:
    """Raise ValueError unless ``volume_node`` is a scalar volume node (:func:`~.mrml_import.check_ct_volume`) that is
    in a scene: the results of a CT removed from the scene could not be imported after the run.

    Args:
        scene: the scene the results are imported into (``SpineSegmentationProcessLogic.scene``); given, a CT of
            another scene is refused too (:func:`~.mrml_import.import_output_folder` would refuse its results after
            the run). None: any scene.
    """
    check_ct_volume(volume_node)
    if volume_node.GetScene() is None:
        raise ValueError(f"the CT {volume_node.GetName()!r} is not in the scene (it was removed), so its results could "
                         "not be imported; load the CT again and pass the new volume node")
    if scene is not None and volume_node.GetScene() is not scene:
        raise ValueError(f"the CT {volume_node.GetName()!r} is in another scene than the module's, so its results "
                         "could not be imported; load the CT into the module's scene (slicer.mrmlScene) and pass "
                         "that volume node")


def check_output_in_scene(output_segmentation, scene) -> None:
    """Raise ValueError unless ``output_segmentation`` is None or a node of ``scene``.

    The import after the run (:func:`~.mrml_import.import_output_folder`) puts the results only into a node of its
    scene: a node never added to it, removed from it or of another scene got, after the whole run, its results
    refused (``overwrite=True``) or put into a new node with a warning that it "was removed while the run went on".
    Call before the run starts, after :func:`~.mrml_import.check_output_segmentation` (the node's class).
    """
    if output_segmentation is None or output_segmentation.GetScene() is scene:
        return
    where = "in no scene" if output_segmentation.GetScene() is None else "in another scene than the module's"
    raise ValueError(f"the output segmentation {output_segmentation.GetName()!r} is {where}, so the results could "
                     "not be put into it; pass a segmentation node of the module's scene (slicer.mrmlScene, e.g. "
                     "getNode('Segmentation')), or None for a new one")


class SegmentationRun:
    """One run of the CLI on an exported volume; poll it from a timer or wait for it.

    Attributes:
        args: the command line (program first).
        workDir: temporary folder holding the exported input and (unless given) the output folder.
        outputDir: where the CLI writes its outputs.
        lastEvent: the last progress event received, or None.
    """

    def __init__(self, runner, args: list[str], env: dict, cwd: str, workDir: Path, outputDir: Path):
        self._runner = runner
        self.args = list(args)
        self.workDir = workDir
        self.outputDir = outputDir
        self.lastEvent: Optional[ProgressEvent] = None
        self._cancelled = False
        self._logLines: deque = deque(maxlen=ERROR_LINES)  # output that is not a progress line (errors, warnings)
        self._runner.start(args, env=env, cwd=cwd)

    @property
    def running(self) -> bool:
        return self._runner.running

    def _onLine(self, onProgress):
        def handle(line: str) -> None:
            event = parse_progress_line(line)
            if event is None:
                self._logLines.append(line)
                logging.info("SpineSegmentation: %s", line)
                return
            self.lastEvent = event
            if onProgress is not None and event.stage != RESULT_STAGE:
                onProgress(event)

        return handle

    def _finish(self, code: int) -> Path:
        if self._cancelled:
            raise SegmentationCancelledError("the segmentation was cancelled; nothing was added to the scene")
        if code != 0:
            tail = "\n".join(self._logLines) or "(no error output)"
            raise SegmentationProcessError(f"the segmentation process failed (exit status {code}):\n{tail}")
        return self.outputDir

    def poll(self, onProgress: Optional[Callable[[ProgressEvent], None]] = None) -> Optional[Path]:
        """Deliver new progress events; return the output folder once the run succeeded, else None.

        Raises:
            SegmentationProcessError: the process ended with an error (its last output lines are quoted).
            SegmentationCancelledError: :meth:`cancel` was called.
        """
        code = self._runner.poll(self._onLine(onProgress))
        return None if code is None else self._finish(code)

    def wait(self, onProgress: Optional[Callable[[ProgressEvent], Optional[bool]]] = None) -> Path:
        """Block until the run ends and return the output folder. ``onProgress`` returning False cancels.

        Raises:
            SegmentationProcessError, SegmentationCancelledError: as :meth:`poll`.
        """

        def progress(event: ProgressEvent) -> None:
            if onProgress is not None and onProgress(event) is False:
                self.cancel()

        code = self._runner.wait(self._onLine(progress))
        return self._finish(code)

    def cancel(self) -> None:
        """Kill the process (and its children) now; the scene is not touched."""
        self._cancelled = True
        self._runner.kill()

    def cleanup(self) -> None:
        """Delete the temporary folder (the exported input and, if it is inside, the outputs)."""
        if self._runner.running:
            self.cancel()
        if self.workDir.exists():
            shutil.rmtree(self.workDir)


class SpineSegmentationProcessLogic:
    """Run ``SpineSegmentationLib.cli segment`` on a volume node in a separate process and import the results.

    Args:
        scene: MRML scene to put the results in; None = ``slicer.mrmlScene`` (looked up when needed).
        runnerFactory: makes the process runner (default :class:`~.runner.ProcessRunner`); inject another
            implementation to run the CLI differently (e.g. remotely).
        python: interpreter for the CLI; None = ``PythonSlicer`` inside Slicer, else the current one.
        libraryDir: folder holding ``SpineSegmentationLib``; None = found next to the module.
    """

    def __init__(self, scene=None, runnerFactory: Callable[[], object] = ProcessRunner, python: Optional[str] = None,
                 libraryDir: Optional[Path] = None):
        self._scene = scene
        self.runnerFactory = runnerFactory
        self.python = python or find_python()
        self.libraryDir = Path(libraryDir) if libraryDir is not None else library_root()

    @property
    def scene(self):
        if self._scene is None:
            import slicer

            return slicer.mrmlScene
        return self._scene

    def startSegmentation(self, inputVolume, device: str = "auto", model: Optional[Path] = None,
                          outputDir: Optional[Path] = None) -> SegmentationRun:
        """Export ``inputVolume`` to a temporary ``.nrrd`` and start the CLI on it; returns at once.

        Args:
            inputVolume: ``vtkMRMLScalarVolumeNode`` with the CT (HU).
            device: "auto", "GPU" or "CPU" (or the CLI's "auto"/"cuda"/"cpu").
            model: model folder; None = the shipped default model.
            outputDir: output folder for the CLI; None = a new folder inside the temporary folder. The CLI
                refuses to overwrite existing outputs there.

        Raises:
            ValueError: bad input volume (also: removed from the scene, or in another scene than :attr:`scene`) or
                device (nothing is started).
            OSError: the interpreter cannot be started.
        """
        check_ct_in_scene(inputVolume, self.scene)  # its results could not be imported
        workDir = Path(tempfile.mkdtemp(prefix="SpineSegmentation-"))
        try:
            inputPath = export_volume(inputVolume, workDir / INPUT_FILE)
            outputDir = Path(outputDir) if outputDir is not None else workDir / "output"
            args = segment_command(self.python, inputPath, outputDir, device, model)
            env = process_environment(self.libraryDir)
            return SegmentationRun(self.runnerFactory(), args, env, str(self.libraryDir), workDir, outputDir)
        except BaseException:
            shutil.rmtree(workDir, ignore_errors=True)
            raise

    def loadResults(self, outputDir, inputVolume, outputSegmentation=None, overwrite: bool = False) -> ImportedResults:
        """Build segmentation, centroids and table nodes from an output folder (see :mod:`.mrml_import`).

        Raises:
            ValueError: damaged folder, or results not on ``inputVolume``'s grid; the scene is unchanged.
        """
        return import_output_folder(self.scene, outputDir, inputVolume, outputSegmentation, overwrite)

    def process(self, inputVolume, outputSegmentation=None, device: str = "auto", model: Optional[Path] = None,
                overwrite: bool = False, outputDir: Optional[Path] = None,
                progress: Optional[Callable[[ProgressEvent], Optional[bool]]] = None) -> ImportedResults:
        """Segment, label and classify the vertebrae of ``inputVolume``; blocks until done.

        Args:
            inputVolume: CT volume node (HU).
            outputSegmentation: segmentation node to fill (None = new); see :meth:`loadResults`.
            device: "auto", "GPU" or "CPU".
            model: model folder (None = shipped default).
            overwrite: replace the segments of a non-empty ``outputSegmentation``.
            outputDir: keep the CLI's output files there (None = temporary, deleted afterwards).
            progress: called with each :class:`~.command.ProgressEvent`; returning False cancels.

        Returns:
            :class:`~.mrml_import.ImportedResults` (segmentation, centroids, table, vertebrae, warnings).

        Raises:
            ValueError: bad input (also: removed from the scene, or in another scene than :attr:`scene`), device, or
                output folder; ``outputSegmentation`` is not a segmentation node of :attr:`scene` (another class, in
                no scene or in another one), or (with ``overwrite``) keeps other segments under another transform than
                the CT or on another grid (:func:`~.mrml_import.check_output_segmentation`); ``overwrite`` is not True
                or False; ``progress`` is neither None nor callable. Checked before the run starts.
            SegmentationProcessError: the CLI failed (message quotes its error).
            OSError: the temporary work folder could not be made, or the segmentation process could not be started
                (its Python interpreter not found).
            SegmentationCancelledError: cancelled through ``progress``; nothing was added to the scene.
        """
        check_ct_in_scene(inputVolume, self.scene)  # before the run, not after minutes of it
        check_output_segmentation(inputVolume, outputSegmentation, overwrite)
        check_output_in_scene(outputSegmentation, self.scene)
        if progress is not None and not callable(progress):
            raise ValueError(f"progress must be a function taking a ProgressEvent (or None), got {progress!r}")
        run = self.startSegmentation(inputVolume, device, model, outputDir)
        try:
            folder = run.wait(progress or (lambda event: logging.info("SpineSegmentation: %s", event.text())))
            return self.loadResults(folder, inputVolume, outputSegmentation, overwrite)
        finally:
            run.cleanup()
