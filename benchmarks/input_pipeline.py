r"""Input-pipeline throughput of each dataset, against its train step.

For each dataset it builds the training pipeline the experiments use
(`jaxpu.data.make_segmentation_data` / `make_classification_data`, label
corruption on, flips on for images), then times `Data.train_iter(0)`, the
iterator `jaxpu.train.fit` consumes (global device arrays), interleaved with
jaxpu's train step of the dataset's model at the same batch size. The
pipeline should never be the bottleneck: the target is a rate of at least 3×
the train step's.

Datasets that need the user's files (`cifar`: the TFDS `cifar10`/`cifar100`
in `--data_dir`; `voc`: the archives in `--manual_dir`) are skipped with the
reason when the files are missing. `folder` (a user's folder of images and
label PNGs, `jaxpu.data.folder`) reads `--folder_dir`, or, by default, a
temporary folder of `--folder_images` drawn images of 64-128 px
(`experiments.export_folder`: 2-4 objects each, varying sizes, padded by the
pipeline to 128×128), built with its TFDS cache in a temporary data dir and
deleted at exit. `prepare_s` is the first build of a dataset in the process,
`prepare_again_s` a second one of the same files with another noise seed (what
each further run of an experiment pays).

  python -m benchmarks.input_pipeline --output=/tmp/input_pipeline.json
  python -m benchmarks.input_pipeline --datasets=voc --manual_dir=~/voc_archives
  python -m benchmarks.input_pipeline --datasets=folder [--folder_dir=DIR]
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import shutil
import tempfile
import time
from typing import Any, Optional

from absl import app
from absl import flags

from benchmarks import common
from benchmarks import steps


@dataclasses.dataclass(frozen=True)
class Spec:
  """A dataset's training pipeline and the model it trains."""
  dataset: str
  kind: str  # "segmentation" | "classification"
  corruption: str
  model: str
  batch_size: int
  task: Optional[str] = None  # segmentation task
  model_options: tuple = ()


SPECS = {
    "synthetic_segmentation": Spec("synthetic", "segmentation", "unsegment_objects:0.5",
                                   "fcn_small", 32, task="binary"),
    "voc": Spec("voc", "segmentation", "unsegment_objects:0.5", "fcn_small", 16,
                task="binary"),
    "folder": Spec("folder", "segmentation", "unsegment_objects:0.5", "fcn_small", 16,
                   task="binary"),
    "synthetic_classification": Spec("synthetic", "classification", "pu_labels:0.5",
                                     "cifar_cnn", 128),
    "cifar": Spec("cifar", "classification", "pu_labels:0.5", "cifar_cnn", 128),
    "digits": Spec("digits", "classification", "pu_labels:0.5", "cifar_cnn", 128),
    "moons": Spec("moons", "classification", "pu_labels:0.5", "mlp", 128),
}

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines the command-line flags.

  Only called when the module runs as a program, so importing it next to
  other absl programs (e.g. in tests) defines no flags.
  """
  flags.DEFINE_list("datasets", list(SPECS), f"Pipelines to run, from {list(SPECS)}.")
  flags.DEFINE_integer("batch_size", None,
      "Global batch size for every dataset (default: per dataset).")
  flags.DEFINE_string("data_dir", None,
      "TFDS data dir (default: $JAXPU_DATA_DIR or ~/tensorflow_datasets).")
  flags.DEFINE_string("manual_dir", None, "Folder with the VOC2011/SBD archives.")
  flags.DEFINE_integer(
      "synthetic_per_class", None, "Training images per category of the synthetic data "
      "(default: the embedded dataset's; small values build a tiny dataset quickly).")
  flags.DEFINE_string("folder_dir", None, "folder: your segmentation folder (default: a "
                      "temporary one of --folder_images drawn images).")
  flags.DEFINE_integer("folder_images", 200, "folder: images of the temporary folder.")
  flags.DEFINE_integer("rounds", 5, "Timed windows per candidate (interleaved).")
  flags.DEFINE_float("window_seconds", 1.0, "Approximate length of one window.")
  flags.DEFINE_integer(
      "min_batches", 20, "Least batches per pipeline window (several times the prefetch depth, "
      "so prefetched batches do not inflate the rate).")
  flags.DEFINE_bool("train_step", True,
      "Time the dataset's train step for the ratio.")
  flags.DEFINE_string("output", None, "Write the results as JSON to this path.")
  flags.DEFINE_bool("keep_freed_memory", True, common.KEEP_FREED_MEMORY_HELP)


def temporary_folder(num_images: int) -> tuple[str, str]:
  """(folder, TFDS data dir) of a temporary segmentation folder of `num_images` drawn images
  of 64-128 px (`experiments.export_folder`, complete labels); both deleted at exit."""
  from experiments import export_folder  # pylint: disable=g-import-not-at-top
  root = tempfile.mkdtemp(prefix="jaxpu-folder-bench-")
  atexit.register(shutil.rmtree, root, True)
  directory = os.path.join(root, "images_and_labels")
  export_folder.export(directory, num_images, min_size=64, max_size=128, unsegmented=0.0)
  return directory, os.path.join(root, "tfds")


def build(spec: Spec, batch_size: int, *, data_dir=None, manual_dir=None,
          synthetic_per_class=None, folder_dir=None, folder_images=200, noise_seed=0):
  """The `jaxpu.data.Data` of `spec` (raises if the dataset's files are missing)."""
  from jaxpu import data as data_lib  # pylint: disable=g-import-not-at-top
  options: dict[str, Any] = {"batch_size": batch_size, "corruption": spec.corruption,
                             "data_dir": data_dir, "augment": spec.dataset != "moons",
                             "noise_seed": noise_seed}
  if spec.dataset == "folder":
    if folder_dir is None:
      folder_dir, options["data_dir"] = temporary_folder(folder_images)
    options["directory"] = folder_dir
  if spec.dataset == "synthetic" and synthetic_per_class:
    options["config"] = data_lib.synthetic.synthetic_config(
        num_train_per_class=synthetic_per_class, num_test_per_class=1)
  if spec.kind == "segmentation":
    if spec.dataset == "voc":
      if not manual_dir:
        raise FileNotFoundError("voc needs --manual_dir (the VOC2011 and SBD archives).")
      options["manual_dir"] = manual_dir
    return data_lib.make_segmentation_data(
        data_lib.SegmentationSpec(spec.dataset, task=spec.task, **options))
  return data_lib.make_classification_data(spec.dataset, **options)


def model_config(spec: Spec, data) -> steps.Config:
  """The train-step configuration of the model that trains on `data`."""
  binary = spec.kind == "segmentation" and data.num_classes == 2 or spec.model == "mlp"
  outputs = 1 if binary else data.num_classes
  return steps.Config(spec.model, tuple(data.image_shape), outputs,
                      "logistic" if binary else "softmax_cross_entropy",
                      options=spec.model_options, segmentation=spec.kind == "segmentation")


def pipeline_runner(data):
  """`run(n)`: the next n batches of `data.train_iter(0)`, ready on device."""
  import jax  # pylint: disable=g-import-not-at-top
  iterator = data.train_iter(0)

  def run(n: int) -> None:
    batch = None
    for _ in range(n):
      batch = next(iterator)
    jax.block_until_ready(batch)

  return run


def benchmark(name: str, spec: Spec, *, batch_size: int, rounds: int, window_seconds: float,
              min_batches: int, train_step: bool, **build_options) -> dict:
  row: dict[str, Any] = {"pipeline": name, "dataset": spec.dataset,
                         "corruption": spec.corruption, "batch": batch_size}
  if spec.dataset == "folder" and build_options.get("folder_dir") is None:  # one for both builds
    build_options["folder_dir"], build_options["data_dir"] = temporary_folder(
        build_options.get("folder_images", 200))
  t0 = time.perf_counter()
  try:
    data = build(spec, batch_size, **build_options)
  except (FileNotFoundError, ValueError) as e:
    row["skipped"] = f"{type(e).__name__}: {e}"
    return row
  row["prepare_s"] = time.perf_counter() - t0
  # What an experiment's next run pays: the same files, another noise seed.
  t0 = time.perf_counter()
  build(spec, batch_size, **{**build_options, "noise_seed": 1})
  row["prepare_again_s"] = time.perf_counter() - t0
  row["image_shape"] = "x".join(map(str, data.image_shape))
  row["train_examples"] = data.num_train_examples
  candidates = {"pipeline": pipeline_runner(data)}
  t0 = time.perf_counter()
  candidates["pipeline"](1)
  row["first_batch_s"] = time.perf_counter() - t0
  if train_step:
    config = model_config(spec, data)
    row["model"] = config.model
    jx = steps.jax_candidate(config, steps.make_batch(config, batch_size), 1, flops=False)
    candidates["train_step"] = jx["run"]
  for run in candidates.values():
    run(2)
  iterations = {k: common.iterations_for(run, window_seconds) for k, run in candidates.items()}
  iterations["pipeline"] = max(iterations["pipeline"], min_batches)
  timings = common.interleave(candidates, rounds=rounds, iterations=iterations, warmup=0)
  pipeline = timings["pipeline"].summary(batch_size)
  row["pipeline_examples_per_s"] = pipeline["rate"]
  row["pipeline_examples_per_s_best"] = pipeline["rate_best"]
  row["others_cpu_share"] = timings["pipeline"].load
  if train_step:
    step = timings["train_step"].summary(batch_size)
    row["train_step_examples_per_s"] = step["rate"]
    row["ratio"] = pipeline["rate"] / step["rate"]
    row["meets_3x"] = row["ratio"] >= 3.0
  return row


COLUMNS = ("pipeline", "corruption", "image_shape", "batch", "prepare_s", "prepare_again_s",
           "pipeline_examples_per_s", "model", "train_step_examples_per_s", "ratio",
           "others_cpu_share")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  kept = common.keep_freed_memory(FLAGS.keep_freed_memory)
  unknown = sorted(set(FLAGS.datasets) - set(SPECS))
  if unknown:
    raise app.UsageError(f"Unknown --datasets {unknown}; choose from {list(SPECS)}.")
  info = common.device_info()
  print(f"Device: {common.describe(info)}; malloc keeps freed memory: {kept}", flush=True)
  rows = []
  for name in FLAGS.datasets:
    spec = SPECS[name]
    row = benchmark(name, spec, batch_size=FLAGS.batch_size or spec.batch_size,
                    rounds=FLAGS.rounds, window_seconds=FLAGS.window_seconds,
                    min_batches=FLAGS.min_batches, train_step=FLAGS.train_step,
                    data_dir=FLAGS.data_dir, manual_dir=FLAGS.manual_dir,
                    synthetic_per_class=FLAGS.synthetic_per_class,
                    folder_dir=FLAGS.folder_dir, folder_images=FLAGS.folder_images)
    rows.append(row)
    if "skipped" in row:
      print(f"{name}: skipped ({row['skipped']})", flush=True)
    else:
      print(common.format_table([row], COLUMNS).splitlines()[-1], flush=True)
  print()
  print(common.format_table([r for r in rows if "skipped" not in r], COLUMNS))
  for r in rows:
    if "skipped" in r:
      print(f"skipped {r['pipeline']}: {r['skipped']}")
  common.write_json(FLAGS.output, {"benchmark": "input_pipeline", "device": info,
                                    "keep_freed_memory": kept,
                                    "rows": rows})


if __name__ == "__main__":
  define_flags()
  app.run(main)
