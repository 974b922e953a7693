"""Argument checks and input sanitising shared by the losses.

Two halves (optax's ``check_shapes_equal``, chex style):

* At trace time, in Python: shapes (always static), and labels and loss
  parameters when they are concrete (Python/NumPy values, or arrays outside
  ``jax.jit``). A bad argument raises ``ValueError``/``TypeError`` naming the
  argument, its value or shape, and the fix. Nothing runs at run time.
* Under ``jax.jit``/``vmap`` labels and parameters may be traced and cannot
  be checked. Their traced stand-ins never give a plausible number: an
  unmasked out-of-range label makes its element's loss NaN (:func:`finish`),
  an out-of-range traced parameter the whole loss (:func:`nan_unless`).
"""

import dataclasses
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

VOID_HINT = ("Mask void labels with where=(labels != 255); binary losses use "
             "0 for negative/unlabeled (the thesis' -1).")
_NO_BROADCAST = ("Losses do not broadcast (optax's check_shapes_equal): (N, 1) "
                 "against (N,) would silently give an (N, N) loss.")


def is_concrete(*xs) -> bool:
  """True if no leaf of ``xs`` is a tracer (a value known at trace time)."""
  return not any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(xs))


# ----------------------------------------------------------------------------
# Shapes (static: checked at trace time, eager and under jit alike).
# ----------------------------------------------------------------------------


def _squeeze_hint(names: tuple[str, str], shapes: tuple[tuple, tuple]) -> str:
  """Suggests ``x[..., 0]`` when one shape is the other plus a trailing 1."""
  (a, b), (a_shape, b_shape) = names, shapes
  if a_shape == b_shape + (1,):
    return f" Drop the trailing axis of 1: {a}[..., 0]."
  if b_shape == a_shape + (1,):
    return f" Drop the trailing axis of 1: {b}[..., 0]."
  return ""


def check_where_shape(name: str, labels_shape: tuple, where) -> None:
  """``where`` (if given) must have the labels' shape."""
  if where is not None and jnp.shape(where) != labels_shape:
    where_shape = jnp.shape(where)
    raise ValueError(
        f"{name}: where must have the labels' shape {labels_shape}, got "
        f"{where_shape}." + _squeeze_hint(("where", "labels"),
                                          (where_shape, labels_shape))
        + f" {_NO_BROADCAST}")


def check_binary_shapes(name: str, logits, labels, where) -> None:
  """Binary losses and risks: logits, labels and where of one shape."""
  logits_shape, labels_shape = jnp.shape(logits), jnp.shape(labels)
  if logits_shape != labels_shape:
    raise ValueError(
        f"{name}: logits and labels must have the same shape (one logit per "
        f"label), got logits {logits_shape} and labels {labels_shape}."
        + _squeeze_hint(("logits", "labels"), (logits_shape, labels_shape))
        + f" {_NO_BROADCAST}")
  check_where_shape(name, labels_shape, where)


def check_multiclass_shapes(name: str, logits, labels, where) -> None:
  """Multiclass: ``logits.shape[:-1] == labels.shape == where.shape``."""
  logits_shape, labels_shape = jnp.shape(logits), jnp.shape(labels)
  if not logits_shape:
    raise ValueError(f"{name}: logits need a trailing class axis, got shape "
                     f"{logits_shape}.")
  if logits_shape[:-1] != labels_shape:
    raise ValueError(
        f"{name}: logits [..., C] must be the labels' shape plus a class axis "
        f"(logits.shape[:-1] == labels.shape), got logits {logits_shape} and "
        f"labels {labels_shape}."
        + _squeeze_hint(("labels", "logits[..., 0]"),
                        (labels_shape, logits_shape[:-1]))
        + f" {_NO_BROADCAST}")
  check_where_shape(name, labels_shape, where)


# ----------------------------------------------------------------------------
# Labels (concrete ones only) and the multiclass arguments.
# ----------------------------------------------------------------------------


def check_labels(name: str, labels, where, num_classes: int) -> None:
  """Raises ValueError for concrete labels outside [0, num_classes)."""
  if not is_concrete(labels, where):
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
        f"{shown}{more} at {int(bad.sum())} element(s). {VOID_HINT}")


def check_binary(name: str, logits, labels, where) -> None:
  """Shapes and (concrete) labels of a binary loss or risk."""
  check_binary_shapes(name, logits, labels, where)
  check_labels(name, labels, where, 2)


def check_multiclass(name: str, logits, labels, where,
                     class_weights=None, negative_class: int = 0) -> None:
  """Shapes, label dtype and values, class weights' shape, negative class."""
  check_multiclass_shapes(name, logits, labels, where)
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
  check_labels(name, labels, where, num_classes)


# ----------------------------------------------------------------------------
# Loss parameters: raise if concrete, NaN loss if traced.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Interval:
  """The valid range of a loss parameter. NaN is in no interval."""
  low: float
  high: float
  closed_low: bool
  closed_high: bool
  description: str

  def contains(self, x):
    """Elementwise membership, for NumPy and jax arrays alike."""
    above = x >= self.low if self.closed_low else x > self.low
    below = x <= self.high if self.closed_high else x < self.high
    return above & below

  def __str__(self) -> str:
    return (f"{self.description}, i.e. in {'[' if self.closed_low else '('}"
            f"{self.low:g}, {self.high:g}{']' if self.closed_high else ')'}")


NONNEGATIVE = Interval(0., math.inf, True, False, "finite and >= 0")
POSITIVE = Interval(0., math.inf, False, False, "finite and > 0")
UNIT = Interval(0., 1., True, True, "between 0 and 1")
OPEN_UNIT = Interval(0., 1., False, False, "strictly between 0 and 1")


def check_params(name: str, **params: tuple) -> Optional[Array]:
  """Checks loss parameters, given as ``param=(value, interval)``.

  A concrete value (scalar or array; ``None`` is skipped) with an element
  outside its interval raises ValueError naming the parameter, the value and
  the valid range.

  Returns:
    None if every value is concrete (then all are valid); otherwise a traced
    boolean scalar, True iff every traced value lies in its interval, for
    :func:`nan_unless`.
  """
  traced_valid = None
  for param, (value, interval) in params.items():
    if value is None:
      continue
    if is_concrete(value):
      if isinstance(value, (int, float)):  # The common case, without NumPy.
        valid = interval.contains(float(value))
      else:
        value = np.asarray(value, dtype=np.float64)
        valid = np.all(interval.contains(value))
        value = value.tolist()
      if not valid:
        raise ValueError(f"{name}: {param} must be {interval}; got {value}.")
      continue
    valid = jnp.all(interval.contains(jnp.asarray(value)))
    traced_valid = valid if traced_valid is None else traced_valid & valid
  return traced_valid


def nan_unless(valid: Optional[Array], loss: Array) -> Array:
  """``loss`` where ``valid`` (or if it is None), NaN otherwise.

  The select is exact for valid parameters, and so is its gradient: the
  cotangent passes through unchanged (``where(True, g, 0) == g``).
  """
  if valid is None:
    return loss
  return jnp.where(valid, loss, jnp.nan)


# ----------------------------------------------------------------------------
# Input sanitising inside the jitted cores: the traced half of the label check.
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


def binary_inputs(logits, labels, where):
  """Sanitised binary inputs (shapes already checked equal).

  Returns:
    (f, positive, valid, in_range): float logits that are 0 wherever they
    will not be used, a boolean "label is 1" array, the `where` mask and the
    in-range mask {0, 1}.
  """
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  logits = logits.astype(compute_dtype(logits.dtype))
  valid = valid_mask(where, labels.shape)
  in_range = (labels == 0) | (labels == 1)
  use = valid & in_range
  f = jnp.where(use, logits, 0.0)
  positive = use & (labels == 1)
  return f, positive, valid, in_range


def multiclass_inputs(logits, labels, where):
  """Sanitised multiclass inputs (shapes already checked).

  Returns:
    (logits, labels, valid, in_range, use): float logits ``[..., C]`` that are
    0 wherever they will not be used, the labels, the `where` mask, the
    in-range mask [0, C) and ``use = valid & in_range``.
  """
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  logits = logits.astype(compute_dtype(logits.dtype))
  valid = valid_mask(where, labels.shape)
  in_range = (labels >= 0) & (labels < logits.shape[-1])
  use = valid & in_range
  logits = jnp.where(use[..., None], logits, 0.0)
  return logits, labels, valid, in_range, use
