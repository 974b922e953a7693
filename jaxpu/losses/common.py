"""Traced building blocks of the losses' formulas.

* :func:`binary_inputs` / :func:`multiclass_inputs`: the inputs of a loss
  body, made safe before any arithmetic (logits and labels replaced by 0
  wherever ``where`` is False or the label is out of range, logits upcast to
  at least float32, multiclass ±inf logits clipped by :func:`clip_infinite`),
  and their ``finish`` method, which sets the masked-out elements to exactly
  0 and the unmasked out-of-range ones to NaN;
* :func:`sigmoid_parts`: log σ(±f) and σ(±f) from one exp and one log1p, for
  the binary losses and the PU risks;
* :func:`clip_infinite`: ±inf logits of the softmax losses made finite
  (with a straight-through derivative), so that their values are finite,
  never NaN, and their gradients the limits;
* :func:`take_class`: ``values[..., index]`` per element.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


# ----------------------------------------------------------------------------
# Inputs made safe, and the `where` / out-of-range-label convention.
# ----------------------------------------------------------------------------


def compute_dtype(dtype) -> jnp.dtype:
  """At least float32 (bfloat16/float16 logits are upcast)."""
  return jnp.promote_types(dtype, jnp.float32)


def valid_mask(where, shape) -> Array:
  """``where`` as booleans, all True if None."""
  if where is None:
    return jnp.ones(shape, dtype=bool)
  return jnp.broadcast_to(jnp.asarray(where, dtype=bool), shape)


def finish(loss: Array, valid: Array, in_range: Array) -> Array:
  """0 where masked out, NaN for unmasked out-of-range labels (jit only)."""
  nan_or_zero = jnp.where(valid, jnp.nan, 0.0).astype(loss.dtype)
  return jnp.where(valid & in_range, loss, nan_or_zero)


class BinaryInputs(NamedTuple):
  """A binary loss' inputs; see :func:`binary_inputs`."""
  logits: Array    # f, at least float32; 0 wherever it is not used
  positive: Array  # label 1 (and used)
  valid: Array     # `where`
  in_range: Array  # label in {0, 1}

  def finish(self, loss: Array) -> Array:
    """``loss`` with 0 where masked out and NaN for bad unmasked labels."""
    return finish(loss, self.valid, self.in_range)


def binary_inputs(logits, labels, where) -> BinaryInputs:
  """Safe binary inputs (shapes already checked equal)."""
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  logits = logits.astype(compute_dtype(logits.dtype))
  valid = valid_mask(where, labels.shape)
  in_range = (labels == 0) | (labels == 1)
  use = valid & in_range
  f = jnp.where(use, logits, 0.0)
  positive = use & (labels == 1)
  return BinaryInputs(f, positive, valid, in_range)


class MulticlassInputs(NamedTuple):
  """A multiclass loss' inputs; see :func:`multiclass_inputs`."""
  logits: Array    # [..., C], at least float32; 0 wherever not used
  labels: Array    # [...], 0 wherever not used (safe indices)
  valid: Array     # `where`
  in_range: Array  # label in [0, C)
  use: Array       # valid & in_range

  def finish(self, loss: Array) -> Array:
    """``loss`` with 0 where masked out and NaN for bad unmasked labels."""
    return finish(loss, self.valid, self.in_range)


def multiclass_inputs(logits, labels, where,
                      clip: bool = True) -> MulticlassInputs:
  """Safe multiclass inputs (shapes already checked).

  ``clip=False`` leaves ±inf logits as they are, for a loss that clips
  (:func:`clip_infinite`) only the few quantities that need it.
  """
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  logits = logits.astype(compute_dtype(logits.dtype))
  valid = valid_mask(where, labels.shape)
  in_range = (labels >= 0) & (labels < logits.shape[-1])
  use = valid & in_range
  logits = jnp.where(use[..., None], clip_infinite(logits) if clip else logits,
                     0.0)
  labels = jnp.where(use, labels, 0)
  return MulticlassInputs(logits, labels, valid, in_range, use)


# ----------------------------------------------------------------------------
# log σ(±f) and σ(±f) from one exp and one log1p, for value and gradient.
# ----------------------------------------------------------------------------


def _sigmoid_parts_and_derivatives(f: Array) -> tuple[tuple, tuple]:
  """The four parts of :func:`sigmoid_parts` and their derivatives."""
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
def sigmoid_parts(f: Array) -> tuple[Array, Array, Array, Array]:
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
  At f = ±∞ the parts are their limits (log σ(-∞) = -∞) and the derivatives
  finite. Unused outputs cost nothing under jit.
  """
  return _sigmoid_parts_and_derivatives(f)[0]


@sigmoid_parts.defjvp
def _sigmoid_parts_jvp(primals, tangents):
  (f,), (t,) = primals, tangents
  parts, derivatives = _sigmoid_parts_and_derivatives(f)
  return parts, tuple(d * t for d in derivatives)


# ----------------------------------------------------------------------------
# Infinite logits of the softmax losses.
# ----------------------------------------------------------------------------


@jax.custom_jvp
def clip_infinite(x: Array) -> Array:
  """x clipped to ±B, B = a quarter of the largest finite value of x's dtype.

  For the softmax losses' ±inf logits (B ≈ 8.5e37 in float32): finite x
  below B in magnitude are unchanged, bit for bit, NaN stays NaN, and the
  derivative is 1 everywhere (straight through), so the gradient at ±inf is
  the limit of the gradient. ``jax.nn.log_softmax`` of clipped logits never
  computes ∞ - ∞ (and differences of two of them cannot overflow): a +inf
  logit takes the whole softmax mass, several +inf logits share it (they
  tie, as do all -inf), and a log-probability that would be -inf is about
  -B instead, so a log-loss that would be +inf is finite (about B).
  """
  bound = jnp.asarray(jnp.finfo(x.dtype).max / 4, x.dtype)
  return jax.lax.clamp(-bound, x, bound)  # One operation, NaN kept.


@clip_infinite.defjvp
def _clip_infinite_jvp(primals, tangents):
  return clip_infinite(*primals), tangents[0]


def take_class(values: Array, index: Array) -> Array:
  """``values[..., index]`` per element (``values [..., C]``, ``index [...]``)."""
  return jnp.take_along_axis(values, index[..., None], axis=-1)[..., 0]
