"""Models of the thesis: `get(name, num_classes, **options)`.

Every model is an `encoder` submodule (g in eq. 1, the transferable feature
extractor) followed by a `head` submodule (h), so `model.init(...)["params"]`
is `{"encoder": ..., "head": ...}`. Call as
`model.apply({"params": p}, x, train=bool, rngs={"dropout": key})`; inputs are
NHWC images (`[B, D]` features for `mlp`), outputs float32 logits
`[B, num_classes]` or `[B, H, W, num_classes]`. Binary models use
`num_classes=1`. Every model takes `dtype` (compute dtype, e.g.
`jnp.bfloat16`; parameters stay float32).

| name | options |
|---|---|
| `mlp` (§5.1.1) | `hidden=(6, 6)`, `activation="relu"`, `dropout_rate=0.0` |
| `cifar_cnn` (Table 6) | `conv_dropout=0.2`, `fc_dropout=0.5` |
| `fcn_alexnet` (FCN-AlexNet) | `width=1.0`, `dropout_rate=0.5`, `kernel_init="glorot"` (or `"caffe_xavier"`), `score_init=None` (as `kernel_init`; or `"zeros"`, the reference's) |
| `fcn_small` (compact FCN) | `width=1.0`, `dropout_rate=0.0` |
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn

from jaxpu.models.cifar_cnn import CifarCNN
from jaxpu.models.fcn_alexnet import FCNAlexNet
from jaxpu.models.fcn_small import FCNSmall
from jaxpu.models.mlp import MLP

MODELS = {"mlp": MLP, "cifar_cnn": CifarCNN, "fcn_alexnet": FCNAlexNet, "fcn_small": FCNSmall}


def get(name: str, num_classes: int, **options) -> nn.Module:
  """Returns model `name` with `num_classes` outputs (1 for a binary model)."""
  if name not in MODELS:
    raise ValueError(f"Unknown model {name!r}; choose one of {sorted(MODELS)}.")
  if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
    raise ValueError(f"num_classes must be a positive int (1 for binary), got {num_classes!r}.")
  cls = MODELS[name]
  allowed = {f.name for f in dataclasses.fields(cls)} - {"num_classes", "parent", "name"}
  unknown = sorted(set(options) - allowed)
  if unknown:
    raise ValueError(f"Model {name!r} has no option(s) {unknown}; its options are "
                     f"{sorted(allowed)}.")
  # tuples keep the module hashable, so jaxpu.train can cache its compiled steps
  options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
  _check_options(name, options)
  return cls(num_classes=num_classes, **options)


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_options(name: str, options) -> None:
  """The common options' ranges, so a bad value fails here and not inside flax or jax."""
  rate = options.get("dropout_rate")
  if rate is not None and not (_is_number(rate) and 0 <= rate < 1):
    raise ValueError(f"Model {name!r}: dropout_rate={rate!r} must be in [0, 1).")
  width = options.get("width")
  if width is not None and not (_is_number(width) and width > 0):
    raise ValueError(f"Model {name!r}: width={width!r} must be a number > 0.")
  hidden = options.get("hidden")
  if hidden is not None and not (isinstance(hidden, tuple) and hidden and all(
      isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden)):
    raise ValueError(f"Model {name!r}: hidden={hidden!r} must be one or more positive "
                     "layer widths, e.g. hidden=(6, 6).")
