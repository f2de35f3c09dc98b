"""The shared env conformance check that every metajax env passes.

jit, vmap over tasks, dtypes, auto-reset with the same task, observations inside the declared
space, no NaN, deterministic given the key, and no retracing across calls.

Auto-reset is checked against the env's declared semantics: a fresh ``reset_env`` with the
step's reset key (gymnax's ``step``), or, for envs with ``reuses_reset_state`` (the brax
families, as brax's ``AutoResetWrapper``), the very observation that ``reset`` gave the slot.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import spaces

from metajax.envs.core import MetaEnv, TaskDistribution


def _random_actions(space: spaces.Space, key: jax.Array, n: int) -> jax.Array:
    return jax.vmap(space.sample)(jax.random.split(key, n))


def check_env_conformance(
    env: MetaEnv, tasks: TaskDistribution, num_tasks: int = 4, num_steps: int | None = None
) -> None:
    """Runs ``num_steps`` (default: 2 horizons + 1) batched random steps; checks the contract."""
    num_steps = 2 * env.horizon + 1 if num_steps is None else num_steps
    key = jax.random.key(0)
    params = tasks.sample(key, num_tasks)
    test = tasks.test_tasks(3)
    chex.assert_equal(jax.tree.structure(params), jax.tree.structure(test))
    # the held-out split is fixed: two calls agree
    chex.assert_trees_all_equal(test, tasks.test_tasks(3))

    obs_space, action_space = env.observation_space(), env.action_space()

    traces = []

    @jax.jit
    def run(key, params):
        traces.append(1)
        key_reset, key_run = jax.random.split(key)
        obs, state = jax.vmap(env.reset)(jax.random.split(key_reset, num_tasks), params)

        def one_step(carry, key):
            obs, state = carry
            key_act, key_step = jax.random.split(key)
            action = _random_actions(action_space, key_act, num_tasks)
            step_keys = jax.random.split(key_step, num_tasks)
            next_obs, next_state, reward, terminated, truncated, info = jax.vmap(env.step)(
                step_keys, state, action, params
            )
            # an auto-reset restarts with the same task: the reset obs is reset_env's with params
            # (envs that reuse the reset state are checked against ``reset``'s obs instead)
            if env.reuses_reset_state:
                reset_obs = next_obs
            else:
                reset_obs = jax.vmap(lambda k, p: env.reset_env(jax.random.split(k)[1], p)[0])(
                    step_keys, params
                )
            return (next_obs, next_state), (obs, reward, terminated, truncated, reset_obs, next_obs)

        _, trace = jax.lax.scan(one_step, (obs, state), jax.random.split(key_run, num_steps))
        return obs, trace

    first_obs, (obs, reward, terminated, truncated, fresh_obs, next_obs) = run(key, params)
    run(jax.random.key(1), tasks.sample(jax.random.key(1), num_tasks))
    assert len(traces) == 1, "the env retraced on new keys and tasks of the same shape"

    assert obs.dtype == jnp.float32, f"observations must be float32, got {obs.dtype}"
    assert reward.dtype == jnp.float32, f"rewards must be float32, got {reward.dtype}"
    assert terminated.dtype == jnp.bool_ and truncated.dtype == jnp.bool_
    assert reward.shape == (num_steps, num_tasks)
    assert obs.shape == (num_steps, num_tasks, *obs_space.shape)
    for array in (obs, reward, next_obs):
        assert np.all(np.isfinite(np.asarray(array))), "NaN or inf in env output"
    inside = jax.vmap(jax.vmap(obs_space.contains))(obs)
    assert bool(jnp.all(inside)), "observation outside the declared observation space"

    done = np.asarray(terminated | truncated)
    assert done.any(), f"no episode ended in {num_steps} steps with horizon {env.horizon}"
    # auto-reset: after a done step the next observation is the same task's reset observation,
    # a fresh one or (reuses_reset_state) the one that ``reset`` gave this env slot
    if env.reuses_reset_state:
        reset_obs = np.broadcast_to(np.asarray(first_obs), np.shape(next_obs))
    else:
        reset_obs = np.asarray(fresh_obs)
    np.testing.assert_allclose(np.asarray(next_obs)[done], reset_obs[done], rtol=1e-6)
    # truncation at the horizon: no episode outlives it
    steps_since_reset = np.zeros(num_tasks, int)
    for t in range(num_steps):
        steps_since_reset += 1
        assert np.all(steps_since_reset <= env.horizon), "an episode outlived the horizon"
        steps_since_reset[done[t]] = 0

    # determinism: the same key gives the same rollout
    again = run(key, params)
    chex.assert_trees_all_close(again[1][1], reward)
