r"""A figure of the label corruptions on embedded training images (the README's).

Each row: a training image of the embedded data, its labels, and the labels
after each corruption (`jaxpu.data.noise`; "name:rate[:size]" as in
`make_segmentation_data`), with the original outlines drawn in black.

  python -m experiments.noise_examples --workdir=/tmp/noise
  python -m experiments.noise_examples --config.corruptions=boundary_noise:1.0:2
  python -m experiments.noise_examples \
      --config.corruptions="('unsegment_objects:0.5', 'boundary_noise:1.0:2')"

Settings: `experiments/configs/noise_examples.py`.
"""

from __future__ import annotations

from experiments import common
from jaxpu import plots
from jaxpu.data import noise
from jaxpu.data import pipeline
from jaxpu.data import synthetic


def corruption_fn(spec: str, seed: int):
  """`example -> example` of a corruption string (`pipeline.parse_corruption`)."""
  name, rate, size = pipeline.parse_corruption(spec, pipeline.SEGMENTATION_CORRUPTIONS)
  fn = getattr(noise, name)
  extra = () if size is None else (size,)
  return lambda example: fn(example, rate, seed, *extra)


def run(config, workdir: str) -> list:
  """Draws `workdir/label_corruptions.png`; returns [] (no table cells)."""
  common.require_positive_int(config, "images")
  corruptions = [(spec, corruption_fn(spec, config.noise_seed))
                 for spec in common.names(config.corruptions)]
  common.claim_workdir(workdir, config, experiment="noise_examples")
  overrides = {} if config.num_train is None else dict(num_train=config.num_train, num_test=1)
  data_config = synthetic.synthetic_config(config.synthetic_config, **overrides)
  examples = [dict(ex, image=ex["image"].numpy() / 255.0)
              for ex in synthetic.segmentation_examples(
                  "train", config=data_config, data_dir=config.data_dir).take(config.images)]
  path = plots.plot_label_corruptions(
      common.Outputs(workdir).path("label_corruptions.png"), examples, corruptions,
      title=f"Label corruptions of embedded training images (noise seed {config.noise_seed}; "
            "black line: original outline, grey: void)")
  print(f"Wrote {path}")
  return []


if __name__ == "__main__":
  from experiments import cli  # pylint: disable=g-import-not-at-top
  cli.main("noise_examples", run)
