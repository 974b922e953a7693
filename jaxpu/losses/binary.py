"""Binary losses (thesis §4 eqs. 6, 8, 10, App. B.1 and §6).

One logit f per element and labels in {0, 1}: 1 is a labeled positive
(foreground), 0 a negative or unlabeled example (the thesis writes -1 for our
0); σ is the logistic sigmoid. Each loss is its formula: ``l(f, 1)`` where
the label is 1, ``l(f, 0)`` where it is 0, from the log σ / σ terms of
:func:`~jaxpu.losses.common.sigmoid_parts`. Its decorator
(:mod:`~jaxpu.losses.checks`) checks the arguments and jits it.
"""

from typing import Optional

import jax
import jax.numpy as jnp

from jaxpu.losses import checks
from jaxpu.losses import common
from jaxpu.losses.common import sigmoid_parts

Array = jax.Array
ArrayLike = jax.typing.ArrayLike


@checks.binary_loss()
def logistic(logits: ArrayLike, labels: ArrayLike,
             where: Optional[ArrayLike] = None) -> Array:
  """Logistic loss (binary cross entropy, thesis App. B.1).

    l(f, 1) = -log σ(f),    l(f, 0) = -log(1 - σ(f)) = -log σ(-f).

  Args:
    logits: ``[...]`` one logit f per element.
    labels: ``[...]`` (the logits' shape) in {0, 1}; 1 = positive, 0 =
      negative/unlabeled.
    where: optional boolean mask of the labels' shape; False gives loss and
      gradient 0.

  Returns:
    Per-element loss of the labels' shape, float32 (or wider).

  Raises:
    ValueError: for mismatched shapes or concrete labels outside {0, 1}.
  """
  x = common.binary_inputs(logits, labels, where)
  log_sigmoid, log_sigmoid_of_minus, _, _ = sigmoid_parts(x.logits)
  return x.finish(jnp.where(x.positive, -log_sigmoid, -log_sigmoid_of_minus))


@checks.binary_loss(positive_weight=checks.NONNEGATIVE,
                    negative_weight=checks.NONNEGATIVE)
def weighted_logistic(logits: ArrayLike, labels: ArrayLike,
                      positive_weight: ArrayLike = 1.,
                      negative_weight: ArrayLike = 1.,
                      where: Optional[ArrayLike] = None) -> Array:
  """Class-weighted logistic loss (thesis eq. 6).

    l(f, 1) = -α log σ(f),    l(f, 0) = -β log(1 - σ(f)),

  with α = ``positive_weight`` and β = ``negative_weight``, both finite and
  ≥ 0, scalars or arrays that broadcast to the labels' shape. Labels: 1 =
  positive, 0 = negative/unlabeled (the thesis' -1). With α = β = 1 this is
  ``optax.sigmoid_binary_cross_entropy``. Arguments as in :func:`logistic`;
  a concrete weight out of range raises ValueError, a traced one (under jit)
  makes every element's loss NaN.
  """
  x = common.binary_inputs(logits, labels, where)
  log_sigmoid, log_sigmoid_of_minus, _, _ = sigmoid_parts(x.logits)
  return x.finish(jnp.where(x.positive, -positive_weight * log_sigmoid,
                            -negative_weight * log_sigmoid_of_minus))


@checks.binary_loss(positive_weight=checks.NONNEGATIVE,
                    negative_weight=checks.NONNEGATIVE)
def sigmoid_negative(logits: ArrayLike, labels: ArrayLike,
                     positive_weight: ArrayLike = 1.,
                     negative_weight: ArrayLike = 1.,
                     where: Optional[ArrayLike] = None) -> Array:
  """Class-dependent sigmoid loss (thesis eq. 8, "sigmoid loss").

    l(f, 1) = -α log σ(f),    l(f, 0) = β σ(f),

  with α = ``positive_weight`` and β = ``negative_weight``, both finite and
  ≥ 0, scalars or arrays that broadcast to the labels' shape (eq. 8 has
  α = β = 1; the weights implement the class re-weighting of §4's
  implementation details). Labels: 1 = labeled positive, 0 = negative or
  unlabeled. The negative loss saturates at β as f → ∞ and its derivative
  β σ(f)(1 - σ(f)) vanishes (Fig. 2): confident positive predictions on
  unlabeled positives are not punished more than unconfident ones.
  Arguments as in :func:`logistic`; a concrete weight out of range raises
  ValueError, a traced one (under jit) makes every element's loss NaN.
  """
  x = common.binary_inputs(logits, labels, where)
  log_sigmoid, _, sigmoid, _ = sigmoid_parts(x.logits)
  return x.finish(jnp.where(x.positive, -positive_weight * log_sigmoid,
                            negative_weight * sigmoid))


@checks.binary_loss(alpha=checks.NONNEGATIVE, beta=checks.POSITIVE,
                    gamma=checks.POSITIVE)
def generalized_sigmoid_negative(logits: ArrayLike, labels: ArrayLike,
                                 alpha: ArrayLike = 1., beta: ArrayLike = 1.,
                                 gamma: ArrayLike = 1.,
                                 where: Optional[ArrayLike] = None) -> Array:
  """Parametrised sigmoid loss for the negative class (thesis §6).

    l(f, 1) = -log σ(f),    l(f, 0) = α σ(βf)^γ = α exp(γ log σ(βf)).

  §6 writes α (1 / (1 + exp(βz)))^γ with z the output for the negative class;
  with z = -f that is α σ(βf)^γ. α ≥ 0 scales the loss, β > 0 sets where it
  saturates, γ > 0 where it starts (all finite, scalars or arrays that
  broadcast to the labels' shape; β ≤ 0 or γ ≤ 0 would no longer give a
  loss that rises with f). α = β = γ = 1 gives :func:`sigmoid_negative`.
  Labels: 1 = labeled positive, 0 = negative or unlabeled. Arguments as in
  :func:`logistic`; a concrete parameter out of range raises ValueError, a
  traced one (under jit) makes every element's loss NaN.
  """
  x = common.binary_inputs(logits, labels, where)
  loss_if_positive = -sigmoid_parts(x.logits)[0]
  loss_if_negative = alpha * jnp.exp(gamma * sigmoid_parts(beta * x.logits)[0])
  return x.finish(jnp.where(x.positive, loss_if_positive, loss_if_negative))


@checks.binary_loss(beta=checks.UNIT)
def bootstrap_hard(logits: ArrayLike, labels: ArrayLike,
                   beta: ArrayLike = 0.8,
                   where: Optional[ArrayLike] = None) -> Array:
  """Class-dependent hard bootstrapping loss (thesis eq. 10, Reed et al.).

    l(f, 1) = -log σ(f),
    l(f, 0) = -β log(1 - σ(f)) - (1 - β) log σ_ŷ(f),

  where σ_1(f) = σ(f), σ_0(f) = 1 - σ(f) and ŷ = argmax_j σ_j(f) is the
  predicted class (1 iff f > 0; ties go to 0 like ``jnp.argmax``), held
  constant (``stop_gradient``); the gradient flows through log σ_ŷ(f).
  β ∈ [0, 1] (a scalar or an array that broadcasts to the labels' shape)
  mixes the label and the prediction; β = 1 gives :func:`logistic`. Labels:
  1 = labeled positive, 0 = negative or unlabeled. Arguments as in
  :func:`logistic`; a concrete β out of range raises ValueError, a traced
  one (under jit) makes every element's loss NaN.
  """
  x = common.binary_inputs(logits, labels, where)
  predicted_positive = jax.lax.stop_gradient(x.logits > 0)  # ŷ = 1
  log_sigmoid, log_sigmoid_of_minus, _, _ = sigmoid_parts(x.logits)
  log_p_hat = jnp.where(predicted_positive, log_sigmoid, log_sigmoid_of_minus)
  return x.finish(jnp.where(
      x.positive, -log_sigmoid,
      -beta * log_sigmoid_of_minus - (1. - beta) * log_p_hat))
