"""Reading a grid of runs: the generalised sigmoid loss' shape, rank correlations, regret.

Pure NumPy/SciPy helpers that the experiments share when they compare many
trained cells (`experiments.saturation`'s α, β, γ grid; choosing a model by a
criterion computed without clean labels):

- `boundary_slope`, `saturation_logit`: two numbers that describe the
  negative term l(f, 0) = α σ(βf)^γ of `jaxpu.losses.generalized_sigmoid_negative`
  (§6);
- `best_index`: the best of some scores (NaN never wins, first on a tie);
- `rank_correlation`: Spearman's ρ of two aligned sequences over their finite
  pairs;
- `regret`: what choosing by one score costs in another.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def saturation_logit(beta: float, gamma: float, level: float = 0.95) -> float:
  """f₉₅: the output above which l(f, 0) = α σ(βf)^γ exceeds `level` · α (flat beyond)."""
  p = level ** (1.0 / gamma)
  return math.log(p / (1.0 - p)) / beta


def boundary_slope(alpha: float, beta: float, gamma: float) -> float:
  """s = d l(f, 0) / df at f = 0 = α β γ / 2^(γ+1): how hard the negative term pushes
  an output at the decision boundary down (eq. 8: 1/4; the logistic loss: 1/2)."""
  return alpha * beta * gamma / 2.0 ** (gamma + 1.0)


def best_index(values: Sequence[float]) -> int:
  """The index of the highest value (the first on a tie; NaN never wins)."""
  values = np.asarray(values, np.float64)
  if values.size == 0:
    raise ValueError("best_index needs at least one value.")
  return int(np.argmax(np.where(np.isnan(values), -np.inf, values)))


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> float:
  """Spearman's ρ of the finite (x, y) pairs; NaN with fewer than 3 pairs or a constant side."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if x.shape != y.shape:
    raise ValueError(f"rank_correlation needs aligned sequences, got {x.shape} and {y.shape}.")
  keep = np.isfinite(x) & np.isfinite(y)
  if keep.sum() < 3 or np.ptp(x[keep]) == 0 or np.ptp(y[keep]) == 0:
    return math.nan
  return float(stats.spearmanr(x[keep], y[keep])[0])


def regret(chooser: Sequence[float], truth: Sequence[float]) -> float:
  """max(truth) − truth[best_index(chooser)]: what choosing by `chooser` costs in `truth`
  (0 when it picks the truly best)."""
  truth = np.asarray(truth, np.float64)
  if len(chooser) != truth.size:
    raise ValueError(f"regret needs aligned sequences, got {len(chooser)} and {truth.size}.")
  return float(np.nanmax(truth) - truth[best_index(chooser)])


def variance_components(values) -> tuple[float, float, float]:
  """(mean, σ²_between, σ²_within) of a balanced one-way random-effects layout.

  `values[i][j]` is draw j of group i (e.g. fine-tuning draw j of pre-training
  seed i); y_ij = μ + a_i + e_ij with Var a = σ²_between, Var e = σ²_within,
  estimated by the ANOVA method of moments: MS_w = ΣΣ (y_ij − ȳ_i)² / (n(m−1)),
  MS_b = m Σ (ȳ_i − ȳ)² / (n−1), σ²_within = MS_w, σ²_between = max(0, (MS_b −
  MS_w) / m).
  """
  y = np.asarray(values, np.float64)
  if y.ndim != 2 or y.shape[0] < 2 or y.shape[1] < 2:
    raise ValueError(f"variance_components needs at least 2 groups × 2 draws, got {y.shape}.")
  n, m = y.shape
  group = y.mean(axis=1)
  within = float(((y - group[:, None]) ** 2).sum() / (n * (m - 1)))
  between = float(m * np.var(group, ddof=1))
  return float(y.mean()), max(0.0, (between - within) / m), within


def paired_t_power(effect: float, var_between: float, var_within: float, repeats: int,
                   draws: int, alpha: float = 0.05) -> float:
  """Power of the one-sided paired t-test (α) on `repeats` repeat values, each the mean
  of `draws` draws, when the true mean difference is `effect`:
  SE = √((σ²_between + σ²_within / draws) / repeats), power = 1 − F_t(t_{1−α, n−1}; n−1,
  δ = |effect| / SE) with F the noncentral t distribution."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  if repeats < 2 or draws < 1:
    raise ValueError(f"paired_t_power needs repeats >= 2 and draws >= 1, got {repeats}, "
                     f"{draws}.")
  se = math.sqrt((var_between + var_within / draws) / repeats)
  if se == 0:
    return 1.0 if effect else alpha
  df = repeats - 1
  return float(1.0 - stats.nct.cdf(stats.t.ppf(1.0 - alpha, df), df, abs(effect) / se))
