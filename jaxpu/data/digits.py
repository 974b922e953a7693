"""scikit-learn's bundled handwritten digits, composed like CIFAR-10 + 100.

Real images that ship offline, for fast runs of the §5.1.2 protocol: the
`relevant` digits (default 0-4) are the classes 1..5 in that order, every
other digit is the non-relevant class 0. The 1797 8×8 images (grey levels
0..16) are split once with a fixed permutation: 1347 train, 450 test.
Images are scaled to uint8, resized (bilinear) to `image_size` and repeated
over 3 channels, so the CIFAR models apply as they are.

Examples: `id` (int64, the index in `sklearn.datasets.load_digits()`),
`image` (uint8 [S, S, 3]), `label` (int32).
"""

from __future__ import annotations

import numpy as np

from jaxpu.data._tf import tf  # hides the GPUs from TensorFlow before any TF work

DEFAULT_RELEVANT = (0, 1, 2, 3, 4)
NUM_TRAIN = 1347
MEAN = (0.305,) * 3
STD = (0.323,) * 3


def class_names(relevant=DEFAULT_RELEVANT) -> tuple[str, ...]:
  return ("other",) + tuple(f"digit_{d}" for d in relevant)


def load_arrays(split: str, relevant=DEFAULT_RELEVANT, image_size: int = 32):
  """(ids, images uint8 [N, S, S, 3], labels int32 [N]) of `split` ("train"/"test")."""
  from sklearn.datasets import load_digits
  relevant = tuple(int(d) for d in relevant)
  if not relevant or len(set(relevant)) != len(relevant) or not set(relevant) <= set(range(10)):
    raise ValueError(f"relevant must be distinct digits 0..9, got {relevant!r}.")
  if split not in ("train", "test"):
    raise ValueError(f"digits has splits 'train' and 'test', got {split!r}.")
  digits = load_digits()
  order = np.random.default_rng(0).permutation(len(digits.target))
  ids = np.sort(order[:NUM_TRAIN] if split == "train" else order[NUM_TRAIN:])
  images = np.round(digits.images[ids] * (255 / 16)).astype(np.float32)[..., None]
  if image_size != 8:
    images = tf.image.resize(images, (image_size, image_size), method="bilinear").numpy()
  images = np.repeat(np.clip(np.round(images), 0, 255).astype(np.uint8), 3, axis=-1)
  lookup = np.zeros(10, np.int32)
  lookup[list(relevant)] = np.arange(1, len(relevant) + 1)
  return ids.astype(np.int64), images, lookup[digits.target[ids]]


def classification_examples(split: str, *, relevant=DEFAULT_RELEVANT, image_size: int = 32,
                            shard: tuple[int, int] = (0, 1)):
  """This host's part of `split` as examples {id, image, label}."""
  ids, images, labels = load_arrays(split, relevant, image_size)
  ds = tf.data.Dataset.from_tensor_slices({"id": ids, "image": images, "label": labels})
  return ds.shard(shard[1], shard[0]) if shard[1] > 1 else ds
