r"""Train-step throughput of jaxpu's models, against the hardware and PyTorch.

For each model configuration, batch size and device count it times
`jaxpu.train.make_train_step` (jit + shard_map over a 1-D mesh, state
donated) on a fixed random batch and reports:
- steady-state examples/s after warm-up (median over quiet windows, see
  `benchmarks/common.py`) and the compile time (first call minus a step);
- the FLOPs of one step from XLA's cost analysis of the compiled per-device
  step, the achieved FLOP/s, and their ratio to a large matmul's FLOP/s
  measured in the same process (model-FLOP utilisation);
- on one device, the same model, loss and optimizer in PyTorch (eager NCHW,
  channels-last, `torch.compile`), timed interleaved with jaxpu, and the ratio
  jaxpu / PyTorch.

  python -m benchmarks.train_step --models=cifar_cnn --batch_sizes=128 \
      --output=/tmp/train_step.json
  python -m benchmarks.train_step --host_devices=2 --devices=1,2   # code path only on a CPU

Configurations (`--models`): mlp (§5.1.1, two moons features), cifar_cnn
(Table 6, 32×32), fcn_small (64×64), fcn_alexnet_cpu (width 0.25, 64×64),
fcn_alexnet (the reference: width 1, 500×500, the VOC maximum side).
All train with Adam (1e-4 like §5.1.2) and the softmax cross-entropy (mlp:
the logistic loss), in float32.
"""

from __future__ import annotations

from typing import Any, Optional

from absl import app
from absl import flags

from benchmarks import common
from benchmarks import steps
from benchmarks.steps import Config


CONFIGS = {
    "mlp": Config("mlp", (2,), 1, "logistic", (256, 4096)),
    "cifar_cnn": Config("cifar_cnn", (32, 32, 3), 11, "softmax_cross_entropy", (32, 128, 256)),
    "fcn_small": Config("fcn_small", (64, 64, 3), 21, "softmax_cross_entropy", (8, 32),
                        segmentation=True),
    "fcn_alexnet_cpu": Config("fcn_alexnet", (64, 64, 3), 21, "softmax_cross_entropy", (8, 32),
                              options=(("width", 0.25),), segmentation=True),
    "fcn_alexnet": Config("fcn_alexnet", (500, 500, 3), 21, "softmax_cross_entropy", (1,),
                          segmentation=True),
}

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines the command-line flags.

  Only called when the module runs as a program, so importing it next to
  other absl programs (e.g. in tests) defines no flags.
  """
  flags.DEFINE_list("models", ["mlp", "cifar_cnn", "fcn_small", "fcn_alexnet_cpu"],
      f"Configurations to run, from {sorted(CONFIGS)}.")
  flags.DEFINE_list("batch_sizes", None,
      "Global batch sizes for every model (default: per model).")
  flags.DEFINE_integer("image_size", None,
      "Override the image side of the image models.")
  flags.DEFINE_list("devices", None,
      "Device counts to run on (default: 1, 2, 4, ... up to all local).")
  flags.DEFINE_integer(
      "host_devices", None, "Fake this many CPU devices (they share the cores: checks the "
      "multi-device code path, not a speed-up).")
  flags.DEFINE_string("ynn_fusion", "train", common.YNN_FUSION_HELP)
  flags.DEFINE_integer("rounds", 5, "Timed windows per candidate (interleaved).")
  flags.DEFINE_float("window_seconds", 1.0, "Approximate length of one window.")
  flags.DEFINE_integer("warmup", 2, "Untimed steps before timing (after compiling).")
  flags.DEFINE_list("torch", ["eager", "channels_last", "compile"],
      "PyTorch modes to compare with on one device (empty: none).")
  flags.DEFINE_bool("flops", True,
      "Compile the per-device step once more for XLA's cost analysis.")
  flags.DEFINE_integer("peak_size", None,
      "Side of the peak-FLOP/s matmul (default: 2048 on CPU, 8192 otherwise).")
  flags.DEFINE_string("output", None, "Write the results as JSON to this path.")
  flags.DEFINE_bool("keep_freed_memory", True, common.KEEP_FREED_MEMORY_HELP)


def benchmark(config_name: str, batch_size: int, num_devices: int, *, peak: float,
              torch_modes, rounds: int, window_seconds: float, warmup: int,
              image_size: Optional[int] = None, flops: bool = True,
              compiler_options: Optional[dict] = None) -> dict:
  """One row: jaxpu (and PyTorch on one device) for one configuration."""
  torch = common.import_torch()
  config = CONFIGS[config_name]
  batch = steps.make_batch(config, batch_size, image_size)
  row: dict[str, Any] = {"config": config_name, "model": config.model,
                         "input": "x".join(map(str, batch["image"].shape[1:])),
                         "batch": batch_size, "devices": num_devices}
  jx = steps.jax_candidate(config, batch, num_devices, flops=flops,
                           compiler_options=compiler_options)
  row["params"] = jx["params"]
  candidates = {"jaxpu": jx["run"]}
  if torch is not None and torch_modes and num_devices == 1:
    tc = steps.torch_candidates(config, batch, torch_modes)
    row["torch_threads"] = torch.get_num_threads()
    row["torch_errors"] = tc["errors"]
    for mode, (run, first) in tc["runs"].items():
      candidates[f"torch_{mode}"] = run
      row[f"torch_{mode}_first_call_s"] = first
  elif torch is None and torch_modes:
    row["torch_errors"] = {"all": "PyTorch is not installed (pip install torch)"}

  for run in candidates.values():
    if warmup:
      run(warmup)
  iterations = {k: common.iterations_for(run, window_seconds) for k, run in candidates.items()}
  timings = common.interleave(candidates, rounds=rounds, iterations=iterations, warmup=0)
  for name, timing in timings.items():
    summary = timing.summary(batch_size)
    row[f"{name}_examples_per_s"] = summary["rate"]
    row[f"{name}_examples_per_s_best"] = summary["rate_best"]
    row[f"{name}_noisy"] = summary["noisy"]
    row[f"{name}_examples_per_cpu_s"] = summary["rate_per_cpu_second"]
  row["others_cpu_share"] = timings["jaxpu"].load
  step_s = timings["jaxpu"].median
  row["compile_s"] = max(0.0, jx["first_call_s"] - step_s)
  row["flops_per_step"] = jx["flops_per_step"]
  row["flops_per_s"] = jx["flops_per_step"] / step_s
  row["gflops_per_s"] = row["flops_per_s"] / 1e9
  row["peak_flops_per_s"] = peak
  row["mfu"] = row["flops_per_s"] / peak
  eager = [row.get(f"torch_{m}_examples_per_s") for m in ("eager", "channels_last")]
  eager = [v for v in eager if v]
  if eager:
    row["torch_best_eager_examples_per_s"] = max(eager)
    row["jaxpu_over_torch_eager"] = row["jaxpu_examples_per_s"] / max(eager)
    eager_cpu = max(row[f"torch_{m}_examples_per_cpu_s"] for m in ("eager", "channels_last")
                    if f"torch_{m}_examples_per_cpu_s" in row)
    row["jaxpu_over_torch_eager_cpu"] = row["jaxpu_examples_per_cpu_s"] / eager_cpu
  if row.get("torch_compile_examples_per_s"):
    row["jaxpu_over_torch_compile"] = (row["jaxpu_examples_per_s"]
                                       / row["torch_compile_examples_per_s"])
  return row


def default_device_counts(n: int) -> list[int]:
  counts, k = [], 1
  while k < n:
    counts.append(k)
    k *= 2
  return counts + [n]


COLUMNS = ("config", "input", "batch", "devices", "jaxpu_examples_per_s", "compile_s",
           "gflops_per_s", "mfu", "torch_eager_examples_per_s",
           "torch_channels_last_examples_per_s", "torch_compile_examples_per_s",
           "jaxpu_over_torch_eager", "jaxpu_over_torch_compile",
           "jaxpu_over_torch_eager_cpu", "others_cpu_share")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  kept = common.keep_freed_memory(FLAGS.keep_freed_memory)
  common.configure_xla(FLAGS.host_devices)
  import jax  # pylint: disable=g-import-not-at-top
  try:
    options = common.compiler_options(FLAGS.ynn_fusion)
  except ValueError as e:
    raise app.UsageError(str(e)) from None

  unknown = sorted(set(FLAGS.models) - set(CONFIGS))
  if unknown:
    raise app.UsageError(f"Unknown --models {unknown}; choose from {sorted(CONFIGS)}.")
  local = jax.local_device_count()
  devices = (common.parse_ints(FLAGS.devices, "devices") if FLAGS.devices
             else default_device_counts(local))
  if max(devices) > local:
    raise app.UsageError(f"--devices={FLAGS.devices} exceeds the {local} local devices "
                         "(on a CPU, add --host_devices=N to fake N devices).")
  batch_sizes = (common.parse_ints(FLAGS.batch_sizes, "batch_sizes")
                 if FLAGS.batch_sizes else None)
  torch_modes = [m for m in FLAGS.torch if m]

  info = common.device_info()
  print(f"Device: {common.describe(info)}; malloc keeps freed memory: {kept}", flush=True)
  if info["platform"] == "cpu" and local > 1:
    print("Note: several CPU devices share the same cores; multi-device rows check the "
          "code path, not a speed-up.")
  peak = common.peak_matmul_flops(FLAGS.peak_size, rounds=FLAGS.rounds)
  print(f"Peak (jit matmul {peak['n']}², float32): {peak['rate'] / 1e9:.1f} GFLOP/s", flush=True)

  rows = []
  for name in FLAGS.models:
    for batch_size in batch_sizes or CONFIGS[name].batch_sizes:
      for n in devices:
        if batch_size % n:
          print(f"skip {name} batch {batch_size} on {n} devices (not divisible)")
          continue
        row = benchmark(name, batch_size, n, peak=peak["rate"], torch_modes=torch_modes,
                        rounds=FLAGS.rounds, window_seconds=FLAGS.window_seconds,
                        warmup=FLAGS.warmup, image_size=FLAGS.image_size,
                        flops=FLAGS.flops, compiler_options=options)
        rows.append(row)
        print(common.format_table([row], COLUMNS).splitlines()[-1], flush=True)
        for mode, error in row.get("torch_errors", {}).items():
          print(f"  torch {mode} skipped: {error}")
  peak_after = common.peak_matmul_flops(FLAGS.peak_size, rounds=FLAGS.rounds)
  print()
  print(common.format_table(rows, COLUMNS))
  common.write_json(FLAGS.output, {"benchmark": "train_step", "device": info,
                                    "keep_freed_memory": kept,
                                    "peak_matmul": peak, "peak_matmul_after": peak_after,
                                    "compiler_options": options,
                                    "rows": rows})


if __name__ == "__main__":
  define_flags()
  app.run(main)
