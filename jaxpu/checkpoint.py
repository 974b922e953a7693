"""Checkpoints (Orbax) and encoder transfer.

`CheckpointManager` wraps Orbax's: asynchronous saves every
`save_interval_steps`, the last `max_to_keep` (default 5: the thesis reports
the mean over the last five snapshots, §5.3.2) kept, restore of the latest.
Each save writes to a temporary folder that Orbax renames when complete, so an
interrupted save never leaves a half-written step behind. `SigtermGuard` turns
SIGTERM into a flag the training loop polls so it can save before exiting.

Integrity: once Orbax has finalised a step, a checksum manifest
(`jaxpu_manifest.json`, see `write_manifest`) is written into the step folder,
listing every file of the step with its size and CRC-32. Every restore checks
the files against it first (`verify_step`), so a flipped bit or a truncated
file is reported as a `DamagedCheckpointError` naming the folder and the step
instead of being restored as wrong values. A step without a manifest (written
before manifests existed, or by another tool) is restored unverified, with a
warning. On a damaged or unreadable step:

- `CheckpointManager.restore(target)` (resuming training, no `step` given)
  falls back to the newest intact earlier step with a warning naming the
  damaged one, which stays on disk; `restored_step` says which step it used.
- `restore_params` and `transfer` raise, whether the step was given or is the
  default (the latest): silently evaluating or fine-tuning older weights would
  change results. The error lists the other steps to pass as `step=`.

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

import json
import logging as logging_std
import os
import signal
import threading
import zlib
from typing import Any, Mapping, Optional, Sequence

from absl import logging as absl_logging
import jax
import numpy as np
import orbax.checkpoint as ocp

DEFAULT_MAX_TO_KEEP = 5
CHECKPOINT_SUBDIR = "checkpoints"


MANIFEST_NAME = "jaxpu_manifest.json"
_MANIFEST_FORMAT = "jaxpu-checkpoint-manifest"
_MANIFEST_VERSION = 1
_CHUNK = 8 << 20  # bytes read at a time when checksumming


class CheckpointError(ValueError):
  """A checkpoint that is missing, unreadable, or does not fit the model."""


class DamagedCheckpointError(CheckpointError):
  """A checkpoint step whose files do not match its checksum manifest, or cannot be read."""

  def __init__(self, message: str, *, path: str = "", step: Optional[int] = None):
    super().__init__(message)
    self.path = path
    self.step = step


def _short(error: BaseException, limit: int = 400) -> str:
  """`error` in one line of at most `limit` characters (TensorStore errors run to pages)."""
  text = " ".join(str(error).split()) or type(error).__name__
  return text if len(text) <= limit else text[:limit] + " ..."


def _file_crc32(path: str) -> tuple[int, int]:
  """(size in bytes, CRC-32) of the file at `path`."""
  crc, size = 0, 0
  with open(path, "rb") as f:
    while chunk := f.read(_CHUNK):
      crc = zlib.crc32(chunk, crc)
      size += len(chunk)
  return size, crc


def _step_files(step_dir: str) -> list[str]:
  """The files of a step folder (relative, '/'-separated, sorted), without the manifest."""
  names = []
  for root, dirs, files in os.walk(step_dir):
    dirs.sort()
    for name in files:
      if name.startswith(MANIFEST_NAME):  # the manifest and its temporary files
        continue
      names.append(os.path.relpath(os.path.join(root, name), step_dir).replace(os.sep, "/"))
  return sorted(names)


def write_manifest(step_dir: str | os.PathLike) -> dict:
  """Writes the checksum manifest of a finalised step folder; returns its contents.

  The manifest, `<step_dir>/jaxpu_manifest.json`, is JSON:
  `{"format": "jaxpu-checkpoint-manifest", "version": 1, "checksum": "crc32",
  "files": {"<relative path>": {"size": <bytes>, "crc32": "<8 hex digits>"}}}`
  with one entry per file of the step. It is written to a temporary file and
  renamed into place, so it is either complete or absent. `CheckpointManager`
  calls this once Orbax has finalised a step; call it yourself only on a step
  known to be intact.
  """
  step_dir = os.fspath(step_dir)
  files = {}
  for name in _step_files(step_dir):
    size, crc = _file_crc32(os.path.join(step_dir, *name.split("/")))
    files[name] = {"size": size, "crc32": f"{crc:08x}"}
  manifest = {"format": _MANIFEST_FORMAT, "version": _MANIFEST_VERSION, "checksum": "crc32",
              "files": files}
  final = os.path.join(step_dir, MANIFEST_NAME)
  temporary = f"{final}.tmp-{os.getpid()}-{threading.get_ident()}"
  try:
    with open(temporary, "w") as f:
      json.dump(manifest, f, indent=1, sort_keys=True)
      f.flush()
      os.fsync(f.fileno())
    os.replace(temporary, final)
  finally:
    if os.path.exists(temporary):
      os.remove(temporary)
  return manifest


def _check_step_dir(step_dir: str, path: str, step: int) -> bool:
  """`verify_step` on a step folder: True if verified, False if it has no manifest."""
  def damaged(why):
    return DamagedCheckpointError(
        f"Checkpoint step {step} in {path} is damaged: {why}.", path=path, step=step)

  manifest_path = os.path.join(step_dir, MANIFEST_NAME)
  if not os.path.isdir(step_dir):
    raise CheckpointError(f"Checkpoint step {step} not found in {path} (no folder {step_dir}).")
  if not os.path.exists(manifest_path):
    return False
  try:
    with open(manifest_path) as f:
      manifest = json.load(f)
    if manifest.get("format") != _MANIFEST_FORMAT or not isinstance(manifest.get("files"), dict):
      raise ValueError("not a jaxpu checkpoint manifest")
    if manifest.get("version", 0) > _MANIFEST_VERSION:
      raise ValueError(f"manifest version {manifest.get('version')} is newer than this jaxpu "
                       f"reads ({_MANIFEST_VERSION})")
    files = {name: (int(entry["size"]), int(entry["crc32"], 16))
             for name, entry in manifest["files"].items()}
  except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
    raise damaged(f"its checksum manifest {manifest_path} is unreadable ({_short(e)})") from e
  for name, (size, crc) in sorted(files.items()):
    full = os.path.join(step_dir, *name.split("/"))
    try:
      actual_size = os.path.getsize(full)
    except OSError:
      raise damaged(f"file {full} is missing") from None
    if actual_size != size:
      raise damaged(f"file {full} has {actual_size} bytes, expected {size}"
                    + (" (truncated)" if actual_size < size else ""))
  for name, (size, crc) in sorted(files.items()):
    full = os.path.join(step_dir, *name.split("/"))
    try:
      actual_size, actual_crc = _file_crc32(full)
    except OSError as e:
      raise damaged(f"file {full} cannot be read ({_short(e)})") from e
    if (actual_size, actual_crc) != (size, crc):
      raise damaged(f"file {full} does not match its checksum (CRC-32 {actual_crc:08x}, "
                    f"expected {crc:08x}; {actual_size} bytes, expected {size})")
  return True


def verify_step(checkpoint_dir: str | os.PathLike, step: int) -> bool:
  """Checks the files of checkpoint `step` against its checksum manifest.

  Every file the manifest lists must exist with the recorded size and CRC-32
  (files it does not list are ignored). Reads the whole step once.

  Args:
    checkpoint_dir: a checkpoint folder (or a `fit` workdir holding `checkpoints/`).
    step: the step to check.

  Returns:
    True if the step matches its manifest; False if it has no manifest
    (unverified: saved before manifests existed, or not by `CheckpointManager`).

  Raises:
    DamagedCheckpointError: a file is missing, has another size or checksum,
      or the manifest is unreadable; the message names the folder, the step
      and the file.
    CheckpointError: the step does not exist.
  """
  path = _resolve(checkpoint_dir)
  return _check_step_dir(os.path.join(path, str(int(step))), path, int(step))


def _warn_unverified(path: str, step: int) -> None:
  absl_logging.warning(
      "Checkpoint step %d in %s has no checksum manifest (%s; saved before jaxpu wrote "
      "them, or not by jaxpu); restoring it unverified.", step, path, MANIFEST_NAME)


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


class _ManifestingManager(ocp.CheckpointManager):
  """Orbax's manager, writing jaxpu's checksum manifest into each step it finalises.

  Orbax calls `_finalize_checkpoint` (in its finalize thread for asynchronous
  saves, inline otherwise) once all the step's files are committed under the
  final step name, and before it deletes the steps beyond `max_to_keep`; a
  manifest written here therefore never describes a partial step, and leaves
  with its step folder. `CheckpointManager.wait_until_finished` writes any
  manifest missed here (e.g. if a future Orbax no longer calls this hook).
  """

  def __init__(self, *args, jaxpu_directory: str, **kwargs):
    self._jaxpu_directory = jaxpu_directory
    super().__init__(*args, **kwargs)

  def _finalize_checkpoint(self, step: int):
    result = super()._finalize_checkpoint(step)
    _write_step_manifest(self._jaxpu_directory, step)
    return result


def _write_step_manifest(directory: str, step: int) -> None:
  """Writes the manifest of a finalised step (primary process only); logs failures."""
  step_dir = os.path.join(directory, str(int(step)))
  if jax.process_index() != 0 or not os.path.isdir(step_dir):
    return  # a failed save leaves no step folder under its final name
  try:
    write_manifest(step_dir)
  except OSError as e:
    absl_logging.warning("Could not write the checksum manifest of checkpoint step %d in %s "
                         "(%s); it will be restored unverified.", step, directory, _short(e))


class CheckpointManager:
  """Orbax `CheckpointManager` for a training-state pytree, with checksummed steps.

  Args:
    directory: where the step folders go (created if missing).
    save_interval_steps: `save(step, ...)` writes only when `step` is a
      multiple of this (or with `force=True`).
    max_to_keep: the number of most recent checkpoints kept (older ones deleted).
    async_save: write in a background thread (the device→host copy is done
      before `save` returns, so the state may be donated right after).

  Attributes:
    restored_step: the step the last `restore` read (None before any); after a
      fallback past a damaged step this is less than `latest_step()`.
  """

  def __init__(self, directory: str | os.PathLike, *, save_interval_steps: int = 1,
               max_to_keep: Optional[int] = DEFAULT_MAX_TO_KEEP, async_save: bool = True):
    if save_interval_steps < 1:
      raise ValueError(f"save_interval_steps must be >= 1, got {save_interval_steps}.")
    if max_to_keep is not None and max_to_keep < 1:
      raise ValueError(f"max_to_keep must be >= 1 or None (keep all), got {max_to_keep}.")
    self.directory = os.path.abspath(os.fspath(directory))
    self.save_interval_steps = save_interval_steps
    self.restored_step: Optional[int] = None
    self._saved: set[int] = set()  # steps saved by this manager, for the manifest check
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True)
    self._manager = _ManifestingManager(self.directory, options=options,
                                        jaxpu_directory=self.directory)

  def save(self, step: int, state: Any, *, force: bool = False) -> bool:
    """Saves `state` as `step` if `step` is a multiple of the interval (or `force`).

    Returns True if it saved (a step already saved is not written again). The
    checksum manifest is written once the save is finalised.
    """
    step = int(step)
    if not force and step % self.save_interval_steps:
      return False
    if step in self._manager.all_steps():
      return False
    saved = self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
    if saved:
      self._saved.add(step)
    return saved

  def restore(self, target: Any, step: Optional[int] = None) -> Any:
    """Restores a step into the structure, dtypes and shardings of `target`.

    The step's files are first checked against its checksum manifest (a step
    without one is restored unverified, with a warning). With `step` given, a
    damaged or unreadable step raises. With `step=None` (resuming), the latest
    step is tried first and a damaged or unreadable one is skipped, with a
    warning naming it, for the newest intact earlier step; damaged steps are
    left on disk. `restored_step` records the step used.

    Args:
      target: a pytree of arrays or `jax.ShapeDtypeStruct`s.
      step: the step to restore; default the latest intact one.

    Raises:
      DamagedCheckpointError: `step` was given and is damaged or unreadable,
        or no step is intact.
      CheckpointError: there is no checkpoint, or a verified step does not
        match `target`.
    """
    abstract = _abstract(target)
    if step is not None:
      restored = self._restore_step(int(step), abstract)
      self.restored_step = int(step)
      return restored
    steps = sorted(self._manager.all_steps(), reverse=True)
    if not steps:
      raise CheckpointError(f"No checkpoint to restore in {self.directory}.")
    skipped = []
    for candidate in steps:
      try:
        restored = self._restore_step(candidate, abstract)
      except DamagedCheckpointError as e:
        absl_logging.warning("%s Trying the previous step; step %d stays on disk.", e, candidate)
        skipped.append(f"step {candidate}: {e}")
        continue
      if skipped:
        absl_logging.warning(
            "Resuming from checkpoint step %d in %s instead of the latest step %d, which is "
            "damaged or unreadable.", candidate, self.directory, steps[0])
      self.restored_step = candidate
      return restored
    raise DamagedCheckpointError(
        f"No intact checkpoint in {self.directory}: " + " | ".join(skipped)
        + " Delete or move the damaged step folders to start afresh.",
        path=self.directory, step=steps[0])

  def _restore_step(self, step: int, abstract: Any) -> Any:
    """Verifies and restores one step (see `restore`)."""
    if step not in self._manager.all_steps():
      raise CheckpointError(f"Checkpoint step {step} not in {self.directory}; available steps: "
                            f"{self.all_steps()}.")
    verified = _check_step_dir(os.path.join(self.directory, str(step)), self.directory, step)
    if not verified:
      _warn_unverified(self.directory, step)
    try:
      return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # Orbax raises many types (TensorStore: plain Exception).
      if verified:  # the files are intact: the checkpoint does not fit `target`
        raise CheckpointError(
            f"Could not restore step {step} from {self.directory}: {_short(e, 2000)}") from e
      raise DamagedCheckpointError(
          f"Checkpoint step {step} in {self.directory} (unverified: no checksum manifest) "
          f"cannot be read: {_short(e)}", path=self.directory, step=step) from e

  def latest_step(self) -> Optional[int]:
    """The newest saved step (damaged or not); see `restored_step` after `restore`."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def reached_preemption(self, step: int) -> bool:
    """JAX's multi-host preemption sync point (SIGTERM seen by any process)."""
    return self._manager.reached_preemption(int(step))

  def wait_until_finished(self) -> None:
    """Waits for the pending save; its step then has its checksum manifest."""
    self._manager.wait_until_finished()
    for step in sorted(self._saved):
      step_dir = os.path.join(self.directory, str(step))
      if os.path.isdir(step_dir) and not os.path.exists(os.path.join(step_dir, MANIFEST_NAME)):
        _write_step_manifest(self.directory, step)
    self._saved.clear()

  def close(self) -> None:
    self.wait_until_finished()
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
  step = int(step)
  try:
    verified = _check_step_dir(os.path.join(path, str(step)), path, step)
  except DamagedCheckpointError as e:
    others = [s for s in steps if s != step]
    hint = (f"The other steps there are {others}: pass step=<one of them> to use an older "
            "checkpoint, or re-create this one." if others else "Re-create the checkpoint.")
    raise DamagedCheckpointError(f"{e} It was not used. {hint}", path=path, step=step) from e
  if not verified:
    _warn_unverified(path, step)
  manager = ocp.CheckpointManager(path, item_handlers=ocp.PyTreeCheckpointHandler(),
                                  options=ocp.CheckpointManagerOptions(create=False))
  return manager, step, path


def _read_error(path: str, step: int, error: Exception) -> CheckpointError:
  """A CheckpointError naming the folder and step for an exception Orbax raised."""
  return CheckpointError(f"Could not read checkpoint step {step} in {path}: {_short(error)}")


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

  The step is checked against its checksum manifest first. A damaged latest
  step raises too (no fallback to an older one: evaluating other weights than
  asked for would go unnoticed); the error lists the other steps.

  Raises:
    DamagedCheckpointError: the step is damaged (names the folder, step and file).
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
      raise _read_error(path, step, e) from e
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
    step: the step to read; default the latest. It is checked against its
      checksum manifest first; a damaged step raises even when it is the
      default (fine-tuning from an older encoder than intended would go
      unnoticed); the error lists the other steps to pass as `step`.
    keys: top-level parameter subtrees to copy.

  Raises:
    DamagedCheckpointError: the step is damaged (names the folder, step and file).
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
    except Exception as e:  # pylint: disable=broad-except
      raise _read_error(path, step, e) from e
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
    except Exception as e:  # pylint: disable=broad-except
      raise _read_error(path, step, e) from e
  for key in prefix:
    restored = restored[key]
  out = dict(params)
  for key in keys:
    out[key] = restored[key]
  return out
