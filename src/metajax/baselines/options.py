"""Options of a named baseline: defaults merged with the caller's, unknown names refused."""

from __future__ import annotations

from metajax.errors import ConfigError


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
