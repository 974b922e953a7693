r"""Throughput of every `jaxpu.losses` loss against the machine's memory bandwidth.

Times `jax.jit(jax.value_and_grad(...))` of each loss, reduced like the train
step does (`masked_mean` over valid pixels; the PU risks are scalars
already), on a large segmentation-shaped batch: logits `[B, H, W]` (binary)
or `[B, H, W, C]` (multiclass), integer labels `[B, H, W]` and a validity
mask. A loss and its gradient are elementwise, so they are bound by memory
traffic: the least a step must move is reading logits, labels and mask and
writing the gradient, and its rate is compared with the bandwidth of a large
array copy measured in the same process (target: at least half of it).

The step is compiled with the train step's XLA options by default
(`jaxpu.train.default_compiler_options()`; `--ynn_fusion` picks others), so
the losses are measured as they run inside training.

  taskset -c 1 python -m benchmarks.losses --batch=32 --size=256 --num_classes=21 \
      --output=/tmp/losses.json
"""

from __future__ import annotations

import inspect

from absl import app
from absl import flags

from benchmarks import common

FLAGS = flags.FLAGS


def define_flags() -> None:
  """Defines the command-line flags.

  Only called when the module runs as a program, so importing it next to
  other absl programs (e.g. in tests) defines no flags.
  """
  flags.DEFINE_integer("batch", 32, "Batch size of the segmentation-shaped batch.")
  flags.DEFINE_integer("size", 256, "Image side (H = W).")
  flags.DEFINE_integer("num_classes", 21, "Classes of the multiclass losses.")
  flags.DEFINE_list("losses", None, "Losses to run (default: every jaxpu loss).")
  flags.DEFINE_integer("rounds", 5, "Timed windows per loss (interleaved).")
  flags.DEFINE_float("window_seconds", 0.5, "Approximate length of one window.")
  flags.DEFINE_integer("bandwidth_megabytes", 256,
      "Array size of the bandwidth reference.")
  flags.DEFINE_string("output", None, "Write the results as JSON to this path.")
  flags.DEFINE_bool("keep_freed_memory", True, common.KEEP_FREED_MEMORY_HELP)
  flags.DEFINE_string("ynn_fusion", "train", common.YNN_FUSION_HELP)


PRIOR = 0.3  # class prior π of the PU risks (any valid value: the cost does not depend on it)


def loss_names() -> tuple[list[str], list[str]]:
  """(binary, multiclass) loss names of `jaxpu.losses`, elementwise and batch-level."""
  from jaxpu import losses  # pylint: disable=g-import-not-at-top
  binary = list(losses.BINARY_LOSSES) + list(losses.RISK_ESTIMATORS)
  multiclass = (list(losses.MULTICLASS_LOSSES)
                + list(getattr(losses, "MULTICLASS_RISK_ESTIMATORS", ())))
  return binary, multiclass


def required_arguments(name: str, num_classes: int) -> dict:
  """Values for a loss' required arguments beyond (logits, labels)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jaxpu import losses  # pylint: disable=g-import-not-at-top
  known = {"prior": PRIOR, "class_weights": jnp.linspace(0.5, 1.5, num_classes)}
  out = {}
  for i, p in enumerate(inspect.signature(losses.get(name)).parameters.values()):
    if i < 2 or p.default is not inspect.Parameter.empty or p.kind == p.VAR_KEYWORD:
      continue
    if p.name not in known:
      raise ValueError(f"benchmarks.losses does not know a value for {name}'s required "
                       f"argument {p.name!r}; add one to required_arguments.")
    out[p.name] = known[p.name]
  return out


def make_inputs(batch: int, size: int, num_classes: int, multiclass: bool) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
  shape = (batch, size, size)
  logits_shape = shape + (num_classes,) if multiclass else shape
  return {
      "logits": 3.0 * jax.random.normal(k1, logits_shape, jnp.float32),
      "labels": jax.random.randint(k2, shape, 0, num_classes if multiclass else 2, jnp.int32),
      "where": jax.random.uniform(k3, shape) < 0.95,
  }


def fresh_output_rate(megabytes: int, rounds: int = 5) -> dict:
  """Bytes/s (read + write) of `1 - x` into a fresh output buffer of `megabytes`, jit.

  Unlike the bandwidth reference (input donated), every call allocates its
  output as a step's gradient is allocated; above glibc's mmap threshold (32
  MiB at most) that buffer is new memory each call and its page faults are paid
  on first touch.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  size = megabytes * 2 ** 20 // 4
  x = jax.random.uniform(jax.random.key(0), (size,), jnp.float32)
  update = jax.jit(lambda v: 1.0 - v)

  def run(k):
    for _ in range(k):
      out = update(x)
    out.block_until_ready()

  timing = common.interleave({"fresh": run}, rounds=rounds, iterations=3, warmup=1)["fresh"]
  return {"megabytes": megabytes, **timing.summary(2.0 * 4 * size)}


def minimal_bytes(inputs: dict) -> float:
  """Read logits, labels and mask once, write the gradient (logits-shaped) once."""
  return float(2 * inputs["logits"].nbytes + inputs["labels"].nbytes + inputs["where"].nbytes)


def make_step(name: str, num_classes: int):
  """jit of value-and-grad (w.r.t. the logits) of the train-step reduction of loss `name`."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxpu import losses  # pylint: disable=g-import-not-at-top
  fn = losses.get(name)
  kwargs = required_arguments(name, num_classes)
  batch_level = name in losses.RISK_ESTIMATORS or name in getattr(
      losses, "MULTICLASS_RISK_ESTIMATORS", ())

  def objective(logits, labels, where):
    values = fn(logits, labels, where=where, **kwargs)
    return values if batch_level else losses.masked_mean(values, where)

  return jax.jit(jax.value_and_grad(objective))


def benchmark(names, inputs_by_kind, num_classes, *, bandwidth, rounds, window_seconds,
              options=None):
  """Rows of elements/s and achieved bandwidth per loss, all losses timed interleaved.

  `options`: `jax.jit` compiler options of every step (None or `{}`: XLA's defaults).
  """
  import jax  # pylint: disable=g-import-not-at-top
  binary, _ = loss_names()
  candidates, meta = {}, {}
  for name in names:
    kind = "binary" if name in binary else "multiclass"
    inputs = inputs_by_kind[kind]
    step = make_step(name, num_classes)
    args = (inputs["logits"], inputs["labels"], inputs["where"])
    compiled = step.lower(*args).compile(compiler_options=options or None)

    def run(n, compiled=compiled, args=args):
      out = None
      for _ in range(n):
        out = compiled(*args)
      jax.block_until_ready(out)

    run(1)
    candidates[name] = run
    meta[name] = {"kind": kind, "elements": inputs["labels"].size,
                  "min_bytes": minimal_bytes(inputs), **common.compiled_cost(compiled)}
  iterations = {k: common.iterations_for(run, window_seconds) for k, run in candidates.items()}
  timings = common.interleave(candidates, rounds=rounds, iterations=iterations, warmup=0)
  rows = []
  for name, timing in timings.items():
    m = meta[name]
    seconds = timing.median
    rows.append({
        "loss": name, "kind": m["kind"],
        "shape": "x".join(map(str, inputs_by_kind[m["kind"]]["logits"].shape)),
        "elements_per_s": m["elements"] / seconds, "ms": 1e3 * seconds,
        "ns_per_element": 1e9 * seconds / m["elements"],
        "min_bytes": m["min_bytes"], "xla_bytes_accessed": m["bytes_accessed"],
        "gb_per_s": m["min_bytes"] / seconds / 1e9,
        "fraction_of_bandwidth": m["min_bytes"] / seconds / bandwidth,
        "gb_per_cpu_s": m["min_bytes"] / timing.cpu / 1e9,
        "noisy": timing.noisy, "others_cpu_share": timing.load,
    })
  return rows


COLUMNS = ("loss", "shape", "ms", "elements_per_s", "ns_per_element", "gb_per_s",
           "fraction_of_bandwidth",
           "gb_per_cpu_s", "others_cpu_share")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  kept = common.keep_freed_memory(FLAGS.keep_freed_memory)
  binary, multiclass = loss_names()
  names = FLAGS.losses or binary + multiclass
  unknown = sorted(set(names) - set(binary + multiclass))
  if unknown:
    raise app.UsageError(f"Unknown --losses {unknown}; choose from {binary + multiclass}.")
  if FLAGS.num_classes < 2:
    raise app.UsageError(f"--num_classes must be >= 2, got {FLAGS.num_classes}.")

  info = common.device_info()
  print(f"Device: {common.describe(info)}; malloc keeps freed memory: {kept}", flush=True)
  bandwidth = common.memory_bandwidth(FLAGS.bandwidth_megabytes, rounds=FLAGS.rounds)
  print(f"Memory bandwidth ({FLAGS.bandwidth_megabytes} MB float32): copy "
        f"{bandwidth['copy']['rate'] / 1e9:.1f} GB/s, read {bandwidth['read']['rate'] / 1e9:.1f} "
        f"GB/s (per CPU-second: copy {bandwidth['copy']['rate_per_cpu_second'] / 1e9:.1f}, "
        f"read {bandwidth['read']['rate_per_cpu_second'] / 1e9:.1f})", flush=True)
  fresh = fresh_output_rate(FLAGS.bandwidth_megabytes, rounds=FLAGS.rounds)
  print(f"Copy into a fresh (not donated) {FLAGS.bandwidth_megabytes} MB output: "
        f"{fresh['rate'] / 1e9:.1f} GB/s (the page faults of a new large buffer; a loss "
        "step's gradient is one)", flush=True)
  try:
    options = common.compiler_options(FLAGS.ynn_fusion)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  print(f"Compiler options: {options or 'XLA defaults'}", flush=True)
  inputs = {kind: make_inputs(FLAGS.batch, FLAGS.size, FLAGS.num_classes,
                              kind == "multiclass") for kind in ("binary", "multiclass")}
  rows = benchmark(names, inputs, FLAGS.num_classes, bandwidth=bandwidth["rate"],
                   rounds=FLAGS.rounds, window_seconds=FLAGS.window_seconds,
                   options=options)
  print(common.format_table(rows, COLUMNS))
  common.write_json(FLAGS.output, {"benchmark": "losses", "device": info,
                                    "keep_freed_memory": kept,
                                    "bandwidth": bandwidth, "fresh_output_copy": fresh,
                                    "compiler_options": options, "rows": rows})


if __name__ == "__main__":
  define_flags()
  app.run(main)
