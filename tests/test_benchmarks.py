"""Smoke tests of benchmarks/: every benchmark runs a couple of tiny steps (no timing asserts).

Plus the facts the comparisons rest on: the PyTorch models are jaxpu's models
(same parameter count, same outputs for the same weights) and the timing
statistics pick quiet windows.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from benchmarks import common
from benchmarks import input_pipeline
from benchmarks import losses as losses_bench
from benchmarks import steps
from benchmarks import train_step
from jaxpu import losses
from jaxpu import models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_timing_uses_quiet_windows_and_flags_noise():
  quiet = common.Timing([(1.0, 0.0, 1.0), (3.0, 0.9, 1.0), (2.0, 0.05, 1.0), (1.5, 0.1, 1.0)],
                        quiet_share=0.15)
  assert quiet.quiet == [1.0, 2.0, 1.5] and not quiet.noisy
  assert quiet.median == 1.5 and quiet.best == 1.0
  assert quiet.summary(10.0)["rate"] == pytest.approx(10.0 / 1.5)
  loaded = common.Timing([(1.0, 0.5, 2.0), (3.0, 0.9, 2.0), (2.0, 0.05, 2.0)], quiet_share=0.15)
  assert loaded.noisy and loaded.median == 2.0  # all windows, flagged
  assert loaded.summary()["rate_per_cpu_second"] == 0.5


def test_interleave_runs_every_candidate_round_robin():
  calls = []
  timings = common.interleave({"a": lambda n: calls.append(("a", n)),
                               "b": lambda n: calls.append(("b", n))},
                              rounds=2, iterations={"a": 3, "b": 1}, warmup=1)
  assert calls == [("a", 1), ("b", 1), ("a", 3), ("b", 1), ("a", 3), ("b", 1)]
  assert set(timings) == {"a", "b"} and len(timings["a"].windows) == 2


def test_hardware_references_are_positive():
  peak = common.peak_matmul_flops(n=128, rounds=1)
  bandwidth = common.memory_bandwidth(megabytes=4, rounds=1)
  assert peak["rate"] > 0 and bandwidth["rate"] > 0
  assert bandwidth["rate"] == max(bandwidth["copy"]["rate"], bandwidth["read"]["rate"])


@pytest.mark.heavy(6)
def test_train_step_cli_json_and_devices(tmp_path):
  out = tmp_path / "train_step.json"
  cmd = [sys.executable, "-m", "benchmarks.train_step", "--models=mlp", "--batch_sizes=8",
         "--rounds=1", "--window_seconds=0.01", "--warmup=1", "--torch=eager",
         "--host_devices=2", "--devices=1,2", "--peak_size=256", f"--output={out}"]
  # With the tests' XLA flags (`--host_devices` replaces their device count) and
  # compilation cache (tests/conftest.py); run alone, the benchmark compiles anew.
  result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Device: cpu" in result.stdout
  report = json.loads(out.read_text())
  rows = report["rows"]
  assert [r["devices"] for r in rows] == [1, 2]
  assert report["device"]["local_device_count"] == 2
  for row in rows:
    assert row["jaxpu_examples_per_s"] > 0 and row["flops_per_step"] > 0
    assert row["params"] == 67  # 2·6+6 + 6·6+6 + 6+1
  if common.import_torch() is not None:
    assert rows[0]["torch_eager_examples_per_s"] > 0
    assert "torch_eager_examples_per_s" not in rows[1]  # PyTorch only on one device


@pytest.mark.parametrize("name,num_classes,options,shape,dense", [
    ("mlp", 1, {}, (2,), False),
    ("cifar_cnn", 11, {}, (32, 32, 3), False),
    ("fcn_small", 21, {}, (24, 24, 3), True),
    ("fcn_alexnet", 21, {"width": 0.25}, (37, 53, 3), True),
])
def test_torch_models_match_jaxpu_parameter_counts_and_shapes(name, num_classes, options, shape,
                                                              dense):
  torch = pytest.importorskip("torch")
  from benchmarks import torch_models  # pylint: disable=g-import-not-at-top
  x = jax.ShapeDtypeStruct((1,) + shape, np.float32)
  params = jax.eval_shape(models.get(name, num_classes, **options).init, jax.random.key(0),
                          x)["params"]
  torch_model = torch_models.BUILDERS[name](num_classes, **options)
  assert torch_models.parameter_count(torch_model) == sum(p.size for p in jax.tree.leaves(params))
  tx = torch.zeros((1, shape[2], shape[0], shape[1])) if len(shape) == 3 else torch.zeros(1, 2)
  expected = (1, num_classes) + ((shape[0], shape[1]) if dense else ())
  with torch.no_grad():
    assert tuple(torch_model(tx).shape) == expected


def test_torch_cifar_cnn_computes_jaxpus_function():
  """Same weights → same logits (eval mode), so the comparison times the same model."""
  torch = pytest.importorskip("torch")
  from benchmarks import torch_models  # pylint: disable=g-import-not-at-top
  x = np.random.RandomState(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
  model = models.get("cifar_cnn", 11)
  params = jax.jit(model.init)(jax.random.key(0), x)["params"]
  expected = np.asarray(jax.jit(model.apply)({"params": params}, x))
  net = torch_models.cifar_cnn(11).eval()
  convs = [m for m in net if isinstance(m, torch.nn.Conv2d)]
  names = [f"conv{s}_{j}" for s in (1, 2, 3) for j in (1, 2)]
  with torch.no_grad():
    for conv, name in zip(convs, names):
      p = params["encoder"][name]
      conv.weight.copy_(torch.from_numpy(np.asarray(p["kernel"]).transpose(3, 2, 0, 1).copy()))
      conv.bias.copy_(torch.from_numpy(np.array(p["bias"])))
    fc, head = [m for m in net if isinstance(m, torch.nn.Linear)]
    # JAX flattens (h, w, c), PyTorch (c, h, w).
    kernel = np.asarray(params["encoder"]["fc"]["kernel"]).reshape(4, 4, 128, 512)
    fc.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).reshape(512, -1).copy()))
    fc.bias.copy_(torch.from_numpy(np.array(params["encoder"]["fc"]["bias"])))
    head.weight.copy_(torch.from_numpy(np.asarray(params["head"]["kernel"]).T.copy()))
    head.bias.copy_(torch.from_numpy(np.array(params["head"]["bias"])))
    got = net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_losses_benchmark_covers_every_loss():
  binary, multiclass = losses_bench.loss_names()
  every = set(losses.BINARY_LOSSES + losses.MULTICLASS_LOSSES + losses.RISK_ESTIMATORS
              + getattr(losses, "MULTICLASS_RISK_ESTIMATORS", ()))
  assert set(binary + multiclass) == every
  inputs = {kind: losses_bench.make_inputs(2, 8, 5, kind == "multiclass")
            for kind in ("binary", "multiclass")}
  for name in every:  # every loss traces with the benchmark's arguments (no compile)
    args = inputs["binary" if name in binary else "multiclass"]
    losses_bench.make_step(name, 5).trace(args["logits"], args["labels"], args["where"])
  rows = losses_bench.benchmark(["sigmoid_negative", "softmax_cross_entropy"], inputs, 5,
                                bandwidth=1e10, rounds=1, window_seconds=0.001)
  assert [r["loss"] for r in rows] == ["sigmoid_negative", "softmax_cross_entropy"]
  for row in rows:
    assert row["elements_per_s"] > 0 and row["fraction_of_bandwidth"] > 0
  # Least traffic of a multiclass loss: logits read + gradient written + labels + mask.
  mc = inputs["multiclass"]
  assert losses_bench.minimal_bytes(mc) == 2 * 2 * 8 * 8 * 5 * 4 + 2 * 8 * 8 * 4 + 2 * 8 * 8


def test_ynn_fusion_flag_to_compiler_options():
  from jaxpu import train  # pylint: disable=g-import-not-at-top
  option = common.YNN_FUSION_OPTION
  assert common.compiler_options("train") == train.default_compiler_options()
  assert common.compiler_options("default") == {}
  assert common.compiler_options("none") == {option: ""}
  assert common.compiler_options("dot,reduce") == {
      option: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}
  with pytest.raises(ValueError, match="unknown fusion type"):
    common.compiler_options("dots")


def test_input_pipeline_rows():
  row = input_pipeline.benchmark("moons", input_pipeline.SPECS["moons"], batch_size=16,
                                 rounds=1, window_seconds=0.01, min_batches=2, train_step=True)
  assert row["pipeline_examples_per_s"] > 0 and row["train_step_examples_per_s"] > 0
  assert row["model"] == "mlp" and row["ratio"] > 0
  assert row["prepare_s"] > 0 and row["prepare_again_s"] > 0
  skipped = input_pipeline.benchmark("voc", input_pipeline.SPECS["voc"], batch_size=4,
                                     rounds=1, window_seconds=0.01, min_batches=2,
                                     train_step=False)
  assert "manual_dir" in skipped["skipped"]


def test_configure_xla_refuses_after_backend_start():
  jax.devices()  # the backend is up in this process
  with pytest.raises(RuntimeError, match="before JAX initialises"):
    common.configure_xla(host_devices=2)


def test_default_device_counts_and_int_flags():
  assert train_step.default_device_counts(1) == [1]
  assert train_step.default_device_counts(4) == [1, 2, 4]
  assert train_step.default_device_counts(6) == [1, 2, 4, 6]
  assert common.parse_ints(["8", "32"], "batch_sizes") == [8, 32]
  with pytest.raises(ValueError, match="--batch_sizes"):
    common.parse_ints(["0"], "batch_sizes")
  batch = steps.make_batch(train_step.CONFIGS["fcn_small"], 2, image_size=16)
  assert batch["image"].shape == (2, 16, 16, 3) and batch["label"].shape == (2, 16, 16)
