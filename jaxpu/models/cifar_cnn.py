"""The 8-layer CNN of Table 6 (Appendix C.1) for the CIFAR PU experiment (§5.1.2).

    conv1  3×3 32, LeakyReLU(0.2); 3×3 32, LeakyReLU(0.2); 2×2 max pool; dropout 0.2
    conv2  3×3 64, LeakyReLU(0.2); 3×3 64, LeakyReLU(0.2); 2×2 max pool; dropout 0.2
    conv3  3×3 128, LeakyReLU(0.2); 3×3 128, LeakyReLU(0.2); 2×2 max pool; dropout 0.2
    fc     flatten, 512-d fc, ReLU, dropout 0.5
    out    11-d fc (softmax in the loss)

'same' padding, so 32×32 inputs give 16/8/4 spatial sizes as in the table and
1,341,739 parameters with 11 classes. Encoder g = conv1…fc, head h = the output
layer. Weights use Glorot-uniform initialisation (Keras' default, §5.3.2).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxpu.models import layers


class CifarEncoder(nn.Module):
  """Three conv pairs + pool + dropout, then the 512-d fully-connected layer."""
  dtype: Any = jnp.float32
  conv_dropout: float = 0.2
  fc_dropout: float = 0.5

  @nn.compact
  def __call__(self, x, train: bool = False):
    init = nn.initializers.xavier_uniform()
    for stage, features in enumerate((32, 64, 128), start=1):
      for j in (1, 2):
        x = nn.Conv(features, (3, 3), padding="SAME", kernel_init=init, dtype=self.dtype,
                    name=f"conv{stage}_{j}")(x)
        x = nn.leaky_relu(x, negative_slope=0.2)
      x = layers.max_pool(x, (2, 2), strides=(2, 2))
      x = layers.Dropout(self.conv_dropout, deterministic=not train)(x)
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(512, kernel_init=init, dtype=self.dtype, name="fc")(x))
    return layers.Dropout(self.fc_dropout, deterministic=not train)(x)


class CifarCNN(nn.Module):
  """`[B, 32, 32, 3]` images → `[B, num_classes]` logits (float32)."""
  num_classes: int = 11
  dtype: Any = jnp.float32
  conv_dropout: float = 0.2
  fc_dropout: float = 0.5

  @nn.compact
  def __call__(self, x, train: bool = False):
    if x.ndim != 4:
      raise ValueError(f"cifar_cnn expects NHWC images, got shape {x.shape}.")
    x = jnp.asarray(x, self.dtype)
    features = CifarEncoder(self.dtype, self.conv_dropout, self.fc_dropout,
                            name="encoder")(x, train)
    logits = nn.Dense(self.num_classes, kernel_init=nn.initializers.xavier_uniform(),
                      dtype=self.dtype, name="head")(features)
    return logits.astype(jnp.float32)
