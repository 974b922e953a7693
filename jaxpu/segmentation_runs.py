"""Segmentation runs: what is trained, pre-training → transfer → fine-tuning, scoring.

The building blocks of the segmentation experiments (`binary_segmentation`,
`transfer`, and your own), independent of the thesis' tables
(`jaxpu.thesis.rows` says which training feeds which row):

- `Training`: one training set and loss (task, corruption, loss). Its `key`
  names the run folder, so every row and table that needs the same
  pre-training gets the same folder, and `jaxpu.runs.train` (done.json)
  trains it once.
- `spec_from_config`, `data_options`: a `TrainSpec` and the data options
  from a config's sections; `data_identity`: what identifies the data of a
  run (part of the run's identity).
- `Runner`: trains a `Training` on a fold's pre-training classes (or on all
  classes, `fold=None`), and fine-tunes a fresh model whose encoder comes
  from that run (`init_from`) on the fold's five classes (§5.3.2).
- scoring: scores of the last snapshots, fold averages, and the
  threshold-free foreground average precision of the unsegmented-rate sweep.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import jax
import numpy as np

from jaxpu import metrics
from jaxpu import runs

# ----------------------------------------------------------------------------
# What is trained.
# ----------------------------------------------------------------------------

BINARY_TASKS = ("binary", "target")


@dataclasses.dataclass(frozen=True)
class Training:
  """A training set (task + corruption of the training labels) and its loss.

  Attributes:
    task: `jaxpu.data.pipeline` task: "multiclass", "binary", "categories",
      "random_categories:K" or "target" (Table 5).
    corruption: None or "name:rate[:size]" (`jaxpu.data.noise`), training split only.
    loss: a `jaxpu.losses` name; `loss_kwargs` its arguments.
  """
  task: str = "multiclass"
  corruption: Optional[str] = None
  loss: str = "softmax_cross_entropy"
  loss_kwargs: tuple = ()

  def __post_init__(self):
    if isinstance(self.loss_kwargs, Mapping):
      object.__setattr__(self, "loss_kwargs", tuple(sorted(self.loss_kwargs.items())))

  @property
  def binary(self) -> bool:
    """One output logit (foreground vs background)."""
    return self.task in BINARY_TASKS

  @property
  def key(self) -> str:
    """A folder-safe identity: equal keys ⇔ the same training."""
    parts = [self.task, self.corruption or "clean", self.loss]
    parts += [f"{k}{v}" for k, v in self.loss_kwargs]
    return "-".join(str(p).replace(":", "") for p in parts)


def binary_training(corruption: Optional[str] = None, loss: str = "logistic",
                    **loss_kwargs) -> Training:
  return Training("binary", corruption, loss, tuple(sorted(loss_kwargs.items())))


def pretrain_dir(workdir: str, training: Training, fold: Optional[int], seed: int) -> str:
  """Run folder of a pre-training (keyed by its identity, never by a row name)."""
  where = "all" if fold is None else f"fold{fold}"
  return os.path.join(workdir, "runs", f"pretrain-{where}-{training.key}-seed{seed}")


def finetune_dir(workdir: str, training: Optional[Training], fold: int, seed: int) -> str:
  """Run folder of a fine-tuning from `training`'s checkpoint (None: random init)."""
  source = "random" if training is None else training.key
  return os.path.join(workdir, "runs", f"finetune-fold{fold}-from-{source}-seed{seed}")


# ----------------------------------------------------------------------------
# Running.
# ----------------------------------------------------------------------------


def spec_from_config(section: Mapping[str, Any], model: str, model_options: Mapping[str, Any],
                     num_classes: int = 1, loss: str = "logistic") -> runs.TrainSpec:
  """The `TrainSpec` of a config section (optimizer, learning_rate, schedule,
  warmup_steps, momentum, weight_decay, steps, batch_size, checkpoint_every, keep)."""
  return runs.TrainSpec(
      model=model, model_options=tuple(sorted(dict(model_options).items())),
      num_classes=num_classes, loss=loss, loss_reduction=section.get("loss_reduction", "mean"),
      optimizer=section["optimizer"], learning_rate=section["learning_rate"],
      schedule=section["schedule"], warmup_steps=section["warmup_steps"],
      momentum=section["momentum"], weight_decay=section["weight_decay"],
      bias_lr_mult=section.get("bias_lr_mult", 1.0),
      steps=section["steps"], batch_size=section["batch_size"],
      checkpoint_every=section["checkpoint_every"], keep=section["keep"])


def data_options(data: Mapping[str, Any], dataset: str) -> dict[str, Any]:
  """`make_segmentation_data` options of a config's `data` section for `dataset`.

  `data.synthetic` fields override the embedded "single" config (ignored for
  voc); `data.downsample` / `data.image_size` / `data.preprocessing` apply to
  both (None: the dataset's default).
  """
  options: dict[str, Any] = dict(data_dir=data.get("data_dir"))
  if dataset == "voc":
    options["manual_dir"] = data.get("manual_dir")
  else:
    from jaxpu.data import synthetic  # pylint: disable=g-import-not-at-top
    overrides = {k: v for k, v in dict(data.get("synthetic") or {}).items() if v is not None}
    if overrides:
      options["config"] = synthetic.synthetic_config("single", **overrides)
  for key in ("downsample", "image_size", "preprocessing"):
    if data.get(key) is not None:
      options[key] = data[key]
  return options


def data_identity(dataset: str, options: Mapping[str, Any], data) -> dict[str, Any]:
  """What identifies a `Data` for a run's identity: the dataset, every option that
  selects or changes its examples (not where its files are), and what it holds."""
  kept = {k: v for k, v in options.items() if k not in ("data_dir", "manual_dir", "mesh")}
  if "config" in kept:
    kept["config"] = getattr(kept["config"], "name", str(kept["config"]))
  return {"dataset": dataset, "options": kept, "classes": list(data.class_names),
          "image_shape": list(data.image_shape), "train_examples": data.num_train_examples,
          "eval_examples": data.num_eval_examples}


@dataclasses.dataclass
class Runner:
  """Trains pre-trainings and fine-tunings into `workdir`, once each.

  Attributes:
    workdir: the experiment's output folder (run folders go to workdir/runs).
    pretrain: template of the pre-training runs (its `num_classes`/`loss`
      are replaced per `Training`).
    finetune: template of the fine-tuning runs (6 classes: background and
      the fold's five; its `loss` is used as given).
    dataset: "synthetic" or "voc".
    data_options: further `make_segmentation_data` arguments (data_dir,
      manual_dir, config, ...), for both phases.
    finetune_fraction: fine-tune on this seeded fraction of the fold's
      training images (None: all). The subset is drawn with the repeat's seed,
      so every row of a repeat fine-tunes on the same images.
    multiclass_pretrain: `TrainSpec` fields that replace the template's for
      pre-trainings with more than one output (multiclass, categories): e.g.
      {"steps": 2400, "checkpoint_every": 240}, as a 16-class softmax needs
      a longer schedule than a binary one to learn its task.
    progress: called with a label and the run's steps after each run this
      runner trains or reuses (e.g. `jaxpu.experiment.Progress`).
  """
  workdir: str
  pretrain: runs.TrainSpec
  finetune: runs.TrainSpec
  dataset: str = "synthetic"
  data_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  finetune_fraction: Optional[float] = None
  multiclass_pretrain: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  progress: Optional[Callable[[str], None]] = None
  _data: dict = dataclasses.field(default_factory=dict, repr=False)
  _runs: dict = dataclasses.field(default_factory=dict, repr=False)

  def data_arguments(self, training: Optional[Training], fold: Optional[int], seed: int,
                     phase: str = "pretrain", batch_size: Optional[int] = None) -> dict:
    """The `make_segmentation_data` arguments of a pre-training or a fine-tuning (None)."""
    if phase == "finetune":
      options = dict(task="multiclass", batch_size=batch_size or self.finetune.batch_size)
      if self.finetune_fraction is not None:
        options["subsample"] = self.finetune_fraction
    else:
      options = dict(task=training.task, corruption=training.corruption,
                     grouping_seed=seed, batch_size=batch_size or self.pretrain.batch_size)
    return dict(fold=fold, phase=phase, noise_seed=seed, seed=seed, **options,
                **dict(self.data_options))

  def data(self, training: Optional[Training], fold: Optional[int], seed: int,
           phase: str = "pretrain", batch_size: Optional[int] = None):
    """The `Data` of a pre-training (`training`) or of a fold's fine-tuning (None)."""
    from jaxpu.data import pipeline  # pylint: disable=g-import-not-at-top
    key = (training, fold, seed, phase, batch_size)
    if key not in self._data:
      self._data[key] = pipeline.make_segmentation_data(
          self.dataset, **self.data_arguments(training, fold, seed, phase, batch_size))
    return self._data[key]

  def identity(self, training, fold, seed, phase, data) -> dict[str, Any]:
    return data_identity(self.dataset, self.data_arguments(training, fold, seed, phase), data)

  def pretrain_spec(self, training: Training, num_label_values: int) -> runs.TrainSpec:
    outputs = 1 if training.binary else num_label_values
    longer = {} if training.binary else dict(self.multiclass_pretrain)
    return dataclasses.replace(self.pretrain, num_classes=outputs, loss=training.loss,
                               loss_kwargs=training.loss_kwargs, **longer)

  def train(self, training: Training, fold: Optional[int], seed: int) -> runs.RunResult:
    """Trains `training` on the fold's pre-training classes (all 20 if fold is None)."""
    key = ("pretrain", training, fold, seed)
    if key not in self._runs:
      data = self.data(training, fold, seed)
      spec = self.pretrain_spec(training, data.num_classes)
      self._runs[key] = _train(spec, data, pretrain_dir(self.workdir, training, fold, seed),
                               seed, identity=self.identity(training, fold, seed, "pretrain",
                                                            data))
      self._report(f"pre-training {training.key}, fold {fold}, seed {seed}", spec.steps)
    return self._runs[key]

  def _report(self, label: str, steps: int) -> None:
    if self.progress is not None:
      self.progress(label, steps)

  def transfer(self, training: Optional[Training], fold: int, seed: int) -> runs.RunResult:
    """Fine-tunes on the fold's 5 classes from `training`'s encoder (None: random init)."""
    key = ("finetune", training, fold, seed)
    if key not in self._runs:
      init_from = None if training is None else self.train(training, fold, seed).run_dir
      data = self.data(None, fold, seed, phase="finetune")
      spec = dataclasses.replace(self.finetune, num_classes=data.num_classes)
      self._runs[key] = _train(spec, data, finetune_dir(self.workdir, training, fold, seed),
                               seed, init_from=init_from,
                               identity=self.identity(None, fold, seed, "finetune", data))
      source = "random init" if training is None else training.key
      self._report(f"fine-tuning from {source}, fold {fold}, seed {seed}", spec.steps)
    return self._runs[key]


def runner_from_config(config: Mapping[str, Any], workdir: str) -> Runner:
  """The `Runner` of a transfer-style config: `pretrain` (the template), `finetune`
  (6 classes, softmax cross entropy), `model`, `model_options`, `dataset`, `data`,
  `finetune_fraction` and, if present, `pretrain_multiclass` (steps, checkpoint_every)."""
  template = spec_from_config(config["pretrain"], config["model"], config["model_options"])
  finetune = dataclasses.replace(
      spec_from_config(config["finetune"], config["model"], config["model_options"]),
      num_classes=6, loss="softmax_cross_entropy")
  longer = {k: v for k, v in dict(config.get("pretrain_multiclass") or {}).items()
            if v is not None}
  return Runner(workdir, pretrain=template, finetune=finetune, dataset=config["dataset"],
                data_options=data_options(config["data"], config["dataset"]),
                finetune_fraction=config.get("finetune_fraction"), multiclass_pretrain=longer)


def _train(spec, data, run_dir, seed, init_from=None, identity=None) -> runs.RunResult:
  return runs.train(spec, train_iter_fn=data.train_iter, eval_batches_fn=data.eval_iter,
                    sample_batch={"image": np.zeros((1,) + data.image_shape, np.float32)},
                    run_dir=run_dir, seed=seed, init_from=init_from, data_identity=identity)


# ----------------------------------------------------------------------------
# Scoring.
# ----------------------------------------------------------------------------

# Table 2's columns (and Fig. 7's "mean accuracy" = mean recall), by score name.
SEGMENTATION_COLUMNS = {"overall_accuracy": "overall acc.", "mean_recall": "mean rec.",
                        "fw_iou": "f.w. IU", "mean_iou": "mean IU"}
BINARY_COLUMNS = {**SEGMENTATION_COLUMNS, "foreground_recall": "fg rec.",
                  "background_recall": "bg rec."}


def own_scores(result: runs.RunResult, k: int = 5) -> dict[str, list[float]]:
  """A run's scores on its own test split over its last `k` snapshots (Table 2's columns,
  plus per-class recall for binary runs), keyed by column name."""
  score_fn = (runs.binary_segmentation_scores if result.spec.num_classes == 1
              else metrics.segmentation_scores)
  columns = BINARY_COLUMNS if result.spec.num_classes == 1 else SEGMENTATION_COLUMNS
  scores = result.scores(score_fn, k)
  return {column: scores[name] for name, column in columns.items() if name in scores}


def repeat_value(result: runs.RunResult, column: str, k: int = 5) -> float:
  """One repeat's value of a column: the mean over the run's last `k` snapshots."""
  return float(np.mean(own_scores(result, k)[column]))


def fold_average(per_fold: Sequence[Sequence[float]]) -> list[float]:
  """Elementwise mean over folds of aligned value lists (one per repeat, or repeat × snapshot).

  The "Average" column of Tables 3-5: its spread is that of the repeats, not
  the spread between folds. Lists of unequal length are an error (they would
  not be aligned).
  """
  if not per_fold:
    raise ValueError("fold_average needs at least one fold's values.")
  lengths = sorted({len(v) for v in per_fold})
  if len(lengths) > 1:
    raise ValueError(f"fold_average: the folds have different numbers of values {lengths}; "
                     "every fold needs the same repeats (and snapshots).")
  return list(np.mean([np.asarray(v, np.float64) for v in per_fold], axis=0))


def average_precision(scores, labels, where=None) -> float:
  """Average precision of the positive class (labels == 1) ranked by `scores`
  (scikit-learn's `average_precision_score`); NaN without positives."""
  from sklearn import metrics as sk_metrics  # pylint: disable=g-import-not-at-top
  scores = np.ravel(np.asarray(scores, np.float64))
  labels = np.ravel(np.asarray(labels))
  if where is not None:
    keep = np.ravel(np.asarray(where, bool))
    scores, labels = scores[keep], labels[keep]
  if not np.any(labels == 1):
    return float("nan")
  return float(sk_metrics.average_precision_score(labels == 1, scores))


def predict(spec: runs.TrainSpec, params, batches: Iterable[Mapping[str, Any]],
            label_key: str = "label") -> dict[str, np.ndarray]:
  """Logits of `spec`'s model on `batches`, with images and labels (void padding dropped).

  Returns {"image", "label", "logits"} as NumPy, one entry per example
  (examples whose label is entirely void — the evaluation padding — left out).
  """
  model = spec.build_model()
  apply = jax.jit(lambda p, x: model.apply({"params": p}, x, train=False))
  parts: dict[str, list] = {"image": [], "label": [], "logits": []}
  for batch in batches:
    logits = np.asarray(jax.device_get(apply(params, batch["image"])))
    label = np.asarray(jax.device_get(batch[label_key]))
    keep = (label != 255).reshape(len(label), -1).any(axis=1)
    parts["image"].append(np.asarray(jax.device_get(batch["image"]))[keep])
    parts["label"].append(label[keep])
    parts["logits"].append(logits[keep])
  return {k: np.concatenate(v) for k, v in parts.items()}


def foreground_average_precision(result: runs.RunResult, batches_fn: Callable[[], Iterable],
                                 k: int = 5) -> list[float]:
  """Foreground AP (pixels ranked by the binary model's logit) of the last `k`
  checkpoints of a binary run, on the evaluation batches."""
  if result.spec.num_classes != 1:
    raise ValueError(f"foreground_average_precision needs a binary run (num_classes=1), "
                     f"got num_classes={result.spec.num_classes} in {result.run_dir}.")
  from jaxpu import checkpoint  # pylint: disable=g-import-not-at-top
  steps = checkpoint.available_steps(result.run_dir)[-k:]
  out = []
  for step in steps:
    pred = predict(result.spec, result.params(step), batches_fn())
    out.append(average_precision(pred["logits"][..., 0], pred["label"],
                                 where=pred["label"] != 255))
  return out
