r"""Table 2 and Fig. 6: foreground/background segmentation with unsegmented objects (§5.2).

Binary segmentation (every object class → foreground) trained on complete
labels, and with a fraction of the training objects left unsegmented
(labelled background) under the logistic loss, the class-weighted logistic
loss (background weight 0.5, eq. 6) and the class-dependent sigmoid loss
(eq. 8). Scored against the complete labels of the test split: overall
accuracy, mean recall, frequency-weighted IU, mean IU, and the recall of each
class; mean ± std over repeats × the last five snapshots. Fig. 6 shows test
images with each model's prediction.

`sweep=True` adds, beyond the thesis (which used 50 % only), the rates
`rates` with the foreground average precision (threshold-free: pixels ranked
by the model's foreground logit) next to the foreground recall at 0.5. At
exactly 50 % a 0.5 background weight compensates the drop exactly (the
logistic optimum on an object pixel labelled foreground half the time moves
from 1/2 to 2/3), so the losses differ most at higher rates.

The sweep also trains nnPU (`jaxpu.losses.nnpu_risk`, Kiryo et al. 2017,
sigmoid surrogate; rows `sweep_losses`), whose prior π is the foreground
share of the pixels labelled background in the PU training labels (§6, open
question 3):

- "nnPU (true π)": π computed from the complete training labels
  (`jaxpu.priors.unlabelled_positive_share`; an oracle);
- "nnPU (estimated π)": π estimated by BBE (Garg et al. 2021,
  `jaxpu.priors.best_bin_estimate`) from the logits of the sweep's own
  LogisticLoss run of the same rate and seed (a labelled-vs-unlabelled
  pixel classifier, Elkan & Noto 2008). The logits are those of the test
  images, whose labels get the same `unsegment_objects:rate` corruption
  (same noise seed; `corrupt_eval`): the model never trained on these
  images, and only their corrupted labels enter the estimate (never their
  complete labels). The estimate is thus transductive on the test images,
  not on their labels. The training split has no held-out part (the
  LogisticLoss run trains on all of it).

The "prior" table lists per rate the true π of the training labels, the π of
the corrupted test labels (what the held-out estimate sees, for reference),
the BBE and Elkan & Noto e1 estimates (e1 on g(x) = σ(logit)) and their
absolute errors against the training π. The estimates of each run are
stored in `priors/` and reused, so resuming reproduces the nnPU run folders
(a prior enters a run's key rounded to 4 decimals).

  python -m experiments.binary_segmentation                  # embedded data, minutes
  python -m experiments.binary_segmentation --config.sweep=True --config.repeats=3
  python -m experiments.binary_segmentation \
      --config=experiments/configs/binary_segmentation.py:paper --config.data.manual_dir=~/voc

Settings: `experiments/configs/binary_segmentation.py`.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from experiments import common
from jaxpu import fileio
from jaxpu import metrics
from jaxpu import models
from jaxpu import predict as prediction
from jaxpu import priors
from jaxpu import report
from jaxpu import runs
from jaxpu import segmentation_runs as seg
from jaxpu.data import pipeline
from jaxpu.thesis import columns
from jaxpu.thesis import paper
from jaxpu.thesis import rows as thesis_rows

DATASETS = ("synthetic", "voc")
SELECTION = ("repeats", "sweep", "rates", "examples", "sweep_losses")

SWEEP_SPEC = report.TableSpec(
    "sweep", "Unsegmented-rate sweep: foreground average precision (threshold-free) and "
    "recall at 0.5, against the complete test labels", ("annotation", "loss"),
    ("fg AP", "fg rec.", "mean rec.", "mean IU"))
PRIOR_SPEC = report.TableSpec(
    "prior", "Class prior π of the background-labelled training pixels: true (complete "
    "training labels), of the corrupted test labels, and estimated from the LogisticLoss "
    "run's held-out logits (abs. err.: against the training π)", ("annotation",),
    ("true π", "test π", "BBE", "BBE abs. err.", "EN e1", "EN e1 abs. err."))


def validate(config) -> tuple[float, ...]:
  """Checks every setting before any data is built; returns the sweep's rates (() without)."""
  common.check_common(config)
  common.require(config.dataset in DATASETS, "dataset", config.dataset,
                     f"choose one of {DATASETS}")
  common.require_fraction(config, "table2_rate")
  weight = config.class_weighted_negative_weight
  common.require(isinstance(weight, (int, float)) and 0 <= weight < float("inf"),
                     "class_weighted_negative_weight", weight, "must be a finite number >= 0")
  common.require_positive_int(config, "examples")
  common.require(config.table2_snapshots in columns.SNAPSHOT_STATISTICS, "table2_snapshots",
                 config.table2_snapshots, f"choose one of {columns.SNAPSHOT_STATISTICS}")
  rates = tuple(config.rates) if not isinstance(config.rates, (int, float)) else (config.rates,)
  for rate in rates:
    common.require(isinstance(rate, (int, float)) and 0 < rate < 1, "rates", config.rates,
                       "every rate must be in (0, 1), e.g. --config.rates=0.5,0.7")
  common.require(bool(rates) or not config.sweep, "rates", config.rates,
                     "the sweep needs at least one rate")
  losses = common.names(config.sweep_losses)
  unknown = sorted(set(losses) - set(thesis_rows.SWEEP_LOSSES))
  common.require(bool(losses) and not unknown, "sweep_losses", config.sweep_losses,
                     f"choose some of {list(thesis_rows.SWEEP_LOSSES)}")
  if config.dataset == "voc":
    common.require(config.data.manual_dir is not None, "data.manual_dir", None,
                       "voc needs the folder with your VOC2011 and SBD archives")
  models.get(config.model, 1, **config.model_options)
  return rates if config.sweep else ()


def make_runner(config, workdir: str) -> seg.Runner:
  """The runner of the binary trainings (validates `--config.train`)."""
  spec = runs.TrainSpec.from_config(config.train, "train", model=config.model,
                                    model_options=dict(config.model_options), num_classes=1,
                                    loss="logistic")
  return seg.Runner(workdir, pretrain=spec, finetune=spec,
                    data=seg.data_spec(config.data, config.dataset))


def repeat_scores(runner, training, seeds, statistic: str = "mean") -> dict[str, list[float]]:
  """Column → one value per repeat (the `statistic` of its last snapshots; all 20 classes)."""
  results = [runner.train(training, None, seed) for seed in seeds]
  return {column: [columns.repeat_value(r, column, statistic=statistic) for r in results]
          for column in columns.own_scores(results[0])}


def _read_pixels(batches, params=None, apply=None):
  """(logits or None, observed labels, true labels) of the non-void pixels of `batches`."""
  logits, labels, true = [], [], []
  for batch in batches:
    label, true_label = np.asarray(batch["label"]), np.asarray(batch["true_label"])
    keep = (label != 255) & (true_label != 255)
    labels.append(label[keep])
    true.append(true_label[keep])
    if apply is not None:
      logits.append(np.asarray(apply(params, batch["image"]))[..., 0][keep])
  return (np.concatenate(logits) if apply is not None else None, np.concatenate(labels),
          np.concatenate(true))


def with_corruption(training: seg.Training, corruption: str | None) -> seg.Training:
  """`training` with its labels corrupted by `corruption` instead (None: unchanged), e.g.
  a selection-biased "unsegment_small:0.5" in place of "unsegment_objects:0.5"."""
  return training if corruption is None else dataclasses.replace(training,
                                                                 corruption=corruption)


def estimate_priors(runner, rate: float, seed: int, weight: float,
                    corruption: str | None = None) -> dict[str, float]:
  """The priors of rate `rate`, seed `seed` (module docstring), computed once.

  {"true π": foreground share of the background-labelled training pixels
  (complete labels), "test π": the same on the corrupted test labels, "BBE" and
  "EN e1": estimated from the LogisticLoss run's logits on the corrupted test
  split}. Stored in `workdir/priors/` and read back on later calls.
  `corruption`: the labels' corruption (default `unsegment_objects:<rate>`).
  """
  logistic = with_corruption(thesis_rows.unsegmented(rate, "LogisticLoss", weight), corruption)
  path = os.path.join(runner.workdir, "priors", f"{logistic.key}-seed{seed}.json")
  stored = fileio.read_json(path, what="delete it to estimate the priors again")
  if stored is not None:
    return stored
  result = runner.train(logistic, None, seed)
  spec = runner.data_spec(logistic, None, seed).replace(corrupt_eval=True,
                                                        with_true_label=True)
  # The training split as evaluation batches (every image once, corrupted).
  train_split = pipeline.make_segmentation_data(spec.replace(eval_split="train"),
                                                as_numpy=True)
  _, observed, true = _read_pixels(train_split.eval_iter())
  out = {"true π": priors.unlabelled_positive_share(observed, true)}
  heldout = pipeline.make_segmentation_data(spec, as_numpy=True)
  model = result.spec.build_model()
  apply = prediction.apply_fn(model)
  logits, observed, true = _read_pixels(heldout.eval_iter(), result.params(), apply)
  out["test π"] = priors.unlabelled_positive_share(observed, true)
  out.update(priors.estimates_from_logits(logits[observed == 1], logits[observed == 0]))
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fileio.write_json(path, out)
  return out


def sweep_training(runner, rate: float, name: str, seed: int, weight: float,
                   corruption: str | None = None):
  """The training of sweep row `name` at `rate` for repeat `seed` (nnPU: its prior).
  `corruption`: the labels' corruption (default `unsegment_objects:<rate>`)."""
  if name in thesis_rows.TABLE2_LOSSES:
    return with_corruption(thesis_rows.unsegmented(rate, name, weight), corruption)
  found = estimate_priors(runner, rate, seed, weight, corruption)
  prior = found["true π"] if name == thesis_rows.NNPU_TRUE_PRIOR else found["BBE"]
  return with_corruption(thesis_rows.nnpu_unsegmented(rate, prior), corruption)


def draw_examples(runner, table2_rows, rate, seed, n, path) -> str:
  """Fig. 6: the `n` test images where the sigmoid loss' foreground IoU most exceeds
  the logistic loss' (both trained with `rate` unsegmented), with every row's prediction."""
  from jaxpu.thesis import figures  # pylint: disable=g-import-not-at-top
  predictions = {}
  for row, training in table2_rows:
    result = runner.train(training, None, seed)
    data = runner.dataset(training, None, seed)
    predictions[" ".join(row)] = seg.predict(result.spec, result.params(), data.eval_iter())
  label = thesis_rows.rate_label(rate)
  logistic, sigmoid = predictions[f"{label} LogisticLoss"], predictions[f"{label} SigmoidLoss"]
  gain = (metrics.foreground_iou_per_image(sigmoid["logits"][..., 0] > 0, sigmoid["label"])
          - metrics.foreground_iou_per_image(logistic["logits"][..., 0] > 0, logistic["label"]))
  chosen = np.argsort(-gain, kind="stable")[:n]
  images = data.unpreprocess(logistic["image"][chosen])
  return figures.plot_segmentation_examples(
      path, images, logistic["label"][chosen],
      {name: p["logits"][chosen, ..., 0] > 0 for name, p in predictions.items()},
      title=f"Test images where the sigmoid loss gains most over the logistic loss "
            f"({rate:.0%} unsegmented)")


def run(config, workdir: str) -> list[report.Cell]:
  """Table 2, Fig. 6 and (with `sweep`) the rate sweep of `config` into `workdir`."""
  rates = validate(config)
  runner = make_runner(config, workdir)  # validates the training settings before the claim
  resolved = common.claim_workdir(workdir, config, selection=SELECTION,
                                  experiment="binary_segmentation")
  outputs = common.Outputs(workdir, resolved)
  seeds = common.repeat_seeds(config)
  weight = config.class_weighted_negative_weight
  table2 = thesis_rows.table2_rows(config.table2_rate, weight)

  for row, training in table2:
    for column, values in repeat_scores(runner, training, seeds,
                                        config.table2_snapshots).items():
      outputs.add("table2", row, column, values)
  draw_examples(runner, table2, config.table2_rate, seeds[0], config.examples,
                outputs.path("fig6_examples.png"))

  specs = [paper.paper_spec("table2")]
  if rates:
    curves: dict[str, dict[float, dict]] = {}
    chosen = [n for n in thesis_rows.SWEEP_LOSSES if n in common.names(config.sweep_losses)]
    with_priors = any(n in thesis_rows.SWEEP_NNPU for n in chosen)
    for rate in rates:
      for name in chosen:
        scores: dict[str, list[float]] = {}
        for seed in seeds:
          training = sweep_training(runner, rate, name, seed, weight)
          for column, value in repeat_scores(runner, training, [seed]).items():
            scores.setdefault(column, []).extend(value)
          scores.setdefault("fg AP", []).append(float(np.mean(
              seg.foreground_average_precision(runner.train(training, None, seed),
                                               runner.dataset(training, None, seed).eval_iter))))
        for column in SWEEP_SPEC.columns:
          cell = outputs.add("sweep", (thesis_rows.rate_label(rate), name), column,
                             scores[column])
          curves.setdefault(name, {}).setdefault(rate, {})[column] = (cell.mean, cell.std)
      if with_priors:
        found = [estimate_priors(runner, rate, seed, weight) for seed in seeds]
        row = (thesis_rows.rate_label(rate),)
        for column in ("true π", "test π", "BBE", "EN e1"):
          outputs.add("prior", row, column, [f[column] for f in found])
        for column in ("BBE", "EN e1"):
          outputs.add("prior", row, f"{column} abs. err.",
                      [abs(f[column] - f["true π"]) for f in found])
    from jaxpu import plots  # pylint: disable=g-import-not-at-top
    plots.plot_unsegmented_sweep(outputs.path("sweep_unsegmented.png"), curves)
    specs.append(SWEEP_SPEC)
    if with_priors:
      specs.append(PRIOR_SPEC)

  preamble = (
      f"# Binary segmentation with unsegmented objects (thesis §5.2) on `{config.dataset}`\n\n"
      f"Scored against the complete test labels; mean ± std over {config.repeats} repeat(s), "
      f"each the mean of its last {runner.pretrain.keep} snapshots. Scale `{config.scale}`: {config.model}, "
      f"{config.train.steps} steps. Extra columns: foreground (fg) and background (bg) "
      "recall.\n")
  reference = paper.reference_cells(["table2"]) if config.dataset == "voc" else None
  markdown = outputs.write(specs, reference=reference, preamble=preamble,
                           epilogue="Figure 6: `fig6_examples.png`" + (
                               "; sweep: `sweep_unsegmented.png`." if rates else "."))
  print(markdown)
  return outputs.cells


if __name__ == "__main__":
  from experiments import cli  # pylint: disable=g-import-not-at-top
  cli.main("binary_segmentation", run)
