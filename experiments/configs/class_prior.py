r"""Config of `experiments.class_prior` (class-prior estimation; §6, open question 3).

  python -m experiments.class_prior                                   # cpu, seconds
  python -m experiments.class_prior --config.labelled_fractions=0.1,0.5,0.9 --config.repeats=5
  python -m experiments.class_prior --config.datasets=digits --config.l2=1e-2

Fields: `seed`, `repeats` (repeat r: seed + r, a new P/U split); `datasets`
(moons, digits) and `labelled_fractions` (c, the labelled share of the
positives), which select the rows; `num_folds` (K of the cross-fitted
labelled-vs-unlabelled logistic regression), `l2` (its ridge λ),
`moons_degree` (degree of the polynomial features of the two moons),
`digits_image_size` (side of the digits' grey images used as features);
`bbe_delta`, `bbe_gamma` (δ, γ of BBE).
"""

from experiments.configs import common


def get_config(arg=None):
  scale = common.check_scale(arg)
  config = common.base(scale, "moons")
  del config["dataset"]  # `datasets` names them
  config.datasets = ("moons", "digits")
  config.labelled_fractions = (0.5,) if scale == "smoke" else (0.3, 0.5, 0.7)
  config.num_folds = 5
  config.l2 = 1e-3
  config.moons_degree = 3
  config.digits_image_size = 8
  config.bbe_delta = 0.1
  config.bbe_gamma = 0.01
  return config
