"""CIFAR-10 + CIFAR-100 (§5.1.2): ten relevant classes and one non-relevant class.

The thesis' composition: CIFAR-10's ten classes are the relevant classes
1..10 (CIFAR-10 label + 1) and every CIFAR-100 image is the non-relevant
class 0, 11 classes in all. Both come from TFDS (`cifar10`, `cifar100`),
prepared in the data dir (`tfds build cifar10 cifar100 --data_dir=DIR` on a
machine with network access, then `--data_dir=DIR` for the experiments; from
Python, `download=True` lets TFDS do it). Missing data raises at once with
that instruction instead of trying the network.

Examples: `id` (int64: a fingerprint of "cifar10/<tfds id>" or
"cifar100/<tfds id>", stable across runs and hosts), `image` (uint8
[32, 32, 3]), `label` (int32 0..10).
"""

from __future__ import annotations

from jaxpu.data._tf import do_not_convert, tf  # hides the GPUs from TensorFlow before any TF work
import tensorflow_datasets as tfds

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
CLASS_NAMES = ("cifar100",) + CIFAR10_CLASSES
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def _read(name: str, split: str, data_dir: str, download: bool) -> tf.data.Dataset:
  builder = tfds.builder(name, data_dir=data_dir)
  if download:
    builder.download_and_prepare()
  try:
    return builder.as_dataset(split=split, shuffle_files=False)
  except AssertionError as e:  # TFDS: "could not find data in ..."
    raise FileNotFoundError(
        f"TFDS dataset {name!r} is not prepared in the data dir {data_dir!r}. Run "
        f"`tfds build cifar10 cifar100 --data_dir={data_dir}` (needs network access; on "
        "another machine, copy that folder here afterwards), then rerun with "
        f"--data_dir={data_dir}.") from e


def classification_examples(split: str, *, data_dir: str | None = None,
                            shard: tuple[int, int] = (0, 1), download: bool = False):
  """This host's part of `split` ("train"/"test") of CIFAR-10 followed by CIFAR-100.

  `download=True` lets TFDS download and prepare missing data (needs network).
  """
  from jaxpu.data import synthetic
  data_dir = data_dir or synthetic.default_data_dir()
  parts = []
  for name, relevant in (("cifar10", True), ("cifar100", False)):
    ds = _read(name, synthetic.host_split(split, shard), data_dir, download)

    @do_not_convert
    def unify(ex, name=name, relevant=relevant):
      label = tf.cast(ex["label"], tf.int32) + 1 if relevant else tf.constant(0, tf.int32)
      key = tf.strings.to_hash_bucket_fast(tf.strings.join([name, "/", ex["id"]]), 2 ** 62)
      return {"id": key, "image": ex["image"], "label": label}
    parts.append(ds.map(unify, num_parallel_calls=tf.data.AUTOTUNE))
  return parts[0].concatenate(parts[1])
