"""Class tables: VOC classes, the thesis' folds and super-categories.

Class ids follow PASCAL VOC: 0 = background, 1..20 = object classes, 255 =
void. The embedded synthetic dataset mirrors VOC id for id: synthetic class k
sits in the same fold and the same super-category as VOC class k, so every
table below serves both datasets and an experiment is the same code on either.

- Folds (thesis §5.3.1): fold i (1-based) holds VOC ids 5(i-1)+1 .. 5i,
  e.g. fold 1 = aeroplane, bicycle, bird, boat, bottle.
- Meaningful super-categories (§5.3.3, "according to [10]", the VOC
  development kit): person, animal, vehicle, indoor.
- Table 5's only target class is "dog" (id 12). Dog is a fold-3 class, so on
  fold 3 it cannot be a pre-training target; `false_positive_target` then
  uses "cat" (id 8), the other household animal (the thesis does not say).

Synthetic categories are (shape, texture) pairs. Super-categories share a
shape family (person: the figure; animal: round shapes; vehicle: convex
polygons; indoor: shapes with holes or spikes). Every texture appears exactly
once per fold, and the two categories of a shape sit in different folds, so a
fold's shapes and textures are also seen in pre-training on the other 15.
"""

from __future__ import annotations

import numpy as np

BACKGROUND = 0
VOID = 255
NUM_CLASSES = 20  # object classes, without background

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor")

SUPERCATEGORIES = ("person", "animal", "vehicle", "indoor")
_VOC_SUPER = {
    "person": ("person",),
    "animal": ("bird", "cat", "cow", "dog", "horse", "sheep"),
    "vehicle": ("aeroplane", "bicycle", "boat", "bus", "car", "motorbike", "train"),
    "indoor": ("bottle", "chair", "diningtable", "pottedplant", "sofa", "tvmonitor"),
}
# class id -> super-category id (1 person, 2 animal, 3 vehicle, 4 indoor).
SUPERCATEGORY_OF = {VOC_CLASSES.index(c) + 1: SUPERCATEGORIES.index(s) + 1
                    for s, members in _VOC_SUPER.items() for c in members}

FOLDS = tuple(tuple(range(5 * i + 1, 5 * i + 6)) for i in range(4))

SYNTHETIC_SHAPES = ("figure", "circle", "ellipse", "crescent", "square", "triangle", "diamond",
                    "hexagon", "cross", "star", "frame")
SYNTHETIC_TEXTURES = ("stripes", "dots", "solid", "checker", "twotone")
SYNTHETIC_SUPERCATEGORIES = ("figure", "round", "polygon", "holed_or_spiked")
# (name, shape, texture) for ids 1..20, mirroring VOC ids (comments).
SYNTHETIC_CATEGORIES = (
    ("striped_square", "square", "stripes"),        # 1 aeroplane
    ("dotted_triangle", "triangle", "dots"),        # 2 bicycle
    ("solid_circle", "circle", "solid"),            # 3 bird
    ("checkered_diamond", "diamond", "checker"),    # 4 boat
    ("twotone_cross", "cross", "twotone"),         # 5 bottle
    ("dotted_square", "square", "dots"),            # 6 bus
    ("striped_hexagon", "hexagon", "stripes"),      # 7 car
    ("checkered_ellipse", "ellipse", "checker"),    # 8 cat
    ("solid_star", "star", "solid"),                # 9 chair
    ("twotone_crescent", "crescent", "twotone"),   # 10 cow
    ("striped_frame", "frame", "stripes"),          # 11 diningtable
    ("checkered_circle", "circle", "checker"),      # 12 dog
    ("twotone_ellipse", "ellipse", "twotone"),     # 13 horse
    ("solid_triangle", "triangle", "solid"),        # 14 motorbike
    ("dotted_figure", "figure", "dots"),            # 15 person
    ("solid_cross", "cross", "solid"),              # 16 pottedplant
    ("dotted_crescent", "crescent", "dots"),        # 17 sheep
    ("checkered_star", "star", "checker"),          # 18 sofa
    ("striped_diamond", "diamond", "stripes"),      # 19 train
    ("twotone_frame", "frame", "twotone"),         # 20 tvmonitor
)
SYNTHETIC_CLASSES = tuple(c[0] for c in SYNTHETIC_CATEGORIES)

TARGET_CLASS = VOC_CLASSES.index("dog") + 1  # Table 5
_FALLBACK_TARGET = VOC_CLASSES.index("cat") + 1

CLASS_NAMES = {"voc": VOC_CLASSES, "synthetic": SYNTHETIC_CLASSES}


def class_names(dataset: str) -> tuple[str, ...]:
  """The 20 object-class names of `dataset` ("voc" or "synthetic"), id order."""
  if dataset not in CLASS_NAMES:
    raise ValueError(f"No segmentation class table for dataset {dataset!r}; "
                     f"choose one of {sorted(CLASS_NAMES)}.")
  return CLASS_NAMES[dataset]


def _check_fold(fold: int) -> None:
  if isinstance(fold, bool) or fold not in (1, 2, 3, 4):
    raise ValueError(f"fold must be 1, 2, 3 or 4 (the thesis' four folds, §5.3.1), got {fold!r}.")


def fold_classes(fold: int) -> tuple[int, ...]:
  """The 5 class ids of `fold` (1..4): the fine-tuning classes."""
  _check_fold(fold)
  return FOLDS[fold - 1]


def pretrain_classes(fold: int) -> tuple[int, ...]:
  """The 15 class ids outside `fold`: the pre-training classes."""
  held_out = set(fold_classes(fold))
  return tuple(c for c in range(1, NUM_CLASSES + 1) if c not in held_out)


def false_positive_target(fold: int | None = None) -> int:
  """Table 5's target class id: dog, or cat on fold 3 (where dog is held out)."""
  if fold is not None and TARGET_CLASS in fold_classes(fold):
    return _FALLBACK_TARGET
  return TARGET_CLASS


def supercategory_grouping(class_ids) -> dict[int, int]:
  """Maps each class id to its meaningful super-category, numbered 1..k.

  Only super-categories present in `class_ids` get a number (in the order
  person, animal, vehicle, indoor), e.g. fold 3's pre-training classes have
  no person, so they map to 1 animal, 2 vehicle, 3 indoor.
  """
  present = sorted({SUPERCATEGORY_OF[c] for c in class_ids})
  number = {s: i + 1 for i, s in enumerate(present)}
  return {c: number[SUPERCATEGORY_OF[c]] for c in class_ids}


def random_grouping(class_ids, k: int, seed: int) -> dict[int, int]:
  """A seeded random partition of `class_ids` into `k` groups of equal size ±1.

  Fig. 7's random categorisations (k = 4, 7, 11 of the 15 pre-training
  classes). Groups are numbered 1..k; every group is non-empty.
  """
  class_ids = sorted(class_ids)
  if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(class_ids):
    raise ValueError(f"k must be an int in [1, {len(class_ids)}] (number of groups of "
                     f"{len(class_ids)} classes), got {k!r}.")
  order = np.random.default_rng(seed).permutation(len(class_ids))
  return {class_ids[j]: 1 + i % k for i, j in enumerate(order)}
