"""VOC2011 + SBD builder on tiny archives written in the real formats."""

import io
import os
import re
import tarfile

import numpy as np
import PIL.Image
import pytest
import scipy.io

from jaxpu import data as data_lib
from jaxpu.data import voc

VOC_DIR = "TrainVal/VOCdevkit/VOC2011"
SBD_DIR = "benchmark_RELEASE/dataset"
# name: (split lists it is in, [(class, box)], height, width); VOC classes: 1 aeroplane,
# 2 bicycle, 3 bird, 6 bus, 7 car, 8 cat, 12 dog, 13 horse, 15 person, 17 sheep.
IMAGES = {
    "2008_000002": ({"voc_train"}, [(12, (4, 30, 6, 40))], 40, 52),
    "2008_000003": ({"voc_train"}, [(15, (2, 18, 2, 20)), (3, (22, 36, 24, 44))], 40, 48),
    "2008_000004": ({"voc_val"}, [(7, (8, 28, 8, 36))], 36, 44),
    "2008_000005": ({"voc_val", "sbd_train"}, [(1, (5, 25, 5, 25))], 32, 40),
    "2008_000006": ({"sbd_train"}, [(8, (3, 20, 10, 30))], 40, 40),
    "2008_000007": ({"sbd_train"}, [(2, (2, 15, 2, 15)), (2, (20, 35, 20, 35))], 40, 40),
    "2008_000008": ({"sbd_val"}, [(6, (10, 30, 4, 44))], 44, 48),
    "2008_000009": ({"sbd_train"}, [(13, (6, 26, 6, 30))], 36, 36),
    "2008_000010": ({"sbd_train"}, [(17, (0, 20, 0, 20))], 40, 44),
}


def voc_palette():
  """The PASCAL VOC colour map (bit-interleaved), 256 RGB entries."""
  palette = []
  for i in range(256):
    r = g = b = 0
    c = i
    for j in range(8):
      r |= ((c >> 0) & 1) << (7 - j)
      g |= ((c >> 1) & 1) << (7 - j)
      b |= ((c >> 2) & 1) << (7 - j)
      c >>= 3
    palette += [r, g, b]
  return palette


def masks(name, void_band):
  """(class mask, instance mask, classes) of an image: boxes with a 1-pixel void band."""
  _, objects, h, w = IMAGES[name]
  cls = np.zeros((h, w), np.uint8)
  inst = np.zeros((h, w), np.uint8)
  for k, (c, (r0, r1, c0, c1)) in enumerate(objects, start=1):
    if void_band:
      cls[max(r0 - 1, 0):r1 + 1, max(c0 - 1, 0):c1 + 1] = 255
      inst[max(r0 - 1, 0):r1 + 1, max(c0 - 1, 0):c1 + 1] = 255
    cls[r0:r1, c0:c1] = c
    inst[r0:r1, c0:c1] = k
  return cls, inst, [c for c, _ in objects]


def _png(array):
  image = PIL.Image.frombytes("P", array.shape[::-1], np.ascontiguousarray(array).tobytes())
  image.putpalette(voc_palette())
  buffer = io.BytesIO()
  image.save(buffer, format="PNG")
  return buffer.getvalue()


def _jpeg(name):
  _, _, h, w = IMAGES[name]
  rng = np.random.default_rng(int(name[-3:]))
  buffer = io.BytesIO()
  PIL.Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buffer, "JPEG")
  return buffer.getvalue()


def _cells(n):
  """A MATLAB cell array (n x 1) of empty matrices, like SBD's Boundaries."""
  cells = np.empty((n, 1), object)
  for i in range(n):
    cells[i, 0] = np.zeros((0, 0))
  return cells


def _mat(cls_or_inst, name):
  cls, inst, categories = masks(name, void_band=False)
  buffer = io.BytesIO()
  if cls_or_inst == "cls":
    scipy.io.savemat(buffer, {"GTcls": {
        "Segmentation": cls, "CategoriesPresent": np.array(sorted(set(categories)), np.uint8),
        "Boundaries": _cells(20)}})
  else:
    scipy.io.savemat(buffer, {"GTinst": {
        "Segmentation": inst, "Categories": np.array(categories, np.uint8)[:, None],
        "Boundaries": _cells(len(categories))}})
  return buffer.getvalue()


def _add(tar, path, content):
  info = tarfile.TarInfo(path)
  info.size = len(content)
  tar.addfile(info, io.BytesIO(content))


def _lists(tag):
  return ("\n".join(n for n, (s, *_) in IMAGES.items() if tag in s) + "\n").encode()


def write_archives(manual_dir):
  """The two archives, with the official names and folder layouts."""
  os.makedirs(manual_dir, exist_ok=True)
  with tarfile.open(os.path.join(manual_dir, voc.VOC_ARCHIVE), "w") as tar:
    for name, (splits, *_) in IMAGES.items():
      if splits & {"voc_train", "voc_val"}:
        cls, inst, _ = masks(name, void_band=True)
        _add(tar, f"{VOC_DIR}/JPEGImages/{name}.jpg", _jpeg(name))
        _add(tar, f"{VOC_DIR}/SegmentationClass/{name}.png", _png(cls))
        _add(tar, f"{VOC_DIR}/SegmentationObject/{name}.png", _png(inst))
    _add(tar, f"{VOC_DIR}/ImageSets/Segmentation/train.txt", _lists("voc_train"))
    _add(tar, f"{VOC_DIR}/ImageSets/Segmentation/val.txt", _lists("voc_val"))
  with tarfile.open(os.path.join(manual_dir, voc.SBD_ARCHIVE), "w:gz") as tar:
    for name, (splits, *_) in IMAGES.items():
      if splits & {"sbd_train", "sbd_val"}:
        _add(tar, f"{SBD_DIR}/img/{name}.jpg", _jpeg(name))
        _add(tar, f"{SBD_DIR}/cls/{name}.mat", _mat("cls", name))
        _add(tar, f"{SBD_DIR}/inst/{name}.mat", _mat("inst", name))
    _add(tar, f"{SBD_DIR}/train.txt", _lists("sbd_train"))
    _add(tar, f"{SBD_DIR}/val.txt", _lists("sbd_val"))


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
  root = tmp_path_factory.mktemp("voc")
  manual, data_dir = str(root / "manual"), str(root / "tfds")
  write_archives(manual)
  voc.load(data_dir, manual)
  return data_dir, manual


@pytest.fixture(scope="module")
def examples(dirs):
  builder = voc.load(dirs[0])
  return {split: {ex["name"].decode(): ex for ex in builder.as_dataset(split=split)
                  .as_numpy_iterator()} for split in ("train", "validation", "seg11valid")}


def test_splits_follow_the_fcn_protocol(examples):
  assert sorted(examples["train"]) == [
      "2008_000002", "2008_000003", "2008_000006", "2008_000007", "2008_000008",
      "2008_000009", "2008_000010"]  # SBD train+val + VOC train, minus VOC val
  assert sorted(examples["validation"]) == ["2008_000004", "2008_000005"]
  assert sorted(examples["seg11valid"]) == ["2008_000004"]  # VOC val not in SBD train


def test_split_ids_with_and_without_the_seg11valid_file():
  splits = voc.split_ids(["a"], ["b", "c"], ["c", "d"], ["a", "e"])
  assert splits == {"train": ["a", "d", "e"], "validation": ["b", "c"], "seg11valid": ["b"]}
  assert voc.split_ids(["a"], ["b", "c"], ["c"], [], seg11=["c"])["seg11valid"] == ["c"]


def test_masks_and_objects_are_read_from_png_and_mat(examples):
  for split in examples.values():
    for name, ex in split.items():
      sources, objects, h, w = IMAGES[name]
      from_voc = bool(sources & {"voc_train", "voc_val"})
      cls, inst, categories = masks(name, void_band=from_voc)
      assert ex["id"] == int(name.replace("_", ""))
      assert ex["image"].shape == (h, w, 3)
      np.testing.assert_array_equal(ex["class_mask"][..., 0], cls)
      np.testing.assert_array_equal(ex["instance_mask"][..., 0], inst)
      assert ex["object_classes"].tolist() == categories
  # 2008_000005 is in VOC val and SBD train: VOC's PNG (with void band) wins.
  assert (examples["validation"]["2008_000005"]["class_mask"] == 255).any()


def test_pipeline_single_objects_downsampled_and_padded(dirs):
  data_dir, manual = dirs
  data = data_lib.make_segmentation_data(data_lib.SegmentationSpec(
      "voc", batch_size=4, data_dir=data_dir, manual_dir=manual, image_size=16), as_numpy=True)
  assert data.num_train_examples == 5  # single-object training images
  assert data.num_eval_examples == 1 and data.image_shape == (16, 16, 3)
  batch = next(data.eval_iter())
  label = batch["label"][0]  # 2008_000004: 36x44 -> 9x11, padded to 16x16 with void
  assert (label[9:, :] == 255).all() and (label[:, 11:] == 255).all()
  cls, _, _ = masks("2008_000004", void_band=True)
  np.testing.assert_array_equal(label[:9, :11], cls[2::4, 2::4])  # nearest, pixel centres
  assert (batch["label"][1:] == 255).all()  # padding examples
  multi = data_lib.make_segmentation_data(data_lib.SegmentationSpec(
      "voc", batch_size=4, data_dir=data_dir, single_object=False, downsample=2, image_size=24,
      eval_split="validation"), as_numpy=True)
  assert multi.num_train_examples == 7 and multi.num_eval_examples == 2


def test_voc_batch_feeds_the_train_step_on_4_devices(dirs):
  from tests.test_pipeline import run_train_step
  # The synthetic test's shapes (32x32, batch 4), so one process compiles the step once.
  data = data_lib.make_segmentation_data(data_lib.SegmentationSpec(
      "voc", batch_size=4, data_dir=dirs[0], image_size=32, task="binary",
      corruption="unsegment_objects:0.5"))
  run_train_step(data, "fcn_small", loss="logistic", width=0.25)


def _tar(path, members):
  with tarfile.open(path, "w") as tar:
    for member, content in members:
      if isinstance(member, tarfile.TarInfo):
        tar.addfile(member)
      else:
        _add(tar, member, content)


@pytest.mark.parametrize("member", ["../evil.txt", "/tmp/evil.txt", "ok/../../evil.txt"])
def test_archives_with_escaping_members_are_refused(tmp_path, member):
  archive = str(tmp_path / "bad.tar")
  _tar(archive, [("ok/file.txt", b"fine"), (member, b"evil")])
  with pytest.raises(voc.UnsafeArchiveError, match="would be written outside"):
    voc.safe_extract(archive, str(tmp_path / "out" / "x"))
  assert not os.path.exists(tmp_path / "out" / "x") and not os.path.exists(tmp_path / "evil.txt")


def test_links_out_of_the_archive_are_refused(tmp_path):
  link = tarfile.TarInfo("ok/link")
  link.type, link.linkname = tarfile.SYMTYPE, "../../etc/passwd"
  archive = str(tmp_path / "link.tar")
  _tar(archive, [(link, None)])
  with pytest.raises(voc.UnsafeArchiveError, match="is a symbolic link.*not an official"):
    voc.safe_extract(archive, str(tmp_path / "out"))


# --- hostile archives: the official ones hold only files and folders -------------------


def _link(name, target, kind=tarfile.SYMTYPE):
  info = tarfile.TarInfo(name)
  info.type, info.linkname = kind, target
  return info


def _special(name, kind):
  info = tarfile.TarInfo(name)
  info.type = kind
  if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
    info.devmajor, info.devminor = 1, 3
  return info


def _dot_chain(depth, width=2):
  """Folder links `l0 → .`, `l0/l1 → .`, ...; then `.../v → ../..` and a file through it.

  Every link target stays inside when read as text (what the old check did); on disk
  the chain is the extraction folder itself, so `v` is two folders above it. With wide
  names the members' paths run past PATH_MAX.
  """
  members, path = [], ""
  for i in range(depth):
    name = f"l{i}".ljust(width, "l")
    members.append((_link(f"{path}{name}", "."), None))
    path += f"{name}/"
  members.append((_link(f"{path}v", "../.."), None))
  members.append((f"{path}v/evil.txt", b"evil"))
  return members


HOSTILE = {
    # on Pythons without tarfile's data filter these three members write outside
    "three_members": [(_link("x", "."), None), (_link("x/y", ".."), None),
                      ("x/y/evil.txt", b"evil")],
    "dot_chain": _dot_chain(4),
    "chain_past_path_max": _dot_chain(24, width=200),
    "symlink_inside": [("ok/file.txt", b"fine"), (_link("ok/link", "file.txt"), None)],
    "hard_link_inside": [("ok/file.txt", b"fine"),
                         (_link("ok/hard", "ok/file.txt", tarfile.LNKTYPE), None)],
    "fifo": [("ok/file.txt", b"fine"), (_special("ok/fifo", tarfile.FIFOTYPE), None)],
    "char_device": [(_special("ok/null", tarfile.CHRTYPE), None)],
    "block_device": [(_special("ok/disk", tarfile.BLKTYPE), None)],
}


def _tree(root):
  """Every path under `root` (links listed, not followed)."""
  out = set()
  for folder, dirs, files in os.walk(root, followlinks=False):
    out.update(os.path.relpath(os.path.join(folder, n), root) for n in dirs + files)
  return out


@pytest.mark.parametrize("with_filter", [True, False], ids=["data_filter", "no_filter"])
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_archives_with_links_or_special_members_are_refused(tmp_path, monkeypatch, kind,
                                                            with_filter):
  """The official VOC and SBD archives hold no link, device or fifo: any is refused before
  anything is written, with or without tarfile's `filter=`, as not an official archive."""
  if not with_filter:  # the refusal must not rest on tarfile's filter
    monkeypatch.setattr(voc, "_HAS_DATA_FILTER", False)
  manual = tmp_path / "a" / "b" / "manual"
  manual.mkdir(parents=True)
  archive = str(manual / voc.VOC_ARCHIVE)
  _tar(archive, HOSTILE[kind])
  destination = str(tmp_path / "a" / "b" / "data" / "extracted" / "VOCtrainval_25-May-2011")
  os.makedirs(os.path.dirname(destination))
  before = _tree(tmp_path)
  with pytest.raises(voc.UnsafeArchiveError,
                     match=r"Refusing to extract .* is not an official VOC2011 or SBD "
                     r"archive") as info:
    voc.safe_extract(archive, destination)
  assert "download" not in str(info.value).lower()
  assert _tree(tmp_path) == before  # nothing written, inside or outside
  with pytest.raises(voc.UnsafeArchiveError):  # through `locate` too
    voc.locate(str(manual), os.path.dirname(destination))
  assert _tree(tmp_path) == before
  refused = []  # the check itself refuses every link, device and fifo, extraction or not
  with tarfile.open(archive) as tar:
    for member in tar.getmembers():
      try:
        voc._check_member(member, archive)  # pylint: disable=protected-access
      except voc.UnsafeArchiveError:
        refused.append(member.name)
  assert refused == [m.name for m, _ in HOSTILE[kind] if isinstance(m, tarfile.TarInfo)]


def test_locating_folders_follows_no_link_and_returns(tmp_path, monkeypatch):
  """Two `.` links in a manual directory made the folder search run forever: it now lists
  each of the 4 real folders once (a budget of 20 listings stops a runaway)."""
  manual = tmp_path / "manual"
  (manual / "real" / "benchmark_RELEASE" / "dataset").mkdir(parents=True)
  os.symlink(".", manual / "again")
  os.symlink(".", manual / "once_more")
  os.symlink(manual / "real", manual / "linked")
  listed, scandir = [], os.scandir

  def counted_scandir(path="."):
    if os.path.realpath(path).startswith(os.path.realpath(manual)):  # others' pass through
      listed.append(os.path.realpath(path))
      if len(listed) > 20:
        raise RuntimeError(f"the search keeps listing folders: {listed[-5:]}")
    return scandir(path)

  monkeypatch.setattr(voc.os, "scandir", counted_scandir)
  assert voc._find_dir(str(manual), ("cls", "inst", "train.txt", "val.txt")) is None
  assert sorted(listed) == sorted(os.path.realpath(p) for p in (
      manual, manual / "real", manual / "real" / "benchmark_RELEASE",
      manual / "real" / "benchmark_RELEASE" / "dataset"))
  dataset = manual / "real" / "benchmark_RELEASE" / "dataset"
  for name in ("cls", "inst"):
    (dataset / name).mkdir()
  for name in ("train.txt", "val.txt"):
    (dataset / name).write_text("2008_000002\n")
  # found where it is, not through the links (`linked/...` sorts first, but is a link)
  assert voc._find_dir(str(manual), ("cls", "inst", "train.txt", "val.txt")) == str(dataset)


def test_missing_files_say_what_to_put_where(tmp_path):
  empty = tmp_path / "manual"
  empty.mkdir()
  with pytest.raises(FileNotFoundError, match=r"VOC2011 \(VOCtrainval_25-May-2011.tar\) not "
                     "found") as info:
    voc.load(str(tmp_path / "tfds"), str(empty))
  assert "benchmark.tgz" in str(info.value) and "seg11valid.txt" in str(info.value)
  write_archives(str(empty))
  os.remove(empty / voc.SBD_ARCHIVE)
  with pytest.raises(FileNotFoundError, match=r"SBD \(benchmark.tgz\) not found"):
    voc.load(str(tmp_path / "tfds"), str(empty))
  with pytest.raises(FileNotFoundError, match="The manual directory"):
    voc.load(str(tmp_path / "tfds2"), str(tmp_path / "nowhere"))


# --- damaged and replaced archives ---------------------------------------------------


def _voc_lists_first(manual_dir):
  """Rewrites the VOC archive with the id lists first, as an archive cut short may keep them."""
  path = os.path.join(manual_dir, voc.VOC_ARCHIVE)
  with tarfile.open(path) as tar:
    members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
  members.sort(key=lambda mc: "ImageSets" not in mc[0].name)
  with tarfile.open(path, "w") as tar:
    for member, content in members:
      tar.addfile(member, io.BytesIO(content))
  return path


def _member_offset(archive, name):
  with tarfile.open(archive) as tar:
    return tar.getmember(name).offset


def test_archive_cut_at_a_member_boundary_is_refused_then_replaced(tmp_path):
  manual, extracted = str(tmp_path / "manual"), str(tmp_path / "extracted")
  write_archives(manual)
  archive = _voc_lists_first(manual)
  with open(archive, "rb") as f:
    complete = f.read()
  cut = _member_offset(archive, f"{VOC_DIR}/JPEGImages/2008_000004.jpg")
  with open(archive, "wb") as f:
    f.write(complete[:cut])
  with pytest.raises(ValueError,  # voc.DamagedArchiveError
                     match=rf"{re.escape(archive)} is damaged or incomplete .*end-of-archive "
                     "marker.*Download the official archive again") as info:
    voc.locate(manual, extracted)
  assert isinstance(info.value, voc.DamagedArchiveError)
  assert not os.path.isdir(extracted) or not os.listdir(extracted)  # nothing to reuse
  with open(archive, "wb") as f:  # the user downloads it again
    f.write(complete)
  voc_root, _, _ = voc.locate(manual, extracted)
  assert os.path.exists(os.path.join(voc_root, "JPEGImages", "2008_000004.jpg"))


def test_replaced_archive_is_extracted_again(tmp_path):
  manual, extracted = str(tmp_path / "manual"), str(tmp_path / "extracted")
  write_archives(manual)
  archive = os.path.join(manual, voc.VOC_ARCHIVE)
  with tarfile.open(archive) as tar:  # a complete archive, but of other files
    members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()
               if "2008_000004" not in m.name]
  os.rename(archive, archive + ".full")
  _tar(archive, [(m.name, content) for m, content in members])
  voc_root, _, _ = voc.locate(manual, extracted)
  image = os.path.join(voc_root, "JPEGImages", "2008_000004.jpg")
  assert not os.path.exists(image)
  assert voc.locate(manual, extracted)[0] == voc_root  # the same archive: reused
  os.replace(archive + ".full", archive)
  voc_root, _, _ = voc.locate(manual, extracted)
  assert os.path.exists(image)


@pytest.mark.parametrize("damage", ["garbage", "cut_inside_a_member", "gzip_cut_at_the_end"])
def test_damaged_archives_name_the_archive_and_the_fix(tmp_path, damage):
  manual, extracted = str(tmp_path / "manual"), str(tmp_path / "extracted")
  write_archives(manual)
  name = voc.SBD_ARCHIVE if damage.startswith("gzip") else voc.VOC_ARCHIVE
  archive = os.path.join(manual, name)
  with open(archive, "rb") as f:
    content = f.read()
  if damage == "garbage":
    content = np.random.default_rng(0).integers(0, 256, 20000, np.uint8).tobytes()
  elif damage == "cut_inside_a_member":
    content = content[:_member_offset(archive, f"{VOC_DIR}/JPEGImages/2008_000004.jpg") + 700]
  else:  # the gzip stream lacks its last bytes (CRC and length)
    content = content[:-4]
  with open(archive, "wb") as f:
    f.write(content)
  with pytest.raises(ValueError, match=rf"{re.escape(archive)} is damaged or incomplete") as e:
    voc.locate(manual, extracted)
  assert isinstance(e.value, voc.DamagedArchiveError)
  assert "Download the official archive again" in str(e.value)
  left = os.listdir(extracted) if os.path.isdir(extracted) else []
  assert not [n for n in left if n.startswith(name.split(".")[0])]  # nothing left behind


def test_extraction_without_tarfile_filters(tmp_path, monkeypatch):
  # Python < 3.10.12 (and 3.11.0-3.11.3) has no `filter=`; the member checks still apply.
  monkeypatch.setattr(voc, "_HAS_DATA_FILTER", False, raising=False)
  manual = str(tmp_path / "manual")
  write_archives(manual)
  voc_root, sbd_root, _ = voc.locate(manual, str(tmp_path / "extracted"))
  assert os.path.exists(os.path.join(voc_root, "JPEGImages", "2008_000004.jpg"))
  assert os.path.exists(os.path.join(sbd_root, "cls", "2008_000006.mat"))
  link = tarfile.TarInfo("ok/hardlink")  # hard link names are relative to the archive root
  link.type, link.linkname = tarfile.LNKTYPE, "../evil.txt"
  archive = str(tmp_path / "link.tar")
  _tar(archive, [("ok/file.txt", b"fine"), (link, None)])
  with pytest.raises(voc.UnsafeArchiveError, match="is a hard link.*not an official"):
    voc.safe_extract(archive, str(tmp_path / "out"))
  assert not os.path.exists(tmp_path / "out")
  assert hasattr(voc, "_HAS_DATA_FILTER")  # the fallback above was the one exercised


def test_missing_manual_directory_message(tmp_path):
  with pytest.raises(FileNotFoundError) as info:
    voc.locate(str(tmp_path / "nowhere"), str(tmp_path / "extracted"))
  message = str(info.value).splitlines()[0]
  assert message.startswith(f"The manual directory '{tmp_path / 'nowhere'}' does not exist")
  assert "--manual_dir" in message
