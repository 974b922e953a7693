"""Fig. 2: the curve data (checked against analytic formulas) and the program."""

import numpy as np
from PIL import Image
import pytest

from experiments import loss_curves
from experiments.configs import loss_curves as loss_curves_config
from jaxpu.thesis import figures


def sigmoid(x):
  return 1. / (1. + np.exp(-x))


def test_loss_curves_match_analytic_derivatives():
  f = np.linspace(-5., 5., 41)
  s = sigmoid(f)
  curves = figures.loss_curves(f)
  expected = {  # name: (loss, d loss / d f)
      "logistic +": (-np.log(s), s - 1.),
      "logistic -": (-np.log(1. - s), s),
      "weighted logistic - (α=1, β=0.5)": (-0.5 * np.log(1. - s), 0.5 * s),
      "sigmoid loss -": (s, s * (1. - s)),
  }
  assert set(curves) == set(expected)
  for name, (value, derivative) in expected.items():
    np.testing.assert_allclose(curves[name][0], value, rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(curves[name][1], derivative, rtol=1e-5, atol=1e-6,
                               err_msg=name)
  # The plateau of Fig. 2: at f = 5 the sigmoid loss has (almost) stopped
  # growing, while the weighted logistic still grows at rate ~β = 0.5.
  assert curves["sigmoid loss -"][1][-1] < 0.01
  assert curves["weighted logistic - (α=1, β=0.5)"][1][-1] > 0.49


def test_run_writes_png(tmp_path, capsys):
  workdir = tmp_path / "fig2"
  config = loss_curves_config.get_config()
  assert loss_curves.run(config, str(workdir)) == []
  path = workdir / "loss_curves.png"
  assert str(path) in capsys.readouterr().out
  with Image.open(path) as image:
    assert image.format == "PNG"
    width, height = image.size
    assert width > 2 * height > 400  # Two panels side by side.
    image.verify()
  config.logit_min = 6.0
  with pytest.raises(ValueError, match=r"--config\.logit_min=6\.0: must be below logit_max"):
    loss_curves.run(config, str(workdir))


def test_a_nan_logit_bound_is_named(tmp_path):
  from experiments import loss_curves  # pylint: disable=g-import-not-at-top
  from experiments.configs import loss_curves as loss_curves_config  # pylint: disable=g-import-not-at-top
  config = loss_curves_config.get_config("smoke")
  config.logit_max = float("nan")
  with pytest.raises(ValueError, match=r"--config\.logit_max=nan: must be a finite number"):
    loss_curves.run(config, str(tmp_path / "w"))
