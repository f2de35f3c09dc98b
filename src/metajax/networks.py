"""Flax networks shared by the learners: MLPs, memory cores, policy heads, distributions.

``RecurrentActorCritic`` holds any memory core of ``metajax.cores`` (gru, lstm, transformer, lru,
memory) named by a ``CoreConfig``. GRU and LSTM keep their own small modules here
(``MEMORY_CORES``: ``core(carry, x) -> (carry, y)``, one step) so their parameter trees, and with
them every recorded run, stay as they were; their sequence mode is a scan of step mode
(``unroll``). The other cores come from ``metajax.cores`` and run whole trials at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from metajax import cores
from metajax.cores import CoreConfig
from metajax.errors import ConfigError

ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh, "gelu": nn.gelu, "silu": nn.silu}


def activation(name: str):
    """The activation function called ``name``."""
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation '{name}'; allowed: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class MLP(nn.Module):
    """Dense layers with an activation between them; ``output_size`` adds a final linear layer."""

    hidden_sizes: Sequence[int]
    output_size: int | None = None
    activation: str = "tanh"
    output_scale: float = 1.0  # orthogonal init scale of the output layer

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = activation(self.activation)
        for size in self.hidden_sizes:
            x = act(nn.Dense(size, kernel_init=nn.initializers.orthogonal(math.sqrt(2)))(x))
        if self.output_size is not None:
            init = nn.initializers.orthogonal(self.output_scale)
            x = nn.Dense(self.output_size, kernel_init=init)(x)
        return x


class GRUCore(nn.Module):
    """A GRU memory core; its carry is the hidden state [B, size]."""

    size: int

    @nn.compact
    def __call__(self, carry: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        carry, y = nn.GRUCell(self.size)(carry, x)
        return carry, y


class LSTMCore(nn.Module):
    """An LSTM memory core; its carry is (cell, hidden)."""

    size: int

    @nn.compact
    def __call__(self, carry, x: jax.Array):
        carry, y = nn.OptimizedLSTMCell(self.size)(carry, x)
        return carry, y


MEMORY_CORES = {"gru": GRUCore, "lstm": LSTMCore}
# A core's fresh carry for a batch: (size, batch) -> carry
_INITIAL_CARRY = {
    "gru": lambda size, batch: jnp.zeros((batch, size), jnp.float32),
    "lstm": lambda size, batch: (jnp.zeros((batch, size)), jnp.zeros((batch, size))),
}


def initial_carry(core: CoreConfig, batch: int) -> Any:
    """The fresh memory of the core ``core`` describes, for ``batch`` sequences."""
    if core.name in _INITIAL_CARRY:
        return _INITIAL_CARRY[core.name](core.size, batch)
    return cores.CORES[core.name](config=core).initial_state(batch)


def make_core(name: str, size: int) -> nn.Module:
    """The memory core called ``name`` with ``size`` units."""
    if name not in MEMORY_CORES:
        raise ConfigError(f"unknown memory core '{name}'; allowed: {', '.join(MEMORY_CORES)}")
    if size < 1:
        raise ConfigError(f"memory core size must be positive, got {size}")
    return MEMORY_CORES[name](size)


def reset_carry(carry: Any, fresh: Any, first: jax.Array) -> Any:
    """Replaces the carry by ``fresh`` where ``first`` [B] marks the start of a new trial."""

    def pick(old, new):
        mask = jnp.reshape(first, (-1,) + (1,) * (old.ndim - 1))
        return jnp.where(mask, new, old)

    return jax.tree.map(pick, carry, fresh)


# ----------------------------------------------------------------------------- distributions


class PolicyHead(nn.Module):
    """Distribution parameters from features: logits (discrete) or Gaussian mean and log-std."""

    action_dim: int
    discrete: bool
    init_log_std: float = 0.0

    @nn.compact
    def __call__(self, features: jax.Array) -> jax.Array | tuple[jax.Array, jax.Array]:
        out = nn.Dense(self.action_dim, kernel_init=nn.initializers.orthogonal(0.01))(features)
        if self.discrete:
            return out
        log_std = self.param(
            "log_std", nn.initializers.constant(self.init_log_std), (self.action_dim,)
        )
        return out, jnp.broadcast_to(log_std, out.shape)


def sample_action(key: jax.Array, dist, discrete: bool) -> jax.Array:
    """Samples from categorical logits or a diagonal Gaussian (mean, log_std)."""
    if discrete:
        return jax.random.categorical(key, dist).astype(jnp.int32)
    mean, log_std = dist
    return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)


def log_prob(dist, action: jax.Array, discrete: bool) -> jax.Array:
    """Log-probability of ``action`` under categorical logits or a diagonal Gaussian."""
    if discrete:
        logp = jax.nn.log_softmax(dist)
        return jnp.take_along_axis(logp, action[..., None].astype(jnp.int32), axis=-1)[..., 0]
    mean, log_std = dist
    z = (action - mean) / jnp.exp(log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


def entropy(dist, discrete: bool) -> jax.Array:
    """Entropy of categorical logits or a diagonal Gaussian."""
    if discrete:
        logp = jax.nn.log_softmax(dist)
        return -jnp.sum(jnp.exp(logp) * logp, axis=-1)
    _, log_std = dist
    return jnp.sum(log_std + 0.5 * jnp.log(2 * jnp.pi * jnp.e), axis=-1)


def kl_divergence(p, q, discrete: bool) -> jax.Array:
    """KL(p || q) between two categorical or two diagonal Gaussian distributions."""
    if discrete:
        logp, logq = jax.nn.log_softmax(p), jax.nn.log_softmax(q)
        return jnp.sum(jnp.exp(logp) * (logp - logq), axis=-1)
    (mp, lsp), (mq, lsq) = p, q
    var_p, var_q = jnp.exp(2 * lsp), jnp.exp(2 * lsq)
    return jnp.sum(lsq - lsp + (var_p + (mp - mq) ** 2) / (2 * var_q) - 0.5, axis=-1)


class RecurrentActorCritic(nn.Module):
    """RL²'s network: embedding MLP -> memory core -> policy head and value head.

    With ``head_sizes`` an MLP over [core output, embedding] sits before both heads, so the
    read-out of the memory can depend non-linearly on the current input (default: linear heads).
    """

    action_dim: int
    discrete: bool
    core: CoreConfig = CoreConfig(size=256)
    hidden_sizes: Sequence[int] = (128,)
    activation: str = "tanh"
    head_sizes: Sequence[int] = ()

    def setup(self):
        self.embed = MLP(self.hidden_sizes, activation=self.activation)
        if self.core.name in MEMORY_CORES:  # the module names fix the init RNG: keep `memory`
            self.memory = make_core(self.core.name, self.core.size)
        else:
            self.memory = cores.CORES[self.core.name](config=self.core)
        self.policy_head = PolicyHead(self.action_dim, self.discrete)
        self.value_head = nn.Dense(1, kernel_init=nn.initializers.orthogonal(1.0))
        if self.head_sizes:  # no module (and the same init RNG) without head layers
            self.read_out = MLP(self.head_sizes, activation=self.activation)

    def heads(self, features: jax.Array, embedded: jax.Array):
        """(policy distribution, value [...]) from the core's features [..., size] (and, with
        head layers, the embedded input)."""
        if self.head_sizes:
            features = self.read_out(jnp.concatenate([features, embedded], axis=-1))
        return self.policy_head(features), self.value_head(features)[..., 0]

    def __call__(self, carry, obs: jax.Array, first: jax.Array):
        """Step mode: ``(carry, obs [B, D], first [B]) -> (carry, (dist, value [B]))``.

        The memory restarts where ``first`` marks the first step of a trial.
        """
        x = self.embed(obs)
        if self.core.name in MEMORY_CORES:
            carry = reset_carry(carry, initial_carry(self.core, obs.shape[0]), first)
            carry, features = self.memory(carry, x)
        else:
            carry, features = self.memory.step(carry, x, first)
        return carry, self.heads(features, x)

    def sequence(self, obs: jax.Array, first: jax.Array):
        """Sequence mode of a ``metajax.cores`` core: obs [T, B, D] -> (dist, value [T, B])."""
        x = self.embed(obs)
        return self.heads(self.memory.sequence(x, first), x)


def unroll(network: RecurrentActorCritic, params, obs: jax.Array, first: jax.Array):
    """Whole trials from fresh memory, obs [T, B, D], first [T, B] -> (dist, value [T, B]).

    GRU and LSTM scan step mode (as their recorded runs did); the other cores run their
    sequence mode (attention over the trial, a parallel scan), which equals step mode.
    """
    if network.core.name not in MEMORY_CORES:
        return network.apply(params, obs, first, method="sequence")

    def step(carry, inputs):
        obs_t, first_t = inputs
        return network.apply(params, carry, obs_t, first_t)

    fresh = initial_carry(network.core, obs.shape[1])
    _, (dist, value) = jax.lax.scan(step, fresh, (obs, first))
    return dist, value
