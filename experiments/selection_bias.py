r"""Beyond the thesis: objects are not missed at random (selection-biased unsegmentation).

Every method against unsegmented objects rests on the missed objects being a
random sample of the objects ("selected completely at random", SCAR): the
sigmoid loss' motivation, nnPU's risk, Elkan & Noto's and best bin
estimation's prior. Annotators miss small, faint and border-cut objects. This
experiment trains §5.2's binary segmentation (`experiments.binary_segmentation`'s
recipe, every object class → foreground) with a fraction `rate` (0.5) of the
training objects unsegmented, the objects chosen by each mechanism
(`jaxpu.data.noise`, module docstring):

- "random (SCAR)": `unsegment_objects:p`, each object w.p. p;
- "small": `unsegment_small:p`, P_i = σ(b - 2 z_i), z_i the standardised log-area;
- "faint": `unsegment_faint:p`, P_i = σ(b - 2 z_i), z_i the standardised contrast
  (|mean intensity inside - in a 3-pixel background ring| / the image's std);
- "border": `unsegment_border:p`, P_i = σ(b + 2 z_i), z_i the standardised
  indicator of touching the image border;

with b solved so that the expected fraction of unsegmented training objects is
exactly p under every mechanism. Each mechanism uses `unsegment_objects`'
draws (same seed: coupled corruptions, so the paired repeats differ in which
objects are missed, not in the luck of the draw). Losses (rows): logistic,
class-weighted logistic (eq. 6), sigmoid (eq. 8), the generalised sigmoid
α σ(βf)^γ at one (α, β, γ) (`generalized_sigmoid`; default (1, 1, 0.5), the
best cell by mean IU at 50 % of `experiments.saturation`), nnPU with BBE's
prior and, when `losses` asks for it (not by default, for the cpu budget),
with the true prior (`binary_segmentation.sweep_training`: the prior of the
mechanism's own labels; BBE's is estimated from the mechanism's LogisticLoss
run's logits on the test images with labels corrupted by the same mechanism,
calibrated on the training split).

Tables (mean ± std over the repeats; repeat r of every row uses seed + r):

- `selection_scores`: foreground recall and precision and mean IU against the
  complete test labels (each repeat the mean of its last snapshots);
- `selection_recall`: the mean over test objects of the fraction of an object's
  pixels predicted foreground (final snapshot), per bin of test objects: area
  terciles (small / medium / large), contrast terciles (faint / mid contrast /
  high contrast), on the border / interior. The tercile edges are those of the
  test objects (stated in the preamble);
- `selection_prior`: the prior of each mechanism (the foreground share of the
  background-labelled training pixels: true; of the corrupted test labels; BBE's
  and Elkan & Noto's e1 from the LogisticLoss run; their absolute errors);
- `selection_rates`: per mechanism the expected fraction of unsegmented training
  objects (the mean of P_i, recomputed from the calibration), the realised
  fraction, the share of foreground pixels unsegmented, and the realised
  fraction per bin (the test objects' edges).

Verdicts (the project's paired t-tests and TOST, `jaxpu.thesis.claims`, on the
paired repeats), per biased mechanism: does the sigmoid loss keep more
foreground recall than the logistic loss, and more of the objects the
mechanism misses; does the mechanism cost the logistic loss those objects
more than SCAR does; do the sigmoid loss and nnPU (estimated π) keep their
mean IU (≈ SCAR within ±0.02); does BBE's error stay within SCAR's + 0.01.
Not included: Table 4's transfer of the encoders, and a propensity-weighted
loss.

  python -m experiments.selection_bias                      # cpu: about 40 min on 2 cores
  python -m experiments.selection_bias --config=experiments/configs/selection_bias.py:smoke

Settings: `experiments/configs/selection_bias.py`.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from experiments import binary_segmentation
from experiments import common
from experiments import saturation
from jaxpu import models
from jaxpu import report
from jaxpu import segmentation_runs as seg
from jaxpu.data import noise
from jaxpu.data import pipeline
from jaxpu.data import synthetic
from jaxpu.data._tf import tf
from jaxpu.thesis import claims
from jaxpu.thesis import columns
from jaxpu.thesis import rows as thesis_rows

SCAR = "unsegment_objects"
MECHANISMS = (SCAR,) + tuple(noise.SELECTION_BIASES)
LABELS = {SCAR: "random (SCAR)", "unsegment_small": "small", "unsegment_faint": "faint",
          "unsegment_border": "border"}
GENERALIZED = "GeneralizedSigmoid"
LOSSES = thesis_rows.TABLE2_LOSSES + (GENERALIZED,) + thesis_rows.SWEEP_NNPU
SELECTION = ("repeats", "mechanisms", "losses")
PRIOR_MARGIN = 0.01  # BBE's error may exceed SCAR's by this much (absolute, π ≈ 0.1)

SIZE_BINS = ("small", "medium", "large")
CONTRAST_BINS = ("faint", "mid contrast", "high contrast")
BORDER_BINS = ("on border", "interior")
BINS = SIZE_BINS + CONTRAST_BINS + BORDER_BINS
# The bin of the objects each biased mechanism misses most.
TARGET_BIN = {"unsegment_small": "small", "unsegment_faint": "faint",
              "unsegment_border": "on border"}

SCORES = report.TableSpec(
    "selection_scores", "Binary segmentation with the objects unsegmented at random or "
    "selection-biased (same expected rate): against the complete test labels",
    ("missed", "loss"), ("fg rec.", "fg prec.", "mean IU"))
RECALL = report.TableSpec(
    "selection_recall", "Recall of the test objects per bin: mean over the objects of the "
    "fraction of their pixels predicted foreground (final snapshot)", ("missed", "loss"), BINS)
PRIOR = report.TableSpec(
    "selection_prior", "Class prior π of the background-labelled training pixels per "
    "mechanism: true, of the corrupted test labels, and estimated from the LogisticLoss "
    "run's held-out logits (abs. err.: against the true π)", ("missed",),
    ("true π", "test π", "BBE", "BBE abs. err.", "EN e1", "EN e1 abs. err."))
RATES = report.TableSpec(
    "selection_rates", "Unsegmented training objects: expected (mean P_i) and realised "
    "fraction, share of the foreground pixels, and realised fraction per bin (the test "
    "objects' edges)", ("missed",), ("expected", "realised", "fg pixels") + BINS)


def validate(config) -> None:
  """Checks every setting before any data is built."""
  common.check_common(config)
  common.require(config.dataset == "synthetic", "dataset", config.dataset,
                 "selection_bias runs on the embedded synthetic data only (its per-object "
                 "analysis reads the instance masks); use --config.dataset=synthetic")
  common.require(config.data.downsample in (None, 1), "data.downsample", config.data.downsample,
                 "the per-object analysis reads the images at full size; leave it unset")
  common.require_fraction(config, "rate")
  mechanisms = common.names(config.mechanisms)
  unknown = sorted(set(mechanisms) - set(MECHANISMS))
  common.require(bool(mechanisms) and not unknown and len(set(mechanisms)) == len(mechanisms),
                 "mechanisms", config.mechanisms, f"choose distinct ones of {list(MECHANISMS)}")
  losses = common.names(config.losses)
  unknown = sorted(set(losses) - set(LOSSES))
  common.require(bool(losses) and not unknown and len(set(losses)) == len(losses), "losses",
                 config.losses, f"choose distinct ones of {list(LOSSES)}")
  weight = config.class_weighted_negative_weight
  common.require(isinstance(weight, (int, float)) and not isinstance(weight, bool)
                 and 0 <= weight < math.inf, "class_weighted_negative_weight", weight,
                 "must be a finite number >= 0")
  cell = tuple(config.generalized_sigmoid)
  common.require(len(cell) == 3 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                        and math.isfinite(v) for v in cell)
                 and cell[0] >= 0 and cell[1] > 0 and cell[2] > 0, "generalized_sigmoid",
                 config.generalized_sigmoid, "must be (α, β, γ) with α >= 0, β > 0, γ > 0, "
                 "e.g. --config.generalized_sigmoid=1,1,0.5")
  models.get(config.model, 1, **config.model_options)


def training(runner, config, mechanism: str, loss: str, seed: int) -> seg.Training:
  """The training of row (`mechanism`, `loss`) for repeat `seed` (nnPU: its prior)."""
  corruption = f"{mechanism}:{config.rate:g}"
  if loss == GENERALIZED:
    alpha, beta, gamma = (float(v) for v in config.generalized_sigmoid)
    return seg.binary_training(corruption, saturation.LOSS, alpha=alpha, beta=beta,
                               gamma=gamma)
  return binary_segmentation.sweep_training(runner, config.rate, loss, seed,
                                            config.class_weighted_negative_weight, corruption)


# ----------------------------------------------------------------------------
# Objects: features, bins, which are unsegmented, which are recalled.
# ----------------------------------------------------------------------------


def split_examples(spec: pipeline.SegmentationSpec, split: str) -> tf.data.Dataset:
  """The examples of `split` of `spec`'s synthetic config, in the pipeline's order (no
  fold, subsample or down-sampling: every example of the split), with instance masks."""
  config = synthetic.synthetic_config(spec.config or "single")
  if spec.image_size and spec.image_size != config.image_size:
    config = synthetic.synthetic_config(config, image_size=spec.image_size)
  return synthetic.segmentation_examples(split, config=config, data_dir=spec.data_dir)


def object_table(ds: tf.data.Dataset, corrupt=None) -> dict[str, np.ndarray]:
  """Every object of `ds` (examples in order, objects in order): "example" (its index)
  and either "area" (non-void pixels), "contrast" and "border" (`noise.object_feature`)
  or, with `corrupt` (an example → example map), "unsegmented" (its class became 0)."""

  @tf.autograph.experimental.do_not_convert
  def describe(ex):
    out = {"valid": tf.ones([tf.shape(ex["objects"])[0]], tf.bool)}
    if corrupt is not None:
      out["unsegmented"] = tf.equal(corrupt(ex)["objects"], 0)
    else:
      out["area"] = tf.reduce_sum(tf.cast(noise.object_masks(ex), tf.float32), axis=[1, 2])
      out["contrast"] = noise.object_feature(ex, "contrast")
      out["border"] = noise.object_feature(ex, "border")
    return out

  parts: dict[str, list] = {}
  start = 0
  for batch in ds.map(describe, num_parallel_calls=tf.data.AUTOTUNE,
                      deterministic=True).padded_batch(256).as_numpy_iterator():
    valid = batch.pop("valid")
    rows = np.nonzero(valid)[0]
    parts.setdefault("example", []).append(start + rows)
    for key, value in batch.items():
      parts.setdefault(key, []).append(value[valid])
    start += len(valid)
  return {k: np.concatenate(v) for k, v in parts.items()}


def feature_values(objects: dict[str, np.ndarray], feature: str) -> np.ndarray:
  """The `noise.object_feature` `feature` of every object of an object table."""
  if feature == "log_area":
    return np.log(np.maximum(objects["area"], 1.0))
  return objects[feature]


def bin_edges(objects: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Tercile edges of the objects' area and contrast (the test objects': fixed)."""
  return {feature: np.quantile(objects[feature], [1 / 3, 2 / 3])
          for feature in ("area", "contrast")}


def bin_masks(objects: dict[str, np.ndarray], edges) -> dict[str, np.ndarray]:
  """Bin → which objects are in it: x ≤ edge₁, edge₁ < x ≤ edge₂, x > edge₂ (area,
  contrast), touching the border or not."""
  out = {}
  for feature, names in (("area", SIZE_BINS), ("contrast", CONTRAST_BINS)):
    index = np.searchsorted(edges[feature], objects[feature], side="left")
    for i, name in enumerate(names):
      out[name] = index == i
  out["on border"] = objects["border"] > 0
  out["interior"] = ~out["on border"]
  return out


def _binned_means(values: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, float]:
  return {name: float(np.mean(values[m])) if m.any() else math.nan for name, m in masks.items()}


def evaluation_objects(spec) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
  """(object table, instance masks [N, H, W], binary test labels [N, H, W]) of the test
  split (`object_table`); labels: 0 background, 1 object, 255 void."""
  ds = split_examples(spec, spec.eval_split or "test")
  objects = object_table(ds)
  instances, labels = [], []
  masks = ds.map(tf.autograph.experimental.do_not_convert(
      lambda ex: {"instances": ex["instances"], "label": ex["label"]}))
  for batch in masks.batch(256).as_numpy_iterator():
    instances.append(batch["instances"])
    labels.append(np.where(batch["label"] == noise.VOID, noise.VOID,
                           (batch["label"] > 0).astype(np.uint8)))
  return objects, np.concatenate(instances), np.concatenate(labels)


def object_recall(predicted: np.ndarray, instances: np.ndarray, labels: np.ndarray,
                  objects: dict[str, np.ndarray]) -> np.ndarray:
  """Per object of `objects`: the fraction of its non-void pixels in `predicted` (bool
  [N, H, W] foreground)."""
  out = np.zeros(len(objects["example"]))
  for row, (example, k) in enumerate(_object_ids(objects)):
    mask = (instances[example] == k) & (labels[example] != noise.VOID)
    out[row] = predicted[example][mask].mean() if mask.any() else math.nan
  return out


def _object_ids(objects):
  """(example, object number k ≥ 1) of every row of an object table."""
  example = objects["example"]
  first = np.r_[True, example[1:] != example[:-1]]
  start = np.maximum.accumulate(np.where(first, np.arange(len(example)), 0))
  return zip(example, np.arange(len(example)) - start + 1)


def predicted_foreground(runner, training, seed, labels: np.ndarray) -> np.ndarray:
  """The final snapshot's foreground (logit > 0) on the test images, checked to be
  aligned with `labels` (the test split read directly)."""
  result = runner.train(training, None, seed)
  prediction = seg.predict(result.spec, result.params(),
                           runner.dataset(training, None, seed).eval_iter())
  if not np.array_equal(prediction["label"], labels):
    raise RuntimeError("The test images read for the per-object analysis are not those "
                       "the pipeline evaluates (order or selection differ); is the data "
                       "config the embedded one without fold, subsample or down-sampling?")
  return prediction["logits"][..., 0] > 0


def corruption_map(spec, mechanism: str, rate: float, seed: int):
  """The per-example corruption the pipeline applies to `spec`'s training split."""
  if mechanism == SCAR:
    return lambda ex: noise.unsegment_objects(ex, rate, seed)
  calibration = pipeline.selection_calibration(spec)
  return lambda ex: noise.unsegment_selected(ex, calibration, seed)


# ----------------------------------------------------------------------------
# Verdicts.
# ----------------------------------------------------------------------------


def verdicts(cells: Sequence[report.Cell], mechanisms: Sequence[str]) -> list[claims.Verdict]:
  """Per biased mechanism, the comparisons of the module docstring (paired repeats)."""
  scar = LABELS[SCAR]
  out = []
  for mechanism in mechanisms:
    if mechanism == SCAR:
      continue
    label, target = LABELS[mechanism], TARGET_BIN[mechanism]
    prior_cells = list(cells)
    scar_error = claims.Cells(cells).get(PRIOR.table, (scar,), "BBE abs. err.")
    if scar_error is not None:
      prior_cells.append(report.Cell(PRIOR.table, (f"{scar} + {PRIOR_MARGIN:g}",),
                                     "BBE abs. err.", np.add(scar_error, PRIOR_MARGIN)))
    found = claims.Cells(prior_cells)
    where = f"{label}-biased unsegmentation"
    source = "A row it needs was"
    checks = [
        (f"Under {where}, the sigmoid loss keeps more foreground recall than the logistic loss",
         [claims.Comparison("sigmoid", (SCORES.table, (label, "SigmoidLoss"), "fg rec."), ">",
                            "logistic", (SCORES.table, (label, "LogisticLoss"), "fg rec."))]),
        (f"Under {where}, the sigmoid loss recovers more of the {target} objects than the "
         "logistic loss",
         [claims.Comparison("sigmoid", (RECALL.table, (label, "SigmoidLoss"), target), ">",
                            "logistic", (RECALL.table, (label, "LogisticLoss"), target))]),
        (f"{where[0].upper() + where[1:]} costs the logistic loss more of the {target} objects "
         "than unsegmentation at random",
         [claims.Comparison("SCAR", (RECALL.table, (scar, "LogisticLoss"), target), ">", label,
                            (RECALL.table, (label, "LogisticLoss"), target))]),
        (f"The sigmoid loss holds up under {where}: mean IU ≈ under SCAR (±"
         f"{claims.EQUIVALENCE_MARGIN:g})",
         [claims.Comparison(label, (SCORES.table, (label, "SigmoidLoss"), "mean IU"), "≈",
                            "SCAR", (SCORES.table, (scar, "SigmoidLoss"), "mean IU"))]),
        (f"nnPU with BBE's prior holds up under {where}: mean IU ≈ under SCAR (±"
         f"{claims.EQUIVALENCE_MARGIN:g})",
         [claims.Comparison(label, (SCORES.table, (label, thesis_rows.NNPU_ESTIMATED_PRIOR),
                                    "mean IU"), "≈", "SCAR",
                            (SCORES.table, (scar, thesis_rows.NNPU_ESTIMATED_PRIOR),
                             "mean IU"))]),
        (f"BBE's prior holds up under {where}: its abs. error ≤ SCAR's + {PRIOR_MARGIN:g}",
         [claims.Comparison(f"SCAR + {PRIOR_MARGIN:g}",
                            (PRIOR.table, (f"{scar} + {PRIOR_MARGIN:g}",), "BBE abs. err."),
                            ">", label, (PRIOR.table, (label,), "BBE abs. err."))]),
    ]
    for claim, comparisons in checks:
      out.append(claims.judge(found, claim, "not in the thesis", comparisons, source))
  return out


def verdict_lines(found: Sequence[claims.Verdict]) -> str:
  return "\n".join(f"- **{v.status}**: {v.claim}. {v.evidence}" for v in found) + "\n"


# ----------------------------------------------------------------------------
# The experiment.
# ----------------------------------------------------------------------------


def _quantiles(values, qs=(0.1, 0.5, 0.9)) -> str:
  return " / ".join(f"{v:.3g}" for v in np.quantile(values, qs))


def run(config, workdir: str) -> list[report.Cell]:
  """Trains every (mechanism, loss, repeat); writes the tables and the verdicts."""
  validate(config)
  runner = binary_segmentation.make_runner(config, workdir)  # validates the training settings
  resolved = common.claim_workdir(workdir, config, selection=SELECTION,
                                  experiment="selection_bias")
  out = common.Outputs(workdir, resolved)
  seeds = common.repeat_seeds(config)
  mechanisms = common.names(config.mechanisms)
  losses = [n for n in LOSSES if n in common.names(config.losses)]
  trained = set(losses) | {"LogisticLoss"}
  runner.progress = common.Progress("selection_bias", len(mechanisms) * len(trained)
                                    * len(seeds) * config.train.steps,
                                    len(mechanisms) * len(trained) * len(seeds))
  weight, rate = config.class_weighted_negative_weight, float(config.rate)

  template = runner.data_spec(thesis_rows.BINARIZED_LABELS, None, seeds[0])
  tested, instances, test_labels = evaluation_objects(template)
  edges = bin_edges(tested)
  test_bins = bin_masks(tested, edges)
  train_objects = object_table(split_examples(template, template.train_split or "train"))
  train_bins = bin_masks(train_objects, edges)
  calibrations = {}

  for mechanism in mechanisms:
    label = LABELS[mechanism]
    found = [binary_segmentation.estimate_priors(runner, rate, seed, weight,
                                                 f"{mechanism}:{rate:g}") for seed in seeds]
    for column in ("true π", "test π", "BBE", "EN e1"):
      out.add(PRIOR.table, (label,), column, [f[column] for f in found])
    for column in ("BBE", "EN e1"):
      out.add(PRIOR.table, (label,), f"{column} abs. err.",
              [abs(f[column] - f["true π"]) for f in found])

    rates: dict[str, list[float]] = {}
    for seed in seeds:
      spec = runner.data_spec(training(runner, config, mechanism, "LogisticLoss", seed),
                              None, seed)
      calibration = pipeline.selection_calibration(spec)
      if calibration is not None:
        calibrations[mechanism] = calibration
      expected = (calibration.probabilities(feature_values(train_objects, calibration.feature))
                  if calibration is not None else np.full(len(train_objects["area"]), rate))
      dropped = object_table(split_examples(spec, spec.train_split or "train"),
                             corruption_map(spec, mechanism, rate, seed))["unsegmented"]
      values = {"expected": float(np.mean(expected)), "realised": float(np.mean(dropped)),
                "fg pixels": float(np.sum(train_objects["area"][dropped])
                                   / np.sum(train_objects["area"])),
                **_binned_means(dropped.astype(np.float64), train_bins)}
      for column, value in values.items():
        rates.setdefault(column, []).append(value)
    for column in RATES.columns:
      out.add(RATES.table, (label,), column, rates[column])

    for loss in losses:
      results, recalls = [], {}
      for seed in seeds:
        run_training = training(runner, config, mechanism, loss, seed)
        results.append(runner.train(run_training, None, seed))
        per_object = object_recall(predicted_foreground(runner, run_training, seed,
                                                        test_labels),
                                   instances, test_labels, tested)
        for name, value in _binned_means(per_object, test_bins).items():
          recalls.setdefault(name, []).append(value)
      row = (label, loss)
      out.add(SCORES.table, row, "fg rec.", [columns.repeat_value(r, "fg rec.")
                                              for r in results])
      out.add(SCORES.table, row, "fg prec.",
              [float(np.nanmean(r.scores(saturation.foreground_precision)["fg prec."]))
               for r in results])
      out.add(SCORES.table, row, "mean IU", [columns.repeat_value(r, "mean IU")
                                              for r in results])
      for name in BINS:
        out.add(RECALL.table, row, name, recalls[name])

  found = verdicts(out.cells, mechanisms)
  alpha, beta, gamma = (float(v) for v in config.generalized_sigmoid)
  calibration_lines = "".join(
      f"- {LABELS[m]} (`{m}:{rate:g}`): feature {c.feature}, mean {c.mean:.3f}, std "
      f"{c.std:.3f}, slope {c.slope:+g}, intercept b = {c.intercept:+.4f}; P_i of the "
      f"training objects (10 / 50 / 90 % quantiles) "
      f"{_quantiles(c.probabilities(feature_values(train_objects, c.feature)))}.\n"
      for m, c in calibrations.items())
  preamble = (
      "# Objects not missed at random: selection-biased unsegmentation (beyond the thesis)\n\n"
      f"Binary segmentation on `{config.dataset}` ({config.model}, {config.train.steps} steps "
      f"of {config.train.batch_size}, `experiments.binary_segmentation`'s recipe) with an "
      f"expected {rate:.0%} of the training objects unsegmented, chosen at random (SCAR) or "
      "by a selection-biased mechanism P_i = σ(b + s z_i) (z_i: the object's standardised "
      "log-area, contrast or border contact; b solved so that mean P_i over the training "
      f"objects is {rate:g}; `jaxpu.data.noise`). Mean ± std over {len(seeds)} repeat(s) "
      f"(seeds {seeds}); GeneralizedSigmoid: α, β, γ = {alpha:g}, {beta:g}, {gamma:g}.\n\n"
      f"Training objects ({len(train_objects['area'])}), 10 / 50 / 90 % quantiles: area "
      f"{_quantiles(train_objects['area'])} pixels, contrast "
      f"{_quantiles(train_objects['contrast'])}; "
      f"{np.mean(train_objects['border']):.1%} touch the image border.\n\n"
      f"Bins (test objects, {len(tested['area'])}): area terciles small ≤ "
      f"{edges['area'][0]:g} < medium ≤ {edges['area'][1]:g} < large pixels; contrast "
      f"terciles faint ≤ {edges['contrast'][0]:.3f} < mid contrast ≤ "
      f"{edges['contrast'][1]:.3f} < high contrast; on border / interior "
      f"({np.mean(tested['border']):.1%} on the border).\n\n"
      + (f"Calibrations:\n\n{calibration_lines}\n" if calibration_lines else "")
      + "## Verdicts (paired repeats; `jaxpu.thesis.claims`)\n\n"
      + verdict_lines(found) + "\n")
  markdown = out.write([SCORES, RECALL, PRIOR, RATES], preamble=preamble)
  print(markdown)
  return out.cells


if __name__ == "__main__":
  from experiments import cli  # pylint: disable=g-import-not-at-top
  cli.main("selection_bias", run)
