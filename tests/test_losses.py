"""Tests of jaxpu.losses against hand-computed values, analytic derivatives,
optax equivalents and a direct NumPy evaluation of the nnPU formulas.

Compilation dominates the run time, so most tests share a few input shapes
((8,) binary, (8, 3) multiclass) and the jitted `binary_all` /
`multiclass_all`, which evaluate every loss and its derivative at once.
"""

import math

import chex
import hypothesis
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxpu import losses

LN3 = math.log(3.)  # σ(ln 3) = 3/4, σ(-ln 3) = 1/4.

# Every elementwise loss with non-default arguments, so weights are exercised.
BINARY = {
    "logistic": {},
    "weighted_logistic": dict(positive_weight=2., negative_weight=0.5),
    "sigmoid_negative": dict(positive_weight=2., negative_weight=0.5),
    "generalized_sigmoid_negative": dict(alpha=2., beta=3., gamma=0.5),
    "bootstrap_hard": dict(beta=0.7),
}
MULTICLASS = {
    "softmax_cross_entropy": {},
    "weighted_softmax_cross_entropy": dict(class_weights=[0.5, 1., 2.]),
    "softmax_negative": dict(class_weights=[0.5, 1., 2.]),
    "generalized_softmax_negative": dict(alpha=2., beta=3., gamma=0.5),
    "softmax_bootstrap_hard": dict(beta=0.7),
}


def _with_kwargs(name, table):
  fn, kwargs = losses.get(name), table[name]
  return lambda f, y, **kw: fn(f, y, **kwargs, **kw)


def _values_and_grads(table, logits, labels, where):
  """{name: (per-element loss, d sum(loss) / d logits)} for every loss."""
  out = {}
  for name in table:
    fn = _with_kwargs(name, table)
    value = fn(logits, labels, where=where)
    grad = jax.grad(lambda x, fn=fn: jnp.sum(fn(x, labels, where=where)))(logits)
    out[name] = (value, grad)
  return out


@jax.jit
def binary_all(f, y, where):
  return _values_and_grads(BINARY, f, y, where)


@jax.jit
def multiclass_all(logits, labels, where):
  return _values_and_grads(MULTICLASS, logits, labels, where)


ALL_TRUE = np.ones(8, bool)


def sigmoid(x):
  x = np.asarray(x, np.float64)
  return np.exp(-np.logaddexp(0., -x))


def softmax(x):
  x = np.asarray(x, np.float64)
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_registry_covers_every_loss():
  assert set(BINARY) == set(losses.BINARY_LOSSES)
  assert set(MULTICLASS) == set(losses.MULTICLASS_LOSSES)
  names = (losses.BINARY_LOSSES + losses.MULTICLASS_LOSSES + losses.RISK_ESTIMATORS
           + losses.MULTICLASS_RISK_ESTIMATORS)
  assert len(set(names)) == len(names)
  for name in names:
    assert losses.get(name) is getattr(losses, name)


def test_get_unknown_name_lists_valid_names():
  with pytest.raises(ValueError, match="sigmoid_negative.*nnpu_risk"):
    losses.get("sigmoid")


# ----------------------------------------------------------------------------
# Values at hand-computed points.
# ----------------------------------------------------------------------------

HAND_VALUES = [
    # (function, logits, labels, kwargs, expected)
    (losses.logistic, LN3, 1, {}, math.log(4 / 3)),
    (losses.logistic, LN3, 0, {}, math.log(4)),
    (losses.weighted_logistic, LN3, 1, dict(positive_weight=2.), 2 * math.log(4 / 3)),
    (losses.weighted_logistic, LN3, 0, dict(negative_weight=0.5), 0.5 * math.log(4)),
    (losses.sigmoid_negative, LN3, 0, {}, 0.75),
    (losses.sigmoid_negative, LN3, 0, dict(negative_weight=0.5), 0.375),
    (losses.sigmoid_negative, -LN3, 1, dict(positive_weight=2.), 2 * math.log(4)),
    # σ(2 ln 3) = 9/10, so 2 · (9/10)^3.
    (losses.generalized_sigmoid_negative, LN3, 0, dict(alpha=2., beta=2., gamma=3.),
     2 * 0.9 ** 3),
    (losses.generalized_sigmoid_negative, LN3, 1, dict(alpha=2., beta=2., gamma=3.),
     math.log(4 / 3)),
    # f > 0: ŷ = +1, so -β log(1/4) - (1-β) log(3/4).
    (losses.bootstrap_hard, LN3, 0, dict(beta=0.8), 0.8 * math.log(4) + 0.2 * math.log(4 / 3)),
    # f < 0: ŷ = -1, both terms are -log(3/4).
    (losses.bootstrap_hard, -LN3, 0, dict(beta=0.8), math.log(4 / 3)),
    (losses.bootstrap_hard, -LN3, 1, dict(beta=0.8), math.log(4)),
]

# Logits ln(1, 2, 5): softmax (1/8, 2/8, 5/8).
P3 = [math.log(1.), math.log(2.), math.log(5.)]
HAND_VALUES += [
    (losses.softmax_cross_entropy, P3, 2, {}, math.log(8 / 5)),
    (losses.softmax_cross_entropy, P3, 0, {}, math.log(8)),
    (losses.weighted_softmax_cross_entropy, P3, 0, dict(class_weights=[0.5, 1., 2.]),
     0.5 * math.log(8)),
    (losses.weighted_softmax_cross_entropy, P3, 2, dict(class_weights=[0.5, 1., 2.]),
     2 * math.log(8 / 5)),
    (losses.softmax_negative, P3, 0, {}, 7 / 8),
    (losses.softmax_negative, P3, 1, {}, math.log(4)),
    (losses.softmax_negative, P3, 0, dict(class_weights=[0.5, 1., 2.]), 0.5 * 7 / 8),
    (losses.softmax_negative, P3, 2, dict(negative_class=2), 3 / 8),
    (losses.softmax_negative, P3, 0, dict(negative_class=2), math.log(8)),
    # ŷ = 2: -β log(1/8) - (1-β) log(5/8).
    (losses.softmax_bootstrap_hard, P3, 0, dict(beta=0.8),
     0.8 * math.log(8) + 0.2 * math.log(8 / 5)),
    (losses.softmax_bootstrap_hard, P3, 1, dict(beta=0.8), math.log(4)),
    # negative_class=1, ŷ = 2.
    (losses.softmax_bootstrap_hard, P3, 1, dict(beta=0.5, negative_class=1),
     0.5 * math.log(4) + 0.5 * math.log(8 / 5)),
    # §6 multiclass: α (1 - σ_0(β f))^γ; softmax(2 f) = (1, 4, 25) / 30.
    (losses.generalized_softmax_negative, P3, 0, dict(alpha=2., gamma=2.), 2 * (7 / 8) ** 2),
    (losses.generalized_softmax_negative, P3, 0, dict(alpha=0.5, beta=2.), 0.5 * 29 / 30),
    (losses.generalized_softmax_negative, P3, 2, dict(beta=2., negative_class=2), 5 / 30),
    (losses.generalized_softmax_negative, P3, 1, dict(alpha=2., beta=2., gamma=3.),
     math.log(4)),
]


def test_hand_computed_values():
  for fn, logits, label, kwargs, expected in HAND_VALUES:
    value = fn(jnp.asarray(logits, jnp.float32), jnp.asarray(label), **kwargs)
    assert value.shape == ()
    np.testing.assert_allclose(value, expected, rtol=1e-6,
                               err_msg=f"{fn.__name__}({logits}, {label}, {kwargs})")


def test_pu_risks_hand_computed():
  # P: f = ln3, -ln3; U: f = ln3, 0. With ℓ(z) = σ(-z):
  # R_p^+ = (1/4 + 3/4)/2 = 1/2, R_p^- = 1/2, R_u^- = (3/4 + 1/2)/2 = 5/8.
  f = jnp.array([LN3, -LN3, LN3, 0.])
  y = jnp.array([1, 1, 0, 0])
  expected = 0.4 * .5 + 5 / 8 - 0.4 * .5
  np.testing.assert_allclose(losses.upu_risk(f, y, 0.4), expected, rtol=1e-6)
  np.testing.assert_allclose(losses.nnpu_risk(f, y, 0.4), expected, rtol=1e-6)
  # P: f = ln3, -ln3, ln3; U: f = -ln3. R_p^+ = 5/12, R_p^- = 7/12, R_u^- = 1/4,
  # so with π = 1/2 the negative risk 1/4 - 7/24 < 0 and nnPU clips it.
  y = jnp.array([1, 1, 0, 1])
  f = jnp.array([LN3, -LN3, -LN3, LN3])
  np.testing.assert_allclose(losses.upu_risk(f, y, 0.5), 5 / 24 + 1 / 4 - 7 / 24, rtol=1e-6)
  np.testing.assert_allclose(losses.nnpu_risk(f, y, 0.5), 5 / 24, rtol=1e-6)


def test_nnpu_logistic_surrogate_hand_computed_and_not_flat_when_collapsed():
  # ℓ(z) = log(1 + e^-z): ℓ(ln3) = log(4/3), ℓ(-ln3) = log 4, ℓ(0) = log 2.
  # P: f = ln3, -ln3 → R_p^+ = R_p^- = (log(4/3) + log 4) / 2; U: f = ln3, 0 → R_u^- =
  # (log 4 + log 2) / 2; so π R_p^+ + (R_u^- - π R_p^-) = R_u^- = 1.5 log 2.
  f = jnp.array([LN3, -LN3, LN3, 0.])
  y = jnp.array([1, 1, 0, 0])
  np.testing.assert_allclose(losses.nnpu_risk(f, y, 0.4, surrogate="logistic"),
                             1.5 * np.log(2.), rtol=1e-6)
  # Every output at -20 (a network calling everything negative): the sigmoid
  # surrogate's gradient vanishes, the logistic one pulls each positive up by π / n_p.
  low = jnp.full((4,), -20.)
  flat = jax.grad(losses.nnpu_risk)(low, y, 0.4)
  pull = jax.grad(lambda z: losses.nnpu_risk(z, y, 0.4, surrogate="logistic"))(low)
  assert float(jnp.max(jnp.abs(flat))) < 1e-7
  np.testing.assert_allclose(pull[:2], [-0.4 / 2, -0.4 / 2], rtol=1e-5)
  with pytest.raises(ValueError, match="surrogate must be one of"):
    losses.nnpu_risk(f, y, 0.4, surrogate="hinge")


def test_class_balanced_weights_hand_computed():
  labels = jnp.array([0, 0, 0, 1, 255, 1])
  where = jnp.array([True, True, True, True, False, False])
  # Valid: n_0 = 3, n_1 = 1, N = 4, K = 2 present classes: w_c = N / (K n_c).
  weights = losses.class_balanced_weights(labels, 3, where=where)
  np.testing.assert_allclose(weights, [4 / 6, 2., 0.], rtol=1e-6)
  assert weights.dtype == jnp.float32
  np.testing.assert_array_equal(
      losses.class_balanced_weights(labels, 3, where=jnp.zeros(6, bool)), [0., 0., 0.])


def test_class_balanced_weights_mean_is_one_random():
  rng = np.random.default_rng(0)
  labels = rng.choice(5, size=(3, 7, 7), p=[.6, .25, .1, .05, 0.])
  weights = np.asarray(losses.class_balanced_weights(labels, 5))
  assert weights[4] == 0 and np.all(weights[:4] > 0)
  # The weighted mean weight over the valid elements is 1.
  np.testing.assert_allclose(weights[labels].mean(), 1., rtol=1e-6)
  # Inversely proportional: w_c n_c is the same for every present class.
  counts = np.bincount(labels.ravel(), minlength=5)
  np.testing.assert_allclose(weights[:4] * counts[:4], labels.size / 4, rtol=1e-6)


def test_masked_mean():
  values = jnp.array([1., 2., 3., jnp.nan])
  where = jnp.array([True, True, True, False])
  assert float(losses.masked_mean(values, where)) == 2.
  assert float(losses.masked_mean(values, jnp.zeros(4, bool))) == 0.
  assert float(losses.masked_mean(jnp.array([1., 2.]))) == 1.5
  grad = jax.grad(losses.masked_mean)(values, where)
  np.testing.assert_allclose(grad, [1 / 3, 1 / 3, 1 / 3, 0.], rtol=1e-6)
  assert grad[3] == 0.
  grad = jax.grad(losses.masked_mean)(values, jnp.zeros(4, bool))
  np.testing.assert_array_equal(grad, [0., 0., 0., 0.])


# ----------------------------------------------------------------------------
# Gradients against analytic derivatives.
# ----------------------------------------------------------------------------

F8 = np.array([-4., -1.5, -0.3, 0.2, 1., 3.5, -8., 6.], np.float32)


@pytest.mark.parametrize("label", [0, 1])
def test_binary_gradients_match_analytic(label):
  s = sigmoid(F8)
  positive = s - 1.  # d/df -log σ(f); d/df -log(1 - σ) = σ; d/df σ = σ(1 - σ).
  a, b, g = 2., 3., 0.5
  expected = {
      "logistic": positive if label else s,
      "weighted_logistic": (2. * positive) if label else 0.5 * s,
      "sigmoid_negative": (2. * positive) if label else 0.5 * s * (1 - s),
      # d/df α σ(βf)^γ = α γ β σ(βf)^γ (1 - σ(βf)).
      "generalized_sigmoid_negative": positive if label else
      a * g * b * sigmoid(b * F8) ** g * (1 - sigmoid(b * F8)),
      # β σ + (1 - β)(σ - ŷ), ŷ = 1 iff f > 0.
      "bootstrap_hard": positive if label else s - 0.3 * (F8 > 0),
  }
  results = binary_all(F8, np.full(8, label), ALL_TRUE)
  for name, want in expected.items():
    np.testing.assert_allclose(results[name][1], want, rtol=1e-5, atol=1e-7, err_msg=name)


LOGITS8 = np.random.default_rng(1).normal(0., 2., size=(8, 3)).astype(np.float32)
LABELS8 = np.array([0, 0, 1, 2, 0, 1, 2, 0])


def test_multiclass_gradients_match_analytic():
  p = softmax(LOGITS8)
  onehot = np.eye(3)[LABELS8]
  w = np.array([0.5, 1., 2.])[LABELS8][:, None]
  predicted = np.eye(3)[p.argmax(-1)]
  is_negative = (LABELS8 == 0)[:, None]
  expected = {
      "softmax_cross_entropy": p - onehot,
      "weighted_softmax_cross_entropy": w * (p - onehot),
      # d(1 - p_0)/dz = p_0 (p - e_0) for the negative class.
      "softmax_negative": w * np.where(is_negative, p[:, :1] * (p - onehot), p - onehot),
      # β (p - e_0) + (1 - β)(p - e_ŷ).
      "softmax_bootstrap_hard": np.where(is_negative, p - 0.7 * onehot - 0.3 * predicted,
                                         p - onehot),
  }
  results = multiclass_all(LOGITS8, LABELS8, ALL_TRUE)
  for name, want in expected.items():
    np.testing.assert_allclose(results[name][1], want, rtol=1e-5, atol=1e-7, err_msg=name)


# ----------------------------------------------------------------------------
# Fig. 2: the sigmoid loss of a negative saturates, the weighted logistic does not.
# ----------------------------------------------------------------------------


def test_fig2_plateau_property():
  f = jnp.array([2., 5., 10., 20., 40., 0., 0., 0.])
  y = np.zeros(8, np.int32)
  results = binary_all(f, y, ALL_TRUE)
  # The registry's sigmoid_negative has β = 0.5, the weighted logistic β = 0.5.
  sig_value, sig_grad = (np.asarray(a)[:5] for a in results["sigmoid_negative"])
  wl_value, wl_grad = (np.asarray(a)[:5] for a in results["weighted_logistic"])
  # Sigmoid loss: bounded by β, rising to the plateau, derivative → 0.
  assert np.all(np.diff(sig_value) >= 0) and np.all(sig_value <= 0.5)
  np.testing.assert_allclose(sig_value[-1], 0.5, atol=1e-7)
  assert np.all(np.diff(sig_grad) <= 0) and np.all(np.diff(sig_grad[:3]) < 0)
  assert sig_grad[3] < 1e-8
  # Weighted logistic: slope → β = 0.5, the loss keeps growing linearly.
  np.testing.assert_allclose(wl_grad[2:], 0.5, rtol=1e-4)
  np.testing.assert_allclose(wl_value[4] - wl_value[3], 0.5 * 20, rtol=1e-4)


# ----------------------------------------------------------------------------
# Equivalences.
# ----------------------------------------------------------------------------

RNG = np.random.default_rng(42)
F_RANDOM = RNG.normal(0., 4., size=(8,)).astype(np.float32)
Y_RANDOM = RNG.integers(0, 2, size=(8,))


def test_weighted_logistic_unit_weights_is_optax_sigmoid_bce():
  expected = optax.sigmoid_binary_cross_entropy(F_RANDOM, Y_RANDOM)
  np.testing.assert_allclose(losses.weighted_logistic(F_RANDOM, Y_RANDOM, 1., 1.), expected,
                             rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(losses.logistic(F_RANDOM, Y_RANDOM), expected,
                             rtol=1e-6, atol=1e-7)


def test_softmax_cross_entropy_is_optax_integer_labels():
  expected = optax.softmax_cross_entropy_with_integer_labels(LOGITS8, LABELS8)
  np.testing.assert_allclose(losses.softmax_cross_entropy(LOGITS8, LABELS8), expected,
                             rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(
      losses.weighted_softmax_cross_entropy(LOGITS8, LABELS8, jnp.ones(3)), expected,
      rtol=1e-6, atol=1e-6)


@jax.jit
def _equivalences(f, y, logits, labels):
  """Pairs of (value, gradient) that must agree."""
  def vg(fn, x, t, **kw):
    return fn(x, t, **kw), jax.grad(lambda x: jnp.sum(fn(x, t, **kw)))(x)

  two_class = jnp.stack([0.3 * f - 1., f], -1)
  difference = two_class[:, 1] - two_class[:, 0]
  return {
      "generalized(1, 1, 1) == sigmoid_negative": (
          vg(losses.generalized_sigmoid_negative, f, y, alpha=1., beta=1., gamma=1.),
          vg(losses.sigmoid_negative, f, y)),
      "bootstrap_hard(beta=1) == logistic": (
          vg(losses.bootstrap_hard, f, y, beta=1.), vg(losses.logistic, f, y)),
      "softmax_bootstrap_hard(beta=1) == softmax_cross_entropy": (
          vg(losses.softmax_bootstrap_hard, logits, labels, beta=1.),
          vg(losses.softmax_cross_entropy, logits, labels)),
      # Two classes (f0, f1): the binary logit is f1 - f0, σ(f1 - f0) = softmax_1.
      "softmax_negative(2 classes) == sigmoid_negative(f1 - f0)": (
          vg(losses.softmax_negative, two_class, y), vg(losses.sigmoid_negative, difference, y)),
      "softmax_cross_entropy(2 classes) == logistic(f1 - f0)": (
          vg(losses.softmax_cross_entropy, two_class, y), vg(losses.logistic, difference, y)),
      "softmax_bootstrap_hard(2 classes) == bootstrap_hard(f1 - f0)": (
          vg(losses.softmax_bootstrap_hard, two_class, y),
          vg(losses.bootstrap_hard, difference, y)),
      "generalized_softmax_negative(1, 1, 1) == softmax_negative": (
          vg(losses.generalized_softmax_negative, logits, labels),
          vg(losses.softmax_negative, logits, labels)),
      "generalized_softmax_negative(2 classes) == generalized_sigmoid_negative(f1 - f0)": (
          vg(losses.generalized_softmax_negative, two_class, y, alpha=2., beta=3., gamma=0.5),
          vg(losses.generalized_sigmoid_negative, difference, y, alpha=2., beta=3.,
             gamma=0.5)),
  }


def test_equivalences():
  for name, ((value, grad), (value_ref, grad_ref)) in _equivalences(
      F_RANDOM, Y_RANDOM, LOGITS8, LABELS8).items():
    np.testing.assert_allclose(value, value_ref, rtol=1e-5, atol=1e-6, err_msg=name)
    if grad.shape == grad_ref.shape:
      np.testing.assert_allclose(grad, grad_ref, rtol=1e-5, atol=1e-6, err_msg=name)
    else:  # Chain rule through f1 - f0: d/df1 = d/dd, d/df0 = -d/dd.
      np.testing.assert_allclose(grad[:, 1], grad_ref, rtol=1e-4, atol=1e-6, err_msg=name)
      np.testing.assert_allclose(grad[:, 0], -grad_ref, rtol=1e-4, atol=1e-6, err_msg=name)


def test_no_implicit_broadcasting_like_optax_check_shapes_equal():
  """Shapes must match (tests/test_losses_checks.py); broadcast explicitly."""
  f = F_RANDOM[:4]                                   # [4]
  y = Y_RANDOM[:2, None]                             # [2, 1]
  with pytest.raises(ValueError, match=r"logits \(4,\) and labels \(2, 1\)"):
    losses.sigmoid_negative(f, y)
  out = losses.sigmoid_negative(np.broadcast_to(f, (2, 4)), np.broadcast_to(y, (2, 4)))
  assert out.shape == (2, 4)
  np.testing.assert_allclose(out[1], losses.sigmoid_negative(f, np.full(4, y[1, 0])))
  with pytest.raises(ValueError, match=r"logits \(3,\) and labels \(8,\)"):
    losses.softmax_negative(LOGITS8[0], LABELS8)  # [3] vs [8]
  out = losses.softmax_negative(np.broadcast_to(LOGITS8[0], (8, 3)), LABELS8)
  assert out.shape == (8,)
  np.testing.assert_allclose(out[2], losses.softmax_negative(LOGITS8[0], LABELS8[2]))


# ----------------------------------------------------------------------------
# nnPU against a direct NumPy evaluation of Kiryo et al. (2017).
# ----------------------------------------------------------------------------


def numpy_pu(f, labels, prior, beta, gamma, where=None):
  """Returns (upu value, nnpu value, gradient of the nnPU descent objective)."""
  f = np.asarray(f, np.float64)
  valid = np.ones(f.shape, bool) if where is None else np.asarray(where)
  p = valid & (labels == 1)
  u = valid & (labels == 0)
  n_p, n_u = max(1, p.sum()), max(1, u.sum())
  s = sigmoid(f)
  ds = s * (1 - s)
  r_p_plus = np.sum(sigmoid(-f)[p]) / n_p           # ℓ(f) = σ(-f)
  r_p_minus = np.sum(s[p]) / n_p                    # ℓ(-f) = σ(f)
  r_u_minus = np.sum(s[u]) / n_u
  g_p_plus = np.where(p, -ds / n_p, 0.)
  g_p_minus = np.where(p, ds / n_p, 0.)
  g_u_minus = np.where(u, ds / n_u, 0.)
  negative = r_u_minus - prior * r_p_minus
  g_negative = g_u_minus - prior * g_p_minus
  upu = prior * r_p_plus + negative
  nnpu = prior * r_p_plus + max(0., negative)
  if negative < -beta:
    grad = -gamma * g_negative
  else:
    grad = prior * g_p_plus + g_negative
  return upu, nnpu, grad, negative


PU_CASES = {
    # name: (logits, labels, prior, beta, gamma, switched?)
    "positive_negative_risk": (np.array([2., 1., -1., -3., 0.5, -2.]),
                               np.array([1, 1, 0, 0, 0, 0]), 0.3, 0., 1., False),
    # Positives scored high, unlabeled scored low: R_u^- - π R_p^- ≈ -0.47 < 0.
    "switched": (np.array([4., 3., 5., -4., -3., -5.]),
                 np.array([1, 1, 1, 0, 0, 0]), 0.5, 0., 2., True),
    # Same scores, but the negative risk stays above -β = -1.
    "within_beta": (np.array([4., 3., 5., -4., -3., -5.]),
                    np.array([1, 1, 1, 0, 0, 0]), 0.5, 1., 2., False),
    # n_p = 0: the normaliser max(1, n_p) keeps R_p^± = 0.
    "no_positives": (np.array([1., -2., 0.3, 0.1, -0.7, 2.]),
                     np.array([0, 0, 0, 0, 0, 0]), 0.4, 0., 1., False),
}


@pytest.mark.parametrize("case", sorted(PU_CASES))
def test_pu_risks_match_numpy(case):
  f, y, prior, beta, gamma, switched = PU_CASES[case]
  upu, nnpu, grad, negative = numpy_pu(f, y, prior, beta, gamma)
  assert (negative < -beta) == switched
  f32 = jnp.asarray(f, jnp.float32)
  np.testing.assert_allclose(losses.upu_risk(f32, y, prior), upu, rtol=1e-5)
  value, g = jax.value_and_grad(losses.nnpu_risk)(f32, y, prior, beta, gamma)
  np.testing.assert_allclose(value, nnpu, rtol=1e-5)
  np.testing.assert_allclose(g, grad, rtol=1e-4, atol=1e-8)
  upu_grad = jax.grad(losses.upu_risk)(f32, y, prior)
  if switched:  # -γ ∇(negative risk), not the uPU gradient.
    assert not np.allclose(g, upu_grad, atol=1e-4)
  else:  # Kiryo's non-switched step is the uPU gradient.
    np.testing.assert_allclose(g, upu_grad, rtol=1e-5)


def test_nnpu_where_and_void_labels():
  f, y, prior, beta, gamma, _ = PU_CASES["switched"]
  f = np.concatenate([f, [np.nan, 7.]]).astype(np.float32)
  y = np.concatenate([y, [255, 1]])
  where = y != 255
  where[-1] = False
  _, nnpu, grad, _ = numpy_pu(f[:6], y[:6], prior, beta, gamma)
  value, g = jax.value_and_grad(losses.nnpu_risk)(jnp.asarray(f), y, prior, beta, gamma,
                                                  where=where)
  np.testing.assert_allclose(value, nnpu, rtol=1e-5)
  np.testing.assert_allclose(g[:6], grad, rtol=1e-4, atol=1e-8)
  np.testing.assert_array_equal(g[6:], [0., 0.])


# Surrogates ℓ(v) of the PU risks and their derivatives dℓ/dv.
SURROGATES = {
    "sigmoid": (lambda v: sigmoid(-v), lambda v: -sigmoid(v) * (1 - sigmoid(v))),
    "logistic": (lambda v: np.log1p(np.exp(-v)), lambda v: -sigmoid(-v)),
}


def _softmax_nnpu_reference(logits, labels, prior, beta, gamma, surrogate="sigmoid"):
  """NumPy value, gradient and negative risk of softmax_nnpu_risk from its formulas."""
  logits = np.asarray(logits, np.float64)
  loss, dloss = SURROGATES[surrogate]
  z = logits[:, 1:].max(-1) - logits[:, 0]          # max_{k≥1} f_k - f_0
  dz = np.concatenate([-np.ones((len(z), 1)),
                       np.eye(logits.shape[1] - 1)[logits[:, 1:].argmax(-1)]], 1)
  p, u = labels != 0, labels == 0
  n_p, n_u = max(1, p.sum()), max(1, u.sum())
  r_p_plus, r_p_minus = loss(z)[p].sum() / n_p, loss(-z)[p].sum() / n_p
  r_u_minus = loss(-z)[u].sum() / n_u
  g_p_plus = np.where(p, dloss(z), 0.) / n_p        # d/dz of each partial risk
  g_p_minus = np.where(p, -dloss(-z), 0.) / n_p
  g_u_minus = np.where(u, -dloss(-z), 0.) / n_u
  negative = r_u_minus - prior * r_p_minus
  g_negative = g_u_minus - prior * g_p_minus
  value = prior * r_p_plus + max(0., negative)
  grad_z = -gamma * g_negative if negative < -beta else prior * g_p_plus + g_negative
  # Cross entropy among the relevant classes on the labelled examples.
  e = np.exp(logits[:, 1:] - logits[:, 1:].max(-1, keepdims=True))
  q = e / e.sum(-1, keepdims=True)
  onehot = np.eye(logits.shape[1])[np.where(p, labels, 1)][:, 1:]
  ce = -np.log(np.sum(q * onehot, -1))
  grad_ce = np.concatenate([np.zeros((len(z), 1)), q - onehot], 1) / n_p
  value += np.sum(ce[p]) / n_p
  grad = grad_z[:, None] * dz + np.where(p[:, None], grad_ce, 0.)
  return value, grad, negative


@pytest.mark.parametrize("case", sorted(PU_CASES))
def test_softmax_nnpu_with_one_relevant_class_is_nnpu(case):
  f, y, prior, beta, gamma, _ = PU_CASES[case]
  two_class = jnp.asarray(np.stack([0.3 * f - 1., f + 0.2], -1), jnp.float32)
  value, grad = jax.value_and_grad(losses.softmax_nnpu_risk)(two_class, y, prior, beta, gamma)
  value_ref, grad_ref = jax.value_and_grad(losses.nnpu_risk)(
      two_class[:, 1] - two_class[:, 0], y, prior, beta, gamma)
  np.testing.assert_allclose(value, value_ref, rtol=1e-5)
  np.testing.assert_allclose(grad[:, 1], grad_ref, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(grad[:, 0], -grad_ref, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("surrogate", sorted(SURROGATES))
@pytest.mark.parametrize("switched", [False, True])
def test_softmax_nnpu_matches_numpy(switched, surrogate):
  labels = np.array([0, 1, 2, 0, 2, 0, 1, 0])
  logits = LOGITS8.astype(np.float64)
  if switched:  # Relevant scores high on P, low on U: the negative risk drops below 0.
    logits = logits + np.where(labels[:, None] == 0, -4., 6.) * (np.arange(3) != 0)
  prior, beta, gamma = (0.6 if switched else 0.3), 0., 2.
  value_ref, grad_ref, negative = _softmax_nnpu_reference(logits, labels, prior, beta, gamma,
                                                          surrogate)
  assert (negative < -beta) == switched
  fn = lambda x, y, **kw: losses.softmax_nnpu_risk(x, y, prior, beta, gamma,
                                                   surrogate=surrogate, **kw)
  value, grad = jax.value_and_grad(fn)(jnp.asarray(logits, jnp.float32), labels)
  np.testing.assert_allclose(value, value_ref, rtol=1e-5)
  np.testing.assert_allclose(grad, grad_ref, rtol=1e-4, atol=1e-6)
  # Void labels and NaN logits are ignored where `where` is False.
  where = np.array([True] * 6 + [False, False])
  bad_logits = np.where(where[:, None], logits, np.nan).astype(np.float32)
  value, grad = jax.value_and_grad(fn)(jnp.asarray(bad_logits), np.where(where, labels, 255),
                                       where=where)
  value_ref, grad_ref, _ = _softmax_nnpu_reference(logits[:6], labels[:6], prior, beta, gamma,
                                                   surrogate)
  np.testing.assert_allclose(value, value_ref, rtol=1e-5)
  np.testing.assert_allclose(grad[:6], grad_ref, rtol=1e-4, atol=1e-6)
  np.testing.assert_array_equal(grad[6:], 0.)


def test_softmax_nnpu_argument_validation():
  with pytest.raises(ValueError, match="softmax_nnpu_risk.*got 3, 255"):
    losses.softmax_nnpu_risk(jnp.zeros((4, 3)), jnp.array([0, 1, 255, 3]), 0.3)
  with pytest.raises(ValueError, match="prior.*0.0"):
    losses.softmax_nnpu_risk(jnp.zeros((2, 3)), jnp.array([0, 1]), 0.)
  with pytest.raises(ValueError, match="surrogate.*hinge"):
    losses.softmax_nnpu_risk(jnp.zeros((2, 3)), jnp.array([0, 1]), 0.3, surrogate="hinge")
  assert np.isnan(jax.jit(losses.softmax_nnpu_risk)(LOGITS8, LABELS8 + 1, 0.5))


def test_unlabelled_prior():
  # 2000 relevant of 4000, half labelled: 1000 labelled, 1000 relevant among
  # the 3000 unlabelled.
  assert losses.unlabelled_prior(1000, 3000, 0.5) == pytest.approx(1 / 3)
  # c = 0.2 of 500 positives: 100 labelled, 400 hidden among 900 unlabelled.
  assert losses.unlabelled_prior(100, 900, 0.2) == pytest.approx(400 / 900)
  with pytest.raises(ValueError, match="labelled_fraction.*1.5"):
    losses.unlabelled_prior(10, 10, 1.5)
  with pytest.raises(ValueError, match="not in"):  # More labelled than c allows.
    losses.unlabelled_prior(900, 100, 0.5)


def test_pu_argument_validation():
  with pytest.raises(ValueError, match="prior.*1.5"):
    losses.nnpu_risk(jnp.zeros(3), jnp.array([1, 0, 0]), 1.5)
  with pytest.raises(ValueError, match="labels.*-1"):
    losses.upu_risk(jnp.zeros(3), jnp.array([1, -1, 0]), 0.5)


# ----------------------------------------------------------------------------
# `where` semantics and label validation.
# ----------------------------------------------------------------------------

F_VOID = np.array([0.7, -1.2, 3., np.nan, 1e4, -2., 0.1, np.inf], np.float32)
Y_VOID = np.array([1, 0, 255, 1, 0, 1, 0, 255])
WHERE_VOID = np.array([True, True, False, False, True, True, True, False])


def test_binary_where_zero_loss_and_gradient_even_for_void():
  results = binary_all(F_VOID, Y_VOID, WHERE_VOID)
  # Reference: the same elements with clean inputs everywhere.
  clean = binary_all(np.where(WHERE_VOID, F_VOID, 0.5), np.where(WHERE_VOID, Y_VOID, 0),
                     ALL_TRUE)
  for name, (value, grad) in results.items():
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad)), name
    np.testing.assert_array_equal(np.asarray(value)[~WHERE_VOID], 0., err_msg=name)
    np.testing.assert_array_equal(np.asarray(grad)[~WHERE_VOID], 0., err_msg=name)
    np.testing.assert_allclose(np.asarray(value)[WHERE_VOID],
                               np.asarray(clean[name][0])[WHERE_VOID], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(grad)[WHERE_VOID],
                               np.asarray(clean[name][1])[WHERE_VOID], rtol=1e-6)


def test_multiclass_where_zero_loss_and_gradient_even_for_void():
  logits = LOGITS8.copy()
  logits[2, 0] = np.nan
  logits[7] = [np.inf, -np.inf, 0.]
  logits[4] = [3., 1e4, -1e4]
  labels = np.where(WHERE_VOID, LABELS8, 255)
  results = multiclass_all(logits, labels, WHERE_VOID)
  clean = multiclass_all(np.where(WHERE_VOID[:, None], logits, 0.), LABELS8, ALL_TRUE)
  for name, (value, grad) in results.items():
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad)), name
    np.testing.assert_array_equal(np.asarray(value)[~WHERE_VOID], 0., err_msg=name)
    np.testing.assert_array_equal(np.asarray(grad)[~WHERE_VOID], 0., err_msg=name)
    np.testing.assert_allclose(np.asarray(value)[WHERE_VOID],
                               np.asarray(clean[name][0])[WHERE_VOID], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(grad)[WHERE_VOID],
                               np.asarray(clean[name][1])[WHERE_VOID], rtol=1e-6)


def test_concrete_out_of_range_labels_raise():
  cases = [(name, BINARY, jnp.zeros(4), jnp.array([0, 1, 255, 2]), "got 2, 255")
           for name in BINARY]
  cases += [(name, MULTICLASS, jnp.zeros((4, 3)), jnp.array([0, 1, 255, 3]), "got 3, 255")
            for name in MULTICLASS]
  for name, table, logits, labels, message in cases:
    fn = _with_kwargs(name, table)
    with pytest.raises(ValueError, match=message) as info:
      fn(logits, labels)
    assert name in str(info.value) and "where=" in str(info.value)  # Names the fix.
  # Masked out: no error (one compile per family is enough here).
  losses.logistic(jnp.zeros(4), jnp.array([0, 1, 255, 2]), where=jnp.array([1, 1, 0, 0], bool))
  losses.softmax_negative(jnp.zeros((4, 3)), jnp.array([0, 1, 255, 3]),
                          where=jnp.array([1, 1, 0, 0], bool))


def test_binary_labels_paper_convention_rejected():
  with pytest.raises(ValueError, match="-1"):
    losses.sigmoid_negative(jnp.zeros(2), jnp.array([1, -1]))


def test_argument_errors():
  with pytest.raises(TypeError, match="integer"):
    losses.softmax_cross_entropy(jnp.zeros((2, 3)), jnp.array([0., 1.]))
  with pytest.raises(ValueError, match=r"class_weights.*\(3,\)"):
    losses.weighted_softmax_cross_entropy(jnp.zeros((2, 3)), jnp.array([0, 1]), [1., 2.])
  with pytest.raises(ValueError, match="negative_class"):
    losses.softmax_negative(jnp.zeros((2, 3)), jnp.array([0, 1]), negative_class=3)
  with pytest.raises(ValueError, match="class axis"):
    losses.softmax_cross_entropy(jnp.float32(1.), jnp.array(0))


def test_out_of_range_labels_under_jit_give_nan_value_and_zero_gradient():
  """Documented behaviour when the labels are traced and cannot be checked."""
  bad = np.isin(Y_VOID, [255])
  results = binary_all(np.nan_to_num(F_VOID, posinf=1.), Y_VOID, ALL_TRUE)
  for name, (value, grad) in results.items():
    value, grad = np.asarray(value), np.asarray(grad)
    assert np.all(np.isnan(value[bad])) and np.all(np.isfinite(value[~bad])), name
    assert np.all(grad[bad] == 0.) and np.all(np.isfinite(grad)), name
  labels = LABELS8.copy()
  labels[[1, 5]] = [3, -1]
  for name, (value, grad) in multiclass_all(LOGITS8, labels, ALL_TRUE).items():
    value = np.asarray(value)
    assert np.all(np.isnan(value[[1, 5]])) and np.isfinite(np.delete(value, [1, 5])).all()
    assert np.all(np.asarray(grad)[[1, 5]] == 0.), name
  assert np.isnan(jax.jit(losses.nnpu_risk)(F_RANDOM, Y_VOID, 0.5))
  # class_balanced_weights: unchecked labels are simply not counted.
  np.testing.assert_allclose(jax.jit(losses.class_balanced_weights, static_argnums=1)(
      jnp.array([0, 1, 1, 255]), 2), [1.5, 0.75])


# ----------------------------------------------------------------------------
# Precision: bfloat16 inputs and extreme logits.
# ----------------------------------------------------------------------------


def test_bfloat16_computes_in_float32():
  f = jnp.array([-1e4, -3.3, 0.1, 2.7, 1e4, -0.5, 40., -40.], jnp.bfloat16)
  reference = binary_all(f.astype(jnp.float32), Y_RANDOM, ALL_TRUE)
  for name, (value, grad) in binary_all(f, Y_RANDOM, ALL_TRUE).items():
    assert value.dtype == jnp.float32 and grad.dtype == jnp.bfloat16, name
    np.testing.assert_allclose(value, reference[name][0], rtol=1e-6, err_msg=name)
    np.testing.assert_allclose(grad.astype(jnp.float32), reference[name][1], rtol=1e-2,
                               atol=1e-6, err_msg=name)
  logits = jnp.asarray(LOGITS8 * 1000., jnp.bfloat16)
  reference = multiclass_all(logits.astype(jnp.float32), LABELS8, ALL_TRUE)
  for name, (value, grad) in multiclass_all(logits, LABELS8, ALL_TRUE).items():
    assert value.dtype == jnp.float32 and grad.dtype == jnp.bfloat16, name
    np.testing.assert_allclose(value, reference[name][0], rtol=1e-6, err_msg=name)
    assert np.all(np.isfinite(grad.astype(jnp.float32))), name


EXTREME = hnp.arrays(np.float32, (8,), elements=st.floats(-1e4, 1e4, width=32))
BITS = hnp.arrays(np.int32, (8,), elements=st.integers(0, 1))


@hypothesis.settings(max_examples=40, deadline=None, derandomize=True, database=None)
@hypothesis.given(f=EXTREME, y=BITS, use_bf16=st.booleans())
def test_binary_losses_finite_at_extreme_logits(f, y, use_bf16):
  f = jnp.asarray(f, jnp.bfloat16 if use_bf16 else jnp.float32)
  for name, (value, grad) in binary_all(f, y, ALL_TRUE).items():
    assert np.all(np.isfinite(value)) and np.all(value >= 0.), name
    assert np.all(np.isfinite(np.asarray(grad, np.float32))), name
  # Sigmoid losses of a negative are bounded: 0 ≤ β σ(f) ≤ β = 0.5.
  negative = np.asarray(binary_all(f, y, ALL_TRUE)["sigmoid_negative"][0])[y == 0]
  assert np.all(negative <= 0.5)
  value, grad = jax.value_and_grad(losses.nnpu_risk)(f.astype(jnp.float32), y, 0.3)
  assert np.isfinite(value) and np.all(np.isfinite(grad))


@hypothesis.settings(max_examples=40, deadline=None, derandomize=True, database=None)
@hypothesis.given(
    logits=hnp.arrays(np.float32, (8, 3), elements=st.floats(-1e4, 1e4, width=32)),
    labels=hnp.arrays(np.int32, (8,), elements=st.integers(0, 2)))
def test_multiclass_losses_finite_at_extreme_logits(logits, labels):
  results = multiclass_all(logits, labels, ALL_TRUE)
  for name, (value, grad) in results.items():
    assert np.all(np.isfinite(value)) and np.all(value >= 0.), name
    assert np.all(np.isfinite(grad)), name
  # The softmax loss of the negative class is in [0, w_0 = 0.5].
  assert np.all(np.asarray(results["softmax_negative"][0])[labels == 0] <= 0.5)


INF = np.inf
# Three logits per row: +inf ahead, -inf behind, tied +inf, all -inf, all +inf.
INF_LOGITS = np.array([[INF, 0., 1.], [-INF, 0., 1.], [INF, INF, 0.], [0., -INF, -INF],
                       [INF, -INF, -INF], [-INF, -INF, -INF], [INF, INF, INF],
                       [0., INF, -INF]], np.float32)
# Two classes (f0, f1), their binary logit f1 - f0 = ±inf.
INF_TWO_CLASS = np.array([[0., INF], [0., -INF], [INF, 0.], [-INF, 0.], [-INF, INF],
                          [INF, -INF], [3., INF], [-2., -INF]], np.float32)
INF_PAIRS = [("softmax_cross_entropy", "logistic", {}),
             ("softmax_negative", "sigmoid_negative", {}),
             ("generalized_softmax_negative", "generalized_sigmoid_negative",
              dict(alpha=2., beta=3., gamma=0.5)),
             ("softmax_bootstrap_hard", "bootstrap_hard", dict(beta=0.7))]


@pytest.mark.parametrize("label", [0, 1, 2])
def test_multiclass_losses_at_infinite_logits_are_finite(label):
  labels = np.full(8, label)
  for name, (value, grad) in multiclass_all(INF_LOGITS, labels, ALL_TRUE).items():
    value = np.asarray(value)
    assert np.all(np.isfinite(value)) and np.all(value >= 0.), (name, value)
    assert np.all(np.isfinite(grad)), (name, grad)
  # Tied maxima share the mass: σ = (1/2, 1/2, 0) and (1/3, 1/3, 1/3).
  value = losses.softmax_cross_entropy(INF_LOGITS[[2, 5, 6]], labels[:3])
  np.testing.assert_allclose(value[1:], math.log(3.), rtol=1e-6)
  if label < 2:
    np.testing.assert_allclose(value[0], math.log(2.), rtol=1e-6)
  else:  # The class behind +inf: a finite stand-in for +inf.
    assert value[0] > 1e37
  value, grad = jax.value_and_grad(losses.softmax_nnpu_risk)(INF_LOGITS, labels, 0.3)
  assert np.isfinite(value) and np.all(np.isfinite(grad)), (value, grad)
  # NaN logits stay NaN.
  assert np.isnan(losses.softmax_cross_entropy(np.array([np.nan, 0., INF]), label))


@pytest.mark.parametrize("label", [0, 1])
def test_multiclass_losses_at_infinite_logits_mirror_the_binary_ones(label):
  """With two classes: the binary loss of f1 - f0 = ±inf, +inf values excepted."""
  labels = np.full(8, label)
  difference = INF_TWO_CLASS[:, 1] - INF_TWO_CLASS[:, 0]
  pairs = [(losses.get(m), losses.get(b), kw) for m, b, kw in INF_PAIRS]
  pairs.append((losses.softmax_nnpu_risk, losses.nnpu_risk, dict(prior=0.3, gamma=0.5)))
  for multiclass, binary, kwargs in pairs:
    name = multiclass.__name__
    value, value_ref = (np.asarray(fn(x, labels, **kwargs)) for fn, x in
                        ((multiclass, INF_TWO_CLASS), (binary, difference)))
    assert np.all(np.isfinite(value)), (name, value)
    infinite = np.isinf(value_ref)  # +inf binary values: about 1e38 here.
    assert np.all(value_ref[infinite] > 0.) and np.all(value[infinite] > 1e37), name
    np.testing.assert_allclose(value[~infinite], value_ref[~infinite], rtol=1e-6, err_msg=name)
    total = lambda x, fn, kwargs=kwargs: jnp.sum(fn(x, labels, **kwargs))
    grad = jax.grad(total)(INF_TWO_CLASS, multiclass)
    grad_ref = jax.grad(total)(difference, binary)
    assert np.all(np.isfinite(grad)) and np.all(np.isfinite(grad_ref)), name
    np.testing.assert_allclose(grad[:, 1], grad_ref, rtol=1e-6, atol=1e-30, err_msg=name)
    np.testing.assert_allclose(grad[:, 0], -grad_ref, rtol=1e-6, atol=1e-30, err_msg=name)


# ----------------------------------------------------------------------------
# The fused binary formulation (one exp for value and gradient) against plain
# jax.nn autodiff and float64 references.
# ----------------------------------------------------------------------------

F_WIDE = np.array([-1e4, -100., -88., -20., -3.3, -1e-3, 0., 1e-3, 0.5, 3.3, 17., 20.,
                   88., 100., 1e4], np.float32)


def _plain_sigmoid_parts(f):
  return (jax.nn.log_sigmoid(f), jax.nn.log_sigmoid(-f), jax.nn.sigmoid(f),
          jax.nn.sigmoid(-f))


def test_sigmoid_parts_match_plain_autodiff_and_analytic():
  f64 = F_WIDE.astype(np.float64)
  s, s_minus = sigmoid(f64), sigmoid(-f64)
  analytic = (s_minus, -s, s * s_minus, -s * s_minus)  # d/df of each part
  for i in range(4):
    part = lambda x, i=i: losses.sigmoid_parts(x)[i]
    plain = lambda x, i=i: _plain_sigmoid_parts(x)[i]
    value = jax.jit(part)(F_WIDE)
    np.testing.assert_allclose(value, jax.jit(plain)(F_WIDE), rtol=1e-6, atol=1e-30,
                               err_msg=str(i))
    grad = jax.jit(jax.vmap(jax.grad(part)))(F_WIDE)
    # Plain autodiff of σ gives σ (1 - σ) = 0 where σ rounds to 1 (f ≳ 17);
    # σ(f) σ(-f) keeps the tiny true value.
    np.testing.assert_allclose(grad, jax.jit(jax.vmap(jax.grad(plain)))(F_WIDE), rtol=1e-6,
                               atol=1e-7, err_msg=str(i))
    np.testing.assert_allclose(grad, analytic[i], rtol=1e-6, atol=1e-30, err_msg=str(i))
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad)), i


def test_sigmoid_parts_forward_mode_and_second_derivative():
  f = jnp.asarray(F_WIDE[3:-3])  # |f| ≤ 20: the second derivative is not all 0
  fn = lambda x: jnp.sum(losses.logistic(x, jnp.ones_like(x, jnp.int32)))
  np.testing.assert_allclose(jax.jacfwd(fn)(f), jax.grad(fn)(f), rtol=1e-6)
  s = sigmoid(np.asarray(f, np.float64))
  hessian = jax.jit(jax.hessian(fn))(f)
  np.testing.assert_allclose(np.diag(hessian), s * (1. - s), rtol=1e-5, atol=1e-12)


def _softplus64(x):
  return np.maximum(x, 0.) + np.log1p(np.exp(-np.abs(x)))


def _binary_reference(f, label):
  """Float64 values and derivatives of the BINARY table's losses at logits f."""
  s, s_minus = sigmoid(f), sigmoid(-f)
  s3 = sigmoid(3. * f)
  if label:
    return {"logistic": (_softplus64(-f), -s_minus),
            "weighted_logistic": (2. * _softplus64(-f), -2. * s_minus),
            "sigmoid_negative": (2. * _softplus64(-f), -2. * s_minus),
            "generalized_sigmoid_negative": (_softplus64(-f), -s_minus),
            "bootstrap_hard": (_softplus64(-f), -s_minus)}
  hat = np.where(f > 0, _softplus64(-f), _softplus64(f))
  return {"logistic": (_softplus64(f), s),
          "weighted_logistic": (0.5 * _softplus64(f), 0.5 * s),
          "sigmoid_negative": (0.5 * s, 0.5 * s * s_minus),
          "generalized_sigmoid_negative": (2. * s3 ** 0.5, 3. * s3 ** 0.5 * sigmoid(-3. * f)),
          "bootstrap_hard": (0.7 * _softplus64(f) + 0.3 * hat, s - 0.3 * (f > 0))}


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("label", [0, 1])
def test_binary_losses_match_float64_at_extreme_logits(dtype, label):
  f = jnp.asarray(F_WIDE, dtype)
  where = np.arange(F_WIDE.size) % 5 != 3
  f_nan = jnp.where(where, f, jnp.nan)  # where=False: NaN logits must not leak
  results = binary_all(f_nan, np.full(F_WIDE.size, label), where)
  reference = _binary_reference(np.asarray(f, np.float64), label)
  for name, (value, grad) in results.items():
    want_value, want_grad = reference[name]
    assert value.dtype == jnp.float32 and grad.dtype == dtype, name
    grad = np.asarray(grad, np.float32)
    np.testing.assert_allclose(np.asarray(value)[where], want_value[where], rtol=1e-5,
                               atol=1e-30, err_msg=name)
    np.testing.assert_allclose(grad[where], want_grad[where],
                               rtol=1e-5 if dtype == jnp.float32 else 1e-2, atol=1e-30,
                               err_msg=name)
    np.testing.assert_array_equal(np.asarray(value)[~where], 0., err_msg=name)
    np.testing.assert_array_equal(grad[~where], 0., err_msg=name)


# ----------------------------------------------------------------------------
# jit / vmap / grad.
# ----------------------------------------------------------------------------


def _everything(f, y, logits, labels, where):
  """Every public function and its gradient, on a batch of examples."""
  out = {}
  for table, x, t in ((BINARY, f, y), (MULTICLASS, logits, labels)):
    for name in table:
      fn = _with_kwargs(name, table)
      out[name] = jax.value_and_grad(
          lambda x, fn=fn, t=t: losses.masked_mean(fn(x, t, where=where), where))(x)
  for name in losses.RISK_ESTIMATORS:
    out[name] = jax.value_and_grad(losses.get(name))(f, y, 0.4, where=where)
  for name in losses.MULTICLASS_RISK_ESTIMATORS:
    out[name] = jax.value_and_grad(losses.get(name))(logits, labels, 0.4, where=where)
  out["class_balanced_weights"] = losses.class_balanced_weights(labels, 3, where=where)
  return out


_batched_everything = jax.jit(jax.vmap(_everything))


class TransformTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_jit_vmap_grad(self):
    where = np.stack([WHERE_VOID, ALL_TRUE])
    f = np.stack([F_RANDOM, -F_RANDOM])
    y = np.stack([Y_RANDOM, 1 - Y_RANDOM])
    logits = np.stack([LOGITS8, LOGITS8[::-1]])
    labels = np.stack([LABELS8, LABELS8[::-1]])
    batched = _batched_everything(f, y, logits, labels, where)
    single = self.variant(_everything)
    for i in range(2):
      row = single(f[i], y[i], logits[i], labels[i], where[i])
      chex.assert_trees_all_close(jax.tree.map(lambda a, i=i: a[i], batched), row,
                                  rtol=1e-5, atol=1e-7)
      chex.assert_tree_all_finite(row)
      for name in BINARY:
        assert np.all(np.asarray(row[name][1])[~where[i]] == 0.), name
