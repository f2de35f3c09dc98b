"""Random tabular MDP: task statistics, dynamics, and the oracle by backward induction."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np

import metajax.envs as envs
from metajax.envs.tabular_mdp import MDPParams


def test_tasks_have_dirichlet_transitions_and_gaussian_means():
    _, tasks = envs.make("tabular-mdp")
    params = tasks.test_tasks(500)
    assert params.transitions.shape == (500, 10, 5, 10)
    np.testing.assert_allclose(np.asarray(params.transitions.sum(-1)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(float(params.reward_means.mean()), 1.0, atol=0.03)
    np.testing.assert_allclose(float(params.reward_means.std()), 1.0, atol=0.03)


def test_step_moves_by_the_transition_matrix():
    env, _ = envs.make("tabular-mdp", num_states=3, num_actions=2, horizon=4)
    transitions = jnp.zeros((3, 2, 3)).at[:, 0, 2].set(1.0).at[:, 1, 1].set(1.0)
    params = MDPParams(transitions=transitions, reward_means=jnp.zeros((3, 2)))
    obs, state = env.reset(jax.random.key(0), params)
    np.testing.assert_array_equal(obs, [1, 0, 0])
    obs, state, *_ = env.step(jax.random.key(1), state, 0, params)
    np.testing.assert_array_equal(obs, [0, 0, 1])
    obs, state, *_ = env.step(jax.random.key(2), state, 1, params)
    np.testing.assert_array_equal(obs, [0, 1, 0])


def test_oracle_equals_brute_force_over_deterministic_policies():
    # 2 states, 2 actions, horizon 2: enumerate all (first action, second-action-per-state) plans
    env, tasks = envs.make("tabular-mdp", num_states=2, num_actions=2, horizon=2)
    params = jax.tree.map(lambda x: x[0], tasks.test_tasks(1))
    p, r = np.asarray(params.transitions), np.asarray(params.reward_means)
    best = max(
        r[0, a0] + sum(p[0, a0, s] * r[s, plan[s]] for s in range(2))
        for a0 in range(2)
        for plan in itertools.product(range(2), repeat=2)
    )
    np.testing.assert_allclose(float(env.oracle_episode_return(params)), best, rtol=1e-5)
