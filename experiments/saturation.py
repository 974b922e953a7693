r"""Beyond the thesis (§6, open question 2): where the generalised sigmoid loss saturates.

The thesis closes (§6) with "we are not able to determine what is the
threshold when the sigmoid loss saturates" and proposes a parametrised
sigmoid loss α (1 / (1 + exp(βz)))^γ whose hyperparameters need "future
investigation". This experiment is that investigation on small problems:
`jaxpu.losses.generalized_sigmoid_negative`,

  l(f, 1) = -log σ(f),        l(f, 0) = α σ(βf)^γ,

is trained over a grid of (α, β, γ). α scales the negative term against the
positives' logistic term; β sets how fast it saturates: for a unit
labelled negative with a large output f (an unlabelled positive) the
loss is flat — α σ(βf)^γ reaches 95 % of α at f₉₅ = logit(0.95^{1/γ}) / β;
γ sets where it starts to rise (large γ: negatives with f ≪ 0 cost almost
nothing). α = β = γ = 1 is the class-dependent sigmoid loss of eq. 8, in
every grid (the study shows where eq. 8 sits among its neighbours). The
three parameters act together through the slope of the negative term at the
decision boundary, s = d l(f, 0)/df at f = 0 = α β γ / 2^(γ+1) (eq. 8: 1/4):
the summary reports how well s, and how well f₉₅, order the grid's scores
(Spearman's ρ).

Two problems, each at two label-noise rates, `repeats` repeats (seeds
seed + r: initialisation, shuffling and which labels are dropped):

- two moons (§5.1.1's MLP 2×6 and training, `experiments.moons`) with PU
  labels, `pu_labels:<f>` for each labelled fraction f (0.5 and 0.3: 50 %
  and 70 % of the positives unlabelled), the full α × β × γ grid. Scores
  of the positive class on an independent test draw with true labels:
  average precision (threshold-free, points ranked by the logit),
  precision, recall and F1 at f = 0 (σ = 0.5), at the last step;
- binary segmentation on the embedded synthetic data (§5.2's set-up and
  training, `experiments.binary_segmentation`) with `unsegment_objects:<r>`
  for each rate r (0.5, 0.7), a β × γ grid at α = 1. Scores against the
  complete test labels, each repeat the mean of its last snapshots:
  foreground average precision (pixels ranked by the logit), foreground
  recall and precision at 0.5, mean IU.

Outputs in the workdir: `results.json`/`results.md` (one row per rate and
grid cell, mean ± std over the repeats, and a summary computed from those
numbers: the best cell per rate by AP and by F1 / mean IU, where eq. 8
ranks, and whether the best cell moves from the lower to the higher rate),
`moons_heatmaps.png` and `segmentation_heatmaps.png` (each score over the
grid, one panel per α and rate), `recall_precision.png` (recall against
precision of every grid cell, coloured by s), and one run folder per
training.

  python -m experiments.saturation                       # cpu: about 35 min on 2 CPU cores
  python -m experiments.saturation --config.repeats=1 --workdir=/tmp/saturation

Settings: `experiments/configs/saturation.py`.
"""

from __future__ import annotations

import itertools
import math
import os
from typing import Sequence

from absl import logging
import jax
import numpy as np

from experiments import common
from jaxpu import analysis
from jaxpu import metrics
from jaxpu import models
from jaxpu import predict as prediction
from jaxpu import report
from jaxpu import runs
from jaxpu import segmentation_runs as seg
from jaxpu.data import pipeline
from jaxpu.data import summaries
from jaxpu.thesis import columns

LOSS = "generalized_sigmoid_negative"
DATASETS = ("synthetic", "voc")
SELECTION = ("repeats",)
EQ8 = (1.0, 1.0, 1.0)  # α = β = γ = 1: the sigmoid loss of eq. 8
GRID_KEYS = ("α", "β", "γ")

MOONS = report.TableSpec(
    "saturation_moons", "Two moons with PU labels: generalised sigmoid loss α σ(βf)^γ over "
    "the grid; positive class on a held-out test draw with true labels",
    ("unlabelled",) + GRID_KEYS, ("AP", "precision", "recall", "f1"))
SEGMENTATION = report.TableSpec(
    "saturation_segmentation", "Binary segmentation with unsegmented objects: generalised "
    "sigmoid loss α σ(βf)^γ over the grid; against the complete test labels",
    ("unsegmented",) + GRID_KEYS, ("fg AP", "fg rec.", "fg prec.", "mean IU"))
# Per table: the score that ranks the cells, the second one reported, the
# heat-map panels, and the (x, y) of the recall-precision figure.
RANKING = {MOONS.table: ("AP", "f1"), SEGMENTATION.table: ("fg AP", "mean IU")}
HEATMAPS = {MOONS.table: ("AP", "recall", "f1"), SEGMENTATION.table: ("fg AP", "fg rec.",
                                                                      "mean IU")}
TRADEOFF = {MOONS.table: ("recall", "precision"), SEGMENTATION.table: ("fg rec.", "fg prec.")}


def grid(section) -> list[tuple[float, float, float]]:
  """Every (α, β, γ) of a config section, α slowest."""
  return [tuple(float(v) for v in cell) for cell in itertools.product(
      common.numbers(section.alphas), common.numbers(section.betas), common.numbers(section.gammas))]


def _check_grid(config, section: str) -> None:
  s = config[section]
  rules = (("alphas", lambda v: 0 <= v, "a finite number >= 0 (α scales the loss)"),
           ("betas", lambda v: 0 < v, "a finite number > 0 (β <= 0 gives a loss that "
            "does not rise with f)"),
           ("gammas", lambda v: 0 < v, "a finite number > 0 (γ <= 0 gives a loss that "
            "does not rise with f)"))
  for field, ok, what in rules:
    name = f"{section}.{field}"
    try:
      values = common.numbers(s[field])
    except TypeError:
      values = (s[field],)
    common.require(len(values) >= 1, name, s[field], "needs at least one value")
    for v in values:
      common.require(
          isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
          and ok(v), name, s[field], f"every value must be {what}, e.g. "
          f"--config.{name}=0.5,1,2")
    common.require(len(set(values)) == len(values), name, s[field],
                       "every value must appear once")


def validate(config) -> None:
  """Checks every setting before any data is built."""
  common.check_common(config)
  common.require(config.dataset in DATASETS, "dataset", config.dataset,
                     f"choose one of {DATASETS} (the segmentation half's data)")
  m = config.moons
  for field in ("steps", "batch_size", "checkpoint_every"):
    common.require_positive_int(config, f"moons.{field}")
  common.require(m.checkpoint_every <= m.steps, "moons.checkpoint_every",
                     m.checkpoint_every, f"must be at most moons.steps ({m.steps})")
  common.require(m.optimizer in runs.OPTIMIZERS, "moons.optimizer", m.optimizer,
                     f"choose one of {runs.OPTIMIZERS}")
  common.require(isinstance(m.learning_rate, (int, float)) and m.learning_rate > 0,
                     "moons.learning_rate", m.learning_rate, "must be > 0")
  fractions = common.numbers(m.labelled_fractions)
  common.require(bool(fractions) and len(set(fractions)) == len(fractions),
                     "moons.labelled_fractions", m.labelled_fractions,
                     "needs distinct fractions, e.g. --config.moons.labelled_fractions=0.5,0.3")
  for f in fractions:
    common.require(isinstance(f, (int, float)) and 0 < f < 1, "moons.labelled_fractions",
                       m.labelled_fractions, "every fraction must be in (0, 1), e.g. "
                       "--config.moons.labelled_fractions=0.5,0.3")
  s = config.segmentation
  rates = common.numbers(s.rates)
  common.require(bool(rates) and len(set(rates)) == len(rates), "segmentation.rates",
                     s.rates, "needs distinct rates, e.g. --config.segmentation.rates=0.5,0.7")
  for rate in rates:
    common.require(isinstance(rate, (int, float)) and 0 < rate < 1, "segmentation.rates",
                       s.rates, "every rate must be in (0, 1), e.g. "
                       "--config.segmentation.rates=0.5,0.7")
  for section in ("moons", "segmentation"):
    _check_grid(config, section)
  if config.dataset == "voc":
    common.require(config.data.manual_dir is not None, "data.manual_dir", None,
                       "voc needs the folder with your VOC2011 and SBD archives")
  models.get("mlp", 1, **m.model_options)
  models.get(s.model, 1, **s.model_options)


def _row(rate_label: str, cell) -> tuple[str, ...]:
  return (rate_label,) + tuple(f"{v:g}" for v in cell)


def moons_label(fraction: float) -> str:
  return f"{1 - fraction:.0%}"


def segmentation_label(rate: float) -> str:
  return f"{rate:.0%}"


# ----------------------------------------------------------------------------
# Two moons.
# ----------------------------------------------------------------------------


def moons_spec(config, cell) -> runs.TrainSpec:
  m = config.moons
  return runs.TrainSpec(
      model="mlp", num_classes=1, loss=LOSS, loss_kwargs=dict(zip(("alpha", "beta", "gamma"),
                                                                  cell)),
      optimizer=m.optimizer, learning_rate=m.learning_rate, steps=m.steps,
      batch_size=m.batch_size, checkpoint_every=m.checkpoint_every,
      log_every=m.checkpoint_every, model_options=tuple(sorted(m.model_options.items())))


def moons_average_precision(spec: runs.TrainSpec, params, batches) -> float:
  """AP of the positive class on the test draw (true labels), points ranked by the logit."""
  model = spec.build_model()
  apply = prediction.apply_fn(model)
  logits, labels = [], []
  for batch in batches:
    logits.append(np.asarray(jax.device_get(apply(params, batch["image"])))[:, 0])
    labels.append(np.asarray(jax.device_get(batch["true_label"])))
  labels = np.concatenate(labels)
  return seg.average_precision(np.concatenate(logits), labels,
                               where=(labels == 0) | (labels == 1))


def run_moons(config, out: common.Outputs, seeds: Sequence[int]) -> None:
  m = config.moons
  cells = grid(m)
  specs = {cell: moons_spec(config, cell) for cell in cells}  # fails before any data
  for fraction in common.numbers(m.labelled_fractions):
    label = moons_label(fraction)
    values: dict = {}
    for seed in seeds:
      data = pipeline.make_classification_data(
          "moons", batch_size=m.batch_size, corruption=f"pu_labels:{fraction}",
          noise_seed=seed, seed=seed, with_true_label=True, data_dir=config.data.data_dir)
      points = summaries.training_set(data)
      identity = {"dataset": "moons", "labelled_fraction": fraction, "noise_seed": seed,
                  "train_examples": data.num_train_examples,
                  "eval_examples": data.num_eval_examples}
      for cell in cells:
        spec = specs[cell]
        result = runs.train(
            spec, train_iter_fn=data.train_iter, eval_batches_fn=data.eval_iter,
            sample_batch=points, run_dir=out.run_dir("moons", f"labelled{fraction:g}",
                                                     *cell, seed),
            seed=seed, eval_label_key="true_label",
            score_fn=metrics.positive_class_scores, data_identity=identity)
        scores = metrics.positive_class_scores(result.last(1)[0])
        scores["AP"] = moons_average_precision(spec, result.params(), data.eval_iter())
        logging.info("moons, %s unlabelled, α β γ = %s, seed %d: %s", label, cell, seed,
                     scores)
        for column in MOONS.columns:
          values.setdefault((cell, column), []).append(scores[column])
    for (cell, column), vals in values.items():
      out.add(MOONS.table, _row(label, cell), column, vals)


# ----------------------------------------------------------------------------
# Binary segmentation.
# ----------------------------------------------------------------------------


def foreground_precision(cm) -> dict[str, float]:
  """Precision of the foreground (class 1) of a 2×2 (background, foreground) matrix."""
  return {"fg prec.": float(metrics.per_class_scores(cm)["precision"][1])}


def segmentation_runner(config, workdir: str) -> seg.Runner:
  """The runner of the segmentation grid (validates `--config.segmentation.train`); its
  trainings that differ only in their loss share one `Data`."""
  s = config.segmentation
  spec = runs.TrainSpec.from_config(s.train, "segmentation.train", model=s.model,
                                    model_options=dict(s.model_options), num_classes=1,
                                    loss=LOSS)
  return seg.Runner(workdir, pretrain=spec, finetune=spec,
                    data=seg.data_spec(config.data, config.dataset))


def run_segmentation(config, runner: seg.Runner, out: common.Outputs,
                     seeds: Sequence[int]) -> None:
  s = config.segmentation
  for rate in common.numbers(s.rates):
    for cell in grid(s):
      alpha, beta, gamma = cell
      training = seg.binary_training(f"unsegment_objects:{rate:g}", LOSS, alpha=alpha,
                                     beta=beta, gamma=gamma)
      results = [runner.train(training, None, seed) for seed in seeds]
      scores = {
          "fg AP": [float(np.mean(seg.foreground_average_precision(
              r, runner.dataset(training, None, seed).eval_iter))) for r, seed in zip(results, seeds)],
          "fg rec.": [columns.repeat_value(r, "fg rec.") for r in results],
          "fg prec.": [float(np.nanmean(r.scores(foreground_precision)["fg prec."]))
                       for r in results],
          "mean IU": [columns.repeat_value(r, "mean IU") for r in results]}
      logging.info("segmentation, %s unsegmented, α β γ = %s: %s", rate, cell, scores)
      for column in SEGMENTATION.columns:
        out.add(SEGMENTATION.table, _row(segmentation_label(rate), cell), column,
                scores[column])


# ----------------------------------------------------------------------------
# Summary and figures (computed from the cells).
# ----------------------------------------------------------------------------


def by_rate(cells: Sequence[report.Cell], table: str, column: str
            ) -> dict[str, list[report.Cell]]:
  """Rate label → the table's cells of `column`, in grid order."""
  out: dict[str, list[report.Cell]] = {}
  for c in cells:
    if c.table == table and c.column == column:
      out.setdefault(c.row[0], []).append(c)
  return out


def best_cells(cells: Sequence[report.Cell], table: str, column: str) -> dict[str, report.Cell]:
  """Rate label → the cell of the highest mean of `column` (the first in grid order on a
  tie; NaN means never win)."""
  return {rate: members[analysis.best_index([c.mean for c in members])]
          for rate, members in by_rate(cells, table, column).items()}


def _cell_name(row) -> str:
  return ", ".join(f"{k} = {v}" for k, v in zip(GRID_KEYS, row[1:]))


def _rank(members: Sequence[report.Cell], target: report.Cell) -> int:
  """1 + the number of cells with a strictly higher mean."""
  return 1 + sum(c.mean > target.mean for c in members)


def _correlation_line(members: Sequence[report.Cell], column: str, rate: str,
                      rate_word: str) -> str:
  """Spearman's rank correlation over the grid cells of `column` with the boundary slope
  s and with the saturation point f₉₅ (which of the two orders the cells)."""
  means = np.array([c.mean for c in members], np.float64)
  cell = np.array([[float(v) for v in c.row[1:]] for c in members])
  keep = np.isfinite(means)
  if keep.sum() < 3 or np.ptp(means[keep]) == 0:
    return f"- {rate} {rate_word}, {column}: too few distinct cells for a rank correlation."
  slope = [analysis.boundary_slope(*c) for c in cell]
  f95 = [analysis.saturation_logit(c[1], c[2]) for c in cell]
  best = cell[analysis.best_index(means)]
  return (f"- {rate} {rate_word}, {column} over the {int(keep.sum())} cells: Spearman ρ "
          f"{analysis.rank_correlation(slope, means):+.2f} with the boundary slope s, "
          f"{analysis.rank_correlation(f95, means):+.2f} with f₉₅; the best cell has "
          f"s = {analysis.boundary_slope(*best):.3f} (eq. 8: 0.250).")


def summary(cells: Sequence[report.Cell], table: str, rate_word: str) -> str:
  """The machine-computed summary of a table: best cells per rate, eq. 8's rank, and
  whether the best cell moves between the rates."""
  eq8 = tuple(f"{v:g}" for v in EQ8)
  lines = []
  for column in RANKING[table]:
    best = best_cells(cells, table, column)
    groups = by_rate(cells, table, column)
    for rate, cell in best.items():
      f95 = analysis.saturation_logit(float(cell.row[2]), float(cell.row[3]))
      text = (f"- {rate} {rate_word}, best by {column}: {_cell_name(cell.row)} "
              f"({column} {cell.mean:.3f} ± {cell.std:.3f}, f₉₅ = {f95:.2f})")
      plain = [c for c in groups[rate] if c.row[1:] == eq8]
      if plain:
        p = plain[0]
        text += (f"; eq. 8 (α = β = γ = 1): {p.mean:.3f} ± {p.std:.3f}, rank "
                 f"{_rank(groups[rate], p)} of {len(groups[rate])}")
      lines.append(text + ".")
    for rate, members in groups.items():
      lines.append(_correlation_line(members, column, rate, rate_word))
    rates = list(best)
    if len(rates) >= 2:
      first, last = best[rates[0]], best[rates[-1]]
      if first.row[1:] == last.row[1:]:
        lines.append(f"- By {column}, the best cell stays at {_cell_name(first.row)} from "
                     f"{rates[0]} to {rates[-1]} {rate_word}.")
      else:
        moved = [f"{k} {a} → {b}" for k, a, b in zip(GRID_KEYS, first.row[1:], last.row[1:])
                 if a != b]
        lines.append(f"- By {column}, the best cell moves from {rates[0]} to {rates[-1]} "
                     f"{rate_word}: {', '.join(moved)}.")
  return "\n".join(lines) + "\n"


def heatmap_panels(cells: Sequence[report.Cell], table: str, section) -> list[list[dict]]:
  """The panels of `plots.plot_heatmaps`: one row per (score, α), one column per rate;
  each panel β (rows) × γ (columns)."""
  betas = [f"{float(v):g}" for v in common.numbers(section.betas)]
  gammas = [f"{float(v):g}" for v in common.numbers(section.gammas)]
  alphas = [f"{float(v):g}" for v in common.numbers(section.alphas)]
  rows = []
  for column in HEATMAPS[table]:
    groups = by_rate(cells, table, column)
    for alpha in alphas:
      row = []
      for rate, members in groups.items():
        means = {c.row[1:]: c.mean for c in members}
        values = np.array([[means.get((alpha, b, g), np.nan) for g in gammas] for b in betas])
        row.append(dict(values=values, row_labels=betas, col_labels=gammas, row_name="β",
                        col_name="γ", title=f"{column}, {rate}, α = {alpha}"))
      rows.append(row)
  return rows


def tradeoff_panel(cells: Sequence[report.Cell], table: str, title: str) -> dict:
  """A panel of `plots.plot_recall_precision`: every grid cell and rate as one point."""
  x_name, y_name = TRADEOFF[table]
  xs, ys = by_rate(cells, table, x_name), by_rate(cells, table, y_name)
  eq8 = tuple(f"{v:g}" for v in EQ8)
  points = dict(x=[], y=[], colour=[], group=[], highlight=[])
  for rate in xs:
    for cx, cy in zip(xs[rate], ys[rate]):
      points["x"].append(cx.mean)
      points["y"].append(cy.mean)
      points["colour"].append(analysis.boundary_slope(*(float(v) for v in cx.row[1:])))
      points["group"].append(rate)
      points["highlight"].append(cx.row[1:] == eq8)
  return dict(title=title, xlabel=x_name, ylabel=y_name, **points)


def run(config, workdir: str) -> list[report.Cell]:
  """Trains both grids for every rate and repeat; writes tables, summary and figures."""
  validate(config)
  runner = segmentation_runner(config, workdir)  # validates the settings before the claim
  resolved = common.claim_workdir(workdir, config, selection=SELECTION,
                                  experiment="saturation")
  out = common.Outputs(workdir, resolved)
  seeds = common.repeat_seeds(config)
  run_moons(config, out, seeds)
  run_segmentation(config, runner, out, seeds)

  from jaxpu import plots  # pylint: disable=g-import-not-at-top
  moons_fig = plots.plot_heatmaps(
      out.path("moons_heatmaps.png"), heatmap_panels(out.cells, MOONS.table, config.moons),
      title="Two moons, PU labels: l(f, 0) = α σ(βf)^γ\nmean over repeats; box: best per "
            "panel; rate: positives unlabelled")
  seg_fig = plots.plot_heatmaps(
      out.path("segmentation_heatmaps.png"),
      heatmap_panels(out.cells, SEGMENTATION.table, config.segmentation),
      title="Binary segmentation, unsegmented objects: l(f, 0) = α σ(βf)^γ\nmean over "
            "repeats; box: best per panel; rate: objects unsegmented")
  tradeoff_fig = plots.plot_recall_precision(
      out.path("recall_precision.png"),
      [tradeoff_panel(out.cells, MOONS.table, "Two moons (positive class)"),
       tradeoff_panel(out.cells, SEGMENTATION.table, "Binary segmentation (foreground)")],
      colour_label="s = α β γ / 2^(γ+1): slope of l(f, 0) at f = 0",
      title="Recall vs precision of every grid cell (star: eq. 8, α = β = γ = 1)")

  m, s = config.moons, config.segmentation
  preamble = (
      "# Where the sigmoid loss saturates (thesis §6, open question 2)\n\n"
      "The generalised sigmoid loss l(f, 1) = -log σ(f), l(f, 0) = α σ(βf)^γ "
      "(`generalized_sigmoid_negative`) over a grid of α, β, γ; α = β = γ = 1 is eq. 8. "
      "f₉₅ = logit(0.95^(1/γ)) / β is the output beyond which the negative term is flat "
      "(≥ 95 % of α); s = α β γ / 2^(γ+1) is its slope at the decision boundary f = 0 (how "
      f"hard it pushes an unlabelled positive there towards background). Mean ± std over {len(seeds)} repeat(s) (seeds {seeds}).\n\n"
      f"Two moons: MLP 2×6 ({m.model_options.activation}), {m.optimizer} "
      f"{m.learning_rate:g}, full batch, {m.steps} steps; `pu_labels` with "
      f"{', '.join(f'{f:g}' for f in common.numbers(m.labelled_fractions))} of the positives "
      "labelled; scored at the last step on an independent test draw with true labels "
      "(AP: ranked by the logit; precision, recall, F1 at f = 0).\n\n"
      f"Binary segmentation on `{config.dataset}`: {s.model}, {s.train.optimizer} "
      f"{s.train.learning_rate:g} ({s.train.schedule}), {s.train.steps} steps of "
      f"{s.train.batch_size}; `unsegment_objects` at "
      f"{', '.join(f'{r:g}' for r in common.numbers(s.rates))}; scored against the complete test "
      f"labels, each repeat the mean of its last {s.train.keep} snapshots (fg AP: pixels "
      "ranked by the logit; recall, precision at 0.5).\n\n"
      "## Summary (computed from the tables below)\n\n"
      f"Two moons:\n\n{summary(out.cells, MOONS.table, 'unlabelled')}\n"
      f"Binary segmentation:\n\n"
      f"{summary(out.cells, SEGMENTATION.table, 'unsegmented')}\n")
  epilogue = "Figures: " + ", ".join(f"`{os.path.basename(p)}`"
                                     for p in (moons_fig, seg_fig, tradeoff_fig)) + "."
  markdown = out.write([MOONS, SEGMENTATION], preamble=preamble, epilogue=epilogue)
  print(markdown)
  return out.cells


if __name__ == "__main__":
  from experiments import cli  # pylint: disable=g-import-not-at-top
  cli.main("saturation", run)
