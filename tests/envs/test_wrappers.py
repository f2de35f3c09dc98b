"""TrialWrapper: RL² inputs, K episodes per trial, horizon, reset keeps the task."""

import jax
import jax.numpy as jnp
import numpy as np

import metajax.envs as envs
from metajax.envs.tabular_mdp import MDPParams


def test_trial_of_k_episodes_with_rl2_inputs():
    env, _ = envs.make("tabular-mdp", num_states=2, num_actions=3, horizon=2)
    params = MDPParams(transitions=jnp.full((2, 3, 2), 0.5), reward_means=jnp.ones((2, 3)) * 7)
    trial = envs.TrialWrapper(env, episodes_per_trial=3)
    assert trial.horizon == 6
    assert trial.observation_space().shape == (2 + 3 + 2,)
    obs, state = trial.reset(jax.random.key(0), params)
    np.testing.assert_array_equal(obs, [1, 0, 0, 0, 0, 0, 0])
    flags = []
    for t in range(6):
        _, state, reward, terminated, truncated, info = trial.step(
            jax.random.key(t), state, 2, params
        )
        obs = info["final_observation"]  # before the auto-reset that starts the next trial
        np.testing.assert_array_equal(obs[2:5], [0, 0, 1])  # previous action one-hot
        assert abs(float(obs[5]) - float(reward)) < 1e-6  # previous reward
        assert float(obs[6]) == float(info["episode_done"])  # previous step ended an episode
        flags.append((bool(info["episode_done"]), bool(terminated)))
        if info["episode_done"] and not terminated:
            np.testing.assert_array_equal(obs[:2], [1, 0])  # the inner env restarted in state 0
    assert flags == [(False, False), (True, False)] * 2 + [(False, False), (True, True)]


def test_oracle_of_a_trial_is_k_times_the_episode_oracle():
    env, tasks = envs.make("bernoulli-bandit", arms=4)
    trial = envs.TrialWrapper(env, 7)
    params = tasks.test_tasks(10)
    np.testing.assert_allclose(
        trial.oracle_episode_return(params), 7 * env.oracle_episode_return(params), rtol=1e-6
    )
