"""Models: parameter counts from the papers' layer lists, shapes, layers vs Caffe's formulas."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpu import models
from jaxpu.models import fcn_alexnet


def _count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _abstract_params(model, shape):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))["params"]


def _key(seed):
  # rbg keys, as jaxpu.train uses: threefry initialisers compile several times slower on CPU.
  return jax.random.key(seed, impl="rbg")


def _init_with_output(model, x, train=False):
  """Jitted init + forward (eager Flax runs op by op: far slower on CPU)."""
  fn = jax.jit(lambda k, x: model.init_with_output(k, x, train=train))
  return fn(_key(1), x)


def _conv(k, cin, cout, groups=1):
  """Weights + biases of a k×k convolution (a dense layer is k = 1)."""
  return k * k * (cin // groups) * cout + cout


def test_cifar_cnn_matches_table6():
  params = _abstract_params(models.get("cifar_cnn", 11), (1, 32, 32, 3))
  # Table 6, 'same' 3×3 convs; after three 2×2 pools 32×32 → 4×4×128 = 2048 inputs to fc.
  by_hand = (_conv(3, 3, 32) + _conv(3, 32, 32) + _conv(3, 32, 64) + _conv(3, 64, 64)
             + _conv(3, 64, 128) + _conv(3, 128, 128) + _conv(1, 4 * 4 * 128, 512)
             + _conv(1, 512, 11))
  assert by_hand == 1_341_739  # the table's "Parameters" row
  assert _count(params) == 1_341_739
  assert set(params) == {"encoder", "head"}
  assert params["head"]["kernel"].shape == (512, 11)


def _random_variables(model, shape, seed=0):
  """Variables of `model`'s shapes with random values (no init compile needed)."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))
  rs = np.random.RandomState(seed)
  return jax.tree.map(lambda s: jnp.asarray(0.1 * rs.normal(size=s.shape), s.dtype), shapes)


def _forward(model, x):
  """The jitted forward of `model` with random variables (shapes are what is checked: no
  initialiser compiled)."""
  return jax.jit(model.apply)(_random_variables(model, x.shape), x)


def test_cifar_cnn_dropout_only_in_training():
  model = models.get("cifar_cnn", 11)
  x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  variables = _random_variables(model, x.shape)

  # One training program called with two keys (its dropout masks make it the larger one).
  train = jax.jit(lambda k: model.apply(variables, x, train=True, rngs={"dropout": k}))
  out, a, b = jax.jit(model.apply)(variables, x), train(_key(2)), train(_key(3))
  assert out.shape == (2, 11) and out.dtype == jnp.float32
  assert not np.allclose(a, b) and not np.allclose(a, out)


def test_mlp_structure():
  model = models.get("mlp", 1)
  x = jnp.ones((5, 2))
  out, variables = _init_with_output(model, x)
  p = variables["params"]
  assert out.shape == (5, 1)
  # §5.1.1: two hidden layers of six units; 2-d input, one logit.
  assert p["encoder"]["dense1"]["kernel"].shape == (2, 6)
  assert p["encoder"]["dense2"]["kernel"].shape == (6, 6)
  assert p["head"]["kernel"].shape == (6, 1)
  assert _count(p) == (2 * 6 + 6) + (6 * 6 + 6) + (6 + 1)
  assert _init_with_output(models.get("mlp", 3), x)[0].shape == (5, 3)


def test_glorot_init_and_zero_bias():
  params = jax.jit(models.get("cifar_cnn", 11).init)(
      _key(0), jnp.zeros((1, 32, 32, 3)))["params"]
  kernel = np.asarray(params["encoder"]["fc"]["kernel"])
  limit = math.sqrt(6 / (2048 + 512))  # Glorot & Bengio 2010, uniform
  assert np.abs(kernel).max() <= limit
  assert abs(kernel.std() - limit / math.sqrt(3)) < 0.01 * limit
  conv = np.asarray(params["encoder"]["conv2_1"]["kernel"])  # fans include the 3×3 field
  conv_limit = math.sqrt(6 / (9 * 32 + 9 * 64))
  assert np.abs(conv).max() <= conv_limit and np.abs(conv).max() > 0.95 * conv_limit
  assert not np.any(np.asarray(params["encoder"]["fc"]["bias"]))


# --- FCN-AlexNet -------------------------------------------------------------------


def test_fcn_alexnet_reference_parameter_count():
  """voc-fcn-alexnet with 21 classes, counted from its layer list (grouped convs)."""
  params = _abstract_params(models.get("fcn_alexnet", 21), (1, 64, 64, 3))
  by_hand = (_conv(11, 3, 96) + _conv(5, 96, 256, groups=2) + _conv(3, 256, 384)
             + _conv(3, 384, 384, groups=2) + _conv(3, 384, 256, groups=2)
             + _conv(6, 256, 4096) + _conv(1, 4096, 4096)  # fc6, fc7
             + _conv(1, 4096, 21))  # score_fr; upscore is the frozen bilinear filter
  assert _count(params) == by_hand == 56_954_261  # "57M" in Long et al. (2015), Table 1
  assert sorted(params["encoder"]) == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"]
  assert sorted(params["head"]) == ["score"]
  assert params["encoder"]["conv2"]["kernel"].shape == (5, 5, 48, 256)


def test_fcn_alexnet_output_matches_input_size():
  model = models.get("fcn_alexnet", 3, width=1 / 16)
  hw = (47, 21)
  x = jax.random.normal(jax.random.key(0), (2, *hw, 3))
  out = _forward(model, x)
  assert out.shape == (2, *hw, 3)
  assert np.all(np.isfinite(out))


def test_fcn_alexnet_large_odd_shapes_abstract():
  model = models.get("fcn_alexnet", 2, width=0.25)
  for hw in [(1, 1), (7, 33), (101, 67), (255, 129), (500, 375)]:  # 500×375: a VOC image
    out = jax.eval_shape(lambda hw=hw: model.init_with_output(
        jax.random.key(0), jnp.zeros((1, *hw, 3)))[0])
    assert out.shape == (1, *hw, 2)


def _caffe_pool_size(size, k=3, s=2):
  return math.ceil((size - k) / s) + 1


def test_max_pool_rounds_up_like_caffe():
  for size in (6, 7, 13, 14):
    x = jnp.arange(size * size, dtype=jnp.float32).reshape(1, size, size, 1)
    out = fcn_alexnet.max_pool_ceil(x, 3, 2)
    n = _caffe_pool_size(size)
    assert out.shape == (1, n, n, 1)
    # the last (partial) window's max is the image's last element
    assert out[0, -1, -1, 0] == size * size - 1


def test_local_response_norm_matches_caffe_formula():
  x = np.asarray(jax.random.normal(jax.random.key(0), (1, 2, 3, 7)))
  out = np.asarray(jax.jit(fcn_alexnet.local_response_norm)(jnp.asarray(x)))  # 5, 1e-4, 0.75
  expected = np.empty_like(x)
  for c in range(7):
    window = x[..., max(0, c - 2):c + 3]
    expected[..., c] = x[..., c] / (1 + 1e-4 / 5 * np.sum(window ** 2, -1)) ** 0.75
  np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_upscore_is_caffe_deconvolution_with_bilinear_filter():
  # FCN surgery.upsample_filt(63): factor 32, centre 31.
  k = 1 - np.abs(np.arange(63) - 31) / 32
  kernel = np.outer(k, k)
  x = np.asarray(jax.random.normal(jax.random.key(0), (1, 2, 3, 2)))
  out = np.asarray(fcn_alexnet.bilinear_upsample(jnp.asarray(x)))
  # Caffe Deconvolution (stride 32, no pad): out[32y + i, 32x + j] += in[y, x] k[i, j],
  # per class (the frozen weights are bilinear on the diagonal, zero elsewhere).
  expected = np.zeros((1, 32 + 63, 64 + 63, 2))
  for y in range(2):
    for xx in range(3):
      expected[0, 32 * y:32 * y + 63, 32 * xx:32 * xx + 63] += (
          x[0, y, xx][None, None, :] * kernel[..., None])
  np.testing.assert_allclose(out, expected, atol=1e-5)


def test_fcn_alexnet_caffe_xavier_init_bounds():
  """Caffe's xavier filler: U(±sqrt(3 / fan_in)), fan_in = kh · kw · in_channels / groups."""
  model = models.get("fcn_alexnet", 21, width=0.25, kernel_init="caffe_xavier")
  params = jax.jit(model.init)(_key(0), jnp.zeros((1, 8, 8, 3)))["params"]
  # conv2: 5×5, 2 groups of 12 input channels; fc6: 6×6×64; conv1 11×11×3; score 1×1×1024.
  for layer, fan_in in [("conv1", 11 * 11 * 3), ("conv2", 5 * 5 * 12), ("conv4", 3 * 3 * 48),
                        ("fc6", 6 * 6 * 64), ("fc7", 1024)]:
    kernel = np.asarray(params["encoder"][layer]["kernel"])
    assert int(np.prod(kernel.shape[:-1])) == fan_in, layer
    limit = math.sqrt(3 / fan_in)
    assert np.abs(kernel).max() <= limit, layer
    assert kernel.max() > 0.98 * limit and kernel.min() < -0.98 * limit, layer
    assert abs(kernel.var() * fan_in - 1) < 0.05, layer  # variance 1 / fan_in
    assert not np.any(np.asarray(params["encoder"][layer]["bias"]))
  score = np.asarray(params["head"]["score"]["kernel"])
  assert np.abs(score).max() <= math.sqrt(3 / 1024) and score.std() > 0
  # The default is unchanged: Glorot, sqrt(6 / (fan_in + fan_out)).
  glorot = jax.jit(models.get("fcn_alexnet", 21, width=0.25).init)(
      _key(0), jnp.zeros((1, 8, 8, 3)))["params"]
  kernel = np.asarray(glorot["encoder"]["fc6"]["kernel"])
  limit = math.sqrt(6 / (36 * 64 + 36 * 1024))
  assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.98 * limit


def test_fcn_alexnet_score_init():
  shape = (1, 8, 8, 3)
  zeros = jax.jit(models.get("fcn_alexnet", 3, width=1 / 16, score_init="zeros").init)(
      _key(0), jnp.zeros(shape))["params"]
  assert not np.any(np.asarray(zeros["head"]["score"]["kernel"]))
  assert np.any(np.asarray(zeros["encoder"]["conv1"]["kernel"]))
  # score_init None follows kernel_init; an explicit one overrides it
  xavier = jax.jit(models.get("fcn_alexnet", 3, width=1 / 16, kernel_init="caffe_xavier",
                              score_init="glorot").init)(_key(0), jnp.zeros(shape))["params"]
  score = np.asarray(xavier["head"]["score"]["kernel"])
  fan_in, fan_out = score.shape[-2], score.shape[-1]
  limit = math.sqrt(6 / (fan_in + fan_out))
  assert np.abs(score).max() <= limit and np.abs(score).max() > math.sqrt(3 / fan_in)
  with pytest.raises(ValueError, match="kernel_init must be 'glorot' or 'caffe_xavier'"):
    models.get("fcn_alexnet", 3, kernel_init="zeros").init(_key(0), jnp.zeros(shape))
  with pytest.raises(ValueError, match="score_init must be one of"):
    models.get("fcn_alexnet", 3, score_init="he").init(_key(0), jnp.zeros(shape))


def test_upscore_is_not_trainable():
  # The frozen upscore filter is a constant, not a parameter: no optimizer can change it.
  params = _abstract_params(models.get("fcn_alexnet", 2, width=1 / 16), (1, 9, 9, 3))
  assert sorted(params["head"]) == ["score"]
  assert params["head"]["score"]["kernel"].shape == (1, 1, 256, 2)


# --- fcn_small -------------------------------------------------------------------


def test_fcn_small_parameter_count_and_shapes():
  model = models.get("fcn_small", 21)
  params = _abstract_params(model, (1, 48, 48, 3))
  by_hand = (_conv(3, 3, 16) + _conv(3, 16, 16) + _conv(3, 16, 32) + _conv(3, 32, 32)
             + _conv(3, 32, 64) + _conv(3, 64, 64) + _conv(3, 64, 128) + _conv(1, 128, 128)
             + _conv(1, 128, 21))
  assert _count(params) == by_hand
  half = _abstract_params(models.get("fcn_small", 2, width=0.5), (1, 48, 48, 3))
  assert half["encoder"]["conv1_1"]["kernel"].shape == (3, 3, 3, 8)
  assert half["encoder"]["conv5"]["kernel"].shape == (1, 1, 64, 64)


def test_fcn_small_output_matches_input_size():
  model = models.get("fcn_small", 1, width=0.25)
  x = jax.random.normal(jax.random.key(0), (2, 17, 31, 3))
  assert _forward(model, x).shape == (2, 17, 31, 1)
  for hw in [(5, 3), (48, 48), (33, 65)]:  # not multiples of the stride 8, too
    out = jax.eval_shape(lambda hw=hw: model.init_with_output(
        jax.random.key(0), jnp.zeros((1, *hw, 3)))[0])
    assert out.shape == (1, *hw, 1)


@pytest.mark.parametrize("name", ["cifar_cnn", "fcn_alexnet", "fcn_small"])
def test_bfloat16_compute_keeps_float32_params(name):
  model = models.get(name, 3, dtype=jnp.bfloat16)
  shape = (2, 32, 32, 3)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
  jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x))(variables, jnp.zeros(shape))
  heavy = [e for e in jaxpr.jaxpr.eqns
           if e.primitive.name in ("conv_general_dilated", "dot_general")]
  assert heavy and all(v.aval.dtype == jnp.bfloat16 for e in heavy for v in e.invars)
  assert jaxpr.out_avals[0].dtype == jnp.float32


def test_bfloat16_output_close_to_float32():
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
  full = models.get("fcn_small", 3, width=0.25)
  half = models.get("fcn_small", 3, width=0.25, dtype=jnp.bfloat16)
  variables = _random_variables(full, x.shape)
  a, b = jax.jit(lambda v: (full.apply(v, x), half.apply(v, x)))(variables)
  assert b.dtype == jnp.float32
  np.testing.assert_allclose(a, b, atol=0.05 * float(jnp.abs(a).max()))


def test_get_errors_name_the_problem():
  with pytest.raises(ValueError, match="'resnet'.*cifar_cnn"):
    models.get("resnet", 10)
  with pytest.raises(ValueError, match="widht"):
    models.get("fcn_small", 2, widht=0.5)
  with pytest.raises(ValueError, match="num_classes"):
    models.get("mlp", 0)


@pytest.mark.parametrize("name,options,message", [
    ("mlp", {"hidden": (0, 6)}, r"hidden=\(0, 6\) must be one or more positive"),
    ("fcn_small", {"dropout_rate": 1.5}, r"dropout_rate=1\.5 must be in \[0, 1\)"),
    ("fcn_small", {"width": 0.0}, r"width=0\.0 must be a number > 0"),
])
def test_bad_model_options_are_named_before_any_jax_work(name, options, message):
  with pytest.raises(ValueError, match=message):
    models.get(name, 2, **options)
