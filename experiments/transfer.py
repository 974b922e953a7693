r"""Tables 3, 4, 5 and Fig. 7: transferring representations learnt from noisy segmentations.

Per fold (§5.3.1): pre-train on the 15 classes outside the fold with a
corrupted label set (one run per distinct pre-training, shared by every row
and table that needs it), checkpoint it (Orbax), copy its encoder into a
fresh model (head Xavier-initialised), fine-tune on the fold's 5 classes and
report the fine-tuning mean IU on the fold's test images (§5.3.2). Also
printed: each pre-trained model's own scores on its pre-training test split
(Table 2's columns).

The main job (embedded data, Table 4 for fold 1, minutes on 2 CPU cores):

  python -m experiments.transfer

Everything (Tables 3, 4, 5 and Fig. 7, four folds, three repeats):

  python -m experiments.transfer --config.tables=table3,table4,table5,fig7 \
      --config.folds=1,2,3,4 --config.repeats=3

The thesis' setting on VOC2011 + SBD (FCN-AlexNet; needs a GPU):

  python -m experiments.transfer --config=experiments/configs/transfer.py:paper \
      --config.data.manual_dir=~/voc --config.tables=table3,table4,table5,fig7 \
      --config.folds=1,2,3,4 --config.repeats=3

Settings: `experiments/configs/transfer.py`. In Python:
`run(transfer_config.get_config("smoke"), "/tmp/w")`.
"""

from __future__ import annotations

import os

import numpy as np

from experiments import common
from jaxpu import models
from jaxpu import report
from jaxpu import segmentation_runs as seg
from jaxpu.thesis import columns
from jaxpu.thesis import claims
from jaxpu.thesis import paper
from jaxpu.thesis import rows as thesis_rows

DATASETS = ("synthetic", "voc")
SELECTION = ("tables", "folds", "repeats")  # what to run; the rest is how

FIG7_SPEC = report.TableSpec(
    "fig7", "Figure 7: fine-tuning scores vs the categorisation of the pre-training labels "
    "(0 = random init, 1 = binary, 15 = true labels; random = random categorisations)",
    ("categorisation", "categories"), ("mean IU", "mean acc."))


def pretraining_spec(fold_names: str) -> report.TableSpec:
  return report.TableSpec(
      "pretraining", f"Pre-trained models on their own test split ({fold_names}; "
      "scored against the true labels of the pre-training task)",
      ("fold", "pre-training"), tuple(columns.BINARY_COLUMNS.values()))


def validate(config) -> tuple[tuple[str, ...], tuple[int, ...]]:
  """Checks every setting before any data is built; returns (tables, folds)."""
  common.check_common(config)
  common.require(config.dataset in DATASETS, "dataset", config.dataset,
                     f"choose one of {DATASETS}")
  tables = thesis_rows.check_tables(common.names(config.tables))
  folds = tuple(config.folds) if not isinstance(config.folds, int) else (config.folds,)
  common.require(bool(folds) and all(f in (1, 2, 3, 4) for f in folds)
                     and len(set(folds)) == len(folds), "folds", config.folds,
                     "list distinct folds among 1, 2, 3, 4, e.g. --config.folds=1,2")
  common.require_fraction(config, "finetune_fraction", allow_none=True)
  common.require_positive_int(config, "finetune_draws")
  if config.imagenet_weights is not None:
    common.require(config.model == "fcn_alexnet", "imagenet_weights", config.imagenet_weights,
                   "initialises fcn_alexnet's encoder only (--config.model=fcn_alexnet)")
    common.require(os.path.isfile(config.imagenet_weights), "imagenet_weights",
                   config.imagenet_weights, "no such file; convert the BVLC .caffemodel with "
                   "python -m jaxpu.models.alexnet_weights CAFFEMODEL OUT.npz")
  if config.dataset == "voc":
    common.require(config.data.manual_dir is not None, "data.manual_dir", None,
                       "voc needs the folder with your VOC2011 and SBD archives")
  models.get(config.model, 2, **config.model_options)  # unknown options fail here
  return tables, folds


def planned_work(tables, folds, seeds, runner: seg.Runner) -> tuple[int, int]:
  """(runs, steps) that `measure` trains: pre-trainings and distinct fine-tunings."""
  rows = thesis_rows.rows_for(tables)
  planned = [seg.Run(t, None, 0) for t in thesis_rows.trainings_for(rows)]
  planned += [seg.Run(None, None, 0) for _ in {row.training for row in rows}
              for _ in range(runner.finetune_draws)]
  repeats = len(folds) * len(seeds)
  return len(planned) * repeats, sum(runner.planned_steps(r) for r in planned) * repeats


def measure(tables, folds, seeds, runner: seg.Runner, outputs: common.Outputs) -> None:
  """Trains what `tables` need on `folds` × `seeds` and records every cell in `outputs`.

  Every value is one repeat's: the mean over that run's last snapshots. A
  repeat (seed) re-runs the pre-trainings (init, shuffling, label noise) and
  the fine-tunings, so the values of two rows are paired by repeat.
  """
  rows = thesis_rows.rows_for(tables)
  names = thesis_rows.training_names(rows)
  for fold in folds:
    for training in thesis_rows.trainings_for(rows):
      results = [runner.train(training, fold, seed) for seed in seeds]
      for column in columns.own_scores(results[0]):
        outputs.add("pretraining", (f"Fold{fold}", names[training]), column,
                    [columns.repeat_value(r, column) for r in results])

  def finetune_values(training, fold, column):
    """One value per repeat: the mean over its fine-tuning draws of each draw's value."""
    return [float(np.mean([columns.repeat_value(runner.finetune_run(training, fold, seed, draw),
                                                column)
                           for draw in range(runner.finetune_draws)]))
            for seed in seeds]

  for row in rows:
    if row.table == "fig7":
      for column, score in (("mean IU", "mean IU"), ("mean acc.", "mean rec.")):
        per_fold = [finetune_values(row.training, fold, score) for fold in folds]
        outputs.add("fig7", row.row, column, seg.fold_average(per_fold))
      continue
    per_fold = []
    for fold in folds:
      per_fold.append(finetune_values(row.training, fold, "mean IU"))
      outputs.add(row.table, row.row, f"Fold{fold}", per_fold[-1])
    outputs.add(row.table, row.row, "Average", seg.fold_average(per_fold))


def fig7_points(cells):
  """{(kind, categories): {column: (mean, std)}} of the fig7 cells."""
  meaningful, random = {}, {}
  for cell in cells:
    if cell.table == "fig7":
      target = meaningful if cell.row[0] == "meaningful" else random
      target.setdefault(int(cell.row[1]), {})[cell.column] = (cell.mean, cell.std)
  return meaningful, random


def verdicts_markdown(cells) -> str:
  """The thesis' claims these cells can judge, on paired repeats (`jaxpu.thesis.claims`)."""
  verdicts = [v for v in claims.judge_all(cells) if v.status != claims.NOT_MEASURED]
  if not verdicts:
    return ""
  lines = ["**The thesis' claims on these tables** (" + claims.RULE + ")", "",
           "| claim | the thesis | this run | verdict |", "|---|---|---|---|"]
  lines += [f"| {v.claim} | {v.paper} | {v.evidence} | **{v.status}** |" for v in verdicts]
  return "\n".join(lines) + "\n"


def init_note(config) -> str:
  """Where the pre-trainings' encoder started, said plainly where it differs from the thesis."""
  if config.model != "fcn_alexnet":
    return ""
  if config.imagenet_weights:
    return (f"\nThe pre-trainings' encoder started from the ImageNet AlexNet weights "
            f"`{config.imagenet_weights}`, as in the thesis.\n")
  return ("\nThe pre-trainings' encoder started from scratch "
          f"({config.model_options.get('kernel_init', 'glorot')} initialisation), unlike the "
          "thesis, which started from ImageNet AlexNet (`--config.imagenet_weights`).\n")


def run(config, workdir: str) -> list[report.Cell]:
  """Runs the transfer tables of `config` into `workdir`; returns the cells measured."""
  tables, folds = validate(config)
  runner = seg.runner_from_config(config, workdir)  # validates the training settings
  resolved = common.claim_workdir(workdir, config, selection=SELECTION,
                                  experiment="transfer")
  outputs = common.Outputs(workdir, resolved)
  seeds = common.repeat_seeds(config)
  runs, steps = planned_work(tables, folds, seeds, runner)
  runner.progress = common.Progress("transfer", steps, runs)
  measure(tables, folds, seeds, runner, outputs)

  specs = [FIG7_SPEC if t == "fig7" else paper.paper_spec(t) for t in tables]
  specs.append(pretraining_spec(", ".join(f"fold {f}" for f in folds)))
  if "fig7" in tables:
    from jaxpu.thesis import figures  # pylint: disable=g-import-not-at-top
    figures.plot_categorisations(outputs.path("fig7_categorisations.png"),
                               *fig7_points(outputs.cells))
  fraction = (f"a seeded {config.finetune_fraction:.0%} of the fold's training images "
              "(the same images for every row of a repeat)"
              if config.finetune_fraction else "all of the fold's training images")
  preamble = (
      f"# Transfer experiments (thesis §5.3) on `{config.dataset}`\n\n"
      f"Fine-tuning mean IU on the fold's five classes, mean ± std (ddof 1) over "
      f"{config.repeats} repeat(s) (n in results.json); each repeat's value is the mean over "
      f"its {config.finetune_draws} fine-tuning draw(s) of each draw's mean over its last "
      f"{runner.finetune.keep} snapshots, and each repeat re-runs the pre-trainings with its "
      f"own seed (init, shuffling, label noise). `Average` averages the folds per repeat. "
      f"Scale `{config.scale}`: {config.model}, pre-training {config.pretrain.steps} steps "
      f"(multi-class pre-trainings: {config.pretrain_multiclass.steps or config.pretrain.steps}"
      f"), fine-tuning {config.finetune.steps} steps on {fraction}.\n" + init_note(config))
  reference = paper.reference_cells(tables) if config.dataset == "voc" else None
  markdown = outputs.write(specs, reference=reference, preamble=preamble,
                           epilogue=verdicts_markdown(outputs.cells))
  print(markdown)
  return outputs.cells


if __name__ == "__main__":
  from experiments import cli  # pylint: disable=g-import-not-at-top
  cli.main("transfer", run)
