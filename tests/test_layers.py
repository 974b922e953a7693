"""jaxpu.models.layers.max_pool against Flax's reduce_window pooling and hand values."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpu.models import layers
from jaxpu.models.layers import max_pool

CASES = [
    ((2, 8, 8, 3), (2, 2), (2, 2), "VALID"),  # Table 6 / fcn_small pooling
    ((2, 7, 9, 3), (2, 2), (2, 2), "SAME"),  # odd sizes: padded at the end
    ((2, 13, 11, 4), (3, 3), (2, 2), ((0, 1), (0, 2))),  # fcn_alexnet's ceil-mode pads
    ((3, 6, 6, 2), (3, 3), (1, 1), "SAME"),  # overlapping windows, padding both sides
    ((5, 5, 2), (2, 2), (2, 2), "VALID"),  # no batch axis
]


@pytest.mark.parametrize("shape,window,strides,padding", CASES)
def test_matches_flax_values_and_gradients(shape, window, strides, padding):
  rs = np.random.RandomState(0)
  x = jnp.asarray(rs.standard_normal(shape).astype(np.float32))  # maxima are unique
  expected, flax_vjp = jax.vjp(lambda v: nn.max_pool(v, window, strides, padding), x)
  got, vjp = jax.vjp(lambda v: max_pool(v, window, strides, padding), x)
  np.testing.assert_array_equal(got, expected)
  cotangent = jnp.asarray(rs.standard_normal(expected.shape).astype(np.float32))
  np.testing.assert_allclose(vjp(cotangent)[0], flax_vjp(cotangent)[0], atol=1e-6)


def test_hand_computed_example_and_ties():
  x = jnp.array([[1., 5., 2., 2.],
                 [3., 4., 2., 2.],
                 [0., -1., 7., 6.],
                 [-2., -3., 8., 9.]])[None, :, :, None]
  y, vjp = jax.vjp(lambda v: max_pool(v, (2, 2), (2, 2)), x)
  np.testing.assert_array_equal(y[0, :, :, 0], [[5., 2.], [0., 9.]])
  grad = vjp(jnp.ones_like(y))[0][0, :, :, 0]
  # Unique maxima get the whole cotangent; the four tied 2s share theirs (total 1).
  ties = np.asarray(grad[:2, 2:])
  assert np.all(ties > 0) and np.isclose(ties.sum(), 1.0)
  grad = np.asarray(grad).copy()
  grad[:2, 2:] = 0
  np.testing.assert_array_equal(grad, [[0., 1., 0., 0.],
                                       [0., 0., 0., 0.],
                                       [1., 0., 0., 0.],
                                       [0., 0., 0., 1.]])


def test_padding_never_wins_and_integers_work():
  x = -jnp.ones((1, 3, 3, 1), jnp.int32) * 7
  y = max_pool(x, (2, 2), (2, 2), "SAME")
  assert y.shape == (1, 2, 2, 1) and y.dtype == jnp.int32
  np.testing.assert_array_equal(y, -7)


def test_jit_and_errors():
  x = jnp.ones((2, 4, 4, 1))
  np.testing.assert_array_equal(jax.jit(lambda v: max_pool(v, (2, 2), (2, 2)))(x),
                                jnp.ones((2, 2, 2, 1)))
  with pytest.raises(ValueError, match="2-D window"):
    max_pool(x, (2,), (2, 2))
  with pytest.raises(ValueError, match="larger than the padded input"):
    max_pool(x, (5, 5), (1, 1))


DN = ("NHWC", "HWIO", "NHWC")


@pytest.mark.parametrize("groups,strides,padding,kernel", [
    (2, (1, 1), "SAME", (3, 3)),  # fcn_alexnet's conv4/conv5
    (2, (2, 2), ((2, 2), (2, 2)), (5, 5)),
    (1, (1, 1), "VALID", (6, 6)),  # fc6-like: output 3×3 ≤ window → patches path
    (1, (2, 1), ((1, 2), (0, 1)), (4, 4)),  # patches path with strides and padding
    (1, (1, 1), "SAME", (3, 3)),  # plain convolution, passed through
])
def test_conv_general_dilated_matches_lax(groups, strides, padding, kernel):
  rs = np.random.RandomState(1)
  x = jnp.asarray(rs.standard_normal((2, 8, 8, 4)).astype(np.float32))
  w = jnp.asarray(rs.standard_normal(kernel + (4 // groups, 6)).astype(np.float32))

  def run(conv, x, w):
    return conv(x, w, strides, padding, dimension_numbers=DN, feature_group_count=groups)

  def value_and_grads(conv):  # under jit, as in a model
    out = jax.jit(lambda x, w: run(conv, x, w))(x, w)
    loss = lambda x, w: jnp.sum(run(conv, x, w) ** 2)  # noqa: E731
    return out, jax.jit(jax.grad(loss, (0, 1)))(x, w)

  expected, want = value_and_grads(jax.lax.conv_general_dilated)
  value, got = value_and_grads(layers.conv_general_dilated)
  np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-5)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


def test_conv_general_dilated_in_flax_keeps_parameters():
  x = jnp.ones((1, 6, 6, 4))
  plain = nn.Conv(6, (3, 3), feature_group_count=2)
  fast = nn.Conv(6, (3, 3), feature_group_count=2,
                 conv_general_dilated=layers.conv_general_dilated)
  params = plain.init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, fast.init(jax.random.key(0), x)) == jax.tree.map(
      jnp.shape, params)
  np.testing.assert_allclose(fast.apply(params, x), plain.apply(params, x), rtol=1e-5)


def test_separable_transposed_conv_matches_a_direct_loop():
  rs = np.random.RandomState(2)
  x = rs.standard_normal((2, 3, 4, 2)).astype(np.float32)
  k = np.array([0.25, 0.5, 1.0, 0.5, 0.25], np.float32)
  stride = 3
  full = np.zeros((2, (3 - 1) * stride + 5, (4 - 1) * stride + 5, 2), np.float32)
  for h in range(3):  # Caffe's Deconvolution: each input pixel adds a scaled kernel
    for w in range(4):
      full[:, h * stride:h * stride + 5, w * stride:w * stride + 5, :] += (
          np.outer(k, k)[None, :, :, None] * x[:, h:h + 1, w:w + 1, :])
  np.testing.assert_allclose(layers.separable_transposed_conv(jnp.asarray(x), k, stride),
                             full, rtol=1e-5, atol=1e-6)
  cropped = layers.separable_transposed_conv(jnp.asarray(x), k, stride, 2, (5, 6))
  np.testing.assert_allclose(cropped, full[:, 2:7, 2:8], rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="Cannot crop"):
    layers.separable_transposed_conv(jnp.asarray(x), k, stride, 2, (50, 6))


def test_dropout_mask_keep_rate_and_independence():
  key = jax.random.key(3, impl="rbg")
  shape = (64, 16, 16, 32)  # 524,288 entries
  for keep in (0.8, 0.5, 0.1):
    mask = np.asarray(layers.dropout_mask(key, keep, shape))
    assert mask.shape == shape and mask.dtype == bool
    n = mask.size
    # Binomial standard deviation of the mean: sqrt(p(1-p)/n) < 7e-4 here.
    assert abs(mask.mean() - keep) < 5 * np.sqrt(keep * (1 - keep) / n)
    flat = mask.reshape(-1).astype(np.float64)
    for lag in (1, 32, 512):  # neighbours along channels, width, rows
      corr = np.corrcoef(flat[:-lag], flat[lag:])[0, 1]
      assert abs(corr) < 5 / np.sqrt(n)
  a = np.asarray(layers.dropout_mask(jax.random.key(0), 0.5, (4096,)))
  b = np.asarray(layers.dropout_mask(jax.random.key(1), 0.5, (4096,)))
  assert abs(np.mean(a == b) - 0.5) < 0.05  # different keys: unrelated masks
  np.testing.assert_array_equal(a, layers.dropout_mask(jax.random.key(0), 0.5, (4096,)))
  assert layers.dropout_mask(key, 1.0, (3, 2)).all()
  assert not layers.dropout_mask(key, 0.0, (1000,)).any()
  assert layers.dropout_mask(key, 0.5, (0, 3)).shape == (0, 3)
  with pytest.raises(ValueError, match="keep_prob"):
    layers.dropout_mask(key, 1.5, (3,))


def test_dropout_module_matches_flax_semantics():
  rs = np.random.RandomState(4)
  x = jnp.asarray(rs.standard_normal((8, 6, 5, 4)).astype(np.float32))
  rngs = {"dropout": jax.random.key(5)}
  assert layers.Dropout.__name__ == nn.Dropout.__name__
  np.testing.assert_array_equal(layers.Dropout(0.3).apply({}, x, deterministic=True), x)
  np.testing.assert_array_equal(layers.Dropout(0.0).apply({}, x, deterministic=False), x)
  np.testing.assert_array_equal(
      layers.Dropout(1.0).apply({}, x, deterministic=False, rngs=rngs), 0)
  y, vjp = jax.vjp(lambda v: layers.Dropout(0.3).apply({}, v, deterministic=False, rngs=rngs), x)
  kept = np.asarray(y) != 0
  np.testing.assert_allclose(np.asarray(y)[kept], np.asarray(x)[kept] / 0.7, rtol=1e-6)
  assert 0.5 < kept.mean() < 0.9
  g = vjp(jnp.ones_like(x))[0]  # gradient: 1 / keep where kept, 0 where dropped
  np.testing.assert_allclose(np.asarray(g), np.where(kept, 1 / 0.7, 0.0), rtol=1e-6)
  # broadcast_dims: one mask entry per (batch, channel), shared over H and W.
  z = layers.Dropout(0.5, broadcast_dims=(1, 2)).apply({}, jnp.ones((8, 6, 5, 4)),
                                                        deterministic=False, rngs=rngs)
  assert np.all(np.asarray(z) == np.asarray(z)[:, :1, :1, :])
  # Under jit and with the module inside a Flax model (same key derivation).
  model = nn.Sequential([nn.Dense(3), layers.Dropout(0.5, deterministic=False)])
  params = model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, x)
  out = jax.jit(lambda p: model.apply(p, x, rngs=rngs))(params)
  assert out.shape == (8, 6, 5, 3)
