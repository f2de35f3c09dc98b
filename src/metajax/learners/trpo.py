"""TRPO on pytrees: conjugate gradient, Hessian-vector products, KL-constrained line search.

Generic over the parameter pytree and the objective, so MAML-TRPO can take the natural
gradient of a loss whose KL is measured on the *adapted* policy (the Hessian-vector products
then differentiate through the inner update). Sharded over the task axis: the loss, the KL,
the gradient and every Hessian-vector product are averaged with ``distributed.pmean``, so all
shards solve the same system and accept the same step as one device would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax.tree_utils as otu

from metajax import distributed

Params = Any


# ----------------------------------------------------------------------------- curvature


def hvp(f: Callable[[Params], jax.Array], params: Params, v: Params) -> Params:
    """Hessian of the scalar ``f`` at ``params`` times ``v`` (forward-over-reverse)."""
    return jax.jvp(jax.grad(f), (params,), (v,))[1]


def make_hvp(f: Callable[[Params], jax.Array], params: Params) -> Callable[[Params], Params]:
    """``v -> H(params) v`` for repeated products: ``jax.linearize`` keeps the primal pass."""
    _, linear = jax.linearize(jax.grad(f), params)
    return linear


def conjugate_gradient(
    matvec: Callable[[Params], Params], b: Params, iters: int = 10, residual_tol: float = 1e-10
) -> Params:
    """Approximately solves ``A x = b`` for a symmetric positive definite ``A`` (``matvec``).

    Runs ``iters`` iterations from ``x = 0``; once the squared residual falls under
    ``residual_tol`` the iterate is frozen (fixed shapes, no early exit under ``jit``).
    """
    return conjugate_gradient_with_residual(matvec, b, iters, residual_tol)[0]


def conjugate_gradient_with_residual(
    matvec: Callable[[Params], Params], b: Params, iters: int = 10, residual_tol: float = 1e-10
) -> tuple[Params, Params]:
    """``conjugate_gradient``'s ``x`` and its recurrence residual ``r = b - A x``.

    ``A x = b - r`` holds for every iterate in exact arithmetic, so ``x . (b - r)`` is
    ``x^T A x`` without another product with ``A``.
    """
    x = otu.tree_zeros_like(b)
    r, p = b, b
    rdotr = otu.tree_vdot(r, r)

    def body(_, carry):
        x, r, p, rdotr = carry
        active = rdotr > residual_tol
        ap = matvec(p)
        pap = otu.tree_vdot(p, ap)
        alpha = jnp.where(active & (pap > 0), rdotr / jnp.where(pap > 0, pap, 1.0), 0.0)
        x = otu.tree_add_scale(x, alpha, p)
        r = otu.tree_add_scale(r, -alpha, ap)
        new_rdotr = otu.tree_vdot(r, r)
        beta = jnp.where(active, new_rdotr / jnp.where(rdotr > 0, rdotr, 1.0), 0.0)
        p = otu.tree_where(active, otu.tree_add_scale(r, beta, p), p)
        return x, r, p, jnp.where(active, new_rdotr, rdotr)

    x, r, *_ = jax.lax.fori_loop(0, iters, body, (x, r, p, rdotr))
    return x, r


# ----------------------------------------------------------------------------- the step


class TRPOInfo(NamedTuple):
    """What one TRPO step did (all scalars, identical on every shard)."""

    loss_before: jax.Array
    loss_after: jax.Array
    kl: jax.Array  # KL of the accepted step (0 when rejected)
    step_fraction: jax.Array  # backtrack_ratio ** i of the accepted step, 0 when none was
    grad_norm: jax.Array


def backtracking_line_search(
    loss_and_kl: Callable[[Params], tuple[jax.Array, jax.Array]],
    params: Params,
    full_step: Params,
    loss_before: jax.Array,
    max_kl: float,
    steps: int,
    ratio: float,
    axis_name: str | None,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """``(accepted, loss, kl, fraction)`` of the first ``params + ratio**i * full_step``,
    ``i < steps``, whose global KL is at most ``max_kl`` and whose loss is below ``loss_before``."""

    def evaluate(i):
        fraction = ratio ** i.astype(jnp.float32)
        candidate = otu.tree_add_scale(params, fraction, full_step)
        loss, kl = distributed.pmean(loss_and_kl(candidate), axis_name)
        ok = (kl <= max_kl) & (loss < loss_before) & jnp.isfinite(loss) & jnp.isfinite(kl)
        return ok, loss, kl, fraction

    def cond(carry):
        i, accepted, *_ = carry
        return (i < steps) & ~accepted

    def body(carry):
        i, _, _, _, _ = carry
        ok, loss, kl, fraction = evaluate(i)
        return i + 1, ok, loss, kl, fraction

    zero = jnp.zeros((), jnp.float32)
    _, accepted, loss, kl, fraction = jax.lax.while_loop(
        cond, body, (jnp.int32(0), jnp.bool_(False), loss_before, zero, zero)
    )
    return accepted, loss, kl, fraction


def trpo_step(
    loss_and_kl: Callable[[Params], tuple[jax.Array, jax.Array]],
    kl_fn: Callable[[Params], jax.Array],
    params: Params,
    *,
    max_kl: float,
    cg_iters: int = 10,
    cg_damping: float = 1e-5,
    line_search_steps: int = 15,
    backtrack_ratio: float = 0.8,
    axis_name: str | None = None,
    make_fvp: Callable[[Params], Callable[[Params], Params]] | None = None,
    linearize: Callable[[Params], tuple[jax.Array, Params, Callable[[Params], Params]]]
    | None = None,
) -> tuple[Params, TRPOInfo]:
    """One trust-region step: natural gradient by CG, then a backtracking line search.

    Args:
        loss_and_kl: ``params -> (loss, kl)``, this shard's means; the loss is minimized and
            the KL is the divergence from the sampling policy (0 at ``params``).
        kl_fn: ``params -> kl`` (this shard's mean), whose Hessian at ``params`` is the
            Fisher matrix of the constraint.
        axis_name: the shard_map axis of the task batch, or None on one device.
        make_fvp: ``params -> (v -> F v)`` for this shard, a cheaper exact form of the
            Hessian of ``kl_fn`` at ``params`` (e.g. Gauss-Newton); default ``make_hvp``.
        linearize: ``params -> (loss, grad, fvp)`` for this shard from one shared
            linearization (MAML: the adaptation's); replaces ``value_and_grad`` of the loss
            and ``make_fvp``.

    A candidate ``params + ratio**i * step`` is accepted at the first ``i`` where the KL is at
    most ``max_kl`` and the loss decreased; if none is, the parameters are unchanged.
    """

    # Differentiate this shard's loss, then average: no collective inside the derivative.
    if linearize is not None:
        loss_before, grad, local_fvp = linearize(params)
    else:
        loss_before, grad = jax.value_and_grad(lambda p: loss_and_kl(p)[0])(params)
        local_fvp = make_hvp(kl_fn, params) if make_fvp is None else make_fvp(params)
    loss_before, grad = distributed.pmean((loss_before, grad), axis_name)

    def fvp(v):
        return otu.tree_add_scale(distributed.pmean(local_fvp(v), axis_name), cg_damping, v)

    neg_grad = otu.tree_scale(-1.0, grad)
    step_dir, residual = conjugate_gradient_with_residual(fvp, neg_grad, cg_iters)
    # s^T F s = s . (b - r) from CG's own recurrence: the same quantity as s . fvp(s)
    shs = 0.5 * otu.tree_vdot(step_dir, otu.tree_sub(neg_grad, residual))
    scale = jnp.sqrt(2.0 * max_kl / jnp.maximum(2.0 * shs, 1e-12))
    full_step = otu.tree_scale(scale, step_dir)

    accepted, loss, kl, fraction = backtracking_line_search(
        loss_and_kl,
        params,
        full_step,
        loss_before,
        max_kl,
        line_search_steps,
        backtrack_ratio,
        axis_name,
    )
    fraction = jnp.where(accepted, fraction, 0.0)
    new_params = otu.tree_add_scale(params, fraction, full_step)
    info = TRPOInfo(
        loss_before=loss_before,
        loss_after=jnp.where(accepted, loss, loss_before),
        kl=jnp.where(accepted, kl, 0.0),
        step_fraction=fraction,
        grad_norm=otu.tree_norm(grad),
    )
    return new_params, info


__all__ = [
    "TRPOInfo",
    "backtracking_line_search",
    "conjugate_gradient",
    "conjugate_gradient_with_residual",
    "hvp",
    "make_hvp",
    "trpo_step",
]
