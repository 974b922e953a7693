"""FCN-AlexNet (Long et al. 2015, the FCN reference's `voc-fcn-alexnet`), Figure 10.

Layers (Caffe geometry; `c` = channels × `width`, rounded to an even number):

    conv1  11×11/4, 96c, input padding 100, ReLU; max pool 3/2; LRN(5, 1e-4, 0.75)
    conv2  5×5, 256c, 2 groups, pad 2, ReLU;      max pool 3/2; LRN(5, 1e-4, 0.75)
    conv3  3×3, 384c, pad 1, ReLU
    conv4  3×3, 384c, 2 groups, pad 1, ReLU
    conv5  3×3, 256c, 2 groups, pad 1, ReLU;      max pool 3/2
    fc6    6×6 conv, 4096c, ReLU, dropout 0.5
    fc7    1×1 conv, 4096c, ReLU, dropout 0.5
    score  1×1 conv to the classes
    upscore  63×63 stride-32 transposed conv, bilinear, frozen; crop at offset 18

Max pooling rounds up like Caffe's (ceil mode), which the offset 18 relies on:
the output is exactly the input's height and width for every input size.
Encoder g (eq. 1) = conv1…fc7, head h = score + upscore + crop.

The upscore layer: the reference initialises its C×C×63×63 weights with a
bilinear kernel on the diagonal (class c → class c, zero elsewhere) and freezes
them (`lr_mult: 0`), so it is a fixed per-class bilinear upsampling. Here it is
exactly that, computed from a constant separable kernel: it is not a parameter
at all, so no optimizer (weight decay included) can change it, and the
parameter count is the reference's trainable count.

Initialisation (options): `kernel_init` for conv1…fc7 and `score_init` for
the score layer, by name (`layers.initializer`): `"glorot"` (default, Glorot
uniform), `"caffe_xavier"` (Caffe's `xavier` filler, U(±sqrt(3 / fan_in)),
as the thesis author's from-scratch configurations) or, for the score layer,
`"zeros"` (the reference's `score_fr` has no filler: constant 0).
`score_init=None` follows `kernel_init`. Biases start at 0. ImageNet weights
for conv1…fc7: `jaxpu.models.alexnet_weights`.
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxpu.models import layers

CROP_OFFSET = 18
UPSCORE_KERNEL = 63
UPSCORE_STRIDE = 32


def _channels(base: int, width: float) -> int:
  """`base × width` rounded to an even count (grouped layers need 2 | channels)."""
  return max(2, 2 * int(round(base * width / 2)))


def max_pool_ceil(x, window: int, stride: int):
  """Caffe's max pooling: output size ceil((H - window) / stride) + 1 (NHWC)."""
  pads = []
  for size in x.shape[1:3]:
    out = -(-(size - window) // stride) + 1
    pads.append((0, (out - 1) * stride + window - size))
  return layers.max_pool(x, (window, window), strides=(stride, stride), padding=pads)


def local_response_norm(x, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.):
  """Caffe's across-channel LRN: x / (k + α/n Σ_{|j-i|≤n/2} x_j²)^β (NHWC)."""
  half = size // 2
  sq = jnp.pad(jnp.square(x), [(0, 0)] * 3 + [(half, half)])
  channels = x.shape[-1]
  window_sum = sum(sq[..., i:i + channels] for i in range(size))
  return x * (k + (alpha / size) * window_sum) ** (-beta)


def bilinear_kernel_1d(size: int) -> np.ndarray:
  """The 1-D factor of the FCN reference's bilinear upsampling filter."""
  factor = (size + 1) // 2
  center = factor - 1 if size % 2 == 1 else factor - 0.5
  return (1 - np.abs(np.arange(size) - center) / factor).astype(np.float32)


def bilinear_upsample(x, size: int = UPSCORE_KERNEL, stride: int = UPSCORE_STRIDE,
                      crop_offset: int = 0, output_hw=None):
  """Per-channel transposed convolution with a fixed bilinear kernel (no padding).

  Output size (H - 1) · stride + size, like Caffe's Deconvolution, or
  `output_hw` cropped at (`crop_offset`, `crop_offset`). The 2-D kernel is the
  outer product of `bilinear_kernel_1d`, so it runs as two small matmuls
  (`layers.separable_transposed_conv`; the cropped rows are never computed).
  """
  return layers.separable_transposed_conv(x, bilinear_kernel_1d(size), stride,
                                          crop_offset=crop_offset, output_hw=output_hw)


class AlexNetEncoder(nn.Module):
  """conv1…fc7 of FCN-AlexNet; returns the fc7 features (stride 32)."""
  width: float = 1.0
  dropout_rate: float = 0.5
  dtype: Any = jnp.float32
  kernel_init: str = "glorot"

  @nn.compact
  def __call__(self, x, train: bool = False):
    init = layers.initializer(self.kernel_init)

    def conv(features, kernel, name, padding=0, stride=1, groups=1):
      return nn.Conv(_channels(features, self.width), (kernel, kernel),
                     strides=(stride, stride), padding=[(padding, padding)] * 2,
                     feature_group_count=groups, kernel_init=init,
                     dtype=self.dtype, conv_general_dilated=layers.conv_general_dilated,
                     name=name)

    x = nn.relu(conv(96, 11, "conv1", padding=100, stride=4)(x))
    x = local_response_norm(max_pool_ceil(x, 3, 2))
    x = nn.relu(conv(256, 5, "conv2", padding=2, groups=2)(x))
    x = local_response_norm(max_pool_ceil(x, 3, 2))
    x = nn.relu(conv(384, 3, "conv3", padding=1)(x))
    x = nn.relu(conv(384, 3, "conv4", padding=1, groups=2)(x))
    x = nn.relu(conv(256, 3, "conv5", padding=1, groups=2)(x))
    x = max_pool_ceil(x, 3, 2)
    x = nn.relu(conv(4096, 6, "fc6")(x))
    x = layers.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.relu(conv(4096, 1, "fc7")(x))
    return layers.Dropout(self.dropout_rate, deterministic=not train)(x)


class AlexNetHead(nn.Module):
  """score (1×1 conv) → fixed bilinear upscore → crop to the input size."""
  num_classes: int
  dtype: Any = jnp.float32
  kernel_init: str = "glorot"

  @nn.compact
  def __call__(self, features, output_hw):
    score = nn.Conv(self.num_classes, (1, 1), kernel_init=layers.initializer(self.kernel_init),
                    dtype=self.dtype, name="score")(features)
    # (H - 1) · 32 + 63 ≥ H + 18 always holds with this encoder; the crop checks it.
    return bilinear_upsample(score, crop_offset=CROP_OFFSET, output_hw=output_hw)


class FCNAlexNet(nn.Module):
  """`[B, H, W, 3]` images → `[B, H, W, num_classes]` logits (float32), any H, W ≥ 1.

  `kernel_init`: conv1…fc7's initialiser, `"glorot"` or `"caffe_xavier"`;
  `score_init`: the score layer's, those or `"zeros"` (None: `kernel_init`).
  """
  num_classes: int
  width: float = 1.0
  dropout_rate: float = 0.5
  dtype: Any = jnp.float32
  kernel_init: str = "glorot"
  score_init: Optional[str] = None

  @nn.compact
  def __call__(self, x, train: bool = False):
    if x.ndim != 4:
      raise ValueError(f"fcn_alexnet expects NHWC images, got shape {x.shape}.")
    if self.width <= 0:
      raise ValueError(f"fcn_alexnet: width must be > 0, got {self.width}.")
    if self.kernel_init not in ("glorot", "caffe_xavier"):
      raise ValueError(f"fcn_alexnet: kernel_init must be 'glorot' or 'caffe_xavier', got "
                       f"{self.kernel_init!r}.")
    score_init = self.kernel_init if self.score_init is None else self.score_init
    if score_init not in layers.INITIALIZERS:
      raise ValueError(f"fcn_alexnet: score_init must be one of {list(layers.INITIALIZERS)} "
                       f"or None, got {self.score_init!r}.")
    x = jnp.asarray(x, self.dtype)
    features = AlexNetEncoder(self.width, self.dropout_rate, self.dtype, self.kernel_init,
                              name="encoder")(x, train)
    logits = AlexNetHead(self.num_classes, self.dtype, score_init,
                         name="head")(features, x.shape[1:3])
    return logits.astype(jnp.float32)
