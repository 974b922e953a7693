"""Confusion matrices and the scores of the thesis' Tables 1-5 (App. C.2).

``confusion_matrix`` runs inside jitted evaluation steps and is additive, so
per-batch and per-device matrices are simply summed. The score functions take
such a (host) matrix, as numpy or jax array, and return plain Python floats.

Per class c of a confusion matrix M (rows = true class, columns = predicted):
tp = M[c, c], fp = Σ_r M[r, c] - tp, fn = Σ_k M[c, k] - tp, and (App. C.2)

  precision = tp / (tp + fp),   recall = tp / (tp + fn),
  F1 = 2 precision recall / (precision + recall),   IU = tp / (tp + fp + fn).
"""

from typing import Dict, Iterable, Optional

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
ArrayLike = jax.typing.ArrayLike


def confusion_matrix(predictions: ArrayLike, labels: ArrayLike,
                     num_classes: int,
                     where: Optional[ArrayLike] = None) -> Array:
  """Counts (true, predicted) class pairs.

  Args:
    predictions: integer predicted classes (e.g. ``argmax`` of the logits),
      any shape broadcastable with ``labels``.
    labels: integer true classes.
    num_classes: C, a static Python int.
    where: optional boolean mask; False elements are not counted.

  Returns:
    int32 ``[C, C]``, ``cm[t, p]`` = number of valid elements with label t
    and prediction p. Like the FCN reference's ``fast_hist``, elements whose
    label (or prediction) is outside [0, C), e.g. the void label 255, are not
    counted. Jit-able (``num_classes`` static).
  """
  predictions = jnp.asarray(predictions)
  labels = jnp.asarray(labels)
  for name, array in (("predictions", predictions), ("labels", labels)):
    if not jnp.issubdtype(array.dtype, jnp.integer):
      raise TypeError(f"confusion_matrix: {name} must be integer classes, got "
                      f"dtype {array.dtype} (take jnp.argmax of the logits).")
  num_classes = int(num_classes)
  shape = jnp.broadcast_shapes(predictions.shape, labels.shape,
                               *(() if where is None else (jnp.shape(where),)))
  predictions = jnp.broadcast_to(predictions, shape)
  labels = jnp.broadcast_to(labels, shape)
  valid = ((labels >= 0) & (labels < num_classes)
           & (predictions >= 0) & (predictions < num_classes))
  if where is not None:
    valid = valid & jnp.broadcast_to(jnp.asarray(where, dtype=bool), shape)
  pair = labels.astype(jnp.int32) * num_classes + predictions.astype(jnp.int32)
  pair = jnp.where(valid, pair, num_classes * num_classes).ravel()
  counts = jnp.bincount(pair, length=num_classes * num_classes + 1)
  return counts[:-1].reshape(num_classes, num_classes).astype(jnp.int32)


def _as_matrix(cm: ArrayLike) -> np.ndarray:
  cm = np.asarray(cm, dtype=np.float64)
  if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
    raise ValueError(f"Expected a square [C, C] confusion matrix, got shape "
                     f"{cm.shape}.")
  return cm


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
  """numerator / denominator, 0 where the denominator is 0."""
  return np.divide(numerator, denominator, out=np.zeros_like(numerator),
                   where=denominator > 0)


def _mean(values: np.ndarray) -> float:
  return float(np.mean(values)) if values.size else 0.0


def classification_scores(cm: ArrayLike,
                          relevant: Optional[Iterable[int]] = None
                          ) -> Dict[str, float]:
  """Scores of Table 1: accuracy and one-vs-all means over relevant classes.

  accuracy = Σ_c tp_c / Σ M over all classes. For every relevant class
  (default: every class but 0, the non-relevant class) precision, recall and
  F1 are computed one-vs-all and then averaged: ``mean_f1`` is the mean of
  the per-class F1 scores, not the F1 of the mean precision and recall
  (Table 1: 0.94 and 0.38 give 0.49). An undefined ratio (0 / 0) counts as 0,
  as scikit-learn's ``zero_division=0`` does, except that relevant classes
  absent from both truth and prediction are left out of the means. With
  nothing to average the means are 0.

  Returns:
    dict with float ``accuracy``, ``mean_precision``, ``mean_recall``,
    ``mean_f1``.
  """
  cm = _as_matrix(cm)
  num_classes = cm.shape[0]
  if relevant is None:
    relevant = range(1, num_classes)
  relevant = np.asarray(list(relevant), dtype=np.int64)
  if np.any((relevant < 0) | (relevant >= num_classes)):
    raise ValueError(f"classification_scores: relevant classes must be in "
                     f"[0, {num_classes}), got {relevant.tolist()}.")
  tp = np.diag(cm)
  true_count = cm.sum(axis=1)
  predicted_count = cm.sum(axis=0)
  precision = _divide(tp, predicted_count)
  recall = _divide(tp, true_count)
  f1 = _divide(2 * precision * recall, precision + recall)
  seen = (true_count + predicted_count) > 0
  keep = relevant[seen[relevant]]
  return {
      "accuracy": float(_divide(tp.sum(), cm.sum())),
      "mean_precision": _mean(precision[keep]),
      "mean_recall": _mean(recall[keep]),
      "mean_f1": _mean(f1[keep]),
  }


def positive_class_scores(cm: ArrayLike) -> Dict[str, float]:
  """Precision, recall and F1 of class 1 (the positive class) of a binary confusion
  matrix, and the accuracy (:func:`classification_scores` with ``relevant=[1]``)."""
  scores = classification_scores(cm, relevant=[1])
  return {"precision": scores["mean_precision"], "recall": scores["mean_recall"],
          "f1": scores["mean_f1"], "accuracy": scores["accuracy"]}


def segmentation_scores(cm: ArrayLike) -> Dict[str, float]:
  """Scores of Table 2, as the FCN reference's ``score.py`` defines them.

  With n_c = Σ_k M[c, k] pixels of true class c and N = Σ_c n_c:

    overall_accuracy = Σ_c tp_c / N,
    mean_recall      = mean over classes with n_c > 0 of tp_c / n_c
                       (the FCN "mean accuracy"),
    mean_iou         = mean over classes with tp + fp + fn > 0 of IU_c,
    fw_iou           = Σ_{c: n_c > 0} (n_c / N) IU_c.

  Classes absent from both prediction and truth are left out of the means
  (the FCN code's ``nanmean``), so no NaN reaches the scores; an empty
  matrix gives 0 everywhere.

  Returns:
    dict with float ``overall_accuracy``, ``mean_recall``, ``fw_iou``,
    ``mean_iou``.
  """
  cm = _as_matrix(cm)
  tp = np.diag(cm)
  true_count = cm.sum(axis=1)
  union = true_count + cm.sum(axis=0) - tp
  total = cm.sum()
  iou = _divide(tp, union)
  recall = _divide(tp, true_count)
  frequency = _divide(true_count, np.full_like(true_count, total))
  return {
      "overall_accuracy": float(_divide(tp.sum(), total)),
      "mean_recall": _mean(recall[true_count > 0]),
      "fw_iou": float(np.sum(frequency * iou)),
      "mean_iou": _mean(iou[union > 0]),
  }


def foreground_iou_per_image(predicted: ArrayLike, labels: ArrayLike,
                             void_label: int = 255) -> np.ndarray:
  """Per image IoU of the predicted foreground and the true foreground (label 1).

  Args:
    predicted: boolean foreground predictions `[N, ...]` (e.g. `logit > 0`).
    labels: integer labels `[N, ...]`, 1 = foreground; `void_label` pixels are ignored.

  Returns:
    `[N]` float64 IoU per image; 1.0 where both are empty.
  """
  labels = np.asarray(labels)
  predicted = np.asarray(predicted, bool)
  if predicted.shape != labels.shape:
    raise ValueError(f"predicted {predicted.shape} and labels {labels.shape} must have the "
                     "same shape.")
  valid = labels != void_label
  pred, true = predicted & valid, (labels == 1) & valid
  inter = (pred & true).reshape(len(labels), -1).sum(1)
  union = (pred | true).reshape(len(labels), -1).sum(1)
  return np.where(union > 0, inter / np.maximum(union, 1), 1.0)
