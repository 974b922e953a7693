"""Optimizers: Adam or Caffe's SGD, per-parameter rates and weight decay, schedules.

Caffe's SGD with momentum μ, fixed rate η, weight decay λ and per-blob
multipliers (`param { lr_mult: a  decay_mult: b }`) is

    V ← μ·V + η·a·(∇ + λ·b·W),    W ← W − V.

optax's `sgd` keeps the trace t ← μ·t + g and steps W ← W − η·t. Here
g = ∇ + λ·b·W (`add_decayed_weights` per parameter, before the optimizer)
and the step is scaled by a afterwards, so W ← W − η·a·t; for a fixed rate
and fixed multipliers V = η·a·t (by induction: η·a·(μ·t + g) = μ·V + η·a·g),
so `make_optimizer("sgd", η, μ, λ, lr_mults=..., wd_mults=...)` is exactly
Caffe's update (Caffe's `lr_policy: "fixed"`, which the FCN reference and the
thesis use). With a varying rate the two differ: optax scales the whole trace
by the current rate, Caffe only the newest gradient.

Multipliers are given big_vision style, as `(regex, multiplier)` pairs
matched with `re.search` against each parameter's `/`-joined path in the
params tree (`"encoder/conv1/kernel"`, `"head/score/bias"`; `param_paths`
lists them): the first matching pattern wins, an unmatched parameter gets 1.
A pattern that matches no parameter at all is an error when the optimizer
state is initialised (a typo must not be silently ignored).
"""

from __future__ import annotations

import functools
import math
import numbers
import re
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import optax

# (regex, multiplier) pairs; `None` as `wd_mults`: today's default, kernels only.
Mults = Optional[Sequence[tuple[str, float]]]


def make_schedule(learning_rate: float, schedule: str = "constant",
                  total_steps: Optional[int] = None, warmup_steps: int = 0) -> optax.Schedule:
  """Learning rate per step: constant or cosine decay to 0, after a linear warm-up from 0."""
  if learning_rate <= 0:
    raise ValueError(f"learning_rate must be > 0, got {learning_rate}.")
  if warmup_steps < 0:
    raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}.")
  if schedule == "constant":
    if not warmup_steps:
      return optax.constant_schedule(learning_rate)
    return optax.join_schedules(
        [optax.linear_schedule(0., learning_rate, warmup_steps),
         optax.constant_schedule(learning_rate)], [warmup_steps])
  if schedule == "cosine":
    if total_steps is None or total_steps <= warmup_steps:
      raise ValueError(f"schedule='cosine' needs total_steps > warmup_steps ({warmup_steps}), "
                       f"got total_steps={total_steps}.")
    return optax.warmup_cosine_decay_schedule(0., learning_rate, warmup_steps, total_steps)
  raise ValueError(f"Unknown schedule {schedule!r}; use 'constant' or 'cosine'.")


# ----------------------------------------------------------------------------
# Per-parameter multipliers.
# ----------------------------------------------------------------------------


def _key_name(key) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def path_name(path) -> str:
  """A `jax.tree_util` key path as the `/`-joined names: `"encoder/conv1/bias"`."""
  return "/".join(_key_name(k) for k in path)


def param_paths(params) -> list[str]:
  """The `/`-joined path of every leaf of `params`, in tree order."""
  return [path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def _compile_mults(mults: Mults, what: str) -> tuple:
  """Validates `(pattern, multiplier)` pairs: `((pattern, compiled, float), ...)`."""
  if mults is None:
    return ()
  if isinstance(mults, (str, bytes)) or not isinstance(mults, Sequence):
    raise ValueError(f"{what} must be a sequence of (regex, multiplier) pairs, got {mults!r}.")
  compiled = []
  for item in mults:
    if isinstance(item, (str, bytes)) or not isinstance(item, Sequence) or len(item) != 2:
      raise ValueError(f"{what}: each entry must be a (regex, multiplier) pair, got {item!r}.")
    pattern, mult = item
    if not isinstance(pattern, str):
      raise ValueError(f"{what}: the pattern of {tuple(item)!r} must be a str, got "
                       f"{type(pattern).__name__}.")
    try:
      regex = re.compile(pattern)
    except re.error as e:
      raise ValueError(f"{what}: pattern {pattern!r} is not a valid regular expression: "
                       f"{e}.") from None
    if (isinstance(mult, bool) or not isinstance(mult, numbers.Real)
        or not math.isfinite(float(mult)) or float(mult) < 0):
      raise ValueError(f"{what}: the multiplier of pattern {pattern!r} must be a finite "
                       f"number >= 0, got {mult!r}.")
    compiled.append((pattern, regex, float(mult)))
  return tuple(compiled)


def _lookup(name: str, compiled: tuple, default: float = 1.) -> float:
  for _, regex, mult in compiled:
    if regex.search(name):
      return mult
  return default


def _mult_tree(tree, compiled: tuple):
  """Python-float multiplier per leaf of `tree` (static: resolved at trace time)."""
  return jax.tree_util.tree_map_with_path(lambda p, _: _lookup(path_name(p), compiled), tree)


def resolve_mults(params, mults: Mults, what: str = "mults") -> Any:
  """The multiplier of every parameter (a tree of floats like `params`).

  `mults`: `(regex, multiplier)` pairs, first match wins, unmatched 1.0.
  Raises ValueError for invalid pairs and for a pattern that matches no
  parameter (naming it and listing parameter paths).
  """
  compiled = _compile_mults(mults, what)
  _check_all_match(params, compiled, what)
  return _mult_tree(params, compiled)


def _check_all_match(params, compiled: tuple, what: str) -> None:
  names = param_paths(params)
  for pattern, regex, _ in compiled:
    if not any(regex.search(n) for n in names):
      shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
      raise ValueError(f"{what} pattern {pattern!r} matches no parameter (re.search on the "
                       f"'/'-joined paths); the {len(names)} parameters are: {shown}.")


def _kernels_only(params):
  """The default weight-decay mask: matrices and conv kernels, not biases (ndim > 1)."""
  return jax.tree.map(lambda p: jnp.ndim(p) > 1, params)


def _add_decayed_weights_per_param(weight_decay: float,
                                   compiled: tuple) -> optax.GradientTransformation:
  """g ← g + weight_decay · mult · w, mult per parameter (0: the leaf is left as it is)."""

  def init(params):
    del params
    return optax.EmptyState()

  def update(updates, state, params=None):
    if params is None:
      raise ValueError(optax.NO_PARAMS_MSG)
    factors = _mult_tree(params, compiled)
    updates = jax.tree.map(lambda g, w, f: g if f == 0 else g + (weight_decay * f) * w,
                           updates, params, factors)
    return updates, state

  return optax.GradientTransformation(init, update)


def _scale_per_param(compiled: tuple) -> optax.GradientTransformation:
  """update ← mult · update per parameter; mult 0 gives an exactly zero update."""

  def init(params):
    del params
    return optax.EmptyState()

  def update(updates, state, params=None):
    del params
    factors = _mult_tree(updates, compiled)
    updates = jax.tree.map(
        lambda u, f: u if f == 1 else (jnp.zeros_like(u) if f == 0 else u * f),
        updates, factors)
    return updates, state

  return optax.GradientTransformation(init, update)


def make_optimizer(name: str = "adam", learning_rate: float = 1e-3, momentum: float = 0.9,
                   weight_decay: float = 0., schedule: str = "constant",
                   total_steps: Optional[int] = None, warmup_steps: int = 0,
                   lr_mults: Mults = (), wd_mults: Mults = None
                   ) -> optax.GradientTransformation:
  """Adam or SGD with momentum, L2 weight decay and learning rate per parameter, a schedule.

  Weight decay is Caffe's: `weight_decay · wd_mult · w` added to the gradient
  before the optimizer, for both `adam` and `sgd`; the optimizer's step of a
  parameter is then multiplied by its `lr_mult`. With `name="sgd"` and a
  constant schedule this is exactly Caffe's SGD solver with `lr_mult` and
  `decay_mult` (module docstring); with Adam `lr_mult` scales Adam's step.

  Multipliers: `(regex, multiplier)` pairs, `re.search`-ed against each
  parameter's `/`-joined path (`"encoder/conv1/bias"`, `"head/score/kernel"`),
  first match wins, unmatched parameters get 1. Every pattern must match
  some parameter (checked by `init`, which names the pattern and lists the
  paths); multipliers are finite and >= 0. E.g. the FCN reference's score
  layer, `lr_mults=((r"^head/score/bias$", 2.),)`,
  `wd_mults=((r"^head/score/bias$", 0.),)`.

  Args:
    name: `"adam"` (§5.1.2: Adam, 1e-4) or `"sgd"` (FCN: SGD, momentum 0.9,
      weight decay 5e-4).
    learning_rate: the base (peak) learning rate.
    momentum: SGD momentum (ignored by Adam); 0: plain SGD.
    weight_decay: L2 coefficient λ.
    schedule: `"constant"` or `"cosine"` (decay to 0 at `total_steps`).
    total_steps: needed by `"cosine"`.
    warmup_steps: linear warm-up from 0 over this many steps.
    lr_mults: learning-rate multipliers (Caffe's `lr_mult`); 0 freezes a
      parameter (its update is exactly 0, weight decay included). Default
      `()`: 1 everywhere, and no transformation is added.
    wd_mults: weight-decay multipliers (Caffe's `decay_mult`). Default
      `None`: decay on every leaf with ndim > 1 (kernels and matrices), none
      on biases — for every `jaxpu.models` model the same as
      `((r"/bias$", 0.),)` — and the optax chain is exactly
      `chain(add_decayed_weights(λ, mask), opt)`. A sequence (even `()`):
      unmatched parameters, biases included, decay with multiplier 1, as
      Caffe's default `decay_mult: 1`.

  Returns:
    The optax transformation. With the default multipliers it is exactly
    `opt` (λ = 0) or `chain(add_decayed_weights(λ, mask=ndim > 1), opt)`,
    `opt = adam(schedule)` or `sgd(schedule, momentum)`.
  """
  if schedule == "constant":
    total_steps = None  # unused: runs of other lengths share the optimizer (and the step)
  args = (name, learning_rate, momentum, weight_decay, schedule, total_steps, warmup_steps,
          lr_mults, wd_mults)
  try:
    hash(args)
  except TypeError:  # e.g. multipliers given as lists: built anew, not cached
    return _build_optimizer(*args)
  return _cached_optimizer(_types(args), *args)


def _types(value):
  """The types inside nested tuples, so cache keys that compare equal but differ in type
  (`(("x", 1),)` and `(("x", True),)`: True == 1) stay apart and each is validated."""
  return tuple(map(_types, value)) if isinstance(value, tuple) else type(value)


def _build_optimizer(name, learning_rate, momentum, weight_decay, schedule, total_steps,
                     warmup_steps, lr_mults, wd_mults) -> optax.GradientTransformation:
  """`make_optimizer`'s transformation, built anew."""
  lr = make_schedule(learning_rate, schedule, total_steps, warmup_steps)
  if name == "adam":
    opt = optax.adam(lr)
  elif name == "sgd":
    opt = optax.sgd(lr, momentum=momentum or None)
  else:
    raise ValueError(f"Unknown optimizer {name!r}; use 'adam' or 'sgd'.")
  if weight_decay < 0:
    raise ValueError(f"weight_decay must be >= 0, got {weight_decay}.")
  lr_compiled = _compile_mults(lr_mults, "lr_mults")
  wd_compiled = _compile_mults(wd_mults, "wd_mults")
  if weight_decay:
    if wd_mults is None:
      opt = optax.chain(optax.add_decayed_weights(weight_decay, mask=_kernels_only), opt)
    else:
      opt = optax.chain(_add_decayed_weights_per_param(weight_decay, wd_compiled), opt)
  if lr_compiled:
    opt = optax.chain(opt, _scale_per_param(lr_compiled))
  if not (lr_compiled or wd_compiled):
    return opt

  inner = opt

  def init(params):
    _check_all_match(params, lr_compiled, "lr_mults")
    _check_all_match(params, wd_compiled, "wd_mults")
    return inner.init(params)

  return optax.GradientTransformation(init, inner.update)


# The same optimizer object for the same arguments: the jitted train step takes the
# optimizer as a static argument (`jaxpu.train.steps`), hashed by the identity of its
# functions, so a fresh optimizer per run would make JAX trace and lower the step again
# (~0.5 s per smoke-scale run). The transformation is a pure function of exactly these
# arguments (it keeps no state), so equal arguments of the same types (`_types`: 1, 1.0
# and True apart, also inside the multiplier pairs) give an equivalent one.
@functools.lru_cache(maxsize=64)
def _cached_optimizer(types, *args) -> optax.GradientTransformation:
  del types  # part of the cache key only
  return _build_optimizer(*args)
