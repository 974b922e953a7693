"""Checkpoints: round trip, keep-last-K, exact resume (SIGTERM and crash), encoder transfer."""

import errno
import json
import os
import re
import shutil
import signal
import threading
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpu import checkpoint, models, train


# Python installs signal handlers only from the main thread; elsewhere SIGTERM would kill
# the test process instead of reaching the guard.
needs_main_thread = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signal handlers need the main thread")


def _assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
      x, y = jax.random.key_data(x), jax.random.key_data(y)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _mlp_state(seed=0):
  model = models.get("mlp", 1)
  opt = train.make_optimizer("adam", 1e-3)
  return train.create_train_state(model, opt, seed, jnp.zeros((1, 2)))


def test_save_restore_round_trip(tmp_path):
  state = _mlp_state()
  state = state.replace(step=jnp.int32(7),
                        params=jax.tree.map(lambda p: p + 0.25, state.params))
  with checkpoint.CheckpointManager(tmp_path) as manager:
    assert manager.save(7, state)
    manager.wait_until_finished()
    assert manager.latest_step() == 7
    restored = manager.restore(_mlp_state(seed=1))  # the target only gives structure
  _assert_trees_equal(restored, state)
  assert isinstance(restored, train.TrainState)
  np.testing.assert_array_equal(checkpoint.restore_params(tmp_path)["head"]["kernel"],
                                state.params["head"]["kernel"])


def test_a_state_saved_on_4_devices_restores_onto_the_targets_devices(tmp_path):
  """A replicated state is saved as one host copy per array; `restore` places each array
  as the target's is placed (here on 1 device, and on all 4 again)."""
  four, one = train.make_mesh(), train.make_mesh(jax.devices()[:1])
  state = train.replicate(_mlp_state(), four)
  state = state.replace(params=jax.tree.map(lambda p: p - 0.5, state.params))
  with checkpoint.CheckpointManager(tmp_path) as manager:
    manager.save(3, state)
    manager.wait_until_finished()
    for mesh in (one, four):
      restored = manager.restore(train.replicate(_mlp_state(seed=1), mesh))
      _assert_trees_equal(restored, state)
      for leaf in jax.tree.leaves(restored.params):
        assert leaf.sharding.device_set == set(mesh.devices.flat)


def test_keep_last_k_and_save_interval(tmp_path):
  state = _mlp_state()
  with checkpoint.CheckpointManager(tmp_path / "a", max_to_keep=3) as manager:
    for step in range(1, 8):
      manager.save(step, state)
    manager.wait_until_finished()
    assert manager.all_steps() == [5, 6, 7]
  assert checkpoint.available_steps(tmp_path / "a") == [5, 6, 7]
  with checkpoint.CheckpointManager(tmp_path / "b", save_interval_steps=3) as manager:
    saved = [step for step in range(1, 11) if manager.save(step, state)]
    assert manager.save(10, state, force=True)
    manager.wait_until_finished()
  assert saved == [3, 6, 9]
  assert checkpoint.available_steps(tmp_path / "b") == [3, 6, 9, 10]
  # default: the last five (the snapshots the thesis averages over)
  assert checkpoint.DEFAULT_MAX_TO_KEEP == 5


@needs_main_thread
def test_sigterm_guard_sets_flag_and_restores_handler():
  previous = signal.getsignal(signal.SIGTERM)
  with checkpoint.SigtermGuard() as guard:
    assert not guard.requested
    os.kill(os.getpid(), signal.SIGTERM)
    assert guard.requested
  assert signal.getsignal(signal.SIGTERM) is previous


# --- resume ------------------------------------------------------------------------

_RS = np.random.RandomState(0)
_FEATURES = _RS.normal(size=(64, 2)).astype(np.float32)
_LABELS = (_FEATURES[:, 0] * _FEATURES[:, 1] > 0).astype(np.int32)


class _Data:
  """train_iter_fn whose batch for step s depends only on s; records start steps.

  `on_step(s)` is called before the batch of step s (1-based) is handed out.
  """

  def __init__(self, on_step=None):
    self.starts = []
    self.on_step = on_step

  def __call__(self, start_step):
    self.starts.append(start_step)
    step = start_step
    while True:
      step += 1
      if self.on_step:
        self.on_step(step)
      idx = np.random.RandomState(step).choice(64, 8, replace=False)
      yield {"image": _FEATURES[idx], "label": _LABELS[idx]}


@needs_main_thread
def test_interrupted_runs_resume_to_the_same_parameters(tmp_path):
  # Dropout on, so the per-step RNG must also resume exactly; 4 devices, Adam state.
  model = models.get("mlp", 1, hidden=(16, 16), dropout_rate=0.3)
  opt = train.make_optimizer("adam", 1e-2)
  loss_fn = train.make_loss_fn("logistic", 1)
  fresh = lambda: train.create_train_state(model, opt, 0, _FEATURES[:1])
  kwargs = dict(model=model, optimizer=opt, loss_fn=loss_fn, num_steps=8, log_every=2,
                checkpoint_every=2)

  reference, _ = train.fit(fresh(), train_iter_fn=_Data(), workdir=str(tmp_path / "ref"),
                           **kwargs)

  workdir = str(tmp_path / "run")

  def sigterm_at_3(step):
    if step == 3:
      os.kill(os.getpid(), signal.SIGTERM)

  with pytest.raises(train.TrainingPreempted) as preempted:
    train.fit(fresh(), train_iter_fn=_Data(sigterm_at_3), workdir=workdir, **kwargs)
  assert preempted.value.step == 3 and preempted.value.code == 143
  assert checkpoint.available_steps(workdir) == [2, 3]  # saved on SIGTERM

  class Crash(Exception):
    pass

  def crash_at_7(step):
    if step == 7:
      raise Crash()

  resumed = _Data(crash_at_7)
  with pytest.raises(Crash):  # a hard failure: only the periodic checkpoints remain
    train.fit(fresh(), train_iter_fn=resumed, workdir=workdir, **kwargs)
  assert resumed.starts == [3]
  assert checkpoint.available_steps(workdir) == [2, 3, 4, 6]

  final_data = _Data()
  final, _ = train.fit(fresh(), train_iter_fn=final_data, workdir=workdir, **kwargs)
  assert final_data.starts == [6]
  assert int(final.step) == 8
  _assert_trees_equal(final.params, reference.params)
  _assert_trees_equal(final.opt_state, reference.opt_state)
  # a fit checkpoint (a whole TrainState) transfers: encoder from step 8, head as given
  other = train.create_train_state(models.get("mlp", 3, hidden=(16, 16)), opt, 5,
                                   _FEATURES[:1]).params
  moved = checkpoint.transfer(other, workdir)
  _assert_trees_equal(moved["encoder"], reference.params["encoder"])
  _assert_trees_equal(moved["head"], other["head"])
  # the log keeps one line per logged step: the lost steps' lines were dropped
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    steps = [json.loads(line)["step"] for line in f]
  assert steps == [2, 4, 6, 8]


# --- transfer ----------------------------------------------------------------------


def _random_params(model, input_shape, seed):
  """Params of `model`'s shapes with random values (no init compile needed)."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(input_shape)))
  rs = np.random.RandomState(seed)
  return jax.tree.map(lambda s: jnp.asarray(rs.normal(size=s.shape), s.dtype), shapes["params"])


def _small_params(num_classes, seed, width=0.25):
  return _random_params(models.get("fcn_small", num_classes, width=width), (1, 8, 8, 3), seed)


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory):
  """A fit-style workdir holding a 16-class fcn_small checkpoint at steps 10 and 20."""
  workdir = tmp_path_factory.mktemp("pretrain")
  params = jax.tree.map(lambda p: p + 1.5, _small_params(16, 0))  # unlike any fresh init
  with checkpoint.CheckpointManager(workdir / "checkpoints") as manager:
    manager.save(10, {"params": jax.tree.map(jnp.zeros_like, params)})
    manager.save(20, {"params": params})
  return workdir, params


def test_transfer_copies_encoder_and_keeps_head(source_dir):
  workdir, source = source_dir
  fresh = _small_params(6, 1)
  out = checkpoint.transfer(fresh, workdir)  # latest step, workdir or its checkpoints/
  _assert_trees_equal(out["encoder"], source["encoder"])
  _assert_trees_equal(out["head"], fresh["head"])
  assert out["head"]["score"]["kernel"].shape == (1, 1, 32, 6)
  earlier = checkpoint.transfer(fresh, workdir / "checkpoints", step=10)
  assert not np.any(np.asarray(earlier["encoder"]["conv1_1"]["kernel"]))
  assert checkpoint.available_steps(workdir) == [10, 20]


def test_transfer_errors_name_path_shapes_and_directory(source_dir, tmp_path):
  workdir, _ = source_dir
  with pytest.raises(checkpoint.CheckpointError,
                     match=r"encoder/conv1_1/bias has shape \(4,\) in .* but shape \(8,\) in the model"):
    checkpoint.transfer(_small_params(6, 1, width=0.5), workdir)
  with pytest.raises(checkpoint.CheckpointError,
                     match=r"encoder/dense1/bias \(shape \(6,\)\) is missing from checkpoint"):
    checkpoint.transfer(_random_params(models.get("mlp", 6), (1, 2), 0), workdir)
  fresh = _small_params(6, 1)
  with pytest.raises(checkpoint.CheckpointError, match="decoder"):
    checkpoint.transfer(fresh, workdir, keys=("decoder",))
  missing = tmp_path / "no_such_run"
  with pytest.raises(checkpoint.CheckpointError, match=str(missing)):
    checkpoint.transfer(fresh, missing)
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(checkpoint.CheckpointError, match=f"No checkpoint found in {empty}"):
    checkpoint.transfer(fresh, empty)
  with pytest.raises(checkpoint.CheckpointError, match=r"step 99 .*\[10, 20\]"):
    checkpoint.transfer(fresh, workdir, step=99)
  broken = tmp_path / "broken"
  shutil.copytree(workdir / "checkpoints", broken)
  for root, _, files in os.walk(broken / "20"):
    for name in files:
      os.remove(os.path.join(root, name))
  with pytest.raises(checkpoint.CheckpointError, match=str(broken)):
    checkpoint.transfer(fresh, broken)


# --- integrity ---------------------------------------------------------------------

MANIFEST = "jaxpu_manifest.json"


def _files(step_dir):
  """{relative path: bytes} of a step folder's files, without the manifest."""
  out = {}
  for root, _, names in os.walk(step_dir):
    for name in names:
      if not name.startswith(MANIFEST):
        full = os.path.join(root, name)
        with open(full, "rb") as f:
          out[os.path.relpath(full, step_dir).replace(os.sep, "/")] = f.read()
  return out


def _largest_file(step_dir):
  files = [os.path.join(root, name) for root, _, names in os.walk(step_dir) for name in names
           if not name.startswith(MANIFEST)]
  return max(files, key=os.path.getsize)


def _flip_bit(path):
  """Flips one bit in the middle of the file (OCDBT stores raw float32 there)."""
  with open(path, "r+b") as f:
    f.seek(os.path.getsize(path) // 2)
    byte = f.read(1)[0]
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte ^ 0x40]))


def _truncate(path):
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


@pytest.fixture
def two_steps(tmp_path):
  """A fit-style workdir with checkpoints {"params": ...} at steps 10 (zeros) and 20."""
  params = jax.tree.map(lambda p: p + 1.5, _small_params(16, 0))
  with checkpoint.CheckpointManager(tmp_path / "checkpoints") as manager:
    manager.save(10, {"params": jax.tree.map(jnp.zeros_like, params)})
    manager.save(20, {"params": params})
  return tmp_path, params


def test_async_save_writes_the_manifest_once_finalised(tmp_path):
  state = {"params": _small_params(16, 0)}
  manager = checkpoint.CheckpointManager(tmp_path, max_to_keep=2, async_save=True)
  for step in (1, 2, 3):
    assert manager.save(step, state)
  manager.wait_until_finished()
  # step 1 went with max_to_keep: no stray manifest or temporary file remains
  assert sorted(os.listdir(tmp_path)) == ["2", "3"]
  for step in (2, 3):
    step_dir = tmp_path / str(step)
    with open(step_dir / MANIFEST) as f:
      manifest = json.load(f)
    files = _files(step_dir)
    assert sorted(manifest["files"]) == sorted(files) and len(files) > 5
    for name, content in files.items():
      assert manifest["files"][name] == {"size": len(content),
                                         "crc32": f"{zlib.crc32(content):08x}"}
    assert checkpoint.verify_step(tmp_path, step)
    assert not [n for n in os.listdir(step_dir) if n.startswith(MANIFEST + ".")]
  manager.close()
  restored = checkpoint.restore_params(tmp_path)  # Orbax ignores the extra file
  _assert_trees_equal(restored, state["params"])
  assert checkpoint.MANIFEST_NAME == MANIFEST


@pytest.mark.parametrize("damage", [_flip_bit, _truncate], ids=["flipped_bit", "truncated"])
def test_damaged_latest_step_raises_for_params_and_transfer(two_steps, damage):
  workdir, params = two_steps
  damage(_largest_file(workdir / "checkpoints" / "20"))
  for read in (lambda: checkpoint.restore_params(workdir),
               lambda: checkpoint.transfer(_small_params(6, 1), workdir),
               lambda: checkpoint.restore_params(workdir, step=20)):
    with pytest.raises(checkpoint.CheckpointError,
                       match=r"step 20 in .*checkpoints is damaged: file .* It was not used. "
                       r"The other steps there are \[10\]") as info:
      read()
    assert isinstance(info.value, checkpoint.DamagedCheckpointError)
    assert info.value.step == 20 and str(workdir) in str(info.value)
    assert "TensorStore" not in str(info.value)
  with pytest.raises(checkpoint.DamagedCheckpointError, match="step 20"):
    checkpoint.verify_step(workdir, 20)
  assert checkpoint.verify_step(workdir, 10)
  earlier = checkpoint.transfer(_small_params(6, 1), workdir, step=10)  # an explicit older step
  assert not np.any(np.asarray(earlier["encoder"]["conv1_1"]["kernel"]))
  assert checkpoint.available_steps(workdir) == [10, 20]  # nothing deleted


@pytest.mark.parametrize("damage", [_flip_bit, _truncate], ids=["flipped_bit", "truncated"])
def test_resume_falls_back_to_the_newest_intact_step(two_steps, damage, caplog):
  workdir, params = two_steps
  damage(_largest_file(workdir / "checkpoints" / "20"))
  damaged_files = _files(workdir / "checkpoints" / "20")
  target = {"params": _small_params(16, 3)}
  with checkpoint.CheckpointManager(workdir / "checkpoints") as manager:
    assert manager.latest_step() == 20
    with pytest.raises(checkpoint.DamagedCheckpointError, match="step 20"):
      manager.restore(target, step=20)  # an explicit step does not fall back
    assert manager.all_steps() == [10, 20]  # nor does it move anything
    with caplog.at_level("WARNING"):
      restored = manager.restore(target)
    assert not np.any(np.asarray(restored["params"]["encoder"]["conv1_1"]["kernel"]))
    assert manager.restored_step == 10
    warnings = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "step 20" in warnings and "damaged" in warnings and "step 10" in warnings
    # the damaged step is moved aside (kept, with its files), so that the retrained one
    # can be saved in its place
    aside = [n for n in os.listdir(workdir / "checkpoints") if n.startswith("20.damaged-")]
    assert len(aside) == 1 and "moved aside to" in warnings and aside[0] in warnings
    assert _files(workdir / "checkpoints" / aside[0]) == damaged_files
    assert manager.all_steps() == [10] and manager.latest_step() == 10
    assert checkpoint.available_steps(workdir) == [10]


def test_resume_with_no_intact_step_raises_and_moves_nothing(two_steps):
  workdir, _ = two_steps
  for step in (10, 20):
    _flip_bit(_largest_file(workdir / "checkpoints" / str(step)))
  with checkpoint.CheckpointManager(workdir / "checkpoints") as manager:
    with pytest.raises(checkpoint.DamagedCheckpointError,
                       match=r"No intact checkpoint in .*step 20: .*step 10: "):
      manager.restore({"params": _small_params(16, 3)})
  assert sorted(os.listdir(workdir / "checkpoints")) == ["10", "20"]


def test_retrained_step_replaces_the_damaged_one_once_final(two_steps, monkeypatch):
  """The damaged step is renamed, never deleted, until its replacement is final."""
  workdir, params = two_steps
  directory = workdir / "checkpoints"
  _flip_bit(_largest_file(directory / "20"))
  removed = []
  rmtree = shutil.rmtree

  def watched_rmtree(path, *args, **kwargs):
    if ".damaged-" in os.path.basename(os.fspath(path)):
      # the replacement is complete and checksummed before its damaged copy goes
      removed.append((os.path.basename(os.fspath(path)),
                      checkpoint.verify_step(directory, 20)))
    return rmtree(path, *args, **kwargs)

  monkeypatch.setattr(shutil, "rmtree", watched_rmtree)
  retrained = {"params": jax.tree.map(lambda p: p * 2., params)}
  with checkpoint.CheckpointManager(directory, async_save=True) as manager:
    manager.restore({"params": _small_params(16, 3)})
    assert manager.restored_step == 10
    assert manager.save(20, retrained)  # the damaged step 20 no longer blocks it
    manager.wait_until_finished()
  assert len(removed) == 1 and removed[0][0].startswith("20.damaged-") and removed[0][1]
  assert sorted(os.listdir(directory)) == ["10", "20"]
  assert checkpoint.verify_step(directory, 20)
  _assert_trees_equal(checkpoint.restore_params(workdir), retrained["params"])


# Orbax's reader of the truncated file reports a late callback on its closed event loop.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_checkpoint_without_manifest_restores_unverified(two_steps, caplog):
  workdir, params = two_steps
  for step in (10, 20):  # as written before manifests existed
    (workdir / "checkpoints" / str(step) / MANIFEST).unlink(missing_ok=True)
  assert checkpoint.verify_step(workdir, 20) is False
  with caplog.at_level("WARNING"):
    _assert_trees_equal(checkpoint.restore_params(workdir)["encoder"], params["encoder"])
    moved = checkpoint.transfer(_small_params(6, 1), workdir)
    with checkpoint.CheckpointManager(workdir / "checkpoints") as manager:
      restored = manager.restore({"params": _small_params(16, 3)})
      assert manager.restored_step == 20
  _assert_trees_equal(moved["encoder"], params["encoder"])
  _assert_trees_equal(restored["params"], params)
  assert "step 20" in caplog.text and "no checksum manifest" in caplog.text
  # an unverified step that cannot be read: a clear error, and resume falls back
  _truncate(_largest_file(workdir / "checkpoints" / "20"))
  with pytest.raises(checkpoint.CheckpointError, match=r"step 20 in .*checkpoints"):
    checkpoint.restore_params(workdir)
  with checkpoint.CheckpointManager(workdir / "checkpoints") as manager:
    manager.restore({"params": _small_params(16, 3)})
    assert manager.restored_step == 10


def test_manifest_listing_no_file_does_not_verify(two_steps):
  """A step folder with files but an empty manifest is damaged, not verified."""
  workdir, _ = two_steps
  path = workdir / "checkpoints" / "20" / MANIFEST
  manifest = json.loads(path.read_text())
  manifest["files"] = {}
  path.write_text(json.dumps(manifest))
  with pytest.raises(checkpoint.DamagedCheckpointError,
                     match=r"step 20 in .*checkpoints is damaged: its checksum manifest .* lists "
                     r"no file"):
    checkpoint.verify_step(workdir, 20)
  with pytest.raises(checkpoint.DamagedCheckpointError, match="lists no file"):
    checkpoint.restore_params(workdir)
  assert checkpoint.verify_step(workdir, 10)


# --- runs: the real training loop ---------------------------------------------------

RUN_STEPS = 4


def _run(run_dir):
  """A finished `jaxpu.runs` run of RUN_STEPS steps, checkpointed every 2 steps."""
  from jaxpu import runs  # pylint: disable=g-import-not-at-top
  spec = runs.TrainSpec(model="mlp", num_classes=1, loss="logistic", learning_rate=0.05,
                        steps=RUN_STEPS, batch_size=8, checkpoint_every=2, keep=3, log_every=2)
  return runs.train(spec, train_iter_fn=_Data(), sample_batch={"image": _FEATURES[:1]},
                    eval_batches_fn=lambda: [{"image": _FEATURES[:32], "label": _LABELS[:32]}],
                    run_dir=str(run_dir), seed=0, mesh=train.make_mesh(jax.devices()[:1]))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  """A finished run's folder (copy it before changing it) and its final parameters."""
  run_dir = tmp_path_factory.mktemp("finished") / "run"
  _run(run_dir)
  return run_dir, checkpoint.restore_params(run_dir, step=RUN_STEPS)


@needs_main_thread
def test_damaged_last_step_of_an_unfinished_run_is_retrained_and_replaced(finished_run,
                                                                         tmp_path):
  """Resume fell back to the older step and retrained, but the retrained last step was never
  saved (the damaged one was in the way): the run was then broken for good."""
  source, final_params = finished_run
  run_dir = tmp_path / "run"
  shutil.copytree(source, run_dir)
  os.remove(run_dir / "done.json")  # it stopped right after its last checkpoint
  _flip_bit(_largest_file(run_dir / "checkpoints" / str(RUN_STEPS)))
  _run(run_dir)  # resumes from step 2 and trains steps 3 and 4 again
  assert checkpoint.verify_step(run_dir, RUN_STEPS)
  assert checkpoint.available_steps(run_dir) == [2, RUN_STEPS]
  assert not [n for n in os.listdir(run_dir / "checkpoints") if "damaged" in n]
  _assert_trees_equal(checkpoint.restore_params(run_dir, step=RUN_STEPS), final_params)
  _assert_trees_equal(checkpoint.restore_params(run_dir), final_params)
  result = _run(run_dir)  # finished: reused, and its last step reads
  assert sorted(result.snapshots) == [2, RUN_STEPS]


@pytest.mark.parametrize("how", ["deleted", "a_file"])
def test_missing_last_step_of_a_finished_run_is_an_error_not_older_weights(
    finished_run, tmp_path, how):
  source, _ = finished_run
  run_dir = tmp_path / "run"
  shutil.copytree(source, run_dir)
  last = run_dir / "checkpoints" / str(RUN_STEPS)
  shutil.rmtree(last)
  if how == "a_file":
    last.write_text("not a checkpoint")
  checkpoints = str(run_dir / "checkpoints")
  other = train.create_train_state(models.get("mlp", 3), train.make_optimizer("adam", 1e-3), 5,
                                   _FEATURES[:1]).params
  for read in (lambda: checkpoint.restore_params(run_dir, step=RUN_STEPS),
               lambda: checkpoint.restore_params(checkpoints, step=RUN_STEPS),
               lambda: checkpoint.transfer(other, run_dir, step=RUN_STEPS)):
    with pytest.raises(checkpoint.MissingCheckpointError,
                       match=rf"Checkpoint step {RUN_STEPS} is missing from "
                       rf"{re.escape(checkpoints)} .*Delete the run folder "
                       rf"{re.escape(str(run_dir))} to train it again") as info:
      read()
    assert isinstance(info.value, checkpoint.CheckpointError)
    assert info.value.step == RUN_STEPS and info.value.path == checkpoints
    if how == "a_file":
      assert "not a step folder" in str(info.value)
  # without `step`, the older step is what is there (the caller asked for the latest)
  assert checkpoint.available_steps(run_dir) == [2]


# --- disk full ----------------------------------------------------------------------


def _no_space(*args, **kwargs):
  raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_writing_a_manifest_is_one_short_error(two_steps, monkeypatch):
  workdir, _ = two_steps
  step_dir = workdir / "checkpoints" / "20"
  os.remove(step_dir / MANIFEST)
  monkeypatch.setattr(os, "fsync", _no_space)  # some file systems report it only here
  with pytest.raises(checkpoint.DiskFullError,
                     match=rf"Disk full: .*{re.escape(str(step_dir))}") as info:
    checkpoint.write_manifest(step_dir)
  assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
  assert info.value.__suppress_context__ and len(str(info.value)) < 600
  assert not [n for n in os.listdir(step_dir) if n.startswith(MANIFEST)]  # nor half a one


def _orbax_writes_fail(monkeypatch, folder):
  """Orbax's own file writes (checkpoint metadata) under `folder` fail with ENOSPC."""
  from etils import epath  # pylint: disable=g-import-not-at-top

  def failing(write):
    def wrapper(path, *args, **kwargs):
      if os.fspath(path).startswith(os.fspath(folder)):
        _no_space()
      return write(path, *args, **kwargs)
    return wrapper

  for name in ("write_text", "write_bytes"):
    monkeypatch.setattr(epath.gpath.PosixGPath, name,
                        failing(getattr(epath.gpath.PosixGPath, name)))


# Orbax's failed background save reports a late callback on its closed event loop.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("async_save", [False, True], ids=["sync", "async"])
def test_disk_full_during_a_save_is_one_short_error(tmp_path, monkeypatch, caplog, async_save):
  state = {"params": _small_params(16, 0)}
  manager = checkpoint.CheckpointManager(tmp_path, async_save=async_save)
  _orbax_writes_fail(monkeypatch, tmp_path)
  with caplog.at_level("INFO"), checkpoint.quiet_orbax_logs():
    with pytest.raises(checkpoint.DiskFullError,
                       match=rf"Disk full: .*{re.escape(str(tmp_path))}") as info:
      manager.save(1, state)
      manager.wait_until_finished()
    manager.close()  # the failure is reported once, not again on close
  assert info.value.errno == errno.ENOSPC and info.value.__suppress_context__
  assert len(str(info.value)) < 600
  assert "Traceback" not in caplog.text and not [r for r in caplog.records if r.exc_info]
  assert checkpoint.available_steps(tmp_path) == []


# Orbax's failed background save reports a late callback on its closed event loop.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@needs_main_thread
def test_disk_full_in_the_training_loop_is_one_short_error(tmp_path, monkeypatch, caplog):
  model = models.get("mlp", 1)
  opt = train.make_optimizer("adam", 1e-2)
  _orbax_writes_fail(monkeypatch, tmp_path)
  with caplog.at_level("INFO"), pytest.raises(checkpoint.DiskFullError) as info:
    train.fit(train.create_train_state(model, opt, 0, _FEATURES[:1]), model=model,
              optimizer=opt, loss_fn=train.make_loss_fn("logistic", 1), train_iter_fn=_Data(),
              num_steps=4, log_every=2, checkpoint_every=2, workdir=str(tmp_path),
              mesh=train.make_mesh(jax.devices()[:1]))
  assert "disk full" in str(info.value).lower() and str(tmp_path) in str(info.value)
  assert info.value.__suppress_context__ and info.value.__cause__ is None
  assert "Traceback" not in caplog.text
