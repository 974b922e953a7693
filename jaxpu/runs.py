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
    class_balanced: reweigh classes by their occurrence in each batch (§4).
    first_loss, first_loss_kwargs, first_loss_steps: an optional first stage
      trained with another loss (the thesis starts hard bootstrapping after a
      few epochs of class-weighted training, §4).
    optimizer, learning_rate, schedule, warmup_steps, momentum, weight_decay:
      see `jaxpu.train.make_optimizer`.
    steps: total training steps; batch_size: global batch size.
    checkpoint_every: steps between checkpoints (and snapshot evaluations);
      keep: checkpoints kept (the last `keep` snapshots are reported).
    model_options: extra `jaxpu.models.get` options, as (name, value) pairs.
  """
  model: str
  num_classes: int
  loss: str
  loss_kwargs: tuple = ()
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
    if self.first_loss is not None and not 0 < self.first_loss_steps < self.steps:
      raise ValueError(f"first_loss_steps must be in (0, steps={self.steps}), "
                       f"got {self.first_loss_steps}.")

  def build_model(self):
    return models.get(self.model, self.num_classes, **dict(self.model_options))

  def build_optimizer(self):
    return train_lib.make_optimizer(
        self.optimizer, self.learning_rate, momentum=self.momentum,
        weight_decay=self.weight_decay, schedule=self.schedule, total_steps=self.steps,
        warmup_steps=self.warmup_steps)

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


def _read_snapshots(run_dir: str) -> dict[int, np.ndarray]:
  path = os.path.join(run_dir, _SNAPSHOTS_FILE)
  snapshots = {}
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        if line.strip():
          entry = json.loads(line)
          snapshots[int(entry["step"])] = np.asarray(entry["confusion_matrix"], np.int64)
  return snapshots


def _identity(spec: TrainSpec, seed: int, init_from: Optional[str],
              init_keys: Sequence[str]) -> dict[str, Any]:
  return {"spec": spec.as_dict(), "seed": int(seed),
          "init_from": None if init_from is None else os.path.abspath(init_from),
          "init_keys": list(init_keys) if init_from else []}


def _claim(run_dir: str, identity: Mapping[str, Any]) -> None:
  """Records what `run_dir` trains; refuses a folder that holds another run."""
  os.makedirs(run_dir, exist_ok=True)
  path = os.path.join(run_dir, _SPEC_FILE)
  existing = _read_json(path)
  if existing is None:
    _write_json(path, dict(identity))
  elif existing != json.loads(json.dumps(dict(identity))):
    changed = sorted(k for k in set(existing) | set(identity)
                     if existing.get(k) != json.loads(json.dumps(identity.get(k))))
    raise ValueError(
        f"{run_dir} holds a run with other settings ({', '.join(changed)} differ); its "
        f"checkpoints would not fit this run. Use another --workdir, or delete {run_dir} "
        f"to train it again.")


def train(spec: TrainSpec, *, train_iter_fn: Callable[[int], Iterable[Mapping[str, Any]]],
          eval_batches_fn: Callable[[], Iterable[Mapping[str, Any]]], sample_batch,
          run_dir: str, seed: int, init_from: Optional[str] = None,
          init_keys: Sequence[str] = ("encoder",), eval_label_key: str = "label",
          score_fn: Optional[Callable[[np.ndarray], Mapping[str, float]]] = None,
          mesh: Optional[jax.sharding.Mesh] = None) -> RunResult:
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
  """
  identity = _identity(spec, seed, init_from, init_keys)
  done = _read_json(os.path.join(run_dir, _DONE_FILE))
  if done is not None and done.get("identity") == json.loads(json.dumps(identity)):
    logging.info("Reusing the finished run in %s.", run_dir)
    return RunResult(run_dir, spec, _read_snapshots(run_dir))
  _claim(run_dir, identity)

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
    return {k: v for k, v in score_fn(cm).items() if np.isfinite(v)}

  stages = [(spec.loss, spec.loss_kwargs, spec.steps)]
  if spec.first_loss is not None:
    stages.insert(0, (spec.first_loss, spec.first_loss_kwargs, spec.first_loss_steps))
  for loss_name, loss_kwargs, until in stages:
    loss_fn = train_lib.make_loss_fn(loss_name, num_outputs, spec.class_balanced,
                                     **dict(loss_kwargs))
    state, _ = train_lib.fit(
        state, model=model, optimizer=optimizer, loss_fn=loss_fn,
        train_iter_fn=train_iter_fn, num_steps=until, workdir=run_dir, mesh=mesh,
        log_every=spec.log_every, eval_every=spec.checkpoint_every, eval_fn=eval_fn,
        checkpoint_every=spec.checkpoint_every, max_to_keep=spec.keep)
  _write_json(os.path.join(run_dir, _DONE_FILE), {"identity": identity})
  return RunResult(run_dir, spec, _read_snapshots(run_dir))
