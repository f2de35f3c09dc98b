"""Tabular-MDP baselines: conjugate posterior, planning, and returns against random and oracle."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metajax.envs as envs
from metajax.baselines.mdp import (
    MDPStats,
    mdp_baseline_rewards,
    plan,
    reward_posterior,
    run_mdp_baseline,
)
from metajax.errors import ConfigError


@pytest.fixture(scope="module")
def family():
    """The Duan et al. tabular-MDP family and 300 of its test tasks (drawn once per module)."""
    env, tasks = envs.make("tabular-mdp")
    return env, tasks.test_tasks(300)


def test_reward_posterior_by_hand():
    # Prior N(1, 1), noise std 1, rewards 2 and 4 at (0, 0): precision 1 + 2 = 3,
    # mean (1 * 1 + 6 / 1) / 3 = 7/3, std 1 / sqrt(3). Unvisited pairs keep the prior.
    stats = MDPStats(
        transition_counts=jnp.zeros((2, 2, 2)),
        visits=jnp.array([[2.0, 0.0], [0.0, 0.0]]),
        reward_sums=jnp.array([[6.0, 0.0], [0.0, 0.0]]),
    )
    posterior = reward_posterior(stats, prior_mean=1.0, prior_std=1.0, noise_std=1.0)
    np.testing.assert_allclose(posterior.mean, [[7 / 3, 1.0], [1.0, 1.0]], rtol=1e-6)
    np.testing.assert_allclose(posterior.std, [[1 / math.sqrt(3), 1.0], [1.0, 1.0]], rtol=1e-6)


def test_plan_by_hand_and_against_env_values(family):
    # Action 0 stays, action 1 switches state; rewards mu = [[0, 1], [2, 0]].
    # One step left: Q = mu, V = [1, 2]. Two steps left from state 0:
    # stay 0 + V(0) = 1, switch 1 + V(1) = 3.
    transitions = jnp.array([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]])
    mu = jnp.array([[0.0, 1.0], [2.0, 0.0]])
    q = plan(mu, transitions, horizon=2)
    np.testing.assert_allclose(q[0, 0], [1.0, 3.0])
    np.testing.assert_allclose(q[1], mu)
    env, params = family
    task = jax.tree.map(lambda x: x[0], params)
    q = plan(task.reward_means, task.transitions, env.horizon)
    np.testing.assert_allclose(q[0].max(-1), env.optimal_values(task)[0], rtol=1e-5)


def test_random_earns_the_prior_mean_per_step(family):
    env, params = family
    totals = np.asarray(run_mdp_baseline("random", env, params, 3, jax.random.key(0)))
    steps = 3 * env.horizon  # each reward mean is N(1, 1), independent of the path: 1 per step
    assert abs(totals.mean() - steps) < 4 * totals.std() / math.sqrt(totals.size)


def test_psrl_learns_and_stays_below_the_oracle(family):
    env, params = family
    params = jax.tree.map(lambda x: x[:200], params)
    key = jax.random.key(1)
    returns = np.asarray(mdp_baseline_rewards("psrl", env, params, 10, key))  # [tasks, episodes]
    random = np.asarray(run_mdp_baseline("random", env, params, 10, key))
    oracle = 10 * np.asarray(env.oracle_episode_return(params))
    totals = returns.sum(-1)
    assert (totals - random).mean() > 4 * (totals - random).std() / math.sqrt(totals.size)
    assert (oracle - totals).mean() > 4 * (oracle - totals).std() / math.sqrt(totals.size)
    late_minus_early = returns[:, 5:].mean(-1) - returns[:, :2].mean(-1)
    assert late_minus_early.mean() > 4 * late_minus_early.std() / math.sqrt(totals.size)


def test_bad_input_raises_config_error(family):
    env, params = family
    key = jax.random.key(0)
    with pytest.raises(ConfigError, match="known baselines"):
        run_mdp_baseline("ucrl3", env, params, 2, key)
    with pytest.raises(ConfigError, match="allowed"):
        run_mdp_baseline("psrl", env, params, 2, key, eps=0.1)
    with pytest.raises(ConfigError, match="noise_std must be > 0"):
        run_mdp_baseline("greedy", env, params, 2, key, noise_std=0.0)
    with pytest.raises(ConfigError, match="batch of tasks"):
        run_mdp_baseline("random", env, jax.tree.map(lambda x: x[0], params), 2, key)
