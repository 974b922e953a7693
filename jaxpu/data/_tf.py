"""TensorFlow for the data layer: CPU only, it must never take a GPU; no AutoGraph.

Every module of `jaxpu.data` that uses TensorFlow imports `tf` from here, so
the GPUs are hidden from TensorFlow before it initialises its devices.

jaxpu's `Dataset.map` / `filter` functions (the corruptions and selections of
`jaxpu.data.noise`, the loaders' and the pipeline's) use no Python control
flow on tensors, so they are marked `do_not_convert`: AutoGraph, which
`Dataset.map` applies by default, leaves them as written instead of reading
and rewriting each one's source once per process.
"""

import tensorflow as tf

try:
  tf.config.set_visible_devices([], "GPU")
except RuntimeError:  # devices already initialised by someone else's TF code
  pass

do_not_convert = tf.autograph.experimental.do_not_convert

__all__ = ["do_not_convert", "tf"]
