"""The one rollout engine: ``lax.scan`` over steps, batched envs under ``vmap``.

Everything that steps an environment goes through ``reset`` and ``rollout``. The batch axis
B is flat (tasks x envs per task): ``env_params`` carries one task per env slot, so an env is
always stepped with its own task, and auto-reset (gymnax's ``step``) keeps that task. For a
per-task policy (MAML's adapted parameters) ``vmap`` ``rollout`` over tasks instead.

A policy is ``policy(carry, obs [B, ...], first [B], key) -> (carry, action [B, ...], extras)``;
``first`` marks observations that start a new episode, where recurrent policies reset memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from metajax.envs.core import EnvParams, MetaEnv
from metajax.types import RolloutState, Transition

Policy = Callable[[Any, jax.Array, jax.Array, jax.Array], tuple[Any, jax.Array, dict]]


def reset(env: MetaEnv, env_params: EnvParams, key: jax.Array, policy_carry=None) -> RolloutState:
    """Resets a batch of envs, one per leading entry of ``env_params``."""
    batch = jax.tree.leaves(env_params)[0].shape[0]
    obs, env_state = jax.vmap(env.reset)(jax.random.split(key, batch), env_params)
    return RolloutState(env_state, obs, jnp.ones((batch,), jnp.bool_), policy_carry)


def rollout(
    env: MetaEnv,
    policy: Policy,
    state: RolloutState,
    env_params: EnvParams,
    key: jax.Array,
    num_steps: int,
) -> tuple[RolloutState, Transition]:
    """Steps the batch ``num_steps`` times; returns the final state and ``[T, B]`` transitions."""
    batch = state.obs.shape[0]

    def one_step(state: RolloutState, key: jax.Array):
        key_policy, key_env = jax.random.split(key)
        carry, action, extras = policy(state.policy_carry, state.obs, state.first, key_policy)
        next_obs, env_state, reward, terminated, truncated, info = jax.vmap(env.step)(
            jax.random.split(key_env, batch), state.env_state, action, env_params
        )
        final_obs = info.pop("final_observation")
        transition = Transition(
            obs=state.obs,
            action=action,
            reward=reward.astype(jnp.float32),
            terminated=terminated,
            truncated=truncated,
            next_obs=final_obs,
            info=info,
            extras=extras,
        )
        done = terminated | truncated
        return RolloutState(env_state, next_obs, done, carry), transition

    return jax.lax.scan(one_step, state, jax.random.split(key, num_steps))


def episode_returns(transitions: Transition, num_episodes: int) -> jax.Array:
    """Return of each of the first ``num_episodes`` episodes per env: ``[B, num_episodes]``.

    Steps after the last counted episode are ignored; an unfinished episode counts what it has.
    """
    done = transitions.done.astype(jnp.int32)  # [T, B]
    episode_index = jnp.cumsum(done, axis=0) - done  # index of the episode each step belongs to
    one_hot = jax.nn.one_hot(episode_index, num_episodes, dtype=transitions.reward.dtype)
    return jnp.einsum("tb,tbk->bk", transitions.reward, one_hot)
