"""The linear feature baseline of the MAML paper, and masked discounted returns.

Trajectories are time-first, as the rollout engine returns them: leaves ``[T, N, ...]`` for T
steps of N trajectories of one task. ``mask`` [T, N] marks the steps of each trajectory's
first episode (steps after its end belong to an auto-reset episode and are ignored).

The baseline (Duan et al. 2016's ``LinearFeatureBaseline``, used by MAML and ProMP) regresses
the discounted return on the features ``[obs, obs^2, t, t^2, t^3, 1]`` with ``t = step / 100``
and observations clipped to [-10, 10], by ridge regression, refit on each task's own batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def first_episode_mask(done: jax.Array) -> jax.Array:
    """1.0 on the steps of each trajectory's first episode, 0.0 after it ended: [T, N]."""
    done = done.astype(jnp.int32)
    return ((jnp.cumsum(done, axis=0) - done) == 0).astype(jnp.float32)


def discounted_returns(
    rewards: jax.Array, done: jax.Array, mask: jax.Array, gamma: float | jax.Array
) -> jax.Array:
    """Reward-to-go ``R_t = r_t + gamma * R_{t+1}`` within each episode, [T, N] -> [T, N].

    Masked steps contribute no reward; an episode's return stops at its ``done`` step.
    """

    def backward(future, step):
        reward, d = step
        value = reward + gamma * future * (1.0 - d)
        return value, value

    _, returns = jax.lax.scan(
        backward,
        jnp.zeros_like(rewards[0]),
        (rewards * mask, done.astype(rewards.dtype)),
        reverse=True,
    )
    return returns * mask


def features(obs: jax.Array) -> jax.Array:
    """The baseline's features ``[o, o^2, t, t^2, t^3, 1]``: [T, N, ...] -> [T, N, 2D + 4]."""
    num_steps, num_traj = obs.shape[:2]
    o = jnp.clip(jnp.reshape(obs, (num_steps, num_traj, -1)).astype(jnp.float32), -10.0, 10.0)
    t = jnp.broadcast_to(
        (jnp.arange(num_steps, dtype=o.dtype) / 100.0)[:, None, None], (num_steps, num_traj, 1)
    )
    return jnp.concatenate([o, o**2, t, t**2, t**3, jnp.ones_like(t)], axis=-1)


def fit_linear_baseline(
    obs: jax.Array, returns: jax.Array, mask: jax.Array, reg_coeff: float = 1e-5
) -> jax.Array:
    """Ridge-regression weights [F] of ``returns`` [T, N] on ``features(obs)`` over masked steps.

    Solves the normal equations ``(X^T X + reg I) w = X^T R`` as the reference does (rllab's
    ``LinearFeatureBaseline``, including its retry with a 10x larger ``reg`` while the solution
    is not finite), by a Cholesky factorization of the Jacobi-scaled F x F system and one step of
    iterative refinement, which brings float32 to the accuracy of a least-squares solver on
    ``[X; sqrt(reg) I]``. A batched SVD or QR of the tall ``[T * N, F]`` matrix costs ~1000x more
    on CPU.
    """
    x = features(obs) * mask[..., None]  # [T, N, F]
    x = jnp.reshape(x, (-1, x.shape[-1]))
    y = jnp.reshape(returns * mask, (-1,))
    gram, rhs = x.T @ x, x.T @ y
    eye = jnp.eye(gram.shape[0], dtype=gram.dtype)

    def solve(reg):
        a = gram + reg * eye
        scale = jax.lax.rsqrt(jnp.diagonal(a))  # Jacobi scaling: the same solution, better pivots
        factor = jax.scipy.linalg.cho_factor(a * scale[:, None] * scale[None, :])

        def apply_inverse(b):
            return scale * jax.scipy.linalg.cho_solve(factor, scale * b)

        weights = apply_inverse(rhs)
        residual = x.T @ (y - x @ weights) - reg * weights  # refinement: X^T r from r = y - X w
        return weights + apply_inverse(residual)

    candidates = jax.vmap(solve)(reg_coeff * 10.0 ** jnp.arange(5, dtype=x.dtype))  # [5, F]
    finite = jnp.all(jnp.isfinite(candidates), axis=-1)
    return candidates[jnp.argmax(finite)]  # the first finite one (the first if none is)


def predict_linear_baseline(weights: jax.Array, obs: jax.Array) -> jax.Array:
    """The baseline's value estimate of each step: [T, N]."""
    return features(obs) @ weights


def linear_baseline_advantages(
    obs: jax.Array,
    rewards: jax.Array,
    done: jax.Array,
    mask: jax.Array,
    gamma: float | jax.Array,
    reg_coeff: float = 1e-5,
) -> tuple[jax.Array, jax.Array]:
    """``(advantages, returns)`` [T, N]: reward-to-go minus the baseline refit on this batch."""
    returns = discounted_returns(rewards, done, mask, gamma)
    weights = fit_linear_baseline(obs, returns, mask, reg_coeff)
    advantages = (returns - predict_linear_baseline(weights, obs)) * mask
    return advantages, returns


__all__ = [
    "discounted_returns",
    "features",
    "first_episode_mask",
    "fit_linear_baseline",
    "linear_baseline_advantages",
    "predict_linear_baseline",
]
