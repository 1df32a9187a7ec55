"""Errors that end a command with one clear line instead of a traceback."""

from __future__ import annotations


class UsageError(Exception):
    """The user asked for something we cannot do as asked (exit code 2)."""


class ConfigError(UsageError):
    """A configuration key is missing or has a bad value; the message names the key."""


class InputFileError(UsageError):
    """An input file is missing, unreadable or not audio."""
