"""Exact conjugate task posteriors: Bernoulli bandits (Beta) and tabular MDPs (Dirichlet, Normal).

Every function here is pure and works on one trial's history (leaves ``[T, ...]``); ``vmap`` it
over a batch of trials. The returned ``PosteriorTrace`` has ``T + 1`` rows: row 0 is the prior,
row ``t + 1`` the posterior after observing steps ``0..t``. ``mask`` [T] (optional) drops steps
that carry no evidence (padding); every step of a trial is evidence about the same task, across
episode boundaries too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp


class PosteriorTrace(NamedTuple):
    """The posterior over a trial: the prior (row 0), then after each observed step."""

    mean: jax.Array  # [T + 1, P] posterior mean of the task parameters
    variance: jax.Array  # [T + 1, P] posterior variance of each parameter
    expected_sq_error: jax.Array  # [T + 1] E[|theta - E[theta | h_t]|^2 | h_t] = sum of variances


def make_trace(mean: jax.Array, variance: jax.Array) -> PosteriorTrace:
    """A trace from per-parameter means and variances [T + 1, P]."""
    return PosteriorTrace(mean, variance, jnp.sum(variance, axis=-1))


def _weights(num_steps: int, mask: jax.Array | None) -> jax.Array:
    if mask is None:
        return jnp.ones((num_steps,), jnp.float32)
    return jnp.asarray(mask, jnp.float32)


def _running_sum(x: jax.Array) -> jax.Array:
    """Cumulative sums over the leading axis with a zero row first: [T, ...] -> [T + 1, ...]."""
    return jnp.concatenate([jnp.zeros_like(x[:1]), jnp.cumsum(x, axis=0)], axis=0)


# ---------------------------------------------------------------------------------------------
# BERNOULLI BANDITS
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BanditSpec:
    """k Bernoulli arms with p_i ~ U[0, 1] = Beta(1, 1) independently (``bandits.py``)."""

    arms: int


def bandit_posterior(
    spec: BanditSpec, actions: jax.Array, rewards: jax.Array, mask: jax.Array | None = None
) -> PosteriorTrace:
    """Beta(1 + successes, 1 + failures) per arm from pulls ``actions`` [T] and ``rewards`` [T].

    Mean a / (a + b), variance a b / ((a + b)^2 (a + b + 1)); parameters are the arms' p [arms].
    """
    pulls = jax.nn.one_hot(actions, spec.arms) * _weights(actions.shape[0], mask)[:, None]
    successes = _running_sum(pulls * rewards[:, None])  # [T + 1, arms]
    a = 1.0 + successes
    b = 1.0 + _running_sum(pulls) - successes
    total = a + b
    return make_trace(a / total, a * b / (total**2 * (total + 1.0)))


# ---------------------------------------------------------------------------------------------
# TABULAR MDPS
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TabularSpec:
    """Duan et al.'s random MDPs (``tabular_mdp.py``): mu(s, a) ~ N(1, 1), r ~ N(mu, 1),
    P(. | s, a) ~ Dirichlet(1, ..., 1)."""

    num_states: int
    num_actions: int
    prior_mean: float = 1.0
    prior_var: float = 1.0
    noise_var: float = 1.0
    concentration: float = 1.0


def tabular_posterior(
    spec: TabularSpec,
    states: jax.Array,
    actions: jax.Array,
    rewards: jax.Array,
    next_states: jax.Array,
    mask: jax.Array | None = None,
) -> PosteriorTrace:
    """Normal-Normal reward means and Dirichlet transitions per (s, a) from [T] histories.

    Parameters (flat, ``P = S A + S A S``): the reward-mean table [S, A] then the transition
    table [S, A, S], both row-major. With n visits of (s, a) and reward sum y there, the reward
    mean's posterior has precision 1/prior_var + n/noise_var and mean
    (prior_mean/prior_var + y/noise_var) / precision; with counts c(s') the transition row is
    Dirichlet(concentration + c), mean alpha/alpha0, variance m (1 - m) / (alpha0 + 1).
    """
    num_s, num_a = spec.num_states, spec.num_actions
    weight = _weights(states.shape[0], mask)[:, None]
    pair = states * num_a + actions  # [T] index of (s, a)
    visits = jax.nn.one_hot(pair, num_s * num_a) * weight  # [T, S A]
    count = _running_sum(visits)  # [T + 1, S A]
    reward_sum = _running_sum(visits * rewards[:, None])
    precision = 1.0 / spec.prior_var + count / spec.noise_var
    reward_mean = (spec.prior_mean / spec.prior_var + reward_sum / spec.noise_var) / precision
    moves = jax.nn.one_hot(pair * num_s + next_states, num_s * num_a * num_s) * weight
    alpha = spec.concentration + _running_sum(moves).reshape(-1, num_s * num_a, num_s)
    alpha0 = jnp.sum(alpha, axis=-1, keepdims=True)
    p_mean = alpha / alpha0  # [T + 1, S A, S]
    p_var = p_mean * (1.0 - p_mean) / (alpha0 + 1.0)
    rows = count.shape[0]
    mean = jnp.concatenate([reward_mean, p_mean.reshape(rows, -1)], axis=-1)
    variance = jnp.concatenate([1.0 / precision, p_var.reshape(rows, -1)], axis=-1)
    return make_trace(mean, variance)
