"""The "paper" objective: Caffe's unnormalised SoftmaxWithLoss, iter_size and SGD solver.

The FCN reference (`voc-fcn-alexnet`) and the thesis author's Caffe configs
train with `SoftmaxWithLoss {normalize: false, ignore_label: 255}` (the sum of
the per-pixel cross-entropy over an image's valid pixels), `iter_size: N`
(the gradients of N one-image passes, summed and divided by N) and Caffe's
SGD: V ← μV + lr·(∇ + wd·W) (decay on kernels only), W ← W − V. Here one
update of jaxpu's path (`reduction="sum_per_example"` + `make_optimizer("sgd")`
+ the train step) is checked against that update written out independently.
"""

import functools

import jax
from jax.sharding import PartitionSpec as P
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpu import models, train

NUM_CLASSES = 3


def _segmentation_batch(num_images=2, size=16, seed=0):
  """Random images and labels with a void (255) border and void blobs."""
  rs = np.random.RandomState(seed)
  image = rs.standard_normal((num_images, size, size, 3)).astype(np.float32)
  label = rs.randint(0, NUM_CLASSES, (num_images, size, size)).astype(np.int32)
  label[:, 0, :] = 255
  label[rs.rand(num_images, size, size) < 0.15] = 255
  label[0, :, :3] = 255  # the images hold different numbers of valid pixels
  return {"image": image, "label": label}


def _caffe_image_loss(params, model, image, label):
  """SoftmaxWithLoss, normalize: false, ignore_label: 255, on one image."""
  logits = model.apply({"params": params}, image[None])[0]
  log_p = jax.nn.log_softmax(logits, axis=-1)
  valid = label != 255
  picked = jnp.take_along_axis(log_p, jnp.where(valid, label, 0)[..., None], axis=-1)[..., 0]
  return jnp.sum(jnp.where(valid, -picked, 0.))


def _caffe_iteration(params, velocity, batch, model, lr, momentum, weight_decay, bias_lr_mult):
  """One Caffe SGD iteration with iter_size = the number of images (NumPy update)."""
  losses, grads = [], []
  for image, label in zip(batch["image"], batch["label"]):  # one forward/backward each
    loss, grad = jax.value_and_grad(_caffe_image_loss)(params, model, image, label)
    losses.append(float(loss))
    grads.append(grad)
  grad = jax.tree.map(lambda *g: np.mean(np.stack(g), axis=0), *grads)  # SGDSolver::Normalize

  def update(path, w, g, v):
    is_kernel = path[-1].key == "kernel"  # Caffe: decay_mult 1 on weights, 0 on biases
    local_rate = lr * (1. if is_kernel else bias_lr_mult)
    diff = g + weight_decay * w if is_kernel else g
    return momentum * v + local_rate * diff

  params, grad = jax.tree.map(np.asarray, params), jax.tree.map(np.asarray, grad)
  velocity = jax.tree_util.tree_map_with_path(update, params, grad, velocity)
  params = jax.tree.map(lambda w, v: w - v, params, velocity)
  return params, velocity, float(np.mean(losses))


@pytest.mark.parametrize("bias_lr_mult", [1., 2.])
def test_one_update_is_caffes(bias_lr_mult):
  model = models.get("fcn_small", NUM_CLASSES, width=0.25)  # no dropout: deterministic
  # A weight decay large enough (and nonzero biases) that decaying biases would show.
  lr, momentum, weight_decay = 1e-3, 0.9, 0.05
  optimizer = train.make_optimizer("sgd", lr, momentum=momentum, weight_decay=weight_decay,
                                   bias_lr_mult=bias_lr_mult)
  loss_fn = train.make_loss_fn("softmax_cross_entropy", NUM_CLASSES, reduction="sum_per_example")
  batches = [_segmentation_batch(seed=0), _segmentation_batch(seed=1)]
  state = train.create_train_state(model, optimizer, 0, batches[0])
  rs = np.random.RandomState(0)
  state = state.replace(params=jax.tree_util.tree_map_with_path(
      lambda path, w: w if path[-1].key == "kernel" else rs.uniform(-.1, .1, w.shape).astype(
          np.float32), state.params))

  # Caffe, written out: two iterations, the second with a nonzero momentum buffer.
  params = jax.tree.map(np.asarray, state.params)
  velocity = jax.tree.map(np.zeros_like, params)
  expected = []
  for batch in batches:
    params, velocity, loss = _caffe_iteration(params, velocity, batch, model, lr, momentum,
                                              weight_decay, bias_lr_mult)
    expected.append((params, loss))
  assert any(np.abs(v).max() > 0 for v in jax.tree.leaves(velocity))

  # jaxpu: the per-device step on one device, and jit(shard_map) with one image per device.
  single = jax.jit(functools.partial(train.train_step, model=model, optimizer=optimizer,
                                     loss_fn=loss_fn, axis_name=None))
  mesh = train.make_mesh(jax.devices()[:2])
  sharded = train.make_train_step(model, optimizer, loss_fn, mesh, donate=False)
  runs = {"one device": (single, state, lambda b: b),
          "two devices": (sharded, train.replicate(state, mesh),
                          lambda b: train.shard_batch(b, mesh))}
  for name, (step, run_state, put) in runs.items():
    previous = jax.tree.map(np.asarray, state.params)
    for batch, (want_params, want_loss) in zip(batches, expected):
      run_state, metrics = step(run_state, put(batch))
      got = train.to_host(run_state.params)
      np.testing.assert_allclose(float(metrics["loss"]), want_loss, rtol=1e-5, err_msg=name)
      jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-7,
                                     err_msg=name), got, want_params)
      # The updates themselves (small next to the weights) agree too, up to the float32
      # rounding of the weights they are read from (|W| < 1: below 1e-7).
      jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-7,
                                     err_msg=name),
                   jax.tree.map(np.subtract, got, previous),
                   jax.tree.map(np.subtract, want_params, previous))
      previous = want_params


def test_sum_per_example_value():
  logits = np.array([[0.5], [-1.], [2.], [0.3], [-0.7], [1.5]], np.float32).reshape(2, 3, 1)
  labels = np.array([[1, 0, 255], [0, 255, 255]], np.int32)
  batch = {"label": jnp.asarray(labels)}
  f, y = logits[..., 0], labels
  ell = np.where(y == 1, np.log1p(np.exp(-f)), np.log1p(np.exp(f)))
  per_image = np.where(y != 255, ell, 0.).sum(axis=1)
  loss, count = train.make_loss_fn("logistic", 1, reduction="sum_per_example")(
      jnp.asarray(logits), batch)
  assert int(count) == 3
  np.testing.assert_allclose(loss, per_image.mean(), rtol=1e-6)
  mean_loss, _ = train.make_loss_fn("logistic", 1)(jnp.asarray(logits), batch)
  np.testing.assert_allclose(mean_loss, ell[y != 255].mean(), rtol=1e-6)


@pytest.mark.parametrize("class_balanced", [False, True])
def test_sum_per_example_is_the_global_batch_value_on_4_devices(class_balanced):
  """pmean over devices of the per-device values (and gradients) = the global batch's."""
  assert jax.device_count() == 4, "conftest.py sets 4 fake CPU devices"
  model = models.get("fcn_small", NUM_CLASSES, width=0.25)
  batch = _segmentation_batch(num_images=8, size=8, seed=3)
  batch["label"][2:4] = 255  # device 1 holds no valid pixel at all
  loss_fn = train.make_loss_fn("softmax_cross_entropy", NUM_CLASSES,
                               class_balanced=class_balanced, reduction="sum_per_example")
  params = train.create_train_state(model, train.make_optimizer(), 0, batch).params

  def value_and_grad(params, batch, axis_name):
    def objective(p):
      return loss_fn(model.apply({"params": p}, batch["image"]), batch, axis_name=axis_name)
    (loss, count), grads = jax.value_and_grad(objective, has_aux=True)(params)
    if axis_name is not None:
      loss, grads = jax.lax.pmean((loss, grads), axis_name)
    return loss, count, grads

  single = jax.jit(functools.partial(value_and_grad, axis_name=None))(params, batch)
  mesh = train.make_mesh()
  sharded = jax.jit(jax.shard_map(functools.partial(value_and_grad, axis_name=train.AXIS),
                                  mesh=mesh, in_specs=(P(), P(train.AXIS)),
                                  out_specs=(P(), P(), P()), check_vma=False))(
                                      params, train.shard_batch(batch, mesh))
  np.testing.assert_allclose(float(sharded[0]), float(single[0]), rtol=1e-5)
  assert int(sharded[1]) == int(single[1]) == int((batch["label"] != 255).sum())
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6),
               train.to_host(sharded[2]), train.to_host(single[2]))


def test_reduction_errors():
  with pytest.raises(ValueError, match="'sum'"):
    train.make_loss_fn("softmax_cross_entropy", 3, reduction="sum")
  with pytest.raises(ValueError, match="nnpu_risk.*normalises itself"):
    train.make_loss_fn("nnpu_risk", 1, reduction="sum_per_example", prior=0.3)
  with pytest.raises(ValueError, match="bias_lr_mult"):
    train.make_optimizer("sgd", 0.1, bias_lr_mult=0.)


def test_optimizer_default_is_unchanged_by_bias_lr_mult_1():
  """bias_lr_mult=1 adds no transformation: the optimizer state is today's."""
  params = {"kernel": jnp.ones((2, 2)), "bias": jnp.zeros(2)}
  plain = train.make_optimizer("sgd", 0.1, weight_decay=1e-3)
  explicit = train.make_optimizer("sgd", 0.1, weight_decay=1e-3, bias_lr_mult=1.)
  assert (jax.tree.structure(plain.init(params))
          == jax.tree.structure(explicit.init(params)))
