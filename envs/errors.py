"""The environment package's own error: bad options for an env or task family.

``metajax.errors.ConfigError`` is this class (re-exported there), so the CLI reports a bad env
option as one line and exit 2 like any other bad input, while envs/ imports nothing from
metajax outside ``metajax.envs``.
"""


class ConfigError(ValueError):
    """Bad user input: an unknown name, an impossible size, a missing or corrupt checkpoint."""


def check_seed(seed: int, name: str = "seed") -> None:
    """Raises ConfigError unless ``seed`` fits a uint32 (what every random root is made from)."""
    if not 0 <= seed < 2**32:
        raise ConfigError(f"{name} must be in 0..{2**32 - 1}, got {seed}")
