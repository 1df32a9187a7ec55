"""Keypad entry: digits collected into one message for the model.

Why collect at all: a provider without a DTMF event (Yandex has none) must still hear
"enter your booking number" answered, and a model told about each key separately
would answer each key. Digits are gathered until the profile's terminator, its digit
limit, or a pause, and become one user message ("The caller typed: 4 5 1 2 #").

Sans-I/O: the Call owns the pause timer and the session; this class only decides.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

from telephony_agent.agent import DEFAULT_DTMF_MESSAGE

__all__ = ["KeypadEntry", "KeypadInput"]

log = structlog.get_logger(__name__)


@dataclass
class KeypadEntry:
    terminator: str = "#"
    max_digits: int = 20
    #: `{digits}` becomes the digits separated by spaces.
    message: str = DEFAULT_DTMF_MESSAGE
    digits: str = ""

    def press(self, digit: str) -> bool:
        """Add a digit; True when the entry is complete (terminator or digit limit)."""
        self.digits += digit
        return bool(self.terminator and digit == self.terminator) or (
            len(self.digits) >= self.max_digits
        )

    def take(self) -> str | None:
        """The entry as the model's user message, and start a new one (None: no digits)."""
        digits, self.digits = self.digits, ""
        if not digits:
            return None
        return self.message.replace("{digits}", " ".join(digits))


class KeypadInput:
    """The Call's keypad: collects digits, times the pause, hands the entry over once.

    `send(text)` gives the finished entry to the model (the Call adds it as a user
    message and asks for exactly one response, or defers that while one is active).
    """

    def __init__(
        self,
        entry: KeypadEntry,
        *,
        inter_digit_s: float,
        send: Callable[[str], None],
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
    ) -> None:
        self._entry = entry
        self._inter_digit_s = inter_digit_s
        self._send = send
        self._spawn = spawn
        self._timer: asyncio.Task[None] | None = None

    def press(self, digit: str) -> None:
        """A digit: the terminator or the digit limit sends the entry at once."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._entry.press(digit):
            self.flush()
        else:
            self._timer = self._spawn(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._inter_digit_s)
        self._timer = None
        self.flush()

    def flush(self) -> None:
        text = self._entry.take()
        if text is None:
            return
        log.info("dtmf_entry")
        self._send(text)
