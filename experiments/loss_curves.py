r"""Figure 2: the losses for the negative class and their derivatives.

Draws the logistic loss (labels + and -), the weighted logistic loss for the
negative class (α = 1, β = 0.5) and the class-dependent sigmoid loss for the
negative class, left their values and right their derivatives with respect to
the model output f (computed with ``jax.grad`` of ``jaxpu.losses``), for f in
(-5, 5). No training, no data (the common flags other than --workdir have no
effect): it runs in seconds.

  python -m experiments.loss_curves --workdir=/tmp/fig2
"""

from absl import app
from absl import flags

from jaxpu import experiment
from jaxpu import plots

experiment.define_flags("loss_curves", datasets=("none",), default_dataset="none")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  out = experiment.Outputs(FLAGS.workdir)
  path = plots.plot_loss_curves(out.path("loss_curves.png"))
  print(f"Wrote {path}")


if __name__ == "__main__":
  app.run(main)
