r"""§5.1.1, Figures 3 and 4: decision boundaries of a 2×6 MLP on two moons with PU labels.

Two moons, 400 points per class; half of the positives (class 1, the lower
moon) are labelled negative (`pu_labels:0.5`, a new split per repeat). The
multilayer perceptron of §5.1.1 (two hidden layers of six tanh units, one
output logit) is trained full-batch with Adam, once per row:

| row | labels | loss |
|---|---|---|
| true / Logistic | true labels | logistic (the baseline boundary) |
| 50% unlabelled / Logistic | PU | logistic |
| 50% unlabelled / WeightedLogistic(1, 0.5) | PU | weighted logistic, α = 1, β = 0.5 (eq. 6) |
| 50% unlabelled / Sigmoid | PU | class-dependent sigmoid loss (eq. 8) |

Outputs in the workdir: `results.json`/`results.md` (precision, recall and
F1 of the positive class on an independent test draw with true labels, mean
± std over the repeats), `fig3_moons_loss.png` (decision regions, marker
size = per-class normalised training loss), `fig4_moons_derivative.png`
(marker size = per-class normalised |d loss / d f|, from `jax.grad` of the
library's losses), and one run folder per row and seed. The figures show
the first repeat.

  python -m experiments.moons                       # 3 repeats, about a minute on 2 CPU cores
  python -m experiments.moons --config.repeats=1 --workdir=/tmp/moons

Settings: `experiments/configs/moons.py`.
"""

from __future__ import annotations

import functools

from absl import logging
import jax
import numpy as np

from experiments import common
from jaxpu import losses
from jaxpu import metrics
from jaxpu import models
from jaxpu import predict as prediction
from jaxpu.thesis import figures
from jaxpu import report
from jaxpu import runs
from jaxpu.data import pipeline
from jaxpu.data import summaries
from jaxpu.thesis import rows as thesis_rows

SELECTION = ("repeats",)

TABLE = report.TableSpec(
    "moons", "Two moons (§5.1.1): positive class on a held-out test draw with true labels",
    ("labels", "loss"), ("precision", "recall", "f1"))


def _with_true_labels(train_iter_fn, start_step):
  """The training batches with the true labels in place of the observed ones."""
  for batch in train_iter_fn(start_step):
    yield {**batch, "label": batch["true_label"]}


def _panels(row, spec, result, points, grid_size):
  """The Fig. 3 and Fig. 4 panels of one trained row."""
  model, params = spec.build_model(), result.params()
  labels = points["true_label"] if row.true_labels else points["label"]
  x = points["image"]
  low, high = x.min(0) - 0.4, x.max(0) + 0.4
  gx, gy = np.meshgrid(np.linspace(low[0], high[0], grid_size),
                       np.linspace(low[1], high[1], grid_size))
  grid = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)
  logit = prediction.apply_fn(model)  # one output: column 0
  probability = np.asarray(jax.nn.sigmoid(logit(params, grid)[:, 0])).reshape(gx.shape)
  loss_fn = functools.partial(losses.get(row.loss), **dict(row.loss_kwargs))
  loss, derivative = figures.pointwise_loss_and_derivative(loss_fn, logit(params, x)[:, 0],
                                                           labels)
  title = f"{row.name} ({row.labels} labels)"
  shared = dict(title=title, grid_x=gx, grid_y=gy, probability=probability, points=x,
                labels=labels)
  return (dict(shared, sizes=figures.per_class_normalised(loss, labels)),
          dict(shared, sizes=figures.per_class_normalised(derivative, labels)))


def validate(config) -> None:
  """Checks every setting before any data is built."""
  common.check_common(config)
  common.require(config.dataset == "moons", "dataset", config.dataset,
                     "this experiment runs on 'moons' only")
  for field in ("steps", "batch_size", "checkpoint_every", "grid"):
    common.require_positive_int(config, field)
  common.require(config.checkpoint_every <= config.steps, "checkpoint_every",
                     config.checkpoint_every, f"must be at most steps ({config.steps})")
  common.require(config.optimizer in runs.OPTIMIZERS, "optimizer", config.optimizer,
                     f"choose one of {runs.OPTIMIZERS}")
  common.require(config.learning_rate > 0, "learning_rate", config.learning_rate,
                     "must be > 0")
  common.require_fraction(config, "labelled_fraction")
  for field in ("weighted_positive_weight", "weighted_negative_weight"):
    value = config[field]
    common.require(isinstance(value, (int, float)) and 0 <= value < float("inf"), field,
                       value, "must be a finite number >= 0")
  models.get("mlp", 1, **config.model_options)


def train_spec(row, config) -> runs.TrainSpec:
  return runs.TrainSpec(
      model="mlp", num_classes=1, loss=row.loss, loss_kwargs=row.loss_kwargs,
      optimizer=config.optimizer, learning_rate=config.learning_rate, steps=config.steps,
      batch_size=config.batch_size, checkpoint_every=config.checkpoint_every,
      log_every=config.checkpoint_every,
      model_options=tuple(sorted(config.model_options.items())))


def run(config, workdir: str) -> list[report.Cell]:
  """Trains every row for every repeat; writes the table and Figs. 3-4 into `workdir`."""
  validate(config)
  resolved = common.claim_workdir(workdir, config, selection=SELECTION,
                                  experiment="moons")
  out = common.Outputs(workdir, resolved)
  table_rows = thesis_rows.moons_rows(config.weighted_positive_weight,
                                      config.weighted_negative_weight)
  specs = {row: train_spec(row, config) for row in table_rows}  # fails before any data
  values = {}  # (row, column) -> [value per repeat]
  loss_panels, derivative_panels = [], []
  seeds = common.repeat_seeds(config)
  for repeat, seed in enumerate(seeds):
    data = pipeline.make_classification_data(
        config.dataset, batch_size=config.batch_size,
        corruption=f"pu_labels:{config.labelled_fraction}", noise_seed=seed, seed=seed,
        with_true_label=True, data_dir=config.data.data_dir)
    points = summaries.training_set(data)
    identity = {"dataset": config.dataset, "labelled_fraction": config.labelled_fraction,
                "noise_seed": seed, "train_examples": data.num_train_examples,
                "eval_examples": data.num_eval_examples}
    for row in table_rows:
      spec = specs[row]
      train_iter_fn = (functools.partial(_with_true_labels, data.train_iter)
                       if row.true_labels else data.train_iter)
      result = runs.train(spec, train_iter_fn=train_iter_fn, eval_batches_fn=data.eval_iter,
                          sample_batch=points, run_dir=out.run_dir(row.labels, row.name, seed),
                          seed=seed, eval_label_key="true_label",
                          score_fn=metrics.positive_class_scores,
                          data_identity=dict(identity, true_labels=row.true_labels))
      scores = metrics.positive_class_scores(result.last(1)[0])
      logging.info("seed %d, %s / %s: %s", seed, row.labels, row.name, scores)
      for column in TABLE.columns:
        values.setdefault(((row.labels, row.name), column), []).append(scores[column])
      if repeat == 0:
        loss_panel, derivative_panel = _panels(row, spec, result, points, config.grid)
        loss_panels.append(loss_panel)
        derivative_panels.append(derivative_panel)

  for (row, column), vals in values.items():
    out.add(TABLE.table, row, column, vals)
  fig3 = figures.plot_decision_regions(
      out.path("fig3_moons_loss.png"), loss_panels,
      title="Fig. 3: MLP 2×6 on two moons, 50% of the positives labelled negative",
      size_label="per-class normalised training loss")
  fig4 = figures.plot_decision_regions(
      out.path("fig4_moons_derivative.png"), derivative_panels,
      title="Fig. 4: derivatives of the training loss w.r.t. the model output",
      size_label="per-class normalised |d loss / d f|")
  preamble = (
      f"# Two moons (§5.1.1, Figs. 3-4)\n\n"
      f"MLP 2×6 ({config.model_options.activation}), {config.optimizer} "
      f"{config.learning_rate:g}, full batch ({config.batch_size} points), {config.steps} "
      f"steps; {config.labelled_fraction:.0%} of the positives labelled (the rest labelled "
      f"negative), a new split per repeat. Test: an independent draw of 400 points per class "
      f"with true labels. Mean ± std over {len(seeds)} repeat(s) (seeds {seeds}), scored at "
      f"the last step.\n")
  epilogue = f"Figures: `{fig3}`, `{fig4}` (first repeat)."
  markdown = out.write([TABLE], preamble=preamble, epilogue=epilogue)
  print(markdown)
  return out.cells


if __name__ == "__main__":
  from experiments import cli  # pylint: disable=g-import-not-at-top
  cli.main("moons", run)
