"""Class-prior estimation (§6, open question 3): the class_prior experiment, the true π,
held-out PU labels (`corrupt_eval`), and nnPU with a true or estimated prior in the
unsegmented-rate sweep (binary_segmentation) and in Table 1 (cifar_pu)."""

import json
import os
import pathlib
import shutil

import numpy as np
import pytest

from experiments import binary_segmentation
from experiments import cifar_pu
from experiments import class_prior
from experiments.configs import binary_segmentation as binary_config
from experiments.configs import cifar_pu as cifar_pu_config
from experiments.configs import class_prior as class_prior_config
from experiments import common as experiment
from jaxpu import fileio
from jaxpu import priors
from jaxpu.data import pipeline
from jaxpu.thesis import rows as thesis_rows
from tests import smoke


def _records(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)


def test_true_prior_of_a_hand_built_label_map():
  # Observed (PU) and complete labels of a 3×4 map; 255 is void.
  observed = np.array([[1, 0, 0, 0],
                       [0, 0, 255, 1],
                       [0, 0, 0, 0]])
  true = np.array([[1, 1, 0, 0],
                   [1, 0, 255, 1],
                   [0, 255, 1, 0]])
  # Unlabelled, non-void: 8 pixels ((0,1),(0,2),(0,3),(1,0),(1,1),(2,0),(2,2),(2,3));
  # of them foreground in the complete labels: (0,1), (1,0), (2,2) → 3/8.
  assert priors.unlabelled_positive_share(observed, true) == pytest.approx(3 / 8)
  # Classification: any relevant class (≠ 0) is positive.
  assert priors.unlabelled_positive_share([2, 0, 0, 0], [2, 3, 0, 0]) == pytest.approx(1 / 3)
  with pytest.raises(ValueError, match="no unlabelled"):
    priors.unlabelled_positive_share([1, 1], [1, 1])


def test_estimates_from_logits_of_separable_scores():
  # 2000 labelled positives, 6000 unlabelled of which 1800 positive (π = 0.3); positives
  # score in [2, 4], negatives in [-4, -2] (a pure top bin): BBE recovers π within 0.03,
  # Elkan & Noto's e1 (c = mean σ(logit) of the positives) only roughly (σ is not g).
  rng = np.random.default_rng(0)
  positives = rng.uniform(2, 4, 2000)
  unlabelled = np.concatenate([rng.uniform(2, 4, 1800), rng.uniform(-4, -2, 4200)])
  found = priors.estimates_from_logits(positives, unlabelled)
  assert found["BBE"] == pytest.approx(0.3, abs=0.03)
  assert 0 <= found["EN e1"] <= 1


def test_corrupt_eval_applies_the_pu_labels_to_the_test_split():
  data = pipeline.make_classification_data(
      "moons", batch_size=100, corruption="pu_labels:0.5", noise_seed=3, with_true_label=True,
      corrupt_eval=True, as_numpy=True)
  batches = list(data.eval_iter())
  label = np.concatenate([b["label"] for b in batches])
  true = np.concatenate([b["true_label"] for b in batches])
  keep = label != 255
  label, true = label[keep], true[keep]
  assert np.all(label[true == 0] == 0)  # negatives stay unlabelled
  share = np.mean(label[true == 1] == 1)  # about half of the 400 positives labelled
  assert 0.4 < share < 0.6
  plain = pipeline.make_classification_data("moons", batch_size=100, with_true_label=True,
                                            as_numpy=True)
  assert all(np.array_equal(b["label"], b["true_label"]) for b in plain.eval_iter())


def test_polynomial_features():
  points = np.array([[0., 1.], [2., 3.], [4., 8.]])
  features = class_prior.polynomial_features(points, 3)
  assert features.shape == (3, 9)
  x = (points - points.mean(0)) / points.std(0)
  np.testing.assert_allclose(features[:, 0], x[:, 1])             # y
  np.testing.assert_allclose(features[:, 1], x[:, 0])             # x
  np.testing.assert_allclose(features[:, 7], x[:, 0] ** 2 * x[:, 1])  # x² y


def test_class_prior_smoke_estimates_the_moons_prior(tmp_path):
  section = smoke.section("class_prior")  # the smoke config, run once per test run
  assert fileio.config_dict(section.config) == fileio.config_dict(
      class_prior_config.get_config("smoke"))
  workdir = section.workdir
  assert "Class-prior estimates" in section.stdout
  records = {(tuple(r["row"]), r["column"]): r["values"] for r in _records(workdir)}
  assert {row for row, _ in records} == {("moons", "0.5"), ("digits", "0.5")}
  # Moons, c = 0.5, 800 points: about a third of the unlabelled are positive
  # (n_L (1 - c) / (c n_U) with n_L ≈ 200, n_U ≈ 600), and BBE on the cross-fitted
  # cubic-feature scores is within 0.06 of the true π.
  true = records[(("moons", "0.5"), "true π")][0]
  assert true == pytest.approx(1 / 3, abs=0.05)
  assert abs(records[(("moons", "0.5"), "BBE")][0] - true) < 0.06
  assert records[(("moons", "0.5"), "BBE abs. err.")][0] == pytest.approx(
      abs(records[(("moons", "0.5"), "BBE")][0] - true))
  assert os.path.exists(os.path.join(workdir, "class_prior_estimates.png"))
  bad = class_prior_config.get_config("smoke")
  bad.datasets = ("moons", "cifar")
  with pytest.raises(ValueError, match=r"--config\.datasets="):
    class_prior.run(bad, str(tmp_path / "bad"))
  assert not (tmp_path / "bad").exists()


def test_nnpu_training_rounds_and_bounds_its_prior():
  logistic = ("surrogate", "logistic")
  assert thesis_rows.nnpu_unsegmented(0.5, 0.123456).loss_kwargs == (("prior", 0.1235),
                                                                      logistic)
  assert thesis_rows.nnpu_unsegmented(0.5, 1.0).loss_kwargs == (("prior", 0.9999), logistic)
  assert thesis_rows.nnpu_unsegmented(0.5, 0.0).loss_kwargs == (("prior", 0.0001), logistic)
  training = thesis_rows.nnpu_unsegmented(0.7, 0.2)
  assert training.loss == "nnpu_risk" and training.corruption == "unsegment_objects:0.7"


def test_sweep_trains_nnpu_with_the_true_and_the_estimated_prior(tmp_path):
  # The binary_segmentation section of the smoke reproduce run (tests/smoke.py): the sweep
  # over its rates with every sweep loss, nnPU with the true and the estimated π included.
  section = smoke.section("binary_segmentation")
  rates = tuple(section.config.rates)
  assert section.config.sweep and 0.5 in rates
  assert set(thesis_rows.SWEEP_NNPU) <= set(section.config.sweep_losses)
  records = _records(section.workdir)
  sweep = {tuple(r["row"]) for r in records if r["table"] == "sweep"}
  for rate in rates:
    label = thesis_rows.rate_label(rate)
    assert {(label, "nnPU (true π)"), (label, "nnPU (estimated π)")} <= sweep
  priors_by_rate = {}
  for r in records:
    if r["table"] == "prior":
      priors_by_rate.setdefault(r["row"][0], {})[r["column"]] = r["values"][0]
  assert set(priors_by_rate) == {thesis_rows.rate_label(rate) for rate in rates}
  folders = os.listdir(os.path.join(section.workdir, "runs"))
  for rate in rates:
    prior = priors_by_rate[thesis_rows.rate_label(rate)]
    assert set(prior) == set(binary_segmentation.PRIOR_SPEC.columns)
    assert 0 < prior["true π"] < 1 and 0 <= prior["BBE"] <= 1
    assert prior["BBE abs. err."] == pytest.approx(abs(prior["BBE"] - prior["true π"]))
    # The nnPU runs trained with those priors (rounded), next to the LogisticLoss run
    # that scored the held-out pixels.
    for value in (prior["true π"], prior["BBE"]):
      key = thesis_rows.nnpu_unsegmented(rate, value).key
      assert f"pretrain-all-{key}-seed0" in folders
    logistic = thesis_rows.unsegmented(rate, "LogisticLoss", 0.5).key
    assert f"pretrain-all-{logistic}-seed0" in folders
  assert "pretrain-all-binary-unsegment_objects0.5-logistic-seed0" in folders
  # Resuming (a copy; the sweep at 50 % with the two nnPU rows) reads the stored priors
  # and retrains nothing.
  workdir = smoke.copy_workdir(section.workdir, str(tmp_path / "binary"))
  config = binary_config.get_config("smoke")
  config.sweep, config.rates, config.examples = True, (0.5,), 1
  config.sweep_losses = thesis_rows.SWEEP_NNPU
  before = sorted(folders)
  cells = binary_segmentation.run(config, workdir)
  assert sorted(os.listdir(os.path.join(workdir, "runs"))) == before
  assert {c.row for c in cells if c.table == "sweep"} == {
      ("50%Unseg.", "nnPU (true π)"), ("50%Unseg.", "nnPU (estimated π)")}
  bad = binary_config.get_config("smoke")
  bad.sweep_losses = ("nnPU",)
  with pytest.raises(ValueError, match=r"--config\.sweep_losses="):
    binary_segmentation.validate(bad)


def test_cifar_pu_nnpu_with_the_estimated_prior():
  # The cifar_pu section of the smoke reproduce run (every Table 1 row; tests/smoke.py).
  section = smoke.section("cifar_pu")
  workdir = pathlib.Path(section.workdir)
  records = _records(workdir)
  assert ("50%R+U", "nnPU (estimated π)") in {tuple(r["row"]) for r in records
                                              if r["table"] == "table1"}
  prior = {r["column"]: r["values"][0] for r in records if r["table"] == "prior"}
  assert set(prior) == set(cifar_pu.PRIOR_TABLE.columns)
  # Half of the relevant half labelled: about a third of the unlabelled are relevant.
  assert 0.1 < prior["true π"] < 0.6 and 0.1 < prior["nnPU π"] < 0.6
  spec = json.loads((workdir / "runs" / experiment.slug("50%R+U", "nnPU (estimated π)", 0)
                     / "spec.json").read_text())
  used = dict(spec["spec"]["loss_kwargs"])["prior"]
  assert used == pytest.approx(min(0.9999, max(0.0001, round(prior["BBE"], 4))))
  # The CrossEntropy row whose scores gave the estimate was trained (here as a row of its own).
  assert (workdir / "runs" / experiment.slug("50%R+U", "CrossEntropy", 0)).is_dir()


def test_cifar_pu_trains_the_rows_the_estimate_depends_on(tmp_path):
  """The nnPU (estimated π) row alone: the CrossEntropy row whose scores give the estimate
  is trained as a dependency (in a copy of the cifar_pu section without that row's run
  folder; the nnPU run is reused)."""
  section = smoke.section("cifar_pu")
  workdir = smoke.copy_workdir(section.workdir, str(tmp_path / "cifar_pu"))
  crossentropy = experiment.slug("50%R+U", "CrossEntropy", 0)
  shutil.rmtree(os.path.join(workdir, "runs", crossentropy))
  config = cifar_pu_config.get_config("smoke")
  config.rows = (thesis_rows.NNPU_ESTIMATED_KEY,)
  cells = cifar_pu.run(config, workdir)
  assert {c.row for c in cells if c.table == "table1"} == {("50%R+U", "nnPU (estimated π)")}
  assert os.path.isdir(os.path.join(workdir, "runs", crossentropy))
