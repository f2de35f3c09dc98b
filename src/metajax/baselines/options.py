"""Pieces every baseline family shares: options merged with defaults (unknown names refused)
and a per-step reward function turned into a total-per-task one."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from metajax.errors import ConfigError


def summed(rewards_fn: Callable[..., jax.Array], doc: str) -> Callable[..., jax.Array]:
    """``rewards_fn(...) -> [tasks, steps]`` as a function of the same arguments -> [tasks]."""

    def total(*args, **kwargs) -> jax.Array:
        return jnp.sum(rewards_fn(*args, **kwargs), axis=-1)

    total.__doc__ = doc
    return total


def merge_options(kind: str, name: str, defaults: dict[str, dict], options: dict) -> dict:
    """``options`` over the defaults of baseline ``name`` of ``defaults`` (name -> defaults).

    Raises:
        ConfigError: an unknown baseline name or option, naming what is known or allowed.
    """
    if name not in defaults:
        raise ConfigError(f"unknown {kind} '{name}'; known baselines: {', '.join(defaults)}")
    allowed = defaults[name]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        shown = ", ".join(f"{k}={v}" for k, v in allowed.items()) or "none"
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for {kind} '{name}'; allowed: {shown}"
        )
    return {**allowed, **options}
