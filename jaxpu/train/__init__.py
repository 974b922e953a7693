"""The data-parallel training core: state, optimizers, loss wrapper, steps, `fit`.

    from jaxpu import models, train
    model = models.get("fcn_small", 21)
    optimizer = train.make_optimizer("sgd", 1e-3, momentum=0.9, weight_decay=5e-4)
    loss_fn = train.make_loss_fn("softmax_cross_entropy", 21)
    state = train.create_train_state(model, optimizer, 0, batch)
    state, history = train.fit(state, model=model, optimizer=optimizer, loss_fn=loss_fn,
                               train_iter_fn=data.train_iter, num_steps=1000, workdir=...)

Modules:
- `optimizers`: `make_optimizer` (Adam, Caffe's SGD; weight decay, by
  default on kernels; per-parameter `lr_mults` / `wd_mults` as regex pairs),
  `make_schedule`, `param_paths`, `resolve_mults`;
- `objective`: `make_loss_fn` / `LossSpec`, a `jaxpu.losses` loss reduced
  over the valid elements of the global batch (`"mean"`, or Caffe's
  per-image `"mean_per_example"` / `"sum_per_example"`), and `valid_mask`;
- `steps`: `TrainState`, `create_train_state`, the per-device `train_step` and
  `eval_step` (pmap style, `pmean` over the axis "batch") and their
  `jax.jit(jax.shard_map(...))` forms `make_train_step` / `make_eval_step`
  (with gradient accumulation over `microbatches`), `evaluate`, the XLA
  compiler options;
- `loop`: `fit` (logging, evaluation, checkpoints, resume, preemption).

Meshes, shardings and host↔device transfer live in `jaxpu.parallel` and are
re-exported here (`train.make_mesh`, `train.shard_batch`, ...).
"""

from jaxpu.parallel import AXIS
from jaxpu.parallel import batch_sharding
from jaxpu.parallel import host_array
from jaxpu.parallel import make_mesh
from jaxpu.parallel import replicate
from jaxpu.parallel import replicated_sharding
from jaxpu.parallel import shard_batch
from jaxpu.parallel import to_host
from jaxpu.train.loop import TrainingDiverged
from jaxpu.train.loop import TrainingPreempted
from jaxpu.train.loop import fit
from jaxpu.train.objective import LossSpec
from jaxpu.train.objective import REDUCTIONS
from jaxpu.train.objective import VOID_LABEL
from jaxpu.train.objective import make_loss_fn
from jaxpu.train.objective import valid_mask
from jaxpu.train.optimizers import make_optimizer
from jaxpu.train.optimizers import make_schedule
from jaxpu.train.optimizers import param_paths
from jaxpu.train.optimizers import resolve_mults
from jaxpu.train.steps import CPU_COMPILER_OPTIONS
from jaxpu.train.steps import DEFAULT_PRNG_IMPL
from jaxpu.train.steps import TrainState
from jaxpu.train.steps import create_train_state
from jaxpu.train.steps import default_compiler_options
from jaxpu.train.steps import eval_step
from jaxpu.train.steps import evaluate
from jaxpu.train.steps import make_eval_step
from jaxpu.train.steps import make_train_step
from jaxpu.train.steps import train_step
