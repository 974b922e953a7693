"""Drop-in formulations of layers whose training step is much faster on XLA's CPU backend.

Each computes the same function as the usual formulation (noted per
function); only how XLA runs it, and so the speed, differs
(benchmarks/README.md, "Where the time goes"):

- `max_pool`: `flax.linen.max_pool` as the running maximum of the window's
  strided slices. In JAX 0.10 the derivative of `reduce_window(max)` builds
  one int32 index array per input dimension (`iota`, as large as the input),
  reduces (value, index) tuples and scatters the cotangent back: about 20 %
  of the Table 6 CNN's training step on a CPU. The derivative of
  `jnp.maximum` is elementwise and fuses with its neighbours.
- `conv_general_dilated`: `jax.lax.conv_general_dilated` with two cases
  rewritten. Grouped convolutions (`feature_group_count > 1`) run as one
  convolution per group: XLA's CPU backend turns the weight gradient of a
  grouped convolution into a dilated 3-D convolution 10-30× slower than the
  per-group ones. Convolutions whose output is no larger than their window
  (FCN's fc6: a 6×6 window on an 8×8 map) run as patches × matmul: XLA swaps
  the operands of their input gradient and computes it with a naive loop
  (1-2 GFLOP/s). Pass it to Flax: `nn.Conv(...,
  conv_general_dilated=layers.conv_general_dilated)` (same parameters).
- `separable_transposed_conv`: a per-channel transposed convolution with a
  fixed separable kernel (FCN's bilinear upsampling) as two small matmuls
  with the interpolation matrices, optionally cropped. As a depthwise
  convolution with a 32× dilated input it was most of FCN-AlexNet's step.
- `Dropout` / `dropout_mask`: `flax.linen.Dropout` with its Bernoulli mask
  drawn from a counter-based integer hash (two 32-bit multiply-xorshift
  rounds, seeded by 64 bits from the layer's key) instead of
  `jax.random.bernoulli`. XLA's CPU expansion of the `rbg` key's
  RngBitGenerator (Philox) costs ≈ 25 ns per element: 25 ms for the mask of
  a [128, 16, 16, 32] activation on one core; the hash takes 0.5 ms. The
  Table 6 CNN's train step gains ≈ 7 % (one core, 251 vs 235 images per
  CPU-second). Masks differ from Flax's (another random stream), with the
  same distribution.

Also `initializer`: kernel initialisers by name (Glorot's, Caffe's `xavier`
filler, zeros), for models whose initialisation is a config option.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Padding = Union[str, Sequence[tuple[int, int]]]


INITIALIZERS = ("glorot", "caffe_xavier", "zeros")


def initializer(name: str) -> nn.initializers.Initializer:
  """A kernel initialiser by name (kernels `[kh, kw, in / groups, out]` or `[in, out]`).

  - `"glorot"`: Glorot & Bengio's uniform U(±sqrt(6 / (fan_in + fan_out))),
    `flax.linen.initializers.xavier_uniform` (jaxpu's default);
  - `"caffe_xavier"`: Caffe's `xavier` filler with its default
    `variance_norm: FAN_IN`, U(±sqrt(3 / fan_in)), fan_in = count / num_output
    = kh · kw · in_channels / groups (variance 1 / fan_in);
  - `"zeros"`: constant 0 (Caffe's default `constant` filler, e.g. the FCN
    reference's `score_fr`, which has no `weight_filler`).
  """
  if name == "glorot":
    return nn.initializers.xavier_uniform()
  if name == "caffe_xavier":
    return nn.initializers.variance_scaling(1.0, "fan_in", "uniform")
  if name == "zeros":
    return nn.initializers.zeros_init()
  raise ValueError(f"Unknown initializer {name!r}; use one of {list(INITIALIZERS)}.")


def _lowest(dtype):
  if jnp.issubdtype(dtype, jnp.floating):
    return -jnp.inf
  return jnp.iinfo(dtype).min


def max_pool(x: jax.Array, window_shape: Sequence[int], strides: Sequence[int] | None = None,
             padding: Padding = "VALID") -> jax.Array:
  """Max pooling over the spatial axes of an NHWC (or `[..., H, W, C]`) array.

    y[..., i, j, c] = max_{0 ≤ p < kh, 0 ≤ q < kw} x[..., i·sh + p, j·sw + q, c]

  with `x` padded by the lowest value of its dtype. Same arguments and
  output as `flax.linen.max_pool` for 2-D windows.

  Args:
    x: `[..., H, W, C]`.
    window_shape: `(kh, kw)`.
    strides: `(sh, sw)`; defaults to `(1, 1)` like Flax.
    padding: "VALID", "SAME", or `((top, bottom), (left, right))`.
  """
  if len(window_shape) != 2:
    raise ValueError(f"max_pool takes a 2-D window (kh, kw), got {tuple(window_shape)}.")
  if x.ndim < 3:
    raise ValueError(f"max_pool expects [..., H, W, C] inputs, got shape {x.shape}.")
  strides = tuple(strides) if strides is not None else (1, 1)
  if len(strides) != 2:
    raise ValueError(f"max_pool takes 2-D strides (sh, sw), got {strides}.")
  spatial = x.shape[-3:-1]
  if isinstance(padding, str):
    pads = jax.lax.padtype_to_pads(spatial, tuple(window_shape), strides, padding)
  else:
    pads = [tuple(p) for p in padding]
    if len(pads) != 2:
      raise ValueError(f"max_pool padding needs two (low, high) pairs, got {padding!r}.")
  if any(p != (0, 0) for p in pads):
    widths = [(0, 0)] * (x.ndim - 3) + list(pads) + [(0, 0)]
    x = jnp.pad(x, widths, constant_values=_lowest(x.dtype))
  size = x.shape[-3:-1]
  out_shape = [(n - k) // s + 1 for n, k, s in zip(size, window_shape, strides)]
  if min(out_shape) < 1:
    raise ValueError(f"max_pool window {tuple(window_shape)} is larger than the padded input "
                     f"{tuple(size)}.")
  lead = x.ndim - 3
  out = None
  for p in range(window_shape[0]):
    for q in range(window_shape[1]):
      start = (0,) * lead + (p, q, 0)
      limit = x.shape[:lead] + (p + (out_shape[0] - 1) * strides[0] + 1,
                                q + (out_shape[1] - 1) * strides[1] + 1, x.shape[-1])
      window = jax.lax.slice(x, start, limit, (1,) * lead + tuple(strides) + (1,))
      out = window if out is None else jnp.maximum(out, window)
  return out


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
  """`jax.lax.conv_general_dilated`, with feature groups computed one group at a time.

  For `feature_group_count = G > 1` the input features and the kernel's
  output features are split into G consecutive blocks, block g of the output
  is the convolution of input block g with kernel block g, and the blocks
  are concatenated: exactly the grouped convolution's definition (and its
  parameter layout, `[..., in / G, out]`). Other cases call
  `jax.lax.conv_general_dilated` unchanged.
  """
  conv = jax.lax.conv_general_dilated
  kwargs = dict(lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
                batch_group_count=batch_group_count, precision=precision,
                preferred_element_type=preferred_element_type)
  if feature_group_count == 1:
    if _use_patches(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                    dimension_numbers, batch_group_count, preferred_element_type):
      return _patches_conv(lhs, rhs, window_strides, padding, precision)
    return conv(lhs, rhs, window_strides, padding, dimension_numbers=dimension_numbers,
                feature_group_count=1, **kwargs)
  if batch_group_count != 1:
    raise ValueError("conv_general_dilated: feature and batch groups together are not "
                     "supported.")
  dn = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  in_axis, kernel_out_axis, out_axis = dn.lhs_spec[1], dn.rhs_spec[0], dn.out_spec[1]
  groups = feature_group_count
  if lhs.shape[in_axis] % groups or rhs.shape[kernel_out_axis] % groups:
    raise ValueError(f"feature_group_count={groups} must divide the input features "
                     f"({lhs.shape[in_axis]}) and the output features "
                     f"({rhs.shape[kernel_out_axis]}).")
  inputs = jnp.split(lhs, groups, axis=in_axis)
  kernels = jnp.split(rhs, groups, axis=kernel_out_axis)
  outputs = [conv(x, k, window_strides, padding, dimension_numbers=dn, feature_group_count=1,
                  **kwargs) for x, k in zip(inputs, kernels)]
  return jnp.concatenate(outputs, axis=out_axis)


_NHWC = ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))  # lhs, rhs, out specs of NHWC/HWIO/NHWC


def _use_patches(lhs, rhs, strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                 batch_group_count, preferred_element_type) -> bool:
  """A plain 2-D NHWC/HWIO convolution whose output is no larger than its window."""
  if lhs.ndim != 4 or batch_group_count != 1 or preferred_element_type is not None:
    return False
  if any(d != 1 for d in (lhs_dilation or ())) or any(d != 1 for d in (rhs_dilation or ())):
    return False
  dn = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  if (tuple(dn.lhs_spec), tuple(dn.rhs_spec), tuple(dn.out_spec)) != _NHWC:
    return False
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding)
  out = [(n + lo + hi - k) // s + 1
         for n, (lo, hi), k, s in zip(lhs.shape[1:3], padding, rhs.shape[:2], strides)]
  return min(out) >= 1 and out[0] * out[1] <= rhs.shape[0] * rhs.shape[1]


def _patches_conv(lhs, rhs, strides, padding, precision):
  """NHWC/HWIO convolution as (window patches of lhs) @ (kernel as a matrix)."""
  kh, kw, cin, cout = rhs.shape
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(lhs.shape[1:3], (kh, kw), strides, padding)
  x = jnp.pad(lhs, [(0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)])
  oh = (x.shape[1] - kh) // strides[0] + 1
  ow = (x.shape[2] - kw) // strides[1] + 1
  patches = [jax.lax.slice(x, (0, p, q, 0),
                           (x.shape[0], p + (oh - 1) * strides[0] + 1,
                            q + (ow - 1) * strides[1] + 1, cin), (1, strides[0], strides[1], 1))
             for p in range(kh) for q in range(kw)]
  patches = jnp.concatenate(patches, axis=-1)  # [B, oh, ow, (p, q, cin)]
  return jnp.einsum("bhwk,ko->bhwo", patches, rhs.reshape(kh * kw * cin, cout),
                    precision=precision)


def transposed_conv_matrix(kernel_1d, in_size: int, stride: int) -> np.ndarray:
  """`U[i, h] = k[i - stride·h]` (0 where out of the kernel): 1-D transposed conv as a matrix.

  `U @ x` is the transposed convolution of `x` (length `in_size`) with kernel
  `k` and `stride`, no padding (Caffe's Deconvolution): output length
  `(in_size - 1) · stride + len(k)`.
  """
  kernel_1d = np.asarray(kernel_1d, np.float32)
  size = kernel_1d.shape[0]
  out = (in_size - 1) * stride + size
  matrix = np.zeros((out, in_size), np.float32)
  for h in range(in_size):
    matrix[h * stride:h * stride + size, h] = kernel_1d
  return matrix


def separable_transposed_conv(x: jax.Array, kernel_1d, stride: int, crop_offset: int = 0,
                              output_hw: Optional[Sequence[int]] = None) -> jax.Array:
  """Per-channel transposed convolution of NHWC `x` with the kernel `k ⊗ k`, then a crop.

    y[b, i, j, c] = Σ_{h, w} k[i' - stride·h] · k[j' - stride·w] · x[b, h, w, c],
    i' = i + crop_offset, j' = j + crop_offset,

  i.e. the depthwise transposed convolution (no padding) of every channel
  with the same separable 2-D kernel, cropped to `output_hw` at
  (`crop_offset`, `crop_offset`) (default: no crop). Computed as two matmuls
  with `transposed_conv_matrix`es, whose cropped rows are never computed.
  """
  height, width = x.shape[-3], x.shape[-2]
  rows = transposed_conv_matrix(kernel_1d, height, stride)
  cols = transposed_conv_matrix(kernel_1d, width, stride)
  if output_hw is not None:
    out_h, out_w = output_hw
    if crop_offset + out_h > rows.shape[0] or crop_offset + out_w > cols.shape[0]:
      raise ValueError(f"Cannot crop {tuple(output_hw)} at offset {crop_offset} from the "
                       f"{(rows.shape[0], cols.shape[0])} upsampled output.")
    rows = rows[crop_offset:crop_offset + out_h]
    cols = cols[crop_offset:crop_offset + out_w]
  elif crop_offset:
    rows, cols = rows[crop_offset:], cols[crop_offset:]
  rows = jnp.asarray(rows, x.dtype)
  cols = jnp.asarray(cols, x.dtype)
  y = jnp.einsum("ih,...hwc->...iwc", rows, x)
  return jnp.einsum("jw,...iwc->...ijc", cols, y)


def _mix32(h: jax.Array) -> jax.Array:
  """A bijective 32-bit multiply-xorshift finaliser (Wellons' `lowbias32`)."""
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x7FEB352D)
  h = h ^ (h >> 15)
  h = h * jnp.uint32(0x846CA68B)
  return h ^ (h >> 16)


def dropout_mask(key: jax.Array, keep_prob: float, shape: Sequence[int]) -> jax.Array:
  """Boolean `shape` mask, each entry True with probability `keep_prob`, from `key`.

  Entry i (row-major) is `h(i) < round(keep_prob · 2³²)` with
  `h(i) = mix(mix(i + s₀) ^ s₁)` (bitwise inverted when `s₀` is odd),
  `s₀, s₁` 32 random bits each from `key` (`jax.random.bits`) and `mix` a
  bijective multiply-xorshift hash of 32-bit words. For a fixed key `h`
  permutes the 32-bit integers, so over the whole counter range exactly
  `round(keep_prob · 2³²)` entries are kept: the keep probability is exact
  to 2⁻³³. The stream differs from
  `jax.random.bernoulli`'s (not bit-identical masks; not a cryptographic
  generator — statistically adequate for dropout), and costs a few integer
  operations per entry instead of a Philox/Threefry evaluation.

  Args:
    key: a PRNG key (typed or raw); each call needs its own key.
    keep_prob: a Python float in [0, 1].
    shape: the mask's shape; at most 2³² entries.
  """
  keep_prob = float(keep_prob)
  if not 0.0 <= keep_prob <= 1.0:
    raise ValueError(f"keep_prob must be in [0, 1], got {keep_prob}.")
  shape = tuple(int(d) for d in shape)
  size = int(np.prod(shape, dtype=np.int64))
  if size > 2 ** 32:
    raise ValueError(f"dropout_mask draws at most 2**32 entries, got shape {shape}.")
  if keep_prob == 1.0:
    return jnp.ones(shape, bool)
  threshold = min(int(round(keep_prob * 2.0 ** 32)), 2 ** 32 - 1)
  seeds = jax.random.bits(key, (2,), jnp.uint32)
  if size == 0:
    return jnp.zeros(shape, bool)
  counter = jax.lax.iota(jnp.uint32, size).reshape(shape)
  h = _mix32(_mix32(counter + seeds[0]) ^ seeds[1])
  # One more bijection, chosen by a key bit at run time. Its purpose is the
  # conditional: XLA cannot fuse the hash through it, so the mask is computed
  # once and read by the forward and backward selects. Left fusible, XLA
  # recomputes the hash inside every consumer (4× per element, unvectorised,
  # in max_pool's gradient: 3× slower than the RngBitGenerator it replaces).
  h = jax.lax.cond((seeds[0] & 1) == 1, jnp.invert, lambda v: v, h)
  return h < jnp.uint32(threshold)


class Dropout(nn.Dropout):
  """`flax.linen.Dropout` (same fields, scaling and key use) with `dropout_mask`'s mask.

  Same name as Flax's class, so automatic module names (`Dropout_0`, ...)
  and hence the per-layer keys `make_rng` derives stay the same.
  """

  @nn.compact
  def __call__(self, inputs, deterministic: Optional[bool] = None, rng=None):
    deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
    if self.rate == 0.0 or deterministic:
      return inputs
    if self.rate == 1.0:
      return jnp.zeros_like(inputs)
    keep_prob = 1.0 - self.rate
    if rng is None:
      rng = self.make_rng(self.rng_collection)
    shape = list(inputs.shape)
    for dim in self.broadcast_dims:
      shape[dim] = 1
    mask = jnp.broadcast_to(dropout_mask(rng, keep_prob, shape), inputs.shape)
    return jax.lax.select(mask, inputs / keep_prob, jnp.zeros_like(inputs))
