"""SNOMED CT terminology and colours of vertebra segments (DICOM / 3D Slicer terminology).

Each VerSe label maps to a segment name, a colour and a coded (category, type) pair as used by DICOM SEG and
Slicer's terminology (category "Anatomical Structure", SCT 123037004; types from the DICOM anatomic-region
context groups). L6 and T13 have no SNOMED CT concept of their own: they are coded with the generic
"Lumbar vertebra" / "Thoracic vertebra" concept and keep their level in the segment name (documented
fallback, see README).
"""

from __future__ import annotations

from dataclasses import dataclass

from .anatomy import VERSE_NAMES, vertebra_name

SCHEME = "SCT"
CATEGORY = (SCHEME, "123037004", "Anatomical Structure")

# VerSe label -> (SNOMED CT code, code meaning)
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
    18: ("12989008", "T11 vertebra"),
    19: ("23215003", "T12 vertebra"),
    20: ("66794005", "L1 vertebra"),
    21: ("14293000", "L2 vertebra"),
    22: ("36470004", "L3 vertebra"),
    23: ("11994002", "L4 vertebra"),
    24: ("49668003", "L5 vertebra"),
    25: ("122496007", "Lumbar vertebra"),  # L6: no specific concept (fallback)
    26: ("54735007", "Sacrum"),
    28: ("122495006", "Thoracic vertebra"),  # T13: no specific concept (fallback)
}


@dataclass(frozen=True)
class VertebraTerminology:
    """Coded description of one vertebra segment.

    Attributes:
        name: segment name (the level, e.g. "L1").
        category: (coding scheme, code value, code meaning) of the category.
        type: (coding scheme, code value, code meaning) of the type.
        color_rgb: colour, three floats in [0, 1].
        fallback: True for L6/T13, whose type is the generic region concept.
    """

    name: str
    category: tuple[str, str, str]
    type: tuple[str, str, str]
    color_rgb: tuple[float, float, float]
    fallback: bool = False


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
        fallback=int(label) in (25, 28),
    )


ALL_LABELS = tuple(sorted(VERSE_NAMES))
