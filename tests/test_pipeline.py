"""Input pipelines: exact resume, sharded delivery, selection, and the train step."""

import threading

import jax
import numpy as np
import pytest

from jaxpu import data as data_lib
from jaxpu import models
from jaxpu import train
from jaxpu.data import classes
from jaxpu.data import pipeline
from jaxpu.data import synthetic

TINY = synthetic.synthetic_config(num_train_per_class=4, num_test_per_class=1)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("tfds"))
  synthetic.load(TINY, path)
  return path


@pytest.fixture(scope="module")
def plain(data_dir):
  """All 20 classes, no corruption, no flips, NumPy batches."""
  return _seg(data_dir, as_numpy=True)


def _seg(data_dir, **kwargs):
  as_numpy, mesh = kwargs.pop("as_numpy", False), kwargs.pop("mesh", None)
  kwargs = {"batch_size": 8, "config": TINY, "data_dir": data_dir, **kwargs}
  return data_lib.make_segmentation_data(data_lib.SegmentationSpec("synthetic", **kwargs),
                                         as_numpy=as_numpy, mesh=mesh)


def _take(iterator, n):
  return [next(iterator) for _ in range(n)]


_STEPS = {}


def run_train_step(data, model_name, loss="softmax_cross_entropy", num_classes=None,
                   **model_options):
  """Feeds one batch of `data` into jaxpu.train's train step on all (4) devices.

  The state and the jitted step are cached per model, loss and input shape (the
  step does not donate the state), so datasets of equal shapes share one compile.
  """
  mesh = train.make_mesh()
  binary = loss in ("logistic", "weighted_logistic", "sigmoid_negative")
  outputs = 1 if binary else (num_classes or data.num_classes)
  batch = next(data.train_iter())
  assert all(v.sharding == train.batch_sharding(mesh) for v in batch.values())
  key = (model_name, loss, outputs, tuple(sorted(model_options.items())), batch["image"].shape)
  if key not in _STEPS:
    model = models.get(model_name, outputs, **model_options)
    optimizer = train.make_optimizer("adam", 1e-3)
    state = train.create_train_state(model, optimizer, 0, batch, mesh=mesh)
    step = train.make_train_step(model, optimizer, train.make_loss_fn(loss, outputs), mesh,
                                 donate=False)
    _STEPS[key] = state, step
  state, step = _STEPS[key]
  new_state, metrics = step(state, batch)
  assert int(new_state.step) == 1
  assert np.isfinite(float(metrics["loss"])) and float(metrics["loss"]) > 0
  changed = jax.tree.map(lambda a, b: not np.allclose(np.asarray(a), np.asarray(b)),
                         state.params, new_state.params)
  assert any(jax.tree.leaves(changed))
  return metrics


def test_resume_from_step_k_gives_the_same_batches(data_dir):
  data = _seg(data_dir, augment=True, corruption="unsegment_objects:0.5", as_numpy=True)
  assert data.steps_per_epoch == 10  # 80 images, batches of 8
  fresh = _take(data.train_iter(0), 25)
  resumed = _take(data.train_iter(13), 12)
  for a, b in zip(fresh[13:], resumed):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
  again = _take(data.train_iter(0), 3)
  np.testing.assert_array_equal(again[2]["image"], fresh[2]["image"])


def test_epochs_visit_every_example_once_in_a_new_order(data_dir, plain):
  batches = _take(plain.train_iter(), 20)

  def epoch_keys(epoch):
    return [b["image"][i].tobytes() for b in batches[10 * epoch:10 * epoch + 10]
            for i in range(8)]
  first, second = epoch_keys(0), epoch_keys(1)
  assert len(set(first)) == 80 and set(first) == set(second)
  assert first != second
  other_seed = _take(_seg(data_dir, as_numpy=True, seed=1).train_iter(), 1)[0]
  assert not np.array_equal(other_seed["image"], batches[0]["image"])


def test_flip_augmentation_flips_images_and_labels_together(data_dir, plain):
  flipped = _seg(data_dir, as_numpy=True, augment=True)
  a, b = next(plain.train_iter()), next(flipped.train_iter())
  same = [np.array_equal(a["image"][i], b["image"][i]) for i in range(8)]
  mirrored = [np.array_equal(a["image"][i][:, ::-1], b["image"][i]) and
              np.array_equal(a["label"][i][:, ::-1], b["label"][i]) for i in range(8)]
  assert all(s or m for s, m in zip(same, mirrored)) and any(mirrored)


def test_global_arrays_are_sharded_over_the_devices(data_dir, plain):
  assert jax.device_count() == 4
  data = _seg(data_dir)
  batch = next(data.train_iter())
  numpy_batch = next(plain.train_iter())
  for key, value in batch.items():
    assert isinstance(value, jax.Array)
    assert value.sharding == train.batch_sharding(train.make_mesh())
    assert {s.data.shape[0] for s in value.addressable_shards} == {2}
    np.testing.assert_array_equal(np.asarray(value), numpy_batch[key])
  assert batch["image"].shape == (8, 32, 32, 3) and batch["image"].dtype == np.float32
  assert batch["label"].shape == (8, 32, 32) and batch["label"].dtype == np.int32


def test_batch_size_must_divide_over_the_devices(data_dir):
  with pytest.raises(ValueError, match="global batch size 6 is not divisible by the 4 devices"):
    _seg(data_dir, batch_size=6)
  one = train.make_mesh(jax.devices()[:1])
  assert next(_seg(data_dir, batch_size=3, mesh=one).train_iter())["image"].shape[0] == 3


def test_eval_batches_cover_every_example_once_and_normalise(data_dir, plain):
  data = plain
  batches = list(data.eval_iter())
  assert data.num_eval_examples == 20 and len(batches) == 3
  valid = np.concatenate([(b["label"] != 255).any(axis=(1, 2)) for b in batches])
  assert valid.sum() == 20 and not valid[20:].any()
  builder = synthetic.load(TINY, data_dir)
  raw = list(builder.as_dataset(split="test", shuffle_files=False).as_numpy_iterator())
  for i in (0, 19):
    image = batches[i // 8]["image"][i % 8]
    expected = (raw[i]["image"] / 255.0 - np.array(data.mean)) / np.array(data.std)
    np.testing.assert_allclose(image, expected, atol=1e-6)
    np.testing.assert_array_equal(batches[i // 8]["label"][i % 8], raw[i]["class_mask"][..., 0])


def test_corruption_applies_to_training_labels_only(data_dir, plain):
  noisy = _seg(data_dir, as_numpy=True, corruption="unsegment_objects:0.5",
               with_true_label=True)
  batches = _take(noisy.train_iter(), 10)
  label = np.stack([b["label"] for b in batches])
  true = np.stack([b["true_label"] for b in batches])
  changed = label != true
  assert np.all(label[changed] == 0) and np.all(true[changed] > 0)
  per_image = changed.reshape(80, -1).any(axis=1)
  assert 0.25 < per_image.mean() < 0.75  # about half of the 80 objects unsegmented
  for a, b in zip(noisy.eval_iter(), plain.eval_iter()):
    np.testing.assert_array_equal(a["label"], b["label"])
    np.testing.assert_array_equal(a["true_label"], a["label"])


def test_a_split_is_read_once_per_process_and_gives_the_same_examples(data_dir, monkeypatch):
  reads = []
  read = synthetic.segmentation_examples
  monkeypatch.setattr(synthetic, "segmentation_examples",
                      lambda split, **kw: reads.append(split) or read(split, **kw))
  monkeypatch.setattr(pipeline, "_LOADED", type(pipeline._LOADED)())
  first = _seg(data_dir, as_numpy=True, corruption="mislabel_objects:0.5", task="binary")
  assert reads == ["train", "test"]
  again = _seg(data_dir, as_numpy=True, corruption="mislabel_objects:0.5", task="binary")
  other = _seg(data_dir, as_numpy=True, fold=1, corruption="unsegment_objects:0.5")
  assert reads == ["train", "test"]  # the other selection and task reuse what was read
  for a, b in zip(first.eval_iter(), again.eval_iter()):
    np.testing.assert_array_equal(a["label"], b["label"])
  np.testing.assert_array_equal(np.stack([b["label"] for b in _take(first.train_iter(), 3)]),
                                np.stack([b["label"] for b in _take(again.train_iter(), 3)]))
  assert other.num_train_examples < first.num_train_examples
  _seg(data_dir, as_numpy=True, train_split="test", eval_split="test")  # 3 keys of 4
  assert reads == ["train", "test"]
  pipeline.forget_read_splits()
  _seg(data_dir, as_numpy=True)
  assert reads == ["train", "test", "train", "test"]


def _labels(data):
  return np.unique(np.concatenate([b["label"].ravel() for b in _take(data.train_iter(), 10)]))


def test_fold_selection_and_tasks(data_dir):
  pre = _seg(data_dir, as_numpy=True, fold=1, phase="pretrain")
  assert pre.num_train_examples == 60 and pre.num_classes == 16
  assert pre.class_names[1] == classes.SYNTHETIC_CLASSES[5]  # id 6 is the first outside fold 1
  assert set(_labels(pre)) == set(range(16)) | {255}
  kept = _seg(data_dir, as_numpy=True, fold=1, fold_handling="background", with_true_label=True)
  assert kept.num_train_examples == 80  # fold-1 images kept, their objects as background
  batches = _take(kept.train_iter(), 10)
  per_image = np.concatenate([(b["true_label"] % 255 > 0).any(axis=(1, 2)) for b in batches])
  assert per_image.sum() == 60
  fine = _seg(data_dir, as_numpy=True, fold=1, phase="finetune")
  assert fine.num_train_examples == 20 and fine.num_eval_examples == 5
  assert set(_labels(fine)) == set(range(6)) | {255}
  binary = _seg(data_dir, as_numpy=True, fold=2, task="binary")
  assert binary.class_names == ("background", "foreground")
  assert set(_labels(binary)) == {0, 1, 255}
  cats = _seg(data_dir, as_numpy=True, fold=3, task="categories")
  assert cats.class_names == ("background", "round", "polygon", "holed_or_spiked")
  rc = _seg(data_dir, as_numpy=True, fold=1, task="random_categories:7", grouping_seed=2)
  assert rc.num_classes == 8 and set(_labels(rc)) == set(range(8)) | {255}
  target = _seg(data_dir, as_numpy=True, fold=1, task="target",
                corruption="false_positive_objects:1.0")
  assert target.class_names == ("background", classes.SYNTHETIC_CLASSES[11])
  # Every non-target object of the training split becomes the target: no image is all background.
  batches = _take(target.train_iter(), 7)
  assert all((b["label"] == 1).any(axis=(1, 2)).all() for b in batches)
  eval_positive = np.concatenate([(b["label"] == 1).any(axis=(1, 2)) for b in target.eval_iter()])
  assert eval_positive.sum() == 1  # the single test dog


def test_bad_arguments_are_named(data_dir):
  with pytest.raises(ValueError, match="Unknown corruption 'unsegment' here"):
    _seg(data_dir, corruption="unsegment:0.5")
  with pytest.raises(ValueError, match="needs a rate"):
    _seg(data_dir, corruption="mislabel_objects")
  with pytest.raises(ValueError, match="Unknown task 'parts'"):
    _seg(data_dir, task="parts")
  with pytest.raises(ValueError, match="Unknown segmentation dataset 'coco'"):
    data_lib.make_segmentation_data(data_lib.SegmentationSpec("coco", batch_size=8))
  with pytest.raises(ValueError, match="start_step must be a non-negative int"):
    _seg(data_dir).train_iter(-1)


def test_classification_view_of_the_synthetic_data(data_dir):
  data = data_lib.make_classification_data(
      "synthetic", batch_size=8, config=TINY, data_dir=data_dir, as_numpy=True,
      corruption="pu_labels:0.5", with_true_label=True)
  assert data.num_classes == 11 and data.class_names[1] == classes.SYNTHETIC_CLASSES[0]
  batches = _take(data.train_iter(), 10)
  true = np.concatenate([b["true_label"] for b in batches])
  label = np.concatenate([b["label"] for b in batches])
  assert np.bincount(true, minlength=11).tolist() == [40] + [4] * 10
  assert np.all((label == true) | (label == 0)) and 0 < (label != true).sum() < 40
  labels = np.concatenate([b["label"] for b in data.eval_iter()])
  assert (labels != 255).sum() == 20 and set(labels[labels != 255]) == set(range(11))


def test_segmentation_batch_feeds_the_train_step_on_4_devices(data_dir):
  data = _seg(data_dir, batch_size=4, fold=1, task="binary")
  run_train_step(data, "fcn_small", loss="logistic", width=0.25)


def test_caffe_preprocessing_of_a_hand_made_image():
  from jaxpu.data import batching  # pylint: disable=g-import-not-at-top
  rgb = np.array([[[[200, 100, 50], [0, 255, 10]]]], np.uint8)  # [1, 1, 2, 3]
  mean_bgr = np.array([104.00699, 116.66877, 122.67892])  # the FCN reference's B, G, R
  caffe = batching.preprocess(rgb, "caffe", batching.CAFFE_MEAN_BGR, (1., 1., 1.))
  expected = np.array([[[[50, 100, 200], [10, 255, 0]]]]) - mean_bgr  # BGR, 0-255
  np.testing.assert_allclose(caffe, expected, atol=1e-4)
  mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
  standard = batching.preprocess(rgb, "standardize", mean, std)
  np.testing.assert_allclose(standard, (rgb / 255 - np.array(mean)) / np.array(std), atol=1e-6)
  for name, image, m, s in (("caffe", caffe, batching.CAFFE_MEAN_BGR, (1., 1., 1.)),
                            ("standardize", standard, mean, std)):
    np.testing.assert_allclose(batching.unpreprocess(image, name, m, s), rgb / 255, atol=1e-6)
  with pytest.raises(ValueError, match="'bgr'.*'standardize', 'caffe'"):
    batching.preprocess(rgb, "bgr", mean, std)


def test_caffe_preprocessing_of_the_batches(data_dir, plain):
  data = _seg(data_dir, as_numpy=True, preprocessing="caffe")
  assert data.preprocessing == "caffe" and plain.preprocessing == "standardize"
  assert data.mean == (104.00699, 116.66877, 122.67892) and data.std == (1., 1., 1.)
  builder = synthetic.load(TINY, data_dir)
  raw = list(builder.as_dataset(split="test", shuffle_files=False).as_numpy_iterator())
  batch, plain_batch = next(data.eval_iter()), next(plain.eval_iter())
  expected = raw[0]["image"][..., ::-1].astype(np.float64) - np.array(data.mean)
  np.testing.assert_allclose(batch["image"][0], expected, atol=1e-4)
  np.testing.assert_allclose(data.unpreprocess(batch["image"][0]), raw[0]["image"] / 255,
                             atol=1e-6)
  np.testing.assert_array_equal(batch["label"], plain_batch["label"])
  with pytest.raises(ValueError, match="Unknown preprocessing 'imagenet'"):
    _seg(data_dir, preprocessing="imagenet")


def test_batches_made_in_threads_come_in_order():
  """`_in_threads` yields in argument order although later items finish first."""
  import time  # pylint: disable=g-import-not-at-top
  from jaxpu.data import batching  # pylint: disable=g-import-not-at-top

  def make(i, delay):
    time.sleep(delay)
    return i

  arguments = [(i, 0.02 if i % 3 == 0 else 0.0) for i in range(20)]
  for workers in (1, 4):
    assert list(batching._in_threads(make, iter(arguments), workers)) == list(range(20))
  # Iterators interleaved, and ones closed early, share the process's 4 threads.
  threads = set()

  def make_where(i, delay):
    threads.add(threading.current_thread())
    return make(i, delay)
  for _ in range(5):
    first = batching._in_threads(make_where, iter(arguments), 4)
    second = batching._in_threads(make_where, iter(arguments[::-1]), 4)
    assert [next(first), next(second), next(first)] == [0, 19, 1]
    second.close()
    assert list(second) == [] and list(first) == list(range(2, 20))
  assert len(threads) <= 4
