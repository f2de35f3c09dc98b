"""What a learner knows about its task, step by step: the input of ``metajax.inference``'s probes.

A learner's optional ``represent(state, key, tasks) -> Representation`` runs it on held-out
tasks as it adapts and returns its task representation at every row s of the adaptation (RL²:
the memory before each step; PEARL: the posterior over z after each context transition; MAML:
the adapted parameters' change after each inner step), with the history the exact posterior
reads (``metajax.baselines.posteriors``): row s has seen the first ``seen[s]`` steps of it.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from metajax.types import Transition

MAX_FEATURES = 256  # wider representations are randomly projected down to this (ridge stays cheap)


class Representation(NamedTuple):
    """A learner's task representation over held-out trials of N tasks, S rows each."""

    features: jax.Array  # [N, S, F] the representation at each row
    valid: jax.Array  # [N, S] the row belongs to the trial (not padding after its end)
    seen: jax.Array  # [S] int: row s has seen history steps 0..seen[s]-1 (posterior row seen[s])
    unit: jax.Array  # [N, S] int: the adaptation unit (learner.adaptation_unit) row s lies in
    transitions: Transition  # [L, N, ...] the history per task, one trial each (extras empty)
    mask: jax.Array  # [L, N] history steps that count as evidence


def flatten_rows(tree, batch_dims: int) -> jax.Array:
    """Every leaf of ``tree`` flattened after its first ``batch_dims`` axes, concatenated."""
    leaves = jax.tree.leaves(tree)
    batch = leaves[0].shape[:batch_dims]
    flat = [jnp.reshape(x, (*batch, -1)).astype(jnp.float32) for x in leaves]
    return jnp.concatenate(flat, axis=-1)


def _batch_axis(shape: tuple, shape_one: tuple) -> int:
    """The axis where a batch-of-B leaf differs from its batch-of-1 twin (B = 1: the 1 axis)."""
    for axis, (size, one) in enumerate(zip(shape, shape_one, strict=True)):
        if size != one:
            return axis
    return shape_one.index(1)


def flatten_carry(carry, carry_one) -> jax.Array:
    """A memory core's carry [B in any axis per leaf] as rows ``[B, F]`` (complex: real, imag).

    ``carry_one`` is the same core's carry for one sequence (it locates each leaf's batch axis:
    the LRU's state is ``[layers, B, size]``, a transformer cache ``[layers, B, ...]``).
    """
    rows = []
    for x, one in zip(jax.tree.leaves(carry), jax.tree.leaves(carry_one), strict=True):
        x = jnp.moveaxis(x, _batch_axis(x.shape, one.shape), 0)
        x = jnp.reshape(x, (x.shape[0], -1))
        parts = [x.real, x.imag] if jnp.iscomplexobj(x) else [x]
        rows.extend(part.astype(jnp.float32) for part in parts)
    return jnp.concatenate(rows, axis=-1)


def projection(width: int, max_features: int = MAX_FEATURES) -> jax.Array | None:
    """A fixed random projection [width, max_features] (Johnson-Lindenstrauss: distances kept
    up to a few percent), or None when ``width`` already fits."""
    if width <= max_features:
        return None
    key = jax.random.key(20240615)  # fixed: the same projection for every run and call
    return jax.random.normal(key, (width, max_features)) / jnp.sqrt(max_features)


def project(features: jax.Array, max_features: int = MAX_FEATURES) -> jax.Array:
    """``features [..., F]`` through ``projection(F)`` (unchanged when F <= max_features)."""
    matrix = projection(features.shape[-1], max_features)
    return features if matrix is None else features @ matrix


def strip_extras(transitions: Transition) -> Transition:
    """The transitions without the policy's extras (what the posterior does not read)."""
    return transitions._replace(extras={})
