"""Training runs shared by the experiments: train a spec, score its snapshots, transfer.

A run is one `TrainSpec` (model, loss, optimizer, schedule) trained with one
seed into its own folder, optionally starting from another run's checkpoint
(`init_from`, all but the `dont_load` subtrees). `train` checkpoints every
`checkpoint_every` steps (keeping the last `keep`, as the thesis reports the
last five snapshots), scores each of the last `keep` snapshots on the
evaluation data (its confusion matrix goes to `snapshots.jsonl`; earlier
snapshots are not scored, as nothing reports them), resumes an interrupted
run, and returns the finished result without training again when the folder
already holds it (`done.json`): that is how one pre-training serves every
table that needs it.
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
from jaxpu import fileio
from jaxpu import metrics
from jaxpu import models
from jaxpu import train as train_lib

_SPEC_FILE = "spec.json"
_DONE_FILE = "done.json"
_SNAPSHOTS_FILE = "snapshots.jsonl"


OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")
LOSS_REDUCTIONS = ("mean", "mean_per_example", "sum_per_example")


class SpecError(ValueError):
  """A bad `TrainSpec` field: `field`, its `value` and the `requirement` it fails."""

  def __init__(self, field: str, value: Any, requirement: str, prefix: str = "TrainSpec."):
    self.field, self.value, self.requirement = field, value, requirement
    super().__init__(f"{prefix}{field}={value!r}: {requirement}.")


def _setting(default, doc: str):
  """A field of the training settings: a config section (`pretrain`, `finetune`, `train`)."""
  return dataclasses.field(default=default, metadata={"setting": True, "doc": doc})


@dataclasses.dataclass(frozen=True)
class TrainSpec:
  """What to train and how (everything but the data, the seed and the initialisation).

  The fields marked as settings (`SETTINGS`) are one training config
  section: `experiments/configs/common.py` builds the section from them and
  `from_config` builds the spec from the section, validated once, here.

  Attributes:
    model: a `jaxpu.models` name; `model_options` its options, as (name, value) pairs.
    num_classes: model outputs (1 for a binary model).
    loss: a `jaxpu.losses` name; `loss_kwargs` its arguments.
    class_balanced: reweigh classes by their occurrence in each batch (§4).
    first_loss, first_loss_kwargs, first_loss_steps: an optional first stage
      trained with another loss (the thesis starts hard bootstrapping after a
      few epochs of class-weighted training, §4).
    the settings: see `SETTINGS` (each field's doc) and `jaxpu.train.make_optimizer`.
  """
  model: str
  num_classes: int
  loss: str
  loss_kwargs: tuple = ()
  class_balanced: bool = False
  first_loss: Optional[str] = None
  first_loss_kwargs: tuple = ()
  first_loss_steps: int = 0
  model_options: tuple = ()
  optimizer: str = _setting("adam", f"one of {OPTIMIZERS}")
  learning_rate: float = _setting(1e-3, "base (peak) learning rate")
  schedule: str = _setting("constant", f"one of {SCHEDULES} (cosine: decay to 0 at steps)")
  warmup_steps: int = _setting(0, "linear warm-up from 0 over this many steps")
  momentum: float = _setting(0.9, "SGD momentum (ignored by adam)")
  weight_decay: float = _setting(0.0, "Caffe's L2 weight decay, added to the gradient")
  lr_mults: tuple = _setting((), "(regex, multiplier) pairs on parameter paths: learning-rate "
                                 "multipliers, first match wins, 0 freezes")
  wd_mults: Optional[tuple] = _setting(None, "(regex, multiplier) pairs: weight-decay "
                                             "multipliers (None: kernels only)")
  steps: int = _setting(1000, "training steps")
  batch_size: int = _setting(32, "global batch size (a multiple of the device count)")
  microbatches: int = _setting(1, "gradient accumulation: micro-batches per step")
  checkpoint_every: int = _setting(100, "steps between checkpoints and snapshot scores")
  keep: int = _setting(5, "checkpoints kept (the last `keep` snapshots are reported)")
  loss_reduction: str = _setting("mean", f"one of {LOSS_REDUCTIONS} (jaxpu.train.objective)")
  log_every: int = _setting(50, "steps between logged training losses (and divergence checks)")

  def __post_init__(self):
    for name in ("loss_kwargs", "first_loss_kwargs", "model_options"):
      value = getattr(self, name)
      if isinstance(value, Mapping):
        object.__setattr__(self, name, tuple(sorted(value.items())))
    for name in ("lr_mults", "wd_mults"):
      value = getattr(self, name)
      if isinstance(value, (tuple, list)) and value and all(v is None for v in value):
        value = None  # `--config.x.wd_mults=None` arrives as (None,) for a tuple field
      if name == "lr_mults" and value is None:
        value = ()
      object.__setattr__(self, name, None if value is None else _pairs(name, value))
    self.validate()

  def validate(self) -> None:
    """Raises `SpecError` naming the first bad field."""
    for name in ("num_classes", "steps", "batch_size", "microbatches", "checkpoint_every",
                 "keep", "log_every"):
      _require(_is_int(getattr(self, name)) and getattr(self, name) >= 1, name,
               getattr(self, name), "must be a positive integer")
    for name in ("warmup_steps", "first_loss_steps"):
      _require(_is_int(getattr(self, name)) and getattr(self, name) >= 0, name,
               getattr(self, name), "must be an integer >= 0")
    _require(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer,
             f"choose one of {OPTIMIZERS}")
    _require(self.schedule in SCHEDULES, "schedule", self.schedule,
             f"choose one of {SCHEDULES}")
    _require(self.loss_reduction in LOSS_REDUCTIONS, "loss_reduction", self.loss_reduction,
             f"choose one of {LOSS_REDUCTIONS}")
    _require(_is_number(self.learning_rate) and self.learning_rate > 0, "learning_rate",
             self.learning_rate, "must be a finite number > 0")
    _require(_is_number(self.weight_decay) and self.weight_decay >= 0, "weight_decay",
             self.weight_decay, "must be a finite number >= 0")
    _require(_is_number(self.momentum) and 0 <= self.momentum < 1, "momentum", self.momentum,
             "must be in [0, 1)")
    _require(self.checkpoint_every <= self.steps, "checkpoint_every", self.checkpoint_every,
             f"must be at most steps ({self.steps})")
    _require(self.warmup_steps < self.steps, "warmup_steps", self.warmup_steps,
             f"must be below steps ({self.steps})")
    _require(self.batch_size % self.microbatches == 0, "microbatches", self.microbatches,
             f"must divide batch_size ({self.batch_size})")
    if self.first_loss is not None:
      _require(0 < self.first_loss_steps < self.steps, "first_loss_steps",
               self.first_loss_steps, f"must be in (0, steps={self.steps})")

  @classmethod
  def from_config(cls, section: Mapping[str, Any], path: str, **fields) -> "TrainSpec":
    """The spec of config section `path` (its `SETTINGS`) plus the other `fields`.

    Errors name `--config.<path>.<field>`; the global batch must also split
    evenly over this process' devices.
    """
    values = dict(section)
    unknown = sorted(set(values) - set(SETTINGS))
    if unknown:
      raise ValueError(f"--config.{path} has unknown fields {unknown}; a training section "
                       f"has {sorted(SETTINGS)}.")
    try:
      spec = cls(**fields, **values)
    except SpecError as e:
      where = f"--config.{path}." if e.field in SETTINGS else "TrainSpec."
      raise SpecError(e.field, e.value, e.requirement, prefix=where) from None
    devices = jax.device_count()
    if spec.batch_size % (devices * spec.microbatches):
      raise SpecError("batch_size", spec.batch_size, f"must be a multiple of the {devices} "
                      f"devices × microbatches ({spec.microbatches})", f"--config.{path}.")
    return spec

  def build_model(self):
    return models.get(self.model, self.num_classes, **dict(self.model_options))

  def build_optimizer(self):
    return train_lib.make_optimizer(
        self.optimizer, self.learning_rate, momentum=self.momentum,
        weight_decay=self.weight_decay, schedule=self.schedule, total_steps=self.steps,
        warmup_steps=self.warmup_steps, lr_mults=self.lr_mults, wd_mults=self.wd_mults)

  def as_dict(self) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(self), default=list))


SETTINGS = {f.name: f.metadata["doc"] for f in dataclasses.fields(TrainSpec)
            if f.metadata.get("setting")}


def settings(**overrides) -> dict[str, Any]:
  """The training settings with their defaults, `overrides` applied (a config section)."""
  unknown = sorted(set(overrides) - set(SETTINGS))
  if unknown:
    raise ValueError(f"Unknown training settings {unknown}; the settings are {sorted(SETTINGS)}.")
  defaults = {f.name: f.default for f in dataclasses.fields(TrainSpec) if f.name in SETTINGS}
  return {**defaults, **overrides}


def _require(condition: bool, field: str, value: Any, requirement: str) -> None:
  if not condition:
    raise SpecError(field, value, requirement)


def _is_int(value) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value) -> bool:
  return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
          and bool(np.isfinite(value)))


def _pairs(name: str, value) -> tuple:
  """(pattern, multiplier) pairs, from pairs or a {pattern: multiplier} mapping."""
  items = value.items() if isinstance(value, Mapping) else value
  try:
    pairs = tuple((str(p), float(m)) for p, m in items)
  except (TypeError, ValueError):
    raise SpecError(name, value, "must be (regex, multiplier) pairs, e.g. "
                    "(('score/bias', 2.0),)") from None
  for pattern, mult in pairs:
    _require(np.isfinite(mult) and mult >= 0, name, value,
             f"multiplier {mult!r} of {pattern!r} must be a finite number >= 0")
  return pairs


@dataclasses.dataclass
class RunResult:
  """A finished run: its folder and the confusion matrix of each scored snapshot."""
  run_dir: str
  spec: TrainSpec
  snapshots: dict[int, np.ndarray]

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
    """The parameters of checkpoint `step` (default: the run's final step, `spec.steps`; a
    finished run without it is an error naming the folder, never older weights)."""
    return checkpoint.restore_params(self.run_dir, self.spec.steps if step is None else step)


def steps_for_epochs(epochs: float, steps_per_epoch: int) -> int:
  """Training steps of `epochs` passes over the data (at least 1)."""
  if not epochs > 0:
    raise ValueError(f"epochs must be > 0, got {epochs!r}.")
  return max(1, round(epochs * steps_per_epoch))


def binary_segmentation_scores(cm) -> dict[str, float]:
  """Table 2's columns plus per-class recall of a 2x2 (background, foreground) matrix."""
  scores = metrics.segmentation_scores(cm)
  recall = metrics.per_class_scores(cm)["recall"]
  scores["background_recall"], scores["foreground_recall"] = float(recall[0]), float(recall[1])
  return scores


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
  fileio.write_text(path, "".join(json.dumps(e) + "\n" for e in kept))


def _source(init_from: str, run_dir: str) -> str:
  """`init_from` as a run records it: relative to the folder that holds the run when it
  lies under that folder (another run of the same workdir, which moves or is copied as a
  whole), else its absolute, resolved path."""
  source = os.path.realpath(init_from)
  relative = os.path.relpath(source, os.path.dirname(os.path.realpath(run_dir)))
  return source if relative.split(os.sep)[0] == os.pardir else relative


def _identity(spec: TrainSpec, seed: int, init_from: Optional[str],
              dont_load: Sequence[str], data: Optional[Mapping[str, Any]],
              run_dir: str) -> dict[str, Any]:
  return json.loads(json.dumps(
      {"spec": spec.as_dict(), "seed": int(seed),
       "init_from": None if init_from is None else _source(init_from, run_dir),
       "dont_load": sorted(dont_load) if init_from else [],
       "data": dict(data) if data is not None else None}, default=str))


def _same_run(recorded: Any, identity: Mapping[str, Any], run_dir: str) -> bool:
  """Whether the identity recorded in `run_dir` is `identity`. Runs of earlier versions
  recorded `init_from` as an absolute path: the same source under that path matches."""
  if recorded == identity:
    return True
  if not isinstance(recorded, dict) or not identity.get("init_from"):
    return False
  old = recorded.get("init_from")
  now = os.path.join(os.path.dirname(os.path.realpath(run_dir)), identity["init_from"])
  return (isinstance(old, str) and os.path.isabs(old)
          and os.path.realpath(old) == os.path.realpath(now)
          and dict(recorded, init_from=identity["init_from"]) == identity)


def _claim(run_dir: str, identity: Mapping[str, Any]) -> None:
  """Records what `run_dir` trains; refuses a folder that holds another run.

  A folder whose run stopped before its first checkpoint holds nothing to
  keep: it is claimed anew, so a corrected command is not blocked.
  """
  os.makedirs(run_dir, exist_ok=True)
  path = os.path.join(run_dir, _SPEC_FILE)
  existing = fileio.read_json(path, what=f"delete the run folder {run_dir} to train it again")
  if existing is not None and _same_run(existing, identity, run_dir):
    if existing != identity:  # an earlier version's record: rewritten in today's form
      fileio.write_json(path, dict(identity))
    return
  if existing is not None:
    if checkpoint.available_steps_in(os.path.join(run_dir, checkpoint.CHECKPOINT_SUBDIR)):
      changed = "\n".join(
          f"  {name}: {fileio.show_value(a)} (in the folder) -> "
          f"{fileio.show_value(b)} (now)"
          for name, a, b in fileio.differences(existing, identity))
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
    fileio.write_json(path, dict(identity))


def _final_step(run_dir: str) -> Optional[int]:
  """The last step of the finished run in `run_dir` (None: not a finished run's folder,
  e.g. a bare checkpoint folder, whose latest step is used)."""
  done = fileio.read_json(os.path.join(run_dir, _DONE_FILE),
                          what=f"delete the run folder {run_dir} to train it again")
  try:
    return int(done["identity"]["spec"]["steps"])
  except (TypeError, KeyError, ValueError):
    return None


def loaded_subtrees(params: Mapping[str, Any], dont_load: Sequence[str]) -> tuple[str, ...]:
  """The top-level subtrees of `params` that a run starting from a checkpoint loads."""
  if isinstance(dont_load, str):
    dont_load = (dont_load,)
  unknown = sorted(set(dont_load) - set(params))
  if unknown:
    raise ValueError(f"dont_load names {unknown}, which the model does not have; its "
                     f"parameter subtrees are {sorted(params)}.")
  keys = tuple(k for k in params if k not in dont_load)
  if not keys:
    raise ValueError(f"dont_load={list(dont_load)} leaves nothing to load from the checkpoint.")
  return keys


def train(spec: TrainSpec, *, train_iter_fn: Callable[[int], Iterable[Mapping[str, Any]]],
          eval_batches_fn: Callable[[], Iterable[Mapping[str, Any]]], sample_batch,
          run_dir: str, seed: int, init_from: Optional[str] = None,
          dont_load: Sequence[str] = ("head",), eval_label_key: str = "label",
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
    init_from: a run folder (or checkpoint folder) whose parameters
      initialise the model (`jaxpu.checkpoint.transfer`, verified against its
      manifest, at the source run's final step), except the top-level
      subtrees in `dont_load` (default: the head, which has another number of
      classes), which keep their fresh initialisation; or an `.npz` of
      ImageNet AlexNet weights for fcn_alexnet's encoder
      (`jaxpu.models.alexnet_weights`). Pre-training, fine-tuning and training from scratch
      are the same kind of run: only `init_from` differs. The run records it
      relative to the folder that holds `run_dir` when it lies under that
      folder (another run of the workdir), so a workdir moved or copied as a
      whole still resumes and reuses its runs; else as an absolute path.
    dont_load: top-level parameter subtrees not loaded from `init_from`.
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
  identity = _identity(spec, seed, init_from, dont_load, data_identity, run_dir)
  done = fileio.read_json(os.path.join(run_dir, _DONE_FILE),
                          what=f"delete the run folder {run_dir} to train it again")
  if done is not None and _same_run(done.get("identity"), identity, run_dir):
    if done.get("identity") != identity:  # an earlier version's record: today's form
      fileio.write_json(os.path.join(run_dir, _DONE_FILE), dict(done, identity=identity))
      fileio.write_json(os.path.join(run_dir, _SPEC_FILE), dict(identity))
    logging.info("Reusing the finished run in %s.", run_dir)
    return RunResult(run_dir, spec, _read_snapshots(run_dir))
  _claim(run_dir, identity)
  steps = checkpoint.available_steps_in(os.path.join(run_dir, checkpoint.CHECKPOINT_SUBDIR))
  _truncate_snapshots(run_dir, steps[-1] if steps else 0)

  model, optimizer = spec.build_model(), spec.build_optimizer()
  state = train_lib.create_train_state(model, optimizer, seed, sample_batch)
  if init_from is not None and str(init_from).endswith(".npz"):
    from jaxpu.models import alexnet_weights  # pylint: disable=g-import-not-at-top
    params = alexnet_weights.encoder_from_npz(state.params, init_from)
    state = state.replace(params=params, opt_state=optimizer.init(params))
  elif init_from is not None:
    params = checkpoint.transfer(state.params, init_from, step=_final_step(init_from),
                                 keys=loaded_subtrees(state.params, dont_load))
    state = state.replace(params=params, opt_state=optimizer.init(params))

  num_outputs = spec.num_classes
  eval_step = train_lib.make_eval_step(model, num_outputs, mesh, label_key=eval_label_key)
  if score_fn is None:
    score_fn = (binary_segmentation_scores if num_outputs == 1 else
                metrics.segmentation_scores if spec.model.startswith("fcn") else
                metrics.classification_scores)
  snapshots_path = os.path.join(run_dir, _SNAPSHOTS_FILE)

  first_scored = spec.steps - spec.keep * spec.checkpoint_every

  def eval_fn(state):
    step = int(train_lib.to_host(state.step))
    if step <= first_scored:
      return {}  # not among the last `keep` snapshots, the ones reported: not scored
    cm = train_lib.evaluate(eval_step, state.params, eval_batches_fn(), mesh)
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
  fileio.write_json(os.path.join(run_dir, _DONE_FILE), {"identity": identity})
  return RunResult(run_dir, spec, _read_snapshots(run_dir))
