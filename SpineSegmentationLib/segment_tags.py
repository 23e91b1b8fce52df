"""The project's own segment tags that both ``segmentation.seg.nrrd`` (``outputs/segmentation_nrrd.py``) and the
Slicer module's segmentation node (``SpineSegmentationModuleLib/mrml_import.py``) carry. Standard library only:
the Slicer module imports it in Slicer's Python, where slicerio and torch may be missing.
"""

from __future__ import annotations

#: Prefix of the project's own segment tags.
TAG_PREFIX = "SpineSegmentation."


def evidence_tags(vertebra) -> dict[str, str]:
    """``RibSides`` ("0"-"2") and ``SacrumBelow`` ("true"/"false") tags of a
    :class:`~SpineSegmentationLib.result.Vertebra`'s anatomy evidence (``anatomy_evidence.py``); a tag is left out
    where the evidence was not measured (None)."""
    tags = {}
    if vertebra.rib_sides is not None:
        tags[TAG_PREFIX + "RibSides"] = str(int(vertebra.rib_sides))
    if vertebra.sacrum_below is not None:
        tags[TAG_PREFIX + "SacrumBelow"] = "true" if vertebra.sacrum_below else "false"
    return tags
