"""Label corruptions, label mappings and fold tables (jaxpu.data.noise, classes)."""

import linecache
import os

import numpy as np
import pytest

from jaxpu.data import classes
from jaxpu.data import noise
from jaxpu.data._tf import tf
from tests import smoke

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


def test_corruption_identical_in_another_process():
  """The same corruption in a fresh Python process (tests/smoke.py) gives the same labels."""
  theirs = smoke.data_layer_process()["mislabelled"]
  ours = _run(lambda ex: noise.mislabel_objects(ex, smoke.MISLABEL_RATE,
                                                seed=smoke.MISLABEL_SEED))
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


# Rate and seed reach every corruption the same way (`_check_rate`, `example_key`); these
# cover keyword options, a positional size and a float computation on the masks.
_TRACED_CASES = [(noise.unsegment_objects, (), {}),
                 (noise.mislabel_objects, (), {"candidates": (1, 2, 3, 4, 5)}),
                 (noise.under_segment, (None,), {}), (noise.coarse_outlines, ("box",), {})]


@pytest.mark.parametrize("fn,args,options", _TRACED_CASES,
                         ids=[f"{fn.__name__}{args}" for fn, args, _ in _TRACED_CASES])
def test_traced_corruption_is_the_plain_one(fn, args, options):
  arrays = _example_arrays(100)
  plain = _run(lambda ex: fn(ex, 0.7, 3, *args, **options), arrays)
  fast = _run(noise.traced(fn, 0.7, 3, *args, **options), arrays)
  for i, example in plain.items():
    for key, value in example.items():
      np.testing.assert_array_equal(fast[i][key], value)
      assert fast[i][key].dtype == value.dtype


def test_autograph_leaves_the_example_functions_as_written(monkeypatch):
  """In a user's `ds.map(lambda ...)` AutoGraph converts the lambda only: with the source
  of `jaxpu.data.noise` unreadable (AutoGraph reads a function's source to convert it)
  and AutoGraph strict (a failed conversion raises), the corruptions and the fold filter
  still map, with the same values."""
  arrays = _example_arrays(60)
  corrupt = lambda ex: noise.mislabel_objects(noise.over_segment(ex, 0.5, 1), 0.5, 2)  # noqa: E731
  expected = _run(corrupt, arrays)
  readable = linecache.getlines
  hidden = os.path.realpath(noise.__file__)
  monkeypatch.setattr(linecache, "getlines", lambda filename, *args: (
      [] if os.path.realpath(filename) == hidden else readable(filename, *args)))
  monkeypatch.setenv("AUTOGRAPH_STRICT_CONVERSION", "1")
  got = _run(lambda ex: corrupt(ex), arrays)
  assert got.keys() == expected.keys()
  for i, example in expected.items():
    for key, value in example.items():
      np.testing.assert_array_equal(got[i][key], value)
  keep = noise.fold_filter("pretrain", 1)
  ds = _dataset(arrays).filter(lambda ex: keep(ex))
  assert 0 < len(list(ds.as_numpy_iterator())) < 60


def test_traced_graph_is_reused_for_another_rate_seed_and_dataset():
  traces = []

  def counted(example, rate, seed):
    traces.append(1)  # runs once per trace
    return noise.unsegment_objects(example, rate, seed)
  first = _run(noise.traced(counted, 0.5, 1), _example_arrays(50))
  second = _run(noise.traced(counted, 0.2, 2), _example_arrays(60, seed=1))
  assert len(traces) == 1 and len(first) == 50 and len(second) == 60
  np.testing.assert_array_equal(  # 0.2 and seed 2 took effect
      np.stack([v["objects"] for v in second.values()]),
      np.stack([v["objects"] for v in _run(lambda ex: noise.unsegment_objects(ex, 0.2, 2),
                                           _example_arrays(60, seed=1)).values()]))
  ids = tf.data.Dataset.from_tensor_slices({"id": np.arange(500, dtype=np.int64),
                                           "label": np.arange(500) % 3})
  kept = lambda predicate: [int(ex["id"]) for ex in ids.filter(predicate).as_numpy_iterator()]  # noqa: E731
  assert kept(noise.traced(noise.subsample, 0.3, 5)) == kept(
      lambda ex: noise.subsample(ex, 0.3, 5))
  labels = lambda fn: [int(ex["label"]) for ex in ids.map(fn).as_numpy_iterator()]  # noqa: E731
  assert labels(noise.traced(noise.pu_labels, 0.4, 6)) == labels(
      lambda ex: noise.pu_labels(ex, 0.4, 6))
  with pytest.raises(ValueError, match="rate must be a probability in \\[0, 1\\], got 1.5"):
    noise.traced(noise.unsegment_objects, 1.5, 0)


# ----------------------------------------------------------------------------
# Segmentation errors: boundary_noise, over_segment, under_segment, coarse_outlines.
# ----------------------------------------------------------------------------

_V = classes.VOID


def _masks(*rows_list):
  """bool [n, H, W] from 0/1 row strings."""
  return np.array([[[c == "1" for c in row] for row in rows.split()] for rows in rows_list])


def _grid(rows):
  return np.array([[int(v) for v in row.split(",")] for row in rows.strip().split("\n")])


def test_morphology_of_hand_made_masks():
  m = _masks("00000 01110 01110 01110 00010")
  np.testing.assert_array_equal(noise.erode(m, [1], 2).numpy(), _masks(
      "00000 00000 00100 00000 00000"))
  np.testing.assert_array_equal(noise.dilate(m, [1], 2).numpy(), _masks(
      "11111 11111 11111 11111 11111"))
  np.testing.assert_array_equal(noise.bounding_boxes(m).numpy(), _masks(
      "00000 01110 01110 01110 01110"))
  # Blocks (rows 0-1, 2-3, 4; cols 0-1, 2-3, 4): at least half of the in-image pixels
  # (block row 4 x cols 2-3 has 1 of its 2 pixels).
  np.testing.assert_array_equal(noise.coarsen(m, 2).numpy(), _masks(
      "00110 00110 11110 11110 00110"))
  # Line through the centroid (row 2.2, col 2.2), direction +column: cols > 2.2 go.
  np.testing.assert_array_equal(noise.half_plane_cuts(m, tf.constant([0.0])).numpy(), _masks(
      "00000 01100 01100 01100 00000"))
  # Per-mask radius (0 leaves a mask alone), the image border counts as inside for erosion,
  # and an empty mask has an empty box.
  two = _masks("1110 1110 1110 0000", "0000 0000 0000 0000")
  np.testing.assert_array_equal(noise.erode(two, [1, 0], 2).numpy(), _masks(
      "1100 1100 0000 0000", "0000 0000 0000 0000"))
  np.testing.assert_array_equal(noise.dilate(_masks("1000 0000 0000 0000"), [2], 2).numpy(),
                                _masks("1110 1110 1110 0000"))
  np.testing.assert_array_equal(noise.bounding_boxes(two).numpy()[1], two[1])
  # Dilation crosses the void band first: the band it adds lies outside the void.
  void = _masks("00000 01110 01010 01110 00000")[0]
  np.testing.assert_array_equal(noise.dilate(_masks("00000 00000 00100 00000 00000"), [1], 1,
                                             void=tf.constant(void)).numpy(),
                                _masks("11111 11111 11111 11111 11111"))


def _hand_example(label, example_id=0, instances=None):
  label = np.asarray(label, np.uint8)
  if instances is None:
    instances = np.where(label == _V, _V, (label > 0).astype(np.uint8)).astype(np.uint8)
  count = int(instances[instances != _V].max())
  objects = [int(label[instances == k][0]) for k in range(1, count + 1)]
  return {"id": tf.constant(example_id, tf.int64), "label": tf.constant(label),
          "instances": tf.constant(np.asarray(instances, np.uint8)),
          "objects": tf.constant(objects, tf.int32)}


def test_boundary_noise_of_a_hand_made_object_erodes_or_dilates_it():
  label = _grid("""
255,0,0,0,0,0
0,255,3,3,0,0
0,3,3,3,0,0
0,3,3,3,0,0
0,3,3,3,0,0
0,0,0,0,0,0""")
  eroded = _grid("""
255,0,0,0,0,0
0,255,0,0,0,0
0,0,0,0,0,0
0,0,3,0,0,0
0,0,0,0,0,0
0,0,0,0,0,0""")
  dilated = _grid("""
255,3,3,3,3,0
3,255,3,3,3,0
3,3,3,3,3,0
3,3,3,3,3,0
3,3,3,3,3,0
3,3,3,3,3,0""")
  seen = set()
  for example_id in range(40):
    out = noise.boundary_noise(_hand_example(label, example_id), 1.0, seed=0, k=1)
    new = out["label"].numpy()
    kind = ("eroded" if np.array_equal(new, eroded) else
            "dilated" if np.array_equal(new, dilated) else None)
    assert kind, new
    seen.add(kind)
    np.testing.assert_array_equal(out["instances"].numpy(),
                                  np.where(new == _V, _V, (new > 0).astype(np.uint8)))
  assert seen == {"eroded", "dilated"}
  # Rate 0 changes nothing.
  out = noise.boundary_noise(_hand_example(label), 0.0, seed=0, k=3)
  np.testing.assert_array_equal(out["label"].numpy(), label)


def test_over_segment_of_hand_made_objects_never_overwrites_void_or_another_object():
  label = _grid("""
0,0,0,0,0,0,0
0,0,0,0,0,0,0
0,0,5,5,0,0,0
0,0,5,5,255,7,7
0,0,0,0,0,7,7
0,0,0,0,0,0,0
0,0,0,0,0,0,0""")
  instances = np.select([label == 5, label == 7, label == _V], [1, 2, _V], 0)
  # Both objects reach across the void pixel; pixels both reach join object 1 (class 5).
  expected = _grid("""
0,0,0,0,0,0,0
0,5,5,5,5,0,0
0,5,5,5,5,5,7
0,5,5,5,255,7,7
0,5,5,5,5,7,7
0,0,0,0,7,7,7
0,0,0,0,0,0,0""")
  out = noise.over_segment(_hand_example(label, instances=instances), 1.0, seed=0, k=1)
  np.testing.assert_array_equal(out["label"].numpy(), expected)
  np.testing.assert_array_equal(out["instances"].numpy(),
                                np.select([expected == 5, expected == 7, expected == _V],
                                          [1, 2, _V], 0))
  np.testing.assert_array_equal(out["objects"].numpy(), [5, 7])


def test_coarse_outlines_box_of_a_hand_made_object():
  label = _grid("""
0,0,0,0,0
0,4,0,0,0
0,4,255,6,0
0,4,4,4,0
0,0,0,0,0""")
  instances = np.select([label == 4, label == 6, label == _V], [1, 2, _V], 0)
  # Object 1's box (rows 1-3, cols 1-3) takes the background, not the void or object 2;
  # object 2 (one pixel) is its own box.
  expected = _grid("""
0,0,0,0,0
0,4,4,4,0
0,4,255,6,0
0,4,4,4,0
0,0,0,0,0""")
  out = noise.coarse_outlines(_hand_example(label, instances=instances), 1.0, seed=0)
  np.testing.assert_array_equal(out["label"].numpy(), expected)


_ERROR_SIZE = 16  # 16x16 examples, two diamonds of radius 2 (void centre) far apart


def _diamond_arrays(n=NUM_EXAMPLES):
  rr, cc = np.mgrid[:_ERROR_SIZE, :_ERROR_SIZE]
  instances = np.zeros((_ERROR_SIZE, _ERROR_SIZE), np.uint8)
  for k, (r, c) in enumerate([(3, 3), (11, 11)], start=1):
    instances[np.abs(rr - r) + np.abs(cc - c) <= 2] = k
  rng = np.random.default_rng(1)
  objects = rng.integers(1, 21, (n, 2)).astype(np.int32)
  table = np.concatenate([np.zeros((n, 1), np.int32), objects], 1)
  label = np.take_along_axis(table, np.broadcast_to(instances.ravel(), (n, instances.size))
                             .astype(np.int64), 1).reshape(n, _ERROR_SIZE, _ERROR_SIZE)
  label = label.astype(np.uint8)
  instances = np.broadcast_to(instances, label.shape).copy()
  for r, c in [(3, 3), (11, 11), (0, 15)]:  # object centres and one background pixel
    label[:, r, c] = instances[:, r, c] = _V
  return {"id": (np.arange(n) * 104729 + 7).astype(np.int64), "label": label,
          "instances": instances, "objects": objects}


def _reference_outcomes(name, size, mask, void, background):
  """The masks an affected object may get (NumPy/SciPy), or None for under_segment."""
  from scipy import ndimage  # pylint: disable=g-import-not-at-top
  square = np.ones((3, 3), bool)
  allowed = mask | background

  def dilated(r):
    start = mask | (ndimage.binary_dilation(mask, square) & void)
    return ndimage.binary_dilation(start, square, iterations=r) & allowed
  if name == "boundary_noise":
    return [dilated(r) for r in range(1, size + 1)] + [
        ndimage.binary_erosion(mask, square, iterations=r, border_value=1)
        for r in range(1, size + 1)]
  if name == "over_segment":
    return [dilated(size)]
  if name == "coarse_outlines" and size == "box":
    rows, cols = np.nonzero(mask)
    box = np.zeros_like(mask)
    box[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
    return [box & allowed]
  if name == "coarse_outlines":
    h, w = mask.shape
    coarse = np.zeros_like(mask)
    for r in range(0, h, size):
      for c in range(0, w, size):
        block = mask[r:r + size, c:c + size]
        coarse[r:r + size, c:c + size] = block.sum() > 0 and block.sum() >= block.size / 2
    return [coarse & allowed]
  return None


def _is_half_plane_cut(mask, new):
  """`new` = `mask` minus a part beyond a line through the centroid of `mask`."""
  removed = mask & ~new
  if not removed.any() or (new & ~mask).any():
    return False
  rows, cols = np.nonzero(mask)
  centre = np.array([rows.mean(), cols.mean()])
  angles = np.linspace(0, 2 * np.pi, 3600, endpoint=False)
  direction = np.stack([np.sin(angles), np.cos(angles)], 1)  # (row, col)
  proj_removed = (np.argwhere(removed) - centre) @ direction.T
  proj_kept = (np.argwhere(new) - centre) @ direction.T
  margin = 0.05
  ok = (proj_removed.min(0) > -margin) & (proj_kept.max(0, initial=-np.inf) < margin)
  return bool(ok.any())


_ERRORS = [("boundary_noise", 2), ("over_segment", 2), ("under_segment", None),
           ("coarse_outlines", "box"), ("coarse_outlines", 2)]


@pytest.mark.parametrize("name,size", _ERRORS)
def test_segmentation_errors_rate_whole_objects_and_void(name, size):
  arrays = _diamond_arrays()
  before = _by_id(arrays)
  corrupt = getattr(noise, name)
  after = _run(lambda ex: corrupt(ex, 0.5, 3, size), arrays)
  changed = []
  for i, b in before.items():
    a = after[i]
    void = b["label"] == _V
    np.testing.assert_array_equal(a["label"] == _V, void)
    np.testing.assert_array_equal(a["objects"], b["objects"])
    touched = np.zeros_like(void)
    for k in (1, 2):
      old_mask = (b["instances"] == k) & ~void
      new_mask = (a["instances"] == k) & ~void
      touched |= old_mask | new_mask
      # The object keeps its class on every pixel it has.
      assert set(np.unique(a["label"][new_mask]).tolist()) <= {b["objects"][k - 1]}
      np.testing.assert_array_equal(a["label"][old_mask & ~new_mask], 0)
      if np.array_equal(old_mask, new_mask):
        changed.append(False)
        continue
      changed.append(True)
      background = (b["label"] == 0)
      outcomes = _reference_outcomes(name, size, old_mask, void, background)
      if outcomes is None:
        assert _is_half_plane_cut(old_mask, new_mask), (i, k)
      else:
        assert any(np.array_equal(new_mask, o) for o in outcomes), (i, k)
    # Pixels of no object, before or after, are unchanged.
    np.testing.assert_array_equal(a["label"][~touched], b["label"][~touched])
  # Every affected diamond changes shape, so the changed fraction is the rate (2000 objects:
  # binomial sd 0.011).
  assert abs(np.mean(changed) - 0.5) < 0.04


def test_segmentation_errors_are_deterministic_per_seed_and_order():
  arrays = _diamond_arrays(400)

  def labels(seed, shuffle_seed=None):
    out = _run(lambda ex: noise.boundary_noise(ex, 0.5, seed, 2), arrays, shuffle_seed)
    return np.stack([out[i]["label"] for i in sorted(out)])
  a, b, c = labels(11, shuffle_seed=1), labels(11, shuffle_seed=2), labels(12)
  np.testing.assert_array_equal(a, b)
  original = np.stack([v["label"] for _, v in sorted(_by_id(arrays).items())])
  # Objects changed under seeds 11 and 12: about half of the decisions agree.
  changed_a = [(a[:, r0:r1, r0:r1] != original[:, r0:r1, r0:r1]).any(axis=(1, 2))
               for r0, r1 in ((0, 8), (8, 16))]
  changed_c = [(c[:, r0:r1, r0:r1] != original[:, r0:r1, r0:r1]).any(axis=(1, 2))
               for r0, r1 in ((0, 8), (8, 16))]
  same = np.mean(np.concatenate(changed_a) == np.concatenate(changed_c))
  assert 0.4 < same < 0.6


def test_segmentation_error_strings():
  from jaxpu.data import pipeline  # pylint: disable=g-import-not-at-top
  allowed = pipeline.SEGMENTATION_CORRUPTIONS
  assert set(noise.SEGMENTATION_ERRORS) <= set(allowed)
  parse = pipeline.parse_corruption
  assert parse("unsegment_objects:0.5", allowed) == ("unsegment_objects", 0.5, None)
  assert parse("boundary_noise:0.5:3", allowed) == ("boundary_noise", 0.5, 3)
  assert parse("boundary_noise:0.5", allowed) == ("boundary_noise", 0.5, 2)
  assert parse("over_segment:1", allowed) == ("over_segment", 1.0, 2)
  assert parse("coarse_outlines:1.0:box", allowed) == ("coarse_outlines", 1.0, "box")
  assert parse("coarse_outlines:1.0:4", allowed) == ("coarse_outlines", 1.0, 4)
  assert parse(("coarse_outlines", 0.5), allowed) == ("coarse_outlines", 0.5, "box")
  assert parse("under_segment:0.25", allowed) == ("under_segment", 0.25, None)
  for spec, match in [("boundary_noise:0.5:x", r"size 'x' is not k, the largest"),
                      ("boundary_noise:0.5:0", "size 0 is not k"),
                      ("coarse_outlines:0.5:1", "size 1 is not 'box' or a down-sampling"),
                      ("unsegment_objects:0.5:3", "unsegment_objects takes no size"),
                      ("under_segment:0.5:3", "under_segment takes no size"),
                      ("boundary_noise", "needs a rate.*'name:rate:size'"),
                      ("boundary_noise:x:3", "rate 'x' is not a number")]:
    with pytest.raises(ValueError, match=match):
      parse(spec, allowed)
  with pytest.raises(ValueError, match="pu_labels takes no size"):
    parse("pu_labels:0.5:2", pipeline.CLASSIFICATION_CORRUPTIONS)


@pytest.fixture(scope="module")
def tiny_config():
  from jaxpu.data import synthetic  # pylint: disable=g-import-not-at-top
  return synthetic.synthetic_config(num_train_per_class=2, num_test_per_class=1)


@pytest.mark.parametrize("corruption,task", [("boundary_noise:1.0:2", "multiclass"),
                                             ("coarse_outlines:1.0:box", "binary"),
                                             ("under_segment:1.0", "multiclass"),
                                             ("over_segment:1.0:1", "binary")])
def test_segmentation_errors_in_make_segmentation_data_train_split_only(tiny_config, corruption,
                                                                        task):
  from jaxpu import data as data_lib  # pylint: disable=g-import-not-at-top

  def make(corruption):  # the embedded data in the run's private JAXPU_DATA_DIR (conftest)
    return data_lib.make_segmentation_data(data_lib.SegmentationSpec(
        "synthetic", batch_size=4, config=tiny_config, task=task, corruption=corruption,
        with_true_label=True), as_numpy=True)
  noisy, clean = make(corruption), make(None)
  assert noisy.num_train_examples == 40 and noisy.steps_per_epoch == 10
  train_noisy, train_clean = noisy.train_iter(), clean.train_iter()  # same order (same seed)
  batches = [(next(train_noisy), next(train_clean)) for _ in range(10)]
  label = np.concatenate([b["label"] for b, _ in batches])
  true = np.concatenate([b["true_label"] for b, _ in batches])
  np.testing.assert_array_equal(true, np.concatenate([c["label"] for _, c in batches]))
  np.testing.assert_array_equal(label == _V, true == _V)
  # Rate 1: every training image's object changes outline; classes stay those of the task.
  assert (label != true).any(axis=(1, 2)).all()
  assert set(np.unique(label).tolist()) <= set(range(noisy.num_classes)) | {_V}
  changed = label != true
  assert np.all((label[changed] == 0) | (true[changed] == 0))
  for a, b in zip(noisy.eval_iter(), clean.eval_iter(), strict=True):
    np.testing.assert_array_equal(a["label"], b["label"])
    np.testing.assert_array_equal(a["label"], a["true_label"])
