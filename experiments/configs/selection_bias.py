r"""Config of `experiments.selection_bias` (beyond the thesis: objects are not missed at random).

  python -m experiments.selection_bias                                   # cpu, about 40 min
  python -m experiments.selection_bias --config=experiments/configs/selection_bias.py:smoke
  python -m experiments.selection_bias --config.losses=LogisticLoss,SigmoidLoss \
      --config.mechanisms=unsegment_objects,unsegment_small --config.repeats=5

Fields: `seed`, `repeats` (seeds seed + r: initialisation, shuffling and which objects
are unsegmented); `rate` (the expected fraction of unsegmented training objects, 0.5
as Table 2); `mechanisms` (which objects are missed: `unsegment_objects`, at random,
SCAR, the reference of the verdicts; `unsegment_small`, `unsegment_faint`,
`unsegment_border`: selection-biased, `jaxpu.data.noise.SELECTION_BIASES`); `losses`
(rows: the Table 2 losses "LogisticLoss", "ClassWeighted", "SigmoidLoss", the
generalised sigmoid "GeneralizedSigmoid", "nnPU (true π)", "nnPU (estimated π)"; the
LogisticLoss run is trained in any case, it feeds the prior estimates);
`class_weighted_negative_weight` (ClassWeighted's background weight, eq. 6);
`generalized_sigmoid` ((α, β, γ) of α σ(βf)^γ: (1, 1, 0.5), the best cell by mean IU
at 50 % unsegmented of `experiments.saturation` in REPRODUCTION.md); `model`,
`model_options`, `train` and `data`: `experiments.binary_segmentation`'s at the same
scale (the same recipe). Only the embedded synthetic data (`dataset`) is supported:
the per-object analysis reads its instance masks.
"""

from experiments.configs import common


def get_config(arg=None):
  scale = common.check_scale(arg)
  binary = common.sibling(__file__, "binary_segmentation").get_config(scale)
  config = common.base(scale, binary.dataset)
  config.data = binary.data
  config.model, config.model_options, config.train = binary.model, binary.model_options, binary.train
  config.rate = 0.5
  config.class_weighted_negative_weight = binary.class_weighted_negative_weight
  config.generalized_sigmoid = (1.0, 1.0, 0.5)
  if scale == "smoke":  # 2 mechanisms × 3 losses, a few steps
    config.mechanisms = ("unsegment_objects", "unsegment_small")
    config.losses = ("LogisticLoss", "SigmoidLoss", "nnPU (estimated π)")
  else:
    # Budget at cpu scale, 2 cores: ~32 s per run, 4 mechanisms × 5 losses × 3 repeats
    # = 60 runs ≈ 32 min, plus the priors, the rates and the per-object scoring (~6 min).
    # "nnPU (true π)" (the oracle prior) is left out for the budget: add it with
    # --config.losses=...,"nnPU (true π)" (12 runs, ~7 min more).
    config.mechanisms = ("unsegment_objects", "unsegment_small", "unsegment_faint",
                         "unsegment_border")
    config.losses = ("LogisticLoss", "ClassWeighted", "SigmoidLoss", "GeneralizedSigmoid",
                     "nnPU (estimated π)")
  return config
