"""Errors raised before anything moves: bad configuration and bad input."""


class ConfigError(ValueError):
    """A configuration file or setting is invalid; the message names the file and key."""


class InvalidPathError(ValueError):
    """A user-supplied path is not acceptable (absolute, '..', empty, outside a root, bad name)."""
