"""The shared soft actor-critic update: losses and the tanh-Gaussian log-prob against
hand-worked values, Polyak targets, the embedding hook PEARL uses."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metajax import replay
from metajax.learners import soft_ac

# ----------------------------------------------------------------------------- losses


def test_tanh_gaussian_log_prob_by_hand():
    # mean 0, std 1. u = 0: N(0; 0, 1) = -0.5 log(2 pi) = -0.918939, tanh'(0) = 1 -> -0.918939.
    # u = 1: -0.5 - 0.918939 = -1.418939; log(1 - tanh(1)^2) = log(0.419974) = -0.867562,
    # so log pi = -1.418939 + 0.867562 = -0.551377.
    mean, log_std = jnp.zeros((2, 1)), jnp.zeros((2, 1))
    got = soft_ac.tanh_gaussian_log_prob(mean, log_std, jnp.array([[0.0], [1.0]]))
    np.testing.assert_allclose(got, [-0.918939, -0.551377], atol=1e-5)
    # far in the tail the stable form stays finite: log(1 - tanh(u)^2) ~ 2 log 2 - 2u
    far = soft_ac.tanh_gaussian_log_prob(jnp.zeros((1,)), jnp.zeros((1,)), jnp.array([30.0]))
    expected = -0.5 * 900 - 0.5 * math.log(2 * math.pi) - (2 * math.log(2) - 60.0)
    np.testing.assert_allclose(far, expected, rtol=1e-5)


def test_tanh_gaussian_density_integrates_to_one():
    # p(a) on a grid of (-1, 1) for mean 0.3, std 0.8: the corrected density integrates to 1
    a = jnp.linspace(-1 + 1e-6, 1 - 1e-6, 200_001)
    u = jnp.arctanh(a)
    logp = soft_ac.tanh_gaussian_log_prob(
        jnp.full((1,), 0.3), jnp.log(jnp.full((1,), 0.8)), u[:, None]
    )
    np.testing.assert_allclose(jnp.trapezoid(jnp.exp(logp), a), 1.0, atol=2e-3)


def test_sample_tanh_gaussian_matches_log_prob():
    noise = jnp.array([[0.5, -1.0]])
    mean, log_std = jnp.array([[0.1, 0.2]]), jnp.array([[-0.5, 0.3]])
    action, logp = soft_ac.sample_tanh_gaussian(noise, mean, log_std)
    u = mean + jnp.exp(log_std) * noise
    np.testing.assert_allclose(action, jnp.tanh(u))
    np.testing.assert_allclose(logp, soft_ac.tanh_gaussian_log_prob(mean, log_std, u))


def test_soft_q_target_by_hand():
    # r = 1, scale 5, gamma 0.9, alpha 0.5, next Q = (2, 3) -> min 2, log pi' = -1:
    # 5 * 1 + 0.9 * (2 + 0.5 * 1) = 7.25; terminated -> 5.
    got = soft_ac.soft_q_target(
        jnp.array([1.0, 1.0]),
        jnp.array([0.0, 1.0]),
        jnp.array([[2.0, 2.0], [3.0, 3.0]]),
        jnp.array([-1.0, -1.0]),
        jnp.float32(0.5),
        0.9,
        5.0,
    )
    np.testing.assert_allclose(got, [7.25, 5.0], rtol=1e-6)


def test_critic_actor_temperature_losses_by_hand():
    # critics (1, 2) and (3, 4) against target (2, 2): (1 + 0) / 2 + (1 + 4) / 2 = 3
    q = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    assert float(soft_ac.critic_loss(q, jnp.array([2.0, 2.0]))) == pytest.approx(3.0)
    # alpha 2, log pi (-1, 1), min Q (1, 0): mean(-2 - 1, 2 - 0) = -0.5
    q = jnp.array([[1.0, 2.0], [3.0, 0.0]])
    got = soft_ac.actor_loss(jnp.array([-1.0, 1.0]), q, jnp.float32(2.0))
    assert float(got) == pytest.approx(-0.5)
    # log alpha 0.5, log pi (-1, -3), target entropy -1: -0.5 * mean(-2, -4) = 1.5; its gradient
    # +3 lowers alpha, since the entropy 2 exceeds the target -1
    loss, grad = jax.value_and_grad(soft_ac.temperature_loss)(
        jnp.float32(0.5), jnp.array([-1.0, -3.0]), -1.0
    )
    assert float(loss) == pytest.approx(1.5)
    assert float(grad) == pytest.approx(3.0)


# ----------------------------------------------------------------------------- the update


def tiny_setup(auto_temperature: bool = True) -> soft_ac.Setup:
    return soft_ac.Setup(
        actor=soft_ac.TanhGaussianActor(2, (8,)),
        critic=soft_ac.TwinCritic((8,)),
        actor_opt=optax.adam(1e-2),
        critic_opt=optax.adam(1e-2),
        alpha_opt=optax.adam(1e-2),
        low=-jnp.ones(2),
        high=jnp.ones(2),
        gamma=0.9,
        tau=0.25,
        reward_scale=1.0,
        target_entropy=-2.0,
        auto_temperature=auto_temperature,
    )


def tiny_batch(key: jax.Array, n: int = 16) -> tuple[replay.Experience, tuple]:
    k = jax.random.split(key, 6)
    batch = replay.Experience(
        obs=jax.random.normal(k[0], (n, 3)),
        action=jax.random.uniform(k[1], (n, 2), minval=-1.0, maxval=1.0),
        reward=jax.random.normal(k[2], (n,)),
        next_obs=jax.random.normal(k[3], (n, 3)),
        terminated=jnp.zeros((n,)),
    )
    return batch, (jax.random.normal(k[4], (n, 2)), jax.random.normal(k[5], (n, 2)))


def test_update_moves_targets_by_polyak_and_trains_every_group():
    ac = tiny_setup()
    params, opt = soft_ac.init(ac, jax.random.key(0), jax.random.key(1), 3, 1.0)
    batch, noise = tiny_batch(jax.random.key(2))
    update = jax.jit(lambda *args: soft_ac.update(ac, *args))
    new, _, metrics, embed_grads = update(params, opt, batch, noise)
    # target <- 0.25 * new critic + 0.75 * old target (the old target is the initial critic)
    for got, critic, old in zip(
        jax.tree.leaves(new.target_critic),
        jax.tree.leaves(new.critic),
        jax.tree.leaves(params.target_critic),
        strict=True,
    ):
        np.testing.assert_allclose(got, 0.25 * critic + 0.75 * old, rtol=1e-6, atol=1e-7)
    moved = lambda a, b: max(
        float(jnp.max(jnp.abs(x - y)))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )
    assert moved(new.actor, params.actor) > 0 and moved(new.critic, params.critic) > 0
    assert float(new.log_alpha) != float(params.log_alpha)
    assert embed_grads == ()
    assert set(metrics) == {"critic_loss", "actor_loss", "q_mean", "entropy", "alpha"}
    assert float(metrics["alpha"]) == pytest.approx(1.0)  # alpha before the step


def test_fixed_temperature_keeps_alpha():
    ac = tiny_setup(auto_temperature=False)
    params, opt = soft_ac.init(ac, jax.random.key(0), jax.random.key(1), 3, 0.5)
    batch, noise = tiny_batch(jax.random.key(3))
    new, new_opt, _, _ = soft_ac.update(ac, params, opt, batch, noise)
    assert float(new.log_alpha) == float(params.log_alpha) == pytest.approx(math.log(0.5))
    assert jax.tree.all(jax.tree.map(jnp.array_equal, new_opt.alpha, opt.alpha))


def test_embed_loss_and_parameters_get_their_gradient():
    # an embedding that only adds the loss w^2 (inputs untouched): its gradient is 2w = 3
    ac = tiny_setup()
    params, opt = soft_ac.init(ac, jax.random.key(0), jax.random.key(1), 3, 1.0)
    batch, noise = tiny_batch(jax.random.key(4))

    def embed(w, batch):
        return soft_ac.Inputs(batch.obs, batch.next_obs, batch.obs, loss=w**2, metrics={"w": w})

    plain = soft_ac.update(ac, params, opt, batch, noise)
    new, _, metrics, grad = soft_ac.update(ac, params, opt, batch, noise, None, embed, 1.5)
    assert float(grad) == pytest.approx(3.0)
    assert float(metrics["w"]) == 1.5
    # the reported critic loss is the critic's alone, and the critics' step is unchanged
    assert float(metrics["critic_loss"]) == float(plain[2]["critic_loss"])
    for a, b in zip(jax.tree.leaves(new.critic), jax.tree.leaves(plain[0].critic), strict=True):
        np.testing.assert_array_equal(a, b)
