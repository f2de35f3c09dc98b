"""LRU core: the Linear Recurrent Unit of Orvieto et al. (2023), stacked in residual blocks.

Each block normalizes its input, runs a diagonal complex linear recurrence
``h_t = lambda * h_{t-1} + gamma * (B u_t)`` with ``lambda = exp(-exp(nu_log) + i exp(theta_log))``
(stable by construction: |lambda| < 1) and the normalization ``gamma = exp(gamma_log)``, reads
``y_t = Re(C h_t) + D * u_t`` and passes it through a GELU and a gated linear unit back into the
residual stream. Because the recurrence is linear, sequence mode runs it with
``jax.lax.associative_scan`` (parallel over time): a trial start multiplies the carried state by
0 inside the associative operator. Step mode runs the plain recurrence.

Pick it when trials are long and the update's speed matters: the sequence mode is parallel in
time like a transformer's but costs O(T) memory, and acting costs O(size) per step like a GRU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import flax.linen as nn
import jax
import jax.numpy as jnp

from metajax.cores._common import reset_where_stacked

if TYPE_CHECKING:
    from metajax.cores import CoreConfig

# Ring of the initial eigenvalues: Orvieto et al.'s long-range setting (|lambda| in [0.9, 0.999],
# phase up to pi / 10). Their default ring [0.4, 0.99] with phases up to 2 pi forgets within tens
# of steps: on Duan's n = 100, k = 5 bandit RL² with it reached 58.3 after 5e6 env steps, with
# this one 75.3 (GRU 76.4; results/duan_rl2_tuning_cpu.md).
R_MIN, R_MAX, MAX_PHASE = 0.9, 0.999, jnp.pi / 10


def _combine(left, right):
    a1, b1 = left
    a2, b2 = right
    return a2 * a1, a2 * b1 + b2


def linear_scan(a: jax.Array, b: jax.Array, first: jax.Array, parallel: bool = True) -> jax.Array:
    """All states of h_t = a_t h_{t-1} + b_t from h_{-1} = 0, restarting where first [T, B].

    a, b: [T, B, N] (complex or real). The reset is folded into the operator: a_t = 0 at a start.
    ``parallel``: ``jax.lax.associative_scan`` (log-depth in T), else a sequential ``lax.scan``.
    """
    a = jnp.where(first[..., None], jnp.zeros_like(a), a)
    if parallel:
        _, h = jax.lax.associative_scan(_combine, (a, b), axis=0)
        return h
    if jnp.iscomplexobj(b):  # real and imaginary parts apart: its gradient ran 3x faster on CPU
        parts = (a.real, a.imag, b.real, b.imag)
        zero = jnp.zeros_like(parts[2][0])
        _, (h_re, h_im) = jax.lax.scan(_recur_complex, (zero, zero), parts)
        return jax.lax.complex(h_re, h_im)
    _, h = jax.lax.scan(_recur, jnp.zeros_like(b[0]), (a, b))
    return h


def _recur(h, inputs):
    a, b = inputs
    h = a * h + b
    return h, h


def _recur_complex(h, inputs):
    """``_recur`` on complex numbers held as (real, imaginary) float arrays."""
    (h_re, h_im), (a_re, a_im, b_re, b_im) = h, inputs
    h = (a_re * h_re - a_im * h_im + b_re, a_re * h_im + a_im * h_re + b_im)
    return h, h


def _nu_log_init(key, shape):
    u = jax.random.uniform(key, shape)
    return jnp.log(-0.5 * jnp.log(u * (R_MAX**2 - R_MIN**2) + R_MIN**2))


def _theta_log_init(key, shape):
    return jnp.log(MAX_PHASE * jax.random.uniform(key, shape))


def _normal(scale: float):
    return lambda key, shape: scale * jax.random.normal(key, shape)


class LRULayer(nn.Module):
    """The diagonal recurrence with its input (B) and output (C, D) maps."""

    size: int

    def setup(self):
        n = self.size
        self.nu_log = self.param("nu_log", _nu_log_init, (n,))
        self.theta_log = self.param("theta_log", _theta_log_init, (n,))
        magnitude = jnp.exp(-jnp.exp(self.nu_log))
        self.gamma_log = self.param("gamma_log", lambda _: jnp.log(jnp.sqrt(1 - magnitude**2)))
        self.b_re = self.param("b_re", _normal((2 * n) ** -0.5), (n, n))
        self.b_im = self.param("b_im", _normal((2 * n) ** -0.5), (n, n))
        self.c_re = self.param("c_re", _normal(n**-0.5), (n, n))
        self.c_im = self.param("c_im", _normal(n**-0.5), (n, n))
        self.d = self.param("d", _normal(1.0), (n,))

    def eigenvalues(self) -> jax.Array:
        """lambda [N], complex, inside the unit circle."""
        return jnp.exp(-jnp.exp(self.nu_log) + 1j * jnp.exp(self.theta_log))

    def drive(self, u: jax.Array) -> jax.Array:
        """gamma * (B u): the input term of the recurrence, u [..., N] -> complex [..., N]."""
        gamma = jnp.exp(self.gamma_log)
        return jax.lax.complex((u @ self.b_re.T) * gamma, (u @ self.b_im.T) * gamma)

    def read(self, h: jax.Array, u: jax.Array) -> jax.Array:
        """y = Re(C h) + D u."""
        return h.real @ self.c_re.T - h.imag @ self.c_im.T + self.d * u


class LRUBlock(nn.Module):
    """Pre-LayerNorm residual block: LRU, GELU, gated linear unit."""

    size: int

    def setup(self):
        self.norm = nn.LayerNorm()
        self.lru = LRULayer(self.size)
        self.out = nn.Dense(2 * self.size)

    def finish(self, h: jax.Array, y: jax.Array) -> jax.Array:
        """The residual update from the recurrence's read-out y."""
        value, gate = jnp.split(self.out(nn.gelu(y)), 2, axis=-1)
        return h + value * nn.sigmoid(gate)


class LRUCore(nn.Module):
    """Stacked LRU blocks; its state is complex [layers, B, size]."""

    config: CoreConfig

    def setup(self):
        self.embed = nn.Dense(self.config.size)
        self.blocks = [LRUBlock(self.config.size) for _ in range(self.config.layers)]
        self.norm_out = nn.LayerNorm()

    @nn.nowrap
    def initial_state(self, batch: int) -> jax.Array:
        """Zeros, complex [layers, batch, size]."""
        return jnp.zeros((self.config.layers, batch, self.config.size), jnp.complex64)

    def step(self, state: jax.Array, x: jax.Array, first: jax.Array):
        """One step of the recurrence: x [B, D], first [B] -> (state, y [B, size])."""
        state = reset_where_stacked(first, self.initial_state(x.shape[0]), state)
        h = self.embed(x)  # [B, size]
        new = []
        for layer, block in enumerate(self.blocks):
            u = block.norm(h)
            s = block.lru.eigenvalues() * state[layer] + block.lru.drive(u)  # [B, N]
            h = block.finish(h, block.lru.read(s, u))
            new.append(s)
        return jnp.stack(new), self.norm_out(h)

    def sequence(self, x: jax.Array, first: jax.Array) -> jax.Array:
        """Whole trials with an associative scan: x [T, B, D], first [T, B] -> y [T, B, size]."""
        h = self.embed(x)  # [T, B, size]
        for block in self.blocks:
            u = block.norm(h)
            drive = block.lru.drive(u)  # [T, B, N]
            a = jnp.broadcast_to(block.lru.eigenvalues(), drive.shape)
            s = linear_scan(a, drive, first, self.config.parallel)
            h = block.finish(h, block.lru.read(s, u))
        return self.norm_out(h)

    def __call__(self, x: jax.Array, first: jax.Array) -> jax.Array:
        return self.sequence(x, first)
