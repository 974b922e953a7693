"""Training state, the per-device train and eval steps, and their jitted shard_map forms.

The train step is written per device, pmap style: each device sees its slice
of the global batch, and gradients are averaged with `jax.lax.pmean(...,
"batch")`. `make_train_step` runs it with `jax.jit(jax.shard_map(...))` over a
1-D mesh of all devices (what `jax.pmap` itself compiles to since JAX 0.8);
the very same function also runs under `jax.pmap(step, axis_name="batch")`, or
on one device with `axis_name=None`. The loss is normalised so that the
`pmean` of the per-device values is the global batch's (`objective`).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterable, Mapping, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import PartitionSpec as P

from jaxpu import metrics as metrics_lib
from jaxpu import parallel
from jaxpu.parallel import AXIS
from jaxpu.train.objective import valid_mask

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


def _hashable(*objects) -> bool:
  try:
    hash(objects)
    return True
  except TypeError:
    return False


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
  return state if mesh is None else parallel.replicate(state, mesh)


# ----------------------------------------------------------------------------
# The train step.
# ----------------------------------------------------------------------------


def train_step(state: TrainState, batch: Mapping[str, Any], *, model: nn.Module,
               optimizer: optax.GradientTransformation, loss_fn: Callable,
               axis_name: Optional[str] = AXIS, microbatches: int = 1
               ) -> tuple[TrainState, dict]:
  """One optimisation step on this device's slice of the batch (pmap style).

  Gradients and the loss are `pmean`-ed over `axis_name` (None: one device,
  no collectives). Bind the keyword arguments with `functools.partial` to run
  it under `jax.pmap(..., axis_name="batch")`; `make_train_step` runs it under
  `jax.shard_map`. The dropout key of step t on device d is
  `fold_in(fold_in(state.rng, t), d)`.

  Gradient accumulation (`microbatches = K > 1`): this device's slice is cut
  into K consecutive equal parts, run one after the other (`jax.lax.scan`:
  the activations of one part in memory at a time), and their losses and
  gradients are combined weighted by each part's global normaliser N_k
  (`loss_fn.normaliser`, psum-ed over the devices): Σ_k N_k·g_k / Σ_k N_k.
  On XLA's CPU backend the scan is unrolled (convolutions inside XLA:CPU
  loops are 10-100× slower), so there it saves no memory.
  That is the whole batch's loss and gradient, for every reduction of
  `LossSpec` (`"mean"`, `"mean_per_example"`, `"sum_per_example"`), up to
  float rounding; part k's dropout key is `fold_in(key, k)` (other masks than
  K = 1's). Not for class-balanced losses (their class weights would come
  from each part) or the batch-level risks; `loss_fn` must have a
  `normaliser`. K = 1 is the plain step.

  Args:
    state: the replicated training state.
    batch: this device's slice: `"image"`, `"label"`, optional `"mask"`.
    model: a `jaxpu.models` module (called with `train=True`).
    optimizer: an optax transformation.
    loss_fn: a `LossSpec` (`make_loss_fn`), or any callable
      `(logits, batch, axis_name) -> (loss, num_valid)` normalised the same way.
    axis_name: the device axis, or None.
    microbatches: K, a divisor of this device's batch size.

  Returns:
    (new state, {"loss": global batch loss, "num_valid": valid elements}).
  """
  rng = jax.random.fold_in(state.rng, state.step)
  if axis_name is not None:
    rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))

  if microbatches == 1:
    def objective(params):
      logits = model.apply({"params": params}, batch["image"], train=True,
                           rngs={"dropout": rng})
      return loss_fn(logits, batch, axis_name=axis_name)

    (loss, num_valid), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
  else:
    loss, num_valid, grads = _accumulated_value_and_grad(
        state.params, batch, rng, model=model, loss_fn=loss_fn, axis_name=axis_name,
        microbatches=microbatches)
  if axis_name is not None:
    grads = jax.lax.pmean(grads, axis_name)
    loss = jax.lax.pmean(loss, axis_name)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
  return new_state, {"loss": loss, "num_valid": num_valid}


def _check_microbatches(microbatches, loss_fn) -> None:
  if isinstance(microbatches, bool) or not isinstance(microbatches, (int, np.integer)) or (
      microbatches < 1):
    raise ValueError(f"microbatches must be a positive int, got {microbatches!r}.")
  if microbatches == 1:
    return
  if not callable(getattr(loss_fn, "normaliser", None)):
    raise ValueError("microbatches > 1 needs a loss with a `normaliser(batch, axis_name)` "
                     "method (a LossSpec of make_loss_fn) to weight the micro-batches.")
  if getattr(loss_fn, "class_balanced", False):
    raise ValueError("microbatches > 1 does not apply to a class_balanced loss: its class "
                     "weights would come from each micro-batch, not the whole batch.")
  if getattr(loss_fn, "is_risk_estimator", False):
    raise ValueError(f"microbatches > 1 does not apply to the batch-level risk "
                     f"{loss_fn.name!r}: it is not a sum over examples.")


def _accumulated_value_and_grad(params, batch, rng, *, model, loss_fn, axis_name,
                                microbatches):
  """Loss, valid count and gradient of the whole slice from `microbatches` parts (scan)."""
  _check_microbatches(microbatches, loss_fn)
  size = jax.tree.leaves(batch)[0].shape[0]
  if size % microbatches:
    raise ValueError(f"The per-device batch size {size} is not divisible by "
                     f"microbatches={microbatches}.")
  parts = jax.tree.map(lambda x: x.reshape(microbatches, size // microbatches, *x.shape[1:]),
                       batch)

  def objective(p, part, key):
    logits = model.apply({"params": p}, part["image"], train=True, rngs={"dropout": key})
    return loss_fn(logits, part, axis_name=axis_name)

  def body(carry, inputs):
    grad_sum, loss_sum, weight_sum, valid_sum = carry
    index, part = inputs
    (loss, num_valid), grads = jax.value_and_grad(objective, has_aux=True)(
        params, part, jax.random.fold_in(rng, index))
    weight = loss_fn.normaliser(part, axis_name=axis_name).astype(jnp.float32)
    grad_sum = jax.tree.map(lambda a, g: a + weight * g, grad_sum, grads)
    return (grad_sum, loss_sum + weight * loss, weight_sum + weight,
            valid_sum + num_valid), None

  init = (jax.tree.map(jnp.zeros_like, params), jnp.zeros((), jnp.float32),
          jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
  # XLA's CPU backend runs convolutions inside a loop body 10-100x slower than outside
  # (FCN-AlexNet's conv2 weight gradient, 10 images: 0.5 s unrolled, 75 s in the loop),
  # so there the loop is unrolled; on accelerators it stays a loop (one part in memory).
  (grad_sum, loss_sum, weight_sum, num_valid), _ = jax.lax.scan(
      body, init, (jnp.arange(microbatches), parts),
      unroll=jax.default_backend() == "cpu")
  total = jnp.maximum(weight_sum, 1.)
  grads = jax.tree.map(lambda g: g / total, grad_sum)
  return loss_sum / total, num_valid, grads


def _check_divisible(batch, mesh, microbatches: int = 1):
  size = jax.tree.leaves(batch)[0].shape[0]
  if size % mesh.size:
    raise ValueError(f"Global batch size {size} is not divisible by the {mesh.size} devices "
                     f"of the mesh; use a multiple of {mesh.size}.")
  if (size // mesh.size) % microbatches:
    raise ValueError(f"The per-device batch size {size // mesh.size} (global batch {size} "
                     f"over {mesh.size} devices) is not divisible by "
                     f"microbatches={microbatches}; use a global batch that is a multiple "
                     f"of {mesh.size * microbatches}.")


def _shard_mapped_train_step(state, batch, *, model, optimizer, loss_fn, mesh,
                             microbatches=1):
  step = functools.partial(train_step, model=model, optimizer=optimizer, loss_fn=loss_fn,
                           axis_name=AXIS, microbatches=microbatches)
  return jax.shard_map(step, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=(P(), P()),
                       check_vma=False)(state, batch)


_STATIC = ("model", "optimizer", "loss_fn", "mesh", "microbatches")

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
                    donate: bool = True, compiler_options: Optional[Mapping[str, Any]] = None,
                    microbatches: int = 1) -> Callable[[TrainState, Mapping], tuple]:
  """`train_step` under `jax.jit(jax.shard_map(...))` on `mesh` (default: all devices).

  The state is replicated (`P()`), the batch split along its leading axis
  (`P("batch")`), the state donated. `check_vma=False` gives pmap's semantics:
  inside the step the gradient is per device until the explicit `pmean` (with
  JAX's varying-axes checks on, the transpose of the implicit broadcast of the
  replicated params would already sum the gradients over devices).
  `compiler_options` go to `jax.jit`; None: `default_compiler_options` of the
  mesh's platform; `{}`: XLA's defaults (and `XLA_FLAGS`). `microbatches`:
  gradient accumulation over this many parts of each device's slice
  (`train_step`); the global batch must be a multiple of
  `mesh.size × microbatches`. 1 compiles the plain step.
  """
  mesh = parallel.make_mesh() if mesh is None else mesh
  _check_microbatches(microbatches, loss_fn)
  microbatches = int(microbatches)
  if compiler_options is None:
    compiler_options = default_compiler_options(mesh.devices.flat[0].platform)
  options = tuple(sorted(compiler_options.items()))
  config = dict(model=model, optimizer=optimizer, loss_fn=loss_fn, mesh=mesh)
  if microbatches != 1:
    config["microbatches"] = microbatches
  if _hashable(model, optimizer, loss_fn, mesh, options):
    jitted = functools.partial(_jitted_train_step(donate, options), **config)
  else:  # e.g. a loss with array-valued arguments: compile for this call site only
    jitted = jax.jit(functools.partial(_shard_mapped_train_step, **config),
                     donate_argnums=(0,) if donate else (),
                     compiler_options=dict(options) or None)

  def run(state, batch):
    _check_divisible(batch, mesh, microbatches)
    return jitted(state, batch)
  return run


# ----------------------------------------------------------------------------
# Evaluation.
# ----------------------------------------------------------------------------


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
  mesh = parallel.make_mesh() if mesh is None else mesh
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
  mesh = parallel.make_mesh() if mesh is None else mesh
  total = None
  for batch in batches:
    cm = eval_fn(params, parallel.shard_batch(batch, mesh))
    total = cm if total is None else total + cm
  if total is None:
    raise ValueError("evaluate: no batches to evaluate.")
  return parallel.host_array(total)
