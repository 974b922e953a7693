"""The selection-bias experiment, in-process at the smoke scale (random vs small objects
missed, three losses, one repeat, a few steps)."""

import json
import math
import os

import numpy as np
import pytest

from experiments import selection_bias
from experiments.configs import selection_bias as selection_config


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("selection_bias"))
  config = selection_config.get_config("smoke")
  cells = selection_bias.run(config, workdir)
  return config, workdir, cells


def test_every_table_has_a_finite_cell_per_row_and_column(smoke_run):
  config, workdir, _ = smoke_run
  with open(os.path.join(workdir, "results.json")) as f:
    records = json.load(f)
  found = {(r["table"], tuple(r["row"]), r["column"]): r for r in records}
  mechanisms = [selection_bias.LABELS[m] for m in config.mechanisms]
  for spec in (selection_bias.SCORES, selection_bias.RECALL):
    for mechanism in mechanisms:
      for loss in config.losses:
        for column in spec.columns:
          record = found[(spec.table, (mechanism, loss), column)]
          assert record["n"] == 1 and np.isfinite(record["mean"])
  for spec in (selection_bias.PRIOR, selection_bias.RATES):
    for mechanism in mechanisms:
      for column in spec.columns:
        assert np.isfinite(found[(spec.table, (mechanism,), column)]["mean"])
  runs = os.listdir(os.path.join(workdir, "runs"))
  assert len(runs) == len(mechanisms) * len(config.losses)
  assert any("unsegment_small0.5-sigmoid_negative" in r for r in runs)


def test_rates_are_the_asked_rate_and_small_objects_are_missed_more(smoke_run):
  _, _, cells = smoke_run
  rates = {(c.row[0], c.column): c.mean for c in cells if c.table == selection_bias.RATES.table}
  for mechanism in ("random (SCAR)", "small"):
    assert rates[(mechanism, "expected")] == pytest.approx(0.5, abs=1e-6)
    # 60 training objects, each missed with its own probability, mean 0.5.
    assert abs(rates[(mechanism, "realised")] - 0.5) < 4 * math.sqrt(0.25 / 60)
  assert rates[("small", "small")] > rates[("small", "large")]


def test_verdicts_are_written_and_undecided_with_one_repeat(smoke_run):
  _, workdir, _ = smoke_run
  text = open(os.path.join(workdir, "results.md")).read()
  assert "## Verdicts" in text and "Bins (test objects" in text
  assert text.count("- **undecided**: ") == 6 and "n = 1: no test" in text
  assert "| small | SigmoidLoss |" in text


@pytest.mark.parametrize("field,value,message", [
    ("mechanisms", ("unsegment_objects", "unsegment_tiny"), r"--config\.mechanisms=.*choose"),
    ("losses", ("SigmoidLoss", "Hinge"), r"--config\.losses=.*choose"),
    ("dataset", "voc", r"--config\.dataset='voc'.*synthetic data only"),
    ("rate", 1.0, r"--config\.rate=1\.0: must be a number in \(0, 1\)"),
    ("generalized_sigmoid", (1.0, 0.0, 1.0), r"--config\.generalized_sigmoid=.*β > 0")])
def test_bad_settings_fail_before_any_work(tmp_path, field, value, message):
  config = selection_config.get_config("smoke")
  config[field] = value
  with pytest.raises(ValueError, match=message):
    selection_bias.run(config, str(tmp_path / "w"))
  assert not os.path.exists(tmp_path / "w")
