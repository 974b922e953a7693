"""Segment new images with a trained run: a run folder and images → label PNGs and probabilities.

    from jaxpu import predict
    written = predict.predict_folder("runs/train", "photos/", "labels_out/")
    results = predict.predict_images("runs/train", [image_array, "photo.jpg"])
    results[0].mask, results[0].probabilities          # [H, W] uint8, [H, W, K] float32

The run is a folder written by `jaxpu.runs.train` (`spec.json`,
`checkpoints/`), e.g. `python -m experiments.train`'s `WORKDIR/runs/model`
(its WORKDIR, a `checkpoints/` folder or one `checkpoints/<step>` folder
work too). The model is rebuilt from `spec.json` (its `TrainSpec`: model,
outputs, options) and its input exactly as the run's training and evaluation
pipeline (`jaxpu.data.pipeline`) made it, from `predict.json`
(`RECIPE_FILE`, written by `experiments.train`: `write_recipe`) or, for runs
of the other experiments on the embedded or VOC data, from the data spec in
`spec.json`:

1. decode (`jaxpu.data.folder.read_image`: the folder dataset's own decoder,
   grey/palette → RGB, alpha dropped);
2. down-sample by the run's integer factor (area) and pad at the bottom/right
   to the run's square side with the mean colour (`pipeline.resize_and_pad`,
   the very function of the pipeline). An image larger than that side after
   down-sampling, which the training pipeline would crop, is padded to the
   next multiple of 8 of its larger side instead (the models are fully
   convolutional), so nothing is cut. Runs whose pipeline kept images at
   their own size (the embedded data) see each image at its own size;
3. normalise (`batching.preprocess`: the run's "standardize" mean/std or
   Caffe's BGR mean);
4. run the model (`train=False`) in batches of images of one input size;
5. the prediction is the evaluation step's (`jaxpu.train.eval_step`): argmax
   of the logits, or logit > 0 for a binary model; the probabilities are
   the softmax, or (1 − σ, σ) for a binary model;
6. undo step 2: crop the padding; a down-sampled prediction is scaled back
   to the image's size (mask: nearest neighbour, probabilities: bilinear).

So the masks equal the evaluation step's argmax on the same images
(`tests/test_train_predict.py` checks it). `predict_folder` writes one
palette PNG per image (`NAME.png`, the input's size, pixel value = class
index, colours of the PASCAL VOC colour map, `palette`), its probabilities
(`NAME.npz`: `probabilities` [H, W, K] float32, `class_names`) and
`classes.txt` (one class name per line, line 0 the background: the label
folder layout of `jaxpu.data.folder`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any, Iterable, Mapping, Optional, Sequence

from absl import logging
import jax
import numpy as np

from jaxpu import checkpoint
from jaxpu import fileio
from jaxpu import models

RECIPE_FILE = "predict.json"
SPEC_FILE = "spec.json"  # written by jaxpu.runs.train
DONE_FILE = "done.json"
TRAIN_RUN = os.path.join("runs", "model")  # the model's folder in an experiments.train workdir
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class PredictError(ValueError):
  """A checkpoint, an image or a folder that cannot be used; the message says the fix."""


# ----------------------------------------------------------------------------
# The recipe: the model and how its pipeline made its input.
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Recipe:
  """A run's model and input pipeline (module docstring).

  Attributes:
    model, num_outputs, model_options: the `jaxpu.models` model (1 output: binary).
    class_names: one name per label value, background first.
    preprocessing, mean, std: `jaxpu.data.batching.preprocess`'s arguments.
    downsample: the integer down-sampling factor.
    image_size: the square side the pipeline padded to (None: images at their own size).
    fill: the padding colour (RGB, 0-255).
    selected_step: the snapshot `experiments.train` selected (None: the final one).
    select_by: how it was selected.
  """
  model: str
  num_outputs: int
  model_options: tuple
  class_names: tuple
  preprocessing: str
  mean: tuple
  std: tuple
  downsample: int = 1
  image_size: Optional[int] = None
  fill: tuple = (0, 0, 0)
  selected_step: Optional[int] = None
  select_by: Optional[str] = None

  @property
  def binary(self) -> bool:
    return self.num_outputs == 1

  def build_model(self):
    return models.get(self.model, self.num_outputs, **dict(self.model_options))


def pipeline_geometry(data, spec) -> dict[str, Any]:
  """The input geometry and normalisation of a `Data` made from `SegmentationSpec` `spec`."""
  from jaxpu.data import pipeline  # pylint: disable=g-import-not-at-top
  name = spec.name
  downsample = int(spec.downsample or (4 if name == "voc" else 1))
  if name == "synthetic" and downsample == 1:
    image_size = None  # the embedded images are used at their own (one) size
  else:
    image_size = int(data.image_shape[0])
  mean = tuple(float(m) for m in data.mean)
  if data.preprocessing == "caffe":
    fill = tuple(int(v) for v in np.round(np.asarray(pipeline.CAFFE_MEAN_BGR)[::-1]))
  else:
    fill = tuple(int(v) for v in np.round(np.asarray(mean) * 255))
  return {"class_names": list(data.class_names), "preprocessing": data.preprocessing,
          "mean": list(mean), "std": [float(s) for s in data.std], "downsample": downsample,
          "image_size": image_size, "fill": list(fill)}


def write_recipe(run_dir: str, data, spec, selected_step: Optional[int] = None,
                 select_by: Optional[str] = None) -> str:
  """Writes `run_dir/predict.json`: `pipeline_geometry` plus the selected snapshot."""
  path = os.path.join(run_dir, RECIPE_FILE)
  fileio.write_json(path, {**pipeline_geometry(data, spec), "selected_step": selected_step,
                           "select_by": select_by})
  return path


def _geometry_from_spec(run_dir: str, data: Mapping[str, Any]) -> dict[str, Any]:
  """`pipeline_geometry` of a run without predict.json, from the data spec in spec.json."""
  from jaxpu.data import pipeline  # pylint: disable=g-import-not-at-top
  spec = dict(data.get("spec") or {})
  name, shape = spec.get("name"), data.get("image_shape")
  if name not in ("synthetic", "voc") or not shape:
    raise PredictError(
        f"{run_dir} has no {RECIPE_FILE} and its {SPEC_FILE} does not say how its images were "
        f"prepared (dataset {name!r}); predict with a run folder written by python -m "
        "experiments.train, which writes it.")
  preprocessing = spec.get("preprocessing") or "standardize"
  if preprocessing == "caffe":
    mean, std = pipeline.CAFFE_MEAN_BGR, (1.0, 1.0, 1.0)
    fill = np.round(np.asarray(mean)[::-1])
  else:
    mean, std = ((pipeline.SYNTHETIC_MEAN, pipeline.SYNTHETIC_STD) if name == "synthetic"
                 else (pipeline.IMAGENET_MEAN, pipeline.IMAGENET_STD))
    fill = np.round(np.asarray(mean) * 255)
  downsample = int(spec.get("downsample") or (4 if name == "voc" else 1))
  image_size = None if name == "synthetic" and downsample == 1 else int(shape[0])
  return {"class_names": list(data.get("classes") or ()), "preprocessing": preprocessing,
          "mean": list(mean), "std": list(std), "downsample": downsample,
          "image_size": image_size, "fill": [int(v) for v in fill]}


def load_recipe(run_dir: str) -> Recipe:
  """The `Recipe` of a run folder (`spec.json`, and `predict.json` where written)."""
  identity = fileio.read_json(os.path.join(run_dir, SPEC_FILE),
                              what=f"the run folder {run_dir} is damaged; train it again")
  if not isinstance(identity, Mapping) or "spec" not in identity:
    raise PredictError(
        f"{run_dir} has no {SPEC_FILE} (the model's settings), so its model cannot be rebuilt; "
        "pass the run folder written by python -m experiments.train (its WORKDIR, or "
        f"WORKDIR/{TRAIN_RUN}), which holds {SPEC_FILE} and checkpoints/.")
  spec = identity["spec"]
  geometry = fileio.read_json(os.path.join(run_dir, RECIPE_FILE),
                              what=f"delete it and rerun experiments.train on {run_dir}")
  if geometry is None:
    geometry = _geometry_from_spec(run_dir, identity.get("data") or {})
  num_outputs = int(spec["num_classes"])
  names = tuple(geometry.get("class_names") or ())
  if not names:
    names = (("background", "foreground") if num_outputs == 1 else
             tuple(f"class_{k}" for k in range(num_outputs)))
  return Recipe(
      model=spec["model"], num_outputs=num_outputs,
      model_options=tuple((str(k), _tuple(v)) for k, v in spec.get("model_options") or ()),
      class_names=names, preprocessing=geometry["preprocessing"],
      mean=tuple(geometry["mean"]), std=tuple(geometry["std"]),
      downsample=int(geometry["downsample"]), image_size=geometry["image_size"],
      fill=tuple(int(v) for v in geometry["fill"]),
      selected_step=geometry.get("selected_step"), select_by=geometry.get("select_by"))


def _tuple(value):
  return tuple(value) if isinstance(value, list) else value


# ----------------------------------------------------------------------------
# Finding the run and its step.
# ----------------------------------------------------------------------------


def find_run(path: str) -> tuple[str, Optional[int]]:
  """(run folder, step named by the path or None) of a run, workdir or checkpoint path."""
  given = path
  path = os.path.realpath(os.path.expanduser(os.fspath(path)))
  if not os.path.exists(path):
    raise PredictError(f"--checkpoint {given} does not exist; pass the workdir of python -m "
                       "experiments.train, or a run folder holding spec.json and checkpoints/.")
  if not os.path.isdir(path):
    raise PredictError(f"--checkpoint {given} is a file; pass the workdir of python -m "
                       "experiments.train, or a run folder holding spec.json and checkpoints/.")
  if os.path.exists(os.path.join(path, SPEC_FILE)):
    return path, None
  if os.path.exists(os.path.join(path, TRAIN_RUN, SPEC_FILE)):
    return os.path.join(path, TRAIN_RUN), None
  parent = os.path.dirname(path)
  if (os.path.basename(path) == checkpoint.CHECKPOINT_SUBDIR
      and os.path.exists(os.path.join(parent, SPEC_FILE))):
    return parent, None
  grandparent = os.path.dirname(parent)
  if (os.path.basename(path).isdigit() and os.path.basename(parent) == checkpoint.CHECKPOINT_SUBDIR
      and os.path.exists(os.path.join(grandparent, SPEC_FILE))):
    return grandparent, int(os.path.basename(path))
  raise PredictError(
      f"--checkpoint {given} holds no {SPEC_FILE} (the model's settings): a bare checkpoint "
      "cannot be rebuilt into a model. Pass the workdir of python -m experiments.train, its "
      f"{TRAIN_RUN} folder, or another run folder written by jaxpu.runs.train.")


def choose_step(run_dir: str, recipe: Recipe, step: Optional[int] = None) -> int:
  """The checkpoint to use: `step`, else the selected one, else the final, else the latest."""
  available = checkpoint.available_steps(run_dir)
  if not available:
    raise PredictError(f"{run_dir} holds no checkpoint (checkpoints/ is empty or missing); "
                       "train the run first (python -m experiments.train).")
  if step is None:
    step = recipe.selected_step
  if step is None:
    done = fileio.read_json(os.path.join(run_dir, DONE_FILE), what="train the run again")
    try:
      step = int(done["identity"]["spec"]["steps"])
    except (TypeError, KeyError, ValueError):
      step = available[-1]
  if step not in available:
    raise PredictError(f"{run_dir} has no checkpoint of step {step}; its checkpoints are "
                       f"{available} (pass one of them with --step).")
  return int(step)


# ----------------------------------------------------------------------------
# Images.
# ----------------------------------------------------------------------------


def read_image(path: str) -> np.ndarray:
  """uint8 [H, W, 3] RGB pixels, decoded as the folder dataset decodes them."""
  from jaxpu.data import folder  # pylint: disable=g-import-not-at-top
  try:
    return folder.read_image(path)
  except Exception as e:  # folder's own problem (it names the file and the fix), or PIL's
    text = str(e)
    if path not in text:
      text = f"{path}: unreadable image ({type(e).__name__}: {e}); replace or remove it"
    raise PredictError(text) from None


def list_images(directory: str) -> list[tuple[str, str]]:
  """(NAME, path) of the .jpg/.jpeg/.png files of `directory`, sorted; errors say the fix."""
  given = directory
  directory = os.path.expanduser(os.fspath(directory))
  if not os.path.isdir(directory):
    raise PredictError(f"--images {given} is not a folder; pass a folder of .jpg/.png images.")
  found: dict[str, list[str]] = {}
  skipped = []
  with os.scandir(directory) as entries:
    for entry in sorted(entries, key=lambda e: e.name):
      if entry.name.startswith("."):
        continue
      stem, ext = os.path.splitext(entry.name)
      if entry.is_file() and ext.lower() in IMAGE_EXTENSIONS and stem:
        found.setdefault(stem, []).append(entry.path)
      else:
        skipped.append(entry.name)
  if skipped:
    logging.warning("%s: skipping %d entries that are not .jpg/.jpeg/.png images, e.g. %s.",
                    directory, len(skipped), ", ".join(skipped[:5]))
  if not found:
    raise PredictError(f"--images {given} holds no image (.jpg, .jpeg or .png files); put the "
                       "images to segment there.")
  for stem, paths in found.items():
    if len(paths) > 1:
      raise PredictError(f"{paths[0]}: the NAME {stem!r} has {len(paths)} images "
                         f"({', '.join(os.path.basename(p) for p in paths)}), whose outputs "
                         f"{stem}.png would collide; rename or remove all but one.")
  for stem, paths in found.items():
    _check_header(paths[0])
  return [(stem, paths[0]) for stem, paths in sorted(found.items())]


def _check_header(path: str) -> None:
  """Fails early, naming the file, when an image cannot even be opened."""
  import PIL.Image  # pylint: disable=g-import-not-at-top
  try:
    if os.path.getsize(path) == 0:
      raise PredictError(f"{path}: empty file (0 bytes); replace it with a valid image or "
                         "remove it.")
    with PIL.Image.open(path):
      pass
  except PredictError:
    raise
  except Exception as e:  # PIL raises several types
    raise PredictError(f"{path}: unreadable image ({type(e).__name__}: {e}); replace it with "
                       "a valid .jpg/.png (a truncated copy is the usual cause) or remove "
                       "it.") from None


# ----------------------------------------------------------------------------
# Prediction.
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class Prediction:
  """One image's prediction at its own size: class per pixel and per-class probabilities."""
  mask: np.ndarray           # uint8 [H, W]
  probabilities: np.ndarray  # float32 [H, W, K]


def _reduced_shape(recipe: Recipe, height: int, width: int) -> tuple[int, int]:
  """The image's size after the pipeline's down-sampling (`resize_and_pad`)."""
  f = recipe.downsample
  return (height + f - 1) // f, (width + f - 1) // f


def input_side(recipe: Recipe, height: int, width: int) -> Optional[int]:
  """The square side the image is padded to (None: used at its own size)."""
  h, w = _reduced_shape(recipe, height, width)
  if recipe.image_size is None:
    return None
  if max(h, w) <= recipe.image_size:
    return int(recipe.image_size)
  return 8 * math.ceil(max(h, w) / 8)


def network_image(recipe: Recipe, image: np.ndarray) -> np.ndarray:
  """uint8 image as the pipeline feeds it: down-sampled and padded (module docstring)."""
  side = input_side(recipe, *image.shape[:2])
  if side is None and recipe.downsample == 1:
    return image
  from jaxpu.data import pipeline  # pylint: disable=g-import-not-at-top
  from jaxpu.data._tf import tf  # pylint: disable=g-import-not-at-top
  if side is None:  # own size after down-sampling
    side = max(_reduced_shape(recipe, *image.shape[:2]))
  out = pipeline.resize_and_pad({"image": tf.constant(image)}, recipe.downsample, side,
                                np.asarray(recipe.fill, np.uint8))
  return out["image"].numpy()


def normalise(recipe: Recipe, images: np.ndarray) -> np.ndarray:
  """float32 network input of uint8 images [B, H, W, 3] (the run's `batching.preprocess`)."""
  from jaxpu.data import batching  # pylint: disable=g-import-not-at-top
  return batching.preprocess(images, recipe.preprocessing, recipe.mean, recipe.std)


class Predictor:
  """A run's model at one checkpoint, applied to batches of images (module docstring)."""

  def __init__(self, checkpoint_path: str, step: Optional[int] = None, batch_size: int = 16):
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
      raise PredictError(f"--batch_size={batch_size!r}: must be a positive integer.")
    self.run_dir, path_step = find_run(checkpoint_path)
    self.recipe = load_recipe(self.run_dir)
    self.step = choose_step(self.run_dir, self.recipe, step if step is not None else path_step)
    self.params = jax.device_put(checkpoint.restore_params(self.run_dir, self.step))
    self.batch_size = batch_size
    self._apply = apply_fn(self.recipe.build_model())

  def __call__(self, images: Sequence[np.ndarray]) -> list[Prediction]:
    """Predictions of uint8 RGB images (any sizes), in order."""
    groups: dict[tuple, list[int]] = {}
    inputs = []
    for i, image in enumerate(images):
      x = network_image(self.recipe, _check_array(image, i))
      inputs.append(x)
      groups.setdefault(x.shape, []).append(i)
    out: list[Optional[Prediction]] = [None] * len(inputs)
    for indices in groups.values():
      for start in range(0, len(indices), self.batch_size):
        chunk = indices[start:start + self.batch_size]
        mask, probs = self._run(np.stack([inputs[i] for i in chunk]))
        for k, i in enumerate(chunk):
          out[i] = self._restore(mask[k], probs[k], images[i].shape[:2])
    return out

  def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(masks, probabilities) at the network's size; the batch padded to a fixed size."""
    n = len(batch)
    if n < self.batch_size:  # one compiled shape per input size
      pad = np.zeros((self.batch_size - n,) + batch.shape[1:], batch.dtype)
      batch = np.concatenate([batch, pad])
    logits = np.asarray(self._apply(self.params, normalise(self.recipe, batch)))[:n]
    return outputs(logits, self.recipe.binary)

  def _restore(self, mask: np.ndarray, probs: np.ndarray, shape) -> Prediction:
    """Undoes the padding and down-sampling of `network_image`."""
    height, width = int(shape[0]), int(shape[1])
    h, w = _reduced_shape(self.recipe, height, width)
    mask, probs = mask[:h, :w], probs[:h, :w]
    if (h, w) != (height, width):
      from jaxpu.data._tf import tf  # pylint: disable=g-import-not-at-top
      mask = tf.image.resize(mask[..., None], (height, width), method="nearest")[..., 0].numpy()
      probs = tf.image.resize(probs, (height, width), method="bilinear").numpy()
    return Prediction(np.ascontiguousarray(mask, np.uint8),
                      np.ascontiguousarray(probs, np.float32))


@functools.lru_cache(maxsize=None)
def apply_fn(model):
  """`(params, images) -> logits` of `model` (`train=False`), jitted once per model (flax
  modules compare by their fields), so every caller shares its compiled programs."""
  return jax.jit(lambda params, images: model.apply({"params": params}, images, train=False))


def outputs(logits: np.ndarray, binary: bool) -> tuple[np.ndarray, np.ndarray]:
  """(prediction uint8, probabilities float32) of logits [..., C]: `eval_step`'s prediction
  (argmax; binary: logit > 0) and the softmax (binary: (1 − σ, σ))."""
  logits = np.asarray(logits, np.float32)
  if binary:
    logit = logits[..., 0]
    foreground = np.exp(-np.logaddexp(0, -logit)).astype(np.float32)
    return (logit > 0).astype(np.uint8), np.stack([1 - foreground, foreground], -1)
  shifted = logits - logits.max(-1, keepdims=True)
  probs = np.exp(shifted)
  probs /= probs.sum(-1, keepdims=True)
  return np.argmax(logits, -1).astype(np.uint8), probs.astype(np.float32)


def _check_array(image, index: int) -> np.ndarray:
  array = np.asarray(image)
  if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8 or not array.size:
    raise PredictError(f"image {index}: expected uint8 RGB pixels [H, W, 3], got "
                       f"{array.dtype}{list(array.shape)}; read files with "
                       "jaxpu.predict.read_image.")
  return array


def predict_images(checkpoint_path: str, images: Iterable, *, step: Optional[int] = None,
                   batch_size: int = 16) -> list[Prediction]:
  """Predictions of `images` (uint8 RGB arrays or image paths, any sizes), in order.

  `checkpoint_path`: an `experiments.train` workdir, a run folder, its
  `checkpoints/` or one `checkpoints/<step>` folder; `step`: the checkpoint
  (default: the snapshot `experiments.train` selected, else the final one).
  """
  predictor = Predictor(checkpoint_path, step, batch_size)
  arrays = [read_image(x) if isinstance(x, (str, os.PathLike)) else x for x in images]
  return predictor(arrays)


# ----------------------------------------------------------------------------
# Writing.
# ----------------------------------------------------------------------------


def palette() -> np.ndarray:
  """uint8 [256, 3]: the PASCAL VOC colour map (index bits spread over R, G, B from the top)."""
  return _palette().copy()


@functools.lru_cache(maxsize=1)
def _palette() -> np.ndarray:
  colours = np.zeros((256, 3), np.uint8)
  for index in range(256):
    rgb, value = [0, 0, 0], index
    for shift in range(7, -1, -1):
      for channel in range(3):
        rgb[channel] |= ((value >> channel) & 1) << shift
      value >>= 3
    colours[index] = rgb
  return colours


def save_label_png(mask: np.ndarray, path: str) -> None:
  """A palette PNG of class indices (pixel value = index)."""
  import PIL.Image  # pylint: disable=g-import-not-at-top
  mask = np.ascontiguousarray(mask, np.uint8)
  image = PIL.Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.tobytes())
  image.putpalette(palette().ravel().tolist())
  image.save(path, format="PNG")


def predict_folder(checkpoint_path: str, images_dir: str, output_dir: str, *,
                   step: Optional[int] = None, batch_size: int = 16,
                   probabilities: bool = True) -> dict[str, Any]:
  """Segments every image of `images_dir` into `output_dir` (module docstring).

  Returns {"run_dir", "step", "images": number written, "output_dir"}.
  """
  items = list_images(images_dir)
  out = os.path.realpath(os.path.expanduser(output_dir))
  if out == os.path.realpath(os.path.expanduser(images_dir)):
    raise PredictError(f"--output {output_dir} is the images folder; the label PNGs would "
                       "overwrite .png images there. Choose another folder.")
  predictor = Predictor(checkpoint_path, step, batch_size)
  os.makedirs(out, exist_ok=True)
  names = predictor.recipe.class_names
  fileio.write_text(os.path.join(out, "classes.txt"), "\n".join(names) + "\n")
  # A few batches at a time: the decoded images of a large folder need not fit in memory.
  chunk = 8 * predictor.batch_size
  for start in range(0, len(items), chunk):
    part = items[start:start + chunk]
    results = predictor([read_image(path) for _, path in part])
    for (name, _), result in zip(part, results):
      save_label_png(result.mask, os.path.join(out, name + ".png"))
      if probabilities:
        np.savez_compressed(os.path.join(out, name + ".npz"),
                            probabilities=result.probabilities,
                            class_names=np.asarray(names))
  logging.info("Wrote %d label PNGs to %s (run %s, step %d).", len(items), out,
               predictor.run_dir, predictor.step)
  return {"run_dir": predictor.run_dir, "step": predictor.step, "images": len(items),
          "output_dir": out}
