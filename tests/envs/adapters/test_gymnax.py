"""The gymnax adapter: faithful to gymnax, tasks in the declared fields, spaces, horizon, errors."""

from __future__ import annotations

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import metajax.envs as envs
from metajax.envs.adapters.gymnax import GymnaxTask, make_gymnax_task_family
from metajax.errors import ConfigError
from metajax.rollout import episode_returns, reset, rollout
from tests.envs.conformance import check_env_conformance

NAMES = ["gymnax-cartpole", "gymnax-pendulum"]
GYMNAX_ID = {"gymnax-cartpole": "CartPole-v1", "gymnax-pendulum": "Pendulum-v1"}


def _rollouts(name: str, horizon: int = 30):
    """Jitted once: our adapter and plain gymnax (with the task's full params) side by side."""
    env, tasks = envs.make(name, horizon=horizon)
    reference, _ = gymnax.make(GYMNAX_ID[name])

    @jax.jit
    def run(task, key):
        full = env.full_params(task)
        keys = jax.random.split(key, horizon + 1)
        actions = jax.vmap(env.action_space().sample)(keys[1:])
        obs, state = env.reset_env(keys[0], task)
        ref_obs, ref_state = reference.reset_env(keys[0], full)

        def one_step(carry, x):
            state, ref_state = carry
            key, action = x
            obs, state, reward, terminated, _ = env.step_env(key, state, action, task)
            ref = reference.step_env(key, ref_state, action, full)
            return (state, ref[1]), (obs, reward, terminated, ref[0], ref[2], ref[3])

        _, out = jax.lax.scan(one_step, (state, ref_state), (keys[1:], actions))
        return (obs, ref_obs), out

    return env, tasks, run


_RUNS = {name: _rollouts(name) for name in NAMES}


def _task_strategy(name: str):
    env = _RUNS[name][0]
    return st.fixed_dictionaries(
        {
            field: st.floats(low, high, allow_nan=False)
            for field, (low, high) in env.randomize.items()
        }
    )


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=10, deadline=None)
@given(data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_matches_gymnax_with_the_tasks_params(name, data, seed):
    """Any task in range: the adapter steps exactly like gymnax given the same full params;
    observations are flat float32, finite and inside the declared space until termination."""
    env, _, run = _RUNS[name]
    values = data.draw(_task_strategy(name))
    task = GymnaxTask({k: jnp.float32(v) for k, v in values.items()})
    (obs0, ref_obs0), (obs, reward, terminated, ref_obs, ref_reward, ref_done) = run(
        task, jax.random.key(seed)
    )
    np.testing.assert_array_equal(obs0, np.reshape(ref_obs0, -1))
    np.testing.assert_array_equal(obs, np.reshape(ref_obs, (obs.shape[0], -1)))
    np.testing.assert_array_equal(reward, np.asarray(ref_reward, np.float32).reshape(-1))
    np.testing.assert_array_equal(terminated, np.asarray(ref_done).reshape(-1))
    assert obs.dtype == jnp.float32 and reward.dtype == jnp.float32
    # gymnax's step_env does not reset: look at the steps before the first termination
    alive = np.cumsum(np.asarray(terminated)) == 0
    assert np.all(np.isfinite(obs[alive]))
    assert bool(jnp.all(jax.vmap(env.observation_space().contains)(obs[alive])))


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_cartpole_derived_fields_follow_the_task(data):
    env = _RUNS["gymnax-cartpole"][0]
    values = data.draw(_task_strategy("gymnax-cartpole"))
    full = env.full_params(GymnaxTask({k: jnp.float32(v) for k, v in values.items()}))
    np.testing.assert_allclose(full.total_mass, values["masscart"] + values["masspole"], 1e-6)
    np.testing.assert_allclose(full.polemass_length, values["masspole"] * values["length"], 1e-6)
    assert full.max_steps_in_episode == env.horizon


@pytest.mark.parametrize("name", NAMES)
def test_tasks_change_the_dynamics_and_stay_in_range(name):
    env, tasks, run = _RUNS[name]
    batch = tasks.sample(jax.random.key(0), 64)
    for field, (low, high) in env.randomize.items():
        values = np.asarray(batch.values[field])
        assert values.shape == (64,) and np.all((values >= low) & (values <= high))
        assert values.std() > 0.1 * (high - low)
    # the same key and actions under two tasks give different trajectories
    first = jax.tree.map(lambda x: x[0], batch)
    second = jax.tree.map(lambda x: x[1], batch)
    obs_a = run(first, jax.random.key(1))[1][0]
    obs_b = run(second, jax.random.key(1))[1][0]
    assert not np.allclose(obs_a, obs_b)


def test_horizon_option_truncates_gymnax_too():
    """With horizon=7 gymnax's max_steps_in_episode follows our horizon, and the adapter in a
    2-episode trial passes the conformance check (no episode outlives 7 steps)."""
    env, tasks = envs.make("gymnax-pendulum", horizon=7)
    assert env.horizon == 7 and env.base_params.max_steps_in_episode == 7
    trial = envs.TrialWrapper(env, episodes_per_trial=2)
    check_env_conformance(trial, tasks, num_steps=15)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"env": "NoSuchEnv-v0", "randomize": {"m": (1.0, 2.0)}}, "unknown gymnax env"),
        ({"env": "Pendulum-v1", "randomize": {"mass": (1.0, 2.0)}}, "cannot randomize 'mass'"),
        ({"env": "Pendulum-v1", "randomize": {"m": (2.0, 1.0)}}, "low <= high"),
        ({"env": "Pendulum-v1", "randomize": {}}, "at least one"),
        ({"env": "Pendulum-v1", "randomize": {"m": (1, 2)}, "horizon": 0}, "horizon"),
    ],
)
def test_bad_adapter_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message) as error:
        make_gymnax_task_family(**kwargs)
    assert "\n" not in str(error.value)


def test_bad_registered_options_are_config_errors():
    with pytest.raises(ConfigError, match="gymnax-cartpole"):
        envs.make("gymnax-cartpole", length=(0.0, 1.0))


def _lqr_gain(env, task):
    """Discrete-time LQR gain of the task's cartpole, linearized upright (gym's equations)."""
    full = env.full_params(task)
    total = full.masscart + full.masspole
    denominator = full.length * (4.0 / 3.0 - full.masspole / total)
    theta_acc_theta = full.gravity / denominator
    theta_acc_force = -1.0 / (total * denominator)
    x_acc_theta = -full.masspole * full.length * theta_acc_theta / total
    x_acc_force = 1.0 / total - full.masspole * full.length * theta_acc_force / total
    a = jnp.array([[0, 1, 0, 0], [0, 0, x_acc_theta, 0], [0, 0, 0, 1], [0, 0, theta_acc_theta, 0]])
    a = jnp.eye(4) + full.tau * a  # Euler, as the env integrates
    b = full.tau * jnp.array([[0.0], [x_acc_force], [0.0], [theta_acc_force]])
    q, r = jnp.diag(jnp.array([1.0, 1.0, 10.0, 1.0])), jnp.array([[0.01]])

    def riccati(p, _):
        gain = jnp.linalg.solve(r + b.T @ p @ b, b.T @ p @ a)
        return q + a.T @ p @ (a - b @ gain), None

    p, _ = jax.lax.scan(riccati, q, None, length=1000)
    return jnp.linalg.solve(r + b.T @ p @ b, b.T @ p @ a)[0]


def test_cartpole_oracle_is_attained_by_a_task_aware_controller():
    """The oracle (the horizon) is the return of an LQR controller that knows the task, on
    every one of 32 test tasks."""
    env, tasks = envs.make("gymnax-cartpole")

    @jax.jit
    def returns(keys):
        params = tasks.test_tasks(32)
        gains = jax.vmap(lambda t: _lqr_gain(env, t))(params)

        def policy_with(gains):
            def policy(carry, obs, first, keys):
                return carry, (jnp.sum(gains * obs, -1) < 0).astype(jnp.int32), {}

            return policy

        def first_returns(policy):
            state = reset(env, params, keys)
            out = rollout(env, policy, state, params, keys, env.horizon)[1]
            return episode_returns(out, 1)[:, 0]

        return first_returns(policy_with(gains)), env.oracle_episode_return(params)

    achieved, oracle = returns(jax.random.split(jax.random.key(0), 32))
    np.testing.assert_array_equal(oracle, np.full(32, 500.0, np.float32))
    np.testing.assert_array_equal(achieved, oracle)
    assert envs.make("gymnax-pendulum")[0].oracle_episode_return(None) is None
