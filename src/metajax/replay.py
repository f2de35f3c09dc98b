"""Replay in pure JAX: per-task circular buffers, preallocated, living in the training state.

A ``ReplayBuffer`` holds one circular buffer per task: every leaf of ``data`` is shaped
``[tasks, capacity, ...]``; ``insert`` and ``size`` are ``[tasks]``. All functions are pure and
vmapped over the task axis, so the buffers shard over devices along that axis and an orbax
checkpoint of the state holds them (a resumed run samples exactly what it would have sampled).

Writes of ``n`` items per task go to slots ``insert, insert + 1, ... (mod capacity)``; the oldest
items are overwritten once a buffer is full. Sampling draws uniformly, with replacement, from the
``size`` valid items of each task.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metajax.errors import ConfigError


class Experience(NamedTuple):
    """The items a replay buffer stores for off-policy RL and context encoders."""

    obs: jax.Array  # [..., obs_dim]
    action: jax.Array  # [..., action_dim]
    reward: jax.Array  # [...]
    next_obs: jax.Array  # [..., obs_dim] the observation after the action (before auto-reset)
    terminated: jax.Array  # [...] float 1.0 where the episode ended in a terminal state


def experience_example(obs_dim: int, action_dim: int) -> Experience:
    """One zero ``Experience`` item (the shapes ``init`` allocates for)."""
    return Experience(
        obs=jnp.zeros((obs_dim,)),
        action=jnp.zeros((action_dim,)),
        reward=jnp.zeros(()),
        next_obs=jnp.zeros((obs_dim,)),
        terminated=jnp.zeros(()),
    )


class ReplayBuffer(NamedTuple):
    """Circular buffers, one per task."""

    data: Any  # pytree, leaves [tasks, capacity, ...]
    insert: jax.Array  # [tasks] int32, the slot the next item goes to
    size: jax.Array  # [tasks] int32, the number of valid items (<= capacity)


def init(example: Any, num_tasks: int, capacity: int) -> ReplayBuffer:
    """Empty buffers for ``num_tasks`` tasks, each holding ``capacity`` items like ``example``."""
    if num_tasks < 1 or capacity < 1:
        raise ConfigError(f"replay needs tasks >= 1 and capacity >= 1, got {num_tasks}, {capacity}")
    data = jax.tree.map(
        lambda x: jnp.zeros((num_tasks, capacity, *jnp.shape(x)), jnp.asarray(x).dtype), example
    )
    zeros = jnp.zeros((num_tasks,), jnp.int32)
    return ReplayBuffer(data, zeros, zeros)


def capacity(buffer: ReplayBuffer) -> int:
    """Items each task's buffer can hold."""
    return jax.tree.leaves(buffer.data)[0].shape[1]


def _add_one(data, insert, size, items):
    """Writes ``items`` (leaves [n, ...]) into one task's circular buffer."""
    cap = jax.tree.leaves(data)[0].shape[0]
    n = jax.tree.leaves(items)[0].shape[0]
    slots = (insert + jnp.arange(n)) % cap  # [n], distinct because n <= capacity
    data = jax.tree.map(lambda d, x: d.at[slots].set(x.astype(d.dtype)), data, items)
    return data, (insert + n) % cap, jnp.minimum(size + n, cap)


def add(buffer: ReplayBuffer, items: Any) -> ReplayBuffer:
    """Appends ``items`` (leaves ``[tasks, n, ...]``, n <= capacity) to every task's buffer."""
    n = jax.tree.leaves(items)[0].shape[1]
    if n > capacity(buffer):
        raise ConfigError(
            f"cannot add {n} items at once to a buffer of capacity {capacity(buffer)}"
        )
    data, insert, size = jax.vmap(_add_one)(buffer.data, buffer.insert, buffer.size, items)
    return ReplayBuffer(data, insert, size)


def select(buffer: ReplayBuffer, task_index: jax.Array) -> ReplayBuffer:
    """The buffers of the tasks ``task_index`` [m] (a gather along the task axis)."""
    return jax.tree.map(lambda x: x[task_index], buffer)


def scatter(buffer: ReplayBuffer, task_index: jax.Array, part: ReplayBuffer) -> ReplayBuffer:
    """Writes the buffers ``part`` [m] back at tasks ``task_index`` [m] (distinct indices)."""
    return jax.tree.map(lambda x, p: x.at[task_index].set(p), buffer, part)


def add_at(buffer: ReplayBuffer, task_index: jax.Array, items: Any) -> ReplayBuffer:
    """Appends ``items`` (leaves ``[m, n, ...]``) to the buffers of tasks ``task_index`` [m].

    The indices must be distinct (a repeated task would keep only one of its writes).
    """
    return scatter(buffer, task_index, add(select(buffer, task_index), items))


def clear_at(buffer: ReplayBuffer, task_index: jax.Array) -> ReplayBuffer:
    """Empties the buffers of tasks ``task_index`` [m] (their old items are never sampled again)."""
    zeros = jnp.zeros(task_index.shape, jnp.int32)
    return buffer._replace(
        insert=buffer.insert.at[task_index].set(zeros), size=buffer.size.at[task_index].set(zeros)
    )


def _sample_one(data, size, key, n: int):
    index = jax.random.randint(key, (n,), 0, jnp.maximum(size, 1))
    return jax.tree.map(lambda d: d[index], data)


def sample(buffer: ReplayBuffer, keys: jax.Array, n: int) -> Any:
    """``n`` items per task, uniformly with replacement: leaves ``[tasks, n, ...]``.

    ``keys`` [tasks] gives each task its own key, so a task's sample does not depend on how
    the task axis is split over devices. An empty buffer yields its (zero) slot 0.
    """
    return jax.vmap(_sample_one, (0, 0, 0, None))(buffer.data, buffer.size, keys, n)


def sample_at(buffer: ReplayBuffer, task_index: jax.Array, keys: jax.Array, n: int) -> Any:
    """``n`` items from each of the tasks ``task_index`` [m] (repeats allowed): ``[m, n, ...]``."""
    return sample(select(buffer, task_index), keys, n)


def latest(buffer: ReplayBuffer, n: int) -> tuple[Any, jax.Array]:
    """The last ``n`` items written per task, oldest first, and their validity mask [tasks, n]."""
    cap = capacity(buffer)

    def one(data, insert, size):
        index = (insert - n + jnp.arange(n)) % cap
        valid = jnp.arange(n) >= n - size
        return jax.tree.map(lambda d: d[index], data), valid

    return jax.vmap(one)(buffer.data, buffer.insert, buffer.size)


__all__ = [
    "Experience",
    "ReplayBuffer",
    "add",
    "add_at",
    "capacity",
    "clear_at",
    "experience_example",
    "init",
    "latest",
    "sample",
    "sample_at",
    "scatter",
    "select",
]
