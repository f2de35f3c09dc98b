"""2D navigation and the point robots: reward formulas against NumPy, oracle, splits, trials."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import metajax.envs as envs
from metajax.envs.navigation import GoalParams
from metajax.errors import ConfigError
from metajax.rollout import episode_returns, reset, rollout
from tests.envs.conformance import check_env_conformance

NAMES = ["nav2d", "point-robot-sparse", "point-robot-dense"]


def numpy_episode(name: str, goal: np.ndarray, actions: np.ndarray):
    """The reference envs in plain NumPy (maml_rl point_env_randgoal, oyster point_robot).

    Returns per-step (rewards, done, positions, dense rewards) up to and including the first
    termination; the dense reward is what oyster's sparse point robot returns from ``step``.
    """
    position = np.zeros(2)
    rewards, dones, positions, denses = [], [], [], []
    for action in actions:
        position = position + np.clip(action, -0.1, 0.1)  # rllab/rlkit normalize: clip
        x, y = position - goal
        dense = -((x**2 + y**2) ** 0.5)
        if name == "nav2d":
            reward, done = dense, abs(x) < 0.01 and abs(y) < 0.01
        elif name == "point-robot-dense":
            reward, done = dense, False
        else:  # oyster: sparsify_rewards(r) (+1 when within goal_radius)
            mask = float(dense >= -0.2)
            reward, done = dense * mask + (1.0 if dense >= -0.2 else 0.0), False
        rewards.append(reward)
        dones.append(done)
        positions.append(position.copy())
        denses.append(dense)
        if done:
            break
    return np.array(rewards), np.array(dones), np.array(positions), np.array(denses)


def _episode_fn(env):
    def run(goal, actions):
        params = GoalParams(goal=goal)
        obs, state = env.reset_env(jax.random.key(0), params)

        def one_step(state, action):
            obs, state, reward, terminated, info = env.step_env(
                jax.random.key(0), state, action, params
            )
            return state, (obs, reward, terminated, info["dense_reward"])

        return jax.lax.scan(one_step, state, actions)[1]

    return jax.jit(run)


_EPISODE_FNS = {name: _episode_fn(envs.make(name)[0]) for name in NAMES}


def _sampler(name):
    _, tasks = envs.make(name)

    @jax.jit
    def sample(key):
        ood = jax.vmap(tasks.sample_ood_task)(jax.random.split(key, 64))
        return tasks.sample(key, 64).goal, ood.goal

    return sample


_SAMPLERS = {name: _sampler(name) for name in NAMES}

coordinate = st.floats(-1.25, 1.25, allow_nan=False, width=32)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=30, deadline=None)
@given(
    goal=st.tuples(coordinate, coordinate),
    seed=st.integers(0, 2**31 - 1),
    scale=st.sampled_from([0.05, 0.1, 0.3, 10.0]),
)
def test_reward_matches_numpy_reference(name, goal, seed, scale):
    """Same goal, same (partly out-of-bounds) actions: our rewards, dones, obs = the reference."""
    goal = np.array(goal, np.float32)
    rng = np.random.default_rng(seed)
    # a random walk biased towards the goal, so some episodes reach it and terminate
    actions = (rng.uniform(-scale, scale, (40, 2)) + 0.05 * np.sign(goal)).astype(np.float32)
    episode = _EPISODE_FNS[name](jnp.asarray(goal), actions)
    obs, reward, terminated, dense = map(np.asarray, episode)
    ref_reward, ref_done, ref_pos, ref_dense = numpy_episode(name, goal.astype(np.float64), actions)
    n = len(ref_reward)
    assert np.all(np.isfinite(obs)) and np.all(np.isfinite(reward))
    # steps within rounding of a threshold (goal radius 0.2, tolerance 0.01) may go either way
    distance = np.linalg.norm(ref_pos - goal, axis=-1)
    off_edge = np.abs(distance - 0.2) > 1e-5
    np.testing.assert_allclose(reward[:n][off_edge], ref_reward[off_edge], atol=2e-5)
    np.testing.assert_allclose(obs[:n], ref_pos, atol=2e-5)
    # info["dense_reward"] is -distance for every family (oyster's step reward)
    np.testing.assert_allclose(dense[:n], ref_dense, atol=2e-5)
    near_edge = np.abs(np.max(np.abs(ref_pos - goal), axis=-1) - 0.01) < 1e-5
    agree = (terminated[:n] == ref_done) | near_edge
    assert agree.all()


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_task_samples_are_valid(name, seed):
    """Goals lie in the declared range; OOD goals lie outside the training range."""
    goal, ood = map(np.asarray, _SAMPLERS[name](jax.random.key(seed)))
    assert goal.shape == (64, 2) and np.all(np.isfinite(goal))
    if name == "nav2d":
        assert np.all(np.abs(goal) <= 0.5)
        ood_inf = np.max(np.abs(ood), axis=-1)
        assert np.all((ood_inf > 0.5) & (ood_inf <= 1.0))
    else:
        np.testing.assert_allclose(np.linalg.norm(goal, axis=-1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(ood, axis=-1), 1.0, rtol=1e-5)
        assert np.all(goal[:, 1] >= -1e-6) and np.all(ood[:, 1] <= 1e-6)


def test_ood_ring_is_uniform():
    """Uniform on the ring (area 4 - 1 = 3): the part with |g|_inf <= 0.75 has area
    1.5^2 - 1 = 1.25, so it holds 1.25 / 3 of the goals; the quadrants are equally likely."""
    _, tasks = envs.make("nav2d")
    goal = np.asarray(jax.jit(lambda: tasks.ood_test_tasks(20000).goal)())
    inner = np.max(np.abs(goal), axis=-1) <= 0.75
    assert abs(inner.mean() - 1.25 / 3.0) < 0.02
    assert abs((goal[:, 0] > 0).mean() - 0.5) < 0.02 and abs((goal[:, 1] > 0).mean() - 0.5) < 0.02


def test_point_robot_splits_follow_pearl():
    """80 training and 20 test tasks, fixed, disjoint."""
    _, tasks = envs.make("point-robot-sparse")
    train, test = tasks.train_tasks().goal, tasks.test_tasks().goal
    assert train.shape == (80, 2) and test.shape == (20, 2)
    np.testing.assert_array_equal(train, tasks.train_tasks().goal)
    distance = np.linalg.norm(np.asarray(train)[:, None] - np.asarray(test)[None], axis=-1)
    assert distance.min() > 0
    sampled = np.asarray(tasks.sample(jax.random.key(3), 50).goal)
    assert all(any(np.array_equal(g, t) for t in np.asarray(train)) for g in sampled)


def _oracle_policy(env, params):
    def policy(carry, obs, first, key):
        return carry, jax.vmap(env.oracle_action)(obs, params), {}

    return policy


@pytest.mark.parametrize("name", NAMES)
def test_oracle_return_matches_oracle_rollout(name):
    """The closed-form oracle return equals the oracle policy's rolled-out return, and a random
    policy never beats it."""
    env, tasks = envs.make(name)

    def random_policy(carry, obs, first, keys):
        return carry, jax.vmap(env.action_space().sample)(keys), {}

    @jax.jit
    def run(keys):
        params = tasks.test_tasks(16)
        returns = [
            episode_returns(
                rollout(env, policy, reset(env, params, keys), params, keys, env.horizon)[1], 1
            )[:, 0]
            for policy in (_oracle_policy(env, params), random_policy)
        ]
        return (*returns, env.oracle_episode_return(params))

    oracle_returns, random_returns, oracle = run(jax.random.split(jax.random.key(0), 16))
    np.testing.assert_allclose(oracle_returns, oracle, rtol=1e-4, atol=1e-4)
    assert np.all(random_returns <= oracle + 1e-4)


def test_nav2d_oracle_closed_form_by_hand():
    """Goal (0.25, -0.05): moves reach (0.1,-0.05), (0.2,-0.05), (0.25,-0.05) and terminate.

    Rewards: -sqrt(0.15^2) = -0.15, -0.05, 0.0, so the return is -0.2.
    """
    env, _ = envs.make("nav2d")
    value = env.oracle_episode_return(GoalParams(goal=jnp.array([0.25, -0.05])))
    np.testing.assert_allclose(value, -0.2, atol=1e-6)


def test_task_stays_fixed_across_resets_in_a_trial():
    """Within a K-episode trial each episode resets to the origin with the same goal: the oracle
    earns its per-episode return in every episode, and the trial return is K times that."""
    env, tasks = envs.make("nav2d", horizon=4)
    trial = envs.TrialWrapper(env, episodes_per_trial=3)
    params = tasks.test_tasks(8)

    def policy(carry, obs, first, key):
        return carry, jax.vmap(env.oracle_action)(obs[:, :2], params), {}

    keys = jax.random.split(jax.random.key(0), 8)
    transitions = rollout(trial, policy, reset(trial, params, keys), params, keys, trial.horizon)[1]
    inner_done = transitions.info["episode_done"].astype(jnp.int32)  # [T, B]
    index = jnp.cumsum(inner_done, axis=0) - inner_done
    per_episode = jnp.einsum(
        "tb,tbk->bk", transitions.reward, jax.nn.one_hot(index, 3, dtype=jnp.float32)
    )
    oracle = env.oracle_episode_return(params)
    # goals beyond 4 steps (|g|_inf > 0.4) are truncated, closer ones terminate: both repeat
    assert np.all(np.asarray(inner_done.sum(0)) >= 3)  # early ends start the next trial
    np.testing.assert_allclose(per_episode, jnp.stack([oracle] * 3, -1), rtol=1e-4, atol=1e-5)
    trial_return = episode_returns(transitions, 1)[:, 0]
    np.testing.assert_allclose(trial_return, trial.oracle_episode_return(params), rtol=1e-4)


def test_trial_wrapper_conformance():
    env, tasks = envs.make("point-robot-sparse", horizon=5)
    check_env_conformance(envs.TrialWrapper(env, episodes_per_trial=2), tasks)


@pytest.mark.parametrize(
    "name, options",
    [
        ("nav2d", {"horizon": 0}),
        ("nav2d", {"max_step": -0.1}),
        ("nav2d", {"goal_tolerance": 0.0}),
        ("point-robot-sparse", {"goal_radius": 0.0}),
        ("point-robot-sparse", {"num_train_tasks": 0}),
        ("point-robot-dense", {"num_test_tasks": 0}),
    ],
)
def test_bad_options_raise_one_line(name, options):
    with pytest.raises(ConfigError) as error:
        envs.make(name, **options)
    assert "\n" not in str(error.value) and name in str(error.value)
