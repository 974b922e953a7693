"""Config of `experiments.noise_examples`: which images and corruptions the figure shows."""

from ml_collections import config_dict

from experiments.configs import common


def get_config(arg=None):
  config = config_dict.ConfigDict()
  config.scale = common.check_scale(arg)
  config.synthetic_config = "multi"  # 2-4 objects per image, 48×48
  config.images = 2 if config.scale == "smoke" else 4
  # Images of that config to build (None: all of it; a few are enough here).
  config.num_train = 8 if config.scale == "smoke" else config_dict.placeholder(int)
  config.noise_seed = 0
  config.corruptions = ("boundary_noise:1.0:3", "over_segment:1.0:2", "under_segment:1.0",
                        "coarse_outlines:1.0:box", "coarse_outlines:1.0:4")
  config.data_dir = config_dict.placeholder(str)
  return config
