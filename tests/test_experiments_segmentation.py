"""Segmentation experiments (Tables 2-5, Figs. 6-7, reproduce): bookkeeping, scoring, claims,
and each module end to end, in-process, at the smoke scale."""

import json
import os
import shutil

import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from experiments import binary_segmentation
from experiments import reproduce
from experiments import transfer
from experiments.configs import binary_segmentation as binary_config
from experiments.configs import reproduce as reproduce_config
from experiments.configs import transfer as transfer_config
from jaxpu import fileio
from jaxpu import report
from jaxpu import runs
from jaxpu import segmentation_runs as seg
from jaxpu.data import pipeline
from jaxpu.thesis import columns
from jaxpu.thesis import claims
from jaxpu.thesis import rows as thesis_rows
from tests import smoke


# ----------------------------------------------------------------------------
# Which pre-training feeds which row (no training).
# ----------------------------------------------------------------------------


def _row(table, name):
  (row,) = [r for r in thesis_rows.ROWS[table] if r.row[-1] == name]
  return row


def test_rows_that_share_a_pretraining():
  assert _row("table3", "TrueLabels").training == _row("table4", "CompleteLabels").training \
      == _row("fig7", "15").training
  assert _row("table3", "BinarizedLabels").training == _row("fig7", "1").training
  assert _row("table4", "HalfUnsegmented").training != _row("table4", "SigmoidLoss").training
  assert _row("table4", "HalfUnsegmented").training.corruption == "unsegment_objects:0.5"
  assert _row("table4", "SigmoidLoss").training.loss == "sigmoid_negative"
  for table in ("table3", "table4", "table5"):
    assert _row(table, "RandomWeights").training is None
  assert _row("fig7", "0").training is None
  # Tables 3, 4, 5 and Fig. 7 need 12 distinct pre-trainings, not one per row (20): Table
  # 4's CompleteBinary is Table 3's BinarizedLabels and Fig. 7's "1".
  rows = thesis_rows.rows_for(thesis_rows.TABLES)
  trainings = thesis_rows.trainings_for(rows)
  assert len(rows) == 20 and len(trainings) == 12
  assert len({t.key for t in trainings}) == 12
  assert (thesis_rows.training_names(rows)[thesis_rows.TRUE_LABELS]
          == "TrueLabels / CompleteLabels / Fig7 meaningful 15")


def test_run_folders_are_keyed_by_the_pretraining_not_the_row():
  w = "/w"
  true3, complete4 = _row("table3", "TrueLabels").training, _row("table4", "CompleteLabels").training
  assert seg.pretrain_dir(w, true3, 1, 0) == seg.pretrain_dir(w, complete4, 1, 0)
  assert seg.pretrain_dir(w, true3, 1, 0) != seg.pretrain_dir(w, true3, 2, 0)
  assert seg.pretrain_dir(w, true3, 1, 0) != seg.pretrain_dir(w, true3, 1, 1)
  assert seg.finetune_dir(w, None, 1, 0) != seg.finetune_dir(w, true3, 1, 0)
  assert seg.pretrain_dir(w, thesis_rows.HALF_UNSEGMENTED, 1, 0) != seg.pretrain_dir(
      w, thesis_rows.SIGMOID_LOSS, 1, 0)


class _FakeData:
  def __init__(self, num_classes):
    self.num_classes, self.image_shape = num_classes, (8, 8, 3)
    self.train_iter = self.eval_iter = None


def test_runner_feeds_each_finetuning_from_its_pretraining(monkeypatch, tmp_path):
  calls = []

  def fake_train(spec, *, run_dir, seed, init_from=None, **unused):
    calls.append((run_dir, init_from, spec.num_classes, spec.loss))
    return runs.RunResult(run_dir, spec, {})

  monkeypatch.setattr(seg.runs, "train", fake_train)
  monkeypatch.setattr(seg, "data_identity", lambda *args: {})
  template = runs.TrainSpec(model="fcn_small", num_classes=1, loss="logistic", steps=4,
                            checkpoint_every=2)
  runner = seg.Runner(str(tmp_path), pretrain=template,
                      finetune=runs.TrainSpec(model="fcn_small", num_classes=6,
                                              loss="softmax_cross_entropy", steps=4,
                                              checkpoint_every=2),
                      data=pipeline.SegmentationSpec("synthetic"))
  classes = {"multiclass": 16, "binary": 2, "target": 2}
  monkeypatch.setattr(runner, "dataset", lambda training, fold, seed:
                      _FakeData(6 if training is None else classes[training.task]))
  for row in thesis_rows.ROWS["table4"] + thesis_rows.ROWS["table3"]:
    runner.finetune_run(row.training, 1, 0)
  pretrain = {c[0]: c for c in calls if "pretrain-" in c[0]}
  finetune = {c[0]: c for c in calls if "finetune-" in c[0]}
  # Table 4 needs 3 pre-trainings, Table 3 adds 3 (TrueLabels is CompleteLabels).
  assert len(pretrain) == 6 and len(finetune) == 7 and len(calls) == 13
  for training in (thesis_rows.TRUE_LABELS, thesis_rows.HALF_UNSEGMENTED,
                   thesis_rows.SIGMOID_LOSS, thesis_rows.BINARIZED_LABELS):
    source = seg.pretrain_dir(str(tmp_path), training, 1, 0)
    assert finetune[seg.finetune_dir(str(tmp_path), training, 1, 0)][1] == source
  assert finetune[seg.finetune_dir(str(tmp_path), None, 1, 0)][1] is None
  assert pretrain[seg.pretrain_dir(str(tmp_path), thesis_rows.TRUE_LABELS, 1, 0)][2:] == (
      16, "softmax_cross_entropy")
  assert pretrain[seg.pretrain_dir(str(tmp_path), thesis_rows.SIGMOID_LOSS, 1, 0)][2:] == (
      1, "sigmoid_negative")
  assert all(c[2:] == (6, "softmax_cross_entropy") for c in finetune.values())


def test_transfer_tables_are_checked():
  assert thesis_rows.check_tables(("table4",)) == ("table4",)
  assert thesis_rows.check_tables(("table3", "fig7", "table3")) == ("table3", "fig7")
  with pytest.raises(ValueError, match="Unknown or no transfer table.*'table6'"):
    thesis_rows.check_tables(("table6",))


def test_finetuning_subset_is_the_same_for_every_row_of_a_repeat():
  runner = seg.Runner("/w", pretrain=runs.TrainSpec("fcn_small", 1, "logistic"),
                      finetune=runs.TrainSpec("fcn_small", 6, "softmax_cross_entropy"),
                      data=pipeline.SegmentationSpec("synthetic"), finetune_fraction=0.1)
  spec = runner.data_spec(None, 1, 3)
  assert (spec.subsample, spec.noise_seed, spec.task, spec.phase) == (
      0.1, 3, "multiclass", "finetune")
  pre = runner.data_spec(thesis_rows.SIGMOID_LOSS, 1, 3)
  assert pre.subsample is None and pre.corruption == "unsegment_objects:0.5"
  assert pre.phase == "pretrain" and pre.grouping_seed == 3


# ----------------------------------------------------------------------------
# Scoring.
# ----------------------------------------------------------------------------


def test_average_precision_matches_sklearn_with_ties_and_void():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, size=500)
  scores = np.round(rng.normal(size=500) + labels, 1)  # rounding makes ties
  labels_void = labels.copy()
  labels_void[:50] = 255
  keep = labels_void != 255
  assert seg.average_precision(scores, labels) == pytest.approx(
      sk_metrics.average_precision_score(labels, scores))
  assert seg.average_precision(scores, labels_void, where=keep) == pytest.approx(
      sk_metrics.average_precision_score(labels[50:], scores[50:]))
  # Hand-computed: ranking 1, 0, 1 → (1/2)·1 + (1/2)·(2/3).
  assert seg.average_precision([0.9, 0.8, 0.7], [1, 0, 1]) == pytest.approx(0.5 + 1 / 3)
  assert np.isnan(seg.average_precision([0.1, 0.2], [0, 0]))


def test_fold_average_is_elementwise_over_folds():
  assert seg.fold_average([[0.2, 0.4], [0.4, 0.6]]) == pytest.approx([0.3, 0.5])
  with pytest.raises(ValueError, match="different numbers of values"):
    seg.fold_average([[0.2, 0.4], [0.4, 0.6, 0.9]])
  with pytest.raises(ValueError):
    seg.fold_average([])


def test_own_scores_of_a_binary_run():
  cm = np.array([[80, 20], [10, 30]])
  result = runs.RunResult("/x", runs.TrainSpec("fcn_small", 1, "logistic"), {10: cm, 20: cm})
  scores = columns.own_scores(result)
  assert scores["fg rec."] == [0.75, 0.75] and scores["bg rec."] == [0.8, 0.8]
  assert scores["overall acc."][0] == pytest.approx(110 / 140)
  # mean IU: background 80/(80+20+10), foreground 30/(30+10+20).
  assert scores["mean IU"][0] == pytest.approx((80 / 110 + 30 / 60) / 2)


# ----------------------------------------------------------------------------
# End to end at the smoke scale, in-process: the sections of `experiments.reproduce`'s
# default smoke config, each run once per test run (tests/smoke.py) and checked here.
# ----------------------------------------------------------------------------


def _records(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    records = json.load(f)
  for r in records:
    assert {"table", "row", "column", "mean", "std", "values", "config"} <= set(r)
    assert r["n"] == len(r["values"]) and np.isfinite(r["mean"])
  return records


def _cell_keys(cells):
  return sorted((c.table, tuple(c.row), c.column, repr(c.values)) for c in cells)


# CPU seconds per section (for the order the tests start in: the heaviest first).
_SECTION_SECONDS = {"transfer": 33, "cifar_pu": 25, "binary_segmentation": 21,
                    "segmentation_errors": 12, "saturation": 10, "moons": 4, "class_prior": 2,
                    "loss_curves": 1}


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.heavy(seconds))
                                  for name, seconds in _SECTION_SECONDS.items()])
def test_reproduce_runs_each_section_at_smoke_scale(name):
  """`reproduce.run` with `--config.only=<name>`: the section's status holds the default
  smoke sub-config, its report has that section and marks the others pending, and what
  the experiment's `run` returned is what it stored."""
  assert set(_SECTION_SECONDS) == set(reproduce.SECTIONS)
  section = smoke.section(name)
  with open(section.status_path) as f:
    status = json.load(f)
  assert status["name"] == name and status["seconds"] >= 0
  assert status["config"] == fileio.config_dict(reproduce_config.get_config("smoke")[name])
  with open(os.path.join(section.root, "REPRODUCTION.md")) as f:
    text = f.read()
  assert f"`experiments.{name}`" in text
  assert text.count("**Pending**") == len(reproduce.SECTIONS) - 1
  assert f"[reproduce] {name}: done" in section.stdout
  assert _cell_keys(section.returned) == _cell_keys(
      report.load_results_if_any(section.workdir))  # loss_curves: a figure, no table
  assert section.returned or name == "loss_curves"


def _transfer_config():
  """The transfer section's config: Tables 3, 4, 5 and Fig. 7 at the smoke scale."""
  return smoke.reproduce_config().transfer


def test_transfer_smoke():
  section = smoke.section("transfer")
  assert {c.table for c in section.returned} == {"table3", "table4", "table5", "fig7",
                                                 "pretraining"}
  records = _records(section.workdir)
  rows = {(r["table"], r["row"][-1], r["column"]) for r in records}
  for name in ("RandomWeights", "NoFalsePositive", "HalfFalsePositive"):
    assert ("table5", name, "Fold1") in rows and ("table5", name, "Average") in rows
  assert ("pretraining", "HalfFalsePositive", "fg rec.") in rows
  assert records[0]["config"]["tables"] == ["table3", "table4", "table5", "fig7"]
  # One folder per pre-training (rows that share one share its folder: 12 for the 20
  # rows) and per fine-tuning (one per pre-training, one from random init).
  folders = sorted(os.listdir(os.path.join(section.workdir, "runs")))
  assert len([f for f in folders if f.startswith("pretrain-")]) == 12
  assert len([f for f in folders if f.startswith("finetune-")]) == 13
  with open(os.path.join(section.workdir, "results.md")) as f:
    assert "| Baseline | RandomWeights |" in f.read()
  spec = json.load(open(os.path.join(section.workdir, "runs", [
      f for f in folders if f.startswith("finetune-") and "random" not in f][0], "spec.json")))
  assert spec["data"]["spec"]["name"] == "synthetic"
  assert spec["data"]["spec"]["phase"] == "finetune" and spec["dont_load"] == ["head"]


def test_transfer_refuses_a_workdir_of_other_settings(tmp_path):
  workdir = smoke.copy_workdir(smoke.section("transfer").workdir, str(tmp_path / "transfer"))
  config = _transfer_config()
  config.finetune.learning_rate = 1e-2
  with pytest.raises(ValueError, match=r"finetune\.learning_rate: 0\.002 \(in the workdir\) "
                                       r"→ 0\.01 \(now\)"):
    transfer.run(config, workdir)
  bad = _transfer_config()
  bad.folds = (0, 5)
  with pytest.raises(ValueError, match=r"--config\.folds=\(0, 5\)"):
    transfer.run(bad, workdir)


def test_reproduce_gathers_results_and_judges_claims(tmp_path):
  workdir = str(tmp_path / "reproduce")
  os.makedirs(workdir)
  # Table 5 trained by `python -m experiments.transfer` (tests/test_cli.py), copied to the
  # folder reproduce uses (a run records the run it starts from relative to the folder
  # that holds both, so the copy resumes): reproduce's transfer section, same settings.
  main = smoke.main_experiment()
  assert main.returncode == 0, main.stderr[-3000:]
  smoke.copy_workdir(main.workdir, os.path.join(workdir, "transfer"))
  runs_dir = os.path.join(workdir, "transfer", "runs")
  trained = {f: os.path.getmtime(os.path.join(runs_dir, f, "done.json"))
             for f in os.listdir(runs_dir)}
  assert len(trained) == 5  # two pre-trainings, three fine-tunings
  config = reproduce_config.get_config("smoke")
  config.transfer.tables = ("table5",)
  config.transfer.finetune.log_every = 2
  config.repeats = 1
  config.only = ("loss_curves", "transfer")
  config.output = str(tmp_path / "REPRODUCTION.md")
  # The transfer runs are found finished in the reused folder (done.json): no training.
  reproduce.run(config, workdir)
  assert {f: os.path.getmtime(os.path.join(runs_dir, f, "done.json"))
          for f in os.listdir(runs_dir)} == trained
  with open(config.output) as f:
    text = f.read()
  assert "experiments.reproduce" in text
  assert "False positive segmentations do little harm" in text
  assert "Table 5" in text and "(VOC2011 / CIFAR" in text
  # moons, cifar_pu, binary_segmentation and the three beyond-the-thesis sections
  assert text.count("**Pending**") == 6
  assert "**not measured**" not in text  # claims of unfinished sections are pending
  assert os.path.exists(tmp_path / "reproduction" / "loss_curves_loss_curves.png")
  status = json.load(open(os.path.join(workdir, "transfer.status.json")))
  assert status["config"]["tables"] == ["table5"] and "cores" in status["machine_at_start"]


def test_reproduce_judges_every_claim_from_the_cells_at_smoke_scale(tmp_path, capsys):
  """The default reproduce config at the smoke scale: every section runs, every claim
  gets a verdict computed from the cells; a section without its status is pending.

  The sections were run by `reproduce.run` (`--config.only=<name>`, checked by
  test_reproduce_runs_each_section_at_smoke_scale); here one workdir holds them all
  and the full run finds each finished and reuses it."""
  workdir = str(tmp_path / "reproduce")
  os.makedirs(workdir)
  for name, section in smoke.sections(reproduce.SECTIONS).items():
    os.symlink(section.workdir, os.path.join(workdir, name))
    shutil.copy(section.status_path, workdir)
  config = reproduce_config.get_config("smoke")
  config.output = str(tmp_path / "REPRODUCTION.md")
  cells = reproduce.run(config, workdir)
  out = capsys.readouterr().out
  for name in reproduce.SECTIONS:
    assert f"[reproduce] {name}: finished earlier" in out
  assert {c.table for c in cells} >= {"moons", "table1", "fig5", "table2", "sweep", "table3",
                                      "table4", "table5", "fig7"}
  verdicts = claims.judge_all(cells)
  assert len(verdicts) == len(claims.JUDGES)
  for verdict in verdicts:  # one repeat: judged, but nothing can be separated
    assert verdict.status == claims.UNDECIDED, (verdict.claim, verdict.evidence)
    assert "n = 1" in verdict.evidence
  text = open(config.output).read()
  assert "**Pending**" not in text and "every section finished" in text
  for verdict in verdicts:
    assert verdict.claim in text
  os.remove(os.path.join(workdir, "transfer.status.json"))  # as if interrupted
  reproduce.write_report(config, workdir)
  text = open(config.output).read()
  assert text.count("**Pending**") == 1 and "**pending**" in text


def test_binary_segmentation_smoke(tmp_path):
  section = smoke.section("binary_segmentation")
  assert "Table 2" in section.stdout
  records = _records(section.workdir)
  cells = {(tuple(r["row"]), r["column"]) for r in records if r["table"] == "table2"}
  for row in (("Complete", "LogisticLoss"), ("50%Unseg.", "SigmoidLoss")):
    for column in ("overall acc.", "mean rec.", "f.w. IU", "mean IU", "fg rec.", "bg rec."):
      assert (row, column) in cells
  assert os.path.exists(os.path.join(section.workdir, "fig6_examples.png"))
  bad = binary_config.get_config("smoke")
  bad.rates = (0.5, 1.5)
  with pytest.raises(ValueError, match=r"--config\.rates=.*in \(0, 1\)"):
    binary_segmentation.run(bad, str(tmp_path / "w"))


@pytest.mark.parametrize("field,value", [("data.image_size", 0), ("data.downsample", -2),
                                         ("data.synthetic.num_train_per_class", 0),
                                         ("data.preprocessing", "imagenet")])
def test_bad_data_values_fail_before_the_workdir_is_claimed(tmp_path, field, value):
  config = transfer_config.get_config("smoke")
  node = config
  *path, last = field.split(".")
  for part in path:
    node = node[part]
  node[last] = value
  with pytest.raises(ValueError, match=rf"--config\.{field}="):
    transfer.run(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()
