r"""Config of `experiments.saturation` (thesis §6: where the sigmoid loss saturates).

  python -m experiments.saturation                                     # cpu, about 35 min
  python -m experiments.saturation --config.moons.betas=0.25,1,4 --config.repeats=5
  python -m experiments.saturation --config.segmentation.rates=0.5,0.6,0.7

Fields: `seed`, `repeats` (seeds seed + r); `data` (the segmentation data,
and `data.data_dir`); `dataset` (of the segmentation half: synthetic, voc).

`moons`: the two-moons half. `labelled_fractions` (the fraction of the
positives that keeps its label, `pu_labels:<f>`: 0.5 and 0.3 are 50 % and
70 % unlabelled); `alphas`, `betas`, `gammas` (the grid of α, β, γ of
l(f, 0) = α σ(βf)^γ, every combination is trained); the training of
`experiments.moons` (model_options, optimizer, learning_rate, steps,
batch_size, checkpoint_every), copied from its config at the same scale.

`segmentation`: the binary-segmentation half. `rates` (fraction of the
training objects left unsegmented, `unsegment_objects:<rate>`); `alphas`,
`betas`, `gammas` (the grid); `model`, `model_options` and `train`, copied
from `experiments.binary_segmentation`'s config at the same scale (the same
recipe, not a new one).

Both grids contain α = β = γ = 1, the class-dependent sigmoid loss of eq. 8.
"""

from ml_collections import config_dict

from experiments.configs import common


def get_config(arg=None):
  scale = common.check_scale(arg)
  binary = common.sibling(__file__, "binary_segmentation").get_config(scale)
  moons = common.sibling(__file__, "moons").get_config(scale)
  config = common.base(scale, binary.dataset)
  config.data = binary.data  # the segmentation data options (and data.data_dir)

  config.moons = config_dict.ConfigDict()
  m = config.moons
  m.labelled_fractions = (0.5, 0.3)  # 50 % and 70 % of the positives unlabelled
  for field in ("model_options", "optimizer", "learning_rate", "steps", "batch_size",
                "checkpoint_every"):
    m[field] = moons[field]

  config.segmentation = config_dict.ConfigDict()
  s = config.segmentation
  s.rates = (0.5, 0.7)
  s.model, s.model_options, s.train = binary.model, binary.model_options, binary.train

  if scale == "smoke":  # 2 cells around eq. 8 in each half, a few steps
    m.alphas, m.betas, m.gammas = (1.0,), (0.5, 1.0), (1.0,)
    s.alphas, s.betas, s.gammas = (1.0,), (1.0, 2.0), (1.0,)
  else:
    # Budget at cpu scale, 2 idle cores: moons ~2.5 s per run, 27 cells ×
    # 2 rates × 3 repeats ≈ 7 min; segmentation ~30 s per run, 9 cells × 2
    # × 3 ≈ 27 min (plus the scoring): about 35 min in all. Moons: the full
    # α × β × γ grid; segmentation: β × γ at α = 1 (α only rescales the
    # negative term against -log σ(f), which the moons grid covers). The
    # same β and γ in both, so the two halves can be compared.
    m.alphas, m.betas, m.gammas = (0.5, 1.0, 2.0), (0.5, 1.0, 2.0), (0.5, 1.0, 2.0)
    s.alphas, s.betas, s.gammas = (1.0,), (0.5, 1.0, 2.0), (0.5, 1.0, 2.0)
  return config
