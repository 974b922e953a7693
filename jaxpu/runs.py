"""Training runs shared by the experiments: train a spec, score its snapshots, transfer.

A run is one `TrainSpec` (model, loss, optimizer, schedule) trained with one
seed into its own folder. `train` checkpoints every `checkpoint_every` steps
(keeping the last `keep`, as the thesis reports the last five snapshots),
scores every checkpointed snapshot on the evaluation data (its confusion
matrix goes to `snapshots.jsonl`), resumes an interrupted run, and returns the
finished result without training again when the folder already holds it
(`done.json`): that is how one pre-training serves every table that needs it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from absl import logging
import jax
import numpy as np

from jaxpu import checkpoint
from jaxpu import experiment
from jaxpu import metrics
from jaxpu import models
from jaxpu import train as train_lib

_SPEC_FILE = "spec.json"
_DONE_FILE = "done.json"
_SNAPSHOTS_FILE = "snapshots.jsonl"


@dataclasses.dataclass(frozen=True)
class TrainSpec:
  """What to train and how (everything but the data and the seed).

  Attributes:
    model: a `jaxpu.models` name.
    num_classes: model outputs (1 for a binary model).
    loss: a `jaxpu.losses` name; `loss_kwargs` its arguments.
    loss_reduction: "mean" over the valid elements of the batch, or
      "sum_per_example" (summed over each example's valid elements, averaged
      over the examples: Caffe's `SoftmaxWithLoss` with `normalize: false`).
    class_balanced: reweigh classes by their occurrence in each batch (§4).
    first_loss, first_loss_kwargs, first_loss_steps: an optional first stage
      trained with another loss (the thesis starts hard bootstrapping after a
      few epochs of class-weighted training, §4).
    optimizer, learning_rate, schedule, warmup_steps, momentum, weight_decay,
      bias_lr_mult: see `jaxpu.train.make_optimizer`.
    steps: total training steps; batch_size: global batch size.
    checkpoint_every: steps between checkpoints (and snapshot evaluations);
      keep: checkpoints kept (the last `keep` snapshots are reported).
    model_options: extra `jaxpu.models.get` options, as (name, value) pairs.
  """
  model: str
  num_classes: int
  loss: str
  loss_kwargs: tuple = ()
  loss_reduction: str = "mean"
  class_balanced: bool = False
  first_loss: Optional[str] = None
  first_loss_kwargs: tuple = ()
  first_loss_steps: int = 0
  optimizer: str = "adam"
  learning_rate: float = 1e-3
  schedule: str = "constant"
  warmup_steps: int = 0
  momentum: float = 0.9
  weight_decay: float = 0.0
  bias_lr_mult: float = 1.0
  steps: int = 1000
  batch_size: int = 32
  checkpoint_every: int = 100
  keep: int = 5
  log_every: int = 50
  model_options: tuple = ()

  def __post_init__(self):
    for name in ("loss_kwargs", "first_loss_kwargs", "model_options"):
      value = getattr(self, name)
      if isinstance(value, Mapping):
        object.__setattr__(self, name, tuple(sorted(value.items())))
    for name in ("num_classes", "steps", "batch_size", "checkpoint_every", "keep", "log_every"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"TrainSpec.{name} must be a positive int, got {value!r}.")
    for name in ("warmup_steps", "first_loss_steps"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"TrainSpec.{name} must be an int >= 0, got {value!r}.")
    if not (np.isfinite(self.learning_rate) and self.learning_rate > 0):
      raise ValueError(f"TrainSpec.learning_rate must be > 0, got {self.learning_rate!r}.")
    if not (np.isfinite(self.weight_decay) and self.weight_decay >= 0):
      raise ValueError(f"TrainSpec.weight_decay must be >= 0, got {self.weight_decay!r}.")
    if self.schedule == "cosine" and self.warmup_steps >= self.steps:
      raise ValueError(f"TrainSpec.warmup_steps ({self.warmup_steps}) must be below steps "
                       f"({self.steps}) for the cosine schedule.")
    if self.first_loss is not None and not 0 < self.first_loss_steps < self.steps:
      raise ValueError(f"first_loss_steps must be in (0, steps={self.steps}), "
                       f"got {self.first_loss_steps}.")

  def build_model(self):
    return models.get(self.model, self.num_classes, **dict(self.model_options))

  def build_optimizer(self):
    return train_lib.make_optimizer(
        self.optimizer, self.learning_rate, momentum=self.momentum,
        weight_decay=self.weight_decay, schedule=self.schedule, total_steps=self.steps,
        warmup_steps=self.warmup_steps, bias_lr_mult=self.bias_lr_mult)

  def as_dict(self) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(self), default=list))


@dataclasses.dataclass
class RunResult:
  """A finished run: its folder and the confusion matrix of each scored snapshot."""
  run_dir: str
  spec: TrainSpec
  snapshots: dict[int, np.ndarray]

  @property
  def checkpoint_dir(self) -> str:
    return self.run_dir

  def last(self, k: Optional[int] = None) -> list[np.ndarray]:
    """Confusion matrices of the last `k` snapshots (default: `spec.keep`)."""
    k = self.spec.keep if k is None else k
    return [self.snapshots[s] for s in sorted(self.snapshots)[-k:]]

  def scores(self, score_fn: Callable[[np.ndarray], Mapping[str, float]],
             k: Optional[int] = None) -> dict[str, list[float]]:
    """`score_fn` of each of the last `k` snapshots, as {score name: [values]}."""
    out: dict[str, list[float]] = {}
    for cm in self.last(k):
      for name, value in score_fn(cm).items():
        out.setdefault(name, []).append(float(value))
    return out

  def params(self, step: Optional[int] = None):
    """The parameters of checkpoint `step` (default: the latest)."""
    return checkpoint.restore_params(self.run_dir, step)


def steps_for_epochs(epochs: float, steps_per_epoch: int) -> int:
  """Training steps of `epochs` passes over the data (at least 1)."""
  if not epochs > 0:
    raise ValueError(f"epochs must be > 0, got {epochs!r}.")
  return max(1, round(epochs * steps_per_epoch))


def binary_segmentation_scores(cm) -> dict[str, float]:
  """Table 2's columns plus per-class recall of a 2x2 (background, foreground) matrix."""
  cm = np.asarray(cm, np.float64)
  scores = metrics.segmentation_scores(cm)
  rows = cm.sum(axis=1)
  scores["background_recall"] = float(cm[0, 0] / rows[0]) if rows[0] else float("nan")
  scores["foreground_recall"] = float(cm[1, 1] / rows[1]) if rows[1] else float("nan")
  return scores


def _read_json(path: str) -> Optional[dict]:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _write_json(path: str, value) -> None:
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=1)
  os.replace(tmp, path)


def read_jsonl(path: str) -> list[dict]:
  """The records of a JSON-lines file.

  A cut last line (an interrupted write) is skipped with a warning naming the
  file; a damaged line elsewhere is an error naming the file and the line.
  """
  if not os.path.exists(path):
    return []
  with open(path) as f:
    lines = [line for line in f.read().splitlines() if line.strip()]
  out = []
  for number, line in enumerate(lines, 1):
    try:
      out.append(json.loads(line))
    except json.JSONDecodeError as e:
      if number == len(lines):
        logging.warning("%s: skipping its cut last line %d (%s); it is rewritten when the "
                        "run resumes.", path, number, e)
        break
      raise ValueError(f"{path}: line {number} is not valid JSON ({e}); delete the run "
                       f"folder {os.path.dirname(path)} to train it again.") from None
  return out


def _read_snapshots(run_dir: str) -> dict[int, np.ndarray]:
  return {int(entry["step"]): np.asarray(entry["confusion_matrix"], np.int64)
          for entry in read_jsonl(os.path.join(run_dir, _SNAPSHOTS_FILE))}


def _truncate_snapshots(run_dir: str, last_step: int) -> None:
  """Keeps the snapshots up to the checkpoint a run resumes from (later ones are redone)."""
  path = os.path.join(run_dir, _SNAPSHOTS_FILE)
  if not os.path.exists(path):
    return
  kept = [e for e in read_jsonl(path) if int(e["step"]) <= last_step]
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    f.writelines(json.dumps(e) + "\n" for e in kept)
  os.replace(tmp, path)


def _identity(spec: TrainSpec, seed: int, init_from: Optional[str],
              init_keys: Sequence[str], data: Optional[Mapping[str, Any]]) -> dict[str, Any]:
  return json.loads(json.dumps(
      {"spec": spec.as_dict(), "seed": int(seed),
       "init_from": None if init_from is None else os.path.realpath(init_from),
       "init_keys": list(init_keys) if init_from else [],
       "data": dict(data) if data is not None else None}, default=str))


def _claim(run_dir: str, identity: Mapping[str, Any]) -> None:
  """Records what `run_dir` trains; refuses a folder that holds another run.

  A folder whose run stopped before its first checkpoint holds nothing to
  keep: it is claimed anew, so a corrected command is not blocked.
  """
  os.makedirs(run_dir, exist_ok=True)
  path = os.path.join(run_dir, _SPEC_FILE)
  existing = _read_json(path)
  if existing is not None and existing != identity:
    if checkpoint.available_steps_in(os.path.join(run_dir, checkpoint.CHECKPOINT_SUBDIR)):
      changed = "\n".join(
          f"  {name}: {experiment.show_value(a)} (in the folder) -> "
          f"{experiment.show_value(b)} (now)"
          for name, a, b in experiment.config_differences(existing, identity))
      raise ValueError(
          f"{run_dir} holds a run with other settings; its checkpoints would not fit this "
          f"run. These fields differ:\n{changed}\nUse another --workdir, or delete "
          f"{run_dir} to train it again.")
    logging.warning("%s held a run with other settings that stopped before its first "
                    "checkpoint; starting it anew.", run_dir)
    for stale in (_SNAPSHOTS_FILE, "metrics.jsonl"):
      if os.path.exists(os.path.join(run_dir, stale)):
        os.remove(os.path.join(run_dir, stale))
    existing = None
  if existing is None:
    _write_json(path, dict(identity))


def train(spec: TrainSpec, *, train_iter_fn: Callable[[int], Iterable[Mapping[str, Any]]],
          eval_batches_fn: Callable[[], Iterable[Mapping[str, Any]]], sample_batch,
          run_dir: str, seed: int, init_from: Optional[str] = None,
          init_keys: Sequence[str] = ("encoder",), eval_label_key: str = "label",
          score_fn: Optional[Callable[[np.ndarray], Mapping[str, float]]] = None,
          mesh: Optional[jax.sharding.Mesh] = None,
          data_identity: Optional[Mapping[str, Any]] = None) -> RunResult:
  """Trains `spec` into `run_dir` (or returns the finished run found there).

  Args:
    spec: what to train.
    train_iter_fn: `start_step -> iterator of training batches` (exact resume).
    eval_batches_fn: `() -> iterable of evaluation batches` (one pass).
    sample_batch: a batch (or image array) giving the input shape.
    run_dir: the run's folder: checkpoints, TensorBoard, metrics.jsonl,
      snapshots.jsonl, spec.json, done.json.
    seed: initialisation and dropout seed.
    init_from: a run folder (or checkpoint folder) whose `init_keys` subtrees
      initialise the model (`jaxpu.checkpoint.transfer`); the rest stays
      Xavier-initialised.
    eval_label_key: the batch key scored against (`"true_label"` to score a
      model trained on corrupted labels against the clean ones).
    score_fn: scalars logged at each snapshot (default: segmentation scores
      for segmentation models, classification scores otherwise).
    mesh: device mesh (default: all devices).
    data_identity: what identifies the training and evaluation data
      (dataset, its config, fold, phase, corruption, noise seed, ...; see
      `jaxpu.segmentation_runs.data_identity`): part of the run's identity,
      so a folder is never reused for other data.
  """
  identity = _identity(spec, seed, init_from, init_keys, data_identity)
  done = _read_json(os.path.join(run_dir, _DONE_FILE))
  if done is not None and done.get("identity") == identity:
    logging.info("Reusing the finished run in %s.", run_dir)
    return RunResult(run_dir, spec, _read_snapshots(run_dir))
  _claim(run_dir, identity)
  steps = checkpoint.available_steps_in(os.path.join(run_dir, checkpoint.CHECKPOINT_SUBDIR))
  _truncate_snapshots(run_dir, steps[-1] if steps else 0)

  model, optimizer = spec.build_model(), spec.build_optimizer()
  state = train_lib.create_train_state(model, optimizer, seed, sample_batch)
  if init_from is not None:
    params = checkpoint.transfer(state.params, init_from, keys=tuple(init_keys))
    state = state.replace(params=params, opt_state=optimizer.init(params))

  num_outputs = spec.num_classes
  eval_step = train_lib.make_eval_step(model, num_outputs, mesh, label_key=eval_label_key)
  if score_fn is None:
    score_fn = (binary_segmentation_scores if num_outputs == 1 else
                metrics.segmentation_scores if spec.model.startswith("fcn") else
                metrics.classification_scores)
  snapshots_path = os.path.join(run_dir, _SNAPSHOTS_FILE)

  def eval_fn(state):
    cm = train_lib.evaluate(eval_step, state.params, eval_batches_fn(), mesh)
    step = int(train_lib.to_host(state.step))
    if jax.process_index() == 0:
      with open(snapshots_path, "a") as f:
        f.write(json.dumps({"step": step, "confusion_matrix": cm.tolist()}) + "\n")
    scores = score_fn(cm)
    undefined = sorted(k for k, v in scores.items() if not np.isfinite(v))
    if undefined:  # e.g. the recall of a class absent from the evaluation data
      logging.warning("%s, step %d: %s undefined (not finite) on the evaluation data; not "
                      "logged to TensorBoard (the confusion matrix is in %s).", run_dir, step,
                      ", ".join(undefined), snapshots_path)
    return {k: v for k, v in scores.items() if k not in undefined}

  stages = [(spec.loss, spec.loss_kwargs, spec.steps)]
  if spec.first_loss is not None:
    stages.insert(0, (spec.first_loss, spec.first_loss_kwargs, spec.first_loss_steps))
  for loss_name, loss_kwargs, until in stages:
    reduction = {} if spec.loss_reduction == "mean" else {"reduction": spec.loss_reduction}
    loss_fn = train_lib.make_loss_fn(loss_name, num_outputs, spec.class_balanced,
                                     **reduction, **dict(loss_kwargs))
    state, _ = train_lib.fit(
        state, model=model, optimizer=optimizer, loss_fn=loss_fn,
        train_iter_fn=train_iter_fn, num_steps=until, workdir=run_dir, mesh=mesh,
        log_every=spec.log_every, eval_every=spec.checkpoint_every, eval_fn=eval_fn,
        checkpoint_every=spec.checkpoint_every, max_to_keep=spec.keep)
  _write_json(os.path.join(run_dir, _DONE_FILE), {"identity": identity})
  return RunResult(run_dir, spec, _read_snapshots(run_dir))
