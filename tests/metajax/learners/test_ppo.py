"""GAE and the PPO losses against values worked out by hand."""

import jax.numpy as jnp
import numpy as np

from metajax.learners import ppo


def test_gae_by_hand():
    # T = 3, one env, gamma = 0.5, lambda = 0.5, episode ends at t = 1 (no bootstrap from t=2).
    # deltas: t0 = 1 + 0.5*2 - 1 = 1;  t1 = 0 + 0 - 2 = -2;  t2 = 2 + 0.5*4 - 3 = 1
    # advantages (backwards): A2 = 1;  A1 = -2 (done cuts the trace);  A0 = 1 + 0.25*(-2) = 0.5
    rewards = jnp.array([[1.0], [0.0], [2.0]])
    values = jnp.array([[1.0], [2.0], [3.0]])
    dones = jnp.array([[False], [True], [False]])
    adv, ret = ppo.compute_gae(rewards, values, dones, jnp.array([4.0]), 0.5, 0.5)
    np.testing.assert_allclose(adv[:, 0], [0.5, -2.0, 1.0])
    np.testing.assert_allclose(ret[:, 0], [1.5, 0.0, 4.0])


def test_gae_with_lambda_one_is_discounted_return_minus_value():
    rewards = jnp.array([[1.0], [1.0], [1.0]])
    values = jnp.zeros((3, 1))
    dones = jnp.array([[False], [False], [True]])
    adv, _ = ppo.compute_gae(rewards, values, dones, jnp.array([100.0]), 0.9, 1.0)
    # returns-to-go with gamma 0.9 ending at t=2: 1 + .9 + .81, 1 + .9, 1
    np.testing.assert_allclose(adv[:, 0], [2.71, 1.9, 1.0], rtol=1e-6)


def test_clipped_surrogate_by_hand():
    # ratios e^0 = 1 and e^{ln 1.5} = 1.5 with advantages 2 and 1, clip 0.2:
    # min(1*2, 1*2) = 2 and min(1.5*1, 1.2*1) = 1.2, mean 1.6, loss -1.6
    old = jnp.zeros(2)
    new = jnp.array([0.0, jnp.log(1.5)])
    adv = jnp.array([2.0, 1.0])
    np.testing.assert_allclose(ppo.clipped_surrogate_loss(new, old, adv, 0.2), -1.6, rtol=1e-6)
    # a negative advantage keeps the unclipped (worse) term: ratio 1.5, A = -1: min(-1.5, -1.2)
    np.testing.assert_allclose(
        ppo.clipped_surrogate_loss(new[1:], old[1:], -adv[1:], 0.2), 1.5, rtol=1e-6
    )


def test_clipped_value_loss_and_mask():
    # v = 3, v_old = 1, R = 3, clip 0.5: clipped v = 1.5; max(0, 2.25) = 2.25, halved 1.125
    # the second entry is masked out
    values, old, returns = jnp.array([3.0, 9.0]), jnp.array([1.0, 0.0]), jnp.array([3.0, 0.0])
    mask = jnp.array([True, False])
    np.testing.assert_allclose(ppo.clipped_value_loss(values, old, returns, 0.5, mask), 1.125)


def test_normalize_advantages():
    adv = ppo.normalize_advantages(jnp.array([1.0, 3.0, 100.0]), jnp.array([True, True, False]))
    np.testing.assert_allclose(adv[:2], [-1.0, 1.0], rtol=1e-6)


def test_trial_ppo_value_clipping_is_an_option():
    from types import SimpleNamespace

    from metajax.learners import trial_ppo

    t, b = 3, 2
    data = trial_ppo.Trials(
        obs=jnp.zeros((t, b, 1)),
        first=jnp.zeros((t, b), bool),
        action=jnp.zeros((t, b), jnp.int32),
        old_log_prob=jnp.full((t, b), jnp.log(0.5)),
        old_value=jnp.zeros((t, b)),
        advantage=jnp.zeros((t, b)),
        target=jnp.full((t, b), 10.0),
        mask=jnp.ones((t, b), bool),
        extras={},
    )
    logits, value = jnp.zeros((t, b, 2)), jnp.full((t, b), 4.0)  # far beyond clip_eps of old
    config = SimpleNamespace(clip_eps=0.2, vf_coef=1.0, ent_coef=0.0, clip_value=True)
    _, clipped = trial_ppo.clipped_loss(logits, value, True, data, config)
    unclipped = SimpleNamespace(**{**vars(config), "clip_value": False})
    _, free = trial_ppo.clipped_loss(logits, value, True, data, unclipped)
    np.testing.assert_allclose(clipped["value_loss"], 0.5 * (10.0 - 0.2) ** 2, rtol=1e-6)
    np.testing.assert_allclose(free["value_loss"], 0.5 * (10.0 - 4.0) ** 2, rtol=1e-6)
