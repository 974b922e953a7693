"""Batches of a prepared dataset: exact-resume epoch order, preprocessing, delivery.

A `Data` holds a dataset's examples in memory as uint8 NumPy arrays (one dict
per split, see `jaxpu.data.pipeline`, where tf.data loads, selects and
corrupts them) and serves them as batches: NumPy gathers the examples of a
batch by index, flips them (optional) and preprocesses the images
(`preprocess`), in up to 8 threads a few batches ahead, and `_deliver` turns
each batch into global device-sharded `jax.Array`s
(`jaxpu.parallel.shard_batch`), two batches ahead of the step (JAX
dispatches steps asynchronously, so the next batches are made while the
devices compute). A batch depends only on its indices, so the threads never
change it.

Exact resume: the iterator state is a function of the step number. Epoch e
visits `stateless_shuffle(range(N), key(seed, e))`, cut to `steps_per_epoch
= N // local batch` full batches (the remainder is left out that epoch), and
flips position p of epoch e iff `stateless_uniform(key'(seed, e))[p] < 0.5`
(TensorFlow's stateless Philox ops: the same order on every machine). So
`train_iter(k)` starts at epoch `k // steps_per_epoch`, skips `k %
steps_per_epoch` batches, and yields exactly the batches k, k+1, ... of
`train_iter(0)`.

Evaluation batches are in dataset order; the last one is padded with
label 255 (void), which every metric ignores, so each example counts once.

Preprocessing of the uint8 RGB images (`PREPROCESSINGS`):
- `"standardize"`: `(image / 255 - mean) / std` per RGB channel, with the
  dataset's `mean`/`std` (in [0, 1] units);
- `"caffe"`: the FCN reference's Caffe input: channels reversed to BGR, float
  0-255, minus the per-channel mean `CAFFE_MEAN_BGR` (B, G, R), no scaling.
"""

from __future__ import annotations

import collections
from concurrent import futures
import itertools
import math
import os
import zlib
from typing import Iterator, Sequence

import jax
import numpy as np

from jaxpu import parallel
from jaxpu.data._tf import tf  # hides the GPUs from TensorFlow before any TF work
from jaxpu.data import classes

PREPROCESSINGS = ("standardize", "caffe")
# The FCN reference's (and the thesis') Caffe input mean, B, G, R on 0-255.
CAFFE_MEAN_BGR = (104.00699, 116.66877, 122.67892)
_SHUFFLE_SALT = zlib.crc32(b"shuffle")
_FLIP_SALT = zlib.crc32(b"flip")


def check_preprocessing(preprocessing: str) -> str:
  """`preprocessing` if it is one of `PREPROCESSINGS`, else a ValueError naming them."""
  if preprocessing not in PREPROCESSINGS:
    raise ValueError(f"Unknown preprocessing {preprocessing!r}; use one of "
                     f"{list(PREPROCESSINGS)}.")
  return preprocessing


def preprocess(image, preprocessing: str, mean: Sequence[float],
               std: Sequence[float]) -> np.ndarray:
  """float32 network input from uint8 RGB `image` `[..., 3]` (NumPy).

  Args:
    image: uint8 RGB images, channels last.
    preprocessing: `"standardize"` or `"caffe"` (module docstring).
    mean, std: per channel, in the preprocessing's units: `"standardize"`:
      RGB in [0, 1]; `"caffe"`: BGR on 0-255 (Caffe: `CAFFE_MEAN_BGR`, std 1).
  """
  check_preprocessing(preprocessing)
  mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
  image = np.asarray(image).astype(np.float32)
  if preprocessing == "caffe":
    return (image[..., ::-1] - mean) / std
  return (image / np.float32(255.0) - mean) / std


def unpreprocess(images: np.ndarray, preprocessing: str, mean: Sequence[float],
                 std: Sequence[float]) -> np.ndarray:
  """RGB images in [0, 1] (NumPy, e.g. for plots) from `preprocess`'s output."""
  check_preprocessing(preprocessing)
  images = np.asarray(images) * np.asarray(std) + np.asarray(mean)
  if preprocessing == "caffe":
    return images[..., ::-1] / 255.0
  return images


def _local_batch(batch_size: int, mesh) -> int:
  if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
    raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
  devices = mesh.devices.size
  if batch_size % devices:
    raise ValueError(f"The global batch size {batch_size} is not divisible by the {devices} "
                     f"devices of the mesh; use a multiple of {devices} (e.g. "
                     f"{devices * max(1, round(batch_size / devices))}).")
  return batch_size // jax.process_count()


def _check_step(start_step) -> int:
  if isinstance(start_step, bool) or not isinstance(start_step, (int, np.integer)) \
      or start_step < 0:
    raise ValueError(f"start_step must be a non-negative int, got {start_step!r}.")
  return int(start_step)


def _over_hosts(value: int, reduce=np.min) -> int:
  if jax.process_count() == 1:
    return int(value)
  from jax.experimental import multihost_utils
  return int(reduce(multihost_utils.process_allgather(np.asarray(value))))


class _Batcher:
  """Turns index batches into preprocessed NumPy batch dicts.

  `kind`: "segmentation" (flips move the label masks too), "classification"
  (images), or "features" (moons: no scaling, no flips).
  """

  def __init__(self, arrays, kind, mean, std, augment, preprocessing="standardize"):
    self.arrays = {k: v for k, v in arrays.items() if k != "id"}
    self.kind, self.augment = kind, augment
    self.mean, self.std, self.preprocessing = mean, std, preprocessing

  def __call__(self, index, flip=None, valid=None) -> dict[str, np.ndarray]:
    """The examples at `index`, the positions where `flip` is set mirrored
    (width axis) if augmenting, the labels of those not `valid` void."""
    batch = {k: v[index] for k, v in self.arrays.items()}
    image = batch["image"]
    if self.kind != "features":
      image = preprocess(image, self.preprocessing, self.mean, self.std)
    out = {"image": image}
    for key in ("label", "true_label"):
      if key in batch:
        label = batch[key].astype(np.int32)
        if valid is not None:
          label[~valid] = classes.VOID
        out[key] = label
    if self.augment and self.kind != "features":
      flipped = ("image", "label", "true_label") if self.kind == "segmentation" else ("image",)
      for key in flipped:
        if key in out:
          out[key][flip] = out[key][flip][:, :, ::-1]
    return out


# (process id, workers) -> the threads that make batches: started once per process, shared
# by every iterator (a run's train and eval iterators would otherwise each start their own).
_POOLS: dict = {}


def _pool(workers: int) -> futures.ThreadPoolExecutor:
  key = (os.getpid(), workers)  # a forked child starts its own threads
  if key not in _POOLS:
    _POOLS[key] = futures.ThreadPoolExecutor(workers, thread_name_prefix="jaxpu-batches")
  return _POOLS[key]


def _in_threads(make, arguments: Iterator[tuple], workers: int) -> Iterator:
  """`make(*a)` for each `a` of `arguments`, in order, computed `2 × workers` ahead by
  `workers` threads (NumPy releases the GIL in its array loops). Closing the iterator
  early cancels what has not started."""
  if workers <= 1:
    yield from itertools.starmap(make, arguments)
    return
  pool, pending = _pool(workers), collections.deque()
  try:
    for args in arguments:
      pending.append(pool.submit(make, *args))
      if len(pending) >= 2 * workers:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()
  finally:
    for future in pending:
      future.cancel()


def _deliver(batches: Iterator[dict], mesh, as_numpy: bool, device_prefetch: int = 2):
  """The NumPy `batches`, as global device arrays unless `as_numpy`, placed
  `device_prefetch` batches ahead."""
  if as_numpy:
    yield from batches
    return
  queue = collections.deque()
  for batch in batches:
    queue.append(parallel.shard_batch(batch, mesh))
    if len(queue) > device_prefetch:
      yield queue.popleft()
  while queue:
    yield queue.popleft()


_MAX_WORKERS = 8  # threads that gather and preprocess batches (at most the CPU count)
_EPOCHS_PER_CALL = 16  # epoch orders computed per TensorFlow call (moons: an epoch a step)


@tf.function(reduce_retracing=True, autograph=False)
def _epoch_orders(seed, first_epoch, n, size):
  """(positions [16, size], flips [16, size]) of the epochs `first_epoch`, ...,
  `first_epoch + 15`: the first `size` positions of a shuffle of range(n), and
  `size` flips (module docstring)."""
  def epoch_order(epoch):
    key = tf.random.experimental.stateless_fold_in(
        tf.stack([seed, tf.constant(_SHUFFLE_SALT, tf.int64)]), epoch, alg="philox")
    order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), key,
                                                     alg="philox")[:size]
    flip_key = tf.random.experimental.stateless_fold_in(
        tf.stack([seed, tf.constant(_FLIP_SALT, tf.int64)]), epoch, alg="philox")
    return order, tf.random.stateless_uniform([size], flip_key, alg="philox") < 0.5
  epochs = first_epoch + tf.range(_EPOCHS_PER_CALL, dtype=tf.int64)
  return tf.map_fn(epoch_order, epochs, fn_output_signature=(tf.int64, tf.bool))


class Data:
  """A prepared dataset: iterators plus metadata (see the module docstring).

  Attributes:
    name, task: the dataset and task.
    num_classes: number of label values, background included.
    class_names: one name per label value.
    image_shape: shape of one `"image"` (`(H, W, 3)`, or `(2,)` for moons).
    batch_size: the global batch size.
    steps_per_epoch: full global batches per epoch of the training split.
    num_train_examples, num_eval_examples: after selection, over all hosts.
    preprocessing: how images become network inputs, `"standardize"` or
      `"caffe"` (module docstring; `unpreprocess` inverts it).
    mean, std: the per-channel normalisation of the images, in the
      preprocessing's units (`"caffe"`: B, G, R on 0-255).
    fingerprint: a digest of the files the examples come from where their
      location does not fix them (a user's `folder`), else None.
  """

  def __init__(self, *, name, task, kind, class_names, train, evaluation, batch_size,
               eval_batch_size, seed, augment, mean, std, mesh, as_numpy,
               preprocessing="standardize", fingerprint=None):
    self.name, self.task, self.kind = name, task, kind
    self.fingerprint = fingerprint
    self.class_names = tuple(class_names)
    self.num_classes = len(self.class_names)
    self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
    self.seed, self.augment = seed, augment
    self.preprocessing = check_preprocessing(preprocessing)
    self.mean, self.std = tuple(mean), tuple(std)
    self._mesh, self._as_numpy = mesh, as_numpy
    self._local_batch = _local_batch(batch_size, mesh)
    self._local_eval_batch = _local_batch(eval_batch_size, mesh)
    self._train, self._eval = train, evaluation
    local_train = len(train["id"]) if train else 0
    local_eval = len(evaluation["id"]) if evaluation else 0
    if local_train == 0:
      raise ValueError(f"{name}: the training split is empty after selection "
                       "(check fold/phase/single_object).")
    self.num_train_examples = _over_hosts(local_train, np.sum)
    self.num_eval_examples = _over_hosts(local_eval, np.sum)
    self.steps_per_epoch = _over_hosts(local_train) // self._local_batch
    if self.steps_per_epoch == 0:
      raise ValueError(f"{name}: batch size {batch_size} exceeds the "
                       f"{self.num_train_examples} training examples; use a smaller batch.")
    self.num_eval_batches = math.ceil(_over_hosts(local_eval, np.max) / self._local_eval_batch)
    self.image_shape = tuple(train["image"].shape[1:])
    self._resident = None
    self._workers = min(_MAX_WORKERS, os.cpu_count() or 1)

  def __repr__(self):
    return (f"Data({self.name!r}, task={self.task!r}, num_classes={self.num_classes}, "
            f"image_shape={self.image_shape}, batch_size={self.batch_size}, "
            f"steps_per_epoch={self.steps_per_epoch}, train={self.num_train_examples}, "
            f"eval={self.num_eval_examples})")

  def unpreprocess(self, images) -> np.ndarray:
    """RGB images in [0, 1] from delivered `"image"`s (inverts the preprocessing)."""
    return unpreprocess(images, self.preprocessing, self.mean, self.std)

  def epoch_order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions [steps, batch], flips [steps, batch]) of this host's epoch `epoch`."""
    return next(self._epochs(epoch))

  def _epochs(self, first_epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`epoch_order` of the epochs `first_epoch`, `first_epoch + 1`, ... (endless)."""
    steps, batch = self.steps_per_epoch, self._local_batch
    n = len(self._train["id"])
    for chunk in itertools.count(first_epoch, _EPOCHS_PER_CALL):
      orders, flips = _epoch_orders(*(tf.constant(x, tf.int64) for x in (
          self.seed, chunk, n, steps * batch)))
      shape = (_EPOCHS_PER_CALL, steps, batch)
      yield from zip(orders.numpy().reshape(shape), flips.numpy().reshape(shape))

  def _batch_orders(self, start_step: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(positions, flips) of this host's batches from `start_step` on, endless."""
    first_epoch, skip = divmod(_check_step(start_step), self.steps_per_epoch)
    return itertools.islice(((index, flip) for order, flips in self._epochs(first_epoch)
                             for index, flip in zip(order, flips)), skip, None)

  def train_batches(self, start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """This host's training batches from `start_step` on, as NumPy dicts (endless)."""
    batcher = _Batcher(self._train, self.kind, self.mean, self.std, self.augment,
                       self.preprocessing)
    return _in_threads(batcher, self._batch_orders(start_step), self._workers)

  def _resident_batches(self, start_step: int) -> Iterator[dict]:
    """Feature datasets (moons): the training set lives on the devices and each
    step is one jitted gather, the same batches as `train_batches` (whose
    per-batch host overhead would exceed an MLP step)."""
    if self._resident is None:
      keys = [k for k in ("image", "label", "true_label") if k in self._train]
      replicated = parallel.replicated_sharding(self._mesh)
      data = {k: jax.device_put(self._train[k].astype(
          np.float32 if k == "image" else np.int32), replicated) for k in keys}
      gather = jax.jit(lambda d, i: {k: v[i] for k, v in d.items()},
                       out_shardings=parallel.batch_sharding(self._mesh))
      self._resident = data, gather
    data, gather = self._resident
    return (gather(data, index.astype(np.int32)) for index, _ in self._batch_orders(start_step))

  def eval_batches(self) -> Iterator[dict[str, np.ndarray]]:
    """This host's evaluation batches in dataset order, as NumPy dicts (the last
    padded with void)."""
    n = len(self._eval["id"]) if self._eval else 0
    if n == 0:
      raise ValueError(f"{self.name}: the evaluation split is empty after selection.")
    batch = self._local_eval_batch
    batcher = _Batcher(self._eval, self.kind, self.mean, self.std, augment=False,
                       preprocessing=self.preprocessing)
    positions = (b * batch + np.arange(batch) for b in range(self.num_eval_batches))
    return _in_threads(batcher, ((np.minimum(p, n - 1), None, p < n) for p in positions),
                       self._workers)

  def train_iter(self, start_step: int = 0) -> Iterator[dict]:
    """Endless training batches from step `start_step` (for `jaxpu.train.fit`)."""
    if self.kind == "features" and not self._as_numpy and jax.process_count() == 1:
      return self._resident_batches(start_step)
    return _deliver(self.train_batches(start_step), self._mesh, self._as_numpy)

  def eval_iter(self) -> Iterator[dict]:
    """One pass over the evaluation split, in order (every pass the same batches)."""
    return _deliver(self.eval_batches(), self._mesh, self._as_numpy)
