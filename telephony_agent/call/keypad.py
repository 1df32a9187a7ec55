"""Keypad entry: digits collected into one message for the model.

Why collect at all: a provider without a DTMF event (Yandex has none) must still hear
"enter your booking number" answered, and a model told about each key separately
would answer each key. Digits are gathered until the profile's terminator, its digit
limit, or a pause, and become one user message ("The caller typed: 4 5 1 2 #").

Sans-I/O: the Call owns the pause timer and the session; this class only decides.
"""

from __future__ import annotations

from dataclasses import dataclass

from telephony_agent.agent import DEFAULT_DTMF_MESSAGE

__all__ = ["KeypadEntry"]


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
