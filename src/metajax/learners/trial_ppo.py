"""PPO over whole trials, the outer loop of the in-context learners (RL², VariBAD).

A trial is K episodes of one task; its end is the only true episode end, so GAE runs across
the episode boundaries inside it and minibatches hold whole trials (a memory is re-run from
the trial's start in sequence mode). Leaves are ``[T, B, ...]``: time first, trials second.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from metajax import distributed, networks
from metajax.errors import ConfigError
from metajax.learners import ppo
from metajax.types import Transition


class Trials(NamedTuple):
    """Whole trials for the PPO loss; every leaf is ``[T, B, ...]``."""

    obs: jax.Array
    first: jax.Array  # the observation starts a new trial (memory reset)
    action: jax.Array
    old_log_prob: jax.Array
    old_value: jax.Array
    advantage: jax.Array  # standardized over the masked steps of all shards
    target: jax.Array  # GAE value target
    mask: jax.Array  # the step belongs to the first trial
    extras: dict  # what else the learner recorded while acting (VariBAD: the beliefs)


def trial_mask(trial_done: jax.Array) -> jax.Array:
    """[T, B] true for the steps of the first trial (up to and including its last step)."""
    done = trial_done.astype(jnp.int32)
    return (jnp.cumsum(done, axis=0) - done) == 0


def check_minibatches(num_tasks: int, num_minibatches: int, axis_name: str | None) -> None:
    """ConfigError when a shard's trials do not split into ``num_minibatches``."""
    batch = distributed.local_size(num_tasks, axis_name)
    if batch % num_minibatches:
        raise ConfigError(
            f"each device's {batch} tasks do not split into {num_minibatches} "
            f"minibatches; make num_tasks / devices a multiple of num_minibatches"
        )


def trials(
    traj: Transition, mask: jax.Array, config, axis_name: str | None, extras: dict | None = None
) -> Trials:
    """GAE over the whole trial (``config``: reward_scale, gamma, gae_lambda), standardized."""
    batch = traj.reward.shape[1]
    values = traj.extras["value"]  # [T, B]
    advantages, targets = ppo.compute_gae(
        traj.reward * config.reward_scale,
        values,
        traj.done,
        jnp.zeros((batch,)),
        config.gamma,
        config.gae_lambda,
    )
    advantages = distributed.standardize(advantages, mask, axis_name)
    first = jnp.concatenate([jnp.ones((1, batch), bool), traj.done[:-1]], axis=0)
    old_log_prob = traj.extras["log_prob"]
    return Trials(
        traj.obs, first, traj.action, old_log_prob, values, advantages, targets, mask, extras or {}
    )


def clipped_loss(dist, value: jax.Array, discrete: bool, data: Trials, config):
    """PPO's clipped loss of ``(dist, value)`` re-run over ``data`` (``config``: clip_eps,
    clip_value, vf_coef, ent_coef); returns ``(loss, info)``. ``clip_value`` keeps each value
    within ``clip_eps`` of the acting one, an absolute step in reward units: unscaled returns of
    tens then take hundreds of updates to fit (SB3 leaves it off by default)."""
    log_prob = networks.log_prob(dist, data.action, discrete)
    policy_loss = ppo.clipped_surrogate_loss(
        log_prob, data.old_log_prob, data.advantage, config.clip_eps, data.mask
    )
    if config.clip_value:
        value_loss = ppo.clipped_value_loss(
            value, data.old_value, data.target, config.clip_eps, data.mask
        )
    else:
        value_loss = 0.5 * ppo.masked_mean((value - data.target) ** 2, data.mask)
    entropy = ppo.masked_mean(networks.entropy(dist, discrete), data.mask)
    total = policy_loss + config.vf_coef * value_loss - config.ent_coef * entropy
    approx_kl = ppo.masked_mean(data.old_log_prob - log_prob, data.mask)
    return total, {
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "approx_kl": approx_kl,
    }


LossFn = Callable[[Any, Trials], tuple[jax.Array, dict]]


def clipped_adam(learning_rate: float | optax.Schedule, max_grad_norm: float | None):
    """Adam (eps 1e-5), after a clip of the global gradient norm when one is given."""
    adam = optax.adam(learning_rate, eps=1e-5)
    if max_grad_norm is None:
        return adam
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), adam)


def _minibatch_step(loss_fn: LossFn, optimizer, axis_name, carry, minibatch: Trials):
    """One gradient step on one minibatch of trials (gradients averaged over shards)."""
    params, opt_state = carry
    grads, info = jax.grad(loss_fn, has_aux=True)(params, minibatch)
    grads, info = distributed.pmean((grads, info), axis_name)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), info


def _epoch(loss_fn: LossFn, optimizer, num_minibatches: int, axis_name, data: Trials, carry, key):
    """One pass over the trials in shuffled minibatches of whole trials."""
    batch = data.mask.shape[1]
    order = jax.random.permutation(key, batch)
    shuffled = jax.tree.map(lambda x: jnp.take(x, order, axis=1), data)
    split = jax.tree.map(  # [num_minibatches, T, B / num_minibatches, ...]
        lambda x: x.reshape(
            x.shape[0], num_minibatches, batch // num_minibatches, *x.shape[2:]
        ).swapaxes(0, 1),
        shuffled,
    )

    def step(carry, minibatch):
        return _minibatch_step(loss_fn, optimizer, axis_name, carry, minibatch)

    return jax.lax.scan(step, carry, split)


def epochs(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    params,
    opt_state,
    data: Trials,
    key: jax.Array,
    config,
    axis_name: str | None,
):
    """``config.update_epochs`` PPO epochs over ``config.num_minibatches`` minibatches of
    whole trials; returns ``(params, opt_state, mean loss info)``."""
    keys = jax.random.split(key, config.update_epochs)

    def one_epoch(carry, key):
        return _epoch(loss_fn, optimizer, config.num_minibatches, axis_name, data, carry, key)

    (params, opt_state), info = jax.lax.scan(one_epoch, (params, opt_state), keys)
    return params, opt_state, {k: jnp.mean(v) for k, v in info.items()}
