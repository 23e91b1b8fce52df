"""The project's own segment tags (one function, :func:`vertebra_tags`) that both ``segmentation.seg.nrrd``
(``outputs/segmentation_nrrd.py``) and the Slicer module's segmentation node (``SpineSegmentationModuleLib/
mrml_import.py``) carry. Standard library only: the Slicer module imports it in Slicer's Python, where slicerio and
torch may be missing.
"""

from __future__ import annotations

import math

#: Prefix of the project's own segment tags.
TAG_PREFIX = "SpineSegmentation."
#: Tag of a segment whose level a person stated (``Vertebra.level_stated``).
LEVEL_STATED_TAG = TAG_PREFIX + "LevelStated"


def vertebra_tags(vertebra) -> dict[str, str]:
    """Every project tag of a :class:`~SpineSegmentationLib.result.Vertebra`'s segment: ``Label`` (VerSe number),
    ``Complete`` and ``Edited`` ("true"/"false"), ``PComplete`` and ``PLabel`` (4 decimals), ``LabelRegressed``
    (the network's raw label, 4 decimals; left out when it is not a finite number, so that renumbering falls back to
    the level's position as for a segment a person drew), ``LevelStated`` ("true", only where a person stated the
    level) and the anatomy evidence (:func:`evidence_tags`)."""
    tags = {
        TAG_PREFIX + "Label": str(int(vertebra.label)),
        TAG_PREFIX + "Complete": "true" if vertebra.complete else "false",
        TAG_PREFIX + "PComplete": f"{float(vertebra.p_complete):.4f}",
        TAG_PREFIX + "PLabel": f"{float(vertebra.p_label):.4f}",
        TAG_PREFIX + "Edited": "true" if vertebra.edited else "false",
    }
    if math.isfinite(vertebra.label_regressed):
        tags[TAG_PREFIX + "LabelRegressed"] = f"{float(vertebra.label_regressed):.4f}"
    if vertebra.level_stated:
        tags[LEVEL_STATED_TAG] = "true"
    return {**tags, **evidence_tags(vertebra)}


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
