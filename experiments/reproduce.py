r"""Runs every experiment of the thesis and writes one REPRODUCTION.md.

Each experiment runs as its own process (`python -m experiments.<name>`) into
WORKDIR/<name>; then REPRODUCTION.md gathers, per experiment, our tables next
to the thesis' own, the figures, and for each of the thesis' claims whether
this run supports it, judged from the numbers and their spread
(`jaxpu.claims`). The exact command is written at the top of the file.

  python -m experiments.reproduce                                    # embedded data, CPU
  python -m experiments.reproduce --folds=1 --repeats=1 --output=REPRODUCTION.md
  python -m experiments.reproduce --dataset=paper --scale=paper --repeats=3 \
      --manual_dir=~/voc --data_dir=~/tensorflow_datasets           # the thesis' data, GPU
"""

import datetime
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
import time

from absl import app
from absl import flags

from jaxpu import claims
from jaxpu import experiment
from jaxpu import report

experiment.define_flags("reproduce", datasets=("synthetic", "paper"), default_dataset="synthetic")
_FOLDS = flags.DEFINE_string("folds", "1,2,3,4", "Folds of the transfer experiments.")
_RATES = flags.DEFINE_string("rates", "0.3,0.5,0.6,0.7",
                             "Unsegmented rates of binary_segmentation's sweep.")
_EXTRA = flags.DEFINE_multi_string(
    "extra", [], "NAME:FLAGS, extra flags for one experiment, e.g. "
    "'transfer:--steps=500 --finetune_steps=400' (repeatable).")
_ONLY = flags.DEFINE_list("only", [], "Run only these experiments (default: all).")
_OUTPUT = flags.DEFINE_string("output", "REPRODUCTION.md", "The report to write.")
_SKIP_EXISTING = flags.DEFINE_bool(
    "skip_existing", False, "Reuse an experiment's results.json found in WORKDIR/<name>.")
FLAGS = flags.FLAGS

# name → (paper dataset for --dataset=paper, extra flags, thesis items shown)
EXPERIMENTS = {
    "loss_curves": (None, [], "Figure 2"),
    "moons": ("moons", [], "Figures 3 and 4 (§5.1.1)"),
    "cifar_pu": ("cifar", [], "Table 1 and Figure 5 (§5.1.2)"),
    "binary_segmentation": ("voc", ["--sweep"], "Table 2 and Figure 6 (§5.2)"),
    "transfer": ("voc", ["--table=all"], "Tables 3, 4, 5 and Figure 7 (§5.3)"),
}


def command(name: str, workdir: str) -> list[str]:
  """The command line that runs experiment `name` into `workdir`."""
  paper_dataset, extra, _ = EXPERIMENTS[name]
  args = [sys.executable, "-m", f"experiments.{name}", f"--workdir={workdir}"]
  if name == "loss_curves":
    return args
  args += [f"--scale={FLAGS.scale}", f"--seed={FLAGS.seed}", f"--repeats={FLAGS.repeats}"]
  if FLAGS.dataset == "paper" and paper_dataset:
    args.append(f"--dataset={paper_dataset}")
  for flag in ("data_dir", "manual_dir"):
    if getattr(FLAGS, flag) and name in ("binary_segmentation", "transfer", "cifar_pu"):
      if flag == "manual_dir" and name == "cifar_pu":
        continue
      args.append(f"--{flag}={getattr(FLAGS, flag)}")
  if name == "transfer":
    args.append(f"--folds={_FOLDS.value}")
  if name == "binary_segmentation":
    args.append(f"--rates={_RATES.value}")
  for entry in _EXTRA.value:
    target, sep, more = entry.partition(":")
    if not sep or target not in EXPERIMENTS:
      raise app.UsageError(f"--extra={entry!r}: write NAME:FLAGS with NAME one of "
                           f"{sorted(EXPERIMENTS)}.")
    if target == name:
      extra = extra + shlex.split(more)
  return args + extra


def run_experiment(name: str, workdir: str) -> dict:
  """Runs one experiment (its log in WORKDIR/<name>.log); returns its status."""
  if importlib.util.find_spec(f"experiments.{name}") is None:
    return {"name": name, "status": "missing", "seconds": 0.0, "command": ""}
  args = command(name, workdir)
  done = os.path.exists(os.path.join(workdir, "results.json"))
  status_file = workdir.rstrip("/") + ".status.json"
  if _SKIP_EXISTING.value and (done or name == "loss_curves") and os.path.exists(status_file):
    with open(status_file) as f:
      status = json.load(f)
    if status["status"] == "ok":
      return dict(status, status="ok (reused from an earlier reproduce run)")
  start = time.time()
  with open(workdir.rstrip("/") + ".log", "w") as log:
    code = subprocess.call(args, stdout=log, stderr=subprocess.STDOUT)
  status = {"name": name, "status": "ok" if code == 0 else f"failed (exit {code})",
            "seconds": time.time() - start, "command": shlex.join(["python"] + args[1:])}
  with open(status_file, "w") as f:
    json.dump(status, f)
  return status


def _demote(markdown: str) -> str:
  """Headings one level down (an experiment's results.md inside the report)."""
  return "\n".join("#" + line if line.startswith("#") else line for line in markdown.splitlines())


def _figures(workdir: str, base: str) -> list[str]:
  if not os.path.isdir(workdir):
    return []
  return [os.path.relpath(os.path.join(workdir, f), base)
          for f in sorted(os.listdir(workdir)) if f.endswith(".png")]


def format_verdicts(verdicts) -> str:
  lines = ["| claim of the thesis | the thesis | this run | verdict |", "|---|---|---|---|"]
  for v in verdicts:
    lines.append(f"| {v.claim} | {v.paper} | {v.evidence} | **{v.status}** |")
  return "\n".join(lines) + "\n"


def section(name: str, status: dict, workdir: str, base: str, show_paper: bool) -> str:
  title = EXPERIMENTS[name][2]
  parts = [f"## {title}: `experiments.{name}`", "",
           f"Status: {status['status']}, {status['seconds']:.0f} s. "
           f"Command: `{status['command']}`", ""]
  results = os.path.join(workdir, "results.md")
  if os.path.exists(results):
    with open(results) as f:
      parts.append(_demote(f.read()))
  cells = report.load_results(workdir) if os.path.exists(
      os.path.join(workdir, "results.json")) else []
  tables = report.paper_results()["tables"]
  for table in sorted({c.table for c in cells} & set(tables)):
    if show_paper:
      parts += [f"The thesis' {table.replace('table', 'Table ')} (VOC2011 / CIFAR, FCN-AlexNet "
                "/ the thesis' CNN), for comparison:", "", report.format_paper_table(table)]
  for figure in _figures(workdir, base):
    parts += [f"![{os.path.basename(figure)}]({figure})", ""]
  return "\n".join(parts) + "\n"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  names = _ONLY.value or list(EXPERIMENTS)  # run order; the report follows the thesis
  unknown = sorted(set(names) - set(EXPERIMENTS))
  if unknown:
    raise app.UsageError(f"--only: unknown experiment(s) {unknown}; choose from "
                         f"{sorted(EXPERIMENTS)}.")
  started = time.time()
  os.makedirs(FLAGS.workdir, exist_ok=True)
  statuses, cells = {}, []
  for name in names:
    workdir = os.path.join(FLAGS.workdir, name)
    print(f"[reproduce] {name} ...", flush=True)
    statuses[name] = run_experiment(name, workdir)
    print(f"[reproduce] {name}: {statuses[name]['status']} "
          f"({statuses[name]['seconds']:.0f} s)", flush=True)
    if os.path.exists(os.path.join(workdir, "results.json")):
      cells += report.load_results(workdir)

  base = os.path.dirname(os.path.abspath(_OUTPUT.value))
  load = os.getloadavg() if hasattr(os, "getloadavg") else ()
  header = [
      "# Reproduction of J. Ju (2017), *Learn representations in the presence of "
      "segmentation label noises*", "",
      "Generated by `experiments/reproduce.py` with:", "",
      "```", shlex.join(["python", "-m", "experiments.reproduce"] + sys.argv[1:]), "```", "",
      f"Date {datetime.date.today()}, {platform.platform()}, {os.cpu_count()} CPU(s), "
      f"load average at the end {', '.join(f'{x:.1f}' for x in load)}; total wall time "
      f"{time.time() - started:.0f} s. Dataset: "
      + ("the thesis' own (VOC2011 + SBD, CIFAR-10/100, two moons)" if FLAGS.dataset == "paper"
         else "the embedded synthetic data (the thesis' numbers are on VOC2011 / CIFAR with "
              "FCN-AlexNet, so compare orderings and gaps, not values)")
      + f"; scale `{FLAGS.scale}`, {FLAGS.repeats} repeat(s), folds {_FOLDS.value}.", "",
      ("Some experiments were run by earlier `reproduce` invocations into the same workdir and "
       "reused here (`--skip_existing`); each section gives the exact command that produced "
       "its numbers.\n" if any("reused" in st["status"] for st in statuses.values()) else ""),
      "## The thesis' claims against this run", "",
      "A difference counts when the means differ by more than their combined standard "
      "deviation (over repeats × the last five snapshots; at least "
      f"{claims.MIN_EFFECT}); with one repeat the spread is that of the snapshots only.", "",
      format_verdicts(claims.judge_all(cells)),
  ]
  body = [section(name, statuses[name], os.path.join(FLAGS.workdir, name), base,
                  show_paper=True) for name in EXPERIMENTS if name in statuses]
  with open(_OUTPUT.value, "w") as f:
    f.write("\n".join(header) + "\n" + "\n".join(body))
  print(f"Wrote {_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
