"""Errors that the CLI reports as one line and exit code 2."""


class ConfigError(ValueError):
    """Bad user input: an unknown name, an impossible size, a missing or corrupt checkpoint."""
