"""Tests for jaxpu.thesis.claims: the paired tests (checked against scipy.stats), the
claim combination rule, each claim's comparisons and the two-path agreement."""

import math

import numpy as np
import pytest
from scipy import stats

from jaxpu import report
from jaxpu.thesis import claims

M = claims.EQUIVALENCE_MARGIN


def _tost(a, b, margin=M):
  """TOST and the "different" test by hand from the t distribution: (p_equivalent,
  p_different)."""
  d = np.asarray(a) - np.asarray(b)
  df, mean = d.size - 1, d.mean()
  se = np.std(d, ddof=1) / np.sqrt(d.size)
  p_above_minus = stats.t.sf((mean + margin) / se, df)  # H1: mean d > -margin
  p_below_plus = stats.t.cdf((mean - margin) / se, df)  # H1: mean d < +margin
  p_above_plus = stats.t.sf((mean - margin) / se, df)  # H1: mean d > +margin
  p_below_minus = stats.t.cdf((mean + margin) / se, df)  # H1: mean d < -margin
  return max(p_above_minus, p_below_plus), min(p_above_plus, p_below_minus)


def test_paired_statistics_match_scipy():
  a, b = [0.50, 0.47, 0.52], [0.40, 0.41, 0.39]
  p = claims.paired(a, b)
  d = np.array(a) - np.array(b)
  assert p.n == 3 and p.mean == pytest.approx(d.mean())
  assert p.sd == pytest.approx(np.sqrt(np.sum((d - d.mean()) ** 2) / 2))  # ddof 1
  assert p.se == pytest.approx(p.sd / np.sqrt(3))
  assert p.t == pytest.approx(stats.ttest_rel(a, b).statistic)
  assert p.p_greater == pytest.approx(stats.ttest_rel(a, b, alternative="greater").pvalue)
  assert p.p_less == pytest.approx(stats.ttest_rel(a, b, alternative="less").pvalue)
  assert p.p_two_sided == pytest.approx(stats.ttest_rel(a, b).pvalue)
  # The 90 % interval: t-based with n - 1 df.
  low, high = stats.t.interval(0.90, 2, loc=d.mean(), scale=stats.sem(d))
  assert p.ci == pytest.approx((low, high))
  ci = stats.ttest_rel(a, b).confidence_interval(confidence_level=0.90)
  assert p.ci == pytest.approx((ci.low, ci.high))
  assert (p.p_equivalent, p.p_different) == pytest.approx(_tost(a, b))
  assert str(p) == (f"d = +0.097 [90% CI {low:+.3f}, {high:+.3f}], "
                    f"p = {stats.ttest_rel(a, b).pvalue:.3f}, n = 3")
  with pytest.raises(ValueError, match="equally long"):
    claims.paired([0.5, 0.6], [0.4])


def test_one_sided_t_test_outcomes():
  # d = (0.10, 0.06, 0.13): one-sided p ≈ 0.02.
  a, b = [0.50, 0.47, 0.52], [0.40, 0.41, 0.39]
  assert stats.ttest_rel(a, b, alternative="greater").pvalue < 0.05
  assert claims.judge_difference(claims.paired(a, b), ">") == claims.SUPPORTED
  assert stats.ttest_rel(b, a, alternative="less").pvalue < 0.05
  assert claims.judge_difference(claims.paired(b, a), ">") == claims.CONTRADICTED
  # d = (0.05, -0.04, 0.02): no direction.
  a, b = [0.45, 0.36, 0.42], [0.40, 0.40, 0.40]
  assert min(stats.ttest_rel(a, b, alternative=alt).pvalue
             for alt in ("greater", "less")) >= 0.05
  assert claims.judge_difference(claims.paired(a, b), ">") == claims.UNDECIDED
  # d = (0.03, 0.01, 0.05): d̄ = 2.6 SE, which the old 2-SE rule called supported; on 2 df
  # the one-sided p is 0.06, so it is undecided now.
  a, b = [0.53, 0.51, 0.55], [0.50, 0.50, 0.50]
  p = claims.paired(a, b)
  assert p.mean > 2 * p.se
  assert p.p_greater == pytest.approx(stats.ttest_rel(a, b, alternative="greater").pvalue)
  assert 0.05 < p.p_greater < 0.07
  assert claims.judge_difference(p, ">") == claims.UNDECIDED
  assert "p(d > 0) = 0.06" in p.summary(">")
  assert "p(d < 0)" in claims.paired([0.40, 0.41, 0.39], [0.50, 0.47, 0.52]).summary(">")
  with pytest.raises(ValueError, match="expected"):
    claims.judge_difference(p, "<")


def test_equivalence_outcomes():
  # d = (0.003, -0.002, 0.001): the 90 % CI lies well inside ±0.02.
  a, b = [0.503, 0.498, 0.501], [0.50, 0.50, 0.50]
  p = claims.paired(a, b)
  p_equivalent, _ = _tost(a, b)
  assert p.p_equivalent == pytest.approx(p_equivalent) and p_equivalent < 0.05
  assert -M < p.ci_low < p.ci_high < M
  assert claims.judge_difference(p, "≈") == claims.EQUIVALENT
  assert "p(d within ±0.02) = " in p.summary("≈")
  # A small but consistent difference is both "a > b" and "a ≈ b".
  a, b = [0.510, 0.511, 0.509], [0.50, 0.50, 0.50]
  assert claims.judge_difference(claims.paired(a, b), ">") == claims.SUPPORTED
  assert claims.judge_difference(claims.paired(a, b), "≈") == claims.EQUIVALENT
  # d = (0.10, 0.06, 0.13) either way: the CI lies outside ±0.02.
  for a, b in [([0.50, 0.47, 0.52], [0.40, 0.41, 0.39]),
               ([0.40, 0.41, 0.39], [0.50, 0.47, 0.52])]:
    p = claims.paired(a, b)
    _, p_different = _tost(a, b)
    assert p.p_different == pytest.approx(p_different) and p_different < 0.05
    assert p.ci_low > M or p.ci_high < -M
    assert claims.judge_difference(p, "≈") == claims.DIFFERENT
    assert f"p(d outside ±{M:g}) = " in p.summary("≈")
  # d = (0.05, -0.04, 0.02): the CI overlaps the margins: neither.
  a, b = [0.45, 0.36, 0.42], [0.40, 0.40, 0.40]
  p = claims.paired(a, b)
  assert min(_tost(a, b)) >= 0.05
  assert claims.judge_difference(p, "≈") == claims.UNDECIDED
  # d = (0.01, -0.01, -0.01): d̄ is tiny, yet three repeats cannot bound it by ±0.02.
  p = claims.paired([0.76, 0.73, 0.75], [0.75, 0.74, 0.76])
  assert p.ci_low < -M < p.ci_high
  assert claims.judge_difference(p, "≈") == claims.UNDECIDED
  # The margin is a parameter of `paired`.
  assert claims.judge_difference(claims.paired(a, b, margin=1.0), "≈") == claims.EQUIVALENT
  with pytest.raises(ValueError, match="margin"):
    claims.paired(a, b, margin=0.0)


def test_one_repeat_is_never_tested():
  p = claims.paired([0.9], [0.1])
  assert p.n == 1 and p.mean == pytest.approx(0.8)
  assert all(math.isnan(x) for x in (p.sd, p.se, p.ci_low, p.ci_high, p.p_greater,
                                     p.p_equivalent, p.t))
  assert claims.judge_difference(p, ">") == claims.UNDECIDED
  assert claims.judge_difference(p, "≈") == claims.UNDECIDED
  assert not claims.significant(p)
  assert str(p) == "d = +0.800, n = 1: no test"
  assert p.summary(">") == "d = +0.800, n = 1: no test"


def test_zero_variance_is_decisive():
  # Equal nonzero differences: known exactly, p = 0 on their side.
  p = claims.paired([0.5, 0.5, 0.5], [0.4, 0.4, 0.4])
  assert p.sd == 0 and p.ci_low == p.ci_high == p.mean
  assert (p.p_greater, p.p_less, p.p_two_sided) == (0.0, 1.0, 0.0)
  assert claims.judge_difference(p, ">") == claims.SUPPORTED
  assert claims.judge_difference(p, "≈") == claims.DIFFERENT  # 0.1 > 0.02
  assert claims.significant(p) and p.t == math.inf
  assert "p(d > 0) = 0 (sd = 0)" in p.summary(">")
  assert claims.judge_difference(claims.paired([0.4, 0.4], [0.5, 0.5]), ">") == \
      claims.CONTRADICTED
  # A constant difference inside the margin: a > b and a ≈ b both hold.
  p = claims.paired([0.51, 0.51, 0.51], [0.50, 0.50, 0.50])
  assert claims.judge_difference(p, ">") == claims.SUPPORTED
  assert claims.judge_difference(p, "≈") == claims.EQUIVALENT
  # All differences zero: no direction, but equivalent.
  p = claims.paired([0.3, 0.5, 0.7], [0.3, 0.5, 0.7])
  assert p.mean == 0 and p.sd == 0 and p.p_two_sided == 1.0
  assert claims.judge_difference(p, ">") == claims.UNDECIDED
  assert claims.judge_difference(p, "≈") == claims.EQUIVALENT
  assert not claims.significant(p)


def test_significant_is_a_two_sided_paired_t_test():
  for a, b in [([0.50, 0.47, 0.52], [0.40, 0.41, 0.39]),  # p ≈ 0.04
               ([0.53, 0.51, 0.55], [0.50, 0.50, 0.50]),  # p ≈ 0.12
               ([0.45, 0.36, 0.42], [0.40, 0.40, 0.40]),
               ([0.2, 0.4, 0.3, 0.5], [0.1, 0.2, 0.3, 0.4])]:
    expected = stats.ttest_rel(a, b).pvalue < 0.05
    assert claims.significant(claims.paired(a, b)) == expected
  assert claims.significant(claims.paired([0.50, 0.47, 0.52], [0.40, 0.41, 0.39]))
  assert not claims.significant(claims.paired([0.53, 0.51, 0.55], [0.50, 0.50, 0.50]))


def test_a_claim_combines_its_comparisons():
  S, C, U = claims.SUPPORTED, claims.CONTRADICTED, claims.UNDECIDED
  E, D = claims.EQUIVALENT, claims.DIFFERENT
  assert claims.combine([(">", S), (">", S), ("≈", E)]) == S
  assert claims.combine([("≈", E)]) == S
  assert claims.combine([(">", S), ("≈", U)]) == U  # "≈" must be shown, not just not refuted
  assert claims.combine([(">", S), (">", U)]) == U
  assert claims.combine([(">", S), ("≈", D)]) == C
  assert claims.combine([(">", C), (">", S)]) == C
  assert claims.combine([(">", U), ("≈", D)]) == C
  assert claims.combine([]) == U
  with pytest.raises(ValueError, match="not a verdict"):
    claims.combine([("≈", S)])


def test_cell_std_is_the_sample_std():
  assert report.Cell("t", ("a",), "x", [0.2, 0.4, 0.6]).std == pytest.approx(
      np.std([0.2, 0.4, 0.6], ddof=1))
  assert report.Cell("t", ("a",), "x", [0.7]).std == 0.0


def _cells(table, values):
  return [report.Cell(table, row, column, v) for (row, column), v in values.items()]


def _by_name(cells, **pending):
  verdicts = claims.judge_all(cells, **pending)
  return {j.__name__: v for j, v in zip(claims.JUDGES, verdicts)}


T4 = {(("Baseline", "RandomWeights"), "Average"): [0.30, 0.31, 0.29],
      (("Baseline", "CompleteLabels"), "Average"): [0.45, 0.46, 0.44],
      (("Inexhaustive Segmentation", "HalfUnsegmented"), "Average"): [0.38, 0.39, 0.37],
      (("Inexhaustive Segmentation", "SigmoidLoss"), "Average"): [0.45, 0.47, 0.44]}


def test_judges_follow_the_paired_numbers():
  t4 = dict(T4)
  verdicts = _by_name(_cells("table4", t4))
  assert verdicts["pretraining_helps"].status == claims.SUPPORTED
  assert verdicts["unsegmented_objects_hurt_transfer"].status == claims.SUPPORTED
  assert verdicts["sigmoid_protects_transfer"].status == claims.SUPPORTED
  # d = (0, 0.01, 0): the 90 % CI lies inside ±0.02.
  recovers = verdicts["sigmoid_recovers_transfer"]
  assert recovers.status == claims.SUPPORTED
  assert "90% CI" in recovers.evidence and "p(d within ±0.02)" in recovers.evidence
  assert "n = 3" in recovers.evidence and "equivalent" in recovers.evidence
  assert "0.453 ± 0.015" in recovers.evidence  # mean ± sample std (ddof 1) of a cell
  assert verdicts["false_positives_harmless"].status == claims.NOT_MEASURED
  # The same rows with the sigmoid pre-training below the logistic one, on every repeat.
  t4[(("Inexhaustive Segmentation", "SigmoidLoss"), "Average")] = [0.36, 0.37, 0.35]
  assert _by_name(_cells("table4", t4))["sigmoid_protects_transfer"].status == claims.CONTRADICTED
  # Differences that flip sign between repeats are undecided...
  t4[(("Inexhaustive Segmentation", "SigmoidLoss"), "Average")] = [0.40, 0.37, 0.38]
  verdicts = _by_name(_cells("table4", t4))
  assert verdicts["sigmoid_protects_transfer"].status == claims.UNDECIDED
  # ...while a clear gap to the complete labels (CI outside ±0.02) contradicts "≈".
  assert verdicts["sigmoid_recovers_transfer"].status == claims.CONTRADICTED
  assert "different" in verdicts["sigmoid_recovers_transfer"].evidence

  t1 = {(("R+N", "CrossEntropy"), "mean rec."): [0.80, 0.82, 0.81],
        (("50%R+U", "CrossEntropy"), "mean rec."): [0.30, 0.35, 0.33],
        (("50%R+U", "ClassWeighted"), "mean rec."): [0.70, 0.72, 0.69],
        (("50%R+U", "SoftmaxLoss"), "mean rec."): [0.78, 0.80, 0.79],
        (("50%R+U", "ClassWeighted"), "mean prec."): [0.75, 0.74, 0.76],
        (("50%R+U", "SoftmaxLoss"), "mean prec."): [0.752, 0.741, 0.759]}
  verdicts = _by_name(_cells("table1", t1))
  assert verdicts["softmax_raises_recall"].status == claims.SUPPORTED
  assert verdicts["cross_entropy_collapses_on_pu"].status == claims.SUPPORTED
  # Precision "kept" must be shown within ±0.02, not merely not refuted.
  t1[(("50%R+U", "SoftmaxLoss"), "mean prec.")] = [0.76, 0.73, 0.75]
  assert _by_name(_cells("table1", t1))["softmax_raises_recall"].status == claims.UNDECIDED

  sweep = {(("70%Unseg.", "SigmoidLoss"), "fg AP"): [0.8, 0.82],
           (("70%Unseg.", "ClassWeighted"), "fg AP"): [0.7, 0.71],
           (("30%Unseg.", "SigmoidLoss"), "fg AP"): [0.5, 0.5],
           (("30%Unseg.", "ClassWeighted"), "fg AP"): [0.9, 0.9]}
  assert (_by_name(_cells("sweep", sweep))["sigmoid_ranks_foreground_at_high_rates"].status
          == claims.SUPPORTED)  # 30 % is not above 50 %; 70 %: one-sided p = 0.015 on 1 df


def test_one_repeat_leaves_every_measured_claim_undecided():
  t4 = {key: values[:1] for key, values in T4.items()}
  verdicts = _by_name(_cells("table4", t4))
  for name in ("pretraining_helps", "sigmoid_protects_transfer", "sigmoid_recovers_transfer"):
    assert verdicts[name].status == claims.UNDECIDED
    assert "n = 1: no test" in verdicts[name].evidence


def test_missing_cells_are_pending_while_their_experiment_runs():
  verdicts = claims.judge_all([], pending=["transfer"])
  assert {v.status for v in verdicts} == {claims.PENDING}
  assert {v.status for v in claims.judge_all([])} == {claims.NOT_MEASURED}
  unpaired = [report.Cell("table4", ("Baseline", "RandomWeights"), "Average", [0.3, 0.3]),
              report.Cell("table4", ("Baseline", "CompleteLabels"), "Average", [0.4])]
  assert "cannot be paired" in _by_name(unpaired)["pretraining_helps"].evidence


def test_verdicts_must_hold_on_a_second_numeric_path():
  first = claims.judge_all(_cells("table4", T4))
  # The second path measured the same table, but its sigmoid row flips sign between repeats.
  t4 = dict(T4)
  t4[(("Inexhaustive Segmentation", "SigmoidLoss"), "Average")] = [0.40, 0.37, 0.38]
  second = claims.judge_all(_cells("table4", t4))
  merged = {v.claim: v for v in claims.agree(first, second)}
  assert [v.claim for v in claims.agree(first, second)] == [v.claim for v in first]
  by_name = {j.__name__: merged[v.claim] for j, v in zip(claims.JUDGES, first)}
  assert by_name["pretraining_helps"].status == claims.SUPPORTED  # same on both paths
  assert by_name["pretraining_helps"] == first[0]
  protects = by_name["sigmoid_protects_transfer"]
  assert protects.status == "undecided (paths disagree: supported vs undecided)"
  assert protects.status == claims.disagreement(claims.SUPPORTED, claims.UNDECIDED)
  assert "Second numeric path (undecided)" in protects.evidence
  assert by_name["sigmoid_recovers_transfer"].status == (
      "undecided (paths disagree: supported vs contradicted)")
  assert by_name["false_positives_harmless"].status == claims.NOT_MEASURED  # on both
  # A claim the second path has not measured yet is not confirmed.
  pending = claims.agree(first, claims.judge_all([], pending=["transfer"]))
  assert {v.status for v in pending} == {claims.PENDING}
  assert {v.status for v in claims.agree(first, claims.judge_all([]))} == {claims.NOT_MEASURED}
  assert claims.agree(first, list(reversed(first))) == first  # matched by claim, not order
  with pytest.raises(ValueError, match="same claims"):
    claims.agree(first, first[1:])
  assert "XLA_FLAGS=--xla_cpu_max_isa=AVX" in claims.SECOND_PATH_RULE


def test_the_rule_states_the_tests():
  for words in ("0.05", "one-sided paired t-test", "TOST", "±0.02", "90% confidence",
                "ddof 1", "undecided", "equivalent"):
    assert words in claims.RULE, words
  assert claims.ALPHA == 0.05 and claims.EQUIVALENCE_MARGIN == 0.02


def test_evidence_fits_a_markdown_table_cell():
  p = claims.paired([0.5, 0.52, 0.51], [0.5, 0.51, 0.52])
  assert "|" not in p.summary("≈") and "|" not in p.summary(">") and "|" not in str(p)
