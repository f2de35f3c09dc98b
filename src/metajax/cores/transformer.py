"""Transformer core: causal multi-head self-attention over the current trial's past steps.

Pre-LayerNorm blocks (attention, then an MLP), optionally with GTrXL gates (Parisotto et al.
2020: a GRU-style gate biased towards the identity replaces each residual sum, which steadies
RL training). Rotary positions count steps from the trial start, so attention depends only on
how far back a step is and trials longer than the training ones still work. Step mode keeps a
fixed-size key/value ring buffer per layer of ``window`` steps (default ``max_len``, the whole
trial up to that cap); sequence mode attends over whole trials at once with a mask that never
crosses a trial boundary and keeps the same window, so both modes compute the same function.

Pick it for long horizons (hundreds of steps, many episodes per trial) where a GRU's fixed
vector forgets; it costs O(window) per acting step and O(T^2) per trial in the update.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

if TYPE_CHECKING:
    from metajax.cores import CoreConfig

_MASKED = -1e30  # logit of a step outside the window or the trial


class TransformerState(NamedTuple):
    """The k/v cache of step mode: a ring buffer of ``cache`` steps per layer."""

    keys: jax.Array  # [layers, B, cache, heads, head_size], rotated at their positions
    values: jax.Array  # [layers, B, cache, heads, head_size]
    valid: jax.Array  # [B, cache] bool: the slot holds a step of the current trial
    pos: jax.Array  # [B] int32: the next step's position counted from the trial start


def cache_size(config: CoreConfig) -> int:
    """How many past steps (the current one included) a query sees: window, else max_len."""
    return config.window if config.window is not None else config.max_len


def rotate(x: jax.Array, pos: jax.Array) -> jax.Array:
    """Rotary position embedding of x [..., heads, head_size] at integer positions pos [...]."""
    half = x.shape[-1] // 2
    inv_freq = 10000.0 ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angles = pos.astype(jnp.float32)[..., None, None] * inv_freq  # [..., 1, half]
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    x1, x2 = x[..., :half], x[..., half:]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


class GRUGate(nn.Module):
    """GTrXL's gate: (1 - z) * x + z * h, with z biased towards 0 (the identity) at init."""

    size: int
    bias: float = 2.0

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
        wy = nn.Dense(3 * self.size)(y)
        ux = nn.Dense(2 * self.size, use_bias=False)(x)
        r = nn.sigmoid(wy[..., : self.size] + ux[..., : self.size])
        z = nn.sigmoid(wy[..., self.size : 2 * self.size] + ux[..., self.size :] - self.bias)
        h = jnp.tanh(wy[..., 2 * self.size :] + nn.Dense(self.size, use_bias=False)(r * x))
        return (1.0 - z) * x + z * h


class Block(nn.Module):
    """One pre-LayerNorm block; attention itself is done by the caller (it differs by mode)."""

    config: CoreConfig

    def setup(self):
        size = self.config.size
        self.norm_attn = nn.LayerNorm()
        self.qkv = nn.Dense(3 * size)
        self.proj = nn.Dense(size)
        self.norm_mlp = nn.LayerNorm()
        self.mlp_in = nn.Dense(2 * size)
        self.mlp_out = nn.Dense(size)
        if self.config.gate:
            self.gate_attn = GRUGate(size)
            self.gate_mlp = GRUGate(size)

    def project(self, h: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Queries, keys, values [..., heads, head_size] of the block's input h [..., size]."""
        heads = self.config.heads
        qkv = self.qkv(self.norm_attn(h))
        q, k, v = jnp.split(qkv, 3, axis=-1)
        shape = h.shape[:-1] + (heads, self.config.size // heads)
        return q.reshape(shape), k.reshape(shape), v.reshape(shape)

    def finish(self, h: jax.Array, attended: jax.Array) -> jax.Array:
        """The block's output from its input h and the attention result [..., heads, head]."""
        a = self.proj(attended.reshape(h.shape))
        h = self.gate_attn(h, nn.relu(a)) if self.config.gate else h + a
        m = self.mlp_out(nn.gelu(self.mlp_in(self.norm_mlp(h))))
        return self.gate_mlp(h, nn.relu(m)) if self.config.gate else h + m


class TransformerCore(nn.Module):
    """Causal self-attention core; its step-mode state is a ``TransformerState`` cache."""

    config: CoreConfig

    def setup(self):
        self.embed = nn.Dense(self.config.size)
        self.blocks = [Block(self.config) for _ in range(self.config.layers)]
        self.norm_out = nn.LayerNorm()

    @nn.nowrap
    def initial_state(self, batch: int) -> TransformerState:
        """An empty cache for ``batch`` sequences."""
        c = self.config
        shape = (c.layers, batch, cache_size(c), c.heads, c.size // c.heads)
        return TransformerState(
            keys=jnp.zeros(shape, jnp.float32),
            values=jnp.zeros(shape, jnp.float32),
            valid=jnp.zeros((batch, cache_size(c)), bool),
            pos=jnp.zeros((batch,), jnp.int32),
        )

    def step(self, state: TransformerState, x: jax.Array, first: jax.Array):
        """One step: x [B, D], first [B] -> (state, y [B, size]); the cache keeps its shape."""
        pos = jnp.where(first, 0, state.pos)  # [B]
        rows, slot = jnp.arange(x.shape[0]), pos % state.valid.shape[1]  # [B], [B]
        valid = jnp.where(first[:, None], False, state.valid).at[rows, slot].set(True)
        keys, values = state.keys, state.values  # written in place at each row's slot
        h = self.embed(x)  # [B, size]
        for layer, block in enumerate(self.blocks):
            q, k, v = block.project(h)  # [B, heads, head]
            keys = keys.at[layer, rows, slot].set(rotate(k, pos))
            values = values.at[layer, rows, slot].set(v)
            # mat-vecs as multiply-and-sum over the cache's own layout [B, cache, heads, head]
            logits = jnp.sum(rotate(q, pos)[:, None] * keys[layer], axis=-1)  # [B, cache, heads]
            logits = jnp.where(valid[:, :, None], logits / jnp.sqrt(q.shape[-1]), _MASKED)
            weights = jax.nn.softmax(logits, axis=1)[..., None]  # [B, cache, heads, 1]
            h = block.finish(h, jnp.sum(weights * values[layer], axis=1))
        return TransformerState(keys, values, valid, pos + 1), self.norm_out(h)

    def sequence(self, x: jax.Array, first: jax.Array) -> jax.Array:
        """Whole trials: x [T, B, D], first [T, B] -> y [T, B, size], attention masked by trial."""
        n_steps, batch = first.shape
        steps = jnp.arange(n_steps)[:, None]  # [T, 1]
        start = jax.lax.cummax(jnp.where(first, steps, 0), axis=0)  # [T, B]
        pos = (steps - start).reshape(-1)  # [T * B] position inside the trial
        trial = jnp.cumsum(first, axis=0)  # [T, B] trial index
        t_q, t_k = steps[:, None, 0], steps[None, :, 0]  # [T, 1], [1, T]
        causal = (t_k <= t_q) & (t_q - t_k < cache_size(self.config))  # [T, T]
        same = trial.T[:, :, None] == trial.T[:, None, :]  # [B, T, T]
        bias = jnp.where((causal[None] & same)[:, None], 0.0, _MASKED)  # [B, 1, T, T]
        # the dense layers see [T * B, ...]: on CPU, 3-D dots are ~2x slower (backward pass)
        h = self.embed(x.reshape(n_steps * batch, -1))  # [T * B, size]
        heads_first = lambda a: jnp.transpose(a.reshape(n_steps, batch, *a.shape[1:]), (1, 2, 0, 3))
        for block in self.blocks:
            q, k, v = block.project(h)  # [T * B, heads, head]
            q = heads_first(rotate(q, pos) / jnp.sqrt(q.shape[-1]))
            k, v = heads_first(rotate(k, pos)), heads_first(v)
            logits = jnp.einsum("bhid,bhjd->bhij", q, k) + bias  # batch-major: ~6x faster on CPU
            # softmax normalised after the product with v: [B, H, T, head], not [B, H, T, T]
            # (half the backward time); the max only steadies exp, its gradient is zero
            e = jnp.exp(logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True)))
            attended = jnp.einsum("bhij,bhjd->bhid", e, v) / jnp.sum(e, axis=-1)[..., None]
            h = block.finish(h, jnp.transpose(attended, (2, 0, 1, 3)))  # [T, B, heads, head]
        return self.norm_out(h).reshape(n_steps, batch, -1)

    def __call__(self, x: jax.Array, first: jax.Array) -> jax.Array:
        return self.sequence(x, first)
