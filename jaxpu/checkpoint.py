"""Checkpoints (Orbax) and encoder transfer.

`CheckpointManager` wraps Orbax's: asynchronous saves every
`save_interval_steps`, the last `max_to_keep` (default 5: the thesis reports
the mean over the last five snapshots, §5.3.2) kept, restore of the latest.
Each save writes to a temporary folder that Orbax renames when complete, so an
interrupted save never leaves a half-written step behind. `SigtermGuard` turns
SIGTERM into a flag the training loop polls so it can save before exiting.

`transfer(params, checkpoint_dir, step=None, keys=("encoder",))` restores only
the given top-level subtrees (the feature extractor g of eq. 1) from a
checkpoint of a model whose head may differ (e.g. 16 classes → 6) into freshly
initialised params, through Orbax's partial restore. Shapes and structure are
checked against the checkpoint's metadata first, so a mismatch names the
parameter path and both shapes.

A checkpoint holds the training state as saved by `jaxpu.train.fit`
(`{"step", "params", "opt_state", "rng"}`); `fit` keeps them in
`<workdir>/checkpoints`, and the functions here accept either that folder or
the workdir itself.
"""

from __future__ import annotations

import logging as logging_std
import os
import signal
import threading
from typing import Any, Mapping, Optional, Sequence

from absl import logging as absl_logging
import jax
import numpy as np
import orbax.checkpoint as ocp

DEFAULT_MAX_TO_KEEP = 5
CHECKPOINT_SUBDIR = "checkpoints"


class CheckpointError(ValueError):
  """A checkpoint that is missing, unreadable, or does not fit the model."""


def _resolve(checkpoint_dir: str | os.PathLike) -> str:
  """The checkpoint folder: `checkpoint_dir`, or its `checkpoints/` sub-folder."""
  path = os.path.abspath(os.fspath(checkpoint_dir))
  nested = os.path.join(path, CHECKPOINT_SUBDIR)
  if os.path.isdir(nested) and not available_steps_in(path):
    return nested
  return path


def available_steps_in(directory: str) -> list[int]:
  """Steps with a completed checkpoint in exactly `directory` ([] if none)."""
  if not os.path.isdir(directory):
    return []
  steps = []
  for name in os.listdir(directory):
    full = os.path.join(directory, name)
    # Orbax writes `<step>.orbax-checkpoint-tmp-*` first and renames it on success.
    if name.isdigit() and os.path.isdir(full):
      steps.append(int(name))
  return sorted(steps)


def available_steps(checkpoint_dir: str | os.PathLike) -> list[int]:
  """Sorted steps of the completed checkpoints in `checkpoint_dir` (or its `checkpoints/`).

  Raises:
    CheckpointError: the folder does not exist.
  """
  path = _resolve(checkpoint_dir)
  if not os.path.isdir(path):
    raise CheckpointError(f"Checkpoint directory {path} does not exist.")
  return available_steps_in(path)


def _abstract(tree: Any) -> Any:
  """ShapeDtypeStructs (keeping each jax.Array's sharding) of the leaves of `tree`."""
  def leaf(x):
    if isinstance(x, jax.Array):
      return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
    if isinstance(x, jax.ShapeDtypeStruct):
      return x
    x = np.asarray(x)
    return jax.ShapeDtypeStruct(x.shape, x.dtype)
  return jax.tree.map(leaf, tree)


class CheckpointManager:
  """Orbax `CheckpointManager` for a training-state pytree.

  Args:
    directory: where the step folders go (created if missing).
    save_interval_steps: `save(step, ...)` writes only when `step` is a
      multiple of this (or with `force=True`).
    max_to_keep: the number of most recent checkpoints kept (older ones deleted).
    async_save: write in a background thread (the device→host copy is done
      before `save` returns, so the state may be donated right after).
  """

  def __init__(self, directory: str | os.PathLike, *, save_interval_steps: int = 1,
               max_to_keep: Optional[int] = DEFAULT_MAX_TO_KEEP, async_save: bool = True):
    if save_interval_steps < 1:
      raise ValueError(f"save_interval_steps must be >= 1, got {save_interval_steps}.")
    if max_to_keep is not None and max_to_keep < 1:
      raise ValueError(f"max_to_keep must be >= 1 or None (keep all), got {max_to_keep}.")
    self.directory = os.path.abspath(os.fspath(directory))
    self.save_interval_steps = save_interval_steps
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def save(self, step: int, state: Any, *, force: bool = False) -> bool:
    """Saves `state` as `step` if `step` is a multiple of the interval (or `force`).

    Returns True if it saved (a step already saved is not written again).
    """
    step = int(step)
    if not force and step % self.save_interval_steps:
      return False
    if step in self._manager.all_steps():
      return False
    return self._manager.save(step, args=ocp.args.StandardSave(state), force=True)

  def restore(self, target: Any, step: Optional[int] = None) -> Any:
    """Restores `step` (default: the latest) into the structure, dtypes and shardings of `target`.

    `target` may hold arrays or `jax.ShapeDtypeStruct`s.

    Raises:
      CheckpointError: there is no checkpoint, or it does not match `target`.
    """
    if step is None:
      step = self.latest_step()
      if step is None:
        raise CheckpointError(f"No checkpoint to restore in {self.directory}.")
    try:
      return self._manager.restore(int(step), args=ocp.args.StandardRestore(_abstract(target)))
    except (ValueError, KeyError, FileNotFoundError) as e:
      raise CheckpointError(
          f"Could not restore step {step} from {self.directory}: {e}") from e

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def reached_preemption(self, step: int) -> bool:
    """JAX's multi-host preemption sync point (SIGTERM seen by any process)."""
    return self._manager.reached_preemption(int(step))

  def wait_until_finished(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()

  def __enter__(self) -> "CheckpointManager":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


class _DropOrbaxInfo(logging_std.Filter):
  def filter(self, record: logging_std.LogRecord) -> bool:
    return record.levelno >= logging_std.WARNING or "orbax" not in record.pathname


class quiet_orbax_logs:  # pylint: disable=invalid-name
  """Context manager: hides Orbax's INFO lines (dozens per save) from absl's log.

  Orbax logs through absl like the training loop does, so the progress line
  would drown; warnings and errors still pass.
  """

  def __init__(self):
    self._filter = _DropOrbaxInfo()

  def __enter__(self):
    absl_logging.get_absl_logger().addFilter(self._filter)
    return self

  def __exit__(self, *exc):
    absl_logging.get_absl_logger().removeFilter(self._filter)


class SigtermGuard:
  """Context manager: SIGTERM sets `.requested` instead of killing the process.

  The training loop checks the flag after each step, saves, and exits. The
  handler is only installed from the main thread (Python's rule); elsewhere
  the guard does nothing. The previous handler is restored on exit.
  """

  def __init__(self):
    self.requested = False
    self._previous = None

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __enter__(self) -> "SigtermGuard":
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None


def _open_for_reading(checkpoint_dir, step):
  """(read-only Orbax manager, step, path) for `step` (default latest) of `checkpoint_dir`."""
  path = _resolve(checkpoint_dir)
  steps = available_steps(path)
  if not steps:
    raise CheckpointError(f"No checkpoint found in {path} (expected step folders such as "
                          f"{os.path.join(path, '1000')}); check the directory.")
  if step is None:
    step = steps[-1]
  elif int(step) not in steps:
    raise CheckpointError(f"Checkpoint step {step} not in {path}; available steps: {steps}.")
  manager = ocp.CheckpointManager(path, item_handlers=ocp.PyTreeCheckpointHandler(),
                                  options=ocp.CheckpointManagerOptions(create=False))
  return manager, int(step), path


def _path_str(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def _stored_params(metadata: Any, path: str, step: int) -> tuple[Mapping, tuple]:
  """The params subtree of a checkpoint's metadata and its prefix in the saved tree."""
  tree = getattr(metadata, "tree", metadata)
  if isinstance(tree, Mapping) and isinstance(tree.get("params"), Mapping):
    return tree["params"], ("params",)
  if isinstance(tree, Mapping):
    return tree, ()
  raise CheckpointError(f"Checkpoint step {step} in {path} holds no parameter tree.")


def restore_params(checkpoint_dir: str | os.PathLike, step: Optional[int] = None) -> Any:
  """The parameters of `step` (default: the latest) as a dict of NumPy arrays.

  Raises:
    CheckpointError: missing folder, no checkpoint, or unreadable checkpoint.
  """
  manager, step, path = _open_for_reading(checkpoint_dir, step)
  with manager:
    try:
      stored, prefix = _stored_params(manager.item_metadata(step), path, step)
      target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype), stored)
      for key in reversed(prefix):
        target = {key: target}
      restored = manager.restore(step, args=ocp.args.PyTreeRestore(
          item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
          partial_restore=True))
    except CheckpointError:
      raise
    except Exception as e:  # Orbax raises many types for a damaged checkpoint.
      raise CheckpointError(f"Could not read checkpoint step {step} in {path}: {e}") from e
  for key in prefix:
    restored = restored[key]
  return restored


def transfer(params: Any, checkpoint_dir: str | os.PathLike, step: Optional[int] = None,
             keys: Sequence[str] = ("encoder",)) -> Any:
  """`params` with the subtrees `keys` replaced by those of a checkpoint.

  Everything outside `keys` (e.g. a head for a different number of classes) is
  returned as given. Restored leaves take the dtype and sharding of the
  corresponding leaf of `params`.

  Args:
    params: freshly initialised parameters, `{"encoder": ..., "head": ...}`.
    checkpoint_dir: a checkpoint folder of `CheckpointManager` (or a `fit`
      workdir containing `checkpoints/`).
    step: the step to read; default the latest.
    keys: top-level parameter subtrees to copy.

  Raises:
    CheckpointError: the folder or step is missing or unreadable (the message
      names the folder), or a parameter of `keys` is missing on either side or
      has a different shape (the message names the parameter path and both
      shapes).
  """
  if isinstance(keys, str):
    keys = (keys,)
  for key in keys:
    if key not in params:
      raise CheckpointError(f"transfer: the model has no parameter subtree {key!r}; "
                            f"its subtrees are {sorted(params)}.")
  manager, step, path = _open_for_reading(checkpoint_dir, step)
  with manager:
    try:
      metadata = manager.item_metadata(step)
    except Exception as e:
      raise CheckpointError(f"Could not read checkpoint step {step} in {path}: {e}") from e
    stored, prefix = _stored_params(metadata, path, step)
    where = f"checkpoint {path} (step {step})"

    for key in keys:
      if key not in stored:
        raise CheckpointError(f"transfer: parameter subtree {key!r} is not in {where}; "
                              f"it has {sorted(stored)}.")
      model_leaves = {_path_str(p): x for p, x in
                      jax.tree_util.tree_flatten_with_path(params[key])[0]}
      stored_leaves = {_path_str(p): m for p, m in
                       jax.tree_util.tree_flatten_with_path(stored[key])[0]}
      for name, x in model_leaves.items():
        if name not in stored_leaves:
          raise CheckpointError(f"transfer: parameter {key}/{name} (shape {tuple(x.shape)}) "
                                f"is missing from {where}.")
        stored_shape = tuple(stored_leaves[name].shape)
        if stored_shape != tuple(x.shape):
          raise CheckpointError(
              f"transfer: parameter {key}/{name} has shape {stored_shape} in {where} but "
              f"shape {tuple(x.shape)} in the model; the encoders must be built with the "
              f"same architecture and options.")
      extra = sorted(set(stored_leaves) - set(model_leaves))
      if extra:
        raise CheckpointError(f"transfer: {where} has parameter(s) "
                              f"{[f'{key}/{n}' for n in extra]} that the model lacks.")

    target = {key: _abstract(params[key]) for key in keys}
    for key in reversed(prefix):
      target = {key: target}
    try:
      restored = manager.restore(step, args=ocp.args.PyTreeRestore(
          item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
          partial_restore=True))
    except Exception as e:
      raise CheckpointError(f"Could not read checkpoint step {step} in {path}: {e}") from e
  for key in prefix:
    restored = restored[key]
  out = dict(params)
  for key in keys:
    out[key] = restored[key]
  return out
