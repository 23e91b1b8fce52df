"""The result object of :func:`SpineSegmentationLib.pipeline.segment_spine`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import SimpleITK as sitk

from .anatomy import is_column_vertebra


@dataclass
class Vertebra:
    """One segmented vertebra.

    Attributes:
        label: VerSe label number (1-7 C1-C7, 8-19 T1-T12, 20-24 L1-L5, 25 L6, 28 T13; 26 the sacrum: a person's,
            kept as given, or the lowest segment taken for the top of the sacrum, ``labeling.py``).
        name: short level name, e.g. "L1".
        complete: True when the network classified the vertebra as completely visible (p_complete >= 0.5) and
            it does not reach the border of the image (there the field of view cuts it, whatever the network says).
        p_complete: probability of complete visibility (seed 002 section 3.5), in [0, 1].
        p_label: posterior probability of the final label given the regressed values and the anatomical
            evidence of the whole column (``labeling.py``), in [0, 1].
        label_regressed: the network's raw regressed label value (1..24 scale).
        centroid_ras_mm: centroid [x, y, z] of the whole vertebra (body and arch) in RAS millimetres; the VerSe
            point, the centre of the vertebral body, is ``outputs.centroids.body_centres_lps`` (``centroids_ctd.json``).
        volume_mm3: volume of the vertebra on the input grid, mm^3.
        iterations: network evaluations spent on this vertebra during traversal.
        edited: True when the segment was made or edited by a person and kept as is (correction workflow).
        rib_sides: sides (0-2) on which a rib touches the vertebra in the CT, None when not measured or not in
            view (``anatomy_evidence.py``).
        sacrum_below: True when the sacrum lies right below the vertebra (measured for the lowest two), False
            when the CT below shows none, None when not measured or not in view.
        level_stated: True when a person stated this vertebra's level (renumbering, an applied labelling
            alternative): the corrections that run the network again keep it as a constraint of the labelling
            (``correction.py``), and no landmark is needed to fix the levels (``sanity.unanchored_level_warnings``).
        complete_stated: True when a person set ``complete`` (``renumbering.set_completeness``): a click or re-run,
            which flags every vertebra from the network again, gives it back (``correction.keep_completeness``).
    """

    label: int
    name: str
    complete: bool
    p_complete: float
    p_label: float
    label_regressed: float
    centroid_ras_mm: list[float]
    volume_mm3: float
    iterations: int = 0
    edited: bool = False
    rib_sides: Optional[int] = None
    sacrum_below: Optional[bool] = None
    level_stated: bool = False
    complete_stated: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LabelingAlternative:
    """One candidate label sequence (seed 002 section 3.4): the labels of the detected vertebrae in
    cranio-caudal order, and the sequence's posterior probability (``labeling.py``)."""

    labels: list[int]
    likelihood: float
    description: str = ""


@dataclass
class SpineSegmentationResult:
    """What :func:`segment_spine` returns.

    Attributes:
        labels: int16 label map on the **input** grid (VerSe numbers, 0 = background).
        vertebrae: one entry per vertebra, cranio-caudal order (C1 first).
        alternatives: best label sequence first, then runner-up sequences (shift by +-1, T13/L6 variants),
            ordered by likelihood.
        run_info: model name and version, device, time per stage in seconds, network evaluation count.
        message: human-readable summary; says so when no spine was found.
    """

    labels: sitk.Image
    vertebrae: list[Vertebra]
    alternatives: list[LabelingAlternative] = field(default_factory=list)
    run_info: dict = field(default_factory=dict)
    message: str = ""


def column_and_beside(vertebrae: Sequence[Vertebra]) -> tuple[list[Vertebra], list[Vertebra]]:
    """``vertebrae`` split, each part in the given order, into the column's (C1..L5, T13, L6: the ones a summary
    counts, "N vertebrae") and the structures beside it (the sacrum: named after "also", not counted). The one
    rule of the run's message (``renumbering.result_message``) and the QC picture's title."""
    column = [v for v in vertebrae if is_column_vertebra(v.label)]
    return column, [v for v in vertebrae if not is_column_vertebra(v.label)]


def vertebra_count(n: int) -> str:
    """``n`` vertebrae in words as a summary starts: "1 vertebra", "17 vertebrae"."""
    return f"{n} vertebra" + ("" if n == 1 else "e")
