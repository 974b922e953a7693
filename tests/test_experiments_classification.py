"""The classification experiments (§5.1): Figs. 3-5 and Table 1, in-process at the smoke scale.

`experiments.moons.run` and `experiments.cifar_pu.run` are called with their
smoke configs (the command line is tested in test_cli.py; the smoke runs of
`experiments.reproduce`'s sections are shared, tests/smoke.py). The pieces they
are made of are checked against independent facts here: the marker sizes of
Figs. 3-4 against analytic derivatives, the 50%(R+N) subsample, and the
multiclass PU losses through `jaxpu.train.make_loss_fn`.
"""

import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from experiments import cifar_pu
from experiments import moons
from experiments.configs import cifar_pu as cifar_pu_config
from experiments.configs import moons as moons_config
from experiments import common as experiment
from jaxpu import fileio
from jaxpu import losses
from jaxpu import report
from jaxpu import train as train_lib
from jaxpu.thesis import figures
from jaxpu.thesis import paper
from jaxpu.thesis import rows as thesis_rows
from tests import smoke


def _run(module, config, workdir, capsys):
  cells = module.run(config, str(workdir))
  records = json.loads((workdir / "results.json").read_text())
  markdown = (workdir / "results.md").read_text()
  assert markdown in capsys.readouterr().out  # The table is printed at the end.
  assert len(cells) == len(records)
  return records, markdown


def _check_records(records, config_expected):
  for record in records:
    assert set(record) >= {"table", "row", "column", "mean", "std", "n", "values", "config"}
    assert record["n"] == len(record["values"]) >= 1
    assert np.isclose(record["mean"], np.mean(record["values"]))
    assert np.isclose(record["std"], (np.std(record["values"], ddof=1) if len(record["values"]) > 1 else 0.0))
    assert all(0. <= v <= 1. for v in record["values"])
    for key, value in config_expected.items():
      assert record["config"][key] == value, key


def _png_size(path):
  with Image.open(path) as image:
    assert image.format == "PNG"
    return image.size


@pytest.mark.heavy(4)
def test_moons_end_to_end(tmp_path, capsys):
  config = moons_config.get_config("smoke")
  config.repeats = 2
  # A copy of the moons section of the smoke reproduce run (tests/smoke.py, one repeat):
  # the second repeat trains here, the first is reused.
  section = smoke.section("moons")
  assert fileio.config_dict(section.config) == fileio.config_dict(
      moons_config.get_config("smoke"))
  workdir = tmp_path / "moons"
  smoke.copy_workdir(section.workdir, str(workdir))
  records, markdown = _run(moons, config, workdir, capsys)
  _check_records(records, {"scale": "smoke", "repeats": 2, "dataset": "moons"})
  stored = json.loads((workdir / "config.json").read_text())
  assert stored == fileio.config_dict(config)
  rows = [("true", "Logistic"), ("50% unlabelled", "Logistic"),
          ("50% unlabelled", "WeightedLogistic(1, 0.5)"), ("50% unlabelled", "Sigmoid")]
  cells = {(tuple(r["row"]), r["column"]): r for r in records}
  assert set(cells) == {(row, col) for row in rows for col in ("precision", "recall", "f1")}
  assert all(r["n"] == 2 for r in records)  # One value per repeat.
  for row in rows:  # F1 is the harmonic mean of precision and recall, per repeat.
    p, r, f = (np.array(cells[(row, c)]["values"]) for c in ("precision", "recall", "f1"))
    np.testing.assert_allclose(f, np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0),
                               atol=1e-6)
  # Even in 40 steps, the true labels give a usable classifier.
  assert cells[(("true", "Logistic"), "f1")]["mean"] > 0.6
  assert ("**Two moons (§5.1.1): positive class on a held-out test draw with true labels**"
          in markdown)
  assert "| labels | loss | precision | recall | f1 |" in markdown
  assert "| 50% unlabelled | Sigmoid | " in markdown
  for name in ("fig3_moons_loss.png", "fig4_moons_derivative.png"):
    width, height = _png_size(workdir / name)
    assert width > 3 * height  # Four panels side by side.
  for row in rows:  # One finished run (checkpoints, TensorBoard) per row and seed.
    for seed in (0, 1):
      run = workdir / "runs" / experiment.slug(*row, seed)
      assert (run / "done.json").exists() and (run / "checkpoints").is_dir()
      assert any(f.startswith("events.out.tfevents") for f in os.listdir(run))

  # Run again: every run is reused (same values); a changed setting is refused by name.
  again = moons.run(config, str(workdir))
  assert [c.values for c in again] == [r["values"] for r in records]
  changed = moons_config.get_config("smoke")
  changed.repeats, changed.learning_rate = 2, 0.01
  with pytest.raises(ValueError, match=r"learning_rate: 0\.03 \(in the workdir\) → 0\.01"):
    moons.run(changed, str(workdir))


def test_moons_rejects_bad_settings_before_any_work(tmp_path):
  config = moons_config.get_config("smoke")
  config.steps = -3
  with pytest.raises(ValueError, match=r"--config\.steps=-3: must be a positive integer"):
    moons.run(config, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()  # Nothing written, no run folder claimed.


def test_cifar_pu_end_to_end():
  # The cifar_pu section of the smoke reproduce run (tests/smoke.py): every row of Table 1
  # (a two-stage run, the nnPU prior, the estimated prior) and Fig. 5 at two fractions
  # (whose runs at 0.5 are Table 1's and are reused, not retrained).
  section = smoke.section("cifar_pu")
  config = section.config
  assert config.fig5 and 0.5 in config.fractions and not config.rows
  workdir = pathlib.Path(section.workdir)
  records = json.loads((workdir / "results.json").read_text())
  markdown = (workdir / "results.md").read_text()
  assert markdown in section.stdout  # The table is printed at the end.
  assert len(section.returned) == len(records)
  _check_records(records, {"scale": "smoke", "dataset": "synthetic", "fig5": True})
  expected = [(row.annotation(0.5), row.name) for row in thesis_rows.table1_rows(2)]
  table1 = {tuple(r["row"]) for r in records if r["table"] == "table1"}
  assert table1 == set(expected)
  assert {("50%R+U", "ClassWeighted"), ("50%R+U", "SoftmaxLoss"), ("50%R+U", "BootstrapHard"),
          ("50%R+U", "nnPU")} <= table1
  assert {r["column"] for r in records if r["table"] in ("table1", "fig5")} == {
      "acc.", "mean prec.", "mean rec.", "mean F1"}
  fig5 = {(tuple(r["row"]), r["column"]): r["values"] for r in records if r["table"] == "fig5"}
  assert {row for row, _ in fig5} == {(f"{f:g}", loss) for f in config.fractions
                                      for loss in ("ClassWeighted", "SoftmaxLoss")}
  for loss in ("ClassWeighted", "SoftmaxLoss"):  # The same runs as Table 1's.
    table_value = [r["values"] for r in records
                   if r["table"] == "table1" and r["row"] == ["50%R+U", loss]
                   and r["column"] == "mean F1"]
    assert fig5[(("0.5", loss), "mean F1")] == table_value[0]
  # Table 1's layout: the paper's header and row order, the extension after.
  lines = markdown.splitlines()
  header = lines.index("| annotation | loss | acc. | mean prec. | mean rec. | mean F1 |")
  body = [line.split(" | ")[:2] for line in lines[header + 2:header + 2 + len(expected)]]
  assert body == [[f"| {annotation}", name] for annotation, name in expected]
  assert "paper:" not in markdown  # The embedded data has no published numbers.
  assert _png_size(workdir / "fig5_f1_vs_labelled_fraction.png")[0] > 300
  # BootstrapHard trained its two stages; nnPU got the prior of the split.
  runs = workdir / "runs"
  spec = json.loads((runs / experiment.slug("50%R+U", "BootstrapHard", 0) / "spec.json")
                    .read_text())
  assert spec["spec"]["first_loss"] == "weighted_softmax_cross_entropy"
  assert spec["spec"]["loss"] == "softmax_bootstrap_hard"
  assert 0 < spec["spec"]["first_loss_steps"] < spec["spec"]["steps"]
  assert spec["data"]["dataset"] == "synthetic"
  assert spec["data"]["corruption"] == "pu_labels:0.5"
  nnpu = json.loads((runs / experiment.slug("50%R+U", "nnPU", 0) / "spec.json").read_text())
  prior = dict(nnpu["spec"]["loss_kwargs"])["prior"]
  assert 0.1 < prior < 0.6  # About 1/3: half of the relevant half labelled.


def test_cifar_pu_validates_rows_and_fractions(tmp_path):
  config = cifar_pu_config.get_config("smoke")
  config.rows = ("SoftmaxLoss", "Nope")
  with pytest.raises(ValueError, match=r"--config\.rows=.*unknown \['Nope'\]"):
    cifar_pu.run(config, str(tmp_path / "a"))
  config = cifar_pu_config.get_config("smoke")
  config.fig5, config.fractions = True, (0.5, 1.5)
  with pytest.raises(ValueError, match=r"--config\.fractions=.*\(0, 1\)"):
    cifar_pu.run(config, str(tmp_path / "b"))
  config = cifar_pu_config.get_config("smoke")
  config.generalized = (1.0, 0.5, -1.0)
  with pytest.raises(ValueError, match=r"--config\.generalized"):
    cifar_pu.run(config, str(tmp_path / "c"))


def test_loss_marker_sizes_match_analytic_derivatives():
  f = np.array([-3., -0.5, 0., 1., 4., -2.], np.float32)
  y = np.array([0, 0, 0, 1, 1, 1])
  s = 1. / (1. + np.exp(-f.astype(np.float64)))
  loss, derivative = figures.pointwise_loss_and_derivative(losses.sigmoid_negative, f, y)
  np.testing.assert_allclose(loss, np.where(y == 1, -np.log(s), s), rtol=1e-5)
  # d σ(f)/df = σ(1 - σ) for label 0; |d -log σ(f)/df| = 1 - σ for label 1.
  np.testing.assert_allclose(derivative, np.where(y == 1, 1 - s, s * (1 - s)), rtol=1e-5)
  sizes = figures.per_class_normalised(derivative, y)
  for label in (0, 1):
    members = y == label
    np.testing.assert_allclose(sizes[members], derivative[members] / derivative[members].max())
  np.testing.assert_array_equal(figures.per_class_normalised([0., 0., 2.], [0, 0, 1]), [0, 0, 1])


def test_subsample_keeps_about_half_of_every_class_with_clean_labels():
  from jaxpu.data import pipeline  # pylint: disable=g-import-not-at-top
  mesh = train_lib.make_mesh(jax.devices()[:1])

  def labels(data):
    batches = [b["label"] for _, b in zip(range(data.steps_per_epoch), data.train_iter(0))]
    return np.concatenate(batches)

  full = pipeline.make_classification_data("moons", batch_size=8, mesh=mesh, as_numpy=True)
  kept = [pipeline.make_classification_data("moons", batch_size=8, subsample=0.5,
                                            noise_seed=seed, mesh=mesh, as_numpy=True)
          for seed in (0, 0, 1)]
  assert full.num_train_examples == 800
  for data in kept:
    counts = np.bincount(labels(data), minlength=2)
    assert np.all(np.abs(counts - 200) < 45), counts  # Binomial(400, 0.5): sd 10.
    assert data.num_eval_examples == full.num_eval_examples  # Test split untouched.
  # Same seed: the same subset; another seed: another subset.
  assert kept[0].num_train_examples == kept[1].num_train_examples
  np.testing.assert_array_equal(labels(kept[0]), labels(kept[1]))
  assert kept[2].num_train_examples != kept[0].num_train_examples or not np.array_equal(
      labels(kept[2]), labels(kept[0]))
  with pytest.raises(ValueError, match="subsample.*1.5"):
    pipeline.make_classification_data("moons", batch_size=8, subsample=1.5, mesh=mesh)


def test_multiclass_pu_losses_train_through_make_loss_fn():
  logits = jnp.asarray(np.random.default_rng(0).normal(size=(8, 4)), jnp.float32)
  labels = jnp.array([0, 1, 0, 2, 3, 0, 255, 1])
  batch = {"label": labels}
  valid = labels != 255
  for name, kwargs in (("softmax_nnpu_risk", dict(prior=0.3)),
                       ("generalized_softmax_negative", dict(alpha=2., beta=0.5, gamma=1.5))):
    spec = train_lib.make_loss_fn(name, 4, **kwargs)
    value, count = spec(logits, batch)
    direct = losses.get(name)(logits, labels, where=valid, **kwargs)
    expected = direct if direct.ndim == 0 else losses.masked_mean(direct, valid)
    np.testing.assert_allclose(value, expected, rtol=1e-6, err_msg=name)
    assert int(count) == 7
    grad = jax.grad(lambda x, spec=spec: spec(x, batch)[0])(logits)
    assert np.all(np.isfinite(grad)) and np.all(np.asarray(grad)[6] == 0.), name


def test_table1_layout_from_the_paper_numbers():
  cells = [report.Cell("table1", ("50%R+U", "nnPU"), "mean F1", [0.5, 0.7]),
           report.Cell("table1", ("R+N", "CrossEntropy"), "acc.", [0.9])]
  md = report.format_table(paper.paper_spec("table1"), cells, paper.paper_cells("table1"))
  lines = md.splitlines()
  assert lines[2] == "| annotation | loss | acc. | mean prec. | mean rec. | mean F1 |"
  assert lines[4] == ("| R+N | CrossEntropy | 0.90 (paper: 0.87) | – (paper: 0.88) "
                      "| – (paper: 0.82) | – (paper: 0.85) |")
  assert lines[5] == "| 50%R+U | nnPU | – | – | – | 0.60 ± 0.14 |"  # std with ddof 1
