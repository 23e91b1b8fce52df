"""SNOMED CT terminology and colours of vertebra segments (DICOM / 3D Slicer terminology).

Each VerSe label maps to a segment name, a colour and a coded (category, type) pair as used by DICOM SEG and
3D Slicer's terminology:

- category: SCT 123037004 "Anatomical Structure", as in 3D Slicer's terminology lists and dcmqi (DICOM CID 7150
  lists this category as SCT 91723000; the Slicer code is kept in the DICOM SEG too, so that both outputs match what
  Slicer's terminology selector offers);
- type, C1..L5: DICOM CID 7603 "Vertebra" (SCT codes of each level, e.g. T11 = 12989004);
- type, sacrum: SCT 54735007 "Sacrum";
- L6 and T13 have no SNOMED CT concept of their own: they are coded as SCT 51282000 "Vertebra" (DICOM CID
  7151) with the anatomic region SCT 122496007 "Lumbar spine" / SCT 122495006 "Thoracic spine" (DICOM
  CID 4 "Anatomic Region") and keep their level in the segment name (documented fallback).

:func:`slicer_terminology_entry` serialises an entry in the format of 3D Slicer's segment tag
``TerminologyEntry`` (``vtkSlicerTerminologiesModuleLogic::SerializeTerminologyEntry``), and
:func:`terminology_context` builds the ``.term.json`` context file that the Slicer module ships so that the
codes are selectable in Slicer's terminology selector. No Slicer import is needed for either.
"""

from __future__ import annotations

from dataclasses import dataclass

from .anatomy import VERSE_NAMES, vertebra_name

SCHEME = "SCT"
CATEGORY = (SCHEME, "123037004", "Anatomical Structure")
#: Generic type of L6/T13 (DICOM CID 7151, "Vertebra").
GENERIC_VERTEBRA = (SCHEME, "51282000", "Vertebra")
#: Anatomic region of the generic type (DICOM CID 4 "Anatomic Region": "Lumbar spine" / "Thoracic spine").
_FALLBACK_REGION: dict[int, tuple[str, str, str]] = {
    25: (SCHEME, "122496007", "Lumbar spine"),  # L6
    28: (SCHEME, "122495006", "Thoracic spine"),  # T13
}

#: Name of the terminology context in the shipped ``.term.json`` (3D Slicer "SegmentationCategoryTypeContextName").
TERMINOLOGY_CONTEXT_NAME = "Segmentation category and type - SpineSegmentation"
#: 3D Slicer's built-in anatomic context (used for the region of L6/T13).
ANATOMIC_CONTEXT_NAME = "Anatomic codes - DICOM master list"

# VerSe label -> (SNOMED CT code, code meaning); C1..L5 as DICOM CID 7603 "Vertebra".
_SNOMED: dict[int, tuple[str, str]] = {
    1: ("14806007", "C1 vertebra"),
    2: ("39976000", "C2 vertebra"),
    3: ("113205007", "C3 vertebra"),
    4: ("5329002", "C4 vertebra"),
    5: ("36978003", "C5 vertebra"),
    6: ("36054005", "C6 vertebra"),
    7: ("87391001", "C7 vertebra"),
    8: ("64864005", "T1 vertebra"),
    9: ("53733008", "T2 vertebra"),
    10: ("1626008", "T3 vertebra"),
    11: ("73071006", "T4 vertebra"),
    12: ("56401006", "T5 vertebra"),
    13: ("45296009", "T6 vertebra"),
    14: ("62487009", "T7 vertebra"),
    15: ("11068009", "T8 vertebra"),
    16: ("82687006", "T9 vertebra"),
    17: ("7610001", "T10 vertebra"),
    18: ("12989004", "T11 vertebra"),
    19: ("23215003", "T12 vertebra"),
    20: ("66794005", "L1 vertebra"),
    21: ("14293000", "L2 vertebra"),
    22: ("36470004", "L3 vertebra"),
    23: ("11994002", "L4 vertebra"),
    24: ("49668003", "L5 vertebra"),
    25: GENERIC_VERTEBRA[1:],  # L6: no specific concept (fallback, region "Lumbar spine")
    26: ("54735007", "Sacrum"),
    28: GENERIC_VERTEBRA[1:],  # T13: no specific concept (fallback, region "Thoracic spine")
}


@dataclass(frozen=True)
class VertebraTerminology:
    """Coded description of one vertebra segment.

    Attributes:
        name: segment name (the level, e.g. "L1").
        category: (coding scheme, code value, code meaning) of the category.
        type: (coding scheme, code value, code meaning) of the type.
        color_rgb: colour, three floats in [0, 1].
        fallback: True for L6/T13, whose type is the generic "Vertebra" concept.
        region: (coding scheme, code value, code meaning) of the anatomic region, or None; set for L6
            ("Lumbar spine") and T13 ("Thoracic spine") only.
    """

    name: str
    category: tuple[str, str, str]
    type: tuple[str, str, str]
    color_rgb: tuple[float, float, float]
    fallback: bool = False
    region: tuple[str, str, str] | None = None


def _color(label: int) -> tuple[float, float, float]:
    """Distinct, repeatable colour per level: neighbours differ strongly in hue."""
    import colorsys

    hue = (label * 0.382) % 1.0  # golden-ratio steps keep adjacent levels far apart in hue
    return tuple(round(c, 4) for c in colorsys.hsv_to_rgb(hue, 0.75, 0.95))


def vertebra_terminology(label: int) -> VertebraTerminology:
    """Terminology entry of a VerSe label.

    Raises:
        ValueError: for a label that is not a vertebra (see :func:`anatomy.vertebra_name`).
    """
    name = vertebra_name(label)
    code, meaning = _SNOMED[int(label)]
    return VertebraTerminology(
        name=name,
        category=CATEGORY,
        type=(SCHEME, code, meaning),
        color_rgb=_color(int(label)),
        fallback=int(label) in _FALLBACK_REGION,
        region=_FALLBACK_REGION.get(int(label)),
    )


def _coded(code: tuple[str, str, str] | None) -> str:
    """``scheme^value^meaning`` (empty ``^^`` for no code), the coded-entry format of Slicer's tag."""
    if code is None:
        return "^^"
    scheme, value, meaning = code
    for part in code:
        if "~" in part or "^" in part or "|" in part:
            raise ValueError(f"code part {part!r} contains a separator character (~ ^ |) of the terminology tag")
    return f"{scheme}^{value}^{meaning}"


def slicer_terminology_entry(label: int) -> str:
    """3D Slicer ``TerminologyEntry`` segment tag of a VerSe label.

    The format is that of ``vtkSlicerTerminologiesModuleLogic::SerializeTerminologyEntry`` (Slicer 5.x):
    ``context~category~type~typeModifier~anatomicContext~region~regionModifier`` with each code as
    ``scheme^value^meaning``, e.g. for L1::

        Segmentation category and type - SpineSegmentation~SCT^123037004^Anatomical Structure~
        SCT^66794005^L1 vertebra~^^~Anatomic codes - DICOM master list~^^~^^

    (one line, no breaks). Set it with ``segment.SetTag(segment.GetTerminologyEntryTagName(), entry)``.

    Raises:
        ValueError: for a label that is not a vertebra.
    """
    term = vertebra_terminology(label)
    return "~".join(
        [
            TERMINOLOGY_CONTEXT_NAME,
            _coded(term.category),
            _coded(term.type),
            _coded(None),
            ANATOMIC_CONTEXT_NAME,
            _coded(term.region),
            _coded(None),
        ]
    )


def terminology_context() -> dict:
    """The 3D Slicer terminology context (``.term.json`` document) of all vertebra types.

    One category (Anatomical Structure) with one type per distinct code: C1..L5, sacrum and the generic
    "Vertebra" used for L6/T13 (its region is chosen per segment). ``recommendedDisplayRGBValue`` is the
    colour of :func:`vertebra_terminology` in 0..255 (the generic type takes the L6 colour).
    Schema: ``https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/segment-context-schema.json``.
    """
    types: list[dict] = []
    seen: set[str] = set()
    for label in ALL_LABELS:
        term = vertebra_terminology(label)
        scheme, value, meaning = term.type
        if value in seen:
            continue
        seen.add(value)
        types.append(
            {
                "CodingSchemeDesignator": scheme,
                "CodeValue": value,
                "CodeMeaning": meaning,
                "recommendedDisplayRGBValue": [int(round(255 * c)) for c in term.color_rgb],
            }
        )
    scheme, value, meaning = CATEGORY
    return {
        "SegmentationCategoryTypeContextName": TERMINOLOGY_CONTEXT_NAME,
        "@schema": "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/segment-context-schema.json#",
        "SegmentationCodes": {
            "Category": [
                {
                    "CodingSchemeDesignator": scheme,
                    "CodeValue": value,
                    "CodeMeaning": meaning,
                    "showAnatomy": True,
                    "Type": types,
                }
            ]
        },
    }


ALL_LABELS = tuple(sorted(VERSE_NAMES))
