"""PEARL's task latent: Gaussian factors per transition, their product q(z | c), the KL.

The context encoder maps each transition (s, a, r, s') to a Gaussian factor; q(z | c) is their
product (permutation invariant, and incremental: the natural parameters of a product are sums,
see ``GaussianStats``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from metajax import replay
from metajax.networks import MLP


class GaussianStats(NamedTuple):
    """Natural parameters of a product of diagonal Gaussian factors (sums, so incremental)."""

    precision: jax.Array  # [..., L] sum of 1 / var over the factors
    scaled_mean: jax.Array  # [..., L] sum of mean / var over the factors


def factor_stats(mean: jax.Array, var: jax.Array, mask: jax.Array | None = None) -> GaussianStats:
    """Sums the factors ``[..., C, L]`` (masked by ``mask [..., C]``) over the context axis C."""
    weight = jnp.ones(mean.shape[:-1]) if mask is None else mask.astype(mean.dtype)
    weight = weight[..., None]
    return GaussianStats(jnp.sum(weight / var, axis=-2), jnp.sum(weight * mean / var, axis=-2))


def combine(a: GaussianStats, b: GaussianStats) -> GaussianStats:
    """The stats of the union of two contexts."""
    return GaussianStats(a.precision + b.precision, a.scaled_mean + b.scaled_mean)


def posterior(stats: GaussianStats) -> tuple[jax.Array, jax.Array]:
    """Mean and variance of the product; N(0, I) where no factor has been seen (k = 1)."""
    seen = stats.precision > 0
    var = jnp.where(seen, 1.0 / jnp.where(seen, stats.precision, 1.0), 1.0)
    return jnp.where(seen, stats.scaled_mean * var, 0.0), var


def product_of_gaussians(
    mean: jax.Array, var: jax.Array, mask: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """Product of the Gaussian factors ``[..., C, L]``: ``var = 1 / sum(1/var_i)``,
    ``mean = var * sum(mean_i / var_i)`` (the reference has no prior factor)."""
    return posterior(factor_stats(mean, var, mask))


def sample(mean: jax.Array, var: jax.Array, noise: jax.Array) -> jax.Array:
    """Reparameterized ``z = mean + sqrt(var) * noise`` from standard normal ``noise``."""
    return mean + jnp.sqrt(var) * noise


def kl_to_standard_normal(mean: jax.Array, var: jax.Array) -> jax.Array:
    """KL(N(mean, var) || N(0, I)) over the last axis: ``0.5 sum(var + m^2 - 1 - log var)``."""
    return 0.5 * jnp.sum(var + mean**2 - 1.0 - jnp.log(var), axis=-1)


class ContextEncoder(nn.Module):
    """One Gaussian factor per transition: ``(mean, var) [..., L]``, var = softplus(.) >= 1e-7."""

    latent_size: int
    hidden_sizes: Sequence[int] = (200, 200, 200)
    activation: str = "relu"

    @nn.compact
    def __call__(self, context: jax.Array) -> tuple[jax.Array, jax.Array]:
        out = MLP(self.hidden_sizes, 2 * self.latent_size, self.activation)(context)
        mean, raw = jnp.split(out, 2, axis=-1)
        return mean, jnp.maximum(jax.nn.softplus(raw), 1e-7)


def context_features(items: replay.Experience, next_obs: bool) -> jax.Array:
    """Encoder input per transition: (s, a, r[, s']) concatenated, ``[..., D]``."""
    parts = [items.obs, items.action, items.reward[..., None]]
    if next_obs:
        parts.append(items.next_obs)
    return jnp.concatenate(parts, axis=-1)


def context_size(obs_dim: int, action_dim: int, next_obs: bool) -> int:
    """Width of ``context_features``."""
    return 2 * obs_dim + action_dim + 1 if next_obs else obs_dim + action_dim + 1


def encode(
    encoder: ContextEncoder,
    encoder_params: Any,
    items: replay.Experience,
    next_obs: bool,
    mask: jax.Array | None = None,
) -> GaussianStats:
    """Stats of the factors of context ``items`` (leaves ``[..., C, ...]``, mask ``[..., C]``)."""
    mean, var = encoder.apply(encoder_params, context_features(items, next_obs))
    return factor_stats(mean, var, mask)
