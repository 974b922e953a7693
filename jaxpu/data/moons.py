"""Two moons (§5.1.1): 400 samples per class, small Gaussian noise.

Class 1 (positive) is the lower moon centred at (1, 0.25), class 0 the upper
one at (0, 0.25): points (cos t, sin t) and (1 - cos t, 0.5 - sin t), t
uniform in [0, π], plus N(0, `noise`²) on each coordinate, as in
`sklearn.datasets.make_moons` but with random angles ("drawn randomly", §5.1.1).
Train and test are independent draws (seeds `seed` and `seed + 1`).

Examples: `id` (int64; test ids start at 10**6), `image` (float32 [2], the
features; the "image" key keeps every batch the same dict), `label` (int32).
"""

from __future__ import annotations

import numpy as np

from jaxpu.data._tf import tf  # hides the GPUs from TensorFlow before any TF work

CLASS_NAMES = ("negative", "positive")
PER_CLASS = 400
NOISE = 0.1
TEST_ID_OFFSET = 10 ** 6


def make_moons(per_class: int = PER_CLASS, noise: float = NOISE, seed: int = 0):
  """(points float32 [2n, 2], labels int32 [2n]): class 0 first, then class 1."""
  rng = np.random.default_rng(seed)
  t0, t1 = rng.uniform(0, np.pi, (2, per_class))
  upper = np.stack([np.cos(t0), np.sin(t0)], -1)
  lower = np.stack([1 - np.cos(t1), 0.5 - np.sin(t1)], -1)
  points = np.concatenate([upper, lower]) + rng.normal(0, noise, (2 * per_class, 2))
  labels = np.repeat(np.arange(2, dtype=np.int32), per_class)
  return points.astype(np.float32), labels


def classification_examples(split: str, *, seed: int = 0, per_class: int = PER_CLASS,
                            noise: float = NOISE, shard: tuple[int, int] = (0, 1)):
  """This host's part of `split` ("train"/"test") as examples {id, image, label}."""
  if split not in ("train", "test"):
    raise ValueError(f"moons has splits 'train' and 'test', got {split!r}.")
  test = split == "test"
  points, labels = make_moons(per_class, noise, seed + int(test))
  ids = np.arange(len(labels), dtype=np.int64) + (TEST_ID_OFFSET if test else 0)
  ds = tf.data.Dataset.from_tensor_slices({"id": ids, "image": points, "label": labels})
  return ds.shard(shard[1], shard[0]) if shard[1] > 1 else ds
