"""Conjugate gradient, Hessian-vector products and the KL-constrained TRPO step on pytrees."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from metajax.learners import trpo
from metajax.networks import kl_divergence, log_prob


def test_conjugate_gradient_solves_an_spd_system_on_a_pytree():
    key_a, key_b = jax.random.split(jax.random.key(0))
    m = jax.random.normal(key_a, (5, 5))
    a = m @ m.T + 0.5 * jnp.eye(5)
    b = {"x": jax.random.normal(key_b, (2,)), "y": jax.random.normal(key_b, (3,))}
    flat_b, unravel = ravel_pytree(b)

    def matvec(v):
        return unravel(a @ ravel_pytree(v)[0])

    x = jax.jit(lambda b: trpo.conjugate_gradient(matvec, b, iters=10))(
        b
    )  # n = 5 iterations suffice exactly
    np.testing.assert_allclose(ravel_pytree(x)[0], jnp.linalg.solve(a, flat_b), rtol=1e-3)


def test_conjugate_gradient_residual_gives_the_quadratic_form():
    # x . (b - r) = x^T A x: TRPO's step scale without another product with A
    key_a, key_b = jax.random.split(jax.random.key(3))
    m = jax.random.normal(key_a, (8, 8))
    a = m @ m.T + 0.1 * jnp.eye(8)
    b = jax.random.normal(key_b, (8,))
    x, r = jax.jit(lambda b: trpo.conjugate_gradient_with_residual(lambda v: a @ v, b, iters=4))(b)
    np.testing.assert_allclose(r, b - a @ x, rtol=1e-3, atol=1e-4)  # 4 < 8: not converged
    np.testing.assert_allclose(x @ (b - r), x @ a @ x, rtol=1e-4)


def test_hvp_equals_the_explicit_hessian_times_a_vector_on_a_small_network():
    net = nn.Sequential([nn.Dense(4), nn.tanh, nn.Dense(1)])
    key_p, key_x, key_v = jax.random.split(jax.random.key(1), 3)
    x = jax.random.normal(key_x, (6, 3))
    params = net.init(key_p, x)

    def f(p):
        return jnp.mean(jnp.sin(net.apply(p, x)) ** 2)

    flat, unravel = ravel_pytree(params)
    v_flat = jax.random.normal(key_v, flat.shape)
    hessian = jax.jit(jax.hessian(lambda z: f(unravel(z))))(flat)  # [P, P]
    expected = hessian @ v_flat
    got = ravel_pytree(jax.jit(functools.partial(trpo.hvp, f))(params, unravel(v_flat)))[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    linearized = jax.jit(lambda p, v: trpo.make_hvp(f, p)(v))(params, unravel(v_flat))
    linearized = ravel_pytree(linearized)[0]
    np.testing.assert_allclose(linearized, expected, rtol=1e-4, atol=1e-6)


def _gaussian_policy_problem():
    """A linear-Gaussian policy on fixed samples: surrogate loss and KL to the sampling policy."""
    key_s, key_a, key_adv, key_w = jax.random.split(jax.random.key(2), 4)
    states = jax.random.normal(key_s, (64, 3))
    params = {"w": 0.1 * jax.random.normal(key_w, (3, 2)), "log_std": jnp.zeros((2,))}

    def dist(p):
        mean = states @ p["w"]
        return mean, jnp.broadcast_to(p["log_std"], mean.shape)

    old = jax.tree.map(jax.lax.stop_gradient, dist(params))
    actions = old[0] + jax.random.normal(key_a, old[0].shape)
    advantages = jax.random.normal(key_adv, (64,))
    old_logp = log_prob(old, actions, False)

    def kl_fn(p):
        return jnp.mean(kl_divergence(old, dist(p), False))

    def loss_and_kl(p):
        ratio = jnp.exp(log_prob(dist(p), actions, False) - old_logp)
        return -jnp.mean(ratio * advantages), kl_fn(p)

    return params, loss_and_kl, kl_fn


def test_trpo_step_respects_the_kl_bound_and_improves_the_loss():
    params, loss_and_kl, kl_fn = _gaussian_policy_problem()
    max_kl = 0.01
    step = jax.jit(functools.partial(trpo.trpo_step, loss_and_kl, kl_fn, max_kl=max_kl))
    new, info = step(params)
    loss_before, _ = loss_and_kl(params)
    loss_after, kl = loss_and_kl(new)
    assert float(kl) <= max_kl
    assert float(kl) > 0.3 * max_kl  # the step uses the trust region, not a tiny step
    assert float(loss_after) < float(loss_before)
    np.testing.assert_allclose(info.kl, kl, rtol=1e-4)
    np.testing.assert_allclose(info.loss_after, loss_after, rtol=1e-4)
    assert 0.0 < float(info.step_fraction) <= 1.0


def test_line_search_backtracks_when_the_quadratic_model_overshoots():
    # The KL is exponential in log_std: with a large trust region the quadratic model's full
    # step exceeds the bound, so the line search must shrink it.
    params, loss_and_kl, kl_fn = _gaussian_policy_problem()
    max_kl = 2.0
    step = functools.partial(trpo.trpo_step, loss_and_kl, kl_fn, max_kl=max_kl, backtrack_ratio=0.5)
    new, info = jax.jit(step)(params)
    _, kl = loss_and_kl(new)
    assert float(info.step_fraction) < 1.0
    assert float(kl) <= max_kl


def test_a_step_that_cannot_improve_is_rejected():
    params, _, kl_fn = _gaussian_policy_problem()

    def flat_loss_and_kl(p):  # the loss does not depend on p: no candidate improves it
        return jnp.float32(1.0), kl_fn(p)

    step = functools.partial(trpo.trpo_step, flat_loss_and_kl, kl_fn, max_kl=0.01)
    new, info = jax.jit(step)(params)
    assert float(info.step_fraction) == 0.0
    jax.tree.map(np.testing.assert_array_equal, new, params)
