"""cheetah-vel reports brax's forward velocity in the step info, through the trial wrapper and
the rollout engine (the exact posteriors read ``info["x_velocity"]``)."""

from __future__ import annotations

import jax
import numpy as np

import metajax.envs as envs
from metajax import rollout


def test_cheetah_vel_step_info_has_x_velocity_through_wrapper_and_rollout():
    env, tasks = envs.make("cheetah-vel", horizon=3)
    trial = envs.TrialWrapper(env, 2)
    params = tasks.test_tasks(2)
    action_dim = env.action_space().shape[0]

    def policy(carry, obs, first, keys):  # random actions in [-1, 1], one key per env
        del obs, first
        uniform = lambda key: jax.random.uniform(key, (action_dim,), minval=-1.0, maxval=1.0)  # noqa: E731
        return carry, jax.vmap(uniform)(keys), {}

    keys = jax.random.split(jax.random.key(0), 2)
    _, transitions = jax.jit(lambda k: rollout.run(trial, policy, params, k, 4))(keys)
    velocity = np.asarray(transitions.info["x_velocity"])  # [T, B]
    assert velocity.shape == (4, 2) and velocity.dtype == np.float32
    assert np.all(np.isfinite(velocity)) and np.any(velocity != 0.0)
    # the reward is -|v_x - v_target| minus a control cost: at most -|v_x - v_target|
    target = np.asarray(params.target_velocity)[None]  # [1, B]
    assert np.all(np.asarray(transitions.reward) <= -np.abs(velocity - target) + 1e-5)
