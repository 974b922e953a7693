"""Shared pieces of the benchmarks: XLA set-up, device description, timing, peaks, output.

Timing on a shared machine. Every benchmark measures its candidates
*interleaved* (A, B, C, A, B, C, ...) in short windows, so a load change hits
them alike, and records during each window how much CPU the *other*
processes of the machine used (from `/proc/stat`, minus this process' own
time). A window is "quiet" when the others used less than `quiet_share` of
the machine. The reported rate is the median over the quiet windows (over
all windows when fewer than three were quiet, flagged `noisy`), and the best
window is kept too: extra load only ever slows a window down, so the best
window is the closest to the unloaded machine.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import time
from typing import Any, Callable, Mapping, Optional, Sequence

YNN_FUSION_OPTION = "xla_cpu_experimental_ynn_fusion_type"
YNN_FUSION_TYPES = {"dot": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
                    "reduce": "LIBRARY_FUSION_TYPE_REDUCE",
                    "convolution": "LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION"}
YNN_FUSION_HELP = ("XLA CPU library (YNNPACK) fusions of the jitted steps: 'train' (jaxpu's "
                   "train step: jaxpu.train.default_compiler_options()), 'default' (XLA's: "
                   "dot, reduce, convolution), 'none', or a comma list of "
                   f"{', '.join(YNN_FUSION_TYPES)}.")


def compiler_options(ynn_fusion: str) -> dict:
  """`jax.jit` compiler options for a `--ynn_fusion` value (`{}`: XLA's defaults).

  XLA's CPU backend (JAX 0.10) hands convolutions, dots and reductions to
  YNNPACK by default; the types left out of the list run in XLA's own
  emitters or Eigen (benchmarks/README.md).
  """
  if ynn_fusion == "train":
    from jaxpu import train  # pylint: disable=g-import-not-at-top
    return train.default_compiler_options()
  if ynn_fusion == "default":
    return {}
  names = [] if ynn_fusion == "none" else [n.strip() for n in ynn_fusion.split(",")]
  unknown = [n for n in names if n not in YNN_FUSION_TYPES and n not in YNN_FUSION_TYPES.values()]
  if unknown:
    raise ValueError(f"--ynn_fusion: unknown fusion type(s) {unknown}; use 'train', 'default', "
                     f"'none' or a comma list of {', '.join(YNN_FUSION_TYPES)}.")
  return {YNN_FUSION_OPTION: ",".join(YNN_FUSION_TYPES.get(n, n) for n in names)}


KEEP_FREED_MEMORY_HELP = (
    "First call jaxpu.runtime.keep_freed_memory(), as the experiments do: glibc keeps "
    "freed memory instead of page-faulting each step's large buffers anew (process-wide, so "
    "PyTorch in the same process gets it too).")


def keep_freed_memory(enabled: bool) -> bool:
  """`jaxpu.runtime.keep_freed_memory()` if `enabled`; whether it took effect."""
  if not enabled:
    return False
  from jaxpu import runtime  # pylint: disable=g-import-not-at-top
  return runtime.keep_freed_memory()


def configure_xla(host_devices: Optional[int] = None) -> None:
  """Sets `XLA_FLAGS` before the JAX backend starts (call first thing in `main`).

  Args:
    host_devices: if given, fake this many CPU devices
      (`--xla_force_host_platform_device_count`; they share the same cores, so
      this checks the multi-device code path, not a speed-up).

  Raises:
    RuntimeError: if the JAX backend already started (the flags would be ignored).
  """
  if not host_devices:
    return
  if _backend_started():
    raise RuntimeError("configure_xla must run before JAX initialises its backend "
                       "(before the first jax.devices() or computation).")
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  os.environ["XLA_FLAGS"] = " ".join(
      flags + [f"--xla_force_host_platform_device_count={int(host_devices)}"])


def _backend_started() -> bool:
  import jax._src.xla_bridge as xb  # pylint: disable=g-import-not-at-top
  started = getattr(xb, "backends_are_initialized", None)
  return bool(started()) if started else bool(getattr(xb, "_backends", None))


# ----------------------------------------------------------------------------
# The machine.
# ----------------------------------------------------------------------------


def cpu_model() -> str:
  """The CPU's model name (as `lscpu` prints it), or the platform's processor string."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown CPU"


def device_info() -> dict:
  """What the benchmark ran on: JAX devices, CPU model and core count, versions."""
  import jax  # pylint: disable=g-import-not-at-top
  devices = jax.local_devices()
  return {
      "platform": devices[0].platform,
      "device_kind": devices[0].device_kind,
      "local_device_count": len(devices),
      "cpu_model": cpu_model(),
      "cpu_count": os.cpu_count(),
      "jax": jax.__version__,
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
  }


def describe(info: Mapping[str, Any]) -> str:
  return (f"{info['platform']} ({info['device_kind']}) x{info['local_device_count']}; "
          f"CPU {info['cpu_model']}, {info['cpu_count']} cores; jax {info['jax']}"
          + (f"; XLA_FLAGS={info['xla_flags']}" if info["xla_flags"] else ""))


# ----------------------------------------------------------------------------
# Timing.
# ----------------------------------------------------------------------------


def _busy_jiffies() -> Optional[int]:
  try:
    with open("/proc/stat") as f:
      v = [int(x) for x in f.readline().split()[1:9]]
  except (OSError, ValueError):
    return None
  return sum(v) - v[3] - v[4]  # minus idle and iowait


def _own_jiffies() -> float:
  t = os.times()
  return (t.user + t.system) * os.sysconf("SC_CLK_TCK")


def timed_window(fn: Callable[[int], Any], n: int) -> tuple[float, float, float]:
  """Runs `fn(n)` (n iterations, synchronised).

  Returns:
    (wall seconds per iteration, the other processes' CPU share, this
    process' CPU seconds per iteration). The share is the others' CPU time
    during the window over the machine's (cores × wall time); NaN where
    `/proc/stat` is unavailable.
  """
  busy0, own0 = _busy_jiffies(), _own_jiffies()
  cpu0, t0 = time.process_time(), time.perf_counter()
  fn(n)
  seconds = time.perf_counter() - t0
  cpu = time.process_time() - cpu0
  busy1, own1 = _busy_jiffies(), _own_jiffies()
  if busy0 is None or busy1 is None:
    return seconds / n, float("nan"), cpu / n
  other = (busy1 - busy0) - (own1 - own0)
  share = other / (seconds * os.sysconf("SC_CLK_TCK") * (os.cpu_count() or 1))
  return seconds / n, min(1.0, max(0.0, share)), cpu / n


@dataclasses.dataclass
class Timing:
  """Seconds per iteration of one candidate over its windows."""
  windows: list  # (wall s per iteration, others' CPU share, own CPU s per iteration)
  quiet_share: float

  @property
  def quiet(self) -> list:
    return [w[0] for w in self.windows if w[1] < self.quiet_share]

  @property
  def noisy(self) -> bool:
    return len(self.quiet) < 3

  @property
  def median(self) -> float:
    pool = self.quiet if not self.noisy else [w[0] for w in self.windows]
    return statistics.median(pool)

  @property
  def best(self) -> float:
    return min(w[0] for w in self.windows)

  @property
  def cpu(self) -> float:
    """Median CPU seconds per iteration (all threads of this process).

    On one core (`taskset -c 0 ...`) this hardly depends on the other
    processes' load, unlike the wall time; with several threads it also
    counts time spent waiting in spin loops.
    """
    return statistics.median(w[2] for w in self.windows)

  @property
  def load(self) -> float:
    shares = [w[1] for w in self.windows if w[1] == w[1]]
    return statistics.median(shares) if shares else float("nan")

  def summary(self, per_iteration_items: float = 1.0) -> dict:
    """Rates (items per second) from the median and the best window, plus the load."""
    return {"rate": per_iteration_items / self.median,
            "rate_best": per_iteration_items / self.best,
            "rate_per_cpu_second": per_iteration_items / self.cpu,
            "seconds": self.median, "cpu_seconds": self.cpu, "windows": len(self.windows),
            "quiet_windows": len(self.quiet), "noisy": self.noisy,
            "others_cpu_share": self.load}


def interleave(candidates: Mapping[str, Callable[[int], Any]], *, rounds: int = 5,
               iterations: Mapping[str, int] | int = 1, warmup: int = 1,
               quiet_share: float = 0.15) -> dict[str, Timing]:
  """Times `candidates` (name → `fn(n)` running n synchronised iterations) interleaved.

  Each runs `warmup` iterations first (compilation, caches), then `rounds`
  windows of `iterations` iterations each, round-robin.
  """
  if isinstance(iterations, int):
    iterations = {k: iterations for k in candidates}
  for fn in candidates.values():
    if warmup:
      fn(warmup)
  windows = {k: [] for k in candidates}
  for _ in range(rounds):
    for name, fn in candidates.items():
      windows[name].append(timed_window(fn, max(1, iterations[name])))
  return {k: Timing(v, quiet_share) for k, v in windows.items()}


def iterations_for(fn: Callable[[int], Any], target_seconds: float, max_iterations: int = 1000) -> int:
  """How many iterations of `fn` (already warm) take about `target_seconds`."""
  t0 = time.perf_counter()
  fn(1)
  once = max(time.perf_counter() - t0, 1e-6)
  return int(min(max_iterations, max(1, round(target_seconds / once))))


# ----------------------------------------------------------------------------
# Hardware references, measured in the same process.
# ----------------------------------------------------------------------------


def peak_matmul_flops(n: Optional[int] = None, dtype: str = "float32", rounds: int = 5) -> dict:
  """FLOP/s of a large square matmul (`jnp.dot`, jit): the practical peak.

  n defaults to 2048 on CPU and 8192 on accelerators.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  n = n or (2048 if jax.default_backend() == "cpu" else 8192)
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), dtype)
  matmul = jax.jit(jnp.dot)

  def run(k):
    for _ in range(k):
      out = matmul(a, b)
    out.block_until_ready()

  run(1)
  timing = interleave({"matmul": run}, rounds=rounds,
                      iterations=iterations_for(run, 0.3, 50), warmup=0)["matmul"]
  flops = 2.0 * n ** 3
  return {"n": n, "dtype": dtype, **timing.summary(flops)}


def memory_bandwidth(megabytes: int = 256, rounds: int = 5) -> dict:
  """Bytes/s of a large float32 array's in-place update (read + write) and sum (read), jit.

  The update (`1 - x`, input donated, so no fresh output buffer is allocated
  and first touched) moves 2 bytes per byte of the array, the sum 1. `rate`
  is the larger of the two: the practical bandwidth the losses are compared
  with.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  size = megabytes * 2 ** 20 // 4
  x = jax.random.uniform(jax.random.key(0), (size,), jnp.float32)
  update = jax.jit(lambda v: 1.0 - v, donate_argnums=0)  # reads and writes every element
  total = jax.jit(jnp.sum)  # reads every element once
  box = [x]

  def run_update(k):
    for _ in range(k):
      box[0] = update(box[0])
    box[0].block_until_ready()

  def run_sum(k):
    for _ in range(k):
      out = total(box[0])
    out.block_until_ready()

  timings = interleave({"copy": run_update, "read": run_sum}, rounds=rounds, iterations=3,
                       warmup=1)
  copy = timings["copy"].summary(2.0 * 4 * size)
  read = timings["read"].summary(4.0 * size)
  rate = max(copy["rate"], read["rate"])
  return {"megabytes": megabytes, "copy": copy, "read": read, "rate": rate}


def compiled_cost(compiled) -> dict:
  """FLOPs and bytes accessed of one run of a compiled XLA executable (its cost analysis)."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return {"flops": float("nan"), "bytes_accessed": float("nan")}
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  analysis = analysis or {}
  return {"flops": float(analysis.get("flops", float("nan"))),
          "bytes_accessed": float(analysis.get("bytes accessed", float("nan")))}


# ----------------------------------------------------------------------------
# Optional PyTorch.
# ----------------------------------------------------------------------------


def import_torch():
  """`torch`, or None when PyTorch (an optional benchmark dependency) is not installed.

  Its intra-op threads are set to the cores this process may run on (so
  `taskset -c 0 python -m benchmarks...` compares one core with one core).
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  if cores and torch.get_num_threads() != cores:
    torch.set_num_threads(cores)
  return torch


# ----------------------------------------------------------------------------
# Output.
# ----------------------------------------------------------------------------


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
  """A Markdown table of `rows` (dicts) restricted to `columns`."""
  def cell(v):
    if isinstance(v, float):
      if v != v:
        return "-"
      return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return "-" if v is None else str(v)

  from jaxpu import report  # pylint: disable=g-import-not-at-top
  return report.markdown_table(columns, ([cell(row.get(c)) for c in columns] for row in rows))


def write_json(path: Optional[str], payload: Mapping[str, Any]) -> None:
  """Writes `payload` as indented JSON to `path` (no-op for an empty path)."""
  if not path:
    return
  from jaxpu import fileio  # pylint: disable=g-import-not-at-top
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fileio.write_text(path, json.dumps(payload, indent=2, default=_jsonable) + "\n")


def _jsonable(value):
  try:
    import numpy as np  # pylint: disable=g-import-not-at-top
    if isinstance(value, np.generic):
      return value.item()
  except ImportError:
    pass
  return str(value)


def parse_ints(values: Sequence[str], name: str) -> list[int]:
  """absl list flag → positive ints, with an error naming the flag."""
  try:
    out = [int(v) for v in values]
  except ValueError:
    raise ValueError(f"--{name} takes comma-separated positive integers, got {values!r}.") from None
  if not out or any(v < 1 for v in out):
    raise ValueError(f"--{name} takes comma-separated positive integers, got {values!r}.")
  return out
