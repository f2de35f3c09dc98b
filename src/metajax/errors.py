"""Errors that the CLI reports as one line and exit code 2.

``ConfigError`` is defined on the ground floor (``metajax.envs.errors``, so envs/ can raise it
without importing upwards) and re-exported here for everything above it.
"""

from metajax.envs.errors import ConfigError

__all__ = ["ConfigError"]
