"""PASCAL VOC2011 segmentation + SBD (Hariharan et al.) from the user's files.

TFDS has no VOC segmentation or SBD builder, so `VocSbd` (TFDS name
`voc_sbd`) builds one from archives the user downloaded into a manual
directory (see `MANUAL_DOWNLOAD_INSTRUCTIONS`). Nothing is downloaded.

Splits (the FCN reference's protocol):
- `train`: SBD train ∪ SBD val ∪ VOC2011 segmentation train, minus every
  VOC2011 segmentation val image (no test image is ever trained on);
- `validation`: VOC2011 segmentation val (1112 images);
- `seg11valid`: the FCN reference's test set, the VOC2011 val images not in
  SBD train (736): read from `seg11valid.txt` if the manual dir has it,
  derived from the id lists otherwise (the same set).
Where VOC and SBD both annotate an image, VOC's PNGs win (they carry the void
boundary band; SBD's .mat files have none).

Features: `id` (int64: the digits of the image name, e.g. 2008_000123 →
2008000123), `name` (the image name), `image` (uint8 [H, W, 3]), `class_mask`
and `instance_mask` (uint8 [H, W, 1]; 0 background, 1..20 class / object k,
255 void), `object_classes` (int64 [n], class of object k at index k-1).
Single-object filtering and ×4 down-sampling (§5.2, §5.3.1) are pipeline
options (`jaxpu.data.make_segmentation_data(..., single_object=True,
downsample=4)`).

Archives are extracted into `<data_dir>/downloads/extracted/` by
`safe_extract`, which refuses, before writing anything, an archive with a
member that would land outside it (absolute path, `..`) or that is a link
(symbolic or hard), device or fifo: the official archives hold only files
and folders, so such an archive is not one of them. It extracts into a
temporary folder renamed into place only once the whole archive was read
without error, and records the archive's size and modification time there:
an archive replaced in the manual directory (e.g. re-downloaded after a
damaged one) is extracted again. Folders are located without following
links. A truncated or corrupt archive raises `DamagedArchiveError` naming it.
"""

from __future__ import annotations

import collections
import gzip
import json
import os
import shutil
import tarfile
import zlib

import numpy as np

from jaxpu.data._tf import tf  # hides the GPUs from TensorFlow before any TF work
import tensorflow_datasets as tfds

from jaxpu import fileio
from jaxpu.data import classes

VOC_ARCHIVE = "VOCtrainval_25-May-2011.tar"
SBD_ARCHIVE = "benchmark.tgz"
SEG11VALID = "seg11valid.txt"
_SOURCES = {VOC_ARCHIVE: "http://host.robots.ox.ac.uk/pascal/VOC/voc2011/",
            SBD_ARCHIVE: "http://home.bharathh.info/pubs/codes/SBD/download.html"}
# Written into each extraction: the archive's identity when it was extracted.
EXTRACTION_STAMP = ".jaxpu_extracted_from.json"
# tarfile's `filter=` (Python 3.10.12+, 3.11.4+); `safe_extract` works without it.
_HAS_DATA_FILTER = hasattr(tarfile, "data_filter")

MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Put these files in the manual directory (`--manual_dir`, default
`<data_dir>/downloads/manual/`):

1. `{VOC_ARCHIVE}`: PASCAL VOC2011 train/val
   (http://host.robots.ox.ac.uk/pascal/VOC/voc2011/), holding
   `VOC2011/{{JPEGImages,SegmentationClass,SegmentationObject}}/` and
   `VOC2011/ImageSets/Segmentation/{{train,val}}.txt`.
   (An extracted `VOCdevkit/VOC2011/` folder works too.)
2. `{SBD_ARCHIVE}`: the Semantic Boundaries Dataset
   (http://home.bharathh.info/pubs/codes/SBD/download.html), holding
   `benchmark_RELEASE/dataset/{{img,cls,inst}}/` and `train.txt`, `val.txt`.
   (An extracted `benchmark_RELEASE/` folder works too.)
3. Optional: `{SEG11VALID}` from the FCN reference
   (fcn.berkeleyvision.org, `data/pascal/seg11valid.txt`); derived from the
   id lists when absent.
"""


class UnsafeArchiveError(ValueError):
  """An archive member would be written outside the extraction directory."""


class DamagedArchiveError(ValueError):
  """An archive that is truncated or corrupt (e.g. an interrupted download)."""


def _kind(member: tarfile.TarInfo) -> str:
  """What a member that is neither a file nor a folder is, in words."""
  if member.issym():
    return f"a symbolic link (to {member.linkname!r})"
  if member.islnk():
    return f"a hard link (to {member.linkname!r})"
  if member.ischr() or member.isblk():
    return "a device"
  if member.isfifo():
    return "a fifo"
  return f"of tar type {member.type!r} (neither a file nor a folder)"


def _check_member(member: tarfile.TarInfo, archive: str) -> None:
  """Refuses a member that is not a plain file or folder with a relative path inside.

  The official VOC2011 and SBD archives hold only files and folders, so any
  link (symbolic or hard), device or fifo means the archive is another one;
  it is refused outright rather than judged: a link's target read as text
  says nothing of where it leads once earlier links are on disk.
  """
  name = member.name
  parts = name.replace("\\", "/").split("/")
  if os.path.isabs(name) or name.startswith(("/", "\\")) or ".." in parts:
    raise UnsafeArchiveError(
        f"Refusing to extract {archive}: member {name!r} would be written outside the "
        "target directory (absolute path or '..'); it is not an official VOC2011 or SBD "
        "archive. Use the official archive.")
  if not (member.isfile() or member.isdir()):
    raise UnsafeArchiveError(
        f"Refusing to extract {archive}: member {name!r} is {_kind(member)}; the official "
        "archives hold only files and folders, so this is not an official VOC2011 or SBD "
        "archive. Nothing was extracted from it; put the official archive there instead.")


def _archive_identity(archive: str) -> dict:
  """What `locate` compares to decide whether an extraction is of this archive."""
  stat = os.stat(archive)
  return {"archive": os.path.basename(archive), "size": stat.st_size,
          "mtime_ns": stat.st_mtime_ns}


def _damaged(archive: str, why: str) -> DamagedArchiveError:
  name = os.path.basename(archive)
  source = f" from {_SOURCES[name]}" if name in _SOURCES else ""
  return DamagedArchiveError(
      f"The archive {archive} is damaged or incomplete ({why}); nothing was extracted from "
      f"it. Download the official archive again{source}, replace {archive} with it, and "
      "rerun (an interrupted download is the usual cause: compare its size with the one "
      "the download page or server reports).")


def _sanitised(member: tarfile.TarInfo) -> tarfile.TarInfo:
  """`member` with what tarfile's "data" filter drops removed (for Pythons without it)."""
  if member.isfile() or member.isdir():
    member.mode = (member.mode & 0o755) | (0o600 if member.isfile() else 0o700)
  member.uid = member.gid = -1  # never chown to the archive's owners (when run as root)
  member.uname = member.gname = ""
  return member


def _read_to_end(tar: tarfile.TarFile, archive: str) -> None:
  """Checks the end-of-archive block and, if compressed, the compressed stream's end."""
  tar.fileobj.seek(tar.offset)
  block = tar.fileobj.read(tarfile.BLOCKSIZE)
  if len(block) < tarfile.BLOCKSIZE or block.count(0) != tarfile.BLOCKSIZE:
    raise _damaged(archive, "it ends without the end-of-archive marker after member "
                   f"{tar.getmembers()[-1].name!r}" if tar.getmembers() else "it is empty")
  while tar.fileobj.read(1 << 20):  # gzip/bz2/xz check their length and CRC at the end
    pass


def _remove(path: str) -> None:
  """Removes the file, link or folder `path` if there is one (a link, not what it leads to)."""
  if os.path.islink(path) or os.path.isfile(path):
    os.remove(path)
  else:
    shutil.rmtree(path, ignore_errors=True)


def safe_extract(archive: str, destination: str) -> str:
  """Extracts a tar/tgz archive of files and folders into `destination`.

  Every member is checked before anything is written (`_check_member`): a
  member with an absolute path or a `..` component, and any link (symbolic
  or hard), device or fifo, none of which the official archives hold, raises
  `UnsafeArchiveError` naming it and saying the archive is not an official
  one; this does not rely on tarfile's `filter=` (used too where it exists).
  The archive is extracted into a temporary folder next to `destination`,
  which replaces `destination` only once the whole archive, including its
  end-of-archive marker (and, compressed, its checksum), was read; the
  archive's size and modification time are recorded in it
  (`EXTRACTION_STAMP`). Returns `destination`.

  Raises:
    DamagedArchiveError: the archive is truncated or corrupt; the message
      names it and says to download it again. Nothing is left behind.
    UnsafeArchiveError: a member is a link, device or fifo, or would be
      written outside `destination`. Nothing is written.
  """
  identity = _archive_identity(archive)
  partial = destination + ".partial"
  _remove(partial)
  try:
    with tarfile.open(archive) as tar:
      members = tar.getmembers()
      for member in members:
        _check_member(member, archive)
      if _HAS_DATA_FILTER:
        tar.extractall(partial, members=members, filter="data")
      else:  # the checks above refuse more than the filter would; drop modes and owners too
        tar.extractall(partial, members=[_sanitised(m) for m in members])
      _read_to_end(tar, archive)
    fileio.write_json(os.path.join(partial, EXTRACTION_STAMP), identity, indent=None)
  except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
    _remove(partial)
    raise _damaged(archive, f"{type(e).__name__}: {e}".replace("\n", " ")) from e
  except BaseException:
    _remove(partial)
    raise
  _remove(destination)
  os.replace(partial, destination)
  return destination


def _is_extraction_of(destination: str, archive: str) -> bool:
  """Whether `destination` was extracted (completely) from `archive` as it is now."""
  try:
    with open(os.path.join(destination, EXTRACTION_STAMP)) as f:
      return json.load(f) == _archive_identity(archive)
  except (OSError, ValueError):
    return False


def _find_dir(base: str, required: tuple[str, ...]) -> str | None:
  """The first folder under `base` (breadth-first) holding every `required` path.

  Links to folders below `base` are not followed (`base` itself may be one),
  and each folder is visited once, so a link loop (`a → .`) cannot make the
  search run forever.
  """
  if not os.path.isdir(base):
    return None
  queue, seen = collections.deque([base]), set()
  while queue:
    folder = queue.popleft()
    try:
      stat = os.stat(folder)
    except OSError:
      continue
    if (stat.st_dev, stat.st_ino) in seen:  # e.g. a bind mount of a parent
      continue
    seen.add((stat.st_dev, stat.st_ino))
    if all(os.path.exists(os.path.join(folder, r)) for r in required):
      return folder
    try:
      with os.scandir(folder) as entries:
        children = sorted(e.path for e in entries if e.is_dir(follow_symlinks=False))
    except OSError:
      continue
    queue.extend(children)
  return None


_VOC_REQUIRED = ("JPEGImages", "SegmentationClass", "SegmentationObject",
                 os.path.join("ImageSets", "Segmentation", "train.txt"),
                 os.path.join("ImageSets", "Segmentation", "val.txt"))
_SBD_REQUIRED = ("cls", "inst", "train.txt", "val.txt")


def _missing_files_error(manual_dir: str, what: str) -> FileNotFoundError:
  return FileNotFoundError(
      f"{what} not found in the manual directory {manual_dir!r} (links to folders in it are "
      "not followed: put the folders or archives themselves there).\n"
      + MANUAL_DOWNLOAD_INSTRUCTIONS)


def locate(manual_dir: str, extract_dir: str) -> tuple[str, str, str | None]:
  """(VOC2011 root, SBD dataset root, seg11valid.txt or None), extracting archives.

  An archive is extracted into `extract_dir` unless it already was, from the
  same file (same size and modification time); a replaced archive is
  extracted again.

  Raises:
    FileNotFoundError: files are missing; says which files to put where.
    DamagedArchiveError: an archive is truncated or corrupt; names it.
  """
  if not os.path.isdir(manual_dir):
    raise FileNotFoundError(
        f"The manual directory {manual_dir!r} does not exist: create it (or pass the folder "
        "holding the archives as --manual_dir).\n" + MANUAL_DOWNLOAD_INSTRUCTIONS)
  roots = []
  for archive, required, what in ((VOC_ARCHIVE, _VOC_REQUIRED, f"VOC2011 ({VOC_ARCHIVE})"),
                                  (SBD_ARCHIVE, _SBD_REQUIRED, f"SBD ({SBD_ARCHIVE})")):
    root = _find_dir(manual_dir, required)
    archive_path = os.path.join(manual_dir, archive)
    if root is None and os.path.isfile(archive_path):
      target = os.path.join(extract_dir, archive.split(".")[0])
      if not _is_extraction_of(target, archive_path):  # none yet, or of another archive
        safe_extract(archive_path, target)
      root = _find_dir(target, required)
      if root is None:
        raise FileNotFoundError(
            f"The archive {archive_path} holds no folder with {', '.join(required)}; it is "
            f"not the official {what} archive.\n" + MANUAL_DOWNLOAD_INSTRUCTIONS)
    if root is None:
      raise _missing_files_error(manual_dir, what)
    roots.append(root)
  seg11 = os.path.join(manual_dir, SEG11VALID)
  return roots[0], roots[1], seg11 if os.path.isfile(seg11) else None


def read_ids(path: str) -> list[str]:
  with open(path) as f:
    return [line.split()[0] for line in f if line.strip()]


def image_id(name: str) -> int:
  """The stable integer id of a VOC image name (2008_000123 → 2008000123)."""
  digits = name.replace("_", "")
  if not digits.isdigit():
    raise ValueError(f"Unexpected VOC image name {name!r}: expected YYYY_NNNNNN.")
  return int(digits)


def read_voc_masks(voc_root: str, name: str):
  """(class mask, instance mask, object classes) from VOC's palette PNGs."""
  import PIL.Image
  with PIL.Image.open(os.path.join(voc_root, "SegmentationClass", name + ".png")) as im:
    class_mask = np.array(im)
  with PIL.Image.open(os.path.join(voc_root, "SegmentationObject", name + ".png")) as im:
    instance_mask = np.array(im)
  if class_mask.ndim != 2 or instance_mask.shape != class_mask.shape:
    raise ValueError(f"VOC masks of {name} must be palette (indexed) PNGs of equal size; got "
                     f"{class_mask.shape} and {instance_mask.shape}.")
  ids = [k for k in np.unique(instance_mask) if 0 < k < classes.VOID]
  objects = np.zeros(max(ids, default=0), np.int64)
  for k in ids:
    values = class_mask[(instance_mask == k) & (class_mask != classes.VOID)]
    if values.size:
      objects[k - 1] = np.bincount(values).argmax()
  return class_mask.astype(np.uint8), instance_mask.astype(np.uint8), objects


def read_sbd_masks(sbd_root: str, name: str):
  """(class mask, instance mask, object classes) from SBD's cls/inst .mat files."""
  import scipy.io
  cls = scipy.io.loadmat(os.path.join(sbd_root, "cls", name + ".mat"),
                         squeeze_me=True, struct_as_record=False)["GTcls"]
  inst = scipy.io.loadmat(os.path.join(sbd_root, "inst", name + ".mat"),
                          squeeze_me=True, struct_as_record=False)["GTinst"]
  class_mask = np.asarray(cls.Segmentation, np.uint8)
  instance_mask = np.asarray(inst.Segmentation, np.uint8)
  objects = np.atleast_1d(np.asarray(inst.Categories, np.int64))
  return class_mask, instance_mask, objects


def split_ids(voc_train, voc_val, sbd_train, sbd_val, seg11=None) -> dict[str, list[str]]:
  """Image names of each split (module docstring); `seg11` from the file, if any."""
  held_out = set(voc_val)
  train = (set(sbd_train) | set(sbd_val) | set(voc_train)) - held_out
  if seg11 is None:
    seg11 = held_out - set(sbd_train)
  return {"train": sorted(train), "validation": sorted(held_out), "seg11valid": sorted(seg11)}


class VocSbd(tfds.core.GeneratorBasedBuilder):
  """PASCAL VOC2011 segmentation + SBD from manually downloaded archives."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    names = ("background",) + classes.VOC_CLASSES
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "id": tfds.features.Scalar(np.int64),
            "name": tfds.features.Text(),
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            "class_mask": tfds.features.Image(shape=(None, None, 1)),
            "instance_mask": tfds.features.Image(shape=(None, None, 1)),
            "object_classes": tfds.features.Sequence(tfds.features.ClassLabel(names=names)),
        }),
        supervised_keys=("image", "class_mask"),
        homepage="http://host.robots.ox.ac.uk/pascal/VOC/voc2011/",
    )

  def _split_generators(self, dl_manager):
    extract_dir = os.path.join(os.fspath(dl_manager.download_dir), "extracted")
    voc_root, sbd_root, seg11_file = locate(os.fspath(dl_manager.manual_dir), extract_dir)
    voc_sets = os.path.join(voc_root, "ImageSets", "Segmentation")
    voc_train, voc_val = (read_ids(os.path.join(voc_sets, f"{s}.txt")) for s in ("train", "val"))
    sbd_train, sbd_val = (read_ids(os.path.join(sbd_root, f"{s}.txt")) for s in ("train", "val"))
    seg11 = read_ids(seg11_file) if seg11_file else None
    splits = split_ids(voc_train, voc_val, sbd_train, sbd_val, seg11)
    voc_annotated = set(voc_train) | set(voc_val)
    source = {n: "voc" if n in voc_annotated else "sbd" for ids in splits.values() for n in ids}
    unknown = [n for n in splits["seg11valid"] if n not in voc_annotated and n not in sbd_train
               and n not in sbd_val]
    if unknown:
      raise ValueError(f"{SEG11VALID} lists images without annotations, e.g. {unknown[:3]}.")

    def generate(names):
      return self._generate_examples(names, source, voc_root, sbd_root)
    return {split: generate(ids) for split, ids in splits.items()}

  def _generate_examples(self, names, source, voc_root, sbd_root):
    for name in names:
      if source[name] == "voc":
        class_mask, instance_mask, objects = read_voc_masks(voc_root, name)
        image = os.path.join(voc_root, "JPEGImages", name + ".jpg")
      else:
        class_mask, instance_mask, objects = read_sbd_masks(sbd_root, name)
        image = os.path.join(voc_root, "JPEGImages", name + ".jpg")
        if not os.path.exists(image):
          image = os.path.join(sbd_root, "img", name + ".jpg")
      if not os.path.exists(image):
        raise FileNotFoundError(f"Image {name}.jpg is in neither {voc_root}/JPEGImages nor "
                                f"{sbd_root}/img.\n" + MANUAL_DOWNLOAD_INSTRUCTIONS)
      yield name, {
          "id": image_id(name), "name": name, "image": image,
          "class_mask": class_mask[..., None], "instance_mask": instance_mask[..., None],
          "object_classes": objects,
      }


def load(data_dir: str | None = None, manual_dir: str | None = None) -> tfds.core.DatasetBuilder:
  """The prepared `voc_sbd` builder, built from `manual_dir` on first use."""
  from jaxpu.data import synthetic
  data_dir = data_dir or synthetic.default_data_dir()
  builder = VocSbd(data_dir=data_dir)
  if builder.is_prepared():
    return builder
  manual_dir = manual_dir or os.path.join(data_dir, "downloads", "manual")
  # Our own check first (TFDS's says less); extracts the archives where the builder looks.
  locate(manual_dir, os.path.join(data_dir, "downloads", "extracted"))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=manual_dir, try_download_gcs=False))
  return VocSbd(data_dir=data_dir)


def segmentation_examples(split: str, *, data_dir: str | None = None,
                          manual_dir: str | None = None, shard: tuple[int, int] = (0, 1)):
  """This host's part of `split` as examples {id, image, label, instances, objects}."""
  from jaxpu.data import synthetic
  builder = load(data_dir, manual_dir)
  if split.split("[")[0] not in builder.info.splits:
    raise ValueError(f"voc has no split {split!r}; splits: {sorted(builder.info.splits)}.")
  ds = builder.as_dataset(split=synthetic.host_split(split, shard), shuffle_files=False)
  return ds.map(synthetic.segmentation_example, num_parallel_calls=tf.data.AUTOTUNE)
