"""Exact task posteriors: closed forms, brute-force integrals, calibration, vmap/jit."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metajax import envs, rollout
from metajax.baselines import posteriors
from metajax.baselines.posteriors import posterior_for, task_parameters
from metajax.baselines.posteriors_conjugate import (
    BanditSpec,
    TabularSpec,
    bandit_posterior,
    tabular_posterior,
)
from metajax.baselines.posteriors_grid import (
    GoalGridSpec,
    VelocityGridSpec,
    goal_posterior,
    velocity_posterior,
)
from metajax.envs import TrialWrapper
from metajax.envs.bandits import BanditParams
from metajax.envs.navigation import GoalParams
from metajax.envs.tabular_mdp import MDPParams
from metajax.errors import ConfigError
from metajax.types import Transition


def _transitions(obs, action, reward, next_obs, info=None) -> Transition:
    num_steps = reward.shape[0]
    false = jnp.zeros((num_steps,), bool)
    return Transition(obs, action, reward, false, false, next_obs, info or {}, {})


def _random_trials(name: str, env_options: dict, episodes: int, num_trials: int, seed: int = 0):
    """Random-policy TrialWrapper trials: (task params [B], transitions [T, B])."""
    env, tasks = envs.make(name, **env_options)
    env = TrialWrapper(env, episodes)
    space = env.action_space()

    def policy(carry, obs, first, keys):
        return carry, jax.vmap(space.sample)(keys), {}

    key_task, key_run = jax.random.split(jax.random.key(seed))
    params = tasks.sample(key_task, num_trials)
    keys = jax.random.split(key_run, num_trials)
    _, trials = rollout.run(env, policy, params, keys, env.horizon)
    return params, trials


# ---------------------------------------------------------------------------------------------
# CONJUGATE CLOSED FORMS
# ---------------------------------------------------------------------------------------------


def test_bandit_beta_counts_by_hand():
    # arm 0 pays 1 then 0, arm 1 pays 1:
    #   prior Beta(1, 1): mean 1/2, variance 1*1 / (2^2 * 3) = 1/12
    #   after step 0, arm 0 ~ Beta(2, 1): mean 2/3, variance 2 / (9 * 4) = 1/18
    #   after step 1, arm 0 ~ Beta(2, 2): mean 1/2, variance 4 / (16 * 5) = 1/20
    #   after step 2, arm 1 ~ Beta(2, 1): mean 2/3, variance 1/18
    trace = bandit_posterior(BanditSpec(2), jnp.array([0, 0, 1]), jnp.array([1.0, 0.0, 1.0]))
    np.testing.assert_allclose(
        trace.mean, [[1 / 2, 1 / 2], [2 / 3, 1 / 2], [1 / 2, 1 / 2], [1 / 2, 2 / 3]], rtol=1e-6
    )
    expected_var = [[1 / 12, 1 / 12], [1 / 18, 1 / 12], [1 / 20, 1 / 12], [1 / 20, 1 / 18]]
    np.testing.assert_allclose(trace.variance, expected_var, rtol=1e-6)
    np.testing.assert_allclose(trace.expected_sq_error, np.sum(expected_var, -1), rtol=1e-6)
    # a masked step is no evidence
    masked = bandit_posterior(
        BanditSpec(2), jnp.array([0, 0, 1]), jnp.array([1.0, 0.0, 1.0]), jnp.array([1, 0, 1])
    )
    np.testing.assert_allclose(masked.mean[2], masked.mean[1])


def test_tabular_normal_and_dirichlet_by_hand():
    # S = 2, A = 1; steps (s, a, r, s'): (0, 0, 2, 1), (0, 0, 0, 1), (1, 0, 3, 0)
    # Normal-Normal with mu ~ N(1, 1), r ~ N(mu, 1): precision 1 + n, mean (1 + sum r) / (1 + n)
    #   mu(0): after 1 step (1 + 2) / 2 = 1.5, var 1/2; after 2 steps (1 + 2 + 0) / 3 = 1, var 1/3
    #   mu(1): after step 2: (1 + 3) / 2 = 2, var 1/2
    # Dirichlet(1, 1) row of s = 0: counts (0, 1) -> alpha (1, 2): mean (1/3, 2/3), variance
    #   m (1 - m) / (alpha0 + 1) = (2/9) / 4 = 1/18; counts (0, 2) -> alpha (1, 3): mean (1/4, 3/4),
    #   variance (3/16) / 5 = 3/80
    trace = tabular_posterior(
        TabularSpec(2, 1),
        states=jnp.array([0, 0, 1]),
        actions=jnp.array([0, 0, 0]),
        rewards=jnp.array([2.0, 0.0, 3.0]),
        next_states=jnp.array([1, 1, 0]),
    )
    # layout: [mu(0), mu(1), P(0|0), P(1|0), P(0|1), P(1|1)]
    np.testing.assert_allclose(trace.mean[0], [1, 1, 1 / 2, 1 / 2, 1 / 2, 1 / 2], rtol=1e-6)
    np.testing.assert_allclose(trace.mean[1], [1.5, 1, 1 / 3, 2 / 3, 1 / 2, 1 / 2], rtol=1e-6)
    np.testing.assert_allclose(trace.mean[2], [1, 1, 1 / 4, 3 / 4, 1 / 2, 1 / 2], rtol=1e-6)
    np.testing.assert_allclose(trace.mean[3], [1, 2, 1 / 4, 3 / 4, 2 / 3, 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(trace.variance[0], [1, 1, 1 / 12, 1 / 12, 1 / 12, 1 / 12], rtol=1e-6)
    np.testing.assert_allclose(
        trace.variance[3], [1 / 3, 1 / 2, 3 / 80, 3 / 80, 1 / 18, 1 / 18], rtol=1e-6
    )


@pytest.mark.parametrize("name", ["bernoulli-bandit", "tabular-mdp"])
def test_exact_posteriors_are_calibrated_on_prior_tasks(name):
    """E over prior tasks of |theta - E[theta | h_t]|^2 equals E[floor_t] for an exact posterior.

    This also checks how histories are read from TrialWrapper transitions (the next state across
    episode boundaries, the action and reward), and that the floor shrinks with evidence.
    """
    env_options = {"arms": 5} if name == "bernoulli-bandit" else {"num_states": 4, "horizon": 5}
    params, trials = _random_trials(name, env_options, episodes=6, num_trials=1000)
    trace = jax.jit(jax.vmap(posterior_for(name, env_options), in_axes=1))(trials)
    theta = task_parameters(name, params)  # [B, P]
    error = np.mean(np.sum((np.asarray(trace.mean) - theta[:, None]) ** 2, -1), 0)  # [T + 1]
    floor = np.mean(np.asarray(trace.expected_sq_error), 0)
    np.testing.assert_allclose(error, floor, rtol=0.08)  # 1000 trials: within ~3%
    assert floor[-1] < floor[len(floor) // 2] < floor[0]


# ---------------------------------------------------------------------------------------------
# GRID POSTERIORS AGAINST BRUTE-FORCE INTEGRALS (numpy, float64, much finer grids)
# ---------------------------------------------------------------------------------------------


def _numpy_moments(log_weights: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, float]:
    weights = np.exp(log_weights - log_weights.max())
    weights /= weights.sum()
    mean = weights @ points
    return mean, float(weights @ np.sum((points - mean) ** 2, -1))


def test_nav2d_grid_matches_brute_force():
    goal = np.array([0.3, -0.2])
    positions = np.array([[0.1, 0.0], [0.0, 0.1], [0.1, 0.1]])
    rewards = -np.linalg.norm(positions - goal, axis=-1)
    noise = 0.05
    spec = GoalGridSpec("square", "dense", noise_std=noise, resolution=200)
    trace = goal_posterior(spec, jnp.asarray(positions, jnp.float32), jnp.asarray(rewards))
    axis = -0.5 + (np.arange(1000) + 0.5) / 1000
    fine = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    log_post = np.zeros(len(fine))
    for t in range(4):
        if t > 0:
            distance = np.linalg.norm(fine - positions[t - 1], axis=-1)
            log_post += -0.5 * ((distance + rewards[t - 1]) / noise) ** 2
        mean, sq_error = _numpy_moments(log_post, fine)
        np.testing.assert_allclose(trace.mean[t], mean, atol=2e-3)
        np.testing.assert_allclose(trace.expected_sq_error[t], sq_error, rtol=0.02, atol=1e-5)
    # the prior: U[-0.5, 0.5]^2, variance 1/12 per axis
    np.testing.assert_allclose(trace.expected_sq_error[0], 1 / 6, rtol=1e-3)


@pytest.mark.parametrize("reward_kind", ["sparse", "dense"])
def test_half_circle_grid_matches_brute_force(reward_kind):
    goal = np.array([math.cos(1.0), math.sin(1.0)])  # (0.54, 0.84)
    # a miss far away, a miss near, a hit 0.146 from the goal, another hit
    positions = np.array([[0.0, 0.0], [0.2, 0.9], [0.5, 0.7], [0.6, 0.8]])
    distance = np.linalg.norm(positions - goal, axis=-1)
    if reward_kind == "sparse":
        rewards = np.where(distance <= 0.2, 1.0 - distance, 0.0)
        assert list(rewards > 0) == [False, False, True, True]
    else:
        rewards = -distance
    noise = 0.01
    spec = GoalGridSpec("half-circle", reward_kind, noise_std=noise, resolution=4000)
    trace = goal_posterior(spec, jnp.asarray(positions, jnp.float32), jnp.asarray(rewards))
    angle = (np.arange(200_000) + 0.5) * (np.pi / 200_000)
    fine = np.stack([np.cos(angle), np.sin(angle)], -1)
    log_post = np.zeros(len(fine))
    for t in range(len(positions) + 1):
        if t > 0:
            d = np.linalg.norm(fine - positions[t - 1], axis=-1)
            if reward_kind == "dense":
                log_post += -0.5 * ((d + rewards[t - 1]) / noise) ** 2
            elif rewards[t - 1] > 0:  # within the radius, at the distance the reward says
                log_post += np.where(
                    d <= 0.2, -0.5 * ((d - 1 + rewards[t - 1]) / noise) ** 2, -np.inf
                )
            else:  # exact indicator: farther than the radius
                log_post += np.where(d > 0.2, 0.0, -np.inf)
        mean, sq_error = _numpy_moments(log_post, fine)
        np.testing.assert_allclose(trace.mean[t], mean, atol=1e-3)
        np.testing.assert_allclose(trace.expected_sq_error[t], sq_error, rtol=0.02, atol=1e-6)
    # the prior: angle ~ U[0, pi]: mean (0, 2/pi), E|g - mean|^2 = 1 - 4/pi^2
    np.testing.assert_allclose(trace.mean[0], [0.0, 2 / np.pi], atol=1e-6)
    np.testing.assert_allclose(trace.expected_sq_error[0], 1 - 4 / np.pi**2, rtol=1e-5)
    if reward_kind == "dense":
        np.testing.assert_allclose(trace.mean[-1], goal, atol=5e-3)


def test_ood_priors_moments():
    # nav2d's ring 0.5 < |g|_inf <= 1 (area 3): E[x^2] = (4/3 - 1/12) / 3 = 5/12 per axis
    trace = goal_posterior(GoalGridSpec("ring", resolution=100), jnp.zeros((1, 2)), -jnp.ones(1))
    np.testing.assert_allclose(trace.mean[0], [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(trace.expected_sq_error[0], 5 / 6, rtol=1e-3)
    trace = goal_posterior(
        GoalGridSpec("lower-half-circle", resolution=1000), jnp.zeros((1, 2)), -jnp.ones(1)
    )
    np.testing.assert_allclose(trace.mean[0], [0.0, -2 / np.pi], atol=1e-5)


def test_cheetah_velocity_two_points_then_one():
    # target 1.3; step 0 runs at 1.0 with action (0.5, 2 -> clipped to 1): control cost
    # 0.05 * (0.25 + 1) = 0.0625, reward -0.3 - 0.0625, so v* is 0.7 or 1.3 with equal weight:
    # mean 1.0, variance 0.3^2 = 0.09. Step 1 runs at 0.5, reward -0.8: v* = 1.3 (-0.3 is
    # outside U[0, 2]). The prior U[0, 2]: mean 1, variance 4/12.
    velocities = jnp.array([1.0, 0.5])
    actions = jnp.array([[0.5, 2.0], [0.0, 0.0]])
    rewards = jnp.array([-0.3 - 0.0625, -0.8])
    trace = velocity_posterior(VelocityGridSpec(), velocities, actions, rewards)
    np.testing.assert_allclose(trace.mean[:, 0], [1.0, 1.0, 1.3], atol=1e-3)
    np.testing.assert_allclose(trace.expected_sq_error, [1 / 3, 0.09, 0.0], atol=2e-3)


def test_cheetah_entry_point_reads_the_velocity():
    obs = jnp.zeros((2, 17))
    actions = jnp.array([[0.5, 2.0] + [0.0] * 4, [0.0] * 6])
    rewards = jnp.array([-0.3 - 0.0625, -0.8])
    plain = _transitions(obs, actions, rewards, obs)
    with pytest.raises(ConfigError, match="x_velocity"):
        posterior_for("cheetah-vel")(plain)
    with_info = plain._replace(info={"x_velocity": jnp.array([1.0, 0.5])})
    trace = posterior_for("cheetah-vel", {"max_velocity": 3.0})(with_info)
    np.testing.assert_allclose(trace.mean[:, 0], [1.5, 1.0, 1.3], atol=1e-3)
    # the OOD prior U[3, 4] holds no v* with |1.0 - v*| = 0.3: the grid still answers, no NaN
    ood = posterior_for("cheetah-vel", {"max_velocity": 3.0}, split="ood")(with_info)
    assert np.all(np.isfinite(ood.mean)) and ood.mean[0, 0] == pytest.approx(3.5, abs=1e-3)


# ---------------------------------------------------------------------------------------------
# ENTRY POINTS, VMAP AND JIT
# ---------------------------------------------------------------------------------------------


def test_grid_floor_shrinks_and_vmap_matches_single():
    params, trials = _random_trials("nav2d", {"horizon": 10}, episodes=2, num_trials=16)
    fn = posterior_for("nav2d", {"horizon": 10}, resolution=100, noise_std=0.01)
    trace = jax.jit(jax.vmap(fn, in_axes=1))(trials)
    num_steps = trials.reward.shape[0]
    assert trace.mean.shape == (16, num_steps + 1, 2)
    floor = np.mean(np.asarray(trace.expected_sq_error), 0)
    assert floor[-1] < 0.05 * floor[0] and floor[2] < floor[0]
    one = jax.tree.map(lambda x: x[:, 3], trials)
    single = jax.jit(fn)(one)
    np.testing.assert_allclose(single.mean, trace.mean[3], atol=1e-5)
    theta = task_parameters("nav2d", params)
    assert theta.shape == (16, 2)
    # the posterior mean ends near the true goal
    assert np.mean(np.sum((np.asarray(trace.mean[:, -1]) - theta) ** 2, -1)) < 1e-3


def test_task_parameters_layout():
    reward_means = jnp.arange(4 * 3 * 2, dtype=jnp.float32).reshape(4, 3, 2)
    transitions = jnp.arange(4 * 3 * 2 * 3, dtype=jnp.float32).reshape(4, 3, 2, 3)
    theta = task_parameters("tabular-mdp", MDPParams(transitions, reward_means))
    assert theta.shape == (4, 3 * 2 + 3 * 2 * 3)
    np.testing.assert_allclose(theta[1, :6], reward_means[1].reshape(-1))
    np.testing.assert_allclose(theta[1, 6:], transitions[1].reshape(-1))
    arms = task_parameters("bernoulli-bandit", BanditParams(jnp.zeros((4, 3))))
    assert arms.shape == (4, 3)
    assert task_parameters("nav2d", GoalParams(jnp.zeros((4, 2)))).shape == (4, 2)


def test_env_option_defaults_match_the_registry():
    """The posteriors read these env options with the factories' defaults."""
    assert envs.options("bernoulli-bandit")["arms"] == 5
    assert envs.options("tabular-mdp")["num_states"] == 10
    assert envs.options("tabular-mdp")["num_actions"] == 5
    assert envs.options("point-robot-sparse")["goal_radius"] == 0.2
    assert set(posteriors.names()) <= set(envs.names())


def test_bad_input_is_a_config_error():
    with pytest.raises(ConfigError, match="no exact task posterior"):
        posterior_for("maze")
    with pytest.raises(ConfigError, match="no exact task posterior"):
        task_parameters("ant-dir", None)
    with pytest.raises(ConfigError, match="unknown posterior option"):
        posterior_for("bernoulli-bandit", noise_std=0.1)
    with pytest.raises(ConfigError, match="split"):
        posterior_for("nav2d", split="test")
    with pytest.raises(ConfigError, match="noise_std"):
        posterior_for("nav2d", noise_std=0.0)
