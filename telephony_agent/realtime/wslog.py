"""A logger for the websockets library that never emits its debug lines.

websockets logs request headers (the API key) and every frame at debug level.
Reporting debug as disabled makes the library skip those lines entirely, whatever
the process-wide log level: safer, and cheaper at 50 audio frames per second.
Both our client and our local backend hand it to websockets.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any


class NoDebugLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Passes warnings and errors through; claims debug is off."""

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return msg, kwargs


def websocket_logger(name: str) -> NoDebugLogger:
    return NoDebugLogger(logging.getLogger(name), {})
