"""The embedded synthetic dataset: design tables, drawing, TFDS builder."""

import collections
import hashlib

import numpy as np
import pytest

from jaxpu.data import classes
from jaxpu.data import synthetic
from jaxpu.data import synthetic_draw

TINY = dict(num_train_per_class=3, num_test_per_class=1)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def tiny(data_dir):
  """The tiny single-object dataset, read into NumPy once."""
  builder = synthetic.load(synthetic.synthetic_config(**TINY), data_dir)
  return {split: list(builder.as_dataset(split=split).as_numpy_iterator())
          for split in ("train", "test")}


def test_categories_are_shape_texture_pairs_organised_like_voc():
  cats = classes.SYNTHETIC_CATEGORIES
  assert len(cats) == 20 and len({c[1:] for c in cats}) == 20
  assert len({c[0] for c in cats}) == 20
  shape_super = {}
  for cid, (_, shape, texture) in enumerate(cats, start=1):
    # A shape family never spans two super-categories.
    assert shape_super.setdefault(shape, classes.SUPERCATEGORY_OF[cid]) == \
        classes.SUPERCATEGORY_OF[cid]
  for fold in range(1, 5):
    textures = [cats[c - 1][2] for c in classes.fold_classes(fold)]
    assert sorted(textures) == sorted(classes.SYNTHETIC_TEXTURES)  # each once per fold
  by_shape = collections.defaultdict(list)
  for cid, (_, shape, _) in enumerate(cats, start=1):
    by_shape[shape].append(cid)
  for shape, ids in by_shape.items():
    folds = [(c - 1) // 5 for c in ids]
    assert len(set(folds)) == len(folds), shape  # twins sit in different folds
  # Neither shape nor texture alone identifies a category (except the two one-offs).
  assert sorted(s for s, ids in by_shape.items() if len(ids) == 1) == ["figure", "hexagon"]
  assert all(sum(c[2] == t for c in cats) == 4 for t in classes.SYNTHETIC_TEXTURES)


def _crescent_area():
  # Unit disc minus its lens-shaped intersection with the disc of radius 0.7 at (0.5, 0).
  r1, r2, d = 1.0, 0.7, 0.5
  a1 = r1 ** 2 * np.arccos((d ** 2 + r1 ** 2 - r2 ** 2) / (2 * d * r1))
  a2 = r2 ** 2 * np.arccos((d ** 2 + r2 ** 2 - r1 ** 2) / (2 * d * r2))
  a3 = 0.5 * np.sqrt((-d + r1 + r2) * (d + r1 - r2) * (d - r1 + r2) * (d + r1 + r2))
  return np.pi - (a1 + a2 - a3)


@pytest.mark.parametrize("shape,area", [
    ("circle", np.pi * 0.9),
    ("ellipse", np.pi * 0.5),
    ("square", 1.7 ** 2),
    ("triangle", 3 * np.sqrt(3) / 4),
    ("diamond", 2 * 0.55),
    ("hexagon", 3 * np.sqrt(3) / 2 * 0.95 ** 2),
    ("star", 5 * 0.45 * np.sin(np.pi / 5)),
    ("cross", (2 * 2 * 0.6 - 0.6 ** 2) * 0.95 ** 2),
    ("frame", 1.8 ** 2 - 1.0 ** 2),
    ("crescent", _crescent_area()),
    ("figure", np.pi * 0.09 + 1.3 * (0.6 + 1.1) / 2),
])
def test_shapes_have_their_analytic_area(shape, area):
  step = 0.004
  v, u = np.mgrid[-1.2:1.2:step, -1.2:1.2:step] + step / 2
  measured = synthetic_draw.shape_mask(shape, u, v).sum() * step ** 2
  assert measured == pytest.approx(area, rel=0.01)


def test_tiny_build_splits_and_features(tiny):
  train, test = tiny["train"], tiny["test"]
  assert len(train) == 60 and len(test) == 20
  counts = collections.Counter(int(ex["label"]) for ex in train)
  assert counts == {c: 3 for c in range(1, 21)}
  ids = sorted(int(ex["id"]) for ex in train + test)
  assert ids == list(range(60)) + [synthetic.ID_STRIDE + i for i in range(20)]
  ex = train[0]
  assert ex["image"].shape == (32, 32, 3) and ex["image"].dtype == np.uint8
  assert ex["class_mask"].shape == ex["instance_mask"].shape == (32, 32, 1)


def test_masks_are_consistent_and_void_is_a_boundary_band(tiny):
  for ex in tiny["train"] + tiny["test"]:
    cls, inst = ex["class_mask"][..., 0], ex["instance_mask"][..., 0]
    objects = ex["object_classes"]
    assert len(objects) == 1 and objects[0] == ex["label"]
    void = cls == classes.VOID
    np.testing.assert_array_equal(void, inst == classes.VOID)
    lut = np.concatenate([[0], objects])
    np.testing.assert_array_equal(cls[~void], lut[inst[~void]])
    obj = (inst > 0) & ~void
    assert obj.sum() >= 8
    near = np.zeros_like(obj)
    near[1:] |= obj[:-1]
    near[:-1] |= obj[1:]
    near[:, 1:] |= obj[:, :-1]
    near[:, :-1] |= obj[:, 1:]
    assert void.any() and np.all(near[void])  # void = the 1-pixel band around the object


def test_builder_stores_the_seeded_drawing(tiny):
  spec = synthetic.synthetic_config(**TINY).draw_spec
  by_id = {int(ex["id"]): ex for ex in tiny["train"]}
  for index in (0, 17, 59):
    image, cls, inst, objects = synthetic_draw.draw_image(
        np.random.default_rng((0, 0, index)), spec, [1 + index % 20])
    np.testing.assert_array_equal(by_id[index]["image"], image)
    np.testing.assert_array_equal(by_id[index]["class_mask"][..., 0], cls)
    np.testing.assert_array_equal(by_id[index]["instance_mask"][..., 0], inst)
  again = synthetic_draw.draw_image(np.random.default_rng((0, 0, 17)), spec, [18])
  other = synthetic_draw.draw_image(np.random.default_rng((1, 0, 17)), spec, [18])
  np.testing.assert_array_equal(again[0], by_id[17]["image"])
  assert np.abs(other[0].astype(int) - again[0]).mean() > 10


def test_multi_object_config(data_dir):
  config = synthetic.synthetic_config("multi", num_train=6, num_test=2, image_size=32)
  builder = synthetic.load(config, data_dir)
  examples = list(builder.as_dataset(split="train").as_numpy_iterator())
  assert len(examples) == 6
  for ex in examples:
    objects, inst = ex["object_classes"], ex["instance_mask"][..., 0]
    assert 2 <= len(objects) <= 4
    sizes = [(inst == k).sum() for k in range(1, len(objects) + 1)]
    assert min(sizes) >= 1  # every object stays visible
    assert ex["label"] == objects[int(np.argmax(sizes))]


def _digest(drawn):
  return hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in drawn)).hexdigest()


@pytest.mark.parametrize("name,categories,digest", [
    ("single", [3], "f15548374465242a"),
    ("multi", [2, 7, 11], "e9b142fc5bae4fb8"),
])
def test_drawing_options_leave_the_named_configs_unchanged(name, categories, digest):
  # Digests of the drawing before the radius/decoy/texture options existed.
  spec = synthetic.BUILDER_CONFIGS[name].draw_spec
  drawn = synthetic_draw.draw_image(np.random.default_rng((0, 0, 5)), spec, categories)
  assert _digest(drawn)[:16] == digest


def test_classification_config_draws_large_objects_without_decoy(data_dir):
  config = synthetic.synthetic_config("classification", num_train_per_class=2,
                                      num_test_per_class=1)
  assert config.name == "classification-num_test_per_class1-num_train_per_class2"
  spec = config.draw_spec
  assert spec.image_size == 16 and spec.decoy_probability == 0 and spec.texture_scale == 2
  assert synthetic.BUILDER_CONFIGS["classification"].num_examples("test") == 2000
  examples = list(synthetic.load(config, data_dir).as_dataset(split="train")
                  .as_numpy_iterator())
  assert len(examples) == 40
  assert all(ex["image"].shape == (16, 16, 3) for ex in examples)
  index = 7
  again = synthetic_draw.draw_image(np.random.default_rng((0, 0, index)), spec, [8])
  by_id = {int(ex["id"]): ex for ex in examples}
  np.testing.assert_array_equal(by_id[index]["image"], again[0])
  small = synthetic.synthetic_config("single", image_size=16).draw_spec
  sizes = [[(synthetic_draw.draw_image(np.random.default_rng((0, 0, i)), s, [1 + i % 20])[2]
             == 1).sum() for i in range(20)] for s in (small, spec)]
  assert np.mean(sizes[1]) > 1.3 * np.mean(sizes[0])  # radius 0.38-0.48 vs 0.28-0.40


def test_config_overrides_and_errors():
  config = synthetic.synthetic_config(image_size=48, num_train_per_class=5)
  assert config.name == "single-image_size48-num_train_per_class5"
  assert config.num_examples("train") == 100
  assert synthetic.synthetic_config("single", image_size=32) is synthetic.BUILDER_CONFIGS["single"]
  with pytest.raises(ValueError, match="Unknown synthetic config 'big'"):
    synthetic.synthetic_config("big")
  with pytest.raises(ValueError, match="Unknown synthetic config field"):
    synthetic.synthetic_config(size=3)
  with pytest.raises(ValueError, match="image_size must be a positive int"):
    synthetic.synthetic_config(image_size=0)
  with pytest.raises(ValueError, match="min_radius <= max_radius"):
    synthetic.synthetic_config(min_radius=0.45, max_radius=0.4)
  with pytest.raises(ValueError, match="decoy_probability"):
    synthetic.synthetic_config(decoy_probability=1.5)
  with pytest.raises(ValueError, match="texture_scale"):
    synthetic.synthetic_config(texture_scale=0)


def test_hosts_read_disjoint_halves(data_dir, tiny):
  config = synthetic.synthetic_config(**TINY)
  halves = [[int(ex["id"]) for ex in synthetic.segmentation_examples(
      "train", config=config, data_dir=data_dir, shard=(i, 2)).as_numpy_iterator()]
      for i in range(2)]
  assert len(halves[0]) == len(halves[1]) == 30
  assert sorted(halves[0] + halves[1]) == sorted(int(ex["id"]) for ex in tiny["train"])
