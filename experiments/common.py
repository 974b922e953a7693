"""What every experiment shares: its workdir, its resolved config, its seeds, its outputs.

An experiment is `run(config, workdir) -> cells` (`experiments/<name>.py`),
with `config` an `ml_collections.ConfigDict` from
`experiments/configs/<name>.py` (wrap a plain dict in `ConfigDict(...)`:
the experiments read fields as attributes). This
module holds the parts that do not depend on which experiment runs:

- `claim_workdir`: writes the resolved config to `workdir/config.json`, and
  refuses a workdir that holds results of other settings, naming every field
  that differs (fields that only select *what* to run, such as the tables or
  folds, may differ: the runs they share are the same runs);
- `repeat_seeds`: one seed per repeat;
- `Outputs`: run folders, the measured cells, `results.json` / `results.md`
  (merged with the tables an earlier call wrote into the same workdir);
- config checks (`require`, `check_common`, ...) that name `--config.<field>`;
- `Progress`: finished runs, elapsed time and an ETA.

Process set-up (`keep_freed_memory`, `enable_compilation_cache`) is
`jaxpu.runtime`; JSON files and config differences are `jaxpu.fileio`.
"""

from __future__ import annotations

import dataclasses
import difflib
import fcntl
import os
import re
import time
from typing import Any, Iterable, Mapping, Sequence

from absl import logging

from jaxpu import fileio
from jaxpu import report
from jaxpu import runtime
CONFIG_FILE = "config.json"


def unknown_fields(config: Any, reference: Any) -> list[str]:
  """Dotted fields of `config` that `reference` (the experiment's own config) lacks."""
  known = fileio.flatten(fileio.config_dict(reference))
  prefixes = {name.rsplit(".", 1)[0] for name in known if "." in name}
  return sorted(name for name in fileio.flatten(fileio.config_dict(config))
                if name not in known and name not in prefixes)


def check_fields(config: Any, experiment: str) -> None:
  """Refuses fields that `experiments/configs/<experiment>.py` does not define (a typo such
  as `config.pionts = 11` would otherwise be ignored and stored)."""
  from experiments.configs import common as config_common  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", f"{experiment}.py")
  reference = config_common.load(path).get_config(config.get("scale"))
  unknown = unknown_fields(config, reference)
  if unknown:
    known = list(fileio.flatten(fileio.config_dict(reference)))
    hints = [f"{u} (did you mean {', '.join(difflib.get_close_matches(u, known, 2)) or '?'})"
             for u in unknown]
    raise ValueError(f"Unknown config field(s) of {experiment}: {'; '.join(hints)}. "
                     f"`--help` lists every field.")


def claim_workdir(workdir: str, config: Any, selection: Iterable[str] = (),
                  experiment: str | None = None) -> dict[str, Any]:
  """Writes `config` to `workdir/config.json`; refuses a workdir of other settings.

  Args:
    workdir: the experiment's output folder (created if missing).
    config: the resolved config.
    selection: dotted fields that only select what to run (tables, folds,
      rows, repeats, ...): they may differ from the stored config, whose
      runs are then reused where they coincide.
    experiment: the experiment's name: fields its config file does not
      define are refused first (`check_fields`).

  Returns:
    The config as a plain dict (what is stored with every result).

  Raises:
    ValueError: the workdir holds a config whose other fields differ (the
      message names each field with both values), or another process is
      running in it (the message names its pid).
  """
  if experiment is not None:
    check_fields(config, experiment)
  _make_dirs(workdir)
  _lock_workdir(workdir)
  path = os.path.join(workdir, CONFIG_FILE)
  resolved = fileio.config_dict(config)
  if os.path.exists(path):
    stored = fileio.read_json(path, what="delete it (or the workdir) to start again")
    if not isinstance(stored, dict):
      raise ValueError(f"{path} is damaged: it holds {type(stored).__name__}, not a config; "
                       "delete it (or the workdir) to start again.")
    differences = fileio.differences(stored, resolved, ignore=selection)
    if differences:
      lines = "\n".join(f"  {name}: {fileio.show_value(a)} (in the workdir) → "
                        f"{fileio.show_value(b)} (now)" for name, a, b in differences)
      raise ValueError(
          f"{workdir} holds results of another config; these fields differ:\n{lines}\n"
          f"Use another --workdir, or run with the workdir's settings (its {CONFIG_FILE}).")
  fileio.write_json(path, resolved, sort_keys=True)
  return resolved


_HELD_LOCKS: dict[str, Any] = {}  # workdir → the open lock file this process holds


def _lock_workdir(workdir: str) -> None:
  """Holds `workdir/.lock` for the rest of the process; refuses a workdir another process
  holds (two processes in one workdir would both train everything)."""
  key = os.path.realpath(workdir)
  if key in _HELD_LOCKS:
    return
  path = os.path.join(workdir, ".lock")
  f = open(path, "a+")
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    f.seek(0)
    holder = f.read().strip() or "another process"
    f.close()
    raise ValueError(f"{workdir} is in use by {holder}; wait for it to finish, or use another "
                     "--workdir.") from None
  f.seek(0)
  f.truncate()
  f.write(f"process {os.getpid()}")
  f.flush()
  _HELD_LOCKS[key] = f


def _make_dirs(path: str) -> None:
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise ValueError(f"Cannot create the workdir {path!r} ({e.strerror}); choose a writable "
                     "folder with --workdir.") from None
  if not os.access(path, os.W_OK):
    raise ValueError(f"The workdir {path!r} is not writable; choose another with --workdir.")


def repeat_seeds(config: Any) -> list[int]:
  """One seed per repeat: `config.seed`, `config.seed + 1`, ..."""
  return [int(config.seed) + r for r in range(int(config.repeats))]


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
          f"{runtime.format_duration(elapsed)} elapsed, ETA {runtime.format_duration(eta)}", flush=True)
