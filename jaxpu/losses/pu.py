"""PU risk estimators (batch level): uPU and nnPU, binary and multiclass.

The unbiased PU risk of du Plessis et al. (2014/2015) and the non-negative
one of Kiryo et al. (2017) that the thesis cites, for one logit per element
(labels 1 = labeled positive, 0 = unlabeled) and for softmax logits with K
relevant classes and one non-relevant class (§5.1.2). Each returns a scalar;
its parameters (prior, β, γ) must be scalars. The risks share the partial
risks (:func:`partial_risks`) and nnPU's value-and-gradient rule
(:func:`nnpu_objective`).
"""

from typing import Optional

import jax
import jax.numpy as jnp

from jaxpu.losses import checks
from jaxpu.losses import common
from jaxpu.losses.common import sigmoid_parts

Array = jax.Array
ArrayLike = jax.typing.ArrayLike

# Surrogate losses ℓ(z) of the PU risks: sigmoid σ(-z) (bounded, Kiryo et
# al.'s default) and logistic log(1 + exp(-z)) (unbounded).
PU_SURROGATES = {"sigmoid": lambda z: jax.nn.sigmoid(-z),
                 "logistic": lambda z: jax.nn.softplus(-z)}


def check_surrogate(name: str, surrogate: str) -> None:
  """``surrogate`` must name one of ``PU_SURROGATES``."""
  if surrogate not in PU_SURROGATES:
    raise ValueError(f"{name}: surrogate must be one of "
                     f"{sorted(PU_SURROGATES)}, got {surrogate!r}.")


def surrogate_pair(surrogate: str, f: Array) -> tuple[Array, Array]:
  """(ℓ(f), ℓ(-f)) of ``PU_SURROGATES[surrogate]``, from one exp(-|f|)."""
  log_sigmoid, log_sigmoid_of_minus, sigmoid, sigmoid_of_minus = (
      sigmoid_parts(f))
  if surrogate == "sigmoid":
    return sigmoid_of_minus, sigmoid
  if surrogate == "logistic":  # softplus(-f) = -log σ(f)
    return -log_sigmoid, -log_sigmoid_of_minus
  loss = PU_SURROGATES[surrogate]
  return loss(f), loss(-f)


def partial_risks(logits, labels, where, surrogate="sigmoid"):
  """Empirical partial risks with the surrogate ℓ (default sigmoid: σ(-z)).

  Returns (R_p^+, R_p^-, R_u^-, any_bad):
    R_p^+ = Σ_P ℓ(f) / max(1, n_p),   R_p^- = Σ_P ℓ(-f) / max(1, n_p),
    R_u^- = Σ_U ℓ(-f) / max(1, n_u),
  over the labeled positives P (label 1) and unlabeled U (label 0) where
  `where` holds; any_bad flags unmasked out-of-range labels (jit only).
  """
  x = common.binary_inputs(logits, labels, where)
  f, positive = x.logits, x.positive
  unlabeled = x.valid & x.in_range & ~positive
  n_p = jnp.maximum(1., jnp.sum(positive, dtype=f.dtype))
  n_u = jnp.maximum(1., jnp.sum(unlabeled, dtype=f.dtype))
  loss_as_positive, loss_as_negative = surrogate_pair(surrogate, f)
  r_p_plus = jnp.sum(jnp.where(positive, loss_as_positive, 0.)) / n_p
  r_p_minus = jnp.sum(jnp.where(positive, loss_as_negative, 0.)) / n_p
  r_u_minus = jnp.sum(jnp.where(unlabeled, loss_as_negative, 0.)) / n_u
  any_bad = jnp.any(x.valid & ~x.in_range)
  return r_p_plus, r_p_minus, r_u_minus, any_bad


@checks.binary_risk(prior=checks.OPEN_UNIT)
def upu_risk(logits: ArrayLike, labels: ArrayLike, prior: ArrayLike,
             where: Optional[ArrayLike] = None) -> Array:
  """Unbiased PU risk (du Plessis et al. 2014/2015), sigmoid surrogate.

    R_upu = π R_p^+ + R_u^- - π R_p^-,

  with ℓ(z) = σ(-z), R_p^± the mean of ℓ(±f) over the labeled positives
  (label 1), R_u^- the mean of ℓ(-f) over the unlabeled (label 0); the means
  divide by max(1, count) and skip elements where `where` is False. π =
  ``prior`` ∈ (0, 1), a scalar, is the positive class prior. Returns a
  scalar; it can be negative (the overfitting nnPU corrects).

  Logits, labels and `where` share one shape. A concrete prior outside
  (0, 1) raises ValueError; a traced one (under jit) gives NaN, as do
  unmasked labels outside {0, 1} under jit.
  """
  r_p_plus, r_p_minus, r_u_minus, any_bad = partial_risks(logits, labels,
                                                          where)
  risk = prior * r_p_plus + r_u_minus - prior * r_p_minus
  return jnp.where(any_bad, jnp.nan, risk)


def nnpu_objective(r_p_plus, r_p_minus, r_u_minus, prior, beta, gamma):
  """The nnPU value with Kiryo et al.'s gradient (see :func:`nnpu_risk`).

  Value π R_p^+ + max(0, r) with r = R_u^- - π R_p^-; gradient that of
  π R_p^+ + r if r ≥ -β, else that of -γ r.
  """
  positive_risk = prior * r_p_plus
  negative_risk = r_u_minus - prior * r_p_minus
  value = positive_risk + jnp.maximum(0., negative_risk)
  descent_objective = jnp.where(negative_risk < -beta, -gamma * negative_risk,
                                positive_risk + negative_risk)
  return descent_objective + jax.lax.stop_gradient(value - descent_objective)


@checks.binary_risk(static=("surrogate",), prior=checks.OPEN_UNIT,
                    beta=checks.NONNEGATIVE, gamma=checks.NONNEGATIVE)
def nnpu_risk(logits: ArrayLike, labels: ArrayLike, prior: ArrayLike,
              beta: ArrayLike = 0., gamma: ArrayLike = 1.,
              where: Optional[ArrayLike] = None,
              surrogate: str = "sigmoid") -> Array:
  """Non-negative PU risk (Kiryo et al. 2017), sigmoid (default) or logistic surrogate.

  Value (the nnPU risk estimate):

    R_nnpu = π R_p^+ + max(0, R_u^- - π R_p^-),

  with the partial risks of :func:`upu_risk` (labels 1 = labeled positive,
  0 = unlabeled; normalisers max(1, count); `where` respected).

  Gradient (Kiryo et al.'s Algorithm 1): with the negative risk
  r = R_u^- - π R_p^-,

    ∇(π R_p^+ + r)    if r ≥ -β,
    ∇(-γ r)           if r < -β   (descend on -γ r, pushing r back up).

  Both are obtained from one scalar via a stop-gradient trick: the function
  returns ``s + stop_gradient(R_nnpu - s)`` where s is the objective whose
  gradient is wanted, so the value equals R_nnpu (up to float rounding) and
  the gradient is that of s. (Kiryo et al.'s own code reports π R_p^+ - β as
  the value when switched; this returns the estimator itself.)

  Parameters (scalars): π = ``prior`` ∈ (0, 1); β ≥ 0 and γ ≥ 0, finite
  (Kiryo et al. take 0 ≤ γ ≤ 1, a discount; larger γ are accepted);
  ``surrogate`` ℓ: "sigmoid" σ(-z) (Kiryo et al.'s) or "logistic"
  log(1 + exp(-z)). The sigmoid surrogate is flat for confidently wrong
  outputs: a network that calls everything negative early (π small) gets no
  gradient back from the positives and stays there (R_nnpu = π); the
  logistic one keeps pulling. Logits, labels and `where` share one shape. A
  concrete parameter out of range raises ValueError; a traced one (under
  jit) gives NaN, as do unmasked labels outside {0, 1} under jit.
  """
  check_surrogate("nnpu_risk", surrogate)
  r_p_plus, r_p_minus, r_u_minus, any_bad = partial_risks(logits, labels,
                                                          where, surrogate)
  risk = nnpu_objective(r_p_plus, r_p_minus, r_u_minus, prior, beta, gamma)
  return jnp.where(any_bad, jnp.nan, risk)


@checks.multiclass_risk(static=("surrogate",), prior=checks.OPEN_UNIT,
                        beta=checks.NONNEGATIVE, gamma=checks.NONNEGATIVE)
def softmax_nnpu_risk(logits: ArrayLike, labels: ArrayLike, prior: ArrayLike,
                      beta: ArrayLike = 0., gamma: ArrayLike = 1.,
                      negative_class: int = 0, surrogate: str = "sigmoid",
                      where: Optional[ArrayLike] = None) -> Array:
  """Non-negative PU risk for K relevant classes and one non-relevant class.

  An extension of :func:`nnpu_risk` (Kiryo et al. 2017) to the §5.1.2 setup
  (labels 1..K = labelled relevant examples, 0 = ``negative_class`` =
  unlabelled: non-relevant or unlabelled relevant), in two parts:

  1. nnPU on the relevant-vs-non-relevant margin

       z = max_{k≠0} f_k - f_0,

     with the labelled examples as P and label 0 as U: value and gradient
     as :func:`nnpu_risk` (prior π = ``prior``, β, γ), with the surrogate
     ℓ = ``surrogate``: "sigmoid" σ(-z) as in :func:`nnpu_risk`, or
     "logistic" log(1 + exp(-z)), which does not saturate on confidently
     wrong scores (a network that starts out calling everything
     non-relevant still gets a gradient). The argmax of the logits picks a
     relevant class exactly when z > 0, so the usual argmax prediction is
     this binary classifier's decision (with z = log Σ_{k≠0} exp f_k - f_0,
     an example whose relevant mass is spread over several classes would be
     relevant to the loss but non-relevant to the argmax). The gradient of
     the max reaches the largest relevant logit;
  2. plus the cross entropy among the relevant classes on the labelled
     examples, mean over them (normaliser max(1, n_p)):

       (1 / n_p) Σ_{i ∈ P} -log( exp f_{y_i} / Σ_{k≠0} exp f_k ).

  With one relevant class the second part is 0 and, with the sigmoid
  surrogate, this is ``nnpu_risk(f_1 - f_0, labels, prior, beta, gamma)``.
  ``prior`` ∈ (0, 1) is the relevant-class prior of the unlabelled (label 0)
  data, as in :func:`nnpu_risk` (see :func:`unlabelled_prior`); β, γ ≥ 0 as
  there (all scalars). Returns a scalar (batch level); ``logits.shape[:-1]
  == labels.shape``, `where` as for every loss. A concrete parameter out of
  range raises ValueError; a traced one (under jit) gives NaN, as do
  unmasked out-of-range labels under jit.
  """
  name = "softmax_nnpu_risk"
  check_surrogate(name, surrogate)
  if jnp.shape(logits)[-1] < 2:
    raise ValueError(f"{name}: needs at least 2 classes (one relevant "
                     f"and the non-relevant one), got logits of shape "
                     f"{jnp.shape(logits)}.")
  # ±inf logits clipped (common.clip_infinite) where they enter a difference.
  clip = common.clip_infinite
  x = common.multiclass_inputs(logits, labels, where, clip=False)
  relevant = jnp.arange(x.logits.shape[-1]) != negative_class
  z = (clip(jnp.max(jnp.where(relevant, x.logits, -jnp.inf), axis=-1))
       - clip(x.logits[..., negative_class]))
  log_relevant = jax.nn.logsumexp(clip(x.logits), axis=-1, where=relevant)
  # Binary PU labels: 1 = labelled relevant, 0 = unlabelled; 2 marks an
  # out-of-range label, which the partial risks flag (NaN) where valid.
  labels = jnp.asarray(labels)  # Not x.labels: no extra select per element.
  binary = jnp.where(x.in_range,
                     (labels != negative_class).astype(jnp.int32), 2)
  r_p_plus, r_p_minus, r_u_minus, any_bad = partial_risks(z, binary, x.valid,
                                                          surrogate)
  risk = nnpu_objective(r_p_plus, r_p_minus, r_u_minus, prior, beta, gamma)
  positive = x.use & (labels != negative_class)
  first_relevant = 1 if negative_class == 0 else 0
  safe_labels = jnp.where(positive, labels, first_relevant)
  # -log softmax among the relevant classes:
  cross_entropy = log_relevant - clip(common.take_class(x.logits, safe_labels))
  n_p = jnp.maximum(1., jnp.sum(positive, dtype=z.dtype))
  risk = risk + jnp.sum(jnp.where(positive, cross_entropy, 0.)) / n_p
  return jnp.where(any_bad, jnp.nan, risk)


def unlabelled_prior(num_labelled: float, num_unlabelled: float,
                     labelled_fraction: float) -> float:
  """The positive-class prior of the unlabelled set, from the labelled fraction.

  In the PU setup of §5.1 every positive example is labelled with a known
  probability c = ``labelled_fraction`` and otherwise joins the unlabelled
  set (label 0). The n_L labelled examples are then a fraction c of the
  positives, so n_L (1 - c) / c positives hide among the n_U unlabelled
  examples, and the prior that :func:`nnpu_risk` / :func:`softmax_nnpu_risk`
  need (the positive share of the unlabelled data) is

    π = n_L (1 - c) / (c n_U).

  E.g. half of a balanced set labelled (c = 0.5): π = 1/3.
  """
  if not 0. < labelled_fraction <= 1.:
    raise ValueError(f"unlabelled_prior: labelled_fraction must be in (0, 1], got "
                     f"{labelled_fraction}.")
  if num_labelled <= 0 or num_unlabelled <= 0:
    raise ValueError("unlabelled_prior: needs labelled and unlabelled examples, got "
                     f"num_labelled={num_labelled}, num_unlabelled={num_unlabelled}.")
  prior = num_labelled * (1. - labelled_fraction) / (labelled_fraction * num_unlabelled)
  if not 0. < prior < 1.:
    raise ValueError(
        f"unlabelled_prior: n_L (1 - c) / (c n_U) = {prior:.4g} is not in (0, 1) for "
        f"n_L={num_labelled}, n_U={num_unlabelled}, c={labelled_fraction}; the counts "
        "do not fit this labelled fraction.")
  return float(prior)
