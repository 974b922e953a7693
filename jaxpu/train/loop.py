"""`fit`: the training loop, with logging, evaluation, checkpoints and preemption.

Metrics stay on device between log points; TensorBoard event files and
`metrics.jsonl` go to the workdir (process 0); Orbax checkpoints go to
`workdir/checkpoints`, and a run resumes from the latest one. On SIGTERM the
loop saves the current step and raises `TrainingPreempted`.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional

from absl import logging
import flax.linen as nn
import jax
import numpy as np
import optax

from jaxpu import checkpoint as ckpt_lib
from jaxpu import parallel
from jaxpu import runtime
from jaxpu.train.steps import TrainState
from jaxpu.train.steps import make_train_step


class TrainingPreempted(SystemExit):
  """Raised by `fit` after SIGTERM, once the checkpoint of `step` is written."""

  def __init__(self, step: int):
    super().__init__(143)  # 128 + SIGTERM, the shell's convention
    self.step = step


class TrainingDiverged(FloatingPointError):
  """Raised by `fit` when the training loss is not finite (before any checkpoint of it)."""


def _check_finite(losses, step: int, since: int, workdir: Optional[str]) -> None:
  """Raises `TrainingDiverged` unless every loss (host values) since step `since` is finite."""
  values = np.asarray(losses, np.float64)
  if values.size and not np.all(np.isfinite(values)):
    where = workdir or "this run"
    raise TrainingDiverged(
        f"{where}: the training loss is {values[~np.isfinite(values)][0]} by step {step} "
        f"(steps {since + 1}-{step}); training diverged and nothing from it is kept as a "
        "result. The likely cause is the learning rate (or a loss weight, lr/wd multiplier "
        f"or weight decay) being too large; lower it and delete {where} to train it again.")


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
        async_checkpoint: bool = True, microbatches: int = 1
        ) -> tuple[TrainState, list[dict]]:
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
    microbatches: gradient accumulation over this many parts of each
      device's slice of a batch (`make_train_step`); 1: none.

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
  mesh = parallel.make_mesh() if mesh is None else mesh
  with ckpt_lib.quiet_orbax_logs():
    manager = None
    if workdir is not None:
      manager = ckpt_lib.CheckpointManager(
          os.path.join(workdir, ckpt_lib.CHECKPOINT_SUBDIR),
          save_interval_steps=checkpoint_every or max(1, num_steps), max_to_keep=max_to_keep,
          async_save=async_checkpoint)
    try:
      state = parallel.replicate(state, mesh)
      if manager is not None and manager.latest_step() is not None:
        state = manager.restore(state)
        logging.info("Resuming from %s at step %d.", manager.directory, manager.restored_step)
      return _train_loop(state, model=model, optimizer=optimizer, loss_fn=loss_fn,
                         train_iter_fn=train_iter_fn, num_steps=num_steps, workdir=workdir,
                         mesh=mesh, log_every=log_every, eval_every=eval_every,
                         eval_fn=eval_fn, manager=manager, microbatches=microbatches)
    finally:
      if manager is not None:
        manager.wait_until_finished()
        manager.close()


def _train_loop(state, *, model, optimizer, loss_fn, train_iter_fn, num_steps, workdir, mesh,
                log_every, eval_every, eval_fn, manager, microbatches=1):
  """`fit`'s loop from the state's step to `num_steps`."""
  start_step = int(parallel.host_array(state.step))
  step_fn = make_train_step(model, optimizer, loss_fn, mesh, microbatches=microbatches)
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
        batch = parallel.shard_batch(batch, mesh)
        batch_size = jax.tree.leaves(batch)[0].shape[0]
        state, step_metrics = step_fn(state, batch)
        pending.append(step_metrics["loss"])

        checkpoint_due = (eval_every and step % eval_every == 0) or step == num_steps or (
            manager is not None and step % manager.save_interval_steps == 0)
        if step % log_every == 0 or checkpoint_due:  # never score or keep a diverged state
          pending = [parallel.host_array(x) for x in pending]  # each value fetched once
          _check_finite(pending, step, window_step, workdir)
        if step % log_every == 0 or step == num_steps:
          loss = float(np.mean(pending))
          elapsed = time.perf_counter() - window_start
          steps_per_sec = (step - window_step) / max(elapsed, 1e-9)
          eta = (num_steps - step) / steps_per_sec
          logging.info("step %d/%d  loss %.4f  %.1f examples/s  ETA %s", step, num_steps,
                       loss, steps_per_sec * batch_size, runtime.format_duration(eta))
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
