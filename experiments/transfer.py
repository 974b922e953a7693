r"""Tables 3, 4, 5 and Fig. 7: transferring representations learnt from noisy segmentations.

Per fold (§5.3.1): pre-train on the 15 classes outside the fold with a
corrupted label set (one run per distinct pre-training, shared by every row
and table that needs it), checkpoint it (Orbax), copy its encoder into a
fresh model (head Xavier-initialised), fine-tune on the fold's 5 classes and
report the fine-tuning mean IU on the fold's test images, mean ± std over
repeats × the last five snapshots (§5.3.2). Also printed: each pre-trained
model's own scores on its pre-training test split (Table 2's columns).

The main job (embedded data, Table 4 for fold 1, minutes on 2 CPU cores):

  python -m experiments.transfer

Everything (Tables 3, 4, 5 and Fig. 7, four folds, three repeats):

  python -m experiments.transfer --table=all --folds=1,2,3,4 --repeats=3

The thesis' setting on VOC2011 + SBD (FCN-AlexNet; needs a GPU):

  python -m experiments.transfer --dataset=voc --manual_dir=~/voc --scale=paper \
      --table=all --folds=1,2,3,4 --repeats=3
"""

import dataclasses

from absl import app
from absl import flags

from jaxpu import experiment
from jaxpu import report
from jaxpu import segmentation_runs as seg

experiment.define_flags("transfer", datasets=("synthetic", "voc"), default_dataset="synthetic")
_TABLE = flags.DEFINE_string("table", "4", "Tables to make: 3, 4, 5, fig7, a comma list, or all.")
_FOLDS = flags.DEFINE_string("folds", "1", "Folds (§5.3.1) to run, e.g. 1,2,3,4.")
_FINETUNE_STEPS = flags.DEFINE_integer("finetune_steps", None,
                                       "Override the preset's fine-tuning steps "
                                       "(--steps sets the pre-training steps).")
FLAGS = flags.FLAGS

# Pre-training and fine-tuning settings per scale. "cpu" is tuned for the
# embedded data on 2 CPU cores (NOTES-embedded-data.md: a higher learning rate
# with cosine decay for the 16-class pre-training, and enough fine-tuning steps
# that random initialisation leaves its all-background start); "paper" is the
# thesis' FCN-AlexNet schedule (§5.3.2: 240k pre-training and 12k fine-tuning
# iterations, snapshots every 4k; SGD, momentum 0.9, weight decay 5e-4).
PRESETS = {
    "smoke": dict(model="fcn_small", model_options=dict(width=0.25), optimizer="adam",
                  pretrain_lr=3e-3, finetune_lr=2e-3, schedule="cosine", warmup_steps=0,
                  steps=4, finetune_steps=4, checkpoint_every=2, finetune_checkpoint_every=2,
                  batch_size=8, finetune_batch_size=8, weight_decay=0.0,
                  synthetic_config=dict(num_train_per_class=4, num_test_per_class=2)),
    "cpu": dict(model="fcn_small", model_options={}, optimizer="adam",
                pretrain_lr=3e-3, finetune_lr=2e-3, schedule="cosine", warmup_steps=20,
                steps=800, finetune_steps=600, checkpoint_every=160,
                finetune_checkpoint_every=60, batch_size=32, finetune_batch_size=16,
                weight_decay=0.0, synthetic_config=None),
    "paper": dict(model="fcn_alexnet", model_options={}, optimizer="sgd",
                  pretrain_lr=1e-3, finetune_lr=1e-3, schedule="constant", warmup_steps=0,
                  steps=240_000, finetune_steps=12_000, checkpoint_every=4_000,
                  finetune_checkpoint_every=4_000 // 2, batch_size=20,
                  finetune_batch_size=20, weight_decay=5e-4, synthetic_config=None),
}

FIG7_SPEC = report.TableSpec(
    "fig7", "Figure 7: fine-tuning scores vs the categorisation of the pre-training labels "
    "(0 = random init, 1 = binary, 15 = true labels; random = random categorisations)",
    ("categorisation", "categories"), ("mean IU", "mean acc."))


def pretraining_spec(fold_names: str) -> report.TableSpec:
  return report.TableSpec(
      "pretraining", f"Pre-trained models on their own test split ({fold_names}; "
      "scored against the true labels of the pre-training task)",
      ("fold", "pre-training"), tuple(seg.BINARY_COLUMNS.values()))


def make_runner(config) -> seg.Runner:
  """The pre-training / fine-tuning templates of `config` (a preset)."""
  template = seg.binary_spec(config, config["pretrain_lr"])
  finetune = dataclasses.replace(
      template, num_classes=6, loss="softmax_cross_entropy",
      learning_rate=config["finetune_lr"], steps=config["finetune_steps"],
      batch_size=config["finetune_batch_size"],
      checkpoint_every=config["finetune_checkpoint_every"])
  return seg.Runner(FLAGS.workdir, pretrain=template, finetune=finetune,
                    dataset=FLAGS.dataset,
                    data_options=seg.data_options(config, FLAGS.dataset, FLAGS.data_dir,
                                                  FLAGS.manual_dir))


def run(tables, folds, seeds, runner, outputs):
  """Trains what `tables` need on `folds` × `seeds` and records every cell in `outputs`."""
  rows = seg.rows_for(tables)
  names = seg.training_names(rows)
  for fold in folds:
    for training in seg.trainings_for(rows):
      own = {}
      for seed in seeds:
        for column, values in seg.own_scores(runner.train(training, fold, seed)).items():
          own.setdefault(column, []).extend(values)
      for column, values in own.items():
        outputs.add("pretraining", (f"Fold{fold}", names[training]), column, values)

  def finetune_scores(training, fold, column):
    return [v for seed in seeds
            for v in seg.own_scores(runner.transfer(training, fold, seed))[column]]

  for row in rows:
    if row.table == "fig7":
      for column, score in (("mean IU", "mean IU"), ("mean acc.", "mean rec.")):
        per_fold = [finetune_scores(row.training, fold, score) for fold in folds]
        outputs.add("fig7", row.row, column, seg.fold_average(per_fold))
      continue
    per_fold = []
    for fold in folds:
      per_fold.append(finetune_scores(row.training, fold, "mean IU"))
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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  tables = seg.parse_tables(_TABLE.value)
  folds = seg.parse_folds(_FOLDS.value)
  config = experiment.preset(PRESETS)
  if _FINETUNE_STEPS.value is not None:
    config["finetune_steps"] = _FINETUNE_STEPS.value
  experiment.keep_freed_memory()
  experiment.enable_compilation_cache()
  outputs = experiment.Outputs(FLAGS.workdir)
  runner = make_runner(config)
  run(tables, folds, experiment.repeat_seeds(), runner, outputs)

  specs = [FIG7_SPEC if t == "fig7" else report.paper_spec(t) for t in tables]
  specs.append(pretraining_spec(", ".join(f"fold {f}" for f in folds)))
  if "fig7" in tables:
    from jaxpu import plots  # pylint: disable=g-import-not-at-top
    plots.plot_categorisations(outputs.path("fig7_categorisations.png"),
                               *fig7_points(outputs.cells))
  preamble = (
      f"# Transfer experiments (thesis §5.3) on `{FLAGS.dataset}`\n\n"
      f"Fine-tuning mean IU on the fold's five classes, mean ± std over {FLAGS.repeats} "
      f"repeat(s) × the last {runner.finetune.keep} snapshots; `Average` averages the folds "
      f"per repeat and snapshot. Scale `{FLAGS.scale}`: {config['model']}, pre-training "
      f"{config['steps']} steps, fine-tuning {config['finetune_steps']} steps.\n")
  markdown = outputs.write(specs, compare_with_paper=FLAGS.dataset == "voc", preamble=preamble)
  print(markdown)


if __name__ == "__main__":
  app.run(main)
