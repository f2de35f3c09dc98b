"""The MAML family's meta-gradient core, losses, Fisher products and learner plumbing.

Meta-gradients are checked in float64 on fixed trajectories (the deterministic surrogate whose
gradient the learner follows) against central finite differences and closed forms.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from metajax.learners import maml, promp, trpo
from metajax.learners.maml.learner import ppo_update
from metajax.networks import log_prob

# ----------------------------------------------------------------------------- losses by hand


def test_policy_gradient_loss_by_hand():
    # log pi = [-1, -2, -9], A = [1, 0.5, 7], mask = [1, 1, 0] (third step is padding):
    # vpg = -((-1)(1) + (-2)(0.5)) / 2 = 1.0;  lvc at the sampling policy (old log pi = log pi):
    # -(1 * 1 + 1 * 0.5) / 2 = -0.75
    logp = jnp.array([-1.0, -2.0, -9.0])
    adv = jnp.array([1.0, 0.5, 7.0])
    mask = jnp.array([1.0, 1.0, 0.0])
    np.testing.assert_allclose(maml.policy_gradient_loss(logp, adv, mask, "vpg"), 1.0)
    np.testing.assert_allclose(maml.policy_gradient_loss(logp, adv, mask, "lvc", logp), -0.75)
    # both have the same gradient in log pi: -A * mask / 2 = [-0.5, -0.25, 0]
    for estimator in ("vpg", "lvc"):
        grad = jax.grad(maml.policy_gradient_loss)(logp, adv, mask, estimator, logp)
        np.testing.assert_allclose(grad, [-0.5, -0.25, 0.0])
    # away from the sampling policy (old log pi = log pi - [ln 2, 0, 0]: ratio [2, 1, 1]):
    # lvc = -(2 * 1 + 1 * 0.5) / 2 = -1.25, gradient in log pi -r A mask / 2 = [-1, -0.25, 0]
    old = logp - jnp.array([jnp.log(2.0), 0.0, 0.0])
    np.testing.assert_allclose(maml.policy_gradient_loss(logp, adv, mask, "lvc", old), -1.25)
    grad = jax.grad(maml.policy_gradient_loss)(logp, adv, mask, "lvc", old)
    np.testing.assert_allclose(grad, [-1.0, -0.25, 0.0], rtol=1e-6)


def test_surrogate_loss_by_hand():
    # r = exp([0.5, -0.5]) = [1.6487, 0.6065], A = [1, 1]
    # unclipped: -(1.6487 + 0.6065) / 2 = -1.1276
    # clipped (eps 0.2): min(1.6487, 1.2) = 1.2, min(0.6065, 0.8) = 0.6065 -> -(1.8065) / 2
    logp, old = jnp.array([0.5, -0.5]), jnp.zeros(2)
    adv, mask = jnp.ones(2), jnp.ones(2)
    np.testing.assert_allclose(maml.surrogate_loss(logp, old, adv, mask), -1.12763, rtol=1e-4)
    np.testing.assert_allclose(maml.surrogate_loss(logp, old, adv, mask, 0.2), -0.90327, rtol=1e-4)


# ----------------------------------------------------------------------------- fixed data

NET = maml.PolicyNetwork(action_dim=2, discrete=False, hidden_sizes=(5,), activation="tanh")


def _core(**kwargs) -> maml.MetaGradientCore:
    return maml.MetaGradientCore(NET.apply, False, **kwargs)


def _params(dtype=jnp.float32):
    params = NET.init(jax.random.key(0), jnp.zeros((1, 3)))
    params = jax.tree.map(lambda x: (x + 0.3 * jnp.sign(x + 0.01)).astype(dtype), params)
    return {"policy": params}


def _batch(key, steps: int = 6, traj: int = 4, dtype=jnp.float32, params=None) -> maml.Batch:
    """One task's fixed trajectories; old log-probs from ``params`` (the sampling policy)."""
    k_obs, k_act, k_adv = jax.random.split(key, 3)
    obs = jax.random.normal(k_obs, (steps, traj, 3), dtype)
    action = jax.random.normal(k_act, (steps, traj, 2), dtype)
    mask = jnp.ones((steps, traj), dtype).at[-2:, 0].set(0.0)
    dist = NET.apply(params["policy"], obs) if params is not None else (action * 0, action * 0)
    return maml.Batch(
        obs=obs,
        action=action,
        mask=mask,
        advantage=jax.random.normal(k_adv, (steps, traj), dtype),
        old_log_prob=log_prob(dist, action, False),
        old_dist=dist,
        episode_return=jnp.zeros((traj,), dtype),
    )


def _stacked(batches):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *batches)


def _objective(core, config, data, lrs):
    def f(meta_params):
        return maml.task_objective(core, config, meta_params, data, jnp.asarray(0.7), lrs)["loss"]

    return f


def _directional_fd(f, params, key, eps=1e-5, count=3):
    """(grad . v, central difference along v) for ``count`` random directions v."""
    flat, unravel = ravel_pytree(params)
    f = jax.jit(f)
    grad = ravel_pytree(jax.jit(jax.grad(f))(params))[0]
    pairs = []
    for k in jax.random.split(key, count):
        v = jax.random.normal(k, flat.shape, flat.dtype)
        fd = (f(unravel(flat + eps * v)) - f(unravel(flat - eps * v))) / (2 * eps)
        pairs.append((float(grad @ v), float(fd)))
    return np.array(pairs)


@pytest.mark.parametrize("num_inner", [1, 2])
def test_meta_gradient_matches_finite_differences(num_inner):
    with jax.enable_x64(True):
        params = _params(jnp.float64)
        data = _stacked(
            [_batch(jax.random.key(i), dtype=jnp.float64) for i in range(num_inner + 1)]
        )
        f = _objective(_core(), maml.Config(), data, (0.3, 0.2)[:num_inner])
        pairs = _directional_fd(f, params, jax.random.key(9))
        np.testing.assert_allclose(pairs[:, 0], pairs[:, 1], rtol=1e-6, atol=1e-9)


def test_first_order_drops_exactly_the_second_order_terms():
    with jax.enable_x64(True):
        params = _params(jnp.float64)
        data = _stacked([_batch(jax.random.key(i), dtype=jnp.float64) for i in range(2)])
        config = maml.Config()
        second = ravel_pytree(jax.jit(jax.grad(_objective(_core(), config, data, (0.3,))))(params))[
            0
        ]
        first = ravel_pytree(
            jax.jit(jax.grad(_objective(_core(first_order=True), config, data, (0.3,))))(params)
        )[0]
        # FO-MAML: the outer gradient evaluated at the adapted parameters
        adapted = _core().adapt(params["policy"], maml.index(data, 0), 0.3)
        outer = maml.index(data, 1)

        def outer_loss(p):
            logp = log_prob(NET.apply(p, outer.obs), outer.action, False)
            return maml.surrogate_loss(logp, outer.old_log_prob, outer.advantage, outer.mask)

        np.testing.assert_allclose(first, ravel_pytree(jax.jit(jax.grad(outer_loss))(adapted))[0])
        assert np.linalg.norm(second - first) > 1e-2 * np.linalg.norm(first)


def test_lvc_adds_the_sampling_curvature_term():
    # theta' = theta - a grad L_in; d theta'/d theta = I - a H_in. The LVC Hessian adds
    # -(1/n) sum_t A_t g_t g_t^T (g_t = grad log pi_t), so with g_out = grad L_out(theta'):
    # grad_lvc - grad_vpg = a (1/n) sum_t A_t g_t (g_t . g_out), at the sampling policy of D_0.
    with jax.enable_x64(True):
        params = _params(jnp.float64)
        data = _stacked(
            [
                _batch(jax.random.key(0), dtype=jnp.float64, params=params),
                _batch(jax.random.key(1), dtype=jnp.float64),
            ]
        )
        config, alpha = maml.Config(), 0.3
        vpg = jax.jit(jax.grad(_objective(_core(), config, data, (alpha,))))(params)
        lvc = jax.jit(jax.grad(_objective(_core(inner_estimator="lvc"), config, data, (alpha,))))(
            params
        )
        inner, outer = maml.index(data, 0), maml.index(data, 1)
        adapted = _core().adapt(params["policy"], inner, alpha)
        np.testing.assert_allclose(
            ravel_pytree(_core(inner_estimator="lvc").adapt(params["policy"], inner, alpha))[0],
            ravel_pytree(adapted)[0],
        )  # same inner step

        def outer_loss(p):
            logp = log_prob(NET.apply(p, outer.obs), outer.action, False)
            return maml.surrogate_loss(logp, outer.old_log_prob, outer.advantage, outer.mask)

        g_out = ravel_pytree(jax.grad(outer_loss)(adapted))[0]
        flat, unravel = ravel_pytree(params["policy"])
        per_step = jax.jit(
            jax.jacobian(lambda z: log_prob(NET.apply(unravel(z), inner.obs), inner.action, False))
        )(flat)  # [T, N, P]
        weights = inner.advantage * inner.mask / jnp.sum(inner.mask)
        expected = alpha * jnp.einsum("tn,tnp,tn->p", weights, per_step, per_step @ g_out)
        diff = ravel_pytree(lvc)[0] - ravel_pytree(vpg)[0]
        np.testing.assert_allclose(diff, expected, rtol=1e-8, atol=1e-12)


def test_meta_sgd_learning_rates_get_the_hand_derived_gradient():
    # theta' = theta - lr * g_in (per parameter), so dL/dlr = -g_in * grad L_out(theta').
    with jax.enable_x64(True):
        params = _params(jnp.float64)
        params["inner_lr"] = jax.tree.map(lambda p: jnp.full((1,) + p.shape, 0.3), params["policy"])
        data = _stacked([_batch(jax.random.key(i), dtype=jnp.float64) for i in range(2)])
        core = _core()
        grad = jax.jit(jax.grad(_objective(core, maml.Config(), data, (0.3,))))(params)
        inner, outer = maml.index(data, 0), maml.index(data, 1)
        adapted = core.adapt(params["policy"], inner, 0.3)
        np.testing.assert_allclose(
            ravel_pytree(core.adapt(params["policy"], inner, maml.index(params["inner_lr"], 0)))[0],
            ravel_pytree(adapted)[0],
        )

        def outer_loss(p):
            logp = log_prob(NET.apply(p, outer.obs), outer.action, False)
            return maml.surrogate_loss(logp, outer.old_log_prob, outer.advantage, outer.mask)

        g_in = jax.grad(core.inner_loss)(params["policy"], inner)
        g_out = jax.grad(outer_loss)(adapted)
        expected = jax.tree.map(lambda a, b: (-a * b)[None], g_in, g_out)
        np.testing.assert_allclose(
            ravel_pytree(grad["inner_lr"])[0], ravel_pytree(expected)[0], rtol=1e-8
        )


def test_emaml_term_credits_the_pre_update_sampling_policy():
    # At the sampling policy the exploration term's gradient is
    # -w * explore_adv * grad mean_t log pi_theta(a_t | s_t) over the pre-update batch D_0.
    with jax.enable_x64(True):
        params = _params(jnp.float64)
        data = _stacked(
            [_batch(jax.random.key(0), dtype=jnp.float64, params=params)]
            + [_batch(jax.random.key(1), dtype=jnp.float64)]
        )
        base, weight = maml.Config(), 0.5
        emaml = dataclasses.replace(base, exploration_weight=weight)
        g0 = ravel_pytree(jax.jit(jax.grad(_objective(_core(), base, data, (0.3,))))(params))[0]
        g1 = ravel_pytree(jax.jit(jax.grad(_objective(_core(), emaml, data, (0.3,))))(params))[0]
        inner = maml.index(data, 0)

        def mean_logp(p):
            logp = log_prob(NET.apply(p["policy"], inner.obs), inner.action, False)
            return jnp.sum(logp * inner.mask) / jnp.sum(inner.mask)

        expected = -weight * 0.7 * ravel_pytree(jax.grad(mean_logp)(params))[0]
        np.testing.assert_allclose(g1 - g0, expected, rtol=1e-8, atol=1e-12)


def test_promp_inner_gradient_is_importance_weighted_after_an_outer_epoch():
    # ProMP's LVC inner objective -mean(pi_theta / pi_old * A), pi_old the sampling policy's
    # stored probability: after one outer PPO epoch theta has left the sampling parameters, and
    # the inner gradient is the importance-weighted estimator
    # -(1/n) sum_t mask_t (pi_theta / pi_old)_t A_t grad log pi_theta(a_t | s_t).
    with jax.enable_x64(True):
        params = _params(jnp.float64)
        data = _stacked(
            [
                _batch(jax.random.key(0), dtype=jnp.float64, params=params),  # D_0 from theta
                _batch(jax.random.key(1), dtype=jnp.float64),
            ]
        )
        core = _core(inner_estimator="lvc")
        config = promp.Config(outer_epochs=1, hidden_sizes=(5,))
        setup = maml.Setup(None, None, NET, core, optax.adam(0.05), config, 6, 3, (0.3,), ())
        state = maml.MAMLState(params, setup.optimizer.init(params), jnp.zeros((), jnp.int32))
        tasks = jax.tree.map(lambda x: x[None], data)  # one task: [1, K + 1, T, N, ...]
        state, _ = jax.jit(ppo_update, static_argnums=(0, 4))(
            setup, state, tasks, jnp.zeros(1), None
        )
        theta, inner = state.params["policy"], maml.index(data, 0)

        flat, unravel = ravel_pytree(theta)
        logp_fn = jax.jit(lambda z: log_prob(NET.apply(unravel(z), inner.obs), inner.action, False))
        ratio = jnp.exp(logp_fn(flat) - inner.old_log_prob)  # [T, N]
        assert float(jnp.max(jnp.abs(ratio - 1.0) * inner.mask)) > 0.02  # theta has moved
        per_step = jax.jacobian(logp_fn)(flat)  # [T, N, P]: grad log pi_theta of each step
        weights = inner.advantage * inner.mask / jnp.sum(inner.mask)  # [T, N]
        expected = -jnp.einsum("tn,tn,tnp->p", ratio, weights, per_step)
        got = ravel_pytree(jax.jit(jax.grad(core.inner_loss))(theta, inner))[0]
        np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-12)
        # the unweighted estimator (a ratio to pi_theta itself) is measurably different here
        unweighted = -jnp.einsum("tn,tnp->p", weights, per_step)
        assert np.linalg.norm(got - unweighted) > 1e-2 * np.linalg.norm(unweighted)


def test_promp_inner_kl_is_zero_at_the_sampling_policy_and_positive_away_from_it():
    params = _params()
    data = _stacked([_batch(jax.random.key(0), params=params), _batch(jax.random.key(1))])
    config = maml.Config(inner_kl_coeff=1.0)
    inner_kl = jax.jit(
        lambda p: maml.task_objective(_core(), config, p, data, jnp.zeros(()), (0.3,))["inner_kl"]
    )
    np.testing.assert_allclose(inner_kl(params), 0.0, atol=1e-6)
    assert float(inner_kl(jax.tree.map(lambda x: x + 0.05, params))) > 1e-4


def _sampling_point_data(core, params, lrs, num_tasks=2):
    """[tasks, K + 1, T, N, ...] data whose D_K old distribution is the adapted policy's own."""
    tasks = []
    for task in range(num_tasks):
        keys = jax.random.split(jax.random.key(task), len(lrs) + 1)
        batches, policy = [], params["policy"]
        for k, alpha in enumerate(maml.step_alphas(params, len(lrs), lrs)):
            batches.append(_batch(keys[k], dtype=jnp.float64))
            policy = core.adapt(policy, batches[-1], alpha)
        batches.append(_batch(keys[-1], dtype=jnp.float64, params={"policy": policy}))
        tasks.append(_stacked(batches))
    return _stacked(tasks)


@pytest.mark.parametrize(
    "first_order, estimator, lrs, meta_sgd",
    [
        (False, "vpg", (0.3,), False),
        (True, "vpg", (0.3,), False),
        (False, "lvc", (0.3, 0.2), False),  # two inner steps: the chain of inner Hessians
        (False, "vpg", (0.3, 0.2), True),  # Meta-SGD: the learned rates are parameters too
        (True, "vpg", (0.3,), True),
    ],
)
def test_fisher_vector_product_equals_the_hessian_of_the_kl_through_adaptation(
    first_order, estimator, lrs, meta_sgd
):
    # At the sampling point (D_K's old distribution is the adapted policy's own output) the
    # KL's Hessian is the Gauss-Newton product the TRPO step uses: compare with the explicit one.
    with jax.enable_x64(True):
        core = _core(first_order=first_order, inner_estimator=estimator)
        params = _params(jnp.float64)
        if meta_sgd:
            params["inner_lr"] = jax.tree.map(
                lambda p: jnp.stack([jnp.full_like(p, lr) for lr in lrs]), params["policy"]
            )
        data = _sampling_point_data(core, params, lrs)  # [tasks=2, K+1, T, N, ...]
        config = maml.Config()

        def mean_kl(p):
            terms = jax.vmap(maml.task_objective, in_axes=(None, None, None, 0, None, None))(
                core, config, p, data, 0.0, lrs
            )
            return jnp.mean(terms["kl"])

        flat, unravel = ravel_pytree(params)
        v = unravel(jax.random.normal(jax.random.key(5), flat.shape, flat.dtype))
        exact = ravel_pytree(jax.jit(lambda p, v: trpo.hvp(mean_kl, p, v))(params, v))[0]
        assert np.linalg.norm(exact) > 1e-3
        for layout in (data, maml.flatten_steps(data)):
            fvp = jax.jit(lambda p, v, d: maml.make_fisher_vector_product(core, p, d, lrs)(v))
            got = ravel_pytree(fvp(params, v, layout))[0]
            np.testing.assert_allclose(got, exact, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize(
    "options, lrs, meta_sgd",
    [
        ({}, (0.3,), False),
        ({"inner_kl_coeff": 0.5, "exploration_weight": 0.7}, (0.3,), False),  # ProMP, E-MAML
        ({"inner_kl_coeff": 0.5, "exploration_weight": 0.7}, (0.3, 0.2), True),
        ({}, (0.3,), True),
    ],
)
def test_trpo_linearization_gives_the_meta_gradient_of_the_objective(options, lrs, meta_sgd):
    # make_trpo_linearization's loss and gradient (vjp of the shared linearization, plus the
    # pre-update terms' own gradient) equal jax.grad of the tasks' mean task_objective loss.
    with jax.enable_x64(True):
        core = _core()
        params = _params(jnp.float64)
        if meta_sgd:
            params["inner_lr"] = jax.tree.map(
                lambda p: jnp.stack([jnp.full_like(p, lr) for lr in lrs]), params["policy"]
            )
        data = _sampling_point_data(core, params, lrs, num_tasks=3)
        explore_adv = jnp.array([0.7, -0.2, 1.1])
        config = maml.Config(**options)

        def mean_loss(p):
            terms = jax.vmap(maml.task_objective, in_axes=(None, None, None, 0, 0, None))(
                core, config, p, data, explore_adv, lrs
            )
            return jnp.mean(terms["loss"])

        loss, grad = jax.jit(jax.value_and_grad(mean_loss))(params)
        got_loss, got_grad = jax.jit(
            lambda p: maml.make_trpo_linearization(
                core, config, p, maml.flatten_steps(data), explore_adv, lrs
            )[:2]
        )(params)
        np.testing.assert_allclose(got_loss, loss, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(
            ravel_pytree(got_grad)[0], ravel_pytree(grad)[0], rtol=1e-8, atol=1e-12
        )
