"""Maximum-likelihood label-sequence refinement (seed 002, section 3.4).

The network regresses one value per detected vertebra on the column scale 1..24 (C1..L5). A regressed
value is read as a probability over the two nearest levels: 22.8 -> 80 % L4 (23) and 20 % L3 (22), 0 % for any
other level, i.e. ``p(level | r) = max(0, 1 - |r - position(level)|)``. Every contiguous labelling of the
detected vertebrae (no gaps, no duplicates) is scored by the *average* probability of its labels, and the
most likely sequence labels the column.

Extensions beyond the paper, kept in the same arithmetic:
* transitional columns: a 13th thoracic vertebra (T13, between T12 and L1) or a 6th lumbar vertebra (L6,
  after L5) are sequences of their own; their position on the regression scale is 19.5 and 24.5
  (``anatomy.column_position``);
* constraints: a person can state the level of one or more vertebrae; only sequences that agree are scored
  (used by renumbering in the correction workflow).

Transitional columns are rarer than the standard one. Their prior probability (:data:`COLUMN_PRIORS`, population
prevalences from the literature) enters the score as a Bayesian prior would: reading the average probability ``A``
of ``N`` vertebrae as a per-vertebra likelihood, a sequence's likelihood is ``A^N`` and its posterior is proportional
to ``A^N * prior(column)``; ranked on the average's own scale this is ``A * (prior(column) / prior(standard))^(1/N)``.
Within one column the paper's ranking is unchanged and the standard column's score is the paper's average; a T13/L6
labelling wins only when the regressions clearly favour it, and the fewer vertebrae there are, the more they must.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import COLUMNS, L6, MAX_COLUMN_LENGTH, T13, column_position, vertebra_name
from .result import LabelingAlternative

#: Prevalence of a 13th thoracic vertebra: in 65 of 1446 consecutive patients with a spine CT (4.5 %) the first
#: lumbar vertebra was the 21st segment (Yun et al., Korean J Radiol 2018;19(6):1140-1146).
PREVALENCE_T13 = 65 / 1446
#: Prevalence of a 6th lumbar vertebra: 16 of 293 asymptomatic adults (5.5 %) on whole-spine radiographs (Yan et al.,
#: J Orthop Surg Res 2018;13:124).
PREVALENCE_L6 = 16 / 293
#: Prior probability of each column (name as in ``anatomy.COLUMNS``); both variants together assumed independent.
COLUMN_PRIORS: dict[str, float] = {
    "with T13": PREVALENCE_T13 * (1 - PREVALENCE_L6),
    "with L6": PREVALENCE_L6 * (1 - PREVALENCE_T13),
    "with T13 and L6": PREVALENCE_T13 * PREVALENCE_L6,
}
COLUMN_PRIORS["standard"] = 1.0 - sum(COLUMN_PRIORS.values())


def prior_weight(column: str, n: int) -> float:
    """Factor on the average probability of an ``n``-vertebra sequence of ``column``:
    ``(prior(column) / prior(standard)) ** (1 / n)`` (module docstring); 1 for the standard column."""
    return (COLUMN_PRIORS[column] / COLUMN_PRIORS["standard"]) ** (1.0 / n)


def label_probability(regressed: float, label: int) -> float:
    """Probability of VerSe ``label`` under a regressed value (seed 002 section 3.4).

    ``max(0, 1 - |regressed - column_position(label)|)``; e.g. 22.8 -> 0.8 for 23 (L4), 0.2 for 22 (L3).
    """
    return max(0.0, 1.0 - abs(float(regressed) - column_position(label)))


@dataclass
class LabelingResult:
    """Outcome of :func:`refine_labels`.

    Attributes:
        labels: final VerSe label per detected vertebra, in the input (cranio-caudal) order.
        probabilities: probability of each final label under its regressed value.
        likelihood: average probability of the chosen sequence (times :func:`prior_weight` for T13/L6).
        alternatives: the best sequence, its shifts by +-1 level (always, even at zero likelihood) and other
            candidates with non-zero likelihood (T13/L6 variants, larger shifts), ordered by likelihood.
    """

    labels: list[int]
    probabilities: list[float]
    likelihood: float
    alternatives: list[LabelingAlternative]


def _describe(seq: tuple[int, ...], column: str) -> str:
    names = f"{vertebra_name(seq[0])}-{vertebra_name(seq[-1])}"
    return names if column == "standard" else f"{names} ({column})"


def refine_labels(
    regressed: list[float] | np.ndarray,
    constraints: dict[int, int] | None = None,
    max_alternatives: int = 8,
) -> LabelingResult:
    """Most likely contiguous label sequence for vertebrae in cranio-caudal order.

    Args:
        regressed: regressed label values of the N detected vertebrae, ordered from cranial (head) to caudal.
        constraints: optional {index in ``regressed``: VerSe label} that the sequence must respect
            ("this one is L5").
        max_alternatives: how many candidate sequences to keep in ``alternatives`` beyond the best and its
            +-1 shifts.

    Returns:
        :class:`LabelingResult`. For N = 0 the labels are empty and the likelihood is 0.

    Raises:
        ValueError: if N exceeds the longest column (26 vertebrae), a constraint index is out of range, or
            no sequence satisfies the constraints (e.g. "C1" stated below "L5").
    """
    r = [float(v) for v in regressed]
    n = len(r)
    constraints = {int(k): int(v) for k, v in (constraints or {}).items()}
    for idx, lab in constraints.items():
        if not 0 <= idx < n:
            raise ValueError(f"constraint on vertebra #{idx}, but only {n} vertebrae were detected")
        column_position(lab)  # raises for non-vertebra labels such as the sacrum
    if n == 0:
        return LabelingResult([], [], 0.0, [])
    if n > MAX_COLUMN_LENGTH:
        raise ValueError(f"{n} vertebrae detected, more than any spine has ({MAX_COLUMN_LENGTH} with T13 and L6); "
                         "check the input")

    candidates: dict[tuple[int, ...], tuple[float, str]] = {}
    for column_name, column in COLUMNS.items():
        for start in range(len(column) - n + 1):
            seq = tuple(column[start : start + n])
            if any(seq[i] != lab for i, lab in constraints.items()):
                continue
            # transitional columns only count when they use their extra vertebra
            if (T13 in column and T13 not in seq) or (L6 in column and L6 not in seq):
                continue
            likelihood = float(np.mean([label_probability(v, lab) for v, lab in zip(r, seq)]))
            likelihood *= prior_weight(column_name, n)
            if seq not in candidates or likelihood > candidates[seq][0]:
                candidates[seq] = (likelihood, column_name)
    if not candidates:
        stated = ", ".join(f"vertebra {i + 1} of {n} from the head = {vertebra_name(lab)}"
                           for i, lab in sorted(constraints.items()))
        raise ValueError(f"no contiguous labelling satisfies the stated levels ({stated}); check the stated levels, "
                         "or remove the vertebrae found between them that do not belong there")
    # ties: prefer the standard column, then the order of appearance (stable sort)
    ranked = sorted(candidates.items(), key=lambda kv: (-kv[1][0], kv[1][1] != "standard"))
    best = ranked[0][0]
    # the runner-ups a reviewer needs: the best, its shifts by one level (always), then anything plausible
    best_column = COLUMNS[ranked[0][1][1]]
    start = best_column.index(best[0])
    shifts = {tuple(best_column[s : s + n]) for s in (start - 1, start + 1) if 0 <= s <= len(best_column) - n}
    keep = [kv for kv in ranked if kv[0] == best or kv[0] in shifts]
    keep += [kv for kv in ranked if kv not in keep and kv[1][0] > 0][: max(0, max_alternatives - len(keep))]
    keep.sort(key=lambda kv: ranked.index(kv))
    alternatives = [
        LabelingAlternative(labels=list(seq), likelihood=lik, description=_describe(seq, col)) for seq, (lik, col) in keep
    ]
    return LabelingResult(
        labels=list(best),
        probabilities=[label_probability(v, lab) for v, lab in zip(r, best)],
        likelihood=ranked[0][1][0],
        alternatives=alternatives,
    )
