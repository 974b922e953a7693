r"""Config of `experiments.transfer_variance` (where Table 4's spread comes from).

  python -m experiments.transfer_variance                      # 6 pre-training seeds × 3 draws
  python -m experiments.transfer_variance --config.repeats=4 --config.finetune_draws=2

Fields: those of `experiments/configs/transfer.py` at the same scale (model,
data, `pretrain`, `pretrain_multiclass`, `finetune`, `finetune_fraction`),
with `repeats` the pre-training seeds and `finetune_draws` the fine-tunings
of each pre-trained encoder; `fold`; `designs` (repeats × draws pairs whose
power is reported, as "NxM" strings); `alpha`.
"""

from experiments.configs import common


def get_config(arg=None):
  scale = common.check_scale(arg)
  config = common.sibling(__file__, "transfer").get_config(scale)
  del config["tables"], config["folds"]
  config.fold = 1
  config.repeats = 2 if scale == "smoke" else 6
  config.finetune_draws = 2 if scale == "smoke" else 3
  config.designs = ("3x1", "3x2", "3x4", "4x1", "4x2", "4x3", "5x2", "6x1", "8x1")
  config.alpha = 0.05
  return config
