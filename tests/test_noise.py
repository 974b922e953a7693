"""Label corruptions, label mappings and fold tables (jaxpu.data.noise, classes)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxpu.data import classes
from jaxpu.data import noise
from jaxpu.data._tf import tf

NUM_EXAMPLES = 1000  # x 4 objects = 4000 objects
OBJECTS = 4


def _example_arrays(n=NUM_EXAMPLES, seed=0):
  """n 6x6 examples with 4 objects of 2x2 pixels (one pixel void each) + background."""
  rng = np.random.default_rng(seed)
  instances = np.zeros((n, 6, 6), np.uint8)
  for k, (r, c) in enumerate([(0, 0), (0, 3), (3, 0), (3, 3)], start=1):
    instances[:, r:r + 2, c:c + 2] = k
  objects = rng.integers(1, 21, (n, OBJECTS)).astype(np.int32)
  label = np.take_along_axis(np.concatenate([np.zeros((n, 1), np.int32), objects], 1),
                             instances.reshape(n, -1).astype(np.int64), 1).reshape(n, 6, 6)
  label = label.astype(np.uint8)
  label[:, 1, 1] = instances[:, 1, 1] = classes.VOID  # inside object 1
  label[:, 2, 5] = classes.VOID  # a background pixel
  ids = (np.arange(n) * 7919 + 13).astype(np.int64)  # arbitrary stable ids
  return {"id": ids, "label": label, "instances": instances, "objects": objects}


def _dataset(arrays):
  return tf.data.Dataset.from_tensor_slices(arrays)


def _run(fn, arrays=None, shuffle_seed=None):
  """Applies `fn` to every example; returns NumPy results keyed by id."""
  ds = _dataset(arrays if arrays is not None else _example_arrays())
  if shuffle_seed is not None:
    ds = ds.shuffle(NUM_EXAMPLES, seed=shuffle_seed)
  out = {}
  for ex in ds.map(fn).batch(256).as_numpy_iterator():
    for i, example_id in enumerate(ex["id"]):
      out[int(example_id)] = {k: v[i] for k, v in ex.items()}
  return out


def _by_id(arrays):
  return {int(i): {k: v[j] for k, v in arrays.items()} for j, i in enumerate(arrays["id"])}


def _object_values(label, instances, k):
  """The class values of object k's non-void pixels."""
  return set(np.unique(label[(instances == k)]).tolist())


def _check_whole_objects_and_void(before, after):
  """Every object keeps one class over all its pixels; void and background unchanged."""
  for i, b in before.items():
    a = after[i]
    np.testing.assert_array_equal(a["label"] == classes.VOID, b["label"] == classes.VOID)
    np.testing.assert_array_equal(a["label"][b["instances"] == 0], b["label"][b["instances"] == 0])
    for k in range(1, OBJECTS + 1):
      assert _object_values(a["label"], b["instances"], k) == {a["objects"][k - 1]}


def test_unsegment_objects_rate_whole_objects_and_void():
  arrays = _example_arrays()
  before = _by_id(arrays)
  after = _run(lambda ex: noise.unsegment_objects(ex, 0.5, seed=3))
  _check_whole_objects_and_void(before, after)
  objects = np.stack([after[i]["objects"] for i in before])
  original = np.stack([before[i]["objects"] for i in before])
  dropped = objects == 0
  assert abs(dropped.mean() - 0.5) < 0.03
  np.testing.assert_array_equal(objects[~dropped], original[~dropped])


def test_corruption_identical_across_shuffled_epochs_and_different_for_another_seed():
  fn = lambda ex: noise.unsegment_objects(ex, 0.5, seed=11)  # noqa: E731
  epoch1 = _run(fn, shuffle_seed=1)
  epoch2 = _run(fn, shuffle_seed=2)
  other = _run(lambda ex: noise.unsegment_objects(ex, 0.5, seed=12))
  ids = sorted(epoch1)
  a = np.stack([epoch1[i]["label"] for i in ids])
  np.testing.assert_array_equal(a, np.stack([epoch2[i]["label"] for i in ids]))
  b = np.stack([other[i]["objects"] for i in ids])
  # Seeds 11 and 12 agree on about half of the keep/drop decisions, not all.
  same = (np.stack([epoch1[i]["objects"] for i in ids]) == 0) == (b == 0)
  assert 0.4 < same.mean() < 0.6


_SUBPROCESS = """
import json, sys
import numpy as np
sys.path.insert(0, {root!r})
from tests import test_noise as t
from jaxpu.data import noise
out = t._run(lambda ex: noise.mislabel_objects(ex, 0.5, seed=5))
print(json.dumps({{str(i): v["objects"].tolist() for i, v in out.items()}}))
"""


def test_corruption_identical_in_another_process():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run([sys.executable, "-c", _SUBPROCESS.format(root=root)],
                          capture_output=True, text=True, env=env, cwd=root, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  theirs = json.loads(result.stdout.strip().splitlines()[-1])
  ours = _run(lambda ex: noise.mislabel_objects(ex, 0.5, seed=5))
  assert {str(i): v["objects"].tolist() for i, v in ours.items()} == theirs


def test_mislabel_objects_rate_other_class_and_uniform():
  arrays = _example_arrays()
  before = _by_id(arrays)
  candidates = classes.pretrain_classes(1)
  after = _run(lambda ex: noise.mislabel_objects(ex, 0.5, seed=0, candidates=candidates))
  _check_whole_objects_and_void(before, after)
  old = np.stack([before[i]["objects"] for i in before])
  new = np.stack([after[i]["objects"] for i in before])
  changed = old != new
  in_candidates = np.isin(old, candidates)  # ~3000 of the 4000 objects
  assert abs(changed[in_candidates].mean() - 0.5) < 0.03
  assert not changed[~in_candidates].any()
  # Changed objects get a candidate class (never their own).
  assert set(np.unique(new[changed]).tolist()) <= set(candidates)
  # AllRandomLabels: every object of a candidate class changes, uniformly over the 14 others;
  # objects of the held-out fold are left alone (they become background in pre-training).
  all_random = _run(lambda ex: noise.mislabel_objects(ex, 1.0, seed=0, candidates=candidates))
  new = np.stack([all_random[i]["objects"] for i in before])
  assert np.all(new[in_candidates] != old[in_candidates])
  assert np.all(np.isin(new[in_candidates], candidates))
  np.testing.assert_array_equal(new[~in_candidates], old[~in_candidates])
  from_dog = new[old == classes.TARGET_CLASS]  # dog, a pre-training class of fold 1
  counts = np.array([(from_dog == c).sum() for c in candidates if c != classes.TARGET_CLASS])
  expected = from_dog.size / 14
  assert counts.min() > 0 and np.abs(counts - expected).max() < 5 * np.sqrt(expected)


def test_false_positive_objects():
  arrays = _example_arrays()
  before = _by_id(arrays)
  target = classes.TARGET_CLASS
  after = _run(lambda ex: noise.false_positive_objects(ex, 0.5, seed=1, target=target))
  _check_whole_objects_and_void(before, after)
  old = np.stack([before[i]["objects"] for i in before])
  new = np.stack([after[i]["objects"] for i in before])
  np.testing.assert_array_equal(new[old == target], target)
  others = old != target
  flipped = new[others] == target
  assert abs(flipped.mean() - 0.5) < 0.03
  np.testing.assert_array_equal(new[others][~flipped], old[others][~flipped])
  restricted = _run(lambda ex: noise.false_positive_objects(ex, 1.0, seed=1, target=target,
                                                            candidates=(1, 2)))
  new = np.stack([restricted[i]["objects"] for i in before])
  np.testing.assert_array_equal(new, np.where(np.isin(old, (1, 2)), target, old))


def test_pu_labels_keeps_the_labeled_fraction_of_relevant_examples():
  n = 4000
  labels = np.arange(n, dtype=np.int32) % 11  # class 0 = non-relevant
  ds = tf.data.Dataset.from_tensor_slices({"id": np.arange(n, dtype=np.int64) + 10 ** 9,
                                           "label": labels})
  out = np.concatenate([b["label"] for b in ds.map(
      lambda ex: noise.pu_labels(ex, 0.5, seed=0)).batch(1000).as_numpy_iterator()])
  relevant = labels != 0
  kept = out[relevant] == labels[relevant]
  assert abs(kept.mean() - 0.5) < 0.03
  np.testing.assert_array_equal(out[relevant][~kept], 0)
  np.testing.assert_array_equal(out[~relevant], 0)
  with pytest.raises(ValueError, match="classification"):
    noise.pu_labels({"id": tf.constant(1, tf.int64), "label": tf.zeros([2, 2], tf.uint8)}, 0.5, 0)


def test_rate_validation():
  ex = {k: tf.constant(v[0]) for k, v in _example_arrays(1).items()}
  with pytest.raises(ValueError, match=r"rate must be a probability in \[0, 1\], got 1.5"):
    noise.unsegment_objects(ex, 1.5, 0)
  with pytest.raises(ValueError, match="needs the example keys 'instances' and 'objects'"):
    noise.unsegment_objects({"id": ex["id"], "label": ex["label"]}, 0.5, 0)


def test_binarize_and_categorize_mappings_exact():
  arrays = _example_arrays(50)
  label = arrays["label"]
  ds = _dataset(arrays)
  binary = np.concatenate([b["label"] for b in ds.map(noise.binarize).batch(50)
                           .as_numpy_iterator()])
  expected = np.where(label == classes.VOID, classes.VOID, (label > 0).astype(np.uint8))
  np.testing.assert_array_equal(binary, expected)

  grouping = classes.supercategory_grouping(range(1, 21))
  cat = next(ds.map(lambda ex: noise.categorize(ex, grouping)).batch(50).as_numpy_iterator())
  lut = np.zeros(256, np.uint8)
  lut[255] = 255
  for c in range(1, 21):
    lut[c] = grouping[c]
  np.testing.assert_array_equal(cat["label"], lut[label])
  np.testing.assert_array_equal(cat["objects"], lut[arrays["objects"]])


def test_supercategories_follow_voc():
  names = classes.VOC_CLASSES
  grouping = classes.supercategory_grouping(range(1, 21))
  by_name = {names[c - 1]: classes.SUPERCATEGORIES[g - 1] for c, g in grouping.items()}
  assert by_name["person"] == "person"
  assert {n for n, s in by_name.items() if s == "animal"} == {
      "bird", "cat", "cow", "dog", "horse", "sheep"}
  assert {n for n, s in by_name.items() if s == "vehicle"} == {
      "aeroplane", "bicycle", "boat", "bus", "car", "motorbike", "train"}
  assert {n for n, s in by_name.items() if s == "indoor"} == {
      "bottle", "chair", "diningtable", "pottedplant", "sofa", "tvmonitor"}
  # Fold 3 holds person: its pre-training classes have 3 super-categories, numbered 1..3.
  g3 = classes.supercategory_grouping(classes.pretrain_classes(3))
  assert sorted(set(g3.values())) == [1, 2, 3]
  assert [g3[names.index(n) + 1] for n in ("cat", "car", "chair")] == [1, 2, 3]


def test_folds_are_the_thesis_folds():
  names = classes.VOC_CLASSES
  assert [names[c - 1] for c in classes.fold_classes(1)] == [
      "aeroplane", "bicycle", "bird", "boat", "bottle"]
  assert [names[c - 1] for c in classes.fold_classes(2)] == ["bus", "car", "cat", "chair", "cow"]
  assert [names[c - 1] for c in classes.fold_classes(3)] == [
      "diningtable", "dog", "horse", "motorbike", "person"]
  assert [names[c - 1] for c in classes.fold_classes(4)] == [
      "pottedplant", "sheep", "sofa", "train", "tvmonitor"]
  for fold in (1, 2, 3, 4):
    pre = classes.pretrain_classes(fold)
    assert len(pre) == 15 and not set(pre) & set(classes.fold_classes(fold))
  assert noise.fold_mapping("finetune", 2) == {6: 1, 7: 2, 8: 3, 9: 4, 10: 5}
  assert sorted(noise.fold_mapping("pretrain", 1).values()) == list(range(1, 16))
  assert classes.false_positive_target(1) == names.index("dog") + 1
  assert classes.false_positive_target(3) == names.index("cat") + 1
  with pytest.raises(ValueError, match="fold must be 1, 2, 3 or 4"):
    classes.fold_classes(5)


def test_random_grouping_is_a_seeded_balanced_partition():
  pre = classes.pretrain_classes(1)
  for k in (4, 7, 11):
    g = classes.random_grouping(pre, k, seed=0)
    assert sorted(g) == sorted(pre)
    sizes = np.bincount(list(g.values()), minlength=k + 1)[1:]
    assert sizes.min() >= 1 and sizes.max() - sizes.min() <= 1
    assert g == classes.random_grouping(pre, k, seed=0)
  assert classes.random_grouping(pre, 4, 0) != classes.random_grouping(pre, 4, 1)
  with pytest.raises(ValueError, match="k must be an int in"):
    classes.random_grouping(pre, 16, 0)


def test_fold_filter_keeps_the_right_images():
  objects = [[1], [6], [12, 3], [15, 1], [2, 9]]  # fold 1 holds ids 1..5
  ds = tf.data.Dataset.from_generator(
      lambda: ({"objects": np.array(o, np.int32)} for o in objects),
      output_signature={"objects": tf.TensorSpec([None], tf.int32)})

  def kept(phase, handling="exclude"):
    keep = noise.fold_filter(phase, 1, handling)
    return [list(ex["objects"]) for ex in ds.filter(keep).as_numpy_iterator()]
  assert kept("pretrain") == [[6]]
  assert kept("finetune") == [[1], [12, 3], [15, 1], [2, 9]]
  assert len(kept("pretrain", "background")) == 5
  # With "background", the held-out objects become background through the pre-training map.
  arrays = {"label": np.array([[1, 6, 255]], np.uint8)}
  out = next(_dataset(arrays).map(lambda ex: noise.relabel(ex, noise.fold_mapping("pretrain", 1)))
             .as_numpy_iterator())
  np.testing.assert_array_equal(out["label"], [0, 1, 255])


def test_subsample_keeps_a_seeded_fraction():
  ds = tf.data.Dataset.from_tensor_slices({"id": np.arange(4000, dtype=np.int64)})

  def kept(seed):
    return [int(ex["id"]) for ex in ds.filter(
        lambda ex: noise.subsample(ex, 0.5, seed)).as_numpy_iterator()]
  a, b, c = kept(0), kept(0), kept(1)
  assert abs(len(a) / 4000 - 0.5) < 0.03 and a == b and a != c
  with pytest.raises(ValueError, match=r"subsample must be a fraction in \(0, 1\], got 0"):
    noise.subsample({"id": tf.constant(1, tf.int64)}, 0, 0)
