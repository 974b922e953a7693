r"""Beyond the thesis (§6, open question 3): estimating the class prior π of PU data.

The uPU / nnPU risks need π, the positive share of the unlabelled data; the
nnPU rows of Table 1 and of the unsegmented-rate sweep take it from the known
labelled fraction or from the complete labels (an oracle). This experiment
measures how well π can be estimated from the PU data alone, where the true
value is known:

- two moons (`jaxpu.data.moons`, 400 training points per class) and the
  handwritten digits (`jaxpu.data.digits`, 1347 training images, digits 0-4
  positive), each with a fraction c (`labelled_fractions`) of the positives
  labelled (`pu_labels:c`, a new split per repeat, seeds seed + r);
- scores: a labelled-vs-unlabelled logistic regression (the
  "non-traditional classifier" of Elkan & Noto 2008), cross-fitted over
  `num_folds` stratified folds of the training split so that every example
  is scored by a model that did not see it
  (`jaxpu.priors.cross_fitted_scores`, ridge λ = `l2`). Its features: for the
  moons, where a linear boundary is poor, all monomials of the standardised
  coordinates up to degree `moons_degree` (fixed nonlinear features; 9 at
  degree 3); for the digits, the grey levels of the `digits_image_size`²
  pixels (64 at 8×8) in [0, 1]. Cheap (NumPy Newton steps, no training run);
- estimators: BBE (Garg et al. 2021, `jaxpu.priors.best_bin_estimate`, δ, γ
  = `bbe_delta`, `bbe_gamma`) and Elkan & Noto's e1, e2, e3
  (`jaxpu.priors.elkan_noto_prior`, π from c with the split's counts);
- true π: the positive share of the unlabelled training examples, from the
  true labels (`jaxpu.priors.unlabelled_positive_share`).

Outputs: table `class_prior` (dataset, c; true π, each estimate and its
absolute error, mean ± std over the repeats) and `class_prior_estimates.png`
(estimated vs true π, one panel per estimator, every repeat a point).

References: C. Elkan and K. Noto, "Learning classifiers from only positive
and unlabeled data", KDD 2008; S. Garg, Y. Wu, A. Smola, S. Balakrishnan and
Z. C. Lipton, "Mixture proportion estimation and PU learning: a modern
approach", NeurIPS 2021; R. Kiryo, G. Niu, M. C. du Plessis and M. Sugiyama,
"Positive-unlabeled learning with non-negative risk estimator", NeurIPS 2017.

  python -m experiments.class_prior                     # cpu: seconds
  python -m experiments.class_prior --config.labelled_fractions=0.1,0.9

Settings: `experiments/configs/class_prior.py`.
"""

from __future__ import annotations

import itertools
import os

from absl import logging
import numpy as np

from experiments import common
from jaxpu import priors
from jaxpu import report
from jaxpu.data import pipeline

DATASETS = ("moons", "digits")
ESTIMATORS = ("BBE", "EN e1", "EN e2", "EN e3")
SELECTION = ("repeats", "datasets", "labelled_fractions")

TABLE = report.TableSpec(
    "class_prior", "Class-prior estimates on PU data with a known prior (π: positive share of "
    "the unlabelled training examples; abs. err.: |estimate - true π|)", ("dataset", "c"),
    ("true π",) + tuple(itertools.chain.from_iterable(
        (name, f"{name} abs. err.") for name in ESTIMATORS)))


def validate(config) -> tuple[tuple[str, ...], tuple[float, ...]]:
  """Checks every setting before any data is built; returns (datasets, fractions)."""
  common.check_common(config)
  datasets = common.names(config.datasets)
  unknown = sorted(set(datasets) - set(DATASETS))
  common.require(bool(datasets) and not unknown, "datasets", config.datasets,
                     f"choose some of {list(DATASETS)}")
  fractions = (tuple(config.labelled_fractions)
               if not isinstance(config.labelled_fractions, (int, float))
               else (config.labelled_fractions,))
  common.require(bool(fractions) and all(
      isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f < 1 for f in fractions),
      "labelled_fractions", config.labelled_fractions, "every fraction must be in (0, 1)")
  for field in ("num_folds", "moons_degree", "digits_image_size"):
    common.require_positive_int(config, field)
  common.require(config.num_folds >= 2, "num_folds", config.num_folds, "must be >= 2")
  common.require(isinstance(config.l2, (int, float)) and 0 < config.l2 < float("inf"),
                     "l2", config.l2, "must be a finite number > 0")
  common.require_fraction(config, "bbe_delta")
  common.require(isinstance(config.bbe_gamma, (int, float)) and 0 <= config.bbe_gamma
                     < float("inf"), "bbe_gamma", config.bbe_gamma,
                     "must be a finite number >= 0")
  return tuple(dict.fromkeys(datasets)), tuple(dict.fromkeys(fractions))


def polynomial_features(points: np.ndarray, degree: int) -> np.ndarray:
  """All monomials x^i y^j (1 <= i + j <= degree) of standardised 2-D points: [n, (d+1)(d+2)/2 - 1]."""
  x = np.asarray(points, np.float64)
  x = (x - x.mean(0)) / x.std(0)
  return np.stack([x[:, 0] ** i * x[:, 1] ** (total - i)
                   for total in range(1, degree + 1) for i in range(total + 1)], axis=1)


def pu_training_set(config, dataset: str, fraction: float, seed: int):
  """(features [n, d], PU labels [n], true labels [n]) of the whole training split."""
  kwargs = dict(batch_size=100, corruption=f"pu_labels:{fraction}", noise_seed=seed, seed=seed,
                with_true_label=True, eval_split="train", corrupt_eval=True, as_numpy=True,
                data_dir=config.data.data_dir)
  if dataset == "digits":
    kwargs["image_size"] = config.digits_image_size
  data = pipeline.make_classification_data(dataset, **kwargs)
  batches = list(data.eval_iter())  # every training example once, padded with void
  label = np.concatenate([b["label"] for b in batches])
  true = np.concatenate([b["true_label"] for b in batches])
  image = np.concatenate([b["image"] for b in batches])
  keep = label != 255
  label, true, image = label[keep], true[keep], image[keep]
  if dataset == "moons":
    features = polynomial_features(image, config.moons_degree)
  else:  # grey levels in [0, 1]: undo the standardisation of the first channel
    grey = image[..., 0] * data.std[0] + data.mean[0]
    features = grey.reshape(len(grey), -1)
  return features, label, true


def estimate(config, features, labels) -> dict[str, float]:
  """Each estimator's π from cross-fitted labelled-vs-unlabelled scores."""
  labelled, unlabelled = features[labels != 0], features[labels == 0]
  g_l, g_u = priors.cross_fitted_scores(labelled, unlabelled, config.num_folds, config.l2)
  out = {"BBE": priors.best_bin_estimate(g_l, g_u, config.bbe_delta, config.bbe_gamma)}
  for name in priors.ELKAN_NOTO_ESTIMATORS:
    out[f"EN {name}"] = priors.elkan_noto_prior(g_l, g_u, name)
  return out


def plot_estimates(path: str, points: dict[str, list[tuple[float, float, str]]]) -> str:
  """Estimated vs true π, one panel per estimator; points: name → [(true, estimate, label)]."""
  from matplotlib import figure as mpl_figure  # pylint: disable=g-import-not-at-top
  fig = mpl_figure.Figure(figsize=(3.6 * len(points), 3.6), layout="constrained")
  axes = np.atleast_1d(fig.subplots(1, len(points)))
  for ax, (name, entries) in zip(axes, points.items()):
    for label in dict.fromkeys(e[2] for e in entries):
      chosen = [e for e in entries if e[2] == label]
      ax.scatter([e[0] for e in chosen], [e[1] for e in chosen], s=18, label=label)
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="true π", ylabel="estimated π", title=name)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.savefig(path, dpi=110)
  return path


def run(config, workdir: str) -> list[report.Cell]:
  """Estimates π on every dataset, labelled fraction and repeat; writes the table and figure."""
  datasets, fractions = validate(config)
  resolved = common.claim_workdir(workdir, config, selection=SELECTION,
                                  experiment="class_prior")
  out = common.Outputs(workdir, resolved)
  seeds = common.repeat_seeds(config)
  points: dict[str, list] = {name: [] for name in ESTIMATORS}
  for dataset in datasets:
    for fraction in fractions:
      values: dict[str, list[float]] = {}
      for seed in seeds:
        features, labels, true = pu_training_set(config, dataset, fraction, seed)
        true_prior = priors.unlabelled_positive_share(labels, true)
        found = estimate(config, features, labels)
        logging.info("%s, c=%g, seed %d: true π %.4f, %s", dataset, fraction, seed, true_prior,
                     found)
        values.setdefault("true π", []).append(true_prior)
        for name, value in found.items():
          values.setdefault(name, []).append(value)
          values.setdefault(f"{name} abs. err.", []).append(abs(value - true_prior))
          points[name].append((true_prior, value, dataset))
      for column in TABLE.columns:
        out.add(TABLE.table, (dataset, f"{fraction:g}"), column, values[column])
  figure = plot_estimates(out.path("class_prior_estimates.png"), points)
  preamble = (
      "# Class-prior estimation (beyond the thesis: §6, open question 3)\n\n"
      f"Cross-fitted ({config.num_folds} folds) labelled-vs-unlabelled logistic regression "
      f"(λ = {config.l2:g}; moons: degree-{config.moons_degree} polynomial features, digits: "
      f"{config.digits_image_size}×{config.digits_image_size} grey levels) on the PU "
      "training split; BBE (Garg et al. 2021) and Elkan & Noto's (2008) e1-e3. Mean ± std "
      f"over {len(seeds)} repeat(s) (seeds {seeds}), each a new P/U split.\n")
  markdown = out.write([TABLE], preamble=preamble, epilogue=f"Figure: `{os.path.basename(figure)}`.")
  print(markdown)
  return out.cells


if __name__ == "__main__":
  from experiments import cli  # pylint: disable=g-import-not-at-top
  cli.main("class_prior", run)
