"""The command line of every experiment: `python -m experiments.<name> --config... --workdir`.

One run per program (as a user types it; smoke configs with fields set from
the command line), plus: importing an experiment defines no flag, and a bad
field fails before any work with a message naming it.
"""

import importlib
import json
import os
import subprocess
import sys

from absl import flags
import pytest

from experiments import reproduce

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAMS = ("loss_curves", "noise_examples", "moons", "cifar_pu", "binary_segmentation",
            "transfer", "segmentation_errors", "saturation", "class_prior", "reproduce", "train",
            "transfer_variance")


def _cli(name, *args, workdir, check=True):
  result = subprocess.run(
      [sys.executable, "-m", f"experiments.{name}",
       f"--config=experiments/configs/{name}.py:smoke", f"--workdir={workdir}", *args],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  if check:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
  return result


def test_importing_an_experiment_defines_no_flag():
  for name in PROGRAMS:
    module = importlib.import_module(f"experiments.{name}")
    assert callable(module.run)
  assert "config" not in flags.FLAGS and "workdir" not in flags.FLAGS
  defining = [m for m in flags.FLAGS.flags_by_module_dict() if "experiments" in m]
  assert not defining


@pytest.mark.parametrize("name,args,table", [
    ("loss_curves", ["--config.points=101"], "loss_curves.png"),
    ("noise_examples", ["--config.corruptions=over_segment:1.0:2"], "label_corruptions.png"),
    ("moons", ["--config.repeats=1", "--config.steps=20", "--config.checkpoint_every=10",
               "--config.weighted_negative_weight=0.4"], "moons"),
    ("cifar_pu", ["--config.rows=SoftmaxLoss", "--config.learning_rate=2e-3"], "table1"),
    ("binary_segmentation", ["--config.examples=1", "--config.train.learning_rate=1e-3"],
     "table2"),
    ("transfer", ["--config.tables=table5", "--config.finetune.learning_rate=1e-3"], "table5"),
    ("segmentation_errors", ["--config.losses=LogisticLoss",
                             "--config.noises=boundary_noise:2", "--config.pretrain.steps=2",
                             "--config.pretrain.checkpoint_every=1"], "binary"),
    ("saturation", ["--config.moons.betas=0.5,2.0", "--config.moons.steps=20",
                    "--config.segmentation.train.learning_rate=1e-3"], "saturation_moons"),
    ("class_prior", ["--config.datasets=moons", "--config.l2=0.01"], "class_prior"),
    ("train", ["--config.corruption=unsegment_objects:0.5", "--config.corrupt_eval=True",
               "--config.select_by=lee_liu", "--config.train.learning_rate=1e-3"], "snapshots"),
])
def test_program_parses_its_config_and_runs(tmp_path, name, args, table):
  workdir = tmp_path / name
  out = _cli(name, *args, workdir=workdir).stdout
  stored = json.loads((workdir / "config.json").read_text())
  assert stored["scale"] == "smoke"
  for arg in args:  # every field set on the command line reached the config
    field, value = arg[len("--config."):].split("=")
    node = stored
    for part in field.split("."):
      node = node[part]
    if isinstance(node, list):
      assert value == ",".join(map(str, node))
    elif isinstance(node, float):
      assert node == float(value)
    else:
      assert str(node) == value
  if table.endswith(".png"):
    assert (workdir / table).exists()
  else:
    records = json.loads((workdir / "results.json").read_text())
    assert {r["table"] for r in records} >= {table}
    assert all(r["config"] == stored for r in records)
    assert "**" in out  # the tables are printed


def test_reproduce_program_writes_its_report(tmp_path):
  output = tmp_path / "R.md"
  _cli("reproduce", "--config.only=loss_curves", f"--config.output={output}",
       workdir=tmp_path / "w")
  text = output.read_text()
  assert "python -m experiments.reproduce --config=experiments/configs/reproduce.py:smoke" in text
  assert text.count("**Pending**") == len(reproduce.SECTIONS) - 1


def test_bad_field_fails_before_any_work_naming_it(tmp_path):
  result = _cli("transfer", "--config.pretrain.steps=-3", workdir=tmp_path / "w", check=False)
  assert result.returncode != 0
  assert "--config.pretrain.steps=-3: must be a positive integer" in result.stderr
  assert not (tmp_path / "w").exists()
  result = _cli("moons", "--config.nope=1", workdir=tmp_path / "w", check=False)
  assert result.returncode != 0 and "nope" in result.stderr
