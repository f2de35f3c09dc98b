"""GRU and LSTM cores: flax's cells behind the common step / sequence interface.

Pick ``gru`` first: it is the cheapest memory and the RL² paper's; ``lstm`` when a GRU forgets
too early. Both hold everything in a fixed-size hidden vector, so their memory capacity is the
limit at long horizons (hundreds of steps); sequence mode is a scan of step mode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import flax.linen as nn
import jax
import jax.numpy as jnp

from metajax.cores._common import reset_where, scan_steps

if TYPE_CHECKING:
    from metajax.cores import CoreConfig


class _CellCore(nn.Module):
    """A flax recurrent cell behind the core interface (subclasses name the cell and its state)."""

    config: CoreConfig

    def step(self, state, x: jax.Array, first: jax.Array):
        """One step: x [B, D], first [B] -> (state, y [B, size])."""
        state = reset_where(first, self.initial_state(x.shape[0]), state)
        return self.cell(state, x)

    def sequence(self, x: jax.Array, first: jax.Array) -> jax.Array:
        """Whole trials: x [T, B, D], first [T, B] -> y [T, B, size]."""
        return scan_steps(self, x, first)

    def __call__(self, x: jax.Array, first: jax.Array) -> jax.Array:
        return self.sequence(x, first)


class GRUCore(_CellCore):
    """A GRU; its state is the hidden vector [B, size]."""

    def setup(self):
        self.cell = nn.GRUCell(self.config.size)

    @nn.nowrap
    def initial_state(self, batch: int) -> jax.Array:
        """Zeros [batch, size]."""
        return jnp.zeros((batch, self.config.size), jnp.float32)


class LSTMCore(_CellCore):
    """An LSTM; its state is (cell, hidden), each [B, size]."""

    def setup(self):
        self.cell = nn.OptimizedLSTMCell(self.config.size)

    @nn.nowrap
    def initial_state(self, batch: int) -> tuple[jax.Array, jax.Array]:
        """Zero (cell, hidden), each [batch, size]."""
        zeros = jnp.zeros((batch, self.config.size), jnp.float32)
        return zeros, zeros
