"""What every experiment shares: its workdir, its resolved config, its seeds, its outputs.

An experiment is `run(config, workdir) -> cells` (`experiments/<name>.py`),
with `config` an `ml_collections.ConfigDict` from
`experiments/configs/<name>.py` (or any mapping with the same fields). This
module holds the parts that do not depend on which experiment runs:

- `claim_workdir`: writes the resolved config to `workdir/config.json`, and
  refuses a workdir that holds results of other settings, naming every field
  that differs (fields that only select *what* to run, such as the tables or
  folds, may differ: the runs they share are the same runs);
- `repeat_seeds`: one seed per repeat;
- `Outputs`: run folders, the measured cells, `results.json` / `results.md`
  (merged with the tables an earlier call wrote into the same workdir);
- process set-up for programs: `keep_freed_memory`, `enable_compilation_cache`.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import re
import time
from typing import Any, Iterable, Mapping, Sequence

from absl import logging

from jaxpu import report

SCALES = ("smoke", "cpu", "paper")
CONFIG_FILE = "config.json"


def config_dict(config: Any) -> dict[str, Any]:
  """A JSON-ready plain dict of a ConfigDict (or mapping); tuples become lists."""
  if hasattr(config, "to_dict"):
    config = config.to_dict()
  return json.loads(json.dumps(config, default=_jsonable))


def _jsonable(value):
  if isinstance(value, (set, frozenset)):
    return sorted(value)
  if hasattr(value, "tolist"):
    return value.tolist()
  return str(value)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """{"a": {"b": 1}} → {"a.b": 1} (the dotted names of `--config.a.b`)."""
  out = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping):
      out.update(flatten(value, name + "."))
    else:
      out[name] = value
  return out


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any],
                       ignore: Iterable[str] = ()) -> list[tuple[str, Any, Any]]:
  """(dotted field, old value, new value) of every differing field not under `ignore`."""
  old_flat, new_flat = flatten(config_dict(old)), flatten(config_dict(new))
  ignored = tuple(ignore)

  def skipped(name):
    return any(name == i or name.startswith(i + ".") for i in ignored)

  missing = object()
  return [(name, old_flat.get(name, missing), new_flat.get(name, missing))
          for name in sorted(set(old_flat) | set(new_flat))
          if not skipped(name) and old_flat.get(name, missing) != new_flat.get(name, missing)]


def claim_workdir(workdir: str, config: Any, selection: Iterable[str] = ()) -> dict[str, Any]:
  """Writes `config` to `workdir/config.json`; refuses a workdir of other settings.

  Args:
    workdir: the experiment's output folder (created if missing).
    config: the resolved config.
    selection: dotted fields that only select what to run (tables, folds,
      rows, repeats, ...): they may differ from the stored config, whose
      runs are then reused where they coincide.

  Returns:
    The config as a plain dict (what is stored with every result).

  Raises:
    ValueError: the workdir holds a config whose other fields differ; the
      message names each field with both values.
  """
  _make_dirs(workdir)
  path = os.path.join(workdir, CONFIG_FILE)
  resolved = config_dict(config)
  if os.path.exists(path):
    with open(path) as f:
      try:
        stored = json.load(f)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); delete it (or the workdir) "
                         "to start again.") from None
    differences = config_differences(stored, resolved, ignore=selection)
    if differences:
      lines = "\n".join(f"  {name}: {show_value(a)} (in the workdir) → {show_value(b)} (now)"
                        for name, a, b in differences)
      raise ValueError(
          f"{workdir} holds results of another config; these fields differ:\n{lines}\n"
          f"Use another --workdir, or run with the workdir's settings (its {CONFIG_FILE}).")
  _atomic_write_json(path, resolved)
  return resolved


def show_value(value) -> str:
  """A value of `config_differences` as JSON ("(absent)" for a field one side lacks)."""
  return "(absent)" if not isinstance(value, (str, int, float, bool, list, dict, type(None))) \
      else json.dumps(value)


def _make_dirs(path: str) -> None:
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise ValueError(f"Cannot create the workdir {path!r} ({e.strerror}); choose a writable "
                     "folder with --workdir.") from None
  if not os.access(path, os.W_OK):
    raise ValueError(f"The workdir {path!r} is not writable; choose another with --workdir.")


def _atomic_write_json(path: str, value: Any) -> None:
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=1, sort_keys=True)
  os.replace(tmp, path)


def repeat_seeds(config: Any) -> list[int]:
  """One seed per repeat: `config.seed`, `config.seed + 1`, ..."""
  return [int(config.seed) + r for r in range(int(config.repeats))]


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


def slug(*parts: Any) -> str:
  """A file-system-safe name for a run, e.g. slug("HalfUnsegmented", 0) == "halfunsegmented-0"."""
  text = "-".join(str(p) for p in parts)
  return re.sub(r"[^a-z0-9_.-]+", "_", text.lower()).strip("_")


@dataclasses.dataclass
class Outputs:
  """Where an experiment writes, and the cells it has measured so far.

  Attributes:
    workdir: the output folder.
    config: the resolved config (a plain dict), stored with every record.
    cells: the cells measured by this call.
  """
  workdir: str
  config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  cells: list[report.Cell] = dataclasses.field(default_factory=list)
  started: float = dataclasses.field(default_factory=time.time)

  def __post_init__(self):
    _make_dirs(self.workdir)

  def run_dir(self, *parts: Any) -> str:
    """A sub-folder for one training run (checkpoints, TensorBoard, metrics.jsonl)."""
    path = os.path.join(self.workdir, "runs", slug(*parts))
    os.makedirs(path, exist_ok=True)
    return path

  def path(self, filename: str) -> str:
    return os.path.join(self.workdir, filename)

  def add(self, table: str, row: Sequence[str], column: str, values) -> report.Cell:
    """Records one measured number (one value per repeat, or per repeat × snapshot)."""
    cell = report.Cell(table, tuple(row), column, values)
    self.cells.append(cell)
    return cell

  def write(self, specs: Sequence[report.TableSpec], reference: Sequence[report.Cell] | None = None,
            preamble: str = "", epilogue: str = "") -> str:
    """Writes results.json / results.md and returns the Markdown.

    `reference`: published numbers shown beside ours. Tables that an earlier
    call wrote into this workdir and this call did not measure are kept (one
    results file holds every table run there).
    """
    elapsed = time.time() - self.started
    epilogue = (epilogue + "\n" if epilogue else "") + f"_Wall time: {elapsed:.0f} s._\n"
    measured = {c.table for c in self.cells}
    kept = [c for c in report.load_results_if_any(self.workdir) if c.table not in measured]
    kept_specs = [spec for spec in report.load_specs(self.workdir)
                  if spec.table not in measured] if kept else []
    markdown = report.write_results(
        self.workdir, list(specs), self.cells + kept, self.config,
        reference=reference, preamble=preamble, epilogue=epilogue,
        previous_specs=kept_specs)
    logging.info("Wrote %s and %s", self.path("results.json"), self.path("results.md"))
    return markdown


# ----------------------------------------------------------------------------
# Validating a config before any data is built or any step is trained.
# ----------------------------------------------------------------------------

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")
LOSS_REDUCTIONS = ("mean", "sum_per_example")


def require(condition: bool, field: str, value: Any, requirement: str) -> None:
  """Raises a ValueError naming `--config.<field>`, its value and what it must be."""
  if not condition:
    raise ValueError(f"--config.{field}={value!r}: {requirement}.")


def names(value: Any) -> tuple[str, ...]:
  """A tuple-of-names field, given as ("a", "b") or as "a,b" on the command line."""
  if isinstance(value, str):
    value = (value,)
  return tuple(part.strip() for item in value for part in str(item).split(",") if part.strip())


def numbers(value: Any) -> tuple:
  """A tuple-of-numbers field, also when the command line gave a single number."""
  return (value,) if isinstance(value, (int, float)) else tuple(value)


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def require_positive_int(config: Any, field: str) -> int:
  value = _get(config, field)
  require(_is_int(value) and value >= 1, field, value, "must be a positive integer")
  return value


def require_fraction(config: Any, field: str, allow_none: bool = False) -> Any:
  """A number in (0, 1) (or None if allowed)."""
  value = _get(config, field)
  if value is None and allow_none:
    return None
  require(isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1,
          field, value, "must be a number in (0, 1)")
  return value


def _get(config: Any, field: str) -> Any:
  for part in field.split("."):
    config = config[part]
  return config


def check_common(config: Any) -> None:
  """seed, repeats."""
  require(_is_int(config.seed) and config.seed >= 0, "seed", config.seed,
          "must be an integer >= 0")
  require_positive_int(config, "repeats")


def check_training(config: Any, section: str) -> None:
  """A training section (optimizer, learning_rate, schedule, ..., keep), e.g. "pretrain"."""
  import jax  # pylint: disable=g-import-not-at-top
  s = _get(config, section)
  steps = require_positive_int(config, f"{section}.steps")
  batch = require_positive_int(config, f"{section}.batch_size")
  devices = jax.device_count()
  require(batch % devices == 0, f"{section}.batch_size", batch,
          f"must be a multiple of the {devices} devices")
  every = require_positive_int(config, f"{section}.checkpoint_every")
  require(every <= steps, f"{section}.checkpoint_every", every,
          f"must be at most {section}.steps ({steps})")
  require_positive_int(config, f"{section}.keep")
  require(s.optimizer in OPTIMIZERS, f"{section}.optimizer", s.optimizer,
          f"choose one of {OPTIMIZERS}")
  require(s.schedule in SCHEDULES, f"{section}.schedule", s.schedule,
          f"choose one of {SCHEDULES}")
  lr = s.learning_rate
  require(isinstance(lr, (int, float)) and lr > 0 and lr == lr and lr != float("inf"),
          f"{section}.learning_rate", lr, "must be a finite number > 0")
  require(isinstance(s.weight_decay, (int, float)) and 0 <= s.weight_decay < float("inf"),
          f"{section}.weight_decay", s.weight_decay, "must be a finite number >= 0")
  require(isinstance(s.momentum, (int, float)) and 0 <= s.momentum < 1,
          f"{section}.momentum", s.momentum, "must be in [0, 1)")
  warmup = s.warmup_steps
  require(_is_int(warmup) and 0 <= warmup < steps, f"{section}.warmup_steps", warmup,
          f"must be an integer in [0, {section}.steps={steps})")
  bias = s.get("bias_lr_mult", 1.0)
  require(isinstance(bias, (int, float)) and bias > 0, f"{section}.bias_lr_mult", bias,
          "must be a number > 0")
  require(s.get("loss_reduction", "mean") in LOSS_REDUCTIONS, f"{section}.loss_reduction",
          s.get("loss_reduction"), f"choose one of {LOSS_REDUCTIONS}")


class Progress:
  """Counts finished training runs and prints the elapsed time and an ETA.

  The ETA weighs each run by its work (e.g. its steps): `total` is the work
  of all planned runs, each call adds the work of the run that finished.
  """

  def __init__(self, name: str, total: float, runs: int):
    self.name, self.total, self.runs = name, total, runs
    self.done, self.finished = 0.0, 0
    self.started = time.time()

  def __call__(self, label: str, work: float = 1.0) -> None:
    self.done += work
    self.finished += 1
    elapsed = time.time() - self.started
    eta = elapsed / max(self.done, 1e-9) * max(self.total - self.done, 0.0)
    print(f"[{self.name}] {self.finished}/{self.runs} runs done ({label}); "
          f"{_clock(elapsed)} elapsed, ETA {_clock(eta)}", flush=True)


def _clock(seconds: float) -> str:
  seconds = int(round(seconds))
  return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
