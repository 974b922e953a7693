r"""Runs every experiment of the thesis in-process and writes one REPRODUCTION.md.

Each experiment's `run` is called with its sub-config (`config.<name>`) into
WORKDIR/<name>; a finished experiment writes WORKDIR/<name>.status.json (its
config, wall time, date, machine). The report, WORKDIR/REPRODUCTION.md
(figures in WORKDIR/reproduction/), is assembled from the finished sections:
per experiment our tables next to the thesis' own, the figures (copied next
to the report), and for each of the thesis' claims a verdict judged from the
numbers (`jaxpu.thesis.claims`); unfinished sections are marked pending,
never judged. Run the same command again to resume: a finished section with
the same config is reused, an interrupted one resumes its training runs.

  python -m experiments.reproduce                                    # embedded data, CPU
  python -m experiments.reproduce --config.only=moons,cifar_pu
  python -m experiments.reproduce --config=experiments/configs/reproduce.py:paper \
      --config.transfer.data.manual_dir=~/voc                        # the thesis' data, GPU

The repository's own `REPRODUCTION.md` (and its `reproduction/*.png`) is
written only when asked, from the checkout's root:

  python -m experiments.reproduce --workdir=runs/reproduce --config.output=REPRODUCTION.md

(`--config.output` is relative to the current folder; the figures go to
`--config.figures_dir`, default `reproduction`, beside it.) Settings:
`experiments/configs/reproduce.py`.
"""

from __future__ import annotations

import datetime
import importlib
import os
import platform
import shlex
import shutil
import sys
import time

from experiments import common
from jaxpu import fileio
from jaxpu import report
from jaxpu.thesis import claims
from jaxpu.thesis import paper

# name → what of the thesis it reproduces, in the thesis' order.
SECTIONS = {
    "loss_curves": "Figure 2",
    "moons": "Figures 3 and 4 (§5.1.1)",
    "cifar_pu": "Table 1 and Figure 5 (§5.1.2)",
    "binary_segmentation": "Table 2, Figure 6 and the unsegmented-rate sweep (§5.2)",
    "transfer": "Tables 3, 4, 5 and Figure 7 (§5.3)",
    "segmentation_errors": "Beyond the thesis: segmentation errors (§6, open question 1)",
    "saturation": "Beyond the thesis: where the sigmoid loss saturates (§6, open question 2)",
    "class_prior": "Beyond the thesis: estimating the class prior (§6, open question 3)",
}
PAPER_DATASETS = ("voc", "cifar")


def _module(name: str):
  return importlib.import_module(f"experiments.{name}")


def selected(config) -> list[str]:
  """The experiments to run, in the thesis' order."""
  only = common.names(config.only)
  unknown = sorted(set(only) - set(SECTIONS))
  common.require(not unknown, "only", config.only,
                     f"unknown experiment(s) {unknown}; choose from {list(SECTIONS)}")
  return [name for name in SECTIONS if not only or name in only]


def validate(config) -> list[str]:
  """Checks every experiment's config before any of them runs; returns the selection."""
  names = selected(config)
  common.check_common(config)  # the shared seed and repeats, named as such
  for name in names:
    module = _module(name)
    if hasattr(module, "validate"):
      try:
        module.validate(config[name])
      except ValueError as e:
        raise ValueError(str(e).replace("--config.", f"--config.{name}.", 1)) from None
  return names


def machine() -> str:
  """CPU model, cores and the load average now."""
  model = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
  return f"{model}, {os.cpu_count()} cores, load average {load}"


def command() -> str:
  """The command line of this process, if it is `python -m experiments.reproduce`."""
  if sys.argv and sys.argv[0].endswith(os.path.join("experiments", "reproduce.py")):
    return shlex.join(["python", "-m", "experiments.reproduce"] + sys.argv[1:])
  return "experiments.reproduce.run(config, workdir) (in-process)"


def _status_path(workdir: str, name: str) -> str:
  return os.path.join(workdir, f"{name}.status.json")


def finished_status(workdir: str, name: str, sub_config) -> dict | None:
  """The status of a finished section run with the same config, else None."""
  status = fileio.read_json(_status_path(workdir, name),
                            what=f"delete it to run the section {name} again")
  if status is None:
    return None
  if status.get("config") != fileio.config_dict(sub_config):
    return None
  return status


def run_section(name: str, sub_config, workdir: str) -> dict:
  """Runs one experiment into workdir/<name> (or reuses it); returns its status."""
  status = finished_status(workdir, name, sub_config)
  if status is not None:
    print(f"[reproduce] {name}: finished earlier ({status['seconds']:.0f} s), reused",
          flush=True)
    return status
  print(f"[reproduce] {name} ...", flush=True)
  started, date, before = time.time(), datetime.datetime.now(), machine()
  _module(name).run(sub_config, os.path.join(workdir, name))
  status = {"name": name, "seconds": time.time() - started,
            "date": date.strftime("%Y-%m-%d %H:%M"), "machine_at_start": before,
            "machine_at_end": machine(), "command": command(),
            "config": fileio.config_dict(sub_config)}
  fileio.write_json(_status_path(workdir, name), status)
  print(f"[reproduce] {name}: done ({status['seconds']:.0f} s)", flush=True)
  return status


def run(config, workdir: str) -> list[report.Cell]:
  """Runs the selected experiments (resuming), then writes the report; returns every cell."""
  names = validate(config)
  # Each section claims its own workdir (WORKDIR/<name>) with its sub-config,
  # so here only the shared fields must agree.
  common.claim_workdir(workdir, config, experiment="reproduce",
                       selection=("only", "output", "figures_dir") + tuple(SECTIONS))
  for name in names:
    run_section(name, config[name], workdir)
  return write_report(config, workdir)


def _demote(markdown: str) -> str:
  """Headings two levels down (an experiment's results.md inside the report)."""
  return "\n".join("##" + line if line.startswith("#") else line
                   for line in markdown.splitlines())


def _copy_figures(name: str, workdir: str, output_dir: str, figures_dir: str) -> list[str]:
  source = os.path.join(workdir, name)
  if not os.path.isdir(source):
    return []
  target = os.path.join(output_dir, figures_dir)
  os.makedirs(target, exist_ok=True)
  out = []
  for filename in sorted(os.listdir(source)):
    if filename.endswith(".png"):
      shutil.copyfile(os.path.join(source, filename), os.path.join(target, f"{name}_{filename}"))
      out.append(os.path.join(figures_dir, f"{name}_{filename}"))
  return out


def section(name: str, status: dict | None, workdir: str, output_dir: str, config) -> str:
  """The report's section of one experiment (pending when it has not finished)."""
  title = f"## {SECTIONS[name]}: `experiments.{name}`"
  if status is None:
    return f"{title}\n\n**Pending**: not finished yet (run the command above to resume).\n"
  parts = [title, "",
           f"Started {status['date']}, {status['seconds']:.0f} s of wall time. Machine: "
           f"{status['machine_at_start']} at the start, {status['machine_at_end'].split(', ')[-1]}"
           f" at the end. Command: `{status['command']}`.", ""]
  results = os.path.join(workdir, name, "results.md")
  if os.path.exists(results):
    with open(results) as f:
      parts.append(_demote(f.read()))
  cells = report.load_results_if_any(os.path.join(workdir, name))
  for table in sorted({c.table for c in cells} & set(paper.tables())):
    parts += [f"The thesis' {table.replace('table', 'Table ')} (VOC2011 / CIFAR, FCN-AlexNet "
              "/ the thesis' CNN), for comparison:", "", paper.format_paper_table(table)]
  for figure in _copy_figures(name, workdir, output_dir, config.figures_dir):
    parts += [f"![{os.path.basename(figure)}]({figure})", ""]
  return "\n".join(parts) + "\n"


def format_verdicts(verdicts) -> str:
  lines = ["| claim of the thesis | the thesis | this run (mean ± std over repeats; paired "
           "difference d ± SE) | verdict |", "|---|---|---|---|"]
  for v in verdicts:
    lines.append(f"| {v.claim} | {v.paper} | {v.evidence} | **{v.status}** |")
  return "\n".join(lines) + "\n"


REPORT = "REPRODUCTION.md"


def output_path(config, workdir: str) -> str:
  """Where the report goes: `config.output` if set, else WORKDIR/REPRODUCTION.md."""
  return config.output or os.path.join(workdir, REPORT)


def write_report(config, workdir: str) -> list[report.Cell]:
  """Assembles the report (`output_path`) from the finished sections; returns their cells."""
  output = output_path(config, workdir)
  statuses = {name: finished_status(workdir, name, config[name]) for name in SECTIONS}
  cells = [c for name, st in statuses.items() if st is not None
           for c in report.load_results_if_any(os.path.join(workdir, name))]
  output_dir = os.path.dirname(os.path.abspath(output))
  done = [st for st in statuses.values() if st is not None]
  pending = [name for name, st in statuses.items() if st is None]
  total = sum(st["seconds"] for st in done)
  on_paper = any(config[n].get("dataset") in PAPER_DATASETS for n in SECTIONS)
  header = [
      "# Reproduction of J. Ju (2017), *Learn representations in the presence of "
      "segmentation label noises*", "",
      "Assembled by `experiments/reproduce.py` with:", "", "```", command(), "```", "",
      "Each section names the command that ran it (a section finished by an earlier "
      "invocation with the same config is reused, not run again).", "",
      f"Written {datetime.date.today()} on {platform.platform()}; machine now: {machine()}. "
      f"Total wall time of the finished sections: {total:.0f} s ({total / 3600:.2f} h); "
      + (f"pending: {', '.join(pending)}." if pending else "every section finished.")
      + " Scale `" + config.scale + f"`, {config.repeats} repeat(s), folds "
      + ", ".join(str(f) for f in config.folds) + ". Dataset: "
      + ("the thesis' own (VOC2011 + SBD, CIFAR-10/100, two moons)." if on_paper else
         "the embedded synthetic data (the thesis' numbers are on VOC2011 / CIFAR with "
         "FCN-AlexNet, so compare orderings and gaps, not values)."), "",
      "## The thesis' claims against this run", "",
      claims.RULE + " Claims whose experiment has not finished are pending, never judged.",
      "",
      format_verdicts(claims.judge_all(cells, pending=pending)),
  ]
  body = [section(name, statuses[name], workdir, output_dir, config) for name in SECTIONS]
  text = "\n".join(header) + "\n" + "\n".join(body)
  fileio.write_text(output, text)
  print(f"Wrote {output}")
  return cells


if __name__ == "__main__":
  from experiments import cli  # pylint: disable=g-import-not-at-top
  cli.main("reproduce", run)
