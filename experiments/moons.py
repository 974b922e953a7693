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

Outputs in --workdir: `results.json`/`results.md` (precision, recall and F1
of the positive class on an independent test draw with true labels, mean ±
std over the repeats), `fig3_moons_loss.png` (decision regions, marker size =
per-class normalised training loss), `fig4_moons_derivative.png` (marker
size = per-class normalised |d loss / d f|, from `jax.grad` of the
library's losses), and one run folder per row and seed (checkpoints,
TensorBoard logs). The figures show the first repeat.

  python -m experiments.moons                       # 3 repeats, about a minute on 2 CPU cores
  python -m experiments.moons --repeats=1 --workdir=/tmp/moons

The thesis gives no optimiser settings for this experiment; every scale uses
the same small full-batch setting (the MLP has 67 parameters), `paper` only
differs by training longer.
"""

from __future__ import annotations

import dataclasses
import functools

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np

from jaxpu import experiment
from jaxpu import losses
from jaxpu import metrics
from jaxpu import plots
from jaxpu import report
from jaxpu import runs
from jaxpu.data import pipeline

experiment.define_flags("moons", datasets=("moons",), default_dataset="moons")
FLAGS = flags.FLAGS
FLAGS.set_default("repeats", 3)  # Cheap enough to show the spread over P/U splits.

LABELLED_FRACTION = 0.5  # §5.1.1: half of the positive examples are labelled negative.
# The thesis does not name the activation; tanh gave smooth boundaries and
# stable fits over seeds (ReLU's 2×6 net sometimes stops at a crude boundary).
MODEL_OPTIONS = (("activation", "tanh"),)

PRESETS = {
    "smoke": dict(steps=40, batch_size=800, learning_rate=0.03, checkpoint_every=20, grid=40),
    "cpu": dict(steps=2000, batch_size=800, learning_rate=0.03, checkpoint_every=500, grid=150),
    "paper": dict(steps=10000, batch_size=800, learning_rate=0.01, checkpoint_every=2000,
                  grid=300),
}

TABLE = report.TableSpec(
    "moons", "Two moons (§5.1.1): positive class on a held-out test draw with true labels",
    ("labels", "loss"), ("precision", "recall", "f1"))


@dataclasses.dataclass(frozen=True)
class Row:
  labels: str
  name: str
  loss: str
  loss_kwargs: tuple = ()
  true_labels: bool = False


ROWS = (
    Row("true", "Logistic", "logistic", true_labels=True),
    Row("50% unlabelled", "Logistic", "logistic"),
    Row("50% unlabelled", "WeightedLogistic(1, 0.5)", "weighted_logistic",
        (("positive_weight", 1.0), ("negative_weight", 0.5))),
    Row("50% unlabelled", "Sigmoid", "sigmoid_negative"),
)


def positive_class_scores(cm) -> dict[str, float]:
  """Precision, recall and F1 of class 1 (the positive class) of a 2×2 matrix."""
  scores = metrics.classification_scores(cm, relevant=[1])
  return {"precision": scores["mean_precision"], "recall": scores["mean_recall"],
          "f1": scores["mean_f1"], "accuracy": scores["accuracy"]}


def _with_true_labels(train_iter_fn, start_step):
  """The training batches with the true labels in place of the observed ones."""
  for batch in train_iter_fn(start_step):
    yield {**batch, "label": batch["true_label"]}


def _training_set(data) -> dict[str, np.ndarray]:
  """The training examples of one epoch as NumPy (all of them at full batch)."""
  parts = [jax.device_get(batch) for _, batch in zip(range(data.steps_per_epoch),
                                                     data.train_iter(0))]
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _panels(row, spec, result, points, grid_size):
  """The Fig. 3 and Fig. 4 panels of one trained row."""
  model, params = spec.build_model(), result.params()
  labels = points["true_label"] if row.true_labels else points["label"]
  x = points["image"]
  low, high = x.min(0) - 0.4, x.max(0) + 0.4
  gx, gy = np.meshgrid(np.linspace(low[0], high[0], grid_size),
                       np.linspace(low[1], high[1], grid_size))
  grid = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)
  apply = jax.jit(lambda p, v: model.apply({"params": p}, v, train=False)[:, 0])
  probability = np.asarray(jax.nn.sigmoid(apply(params, grid))).reshape(gx.shape)
  loss_fn = functools.partial(losses.get(row.loss), **dict(row.loss_kwargs))
  loss, derivative = plots.pointwise_loss_and_derivative(loss_fn, apply(params, x), labels)
  title = f"{row.name} ({row.labels} labels)"
  common = dict(title=title, grid_x=gx, grid_y=gy, probability=probability, points=x,
                labels=labels)
  return (dict(common, sizes=plots.per_class_normalised(loss, labels)),
          dict(common, sizes=plots.per_class_normalised(derivative, labels)))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  config = experiment.preset(PRESETS)
  experiment.keep_freed_memory()
  experiment.enable_compilation_cache()
  out = experiment.Outputs(FLAGS.workdir)
  values = {}  # (row, column) -> [value per repeat]
  loss_panels, derivative_panels = [], []
  for repeat, seed in enumerate(experiment.repeat_seeds()):
    data = pipeline.make_classification_data(
        FLAGS.dataset, batch_size=config["batch_size"],
        corruption=f"pu_labels:{LABELLED_FRACTION}", noise_seed=seed, seed=seed,
        with_true_label=True, data_dir=FLAGS.data_dir)
    points = _training_set(data)
    for row in ROWS:
      spec = runs.TrainSpec(
          model="mlp", num_classes=1, loss=row.loss, loss_kwargs=row.loss_kwargs,
          learning_rate=config["learning_rate"], steps=config["steps"],
          batch_size=config["batch_size"], checkpoint_every=config["checkpoint_every"],
          log_every=config["checkpoint_every"], model_options=MODEL_OPTIONS)
      train_iter_fn = (functools.partial(_with_true_labels, data.train_iter)
                       if row.true_labels else data.train_iter)
      result = runs.train(spec, train_iter_fn=train_iter_fn, eval_batches_fn=data.eval_iter,
                          sample_batch=points, run_dir=out.run_dir(row.labels, row.name, seed),
                          seed=seed, eval_label_key="true_label",
                          score_fn=positive_class_scores)
      scores = positive_class_scores(result.last(1)[0])
      logging.info("seed %d, %s / %s: %s", seed, row.labels, row.name, scores)
      for column in TABLE.columns:
        values.setdefault(((row.labels, row.name), column), []).append(scores[column])
      if repeat == 0:
        loss_panel, derivative_panel = _panels(row, spec, result, points, config["grid"])
        loss_panels.append(loss_panel)
        derivative_panels.append(derivative_panel)

  for (row, column), vals in values.items():
    out.add(TABLE.table, row, column, vals)
  fig3 = plots.plot_decision_regions(
      out.path("fig3_moons_loss.png"), loss_panels,
      title="Fig. 3: MLP 2×6 on two moons, 50% of the positives labelled negative",
      size_label="per-class normalised training loss")
  fig4 = plots.plot_decision_regions(
      out.path("fig4_moons_derivative.png"), derivative_panels,
      title="Fig. 4: derivatives of the training loss w.r.t. the model output",
      size_label="per-class normalised |d loss / d f|")
  seeds = experiment.repeat_seeds()
  preamble = (
      f"# Two moons (§5.1.1, Figs. 3-4)\n\n"
      f"MLP 2×6 (tanh), Adam {config['learning_rate']:g}, full batch "
      f"({config['batch_size']} points), {config['steps']} steps; "
      f"{LABELLED_FRACTION:.0%} of the positives labelled (the rest labelled negative), "
      f"a new split per repeat. Test: an independent draw of 400 points per class with "
      f"true labels. Mean ± std over {len(seeds)} repeat(s) (seeds {seeds}), scored at the "
      f"last step.\n")
  epilogue = f"Figures: `{fig3}`, `{fig4}` (first repeat)."
  markdown = out.write([TABLE], compare_with_paper=False, preamble=preamble, epilogue=epilogue)
  print(markdown)


if __name__ == "__main__":
  app.run(main)
