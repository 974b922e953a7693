"""Layering: the pure-math and training layers need no TensorFlow, the data layer no training.

Each check imports in a fresh interpreter: pytest's own process may already
hold every module.
"""

import os
import subprocess
import sys

import pytest

from tests import smoke

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _loaded_after_each(steps) -> list[list[str]]:
  """For each (imports, roots) step, the modules under `roots` (top-level names or dotted
  prefixes) loaded, the steps run in order in one fresh interpreter: after step k, the
  modules that steps 1..k loaded.

  A check that finds nothing after steps 1..k proves it for step k alone (importing
  more only loads more); one that finds something may blame an earlier step, so order
  the steps so that each one's roots are roots of those before it too, or allowed there.
  """
  code = ["import sys", "found = []"]
  for imports, roots in steps:
    code += [imports, f"roots = {roots!r}",
             "found.append(sorted(m for m in sys.modules if any(m == r or m.startswith(r + '.') "
             "for r in roots)))"]
  code.append("print(found)")
  result = subprocess.run([sys.executable, "-c", "\n".join(code)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stdout + result.stderr
  return eval(result.stdout.strip().splitlines()[-1])  # pylint: disable=eval-used


_NO_TENSORFLOW = ("tensorflow", "tensorflow_datasets", "matplotlib")
# One interpreter for the layers below the data pipeline: the lightest first.
_LAYERS = [
    ("jaxpu.losses, jaxpu.metrics",
     "import jaxpu.losses, jaxpu.metrics\n"
     "assert callable(jaxpu.losses.sigmoid_negative)\n"
     "assert callable(jaxpu.metrics.confusion_matrix)",
     ("tensorflow", "tensorflow_datasets", "flax", "optax", "matplotlib")),
    ("jaxpu.parallel (only JAX)", "import jaxpu.parallel",
     ("tensorflow", "flax", "optax", "orbax", "jaxpu.train")),
    ("jaxpu.models", "import jaxpu.models", _NO_TENSORFLOW),
    ("jaxpu.train", "import jaxpu.train", _NO_TENSORFLOW),
    ("jaxpu.checkpoint", "import jaxpu.checkpoint", _NO_TENSORFLOW),
]


def test_losses_metrics_parallel_models_train_checkpoint_import_without_tensorflow():
  """losses and metrics need no TensorFlow, Flax, Optax or matplotlib; jaxpu.parallel only
  JAX; models, train and checkpoint no TensorFlow (nor matplotlib)."""
  found = _loaded_after_each([(imports, roots) for _, imports, roots in _LAYERS])
  leaked = {name: modules for (name, _, _), modules in zip(_LAYERS, found) if modules}
  assert not leaked, leaked


@pytest.mark.heavy(7)
def test_data_pipeline_does_not_import_training():
  """Importing the pipeline, and delivering device batches (mesh, shardings), needs no
  training module: those come from `jaxpu.parallel` (in a fresh interpreter, tests/smoke.py)."""
  roots = ("jaxpu.train", "optax", "orbax")
  loaded = smoke.data_layer_process()["loaded"]
  leaked = [m for m in loaded if any(m == r or m.startswith(r + ".") for r in roots)]
  assert not leaked, leaked
  assert "jaxpu.data.pipeline" in loaded


def test_train_package_keeps_its_names():
  """`jaxpu.train` re-exports the names its modules and `jaxpu.parallel` define."""
  from jaxpu import parallel, train  # pylint: disable=g-import-not-at-top
  for name in ("make_mesh", "batch_sharding", "replicate", "shard_batch", "to_host", "AXIS"):
    assert getattr(train, name) is getattr(parallel, name)
  for name in ("make_optimizer", "make_schedule", "make_loss_fn", "LossSpec", "valid_mask",
               "TrainState", "create_train_state", "train_step", "make_train_step",
               "eval_step", "make_eval_step", "evaluate", "default_compiler_options",
               "CPU_COMPILER_OPTIONS", "fit", "TrainingPreempted"):
    assert hasattr(train, name), name


def test_the_library_never_imports_the_programs_or_their_harness():
  """`jaxpu/` is below `experiments/` (and its harness `experiments/common.py`)."""
  import ast  # pylint: disable=g-import-not-at-top
  import pathlib  # pylint: disable=g-import-not-at-top
  root = pathlib.Path(__file__).resolve().parent.parent / "jaxpu"
  offenders = []
  for path in root.rglob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
      names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
               [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
      offenders += [f"{path.relative_to(root.parent)}: {n}" for n in names
                    if n.split(".")[0] in ("experiments", "benchmarks")]
  assert not offenders
