"""The meta-env interface: environments whose task lives in ``EnvParams``, task distributions.

An environment is a gymnax ``Environment`` (1.x API) whose ``EnvParams`` holds the *task* as
pytree leaves, so a batch of tasks is one ``EnvParams`` with a leading axis and ``vmap`` runs
thousands of them at once. ``reset`` never resamples the task: the task changes only when the
caller passes other params. ``step`` is gymnax's (same signature and returns) with the state
after a done step taken from ``MetaEnv.auto_reset``: a fresh ``reset_env`` unless the env
restarts from a start state cached at ``reset`` (the brax families, as brax's own training
wrapper does).

A ``TaskDistribution`` samples tasks for meta-training and holds a fixed, held-out test split
(and optionally an out-of-distribution split) for evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment as gymnax_env
from gymnax.environments import spaces

EnvParams = Any  # a flax.struct dataclass of task leaves; batched tasks carry a leading axis

TRAIN_SPLIT, TEST_SPLIT, OOD_SPLIT = 0, 1, 2


@struct.dataclass
class EnvState:
    """Base env state: every env counts steps within its episode."""

    time: jax.Array


class MetaEnv(gymnax_env.Environment):
    """A gymnax environment with a fixed per-episode horizon and a task in ``EnvParams``.

    Subclasses implement ``reset_env``, ``step_env``, ``observation_space`` and
    ``action_space``; ``horizon`` is static (it fixes rollout shapes), so it lives on the env,
    not in the params.
    """

    horizon: int = 1
    # True when ``auto_reset`` restarts from a start state cached at ``reset`` rather than a
    # fresh ``reset_env``: every episode of an env slot then starts where its first one did.
    reuses_reset_state: bool = False

    @partial(jax.jit, static_argnames=("self",))
    def step(
        self,
        key: jax.Array,
        state: EnvState,
        action: int | float | jax.Array,
        params: EnvParams | None = None,
    ) -> tuple[Any, EnvState, jax.Array, jax.Array, jax.Array, dict[Any, Any]]:
        """gymnax 1.x ``step``: the same arguments, returns and info, with auto-reset.

        Returns ``(obs, state, reward, terminated, truncated, info)``; info adds
        ``terminated``, ``truncated`` and ``final_observation`` (the observation before the
        reset). Where the episode ended, obs and state are those of ``auto_reset``, which
        keeps ``params`` (the task); by default that is a fresh ``reset_env``, as in gymnax.
        """
        if params is None:
            params = self.default_params
        key_step, key_reset = jax.random.split(key)
        obs_st, state_st, reward, terminated, info = self.step_env(key_step, state, action, params)
        truncated = self.is_truncated(state_st, params)
        done = jnp.logical_or(terminated, truncated)
        obs_re, state_re = self.auto_reset(key_reset, state_st, params)
        state = jax.tree.map(lambda x, y: jax.lax.select(done, x, y), state_re, state_st)
        obs = jax.tree.map(lambda x, y: jax.lax.select(done, x, y), obs_re, obs_st)
        info = {
            **info,
            "terminated": terminated,
            "truncated": truncated,
            "final_observation": obs_st,
        }
        return obs, state, reward, terminated, truncated, info

    def auto_reset(
        self, key: jax.Array, state: EnvState, params: EnvParams
    ) -> tuple[jax.Array, EnvState]:
        """The observation and state that follow the end of ``state``'s episode, same task.

        ``step`` computes it at every step and keeps it where the episode ended; the default
        is ``reset_env(key, params)``. Envs whose reset is expensive override it to restart
        from a start state cached in ``state`` (and set ``reuses_reset_state``).
        """
        del state
        return self.reset_env(key, params)

    def is_truncated(self, state: EnvState, params: EnvParams) -> jax.Array:
        """An episode is truncated when it reaches the env's horizon."""
        del params
        return state.time >= self.horizon

    def observation_space(self, params: EnvParams | None = None) -> spaces.Space:
        raise NotImplementedError

    def action_space(self, params: EnvParams | None = None) -> spaces.Space:
        raise NotImplementedError

    def oracle_episode_return(self, params: EnvParams) -> jax.Array | None:
        """Expected return of one episode for a policy that knows the task, or None if unknown."""
        del params
        return None


@dataclass(frozen=True)
class TaskDistribution:
    """Samples tasks (``EnvParams``) for meta-training; holds fixed held-out splits.

    Args:
        sample_task: draws one task from a key.
        num_train_tasks: size of a fixed training pool (PEARL-style splits); None draws
            fresh tasks at every call.
        num_test_tasks: size of the held-out test split.
        split_seed: seed of the fixed pools; the test split never overlaps the training pool.
        sample_ood_task: draws one task from a shifted, out-of-distribution range, if any.
    """

    sample_task: Callable[[jax.Array], EnvParams]
    num_train_tasks: int | None = None
    num_test_tasks: int = 1000
    split_seed: int = 0
    sample_ood_task: Callable[[jax.Array], EnvParams] | None = None

    def _pool(self, split: int, n: int, sampler: Callable[[jax.Array], EnvParams]) -> EnvParams:
        key = jax.random.fold_in(jax.random.key(self.split_seed), split)
        return jax.vmap(sampler)(jax.random.split(key, n))

    def sample(self, key: jax.Array, n: int) -> EnvParams:
        """Draws ``n`` training tasks: fresh ones, or uniformly from the fixed training pool."""
        if self.num_train_tasks is None:
            return jax.vmap(self.sample_task)(jax.random.split(key, n))
        index = jax.random.randint(key, (n,), 0, self.num_train_tasks)
        return jax.tree.map(lambda x: x[index], self.train_tasks())

    def train_tasks(self) -> EnvParams:
        """The fixed training pool (only for distributions with ``num_train_tasks``)."""
        if self.num_train_tasks is None:
            raise ValueError("this task distribution has no fixed training pool")
        return self._pool(TRAIN_SPLIT, self.num_train_tasks, self.sample_task)

    def test_tasks(self, n: int | None = None) -> EnvParams:
        """The fixed held-out test split (its first ``n`` tasks)."""
        n = self.num_test_tasks if n is None else n
        return self._pool(TEST_SPLIT, n, self.sample_task)

    def ood_test_tasks(self, n: int | None = None) -> EnvParams | None:
        """A fixed out-of-distribution test split, or None if the family declares none."""
        if self.sample_ood_task is None:
            return None
        n = self.num_test_tasks if n is None else n
        return self._pool(OOD_SPLIT, n, self.sample_ood_task)


def check_splits(num_train_tasks: int | None, num_test_tasks: int) -> None:
    """Raises ValueError unless the splits can be drawn: a pool of >= 1 (or None), >= 1 test."""
    if num_train_tasks is not None and num_train_tasks < 1:
        raise ValueError(f"num_train_tasks must be at least 1 or None, got {num_train_tasks}")
    if num_test_tasks < 1:
        raise ValueError(f"num_test_tasks must be at least 1, got {num_test_tasks}")


def num_tasks(params: EnvParams) -> int:
    """The size of the leading (task) axis of a batch of tasks."""
    return jax.tree.leaves(params)[0].shape[0]


def obs_size(env: MetaEnv, params: EnvParams | None = None) -> int:
    """Number of entries of one flattened observation (static)."""
    return math.prod(env.observation_space(params).shape)


def is_discrete(space: spaces.Space) -> bool:
    """True for a Discrete space (categorical actions), False for Box."""
    return isinstance(space, spaces.Discrete)


def flat_action_dim(space: spaces.Space) -> int:
    """Width of an action once encoded for a network input (one-hot for Discrete)."""
    if isinstance(space, spaces.Discrete):
        return space.n
    return math.prod(space.shape)  # static: callers use it as a shape inside jit


def encode_action(space: spaces.Space, action: jax.Array) -> jax.Array:
    """An action as a float vector: one-hot for Discrete, flattened for Box."""
    if isinstance(space, spaces.Discrete):
        return jax.nn.one_hot(action, space.n, dtype=jnp.float32)
    return jnp.reshape(action, (-1,)).astype(jnp.float32)
