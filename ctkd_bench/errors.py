"""Exceptions the core raises on purpose.

`UsageError` and its subclasses are shown to the user as one line (no traceback)
and exit with status 2; everything else is a bug or a failing cell.
"""


class UsageError(Exception):
    """A mistake in what the user asked for: a config field, a name, a path."""


class ConfigError(UsageError):
    """A suite or method config is invalid; the message names the field."""


class PluginError(UsageError):
    """A plugin registered something invalid (name collision, missing attribute, API version)."""


class UndeclaredSignalError(AttributeError):
    """A method read a teacher signal it did not declare in `needs`."""


class CellFailure(RuntimeError):
    """A cell could not finish (non-finite loss, no gradient, timeout, ...)."""
