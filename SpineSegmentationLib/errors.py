"""Exceptions raised by SpineSegmentationLib.

All are ``ValueError`` subclasses (bad input or bad model file) so that callers such as the Slicer Logic can
catch one type; each message names the problem and the fix.
"""

import signal


class SpineSegmentationError(ValueError):
    """Base class of the library's errors."""


class InputImageError(SpineSegmentationError):
    """The input image cannot be segmented (missing, unreadable, not a 3D CT in HU, ...)."""


class ModelFileError(SpineSegmentationError):
    """A model file is missing, corrupt, or does not match this version of the library."""


class OutputExistsError(SpineSegmentationError):
    """Writing would overwrite a file the user made."""


class CancelledError(SpineSegmentationError):
    """The run was cancelled through the progress callback."""


class OutputWriteError(SpineSegmentationError):
    """The outputs cannot be written: the folder is not writable, the disk is full, or another run is writing
    into the same folder."""


class DeviceError(SpineSegmentationError):
    """The requested compute device is unknown or not usable on this machine."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM stopped a run; ``str()`` says what was left on disk.

    A ``KeyboardInterrupt`` (not an ``Exception``), so that no ``except Exception`` on the way swallows it.

    Attributes:
        signal_number: the signal that stopped the run (2 = SIGINT, 15 = SIGTERM).
    """

    def __init__(self, message: str, signal_number: int = 2) -> None:
        super().__init__(message)
        self.signal_number = signal_number

    @staticmethod
    def of(stop: KeyboardInterrupt, left_behind: str) -> "Interrupted":
        """The :class:`Interrupted` for a ``KeyboardInterrupt`` (or an :class:`Interrupted` raised by a SIGTERM
        handler), its message "interrupted (Ctrl-C)" or "terminated (SIGTERM)" followed by ``left_behind``."""
        number = getattr(stop, "signal_number", signal.SIGINT)
        what = "terminated (SIGTERM)" if number == signal.SIGTERM else "interrupted (Ctrl-C)"
        return Interrupted(f"{what}{left_behind}", number)
