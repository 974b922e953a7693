"""Checkpoints: round trip, keep-last-K, exact resume (SIGTERM and crash), encoder transfer."""

import json
import os
import shutil
import signal
import threading

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
