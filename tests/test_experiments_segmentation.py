"""Segmentation experiments (Tables 2-5, Figs. 6-7, reproduce): bookkeeping, scoring, claims,
and each module end to end at the smoke scale."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from jaxpu import claims
from jaxpu import report
from jaxpu import runs
from jaxpu import segmentation_runs as seg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------
# Which pre-training feeds which row (no training).
# ----------------------------------------------------------------------------


def _row(table, name):
  (row,) = [r for r in seg.ROWS[table] if r.row[-1] == name]
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
  # Tables 3, 4, 5 and Fig. 7 need 12 distinct pre-trainings, not one per row (20).
  rows = seg.rows_for(seg.TABLES)
  trainings = seg.trainings_for(rows)
  assert len(rows) == 19 and len(trainings) == 12
  assert len({t.key for t in trainings}) == 12
  assert seg.training_names(rows)[seg.TRUE_LABELS] == "TrueLabels / CompleteLabels / Fig7 meaningful 15"


def test_run_folders_are_keyed_by_the_pretraining_not_the_row():
  w = "/w"
  true3, complete4 = _row("table3", "TrueLabels").training, _row("table4", "CompleteLabels").training
  assert seg.pretrain_dir(w, true3, 1, 0) == seg.pretrain_dir(w, complete4, 1, 0)
  assert seg.pretrain_dir(w, true3, 1, 0) != seg.pretrain_dir(w, true3, 2, 0)
  assert seg.pretrain_dir(w, true3, 1, 0) != seg.pretrain_dir(w, true3, 1, 1)
  assert seg.finetune_dir(w, None, 1, 0) != seg.finetune_dir(w, true3, 1, 0)
  assert seg.pretrain_dir(w, seg.HALF_UNSEGMENTED, 1, 0) != seg.pretrain_dir(
      w, seg.SIGMOID_LOSS, 1, 0)


class _FakeData:
  def __init__(self, num_classes):
    self.num_classes, self.image_shape = num_classes, (8, 8, 3)
    self.train_iter = self.eval_iter = None


def test_runner_feeds_each_finetuning_from_its_pretraining(monkeypatch, tmp_path):
  calls = []

  def fake_train(spec, data, run_dir, seed, init_from=None):
    calls.append((run_dir, init_from, spec.num_classes, spec.loss))
    return runs.RunResult(run_dir, spec, {})

  monkeypatch.setattr(seg, "_train", fake_train)
  template = runs.TrainSpec(model="fcn_small", num_classes=1, loss="logistic", steps=4)
  runner = seg.Runner(str(tmp_path), pretrain=template,
                      finetune=runs.TrainSpec(model="fcn_small", num_classes=6,
                                              loss="softmax_cross_entropy", steps=4))
  classes = {"multiclass": 16, "binary": 2, "target": 2}
  monkeypatch.setattr(runner, "data", lambda training, fold, seed, phase="pretrain":
                      _FakeData(6 if phase == "finetune" else classes[training.task]))
  for row in seg.ROWS["table4"] + seg.ROWS["table3"]:
    runner.transfer(row.training, 1, 0)
  pretrain = {c[0]: c for c in calls if "pretrain-" in c[0]}
  finetune = {c[0]: c for c in calls if "finetune-" in c[0]}
  # Table 4 needs 3 pre-trainings, Table 3 adds 3 (TrueLabels is CompleteLabels).
  assert len(pretrain) == 6 and len(finetune) == 7 and len(calls) == 13
  for training in (seg.TRUE_LABELS, seg.HALF_UNSEGMENTED, seg.SIGMOID_LOSS, seg.BINARIZED_LABELS):
    source = seg.pretrain_dir(str(tmp_path), training, 1, 0)
    assert finetune[seg.finetune_dir(str(tmp_path), training, 1, 0)][1] == source
  assert finetune[seg.finetune_dir(str(tmp_path), None, 1, 0)][1] is None
  assert pretrain[seg.pretrain_dir(str(tmp_path), seg.TRUE_LABELS, 1, 0)][2:] == (
      16, "softmax_cross_entropy")
  assert pretrain[seg.pretrain_dir(str(tmp_path), seg.SIGMOID_LOSS, 1, 0)][2:] == (
      1, "sigmoid_negative")
  assert all(c[2:] == (6, "softmax_cross_entropy") for c in finetune.values())


def test_parse_flags():
  assert seg.parse_tables("4") == ("table4",)
  assert seg.parse_tables("3,fig7,3") == ("table3", "fig7")
  assert seg.parse_tables("all") == ("table3", "table4", "table5", "fig7")
  assert seg.parse_folds("1,2,3,4") == (1, 2, 3, 4)
  with pytest.raises(ValueError, match="Unknown table '6'"):
    seg.parse_tables("6")
  with pytest.raises(ValueError, match="folds"):
    seg.parse_folds("0,5")


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
  assert seg.fold_average([[0.2, 0.4], [0.4, 0.6, 0.9]]) == pytest.approx([0.3, 0.5])
  with pytest.raises(ValueError):
    seg.fold_average([])


def test_own_scores_of_a_binary_run():
  cm = np.array([[80, 20], [10, 30]])
  result = runs.RunResult("/x", runs.TrainSpec("fcn_small", 1, "logistic"), {10: cm, 20: cm})
  scores = seg.own_scores(result)
  assert scores["fg rec."] == [0.75, 0.75] and scores["bg rec."] == [0.8, 0.8]
  assert scores["overall acc."][0] == pytest.approx(110 / 140)
  # mean IU: background 80/(80+20+10), foreground 30/(30+10+20).
  assert scores["mean IU"][0] == pytest.approx((80 / 110 + 30 / 60) / 2)


# ----------------------------------------------------------------------------
# Claims.
# ----------------------------------------------------------------------------


def test_compare_uses_the_combined_spread():
  assert claims.compare([0.5, 0.5], [0.3, 0.3]) == "higher"
  assert claims.compare([0.3], [0.305]) == "similar"  # below the minimum effect 0.01
  assert claims.compare([0.30, 0.40], [0.30, 0.36]) == "similar"  # 0.02 < hypot(0.05, 0.03)
  assert claims.compare([0.2, 0.2], [0.3, 0.3]) == "lower"


def _cells(table, values):
  return [report.Cell(table, row, column, v) for (row, column), v in values.items()]


def test_judges_follow_the_numbers():
  t4 = {(("Baseline", "RandomWeights"), "Average"): [0.30, 0.31],
        (("Baseline", "CompleteLabels"), "Average"): [0.45, 0.46],
        (("Inexhaustive Segmentation", "HalfUnsegmented"), "Average"): [0.38, 0.39],
        (("Inexhaustive Segmentation", "SigmoidLoss"), "Average"): [0.45, 0.45]}
  verdicts = {v.claim: v for v in claims.judge_all(_cells("table4", t4))}
  by_judge = {j.__name__: verdicts[j(claims.Cells([])).claim] for j in claims.JUDGES}
  assert by_judge["pretraining_helps"].status == claims.SUPPORTED
  assert by_judge["sigmoid_recovers_transfer"].status == claims.SUPPORTED
  assert by_judge["false_positives_harmless"].status == claims.NOT_MEASURED
  t4[(("Inexhaustive Segmentation", "SigmoidLoss"), "Average")] = [0.36, 0.37]
  assert claims.sigmoid_recovers_transfer(
      claims.Cells(_cells("table4", t4))).status == claims.NOT_SUPPORTED

  t2 = {(("Complete", "LogisticLoss"), "mean rec."): [0.9],
        (("50%Unseg.", "LogisticLoss"), "mean rec."): [0.55, 0.57],
        (("50%Unseg.", "ClassWeighted"), "mean rec."): [0.70, 0.72],
        (("50%Unseg.", "SigmoidLoss"), "mean rec."): [0.71, 0.72]}
  assert claims.sigmoid_raises_recall(
      claims.Cells(_cells("table2", t2))).status == claims.PARTLY

  t5 = {(("Baseline", "RandomWeights"), "Average"): [0.30],
        (("Baseline", "NoFalsePositive"), "Average"): [0.40],
        (("False positive segmentation", "HalfFalsePositive"), "Average"): [0.395]}
  assert claims.false_positives_harmless(
      claims.Cells(_cells("table5", t5))).status == claims.SUPPORTED

  sweep = {(("70%Unseg.", "SigmoidLoss"), "fg AP"): [0.8],
           (("70%Unseg.", "ClassWeighted"), "fg AP"): [0.7],
           (("30%Unseg.", "SigmoidLoss"), "fg AP"): [0.5],
           (("30%Unseg.", "ClassWeighted"), "fg AP"): [0.9]}
  assert claims.sigmoid_ranks_foreground_at_high_rates(
      claims.Cells(_cells("sweep", sweep))).status == claims.SUPPORTED  # 30 % is not above 50 %


# ----------------------------------------------------------------------------
# End to end at the smoke scale.
# ----------------------------------------------------------------------------


def _run(module, *flags, cwd=REPO):
  result = subprocess.run([sys.executable, "-m", f"experiments.{module}", "--scale=smoke",
                           *flags], cwd=cwd, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def _records(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    records = json.load(f)
  for r in records:
    assert {"table", "row", "column", "mean", "std", "values", "flags"} <= set(r)
    assert r["n"] == len(r["values"]) and np.isfinite(r["mean"])
  return records


@pytest.fixture(scope="module")
def transfer_workdir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("transfer"))
  data_dir = str(tmp_path_factory.getbasetemp() / "data")
  out = _run("transfer", "--table=5", f"--workdir={workdir}", f"--data_dir={data_dir}")
  assert "Table 5" in out and "HalfFalsePositive" in out
  return workdir


def test_transfer_smoke(transfer_workdir):
  records = _records(transfer_workdir)
  rows = {(r["table"], r["row"][-1], r["column"]) for r in records}
  for name in ("RandomWeights", "NoFalsePositive", "HalfFalsePositive"):
    assert ("table5", name, "Fold1") in rows and ("table5", name, "Average") in rows
  assert ("pretraining", "HalfFalsePositive", "fg rec.") in rows
  # Two pre-trainings, three fine-tunings (one per row), each with its own folder.
  folders = sorted(os.listdir(os.path.join(transfer_workdir, "runs")))
  assert len([f for f in folders if f.startswith("pretrain-")]) == 2
  assert len([f for f in folders if f.startswith("finetune-")]) == 3
  with open(os.path.join(transfer_workdir, "results.md")) as f:
    assert "| Baseline | RandomWeights |" in f.read()


def test_reproduce_gathers_results_and_judges_claims(transfer_workdir, tmp_path,
                                                     tmp_path_factory):
  workdir = str(tmp_path / "reproduce")
  os.makedirs(workdir)
  os.symlink(transfer_workdir, os.path.join(workdir, "transfer"))
  output = str(tmp_path / "REPRODUCTION.md")
  data_dir = str(tmp_path_factory.getbasetemp() / "data")
  # The transfer runs are found finished in the reused folder (done.json): no training.
  _run("reproduce", "--only=transfer", "--extra=transfer:--table=5", f"--workdir={workdir}",
       f"--data_dir={data_dir}", f"--output={output}")
  with open(output) as f:
    text = f.read()
  assert "python -m experiments.reproduce" in text
  assert "False positive segmentations do little harm" in text
  assert "Table 5" in text and "(VOC2011 / CIFAR" in text
  assert text.count("not measured") >= 4  # Tables 1-4 and Fig. 7 were not run
  assert "--table=5" in text


def test_binary_segmentation_smoke(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("binary"))
  data_dir = str(tmp_path_factory.getbasetemp() / "data")
  out = _run("binary_segmentation", f"--workdir={workdir}", f"--data_dir={data_dir}",
             "--examples=2")
  assert "Table 2" in out
  records = _records(workdir)
  cells = {(tuple(r["row"]), r["column"]) for r in records if r["table"] == "table2"}
  for row in (("Complete", "LogisticLoss"), ("50%Unseg.", "SigmoidLoss")):
    for column in ("overall acc.", "mean rec.", "f.w. IU", "mean IU", "fg rec.", "bg rec."):
      assert (row, column) in cells
  assert os.path.exists(os.path.join(workdir, "fig6_examples.png"))
