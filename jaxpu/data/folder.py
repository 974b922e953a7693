"""Your own segmentation data: a folder of images and label PNGs as a TFDS builder.

`JaxpuFolder` (TFDS name `jaxpu_folder`) builds a dataset from a folder laid
out as below, once, into the TFDS data dir; later uses read the cache.
Nothing is downloaded.

    DIR/images/NAME.{jpg,jpeg,png}   the image (any size; any 8-bit PIL mode)
    DIR/labels/NAME.png              class index per pixel: 0 background,
                                     1..K-1 the classes, 255 void (ignored)
    DIR/instances/NAME.png           optional, per image: object id per pixel
                                     (0 none, 1..254 objects, 255 void)
    DIR/classes.txt                  optional: one class name per line,
                                     line 0 is the background
    DIR/splits/{train,val,test}.txt  optional: the NAMEs of each split

Images. Decoded with PIL (EXIF orientation is not applied: the labels must
match the pixels as stored), grey and palette images converted to RGB, an
alpha channel dropped (not composited); stored losslessly as PNG at their own
size. 16-bit and float images are refused (convert them to 8 bits).

Labels and instance maps are 8-bit grey (mode L) or palette (mode P) PNGs:
a palette PNG's pixel value is its palette INDEX (as VOC's
SegmentationClass files), never its colour; RGB colour labels are refused.
Labels must have their image's size; values are classes 0..K-1 (K lines of
`classes.txt`) or 255. Without `classes.txt` the classes are 1..m, m the
largest value found in any label, named "class_1" .. "class_m".

Objects (what `jaxpu.data.noise`'s corruptions act on: `instances`,
`objects`). With `instances/NAME.png`, each id with a non-void pixel is an
object; every pixel labelled with a class (1..K-1) must lie in an object, and
an object's non-void pixels must all carry one class (not background): its
class. Ids are renumbered 1..n in increasing order; pixels of ids lying only
on void pixels become 255. Without an instance map, the objects are the
connected components of each class's pixels, with 8-connectivity (pixels
touching at an edge or a corner join; `connectivity=4`: edges only) — void
pixels separate components, and touching objects of one class merge into
one. Components are numbered 1..n in raster order of their first pixel; the
instance mask is 255 where the label is void. An image holds at most 254
objects (8-bit instance masks).

Splits `train`, `val`, `test`. With a `splits/` folder: the split files it
holds, each NAME in exactly one of them, every image in one. Without it: a
seeded split by a hash of the NAME: u = first 8 bytes of
SHA-256("jaxpu_folder_split:{split_seed}:{NAME}") / 2**64, train if u < 0.8,
val if u < 0.9, else test (`split_fractions`, default 0.8/0.1/0.1;
`split_seed`, default 0). Each image's split depends on its NAME only, so
adding images never moves the others. A split with fraction 0 is absent; any
other split must not be empty.

Features: `id` (int64, stable: the first 8 bytes of SHA-256("jaxpu_folder:"
+ NAME), shifted right by one bit to be non-negative; independent of the
split, the seed and the folder; collisions are refused), `name` (NAME),
`image` (uint8 [H, W, 3]), `class_mask` and `instance_mask` (uint8
[H, W, 1]), `object_classes` (int64 [n], class of object k at index k-1) —
the features of the synthetic and VOC builders. The TFDS example key is the
NAME, so the stored order depends only on the NAMEs.

Image sizes: examples are stored at their own size, like VOC's. A batch
needs one size, so the pipeline resizes and pads them like VOC's
(`pipeline.resize_and_pad`: down-sample by an integer factor, then pad at the
bottom/right to `image_size` with the mean colour, labels with void):
`FolderSummary.max_side` is the largest side over every split, and
`default_image_size(summary, downsample)` the smallest multiple of 8 that
holds every image after down-sampling (nothing is cropped). `FolderSummary`
also holds the per-channel `mean`/`std` (RGB in [0, 1]) of the training
split's pixels.

Validation is eager: before anything is built, every file is read and
checked, and one `FolderDataError` lists every problem (the first
`MAX_LISTED` in its message, all in `.problems`), each naming the file and the
fix: a label without an image or the reverse, an instance map without a
label, unreadable or empty files, sizes that differ, label values outside
`classes.txt`'s range, colour labels, inconsistent instance maps, duplicate
NAMEs (two image extensions), unknown or missing split entries, empty splits.
Hidden files (names starting with ".") are ignored; any other unexpected file
in images/, labels/, instances/ or splits/ is an error. Files elsewhere in
DIR are ignored.

Cache key. The builder config is named `{slug}-{digest}`: `slug` the folder's
base name (lower case, [a-z0-9_], at most 32 characters) and `digest` the
first 16 hex digits of a SHA-256 over the folder's real path (symbolic links
resolved), the options that change the data (connectivity; split seed and
fractions where no `splits/` folder exists) and, for every non-hidden entry
of images/, labels/, instances/, splits/ and classes.txt, its relative path,
size and modification time (ns), and a format version. It costs one `stat`
per file, on every load. Two folders, or a folder after any file was
added, removed, rewritten or touched, get different configs and so different
caches under `<data_dir>/jaxpu_folder/`; an edit that keeps both a file's size
and its modification time is not seen (write files normally and it cannot
happen). Old caches stay on disk: delete `<data_dir>/jaxpu_folder/{slug}-*`
to reclaim the space. `folder_summary.json` in the config's folder holds the
`FolderSummary`. Hosts sharing a data dir must see the folder at the same
path (else each builds its own copy).

API: `segmentation_examples(split, directory=..., data_dir=None, shard=(0, 1))`
(the loader shape of `synthetic` and `voc`), `summary(directory, data_dir)`
(a `FolderSummary`: class names, split sizes, mean/std, largest side),
`class_names(directory, data_dir)`, `default_image_size(summary,
downsample)`, `load` / `load_with_summary` (the prepared builder), and
`scan_folder(directory)` to validate a folder without building it. Options
of all of them: `split_seed`, `split_fractions`, `connectivity`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import re
from typing import Sequence

import numpy as np

from jaxpu.data._tf import tf  # hides the GPUs from TensorFlow before any TF work
import tensorflow_datasets as tfds

from jaxpu import fileio
from jaxpu.data import classes
from jaxpu.data import synthetic

SPLITS = ("train", "val", "test")
DEFAULT_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
MAX_OBJECTS = 254
MAX_LISTED = 10
SUMMARY_FILE = "folder_summary.json"
_FORMAT = "jaxpu_folder/1"  # part of the cache key: change it when the stored data changes
_LABEL_MODES = ("L", "P")
_BAD_IMAGE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


class FolderDataError(ValueError):
  """A segmentation folder with problems; `.problems` lists every one of them."""

  def __init__(self, directory: str, problems: Sequence[str]):
    self.directory = directory
    self.problems = list(problems)
    listed = "\n".join(f"  - {p}" for p in self.problems[:MAX_LISTED])
    more = len(self.problems) - MAX_LISTED
    tail = f"\n  ... and {more} more (all of them in FolderDataError.problems)." if more > 0 else ""
    super().__init__(
        f"The segmentation folder {directory} has {len(self.problems)} problem(s); nothing was "
        f"built. Fix them and rerun:\n{listed}{tail}")


class _Problem(Exception):
  """One problem of one file (collected into a FolderDataError)."""


# ----------------------------------------------------------------------------
# Names, ids and splits.
# ----------------------------------------------------------------------------


def _hash64(text: str) -> int:
  return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def example_id(name: str) -> int:
  """The stable int64 id of image NAME (module docstring): non-negative, < 2**63."""
  return _hash64("jaxpu_folder:" + name) >> 1


def check_split_fractions(split_fractions) -> tuple[float, float, float]:
  """(train, val, test) fractions: three numbers in [0, 1] summing to 1."""
  try:
    values = tuple(float(f) for f in split_fractions)
  except (TypeError, ValueError):
    values = ()
  if (len(values) != 3 or any(not 0 <= f <= 1 for f in values)
      or abs(sum(values) - 1) > 1e-9 or values[0] == 0):
    raise ValueError(f"split_fractions must be three fractions (train, val, test) in [0, 1] "
                     f"summing to 1, train > 0, e.g. {DEFAULT_SPLIT_FRACTIONS}; got "
                     f"{split_fractions!r}.")
  return values


def seeded_split(name: str, split_fractions=DEFAULT_SPLIT_FRACTIONS, split_seed: int = 0) -> str:
  """The split of NAME without a splits/ folder (module docstring)."""
  fractions = check_split_fractions(split_fractions)
  u = _hash64(f"jaxpu_folder_split:{int(split_seed)}:{name}") / 2.0 ** 64
  if u < fractions[0]:
    return "train"
  if u < fractions[0] + fractions[1] or fractions[2] == 0:
    return "val"
  return "test"


def _check_connectivity(connectivity) -> int:
  if isinstance(connectivity, bool) or connectivity not in (4, 8):
    raise ValueError(f"connectivity must be 4 or 8 (which pixels join a connected component: "
                     f"edge neighbours, or edge and corner neighbours), got {connectivity!r}.")
  return int(connectivity)


# ----------------------------------------------------------------------------
# Listing and the cache key.
# ----------------------------------------------------------------------------


def _visible(folder: str) -> list[os.DirEntry]:
  """Non-hidden entries of `folder`, sorted by name ([] if it does not exist)."""
  if not os.path.isdir(folder):
    return []
  with os.scandir(folder) as it:
    return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)


def _check_directory(directory) -> str:
  if not isinstance(directory, (str, os.PathLike)) or not os.fspath(directory):
    raise ValueError(f"directory must be the path of a segmentation folder, got {directory!r}.")
  path = os.path.realpath(os.path.expanduser(os.fspath(directory)))
  if not os.path.isdir(path):
    raise FileNotFoundError(f"The segmentation folder {directory} does not exist (or is not a "
                            "folder); it must hold images/ and labels/ (see jaxpu.data.folder).")
  return path


def _uses_split_files(directory: str) -> bool:
  return os.path.isdir(os.path.join(directory, "splits"))


def fingerprint(directory: str, *, split_seed: int = 0,
                split_fractions=DEFAULT_SPLIT_FRACTIONS, connectivity: int = 8) -> str:
  """The cache key's digest of a folder (module docstring): 16 hex digits."""
  directory = _check_directory(directory)
  digest = hashlib.sha256()
  options = {"format": _FORMAT, "directory": directory,
             "connectivity": _check_connectivity(connectivity)}
  if not _uses_split_files(directory):
    options.update(split_seed=int(split_seed),
                   split_fractions=check_split_fractions(split_fractions))
  digest.update(json.dumps(options, sort_keys=True).encode())
  paths = [os.path.join(directory, "classes.txt")]
  for sub in ("images", "labels", "instances", "splits"):
    folder = os.path.join(directory, sub)
    # A folder's own size and time change with hidden files: only its existence counts.
    digest.update(json.dumps([sub, os.path.isdir(folder)]).encode() + b"\n")
    paths.extend(e.path for e in _visible(folder))
  for path in paths:
    try:
      stat = os.stat(path)
      entry = [os.path.relpath(path, directory), os.path.isdir(path), stat.st_size,
               stat.st_mtime_ns]
    except OSError:
      entry = [os.path.relpath(path, directory), None]
    digest.update(json.dumps(entry).encode() + b"\n")
  return digest.hexdigest()[:16]


def config_name(directory: str, digest: str) -> str:
  """`{slug}-{digest}`: the builder config (and cache folder) of a folder."""
  slug = re.sub(r"[^a-z0-9_]+", "_", os.path.basename(os.path.normpath(directory)).lower())
  slug = slug.strip("_")[:32] or "folder"
  return f"{slug}-{digest}"


# ----------------------------------------------------------------------------
# Reading one example.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Entry:
  """The files of one NAME (`instances` None without an instance map)."""
  name: str
  image: str
  label: str
  instances: str | None


def _open(path: str, what: str):
  """The loaded PIL image at `path`; _Problem if empty or unreadable."""
  import PIL.Image
  try:
    size = os.path.getsize(path)
  except OSError as e:
    raise _Problem(f"{path}: cannot read the {what} ({e.strerror}); check the file's "
                   "permissions.") from None
  if size == 0:
    raise _Problem(f"{path}: empty file (0 bytes); replace it with a valid {what} or remove "
                   "it (and its matching files).")
  try:
    image = PIL.Image.open(path)
    image.load()
  except (OSError, SyntaxError, ValueError, PIL.Image.DecompressionBombError) as e:
    raise _Problem(f"{path}: unreadable {what} ({type(e).__name__}: {e}); replace it with a "
                   "valid file (a truncated download or copy is the usual cause).") from None
  return image


def read_image(path: str) -> np.ndarray:
  """uint8 [H, W, 3] RGB pixels of an image file (module docstring)."""
  image = _open(path, "image")
  if image.mode in _BAD_IMAGE_MODES:
    raise _Problem(f"{path}: {image.mode} image (16-bit or float pixels); save it as an 8-bit "
                   "RGB or grey image.")
  if image.mode in ("P", "PA") and "transparency" in image.info:
    image = image.convert("RGBA")
  if image.mode != "RGB":
    image = image.convert("RGB")
  array = np.asarray(image, np.uint8)
  if array.ndim != 3 or array.shape[2] != 3 or array.size == 0:
    raise _Problem(f"{path}: could not be read as an RGB image (shape {array.shape}).")
  return array


def read_index_png(path: str, what: str) -> np.ndarray:
  """uint8 [H, W] indices of an 8-bit grey or palette PNG (palette: the index)."""
  image = _open(path, what)
  if image.format != "PNG":
    raise _Problem(f"{path}: a {image.format} file, not a PNG; save the {what} as an 8-bit "
                   "grey or palette PNG (lossless).")
  if image.mode not in _LABEL_MODES:
    if image.mode in ("RGB", "RGBA"):
      fix = ("it holds colours: map each colour to its index and save an 8-bit grey PNG, or a "
             "palette PNG whose indices are the values")
    else:
      fix = "save it as an 8-bit grey (L) or palette (P) PNG of indices"
    raise _Problem(f"{path}: {what} PNG of mode {image.mode}; {fix}.")
  return np.asarray(image, np.uint8)  # mode P: the palette indices, not the colours


def _first_pixel(mask: np.ndarray) -> str:
  r, c = np.argwhere(mask)[0]
  return f"row {r}, column {c}"


def components(class_mask: np.ndarray, connectivity: int = 8) -> tuple[np.ndarray, np.ndarray]:
  """(instance mask, object classes) of the connected components of each class.

  Objects are numbered 1..n in raster order of their first pixel; the
  instance mask is 0 on background, 255 on void. May return more than 254
  objects (the caller refuses them).
  """
  import scipy.ndimage
  structure = scipy.ndimage.generate_binary_structure(2, 2 if connectivity == 8 else 1)
  raw = np.zeros(class_mask.shape, np.int64)
  raw_classes = [0]
  for c in np.unique(class_mask):
    if c == 0 or c == classes.VOID:
      continue
    labelled, count = scipy.ndimage.label(class_mask == c, structure)
    raw = np.where(labelled > 0, labelled + len(raw_classes) - 1, raw)
    raw_classes.extend([int(c)] * count)
  ids, first = np.unique(raw.ravel(), return_index=True)
  order = ids[ids > 0][np.argsort(first[ids > 0], kind="stable")]
  renumber = np.zeros(len(raw_classes), np.int64)
  renumber[order] = np.arange(1, len(order) + 1)
  instances = renumber[raw]
  instances[class_mask == classes.VOID] = classes.VOID
  objects = np.asarray(raw_classes, np.int64)[order]
  return instances, objects


def _objects_from_map(entry: Entry, class_mask: np.ndarray, raw: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
  """(instance mask, object classes) from an instance map, checked (module docstring)."""
  if raw.shape != class_mask.shape:
    raise _Problem(f"{entry.instances}: instance map of size {raw.shape[1]}x{raw.shape[0]} "
                   f"(width x height) but its label {entry.label} is "
                   f"{class_mask.shape[1]}x{class_mask.shape[0]}; they must be the same size.")
  void = class_mask == classes.VOID
  outside = ~void & (class_mask != 0) & ((raw == 0) | (raw == classes.VOID))
  if outside.any():
    raise _Problem(f"{entry.instances}: {int(outside.sum())} pixel(s) labelled with a class in "
                   f"{entry.label} lie in no object (instance 0 or 255; first at "
                   f"{_first_pixel(outside)}); give every labelled pixel an object id 1..254, "
                   "or remove the instance map to use connected components.")
  ids = [int(k) for k in np.unique(raw[~void]) if 0 < k < classes.VOID]
  objects = []
  for k in ids:
    values = np.unique(class_mask[(raw == k) & ~void])
    if len(values) != 1 or values[0] == 0:
      raise _Problem(f"{entry.instances}: object {k} covers pixels of classes "
                     f"{[int(v) for v in values]} in {entry.label} (0 = background); an "
                     "object's non-void pixels must all have its one class.")
    objects.append(int(values[0]))
  renumber = np.full(256, classes.VOID, np.int64)  # ids on void pixels only → void
  renumber[0] = 0
  renumber[ids] = np.arange(1, len(ids) + 1)
  return renumber[raw], np.asarray(objects, np.int64)


def read_example(entry: Entry, num_classes: int | None = None, connectivity: int = 8) -> dict:
  """The checked arrays of one example: image, class_mask, instance_mask, object_classes.

  `num_classes`: K (background included) to check the label values against,
  None to accept every value. Raises `_Problem` (one message naming the file).
  """
  image = read_image(entry.image)
  class_mask = read_index_png(entry.label, "label")
  if class_mask.shape != image.shape[:2]:
    raise _Problem(f"{entry.label}: label of size {class_mask.shape[1]}x{class_mask.shape[0]} "
                   f"(width x height) but its image {entry.image} is {image.shape[1]}x"
                   f"{image.shape[0]}; a label must have its image's size.")
  if num_classes is not None:
    bad = (class_mask >= num_classes) & (class_mask != classes.VOID)
    if bad.any():
      values = sorted(int(v) for v in np.unique(class_mask[bad]))
      raise _Problem(f"{entry.label}: label value(s) {values} (first at {_first_pixel(bad)}) but "
                     f"classes.txt names {num_classes} classes (values 0..{num_classes - 1}, "
                     "255 void); add the missing class names to classes.txt or fix the label.")
  if entry.instances is not None:
    raw = read_index_png(entry.instances, "instance map")
    instances, objects = _objects_from_map(entry, class_mask, raw)
  else:
    instances, objects = components(class_mask, connectivity)
    if len(objects) > MAX_OBJECTS:
      raise _Problem(f"{entry.label}: {len(objects)} connected components (objects; at most "
                     f"{MAX_OBJECTS} per image); add instances/{entry.name}.png with object ids, "
                     "or remove the specks of label noise.")
  return {"image": image, "class_mask": class_mask, "instance_mask": instances.astype(np.uint8),
          "object_classes": objects}


def _check_example(entry: Entry, num_classes, connectivity) -> dict:
  """What validation keeps of one example: problem or stats."""
  try:
    example = read_example(entry, num_classes, connectivity)
  except _Problem as e:
    return {"problem": str(e)}
  image = example["image"].reshape(-1, 3)
  values = np.unique(example["class_mask"])
  return {"problem": None, "height": example["image"].shape[0],
          "width": example["image"].shape[1], "pixels": image.shape[0],
          "sum": image.sum(0, dtype=np.float64),
          "sum_squares": np.einsum("ij,ij->j", image.astype(np.float64), image),
          "values": [int(v) for v in values], "objects": len(example["object_classes"])}


# ----------------------------------------------------------------------------
# Scanning a folder.
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class FolderSummary:
  """What a built folder dataset holds (`summary()`; saved as `folder_summary.json`).

  `class_names` are the object classes 1..K-1 (background excluded, as
  `classes.class_names`); `all_class_names` has the background first. `mean`
  and `std` are per RGB channel, in [0, 1] units, over every pixel of the
  training split. `max_side` = max(`max_height`, `max_width`) over all splits.
  """
  directory: str
  config_name: str
  fingerprint: str
  all_class_names: tuple[str, ...]
  num_examples: dict[str, int]
  num_objects: dict[str, int]
  mean: tuple[float, float, float]
  std: tuple[float, float, float]
  max_height: int
  max_width: int
  split_source: str  # "files" (splits/) or "seeded"
  split_seed: int
  split_fractions: tuple[float, float, float]
  connectivity: int

  @property
  def class_names(self) -> tuple[str, ...]:
    return tuple(self.all_class_names[1:])

  @property
  def num_classes(self) -> int:
    """K: label values 0..K-1 (background included)."""
    return len(self.all_class_names)

  @property
  def splits(self) -> tuple[str, ...]:
    return tuple(s for s in SPLITS if s in self.num_examples)

  @property
  def max_side(self) -> int:
    return max(self.max_height, self.max_width)

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, values: dict) -> "FolderSummary":
    values = dict(values)
    for key in ("all_class_names", "mean", "std", "split_fractions"):
      values[key] = tuple(values[key])
    return cls(**values)


@dataclasses.dataclass
class FolderScan:
  """A validated folder: its summary, files and splits (`scan_folder`)."""
  summary: FolderSummary
  entries: dict[str, Entry]
  splits: dict[str, tuple[str, ...]]


def default_image_size(summary: FolderSummary, downsample: int = 1) -> int:
  """The smallest multiple of 8 holding every image after ×`downsample`
  (`resize_and_pad`'s output side: ceil(side / downsample))."""
  side = -(-summary.max_side // int(downsample))
  return 8 * -(-side // 8)


def _list_files(folder: str, what: str, extensions: Sequence[str], problems: list,
                required: bool) -> dict[str, list[str]]:
  """NAME → paths of the files of `folder` (problems for unexpected entries)."""
  if not os.path.isdir(folder):
    if required:
      problems.append(f"{folder}: missing folder; put the {what}s there as "
                      f"{os.path.basename(folder)}/NAME{{{','.join(extensions)}}}.")
    return {}
  found = {}
  for entry in _visible(folder):
    stem, ext = os.path.splitext(entry.name)
    if entry.is_dir():
      problems.append(f"{entry.path}: a folder inside {folder}; it must hold only {what} files "
                      "NAME" + "/".join(extensions) + " (move the folder out).")
    elif ext.lower() not in extensions or not stem:
      problems.append(f"{entry.path}: not a {what} file (expected NAME"
                      + " or NAME".join(extensions) + "); convert, rename or remove it.")
    else:
      found.setdefault(stem, []).append(entry.path)
  for stem, paths in found.items():
    if len(paths) > 1:
      problems.append(f"{paths[0]}: the NAME {stem!r} has {len(paths)} {what} files "
                      f"({', '.join(os.path.basename(p) for p in paths)}); keep one of them.")
  return {stem: paths[0] for stem, paths in found.items()}


def _read_class_names(directory: str, problems: list) -> tuple[str, ...] | None:
  path = os.path.join(directory, "classes.txt")
  if not os.path.exists(path):
    return None
  try:
    with open(path, encoding="utf-8") as f:
      lines = [line.strip() for line in f.read().splitlines()]
  except (OSError, UnicodeDecodeError) as e:
    problems.append(f"{path}: unreadable ({e}); write one UTF-8 class name per line.")
    return None
  while lines and not lines[-1]:
    lines.pop()
  found = len(problems)
  if len(lines) < 2:
    problems.append(f"{path}: {len(lines)} line(s); it needs the background on line 0 and at "
                    "least one class after it (one name per line).")
  if len(lines) > classes.VOID:
    problems.append(f"{path}: {len(lines)} classes; at most {classes.VOID} (values 0..254, "
                    "255 is void).")
  for number, line in enumerate(lines):
    if not line:
      problems.append(f"{path}: line {number + 1} is empty; write one class name per line "
                      "(line 1 is the background).")
  duplicates = sorted({n for n in lines if n and lines.count(n) > 1})
  if duplicates:
    problems.append(f"{path}: duplicate class name(s) {duplicates}; class names must differ.")
  return tuple(lines) if len(problems) == found else None


def _read_splits(directory: str, names: Sequence[str], problems: list,
                 unpaired: frozenset = frozenset()) -> dict[str, list[str]]:
  """split → NAMEs from splits/*.txt (problems for every inconsistency).

  `unpaired`: NAMEs with an image or a label but not both (reported elsewhere).
  """
  folder = os.path.join(directory, "splits")
  splits, where = {}, {}
  known = set(names)
  for entry in _visible(folder):
    split, ext = os.path.splitext(entry.name)
    if entry.is_dir() or ext != ".txt" or split not in SPLITS:
      problems.append(f"{entry.path}: unexpected; splits/ holds only "
                      f"{', '.join(s + '.txt' for s in SPLITS)} (rename or remove it).")
      continue
    try:
      with open(entry.path, encoding="utf-8") as f:
        lines = [line.strip() for line in f.read().splitlines()]
    except (OSError, UnicodeDecodeError) as e:
      problems.append(f"{entry.path}: unreadable ({e}); write one image NAME per line.")
      continue
    listed = []
    for number, line in enumerate(lines, start=1):
      if not line or line in unpaired:
        continue
      if line not in known:
        stem = os.path.splitext(line)[0]
        hint = (f" (write the NAME {stem!r}, without the extension)" if stem in known else
                f" (no images/{line}.jpg, .jpeg or .png)")
        problems.append(f"{entry.path}: line {number}: {line!r} is not an image NAME{hint}.")
      elif line in where:
        problems.append(f"{entry.path}: line {number}: {line!r} is already listed in "
                        f"{where[line]}; list each NAME once, in one split.")
      else:
        where[line] = f"{entry.path} line {number}"
        listed.append(line)
    splits[split] = listed
  if not splits and not any(p.startswith(folder) for p in problems):
    problems.append(f"{folder}: holds no split file; write "
                    f"{', '.join(s + '.txt' for s in SPLITS)} (one NAME per line) or remove the "
                    "folder to split by a hash of the NAMEs.")
  if splits and "train" not in splits:
    problems.append(f"{os.path.join(folder, 'train.txt')}: missing; the training split is "
                    "needed (its images give the normalisation mean/std): list its NAMEs there.")
  missing = [n for n in names if n not in where]
  if splits and missing:
    problems.append(f"{folder}: {len(missing)} image(s) in no split file, e.g. "
                    f"{', '.join(missing[:5])}; list each in train.txt, val.txt or test.txt (or "
                    "remove them from images/ and labels/).")
  return splits


def scan_folder(directory, *, split_seed: int = 0, split_fractions=DEFAULT_SPLIT_FRACTIONS,
                connectivity: int = 8, workers: int | None = None) -> FolderScan:
  """Validates a folder (reading every file) and returns its `FolderScan`.

  Raises:
    FolderDataError: every problem found (module docstring).
    ValueError: bad options.
  """
  directory = _check_directory(directory)
  connectivity = _check_connectivity(connectivity)
  split_fractions = check_split_fractions(split_fractions)
  digest = fingerprint(directory, split_seed=split_seed, split_fractions=split_fractions,
                       connectivity=connectivity)
  problems = []
  images = _list_files(os.path.join(directory, "images"), "image", IMAGE_EXTENSIONS, problems,
                       required=True)
  labels = _list_files(os.path.join(directory, "labels"), "label", (".png",), problems,
                       required=True)
  instances = _list_files(os.path.join(directory, "instances"), "instance map", (".png",),
                          problems, required=False)
  for stem in sorted(set(labels) - set(images)):
    problems.append(f"{labels[stem]}: label without an image; add images/{stem}.jpg (.jpeg, "
                    ".png) or remove the label.")
  for stem in sorted(set(images) - set(labels)):
    problems.append(f"{images[stem]}: image without a label; add labels/{stem}.png or remove "
                    "the image.")
  for stem in sorted(set(instances) - (set(images) & set(labels))):
    missing = [m for m, found in ((f"images/{stem}.jpg (.jpeg, .png)", images),
                                  (f"labels/{stem}.png", labels)) if stem not in found]
    problems.append(f"{instances[stem]}: instance map without its "
                    f"{' and '.join(m.split('/')[0][:-1] for m in missing)}; add "
                    f"{' and '.join(missing)} or remove it.")
  names = sorted(set(images) & set(labels))
  ids = {}
  for name in names:
    other = ids.setdefault(example_id(name), name)
    if other != name:
      problems.append(f"{images[name]}: its NAME's id collides with {images[other]}'s "
                      f"({example_id(name)}); rename one of them.")
  if not images and not problems:
    problems.append(f"{os.path.join(directory, 'images')}: no images; put NAME.jpg/.png files "
                    "there.")
  class_names = _read_class_names(directory, problems)
  if _uses_split_files(directory):
    source = "files"
    splits = _read_splits(directory, names, problems,
                          frozenset(set(images) ^ set(labels)))
  else:
    source = "seeded"
    splits = {s: [] for s, f in zip(SPLITS, split_fractions) if f > 0}
    for name in names:
      splits[seeded_split(name, split_fractions, split_seed)].append(name)
  entries = {n: Entry(n, images[n], labels[n], instances.get(n)) for n in names}
  num_classes = len(class_names) if class_names is not None else None
  workers = workers or min(8, os.cpu_count() or 1)
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    checked = dict(zip(names, pool.map(
        lambda n: _check_example(entries[n], num_classes, connectivity), names)))
  problems.extend(c["problem"] for c in checked.values() if c["problem"])
  for split, members in splits.items():
    if names and not members:
      if source == "files":
        problems.append(f"{os.path.join(directory, 'splits', split + '.txt')}: empty split; "
                        "list image NAMEs in it (one per line) or remove the file.")
      else:
        problems.append(f"{directory}: no image fell into the {split!r} split (fraction "
                        f"{split_fractions[SPLITS.index(split)]} of {len(names)} images, split "
                        f"seed {split_seed}); add images, write splits/*.txt, or set "
                        "split_fractions (a fraction 0 leaves the split out).")
  if problems:
    raise FolderDataError(directory, problems)
  if class_names is None:
    largest = max((v for c in checked.values() for v in c["values"] if v != classes.VOID),
                  default=0)
    class_names = ("background",) + tuple(f"class_{k}" for k in range(1, largest + 1))
    if largest == 0:
      raise FolderDataError(directory, [
          f"{os.path.join(directory, 'labels')}: every label is background or void; label "
          "the objects with classes 1..254."])
  train = [checked[n] for n in splits["train"]] if "train" in splits else []
  pixels = sum(c["pixels"] for c in train)
  if pixels:
    mean = sum(c["sum"] for c in train) / pixels
    std = np.sqrt(np.maximum(sum(c["sum_squares"] for c in train) / pixels - mean ** 2, 0))
  else:
    mean = std = np.full(3, np.nan)
  after = fingerprint(directory, split_seed=split_seed, split_fractions=split_fractions,
                      connectivity=connectivity)
  if after != digest:
    raise RuntimeError(f"The segmentation folder {directory} changed while it was being read; "
                       "rerun once it is complete.")
  summary = FolderSummary(
      directory=directory, config_name=config_name(directory, digest), fingerprint=digest,
      all_class_names=tuple(class_names),
      num_examples={s: len(splits[s]) for s in SPLITS if s in splits},
      num_objects={s: sum(checked[n]["objects"] for n in splits[s]) for s in SPLITS
                   if s in splits},
      mean=tuple(float(m) / 255 for m in mean), std=tuple(float(s) / 255 for s in std),
      max_height=max(c["height"] for c in checked.values()),
      max_width=max(c["width"] for c in checked.values()),
      split_source=source, split_seed=int(split_seed), split_fractions=split_fractions,
      connectivity=connectivity)
  return FolderScan(summary=summary, entries=entries,
                    splits={s: tuple(sorted(splits[s])) for s in SPLITS if s in splits})


# ----------------------------------------------------------------------------
# The TFDS builder.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class FolderConfig(tfds.core.BuilderConfig):
  """Builder config of one folder (named `config_name`; made by `load`)."""
  summary_json: str = dataclasses.field(default="", repr=False)

  @property
  def summary(self) -> FolderSummary:
    return FolderSummary.from_json(json.loads(self.summary_json))


def folder_config(summary: FolderSummary) -> FolderConfig:
  return FolderConfig(name=summary.config_name, summary_json=json.dumps(summary.to_json()),
                      description=f"The segmentation folder {summary.directory}.")


class JaxpuFolder(tfds.core.GeneratorBasedBuilder):
  """A segmentation folder of the user's (see the module docstring); use `load`."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}

  folder_scan: FolderScan | None = None  # set by `load` to skip a second validation

  def _info(self) -> tfds.core.DatasetInfo:
    if not isinstance(self.builder_config, FolderConfig):
      raise ValueError("jaxpu_folder needs a folder: use jaxpu.data.folder.load(directory).")
    names = self.builder_config.summary.all_class_names
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "id": tfds.features.Scalar(np.int64),
            "name": tfds.features.Text(),
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
            "class_mask": tfds.features.Image(shape=(None, None, 1)),
            "instance_mask": tfds.features.Image(shape=(None, None, 1)),
            "object_classes": tfds.features.Sequence(tfds.features.ClassLabel(names=names)),
        }),
        supervised_keys=("image", "class_mask"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    summary = self.builder_config.summary
    scan = self.folder_scan
    if scan is None or scan.summary.fingerprint != summary.fingerprint:
      scan = scan_folder(summary.directory, split_seed=summary.split_seed,
                         split_fractions=summary.split_fractions,
                         connectivity=summary.connectivity)
    if scan.summary.fingerprint != summary.fingerprint:
      raise RuntimeError(f"The segmentation folder {summary.directory} changed since "
                         f"{summary.config_name} was configured; call folder.load again.")
    return {split: self._generate_examples(scan, split) for split in scan.splits}

  def _generate_examples(self, scan: FolderScan, split: str):
    summary = scan.summary
    for name in scan.splits[split]:
      try:
        example = read_example(scan.entries[name], summary.num_classes, summary.connectivity)
      except _Problem as e:  # the file changed since it was validated
        raise FolderDataError(summary.directory, [str(e)]) from None
      yield name, {
          "id": example_id(name), "name": name,
          "image": synthetic.encode_png(example["image"]),
          "class_mask": synthetic.encode_png(example["class_mask"]),
          "instance_mask": synthetic.encode_png(example["instance_mask"]),
          "object_classes": example["object_classes"],
      }


def _summary_path(data_dir: str, name: str) -> str:
  return os.path.join(data_dir, JaxpuFolder.name, name, SUMMARY_FILE)


def _read_summary(path: str) -> FolderSummary | None:
  try:
    with open(path) as f:
      return FolderSummary.from_json(json.load(f))
  except (OSError, ValueError, TypeError, KeyError):
    return None


def _prepared(data_dir: str, name: str) -> tuple[JaxpuFolder, FolderSummary] | None:
  summary = _read_summary(_summary_path(data_dir, name))
  if summary is None:
    return None
  builder = JaxpuFolder(config=folder_config(summary), data_dir=data_dir)
  return (builder, summary) if builder.is_prepared() else None


def load_with_summary(directory, data_dir: str | None = None, *, split_seed: int = 0,
                      split_fractions=DEFAULT_SPLIT_FRACTIONS, connectivity: int = 8
                      ) -> tuple[JaxpuFolder, FolderSummary]:
  """(prepared builder, summary) of a folder; validates and builds it on first use.

  Concurrent first uses (hosts, processes) build it once (a file lock in
  the data dir).
  """
  directory = _check_directory(directory)
  data_dir = data_dir or synthetic.default_data_dir()
  options = dict(split_seed=split_seed, split_fractions=split_fractions,
                 connectivity=connectivity)
  name = config_name(directory, fingerprint(directory, **options))
  found = _prepared(data_dir, name)
  if found is not None:
    return found
  lock = os.path.join(data_dir, JaxpuFolder.name, f".{name}.lock")
  with fileio.file_lock(lock):
    found = _prepared(data_dir, name)
    if found is not None:
      return found
    scan = scan_folder(directory, **options)
    summary = scan.summary
    path = _summary_path(data_dir, summary.config_name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fileio.write_json(path, summary.to_json())
    builder = JaxpuFolder(config=folder_config(summary), data_dir=data_dir)
    builder.folder_scan = scan
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return JaxpuFolder(config=folder_config(summary), data_dir=data_dir), summary


def load(directory, data_dir: str | None = None, **options) -> JaxpuFolder:
  """The prepared builder of a folder (`load_with_summary`'s builder)."""
  return load_with_summary(directory, data_dir, **options)[0]


def summary(directory, data_dir: str | None = None, **options) -> FolderSummary:
  """The `FolderSummary` of a folder (builds it on first use)."""
  return load_with_summary(directory, data_dir, **options)[1]


def class_names(directory, data_dir: str | None = None, **options) -> tuple[str, ...]:
  """The object-class names 1..K-1 of a folder, background excluded (builds it on first use)."""
  return summary(directory, data_dir, **options).class_names


def segmentation_examples(split: str, *, directory, data_dir: str | None = None,
                          shard: tuple[int, int] = (0, 1), split_seed: int = 0,
                          split_fractions=DEFAULT_SPLIT_FRACTIONS, connectivity: int = 8):
  """This host's part of `split` as examples {id, image, label, instances, objects}.

  `image` uint8 [H, W, 3], `label` the class mask and `instances` the
  instance mask (uint8 [H, W], each example at its own size), `objects` the
  int32 class of each object, `id` the int64 stable id. `split` may carry a
  TFDS slice ("train[:50%]").
  """
  builder, info = load_with_summary(directory, data_dir, split_seed=split_seed,
                                    split_fractions=split_fractions, connectivity=connectivity)
  if split.split("[")[0] not in info.splits:
    raise ValueError(f"The segmentation folder {info.directory} has no split {split!r}; "
                     f"splits: {list(info.splits)}.")
  ds = builder.as_dataset(split=synthetic.host_split(split, shard), shuffle_files=False)
  return ds.map(synthetic.segmentation_example, num_parallel_calls=tf.data.AUTOTUNE)
