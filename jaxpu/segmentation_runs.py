"""Segmentation runs: what is trained, from where (pre-training → fine-tuning), scoring.

The building blocks of the segmentation experiments (`binary_segmentation`,
`transfer`, and your own), independent of the thesis' tables
(`jaxpu.thesis.rows` says which training feeds which row):

- `Training`: one training set and loss (task, corruption, loss). Its `key`
  names the run folder, so every row and table that needs the same
  pre-training gets the same folder, and `jaxpu.runs.train` (done.json)
  trains it once.
- `data_spec`: the `SegmentationSpec` template of a config's `data` section;
  `data_identity`: what identifies the data of a run (part of its identity).
- `Run`: one training run: its training set and loss (or the fold's
  fine-tuning), fold, seed, and the run it starts from (`init_from`: all its
  parameters but the head). Pre-training, fine-tuning and training from
  scratch are the same kind of run.
- `Runner`: trains runs once each, their `init_from` first; `train` is a
  pre-training on a fold's pre-training classes (or all, `fold=None`),
  `finetune_run` a fine-tuning on the fold's five classes from a
  pre-training's encoder (§5.3.2).
- scoring: scores of the last snapshots, fold averages, and the
  threshold-free foreground average precision of the unsegmented-rate sweep.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import jax
import numpy as np

from jaxpu import predict as prediction
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


def data_spec(data: Mapping[str, Any], dataset: str):
  """The `SegmentationSpec` template of a config's `data` section for `dataset`.

  `data.synthetic` fields override the embedded "single" config (ignored for
  voc); `data.downsample` / `data.image_size` / `data.preprocessing` apply to
  both (None: the dataset's default).
  """
  from jaxpu.data import pipeline  # pylint: disable=g-import-not-at-top
  for key in ("downsample", "image_size"):
    value = data.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < 1):
      raise ValueError(f"--config.data.{key}={value!r}: must be a positive integer (or unset "
                       "for the dataset's default).")
  for key, value in dict(data.get("synthetic") or {}).items():
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < 1):
      raise ValueError(f"--config.data.synthetic.{key}={value!r}: must be a positive integer "
                       "(or unset).")
  preprocessing = data.get("preprocessing")
  if preprocessing is not None and preprocessing not in pipeline.PREPROCESSINGS:
    raise ValueError(f"--config.data.preprocessing={preprocessing!r}: choose one of "
                     f"{pipeline.PREPROCESSINGS}.")
  options: dict[str, Any] = dict(name=dataset, data_dir=data.get("data_dir"))
  if dataset == "voc":
    options["manual_dir"] = data.get("manual_dir")
  elif dataset == "folder":
    options["directory"] = data.get("directory")
  else:
    from jaxpu.data import synthetic  # pylint: disable=g-import-not-at-top
    overrides = {k: v for k, v in dict(data.get("synthetic") or {}).items() if v is not None}
    if overrides:
      options["config"] = synthetic.synthetic_config("single", **overrides)
  for key in ("downsample", "image_size", "preprocessing"):
    if data.get(key) is not None:
      options[key] = data[key]
  return pipeline.SegmentationSpec(**options)


def data_identity(spec, data) -> dict[str, Any]:
  """What identifies a `Data` for a run's identity: every field of its spec that selects
  or changes its examples (not where its files are), and what it holds."""
  out = {"spec": spec.identity(), "classes": list(data.class_names),
         "image_shape": list(data.image_shape), "train_examples": data.num_train_examples,
         "eval_examples": data.num_eval_examples}
  if data.fingerprint:  # a user's folder: its content, not its path
    out["fingerprint"] = data.fingerprint
  return out


@dataclasses.dataclass(frozen=True)
class Run:
  """One training run of a `Runner`: what it trains on and where it starts from.

  Attributes:
    training: the training set and loss; None for a fine-tuning (the fold's
      classes, the fine-tuning template's loss).
    fold: the fold (None: all classes).
    seed: the run's seed (initialisation, shuffling, label noise, subset).
    init_from: the run whose checkpoint initialises this one (None: from
      scratch), all but the head (`dont_load`).
  """
  training: Optional[Training]
  fold: Optional[int]
  seed: int
  init_from: Optional["Run"] = None

  @property
  def phase(self) -> str:
    return "pretrain" if self.training is not None else "finetune"

  def folder(self, workdir: str) -> str:
    """The run folder (keyed by what it trains, never by a row name)."""
    if self.training is not None:
      return pretrain_dir(workdir, self.training, self.fold, self.seed)
    source = None if self.init_from is None else self.init_from.training
    return finetune_dir(workdir, source, self.fold, self.seed)

  def describe(self) -> str:
    if self.training is not None:
      return f"pre-training {self.training.key}, fold {self.fold}, seed {self.seed}"
    source = "random init" if self.init_from is None else self.init_from.training.key
    return f"fine-tuning from {source}, fold {self.fold}, seed {self.seed}"


DRAW_SEED_STRIDE = 1000  # fine-tuning draw j of repeat seed s uses seed s + 1000 j


def finetune_seed(seed: int, draw: int) -> int:
  """The seed of fine-tuning draw `draw` of the repeat with seed `seed` (draw 0: `seed`)."""
  if not 0 <= draw < DRAW_SEED_STRIDE:
    raise ValueError(f"draw must be in [0, {DRAW_SEED_STRIDE}), got {draw!r}.")
  return seed + DRAW_SEED_STRIDE * draw


@dataclasses.dataclass
class Runner:
  """Trains `Run`s into `workdir`, once each (a run's `init_from` is trained first).

  Attributes:
    workdir: the experiment's output folder (run folders go to workdir/runs).
    pretrain: template of the pre-training runs (its `num_classes`/`loss`
      are replaced per `Training`).
    finetune: template of the fine-tuning runs (6 classes: background and
      the fold's five; its `loss` is used as given).
    data: the `SegmentationSpec` template of both phases (dataset, files,
      sizes); each run sets its task, fold, phase, corruption and seeds.
    finetune_fraction: fine-tune on this seeded fraction of the fold's
      training images (None: all). The subset is drawn with the run's seed,
      so every row of a repeat fine-tunes on the same images.
    finetune_draws: fine-tunings of each pre-trained encoder per repeat (draw j
      uses the seed `finetune_seed(seed, j)`); a repeat's value is their mean.
    pretrain_init: where the pre-trainings start (`runs.train`'s `init_from`):
      e.g. an `.npz` of ImageNet AlexNet weights; None: from scratch.
    multiclass_pretrain: `TrainSpec` fields that replace the template's for
      pre-trainings with more than one output (multiclass, categories): e.g.
      {"steps": 2400, "checkpoint_every": 240}, as a 16-class softmax needs
      a longer schedule than a binary one to learn its task.
    progress: called with a label and the run's steps after each run this
      runner trains or reuses (e.g. `experiments.common.Progress`).
  """
  workdir: str
  pretrain: runs.TrainSpec
  finetune: runs.TrainSpec
  data: Any
  finetune_fraction: Optional[float] = None
  finetune_draws: int = 1
  pretrain_init: Optional[str] = None
  multiclass_pretrain: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  progress: Optional[Callable[[str, int], None]] = None
  _data: dict = dataclasses.field(default_factory=dict, repr=False)
  _runs: dict = dataclasses.field(default_factory=dict, repr=False)

  def data_spec(self, training: Optional[Training], fold: Optional[int], seed: int,
                batch_size: Optional[int] = None):
    """The `SegmentationSpec` of a pre-training (`training`) or a fold's fine-tuning (None)."""
    if training is None:
      changes = dict(task="multiclass", phase="finetune",
                     batch_size=batch_size or self.finetune.batch_size)
      if self.finetune_fraction is not None:
        changes["subsample"] = self.finetune_fraction
    else:
      changes = dict(task=training.task, corruption=training.corruption, phase="pretrain",
                     grouping_seed=seed, batch_size=batch_size or self.pretrain.batch_size)
    return self.data.replace(fold=fold, noise_seed=seed, seed=seed, **changes)

  def dataset(self, training: Optional[Training], fold: Optional[int], seed: int,
              batch_size: Optional[int] = None):
    """The `Data` of a pre-training (`training`) or of a fold's fine-tuning (None)."""
    from jaxpu.data import pipeline  # pylint: disable=g-import-not-at-top
    spec = self.data_spec(training, fold, seed, batch_size)
    if spec not in self._data:
      self._data[spec] = pipeline.make_segmentation_data(spec)
    return self._data[spec]

  def spec(self, run: Run, num_label_values: int) -> runs.TrainSpec:
    """The `TrainSpec` of `run` (its number of outputs follows its data)."""
    if run.training is None:
      return dataclasses.replace(self.finetune, num_classes=num_label_values)
    outputs = 1 if run.training.binary else num_label_values
    longer = {} if run.training.binary else dict(self.multiclass_pretrain)
    return dataclasses.replace(self.pretrain, num_classes=outputs, loss=run.training.loss,
                               loss_kwargs=run.training.loss_kwargs, **longer)

  def run(self, run: Run) -> runs.RunResult:
    """Trains `run` (after its `init_from`), or returns it when already trained."""
    if run not in self._runs:
      if run.init_from is not None:
        init_from = self.run(run.init_from).run_dir
      else:
        init_from = self.pretrain_init if run.training is not None else None
      data = self.dataset(run.training, run.fold, run.seed)
      spec = self.spec(run, data.num_classes)
      identity = data_identity(self.data_spec(run.training, run.fold, run.seed), data)
      self._runs[run] = runs.train(
          spec, train_iter_fn=data.train_iter, eval_batches_fn=data.eval_iter,
          sample_batch={"image": np.zeros((1,) + data.image_shape, np.float32)},
          run_dir=run.folder(self.workdir), seed=run.seed, init_from=init_from,
          data_identity=identity)
      if self.progress is not None:
        self.progress(run.describe(), spec.steps)
    return self._runs[run]

  def train(self, training: Training, fold: Optional[int], seed: int) -> runs.RunResult:
    """Trains `training` on the fold's pre-training classes (all 20 if fold is None)."""
    return self.run(Run(training, fold, seed))

  def finetune_run(self, training: Optional[Training], fold: int, seed: int,
                   draw: int = 0) -> runs.RunResult:
    """Fine-tunes on the fold's 5 classes from `training`'s encoder (None: random init).

    `draw` > 0 fine-tunes the same pre-trained encoder (seed `seed`) again with the
    fine-tuning seed `seed + DRAW_SEED_STRIDE · draw`: another subset of the fold's
    images, head initialisation and order. Draw 0 uses the repeat's own seed.
    """
    source = None if training is None else Run(training, fold, seed)
    return self.run(Run(None, fold, finetune_seed(seed, draw), init_from=source))

  def planned_steps(self, run: Run) -> int:
    """The steps `run` trains (without its `init_from`)."""
    if run.training is None:
      return self.finetune.steps
    if run.training.binary:
      return self.pretrain.steps
    return self.multiclass_pretrain.get("steps", self.pretrain.steps)


def runner_from_config(config: Mapping[str, Any], workdir: str) -> Runner:
  """The `Runner` of a transfer-style config: `pretrain` (the template), `finetune`
  (6 classes, softmax cross entropy), `model`, `model_options`, `dataset`, `data`,
  `finetune_fraction` and, if present, `pretrain_multiclass` (steps, checkpoint_every).
  Every training setting is validated here, naming `--config.<section>.<field>`."""
  model = dict(model=config["model"], model_options=dict(config["model_options"]))
  template = runs.TrainSpec.from_config(config["pretrain"], "pretrain", num_classes=1,
                                        loss="logistic", **model)
  finetune = runs.TrainSpec.from_config(config["finetune"], "finetune", num_classes=6,
                                        loss="softmax_cross_entropy", **model)
  longer = {k: v for k, v in dict(config.get("pretrain_multiclass") or {}).items()
            if v is not None}
  if longer:
    try:
      dataclasses.replace(template, **longer)
    except runs.SpecError as e:
      raise runs.SpecError(e.field, e.value, e.requirement,
                           prefix="--config.pretrain_multiclass.") from None
  return Runner(workdir, pretrain=template, finetune=finetune,
                data=data_spec(config["data"], config["dataset"]),
                finetune_fraction=config.get("finetune_fraction"),
                finetune_draws=config.get("finetune_draws", 1),
                pretrain_init=config.get("imagenet_weights"), multiclass_pretrain=longer)


# ----------------------------------------------------------------------------
# Scoring.
# ----------------------------------------------------------------------------

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
  apply = prediction.apply_fn(model)
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
