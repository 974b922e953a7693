"""scikit-learn digits (the CIFAR composition on bundled data) and two moons (§5.1.1)."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from jaxpu import data as data_lib
from jaxpu.data import digits
from jaxpu.data import moons


def test_digits_split_and_composition():
  ids_train, images, labels = digits.load_arrays("train", relevant=(3, 5), image_size=8)
  ids_test, _, labels_test = digits.load_arrays("test", relevant=(3, 5), image_size=8)
  assert len(ids_train) == 1347 and len(ids_test) == 450
  assert not set(ids_train) & set(ids_test) and len(set(ids_train) | set(ids_test)) == 1797
  reference = load_digits()
  target = reference.target[ids_train]
  np.testing.assert_array_equal(labels, np.select([target == 3, target == 5], [1, 2], 0))
  expected = np.round(reference.images[ids_train] * 255 / 16).astype(np.uint8)
  np.testing.assert_array_equal(images[..., 0], expected)
  np.testing.assert_array_equal(images[..., 0], images[..., 2])
  with pytest.raises(ValueError, match="relevant must be distinct digits"):
    digits.load_arrays("train", relevant=(3, 3))


def test_digits_pipeline_and_train_step():
  from tests.test_pipeline import run_train_step
  data = data_lib.make_classification_data("digits", batch_size=8, corruption="pu_labels:0.5")
  assert data.num_classes == 6 and data.class_names == (
      "other", "digit_0", "digit_1", "digit_2", "digit_3", "digit_4")
  assert data.image_shape == (32, 32, 3)
  assert data.num_train_examples == 1347 and data.steps_per_epoch == 1347 // 8
  # The CIFAR test's model and shapes (11 outputs cover labels 0..5): one compile per process.
  run_train_step(data, "cifar_cnn", num_classes=11)


def test_moons_are_two_noisy_half_circles():
  points, labels = moons.make_moons(seed=0)
  assert points.shape == (800, 2) and np.bincount(labels).tolist() == [400, 400]
  centres = np.where(labels[:, None] == 0, [0.0, 0.0], [1.0, 0.5])
  radius = np.linalg.norm(points - centres, axis=1)
  assert abs(radius.mean() - 1) < 0.02 and 0.07 < radius.std() < 0.13  # noise 0.1
  upper = np.where(labels == 0, points[:, 1] - centres[:, 1], centres[:, 1] - points[:, 1])
  assert np.mean(upper > -0.2) > 0.95  # each a half circle (upper / lower)
  np.testing.assert_array_equal(points, moons.make_moons(seed=0)[0])
  assert not np.array_equal(points, moons.make_moons(seed=1)[0])


def test_moons_pipeline_pu_labels_and_train_step():
  from tests.test_pipeline import run_train_step
  data = data_lib.make_classification_data("moons", batch_size=800, corruption="pu_labels:0.5",
                                           with_true_label=True, as_numpy=True)
  assert data.image_shape == (2,) and data.num_classes == 2
  batch = next(data.train_iter())
  true, label = batch["true_label"], batch["label"]
  assert np.bincount(true).tolist() == [400, 400]
  assert np.all(label[true == 0] == 0)
  assert abs(np.mean(label[true == 1] == 1) - 0.5) < 0.08  # half of the positives unlabeled
  np.testing.assert_array_equal(np.sort(batch["image"], axis=0),
                                np.sort(moons.make_moons(seed=0)[0], axis=0))
  on_device = data_lib.make_classification_data("moons", batch_size=8)
  numpy_batches = data_lib.make_classification_data("moons", batch_size=8, as_numpy=True)
  # The device-resident moons batches are the tf.data ones, also when resuming mid-epoch.
  for start in (0, 99):
    a, b = next(on_device.train_iter(start)), next(numpy_batches.train_iter(start))
    np.testing.assert_array_equal(np.asarray(a["image"]), b["image"])
    np.testing.assert_array_equal(np.asarray(a["label"]), b["label"])
  run_train_step(on_device, "mlp", loss="sigmoid_negative")
