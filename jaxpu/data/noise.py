"""Label corruptions of the thesis and label selections, as tf.data map functions.

Every function maps one example (a dict of tensors, before batching) to an
example or, for the selections, to a filter predicate:

- `"id"`: int64 scalar, the stable example id (stored in the dataset);
- `"label"`: the class mask (uint8/int32 `[H, W]`, 0 background, 1..20, 255
  void) or, for classification, the class (int scalar);
- `"instances"`: instance mask (`[H, W]`, 0 background, k = object k, 255 void);
- `"objects"`: int32 `[n]`, the class of object k at index k-1.

Corruptions (train split only) take their rate and a noise seed:

| function | paper | each ... with probability `rate` |
|---|---|---|
| `pu_labels` | §5.1.1, §5.1.2 | relevant example keeps its label with probability `labeled_fraction`, else → 0 |
| `unsegment_objects` | §5.2, Table 4 | object → background |
| `mislabel_objects` | Table 3 | object of a `candidates` class → a uniformly random *other* candidate |
| `false_positive_objects` | Table 5 | non-target object → the target class |

Randomness is stateless and per example (Philox): the key is
`stateless_fold_in([seed, salt], id)`, `salt` a CRC32 of the corruption's
name, and object k uses draw k of `stateless_uniform([256], key)`. So a corrupted dataset is one
fixed dataset: identical across epochs, shuffles, hosts and processes, and
different for another seed. Whole objects change (every pixel of object k gets
object k's new class), void pixels (255) stay void, and `"objects"` follows.

`subsample(example, fraction, seed)` is a filter predicate keeping each
training example with probability `fraction`, keyed the same way.

Label mappings (train and evaluation splits alike) are lookup tables on class
ids that keep 0 → 0 and 255 → 255; unlisted classes become background:
`relabel(example, mapping)`, `binarize` (Table 3 BinarizedLabels: every class
→ 1), `categorize` (Fig. 7: `classes.supercategory_grouping` or
`classes.random_grouping`).

Fold selection (§5.3.1, 4 folds of 5 classes, `classes.FOLDS`): pre-training
uses the 15 classes outside fold i (`fold_mapping("pretrain", i)`: ids → 1..15),
fine-tuning fold i's 5 classes (`fold_mapping("finetune", i)`: ids → 1..5).
`fold_filter` keeps the images of a phase. The thesis uses single-object
images, so it *excludes* the images of held-out classes (pre-training never
sees a fold-class object, fine-tuning sees only fold-class images); with
`handling="background"` pre-training keeps every image and the held-out
objects become background instead (for multi-object images).
"""

from __future__ import annotations

import zlib
from typing import Mapping

import numpy as np

from jaxpu.data import classes
from jaxpu.data._tf import tf

VOID = classes.VOID
MAX_OBJECTS = 256
_ALG = "philox"


def _salt(name: str) -> int:
  return zlib.crc32(name.encode())


def example_key(seed: int, name: str, example_id) -> tf.Tensor:
  """The stateless RNG key of example `example_id` for corruption `name`."""
  base = tf.constant([int(seed), _salt(name)], tf.int64)
  return tf.random.experimental.stateless_fold_in(
      base, tf.cast(example_id, tf.int64), alg=_ALG)


def _uniforms(seed, name, example_id, count=None):
  """Uniform [0, 1) draws of this example: scalar, or one per object (first `count`)."""
  key = example_key(seed, name, example_id)
  if count is None:
    return tf.random.stateless_uniform([], seed=key, alg=_ALG)
  return tf.random.stateless_uniform([MAX_OBJECTS], seed=key, alg=_ALG)[:count]


def _check_rate(rate, name="rate"):
  if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)) or not 0 <= rate <= 1:
    raise ValueError(f"{name} must be a probability in [0, 1], got {rate!r}.")
  return float(rate)


def _check_objects(example, fn):
  missing = {"instances", "objects"} - set(example)
  if missing:
    raise ValueError(f"{fn} changes whole objects and needs the example keys 'instances' and "
                     f"'objects' (missing {sorted(missing)}); it applies to segmentation "
                     "datasets, before the instance mask is dropped.")


def set_object_classes(example: dict, new_classes: tf.Tensor) -> dict:
  """Gives every pixel of object k the class `new_classes[k-1]`; void stays void."""
  label = example["label"]
  instances = tf.cast(example["instances"], tf.int32)
  new_classes = tf.cast(new_classes, tf.int32)
  n = tf.shape(new_classes)[0]
  is_object = (instances >= 1) & (instances <= n)
  table = tf.concat([[0], new_classes], 0)
  per_pixel = tf.gather(table, tf.where(is_object, instances, 0))
  old = tf.cast(label, tf.int32)
  new = tf.where(is_object & (old != VOID), per_pixel, old)
  return {**example, "label": tf.cast(new, label.dtype), "objects": new_classes}


def pu_labels(example: dict, labeled_fraction: float, seed: int, relevant=None) -> dict:
  """Positive-unlabeled labels (§5.1): a relevant example keeps its label with
  probability `labeled_fraction`; otherwise it joins the unlabeled set as class 0.

  `relevant`: the relevant class ids (default: every class but 0 and void).
  """
  labeled_fraction = _check_rate(labeled_fraction, "labeled_fraction")
  label = example["label"]
  if label.shape.rank != 0:
    raise ValueError("pu_labels corrupts per-example (classification) labels; for "
                     "segmentation use unsegment_objects.")
  old = tf.cast(label, tf.int32)
  if relevant is None:
    is_relevant = (old != 0) & (old != VOID)
  else:
    is_relevant = tf.reduce_any(tf.equal(old, tf.constant(sorted(relevant), tf.int32)))
  unlabeled = is_relevant & (_uniforms(seed, "pu_labels", example["id"]) >= labeled_fraction)
  return {**example, "label": tf.cast(tf.where(unlabeled, 0, old), label.dtype)}


def subsample(example: dict, fraction: float, seed: int) -> tf.Tensor:
  """A `ds.filter` predicate keeping each example w.p. `fraction` (Table 1's
  "50%(R+N)": a random half of every class, labels left clean)."""
  if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)) \
      or not 0 < fraction <= 1:
    raise ValueError(f"subsample must be a fraction in (0, 1], got {fraction!r}.")
  return _uniforms(seed, "subsample", example["id"]) < float(fraction)


def unsegment_objects(example: dict, rate: float, seed: int) -> dict:
  """Inexhaustive segmentation (§5.2): each object becomes background w.p. `rate`."""
  rate = _check_rate(rate)
  _check_objects(example, "unsegment_objects")
  objects = tf.cast(example["objects"], tf.int32)
  u = _uniforms(seed, "unsegment_objects", example["id"], tf.shape(objects)[0])
  return set_object_classes(example, tf.where(u < rate, 0, objects))


def mislabel_objects(example: dict, rate: float, seed: int,
                     candidates=tuple(range(1, classes.NUM_CLASSES + 1))) -> dict:
  """Objects mislabelling (Table 3): each object of a `candidates` class, w.p.
  `rate`, gets a uniformly random other class of `candidates` (HalfRandomLabels:
  rate 0.5, AllRandomLabels: rate 1). Objects of other classes (e.g. a held-out
  fold's, which become background) are left as they are.
  """
  rate = _check_rate(rate)
  _check_objects(example, "mislabel_objects")
  candidates = sorted(set(int(c) for c in candidates))
  if len(candidates) < 2:
    raise ValueError(f"mislabel_objects needs at least 2 candidate classes, got {candidates!r}.")
  table = tf.constant(candidates, tf.int32)
  k = len(candidates)
  objects = tf.cast(example["objects"], tf.int32)
  n = tf.shape(objects)[0]
  u_flip = _uniforms(seed, "mislabel_objects", example["id"], n)
  u_class = _uniforms(seed, "mislabel_objects/class", example["id"], n)
  match = tf.equal(objects[:, None], table[None, :])
  known = tf.reduce_any(match, axis=1)
  position = tf.argmax(tf.cast(match, tf.int32), axis=1, output_type=tf.int32)
  # Uniform over the k-1 other candidates: draw an index in [0, k-2], skip our own.
  index = tf.minimum(tf.cast(u_class * (k - 1), tf.int32), k - 2)
  drawn = tf.gather(table, index + tf.cast(index >= position, tf.int32))
  return set_object_classes(example, tf.where(known & (u_flip < rate), drawn, objects))


def false_positive_objects(example: dict, rate: float, seed: int,
                           target: int = classes.TARGET_CLASS, candidates=None) -> dict:
  """False positive segmentations (Table 5): each object of another class is
  segmented as `target` w.p. `rate`. (The "target" task then maps the target
  to 1 and every other class to background: HalfFalsePositive = rate 0.5,
  NoFalsePositive = rate 0.) `candidates`: if given, only objects of these
  classes can become false positives.
  """
  rate = _check_rate(rate)
  _check_objects(example, "false_positive_objects")
  objects = tf.cast(example["objects"], tf.int32)
  u = _uniforms(seed, "false_positive_objects", example["id"], tf.shape(objects)[0])
  flip = (objects != int(target)) & (objects != 0) & (u < rate)
  if candidates is not None:
    allowed = tf.constant(sorted(int(c) for c in candidates), tf.int32)
    flip &= tf.reduce_any(tf.equal(objects[:, None], allowed[None, :]), axis=1)
  return set_object_classes(example, tf.where(flip, int(target), objects))


def lookup_table(mapping: Mapping[int, int]) -> np.ndarray:
  """A 256-entry class lookup table: `mapping`, 0 → 0, 255 → 255, rest → 0."""
  table = np.zeros(256, np.int32)
  for source, target in mapping.items():
    if not (0 < int(source) < VOID and 0 <= int(target) < VOID):
      raise ValueError(f"Class mapping {source} -> {target} is out of range: classes are "
                       "1..254 (0 is background, 255 void).")
    table[int(source)] = int(target)
  table[VOID] = VOID
  return table


def relabel(example: dict, mapping, keys=("label", "true_label", "objects")) -> dict:
  """Maps class ids through `mapping` (a dict or a `lookup_table`) in `keys`."""
  table = tf.constant(mapping if isinstance(mapping, np.ndarray) else lookup_table(mapping))
  out = dict(example)
  for key in keys:
    if key in example:
      value = example[key]
      out[key] = tf.cast(tf.gather(table, tf.cast(value, tf.int32)), value.dtype)
  return out


def binarize(example: dict) -> dict:
  """Every object class → 1 (foreground); background and void unchanged."""
  return relabel(example, {c: 1 for c in range(1, VOID)})


def categorize(example: dict, grouping: Mapping[int, int]) -> dict:
  """Classes → their group (`classes.supercategory_grouping` for the meaningful
  person/animal/vehicle/indoor, `classes.random_grouping(ids, k, seed)` for a
  random one); classes outside `grouping` → background."""
  return relabel(example, grouping)


def fold_mapping(phase: str, fold: int) -> dict[int, int]:
  """Class ids of a phase relabelled 1..K in id order (K = 15 or 5)."""
  if phase == "pretrain":
    ids = classes.pretrain_classes(fold)
  elif phase == "finetune":
    ids = classes.fold_classes(fold)
  else:
    raise ValueError(f"phase must be 'pretrain' or 'finetune', got {phase!r}.")
  return {c: i + 1 for i, c in enumerate(ids)}


def fold_filter(phase: str, fold: int, handling: str = "exclude"):
  """A `ds.filter` predicate keeping the images of `phase` on `fold`.

  pretrain: images without a fold-class object (`handling="exclude"`, the
  thesis), or every image (`handling="background"`). finetune: images with
  at least one fold-class object.
  """
  if handling not in ("exclude", "background"):
    raise ValueError(f"handling must be 'exclude' or 'background', got {handling!r}.")
  held_out = tf.constant(classes.fold_classes(fold), tf.int32)

  def has_fold_object(example):
    objects = tf.cast(example["objects"], tf.int32)
    return tf.reduce_any(tf.equal(objects[:, None], held_out[None, :]))

  if phase == "pretrain":
    if handling == "background":
      return lambda example: tf.constant(True)
    return lambda example: tf.logical_not(has_fold_object(example))
  if phase == "finetune":
    return has_fold_object
  raise ValueError(f"phase must be 'pretrain' or 'finetune', got {phase!r}.")
