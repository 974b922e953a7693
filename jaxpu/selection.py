r"""Choosing a model without clean labels: noisy-label criteria of a model, and how well they rank.

A user whose labels miss objects has no clean validation labels. The
criteria of `jaxpu.metrics` are computed from the noisy ones alone
(foreground vs background; a multiclass model's foreground is every class
but 0, its foreground score log Σ_{k≥1} e^{f_k} − f_0):

- `labelled_recall` = n_sŷ / n_s, the recall on the labelled foreground
  (= the true recall when the labelled pixels are a random sample of the
  foreground, SCAR);
- `lee_liu` = recall² / P(ŷ=1) (Lee & Liu 2003): recall² / P(ŷ=1) =
  precision · recall / π, so with π fixed it orders models like
  precision · recall, close to F1;
- `pu_auc`: the AUC of labelled vs unlabelled pixels ranked by the
  foreground score (under SCAR an increasing function of the clean AUC);
- with a prior π_U (the foreground share of the unlabelled pixels, as
  `jaxpu.priors` estimates it): `corrected_precision`, `corrected_f1`,
  `corrected_iou` (`metrics.prior_corrected_scores`);
- the naive choice, for reference: `noisy_mean_iu`, the mean IU against the
  noisy labels as if they were clean.

`evaluate` scores one set of weights on evaluation batches that carry the
noisy labels (and, in a simulation, the clean ones); `agreement` measures,
over a set of candidate models, how well a criterion's ranking follows the
clean one: Spearman's ρ between the two and the regret (the best clean
score minus the clean score of the criterion's pick).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import numpy as np

from jaxpu import analysis
from jaxpu import metrics

COUNT_CRITERIA = ("labelled_recall", "lee_liu")
PRIOR_CRITERIA = ("corrected_precision", "corrected_f1", "corrected_iou")
CRITERIA = COUNT_CRITERIA + ("pu_auc",) + PRIOR_CRITERIA


def foreground_counts(cm) -> np.ndarray:
  """`metrics.noisy_counts` (n, n_ŷ, n_s, n_sŷ) of the foreground from a confusion matrix
  against the noisy labels (rows: label, columns: prediction; class 0 = background)."""
  cm = np.asarray(cm, np.int64)
  return np.asarray([cm.sum(), cm[:, 1:].sum(), cm[1:, :].sum(), cm[1:, 1:].sum()])


def criteria(cm, prior_u: Optional[float] = None) -> dict[str, float]:
  """The criteria from counts of a confusion matrix against the noisy labels; with the
  unlabelled pixels' prior `prior_u`, also the prior-corrected ones."""
  counts = foreground_counts(cm)
  prior = None
  if prior_u is not None and counts[0] > 0:
    prior = metrics.prior_of_valid_pixels(counts, prior_u)
    prior = prior if prior > 0 else None
  found = metrics.criteria_from_counts(counts, prior)
  out = {k: found[k] for k in COUNT_CRITERIA}
  if prior is not None:
    out.update({f"corrected_{k}": found[k] for k in ("precision", "f1", "iou")})
  return out


def foreground_score(logits: np.ndarray, binary: bool) -> np.ndarray:
  """The foreground logit: f (binary) or log Σ_{k≥1} e^{f_k} − f_0."""
  if binary:
    return logits[..., 0]
  return np.logaddexp.reduce(logits[..., 1:], axis=-1) - logits[..., 0]


def evaluate(apply: Callable, params: Any, batches: Iterable[Mapping[str, Any]], *,
             num_classes: int, clean_key: Optional[str] = None) -> dict[str, Any]:
  """Scores of one set of weights against the noisy labels (and the clean ones).

  Args:
    apply: `apply(params, images) -> logits` (e.g. `jaxpu.predict.apply_fn`).
    params: the weights.
    batches: evaluation batches with "image" and "label" (the noisy labels;
      255 void) and, if `clean_key`, the clean labels under that key.
    num_classes: the model's outputs (1: binary, foreground = logit > 0).
    clean_key: the key of the clean labels (e.g. "true_label"), or None.

  Returns:
    {"noisy_cm": the confusion matrix against the noisy labels (2 × 2 for a
    binary model), "pu_auc": float, and with `clean_key` "clean_cm"} — the
    matrices as nested lists of ints.
  """
  binary = num_classes == 1
  size = 2 if binary else num_classes
  noisy = np.zeros((size, size), np.int64)
  clean = np.zeros((size, size), np.int64)
  scores, labelled = [], []
  for batch in batches:
    logits = np.asarray(apply(params, batch["image"]), np.float32)
    pred = ((logits[..., 0] > 0) if binary else np.argmax(logits, -1)).astype(np.int32)
    label = np.asarray(batch["label"])
    noisy += np.asarray(metrics.confusion_matrix(pred, label, size, where=label != 255))
    if clean_key is not None:
      truth = np.asarray(batch[clean_key])
      clean += np.asarray(metrics.confusion_matrix(pred, truth, size, where=truth != 255))
    valid = label != 255
    scores.append(foreground_score(logits, binary)[valid])
    labelled.append((label[valid] != 0).astype(np.int32))
  out = {"noisy_cm": noisy.tolist(),
         "pu_auc": float(metrics.pu_auc(np.concatenate(scores), np.concatenate(labelled)))}
  if clean_key is not None:
    out["clean_cm"] = clean.tolist()
  return out


def model_criteria(found: Mapping[str, Any], prior_u: Optional[float] = None
                   ) -> dict[str, float]:
  """Every criterion of an `evaluate` result: those from counts, `pu_auc`, the
  prior-corrected ones (with `prior_u`) and the naive `noisy_mean_iu`."""
  out = criteria(found["noisy_cm"], prior_u)
  out["pu_auc"] = found["pu_auc"]
  out["noisy_mean_iu"] = metrics.segmentation_scores(found["noisy_cm"])["mean_iou"]
  return out


def clean_scores(found: Mapping[str, Any]) -> dict[str, float]:
  """Mean IU and foreground F1 of an `evaluate` result against the clean labels."""
  cm = np.asarray(found["clean_cm"], np.int64)
  tp, fp, fn = cm[1:, 1:].sum(), cm[:1, 1:].sum(), cm[1:, :1].sum()
  f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
  return {"mean_iu": metrics.segmentation_scores(cm)["mean_iou"], "fg_f1": float(f1)}


def agreement(chooser: Sequence[float], truth: Sequence[float]) -> dict[str, float]:
  """How well ranking candidates by `chooser` follows ranking them by `truth`.

  {"rho": Spearman's ρ (`analysis.rank_correlation`), "regret": max(truth) −
  truth of the chooser's best (`analysis.regret`), "random_regret": the mean
  regret of a uniformly random pick, max(truth) − mean(truth)}.
  """
  truth = np.asarray(truth, np.float64)
  return {"rho": analysis.rank_correlation(chooser, truth),
          "regret": analysis.regret(chooser, truth),
          "random_regret": float(np.nanmax(truth) - np.nanmean(truth))}
