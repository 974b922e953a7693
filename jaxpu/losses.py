"""Losses for learning with positive and unlabeled (PU) and noisy labels.

The class-dependent losses of the thesis (§4, eqs. 6-11), their usual
baselines, and the uPU / nnPU risk estimators the thesis cites.

Conventions (those of ``optax.losses``):

* Elementwise losses return one value per label, with the broadcast shape of
  ``labels``, ``logits`` (without its class axis for multiclass losses) and
  ``where``; nothing is reduced. Reduce them with :func:`masked_mean`.
* Binary losses take one logit ``f`` per element and labels in {0, 1}:
  1 is a labeled positive (foreground), 0 is a negative or unlabeled example
  (the thesis writes -1 for our 0). ``σ`` is the logistic sigmoid.
* Multiclass losses take logits ``[..., C]`` and integer labels ``[...]`` in
  ``[0, C)``; ``negative_class`` (default 0) is the non-relevant/background
  class and ``σ_k`` is the k-th softmax output.
* ``where`` (boolean, broadcastable to the labels): where it is False the loss
  and its gradient are exactly 0, whatever the label there (VOC's void label
  255 included) and whatever the logits (even NaN). Labels and logits are
  replaced by safe values before any arithmetic, so nothing leaks through the
  backward pass.
* Precision: everything is computed in log space (log σ from one
  exp(-|f|) and one log1p per element, ``jax.nn.log_softmax``) in at least
  float32. Low-precision logits (bfloat16, float16) are upcast to float32
  and the loss is returned in float32, so that reductions over many pixels
  do not happen in bfloat16; the gradient with respect to bfloat16 logits
  is bfloat16 again. Values and gradients are finite for |logit| up to 1e4
  (tested) and beyond.
* Label checks: when the labels (and ``where``, if given) are concrete arrays,
  a label outside {0, 1} (binary) or ``[0, C)`` (multiclass) at a position
  where ``where`` is True raises a ``ValueError`` naming the bad values. Under
  ``jax.jit``/``vmap`` the labels are traced and cannot be checked: an
  out-of-range label that is not masked then yields a NaN loss value (so the
  missing mask shows up in the logged loss) and contributes a zero gradient.
  Risk estimators return NaN if any such label is present.
* Each function checks its (concrete) arguments in Python and then runs a
  jitted core, so eager calls compile once per input shape.
"""

import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
ArrayLike = jax.typing.ArrayLike

_VOID_HINT = ("Mask void labels with where=(labels != 255); binary losses use "
             "0 for negative/unlabeled (the thesis' -1).")


# ----------------------------------------------------------------------------
# Argument checks (Python, on concrete values only).
# ----------------------------------------------------------------------------


def _is_concrete(*xs) -> bool:
  return not any(isinstance(x, jax.core.Tracer) for x in xs)


def _check_labels(name: str, labels, where, num_classes: int) -> None:
  """Raises ValueError for concrete labels outside [0, num_classes)."""
  if not _is_concrete(labels, where):
    return
  labels = np.asarray(labels)
  bad = ~((labels >= 0) & (labels < num_classes) & (labels == np.floor(labels)))
  if where is not None:
    bad = bad & np.asarray(where, dtype=bool)
  if np.any(bad):
    values = np.unique(np.broadcast_to(labels, bad.shape)[bad])
    shown = ", ".join(str(v) for v in values[:10])
    more = "" if len(values) <= 10 else f" (and {len(values) - 10} more)"
    allowed = "{0, 1}" if num_classes == 2 else f"[0, {num_classes})"
    raise ValueError(
        f"{name}: labels must be in {allowed} where `where` is True; got "
        f"{shown}{more} at {int(bad.sum())} element(s). {_VOID_HINT}")


def _check_multiclass(name: str, logits, labels, where,
                      class_weights=None, negative_class: int = 0) -> None:
  """Checks shapes, dtypes, labels, class weights and the negative class."""
  if jnp.ndim(logits) < 1:
    raise ValueError(f"{name}: logits need a trailing class axis, got shape "
                     f"{jnp.shape(logits)}.")
  num_classes = jnp.shape(logits)[-1]
  if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
    raise TypeError(f"{name}: labels must be integer class indices, got dtype "
                    f"{jnp.result_type(labels)}. Cast them with "
                    "labels.astype(jnp.int32).")
  if class_weights is not None and jnp.shape(class_weights) != (num_classes,):
    raise ValueError(
        f"{name}: class_weights must have shape ({num_classes},), one weight "
        f"per class, got shape {jnp.shape(class_weights)}.")
  if not 0 <= negative_class < num_classes:
    raise ValueError(f"{name}: negative_class must be in [0, {num_classes}), "
                     f"got {negative_class}.")
  _check_labels(name, labels, where, num_classes)


def _check_prior(name, prior) -> None:
  if _is_concrete(prior) and not 0. < float(prior) < 1.:
    raise ValueError(f"{name}: prior must be the positive class prior in "
                     f"(0, 1), got {float(prior)}.")


# ----------------------------------------------------------------------------
# Jitted cores shared by the losses.
# ----------------------------------------------------------------------------


def _compute_dtype(dtype) -> jnp.dtype:
  return jnp.promote_types(dtype, jnp.float32)


def _valid_mask(where, shape) -> Array:
  if where is None:
    return jnp.ones(shape, dtype=bool)
  return jnp.broadcast_to(jnp.asarray(where, dtype=bool), shape)


def _where_shape(where) -> tuple:
  return () if where is None else (jnp.shape(where),)


def _finish(loss: Array, valid: Array, in_range: Array) -> Array:
  """0 where masked out, NaN for unmasked out-of-range labels (jit only)."""
  nan_or_zero = jnp.where(valid, jnp.nan, 0.0).astype(loss.dtype)
  return jnp.where(valid & in_range, loss, nan_or_zero)


def _binary_inputs(logits, labels, where):
  """Broadcasts and sanitises binary inputs.

  Returns (f, positive, valid, in_range): float logits that are 0 wherever
  they will not be used, a boolean "label is 1" array, the `where` mask and
  the in-range mask, all of the broadcast shape.
  """
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  shape = jnp.broadcast_shapes(logits.shape, labels.shape, *_where_shape(where))
  logits = jnp.broadcast_to(logits.astype(_compute_dtype(logits.dtype)), shape)
  labels = jnp.broadcast_to(labels, shape)
  valid = _valid_mask(where, shape)
  in_range = (labels == 0) | (labels == 1)
  use = valid & in_range
  f = jnp.where(use, logits, 0.0)
  positive = use & (labels == 1)
  return f, positive, valid, in_range


@functools.partial(jax.jit, static_argnums=0)
def _binary_loss(terms: Callable[..., tuple[Array, Array]], logits, labels,
                 where, params: tuple) -> Array:
  """`terms(f, *params)` gives the (label 1, label 0) losses at f."""
  f, positive, valid, in_range = _binary_inputs(logits, labels, where)
  loss_if_positive, loss_if_negative = terms(f, *params)
  loss = jnp.where(positive, loss_if_positive, loss_if_negative)
  return _finish(loss, valid, in_range)


def _multiclass_inputs(logits, labels, where):
  """Broadcasts and sanitises multiclass inputs.

  Returns (logits, labels, valid, in_range, use): float logits `[..., C]`
  that are 0 wherever they will not be used, the labels, the `where` mask,
  the in-range mask and `use = valid & in_range`, all of the broadcast shape.
  """
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  num_classes = logits.shape[-1]
  shape = jnp.broadcast_shapes(logits.shape[:-1], labels.shape,
                               *_where_shape(where))
  logits = logits.astype(_compute_dtype(logits.dtype))
  logits = jnp.broadcast_to(logits, shape + (num_classes,))
  labels = jnp.broadcast_to(labels, shape)
  valid = _valid_mask(where, shape)
  in_range = (labels >= 0) & (labels < num_classes)
  use = valid & in_range
  logits = jnp.where(use[..., None], logits, 0.0)
  return logits, labels, valid, in_range, use


@functools.partial(jax.jit, static_argnums=(0, 5))
def _multiclass_loss(terms: Callable[..., Array], logits, labels, where,
                     params: tuple, negative_class: int) -> Array:
  """`terms(log_p, labels, negative_class, *params)` gives the loss.

  log_p is the log-softmax over the last axis of sanitised logits and labels
  are replaced by 0 where unused.
  """
  logits, labels, valid, in_range, use = _multiclass_inputs(logits, labels, where)
  labels = jnp.where(use, labels, 0)
  log_p = jax.nn.log_softmax(logits, axis=-1)
  return _finish(terms(log_p, labels, negative_class, *params), valid, in_range)


def _take(log_p: Array, index: Array) -> Array:
  return jnp.take_along_axis(log_p, index[..., None], axis=-1)[..., 0]


def _weighted(loss: Array, labels: Array, class_weights) -> Array:
  if class_weights is None:
    return loss
  return jnp.asarray(class_weights, loss.dtype)[labels] * loss


# ----------------------------------------------------------------------------
# Binary losses.
# ----------------------------------------------------------------------------


def _sigmoid_parts_and_derivatives(f: Array) -> tuple[tuple, tuple]:
  """(log σ(f), log σ(-f), σ(f), σ(-f)) and their derivatives in f.

  One exp and one log1p per element (thesis App. B.1's σ):
    e = exp(-|f|),  log σ(±f) = -max(∓f, 0) - log1p(e),
    σ(f) = 1 / (1 + e) for f ≥ 0 and e / (1 + e) otherwise,
  and the derivatives reuse e: d log σ(f) = σ(-f), d log σ(-f) = -σ(f),
  dσ(f) = σ(f) σ(-f) = -dσ(-f).
  """
  e = jnp.exp(-jnp.abs(f))
  softplus_of_minus_abs = jnp.log1p(e)
  r = 1. / (1. + e)
  nonnegative = f >= 0
  sigmoid = jnp.where(nonnegative, r, e * r)
  sigmoid_of_minus = jnp.where(nonnegative, e * r, r)
  parts = (-(jnp.maximum(-f, 0.) + softplus_of_minus_abs),
           -(jnp.maximum(f, 0.) + softplus_of_minus_abs),
           sigmoid, sigmoid_of_minus)
  slope = sigmoid * sigmoid_of_minus
  return parts, (sigmoid_of_minus, -sigmoid, slope, -slope)


@jax.custom_jvp
def _sigmoid_parts(f: Array) -> tuple[Array, Array, Array, Array]:
  """(log σ(f), log σ(-f), σ(f), σ(-f)) from one exp(-|f|) (see above).

  Same values as ``jax.nn.log_sigmoid`` / ``jax.nn.sigmoid`` up to float
  rounding; the custom JVP makes the gradient reuse the forward's exp
  instead of differentiating log1p(exp(·)) (benchmarks/README.md).
  Unused outputs cost nothing under jit.
  """
  return _sigmoid_parts_and_derivatives(f)[0]


@_sigmoid_parts.defjvp
def _sigmoid_parts_jvp(primals, tangents):
  (f,), (t,) = primals, tangents
  parts, derivatives = _sigmoid_parts_and_derivatives(f)
  return parts, tuple(d * t for d in derivatives)


def _log_sigmoids(f: Array) -> tuple[Array, Array]:
  """(log σ(f), log σ(-f))."""
  return _sigmoid_parts(f)[:2]


def _logistic_terms(f, positive_weight=1., negative_weight=1.):
  log_sigmoid, log_sigmoid_of_minus = _log_sigmoids(f)
  return (-positive_weight * log_sigmoid,
          -negative_weight * log_sigmoid_of_minus)


def logistic(logits: ArrayLike, labels: ArrayLike,
             where: Optional[ArrayLike] = None) -> Array:
  """Logistic loss (binary cross entropy, thesis App. B.1).

    l(f, 1) = -log σ(f),    l(f, 0) = -log(1 - σ(f)) = -log σ(-f).

  Args:
    logits: ``[...]`` one logit f per element.
    labels: ``[...]`` in {0, 1}; 1 = positive, 0 = negative/unlabeled.
    where: optional boolean mask; False gives loss and gradient 0.

  Returns:
    Per-element loss of the broadcast shape, float32 (or wider).
  """
  _check_labels("logistic", labels, where, 2)
  return _binary_loss(_logistic_terms, logits, labels, where, ())


def weighted_logistic(logits: ArrayLike, labels: ArrayLike,
                      positive_weight: ArrayLike = 1.,
                      negative_weight: ArrayLike = 1.,
                      where: Optional[ArrayLike] = None) -> Array:
  """Class-weighted logistic loss (thesis eq. 6).

    l(f, 1) = -α log σ(f),    l(f, 0) = -β log(1 - σ(f)),

  with α = ``positive_weight`` and β = ``negative_weight``. Labels: 1 =
  positive, 0 = negative/unlabeled (the thesis' -1). With α = β = 1 this is
  ``optax.sigmoid_binary_cross_entropy``.
  """
  _check_labels("weighted_logistic", labels, where, 2)
  return _binary_loss(_logistic_terms, logits, labels, where,
                      (positive_weight, negative_weight))


def _sigmoid_negative_terms(f, positive_weight, negative_weight):
  log_sigmoid, _, sigmoid, _ = _sigmoid_parts(f)
  return -positive_weight * log_sigmoid, negative_weight * sigmoid


def sigmoid_negative(logits: ArrayLike, labels: ArrayLike,
                     positive_weight: ArrayLike = 1.,
                     negative_weight: ArrayLike = 1.,
                     where: Optional[ArrayLike] = None) -> Array:
  """Class-dependent sigmoid loss (thesis eq. 8, "sigmoid loss").

    l(f, 1) = -α log σ(f),    l(f, 0) = β σ(f),

  with α = ``positive_weight`` and β = ``negative_weight`` (eq. 8 has
  α = β = 1; the weights implement the class re-weighting of §4's
  implementation details). Labels: 1 = labeled positive, 0 = negative or
  unlabeled. The negative loss saturates at β as f → ∞ and its derivative
  β σ(f)(1 - σ(f)) vanishes (Fig. 2): confident positive predictions on
  unlabeled positives are not punished more than unconfident ones.
  """
  _check_labels("sigmoid_negative", labels, where, 2)
  return _binary_loss(_sigmoid_negative_terms, logits, labels, where,
                      (positive_weight, negative_weight))


def _generalized_sigmoid_negative_terms(f, alpha, beta, gamma):
  return (-_log_sigmoids(f)[0],
          alpha * jnp.exp(gamma * _log_sigmoids(beta * f)[0]))


def generalized_sigmoid_negative(logits: ArrayLike, labels: ArrayLike,
                                 alpha: ArrayLike = 1., beta: ArrayLike = 1.,
                                 gamma: ArrayLike = 1.,
                                 where: Optional[ArrayLike] = None) -> Array:
  """Parametrised sigmoid loss for the negative class (thesis §6).

    l(f, 1) = -log σ(f),    l(f, 0) = α σ(βf)^γ = α exp(γ log σ(βf)).

  §6 writes α (1 / (1 + exp(βz)))^γ with z the output for the negative class;
  with z = -f that is α σ(βf)^γ. α scales the loss, β sets where it
  saturates, γ where it starts. α = β = γ = 1 gives :func:`sigmoid_negative`.
  Labels: 1 = labeled positive, 0 = negative or unlabeled.
  """
  _check_labels("generalized_sigmoid_negative", labels, where, 2)
  return _binary_loss(_generalized_sigmoid_negative_terms, logits, labels,
                      where, (alpha, beta, gamma))


def _bootstrap_hard_terms(f, beta):
  predicted_positive = jax.lax.stop_gradient(f > 0)
  log_sigmoid, log_sigmoid_of_minus = _log_sigmoids(f)
  log_p_hat = jnp.where(predicted_positive, log_sigmoid, log_sigmoid_of_minus)
  return (-log_sigmoid,
          -beta * log_sigmoid_of_minus - (1. - beta) * log_p_hat)


def bootstrap_hard(logits: ArrayLike, labels: ArrayLike,
                   beta: ArrayLike = 0.8,
                   where: Optional[ArrayLike] = None) -> Array:
  """Class-dependent hard bootstrapping loss (thesis eq. 10, Reed et al.).

    l(f, 1) = -log σ(f),
    l(f, 0) = -β log(1 - σ(f)) - (1 - β) log σ_ŷ(f),

  where σ_1(f) = σ(f), σ_0(f) = 1 - σ(f) and ŷ = argmax_j σ_j(f) is the
  predicted class (1 iff f > 0; ties go to 0 like ``jnp.argmax``), held
  constant (``stop_gradient``); the gradient flows through log σ_ŷ(f).
  Labels: 1 = labeled positive, 0 = negative or unlabeled. β = 1 gives
  :func:`logistic`.
  """
  _check_labels("bootstrap_hard", labels, where, 2)
  return _binary_loss(_bootstrap_hard_terms, logits, labels, where, (beta,))


# ----------------------------------------------------------------------------
# Multiclass losses.
# ----------------------------------------------------------------------------


def _cross_entropy_terms(log_p, labels, negative_class, class_weights=None):
  del negative_class  # Every class is treated alike.
  return _weighted(-_take(log_p, labels), labels, class_weights)


def softmax_cross_entropy(logits: ArrayLike, labels: ArrayLike,
                          where: Optional[ArrayLike] = None) -> Array:
  """Softmax cross entropy with integer labels (thesis App. B.1).

    l(f, y) = -log σ_y(f).

  Args:
    logits: ``[..., C]``.
    labels: ``[...]`` integers in [0, C).
    where: optional boolean mask ``[...]``; False gives loss and gradient 0.

  Returns:
    ``[...]`` per-element loss (same values as
    ``optax.softmax_cross_entropy_with_integer_labels``).
  """
  _check_multiclass("softmax_cross_entropy", logits, labels, where)
  return _multiclass_loss(_cross_entropy_terms, logits, labels, where, (), 0)


def weighted_softmax_cross_entropy(logits: ArrayLike, labels: ArrayLike,
                                   class_weights: ArrayLike,
                                   where: Optional[ArrayLike] = None) -> Array:
  """Class-weighted cross entropy (thesis eq. 7).

    l(f, y) = -w_y log σ_y(f),

  with ``class_weights`` w of shape ``[C]`` (eq. 7's β for the non-relevant
  class 0 and α_1..α_K for the relevant classes). Labels: integers in [0, C).
  """
  _check_multiclass("weighted_softmax_cross_entropy", logits, labels, where,
                    class_weights)
  return _multiclass_loss(_cross_entropy_terms, logits, labels, where,
                          (class_weights,), 0)


def _softmax_negative_terms(log_p, labels, negative_class, class_weights):
  negative = -jnp.expm1(log_p[..., negative_class])  # 1 - σ_0.
  loss = jnp.where(labels == negative_class, negative, -_take(log_p, labels))
  return _weighted(loss, labels, class_weights)


def softmax_negative(logits: ArrayLike, labels: ArrayLike,
                     negative_class: int = 0,
                     class_weights: Optional[ArrayLike] = None,
                     where: Optional[ArrayLike] = None) -> Array:
  """Class-dependent softmax loss (thesis eq. 9, "softmax loss").

    l(f, y) = 1 - σ_0(f)       if y = 0 (the negative class),
    l(f, y) = -log σ_y(f)      otherwise,

  optionally times ``class_weights[y]`` (shape ``[C]``). Class 0 is
  ``negative_class``: the non-relevant class whose labels are unreliable
  (unlabeled relevant examples carry it). 1 - σ_0 is computed as
  -expm1(log σ_0). With two classes this is :func:`sigmoid_negative` of the
  logit difference f_1 - f_0.
  """
  negative_class = int(negative_class)
  _check_multiclass("softmax_negative", logits, labels, where, class_weights,
                    negative_class)
  return _multiclass_loss(_softmax_negative_terms, logits, labels, where,
                          (class_weights,), negative_class)


def _generalized_softmax_negative_terms(log_p, labels, negative_class, alpha,
                                        beta, gamma):
  # log_softmax(β log_p) = log_softmax(β f): the shift log Σ exp f cancels.
  log_q = jax.nn.log_softmax(beta * log_p, axis=-1)
  others = jnp.arange(log_p.shape[-1]) != negative_class
  log_not_negative = jax.nn.logsumexp(log_q, axis=-1, where=others)  # log(1 - q_0)
  negative = alpha * jnp.exp(gamma * log_not_negative)
  return jnp.where(labels == negative_class, negative, -_take(log_p, labels))


def generalized_softmax_negative(logits: ArrayLike, labels: ArrayLike,
                                 alpha: ArrayLike = 1., beta: ArrayLike = 1.,
                                 gamma: ArrayLike = 1., negative_class: int = 0,
                                 where: Optional[ArrayLike] = None) -> Array:
  """Parametrised softmax loss for the negative class (thesis §6, multiclass).

    l(f, 0) = α (1 - σ_0(β f))^γ,    l(f, y) = -log σ_y(f)   for y ≠ 0,

  with 0 = ``negative_class`` and σ_k the softmax. The multiclass form of
  :func:`generalized_sigmoid_negative`: with two classes, 1 - σ_0(β f) =
  σ(β (f_1 - f_0)), so it equals that loss of the logit difference; α = β =
  γ = 1 gives :func:`softmax_negative` (eq. 9). log(1 - σ_0(β f)) is computed
  as the log-sum-exp of the other classes' log-softmax (no cancellation).
  """
  negative_class = int(negative_class)
  _check_multiclass("generalized_softmax_negative", logits, labels, where, None,
                    negative_class)
  return _multiclass_loss(_generalized_softmax_negative_terms, logits, labels,
                          where, (alpha, beta, gamma), negative_class)


def _softmax_bootstrap_hard_terms(log_p, labels, negative_class, beta):
  predicted = jax.lax.stop_gradient(jnp.argmax(log_p, axis=-1))
  negative = (-beta * log_p[..., negative_class]
              - (1. - beta) * _take(log_p, predicted))
  return jnp.where(labels == negative_class, negative, -_take(log_p, labels))


def softmax_bootstrap_hard(logits: ArrayLike, labels: ArrayLike,
                           beta: ArrayLike = 0.8, negative_class: int = 0,
                           where: Optional[ArrayLike] = None) -> Array:
  """Class-dependent hard bootstrapping loss, multiclass (thesis eq. 11).

    l(f, 0) = -β log σ_0(f) - (1 - β) log σ_ŷ(f),    ŷ = argmax_k σ_k(f),
    l(f, y) = -log σ_y(f)    for y ≠ 0,

  where 0 is ``negative_class`` and ŷ is held constant (``stop_gradient``;
  ties go to the lowest index). β = 1 gives :func:`softmax_cross_entropy`.
  """
  negative_class = int(negative_class)
  _check_multiclass("softmax_bootstrap_hard", logits, labels, where, None,
                    negative_class)
  return _multiclass_loss(_softmax_bootstrap_hard_terms, logits, labels, where,
                          (beta,), negative_class)


# ----------------------------------------------------------------------------
# PU risk estimators (batch level).
# ----------------------------------------------------------------------------


# Surrogate losses ℓ(z) of the PU risks: sigmoid σ(-z) (bounded, Kiryo et
# al.'s default) and logistic log(1 + exp(-z)) (unbounded).
PU_SURROGATES = {"sigmoid": lambda z: jax.nn.sigmoid(-z),
                 "logistic": lambda z: jax.nn.softplus(-z)}


def _surrogate_pair(surrogate: str, f: Array) -> tuple[Array, Array]:
  """(ℓ(f), ℓ(-f)) of ``PU_SURROGATES[surrogate]``, from one exp(-|f|)."""
  log_sigmoid, log_sigmoid_of_minus, sigmoid, sigmoid_of_minus = (
      _sigmoid_parts(f))
  if surrogate == "sigmoid":
    return sigmoid_of_minus, sigmoid
  if surrogate == "logistic":  # softplus(-f) = -log σ(f)
    return -log_sigmoid, -log_sigmoid_of_minus
  loss = PU_SURROGATES[surrogate]
  return loss(f), loss(-f)


def _pu_partial_risks(logits, labels, where, surrogate="sigmoid"):
  """Empirical partial risks with the surrogate ℓ (default sigmoid: σ(-z)).

  Returns (R_p^+, R_p^-, R_u^-, any_bad):
    R_p^+ = Σ_P ℓ(f) / max(1, n_p),   R_p^- = Σ_P ℓ(-f) / max(1, n_p),
    R_u^- = Σ_U ℓ(-f) / max(1, n_u),
  over the labeled positives P (label 1) and unlabeled U (label 0) where
  `where` holds; any_bad flags unmasked out-of-range labels (jit only).
  """
  f, positive, valid, in_range = _binary_inputs(logits, labels, where)
  unlabeled = valid & in_range & ~positive
  n_p = jnp.maximum(1., jnp.sum(positive, dtype=f.dtype))
  n_u = jnp.maximum(1., jnp.sum(unlabeled, dtype=f.dtype))
  loss_as_positive, loss_as_negative = _surrogate_pair(surrogate, f)
  r_p_plus = jnp.sum(jnp.where(positive, loss_as_positive, 0.)) / n_p
  r_p_minus = jnp.sum(jnp.where(positive, loss_as_negative, 0.)) / n_p
  r_u_minus = jnp.sum(jnp.where(unlabeled, loss_as_negative, 0.)) / n_u
  any_bad = jnp.any(valid & ~in_range)
  return r_p_plus, r_p_minus, r_u_minus, any_bad


@jax.jit
def _upu_risk(logits, labels, prior, where):
  r_p_plus, r_p_minus, r_u_minus, any_bad = _pu_partial_risks(logits, labels,
                                                              where)
  risk = prior * r_p_plus + r_u_minus - prior * r_p_minus
  return jnp.where(any_bad, jnp.nan, risk)


def upu_risk(logits: ArrayLike, labels: ArrayLike, prior: ArrayLike,
             where: Optional[ArrayLike] = None) -> Array:
  """Unbiased PU risk (du Plessis et al. 2014/2015), sigmoid surrogate.

    R_upu = π R_p^+ + R_u^- - π R_p^-,

  with ℓ(z) = σ(-z), R_p^± the mean of ℓ(±f) over the labeled positives
  (label 1), R_u^- the mean of ℓ(-f) over the unlabeled (label 0); the means
  divide by max(1, count) and skip elements where `where` is False. π =
  ``prior`` is the positive class prior. Returns a scalar; it can be
  negative (the overfitting nnPU corrects).
  """
  _check_prior("upu_risk", prior)
  _check_labels("upu_risk", labels, where, 2)
  return _upu_risk(logits, labels, prior, where)


def _nnpu_objective(r_p_plus, r_p_minus, r_u_minus, prior, beta, gamma):
  """The nnPU value with Kiryo et al.'s gradient (see :func:`nnpu_risk`)."""
  positive_risk = prior * r_p_plus
  negative_risk = r_u_minus - prior * r_p_minus
  value = positive_risk + jnp.maximum(0., negative_risk)
  descent_objective = jnp.where(negative_risk < -beta, -gamma * negative_risk,
                                positive_risk + negative_risk)
  return descent_objective + jax.lax.stop_gradient(value - descent_objective)


@jax.jit
def _nnpu_risk(logits, labels, prior, beta, gamma, where):
  r_p_plus, r_p_minus, r_u_minus, any_bad = _pu_partial_risks(logits, labels,
                                                              where)
  risk = _nnpu_objective(r_p_plus, r_p_minus, r_u_minus, prior, beta, gamma)
  return jnp.where(any_bad, jnp.nan, risk)


def nnpu_risk(logits: ArrayLike, labels: ArrayLike, prior: ArrayLike,
              beta: ArrayLike = 0., gamma: ArrayLike = 1.,
              where: Optional[ArrayLike] = None) -> Array:
  """Non-negative PU risk (Kiryo et al. 2017), sigmoid surrogate.

  Value (the nnPU risk estimate):

    R_nnpu = π R_p^+ + max(0, R_u^- - π R_p^-),

  with the partial risks of :func:`upu_risk` (labels 1 = labeled positive,
  0 = unlabeled; normalisers max(1, count); `where` respected).

  Gradient (Kiryo et al.'s Algorithm 1): with the negative risk
  r = R_u^- - π R_p^-,

    ∇(π R_p^+ + r)    if r ≥ -β,
    ∇(-γ r)           if r < -β   (descend on -γ r, pushing r back up).

  Both are obtained from one scalar via a stop-gradient trick: the function
  returns ``s + stop_gradient(R_nnpu - s)`` where s is the objective whose
  gradient is wanted, so the value equals R_nnpu (up to float rounding) and
  the gradient is that of s. (Kiryo et al.'s own code reports π R_p^+ - β as
  the value when switched; this returns the estimator itself.)
  """
  _check_prior("nnpu_risk", prior)
  _check_labels("nnpu_risk", labels, where, 2)
  return _nnpu_risk(logits, labels, prior, beta, gamma, where)


@functools.partial(jax.jit, static_argnums=(5, 7))
def _softmax_nnpu_risk(logits, labels, prior, beta, gamma, negative_class, where,
                       surrogate):
  logits, labels, valid, in_range, use = _multiclass_inputs(logits, labels, where)
  num_classes = logits.shape[-1]
  relevant = jnp.arange(num_classes) != negative_class
  z = (jnp.max(jnp.where(relevant, logits, -jnp.inf), axis=-1)
       - logits[..., negative_class])
  log_relevant = jax.nn.logsumexp(logits, axis=-1, where=relevant)
  # Binary PU labels: 1 = labelled relevant, 0 = unlabelled; 2 marks an
  # out-of-range label, which the partial risks flag (NaN) where valid.
  binary = jnp.where(in_range, (labels != negative_class).astype(jnp.int32), 2)
  r_p_plus, r_p_minus, r_u_minus, any_bad = _pu_partial_risks(z, binary, valid,
                                                              surrogate)
  risk = _nnpu_objective(r_p_plus, r_p_minus, r_u_minus, prior, beta, gamma)
  positive = use & (labels != negative_class)
  first_relevant = 1 if negative_class == 0 else 0
  safe_labels = jnp.where(positive, labels, first_relevant)
  cross_entropy = log_relevant - _take(logits, safe_labels)  # -log softmax_rel
  n_p = jnp.maximum(1., jnp.sum(positive, dtype=z.dtype))
  risk = risk + jnp.sum(jnp.where(positive, cross_entropy, 0.)) / n_p
  return jnp.where(any_bad, jnp.nan, risk)


def softmax_nnpu_risk(logits: ArrayLike, labels: ArrayLike, prior: ArrayLike,
                      beta: ArrayLike = 0., gamma: ArrayLike = 1.,
                      negative_class: int = 0, surrogate: str = "sigmoid",
                      where: Optional[ArrayLike] = None) -> Array:
  """Non-negative PU risk for K relevant classes and one non-relevant class.

  An extension of :func:`nnpu_risk` (Kiryo et al. 2017) to the §5.1.2 setup
  (labels 1..K = labelled relevant examples, 0 = ``negative_class`` =
  unlabelled: non-relevant or unlabelled relevant), in two parts:

  1. nnPU on the relevant-vs-non-relevant margin

       z = max_{k≠0} f_k - f_0,

     with the labelled examples as P and label 0 as U: value and gradient
     as :func:`nnpu_risk` (prior π = ``prior``, β, γ), with the surrogate
     ℓ = ``surrogate``: "sigmoid" σ(-z) as in :func:`nnpu_risk`, or
     "logistic" log(1 + exp(-z)), which does not saturate on confidently
     wrong scores (a network that starts out calling everything
     non-relevant still gets a gradient). The argmax of the logits picks a
     relevant class exactly when z > 0, so the usual argmax prediction is
     this binary classifier's decision (with z = log Σ_{k≠0} exp f_k - f_0,
     an example whose relevant mass is spread over several classes would be
     relevant to the loss but non-relevant to the argmax). The gradient of
     the max reaches the largest relevant logit;
  2. plus the cross entropy among the relevant classes on the labelled
     examples, mean over them (normaliser max(1, n_p)):

       (1 / n_p) Σ_{i ∈ P} -log( exp f_{y_i} / Σ_{k≠0} exp f_k ).

  With one relevant class the second part is 0 and, with the sigmoid
  surrogate, this is ``nnpu_risk(f_1 - f_0, labels, prior, beta, gamma)``.
  ``prior`` is the relevant-class prior of the unlabelled (label 0) data,
  as in :func:`nnpu_risk` (see :func:`unlabelled_prior`). Returns a scalar
  (batch level); `where` as for every loss; unmasked out-of-range labels
  give NaN under jit.
  """
  negative_class = int(negative_class)
  if surrogate not in PU_SURROGATES:
    raise ValueError(f"softmax_nnpu_risk: surrogate must be one of "
                     f"{sorted(PU_SURROGATES)}, got {surrogate!r}.")
  _check_prior("softmax_nnpu_risk", prior)
  _check_multiclass("softmax_nnpu_risk", logits, labels, where, None,
                    negative_class)
  if jnp.shape(logits)[-1] < 2:
    raise ValueError("softmax_nnpu_risk: needs at least 2 classes (one relevant "
                     f"and the non-relevant one), got logits of shape "
                     f"{jnp.shape(logits)}.")
  return _softmax_nnpu_risk(logits, labels, prior, beta, gamma, negative_class,
                            where, surrogate)


def unlabelled_prior(num_labelled: float, num_unlabelled: float,
                     labelled_fraction: float) -> float:
  """The positive-class prior of the unlabelled set, from the labelled fraction.

  In the PU setup of §5.1 every positive example is labelled with a known
  probability c = ``labelled_fraction`` and otherwise joins the unlabelled
  set (label 0). The n_L labelled examples are then a fraction c of the
  positives, so n_L (1 - c) / c positives hide among the n_U unlabelled
  examples, and the prior that :func:`nnpu_risk` / :func:`softmax_nnpu_risk`
  need (the positive share of the unlabelled data) is

    π = n_L (1 - c) / (c n_U).

  E.g. half of a balanced set labelled (c = 0.5): π = 1/3.
  """
  if not 0. < labelled_fraction <= 1.:
    raise ValueError(f"unlabelled_prior: labelled_fraction must be in (0, 1], got "
                     f"{labelled_fraction}.")
  if num_labelled <= 0 or num_unlabelled <= 0:
    raise ValueError("unlabelled_prior: needs labelled and unlabelled examples, got "
                     f"num_labelled={num_labelled}, num_unlabelled={num_unlabelled}.")
  prior = num_labelled * (1. - labelled_fraction) / (labelled_fraction * num_unlabelled)
  if not 0. < prior < 1.:
    raise ValueError(
        f"unlabelled_prior: n_L (1 - c) / (c n_U) = {prior:.4g} is not in (0, 1) for "
        f"n_L={num_labelled}, n_U={num_unlabelled}, c={labelled_fraction}; the counts "
        "do not fit this labelled fraction.")
  return float(prior)


# ----------------------------------------------------------------------------
# Helpers.
# ----------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=1)
def _class_balanced_weights(labels, num_classes: int, where) -> Array:
  shape = jnp.broadcast_shapes(labels.shape, *_where_shape(where))
  labels = jnp.broadcast_to(labels, shape)
  use = _valid_mask(where, shape) & (labels >= 0) & (labels < num_classes)
  index = jnp.where(use, labels, num_classes).ravel()
  counts = jnp.bincount(index, length=num_classes + 1)[:num_classes]
  counts = counts.astype(jnp.float32)
  present = counts > 0
  total = jnp.sum(counts)
  num_present = jnp.maximum(1., jnp.sum(present, dtype=jnp.float32))
  return jnp.where(present, total / (num_present * jnp.maximum(counts, 1.)),
                   0.)


def class_balanced_weights(labels: ArrayLike, num_classes: int,
                           where: Optional[ArrayLike] = None) -> Array:
  """Per-class weights inversely proportional to class occurrence (§4).

  The "reweighed ... based on their occurrences in the observed labels" of
  the thesis' implementation details. With n_c the count of class c among
  the valid labels (``where`` True), N = Σ_c n_c and K the number of classes
  with n_c > 0:

    w_c = N / (K n_c)   if n_c > 0,    w_c = 0   otherwise,

  so every present class gets the same total weight N / K and the mean of
  w[label] over the valid elements is exactly 1. With no valid element all
  weights are 0. Feed ``w`` to ``weighted_softmax_cross_entropy`` /
  ``softmax_negative``'s ``class_weights``, or ``w[1], w[0]`` to the binary
  losses' ``positive_weight, negative_weight``.

  Concrete labels outside [0, num_classes) where ``where`` holds raise a
  ValueError; under jit they are not counted.

  Returns:
    float32 ``[num_classes]``.
  """
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError("class_balanced_weights: labels must be integers, got "
                    f"dtype {labels.dtype}.")
  _check_labels("class_balanced_weights", labels, where, num_classes)
  return _class_balanced_weights(labels, int(num_classes), where)


@jax.jit
def masked_mean(values: ArrayLike, where: Optional[ArrayLike] = None) -> Array:
  """Mean of ``values`` over the elements where ``where`` is True.

    mean = Σ_{where} values / max(1, #where),

  so it is 0 (not NaN) when nothing is valid, and masked-out values (even
  NaN) get an exactly zero gradient. ``where=None`` is the plain mean.
  """
  values = jnp.asarray(values)
  if where is None:
    return jnp.mean(values)
  where = jnp.broadcast_to(jnp.asarray(where, dtype=bool),
                           jnp.broadcast_shapes(values.shape, jnp.shape(where)))
  values = jnp.broadcast_to(values, where.shape)
  total = jnp.sum(jnp.where(where, values, 0))
  count = jnp.maximum(1, jnp.sum(where))
  return total / count.astype(total.dtype)


BINARY_LOSSES = ("logistic", "weighted_logistic", "sigmoid_negative",
                 "generalized_sigmoid_negative", "bootstrap_hard")
MULTICLASS_LOSSES = ("softmax_cross_entropy", "weighted_softmax_cross_entropy",
                     "softmax_negative", "generalized_softmax_negative",
                     "softmax_bootstrap_hard")
RISK_ESTIMATORS = ("upu_risk", "nnpu_risk")  # batch level, binary: a scalar.
# Batch level, multiclass (logits [..., C]): a scalar.
MULTICLASS_RISK_ESTIMATORS = ("softmax_nnpu_risk",)


def get(name: str) -> Callable[..., Array]:
  """Returns the loss called ``name`` (one of the names listed below).

  Binary elementwise: ``BINARY_LOSSES``; multiclass elementwise:
  ``MULTICLASS_LOSSES``; batch-level PU risks (scalar): ``RISK_ESTIMATORS``
  (binary) and ``MULTICLASS_RISK_ESTIMATORS``.
  """
  names = (BINARY_LOSSES + MULTICLASS_LOSSES + RISK_ESTIMATORS
           + MULTICLASS_RISK_ESTIMATORS)
  if name not in names:
    raise ValueError(f"Unknown loss {name!r}; valid names: "
                     f"{', '.join(names)}.")
  return globals()[name]
