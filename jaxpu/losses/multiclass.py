"""Multiclass losses (thesis §4 eqs. 7, 9, 11, App. B.1 and §6).

Logits ``[..., C]`` and integer labels ``[...]`` in ``[0, C)``;
``negative_class`` (default 0) is the non-relevant/background class whose
labels are unreliable, and σ_k is the k-th softmax output. Each loss is its
formula in terms of log σ = ``jax.nn.log_softmax`` (of logits whose ±inf
are clipped, :func:`~jaxpu.losses.common.clip_infinite`); its decorator
(:mod:`~jaxpu.losses.checks`) checks the arguments and jits it.
"""

from typing import Optional

import jax
import jax.numpy as jnp

from jaxpu.losses import checks
from jaxpu.losses import common
from jaxpu.losses.common import take_class

Array = jax.Array
ArrayLike = jax.typing.ArrayLike


def log_softmax(logits: Array) -> Array:
  """log σ_k(f) over the last axis (``jax.nn.log_softmax``)."""
  return jax.nn.log_softmax(logits, axis=-1)


@checks.multiclass_loss()
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
  x = common.multiclass_inputs(logits, labels, where)
  return x.finish(-take_class(log_softmax(x.logits), x.labels))


@checks.multiclass_loss(class_weights=checks.NONNEGATIVE)
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
  x = common.multiclass_inputs(logits, labels, where)
  w = jnp.asarray(class_weights, x.logits.dtype)
  return x.finish(w[x.labels] * -take_class(log_softmax(x.logits), x.labels))


@checks.multiclass_loss(class_weights=checks.NONNEGATIVE)
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
  x = common.multiclass_inputs(logits, labels, where)
  log_p = log_softmax(x.logits)
  not_negative = -jnp.expm1(log_p[..., negative_class])  # 1 - σ_0
  loss = jnp.where(x.labels == negative_class, not_negative,
                   -take_class(log_p, x.labels))
  if class_weights is not None:
    loss = jnp.asarray(class_weights, loss.dtype)[x.labels] * loss
  return x.finish(loss)


@checks.multiclass_loss(alpha=checks.NONNEGATIVE, beta=checks.POSITIVE,
                        gamma=checks.POSITIVE)
def generalized_softmax_negative(logits: ArrayLike, labels: ArrayLike,
                                 alpha: ArrayLike = 1., beta: ArrayLike = 1.,
                                 gamma: ArrayLike = 1., negative_class: int = 0,
                                 where: Optional[ArrayLike] = None) -> Array:
  """Parametrised softmax loss for the negative class (thesis §6, multiclass).

    l(f, 0) = α (1 - σ_0(β f))^γ,    l(f, y) = -log σ_y(f)   for y ≠ 0,

  with 0 = ``negative_class``, σ_k the softmax, α ≥ 0, β > 0 and γ > 0 (all
  finite, scalars or arrays that broadcast to the labels' shape, as in
  :func:`generalized_sigmoid_negative`). The multiclass form of
  :func:`generalized_sigmoid_negative`: with two classes, 1 - σ_0(β f) =
  σ(β (f_1 - f_0)), so it equals that loss of the logit difference;
  α = β = γ = 1 gives :func:`softmax_negative` (eq. 9). log(1 - σ_0(β f)) is
  computed as the log-sum-exp of the other classes' log-softmax (no
  cancellation). Arguments as in :func:`softmax_cross_entropy`; a concrete
  parameter out of range raises ValueError, a traced one (under jit) makes
  every element's loss NaN.
  """
  x = common.multiclass_inputs(logits, labels, where)
  log_p = log_softmax(x.logits)
  # log_softmax(β log_p) = log_softmax(β f): the shift log Σ exp f cancels.
  beta = beta if jnp.ndim(beta) == 0 else jnp.expand_dims(beta, -1)  # [..., 1]
  log_q = log_softmax(beta * log_p)
  others = jnp.arange(log_p.shape[-1]) != negative_class
  log_not_negative = jax.nn.logsumexp(  # log(1 - q_0), -inf log q_k clipped
      common.clip_infinite(log_q), axis=-1, where=others)
  negative = alpha * jnp.exp(gamma * log_not_negative)
  loss = jnp.where(x.labels == negative_class, negative,
                   -take_class(log_p, x.labels))
  return x.finish(loss)


@checks.multiclass_loss(beta=checks.UNIT)
def softmax_bootstrap_hard(logits: ArrayLike, labels: ArrayLike,
                           beta: ArrayLike = 0.8, negative_class: int = 0,
                           where: Optional[ArrayLike] = None) -> Array:
  """Class-dependent hard bootstrapping loss, multiclass (thesis eq. 11).

    l(f, 0) = -β log σ_0(f) - (1 - β) log σ_ŷ(f),    ŷ = argmax_k σ_k(f),
    l(f, y) = -log σ_y(f)    for y ≠ 0,

  where 0 is ``negative_class`` and ŷ is held constant (``stop_gradient``;
  ties go to the lowest index). β ∈ [0, 1] (a scalar or an array that
  broadcasts to the labels' shape); β = 1 gives
  :func:`softmax_cross_entropy`. Arguments as in
  :func:`softmax_cross_entropy`; a concrete β out of range raises
  ValueError, a traced one (under jit) makes every element's loss NaN.
  """
  x = common.multiclass_inputs(logits, labels, where)
  log_p = log_softmax(x.logits)
  predicted = jax.lax.stop_gradient(jnp.argmax(log_p, axis=-1))  # ŷ
  negative = (-beta * log_p[..., negative_class]
              - (1. - beta) * take_class(log_p, predicted))
  loss = jnp.where(x.labels == negative_class, negative,
                   -take_class(log_p, x.labels))
  return x.finish(loss)
