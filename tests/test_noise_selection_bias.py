"""Selection-biased unsegmentation (jaxpu.data.noise, beyond the thesis): small, faint
and border-cut objects are missed more often, at the same expected rate as
`unsegment_objects`.

The generated examples are 12×12 images with one object per 6×6 quadrant; in
every example two objects are "targets" (small, faint or on the border) and
two are not, so each feature takes exactly two values, half of the objects
each. Standardised (ddof 0) they are z = ±1, and at p = 0.5 the calibrated
intercept is b = 0 by symmetry: a target is unsegmented with probability
σ(2) = 0.8808, any other object with σ(-2) = 0.1192 (slope |s| = 2).
"""

import math

import numpy as np
import pytest

from jaxpu.data import classes
from jaxpu.data import noise
from jaxpu.data import pipeline
from jaxpu.data import synthetic
from jaxpu.data._tf import tf

SIDE = 12
NUM_EXAMPLES = 1000  # × 4 objects
QUADRANTS = [(0, 0), (0, 6), (6, 0), (6, 6)]
BACKGROUND, FAINT, STRONG = 100, 110, 200
SIGMOID_2 = 1 / (1 + math.exp(-2))  # 0.8808


def _generated(kind, n=NUM_EXAMPLES, seed=0):
  """(arrays, target [n, 4]): examples whose targets are small / faint / on the border.

  size: targets 1×1, others 3×3 with a void centre (area 8); contrast: every object
  3×3 with a void centre, targets of intensity 110, others 200 (background 100);
  border: every object 3×3, targets in the quadrant's image corner, others inside.
  Void background pixels at (5, 5) and (6, 6).
  """
  rng = np.random.default_rng(seed)
  target = (np.arange(n)[:, None] + np.arange(4)[None]) % 2 == 0
  instances = np.zeros((n, SIDE, SIDE), np.uint8)
  label = np.zeros((n, SIDE, SIDE), np.uint8)
  image = np.full((n, SIDE, SIDE, 3), BACKGROUND, np.uint8)
  objects = rng.integers(1, 21, (n, 4)).astype(np.int32)
  for i in range(n):
    for k, (r, c) in enumerate(QUADRANTS):
      t = target[i, k]
      if kind == "border":
        dr, dc = ((0 if r == 0 else 3), (0 if c == 0 else 3)) if t else (1, 1)
        box = (slice(r + dr, r + dr + 3), slice(c + dc, c + dc + 3))
      elif kind == "size" and t:
        box = (slice(r + 2, r + 3), slice(c + 2, c + 3))
      else:
        box = (slice(r + 1, r + 4), slice(c + 1, c + 4))
      instances[i][box] = k + 1
      label[i][box] = objects[i, k]
      image[i][box] = FAINT if (kind == "contrast" and t) else STRONG
      if kind in ("size", "contrast") and not (kind == "size" and t):
        label[i, r + 2, c + 2] = instances[i, r + 2, c + 2] = classes.VOID
  for r, c in ((5, 5), (6, 6)):
    label[:, r, c] = instances[:, r, c] = classes.VOID
  ids = (np.arange(n) * 7919 + 13).astype(np.int64)
  return {"id": ids, "image": image, "label": label, "instances": instances,
          "objects": objects}, target


def _run(fn, arrays, shuffle_seed=None):
  """`fn` over every example; NumPy results keyed by id."""
  ds = tf.data.Dataset.from_tensor_slices(arrays)
  if shuffle_seed is not None:
    ds = ds.shuffle(len(arrays["id"]), seed=shuffle_seed)
  out = {}
  for ex in ds.map(fn).batch(256).as_numpy_iterator():
    for i, example_id in enumerate(ex["id"]):
      out[int(example_id)] = {k: v[i] for k, v in ex.items()}
  return out


def _calibrated(name, arrays, rate):
  feature = noise.SELECTION_BIASES[name][0]
  features = noise.dataset_features(tf.data.Dataset.from_tensor_slices(arrays), feature)
  return noise.calibrate(name, features, rate)


def _dropped(arrays, result):
  return np.stack([result[int(i)]["objects"] == 0 for i in arrays["id"]])


def _binomial_bound(probability, count, sigmas=4):
  return sigmas * math.sqrt(probability * (1 - probability) / count)


# ----------------------------------------------------------------------------
# Calibration.
# ----------------------------------------------------------------------------


def test_intercept_of_a_symmetric_feature_is_zero_and_of_a_constant_one_the_logit():
  assert noise.solve_intercept([-1.0, 1.0] * 5, 0.5, -2.0) == pytest.approx(0, abs=1e-12)
  # z = 0 everywhere: σ(b) = p, b = logit(0.3).
  assert noise.solve_intercept(np.zeros(7), 0.3, 2.0) == pytest.approx(math.log(0.3 / 0.7),
                                                                       abs=1e-12)


def test_calibration_makes_the_mean_probability_the_rate_on_a_hand_made_vector():
  # Three interior objects and one on the border: mean 1/4, std √(3)/4.
  x = np.array([0.0, 0.0, 0.0, 1.0])
  for rate in (0.1, 0.5, 0.73):
    c = noise.calibrate("unsegment_border", x, rate)
    assert c.mean == 0.25 and c.std == pytest.approx(math.sqrt(3) / 4)
    z = (x - 0.25) / (math.sqrt(3) / 4)  # -1/√3 (×3), √3
    p = 1 / (1 + np.exp(-(c.intercept + 2.0 * z)))
    assert abs(p.mean() - rate) < 1e-6
    assert p[3] > p[0]  # the border object is missed more often
  # At 0.5: 3 σ(b - 2/√3) + σ(b + 2√3) = 2, solved independently by bisection here.
  f = lambda b: 3 / (1 + math.exp(-(b - 2 / math.sqrt(3)))) + 1 / (  # noqa: E731
      1 + math.exp(-(b + 2 * math.sqrt(3)))) - 2
  low, high = -10.0, 10.0
  for _ in range(100):
    low, high = ((low + high) / 2, high) if f((low + high) / 2) < 0 else (low, (low + high) / 2)
  assert noise.calibrate("unsegment_border", x, 0.5).intercept == pytest.approx(low, abs=1e-9)


def test_calibration_at_rates_zero_and_one_and_of_a_constant_feature():
  x = np.array([2.0, 3.0, 5.0])
  assert np.all(noise.calibrate("unsegment_small", x, 0.0).probabilities(x) == 0)
  assert np.all(noise.calibrate("unsegment_small", x, 1.0).probabilities(x) == 1)
  constant = noise.calibrate("unsegment_faint", np.full(4, 0.7), 0.4)
  np.testing.assert_allclose(constant.probabilities(np.full(4, 0.7)), 0.4, atol=1e-12)


@pytest.mark.parametrize("rate", [-0.1, 1.5, "0.5", True])
def test_bad_rate_names_the_value(rate):
  with pytest.raises(ValueError, match=r"probability in \[0, 1\], got " + repr(rate)[:4]):
    noise.calibrate("unsegment_small", [1.0, 2.0], rate)


def test_bad_name_and_empty_split_name_the_fix():
  with pytest.raises(ValueError, match=r"'unsegment_tiny'.*unsegment_border.*unsegment_faint"
                                       r".*unsegment_small.*unsegment_objects"):
    noise.calibrate("unsegment_tiny", [1.0], 0.5)
  with pytest.raises(ValueError, match="0 value.*does the training split hold objects"):
    noise.calibrate("unsegment_small", [], 0.5)
  with pytest.raises(ValueError, match="Unknown object feature 'area'.*log_area"):
    noise.object_feature({}, "area")
  with pytest.raises(TypeError, match=r"Calibration \(noise.calibrate"):
    noise.unsegment_selected({}, 0.5, 0)


# ----------------------------------------------------------------------------
# Features.
# ----------------------------------------------------------------------------


def _one_object(box, void_band=False, padding_column=None):
  """A 12×12 example with one 3×3 object of intensity 200 on background 100."""
  instances = np.zeros((SIDE, SIDE), np.uint8)
  instances[box] = 1
  label = np.where(instances == 1, 7, 0).astype(np.uint8)
  image = np.full((SIDE, SIDE, 3), BACKGROUND, np.uint8)
  image[instances == 1] = STRONG
  if void_band:  # a 1-pixel void band ringing the object, background-coloured
    grown = np.zeros_like(instances, bool)
    grown[max(box[0].start - 1, 0):box[0].stop + 1, max(box[1].start - 1, 0):box[1].stop + 1] = True
    band = grown & (instances == 0)
    label[band] = instances[band] = classes.VOID
  if padding_column is not None:  # VOC's padding: void label, instance 0
    label[:, padding_column:] = classes.VOID
    instances[:, padding_column:] = 0
  return {"id": tf.constant(0, tf.int64), "image": tf.constant(image),
          "label": tf.constant(label), "instances": tf.constant(instances),
          "objects": tf.constant([7], tf.int32)}


def test_contrast_is_the_intensity_difference_in_image_stds():
  # 9 pixels of 200 among 144 of 100: std = (100/255)·√(q(1-q)), q = 1/16, so the
  # contrast is 1/√(15/256) = 16/√15, with or without a void band in between.
  for void_band in (False, True):
    example = _one_object((slice(4, 7), slice(4, 7)), void_band=void_band)
    value = float(noise.object_feature(example, "contrast")[0])
    assert value == pytest.approx(16 / math.sqrt(15), rel=1e-5)


def test_log_area_counts_non_void_pixels_and_border_needs_the_image_edge_or_padding():
  example = _one_object((slice(4, 7), slice(4, 7)), void_band=True)
  assert float(noise.object_feature(example, "log_area")[0]) == pytest.approx(math.log(9))
  assert float(noise.object_feature(example, "border")[0]) == 0.0  # its own void band
  assert float(noise.object_feature(_one_object((slice(4, 7), slice(9, 12))),
                                    "border")[0]) == 1.0  # right edge
  assert float(noise.object_feature(_one_object((slice(0, 3), slice(4, 7))),
                                    "border")[0]) == 1.0  # top edge
  padded = _one_object((slice(4, 7), slice(4, 7)), padding_column=7)  # padding next to it
  assert float(noise.object_feature(padded, "border")[0]) == 1.0
  assert float(noise.object_feature(_one_object((slice(4, 7), slice(4, 7)), padding_column=8),
                                    "border")[0]) == 0.0  # one pixel away


# ----------------------------------------------------------------------------
# The corruption.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("name,kind", [("unsegment_small", "size"),
                                       ("unsegment_faint", "contrast"),
                                       ("unsegment_border", "border")])
def test_targets_are_missed_at_sigma_2_and_others_at_sigma_minus_2(name, kind):
  arrays, target = _generated(kind)
  calibration = _calibrated(name, arrays, 0.5)
  assert calibration.intercept == pytest.approx(0, abs=1e-6)
  dropped = _dropped(arrays, _run(lambda ex: noise.unsegment_selected(ex, calibration, 3),
                                  arrays))
  count = target.sum()
  assert abs(dropped[target].mean() - SIGMOID_2) < _binomial_bound(SIGMOID_2, count)
  assert abs(dropped[~target].mean() - (1 - SIGMOID_2)) < _binomial_bound(SIGMOID_2, count)
  assert abs(dropped.mean() - 0.5) < 4 * math.sqrt(SIGMOID_2 * (1 - SIGMOID_2) / dropped.size)


def _varied(n=NUM_EXAMPLES, seed=1):
  """Objects of random size (1..5 pixels a side), place (touching the border or not)
  and intensity, one per quadrant."""
  rng = np.random.default_rng(seed)
  instances = np.zeros((n, SIDE, SIDE), np.uint8)
  image = rng.integers(60, 140, (n, SIDE, SIDE, 1)).repeat(3, -1).astype(np.uint8)
  for i in range(n):
    for k, (r, c) in enumerate(QUADRANTS):
      side = rng.integers(1, 6)
      dr, dc = rng.integers(0, 7 - side, 2)
      box = (slice(r + dr, r + dr + side), slice(c + dc, c + dc + side))
      instances[i][box] = k + 1
      image[i][box] = rng.integers(0, 256)
  objects = rng.integers(1, 21, (n, 4)).astype(np.int32)
  label = np.take_along_axis(np.concatenate([np.zeros((n, 1), np.int32), objects], 1),
                             instances.reshape(n, -1).astype(np.int64), 1).reshape(n, SIDE, SIDE)
  return {"id": np.arange(n, dtype=np.int64) + 5, "image": image,
          "label": label.astype(np.uint8), "instances": instances, "objects": objects}


@pytest.mark.parametrize("name", sorted(noise.SELECTION_BIASES))
def test_realised_rate_is_the_asked_rate_on_varied_objects(name):
  arrays = _varied()
  for rate in (0.3, 0.5):
    calibration = _calibrated(name, arrays, rate)
    dropped = _dropped(arrays, _run(lambda ex: noise.unsegment_selected(ex, calibration, 0),
                                    arrays))
    # Independent Bernoulli draws with mean probability `rate`: var ≤ rate(1-rate)/N.
    assert abs(dropped.mean() - rate) < _binomial_bound(rate, dropped.size)


def test_dependence_is_monotone_on_varied_objects():
  arrays = _varied()
  ds = tf.data.Dataset.from_tensor_slices(arrays)
  for name in sorted(noise.SELECTION_BIASES):
    feature, slope = noise.SELECTION_BIASES[name]
    x = noise.dataset_features(ds, feature)
    calibration = noise.calibrate(name, x, 0.5)
    dropped = _dropped(arrays, _run(lambda ex: noise.unsegment_selected(ex, calibration, 1),
                                    arrays)).ravel()
    low, high = x <= np.median(x), x > np.median(x)
    missed_more = low if slope < 0 else high  # small / faint, or on the border
    gap = dropped[missed_more].mean() - dropped[~missed_more].mean()
    bound = _binomial_bound(0.5, missed_more.sum()) + _binomial_bound(0.5, (~missed_more).sum())
    assert gap > bound, (name, gap, bound)


def test_whole_objects_void_untouched_deterministic_and_order_free():
  arrays, _ = _generated("size", n=200)
  calibration = _calibrated("unsegment_small", arrays, 0.5)
  fn = lambda ex: noise.unsegment_selected(ex, calibration, 7)  # noqa: E731
  first, shuffled = _run(fn, arrays), _run(fn, arrays, shuffle_seed=4)
  other = _run(lambda ex: noise.unsegment_selected(ex, calibration, 8), arrays)
  for j, example_id in enumerate(arrays["id"]):
    a, b = first[int(example_id)], shuffled[int(example_id)]
    np.testing.assert_array_equal(a["label"], b["label"])
    void = arrays["label"][j] == classes.VOID
    np.testing.assert_array_equal(a["label"] == classes.VOID, void)
    for k in range(1, 5):  # every non-void pixel of object k carries its new class
      assert set(np.unique(a["label"][(arrays["instances"][j] == k) & ~void])) == {
          a["objects"][k - 1]}
    np.testing.assert_array_equal(a["label"][arrays["instances"][j] == 0],
                                  arrays["label"][j][arrays["instances"][j] == 0])
  assert not np.array_equal(_dropped(arrays, first), _dropped(arrays, other))


def test_coupled_with_unsegment_objects_of_the_same_seed():
  """Same draw u: an object SCAR drops (u < p) is dropped wherever P ≥ p, and one SCAR
  keeps (u ≥ p) is kept wherever P < p."""
  arrays = _varied(n=300)
  calibration = _calibrated("unsegment_small", arrays, 0.5)
  x = noise.dataset_features(tf.data.Dataset.from_tensor_slices(arrays), "log_area")
  p_object = calibration.probabilities(x).reshape(-1, 4)
  biased = _dropped(arrays, _run(lambda ex: noise.unsegment_selected(ex, calibration, 2),
                                 arrays))
  scar = _dropped(arrays, _run(lambda ex: noise.unsegment_objects(ex, 0.5, 2), arrays))
  assert np.all(biased[scar & (p_object >= 0.5)])
  assert not np.any(biased[~scar & (p_object < 0.5)])


def test_traced_selected_is_unsegment_selected_traced_once(monkeypatch):
  arrays = _varied(n=200)
  runs = [(_calibrated("unsegment_faint", arrays, rate), seed)
          for rate, seed in ((0.5, 2), (0.2, 7))]
  plain = [_run(lambda ex: noise.unsegment_selected(ex, c, s), arrays) for c, s in runs]  # noqa: B023
  traces = []
  body = noise.unsegment_selected

  def counted(*args):
    traces.append(1)  # runs once per trace
    return body(*args)
  monkeypatch.setattr(noise, "unsegment_selected", counted)
  for (calibration, seed), expected in zip(runs, plain):
    fast = _run(noise.traced_selected(calibration, seed), arrays)
    for i, example in expected.items():
      for key, value in example.items():
        np.testing.assert_array_equal(fast[i][key], value)
  assert len(traces) <= 1  # both calibrations and seeds in one graph (0: traced earlier)
  with pytest.raises(TypeError, match="takes a Calibration"):
    noise.traced_selected(0.5, 0)


# ----------------------------------------------------------------------------
# The pipeline: parsing, dataset-level calibration, training split only.
# ----------------------------------------------------------------------------


def test_parse_corruption_accepts_the_names_and_refuses_a_size():
  for name in noise.SELECTION_BIASES:
    assert pipeline.parse_corruption(f"{name}:0.5", pipeline.SEGMENTATION_CORRUPTIONS) == (
        name, 0.5, None)
  with pytest.raises(ValueError, match="unsegment_small takes no size: write "
                                       "'unsegment_small:rate'"):
    pipeline.parse_corruption("unsegment_small:0.5:3", pipeline.SEGMENTATION_CORRUPTIONS)
  with pytest.raises(ValueError, match=r"rate must be in \[0, 1\], got 1.5"):
    pipeline.parse_corruption("unsegment_faint:1.5", pipeline.SEGMENTATION_CORRUPTIONS)
  with pytest.raises(ValueError, match="Unknown corruption 'unsegment_large'.*unsegment_small"):
    pipeline.parse_corruption("unsegment_large:0.5", pipeline.SEGMENTATION_CORRUPTIONS)


SMALL = synthetic.synthetic_config(num_train_per_class=10, num_test_per_class=2)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("tfds"))
  synthetic.load(SMALL, path)
  return path


def _labels(data):
  batches = list(data.eval_iter())
  keep = np.concatenate([(b["label"] != 255).any(axis=(1, 2)) for b in batches])
  return (np.concatenate([b["label"] for b in batches])[keep],
          np.concatenate([b["true_label"] for b in batches])[keep])


@pytest.mark.parametrize("name", sorted(noise.SELECTION_BIASES))
def test_pipeline_corrupts_the_training_split_as_calibrated_and_leaves_eval(data_dir, name):
  spec = pipeline.SegmentationSpec("synthetic", batch_size=8, task="binary", config=SMALL,
                                   data_dir=data_dir, corruption=f"{name}:0.5", noise_seed=3,
                                   with_true_label=True)
  evaluation, true = _labels(pipeline.make_segmentation_data(spec, as_numpy=True))
  np.testing.assert_array_equal(evaluation, true)  # the evaluation split is untouched
  # The training split, delivered as evaluation batches (corrupt_eval on split "train").
  observed, true = _labels(pipeline.make_segmentation_data(
      spec.replace(eval_split="train", corrupt_eval=True), as_numpy=True))
  missed = (true == 1).any(axis=(1, 2)) & ~(observed == 1).any(axis=(1, 2))
  # The same objects as the noise function with the pipeline's calibration (one object
  # per image, in the split's order).
  calibration = pipeline.selection_calibration(spec)
  assert calibration.num_objects == 200
  assert calibration.probabilities(noise.dataset_features(
      synthetic.segmentation_examples("train", config=SMALL, data_dir=data_dir),
      calibration.feature)).mean() == pytest.approx(0.5, abs=1e-9)
  expected = [bool(ex["objects"][0] == 0) for ex in synthetic.segmentation_examples(
      "train", config=SMALL, data_dir=data_dir).map(
          lambda ex: noise.unsegment_selected(ex, calibration, 3)).as_numpy_iterator()]
  np.testing.assert_array_equal(missed, expected)
  assert abs(missed.mean() - 0.5) < _binomial_bound(0.5, missed.size)
  # The calibration depends on the selected examples only, not on seeds or batches.
  again = pipeline.selection_calibration(spec.replace(noise_seed=9, batch_size=4, seed=5))
  assert again.intercept == calibration.intercept
