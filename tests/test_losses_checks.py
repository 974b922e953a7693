"""Tests of jaxpu.losses' argument checks (jaxpu/losses/checks.py).

Shapes are never broadcast (eager and under jit), concrete loss parameters
out of range raise a ValueError naming them, traced ones give a NaN loss, and
valid traced parameters change neither value nor gradient. Almost everything
here fails at trace time, so these tests compile little.
"""

import ast
import math
import pathlib
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpu import losses
from jaxpu.losses import checks

# Every public name of jaxpu.losses before it became a package, and sigmoid_parts.
PUBLIC_API = (
    "Array", "ArrayLike", "BINARY_LOSSES", "MULTICLASS_LOSSES",
    "MULTICLASS_RISK_ESTIMATORS", "PU_SURROGATES", "RISK_ESTIMATORS",
    "bootstrap_hard", "class_balanced_weights", "generalized_sigmoid_negative",
    "generalized_softmax_negative", "get", "logistic", "masked_mean", "nnpu_risk",
    "sigmoid_negative", "softmax_bootstrap_hard", "softmax_cross_entropy",
    "softmax_negative", "softmax_nnpu_risk", "unlabelled_prior", "upu_risk",
    "weighted_logistic", "weighted_softmax_cross_entropy",
    "sigmoid_parts",  # used by tests/test_losses.py and benchmarks/README.md
)

# Required arguments beyond (logits, labels), valid for 3 classes.
REQUIRED = {"upu_risk": dict(prior=0.3), "nnpu_risk": dict(prior=0.3),
            "softmax_nnpu_risk": dict(prior=0.3),
            "weighted_softmax_cross_entropy": dict(class_weights=[0.5, 1., 2.])}
BINARY = losses.BINARY_LOSSES + losses.RISK_ESTIMATORS
MULTICLASS = losses.MULTICLASS_LOSSES + losses.MULTICLASS_RISK_ESTIMATORS


def _call(name, logits, labels, **kwargs):
  return losses.get(name)(logits, labels, **REQUIRED.get(name, {}), **kwargs)


def _eager_and_jit(fn):
  """fn itself and fn under jax.jit (checks must run at trace time in both)."""
  return [("eager", fn), ("jit", jax.jit(fn))]


def test_public_api_is_unchanged():
  for name in PUBLIC_API:
    assert hasattr(losses, name), name
  namespace = {}
  exec(f"from jaxpu.losses import {', '.join(PUBLIC_API)}", namespace)  # pylint: disable=exec-used
  for name in losses.BINARY_LOSSES + MULTICLASS + losses.RISK_ESTIMATORS:
    assert namespace[name] is losses.get(name), name


def test_all_lists_the_public_api():
  assert set(losses.__all__) == set(PUBLIC_API)


def test_package_exports_no_private_name():
  private = [n for n in dir(losses) if n.startswith("_") and not n.startswith("__")]
  assert not private
  assert not [n for n in losses.__all__ if n.startswith("_")]


def test_no_private_name_is_imported_across_modules():
  """`from m import _x` or `m._x` of another jaxpu.losses module: none."""
  modules = {"binary", "multiclass", "pu", "batch", "checks", "common"}
  folder = pathlib.Path(losses.__file__).parent
  assert {p.stem for p in folder.glob("*.py")} == modules | {"__init__"}
  for path in folder.glob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxpu"):
        assert not [a.name for a in node.names if a.name.startswith("_")], (path, node.lineno)
      if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        if node.value.id in modules:
          assert not node.attr.startswith("_"), (path, node.lineno, node.attr)


# ----------------------------------------------------------------------------
# Shapes: no broadcasting, eager or under jit.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("name", BINARY)
def test_binary_trailing_logit_axis_raises(name, mode):
  # (N, 1) logits against (N,) labels used to broadcast to an (N, N) loss.
  fn = dict(_eager_and_jit(lambda f, y: _call(name, f, y)))[mode]
  with pytest.raises(ValueError, match=r"logits \(4, 1\) and labels \(4,\)") as info:
    fn(jnp.zeros((4, 1)), jnp.array([0, 1, 1, 0]))
  assert name in str(info.value) and "logits[..., 0]" in str(info.value)
  with pytest.raises(ValueError, match=r"logits \(4,\) and labels \(4, 1\)"):
    fn(jnp.zeros(4), jnp.array([[0], [1], [1], [0]]))
  with pytest.raises(ValueError, match=r"logits \(3,\) and labels \(2, 1\)"):
    fn(jnp.zeros(3), jnp.zeros((2, 1), jnp.int32))


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("name", MULTICLASS)
def test_multiclass_labels_with_trailing_axis_raise(name, mode):
  fn = dict(_eager_and_jit(lambda f, y: _call(name, f, y)))[mode]
  with pytest.raises(ValueError, match=r"logits \(4, 3\) and labels \(4, 1\)") as info:
    fn(jnp.zeros((4, 3)), jnp.array([[0], [1], [2], [0]]))
  assert name in str(info.value) and "labels[..., 0]" in str(info.value)
  with pytest.raises(ValueError, match=r"logits \(3,\) and labels \(4,\)"):  # no [C] vs [N]
    fn(jnp.zeros(3), jnp.array([0, 1, 2, 0]))


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("name", BINARY + MULTICLASS)
def test_where_must_have_the_labels_shape(name, mode):
  logits = jnp.zeros((4, 3)) if name in MULTICLASS else jnp.zeros(4)
  labels = jnp.array([0, 1, 1, 0])
  fn = dict(_eager_and_jit(lambda f, y, w: _call(name, f, y, where=w)))[mode]
  with pytest.raises(ValueError, match=r"where.*\(4,\), got \(4, 1\)") as info:
    fn(logits, labels, jnp.ones((4, 1), bool))
  assert name in str(info.value)
  with pytest.raises(ValueError, match=r"where.*\(4,\), got \(\)"):
    fn(logits, labels, jnp.array(True))


def test_batch_helpers_do_not_broadcast_where_up():
  labels = jnp.array([0, 1, 1, 0])
  for _, call in _eager_and_jit(lambda y, w: losses.class_balanced_weights(y, 2, where=w)):
    with pytest.raises(ValueError, match=r"class_balanced_weights: where.*\(4, 1\)"):
      call(labels, jnp.ones((4, 1), bool))
  with pytest.raises(ValueError, match=r"masked_mean.*\(4, 1\).*\(4,\)"):
    losses.masked_mean(jnp.ones(4), jnp.ones((4, 1), bool))


@pytest.mark.parametrize("where_shape", [(2, 1), (1, 3), (3,), (), (2, 3, 1)])
def test_masked_mean_where_must_have_the_values_shape(where_shape):
  # A mask that broadcasts to the values used to be accepted as a mask per row.
  values = jnp.arange(6.).reshape(2, 3)
  for mode, call in _eager_and_jit(losses.masked_mean):
    with pytest.raises(ValueError, match=rf"masked_mean: where of shape "
                       rf"{re.escape(str(where_shape))}.*values' shape \(2, 3\)"):
      call(values, jnp.ones(where_shape, bool))
    assert float(call(values, jnp.ones((2, 3), bool))) == 2.5, mode


# ----------------------------------------------------------------------------
# Loss parameters.
# ----------------------------------------------------------------------------

NAN, INF = math.nan, math.inf
# (loss, bad keyword arguments, the parameter named in the error, its range).
BAD_PARAMS = [
    ("weighted_logistic", dict(negative_weight=-0.5), "negative_weight", r"\[0, inf\)"),
    ("weighted_logistic", dict(positive_weight=NAN), "positive_weight", r"\[0, inf\)"),
    ("weighted_logistic", dict(negative_weight=INF), "negative_weight", r"\[0, inf\)"),
    ("sigmoid_negative", dict(negative_weight=-1.), "negative_weight", r"\[0, inf\)"),
    ("sigmoid_negative", dict(positive_weight=NAN), "positive_weight", r"\[0, inf\)"),
    ("generalized_sigmoid_negative", dict(gamma=-1.), "gamma", r"\(0, inf\)"),
    ("generalized_sigmoid_negative", dict(gamma=0.), "gamma", r"\(0, inf\)"),
    ("generalized_sigmoid_negative", dict(beta=0.), "beta", r"\(0, inf\)"),
    ("generalized_sigmoid_negative", dict(alpha=-2.), "alpha", r"\[0, inf\)"),
    ("bootstrap_hard", dict(beta=5.), "beta", r"\[0, 1\]"),
    ("bootstrap_hard", dict(beta=-0.1), "beta", r"\[0, 1\]"),
    ("weighted_softmax_cross_entropy", dict(class_weights=[1., -1., 1.]), "class_weights",
     r"\[0, inf\)"),
    ("weighted_softmax_cross_entropy", dict(class_weights=[1., NAN, 1.]), "class_weights",
     r"\[0, inf\)"),
    ("softmax_negative", dict(class_weights=[1., INF, 1.]), "class_weights", r"\[0, inf\)"),
    ("generalized_softmax_negative", dict(gamma=-1.), "gamma", r"\(0, inf\)"),
    ("generalized_softmax_negative", dict(beta=NAN), "beta", r"\(0, inf\)"),
    ("generalized_softmax_negative", dict(alpha=-1.), "alpha", r"\[0, inf\)"),
    ("softmax_bootstrap_hard", dict(beta=5.), "beta", r"\[0, 1\]"),
    ("upu_risk", dict(prior=1.5), "prior", r"\(0, 1\)"),
    ("upu_risk", dict(prior=NAN), "prior", r"\(0, 1\)"),
    ("nnpu_risk", dict(prior=0.), "prior", r"\(0, 1\)"),
    ("nnpu_risk", dict(beta=-1.), "beta", r"\[0, inf\)"),
    ("nnpu_risk", dict(gamma=-0.5), "gamma", r"\[0, inf\)"),
    ("softmax_nnpu_risk", dict(prior=1.), "prior", r"\(0, 1\)"),
    ("softmax_nnpu_risk", dict(gamma=NAN), "gamma", r"\[0, inf\)"),
]


def _inputs(name):
  if name in MULTICLASS:
    return jnp.zeros((4, 3)), jnp.array([0, 1, 2, 0])
  return jnp.zeros(4), jnp.array([0, 1, 1, 0])


def _kwargs(name, bad):
  return {**REQUIRED.get(name, {}), **bad}


@pytest.mark.parametrize("name, bad, param, interval", BAD_PARAMS,
                         ids=[f"{n}-{p}={list(b.values())[0]}" for n, b, p, _ in BAD_PARAMS])
def test_bad_concrete_parameter_raises(name, bad, param, interval):
  logits, labels = _inputs(name)
  kwargs = _kwargs(name, bad)
  fn = lambda f, y: losses.get(name)(f, y, **kwargs)
  for mode, call in _eager_and_jit(fn):  # Python constants are concrete under jit too.
    with pytest.raises(ValueError, match=rf"{name}: {param} must be .*{interval}; got") as info:
      call(logits, labels)
    assert f"got {list(bad.values())[0]}." in str(info.value), (mode, info.value)


@pytest.mark.parametrize("name, bad, param, interval", BAD_PARAMS,
                         ids=[f"{n}-{p}={list(b.values())[0]}" for n, b, p, _ in BAD_PARAMS])
def test_bad_traced_parameter_gives_nan_under_jit(name, bad, param, interval):
  del interval
  logits, labels = _inputs(name)
  kwargs = _kwargs(name, bad)
  traced = {param: jnp.asarray(kwargs.pop(param), jnp.float32)}

  def loss(f, params):
    return losses.get(name)(f, labels, **kwargs, **params)

  value = jax.jit(loss)(logits, traced)
  assert value.shape == labels.shape or value.shape == ()
  assert np.all(np.isnan(value)), (name, param, value)
  # The gradient is no plausible number either: 0 (through the select) or NaN.
  mean = lambda f, p: losses.masked_mean(loss(f, p))
  grad = np.asarray(jax.jit(jax.grad(mean))(logits, traced))
  assert np.all((grad == 0.) | np.isnan(grad)), (name, param, grad)


# Valid parameters, given as traced jit arguments (edge values included).
VALID_PARAMS = {
    "weighted_logistic": dict(positive_weight=2., negative_weight=0.5),
    "sigmoid_negative": dict(positive_weight=2., negative_weight=0.),
    "generalized_sigmoid_negative": dict(alpha=2., beta=3., gamma=0.5),
    "bootstrap_hard": dict(beta=0.),
    "upu_risk": dict(prior=0.3),
    "nnpu_risk": dict(prior=0.7, beta=0., gamma=0.),
    "weighted_softmax_cross_entropy": dict(class_weights=[0.5, 0., 2.]),
    "softmax_negative": dict(class_weights=[0.5, 1., 2.]),
    "generalized_softmax_negative": dict(alpha=0., beta=3., gamma=0.5),
    "softmax_bootstrap_hard": dict(beta=1.),
    "softmax_nnpu_risk": dict(prior=0.3, beta=1e-3, gamma=2.),
}


def test_valid_traced_parameters_change_neither_value_nor_gradient(monkeypatch):
  """The NaN select for traced parameters is exact, in value and gradient."""
  rng = np.random.default_rng(3)
  where = np.array([True] * 7 + [False])
  binary = (jnp.asarray(rng.normal(0., 4., 8), jnp.float32), jnp.asarray(rng.integers(0, 2, 8)))
  multiclass = (jnp.asarray(rng.normal(0., 4., (8, 3)), jnp.float32),
                jnp.asarray(rng.integers(0, 3, 8)))

  def value_and_grads(name):
    logits, labels = multiclass if name in MULTICLASS else binary
    params = {k: jnp.asarray(v, jnp.float32) for k, v in VALID_PARAMS[name].items()}

    def objective(f, p, y, w):
      value = losses.get(name)(f, y, where=w, **p)
      return value if value.ndim == 0 else losses.masked_mean(value, w)

    return jax.jit(jax.value_and_grad(objective, argnums=(0, 1)))(logits, params, labels,
                                                                  where)

  with_select = {name: value_and_grads(name) for name in VALID_PARAMS}
  # The same programs without the select: as if every parameter were concrete.
  monkeypatch.setattr(checks, "check_params", lambda *args, **kwargs: None)
  for name, expected in with_select.items():
    assert np.all(np.isfinite(expected[0])), name
    jax.tree.map(lambda a, b, name=name: np.testing.assert_array_equal(a, b, err_msg=name),
                 value_and_grads(name), expected)


def test_valid_edge_parameters_are_accepted():
  f, y = jnp.array([-2., 0.5, 3.]), jnp.array([0, 1, 0])
  np.testing.assert_array_equal(losses.sigmoid_negative(f, y, negative_weight=0.)[::2], 0.)
  np.testing.assert_allclose(losses.bootstrap_hard(f, y, beta=1.), losses.logistic(f, y))
  losses.bootstrap_hard(f, y, beta=0.)
  losses.generalized_sigmoid_negative(f, y, alpha=0., beta=1e-3, gamma=1e-3)
  losses.nnpu_risk(f, y, 1e-6, beta=0., gamma=0.)
  losses.nnpu_risk(f, y, 0.5, gamma=2.)  # Kiryo et al. take γ ≤ 1; larger is accepted.


# ----------------------------------------------------------------------------
# Array parameters: broadcast to the labels' shape without changing it.
# ----------------------------------------------------------------------------

# (loss, parameter, a shape that would change the result's shape), for labels of
# shape (4,): elementwise losses gave (4, 4) or (2, 4) losses, the risks (4,) "risks".
BROADCASTING_PARAMS = [
    ("weighted_logistic", "negative_weight", (4, 1)),
    ("weighted_logistic", "positive_weight", (2, 4)),
    ("sigmoid_negative", "negative_weight", (4, 1)),
    ("sigmoid_negative", "positive_weight", (1, 1)),
    ("generalized_sigmoid_negative", "alpha", (4, 1)),
    ("generalized_sigmoid_negative", "beta", (4, 1)),
    ("generalized_sigmoid_negative", "gamma", (4, 1)),
    ("bootstrap_hard", "beta", (4, 1)),
    ("generalized_softmax_negative", "alpha", (4, 1)),
    ("generalized_softmax_negative", "beta", (4, 1)),
    ("generalized_softmax_negative", "gamma", (3, 4)),
    ("softmax_bootstrap_hard", "beta", (4, 1)),
    ("upu_risk", "prior", (4,)),
    ("nnpu_risk", "prior", (4,)),
    ("nnpu_risk", "beta", (1,)),
    ("nnpu_risk", "gamma", (4,)),
    ("softmax_nnpu_risk", "prior", (4,)),
    ("softmax_nnpu_risk", "beta", (1,)),
]
VALID_VALUE = {"prior": 0.3, "beta": 0.5, "gamma": 0.5}


@pytest.mark.parametrize("name, param, shape", BROADCASTING_PARAMS,
                         ids=[f"{n}-{p}{s}" for n, p, s in BROADCASTING_PARAMS])
def test_broadcasting_array_parameter_raises(name, param, shape):
  logits, labels = _inputs(name)
  value = np.full(shape, VALID_VALUE.get(param, 1.), np.float32)
  kwargs = {**REQUIRED.get(name, {}), param: value}
  fn = lambda f, y, kw: losses.get(name)(f, y, **kw)
  for mode, call in _eager_and_jit(fn):  # Concrete, then traced parameters.
    with pytest.raises(ValueError, match=rf"{name}: {param} must be a scalar") as info:
      call(logits, labels, kwargs)
    message = str(info.value)
    assert f"got shape {shape}" in message and "labels of shape (4,)" in message, (mode, message)


def test_class_weights_of_another_shape_raise():
  logits, labels = _inputs("softmax_negative")
  for shape in [(3, 1), (1, 3), (4,), (4, 3), ()]:
    for name in ("weighted_softmax_cross_entropy", "softmax_negative"):
      with pytest.raises(ValueError, match=rf"{name}: class_weights must have shape \(3,\)"):
        losses.get(name)(logits, labels, class_weights=np.ones(shape, np.float32))


def test_array_parameters_that_keep_the_labels_shape_are_elementwise():
  """Per-element (or broadcasting-in) parameters equal per-element scalar calls."""
  rng = np.random.default_rng(5)
  f = jnp.asarray(rng.normal(0., 3., (2, 4)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 2, (2, 4)))
  logits = jnp.asarray(rng.normal(0., 3., (2, 4, 3)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 3, (2, 4)))
  per_element = np.array([[0.5, 1., 2., 3.], [0.25, 0.75, 1.5, 4.]], np.float32)
  unit = per_element / per_element.max()
  cases = [("weighted_logistic", "negative_weight", per_element),
           ("sigmoid_negative", "positive_weight", per_element[:1]),  # (1, 4) broadcasts in
           ("generalized_sigmoid_negative", "beta", per_element),
           ("bootstrap_hard", "beta", unit),
           ("generalized_softmax_negative", "beta", per_element),
           ("generalized_softmax_negative", "gamma", per_element[:, :1]),  # (2, 1)
           ("softmax_bootstrap_hard", "beta", unit)]
  for name, param, value in cases:
    x, t = (logits, labels) if name in MULTICLASS else (f, y)
    out = losses.get(name)(x, t, **{param: value})
    assert out.shape == t.shape, name
    full = np.broadcast_to(value, t.shape)
    for i, j in np.ndindex(*t.shape):
      one = losses.get(name)(x[i, j], t[i, j], **{param: float(full[i, j])})
      np.testing.assert_allclose(out[i, j], one, rtol=1e-6, err_msg=f"{name} {param} {i, j}")


def test_shape_checks_stay_on_when_chex_asserts_are_disabled():
  chex.disable_asserts()
  try:
    with pytest.raises(ValueError, match=r"logits \(4, 1\) and labels \(4,\)"):
      losses.logistic(jnp.zeros((4, 1)), jnp.array([0, 1, 1, 0]))
    with pytest.raises(ValueError, match=r"where must have the labels' shape"):
      losses.softmax_negative(jnp.zeros((4, 3)), jnp.array([0, 1, 2, 0]),
                              where=jnp.ones((4, 1), bool))
    with pytest.raises(ValueError, match=r"negative_weight must be a scalar"):
      losses.weighted_logistic(jnp.zeros(4), jnp.array([0, 1, 1, 0]),
                               negative_weight=jnp.ones((4, 1)))
    with pytest.raises(ValueError, match=r"masked_mean: where of shape \(2, 1\)"):
      losses.masked_mean(jnp.zeros((2, 3)), jnp.ones((2, 1), bool))
  finally:
    chex.enable_asserts()


def test_a_fractional_negative_class_is_refused_not_truncated():
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jaxpu import losses  # pylint: disable=g-import-not-at-top
  logits, labels = jnp.zeros((4, 3)), jnp.array([0, 1, 2, 1])
  with pytest.raises(ValueError, match=r"negative_class must be an integer class index in "
                                       r"\[0, 3\), got 1\.7"):
    losses.softmax_negative(logits, labels, negative_class=1.7)
