"""Multiclass losses (thesis §4 eqs. 7, 9, 11, App. B.1 and §6).

Logits ``[..., C]`` and integer labels ``[...]`` in ``[0, C)``;
``negative_class`` (default 0) is the non-relevant/background class whose
labels are unreliable, and σ_k is the k-th softmax output. Each public loss
checks its arguments (``_checks``) and calls one jitted core that holds its
formula in terms of log σ = ``jax.nn.log_softmax``
(:func:`_log_softmax_inputs`).
"""

import functools
from typing import Optional

import jax
import jax.numpy as jnp

from jaxpu.losses import _checks

Array = jax.Array
ArrayLike = jax.typing.ArrayLike


def _log_softmax_inputs(logits, labels, where):
  """(log σ, labels, valid, in_range) with unused logits and labels set to 0."""
  logits, labels, valid, in_range, use = _checks.multiclass_inputs(
      logits, labels, where)
  labels = jnp.where(use, labels, 0)
  return jax.nn.log_softmax(logits, axis=-1), labels, valid, in_range


def _take(log_p: Array, index: Array) -> Array:
  """``log_p[..., index]`` per element."""
  return jnp.take_along_axis(log_p, index[..., None], axis=-1)[..., 0]


def _weighted(loss: Array, labels: Array, class_weights) -> Array:
  """``class_weights[labels] * loss``, or ``loss`` if the weights are None."""
  if class_weights is None:
    return loss
  return jnp.asarray(class_weights, loss.dtype)[labels] * loss


@functools.partial(jax.jit, static_argnames="negative_class")
def _cross_entropy(logits, labels, where, class_weights=None, negative_class=0):
  """-w_y log σ_y(f) (eq. 7; w = 1 if ``class_weights`` is None)."""
  del negative_class  # Every class is treated alike.
  log_p, labels, valid, in_range = _log_softmax_inputs(logits, labels, where)
  loss = _weighted(-_take(log_p, labels), labels, class_weights)
  return _checks.finish(loss, valid, in_range)


def softmax_cross_entropy(logits: ArrayLike, labels: ArrayLike,
                          where: Optional[ArrayLike] = None) -> Array:
  """Softmax cross entropy with integer labels (thesis App. B.1).

    l(f, y) = -log σ_y(f).

  Args:
    logits: ``[..., C]``.
    labels: ``[...]`` (``logits.shape[:-1]``) integers in [0, C).
    where: optional boolean mask of the labels' shape; False gives loss and
      gradient 0.

  Returns:
    ``[...]`` per-element loss (same values as
    ``optax.softmax_cross_entropy_with_integer_labels``).

  Raises:
    ValueError: for mismatched shapes or concrete labels outside [0, C).
    TypeError: for non-integer labels.
  """
  _checks.check_multiclass("softmax_cross_entropy", logits, labels, where)
  return _cross_entropy(logits, labels, where, negative_class=0)


def weighted_softmax_cross_entropy(logits: ArrayLike, labels: ArrayLike,
                                   class_weights: ArrayLike,
                                   where: Optional[ArrayLike] = None) -> Array:
  """Class-weighted cross entropy (thesis eq. 7).

    l(f, y) = -w_y log σ_y(f),

  with ``class_weights`` w of shape ``[C]``, each finite and ≥ 0 (eq. 7's β
  for the non-relevant class 0 and α_1..α_K for the relevant classes).
  Arguments as in :func:`softmax_cross_entropy`; concrete weights out of
  range raise ValueError, traced ones (under jit) make every element's loss
  NaN.
  """
  name = "weighted_softmax_cross_entropy"
  _checks.check_multiclass(name, logits, labels, where, class_weights)
  valid = _checks.check_params(
      name, class_weights=(class_weights, _checks.NONNEGATIVE))
  return _checks.nan_unless(valid, _cross_entropy(
      logits, labels, where, class_weights, negative_class=0))


@functools.partial(jax.jit, static_argnames="negative_class")
def _softmax_negative(logits, labels, where, class_weights, negative_class):
  """w_y (1 - σ_0(f)) for y = 0, -w_y log σ_y(f) otherwise (eq. 9)."""
  log_p, labels, valid, in_range = _log_softmax_inputs(logits, labels, where)
  not_negative = -jnp.expm1(log_p[..., negative_class])  # 1 - σ_0
  loss = jnp.where(labels == negative_class, not_negative,
                   -_take(log_p, labels))
  return _checks.finish(_weighted(loss, labels, class_weights), valid, in_range)


def softmax_negative(logits: ArrayLike, labels: ArrayLike,
                     negative_class: int = 0,
                     class_weights: Optional[ArrayLike] = None,
                     where: Optional[ArrayLike] = None) -> Array:
  """Class-dependent softmax loss (thesis eq. 9, "softmax loss").

    l(f, y) = 1 - σ_0(f)       if y = 0 (the negative class),
    l(f, y) = -log σ_y(f)      otherwise,

  optionally times ``class_weights[y]`` (shape ``[C]``, each finite and
  ≥ 0). Class 0 is ``negative_class``: the non-relevant class whose labels
  are unreliable (unlabeled relevant examples carry it). 1 - σ_0 is computed
  as -expm1(log σ_0). With two classes this is :func:`sigmoid_negative` of
  the logit difference f_1 - f_0. Arguments as in
  :func:`softmax_cross_entropy`; concrete weights out of range raise
  ValueError, traced ones (under jit) make every element's loss NaN.
  """
  name = "softmax_negative"
  negative_class = int(negative_class)
  _checks.check_multiclass(name, logits, labels, where, class_weights,
                           negative_class)
  valid = _checks.check_params(
      name, class_weights=(class_weights, _checks.NONNEGATIVE))
  return _checks.nan_unless(valid, _softmax_negative(
      logits, labels, where, class_weights, negative_class=negative_class))


@functools.partial(jax.jit, static_argnames="negative_class")
def _generalized_softmax_negative(logits, labels, where, alpha, beta, gamma,
                                  negative_class):
  """α (1 - σ_0(βf))^γ for y = 0, -log σ_y(f) otherwise (§6)."""
  log_p, labels, valid, in_range = _log_softmax_inputs(logits, labels, where)
  # log_softmax(β log_p) = log_softmax(β f): the shift log Σ exp f cancels.
  log_q = jax.nn.log_softmax(beta * log_p, axis=-1)
  others = jnp.arange(log_p.shape[-1]) != negative_class
  # log(1 - q_0):
  log_not_negative = jax.nn.logsumexp(log_q, axis=-1, where=others)
  negative = alpha * jnp.exp(gamma * log_not_negative)
  loss = jnp.where(labels == negative_class, negative, -_take(log_p, labels))
  return _checks.finish(loss, valid, in_range)


def generalized_softmax_negative(logits: ArrayLike, labels: ArrayLike,
                                 alpha: ArrayLike = 1., beta: ArrayLike = 1.,
                                 gamma: ArrayLike = 1., negative_class: int = 0,
                                 where: Optional[ArrayLike] = None) -> Array:
  """Parametrised softmax loss for the negative class (thesis §6, multiclass).

    l(f, 0) = α (1 - σ_0(β f))^γ,    l(f, y) = -log σ_y(f)   for y ≠ 0,

  with 0 = ``negative_class``, σ_k the softmax, α ≥ 0, β > 0 and γ > 0 (all
  finite, as in :func:`generalized_sigmoid_negative`). The multiclass form
  of :func:`generalized_sigmoid_negative`: with two classes, 1 - σ_0(β f) =
  σ(β (f_1 - f_0)), so it equals that loss of the logit difference; α = β =
  γ = 1 gives :func:`softmax_negative` (eq. 9). log(1 - σ_0(β f)) is computed
  as the log-sum-exp of the other classes' log-softmax (no cancellation).
  Arguments as in :func:`softmax_cross_entropy`; a concrete parameter out of
  range raises ValueError, a traced one (under jit) makes every element's
  loss NaN.
  """
  name = "generalized_softmax_negative"
  negative_class = int(negative_class)
  _checks.check_multiclass(name, logits, labels, where, None, negative_class)
  valid = _checks.check_params(name, alpha=(alpha, _checks.NONNEGATIVE),
                               beta=(beta, _checks.POSITIVE),
                               gamma=(gamma, _checks.POSITIVE))
  return _checks.nan_unless(valid, _generalized_softmax_negative(
      logits, labels, where, alpha, beta, gamma, negative_class=negative_class))


@functools.partial(jax.jit, static_argnames="negative_class")
def _softmax_bootstrap_hard(logits, labels, where, beta, negative_class):
  """-β log σ_0 - (1 - β) log σ_ŷ for y = 0, -log σ_y otherwise (eq. 11)."""
  log_p, labels, valid, in_range = _log_softmax_inputs(logits, labels, where)
  predicted = jax.lax.stop_gradient(jnp.argmax(log_p, axis=-1))  # ŷ
  negative = (-beta * log_p[..., negative_class]
              - (1. - beta) * _take(log_p, predicted))
  loss = jnp.where(labels == negative_class, negative, -_take(log_p, labels))
  return _checks.finish(loss, valid, in_range)


def softmax_bootstrap_hard(logits: ArrayLike, labels: ArrayLike,
                           beta: ArrayLike = 0.8, negative_class: int = 0,
                           where: Optional[ArrayLike] = None) -> Array:
  """Class-dependent hard bootstrapping loss, multiclass (thesis eq. 11).

    l(f, 0) = -β log σ_0(f) - (1 - β) log σ_ŷ(f),    ŷ = argmax_k σ_k(f),
    l(f, y) = -log σ_y(f)    for y ≠ 0,

  where 0 is ``negative_class`` and ŷ is held constant (``stop_gradient``;
  ties go to the lowest index). β ∈ [0, 1]; β = 1 gives
  :func:`softmax_cross_entropy`. Arguments as in
  :func:`softmax_cross_entropy`; a concrete β out of range raises
  ValueError, a traced one (under jit) makes every element's loss NaN.
  """
  name = "softmax_bootstrap_hard"
  negative_class = int(negative_class)
  _checks.check_multiclass(name, logits, labels, where, None, negative_class)
  valid = _checks.check_params(name, beta=(beta, _checks.UNIT))
  return _checks.nan_unless(valid, _softmax_bootstrap_hard(
      logits, labels, where, beta, negative_class=negative_class))
