"""Helpers every memory core shares: resetting a state where a trial starts, scanning step mode."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def reset_where(first: jax.Array, fresh: Any, state: Any) -> Any:
    """``fresh`` where ``first`` [B] marks a trial start, else ``state`` (leaves are [B, ...])."""

    def pick(new, old):
        mask = jnp.reshape(first, (-1,) + (1,) * (old.ndim - 1))
        return jnp.where(mask, new, old)

    return jax.tree.map(pick, fresh, state)


def reset_where_stacked(first: jax.Array, fresh: Any, state: Any) -> Any:
    """Like ``reset_where`` for leaves stacked over layers first: [layers, B, ...]."""

    def pick(new, old):
        mask = jnp.reshape(first, (1, -1) + (1,) * (old.ndim - 2))
        return jnp.where(mask, new, old)

    return jax.tree.map(pick, fresh, state)


def _scan_body(module: nn.Module, state: Any, inputs: tuple[jax.Array, jax.Array]):
    x, first = inputs
    return module.step(state, x, first)


def scan_steps(module: nn.Module, x: jax.Array, first: jax.Array) -> jax.Array:
    """Sequence mode as a scan of ``module.step`` from a fresh state: x [T, B, D] -> y [T, B, H]."""
    scan = nn.scan(_scan_body, variable_broadcast="params", split_rngs={"params": False}, in_axes=0)
    _, y = scan(module, module.initial_state(x.shape[1]), (x, first))
    return y
