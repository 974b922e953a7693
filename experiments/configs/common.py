"""Config pieces shared by the experiment config files (`experiments/configs/*.py`, ml_collections).

A training section (`training`) is built from `jaxpu.runs.TrainSpec`'s settings: each
training field is spelled once, there.
"""

import importlib.util
import os

from ml_collections import config_dict

from jaxpu import runs

SCALES = ("smoke", "cpu", "paper")


def load(path: str):
  """The config module at `path`, loaded by path as ml_collections' `--config` loads it."""
  name = os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(f"_jaxpu_config_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def sibling(here: str, name: str):
  """The config file `name`.py next to the file `here` (a config file's `__file__`)."""
  return load(os.path.join(os.path.dirname(os.path.abspath(here)), f"{name}.py"))


def check_scale(arg, extra: tuple[str, ...] = ()) -> str:
  """The scale named by the config-file argument (`...py:cpu`); cpu when absent. `extra`:
  further scales a config file offers (e.g. the segmentation configs' `author`)."""
  scale = arg or "cpu"
  if scale not in SCALES + tuple(extra):
    raise ValueError(f"Unknown scale {scale!r} in --config=...:{scale}; choose one of "
                     f"{', '.join(SCALES + tuple(extra))}.")
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


def training(**overrides) -> config_dict.ConfigDict:
  """A training section: every setting of `jaxpu.runs.TrainSpec` (its `SETTINGS`, with their
  defaults), `overrides` applied; `TrainSpec.from_config` builds and validates the spec."""
  section = runs.settings(**overrides)
  if section["wd_mults"] is None:  # a typed placeholder, so --config.x.wd_mults=... works
    section["wd_mults"] = config_dict.placeholder(tuple)
  return config_dict.ConfigDict(section)


def fcn_options(width: float = 1.0, dropout_rate: float = 0.0, **others) -> config_dict.ConfigDict:
  """`model_options` of the FCN models (`others`: e.g. fcn_alexnet's kernel_init, score_init)."""
  return config_dict.ConfigDict(dict(width=width, dropout_rate=dropout_rate, **others))
