"""Segmentation runs shared by the §5.2-5.3 experiments: trainings, rows, transfer, scoring.

`binary_segmentation` (Table 2, Fig. 6), `transfer` (Tables 3-5, Fig. 7) and
`reproduce` build on the same pieces:

- `Training`: one training set and loss (task, corruption, loss). Its `key`
  names the run folder, so every row and table that needs the same
  pre-training gets the same folder, and `jaxpu.runs.train` (done.json)
  trains it once: Table 3's TrueLabels, Table 4's CompleteLabels and Fig. 7's
  "15" are one run; Table 3's BinarizedLabels and Fig. 7's "1" another.
- `Row` and `ROWS`: which training feeds which row of which table (None:
  random initialisation, the RandomWeights baseline / Fig. 7's 0).
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
    corruption: None or "name:rate" (`jaxpu.data.noise`), training split only.
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


TRUE_LABELS = Training("multiclass")
ALL_RANDOM_LABELS = Training("multiclass", "mislabel_objects:1.0")
HALF_RANDOM_LABELS = Training("multiclass", "mislabel_objects:0.5")
BINARIZED_LABELS = binary_training()
HALF_UNSEGMENTED = binary_training("unsegment_objects:0.5", "logistic")
CLASS_WEIGHTED = binary_training("unsegment_objects:0.5", "weighted_logistic",
                                 negative_weight=0.5)
SIGMOID_LOSS = binary_training("unsegment_objects:0.5", "sigmoid_negative")
NO_FALSE_POSITIVE = Training("target", None, "logistic")
HALF_FALSE_POSITIVE = Training("target", "false_positive_objects:0.5", "logistic")
MEANINGFUL_CATEGORIES = Training("categories")


def random_categories(k: int) -> Training:
  return Training(f"random_categories:{k}")


@dataclasses.dataclass(frozen=True)
class Row:
  """A row of a transfer table and the pre-training that feeds it (None: random init)."""
  table: str
  row: tuple[str, ...]
  training: Optional[Training]


def _rows(table, entries):
  return tuple(Row(table, row, training) for row, training in entries)


_RANDOM = (("Baseline", "RandomWeights"), None)
ROWS: dict[str, tuple[Row, ...]] = {
    "table3": _rows("table3", [
        _RANDOM,
        (("Baseline", "TrueLabels"), TRUE_LABELS),
        (("Objects Mislabelling", "AllRandomLabels"), ALL_RANDOM_LABELS),
        (("Objects Mislabelling", "HalfRandomLabels"), HALF_RANDOM_LABELS),
        (("Objects Mislabelling", "BinarizedLabels"), BINARIZED_LABELS)]),
    "table4": _rows("table4", [
        _RANDOM,
        (("Baseline", "CompleteLabels"), TRUE_LABELS),
        (("Inexhaustive Segmentation", "HalfUnsegmented"), HALF_UNSEGMENTED),
        (("Inexhaustive Segmentation", "SigmoidLoss"), SIGMOID_LOSS)]),
    "table5": _rows("table5", [
        _RANDOM,
        (("Baseline", "NoFalsePositive"), NO_FALSE_POSITIVE),
        (("False positive segmentation", "HalfFalsePositive"), HALF_FALSE_POSITIVE)]),
    # Fig. 7: number of categories of the pre-training labels.
    "fig7": _rows("fig7", [
        (("meaningful", "0"), None),
        (("meaningful", "1"), BINARIZED_LABELS),
        (("meaningful", "4"), MEANINGFUL_CATEGORIES),
        (("meaningful", "15"), TRUE_LABELS),
        (("random", "4"), random_categories(4)),
        (("random", "7"), random_categories(7)),
        (("random", "11"), random_categories(11))]),
}
TABLES = tuple(ROWS)


def parse_tables(value: str) -> tuple[str, ...]:
  """`--table` → table ids: "4" → ("table4",), "3,fig7", "all" → every table."""
  if value == "all":
    return TABLES
  out = []
  for part in value.split(","):
    part = part.strip()
    name = part if part in ROWS else f"table{part}"
    if name not in ROWS:
      raise ValueError(f"Unknown table {part!r}; choose from 3, 4, 5, fig7 or all "
                       "(comma-separated).")
    if name not in out:
      out.append(name)
  return tuple(out)


def parse_folds(value: str) -> tuple[int, ...]:
  """`--folds` → fold numbers, e.g. "1,2,3,4"."""
  try:
    folds = tuple(int(f) for f in str(value).split(",") if f.strip())
  except ValueError:
    raise ValueError(f"--folds must be comma-separated fold numbers 1-4, got {value!r}.") from None
  if not folds or any(f not in (1, 2, 3, 4) for f in folds) or len(set(folds)) != len(folds):
    raise ValueError(f"--folds must list distinct folds among 1, 2, 3, 4, got {value!r}.")
  return folds


def rows_for(tables: Sequence[str]) -> list[Row]:
  return [row for table in tables for row in ROWS[table]]


def trainings_for(rows: Iterable[Row]) -> list[Training]:
  """The distinct pre-trainings the rows need, in first-use order (one run each)."""
  out = []
  for row in rows:
    if row.training is not None and row.training not in out:
      out.append(row.training)
  return out


def training_names(rows: Iterable[Row]) -> dict[Training, str]:
  """A display name per pre-training: the names of the rows it feeds."""
  names: dict[Training, list[str]] = {}
  for row in rows:
    if row.training is not None:
      label = row.row[-1] if row.table != "fig7" else f"Fig7 {row.row[0]} {row.row[1]}"
      names.setdefault(row.training, [])
      if label not in names[row.training]:
        names[row.training].append(label)
  return {t: " / ".join(n) for t, n in names.items()}


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


def binary_spec(config: Mapping[str, Any], learning_rate: float) -> runs.TrainSpec:
  """The binary (logistic-loss) training run of a segmentation preset `config`."""
  return runs.TrainSpec(
      model=config["model"], model_options=config["model_options"], num_classes=1,
      loss="logistic", optimizer=config["optimizer"], learning_rate=learning_rate,
      schedule=config["schedule"], warmup_steps=config["warmup_steps"],
      weight_decay=config["weight_decay"], steps=config["steps"],
      batch_size=config["batch_size"], checkpoint_every=config["checkpoint_every"])


def data_options(config: Mapping[str, Any], dataset: str, data_dir: Optional[str],
                 manual_dir: Optional[str]) -> dict:
  """`make_segmentation_data` options of `dataset` for a preset `config` (`Runner.data_options`)."""
  options: dict[str, Any] = dict(data_dir=data_dir)
  if dataset == "voc":
    options["manual_dir"] = manual_dir
  elif config["synthetic_config"]:
    from jaxpu.data import synthetic  # pylint: disable=g-import-not-at-top
    options["config"] = synthetic.synthetic_config("single", **config["synthetic_config"])
  return options


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
      manual_dir, config, augment, ...).
  """
  workdir: str
  pretrain: runs.TrainSpec
  finetune: runs.TrainSpec
  dataset: str = "synthetic"
  data_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  _data: dict = dataclasses.field(default_factory=dict, repr=False)
  _runs: dict = dataclasses.field(default_factory=dict, repr=False)

  def data(self, training: Optional[Training], fold: Optional[int], seed: int,
           phase: str = "pretrain", batch_size: Optional[int] = None):
    """The `Data` of a pre-training (`training`) or of a fold's fine-tuning (None)."""
    from jaxpu.data import pipeline  # pylint: disable=g-import-not-at-top
    key = (training, fold, seed, phase)
    if key not in self._data:
      if phase == "finetune":
        options = dict(task="multiclass", batch_size=batch_size or self.finetune.batch_size)
      else:
        options = dict(task=training.task, corruption=training.corruption,
                       grouping_seed=seed, batch_size=batch_size or self.pretrain.batch_size)
      self._data[key] = pipeline.make_segmentation_data(
          self.dataset, fold=fold, phase=phase, noise_seed=seed, seed=seed,
          **options, **dict(self.data_options))
    return self._data[key]

  def pretrain_spec(self, training: Training, num_label_values: int) -> runs.TrainSpec:
    outputs = 1 if training.binary else num_label_values
    return dataclasses.replace(self.pretrain, num_classes=outputs, loss=training.loss,
                               loss_kwargs=training.loss_kwargs)

  def train(self, training: Training, fold: Optional[int], seed: int) -> runs.RunResult:
    """Trains `training` on the fold's pre-training classes (all 20 if fold is None)."""
    key = ("pretrain", training, fold, seed)
    if key not in self._runs:
      data = self.data(training, fold, seed)
      spec = self.pretrain_spec(training, data.num_classes)
      self._runs[key] = _train(spec, data, pretrain_dir(self.workdir, training, fold, seed),
                               seed)
    return self._runs[key]

  def transfer(self, training: Optional[Training], fold: int, seed: int) -> runs.RunResult:
    """Fine-tunes on the fold's 5 classes from `training`'s encoder (None: random init)."""
    key = ("finetune", training, fold, seed)
    if key not in self._runs:
      init_from = None if training is None else self.train(training, fold, seed).run_dir
      data = self.data(None, fold, seed, phase="finetune")
      spec = dataclasses.replace(self.finetune, num_classes=data.num_classes)
      self._runs[key] = _train(spec, data, finetune_dir(self.workdir, training, fold, seed),
                               seed, init_from=init_from)
    return self._runs[key]


def _train(spec, data, run_dir, seed, init_from=None) -> runs.RunResult:
  return runs.train(spec, train_iter_fn=data.train_iter, eval_batches_fn=data.eval_iter,
                    sample_batch={"image": np.zeros((1,) + data.image_shape, np.float32)},
                    run_dir=run_dir, seed=seed, init_from=init_from)


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


def fold_average(per_fold: Sequence[Sequence[float]]) -> list[float]:
  """Elementwise mean over folds of aligned value lists (repeat × snapshot).

  The "Average" column of Tables 3-5: its spread is that of repeats and
  snapshots, not the spread between folds. Lists are cut to the shortest.
  """
  if not per_fold:
    raise ValueError("fold_average needs at least one fold's values.")
  n = min(len(v) for v in per_fold)
  return list(np.mean([np.asarray(v[:n], np.float64) for v in per_fold], axis=0))


def average_precision(scores, labels, where=None) -> float:
  """Average precision of the positive class (labels == 1) ranked by `scores`.

  AP = Σ_k (R_k - R_{k-1}) P_k over the distinct score thresholds, highest
  first (sklearn's `average_precision_score`; no interpolation): a
  threshold-free summary of the precision-recall curve. NaN without positives.
  """
  scores = np.ravel(np.asarray(scores, np.float64))
  labels = np.ravel(np.asarray(labels))
  if where is not None:
    keep = np.ravel(np.asarray(where, bool))
    scores, labels = scores[keep], labels[keep]
  positives = labels == 1
  total = positives.sum()
  if total == 0:
    return float("nan")
  order = np.argsort(-scores, kind="stable")
  scores, positives = scores[order], positives[order]
  last_of_threshold = np.r_[np.diff(scores) != 0, True]
  tp = np.cumsum(positives)[last_of_threshold]
  predicted = (np.nonzero(last_of_threshold)[0] + 1)
  precision, recall = tp / predicted, tp / total
  return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


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
