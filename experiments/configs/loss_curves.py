"""Config of `experiments.loss_curves` (Fig. 2): the range of model outputs drawn."""

from ml_collections import config_dict

from experiments.configs import common


def get_config(arg=None):
  config = config_dict.ConfigDict()
  config.scale = common.check_scale(arg)
  config.logit_min = -5.0
  config.logit_max = 5.0
  config.points = 401
  return config
