"""Data parallelism over the task axis: a 1-D device mesh, ``shard_map`` steps, multi-host start.

Inside a learner, ``local_slice`` keeps this shard's part of a globally drawn batch and
``pmean`` averages gradients and metrics across shards; both are identities when
``axis_name`` is None, so one code path serves one device and many.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp

from metajax.errors import ConfigError

TASK_AXIS = "tasks"


def shard_count(axis_name: str | None) -> int:
    """Number of shards of the task axis (1 outside ``shard_map``)."""
    return 1 if axis_name is None else jax.lax.axis_size(axis_name)


def local_size(global_size: int, axis_name: str | None) -> int:
    """This shard's share of ``global_size`` tasks; the total must divide evenly."""
    shards = shard_count(axis_name)
    if global_size % shards:
        raise ConfigError(
            f"the task count {global_size} is not divisible by the device count {shards}"
        )
    return global_size // shards


def local_slice(tree, axis_name: str | None):
    """The slice of every leaf's leading (global task) axis that belongs to this shard."""
    if axis_name is None:
        return tree
    shards = shard_count(axis_name)
    index = jax.lax.axis_index(axis_name)

    def take(x):
        size = local_size(x.shape[0], axis_name)
        return jax.lax.dynamic_slice_in_dim(x, index * size, size, axis=0)

    return jax.tree.map(take, tree) if shards > 1 else tree


def local_task_draw(
    tasks, task_key: jax.Array, env_key: jax.Array, num_tasks: int, axis_name: str | None
):
    """This shard's slice of the global draw: ``num_tasks`` tasks and one env key per task.

    Every shard draws the same global batch from the replicated keys and keeps its slice, so
    1 and N devices see the same tasks and per-task randomness. Returns ``(tasks, keys)``.
    """
    global_tasks = tasks.sample(task_key, num_tasks)
    global_keys = jax.random.split(env_key, num_tasks)
    return local_slice((global_tasks, global_keys), axis_name)


def standardize(x: jax.Array, mask: jax.Array, axis_name: str | None, eps: float = 1e-8):
    """``(x - mean) / (std + eps)`` with mean and std over the masked entries of all shards."""
    count = psum(jnp.sum(mask), axis_name)
    mean = psum(jnp.sum(x * mask), axis_name) / count
    var = psum(jnp.sum(((x - mean) * mask) ** 2), axis_name) / count
    return (x - mean) / (jnp.sqrt(var) + eps)


def pmean(tree, axis_name: str | None):
    """Mean over shards (identity with one shard)."""
    if axis_name is None:
        return tree
    return jax.lax.pmean(tree, axis_name)


def psum(tree, axis_name: str | None):
    """Sum over shards (identity with one shard)."""
    if axis_name is None:
        return tree
    return jax.lax.psum(tree, axis_name)


def partition_like(tree, axis_name: str | None = None):
    """A pytree of ``jax.P`` specs: every leaf sharded over ``axis_name``, or replicated (None)."""
    spec = jax.P() if axis_name is None else jax.P(axis_name)
    return jax.tree.map(lambda _: spec, tree)


def make_task_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
    """A 1-D mesh named ``tasks`` over the first ``num_devices`` devices (default: all)."""
    available = jax.device_count()
    num_devices = available if num_devices is None else num_devices
    if not 1 <= num_devices <= available:
        raise ConfigError(f"asked for {num_devices} devices; {available} are available")
    return jax.make_mesh((num_devices,), (TASK_AXIS,), devices=jax.devices()[:num_devices])


def check_divisible(num_tasks: int, mesh: jax.sharding.Mesh) -> None:
    """Raises a ConfigError when ``num_tasks`` does not split evenly over the mesh."""
    devices = mesh.devices.size
    if num_tasks % devices:
        raise ConfigError(
            f"the task count {num_tasks} is not divisible by the device count {devices}; "
            f"use a multiple of {devices}"
        )


def shard_step(
    make_train_step: Callable[[str | None], Callable],
    mesh: jax.sharding.Mesh,
    state_partition=None,
) -> Callable:
    """``train_step(state, key)`` run under ``jax.shard_map`` with the task axis sharded.

    The key and (by default) the state are replicated; a learner that shards part of its state
    (PEARL's per-task replay) gives ``state_partition(state, axis) -> pytree of jax.P``.
    With a one-device mesh the plain step is returned.
    """
    if mesh.devices.size == 1:
        return make_train_step(None)
    step = make_train_step(TASK_AXIS)

    def sharded(state, key):
        state_spec = jax.P() if state_partition is None else state_partition(state, TASK_AXIS)
        return jax.shard_map(
            step,
            mesh=mesh,
            in_specs=(state_spec, jax.P()),
            out_specs=(state_spec, jax.P()),
            check_vma=False,
        )(state, key)

    return sharded


def initialize_multihost(coordinator: str, num_processes: int, process_id: int) -> None:
    """Joins a multi-process JAX run (``jax.distributed.initialize``); CPU uses gloo collectives."""
    from metajax import multihost

    error = multihost.start(coordinator, num_processes, process_id)
    if error is not None:
        raise ConfigError(error)


def device_info() -> dict[str, str]:
    """The device that ran: platform, device kind and count, CPU model and core count."""
    cpu_model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device = jax.devices()[0]
    return {
        "platform": device.platform,
        "device_kind": device.device_kind,
        "num_devices": str(jax.device_count()),
        "cpu_model": cpu_model,
        "cpu_count": str(os.cpu_count()),
    }


__all__ = [
    "partition_like",
    "device_info",
    "TASK_AXIS",
    "check_divisible",
    "initialize_multihost",
    "local_size",
    "local_slice",
    "local_task_draw",
    "standardize",
    "make_task_mesh",
    "pmean",
    "psum",
    "shard_count",
    "shard_step",
]
