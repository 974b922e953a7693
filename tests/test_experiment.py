"""jaxpu.experiment: process set-up (keep_freed_memory), workdir claims, config checks."""

import ctypes
import json
import subprocess
import sys

import pytest

from jaxpu import experiment

# Allocates 64 MiB with malloc and reports how many bytes glibc serves by mmap
# for it (growth of mallinfo2().hblkhd), before and after keep_freed_memory().
_PROBE = r"""
import ctypes
import json
from jaxpu import experiment

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
took_effect = experiment.keep_freed_memory()
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


def test_claim_workdir_writes_the_config_and_names_every_differing_field(tmp_path):
  config = {"seed": 0, "tables": ["table4"], "pretrain": {"steps": 800, "learning_rate": 3e-3}}
  stored = experiment.claim_workdir(str(tmp_path), config, selection=("tables",))
  assert json.loads((tmp_path / "config.json").read_text()) == stored == config
  # Fields that only select what runs may change; the others may not.
  experiment.claim_workdir(str(tmp_path), dict(config, tables=["table3"]), selection=("tables",))
  changed = {"seed": 1, "tables": ["table4"], "pretrain": {"steps": 400, "learning_rate": 3e-3}}
  with pytest.raises(ValueError) as info:
    experiment.claim_workdir(str(tmp_path), changed, selection=("tables",))
  message = str(info.value)
  assert "pretrain.steps: 800 (in the workdir) → 400 (now)" in message
  assert "seed: 0 (in the workdir) → 1 (now)" in message
  assert "tables" not in message


def test_unwritable_workdir_is_named(tmp_path):
  with pytest.raises(ValueError, match=r"Cannot create the workdir '/proc/foo'"):
    experiment.claim_workdir("/proc/foo", {"seed": 0})


def test_config_checks_name_the_field():
  from ml_collections import config_dict  # pylint: disable=g-import-not-at-top
  config = config_dict.ConfigDict(dict(seed=0, repeats=0, train=dict(
      optimizer="adam", learning_rate=1e-3, schedule="cosine", warmup_steps=0, momentum=0.9,
      weight_decay=0.0, steps=10, batch_size=6, checkpoint_every=5, keep=5,
      loss_reduction="mean")))
  with pytest.raises(ValueError, match=r"--config\.repeats=0: must be a positive integer"):
    experiment.check_common(config)
  with pytest.raises(ValueError, match=r"--config\.train\.batch_size=6: must be a multiple of "
                                       r"the 4 devices"):
    experiment.check_training(config, "train")
  config.train.batch_size, config.train.checkpoint_every = 8, 20
  with pytest.raises(ValueError, match=r"checkpoint_every=20: must be at most train\.steps"):
    experiment.check_training(config, "train")
  assert experiment.names("table3,table4") == ("table3", "table4")
  assert experiment.names(("table3", "fig7")) == ("table3", "fig7")
  assert experiment.repeat_seeds(config_dict.ConfigDict(dict(seed=5, repeats=3))) == [5, 6, 7]


def test_progress_weighs_the_eta_by_work(capsys, monkeypatch):
  clock = iter([100.0, 160.0])
  monkeypatch.setattr(experiment.time, "time", lambda: next(clock))
  progress = experiment.Progress("transfer", total=400, runs=5)
  progress("pre-training", 100)  # 60 s for 100 of 400 steps: 180 s to go
  assert "[transfer] 1/5 runs done (pre-training); 0:01:00 elapsed, ETA 0:03:00" in (
      capsys.readouterr().out)
