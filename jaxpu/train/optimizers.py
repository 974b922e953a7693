"""Optimizers: Adam or Caffe's SGD, L2 weight decay on kernels, learning-rate schedules.

Caffe's SGD with momentum μ, fixed rate η and weight decay λ is

    V ← μ·V + η·(∇ + λ·W),    W ← W − V

with the decay only where `decay_mult` is 1 (kernels, not biases). optax's
`sgd` keeps the trace t ← μ·t + g and steps W ← W − η·t; for a fixed rate
V = η·t, so `make_optimizer("sgd", η, μ, λ)` is exactly Caffe's update (Caffe's
`lr_policy: "fixed"`, which the FCN reference and the thesis use). With a
varying rate the two differ: optax scales the whole trace by the current rate,
Caffe only the newest gradient.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import optax


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


def _kernels_only(params):
  """Weight-decay mask: matrices and conv kernels, not biases (Caffe's decay_mult 0)."""
  return jax.tree.map(lambda p: jnp.ndim(p) > 1, params)


def _biases_only(params):
  """The complement of `_kernels_only`: biases (and any other vector or scalar)."""
  return jax.tree.map(lambda p: jnp.ndim(p) <= 1, params)


def make_optimizer(name: str = "adam", learning_rate: float = 1e-3, momentum: float = 0.9,
                   weight_decay: float = 0., schedule: str = "constant",
                   total_steps: Optional[int] = None, warmup_steps: int = 0,
                   bias_lr_mult: float = 1.) -> optax.GradientTransformation:
  """Adam or SGD with momentum, with optional L2 weight decay and a schedule.

  Weight decay is Caffe's: `weight_decay · w` added to the gradient of every
  kernel (not biases) before the optimizer, for both `adam` and `sgd`. With
  `name="sgd"` and a constant schedule this is exactly Caffe's SGD solver
  (module docstring).

  Args:
    name: `"adam"` (§5.1.2: Adam, 1e-4) or `"sgd"` (FCN: SGD, momentum 0.9,
      weight decay 5e-4).
    learning_rate: the base (peak) learning rate.
    momentum: SGD momentum (ignored by Adam); 0: plain SGD.
    weight_decay: L2 coefficient.
    schedule: `"constant"` or `"cosine"` (decay to 0 at `total_steps`).
    total_steps: needed by `"cosine"`.
    warmup_steps: linear warm-up from 0 over this many steps.
    bias_lr_mult: the biases' learning rate is `bias_lr_mult × learning_rate`
      (Caffe's `lr_mult: 2` on biases in the FCN reference; default 1).
  """
  lr = make_schedule(learning_rate, schedule, total_steps, warmup_steps)
  if name == "adam":
    opt = optax.adam(lr)
  elif name == "sgd":
    opt = optax.sgd(lr, momentum=momentum or None)
  else:
    raise ValueError(f"Unknown optimizer {name!r}; use 'adam' or 'sgd'.")
  if weight_decay < 0:
    raise ValueError(f"weight_decay must be >= 0, got {weight_decay}.")
  if bias_lr_mult <= 0:
    raise ValueError(f"bias_lr_mult must be > 0, got {bias_lr_mult}.")
  if weight_decay:
    opt = optax.chain(optax.add_decayed_weights(weight_decay, mask=_kernels_only), opt)
  if bias_lr_mult != 1:
    opt = optax.chain(opt, optax.masked(optax.scale(bias_lr_mult), _biases_only))
  return opt
