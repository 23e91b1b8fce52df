"""Maximum-likelihood label-sequence refinement (seed 002, section 3.4)."""

import pytest

from SpineSegmentationLib.labeling import label_probability, prior_weight, refine_labels


def test_paper_example_22_8_is_80_percent_L4_and_20_percent_L3():
    assert label_probability(22.8, 23) == pytest.approx(0.8)
    assert label_probability(22.8, 22) == pytest.approx(0.2)
    assert label_probability(22.8, 24) == 0.0
    assert label_probability(22.8, 21) == 0.0


def test_sequence_is_contiguous_and_maximises_the_average_probability():
    # cranio-caudal: the noisy regressions favour T12..L4 over L1..L5 (0.54 vs 0.46 average)
    res = refine_labels([19.2, 20.1, 21.3, 22.8, 23.9])
    assert res.labels == [19, 20, 21, 22, 23]
    assert res.likelihood == pytest.approx((0.8 + 0.9 + 0.7 + 0.2 + 0.1) / 5)
    assert res.probabilities == pytest.approx([0.8, 0.9, 0.7, 0.2, 0.1])
    shifted = next(a for a in res.alternatives if a.labels == [20, 21, 22, 23, 24])
    assert shifted.likelihood == pytest.approx((0.2 + 0.1 + 0.3 + 0.8 + 0.9) / 5)


def test_a_duplicate_prediction_is_resolved_into_a_sequence_without_duplicates():
    res = refine_labels([22.0, 22.1, 24.0])  # the network says L3, L3, L5
    assert res.labels == [22, 23, 24]
    assert len(set(res.labels)) == 3


def test_alternatives_are_ordered_by_likelihood_and_include_the_shifts():
    res = refine_labels([20.0, 21.0, 22.0])
    liks = [a.likelihood for a in res.alternatives]
    assert liks == sorted(liks, reverse=True)
    assert res.alternatives[0].labels == [20, 21, 22]
    seqs = [a.labels for a in res.alternatives]
    assert [19, 20, 21] in seqs and [21, 22, 23] in seqs


def test_transitional_vertebrae_are_chosen_when_the_regressions_say_so():
    # six lumbar-looking vertebrae below T12: the sixth is L6
    res = refine_labels([19.0, 20.0, 21.0, 22.0, 23.0, 24.0, 24.6])
    assert res.labels == [19, 20, 21, 22, 23, 24, 25]
    # an extra vertebra between T12 and L1: T13
    res = refine_labels([18.0, 19.0, 19.5, 20.0, 21.0])
    assert res.labels == [18, 19, 28, 20, 21]


def test_a_stated_level_relabels_the_whole_column():
    res = refine_labels([20.0, 21.0, 22.0], constraints={2: 24})  # "the lowest one is L5"
    assert res.labels == [22, 23, 24]
    assert all(a.labels[2] == 24 for a in res.alternatives)


def test_impossible_constraints_and_bad_input_raise_clear_errors():
    with pytest.raises(ValueError, match="no contiguous labelling"):
        refine_labels([20.0, 21.0], constraints={0: 24, 1: 1})
    with pytest.raises(ValueError, match="only 2 vertebrae"):
        refine_labels([20.0, 21.0], constraints={5: 20})
    with pytest.raises(ValueError, match="more than any spine"):
        refine_labels([1.0] * 27)
    assert refine_labels([]).labels == []


def test_a_transitional_column_needs_more_than_a_small_lead_to_beat_the_standard_one():
    # the regressions of a re-run on the example CT (shipped model, L3 edited): the T13 sequence T11, T12, T13,
    # L1..L4 has the higher average (0.516 against 0.446 for T11..L5), but a 13th thoracic vertebra is found in
    # 4.5 % of people: weighted by the prior, the standard column wins
    regressed = [18.412, 18.481, 19.555, 20.776, 21.022, 21.094, 23.7]
    res = refine_labels(regressed)
    assert res.labels == [18, 19, 20, 21, 22, 23, 24]
    t13 = next(a for a in res.alternatives if a.labels == [18, 19, 28, 20, 21, 22, 23])
    assert t13.likelihood == pytest.approx(3.611 / 7 * prior_weight("with T13", 7), abs=1e-3)
    assert prior_weight("standard", 7) == 1.0
    assert 0 < prior_weight("with T13 and L6", 7) < prior_weight("with T13", 7) < prior_weight("with T13", 12) < 1
