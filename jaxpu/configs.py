"""Config pieces shared by the experiment config files (`experiments/configs/*.py`, ml_collections)."""

import importlib.util
import os

from ml_collections import config_dict

SCALES = ("smoke", "cpu", "paper")


def sibling(here: str, name: str):
  """The config file `name`.py next to the file `here` (a config file's `__file__`), loaded
  by path, so config files work wherever they are copied (ml_collections loads them by path)."""
  path = os.path.join(os.path.dirname(os.path.abspath(here)), f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"_jaxpu_config_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def check_scale(arg) -> str:
  """The scale named by the config-file argument (`...py:cpu`); cpu when absent."""
  scale = arg or "cpu"
  if scale not in SCALES:
    raise ValueError(f"Unknown scale {scale!r} in --config=...:{scale}; choose one of "
                     f"{', '.join(SCALES)}.")
  return scale


def base(scale: str, dataset: str) -> config_dict.ConfigDict:
  """The fields every experiment has: scale, dataset, seed, repeats, data location.

  Three repeats (the thesis' number) except at the smoke scale (one).
  """
  repeats = 1 if scale == "smoke" else 3
  config = config_dict.ConfigDict()
  config.scale = scale
  config.dataset = dataset
  config.seed = 0            # repeat r uses seed + r (init, shuffling, label noise)
  config.repeats = repeats   # independent repeats (the thesis uses 3)
  config.data = config_dict.ConfigDict()
  config.data.data_dir = config_dict.placeholder(str)    # TFDS dir ($JAXPU_DATA_DIR)
  config.data.manual_dir = config_dict.placeholder(str)  # voc: the downloaded archives
  return config


def segmentation_data(config: config_dict.ConfigDict, *, num_train_per_class=None,
                      num_test_per_class=None) -> None:
  """The data options of the segmentation experiments (`jaxpu.segmentation_runs.data_options`)."""
  data = config.data
  data.synthetic = config_dict.ConfigDict()  # overrides of the embedded "single" config
  data.synthetic.num_train_per_class = config_dict.placeholder(int)
  data.synthetic.num_test_per_class = config_dict.placeholder(int)
  data.synthetic.image_size = config_dict.placeholder(int)
  if num_train_per_class:
    data.synthetic.num_train_per_class = num_train_per_class
  if num_test_per_class:
    data.synthetic.num_test_per_class = num_test_per_class
  data.downsample = config_dict.placeholder(int)  # voc: ×4 by default
  data.image_size = config_dict.placeholder(int)  # side of the square batches
  data.preprocessing = config_dict.placeholder(str)  # None: the dataset's default


def training(*, optimizer="adam", learning_rate=1e-3, schedule="constant", warmup_steps=0,
             momentum=0.9, weight_decay=0.0, steps=1000, batch_size=32, checkpoint_every=100,
             keep=5, loss_reduction="mean", bias_lr_mult=1.0) -> config_dict.ConfigDict:
  """One training run's settings (`jaxpu.segmentation_runs.spec_from_config`)."""
  return config_dict.ConfigDict(dict(
      optimizer=optimizer, learning_rate=learning_rate, schedule=schedule,
      warmup_steps=warmup_steps, momentum=momentum, weight_decay=weight_decay, steps=steps,
      batch_size=batch_size, checkpoint_every=checkpoint_every, keep=keep,
      loss_reduction=loss_reduction, bias_lr_mult=bias_lr_mult))


def fcn_options(width: float = 1.0, dropout_rate: float = 0.0) -> config_dict.ConfigDict:
  return config_dict.ConfigDict(dict(width=width, dropout_rate=dropout_rate))
