"""Tests of jaxpu/selection.py: the criteria of a model on noisy labels and how well they rank."""

import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from jaxpu import metrics
from jaxpu import selection


def test_foreground_counts_of_a_multiclass_confusion_matrix():
  # rows: noisy label (0 background/unlabelled, 1, 2), columns: prediction.
  cm = [[50, 5, 5],
        [4, 10, 1],
        [1, 2, 22]]
  # n = 100, predicted foreground = columns 1-2 = 45, labelled = rows 1-2 = 40,
  # labelled and predicted foreground = 10 + 1 + 2 + 22 = 35.
  np.testing.assert_array_equal(selection.foreground_counts(cm), [100, 45, 40, 35])


def test_criteria_by_hand():
  cm = [[50, 10], [5, 35]]  # n 100, n_ŷ 45, n_s 40, n_sŷ 35
  found = selection.criteria(cm)
  assert found["labelled_recall"] == pytest.approx(35 / 40)
  assert found["lee_liu"] == pytest.approx((35 / 40) ** 2 / 0.45)
  assert set(found) == set(selection.COUNT_CRITERIA)
  # π_U = 0.1 of the 60 unlabelled pixels: π = (40 + 6) / 100 = 0.46; precision =
  # recall π / P(ŷ=1) = 0.875 · 0.46 / 0.45.
  found = selection.criteria(cm, prior_u=0.1)
  precision = 0.875 * 0.46 / 0.45
  assert found["corrected_precision"] == pytest.approx(precision)
  assert found["corrected_f1"] == pytest.approx(2 * precision * 0.875 / (precision + 0.875))


def test_foreground_score_of_a_multiclass_model_is_the_log_odds_of_not_background():
  logits = np.log(np.array([[0.5, 0.3, 0.2]]))
  np.testing.assert_allclose(selection.foreground_score(logits, binary=False), [np.log(0.5 / 0.5)],
                             atol=1e-12)
  np.testing.assert_array_equal(selection.foreground_score(np.array([[1.5]]), binary=True),
                                [1.5])


def _batches():
  """Two batches whose "image" is the binary logit itself, noisy and clean labels."""
  rng = np.random.default_rng(0)
  out = []
  for _ in range(2):
    truth = (rng.random((3, 4, 4)) < 0.4).astype(np.int32)
    noisy = np.where(rng.random(truth.shape) < 0.5, 0, truth)  # half the positives lost
    noisy[:, 0, 0] = truth[:, 0, 0] = 255                       # void
    logit = rng.normal(size=truth.shape) + 2.0 * truth
    out.append({"image": logit[..., None], "label": noisy, "true_label": truth})
  return out


def test_evaluate_binary_against_numpy_and_sklearn():
  batches = _batches()
  found = selection.evaluate(lambda p, x: x, None, batches, num_classes=1,
                             clean_key="true_label")
  logit = np.concatenate([b["image"][..., 0] for b in batches])
  noisy = np.concatenate([b["label"] for b in batches])
  truth = np.concatenate([b["true_label"] for b in batches])
  pred = (logit > 0).astype(int)
  valid = noisy != 255
  expected = [[np.sum(valid & (noisy == i) & (pred == j)) for j in (0, 1)] for i in (0, 1)]
  assert found["noisy_cm"] == expected
  expected = [[np.sum((truth == i) & (pred == j)) for j in (0, 1)] for i in (0, 1)]
  assert found["clean_cm"] == expected
  assert found["pu_auc"] == pytest.approx(
      sk_metrics.roc_auc_score(noisy[valid], logit[valid]))


def test_model_criteria_and_clean_scores_by_hand():
  found = {"noisy_cm": [[50, 10], [5, 35]], "clean_cm": [[40, 5], [15, 40]], "pu_auc": 0.7}
  values = selection.model_criteria(found, prior_u=0.2)
  assert values["pu_auc"] == 0.7
  # Noisy mean IU: background 50 / (60 + 55 - 50), foreground 35 / (40 + 45 - 35).
  assert values["noisy_mean_iu"] == pytest.approx((50 / 65 + 35 / 50) / 2)
  assert 0 < values["corrected_f1"] < 1
  clean = selection.clean_scores(found)
  assert clean["fg_f1"] == pytest.approx(2 * 40 / (2 * 40 + 5 + 15))
  assert clean["mean_iu"] == pytest.approx((40 / 60 + 40 / 60) / 2)


def test_agreement_by_hand():
  found = selection.agreement([1.0, 2.0, 3.0], [0.1, 0.3, 0.2])
  assert found["rho"] == pytest.approx(0.5)          # ranks (1, 3, 2) vs (1, 2, 3)
  assert found["regret"] == pytest.approx(0.3 - 0.2)  # it picks the third
  assert found["random_regret"] == pytest.approx(0.3 - 0.2)
  perfect = selection.agreement([5.0, 7.0, 6.0], [0.1, 0.3, 0.2])
  assert perfect["rho"] == pytest.approx(1.0) and perfect["regret"] == 0.0


def test_criteria_from_the_confusion_matrix_equal_the_pixel_criteria():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 4, (2, 16, 16))
  labels[0, :2] = 255
  pred = rng.integers(0, 4, labels.shape)
  cm = np.asarray(metrics.confusion_matrix(pred, labels, 4, where=labels != 255))
  noisy = np.where(labels == 255, 255, labels > 0).astype(np.int32)
  counts = np.asarray(metrics.noisy_counts(pred > 0, noisy))
  np.testing.assert_array_equal(selection.foreground_counts(cm), counts)
  found = selection.criteria(cm, 0.2)
  expected = metrics.criteria_from_counts(counts, metrics.prior_of_valid_pixels(counts, 0.2))
  assert found["lee_liu"] == pytest.approx(expected["lee_liu"])
  assert found["corrected_f1"] == pytest.approx(expected["f1"])
