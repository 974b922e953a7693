"""Process set-up for programs that train with jaxpu: freed-memory reuse, the compilation
cache, and the clock format of their progress lines (`format_duration`).

Both are settings of the process, not of a run: call them first thing in a
program's `main` (the experiments and benchmarks do), before JAX starts its
threads. What they gain on the project's CPU machine is measured in
`benchmarks/README.md`.
"""

from __future__ import annotations

import ctypes
import os

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8


def enable_compilation_cache(path: str | None = None) -> str:
  """Keeps XLA compilations on disk, shared by runs and processes; returns the folder.

  Runs of one experiment compile the same steps again and again (every
  fine-tuning of a table has the same shapes); a cache hit replaces a
  compilation. Folder: `path`, else `$JAXPU_COMPILATION_CACHE`, else
  `~/.cache/jaxpu/xla`.
  """
  import jax  # pylint: disable=g-import-not-at-top
  path = path or os.environ.get("JAXPU_COMPILATION_CACHE") or os.path.expanduser(
      os.path.join("~", ".cache", "jaxpu", "xla"))
  os.makedirs(path, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return path


def keep_freed_memory() -> bool:
  """Makes glibc's malloc keep freed memory for reuse; True if it took effect.

  XLA's CPU runtime allocates the large buffers of every step anew (its
  temporaries, a segmentation batch's gradient). glibc serves blocks over its
  mmap threshold (at most 32 MiB) with a fresh `mmap` and unmaps them on
  free, so every page of them faults again on every step. This turns `mmap`
  off for allocations, keeps freed memory up to 2 GiB at the heap top, and
  uses one arena for all threads (`GLIBC_TUNABLES=glibc.malloc.mmap_max=0:
  glibc.malloc.trim_threshold=...:glibc.malloc.arena_max=1` before start-up
  does the same). The process then keeps its peak memory. Call it first
  thing in `main`, before JAX starts its threads. No effect (False) without
  glibc.
  """
  try:
    mallopt = ctypes.CDLL(None).mallopt
  except (OSError, AttributeError):
    return False
  settings = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_ARENA_MAX, 1))
  return all(mallopt(param, value) == 1 for param, value in settings)


def format_duration(seconds: float) -> str:
  """H:MM:SS of `seconds` (rounded; negative counts as 0), as progress lines print it."""
  seconds = int(round(max(0.0, seconds)))
  return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
