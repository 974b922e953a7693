"""The multilayer perceptron of §5.1.1 (two hidden layers of six units).

The thesis trains it on two interleaving half circles ("two moons") to draw
the decision boundaries of Figure 3. Encoder g (eq. 1) = the hidden layers,
head h = the output layer: 1 logit for a binary model (`num_classes=1`),
`num_classes` logits otherwise. The thesis does not name the activation;
ReLU is the default (`activation="tanh"` or `"sigmoid"` are the alternatives).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxpu.models import layers

_ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh, "sigmoid": nn.sigmoid}


class MLPEncoder(nn.Module):
  """Dense → activation (→ dropout), once per entry of `hidden`."""
  hidden: Sequence[int] = (6, 6)
  activation: str = "relu"
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    act = _ACTIVATIONS[self.activation]
    for i, units in enumerate(self.hidden):
      x = act(nn.Dense(units, kernel_init=nn.initializers.xavier_uniform(),
                       dtype=self.dtype, name=f"dense{i + 1}")(x))
      x = layers.Dropout(self.dropout_rate, deterministic=not train)(x)
    return x


class MLP(nn.Module):
  """`[B, D]` features → `[B, num_classes]` logits (float32)."""
  num_classes: int
  hidden: Sequence[int] = (6, 6)
  activation: str = "relu"
  dropout_rate: float = 0.0  # not in §5.1.1; off by default
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.activation not in _ACTIVATIONS:
      raise ValueError(f"mlp: unknown activation {self.activation!r}; "
                       f"use one of {sorted(_ACTIVATIONS)}.")
    if x.ndim != 2:
      raise ValueError(f"mlp expects [batch, features] inputs, got shape {x.shape}.")
    x = jnp.asarray(x, self.dtype)
    features = MLPEncoder(tuple(self.hidden), self.activation, self.dropout_rate, self.dtype,
                          name="encoder")(x, train)
    logits = nn.Dense(self.num_classes, kernel_init=nn.initializers.xavier_uniform(),
                      dtype=self.dtype, name="head")(features)
    return logits.astype(jnp.float32)
