r"""Config of `experiments.binary_segmentation` (Table 2, Fig. 6, the unsegmented-rate sweep).

  python -m experiments.binary_segmentation                          # cpu
  python -m experiments.binary_segmentation --config.sweep=True --config.repeats=3
  python -m experiments.binary_segmentation --config.train.steps=1600 \
      --config.class_weighted_negative_weight=0.4 --config.rates=0.5,0.7

Fields: `seed`, `repeats`; `model`, `model_options`; `train` (optimizer,
learning_rate, schedule, warmup_steps, momentum, weight_decay, steps,
batch_size, checkpoint_every, keep, loss_reduction); `table2_rate` (Table 2's
unsegmented rate, 0.5 in the thesis); `class_weighted_negative_weight` (the
ClassWeighted row's background weight β of eq. 6); `sweep` and `rates` (the
sweep beyond the thesis); `sweep_losses` (the sweep's rows: the Table 2
losses, "nnPU (true π)" and "nnPU (estimated π)"; selects rows only);
`examples` (Fig. 6's images); `data`.
"""

from experiments.configs import common

transfer_config = common.sibling(__file__, "transfer")


def get_config(arg=None):
  scale = common.check_scale(arg, extra=("author",))
  config = common.base(scale, "voc" if scale in ("paper", "author") else "synthetic")
  common.segmentation_data(config, **(dict(num_train_per_class=3, num_test_per_class=2)
                                      if scale == "smoke" else {}))
  config.table2_rate = 0.5
  config.class_weighted_negative_weight = 0.5
  config.sweep = False
  config.rates = (0.3, 0.5, 0.6, 0.7)
  config.sweep_losses = ("LogisticLoss", "ClassWeighted", "SigmoidLoss", "nnPU (true π)",
                         "nnPU (estimated π)")
  config.examples = 4
  # A repeat's Table 2 value over its last five snapshots: their mean (the embedded
  # protocol), or their highest (the thesis' Table 2: the paper scales).
  config.table2_snapshots = "mean"
  if scale == "smoke":
    config.rates = (0.5, 0.7)  # the sweep's plumbing: Table 2's rate and one above it
    config.model = "fcn_small"
    config.model_options = common.fcn_options(width=0.25)
    config.train = common.training(learning_rate=2e-3, schedule="cosine", steps=4,
                                   batch_size=8, checkpoint_every=2)
  elif scale == "cpu":
    config.model = "fcn_small"
    config.model_options = common.fcn_options()
    config.train = common.training(learning_rate=2e-3, schedule="cosine", warmup_steps=20,
                                   steps=800, batch_size=32, checkpoint_every=80)
  else:
    # The transfer experiments' pre-training recipe (FCN-AlexNet, the FCN reference's
    # update, or the author's; see experiments/configs/transfer.py:paper_preset).
    (transfer_config.author_preset if scale == "author" else transfer_config.paper_preset)(
        config)
    config.table2_snapshots = "max"
    config.train = config.pretrain
    del config["pretrain"], config["finetune"]
  return config
