r"""Config of `experiments.moons` (§5.1.1, Figs. 3-4).

  python -m experiments.moons                                         # cpu, 3 repeats
  python -m experiments.moons --config.steps=4000 --config.learning_rate=0.01
  python -m experiments.moons --config.labelled_fraction=0.3 --config.weighted_negative_weight=0.3

Fields: `seed`, `repeats`; `model_options` of the MLP (hidden, activation,
dropout_rate); `optimizer`, `learning_rate`, `steps`, `batch_size` (800 =
full batch), `checkpoint_every`; `labelled_fraction` (of the positives);
`weighted_positive_weight` / `weighted_negative_weight` (α, β of the
WeightedLogistic row, eq. 6); `grid` (resolution of the figures).

The thesis gives no optimiser settings; every scale uses the same small
full-batch setting (the MLP has 67 parameters), `paper` only trains longer.
"""

from ml_collections import config_dict

from experiments.configs import common


def get_config(arg=None):
  scale = common.check_scale(arg)
  config = common.base(scale, "moons")
  # The thesis does not name the activation; tanh gave smooth boundaries and
  # stable fits over seeds (ReLU's 2×6 net sometimes stops at a crude boundary).
  config.model_options = config_dict.ConfigDict(dict(hidden=(6, 6), activation="tanh",
                                                     dropout_rate=0.0))
  config.optimizer = "adam"
  config.batch_size = 800
  config.labelled_fraction = 0.5  # §5.1.1: half of the positives labelled negative
  config.weighted_positive_weight = 1.0
  config.weighted_negative_weight = 0.5
  config.steps, config.learning_rate, config.checkpoint_every, config.grid = {
      "smoke": (40, 0.03, 20, 40),
      "cpu": (2000, 0.03, 500, 150),
      "paper": (10000, 0.01, 2000, 300)}[scale]
  return config
