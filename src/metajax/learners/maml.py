"""MAML-RL, ProMP and E-MAML: one meta-gradient core, TRPO or PPO-clip outer steps.

One meta-iteration, for a batch of tasks (vmapped over tasks; each task has its own adapted
parameters, so the rollout engine is vmapped over tasks):

1. COLLECT (no gradient): ``theta_0 = theta``; for k < K sample trajectories ``D_k`` with
   ``theta_k`` and take a policy-gradient step ``theta_{k+1} = adapt(theta_k, D_k, alpha_k)``;
   then sample ``D_K`` with the adapted ``theta_K``. Advantages are reward-to-go minus the
   linear feature baseline refit on each batch.
2. META-OBJECTIVE (differentiable in ``theta``, data fixed): recompute ``theta_K(theta)`` by
   the same inner steps and evaluate the outer surrogate on ``D_K``. ``jax.grad`` through
   ``adapt``'s own ``jax.grad`` gives the exact second-order meta-gradient; ``first_order``
   stops the gradient through the inner gradient (FO-MAML).
3. OUTER STEP: TRPO (natural gradient through the adaptation, KL on the adapted policy) or
   PPO-clip epochs with Adam. TRPO linearizes the adaptation once per step
   (``linearize_adaptation``): the meta-gradient and every Fisher-vector product of CG reuse it.

ProMP (Rothfuss et al. 2019) = LVC inner estimator (``inner_estimator="lvc"``: the inner
objective ``pi / stop_gradient(pi) * A`` whose Hessian credits the sampling distribution),
clipped outer objective, and a KL penalty between each pre-update policy before and after the
meta-update (``inner_kl_coeff``). E-MAML (Stadie et al. 2018) adds the exploration term
``exploration_weight * E[R(post-update)] * grad log pi(pre-update trajectories)``.

Data layout: a task's batch for one inner or outer step has leaves ``[T, N, ...]`` (time
first, as the rollout engine returns them); a train step stacks ``[tasks, K + 1, T, N, ...]``
and then merges the step and trajectory axes (``flatten_steps``: ``[tasks, K + 1, T * N, ...]``;
every loss is a masked mean over samples, so both layouts give the same values).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from gymnax.environments import spaces

from metajax import distributed, rollout
from metajax.envs.core import EnvParams, MetaEnv, TaskDistribution, num_tasks
from metajax.errors import ConfigError
from metajax.learners import trpo
from metajax.learners.base import Learner
from metajax.learners.ppo import clipped_surrogate_loss, masked_mean, normalize_advantages
from metajax.learners.value_baselines import first_episode_mask, linear_baseline_advantages
from metajax.networks import MLP, PolicyHead, activation, kl_divergence, log_prob, sample_action

OUTER_OPTIMIZERS = ("trpo", "ppo")
INNER_ESTIMATORS = ("vpg", "lvc")


@dataclass(frozen=True)
class Config:
    """MAML-RL with the paper's 2D-navigation settings (Finn et al. 2017) as defaults."""

    num_tasks: int = 20  # global meta-batch of tasks per meta-iteration (sharded over devices)
    num_trajectories: int = 20  # trajectories per task per inner step (and for the outer step)
    horizon: int = 0  # steps per trajectory; 0 = the env's horizon
    gamma: float = 0.99
    baseline_reg: float = 1e-5  # ridge coefficient of the linear feature baseline
    normalize_advantages: bool = True  # per batch, over its valid steps
    # inner loop
    num_inner_steps: int = 1
    inner_lr: float = 0.1
    inner_lrs: tuple[float, ...] = ()  # per-step inner learning rates (overrides inner_lr)
    learn_inner_lr: bool = False  # Meta-SGD: learned per-parameter, per-step learning rates
    first_order: bool = False  # drop the second-order terms of the meta-gradient
    inner_estimator: str = "vpg"  # "vpg" (MAML) or "lvc" (ProMP's low-variance curvature)
    # outer loop
    outer: str = "trpo"  # "trpo" or "ppo"
    max_kl: float = 0.01  # TRPO trust region
    cg_iters: int = 10
    cg_damping: float = 1e-5
    # fraction of each shard's tasks whose trajectories the Fisher-vector products use (rllab's
    # ConjugateGradientOptimizer subsample_factor, by task); 1.0 = the exact Fisher (default)
    cg_subsample: float = 1.0
    line_search_steps: int = 15
    backtrack_ratio: float = 0.8
    outer_lr: float = 1e-3  # PPO (Adam) meta learning rate
    outer_epochs: int = 5  # PPO gradient steps per meta-iteration
    clip_eps: float = 0.2  # PPO clipping of the outer likelihood ratio
    inner_kl_coeff: float = 0.0  # ProMP: KL penalty on the pre-update policies
    exploration_weight: float = 0.0  # E-MAML: weight of the sampling-distribution term
    # policy: Gaussian (Box actions) or categorical (Discrete) MLP
    hidden_sizes: tuple[int, ...] = (100, 100)
    activation: str = "relu"
    init_log_std: float = 0.0
    # evaluation on held-out tasks (the paper's test protocol)
    eval_inner_steps: int = 3
    eval_inner_lrs: tuple[float, ...] = (0.1, 0.05)  # per step; the last one repeats
    eval_trajectories: int = 40
    eval_task_chunk: int = 20  # tasks evaluated at once (bounds memory)


class PolicyNetwork(nn.Module):
    """MLP policy: observation -> Gaussian (mean, log_std) or categorical logits."""

    action_dim: int
    discrete: bool
    hidden_sizes: Sequence[int] = (100, 100)
    activation: str = "relu"
    init_log_std: float = 0.0

    @nn.compact
    def __call__(self, obs: jax.Array):
        features = MLP(self.hidden_sizes, activation=self.activation)(obs)
        return PolicyHead(self.action_dim, self.discrete, self.init_log_std)(features)


class Batch(NamedTuple):
    """Trajectories of one task for one step; leaves ``[T, N, ...]`` (stacked: more axes)."""

    obs: jax.Array  # [T, N, obs_dim] flattened float observations
    action: jax.Array  # [T, N, ...]
    mask: jax.Array  # [T, N] 1.0 on each trajectory's first episode
    advantage: jax.Array  # [T, N] reward-to-go minus baseline (normalized if configured)
    old_log_prob: jax.Array  # [T, N] log-probability under the sampling policy
    old_dist: Any  # sampling policy's distribution parameters, leaves [T, N, A]
    episode_return: jax.Array  # [N] undiscounted return of each trajectory's first episode


class MAMLState(NamedTuple):
    """Meta-parameters ``{"policy": ..., ["inner_lr": ...]}``, outer optimizer state, step."""

    params: dict
    opt_state: Any
    step: jax.Array


# ----------------------------------------------------------------------------- losses


def policy_gradient_loss(
    log_prob: jax.Array, advantage: jax.Array, mask: jax.Array, estimator: str = "vpg"
) -> jax.Array:
    """The inner loss whose gradient is the policy gradient (a mean over valid steps).

    "vpg": ``-mean(log pi * A)``; "lvc": ``-mean(pi / stop_gradient(pi) * A)``, the same
    gradient at the sampling policy but a Hessian with the sampling-distribution term.
    """
    if estimator == "lvc":
        weight = jnp.exp(log_prob - jax.lax.stop_gradient(log_prob))
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
        return policy_gradient_loss(logp, batch.advantage, batch.mask, self.inner_estimator)

    def adapt(self, policy_params, batch: Batch, alpha) -> Any:
        """One inner policy-gradient step ``theta - alpha * grad``; ``alpha``: float or pytree."""
        grad = jax.grad(self.inner_loss)(policy_params, batch)
        if self.first_order:
            grad = jax.lax.stop_gradient(grad)
        if isinstance(alpha, (float, int)) or (isinstance(alpha, jax.Array) and alpha.ndim == 0):
            return jax.tree.map(lambda p, g: p - alpha * g, policy_params, grad)
        return jax.tree.map(lambda p, a, g: p - a * g, policy_params, alpha, grad)

    def adapt_steps(self, policy_params, batches: Batch, alphas: Sequence) -> Any:
        """``len(alphas)`` inner steps, step k on ``batches[k]`` (leaves [K, T, N, ...])."""
        for k, alpha in enumerate(alphas):
            policy_params = self.adapt(policy_params, index(batches, k), alpha)
        return policy_params


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


def _scale(alpha, tree):
    """``alpha * tree`` for a scalar or a per-parameter pytree ``alpha`` (broadcast over tasks)."""
    if isinstance(alpha, (float, int)) or (isinstance(alpha, jax.Array) and alpha.ndim == 0):
        return jax.tree.map(lambda x: alpha * x, tree)
    return jax.tree.map(lambda a, x: a * x, alpha, tree)


def _sub(a, b):
    """``a - b`` leaf by leaf."""
    return jax.tree.map(lambda x, y: x - y, a, b)


def _sum_tasks(tree):
    """Every leaf summed over its leading task axis."""
    return jax.tree.map(lambda x: jnp.sum(x, axis=0), tree)


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
    grad_fn = jax.vmap(jax.grad(core.inner_loss))

    def broadcast(tree):
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (num_tasks,) + x.shape), tree)

    theta = broadcast(meta_params["policy"])
    steps = []  # (alpha, grad, hvp) of each inner step, at that step's parameters
    for k, alpha in enumerate(alphas):
        batch = _step(data, k)
        if core.first_order:
            grad, hvp = grad_fn(theta, batch), None
        else:
            grad, hvp = jax.linearize(lambda p, b=batch: grad_fn(p, b), theta)
        steps.append((alpha, grad, hvp))
        theta = _sub(theta, _scale(alpha, grad))
    obs = _step(data, num_inner).obs
    dist, forward = jax.linearize(lambda p: jax.vmap(core.apply_fn)(p, obs), theta)
    backward = jax.linear_transpose(forward, theta)

    def jvp(v: dict) -> Any:
        u = broadcast(v["policy"])
        for k, (alpha, grad, hvp) in enumerate(steps):
            if hvp is not None:
                u = _sub(u, _scale(alpha, hvp(u)))
            if learned:
                u = _sub(u, _scale(index(v["inner_lr"], min(k, trained - 1)), grad))
        return forward(u)

    def vjp(c: Any) -> dict:
        (w,) = backward(c)
        out = {}
        if learned:
            lr_cot = jax.tree.map(jnp.zeros_like, meta_params["inner_lr"])
        for k in reversed(range(num_inner)):
            alpha, grad, hvp = steps[k]
            if learned:
                row = min(k, trained - 1)
                step_cot = _sum_tasks(jax.tree.map(lambda g, x: -g * x, grad, w))
                lr_cot = jax.tree.map(lambda c, s, r=row: c.at[r].add(s), lr_cot, step_cot)
            if hvp is not None:
                w = _sub(w, hvp(_scale(alpha, w)))
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
        grad = jax.tree.map(jnp.add, grad, extra_grad)
    num_tasks = jax.tree.leaves(data)[0].shape[0]
    if fisher_tasks is not None and fisher_tasks < num_tasks:
        subset = jax.tree.map(lambda x: x[:fisher_tasks], data)
        return loss, grad, make_fisher_vector_product(core, meta_params, subset, lrs)
    return loss, grad, _fisher_product(core, dist, jvp, vjp, _kl_weights(data))


def _step_lrs(lrs: Sequence[float], default: float, steps: int) -> tuple[float, ...]:
    """Per-step learning rates: ``lrs`` (its last one repeated) or ``default`` everywhere."""
    lrs = tuple(lrs) or (default,)
    return tuple(float(lrs[min(k, len(lrs) - 1)]) for k in range(steps))


def _validate(config: Config, env: MetaEnv) -> None:
    checks = [
        (config.num_tasks >= 1, f"num_tasks must be at least 1, got {config.num_tasks}"),
        (
            config.num_trajectories >= 2,
            f"num_trajectories must be at least 2, got {config.num_trajectories}",
        ),
        (config.horizon >= 0, f"horizon must be >= 0 (0 = env horizon), got {config.horizon}"),
        (
            config.num_inner_steps >= 1,
            f"num_inner_steps must be at least 1, got {config.num_inner_steps}",
        ),
        (
            config.eval_inner_steps >= 0,
            f"eval_inner_steps must be >= 0, got {config.eval_inner_steps}",
        ),
        (
            config.outer in OUTER_OPTIMIZERS,
            f"unknown outer optimizer '{config.outer}'; allowed: {', '.join(OUTER_OPTIMIZERS)}",
        ),
        (
            config.inner_estimator in INNER_ESTIMATORS,
            f"unknown inner_estimator '{config.inner_estimator}'; "
            f"allowed: {', '.join(INNER_ESTIMATORS)}",
        ),
        (config.max_kl > 0, f"max_kl must be positive, got {config.max_kl}"),
        (config.cg_iters >= 1, f"cg_iters must be at least 1, got {config.cg_iters}"),
        (
            0 < config.cg_subsample <= 1,
            f"cg_subsample must be in (0, 1], got {config.cg_subsample}",
        ),
        (
            0 < config.backtrack_ratio < 1,
            f"backtrack_ratio must be in (0, 1), got {config.backtrack_ratio}",
        ),
        (config.outer_epochs >= 1, f"outer_epochs must be at least 1, got {config.outer_epochs}"),
        (0 < config.gamma <= 1, f"gamma must be in (0, 1], got {config.gamma}"),
        (config.eval_trajectories >= 2, "eval_trajectories must be at least 2"),
        (config.eval_task_chunk >= 1, "eval_task_chunk must be at least 1"),
        (bool(config.hidden_sizes), "hidden_sizes must name at least one layer"),
        (
            isinstance(env.action_space(), (spaces.Box, spaces.Discrete)),
            f"the MAML family needs a Box or Discrete action space, got {env.action_space()}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    activation(config.activation)  # raises a ConfigError for an unknown name


def make_learner(
    config: Config, env: MetaEnv, tasks: TaskDistribution, name: str = "maml"
) -> Learner:
    """The MAML-family learner ``name`` ("maml", "promp", "emaml") configured by ``config``."""
    _validate(config, env)
    horizon = config.horizon or env.horizon
    action_space = env.action_space()
    discrete = isinstance(action_space, spaces.Discrete)
    action_dim = action_space.n if discrete else math.prod(action_space.shape)
    obs_dim = math.prod(env.observation_space().shape)
    network = PolicyNetwork(
        action_dim, discrete, tuple(config.hidden_sizes), config.activation, config.init_log_std
    )

    def apply_fn(policy_params, obs):
        return network.apply(policy_params, obs)

    core = MetaGradientCore(apply_fn, discrete, config.inner_estimator, config.first_order)
    num_inner = config.num_inner_steps
    train_lrs = _step_lrs(config.inner_lrs, config.inner_lr, num_inner)
    eval_lrs = _step_lrs(config.eval_inner_lrs, config.inner_lr, config.eval_inner_steps)

    # ------------------------------------------------------------------------- sampling

    def sample(policy_params, task: EnvParams, key: jax.Array, num_traj: int) -> Batch:
        """``num_traj`` trajectories of ``horizon`` steps on one task, with advantages."""
        env_params = jax.tree.map(lambda x: jnp.broadcast_to(x, (num_traj,) + x.shape), task)
        key_reset, key_run = jax.random.split(key)
        state = rollout.reset(env, env_params, jax.random.split(key_reset, num_traj))

        def policy(carry, obs, first, keys):
            del first
            dist = apply_fn(policy_params, jnp.reshape(obs, (num_traj, obs_dim)))
            action = jax.vmap(lambda k, d: sample_action(k, d, discrete))(keys, dist)
            return carry, action, {}

        run_keys = jax.random.split(key_run, num_traj)
        _, transitions = rollout.rollout(env, policy, state, env_params, run_keys, horizon)
        obs = jnp.reshape(transitions.obs, (horizon, num_traj, obs_dim)).astype(jnp.float32)
        done = transitions.done
        mask = first_episode_mask(done)  # [T, N]
        advantage, _ = linear_baseline_advantages(
            obs, transitions.reward, done, mask, config.gamma, config.baseline_reg
        )
        if config.normalize_advantages:
            advantage = normalize_advantages(advantage, mask) * mask
        dist = apply_fn(policy_params, obs)
        return Batch(
            obs=obs,
            action=transitions.action,
            mask=mask,
            advantage=advantage,
            old_log_prob=log_prob(dist, transitions.action, discrete),
            old_dist=dist,
            episode_return=jnp.sum(transitions.reward * mask, axis=0),
        )

    def collect(meta_params: dict, task: EnvParams, key: jax.Array) -> Batch:
        """Pre- and post-update batches of one task: leaves ``[K + 1, T, N, ...]``."""
        policy_params = meta_params["policy"]
        keys = jax.random.split(key, num_inner + 1)
        batches = []
        for k, alpha in enumerate(step_alphas(meta_params, num_inner, train_lrs)):
            batch = sample(policy_params, task, keys[k], config.num_trajectories)
            batches.append(batch)
            policy_params = core.adapt(policy_params, batch, alpha)
        batches.append(sample(policy_params, task, keys[num_inner], config.num_trajectories))
        return jax.tree.map(lambda *xs: jnp.stack(xs), *batches)

    # ------------------------------------------------------------------------- objective

    def batch_terms(meta_params: dict, data: Batch, explore_adv: jax.Array) -> dict:
        """``task_terms`` averaged over this shard's tasks."""
        terms = jax.vmap(task_objective, in_axes=(None, None, None, 0, 0, None))(
            core, config, meta_params, data, explore_adv, train_lrs
        )
        return jax.tree.map(jnp.mean, terms)

    # ------------------------------------------------------------------------- init / step

    def init(key: jax.Array) -> MAMLState:
        """Fresh policy parameters (plus Meta-SGD learning rates) and outer optimizer state."""
        policy_params = network.init(key, jnp.zeros((1, obs_dim), jnp.float32))
        params = {"policy": policy_params}
        if config.learn_inner_lr:
            params["inner_lr"] = jax.tree.map(
                lambda p: jnp.stack([jnp.full_like(p, lr) for lr in train_lrs]), policy_params
            )
        return MAMLState(params, outer_optimizer.init(params), jnp.zeros((), jnp.int32))

    outer_optimizer = optax.adam(config.outer_lr) if config.outer == "ppo" else optax.identity()

    def make_train_step(axis_name: str | None):
        """The meta-iteration for one shard of the task axis named ``axis_name``."""

        def train_step(state: MAMLState, key: jax.Array) -> tuple[MAMLState, dict]:
            # GLOBAL TASK BATCH, THIS SHARD'S SLICE
            key_tasks, key_sample = jax.random.split(key)
            task_batch = tasks.sample(key_tasks, config.num_tasks)
            task_keys = jax.random.split(key_sample, config.num_tasks)
            task_batch, task_keys = distributed.local_slice((task_batch, task_keys), axis_name)

            # COLLECT PRE- AND POST-UPDATE TRAJECTORIES
            data = jax.vmap(collect, in_axes=(None, 0, 0))(state.params, task_batch, task_keys)
            data = flatten_steps(data)  # [tasks, K + 1, T * N, ...]
            returns = jnp.mean(data.episode_return, axis=-1)  # [tasks, K + 1]
            post = returns[:, num_inner]
            post_mean = distributed.pmean(jnp.mean(post), axis_name)  # two-pass variance
            post_std = jnp.sqrt(distributed.pmean(jnp.mean((post - post_mean) ** 2), axis_name))
            explore_adv = (post - post_mean) / (post_std + 1e-8)  # [tasks]

            # OUTER STEP
            def loss_and_kl(params):
                terms = batch_terms(params, data, explore_adv)
                return terms["loss"], terms["kl"]

            def kl_only(params):
                return batch_terms(params, data, explore_adv)["kl"]

            if config.outer == "trpo":
                local_tasks = jax.tree.leaves(data)[0].shape[0]
                fisher_tasks = max(1, round(config.cg_subsample * local_tasks))
                params, info = trpo.trpo_step(
                    loss_and_kl,
                    kl_only,
                    state.params,
                    max_kl=config.max_kl,
                    cg_iters=config.cg_iters,
                    cg_damping=config.cg_damping,
                    line_search_steps=config.line_search_steps,
                    backtrack_ratio=config.backtrack_ratio,
                    axis_name=axis_name,
                    linearize=lambda p: make_trpo_linearization(
                        core, config, p, data, explore_adv, train_lrs, fisher_tasks
                    ),
                )
                opt_state = state.opt_state
                outer_metrics = {
                    "loss": info.loss_before,
                    "loss_after": info.loss_after,
                    "kl": info.kl,
                    "step_fraction": info.step_fraction,
                    "grad_norm": info.grad_norm,
                }
            else:

                def loss_with_terms(params):
                    terms = batch_terms(params, data, explore_adv)
                    return terms["loss"], terms

                def epoch(carry, _):
                    params, opt_state = carry
                    (loss, terms), grad = jax.value_and_grad(loss_with_terms, has_aux=True)(params)
                    grad, loss, kl = distributed.pmean((grad, loss, terms["kl"]), axis_name)
                    updates, opt_state = outer_optimizer.update(grad, opt_state, params)
                    return (optax.apply_updates(params, updates), opt_state), (loss, kl)

                (params, opt_state), (losses, kls) = jax.lax.scan(
                    epoch, (state.params, state.opt_state), None, config.outer_epochs
                )
                outer_metrics = {"loss": losses[0], "loss_after": losses[-1], "kl": kls[-1]}

            return_metrics = {
                "pre_update_return": jnp.mean(returns[:, 0]),
                "post_update_return": jnp.mean(post),
            }
            # outer_metrics are already global (averaged inside the outer step)
            metrics = distributed.pmean(return_metrics, axis_name) | outer_metrics
            return MAMLState(params, opt_state, state.step + 1), metrics

        return train_step

    # ------------------------------------------------------------------------- evaluation

    def evaluate(state: MAMLState, key: jax.Array, eval_tasks: EnvParams) -> jax.Array:
        """Mean return on each task after 0..K inner steps: ``[num_tasks, K + 1]``."""
        steps = config.eval_inner_steps
        eval_alphas = step_alphas(state.params, steps, eval_lrs)

        def one_task(args):
            task, key = args
            policy_params = state.params["policy"]
            keys = jax.random.split(key, steps + 1)
            returns = []
            for k in range(steps + 1):
                batch = sample(policy_params, task, keys[k], config.eval_trajectories)
                returns.append(jnp.mean(batch.episode_return))
                if k < steps:
                    policy_params = core.adapt(policy_params, batch, eval_alphas[k])
            return jnp.stack(returns)

        count = num_tasks(eval_tasks)
        keys = jax.random.split(key, count)
        return jax.lax.map(one_task, (eval_tasks, keys), batch_size=config.eval_task_chunk)

    return Learner(
        name=name,
        init=init,
        evaluate=evaluate,
        adaptation_unit="gradient step",
        env_steps_per_update=config.num_tasks * config.num_trajectories * horizon * (num_inner + 1),
        make_train_step=make_train_step,
        return_metric="post_update_return",
    )


__all__ = [
    "Batch",
    "Config",
    "MAMLState",
    "MetaGradientCore",
    "PolicyNetwork",
    "adapted_distribution",
    "flatten_steps",
    "linearize_adaptation",
    "make_fisher_vector_product",
    "make_trpo_linearization",
    "make_learner",
    "policy_gradient_loss",
    "step_alphas",
    "surrogate_loss",
    "task_objective",
]
