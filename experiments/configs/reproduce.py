r"""Config of `experiments.reproduce`: every experiment's own config, under one seed and repeats.

  python -m experiments.reproduce                                    # cpu, embedded data
  python -m experiments.reproduce --config.only=moons,binary_segmentation
  python -m experiments.reproduce --config.folds=1,2,3,4 --config.repeats=5
  python -m experiments.reproduce --config.transfer.finetune.steps=600
  python -m experiments.reproduce --config=experiments/configs/reproduce.py:paper \
      --config.transfer.data.manual_dir=~/voc --config.cifar_pu.data.data_dir=~/tfds

Fields: `seed` and `repeats` (shared by every experiment: changing them here
changes them there), `folds` (of the transfer tables), `only` (a subset of
the experiments; empty: all), `output` (the report; empty, the default:
WORKDIR/REPRODUCTION.md) and `figures_dir` (its PNGs, relative to the
report), and one sub-config per experiment, with that experiment's own fields
(`experiments/configs/<name>.py`).

The report goes to the workdir unless `output` is set: writing the
repository's committed `REPRODUCTION.md` (and `reproduction/*.png`) is an
explicit act, from the checkout's root:

  python -m experiments.reproduce --workdir=runs/reproduce --config.output=REPRODUCTION.md
"""

from ml_collections import config_dict

from experiments.configs import common

EXPERIMENTS = ("loss_curves", "moons", "cifar_pu", "binary_segmentation", "transfer",
               "segmentation_errors", "saturation", "class_prior")


def get_config(arg=None):
  scale = common.check_scale(arg)
  config = config_dict.ConfigDict()
  config.scale = scale
  config.seed = 0
  config.repeats = 1 if scale == "smoke" else 3
  config.folds = (1,)
  config.only = ()
  config.output = ""  # "": WORKDIR/REPRODUCTION.md; else this path (relative to the cwd)
  config.figures_dir = "reproduction"
  for name in EXPERIMENTS:
    sub = common.sibling(__file__, name).get_config(scale)
    if "seed" in sub:
      sub.seed = config.get_ref("seed")
      sub.repeats = config.get_ref("repeats")
    config[name] = sub
  config.cifar_pu.fig5 = True
  # Fig. 5 at five of its nine points (its runs at 0.5 are Table 1's); the smoke run
  # checks the plumbing with one point beside Table 1's.
  config.cifar_pu.fractions = (0.5, 0.9) if scale == "smoke" else (0.1, 0.3, 0.5, 0.7, 0.9)
  config.binary_segmentation.sweep = True
  config.transfer.tables = ("table3", "table4", "table5", "fig7")
  config.transfer.folds = config.get_ref("folds")
  return config
