"""A set with a memory limit, for ids that only matter for a while.

Why: a call may last hours, and the ids the session must recognise (stale responses,
function calls already reported) are only interesting while they are recent.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator


class BoundedSet:
    """Insertion-ordered set that forgets its oldest members beyond `maxlen`."""

    def __init__(self, maxlen: int) -> None:
        self._items: OrderedDict[str, None] = OrderedDict()
        self._maxlen = maxlen

    def add(self, key: str) -> None:
        self._items[key] = None
        self._items.move_to_end(key)
        while len(self._items) > self._maxlen:
            self._items.popitem(last=False)

    def discard(self, key: str) -> None:
        self._items.pop(key, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def clear(self) -> None:
        self._items.clear()
