"""Smoke-scale results built once per test run, shared by the tests and the xdist workers.

Several tests check the same smoke-scale experiment: the reproduce test
judges every section of `experiments.reproduce`'s default smoke config, and
each experiment's own tests check its tables, folders and figures. Training
those runs once per test run, not once per test (or per worker), is what
keeps the suite short.

`once(key, build)` builds the folder `$JAXPU_TESTS_SHARED/<key>` the first
time any test of the run asks for it (in any xdist worker, under a file
lock: the others wait for it) and returns it afterwards. `section(name)` is
one section of `experiments.reproduce` at the smoke scale, run by
`reproduce.run` with `--config.only=<name>`: its folder, what it printed, the
cells the experiment's `run` returned, and its sub-config.

`data_layer_process()` is another shared build: what a fresh Python process
does with the data layer (the modules it loads, a corruption's result), one
TensorFlow import for the two tests that need a fresh interpreter.

A shared folder is read-only for the tests: the process that built it keeps
the experiment's workdir lock (`experiments.common.claim_workdir`) until it
exits, so a test that runs an experiment again in it works on a copy
(`copy_workdir`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib
import io
import json
import os
import shutil
import subprocess
import sys
import traceback
from typing import Any, Callable

from jaxpu import report


def root() -> str:
  """The run's shared folder (tests/conftest.py sets it; removed when the run ends)."""
  return os.environ["JAXPU_TESTS_SHARED"]


def _done(path: str) -> bool:
  """Whether `path` is built; raises if its build failed earlier in this test run."""
  if os.path.exists(path + ".failed"):
    with open(path + ".failed") as f:
      raise RuntimeError(f"Building {path} failed earlier in this test run:\n{f.read()}")
  return os.path.exists(path + ".done")


def _build(path: str, build: Callable[[str], None]) -> None:
  shutil.rmtree(path, ignore_errors=True)
  try:
    build(path)
  except BaseException:
    with open(path + ".failed", "w") as f:
      f.write(traceback.format_exc())
    raise
  with open(path + ".done", "w"):
    pass


def once(key: str, build: Callable[[str], None]) -> str:
  """`root()/key`, built by `build(path)` by the first caller of the run (any worker).

  A build that raises fails the test that ran it; the other callers fail at
  once with its traceback (`_done`) instead of building again.
  """
  return once_all({key: build})[key]


def once_all(builds: dict[str, Callable[[str], None]]) -> dict[str, str]:
  """`once` for several keys: first builds those no other worker is building, then
  waits for the rest (holding no lock while it waits, so two callers never deadlock)."""
  os.makedirs(root(), exist_ok=True)
  paths = {key: os.path.join(root(), key) for key in builds}
  for blocking in (False, True):
    for key, path in paths.items():
      if _done(path):
        continue
      with open(path + ".lock", "a") as lock:
        try:
          fcntl.flock(lock, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
          continue  # another worker builds it: come back to it
        try:
          if not _done(path):
            _build(path, builds[key])
        finally:
          fcntl.flock(lock, fcntl.LOCK_UN)
  return paths


def copy_workdir(source: str, target: str) -> str:
  """A private copy of a shared workdir (without its lock file), to run an experiment in."""
  shutil.copytree(source, target, symlinks=True, ignore=shutil.ignore_patterns(".lock"))
  return target


# ----------------------------------------------------------------------------
# The sections of experiments.reproduce at the smoke scale.
# ----------------------------------------------------------------------------


def reproduce_config():
  """`experiments/configs/reproduce.py:smoke`, the config the sections are run with."""
  from experiments.configs import reproduce as reproduce_config  # pylint: disable=g-import-not-at-top
  return reproduce_config.get_config("smoke")


@dataclasses.dataclass
class Section:
  """One finished section of `experiments.reproduce` (smoke scale, default config)."""
  name: str
  root: str  # the reproduce workdir: <name>/, <name>.status.json, REPRODUCTION.md
  stdout: str  # what the run printed
  returned: list[report.Cell]  # what the experiment's `run` returned
  config: Any  # the section's sub-config

  @property
  def workdir(self) -> str:
    """The experiment's own workdir (results.json, results.md, figures, runs/)."""
    return os.path.join(self.root, self.name)

  @property
  def status_path(self) -> str:
    return os.path.join(self.root, f"{self.name}.status.json")

  def records(self) -> list[dict]:
    with open(os.path.join(self.workdir, "results.json")) as f:
      return json.load(f)

  def markdown(self) -> str:
    with open(os.path.join(self.workdir, "results.md")) as f:
      return f.read()


def _section_builder(name: str) -> Callable[[str], None]:
  def build(path: str) -> None:
    from experiments import reproduce  # pylint: disable=g-import-not-at-top
    config = reproduce_config()
    config.only = (name,)
    module = importlib.import_module(f"experiments.{name}")
    original, returned = module.run, []

    def spy(sub_config, workdir):  # records what the experiment's run returns
      cells = original(sub_config, workdir)
      returned.extend(cells)
      return cells

    printed = io.StringIO()
    module.run = spy
    try:
      with contextlib.redirect_stdout(printed):
        reproduce.run(config, path)
    finally:
      module.run = original
    with open(os.path.join(path, "stdout.txt"), "w") as f:
      f.write(printed.getvalue())
    with open(os.path.join(path, "returned.json"), "w") as f:
      json.dump([[c.table, list(c.row), c.column, c.values] for c in returned], f)
  return build


def _load_section(name: str, path: str) -> Section:
  with open(os.path.join(path, "stdout.txt")) as f:
    stdout = f.read()
  with open(os.path.join(path, "returned.json")) as f:
    returned = [report.Cell(*c) for c in json.load(f)]
  return Section(name, path, stdout, returned, reproduce_config()[name])


def sections(names) -> dict[str, Section]:
  """The sections `names` of the smoke reproduce run, each built once per test run."""
  paths = once_all({f"reproduce-{name}": _section_builder(name) for name in names})
  return {name: _load_section(name, paths[f"reproduce-{name}"]) for name in names}


def section(name: str) -> Section:
  """One section of the smoke reproduce run (`sections`)."""
  return sections([name])[name]


# ----------------------------------------------------------------------------
# The main experiment from the command line.
# ----------------------------------------------------------------------------

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass
class CommandLineRun:
  """`python -m experiments.transfer ...` run in a subprocess from the checkout's root."""
  args: tuple[str, ...]  # the --config.<field>=<value> arguments
  workdir: str
  returncode: int
  stdout: str
  stderr: str


def main_experiment() -> CommandLineRun:
  """`python -m experiments.transfer --config=experiments/configs/transfer.py:smoke
  --config.tables=table5 --config.finetune.log_every=2 --workdir=...`, run once
  per test run (tests/test_cli.py checks it; its runs are reused by
  tests/test_experiments_segmentation.py). The subprocess has exited: its workdir's
  lock is free."""
  args = ("--config.tables=table5", "--config.finetune.log_every=2")

  def build(path):
    os.makedirs(path)
    result = subprocess.run(
        [sys.executable, "-m", "experiments.transfer",
         "--config=experiments/configs/transfer.py:smoke",
         f"--workdir={os.path.join(path, 'transfer')}", *args],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    with open(os.path.join(path, "result.json"), "w") as f:
      json.dump({"returncode": result.returncode, "stdout": result.stdout,
                 "stderr": result.stderr}, f)

  path = once("main-experiment", build)
  with open(os.path.join(path, "result.json")) as f:
    result = json.load(f)
  return CommandLineRun(args, os.path.join(path, "transfer"), **result)


# ----------------------------------------------------------------------------
# The data layer in a fresh interpreter.
# ----------------------------------------------------------------------------

# The corruption the fresh interpreter applies (tests/test_noise.py compares it with its own).
MISLABEL_RATE, MISLABEL_SEED = 0.5, 5

_DATA_LAYER = f"""
import json, sys
sys.path.insert(0, {REPO!r})
import jaxpu.data.pipeline
data = jaxpu.data.pipeline.make_classification_data("moons", batch_size=8)
next(data.train_iter()), next(data.eval_iter())
loaded = sorted(sys.modules)
from jaxpu.data import noise
from tests import test_noise
out = test_noise._run(lambda ex: noise.mislabel_objects(ex, {MISLABEL_RATE}, seed={MISLABEL_SEED}))
mislabelled = {{str(i): v["objects"].tolist() for i, v in out.items()}}
print(json.dumps({{"loaded": loaded, "mislabelled": mislabelled}}))
"""


def data_layer_process() -> dict[str, Any]:
  """What a fresh Python process does with the data layer, run once per test run.

  One interpreter (one TensorFlow import) serves two checks: `loaded`, the
  modules loaded by importing `jaxpu.data.pipeline` and delivering a batch of
  each split (tests/test_imports.py); `mislabelled`, `{id: objects}` after
  `noise.mislabel_objects(MISLABEL_RATE, seed=MISLABEL_SEED)` on test_noise's
  examples, done after that list was taken (tests/test_noise.py).
  """
  def build(path):
    os.makedirs(path)
    result = subprocess.run([sys.executable, "-c", _DATA_LAYER], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    if result.returncode:
      raise RuntimeError(f"The fresh data-layer process failed:\n{result.stderr[-3000:]}")
    with open(os.path.join(path, "result.json"), "w") as f:
      f.write(result.stdout.strip().splitlines()[-1])

  with open(os.path.join(once("data-layer-process", build), "result.json")) as f:
    return json.load(f)
