"""The environment package's own error: bad options for an env or task family.

``metajax.errors.ConfigError`` is this class (re-exported there), so the CLI reports a bad env
option as one line and exit 2 like any other bad input, while envs/ imports nothing from
metajax outside ``metajax.envs``.
"""


class ConfigError(ValueError):
    """Bad user input: an unknown name, an impossible size, a missing or corrupt checkpoint."""
