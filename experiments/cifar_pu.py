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
| 50%R+U / nnPU | PU | `softmax_nnpu_risk`, logistic surrogate (`nnpu_surrogate`; beyond the thesis) |
| 50%R+U / GeneralizedSoftmaxLoss | PU | `generalized_softmax_negative`, (α, β, γ) = `generalized` (§6; beyond the thesis) |

nnPU's class prior is derived from the known labelled fraction c: the n_L
labelled training examples are a fraction c of the relevant ones, so
n_L (1 - c) / c relevant examples hide among the n_U unlabelled (label 0)
ones, and π = n_L (1 - c) / (c n_U) (`jaxpu.losses.unlabelled_prior`; 1/3
when half of a balanced set is relevant and c = 0.5). The counts are those
of the actual split (one epoch's batches).

The row "nnPU (estimated π)" (key `nnPU-estimated`; §6, open question 3)
trains the same loss with π estimated from data instead: BBE (Garg et al.
2021, `jaxpu.priors.best_bin_estimate`) on the scores of the CrossEntropy PU
row's model (trained, or reused, as a dependency), score = log-odds of
"relevant", logsumexp_{k≥1} f_k - f_0. The scores are those of the test
images with the same PU labelling applied (`pu_labels:c`, same noise seed;
`corrupt_eval`): the model never trained on them, and only their PU labels
enter the estimate (not their true labels). The training split has no
held-out part (the CrossEntropy row trains on all of it). The "prior" table
lists, per repeat, the π of the nnPU row (from c and the split's counts),
the true π of the training split (the relevant share of its unlabelled
examples, from the true labels) and the BBE estimate with its absolute error
against the true π. A prior enters a run's identity rounded to 4 decimals.

`fig5=True` adds Figure 5: the mean F1 of ClassWeighted and SoftmaxLoss for
labelled fractions `fractions` (0.1 ... 0.9; the runs at 0.5 are Table 1's),
as `fig5_f1_vs_labelled_fraction.png` and a `fig5` table. The thesis does not
say how the class weight followed the fraction; it stays 0.5 here.

Datasets: `synthetic` (default: the classification view of the embedded data,
10 relevant categories + 10 others as class 0; the 16×16 `classification`
config at the cpu scale, larger objects than the segmentation data's), `digits` (sklearn's handwritten digits, 0-4 relevant), `cifar`
(CIFAR-10 + CIFAR-100 from TFDS, prepared beforehand with
`tfds build cifar10 cifar100 --data_dir=DIR`; the paper's numbers are shown
beside ours).

  python -m experiments.cifar_pu                            # all rows, CPU-sized
  python -m experiments.cifar_pu --config.dataset=digits    # real images
  python -m experiments.cifar_pu --config=experiments/configs/cifar_pu.py:paper \
      --config.data.data_dir=DIR --config.repeats=3 --config.fig5=True   # on a GPU

Settings: `experiments/configs/cifar_pu.py`.
"""

from __future__ import annotations

import math

from absl import logging
import numpy as np
from scipy import special as scipy_special

from experiments import common
from jaxpu import losses
from jaxpu import metrics
from jaxpu import models
from jaxpu import predict as prediction
from jaxpu.thesis import figures
from jaxpu import priors
from jaxpu import report
from jaxpu import runs
from jaxpu.data import pipeline
from jaxpu.data import summaries
from jaxpu.data import synthetic
from jaxpu.thesis import paper
from jaxpu.thesis import rows as thesis_rows

DATASETS = ("synthetic", "digits", "cifar")
SELECTION = ("repeats", "rows", "fig5", "fractions")

COLUMNS = {"acc.": "accuracy", "mean prec.": "mean_precision", "mean rec.": "mean_recall",
           "mean F1": "mean_f1"}
PRIOR_TABLE = report.TableSpec(
    "prior", "Class prior π of the unlabelled training examples: the nnPU row's (from c and "
    "the counts), true (true labels), and BBE from held-out scores (abs. err.: against the "
    "true π)", ("annotation",), ("nnPU π", "true π", "BBE", "BBE abs. err."))
FIG5_TABLE = report.TableSpec(
    "fig5", "Figure 5: scores against the labelled fraction of the relevant examples",
    ("labelled", "loss"), tuple(COLUMNS))


def table_scores(cm) -> dict[str, float]:
  """Table 1's columns of a confusion matrix (relevant classes 1..K)."""
  scores = metrics.classification_scores(cm)
  return {column: scores[key] for column, key in COLUMNS.items()}


HELD_OUT = dict(corrupt_eval=True, as_numpy=True)  # the test split with PU labels too
EXTRA = ("corrupt_eval", "as_numpy", "eval_split")  # options that are not the data's identity


def make_data(config, labels: str, seed: int, fraction: float, **extra):
  """The training/test data of one row type; the split and order follow `seed`.

  `extra`: further `make_classification_data` options that leave the training
  data as it is (e.g. `HELD_OUT`: the test split gets the PU labelling too)."""
  kwargs = dict(batch_size=config.batch_size, seed=seed, noise_seed=seed,
                with_true_label=True, eval_batch_size=config.eval_batch_size,
                data_dir=config.data.data_dir, **extra)
  overrides = {k: v for k, v in config.data.synthetic.items() if v is not None}
  if config.dataset == "synthetic" and (overrides or config.data.synthetic_config != "single"):
    kwargs["config"] = synthetic.synthetic_config(config.data.synthetic_config, **overrides)
  if config.dataset != "cifar" and config.image_size:
    kwargs["image_size"] = config.image_size
  if labels == "subset":
    kwargs["subsample"] = config.labelled_fraction
  elif labels == "pu":
    kwargs["corruption"] = f"pu_labels:{fraction}"
  data = pipeline.make_classification_data(config.dataset, **kwargs)
  identity = {k: v for k, v in kwargs.items() if k not in ("data_dir", "batch_size",
                                                            "eval_batch_size") + EXTRA}
  if "config" in identity:
    identity["config"] = identity["config"].name
  identity.update(dataset=config.dataset, train_examples=data.num_train_examples,
                  eval_examples=data.num_eval_examples, classes=list(data.class_names))
  return data, identity


def train_spec(row, data, config, fraction: float, prior=None) -> runs.TrainSpec:
  """The TrainSpec of `row` on `data` (epochs → steps; nnPU's prior from the data,
  or `prior` when given, rounded to 4 decimals and kept inside (0, 1))."""
  epoch = data.steps_per_epoch
  steps = config.steps or runs.steps_for_epochs(config.epochs, epoch)
  loss_kwargs = dict(row.loss_kwargs)
  if prior is not None:
    loss_kwargs["prior"] = min(0.9999, max(0.0001, round(float(prior), 4)))
  elif row.loss == "softmax_nnpu_risk":
    counts = summaries.label_counts(data)
    loss_kwargs["prior"] = losses.unlabelled_prior(counts[1:].sum(), counts[0], fraction)
    logging.info("nnPU prior (labelled fraction %.2f): %.4f", fraction, loss_kwargs["prior"])
  first_steps = 0
  if row.first_loss is not None:
    first_steps = min(runs.steps_for_epochs(config.bootstrap_epochs, epoch), steps - 1)
  return runs.TrainSpec(
      model="cifar_cnn", num_classes=data.num_classes, loss=row.loss,
      loss_kwargs=tuple(sorted(loss_kwargs.items())), first_loss=row.first_loss,
      first_loss_kwargs=row.first_loss_kwargs, first_loss_steps=first_steps,
      optimizer=config.optimizer, learning_rate=config.learning_rate, steps=steps,
      batch_size=config.batch_size,
      checkpoint_every=max(1, math.ceil(steps / config.snapshots)),
      log_every=max(1, min(100, steps // 4)),
      model_options=tuple(sorted(config.model_options.items())))


def relevant_scores(spec: runs.TrainSpec, params, batches) -> tuple:
  """(score, observed label, true label) of every example of `batches` (padding dropped);
  score = logsumexp_{k≥1} f_k - f_0, the model's log-odds of a relevant class."""
  model = spec.build_model()
  apply = prediction.apply_fn(model)
  scores, labels, true = [], [], []
  for batch in batches:
    logits = np.asarray(apply(params, batch["image"]), np.float64)
    label, true_label = np.asarray(batch["label"]), np.asarray(batch["true_label"])
    keep = (label != 255) & (true_label != 255)
    scores.append((scipy_special.logsumexp(logits[:, 1:], axis=1) - logits[:, 0])[keep])
    labels.append(label[keep])
    true.append(true_label[keep])
  return tuple(np.concatenate(x) for x in (scores, labels, true))


def estimate_prior(config, data, identity, seed: int, fraction: float, out, sample,
                   table_rows) -> dict:
  """BBE's π from the CrossEntropy PU row's scores on the PU-labelled test split, and the
  true π of the training split (module docstring). Trains that row if it is not done."""
  row = table_rows["CrossEntropy"]
  spec = train_spec(row, data, config, fraction)
  result = runs.train(
      spec, train_iter_fn=data.train_iter, eval_batches_fn=data.eval_iter,
      sample_batch=sample, run_dir=out.run_dir(row.annotation(fraction, config.labelled_fraction),
                                               row.name, seed),
      seed=seed, eval_label_key="true_label", score_fn=table_scores, data_identity=identity)
  heldout, _ = make_data(config, "pu", seed, fraction, **HELD_OUT)
  scores, observed, _ = relevant_scores(spec, result.params(), heldout.eval_iter())
  # The whole training split once (as evaluation batches), with its PU and true labels.
  train_view, _ = make_data(config, "pu", seed, fraction, eval_split="train", **HELD_OUT)
  batches = [(b["label"], b["true_label"]) for b in train_view.eval_iter()]
  train_observed = np.concatenate([b[0] for b in batches])
  train_true = np.concatenate([b[1] for b in batches])
  return {"BBE": priors.best_bin_estimate(scores[observed != 0], scores[observed == 0]),
          "true π": priors.unlabelled_positive_share(train_observed, train_true)}


def validate(config) -> list[tuple[str, float, str, str]]:
  """Checks every setting before any data is built; returns the jobs
  (table, labelled fraction, row key, labels) in training order."""
  common.check_common(config)
  common.require(config.dataset in DATASETS, "dataset", config.dataset,
                     f"choose one of {DATASETS}")
  for field in ("batch_size", "eval_batch_size", "snapshots"):
    common.require_positive_int(config, field)
  if config.steps is not None:
    common.require_positive_int(config, "steps")
  for field in ("epochs", "bootstrap_epochs", "learning_rate"):
    common.require(isinstance(config[field], (int, float)) and config[field] > 0, field,
                       config[field], "must be a number > 0")
  common.require(config.optimizer in runs.OPTIMIZERS, "optimizer", config.optimizer,
                     f"choose one of {runs.OPTIMIZERS}")
  common.require_fraction(config, "labelled_fraction")
  common.require(0 <= config.non_relevant_weight < float("inf"), "non_relevant_weight",
                     config.non_relevant_weight, "must be a finite number >= 0")
  common.require(0 <= config.bootstrap_beta <= 1, "bootstrap_beta", config.bootstrap_beta,
                     "must be in [0, 1]")
  generalized = tuple(config.generalized)
  common.require(len(generalized) == 3 and generalized[0] >= 0 and generalized[1] > 0
                     and generalized[2] > 0, "generalized", config.generalized,
                     "takes alpha >= 0, beta > 0, gamma > 0, e.g. --config.generalized=1,0.5,1")
  common.require(config.nnpu_surrogate in ("logistic", "sigmoid"), "nnpu_surrogate",
                     config.nnpu_surrogate, "choose logistic or sigmoid")
  if config.image_size is not None:
    common.require(config.dataset != "cifar", "image_size", config.image_size,
                       "applies to synthetic and digits only (CIFAR is 32×32); unset it")
    common.require(isinstance(config.image_size, int) and config.image_size >= 8,
                   "image_size", config.image_size, "must be an integer >= 8 (or unset)")
  models.get("cifar_cnn", 2, **config.model_options)
  keys = list(thesis_rows.TABLE1_KEYS)
  chosen = common.names(config.rows)
  unknown = sorted(set(chosen) - set(keys))
  common.require(not unknown, "rows", config.rows, f"unknown {unknown}; choose from {keys}")
  labels = {row.key: row.labels for row in thesis_rows.table1_rows(2)}
  jobs = [("table1", config.labelled_fraction, key, labels[key]) for key in keys
          if not chosen or key in chosen]
  fractions = tuple(config.fractions)
  if config.fig5:
    for f in fractions:
      common.require(isinstance(f, (int, float)) and 0 < f < 1, "fractions",
                         config.fractions, "every fraction must be in (0, 1)")
    jobs += [("fig5", f, key, "pu") for f in sorted(set(fractions))
             for key in ("ClassWeighted", "SoftmaxLoss")]
  return jobs


def run(config, workdir: str) -> list[report.Cell]:
  """Table 1 (and with `fig5`, Fig. 5) of `config` into `workdir`."""
  jobs = validate(config)
  resolved = common.claim_workdir(workdir, config, selection=SELECTION,
                                  experiment="cifar_pu")
  # Jobs grouped by their training data, so each dataset is prepared once per
  # repeat; Fig. 5's runs at Table 1's fraction are Table 1's (reused).
  groups: dict[tuple[str, float], list] = {}
  for table, fraction, key, labels in jobs:
    data_key = (labels, fraction if labels == "pu" else config.labelled_fraction)
    groups.setdefault(data_key, []).append((table, fraction, key))
  out = common.Outputs(workdir, resolved)
  num_classes = None
  values: dict[tuple, list[float]] = {}  # (table, row, column) -> one value per repeat
  seeds = common.repeat_seeds(config)
  for seed in seeds:
    for (labels, fraction), group in groups.items():
      data, identity = make_data(config, labels, seed, fraction)
      num_classes = data.num_classes
      table_rows = {row.key: row for row in thesis_rows.table1_rows(
          num_classes, config.non_relevant_weight, config.bootstrap_beta,
          tuple(config.generalized), config.nnpu_surrogate)}
      sample = next(iter(data.eval_iter()))
      for table, fraction, key in group:
        row = table_rows[key]
        prior = None
        if key == thesis_rows.NNPU_ESTIMATED_KEY:
          found = estimate_prior(config, data, identity, seed, fraction, out, sample, table_rows)
          prior = found["BBE"]
          nnpu_pi = train_spec(table_rows["nnPU"], data, config, fraction).loss_kwargs
          found["nnPU π"] = dict(nnpu_pi)["prior"]
          found["BBE abs. err."] = abs(found["BBE"] - found["true π"])
          for column, value in found.items():
            values.setdefault(("prior", (row.annotation(fraction, config.labelled_fraction),),
                               column), []).append(value)
        spec = train_spec(row, data, config, fraction, prior)
        annotation = row.annotation(fraction, config.labelled_fraction)
        result = runs.train(
            spec, train_iter_fn=data.train_iter, eval_batches_fn=data.eval_iter,
            sample_batch=sample, run_dir=out.run_dir(annotation, row.name, seed), seed=seed,
            eval_label_key="true_label", score_fn=table_scores, data_identity=identity)
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

  specs = [paper.paper_spec("table1")]
  if any(cell.table == "prior" for cell in out.cells):
    specs.append(PRIOR_TABLE)
  epilogue = ""
  if config.fig5:
    specs.append(FIG5_TABLE)
    curves: dict[str, dict[float, tuple[float, float]]] = {}
    for cell in out.cells:
      if cell.table == "fig5" and cell.column == "mean F1":
        curves.setdefault(cell.row[1], {})[float(cell.row[0])] = (cell.mean, cell.std)
    path = figures.plot_f1_vs_labelled_fraction(out.path("fig5_f1_vs_labelled_fraction.png"),
                                              curves)
    epilogue = f"Figure 5: `{path}`."
  length = f"{config.steps} steps" if config.steps else f"{config.epochs:g} epochs"
  preamble = (
      f"# Classification with partially labelled relevant data (§5.1.2, Table 1)\n\n"
      f"Dataset `{config.dataset}` ({num_classes} classes: 0 non-relevant, "
      f"1..{num_classes - 1} relevant), Table 6 CNN, {config.optimizer} "
      f"{config.learning_rate:g}, batch {config.batch_size}, {length} per row (BootstrapHard: "
      f"class-weighted for the first {config.bootstrap_epochs:g} epoch(s)); scored at the last "
      f"step on the test split with true labels. Mean ± std over {len(seeds)} repeat(s) with "
      f"different P/U splits (seeds {seeds}).\n")
  reference = paper.reference_cells(["table1"]) if config.dataset == "cifar" else None
  markdown = out.write(specs, reference=reference, preamble=preamble, epilogue=epilogue)
  print(markdown)
  return out.cells


if __name__ == "__main__":
  from experiments import cli  # pylint: disable=g-import-not-at-top
  cli.main("cifar_pu", run)
