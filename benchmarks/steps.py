"""The two sides of a train-step measurement: jaxpu's step and PyTorch's, as `run(n)`.

Shared by `benchmarks/train_step.py` and `benchmarks/input_pipeline.py`.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Optional

from benchmarks import common


@dataclasses.dataclass(frozen=True)
class Config:
  """A model configuration to train: `jaxpu.models.get(model, num_classes, **options)`."""
  model: str
  input_shape: tuple  # per example
  num_classes: int
  loss: str
  batch_sizes: tuple = ()
  options: tuple = ()  # model options as (name, value) pairs
  segmentation: bool = False

  @property
  def model_options(self) -> dict:
    return dict(self.options)


def make_batch(config: Config, batch_size: int, image_size: Optional[int] = None) -> dict:
  """A fixed random batch in jaxpu's layout (NumPy): normalised-looking images, labels."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  rs = np.random.RandomState(0)
  shape = config.input_shape
  if image_size and len(shape) == 3:
    shape = (image_size, image_size, shape[2])
  image = rs.standard_normal((batch_size,) + shape).astype(np.float32)
  label_shape = (batch_size,) + (shape[:2] if config.segmentation else ())
  label = rs.randint(0, max(2, config.num_classes), label_shape).astype(np.int32)
  return {"image": image, "label": label}


def jax_candidate(config: Config, batch: dict, num_devices: int, flops: bool = True,
                  compiler_options: Optional[dict] = None) -> dict:
  """jaxpu's train step on `num_devices` devices: `run(n)`, compile time, FLOPs, params.

  `compiler_options`: those of `jaxpu.train.make_train_step` (None: its defaults).
  """
  import jax  # pylint: disable=g-import-not-at-top
  from jaxpu import models, train  # pylint: disable=g-import-not-at-top

  model = models.get(config.model, config.num_classes, **config.model_options)
  optimizer = train.make_optimizer("adam", 1e-4)
  loss_fn = train.make_loss_fn(config.loss, config.num_classes)
  mesh = train.make_mesh(jax.local_devices()[:num_devices])
  state = train.create_train_state(model, optimizer, 0, batch, mesh=mesh)
  params = sum(x.size for x in jax.tree.leaves(state.params))
  step = train.make_train_step(model, optimizer, loss_fn, mesh,
                              compiler_options=compiler_options)
  device_batch = train.shard_batch(batch, mesh)
  box = {"state": state}

  def run(n: int) -> None:
    metrics = None
    for _ in range(n):
      box["state"], metrics = step(box["state"], device_batch)
    jax.block_until_ready(metrics["loss"])

  t0 = time.perf_counter()
  run(1)
  first_call = time.perf_counter() - t0

  flops_per_step = float("nan")
  if flops:
    local = {k: v[: v.shape[0] // num_devices] for k, v in batch.items()}
    single = jax.jit(functools.partial(train.train_step, model=model, optimizer=optimizer,
                                       loss_fn=loss_fn, axis_name=None))
    local_state = train.create_train_state(model, optimizer, 0, local)
    cost = common.compiled_cost(single.lower(local_state, local).compile())
    flops_per_step = cost["flops"] * num_devices
  return {"run": run, "first_call_s": first_call, "flops_per_step": flops_per_step,
          "params": params}


def torch_candidates(config: Config, batch: dict, modes) -> dict:
  """PyTorch `run(n)` per mode that builds and runs; errors are reported, not raised."""
  from benchmarks import torch_models  # pylint: disable=g-import-not-at-top
  out, errors = {}, {}
  for mode in modes:
    try:
      run = torch_models.make_train_step(config.model, config.num_classes, batch, mode=mode,
                                         **config.model_options)
      t0 = time.perf_counter()
      run(1)
      out[mode] = (run, time.perf_counter() - t0)
    except Exception as e:  # pylint: disable=broad-except  (torch.compile needs a toolchain)
      errors[mode] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
  return {"runs": out, "errors": errors}
