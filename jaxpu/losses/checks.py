"""Argument checks of the losses, run in Python at trace time.

Every public loss is declared with one of the decorators below, which name
the family (binary or multiclass, elementwise or batch-level risk) and the
valid range of each parameter; the decorated function's body is the formula.
A call then

1. checks the shapes (static, so eager and under ``jax.jit`` alike; chex
   assertions raising ``ValueError``, which ``chex.disable_asserts()`` does
   not switch off): binary losses and risks need
   ``logits.shape == labels.shape``, multiclass ones ``logits.shape[:-1] ==
   labels.shape`` and integer labels, ``where`` the labels' shape,
   ``class_weights`` the shape ``[C]``; nothing is broadcast;
2. checks concrete labels (outside ``jax.jit``): a label outside {0, 1}
   (binary) or ``[0, C)`` (multiclass) where ``where`` holds raises;
3. checks the parameters: each must be a scalar or have a shape that
   broadcasts to the loss' shape without changing it (the labels' shape for
   elementwise losses, ``()`` for the batch-level risks); a concrete value out
   of range raises ``ValueError`` naming it, a traced one cannot be checked
   and makes the whole loss NaN instead (:func:`nan_unless`);
4. runs the body under ``jax.jit`` (``negative_class`` and the names in
   ``static`` are static), so eager calls compile once per input shape and
   the checks cost nothing at run time.

Errors name the loss, the argument, its value or shape, and the fix.
"""

import dataclasses
import functools
import inspect
import math
from typing import Callable, Optional, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

VOID_HINT = ("Mask void labels with where=(labels != 255); binary losses use "
             "0 for negative/unlabeled (the thesis' -1).")
NO_BROADCAST = ("Losses do not broadcast (optax's check_shapes_equal): (N, 1) "
                "against (N,) would silently give an (N, N) loss.")


def is_concrete(*xs) -> bool:
  """True if no leaf of ``xs`` is a tracer (a value known at trace time)."""
  return not any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(xs))


# ----------------------------------------------------------------------------
# Shapes (static: checked at trace time, eager and under jit alike).
# ----------------------------------------------------------------------------


def squeeze_hint(names: tuple[str, str], shapes: tuple[tuple, tuple]) -> str:
  """Suggests ``x[..., 0]`` when one shape is the other plus a trailing 1."""
  (a, b), (a_shape, b_shape) = names, shapes
  if a_shape == b_shape + (1,):
    return f" Drop the trailing axis of 1: {a}[..., 0]."
  if b_shape == a_shape + (1,):
    return f" Drop the trailing axis of 1: {b}[..., 0]."
  return ""


def assert_shape(x, shape: tuple, message: str) -> None:
  """``chex.assert_shape`` of any array-like ``x``, raising ValueError.

  Compared in Python first (cheap), so chex runs only to report a mismatch;
  under ``chex.disable_asserts()`` the ValueError is raised all the same.
  """
  if jnp.shape(x) != shape:
    chex.assert_shape(jax.ShapeDtypeStruct(jnp.shape(x), jnp.bool_),  # stand-in
                      shape, custom_message=message,
                      include_default_message=False, exception_type=ValueError)
    raise ValueError(message)  # chex assertions are disabled.


def check_where_shape(name: str, labels_shape: tuple, where) -> None:
  """``where`` (if given) must have the labels' shape."""
  if where is None:
    return
  where_shape = jnp.shape(where)
  assert_shape(
      where, labels_shape,
      f"{name}: where must have the labels' shape {labels_shape}, got "
      f"{where_shape}." + squeeze_hint(("where", "labels"),
                                       (where_shape, labels_shape))
      + f" {NO_BROADCAST}")


def check_binary_shapes(name: str, logits, labels, where) -> None:
  """Binary losses and risks: logits, labels and where of one shape."""
  logits_shape, labels_shape = jnp.shape(logits), jnp.shape(labels)
  assert_shape(
      logits, labels_shape,
      f"{name}: logits and labels must have the same shape (one logit per "
      f"label), got logits {logits_shape} and labels {labels_shape}."
      + squeeze_hint(("logits", "labels"), (logits_shape, labels_shape))
      + f" {NO_BROADCAST}")
  check_where_shape(name, labels_shape, where)


def check_multiclass_shapes(name: str, logits, labels, where) -> None:
  """Multiclass: ``logits.shape[:-1] == labels.shape == where.shape``."""
  logits_shape, labels_shape = jnp.shape(logits), jnp.shape(labels)
  if not logits_shape:
    raise ValueError(f"{name}: logits need a trailing class axis, got shape "
                     f"{logits_shape}.")
  assert_shape(
      labels, logits_shape[:-1],
      f"{name}: logits [..., C] must be the labels' shape plus a class axis "
      f"(logits.shape[:-1] == labels.shape), got logits {logits_shape} and "
      f"labels {labels_shape}."
      + squeeze_hint(("labels", "logits[..., 0]"),
                     (labels_shape, logits_shape[:-1]))
      + f" {NO_BROADCAST}")
  check_where_shape(name, labels_shape, where)


# ----------------------------------------------------------------------------
# Labels (concrete ones only) and the arguments of each family.
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
  if class_weights is not None:
    assert_shape(class_weights, (num_classes,),
                 f"{name}: class_weights must have shape ({num_classes},), one "
                 f"weight per class, got shape {jnp.shape(class_weights)}.")
  if (isinstance(negative_class, bool) or not isinstance(negative_class, (int, np.integer))
      or not 0 <= negative_class < num_classes):
    raise ValueError(f"{name}: negative_class must be an integer class index in "
                     f"[0, {num_classes}), got {negative_class!r}.")
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


def check_param_shape(name: str, param: str, value, labels_shape: tuple,
                      batch_level: bool) -> None:
  """A parameter must not change the loss' shape by broadcasting.

  Elementwise losses: a scalar or a shape that broadcasts to the labels'
  shape (e.g. one weight per element); batch-level risks: a scalar.
  """
  if isinstance(value, (int, float)):  # The common case, fast.
    return
  shape = jnp.shape(value)
  if batch_level:
    target, what = (), "a scalar (the risk is one number)"
  else:
    target = labels_shape
    what = (f"a scalar or broadcast to the labels' shape {labels_shape} "
            "without changing it")
  if len(shape) <= len(target) and all(
      n in (1, m) for n, m in zip(shape[::-1], target[::-1])):
    return
  message = (f"{name}: {param} must be {what}; got shape {shape} for labels "
             f"of shape {labels_shape}. A broadcasting parameter would change "
             "the loss' shape.")
  chex.assert_is_broadcastable(shape, target, custom_message=message,
                               include_default_message=False,
                               exception_type=ValueError)
  raise ValueError(message)  # chex assertions are disabled.


def check_params(name: str, **params: tuple) -> Optional[Array]:
  """Checks loss parameters' values, given as ``param=(value, interval)``.

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
# The decorators: checks in Python, then the body (the formula) under jit.
# ----------------------------------------------------------------------------


def _bind(name: str, names: tuple, defaults: dict, args: tuple,
          kwargs: dict) -> dict:
  """``inspect.Signature.bind`` with the defaults applied, in a fraction of
  its time (for parameters that are all positional-or-keyword)."""
  if len(args) > len(names):
    raise TypeError(f"{name}() takes {len(names)} positional arguments but "
                    f"{len(args)} were given")
  given = dict(defaults)
  given.update(zip(names, args))
  for key in kwargs:
    if key not in names or key in names[:len(args)]:
      raise TypeError(f"{name}() got an unexpected keyword argument {key!r}"
                      if key not in names else
                      f"{name}() got multiple values for argument {key!r}")
  given.update(kwargs)
  missing = [key for key in names if key not in given]
  if missing:
    raise TypeError(f"{name}() missing required argument(s): "
                    f"{', '.join(missing)}")
  return given


def _checked(formula: Callable, *, multiclass: bool, batch_level: bool,
             static: Sequence[str], params: dict) -> Callable:
  """``formula`` with the checks of the module docstring, jitted.

  ``formula``'s parameters are named by convention: ``logits``, ``labels``,
  ``where``, and for multiclass losses ``class_weights`` (shape ``[C]``)
  and ``negative_class`` (static); ``params`` maps the others to be checked
  to their intervals.
  """
  name = formula.__name__
  names = tuple(inspect.signature(formula).parameters)
  defaults = {key: p.default
              for key, p in inspect.signature(formula).parameters.items()
              if p.default is not inspect.Parameter.empty}
  has_negative_class = "negative_class" in names
  static = tuple(static) + (("negative_class",) if has_negative_class else ())
  jitted = jax.jit(formula, static_argnames=static)

  @functools.wraps(formula)
  def loss(*args, **kwargs):
    given = _bind(name, names, defaults, args, kwargs)
    logits, labels, where = given["logits"], given["labels"], given.get("where")
    if multiclass:
      negative_class = 0
      if has_negative_class:
        negative_class = given["negative_class"]
      check_multiclass(name, logits, labels, where, given.get("class_weights"),
                       negative_class)
      if has_negative_class:
        given["negative_class"] = int(negative_class)  # static: a plain int
    else:
      check_binary(name, logits, labels, where)
    for param in params:  # class_weights: shape [C], checked above.
      if param != "class_weights" and given[param] is not None:
        check_param_shape(name, param, given[param], jnp.shape(labels),
                          batch_level)
    valid = check_params(name, **{param: (given[param], interval)
                                  for param, interval in params.items()})
    # Every argument positional (defaults too: parameters are traced).
    return nan_unless(valid, jitted(*(given[key] for key in names)))

  return loss


def binary_loss(**params: Interval) -> Callable[[Callable], Callable]:
  """Declares an elementwise binary loss and its parameters' ranges."""
  return functools.partial(_checked, multiclass=False, batch_level=False,
                           static=(), params=params)


def multiclass_loss(**params: Interval) -> Callable[[Callable], Callable]:
  """Declares an elementwise multiclass loss and its parameters' ranges.

  ``class_weights`` (if a parameter) must have shape ``[C]``, and
  ``negative_class`` (if a parameter) be an int in ``[0, C)``; it is static.
  """
  return functools.partial(_checked, multiclass=True, batch_level=False,
                           static=(), params=params)


def binary_risk(static: Sequence[str] = (),
                **params: Interval) -> Callable[[Callable], Callable]:
  """Declares a batch-level binary risk (a scalar); ``static``: jit-static."""
  return functools.partial(_checked, multiclass=False, batch_level=True,
                           static=static, params=params)


def multiclass_risk(static: Sequence[str] = (),
                    **params: Interval) -> Callable[[Callable], Callable]:
  """Declares a batch-level multiclass risk (a scalar); see the others."""
  return functools.partial(_checked, multiclass=True, batch_level=True,
                           static=static, params=params)
