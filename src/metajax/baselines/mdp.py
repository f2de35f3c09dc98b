"""Classic tabular-MDP baselines (Duan et al. 2016, Table 2), vmapped over tasks.

A trial is ``episodes`` episodes of ``env.horizon`` steps in one task, each starting in state 0
(``envs.tabular_mdp``). The model-based baselines keep the exact conjugate posterior of the
task family: reward means mu(s, a) ~ N(prior_mean, prior_std^2) with N(mu, noise_std^2)
rewards (Normal posterior), and P(. | s, a) ~ flat Dirichlet (Dirichlet(1 + counts) posterior).

- ``random``: uniformly random actions.
- ``greedy``: at each episode start, plan in the posterior-mean MDP.
- ``eps-greedy``: greedy, with a uniformly random action with probability ``eps`` per step.
- ``psrl``: posterior sampling RL (Osband et al. 2013): at each episode start, draw one MDP
  from the posterior and act optimally in it for the episode.

Planning is finite-horizon value iteration over the episode's ``horizon`` steps; ties go to the
lowest action index.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from metajax.baselines.options import merge_options, summed
from metajax.envs.tabular_mdp import MDPParams, MDPState, TabularMDP
from metajax.errors import ConfigError

MDP_BASELINES: tuple[str, ...] = ("random", "greedy", "eps-greedy", "psrl")

# name -> its options with their defaults (the prior is Duan et al.'s task distribution)
MDP_BASELINE_OPTIONS: dict[str, dict[str, float]] = {
    "random": {},
    "greedy": {"prior_mean": 1.0, "prior_std": 1.0, "noise_std": 1.0},
    "eps-greedy": {"eps": 0.1, "prior_mean": 1.0, "prior_std": 1.0, "noise_std": 1.0},
    "psrl": {"prior_mean": 1.0, "prior_std": 1.0, "noise_std": 1.0},
}


class MDPStats(NamedTuple):
    """Sufficient statistics of one task's posterior."""

    transition_counts: jax.Array  # [S, A, S] observed transitions
    visits: jax.Array  # [S, A] observed rewards per (s, a)
    reward_sums: jax.Array  # [S, A]


class RewardPosterior(NamedTuple):
    """Normal posterior of the reward means: N(mean, std^2) per (s, a)."""

    mean: jax.Array  # [S, A]
    std: jax.Array  # [S, A]


def reward_posterior(
    stats: MDPStats, prior_mean: float, prior_std: float, noise_std: float
) -> RewardPosterior:
    """Conjugate Normal posterior of mu(s, a) given rewards with known noise std."""
    precision = 1.0 / prior_std**2 + stats.visits / noise_std**2
    mean = (prior_mean / prior_std**2 + stats.reward_sums / noise_std**2) / precision
    return RewardPosterior(mean, 1.0 / jnp.sqrt(precision))


def plan(reward_means: jax.Array, transitions: jax.Array, horizon: int) -> jax.Array:
    """Optimal finite-horizon Q-values [horizon, S, A] (entry t: ``horizon - t`` steps left)."""

    def backup(next_values, _):
        q = reward_means + transitions @ next_values  # [S, A]
        return jnp.max(q, axis=-1), q

    terminal = jnp.zeros(reward_means.shape[0], reward_means.dtype)
    _, q = jax.lax.scan(backup, terminal, None, length=horizon)
    return q[::-1]


def _check(name: str, options: dict) -> dict:
    merged = merge_options("MDP baseline", name, MDP_BASELINE_OPTIONS, options)
    for option in ("prior_std", "noise_std"):
        value = merged.get(option)
        if isinstance(value, (int, float)) and not value > 0:
            raise ConfigError(f"MDP baseline '{name}': {option} must be > 0, got {value}")
    eps = merged.get("eps")
    if isinstance(eps, (int, float)) and not 0.0 <= eps <= 1.0:
        raise ConfigError(f"MDP baseline '{name}': eps must be in [0, 1], got {eps}")
    return merged


def mdp_baseline_rewards(
    name: str,
    env: TabularMDP,
    params: MDPParams,
    episodes: int,
    key: jax.Array,
    **options: float | jax.Array,
) -> jax.Array:
    """Per-episode returns [tasks, episodes] of baseline ``name`` on a batch of tasks.

    ``params`` holds tasks with a leading axis; jit with ``name``, ``env`` and ``episodes``
    static. ``eps`` may be a traced array.
    """
    options = _check(name, options)
    if params.reward_means.ndim != 3:
        raise ConfigError(
            f"params must be a batch of tasks [tasks, S, A], got {params.reward_means.shape}"
        )
    if episodes < 1:
        raise ConfigError(f"episodes must be at least 1, got {episodes}")
    keys = jax.random.split(key, params.reward_means.shape[0])
    return jax.vmap(partial(_run_task, name, options, env, episodes))(params, keys)


def _plan_episode(
    name: str, options: dict, env: TabularMDP, key: jax.Array, stats: MDPStats
) -> jax.Array:
    """The Q-values [horizon, S, A] baseline ``name`` acts on for the next episode."""
    if name == "random":
        return jnp.zeros((env.horizon, env.num_states, env.num_actions_))
    posterior = reward_posterior(
        stats, options["prior_mean"], options["prior_std"], options["noise_std"]
    )
    alpha = 1.0 + stats.transition_counts
    if name == "psrl":
        key_mu, key_p = jax.random.split(key)
        normal = jax.random.normal(key_mu, posterior.mean.shape)
        mu = posterior.mean + posterior.std * normal
        transitions = jax.random.dirichlet(key_p, alpha)
    else:
        mu = posterior.mean
        transitions = alpha / jnp.sum(alpha, axis=-1, keepdims=True)
    return plan(mu, transitions, env.horizon)


def _step(name: str, options: dict, env: TabularMDP, task: MDPParams, q: jax.Array, carry, inputs):
    """One step of an episode: act on ``q`` (or explore), step the env, update the stats."""
    state, stats = carry
    key, t = inputs
    key_env, key_explore, key_action = jax.random.split(key, 3)
    action = jnp.argmax(q[t, state.position])
    random_action = jax.random.randint(key_action, (), 0, env.num_actions_)
    if name == "random":
        action = random_action
    elif name == "eps-greedy":
        explore = jax.random.uniform(key_explore) < options["eps"]
        action = jnp.where(explore, random_action, action)
    _, next_state, reward, _, _ = env.step_env(key_env, state, action, task)
    s, a = state.position, action
    stats = MDPStats(
        stats.transition_counts.at[s, a, next_state.position].add(1.0),
        stats.visits.at[s, a].add(1.0),
        stats.reward_sums.at[s, a].add(reward),
    )
    return (next_state, stats), reward


def _run_task(
    name: str, options: dict, env: TabularMDP, episodes: int, task: MDPParams, key: jax.Array
) -> jax.Array:
    """Returns [episodes] of one task's trial, the posterior carried across episodes."""

    def episode(stats: MDPStats, key: jax.Array):
        key_plan, key_steps = jax.random.split(key)
        q = _plan_episode(name, options, env, key_plan, stats)
        start = MDPState(time=jnp.int32(0), position=jnp.int32(0))
        inputs = (jax.random.split(key_steps, env.horizon), jnp.arange(env.horizon))
        step = partial(_step, name, options, env, task, q)
        (_, stats), rewards = jax.lax.scan(step, (start, stats), inputs)
        return stats, jnp.sum(rewards)

    num_states, num_actions = env.num_states, env.num_actions_
    init = MDPStats(
        jnp.zeros((num_states, num_actions, num_states)),
        jnp.zeros((num_states, num_actions)),
        jnp.zeros((num_states, num_actions)),
    )
    _, returns = jax.lax.scan(episode, init, jax.random.split(key, episodes))
    return returns  # [episodes]


run_mdp_baseline = summed(
    mdp_baseline_rewards,
    """Total reward per task [tasks] over a trial of ``episodes`` episodes (the arguments of
    ``mdp_baseline_rewards``).""",
)


def confidence95(totals: jax.Array) -> float:
    """Half-width of a 95% normal confidence interval of the mean of ``totals``."""
    return float(1.96 * jnp.std(totals, ddof=1) / math.sqrt(totals.shape[0]))
