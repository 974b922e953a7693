"""Binary losses (thesis §4 eqs. 6, 8, 10, App. B.1 and §6).

One logit f per element and labels in {0, 1}: 1 is a labeled positive
(foreground), 0 a negative or unlabeled example (the thesis writes -1 for our
0); σ is the logistic sigmoid. Each public loss checks its arguments
(``_checks``) and calls one jitted core that holds its formula; the
log σ / σ terms come from :func:`_sigmoid_parts`.
"""

from typing import Optional

import jax
import jax.numpy as jnp

from jaxpu.losses import _checks

Array = jax.Array
ArrayLike = jax.typing.ArrayLike


# ----------------------------------------------------------------------------
# log σ(±f) and σ(±f) from one exp and one log1p, for value and gradient.
# ----------------------------------------------------------------------------


def _sigmoid_parts_and_derivatives(f: Array) -> tuple[tuple, tuple]:
  """The four sigmoid parts of :func:`_sigmoid_parts` and their derivatives."""
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
  """(log σ(f), log σ(-f), σ(f), σ(-f)) from one exp(-|f|) and one log1p.

  Thesis App. B.1's σ, computed stably for any f:

    e = exp(-|f|),    log σ(±f) = -max(∓f, 0) - log1p(e),
    σ(f) = 1 / (1 + e) for f ≥ 0 and e / (1 + e) otherwise,   σ(-f) likewise.

  The custom JVP reuses e for the derivatives, d log σ(f) = σ(-f),
  d log σ(-f) = -σ(f), dσ(f) = σ(f) σ(-f) = -dσ(-f), instead of
  differentiating log1p(exp(·)); value and gradient of every binary loss and
  PU risk thus cost one exp and one log1p per element (benchmarks/README.md).
  Same values as ``jax.nn.log_sigmoid`` / ``jax.nn.sigmoid`` up to float
  rounding; σ(f) σ(-f) keeps the tiny true slope where σ rounds to 1.
  Unused outputs cost nothing under jit.
  """
  return _sigmoid_parts_and_derivatives(f)[0]


@_sigmoid_parts.defjvp
def _sigmoid_parts_jvp(primals, tangents):
  (f,), (t,) = primals, tangents
  parts, derivatives = _sigmoid_parts_and_derivatives(f)
  return parts, tuple(d * t for d in derivatives)


# ----------------------------------------------------------------------------
# The losses: `loss(f, 1)` where the label is 1, `loss(f, 0)` where it is 0.
# ----------------------------------------------------------------------------


@jax.jit
def _logistic(logits, labels, where, positive_weight=1., negative_weight=1.):
  """-α log σ(f) for label 1, -β log σ(-f) for label 0 (eq. 6)."""
  f, positive, valid, in_range = _checks.binary_inputs(logits, labels, where)
  log_sigmoid, log_sigmoid_of_minus, _, _ = _sigmoid_parts(f)
  loss = jnp.where(positive, -positive_weight * log_sigmoid,
                   -negative_weight * log_sigmoid_of_minus)
  return _checks.finish(loss, valid, in_range)


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
  _checks.check_binary("logistic", logits, labels, where)
  return _logistic(logits, labels, where)


def weighted_logistic(logits: ArrayLike, labels: ArrayLike,
                      positive_weight: ArrayLike = 1.,
                      negative_weight: ArrayLike = 1.,
                      where: Optional[ArrayLike] = None) -> Array:
  """Class-weighted logistic loss (thesis eq. 6).

    l(f, 1) = -α log σ(f),    l(f, 0) = -β log(1 - σ(f)),

  with α = ``positive_weight`` and β = ``negative_weight``, both finite and
  ≥ 0. Labels: 1 = positive, 0 = negative/unlabeled (the thesis' -1). With
  α = β = 1 this is ``optax.sigmoid_binary_cross_entropy``. Arguments as in
  :func:`logistic`; a concrete weight out of range raises ValueError, a
  traced one (under jit) makes every element's loss NaN.
  """
  name = "weighted_logistic"
  _checks.check_binary(name, logits, labels, where)
  valid = _checks.check_params(
      name, positive_weight=(positive_weight, _checks.NONNEGATIVE),
      negative_weight=(negative_weight, _checks.NONNEGATIVE))
  return _checks.nan_unless(valid, _logistic(logits, labels, where,
                                             positive_weight, negative_weight))


@jax.jit
def _sigmoid_negative(logits, labels, where, positive_weight, negative_weight):
  """-α log σ(f) for label 1, β σ(f) for label 0 (eq. 8)."""
  f, positive, valid, in_range = _checks.binary_inputs(logits, labels, where)
  log_sigmoid, _, sigmoid, _ = _sigmoid_parts(f)
  loss = jnp.where(positive, -positive_weight * log_sigmoid,
                   negative_weight * sigmoid)
  return _checks.finish(loss, valid, in_range)


def sigmoid_negative(logits: ArrayLike, labels: ArrayLike,
                     positive_weight: ArrayLike = 1.,
                     negative_weight: ArrayLike = 1.,
                     where: Optional[ArrayLike] = None) -> Array:
  """Class-dependent sigmoid loss (thesis eq. 8, "sigmoid loss").

    l(f, 1) = -α log σ(f),    l(f, 0) = β σ(f),

  with α = ``positive_weight`` and β = ``negative_weight``, both finite and
  ≥ 0 (eq. 8 has α = β = 1; the weights implement the class re-weighting of
  §4's implementation details). Labels: 1 = labeled positive, 0 = negative
  or unlabeled. The negative loss saturates at β as f → ∞ and its derivative
  β σ(f)(1 - σ(f)) vanishes (Fig. 2): confident positive predictions on
  unlabeled positives are not punished more than unconfident ones.
  Arguments as in :func:`logistic`; a concrete weight out of range raises
  ValueError, a traced one (under jit) makes every element's loss NaN.
  """
  name = "sigmoid_negative"
  _checks.check_binary(name, logits, labels, where)
  valid = _checks.check_params(
      name, positive_weight=(positive_weight, _checks.NONNEGATIVE),
      negative_weight=(negative_weight, _checks.NONNEGATIVE))
  return _checks.nan_unless(valid, _sigmoid_negative(
      logits, labels, where, positive_weight, negative_weight))


@jax.jit
def _generalized_sigmoid_negative(logits, labels, where, alpha, beta, gamma):
  """-log σ(f) for label 1, α σ(βf)^γ = α exp(γ log σ(βf)) for label 0 (§6)."""
  f, positive, valid, in_range = _checks.binary_inputs(logits, labels, where)
  loss_if_positive = -_sigmoid_parts(f)[0]
  loss_if_negative = alpha * jnp.exp(gamma * _sigmoid_parts(beta * f)[0])
  loss = jnp.where(positive, loss_if_positive, loss_if_negative)
  return _checks.finish(loss, valid, in_range)


def generalized_sigmoid_negative(logits: ArrayLike, labels: ArrayLike,
                                 alpha: ArrayLike = 1., beta: ArrayLike = 1.,
                                 gamma: ArrayLike = 1.,
                                 where: Optional[ArrayLike] = None) -> Array:
  """Parametrised sigmoid loss for the negative class (thesis §6).

    l(f, 1) = -log σ(f),    l(f, 0) = α σ(βf)^γ = α exp(γ log σ(βf)).

  §6 writes α (1 / (1 + exp(βz)))^γ with z the output for the negative class;
  with z = -f that is α σ(βf)^γ. α ≥ 0 scales the loss, β > 0 sets where it
  saturates, γ > 0 where it starts (all finite; β ≤ 0 or γ ≤ 0 would no
  longer give a loss that rises with f). α = β = γ = 1 gives
  :func:`sigmoid_negative`. Labels: 1 = labeled positive, 0 = negative or
  unlabeled. Arguments as in :func:`logistic`; a concrete parameter out of
  range raises ValueError, a traced one (under jit) makes every element's
  loss NaN.
  """
  name = "generalized_sigmoid_negative"
  _checks.check_binary(name, logits, labels, where)
  valid = _checks.check_params(name, alpha=(alpha, _checks.NONNEGATIVE),
                               beta=(beta, _checks.POSITIVE),
                               gamma=(gamma, _checks.POSITIVE))
  return _checks.nan_unless(valid, _generalized_sigmoid_negative(
      logits, labels, where, alpha, beta, gamma))


@jax.jit
def _bootstrap_hard(logits, labels, where, beta):
  """-log σ(f) for label 1, -β log σ(-f) - (1 - β) log σ_ŷ(f) for 0 (eq. 10)."""
  f, positive, valid, in_range = _checks.binary_inputs(logits, labels, where)
  predicted_positive = jax.lax.stop_gradient(f > 0)  # ŷ = 1
  log_sigmoid, log_sigmoid_of_minus, _, _ = _sigmoid_parts(f)
  log_p_hat = jnp.where(predicted_positive, log_sigmoid, log_sigmoid_of_minus)
  loss = jnp.where(positive, -log_sigmoid,
                   -beta * log_sigmoid_of_minus - (1. - beta) * log_p_hat)
  return _checks.finish(loss, valid, in_range)


def bootstrap_hard(logits: ArrayLike, labels: ArrayLike,
                   beta: ArrayLike = 0.8,
                   where: Optional[ArrayLike] = None) -> Array:
  """Class-dependent hard bootstrapping loss (thesis eq. 10, Reed et al.).

    l(f, 1) = -log σ(f),
    l(f, 0) = -β log(1 - σ(f)) - (1 - β) log σ_ŷ(f),

  where σ_1(f) = σ(f), σ_0(f) = 1 - σ(f) and ŷ = argmax_j σ_j(f) is the
  predicted class (1 iff f > 0; ties go to 0 like ``jnp.argmax``), held
  constant (``stop_gradient``); the gradient flows through log σ_ŷ(f).
  β ∈ [0, 1] mixes the label and the prediction; β = 1 gives
  :func:`logistic`. Labels: 1 = labeled positive, 0 = negative or unlabeled.
  Arguments as in :func:`logistic`; a concrete β out of range raises
  ValueError, a traced one (under jit) makes every element's loss NaN.
  """
  name = "bootstrap_hard"
  _checks.check_binary(name, logits, labels, where)
  valid = _checks.check_params(name, beta=(beta, _checks.UNIT))
  return _checks.nan_unless(valid, _bootstrap_hard(logits, labels, where, beta))
