"""Training core: optimizers, loss normalisation, shard_map == pmap == one device, fit."""

import functools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from jaxpu import models, train


def _moons(n, seed, noise=0.1):
  """Two interleaving half circles (§5.1.1), labels 1 (upper) and 0 (lower)."""
  rs = np.random.RandomState(seed)
  t = rs.uniform(0, np.pi, n)
  y = rs.randint(0, 2, n)
  upper = np.stack([np.cos(t), np.sin(t)], 1)
  lower = np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1)
  x = np.where(y[:, None] == 1, upper, lower) + rs.normal(0, noise, (n, 2))
  return x.astype(np.float32), y.astype(np.int32)


# --- optimizers --------------------------------------------------------------------


def test_sgd_momentum_and_weight_decay_match_hand_update():
  params = {"kernel": jnp.array([[1., -2.], [3., 0.5]]), "bias": jnp.array([1., 2.])}
  grads = {"kernel": jnp.array([[0.1, 0.2], [-0.3, 0.4]]), "bias": jnp.array([0.5, -0.5])}
  lr, mu, wd = 0.1, 0.9, 0.01
  opt = train.make_optimizer("sgd", lr, momentum=mu, weight_decay=wd)
  state = opt.init(params)
  p = params
  for _ in range(2):
    updates, state = opt.update(grads, state, p)
    p = optax.apply_updates(p, updates)
  # Caffe SGD: v ← μ v + (g + λ w) for kernels (biases: no decay); w ← w - η v.
  k0, b0 = np.asarray(params["kernel"]), np.asarray(params["bias"])
  gk, gb = np.asarray(grads["kernel"]), np.asarray(grads["bias"])
  v1 = gk + wd * k0
  k1 = k0 - lr * v1
  k2 = k1 - lr * (mu * v1 + gk + wd * k1)
  b2 = b0 - lr * (gb + mu * gb + gb)
  np.testing.assert_allclose(p["kernel"], k2, rtol=1e-6)
  np.testing.assert_allclose(p["bias"], b2, rtol=1e-6)


def _caffe_tree():
  return {"encoder": {"conv": {"kernel": jnp.array([[1., -2.], [3., 0.5]]),
                               "bias": jnp.array([1., 2.])}},
          "head": {"score": {"kernel": jnp.array([[0.5], [-1.]]), "bias": jnp.array([0.7])}}}


@pytest.mark.parametrize("steps", [1, 3])
def test_lr_and_wd_mults_are_caffes_lr_mult_and_decay_mult(steps):
  """V ← μV + η·lr_mult·(∇ + λ·decay_mult·W), W ← W − V, per parameter."""
  params = _caffe_tree()
  grads = {"encoder": {"conv": {"kernel": jnp.array([[0.1, 0.2], [-0.3, 0.4]]),
                                "bias": jnp.array([0.5, -0.5])}},
           "head": {"score": {"kernel": jnp.array([[0.2], [0.1]]), "bias": jnp.array([-0.3])}}}
  lr, mu, wd = 0.1, 0.9, 0.01
  lr_mults = ((r"^head/score/bias$", 2.), (r"conv/kernel", 0.5))
  wd_mults = ((r"^head/score/bias$", 0.), (r"score/kernel", 3.))  # conv/bias: 1 (unmatched)
  caffe = {("conv", "kernel"): (0.5, 1.), ("conv", "bias"): (1., 1.),
           ("score", "kernel"): (1., 3.), ("score", "bias"): (2., 0.)}
  opt = train.make_optimizer("sgd", lr, momentum=mu, weight_decay=wd, lr_mults=lr_mults,
                             wd_mults=wd_mults)
  state = opt.init(params)
  p = params
  w = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
  v = jax.tree.map(np.zeros_like, w)
  for _ in range(steps):
    updates, state = opt.update(grads, state, p)
    p = optax.apply_updates(p, updates)

    def velocity(path, v, g, w):
      lr_mult, decay_mult = caffe[(path[-2].key, path[-1].key)]
      return mu * v + lr * lr_mult * (np.asarray(g, np.float64) + wd * decay_mult * w)
    v = jax.tree_util.tree_map_with_path(velocity, v, grads, w)
    w = jax.tree.map(np.subtract, w, v)
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-6), p, w)


def test_lr_mult_zero_freezes_and_adam_takes_mults():
  params = _caffe_tree()
  nan_grads = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), params)
  opt = train.make_optimizer("sgd", 0.1, weight_decay=0.1, lr_mults=((r"^encoder/", 0.),))
  updates, _ = opt.update(nan_grads, opt.init(params), params)
  for leaf in jax.tree.leaves(updates["encoder"]):  # exactly 0, even for NaN gradients
    assert not np.any(np.asarray(leaf))
  grads = jax.tree.map(jnp.ones_like, params)
  plain = train.make_optimizer("adam", 0.1)
  scaled = train.make_optimizer("adam", 0.1, lr_mults=((r"score/bias", 3.),))
  u_plain, _ = plain.update(grads, plain.init(params), params)
  u_scaled, _ = scaled.update(grads, scaled.init(params), params)
  np.testing.assert_allclose(u_scaled["head"]["score"]["bias"],
                             3 * u_plain["head"]["score"]["bias"], rtol=1e-6)
  np.testing.assert_array_equal(u_scaled["encoder"]["conv"]["kernel"],
                                u_plain["encoder"]["conv"]["kernel"])


def _model_params(name):
  """Random params of model `name` (fcn_alexnet narrow: the same parameter names)."""
  options = {"fcn_alexnet": {"width": 1 / 16}}.get(name, {})
  model = models.get(name, 3, **options)
  shape = (1, 2) if name == "mlp" else (1, 32, 32, 3)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))["params"]
  rs = np.random.RandomState(0)
  return jax.tree.map(lambda s: jnp.asarray(rs.standard_normal(s.shape), s.dtype), shapes)


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_default_mults_are_the_previous_optimizer(name):
  """Default multipliers: exactly the previous chains (same state, bit-identical updates);
  the default decay mask (ndim > 1) is `wd_mults=((r"/bias$", 0.),)` for every model."""
  params = _model_params(name)
  grads = jax.tree.map(lambda p: 0.1 * jnp.cos(p), params)
  kernels = lambda tree: jax.tree.map(lambda p: jnp.ndim(p) > 1, tree)
  previous = {
      "adam": (train.make_optimizer("adam", 1e-4), optax.adam(optax.constant_schedule(1e-4))),
      "sgd": (train.make_optimizer("sgd", 1e-4, momentum=0.9, weight_decay=5e-4),
              optax.chain(optax.add_decayed_weights(5e-4, mask=kernels),
                          optax.sgd(optax.constant_schedule(1e-4), momentum=0.9))),
  }
  for opt_name, (new, old) in previous.items():
    new_state, old_state = new.init(params), old.init(params)
    assert jax.tree.structure(new_state) == jax.tree.structure(old_state), opt_name
    new_update, old_update = jax.jit(new.update), jax.jit(old.update)  # as in a train step
    for _ in range(2):
      u_new, new_state = new_update(grads, new_state, params)
      u_old, old_state = old_update(grads, old_state, params)
      jax.tree.map(np.testing.assert_array_equal, u_new, u_old)
  masks = train.resolve_mults(params, ((r"/bias$", 0.),))
  assert masks == jax.tree.map(lambda p: float(jnp.ndim(p) > 1), params)
  explicit = train.make_optimizer("sgd", 1e-4, momentum=0.9, weight_decay=5e-4,
                                  wd_mults=((r"/bias$", 0.),))
  u_explicit, _ = jax.jit(explicit.update)(grads, explicit.init(params), params)
  u_default, _ = jax.jit(previous["sgd"][0].update)(grads, previous["sgd"][0].init(params),
                                                    params)
  jax.tree.map(np.testing.assert_array_equal, u_explicit, u_default)


def test_mults_errors_name_the_problem():
  params = _caffe_tree()
  with pytest.raises(ValueError, match=r"lr_mults: pattern '\(conv' is not a valid regular"):
    train.make_optimizer("sgd", 0.1, lr_mults=(("(conv", 2.),))
  # A valid optimizer built first (and cached): True == 1, yet True is still refused.
  train.make_optimizer("sgd", 0.1, wd_mults=(("bias", 1),))
  for bad in (-1., float("nan"), float("inf"), True, "2"):
    with pytest.raises(ValueError, match="wd_mults: the multiplier of pattern 'bias'"):
      train.make_optimizer("sgd", 0.1, wd_mults=(("bias", bad),))
  with pytest.raises(ValueError, match="pairs"):
    train.make_optimizer("sgd", 0.1, lr_mults="bias")
  with pytest.raises(ValueError, match="pair"):
    train.make_optimizer("sgd", 0.1, lr_mults=(("bias", 2., 0.),))
  # A pattern that matches nothing (a typo) fails at init, naming it and the paths; also
  # wd_mults with weight_decay 0.
  for kwargs, name in [(dict(lr_mults=((r"score/biass", 2.),)), "lr_mults"),
                       (dict(wd_mults=((r"^score", 0.),)), "wd_mults"),
                       (dict(wd_mults=((r"^score", 0.),), weight_decay=0.1), "wd_mults")]:
    opt = train.make_optimizer("sgd", 0.1, **kwargs)
    with pytest.raises(ValueError, match=rf"{name} pattern .* matches no parameter.*"
                                         r"encoder/conv/bias, encoder/conv/kernel"):
      opt.init(params)
  assert train.param_paths(params) == ["encoder/conv/bias", "encoder/conv/kernel",
                                       "head/score/bias", "head/score/kernel"]


def test_schedules():
  cosine = train.make_schedule(1.0, "cosine", total_steps=10, warmup_steps=2)
  for step, expected in [(0, 0.), (1, 0.5), (2, 1.), (6, 0.5 * (1 + math.cos(math.pi * 4 / 8))),
                         (10, 0.)]:
    assert float(cosine(step)) == pytest.approx(expected, abs=1e-6)
  constant = train.make_schedule(0.1, "constant", warmup_steps=4)
  assert float(constant(1)) == pytest.approx(0.025) and float(constant(50)) == pytest.approx(0.1)
  with pytest.raises(ValueError, match="total_steps"):
    train.make_optimizer("adam", 1e-3, schedule="cosine")
  with pytest.raises(ValueError, match="'rmsprop'"):
    train.make_optimizer("rmsprop", 1e-3)


# --- loss wrapper ------------------------------------------------------------------


def _np_logistic(f, y):
  return np.where(y == 1, np.log1p(np.exp(-f)), np.log1p(np.exp(f)))


def test_loss_masks_void_and_class_balances():
  logits = np.array([[0.5], [-1.], [2.], [0.3], [-0.7], [1.5]], np.float32)
  labels = np.array([1, 0, 255, 0, 0, 1], np.int32)
  batch = {"label": jnp.asarray(labels)}
  valid = labels != 255
  f, y = logits[valid, 0], labels[valid]
  loss, count = train.make_loss_fn("logistic", 1)(jnp.asarray(logits), batch)
  assert int(count) == 5
  np.testing.assert_allclose(loss, _np_logistic(f, y).mean(), rtol=1e-6)
  # §4 "reweighed based on occurrences": w_c = N / (K n_c); here n_1 = 2, n_0 = 3.
  w = np.where(y == 1, 5 / (2 * 2), 5 / (2 * 3))
  loss, _ = train.make_loss_fn("logistic", 1, class_balanced=True)(jnp.asarray(logits), batch)
  np.testing.assert_allclose(loss, (w * _np_logistic(f, y)).sum() / 5, rtol=1e-6)
  # an explicit mask replaces label != 255
  mask = np.array([1, 1, 0, 0, 1, 1], bool)
  loss, count = train.make_loss_fn("weighted_logistic", 1, negative_weight=0.5)(
      jnp.asarray(logits), {"label": jnp.asarray(labels), "mask": jnp.asarray(mask)})
  ell = _np_logistic(logits[mask, 0], labels[mask]) * np.where(labels[mask] == 1, 1., 0.5)
  assert int(count) == 4
  np.testing.assert_allclose(loss, ell.mean(), rtol=1e-6)


def test_risk_estimators_are_called_on_the_batch():
  from jaxpu import losses
  logits = jnp.array([[0.5], [-1.], [2.], [0.3]])
  labels = jnp.array([1, 0, 255, 0])
  loss, _ = train.make_loss_fn("nnpu_risk", 1, prior=0.3)(logits, {"label": labels})
  np.testing.assert_allclose(
      loss, losses.nnpu_risk(logits[:, 0], labels, 0.3, where=labels != 255), rtol=1e-6)


def test_loss_fn_errors():
  with pytest.raises(ValueError, match="num_classes=1"):
    train.make_loss_fn("logistic", 3)
  with pytest.raises(ValueError, match="num_classes >= 2"):
    train.make_loss_fn("softmax_cross_entropy", 1)
  with pytest.raises(ValueError, match="betta"):
    train.make_loss_fn("bootstrap_hard", 1, betta=0.8)
  with pytest.raises(ValueError, match="'hinge'"):
    train.make_loss_fn("hinge", 1)


# --- data parallelism --------------------------------------------------------------


def _parallel_batches(num_classes, steps=3):
  """Batches of 16 whose 4 device slices hold 4, 1, 3 and 2 valid examples."""
  rs = np.random.RandomState(0)
  valid = np.array([1, 1, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1, 1, 0, 0, 1], bool)
  batches = []
  for _ in range(steps):
    x = rs.normal(size=(16, 2)).astype(np.float32)
    y = rs.randint(0, max(2, num_classes), 16).astype(np.int32)
    batches.append({"image": x, "label": np.where(valid, y, 255).astype(np.int32)})
  return batches, valid


@pytest.mark.parametrize("loss_name,num_classes,class_balanced",
                         [("logistic", 1, True), ("softmax_cross_entropy", 3, False)])
def test_shard_map_pmap_and_single_device_agree(loss_name, num_classes, class_balanced):
  devices = jax.devices()
  assert len(devices) == 4, "conftest.py sets 4 fake CPU devices"
  model = models.get("mlp", num_classes)
  opt = train.make_optimizer("sgd", 0.5, momentum=0.9)  # SGD: update scale = gradient scale
  loss_fn = train.make_loss_fn(loss_name, num_classes, class_balanced=class_balanced)
  batches, valid = _parallel_batches(num_classes)
  init = train.create_train_state(model, opt, 0, batches[0])
  step = functools.partial(train.train_step, model=model, optimizer=opt, loss_fn=loss_fn)

  # one device, whole batch
  single_state = jax.device_put(init, devices[0])
  single = jax.jit(functools.partial(step, axis_name=None))
  single_losses = []
  for b in batches:
    single_state, m = single(single_state, jax.device_put(b, devices[0]))
    single_losses.append(float(m["loss"]))

  # jit(shard_map) on a 4-device mesh
  mesh = train.make_mesh(devices)
  sharded_state = train.replicate(init, mesh)
  sharded = train.make_train_step(model, opt, loss_fn, mesh)
  for b, expected in zip(batches, single_losses):
    sharded_state, m = sharded(sharded_state, train.shard_batch(b, mesh))
    np.testing.assert_allclose(float(m["loss"]), expected, rtol=1e-5)

  # pmap: leading device axis
  pmap_state = jax.tree.map(lambda x: jnp.stack([x] * 4), init)
  pmapped = jax.pmap(step, axis_name="batch")
  for b in batches:
    pmap_state, _ = pmapped(pmap_state, jax.tree.map(lambda x: x.reshape(4, 4, *x.shape[1:]), b))

  for got in (sharded_state.params, jax.tree.map(lambda x: x[1], pmap_state.params)):
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=2e-5, atol=1e-6),
                 got, single_state.params)
  assert int(sharded_state.step) == 3

  # The naive per-device mean (pmean of masked means) is not the global mean here,
  # so the agreement above checks the normalisation.
  mean_loss = jax.jit(lambda b: loss_fn(model.apply({"params": init.params}, b["image"]), b)[0])
  device_means = [float(mean_loss(jax.tree.map(lambda x: x[i:i + 4], batches[0])))
                  for i in range(0, 16, 4)]
  assert abs(np.mean(device_means) - float(mean_loss(batches[0]))) > 1e-3


def test_eval_step_sums_confusion_matrices_over_devices():
  model = models.get("mlp", 3)
  x, _ = _moons(32, 1)
  rs = np.random.RandomState(1)
  labels = rs.randint(0, 3, 32).astype(np.int32)
  labels[[3, 17]] = 255
  true_labels = rs.randint(0, 3, 32).astype(np.int32)
  params = train.create_train_state(model, train.make_optimizer(), 3, x).params
  mesh = train.make_mesh()
  batch = {"image": x, "label": labels, "true_label": true_labels}
  predictions = np.asarray(model.apply({"params": params}, x)).argmax(-1)
  cm = train.evaluate(train.make_eval_step(model, 3, mesh), params, [batch, batch], mesh)
  keep = labels != 255
  expected = sk_confusion_matrix(labels[keep], predictions[keep], labels=[0, 1, 2])
  np.testing.assert_array_equal(cm, 2 * expected)
  cm_true = train.evaluate(train.make_eval_step(model, 3, mesh, label_key="true_label"),
                           params, [batch], mesh)
  np.testing.assert_array_equal(
      cm_true, sk_confusion_matrix(true_labels, predictions, labels=[0, 1, 2]))


def test_batch_must_divide_over_devices():
  model = models.get("mlp", 1)
  opt = train.make_optimizer()
  x, y = _moons(6, 0)
  mesh = train.make_mesh()
  state = train.create_train_state(model, opt, 0, x, mesh=mesh)
  step = train.make_train_step(model, opt, train.make_loss_fn("logistic", 1), mesh)
  with pytest.raises(ValueError, match="batch size 6 .* 4 devices"):
    step(state, {"image": x, "label": y})


def test_bfloat16_compute_trains_float32_params():
  model = models.get("mlp", 1, dtype=jnp.bfloat16)
  opt = train.make_optimizer("adam", 1e-2)
  x, y = _moons(16, 0)
  mesh = train.make_mesh()
  state = train.create_train_state(model, opt, 0, x, mesh=mesh)
  step = train.make_train_step(model, opt, train.make_loss_fn("logistic", 1), mesh)
  state, m = step(state, train.shard_batch({"image": x, "label": y}, mesh))
  assert np.isfinite(float(m["loss"]))
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(state.params))


def _void_segmentation_batch(num_images=16, size=8, seed=0):
  """Images whose labels hold different numbers of void pixels; images 5 and 6 all void."""
  rs = np.random.RandomState(seed)
  image = rs.standard_normal((num_images, size, size, 3)).astype(np.float32)
  label = rs.randint(0, 3, (num_images, size, size)).astype(np.int32)
  label[rs.rand(num_images, size, size) < rs.uniform(0, 0.9, (num_images, 1, 1))] = 255
  label[5:7] = 255
  return {"image": image, "label": label}


@pytest.mark.parametrize("reduction", train.REDUCTIONS)
def test_microbatches_give_the_whole_batch_update(reduction):
  """Gradient accumulation = the whole batch's step, for every reduction, 1 and 4 devices."""
  model = models.get("fcn_small", 3, width=0.25)  # no dropout
  opt = train.make_optimizer("sgd", 0.5, momentum=0.9)  # SGD: update scale = gradient scale
  loss_fn = train.make_loss_fn("softmax_cross_entropy", 3, reduction=reduction)
  batches = [_void_segmentation_batch(seed=s) for s in (0, 1)]
  init = train.create_train_state(model, opt, 0, batches[0])
  whole = jax.jit(functools.partial(train.train_step, model=model, optimizer=opt,
                                    loss_fn=loss_fn, axis_name=None))
  state, want = init, []
  for b in batches:
    state, m = whole(state, b)
    want.append((float(m["loss"]), int(m["num_valid"])))
  for num_devices, microbatches in [(1, 4), (4, 2)]:
    mesh = train.make_mesh(jax.devices()[:num_devices])
    step = train.make_train_step(model, opt, loss_fn, mesh, donate=False,
                                 microbatches=microbatches)
    got = train.replicate(init, mesh)
    for b, (loss, num_valid) in zip(batches, want):
      got, m = step(got, train.shard_batch(b, mesh))
      assert float(m["loss"]) == pytest.approx(loss, rel=1e-5)
      assert int(m["num_valid"]) == num_valid
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-6),
                 train.to_host(got.params), train.to_host(state.params))


def test_microbatches_errors_name_the_sizes(tmp_path):
  model = models.get("mlp", 3)
  opt = train.make_optimizer()
  x, y = _moons(24, 0)
  mesh = train.make_mesh()
  state = train.create_train_state(model, opt, 0, x, mesh=mesh)
  loss_fn = train.make_loss_fn("softmax_cross_entropy", 3)
  step = train.make_train_step(model, opt, loss_fn, mesh, microbatches=4)
  with pytest.raises(ValueError, match=r"per-device batch size 6 \(global batch 24 over 4 "
                                       r"devices\) is not divisible by microbatches=4"):
    step(state, {"image": x, "label": y})
  with pytest.raises(ValueError, match="per-device batch size 6 is not divisible by "
                                       "microbatches=4"):
    jax.eval_shape(functools.partial(train.train_step, model=model, optimizer=opt,
                                     loss_fn=loss_fn, axis_name=None, microbatches=4),
                   state, {"image": x[:6], "label": y[:6]})
  for bad in (0, -2, 1.5, True):
    with pytest.raises(ValueError, match="microbatches must be a positive int"):
      train.make_train_step(model, opt, loss_fn, mesh, microbatches=bad)
  with pytest.raises(ValueError, match="class_balanced"):
    train.make_train_step(model, opt, train.make_loss_fn("softmax_cross_entropy", 3,
                                                         class_balanced=True),
                          mesh, microbatches=2)
  with pytest.raises(ValueError, match="nnpu_risk"):
    train.make_train_step(models.get("mlp", 1), opt, train.make_loss_fn("nnpu_risk", 1,
                                                                        prior=0.3),
                          mesh, microbatches=2)
  with pytest.raises(ValueError, match="normaliser"):
    train.make_train_step(model, opt, lambda logits, batch, axis_name: (0., 0), mesh,
                          microbatches=2)
  # fit passes microbatches through
  with pytest.raises(ValueError, match="not divisible by microbatches=4"):
    train.fit(state, model=model, optimizer=opt, loss_fn=loss_fn,
              train_iter_fn=_moons_iter_fn(x, y, 24), num_steps=1, mesh=mesh,
              microbatches=4)


def test_default_compiler_options_per_platform():
  assert train.default_compiler_options("cpu") == train.CPU_COMPILER_OPTIONS
  assert train.default_compiler_options("gpu") == {}
  assert train.default_compiler_options("tpu") == {}


def test_cpu_compiler_options_give_xla_default_step():
  """Eigen convolutions (jaxpu's CPU default) and XLA's default (YNNPACK) agree on a conv step."""
  model = models.get("fcn_small", 3, width=0.25)
  opt = train.make_optimizer("adam", 1e-2)
  rs = np.random.RandomState(0)
  batch = {"image": rs.standard_normal((4, 16, 16, 3)).astype(np.float32),
           "label": rs.randint(0, 3, (4, 16, 16)).astype(np.int32)}
  mesh = train.make_mesh(jax.devices()[:1])
  loss_fn = train.make_loss_fn("softmax_cross_entropy", 3)
  results = []
  for options in (None, {}):
    state = train.create_train_state(model, opt, 0, batch["image"], mesh=mesh)
    step = train.make_train_step(model, opt, loss_fn, mesh, compiler_options=options)
    for _ in range(2):
      state, m = step(state, train.shard_batch(batch, mesh))
    results.append((float(m["loss"]), train.to_host(state.params)))
  assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               results[0][1], results[1][1])


def test_unknown_compiler_option_is_reported_by_xla():
  model = models.get("mlp", 1)
  opt = train.make_optimizer()
  x, y = _moons(4, 0)
  mesh = train.make_mesh(jax.devices()[:1])
  state = train.create_train_state(model, opt, 0, x, mesh=mesh)
  step = train.make_train_step(model, opt, train.make_loss_fn("logistic", 1), mesh,
                               compiler_options={"xla_not_an_option": "1"})
  with pytest.raises(Exception, match="xla_not_an_option"):
    step(state, train.shard_batch({"image": x, "label": y}, mesh))


# --- fit ---------------------------------------------------------------------------


def _moons_iter_fn(x, y, batch_size):
  def train_iter_fn(start_step):
    step = start_step
    while True:  # the batch of step s depends only on s
      idx = np.random.RandomState(step).choice(len(x), batch_size, replace=False)
      yield {"image": x[idx], "label": y[idx]}
      step += 1
  return train_iter_fn


@pytest.mark.parametrize("num_devices", [1, 4])
def test_fit_trains_mlp_on_moons(tmp_path, num_devices):
  x, y = _moons(800, 0)
  x_test, y_test = _moons(400, 1)
  mesh = train.make_mesh(jax.devices()[:num_devices])
  model = models.get("mlp", 1)
  opt = train.make_optimizer("adam", 0.02)
  loss_fn = train.make_loss_fn("logistic", 1)
  eval_step = train.make_eval_step(model, 1, mesh)

  def eval_fn(state):
    cm = train.evaluate(eval_step, state.params, [{"image": x_test, "label": y_test}], mesh)
    return {"accuracy": np.trace(cm) / cm.sum()}

  state = train.create_train_state(model, opt, 0, x)
  state, history = train.fit(
      state, model=model, optimizer=opt, loss_fn=loss_fn,
      train_iter_fn=_moons_iter_fn(x, y, 32), num_steps=300, workdir=str(tmp_path),
      mesh=mesh, log_every=100, eval_every=150, eval_fn=eval_fn)
  assert int(state.step) == 300
  accuracy = [h["eval/accuracy"] for h in history if "eval/accuracy" in h]
  assert len(accuracy) == 2
  assert accuracy[-1] > 0.9  # chance is 0.5
  losses = [h["train/loss"] for h in history if "train/loss" in h]
  assert losses[-1] < 0.5 * losses[0]
  with open(tmp_path / "metrics.jsonl") as f:
    records = [json.loads(line) for line in f]
  assert [r["step"] for r in records if "train/loss" in r] == [100, 200, 300]
  assert records == [{k: v for k, v in h.items()} for h in history]
  assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path))
