"""The command line of every experiment: `--config` (ml_collections) and `--workdir`.

Each `experiments/<name>.py` ends with

  if __name__ == "__main__":
    cli.main("<name>", run)

so flags exist only when the module runs as a program: importing it defines
nothing, and tests, notebooks and sweeps call `run(config, workdir)` directly.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

from absl import app
from absl import flags
from ml_collections import config_flags

from experiments.configs import common as config_common
from jaxpu import fileio
from jaxpu import runtime

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def config_path(name: str) -> str:
  """The config file of experiment `name`."""
  return os.path.join(CONFIG_DIR, f"{name}.py")


def config_help(name: str) -> str:
  """Every field of the experiment's cpu config with its value (shown by --help)."""
  module = config_common.load(config_path(name))
  fields = fileio.flatten(fileio.config_dict(module.get_config("cpu")))
  return "\n".join(f"  --config.{k}={v}" for k, v in fields.items())


def main(name: str, run: Callable[[Any, str], Any], argv=None) -> None:
  """Defines `--config` and `--workdir`, parses the command line and calls `run`."""
  program = sys.argv[0]  # --help lists the flags of the program's own module
  config_flags.DEFINE_config_file(
      "config", config_path(name),
      f"Config file and scale, e.g. experiments/configs/{name}.py:paper (scales: smoke, cpu "
      f"— the default —, paper); override any field with --config.<field>=<value>. The "
      f"fields, with their cpu values:\n{config_help(name)}")
  flags.DEFINE_string("workdir", os.path.join("runs", name),
                      "Output folder: config.json, results.json/.md, figures, run folders.")
  for flag in ("config", "workdir"):
    flags.FLAGS.register_flag_by_module(program, flags.FLAGS[flag])

  def _main(args):
    if len(args) > 1:
      raise app.UsageError(f"Unexpected arguments: {' '.join(args[1:])}")
    runtime.keep_freed_memory()
    runtime.enable_compilation_cache()
    run(flags.FLAGS.config, flags.FLAGS.workdir)

  app.run(_main, argv=argv)
