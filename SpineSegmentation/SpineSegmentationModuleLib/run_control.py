"""The widget's run state without Qt: at most one run at a time; start, poll, import, cancel, finish.

The module's widget drives one :class:`RunControl` from its Apply/Cancel button and a Qt timer; the same object
runs headless in the tests (``Testing/Python/test_slicer_module_headless.py``). Each run carries its own import
step, set only once the run has started, so a run that fails to start leaves nothing behind (no import step of
an earlier run, no node it created) and whatever happens at the end, the state goes back to "idle"::

    control = RunControl()
    control.start(lambda: logic.startSegmentation(volume),
                  lambda outputDir: logic.loadResults(outputDir, volume))
    while (results := control.poll(onProgress)) is None:   # from a timer in the GUI
        ...
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable, Optional

from .command import ProgressEvent


class RunControl:
    """One run of the segmentation or of a correction at a time, and what to do with its output.

    Attributes:
        run: the :class:`~.logic.SegmentationRun` in progress, or None when idle.
        warnings: problems met while cleaning up the last run (e.g. its temporary folder could not be deleted);
            reported, never raised, so that the state always goes back to idle.
    """

    def __init__(self) -> None:
        self.run = None
        self._import: Optional[Callable] = None
        self._discard: list = []
        self.warnings: list[str] = []

    @property
    def running(self) -> bool:
        """True from a successful :meth:`start` until the run is finished (imported, failed or cancelled)."""
        return self.run is not None

    def start(self, startRun: Callable[[], object], importOutput: Callable[[object], object],
              discardOnFailure: Iterable = ()) -> None:
        """Start a run; ``importOutput(outputDir)`` is called with its output folder when it succeeds.

        Args:
            startRun: starts the process and returns its ``SegmentationRun``.
            importOutput: builds the scene nodes from the output folder, returns what :meth:`poll` returns.
            discardOnFailure: MRML nodes made for this run (e.g. a new, empty segmentation); removed from their
                scene unless the run's output is imported (a failed start, a cancelled or failed run, a failed
                import).

        Raises:
            RuntimeError: a run is already in progress (cancel it first).
            Whatever ``startRun`` raises (ValueError for bad input, OSError, ...): the state stays idle and the
                nodes in ``discardOnFailure`` are removed.
        """
        if self.run is not None:
            raise RuntimeError("a run is already in progress; cancel it or wait for it to finish first")
        discard = list(discardOnFailure)
        try:
            run = startRun()
        except BaseException:
            _remove(discard)
            raise
        self.run, self._import, self._discard = run, importOutput, discard

    def poll(self, onProgress: Optional[Callable[[ProgressEvent], None]] = None):
        """Deliver progress; once the run has ended, import its output and finish.

        Returns:
            None while the run is in progress (or when idle), else what ``importOutput`` returned.

        Raises:
            SegmentationCancelledError, SegmentationProcessError: the run was cancelled or failed.
            ValueError: the output folder could not be imported (the scene is unchanged).
            In every case the run is finished (idle again, temporary files deleted) before the error is raised.
        """
        if self.run is None:
            return None
        try:
            outputDir = self.run.poll(onProgress)
            if outputDir is None:
                return None
            results = self._import(outputDir)
            self._discard = []  # the nodes made for the run now hold its results
            return results
        finally:
            if self.run is not None and not self.run.running:
                self.finish()

    def cancel(self) -> None:
        """Kill the run's process (and its children) and finish; nothing is imported. No-op when idle."""
        if self.run is not None:
            self.run.cancel()
            self.finish()

    def finish(self) -> None:
        """Go back to idle, remove the nodes made for a run whose output was not imported, and delete the run's
        temporary folder; a failed deletion becomes a warning."""
        run, self.run, self._import = self.run, None, None
        discard, self._discard = self._discard, []
        _remove(discard)
        self.warnings = []
        if run is None:
            return
        try:
            run.cleanup()
        except OSError as error:
            message = f"the temporary folder {run.workDir} could not be deleted: {error}; delete it by hand"
            logging.warning("SpineSegmentation: %s", message)
            self.warnings.append(message)


def _remove(nodes: Iterable) -> None:
    """Remove MRML nodes from their scene (those already removed are skipped)."""
    for node in nodes:
        if node is not None and node.GetScene() is not None:
            node.GetScene().RemoveNode(node)
