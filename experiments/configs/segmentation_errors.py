r"""Config of `experiments.segmentation_errors` (beyond the thesis: §6's segmentation errors).

  python -m experiments.segmentation_errors                            # cpu, 3 repeats
  python -m experiments.segmentation_errors --config.levels=0.25,0.5,1.0
  python -m experiments.segmentation_errors \
      --config.noises='("boundary_noise:5", "under_segment", "over_segment:3")'

Fields: `seed`, `repeats`; `model`, `model_options`; `pretrain` (the binary
trainings under noise) and `finetune` (the transfer), as in
`experiments/configs/transfer.py`; `finetune_fraction`; `fold` (whose 15
classes the binary models train on and whose 5 they transfer to); `noises`
("name[:size]" of `jaxpu.data.noise`'s segmentation errors); `levels` (the
fraction of training objects each noise changes); `losses` (of `LOSSES` in
the experiment); `class_weighted_negative_weight` (β of eq. 6);
`generalized` (α, β, γ of the generalised sigmoid loss of §6);
`transfer_levels` (the levels whose models are also fine-tuned; empty: none);
`data`.
"""

from ml_collections import config_dict

from experiments.configs import common


def get_config(arg=None):
  scale = common.check_scale(arg)
  # The transfer experiments' model, data and training recipes at this scale.
  config = common.sibling(__file__, "transfer").get_config(scale)
  del config["tables"], config["folds"], config["pretrain_multiclass"]
  # Its own repeats (3, the thesis' number) and one fine-tuning per pre-training, not the
  # main job's powered design (experiments.transfer_variance).
  del config["finetune_draws"], config["imagenet_weights"]
  config.repeats = 1 if scale == "smoke" else 3
  config.fold = 1
  # Boundary noise: every chosen object eroded or dilated by 1..3 pixels;
  # coarse outlines: every chosen object replaced by its bounding box.
  config.noises = ("boundary_noise:3", "coarse_outlines:box")
  config.levels = (0.5, 1.0)
  config.losses = ("LogisticLoss", "ClassWeighted", "SigmoidLoss", "GeneralizedSigmoid")
  config.class_weighted_negative_weight = 0.5
  # Table 1's generalised loss (β = 0.5: saturates later than eq. 8).
  config.generalized = config_dict.ConfigDict(dict(alpha=1.0, beta=0.5, gamma=1.0))
  config.transfer_levels = (1.0,)
  if scale == "smoke":
    config.levels = (1.0,)
    # One noise and two losses: the paired table and the transfer, in a few seconds.
    config.noises = ("coarse_outlines:box",)
    config.losses = ("LogisticLoss", "SigmoidLoss")
  return config
