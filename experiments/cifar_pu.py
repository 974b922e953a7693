r"""§5.1.2, Table 1 and Figure 5: ten relevant classes, one non-relevant class, PU labels.

The thesis combines CIFAR-10 (relevant classes 1..10) with CIFAR-100 (the
non-relevant class 0), labels 50% of the relevant training images and puts
the rest, labelled 0, into the unlabelled set with the non-relevant images
(`pu_labels:0.5`, a new random P/U split per repeat: noise seed = repeat
seed). The Table 6 CNN (`cifar_cnn`) is trained from scratch with Adam for
each row and scored on the test split with true labels: accuracy, and
precision, recall and F1 per relevant class (one-vs-all), averaged
(`jaxpu.metrics.classification_scores`).

| row | training labels | loss |
|---|---|---|
| R+N / CrossEntropy | all, clean | softmax cross entropy |
| 50%(R+N) / CrossEntropy | a random half of every class, clean (`subsample=0.5`) | softmax cross entropy |
| 50%R+U / CrossEntropy | PU | softmax cross entropy |
| 50%R+U / ClassWeighted | PU | class-weighted cross entropy, non-relevant weight 0.5 (eq. 7) |
| 50%R+U / SoftmaxLoss | PU | class-dependent softmax loss (eq. 9) |
| 50%R+U / BootstrapHard | PU | class-weighted cross entropy for `bootstrap_epochs`, then hard bootstrapping, β = 0.8 (eq. 11; §4) |
| 50%R+U / nnPU | PU | `softmax_nnpu_risk`, logistic surrogate (--nnpu_surrogate; beyond the thesis) |
| 50%R+U / GeneralizedSoftmaxLoss | PU | `generalized_softmax_negative`, (α, β, γ) = --generalized (§6; beyond the thesis) |

nnPU's class prior is derived from the known labelled fraction c: the n_L
labelled training examples are a fraction c of the relevant ones, so
n_L (1 - c) / c relevant examples hide among the n_U unlabelled (label 0)
ones, and π = n_L (1 - c) / (c n_U) (`jaxpu.losses.unlabelled_prior`; 1/3
when half of a balanced set is relevant and c = 0.5). The counts are those
of the actual split (one epoch's batches).

`--fig5` adds Figure 5: the mean F1 of ClassWeighted and SoftmaxLoss for
labelled fractions `--fractions` (0.1 ... 0.9; the runs at 0.5 are Table 1's),
as `fig5_f1_vs_labelled_fraction.png` and a `fig5` table. The thesis does not
say how the class weight followed the fraction; it stays 0.5 here.

Datasets: `synthetic` (default: the classification view of the embedded data,
10 relevant categories + 10 others as class 0; 16×16 at --scale=cpu, 32×32 at
paper scale), `digits` (sklearn's handwritten digits, 0-4 relevant), `cifar`
(CIFAR-10 + CIFAR-100 from TFDS, prepared beforehand with
`tfds build cifar10 cifar100 --data_dir=DIR`; the paper's numbers are shown
beside ours).

  python -m experiments.cifar_pu                    # all rows, one repeat, CPU-sized
  python -m experiments.cifar_pu --dataset=digits   # real images, clearer effects
  python -m experiments.cifar_pu --dataset=cifar --data_dir=DIR --scale=paper \
      --repeats=3 --fig5                            # the thesis' setting, on a GPU
"""

from __future__ import annotations

import dataclasses
import math

from absl import app
from absl import flags
from absl import logging
import numpy as np

from jaxpu import experiment
from jaxpu import losses
from jaxpu import metrics
from jaxpu import plots
from jaxpu import report
from jaxpu import runs
from jaxpu.data import pipeline
from jaxpu.data import synthetic

experiment.define_flags("cifar_pu", datasets=("synthetic", "digits", "cifar"),
                        default_dataset="synthetic")
_FIG5 = flags.DEFINE_bool(
    "fig5", False, "Also run Figure 5's sweep over labelled fractions (ClassWeighted and "
    "SoftmaxLoss; 2 runs per fraction and repeat).")
_FRACTIONS = flags.DEFINE_list(
    "fractions", ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"],
    "Figure 5's labelled fractions of the relevant training examples.")
_ROWS = flags.DEFINE_list(
    "rows", None, "Only these Table 1 rows (keys: R+N, 50%(R+N), CrossEntropy, "
    "ClassWeighted, SoftmaxLoss, BootstrapHard, nnPU, GeneralizedSoftmaxLoss); default all.")
_GENERALIZED = flags.DEFINE_list(
    "generalized", ["1", "0.5", "1"],
    "alpha,beta,gamma of the GeneralizedSoftmaxLoss row: α (1 - softmax_0(β f))^γ for "
    "label 0 (§6); 1,1,1 is the SoftmaxLoss.")
_NNPU_SURROGATE = flags.DEFINE_enum(
    "nnpu_surrogate", "logistic", ["logistic", "sigmoid"],
    "Surrogate loss of the nnPU row (`softmax_nnpu_risk`): the sigmoid (Kiryo et al.'s "
    "default) saturates, and the CNN, which starts out calling everything non-relevant, "
    "then stops learning; the logistic does not.")
FLAGS = flags.FLAGS

LABELLED_FRACTION = 0.5  # Table 1: half of the relevant examples labelled.
NON_RELEVANT_WEIGHT = 0.5  # ClassWeighted (and BootstrapHard's first stage).
BOOTSTRAP_BETA = 0.8

# Training length in epochs (`--steps` overrides it in steps); `bootstrap_epochs`
# of class-weighted training precede BootstrapHard's bootstrapping; every row
# is scored at `snapshots` evenly spaced steps (TensorBoard) and reported at
# the last. The thesis gives Adam 1e-4 and no epoch count or batch size.
# `image_size` (synthetic and digits only; CIFAR is 32×32): the CPU preset
# trains on 16×16 images, 6× faster than 32×32 on a CPU, to fit all rows in
# about ten minutes (the Table 6 CNN then flattens 2×2×128 features).
PRESETS = {
    "smoke": dict(epochs=2, steps=None, batch_size=8, learning_rate=1e-3,
                  bootstrap_epochs=1, snapshots=1, eval_batch_size=8, image_size=16,
                  synthetic_config=dict(num_train_per_class=2, num_test_per_class=1)),
    "cpu": dict(epochs=10, steps=None, batch_size=32, learning_rate=1e-3,
                bootstrap_epochs=3, snapshots=2, eval_batch_size=500, image_size=16,
                synthetic_config=None),
    "paper": dict(epochs=50, steps=None, batch_size=128, learning_rate=1e-4,
                  bootstrap_epochs=5, snapshots=10, eval_batch_size=1000, image_size=None,
                  synthetic_config=None),
}

COLUMNS = {"acc.": "accuracy", "mean prec.": "mean_precision", "mean rec.": "mean_recall",
           "mean F1": "mean_f1"}
FIG5_TABLE = report.TableSpec(
    "fig5", "Figure 5: scores against the labelled fraction of the relevant examples",
    ("labelled", "loss"), tuple(COLUMNS))


@dataclasses.dataclass(frozen=True)
class Row:
  """One trained model of Table 1 (or Fig. 5).

  `labels` is "clean" (R+N), "subset" (50%(R+N)) or "pu" (c R+U); the
  loss arguments are (name, value) pairs (`table1_rows` sizes the class
  weights to the dataset's classes; nnPU's prior is added by `train_spec`).
  """
  key: str
  name: str
  labels: str
  loss: str
  loss_kwargs: tuple = ()
  first_loss: str | None = None
  first_loss_kwargs: tuple = ()

  def annotation(self, fraction: float) -> str:
    return {"clean": "R+N", "subset": f"{LABELLED_FRACTION:.0%}(R+N)"}.get(
        self.labels, f"{fraction:.0%}R+U")


def class_weights(num_classes: int) -> tuple[float, ...]:
  """Eq. 7's weights: β = 0.5 for the non-relevant class 0, α_k = 1 otherwise."""
  return (NON_RELEVANT_WEIGHT,) + (1.0,) * (num_classes - 1)


def table1_rows(num_classes: int, generalized=(1.0, 0.5, 1.0),
                nnpu_surrogate="logistic") -> list[Row]:
  weights = (("class_weights", class_weights(num_classes)),)
  alpha, beta, gamma = generalized
  return [
      Row("R+N", "CrossEntropy", "clean", "softmax_cross_entropy"),
      Row("50%(R+N)", "CrossEntropy", "subset", "softmax_cross_entropy"),
      Row("CrossEntropy", "CrossEntropy", "pu", "softmax_cross_entropy"),
      Row("ClassWeighted", "ClassWeighted", "pu", "weighted_softmax_cross_entropy", weights),
      Row("SoftmaxLoss", "SoftmaxLoss", "pu", "softmax_negative"),
      Row("BootstrapHard", "BootstrapHard", "pu", "softmax_bootstrap_hard",
          (("beta", BOOTSTRAP_BETA),), "weighted_softmax_cross_entropy", weights),
      Row("nnPU", "nnPU", "pu", "softmax_nnpu_risk",  # prior: from the data (train_spec).
          (("surrogate", nnpu_surrogate),)),
      Row("GeneralizedSoftmaxLoss", "GeneralizedSoftmaxLoss", "pu",
          "generalized_softmax_negative",
          (("alpha", alpha), ("beta", beta), ("gamma", gamma))),
  ]


def label_counts(data) -> np.ndarray:
  """Occurrences of each observed training label over one epoch's batches."""
  counts = np.zeros(data.num_classes, np.int64)
  for batch in data.train_dataset(0).take(data.steps_per_epoch).as_numpy_iterator():
    labels = batch["label"]
    counts += np.bincount(labels[labels < data.num_classes], minlength=data.num_classes)
  return counts


def table_scores(cm) -> dict[str, float]:
  """Table 1's columns of a confusion matrix (relevant classes 1..K)."""
  scores = metrics.classification_scores(cm)
  return {column: scores[key] for column, key in COLUMNS.items()}


def make_data(labels: str, seed: int, config, fraction: float = LABELLED_FRACTION):
  """The training/test data of one row type; the split and order follow `seed`."""
  kwargs = dict(batch_size=config["batch_size"], seed=seed, noise_seed=seed,
                with_true_label=True, eval_batch_size=config["eval_batch_size"],
                data_dir=FLAGS.data_dir)
  if FLAGS.dataset == "synthetic" and config["synthetic_config"]:
    kwargs["config"] = synthetic.synthetic_config("single", **config["synthetic_config"])
  if FLAGS.dataset != "cifar" and config["image_size"]:
    kwargs["image_size"] = config["image_size"]
  if labels == "subset":
    kwargs["subsample"] = LABELLED_FRACTION
  elif labels == "pu":
    kwargs["corruption"] = f"pu_labels:{fraction}"
  return pipeline.make_classification_data(FLAGS.dataset, **kwargs)


def train_spec(row: Row, data, config, fraction: float) -> runs.TrainSpec:
  """The TrainSpec of `row` on `data` (epochs → steps; nnPU's prior from the data)."""
  epoch = data.steps_per_epoch
  steps = config["steps"] or max(1, round(config["epochs"] * epoch))
  loss_kwargs = dict(row.loss_kwargs)
  if row.loss == "softmax_nnpu_risk":
    counts = label_counts(data)
    loss_kwargs["prior"] = losses.unlabelled_prior(counts[1:].sum(), counts[0], fraction)
    logging.info("nnPU prior (labelled fraction %.2f): %.4f", fraction, loss_kwargs["prior"])
  first_steps = 0
  if row.first_loss is not None:
    first_steps = min(max(1, round(config["bootstrap_epochs"] * epoch)), steps - 1)
  return runs.TrainSpec(
      model="cifar_cnn", num_classes=data.num_classes, loss=row.loss,
      loss_kwargs=tuple(sorted(loss_kwargs.items())), first_loss=row.first_loss,
      first_loss_kwargs=row.first_loss_kwargs, first_loss_steps=first_steps,
      optimizer="adam", learning_rate=config["learning_rate"], steps=steps,
      batch_size=config["batch_size"],
      checkpoint_every=max(1, math.ceil(steps / config["snapshots"])),
      log_every=max(1, min(100, steps // 4)))


def _fractions() -> list[float]:
  try:
    fractions = sorted({float(f) for f in _FRACTIONS.value})
  except ValueError:
    raise app.UsageError(f"--fractions must be numbers, got {_FRACTIONS.value}.") from None
  bad = [f for f in fractions if not 0 < f < 1]
  if bad:
    raise app.UsageError(f"--fractions must be in (0, 1), got {bad}.")
  return fractions


def _generalized() -> tuple[float, float, float]:
  try:
    values = tuple(float(v) for v in _GENERALIZED.value)
  except ValueError:
    values = ()
  if len(values) != 3:
    raise app.UsageError(f"--generalized takes alpha,beta,gamma, got {_GENERALIZED.value}.")
  return values


def plan() -> list[tuple[str, float, str, str]]:
  """Every (table, labelled fraction, row key, labels) to train, in order."""
  keys = [row.key for row in table1_rows(2)]
  labels = {row.key: row.labels for row in table1_rows(2)}
  if _ROWS.value:
    unknown = sorted(set(_ROWS.value) - set(keys))
    if unknown:
      raise app.UsageError(f"Unknown --rows {unknown}; choose from {keys}.")
    keys = [k for k in keys if k in _ROWS.value]
  jobs = [("table1", LABELLED_FRACTION, key, labels[key]) for key in keys]
  if _FIG5.value:
    jobs += [("fig5", fraction, key, "pu") for fraction in _fractions()
             for key in ("ClassWeighted", "SoftmaxLoss")]
  return jobs


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  config = experiment.preset(PRESETS)
  generalized = _generalized()
  jobs = plan()
  # Jobs grouped by their training data, so each dataset is prepared once per
  # repeat; Fig. 5's runs at Table 1's fraction are Table 1's (reused).
  groups: dict[tuple[str, float], list] = {}
  for table, fraction, key, labels in jobs:
    data_key = (labels, fraction if labels == "pu" else LABELLED_FRACTION)
    groups.setdefault(data_key, []).append((table, fraction, key))
  experiment.keep_freed_memory()
  experiment.enable_compilation_cache()
  out = experiment.Outputs(FLAGS.workdir)
  num_classes = None
  values: dict[tuple, list[float]] = {}  # (table, row, column) -> one value per repeat
  for seed in experiment.repeat_seeds():
    for (labels, fraction), group in groups.items():
      data = make_data(labels, seed, config, fraction)
      num_classes = data.num_classes
      rows = {row.key: row for row in table1_rows(num_classes, generalized,
                                                  _NNPU_SURROGATE.value)}
      sample = next(iter(data.eval_iter()))
      for table, fraction, key in group:
        row = rows[key]
        spec = train_spec(row, data, config, fraction)
        annotation = row.annotation(fraction)
        result = runs.train(
            spec, train_iter_fn=data.train_iter, eval_batches_fn=data.eval_iter,
            sample_batch=sample, run_dir=out.run_dir(annotation, row.name, seed), seed=seed,
            eval_label_key="true_label", score_fn=table_scores)
        scores = table_scores(result.last(1)[0])
        logging.info("seed %d, %s / %s: %s", seed, annotation, row.name, scores)
        cell_row = (annotation, row.name) if table == "table1" else (f"{fraction:g}", row.name)
        for column, value in scores.items():
          values.setdefault((table, cell_row, column), []).append(value)

  # Table 1 in the order trained, Fig. 5 by labelled fraction (sorted is stable).
  fig5_order = lambda item: (item[0][0] == "fig5", float(item[0][1][0])
                             if item[0][0] == "fig5" else 0.)
  for (table, row, column), vals in sorted(values.items(), key=fig5_order):
    out.add(table, row, column, vals)

  specs = [report.paper_spec("table1")]
  epilogue = ""
  if _FIG5.value:
    specs.append(FIG5_TABLE)
    curves: dict[str, dict[float, tuple[float, float]]] = {}
    for cell in out.cells:
      if cell.table == "fig5" and cell.column == "mean F1":
        curves.setdefault(cell.row[1], {})[float(cell.row[0])] = (cell.mean, cell.std)
    path = plots.plot_f1_vs_labelled_fraction(out.path("fig5_f1_vs_labelled_fraction.png"),
                                              curves)
    epilogue = f"Figure 5: `{path}`."
  seeds = experiment.repeat_seeds()
  length = (f"{config['steps']} steps" if config["steps"] else f"{config['epochs']:g} epochs")
  preamble = (
      f"# Classification with partially labelled relevant data (§5.1.2, Table 1)\n\n"
      f"Dataset `{FLAGS.dataset}` ({num_classes} classes: 0 non-relevant, "
      f"1..{num_classes - 1} relevant), Table 6 CNN, Adam {config['learning_rate']:g}, "
      f"batch {config['batch_size']}, {length} per row (BootstrapHard: class-weighted for "
      f"the first {config['bootstrap_epochs']:g} epoch(s)); scored at the last step on the "
      f"test split with true labels. Mean ± std over {len(seeds)} repeat(s) with different "
      f"P/U splits (seeds {seeds}).\n")
  markdown = out.write(specs, compare_with_paper=FLAGS.dataset == "cifar", preamble=preamble,
                       epilogue=epilogue)
  print(markdown)


if __name__ == "__main__":
  app.run(main)
