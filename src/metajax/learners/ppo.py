"""PPO pieces shared by RL² and the MAML family's PPO outer step: GAE and the clipped losses.

Shapes are time-major: ``[T, B]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def masked_mean(x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean of ``x`` over entries where ``mask`` is true (all entries when mask is None)."""
    if mask is None:
        return jnp.mean(x)
    mask = mask.astype(x.dtype)
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def compute_gae(
    rewards: jax.Array,
    values: jax.Array,
    dones: jax.Array,
    last_value: jax.Array,
    gamma: float,
    lam: float,
) -> tuple[jax.Array, jax.Array]:
    """Generalized advantage estimates and value targets.

    Args:
        rewards, values, dones: ``[T, B]``; ``dones[t]`` means the episode ended at step t, so
            step t does not bootstrap from step t + 1.
        last_value: ``[B]`` value of the observation after the last step.

    Returns:
        ``(advantages, returns)``, both ``[T, B]``; returns = advantages + values.
    """
    next_values = jnp.concatenate([values[1:], last_value[None]], axis=0)
    not_done = 1.0 - dones.astype(values.dtype)
    deltas = rewards + gamma * next_values * not_done - values

    def backward(advantage, inputs):
        delta, nd = inputs
        advantage = delta + gamma * lam * nd * advantage
        return advantage, advantage

    _, advantages = jax.lax.scan(
        backward, jnp.zeros_like(last_value), (deltas, not_done), reverse=True
    )
    return advantages, advantages + values


def clipped_surrogate_loss(
    log_prob: jax.Array,
    old_log_prob: jax.Array,
    advantages: jax.Array,
    clip_eps: float,
    mask: jax.Array | None = None,
) -> jax.Array:
    """PPO's clipped policy loss (to minimize): -E[min(r A, clip(r, 1 - eps, 1 + eps) A)]."""
    ratio = jnp.exp(log_prob - old_log_prob)
    unclipped = ratio * advantages
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    return -masked_mean(jnp.minimum(unclipped, clipped), mask)


def clipped_value_loss(
    values: jax.Array,
    old_values: jax.Array,
    returns: jax.Array,
    clip_eps: float,
    mask: jax.Array | None = None,
) -> jax.Array:
    """PPO's clipped value loss: 0.5 E[max((v - R)^2, (v_old + clip(v - v_old) - R)^2)]."""
    clipped = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
    loss = jnp.maximum((values - returns) ** 2, (clipped - returns) ** 2)
    return 0.5 * masked_mean(loss, mask)


def normalize_advantages(advantages: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Advantages shifted to zero mean and scaled to unit variance over the (masked) batch."""
    mean = masked_mean(advantages, mask)
    var = masked_mean((advantages - mean) ** 2, mask)
    return (advantages - mean) / (jnp.sqrt(var) + 1e-8)
