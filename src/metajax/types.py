"""Shared pytrees: transitions and rollout state.

Batch shapes: a rollout returns leaves shaped ``[T, B, ...]`` (time first, as ``lax.scan``
stacks them); learners reshape B into ``[tasks, envs_per_task]`` where they need to.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax


class Transition(NamedTuple):
    """One step of a batch of envs. Leaves are ``[B, ...]``, or ``[T, B, ...]`` from a rollout."""

    obs: jax.Array  # observation the action was taken in
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array  # the env's episode ended in a terminal state
    truncated: jax.Array  # the env's episode hit its horizon
    next_obs: jax.Array  # observation after the action, before any auto-reset (s')
    info: dict[str, jax.Array]  # the env's info (for a TrialWrapper: episode_done, ...)
    extras: dict[str, jax.Array]  # what the policy returned (log_prob, value, ...)

    @property
    def done(self) -> jax.Array:
        """The env's episode ended (terminated or truncated); the next obs is a reset one."""
        return self.terminated | self.truncated


class RolloutState(NamedTuple):
    """What a rollout carries between steps and between calls."""

    env_state: Any  # [B] env states
    obs: jax.Array  # [B, ...] current observations
    first: jax.Array  # [B] the current observation starts a new episode of the env
    policy_carry: Any  # the policy's recurrent memory (None for feed-forward policies)
