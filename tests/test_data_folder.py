"""The `folder` segmentation dataset (jaxpu.data.folder) on folders written here with PIL."""

import os
import shutil

import numpy as np
import PIL.Image
import pytest

from jaxpu.data import classes
from jaxpu.data import folder
from jaxpu.data import noise
from jaxpu.data._tf import tf

NUM_IMAGES = 120
CLASS_NAMES = ("background", "cat", "dog", "car", "tree")
VOID = classes.VOID


def palette():
  """A palette whose colours are not their indices (nor greys of them)."""
  values = []
  for i in range(256):
    values += [(i * 73 + 11) % 256, (i * 151 + 90) % 256, (i * 29 + 200) % 256]
  return values


def save_index_png(array, path, mode="P"):
  if mode == "P":
    image = PIL.Image.frombytes("P", array.shape[::-1], np.ascontiguousarray(array).tobytes())
    image.putpalette(palette())
  else:
    image = PIL.Image.fromarray(np.asarray(array, np.uint8), "L")
  image.save(path, format="PNG")


def draw(rng, height, width, num_objects, num_classes=len(CLASS_NAMES)):
  """(class mask, [(class, top, left)]) of `num_objects` boxes, one per quadrant,
  each inside a 1-pixel void outline, on background."""
  mask = np.zeros((height, width), np.uint8)
  boxes = []
  quadrants = rng.permutation(4)[:num_objects]
  for q in quadrants:
    r0, c0 = (q // 2) * height // 2, (q % 2) * width // 2
    r1, c1 = r0 + height // 2, c0 + width // 2
    top, left = r0 + 1 + rng.integers(0, 3), c0 + 1 + rng.integers(0, 3)
    bottom, right = r1 - 1 - rng.integers(0, 3), c1 - 1 - rng.integers(0, 3)
    cls = int(rng.integers(1, num_classes))
    mask[top - 1:bottom + 1, left - 1:right + 1] = VOID
    mask[top:bottom, left:right] = cls
    boxes.append((cls, top, left, bottom, right))
  return mask, boxes


def write_image(rng, path_stem, height, width, kind):
  """Writes an image of `kind` and returns its expected RGB pixels."""
  pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
  if kind == "grey_jpg":
    image = PIL.Image.fromarray(pixels[..., 0], "L")
    path = path_stem + ".jpg"
    image.save(path, quality=90)
  elif kind == "rgba_png":
    alpha = rng.integers(0, 256, (height, width, 1), dtype=np.uint8)
    image = PIL.Image.fromarray(np.concatenate([pixels, alpha], -1), "RGBA")
    path = path_stem + ".png"
    image.save(path)
  elif kind == "rgb_jpeg":
    path = path_stem + ".jpeg"
    PIL.Image.fromarray(pixels).save(path, quality=90)
  else:
    path = path_stem + ".png"
    PIL.Image.fromarray(pixels).save(path)
  with PIL.Image.open(path) as image:
    return np.asarray(image.convert("RGB"))


def write_folder(root, num_images=NUM_IMAGES, seed=0, with_classes=True, sizes=(24, 64)):
  """A folder dataset; returns {NAME: expected example}."""
  rng = np.random.default_rng(seed)
  for sub in ("images", "labels", "instances"):
    os.makedirs(os.path.join(root, sub), exist_ok=True)
  if with_classes:
    with open(os.path.join(root, "classes.txt"), "w") as f:
      f.write("\n".join(CLASS_NAMES) + "\n")
  expected = {}
  kinds = ("grey_jpg", "rgba_png", "rgb_jpeg", "rgb_png")
  for i in range(num_images):
    name = f"img_{i:04d}"
    height, width = (int(v) for v in rng.integers(sizes[0], sizes[1] + 1, 2))
    image = write_image(rng, os.path.join(root, "images", name), height, width, kinds[i % 4])
    mask, boxes = draw(rng, height, width, int(rng.integers(1, 5)))
    save_index_png(mask, os.path.join(root, "labels", name + ".png"), "L" if i % 5 == 0 else "P")
    instances = np.zeros_like(mask)
    instances[mask == VOID] = VOID
    if i % 3:  # an instance map with arbitrary, unordered ids
      ids = rng.choice(np.arange(1, 255), len(boxes), replace=False)
      for k, (_, top, left, bottom, right) in zip(ids, boxes):
        instances[top:bottom, left:right] = k
      save_index_png(instances, os.path.join(root, "instances", name + ".png"),
                     "P" if i % 2 else "L")
      order = np.argsort(ids)
      objects = [boxes[j][0] for j in order]
      renumbered = np.zeros_like(mask)
      renumbered[mask == VOID] = VOID
      for new, j in enumerate(order, start=1):
        _, top, left, bottom, right = boxes[j]
        renumbered[top:bottom, left:right] = new
    else:  # connected components, in raster order of their first pixel
      order = sorted(range(len(boxes)), key=lambda j: (boxes[j][1], boxes[j][2]))
      objects = [boxes[j][0] for j in order]
      renumbered = np.zeros_like(mask)
      renumbered[mask == VOID] = VOID
      for new, j in enumerate(order, start=1):
        _, top, left, bottom, right = boxes[j]
        renumbered[top:bottom, left:right] = new
    expected[name] = {"image": image, "label": mask, "instances": renumbered,
                      "objects": np.asarray(objects, np.int64), "has_map": bool(i % 3)}
  return expected


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("folder") / "My Data!")
  expected = write_folder(root)
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  builder, summary = folder.load_with_summary(root, data_dir)
  return {"root": root, "expected": expected, "data_dir": data_dir, "builder": builder,
          "summary": summary}


def _examples(builder, split):
  return {ex["name"].decode(): ex for ex in builder.as_dataset(split=split).as_numpy_iterator()}


def test_examples_match_the_files(built):
  summary, expected = built["summary"], built["expected"]
  assert summary.all_class_names == CLASS_NAMES
  assert summary.class_names == CLASS_NAMES[1:]
  assert summary.num_classes == 5
  seen = {}
  for split in summary.splits:
    seen.update(_examples(built["builder"], split))
  assert sorted(seen) == sorted(expected)
  shapes = set()
  for name, ex in seen.items():
    want = expected[name]
    assert ex["id"] == folder.example_id(name)
    np.testing.assert_array_equal(ex["image"], want["image"])
    np.testing.assert_array_equal(ex["class_mask"][..., 0], want["label"])  # palette indices
    np.testing.assert_array_equal(ex["instance_mask"][..., 0], want["instances"])
    np.testing.assert_array_equal(ex["object_classes"], want["objects"])
    shapes.add(ex["image"].shape)
  assert len(shapes) > 20  # stored at their own sizes
  assert summary.max_height == max(e["image"].shape[0] for e in expected.values())
  assert summary.max_width == max(e["image"].shape[1] for e in expected.values())
  assert sum(summary.num_examples.values()) == NUM_IMAGES
  assert summary.num_objects == {
      s: sum(len(expected[n]["objects"]) for n in _examples(built["builder"], s))
      for s in summary.splits}


def test_segmentation_examples_have_the_loader_shape(built):
  ds = folder.segmentation_examples("val", directory=built["root"], data_dir=built["data_dir"])
  assert set(ds.element_spec) == {"id", "image", "label", "instances", "objects"}
  assert ds.element_spec["id"].dtype == tf.int64
  assert ds.element_spec["image"].dtype == tf.uint8
  assert ds.element_spec["label"].shape.rank == 2
  assert ds.element_spec["objects"].dtype == tf.int32
  examples = list(ds.as_numpy_iterator())
  assert len(examples) == built["summary"].num_examples["val"]
  by_id = {folder.example_id(n): e for n, e in built["expected"].items()}
  for ex in examples:
    np.testing.assert_array_equal(ex["label"], by_id[ex["id"]]["label"])
  halves = [folder.segmentation_examples("train", directory=built["root"],
                                         data_dir=built["data_dir"], shard=(i, 2))
            for i in range(2)]
  ids = [{int(e["id"]) for e in h.as_numpy_iterator()} for h in halves]
  assert not ids[0] & ids[1]
  assert len(ids[0] | ids[1]) == built["summary"].num_examples["train"]
  with pytest.raises(ValueError, match="no split 'validation'"):
    folder.segmentation_examples("validation", directory=built["root"],
                                 data_dir=built["data_dir"])
  assert folder.class_names(built["root"], built["data_dir"]) == CLASS_NAMES[1:]


def test_summary_mean_std_and_image_size(built):
  summary = built["summary"]
  train = [built["expected"][n]["image"].reshape(-1, 3) / 255.0
           for n in _examples(built["builder"], "train")]
  pixels = np.concatenate(train)
  np.testing.assert_allclose(summary.mean, pixels.mean(0), rtol=1e-9)
  np.testing.assert_allclose(summary.std, pixels.std(0), rtol=1e-7)
  assert summary.max_side == max(max(e["image"].shape[:2]) for e in built["expected"].values())
  for side, downsample, size in ((64, 1, 64), (61, 1, 64), (57, 1, 64), (56, 1, 56), (64, 4, 16),
                                 (65, 4, 24), (500, 4, 128), (33, 2, 24)):
    small = folder.FolderSummary(**{**summary.to_json(), "max_height": side, "max_width": 3})
    assert folder.default_image_size(small, downsample) == size, (side, downsample)


def test_ids_stable_across_builds_and_independent_of_the_split(built, tmp_path):
  builder, summary = folder.load_with_summary(built["root"], str(tmp_path), split_seed=1)
  assert summary.config_name != built["summary"].config_name
  first = {}
  for split in built["summary"].splits:
    first.update({n: (int(e["id"]), split) for n, e in _examples(built["builder"], split).items()})
  second = {}
  for split in summary.splits:
    second.update({n: (int(e["id"]), split) for n, e in _examples(builder, split).items()})
  assert {n: v[0] for n, v in first.items()} == {n: v[0] for n, v in second.items()}
  assert any(first[n][1] != second[n][1] for n in first)  # another split, same ids
  assert len({v[0] for v in first.values()}) == NUM_IMAGES
  assert all(0 <= v[0] < 2 ** 63 for v in first.values())


def test_cache_is_reused_and_keyed_on_the_folder_and_its_files(built, tmp_path, monkeypatch):
  root, data_dir = built["root"], built["data_dir"]

  def no_scan(*args, **kwargs):
    raise AssertionError("a prepared folder must not be scanned again")
  monkeypatch.setattr(folder, "scan_folder", no_scan)
  again = folder.summary(root, data_dir)
  assert again == built["summary"]
  monkeypatch.undo()
  name = built["summary"].config_name
  assert name.startswith("my_data-") and len(name) == len("my_data-") + 16
  copy = str(tmp_path / "My Data!")
  shutil.copytree(root, copy)
  assert folder.config_name(copy, folder.fingerprint(copy)) != name  # another folder
  label = os.path.join(copy, "labels", "img_0001.png")
  before = folder.fingerprint(copy)
  os.utime(label, ns=(1, 1))  # touched
  assert folder.fingerprint(copy) != before
  touched = folder.fingerprint(copy)
  os.remove(os.path.join(copy, "instances", "img_0001.png"))  # a file removed
  assert folder.fingerprint(copy) != touched
  assert folder.fingerprint(copy, connectivity=4) != folder.fingerprint(copy)
  assert folder.fingerprint(copy) == folder.fingerprint(copy)


def test_components_are_the_objects_without_an_instance_map():
  mask = np.zeros((8, 10), np.uint8)
  mask[1:3, 1:3] = 2
  mask[3:5, 3:5] = 2     # touches the first at a corner only
  mask[1:3, 7:9] = 2     # separate, same class
  mask[6:8, 0:4] = 1
  mask[6:8, 4] = VOID    # void separates two class-1 pieces
  mask[6:8, 5:7] = 1
  instances, objects = folder.components(mask, 8)
  np.testing.assert_array_equal(objects, [2, 2, 1, 1])
  assert set(np.unique(instances[1:5, 1:5])) == {0, 1}
  assert (instances[1:3, 7:9] == 2).all()
  assert (instances[6:8, 0:4] == 3).all() and (instances[6:8, 5:7] == 4).all()
  assert (instances[mask == VOID] == VOID).all() and (instances[mask == 0] == 0).all()
  instances, objects = folder.components(mask, 4)
  np.testing.assert_array_equal(objects, [2, 2, 2, 1, 1])
  assert instances[1, 1] == 1 and instances[1, 7] == 2 and instances[3, 3] == 3


def test_palette_index_is_read_not_its_colour(tmp_path):
  mask = np.array([[0, 1, 2], [3, VOID, 1]], np.uint8)
  path = str(tmp_path / "l.png")
  save_index_png(mask, path, "P")
  with PIL.Image.open(path) as image:
    assert not np.array_equal(np.asarray(image.convert("L")), mask)
  np.testing.assert_array_equal(folder.read_index_png(path, "label"), mask)


def test_seeded_split_fractions():
  names = [f"photo{i}" for i in range(20000)]
  splits = [folder.seeded_split(n) for n in names]
  n = len(names)
  for split, p in zip(folder.SPLITS, folder.DEFAULT_SPLIT_FRACTIONS):
    share = splits.count(split) / n
    assert abs(share - p) < 4 * np.sqrt(p * (1 - p) / n), (split, share)
  assert splits == [folder.seeded_split(n) for n in names]  # deterministic
  other = [folder.seeded_split(n, split_seed=1) for n in names]
  assert np.mean([a != b for a, b in zip(splits, other)]) > 0.2
  shares = [folder.seeded_split(n, (0.5, 0.5, 0.0)) for n in names[:4000]]
  assert set(shares) == {"train", "val"} and abs(shares.count("train") / 4000 - 0.5) < 0.04
  with pytest.raises(ValueError, match="split_fractions"):
    folder.seeded_split("x", (0.5, 0.2, 0.2))


def test_dataset_splits_are_the_seeded_splits(built):
  for split in built["summary"].splits:
    for name in _examples(built["builder"], split):
      assert folder.seeded_split(name) == split


def test_unsegment_objects_rate_on_the_train_split(built):
  ds = folder.segmentation_examples("train", directory=built["root"], data_dir=built["data_dir"])
  ds = ds.map(lambda ex: {**ex, "noisy": noise.unsegment_objects(ex, 0.5, seed=7)})
  kept = dropped = 0
  for ex in ds.as_numpy_iterator():
    noisy = ex["noisy"]
    objects, after = ex["objects"], noisy["objects"]
    assert np.all((after == 0) | (after == objects))
    for k, (old, new) in enumerate(zip(objects, after), start=1):
      pixels = ex["instances"] == k
      assert (noisy["label"][pixels] == new).all()
    np.testing.assert_array_equal(noisy["label"][ex["instances"] == 0],
                                  ex["label"][ex["instances"] == 0])
    np.testing.assert_array_equal(noisy["label"] == VOID, ex["label"] == VOID)
    dropped += int((after == 0).sum())
    kept += int((after != 0).sum())
  n = kept + dropped
  assert n == built["summary"].num_objects["train"] and n > 150
  assert abs(dropped / n - 0.5) < 4 * np.sqrt(0.25 / n), (dropped, n)


# ----------------------------------------------------------------------------
# Bad input.
# ----------------------------------------------------------------------------


def _small(root, **kwargs):
  return write_folder(str(root), num_images=6, seed=1, **kwargs)


def _expect_problems(root, tmp_path, *needles, count=None, **options):
  """Loading `root` raises a FolderDataError naming each needle; nothing is built."""
  data_dir = str(tmp_path / "tfds")
  options.setdefault("split_fractions", (1.0, 0.0, 0.0))
  with pytest.raises(folder.FolderDataError) as info:
    folder.load(str(root), data_dir, **options)
  message = str(info.value)
  for needle in needles:
    assert needle in message, (needle, message)
  if count is not None:
    assert len(info.value.problems) == count, info.value.problems
  built = os.path.join(data_dir, "jaxpu_folder")
  assert not os.path.isdir(built) or not any(
      os.path.isdir(os.path.join(built, d, "1.0.0")) for d in os.listdir(built))
  return info.value


def _path(root, *parts):
  return os.path.join(os.path.realpath(str(root)), *parts)


def _image_path(root, name):
  for ext in folder.IMAGE_EXTENSIONS:
    path = _path(root, "images", name + ext)
    if os.path.exists(path):
      return path
  raise FileNotFoundError(name)


def test_small_folder_builds_without_classes_txt(tmp_path):
  root = tmp_path / "small"
  expected = _small(root, with_classes=False)
  summary = folder.summary(str(root), str(tmp_path / "tfds"), split_fractions=(1.0, 0.0, 0.0))
  largest = max(int(e["objects"].max()) for e in expected.values())
  assert summary.class_names == tuple(f"class_{k}" for k in range(1, largest + 1))
  assert summary.splits == ("train",)


def test_label_without_image_and_image_without_label(tmp_path):
  root = tmp_path / "f"
  _small(root)
  os.remove(_image_path(root, "img_0001"))
  os.remove(_path(root, "labels", "img_0002.png"))
  problem = _expect_problems(root, tmp_path, _path(root, "labels", "img_0001.png"),
                             _image_path(root, "img_0002"), "label without an image",
                             "image without a label")
  # The instance map of img_0001 (and of img_0002) now lacks its pair too.
  assert any(_path(root, "instances", "img_0001.png") in p for p in problem.problems)


def test_size_mismatch(tmp_path):
  root = tmp_path / "f"
  _small(root)
  label = _path(root, "labels", "img_0003.png")
  save_index_png(np.zeros((5, 7), np.uint8), label)
  _expect_problems(root, tmp_path, label, "must have its image's size", count=1)


def test_instance_map_size_mismatch(tmp_path):
  root = tmp_path / "f"
  _small(root)
  path = _path(root, "instances", "img_0001.png")
  save_index_png(np.zeros((5, 7), np.uint8), path)
  _expect_problems(root, tmp_path, path, "instance map of size 7x5", count=1)


def test_label_values_outside_classes_txt(tmp_path):
  root = tmp_path / "f"
  _small(root)
  label = _path(root, "labels", "img_0004.png")
  with PIL.Image.open(label) as image:
    mask = np.array(image)
  mask[0, 0] = 7
  save_index_png(mask, label)
  _expect_problems(root, tmp_path, label, "label value(s) [7]", "classes.txt", count=1)


@pytest.mark.parametrize("which", ["image", "label", "instances"])
def test_unreadable_and_empty_files(tmp_path, which):
  root = tmp_path / "f"
  _small(root)
  paths = {"image": _image_path(root, "img_0002"),
           "label": _path(root, "labels", "img_0002.png"),
           "instances": _path(root, "instances", "img_0001.png")}
  garbage = paths[which]
  with open(garbage, "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n this is not an image")
  empty = {"image": _image_path(root, "img_0005"), "label": _path(root, "labels", "img_0005.png"),
           "instances": _path(root, "instances", "img_0004.png")}[which]
  open(empty, "wb").close()
  _expect_problems(root, tmp_path, f"{garbage}: unreadable", f"{empty}: empty file", count=2)


def test_truncated_jpeg_is_unreadable(tmp_path):
  root = tmp_path / "f"
  _small(root)
  path = _image_path(root, "img_0002")
  assert path.endswith(".jpeg")
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:len(data) // 2])
  _expect_problems(root, tmp_path, f"{path}: unreadable", count=1)


def test_duplicate_names_with_different_extensions(tmp_path):
  root = tmp_path / "f"
  _small(root)
  first = _image_path(root, "img_0003")  # .png
  other = first[:-len(".png")] + ".jpg"
  PIL.Image.open(first).convert("RGB").save(other)
  _expect_problems(root, tmp_path, "img_0003.jpg", "img_0003.png", "keep one of them", count=1)


def test_empty_splits(tmp_path):
  root = tmp_path / "f"
  _small(root)
  os.makedirs(_path(root, "splits"))
  names = [f"img_{i:04d}" for i in range(6)]
  with open(_path(root, "splits", "train.txt"), "w") as f:
    f.write("\n".join(names) + "\n")
  open(_path(root, "splits", "val.txt"), "w").close()
  _expect_problems(root, tmp_path, _path(root, "splits", "val.txt"), "empty split", count=1)
  os.remove(_path(root, "splits", "val.txt"))
  folder.load(str(root), str(tmp_path / "ok"))
  # Seeded: a split no image falls into.
  shutil.rmtree(_path(root, "splits"))
  seed = next(s for s in range(100)
              if len({folder.seeded_split(n, split_seed=s) for n in names}) < 3)
  error = _expect_problems(root, tmp_path, "no image fell into the", "split_fractions",
                           split_fractions=folder.DEFAULT_SPLIT_FRACTIONS, split_seed=seed)
  assert all("no image fell into" in p for p in error.problems)


def test_split_files_must_cover_every_image_once(tmp_path):
  root = tmp_path / "f"
  _small(root)
  os.makedirs(_path(root, "splits"))
  with open(_path(root, "splits", "train.txt"), "w") as f:
    f.write("img_0000\nimg_0001\nimg_0002.jpg\nmissing\n")
  with open(_path(root, "splits", "test.txt"), "w") as f:
    f.write("img_0001\nimg_0003\n")
  with open(_path(root, "splits", "trainval.txt"), "w") as f:
    f.write("img_0000\n")
  error = _expect_problems(
      root, tmp_path, "line 3: 'img_0002.jpg' is not an image NAME (write the NAME 'img_0002'",
      "line 4: 'missing'", "already listed", "trainval.txt: unexpected", "in no split file")
  assert len(error.problems) == 5


def test_colour_and_jpeg_labels(tmp_path):
  root = tmp_path / "f"
  _small(root)
  label = _path(root, "labels", "img_0000.png")
  with PIL.Image.open(label) as image:
    image.convert("RGB").save(label)
  jpeg_label = _path(root, "labels", "img_0003.jpg")
  os.rename(_path(root, "labels", "img_0003.png"), jpeg_label)
  _expect_problems(root, tmp_path, f"{label}: label PNG of mode RGB", "holds colours",
                   f"{jpeg_label}: not a label", f"{_image_path(root, 'img_0003')}: image "
                   "without a label", count=3)


def test_inconsistent_instance_maps(tmp_path):
  root = tmp_path / "f"
  expected = _small(root)
  name = "img_0001"
  assert expected[name]["has_map"] and len(expected[name]["objects"]) >= 2
  instances = _path(root, "instances", name + ".png")
  label = _path(root, "labels", name + ".png")
  with PIL.Image.open(instances) as image:
    raw = np.array(image)
  first = min(k for k in np.unique(raw) if 0 < k < VOID)
  mask = expected[name]["label"].copy()
  inside = np.argwhere(raw == first)
  r, c = inside[0]
  mask[r, c] = mask[r, c] % 4 + 1  # one pixel of object `first` gets another class
  save_index_png(mask, label)
  _expect_problems(root, tmp_path, f"{instances}: object {first} covers pixels of classes",
                   count=1)
  save_index_png(expected[name]["label"], label)
  save_index_png(np.where(raw == first, 0, raw).astype(np.uint8), instances)
  _expect_problems(root, tmp_path, f"{instances}: {len(inside)} pixel(s) labelled",
                   "lie in no object", count=1)
  other = _path(root, "instances", "img_0004.png")
  with PIL.Image.open(other) as image:
    raw = np.array(image)
  raw[expected["img_0004"]["label"] == 0] = 9  # an object over background pixels
  save_index_png(raw, other)
  os.remove(instances)  # img_0001 back to connected components
  _expect_problems(root, tmp_path, f"{other}: object 9 covers pixels of classes [0", count=1)


def test_too_many_components(tmp_path):
  root = tmp_path / "f"
  _small(root)
  mask = np.zeros((40, 40), np.uint8)
  mask[::2, ::2] = 1  # 400 isolated pixels (8-connectivity)
  label = _path(root, "labels", "img_0003.png")
  assert not os.path.exists(_path(root, "instances", "img_0003.png"))  # components
  PIL.Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(_image_path(root, "img_0003"))
  save_index_png(mask, label)
  _expect_problems(root, tmp_path, label, "400 connected components", count=1)


def test_all_problems_at_once(tmp_path):
  root = tmp_path / "f"
  write_folder(str(root), num_images=30, seed=2)
  for i in range(12):
    os.remove(_path(root, "labels", f"img_{i:04d}.png"))
    if os.path.exists(_path(root, "instances", f"img_{i:04d}.png")):
      os.remove(_path(root, "instances", f"img_{i:04d}.png"))
  with open(_path(root, "classes.txt"), "w") as f:
    f.write("background\ncat\ncat\n")
  error = _expect_problems(root, tmp_path, "image without a label", "has 13 problem(s)",
                           "and 3 more", count=13)
  assert any("classes.txt: duplicate class name(s) ['cat']" in p for p in error.problems)
  assert str(error).count("\n  - ") == folder.MAX_LISTED


def test_bad_options(tmp_path):
  root = tmp_path / "f"
  _small(root)
  with pytest.raises(ValueError, match="connectivity must be 4 or 8"):
    folder.load(str(root), str(tmp_path / "d"), connectivity=6)
  with pytest.raises(ValueError, match="split_fractions"):
    folder.load(str(root), str(tmp_path / "d"), split_fractions=(0.0, 0.5, 0.5))
  with pytest.raises(FileNotFoundError, match="does not exist"):
    folder.load(str(tmp_path / "nowhere"), str(tmp_path / "d"))


def test_pipeline_resize_and_pad_gives_one_size(built):
  from jaxpu.data import pipeline
  summary = built["summary"]
  size = folder.default_image_size(summary)
  fill = np.round(np.asarray(summary.mean) * 255)
  ds = folder.segmentation_examples("train", directory=built["root"], data_dir=built["data_dir"])
  ds = ds.map(lambda ex: pipeline.resize_and_pad(ex, 1, size, fill))
  by_id = {folder.example_id(n): e for n, e in built["expected"].items()}
  for ex in ds.as_numpy_iterator():
    want = by_id[ex["id"]]
    h, w = want["label"].shape
    assert ex["image"].shape == (size, size, 3) and ex["label"].shape == (size, size)
    np.testing.assert_array_equal(ex["label"][:h, :w], want["label"])
    assert (ex["label"][h:] == VOID).all() and (ex["label"][:, w:] == VOID).all()
    assert (ex["instances"][h:] == 0).all()
    np.testing.assert_array_equal(ex["image"][h:, :1], np.broadcast_to(fill, (size - h, 1, 3)))
