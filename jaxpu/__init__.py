"""jaxpu: learning representations in the presence of segmentation label noise.

A JAX/Flax implementation of J. Ju, "Learn representations in the presence of
segmentation label noises" (TU Delft, 2017). Submodules are imported on use so
that ``import jaxpu.losses`` never pulls in TensorFlow.
"""

__version__ = "0.1.0"
