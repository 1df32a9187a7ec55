"""The two ways the records database can refuse us, as one-line errors.

Why a `UsageError`: almost every failure at open is something the operator configured
(a bad `records.database` URL, a directory we cannot write, a database written by a newer
release), so it ends the command like any other configuration mistake. An unreachable
server is different — nothing in the settings is wrong — so it has its own class that
the command line turns into exit code 1 instead of 2.
"""

from __future__ import annotations

from telephony_agent.errors import UsageError


class RecordsError(UsageError):
    """The records database cannot be used as configured; the message is one line."""


class RecordsUnavailable(RecordsError):
    """The records database server could not be reached (exit code 1, not 2)."""
