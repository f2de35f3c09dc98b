"""Memory-augmented core (NTM / DNC lite): a GRU controller with an external slot memory.

The state carries a memory of ``slots`` x ``slot_size`` values, the last read vector and the
controller's hidden state. Each step the controller (a GRU on [x, previous read]) emits a write
key, erase and add vectors and a read key, each key with a sharpness; the write and read weights
over the slots are the softmax of sharpness x cosine similarity between the key and every slot
(content-based addressing). The step writes first (erase, then add), then reads. The output
mixes the controller state and the read vector. Sequence mode is a scan of step mode.

Pick it when a trial must store many separate facts (which arm paid, which state led where)
that a GRU's single vector blurs together, yet acting must stay O(slots) per step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from metajax.cores._common import reset_where, scan_steps

if TYPE_CHECKING:
    from metajax.cores import CoreConfig

_EPS = 1e-6


class MemoryState(NamedTuple):
    """The slot memory, the last read and the controller's state."""

    memory: jax.Array  # [B, slots, slot_size]
    read: jax.Array  # [B, slot_size]
    hidden: jax.Array  # [B, size]


def address(memory: jax.Array, key: jax.Array, sharpness: jax.Array) -> jax.Array:
    """Content weights [B, slots]: softmax over slots of sharpness [B] x cos(slot, key [B, W])."""
    dots = jnp.einsum("bsw,bw->bs", memory, key)
    norms = _norm(memory) * _norm(key)[:, None]  # [B, slots]
    return jax.nn.softmax(sharpness[:, None] * dots / norms, axis=-1)


def _norm(x: jax.Array) -> jax.Array:
    """Euclidean norm over the last axis, smooth at 0 (an empty memory has finite gradients)."""
    return jnp.sqrt(jnp.sum(x**2, axis=-1) + _EPS)


class SlotMemoryCore(nn.Module):
    """Content-addressed slot memory read and written every step; state is a ``MemoryState``."""

    config: CoreConfig

    def setup(self):
        self.controller = nn.GRUCell(self.config.size)
        self.interface = nn.Dense(4 * self.config.slot_size + 2)
        self.out = nn.Dense(self.config.size)

    @nn.nowrap
    def initial_state(self, batch: int) -> MemoryState:
        """Empty memory, zero read and zero controller state."""
        c = self.config
        return MemoryState(
            memory=jnp.zeros((batch, c.slots, c.slot_size), jnp.float32),
            read=jnp.zeros((batch, c.slot_size), jnp.float32),
            hidden=jnp.zeros((batch, c.size), jnp.float32),
        )

    def step(self, state: MemoryState, x: jax.Array, first: jax.Array):
        """One step, write then read: x [B, D], first [B] -> (state, y [B, size])."""
        state = reset_where(first, self.initial_state(x.shape[0]), state)
        hidden, _ = self.controller(state.hidden, jnp.concatenate([x, state.read], axis=-1))
        w = self.config.slot_size
        iface = self.interface(hidden)  # [B, 4 W + 2]
        write_key, erase, add, read_key = (iface[:, i * w : (i + 1) * w] for i in range(4))
        write_sharp, read_sharp = (1.0 + nn.softplus(iface[:, 4 * w + i]) for i in range(2))
        write = address(state.memory, write_key, write_sharp)[:, :, None]  # [B, slots, 1]
        memory = state.memory * (1.0 - write * nn.sigmoid(erase)[:, None, :])
        memory = memory + write * jnp.tanh(add)[:, None, :]
        read = jnp.einsum("bs,bsw->bw", address(memory, read_key, read_sharp), memory)
        y = self.out(jnp.concatenate([hidden, read], axis=-1))
        return MemoryState(memory, read, hidden), y

    def sequence(self, x: jax.Array, first: jax.Array) -> jax.Array:
        """Whole trials: x [T, B, D], first [T, B] -> y [T, B, size]."""
        return scan_steps(self, x, first)

    def __call__(self, x: jax.Array, first: jax.Array) -> jax.Array:
        return self.sequence(x, first)
