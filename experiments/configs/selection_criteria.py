r"""Config of `experiments.selection_criteria` (do the noisy-label criteria choose well?).

  python -m experiments.selection_criteria                         # cpu
  python -m experiments.selection_criteria --config.rates=0.5 --config.repeats=5

Fields: `seed`, `repeats` (seeds seed + r); `rates` (the fraction of the
objects left unsegmented, in the training and the validation labels);
`losses` (the candidate losses: rows of `experiments.binary_segmentation`'s
sweep); `mechanisms` (which objects are unsegmented: `unsegment_objects`, at random; or
the selection-biased `unsegment_small`, `unsegment_faint`, `unsegment_border`);
`alphas`, `betas`, `gammas` (the candidate cells of the generalised
sigmoid loss, as in `experiments.saturation`); `class_weighted_negative_weight`;
`model`, `model_options`, `train` and `data`, copied from
`experiments.binary_segmentation`'s config at the same scale (the same
recipe: the same run folders).
"""

from experiments.configs import common


def get_config(arg=None):
  scale = common.check_scale(arg)
  binary = common.sibling(__file__, "binary_segmentation").get_config(scale)
  saturation = common.sibling(__file__, "saturation").get_config(scale)
  config = common.base(scale, binary.dataset)
  config.data = binary.data
  config.model, config.model_options, config.train = (binary.model, binary.model_options,
                                                      binary.train)
  config.class_weighted_negative_weight = binary.class_weighted_negative_weight
  config.rates = (0.5, 0.7)
  # Which objects the labels miss: at random (the default), or selection-biased
  # (`unsegment_small`, `unsegment_faint`, `unsegment_border`; jaxpu.data.noise).
  config.mechanisms = ("unsegment_objects",)
  config.losses = binary.sweep_losses
  s = saturation.segmentation
  config.alphas, config.betas, config.gammas = s.alphas, s.betas, s.gammas
  if scale == "smoke":
    config.repeats = 2
    config.rates = (0.5,)
    config.losses = ("LogisticLoss", "ClassWeighted", "SigmoidLoss")
  return config
