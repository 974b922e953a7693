"""Tests of experiments/selection_criteria.py at smoke scale (real training on the embedded data)."""

import json
import os

import numpy as np
import pytest

from experiments import selection_criteria
from experiments.configs import selection_criteria as criteria_config
from jaxpu import selection


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("criteria"))
  config = criteria_config.get_config("smoke")
  config.betas, config.gammas = (1.0,), (1.0,)  # one grid cell: 4 candidates per repeat
  cells = selection_criteria.run(config, workdir)
  return config, workdir, cells


def _table(cells, table):
  return {(c.row, c.column): c for c in cells if c.table == table}


def test_every_candidate_and_criterion_has_one_value_per_repeat(smoke_run):
  config, _, cells = smoke_run
  candidates = _table(cells, "candidates")
  names = {row[1] for row, _ in candidates}
  assert names == set(config.losses) | {"α1 β1 γ1"}
  for cell in candidates.values():
    assert len(cell.values) == config.repeats
  agreement = _table(cells, "agreement")
  # "losses" (3) and "all" (4) rank; "sigmoid grid" (1 cell) does not.
  assert {row[1] for row, _ in agreement} == {"losses", "all"}
  for (row, column), cell in agreement.items():
    values = np.asarray(cell.values, float)
    if column.startswith("regret"):
      assert np.all(values >= 0)
    else:
      assert np.all(np.isnan(values) | ((values >= -1) & (values <= 1)))


def test_clean_scores_equal_the_runs_own_evaluation_against_the_clean_labels(smoke_run):
  """The run scored its snapshots on the same images with their clean labels (training
  corrupts only the training split): the experiment's clean mean IU must be that score."""
  config, workdir, cells = smoke_run
  candidates = _table(cells, "candidates")
  folder = os.path.join(workdir, "runs",
                        "pretrain-all-binary-unsegment_objects0.5-logistic-seed0")
  snapshots = [json.loads(line) for line in open(os.path.join(folder, "snapshots.jsonl"))]
  final = max(snapshots, key=lambda e: e["step"])
  cm = np.asarray(final["confusion_matrix"])
  expected = selection.clean_scores({"clean_cm": cm})["mean_iu"]
  assert candidates[("50%", "LogisticLoss"), "mean IU"].values[0] == pytest.approx(expected)


def test_a_second_call_reuses_runs_and_evaluations(smoke_run, monkeypatch):
  config, workdir, cells = smoke_run
  monkeypatch.setattr(selection, "evaluate",
                      lambda *a, **k: pytest.fail("evaluated again instead of reusing"))
  again = selection_criteria.run(config, workdir)
  assert [(c.table, c.row, c.column) for c in again] == [(c.table, c.row, c.column)
                                                         for c in cells]
  for a, b in zip(again, cells):
    np.testing.assert_array_equal(a.values, b.values)  # NaN (a constant ranking) equals NaN


def test_bad_settings_fail_before_any_work(tmp_path):
  config = criteria_config.get_config("smoke")
  config.losses = ("LogisticLoss", "NoSuchLoss")
  with pytest.raises(ValueError, match="losses"):
    selection_criteria.run(config, str(tmp_path / "w"))
  config = criteria_config.get_config("smoke")
  config.mechanisms = ("unsegment_objects", "unsegment_large")
  with pytest.raises(ValueError, match="mechanisms.*unsegment_small"):
    selection_criteria.run(config, str(tmp_path / "w"))
  config = criteria_config.get_config("smoke")
  config.rates = (1.5,)
  with pytest.raises(ValueError, match="rates"):
    selection_criteria.run(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()
