"""TensorFlow for the data layer: CPU only, it must never take a GPU.

Every module of `jaxpu.data` that uses TensorFlow imports `tf` from here, so
the GPUs are hidden from TensorFlow before it initialises its devices.
"""

import tensorflow as tf

try:
  tf.config.set_visible_devices([], "GPU")
except RuntimeError:  # devices already initialised by someone else's TF code
  pass

__all__ = ["tf"]
