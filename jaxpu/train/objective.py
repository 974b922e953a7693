"""The training objective: a `jaxpu.losses` loss by name, reduced over the valid elements.

Valid elements are those of `batch["mask"]`, or else those whose label is not
255 (VOC's void label). Three reductions (`make_loss_fn(..., reduction=...)`),
each normalised so that the `pmean` over the D devices of the per-device
values (and so of their gradients) is the value of the *global* batch:

- `"mean"` (default): the mean loss over the valid elements of the global
  batch,

      L = Σ_d Σ_{i ∈ valid_d} ℓ_i / Σ_d n_d,

  not the mean of per-device means (which differ when devices hold different
  numbers of valid pixels). Each device returns
  L_d = masked_mean_d · n_d · D / Σ_d n_d, whose `pmean` is exactly L.
- `"mean_per_example"`: each example's loss is the *mean* over its valid
  elements, m_b = Σ_{i ∈ valid(b)} ℓ_i / n_b, and the step's loss the mean
  of m_b over the E examples of the global batch with n_b ≥ 1,

      L = (1/E) Σ_{b: n_b ≥ 1} m_b

  (an example without valid elements contributes 0 and is not counted; L = 0
  when E = 0). This is the FCN reference's `SoftmaxWithLoss` with
  `normalize: true` (`voc-fcn-alexnet`) accumulated over `iter_size: B`
  one-image passes, which Caffe divides by B — the same as L whenever every
  image has a valid pixel (Caffe would still divide by B for an all-void
  image). Each device returns L_d = Σ_{b ∈ d} m_b · D / E.
- `"sum_per_example"`: each example's loss is the *sum* over its valid
  elements, averaged over the B examples of the global batch,

      L = (1/B) Σ_b Σ_{i ∈ valid(b)} ℓ_i.

  This is Caffe's `SoftmaxWithLoss` with `normalize: false` (the thesis
  author's configurations) accumulated over `iter_size: B` one-image
  passes, divided by B. Each device returns L_d = Σ_{i ∈ valid_d} ℓ_i · D / B.

Each reduction is S / N: a sum S over the batch's examples divided by a
global normaliser N (valid elements, examples with a valid element, or
examples), which `LossSpec.normaliser` computes. Gradient accumulation
(`jaxpu.train.make_train_step(..., microbatches=K)`) weights micro-batch k's
gradient by its N_k and divides by Σ_k N_k, which gives the whole batch's
gradient for all three reductions.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp

from jaxpu import losses

VOID_LABEL = 255
REDUCTIONS = ("mean", "mean_per_example", "sum_per_example")


def valid_mask(batch: Mapping[str, Any], label_key: str = "label") -> jax.Array:
  """`batch["mask"]` if present, else `label != 255` (VOC's void label)."""
  if "mask" in batch:
    return jnp.asarray(batch["mask"], bool)
  return batch[label_key] != VOID_LABEL


@dataclasses.dataclass(frozen=True)
class LossSpec:
  """A `jaxpu.losses` loss by name, reduced over the valid elements.

  Call `spec(logits, batch, axis_name=None) -> (loss, num_valid)`:
  - binary models (`num_classes == 1`) have their trailing logit axis squeezed;
  - elementwise losses are reduced over the valid elements (`batch["mask"]`
    or `label != 255`) as `reduction` says (module docstring; the
    per-example reductions treat axis 0 as the examples), normalised so
    that the `pmean` over `axis_name` of the per-device losses is the value
    of the whole global batch;
  - `class_balanced`: each element's loss is multiplied by
    `w[label]`, `w = losses.class_balanced_weights` of the global batch's
    valid labels (gathered over `axis_name`, so every device uses the same w);
  - the batch-level PU risks (`upu_risk`, `nnpu_risk`) are called directly on
    the device's slice; across devices their per-device estimates are averaged
    (their normalisers are per-device counts).
  `num_valid` is the number of valid elements of the global batch.
  `normaliser(batch, axis_name)` is the reduction's global denominator.
  """
  name: str
  num_classes: int
  class_balanced: bool = False
  kwarg_items: tuple = ()  # the loss' keyword arguments as sorted (name, value) pairs
  reduction: str = "mean"

  def _key(self) -> tuple:
    return (self.name, self.num_classes, type(self.class_balanced), self.class_balanced,
            self.reduction, tuple((k, type(v), v) for k, v in self.kwarg_items))

  # Equal specs share a jitted train step (a static argument of it): equality tells apart
  # argument values that are equal but of other types (1 and 1.0, True and 1).
  def __eq__(self, other):
    return type(other) is type(self) and self._key() == other._key()

  def __hash__(self):
    return hash(self._key())

  @property
  def kwargs(self) -> dict:
    return dict(self.kwarg_items)

  @property
  def is_risk_estimator(self) -> bool:
    return self.name in losses.RISK_ESTIMATORS + losses.MULTICLASS_RISK_ESTIMATORS

  def __call__(self, logits, batch, axis_name: Optional[str] = None):
    labels = batch["label"]
    valid = valid_mask(batch)
    if self.num_classes == 1:
      if logits.shape[-1] != 1:
        raise ValueError(f"Loss {self.name!r} with num_classes=1 expects logits with a "
                         f"trailing axis of 1, got shape {logits.shape}.")
      logits = logits[..., 0]
    fn = losses.get(self.name)
    local_count = jnp.sum(valid)
    global_count = local_count if axis_name is None else jax.lax.psum(local_count, axis_name)
    if self.is_risk_estimator:
      return fn(logits, labels, where=valid, **self.kwargs), global_count

    values = fn(logits, labels, where=valid, **self.kwargs)
    if self.class_balanced:
      all_labels, all_valid = labels, valid
      if axis_name is not None:
        all_labels = jax.lax.all_gather(labels, axis_name, tiled=True)
        all_valid = jax.lax.all_gather(valid, axis_name, tiled=True)
      weights = losses.class_balanced_weights(all_labels, max(2, self.num_classes),
                                              where=all_valid)
      values = values * weights[jnp.where(valid, labels, 0)]
    if self.reduction == "sum_per_example":
      return _sum_per_example(values, valid, axis_name), global_count
    if self.reduction == "mean_per_example":
      return _mean_per_example(values, valid, axis_name), global_count
    loss = losses.masked_mean(values, valid)
    if axis_name is not None:
      num_devices = jax.lax.psum(1, axis_name)
      loss = loss * local_count * num_devices / jnp.maximum(global_count, 1)
    return loss, global_count

  def normaliser(self, batch, axis_name: Optional[str] = None) -> jax.Array:
    """N of the global batch: the reduction's denominator (module docstring).

    `"mean"`: the valid elements; `"mean_per_example"`: the examples with at
    least one valid element; `"sum_per_example"`: the examples. The loss of a
    batch is S / max(N, 1), S a sum over its examples, so micro-batches'
    losses and gradients weighted by their N and divided by Σ N give the
    whole batch's. Not defined for the batch-level risks.
    """
    if self.is_risk_estimator:
      raise ValueError(f"The batch-level risk {self.name!r} is not a sum over examples; it "
                       f"has no normaliser (and no exact micro-batch accumulation).")
    valid = valid_mask(batch)
    if self.reduction == "mean":
      local = jnp.sum(valid)
    elif self.reduction == "mean_per_example":
      local = jnp.sum(jnp.any(valid, axis=tuple(range(1, valid.ndim))))
    else:
      local = jnp.asarray(valid.shape[0], jnp.int32)
    return local if axis_name is None else jax.lax.psum(local, axis_name)


def _sum_per_example(values, valid, axis_name):
  """Σ of `values` over the valid elements / global batch size, per device (see above)."""
  total = jnp.sum(jnp.where(valid, values, 0.))
  num_examples = valid.shape[0]
  if axis_name is None:
    return total / num_examples
  num_devices = jax.lax.psum(1, axis_name)
  return total * num_devices / jax.lax.psum(num_examples, axis_name)


def _mean_per_example(values, valid, axis_name):
  """Σ of the per-example means / global count of examples with a valid element (above)."""
  axes = tuple(range(1, valid.ndim))
  counts = jnp.sum(valid, axis=axes)
  sums = jnp.sum(jnp.where(valid, values, 0.), axis=axes)
  total = jnp.sum(sums / jnp.maximum(counts, 1))  # 0 for an example with no valid element
  num_counted = jnp.sum(counts > 0)
  if axis_name is None:
    return total / jnp.maximum(num_counted, 1)
  num_devices = jax.lax.psum(1, axis_name)
  return total * num_devices / jnp.maximum(jax.lax.psum(num_counted, axis_name), 1)


def make_loss_fn(name: str, num_classes: int, class_balanced: bool = False,
                 reduction: str = "mean", **loss_kwargs) -> LossSpec:
  """The loss `name` of `jaxpu.losses` with `loss_kwargs` (e.g. `negative_weight=0.5`).

  Binary losses need `num_classes=1` (one logit), multiclass losses
  `num_classes >= 2`.

  Args:
    name: a loss of `jaxpu.losses` (`losses.get`).
    num_classes: the model's number of outputs.
    class_balanced: weight each element by its class' inverse frequency in
      the global batch (§4).
    reduction: `"mean"` over the valid elements of the global batch;
      `"mean_per_example"`: averaged over each example's valid elements,
      then over the examples that have any (the FCN reference's normalised
      `SoftmaxWithLoss` with `iter_size`); or `"sum_per_example"`: summed
      over each example's valid elements and averaged over the examples
      (Caffe's unnormalised `SoftmaxWithLoss` with `iter_size`; module
      docstring). The batch-level risks (`upu_risk`, `nnpu_risk`) normalise
      themselves and take only `"mean"`.
    **loss_kwargs: the loss' own keyword arguments.
  """
  fn = losses.get(name)
  if name in losses.BINARY_LOSSES + losses.RISK_ESTIMATORS and num_classes != 1:
    raise ValueError(f"Loss {name!r} is binary: build the model with num_classes=1, "
                     f"got num_classes={num_classes}.")
  if name in losses.MULTICLASS_LOSSES + losses.MULTICLASS_RISK_ESTIMATORS and num_classes < 2:
    raise ValueError(f"Loss {name!r} is multiclass: it needs num_classes >= 2, "
                     f"got {num_classes}.")
  if "where" in loss_kwargs:
    raise ValueError("make_loss_fn: do not pass `where`; the valid elements come from each "
                     "batch (`mask`, or label != 255).")
  if reduction not in REDUCTIONS:
    raise ValueError(f"Unknown reduction {reduction!r}; use one of {list(REDUCTIONS)}.")
  risk_estimator = name in losses.RISK_ESTIMATORS + losses.MULTICLASS_RISK_ESTIMATORS
  if class_balanced and risk_estimator:
    raise ValueError(f"class_balanced does not apply to the batch-level risk {name!r}.")
  if reduction != "mean" and risk_estimator:
    raise ValueError(f"reduction={reduction!r} does not apply to the batch-level risk "
                     f"{name!r}, which normalises itself; use reduction='mean'.")
  try:
    inspect.signature(fn).bind(None, None, **loss_kwargs)
  except TypeError as e:
    raise ValueError(f"Loss {name!r} does not accept arguments {sorted(loss_kwargs)}: {e}. "
                     f"Its signature is {name}{inspect.signature(fn)}.") from None
  return LossSpec(name, num_classes, class_balanced, tuple(sorted(loss_kwargs.items())),
                  reduction)
