r"""Table 2 and Fig. 6: foreground/background segmentation with unsegmented objects (§5.2).

Binary segmentation (every object class → foreground) trained on complete
labels, and with a fraction of the training objects left unsegmented
(labelled background) under the logistic loss, the class-weighted logistic
loss (background weight 0.5, eq. 6) and the class-dependent sigmoid loss
(eq. 8). Scored against the complete labels of the test split: overall
accuracy, mean recall, frequency-weighted IU, mean IU, and the recall of each
class; mean ± std over repeats × the last five snapshots. Fig. 6 shows test
images with each model's prediction.

`--sweep` adds, beyond the thesis (which used 50 % only), the rates
`--rates` with the foreground average precision (threshold-free: pixels ranked
by the model's foreground logit) next to the foreground recall at 0.5. At
exactly 50 % the 0.5 background weight compensates the drop exactly, so the
losses differ most at higher rates (NOTES-embedded-data.md).

  python -m experiments.binary_segmentation                  # embedded data, minutes
  python -m experiments.binary_segmentation --sweep --repeats=3
  python -m experiments.binary_segmentation --dataset=voc --manual_dir=~/voc --scale=paper
"""

from absl import app
from absl import flags
import numpy as np

from jaxpu import experiment
from jaxpu import report
from jaxpu import segmentation_runs as seg

experiment.define_flags("binary_segmentation", datasets=("synthetic", "voc"),
                        default_dataset="synthetic")
_SWEEP = flags.DEFINE_bool("sweep", False, "Also sweep the rate of unsegmented objects.")
_RATES = flags.DEFINE_string("rates", "0.3,0.5,0.6,0.7",
                             "Unsegmented rates of the sweep (comma-separated, in (0, 1)).")
_EXAMPLES = flags.DEFINE_integer("examples", 4, "Test images shown in Fig. 6.", lower_bound=1)
FLAGS = flags.FLAGS

# "cpu": compact FCN, Adam with cosine decay, minutes on 2 cores; "paper":
# FCN-AlexNet with the FCN reference's SGD (momentum 0.9, weight decay 5e-4),
# the thesis' 240k iterations and snapshots every 4k (§5.2).
PRESETS = {
    "smoke": dict(model="fcn_small", model_options=dict(width=0.25), optimizer="adam",
                  learning_rate=2e-3, schedule="cosine", warmup_steps=0, weight_decay=0.0,
                  steps=4, checkpoint_every=2, batch_size=8,
                  synthetic_config=dict(num_train_per_class=3, num_test_per_class=2)),
    "cpu": dict(model="fcn_small", model_options={}, optimizer="adam", learning_rate=2e-3,
                schedule="cosine", warmup_steps=20, weight_decay=0.0, steps=800,
                checkpoint_every=80, batch_size=32, synthetic_config=None),
    "paper": dict(model="fcn_alexnet", model_options={}, optimizer="sgd", learning_rate=1e-3,
                  schedule="constant", warmup_steps=0, weight_decay=5e-4, steps=240_000,
                  checkpoint_every=4_000, batch_size=20, synthetic_config=None),
}

LOSSES = {  # Table 2's loss names → (loss, kwargs)
    "LogisticLoss": ("logistic", {}),
    "ClassWeighted": ("weighted_logistic", {"negative_weight": 0.5}),
    "SigmoidLoss": ("sigmoid_negative", {}),
}
SWEEP_SPEC = report.TableSpec(
    "sweep", "Unsegmented-rate sweep: foreground average precision (threshold-free) and "
    "recall at 0.5, against the complete test labels", ("annotation", "loss"),
    ("fg AP", "fg rec.", "mean rec.", "mean IU"))


def unsegmented(rate: float, loss_name: str) -> seg.Training:
  loss, kwargs = LOSSES[loss_name]
  return seg.binary_training(f"unsegment_objects:{rate:g}", loss, **kwargs)


def rate_label(rate: float) -> str:
  return f"{100 * rate:g}%Unseg."


TABLE2_ROWS = ((("Complete", "LogisticLoss"), seg.BINARIZED_LABELS),) + tuple(
    ((rate_label(0.5), name), unsegmented(0.5, name)) for name in LOSSES)


def parse_rates(value: str) -> tuple[float, ...]:
  try:
    rates = tuple(float(r) for r in value.split(",") if r.strip())
  except ValueError:
    raise ValueError(f"--rates must be comma-separated numbers, got {value!r}.") from None
  if not rates or any(not 0 < r < 1 for r in rates):
    raise ValueError(f"--rates must be in (0, 1), got {value!r}.")
  return rates


def make_runner(config) -> seg.Runner:
  spec = seg.binary_spec(config, config["learning_rate"])
  return seg.Runner(FLAGS.workdir, pretrain=spec, finetune=spec, dataset=FLAGS.dataset,
                    data_options=seg.data_options(config, FLAGS.dataset, FLAGS.data_dir,
                                                  FLAGS.manual_dir))


def pooled_scores(runner, training, seeds) -> dict[str, list[float]]:
  """Column → values over seeds × the last five snapshots (all 20 classes, fold=None)."""
  out: dict[str, list[float]] = {}
  for seed in seeds:
    for column, values in seg.own_scores(runner.train(training, None, seed)).items():
      out.setdefault(column, []).extend(values)
  return out


def foreground_iou_per_image(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Per image IoU of the predicted (logit > 0) and true foreground (void ignored)."""
  valid = labels != 255
  pred, true = (logits[..., 0] > 0) & valid, (labels == 1) & valid
  inter = (pred & true).reshape(len(labels), -1).sum(1)
  union = (pred | true).reshape(len(labels), -1).sum(1)
  return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def draw_examples(runner, seed, n, path) -> str:
  """Fig. 6: the `n` test images where the sigmoid loss' foreground IoU most exceeds
  the logistic loss' (both trained with 50 % unsegmented), with every row's prediction."""
  from jaxpu import plots  # pylint: disable=g-import-not-at-top
  predictions = {}
  for row, training in TABLE2_ROWS:
    result = runner.train(training, None, seed)
    data = runner.data(training, None, seed)
    predictions[" ".join(row)] = seg.predict(result.spec, result.params(), data.eval_iter())
  logistic = predictions[f"{rate_label(0.5)} LogisticLoss"]
  sigmoid = predictions[f"{rate_label(0.5)} SigmoidLoss"]
  gain = (foreground_iou_per_image(sigmoid["logits"], sigmoid["label"])
          - foreground_iou_per_image(logistic["logits"], logistic["label"]))
  chosen = np.argsort(-gain, kind="stable")[:n]
  mean, std = np.asarray(data.mean), np.asarray(data.std)
  images = logistic["image"][chosen] * std + mean
  return plots.plot_segmentation_examples(
      path, images, logistic["label"][chosen],
      {name: p["logits"][chosen, ..., 0] > 0 for name, p in predictions.items()},
      title="Test images where the sigmoid loss gains most over the logistic loss "
            "(50% unsegmented)")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  rates = parse_rates(_RATES.value) if _SWEEP.value else ()
  config = experiment.preset(PRESETS)
  experiment.keep_freed_memory()
  experiment.enable_compilation_cache()
  outputs = experiment.Outputs(FLAGS.workdir)
  runner = make_runner(config)
  seeds = experiment.repeat_seeds()

  for row, training in TABLE2_ROWS:
    for column, values in pooled_scores(runner, training, seeds).items():
      outputs.add("table2", row, column, values)
  draw_examples(runner, seeds[0], _EXAMPLES.value, outputs.path("fig6_examples.png"))

  specs = [report.paper_spec("table2")]
  if rates:
    curves: dict[str, dict[float, dict]] = {}
    for rate in rates:
      for name in LOSSES:
        training = unsegmented(rate, name)
        scores = pooled_scores(runner, training, seeds)
        scores["fg AP"] = [ap for seed in seeds for ap in seg.foreground_average_precision(
            runner.train(training, None, seed), runner.data(training, None, seed).eval_iter)]
        for column in SWEEP_SPEC.columns:
          cell = outputs.add("sweep", (rate_label(rate), name), column, scores[column])
          curves.setdefault(name, {}).setdefault(rate, {})[column] = (cell.mean, cell.std)
    from jaxpu import plots  # pylint: disable=g-import-not-at-top
    plots.plot_unsegmented_sweep(outputs.path("sweep_unsegmented.png"), curves)
    specs.append(SWEEP_SPEC)

  preamble = (
      f"# Binary segmentation with unsegmented objects (thesis §5.2) on `{FLAGS.dataset}`\n\n"
      f"Scored against the complete test labels; mean ± std over {FLAGS.repeats} repeat(s) "
      f"× the last {runner.pretrain.keep} snapshots. Scale `{FLAGS.scale}`: {config['model']}, "
      f"{config['steps']} steps. Extra columns: foreground (fg) and background (bg) recall.\n")
  markdown = outputs.write(specs, compare_with_paper=FLAGS.dataset == "voc", preamble=preamble,
                           epilogue="Figure 6: `fig6_examples.png`" + (
                               "; sweep: `sweep_unsegmented.png`." if rates else "."))
  print(markdown)


if __name__ == "__main__":
  app.run(main)
