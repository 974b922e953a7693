"""jaxpu.runtime: process set-up (keep_freed_memory, the compilation cache)."""

import ctypes
import subprocess
import sys

import pytest

# Allocates 64 MiB with malloc and reports how many bytes glibc serves by mmap
# for it (growth of mallinfo2().hblkhd), before and after keep_freed_memory().
_PROBE = r"""
import ctypes
import json
from jaxpu import runtime

class MallInfo2(ctypes.Structure):
  _fields_ = [(name, ctypes.c_size_t) for name in (
      "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
      "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

def mmapped_bytes_while_holding(size):
  mapped_before = libc.mallinfo2().hblkhd
  block = libc.malloc(size)
  mapped = libc.mallinfo2().hblkhd - mapped_before
  libc.free(block)
  return mapped

before = mmapped_bytes_while_holding(64 << 20)
took_effect = runtime.keep_freed_memory()
after = mmapped_bytes_while_holding(64 << 20)
print(before, int(took_effect), after)
"""


def _has_glibc_mallinfo2() -> bool:
  try:
    return hasattr(ctypes.CDLL(None), "mallinfo2")
  except OSError:
    return False


@pytest.mark.skipif(not _has_glibc_mallinfo2(), reason="needs glibc >= 2.33 (mallinfo2)")
def test_keep_freed_memory_stops_mmap_for_large_blocks():
  out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                       timeout=120, check=True).stdout.split()
  before, took_effect, after = map(int, out)
  assert before >= 64 << 20  # glibc's default: a block this large is a fresh mmap
  assert took_effect == 1
  assert after == 0  # now it comes from the heap, and is kept there after free


def test_compilation_cache_goes_to_the_given_folder(tmp_path):
  import jax  # pylint: disable=g-import-not-at-top
  from jaxpu import runtime  # pylint: disable=g-import-not-at-top
  before = jax.config.jax_compilation_cache_dir
  try:
    assert runtime.enable_compilation_cache(str(tmp_path / "xla")) == str(tmp_path / "xla")
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "xla")
    assert (tmp_path / "xla").is_dir()
  finally:
    jax.config.update("jax_compilation_cache_dir", before)
