"""Exceptions raised by SpineSegmentationLib.

All are ``ValueError`` subclasses (bad input or bad model file) so that callers such as the Slicer Logic can
catch one type; each message names the problem and the fix.
"""


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
