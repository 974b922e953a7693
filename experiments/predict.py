r"""Segment a folder of images with a trained model: one label PNG and probabilities per image.

  python -m experiments.predict --checkpoint=RUN_OR_WORKDIR --images=DIR --output=DIR \
      [--step=N] [--batch_size=B] [--probabilities=False]

`--checkpoint`: the workdir of `python -m experiments.train` (its model,
at the snapshot it selected), its `runs/model` folder, or any run folder of
`jaxpu.runs.train` (`spec.json` + `checkpoints/`; a `checkpoints/<step>`
folder picks that step). `--images`: a folder of .jpg/.jpeg/.png images of
any size. `--output` receives `NAME.png` (palette PNG, class index per pixel,
the image's own size), `NAME.npz` (`probabilities` [H, W, K] float32: softmax,
or (1 − σ, σ) for a binary model; `class_names`) and `classes.txt`.
`--step` overrides the selected snapshot. The masks equal the evaluation
step's argmax on the same images: the run's own preprocessing (mean/std,
down-sampling, padding to its input size) is applied, then undone
(`jaxpu.predict`).

In Python: `jaxpu.predict.predict_folder(checkpoint, images, output)` or
`jaxpu.predict.predict_images(checkpoint, [array_or_path, ...])`.
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags

from jaxpu import predict as predict_lib
from jaxpu import runtime

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command line (only when run as a program: importing defines no flags)."""
  flags.DEFINE_string("checkpoint", None, "experiments.train workdir, run folder or "
                      "checkpoints/<step> folder.", required=True)
  flags.DEFINE_string("images", None, "Folder of .jpg/.jpeg/.png images to segment.",
                      required=True)
  flags.DEFINE_string("output", None, "Folder for NAME.png, NAME.npz and classes.txt.",
                      required=True)
  flags.DEFINE_integer("step", None, "Checkpoint step (default: the selected snapshot, "
                       "else the run's final step).")
  flags.DEFINE_integer("batch_size", 16, "Images per model call.")
  flags.DEFINE_bool("probabilities", True, "Also write NAME.npz with the probabilities.")


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  runtime.keep_freed_memory()
  runtime.enable_compilation_cache()
  try:
    done = predict_lib.predict_folder(FLAGS.checkpoint, FLAGS.images, FLAGS.output,
                                      step=FLAGS.step, batch_size=FLAGS.batch_size,
                                      probabilities=FLAGS.probabilities)
  except predict_lib.PredictError as e:
    sys.exit(f"experiments.predict: {e}")  # the message names the file and the fix
  print(f"Segmented {done['images']} image(s) into {done['output_dir']} with {done['run_dir']} "
        f"at step {done['step']}.", flush=True)


if __name__ == "__main__":
  define_flags()
  app.run(main)
