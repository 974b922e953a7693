r"""Export drawn images of the embedded dataset as a segmentation folder (the worked example).

  python -m experiments.export_folder --output=DIR [--num_images=200] \
      [--min_size=40] [--max_size=64] [--unsegmented=0.5] [--seed=0]

writes DIR in the layout of `jaxpu.data.folder`:

    DIR/images/NAME.png       RGB images, each of its own size
    DIR/labels/NAME.png       palette PNGs: class index per pixel (0 background,
                              1..20 the embedded categories, 255 void outlines)
    DIR/instances/NAME.png    palette PNGs: object id per pixel
    DIR/classes.txt           "background" and the 20 category names
    DIR/splits/{train,val,test}.txt

The images are drawn by the embedded dataset's generator
(`jaxpu.data.synthetic_draw`: 2-4 textured shapes of the 20 categories on a
cluttered background, VOC-style void outlines), each from its own seeded
generator: a square of the larger side, cut to a random width and height in
[min_size, max_size] (objects cut away entirely are dropped). 80 % of the
images go to train, 10 % to val and 10 % to test (at least one each).
`--unsegmented=p` leaves each object of the train and val images unlabelled
(class 0, no instance) with probability p, as incomplete annotations would;
the test labels stay complete, so predictions can be scored against them.
Nothing is downloaded. Then (`experiments/train.py`'s module docstring):

  python -m experiments.train --config.dataset=folder --config.data.directory=DIR \
      --config.loss=sigmoid_negative --config.select_by=lee_liu
"""

from __future__ import annotations

import os
import sys
from typing import Optional

import numpy as np

SPLITS = ("train", "val", "test")


def split_sizes(num_images: int) -> dict[str, int]:
  """80 / 10 / 10 % of `num_images`, at least one image per split."""
  if num_images < 3:
    raise ValueError(f"--num_images={num_images}: needs at least 3 (one per split).")
  held_out = max(1, round(0.1 * num_images))
  return {"train": num_images - 2 * held_out, "val": held_out, "test": held_out}


def draw_example(seed: int, split_index: int, index: int, min_size: int, max_size: int,
                 unsegmented: float) -> dict[str, np.ndarray]:
  """One image, class mask and instance mask (uint8), drawn and cut as the docstring says."""
  from jaxpu.data import classes  # pylint: disable=g-import-not-at-top
  from jaxpu.data import synthetic_draw  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng((seed, split_index, index))
  height, width = (int(v) for v in rng.integers(min_size, max_size + 1, 2))
  spec = synthetic_draw.DrawSpec(image_size=max(height, width), min_objects=2, max_objects=4)
  count = int(rng.integers(spec.min_objects, spec.max_objects + 1))
  categories = list(rng.integers(1, len(classes.SYNTHETIC_CATEGORIES) + 1, count))
  image, class_mask, instances, _ = synthetic_draw.draw_image(rng, spec, categories)
  image, class_mask, instances = (a[:height, :width] for a in (image, class_mask, instances))
  void = class_mask == classes.VOID
  ids = [int(k) for k in np.unique(instances[~void & (class_mask > 0)])]
  renumbered = np.where(void, classes.VOID, 0).astype(np.uint8)
  label = class_mask.copy()
  new_id = 0
  for k in ids:
    pixels = (instances == k) & ~void
    if unsegmented and rng.uniform() < unsegmented:
      label[pixels] = 0  # an unsegmented object: background, no instance
      continue
    new_id += 1
    renumbered[pixels] = new_id
  return {"image": image, "label": label, "instances": renumbered}


def save_png(array: np.ndarray, path: str, indexed: bool) -> None:
  import PIL.Image  # pylint: disable=g-import-not-at-top
  from jaxpu import predict  # pylint: disable=g-import-not-at-top
  if indexed:
    predict.save_label_png(array, path)
  else:
    PIL.Image.fromarray(array).save(path, format="PNG")


def export(output: str, num_images: int = 200, *, min_size: int = 40, max_size: int = 64,
           unsegmented: float = 0.5, seed: int = 0) -> dict[str, list[str]]:
  """Writes the folder (module docstring); returns {split: NAMEs}."""
  from jaxpu.data import classes  # pylint: disable=g-import-not-at-top
  if not 16 <= min_size <= max_size:
    raise ValueError(f"Need 16 <= --min_size ({min_size}) <= --max_size ({max_size}).")
  if not 0 <= unsegmented < 1:
    raise ValueError(f"--unsegmented={unsegmented}: must be in [0, 1).")
  output = os.path.expanduser(output)
  if os.path.isdir(output) and any(not n.startswith(".") for n in os.listdir(output)):
    raise ValueError(f"--output {output} is not empty; choose a new folder (the export "
                     "never overwrites files).")
  for sub in ("images", "labels", "instances", "splits"):
    os.makedirs(os.path.join(output, sub), exist_ok=True)
  with open(os.path.join(output, "classes.txt"), "w") as f:
    f.write("\n".join(("background",) + classes.SYNTHETIC_CLASSES) + "\n")
  names: dict[str, list[str]] = {}
  for split_index, (split, count) in enumerate(split_sizes(num_images).items()):
    names[split] = []
    for index in range(count):
      name = f"{split}_{index:05d}"
      example = draw_example(seed, split_index, index, min_size, max_size,
                             unsegmented if split != "test" else 0.0)
      save_png(example["image"], os.path.join(output, "images", name + ".png"), False)
      save_png(example["label"], os.path.join(output, "labels", name + ".png"), True)
      save_png(example["instances"], os.path.join(output, "instances", name + ".png"), True)
      names[split].append(name)
    with open(os.path.join(output, "splits", split + ".txt"), "w") as f:
      f.write("\n".join(names[split]) + "\n")
  return names


def main(argv: Optional[list] = None) -> None:
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("output", None, "New folder to write the dataset to.", required=True)
  flags.DEFINE_integer("num_images", 200, "Images in all (80/10/10 % train/val/test).")
  flags.DEFINE_integer("min_size", 40, "Smallest image side.")
  flags.DEFINE_integer("max_size", 64, "Largest image side.")
  flags.DEFINE_float("unsegmented", 0.5, "Share of the train/val objects left unlabelled.")
  flags.DEFINE_integer("seed", 0, "Drawing seed.")

  def _main(args):
    if len(args) > 1:
      raise app.UsageError(f"Unexpected arguments: {' '.join(args[1:])}")
    f = flags.FLAGS
    try:
      names = export(f.output, f.num_images, min_size=f.min_size, max_size=f.max_size,
                     unsegmented=f.unsegmented, seed=f.seed)
    except ValueError as e:
      sys.exit(f"experiments.export_folder: {e}")
    print(f"Wrote {sum(len(v) for v in names.values())} images to {f.output} ("
          + ", ".join(f"{k}: {len(v)}" for k, v in names.items()) + ").", flush=True)

  app.run(_main, argv=argv)


if __name__ == "__main__":
  main()
