"""Where `python -m experiments.reproduce` writes its report: the workdir, unless told otherwise.

Run from a checkout, a reproduce run used to replace the repository's
committed `REPRODUCTION.md` (and its `reproduction/*.png`), because the
report's path was relative to the current folder. The run here (the
loss_curves section at the smoke scale: a figure, seconds) starts in a folder
holding a stand-in for the committed report and figure: first in a subprocess, as
a user starts it, then in-process.
"""

import os
import re
import subprocess
import sys

import pytest

from tests import programs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMITTED = "# The committed report\n"
FIGURE = b"the committed figure"


def _reproduce(cwd, workdir, *args):
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join([REPO] + [p for p in [env.get("PYTHONPATH")] if p])
  result = subprocess.run(
      [sys.executable, "-m", "experiments.reproduce",
       f"--config={REPO}/experiments/configs/reproduce.py:smoke", "--config.only=loss_curves",
       f"--workdir={workdir}", *args],
      cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
  return result.stdout


def _figures(report):
  """The figures a report links to, as paths relative to the report's folder."""
  return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)


@pytest.mark.heavy(3)
def test_report_goes_to_the_workdir_and_the_committed_one_is_written_only_when_asked(tmp_path):
  checkout = tmp_path / "checkout"
  (checkout / "reproduction").mkdir(parents=True)
  (checkout / "REPRODUCTION.md").write_text(COMMITTED)
  for name in ("loss_curves_loss_curves.png", "moons_fig3_moons_loss.png"):
    (checkout / "reproduction" / name).write_bytes(FIGURE)
  before = sorted(os.listdir(checkout / "reproduction"))
  workdir = tmp_path / "w"

  out = _reproduce(checkout, workdir)
  # the committed report and its figures are untouched, and nothing else was written there
  assert (checkout / "REPRODUCTION.md").read_text() == COMMITTED
  assert sorted(os.listdir(checkout)) == ["REPRODUCTION.md", "reproduction"]
  assert sorted(os.listdir(checkout / "reproduction")) == before
  assert all((checkout / "reproduction" / n).read_bytes() == FIGURE for n in before)
  # the report and its figures are in the workdir
  report = workdir / "REPRODUCTION.md"
  assert f"Wrote {report}" in out
  text = report.read_text()
  assert "`experiments.loss_curves`" in text and text.count("**Pending**") == 7
  figures = _figures(text)
  assert figures and all(f.startswith("reproduction/loss_curves_") for f in figures)
  assert all((workdir / f).is_file() for f in figures)

  # writing the repository's copy is an explicit act (the finished section is reused; this
  # run in-process, tests/programs.py)
  _, out, _ = programs.run_module(
      "experiments.reproduce", f"--config={REPO}/experiments/configs/reproduce.py:smoke",
      "--config.only=loss_curves", f"--workdir={workdir}", "--config.output=REPRODUCTION.md",
      cwd=str(checkout))
  assert "finished earlier" in out
  text = (checkout / "REPRODUCTION.md").read_text()
  assert text != COMMITTED and "`experiments.loss_curves`" in text
  assert "--config.output=REPRODUCTION.md" in text  # the command that wrote it
  assert all((checkout / f).is_file() and (checkout / f).read_bytes() != FIGURE
             for f in _figures(text))


def test_zero_repeats_are_blamed_on_the_shared_field():
  from experiments import reproduce  # pylint: disable=g-import-not-at-top
  from experiments.configs import reproduce as reproduce_config  # pylint: disable=g-import-not-at-top
  config = reproduce_config.get_config("smoke")
  config.repeats = 0
  with pytest.raises(ValueError, match=r"^--config\.repeats=0: must be a positive integer"):
    reproduce.validate(config)
