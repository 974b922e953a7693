"""CIFAR-10 + CIFAR-100 composition (§5.1.2) on TFDS mock data."""

import numpy as np
import pytest
import tensorflow_datasets as tfds
# Imported at collection: tfds.testing loads (and pytest rewrites) its test
# utilities lazily, which can crash CPython 3.11's parser ("AST constructor
# recursion depth mismatch") when it happens after a test whose Orbax read
# left an asyncio task exception behind.
from tensorflow_datasets.testing import mocking  # pylint: disable=unused-import

from jaxpu import data as data_lib
from jaxpu.data import cifar

N = 12  # mock examples per split of each dataset


@pytest.fixture
def mocked():
  with tfds.testing.mock_data(num_examples=N, policy=tfds.testing.MockPolicy.USE_CODE):
    yield


def _labels(name, split):
  ds = tfds.builder(name).as_dataset(split=split, shuffle_files=False)
  return np.array([ex["label"] for ex in ds.as_numpy_iterator()])


def test_composition_ten_relevant_classes_and_cifar100_as_class_0(mocked, tmp_path):
  data = data_lib.make_classification_data("cifar", batch_size=8, data_dir=str(tmp_path),
                                           as_numpy=True)
  assert data.num_classes == 11 and data.class_names[0] == "cifar100"
  assert data.class_names[1:] == cifar.CIFAR10_CLASSES
  assert data.num_train_examples == data.num_eval_examples == 2 * N
  labels = np.concatenate([b["label"] for b in data.eval_iter()])  # dataset order, 3 full batches
  expected = np.concatenate([_labels("cifar10", "test") + 1, np.zeros(N, np.int64)])
  np.testing.assert_array_equal(labels, expected)
  batch = next(data.train_iter())
  assert batch["image"].shape == (8, 32, 32, 3) and batch["image"].dtype == np.float32


def test_ids_are_stable_and_distinct_across_the_two_datasets(mocked, tmp_path):
  ids = [np.array([ex["id"] for ex in cifar.classification_examples(
      "train", data_dir=str(tmp_path)).as_numpy_iterator()]) for _ in range(2)]
  np.testing.assert_array_equal(ids[0], ids[1])
  assert len(set(ids[0].tolist())) == 2 * N


def test_pu_labels_on_cifar(mocked, tmp_path):
  data = data_lib.make_classification_data("cifar", batch_size=8, data_dir=str(tmp_path),
                                           corruption="pu_labels:0.0", with_true_label=True,
                                           as_numpy=True)
  batches = [next(it) for it in [data.train_iter()] for _ in range(3)]
  label = np.concatenate([b["label"] for b in batches])
  true = np.concatenate([b["true_label"] for b in batches])
  assert (true > 0).any() and np.all(label == 0)  # labeled fraction 0: every relevant -> 0


def test_cifar_batch_feeds_the_train_step_on_4_devices(mocked, tmp_path):
  from tests.test_pipeline import run_train_step
  data = data_lib.make_classification_data("cifar", batch_size=8, data_dir=str(tmp_path))
  run_train_step(data, "cifar_cnn")


def test_missing_cifar_says_what_to_run(tmp_path):
  with pytest.raises(FileNotFoundError, match="tfds build cifar10 cifar100 --data_dir=") as info:
    data_lib.make_classification_data("cifar", batch_size=8, data_dir=str(tmp_path))
  # only what a user of the experiments can do: no flag sets `download=True`
  assert "download=True" not in str(info.value)
  assert f"rerun with --data_dir={tmp_path}" in str(info.value)
