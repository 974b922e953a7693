"""Tests of jaxpu.priors: hand-computed cases, data with a known prior, the
invariances the estimators promise, and input errors.

The known-prior data: labelled positives x ~ N(μ, 1) (n_L = 1000) and
unlabelled examples (n_U = 3000), each positive with probability π (N(μ, 1))
and otherwise negative (N(-μ, 1)), μ = 2 (4 standard deviations apart); in 2-D
the means are ±μ (1, 1)/√2 (the same separation). The "exact" scores are the
Bayes posterior of being labelled,

  g(x) = n_L f_P(x) / (n_L f_P(x) + n_U (π f_P(x) + (1 - π) f_N(x))),

so those tests check the estimators, not a classifier. Tolerances come from a
Monte-Carlo run of this very set-up (1000 seeds for the exact scores, 200 for
the fitted classifier; the spreads are quoted in each test), not from the
seeds used here.
"""

import math
import subprocess
import sys

import numpy as np
import pytest

from jaxpu import priors

MU, N_L, N_U = 2.0, 1000, 3000
PRIORS = (0.2, 0.5, 0.7)


def _normal_pdf(x, mean):
  return np.exp(-0.5 * (x - mean)**2) / math.sqrt(2. * math.pi)


def _exact_scores(x, prior):
  """g(x) = P(s=1 | x) for the 1-D set-up (see the module docstring)."""
  f_p, f_n = _normal_pdf(x, MU), _normal_pdf(x, -MU)
  return N_L * f_p / (N_L * f_p + N_U * (prior * f_p + (1. - prior) * f_n))


def _sample(seed, prior, dim=1):
  """(labelled [N_L, dim], unlabelled [N_U, dim]) features; squeezed if 1-D."""
  rng = np.random.default_rng(seed)
  mean = MU / math.sqrt(dim) * np.ones(dim)
  labelled = rng.normal(size=(N_L, dim)) + mean
  positive = rng.random(N_U) < prior
  unlabelled = rng.normal(size=(N_U, dim)) + np.where(positive[:, None], mean,
                                                      -mean)
  if dim == 1:
    return labelled[:, 0], unlabelled[:, 0]
  return labelled, unlabelled


def _exact_estimates(estimator, prior, seeds):
  """The estimator on the exact scores of the 1-D set-up, one per seed."""
  estimates = []
  for seed in seeds:
    x_l, x_u = _sample(seed, prior)
    estimates.append(estimator(_exact_scores(x_l, prior),
                               _exact_scores(x_u, prior)))
  return np.array(estimates)


# Hand-computed cases.


def test_prior_from_labelled_fraction_hand_cases():
  # Balanced set of 4, c = 1/2: n_L = 1 labelled, n_U = 3 (1 pos + 2 neg):
  # π = 1 · 0.5 / (0.5 · 3) = 1/3.
  assert priors.prior_from_labelled_fraction(0.5, 1, 3) == pytest.approx(1 / 3)
  # c = 1: nothing positive left unlabelled.
  assert priors.prior_from_labelled_fraction(1., 5, 7) == 0.
  # c = 0.1, n_L = n_U = 10: 10 · 0.9 / (0.1 · 10) = 9, clipped to 1.
  assert priors.prior_from_labelled_fraction(0.1, 10, 10) == 1.


def test_prior_from_labelled_fraction_matches_losses_unlabelled_prior():
  from jaxpu import losses  # pylint: disable=g-import-not-at-top
  for c, n_l, n_u in ((0.5, 1, 3), (0.3, 200, 1000), (0.9, 50, 20)):
    assert priors.prior_from_labelled_fraction(c, n_l, n_u) == pytest.approx(
        losses.unlabelled_prior(n_l, n_u, c), rel=1e-12)


def test_elkan_noto_hand_case():
  labelled, unlabelled = [0.4, 0.8], [0.1, 0.2, 0.3]
  # e1 = (0.4 + 0.8) / 2 = 0.6; e2 = 1.2 / (1.2 + 0.6) = 2/3; e3 = 0.8.
  expected_c = {"e1": 0.6, "e2": 2 / 3, "e3": 0.8}
  # π = n_L (1 - c) / (c n_U) with n_L = 2, n_U = 3:
  # e1: 2 · 0.4 / 1.8 = 4/9; e2: 2 · (1/3) / 2 = 1/3; e3: 2 · 0.2 / 2.4 = 1/6.
  expected_prior = {"e1": 4 / 9, "e2": 1 / 3, "e3": 1 / 6}
  for name in priors.ELKAN_NOTO_ESTIMATORS:
    assert priors.elkan_noto_labelled_fraction(
        labelled, unlabelled, name) == pytest.approx(expected_c[name])
    assert priors.elkan_noto_prior(
        labelled, unlabelled, name) == pytest.approx(expected_prior[name])
  # Explicit counts replace the array lengths: 10 · 0.4 / (0.6 · 40) = 1/6.
  assert priors.elkan_noto_prior(labelled, unlabelled, num_labelled=10,
                                 num_unlabelled=40) == pytest.approx(1 / 6)


def test_best_bin_estimate_hand_cases():
  positive = np.array([0.9, 0.8, 0.7, 0.6])
  unlabelled = np.array([0.95, 0.65, 0.3, 0.2])
  # n_P = n_U = 4, δ = 0.1, γ = 0: slack = 2 √(log 40 / 8) = 1.3582.
  # t:     0.2   0.3   0.6   0.65  0.7   0.8   0.9   (0.95: q_P = 0)
  # q_P:   1     1     1     .75   .75   .5    .25
  # q_U:   1     .75   .5    .5    .25   .25   .25
  # bound (q_U + 1.358) / q_P:
  #        2.36  2.11  1.86  2.48  2.14  3.22  6.43  → t* = 0.6, π̂ = 0.5.
  assert priors.best_bin_estimate(positive, unlabelled, delta=0.1,
                                  gamma=0.) == pytest.approx(0.5)
  # Each score 100 times (n = 400): slack = 2 √(log 40 / 800) = 0.1358.
  # bound: 1.14  0.89  0.64  0.85  0.51  0.77  1.54  → t* = 0.7,
  # π̂ = 0.25 / 0.75 = 1/3.
  assert priors.best_bin_estimate(np.repeat(positive, 100),
                                  np.repeat(unlabelled, 100), delta=0.1,
                                  gamma=0.) == pytest.approx(1 / 3)
  # Every unlabelled score above every positive one: only t = 0.1 has
  # q_P > 0, where q_U = 1: π̂ = 1. All below: t = 0.8 gives q_U = 0: π̂ = 0.
  assert priors.best_bin_estimate([0.1], [0.5]) == 1.
  assert priors.best_bin_estimate([0.9, 0.8], [0.1, 0.2]) == 0.


# Data with a known prior.


@pytest.mark.parametrize("prior", PRIORS)
def test_elkan_noto_e1_exact_scores_matches_its_expectation(prior):
  """e1 on exact scores: mean over 20 seeds vs E[e1] by quadrature.

  g = c P(y=1 | x) and the classes overlap, so E[e1] = ∫ g f_P < c and π is
  overestimated by 0.019-0.023 (π = 0.2, 0.5, 0.7). The mean of 20 priors
  from e1 has a Monte-Carlo sd of 0.0006 (n_L = 1000, n_U = 3000): tolerance
  0.003 (5 sd). Independently, the error |π̂ - π| stays below 0.03 (MC
  mean 0.019-0.023, largest mean over 20 seeds 0.024).
  """
  x = np.linspace(-14., 14., 200_001)
  expected_c = np.sum(_exact_scores(x, prior) * _normal_pdf(x, MU)) * (x[1] -
                                                                      x[0])
  expected = priors.prior_from_labelled_fraction(expected_c, N_L, N_U)
  estimates = _exact_estimates(priors.elkan_noto_prior, prior, range(20))
  assert estimates.mean() == pytest.approx(expected, abs=0.003)
  assert expected > prior  # The overlap bias, in the documented direction.
  assert np.mean(np.abs(estimates - prior)) < 0.03


@pytest.mark.parametrize("prior", PRIORS)
def test_elkan_noto_e2_e3_exact_scores(prior):
  """e2 and e3 on exact scores, 20 seeds (n_L = 1000, n_U = 3000).

  e2: MC mean error +0.019 to +0.023 (same bias as e1), sd 0.007-0.009;
  largest mean |error| over 20 seeds in 50 groups: 0.027; tolerance 0.035.
  e3: the exact g reaches c where f_N/f_P is negligible, so max g = c to
  within 1e-6 here: tolerance 1e-3.
  """
  e2 = _exact_estimates(lambda l, u: priors.elkan_noto_prior(l, u, "e2"),
                        prior, range(20))
  assert np.mean(np.abs(e2 - prior)) < 0.035
  e3 = _exact_estimates(lambda l, u: priors.elkan_noto_prior(l, u, "e3"),
                        prior, range(3))
  np.testing.assert_allclose(e3, prior, atol=1e-3)


@pytest.mark.parametrize("prior", PRIORS)
def test_best_bin_estimate_exact_scores(prior):
  """BBE on exact scores: mean |π̂ - π| over 20 seeds below 0.025.

  Monte-Carlo (1000 seeds, n_P = 1000, n_U = 3000, δ = 0.1, γ = 0.01):
  mean π̂ 0.201 / 0.495 / 0.690 for π = 0.2 / 0.5 / 0.7, sd 0.009 / 0.013 /
  0.016, mean |error| 0.007 / 0.011 / 0.014; the largest mean |error| over
  20 seeds (50 groups) 0.009 / 0.016 / 0.020.
  """
  estimates = _exact_estimates(priors.best_bin_estimate, prior, range(20))
  assert np.mean(np.abs(estimates - prior)) < 0.025


@pytest.mark.parametrize("prior", PRIORS)
def test_estimators_with_fitted_logistic_regression(prior):
  """2-D Gaussians, scores from :func:`cross_fitted_scores`, 10 seeds.

  BBE only needs the ranking, which a linear classifier gets right here:
  Monte-Carlo (200 seeds, n_L = 1000, n_U = 3000) mean |error| 0.007 /
  0.013 / 0.017 for π = 0.2 / 0.5 / 0.7, largest mean over 10 seeds (20
  groups) 0.011 / 0.020 / 0.026: tolerance 0.035.

  Elkan-Noto needs calibrated scores; the log-odds of s are not linear in x
  (they saturate at log(c/(1-c)) where the negatives vanish), so logistic
  regression underestimates g on the positives and e1 overestimates π:
  MC mean error +0.06 / +0.08 / +0.08 (smallest mean over 10 seeds +0.05),
  largest mean |error| 0.09. Asserted: mean error in (0.02, 0.12).
  """
  bbe, e1 = [], []
  for seed in range(10):
    x_l, x_u = _sample(100 + seed, prior, dim=2)
    scores_l, scores_u = priors.cross_fitted_scores(x_l, x_u)
    bbe.append(priors.best_bin_estimate(scores_l, scores_u))
    e1.append(priors.elkan_noto_prior(scores_l, scores_u))
  assert np.mean(np.abs(np.array(bbe) - prior)) < 0.035
  assert 0.02 < np.mean(np.array(e1) - prior) < 0.12


# Invariances.


def test_best_bin_estimate_invariant_to_increasing_transforms():
  x_l, x_u = _sample(7, 0.5)
  scores_l, scores_u = _exact_scores(x_l, 0.5), _exact_scores(x_u, 0.5)
  reference = priors.best_bin_estimate(scores_l, scores_u)
  # Raw features (g is increasing in x), logits, affine maps, cubes.
  for transform in (lambda s: np.log(s) - np.log1p(-s), lambda s: 3. * s - 7.,
                    lambda s: s**3):
    assert priors.best_bin_estimate(transform(scores_l),
                                    transform(scores_u)) == reference
  assert priors.best_bin_estimate(x_l, x_u) == reference
  rng = np.random.default_rng(0)
  assert priors.best_bin_estimate(rng.permutation(scores_l),
                                  rng.permutation(scores_u)) == reference
  # A decreasing transform ranks negatives first: the estimate breaks.
  assert priors.best_bin_estimate(-scores_l, -scores_u) > reference + 0.3


def test_elkan_noto_permutation_invariant_and_e1_ignores_unlabelled():
  x_l, x_u = _sample(3, 0.2)
  scores_l, scores_u = _exact_scores(x_l, 0.2), _exact_scores(x_u, 0.2)
  rng = np.random.default_rng(1)
  for name in priors.ELKAN_NOTO_ESTIMATORS:
    assert priors.elkan_noto_labelled_fraction(
        rng.permutation(scores_l), rng.permutation(scores_u),
        name) == pytest.approx(priors.elkan_noto_labelled_fraction(
            scores_l, scores_u, name), rel=1e-12)
  assert priors.elkan_noto_labelled_fraction(
      scores_l, []) == priors.elkan_noto_labelled_fraction(scores_l, scores_u)


# The logistic regression.


def test_fit_logistic_regression_matches_sklearn():
  """Same objective as sklearn's (C = 1 / (n λ)): coefficients agree."""
  linear_model = pytest.importorskip("sklearn.linear_model")
  rng = np.random.default_rng(0)
  features = rng.normal(size=(500, 3))
  targets = (rng.random(500) < 1. / (1. + np.exp(-(features @ [1., -2., .5]
                                                   + .3)))).astype(float)
  l2 = 1e-2
  weights, bias = priors.fit_logistic_regression(features, targets, l2=l2)
  reference = linear_model.LogisticRegression(
      C=1. / (len(targets) * l2), tol=1e-12, max_iter=10_000).fit(features,
                                                                  targets)
  np.testing.assert_allclose(weights, reference.coef_[0], atol=1e-5)
  assert bias == pytest.approx(reference.intercept_[0], abs=1e-5)
  np.testing.assert_allclose(
      priors.logistic_regression_scores(features, weights, bias),
      reference.predict_proba(features)[:, 1], atol=1e-6)


def test_cross_fitted_scores_are_held_out_and_deterministic():
  x_l, x_u = _sample(5, 0.5, dim=2)
  x_l, x_u = x_l[:100], x_u[:300]
  scores_l, scores_u = priors.cross_fitted_scores(x_l, x_u, num_folds=4)
  again = priors.cross_fitted_scores(x_l, x_u, num_folds=4)
  np.testing.assert_array_equal(scores_l, again[0])
  np.testing.assert_array_equal(scores_u, again[1])
  # Fold 0 (indices ≡ 0 mod 4) is scored by a model fit on the other folds.
  keep_l, keep_u = np.arange(100) % 4 != 0, np.arange(300) % 4 != 0
  weights, bias = priors.fit_logistic_regression(
      np.concatenate([x_l[keep_l], x_u[keep_u]]),
      np.concatenate([np.ones(keep_l.sum()), np.zeros(keep_u.sum())]))
  np.testing.assert_allclose(
      scores_l[~keep_l], priors.logistic_regression_scores(x_l[~keep_l],
                                                           weights, bias))
  np.testing.assert_allclose(
      scores_u[~keep_u], priors.logistic_regression_scores(x_u[~keep_u],
                                                           weights, bias))


# Input errors and dependencies.


@pytest.mark.parametrize("call, match", [
    (lambda: priors.elkan_noto_labelled_fraction([], [0.1]), "at least 1"),
    (lambda: priors.elkan_noto_labelled_fraction([[0.5]], [0.1]),
     "one-dimensional"),
    (lambda: priors.elkan_noto_labelled_fraction([1.5], [0.1]), r"\[0, 1\]"),
    (lambda: priors.elkan_noto_labelled_fraction([0.5], [np.nan]), "NaN"),
    (lambda: priors.elkan_noto_labelled_fraction([0.5], [0.1], "e4"),
     "unknown estimator"),
    (lambda: priors.elkan_noto_labelled_fraction([0.], [0.]), "all 0"),
    (lambda: priors.elkan_noto_prior([0.5], []),
     "num_unlabelled must be a finite number > 0, got 0"),
    (lambda: priors.prior_from_labelled_fraction(0., 1, 1), r"\(0, 1\]"),
    (lambda: priors.prior_from_labelled_fraction(0.5, 0, 1), "num_labelled"),
    (lambda: priors.best_bin_estimate([0.5], []), "at least 1"),
    (lambda: priors.best_bin_estimate([0.5], [np.inf]), "infinite"),
    (lambda: priors.best_bin_estimate(np.ones((2, 2)), [0.1]),
     "one-dimensional"),
    (lambda: priors.best_bin_estimate([0.5], [0.1], delta=1.), "delta"),
    (lambda: priors.best_bin_estimate([0.5], [0.1], gamma=-1.), "gamma"),
    (lambda: priors.fit_logistic_regression(np.ones((3, 2)), [0, 1]),
     "3 feature rows but 2"),
    (lambda: priors.fit_logistic_regression(np.ones((2, 2)), [0, 2]),
     r"\[0, 1\]"),
    (lambda: priors.fit_logistic_regression(np.ones((2, 2)), [0, 1], l2=0.),
     "l2"),
    (lambda: priors.cross_fitted_scores(np.ones((4, 2)), np.ones((4, 3))),
     "dimensions differ"),
    (lambda: priors.cross_fitted_scores(np.ones((4, 2)), np.ones((9, 2))),
     "num_folds"),
    (lambda: priors.cross_fitted_scores(np.ones((0, 2)), np.ones((9, 2))),
     "non-empty"),
])
def test_input_errors(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_module_needs_only_numpy():
  code = ("import sys; import jaxpu.priors; "
          "bad = {'tensorflow', 'sklearn', 'jax', 'scipy'} & set(sys.modules); "
          "assert not bad, bad")
  subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("call, match", [
    (lambda: priors.prior_from_labelled_fraction(0.5, np.inf, 10),
     r"num_labelled must be a finite number > 0, got inf"),
    (lambda: priors.prior_from_labelled_fraction(0.5, 10, float("inf")),
     r"num_unlabelled must be a finite number > 0, got inf"),
    (lambda: priors.prior_from_labelled_fraction(0.5, 10, np.nan),
     r"num_unlabelled must be a finite number > 0, got nan"),
    (lambda: priors.elkan_noto_prior([0.5], [0.2], num_unlabelled=np.inf),
     r"num_unlabelled must be a finite number > 0, got inf"),
    (lambda: priors.fit_logistic_regression(np.ones((2, 2)), [0, 1], l2=np.inf),
     r"l2 must be a finite number > 0, got inf"),
    (lambda: priors.cross_fitted_scores(np.ones((4, 2)), np.ones((4, 2)), num_folds=2,
                                        l2=float("inf")),
     r"l2 must be a finite number > 0, got inf"),
    (lambda: priors.fit_logistic_regression(np.ones((2, 2)), [0, 1], num_iterations=0),
     r"num_iterations must be an integer >= 1, got 0"),
    (lambda: priors.fit_logistic_regression(np.ones((2, 2)), [0, 1], num_iterations=-3),
     r"num_iterations must be an integer >= 1, got -3"),
])
def test_non_finite_counts_l2_and_no_iterations_are_refused(call, match):
  """Infinite counts gave π = 0 or 1, l2 = inf NaN weights, num_iterations ≤ 0 zero weights:
  all silently."""
  with pytest.raises(ValueError, match=match):
    call()
