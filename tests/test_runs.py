"""Tests for jaxpu.runs: a run trains, scores snapshots, is reused, resumes, transfers."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from jaxpu import runs
from jaxpu import train as train_lib

BATCH = 16


def _moons(n, seed):
  rng = np.random.default_rng(seed)
  t = rng.uniform(0, np.pi, n)
  upper = rng.random(n) < 0.5
  x = np.where(upper, np.cos(t), 1 - np.cos(t))
  y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
  points = np.stack([x, y], 1) + rng.normal(0, 0.1, (n, 2))
  return points.astype(np.float32), upper.astype(np.int32)


X, Y = _moons(256, 0)
X_TEST, Y_TEST = _moons(128, 1)


def _train_iter(start_step):
  step = start_step
  while True:
    rng = np.random.default_rng(step)
    idx = rng.choice(len(X), BATCH, replace=False)
    yield {"image": X[idx], "label": Y[idx]}
    step += 1


def _eval_batches():
  for i in range(0, len(X_TEST), 32):
    yield {"image": X_TEST[i:i + 32], "label": Y_TEST[i:i + 32]}


def _spec(**kw):
  base = dict(model="mlp", num_classes=1, loss="logistic", learning_rate=0.05, steps=60,
              batch_size=BATCH, checkpoint_every=10, keep=3, log_every=20,
              model_options={"hidden": (16, 16)})
  base.update(kw)
  return runs.TrainSpec(**base)


def _train(spec, run_dir, **kw):
  return runs.train(spec, train_iter_fn=_train_iter, eval_batches_fn=_eval_batches,
                    sample_batch={"image": X[:1]}, run_dir=str(run_dir), seed=0,
                    mesh=train_lib.make_mesh(jax.devices()[:1]), **kw)


def test_train_scores_the_kept_snapshots_and_keeps_the_last(tmp_path):
  result = _train(_spec(), tmp_path / "a")
  assert sorted(result.snapshots) == [40, 50, 60]  # the last keep=3 (nothing reads the others)
  last = result.last()
  assert len(last) == 3
  for cm in last:
    assert cm.shape == (2, 2) and cm.sum() == len(X_TEST)
  accuracy = result.scores(lambda cm: {"acc": np.trace(cm) / cm.sum()})["acc"]
  assert len(accuracy) == 3 and min(accuracy) > 0.75  # chance is 0.5
  # Only the last `keep` checkpoints stay on disk; their params load.
  assert sorted(os.listdir(tmp_path / "a" / "checkpoints")) == ["40", "50", "60"]
  assert set(result.params()) == {"encoder", "head"}


def test_finished_run_is_reused_not_retrained(tmp_path, monkeypatch):
  first = _train(_spec(), tmp_path / "a")
  monkeypatch.setattr(train_lib, "fit", lambda *a, **k: pytest.fail("trained again"))
  again = _train(_spec(), tmp_path / "a")
  assert sorted(again.snapshots) == sorted(first.snapshots)
  np.testing.assert_array_equal(again.last()[-1], first.last()[-1])


def test_folder_of_another_run_is_refused_naming_each_field(tmp_path):
  _train(_spec(steps=20), tmp_path / "a")
  with pytest.raises(ValueError, match=r"spec\.learning_rate: 0\.05 \(in the folder\) -> 0\.01 "
                                       r"\(now\)(.|\n)*delete"):
    _train(_spec(steps=20, learning_rate=0.01), tmp_path / "a")


def test_folder_is_never_reused_for_other_data(tmp_path):
  """Problem 1 of the reliability issue: the data is part of a run's identity."""
  synthetic = {"dataset": "synthetic", "options": {"fold": 1}, "train_examples": 256}
  voc = {"dataset": "voc", "options": {"fold": 1}, "train_examples": 256}
  _train(_spec(steps=20), tmp_path / "a", data_identity=synthetic)
  again = _train(_spec(steps=20), tmp_path / "a", data_identity=synthetic)  # reused
  assert sorted(again.snapshots) == [10, 20]
  with pytest.raises(ValueError, match=r'data\.dataset: "synthetic" \(in the folder\) -> '
                                       r'"voc" \(now\)'):
    _train(_spec(steps=20), tmp_path / "a", data_identity=voc)


def test_run_that_failed_before_its_first_checkpoint_does_not_block(tmp_path, monkeypatch):
  """Problem 5: a failed run's spec.json must not refuse the corrected command."""
  def boom(*args, **kwargs):
    raise RuntimeError("failed before the first checkpoint")
  monkeypatch.setattr(train_lib, "fit", boom)
  with pytest.raises(RuntimeError):
    _train(_spec(steps=20, learning_rate=0.5), tmp_path / "a")
  monkeypatch.undo()
  result = _train(_spec(steps=20), tmp_path / "a")  # other settings: accepted
  assert sorted(result.snapshots) == [10, 20]


def test_spec_settings_are_checked_when_built():
  """Problem 5: bad step counts fail at once, naming the setting."""
  with pytest.raises(ValueError, match=r"TrainSpec\.steps=-3: must be a positive integer"):
    _spec(steps=-3)
  with pytest.raises(ValueError, match=r"TrainSpec\.checkpoint_every"):
    _spec(checkpoint_every=0)
  with pytest.raises(ValueError, match=r"TrainSpec\.learning_rate=nan: must be a finite number"):
    _spec(learning_rate=float("nan"))
  with pytest.raises(ValueError, match=r"TrainSpec\.learning_rate=inf: must be a finite number"):
    _spec(learning_rate=float("inf"))
  with pytest.raises(ValueError, match=r"warmup_steps=60: must be below steps \(60\)"):
    _spec(schedule="cosine", warmup_steps=60)
  with pytest.raises(ValueError, match=r"lr_mults=.*multiplier inf of 'bias' must be a finite"):
    _spec(lr_mults=(("bias", float("inf")),))


def test_a_config_section_is_the_specs_settings_and_errors_name_the_flag():
  """One place for each training field: the section is built from TrainSpec's settings."""
  from experiments.configs import common as config_common  # pylint: disable=g-import-not-at-top
  section = config_common.training(steps=10, batch_size=6, checkpoint_every=5)
  assert set(section) == set(runs.SETTINGS)
  model = dict(model="mlp", num_classes=1, loss="logistic")
  built = runs.TrainSpec.from_config(dict(section, batch_size=8), "train", **model)
  assert (built.steps, built.batch_size, built.checkpoint_every) == (10, 8, 5)
  assert built == runs.TrainSpec(**model, **dict(section, batch_size=8))
  with pytest.raises(ValueError, match=r"--config\.train\.batch_size=6: must be a multiple "
                                       r"of the 4 devices"):
    runs.TrainSpec.from_config(section, "train", **model)
  with pytest.raises(ValueError, match=r"--config\.pretrain\.checkpoint_every=20: must be at "
                                       r"most steps \(10\)"):
    runs.TrainSpec.from_config(dict(section, batch_size=8, checkpoint_every=20), "pretrain",
                               **model)
  with pytest.raises(ValueError, match=r"--config\.train has unknown fields \['learning_rte'\]"):
    runs.TrainSpec.from_config(dict(section, learning_rte=1.0), "train", **model)
  with pytest.raises(ValueError, match=r"Unknown training settings \['bias_lr_mult'\]"):
    config_common.training(bias_lr_mult=2.0)
  # The command line gives `--config.train.wd_mults=None` as (None,): the default again.
  assert runs.TrainSpec(**model, **dict(section, batch_size=8, wd_mults=(None,))).wd_mults is None


def test_cut_last_snapshot_line_is_skipped_with_a_warning(tmp_path, caplog):
  """Problem 7: one cut last line (an interrupted write) must not break every later run."""
  _train(_spec(steps=20), tmp_path / "a")
  path = tmp_path / "a" / "snapshots.jsonl"
  text = path.read_text()
  path.write_text(text + text.splitlines()[0][:25])  # a partial third line
  again = _train(_spec(steps=20), tmp_path / "a")
  assert sorted(again.snapshots) == [10, 20]
  assert str(path) in caplog.text and "cut last line" in caplog.text
  path.write_text("{broken\n" + text)  # a damaged line elsewhere names the file
  with pytest.raises(ValueError, match=r"snapshots\.jsonl: line 1 is not valid JSON"):
    runs.read_jsonl(str(path))


def test_interrupted_run_resumes_and_reevaluates_to_the_same_result(tmp_path):
  full = _train(_spec(steps=40), tmp_path / "full")
  # An interrupted run: 20 of 40 steps done, no done.json yet. Its stale
  # snapshots of steps 30 and 40 are poisoned: the resumed run must evaluate
  # those steps again (snapshots are cut back to the checkpoint it resumes from).
  partial_dir = tmp_path / "partial"
  _train(_spec(steps=40), partial_dir)
  os.remove(partial_dir / "done.json")
  for step in ("30", "40"):
    shutil.rmtree(partial_dir / "checkpoints" / step)
  snapshots = partial_dir / "snapshots.jsonl"
  lines = [json.loads(line) for line in snapshots.read_text().splitlines()]
  for entry in lines:
    if entry["step"] > 20:
      entry["confusion_matrix"] = [[0, 0], [0, 0]]
  snapshots.write_text("".join(json.dumps(e) + "\n" for e in lines))
  resumed = _train(_spec(steps=40), partial_dir)
  np.testing.assert_array_equal(resumed.snapshots[40], full.snapshots[40])
  np.testing.assert_array_equal(resumed.snapshots[30], full.snapshots[30])
  steps = [json.loads(line)["step"] for line in snapshots.read_text().splitlines()]
  assert steps == [20, 30, 40]  # the kept snapshots (keep=3), one line per step
  for a, b in zip(jax.tree.leaves(resumed.params()), jax.tree.leaves(full.params())):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_init_from_transfers_the_encoder_only(tmp_path):
  source = _train(_spec(steps=20), tmp_path / "src")
  target_spec = _spec(steps=10, model_options={"hidden": (16, 16)}, learning_rate=1e-9)
  target = _train(target_spec, tmp_path / "dst", init_from=source.run_dir)
  src, dst = source.params(), target.params()
  # With a negligible learning rate the encoder is still the source's.
  for a, b in zip(jax.tree.leaves(src["encoder"]), jax.tree.leaves(dst["encoder"])):
    np.testing.assert_allclose(a, b, atol=1e-6)
  assert not all(np.allclose(a, b) for a, b in
                 zip(jax.tree.leaves(src["head"]), jax.tree.leaves(dst["head"])))
  identity = json.loads((tmp_path / "dst" / "spec.json").read_text())
  assert identity["init_from"] == "src"  # a sibling: relative to the folder of both


def _reused(spec, run_dir, **kw):
  """`runs.train` that fails if it trains a step (the run must be found finished)."""
  def no_batches(start_step):
    raise AssertionError(f"{run_dir} trained again (from step {start_step})")
    yield  # pylint: disable=unreachable
  return runs.train(spec, train_iter_fn=no_batches, eval_batches_fn=_eval_batches,
                    sample_batch={"image": X[:1]}, run_dir=str(run_dir), seed=0,
                    mesh=train_lib.make_mesh(jax.devices()[:1]), **kw)


def test_a_workdir_moved_as_a_whole_reuses_its_transfer_runs(tmp_path):
  """A run records a source under the same folder relative to it: after moving the
  folder, the same runs are found finished, nothing is trained again."""
  source = _train(_spec(steps=20), tmp_path / "w" / "runs" / "src")
  target = _train(_spec(steps=10), tmp_path / "w" / "runs" / "dst", init_from=source.run_dir)
  os.rename(tmp_path / "w", tmp_path / "moved")
  runs_dir = tmp_path / "moved" / "runs"
  again = _reused(_spec(steps=10), runs_dir / "dst", init_from=str(runs_dir / "src"))
  np.testing.assert_array_equal(again.snapshots[10], target.snapshots[10])
  # A source outside the folder that holds the run is recorded by its absolute path.
  outside = _train(_spec(steps=10), tmp_path / "other" / "dst",
                   init_from=str(runs_dir / "src"))
  identity = json.loads((tmp_path / "other" / "dst" / "spec.json").read_text())
  assert identity["init_from"] == os.path.realpath(runs_dir / "src")
  assert outside.snapshots


def test_a_run_recorded_with_an_absolute_source_is_reused_and_rewritten(tmp_path):
  """Earlier versions recorded `init_from` by its absolute path: the same run is found
  finished (not trained again, not refused) and its record takes today's form."""
  source = _train(_spec(steps=20), tmp_path / "src")
  target = _train(_spec(steps=10), tmp_path / "dst", init_from=source.run_dir)
  for name in ("spec.json", "done.json"):  # what an earlier version wrote
    path = tmp_path / "dst" / name
    record = json.loads(path.read_text())
    identity = record.get("identity", record)
    identity["init_from"] = os.path.realpath(source.run_dir)
    path.write_text(json.dumps(record))
  again = _reused(_spec(steps=10), tmp_path / "dst", init_from=source.run_dir)
  np.testing.assert_array_equal(again.snapshots[10], target.snapshots[10])
  for name in ("spec.json", "done.json"):
    record = json.loads((tmp_path / "dst" / name).read_text())
    assert record.get("identity", record)["init_from"] == "src"
  # An interrupted run of that earlier form (spec.json, checkpoints) is claimed, resumed.
  os.remove(tmp_path / "dst" / "done.json")
  spec_path = tmp_path / "dst" / "spec.json"
  record = json.loads(spec_path.read_text())
  record["init_from"] = os.path.realpath(source.run_dir)
  spec_path.write_text(json.dumps(record))
  resumed = _train(_spec(steps=10), tmp_path / "dst", init_from=source.run_dir)
  np.testing.assert_array_equal(resumed.snapshots[10], target.snapshots[10])
  assert json.loads(spec_path.read_text())["init_from"] == "src"


def test_two_stage_loss_switches_after_first_stage(tmp_path):
  spec = _spec(steps=40, first_loss="weighted_logistic",
               first_loss_kwargs={"negative_weight": 0.5}, first_loss_steps=20,
               loss="bootstrap_hard")
  result = _train(spec, tmp_path / "boot")
  assert sorted(result.snapshots) == [20, 30, 40]
  with pytest.raises(ValueError, match="first_loss_steps"):
    _spec(first_loss="logistic", first_loss_steps=60)


def test_runs_in_one_process_reuse_the_step_only_for_the_same_spec(tmp_path):
  """Runs in one process share jitted steps (`make_optimizer` returns the same object for
  the same settings), so a second run is not traced again; a run differing in one
  setting (learning rate, a loss argument, a model option; the length of a cosine
  schedule) gets its own step, and runs equal the same run trained with all caches
  cleared."""
  from jaxpu.train import optimizers  # pylint: disable=g-import-not-at-top
  short = dict(steps=10, checkpoint_every=10, keep=1)
  specs = {"base": _spec(**short), "lr": _spec(**short, learning_rate=0.01),
           "kwarg": _spec(**short, loss="weighted_logistic",
                          loss_kwargs={"negative_weight": .5}),
           "kwarg2": _spec(**short, loss="weighted_logistic",
                           loss_kwargs={"negative_weight": 2}),
           "model": _spec(**short, model_options={"hidden": (16, 8)})}
  assert specs["base"].build_optimizer() is _spec(**short).build_optimizer()
  assert specs["base"].build_optimizer() is _spec(steps=20).build_optimizer()  # constant
  assert specs["base"].build_optimizer() is not specs["lr"].build_optimizer()
  cosine = _spec(**short, schedule="cosine")
  assert cosine.build_optimizer() is not _spec(steps=20, schedule="cosine").build_optimizer()
  assert (train_lib.make_loss_fn("weighted_logistic", 1, negative_weight=1)
          != train_lib.make_loss_fn("weighted_logistic", 1, negative_weight=1.))
  order = list(specs) + ["base"]  # "base" again after the others: it reuses none of theirs
  trained = [_train(specs[name], tmp_path / f"{i}_{name}").params()
             for i, name in enumerate(order)]
  params = dict(zip(order, trained))
  np.testing.assert_equal(trained[0], trained[-1])
  names = list(specs)
  for i, a in enumerate(names):
    for b in names[i + 1:]:
      assert not all(np.array_equal(x, y) for x, y in zip(
          jax.tree.leaves(params[a]), jax.tree.leaves(params[b]))), (a, b)
  for name in ("lr", "kwarg2"):
    optimizers._cached_optimizer.cache_clear()  # pylint: disable=protected-access
    jax.clear_caches()
    fresh = _train(specs[name], tmp_path / f"fresh_{name}").params()
    np.testing.assert_equal(fresh, params[name], err_msg=name)


def test_steps_for_epochs():
  assert runs.steps_for_epochs(10, 25) == 250
  assert runs.steps_for_epochs(0.01, 25) == 1
  with pytest.raises(ValueError, match="epochs must be > 0"):
    runs.steps_for_epochs(0, 25)


def test_binary_segmentation_scores():
  cm = np.array([[80, 20], [10, 30]])
  scores = runs.binary_segmentation_scores(cm)
  assert scores["background_recall"] == pytest.approx(0.8)
  assert scores["foreground_recall"] == pytest.approx(0.75)
  assert scores["mean_recall"] == pytest.approx((0.8 + 0.75) / 2)
  assert scores["overall_accuracy"] == pytest.approx(110 / 140)


def test_a_diverged_training_stops_naming_the_run_and_the_step(tmp_path):
  """A non-finite loss is an error naming the run, the step and the likely setting; no
  checkpoint or result of the diverged state is kept."""
  spec = _spec(optimizer="sgd", learning_rate=1e4, steps=40)
  with pytest.raises(train_lib.TrainingDiverged) as info:
    _train(spec, tmp_path / "boom")
  message = str(info.value)
  assert str(tmp_path / "boom") in message and "learning rate" in message
  assert "by step" in message
  assert not (tmp_path / "boom" / "done.json").exists()
  folder = tmp_path / "boom" / "checkpoints"
  steps = [name for name in os.listdir(folder) if name.isdigit()] if folder.exists() else []
  for step in steps:  # any checkpoint kept holds finite parameters only
    params = runs.checkpoint.restore_params(str(tmp_path / "boom"), int(step))
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(params))
