"""The pure-math layer is usable from plain JAX code, without TensorFlow."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_losses_and_metrics_do_not_import_tensorflow():
  code = ("import sys\n"
          "import jaxpu.losses, jaxpu.metrics\n"
          "assert callable(jaxpu.losses.sigmoid_negative)\n"
          "assert callable(jaxpu.metrics.confusion_matrix)\n"
          "leaked = sorted(m for m in sys.modules if m.split('.')[0] in "
          "('tensorflow', 'tensorflow_datasets', 'flax', 'optax', 'matplotlib'))\n"
          "print(leaked)\n"
          "assert 'tensorflow' not in sys.modules, leaked\n"
          "assert not leaked, leaked\n")
  # A fresh interpreter: pytest's own process may already hold TensorFlow.
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 0, result.stdout + result.stderr
  assert result.stdout.strip() == "[]"
