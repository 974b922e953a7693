"""Losses for learning with positive and unlabeled (PU) and noisy labels.

The class-dependent losses of the thesis (§4, eqs. 6-11), their usual
baselines, and the uPU / nnPU risk estimators the thesis cites:

* :mod:`~jaxpu.losses.binary`: one logit per element, labels in {0, 1};
* :mod:`~jaxpu.losses.multiclass`: logits ``[..., C]``, integer labels;
* :mod:`~jaxpu.losses.pu`: batch-level uPU / nnPU risks (scalars);
* :mod:`~jaxpu.losses.batch`: :func:`masked_mean` and
  :func:`class_balanced_weights`;
* :mod:`~jaxpu.losses.checks`: the argument checks and the decorators that
  declare each loss; :mod:`~jaxpu.losses.common`: the building blocks of the
  formulas (safe inputs, :func:`sigmoid_parts`, clipping of ±inf logits).

:func:`get` returns a loss by name.

Conventions (those of ``optax.losses``):

* Elementwise losses return one value per label, with the labels' shape;
  nothing is reduced. Reduce them with :func:`masked_mean`.
* Binary losses take one logit ``f`` per element and labels in {0, 1}:
  1 is a labeled positive (foreground), 0 is a negative or unlabeled example
  (the thesis writes -1 for our 0). ``σ`` is the logistic sigmoid.
* Multiclass losses take logits ``[..., C]`` and integer labels ``[...]`` in
  ``[0, C)``; ``negative_class`` (default 0) is the non-relevant/background
  class and ``σ_k`` is the k-th softmax output.
* Each public function's body is its formula; its decorator
  (:mod:`~jaxpu.losses.checks`) checks the arguments in Python and jits the
  body, so eager calls compile once per input shape and the checks cost
  nothing at run time.
* Shapes are checked at trace time, never broadcast (optax's
  ``check_shapes_equal``, with chex assertions): binary losses and risks need
  ``logits.shape == labels.shape``, multiclass ones
  ``logits.shape[:-1] == labels.shape``, and ``where`` the labels' shape.
  (Broadcasting (N, 1) logits against (N,) labels would silently give an
  (N, N) loss.) A mismatch raises ``ValueError`` naming both shapes, even
  under ``chex.disable_asserts()``.
* ``where`` (boolean, the labels' shape): where it is False the loss
  and its gradient are exactly 0, whatever the label there (VOC's void label
  255 included) and whatever the logits (even NaN). Labels and logits are
  replaced by safe values before any arithmetic, so nothing leaks through the
  backward pass.
* Precision: everything is computed in log space (log σ from one
  exp(-|f|) and one log1p per element, log-softmax) in at least
  float32. Low-precision logits (bfloat16, float16) are upcast to float32
  and the loss is returned in float32, so that reductions over many pixels
  do not happen in bfloat16; the gradient with respect to bfloat16 logits
  is bfloat16 again. Values and gradients are finite for |logit| up to 1e4
  (tested) and beyond.
* ±inf logits never give NaN, and the gradient is its limit, finite. The
  binary losses take ±inf as it is: their values are the limits, +inf for a
  log term of an infinitely wrong logit (``logistic(-inf, 1)``). The
  multiclass ones clip ±inf logits to about ±8.5e37 (a quarter of the
  largest float32; ``common.clip_infinite``, with a straight-through
  derivative): a +inf logit takes the whole softmax mass, several +inf
  logits in one row share it (so do all -inf), and a log term that would be
  +inf is finite instead, about 1e38. With two classes, values and
  gradients equal those of the binary loss of f_1 - f_0, except these
  finite stand-ins for +inf. (A zero weight or β times a binary +inf term
  is 0 · ∞ = NaN.)
* Label checks: when the labels (and ``where``, if given) are concrete arrays,
  a label outside {0, 1} (binary) or ``[0, C)`` (multiclass) at a position
  where ``where`` is True raises a ``ValueError`` naming the bad values. Under
  ``jax.jit``/``vmap`` the labels are traced and cannot be checked: an
  out-of-range label that is not masked then yields a NaN loss value (so the
  missing mask shows up in the logged loss) and contributes a zero gradient.
  Risk estimators return NaN if any such label is present.
* Parameter checks: weights must be finite and ≥ 0, bootstrap β in [0, 1],
  the generalized losses' α ≥ 0, β > 0, γ > 0, a PU prior in (0, 1) and
  nnPU's β, γ ≥ 0 (each docstring says which). A concrete (Python/NumPy)
  parameter out of range raises ``ValueError`` naming it, its value and the
  range; a traced one (under ``jax.jit``) cannot be checked and makes the
  whole loss NaN instead. Valid parameters leave values and gradients
  unchanged, bit for bit. An array parameter must be a scalar or have a
  shape that broadcasts to the labels' shape without changing it (scalars
  only for the risks; ``class_weights`` has shape ``[C]``); otherwise
  ``ValueError`` names it, its shape and the labels' shape.
"""

from typing import Callable

import jax

from jaxpu.losses.batch import class_balanced_weights
from jaxpu.losses.batch import masked_mean
from jaxpu.losses.common import sigmoid_parts
from jaxpu.losses.binary import bootstrap_hard
from jaxpu.losses.binary import generalized_sigmoid_negative
from jaxpu.losses.binary import logistic
from jaxpu.losses.binary import sigmoid_negative
from jaxpu.losses.binary import weighted_logistic
from jaxpu.losses.multiclass import generalized_softmax_negative
from jaxpu.losses.multiclass import softmax_bootstrap_hard
from jaxpu.losses.multiclass import softmax_cross_entropy
from jaxpu.losses.multiclass import softmax_negative
from jaxpu.losses.multiclass import weighted_softmax_cross_entropy
from jaxpu.losses.pu import nnpu_risk
from jaxpu.losses.pu import PU_SURROGATES
from jaxpu.losses.pu import softmax_nnpu_risk
from jaxpu.losses.pu import unlabelled_prior
from jaxpu.losses.pu import upu_risk

Array = jax.Array
ArrayLike = jax.typing.ArrayLike

BINARY_LOSSES = ("logistic", "weighted_logistic", "sigmoid_negative",
                 "generalized_sigmoid_negative", "bootstrap_hard")
MULTICLASS_LOSSES = ("softmax_cross_entropy", "weighted_softmax_cross_entropy",
                     "softmax_negative", "generalized_softmax_negative",
                     "softmax_bootstrap_hard")
RISK_ESTIMATORS = ("upu_risk", "nnpu_risk")  # batch level, binary: a scalar.
# Batch level, multiclass (logits [..., C]): a scalar.
MULTICLASS_RISK_ESTIMATORS = ("softmax_nnpu_risk",)

__all__ = [
    "Array", "ArrayLike", "BINARY_LOSSES", "MULTICLASS_LOSSES",
    "MULTICLASS_RISK_ESTIMATORS", "PU_SURROGATES", "RISK_ESTIMATORS",
    "bootstrap_hard", "class_balanced_weights", "generalized_sigmoid_negative",
    "generalized_softmax_negative", "get", "logistic", "masked_mean",
    "nnpu_risk", "sigmoid_negative", "sigmoid_parts", "softmax_bootstrap_hard",
    "softmax_cross_entropy", "softmax_negative", "softmax_nnpu_risk",
    "unlabelled_prior", "upu_risk", "weighted_logistic",
    "weighted_softmax_cross_entropy",
]


def get(name: str) -> Callable[..., Array]:
  """Returns the loss called ``name`` (one of the names listed below).

  Binary elementwise: ``BINARY_LOSSES``; multiclass elementwise:
  ``MULTICLASS_LOSSES``; batch-level PU risks (scalar): ``RISK_ESTIMATORS``
  (binary) and ``MULTICLASS_RISK_ESTIMATORS``.
  """
  names = (BINARY_LOSSES + MULTICLASS_LOSSES + RISK_ESTIMATORS
           + MULTICLASS_RISK_ESTIMATORS)
  if name not in names:
    raise ValueError(f"Unknown loss {name!r}; valid names: "
                     f"{', '.join(names)}.")
  return globals()[name]
