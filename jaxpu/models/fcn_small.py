"""A compact fully-convolutional network for CPU-sized segmentation runs.

FCN-AlexNet's geometry (stride 32, a 6×6 fc6, input padding 100) is slow on a
CPU even when narrow; this network keeps the FCN recipe (conv encoder, 1×1
score layer, upsampling back to the input size) at a size that trains in
minutes on 2 cores (about 1000 training images per second at 32×32):

    stage1  3×3 16c, ReLU; 3×3 16c, ReLU; 2×2 max pool
    stage2  3×3 32c, ReLU; 3×3 32c, ReLU; 2×2 max pool
    stage3  3×3 64c, ReLU; 3×3 64c, ReLU; 2×2 max pool      (stride 8)
    conv4   3×3 128c, ReLU (+ dropout)
    conv5   1×1 128c, ReLU (+ dropout)
    score   1×1 to the classes; bilinear resize to the input size

(`c` = `width`; 'same' padding.) Encoder g (eq. 1) = stage1…conv5, head h =
score + resize, as in FCN-AlexNet, so the same transfer path applies.
Glorot-uniform initialisation (§5.3.2).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpu.models import layers


def _channels(base: int, width: float) -> int:
  return max(1, int(round(base * width)))


class SmallEncoder(nn.Module):
  """Three conv stages (stride 8) then a 3×3 and a 1×1 conv of 128c channels."""
  width: float = 1.0
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    def conv(features, kernel, name):
      return nn.Conv(_channels(features, self.width), (kernel, kernel), padding="SAME",
                     kernel_init=nn.initializers.xavier_uniform(), dtype=self.dtype, name=name)

    for stage, features in enumerate((16, 32, 64), start=1):
      x = nn.relu(conv(features, 3, f"conv{stage}_1")(x))
      x = nn.relu(conv(features, 3, f"conv{stage}_2")(x))
      x = layers.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
    x = nn.relu(conv(128, 3, "conv4")(x))
    x = layers.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.relu(conv(128, 1, "conv5")(x))
    return layers.Dropout(self.dropout_rate, deterministic=not train)(x)


class SmallHead(nn.Module):
  """1×1 score layer, then bilinear resize to `output_hw`."""
  num_classes: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features, output_hw):
    score = nn.Conv(self.num_classes, (1, 1), kernel_init=nn.initializers.xavier_uniform(),
                    dtype=self.dtype, name="score")(features)
    shape = (score.shape[0], *output_hw, score.shape[-1])
    return jax.image.resize(score, shape, method="bilinear")


class FCNSmall(nn.Module):
  """`[B, H, W, 3]` images → `[B, H, W, num_classes]` logits (float32)."""
  num_classes: int
  width: float = 1.0
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    if x.ndim != 4:
      raise ValueError(f"fcn_small expects NHWC images, got shape {x.shape}.")
    if self.width <= 0:
      raise ValueError(f"fcn_small: width must be > 0, got {self.width}.")
    x = jnp.asarray(x, self.dtype)
    features = SmallEncoder(self.width, self.dropout_rate, self.dtype, name="encoder")(x, train)
    logits = SmallHead(self.num_classes, self.dtype, name="head")(features, x.shape[1:3])
    return logits.astype(jnp.float32)
