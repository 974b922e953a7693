r"""Where the spread of Table 4 comes from, and the design that decides its claims.

Table 4's rows (fold 1) are trained with `repeats` pre-training seeds and,
for each pre-trained encoder, `finetune_draws` fine-tunings (draw j of seed
s fine-tunes with seed s + 1000 j: another seeded subset of the fold's
images, head initialisation and order; draw 0 is the main job's own). For
every row and every paired difference the thesis' claims use, a one-way
random-effects analysis (`jaxpu.analysis.variance_components`) splits the
variance into the pre-training seed's part (σ²_seed) and the fine-tuning
draw's (σ²_draw), and `jaxpu.analysis.paired_t_power` gives the power of the
one-sided paired t-test at α for each design "n repeats × m draws per
repeat" at the measured difference. The main job's design (README) was
chosen from this table: the cheapest design with ≥ 80 % power for every
directional Table 4 comparison.

  python -m experiments.transfer_variance
"""

from __future__ import annotations

import numpy as np

from experiments import common
from jaxpu import analysis
from jaxpu import report
from jaxpu import segmentation_runs as seg
from jaxpu.thesis import columns
from jaxpu.thesis import rows as thesis_rows

SELECTION = ("designs",)
# (a, b): the paired differences a − b that Table 4's claims judge.
COMPARISONS = (("CompleteLabels", "RandomWeights"), ("CompleteLabels", "HalfUnsegmented"),
               ("SigmoidLoss", "HalfUnsegmented"), ("CompleteBinary", "HalfUnsegmented"),
               ("SigmoidLoss", "CompleteLabels"), ("SigmoidLoss", "CompleteBinary"))


def parse_design(text: str) -> tuple[int, int]:
  """"4x2" → (4 repeats, 2 draws)."""
  try:
    n, m = (int(part) for part in str(text).lower().split("x"))
  except ValueError:
    raise ValueError(f"--config.designs={text!r}: write repeats x draws, e.g. 4x2.") from None
  common.require(n >= 2 and m >= 1, "designs", text, "needs repeats >= 2 and draws >= 1")
  return n, m


def validate(config) -> list[tuple[int, int]]:
  common.check_common(config)
  common.require(config.repeats >= 2, "repeats", config.repeats, "needs >= 2 pre-training seeds")
  common.require(config.finetune_draws >= 2, "finetune_draws", config.finetune_draws,
                 "needs >= 2 draws per seed to separate the two components")
  common.require(config.fold in (1, 2, 3, 4), "fold", config.fold, "choose 1, 2, 3 or 4")
  common.require(0 < config.alpha < 1, "alpha", config.alpha, "must be in (0, 1)")
  return [parse_design(d) for d in common.names(config.designs)]


def measure(runner: seg.Runner, fold: int, seeds, draws: int) -> dict[str, np.ndarray]:
  """Row name → [seed, draw] array of fine-tuning mean IU (Table 4's rows)."""
  out = {}
  for row in thesis_rows.ROWS["table4"]:
    out[row.row[-1]] = np.array([[columns.repeat_value(
        runner.finetune_run(row.training, fold, seed, draw), "mean IU")
        for draw in range(draws)] for seed in seeds])
  return out


def record(values, designs, alpha, outputs: common.Outputs) -> None:
  """Cells of the components table (rows and differences) and of the power table."""
  targets = [(name, v) for name, v in values.items()]
  targets += [(f"{a} − {b}", values[a] - values[b]) for a, b in COMPARISONS
              if a in values and b in values]
  for name, v in targets:
    mean, var_seed, var_draw = analysis.variance_components(v)
    outputs.add("components", (name,), "mean", [mean])
    outputs.add("components", (name,), "sd seed", [float(np.sqrt(var_seed))])
    outputs.add("components", (name,), "sd draw", [float(np.sqrt(var_draw))])
    if " − " in name:
      for n, m in designs:
        outputs.add("power", (name,), f"{n}x{m}",
                    [analysis.paired_t_power(mean, var_seed, var_draw, n, m, alpha)])
  for name, v in values.items():
    for j in range(v.shape[1]):
      outputs.add("values", (name,), f"draw {j}", list(v[:, j]))


def run(config, workdir: str) -> list[report.Cell]:
  designs = validate(config)
  runner = seg.runner_from_config(config, workdir)  # validates the training settings
  resolved = common.claim_workdir(workdir, config, selection=SELECTION,
                                  experiment="transfer_variance")
  outputs = common.Outputs(workdir, resolved)
  seeds = common.repeat_seeds(config)
  rows = thesis_rows.ROWS["table4"]
  planned = [seg.Run(r.training, None, 0) for r in rows if r.training is not None]
  planned += [seg.Run(None, None, 0)] * (len(rows) * config.finetune_draws)
  runner.progress = common.Progress("transfer_variance",
                                    sum(runner.planned_steps(r) for r in planned) * len(seeds),
                                    len(planned) * len(seeds))
  values = measure(runner, config.fold, seeds, config.finetune_draws)
  record(values, designs, config.alpha, outputs)
  specs = [
      report.TableSpec("components", f"Variance components of Table 4 (fold {config.fold}, "
                       f"fine-tuning mean IU): {len(seeds)} pre-training seeds × "
                       f"{config.finetune_draws} fine-tuning draws", ("row or difference",),
                       ("mean", "sd seed", "sd draw")),
      report.TableSpec("power", f"Power of the one-sided paired t-test (α = {config.alpha:g}) "
                       "at the measured difference, per design repeats x draws",
                       ("difference",), tuple(f"{n}x{m}" for n, m in designs)),
      report.TableSpec("values", "Every fine-tuning's mean IU (one value per seed)",
                       ("row",), tuple(f"draw {j}" for j in range(config.finetune_draws))),
  ]
  markdown = outputs.write(specs, preamble=(
      "# Where Table 4's spread comes from\n\nOne-way random effects per row and per paired "
      "difference (`jaxpu.analysis.variance_components`): sd seed = the pre-training seed's "
      "part, sd draw = the fine-tuning draw's (subset, head initialisation, order).\n"))
  print(markdown)
  return outputs.cells


if __name__ == "__main__":
  from experiments import cli  # pylint: disable=g-import-not-at-top
  cli.main("transfer_variance", run)
