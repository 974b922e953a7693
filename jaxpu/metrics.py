"""Confusion matrices and the scores of the thesis' Tables 1-5 (App. C.2).

``confusion_matrix`` runs inside jitted evaluation steps and is additive, so
per-batch and per-device matrices are simply summed. The score functions take
such a (host) matrix, as numpy or jax array, and return plain Python floats.

Per class c of a confusion matrix M (rows = true class, columns = predicted):
tp = M[c, c], fp = Σ_r M[r, c] - tp, fn = Σ_k M[c, k] - tp, and (App. C.2)

  precision = tp / (tp + fp),   recall = tp / (tp + fn),
  F1 = 2 precision recall / (precision + recall),   IU = tp / (tp + fp + fn).
"""

import functools
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
      of the labels' shape.
    labels: integer true classes.
    num_classes: C, a static Python int.
    where: optional boolean mask of the labels' shape; False elements are
      not counted.

  Returns:
    int32 ``[C, C]``, ``cm[t, p]`` = number of valid elements with label t
    and prediction p. Like the FCN reference's ``fast_hist``, elements whose
    label (or prediction) is outside [0, C), e.g. the void label 255, are not
    counted. Jit-able (``num_classes`` static).

  Raises:
    ValueError: if predictions, labels and ``where`` do not share one shape
      (never broadcast: (N, 1) predictions against (N,) labels would count
      N² pairs).
  """
  predictions = jnp.asarray(predictions)
  labels = jnp.asarray(labels)
  for name, array in (("predictions", predictions), ("labels", labels)):
    if not jnp.issubdtype(array.dtype, jnp.integer):
      raise TypeError(f"confusion_matrix: {name} must be integer classes, got "
                      f"dtype {array.dtype} (take jnp.argmax of the logits).")
  num_classes = int(num_classes)
  others = (("predictions", predictions.shape),) + (
      () if where is None else (("where", jnp.shape(where)),))
  for name, shape in others:
    if shape != labels.shape:
      raise ValueError(f"confusion_matrix: {name} and labels must have the same "
                       f"shape, got {name} {shape} and labels {labels.shape}.")
  return _counts(predictions, labels, None if where is None else jnp.asarray(where, bool),
                 num_classes)


@functools.partial(jax.jit, static_argnames="num_classes")
def _counts(predictions, labels, where, num_classes):
  """`confusion_matrix`'s counting, one program per shape: called eagerly (per image,
  as `jaxpu.selection` does) its dozen operations would each compile per shape."""
  valid = ((labels >= 0) & (labels < num_classes)
           & (predictions >= 0) & (predictions < num_classes))
  if where is not None:
    valid = valid & where
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


def per_class_scores(cm: ArrayLike) -> Dict[str, np.ndarray]:
  """Precision and recall of every class of a confusion matrix, NaN where undefined.

  precision_c = M[c, c] / Σ_k M[k, c] (NaN when class c is never predicted),
  recall_c = M[c, c] / Σ_k M[c, k] (NaN when class c is absent from the truth).
  Unlike :func:`classification_scores` nothing is averaged, so an undefined
  ratio stays visible.
  """
  cm = _as_matrix(cm)
  tp = np.diag(cm)
  with np.errstate(divide="ignore", invalid="ignore"):
    precision = np.where(cm.sum(axis=0) > 0, tp / cm.sum(axis=0), np.nan)
    recall = np.where(cm.sum(axis=1) > 0, tp / cm.sum(axis=1), np.nan)
  return {"precision": precision, "recall": recall}


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


# ----------------------------------------------------------------------------
# Model selection from noisy (positive-unlabelled) labels.
# ----------------------------------------------------------------------------
#
# With unsegmented objects the labels are positive-unlabelled (PU): a pixel
# labelled 1 (s = 1) is a true positive (y = 1), a pixel labelled 0 is either
# a negative or an unlabelled positive. The criteria below need only such
# noisy labels (plus, for the precision, a class prior). Binary case: the
# prediction is a foreground mask (or the foreground score, for `pu_auc`).
# Noisy labels are 1 (labelled positive) or 0 (unlabelled); any other value,
# e.g. the void label 255, is left out, as are elements where `where` is
# False. Their validity rests on the SCAR assumption ("selected completely at
# random"): every positive pixel is labelled with the same probability
# c = P(s=1 | y=1), whatever it looks like, so the labelled positives are a
# random sample of the positives. (Unsegmenting whole objects at random, as
# `jaxpu.data.noise.unsegment_objects` does, satisfies it per object, not per
# pixel: pixels of one object are labelled together, which leaves the
# expectations below unchanged but makes them noisier than pixel counts
# suggest.)

# The order of `noisy_counts`' entries.
NOISY_COUNTS = ("total", "predicted", "labelled", "labelled_predicted")


def _noisy_inputs(function: str, pred: ArrayLike, noisy_labels: ArrayLike,
                  where: Optional[ArrayLike], pred_is_scores: bool = False):
  """(pred, noisy_labels, where) as arrays of one shape, checked; errors name `function`."""
  pred = jnp.asarray(pred)
  labels = jnp.asarray(noisy_labels)
  if pred.shape != labels.shape:
    name = "scores" if pred_is_scores else "pred"
    raise ValueError(f"{function}: {name} has shape {pred.shape} but noisy_labels has shape "
                     f"{labels.shape}; they must be equal (no broadcasting).")
  if not (jnp.issubdtype(labels.dtype, jnp.integer) or labels.dtype == jnp.bool_):
    raise TypeError(f"{function}: noisy_labels must be integer labels (1 labelled positive, "
                    f"0 unlabelled, other values ignored), got dtype {labels.dtype}.")
  if not pred_is_scores and not (jnp.issubdtype(pred.dtype, jnp.integer)
                                 or pred.dtype == jnp.bool_):
    raise TypeError(f"{function}: pred must be a boolean or integer foreground mask (nonzero = "
                    f"foreground), got dtype {pred.dtype}; threshold the scores first, e.g. "
                    "logits > 0.")
  if where is not None:
    where = jnp.asarray(where)
    if where.shape != labels.shape:
      raise ValueError(f"{function}: where has shape {where.shape} but noisy_labels has shape "
                       f"{labels.shape}; they must be equal.")
  return pred, labels, where


def _noisy_masks(labels: Array, where: Optional[Array]) -> tuple[Array, Array]:
  """(labelled, valid): label 1, and label 0 or 1 where `where` holds."""
  valid = (labels == 0) | (labels == 1)
  if where is not None:
    valid = valid & where.astype(bool)
  return valid & (labels == 1), valid


def noisy_counts(pred: ArrayLike, noisy_labels: ArrayLike,
                 where: Optional[ArrayLike] = None) -> Array:
  """The additive counts behind the noisy-label criteria.

  Args:
    pred: predicted foreground mask, boolean or integer (nonzero =
      foreground, e.g. ``logits > 0``).
    noisy_labels: integer labels of the same shape: 1 labelled positive,
      0 unlabelled; other values (void 255) are not counted.
    where: optional boolean mask of the same shape; False elements are not
      counted.

  Returns:
    int32 ``[4]``: (n, n_ŷ, n_s, n_sŷ) in the order of ``NOISY_COUNTS``:
    valid elements, those predicted positive, those labelled positive, and
    those both. Sum them over batches and devices (like
    :func:`confusion_matrix`; int32, so at most 2**31 - 1 pixels per entry),
    then call :func:`criteria_from_counts`. Jit-able.

  Raises:
    ValueError: shapes differ (the message names both).
    TypeError: float predictions or labels.
  """
  pred, labels, where = _noisy_inputs("noisy_counts", pred, noisy_labels, where)
  labelled, valid = _noisy_masks(labels, where)
  predicted = valid & (pred != 0)
  return jnp.stack([jnp.sum(valid, dtype=jnp.int32), jnp.sum(predicted, dtype=jnp.int32),
                    jnp.sum(labelled, dtype=jnp.int32),
                    jnp.sum(labelled & predicted, dtype=jnp.int32)])


def _safe_divide(xp, numerator, denominator):
  """numerator / denominator, 0 where the denominator is 0 (numpy or jax.numpy)."""
  positive = denominator > 0
  return xp.where(positive, numerator / xp.where(positive, denominator, 1), 0)


def _check_prior(function: str, prior) -> None:
  if isinstance(prior, (bool, np.bool_)):
    raise TypeError(f"{function}: prior must be a number in (0, 1], got {prior!r}.")
  if isinstance(prior, (int, float, np.number)) and not 0 < float(prior) <= 1:
    raise ValueError(f"{function}: prior must be the positive share π of the valid pixels, in "
                     f"(0, 1], got {prior!r}.")


def _criteria(xp, counts, prior=None) -> dict:
  """The criteria of `criteria_from_counts` with numpy (host) or jax.numpy (traced)."""
  total, predicted, labelled, both = (counts[i] for i in range(4))
  recall = _safe_divide(xp, both, labelled)
  predicted_rate = _safe_divide(xp, predicted, total)
  out = {"labelled_recall": recall, "predicted_rate": predicted_rate,
         "labelled_rate": _safe_divide(xp, labelled, total),
         "lee_liu": _safe_divide(xp, recall * recall, predicted_rate)}
  if prior is not None:
    precision = xp.clip(_safe_divide(xp, recall * prior, predicted_rate), 0, 1)
    out["recall"] = recall
    out["precision"] = precision
    out["f1"] = _safe_divide(xp, 2 * precision * recall, precision + recall)
    out["iou"] = _safe_divide(xp, precision * recall, precision + recall - precision * recall)
  return out


def criteria_from_counts(counts: ArrayLike, prior: Optional[float] = None
                         ) -> Dict[str, float]:
  """Model-selection criteria from summed :func:`noisy_counts` (host floats).

  With n, n_ŷ, n_s, n_sŷ the counts (``NOISY_COUNTS``):

    labelled_recall = n_sŷ / n_s          ≈ recall P(ŷ=1 | y=1) under SCAR,
    predicted_rate  = n_ŷ / n             = P(ŷ=1),
    labelled_rate   = n_s / n             = P(s=1) = c π,
    lee_liu         = labelled_recall² / predicted_rate   (Lee & Liu 2003),

  and, given the prior π = P(y=1) of the valid pixels, the prior-corrected
  ``recall``, ``precision``, ``f1`` and ``iou`` of
  :func:`prior_corrected_scores` (derivations there). A ratio with a zero
  denominator is 0, as in the other scores of this module.

  Args:
    counts: ``[4]`` counts, e.g. the sum over an evaluation set of
      :func:`noisy_counts`.
    prior: π ∈ (0, 1], the share of positives among all valid pixels
      (labelled or not), estimated elsewhere, e.g. with :mod:`jaxpu.priors`
      (whose π is the share among the *unlabelled* pixels: convert it with
      :func:`prior_of_valid_pixels`). None: no prior-corrected scores.

  Returns:
    dict of Python floats: ``labelled_recall``, ``predicted_rate``,
    ``labelled_rate``, ``lee_liu`` (and ``recall``, ``precision``, ``f1``,
    ``iou`` with a prior).
  """
  counts = np.asarray(counts, dtype=np.float64)
  if counts.shape != (4,):
    raise ValueError(f"criteria_from_counts: counts must have shape (4,) ({NOISY_COUNTS}), "
                     f"got {counts.shape}.")
  if prior is not None:
    _check_prior("criteria_from_counts", prior)
    prior = float(prior)
  return {k: float(v) for k, v in _criteria(np, counts, prior).items()}


def prior_of_valid_pixels(counts: ArrayLike, unlabelled_prior: float) -> float:
  """π = P(y=1) of all valid pixels from π_U, the positive share of the unlabelled ones.

  :mod:`jaxpu.priors` estimates π_U (the positives among the unlabelled
  pixels); the labelled pixels are all positive, so

    π = (n_s + π_U (n - n_s)) / n.
  """
  counts = np.asarray(counts, dtype=np.float64)
  if counts.shape != (4,):
    raise ValueError(f"prior_of_valid_pixels: counts must have shape (4,) ({NOISY_COUNTS}), "
                     f"got {counts.shape}.")
  if not 0 <= float(unlabelled_prior) <= 1:
    raise ValueError(f"prior_of_valid_pixels: unlabelled_prior must be in [0, 1], got "
                     f"{unlabelled_prior!r}.")
  total, labelled = counts[0], counts[2]
  if total <= 0:
    raise ValueError("prior_of_valid_pixels: the counts hold no valid pixel.")
  return float((labelled + float(unlabelled_prior) * (total - labelled)) / total)


def labelled_recall(pred: ArrayLike, noisy_labels: ArrayLike,
                    where: Optional[ArrayLike] = None) -> Array:
  """Recall on the labelled positives: P(ŷ=1 | s=1) = n_sŷ / n_s.

  Under SCAR the labelled positives are a random sample of all positives and
  ŷ depends on the pixel only, so P(ŷ=1 | s=1) = P(ŷ=1 | y=1): an unbiased
  estimate of the true recall from noisy labels alone. (Alone it is no
  criterion: predicting everything positive has recall 1.) 0 without
  labelled pixels. Arguments as :func:`noisy_counts`; a float32 scalar,
  jit-able.
  """
  counts = noisy_counts(pred, noisy_labels, where).astype(jnp.float32)
  return _criteria(jnp, counts)["labelled_recall"]


def lee_liu_criterion(pred: ArrayLike, noisy_labels: ArrayLike,
                      where: Optional[ArrayLike] = None) -> Array:
  """Lee & Liu's (2003) criterion r² / P(ŷ=1), from noisy labels alone.

  r is :func:`labelled_recall`, P(ŷ=1) the share of valid pixels predicted
  positive. With precision p = P(y=1 | ŷ=1) and π = P(y=1), Bayes' rule gives
  p = r π / P(ŷ=1), so

    r² / P(ŷ=1) = p r / π.

  On one dataset π is fixed, so the criterion orders classifiers by p·r,
  which, like F1 (the harmonic mean of p and r), is large only when both
  precision and recall are: it ranks classifiers like F1 when the labelled
  positives are a random sample of the positives (SCAR), without knowing π
  or any negative. (p·r and F1 can order two classifiers differently when
  their precision and recall are very unbalanced.) 0 when nothing is
  predicted positive or nothing is labelled. Arguments as
  :func:`noisy_counts`; a float32 scalar, jit-able.
  """
  counts = noisy_counts(pred, noisy_labels, where).astype(jnp.float32)
  return _criteria(jnp, counts)["lee_liu"]


def prior_corrected_scores(pred: ArrayLike, noisy_labels: ArrayLike, prior: ArrayLike,
                           where: Optional[ArrayLike] = None) -> Dict[str, Array]:
  """Recall, precision, F1 and IoU of the foreground from noisy labels and a prior π.

  Derivation. Let y be the true class of a valid pixel, s its noisy label
  (s = 1 ⇒ y = 1), ŷ the prediction, π = P(y=1) the share of positives
  among all valid pixels and c = P(s=1 | y=1) the labelled fraction. SCAR
  says s is independent of the pixel given y = 1, hence of ŷ:
  P(ŷ=1, s=1) = P(ŷ=1, y=1) c, and P(s=1) = c π. So

    recall    = P(ŷ=1 | y=1) = P(ŷ=1, s=1) / (c π) = P(ŷ=1 | s=1)
              ≈ n_sŷ / n_s                       (:func:`labelled_recall`),
    precision = P(y=1 | ŷ=1) = P(ŷ=1 | y=1) P(y=1) / P(ŷ=1)
              = recall · π / P(ŷ=1),  P(ŷ=1) ≈ n_ŷ / n,
    F1        = 2 precision recall / (precision + recall),
    IoU       = tp / (tp + fp + fn) = precision recall / (precision + recall
                - precision recall)  (= F1 / (2 - F1)).

  c itself is not needed (it equals n_s / (n π), so the prior fixes it). The
  estimated precision is clipped to [0, 1]: finite samples or a too large π
  can push recall · π above P(ŷ=1). A wrong π scales every classifier's
  precision (before clipping) by the same factor, so a ranking by precision
  survives it, rankings by F1 or IoU only approximately, and their values
  need a good π.

  Args:
    pred, noisy_labels, where: as :func:`noisy_counts`.
    prior: π ∈ (0, 1] (a float or a scalar array; the share of positives
      among all valid pixels: see :func:`prior_of_valid_pixels` for
      :mod:`jaxpu.priors`' share among the unlabelled ones).

  Returns:
    dict of float32 scalars: ``recall``, ``precision``, ``f1``, ``iou``,
    ``predicted_rate`` (P(ŷ=1)). Jit-able (``prior`` may be traced).
  """
  _check_prior("prior_corrected_scores", prior)
  counts = noisy_counts(pred, noisy_labels, where).astype(jnp.float32)
  out = _criteria(jnp, counts, jnp.asarray(prior, jnp.float32))
  return {k: out[k] for k in ("recall", "precision", "f1", "iou", "predicted_rate")}


def pu_auc(scores: ArrayLike, noisy_labels: ArrayLike,
           where: Optional[ArrayLike] = None) -> Array:
  """Area under the ROC curve of labelled-positive vs unlabelled pixels (threshold-free).

  The Mann-Whitney statistic: with L the labelled positives (label 1) and U
  the unlabelled pixels (label 0) among the valid ones,

    AUC = (1 / (|L| |U|)) Σ_{l ∈ L} (#{u ∈ U: score_u < score_l}
                                     + ½ #{u ∈ U: score_u = score_l}),

  which equals (R_L - |L| (|L| + 1) / 2) / (|L| |U|) with R_L the sum of the
  labelled pixels' ranks among all valid pixels, ties given their average
  rank (computed by sorting and counting, not from the ranks, to avoid the
  cancellation of large rank sums in float32). Under SCAR the labelled
  scores follow the positives' distribution and U is a mixture with
  positive share π_U, so

    AUC_PU = π_U / 2 + (1 - π_U) AUC_PN,

  an increasing function of the true AUC on a fixed dataset: it ranks
  classifiers as the AUC on clean labels would.

  Args:
    scores: real scores (logits or probabilities; higher = more positive).
      NaN scores make the result undefined.
    noisy_labels: integer labels of the same shape (1 labelled, 0
      unlabelled, others ignored).
    where: optional boolean mask of the same shape.

  Returns:
    a float scalar (float32, or float64 for float64 scores with x64 on);
    NaN when there is no labelled or no unlabelled valid pixel. Jit-able
    (sorts all elements: O(N log N)).
  """
  return _mann_whitney(*_noisy_inputs("pu_auc", scores, noisy_labels, where,
                                      pred_is_scores=True))


@jax.jit
def _mann_whitney(scores, noisy_labels, where):
  """`pu_auc`'s statistic, one program per shape: `jaxpu.selection` calls it eagerly on each
  evaluation set, whose dozen operations would each compile per size."""
  labelled, valid = _noisy_masks(noisy_labels, where)
  dtype = scores.dtype if jnp.issubdtype(scores.dtype, jnp.floating) else jnp.float32
  scores = scores.astype(dtype).ravel()
  labelled, unlabelled = labelled.ravel(), (valid & ~labelled).ravel()
  num_labelled = jnp.sum(labelled, dtype=jnp.int32)
  num_unlabelled = jnp.sum(unlabelled, dtype=jnp.int32)
  # The unlabelled scores in ascending order, then +inf for every other element:
  # searchsorted counts below (and up to) a score, clipped to the unlabelled count.
  ordered = jnp.sort(jnp.where(unlabelled, scores, jnp.inf))
  below = jnp.minimum(jnp.searchsorted(ordered, scores, side="left"), num_unlabelled)
  up_to = jnp.minimum(jnp.searchsorted(ordered, scores, side="right"), num_unlabelled)
  wins = (below + 0.5 * (up_to - below)).astype(dtype)
  per_labelled = jnp.where(labelled, wins / jnp.maximum(num_unlabelled, 1).astype(dtype), 0)
  auc = jnp.sum(per_labelled) / jnp.maximum(num_labelled, 1).astype(dtype)
  return jnp.where((num_labelled > 0) & (num_unlabelled > 0), auc, jnp.nan).astype(dtype)
