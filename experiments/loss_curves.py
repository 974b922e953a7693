r"""Figure 2: the losses for the negative class and their derivatives.

Draws the logistic loss (labels + and -), the weighted logistic loss for the
negative class (α = 1, β = 0.5) and the class-dependent sigmoid loss for the
negative class, left their values and right their derivatives with respect to
the model output f (computed with ``jax.grad`` of ``jaxpu.losses``), for f in
[logit_min, logit_max]. No training, no data: it runs in seconds.

  python -m experiments.loss_curves --workdir=/tmp/fig2

Settings: `experiments/configs/loss_curves.py`.
"""

import numpy as np

from experiments import common


def run(config, workdir: str) -> list:
  """Draws Fig. 2 into `workdir/loss_curves.png`; returns [] (no table cells)."""
  for field in ("logit_min", "logit_max"):
    common.require(isinstance(config[field], (int, float)) and np.isfinite(config[field]),
                   field, config[field], "must be a finite number")
  common.require(config.logit_min < config.logit_max, "logit_min", config.logit_min,
                 f"must be below logit_max ({config.logit_max})")
  common.require_positive_int(config, "points")
  common.claim_workdir(workdir, config, experiment="loss_curves")
  from jaxpu.thesis import figures  # pylint: disable=g-import-not-at-top
  path = figures.plot_loss_curves(
      common.Outputs(workdir).path("loss_curves.png"),
      np.linspace(config.logit_min, config.logit_max, config.points))
  print(f"Wrote {path}")
  return []


if __name__ == "__main__":
  from experiments import cli  # pylint: disable=g-import-not-at-top
  cli.main("loss_curves", run)
