"""The MAML family's meta-gradient core: inner loss and adaptation, the task objective, the
adaptation's linearization, Fisher-vector products and the TRPO linearization.

Everything here acts on fixed data (``Batch``) and is a pure function of its arguments; one
task at a time unless a docstring says ``[tasks, ...]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
import optax.tree_utils as otu

from metajax.learners.ppo import clipped_surrogate_loss, masked_mean
from metajax.networks import kl_divergence, log_prob

if TYPE_CHECKING:
    from metajax.learners.maml.learner import Config


class Batch(NamedTuple):
    """Trajectories of one task for one step; leaves ``[T, N, ...]`` (stacked: more axes)."""

    obs: jax.Array  # [T, N, obs_dim] flattened float observations
    action: jax.Array  # [T, N, ...]
    mask: jax.Array  # [T, N] 1.0 on each trajectory's first episode
    advantage: jax.Array  # [T, N] reward-to-go minus baseline (normalized if configured)
    old_log_prob: jax.Array  # [T, N] log-probability under the sampling policy
    old_dist: Any  # sampling policy's distribution parameters, leaves [T, N, A]
    episode_return: jax.Array  # [N] undiscounted return of each trajectory's first episode


# ----------------------------------------------------------------------------- losses


def policy_gradient_loss(
    log_prob: jax.Array,
    advantage: jax.Array,
    mask: jax.Array,
    estimator: str = "vpg",
    old_log_prob: jax.Array | None = None,
) -> jax.Array:
    """The inner loss whose gradient is the policy gradient (a mean over valid steps).

    "vpg": ``-mean(log pi * A)``; "lvc" (ProMP): ``-mean(pi / pi_old * A)`` with ``pi_old`` the
    sampling policy's stored probability ``exp(old_log_prob)``, a constant. At the sampling
    policy both have the same gradient, and LVC's Hessian has the sampling-distribution term;
    away from it (ProMP's later outer epochs) LVC's gradient is the importance-weighted
    ``mean(pi / pi_old * grad log pi * A)`` (``_adapt_objective_sym`` of the reference).
    """
    if estimator == "lvc":
        if old_log_prob is None:
            raise ValueError("the lvc estimator needs the sampling policy's old_log_prob")
        weight = jnp.exp(log_prob - old_log_prob)
    else:
        weight = log_prob
    return -masked_mean(weight * advantage, mask)


def surrogate_loss(
    log_prob: jax.Array,
    old_log_prob: jax.Array,
    advantage: jax.Array,
    mask: jax.Array,
    clip_eps: float = 0.0,
) -> jax.Array:
    """Outer loss ``-mean(min(r A, clip(r, 1 - eps, 1 + eps) A))``, ``r = pi / pi_old``.

    ``clip_eps <= 0`` gives TRPO's unclipped surrogate ``-mean(r A)``.
    """
    if clip_eps > 0:
        return clipped_surrogate_loss(log_prob, old_log_prob, advantage, clip_eps, mask)
    return -masked_mean(jnp.exp(log_prob - old_log_prob) * advantage, mask)


# ----------------------------------------------------------------------------- the core


@dataclass(frozen=True)
class MetaGradientCore:
    """The policy and the per-task pieces shared by train, evaluation and tests.

    ``apply(policy_params, obs [..., D]) -> dist``; everything here acts on ONE task (callers
    ``vmap`` over tasks) and is a pure function of its arguments.
    """

    apply_fn: Any
    discrete: bool
    inner_estimator: str = "vpg"
    first_order: bool = False

    def inner_loss(self, policy_params, batch: Batch) -> jax.Array:
        """The policy-gradient loss of one task's batch under ``policy_params``."""
        dist = self.apply_fn(policy_params, batch.obs)
        logp = log_prob(dist, batch.action, self.discrete)
        return policy_gradient_loss(
            logp, batch.advantage, batch.mask, self.inner_estimator, batch.old_log_prob
        )

    def adapt(self, policy_params, batch: Batch, alpha) -> Any:
        """One inner policy-gradient step ``theta - alpha * grad``; ``alpha``: float or pytree."""
        grad = jax.grad(self.inner_loss)(policy_params, batch)
        if self.first_order:
            grad = jax.lax.stop_gradient(grad)
        return otu.tree_sub(policy_params, scale(alpha, grad))

    def adapt_steps(self, policy_params, batches: Batch, alphas: Sequence) -> Any:
        """``len(alphas)`` inner steps, step k on ``batches[k]`` (leaves [K, T, N, ...])."""
        for k, alpha in enumerate(alphas):
            policy_params = self.adapt(policy_params, index(batches, k), alpha)
        return policy_params


def scale(alpha, tree):
    """``alpha * tree`` for a scalar or a per-parameter pytree ``alpha`` (broadcast over tasks)."""
    if isinstance(alpha, (float, int)) or (isinstance(alpha, jax.Array) and alpha.ndim == 0):
        return otu.tree_scale(alpha, tree)
    return otu.tree_mul(alpha, tree)


def index(tree, i: int):
    """Entry ``i`` of every leaf's leading axis."""
    return jax.tree.map(lambda x: x[i], tree)


def step_alphas(meta_params: dict, steps: int, lrs: Sequence[float]) -> list:
    """Inner learning rate of each of ``steps`` steps: ``lrs`` (floats), or with Meta-SGD the
    learned per-parameter pytrees ``meta_params["inner_lr"]`` (leaves ``[K_train, ...]``; steps
    beyond the trained ones reuse the last)."""
    if "inner_lr" not in meta_params:
        return list(lrs)
    learned = meta_params["inner_lr"]
    trained = jax.tree.leaves(learned)[0].shape[0]
    return [index(learned, min(k, trained - 1)) for k in range(steps)]


def task_objective(
    core: MetaGradientCore,
    config: Config,
    meta_params: dict,
    data: Batch,
    explore_adv: jax.Array,
    lrs: Sequence[float],
    pre_update_only: bool = False,
) -> dict[str, jax.Array]:
    """The outer loss of one task and its pieces; ``data`` leaves ``[K + 1, T, N, ...]``.

    ``loss = surrogate(theta_K) + inner_kl_coeff * sum_k KL(pi_old_k || pi_theta_k) on D_k
    - exploration_weight * sum_k mean_t(pi_theta_k / pi_old_k) on D_k * explore_adv``, where
    ``theta_K`` is ``theta`` adapted on ``D_0..D_{K-1}`` (differentiably) and ``explore_adv``
    is the task's standardized post-update return (E-MAML's credit to the sampling policy).
    ``pre_update_only`` stops after the pre-update terms (``inner_kl``, ``explore``; no ``loss``).
    """
    num_inner = jax.tree.leaves(data)[0].shape[0] - 1
    policy_params = meta_params["policy"]
    inner_kl = jnp.zeros(())
    explore = jnp.zeros(())
    for k, alpha in enumerate(step_alphas(meta_params, num_inner, lrs)):
        batch = index(data, k)
        if config.inner_kl_coeff > 0 or config.exploration_weight != 0:
            dist = core.apply_fn(policy_params, batch.obs)
            if config.inner_kl_coeff > 0:
                kl = kl_divergence(batch.old_dist, dist, core.discrete)
                inner_kl = inner_kl + masked_mean(kl, batch.mask)
            if config.exploration_weight != 0:
                # E-MAML in ratio form (1 at the sampling policy): its gradient is
                # mean_t grad log pi_theta_k(a_t | s_t) * explore_adv.
                logp = log_prob(dist, batch.action, core.discrete)
                ratio = jnp.exp(logp - batch.old_log_prob)
                explore = explore + masked_mean(ratio, batch.mask) * explore_adv
        if pre_update_only and k == num_inner - 1:
            return {"inner_kl": inner_kl, "explore": explore}
        policy_params = core.adapt(policy_params, batch, alpha)
    outer = index(data, num_inner)
    dist = core.apply_fn(policy_params, outer.obs)
    logp = log_prob(dist, outer.action, core.discrete)
    clip = config.clip_eps if config.outer == "ppo" else 0.0
    surrogate = surrogate_loss(logp, outer.old_log_prob, outer.advantage, outer.mask, clip)
    kl = masked_mean(kl_divergence(outer.old_dist, dist, core.discrete), outer.mask)
    loss = surrogate + config.inner_kl_coeff * inner_kl - config.exploration_weight * explore
    return {"loss": loss, "kl": kl, "inner_kl": inner_kl, "explore": explore}


def adapted_distribution(
    core: MetaGradientCore, meta_params: dict, data: Batch, lrs: Sequence[float]
) -> Any:
    """The adapted policy's distribution on one task's outer batch ``D_K``, leaves [T, N, A]."""
    num_inner = jax.tree.leaves(data)[0].shape[0] - 1
    alphas = step_alphas(meta_params, num_inner, lrs)
    policy_params = core.adapt_steps(meta_params["policy"], data, alphas)
    return core.apply_fn(policy_params, index(data, num_inner).obs)


def flatten_steps(data: Batch) -> Batch:
    """``[tasks, K + 1, T, N, ...]`` batches with the step and trajectory axes merged into one.

    Every per-step quantity is a masked mean over steps, so the layout is the same math; one
    ``[T * N]`` sample axis gives XLA plain matrix products (``episode_return`` is kept).
    """

    def merge(x):
        return jnp.reshape(x, x.shape[:2] + (-1,) + x.shape[4:])

    fields = ("obs", "action", "mask", "advantage", "old_log_prob", "old_dist")
    return data._replace(**{f: jax.tree.map(merge, getattr(data, f)) for f in fields})


def _step(data: Batch, k: int) -> Batch:
    """Every task's batch for step ``k``: leaves ``[tasks, K + 1, ...] -> [tasks, ...]``."""
    return jax.tree.map(lambda x: x[:, k], data)


def _sum_tasks(tree):
    """Every leaf summed over its leading task axis."""
    return jax.tree.map(lambda x: jnp.sum(x, axis=0), tree)


def _linearize_inner_steps(core: MetaGradientCore, theta, data: Batch, alphas: list):
    """Every task's inner steps from ``theta`` [tasks, ...]: ``(theta_K, [(alpha, grad, hvp)])``,
    each gradient and Hessian-vector product at that step's parameters (hvp None: first order)."""
    grad_fn = jax.vmap(jax.grad(core.inner_loss))
    steps = []
    for k, alpha in enumerate(alphas):
        batch = _step(data, k)
        if core.first_order:
            grad, hvp = grad_fn(theta, batch), None
        else:
            grad, hvp = jax.linearize(lambda p, b=batch: grad_fn(p, b), theta)
        steps.append((alpha, grad, hvp))
        theta = otu.tree_sub(theta, scale(alpha, grad))
    return theta, steps


def linearize_adaptation(
    core: MetaGradientCore, meta_params: dict, data: Batch, lrs: Sequence[float]
) -> tuple[Any, Any, Any]:
    """``meta_params`` -> every task's adapted distribution on its ``D_K``, linearized once.

    ``data`` leaves ``[tasks, K + 1, ...]``. Returns ``(dist, jvp, vjp)``: ``dist`` leaves
    ``[tasks, ...]``; ``jvp(v)`` is the distribution's tangent for a meta-parameter tangent
    ``v``, ``vjp(c)`` the meta-parameter cotangent (summed over tasks) of a distribution
    cotangent ``c``. The chain rule through ``theta_{k+1} = theta_k - alpha_k g_k(theta_k)`` is
    ``d theta_{k+1} = d theta_k - alpha_k H_k d theta_k - d alpha_k g_k``, H_k the inner loss's
    Hessian at theta_k (second order unless ``first_order``), so each inner step is linearized
    once (``jax.linearize`` of its gradient) and its symmetric Hessian-vector product serves
    both directions; only the policy's outputs on ``D_K`` are transposed.
    """
    num_inner = jax.tree.leaves(data)[0].shape[1] - 1
    num_tasks = jax.tree.leaves(data)[0].shape[0]
    alphas = step_alphas(meta_params, num_inner, lrs)
    learned = "inner_lr" in meta_params
    trained = jax.tree.leaves(meta_params["inner_lr"])[0].shape[0] if learned else 0

    def broadcast(tree):
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (num_tasks,) + x.shape), tree)

    theta, steps = _linearize_inner_steps(core, broadcast(meta_params["policy"]), data, alphas)
    obs = _step(data, num_inner).obs
    dist, forward = jax.linearize(lambda p: jax.vmap(core.apply_fn)(p, obs), theta)
    backward = jax.linear_transpose(forward, theta)

    def jvp(v: dict) -> Any:
        u = broadcast(v["policy"])
        for k, (alpha, grad, hvp) in enumerate(steps):
            if hvp is not None:
                u = otu.tree_sub(u, scale(alpha, hvp(u)))
            if learned:
                u = otu.tree_sub(u, scale(index(v["inner_lr"], min(k, trained - 1)), grad))
        return forward(u)

    def vjp(c: Any) -> dict:
        (w,) = backward(c)
        out = {}
        if learned:
            lr_cot = otu.tree_zeros_like(meta_params["inner_lr"])
        for k in reversed(range(num_inner)):
            alpha, grad, hvp = steps[k]
            if learned:
                row = min(k, trained - 1)
                step_cot = _sum_tasks(otu.tree_mul(grad, w))  # d theta_k+1 / d alpha_k = -g_k
                lr_cot = jax.tree.map(lambda c, s, r=row: c.at[r].add(-s), lr_cot, step_cot)
            if hvp is not None:
                w = otu.tree_sub(w, hvp(scale(alpha, w)))
        out["policy"] = _sum_tasks(w)
        if learned:
            out["inner_lr"] = lr_cot
        return out

    return dist, jvp, vjp


def _kl_weights(data: Batch) -> jax.Array:
    """Per-step weights of the tasks' mean outer KL: valid steps of ``D_K``, mean, then mean."""
    num_inner = jax.tree.leaves(data)[0].shape[1] - 1
    mask = data.mask[:, num_inner]  # [tasks, ...]
    axes = tuple(range(1, mask.ndim))
    weight = mask / jnp.maximum(jnp.sum(mask, axis=axes, keepdims=True), 1.0)
    return (weight / mask.shape[0])[..., None]


def _fisher_product(core: MetaGradientCore, dist, jvp, vjp, weight):
    """``v -> J^T M J v`` from a linearization; M the KL's Hessian in output space."""

    def fvp(v):
        tangent = jvp(v)
        if core.discrete:
            p = jax.nn.softmax(dist)
            curvature = p * tangent - p * jnp.sum(p * tangent, axis=-1, keepdims=True)
            curvature = curvature * weight
        else:
            (d_mean, d_log_std), (_, log_std) = tangent, dist
            curvature = (d_mean * jnp.exp(-2.0 * log_std) * weight, 2.0 * d_log_std * weight)
        return vjp(curvature)

    return fvp


def make_fisher_vector_product(
    core: MetaGradientCore, meta_params: dict, data: Batch, lrs: Sequence[float]
):
    """``v -> H v``, H the Hessian at ``meta_params`` of the tasks' mean outer KL.

    ``data`` leaves ``[tasks, K + 1, T, N, ...]`` (or ``flatten_steps``'s ``[tasks, K + 1,
    T * N, ...]``). The KL ``KL(pi_old || pi_adapted(theta))`` is zero with zero gradient at the
    sampling parameters, so its Hessian there is exactly the Gauss-Newton product ``J^T M J``:
    J the Jacobian of the adapted policy's outputs on ``D_K`` through the inner step(s)
    (``linearize_adaptation``; second order unless ``first_order``) and M the KL's Hessian in
    output space (Gaussian: 1 / sigma^2 for the mean, 2 for log_std; categorical:
    diag(p) - p p^T). Linearized once, each product costs two inner Hessian-vector products
    per inner step and one forward and one reverse pass of tangents on ``D_K``.
    """
    dist, jvp, vjp = linearize_adaptation(core, meta_params, data, lrs)
    return _fisher_product(core, dist, jvp, vjp, _kl_weights(data))


def _pre_update_terms(
    core: MetaGradientCore,
    config: Config,
    meta_params: dict,
    data: Batch,
    explore_adv: jax.Array,
    lrs: Sequence[float],
) -> jax.Array:
    """One task's ``inner_kl_coeff * inner_kl - exploration_weight * explore`` (ProMP, E-MAML),
    the terms of ``task_objective`` on the pre-update batches ``D_0 .. D_{K-1}``."""
    terms = task_objective(core, config, meta_params, data, explore_adv, lrs, pre_update_only=True)
    return config.inner_kl_coeff * terms["inner_kl"] - config.exploration_weight * terms["explore"]


def make_trpo_linearization(
    core: MetaGradientCore,
    config: Config,
    meta_params: dict,
    data: Batch,
    explore_adv: jax.Array,
    lrs: Sequence[float],
    fisher_tasks: int | None = None,
):
    """``(loss, grad, fvp)`` of the tasks' mean TRPO objective at ``meta_params``, one
    linearization of the adaptation shared by the meta-gradient and the Fisher products.

    The surrogate depends on ``theta`` only through the adapted distribution on ``D_K``, so its
    gradient is ``vjp`` of its output-space gradient (the same math as ``jax.grad`` of
    ``task_objective``'s loss); ProMP's and E-MAML's pre-update terms add their own gradient.
    ``fisher_tasks``: the Fisher products use only the first that many tasks (a random subset:
    tasks are drawn i.i.d.), linearized apart; None uses every task's (exact).
    """
    num_inner = jax.tree.leaves(data)[0].shape[1] - 1
    outer = _step(data, num_inner)
    dist, jvp, vjp = linearize_adaptation(core, meta_params, data, lrs)

    def mean_surrogate(dist):
        def one(dist, batch):
            logp = log_prob(dist, batch.action, core.discrete)
            return surrogate_loss(logp, batch.old_log_prob, batch.advantage, batch.mask)

        return jnp.mean(jax.vmap(one)(dist, outer))

    loss, dist_cot = jax.value_and_grad(mean_surrogate)(dist)
    grad = vjp(dist_cot)
    if config.inner_kl_coeff > 0 or config.exploration_weight != 0:

        def mean_extra(params):
            per_task = jax.vmap(_pre_update_terms, in_axes=(None, None, None, 0, 0, None))
            return jnp.mean(per_task(core, config, params, data, explore_adv, lrs))

        extra, extra_grad = jax.value_and_grad(mean_extra)(meta_params)
        loss = loss + extra
        grad = otu.tree_add(grad, extra_grad)
    num_tasks = jax.tree.leaves(data)[0].shape[0]
    if fisher_tasks is not None and fisher_tasks < num_tasks:
        subset = jax.tree.map(lambda x: x[:fisher_tasks], data)
        return loss, grad, make_fisher_vector_product(core, meta_params, subset, lrs)
    return loss, grad, _fisher_product(core, dist, jvp, vjp, _kl_weights(data))
