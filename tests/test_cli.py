"""The command line of every experiment: `python -m experiments.<name> --config... --workdir`.

One run per program (as a user types it; smoke configs with fields set from
the command line), plus: importing an experiment defines no flag, and a bad
field fails before any work with a message naming it. The fields set leave
the compiled train steps as the smoke sections compile them (`log_every`, a
weight of rows not trained), so a fresh machine compiles them once.

`python -m experiments.transfer` (the main experiment) runs in a subprocess,
as a user runs it (so does `python -m experiments.reproduce`, whose report
records its own command line, in tests/test_reproduce_output.py). The
programs go through the same `experiments.cli.main` and run in-process here
(`_main`, `tests/programs.py`: as `python -m` from the checkout's root, the
program's flags removed afterwards), which saves each a Python start with JAX
and TensorFlow.
"""

import importlib
import json
import pathlib

from absl import flags
import pytest

from experiments import reproduce
from tests import programs
from tests import smoke

PROGRAMS = ("loss_curves", "noise_examples", "moons", "cifar_pu", "binary_segmentation",
            "transfer", "segmentation_errors", "saturation", "class_prior", "reproduce", "train",
            "transfer_variance")


def _main(name, *args, workdir, check=True):
  """`python -m experiments.<name> --config=experiments/configs/<name>.py:smoke
  --workdir=... *args` from the checkout's root, in-process (`tests/programs.py`).

  Returns (exit status, stdout, stderr)."""
  return programs.run_module(f"experiments.{name}",
                             f"--config=experiments/configs/{name}.py:smoke",
                             f"--workdir={workdir}", *args, check=check)


def test_importing_an_experiment_defines_no_flag():
  for name in PROGRAMS:
    module = importlib.import_module(f"experiments.{name}")
    assert callable(module.run)
  assert "config" not in flags.FLAGS and "workdir" not in flags.FLAGS
  defining = [m for m in flags.FLAGS.flags_by_module_dict() if "experiments" in m]
  assert not defining


def _check_config_and_outputs(workdir, out, args, table):
  stored = json.loads((workdir / "config.json").read_text())
  assert stored["scale"] == "smoke"
  for arg in args:  # every field set on the command line reached the config
    field, value = arg[len("--config."):].split("=")
    node = stored
    for part in field.split("."):
      node = node[part]
    if isinstance(node, list):
      assert value == ",".join(map(str, node)) or (value == "()" and node == [])
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


@pytest.mark.parametrize("name,args,table", [
    pytest.param("loss_curves", ["--config.points=101"], "loss_curves.png"),
    pytest.param("noise_examples", ["--config.corruptions=over_segment:1.0:2"],
                 "label_corruptions.png"),
    pytest.param("moons", ["--config.repeats=1", "--config.steps=20",
                           "--config.checkpoint_every=10",
                           "--config.weighted_negative_weight=0.4"], "moons",
                 marks=pytest.mark.heavy(3)),
    pytest.param("cifar_pu", ["--config.rows=SoftmaxLoss", "--config.non_relevant_weight=0.4"],
                 "table1", marks=pytest.mark.heavy(2)),
    pytest.param("binary_segmentation", ["--config.examples=1",
                                         "--config.train.log_every=2"], "table2",
                 marks=pytest.mark.heavy(3)),
    pytest.param("segmentation_errors", ["--config.losses=LogisticLoss",
                                         "--config.noises=boundary_noise:2",
                                         "--config.pretrain.steps=2",
                                         "--config.pretrain.checkpoint_every=1",
                                         "--config.transfer_levels=()"], "binary",
                 marks=pytest.mark.heavy(3)),
    pytest.param("saturation", ["--config.moons.betas=0.5,2.0", "--config.moons.steps=20",
                                "--config.moons.gammas=1.0",
                                "--config.moons.labelled_fractions=0.5",
                                "--config.segmentation.rates=0.7",
                                "--config.segmentation.betas=1.0",
                                "--config.segmentation.train.log_every=2"],
                 "saturation_moons", marks=pytest.mark.heavy(3)),
    pytest.param("class_prior", ["--config.datasets=moons", "--config.l2=0.01"],
                 "class_prior", marks=pytest.mark.heavy(1)),
    pytest.param("train", ["--config.corruption=unsegment_objects:0.5",
                           "--config.corrupt_eval=True", "--config.select_by=lee_liu",
                           "--config.train.log_every=2"], "snapshots",
                 marks=pytest.mark.heavy(2)),
])
def test_program_parses_its_config_and_runs(tmp_path, name, args, table):
  workdir = tmp_path / name
  _, out, _ = _main(name, *args, workdir=workdir)
  _check_config_and_outputs(workdir, out, args, table)


@pytest.mark.heavy(13)
def test_main_experiment_runs_from_the_command_line():
  """`python -m experiments.transfer` in a subprocess: the program as a user starts it."""
  run = smoke.main_experiment()  # once per test run, shared
  assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
  _check_config_and_outputs(pathlib.Path(run.workdir), run.stdout, run.args, "table5")


@pytest.mark.heavy(1)
def test_reproduce_program_writes_its_report(tmp_path):
  output = tmp_path / "R.md"
  _main("reproduce", "--config.only=loss_curves", f"--config.output={output}",
        workdir=tmp_path / "w")
  text = output.read_text()
  assert "python -m experiments.reproduce --config=experiments/configs/reproduce.py:smoke" in text
  assert text.count("**Pending**") == len(reproduce.SECTIONS) - 1


def test_bad_field_fails_before_any_work_naming_it(tmp_path):
  code, _, err = _main("transfer", "--config.pretrain.steps=-3", workdir=tmp_path / "w",
                       check=False)
  assert code != 0
  assert "--config.pretrain.steps=-3: must be a positive integer" in err
  assert not (tmp_path / "w").exists()
  code, _, err = _main("moons", "--config.nope=1", workdir=tmp_path / "w", check=False)
  assert code != 0 and "nope" in err
  assert not (tmp_path / "w").exists()


def test_in_process_programs_leave_no_flag_behind(tmp_path):
  """`_main` removes what a program defines: the next program (and
  test_importing_an_experiment_defines_no_flag) starts from the flags it found."""
  from absl import app  # pylint: disable=g-import-not-at-top
  app.define_help_flags()  # what absl's app.run defines once per process
  before = set(flags.FLAGS)
  _main("loss_curves", "--config.points=11", workdir=tmp_path / "a")
  _main("loss_curves", "--config.points=21", workdir=tmp_path / "b")
  assert set(flags.FLAGS) == before
  assert json.loads((tmp_path / "b" / "config.json").read_text())["points"] == 21
  assert not [m for m in flags.FLAGS.flags_by_module_dict() if "experiments" in m]
