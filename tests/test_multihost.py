"""Two JAX processes (jax.distributed, gloo) train like one process on the whole batch."""

import functools
import os
import re
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from jaxpu import train
from tests import multihost_worker

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 240


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _run_workers(out_dir):
  # The test process's XLA flags and compilation cache (tests/conftest.py), with 2 devices
  # per process.
  flags = re.sub(r"--xla_force_host_platform_device_count=\S+",
                 "--xla_force_host_platform_device_count=2", os.environ.get("XLA_FLAGS", ""))
  env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu", PYTHONPATH=REPO)
  port = _free_port()
  script = os.path.join(REPO, "tests", "multihost_worker.py")
  procs = [subprocess.Popen([sys.executable, script, str(i), str(port), str(out_dir)],
                            env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
           for i in range(multihost_worker.NUM_PROCESSES)]
  outputs = []
  try:
    for p in procs:
      outputs.append(p.communicate(timeout=TIMEOUT_S)[0])
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  for i, (p, out) in enumerate(zip(procs, outputs)):
    assert p.returncode == 0, f"worker {i} exited with {p.returncode}:\n{out[-4000:]}"


@pytest.mark.heavy(8)
def test_two_processes_match_one_process_on_the_whole_batch(tmp_path):
  _run_workers(tmp_path)
  result = np.load(tmp_path / "result.npz")

  model, optimizer, loss_fn = multihost_worker.setup()
  batches = multihost_worker.global_batches()
  device = jax.devices()[0]
  state = jax.device_put(train.create_train_state(model, optimizer, 0, batches[0]), device)
  step = jax.jit(functools.partial(train.train_step, model=model, optimizer=optimizer,
                                   loss_fn=loss_fn, axis_name=None))
  losses, snapshots = [], {}
  for s in range(1, max(len(batches), multihost_worker.FIT_STEPS) + 1):
    state, metrics = step(state, jax.device_put(batches[(s - 1) % len(batches)], device))
    losses.append(float(metrics["loss"]))
    snapshots[s] = state.params

  np.testing.assert_allclose(result["losses"], losses[:len(batches)], rtol=1e-5)
  for prefix, steps in (("step", len(batches)), ("fit", multihost_worker.FIT_STEPS)):
    flat = {f"{prefix}:" + "/".join(str(k.key) for k in path): leaf
            for path, leaf in jax.tree_util.tree_flatten_with_path(snapshots[steps])[0]}
    assert set(flat) <= set(result.files)
    for name, leaf in flat.items():
      np.testing.assert_allclose(result[name], leaf, rtol=2e-5, atol=1e-6, err_msg=name)
  assert sorted(os.listdir(tmp_path / "fit" / "checkpoints")) == ["2", "4"]

  first = batches[0]
  valid = first["label"] != 255
  params = snapshots[len(batches)]
  predictions = (np.asarray(model.apply({"params": params}, first["image"]))[:, 0] > 0)
  np.testing.assert_array_equal(
      result["cm"], sk_confusion_matrix(first["label"][valid], predictions[valid], labels=[0, 1]))
