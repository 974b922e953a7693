"""jaxpu.models.layers.max_pool against Flax's reduce_window pooling and hand values."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

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
