r"""Config of `experiments.train` (one segmentation model): `get_config("smoke"|"cpu"|"paper")`.

  python -m experiments.train                                          # cpu, embedded data
  python -m experiments.train --config.dataset=folder --config.data.directory=DIR \
      --config.loss=sigmoid_negative --config.select_by=lee_liu
  python -m experiments.train --config.corruption=unsegment_objects:0.5 \
      --config.corrupt_eval=True --config.loss=nnpu_risk --config.prior=estimate
  python -m experiments.train --config=experiments/configs/train.py:paper \
      --config.data.manual_dir=~/voc

Fields:
- `dataset` (synthetic, voc, folder) and `data`: `data_dir` (TFDS data dir),
  `manual_dir` (voc archives), `directory` (folder: your images/ + labels/,
  `jaxpu.data.folder`), `synthetic.*` (embedded config overrides),
  `downsample`, `image_size`, `preprocessing` (None: the dataset's default);
- `task` (None: "binary" for a binary loss, "multiclass" otherwise; or
  "target", "random_categories:K", "categories"), `target` (the class id of
  task "target"), `fold` / `phase` (VOC-style fold selection; synthetic and
  voc only), `augment` (random horizontal flips);
- `loss` (any `jaxpu.losses` name), `loss_options.*` (its keyword arguments;
  None: the loss' default), `class_balanced`, `prior` (π of the nnPU/uPU
  risks and of the prior-corrected criteria: the positive share of the
  background-labelled pixels; a number in (0, 1), "estimate", or None);
- `model`, `model_options`; `init_from` (a run folder, checkpoint folder or
  `experiments.train` workdir whose parameters start the model) and
  `dont_load` (its top-level subtrees left at their fresh initialisation);
- `train` (the training section: optimizer, learning_rate, schedule,
  warmup_steps, momentum, weight_decay, lr_mults, wd_mults, steps,
  batch_size, microbatches, checkpoint_every, keep, loss_reduction);
- `corruption` ("name:rate[:size]", `jaxpu.data.noise`; training split only)
  and `corrupt_eval` (the same corruption on the validation split, whose
  clean labels are kept for the clean scores);
- `select_by` ("last", "mean_iou" or a noisy-label criterion: which snapshot
  is reported and predicted with); `seed`.
"""

from ml_collections import config_dict

from experiments.configs import common

transfer_config = common.sibling(__file__, "transfer")

LOSS_OPTIONS = {  # every keyword argument of the losses but the prior (see `prior`)
    "positive_weight": float, "negative_weight": float, "alpha": float, "beta": float,
    "gamma": float, "class_weights": tuple, "surrogate": str,
}


def loss_options() -> config_dict.ConfigDict:
  """One typed placeholder per loss keyword argument (None: the loss' default)."""
  return config_dict.ConfigDict({k: config_dict.placeholder(t) for k, t in LOSS_OPTIONS.items()})


def get_config(arg=None):
  scale = common.check_scale(arg)
  config = common.base(scale, "voc" if scale == "paper" else "synthetic")
  del config["repeats"]  # one model; train another with another --config.seed
  common.segmentation_data(config, **(dict(num_train_per_class=2, num_test_per_class=1)
                                      if scale == "smoke" else {}))
  config.data.directory = config_dict.placeholder(str)
  config.task = config_dict.placeholder(str)
  config.target = config_dict.placeholder(int)
  config.fold = config_dict.placeholder(int)
  config.phase = "pretrain"
  config.augment = False
  config.loss = "sigmoid_negative"
  config.loss_options = loss_options()
  config.class_balanced = False
  config.prior = config_dict.placeholder(object)  # a float, "estimate" or None
  config.init_from = config_dict.placeholder(str)
  config.dont_load = ("head",)
  config.corruption = config_dict.placeholder(str)
  config.corrupt_eval = False
  config.select_by = "last"
  if scale == "smoke":
    config.model = "fcn_small"
    config.model_options = common.fcn_options(width=0.25)
    # binary_segmentation's smoke recipe (the same compiled steps), every checkpoint kept
    config.train = common.training(learning_rate=2e-3, schedule="cosine", steps=4,
                                   batch_size=8, checkpoint_every=2, keep=2)
  elif scale == "cpu":
    # binary_segmentation's cpu recipe; every snapshot's checkpoint is kept so
    # that `select_by` may pick any of them.
    config.model = "fcn_small"
    config.model_options = common.fcn_options()
    config.train = common.training(learning_rate=2e-3, schedule="cosine", warmup_steps=20,
                                   steps=800, batch_size=32, checkpoint_every=80, keep=10)
  else:
    # FCN-AlexNet with the FCN reference's Caffe update (transfer's paper
    # preset); 12 snapshots, all kept (about 0.5 GB each with SGD momentum).
    transfer_config.paper_preset(config)
    config.train = config.pretrain
    config.train.keep = 12
    del config["pretrain"], config["finetune"]
  return config
