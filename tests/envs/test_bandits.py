"""Bernoulli bandit: reward formula, task kept across resets, oracle, bad options."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metajax.envs as envs
from metajax.envs.bandits import BanditParams
from metajax.errors import ConfigError


def test_reward_follows_the_arm_probability():
    env, _ = envs.make("bernoulli-bandit", arms=3)
    params = BanditParams(arm_probs=jnp.array([0.0, 1.0, 0.3]))
    _, state = env.reset(jax.random.key(0), params)
    keys = jax.random.split(jax.random.key(1), 20000)
    step = jax.vmap(lambda k, a: env.step(k, state, a, params)[2], in_axes=(0, None))
    assert float(jnp.max(step(keys, 0))) == 0.0
    assert float(jnp.min(step(keys, 1))) == 1.0
    np.testing.assert_allclose(float(jnp.mean(step(keys, 2))), 0.3, atol=0.015)


def test_task_distribution_and_oracle():
    _, tasks = envs.make("bernoulli-bandit", arms=5)
    probs = tasks.test_tasks(1000).arm_probs
    assert probs.shape == (1000, 5)
    assert float(probs.min()) >= 0.0 and float(probs.max()) <= 1.0
    np.testing.assert_allclose(float(probs.mean()), 0.5, atol=0.02)
    env, _ = envs.make("bernoulli-bandit", arms=5)
    # E[max of 5 uniforms] = 5/6
    np.testing.assert_allclose(
        float(env.oracle_episode_return(tasks.test_tasks()).mean()), 5 / 6, atol=0.01
    )
    fresh = tasks.sample(jax.random.key(3), 4).arm_probs
    assert not np.allclose(fresh, probs[:4])


def test_trial_keeps_the_task_across_pulls():
    env, _ = envs.make("bernoulli-bandit", arms=2)
    trial = envs.TrialWrapper(env, episodes_per_trial=5)
    params = BanditParams(arm_probs=jnp.array([1.0, 0.0]))
    obs, state = trial.reset(jax.random.key(0), params)
    rewards, dones = [], []
    for t in range(5):
        obs, state, reward, terminated, truncated, info = trial.step(
            jax.random.key(t + 1), state, 0, params
        )
        rewards.append(float(reward))
        dones.append(bool(terminated))
        assert bool(info["episode_done"])
    assert rewards == [1.0] * 5
    assert dones == [False] * 4 + [True]


def test_bad_arm_count():
    with pytest.raises(ConfigError, match="arms must be at least 2"):
        envs.make("bernoulli-bandit", arms=1)
