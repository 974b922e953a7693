"""Class-prior estimation from positive and unlabelled (PU) data.

The uPU / nnPU risks of :mod:`jaxpu.losses.pu` need π, the positive share of
the unlabelled data (the thesis' §6 open question: "an estimation of the noisy
negative labels percentage"). This module estimates it from data, under the
usual "selected completely at random" assumption (every positive is labelled
with the same probability c = P(s=1 | y=1), whatever its features):

* :func:`elkan_noto_labelled_fraction` / :func:`elkan_noto_prior`: Elkan &
  Noto's (2008) estimators e1, e2, e3 of c, from the scores g(x) ≈
  P(s=1 | x) of a calibrated classifier trained to tell the labelled (s=1)
  from the unlabelled (s=0) examples, and :func:`prior_from_labelled_fraction`
  to turn c into π.
* :func:`best_bin_estimate`: the "best bin estimation" (BBE) of Garg et al.
  (2021), a finite-sample corrected form of the mixture-proportion bound
  π ≤ inf_t P_U(score ≥ t) / P_P(score ≥ t) of Blanchard, Lee & Scott (2010)
  and Scott (2015). It needs held-out scores of any classifier that ranks
  positives above negatives (no calibration), and depends on the scores only
  through their order.
* :func:`fit_logistic_regression`, :func:`logistic_regression_scores` and
  :func:`cross_fitted_scores`: a plain NumPy logistic regression (Newton's
  method, deterministic) for users who have features but no scores.

Everything is pure NumPy on host arrays (no JAX, TensorFlow or scikit-learn
needed) and returns Python floats. Scores are one-dimensional arrays: flatten
segmentation maps (``scores[mask]``) first.

Notation: n_L labelled examples (all positive), n_U unlabelled ones, of which
a fraction π is positive. Then n_L / (n_L + π n_U) = c, i.e.

  π = n_L (1 - c) / (c n_U)

(:func:`jaxpu.losses.unlabelled_prior`).
"""

from typing import Tuple

import numpy as np

ELKAN_NOTO_ESTIMATORS = ("e1", "e2", "e3")


def _scores(name: str, function: str, scores, probabilities: bool = False,
            min_size: int = 1) -> np.ndarray:
  """``scores`` as a 1-D finite float64 array (in [0, 1] if probabilities)."""
  array = np.asarray(scores, dtype=np.float64)
  if array.ndim != 1:
    raise ValueError(f"{function}: {name} must be one-dimensional, got shape "
                     f"{array.shape}; flatten it (e.g. scores[mask]).")
  if array.size < min_size:
    raise ValueError(f"{function}: {name} needs at least {min_size} "
                     f"element(s), got {array.size}.")
  if not np.all(np.isfinite(array)):
    raise ValueError(f"{function}: {name} contains NaN or infinite values.")
  if probabilities and array.size and (array.min() < 0. or array.max() > 1.):
    raise ValueError(f"{function}: {name} must be probabilities in [0, 1], got "
                     f"values in [{array.min():.4g}, {array.max():.4g}].")
  return array


def _features(name: str, function: str, features) -> np.ndarray:
  """``features`` as a 2-D finite float64 array [n, d] (1-D means d = 1)."""
  array = np.asarray(features, dtype=np.float64)
  if array.ndim == 1:
    array = array[:, None]
  if array.ndim != 2 or array.shape[0] == 0:
    raise ValueError(f"{function}: {name} must be a non-empty [n, d] array, "
                     f"got shape {np.shape(features)}.")
  if not np.all(np.isfinite(array)):
    raise ValueError(f"{function}: {name} contains NaN or infinite values.")
  return array


def _positive_finite(function: str, name: str, value) -> float:
  """``value`` as a float; ValueError naming ``name`` unless finite and > 0."""
  try:
    number = float(value)
  except (TypeError, ValueError):
    number = float("nan")
  if not (np.isfinite(number) and number > 0.):
    raise ValueError(f"{function}: {name} must be a finite number > 0, got {value}.")
  return number


def prior_from_labelled_fraction(labelled_fraction: float, num_labelled: float,
                                 num_unlabelled: float) -> float:
  """The positive share π of the unlabelled data, from c = P(s=1 | y=1).

    π = n_L (1 - c) / (c n_U), clipped to [0, 1].

  The labelled examples are a fraction c of all n_L + π n_U positives
  (Elkan & Noto 2008, §2), whence the formula. It is
  :func:`jaxpu.losses.unlabelled_prior` (same value where that lies in
  (0, 1)), except that an estimated c whose π falls outside [0, 1] is clipped
  instead of rejected.

  Args:
    labelled_fraction: c ∈ (0, 1].
    num_labelled: n_L > 0.
    num_unlabelled: n_U > 0.

  Returns:
    π ∈ [0, 1], a float.

  Raises:
    ValueError: c outside (0, 1], or a count ≤ 0, infinite or NaN (an
      infinite count would give π = 0 or 1).
  """
  c = float(labelled_fraction)
  if not 0. < c <= 1.:
    raise ValueError("prior_from_labelled_fraction: labelled_fraction must be "
                     f"in (0, 1], got {labelled_fraction}.")
  _positive_finite("prior_from_labelled_fraction", "num_labelled", num_labelled)
  _positive_finite("prior_from_labelled_fraction", "num_unlabelled", num_unlabelled)
  prior = num_labelled * (1. - c) / (c * num_unlabelled)
  return float(min(1., max(0., prior)))


def elkan_noto_labelled_fraction(scores_labelled, scores_unlabelled,
                                 estimator: str = "e1") -> float:
  """Elkan & Noto's estimate of the labelled fraction c = P(s=1 | y=1).

  With g(x) ≈ P(s=1 | x) the probability output of a classifier trained to
  separate labelled (s=1) from unlabelled (s=0) examples, scored on a held-out
  validation set V = P ∪ U (P its labelled examples), Elkan & Noto (2008, §2)
  propose

    e1 = (1/|P|) Σ_{x∈P} g(x),
    e2 = Σ_{x∈P} g(x) / Σ_{x∈V} g(x),
    e3 = max_{x∈V} g(x).

  Under "selected completely at random" g(x) = c P(y=1 | x), so e1 = c where
  positives and negatives do not overlap (P(y=1 | x) = 1 on the positives);
  where they overlap e1 and e2 underestimate c (e1 ≈ c E_P[P(y=1 | x)]) and
  π is overestimated. e3 needs only one x with P(y=1 | x) = 1, but trusts the
  single largest score: a classifier whose scores do not saturate at c (e.g.
  :func:`cross_fitted_scores`, whose scores tend to 1) gives e3 ≈ 1 and
  π ≈ 0. Elkan & Noto recommend e1. g must be calibrated and V must
  have the labelled/unlabelled ratio of the classifier's training data.

  Reference: C. Elkan and K. Noto, "Learning classifiers from only positive
  and unlabeled data", KDD 2008.

  Args:
    scores_labelled: g on the held-out labelled examples P, 1-D in [0, 1].
    scores_unlabelled: g on the held-out unlabelled examples, 1-D in [0, 1]
      (may be empty for e1).
    estimator: "e1", "e2" or "e3".

  Returns:
    The estimate of c, a float in (0, 1].

  Raises:
    ValueError: bad shapes, values outside [0, 1], non-finite values, an
      empty labelled set, an unknown estimator, or all-zero scores.
  """
  function = "elkan_noto_labelled_fraction"
  if estimator not in ELKAN_NOTO_ESTIMATORS:
    raise ValueError(f"{function}: unknown estimator {estimator!r}; valid: "
                     f"{', '.join(ELKAN_NOTO_ESTIMATORS)}.")
  labelled = _scores("scores_labelled", function, scores_labelled,
                     probabilities=True)
  unlabelled = _scores("scores_unlabelled", function, scores_unlabelled,
                       probabilities=True, min_size=0)
  if estimator == "e1":
    c = labelled.mean()
  elif estimator == "e2":
    total = labelled.sum() + unlabelled.sum()
    c = labelled.sum() / total if total > 0. else 0.
  else:
    c = max(labelled.max(), unlabelled.max(initial=0.))
  if not c > 0.:
    raise ValueError(f"{function}: the scores are all 0, so c cannot be "
                     "estimated (is g the probability of being labelled?).")
  return float(c)


def elkan_noto_prior(scores_labelled, scores_unlabelled, estimator: str = "e1",
                     num_labelled=None, num_unlabelled=None) -> float:
  """π from Elkan & Noto's c: π = n_L (1 - c) / (c n_U), clipped to [0, 1].

  c is :func:`elkan_noto_labelled_fraction` (e1, e2 or e3 of Elkan & Noto,
  KDD 2008) and the conversion :func:`prior_from_labelled_fraction`.

  Args:
    scores_labelled: held-out g(x) ≈ P(s=1 | x) on labelled examples.
    scores_unlabelled: held-out g(x) on unlabelled examples.
    estimator: "e1" (default), "e2" or "e3".
    num_labelled: n_L of the data whose prior is wanted; default
      ``len(scores_labelled)``.
    num_unlabelled: n_U; default ``len(scores_unlabelled)``.

  Returns:
    π ∈ [0, 1], a float.

  Raises:
    ValueError: as :func:`elkan_noto_labelled_fraction`, or no unlabelled
      examples.
  """
  c = elkan_noto_labelled_fraction(scores_labelled, scores_unlabelled,
                                   estimator)
  if num_labelled is None:
    num_labelled = np.size(scores_labelled)
  if num_unlabelled is None:
    num_unlabelled = np.size(scores_unlabelled)
  return prior_from_labelled_fraction(c, num_labelled, num_unlabelled)


def best_bin_estimate(scores_positive, scores_unlabelled, delta: float = 0.1,
                      gamma: float = 0.01) -> float:
  """Best bin estimation (BBE) of the positive share π of the unlabelled data.

  For a threshold t let q_P(t) and q_U(t) be the fractions of the held-out
  labelled positives (n_P of them) and unlabelled examples (n_U) scoring ≥ t.
  As P_U = π P_P + (1 - π) P_N, q_U(t) / q_P(t) → π_U(t) ≥ π for every t,
  with equality where the negatives do not reach (Blanchard, Lee & Scott
  2010; Scott 2015). BBE picks the threshold minimising an upper confidence
  bound of that ratio and returns the ratio there (Garg et al. 2021, Alg. 1):

    t* = argmin_t  q_U(t) / q_P(t)
                   + (1 + γ) / q_P(t) · (√(log(4/δ) / (2 n_P))
                                         + √(log(4/δ) / (2 n_U))),
    π̂ = min(1, q_U(t*) / q_P(t*)),

  over all t with q_P(t) > 0 (the pooled scores suffice: the counts only
  change there). The bound is the DKW inequality, which holds with
  probability 1 - δ; γ > 0 is the paper's slack. The estimate depends on the
  scores only through their order, so any strictly increasing transform of
  the scores (logits or probabilities, calibrated or not) gives the same π̂.
  Higher scores must mean "more positive".

  The authors' code uses log(1/δ) for log(4/δ); the difference only moves t*.
  π̂ is consistent when some score region holds positives but (almost) no
  negatives ("top bin" purity); otherwise it overestimates π.

  References: S. Garg, Y. Wu, A. Smola, S. Balakrishnan and Z. C. Lipton,
  "Mixture proportion estimation and PU learning: a modern approach",
  NeurIPS 2021; G. Blanchard, G. Lee and C. Scott, "Semi-supervised novelty
  detection", JMLR 2010; C. Scott, "A rate of convergence for mixture
  proportion estimation, with application to learning from noisy labels",
  AISTATS 2015.

  Args:
    scores_positive: held-out scores of labelled positives, 1-D, finite.
    scores_unlabelled: held-out scores of unlabelled examples, 1-D, finite.
    delta: δ ∈ (0, 1), the confidence parameter.
    gamma: γ ≥ 0.

  Returns:
    π̂ ∈ [0, 1], a float.

  Raises:
    ValueError: bad shapes, empty sets, non-finite scores, δ or γ out of range.
  """
  function = "best_bin_estimate"
  positive = np.sort(_scores("scores_positive", function, scores_positive))
  unlabelled = np.sort(_scores("scores_unlabelled", function,
                               scores_unlabelled))
  if not 0. < delta < 1.:
    raise ValueError(f"{function}: delta must be in (0, 1), got {delta}.")
  if not (np.isfinite(gamma) and gamma >= 0.):
    raise ValueError(f"{function}: gamma must be finite and ≥ 0, got {gamma}.")
  n_p, n_u = positive.size, unlabelled.size
  thresholds = np.unique(np.concatenate([positive, unlabelled]))
  # Fractions scoring ≥ t: n - #(< t).
  q_p = (n_p - np.searchsorted(positive, thresholds, side="left")) / n_p
  q_u = (n_u - np.searchsorted(unlabelled, thresholds, side="left")) / n_u
  keep = q_p > 0.
  q_p, q_u = q_p[keep], q_u[keep]
  log_term = np.log(4. / delta)
  slack = (1. + gamma) * (np.sqrt(log_term / (2. * n_p))
                          + np.sqrt(log_term / (2. * n_u)))
  ratio = q_u / q_p
  best = np.argmin(ratio + slack / q_p)  # The first (lowest t) on ties.
  return float(min(1., ratio[best]))


def _log_sigmoid(z: np.ndarray) -> np.ndarray:
  """log σ(z) = -log(1 + exp(-z)), stable."""
  return -np.logaddexp(0., -z)


def fit_logistic_regression(features, targets, l2: float = 1e-4,
                            num_iterations: int = 50,
                            tolerance: float = 1e-10) -> Tuple[np.ndarray,
                                                               float]:
  """L2-regularised logistic regression by Newton's method (IRLS).

  Minimises the mean log loss plus a ridge penalty on the weights (not the
  bias),

    J(w, b) = -(1/n) Σ_i [t_i log σ(z_i) + (1 - t_i) log σ(-z_i)]
              + (λ/2) ‖w‖²,    z_i = w·x_i + b,

  with Newton steps θ ← θ - H⁻¹ ∇J, ∇J = Xᵀ(σ(z) - t)/n + λ(w, 0),
  H = Xᵀ diag(σ(z)(1 - σ(z))) X / n + λ diag(1, …, 1, 0), starting from 0,
  until the step's max-norm is below ``tolerance`` (deterministic; λ > 0
  keeps J strictly convex and the weights finite on separable data).

  Reference: e.g. T. Hastie, R. Tibshirani and J. Friedman, "The Elements of
  Statistical Learning", 2nd ed., §4.4.1 (Newton / IRLS).

  Args:
    features: [n, d] (or [n], d = 1), finite.
    targets: [n] in {0, 1} (or probabilities in [0, 1]).
    l2: λ > 0, finite.
    num_iterations: at most this many Newton steps, ≥ 1.
    tolerance: stopping threshold on the step size.

  Returns:
    (w [d], b), float64 weights and a float bias.

  Raises:
    ValueError: shape mismatch, targets outside [0, 1], λ ≤ 0 or not finite,
      num_iterations < 1.
  """
  function = "fit_logistic_regression"
  x = _features("features", function, features)
  t = _scores("targets", function, targets, probabilities=True)
  if t.size != x.shape[0]:
    raise ValueError(f"{function}: {x.shape[0]} feature rows but {t.size} "
                     "targets.")
  _positive_finite(function, "l2", l2)  # l2 = inf would give NaN weights
  if (isinstance(num_iterations, bool) or not isinstance(num_iterations, (int, np.integer))
      or num_iterations < 1):  # none: the weights would be the starting zeros
    raise ValueError(f"{function}: num_iterations must be an integer >= 1, got "
                     f"{num_iterations!r}.")
  n, d = x.shape
  design = np.concatenate([x, np.ones((n, 1))], axis=1)
  penalty = np.full(d + 1, float(l2))
  penalty[-1] = 0.
  theta = np.zeros(d + 1)
  for _ in range(int(num_iterations)):
    z = design @ theta
    p = np.exp(_log_sigmoid(z))
    gradient = design.T @ (p - t) / n + penalty * theta
    weights = p * (1. - p)
    hessian = (design.T * weights) @ design / n + np.diag(penalty)
    hessian[-1, -1] += 1e-12  # Invertible even if σ(z)(1 - σ(z)) underflows.
    step = np.linalg.solve(hessian, gradient)
    theta = theta - step
    if np.max(np.abs(step)) < tolerance:
      break
  return theta[:-1], float(theta[-1])


def logistic_regression_scores(features, weights, bias: float) -> np.ndarray:
  """σ(w·x + b) for each row x of ``features`` ([n, d] or [n]); [n] floats."""
  x = _features("features", "logistic_regression_scores", features)
  return np.exp(_log_sigmoid(x @ np.asarray(weights, np.float64) + bias))


def cross_fitted_scores(features_labelled, features_unlabelled,
                        num_folds: int = 5, l2: float = 1e-4
                        ) -> Tuple[np.ndarray, np.ndarray]:
  """Held-out ĝ(x) ≈ P(s=1 | x) for every example, by K-fold cross-fitting.

  The "non-traditional" classifier of Elkan & Noto (2008): logistic
  regression (:func:`fit_logistic_regression`) of s (1 = labelled, 0 =
  unlabelled) on the features. Example i of each set goes to fold i mod K
  (deterministic, stratified: each fold keeps the labelled/unlabelled ratio,
  which e1-e3 rely on); each fold is scored by the model fit on the other
  K - 1 folds, so every score is held out. The scores feed
  :func:`elkan_noto_prior` (which needs them calibrated: logistic regression
  is calibrated only if the log-odds of s are linear in the features) and
  :func:`best_bin_estimate` (which needs only their order).

  Args:
    features_labelled: [n_L, d] (or [n_L]).
    features_unlabelled: [n_U, d] (or [n_U]).
    num_folds: K ≥ 2, at most min(n_L, n_U).
    l2: λ of :func:`fit_logistic_regression`.

  Returns:
    (scores_labelled [n_L], scores_unlabelled [n_U]) in (0, 1).

  Raises:
    ValueError: empty sets, different feature dimensions, bad K.
  """
  function = "cross_fitted_scores"
  labelled = _features("features_labelled", function, features_labelled)
  unlabelled = _features("features_unlabelled", function, features_unlabelled)
  if labelled.shape[1] != unlabelled.shape[1]:
    raise ValueError(f"{function}: feature dimensions differ: "
                     f"{labelled.shape[1]} vs {unlabelled.shape[1]}.")
  num_folds = int(num_folds)
  if not 2 <= num_folds <= min(len(labelled), len(unlabelled)):
    raise ValueError(f"{function}: num_folds must be in [2, min(n_L, n_U)] = "
                     f"[2, {min(len(labelled), len(unlabelled))}], got "
                     f"{num_folds}.")
  fold_l = np.arange(len(labelled)) % num_folds
  fold_u = np.arange(len(unlabelled)) % num_folds
  scores_l = np.empty(len(labelled))
  scores_u = np.empty(len(unlabelled))
  for k in range(num_folds):
    train_x = np.concatenate([labelled[fold_l != k], unlabelled[fold_u != k]])
    train_t = np.concatenate([np.ones(np.sum(fold_l != k)),
                              np.zeros(np.sum(fold_u != k))])
    weights, bias = fit_logistic_regression(train_x, train_t, l2=l2)
    scores_l[fold_l == k] = logistic_regression_scores(labelled[fold_l == k],
                                                       weights, bias)
    scores_u[fold_u == k] = logistic_regression_scores(
        unlabelled[fold_u == k], weights, bias)
  return scores_l, scores_u


def unlabelled_positive_share(observed_labels, true_labels, void: int = 255) -> float:
  """The true π: the share of positives among the unlabelled examples.

  An example (or pixel) is unlabelled where its observed label is 0, and
  positive where its true label is not 0 (any relevant class, or the
  foreground); elements whose observed or true label is ``void`` are
  skipped. This is the quantity the estimators above estimate and that
  :func:`jaxpu.losses.nnpu_risk` takes as ``prior`` (Kiryo et al., NeurIPS
  2017, §2: the class prior of the unlabelled data in the case-control
  setting of du Plessis et al., 2015).

  Args:
    observed_labels: the (PU) training labels, any shape, integers.
    true_labels: the complete labels, the same shape.
    void: the label to skip.

  Returns:
    π ∈ [0, 1], a float.

  Raises:
    ValueError: different shapes, or no unlabelled element.
  """
  observed = np.asarray(observed_labels)
  true = np.asarray(true_labels)
  if observed.shape != true.shape:
    raise ValueError(f"unlabelled_positive_share: observed labels of shape {observed.shape} "
                     f"but true labels of shape {true.shape}.")
  unlabelled = (observed == 0) & (true != void)
  count = int(np.sum(unlabelled))
  if count == 0:
    raise ValueError("unlabelled_positive_share: no unlabelled (observed 0, non-void) element.")
  return float(np.sum(unlabelled & (true != 0)) / count)


def sigmoid(logits) -> np.ndarray:
  """σ(logits) as float64, computed stably (g(x) of a logistic model's logit)."""
  return np.exp(_log_sigmoid(np.asarray(logits, np.float64)))


def estimates_from_logits(logits_labelled, logits_unlabelled) -> dict:
  """BBE and Elkan & Noto's e1 prior from held-out logits of a labelled-vs-unlabelled model.

  The logits are those of a model trained with the logistic loss on the PU
  labels (labelled = 1, unlabelled = 0), i.e. g(x) = σ(logit) ≈ P(s=1 | x)
  (Elkan & Noto, KDD 2008), scored on held-out examples with the same PU
  labelling. Returns {"BBE": :func:`best_bin_estimate` on the logits (their
  order), "EN e1": :func:`elkan_noto_prior` with e1 on σ(logit) and the
  held-out counts}.
  """
  labelled = _scores("logits_labelled", "estimates_from_logits", logits_labelled, min_size=1)
  unlabelled = _scores("logits_unlabelled", "estimates_from_logits", logits_unlabelled,
                       min_size=1)
  return {"BBE": best_bin_estimate(labelled, unlabelled),
          "EN e1": elkan_noto_prior(sigmoid(labelled), sigmoid(unlabelled), "e1")}
