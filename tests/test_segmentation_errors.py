"""`experiments.segmentation_errors`: corruption strings, validation, the paired-difference
table (hand-computed), and the experiment end to end at the smoke scale."""

import json
import os

import numpy as np
import pytest

from experiments import segmentation_errors as segerr
from experiments.configs import segmentation_errors as segerr_config
from jaxpu import fileio
from jaxpu import report
from tests import smoke


def test_corruption_strings_carry_level_and_size():
  assert segerr.corruption("boundary_noise:3", 0.5) == "boundary_noise:0.5:3"
  assert segerr.corruption("coarse_outlines:box", 1.0) == "coarse_outlines:1:box"
  assert segerr.corruption("under_segment", 0.25) == "under_segment:0.25"
  config = segerr_config.get_config("cpu")
  t = segerr.training("boundary_noise:1:3", "GeneralizedSigmoid", config)
  assert t.task == "binary" and t.corruption == "boundary_noise:1:3"
  assert dict(t.loss_kwargs) == {"alpha": 1.0, "beta": 0.5, "gamma": 1.0}
  assert segerr.training(segerr.CLEAN, "ClassWeighted", config).corruption is None
  assert dict(segerr.training(segerr.CLEAN, "ClassWeighted", config).loss_kwargs) == {
      "negative_weight": 0.5}


def test_cpu_config_plans_every_noise_level_and_loss():
  labels, transfer_levels = segerr.validate(segerr_config.get_config("cpu"))
  assert labels == ["clean", "boundary_noise:0.5:3", "boundary_noise:1:3",
                    "coarse_outlines:0.5:box", "coarse_outlines:1:box"]
  assert transfer_levels == (1.0,)


@pytest.mark.parametrize("field,value,message", [
    ("noises", ("unsegment_objects",), "--config.noises='unsegment_objects'"),
    ("noises", ("boundary_noise:x",), "--config.noises='boundary_noise:x'"),
    ("levels", (0.0, 0.5), "--config.levels"),
    ("losses", ("Hinge",), "--config.losses"),
    ("transfer_levels", (0.3,), "--config.transfer_levels"),
    ("fold", 5, "--config.fold=5"),
])
def test_bad_settings_name_the_field(field, value, message):
  config = segerr_config.get_config("smoke")
  config[field] = value
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
    segerr.validate(config)
  config = segerr_config.get_config("smoke")
  config.generalized.beta = 0.0
  with pytest.raises(ValueError, match="generalized.beta"):
    segerr.validate(config)


def test_paired_table_hand_computed():
  # Sigmoid − logistic: d = (0.1, 0.2, 0.15): mean 0.15, SE = 0.05 / sqrt 3 = 0.0289, t = 5.2
  # on 2 df, two-sided p = 0.035 < 0.05: starred. The clean − noisy cost: d = (0.2, 0.1, 0.3),
  # mean 0.2, SE = 0.0577, t = 3.46, p = 0.074: not starred.
  from scipy import stats  # pylint: disable=g-import-not-at-top
  cells = [report.Cell("binary", ("n:1", "SigmoidLoss"), "fg AP", [0.5, 0.7, 0.55]),
           report.Cell("binary", ("n:1", "LogisticLoss"), "fg AP", [0.4, 0.5, 0.4]),
           report.Cell("binary", ("clean", "LogisticLoss"), "fg AP", [0.6, 0.6, 0.7])]
  assert stats.ttest_rel([0.5, 0.7, 0.55], [0.4, 0.5, 0.4]).pvalue < 0.05
  assert stats.ttest_rel([0.6, 0.6, 0.7], [0.4, 0.5, 0.4]).pvalue > 0.05
  text = segerr.paired_table(cells, ("LogisticLoss", "SigmoidLoss"), ["clean", "n:1"])
  rows = [line for line in text.splitlines() if line.startswith("| n:1")]
  assert rows == ["| n:1 | clean − noisy (LogisticLoss) | +0.200 ± 0.058 | — | — |",
                  "| n:1 | SigmoidLoss − LogisticLoss | +0.150 ± 0.029* | — | — |"]


def test_smoke_run_trains_every_row_and_writes_tables_and_figure():
  # The segmentation_errors section of the smoke reproduce run (tests/smoke.py): the smoke
  # config (its noise at level 1, its losses), run once per test run.
  section = smoke.section("segmentation_errors")
  config = section.config
  assert fileio.config_dict(config) == fileio.config_dict(segerr_config.get_config("smoke"))
  noisy = [segerr.corruption(noise, 1.0) for noise in config.noises]
  assert "coarse_outlines:1:box" in noisy
  cells, workdir = section.returned, section.workdir
  binary = {c.row for c in cells if c.table == "binary"}
  assert binary == {(x, loss) for x in ["clean"] + noisy for loss in config.losses}
  transfer = {c.row for c in cells if c.table == "transfer"}
  assert transfer == binary | {("RandomWeights", "-")}
  for c in cells:
    assert len(c.values) == 1 and all(0 <= v <= 1 for v in c.values), c
  # The noisy models trained on corrupted labels, in their own run folders.
  folders = os.listdir(os.path.join(workdir, "runs"))
  assert "pretrain-fold1-binary-coarse_outlines1box-sigmoid_negative-seed0" in folders
  assert "finetune-fold1-from-binary-clean-logistic-seed0" in folders
  assert os.path.exists(os.path.join(workdir, "segmentation_errors.png"))
  # The paired table's entries are the cells' differences.
  by = {(c.table, c.row, c.column): c.mean for c in cells}
  d = (by[("binary", ("coarse_outlines:1:box", "SigmoidLoss"), "fg AP")]
       - by[("binary", ("coarse_outlines:1:box", "LogisticLoss"), "fg AP")])
  text = open(os.path.join(workdir, "results.md")).read()
  assert f"| coarse_outlines:1:box | SigmoidLoss − LogisticLoss | {d:+.3f} ± nan" in text
  records = json.load(open(os.path.join(workdir, "results.json")))
  assert {r["table"] for r in records} == {"binary", "transfer"}
  assert np.isfinite([r["mean"] for r in records]).all()
