"""Model-selection criteria from noisy (PU) labels (jaxpu.metrics, noisy-label section)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpu import metrics

# Valid: elements 0-7 (8 is void, 9 is outside `where`).
LABELS = np.array([1, 1, 1, 0, 0, 0, 0, 0, 255, 1], np.int32)
PRED = np.array([1, 1, 0, 1, 1, 0, 0, 0, 1, 0], bool)
WHERE = np.array([True] * 9 + [False])
# n = 8 valid, n_ŷ = 4 (0, 1, 3, 4), n_s = 3 (0, 1, 2), n_sŷ = 2 (0, 1).
COUNTS = [8, 4, 3, 2]


def test_noisy_counts_by_hand_and_additive():
  counts = metrics.noisy_counts(PRED, LABELS, WHERE)
  assert counts.dtype == jnp.int32
  np.testing.assert_array_equal(counts, COUNTS)
  assert metrics.NOISY_COUNTS == ("total", "predicted", "labelled", "labelled_predicted")
  halves = [metrics.noisy_counts(PRED[s], LABELS[s], WHERE[s]) for s in (slice(0, 5), slice(5, 10))]
  np.testing.assert_array_equal(halves[0] + halves[1], COUNTS)
  jitted = jax.jit(metrics.noisy_counts)(PRED.reshape(2, 5), LABELS.reshape(2, 5),
                                         WHERE.reshape(2, 5))
  np.testing.assert_array_equal(jitted, COUNTS)
  # Integer predictions: nonzero is foreground; without `where` element 9 counts.
  np.testing.assert_array_equal(metrics.noisy_counts(PRED.astype(np.int32) * 3, LABELS),
                                [9, 4, 4, 2])


def test_criteria_by_hand():
  out = metrics.criteria_from_counts(COUNTS)
  assert out == pytest.approx({"labelled_recall": 2 / 3, "predicted_rate": 0.5,
                               "labelled_rate": 3 / 8, "lee_liu": (4 / 9) / 0.5})
  assert all(isinstance(v, float) for v in out.values())
  # π = 0.5: precision = (2/3 · 0.5) / 0.5 = 2/3, F1 = 2/3, IoU = (4/9) / (4/3 - 4/9) = 1/2.
  out = metrics.criteria_from_counts(COUNTS, prior=0.5)
  assert out["recall"] == pytest.approx(2 / 3)
  assert out["precision"] == pytest.approx(2 / 3)
  assert out["f1"] == pytest.approx(2 / 3)
  assert out["iou"] == pytest.approx(0.5)
  # π = 0.9: precision 1.2 clipped to 1, F1 = 2 (2/3) / (5/3) = 0.8, IoU = (2/3) / 1.
  out = metrics.criteria_from_counts(COUNTS, prior=0.9)
  assert out["precision"] == 1.0
  assert out["f1"] == pytest.approx(0.8)
  assert out["iou"] == pytest.approx(2 / 3)
  # Zero denominators give 0.
  assert set(metrics.criteria_from_counts([0, 0, 0, 0], prior=0.3).values()) == {0.0}
  assert metrics.criteria_from_counts([5, 0, 2, 0])["lee_liu"] == 0.0


def test_array_forms_match_the_counts_and_jit():
  assert float(metrics.labelled_recall(PRED, LABELS, WHERE)) == pytest.approx(2 / 3)
  assert float(metrics.lee_liu_criterion(PRED, LABELS, WHERE)) == pytest.approx(8 / 9)
  scores = metrics.prior_corrected_scores(PRED, LABELS, 0.5, WHERE)
  assert {k: float(v) for k, v in scores.items()} == pytest.approx(
      {"recall": 2 / 3, "precision": 2 / 3, "f1": 2 / 3, "iou": 0.5, "predicted_rate": 0.5})
  jitted = jax.jit(metrics.prior_corrected_scores)(PRED, LABELS, jnp.float32(0.9), WHERE)
  assert float(jitted["precision"]) == 1.0 and float(jitted["f1"]) == pytest.approx(0.8)
  assert float(jax.jit(metrics.lee_liu_criterion)(PRED, LABELS, WHERE)) == pytest.approx(8 / 9)


def test_prior_of_valid_pixels():
  # π = (n_s + π_U (n - n_s)) / n = (3 + 0.2 · 5) / 8.
  assert metrics.prior_of_valid_pixels(COUNTS, 0.2) == pytest.approx(0.5)
  assert metrics.prior_of_valid_pixels(COUNTS, 0.0) == pytest.approx(3 / 8)
  with pytest.raises(ValueError, match="unlabelled_prior"):
    metrics.prior_of_valid_pixels(COUNTS, 1.5)


def test_pu_auc_by_hand():
  scores = np.array([0.9, 0.4, 0.4, 0.1, 0.4, 0.8, 0.2, 5.0], np.float32)
  labels = np.array([1, 1, 0, 0, 1, 0, 0, 255])
  # L = {0.9, 0.4, 0.4}, U = {0.4, 0.1, 0.8, 0.2}: 0.9 beats 4; each 0.4 beats 2 and ties 1.
  # (4 + 2.5 + 2.5) / (3 · 4) = 0.75. By ranks: 0.1 → 1, 0.2 → 2, the three 0.4 → 4,
  # 0.8 → 6, 0.9 → 7; R_L = 7 + 4 + 4 = 15; (15 - 3 · 4 / 2) / 12 = 0.75.
  assert float(metrics.pu_auc(scores, labels)) == pytest.approx(0.75)
  assert float(jax.jit(metrics.pu_auc)(scores, labels)) == pytest.approx(0.75)
  where = np.array([True] * 5 + [False] * 3)  # drops U's 0.8 and 0.2: U = {0.4, 0.1}
  # 0.9 beats 2, each 0.4 beats 1 and ties 1: (2 + 1.5 + 1.5) / 6.
  assert float(metrics.pu_auc(scores, labels, where)) == pytest.approx(5 / 6)
  assert np.isnan(float(metrics.pu_auc(scores, np.zeros(8, np.int32))))
  assert np.isnan(float(metrics.pu_auc(scores, np.ones(8, np.int32))))
  inf = np.array([np.inf, -np.inf, np.inf, 0.0], np.float32)
  # L = {inf, inf}, U = {-inf, 0}: every labelled score is above every unlabelled one.
  assert float(metrics.pu_auc(inf, np.array([1, 0, 1, 0]))) == 1.0
  # L = {inf}, U = {inf, -inf}: a tie and a win.
  assert float(metrics.pu_auc(inf[:3], np.array([1, 0, 0]))) == pytest.approx(0.75)


def test_pu_auc_matches_sklearn():
  from sklearn.metrics import roc_auc_score
  rng = np.random.default_rng(0)
  for trial in range(5):
    shape = (3, 17, 23)
    labels = rng.choice([0, 1, 255], size=shape, p=[0.6, 0.3, 0.1]).astype(np.uint8)
    scores = (rng.normal(size=shape) + (labels == 1)).astype(np.float32)
    if trial % 2:
      scores = np.round(scores, 1)  # many ties
    where = rng.random(shape) < 0.8
    valid = where & (labels != 255)
    want = roc_auc_score(labels[valid], scores[valid])
    assert float(metrics.pu_auc(scores, labels, where)) == pytest.approx(want, abs=1e-5)


def test_criteria_recover_the_clean_scores_under_scar():
  """Prior-corrected precision/recall/F1 estimate the clean ones; Lee & Liu's is p r / π."""
  rng = np.random.default_rng(1)
  n, prior, c = 400_000, 0.3, 0.5
  y = rng.random(n) < prior
  s = y & (rng.random(n) < c)  # SCAR: each positive labelled w.p. c
  score = rng.normal(size=n) + 1.5 * y
  pred = score > 0.8
  tp = np.sum(pred & y)
  precision, recall = tp / pred.sum(), tp / y.sum()
  f1 = 2 * precision * recall / (precision + recall)
  out = metrics.criteria_from_counts(metrics.noisy_counts(pred, s.astype(np.int32)),
                                     prior=y.mean())
  assert out["recall"] == pytest.approx(recall, abs=0.01)
  assert out["precision"] == pytest.approx(precision, abs=0.01)
  assert out["f1"] == pytest.approx(f1, abs=0.01)
  assert out["iou"] == pytest.approx(tp / np.sum(pred | y), abs=0.01)
  assert out["lee_liu"] == pytest.approx(precision * recall / y.mean(), rel=0.03)
  assert out["labelled_rate"] == pytest.approx(c * prior, abs=0.005)
  # AUC_PU = π_U / 2 + (1 - π_U) AUC_PN.
  from sklearn.metrics import roc_auc_score
  prior_u = np.mean(y[~s])
  auc_pn = roc_auc_score(y, score)
  assert float(metrics.pu_auc(score.astype(np.float32), s.astype(np.int32))) == pytest.approx(
      prior_u / 2 + (1 - prior_u) * auc_pn, abs=0.005)


def test_lee_liu_ranks_a_better_classifier_higher():
  rng = np.random.default_rng(2)
  n = 200_000
  y = rng.random(n) < 0.2
  s = (y & (rng.random(n) < 0.4)).astype(np.int32)
  good = rng.normal(size=n) + 2.5 * y > 1.2
  weak = rng.normal(size=n) + 1.0 * y > 0.5
  everything = np.ones(n, bool)
  values = [float(metrics.lee_liu_criterion(p, s)) for p in (good, weak, everything)]
  assert values[0] > values[1] > 0
  assert values[2] == pytest.approx(1.0)  # r = 1, P(ŷ=1) = 1: p r / π = π / π
  assert float(metrics.labelled_recall(everything, s)) == 1.0


def test_shape_and_dtype_errors():
  with pytest.raises(ValueError, match=r"pred has shape \(3,\) but noisy_labels has shape \(4,\)"):
    metrics.noisy_counts(np.ones(3, bool), np.ones(4, np.int32))
  with pytest.raises(ValueError, match=r"scores has shape \(2, 2\).*shape \(4,\)"):
    metrics.pu_auc(np.ones((2, 2)), np.ones(4, np.int32))
  with pytest.raises(ValueError, match=r"where has shape \(1, 4\)"):
    metrics.labelled_recall(np.ones(4, bool), np.ones(4, np.int32), np.ones((1, 4), bool))
  with pytest.raises(ValueError, match="lee_liu_criterion|noisy_counts"):
    metrics.lee_liu_criterion(np.ones((4, 1), bool), np.ones(4, np.int32))
  with pytest.raises(TypeError, match="logits > 0"):
    metrics.noisy_counts(np.ones(4, np.float32), np.ones(4, np.int32))
  with pytest.raises(TypeError, match="noisy_labels must be integer"):
    metrics.noisy_counts(np.ones(4, bool), np.ones(4, np.float32))
  with pytest.raises(ValueError, match=r"prior must be .* in \(0, 1\]"):
    metrics.prior_corrected_scores(PRED, LABELS, 0.0)
  with pytest.raises(ValueError, match=r"prior must be"):
    metrics.criteria_from_counts(COUNTS, prior=1.5)
  with pytest.raises(ValueError, match=r"shape \(4,\)"):
    metrics.criteria_from_counts([1, 2, 3])
