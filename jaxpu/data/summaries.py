"""Summaries of a `jaxpu.data.pipeline.Data`'s training split (one epoch)."""

from __future__ import annotations

import jax
import numpy as np


def training_set(data) -> dict[str, np.ndarray]:
  """The training examples of one epoch as NumPy arrays (in the epoch's order)."""
  parts = [jax.device_get(batch) for _, batch in zip(range(data.steps_per_epoch),
                                                     data.train_iter(0))]
  return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}


def label_counts(data) -> np.ndarray:
  """Occurrences of each observed training label over one epoch's batches (void excluded)."""
  counts = np.zeros(data.num_classes, np.int64)
  for _, batch in zip(range(data.steps_per_epoch), data.train_batches(0)):
    labels = batch["label"]
    counts += np.bincount(labels[labels < data.num_classes], minlength=data.num_classes)
  return counts
