"""jaxpu.analysis: the generalised loss' shape numbers, rank correlation, regret."""

import math

import numpy as np
import pytest
from scipy import stats

from jaxpu import analysis


def test_saturation_logit():
  # α σ(βf)^γ reaches 95 % of α at f₉₅; eq. 8: σ(f) = 0.95 at f = log 19.
  assert analysis.saturation_logit(1.0, 1.0) == pytest.approx(math.log(19))
  for beta, gamma in ((0.5, 2.0), (2.0, 0.5)):
    f = analysis.saturation_logit(beta, gamma)
    assert (1 / (1 + math.exp(-beta * f))) ** gamma == pytest.approx(0.95)


def test_boundary_slope_is_the_losses_derivative_at_zero():
  import jax  # pylint: disable=g-import-not-at-top
  from jaxpu import losses  # pylint: disable=g-import-not-at-top
  for alpha, beta, gamma in ((1.0, 1.0, 1.0), (0.5, 2.0, 0.5), (2.0, 0.5, 2.0)):
    grad = jax.grad(lambda f: losses.generalized_sigmoid_negative(
        f, 0, alpha=alpha, beta=beta, gamma=gamma))(0.0)
    assert analysis.boundary_slope(alpha, beta, gamma) == pytest.approx(float(grad), rel=1e-5)
  assert analysis.boundary_slope(1.0, 1.0, 1.0) == 0.25  # eq. 8: σ'(0)


def test_best_index_rank_correlation_and_regret():
  assert analysis.best_index([0.2, float("nan"), 0.5, 0.5]) == 2  # NaN never wins; first tie
  x, y = [1.0, 2.0, 3.0, 4.0, float("nan")], [0.1, 0.4, 0.2, 0.9, 0.3]
  assert analysis.rank_correlation(x, y) == pytest.approx(stats.spearmanr(x[:4], y[:4])[0])
  assert math.isnan(analysis.rank_correlation([1, 1, 1], [1, 2, 3]))
  # Choosing by the criterion picks index 0 (truth 0.6); the best truth is 0.9.
  assert analysis.regret([0.9, 0.1, 0.5], [0.6, 0.9, 0.7]) == pytest.approx(0.3)
  assert analysis.regret(np.array([0.1, 0.9]), [0.2, 0.8]) == 0.0
  with pytest.raises(ValueError, match="aligned"):
    analysis.regret([1, 2], [1, 2, 3])


def test_variance_components_hand_computed():
  # Groups (1, 3) and (5, 7): group means 2 and 6, grand mean 4. MS_w = (1+1+1+1)/(2·1) = 2;
  # MS_b = 2 · var([2, 6], ddof=1) = 2 · 8 = 16; σ²_b = (16 − 2)/2 = 7.
  assert analysis.variance_components([[1, 3], [5, 7]]) == (4.0, 7.0, 2.0)
  # Groups with equal means: no between-group component (clipped at 0).
  assert analysis.variance_components([[0, 2], [2, 0]])[1] == 0.0
  with pytest.raises(ValueError, match="2 groups"):
    analysis.variance_components([[1, 2, 3]])


def test_paired_t_power_matches_a_simulation():
  rng = np.random.default_rng(0)
  effect, var_b, var_w, n, m = 0.03, 0.01 ** 2, 0.025 ** 2, 4, 2
  repeats = effect + rng.normal(0, 0.01, (20000, n)) + rng.normal(0, 0.025, (20000, n, m)).mean(-1)
  t = repeats.mean(1) / (repeats.std(1, ddof=1) / np.sqrt(n))
  simulated = np.mean(t > stats.t.ppf(0.95, n - 1))
  assert analysis.paired_t_power(effect, var_b, var_w, n, m) == pytest.approx(simulated, abs=0.01)
  assert analysis.paired_t_power(0.0, var_b, var_w, n, m) == pytest.approx(0.05)
