"""The one rollout engine: ``lax.scan`` over steps, batched envs under ``vmap``.

Everything that steps an environment goes through ``reset`` and ``rollout``. The batch axis
B is flat (tasks x envs per task): ``env_params`` carries one task per env slot, so an env is
always stepped with its own task, and auto-reset (gymnax's ``step``) keeps that task. For a
per-task policy (MAML's adapted parameters) ``vmap`` ``rollout`` over tasks instead.

A policy is ``policy(carry, obs [B, ...], first [B], keys [B]) -> (carry, action, extras)``;
``first`` marks observations that start a new episode, where recurrent policies reset memory.

Randomness is per env slot: ``rollout`` takes one key per env and derives step t's keys with
``fold_in(key, t)``, so an env's trajectory does not depend on how the batch is split across
devices (draw the global keys, then keep a shard's slice with ``distributed.local_slice``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from metajax.envs.core import EnvParams, MetaEnv
from metajax.types import RolloutState, Transition

Policy = Callable[[Any, jax.Array, jax.Array, jax.Array], tuple[Any, jax.Array, dict]]


def fold_in_each(keys: jax.Array, data: int | jax.Array) -> jax.Array:
    """``fold_in(key, data)`` for every key of a batch ``keys`` [B]."""
    return jax.vmap(jax.random.fold_in, (0, None))(keys, data)


def reset(env: MetaEnv, env_params: EnvParams, keys: jax.Array, policy_carry=None) -> RolloutState:
    """Resets a batch of envs, one per leading entry of ``env_params``, with one key [B] each."""
    obs, env_state = jax.vmap(env.reset)(keys, env_params)
    return RolloutState(env_state, obs, jnp.ones((keys.shape[0],), jnp.bool_), policy_carry)


def rollout(
    env: MetaEnv,
    policy: Policy,
    state: RolloutState,
    env_params: EnvParams,
    keys: jax.Array,
    num_steps: int,
) -> tuple[RolloutState, Transition]:
    """Steps the batch ``num_steps`` times with per-env ``keys`` [B]; returns [T, B] transitions.

    Call it again with fresh keys to continue from the returned state.
    """

    def one_step(state: RolloutState, t: jax.Array):
        step_keys = fold_in_each(keys, t)
        split = jax.vmap(jax.random.split)(step_keys)  # [B, 2]
        carry, action, extras = policy(state.policy_carry, state.obs, state.first, split[:, 0])
        next_obs, env_state, reward, terminated, truncated, info = jax.vmap(env.step)(
            split[:, 1], state.env_state, action, env_params
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

    return jax.lax.scan(one_step, state, jnp.arange(num_steps))


def run(
    env: MetaEnv,
    policy: Policy,
    env_params: EnvParams,
    keys: jax.Array,
    num_steps: int,
    policy_carry=None,
) -> tuple[RolloutState, Transition]:
    """Resets a batch and rolls it out ``num_steps`` with one key per env [B].

    Env b resets with ``fold_in(keys[b], 0)`` and steps with ``fold_in(keys[b], 1)``, so its
    trajectory depends on its own key only (a shard's slice equals the full batch's).
    """
    start = reset(env, env_params, fold_in_each(keys, 0), policy_carry)
    return rollout(env, policy, start, env_params, fold_in_each(keys, 1), num_steps)


def run_from_key(
    env: MetaEnv,
    policy: Policy,
    env_params: EnvParams,
    key: jax.Array,
    num_steps: int,
    policy_carry=None,
) -> tuple[RolloutState, Transition]:
    """Resets a batch and rolls it out ``num_steps`` from one key (split into per-env keys)."""
    n = jax.tree.leaves(env_params)[0].shape[0]
    key_reset, key_run = jax.random.split(key)
    start = reset(env, env_params, jax.random.split(key_reset, n), policy_carry)
    return rollout(env, policy, start, env_params, jax.random.split(key_run, n), num_steps)


def episode_returns(transitions: Transition, num_episodes: int) -> jax.Array:
    """Return of each of the first ``num_episodes`` episodes per env: ``[B, num_episodes]``.

    Steps after the last counted episode are ignored; an unfinished episode counts what it has.
    """
    done = transitions.done.astype(jnp.int32)  # [T, B]
    episode_index = jnp.cumsum(done, axis=0) - done  # index of the episode each step belongs to
    one_hot = jax.nn.one_hot(episode_index, num_episodes, dtype=transitions.reward.dtype)
    return jnp.einsum("tb,tbk->bk", transitions.reward, one_hot)
