r"""Config of `experiments.cifar_pu` (§5.1.2, Table 1, Fig. 5).

  python -m experiments.cifar_pu                                      # cpu
  python -m experiments.cifar_pu --config.dataset=digits
  python -m experiments.cifar_pu --config=experiments/configs/cifar_pu.py:paper \
      --config.data.data_dir=DIR --config.repeats=3 --config.fig5=True
  python -m experiments.cifar_pu --config.rows=SoftmaxLoss,nnPU --config.generalized=1,0.5,2

Fields: `dataset` (synthetic, digits, cifar), `seed`, `repeats`;
`model_options` of the Table 6 CNN; `learning_rate`, `batch_size`, `epochs`
(or `steps`, which wins when set), `snapshots` (evaluations per run; the last
is reported), `eval_batch_size`; `image_size` (synthetic/digits only);
`data.synthetic_config` and `data.synthetic` (the embedded view and field
overrides); `labelled_fraction` (of the relevant examples); `non_relevant_weight` (β of
eq. 7, ClassWeighted and BootstrapHard's first stage), `bootstrap_beta` and
`bootstrap_epochs` (eq. 11; §4), `generalized` (α, β, γ), `nnpu_surrogate`;
`rows` (a subset of Table 1's rows; empty: all); `fig5` and `fractions`.
"""

from ml_collections import config_dict

from experiments.configs import common


def get_config(arg=None):
  scale = common.check_scale(arg)
  config = common.base(scale, "cifar" if scale == "paper" else "synthetic")
  # The embedded data's config (`jaxpu.data.synthetic`) and field overrides:
  # "classification" draws larger objects, no decoy, coarser textures, so that
  # the Table 6 CNN learns the 16×16 images (mean F1 with clean labels 0.29
  # on "single" after 10 epochs, 0.72 ± 0.01 on these after 15, seeds 0-2).
  config.data.synthetic_config = "single" if scale == "paper" else "classification"
  config.data.synthetic = config_dict.ConfigDict()
  config.data.synthetic.num_train_per_class = config_dict.placeholder(int)
  config.data.synthetic.num_test_per_class = config_dict.placeholder(int)
  if scale == "smoke":
    config.data.synthetic.num_train_per_class = 2
    config.data.synthetic.num_test_per_class = 1
  config.model_options = config_dict.ConfigDict(dict(conv_dropout=0.2, fc_dropout=0.5))
  config.optimizer = "adam"
  config.steps = config_dict.placeholder(int)  # set: train this many steps instead of epochs
  config.labelled_fraction = 0.5     # Table 1: half of the relevant examples labelled
  config.non_relevant_weight = 0.5   # ClassWeighted (eq. 7) and BootstrapHard's first stage
  config.bootstrap_beta = 0.8        # eq. 11
  config.generalized = (1.0, 0.5, 1.0)  # α, β, γ of the GeneralizedSoftmaxLoss row (§6)
  config.nnpu_surrogate = "logistic"   # the sigmoid saturates on a CNN that starts at class 0
  config.rows = ()                     # Table 1 rows to train (empty: all)
  config.fig5 = False
  config.fractions = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
  # epochs, batch, learning rate, bootstrap epochs, snapshots, eval batch, image size.
  # The thesis gives Adam 1e-4 and no epoch count or batch size. `image_size`
  # (synthetic and digits only; CIFAR is 32×32): the CPU preset trains on
  # 16×16 images, 6× faster than 32×32 on a CPU.
  (config.epochs, config.batch_size, config.learning_rate, config.bootstrap_epochs,
   config.snapshots, config.eval_batch_size, config.image_size) = {
       "smoke": (2, 8, 1e-3, 1, 1, 8, 16),
       "cpu": (15, 32, 1e-3, 3, 2, 500, 16),
       "paper": (50, 128, 1e-4, 5, 10, 1000, None)}[scale]
  if config.image_size is None:
    config.image_size = config_dict.placeholder(int)
  return config
