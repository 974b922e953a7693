"""Tests for jaxpu.thesis.claims: the paired-repeat rule and each claim's comparisons."""

import math

import numpy as np
import pytest

from jaxpu import report
from jaxpu.thesis import claims


def test_paired_differences_by_hand():
  p = claims.paired([0.50, 0.47, 0.52], [0.40, 0.41, 0.39])
  d = np.array([0.10, 0.06, 0.13])
  assert p.n == 3 and p.mean == pytest.approx(d.mean())
  assert p.se == pytest.approx(np.sqrt(np.sum((d - d.mean()) ** 2) / 2) / np.sqrt(3))
  assert math.isnan(claims.paired([0.5], [0.4]).se)  # one repeat: no standard error
  with pytest.raises(ValueError, match="equally long"):
    claims.paired([0.5, 0.6], [0.4])


def test_the_rule_has_three_outcomes():
  # d = (0.10, 0.06, 0.13): mean 0.097, SE 0.020 → 4.8 SE.
  supported = claims.paired([0.50, 0.47, 0.52], [0.40, 0.41, 0.39])
  assert claims.judge_difference(supported, ">") == claims.SUPPORTED
  contradicted = claims.paired([0.40, 0.41, 0.39], [0.50, 0.47, 0.52])
  assert claims.judge_difference(contradicted, ">") == claims.CONTRADICTED
  # d = (0.05, -0.04, 0.02): mean 0.01, SE 0.026 → within 2 SE.
  unclear = claims.paired([0.45, 0.36, 0.42], [0.40, 0.40, 0.40])
  assert claims.judge_difference(unclear, ">") == claims.NOT_SEPARABLE
  # Similarities: a clear difference either way contradicts "≈".
  assert claims.judge_difference(unclear, "≈") == claims.NOT_SEPARABLE
  assert claims.judge_difference(contradicted, "≈") == claims.CONTRADICTED
  assert claims.judge_difference(supported, "≈") == claims.CONTRADICTED
  # One repeat can never separate.
  assert claims.judge_difference(claims.paired([0.9], [0.1]), ">") == claims.NOT_SEPARABLE
  # Exactly equal differences: SE 0, any nonzero mean separates.
  assert claims.judge_difference(claims.paired([0.5, 0.5], [0.4, 0.4]), ">") == claims.SUPPORTED


def test_a_claim_combines_its_comparisons():
  S, C, N = claims.SUPPORTED, claims.CONTRADICTED, claims.NOT_SEPARABLE
  assert claims.combine([(">", S), (">", S), ("≈", N)]) == S
  assert claims.combine([(">", S), ("≈", C)]) == C
  assert claims.combine([(">", S), (">", N)]) == N
  assert claims.combine([(">", C), (">", S)]) == C
  assert claims.combine([("≈", N)]) == N


def _cells(table, values):
  return [report.Cell(table, row, column, v) for (row, column), v in values.items()]


def _by_name(cells, **pending):
  verdicts = claims.judge_all(cells, **pending)
  return {j.__name__: v for j, v in zip(claims.JUDGES, verdicts)}


def test_judges_follow_the_paired_numbers():
  t4 = {(("Baseline", "RandomWeights"), "Average"): [0.30, 0.31, 0.29],
        (("Baseline", "CompleteLabels"), "Average"): [0.45, 0.46, 0.44],
        (("Inexhaustive Segmentation", "HalfUnsegmented"), "Average"): [0.38, 0.39, 0.37],
        (("Inexhaustive Segmentation", "SigmoidLoss"), "Average"): [0.45, 0.47, 0.44]}
  verdicts = _by_name(_cells("table4", t4))
  assert verdicts["pretraining_helps"].status == claims.SUPPORTED
  assert verdicts["unsegmented_objects_hurt_transfer"].status == claims.SUPPORTED
  assert verdicts["sigmoid_protects_transfer"].status == claims.SUPPORTED
  assert verdicts["sigmoid_recovers_transfer"].status == claims.NOT_SEPARABLE  # ≈ holds
  assert "n = 3" in verdicts["sigmoid_recovers_transfer"].evidence
  assert verdicts["false_positives_harmless"].status == claims.NOT_MEASURED
  # The same rows with the sigmoid pre-training below the logistic one, on every repeat.
  t4[(("Inexhaustive Segmentation", "SigmoidLoss"), "Average")] = [0.36, 0.37, 0.35]
  assert _by_name(_cells("table4", t4))["sigmoid_protects_transfer"].status == claims.CONTRADICTED
  # Differences that flip sign between repeats cannot be separated...
  t4[(("Inexhaustive Segmentation", "SigmoidLoss"), "Average")] = [0.40, 0.37, 0.38]
  verdicts = _by_name(_cells("table4", t4))
  assert verdicts["sigmoid_protects_transfer"].status == claims.NOT_SEPARABLE
  # ...while a clear gap to the complete labels contradicts "≈".
  assert verdicts["sigmoid_recovers_transfer"].status == claims.CONTRADICTED

  t1 = {(("R+N", "CrossEntropy"), "mean rec."): [0.80, 0.82, 0.81],
        (("50%R+U", "CrossEntropy"), "mean rec."): [0.30, 0.35, 0.33],
        (("50%R+U", "ClassWeighted"), "mean rec."): [0.70, 0.72, 0.69],
        (("50%R+U", "SoftmaxLoss"), "mean rec."): [0.78, 0.80, 0.79],
        (("50%R+U", "ClassWeighted"), "mean prec."): [0.75, 0.74, 0.76],
        (("50%R+U", "SoftmaxLoss"), "mean prec."): [0.76, 0.73, 0.75]}
  verdicts = _by_name(_cells("table1", t1))
  assert verdicts["softmax_raises_recall"].status == claims.SUPPORTED
  assert verdicts["cross_entropy_collapses_on_pu"].status == claims.SUPPORTED

  sweep = {(("70%Unseg.", "SigmoidLoss"), "fg AP"): [0.8, 0.82],
           (("70%Unseg.", "ClassWeighted"), "fg AP"): [0.7, 0.71],
           (("30%Unseg.", "SigmoidLoss"), "fg AP"): [0.5, 0.5],
           (("30%Unseg.", "ClassWeighted"), "fg AP"): [0.9, 0.9]}
  assert (_by_name(_cells("sweep", sweep))["sigmoid_ranks_foreground_at_high_rates"].status
          == claims.SUPPORTED)  # 30 % is not above 50 %


def test_missing_cells_are_pending_while_their_experiment_runs():
  verdicts = claims.judge_all([], pending=["transfer"])
  assert {v.status for v in verdicts} == {claims.PENDING}
  assert {v.status for v in claims.judge_all([])} == {claims.NOT_MEASURED}
  unpaired = [report.Cell("table4", ("Baseline", "RandomWeights"), "Average", [0.3, 0.3]),
              report.Cell("table4", ("Baseline", "CompleteLabels"), "Average", [0.4])]
  assert "cannot be paired" in _by_name(unpaired)["pretraining_helps"].evidence
