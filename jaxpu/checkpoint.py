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
  damaged one, which is moved aside (renamed `<step>.damaged-<time>`) so
  that the retrained state is saved under its step; the damaged copy is
  deleted only once that new step is complete and checksummed.
  `restored_step` says which step it used.
- `restore_params` and `transfer` raise, whether the step was given or is the
  default (the latest): silently evaluating or fine-tuning older weights would
  change results. The error lists the other steps to pass as `step=`.

A finished run's readers pass its last step as `step=`: if that step was
deleted (or replaced by a file), `MissingCheckpointError` names the folder
and the step instead of the older weights being read. A full disk while
saving or writing a manifest raises one short `DiskFullError` (an OSError,
errno ENOSPC) naming the folder, instead of Orbax's tracebacks.

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

import errno
import json
import logging as logging_std
import os
import re
import shutil
import signal
import threading
import time
import zlib
from typing import Any, Mapping, Optional, Sequence

from absl import logging as absl_logging
import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxpu import fileio

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


class MissingCheckpointError(CheckpointError):
  """A checkpoint step that was asked for by number and is not there (deleted, or not a folder)."""

  def __init__(self, message: str, *, path: str = "", step: Optional[int] = None):
    super().__init__(message)
    self.path = path
    self.step = step


class DiskFullError(OSError):
  """A checkpoint write failed for want of space (errno ENOSPC); names the folder."""


_NO_SPACE = "No space left on device"


def _disk_full_cause(error: BaseException) -> Optional[BaseException]:
  """The ENOSPC error in `error`'s chain (causes, contexts, groups), if any."""
  todo, seen = [error], set()
  while todo:
    e = todo.pop()
    if e is None or id(e) in seen:
      continue
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
      return e
    if not isinstance(e, OSError) and _NO_SPACE in str(e):  # TensorStore: plain Exception
      return e
    todo += [e.__cause__, e.__context__, *getattr(e, "exceptions", ())]
  return None


def _disk_full(folder: str, what: str) -> DiskFullError:
  """The short error for a write in `folder` that found the disk full."""
  try:
    free = f"{shutil.disk_usage(folder).free / 2**20:.0f} MiB free now"
  except OSError:
    free = "free space unknown"
  return DiskFullError(
      errno.ENOSPC, f"Disk full: {what} in {folder} failed: no space left on device "
      f"({free}). Free some space (or move the workdir to a larger disk) and rerun: "
      "training resumes from the last complete checkpoint.")


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

  Raises:
    DiskFullError: the disk is full (names the step folder).
  """
  step_dir = os.fspath(step_dir)
  files = {}
  for name in _step_files(step_dir):
    size, crc = _file_crc32(os.path.join(step_dir, *name.split("/")))
    files[name] = {"size": size, "crc32": f"{crc:08x}"}
  manifest = {"format": _MANIFEST_FORMAT, "version": _MANIFEST_VERSION, "checksum": "crc32",
              "files": files}
  try:
    fileio.write_json(os.path.join(step_dir, MANIFEST_NAME), manifest, indent=1,
                      sort_keys=True, fsync=True)
  except OSError as e:
    if e.errno == errno.ENOSPC:
      raise _disk_full(step_dir, "writing the checksum manifest of a checkpoint") from None
    raise
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
  if not files:  # a finalised step always has files: an empty list checks nothing
    present = len(_step_files(step_dir))
    raise damaged(f"its checksum manifest {manifest_path} lists no file (the folder holds "
                  f"{present} other file(s)), so nothing in it can be verified")
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
  (files it does not list are ignored; a manifest listing no file is
  damaged). Reads the whole step once.

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


def _on_host(state: Any) -> Any:
  """`state` with its fully replicated arrays copied to NumPy, in a single process.

  Orbax then writes each array once, without the per-device slices and
  sharding files of a `jax.Array` (on 4 CPU devices a save takes 2.5× less
  CPU; `restore` places the arrays on the target's devices either way). PRNG
  keys, sharded arrays and multi-process runs are saved as they are.
  """
  if jax.process_count() > 1:
    return state
  leaves, treedef = jax.tree.flatten(state)
  copied = [i for i, x in enumerate(leaves) if isinstance(x, jax.Array) and x.is_fully_replicated
            and not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)]
  for i, value in zip(copied, jax.device_get([leaves[i] for i in copied])):  # copies overlap
    leaves[i] = value
  return jax.tree.unflatten(treedef, leaves)


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


def _write_step_manifest(directory: str, step: int, *, raise_disk_full: bool = False) -> None:
  """Writes the manifest of a finalised step (primary process only); logs failures.

  A full disk raises `DiskFullError` with `raise_disk_full` (the caller's
  thread), and is logged in one line otherwise (Orbax's finalize thread,
  where an exception would only print pages of tracebacks).
  """
  step_dir = os.path.join(directory, str(int(step)))
  if jax.process_index() != 0 or not os.path.isdir(step_dir):
    return  # a failed save leaves no step folder under its final name
  try:
    write_manifest(step_dir)
  except OSError as e:
    if raise_disk_full and e.errno == errno.ENOSPC:
      raise
    absl_logging.warning("Could not write the checksum manifest of checkpoint step %d in %s "
                         "(%s); it will be restored unverified.", step, directory, _short(e))


# A damaged step moved aside by `CheckpointManager.restore`: `<step>.damaged-<time>`.
_ASIDE = re.compile(r"^(\d+)\.damaged-")


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
    self._reported_disk_full = False
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, enable_async_checkpointing=async_save, create=True)
    self._manager = _ManifestingManager(self.directory, options=options,
                                        jaxpu_directory=self.directory)

  def save(self, step: int, state: Any, *, force: bool = False) -> bool:
    """Saves `state` as `step` if `step` is a multiple of the interval (or `force`).

    Returns True if it saved (a step already saved is not written again; a
    damaged one that `restore` skipped was moved aside, so the retrained
    state is saved in its place). The checksum manifest is written once the
    save is finalised.

    Raises:
      DiskFullError: the disk is full (this save, or the previous one
        finishing in the background); names the folder.
    """
    step = int(step)
    if not force and step % self.save_interval_steps:
      return False
    if step in self._manager.all_steps():
      return False
    with _DiskFullAs(self):
      saved = self._manager.save(step, args=ocp.args.StandardSave(_on_host(state)), force=True)
    if saved:
      self._saved.add(step)
    return saved

  def restore(self, target: Any, step: Optional[int] = None) -> Any:
    """Restores a step into the structure, dtypes and shardings of `target`.

    The step's files are first checked against its checksum manifest (a step
    without one is restored unverified, with a warning). With `step` given, a
    damaged or unreadable step raises. With `step=None` (resuming), the latest
    step is tried first and a damaged or unreadable one is skipped, with a
    warning naming it, for the newest intact earlier step; the skipped steps
    are then moved aside, renamed `<step>.damaged-<time>` in the same folder,
    so that training from the earlier step saves them anew; each is deleted
    once its replacement is saved and checksummed (`wait_until_finished`),
    never before. `restored_step` records the step used.

    Args:
      target: a pytree of arrays or `jax.ShapeDtypeStruct`s.
      step: the step to restore; default the latest intact one.

    Raises:
      DamagedCheckpointError: `step` was given and is damaged or unreadable,
        or no step is intact (nothing is moved then).
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
        absl_logging.warning("%s Trying the previous step.", e)
        skipped.append((candidate, f"step {candidate}: {e}"))
        continue
      if skipped:
        absl_logging.warning(
            "Resuming from checkpoint step %d in %s instead of the latest step %d, which is "
            "damaged or unreadable.", candidate, self.directory, steps[0])
        self._move_aside([s for s, _ in skipped])
      self.restored_step = candidate
      return restored
    raise DamagedCheckpointError(
        f"No intact checkpoint in {self.directory}: " + " | ".join(why for _, why in skipped)
        + " Delete or move the damaged step folders to start afresh.",
        path=self.directory, step=steps[0])

  def _move_aside(self, steps: Sequence[int]) -> None:
    """Renames damaged `steps` to `<step>.damaged-<time>`, so they can be saved anew."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if jax.process_index() == 0:
      for step in steps:
        source = os.path.join(self.directory, str(step))
        aside, n = f"{source}.damaged-{stamp}", 1
        while os.path.lexists(aside):
          aside, n = f"{source}.damaged-{stamp}-{n}", n + 1
        os.rename(source, aside)
        absl_logging.warning(
            "Checkpoint step %d in %s is damaged: moved aside to %s; training saves the step "
            "again, and the damaged copy is deleted once the new one is complete.",
            step, self.directory, aside)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices("jaxpu_checkpoint_move_aside")
    self._manager.reload()

  def _drop_replaced(self) -> None:
    """Deletes the damaged copies moved aside whose step is saved again, with its manifest."""
    if jax.process_index() != 0 or not os.path.isdir(self.directory):
      return
    for name in sorted(os.listdir(self.directory)):
      match = _ASIDE.match(name)
      if not match:
        continue
      step_dir = os.path.join(self.directory, match.group(1))
      if os.path.isfile(os.path.join(step_dir, MANIFEST_NAME)):
        shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
        absl_logging.info("Deleted %s: step %s was saved again.", name, match.group(1))

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
    """Waits for the pending save; its step then has its checksum manifest.

    Raises:
      DiskFullError: the disk filled up during the save (reported once: a
        later call, or `close`, does not raise it again).
    """
    with _DiskFullAs(self):
      self._manager.wait_until_finished()
      for step in sorted(self._saved):
        step_dir = os.path.join(self.directory, str(step))
        if os.path.isdir(step_dir) and not os.path.exists(os.path.join(step_dir, MANIFEST_NAME)):
          _write_step_manifest(self.directory, step, raise_disk_full=True)
    self._saved.clear()
    self._drop_replaced()

  def close(self) -> None:
    try:
      self.wait_until_finished()
    finally:
      with _DiskFullAs(self):
        self._manager.close()

  def __enter__(self) -> "CheckpointManager":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


class _DiskFullAs:
  """Context manager of `CheckpointManager`: a full disk becomes one short `DiskFullError`.

  Orbax reports the error of a background save again at each later wait and
  at close; once reported, those repeats are dropped.
  """

  def __init__(self, manager: CheckpointManager):
    self._manager = manager

  def __enter__(self):
    return self

  def __exit__(self, kind, error, traceback):
    del kind, traceback
    if error is None or not isinstance(error, Exception) or _disk_full_cause(error) is None:
      return False
    manager = self._manager
    if manager._reported_disk_full:  # pylint: disable=protected-access
      return True  # the same failure, reported already
    manager._reported_disk_full = True  # pylint: disable=protected-access
    if isinstance(error, DiskFullError):  # a manifest: already short, names the step folder
      raise DiskFullError(error.errno, error.strerror) from None
    raise _disk_full(manager.directory, "saving a checkpoint") from None


class _DropOrbaxInfo(logging_std.Filter):
  """Drops Orbax's INFO lines, and its tracebacks of a full disk (`DiskFullError` says it)."""

  def filter(self, record: logging_std.LogRecord) -> bool:
    if "orbax" not in record.pathname:
      return True
    if record.levelno < logging_std.WARNING:
      return False
    if record.exc_info and record.exc_info[1] is not None:
      return _disk_full_cause(record.exc_info[1]) is None
    return _NO_SPACE not in record.getMessage()


class quiet_orbax_logs:  # pylint: disable=invalid-name
  """Context manager: hides Orbax's INFO lines (dozens per save) from absl's log.

  Orbax logs through absl like the training loop does, so the progress line
  would drown; warnings and errors still pass, except Orbax's tracebacks of
  a full disk, which `CheckpointManager` reports as one `DiskFullError`.
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
  if step is not None and int(step) not in steps:
    raise _missing(path, int(step), steps)
  if not steps:
    raise CheckpointError(f"No checkpoint found in {path} (expected step folders such as "
                          f"{os.path.join(path, '1000')}); check the directory.")
  step = steps[-1] if step is None else int(step)
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


def _missing(path: str, step: int, steps: Sequence[int]) -> MissingCheckpointError:
  """The error for a step asked for by number that is not in `path`."""
  full = os.path.join(path, str(step))
  what = (f"{full} is a file, not a step folder" if os.path.lexists(full)
          and not os.path.isdir(full) else f"there is no folder {full}")
  run = os.path.dirname(path) if os.path.basename(path) == CHECKPOINT_SUBDIR else path
  return MissingCheckpointError(
      f"Checkpoint step {step} is missing from {path} ({what}; the steps there: "
      f"{list(steps)}). If it is the last step of a finished run, the run's results describe "
      f"weights that are gone and an older step would silently stand in for them: Delete the "
      f"run folder {run} to train it again. Otherwise pass one of the steps there.",
      path=path, step=step)


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
  asked for would go unnoticed); the error lists the other steps. To read a
  finished run's own weights, pass its last step as `step`: the latest step
  on disk is an older one if the last was deleted, and `step` makes that an
  error (`MissingCheckpointError`) rather than other weights.

  Raises:
    MissingCheckpointError: `step` was given and is not there (deleted, or a
      file in place of its folder); names the folder and the step and says
      to delete the run folder to train it again.
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
      unnoticed); the error lists the other steps to pass as `step`. Pass a
      finished run's last step to make its absence an error rather than a
      transfer from an older step.
    keys: top-level parameter subtrees to copy.

  Raises:
    MissingCheckpointError: `step` was given and is not there (names the
      folder and the step; says to delete the run folder to train it again).
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
