"""Tests of jaxpu.metrics against scikit-learn, the FCN reference's score
formulas and hand-made confusion matrices."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

from jaxpu import metrics

C = 5
RNG = np.random.default_rng(0)
LABELS = RNG.integers(0, C, size=(4, 6, 5))
PREDICTIONS = np.where(RNG.random(LABELS.shape) < 0.6, LABELS,
                       RNG.integers(0, C, size=LABELS.shape))
VOID = RNG.random(LABELS.shape) < 0.1
LABELS_WITH_VOID = np.where(VOID, 255, LABELS)


def sklearn_cm(labels, predictions, num_classes=C):
  return skm.confusion_matrix(labels.ravel(), predictions.ravel(),
                              labels=np.arange(num_classes))


def test_confusion_matrix_matches_sklearn():
  cm = metrics.confusion_matrix(PREDICTIONS, LABELS, C)
  assert cm.dtype == jnp.int32 and cm.shape == (C, C)
  np.testing.assert_array_equal(cm, sklearn_cm(LABELS, PREDICTIONS))


def test_confusion_matrix_where_and_void_labels_under_jit():
  where = (LABELS_WITH_VOID != 255) & (RNG.random(LABELS.shape) < 0.8)
  cm_fn = jax.jit(metrics.confusion_matrix, static_argnums=2)
  cm = cm_fn(PREDICTIONS, LABELS_WITH_VOID, C, where)
  np.testing.assert_array_equal(cm, sklearn_cm(LABELS[where], PREDICTIONS[where]))
  # Without a mask the void label is skipped, like the FCN reference's fast_hist.
  keep = ~VOID
  np.testing.assert_array_equal(cm_fn(PREDICTIONS, LABELS_WITH_VOID, C),
                                sklearn_cm(LABELS[keep], PREDICTIONS[keep]))


def test_confusion_matrix_is_additive():
  whole = metrics.confusion_matrix(PREDICTIONS, LABELS, C)
  parts = sum(metrics.confusion_matrix(PREDICTIONS[i], LABELS[i], C) for i in range(4))
  np.testing.assert_array_equal(whole, parts)
  assert int(whole.sum()) == LABELS.size


def test_confusion_matrix_rejects_float_predictions():
  with pytest.raises(TypeError, match="argmax"):
    metrics.confusion_matrix(np.zeros((2, 3), np.float32), np.zeros(2, np.int32), 3)


# ----------------------------------------------------------------------------
# classification_scores (Table 1).
# ----------------------------------------------------------------------------


def test_classification_scores_match_sklearn():
  y, p = LABELS.ravel(), PREDICTIONS.ravel()
  cm = metrics.confusion_matrix(p, y, C)
  for relevant in (None, [0, 2, 3]):
    labels = list(range(1, C)) if relevant is None else relevant
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        y, p, labels=labels, average=None, zero_division=0)
    scores = metrics.classification_scores(cm, relevant)
    assert set(scores) == {"accuracy", "mean_precision", "mean_recall", "mean_f1"}
    assert all(isinstance(v, float) for v in scores.values())
    np.testing.assert_allclose(scores["accuracy"], skm.accuracy_score(y, p))
    np.testing.assert_allclose(scores["mean_precision"], precision.mean())
    np.testing.assert_allclose(scores["mean_recall"], recall.mean())
    np.testing.assert_allclose(scores["mean_f1"], f1.mean())


def test_classification_mean_f1_is_mean_of_per_class_f1():
  # Class 1: P = R = 1 (F1 = 1). Class 2: P = 1, R = 1/4 (F1 = 0.4).
  cm = np.array([[5, 0, 0],
                 [0, 4, 0],
                 [3, 0, 1]])
  scores = metrics.classification_scores(cm)
  np.testing.assert_allclose(scores["accuracy"], 10 / 13)
  np.testing.assert_allclose(scores["mean_precision"], 1.)
  np.testing.assert_allclose(scores["mean_recall"], 0.625)
  np.testing.assert_allclose(scores["mean_f1"], 0.7)
  # Not the harmonic mean of the means (2 · 1 · 0.625 / 1.625 ≈ 0.77), which is
  # how Table 1's 0.94 precision and 0.38 recall give 0.49 rather than 0.54.
  assert abs(scores["mean_f1"] - 2 * 0.625 / 1.625) > 0.05


def test_classification_absent_and_unpredicted_classes():
  # Class 3 is absent from truth and prediction: left out of the means.
  # Class 2 occurs but is never predicted: precision 0/0 counts as 0.
  cm = np.array([[4, 1, 0, 0],
                 [1, 3, 0, 0],
                 [2, 0, 0, 0],
                 [0, 0, 0, 0]])
  scores = metrics.classification_scores(cm)
  assert all(np.isfinite(v) for v in scores.values())
  y = np.repeat([0, 0, 1, 1, 2], [4, 1, 1, 3, 2])
  p = np.repeat([0, 1, 0, 1, 0], [4, 1, 1, 3, 2])
  np.testing.assert_array_equal(metrics.confusion_matrix(p, y, 4), cm)
  precision, recall, f1, _ = skm.precision_recall_fscore_support(
      y, p, labels=[1, 2], average=None, zero_division=0)
  np.testing.assert_allclose(scores["mean_precision"], precision.mean())   # (3/4 + 0) / 2
  np.testing.assert_allclose(scores["mean_recall"], recall.mean())         # (3/4 + 0) / 2
  np.testing.assert_allclose(scores["mean_f1"], f1.mean())
  np.testing.assert_allclose(scores["mean_precision"], 0.375)
  empty = metrics.classification_scores(np.zeros((3, 3), np.int32))
  assert empty == {"accuracy": 0., "mean_precision": 0., "mean_recall": 0., "mean_f1": 0.}


def test_classification_scores_argument_errors():
  with pytest.raises(ValueError, match=r"\[0, 3\).*5"):
    metrics.classification_scores(np.eye(3), relevant=[1, 5])
  with pytest.raises(ValueError, match="square"):
    metrics.classification_scores(np.zeros((2, 3)))


# ----------------------------------------------------------------------------
# segmentation_scores (Table 2), the FCN reference's definitions.
# ----------------------------------------------------------------------------


def fcn_score(hist):
  """The FCN reference's score.py formulas, NaN-propagating as written there."""
  with np.errstate(divide="ignore", invalid="ignore"):
    overall = np.diag(hist).sum() / hist.sum()
    mean_accuracy = np.nanmean(np.diag(hist) / hist.sum(1))
    iu = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))
    freq = hist.sum(1) / hist.sum()
  return overall, mean_accuracy, (freq[freq > 0] * iu[freq > 0]).sum(), np.nanmean(iu)


def test_segmentation_scores_match_fcn_and_sklearn():
  cm = np.asarray(metrics.confusion_matrix(PREDICTIONS, LABELS, C))
  scores = metrics.segmentation_scores(cm)
  assert set(scores) == {"overall_accuracy", "mean_recall", "fw_iou", "mean_iou"}
  overall, mean_accuracy, fw_iou, mean_iou = fcn_score(cm.astype(np.float64))
  np.testing.assert_allclose(scores["overall_accuracy"], overall)
  np.testing.assert_allclose(scores["mean_recall"], mean_accuracy)
  np.testing.assert_allclose(scores["fw_iou"], fw_iou)
  np.testing.assert_allclose(scores["mean_iou"], mean_iou)
  y, p = LABELS.ravel(), PREDICTIONS.ravel()
  np.testing.assert_allclose(scores["overall_accuracy"], skm.accuracy_score(y, p))
  np.testing.assert_allclose(scores["mean_recall"], skm.balanced_accuracy_score(y, p))
  iou = skm.jaccard_score(y, p, labels=np.arange(C), average=None)
  np.testing.assert_allclose(scores["mean_iou"], iou.mean())
  np.testing.assert_allclose(scores["fw_iou"], np.sum(np.bincount(y, minlength=C) / y.size * iou))


def test_segmentation_scores_absent_classes_hand_made():
  # Class 2 absent from truth and prediction; class 3 predicted but never true.
  cm = np.array([[6, 1, 0, 1],
                 [1, 2, 0, 0],
                 [0, 0, 0, 0],
                 [0, 0, 0, 0]])
  scores = metrics.segmentation_scores(cm)
  # N = 11; recall: 6/8, 2/3 (class 3 has no truth: left out, as FCN's nanmean).
  # IU: 6/(8+7-6) = 2/3, 2/(3+3-2) = 1/2, class 3: 0/(0+1-0) = 0; class 2 left out.
  np.testing.assert_allclose(scores["overall_accuracy"], 8 / 11)
  np.testing.assert_allclose(scores["mean_recall"], (6 / 8 + 2 / 3) / 2)
  np.testing.assert_allclose(scores["mean_iou"], (2 / 3 + 1 / 2 + 0) / 3)
  np.testing.assert_allclose(scores["fw_iou"], 8 / 11 * 2 / 3 + 3 / 11 * 1 / 2)
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # No 0/0 warnings leak out either.
    empty = metrics.segmentation_scores(np.zeros((2, 2), np.int64))
  assert empty == {"overall_accuracy": 0., "mean_recall": 0., "fw_iou": 0., "mean_iou": 0.}
  np.testing.assert_allclose(list(fcn_score(cm.astype(float))),
                             [scores[k] for k in ("overall_accuracy", "mean_recall",
                                                  "fw_iou", "mean_iou")])


def test_scores_accept_jax_arrays():
  cm = metrics.confusion_matrix(PREDICTIONS, LABELS, C)
  assert metrics.segmentation_scores(cm) == metrics.segmentation_scores(np.asarray(cm))
  assert metrics.classification_scores(cm) == metrics.classification_scores(np.asarray(cm))


def test_positive_class_scores_hand_computed_and_as_sklearn():
  # Rows: true class, columns: prediction. Positive class 1: tp 3, fn 1, fp 2.
  cm = np.array([[5, 2], [1, 3]])
  scores = metrics.positive_class_scores(cm)
  assert scores["precision"] == pytest.approx(3 / 5)
  assert scores["recall"] == pytest.approx(3 / 4)
  assert scores["f1"] == pytest.approx(2 * (3 / 5) * (3 / 4) / (3 / 5 + 3 / 4))
  assert scores["accuracy"] == pytest.approx(8 / 11)
  y_true = [0] * 7 + [1] * 4
  y_pred = [0] * 5 + [1] * 2 + [0] + [1] * 3
  assert scores["f1"] == pytest.approx(skm.f1_score(y_true, y_pred))


def test_confusion_matrix_rejects_mismatched_shapes():
  # (N, 1) predictions against (N,) labels used to broadcast: 25 counts for 5 pixels.
  labels = np.array([0, 1, 2, 1, 0], np.int32)
  cm_fn = jax.jit(metrics.confusion_matrix, static_argnums=2)
  for call in (metrics.confusion_matrix, cm_fn):
    with pytest.raises(ValueError, match=r"predictions \(5, 1\) and labels \(5,\)"):
      call(labels[:, None], labels, 3)
    with pytest.raises(ValueError, match=r"predictions \(5,\) and labels \(1, 5\)"):
      call(labels, labels[None], 3)
    with pytest.raises(ValueError, match=r"where \(5, 1\) and labels \(5,\)"):
      call(labels, labels, 3, np.ones((5, 1), bool))
    with pytest.raises(ValueError, match=r"where \(\) and labels \(5,\)"):
      call(labels, labels, 3, True)
    cm = call(labels, labels, 3, np.ones(5, bool))
    assert int(cm.sum()) == 5 and int(np.trace(cm)) == 5


def test_per_class_scores_are_nan_where_undefined():
  cm = np.array([[5, 2, 0], [1, 3, 0], [0, 0, 0]])  # class 2: never true, never predicted
  scores = metrics.per_class_scores(cm)
  np.testing.assert_allclose(scores["precision"][:2], [5 / 6, 3 / 5])
  np.testing.assert_allclose(scores["recall"][:2], [5 / 7, 3 / 4])
  assert np.isnan(scores["precision"][2]) and np.isnan(scores["recall"][2])
  y_true, y_pred = [0] * 7 + [1] * 4, [0] * 5 + [1] * 2 + [0] + [1] * 3
  np.testing.assert_allclose(scores["recall"][:2], skm.recall_score(y_true, y_pred, average=None))
