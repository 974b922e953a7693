"""The data-parallel training core: state, optimizers, loss wrapper, steps, `fit`.

The train step is written per device, pmap style: each device sees its slice
of the global batch, and gradients are averaged with `jax.lax.pmean(...,
"batch")`. `make_train_step` runs it with `jax.jit(jax.shard_map(...))` over a
1-D mesh of all devices (what `jax.pmap` itself compiles to since JAX 0.8);
the very same function also runs under `jax.pmap(step, axis_name="batch")`, or
on one device with `axis_name=None`.

Loss normalisation. The objective is the mean loss over the valid (non-void)
elements of the *global* batch,

    L = Σ_d Σ_{i ∈ valid_d} ℓ_i / Σ_d n_d,

not the mean of per-device means (which differ when devices hold different
numbers of valid pixels). Each device therefore returns
L_d = masked_mean_d · n_d · D / Σ_d n_d (D devices), whose `pmean` is exactly L,
and so is the `pmean` of its gradients.

Multi-host: after `jax.distributed.initialize()`, `make_mesh()` spans every
process's devices and each process feeds its own slice of the global batch
(`shard_batch`, i.e. `jax.make_array_from_process_local_data`); nothing else
changes.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
import time
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional

from absl import logging
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxpu import checkpoint as ckpt_lib
from jaxpu import losses
from jaxpu import metrics as metrics_lib

AXIS = "batch"
VOID_LABEL = 255

# ----------------------------------------------------------------------------
# Devices and sharding.
# ----------------------------------------------------------------------------


def make_mesh(devices: Optional[Iterable[jax.Device]] = None) -> jax.sharding.Mesh:
  """A 1-D mesh with axis `"batch"` (Auto axis type) over `devices` (default: all)."""
  devices = list(jax.devices() if devices is None else devices)
  if not devices:
    raise ValueError("make_mesh: no devices given.")
  return jax.sharding.Mesh(np.array(devices), (AXIS,),
                           axis_types=(jax.sharding.AxisType.Auto,))


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  """Leading (batch) axis split over the mesh axis `"batch"`."""
  return NamedSharding(mesh, P(AXIS))


def replicate(tree: Any, mesh: jax.sharding.Mesh) -> Any:
  """Places every leaf of `tree` fully replicated on `mesh` (works multi-host).

  Each process must pass the same values (e.g. params initialised from the
  same seed).
  """
  sharding = NamedSharding(mesh, P())

  def put(x):
    if isinstance(x, jax.Array) and x.sharding == sharding:
      return x
    if jnp.issubdtype(jnp.result_type(x), jax.dtypes.prng_key):
      return jax.random.wrap_key_data(put(jax.random.key_data(x)),
                                      impl=jax.random.key_impl(x))
    host = _to_host(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
  return jax.tree.map(put, tree)


def shard_batch(batch: Mapping[str, Any], mesh: jax.sharding.Mesh) -> dict:
  """Global device-sharded arrays from this process's slice of a batch.

  On one process the slice is the whole batch; with several processes each
  passes its own consecutive part (process 0 first). Leaves that already are
  `jax.Array`s are returned unchanged.
  """
  sharding = batch_sharding(mesh)

  def put(x):
    if isinstance(x, jax.Array):
      return x
    return jax.make_array_from_process_local_data(sharding, np.asarray(x))
  return jax.tree.map(put, dict(batch))


def _hashable(*objects) -> bool:
  try:
    hash(objects)
    return True
  except TypeError:
    return False


def _to_host(x) -> np.ndarray:
  """A replicated array's value on this host (also for arrays spanning processes)."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    x = x.addressable_data(0)
  return np.asarray(jax.device_get(x))


def to_host(tree: Any) -> Any:
  """NumPy copies of a tree of replicated arrays (params, metrics), also multi-host.

  PRNG keys come back as their raw key data.
  """
  def leaf(x):
    if jnp.issubdtype(jnp.result_type(x), jax.dtypes.prng_key):
      x = jax.random.key_data(x)
    return _to_host(x)
  return jax.tree.map(leaf, tree)


# ----------------------------------------------------------------------------
# Optimizers.
# ----------------------------------------------------------------------------


def make_schedule(learning_rate: float, schedule: str = "constant",
                  total_steps: Optional[int] = None, warmup_steps: int = 0) -> optax.Schedule:
  """Learning rate per step: constant or cosine decay to 0, after a linear warm-up from 0."""
  if learning_rate <= 0:
    raise ValueError(f"learning_rate must be > 0, got {learning_rate}.")
  if warmup_steps < 0:
    raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}.")
  if schedule == "constant":
    if not warmup_steps:
      return optax.constant_schedule(learning_rate)
    return optax.join_schedules(
        [optax.linear_schedule(0., learning_rate, warmup_steps),
         optax.constant_schedule(learning_rate)], [warmup_steps])
  if schedule == "cosine":
    if total_steps is None or total_steps <= warmup_steps:
      raise ValueError(f"schedule='cosine' needs total_steps > warmup_steps ({warmup_steps}), "
                       f"got total_steps={total_steps}.")
    return optax.warmup_cosine_decay_schedule(0., learning_rate, warmup_steps, total_steps)
  raise ValueError(f"Unknown schedule {schedule!r}; use 'constant' or 'cosine'.")


def _kernels_only(params):
  """Weight-decay mask: matrices and conv kernels, not biases (Caffe's decay_mult 0)."""
  return jax.tree.map(lambda p: jnp.ndim(p) > 1, params)


def make_optimizer(name: str = "adam", learning_rate: float = 1e-3, momentum: float = 0.9,
                   weight_decay: float = 0., schedule: str = "constant",
                   total_steps: Optional[int] = None,
                   warmup_steps: int = 0) -> optax.GradientTransformation:
  """Adam or SGD with momentum, with optional L2 weight decay and a schedule.

  Weight decay is Caffe's: `weight_decay · w` added to the gradient of every
  kernel (not biases) before the optimizer, for both `adam` and `sgd`.

  Args:
    name: `"adam"` (§5.1.2: Adam, 1e-4) or `"sgd"` (FCN: SGD, momentum 0.9,
      weight decay 5e-4).
    learning_rate: the base (peak) learning rate.
    momentum: SGD momentum (ignored by Adam).
    weight_decay: L2 coefficient.
    schedule: `"constant"` or `"cosine"` (decay to 0 at `total_steps`).
    total_steps: needed by `"cosine"`.
    warmup_steps: linear warm-up from 0 over this many steps.
  """
  lr = make_schedule(learning_rate, schedule, total_steps, warmup_steps)
  if name == "adam":
    opt = optax.adam(lr)
  elif name == "sgd":
    opt = optax.sgd(lr, momentum=momentum or None)
  else:
    raise ValueError(f"Unknown optimizer {name!r}; use 'adam' or 'sgd'.")
  if weight_decay < 0:
    raise ValueError(f"weight_decay must be >= 0, got {weight_decay}.")
  if weight_decay:
    opt = optax.chain(optax.add_decayed_weights(weight_decay, mask=_kernels_only), opt)
  return opt


# ----------------------------------------------------------------------------
# Training state.
# ----------------------------------------------------------------------------


@flax.struct.dataclass
class TrainState:
  """Everything a step changes or needs: a pytree, checkpointed as a whole.

  Attributes:
    step: int32 scalar, the number of steps taken.
    params: the model parameters `{"encoder": ..., "head": ...}` (float32).
    opt_state: the optax state.
    rng: a typed PRNG key; step t's dropout key is derived from it, t and the
      device index (so a resumed run draws the same masks).
  """
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


DEFAULT_PRNG_IMPL = "rbg"


def _as_key(rng) -> jax.Array:
  """A typed PRNG key: an int seed gives an `rbg` key, keys are used as given."""
  if isinstance(rng, (int, np.integer)):
    return jax.random.key(int(rng), impl=DEFAULT_PRNG_IMPL)
  rng = jnp.asarray(rng)
  if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    return rng
  if rng.shape == (2,) and rng.dtype == jnp.uint32:  # a raw jax.random.PRNGKey
    return jax.random.wrap_key_data(rng, impl="threefry2x32")
  raise ValueError(f"rng must be an int seed or a PRNG key, got {rng.dtype}{rng.shape}.")


@functools.partial(jax.jit, static_argnums=(0, 3))
def _init_params(model, init_rng, dropout_rng, input_shape):
  """Jitted (eager Flax init runs op by op) and cached per model and input shape."""
  x = jnp.zeros(input_shape, jnp.float32)
  return model.init({"params": init_rng, "dropout": dropout_rng}, x, train=False)["params"]


def create_train_state(model: nn.Module, optimizer: optax.GradientTransformation, rng,
                       sample_batch, *, mesh: Optional[jax.sharding.Mesh] = None) -> TrainState:
  """Initialises params (from `rng`, an int seed or key) and the optimizer state.

  Args:
    model: a `jaxpu.models` module.
    optimizer: from `make_optimizer`.
    rng: int seed or PRNG key; the same seed gives the same state. An int
      seed makes an `rbg` key (XLA's RngBitGenerator): on this CPU its
      initialisers and dropout masks compile 2-5x faster than threefry's
      (cifar_cnn: init 7.7 s → 1.8 s, train-step compile 14 s → 6 s).
    sample_batch: a batch dict with `"image"` (or the input array itself);
      only its per-example shape is used.
    mesh: if given, the state is placed replicated on it (needed multi-host).
  """
  image = sample_batch["image"] if isinstance(sample_batch, Mapping) else sample_batch
  init_rng, dropout_rng, state_rng = jax.random.split(_as_key(rng), 3)
  input_shape = (1,) + tuple(image.shape[1:])
  if _hashable(model):
    params = _init_params(model, init_rng, dropout_rng, input_shape)
  else:
    params = jax.jit(functools.partial(_init_params.__wrapped__, model), static_argnums=(2,))(
        init_rng, dropout_rng, input_shape)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     opt_state=optimizer.init(params), rng=state_rng)
  return state if mesh is None else replicate(state, mesh)


# ----------------------------------------------------------------------------
# Loss.
# ----------------------------------------------------------------------------


def valid_mask(batch: Mapping[str, Any], label_key: str = "label") -> jax.Array:
  """`batch["mask"]` if present, else `label != 255` (VOC's void label)."""
  if "mask" in batch:
    return jnp.asarray(batch["mask"], bool)
  return batch[label_key] != VOID_LABEL


@dataclasses.dataclass(frozen=True)
class LossSpec:
  """A `jaxpu.losses` loss by name, reduced over the valid elements.

  Call `spec(logits, batch, axis_name=None) -> (loss, num_valid)`:
  - binary models (`num_classes == 1`) have their trailing logit axis squeezed;
  - elementwise losses are reduced with `losses.masked_mean` over valid
    elements (`batch["mask"]` or `label != 255`), normalised so that the
    `pmean` over `axis_name` of the per-device losses is the mean over the
    valid elements of the whole global batch (module docstring);
  - `class_balanced`: each element's loss is multiplied by
    `w[label]`, `w = losses.class_balanced_weights` of the global batch's
    valid labels (gathered over `axis_name`, so every device uses the same w);
  - the batch-level PU risks (`upu_risk`, `nnpu_risk`) are called directly on
    the device's slice; across devices their per-device estimates are averaged
    (their normalisers are per-device counts).
  `num_valid` is the number of valid elements of the global batch.
  """
  name: str
  num_classes: int
  class_balanced: bool = False
  kwarg_items: tuple = ()  # the loss' keyword arguments as sorted (name, value) pairs

  @property
  def kwargs(self) -> dict:
    return dict(self.kwarg_items)

  @property
  def is_risk_estimator(self) -> bool:
    return self.name in losses.RISK_ESTIMATORS + losses.MULTICLASS_RISK_ESTIMATORS

  def __call__(self, logits, batch, axis_name: Optional[str] = None):
    labels = batch["label"]
    valid = valid_mask(batch)
    if self.num_classes == 1:
      if logits.shape[-1] != 1:
        raise ValueError(f"Loss {self.name!r} with num_classes=1 expects logits with a "
                         f"trailing axis of 1, got shape {logits.shape}.")
      logits = logits[..., 0]
    fn = losses.get(self.name)
    local_count = jnp.sum(valid)
    global_count = local_count if axis_name is None else jax.lax.psum(local_count, axis_name)
    if self.is_risk_estimator:
      return fn(logits, labels, where=valid, **self.kwargs), global_count

    values = fn(logits, labels, where=valid, **self.kwargs)
    if self.class_balanced:
      all_labels, all_valid = labels, valid
      if axis_name is not None:
        all_labels = jax.lax.all_gather(labels, axis_name, tiled=True)
        all_valid = jax.lax.all_gather(valid, axis_name, tiled=True)
      weights = losses.class_balanced_weights(all_labels, max(2, self.num_classes),
                                              where=all_valid)
      values = values * weights[jnp.where(valid, labels, 0)]
    loss = losses.masked_mean(values, valid)
    if axis_name is not None:
      num_devices = jax.lax.psum(1, axis_name)
      loss = loss * local_count * num_devices / jnp.maximum(global_count, 1)
    return loss, global_count


def make_loss_fn(name: str, num_classes: int, class_balanced: bool = False,
                 **loss_kwargs) -> LossSpec:
  """The loss `name` of `jaxpu.losses` with `loss_kwargs` (e.g. `negative_weight=0.5`).

  Binary losses need `num_classes=1` (one logit), multiclass losses
  `num_classes >= 2`.
  """
  fn = losses.get(name)
  if name in losses.BINARY_LOSSES + losses.RISK_ESTIMATORS and num_classes != 1:
    raise ValueError(f"Loss {name!r} is binary: build the model with num_classes=1, "
                     f"got num_classes={num_classes}.")
  if name in losses.MULTICLASS_LOSSES + losses.MULTICLASS_RISK_ESTIMATORS and num_classes < 2:
    raise ValueError(f"Loss {name!r} is multiclass: it needs num_classes >= 2, "
                     f"got {num_classes}.")
  if "where" in loss_kwargs:
    raise ValueError("make_loss_fn: do not pass `where`; the valid elements come from each "
                     "batch (`mask`, or label != 255).")
  if class_balanced and name in losses.RISK_ESTIMATORS + losses.MULTICLASS_RISK_ESTIMATORS:
    raise ValueError(f"class_balanced does not apply to the batch-level risk {name!r}.")
  try:
    inspect.signature(fn).bind(None, None, **loss_kwargs)
  except TypeError as e:
    raise ValueError(f"Loss {name!r} does not accept arguments {sorted(loss_kwargs)}: {e}. "
                     f"Its signature is {name}{inspect.signature(fn)}.") from None
  return LossSpec(name, num_classes, class_balanced, tuple(sorted(loss_kwargs.items())))


# ----------------------------------------------------------------------------
# Steps.
# ----------------------------------------------------------------------------


def train_step(state: TrainState, batch: Mapping[str, Any], *, model: nn.Module,
               optimizer: optax.GradientTransformation, loss_fn: Callable,
               axis_name: Optional[str] = AXIS) -> tuple[TrainState, dict]:
  """One optimisation step on this device's slice of the batch (pmap style).

  Gradients and the loss are `pmean`-ed over `axis_name` (None: one device,
  no collectives). Bind the keyword arguments with `functools.partial` to run
  it under `jax.pmap(..., axis_name="batch")`; `make_train_step` runs it under
  `jax.shard_map`. The dropout key of step t on device d is
  `fold_in(fold_in(state.rng, t), d)`.

  Args:
    state: the replicated training state.
    batch: this device's slice: `"image"`, `"label"`, optional `"mask"`.
    model: a `jaxpu.models` module (called with `train=True`).
    optimizer: an optax transformation.
    loss_fn: a `LossSpec` (`make_loss_fn`), or any callable
      `(logits, batch, axis_name) -> (loss, num_valid)` normalised the same way.
    axis_name: the device axis, or None.

  Returns:
    (new state, {"loss": global mean loss, "num_valid": valid elements}).
  """
  rng = jax.random.fold_in(state.rng, state.step)
  if axis_name is not None:
    rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))

  def objective(params):
    logits = model.apply({"params": params}, batch["image"], train=True,
                         rngs={"dropout": rng})
    return loss_fn(logits, batch, axis_name=axis_name)

  (loss, num_valid), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
  if axis_name is not None:
    grads = jax.lax.pmean(grads, axis_name)
    loss = jax.lax.pmean(loss, axis_name)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
  return new_state, {"loss": loss, "num_valid": num_valid}


def _check_divisible(batch, mesh):
  size = jax.tree.leaves(batch)[0].shape[0]
  if size % mesh.size:
    raise ValueError(f"Global batch size {size} is not divisible by the {mesh.size} devices "
                     f"of the mesh; use a multiple of {mesh.size}.")


def _shard_mapped_train_step(state, batch, *, model, optimizer, loss_fn, mesh):
  step = functools.partial(train_step, model=model, optimizer=optimizer, loss_fn=loss_fn,
                           axis_name=AXIS)
  return jax.shard_map(step, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=(P(), P()),
                       check_vma=False)(state, batch)


_STATIC = ("model", "optimizer", "loss_fn", "mesh")

# XLA's CPU backend (JAX 0.10) hands convolutions, dots and reductions to YNNPACK.
# YNNPACK runs the weight gradient of a convolution (a window as large as the
# feature map) at 5-8 GFLOP/s, Eigen about 10× faster; without convolutions in
# the list they go to Eigen (benchmarks/README.md). Other platforms: no options.
CPU_COMPILER_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type":
        "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE",
}


def default_compiler_options(platform: Optional[str] = None) -> dict:
  """XLA compiler options of jaxpu's train step on `platform` (default: JAX's backend).

  `CPU_COMPILER_OPTIONS` on "cpu", none elsewhere. Pass them to your own
  `jax.jit(..., compiler_options=...)` to get the same convolution kernels.
  """
  platform = platform or jax.default_backend()
  return dict(CPU_COMPILER_OPTIONS) if platform == "cpu" else {}


@functools.lru_cache(maxsize=None)
def _jitted_train_step(donate: bool, options: tuple) -> Callable:
  """One module-level jit per (donation, compiler options), so `fit` calls in one process
  (resume, repeats with the same objects) reuse the compiled step."""
  return jax.jit(_shard_mapped_train_step, static_argnames=_STATIC,
                 donate_argnums=(0,) if donate else (), compiler_options=dict(options) or None)


def make_train_step(model: nn.Module, optimizer: optax.GradientTransformation,
                    loss_fn: Callable, mesh: Optional[jax.sharding.Mesh] = None,
                    donate: bool = True, compiler_options: Optional[Mapping[str, Any]] = None
                    ) -> Callable[[TrainState, Mapping], tuple]:
  """`train_step` under `jax.jit(jax.shard_map(...))` on `mesh` (default: all devices).

  The state is replicated (`P()`), the batch split along its leading axis
  (`P("batch")`), the state donated. `check_vma=False` gives pmap's semantics:
  inside the step the gradient is per device until the explicit `pmean` (with
  JAX's varying-axes checks on, the transpose of the implicit broadcast of the
  replicated params would already sum the gradients over devices).
  `compiler_options` go to `jax.jit`; None: `default_compiler_options` of the
  mesh's platform; `{}`: XLA's defaults (and `XLA_FLAGS`).
  """
  mesh = make_mesh() if mesh is None else mesh
  if compiler_options is None:
    compiler_options = default_compiler_options(mesh.devices.flat[0].platform)
  options = tuple(sorted(compiler_options.items()))
  config = dict(model=model, optimizer=optimizer, loss_fn=loss_fn, mesh=mesh)
  if _hashable(model, optimizer, loss_fn, mesh, options):
    jitted = functools.partial(_jitted_train_step(donate, options), **config)
  else:  # e.g. a loss with array-valued arguments: compile for this call site only
    jitted = jax.jit(functools.partial(_shard_mapped_train_step, **config),
                     donate_argnums=(0,) if donate else (),
                     compiler_options=dict(options) or None)

  def run(state, batch):
    _check_divisible(batch, mesh)
    return jitted(state, batch)
  return run


def eval_step(params: Any, batch: Mapping[str, Any], *, model: nn.Module, num_classes: int,
              axis_name: Optional[str] = AXIS, label_key: str = "label") -> jax.Array:
  """Confusion matrix `[C, C]` of this device's slice, `psum`-ed over `axis_name`.

  Predictions are the argmax of the logits (binary models: logit > 0, giving a
  2×2 matrix). Elements outside `batch["mask"]` (or with label 255) are not
  counted. `label_key="true_label"` scores against the uncorrupted labels.
  """
  logits = model.apply({"params": params}, batch["image"], train=False)
  if num_classes == 1:
    predictions, size = (logits[..., 0] > 0).astype(jnp.int32), 2
  else:
    predictions, size = jnp.argmax(logits, axis=-1).astype(jnp.int32), num_classes
  labels = batch[label_key]
  cm = metrics_lib.confusion_matrix(predictions, labels, size,
                                    where=valid_mask(batch, label_key))
  return cm if axis_name is None else jax.lax.psum(cm, axis_name)


def _shard_mapped_eval_step(params, batch, *, model, num_classes, label_key, mesh):
  step = functools.partial(eval_step, model=model, num_classes=num_classes, axis_name=AXIS,
                           label_key=label_key)
  return jax.shard_map(step, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=P(),
                       check_vma=False)(params, batch)


_jitted_eval_step = jax.jit(_shard_mapped_eval_step,
                            static_argnames=("model", "num_classes", "label_key", "mesh"))


def make_eval_step(model: nn.Module, num_classes: int,
                   mesh: Optional[jax.sharding.Mesh] = None,
                   label_key: str = "label") -> Callable[[Any, Mapping], jax.Array]:
  """`eval_step` under `jax.jit(jax.shard_map(...))`: `(params, batch) -> [C, C]` (replicated)."""
  mesh = make_mesh() if mesh is None else mesh
  config = dict(model=model, num_classes=num_classes, label_key=label_key, mesh=mesh)
  if _hashable(model, mesh):
    jitted = functools.partial(_jitted_eval_step, **config)
  else:
    jitted = jax.jit(functools.partial(_shard_mapped_eval_step, **config))

  def run(params, batch):
    _check_divisible(batch, mesh)
    return jitted(params, batch)
  return run


def evaluate(eval_fn: Callable[[Any, Mapping], jax.Array], params: Any,
             batches: Iterable[Mapping[str, Any]],
             mesh: Optional[jax.sharding.Mesh] = None) -> np.ndarray:
  """Sums `eval_fn(params, batch)` over `batches` on device; one host fetch at the end.

  NumPy batches are sharded over `mesh` first (default: all devices).
  """
  mesh = make_mesh() if mesh is None else mesh
  total = None
  for batch in batches:
    cm = eval_fn(params, shard_batch(batch, mesh))
    total = cm if total is None else total + cm
  if total is None:
    raise ValueError("evaluate: no batches to evaluate.")
  return _to_host(total)


# ----------------------------------------------------------------------------
# The training loop.
# ----------------------------------------------------------------------------


class TrainingPreempted(SystemExit):
  """Raised by `fit` after SIGTERM, once the checkpoint of `step` is written."""

  def __init__(self, step: int):
    super().__init__(143)  # 128 + SIGTERM, the shell's convention
    self.step = step


def _format_eta(seconds: float) -> str:
  seconds = int(max(0, seconds))
  return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _Writers:
  """TensorBoard event files + `metrics.jsonl` in the workdir (process 0 only)."""

  def __init__(self, workdir: Optional[str], start_step: int):
    self.active = workdir is not None and jax.process_index() == 0
    self._tb = None
    self._jsonl = None
    if not self.active:
      return
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "metrics.jsonl")
    kept = []
    if os.path.exists(path):  # on resume, drop what the lost steps logged
      with open(path) as f:
        for line in f:
          try:
            if json.loads(line)["step"] <= start_step:
              kept.append(line if line.endswith("\n") else line + "\n")
          except (ValueError, KeyError):  # a line cut short by a crash
            pass
    self._jsonl = open(path, "w")
    self._jsonl.writelines(kept)
    self._jsonl.flush()
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self._tb = SummaryWriter(logdir=workdir)

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self.active:
      return
    for name, value in scalars.items():
      self._tb.add_scalar(name, value, step)
    self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
    self._jsonl.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
    if self._jsonl is not None:
      self._jsonl.close()


def fit(state: TrainState, *, model: nn.Module, optimizer: optax.GradientTransformation,
        loss_fn: Callable, train_iter_fn: Callable[[int], Iterable[Mapping[str, Any]]],
        num_steps: int, workdir: Optional[str] = None,
        mesh: Optional[jax.sharding.Mesh] = None, log_every: int = 50,
        eval_every: int = 0, eval_fn: Optional[Callable[[TrainState], Mapping[str, float]]] = None,
        checkpoint_every: int = 0, max_to_keep: Optional[int] = ckpt_lib.DEFAULT_MAX_TO_KEEP,
        async_checkpoint: bool = True) -> tuple[TrainState, list[dict]]:
  """Trains `state` up to step `num_steps`; resumes from `workdir` if it holds a checkpoint.

  Each step takes the next batch of `train_iter_fn(start_step)` (NumPy dicts
  are sharded over `mesh`; global `jax.Array`s are used as they are), where
  `start_step` is the step the run starts or resumes from, so a resumed run
  sees the same batches as an uninterrupted one. Metrics stay on device except
  every `log_every` steps, when the mean loss, examples/s and ETA are logged
  (absl) and written to TensorBoard event files and `metrics.jsonl` in
  `workdir` (tags `train/loss`, `train/examples_per_sec`).

  Args:
    state: the initial state (e.g. `create_train_state`, or with transferred
      params). It is donated: use the returned state afterwards.
    model, optimizer, loss_fn: as for `make_train_step`.
    train_iter_fn: `start_step -> iterator of batches`.
    num_steps: the final step number (not the number of steps of this call).
    workdir: TensorBoard events, `metrics.jsonl` and `checkpoints/`; None:
      log only, no checkpoints.
    mesh: device mesh (default: all devices).
    log_every: steps between host fetches of the metrics.
    eval_every: call `eval_fn(state)` every this many steps and at the end
      (0: only at the end, if `eval_fn` is given). Its scalars are logged and
      written too (under `eval/` unless the name has a `/`).
    checkpoint_every: save every this many steps (0: only at the end and on
      SIGTERM), keeping the last `max_to_keep`; needs `workdir`.
    async_checkpoint: write checkpoints in the background.

  Returns:
    (final state, history): the history holds one dict per log or eval point,
    with `step` and the scalars written.

  Raises:
    TrainingPreempted (a SystemExit, code 143): after SIGTERM, once the state
      of the current step is checkpointed.
  """
  if log_every < 1:
    raise ValueError(f"log_every must be >= 1, got {log_every}.")
  if checkpoint_every and workdir is None:
    raise ValueError("checkpoint_every needs a workdir to write the checkpoints to.")
  mesh = make_mesh() if mesh is None else mesh
  with ckpt_lib.quiet_orbax_logs():
    manager = None
    if workdir is not None:
      manager = ckpt_lib.CheckpointManager(
          os.path.join(workdir, ckpt_lib.CHECKPOINT_SUBDIR),
          save_interval_steps=checkpoint_every or max(1, num_steps), max_to_keep=max_to_keep,
          async_save=async_checkpoint)
    try:
      state = replicate(state, mesh)
      if manager is not None and manager.latest_step() is not None:
        state = manager.restore(state)
        logging.info("Resuming from %s at step %d.", manager.directory, manager.latest_step())
      return _train_loop(state, model=model, optimizer=optimizer, loss_fn=loss_fn,
                         train_iter_fn=train_iter_fn, num_steps=num_steps, workdir=workdir,
                         mesh=mesh, log_every=log_every, eval_every=eval_every,
                         eval_fn=eval_fn, manager=manager)
    finally:
      if manager is not None:
        manager.wait_until_finished()
        manager.close()


def _train_loop(state, *, model, optimizer, loss_fn, train_iter_fn, num_steps, workdir, mesh,
                log_every, eval_every, eval_fn, manager):
  """`fit`'s loop from the state's step to `num_steps`."""
  start_step = int(_to_host(state.step))
  step_fn = make_train_step(model, optimizer, loss_fn, mesh)
  writers = _Writers(workdir, start_step)
  history: list[dict] = []
  multi_process = jax.process_count() > 1

  def record(step, scalars):
    history.append({"step": step, **scalars})
    writers.write(step, scalars)

  def run_eval(step):
    scalars = {(k if "/" in k else f"eval/{k}"): float(v) for k, v in eval_fn(state).items()}
    logging.info("step %d eval: %s", step,
                 ", ".join(f"{k} {v:.4f}" for k, v in scalars.items()))
    record(step, scalars)

  try:
    with ckpt_lib.SigtermGuard() as guard:
      batches: Iterator = iter(train_iter_fn(start_step))
      pending, window_start, window_step = [], time.perf_counter(), start_step
      for step in range(start_step + 1, num_steps + 1):
        try:
          batch = next(batches)
        except StopIteration:
          raise ValueError(f"train_iter_fn({start_step}) ran out of batches before step "
                           f"{step} of {num_steps}; make it repeat.") from None
        batch = shard_batch(batch, mesh)
        batch_size = jax.tree.leaves(batch)[0].shape[0]
        state, step_metrics = step_fn(state, batch)
        pending.append(step_metrics["loss"])

        if step % log_every == 0 or step == num_steps:
          loss = float(np.mean([_to_host(x) for x in pending]))
          elapsed = time.perf_counter() - window_start
          steps_per_sec = (step - window_step) / max(elapsed, 1e-9)
          eta = (num_steps - step) / steps_per_sec
          logging.info("step %d/%d  loss %.4f  %.1f examples/s  ETA %s", step, num_steps,
                       loss, steps_per_sec * batch_size, _format_eta(eta))
          record(step, {"train/loss": loss,
                        "train/examples_per_sec": steps_per_sec * batch_size})
          pending, window_start, window_step = [], time.perf_counter(), step

        if eval_fn is not None and ((eval_every and step % eval_every == 0)
                                    or step == num_steps):
          eval_start = time.perf_counter()
          run_eval(step)
          window_start += time.perf_counter() - eval_start  # keep eval out of the throughput
        saved = manager is not None and manager.save(step, state, force=step == num_steps)
        preempted = manager.reached_preemption(step) if (
            multi_process and manager is not None) else guard.requested
        if preempted:
          if manager is not None:
            if not saved:
              manager.save(step, state, force=True)
            manager.wait_until_finished()
          logging.warning("Preempted (SIGTERM) at step %d; %s", step,
                          f"checkpoint in {manager.directory}" if manager else "no workdir")
          raise TrainingPreempted(step)
  finally:
    writers.close()
  return state, history
