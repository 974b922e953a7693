"""One of the two JAX processes of tests/test_multihost.py.

Usage: python tests/multihost_worker.py PROCESS_ID PORT OUT_DIR

Joins a 2-process JAX runtime on a loopback coordinator (CPU collectives via
gloo), each process with 2 CPU devices, trains the `mlp` for a few steps on
the global batches of `global_batches()` feeding only its own half of each
(with the train step, then again through `fit` with checkpoints), and
(process 0) writes the final params and an evaluation confusion matrix to
OUT_DIR. Also importable: the test builds its single-process reference from
the same `setup()` and `global_batches()`.
"""

import os
import sys

import numpy as np

NUM_PROCESSES = 2
GLOBAL_BATCH = 16
STEPS = 3
FIT_STEPS = 4  # fit() runs batch (s - 1) % STEPS at step s


def global_batches():
  """Fixed global batches; void labels (255) spread unevenly over the devices."""
  rs = np.random.RandomState(0)
  void = np.zeros(GLOBAL_BATCH, bool)
  void[[4, 5, 7, 10, 13, 14]] = True
  batches = []
  for _ in range(STEPS):
    x = rs.normal(size=(GLOBAL_BATCH, 2)).astype(np.float32)
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int32)
    batches.append({"image": x, "label": np.where(void, 255, y).astype(np.int32)})
  return batches


def setup():
  """(model, optimizer, loss_fn): SGD so that any change of gradient scale shows."""
  from jaxpu import models, train  # pylint: disable=g-import-not-at-top
  model = models.get("mlp", 1)
  optimizer = train.make_optimizer("sgd", 0.5, momentum=0.9, weight_decay=1e-3)
  loss_fn = train.make_loss_fn("logistic", 1, class_balanced=True)
  return model, optimizer, loss_fn


def main(process_id: int, port: int, out_dir: str) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}",
                             num_processes=NUM_PROCESSES, process_id=process_id,
                             initialization_timeout=120)
  from jaxpu import train  # pylint: disable=g-import-not-at-top
  assert jax.process_count() == NUM_PROCESSES, jax.process_count()
  mesh = train.make_mesh()  # every process's devices
  assert mesh.size == 2 * NUM_PROCESSES, mesh
  model, optimizer, loss_fn = setup()
  batches = global_batches()
  per_process = GLOBAL_BATCH // NUM_PROCESSES
  own = slice(process_id * per_process, (process_id + 1) * per_process)

  state = train.create_train_state(model, optimizer, 0, batches[0], mesh=mesh)
  step = train.make_train_step(model, optimizer, loss_fn, mesh)
  losses = []
  for batch in batches:
    local = {k: v[own] for k, v in batch.items()}
    state, metrics = step(state, train.shard_batch(local, mesh))
    losses.append(float(train.to_host(metrics["loss"])))
  eval_step = train.make_eval_step(model, 1, mesh)
  cm = train.evaluate(eval_step, state.params, [{k: v[own] for k, v in batches[0].items()}],
                      mesh)

  # The fit loop, with Orbax checkpoints written by both processes into one folder.
  def train_iter_fn(start_step):
    for s in range(start_step, FIT_STEPS):
      yield {k: v[own] for k, v in batches[s % STEPS].items()}
  fit_state, _ = train.fit(
      train.create_train_state(model, optimizer, 0, batches[0]), model=model,
      optimizer=optimizer, loss_fn=loss_fn, train_iter_fn=train_iter_fn, num_steps=FIT_STEPS,
      workdir=os.path.join(out_dir, "fit"), mesh=mesh, log_every=2, checkpoint_every=2)

  if process_id == 0:
    flat = {}
    for prefix, params in (("step", state.params), ("fit", fit_state.params)):
      for path, leaf in jax.tree_util.tree_flatten_with_path(train.to_host(params))[0]:
        flat[prefix + ":" + "/".join(str(k.key) for k in path)] = leaf
    np.savez(os.path.join(out_dir, "result.npz"), cm=cm, losses=np.array(losses), **flat)
  jax.distributed.shutdown()


if __name__ == "__main__":
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
