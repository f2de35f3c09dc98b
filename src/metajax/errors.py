"""Errors that the CLI reports as one line and exit code 2.

``ConfigError`` and ``check_seed`` are defined on the ground floor (``metajax.envs.errors``, so
envs/ can raise them without importing upwards) and re-exported here for everything above it.
"""

from metajax.envs.errors import ConfigError, check_seed

__all__ = ["ConfigError", "check_seed"]
