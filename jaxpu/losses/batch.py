"""Batch-level helpers: the masked mean and class-balanced weights (§4)."""

import functools
from typing import Optional

import jax
import jax.numpy as jnp

from jaxpu.losses import checks
from jaxpu.losses import common

Array = jax.Array
ArrayLike = jax.typing.ArrayLike


@functools.partial(jax.jit, static_argnums=1)
def _class_balanced_weights(labels, num_classes: int, where) -> Array:
  """w_c = N / (K n_c) for the K classes present, 0 for the others."""
  use = (common.valid_mask(where, labels.shape) & (labels >= 0)
         & (labels < num_classes))
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

  ``where`` must have the labels' shape. Concrete labels outside
  [0, num_classes) where ``where`` holds raise a ValueError; under jit they
  are not counted.

  Returns:
    float32 ``[num_classes]``.
  """
  name = "class_balanced_weights"
  labels = jnp.asarray(labels)
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f"{name}: labels must be integers, got dtype "
                    f"{labels.dtype}.")
  checks.check_where_shape(name, labels.shape, where)
  checks.check_labels(name, labels, where, num_classes)
  return _class_balanced_weights(labels, int(num_classes), where)


@jax.jit
def masked_mean(values: ArrayLike, where: Optional[ArrayLike] = None) -> Array:
  """Mean of ``values`` over the elements where ``where`` is True.

    mean = Σ_{where} values / max(1, #where),

  so it is 0 (not NaN) when nothing is valid, and masked-out values (even
  NaN) get an exactly zero gradient. ``where=None`` is the plain mean.
  ``where`` must have the values' shape (ValueError otherwise, naming both:
  a mask of another shape would silently broadcast, (N, 1) against (N,)
  averaging an (N, N) array).
  """
  values = jnp.asarray(values)
  if where is None:
    return jnp.mean(values)
  checks.assert_shape(
      where, values.shape,
      f"masked_mean: where of shape {jnp.shape(where)} must have the values' "
      f"shape {values.shape}." + checks.squeeze_hint(
          ("where", "values"), (jnp.shape(where), values.shape)))
  where = jnp.asarray(where, dtype=bool)
  total = jnp.sum(jnp.where(where, values, 0))
  count = jnp.maximum(1, jnp.sum(where))
  return total / count.astype(total.dtype)
