"""Shared machinery of the experiment modules (`python -m experiments.<name>`).

Every experiment defines the same common flags (`define_flags`), picks a scale
preset (`preset`), derives one seed per repeat (`repeat_seeds`), and writes
its outputs through `Outputs`: `results.json` and `results.md` (see
`jaxpu.report`), PNG figures, and per-run sub-folders for checkpoints and
TensorBoard logs.

Scales: `smoke` (seconds; what the tests run), `cpu` (the default: minutes on
a 2-core CPU on the embedded dataset) and `paper` (the thesis' settings).
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import re
import time
from typing import Any, Mapping, Sequence

from absl import flags
from absl import logging

from jaxpu import report

SCALES = ("smoke", "cpu", "paper")
FLAGS = flags.FLAGS


def define_flags(name: str, datasets: Sequence[str], default_dataset: str) -> None:
  """Defines the flags every experiment shares (call once, at import).

  Args:
    name: the experiment's name; the default `--workdir` is `runs/<name>`.
    datasets: the dataset names this experiment accepts.
    default_dataset: the `--dataset` default (the embedded data).
  """
  flags.DEFINE_enum("dataset", default_dataset, list(datasets),
                    "Dataset: the embedded synthetic data by default, or the paper's by name.")
  flags.DEFINE_integer("seed", 0, "Base seed: repeat r uses seed + r for data noise and init.")
  flags.DEFINE_integer("repeats", 1, "Independent repeats (the thesis uses 3).", lower_bound=1)
  flags.DEFINE_string("workdir", os.path.join("runs", name),
                      "Output folder: results.json/.md, figures, checkpoints, TensorBoard logs.")
  flags.DEFINE_enum("scale", "cpu", list(SCALES),
                    "Preset: smoke (seconds, for tests), cpu (minutes on 2 CPU cores), "
                    "paper (the thesis' settings; needs a GPU).")
  flags.DEFINE_string("data_dir", None,
                      "TFDS data dir (default: $JAXPU_DATA_DIR or ~/tensorflow_datasets).")
  flags.DEFINE_string("manual_dir", None,
                      "Folder with the user's downloaded archives (VOC2011, SBD) for --dataset=voc.")
  flags.DEFINE_integer("steps", None, "Override the preset's number of training steps.")
  flags.DEFINE_integer("batch_size", None, "Override the preset's global batch size.")


def preset(presets: Mapping[str, Mapping[str, Any]], **overrides: Any) -> dict[str, Any]:
  """The configuration of `--scale`, with `--steps`/`--batch_size` applied.

  `overrides` maps a flag name to the config key it overrides, e.g.
  `preset(P, steps="pretrain_steps")`; by default `--steps` overrides
  `steps` and `--batch_size` overrides `batch_size`.
  """
  scale = FLAGS.scale
  if scale not in presets:
    raise ValueError(f"--scale={scale} is not defined for this experiment; "
                     f"choose one of {sorted(presets)}.")
  config = dict(presets[scale])
  mapping = {"steps": "steps", "batch_size": "batch_size", **overrides}
  for flag_name, key in mapping.items():
    value = getattr(FLAGS, flag_name, None)
    if value is not None:
      if key not in config:
        raise ValueError(f"--{flag_name} has no effect on this experiment (no '{key}' setting).")
      config[key] = value
  return config


def enable_compilation_cache(path: str | None = None) -> str:
  """Keeps XLA compilations on disk, shared by runs and processes; returns the folder.

  Runs of one experiment compile the same steps again and again (every
  fine-tuning of a table has the same shapes); on a loaded 2-core CPU one
  compilation takes 10-45 s, a cache hit about 1 s. Folder: `path`, else
  `$JAXPU_COMPILATION_CACHE`, else `~/.cache/jaxpu/xla`.
  """
  import jax  # pylint: disable=g-import-not-at-top
  path = path or os.environ.get("JAXPU_COMPILATION_CACHE") or os.path.expanduser(
      os.path.join("~", ".cache", "jaxpu", "xla"))
  os.makedirs(path, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return path


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8


def keep_freed_memory() -> bool:
  """Makes glibc's malloc keep freed memory for reuse; True if it took effect.

  XLA's CPU runtime allocates the large buffers of every step anew (its
  temporaries, a segmentation batch's gradient). glibc serves blocks over its
  mmap threshold (at most 32 MiB) with a fresh `mmap` and unmaps them on
  free, so every page of them faults again on every step: about 0.65 ns per
  byte here, +20 % on the `fcn_small` train step and 2.5× on the 21-class
  losses (benchmarks/README.md). This turns `mmap` off for allocations, keeps
  freed memory up to 2 GiB at the heap top, and uses one arena for all
  threads (`GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.
  trim_threshold=...:glibc.malloc.arena_max=1` before start-up does the
  same). The process then keeps its peak memory. Call it first thing in
  `main`, before JAX starts its threads. No effect (False) without glibc.
  """
  try:
    mallopt = ctypes.CDLL(None).mallopt
  except (OSError, AttributeError):
    return False
  settings = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_ARENA_MAX, 1))
  return all(mallopt(param, value) == 1 for param, value in settings)


def repeat_seeds() -> list[int]:
  """One seed per repeat: `--seed`, `--seed + 1`, ..."""
  return [FLAGS.seed + r for r in range(FLAGS.repeats)]


def flag_values() -> dict[str, Any]:
  """The values of this program's own flags (stored with every result)."""
  keys = ("dataset", "seed", "repeats", "workdir", "scale", "steps", "batch_size")
  values = {k: getattr(FLAGS, k) for k in keys if k in FLAGS}
  for module_flags in FLAGS.flags_by_module_dict().values():
    for f in module_flags:
      if f.name not in values and not _is_framework_flag(f.name):
        values[f.name] = f.value
  return values


def _is_framework_flag(name: str) -> bool:
  return bool(re.match(r"^(help|helpfull|helpshort|helpxml|flagfile|undefok|"
                       r"v|verbosity|log|logtostderr|alsologtostderr|stderrthreshold|"
                       r"showprefixforinfo|run_with|pdb|only_check_args|use_cprofile|"
                       r"profile_file|jax_|xla_|test_|chex_|absl_|tt_|op_conversion)", name))


def slug(*parts: Any) -> str:
  """A file-system-safe name for a run, e.g. slug("HalfUnsegmented", 0) == "halfunsegmented-0"."""
  text = "-".join(str(p) for p in parts)
  return re.sub(r"[^a-z0-9_.-]+", "_", text.lower()).strip("_")


@dataclasses.dataclass
class Outputs:
  """Where an experiment writes, and the cells it has measured so far."""
  workdir: str
  cells: list[report.Cell] = dataclasses.field(default_factory=list)
  started: float = dataclasses.field(default_factory=time.time)

  def __post_init__(self):
    os.makedirs(self.workdir, exist_ok=True)

  def run_dir(self, *parts: Any) -> str:
    """A sub-folder for one training run (checkpoints, TensorBoard, metrics.jsonl)."""
    path = os.path.join(self.workdir, "runs", slug(*parts))
    os.makedirs(path, exist_ok=True)
    return path

  def path(self, filename: str) -> str:
    return os.path.join(self.workdir, filename)

  def add(self, table: str, row: Sequence[str], column: str, values) -> report.Cell:
    """Records one measured number (all its repeats/snapshots)."""
    cell = report.Cell(table, tuple(row), column, values)
    self.cells.append(cell)
    return cell

  def write(self, specs: Sequence[report.TableSpec], compare_with_paper: bool,
            preamble: str = "", epilogue: str = "") -> str:
    """Writes results.json/results.md and returns the Markdown."""
    elapsed = time.time() - self.started
    epilogue = (epilogue + "\n" if epilogue else "") + f"_Wall time: {elapsed:.0f} s._\n"
    markdown = report.write_results(self.workdir, specs, self.cells, flag_values(),
                                    compare_with_paper=compare_with_paper,
                                    preamble=preamble, epilogue=epilogue)
    logging.info("Wrote %s and %s", self.path("results.json"), self.path("results.md"))
    return markdown
