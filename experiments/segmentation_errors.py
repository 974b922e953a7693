r"""Beyond the thesis: segmentation errors (§6, open question 1) under four binary losses.

The thesis assumes every annotated outline is right and leaves "imprecise
boundaries, over-segmenting and under-segmenting the objects" to future work
(§6). Here the training outlines get `jaxpu.data.noise`'s segmentation errors
— by default boundary noise (each chosen object eroded or dilated by 1..3
pixels) and coarse outlines (each chosen object replaced by its bounding box)
— on a growing fraction `levels` of the training objects, and four losses
train a binary (foreground / background) FCN on the fold's 15 pre-training
classes:

| loss | `jaxpu.losses` | |
|---|---|---|
| LogisticLoss | `logistic` | App. B.1 |
| ClassWeighted | `weighted_logistic`, background weight β | eq. 6 |
| SigmoidLoss | `sigmoid_negative` | eq. 8 |
| GeneralizedSigmoid | `generalized_sigmoid_negative` (α, β, γ) | §6 |

The asymmetry matters: the sigmoid losses forgive *foreground labelled
background* (erosion, under-segmentation), not *background labelled
foreground* (dilation, boxes), whose positive loss stays logistic.

Two tables, mean ± std over repeats (each repeat: the mean of its last
snapshots; repeats re-draw init, shuffling and the noise):

- `binary`: each model on its own test split against the complete labels:
  foreground average precision (threshold-free), foreground / background
  recall at 0.5, mean IU;
- `transfer` (Table 4's protocol): each model of `transfer_levels` (and the
  clean ones) fine-tuned on the fold's five classes; mean IU.

The paired differences (same seed) that answer the question — does the noise
hurt (clean − noisy, logistic) and does a loss protect (loss − logistic) —
are listed under the tables with their standard errors; `segmentation_errors.png`
plots every score against the noise level, one line per loss.

  python -m experiments.segmentation_errors                       # embedded data, CPU
  python -m experiments.segmentation_errors --config.levels=0.25,0.5,1.0

Settings: `experiments/configs/segmentation_errors.py`.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from experiments import common
from jaxpu import models
from jaxpu import report
from jaxpu import segmentation_runs as seg
from jaxpu.data import noise
from jaxpu.data import pipeline
from jaxpu.thesis import columns
from jaxpu.thesis import claims
from jaxpu.thesis import rows as thesis_rows

DATASETS = ("synthetic", "voc")
SELECTION = ("repeats", "levels", "noises", "losses", "transfer_levels")
LOSSES = ("LogisticLoss", "ClassWeighted", "SigmoidLoss", "GeneralizedSigmoid")
CLEAN = "clean"
RANDOM = "RandomWeights"

BINARY_SPEC = report.TableSpec(
    "binary", "Binary segmentation trained with segmentation errors, scored against the "
    "complete labels of the test split", ("training labels", "loss"),
    ("fg AP", "fg rec.", "bg rec.", "mean IU"))
TRANSFER_SPEC = report.TableSpec(
    "transfer", "Transfer (Table 4's protocol): the binary models fine-tuned on the fold's "
    "five classes", ("pre-training labels", "loss"), ("mean IU", "mean rec."))


def loss_of(name: str, config) -> tuple[str, dict]:
  """The `jaxpu.losses` name and arguments of a loss of `LOSSES`."""
  if name == "GeneralizedSigmoid":
    g = config.generalized
    return "generalized_sigmoid_negative", {"alpha": g.alpha, "beta": g.beta, "gamma": g.gamma}
  return thesis_rows.table2_loss(name, config.class_weighted_negative_weight)


def corruption(noise_spec: str, level: float) -> str:
  """"name[:size]" at `level` → the corruption string "name:level[:size]"."""
  name, _, size = noise_spec.partition(":")
  return f"{name}:{level:g}" + (f":{size}" if size else "")


def training(labels: str, loss_name: str, config) -> seg.Training:
  """The binary training on `labels` (CLEAN or a corruption string) under a loss."""
  loss, kwargs = loss_of(loss_name, config)
  return seg.binary_training(None if labels == CLEAN else labels, loss, **kwargs)


def validate(config) -> tuple[list[str], tuple[float, ...]]:
  """Checks every setting before any data is built; returns (training labels, transfer levels)."""
  common.check_common(config)
  common.require(config.dataset in DATASETS, "dataset", config.dataset,
                     f"choose one of {DATASETS}")
  common.require_fraction(config, "finetune_fraction", allow_none=True)
  common.require(config.fold in (1, 2, 3, 4), "fold", config.fold, "choose 1, 2, 3 or 4")
  levels = common.numbers(config.levels)
  common.require(bool(levels) and all(isinstance(x, (int, float)) and 0 < x <= 1
                                          for x in levels),
                     "levels", config.levels, "give fractions in (0, 1], e.g. 0.5,1.0")
  noises = common.names(config.noises)
  common.require(bool(noises), "noises", config.noises,
                     f"name at least one of {list(noise.SEGMENTATION_ERRORS)}")
  for spec in noises:
    try:
      pipeline.parse_corruption(corruption(spec, levels[0]), noise.SEGMENTATION_ERRORS)
    except ValueError as e:
      raise ValueError(f"--config.noises={spec!r}: {e}") from None
  losses = common.names(config.losses)
  common.require(bool(losses) and set(losses) <= set(LOSSES), "losses", config.losses,
                     f"choose from {list(LOSSES)}")
  weight = config.class_weighted_negative_weight
  common.require(isinstance(weight, (int, float)) and 0 <= weight < float("inf"),
                     "class_weighted_negative_weight", weight, "must be a finite number >= 0")
  for field in ("alpha", "beta", "gamma"):
    value = config.generalized[field]
    common.require(isinstance(value, (int, float)) and 0 < value < float("inf"),
                       f"generalized.{field}", value, "must be a finite number > 0")
  transfer_levels = common.numbers(config.transfer_levels)
  common.require(set(transfer_levels) <= set(levels), "transfer_levels",
                     config.transfer_levels, f"choose among the levels {list(levels)} (or ())")
  if config.dataset == "voc":
    common.require(config.data.manual_dir is not None, "data.manual_dir", None,
                       "voc needs the folder with your VOC2011 and SBD archives")
  models.get(config.model, 1, **config.model_options)
  labels = [CLEAN] + [corruption(n, level) for n in noises for level in levels]
  return labels, transfer_levels


def binary_values(runner: seg.Runner, t: seg.Training, fold: int, seeds) -> dict[str, list]:
  """The `binary` table's columns of one training, one value per repeat."""
  results = [runner.train(t, fold, seed) for seed in seeds]
  values = {column: [columns.repeat_value(r, column) for r in results]
            for column in ("fg rec.", "bg rec.", "mean IU")}
  values["fg AP"] = [float(np.mean(seg.foreground_average_precision(
      r, runner.dataset(t, fold, seed).eval_iter))) for r, seed in zip(results, seeds)]
  return values


def _level(labels: str) -> tuple[Optional[str], float]:
  """(noise name, level) of a training-labels string; (None, 0) for clean labels."""
  if labels == CLEAN:
    return None, 0.0
  name, rest = labels.split(":", 1)
  return name, float(rest.split(":")[0])


PAIRED_COLUMNS = (("binary", "fg AP"), ("binary", "mean IU"), ("transfer", "mean IU"))


def paired_table(cells, losses, labels) -> str:
  """Markdown table of the paired differences (same seed) that answer the question:
  the noise's cost to the logistic loss (clean − noisy) and each loss' gain over the
  logistic loss on the same noisy labels, as d ± SE (* where a two-sided paired t-test gives p < 0.05)."""
  by = {(c.table, c.row, c.column): c.values for c in cells}

  def entry(table, a, b, column):
    if (table, a, column) not in by or (table, b, column) not in by:
      return "—"
    p = claims.paired(by[(table, a, column)], by[(table, b, column)])
    star = "*" if claims.significant(p) else ""
    return f"{p.mean:+.3f} ± {p.se:.3f}{star}"

  header = " | ".join(f"{'fine-tuned' if t == 'transfer' else 'binary'} {c}"
                      for t, c in PAIRED_COLUMNS)
  lines = [f"| training labels | comparison | {header} |",
           "|---|---|" + "---|" * len(PAIRED_COLUMNS)]
  comparisons = [("clean − noisy (LogisticLoss)", (CLEAN, "LogisticLoss"), None)]
  comparisons += [(f"{loss} − LogisticLoss", None, loss) for loss in losses
                  if loss != "LogisticLoss"]
  for noisy in labels[1:]:
    for name, clean_row, loss in comparisons:
      a, b = (clean_row, (noisy, "LogisticLoss")) if loss is None else (
          (noisy, loss), (noisy, "LogisticLoss"))
      values = " | ".join(entry(t, a, b, c) for t, c in PAIRED_COLUMNS)
      lines.append(f"| {noisy} | {name} | {values} |")
  return "\n".join(lines) + "\n"


def curves(cells, noises_in_labels) -> dict:
  """{noise: {loss: {level: {score: (mean, std)}}}} for the figure (clean = level 0)."""
  out: dict = {}
  for cell in cells:
    labels, loss = cell.row
    if labels == RANDOM or cell.column not in ("fg AP", "mean IU"):
      continue
    name, level = _level(labels)
    score = f"{'fine-tuned ' if cell.table == 'transfer' else ''}{cell.column}"
    for target in ([name] if name else noises_in_labels):
      out.setdefault(target, {}).setdefault(loss, {}).setdefault(level, {})[score] = (
          cell.mean, cell.std)
  return out


def run(config, workdir: str) -> list[report.Cell]:
  """Trains every (labels, loss) on the fold's pre-training classes, fine-tunes the
  transfer levels, writes the two tables and the figure into `workdir`."""
  labels, transfer_levels = validate(config)
  runner = seg.runner_from_config(config, workdir)  # validates the training settings
  resolved = common.claim_workdir(workdir, config, selection=SELECTION,
                                  experiment="segmentation_errors")
  outputs = common.Outputs(workdir, resolved)
  seeds = common.repeat_seeds(config)
  losses = common.names(config.losses)
  fold = config.fold
  finetuned = [x for x in labels if _level(x)[1] in (0.0,) + transfer_levels]
  runner.progress = common.Progress(
      "segmentation_errors",
      len(seeds) * (len(labels) * len(losses) * runner.pretrain.steps
                    + (len(finetuned) * len(losses) + 1) * runner.finetune.steps),
      len(seeds) * (len(labels) * len(losses) + len(finetuned) * len(losses) + 1))

  for x in labels:
    for loss in losses:
      for column, values in binary_values(runner, training(x, loss, config), fold,
                                          seeds).items():
        outputs.add("binary", (x, loss), column, values)
  specs = [BINARY_SPEC]
  if transfer_levels:
    rows = [((RANDOM, "-"), None)] + [((x, loss), training(x, loss, config))
                                      for x in finetuned for loss in losses]
    for row, t in rows:
      results = [runner.finetune_run(t, fold, seed) for seed in seeds]
      for column in TRANSFER_SPEC.columns:
        outputs.add("transfer", row, column, [columns.repeat_value(r, column) for r in results])
    specs.append(TRANSFER_SPEC)

  from jaxpu import plots  # pylint: disable=g-import-not-at-top
  noise_names = sorted({n for n, _ in map(_level, labels) if n})
  figure = plots.plot_noise_levels(
      outputs.path("segmentation_errors.png"), curves(outputs.cells, noise_names),
      scores=("fg AP", "mean IU") + (("fine-tuned mean IU",) if transfer_levels else ()))
  preamble = (
      f"# Segmentation errors (beyond the thesis, §6) on `{config.dataset}`\n\n"
      f"Binary FCN ({config.model}, {config.pretrain.steps} steps) on fold {fold}'s 15 "
      f"pre-training classes; training labels: complete (`clean`) or with a segmentation "
      f"error on a fraction of the objects (`name:fraction[:size]`, `jaxpu.data.noise`). "
      f"Mean ± std over {len(seeds)} repeat(s) (seeds {seeds}); each repeat's value is the "
      f"mean of its last {runner.pretrain.keep} snapshots. Transfer: fine-tuned "
      f"{config.finetune.steps} steps on fold {fold}'s five classes"
      + (f" (a seeded {config.finetune_fraction:.0%} of its images)"
         if config.finetune_fraction else "") + ".\n")
  epilogue = (f"**Paired differences** (same seed; mean d ± standard error over the repeats; "
              f"* where a two-sided paired t-test gives p < {claims.ALPHA:g}):\n\n"
              + paired_table(outputs.cells, losses, labels) + f"\nFigure: `{os.path.basename(figure)}`.")
  markdown = outputs.write(specs, preamble=preamble, epilogue=epilogue)
  print(markdown)
  return outputs.cells


if __name__ == "__main__":
  from experiments import cli  # pylint: disable=g-import-not-at-top
  cli.main("segmentation_errors", run)
