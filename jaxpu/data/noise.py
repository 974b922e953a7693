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

Segmentation errors (§6: "imprecise boundaries, over-segmenting and
under-segmenting the objects ... left for future works") change the *outline*
of each object w.p. `rate`, never its class. An object is an instance of the
instance mask (both the synthetic data and VOC have one; connected pieces of
one occluded instance form one object); its mask is its non-void pixels.
Pixels leaving an object become background (0); pixels joining it take its
class, only where the label is background (never void, never another object;
a pixel two objects reach joins the lower-numbered one; `set_object_masks`).
`"instances"` follows, `"objects"` stays. Draws are keyed like the
corruptions above (decision, size and kind: three independent draws per
object). Strings for `make_segmentation_data` are "name:rate[:size]":

| function | string | each object w.p. `rate` ... |
|---|---|---|
| `boundary_noise` | `boundary_noise:p[:k]` | eroded or dilated (1/2 each) by 1..k pixels (default k 2) |
| `over_segment` | `over_segment:p[:k]` | dilated by k pixels (default 2) |
| `under_segment` | `under_segment:p` | loses the part beyond a random line through its centroid |
| `coarse_outlines` | `coarse_outlines:p[:box|f]` | → its bounding box (default) or its 1/f-resolution mask |

The radius is uniform in 1..k and the line's angle uniform (the line cuts
away about half of the object). The 1/f-resolution mask keeps an f×f block
(grid from the top left) iff at least half of its in-image pixels are the
object's, up-sampled nearest. Like the corruptions above, these act on class
ids before the task's label mapping, so they serve every task (binary
included).

Erosion and dilation use a (2r+1)×(2r+1) square (r repeated 3×3 max-pools);
erosion treats pixels outside the image as inside the object and void as
outside, dilation first crosses up to `VOID_BAND` (5) void pixels next to the
object, so the band it adds lies outside the void band ringing VOC and
synthetic objects. Erosion (and, rarely, the 1/f version or a cut of a tiny
object) can remove an object entirely.

Selection-biased unsegmentation (beyond the thesis: annotators miss small,
faint and border-cut objects, not random ones; "selected at random", SAR,
instead of SCAR). Object i is unsegmented iff u_i < P_i, with u_i
`unsegment_objects`' own draw (same key: with the same seed an object
unsegmented by `unsegment_objects:p` is one with u_i < p, so the two
corruptions are coupled, common random numbers for paired comparisons) and

    P_i = σ(b + s·z_i),   z_i = (x_i - mean x) / std x,

x_i the object's feature, mean and std (ddof 0) over every object of the
training split, s a fixed slope, and the intercept b solved (bisection;
mean P is increasing in b) so that mean_i P_i = p over those objects: the
expected fraction of unsegmented training objects is exactly p, as with
`unsegment_objects:p` (`calibrate`, `solve_intercept`). The logit s·z has
standard deviation |s| = 2 over the objects for every mechanism:

| string | feature x_i (`object_feature`) | s |
|---|---|---|
| `unsegment_small:p` | "log_area": log of the object's non-void pixel count | -2 (small objects missed more) |
| `unsegment_faint:p` | "contrast": abs(mean intensity inside − mean intensity of the ring) / std of the image's intensity | -2 (faint objects missed more) |
| `unsegment_border:p` | "border": 1 if the object touches the image border, else 0 | +2 (border objects missed more) |

Intensity is the mean of the R, G, B values / 255; the ring is the
background pixels (label 0, no object) within `RING` (3) pixels
(Chebyshev) of the object after crossing its void band (`dilate`), the
image's std is over all its pixels (a feature of 0 when the ring is empty or
the image constant). An object touches the border when one of its non-void
pixels lies on the outermost row or column, or next to (3×3) padding
(void pixels outside every object: VOC's padding to a square; the synthetic
data has none, its void is the band around objects). A feature constant over
the split (std 0) gives z = 0: every P_i = p. The calibration is
dataset-level: `jaxpu.data.pipeline` computes every training object's
feature once (`dataset_features`, cached per data selection), solves b
(`calibrate`) and maps `unsegment_selected` over the examples.

`traced(fn, rate, seed, ...)` is `fn` for `Dataset.map`/`filter` with its graph
traced once per process (rate and seed become tensor arguments): the same
values, without tracing the corruption again for every dataset
(`traced_selected(calibration, seed)` for `unsegment_selected`). Every
function on examples and masks is plain TensorFlow (no Python control flow on
tensors) and marked `tf.autograph.experimental.do_not_convert`: in your own
`ds.map(lambda ex: noise.unsegment_objects(ex, 0.5, seed))` AutoGraph
converts the lambda only.

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

import dataclasses
import math
import zlib
from typing import Any, Callable, Mapping

import numpy as np

from jaxpu.data import classes
from jaxpu.data._tf import do_not_convert, tf

VOID = classes.VOID
MAX_OBJECTS = 256
_ALG = "philox"


def _salt(name: str) -> int:
  return zlib.crc32(name.encode())


@do_not_convert
def example_key(seed, name: str, example_id) -> tf.Tensor:
  """The stateless RNG key of example `example_id` for corruption `name` (`seed`: an int
  or an int64 scalar tensor)."""
  if isinstance(seed, tf.Tensor):
    base = tf.stack([tf.cast(seed, tf.int64), tf.constant(_salt(name), tf.int64)])
  else:
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
  if isinstance(rate, tf.Tensor):  # checked where it was made (`traced`)
    return rate
  if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating)) or not 0 <= rate <= 1:
    raise ValueError(f"{name} must be a probability in [0, 1], got {rate!r}.")
  return float(rate)


def _check_objects(example, fn):
  missing = {"instances", "objects"} - set(example)
  if missing:
    raise ValueError(f"{fn} changes whole objects and needs the example keys 'instances' and "
                     f"'objects' (missing {sorted(missing)}); it applies to segmentation "
                     "datasets, before the instance mask is dropped.")


# (function, options) -> its `tf.function` (`traced`): one per process.
_TRACED: dict = {}


def traced(fn: Callable, rate, seed: int, *args, **options) -> Callable[[dict], Any]:
  """`example -> fn(example, rate, seed, *args, **options)`, its graph traced once per process.

  For `Dataset.map` and `Dataset.filter`. Tracing a corruption builds its whole
  graph again for every dataset (tens of milliseconds each); here `rate` (a
  float32 tensor) and `seed` (an int64 tensor) are arguments of one
  `tf.function` per `fn`, `args` and `options` (hashable: part of its key) and
  example structure, so datasets with another rate or seed reuse it. The
  values are `fn`'s with Python numbers: the same float32 rate, the same
  Philox keys. `rate` is checked here (a probability); `fn` checks the rest.
  Pass a module-level function: each new lambda is a new key, traced anew.
  """
  rate = tf.constant(_check_rate(rate), tf.float32)
  seed = tf.constant(int(seed), tf.int64)
  key = (fn, args, tuple(sorted(options.items())))
  if key not in _TRACED:
    _TRACED[key] = tf.function(lambda ex, r, s: fn(ex, r, s, *args, **options), autograph=False)
  graph = _TRACED[key]
  return do_not_convert(lambda example: graph(example, rate, seed))


@do_not_convert
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


@do_not_convert
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


@do_not_convert
def subsample(example: dict, fraction: float, seed: int) -> tf.Tensor:
  """A `ds.filter` predicate keeping each example w.p. `fraction` (Table 1's
  "50%(R+N)": a random half of every class, labels left clean)."""
  if not isinstance(fraction, tf.Tensor):
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)) \
        or not 0 < fraction <= 1:
      raise ValueError(f"subsample must be a fraction in (0, 1], got {fraction!r}.")
    fraction = float(fraction)
  return _uniforms(seed, "subsample", example["id"]) < fraction


@do_not_convert
def unsegment_objects(example: dict, rate: float, seed: int) -> dict:
  """Inexhaustive segmentation (§5.2): each object becomes background w.p. `rate`."""
  rate = _check_rate(rate)
  _check_objects(example, "unsegment_objects")
  objects = tf.cast(example["objects"], tf.int32)
  u = _uniforms(seed, "unsegment_objects", example["id"], tf.shape(objects)[0])
  return set_object_classes(example, tf.where(u < rate, 0, objects))


@do_not_convert
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


@do_not_convert
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


# ----------------------------------------------------------------------------
# Segmentation errors (§6's future work): imprecise, over- and under-segmented
# outlines of whole objects.
# ----------------------------------------------------------------------------

# Void steps the dilations cross before measuring (VOC's band is 5 pixels wide).
VOID_BAND = 5
SEGMENTATION_ERRORS = ("boundary_noise", "coarse_outlines", "under_segment", "over_segment")
# name -> (what the size is, its default); under_segment takes no size.
ERROR_SIZES = {"boundary_noise": ("k, the largest erosion/dilation in pixels (int >= 1)", 2),
               "over_segment": ("k, the added band in pixels (int >= 1)", 2),
               "coarse_outlines": ("'box' or a down-sampling factor (int >= 2)", "box")}


def check_size(name: str, size=None):
  """The validated size of corruption `name` (its default when `size` is None).

  `size` may be the text after the second colon of "name:rate:size". Raises
  ValueError naming what the corruption accepts.
  """
  if name not in ERROR_SIZES:
    if size is not None:
      raise ValueError(f"{name} takes no size: write '{name}:rate'.")
    return None
  what, default = ERROR_SIZES[name]
  if size is None:
    return default
  if name == "coarse_outlines" and size == "box":
    return "box"
  if isinstance(size, str):
    try:
      size = int(size)
    except ValueError:
      raise ValueError(f"{name}: size {size!r} is not {what}.") from None
  minimum = 2 if name == "coarse_outlines" else 1
  if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < minimum:
    raise ValueError(f"{name}: size {size!r} is not {what}.")
  return int(size)


@do_not_convert
def object_masks(example: dict) -> tf.Tensor:
  """bool `[n, H, W]`: the non-void pixels of object k at index k-1."""
  instances = tf.cast(example["instances"], tf.int32)
  label = tf.cast(example["label"], tf.int32)
  ids = tf.range(1, tf.shape(example["objects"])[0] + 1)
  return tf.equal(instances[None], ids[:, None, None]) & (label != VOID)[None]


def _grow(masks: tf.Tensor) -> tf.Tensor:
  """One 3×3 dilation of bool `[n, H, W]` masks (outside the image ignored)."""
  pooled = tf.nn.max_pool2d(tf.cast(masks, tf.float32)[..., None], 3, 1, "SAME")
  return pooled[..., 0] > 0


def _steps(masks, radius, max_radius, step):
  """Applies `step` radius[i] times to mask i (`radius` int32 `[n]`, at most `max_radius`)."""
  radius = tf.convert_to_tensor(radius, tf.int32)
  for i in range(int(max_radius)):
    masks = tf.where((i < radius)[:, None, None], step(masks), masks)
  return masks


@do_not_convert
def dilate(masks: tf.Tensor, radius, max_radius: int, void: tf.Tensor | None = None) -> tf.Tensor:
  """Dilates mask i by a (2r+1)×(2r+1) square, r = `radius[i]` (≤ `max_radius`).

  With `void` (bool `[H, W]`), the dilation first crosses up to `VOID_BAND`
  void pixels next to the mask (void pixels reached stay in the mask), so the
  band it adds lies outside a void band ringing the object. Masks with r = 0
  are returned unchanged.
  """
  masks = tf.convert_to_tensor(masks, tf.bool)
  start = masks
  if void is not None:
    for _ in range(VOID_BAND):
      start = start | (_grow(start) & void[None])
  grown = _steps(start, radius, max_radius, _grow)
  return tf.where((tf.convert_to_tensor(radius, tf.int32) > 0)[:, None, None], grown, masks)


@do_not_convert
def erode(masks: tf.Tensor, radius, max_radius: int) -> tf.Tensor:
  """Erodes mask i by a (2r+1)×(2r+1) square, r = `radius[i]` (≤ `max_radius`).

  Pixels outside the image count as inside the mask (an object cut by the
  image border is not eroded from the border).
  """
  return ~_steps(~tf.convert_to_tensor(masks, tf.bool), radius, max_radius, _grow)


@do_not_convert
def bounding_boxes(masks: tf.Tensor) -> tf.Tensor:
  """The filled bounding box of each mask (empty masks stay empty)."""
  masks = tf.convert_to_tensor(masks, tf.bool)

  def span(any_):  # [n, L] → True between the first and the last True
    seen = tf.cast(any_, tf.int32)
    return (tf.cumsum(seen, axis=1) > 0) & (tf.cumsum(seen, axis=1, reverse=True) > 0)
  rows = span(tf.reduce_any(masks, axis=2))
  cols = span(tf.reduce_any(masks, axis=1))
  return rows[:, :, None] & cols[:, None, :]


@do_not_convert
def coarsen(masks: tf.Tensor, factor: int) -> tf.Tensor:
  """Each mask at 1/`factor` resolution, then up-sampled nearest: a
  `factor`×`factor` block (grid from the top left) is in the mask iff at least
  half of its pixels inside the image are."""
  masks = tf.convert_to_tensor(masks, tf.bool)
  shape = tf.shape(masks)
  h, w = shape[1], shape[2]
  pad = [[0, 0], [0, (-h) % factor], [0, (-w) % factor]]
  inside = tf.pad(tf.ones_like(masks, tf.float32), pad)[..., None]
  values = tf.pad(tf.cast(masks, tf.float32), pad)[..., None]
  count = tf.nn.avg_pool2d(values, factor, factor, "VALID")
  total = tf.nn.avg_pool2d(inside, factor, factor, "VALID")
  blocks = (count[..., 0] >= 0.5 * total[..., 0]) & (count[..., 0] > 0)
  up = tf.repeat(tf.repeat(blocks, factor, axis=1), factor, axis=2)
  return up[:, :h, :w]


@do_not_convert
def half_plane_cuts(masks: tf.Tensor, angles: tf.Tensor) -> tf.Tensor:
  """Each mask without its pixels strictly beyond the line through its centroid
  perpendicular to direction `angles[i]` (radians; 0 = +column, π/2 = +row)."""
  masks = tf.convert_to_tensor(masks, tf.bool)
  shape = tf.shape(masks)
  rows = tf.cast(tf.range(shape[1]), tf.float32)[None, :, None]
  cols = tf.cast(tf.range(shape[2]), tf.float32)[None, None, :]
  weight = tf.cast(masks, tf.float32)
  count = tf.maximum(tf.reduce_sum(weight, axis=[1, 2]), 1.0)
  centre_row = (tf.reduce_sum(weight * rows, axis=[1, 2]) / count)[:, None, None]
  centre_col = (tf.reduce_sum(weight * cols, axis=[1, 2]) / count)[:, None, None]
  angles = tf.cast(angles, tf.float32)[:, None, None]
  beyond = (cols - centre_col) * tf.cos(angles) + (rows - centre_row) * tf.sin(angles)
  return masks & ~(beyond > 1e-4)


@do_not_convert
def set_object_masks(example: dict, old: tf.Tensor, new: tf.Tensor) -> dict:
  """Object k's pixels become `new[k-1]` (in `"label"` and `"instances"`).

  Pixels leaving object k become background (0); pixels joining it take its
  class, only where the label is background (never void or another object;
  a pixel several objects reach joins the lowest-numbered). `"objects"` is
  unchanged (an object eroded or cut away entirely keeps its class there).
  """
  label = tf.cast(example["label"], tf.int32)
  instances = tf.cast(example["instances"], tf.int32)
  objects = tf.cast(example["objects"], tf.int32)
  removed = tf.reduce_any(old & ~new, axis=0)
  background = (label == 0) & (instances == 0)
  added = new & ~old & background[None]
  joins = tf.reduce_any(added, axis=0)
  # The lowest object adding a pixel (a plane of ones after the objects: n may be 0).
  first = tf.argmax(tf.concat([tf.cast(added, tf.int32), tf.ones_like(label)[None]], 0),
                    axis=0, output_type=tf.int32)
  new_label = tf.where(joins, tf.gather(tf.concat([objects, [0]], 0), first),
                       tf.where(removed, 0, label))
  new_instances = tf.where(joins, first + 1, tf.where(removed, 0, instances))
  return {**example, "label": tf.cast(new_label, example["label"].dtype),
          "instances": tf.cast(new_instances, example["instances"].dtype)}


def _error_draws(example, seed, name, count):
  """Three independent uniforms per object: the decision (`name`), the size
  (`name/size`) and the kind (`name/kind`)."""
  return [_uniforms(seed, suffix, example["id"], count)
          for suffix in (name, f"{name}/size", f"{name}/kind")]


@do_not_convert
def boundary_noise(example: dict, rate: float, seed: int, k: int = 2) -> dict:
  """Imprecise boundaries: each object, w.p. `rate`, is eroded or dilated
  (1/2 each) by a uniformly random 1..`k` pixels (a square structuring
  element; `dilate`, `erode`)."""
  rate, k = _check_rate(rate), check_size("boundary_noise", k)
  _check_objects(example, "boundary_noise")
  masks = object_masks(example)
  n = tf.shape(masks)[0]
  u, u_size, u_kind = _error_draws(example, seed, "boundary_noise", n)
  radius = tf.where(u < rate, 1 + tf.minimum(tf.cast(u_size * k, tf.int32), k - 1), 0)
  grow = u_kind < 0.5
  void = tf.equal(tf.cast(example["label"], tf.int32), VOID)
  new = tf.where(grow[:, None, None], dilate(masks, tf.where(grow, radius, 0), k, void),
                 erode(masks, tf.where(grow, 0, radius), k))
  return set_object_masks(example, masks, new)


@do_not_convert
def over_segment(example: dict, rate: float, seed: int, k: int = 2) -> dict:
  """Over-segmentation: each object, w.p. `rate`, gains the `k`-pixel band of
  background around it (and around its void band; `dilate`)."""
  rate, k = _check_rate(rate), check_size("over_segment", k)
  _check_objects(example, "over_segment")
  masks = object_masks(example)
  u = _uniforms(seed, "over_segment", example["id"], tf.shape(masks)[0])
  void = tf.equal(tf.cast(example["label"], tf.int32), VOID)
  new = dilate(masks, tf.where(u < rate, k, 0), k, void)
  return set_object_masks(example, masks, new)


@do_not_convert
def under_segment(example: dict, rate: float, seed: int, size=None) -> dict:
  """Under-segmentation: each object, w.p. `rate`, loses the part beyond a
  line through its centroid at a uniformly random angle (about half of it;
  `half_plane_cuts`) to the background."""
  rate = _check_rate(rate)
  check_size("under_segment", size)
  _check_objects(example, "under_segment")
  masks = object_masks(example)
  u, u_angle, _ = _error_draws(example, seed, "under_segment", tf.shape(masks)[0])
  new = tf.where((u < rate)[:, None, None], half_plane_cuts(masks, 2 * np.pi * u_angle), masks)
  return set_object_masks(example, masks, new)


@do_not_convert
def coarse_outlines(example: dict, rate: float, seed: int, size="box") -> dict:
  """Coarse outlines: each object, w.p. `rate`, is replaced by its bounding box
  (`size="box"`, `bounding_boxes`) or by its mask at 1/`size` resolution
  (majority per `size`×`size` block, up-sampled nearest; `coarsen`)."""
  rate, size = _check_rate(rate), check_size("coarse_outlines", size)
  _check_objects(example, "coarse_outlines")
  masks = object_masks(example)
  u = _uniforms(seed, "coarse_outlines", example["id"], tf.shape(masks)[0])
  coarse = bounding_boxes(masks) if size == "box" else coarsen(masks, size)
  new = tf.where((u < rate)[:, None, None], coarse, masks)
  return set_object_masks(example, masks, new)


# ----------------------------------------------------------------------------
# Selection-biased unsegmentation (beyond the thesis): small, faint and
# border-cut objects are missed more often, at the same expected rate.
# ----------------------------------------------------------------------------

# Corruption name -> (feature, slope s of P_i = σ(b + s·z_i)).
SELECTION_BIASES = {"unsegment_small": ("log_area", -2.0),
                    "unsegment_faint": ("contrast", -2.0),
                    "unsegment_border": ("border", 2.0)}
FEATURES = ("log_area", "contrast", "border")
RING = 3  # width in pixels of the background ring of the contrast measure


def _sigmoid(x):
  """σ(x) = (1 + tanh(x/2)) / 2: exact at ±inf (NumPy or TF)."""
  if isinstance(x, tf.Tensor):
    return 0.5 * (1.0 + tf.tanh(0.5 * x))
  return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float64)))


def _masked_mean(values, masks):
  """Mean of `values` [H, W] over each mask of `masks` [n, H, W] (0 for an empty mask)."""
  weight = tf.cast(masks, tf.float32)
  count = tf.reduce_sum(weight, axis=[1, 2])
  return tf.math.divide_no_nan(tf.reduce_sum(weight * values[None], axis=[1, 2]), count), count


@do_not_convert
def object_feature(example: dict, feature: str) -> tf.Tensor:
  """float32 `[n]`: `feature` of each object of `example` (module docstring).

  "log_area": log max(area, 1), area = the object's non-void pixels;
  "contrast": |m_in - m_ring| / std(intensity), intensity = mean RGB / 255,
  m_ring over the background within `RING` pixels of the object beyond its
  void band (0 for an empty ring or a constant image); "border": 1.0 if a
  non-void pixel of the object is on the image border or next to padding
  (void outside every object), else 0.0.
  """
  if feature not in FEATURES:
    raise ValueError(f"Unknown object feature {feature!r}; choose one of {list(FEATURES)}.")
  _check_objects(example, f"object_feature({feature!r})")
  masks = object_masks(example)
  if feature == "log_area":
    area = tf.reduce_sum(tf.cast(masks, tf.float32), axis=[1, 2])
    return tf.math.log(tf.maximum(area, 1.0))
  label = tf.cast(example["label"], tf.int32)
  instances = tf.cast(example["instances"], tf.int32)
  if feature == "border":
    padding = (label == VOID) & (instances == 0)
    outside = tf.pad(padding, [[1, 1], [1, 1]], constant_values=True)
    near = _grow(outside[None])[0, 1:-1, 1:-1]
    return tf.cast(tf.reduce_any(masks & near[None], axis=[1, 2]), tf.float32)
  if "image" not in example:
    raise ValueError("object_feature('contrast') needs the example's 'image'.")
  intensity = tf.reduce_mean(tf.cast(example["image"], tf.float32), axis=-1) / 255.0
  n = tf.shape(masks)[0]
  background = (label == 0) & (instances == 0)
  ring = dilate(masks, tf.fill([n], RING), RING, tf.equal(label, VOID)) & background[None]
  inside, _ = _masked_mean(intensity, masks)
  around, ring_size = _masked_mean(intensity, ring)
  spread = tf.math.reduce_std(intensity)
  contrast = tf.math.divide_no_nan(tf.abs(inside - around), spread)
  return tf.where(ring_size > 0, contrast, 0.0)


# feature -> `object_feature` as a `tf.function`: traced once per process.
_FEATURE_GRAPHS: dict = {}


def dataset_features(ds: tf.data.Dataset, feature: str, batch_size: int = 256) -> np.ndarray:
  """float64 `[objects]`: `feature` of every object of `ds` (examples in order, objects
  in order; `object_feature`)."""
  if feature not in _FEATURE_GRAPHS:
    _FEATURE_GRAPHS[feature] = tf.function(lambda ex: object_feature(ex, feature),
                                           autograph=False)
  values = ds.map(_FEATURE_GRAPHS[feature], num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=True)
  values = values.padded_batch(batch_size, padding_values=np.float32(np.nan))
  parts = [v[~np.isnan(v)] for v in values.as_numpy_iterator()]
  return np.concatenate(parts).astype(np.float64) if parts else np.zeros([0], np.float64)


def solve_intercept(z, rate: float, slope: float) -> float:
  """The b with mean_i σ(b + slope·z_i) = rate (bisection; -inf for rate 0, +inf for 1).

  The mean is increasing in b, and the bracket logit(rate) ± |slope|·max|z| holds
  the root (at its ends every term is ≤ resp. ≥ rate).
  """
  rate = _check_rate(rate)
  z = np.asarray(z, np.float64)
  if z.size == 0:
    raise ValueError("solve_intercept needs at least one object's feature (got none): the "
                     "training split has no objects to calibrate on.")
  if rate in (0.0, 1.0):
    return -math.inf if rate == 0 else math.inf
  centre = math.log(rate / (1 - rate))
  reach = abs(float(slope)) * float(np.max(np.abs(z)))
  low, high = centre - reach, centre + reach
  for _ in range(200):
    mid = 0.5 * (low + high)
    if mid in (low, high):
      break
    if np.mean(_sigmoid(mid + slope * z)) < rate:
      low = mid
    else:
      high = mid
  return 0.5 * (low + high)


@dataclasses.dataclass(frozen=True)
class Calibration:
  """A calibrated selection-biased unsegmentation: P_i = σ(b + s·(x_i - mean) / std).

  Attributes:
    name: the corruption ("unsegment_small", ...; `SELECTION_BIASES`).
    rate: p, the expected fraction of unsegmented training objects.
    feature, slope: x and s (`SELECTION_BIASES[name]`).
    mean, std: of x over the training objects (std 1.0 where x is constant).
    intercept: b, solved so that the mean of P over the training objects is p.
    num_objects: the training objects calibrated on.
  """
  name: str
  rate: float
  feature: str
  slope: float
  mean: float
  std: float
  intercept: float
  num_objects: int

  def probabilities(self, features) -> np.ndarray:
    """P_i of objects with features x_i (NumPy, float64)."""
    z = (np.asarray(features, np.float64) - self.mean) / self.std
    return _sigmoid(self.intercept + self.slope * z)


def calibrate(name: str, features, rate: float) -> Calibration:
  """The `Calibration` of corruption `name` at rate `rate` over the training objects'
  features `features` (`dataset_features`)."""
  if name not in SELECTION_BIASES:
    raise ValueError(f"Unknown selection-biased corruption {name!r}; choose one of "
                     f"{sorted(SELECTION_BIASES)} (or unsegment_objects for objects "
                     "missed at random).")
  rate = _check_rate(rate)
  feature, slope = SELECTION_BIASES[name]
  x = np.asarray(features, np.float64).ravel()
  if x.size == 0 or not np.all(np.isfinite(x)):
    raise ValueError(f"{name}: calibration needs the finite {feature} of at least one "
                     f"training object, got {x.size} value(s); does the training split "
                     "hold objects?")
  mean, std = float(np.mean(x)), float(np.std(x))
  std = std if std > 0 else 1.0
  intercept = solve_intercept((x - mean) / std, rate, slope)
  return Calibration(name, rate, feature, slope, mean, std, intercept, int(x.size))


@do_not_convert
def selection_probabilities(example: dict, calibration: Calibration) -> tf.Tensor:
  """float64 `[n]`: each object's probability P_i of being unsegmented."""
  x = tf.cast(object_feature(example, calibration.feature), tf.float64)
  z = (x - calibration.mean) / calibration.std
  return _sigmoid(calibration.intercept + calibration.slope * z)


@do_not_convert
def unsegment_selected(example: dict, calibration: Calibration, seed: int) -> dict:
  """Selection-biased unsegmentation: object i becomes background iff u_i < P_i
  (`selection_probabilities`; u_i is `unsegment_objects`' draw of the same seed)."""
  if not isinstance(calibration, Calibration):
    raise TypeError(f"unsegment_selected takes a Calibration (noise.calibrate(name, "
                    f"features, rate)), got {calibration!r}.")
  _check_objects(example, calibration.name)
  objects = tf.cast(example["objects"], tf.int32)
  u = _uniforms(seed, "unsegment_objects", example["id"], tf.shape(objects)[0])
  chosen = tf.cast(u, tf.float64) < selection_probabilities(example, calibration)
  return set_object_classes(example, tf.where(chosen, 0, objects))


def traced_selected(calibration: Calibration, seed: int) -> Callable[[dict], dict]:
  """`example -> unsegment_selected(example, calibration, seed)`, traced once per process
  and corruption (as `traced`): the calibration's mean, std, intercept and slope are
  float64 tensor arguments and the seed an int64 one, so another rate or training split
  reuses the graph. The values are `unsegment_selected`'s."""
  if not isinstance(calibration, Calibration):
    raise TypeError(f"traced_selected takes a Calibration (noise.calibrate(name, features, "
                    f"rate)), got {calibration!r}.")
  key = (calibration.name, calibration.feature)
  if key not in _TRACED:
    def graph(example, seed, mean, std, intercept, slope):
      numbers = dict(mean=mean, std=std, intercept=intercept, slope=slope)
      return unsegment_selected(example, dataclasses.replace(calibration, **numbers), seed)
    _TRACED[key] = tf.function(graph, autograph=False)
  numbers = [tf.constant(float(v), tf.float64) for v in
             (calibration.mean, calibration.std, calibration.intercept, calibration.slope)]
  seed = tf.constant(int(seed), tf.int64)
  return do_not_convert(lambda example: _TRACED[key](example, seed, *numbers))


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


@do_not_convert
def relabel(example: dict, mapping, keys=("label", "true_label", "objects")) -> dict:
  """Maps class ids through `mapping` (a dict, or a `lookup_table` as an array or an int32
  tensor) in `keys`."""
  if isinstance(mapping, tf.Tensor):
    table = mapping
  else:
    table = tf.constant(mapping if isinstance(mapping, np.ndarray) else lookup_table(mapping))
  out = dict(example)
  for key in keys:
    if key in example:
      value = example[key]
      out[key] = tf.cast(tf.gather(table, tf.cast(value, tf.int32)), value.dtype)
  return out


@do_not_convert
def binarize(example: dict) -> dict:
  """Every object class → 1 (foreground); background and void unchanged."""
  return relabel(example, {c: 1 for c in range(1, VOID)})


@do_not_convert
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

  @do_not_convert
  def has_fold_object(example):
    objects = tf.cast(example["objects"], tf.int32)
    return tf.reduce_any(tf.equal(objects[:, None], held_out[None, :]))

  if phase == "pretrain":
    if handling == "background":
      return do_not_convert(lambda example: tf.constant(True))
    return do_not_convert(lambda example: tf.logical_not(has_fold_object(example)))
  if phase == "finetune":
    return has_fold_object
  raise ValueError(f"phase must be 'pretrain' or 'finetune', got {phase!r}.")
