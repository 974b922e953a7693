"""Datasets, label corruptions and input pipelines (TensorFlow Datasets + tf.data).

    from jaxpu import data
    d = data.make_segmentation_data(data.SegmentationSpec(
        "synthetic", batch_size=32, fold=1, task="binary",
        corruption="unsegment_objects:0.5", noise_seed=0))
    batch = next(d.train_iter(start_step=0))   # {"image", "label"}: global jax.Arrays
    d.num_classes, d.class_names, d.image_shape, d.steps_per_epoch

Entry points: `make_segmentation_data` (of a `SegmentationSpec`), `make_classification_data` (both
return a `Data`, see `jaxpu.data.pipeline`). Datasets: `synthetic` (the
embedded default, `jaxpu.data.synthetic`), `voc` (VOC2011 + SBD from the
user's archives, `jaxpu.data.voc`), `cifar`, `digits`, `moons`. Label
corruptions and fold selection: `jaxpu.data.noise`; class, fold and
super-category tables: `jaxpu.data.classes`.

TensorFlow only ever runs on the CPU here (`jaxpu.data._tf`).
"""

from jaxpu.data import classes
from jaxpu.data import noise
from jaxpu.data import synthetic
from jaxpu.data.pipeline import CLASSIFICATION_DATASETS
from jaxpu.data.pipeline import Data
from jaxpu.data.pipeline import SEGMENTATION_DATASETS
from jaxpu.data.pipeline import SegmentationSpec
from jaxpu.data.pipeline import TASKS
from jaxpu.data.pipeline import make_classification_data
from jaxpu.data.pipeline import make_segmentation_data

DATASETS = ("synthetic", "voc", "cifar", "digits", "moons")
