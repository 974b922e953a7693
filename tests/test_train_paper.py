"""The "paper" update: the FCN reference's Caffe solver, checked against Caffe's formula.

The FCN reference (`voc-fcn-alexnet`), whose "default hyperparameters" the
thesis keeps, trains with `SoftmaxWithLoss {normalize: true, ignore_label:
255}` (each image's loss is the mean over its valid pixels), `iter_size: 20`
(the gradients of 20 one-image passes, summed and divided by 20) and Caffe's
SGD, `lr_policy: fixed`, base_lr 1e-4, momentum 0.9, weight_decay 5e-4, per
blob

    V ← μ·V + lr·lr_mult·(∇ + wd·decay_mult·W),    W ← W − V,

with `lr_mult = decay_mult = 1` on conv1…fc7's weights and biases (Caffe's
defaults), `score_fr` weights 1/1 and bias `lr_mult: 2, decay_mult: 0`, and
the frozen bilinear upsampling. Here two updates of jaxpu's path, built from
the `paper` configs' own values, are checked against that update written out
independently (per image, NumPy float64), on one and two devices, and every
plausible mistake (a summed loss, undecayed biases, the score bias at the base
rate, a pixel mean over the batch) is shown to fail the check.
"""

import functools
import math

import jax
from jax.sharding import PartitionSpec as P
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import binary_segmentation as binary_config
from experiments.configs import transfer as transfer_config
from jaxpu import models, train

NUM_CLASSES = 3
# fcn_alexnet's geometry at a CPU test's cost: 64×64 inputs, channels × 1/8.
SIZE, WIDTH = 64, 1 / 8

# The FCN reference's solver and net (voc-fcn-alexnet), written out from Caffe's files.
CAFFE_BASE_LR, CAFFE_MOMENTUM, CAFFE_WEIGHT_DECAY, CAFFE_ITER_SIZE = 1e-4, 0.9, 5e-4, 20
CAFFE_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "score")


def reference_multipliers(layer, blob):
  """(lr_mult, decay_mult) of a blob of voc-fcn-alexnet."""
  if layer == "score":  # score_fr: param [{lr_mult: 1, decay_mult: 1}, {lr_mult: 2, decay_mult: 0}]
    return (1., 1.) if blob == "kernel" else (2., 0.)
  return 1., 1.  # conv1…fc7 have no `param`: Caffe's defaults, biases included


def author_multipliers(layer, blob):
  """The thesis author's configurations: weights lr 1 / decay 1, biases lr 2 / decay 0."""
  del layer
  return (1., 1.) if blob == "kernel" else (2., 0.)


# ----------------------------------------------------------------------------
# Caffe, written out.
# ----------------------------------------------------------------------------


def _segmentation_batch(num_images, size=SIZE, seed=0):
  """Random images and labels; void borders of different widths and void blobs, so every
  image holds a different number of valid pixels (all hold some)."""
  rs = np.random.RandomState(seed)
  image = (20 * rs.standard_normal((num_images, size, size, 3))).astype(np.float32)
  label = rs.randint(0, NUM_CLASSES, (num_images, size, size)).astype(np.int32)
  for i in range(num_images):
    border = (3 * i) % (size // 3)
    label[i, :border] = 255
    label[i, :, size - border // 2:] = 255
  label[rs.rand(num_images, size, size) < 0.1] = 255
  counts = (label != 255).sum(axis=(1, 2))
  assert counts.min() > 0 and len(set(counts.tolist())) > num_images // 2
  return {"image": image, "label": label}


def _caffe_image_loss(params, model, image, label, normalize):
  """SoftmaxWithLoss {ignore_label: 255, normalize: ...} of one image."""
  logits = model.apply({"params": params}, image[None])[0]
  log_p = jax.nn.log_softmax(logits, axis=-1)
  valid = label != 255
  picked = jnp.take_along_axis(log_p, jnp.where(valid, label, 0)[..., None], axis=-1)[..., 0]
  total = jnp.sum(jnp.where(valid, -picked, 0.))
  return total / jnp.maximum(jnp.sum(valid), 1) if normalize else total


def _blob(path):
  return path[-2].key, path[-1].key  # ("conv1", "kernel"), ("score", "bias")


def caffe_iteration(params, history, batch, image_grad, lr, momentum, weight_decay,
                    multipliers):
  """One Caffe SGD iteration, iter_size = the batch's images (float64 NumPy).

  `history` is Caffe's V / (lr · lr_mult), the momentum buffer in gradient
  units (H ← μ·H + ∇ + wd·decay_mult·W), so V = lr·lr_mult·H. Returns the new
  params and history and the mean of the images' losses.
  """
  grad_sum, losses = None, []
  for image, label in zip(batch["image"], batch["label"]):  # one forward/backward each
    loss, grad = image_grad(jax.tree.map(lambda w: w.astype(np.float32), params), image, label)
    grad = jax.tree.map(lambda g: np.asarray(g, np.float64), grad)
    grad_sum = grad if grad_sum is None else jax.tree.map(np.add, grad_sum, grad)
    losses.append(float(loss))
  grad = jax.tree.map(lambda g: g / len(losses), grad_sum)  # SGDSolver::Normalize

  def new_history(path, w, g, h):
    _, decay_mult = multipliers(*_blob(path))
    return momentum * h + g + weight_decay * decay_mult * w  # Regularize, then the momentum

  history = jax.tree_util.tree_map_with_path(new_history, params, grad, history)
  params = jax.tree_util.tree_map_with_path(
      lambda path, w, h: w - lr * multipliers(*_blob(path))[0] * h, params, history)
  return params, history, float(np.mean(losses))


def _random_params(params, seed=0):
  """He-scaled random kernels, biases U(±[0.5, 1]) (nonzero: decaying them shows)."""
  rs = np.random.RandomState(seed)

  def draw(path, w):
    if path[-1].key == "kernel":
      fan_in = int(np.prod(w.shape[:-1]))
      return (rs.standard_normal(w.shape) * math.sqrt(2 / fan_in)).astype(np.float32)
    return (rs.choice([-1, 1], w.shape) * rs.uniform(0.5, 1., w.shape)).astype(np.float32)
  return jax.tree_util.tree_map_with_path(draw, params)


def _trace(opt_state):
  """The SGD momentum buffer t of an optax state (t ← μ·t + g)."""
  traces = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, optax.TraceState))
            if isinstance(s, optax.TraceState)]
  assert len(traces) == 1, "the paper optimizer is SGD with momentum"
  return traces[0].trace


def assert_matches_caffe(got_params, got_trace, got_loss, params0, want_params, want_history,
                         want_loss, name=""):
  """jaxpu's params, momentum buffer and loss vs Caffe's (float64) after the same steps.

  Params are compared as displacements from the initial params (float32 weights
  only resolve updates to their ulp); the momentum buffer, which holds the
  gradient plus the weight decay without that cancellation, to 1e-4 of each
  layer's largest entry (the decay of a bias is 5e-4 × |b| ≥ 2.5e-4 here).
  """
  np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5, err_msg=f"{name}: loss")
  eps = np.finfo(np.float32).eps

  def check_params(path, got, want, w0):
    got_move = np.asarray(got, np.float64) - w0
    want_move = want - w0
    tol = 2e-3 * np.abs(want_move) + 1e-4 * np.abs(want_move).max() + 3 * eps * np.abs(w0)
    bad = np.abs(got_move - want_move) > tol
    assert not bad.any(), (f"{name}: {jax.tree_util.keystr(path)}: update differs from "
                           f"Caffe's at {bad.sum()} of {bad.size} entries (max |diff| "
                           f"{np.abs(got_move - want_move).max():.3g}, max |update| "
                           f"{np.abs(want_move).max():.3g})")

  def check_trace(path, got, want):
    got = np.asarray(got, np.float64)
    tol = 1e-4 * np.abs(want).max() + 1e-4 * np.abs(want)
    bad = np.abs(got - want) > tol
    assert not bad.any(), (f"{name}: {jax.tree_util.keystr(path)}: momentum buffer differs "
                           f"from Caffe's at {bad.sum()} of {bad.size} entries (max |diff| "
                           f"{np.abs(got - want).max():.3g}, max |buffer| "
                           f"{np.abs(want).max():.3g})")

  w0 = jax.tree.map(lambda w: np.asarray(w, np.float64), params0)
  jax.tree_util.tree_map_with_path(check_params, train.to_host(got_params), want_params, w0)
  jax.tree_util.tree_map_with_path(check_trace, train.to_host(got_trace), want_history)


# ----------------------------------------------------------------------------
# The paper configs.
# ----------------------------------------------------------------------------

_FIELDS = ("optimizer", "learning_rate", "schedule", "warmup_steps", "momentum",
           "weight_decay", "loss_reduction", "batch_size", "lr_mults", "wd_mults",
           "microbatches")


def _paper_sections():
  transfer = transfer_config.get_config("paper")
  binary = binary_config.get_config("paper")
  return {"transfer.pretrain": (transfer, transfer.pretrain),
          "transfer.finetune": (transfer, transfer.finetune),
          "binary_segmentation.train": (binary, binary.train)}


def _values(section):
  return {name: section[name] for name in _FIELDS}


def test_paper_sections_share_the_reference_update():
  sections = _paper_sections()
  values = {name: _values(section) for name, (_, section) in sections.items()}
  first = next(iter(values.values()))
  for name, v in values.items():
    assert v == first, f"{name} differs from transfer.pretrain: {v} vs {first}"
  for name, (config, _) in sections.items():
    assert config.model == "fcn_alexnet", name


def _paper_model(config, width=WIDTH):
  options = {**dict(config.model_options), "width": width, "dropout_rate": 0.}
  return models.get(config.model, NUM_CLASSES, **options)


def _jaxpu_run(config, values, params0, batches, num_devices):
  """Two updates of jaxpu's paper path on `num_devices` devices: [(params, trace, loss)]."""
  model = _paper_model(config)
  optimizer = train.make_optimizer(
      values["optimizer"], values["learning_rate"], momentum=values["momentum"],
      weight_decay=values["weight_decay"], schedule=values["schedule"],
      warmup_steps=values["warmup_steps"], lr_mults=values["lr_mults"],
      wd_mults=values["wd_mults"])
  loss_fn = train.make_loss_fn("softmax_cross_entropy", NUM_CLASSES,
                               reduction=values["loss_reduction"])
  per_device = values["batch_size"] // num_devices
  # microbatches split each device's slice; on several devices a divisor of it.
  microbatches = math.gcd(values["microbatches"], per_device)
  mesh = train.make_mesh(jax.devices()[:num_devices])
  step = train.make_train_step(model, optimizer, loss_fn, mesh, donate=False,
                               microbatches=microbatches)
  state = train.create_train_state(model, optimizer, 0, batches[0]).replace(params=params0)
  state = train.replicate(state, mesh)
  out = []
  for batch in batches:
    state, metrics = step(state, train.shard_batch(batch, mesh))
    out.append((state.params, _trace(state.opt_state), float(metrics["loss"])))
  return out


@pytest.fixture(scope="module")
def reference_run():
  """The paper config, initial params, two batches and Caffe's two iterations."""
  config, section = _paper_sections()["transfer.pretrain"]
  values = _values(section)
  model = _paper_model(config)
  assert values["batch_size"] == CAFFE_ITER_SIZE  # one step = one Caffe iteration
  batches = [_segmentation_batch(CAFFE_ITER_SIZE, seed=s) for s in (0, 1)]
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3))))
  params0 = _random_params(shapes["params"])
  assert sorted(params0["encoder"]) + sorted(params0["head"]) == sorted(CAFFE_LAYERS)

  image_grad = jax.jit(jax.value_and_grad(
      lambda p, image, label: _caffe_image_loss(p, model, image, label, normalize=True)))
  params = jax.tree.map(lambda w: np.asarray(w, np.float64), params0)
  history = jax.tree.map(np.zeros_like, params)
  expected = []
  for batch in batches:
    params, history, loss = caffe_iteration(params, history, batch, image_grad, CAFFE_BASE_LR,
                                            CAFFE_MOMENTUM, CAFFE_WEIGHT_DECAY,
                                            reference_multipliers)
    expected.append((params, history, loss))
  return config, values, params0, batches, expected


@pytest.mark.parametrize("num_devices", [1, 2])
def test_two_paper_updates_are_the_fcn_reference(reference_run, num_devices):
  config, values, params0, batches, expected = reference_run
  got = _jaxpu_run(config, values, params0, batches, num_devices)
  for i, ((p, t, loss), (want_p, want_h, want_loss)) in enumerate(zip(got, expected)):
    assert_matches_caffe(p, t, loss, params0, want_p, want_h, want_loss,
                         name=f"{num_devices} device(s), step {i + 1}")


def _prepend(pairs, pair):
  return (pair,) + tuple(tuple(p) for p in (pairs or ()))


MUTATIONS = {
    "summed loss (normalize: false)": lambda v: {**v, "loss_reduction": "sum_per_example"},
    "pixel mean over the batch": lambda v: {**v, "loss_reduction": "mean"},
    "biases not decayed": lambda v: {**v, "wd_mults": _prepend(v["wd_mults"], (r"/bias$", 0.))},
    "score bias at lr x1": lambda v: {
        **v, "lr_mults": _prepend(v["lr_mults"], (r"^head/score/bias$", 1.))},
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_each_mistake_fails_the_comparison(reference_run, mutation):
  config, values, params0, batches, expected = reference_run
  got = _jaxpu_run(config, MUTATIONS[mutation](values), params0, batches, 1)
  with pytest.raises(AssertionError):
    for (p, t, loss), (want_p, want_h, want_loss) in zip(got, expected):
      assert_matches_caffe(p, t, loss, params0, want_p, want_h, want_loss, name=mutation)


# The values the paper preset sets (the report to the configs), and the author's variant.
REFERENCE_LR_MULTS = ((r"^head/score/bias$", 2.),)
REFERENCE_WD_MULTS = ((r"^head/score/bias$", 0.),)
AUTHOR_LR_MULTS = ((r"/bias$", 2.),)
AUTHOR_WD_MULTS = ((r"/bias$", 0.),)


@pytest.mark.parametrize("lr_mults,wd_mults,expected", [
    (REFERENCE_LR_MULTS, REFERENCE_WD_MULTS, reference_multipliers),
    (AUTHOR_LR_MULTS, AUTHOR_WD_MULTS, author_multipliers)])
def test_multipliers_resolve_to_caffes_per_blob(lr_mults, wd_mults, expected):
  model = models.get("fcn_alexnet", 21)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))))
  params = params["params"]
  lr = train.resolve_mults(params, lr_mults)
  wd = train.resolve_mults(params, wd_mults)
  jax.tree_util.tree_map_with_path(
      lambda path, a, b: (a, b) == expected(*_blob(path)) or pytest.fail(
          f"{jax.tree_util.keystr(path)}: {(a, b)} vs Caffe's {expected(*_blob(path))}"),
      lr, wd)


def test_author_variant_is_caffes():
  """The thesis author's solver (FCN-8s configs): normalize false, iter_size 1, lr 1e-10,
  momentum 0.99, biases lr 2 / decay 0, Caffe's xavier filler."""
  model = models.get("fcn_alexnet", NUM_CLASSES, width=WIDTH, dropout_rate=0.,
                     kernel_init="caffe_xavier")
  lr, momentum, weight_decay = 1e-10, 0.99, 5e-4
  optimizer = train.make_optimizer("sgd", lr, momentum=momentum, weight_decay=weight_decay,
                                   lr_mults=AUTHOR_LR_MULTS, wd_mults=AUTHOR_WD_MULTS)
  loss_fn = train.make_loss_fn("softmax_cross_entropy", NUM_CLASSES,
                               reduction="sum_per_example")
  batches = [_segmentation_batch(1, seed=s) for s in (2, 3)]
  state = train.create_train_state(model, optimizer, 0, batches[0])
  params0 = _random_params(state.params, seed=1)
  state = state.replace(params=params0)

  image_grad = jax.jit(jax.value_and_grad(
      lambda p, image, label: _caffe_image_loss(p, model, image, label, normalize=False)))
  params = jax.tree.map(lambda w: np.asarray(w, np.float64), params0)
  history = jax.tree.map(np.zeros_like, params)
  mesh = train.make_mesh(jax.devices()[:1])
  step = train.make_train_step(model, optimizer, loss_fn, mesh, donate=False)
  state = train.replicate(state, mesh)
  for i, batch in enumerate(batches):
    params, history, want_loss = caffe_iteration(params, history, batch, image_grad, lr,
                                                 momentum, weight_decay, author_multipliers)
    state, metrics = step(state, train.shard_batch(batch, mesh))
    assert_matches_caffe(state.params, _trace(state.opt_state), float(metrics["loss"]),
                         params0, params, history, want_loss, name=f"author, step {i + 1}")


# ----------------------------------------------------------------------------
# The per-example reductions.
# ----------------------------------------------------------------------------


def _np_logistic(f, y):
  return np.where(y == 1, np.log1p(np.exp(-f)), np.log1p(np.exp(f)))


def test_per_example_reduction_values():
  logits = np.array([0.5, -1., 2., 0.3, -0.7, 1.5, 0.2, -0.1, 0.9], np.float32).reshape(3, 3, 1)
  labels = np.array([[1, 0, 255], [0, 255, 255], [255, 255, 255]], np.int32)  # 2, 1, 0 valid
  batch = {"label": jnp.asarray(labels)}
  f, y = logits[..., 0], labels
  ell = np.where(y != 255, _np_logistic(f, y), 0.)
  counts = (y != 255).sum(axis=1)
  loss, count = train.make_loss_fn("logistic", 1, reduction="sum_per_example")(
      jnp.asarray(logits), batch)
  assert int(count) == 3
  np.testing.assert_allclose(loss, ell.sum(axis=1).mean(), rtol=1e-6)  # over all 3 images
  loss, count = train.make_loss_fn("logistic", 1, reduction="mean_per_example")(
      jnp.asarray(logits), batch)
  assert int(count) == 3
  per_image = ell[:2].sum(axis=1) / counts[:2]  # the all-void image does not count
  np.testing.assert_allclose(loss, per_image.mean(), rtol=1e-6)
  mean_loss, _ = train.make_loss_fn("logistic", 1)(jnp.asarray(logits), batch)
  np.testing.assert_allclose(mean_loss, ell.sum() / counts.sum(), rtol=1e-6)
  # nothing valid at all: 0, not NaN
  void = {"label": jnp.full((2, 3), 255)}
  for reduction in train.REDUCTIONS:
    loss, _ = train.make_loss_fn("logistic", 1, reduction=reduction)(
        jnp.asarray(logits[:2]), void)
    assert float(loss) == 0.
  # the normalisers
  normaliser = {r: int(train.make_loss_fn("logistic", 1, reduction=r).normaliser(batch))
                for r in train.REDUCTIONS}
  assert normaliser == {"mean": 3, "mean_per_example": 2, "sum_per_example": 3}


@pytest.mark.parametrize("reduction,class_balanced", [
    ("sum_per_example", False), ("sum_per_example", True),
    ("mean_per_example", False), ("mean_per_example", True)])
def test_per_example_reductions_are_the_global_batch_value_on_4_devices(reduction,
                                                                         class_balanced):
  """pmean over devices of the per-device values (and gradients) = the global batch's,
  with devices holding different numbers of counting examples (device 1: none)."""
  assert jax.device_count() == 4, "conftest.py sets 4 fake CPU devices"
  model = models.get("fcn_small", NUM_CLASSES, width=0.25)
  batch = _segmentation_batch(8, size=8, seed=3)
  batch["label"][2:4] = 255  # device 1 holds no valid pixel at all
  batch["label"][5] = 255    # device 2 holds one counting example, device 0 and 3 two
  loss_fn = train.make_loss_fn("softmax_cross_entropy", NUM_CLASSES,
                               class_balanced=class_balanced, reduction=reduction)
  params = train.create_train_state(model, train.make_optimizer(), 0, batch).params

  def value_and_grad(params, batch, axis_name):
    def objective(p):
      return loss_fn(model.apply({"params": p}, batch["image"]), batch, axis_name=axis_name)
    (loss, count), grads = jax.value_and_grad(objective, has_aux=True)(params)
    normaliser = loss_fn.normaliser(batch, axis_name)
    if axis_name is not None:
      loss, grads = jax.lax.pmean((loss, grads), axis_name)
    return loss, count, normaliser, grads

  single = jax.jit(functools.partial(value_and_grad, axis_name=None))(params, batch)
  mesh = train.make_mesh()
  sharded = jax.jit(jax.shard_map(functools.partial(value_and_grad, axis_name=train.AXIS),
                                  mesh=mesh, in_specs=(P(), P(train.AXIS)),
                                  out_specs=(P(), P(), P(), P()), check_vma=False))(
                                      params, train.shard_batch(batch, mesh))
  np.testing.assert_allclose(float(sharded[0]), float(single[0]), rtol=1e-5)
  assert int(sharded[1]) == int(single[1]) == int((batch["label"] != 255).sum())
  assert int(sharded[2]) == int(single[2]) == (8 if reduction == "sum_per_example" else 5)
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6),
               train.to_host(sharded[3]), train.to_host(single[3]))
  # The per-device mean of per-device values would differ: the normalisation matters.
  if reduction == "mean_per_example" and not class_balanced:
    device_values = [float(loss_fn(model.apply({"params": params}, batch["image"][i:i + 2]),
                                   {"label": batch["label"][i:i + 2]})[0])
                     for i in range(0, 8, 2)]
    assert abs(np.mean(device_values) - float(single[0])) > 1e-3


def test_reduction_errors():
  with pytest.raises(ValueError, match="'sum'"):
    train.make_loss_fn("softmax_cross_entropy", 3, reduction="sum")
  with pytest.raises(ValueError, match="nnpu_risk.*normalises itself"):
    train.make_loss_fn("nnpu_risk", 1, reduction="mean_per_example", prior=0.3)
  with pytest.raises(ValueError, match="no normaliser"):
    train.make_loss_fn("nnpu_risk", 1, prior=0.3).normaliser({"label": jnp.zeros(3)})
