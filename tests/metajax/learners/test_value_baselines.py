"""The linear feature baseline and masked discounted returns."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from metajax.learners import value_baselines as vb


def test_first_episode_mask_stops_after_the_first_done():
    # one trajectory, done at t=1: steps 0 and 1 belong to the first episode, 2 and 3 do not
    done = jnp.array([[False], [True], [False], [True]])
    np.testing.assert_array_equal(vb.first_episode_mask(done)[:, 0], [1.0, 1.0, 0.0, 0.0])


def test_discounted_returns_by_hand():
    # gamma = 0.5, rewards 1, 2, 3, episode ends at t=2, t=3 is a masked new episode:
    # R2 = 3, R1 = 2 + 0.5 * 3 = 3.5, R0 = 1 + 0.5 * 3.5 = 2.75, R3 masked = 0
    rewards = jnp.array([[1.0], [2.0], [3.0], [100.0]])
    done = jnp.array([[False], [False], [True], [False]])
    mask = vb.first_episode_mask(done)
    returns = vb.discounted_returns(rewards, done, mask, 0.5)
    np.testing.assert_allclose(returns[:, 0], [2.75, 3.5, 3.0, 0.0])


def test_features_by_hand():
    # obs o at t = 0 and t = 1 (t / 100 = 0.01): [o, o^2, t, t^2, t^3, 1]
    obs = jnp.array([[[2.0]], [[-3.0]]])  # [T=2, N=1, D=1]
    f = vb.features(obs)[:, 0]
    np.testing.assert_allclose(f[0], [2.0, 4.0, 0.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(f[1], [-3.0, 9.0, 0.01, 1e-4, 1e-6, 1.0], rtol=1e-5)


def test_fit_recovers_a_linear_target_and_ignores_masked_steps():
    key_obs, key_w = jax.random.split(jax.random.key(0))
    obs = jax.random.uniform(key_obs, (20, 8, 2), minval=-1.0, maxval=1.0)  # [T, N, D]
    true_weights = jax.random.normal(key_w, (8,))
    target = vb.features(obs) @ true_weights
    mask = jnp.ones((20, 8)).at[15:, :3].set(0.0)
    garbage = jnp.where(mask > 0, target, 1e3)  # masked steps must not influence the fit
    weights = vb.fit_linear_baseline(obs, garbage, mask, reg_coeff=1e-8)
    prediction = vb.predict_linear_baseline(weights, obs)
    np.testing.assert_allclose(prediction * mask, target * mask, atol=2e-3)


def test_advantages_are_returns_minus_the_refit_baseline():
    key_obs, key_r = jax.random.split(jax.random.key(1))
    obs = jax.random.normal(key_obs, (10, 4, 3))
    rewards = jax.random.normal(key_r, (10, 4))
    done = jnp.zeros((10, 4), bool).at[-1].set(True)
    mask = vb.first_episode_mask(done)
    advantages, returns = vb.linear_baseline_advantages(obs, rewards, done, mask, 0.9)
    weights = vb.fit_linear_baseline(obs, returns, mask)
    np.testing.assert_allclose(
        advantages, returns - vb.predict_linear_baseline(weights, obs), atol=1e-5
    )
    # least squares with an intercept: residuals sum to ~zero
    assert abs(float(jnp.mean(advantages))) < 1e-3
