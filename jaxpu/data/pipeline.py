"""Training and evaluation iterators: TFDS → selection → corruption → device arrays.

Entry points (re-exported by `jaxpu.data`):

    data = make_segmentation_data(SegmentationSpec(
        "synthetic", batch_size=32, fold=1, phase="pretrain", task="binary",
        corruption="unsegment_objects:0.5", noise_seed=0, seed=0))
    state, history = jaxpu.train.fit(..., train_iter_fn=data.train_iter, ...)
    cm = jaxpu.train.evaluate(eval_fn, state.params, data.eval_iter())

    data = make_classification_data("cifar", batch_size=128, corruption="pu_labels:0.5")

Both return a `Data`: `train_iter(start_step=0)` (endless) and `eval_iter()`
(one pass) yield dicts `{"image", "label"}` (plus `"true_label"` with
`with_true_label`) of device-sharded global `jax.Array`s (batch axis on
the mesh axis "batch", `jaxpu.parallel.shard_batch`), or NumPy with
`as_numpy=True`; and metadata: `num_classes` (label values, background
included: 2 for a binary task, whose model has 1 output), `class_names`,
`image_shape`, `steps_per_epoch`, `num_train_examples`, `num_eval_examples`,
`preprocessing` and `mean`/`std` (the normalisation).

Per split, every host (`jax.process_index()`) reads its part
(`tfds.even_splits`) → decodes → (VOC: ×`downsample`, pad to `image_size`
with void labels) → selects (single-object images; the fold's images) →
corrupts (training split only; `jaxpu.data.noise`, keyed on the stable
example id) → maps labels to the task → holds the result in memory as uint8
NumPy arrays (the small datasets here fit; this is `ds.cache()` with random
access); TensorFlow runs on the CPU. Batches then come from NumPy
(`jaxpu.data.batching`): gather by index, flip (optional), preprocess
(`(image/255 - mean) / std`, or Caffe's BGR 0-255 minus the mean with
`preprocessing="caffe"`), placed on the devices a few steps ahead; the epoch
order is TensorFlow's stateless shuffle. Feature datasets (moons, 800 points) skip the per-batch host
work: their training set sits on the devices and each step is one jitted
gather of the same indices (an MLP step is faster than any host-side batch
delivery).

A process reads and decodes a split once (the last 4 splits read are kept;
TFDS holds a small split in memory) and traces each corruption and label
mapping once (`noise.traced`), so further datasets of the same files cost
their selection and corruption only. It assumes the files do not change
while it runs (`forget_read_splits` if they do).

Exact resume: `train_iter(k)` yields exactly the batches k, k+1, ... of
`train_iter(0)` (the epoch order is a function of the seed and the epoch,
`jaxpu.data.batching`). The example order read from TFDS is fixed
(`shuffle_files=False`), and labels are corrupted per example id, so the
same arguments give the same batches in every run.

Evaluation batches are in dataset order; the last one is padded with
label 255 (void), which every metric ignores, so each example counts once.

Labels (segmentation, `task`; fold selection §5.3.1 via `fold`/`phase`):
- `"multiclass"`: the selected classes, relabelled 1..K in id order (K = 20,
  or 15 pre-training / 5 fine-tuning classes of `fold`);
- `"binary"`: every selected class → 1 (Table 3 BinarizedLabels, Table 2);
- `"categories"`: meaningful super-categories person/animal/vehicle/indoor
  (those present, numbered 1..k; Fig. 7);
- `"random_categories:K"`: a random partition into K groups, seeded by
  `grouping_seed` (Fig. 7's RC 4/7/11);
- `"target"`: `target` → 1 and every other class → background (Table 5;
  default dog, `classes.false_positive_target(fold)`).
Corruptions (`"name:rate"`): segmentation `unsegment_objects`,
`mislabel_objects` (among the selected classes), `false_positive_objects`
(non-target objects → the target), the selection-biased
`unsegment_small`, `unsegment_faint`, `unsegment_border` (small, faint or
border-cut objects are missed more often; `noise.SELECTION_BIASES`);
classification `pu_labels` (rate = the labelled fraction of the relevant
examples). A selection-biased corruption is calibrated on the whole
training split as selected (every host reads all of it), before the
examples are corrupted: every training object's feature is computed once
per selection and process (`selection_calibration`), and the intercept
solved so that the expected fraction of unsegmented training objects is
exactly the rate. A corrupted evaluation split (`corrupt_eval`) uses the
training split's calibration. `subsample=f` keeps each
training example with probability f (clean labels; Table 1's "50%(R+N)").
Corruption and subsampling are seeded by `noise_seed`, shuffling and flips
by `seed`.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Any, Callable, Optional, Sequence

import jax
import numpy as np

from jaxpu import parallel
from jaxpu.data._tf import do_not_convert, tf  # hides the GPUs from TensorFlow before any TF work
from jaxpu.data import classes
from jaxpu.data import noise
from jaxpu.data import synthetic
from jaxpu.data.batching import CAFFE_MEAN_BGR
from jaxpu.data.batching import PREPROCESSINGS
from jaxpu.data.batching import Data
from jaxpu.data.batching import check_preprocessing

SEGMENTATION_DATASETS = ("synthetic", "voc", "folder")
CLASSIFICATION_DATASETS = ("synthetic", "cifar", "digits", "moons")
SEGMENTATION_CORRUPTIONS = ("unsegment_objects", "mislabel_objects",
                            "false_positive_objects") + noise.SEGMENTATION_ERRORS + tuple(
                                noise.SELECTION_BIASES)
CLASSIFICATION_CORRUPTIONS = ("pu_labels",)
TASKS = ("multiclass", "binary", "categories", "random_categories:K", "target")

SYNTHETIC_MEAN = (0.5, 0.5, 0.5)
SYNTHETIC_STD = (0.21, 0.21, 0.21)  # measured over the drawn images
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VOC_MAX_SIDE = 500


# ----------------------------------------------------------------------------
# Specs.
# ----------------------------------------------------------------------------


def parse_corruption(spec, allowed: Sequence[str]) -> tuple[str, float, int | str | None] | None:
  """`None`/"none" → None; "name:rate[:size]" or (name, rate[, size]) → (name, rate, size).

  `size` (`noise.check_size`; its default when omitted, None for corruptions
  without one): boundary_noise k (erode/dilate by 1..k pixels, default 2),
  over_segment k (default 2), coarse_outlines "box" (default) or a
  down-sampling factor; e.g. "boundary_noise:0.5:3", "coarse_outlines:1.0:4".
  """
  if spec is None or spec == "none" or spec == "":
    return None
  if isinstance(spec, str):
    name, sep, rest = spec.partition(":")
    if not sep:
      raise ValueError(f"Corruption {spec!r} needs a rate: write '{spec}:0.5' "
                       "(segmentation errors also take a size: 'name:rate:size').")
    rate, _, size = rest.partition(":")
    size = size or None
    try:
      rate = float(rate)
    except ValueError:
      raise ValueError(f"Corruption {spec!r}: rate {rate!r} is not a number "
                       "(write 'name:rate' or 'name:rate:size').") from None
  else:
    name, rate, *size = spec
    if len(size) > 1:
      raise ValueError(f"Corruption {spec!r}: give (name, rate) or (name, rate, size).")
    size = size[0] if size else None
  if name not in allowed:
    raise ValueError(f"Unknown corruption {name!r} here; choose one of {list(allowed)} "
                     "(as 'name:rate', or 'name:rate:size' for "
                     f"{sorted(noise.ERROR_SIZES)}) or None.")
  if not 0 <= rate <= 1:
    raise ValueError(f"Corruption {name!r}: rate must be in [0, 1], got {rate}.")
  try:
    size = noise.check_size(name, size)
  except ValueError as e:
    raise ValueError(f"Corruption {spec!r}: {e} Sizes: "
                     + "; ".join(f"{n}: {w}" for n, (w, _) in noise.ERROR_SIZES.items())
                     + ".") from None
  return name, float(rate), size


def selected_classes(fold: int | None, phase: str) -> tuple[int, ...]:
  """The class ids of a fold phase (all 20 without a fold)."""
  if fold is None:
    return tuple(range(1, classes.NUM_CLASSES + 1))
  if phase == "pretrain":
    return classes.pretrain_classes(fold)
  if phase == "finetune":
    return classes.fold_classes(fold)
  raise ValueError(f"phase must be 'pretrain' or 'finetune', got {phase!r}.")


def task_mapping(task: str, selected: Sequence[int], names: Sequence[str], *,
                 supercategory_names: Sequence[str] = classes.SUPERCATEGORIES,
                 grouping_seed: int = 0, target: int | None = None
                 ) -> tuple[dict[int, int], tuple[str, ...]]:
  """(class id → task label, task class names incl. background) of `task`."""
  selected = sorted(selected)
  if task == "multiclass":
    return ({c: i + 1 for i, c in enumerate(selected)},
            ("background",) + tuple(names[c - 1] for c in selected))
  if task == "binary":
    return {c: 1 for c in selected}, ("background", "foreground")
  if task == "categories":
    grouping = classes.supercategory_grouping(selected)
    present = sorted({classes.SUPERCATEGORY_OF[c] for c in selected})
    return grouping, ("background",) + tuple(supercategory_names[s - 1] for s in present)
  if task.startswith("random_categories:"):
    try:
      k = int(task.partition(":")[2])
    except ValueError:
      raise ValueError(f"Task {task!r}: write random_categories:K with an integer K.") from None
    grouping = classes.random_grouping(selected, k, grouping_seed)
    return grouping, ("background",) + tuple(f"group_{i}" for i in range(1, k + 1))
  if task == "target":
    if target not in selected:
      raise ValueError(f"Target class {target} is not among the selected classes {selected}.")
    return {target: 1}, ("background", names[target - 1])
  raise ValueError(f"Unknown task {task!r}; choose one of {list(TASKS)}.")


# ----------------------------------------------------------------------------
# Per-example preparation.
# ----------------------------------------------------------------------------


@do_not_convert
def resize_and_pad(example: dict, factor: int, size: int, fill) -> dict:
  """Down-samples by `factor` (image: area, masks: nearest) and pads/crops to
  `size`×`size` at the bottom/right: image with the `fill` colour, class mask
  with void (255), instance mask with 0."""
  image = example["image"]
  shape = tf.shape(image)
  if factor > 1:
    new = (shape[:2] + factor - 1) // factor
    resized = tf.image.resize(tf.cast(image, tf.float32), new, method="area")
    image = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
    masks = {k: tf.image.resize(example[k][..., None], new, method="nearest")[..., 0]
             for k in ("label", "instances") if k in example}
  else:
    masks = {k: example[k] for k in ("label", "instances") if k in example}
  image = image[:size, :size]
  h, w = tf.shape(image)[0], tf.shape(image)[1]
  pad = [[0, size - h], [0, size - w]]
  inside = tf.pad(tf.ones([h, w], tf.bool), pad)
  fill = tf.constant(np.asarray(fill, np.uint8))
  out = dict(example)
  out["image"] = tf.where(inside[..., None], tf.pad(image, pad + [[0, 0]]), fill)
  for key, value in masks.items():
    value = value[:size, :size]
    out[key] = tf.pad(value, pad, constant_values=classes.VOID if key == "label" else 0)
    out[key] = tf.ensure_shape(out[key], [size, size])
  out["image"] = tf.ensure_shape(out["image"], [size, size, 3])
  return out


@do_not_convert
def _is_single_object(example):
  return tf.equal(tf.reduce_sum(tf.cast(example["objects"] > 0, tf.int32)), 1)


@do_not_convert
def _with_true_label(example):
  return {**example, "true_label": example["label"]}


def _keep(example, keys):
  return {k: example[k] for k in keys if k in example}


_KEPT = ("id", "image", "label", "true_label")


@tf.function(autograph=False)
def _relabel_and_keep(example, table):
  """The task's labels (`noise.relabel` through the int32 `table`) and the kept keys;
  traced once per process and example structure."""
  return _keep(noise.relabel(example, table), _KEPT)


@tf.function(autograph=False)
def _relabel(example, table):
  return noise.relabel(example, table)


# (dataset, its files, split, shard) -> that split's examples as TFDS reads them. TFDS
# keeps a small split in memory once read, so later datasets of the process skip
# reading and decoding it (and building the reading pipeline).
_LOADED: collections.OrderedDict = collections.OrderedDict()
_MAX_LOADED = 4


def forget_read_splits() -> None:
  """Drops the splits this process has read: the next dataset reads its files again.
  Call it after changing a dataset's files in place, or between two
  `tfds.testing.mock_data` blocks over the same data dir."""
  _LOADED.clear()


def _loaded(key, load: Callable[[], tf.data.Dataset]) -> tf.data.Dataset:
  if key in _LOADED:
    _LOADED.move_to_end(key)
  else:
    _LOADED[key] = load()
    while len(_LOADED) > _MAX_LOADED:
      _LOADED.popitem(last=False)
  return _LOADED[key]


def _materialise(ds: tf.data.Dataset) -> dict[str, np.ndarray]:
  """Every example of `ds` stacked into NumPy arrays (uint8 images and masks).

  Without tf.data's default graph rewrites (fusions, parallelisation,
  prefetching): they change how the pipeline runs, never a value, and
  applying them costs more than they save on one pass.
  """
  options = tf.data.Options()
  options.experimental_optimization.apply_default_optimizations = False
  parts = collections.defaultdict(list)
  for batch in ds.batch(1024).with_options(options).as_numpy_iterator():
    for key, value in batch.items():
      parts[key].append(value)
  if not parts:
    return {}
  return {k: np.concatenate(v) for k, v in parts.items()}



# ----------------------------------------------------------------------------
# Entry points.
# ----------------------------------------------------------------------------


def _shard():
  return jax.process_index(), jax.process_count()


@dataclasses.dataclass(frozen=True)
class SegmentationSpec:
  """Everything that makes a segmentation `Data`, as one value (`make_segmentation_data`).

  Attributes:
    name: "synthetic" (embedded, default) or "voc" (VOC2011 + SBD).
    batch_size: global batch size, a multiple of the mesh's device count.
    task: label space, see the module docstring (`TASKS`).
    fold, phase: None (all 20 classes), or fold 1..4 with phase "pretrain"
      (the 15 other classes) or "finetune" (the fold's 5 classes).
    fold_handling: pre-training on a fold: "exclude" the images with a fold
      object (the thesis, single-object images) or make those objects
      "background".
    corruption: None or "unsegment_objects:p" | "mislabel_objects:p" |
      "false_positive_objects:p" (label noise of the thesis), a
      segmentation error "boundary_noise:p[:k]" | "over_segment:p[:k]" |
      "under_segment:p" | "coarse_outlines:p[:box|f]", or a selection-biased
      unsegmentation "unsegment_small:p" | "unsegment_faint:p" |
      "unsegment_border:p" (`jaxpu.data.noise`; training split only).
    noise_seed: seed of the corruption and of `subsample` (one fixed noisy
      dataset per seed).
    seed: seed of the shuffling and augmentation.
    subsample: keep each training example with this probability (None: all).
    target: Table 5's target class id (default: dog, or cat on fold 3).
    grouping_seed: seed of "random_categories:K".
    augment: random horizontal flips of training batches.
    single_object: keep only single-object images (default: True for voc).
    downsample: image down-sampling factor (default: 4 for voc, else 1).
    image_size: side of the square batches (voc: padded with void; default
      the ×`downsample` VOC maximum rounded up to 8, 128 at ×4; synthetic:
      selects the config's image size).
    config: synthetic config name or `synthetic.SyntheticConfig` ("single").
    train_split, eval_split: default train / test (voc: train / seg11valid).
    eval_batch_size: default `batch_size`.
    with_true_label: also deliver the uncorrupted label as "true_label".
    data_dir: TFDS data dir (default `$JAXPU_DATA_DIR` or ~/tensorflow_datasets).
    manual_dir: voc: the folder with the downloaded archives.
    preprocessing: "standardize" (default): `(image/255 - mean) / std` per RGB
      channel with the dataset's mean/std (voc: ImageNet's); "caffe": the FCN
      reference's Caffe input, channels reversed to BGR, float 0-255, minus
      the mean `CAFFE_MEAN_BGR` = (104.00699, 116.66877, 122.67892) (B, G, R),
      no scaling (`Data.mean` is then that mean, `Data.std` ones). voc's
      padding colour is the mean colour either way (0 after preprocessing,
      up to rounding).
    corrupt_eval: also corrupt the evaluation split (same corruption and
      `noise_seed`, keyed on its own example ids): held-out noisy labels, e.g.
      for estimating a class prior from a model that never saw those images
      (`jaxpu.priors`). With `with_true_label` its batches then carry both.
  """
  name: str = "synthetic"
  batch_size: int = 32
  task: str = "multiclass"
  fold: Optional[int] = None
  phase: str = "pretrain"
  fold_handling: str = "exclude"
  corruption: Optional[str] = None
  noise_seed: int = 0
  seed: int = 0
  subsample: Optional[float] = None
  target: Optional[int] = None
  grouping_seed: int = 0
  augment: bool = False
  single_object: Optional[bool] = None
  downsample: Optional[int] = None
  image_size: Optional[int] = None
  config: Any = None
  train_split: Optional[str] = None
  eval_split: Optional[str] = None
  eval_batch_size: Optional[int] = None
  with_true_label: bool = False
  data_dir: Optional[str] = None
  manual_dir: Optional[str] = None
  directory: Optional[str] = None
  preprocessing: str = "standardize"
  corrupt_eval: bool = False

  def replace(self, **changes) -> "SegmentationSpec":
    return dataclasses.replace(self, **changes)

  def identity(self) -> dict[str, Any]:
    """The fields that select or change the examples (not where the files are), JSON-ready."""
    out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
           if f.name not in ("data_dir", "manual_dir", "directory")}
    if out["config"] is not None:
      out["config"] = getattr(out["config"], "name", str(out["config"]))
    return out


def make_segmentation_data(spec: SegmentationSpec, *, mesh=None, as_numpy: bool = False) -> Data:
  """Training and evaluation data of a segmentation experiment.

  Args:
    spec: what to read and how (`SegmentationSpec`: dataset, task, fold and
      phase, corruption and seeds, sizes, preprocessing, file locations).
    mesh: device mesh (default `jaxpu.parallel.make_mesh()`).
    as_numpy: deliver NumPy dicts instead of global device arrays.
  """
  if not isinstance(spec, SegmentationSpec):
    raise TypeError(f"make_segmentation_data takes a SegmentationSpec, got {spec!r}; e.g. "
                    "make_segmentation_data(SegmentationSpec('synthetic', batch_size=32)).")
  (name, batch_size, task, fold, phase, corruption, noise_seed, seed, subsample, target,
   single_object, downsample, image_size, config, train_split, eval_split,
   preprocessing) = (spec.name, spec.batch_size, spec.task, spec.fold, spec.phase,
                     spec.corruption, spec.noise_seed, spec.seed, spec.subsample,
                     spec.target, spec.single_object, spec.downsample, spec.image_size,
                     spec.config, spec.train_split, spec.eval_split, spec.preprocessing)
  if name not in SEGMENTATION_DATASETS:
    raise ValueError(f"Unknown segmentation dataset {name!r}; choose one of "
                     f"{list(SEGMENTATION_DATASETS)}.")
  if downsample is not None and (isinstance(downsample, bool) or
                                 not isinstance(downsample, (int, np.integer)) or downsample < 1):
    raise ValueError(f"downsample must be a positive int, got {downsample!r}.")
  if phase not in ("pretrain", "finetune"):
    raise ValueError(f"phase must be 'pretrain' or 'finetune', got {phase!r}.")
  _check_subsample(subsample)
  check_preprocessing(preprocessing)
  mesh = parallel.make_mesh() if mesh is None else mesh
  corruption = parse_corruption(corruption, SEGMENTATION_CORRUPTIONS)
  fingerprint = None
  if name == "folder":
    from jaxpu.data import folder  # pylint: disable=g-import-not-at-top
    if not spec.directory:
      raise ValueError("The folder dataset needs its directory: SegmentationSpec(directory=...) "
                       "(--config.data.directory=DIR).")
    summary = folder.summary(spec.directory, spec.data_dir)
    fingerprint = summary.config_name
    if fold is not None or task in ("categories",):
      raise ValueError(f"The folder dataset has no VOC folds or super-categories (got fold="
                       f"{fold!r}, task={task!r}); use fold=None and task multiclass, binary, "
                       "random_categories:K or target (with target=<class id>).")
    if task == "target" and target is None:
      raise ValueError("task='target' on the folder dataset needs target=<class id> "
                       f"(1..{summary.num_classes - 1}).")
    selected, names = tuple(range(1, summary.num_classes)), summary.class_names
  else:
    selected = selected_classes(fold, phase)
    names = classes.class_names(name)
  if target is None:
    target = classes.false_positive_target(fold)
  mapping, class_names = task_mapping(
      task, selected, names, grouping_seed=spec.grouping_seed, target=target,
      supercategory_names=(classes.SUPERCATEGORIES if name == "voc"
                           else classes.SYNTHETIC_SUPERCATEGORIES))
  if name == "voc":
    single_object = True if single_object is None else single_object
    downsample = 4 if downsample is None else downsample
    image_size = image_size or 8 * math.ceil(math.ceil(VOC_MAX_SIDE / downsample) / 8)
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    train_split, eval_split = train_split or "train", eval_split or "seg11valid"

    def load(split, shard=None):
      from jaxpu.data import voc
      return voc.segmentation_examples(split, data_dir=spec.data_dir,
                                       manual_dir=spec.manual_dir,
                                       shard=shard or _shard())
  elif name == "folder":
    single_object = bool(single_object)
    downsample = downsample or 1
    image_size = image_size or folder.default_image_size(summary, downsample)
    mean, std = tuple(summary.mean), tuple(summary.std)
    train_split = train_split or "train"
    eval_split = eval_split or ("val" if "val" in summary.splits else "test")

    def load(split, shard=None):
      return folder.segmentation_examples(split, directory=spec.directory,
                                          data_dir=spec.data_dir, shard=shard or _shard())
  else:
    single_object = bool(single_object)
    downsample = downsample or 1
    config = synthetic.synthetic_config(config or "single")
    if image_size and image_size != config.image_size:
      config = synthetic.synthetic_config(config, image_size=image_size)
    image_size = config.image_size // downsample if downsample > 1 else None
    mean, std = SYNTHETIC_MEAN, SYNTHETIC_STD
    train_split, eval_split = train_split or "train", eval_split or "test"

    def load(split, shard=None):
      return synthetic.segmentation_examples(split, config=config, data_dir=spec.data_dir,
                                             shard=shard or _shard())
  if preprocessing == "caffe":
    mean, std = CAFFE_MEAN_BGR, (1., 1., 1.)
    fill = np.round(np.asarray(mean)[::-1])
  else:
    fill = np.round(np.asarray(mean) * 255)
  keep_fold = (noise.fold_filter(phase, fold, spec.fold_handling) if fold is not None else None)
  table = tf.constant(noise.lookup_table(mapping))
  files = (name, getattr(config, "name", None), fingerprint,
           spec.data_dir or synthetic.default_data_dir(), spec.manual_dir, spec.directory)

  def select(split, train, shard=None):
    shard = shard or _shard()
    ds = _loaded(files + (split, shard), lambda: load(split, shard))
    if image_size:
      ds = ds.map(do_not_convert(lambda ex: resize_and_pad(ex, downsample, image_size, fill)),
                  num_parallel_calls=tf.data.AUTOTUNE)
    if single_object:
      ds = ds.filter(_is_single_object)
    if keep_fold is not None:
      ds = ds.filter(keep_fold)
    if train and subsample is not None:
      ds = ds.filter(noise.traced(noise.subsample, subsample, noise_seed))
    return ds

  calibration = None
  if corruption is not None and corruption[0] in noise.SELECTION_BIASES:
    # The whole training split (every host the same), before any corruption.
    calibration = _calibrate(spec, corruption,
                             lambda: select(train_split, True, shard=(0, 1)))
  corrupt = _segmentation_corruption(corruption, noise_seed, selected, target, calibration)

  def prepare(split, train):
    ds = select(split, train)
    if spec.with_true_label:
      ds = ds.map(_with_true_label)
    if (train or spec.corrupt_eval) and corrupt is not None:
      ds = ds.map(corrupt, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.map(do_not_convert(lambda ex: _relabel_and_keep(ex, table)),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _materialise(ds)

  return Data(name=name, task=task, kind="segmentation", class_names=class_names,
              train=prepare(train_split, True), evaluation=prepare(eval_split, False),
              batch_size=batch_size, eval_batch_size=spec.eval_batch_size or batch_size,
              seed=seed, augment=spec.augment, mean=mean, std=std, mesh=mesh, as_numpy=as_numpy,
              preprocessing=preprocessing, fingerprint=fingerprint)


# (selection identity, feature) → the float64 feature of every training object
# (`selection_calibration`): computed once per process.
_TRAINING_FEATURES: dict = {}
# Fields that do not change which training examples the corruption sees, nor them.
_NOT_SELECTING = dict(batch_size=1, task="multiclass", corruption=None, seed=0, target=None,
                      grouping_seed=0, augment=False, eval_split=None, eval_batch_size=None,
                      with_true_label=False, corrupt_eval=False)


def _selection_key(spec: SegmentationSpec, feature: str):
  """What fixes the training objects (and their images) a calibration is computed over."""
  neutral = dict(_NOT_SELECTING)
  if spec.subsample is None:
    neutral["noise_seed"] = 0  # the noise seed selects examples only through subsample
  return spec.replace(**neutral), feature


def _calibrate(spec: SegmentationSpec, corruption, training_split: Callable[[], Any]
               ) -> noise.Calibration:
  """The calibration of a selection-biased `corruption` over `training_split()`'s objects."""
  name, rate, _ = corruption
  feature = noise.SELECTION_BIASES[name][0]
  key = _selection_key(spec, feature)
  if key not in _TRAINING_FEATURES:
    _TRAINING_FEATURES[key] = noise.dataset_features(training_split(), feature)
  return noise.calibrate(name, _TRAINING_FEATURES[key], rate)


def selection_calibration(spec: SegmentationSpec) -> noise.Calibration | None:
  """The calibration `make_segmentation_data(spec)` corrupts its training split with
  (None unless `spec.corruption` is selection-biased): the feature of every training
  object, its mean and std, and the intercept b that makes the expected fraction of
  unsegmented training objects the corruption's rate (`noise.calibrate`). Computed at
  most once per selection of training examples in this process (reading the split once
  when no data of that selection was made yet)."""
  corruption = parse_corruption(spec.corruption, SEGMENTATION_CORRUPTIONS)
  if corruption is None or corruption[0] not in noise.SELECTION_BIASES:
    return None
  key = _selection_key(spec, noise.SELECTION_BIASES[corruption[0]][0])
  if key not in _TRAINING_FEATURES:
    make_segmentation_data(spec, as_numpy=True)
  return noise.calibrate(corruption[0], _TRAINING_FEATURES[key], corruption[1])


def _segmentation_corruption(corruption, noise_seed, selected, target,
                             calibration=None) -> Callable | None:
  if corruption is None:
    return None
  name, rate, size = corruption
  if name in noise.SELECTION_BIASES:
    return noise.traced_selected(calibration, noise_seed)
  corrupt = getattr(noise, name)
  if name in noise.SEGMENTATION_ERRORS:
    return noise.traced(corrupt, rate, noise_seed, size)
  if name == "unsegment_objects":
    return noise.traced(corrupt, rate, noise_seed)
  if name == "mislabel_objects":
    return noise.traced(corrupt, rate, noise_seed, candidates=tuple(selected))
  return noise.traced(corrupt, rate, noise_seed, target=int(target), candidates=tuple(selected))


def make_classification_data(
    name: str = "synthetic", *, batch_size: int, corruption=None, noise_seed: int = 0,
    seed: int = 0, subsample: float | None = None, relevant: Sequence[int] | None = None,
    augment: bool = False,
    image_size: int | None = None, config=None, train_split: str | None = None,
    eval_split: str | None = None, eval_batch_size: int | None = None,
    with_true_label: bool = False, data_dir: str | None = None, download: bool = False,
    mesh=None, as_numpy: bool = False, corrupt_eval: bool = False) -> Data:
  """Training and evaluation data of a classification experiment (§5.1).

  Relevant classes are 1..K, the non-relevant class is 0:
  - "synthetic": the classification view of the embedded data; `relevant`
    category ids (default folds 1-2, ids 1..10) → 1..10, the rest → 0;
  - "cifar": CIFAR-10 → 1..10, CIFAR-100 → 0 (11 classes);
  - "digits": `relevant` digits (default 0..4) → 1..5, the rest → 0;
  - "moons": 2-D points, positive class 1 (`image` is `[B, 2]`).

  Args:
    corruption: None or "pu_labels:f": each relevant training example keeps
      its label with probability f, else becomes 0 (§5.1.1, §5.1.2).
    subsample: None, or keep each training example with this probability,
      labels untouched (Table 1's 50%(R+N): about half of every class). The
      draw is stateless per example id, seeded by `noise_seed` and
      independent of the `pu_labels` draw (`noise.subsample`).
    image_size: digits: side of the resized images (default 32); synthetic:
      selects the config's image size.
    download: cifar: let TFDS download missing data (needs network); by
      default missing data raises at once, saying what to run.
    corrupt_eval: also apply `corruption` to the evaluation split (held-out
      PU labels, e.g. for class-prior estimation; `jaxpu.priors`).
    Others as in `make_segmentation_data`.
  """
  if name not in CLASSIFICATION_DATASETS:
    raise ValueError(f"Unknown classification dataset {name!r}; choose one of "
                     f"{list(CLASSIFICATION_DATASETS)}.")
  _check_subsample(subsample)
  mesh = parallel.make_mesh() if mesh is None else mesh
  corruption = parse_corruption(corruption, CLASSIFICATION_CORRUPTIONS)
  table = None
  kind = "classification"
  train_split, eval_split = train_split or "train", eval_split or "test"
  if name == "synthetic":
    config = synthetic.synthetic_config(config or "single")
    if image_size and image_size != config.image_size:
      config = synthetic.synthetic_config(config, image_size=image_size)
    relevant = tuple(relevant) if relevant is not None else classes.FOLDS[0] + classes.FOLDS[1]
    bad = [c for c in relevant if not 1 <= c <= classes.NUM_CLASSES]
    if bad or len(set(relevant)) != len(relevant):
      raise ValueError(f"relevant must be distinct category ids 1..20, got {relevant!r}.")
    table = tf.constant(noise.lookup_table({c: i + 1 for i, c in enumerate(relevant)}))
    class_names = ("other",) + tuple(classes.SYNTHETIC_CLASSES[c - 1] for c in relevant)
    mean, std = SYNTHETIC_MEAN, SYNTHETIC_STD

    def load(split):
      return synthetic.classification_examples(split, config=config, data_dir=data_dir,
                                               shard=_shard())
  elif name == "cifar":
    from jaxpu.data import cifar
    _no_option(name, relevant=relevant, image_size=image_size)
    class_names, mean, std = cifar.CLASS_NAMES, cifar.MEAN, cifar.STD

    def load(split):
      return cifar.classification_examples(split, data_dir=data_dir, shard=_shard(),
                                           download=download)
  elif name == "digits":
    from jaxpu.data import digits
    relevant = tuple(relevant) if relevant is not None else digits.DEFAULT_RELEVANT
    class_names, mean, std = digits.class_names(relevant), digits.MEAN, digits.STD

    def load(split):
      return digits.classification_examples(split, relevant=relevant,
                                            image_size=image_size or 32, shard=_shard())
  else:
    from jaxpu.data import moons
    _no_option(name, relevant=relevant, image_size=image_size, augment=augment or None)
    class_names, mean, std, kind = moons.CLASS_NAMES, (0.0, 0.0), (1.0, 1.0), "features"

    def load(split):
      return moons.classification_examples(split, shard=_shard())

  files = (name, getattr(config, "name", None), relevant, image_size,
           data_dir or synthetic.default_data_dir())

  def prepare(split, train):
    ds = _loaded(files + (split, _shard()), lambda: load(split))
    if table is not None:
      ds = ds.map(do_not_convert(lambda ex: _relabel(ex, table)))
    if train and subsample is not None:
      ds = ds.filter(noise.traced(noise.subsample, subsample, noise_seed))
    if with_true_label:
      ds = ds.map(_with_true_label)
    if (train or corrupt_eval) and corruption is not None:
      ds = ds.map(noise.traced(noise.pu_labels, corruption[1], noise_seed),
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _materialise(ds.map(do_not_convert(lambda ex: _keep(ex, _KEPT))))

  return Data(name=name, task="classification", kind=kind, class_names=class_names,
              train=prepare(train_split, True), evaluation=prepare(eval_split, False),
              batch_size=batch_size, eval_batch_size=eval_batch_size or batch_size, seed=seed,
              augment=augment, mean=mean, std=std, mesh=mesh, as_numpy=as_numpy)


def _check_subsample(subsample):
  if subsample is not None and (isinstance(subsample, bool) or
                                not isinstance(subsample, (int, float, np.floating)) or
                                not 0 < subsample <= 1):
    raise ValueError(f"subsample must be a fraction in (0, 1] (or None), got {subsample!r}.")


def _no_option(name, **options):
  given = sorted(k for k, v in options.items() if v is not None)
  if given:
    raise ValueError(f"Dataset {name!r} does not take option(s) {given}.")
