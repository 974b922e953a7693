"""Test set-up: four fake CPU devices (set before JAX initialises), private caches, and the
order in which tests start under xdist.

The device-count flag is appended to a user's own `XLA_FLAGS` (not only set
when absent), so the multi-device tests see four devices either way; so are
the flags of how XLA:CPU compiles for the tests (`_CODEGEN`), unless the
user's flags set them. XLA's compilation cache (shared by test runs) goes to
the temporary folder, never to the user's `~/.cache/jaxpu`; so do, one set
per test run and shared by its xdist workers, the embedded dataset (never
`~/tensorflow_datasets`) and the smoke-scale results that several tests check
(`tests/smoke.py`).

Scheduling (`-n 2`, xdist's default `--dist load`): xdist hands out one test
at a time, except that a test file that defines a module-, class- or
package-scoped fixture goes to one worker as a whole (the fixture is built
once). Tests marked `heavy(seconds)` start first, the heaviest first, then
the whole files, then the rest in file order: the long tests are spread over
both workers instead of ending up in one worker's queue.
"""

import functools
import os
import re
import tempfile
import uuid

import pytest

_DEVICES = "--xla_force_host_platform_device_count=4"
# How XLA:CPU compiles for the tests: its older elemental emitters (not its fusion
# emitters) without backend optimisation. The suite compiles ~2,900 programs; with these
# it spends 98 s compiling instead of 419 s (cold cache, 2 cores: 477 s → 289 s wall),
# and the results agree with XLA's default up to float rounding (the tests' tolerances).
# The tests check jaxpu, not XLA's optimiser; users' runs keep XLA's defaults. A flag the
# user sets wins: XLA_FLAGS=--xla_backend_optimization_level=3 pytest ... tests with it.
_CODEGEN = {"xla_cpu_use_fusion_emitters": "false", "xla_backend_optimization_level": "0"}
_flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "",
                os.environ.get("XLA_FLAGS", ""))
_flags += "".join(f" --{name}={value}" for name, value in _CODEGEN.items()
                  if f"--{name}=" not in _flags)
os.environ["XLA_FLAGS"] = f"{_flags} {_DEVICES}".strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# One folder per user and machine, shared by the xdist workers of a run (and
# reused by the next run: entries are keyed by the compiled program).
_CACHE = os.path.join(tempfile.gettempdir(), f"jaxpu-tests-{os.getuid()}")
os.environ["JAXPU_COMPILATION_CACHE"] = os.path.join(_CACHE, "xla")
# JAX's own settings of that cache (`jaxpu.runtime.enable_compilation_cache`), for the
# Python processes the tests start that do not call it (benchmarks, multihost workers).
os.environ["JAX_COMPILATION_CACHE_DIR"] = os.environ["JAXPU_COMPILATION_CACHE"]
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
# One id per test run: the controller sets it before it starts the xdist
# workers, which inherit it (so its clean-up removes what they wrote).
_RUN = os.environ.setdefault("JAXPU_TESTS_RUN", uuid.uuid4().hex)
os.environ["JAXPU_DATA_DIR"] = os.path.join(_CACHE, f"data-{_RUN}")
os.environ["JAXPU_TESTS_SHARED"] = os.path.join(_CACHE, f"shared-{_RUN}")


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "heavy(seconds): the test takes about `seconds` on the idle 2-core machine; "
      "heavy tests start first, the heaviest first")
  # xdist hands out the work units in the order of the collection (below), not by size.
  config.option.loadscopereorder = False
  if hasattr(config, "workerinput") or getattr(config.option, "dist", "no") == "no":
    # The process that runs tests (not xdist's controller, which needs no JAX).
    from jaxpu import runtime  # pylint: disable=g-import-not-at-top
    runtime.enable_compilation_cache()


_SHARED_FIXTURE = re.compile(r"""scope\s*=\s*["'](module|class|package)["']""")


@functools.lru_cache(maxsize=None)
def _file_is_one_unit(path: str) -> bool:
  """Whether the test file defines a fixture that outlives a test (module, class or
  package scope): its tests then run in one worker, which builds the fixture once."""
  try:
    with open(path, encoding="utf-8") as f:
      return bool(_SHARED_FIXTURE.search(f.read()))
  except OSError:
    return False


def _unit(rootpath, nodeid: str) -> str:
  """The work unit of a test: its file (`_file_is_one_unit`) or the test alone."""
  path = nodeid.split("::")[0]
  return path if _file_is_one_unit(os.path.join(str(rootpath), path)) else nodeid


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
  """With xdist's default `--dist load`: one test at a time, or a whole file (`_unit`), in
  the order of the collection."""
  if config.getvalue("dist") != "load":
    return None  # the user chose another --dist
  from xdist.scheduler import LoadScopeScheduling  # pylint: disable=g-import-not-at-top

  class UnitScheduling(LoadScopeScheduling):

    def _split_scope(self, nodeid):
      return _unit(config.rootpath, nodeid)

  return UnitScheduling(config, log)


def _heavy_seconds(item) -> float:
  marker = item.get_closest_marker("heavy")
  return float(marker.args[0]) if marker else 0.0


def pytest_collection_modifyitems(config, items):
  """Orders the work units: heavy first (by their seconds), then whole files, then the rest
  in collection order."""
  units: dict[str, list] = {}
  for item in items:
    units.setdefault(_unit(config.rootpath, item.nodeid), []).append(item)
  order = sorted(units.items(), key=lambda unit: (
      -sum(_heavy_seconds(t) for t in unit[1]), unit[0] == unit[1][0].nodeid))
  items[:] = [item for _, tests in order for item in tests]


@pytest.hookimpl(tryfirst=True)
def pytest_unconfigure(config):
  if not hasattr(config, "workerinput"):  # the controller, after every worker finished
    import shutil  # pylint: disable=g-import-not-at-top
    shutil.rmtree(os.environ["JAXPU_DATA_DIR"], ignore_errors=True)
    shutil.rmtree(os.environ["JAXPU_TESTS_SHARED"], ignore_errors=True)
  elif not config.pluginmanager.hasplugin("_cov"):
    # An xdist worker that has sent its results (xdist does in pytest_sessionfinish): it
    # leaves at once. Its interpreter's shutdown (a garbage collection of everything the
    # tests left, JAX's clean_up of its compilation caches) takes 3-5 s that the
    # controller waits for.
    import sys  # pylint: disable=g-import-not-at-top
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # pylint: disable=protected-access
