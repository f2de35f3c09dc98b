"""The rollout engine: shapes, auto-reset, per-env keys independent of batch splitting."""

import jax
import jax.numpy as jnp
import numpy as np

import metajax.envs as envs
from metajax import rollout


def _random_policy(env):
    space = env.action_space()

    def policy(carry, obs, first, keys):
        return carry, jax.vmap(space.sample)(keys), {"first": first}

    return policy


def test_rollout_shapes_and_episode_returns():
    env, tasks = envs.make("tabular-mdp", num_states=3, num_actions=2, horizon=4)
    params = tasks.sample(jax.random.key(0), 5)
    keys = jax.random.split(jax.random.key(1), 5)
    start = rollout.reset(env, params, keys)
    _, traj = rollout.rollout(env, _random_policy(env), start, params, keys, 8)
    assert traj.obs.shape == (8, 5, 3) and traj.reward.shape == (8, 5)
    assert np.asarray(traj.truncated)[[3, 7]].all() and not np.asarray(traj.done)[[0, 1, 2]].any()
    # the policy saw `first` at the starts of both episodes
    assert np.asarray(traj.extras["first"])[[0, 4]].all()
    returns = rollout.episode_returns(traj, 2)
    np.testing.assert_allclose(returns[:, 0], traj.reward[:4].sum(0), rtol=1e-5)
    np.testing.assert_allclose(returns[:, 1], traj.reward[4:].sum(0), rtol=1e-5)


def test_a_slice_of_the_batch_rolls_out_exactly_like_the_full_batch():
    env, tasks = envs.make("bernoulli-bandit", arms=3)
    params = tasks.sample(jax.random.key(0), 8)
    keys = jax.random.split(jax.random.key(1), 8)
    policy = _random_policy(env)
    run = lambda p, k: rollout.rollout(env, policy, rollout.reset(env, p, k), p, k, 6)[1]
    full = run(params, keys)
    half = run(jax.tree.map(lambda x: x[4:], params), keys[4:])
    np.testing.assert_array_equal(full.reward[:, 4:], half.reward)
    np.testing.assert_array_equal(full.action[:, 4:], half.action)
    assert not jnp.array_equal(full.action[:, :4], half.action)
