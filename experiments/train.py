r"""Train one segmentation model on any dataset, with any loss, and choose its snapshot.

One run of `jaxpu.runs.train` (checkpoints, TensorBoard, metrics.jsonl,
resume, reuse) on `synthetic`, `voc` or your own `folder` of images and
label PNGs (`jaxpu.data.folder`), with any loss of `jaxpu.losses`: a binary
loss trains one output (task "binary": every class → foreground), a
multiclass loss one output per class (task "multiclass"); the PU risks
(`upu_risk`, `nnpu_risk`, `softmax_nnpu_risk`) take the prior `prior`.
Every snapshot (`train.checkpoint_every`) is scored on the validation split
(folder: `val`, else `test`).

Noisy validation labels. A user's labels are never known to be complete:
with `dataset=folder`, and in simulation with `corrupt_eval=True` (the
validation split gets the training corruption; its clean labels are kept),
the validation labels are positive-unlabelled and each snapshot also gets
the noisy-label criteria of `jaxpu.selection` (foreground vs background; a
multiclass model's foreground is every class but 0, its foreground score
log Σ_{k≥1} e^{f_k} − f_0):

- `labelled_recall` = n_sŷ / n_s, the recall on the labelled foreground
  (= the true recall under SCAR), and `lee_liu` = recall² / P(ŷ=1) (Lee & Liu
  2003; ∝ precision·recall, it ranks like F1 without knowing π);
- `pu_auc`: the AUC of labelled vs unlabelled pixels ranked by the
  foreground score (an increasing function of the clean AUC);
- with a prior: `corrected_precision`, `corrected_f1`, `corrected_iou`
  (`metrics.prior_corrected_scores`).

The criteria from counts come from each snapshot's confusion matrix against
the noisy labels (every snapshot, also logged to TensorBoard under
`criteria/`); `pu_auc` and, in simulation with `corrupt_eval`, the scores
against the clean labels need the weights: they are computed after training
for the snapshots whose checkpoint is kept (`train.keep`; the configs keep
every snapshot). `select_by` picks the reported snapshot (default `last`;
or `mean_iou`: against the clean labels in simulation, the given labels on a
folder; or a criterion), among the kept checkpoints (ties: the later); its
step goes to `runs/model/predict.json`, which `experiments.predict` uses.

The prior. `prior` is π_U, the foreground share of the background-labelled
pixels (what `nnpu_risk` takes; `jaxpu.priors`). The criteria convert it
to the share of all valid validation pixels (`metrics.prior_of_valid_pixels`).
`prior="estimate"`: a binary model trained with the logistic loss on the
same noisy training labels (Elkan & Noto's labelled-vs-unlabelled classifier,
`runs/prior-logistic`) scores the validation pixels, and best bin estimation
(BBE, Garg et al. 2021, `jaxpu.priors.best_bin_estimate`) of their labelled
and unlabelled scores gives π_U (Elkan & Noto's e1 is reported beside it).
It needs noisy validation labels (a folder, or `corrupt_eval=True`) and
assumes the validation and training labels are equally incomplete.

Your own data, the worked example (offline; 3 min 18 s on this project's busy 2-core CPU):

  python -m experiments.export_folder --output=/tmp/shapes
  python -m experiments.train --config.dataset=folder --config.data.directory=/tmp/shapes \
      --config.loss=sigmoid_negative --config.select_by=lee_liu --config.train.steps=400 \
      --config.train.checkpoint_every=40 --workdir=/tmp/shapes_run
  python -m experiments.predict --checkpoint=/tmp/shapes_run --images=/tmp/shapes/images \
      --output=/tmp/shapes_predicted

The first writes 200 drawn images of 40-64 px (the embedded dataset's
shapes, 2-4 objects each) with class and instance maps as palette PNGs, half
of the objects of the train and val splits left unsegmented (label 0; the
test labels are complete), `classes.txt` and `splits/`. The second trains
the binary FCN with the sigmoid loss (eq. 8) on the train split, scores ten
snapshots on the val split with its incomplete labels and picks the one with
the highest Lee & Liu criterion (`results.md`: every snapshot's scores and
criteria; measured: step 160 of 400, the snapshot with the highest
foreground recall on the val labels). The third writes `NAME.png` (palette
PNG, class per pixel, the image's size) and `NAME.npz` (probabilities) per
image with that snapshot (measured against the complete test labels:
foreground IoU 0.48, recall 0.56, precision 0.76).
Pass `--config.prior=0.3` (or `estimate`) for the prior-corrected criteria,
`--config.select_by=pu_auc` for the threshold-free one.

Simulation studies on the embedded data:

  python -m experiments.train --config.corruption=unsegment_objects:0.5 \
      --config.corrupt_eval=True --config.select_by=lee_liu
  python -m experiments.train --config.loss=nnpu_risk --config.prior=estimate \
      --config.loss_options.surrogate=logistic --config.corruption=unsegment_objects:0.5 \
      --config.corrupt_eval=True
  python -m experiments.train --config.loss=softmax_negative --config.init_from=runs/other

Settings: `experiments/configs/train.py`. In Python:
`run(train_config.get_config("smoke"), "/tmp/w")`.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from typing import Any, Optional

from absl import logging
import jax.numpy as jnp
import numpy as np

from experiments import common
from jaxpu import checkpoint
from jaxpu import fileio
from jaxpu import losses
from jaxpu import metrics
from jaxpu import models
from jaxpu import predict as predict_lib
from jaxpu import priors
from jaxpu import report
from jaxpu import runs
from jaxpu import segmentation_runs as seg
from jaxpu import selection

DATASETS = ("synthetic", "voc", "folder")
SELECTION = ("select_by",)  # only chooses what is reported: the run is reused
BINARY_LOSSES = losses.BINARY_LOSSES + losses.RISK_ESTIMATORS
MULTICLASS_LOSSES = losses.MULTICLASS_LOSSES + losses.MULTICLASS_RISK_ESTIMATORS
PRIOR_LOSSES = losses.RISK_ESTIMATORS + losses.MULTICLASS_RISK_ESTIMATORS
BINARY_TASKS = seg.BINARY_TASKS
COUNT_CRITERIA, PRIOR_CRITERIA, CRITERIA = (selection.COUNT_CRITERIA, selection.PRIOR_CRITERIA,
                                            selection.CRITERIA)
SELECT_BY = ("last", "mean_iou") + CRITERIA
MODEL_RUN = "model"   # WORKDIR/runs/model (jaxpu.predict.TRAIN_RUN)
PRIOR_RUN = "prior-logistic"
SCORES_FILE = "snapshot_scores.json"
PRIOR_FILE = "prior.json"


@dataclasses.dataclass(frozen=True)
class Plan:
  """What `run` trains and reports (from a validated config).

  Attributes:
    data: the `SegmentationSpec` of the run.
    spec: the `TrainSpec` (a PU risk's prior filled in once known).
    prior: π_U: a number, "estimate" or None.
    noisy_eval: the validation labels are noisy (a folder, or `corrupt_eval`).
    scores_key: the validation label the scores are computed against
      ("true_label": the clean labels of a `corrupt_eval` simulation).
    select_by: a `SELECT_BY` name.
    init_from, dont_load: the run's initialisation.
  """
  data: Any
  spec: runs.TrainSpec
  prior: Any
  noisy_eval: bool
  scores_key: str
  select_by: str
  init_from: Optional[str]
  dont_load: tuple

  @property
  def binary(self) -> bool:
    return self.spec.num_classes == 1


# ----------------------------------------------------------------------------
# Validation (every field, before any data is built or the workdir claimed).
# ----------------------------------------------------------------------------


def validate(config) -> Plan:
  """The `Plan` of `config`; a ValueError naming `--config.<field>` for a bad value."""
  require = common.require
  require(isinstance(config.seed, int) and not isinstance(config.seed, bool)
          and config.seed >= 0, "seed", config.seed, "must be an integer >= 0")
  require(config.dataset in DATASETS, "dataset", config.dataset, f"choose one of {DATASETS}")
  _check_data(config)
  binary = _check_loss(config)
  task = _check_task(config, binary)
  corruption = _check_corruption(config)
  noisy_eval = config.dataset == "folder" or bool(config.corrupt_eval)
  prior = _check_prior(config, noisy_eval)
  kwargs = _check_loss_options(config, binary)
  model_options = dict(config.model_options)
  try:
    models.get(config.model, 1 if binary else 2, **model_options)
  except ValueError as e:
    raise ValueError(f"--config.model={config.model!r} / --config.model_options: {e}") from None
  if config.loss in PRIOR_LOSSES:
    kwargs["prior"] = 0.5 if prior == "estimate" else float(prior)
  spec = runs.TrainSpec.from_config(
      config.train, "train", model=config.model, model_options=model_options,
      num_classes=1 if binary else 2, loss=config.loss, loss_kwargs=kwargs,
      class_balanced=bool(config.class_balanced))
  _check_training(config, spec)
  select_by = _check_select_by(config, noisy_eval, prior)
  init_from, dont_load = _check_init(config)
  data = seg.data_spec(config.data, config.dataset).replace(
      batch_size=spec.batch_size, task=task, target=config.target, fold=config.fold,
      phase=config.phase, corruption=corruption, noise_seed=config.seed, seed=config.seed,
      augment=bool(config.augment), with_true_label=corruption is not None,
      corrupt_eval=bool(config.corrupt_eval))
  scores_key = "true_label" if corruption is not None and config.corrupt_eval else "label"
  return Plan(data=data, spec=spec, prior=prior, noisy_eval=noisy_eval, scores_key=scores_key,
              select_by=select_by, init_from=init_from, dont_load=dont_load)


def _check_data(config) -> None:
  require, data = common.require, config.data
  if config.dataset == "voc":
    require(data.manual_dir is not None, "data.manual_dir", None,
            "voc needs the folder with your VOC2011 and SBD archives")
  if config.dataset == "folder":
    directory = data.get("directory")
    require(bool(directory), "data.directory", directory,
            "the folder dataset needs your folder of images/ and labels/ "
            "(jaxpu.data.folder)")
    require(os.path.isdir(os.path.expanduser(directory)), "data.directory", directory,
            "is not a folder; it must hold images/ and labels/ (jaxpu.data.folder)")
    require(config.fold is None, "fold", config.fold,
            "the folder dataset has no VOC folds; leave it None")
  for field in ("downsample", "image_size"):
    value = data.get(field)
    require(value is None or (isinstance(value, int) and not isinstance(value, bool)
                              and value >= 1), f"data.{field}", value,
            "must be a positive integer or None (the dataset's default)")
  from jaxpu.data import batching  # pylint: disable=g-import-not-at-top
  require(data.get("preprocessing") in (None,) + batching.PREPROCESSINGS, "data.preprocessing",
          data.get("preprocessing"), f"choose one of {batching.PREPROCESSINGS} or None")
  require(config.fold is None or config.fold in (1, 2, 3, 4), "fold", config.fold,
          "must be None (all classes) or a fold 1..4")
  require(config.phase in ("pretrain", "finetune"), "phase", config.phase,
          "choose 'pretrain' (the 15 classes outside the fold) or 'finetune' (its 5)")


def _check_loss(config) -> bool:
  """True for a binary loss (one output)."""
  common.require(config.loss in BINARY_LOSSES + MULTICLASS_LOSSES, "loss", config.loss,
                 f"choose a loss of jaxpu.losses: binary {BINARY_LOSSES} or multiclass "
                 f"{MULTICLASS_LOSSES}")
  return config.loss in BINARY_LOSSES


def _check_task(config, binary: bool) -> str:
  task = config.task or ("binary" if binary else "multiclass")
  from jaxpu.data import pipeline  # pylint: disable=g-import-not-at-top
  known = task in ("multiclass", "binary", "categories", "target") or (
      task.startswith("random_categories:") and task.partition(":")[2].isdigit())
  common.require(known, "task", config.task, f"choose one of {pipeline.TASKS} (or None: "
                 "binary for a binary loss, multiclass otherwise)")
  if binary:
    common.require(task in BINARY_TASKS, "task", task,
                   f"the binary loss {config.loss!r} trains one output: use a task of "
                   f"{BINARY_TASKS}, or a multiclass loss")
  else:
    common.require(task not in BINARY_TASKS, "task", task,
                   f"the multiclass loss {config.loss!r} needs a task with several classes "
                   "(multiclass, categories, random_categories:K), or use a binary loss")
  if config.dataset == "folder":
    common.require(task != "categories", "task", task,
                   "the folder dataset has no super-categories")
    common.require(task != "target" or config.target is not None, "target", config.target,
                   "task 'target' on a folder needs the target's class id (1..K-1)")
  return task


def _check_corruption(config) -> Optional[str]:
  from jaxpu.data import pipeline  # pylint: disable=g-import-not-at-top
  try:
    parsed = pipeline.parse_corruption(config.corruption, pipeline.SEGMENTATION_CORRUPTIONS)
  except ValueError as e:
    raise ValueError(f"--config.corruption={config.corruption!r}: {e}") from None
  common.require(isinstance(config.corrupt_eval, bool), "corrupt_eval", config.corrupt_eval,
                 "must be True or False")
  common.require(parsed is not None or not config.corrupt_eval, "corrupt_eval",
                 config.corrupt_eval, "needs --config.corruption (the corruption it also "
                 "applies to the validation split)")
  return None if parsed is None else config.corruption


def _check_prior(config, noisy_eval: bool):
  prior = config.prior
  if isinstance(prior, str) and prior != "estimate":
    try:
      prior = float(prior)
    except ValueError:
      pass
  if prior == "estimate":
    common.require(noisy_eval, "prior", prior,
                   "estimating the prior needs noisy validation labels: set "
                   "--config.corrupt_eval=True (or use a folder dataset)")
  elif prior is not None:
    common.require(isinstance(prior, (int, float)) and not isinstance(prior, bool)
                   and 0 < prior < 1, "prior", prior,
                   "must be π_U in (0, 1) (the foreground share of the background-labelled "
                   "pixels), 'estimate' or None")
    prior = float(prior)
  common.require(prior is not None or config.loss not in PRIOR_LOSSES, "prior", prior,
                 f"the PU risk {config.loss!r} needs the class prior: a number in (0, 1) "
                 "or 'estimate'")
  return prior


def _check_loss_options(config, binary: bool) -> dict:
  """The loss' keyword arguments from `loss_options` (those set), checked by calling it."""
  fn = losses.get(config.loss)
  parameters = inspect.signature(fn).parameters
  accepted = sorted(set(parameters) - {"logits", "labels", "where", "prior"})
  given = {k: v for k, v in dict(config.loss_options).items() if v is not None}
  for name in given:
    common.require(name in accepted, f"loss_options.{name}", given[name],
                   f"{config.loss} takes no {name!r}; its options are {accepted or 'none'}")
  for name, parameter in parameters.items():
    if name not in ("logits", "labels", "prior") and parameter.default is inspect.Parameter.empty:
      common.require(name in given, f"loss_options.{name}", None, f"{config.loss} needs it")
  if "class_weights" in given:
    given["class_weights"] = tuple(float(w) for w in given["class_weights"])
  num_classes = len(given.get("class_weights", ())) or 2
  logits = jnp.zeros((2,) if binary else (2, num_classes))
  labels = jnp.asarray([0, 1])
  extra = {"prior": 0.5} if config.loss in PRIOR_LOSSES else {}
  try:
    fn(logits, labels, **extra, **given)
  except (ValueError, TypeError) as e:
    raise ValueError(f"--config.loss_options ({given}) for {config.loss}: {e}") from None
  return given


def _check_training(config, spec: runs.TrainSpec) -> None:
  snapshots = spec.steps // spec.checkpoint_every
  if config.select_by != "last" and spec.keep < snapshots:
    logging.warning("--config.train.keep=%d keeps %d of the %d snapshots' checkpoints: "
                    "select_by=%s chooses among those only (raise keep to choose among all).",
                    spec.keep, spec.keep, snapshots, config.select_by)
  if config.loss in PRIOR_LOSSES:
    common.require(spec.loss_reduction == "mean", "train.loss_reduction", spec.loss_reduction,
                   f"the PU risk {config.loss!r} normalises itself: use 'mean'")
  if config.loss in PRIOR_LOSSES or config.class_balanced:
    common.require(spec.microbatches == 1, "train.microbatches", spec.microbatches,
                   "gradient accumulation needs a sum over examples: not for a PU risk or "
                   "class_balanced")


def _check_select_by(config, noisy_eval: bool, prior) -> str:
  select_by = config.select_by
  common.require(select_by in SELECT_BY, "select_by", select_by, f"choose one of {SELECT_BY}")
  if select_by in CRITERIA:
    common.require(noisy_eval, "select_by", select_by,
                   "the noisy-label criteria need noisy validation labels: a folder dataset "
                   "or --config.corrupt_eval=True (else select by last or mean_iou)")
  if select_by in PRIOR_CRITERIA:
    common.require(prior is not None, "select_by", select_by,
                   "the prior-corrected criteria need --config.prior (a number or estimate)")
  return select_by


def _check_init(config) -> tuple[Optional[str], tuple]:
  dont_load = common.names(config.dont_load)
  common.require(set(dont_load) < {"encoder", "head"}, "dont_load", config.dont_load,
                 "name the parameter subtrees not loaded from init_from: head (the default), "
                 "encoder, or none (every model is an encoder and a head)")
  if config.init_from is None:
    return None, dont_load
  path = os.path.expanduser(config.init_from)
  common.require(os.path.isdir(path), "init_from", config.init_from,
                 "must be an existing run folder, checkpoint folder or experiments.train "
                 "workdir")
  if os.path.isdir(os.path.join(path, predict_lib.TRAIN_RUN)):
    path = os.path.join(path, predict_lib.TRAIN_RUN)
  return path, dont_load


# ----------------------------------------------------------------------------
# Scores and criteria of a snapshot.
# ----------------------------------------------------------------------------


def scores(cm, binary: bool) -> dict[str, float]:
  return runs.binary_segmentation_scores(cm) if binary else metrics.segmentation_scores(cm)


def make_score_fn(plan: Plan, prior_u: Optional[float]):
  """What the run logs at each snapshot (from its confusion matrix against "label")."""
  prefix = "" if plan.scores_key == "label" else "noisy_labels/"

  def score_fn(cm):
    out = {prefix + k: v for k, v in scores(cm, plan.binary).items()}
    if plan.noisy_eval:
      out.update({f"criteria/{k}": v for k, v in selection.criteria(cm, prior_u).items()})
    return out
  return score_fn


def weight_scores(result: runs.RunResult, data, steps, plan: Plan) -> dict[int, dict]:
  """Per kept snapshot: the confusion matrix against the clean labels and the PU AUC."""
  apply = predict_lib.apply_fn(result.spec.build_model())
  clean_key = None if plan.scores_key == "label" else plan.scores_key
  out = {}
  for step in steps:
    found = selection.evaluate(apply, result.params(step), data.eval_iter(),
                               num_classes=result.spec.num_classes, clean_key=clean_key)
    entry = {}
    if clean_key is not None:
      entry["clean_cm"] = found["clean_cm"]
    if plan.noisy_eval:
      entry["pu_auc"] = found["pu_auc"]
    out[int(step)] = entry
  return out


def cached_weight_scores(workdir: str, result: runs.RunResult, data, plan: Plan) -> dict:
  """`weight_scores` of the kept snapshots, computed once per run (`SCORES_FILE`); the
  newly computed ones are added to the run's TensorBoard logs."""
  if plan.scores_key == "label" and not plan.noisy_eval:
    return {}
  path = os.path.join(workdir, SCORES_FILE)
  identity = fileio.read_json(os.path.join(result.run_dir, predict_lib.SPEC_FILE))
  stored = fileio.read_json(path, what="delete it to compute the scores again") or {}
  known = ({int(k): v for k, v in stored.get("steps", {}).items()}
           if stored.get("identity") == identity else {})
  kept = checkpoint.available_steps(result.run_dir)
  new = weight_scores(result, data, [s for s in kept if s not in known], plan)
  if new:
    _log_to_tensorboard(result.run_dir, new, plan)
  known.update(new)
  fileio.write_json(path, {"identity": identity,
                           "steps": {str(k): v for k, v in sorted(known.items())}})
  return known


def _log_to_tensorboard(run_dir: str, found: dict, plan: Plan) -> None:
  from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
  writer = SummaryWriter(logdir=run_dir)
  try:
    for step, entry in sorted(found.items()):
      if "pu_auc" in entry:
        writer.add_scalar("criteria/pu_auc", entry["pu_auc"], step)
      if "clean_cm" in entry:
        for k, v in scores(entry["clean_cm"], plan.binary).items():
          if np.isfinite(v):
            writer.add_scalar(f"eval/{k}", v, step)
  finally:
    writer.close()


def snapshot_table(result: runs.RunResult, found: dict, plan: Plan,
                   prior_u: Optional[float]) -> dict[int, dict]:
  """Per snapshot: {"kept": bool, scores..., criteria...} (module docstring)."""
  kept = set(checkpoint.available_steps(result.run_dir))
  rows = {}
  for step, cm in sorted(result.snapshots.items()):
    entry = found.get(step, {})
    row: dict[str, Any] = {"kept": step in kept}
    if plan.scores_key == "label":
      row.update(scores(cm, plan.binary))
    elif "clean_cm" in entry:
      row.update(scores(entry["clean_cm"], plan.binary))
    if plan.noisy_eval:
      row.update(selection.criteria(cm, prior_u))
      if "pu_auc" in entry:
        row["pu_auc"] = entry["pu_auc"]
    rows[step] = row
  return rows


def select(rows: dict[int, dict], select_by: str, final_step: int) -> tuple[int, float]:
  """(step, value) of the reported snapshot: the last, or the kept one with the highest
  finite `select_by` (ties: the later)."""
  if select_by == "last":
    return final_step, float("nan")
  candidates = [(row[select_by], step) for step, row in rows.items()
                if row["kept"] and select_by in row and np.isfinite(row[select_by])]
  if not candidates:
    logging.warning("No kept snapshot has a finite %s; reporting the last one.", select_by)
    return final_step, float("nan")
  value, step = max(candidates)
  return step, float(value)


# ----------------------------------------------------------------------------
# The prior.
# ----------------------------------------------------------------------------


def estimate_prior(plan: Plan, data, outputs: common.Outputs, progress) -> dict[str, float]:
  """π_U by BBE from a logistic labelled-vs-unlabelled model (module docstring); `data`:
  the run's data (reused when it is binary)."""
  from jaxpu.data import pipeline  # pylint: disable=g-import-not-at-top
  spec = dataclasses.replace(plan.spec, num_classes=1, loss="logistic", loss_kwargs=(),
                             class_balanced=False)
  data_spec = plan.data if plan.binary else plan.data.replace(task="binary")
  if not plan.binary:
    data = pipeline.make_segmentation_data(data_spec)
  result = runs.train(
      spec, train_iter_fn=data.train_iter, eval_batches_fn=data.eval_iter,
      sample_batch={"image": np.zeros((1,) + data.image_shape, np.float32)},
      run_dir=outputs.run_dir(PRIOR_RUN), seed=plan.data.seed, init_from=plan.init_from,
      dont_load=plan.dont_load, data_identity=seg.data_identity(data_spec, data))
  progress("prior model (logistic)", spec.steps)
  apply = predict_lib.apply_fn(spec.build_model())
  params = result.params()
  labelled, unlabelled = [], []
  for batch in data.eval_iter():
    logits = np.asarray(apply(params, batch["image"]))[..., 0]
    label = np.asarray(batch["label"])
    labelled.append(logits[label == 1])
    unlabelled.append(logits[label == 0])
  labelled, unlabelled = np.concatenate(labelled), np.concatenate(unlabelled)
  if not labelled.size or not unlabelled.size:
    raise ValueError("--config.prior=estimate: the validation split has no "
                     f"{'labelled foreground' if not labelled.size else 'background'} pixel; "
                     "give the prior as a number instead.")
  found = priors.estimates_from_logits(labelled, unlabelled)
  fileio.write_json(outputs.path(PRIOR_FILE), {**found, "run": result.run_dir})
  return found


def _risk_prior(estimate: float) -> float:
  """An estimated π_U as a PU risk's prior: rounded to 4 decimals (a run's identity), in
  [0.001, 0.999] (the risks need (0, 1))."""
  value = min(max(round(float(estimate), 4), 1e-3), 0.999)
  if value != round(float(estimate), 4):
    logging.warning("The estimated prior %.4g is outside (0, 1); the PU risk uses %.4g.",
                    estimate, value)
  return value


# ----------------------------------------------------------------------------
# The run.
# ----------------------------------------------------------------------------


def build_data(plan: Plan, config):
  """The run's `Data`; checks what needs its classes (the class weights)."""
  from jaxpu.data import pipeline  # pylint: disable=g-import-not-at-top
  data = pipeline.make_segmentation_data(plan.data)
  weights = dict(plan.spec.loss_kwargs).get("class_weights")
  if weights is not None:
    common.require(len(weights) == data.num_classes, "loss_options.class_weights",
                   config.loss_options.class_weights,
                   f"needs one weight per class: {data.num_classes} ({data.class_names})")
  return data


def run(config, workdir: str) -> list[report.Cell]:
  """Trains the model of `config` into `workdir`; returns the cells of its snapshot table."""
  plan = validate(config)
  data = build_data(plan, config)
  spec = dataclasses.replace(plan.spec, num_classes=1 if plan.binary else data.num_classes)
  resolved = common.claim_workdir(workdir, config, selection=SELECTION)
  outputs = common.Outputs(workdir, resolved)
  estimate = plan.prior == "estimate"
  progress = common.Progress("train", spec.steps * (2 if estimate else 1), 2 if estimate else 1)
  found_prior = None
  prior_u = plan.prior
  if estimate:
    found_prior = estimate_prior(plan, data, outputs, progress)
    prior_u = float(found_prior["BBE"])
    print(f"Estimated prior π_U (BBE): {prior_u:.4f} (Elkan-Noto e1: "
          f"{found_prior['EN e1']:.4f})", flush=True)
  if config.loss in PRIOR_LOSSES:
    kwargs = dict(spec.loss_kwargs)
    kwargs["prior"] = _risk_prior(prior_u)
    spec = dataclasses.replace(spec, loss_kwargs=kwargs)
  run_dir = outputs.run_dir(MODEL_RUN)
  result = runs.train(
      spec, train_iter_fn=data.train_iter, eval_batches_fn=data.eval_iter,
      sample_batch={"image": np.zeros((1,) + data.image_shape, np.float32)},
      run_dir=run_dir, seed=config.seed, init_from=plan.init_from, dont_load=plan.dont_load,
      eval_label_key="label", score_fn=make_score_fn(plan, prior_u),
      data_identity=seg.data_identity(plan.data, data))
  progress(f"model ({config.loss})", spec.steps)
  found = cached_weight_scores(workdir, result, data, plan)
  rows = snapshot_table(result, found, plan, prior_u)
  step, value = select(rows, plan.select_by, spec.steps)
  predict_lib.write_recipe(run_dir, data, plan.data, selected_step=step,
                           select_by=plan.select_by)
  cells = record(outputs, rows, step)
  markdown = outputs.write([table_spec(plan)],
                           preamble=preamble(config, plan, data, spec, prior_u, found_prior),
                           epilogue=epilogue(run_dir, step, value, plan, workdir))
  print(markdown)
  return cells


SCORE_COLUMNS = ("mean_iou", "fw_iou", "overall_accuracy", "mean_recall", "foreground_recall",
                 "background_recall")


def table_spec(plan: Plan) -> report.TableSpec:
  against = {"true_label": "the clean validation labels",
             "label": "the validation labels" + (" as given" if plan.noisy_eval else "")}
  title = (f"Snapshots: scores against {against[plan.scores_key]}"
           + (" and noisy-label criteria (foreground vs background)" if plan.noisy_eval else "")
           + "; `kept`: its checkpoint is on disk")
  return report.TableSpec("snapshots", title, ("step", "checkpoint", "selected"),
                          SCORE_COLUMNS + CRITERIA)


def record(outputs: common.Outputs, rows, selected: int) -> list[report.Cell]:
  """One cell per snapshot and score or criterion; the row key marks the selected one."""
  for step, row in rows.items():
    key = (str(step), "kept" if row["kept"] else "deleted", "selected" if step == selected else "")
    for column, v in row.items():
      if column != "kept" and np.isfinite(v):
        outputs.add("snapshots", key, column, [v])
  return outputs.cells


def preamble(config, plan: Plan, data, spec, prior_u, found_prior) -> str:
  what = "binary (1 output)" if plan.binary else f"{data.num_classes} classes"
  lines = [f"# One segmentation model on `{config.dataset}`\n",
           f"{spec.model} ({what}, task `{plan.data.task}`), loss `{spec.loss}`"
           + (f" {dict(spec.loss_kwargs)}" if spec.loss_kwargs else "")
           + f", {spec.steps} steps of batch {spec.batch_size}, seed {config.seed}; "
           f"{data.num_train_examples} training and {data.num_eval_examples} validation "
           f"images of {data.image_shape[0]}×{data.image_shape[1]}"
           + (f"; training labels corrupted by `{plan.data.corruption}`"
              if plan.data.corruption else "")
           + ("; validation labels corrupted too (`corrupt_eval`)" if config.corrupt_eval
              else "") + "."]
  if prior_u is not None:
    source = ("estimated by BBE from a logistic model's validation scores (Elkan & Noto e1: "
              f"{found_prior['EN e1']:.4f})" if found_prior else "given")
    lines.append(f"Prior π_U (foreground share of the background-labelled pixels) = "
                 f"{prior_u:.4f}, {source}.")
  return "\n".join(lines) + "\n"


def epilogue(run_dir, step, value, plan: Plan, workdir) -> str:
  how = ("the last snapshot" if plan.select_by == "last" or not np.isfinite(value) else
         f"the kept snapshot with the highest `{plan.select_by}` ({value:.4f})")
  return (f"Selected: step {step}, {how}. Predict with it:\n\n"
          f"    python -m experiments.predict --checkpoint={workdir} --images=DIR "
          "--output=OUT\n")


if __name__ == "__main__":
  from experiments import cli  # pylint: disable=g-import-not-at-top
  cli.main("train", run)
