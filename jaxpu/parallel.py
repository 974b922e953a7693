"""Devices, meshes, shardings and host↔device transfer (training and data both use them).

jaxpu runs data-parallel over a 1-D mesh whose one axis is `AXIS` ("batch"):
batches are split along their leading axis over it (`batch_sharding`), the
training state is replicated (`replicated_sharding`). Everything here also
works multi-host: after `jax.distributed.initialize()`, `make_mesh()` spans
every process's devices, each process passes its own consecutive slice of the
global batch to `shard_batch` (`jax.make_array_from_process_local_data`), and
`to_host` reads replicated values from this host's copy.

Imports only JAX and NumPy.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

AXIS = "batch"


def make_mesh(devices: Optional[Iterable[jax.Device]] = None) -> jax.sharding.Mesh:
  """A 1-D mesh with axis `"batch"` (Auto axis type) over `devices` (default: all)."""
  devices = list(jax.devices() if devices is None else devices)
  if not devices:
    raise ValueError("make_mesh: no devices given.")
  return jax.sharding.Mesh(np.array(devices), (AXIS,),
                           axis_types=(jax.sharding.AxisType.Auto,))


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  """Leading (batch) axis split over the mesh axis `"batch"`."""
  return NamedSharding(mesh, P(AXIS))


def replicated_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  """A full copy on every device of the mesh."""
  return NamedSharding(mesh, P())


def replicate(tree: Any, mesh: jax.sharding.Mesh) -> Any:
  """Places every leaf of `tree` fully replicated on `mesh` (works multi-host).

  Each process must pass the same values (e.g. params initialised from the
  same seed).
  """
  sharding = replicated_sharding(mesh)

  def put(x):
    if isinstance(x, jax.Array) and x.sharding == sharding:
      return x
    if jnp.issubdtype(jnp.result_type(x), jax.dtypes.prng_key):
      return jax.random.wrap_key_data(put(jax.random.key_data(x)),
                                      impl=jax.random.key_impl(x))
    host = host_array(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
  return jax.tree.map(put, tree)


def shard_batch(batch: Mapping[str, Any], mesh: jax.sharding.Mesh) -> dict:
  """Global device-sharded arrays from this process's slice of a batch.

  On one process the slice is the whole batch; with several processes each
  passes its own consecutive part (process 0 first). Leaves that already are
  `jax.Array`s are returned unchanged.
  """
  sharding = batch_sharding(mesh)

  def put(x):
    if isinstance(x, jax.Array):
      return x
    return jax.make_array_from_process_local_data(sharding, np.asarray(x))
  return jax.tree.map(put, dict(batch))


def host_array(x) -> np.ndarray:
  """A replicated array's value on this host (also for arrays spanning processes)."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    x = x.addressable_data(0)
  return np.asarray(jax.device_get(x))


def to_host(tree: Any) -> Any:
  """NumPy copies of a tree of replicated arrays (params, metrics), also multi-host.

  PRNG keys come back as their raw key data.
  """
  def leaf(x):
    if jnp.issubdtype(jnp.result_type(x), jax.dtypes.prng_key):
      x = jax.random.key_data(x)
    return host_array(x)
  return jax.tree.map(leaf, tree)
