"""Classic Bernoulli-bandit baselines (Duan et al. 2016, Table 1), vmapped over tasks.

Every policy acts from the posterior sufficient statistics of each arm (successes ``s``,
failures ``f``) under a Beta(1, 1) prior, so an arm's posterior is Beta(1 + s, 1 + f) and its
posterior mean is (s + 1) / (s + f + 2). Ties go to the lowest arm index.

- ``random``: a uniformly random arm.
- ``greedy``: the highest posterior mean.
- ``eps-greedy``: a random arm with probability ``eps``, else greedy.
- ``ucb1``: posterior mean + c * sqrt(2 ln t / n_i), where the Beta(1, 1) prior counts as two
  pseudo-pulls: n_i = pulls of arm i + 2 and t = the sum of the n_i (so no arm is forced first;
  with plain counts an untried arm gets an infinite bonus and n = 10, k = 5 spends half its
  pulls trying every arm once).
- ``thompson``: the arm with the highest draw from its Beta posterior.
- ``optimistic-thompson``: the same with each draw raised to at least the posterior mean.
- ``gittins``: the highest Gittins index for discount ``gamma`` (see ``gittins_table``).
- ``bayes-optimal``: the exact finite-horizon Bayes-optimal policy for p ~ U[0, 1]^k by dynamic
  programming over posterior states (see ``bayes_optimal_policy``); small (k, n) only.

``run_bandit_baseline`` evaluates any of them: a ``lax.scan`` over pulls, vmapped over tasks,
pure and jit-able with ``name`` and ``pulls`` static.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metajax.baselines.bandit_dp import (
    MAX_BAYES_OPTIMAL_STATES,
    BayesOptimalPolicy,
    bayes_optimal_policy,
    gittins_table,
    num_posterior_states,
)
from metajax.baselines.options import merge_options, summed
from metajax.errors import ConfigError

__all__ = [
    "BANDIT_BASELINES",
    "BASELINE_OPTIONS",
    "MAX_BAYES_OPTIMAL_STATES",
    "TUNING_GRIDS",
    "BanditStats",
    "BayesOptimalPolicy",
    "TunedBaseline",
    "bandit_baseline_rewards",
    "bayes_optimal_policy",
    "gittins_table",
    "num_posterior_states",
    "run_bandit_baseline",
    "tune_baseline",
]

BANDIT_BASELINES: tuple[str, ...] = (
    "random",
    "greedy",
    "eps-greedy",
    "ucb1",
    "thompson",
    "optimistic-thompson",
    "gittins",
    "bayes-optimal",
)

# name -> its options with their defaults
BASELINE_OPTIONS: dict[str, dict[str, float]] = {
    "random": {},
    "greedy": {},
    "eps-greedy": {"eps": 0.1},
    "ucb1": {"c": 1.0},
    "thompson": {},
    "optimistic-thompson": {},
    "gittins": {"gamma": 0.9},
    "bayes-optimal": {},
}

# name -> (option, grid) searched by ``tune_baseline``
TUNING_GRIDS: dict[str, tuple[str, tuple[float, ...]]] = {
    "eps-greedy": ("eps", (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)),
    "ucb1": ("c", (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0)),
    "gittins": ("gamma", (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)),
}


class BanditStats(NamedTuple):
    """Posterior statistics of one task: per-arm counts and the Bayes-optimal DP node."""

    successes: jax.Array  # [arms] int32
    failures: jax.Array  # [arms] int32
    node: jax.Array  # int32 node of ``bayes_optimal_policy`` (0 for the other policies)


# POLICIES


def _posterior_mean(stats: BanditStats) -> jax.Array:
    s, f = stats.successes.astype(jnp.float32), stats.failures.astype(jnp.float32)
    return (s + 1.0) / (s + f + 2.0)


def _check_options(name: str, options: dict) -> dict:
    merged = merge_options("bandit baseline", name, BASELINE_OPTIONS, options)
    bounds = {"eps": (0.0, 1.0, "[0, 1]"), "c": (0.0, math.inf, ">= 0")}
    for option, value in merged.items():
        if option in bounds and isinstance(value, (int, float)):
            low, high, text = bounds[option]
            if not low <= value <= high:
                raise ConfigError(f"baseline '{name}': {option} must be {text}, got {value}")
    return merged


def _random_policy(arms: int, pulls: int, options: dict):
    return lambda key, stats: jax.random.randint(key, (), 0, arms)


def _greedy_policy(arms: int, pulls: int, options: dict):
    return lambda key, stats: jnp.argmax(_posterior_mean(stats))


def _eps_greedy_policy(arms: int, pulls: int, options: dict):
    eps = jnp.asarray(options["eps"], jnp.float32)

    def act(key, stats):
        key_explore, key_arm = jax.random.split(key)
        explore = jax.random.uniform(key_explore) < eps
        random_arm = jax.random.randint(key_arm, (), 0, arms)
        return jnp.where(explore, random_arm, jnp.argmax(_posterior_mean(stats)))

    return act


def _ucb1_policy(arms: int, pulls: int, options: dict):
    c = jnp.asarray(options["c"], jnp.float32)

    def act(key, stats):
        del key
        n = (stats.successes + stats.failures).astype(jnp.float32) + 2.0  # prior: 2 pulls
        bonus = c * jnp.sqrt(2.0 * jnp.log(jnp.sum(n)) / n)
        return jnp.argmax(_posterior_mean(stats) + bonus)

    return act


def _thompson_policy(optimistic: bool):
    def make(arms: int, pulls: int, options: dict):
        def act(key, stats):
            s, f = stats.successes.astype(jnp.float32), stats.failures.astype(jnp.float32)
            draw = jax.random.beta(key, 1.0 + s, 1.0 + f)
            if optimistic:
                draw = jnp.maximum(draw, _posterior_mean(stats))
            return jnp.argmax(draw)

        return act

    return make


def _gittins_policy(arms: int, pulls: int, options: dict):
    table = jnp.asarray(gittins_table(float(options["gamma"]), pulls), jnp.float32)
    return lambda key, stats: jnp.argmax(table[stats.successes, stats.failures])


def _bayes_optimal_policy(arms: int, pulls: int, options: dict):
    policy = bayes_optimal_policy(arms, pulls)
    want_s, want_f = jnp.asarray(policy.pull_successes), jnp.asarray(policy.pull_failures)

    def act(key, stats):
        del key
        match = (stats.successes == want_s[stats.node]) & (stats.failures == want_f[stats.node])
        return jnp.argmax(match)

    return act


_POLICIES = {
    "random": _random_policy,
    "greedy": _greedy_policy,
    "eps-greedy": _eps_greedy_policy,
    "ucb1": _ucb1_policy,
    "thompson": _thompson_policy(optimistic=False),
    "optimistic-thompson": _thompson_policy(optimistic=True),
    "gittins": _gittins_policy,
    "bayes-optimal": _bayes_optimal_policy,
}


def _make_policy(
    name: str, arms: int, pulls: int, options: dict
) -> Callable[[jax.Array, BanditStats], jax.Array]:
    """``act(key, stats) -> arm`` for one task (``_check_options`` rejects unknown names)."""
    return _POLICIES[name](arms, pulls, options)


def bandit_baseline_rewards(
    name: str,
    arm_probs: jax.Array,
    pulls: int,
    key: jax.Array,
    *,
    reward_uniforms: jax.Array | None = None,
    **options: float | jax.Array,
) -> jax.Array:
    """Per-pull rewards [tasks, pulls] of baseline ``name`` on Bernoulli tasks [tasks, arms].

    Pull t of task i pays 1 when ``reward_uniforms[i, t]`` < the chosen arm's probability;
    the uniforms are drawn from ``key`` unless given (pass them to share reward draws across
    policies or with another implementation). Options (``eps``, ``c``) may be traced arrays,
    so a grid of constants can be vmapped; ``gamma`` must be a Python float.
    """
    options = _check_options(name, options)
    if arm_probs.ndim != 2 or arm_probs.shape[1] < 2:
        raise ConfigError(f"arm_probs must have shape [tasks, arms>=2], got {arm_probs.shape}")
    if pulls < 1:
        raise ConfigError(f"pulls must be at least 1, got {pulls}")
    tasks, arms = arm_probs.shape
    act = _make_policy(name, arms, pulls, options)
    next_node = (
        jnp.asarray(bayes_optimal_policy(arms, pulls).next_node)
        if name == "bayes-optimal"
        else None
    )
    key_rewards, key_policy = jax.random.split(key)
    if reward_uniforms is None:
        reward_uniforms = jax.random.uniform(key_rewards, (tasks, pulls))
    elif reward_uniforms.shape != (tasks, pulls):
        raise ConfigError(
            f"reward_uniforms must have shape {(tasks, pulls)}, got {reward_uniforms.shape}"
        )

    def run_task(probs: jax.Array, key: jax.Array, uniforms: jax.Array) -> jax.Array:
        def pull(stats: BanditStats, inputs):
            key, uniform = inputs
            arm = act(key, stats)
            success = uniform < probs[arm]
            node = stats.node if next_node is None else next_node[stats.node, success.astype(int)]
            stats = BanditStats(
                successes=stats.successes.at[arm].add(success.astype(jnp.int32)),
                failures=stats.failures.at[arm].add(1 - success.astype(jnp.int32)),
                node=node,
            )
            return stats, success.astype(jnp.float32)

        zeros = jnp.zeros((arms,), jnp.int32)
        init = BanditStats(zeros, zeros, jnp.int32(0))
        _, rewards = jax.lax.scan(pull, init, (jax.random.split(key, pulls), uniforms))
        return rewards  # [pulls]

    return jax.vmap(run_task)(arm_probs, jax.random.split(key_policy, tasks), reward_uniforms)


run_bandit_baseline = summed(
    bandit_baseline_rewards,
    """Total reward per task [tasks] of baseline ``name`` over ``pulls`` pulls per task.

    The arguments of ``bandit_baseline_rewards``; jit with ``name`` and ``pulls`` static.
    """,
)


class TunedBaseline(NamedTuple):
    """The result of ``tune_baseline``: the best options, and the mean return of each grid value."""

    options: dict[str, float]
    grid: tuple[float, ...]
    means: np.ndarray  # [grid] mean total reward on the training tasks


def tune_baseline(
    name: str,
    train_arm_probs: jax.Array,
    pulls: int,
    key: jax.Array,
    grid: tuple[float, ...] | None = None,
) -> TunedBaseline:
    """Picks the constant of ``name`` (eps, c or gamma) with the best mean on training tasks.

    Every grid value runs on the same tasks and reward draws. Baselines without a constant
    return their (empty) options with one mean.
    """
    _check_options(name, {})
    if name not in TUNING_GRIDS:
        mean = run_bandit_baseline(name, train_arm_probs, pulls, key).mean()
        return TunedBaseline({}, (), np.asarray([mean]))
    option, default_grid = TUNING_GRIDS[name]
    grid = tuple(default_grid if grid is None else grid)
    if option == "gamma":  # tabulated offline: one run per value
        means = [
            run_bandit_baseline(name, train_arm_probs, pulls, key, gamma=float(g)).mean()
            for g in grid
        ]
    else:  # traced constant: one vmapped run over the grid

        def mean_for(value):
            return run_bandit_baseline(name, train_arm_probs, pulls, key, **{option: value}).mean()

        means = jax.vmap(mean_for)(jnp.asarray(grid, jnp.float32))
    means = np.asarray(means)
    return TunedBaseline({option: grid[int(np.argmax(means))]}, grid, means)
