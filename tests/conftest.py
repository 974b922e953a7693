"""Test set-up: four fake CPU devices (set before JAX initialises) and private caches.

The device-count flag is appended to a user's own `XLA_FLAGS` (not only set
when absent), so the multi-device tests see four devices either way. XLA's
compilation cache (shared by test runs) and the embedded dataset (one per
test run) go to the temporary folder, never to the user's `~/.cache/jaxpu`
or `~/tensorflow_datasets`.
"""

import os
import re
import tempfile
import uuid

_DEVICES = "--xla_force_host_platform_device_count=4"
_flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "",
                os.environ.get("XLA_FLAGS", ""))
os.environ["XLA_FLAGS"] = f"{_flags} {_DEVICES}".strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# One folder per user and machine, shared by the xdist workers of a run (and
# reused by the next run: entries are keyed by the compiled program).
_CACHE = os.path.join(tempfile.gettempdir(), f"jaxpu-tests-{os.getuid()}")
os.environ["JAXPU_COMPILATION_CACHE"] = os.path.join(_CACHE, "xla")
# The embedded dataset is built anew by each test run (xdist's workers share it).
_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex
os.environ["JAXPU_DATA_DIR"] = os.path.join(_CACHE, f"data-{_RUN}")


def pytest_configure(config):
  del config
  from jaxpu import runtime  # pylint: disable=g-import-not-at-top
  runtime.enable_compilation_cache()


def pytest_unconfigure(config):
  if not hasattr(config, "workerinput"):  # the controller, after every worker finished
    import shutil  # pylint: disable=g-import-not-at-top
    shutil.rmtree(os.environ["JAXPU_DATA_DIR"], ignore_errors=True)
