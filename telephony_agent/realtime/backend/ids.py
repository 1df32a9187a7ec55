"""Identifiers in the provider's style (`event_…`, `item_…`, `resp_…`, `call_…`).

One random stem per connection plus a counter: unique, ordered, and cheap enough to
stamp on every event of hundreds of concurrent calls (no syscall per id).
"""

from __future__ import annotations

import itertools
import secrets


class IdSource:
    def __init__(self) -> None:
        self._stem = secrets.token_hex(5)
        self._counter = itertools.count(1)

    def new(self, prefix: str) -> str:
        return f"{prefix}_{self._stem}{next(self._counter):07d}"
