"""Memory cores for in-context meta-RL: gru, lstm, transformer, lru, memory (issue 14).

Every core is a flax module built from one frozen ``CoreConfig`` and offers two modes that agree
(to float rounding) on any trials, resets included:

- ``initial_state(batch) -> state`` (a pytree; needs no parameters, works on the unbound module),
- step mode ``step(state, x [B, D], first [B]) -> (state, y [B, size])``: acting, one step with a
  carried state; the state is reset where ``first`` marks the first step of a trial,
- sequence mode ``sequence(x [T, B, D], first [T, B]) -> y [T, B, size]`` (also ``__call__``):
  whole trials from a fresh state with resets where ``first`` (the PPO update).

Usage::

    config = CoreConfig(name="transformer", size=64, heads=4, window=32)
    config.validate(trial_length)              # ConfigError with one line on bad options
    core = make_core(config)
    params = core.init(key, x, first)          # x [T, B, D], first [T, B] (sequence mode)
    y = core.apply(params, x, first)           # [T, B, size]
    state = core.initial_state(batch)
    state, y_t = core.apply(params, state, x_t, first_t, method="step")

Params are the same tree whichever mode ``init`` runs. Inside a bigger flax module, hold the core
as a submodule and call ``self.core.step(...)`` / ``self.core.sequence(...)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import jax

from metajax.cores.lru import LRUCore
from metajax.cores.memory import SlotMemoryCore
from metajax.cores.recurrent import GRUCore, LSTMCore
from metajax.cores.transformer import TransformerCore
from metajax.errors import ConfigError

CORES: dict[str, type] = {
    "gru": GRUCore,
    "lstm": LSTMCore,
    "transformer": TransformerCore,
    "lru": LRUCore,
    "memory": SlotMemoryCore,
}


class MemoryCore(Protocol):
    """What every core in ``CORES`` offers (besides flax's ``init`` and ``apply``)."""

    config: CoreConfig

    def initial_state(self, batch: int) -> Any:
        """The fresh state of ``batch`` sequences."""
        ...

    def step(self, state: Any, x: jax.Array, first: jax.Array) -> tuple[Any, jax.Array]:
        """One step: x [B, D], first [B] -> (state, y [B, size])."""
        ...

    def sequence(self, x: jax.Array, first: jax.Array) -> jax.Array:
        """Whole trials from a fresh state: x [T, B, D], first [T, B] -> y [T, B, size]."""
        ...


@dataclass(frozen=True)
class CoreConfig:
    """Options of a memory core; each core reads the ones it needs."""

    name: str = "gru"  # gru | lstm | transformer | lru | memory
    size: int = 128  # output width of every core (hidden units, model width, LRU state size)
    layers: int = 1  # transformer blocks / stacked LRU blocks
    heads: int = 4  # transformer attention heads (must divide size)
    window: int | None = None  # transformer: attend to the last `window` steps (None: max_len)
    max_len: int = 512  # transformer: longest trial without a window (the k/v cache size)
    gate: bool = False  # transformer: GTrXL-style GRU gates instead of residual sums
    slots: int = 16  # memory: number of memory slots
    slot_size: int = 32  # memory: width of one slot
    parallel: bool = True  # lru: associative_scan over time (False: a sequential scan)

    def validate(self, trial_length: int | None = None) -> None:
        """Raises ConfigError (one line) on bad options or a trial longer than the cache."""
        if self.name not in CORES:
            raise ConfigError(f"unknown memory core '{self.name}'; allowed: {', '.join(CORES)}")
        for field in ("size", "layers", "heads", "max_len", "slots", "slot_size"):
            if getattr(self, field) < 1:
                raise ConfigError(f"core {field} must be at least 1, got {getattr(self, field)}")
        if self.window is not None and self.window < 1:
            raise ConfigError(f"core window must be at least 1 (or unset), got {self.window}")
        if self.name != "transformer":
            return
        if self.size % self.heads:
            raise ConfigError(
                f"transformer heads ({self.heads}) must divide its width size ({self.size})"
            )
        if (self.size // self.heads) % 2:
            raise ConfigError(
                f"transformer head width size/heads = {self.size // self.heads} must be even "
                "(rotary positions)"
            )
        if self.window is None and trial_length is not None and trial_length > self.max_len:
            raise ConfigError(
                f"trial length {trial_length} is longer than the transformer's max_len "
                f"{self.max_len}; raise max_len or set a window"
            )


def make_core(config: CoreConfig, trial_length: int | None = None) -> MemoryCore:
    """The validated memory core that ``config`` describes."""
    config.validate(trial_length)
    return CORES[config.name](config=config)


def names() -> list[str]:
    """The registered core names."""
    return list(CORES)


__all__ = ["CORES", "CoreConfig", "MemoryCore", "make_core", "names"]
