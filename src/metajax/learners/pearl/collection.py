"""PEARL's data collection: episodes with a fixed z, the prior/posterior schedule, task slots.

On each collected task: ``prior`` episodes with z ~ N(0, I) (into the RL and context buffers),
then ``context posterior`` episodes with z ~ q(z | c), c sampled from the context buffer anew
before each episode (into both buffers: the reference's ``num_steps_posterior``), then
``posterior`` episodes with z ~ q(z | c), c sampled from the final context buffer (RL buffer
only: the reference's ``num_extra_rl_steps_posterior``). z is redrawn every episode. (The
reference starts each posterior phase with one prior-z episode; here every posterior-phase
episode uses q(z | c).)

Episode e of a task uses the keys ``fold_in(key, e)``: its z noise ``fold_in(., 7)``, its
context draw ``fold_in(., 8)``, the episode itself ``rollout.run``.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from metajax import distributed, replay, rollout
from metajax.envs.core import EnvParams
from metajax.learners import soft_ac
from metajax.learners.pearl import latent
from metajax.learners.pearl.config import DENSE_REWARD_KEY, Params, Setup, State


def stratified_tasks(keys: jax.Array, pool_size: int) -> jax.Array:
    """Task index per slot j of B = len(keys): uniform in the pool block [jP/B, (j+1)P/B).

    Blocks are disjoint when P >= B (distinct tasks); each has at least one task.
    """
    slots = keys.shape[0]
    j = jnp.arange(slots)
    low = j * pool_size // slots
    high = jnp.maximum((j + 1) * pool_size // slots, low + 1)
    draw = jax.vmap(lambda k, n: jax.random.randint(k, (), 0, n))(keys, high - low)
    return (low + draw).astype(jnp.int32)


def act(setup: Setup, actor_params, z: jax.Array, deterministic: bool, carry, obs, first, keys):
    """pi(a | s, z) as a ``rollout`` policy (bind the first four arguments); z [B, L]."""
    del first
    x = jnp.concatenate([soft_ac.flat_obs(obs, 1), z], -1)
    action, extras = soft_ac.act(setup.ac, actor_params, x, keys, deterministic)
    return carry, action, extras


def run_episode(setup: Setup, actor_params, task: EnvParams, z, keys, deterministic: bool):
    """One episode (H steps from a reset) per task [B] with latent z [B, L]: ``[H, B]``."""
    policy = partial(act, setup, actor_params, z, deterministic)
    _, traj = rollout.run(setup.env, policy, task, keys, setup.env.horizon)
    return traj


def rl_items(setup: Setup, traj, items: replay.Experience) -> replay.Experience:
    """The RL buffer's items: ``items`` (the env's reward), or with the dense reward."""
    if setup.config.rl_reward != "dense":
        return items
    dense = jnp.swapaxes(traj.info[DENSE_REWARD_KEY], 0, 1).astype(jnp.float32)  # [B, H]
    return items._replace(reward=dense)


def prior_episode(setup: Setup, params: Params, task, keys, carry, e):
    """Episode ``e`` with z ~ N(0, I), into both buffers (a ``lax.scan`` body)."""
    rl_buf, ctx_buf = carry
    ep_keys = rollout.fold_in_each(keys, e)
    z = soft_ac.normal_per_env(rollout.fold_in_each(ep_keys, 7), (setup.config.latent_size,))
    traj = run_episode(setup, params.actor, task, z, ep_keys, deterministic=False)
    items = soft_ac.replay_items(traj)
    returns = rollout.episode_returns(traj, 1)[:, 0]
    rl_buf = replay.add(rl_buf, rl_items(setup, traj, items))
    return (rl_buf, replay.add(ctx_buf, items)), returns


def posterior_episode(setup: Setup, params: Params, task, keys, e, ctx_buf):
    """Episode ``e`` with z ~ q(z | c), c sampled from ``ctx_buf``: (traj, items, returns)."""
    config = setup.config
    ep_keys = rollout.fold_in_each(keys, e)
    ctx_keys = rollout.fold_in_each(ep_keys, 8)
    context = replay.sample(ctx_buf, ctx_keys, config.context_batch_size)
    stats = latent.encode(setup.encoder, params.encoder, context, config.context_next_obs)
    mean, var = latent.posterior(stats)
    noise = soft_ac.normal_per_env(rollout.fold_in_each(ep_keys, 7), (config.latent_size,))
    z = latent.sample(mean, var, noise)
    traj = run_episode(setup, params.actor, task, z, ep_keys, deterministic=False)
    return traj, soft_ac.replay_items(traj), rollout.episode_returns(traj, 1)[:, 0]


def collect(
    setup: Setup,
    params: Params,
    rl_buf: replay.ReplayBuffer,
    ctx_buf: replay.ReplayBuffer,
    task: EnvParams,
    keys: jax.Array,
    prior_episodes: int,
    posterior_episodes: int,
    context_posterior_episodes: int = 0,
):
    """The collection schedule (module docstring) on the B tasks of ``task``, ``keys`` [B].

    Buffers, tasks and keys are those of the B collected tasks; returns the buffers and the
    mean episode returns (the env's reward) of the prior and of the posterior episodes.
    """

    def context_posterior_episode(carry, e):
        rl_buf, ctx_buf = carry
        traj, items, returns = posterior_episode(
            setup, params, task, keys, prior_episodes + e, ctx_buf
        )
        rl_buf = replay.add(rl_buf, rl_items(setup, traj, items))
        return (rl_buf, replay.add(ctx_buf, items)), returns

    def rl_posterior_episode(rl_buf, e):
        episode = prior_episodes + context_posterior_episodes + e
        traj, items, returns = posterior_episode(setup, params, task, keys, episode, ctx_buf)
        return replay.add(rl_buf, rl_items(setup, traj, items)), returns

    (rl_buf, ctx_buf), prior_returns = jax.lax.scan(
        partial(prior_episode, setup, params, task, keys),
        (rl_buf, ctx_buf),
        jnp.arange(prior_episodes),
    )
    posterior_returns = []
    if context_posterior_episodes:
        (rl_buf, ctx_buf), returns = jax.lax.scan(
            context_posterior_episode, (rl_buf, ctx_buf), jnp.arange(context_posterior_episodes)
        )
        posterior_returns.append(returns)
    if posterior_episodes:
        rl_buf, returns = jax.lax.scan(rl_posterior_episode, rl_buf, jnp.arange(posterior_episodes))
        posterior_returns.append(returns)
    posterior_return = (
        jnp.mean(jnp.concatenate(posterior_returns)) if posterior_returns else jnp.float32(0.0)
    )
    return rl_buf, ctx_buf, jnp.mean(prior_returns), posterior_return


def shard_offset(setup: Setup, axis_name: str | None) -> jax.Array:
    """Pool index of this shard's first task."""
    if axis_name is None:
        return jnp.int32(0)
    return jax.lax.axis_index(axis_name) * distributed.local_size(setup.pool_size, axis_name)


def collect_on_pool(setup: Setup, state: State, key: jax.Array, axis_name: str | None):
    """One iteration's collection on ``collect_tasks`` stratified pool tasks (this shard's
    share): their context buffers emptied, then ``collect``. Returns the updated buffers and
    the prior and posterior returns."""
    config, horizon = setup.config, setup.env.horizon
    key_select, key_run = jax.random.split(key)
    chosen = stratified_tasks(jax.random.split(key_select, config.collect_tasks), setup.pool_size)
    chosen, run_keys = distributed.local_slice(
        (chosen, jax.random.split(key_run, config.collect_tasks)), axis_name
    )
    chosen = chosen - shard_offset(setup, axis_name)
    task = jax.tree.map(lambda x: x[chosen], state.pool)
    rl_part = replay.select(state.rl_buffer, chosen)
    ctx_part = replay.select(state.context_buffer, chosen)
    ctx_part = replay.clear_at(ctx_part, jnp.arange(chosen.shape[0]))
    rl_part, ctx_part, prior_return, posterior_return = collect(
        setup,
        state.params,
        rl_part,
        ctx_part,
        task,
        run_keys,
        config.prior_steps // horizon,
        config.posterior_steps // horizon,
        config.posterior_context_steps // horizon,
    )
    rl_buffer = replay.scatter(state.rl_buffer, chosen, rl_part)
    ctx_buffer = replay.scatter(state.context_buffer, chosen, ctx_part)
    return rl_buffer, ctx_buffer, prior_return, posterior_return
